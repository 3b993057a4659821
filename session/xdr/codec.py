"""Bounded XDR encoding and decoding on xdrlib3 (RFC 4506).

Every decode names what it decodes: a short buffer, a length larger than what remains
or larger than the protocol allows, or an unknown union discriminant raises
``XdrError(type_name, offset, detail)``.  Enum values the client does not know are kept
as pseudo-members of an ``OpenEnum`` (HOUSE_STYLE.md: dnspython), never crashed on.

Conventions used by every type in ``session.xdr``:

* a struct is a ``@dataclass(slots=True)`` with ``pack(self, enc: Encoder) -> None``
  and ``@classmethod unpack(cls, dec: Decoder) -> Self``;
* field names and type names are the RFC 5662 names.
"""

from __future__ import annotations

import array
import enum
import io
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, Self, TypeVar

import xdrlib3

from session.errors import XdrError

T = TypeVar("T")

_UINT32 = struct.Struct(">I")
_INT32 = struct.Struct(">i")
_UINT64 = struct.Struct(">Q")
_INT64 = struct.Struct(">q")

UINT32_MAX = 0xFFFFFFFF
UINT64_MAX = 0xFFFFFFFFFFFFFFFF

_WORD_ARRAY = "I" if array.array("I").itemsize == 4 else "L"
"""array typecode of a 4-byte unsigned word (for bulk uint32 decoding)."""
_BIG_ENDIAN_HOST = sys.byteorder == "big"


class OpenEnum(enum.IntEnum):
    """An IntEnum that keeps values it does not know as pseudo-members.

    ``nfsstat4(99999)`` gives a member named ``nfsstat4_99999`` instead of raising,
    so a reply from a newer server decodes and can be reported.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"{cls.__name__}_{value}"
        member._value_ = value
        return member


class Packable(Protocol):
    """Anything with an XDR encoder."""

    def pack(self, enc: Encoder) -> None: ...


BULK_MIN = 64 * 1024
"""Bytes from which ``Encoder.opaque_bulk`` keeps a payload apart instead of copying it."""


class Gathered:
    """An encoding in pieces, to be sent one after another without being joined.

    Record marking does not care how a record's bytes are split (RFC 5531 section 11),
    so a WRITE's 1 MiB of data can go to the socket from where the application's
    write(2) left it.  ``len()`` is the total in bytes.

    Attributes:
        pieces: the bytes in order (bytes or read-only views).
    """

    __slots__ = ("_size", "pieces")

    def __init__(self, pieces: Sequence[bytes | memoryview]) -> None:
        self.pieces: tuple[bytes | memoryview, ...] = tuple(pieces)
        self._size = sum(memoryview(p).nbytes for p in self.pieces)

    def __len__(self) -> int:
        return self._size

    def joined(self) -> bytes:
        """The pieces as one bytes object (a copy)."""
        return b"".join(self.pieces)

    def __repr__(self) -> str:
        return f"Gathered({len(self.pieces)} pieces, {self._size} bytes)"


class Encoder(xdrlib3.Packer):
    """xdrlib3's Packer plus the typed helpers the NFS codecs use."""

    _bulk: list[tuple[int, memoryview]]  # (buffer offset, payload kept apart)

    def reset(self) -> None:
        super().reset()
        self._bulk = []

    def uint32(self, value: int) -> None:
        self.pack_uint(value)

    def int32(self, value: int) -> None:
        self.pack_int(value)

    def uint64(self, value: int) -> None:
        self.pack_uhyper(value)

    def int64(self, value: int) -> None:
        self.pack_uhyper(value & UINT64_MAX)

    def boolean(self, value: bool) -> None:
        self.pack_bool(value)

    def opaque(self, value: bytes) -> None:
        """Variable-length opaque<>: length word, bytes, zero padding to 4."""
        self.pack_opaque(value)

    def opaque_bulk(self, value: bytes | bytearray | memoryview) -> None:
        """opaque<> for bulk payloads (WRITE data, READ4resok data); same bytes on the
        wire as ``opaque``.

        A payload of ``BULK_MIN`` bytes or more is not copied: it is kept as it is (a
        view) and ``pieces`` hands it out between the bytes encoded before and after
        it, for the transport to send in turn, so it must not change until it is sent
        (WRITE data is bytes, or a read-only view of a FUSE request buffer that nothing
        writes to again).  A smaller one is written into the buffer (without the
        concatenation ``pack_opaque`` makes for the padding).
        """
        size = memoryview(value).nbytes
        self.pack_uint(size)
        buf = getattr(self, "_Packer__buf", None)  # xdrlib3's private BytesIO
        if not isinstance(buf, io.BytesIO):  # pragma: no cover - other xdrlib3 layout
            self.pack_fopaque(size, bytes(value))
            return
        if size >= BULK_MIN:
            self._bulk.append((buf.tell(), memoryview(value).cast("B")))
        else:
            buf.write(value)
        if size & 3:
            buf.write(b"\0" * (4 - (size & 3)))

    def pieces(self) -> list[bytes | memoryview]:
        """The encoding as pieces to send in order: the buffer's bytes, with each bulk
        payload (``opaque_bulk``) where it belongs; one piece when there is none."""
        data = super().get_buffer()
        if not self._bulk:
            return [data]
        out: list[bytes | memoryview] = []
        view = memoryview(data)
        pos = 0
        for offset, payload in self._bulk:
            if offset > pos:
                out.append(view[pos:offset])
            out.append(payload)
            pos = offset
        if pos < len(data):
            out.append(view[pos:])
        return out

    def gathered(self) -> bytes | Gathered:
        """The encoding: bytes, or a ``Gathered`` when a bulk payload was kept apart."""
        return Gathered(self.pieces()) if self._bulk else super().get_buffer()

    def fixed_opaque(self, size: int, value: bytes) -> None:
        """Fixed-length opaque[size]; ``value`` must be exactly ``size`` bytes."""
        if len(value) != size:
            raise ValueError(f"fixed opaque[{size}] given {len(value)} bytes")
        self.pack_fopaque(size, value)

    def string(self, value: str | bytes) -> None:
        """utf8string / component4 / linktext4: UTF-8 bytes with a length word.

        Surrogate escapes (from ``Decoder.string`` on invalid UTF-8) encode back to the
        original bytes, so a decoded string re-encodes unchanged.
        """
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        self.pack_opaque(value)

    def array(self, items: Sequence[T], pack_item: Callable[[T], None]) -> None:
        """Counted array<>: count word then each item."""
        self.pack_array(items, pack_item)

    def struct_array(self, items: Sequence[Packable]) -> None:
        self.uint32(len(items))
        for item in items:
            item.pack(self)

    def optional(self, item: Packable | None) -> None:
        """XDR optional-data (``T *``): a bool then the item if present."""
        if item is None:
            self.pack_bool(False)
        else:
            self.pack_bool(True)
            item.pack(self)

    def get_buffer(self) -> bytes:
        """The whole encoding as bytes (bulk payloads joined in: a copy)."""
        if self._bulk:
            return b"".join(self.pieces())
        return super().get_buffer()

    def getvalue(self) -> bytes:
        return self.get_buffer()


#: Bytes or a view of them: what bulk data (READ's) comes as, without a copy.
Buffer = bytes | memoryview


class Decoder:
    """A bounded XDR decoder: every read checks what remains first.

    It keeps its position in a plain attribute and decodes each scalar in one
    ``unpack_from``: decoding was a fifth of the CPU of a COMPOUND (profile of a
    loop of GETATTRs), and xdrlib3's Unpacker, which this used to extend, costs two
    method calls of position bookkeeping per field.  (Encoding stays on xdrlib3's
    Packer, ``Encoder``.)

    Args:
        data: the bytes to decode (a whole RPC record body, or a slice of it).

    Raises (from every method):
        XdrError: naming ``what`` (the XDR type or field) and the offset in bytes.
    """

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview, start: int = 0) -> None:
        # A memoryview (a reply body inside its record) is decoded in place; small
        # fields are copied out (``fixed_opaque``), bulk data can stay a view.
        buf: bytes | memoryview = data if isinstance(data, bytes | memoryview) else bytes(data)
        self._data = buf
        self._pos = start  # an index into ``data``; offsets in errors count from 0
        self._end = len(buf)

    # -- bounds ---------------------------------------------------------------------
    @property
    def offset(self) -> int:
        """Current position, bytes from the start (an index)."""
        return self._pos

    def remaining(self) -> int:
        """Bytes not yet decoded (a count)."""
        return self._end - self._pos

    def error(self, what: str, detail: str) -> XdrError:
        return XdrError(what, self._pos, detail)

    def _need(self, n: int, what: str) -> int:
        """The current position, after checking that ``n`` bytes remain there."""
        pos = self._pos
        if n > self._end - pos:
            raise XdrError(what, pos, f"needs {n} bytes, {self._end - pos} remain")
        return pos

    def done_or_raise(self, what: str) -> None:
        """Raise if bytes remain: a sub-decoder must consume exactly its slice."""
        if self.remaining():
            raise self.error(what, f"{self.remaining()} trailing bytes")

    # -- scalars --------------------------------------------------------------------
    def _scalar(self, st: struct.Struct, what: str) -> int:
        """One fixed-size integer of format ``st`` at the current position."""
        pos = self._need(st.size, what)
        self._pos = pos + st.size
        value: int = st.unpack_from(self._data, pos)[0]
        return value

    def uint32(self, what: str = "uint32") -> int:
        return self._scalar(_UINT32, what)

    def int32(self, what: str = "int32") -> int:
        return self._scalar(_INT32, what)

    def uint64(self, what: str = "uint64") -> int:
        return self._scalar(_UINT64, what)

    def int64(self, what: str = "int64") -> int:
        return self._scalar(_INT64, what)

    def boolean(self, what: str = "bool") -> bool:
        pos = self._pos
        value = self.uint32(what)
        if value > 1:
            raise XdrError(what, pos, f"bool must be 0 or 1, got {value}")
        return value == 1

    def enum(self, cls: type[T], what: str | None = None) -> T:
        """An enum word; unknown values become ``OpenEnum`` pseudo-members."""
        value = self.int32(what or cls.__name__)
        # Known values straight from the enum's own table (calling the class costs
        # several times more); the rest through the class (``OpenEnum._missing_``).
        member = cls._value2member_map_.get(value)  # type: ignore[attr-defined]
        if member is not None:
            return member  # type: ignore[no-any-return]
        return cls(value)  # type: ignore[call-arg]

    # -- opaque data ----------------------------------------------------------------
    def fixed_opaque(self, size: int, what: str = "opaque") -> bytes:
        padded = (size + 3) & ~3
        pos = self._need(padded, what)
        self._pos = pos + padded
        return bytes(self._data[pos : pos + size])

    def _length(self, what: str, limit: int | None) -> int:
        """A length word for ``what``, checked against ``limit`` and what remains."""
        pos = self._pos
        size = self.uint32(what)
        if limit is not None and size > limit:
            raise XdrError(what, pos, f"length {size} exceeds the maximum {limit}")
        if size > self._end - self._pos:
            raise XdrError(what, pos, f"length {size} exceeds the {self.remaining()} bytes left")
        return size

    def opaque_view(self, what: str = "opaque", limit: int | None = None) -> memoryview:
        """opaque<limit> as a view of the buffer: no copy (for bulk data, READ's).

        The view keeps the whole buffer alive; use it for payloads, not small fields.
        """
        size = self._length(what, limit)
        padded = (size + 3) & ~3
        start = self._need(padded, what)
        self._pos = start + padded
        return memoryview(self._data)[start : start + size]

    def opaque(self, what: str = "opaque", limit: int | None = None) -> bytes:
        """opaque<limit>: length word checked against ``limit`` and what remains."""
        return self.fixed_opaque(self._length(what, limit), what)

    def string(self, what: str = "utf8string", limit: int | None = None) -> str:
        """A UTF-8 string; invalid UTF-8 is kept with surrogate escapes, not crashed on."""
        return self.opaque(what, limit).decode("utf-8", "surrogateescape")

    def string_bytes(self, what: str = "component4", limit: int | None = None) -> bytes:
        """A name as raw bytes (FUSE names are bytes)."""
        return self.opaque(what, limit)

    # -- composites -----------------------------------------------------------------
    def array(
        self, unpack_item: Callable[[], T], what: str, limit: int | None = None, min_item: int = 4
    ) -> list[T]:
        """Counted array<limit>; the count is checked before any item is read.

        ``min_item`` is the smallest encoding of one item in bytes, so a hostile count
        cannot make the decoder allocate more than the buffer could hold.
        """
        pos = self._pos
        count = self.uint32(what)
        if limit is not None and count > limit:
            raise XdrError(what, pos, f"count {count} exceeds the maximum {limit}")
        if count * min_item > self._end - self._pos:
            raise XdrError(what, pos, f"count {count} cannot fit in {self.remaining()} bytes")
        return [unpack_item() for _ in range(count)]

    def struct_array(self, cls: type[_U], limit: int | None = None, min_item: int = 4) -> list[_U]:
        return self.array(lambda: cls.unpack(self), cls.__name__, limit, min_item)

    def optional(self, cls: type[_U]) -> _U | None:
        """XDR optional-data (``T *``)."""
        if self.boolean(cls.__name__ + "*"):
            return cls.unpack(self)
        return None

    def uint32_array(self, what: str, limit: int | None = None) -> list[int]:
        """Counted ``unsigned int<limit>``: the count is checked against ``limit`` and the
        bytes left, then the words are decoded in one pass (no per-word Python call, so
        a long array from a hostile peer costs little time)."""
        pos = self._pos
        count = self.uint32(what)
        if limit is not None and count > limit:
            raise XdrError(what, pos, f"count {count} exceeds the maximum {limit}")
        if count * 4 > self.remaining():
            raise XdrError(what, pos, f"count {count} cannot fit in {self.remaining()} bytes")
        return self._words(count, what)

    def bitmap4(self, what: str = "bitmap4", keep: int | None = None) -> list[int]:
        """bitmap4 (RFC 8881 section 3.2): a counted array of uint32 words.

        Args:
            what: the field, for errors (e.g. ``"fattr4.attrmask"``).
            keep: if given, keep only the first ``keep`` words and skip the rest (a
                count of words): for a caller that cannot use bits beyond them.  The
                whole length is checked first, so a bitmap longer than the data is
                still an error.

        Returns:
            the words, at most ``keep`` of them.

        Raises:
            XdrError: ``what`` when the bitmap4 is longer than the bytes left (before
                anything is allocated for it) or the buffer is short.
        """
        pos = self._pos
        count = self.uint32(what)
        left = self.remaining()
        if count * 4 > left:
            raise XdrError(
                what, pos, f"bitmap4 of {count} words needs {count * 4} bytes, {left} left"
            )
        kept = count if keep is None else min(count, max(keep, 0))
        words = self._words(kept, what)
        self._pos += 4 * (count - kept)
        return words

    def _words(self, count: int, what: str) -> list[int]:
        """``count`` big-endian uint32 words at the current position, decoded in bulk."""
        pos = self._need(4 * count, what)
        words = array.array(_WORD_ARRAY)
        words.frombytes(memoryview(self._data)[pos : pos + 4 * count])
        if not _BIG_ENDIAN_HOST:
            words.byteswap()
        self._pos = pos + 4 * count
        return words.tolist()


class Unpackable(Protocol):
    @classmethod
    def unpack(cls, dec: Decoder) -> Self: ...


_U = TypeVar("_U", bound=Unpackable)


def encode(value: Packable) -> bytes:
    """Encode one value to bytes."""
    enc = Encoder()
    value.pack(enc)
    return enc.getvalue()


def decode(cls: type[_U], data: bytes) -> _U:
    """Decode exactly one ``cls`` from ``data``; trailing bytes are an error."""
    dec = Decoder(data)
    value = cls.unpack(dec)
    dec.done_or_raise(cls.__name__)
    return value

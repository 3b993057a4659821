"""File attributes: bitmap4 helpers, the fattr4 value codecs and ``NFSAttrs``.

RFC 8881 section 5: an ``fattr4`` is a bitmap plus the XDR of each attribute whose bit
is set, concatenated in increasing attribute number.  The values are not
self-describing, so a set bit this module cannot decode stops decoding: every attribute
it knows before that bit has been decoded, and the values from there on cannot be
located.

Bitmaps come from the peer and may be of any length (a hostile 1 MiB bitmap has 8
million bits set).  Nothing here expands a wire bitmap into all its bits: decoding
walks the words lazily and stops at the first bit it cannot decode, and a bitmap-valued
attribute keeps only the words that can hold an attribute number this client knows
(``KNOWN_ATTR_WORDS``), after its length has been checked against the bytes left.

Each attribute is one line of ``ATTR_CODECS``: ``FATTR4 -> (NFSAttrs field, pack,
unpack)``.  To support a new attribute, add a field to ``NFSAttrs`` and a line there.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from session.errors import XdrError
from session.xdr.codec import Decoder, Encoder, Packable
from session.xdr.const import FATTR4, NFS4_FHSIZE, layouttype4, nfs_ftype4, nfsstat4
from session.xdr.nfs4 import (
    change_policy4,
    fattr4,
    fs4_status,
    fs_locations4,
    fs_locations_info4,
    fsid4,
    mode_masked4,
    nfsace4,
    nfsacl41,
    nfstime4,
    settime4,
    specdata4,
)

__all__ = [
    "ATTR_CODECS",
    "KNOWN_ATTR_WORDS",
    "NFSAttrs",
    "bitmap4_bits",
    "bitmap4_from",
    "bitmap4_to_set",
    "decode_fattr4",
    "decode_fattr4_partial",
    "encode_fattr4",
    "fattr4",
]


# -- bitmap4, RFC 8881 section 3.2 -----------------------------------------------------
def bitmap4_from(attrs: Iterable[int]) -> list[int]:
    """bitmap4 words with bit ``n`` set for each attribute number ``n`` (no trailing
    zero words; an empty iterable gives ``[]``).

    Raises:
        ValueError: for a negative attribute number.
    """
    words: list[int] = []
    for attr in attrs:
        if attr < 0:
            raise ValueError(f"bitmap4: negative bit {attr}")
        index, bit = divmod(int(attr), 32)
        if index >= len(words):
            words.extend([0] * (index + 1 - len(words)))
        words[index] |= 1 << bit
    return words


def bitmap4_bits(words: Sequence[int], limit: int | None = None) -> Iterator[int]:
    """The bit numbers set in bitmap4 ``words``, lazily, in increasing order.

    Args:
        words: bitmap4 words (bit ``n`` is word ``n // 32``, bit ``n % 32``).
        limit: if given, only bits below it (a count of bits): words wholly at or above
            it are never looked at.

    Costs O(words looked at) with nothing allocated per word that has no bit set; a
    caller that stops early (``decode_fattr4`` at an unknown attribute) never touches
    the rest of a huge hostile bitmap.
    """
    count = len(words)
    if limit is not None:
        count = min(count, (max(limit, 0) + 31) // 32)
    for index in range(count):
        word = words[index]
        base = index * 32
        while word:
            low = word & -word
            bit = base + low.bit_length() - 1
            if limit is not None and bit >= limit:
                return
            yield bit
            word ^= low


def bitmap4_to_set(words: Sequence[int], limit: int | None = None) -> set[int]:
    """The bit numbers set in bitmap4 ``words`` (only those below ``limit`` if given).

    Without ``limit`` the set has one member per set bit: a bitmap from the wire can
    have millions (a 1 MiB all-ones bitmap has 8 388 608), so give ``limit`` (e.g. one
    past the highest attribute number the caller handles) for anything a peer sent, and
    ``bitmap4_bits`` to stop at the first bit that matters.
    """
    return set(bitmap4_bits(words, limit))


# -- per-attribute value codecs --------------------------------------------------------
def _p_u32(enc: Encoder, value: Any) -> None:
    enc.uint32(value)


def _u_u32(dec: Decoder) -> Any:
    return dec.uint32()


def _p_u64(enc: Encoder, value: Any) -> None:
    enc.uint64(value)


def _u_u64(dec: Decoder) -> Any:
    return dec.uint64()


def _p_bool(enc: Encoder, value: Any) -> None:
    enc.boolean(value)


def _u_bool(dec: Decoder) -> Any:
    return dec.boolean()


def _p_enum(enc: Encoder, value: Any) -> None:
    enc.int32(value)


def _u_ftype(dec: Decoder) -> Any:
    return dec.enum(nfs_ftype4)


def _u_nfsstat(dec: Decoder) -> Any:
    return dec.enum(nfsstat4)


def _p_struct(enc: Encoder, value: Packable) -> None:
    value.pack(enc)


def _p_bitmap(enc: Encoder, value: Any) -> None:
    enc.uint32(len(value))
    for word in value:
        enc.uint32(word)


def _u_bitmap(dec: Decoder) -> Any:
    """A bitmap4 value (supported_attrs, suppattr_exclcreat): the length is checked
    against the bytes left, then only the first ``KNOWN_ATTR_WORDS`` words are kept
    (no attribute this client knows lies beyond them) and the rest is skipped."""
    return dec.bitmap4("bitmap4", keep=KNOWN_ATTR_WORDS)


def _p_fh(enc: Encoder, value: Any) -> None:
    enc.opaque(value)


def _u_fh(dec: Decoder) -> Any:
    return dec.opaque("nfs_fh4", NFS4_FHSIZE)


def _p_str(enc: Encoder, value: Any) -> None:
    enc.string(value)


def _u_str(dec: Decoder) -> Any:
    return dec.string()


def _p_acl(enc: Encoder, value: Any) -> None:
    enc.struct_array(value)


def _u_acl(dec: Decoder) -> Any:
    return dec.struct_array(nfsace4, min_item=16)


def _p_layouttypes(enc: Encoder, value: Any) -> None:
    enc.uint32(len(value))
    for item in value:
        enc.int32(item)


def _u_layouttypes(dec: Decoder) -> Any:
    return dec.array(lambda: dec.enum(layouttype4), "layouttype4<>")


_AttrPack = Callable[[Encoder, Any], None]
_AttrUnpack = Callable[[Decoder], Any]

# fmt: off
ATTR_CODECS: Final[dict[FATTR4, tuple[str, _AttrPack, _AttrUnpack]]] = {
    FATTR4.FATTR4_SUPPORTED_ATTRS:    ("supported_attrs", _p_bitmap, _u_bitmap),
    FATTR4.FATTR4_TYPE:               ("type", _p_enum, _u_ftype),
    FATTR4.FATTR4_FH_EXPIRE_TYPE:     ("fh_expire_type", _p_u32, _u_u32),
    FATTR4.FATTR4_CHANGE:             ("change", _p_u64, _u_u64),
    FATTR4.FATTR4_SIZE:               ("size", _p_u64, _u_u64),
    FATTR4.FATTR4_LINK_SUPPORT:       ("link_support", _p_bool, _u_bool),
    FATTR4.FATTR4_SYMLINK_SUPPORT:    ("symlink_support", _p_bool, _u_bool),
    FATTR4.FATTR4_NAMED_ATTR:         ("named_attr", _p_bool, _u_bool),
    FATTR4.FATTR4_FSID:               ("fsid", _p_struct, fsid4.unpack),
    FATTR4.FATTR4_UNIQUE_HANDLES:     ("unique_handles", _p_bool, _u_bool),
    FATTR4.FATTR4_LEASE_TIME:         ("lease_time", _p_u32, _u_u32),
    FATTR4.FATTR4_RDATTR_ERROR:       ("rdattr_error", _p_enum, _u_nfsstat),
    FATTR4.FATTR4_ACL:                ("acl", _p_acl, _u_acl),
    FATTR4.FATTR4_ACLSUPPORT:         ("aclsupport", _p_u32, _u_u32),
    FATTR4.FATTR4_ARCHIVE:            ("archive", _p_bool, _u_bool),
    FATTR4.FATTR4_CANSETTIME:         ("cansettime", _p_bool, _u_bool),
    FATTR4.FATTR4_CASE_INSENSITIVE:   ("case_insensitive", _p_bool, _u_bool),
    FATTR4.FATTR4_CASE_PRESERVING:    ("case_preserving", _p_bool, _u_bool),
    FATTR4.FATTR4_CHOWN_RESTRICTED:   ("chown_restricted", _p_bool, _u_bool),
    FATTR4.FATTR4_FILEHANDLE:         ("filehandle", _p_fh, _u_fh),
    FATTR4.FATTR4_FILEID:             ("fileid", _p_u64, _u_u64),
    FATTR4.FATTR4_FILES_AVAIL:        ("files_avail", _p_u64, _u_u64),
    FATTR4.FATTR4_FILES_FREE:         ("files_free", _p_u64, _u_u64),
    FATTR4.FATTR4_FILES_TOTAL:        ("files_total", _p_u64, _u_u64),
    FATTR4.FATTR4_FS_LOCATIONS:       ("fs_locations", _p_struct, fs_locations4.unpack),
    FATTR4.FATTR4_HIDDEN:             ("hidden", _p_bool, _u_bool),
    FATTR4.FATTR4_HOMOGENEOUS:        ("homogeneous", _p_bool, _u_bool),
    FATTR4.FATTR4_MAXFILESIZE:        ("maxfilesize", _p_u64, _u_u64),
    FATTR4.FATTR4_MAXLINK:            ("maxlink", _p_u32, _u_u32),
    FATTR4.FATTR4_MAXNAME:            ("maxname", _p_u32, _u_u32),
    FATTR4.FATTR4_MAXREAD:            ("maxread", _p_u64, _u_u64),
    FATTR4.FATTR4_MAXWRITE:           ("maxwrite", _p_u64, _u_u64),
    FATTR4.FATTR4_MIMETYPE:           ("mimetype", _p_str, _u_str),
    FATTR4.FATTR4_MODE:               ("mode", _p_u32, _u_u32),
    FATTR4.FATTR4_NO_TRUNC:           ("no_trunc", _p_bool, _u_bool),
    FATTR4.FATTR4_NUMLINKS:           ("numlinks", _p_u32, _u_u32),
    FATTR4.FATTR4_OWNER:              ("owner", _p_str, _u_str),
    FATTR4.FATTR4_OWNER_GROUP:        ("owner_group", _p_str, _u_str),
    FATTR4.FATTR4_QUOTA_AVAIL_HARD:   ("quota_avail_hard", _p_u64, _u_u64),
    FATTR4.FATTR4_QUOTA_AVAIL_SOFT:   ("quota_avail_soft", _p_u64, _u_u64),
    FATTR4.FATTR4_QUOTA_USED:         ("quota_used", _p_u64, _u_u64),
    FATTR4.FATTR4_RAWDEV:             ("rawdev", _p_struct, specdata4.unpack),
    FATTR4.FATTR4_SPACE_AVAIL:        ("space_avail", _p_u64, _u_u64),
    FATTR4.FATTR4_SPACE_FREE:         ("space_free", _p_u64, _u_u64),
    FATTR4.FATTR4_SPACE_TOTAL:        ("space_total", _p_u64, _u_u64),
    FATTR4.FATTR4_SPACE_USED:         ("space_used", _p_u64, _u_u64),
    FATTR4.FATTR4_SYSTEM:             ("system", _p_bool, _u_bool),
    FATTR4.FATTR4_TIME_ACCESS:        ("time_access", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_TIME_ACCESS_SET:    ("time_access_set", _p_struct, settime4.unpack),
    FATTR4.FATTR4_TIME_BACKUP:        ("time_backup", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_TIME_CREATE:        ("time_create", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_TIME_DELTA:         ("time_delta", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_TIME_METADATA:      ("time_metadata", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_TIME_MODIFY:        ("time_modify", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_TIME_MODIFY_SET:    ("time_modify_set", _p_struct, settime4.unpack),
    FATTR4.FATTR4_MOUNTED_ON_FILEID:  ("mounted_on_fileid", _p_u64, _u_u64),
    FATTR4.FATTR4_DIR_NOTIF_DELAY:    ("dir_notif_delay", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_DIRENT_NOTIF_DELAY: ("dirent_notif_delay", _p_struct, nfstime4.unpack),
    FATTR4.FATTR4_DACL:               ("dacl", _p_struct, nfsacl41.unpack),
    FATTR4.FATTR4_SACL:               ("sacl", _p_struct, nfsacl41.unpack),
    FATTR4.FATTR4_CHANGE_POLICY:      ("change_policy", _p_struct, change_policy4.unpack),
    FATTR4.FATTR4_FS_STATUS:          ("fs_status", _p_struct, fs4_status.unpack),
    FATTR4.FATTR4_FS_LAYOUT_TYPES:    ("fs_layout_types", _p_layouttypes, _u_layouttypes),
    FATTR4.FATTR4_LAYOUT_BLKSIZE:     ("layout_blksize", _p_u32, _u_u32),
    FATTR4.FATTR4_LAYOUT_ALIGNMENT:   ("layout_alignment", _p_u32, _u_u32),
    FATTR4.FATTR4_FS_LOCATIONS_INFO:  ("fs_locations_info", _p_struct, fs_locations_info4.unpack),
    FATTR4.FATTR4_RETENTION_HOLD:     ("retention_hold", _p_u64, _u_u64),
    FATTR4.FATTR4_MODE_SET_MASKED:    ("mode_set_masked", _p_struct, mode_masked4.unpack),
    FATTR4.FATTR4_SUPPATTR_EXCLCREAT: ("suppattr_exclcreat", _p_bitmap, _u_bitmap),
    FATTR4.FATTR4_FS_CHARSET_CAP:     ("fs_charset_cap", _p_u32, _u_u32),
}
# fmt: on
"""Attribute number -> (``NFSAttrs`` field, pack, unpack), RFC 8881 sections 5.6-5.8.

Not decoded (pNFS and retention details): layout_hint, layout_types, mdsthreshold,
retention_get, retention_set, retentevt_get, retentevt_set."""

_ORDERED: Final = sorted(ATTR_CODECS.items())
_CODEC_BY_BIT: Final[dict[int, tuple[str, _AttrPack, _AttrUnpack]]] = {
    int(attr): codec for attr, codec in ATTR_CODECS.items()
}

KNOWN_ATTR_WORDS: Final = max(int(attr) for attr in FATTR4) // 32 + 1
"""bitmap4 words that can hold an attribute number this client knows (3: up to 95)."""

log = logging.getLogger("session.xdr")


@dataclass(slots=True)
class NFSAttrs:
    """Decoded attribute values: one optional field per attribute, ``None`` = absent.

    Units: sizes and space in bytes, times as ``nfstime4``, ``lease_time`` in seconds,
    ``mode`` the permission bits (MODE4_*, no file type), bitmaps as bitmap4 words.
    """

    supported_attrs: list[int] | None = None
    type: nfs_ftype4 | None = None
    fh_expire_type: int | None = None
    change: int | None = None
    size: int | None = None
    link_support: bool | None = None
    symlink_support: bool | None = None
    named_attr: bool | None = None
    fsid: fsid4 | None = None
    unique_handles: bool | None = None
    lease_time: int | None = None
    rdattr_error: nfsstat4 | None = None
    acl: list[nfsace4] | None = None
    aclsupport: int | None = None
    archive: bool | None = None
    cansettime: bool | None = None
    case_insensitive: bool | None = None
    case_preserving: bool | None = None
    chown_restricted: bool | None = None
    filehandle: bytes | None = None
    fileid: int | None = None
    files_avail: int | None = None
    files_free: int | None = None
    files_total: int | None = None
    fs_locations: fs_locations4 | None = None
    hidden: bool | None = None
    homogeneous: bool | None = None
    maxfilesize: int | None = None
    maxlink: int | None = None
    maxname: int | None = None
    maxread: int | None = None
    maxwrite: int | None = None
    mimetype: str | None = None
    mode: int | None = None
    no_trunc: bool | None = None
    numlinks: int | None = None
    owner: str | None = None
    owner_group: str | None = None
    quota_avail_hard: int | None = None
    quota_avail_soft: int | None = None
    quota_used: int | None = None
    rawdev: specdata4 | None = None
    space_avail: int | None = None
    space_free: int | None = None
    space_total: int | None = None
    space_used: int | None = None
    system: bool | None = None
    time_access: nfstime4 | None = None
    time_access_set: settime4 | None = None
    time_backup: nfstime4 | None = None
    time_create: nfstime4 | None = None
    time_delta: nfstime4 | None = None
    time_metadata: nfstime4 | None = None
    time_modify: nfstime4 | None = None
    time_modify_set: settime4 | None = None
    mounted_on_fileid: int | None = None
    dir_notif_delay: nfstime4 | None = None
    dirent_notif_delay: nfstime4 | None = None
    dacl: nfsacl41 | None = None
    sacl: nfsacl41 | None = None
    change_policy: change_policy4 | None = None
    fs_status: fs4_status | None = None
    fs_layout_types: list[layouttype4] | None = None
    layout_blksize: int | None = None
    layout_alignment: int | None = None
    fs_locations_info: fs_locations_info4 | None = None
    retention_hold: int | None = None
    mode_set_masked: mode_masked4 | None = None
    suppattr_exclcreat: list[int] | None = None
    fs_charset_cap: int | None = None

    def present(self) -> set[FATTR4]:
        """The attributes whose field is not None."""
        return {attr for attr, (name, _, _) in _ORDERED if getattr(self, name) is not None}


def decode_fattr4_partial(f: fattr4) -> tuple[NFSAttrs, int | None]:
    """Decode the attributes of ``f`` in increasing bit order, up to the first set bit
    that has no codec here (RFC 8881 section 5: values are concatenated in bit order and
    not self-describing, so nothing after that bit can be located).

    ``f.attrmask`` is walked lazily: the cost is O(words up to the stopping bit), never
    one object per set bit, whatever the length of the bitmap.

    Returns:
        ``(attrs, stopped_at)``: the decoded values, and the first set bit that was not
        decoded (an attribute number; the bytes from its value on are left unread), or
        None if every set bit was decoded and ``attr_vals`` consumed exactly.

    Raises:
        XdrError: ``fattr4.<name>`` for a value that does not decode (short, bad
            length...), with the offset in ``attr_vals``; ``fattr4`` for bytes left over
            after the last attribute when every set bit was decoded.
    """
    attrs, stopped_at, _ = _decode_known(f)
    return attrs, stopped_at


def decode_fattr4(f: fattr4) -> NFSAttrs:
    """Decode every attribute set in ``f.attrmask`` that this module knows, in increasing
    bit order, stopping at the first set bit it cannot decode (``decode_fattr4_partial``;
    the stop is logged at DEBUG on ``session.xdr``).

    A reply carries the attributes that were asked for, all of which have codecs here,
    so a stop means the server sent attributes nobody asked for; the ones before it are
    still returned.

    Raises:
        XdrError: as ``decode_fattr4_partial``.
    """
    attrs, stopped_at, offset = _decode_known(f)
    if stopped_at is not None:
        log.debug(
            "fattr4: no decoder for attribute %d; attr_vals bytes %d..%d left undecoded",
            stopped_at,
            offset,
            len(f.attr_vals),
        )
    return attrs


def _decode_known(f: fattr4) -> tuple[NFSAttrs, int | None, int]:
    """``(attrs, first undecoded bit or None, offset in attr_vals where decoding ended)``.

    Through the bitmap's ``_Plan`` when it has one; anything the plan cannot take
    (short values, a bool that is not 0 or 1, bytes left over) is decoded again
    attribute by attribute, which says exactly what was wrong.
    """
    plan = _plan_for(f.attrmask)
    if plan is not None:
        try:
            return plan.decode(f.attr_vals)
        except (struct.error, XdrError, _NotPlain):
            pass
    return _decode_each(f)


def _decode_each(f: fattr4) -> tuple[NFSAttrs, int | None, int]:
    attrs = NFSAttrs()
    dec = Decoder(f.attr_vals)
    for bit in bitmap4_bits(f.attrmask):
        codec = _CODEC_BY_BIT.get(bit)
        if codec is None:
            return attrs, bit, dec.offset
        name, _, unpack = codec
        try:
            value = unpack(dec)
        except XdrError as exc:
            raise XdrError(f"fattr4.{name}", exc.offset, exc.detail) from None
        setattr(attrs, name, value)
    dec.done_or_raise("fattr4")
    return attrs, None, dec.offset


class _NotPlain(Exception):
    """A fixed-size value the plan will not build (a bool other than 0 or 1)."""


def _as_bool(value: int) -> bool:
    if value > 1:
        raise _NotPlain
    return value == 1


def _as_enum(cls: Any) -> Callable[[int], Any]:
    table = cls._value2member_map_

    def build(value: int) -> Any:
        member = table.get(value)
        return member if member is not None else cls(value)

    return build


#: Values of a fixed XDR size (RFC 4506 sections 4.1-4.5): the attribute's decoder ->
#: (its struct format, what builds the value from the unpacked numbers; None: the one
#: number itself).  Runs of these are decoded by one ``struct.unpack_from``.
_FIXED: Final[dict[_AttrUnpack, tuple[str, Callable[..., Any] | None]]] = {
    _u_u32: ("I", None),
    _u_u64: ("Q", None),
    _u_bool: ("I", _as_bool),
    _u_ftype: ("i", _as_enum(nfs_ftype4)),
    _u_nfsstat: ("i", _as_enum(nfsstat4)),
    fsid4.unpack: ("QQ", fsid4),
    nfstime4.unpack: ("qI", nfstime4),
    specdata4.unpack: ("II", specdata4),
}

#: Bitmaps longer than this (words) are decoded without a plan (and not remembered).
_PLAN_WORDS: Final = 4
#: Plans remembered at most (a server sends a handful of different bitmaps).
_PLANS_KEPT: Final = 128


@dataclass(frozen=True, slots=True)
class _Run:
    """Consecutive fixed-size values: one struct, then (field, builder, count) each."""

    st: struct.Struct
    fields: tuple[tuple[str, Callable[..., Any] | None, int], ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to decode the attr_vals of one bitmap4 (RFC 8881 section 3.3.7): values
    in increasing bit order, fixed-size runs at once, the others one by one, up to
    ``stopped_at`` (the first set bit without a codec, or None)."""

    steps: tuple[_Run | tuple[str, _AttrUnpack], ...]
    stopped_at: int | None

    def decode(self, data: bytes | memoryview) -> tuple[NFSAttrs, int | None, int]:
        """As ``_decode_known``; raises ``struct.error``, ``XdrError`` or ``_NotPlain``
        on anything but well-formed values (the caller then decodes one by one)."""
        attrs = NFSAttrs()
        pos = 0
        for step in self.steps:
            if isinstance(step, _Run):
                values = step.st.unpack_from(data, pos)
                pos += step.st.size
                i = 0
                for name, build, count in step.fields:
                    if build is None:
                        setattr(attrs, name, values[i])
                    elif count == 1:
                        setattr(attrs, name, build(values[i]))
                    else:
                        setattr(attrs, name, build(*values[i : i + count]))
                    i += count
            else:
                name, unpack = step
                dec = Decoder(data, pos)
                setattr(attrs, name, unpack(dec))
                pos = dec.offset
        if self.stopped_at is None and pos != len(data):
            raise _NotPlain
        return attrs, self.stopped_at, pos


_PLANS: dict[tuple[int, ...], _Plan] = {}


def _plan_for(attrmask: Sequence[int]) -> _Plan | None:
    """The plan of ``attrmask`` (made once, then remembered), or None for a bitmap
    longer than ``_PLAN_WORDS`` words."""
    if len(attrmask) > _PLAN_WORDS:
        return None
    key = tuple(attrmask)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _make_plan(key)
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _make_plan(attrmask: Sequence[int]) -> _Plan:
    steps: list[_Run | tuple[str, _AttrUnpack]] = []
    formats: list[str] = []
    fields: list[tuple[str, Callable[..., Any] | None, int]] = []

    def close_run() -> None:
        if fields:
            steps.append(_Run(struct.Struct(">" + "".join(formats)), tuple(fields)))
            formats.clear()
            fields.clear()

    stopped_at = None
    for bit in bitmap4_bits(attrmask):
        codec = _CODEC_BY_BIT.get(bit)
        if codec is None:
            stopped_at = bit
            break
        name, _, unpack = codec
        fixed = _FIXED.get(unpack)
        if fixed is None:
            close_run()
            steps.append((name, unpack))
            continue
        fmt, build = fixed
        formats.append(fmt)
        fields.append((name, build, len(fmt)))
    close_run()
    return _Plan(tuple(steps), stopped_at)


def encode_fattr4(attrs: NFSAttrs, only: Container[int] | None = None) -> fattr4:
    """Encode every attribute of ``attrs`` that is not None, in increasing bit order.

    Args:
        attrs: the values.
        only: if given, encode just the attributes in it (a server answering GETATTR
            with the requested set).
    """
    enc = Encoder()
    bits: list[int] = []
    for attr, (name, pack, _) in _ORDERED:
        value = getattr(attrs, name)
        if value is None or (only is not None and attr not in only):
            continue
        pack(enc, value)
        bits.append(attr)
    return fattr4(bitmap4_from(bits), enc.getvalue())

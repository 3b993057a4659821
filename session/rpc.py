"""ONC RPC version 2 messages and TCP record marking (RFC 5531), sans-I/O.

Nothing here touches a socket or trio: bytes go in, records, messages and exceptions
come out.  ``session.transport`` is the I/O shell around it.

* Record marking, RFC 5531 section 11: :class:`RecordReader` (bytes in, whole records
  out) and :func:`frame_record` (a record out, framed pieces to send).
* Messages, RFC 5531 section 9: :func:`encode_call` / :func:`decode_call`,
  :func:`encode_accepted_reply` / :func:`encode_rejected_reply` / :func:`decode_reply`,
  and :func:`peek_xid_and_type` for demultiplexing replies from backchannel calls.
* Authentication, RFC 5531 section 8.2 and appendix A: :class:`opaque_auth`,
  :class:`authsys_parms`, and the :class:`Credential` protocol with :class:`AuthNone`
  and :class:`AuthSys`.  A credential seals each transmission of a call
  (:class:`SealedCall`: header, body pieces, reply check), which is what lets
  RPCSEC_GSS (``session.gss``) sign or encrypt arguments and results per call.

A reply that is not an accepted SUCCESS is raised as an :class:`~session.errors.RpcError`
subclass naming the condition (:class:`ProgMismatch`, :class:`AuthError`, ...).
"""

from __future__ import annotations

import errno as _errno
import functools
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, Self

from session.errors import ReplyTooLarge, RpcError, XdrError
from session.xdr.codec import Decoder, Encoder, Gathered, OpenEnum

__all__ = [
    "DIRECT_RECORD_MIN",
    "LAST_FRAGMENT",
    "MAX_AUTH_BYTES",
    "MAX_FRAGMENT",
    "MAX_MACHINE_NAME",
    "MAX_RECORD_DEFAULT",
    "NEGOTIATED_MAXIMUM",
    "NGRPS",
    "NULL_AUTH",
    "PRE_SESSION_MAXIMUM",
    "PRE_SESSION_MAX_RECORD",
    "RPC_HEADER_ROOM",
    "RPC_VERSION",
    "AuthError",
    "AuthNone",
    "AuthSys",
    "CallArgs",
    "Credential",
    "GarbageArgs",
    "Payload",
    "PlainCall",
    "ProcUnavail",
    "ProgMismatch",
    "ProgUnavail",
    "RecordReader",
    "RecordTooLarge",
    "RpcCall",
    "RpcCaller",
    "RpcMismatch",
    "RpcReply",
    "SealedCall",
    "SystemErr",
    "UnsupportedRpcVersion",
    "accept_stat",
    "arg_bytes",
    "arg_pieces",
    "auth_flavor",
    "auth_stat",
    "authsys_parms",
    "decode_call",
    "decode_reply",
    "encode_accepted_reply",
    "encode_call",
    "encode_call_header",
    "encode_call_prefix",
    "encode_rejected_reply",
    "frame_record",
    "msg_type",
    "opaque_auth",
    "peek_xid_and_type",
    "reject_stat",
    "reply_stat",
    "session_max_record",
]

RPC_VERSION: Final = 2
"""``rpcvers`` of every call (RFC 5531 section 9: "MUST be equal to 2")."""

MAX_AUTH_BYTES: Final = 400
"""Largest ``opaque_auth`` body in bytes (RFC 5531 section 8.2)."""

MAX_MACHINE_NAME: Final = 255
"""Largest ``authsys_parms.machinename`` in bytes (RFC 5531 appendix A)."""

NGRPS: Final = 16
"""Largest ``authsys_parms.gids`` array, a count (RFC 5531 appendix A)."""

LAST_FRAGMENT: Final = 0x80000000
"""Record mark bit saying "this fragment ends the record" (RFC 5531 section 11)."""

MAX_FRAGMENT: Final = 0x7FFFFFFF
"""Largest fragment length the 31-bit record mark can express, in bytes."""

MAX_RECORD_DEFAULT: Final = 64 * 1024 * 1024 + 64 * 1024
"""Default record bound in bytes: a 64 MiB READ/WRITE payload plus 64 KiB for headers.
Only for peers with no negotiated sizes (the test server's side); an NFSv4.1 client
uses ``PRE_SESSION_MAX_RECORD`` until CREATE_SESSION, then ``session_max_record``."""

PRE_SESSION_MAX_RECORD: Final = 64 * 1024
"""Largest record a client accepts before a session exists, in bytes.

Before CREATE_SESSION there are no negotiated sizes, and the replies that can come are
NULL, EXCHANGE_ID, CREATE_SESSION, DESTROY_* and BIND_CONN_TO_SESSION.  The largest is
EXCHANGE_ID4resok (RFC 8881 section 18.35): the RPC reply header with a verifier of up
to ``MAX_AUTH_BYTES`` (about 430 bytes), ``eir_server_owner.so_major_id`` and
``eir_server_scope`` of up to NFS4_OPAQUE_LIMIT (1024) bytes each, an implementation id
with two strings (a few hundred bytes in practice), and a state_protect4_r (SP4_NONE is
4 bytes): about 5 KiB at the very most.  64 KiB leaves twelve times that, while keeping
what a hostile server can make the client buffer before any negotiation small."""

RPC_HEADER_ROOM: Final = 1024
"""Bytes allowed on top of the back channel's ``ca_maxrequestsize`` for the RPC call
header: xid, message type, program, version, procedure (24 bytes) plus a credential and
a verifier of up to 408 bytes each (RFC 5531 section 8.2).  RFC 8881 section 18.36
counts RPC headers inside the channel sizes; the room is for servers that do not."""

NEGOTIATED_MAXIMUM: Final = "negotiated maximum"
"""``RecordReader.max_record_source`` once the session's sizes are in force."""

PRE_SESSION_MAXIMUM: Final = "pre-session maximum"
"""``RecordReader.max_record_source`` for ``PRE_SESSION_MAX_RECORD``."""


def session_max_record(fore_maxresponsesize: int, back_maxrequestsize: int) -> int:
    """Largest record a client accepts on a connection of an established session, bytes.

    A connection bound to a session receives fore-channel replies (at most the fore
    channel's ``ca_maxresponsesize``, RPC header included, RFC 8881 section 18.36.3),
    back-channel calls (at most the back channel's ``ca_maxrequestsize``, plus
    ``RPC_HEADER_ROOM``), and may still carry session-less replies (EXCHANGE_ID), so
    the bound is never below ``PRE_SESSION_MAX_RECORD``.

    Args:
        fore_maxresponsesize: ``csr_fore_chan_attrs.ca_maxresponsesize`` in bytes (the
            caller takes the smaller of what it asked and what was granted).
        back_maxrequestsize: ``csr_back_chan_attrs.ca_maxrequestsize`` in bytes (same).

    Raises:
        ValueError: a negative size.
    """
    if fore_maxresponsesize < 0 or back_maxrequestsize < 0:
        raise ValueError(
            f"channel sizes must be >= 0, got {fore_maxresponsesize}, {back_maxrequestsize}"
        )
    return max(fore_maxresponsesize, back_maxrequestsize + RPC_HEADER_ROOM, PRE_SESSION_MAX_RECORD)


_SMALL_PIECE: Final = 4096
"""Fragment pieces shorter than this (bytes) are copied into a shared bytearray."""

DIRECT_RECORD_MIN: Final = 256 * 1024
"""A record sent as one fragment of at least this many bytes (a large READ reply) is
assembled in a buffer of its own, which ``RecordReader.receive_buffer`` offers to the
socket: the bytes are received in place, not received, kept and joined."""

DIRECT_POOL: Final = 8
"""Buffers a ``RecordReader`` keeps for large records, to be used again once nothing
refers to their last record (a count).  A fresh 4 MiB buffer costs page faults and
zeroing, about as much as the copy it saves (measured: 18% of the mount's CPU while
reading)."""

_MARK = struct.Struct(">I")
_TWO_UINT32 = struct.Struct(">II")


# --------------------------------------------------------------------------------------
# Protocol enums, RFC 5531 section 9 (messages) and section 8.2 (authentication)
# --------------------------------------------------------------------------------------


class msg_type(OpenEnum):
    """enum msg_type, RFC 5531 section 9."""

    CALL = 0
    REPLY = 1


class reply_stat(OpenEnum):
    """enum reply_stat, RFC 5531 section 9."""

    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class accept_stat(OpenEnum):
    """enum accept_stat, RFC 5531 section 9: why an accepted call did or did not run."""

    SUCCESS = 0
    PROG_UNAVAIL = 1
    PROG_MISMATCH = 2
    PROC_UNAVAIL = 3
    GARBAGE_ARGS = 4
    SYSTEM_ERR = 5


class reject_stat(OpenEnum):
    """enum reject_stat, RFC 5531 section 9: why a call was rejected outright."""

    RPC_MISMATCH = 0
    AUTH_ERROR = 1


class auth_flavor(OpenEnum):
    """enum auth_flavor, RFC 5531 section 8.2 (RPCSEC_GSS: RFC 2203)."""

    AUTH_NONE = 0
    AUTH_SYS = 1
    AUTH_SHORT = 2
    AUTH_DH = 3
    RPCSEC_GSS = 6


class auth_stat(OpenEnum):
    """enum auth_stat, RFC 5531 section 9 (13 and 14 from RFC 2203 section 5.3.3.3)."""

    AUTH_OK = 0
    AUTH_BADCRED = 1
    AUTH_REJECTEDCRED = 2
    AUTH_BADVERF = 3
    AUTH_REJECTEDVERF = 4
    AUTH_TOOWEAK = 5
    AUTH_INVALIDRESP = 6
    AUTH_FAILED = 7
    AUTH_KERB_GENERIC = 8
    AUTH_TIMEEXPIRE = 9
    AUTH_TKT_FILE = 10
    AUTH_DECODE = 11
    AUTH_NET_ADDR = 12
    RPCSEC_GSS_CREDPROBLEM = 13
    RPCSEC_GSS_CTXPROBLEM = 14


_AUTH_STAT_TEXT: Final[dict[int, str]] = {
    auth_stat.AUTH_OK: "success",
    auth_stat.AUTH_BADCRED: "bad credential (seal broken)",
    auth_stat.AUTH_REJECTEDCRED: "client must begin a new session",
    auth_stat.AUTH_BADVERF: "bad verifier (seal broken)",
    auth_stat.AUTH_REJECTEDVERF: "verifier expired or replayed",
    auth_stat.AUTH_TOOWEAK: "rejected for security reasons",
    auth_stat.AUTH_INVALIDRESP: "bogus response verifier",
    auth_stat.AUTH_FAILED: "reason unknown",
    auth_stat.AUTH_KERB_GENERIC: "kerberos generic error",
    auth_stat.AUTH_TIMEEXPIRE: "time of credential expired",
    auth_stat.AUTH_TKT_FILE: "problem with ticket file",
    auth_stat.AUTH_DECODE: "can't decode authenticator",
    auth_stat.AUTH_NET_ADDR: "wrong net address in ticket",
    auth_stat.RPCSEC_GSS_CREDPROBLEM: "no credentials for user",
    auth_stat.RPCSEC_GSS_CTXPROBLEM: "problem with GSS context",
}


# --------------------------------------------------------------------------------------
# Exceptions: one RpcError subclass per reply condition (RFC 5531 section 9)
# --------------------------------------------------------------------------------------


_RECORD_KIND: Final[dict[int, str]] = {msg_type.REPLY: "reply", msg_type.CALL: "call"}


class RecordTooLarge(ReplyTooLarge):
    """A record mark announced more bytes than the reader accepts (RFC 5531 section 11).

    The stream cannot be resynchronised after this, so the connection must be dropped.
    The same request would get the same reply again (from the server's reply cache, for
    a session), so a caller should fail the request rather than re-send it: this is a
    ``session.errors.ReplyTooLarge`` (a ``TransportError``), which the session does not
    retry.

    The message reads ``reply of N bytes exceeds the negotiated maximum M (xid 0x...)``
    (``call`` / ``record`` when the record is a call or of unknown type; ``at least N``
    when a later fragment of the record was still to come).

    Attributes:
        length: the record length in bytes the peer announced (fragments so far plus
            the offending fragment).
        limit: the bound in bytes (``RecordReader.max_record`` when the record began).
        source: what the bound is, e.g. ``"negotiated maximum"``.
        xid: the record's xid if its first 8 bytes had arrived with the mark, else None.
        mtype: its ``msg_type`` likewise (None: unknown).
        complete: True if ``length`` is the whole record (the mark was the last
            fragment's), False if more fragments were announced to follow.
    """

    def __init__(
        self,
        length: int,
        limit: int,
        *,
        source: str = "maximum",
        xid: int | None = None,
        mtype: msg_type | None = None,
        complete: bool = True,
        context: str = "",
    ) -> None:
        kind = "record" if mtype is None else _RECORD_KIND.get(int(mtype), "record")
        size = f"{length}" if complete else f"at least {length}"
        text = f"{kind} of {size} bytes exceeds the {source} {limit}"
        if xid is not None:
            text += f" (xid 0x{xid:08x})"
        super().__init__(context + text)
        self.length = length
        self.limit = limit
        self.source = source
        self.xid = xid
        self.mtype = mtype
        self.complete = complete

    def with_context(self, context: str) -> RecordTooLarge:
        """The same error with ``context`` (e.g. ``"connection to H:P lost: "``) before
        the message."""
        return RecordTooLarge(
            self.length,
            self.limit,
            source=self.source,
            xid=self.xid,
            mtype=self.mtype,
            complete=self.complete,
            context=context,
        )


class ProgUnavail(RpcError):
    """accept_stat PROG_UNAVAIL: the server does not export the program."""

    errno = _errno.EPFNOSUPPORT

    def __init__(self) -> None:
        super().__init__("RPC PROG_UNAVAIL: the server does not offer this program")


class ProgMismatch(RpcError):
    """accept_stat PROG_MISMATCH: the program version is not supported.

    Attributes:
        low: lowest version the server supports.
        high: highest version the server supports.
    """

    errno = _errno.EPROTONOSUPPORT

    def __init__(self, low: int, high: int) -> None:
        super().__init__(f"RPC PROG_MISMATCH: server supports versions {low}..{high}")
        self.low = low
        self.high = high


class ProcUnavail(RpcError):
    """accept_stat PROC_UNAVAIL: the program has no such procedure."""

    errno = _errno.EOPNOTSUPP

    def __init__(self) -> None:
        super().__init__("RPC PROC_UNAVAIL: the server does not support this procedure")


class GarbageArgs(RpcError):
    """accept_stat GARBAGE_ARGS: the server could not decode the arguments."""

    def __init__(self) -> None:
        super().__init__("RPC GARBAGE_ARGS: the server could not decode the call arguments")


class SystemErr(RpcError):
    """accept_stat SYSTEM_ERR: a server-side failure such as memory allocation."""

    def __init__(self) -> None:
        super().__init__("RPC SYSTEM_ERR: the server failed to process the call")


class RpcMismatch(RpcError):
    """reject_stat RPC_MISMATCH: the server does not speak RPC version 2.

    Attributes:
        low: lowest RPC version the server supports.
        high: highest RPC version the server supports.
    """

    errno = _errno.EPROTONOSUPPORT

    def __init__(self, low: int, high: int) -> None:
        super().__init__(f"RPC RPC_MISMATCH: server supports RPC versions {low}..{high}")
        self.low = low
        self.high = high


class AuthError(RpcError):
    """reject_stat AUTH_ERROR: the server refused the credential or verifier.

    Attributes:
        stat: the ``auth_stat`` the server gave (unknown values kept).
    """

    errno = _errno.EACCES

    def __init__(self, stat: auth_stat) -> None:
        text = _AUTH_STAT_TEXT.get(stat, "unknown auth_stat")
        super().__init__(f"RPC AUTH_ERROR: {stat.name} ({text})")
        self.stat = stat


class UnsupportedRpcVersion(RpcError):
    """A received call has ``rpcvers`` other than 2 (server side, RFC 5531 section 9).

    The receiver should answer ``encode_rejected_reply(xid, RPC_MISMATCH, mismatch=(2, 2))``.

    Attributes:
        xid: the call's transaction id, for the rejection.
        rpcvers: the version the peer sent.
    """

    def __init__(self, xid: int, rpcvers: int) -> None:
        super().__init__(f"RPC call xid=0x{xid:08x} has rpcvers {rpcvers}, only 2 is supported")
        self.xid = xid
        self.rpcvers = rpcvers


# --------------------------------------------------------------------------------------
# Record marking, RFC 5531 section 11
# --------------------------------------------------------------------------------------


class RecordReader:
    """Reassembles RPC records from a TCP byte stream (RFC 5531 section 11).

    Each fragment is a 4-byte big-endian mark (top bit: last fragment of the record;
    low 31 bits: fragment length in bytes) followed by that many bytes.  Zero-length
    fragments are allowed.  Fragment payloads are kept as views of the fed chunks and
    joined once when the record completes, so a record costs one copy however it was
    split: no quadratic behaviour for a 1 MiB record arriving in 64 KiB pieces.  Pieces
    under 4 KiB are coalesced into a bytearray, so a peer sending many tiny fragments
    cannot make the bookkeeping outgrow the ``max_record`` bound.

    Args:
        max_record: largest record accepted, in bytes (sum of its fragments).
        source: what that bound is, for the error message (``"negotiated maximum"``).

    A record that comes as one fragment of ``DIRECT_RECORD_MIN`` bytes or more is
    assembled in a buffer of its own instead: ``receive_buffer`` offers the part still
    to come, and ``received`` accounts what a socket wrote there; ``feed`` copies into it
    too.  Such a record is returned as a ``memoryview`` of that buffer.  Up to
    ``DIRECT_POOL`` buffers are kept and used again once no object refers to them (no
    view of their last record is left: CPython's reference count says so);
    ``release_buffers`` drops them.

    ``max_record`` and ``max_record_source`` may be changed at any time (a session sets
    them from CREATE_SESSION); each record is held to the values in force when its
    first fragment mark arrived.  ``feed`` raises :class:`RecordTooLarge` when a mark
    announces more; the reader is then unusable (the stream cannot be resynced).
    """

    def __init__(self, max_record: int = MAX_RECORD_DEFAULT, source: str = "maximum") -> None:
        if max_record < 0:
            raise ValueError(f"max_record must be >= 0, got {max_record}")
        self.max_record = max_record
        self.max_record_source = source
        self._limit = max_record  # the bound of the record being read
        self._limit_source = source
        self._mark = bytearray()  # partial record mark, 0..3 bytes
        self._frag_left = -1  # bytes left in the current fragment; -1: reading a mark
        self._last = False  # the current fragment ends its record
        self._pieces: list[memoryview | bytearray] = []  # payload of the current record
        self._record_len = 0  # bytes of the current record announced so far
        self._failed: RecordTooLarge | None = None
        self._direct: bytearray | None = None  # a large record assembled in place
        self._direct_len = 0  # its length, bytes (the buffer may be longer)
        self._direct_filled = 0  # bytes of it received so far
        self._pool: list[bytearray] = []  # buffers for large records, maybe in use

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete record (payload only, a count)."""
        return sum(len(p) for p in self._pieces) + self._direct_filled

    def receive_buffer(self) -> memoryview | None:
        """Where the rest of a large record may be received in place, or None.

        Returns:
            a writable view of exactly the bytes the record still lacks, when a record
            of at least ``DIRECT_RECORD_MIN`` bytes in one fragment is being read; the
            caller writes the next bytes of the stream at its start and calls
            ``received`` with their count.  None otherwise (then ``feed``).
        """
        if self._direct is None:
            return None
        return memoryview(self._direct)[self._direct_filled : self._direct_len]

    def received(self, count: int) -> list[bytes | memoryview]:
        """Account ``count`` bytes written at the start of ``receive_buffer()``.

        Returns:
            the record, if those bytes completed it (a view of its buffer), else [].

        Raises:
            ValueError: no record is being received in place, or ``count`` is negative
                or more than it lacks.
        """
        if self._direct is None:
            raise ValueError("received(): no record is being received in place")
        if not 0 <= count <= self._frag_left:
            raise ValueError(
                f"received({count}): more than the {self._frag_left} bytes the record lacks"
            )
        self._direct_filled += count
        self._frag_left -= count
        if self._frag_left:
            return []
        return [self._finish_record()]

    @property
    def pooled_bytes(self) -> int:
        """Bytes of the buffers kept for large records (in use or not, a count)."""
        return sum(len(buf) for buf in self._pool)

    def release_buffers(self) -> None:
        """Drop the kept buffers (the connection is idle: give the memory back).  A
        record still referred to keeps its own buffer alive."""
        self._pool.clear()

    def _direct_buffer(self, length: int) -> bytearray:
        """A buffer of at least ``length`` bytes that nothing else refers to."""
        for buf in self._pool:
            # References: the pool's list, ``buf`` here, and getrefcount's argument.
            if len(buf) >= length and sys.getrefcount(buf) == 3:
                return buf
        buf = bytearray(length)
        if len(self._pool) < DIRECT_POOL:
            self._pool.append(buf)
        return buf

    @property
    def failed(self) -> RecordTooLarge | None:
        """The error that made this reader unusable, or None."""
        return self._failed

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
        """Consume ``data`` (any split of the stream) and return the records it completed.

        Args:
            data: the next bytes received.  A ``bytes`` object is referenced without
                copying until its record completes; other buffers are copied first.

        Returns:
            complete record bodies (record marks stripped, fragments joined), in order;
            often empty.  A large record assembled in place is a ``memoryview``.

        Raises:
            RecordTooLarge: a mark announced a record larger than the bound.  Its
                ``xid`` and ``mtype`` are filled in when the record's first 8 bytes are
                at hand (earlier fragments, or ``data`` after the mark); the reader
                never waits for them.  If records completed earlier in the same
                ``data``, they are returned first and the error is left in ``failed``
                (and raised by the next ``feed``).
        """
        if self._failed is not None:
            raise self._failed
        buf = memoryview(data if isinstance(data, bytes) else bytes(data))
        records: list[bytes | memoryview] = []
        pos = 0
        end = len(buf)
        while pos < end:
            if self._frag_left < 0:
                take = min(4 - len(self._mark), end - pos)
                if take == 4:
                    (mark,) = _MARK.unpack_from(buf, pos)
                else:
                    self._mark += buf[pos : pos + take]
                    if len(self._mark) < 4:
                        pos += take
                        break
                    (mark,) = _MARK.unpack_from(self._mark)
                    self._mark.clear()
                pos += take
                try:
                    self._start_fragment(mark, buf[pos : pos + 8])
                except RecordTooLarge:
                    if records:
                        return records
                    raise
                if self._frag_left == 0 and self._last:
                    records.append(self._finish_record())
                    continue
                if self._frag_left == 0:
                    self._frag_left = -1
                continue
            take = min(self._frag_left, end - pos)
            piece = buf[pos : pos + take]
            if self._direct is not None:
                filled = self._direct_filled
                self._direct[filled : filled + take] = piece
                self._direct_filled += take
            elif take >= _SMALL_PIECE:
                self._pieces.append(piece)
            elif self._pieces and isinstance(self._pieces[-1], bytearray):
                self._pieces[-1] += piece
            else:
                self._pieces.append(bytearray(piece))
            pos += take
            self._frag_left -= take
            if self._frag_left == 0:
                if self._last:
                    records.append(self._finish_record())
                else:
                    self._frag_left = -1
        return records

    def _start_fragment(self, mark: int, following: memoryview) -> None:
        """Begin a fragment; ``following`` is up to 8 bytes after its mark (for the
        xid and type of a record that is refused)."""
        if self._record_len == 0 and not self._pieces:
            self._limit = self.max_record
            self._limit_source = self.max_record_source
        length = mark & MAX_FRAGMENT
        total = self._record_len + length
        if total > self._limit:
            head = _first_bytes([*self._pieces, following], 8)
            xid: int | None = None
            mtype: msg_type | None = None
            if len(head) >= 4:
                (xid,) = _MARK.unpack_from(head)
            if len(head) >= 8:
                (kind,) = _MARK.unpack_from(head, 4)
                mtype = msg_type(kind) if kind in _RECORD_KIND else None
            self._failed = RecordTooLarge(
                total,
                self._limit,
                source=self._limit_source,
                xid=xid,
                mtype=mtype,
                complete=bool(mark & LAST_FRAGMENT),
            )
            self._pieces.clear()
            raise self._failed
        self._record_len = total
        self._last = bool(mark & LAST_FRAGMENT)
        self._frag_left = length
        if self._last and length == total and length >= DIRECT_RECORD_MIN:
            self._direct = self._direct_buffer(length)  # bounded: total <= self._limit
            self._direct_len = length
            self._direct_filled = 0

    def _finish_record(self) -> bytes | memoryview:
        record: bytes | memoryview
        if self._direct is not None:
            record = memoryview(self._direct)[: self._direct_len]
            self._direct, self._direct_filled = None, 0
        else:
            pieces = self._pieces
            record = bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
        self._pieces = []
        self._record_len = 0
        self._frag_left = -1
        self._last = False
        return record


def _first_bytes(pieces: Sequence[bytes | bytearray | memoryview], n: int) -> bytes:
    """The first ``n`` bytes (or fewer, if that is all) of ``pieces`` joined."""
    head = bytearray()
    for piece in pieces:
        head += piece[: n - len(head)]
        if len(head) >= n:
            break
    return bytes(head)


def frame_record(
    record: bytes | memoryview, max_fragment: int = MAX_FRAGMENT
) -> list[bytes | memoryview]:
    """Split one record into record-marked fragments (RFC 5531 section 11).

    Args:
        record: the record body (an encoded ``rpc_msg``), any length in bytes.
        max_fragment: largest fragment payload in bytes, 1..2**31-1.

    Returns:
        pieces to write in order: mark, payload, mark, payload, ...; payloads are views
        of ``record`` (no copy).  The last mark has the last-fragment bit; an empty
        record is one empty last fragment.  ``b"".join(...)`` gives the wire bytes.

    Raises:
        ValueError: ``max_fragment`` out of range.
    """
    if not 1 <= max_fragment <= MAX_FRAGMENT:
        raise ValueError(f"max_fragment must be 1..{MAX_FRAGMENT}, got {max_fragment}")
    size = len(record)
    if size <= max_fragment:
        return [_MARK.pack(LAST_FRAGMENT | size), record]
    view = memoryview(record)
    pieces: list[bytes | memoryview] = []
    for start in range(0, size, max_fragment):
        chunk = view[start : start + max_fragment]
        last = LAST_FRAGMENT if start + max_fragment >= size else 0
        pieces.append(_MARK.pack(last | len(chunk)))
        pieces.append(chunk)
    return pieces


# --------------------------------------------------------------------------------------
# Authentication, RFC 5531 section 8.2 and appendix A
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class opaque_auth:
    """struct opaque_auth, RFC 5531 section 8.2: a flavor and up to 400 opaque bytes.

    Raises:
        ValueError: ``body`` longer than ``MAX_AUTH_BYTES`` (400).
    """

    flavor: auth_flavor  # unknown flavors from the wire are kept as pseudo-members
    body: bytes = b""

    def __post_init__(self) -> None:
        if len(self.body) > MAX_AUTH_BYTES:
            raise ValueError(f"opaque_auth body is {len(self.body)} bytes, max {MAX_AUTH_BYTES}")

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.flavor)
        enc.opaque(self.body)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        """Raises XdrError on a short buffer or a body over 400 bytes."""
        flavor = dec.enum(auth_flavor, "opaque_auth.flavor")
        return cls(flavor, dec.opaque("opaque_auth.body", MAX_AUTH_BYTES))


NULL_AUTH: Final = opaque_auth(auth_flavor.AUTH_NONE, b"")
"""The AUTH_NONE credential or verifier with an empty body (RFC 5531 section 10.1)."""


@dataclass(frozen=True, slots=True)
class authsys_parms:
    """struct authsys_parms, RFC 5531 appendix A: the AUTH_SYS credential body.

    Attributes:
        stamp: arbitrary id the caller may generate (uint32).
        machinename: caller's host name, at most 255 bytes UTF-8.
        uid: effective user id (uint32).
        gid: effective group id (uint32).
        gids: supplementary group ids, at most 16 (``NGRPS``).

    Raises:
        ValueError: machinename over 255 bytes or more than 16 gids.
    """

    stamp: int
    machinename: str
    uid: int
    gid: int
    gids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.machinename.encode("utf-8", "surrogateescape")) > MAX_MACHINE_NAME:
            raise ValueError(f"authsys_parms.machinename longer than {MAX_MACHINE_NAME} bytes")
        if len(self.gids) > NGRPS:
            raise ValueError(f"authsys_parms.gids has {len(self.gids)} entries, max {NGRPS}")

    def pack(self, enc: Encoder) -> None:
        enc.uint32(self.stamp)
        enc.string(self.machinename.encode("utf-8", "surrogateescape"))
        enc.uint32(self.uid)
        enc.uint32(self.gid)
        enc.array(self.gids, enc.uint32)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        """Raises XdrError on a short buffer, a name over 255 bytes or over 16 gids."""
        stamp = dec.uint32("authsys_parms.stamp")
        machinename = dec.string("authsys_parms.machinename", MAX_MACHINE_NAME)
        uid = dec.uint32("authsys_parms.uid")
        gid = dec.uint32("authsys_parms.gid")
        gids = dec.uint32_array("authsys_parms.gids", NGRPS)
        return cls(stamp, machinename, uid, gid, gids)


Payload = bytes | memoryview
"""Encoded procedure arguments or results: bytes, or a view of a larger buffer."""

CallArgs = Payload | Gathered
"""Encoded procedure arguments as a call takes them: one buffer, or pieces sent in turn
(a WRITE's data kept apart from the bytes around it, ``Encoder.gathered``)."""


def arg_pieces(args: CallArgs) -> tuple[Payload, ...]:
    """The pieces of ``args`` to send after the call header, in order (none if empty)."""
    if isinstance(args, Gathered):
        return args.pieces
    return (args,) if len(args) else ()


def arg_bytes(args: CallArgs) -> Payload:
    """``args`` as one buffer, for a flavor that signs or encrypts them (a copy when
    they were in pieces)."""
    return args.joined() if isinstance(args, Gathered) else args


class RpcCaller(Protocol):
    """Something that sends one call and returns its results: ``RpcConnection``.

    A credential that needs calls of its own before it can be used (RPCSEC_GSS context
    creation, RFC 2203 section 5.2) makes them through this.
    """

    async def call(
        self, prog: int, vers: int, proc: int, args: CallArgs, cred: Credential
    ) -> Payload: ...


class SealedCall(Protocol):
    """One transmission of one call, as a credential prepared it (RFC 5531 section 9).

    ``header`` is the encoded rpc_msg up to and including the verifier; ``body`` the
    pieces that follow it on the wire (the arguments, possibly wrapped, as for
    RPCSEC_GSS integrity or privacy, RFC 2203 section 5.3.2).  The transport sends
    ``header`` then ``body``, hands the reply's verifier and results to ``unwrap``, and
    calls ``release`` exactly once when the transmission is over (answered, failed, lost
    or cancelled).
    """

    @property
    def header(self) -> bytes: ...

    @property
    def body(self) -> Sequence[Payload]: ...

    def unwrap(self, verf: opaque_auth, results: Payload) -> Payload:
        """Check the reply verifier and return the procedure's own results.

        Raises:
            RpcError: (a subclass) the verifier or the results' protection does not
                match; nothing of the reply may be used then.
        """
        ...

    def release(self) -> None: ...


class Credential(Protocol):
    """An authentication flavor as the transport uses it (RFC 5531 section 8.2).

    For every transmission of a call the transport awaits ``ready`` and then, without
    a checkpoint in between, calls ``seal`` with the transmission's xid: a re-sent
    request is sealed anew (RPCSEC_GSS gives it a new sequence number, RFC 2203
    section 5.3.3.1).  When the server rejects a transmission with AUTH_ERROR the
    transport asks ``rejected``; True means the credential has reset itself (an
    expired RPCSEC_GSS context, RFC 2203 section 5.3.3.3) and the call should be sent
    again, which the transport does a bounded number of times.

    AUTH_NONE and AUTH_SYS are ready at once and need no per-call work; RPCSEC_GSS
    (``session.gss.GssCredential``) creates its context in ``ready``.
    """

    async def ready(self, caller: RpcCaller, prog: int, vers: int) -> None:
        """Wait until ``seal`` can be called for ``prog``/``vers`` on ``caller``.

        Raises:
            NFSClientError: (a subclass) the credential cannot be used (no Kerberos
                ticket, the server refused the context, ...).
        """
        ...

    def seal(self, xid: int, prog: int, vers: int, proc: int, args: CallArgs) -> SealedCall: ...

    def rejected(self, sealed: SealedCall, error: AuthError) -> bool: ...


class PlainCall:
    """A ``SealedCall`` for flavors that leave the arguments alone (AUTH_NONE, AUTH_SYS).

    The reply verifier is not checked: the server answers these flavors with an
    AUTH_NONE verifier that carries nothing to check (RFC 5531 section 10.1).
    """

    __slots__ = ("body", "header")

    def __init__(self, header: bytes, args: CallArgs) -> None:
        self.header = header
        self.body: tuple[Payload, ...] = arg_pieces(args)

    def unwrap(self, verf: opaque_auth, results: Payload) -> Payload:
        return results

    def release(self) -> None:
        return None


class _FixedCredential:
    """Shared behaviour of flavors whose credential and verifier never change: the
    same ``cred`` and an AUTH_NONE ``verf`` in every call header."""

    __slots__ = ("_cred",)

    def __init__(self, cred: opaque_auth) -> None:
        self._cred = cred

    @property
    def cred(self) -> opaque_auth:
        return self._cred

    @property
    def verf(self) -> opaque_auth:
        return NULL_AUTH

    async def ready(self, caller: RpcCaller, prog: int, vers: int) -> None:
        return None

    def seal(self, xid: int, prog: int, vers: int, proc: int, args: CallArgs) -> PlainCall:
        return PlainCall(encode_call_header(xid, prog, vers, proc, self.cred, self.verf), args)

    def rejected(self, sealed: SealedCall, error: AuthError) -> bool:
        return False


class AuthNone(_FixedCredential):
    """AUTH_NONE (RFC 5531 section 10.1): empty credential and verifier."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(NULL_AUTH)

    def __repr__(self) -> str:
        return "AuthNone()"


@functools.lru_cache(maxsize=1024)
def _authsys_cred(
    stamp: int, machinename: str, uid: int, gid: int, gids: tuple[int, ...]
) -> opaque_auth:
    enc = Encoder()
    authsys_parms(stamp, machinename, uid, gid, list(gids)).pack(enc)
    return opaque_auth(auth_flavor.AUTH_SYS, enc.getvalue())


class AuthSys(_FixedCredential):
    """AUTH_SYS (RFC 5531 section 10.2 and appendix A) with an AUTH_NONE verifier.

    The encoded credential is built once per distinct (stamp, machinename, uid, gid,
    gids) and shared by every ``AuthSys`` with the same values (an LRU cache), so a
    per-request ``AuthSys(ctx.uid, ctx.gid, ...)`` costs a dictionary lookup.

    Args:
        uid: effective user id (uint32).
        gid: effective group id (uint32).
        gids: supplementary group ids; at most 16 (RFC 5531 appendix A).
        machinename: host name, at most 255 bytes.
        stamp: arbitrary uint32 the caller chooses (e.g. a boot time); 0 is fine.

    Raises:
        ValueError: more than 16 gids or a machinename over 255 bytes.
    """

    __slots__ = ("gid", "gids", "machinename", "stamp", "uid")

    def __init__(
        self,
        uid: int,
        gid: int,
        gids: Sequence[int] = (),
        machinename: str = "fusenfs",
        stamp: int = 0,
    ) -> None:
        self.uid = uid
        self.gid = gid
        self.gids = tuple(gids)
        self.machinename = machinename
        self.stamp = stamp
        super().__init__(_authsys_cred(stamp, machinename, uid, gid, self.gids))

    def __repr__(self) -> str:
        return (
            f"AuthSys(uid={self.uid}, gid={self.gid}, gids={list(self.gids)}, "
            f"machinename={self.machinename!r}, stamp={self.stamp})"
        )


# --------------------------------------------------------------------------------------
# Messages, RFC 5531 section 9
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RpcCall:
    """A decoded call: struct rpc_msg with a call_body (RFC 5531 section 9).

    ``args`` is the procedure's encoded arguments (the rest of the record, bytes).
    """

    xid: int
    rpcvers: int
    prog: int
    vers: int
    proc: int
    cred: opaque_auth
    verf: opaque_auth
    args: bytes


@dataclass(frozen=True, slots=True)
class RpcReply:
    """A decoded accepted SUCCESS reply (RFC 5531 section 9).

    ``results`` is the procedure's encoded results: the rest of the record, as a view
    of it (no copy of a 1 MiB READ reply).
    """

    xid: int
    verf: opaque_auth
    results: bytes | memoryview


def peek_xid_and_type(body: bytes | bytearray | memoryview) -> tuple[int, msg_type]:
    """Read ``xid`` and ``mtype`` from a record body without decoding the rest.

    Used to demultiplex a connection: replies go to the waiting caller by xid, calls
    (the NFSv4.1 backchannel) go to a handler.  RFC 5531 section 9.

    Returns:
        ``(xid, msg_type)``; xid is a uint32.

    Raises:
        XdrError: fewer than 8 bytes, or a msg_type other than CALL or REPLY.
    """
    if len(body) < 8:
        raise XdrError("rpc_msg", 0, f"needs 8 bytes for xid and mtype, {len(body)} given")
    xid, mtype = _TWO_UINT32.unpack_from(body, 0)
    if mtype not in (msg_type.CALL, msg_type.REPLY):
        raise XdrError("rpc_msg.mtype", 4, f"unknown msg_type {mtype}")
    return xid, msg_type(mtype)


def encode_call_prefix(xid: int, prog: int, vers: int, proc: int, cred: opaque_auth) -> bytes:
    """Encode an rpc_msg CALL from ``xid`` up to and including the credential.

    These are the bytes an RPCSEC_GSS verifier checksums (RFC 2203 section 5.3.1); the
    verifier follows them on the wire.  RFC 5531 section 9.

    Raises:
        xdrlib3.ConversionError: a number outside uint32.
    """
    enc = Encoder()
    enc.uint32(xid)
    enc.int32(msg_type.CALL)
    enc.uint32(RPC_VERSION)
    enc.uint32(prog)
    enc.uint32(vers)
    enc.uint32(proc)
    cred.pack(enc)
    return enc.getvalue()


def encode_call_header(
    xid: int, prog: int, vers: int, proc: int, cred: opaque_auth, verf: opaque_auth
) -> bytes:
    """Encode an rpc_msg CALL up to and including the verifier (RFC 5531 section 9).

    The procedure arguments follow it on the wire; the transport sends the two pieces
    without joining them, so large WRITE arguments are not copied.

    Raises:
        xdrlib3.ConversionError: a number outside uint32.
    """
    enc = Encoder()
    verf.pack(enc)
    return encode_call_prefix(xid, prog, vers, proc, cred) + enc.getvalue()


def encode_call(
    xid: int,
    prog: int,
    vers: int,
    proc: int,
    cred: opaque_auth,
    verf: opaque_auth,
    args: bytes = b"",
) -> bytes:
    """Encode a whole call record body: header then ``args`` (RFC 5531 section 9).

    Args:
        xid, prog, vers, proc: uint32 values.
        cred, verf: the call's credential and verifier (section 8.2).
        args: the procedure's encoded arguments (already XDR, a multiple of 4 bytes).

    Returns:
        the record body, without record mark.
    """
    return encode_call_header(xid, prog, vers, proc, cred, verf) + args


def decode_call(body: bytes | memoryview) -> RpcCall:
    """Decode a call record body (server side, or a backchannel call on the client).

    RFC 5531 section 9.

    Raises:
        XdrError: truncated header, not a CALL, or an auth body over 400 bytes.
        UnsupportedRpcVersion: ``rpcvers`` is not 2 (answer with RPC_MISMATCH 2..2).
    """
    dec = Decoder(body)
    xid = dec.uint32("rpc_msg.xid")
    mtype = dec.enum(msg_type, "rpc_msg.mtype")
    if mtype != msg_type.CALL:
        raise XdrError("rpc_msg.mtype", 4, f"expected CALL, got {mtype.name}")
    rpcvers = dec.uint32("call_body.rpcvers")
    if rpcvers != RPC_VERSION:
        raise UnsupportedRpcVersion(xid, rpcvers)
    prog = dec.uint32("call_body.prog")
    vers = dec.uint32("call_body.vers")
    proc = dec.uint32("call_body.proc")
    cred = opaque_auth.unpack(dec)
    verf = opaque_auth.unpack(dec)
    args = bytes(body[dec.offset :])  # a copy: the record's buffer may be used again
    return RpcCall(xid, rpcvers, prog, vers, proc, cred, verf, args)


def encode_accepted_reply(
    xid: int,
    verf: opaque_auth,
    stat: accept_stat,
    results: bytes = b"",
    mismatch: tuple[int, int] | None = None,
) -> bytes:
    """Encode a MSG_ACCEPTED reply record body (RFC 5531 section 9, accepted_reply).

    Args:
        xid: the call's xid.
        verf: the server's verifier (``NULL_AUTH`` for AUTH_NONE / AUTH_SYS).
        stat: the accept_stat.
        results: encoded procedure results, only with SUCCESS.
        mismatch: ``(low, high)`` supported versions, required with PROG_MISMATCH.

    Raises:
        ValueError: ``results`` given with a status other than SUCCESS, or
            ``mismatch`` missing with PROG_MISMATCH / given with any other status.
    """
    if results and stat != accept_stat.SUCCESS:
        raise ValueError(f"results given with accept_stat {stat.name}")
    if (mismatch is not None) != (stat == accept_stat.PROG_MISMATCH):
        raise ValueError("mismatch=(low, high) goes with PROG_MISMATCH and only with it")
    enc = Encoder()
    enc.uint32(xid)
    enc.int32(msg_type.REPLY)
    enc.int32(reply_stat.MSG_ACCEPTED)
    verf.pack(enc)
    enc.int32(stat)
    if mismatch is not None:
        enc.uint32(mismatch[0])
        enc.uint32(mismatch[1])
    header = enc.getvalue()
    return header + results if results else header


def encode_rejected_reply(
    xid: int,
    stat: reject_stat,
    *,
    mismatch: tuple[int, int] | None = None,
    auth: auth_stat | None = None,
) -> bytes:
    """Encode a MSG_DENIED reply record body (RFC 5531 section 9, rejected_reply).

    Args:
        xid: the call's xid.
        stat: RPC_MISMATCH (give ``mismatch=(low, high)`` RPC versions) or AUTH_ERROR
            (give ``auth``, the auth_stat).

    Raises:
        ValueError: the argument that goes with ``stat`` is missing, or the other given.
    """
    enc = Encoder()
    enc.uint32(xid)
    enc.int32(msg_type.REPLY)
    enc.int32(reply_stat.MSG_DENIED)
    enc.int32(stat)
    if stat == reject_stat.RPC_MISMATCH:
        if mismatch is None or auth is not None:
            raise ValueError("RPC_MISMATCH needs mismatch=(low, high) and no auth")
        enc.uint32(mismatch[0])
        enc.uint32(mismatch[1])
    elif stat == reject_stat.AUTH_ERROR:
        if auth is None or mismatch is not None:
            raise ValueError("AUTH_ERROR needs auth=auth_stat and no mismatch")
        enc.int32(auth)
    else:
        raise ValueError(f"unknown reject_stat {stat}")
    return enc.getvalue()


_ACCEPT_ERRORS: Final[dict[int, type[ProgUnavail | ProcUnavail | GarbageArgs | SystemErr]]] = {
    accept_stat.PROG_UNAVAIL: ProgUnavail,
    accept_stat.PROC_UNAVAIL: ProcUnavail,
    accept_stat.GARBAGE_ARGS: GarbageArgs,
    accept_stat.SYSTEM_ERR: SystemErr,
}


def decode_reply(body: bytes | memoryview) -> RpcReply:
    """Decode a reply record body (client side), RFC 5531 section 9.

    Args:
        body: the record body (record mark stripped).

    Returns:
        ``RpcReply`` for MSG_ACCEPTED / SUCCESS; ``results`` is the rest of the body.

    Raises:
        ProgUnavail, ProgMismatch, ProcUnavail, GarbageArgs, SystemErr: the call was
            accepted with that accept_stat.
        RpcError: accepted with an accept_stat this client does not know.
        RpcMismatch, AuthError: the call was rejected (MSG_DENIED).
        XdrError: truncated or malformed reply, not a REPLY, or an unknown reply_stat
            or reject_stat (unions without a default arm).
    """
    dec = Decoder(body)
    xid = dec.uint32("rpc_msg.xid")
    mtype = dec.enum(msg_type, "rpc_msg.mtype")
    if mtype != msg_type.REPLY:
        raise XdrError("rpc_msg.mtype", 4, f"expected REPLY, got {mtype.name}")
    pos = dec.offset
    rstat = dec.enum(reply_stat, "reply_body.stat")
    if rstat == reply_stat.MSG_ACCEPTED:
        verf = opaque_auth.unpack(dec)
        astat = dec.enum(accept_stat, "accepted_reply.stat")
        if astat == accept_stat.SUCCESS:
            return RpcReply(xid, verf, memoryview(body)[dec.offset :])
        if astat == accept_stat.PROG_MISMATCH:
            low = dec.uint32("mismatch_info.low")
            high = dec.uint32("mismatch_info.high")
            raise ProgMismatch(low, high)
        error = _ACCEPT_ERRORS.get(astat)
        if error is not None:
            raise error()
        raise RpcError(f"RPC reply accepted with unknown accept_stat {int(astat)}")
    if rstat == reply_stat.MSG_DENIED:
        pos = dec.offset
        jstat = dec.enum(reject_stat, "rejected_reply.stat")
        if jstat == reject_stat.RPC_MISMATCH:
            low = dec.uint32("mismatch_info.low")
            high = dec.uint32("mismatch_info.high")
            raise RpcMismatch(low, high)
        if jstat == reject_stat.AUTH_ERROR:
            raise AuthError(dec.enum(auth_stat, "rejected_reply.auth_stat"))
        raise XdrError("rejected_reply.stat", pos, f"unknown reject_stat {int(jstat)}")
    raise XdrError("reply_body.stat", pos, f"unknown reply_stat {int(rstat)}")

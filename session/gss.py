"""RPCSEC_GSS version 1 (RFC 2203) over the project's RPC layer, with python-gssapi.

What is here, by RFC 2203 section:

* 5 (XDR): ``rpc_gss_proc_t``, ``rpc_gss_service_t`` (``session.xdr.const.rpc_gss_svc_t``),
  ``rpc_gss_cred_vers_1_t`` inside ``rpc_gss_cred_t`` (version ``RPCSEC_GSS_VERS_1``),
  ``rpc_gss_init_arg``, ``rpc_gss_init_res``, ``rpc_gss_integ_data``,
  ``rpc_gss_priv_data``, ``MAXSEQ``.
* 5.2 context creation: NULL-procedure calls with ``RPCSEC_GSS_INIT`` then
  ``RPCSEC_GSS_CONTINUE_INIT``; the last reply's verifier is the MIC of ``seq_window``
  (5.2.3.1), checked before the context is used.
* 5.3.1 the call verifier: a MIC over the call header from ``xid`` up to and including
  the credential.  5.3.3.2 the reply verifier: a MIC over the call's ``seq_num``.
* 5.3.2 the services: none (krb5), integrity (krb5i: ``rpc_gss_integ_data``, the MIC
  over ``seq_num`` and the arguments or results) and privacy (krb5p:
  ``rpc_gss_priv_data``, the same wrapped with confidentiality).
* 5.3.3.1 sequence numbers: every transmission gets a new one, re-sends included; the
  client keeps at most ``seq_window`` numbers outstanding (``SequenceWindow``) so none
  falls below the server's window; the server side (``ReplayWindow``) drops duplicates
  and numbers below its window silently.
* 5.3.3.3 an expired or unknown context (AUTH_ERROR with ``RPCSEC_GSS_CREDPROBLEM`` or
  ``RPCSEC_GSS_CTXPROBLEM``) is created again and the call re-sent (the transport does
  that through ``Credential.rejected``); a context whose lifetime has run out locally
  (GSS_S_CONTEXT_EXPIRED) is replaced before the next call.
* 5.4 context destruction (``GssCredential.destroy``).

RFC 5403 (RPCSEC_GSS version 2) adds channel bindings (RPCSEC_GSS_BIND_CHANNEL); this
module speaks version 1 only, as NFSv4.1 without SSV or channel binding does.

The client is :class:`GssCredential` (a ``session.rpc.Credential``: one principal, one
server).  The sealing and checking of calls and replies is sans-I/O (``GssContext``,
``GssSealedCall``, ``protect`` / ``unprotect``); only context creation does I/O, through
the ``RpcCaller`` the transport passes (NULL calls), with the blocking GSS steps that
may talk to the KDC run in a worker thread.  The server side, :class:`GssAcceptor`, is
sans-I/O too: RPC calls in, reply records or accepted arguments out (the contrib test
server and the unit tests use it).

Errors: :class:`GssError` (an ``RpcError``, errno EACCES) and its subclasses
``GssCredentialsUnavailable`` (no usable Kerberos credentials), ``GssContextError``
(the context could not be created) and ``GssIntegrityError`` (errno EIO: a reply whose
verifier, checksum, sequence number or encryption does not check out; its data is
never returned).

Logger ``session.gss``: contexts created, renewed and destroyed at INFO.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import itertools
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Protocol, Self, cast

import gssapi
import trio
from gssapi.raw.exceptions import ExpiredCredentialsError, MissingCredentialsError
from gssapi.raw.misc import GSSError

from session.errors import NFSClientError, RpcError, XdrError
from session.rpc import (
    MAX_AUTH_BYTES,
    NULL_AUTH,
    AuthError,
    CallArgs,
    Payload,
    RpcCall,
    RpcCaller,
    SealedCall,
    accept_stat,
    arg_bytes,
    arg_pieces,
    auth_flavor,
    auth_stat,
    encode_accepted_reply,
    encode_call_header,
    encode_call_prefix,
    encode_rejected_reply,
    opaque_auth,
    reject_stat,
)
from session.xdr.codec import Decoder, Encoder, OpenEnum
from session.xdr.const import rpc_gss_svc_t

__all__ = [
    "DEFAULT_MACHINE_KEYTAB",
    "GSS_S_COMPLETE",
    "GSS_S_CONTINUE_NEEDED",
    "KRB5_OID",
    "MAXSEQ",
    "NULLPROC",
    "RPCSEC_GSS_VERS_1",
    "CcacheSource",
    "CredentialSource",
    "DefaultSource",
    "GssAccepted",
    "GssAcceptor",
    "GssContext",
    "GssContextError",
    "GssCredential",
    "GssCredentialsUnavailable",
    "GssError",
    "GssIntegrityError",
    "GssSealedCall",
    "GssStatistics",
    "KeytabSource",
    "ReplayWindow",
    "SecFlavor",
    "SequenceWindow",
    "acceptor_credentials",
    "gss_major_text",
    "machine_principal",
    "machine_source",
    "parse_sec",
    "protect",
    "rpc_gss_cred_vers_1_t",
    "rpc_gss_init_res",
    "rpc_gss_integ_data",
    "rpc_gss_priv_data",
    "rpc_gss_proc_t",
    "rpc_gss_service_t",
    "unprotect",
]

log = logging.getLogger("session.gss")

RPCSEC_GSS_VERS_1: Final = 1
"""The only ``rpc_gss_cred_t`` version (RFC 2203 section 5)."""

MAXSEQ: Final = 0x80000000
"""Sequence numbers stay below this; a context that reaches it is replaced (RFC 2203
section 5.3.3.1; the server answers RPCSEC_GSS_CTXPROBLEM to one at or above it)."""

NULLPROC: Final = 0
"""Procedure 0, which carries context creation and destruction (RFC 2203 section 5.2)."""

GSS_S_COMPLETE: Final = 0
GSS_S_CONTINUE_NEEDED: Final = 1
"""GSS-API major status values (RFC 2744 section 3.9.1) seen in ``rpc_gss_init_res``."""

KRB5_OID: Final = "1.2.840.113554.1.2.2"
"""The Kerberos V5 GSS-API mechanism (RFC 1964)."""

KRB5_OID_DER: Final = bytes.fromhex("2a864886f712010202")
"""``KRB5_OID`` as its DER contents octets, as SECINFO's ``sec_oid4`` carries it."""

MAX_INIT_ROUNDS: Final = 8
"""Round trips context creation may take before it is abandoned (Kerberos needs one)."""

MAX_GSS_TOKEN: Final = 64 * 1024
"""Largest ``gss_token`` / handle accepted in context creation, bytes."""

MAX_CHECKSUM: Final = 1024
"""Largest ``rpc_gss_integ_data.checksum`` accepted, bytes (a krb5 MIC is 28)."""

_U32 = struct.Struct(">I")

#: The GSS flags asked for: mutual authentication (the server proves its identity in
#: the last creation token), integrity and confidentiality.  Not replay or sequence
#: detection: RPC replies arrive in any order and RPCSEC_GSS numbers calls itself.
_FLAGS: Final = (
    gssapi.RequirementFlag.mutual_authentication
    | gssapi.RequirementFlag.integrity
    | gssapi.RequirementFlag.confidentiality
)

_ROUTINE_ERRORS: Final[dict[int, str]] = {
    1: "GSS_S_BAD_MECH",
    2: "GSS_S_BAD_NAME",
    3: "GSS_S_BAD_NAMETYPE",
    4: "GSS_S_BAD_BINDINGS",
    5: "GSS_S_BAD_STATUS",
    6: "GSS_S_BAD_SIG",
    7: "GSS_S_NO_CRED",
    8: "GSS_S_NO_CONTEXT",
    9: "GSS_S_DEFECTIVE_TOKEN",
    10: "GSS_S_DEFECTIVE_CREDENTIAL",
    11: "GSS_S_CREDENTIALS_EXPIRED",
    12: "GSS_S_CONTEXT_EXPIRED",
    13: "GSS_S_FAILURE",
    14: "GSS_S_BAD_QOP",
    15: "GSS_S_UNAUTHORIZED",
    16: "GSS_S_UNAVAILABLE",
    17: "GSS_S_DUPLICATE_ELEMENT",
    18: "GSS_S_NAME_NOT_MN",
}


def gss_major_text(major: int) -> str:
    """A GSS-API major status as its RFC 2744 name(s), e.g. ``"GSS_S_NO_CRED"``."""
    if major == GSS_S_COMPLETE:
        return "GSS_S_COMPLETE"
    names = []
    routine = (major >> 16) & 0xFF
    if routine:
        names.append(_ROUTINE_ERRORS.get(routine, f"routine error {routine}"))
    if major >> 24:
        names.append(f"calling error {major >> 24}")
    if major & GSS_S_CONTINUE_NEEDED:
        names.append("GSS_S_CONTINUE_NEEDED")
    if major & 0xFFFE:
        names.append(f"supplementary 0x{major & 0xFFFE:x}")
    return "|".join(names)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class GssError(RpcError):
    """RPCSEC_GSS could not be used for a call (base class); errno EACCES."""

    errno = _errno.EACCES


class GssCredentialsUnavailable(GssError):
    """The principal has no usable Kerberos credentials (no ticket cache, no keytab
    entry, an expired TGT): the user must ``kinit``.  errno EACCES."""


class GssContextError(GssError):
    """The GSS context could not be created: the KDC or the server refused, the server
    did not prove its identity, or the creation exchange broke.  errno EACCES."""


class GssIntegrityError(GssError):
    """A reply that does not check out: its verifier, its integrity checksum, its
    sequence number or its encryption.  Nothing of the reply is used.  errno EIO."""

    errno = _errno.EIO


def _gss_reason(exc: BaseException) -> str:
    """A one-line reason from a python-gssapi error."""
    if isinstance(exc, GSSError):
        major = gss_major_text(int(getattr(exc, "maj_code", 0) or 0))
        minor = ""
        if exc.min_code:  # 0 is "Success": nothing to add
            try:
                messages = exc.get_all_statuses(exc.min_code, False)  # mechanism's words
                minor = "; ".join(str(m) for m in messages if m and str(m) != "Success")
            except Exception:  # pragma: no cover - message lookup failing is not the error
                minor = ""
        return f"{major}: {minor}" if minor else major
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------------------
# XDR, RFC 2203 section 5
# --------------------------------------------------------------------------------------


class rpc_gss_proc_t(OpenEnum):
    """enum rpc_gss_proc_t, RFC 2203 section 5."""

    RPCSEC_GSS_DATA = 0
    RPCSEC_GSS_INIT = 1
    RPCSEC_GSS_CONTINUE_INIT = 2
    RPCSEC_GSS_DESTROY = 3


rpc_gss_service_t = rpc_gss_svc_t
"""enum rpc_gss_service_t, RFC 2203 section 5 (RFC 8881 calls it rpc_gss_svc_t)."""


@dataclass(frozen=True, slots=True)
class rpc_gss_cred_vers_1_t:
    """struct rpc_gss_cred_vers_1_t, RFC 2203 section 5: the RPCSEC_GSS credential.

    Attributes:
        gss_proc: DATA for ordinary calls; INIT / CONTINUE_INIT / DESTROY.
        seq_num: uint32 below ``MAXSEQ`` (ignored in creation requests).
        service: the protection of this call's arguments and results.
        handle: the server's context handle (empty in RPCSEC_GSS_INIT).
    """

    gss_proc: rpc_gss_proc_t
    seq_num: int
    service: rpc_gss_service_t
    handle: bytes

    def pack(self, enc: Encoder) -> None:
        enc.uint32(RPCSEC_GSS_VERS_1)  # rpc_gss_cred_t's discriminant
        enc.int32(self.gss_proc)
        enc.uint32(self.seq_num)
        enc.int32(self.service)
        enc.opaque(self.handle)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        """Decode an ``rpc_gss_cred_t``; raises XdrError for a version other than 1."""
        pos = dec.offset
        version = dec.uint32("rpc_gss_cred_t.version")
        if version != RPCSEC_GSS_VERS_1:
            raise XdrError("rpc_gss_cred_t", pos, f"version {version}, only 1 is known")
        return cls(
            dec.enum(rpc_gss_proc_t, "rpc_gss_cred_vers_1_t.gss_proc"),
            dec.uint32("rpc_gss_cred_vers_1_t.seq_num"),
            dec.enum(rpc_gss_service_t, "rpc_gss_cred_vers_1_t.service"),
            dec.opaque("rpc_gss_cred_vers_1_t.handle", MAX_AUTH_BYTES),
        )

    def to_opaque(self) -> opaque_auth:
        """The credential as the call header carries it (flavor RPCSEC_GSS)."""
        enc = Encoder()
        self.pack(enc)
        return opaque_auth(auth_flavor.RPCSEC_GSS, enc.getvalue())

    @classmethod
    def from_opaque(cls, auth: opaque_auth) -> Self:
        """Decode a call's credential.

        Raises:
            XdrError: not RPCSEC_GSS, malformed, trailing bytes, or another version.
        """
        if auth.flavor != auth_flavor.RPCSEC_GSS:
            raise XdrError("rpc_gss_cred_t", 0, f"flavor {auth.flavor.name}, not RPCSEC_GSS")
        dec = Decoder(auth.body)
        cred = cls.unpack(dec)
        dec.done_or_raise("rpc_gss_cred_t")
        return cred


def encode_init_arg(gss_token: bytes) -> bytes:
    """struct rpc_gss_init_arg, RFC 2203 section 5.2.2: ``opaque gss_token<>``."""
    enc = Encoder()
    enc.opaque(gss_token)
    return enc.getvalue()


def decode_init_arg(data: Payload) -> bytes:
    """The ``gss_token`` of an rpc_gss_init_arg; raises XdrError if malformed."""
    dec = Decoder(data)
    token = dec.opaque("rpc_gss_init_arg.gss_token", MAX_GSS_TOKEN)
    dec.done_or_raise("rpc_gss_init_arg")
    return token


@dataclass(frozen=True, slots=True)
class rpc_gss_init_res:
    """struct rpc_gss_init_res, RFC 2203 section 5.2.3.1.

    Attributes:
        handle: the context handle for later calls (and for CONTINUE_INIT).
        gss_major, gss_minor: GSS-API status of the server's accept step.
        seq_window: the server's sequence window, a count of sequence numbers.
        gss_token: the server's output token (may be empty).
    """

    handle: bytes
    gss_major: int
    gss_minor: int
    seq_window: int
    gss_token: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque(self.handle)
        enc.uint32(self.gss_major)
        enc.uint32(self.gss_minor)
        enc.uint32(self.seq_window)
        enc.opaque(self.gss_token)

    @classmethod
    def unpack(cls, dec: Decoder) -> Self:
        return cls(
            dec.opaque("rpc_gss_init_res.handle", MAX_AUTH_BYTES),
            dec.uint32("rpc_gss_init_res.gss_major"),
            dec.uint32("rpc_gss_init_res.gss_minor"),
            dec.uint32("rpc_gss_init_res.seq_window"),
            dec.opaque("rpc_gss_init_res.gss_token", MAX_GSS_TOKEN),
        )

    @classmethod
    def decode(cls, data: Payload) -> Self:
        """Decode a whole reply's results; raises XdrError if malformed or longer."""
        dec = Decoder(data)
        res = cls.unpack(dec)
        dec.done_or_raise("rpc_gss_init_res")
        return res


@dataclass(frozen=True, slots=True)
class rpc_gss_integ_data:
    """struct rpc_gss_integ_data, RFC 2203 section 5.3.2.2.

    ``databody_integ`` is the XDR of rpc_gss_data_t (``seq_num`` then the procedure's
    arguments or results); ``checksum`` is the GSS MIC of exactly those bytes.
    """

    databody_integ: bytes
    checksum: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque_bulk(self.databody_integ)
        enc.opaque(self.checksum)


@dataclass(frozen=True, slots=True)
class rpc_gss_priv_data:
    """struct rpc_gss_priv_data, RFC 2203 section 5.3.2.3: ``databody_priv`` is the GSS
    wrap token (with confidentiality) of rpc_gss_data_t (``seq_num`` then the data)."""

    databody_priv: bytes

    def pack(self, enc: Encoder) -> None:
        enc.opaque_bulk(self.databody_priv)


# --------------------------------------------------------------------------------------
# Sequence windows, RFC 2203 section 5.3.3.1
# --------------------------------------------------------------------------------------


class SequenceWindow:
    """The client's bookkeeping of RPCSEC_GSS sequence numbers for one context.

    Numbers are issued in increasing order, one per transmission (a re-send gets a new
    one).  The server accepts a number only within ``seq_window`` of the highest it has
    seen (RFC 2203 section 5.3.3.1), so the client never issues ``n`` while a number
    ``<= n - seq_window`` is still outstanding: ``has_room()`` is False until the oldest
    outstanding one is ``retire``d.  Numbers stop below ``MAXSEQ`` (``exhausted``).

    Args:
        seq_window: the server's ``rpc_gss_init_res.seq_window`` (a count, >= 1).
        first: the first number to issue (this client starts at 1, as Linux does).

    Raises:
        ValueError: ``seq_window`` < 1 or ``first`` outside 0..MAXSEQ.
    """

    __slots__ = ("_next", "_outstanding", "seq_window")

    def __init__(self, seq_window: int, first: int = 1) -> None:
        if seq_window < 1:
            raise ValueError(f"seq_window must be >= 1, got {seq_window}")
        if not 0 <= first <= MAXSEQ:
            raise ValueError(f"first sequence number must be 0..{MAXSEQ}, got {first}")
        self.seq_window = seq_window
        self._next = first
        self._outstanding: dict[int, None] = {}  # insertion-ordered: oldest first

    @property
    def next_seq(self) -> int:
        """The number ``issue`` gives next."""
        return self._next

    @property
    def outstanding(self) -> int:
        """Numbers issued and not yet retired (a count)."""
        return len(self._outstanding)

    @property
    def oldest(self) -> int | None:
        """The oldest outstanding number, or None."""
        return next(iter(self._outstanding), None)

    @property
    def exhausted(self) -> bool:
        """No numbers are left below ``MAXSEQ``: the context must be replaced."""
        return self._next >= MAXSEQ

    def has_room(self) -> bool:
        """Whether ``issue`` may be called now."""
        if self.exhausted:
            return False
        oldest = self.oldest
        return oldest is None or self._next - oldest < self.seq_window

    def issue(self) -> int:
        """The next sequence number, now outstanding.

        Raises:
            RuntimeError: no room (``has_room()`` is False).
        """
        if not self.has_room():
            raise RuntimeError(
                f"RPCSEC_GSS sequence window full: next {self._next}, oldest outstanding "
                f"{self.oldest}, window {self.seq_window}"
            )
        seq = self._next
        self._next += 1
        self._outstanding[seq] = None
        return seq

    def retire(self, seq: int) -> None:
        """``seq``'s transmission is over (answered, lost or abandoned); idempotent."""
        self._outstanding.pop(seq, None)


class ReplayWindow:
    """The server's RPCSEC_GSS sequence window (RFC 2203 section 5.3.3.1).

    ``check(seq)`` is True for a number not seen before and not below the window: a
    number above the highest seen moves the window up; one inside it is accepted once.
    Duplicates and numbers below the window are refused (the server drops such calls
    without a reply).

    Args:
        size: ``seq_window``, a count >= 1.
    """

    __slots__ = ("_highest", "_seen", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.size = size
        self._highest = -1
        self._seen = 0  # bit i: highest - i was seen

    @property
    def highest(self) -> int:
        """The highest number accepted so far (-1: none)."""
        return self._highest

    def check(self, seq: int) -> bool:
        if seq > self._highest:
            shift = seq - self._highest
            self._seen = ((self._seen << shift) | 1) & ((1 << self.size) - 1)
            self._highest = seq
            return True
        offset = self._highest - seq
        if offset >= self.size:
            return False
        bit = 1 << offset
        if self._seen & bit:
            return False
        self._seen |= bit
        return True


# --------------------------------------------------------------------------------------
# Protection of arguments and results, RFC 2203 section 5.3.2 (sans-I/O)
# --------------------------------------------------------------------------------------


class _WrapResult(Protocol):
    @property
    def message(self) -> bytes: ...

    @property
    def encrypted(self) -> bool: ...


class MechContext(Protocol):
    """The GSS-API per-message calls used here (python-gssapi's ``SecurityContext``)."""

    def get_signature(self, message: bytes) -> bytes: ...

    def verify_signature(self, message: bytes, mic: bytes) -> Any: ...

    def wrap(self, message: bytes, encrypt: bool) -> _WrapResult: ...

    def unwrap(self, message: bytes) -> _WrapResult: ...


def _pad(size: int) -> bytes:
    return b"\0" * (-size & 3)


def protect(
    mech: MechContext, service: rpc_gss_service_t, seq_num: int, data: Payload
) -> list[Payload]:
    """Protect procedure arguments (client) or results (server) for ``service``.

    RFC 2203 section 5.3.2: none sends ``data`` as is; integrity sends
    ``rpc_gss_integ_data`` (rpc_gss_data_t = ``seq_num`` + ``data``, and its MIC);
    privacy sends ``rpc_gss_priv_data`` (rpc_gss_data_t wrapped with confidentiality).

    Returns:
        the XDR pieces to send in order (joined they are the procedure's body).

    Raises:
        GssError: the mechanism failed, or did not encrypt under privacy.
        ValueError: an unknown service.
    """
    if service == rpc_gss_service_t.RPC_GSS_SVC_NONE:
        return [data] if len(data) else []
    body = b"".join((_U32.pack(seq_num), data))
    try:
        if service == rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY:
            checksum = mech.get_signature(body)
            return [
                _U32.pack(len(body)),
                body,
                _pad(len(body)) + _U32.pack(len(checksum)) + checksum + _pad(len(checksum)),
            ]
        if service == rpc_gss_service_t.RPC_GSS_SVC_PRIVACY:
            wrapped = mech.wrap(body, True)
            if not wrapped.encrypted:
                raise GssError("RPCSEC_GSS privacy: the GSS mechanism did not encrypt")
            token = wrapped.message
            return [_U32.pack(len(token)), token, _pad(len(token))]
    except GSSError as exc:
        raise GssError(f"RPCSEC_GSS {service.name}: {_gss_reason(exc)}") from None
    raise ValueError(f"unknown RPCSEC_GSS service {service!r}")


def unprotect(
    mech: MechContext, service: rpc_gss_service_t, data: Payload, what: str
) -> tuple[int | None, Payload]:
    """Check and strip what ``protect`` added (RFC 2203 section 5.3.2).

    Args:
        data: the procedure body as received.
        what: names the message in errors, e.g. ``"reply to xid=0x1a2b"``.

    Returns:
        ``(seq_num, payload)``: the sequence number inside rpc_gss_data_t (None for
        service none, which carries none) and the procedure's own arguments or results.

    Raises:
        GssIntegrityError: malformed ``rpc_gss_integ_data`` / ``rpc_gss_priv_data``, a
            checksum that does not match, a token that does not unwrap or was not
            encrypted.
        ValueError: an unknown service.
    """
    if service == rpc_gss_service_t.RPC_GSS_SVC_NONE:
        return None, data
    dec = Decoder(data)
    try:
        if service == rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY:
            kind = "rpc_gss_integ_data"
            body = bytes(dec.opaque_view("rpc_gss_integ_data.databody_integ"))
            checksum = dec.opaque("rpc_gss_integ_data.checksum", MAX_CHECKSUM)
            dec.done_or_raise(kind)
        elif service == rpc_gss_service_t.RPC_GSS_SVC_PRIVACY:
            kind = "rpc_gss_priv_data"
            token = bytes(dec.opaque_view("rpc_gss_priv_data.databody_priv"))
            dec.done_or_raise(kind)
        else:
            raise ValueError(f"unknown RPCSEC_GSS service {service!r}")
    except XdrError as exc:
        raise GssIntegrityError(f"{what}: malformed {service.name} body: {exc}") from None
    try:
        if service == rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY:
            mech.verify_signature(body, checksum)
        else:
            unwrapped = mech.unwrap(token)
            if not unwrapped.encrypted:
                raise GssIntegrityError(f"{what}: rpc_gss_priv_data was not encrypted")
            body = unwrapped.message
    except GSSError as exc:
        check = "checksum does not match" if kind == "rpc_gss_integ_data" else "does not unwrap"
        raise GssIntegrityError(f"{what}: {kind} {check} ({_gss_reason(exc)})") from None
    if len(body) < 4:
        raise GssIntegrityError(f"{what}: {kind} holds {len(body)} bytes, no seq_num")
    return _U32.unpack_from(body)[0], memoryview(body)[4:]


def _check_verifier(mech: MechContext, verf: opaque_auth, message: bytes, what: str) -> None:
    """A reply verifier must be RPCSEC_GSS and the MIC of ``message``.

    Raises:
        GssIntegrityError: naming which.
    """
    if verf.flavor != auth_flavor.RPCSEC_GSS:
        raise GssIntegrityError(f"{what}: verifier flavor {verf.flavor.name}, not RPCSEC_GSS")
    try:
        mech.verify_signature(message, verf.body)
    except GSSError as exc:
        raise GssIntegrityError(f"{what}: verifier does not match ({_gss_reason(exc)})") from None


# --------------------------------------------------------------------------------------
# The client: an established context and the calls sealed with it
# --------------------------------------------------------------------------------------


class GssContext:
    """One established RPCSEC_GSS context (client side), sans-I/O.

    Attributes:
        mech: the GSS-API security context (python-gssapi ``SecurityContext``).
        handle: the server's context handle.
        window: sequence numbers of this context (``SequenceWindow``).
        expires_at: when the context's lifetime ends, on ``clock`` (seconds).
        renew_at: when to replace it before that (a quarter of its lifetime early,
            at most 5 s), on ``clock`` (seconds).
        principal: the initiator's principal name (``alice@REALM``).
        target: the server's name as asked for (``nfs@host``).
    """

    __slots__ = ("expires_at", "handle", "mech", "principal", "renew_at", "target", "window")

    def __init__(
        self,
        mech: MechContext,
        handle: bytes,
        seq_window: int,
        *,
        lifetime: float,
        now: float,
        principal: str = "",
        target: str = "",
    ) -> None:
        self.mech = mech
        self.handle = handle
        self.window = SequenceWindow(seq_window)
        self.expires_at = now + lifetime
        self.renew_at = self.expires_at - min(5.0, lifetime / 4)
        self.principal = principal
        self.target = target

    def usable(self, now: float) -> bool:
        """Not near the end of its lifetime and not out of sequence numbers."""
        return now < self.renew_at and not self.window.exhausted

    def credential(
        self, gss_proc: rpc_gss_proc_t, seq_num: int, service: rpc_gss_service_t
    ) -> opaque_auth:
        return rpc_gss_cred_vers_1_t(gss_proc, seq_num, service, self.handle).to_opaque()

    def seal(
        self,
        xid: int,
        prog: int,
        vers: int,
        proc: int,
        args: CallArgs,
        service: rpc_gss_service_t,
        *,
        gss_proc: rpc_gss_proc_t = rpc_gss_proc_t.RPCSEC_GSS_DATA,
        on_release: Callable[[], None] | None = None,
    ) -> GssSealedCall:
        """Number, sign and protect one transmission (RFC 2203 sections 5.3.1, 5.3.2).

        Raises:
            RuntimeError: the sequence window is full (``window.has_room()``).
            GssError: the mechanism failed.
        """
        seq = self.window.issue()
        try:
            cred = self.credential(gss_proc, seq, service)
            prefix = encode_call_prefix(xid, prog, vers, proc, cred)
            try:
                mic = self.mech.get_signature(prefix)
            except GSSError as exc:
                raise GssError(f"RPCSEC_GSS call verifier: {_gss_reason(exc)}") from None
            verf = opaque_auth(auth_flavor.RPCSEC_GSS, mic)
            header = encode_call_header(xid, prog, vers, proc, cred, verf)
            # DESTROY: arguments and results are not wrapped (as Linux does).
            data = gss_proc == rpc_gss_proc_t.RPCSEC_GSS_DATA
            reply_service = service if data else rpc_gss_service_t.RPC_GSS_SVC_NONE
            body: Sequence[Payload]
            if reply_service == rpc_gss_service_t.RPC_GSS_SVC_NONE:
                body = arg_pieces(args)  # sent as they are, in their pieces
            else:
                body = protect(self.mech, service, seq, arg_bytes(args))
        except BaseException:
            self.window.retire(seq)
            raise
        return GssSealedCall(self, xid, seq, reply_service, header, body, on_release)


class GssSealedCall:
    """One transmission sealed by a ``GssContext`` (a ``session.rpc.SealedCall``).

    Attributes:
        context: the context it was sealed with (replies are checked with it, even if
            the credential has moved on to a new one meanwhile).
        xid, seq_num, service: as sent.
        header, body: the call header (to the verifier) and the protected body pieces.
    """

    __slots__ = (
        "_on_release",
        "_released",
        "body",
        "context",
        "header",
        "seq_num",
        "service",
        "xid",
    )

    def __init__(
        self,
        context: GssContext,
        xid: int,
        seq_num: int,
        service: rpc_gss_service_t,
        header: bytes,
        body: Sequence[Payload],
        on_release: Callable[[], None] | None,
    ) -> None:
        self.context = context
        self.xid = xid
        self.seq_num = seq_num
        self.service = service
        self.header = header
        self.body = body
        self._on_release = on_release
        self._released = False

    def unwrap(self, verf: opaque_auth, results: Payload) -> Payload:
        """Check the reply verifier (the MIC of ``seq_num``, RFC 2203 section 5.3.3.2)
        and the results' protection; return the procedure's results.

        Raises:
            GssIntegrityError: naming what did not check out.
        """
        what = f"reply to xid=0x{self.xid:08x} (seq_num {self.seq_num})"
        mech = self.context.mech
        _check_verifier(mech, verf, _U32.pack(self.seq_num), what)
        seq, payload = unprotect(mech, self.service, results, what)
        if seq is not None and seq != self.seq_num:
            raise GssIntegrityError(f"{what}: rpc_gss_data_t carries seq_num {seq}")
        return payload

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.context.window.retire(self.seq_num)
        if self._on_release is not None:
            self._on_release()


class _InitCall:
    """A context-creation transmission: AUTH_NONE verifier, reply verifier kept."""

    __slots__ = ("body", "header", "owner")

    def __init__(self, owner: _InitCredential, header: bytes, args: CallArgs) -> None:
        self.owner = owner
        self.header = header
        self.body = arg_pieces(args)

    def unwrap(self, verf: opaque_auth, results: Payload) -> Payload:
        self.owner.reply_verf = verf
        return results

    def release(self) -> None:
        return None


class _InitCredential:
    """The credential of one RPCSEC_GSS_INIT / CONTINUE_INIT call (RFC 2203 section
    5.2.2): the verifier is AUTH_NONE; the reply's verifier is checked by the caller
    once the context is complete (it is the MIC of ``seq_window``)."""

    def __init__(self, gss_proc: rpc_gss_proc_t, handle: bytes) -> None:
        self.cred = rpc_gss_cred_vers_1_t(
            gss_proc, 0, rpc_gss_service_t.RPC_GSS_SVC_NONE, handle
        ).to_opaque()
        self.reply_verf: opaque_auth | None = None

    async def ready(self, caller: RpcCaller, prog: int, vers: int) -> None:
        return None

    def seal(self, xid: int, prog: int, vers: int, proc: int, args: CallArgs) -> _InitCall:
        return _InitCall(
            self, encode_call_header(xid, prog, vers, proc, self.cred, NULL_AUTH), args
        )

    def rejected(self, sealed: SealedCall, error: AuthError) -> bool:
        return False


class _DestroyCredential:
    """The credential of the RPCSEC_GSS_DESTROY call of one context (RFC 2203 section
    5.4): signed like a data call; arguments and results are not wrapped."""

    def __init__(self, context: GssContext) -> None:
        self.context = context

    async def ready(self, caller: RpcCaller, prog: int, vers: int) -> None:
        return None

    def seal(self, xid: int, prog: int, vers: int, proc: int, args: CallArgs) -> GssSealedCall:
        if not self.context.window.has_room():
            raise GssError("RPCSEC_GSS_DESTROY: no sequence number left in the window")
        return self.context.seal(
            xid,
            prog,
            vers,
            proc,
            args,
            rpc_gss_service_t.RPC_GSS_SVC_NONE,
            gss_proc=rpc_gss_proc_t.RPCSEC_GSS_DESTROY,
        )

    def rejected(self, sealed: SealedCall, error: AuthError) -> bool:
        return False


# --------------------------------------------------------------------------------------
# Where a principal's Kerberos credentials come from
# --------------------------------------------------------------------------------------


class CredentialSource(Protocol):
    """Where a principal's Kerberos credentials come from.

    Calling it returns python-gssapi initiator ``Credentials``; it blocks (reads a cache,
    may ask the KDC), so it runs in a worker thread.  ``label`` names it in logs.

    Raises (when called):
        GssCredentialsUnavailable: there are none, or they expired.
    """

    @property
    def label(self) -> str: ...

    def __call__(self) -> gssapi.Credentials: ...


def _checked(creds: gssapi.Credentials, label: str) -> gssapi.Credentials:
    """``creds`` if they are still valid; else GssCredentialsUnavailable."""
    try:
        lifetime = creds.lifetime
    except GSSError as exc:
        raise GssCredentialsUnavailable(
            f"no usable Kerberos credentials ({label}): {_gss_reason(exc)}"
        ) from None
    if lifetime is not None and lifetime <= 0:
        raise GssCredentialsUnavailable(f"Kerberos credentials expired ({label})")
    return creds


class CcacheSource:
    """Credentials from a credential cache, e.g. ``"FILE:/tmp/krb5cc_1000"`` (what a
    user's ``kinit`` made).

    Args:
        ccache: the cache name (``TYPE:residual``; a bare path is a FILE cache).
        principal: the cache's client principal, if it must be that one.
    """

    __slots__ = ("ccache", "principal")

    def __init__(self, ccache: str, principal: str | None = None) -> None:
        self.ccache = ccache
        self.principal = principal

    @property
    def label(self) -> str:
        return self.principal or self.ccache

    def __call__(self) -> gssapi.Credentials:
        name = None
        if self.principal is not None:
            name = gssapi.Name(self.principal, gssapi.NameType.kerberos_principal)
        try:
            creds = gssapi.Credentials(name=name, usage="initiate", store={"ccache": self.ccache})
        except GSSError as exc:
            raise GssCredentialsUnavailable(
                f"no usable Kerberos credentials in {self.ccache}: {_gss_reason(exc)}"
            ) from None
        return _checked(creds, self.ccache)

    def __repr__(self) -> str:
        return f"CcacheSource({self.ccache!r})"


class KeytabSource:
    """Credentials for ``principal`` from a keytab (a machine credential).

    MIT gets a TGT from the keytab when needed, and a new one before it expires, into
    ``ccache`` (default: a MEMORY cache of this process for the principal).

    Args:
        keytab: e.g. ``"FILE:/etc/krb5.keytab"`` or a path.
        principal: e.g. ``"host/client.example.org"`` (default realm appended) or
            ``"host/client.example.org@EXAMPLE.ORG"``.
        ccache: where the TGT and service tickets are kept.
    """

    __slots__ = ("ccache", "keytab", "principal")

    def __init__(self, keytab: str, principal: str, ccache: str | None = None) -> None:
        self.keytab = keytab
        self.principal = principal
        self.ccache = ccache or f"MEMORY:fusenfs-{os.getpid()}-{principal}"

    @property
    def label(self) -> str:
        return self.principal

    def __call__(self) -> gssapi.Credentials:
        name = gssapi.Name(self.principal, gssapi.NameType.kerberos_principal)
        try:
            creds = gssapi.Credentials(
                name=name,
                usage="initiate",
                store={"client_keytab": self.keytab, "ccache": self.ccache},
            )
        except GSSError as exc:
            raise GssCredentialsUnavailable(
                f"no Kerberos credentials for {self.principal} from keytab {self.keytab}: "
                f"{_gss_reason(exc)}"
            ) from None
        return _checked(creds, f"{self.principal} from {self.keytab}")

    def __repr__(self) -> str:
        return f"KeytabSource({self.keytab!r}, {self.principal!r})"


DEFAULT_MACHINE_KEYTAB: Final = "FILE:/etc/krb5.keytab"
"""Where a machine credential's key is by default (the system keytab, as rpc.gssd)."""


def machine_principal(hostname: str | None = None) -> str:
    """The default machine principal, ``host/FQDN`` (the realm is the default realm),
    as the Linux NFS client uses it; ``hostname`` defaults to ``socket.getfqdn()``."""
    return f"host/{(hostname or socket.getfqdn()).lower()}"


def machine_source(
    keytab: str | None = None, principal: str | None = None, ccache: str | None = None
) -> KeytabSource:
    """The machine credential's source: ``principal`` (default ``machine_principal()``)
    from ``keytab`` (default ``$KRB5_CLIENT_KTNAME``, else ``/etc/krb5.keytab``)."""
    kt = keytab or os.environ.get("KRB5_CLIENT_KTNAME") or DEFAULT_MACHINE_KEYTAB
    return KeytabSource(kt, principal or machine_principal(), ccache)


class DefaultSource:
    """Credentials from this process's default cache (``KRB5CCNAME`` or krb5.conf's)."""

    __slots__ = ()

    @property
    def label(self) -> str:
        return "default credential cache"

    def __call__(self) -> gssapi.Credentials:
        try:
            creds = gssapi.Credentials(usage="initiate")
        except GSSError as exc:
            raise GssCredentialsUnavailable(
                f"no usable Kerberos credentials in the default cache: {_gss_reason(exc)}"
            ) from None
        return _checked(creds, "default cache")


def acceptor_credentials(keytab: str, principal: str | None = None) -> Any:
    """python-gssapi acceptor credentials from ``keytab`` (a server's, for
    ``GssAcceptor``); ``principal`` (e.g. ``"nfs@localhost"``, host-based) limits them
    to that service.

    Raises:
        GssCredentialsUnavailable: the keytab has no usable key.
    """
    name = None
    if principal is not None:
        name = gssapi.Name(principal, gssapi.NameType.hostbased_service)
    try:
        return gssapi.Credentials(name=name, usage="accept", store={"keytab": keytab})
    except GSSError as exc:
        raise GssCredentialsUnavailable(
            f"no acceptor credentials in {keytab}: {_gss_reason(exc)}"
        ) from None


# --------------------------------------------------------------------------------------
# The client credential
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GssStatistics:
    """Counters of one principal's contexts with one server.

    Attributes:
        contexts: contexts established (a count).
        failures: context creations that failed.
        renewals_rejected: contexts replaced because the server rejected them
            (RPCSEC_GSS_CREDPROBLEM / CTXPROBLEM).
        renewals_expired: contexts replaced because their lifetime ran out locally or
            their sequence numbers did.
        sealed: transmissions sealed.
        window_waits: times a call waited for room in the sequence window.
        destroyed: contexts destroyed with RPCSEC_GSS_DESTROY.
    """

    contexts: int
    failures: int
    renewals_rejected: int
    renewals_expired: int
    sealed: int
    window_waits: int
    destroyed: int


class _ContextHolder:
    """The context shared by the ``GssCredential``s of one principal and server (one
    per service); creates it once for all callers."""

    def __init__(
        self,
        target: str,
        source: CredentialSource,
        label: str,
        mech: Any,
        retry_delay: float,
        clock: Callable[[], float],
    ) -> None:
        self.target = target
        self.source = source
        self.label = label
        self.mech = mech
        self.retry_delay = retry_delay
        self.clock = clock
        self.context: GssContext | None = None
        self.lock = trio.Lock()
        self.lot = trio.lowlevel.ParkingLot()
        self.failure: GssError | None = None
        self.failure_until = 0.0
        self.contexts = 0
        self.failures = 0
        self.renewals_rejected = 0
        self.renewals_expired = 0
        self.sealed = 0
        self.window_waits = 0
        self.destroyed = 0

    def wake_one(self) -> None:
        """A sequence number was retired: let one waiter look for room again."""
        self.lot.unpark()

    def drop(self, context: GssContext) -> None:
        """Forget ``context`` if it is the current one; wake every waiter."""
        if self.context is context:
            self.context = None
        self.lot.unpark_all()

    async def establish(
        self, caller: RpcCaller, prog: int, vers: int, stale: GssContext | None
    ) -> None:
        async with self.lock:
            current = self.context
            if current is not None and current is not stale and current.usable(self.clock()):
                return  # another caller made a new one meanwhile
            if stale is not None and self.context is stale:
                self.renewals_expired += 1
                log.info(
                    "RPCSEC_GSS context of %s with %s %s; creating a new one",
                    self.label,
                    self.target,
                    "ran out of sequence numbers" if stale.window.exhausted else "expires",
                )
                self.context = None
            now = self.clock()
            if self.failure is not None and now < self.failure_until:
                raise type(self.failure)(str(self.failure))
            try:
                context = await self._create(caller, prog, vers)
            except GssError as exc:
                self.failures += 1
                self.failure = exc
                self.failure_until = self.clock() + self.retry_delay
                log.warning("RPCSEC_GSS: %s", exc)
                raise
            self.failure = None
            self.context = context
            self.contexts += 1
            self.lot.unpark_all()
            log.info(
                "RPCSEC_GSS context %s established: %s -> %s, window %d, lifetime %.0f s",
                context.handle.hex(),
                context.principal or self.label,
                self.target,
                context.window.seq_window,
                context.expires_at - self.clock(),
            )

    async def _create(self, caller: RpcCaller, prog: int, vers: int) -> GssContext:
        """Context creation, RFC 2203 section 5.2."""
        creds = await trio.to_thread.run_sync(self.source, abandon_on_cancel=True)
        target = gssapi.Name(self.target, gssapi.NameType.hostbased_service)
        try:
            mech = gssapi.SecurityContext(
                name=target, creds=creds, usage="initiate", mech=self.mech, flags=_FLAGS
            )
        except GSSError as exc:
            raise GssContextError(
                f"RPCSEC_GSS context {self.label} -> {self.target}: {_gss_reason(exc)}"
            ) from None

        def first_step() -> bytes | None:
            return cast(bytes | None, mech.step())

        token = await self._step(first_step)
        handle = b""
        gss_proc = rpc_gss_proc_t.RPCSEC_GSS_INIT
        for _ in range(MAX_INIT_ROUNDS):
            if token is None:
                raise self._error("the client's GSS step produced no token")
            init = _InitCredential(gss_proc, handle)
            try:
                results = await caller.call(prog, vers, NULLPROC, encode_init_arg(token), init)
            except AuthError as exc:
                raise self._error(f"the server refused context creation: {exc}") from None
            try:
                res = rpc_gss_init_res.decode(results)
            except XdrError as exc:
                raise self._error(f"malformed rpc_gss_init_res: {exc}") from None
            major = res.gss_major
            if major not in (GSS_S_COMPLETE, GSS_S_CONTINUE_NEEDED):
                raise self._error(
                    f"the server's GSS accept failed: {gss_major_text(major)} "
                    f"(minor {res.gss_minor})"
                )
            token = None
            if res.gss_token:
                if mech.complete:
                    raise self._error("the server sent a token after the context was complete")

                def next_step(server_token: bytes = res.gss_token) -> bytes | None:
                    return cast(bytes | None, mech.step(server_token))

                token = await self._step(next_step)
            elif major == GSS_S_CONTINUE_NEEDED:
                raise self._error("the server said CONTINUE_NEEDED without a token")
            if major == GSS_S_COMPLETE:
                return self._complete(mech, res, init.reply_verf)
            if not res.handle:
                raise self._error("the server said CONTINUE_NEEDED without a context handle")
            handle = res.handle
            gss_proc = rpc_gss_proc_t.RPCSEC_GSS_CONTINUE_INIT
        raise self._error(f"not complete after {MAX_INIT_ROUNDS} round trips")

    async def _step(self, step: Callable[[], bytes | None]) -> bytes | None:
        try:
            return await trio.to_thread.run_sync(step, abandon_on_cancel=True)
        except GSSError as exc:
            if isinstance(
                exc,
                MissingCredentialsError | ExpiredCredentialsError,
            ):
                raise GssCredentialsUnavailable(
                    f"RPCSEC_GSS context {self.label} -> {self.target}: {_gss_reason(exc)}"
                ) from None
            raise self._error(_gss_reason(exc)) from None

    def _complete(self, mech: Any, res: rpc_gss_init_res, verf: opaque_auth | None) -> GssContext:
        """Check a completed creation (RFC 2203 section 5.2.3.1.1) and wrap it up."""
        if not mech.complete:
            raise self._error("the server said COMPLETE but the client's context is not")
        if not res.handle:
            raise self._error("the server's COMPLETE reply has no context handle")
        if res.seq_window < 1:
            raise self._error(f"the server's seq_window is {res.seq_window}")
        if verf is None:
            raise self._error("no reply verifier")
        try:
            _check_verifier(mech, verf, _U32.pack(res.seq_window), "rpc_gss_init_res")
        except GssIntegrityError as exc:
            raise self._error(f"the server did not prove the context: {exc}") from None
        try:
            lifetime = float(mech.lifetime)
        except GSSError as exc:
            raise self._error(f"the new context is unusable: {_gss_reason(exc)}") from None
        principal = ""
        with contextlib.suppress(GSSError):  # the name is only for logs
            principal = str(mech.initiator_name)
        return GssContext(
            cast(MechContext, mech),
            res.handle,
            res.seq_window,
            lifetime=lifetime,
            now=self.clock(),
            principal=principal,
            target=self.target,
        )

    def _error(self, detail: str) -> GssContextError:
        return GssContextError(f"RPCSEC_GSS context {self.label} -> {self.target}: {detail}")


class GssCredential:
    """RPCSEC_GSS version 1 for one principal with one server (a ``Credential``).

    The context is created on first use (``ready``: RFC 2203 section 5.2, in NULL calls
    to the program being called), shared by every call and connection to the server,
    and replaced when it nears the end of its lifetime, runs out of sequence numbers,
    or the server rejects it (RPCSEC_GSS_CREDPROBLEM / CTXPROBLEM: ``rejected``, after
    which the transport sends the call again).  Each transmission is sealed with a new
    sequence number, signed, and protected by ``service``; each reply is checked.

    Args:
        target: the server's GSS host-based service name, ``"nfs@HOST"`` (HOST as the
            server is named: its principal is ``nfs/HOST@REALM``).
        service: none (sec=krb5), integrity (krb5i) or privacy (krb5p).
        source: where the principal's Kerberos credentials come from
            (``CcacheSource``, ``KeytabSource``); default this process's cache.
        label: names the principal in logs and errors, e.g. ``"uid 1000"``.
        uid, gid: the local user the credential stands for (open owners are per uid);
            None for a machine credential.
        retry_delay: seconds a failed context creation is not tried again (calls in
            that time fail at once with the same error, instead of asking the KDC and
            the server again for each).
        clock: seconds, monotonic (tests pass a fake one).

    Raises (from ``ready``):
        GssCredentialsUnavailable: the principal has no usable credentials (EACCES).
        GssContextError: the context could not be created (EACCES).
    """

    def __init__(
        self,
        target: str,
        service: rpc_gss_service_t = rpc_gss_service_t.RPC_GSS_SVC_NONE,
        *,
        source: CredentialSource | None = None,
        label: str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        retry_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        _holder: _ContextHolder | None = None,
    ) -> None:
        if service not in (
            rpc_gss_service_t.RPC_GSS_SVC_NONE,
            rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY,
            rpc_gss_service_t.RPC_GSS_SVC_PRIVACY,
        ):
            raise ValueError(f"unknown RPCSEC_GSS service {service!r}")
        self.service = rpc_gss_service_t(service)
        self.uid = uid
        self.gid = gid
        source = source or DefaultSource()
        self._holder = _holder or _ContextHolder(
            target,
            source,
            label or source.label,
            gssapi.MechType.kerberos,
            retry_delay,
            clock,
        )

    @property
    def target(self) -> str:
        return self._holder.target

    @property
    def label(self) -> str:
        return self._holder.label

    @property
    def context(self) -> GssContext | None:
        """The current context, if one is established."""
        return self._holder.context

    @property
    def principal(self) -> str | None:
        """The initiator principal once a context exists (``alice@REALM``)."""
        context = self._holder.context
        return context.principal if context is not None else None

    def with_service(self, service: rpc_gss_service_t) -> GssCredential:
        """The same principal and context with another service (e.g. integrity for
        SECINFO and locations while data goes with privacy)."""
        return GssCredential(
            self._holder.target, service, uid=self.uid, gid=self.gid, _holder=self._holder
        )

    # -- the Credential protocol --------------------------------------------------------
    async def ready(self, caller: RpcCaller, prog: int, vers: int) -> None:
        """Have a usable context and room in its sequence window.

        Raises:
            GssCredentialsUnavailable, GssContextError: see the class.
            TransportError: the connection failed during context creation.
        """
        holder = self._holder
        while True:
            context = holder.context
            if context is None or not context.usable(holder.clock()):
                await holder.establish(caller, prog, vers, context)
                continue
            if context.window.has_room():
                return
            holder.window_waits += 1
            await holder.lot.park()

    def seal(self, xid: int, prog: int, vers: int, proc: int, args: CallArgs) -> GssSealedCall:
        """Seal one transmission (call right after ``ready``, with no checkpoint between).

        Raises:
            RuntimeError: no context or no room (``ready`` was not awaited).
            GssError: the GSS mechanism failed.
        """
        holder = self._holder
        context = holder.context
        if context is None:
            raise RuntimeError("GssCredential.seal without a context: await ready() first")
        holder.sealed += 1
        return context.seal(xid, prog, vers, proc, args, self.service, on_release=holder.wake_one)

    def rejected(self, sealed: SealedCall, error: AuthError) -> bool:
        """The server refused ``sealed``: True (send again) if that means the context
        expired or is unknown there (RFC 2203 section 5.3.3.3); the context is then
        dropped and the next ``ready`` creates a new one."""
        if not isinstance(sealed, GssSealedCall):
            return False
        if error.stat not in (auth_stat.RPCSEC_GSS_CREDPROBLEM, auth_stat.RPCSEC_GSS_CTXPROBLEM):
            return False
        holder = self._holder
        if holder.context is sealed.context:
            holder.renewals_rejected += 1
            log.info(
                "RPCSEC_GSS context %s of %s rejected by %s (%s); creating a new one",
                sealed.context.handle.hex(),
                holder.label,
                holder.target,
                error.stat.name,
            )
        holder.drop(sealed.context)
        return True

    # -- the rest ---------------------------------------------------------------------
    async def destroy(self, caller: RpcCaller, prog: int, vers: int) -> None:
        """Destroy the context on the server (RFC 2203 section 5.4) and forget it.

        Errors are logged, not raised: the server forgets contexts on its own too.
        Callers bound the wait (``trio.move_on_after``).
        """
        holder = self._holder
        context = holder.context
        if context is None:
            return
        holder.drop(context)
        try:
            await caller.call(prog, vers, NULLPROC, b"", _DestroyCredential(context))
        except NFSClientError as exc:
            log.info("RPCSEC_GSS_DESTROY of context %s: %s", context.handle.hex(), exc)
            return
        holder.destroyed += 1
        log.info("RPCSEC_GSS context %s destroyed", context.handle.hex())

    def forget_context(self) -> None:
        """Drop the context without telling the server (the next call creates one)."""
        context = self._holder.context
        if context is not None:
            self._holder.drop(context)

    def statistics(self) -> GssStatistics:
        h = self._holder
        return GssStatistics(
            contexts=h.contexts,
            failures=h.failures,
            renewals_rejected=h.renewals_rejected,
            renewals_expired=h.renewals_expired,
            sealed=h.sealed,
            window_waits=h.window_waits,
            destroyed=h.destroyed,
        )

    def __repr__(self) -> str:
        return (
            f"GssCredential({self._holder.label} -> {self._holder.target}, "
            f"{self.service.name}, uid={self.uid})"
        )


# --------------------------------------------------------------------------------------
# The server side (sans-I/O): the contrib test server and the unit tests use it
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _ServerContext:
    handle: bytes
    mech: Any
    window: ReplayWindow
    complete: bool = False
    principal: str = ""
    expires_at: float = float("inf")


@dataclass(frozen=True, slots=True)
class GssAccepted:
    """A data call the acceptor verified: dispatch ``args``, then ``GssAcceptor.reply``.

    Attributes:
        xid: the call's xid.
        handle: its context.
        seq_num: its sequence number (the reply verifier is its MIC).
        service: its protection (the results get the same).
        principal: the client principal (``alice@REALM``).
        args: the procedure's arguments, unwrapped.
    """

    xid: int
    handle: bytes
    seq_num: int
    service: rpc_gss_service_t
    principal: str
    args: Payload


class GssAcceptor:
    """The server side of RPCSEC_GSS version 1 (RFC 2203 sections 5.2.3, 5.3.3), sans-I/O.

    ``accept(call)`` takes a decoded call whose credential flavor is RPCSEC_GSS and
    returns one of: ``bytes``, a whole reply record to send (context creation and
    destruction, rejections); ``GssAccepted``, a verified data call to dispatch and
    answer with ``reply``; ``None``, a call to drop without a reply (a duplicate or a
    sequence number below the window, 5.3.3.1).

    Rejections: unknown or incomplete context, bad header checksum, expired context:
    AUTH_ERROR RPCSEC_GSS_CREDPROBLEM; sequence number at or above MAXSEQ:
    RPCSEC_GSS_CTXPROBLEM; arguments that do not unwrap or whose seq_num differs:
    GARBAGE_ARGS (5.3.3.4).

    Args:
        creds: python-gssapi acceptor credentials (``acceptor_credentials``).
        seq_window: the window granted to clients (a count).
        clock: seconds, monotonic.
    """

    def __init__(
        self, creds: Any, *, seq_window: int = 128, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if seq_window < 1:
            raise ValueError(f"seq_window must be >= 1, got {seq_window}")
        self.creds = creds
        self.seq_window = seq_window
        self.clock = clock
        self._contexts: dict[bytes, _ServerContext] = {}
        self._handles = itertools.count(1)

    @property
    def handles(self) -> list[bytes]:
        """Handles of the contexts held (complete or not)."""
        return list(self._contexts)

    def principal(self, handle: bytes) -> str | None:
        ctx = self._contexts.get(handle)
        return ctx.principal if ctx is not None and ctx.complete else None

    def forget(self, handle: bytes | None = None) -> None:
        """Drop one context (or all): its next call is refused with CREDPROBLEM, as
        after a server restart."""
        if handle is None:
            self._contexts.clear()
        else:
            self._contexts.pop(handle, None)

    def expire(self, handle: bytes) -> None:
        """Make a context's lifetime end now (it is refused with CREDPROBLEM)."""
        ctx = self._contexts.get(handle)
        if ctx is not None:
            ctx.expires_at = self.clock()

    def accept(self, call: RpcCall) -> bytes | GssAccepted | None:
        """See the class docstring."""
        try:
            cred = rpc_gss_cred_vers_1_t.from_opaque(call.cred)
        except XdrError:
            return encode_rejected_reply(
                call.xid, reject_stat.AUTH_ERROR, auth=auth_stat.AUTH_BADCRED
            )
        if cred.gss_proc in (
            rpc_gss_proc_t.RPCSEC_GSS_INIT,
            rpc_gss_proc_t.RPCSEC_GSS_CONTINUE_INIT,
        ):
            return self._init(call, cred)
        ctx = self._contexts.get(cred.handle)
        if ctx is None or not ctx.complete or self.clock() >= ctx.expires_at:
            return self._reject(call, auth_stat.RPCSEC_GSS_CREDPROBLEM)
        if call.verf.flavor != auth_flavor.RPCSEC_GSS:
            return self._reject(call, auth_stat.RPCSEC_GSS_CREDPROBLEM)
        prefix = encode_call_prefix(call.xid, call.prog, call.vers, call.proc, call.cred)
        try:
            ctx.mech.verify_signature(prefix, call.verf.body)
        except GSSError:
            return self._reject(call, auth_stat.RPCSEC_GSS_CREDPROBLEM)
        if cred.seq_num >= MAXSEQ:
            return self._reject(call, auth_stat.RPCSEC_GSS_CTXPROBLEM)
        if not ctx.window.check(cred.seq_num):
            return None
        if cred.gss_proc == rpc_gss_proc_t.RPCSEC_GSS_DESTROY:
            verf = self._verifier(ctx, cred.seq_num)
            del self._contexts[cred.handle]
            return encode_accepted_reply(call.xid, verf, accept_stat.SUCCESS)
        if cred.gss_proc != rpc_gss_proc_t.RPCSEC_GSS_DATA:
            return encode_rejected_reply(
                call.xid, reject_stat.AUTH_ERROR, auth=auth_stat.AUTH_BADCRED
            )
        try:
            seq, args = unprotect(ctx.mech, cred.service, call.args, f"call xid=0x{call.xid:08x}")
        except (GssIntegrityError, ValueError):
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
        if seq is not None and seq != cred.seq_num:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
        return GssAccepted(call.xid, cred.handle, cred.seq_num, cred.service, ctx.principal, args)

    def reply(self, accepted: GssAccepted, results: Payload) -> bytes:
        """The accepted SUCCESS reply record for ``accepted`` with ``results``: the
        verifier is the MIC of its seq_num; the results are protected as the call was.

        Raises:
            GssError: the context is gone or the mechanism failed.
        """
        ctx = self._contexts.get(accepted.handle)
        if ctx is None:
            raise GssError(f"RPCSEC_GSS context {accepted.handle.hex()} is gone")
        verf = self._verifier(ctx, accepted.seq_num)
        body = b"".join(protect(ctx.mech, accepted.service, accepted.seq_num, results))
        return encode_accepted_reply(accepted.xid, verf, accept_stat.SUCCESS, body)

    def _verifier(self, ctx: _ServerContext, seq_num: int) -> opaque_auth:
        return opaque_auth(auth_flavor.RPCSEC_GSS, ctx.mech.get_signature(_U32.pack(seq_num)))

    def _reject(self, call: RpcCall, stat: auth_stat) -> bytes:
        return encode_rejected_reply(call.xid, reject_stat.AUTH_ERROR, auth=stat)

    def _init(self, call: RpcCall, cred: rpc_gss_cred_vers_1_t) -> bytes:
        """RPCSEC_GSS_INIT / CONTINUE_INIT (RFC 2203 sections 5.2.2, 5.2.3)."""
        if call.proc != NULLPROC:
            return self._reject(call, auth_stat.AUTH_BADCRED)
        try:
            token = decode_init_arg(call.args)
        except XdrError:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
        if cred.gss_proc == rpc_gss_proc_t.RPCSEC_GSS_INIT:
            handle = next(self._handles).to_bytes(8, "big")
            ctx = _ServerContext(
                handle,
                gssapi.SecurityContext(creds=self.creds, usage="accept"),
                ReplayWindow(self.seq_window),
            )
        else:
            found = self._contexts.get(cred.handle)
            if found is None or found.complete:
                return self._reject(call, auth_stat.RPCSEC_GSS_CREDPROBLEM)
            ctx = found
        try:
            out = ctx.mech.step(token)
        except GSSError as exc:
            self._contexts.pop(ctx.handle, None)
            res = rpc_gss_init_res(b"", int(exc.maj_code), int(exc.min_code or 0), 0, b"")
            return self._init_reply(call.xid, NULL_AUTH, res)
        self._contexts[ctx.handle] = ctx
        if not ctx.mech.complete:
            res = rpc_gss_init_res(
                ctx.handle, GSS_S_CONTINUE_NEEDED, 0, self.seq_window, out or b""
            )
            return self._init_reply(call.xid, NULL_AUTH, res)
        ctx.complete = True
        ctx.principal = str(ctx.mech.initiator_name)
        try:
            ctx.expires_at = self.clock() + float(ctx.mech.lifetime)
        except GSSError:
            ctx.expires_at = self.clock()
        verf = opaque_auth(
            auth_flavor.RPCSEC_GSS, ctx.mech.get_signature(_U32.pack(self.seq_window))
        )
        res = rpc_gss_init_res(ctx.handle, GSS_S_COMPLETE, 0, self.seq_window, out or b"")
        return self._init_reply(call.xid, verf, res)

    @staticmethod
    def _init_reply(xid: int, verf: opaque_auth, res: rpc_gss_init_res) -> bytes:
        enc = Encoder()
        res.pack(enc)
        return encode_accepted_reply(xid, verf, accept_stat.SUCCESS, enc.getvalue())


# --------------------------------------------------------------------------------------
# Security flavours as nfs(5) names them (sec=krb5p:krb5i:krb5:sys)
# --------------------------------------------------------------------------------------


class SecFlavor(Enum):
    """A security flavour of nfs(5)'s ``sec=`` option.

    ``service`` is the RPCSEC_GSS service (None for sys); ``pseudoflavor`` the number
    the Kerberos pseudo-flavours have in the RPC registry (390003-390005), for display.
    """

    SYS = "sys"
    KRB5 = "krb5"
    KRB5I = "krb5i"
    KRB5P = "krb5p"

    @property
    def service(self) -> rpc_gss_service_t | None:
        return _SERVICES[self]

    @property
    def pseudoflavor(self) -> int:
        return _PSEUDOFLAVORS[self]

    @classmethod
    def from_secinfo(cls, flavor: int, oid: bytes | None, service: int | None) -> SecFlavor | None:
        """The flavour a SECINFO / SECINFO_NO_NAME entry offers (RFC 8881 section 18.29),
        or None when this client cannot use it (another mechanism or flavour).

        Args:
            flavor: ``secinfo4.flavor``.
            oid, service: ``rpcsec_gss_info.oid`` and ``.service`` for RPCSEC_GSS.
        """
        if flavor == auth_flavor.AUTH_SYS:
            return cls.SYS
        if flavor != auth_flavor.RPCSEC_GSS or oid is None or service is None:
            return None
        if oid not in (KRB5_OID_DER, b"\x06\x09" + KRB5_OID_DER):
            return None
        for member, svc in _SERVICES.items():
            if svc is not None and svc == service:
                return member
        return None


_SERVICES: Final[dict[SecFlavor, rpc_gss_service_t | None]] = {
    SecFlavor.SYS: None,
    SecFlavor.KRB5: rpc_gss_service_t.RPC_GSS_SVC_NONE,
    SecFlavor.KRB5I: rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY,
    SecFlavor.KRB5P: rpc_gss_service_t.RPC_GSS_SVC_PRIVACY,
}
_PSEUDOFLAVORS: Final[dict[SecFlavor, int]] = {
    SecFlavor.SYS: int(auth_flavor.AUTH_SYS),
    SecFlavor.KRB5: 390003,
    SecFlavor.KRB5I: 390004,
    SecFlavor.KRB5P: 390005,
}


def parse_sec(value: str) -> list[SecFlavor]:
    """``"krb5p:krb5i:krb5:sys"`` -> the flavours in the user's order of preference.

    Raises:
        ValueError: an empty list, an unknown or a repeated flavour (the message
            names it).
    """
    flavours: list[SecFlavor] = []
    for name in value.split(":"):
        try:
            flavour = SecFlavor(name.strip().lower())
        except ValueError:
            known = ", ".join(f.value for f in SecFlavor)
            raise ValueError(f"sec={value}: unknown flavour {name!r} (known: {known})") from None
        if flavour in flavours:
            raise ValueError(f"sec={value}: {flavour.value} given twice")
        flavours.append(flavour)
    return flavours

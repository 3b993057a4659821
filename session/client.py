"""The client API a higher layer calls: async, in NFS terms (RFC 8881 section 18).

``NFSClient`` turns one request of the FUSE edge (lookup, open, read, ...) into one
COMPOUND on the mount's session, keeps open and lock state in ``StateTable``, and raises
``NFS4Error`` (with an errno) for what fails.  Filehandles are ``bytes``; attributes are
``NFSAttrs``; offsets and counts are bytes.

Security (RFC 8881 sections 2.6, 18.29, 18.45; RFC 2203): callers pass an *identity*,
not a wire credential: a ``Caller`` (uid, gid, groups and pid of the FUSE request, an
AUTH_SYS credential as it stands) or None for the client itself.  ``NFSClient.compound``
maps it, per session and file system, to what is sent: on an AUTH_SYS mount the identity
as it is; on a Kerberos mount (``sec=`` lists krb5, krb5i or krb5p, and the session's
machine credential is RPCSEC_GSS) the flavour chosen for the file system decides:
``sys`` sends the identity (None: AUTH_SYS root), a Kerberos flavour sends the user's own
RPCSEC_GSS credential for the server serving the file system (``session.usercreds``,
one per uid and server, with that flavour's service; uid 0 and None: the session's
machine credential).  The flavour of each file system is the first of the user's
``sec=`` order that the server offers: negotiated at mount (``ExportNegotiation``:
LOOKUPs from the root, SECINFO where one says NFS4ERR_WRONGSEC, SECINFO_NO_NAME at the
export's root), again with SECINFO when a LOOKUP crosses into a file system that says
NFS4ERR_WRONGSEC, and with SECINFO_NO_NAME when a file system's filehandle itself
says so (after a migration) or a referral brought a new one.
"""

from __future__ import annotations

import contextvars
import errno
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from session.errors import NFSClientError
from session.gss import GssCredential, SecFlavor, rpc_gss_service_t
from session.locks import EOF_OFFSET, LockRanges, lock_end, lock_length
from session.mount import FileSystem, Superblock, split_path
from session.rpc import AuthSys, Credential, auth_flavor
from session.session import CompoundResult, OrphanHook, ServerSession, default_cb_result
from session.state import Delegation, LockState, OpenState, StateTable, newest_stateid
from session.status import NFS4ErrMoved, NFS4Error, nfs4_error
from session.usercreds import UserCredentials
from session.xdr import cb, nfs4
from session.xdr.codec import Buffer
from session.xdr.const import (
    FATTR4,
    OPEN4_RESULT_CONFIRM,
    OPEN4_RESULT_MAY_NOTIFY_LOCK,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    OPEN4_SHARE_DENY_NONE,
    RCA4_TYPE_MASK_RDATA_DLG,
    RCA4_TYPE_MASK_WDATA_DLG,
    createmode4,
    nfs_ftype4,
    nfs_lock_type4,
    nfsstat4,
    open_claim_type4,
    opentype4,
    secinfo_style4,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, bitmap4_to_set, decode_fattr4, encode_fattr4

log = logging.getLogger("session.client")

#: What every GETATTR for a FUSE ``stat`` asks for (RFC 8881 section 5.6, 5.7).
STAT_ATTR_LIST = (
    FATTR4.TYPE,
    FATTR4.CHANGE,
    FATTR4.SIZE,
    FATTR4.FSID,
    FATTR4.FILEID,
    FATTR4.MODE,
    FATTR4.NUMLINKS,
    FATTR4.OWNER,
    FATTR4.OWNER_GROUP,
    FATTR4.RAWDEV,
    FATTR4.SPACE_USED,
    FATTR4.TIME_ACCESS,
    FATTR4.TIME_METADATA,
    FATTR4.TIME_MODIFY,
)
STAT_ATTRS = bitmap4_from(STAT_ATTR_LIST)
#: READDIR asks for the filehandle too, so every entry can become an inode at once,
#: and rdattr_error, so a junction (NFS4ERR_MOVED) is seen rather than failing the page.
READDIR_ATTRS = bitmap4_from(
    [FATTR4.RDATTR_ERROR, FATTR4.FILEHANDLE, *STAT_ATTR_LIST, FATTR4.MOUNTED_ON_FILEID]
)
STATFS_ATTRS = bitmap4_from(
    [
        FATTR4.FILES_AVAIL,
        FATTR4.FILES_FREE,
        FATTR4.FILES_TOTAL,
        FATTR4.SPACE_AVAIL,
        FATTR4.SPACE_FREE,
        FATTR4.SPACE_TOTAL,
        FATTR4.MAXNAME,
    ]
)
FSINFO_ATTRS = bitmap4_from(
    [FATTR4.MAXREAD, FATTR4.MAXWRITE, FATTR4.LEASE_TIME, FATTR4.SUPPORTED_ATTRS, FATTR4.FSID]
)
ANONYMOUS_STATEID = nfs4.stateid4(seqid=0, other=bytes(12))
#: Blocking locks (F_SETLKW): first and longest pause between LOCK attempts, seconds.
#: A CB_NOTIFY_LOCK ends a pause at once (RFC 8881 section 9.6).
LOCK_POLL_FIRST = 0.05
LOCK_POLL_MAX = 0.5
NFS4_UINT64_MAX = 0xFFFFFFFFFFFFFFFF
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One READDIR entry: ``cookie`` resumes after it; ``attrs`` holds its filehandle."""

    name: bytes
    cookie: int
    attrs: NFSAttrs


@dataclass(frozen=True, slots=True)
class OpenResult:
    """What an OPEN gave: the file, its attributes, the open state (shared per owner)."""

    fh: bytes
    attrs: NFSAttrs
    state: OpenState
    created: bool
    #: With ``create``: the directory's attributes after the OPEN (it changed).
    dir_attrs: NFSAttrs | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """WRITE4resok: ``count`` bytes written, how stable, and the write verifier."""

    count: int
    committed: stable_how4
    writeverf: bytes


def _write_result(resok: nfs4.WRITE4resok) -> WriteResult:
    """What one WRITE reported (section 18.32.2)."""
    return WriteResult(resok.count, resok.committed, resok.writeverf)


@dataclass(frozen=True, slots=True)
class WriteManyResult:
    """What ``NFSClient.write_many`` did: the results of the WRITEs that succeeded, in
    the order of the pieces, and the error that stopped the rest (None: all done)."""

    written: list[WriteResult]
    error: NFSClientError | None


def _res(result: CompoundResult, index: int, cls: type[_R]) -> _R:
    res = result.resarray[index]
    if not isinstance(res, cls):
        raise NFSClientError(f"expected {cls.__name__} at op {index}, got {type(res).__name__}")
    return res


#: Stateid errors that, when the client ID changed during the call, mean the request
#: carried state from before a server restart (see ``NFSClient.compound``).
STALE_STATE_STATUSES = frozenset(
    {
        nfsstat4.NFS4ERR_STALE_STATEID,
        nfsstat4.NFS4ERR_BAD_STATEID,
        nfsstat4.NFS4ERR_OLD_STATEID,
        nfsstat4.NFS4ERR_EXPIRED,
    }
)


def server_key(session: ServerSession) -> str:
    """``"host:port"``: the server a session talks to, as file systems are keyed."""
    return f"{session.host}:{session.port}"


#: The file systems (fs_ids) whose parked calls this task may send anyway: the recovery
#: that parked them, when it must look filehandles up again before unparking.
PARK_BYPASS: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "PARK_BYPASS", default=frozenset()
)


def expired_fh(ops: list[nfs4.ArgOp], index: int) -> bytes | None:
    """The filehandle that NFS4ERR_FHEXPIRED at op ``index`` of ``ops`` is about: that of
    the last PUTFH at or before it (later ops work on what it set)."""
    for op in reversed(ops[: index + 1] if index >= 0 else ops):
        if isinstance(op, nfs4.PUTFH4args):
            return op.object
    return None


def _with_service(cred: GssCredential, service: rpc_gss_service_t) -> GssCredential:
    """``cred`` under ``service`` (the same principal and context)."""
    return cred if cred.service == service else cred.with_service(service)


def _crossed(ops: list[nfs4.ArgOp], index: int) -> bool:
    """Whether a LOOKUP or LOOKUPP comes at or before op ``index`` of ``ops``: then a
    NFS4ERR_WRONGSEC there is about the object looked up, not the first filehandle."""
    upto = ops[: index + 1] if index >= 0 else ops
    return any(isinstance(op, nfs4.LOOKUP4args | nfs4.LOOKUPP4args) for op in upto)


def first_fh(ops: list[nfs4.ArgOp]) -> bytes | None:
    """The filehandle of the first PUTFH: the file system a COMPOUND works on."""
    for op in ops:
        if isinstance(op, nfs4.PUTFH4args):
            return op.object
    return None


@dataclass(slots=True)
class ClientStatistics:
    """Counts for ``fusenfs stats``."""

    parked_calls: int = 0
    moved_errors: int = 0
    delegations_granted: int = 0
    delegations_recalled: int = 0
    delegations_returned: int = 0
    delegations_reclaimed: int = 0
    delegations_revoked: int = 0


OpsBuilder = Callable[[ServerSession], list[nfs4.ArgOp]]
MovedHandler = Callable[[FileSystem, NFS4Error], Awaitable[None]]
ReferralHandler = Callable[[bytes, bytes], Awaitable[tuple[bytes, NFSAttrs]]]
StateRef = nfs4.stateid4 | OpenState | LockState


def stateid_of(ref: StateRef) -> nfs4.stateid4:
    """The current stateid of an open or lock state (or a stateid given as such)."""
    if isinstance(ref, nfs4.stateid4):
        return ref
    if ref.stateid is None:
        raise NFSClientError("lock state without a stateid")
    return ref.stateid


def make_locker(clientid: int, lock_state: LockState) -> nfs4.locker4:
    """The locker4 for a LOCK (section 18.10.3): the first lock of a lock owner on an
    open introduces it with open_to_lock_owner4, later ones use its lock stateid."""
    if lock_state.stateid is None:
        return nfs4.locker4(
            new_lock_owner=True,
            open_owner=nfs4.open_to_lock_owner4(
                open_seqid=0,
                open_stateid=lock_state.open.stateid,
                lock_seqid=0,
                lock_owner=nfs4.lock_owner4(clientid=clientid, owner=lock_state.owner),
            ),
        )
    return nfs4.locker4(
        new_lock_owner=False,
        lock_owner=nfs4.exist_lock_owner4(lock_stateid=lock_state.stateid, lock_seqid=0),
    )


def _attrs(res: nfs4.GETATTR4res) -> NFSAttrs:
    if res.resok is None:
        raise NFSClientError("GETATTR4res without attributes")
    return decode_fattr4(res.resok.obj_attributes)


# ---------------------------------------------------------------------- security flavours
# RFC 8881 section 2.6 (security negotiation), 18.29 (SECINFO), 18.45 (SECINFO_NO_NAME).


class Caller(AuthSys):
    """Who makes a request: the FUSE caller's ``uid``, ``gid`` and supplementary
    ``gids`` (an AUTH_SYS credential, sent as it is on an AUTH_SYS file system) and its
    ``pid``, by which a Kerberos mount finds the user's credential cache (``KRB5CCNAME``
    of that process, ``session.usercreds``).  ``NFSClient.compound`` maps it to the
    wire credential (see the module docstring).

    Raises:
        ValueError: as ``AuthSys`` (more than 16 gids).
    """

    __slots__ = ("pid",)

    def __init__(
        self, uid: int, gid: int, gids: Sequence[int] = (), pid: int | None = None
    ) -> None:
        super().__init__(uid, gid, gids)
        self.pid = pid

    def __repr__(self) -> str:
        return f"Caller(uid={self.uid}, gid={self.gid}, pid={self.pid})"


#: AUTH_SYS root: what the client itself sends on an AUTH_SYS file system of a
#: Kerberos mount (its machine credential is RPCSEC_GSS there).
ROOT_AUTH_SYS = AuthSys(uid=0, gid=0)

#: Round trips security negotiation may take for one path before it gives up.
MAX_NEGOTIATION_ROUNDS = 16


class NoCommonFlavour(NFSClientError):
    """The server offers none of the flavours of ``sec=`` for an object, or refuses
    every one of them (RFC 8881 section 2.6.3.1); errno EPERM, as NFS4ERR_WRONGSEC."""

    errno = errno.EPERM


def sec_list(flavours: Sequence[SecFlavor]) -> str:
    """Flavours as nfs(5) writes them: ``"krb5p:krb5i:sys"``."""
    return ":".join(f.value for f in flavours)


def secinfo_name(entry: nfs4.secinfo4) -> str:
    """One SECINFO entry for people: ``krb5p``, ``sys``, ``none`` (AUTH_NONE), or what
    this client cannot use (another GSS mechanism, another flavour number)."""
    usable = secinfo_flavour(entry)
    if usable is not None:
        return usable.value
    if entry.flavor == auth_flavor.AUTH_NONE:
        return "none"
    if entry.flavor == auth_flavor.RPCSEC_GSS and entry.flavor_info is not None:
        info = entry.flavor_info
        return f"gss(oid {info.oid.hex()}, {rpc_gss_service_t(info.service).name})"
    return f"flavor {entry.flavor}"


def secinfo_flavour(entry: nfs4.secinfo4) -> SecFlavor | None:
    """The flavour one SECINFO / SECINFO_NO_NAME entry offers, None if unusable here."""
    info = entry.flavor_info
    return SecFlavor.from_secinfo(
        entry.flavor,
        info.oid if info is not None else None,
        info.service if info is not None else None,
    )


def offered_flavours(entries: Sequence[nfs4.secinfo4]) -> list[SecFlavor]:
    """The usable flavours of a SECINFO reply, in the server's order (section 18.29.3)."""
    out: list[SecFlavor] = []
    for entry in entries:
        flavour = secinfo_flavour(entry)
        if flavour is not None and flavour not in out:
            out.append(flavour)
    return out


def choose_flavour(
    wanted: Sequence[SecFlavor], entries: Sequence[nfs4.secinfo4], what: str
) -> SecFlavor:
    """The first flavour of the user's order ``wanted`` that ``entries`` (a SECINFO or
    SECINFO_NO_NAME reply) offers: the client's order, not the server's, decides
    (RFC 8881 section 2.6.3.1: the client picks among what the server allows).

    Args:
        what: names the object in the error, e.g. ``"localhost:/export"``.

    Raises:
        NoCommonFlavour: none is offered; the message names both lists.
    """
    offered = offered_flavours(entries)
    for flavour in wanted:
        if flavour in offered:
            return flavour
    names = ", ".join(secinfo_name(e) for e in entries) or "nothing"
    raise NoCommonFlavour(
        f"{what}: the server offers {names} (SECINFO); sec={sec_list(wanted)} allows none of them"
    )


def protected_flavour(current: SecFlavor, wanted: Sequence[SecFlavor]) -> SecFlavor:
    """The flavour to ask SECINFO with: at least integrity when the mount uses krb5i
    or krb5p (RFC 8881 section 2.6.3.1: a client should not let an unprotected reply
    choose its security).  krb5i and krb5p keep their own flavour (privacy carries the
    checksum too, and a server may refuse krb5i where it wants krb5p); a file system
    on krb5 or sys asks with krb5i when ``wanted`` has krb5i or krb5p, else with its own."""
    if current in (SecFlavor.KRB5I, SecFlavor.KRB5P):
        return current
    if SecFlavor.KRB5I in wanted or SecFlavor.KRB5P in wanted:
        return SecFlavor.KRB5I
    return current


@dataclass(slots=True)
class NegotiationRequest:
    """One COMPOUND ``ExportNegotiation`` wants sent, with ``flavour``'s credential
    (the client's own: the machine credential, or AUTH_SYS root for sys)."""

    ops: list[nfs4.ArgOp]
    flavour: SecFlavor
    kind: str  # "walk" or "secinfo"


class ExportNegotiation:
    """Finding the export's root filehandle and its flavour at mount, sans-I/O.

    RFC 8881 sections 2.6.3.1 (NFS4ERR_WRONGSEC), 18.29 (SECINFO) and 18.45
    (SECINFO_NO_NAME).  The walk is ``PUTROOTFH, LOOKUP..., GETFH,
    SECINFO_NO_NAME(SECINFO_STYLE4_CURRENT_FH)`` with the first flavour of ``wanted``.
    A LOOKUP that says NFS4ERR_WRONGSEC (the object there wants another flavour) is
    followed by SECINFO of that name from its parent (asked with at least integrity
    when the mount uses krb5i/krb5p, ``protected_flavour``; with the walk's flavour if
    that is refused), the first flavour of ``wanted`` it offers is chosen, and the walk
    goes on from the parent with it.  A flavour refused at the start of a walk (the
    root) is replaced by the next of ``wanted``.  At the end, the export root's own
    SECINFO_NO_NAME list decides (the first of ``wanted`` it offers); a server without
    SECINFO_NO_NAME (NFS4ERR_NOTSUPP) keeps the flavour the walk worked with.

    Use: ``while (req := n.next_request()) is not None: n.receive(send(req))``, where
    ``receive`` takes the results (a list) or the ``NFS4Error``; then ``root_fh``,
    ``flavour`` and ``offered``.

    Args:
        path: the export path's components.
        wanted: the user's flavours, most preferred first (at least one).
        what: names the export in errors (``"localhost:/export"``).

    Raises (from ``receive``):
        NoCommonFlavour: no flavour of ``wanted`` is offered or accepted somewhere on
            the path; or the negotiation took more than ``MAX_NEGOTIATION_ROUNDS``.
        NFS4Error: any other failure, its ``op_index`` counted as in ``PUTROOTFH,
            LOOKUP path[0], ...`` (so 1 + i is the LOOKUP of ``path[i]``).
    """

    def __init__(self, path: Sequence[str], wanted: Sequence[SecFlavor], what: str) -> None:
        if not wanted:
            raise ValueError("no flavours to negotiate")
        self.path = list(path)
        self.wanted = list(wanted)
        self.what = what
        #: The walk's start: None is the root (PUTROOTFH), else the filehandle of
        #: ``path[:done]``.
        self.start_fh: bytes | None = None
        self.done = 0
        self.flavour = self.wanted[0]
        self.refused: set[SecFlavor] = set()
        self.root_fh: bytes | None = None
        self.offered: list[SecFlavor] = []
        #: For the log: each SECINFO / SECINFO_NO_NAME answer, (path, entry names).
        self.answers: list[tuple[str, list[str]]] = []
        self.rounds = 0
        self._ask_no_name = True
        self._pending: NegotiationRequest | None = None
        self._secinfo_at = 0  # components of the walk before the name SECINFO asks for
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def _start(self) -> list[nfs4.ArgOp]:
        if self.start_fh is None:
            return [nfs4.PUTROOTFH4args()]
        return [nfs4.PUTFH4args(object=self.start_fh)]

    def _label(self, count: int) -> str:
        return f"{self.what.rsplit(':', 1)[0]}:/" + "/".join(self.path[:count])

    def next_request(self) -> NegotiationRequest | None:
        """The next COMPOUND to send, or None when done.

        Raises:
            NoCommonFlavour: too many round trips (the server's SECINFO and its
                NFS4ERR_WRONGSEC answers disagree).
        """
        if self._finished:
            return None
        if self._pending is None:
            self.rounds += 1
            if self.rounds > MAX_NEGOTIATION_ROUNDS:
                raise NoCommonFlavour(
                    f"{self.what}: security negotiation did not settle in "
                    f"{MAX_NEGOTIATION_ROUNDS} round trips (the server's SECINFO answers "
                    "and its NFS4ERR_WRONGSEC disagree)"
                )
            ops = self._start()
            ops += [nfs4.LOOKUP4args(objname=c.encode()) for c in self.path[self.done :]]
            ops.append(nfs4.GETFH4args())
            if self._ask_no_name:
                ops.append(
                    nfs4.SECINFO_NO_NAME4args(style=secinfo_style4.SECINFO_STYLE4_CURRENT_FH)
                )
            self._pending = NegotiationRequest(ops, self.flavour, "walk")
        return self._pending

    def receive(self, reply: list[nfs4.ResOp] | NFS4Error) -> None:
        """The answer to the last ``next_request`` (see the class for what it raises)."""
        request = self._pending
        if request is None:
            raise RuntimeError("ExportNegotiation.receive without a request")
        self._pending = None
        if request.kind == "walk":
            self._walked(request, reply)
        else:
            self._secinfo_answered(request, reply)

    # -- the walk ---------------------------------------------------------------------
    def _walked(self, request: NegotiationRequest, reply: list[nfs4.ResOp] | NFS4Error) -> None:
        lookups = len(self.path) - self.done
        if isinstance(reply, NFS4Error):
            e = reply
            if e.status == nfsstat4.NFS4ERR_NOTSUPP and e.op_name == "SECINFO_NO_NAME":
                self._ask_no_name = False  # an older server: keep what works
                return
            if e.status != nfsstat4.NFS4ERR_WRONGSEC:
                raise self._absolute(e)
            if e.op_index <= 0 or lookups == 0:
                self._refused_at_start()
                return
            # LOOKUP i (1-based) said so; GETFH or SECINFO_NO_NAME after the last
            # LOOKUP: the export's root itself wants another flavour.
            self._secinfo_at = min(e.op_index, lookups) - 1
            self._pending = self._secinfo_request()
            return
        getfh = reply[lookups + 1] if len(reply) > lookups + 1 else None
        if not isinstance(getfh, nfs4.GETFH4res) or getfh.resok is None:
            raise NFSClientError(f"{self.what}: the walk to the export's root gave no GETFH")
        self.root_fh = getfh.resok.object
        info = reply[-1] if self._ask_no_name else None
        if isinstance(info, nfs4.SECINFO_NO_NAME4res) and info.resok is not None:
            names = [secinfo_name(x) for x in info.resok]
            self.answers.append((self._label(len(self.path)), names))
            self.offered = offered_flavours(info.resok)
            self.flavour = choose_flavour(self.wanted, info.resok, self.what)
        else:
            self.offered = [self.flavour]
        self._finished = True

    def _refused_at_start(self) -> None:
        self.refused.add(self.flavour)
        for flavour in self.wanted:
            if flavour not in self.refused:
                self.flavour = flavour
                return
        where = self._label(self.done)
        raise NoCommonFlavour(
            f"{where}: the server refuses every flavour of sec={sec_list(self.wanted)} "
            "(NFS4ERR_WRONGSEC)"
        )

    def _absolute(self, e: NFS4Error) -> NFS4Error:
        """``e`` with its op_index counted from PUTROOTFH and the whole path."""
        if not self.done or e.op_index < 0:
            return e
        out = nfs4_error(e.status, e.op_index + self.done, e.op_name)
        out.results = e.results
        return out

    # -- SECINFO of the name that said WRONGSEC ----------------------------------------
    def _secinfo_request(self, flavour: SecFlavor | None = None) -> NegotiationRequest:
        k = self._secinfo_at
        ops = self._start()
        ops += [nfs4.LOOKUP4args(objname=c.encode()) for c in self.path[self.done : self.done + k]]
        ops.append(nfs4.GETFH4args())
        ops.append(nfs4.SECINFO4args(name=self.path[self.done + k].encode()))
        if flavour is None:
            flavour = protected_flavour(self.flavour, self.wanted)
        return NegotiationRequest(ops, flavour, "secinfo")

    def _secinfo_answered(
        self, request: NegotiationRequest, reply: list[nfs4.ResOp] | NFS4Error
    ) -> None:
        k = self._secinfo_at
        if isinstance(reply, NFS4Error):
            if reply.status == nfsstat4.NFS4ERR_WRONGSEC and request.flavour is not self.flavour:
                # The protected flavour is refused on the way there: ask as the walk did.
                self._pending = self._secinfo_request(self.flavour)
                return
            raise self._absolute(reply)
        getfh = reply[k + 1] if len(reply) > k + 2 else None
        info = reply[k + 2] if len(reply) > k + 2 else None
        if not isinstance(getfh, nfs4.GETFH4res) or getfh.resok is None:
            raise NFSClientError(f"{self.what}: SECINFO's GETFH gave no filehandle")
        if not isinstance(info, nfs4.SECINFO4res) or info.resok is None:
            raise NFSClientError(f"{self.what}: SECINFO gave no list")
        label = self._label(self.done + k + 1)
        self.answers.append((label, [secinfo_name(x) for x in info.resok]))
        chosen = choose_flavour(self.wanted, info.resok, label)
        self.start_fh = getfh.resok.object
        self.done += k
        self.flavour = chosen
        self.refused = set()


class NFSClient:
    """NFS operations on one mount, over one ``ServerSession``.

    Args:
        session: an established session (``ServerSession.start`` done).
        export_path: the path of the export in the server's namespace, e.g. "/export".
        owner_prefix: bytes that make this client's open/lock owners unique.
    """

    def __init__(self, session: ServerSession, export_path: str, owner_prefix: bytes) -> None:
        self.session = session
        self.superblock = Superblock(export_path=split_path(export_path))
        self.state = StateTable()
        self.root_fh = b""
        self.root_attrs = NFSAttrs()
        self.maxread = 1024 * 1024
        self.maxwrite = 1024 * 1024
        self.supported_attrs: set[int] = set()
        self._owner_prefix = owner_prefix
        self._file_locks: dict[bytes, trio.Lock] = defaultdict(trio.Lock)
        #: Blocked lock waiters by (filehandle, lock owner bytes), for CB_NOTIFY_LOCK.
        self._lock_wakeups: dict[tuple[bytes, bytes], trio.Event] = {}
        self._fs_by_fh: dict[bytes, FileSystem] = {}
        self._parked: dict[int, trio.Event] = {}  # by fs_id
        self._parked_count: dict[int, int] = {}
        #: Called with (directory fh, name) when LOOKUP crosses into an absent file
        #: system (a referral); returns the new file system's root (fh, attributes).
        self.on_referral: ReferralHandler | None = None
        #: The session serving each file system, by ``fs_id`` (``bind`` changes it).
        self.session_of: dict[int, ServerSession] = {}
        #: Referrals followed, by (directory's fs_id, directory fh, name): the root of
        #: the file system there, so a junction is resolved once while it is known.
        self._referrals: dict[tuple[int, bytes, bytes], bytes] = {}
        #: Called with (file system, the MOVED error); returns once it is recovered.
        self.on_moved: MovedHandler | None = None
        #: Expired filehandles and what replaced them (RFC 8881 section 4.2.3): every
        #: PUTFH of an old one is sent with the new one, whoever still holds the old.
        self._fh_current: dict[bytes, bytes] = {}
        #: Called with a filehandle the server says has expired (NFS4ERR_FHEXPIRED);
        #: returns its replacement, found again by path (the FUSE layer knows paths).
        self.on_fh_expired: Callable[[bytes], Awaitable[bytes]] | None = None
        #: Called after a migration whose destination does not know the file system's
        #: old filehandles: re-resolve every held one (returns how many).
        self.on_filehandles_expired: Callable[[FileSystem], Awaitable[int]] | None = None
        #: Accept delegations (RFC 8881 section 10); False declines them (-o nodeleg).
        self.want_delegations = True
        #: Where delegation returns run (a CB_RECALL is answered at once, the return
        #: follows): set by the state manager.
        self.task_nursery: trio.Nursery | None = None
        #: Called with a filehandle before its delegation goes back: write back what
        #: was written under it (the FUSE layer's write-behind), section 10.4.1.
        self.on_delegation_return: Callable[[bytes], Awaitable[None]] | None = None
        #: Names a file for people (logs, ``fusenfs stats``); the FUSE layer installs
        #: one that gives the inode number and path.  Default: the filehandle in hex.
        self.describe_fh: Callable[[bytes], str] | None = None
        self.stats = ClientStatistics()
        # -- security (see the module docstring) -----------------------------------------
        #: nfs(5) ``sec=``: the flavours allowed, most preferred first.
        self.sec_flavours: list[SecFlavor] = [SecFlavor.SYS]
        #: The flavour of the export's root (chosen at mount); file systems met later
        #: get their own (``flavour_of``).
        self.root_flavour = SecFlavor.SYS
        #: The machine credential for a server name, with a service (the runner's, on
        #: Kerberos mounts): the state manager gives it to sessions it makes for
        #: migration and referral destinations (``nfs@`` the location's server name).
        self.machine_credential: Callable[[str, rpc_gss_service_t], Credential] | None = None
        #: The per-user credentials for the server a session reaches (the runner's
        #: hook; by default ``UserCredentials`` for the target of the session's
        #: machine credential).  Called once per server (``server_key``).
        self.user_credentials: Callable[[ServerSession], UserCredentials] | None = None
        self._fs_flavour: dict[int, SecFlavor] = {}
        #: File systems reached through a referral whose flavour is still to be asked.
        self._unnegotiated: set[int] = set()
        self._negotiating: dict[int, trio.Lock] = defaultdict(trio.Lock)
        self._users: dict[str, tuple[UserCredentials, ServerSession]] = {}
        self._retired_users: list[tuple[UserCredentials, ServerSession]] = []

    def file_label(self, fh: bytes) -> str:
        """A person's name for the file with filehandle ``fh`` (see ``describe_fh``)."""
        if self.describe_fh is not None:
            return self.describe_fh(fh)
        return "fh " + fh.hex()

    @property
    def server(self) -> str:
        return f"{self.session.host}:{self.session.port}"

    # ------------------------------------------------------------------ routing
    def learn_fh(self, fh: bytes, attrs: NFSAttrs, via: bytes | None = None) -> None:
        """Remember which file system ``fh`` is on: (its server, its fsid attribute).

        The server is the one serving ``via`` (the directory it was found in), or ``fh``
        itself when known: crossing into another fsid stays on one server, and an fsid
        means something only there (RFC 8881 section 5.8.1.9).  A file system seen for
        the first time is recorded with that server.
        """
        if attrs.fsid is None:
            return
        base = self.fs_of(via) if via is not None else self._fs_by_fh.get(fh)
        session = self.session_for(base)
        server = server_key(session)
        fs = self.superblock.find(server, attrs.fsid)
        if fs is None:
            fs = self.superblock.note(server, attrs.fsid, fh, [])
            self.session_of[fs.fs_id] = session
            # Reached with the flavour of the file system it was found from.
            self._fs_flavour[fs.fs_id] = self.flavour_of(base)
        self._fs_by_fh[fh] = fs

    def fs_of(self, fh: bytes | None) -> FileSystem | None:
        """The file system a filehandle is on, if known."""
        if fh is None:
            return None
        return self._fs_by_fh.get(fh)

    def fs_id_of(self, fh: bytes) -> int:
        """The superblock's number of the file system ``fh`` is on (0: not known)."""
        fs = self._fs_by_fh.get(fh)
        return 0 if fs is None else fs.fs_id

    def session_for(self, fs: FileSystem | None) -> ServerSession:
        """The session currently serving ``fs`` (the mount's first session by default)."""
        if fs is None:
            return self.session
        return self.session_of.get(fs.fs_id, self.session)

    def bind(self, fs: FileSystem, session: ServerSession) -> None:
        """``fs`` is served through ``session`` from now on (migration, path change)."""
        self.session_of[fs.fs_id] = session
        self.superblock.rebind(fs, server_key(session))

    # ------------------------------------------------------------------ volatile handles
    def current_fh(self, fh: bytes) -> bytes:
        """The filehandle that replaced ``fh`` after it expired (``fh`` if none did)."""
        return self._fh_current.get(fh, fh)

    def rename_fh(self, old: bytes, new: bytes) -> None:
        """``old`` expired and the same object is ``new`` now: move everything kept
        under ``old`` (open and lock state, routing, the per-file lock, roots) to
        ``new``, and send ``new`` wherever ``old`` is still used (RFC 8881 4.2.3).
        Saying it again changes nothing."""
        if old == new or self._fh_current.get(old) == new:
            return
        for k, v in list(self._fh_current.items()):
            if v == old:
                self._fh_current[k] = new
        self._fh_current[old] = new
        self._fh_current.pop(new, None)
        fs = self._fs_by_fh.get(old)
        if fs is not None:
            self._fs_by_fh.setdefault(new, fs)
            if fs.root_fh == old:
                fs.root_fh = new
        if self.root_fh == old:
            self.root_fh = new
        self.state.rename_fh(old, new)
        if old in self._file_locks and new not in self._file_locks:
            self._file_locks[new] = self._file_locks.pop(old)
        for key, root in list(self._referrals.items()):
            if root == old:
                self._referrals[key] = new
        log.info("filehandle of %s replaced after it expired", self.file_label(new))

    def _with_current_fhs(self, ops: list[nfs4.ArgOp]) -> list[nfs4.ArgOp]:
        """``ops`` with every PUTFH of an expired filehandle sent with its replacement."""
        if not self._fh_current:
            return ops
        out: list[nfs4.ArgOp] = []
        for op in ops:
            if isinstance(op, nfs4.PUTFH4args) and op.object in self._fh_current:
                out.append(nfs4.PUTFH4args(object=self._fh_current[op.object]))
            else:
                out.append(op)
        return out

    async def resolve_root(self) -> bytes:
        """The export root's filehandle found again by path (PUTROOTFH, LOOKUP...): for
        when the old one expired.  Returns the new filehandle (also ``root_fh``)."""
        old = self.root_fh
        fs = self.fs_of(old)
        session = self.session_for(fs)
        ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args()]
        ops += [nfs4.LOOKUP4args(objname=c.encode()) for c in self.superblock.export_path]
        ops += [nfs4.GETFH4args()]
        res = await session.compound(ops, self.wire_credential(None, session, self.flavour_of(fs)))
        getfh = _res(res, len(ops) - 1, nfs4.GETFH4res)
        assert getfh.resok is not None
        self.rename_fh(old, getfh.resok.object)
        return self.root_fh

    async def check_filehandles(self, fs: FileSystem) -> int:
        """After ``fs`` moved: does its new server still know its filehandles?

        PUTFH of the file system's root there; NFS4ERR_FHEXPIRED means the destination
        gave it new handles (fh_expire_type FH4_VOL_MIGRATION or a new handle class,
        RFC 8881 sections 4.2.3 and 11.11.2): every held filehandle of it is found again
        by path before state is reclaimed with them.  Returns how many were replaced.
        """
        session = self.session_for(fs)
        try:
            await session.compound(
                [
                    nfs4.PUTFH4args(object=self.current_fh(fs.root_fh)),
                    nfs4.GETATTR4args(attr_request=bitmap4_from([FATTR4.FH_EXPIRE_TYPE])),
                ],
                self.wire_credential(None, session, self.flavour_of(fs)),
            )
            return 0
        except NFS4Error as e:
            if e.status != nfsstat4.NFS4ERR_FHEXPIRED or self.on_filehandles_expired is None:
                raise
        token = PARK_BYPASS.set(PARK_BYPASS.get() | {fs.fs_id})
        try:
            return await self.on_filehandles_expired(fs)
        finally:
            PARK_BYPASS.reset(token)

    def park(self, fs: FileSystem) -> None:
        """Hold new calls for ``fs`` until ``unpark`` (recovery is moving it)."""
        self._parked.setdefault(fs.fs_id, trio.Event())
        self._parked_count[fs.fs_id] = 0

    def unpark(self, fs: FileSystem) -> int:
        """Release the calls held for ``fs``; returns how many waited (a count)."""
        event = self._parked.pop(fs.fs_id, None)
        if event is not None:
            event.set()
        return self._parked_count.pop(fs.fs_id, 0)

    def adopt_filesystem(
        self, fh: bytes, attrs: NFSAttrs, path: list[str], session: ServerSession
    ) -> FileSystem:
        """A file system reached through a referral, served by ``session``: a file
        system of its own even if its fsid equals one on another server."""
        assert attrs.fsid is not None
        fs = self.superblock.note(server_key(session), attrs.fsid, fh, path)
        self.session_of[fs.fs_id] = session
        self._fs_by_fh[fh] = fs
        if self.negotiates:
            # Its flavour is asked (SECINFO_NO_NAME) before its first use.
            self._fs_flavour[fs.fs_id] = self.root_flavour
            self._unnegotiated.add(fs.fs_id)
        return fs

    # ------------------------------------------------------------------ security
    @property
    def negotiates(self) -> bool:
        """A Kerberos mount (``sec=`` lists krb5, krb5i or krb5p): the flavour of each
        file system is negotiated; an AUTH_SYS mount sends identities as they are."""
        return any(f is not SecFlavor.SYS for f in self.sec_flavours)

    def flavour_of(self, fs: FileSystem | None) -> SecFlavor:
        """The flavour chosen for ``fs`` (the export root's for an unknown one)."""
        if fs is None:
            return self.root_flavour
        return self._fs_flavour.get(fs.fs_id, self.root_flavour)

    def set_flavour(self, fs: FileSystem, flavour: SecFlavor) -> None:
        """``fs`` goes with ``flavour`` from now on (logged when it changes)."""
        old = self._fs_flavour.get(fs.fs_id)
        self._fs_flavour[fs.fs_id] = flavour
        if old is not flavour:
            log.info(
                "security flavour of fsid %d.%d on %s: %s%s",
                fs.fsid.major,
                fs.fsid.minor,
                fs.server,
                flavour.value,
                f" (was {old.value})" if old is not None else "",
            )

    def wire_credential(
        self, who: Credential | None, session: ServerSession, flavour: SecFlavor
    ) -> Credential | None:
        """What goes on the wire for ``who`` on ``session`` under ``flavour``.

        Args:
            who: a ``Caller`` (any credential with ``uid``, ``gid``, optionally
                ``pid``), None for the client itself, or an RPCSEC_GSS credential
                (sent as it is).
            session: the session serving the file system (its machine credential
                names the server: ``nfs@HOST``).
            flavour: the file system's (or the negotiation's).

        Returns:
            ``who`` itself when the session's machine credential is not RPCSEC_GSS (an
            AUTH_SYS mount; None then means the session's own); under sys ``who``, or
            AUTH_SYS root for None; under krb5/krb5i/krb5p the machine credential for
            None and uid 0, else the user's own credential for this server, with the
            flavour's service.

        Raises:
            GssCredentialsUnavailable: the user has no Kerberos credentials (EACCES;
                ``UserCredentials`` logs the one line).
        """
        machine = session.machine_cred
        if not isinstance(machine, GssCredential) or isinstance(who, GssCredential):
            return who
        service = flavour.service
        if service is None:
            return who if who is not None else ROOT_AUTH_SYS
        if who is None:
            return _with_service(machine, service)
        user = self.users_on(session).for_user(
            getattr(who, "uid", 0), getattr(who, "pid", None), getattr(who, "gid", None)
        )
        return _with_service(user, service)

    def users_on(self, session: ServerSession) -> UserCredentials:
        """The per-user credentials for the server ``session`` reaches (one set per
        server address and target, made by ``user_credentials`` on first use)."""
        key = server_key(session)
        machine = session.machine_cred
        found = self._users.get(key)
        if found is not None:
            users, seen = found
            if seen is session or not isinstance(machine, GssCredential):
                return users
            if users.target == machine.target:
                self._users[key] = (users, session)  # the same server, a new session
                return users
            self._retired_users.append(found)
        if self.user_credentials is not None:
            users = self.user_credentials(session)
        elif isinstance(machine, GssCredential):
            users = UserCredentials(machine.target, machine.service, machine=machine)
        else:
            raise NFSClientError(f"{key}: no RPCSEC_GSS machine credential for users")
        self._users[key] = (users, session)
        return users

    def _server_name(self) -> str:
        """The server's name as the mount gave it (the machine credential's target
        host, ``nfs@HOST``), else its address."""
        machine = self.session.machine_cred
        if isinstance(machine, GssCredential) and "@" in machine.target:
            return machine.target.split("@", 1)[1]
        return self.session.host

    async def negotiate_export(self) -> bytes:
        """At mount, on a Kerberos mount: the export root's filehandle and flavour
        (``ExportNegotiation``; RFC 8881 sections 2.6.3.1, 18.29, 18.45), sent with the
        client's own credentials.  Sets ``root_flavour``; the session's machine
        credential takes its service (sys: unchanged), so that what the session sends
        by itself for the export (recovery, location attributes) is what the export
        accepts: krb5i and krb5p keep integrity for it.

        Raises:
            NoCommonFlavour: the server offers or accepts none of ``sec_flavours``.
            NFS4Error: the path cannot be looked up (``op_index`` as in ``mount``).
        """
        session = self.session
        what = f"{self._server_name()}:/" + "/".join(self.superblock.export_path)
        neg = ExportNegotiation(self.superblock.export_path, self.sec_flavours, what)
        while (request := neg.next_request()) is not None:
            wire = self.wire_credential(None, session, request.flavour)
            try:
                res = await session.compound(request.ops, wire)
            except NFS4Error as e:
                neg.receive(e)
                continue
            neg.receive(list(res.resarray))
        for where, names in neg.answers:
            log.info("SECINFO %s: %s", where, " ".join(names))
        assert neg.root_fh is not None
        self.root_flavour = neg.flavour
        machine = session.machine_cred
        if isinstance(machine, GssCredential) and neg.flavour.service is not None:
            session.machine_cred = _with_service(machine, neg.flavour.service)
        log.info(
            "%s: security flavour %s (sec=%s; the export offers %s)",
            what,
            neg.flavour.value,
            sec_list(self.sec_flavours),
            sec_list(neg.offered),
        )
        return neg.root_fh

    async def secinfo(self, dir_fh: bytes, name: bytes) -> list[nfs4.secinfo4]:
        """SECINFO of ``name`` in ``dir_fh`` (RFC 8881 section 18.29; for ".."
        SECINFO_NO_NAME with SECINFO_STYLE4_PARENT, section 18.45), asked by the client
        itself with ``protected_flavour``, and with the directory's own flavour if the
        server refuses that one.

        Raises:
            NFS4Error: the server refused it.
        """
        current = self.flavour_of(self.fs_of(dir_fh))
        op: nfs4.ArgOp = (
            nfs4.SECINFO_NO_NAME4args(style=secinfo_style4.SECINFO_STYLE4_PARENT)
            if name == b".."
            else nfs4.SECINFO4args(name=name)
        )
        ops: list[nfs4.ArgOp] = [nfs4.PUTFH4args(object=dir_fh), op]
        for flavour in dict.fromkeys([protected_flavour(current, self.sec_flavours), current]):
            try:
                res = await self.compound(
                    ops, None, via=dir_fh, migration_ok=False, flavour=flavour
                )
            except NFS4Error as e:
                if e.status == nfsstat4.NFS4ERR_WRONGSEC and flavour is not current:
                    continue
                raise
            got = res.resarray[1] if len(res.resarray) > 1 else None
            if isinstance(got, nfs4.SECINFO4res | nfs4.SECINFO_NO_NAME4res) and got.resok:
                return got.resok
            break
        raise NFSClientError(f"SECINFO of {name!r} in {self.file_label(dir_fh)} gave no list")

    async def renegotiate(
        self, fs: FileSystem, session: ServerSession, refused: SecFlavor | None
    ) -> SecFlavor:
        """Choose ``fs``'s flavour again (RFC 8881 sections 2.6.3.1, 18.45): its root's
        SECINFO_NO_NAME (SECINFO_STYLE4_CURRENT_FH), asked with the flavours of
        ``sec=`` in turn until one is accepted (a server may refuse even that with a
        flavour the file system does not take), ``refused`` not at all; the first of
        ``sec=`` the answer offers is the file system's from now on.  ``refused`` None:
        a file system a referral brought, asked first with the flavour it inherited.
        One at a time per file system; a call that finds it done meanwhile returns.

        Raises:
            NoCommonFlavour: every flavour refused, or none of them offered.
            NFS4Error: another failure.
        """
        async with self._negotiating[fs.fs_id]:
            current = self.flavour_of(fs)
            if refused is None and fs.fs_id not in self._unnegotiated:
                return current
            if refused is not None and current is not refused:
                return current
            self._unnegotiated.discard(fs.fs_id)
            order = [f for f in self.sec_flavours if f is not refused]
            if refused is None:
                order = [current, *(f for f in order if f is not current)]
            label = f"fsid {fs.fsid.major}.{fs.fsid.minor} on {server_key(session)}"
            ops: list[nfs4.ArgOp] = [
                nfs4.PUTFH4args(object=self.current_fh(fs.root_fh)),
                nfs4.SECINFO_NO_NAME4args(style=secinfo_style4.SECINFO_STYLE4_CURRENT_FH),
            ]
            for flavour in order:
                try:
                    res = await session.compound(ops, self.wire_credential(None, session, flavour))
                except NFS4Error as e:
                    if e.status == nfsstat4.NFS4ERR_WRONGSEC:
                        continue
                    if e.status == nfsstat4.NFS4ERR_NOTSUPP and refused is None:
                        return current  # no SECINFO_NO_NAME: keep what reached it
                    raise
                got = res.resarray[1] if len(res.resarray) > 1 else None
                if not isinstance(got, nfs4.SECINFO_NO_NAME4res) or not got.resok:
                    raise NFSClientError(f"{label}: SECINFO_NO_NAME gave no list")
                log.info("SECINFO_NO_NAME %s: %s", label, " ".join(map(secinfo_name, got.resok)))
                chosen = choose_flavour(self.sec_flavours, got.resok, label)
                self.set_flavour(fs, chosen)
                return chosen
            raise NoCommonFlavour(
                f"{label}: the server refuses every flavour of sec={sec_list(self.sec_flavours)} "
                "(NFS4ERR_WRONGSEC)"
            )

    async def destroy_user_contexts(self) -> int:
        """RPCSEC_GSS_DESTROY of every user's context with every server (at unmount,
        before the sessions go; RFC 2203 section 5.4), in parallel, each bounded by its
        session's ``timeo`` (``ServerSession.destroy_credential``); the cache
        descriptors are closed.  Returns how many contexts were destroyed (a count)."""
        sets = [*self._users.values(), *self._retired_users]
        pairs = [
            (cred, session)
            for users, session in sets
            for cred in users.credentials()
            if cred.context is not None
        ]
        async with trio.open_nursery() as nursery:
            for cred, session in pairs:
                nursery.start_soon(session.destroy_credential, cred)
        for users, _ in sets:
            users.close()
        return len(pairs)

    async def compound(
        self,
        ops: list[nfs4.ArgOp] | OpsBuilder,
        cred: Credential | None = None,
        via: bytes | None = None,
        migration_ok: bool = True,
        on_orphan: OrphanHook | None = None,
        flavour: SecFlavor | None = None,
    ) -> CompoundResult:
        """Send ``ops`` after SEQUENCE on the session serving the file system of ``via``.

        ``ops`` may be a function of the session, called again for every attempt, so
        that client IDs and stateids are the current ones after a migration.  On
        NFS4ERR_MOVED the call is parked: ``on_moved`` (the state manager) recovers
        the file system and the call is retried against its new server (RFC 8881
        section 11.13, seed 002's control flow); calls for a parked file system wait.
        ``on_orphan`` is passed to ``ServerSession.compound``: it undoes what a request
        did if its caller was interrupted and the server executed it anyway.

        ``cred`` is who asks (a ``Caller``; None: the client itself): it goes as the
        wire credential of the file system's flavour on the session serving it
        (``wire_credential``), or of ``flavour`` when given (security negotiation).  A
        file system that answers NFS4ERR_WRONGSEC for its filehandle (before any
        LOOKUP) is negotiated again (``renegotiate``, SECINFO_NO_NAME) and the call
        sent once more (RFC 8881 section 2.6.3.1); so is one a referral brought, before
        its first call.

        Raises:
            NFS4Error: what the server returned, MOVED included if recovery failed.
            NoCommonFlavour: the file system wants no flavour of ``sec=`` (EPERM).
            GssCredentialsUnavailable: the user has no Kerberos credentials (EACCES).
        """
        if via is None:
            via = first_fh(ops(self.session) if callable(ops) else ops)
        fs = self.fs_of(via)
        moved = 0
        rebuilt = 0
        refreshed = 0
        renegotiated = False
        while True:
            if fs is not None and fs.fs_id not in PARK_BYPASS.get():
                waiting = self._parked.get(fs.fs_id)
                if waiting is not None:
                    self.stats.parked_calls += 1
                    self._parked_count[fs.fs_id] = self._parked_count.get(fs.fs_id, 0) + 1
                    await waiting.wait()
            session = self.session_for(fs)
            if flavour is None and fs is not None and fs.fs_id in self._unnegotiated:
                await self.renegotiate(fs, session, None)
            built = self._with_current_fhs(ops(session) if callable(ops) else ops)
            clientid = session.clientid
            wire = self.wire_credential(cred, session, flavour or self.flavour_of(fs))
            try:
                return await session.compound(built, wire, on_orphan=on_orphan)
            except NFS4ErrMoved as e:
                if fs is None or self.on_moved is None or moved >= 3 or not migration_ok:
                    raise
                moved += 1
                self.stats.moved_errors += 1
                if self.session_for(fs) is not session:
                    # Sent before a recovery that has since rebound the file system:
                    # just send it again, to where the file system is now.
                    continue
                await self.on_moved(fs, e)
            except NFS4Error as e:
                if (
                    e.status == nfsstat4.NFS4ERR_WRONGSEC
                    and flavour is None
                    and fs is not None
                    and not renegotiated
                    and self.negotiates
                    and not _crossed(built, e.op_index)
                ):
                    # The file system's own filehandle wants another flavour now
                    # (after a migration, or the server's policy changed).
                    renegotiated = True
                    await self.renegotiate(fs, session, self.flavour_of(fs))
                    continue
                if e.status == nfsstat4.NFS4ERR_FHEXPIRED and self.on_fh_expired is not None:
                    expired = expired_fh(built, e.op_index)
                    if expired is not None and refreshed < 3:
                        # RFC 8881 section 4.2.3: find the object again by path and
                        # send the request again with its new filehandle.
                        refreshed += 1
                        self.rename_fh(expired, await self.on_fh_expired(expired))
                        continue
                    raise
                # The session re-sends a request after it rebuilt a lost client ID (a
                # server restart), but the request was built with the old stateids.
                # State has been reclaimed meanwhile (RFC 8881 section 8.4.2.1): build
                # the request again with the current stateids and send it once more.
                if (
                    not callable(ops)
                    or session.clientid == clientid
                    or e.status not in STALE_STATE_STATUSES
                    or rebuilt >= 2
                ):
                    raise
                rebuilt += 1
                log.info("%s after a new client ID: re-sending with reclaimed state", e)

    # ------------------------------------------------------------------ mount
    async def mount(self) -> NFSAttrs:
        """Find the export's root: PUTROOTFH, LOOKUP each component, GETFH, GETATTR.

        On a Kerberos mount the root and its flavour are negotiated first
        (``negotiate_export``), then PUTFH of the root replaces the LOOKUPs.

        Raises:
            NFS4Error: e.g. NFS4ERR_NOENT if the export path does not exist.
            NoCommonFlavour: the export wants no flavour of ``sec=``.
        """
        ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args()]
        for comp in self.superblock.export_path:
            ops.append(nfs4.LOOKUP4args(objname=comp.encode()))
        if self.negotiates:
            ops = [nfs4.PUTFH4args(object=await self.negotiate_export())]
        ops += [
            nfs4.GETFH4args(),
            nfs4.GETATTR4args(attr_request=STAT_ATTRS),
            nfs4.GETATTR4args(attr_request=FSINFO_ATTRS),
        ]
        res = await self.compound(ops)
        n = len(ops)
        getfh = _res(res, n - 3, nfs4.GETFH4res)
        assert getfh.resok is not None
        self.root_fh = getfh.resok.object
        self.root_attrs = _attrs(_res(res, n - 2, nfs4.GETATTR4res))
        info = _attrs(_res(res, n - 1, nfs4.GETATTR4res))
        self.maxread = min(info.maxread or self.maxread, self.session.options.max_response - 4096)
        self.maxwrite = min(info.maxwrite or self.maxwrite, self.session.options.max_request - 4096)
        self.supported_attrs = set(info.supported_attrs or [])
        if self.root_attrs.fsid is not None:
            fs = self.superblock.note(
                self.server, self.root_attrs.fsid, self.root_fh, self.superblock.export_path
            )
            self.session_of[fs.fs_id] = self.session
            self._fs_by_fh[self.root_fh] = fs
            self._fs_flavour[fs.fs_id] = self.root_flavour
        return self.root_attrs

    # ------------------------------------------------------------------ metadata
    async def getattr(self, fh: bytes, cred: Credential | None = None) -> NFSAttrs:
        """GETATTR of the stat attributes (RFC 8881 section 18.7)."""
        res = await self.compound(
            [nfs4.PUTFH4args(object=fh), nfs4.GETATTR4args(attr_request=STAT_ATTRS)], cred
        )
        attrs = _attrs(_res(res, 1, nfs4.GETATTR4res))
        self.learn_fh(fh, attrs)
        return attrs

    async def lookup(
        self, dir_fh: bytes, name: bytes, cred: Credential | None = None
    ) -> tuple[bytes, NFSAttrs]:
        """LOOKUP ``name`` in ``dir_fh``: (filehandle, attributes) (section 18.15)."""
        ops: list[nfs4.ArgOp] = [nfs4.PUTFH4args(object=dir_fh)]
        if name == b"..":
            ops.append(nfs4.LOOKUPP4args())
        else:
            ops.append(nfs4.LOOKUP4args(objname=name))
        ops += [nfs4.GETFH4args(), nfs4.GETATTR4args(attr_request=STAT_ATTRS)]
        try:
            res = await self.compound(ops, cred, migration_ok=False)
        except NFS4ErrMoved as e:
            return await self._moved_in_lookup(dir_fh, name, e, cred)
        except NFS4Error as e:
            if e.status != nfsstat4.NFS4ERR_WRONGSEC or e.op_index < 1 or not self.negotiates:
                raise
            return await self._lookup_other_flavour(dir_fh, name, ops, cred)
        getfh = _res(res, 2, nfs4.GETFH4res)
        assert getfh.resok is not None
        attrs = _attrs(_res(res, 3, nfs4.GETATTR4res))
        self.learn_fh(getfh.resok.object, attrs, via=dir_fh)
        return getfh.resok.object, attrs

    async def _lookup_other_flavour(
        self, dir_fh: bytes, name: bytes, ops: list[nfs4.ArgOp], cred: Credential | None
    ) -> tuple[bytes, NFSAttrs]:
        """The LOOKUP said NFS4ERR_WRONGSEC: ``name`` is in a file system that wants
        another flavour (RFC 8881 section 2.6.3.1.1).  SECINFO of the name, the first
        flavour of ``sec=`` it offers, the LOOKUP again with that flavour, which the new
        file system keeps.

        Raises:
            NoCommonFlavour: none of ``sec=`` is offered there (EPERM).
            NFS4Error: the LOOKUP failed again.
        """
        fs = self.fs_of(dir_fh)
        label = f"{self.file_label(dir_fh)}/{name.decode(errors='replace')}"
        flavour = choose_flavour(self.sec_flavours, await self.secinfo(dir_fh, name), label)
        res = await self.compound(ops, cred, migration_ok=False, flavour=flavour)
        getfh = _res(res, 2, nfs4.GETFH4res)
        assert getfh.resok is not None
        fh = getfh.resok.object
        attrs = _attrs(_res(res, 3, nfs4.GETATTR4res))
        self.learn_fh(fh, attrs, via=dir_fh)
        crossed = self.fs_of(fh)
        if crossed is not None and crossed is not fs:
            self.set_flavour(crossed, flavour)
        return fh, attrs

    async def _moved_in_lookup(
        self, dir_fh: bytes, name: bytes, err: NFS4ErrMoved, cred: Credential | None
    ) -> tuple[bytes, NFSAttrs]:
        """MOVED in a LOOKUP: the directory's file system migrated, or ``name`` is a referral.

        The directory's fs_status tells them apart (seed 000: referral vs migration):
        present, so the crossing into ``name`` met an absent file system (a referral);
        absent, so the directory's own file system moved (migration recovery, then the
        LOOKUP again).
        """
        fs = self.fs_of(dir_fh)
        session = self.session_for(fs)
        dir_absent = err.op_index == 0
        if not dir_absent:
            try:
                res = await session.compound(
                    [
                        nfs4.PUTFH4args(object=dir_fh),
                        nfs4.GETATTR4args(attr_request=bitmap4_from([FATTR4.FS_STATUS])),
                    ],
                    self.wire_credential(None, session, self.flavour_of(fs)),
                )
                status = _attrs(_res(res, 1, nfs4.GETATTR4res)).fs_status
                dir_absent = status is not None and status.fss_absent
            except NFS4ErrMoved:
                dir_absent = True
        if dir_absent:
            if fs is None or self.on_moved is None:
                raise err
            await self.on_moved(fs, err)
            return await self.lookup(dir_fh, name, cred)
        if self.on_referral is None or name == b"..":
            raise err
        key = (fs.fs_id if fs is not None else 0, dir_fh, name)
        known = self._referrals.get(key)
        if known is not None:
            try:
                return known, await self.getattr(known, cred)
            except NFSClientError as e:
                log.info("referral %r: its root is gone (%s); following it again", name, e)
                del self._referrals[key]
        fh, attrs = await self.on_referral(dir_fh, name)
        self._referrals[key] = fh
        return fh, attrs

    async def access(self, fh: bytes, mask: int, cred: Credential | None = None) -> int:
        """ACCESS: the subset of ``mask`` (ACCESS4_* bits) the caller is allowed (18.1)."""
        res = await self.compound([nfs4.PUTFH4args(object=fh), nfs4.ACCESS4args(access=mask)], cred)
        acc = _res(res, 1, nfs4.ACCESS4res)
        assert acc.resok is not None
        return acc.resok.access & mask

    async def setattr(
        self,
        fh: bytes,
        attrs: NFSAttrs,
        stateid: StateRef | None = None,
        cred: Credential | None = None,
    ) -> NFSAttrs:
        """SETATTR then GETATTR (section 18.30); size changes need an open ``stateid``."""
        fattr = encode_fattr4(attrs)
        res = await self.compound(
            lambda s: [
                nfs4.PUTFH4args(object=fh),
                nfs4.SETATTR4args(
                    stateid=ANONYMOUS_STATEID if stateid is None else stateid_of(stateid),
                    obj_attributes=fattr,
                ),
                nfs4.GETATTR4args(attr_request=STAT_ATTRS),
            ],
            cred,
            via=fh,
        )
        return _attrs(_res(res, 2, nfs4.GETATTR4res))

    async def readdir(
        self,
        fh: bytes,
        cookie: int,
        cookieverf: bytes,
        cred: Credential | None = None,
        maxcount: int = 65536,
    ) -> tuple[list[DirEntry], bytes, bool]:
        """One READDIR (section 18.23): (entries, cookieverf, eof).

        ``cookie`` 0 starts at the beginning (with an all-zero ``cookieverf``);
        ``maxcount`` bounds the reply in bytes.
        """
        res = await self.compound(
            [
                nfs4.PUTFH4args(object=fh),
                nfs4.READDIR4args(
                    cookie=cookie,
                    cookieverf=cookieverf,
                    dircount=maxcount // 4,
                    maxcount=maxcount,
                    attr_request=READDIR_ATTRS,
                ),
            ],
            cred,
        )
        rd = _res(res, 1, nfs4.READDIR4res)
        assert rd.resok is not None
        entries = [
            DirEntry(name=e.name, cookie=e.cookie, attrs=decode_fattr4(e.attrs))
            for e in rd.resok.reply.entries
        ]
        for entry in entries:
            if entry.attrs.filehandle is not None:
                self.learn_fh(entry.attrs.filehandle, entry.attrs, via=fh)
        return entries, rd.resok.cookieverf, rd.resok.reply.eof

    async def readlink(self, fh: bytes, cred: Credential | None = None) -> bytes:
        """READLINK (section 18.24): the link text as bytes."""
        res = await self.compound([nfs4.PUTFH4args(object=fh), nfs4.READLINK4args()], cred)
        rl = _res(res, 1, nfs4.READLINK4res)
        assert rl.resok is not None
        return rl.resok.link

    async def statfs(self, fh: bytes, cred: Credential | None = None) -> NFSAttrs:
        """The space_* and files_* attributes of the file system of ``fh`` (bytes, counts)."""
        res = await self.compound(
            [nfs4.PUTFH4args(object=fh), nfs4.GETATTR4args(attr_request=STATFS_ATTRS)], cred
        )
        return _attrs(_res(res, 1, nfs4.GETATTR4res))

    # ------------------------------------------------------------------ namespace
    async def create(
        self,
        dir_fh: bytes,
        name: bytes,
        objtype: nfs4.createtype4,
        attrs: NFSAttrs,
        cred: Credential | None = None,
    ) -> tuple[bytes, NFSAttrs]:
        """CREATE a directory, symlink or special file (section 18.4): (fh, attrs)."""
        fh, got, _ = await self.create_in(dir_fh, name, objtype, attrs, cred)
        return fh, got

    async def create_in(
        self,
        dir_fh: bytes,
        name: bytes,
        objtype: nfs4.createtype4,
        attrs: NFSAttrs,
        cred: Credential | None = None,
    ) -> tuple[bytes, NFSAttrs, NFSAttrs]:
        """CREATE (section 18.4) with the directory's attributes after it, in the same
        COMPOUND (as OPEN(create) and REMOVE bring them): (fh, attrs, dir_attrs)."""
        res = await self.compound(
            [
                nfs4.PUTFH4args(object=dir_fh),
                nfs4.CREATE4args(objtype=objtype, objname=name, createattrs=encode_fattr4(attrs)),
                nfs4.GETFH4args(),
                nfs4.GETATTR4args(attr_request=STAT_ATTRS),
                nfs4.PUTFH4args(object=dir_fh),
                nfs4.GETATTR4args(attr_request=STAT_ATTRS),
            ],
            cred,
        )
        getfh = _res(res, 2, nfs4.GETFH4res)
        assert getfh.resok is not None
        got = _attrs(_res(res, 3, nfs4.GETATTR4res))
        dir_attrs = _attrs(_res(res, 5, nfs4.GETATTR4res))
        self.learn_fh(getfh.resok.object, got, via=dir_fh)
        return getfh.resok.object, got, dir_attrs

    async def remove(self, dir_fh: bytes, name: bytes, cred: Credential | None = None) -> NFSAttrs:
        """REMOVE a file or an empty directory (section 18.25); returns the directory's
        attributes after it (GETATTR in the same COMPOUND)."""
        res = await self.compound(
            [
                nfs4.PUTFH4args(object=dir_fh),
                nfs4.REMOVE4args(target=name),
                nfs4.GETATTR4args(attr_request=STAT_ATTRS),
            ],
            cred,
        )
        return _attrs(_res(res, 2, nfs4.GETATTR4res))

    async def rename(
        self,
        src_dir: bytes,
        src_name: bytes,
        dst_dir: bytes,
        dst_name: bytes,
        cred: Credential | None = None,
    ) -> None:
        """RENAME (section 18.26): SAVEFH holds the source directory."""
        await self.compound(
            [
                nfs4.PUTFH4args(object=src_dir),
                nfs4.SAVEFH4args(),
                nfs4.PUTFH4args(object=dst_dir),
                nfs4.RENAME4args(oldname=src_name, newname=dst_name),
            ],
            cred,
        )

    async def link(
        self, fh: bytes, dir_fh: bytes, name: bytes, cred: Credential | None = None
    ) -> NFSAttrs:
        """LINK ``fh`` as ``name`` in ``dir_fh`` (section 18.9); returns ``fh``'s attributes."""
        res = await self.compound(
            [
                nfs4.PUTFH4args(object=fh),
                nfs4.SAVEFH4args(),
                nfs4.PUTFH4args(object=dir_fh),
                nfs4.LINK4args(newname=name),
                nfs4.RESTOREFH4args(),
                nfs4.GETATTR4args(attr_request=STAT_ATTRS),
            ],
            cred,
        )
        return _attrs(_res(res, 5, nfs4.GETATTR4res))

    # ------------------------------------------------------------------ open and close
    def open_owner(self, cred: Credential | None) -> bytes:
        """The open owner for a caller: one per uid on this mount (section 9.1.4)."""
        # A machine RPCSEC_GSS credential has no uid (None): it acts as root does.
        uid = getattr(cred, "uid", 0)
        if uid is None:
            uid = 0
        return self._owner_prefix + b"/open/" + str(uid).encode()

    def file_lock(self, fh: bytes) -> trio.Lock:
        """Serializes OPEN / OPEN_DOWNGRADE / CLOSE of one file (stateid seqid order)."""
        return self._file_locks[fh]

    async def open(
        self,
        dir_fh: bytes,
        name: bytes,
        access: int,
        *,
        create: bool = False,
        exclusive: bool = False,
        attrs: NFSAttrs | None = None,
        cred: Credential | None = None,
    ) -> OpenResult:
        """OPEN by name (CLAIM_NULL), optionally creating (section 18.16).

        One COMPOUND: PUTFH dir, OPEN, GETFH, GETATTR.  ``access`` is
        OPEN4_SHARE_ACCESS_READ/WRITE/BOTH; delegations are declined (WANT_NO_DELEG).
        ``exclusive`` makes a create GUARDED4 (EEXIST if the name exists).
        """
        owner = self.open_owner(cred)
        if create:
            mode = createmode4.GUARDED4 if exclusive else createmode4.UNCHECKED4
            how = nfs4.openflag4(
                opentype=opentype4.OPEN4_CREATE,
                how=nfs4.createhow4(mode=mode, createattrs=encode_fattr4(attrs or NFSAttrs())),
            )
        else:
            how = nfs4.openflag4(opentype=opentype4.OPEN4_NOCREATE)
        # A create changes the directory: its post-op attributes come back in the same
        # round trip, so the next lookup there need not GETATTR it first.
        dir_post_op: list[nfs4.ArgOp] = (
            [nfs4.PUTFH4args(object=dir_fh), nfs4.GETATTR4args(attr_request=STAT_ATTRS)]
            if create
            else []
        )
        res = await self.compound(
            lambda s: [
                nfs4.PUTFH4args(object=dir_fh),
                nfs4.OPEN4args(
                    seqid=0,
                    share_access=access | self._want_deleg(),
                    share_deny=OPEN4_SHARE_DENY_NONE,
                    owner=nfs4.open_owner4(clientid=s.clientid, owner=owner),
                    openhow=how,
                    claim=nfs4.open_claim4(claim=open_claim_type4.CLAIM_NULL, file=name),
                ),
                nfs4.GETFH4args(),
                nfs4.GETATTR4args(attr_request=STAT_ATTRS),
                *dir_post_op,
            ],
            cred,
            via=dir_fh,
            on_orphan=lambda r: self._settle_orphaned_open(r, None, owner, cred),
        )
        opened = _res(res, 1, nfs4.OPEN4res)
        assert opened.resok is not None
        getfh = _res(res, 2, nfs4.GETFH4res)
        assert getfh.resok is not None
        fh = getfh.resok.object
        file_attrs = _attrs(_res(res, 3, nfs4.GETATTR4res))
        self.learn_fh(fh, file_attrs, via=dir_fh)
        await self._took_delegation(fh, opened.resok, file_attrs, cred)
        if opened.resok.rflags & OPEN4_RESULT_CONFIRM:
            raise NFSClientError("server asked for OPEN_CONFIRM, which NFSv4.1 does not have")
        async with self.file_lock(fh):
            state = self.state.record_open(fh, self.fs_id_of(fh), owner, opened.resok.stateid)
            state.may_notify_lock = bool(opened.resok.rflags & OPEN4_RESULT_MAY_NOTIFY_LOCK)
            state.opened_with(access)
            state.add_user(access)
        dir_attrs = _attrs(_res(res, 5, nfs4.GETATTR4res)) if create else None
        return OpenResult(fh=fh, attrs=file_attrs, state=state, created=create, dir_attrs=dir_attrs)

    async def open_fh(self, fh: bytes, access: int, cred: Credential | None = None) -> OpenState:
        """Open a file by filehandle (CLAIM_FH, section 18.16.3), sharing the owner's state.

        Only sends OPEN when the access the owner holds does not cover ``access``.
        """
        state, _ = await self._open_fh(fh, access, cred, False)
        return state

    async def open_fh_attrs(
        self, fh: bytes, access: int, cred: Credential | None = None
    ) -> tuple[OpenState, NFSAttrs]:
        """``open_fh`` and fresh stat attributes in the same COMPOUND (PUTFH, OPEN,
        GETATTR), as close-to-open needs them at every open (section 10.3.1); a GETATTR
        alone when the owner's open already covers ``access``."""
        state, attrs = await self._open_fh(fh, access, cred, True)
        if attrs is None:
            attrs = await self.getattr(fh, cred)
        return state, attrs

    async def _open_fh(
        self, fh: bytes, access: int, cred: Credential | None, with_attrs: bool
    ) -> tuple[OpenState, NFSAttrs | None]:
        owner = self.open_owner(cred)
        async with self.file_lock(fh):
            state = self.state.find_open(fh, owner)
            held = state.server_access if state is not None else 0
            # An open the server holds serves a new one locally when it covers the
            # access: while someone uses it, or while a delegation keeps it (10.4.1).
            if (
                state is not None
                and (held | access) == held
                and (state.in_use() or self.usable_delegation(fh) is not None)
            ):
                state.add_user(access)
                return state, None
            want = access | (state.access() if state is not None else 0)
            tail: list[nfs4.ArgOp] = (
                [nfs4.GETATTR4args(attr_request=STAT_ATTRS)] if with_attrs else []
            )
            res = await self.compound(
                lambda s: [
                    nfs4.PUTFH4args(object=fh),
                    nfs4.OPEN4args(
                        seqid=0,
                        share_access=want | self._want_deleg(),
                        share_deny=OPEN4_SHARE_DENY_NONE,
                        owner=nfs4.open_owner4(clientid=s.clientid, owner=owner),
                        openhow=nfs4.openflag4(opentype=opentype4.OPEN4_NOCREATE),
                        claim=nfs4.open_claim4(claim=open_claim_type4.CLAIM_FH),
                    ),
                    *tail,
                ],
                cred,
                via=fh,
                on_orphan=lambda r: self._settle_orphaned_open(r, fh, owner, cred),
            )
            opened = _res(res, 1, nfs4.OPEN4res)
            attrs = _attrs(_res(res, 2, nfs4.GETATTR4res)) if with_attrs else None
            assert opened.resok is not None
            state = self.state.record_open(fh, self.fs_id_of(fh), owner, opened.resok.stateid)
            state.may_notify_lock = bool(opened.resok.rflags & OPEN4_RESULT_MAY_NOTIFY_LOCK)
            # An OPEN of an open the server holds adds to its access (section 18.16.3).
            state.opened_with(want)
            state.add_user(access)
        await self._took_delegation(fh, opened.resok, attrs, cred)
        return state, attrs

    async def _settle_orphaned_open(
        self,
        result: CompoundResult,
        fh: bytes | None,
        owner: bytes,
        cred: Credential | None,
    ) -> None:
        """An OPEN whose caller was interrupted was executed by the server anyway.

        If the owner holds the file open for someone, the OPEN only upgraded that open
        (section 9.1.4: one stateid per file and open owner): keep the newer stateid.
        Otherwise nobody will ever use or close it: CLOSE it now, so no open state leaks
        on the server (and give back any delegation it brought).
        """
        opened = _res(result, 1, nfs4.OPEN4res)
        if opened.resok is None:
            return
        if fh is None:
            getfh = _res(result, 2, nfs4.GETFH4res)
            if getfh.resok is None:
                return
            fh = getfh.resok.object
        await self._took_delegation(fh, opened.resok, None, cred)
        async with self.file_lock(fh):
            state = self.state.find_open(fh, owner)
            if state is not None and state.in_use():
                state.update(opened.resok.stateid)
                return
            if state is not None:
                self.state.forget_open(state)
            log.info("CLOSE of an OPEN whose caller was interrupted")
            await self.compound(
                [
                    nfs4.PUTFH4args(object=fh),
                    nfs4.CLOSE4args(seqid=0, open_stateid=opened.resok.stateid),
                ],
                cred,
                via=fh,
            )

    # ------------------------------------------------------------------ delegations
    def _want_deleg(self) -> int:
        """OPEN's delegation wish (section 18.16.3): the server's choice, or none."""
        if self.want_delegations:
            return OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE
        return OPEN4_SHARE_ACCESS_WANT_NO_DELEG

    def usable_delegation(self, fh: bytes) -> Delegation | None:
        """The delegation held on ``fh`` that may still be used (not being recalled)."""
        deleg = self.state.delegations.get(fh)
        return None if deleg is None or deleg.recalled else deleg

    def note_delegated_write(self, fh: bytes, end: int) -> None:
        """The application wrote up to byte ``end`` of a write-delegated file: what
        CB_GETATTR must answer (section 10.4.3)."""
        deleg = self.state.delegations.get(fh)
        if deleg is not None and deleg.write:
            deleg.modified = True
            deleg.size = max(deleg.size or 0, end)

    async def _took_delegation(
        self,
        fh: bytes,
        resok: nfs4.OPEN4resok,
        attrs: NFSAttrs | None,
        cred: Credential | None,
    ) -> None:
        """Keep the delegation an OPEN brought (section 10.2), or give it back at once
        when delegations are declined or the server asks so (``recall`` set)."""
        granted = resok.delegation
        body: nfs4.open_read_delegation4 | nfs4.open_write_delegation4 | None
        body = granted.read if granted.read is not None else granted.write
        if body is None:
            return
        self.stats.delegations_granted += 1
        deleg = Delegation(
            fh=fh,
            fs_id=self.fs_id_of(fh),
            stateid=body.stateid,
            write=granted.write is not None,
            change=attrs.change if attrs is not None else None,
            size=attrs.size if attrs is not None else None,
        )
        old = self.state.delegations.get(fh)
        if old is not None and old.stateid.other == deleg.stateid.other:
            old.stateid = newest_stateid(old.stateid, deleg.stateid)
            old.write = old.write or deleg.write
            return
        self.state.delegations[fh] = deleg
        log.debug("%s delegation on %s", "write" if deleg.write else "read", self.file_label(fh))
        if not self.want_delegations or body.recall:
            deleg.recalled = True
            await self.return_delegation(deleg, cred)

    async def return_delegation(self, deleg: Delegation, cred: Credential | None = None) -> None:
        """Give ``deleg`` back (section 10.4.1): what was written under it is written
        back first (``on_delegation_return``), opens kept only for it are CLOSEd, then
        DELEGRETURN (section 18.6).  Waits while its file system is being recovered.
        Errors are logged: the server revokes what is not returned in time anyway."""
        deleg.recalled = True
        fs = self.fs_of(deleg.fh)
        if fs is not None:
            waiting = self._parked.get(fs.fs_id)
            if waiting is not None:
                await waiting.wait()
        if self.on_delegation_return is not None:
            try:
                await self.on_delegation_return(deleg.fh)
            except NFSClientError as e:
                log.warning(
                    "writing back %s before returning its delegation: %s",
                    self.file_label(deleg.fh),
                    e,
                )
        async with self.file_lock(deleg.fh):
            for state in [s for s in self.state.opens_of(deleg.fh) if not s.in_use()]:
                try:
                    await self._close_now(state, cred)
                except NFS4Error as e:
                    log.info("CLOSE of an open kept for a delegation: %s", e)
            if self.state.delegations.get(deleg.fh) is not deleg:
                return  # returned meanwhile
            try:
                await self.compound(
                    lambda s: [
                        nfs4.PUTFH4args(object=deleg.fh),
                        nfs4.DELEGRETURN4args(deleg_stateid=deleg.stateid),
                    ],
                    cred,
                    via=deleg.fh,
                )
                self.stats.delegations_returned += 1
            except NFS4Error as e:
                log.info("DELEGRETURN of %s: %s", self.file_label(deleg.fh), e)
            finally:
                self.state.delegations.pop(deleg.fh, None)

    def note_server_attrs(self, fh: bytes, attrs: NFSAttrs) -> None:
        """Attributes fetched from the server with no write outstanding: the base that
        CB_GETATTR answers from (section 10.4.3)."""
        deleg = self.state.delegations.get(fh)
        if deleg is not None:
            deleg.change = attrs.change if attrs.change is not None else deleg.change
            deleg.size = attrs.size if attrs.size is not None else deleg.size
            deleg.modified = False

    async def return_all_delegations(self) -> None:
        """Give every delegation back (unmount: DESTROY_CLIENTID needs the state gone)."""
        for deleg in list(self.state.delegations.values()):
            await self.return_delegation(deleg)

    def return_soon(self, deleg: Delegation) -> None:
        """Return ``deleg`` in the background (a callback is answered at once)."""
        deleg.recalled = True
        if self.task_nursery is None:
            log.warning("a delegation cannot be returned: no task nursery")
            return
        self.task_nursery.start_soon(self.return_delegation, deleg)

    async def check_delegations(self, session: ServerSession) -> int:
        """SEQ4_STATUS_RECALLABLE_STATE_REVOKED (section 18.46.3): TEST_STATEID every
        delegation served by ``session``, FREE_STATEID and forget the revoked ones
        (their files' kept opens are closed).  Returns how many were revoked."""
        held = [
            d
            for d in self.state.delegations.values()
            if self.session_for(self.superblock.filesystems.get(d.fs_id)) is session
        ]
        if not held:
            return 0
        res = await session.compound(
            [nfs4.TEST_STATEID4args(ts_stateids=[d.stateid for d in held])]
        )
        tested = _res(res, 0, nfs4.TEST_STATEID4res)
        codes = tested.resok.tsr_status_codes if tested.resok is not None else []
        revoked = [d for d, code in zip(held, codes, strict=False) if code != nfsstat4.NFS4_OK]
        for deleg in revoked:
            log.warning("delegation on %s was revoked", self.file_label(deleg.fh))
            try:
                await session.compound([nfs4.FREE_STATEID4args(fsa_stateid=deleg.stateid)])
            except NFS4Error as e:
                log.info("FREE_STATEID of a revoked delegation: %s", e)
            await self.drop_delegation(deleg, session)
        return len(revoked)

    async def drop_delegation(
        self, deleg: Delegation, session: ServerSession | None = None
    ) -> None:
        """Forget ``deleg`` without DELEGRETURN: the server no longer has it (revoked,
        or not regained after a restart or migration; section 10.2.1).  The opens kept
        only for it are CLOSEd (straight to ``session`` when recovery names one); a
        failed CLOSE is logged (that open is gone with the state too)."""
        if self.state.delegations.get(deleg.fh) is not deleg:
            return
        del self.state.delegations[deleg.fh]
        deleg.recalled = True
        self.stats.delegations_revoked += 1
        async with self.file_lock(deleg.fh):
            for state in [s for s in self.state.opens_of(deleg.fh) if not s.in_use()]:
                try:
                    await self._close_now(state, None, session)
                except NFS4Error as e:
                    log.info("CLOSE of an open kept for a lost delegation: %s", e)

    def _cb_getattr(self, op: cb.CB_GETATTR4args) -> cb.CB_GETATTR4res:
        """CB_GETATTR (section 20.1): the size and change of a write-delegated file as
        this client knows them; change + 1 once written under the delegation (10.4.3)."""
        deleg = self.state.delegations.get(self.current_fh(op.fh)) or self.state.delegations.get(
            op.fh
        )
        if deleg is None or not deleg.write:
            return cb.CB_GETATTR4res(status=nfsstat4.NFS4ERR_BADHANDLE)
        wanted = bitmap4_to_set(op.attr_request, limit=64)
        answer = NFSAttrs()
        if FATTR4.SIZE in wanted:
            answer.size = deleg.size or 0
        if FATTR4.CHANGE in wanted:
            answer.change = (deleg.change or 0) + (1 if deleg.modified else 0)
        return cb.CB_GETATTR4res(
            status=nfsstat4.NFS4_OK, resok=cb.CB_GETATTR4resok(encode_fattr4(answer))
        )

    def _cb_recall(self, op: cb.CB_RECALL4args) -> cb.CB_RECALL4res:
        """CB_RECALL (section 20.2): answered at once; the return follows."""
        deleg = next(
            (d for d in self.state.delegations.values() if d.stateid.other == op.stateid.other),
            None,
        )
        if deleg is None:
            # Not held (already returned, or never seen): nothing to give back.
            return cb.CB_RECALL4res(status=nfsstat4.NFS4_OK)
        if not deleg.recalled:
            self.stats.delegations_recalled += 1
            self.return_soon(deleg)
        return cb.CB_RECALL4res(status=nfsstat4.NFS4_OK)

    def _cb_recall_any(self, op: cb.CB_RECALL_ANY4args) -> cb.CB_RECALL_ANY4res:
        """CB_RECALL_ANY (section 20.6): keep at most ``craa_objects_to_keep`` of the
        delegation types named; the ones no open uses go first."""
        kinds = bitmap4_to_set(op.craa_type_mask, limit=64)
        pick = [
            d
            for d in self.state.delegations.values()
            if not d.recalled
            and (
                (RCA4_TYPE_MASK_WDATA_DLG in kinds and d.write)
                or (RCA4_TYPE_MASK_RDATA_DLG in kinds and not d.write)
            )
        ]
        pick.sort(key=lambda d: any(s.in_use() for s in self.state.opens_of(d.fh)))
        for deleg in pick[: max(0, len(pick) - op.craa_objects_to_keep)]:
            self.stats.delegations_recalled += 1
            self.return_soon(deleg)
        return cb.CB_RECALL_ANY4res(status=nfsstat4.NFS4_OK)

    async def _close_now(
        self, state: OpenState, cred: Credential | None, session: ServerSession | None = None
    ) -> None:
        """CLOSE ``state`` (``file_lock`` held), releasing its byte-range locks first.
        ``session``: send there directly (recovery, with the file system parked)."""
        ops: list[nfs4.ArgOp] = [
            nfs4.PUTFH4args(object=state.fh),
            nfs4.CLOSE4args(seqid=0, open_stateid=state.stateid),
        ]
        try:
            if session is not None:
                await session.compound(ops)
                return
            for lock_state in [ls for ls in self.state.locks.values() if ls.open is state]:
                await self._locku(lock_state, 0, EOF_OFFSET, cred)
            await self.compound(lambda s: ops, cred, via=state.fh)
        finally:
            self.state.forget_open(state)

    async def release(self, state: OpenState, access: int, cred: Credential | None = None) -> None:
        """One user of ``state`` is done: CLOSE at the last, OPEN_DOWNGRADE if access shrinks.

        The downgrade asks for the smallest union of the OPENs in effect that still
        covers the users (RFC 8881 section 18.18.3); when there is none (the file was
        opened for both, then for reading under that open), the open keeps its access
        until CLOSE.
        """
        async with self.file_lock(state.fh):
            before = state.access()
            state.remove_user(access)
            if not state.in_use():
                locked = any(ls.open is state for ls in self.state.locks.values())
                if self.usable_delegation(state.fh) is not None and not locked:
                    # Kept while the delegation lasts: the next open is local (10.4.1);
                    # CLOSEd when the delegation goes back.
                    return
                # CLOSE fails with NFS4ERR_LOCKS_HELD while byte-range locks remain (RFC
                # 8881 section 18.2.3), and none may outlive the open they were made under.
                await self._close_now(state, cred)
                return
            need = state.access()
            after = state.downgrade_access(need) if need != before else None
            if after is not None:
                res = await self.compound(
                    lambda s: [
                        nfs4.PUTFH4args(object=state.fh),
                        nfs4.OPEN_DOWNGRADE4args(
                            open_stateid=state.stateid,
                            seqid=0,
                            share_access=after,
                            share_deny=OPEN4_SHARE_DENY_NONE,
                        ),
                    ],
                    cred,
                    via=state.fh,
                )
                down = _res(res, 1, nfs4.OPEN_DOWNGRADE4res)
                if down.resok is not None:
                    state.update(down.resok.open_stateid)
                    state.downgraded_to(after)

    def is_last_user(self, state: OpenState) -> bool:
        """Whether one user holds ``state`` and no byte-range lock was made under it."""
        if sum(state.users.values()) != 1:
            return False
        return not any(ls.open is state for ls in self.state.locks.values())

    async def close_with(
        self,
        state: OpenState,
        access: int,
        final: tuple[int, bytes] | None,
        cred: Credential | None = None,
    ) -> tuple[int, NFSAttrs]:
        """The last user's close in one COMPOUND: PUTFH, [WRITE FILE_SYNC4], CLOSE, GETATTR.

        The small file's data (``final``: offset, bytes) is made durable by the same
        round trip that closes the open (RFC 8881 sections 18.32, 18.2), and the
        attributes after both come back, so neither COMMIT nor a later GETATTR is
        needed.  Returns (bytes written, attributes).  The caller checked
        ``is_last_user``; if the COMPOUND fails, the open is still the caller's.

        Raises:
            NFS4Error: the WRITE or the CLOSE failed.
        """

        def build(s: ServerSession) -> list[nfs4.ArgOp]:
            ops: list[nfs4.ArgOp] = [nfs4.PUTFH4args(object=state.fh)]
            if final is not None:
                ops.append(
                    nfs4.WRITE4args(
                        stateid=state.stateid,
                        offset=final[0],
                        stable=stable_how4.FILE_SYNC4,
                        data=final[1],
                    )
                )
            ops.append(nfs4.CLOSE4args(seqid=0, open_stateid=state.stateid))
            ops.append(nfs4.GETATTR4args(attr_request=STAT_ATTRS))
            return ops

        async with self.file_lock(state.fh):
            res = await self.compound(build, cred, via=state.fh)
            written = 0
            if final is not None:
                wr = _res(res, 1, nfs4.WRITE4res)
                assert wr.resok is not None
                written = wr.resok.count
            attrs = _attrs(_res(res, len(res.resarray) - 1, nfs4.GETATTR4res))
            state.remove_user(access)
            self.state.forget_open(state)
            return written, attrs

    async def write_sync(
        self,
        fh: bytes,
        stateid: StateRef,
        offset: int,
        data: bytes,
        cred: Credential | None = None,
    ) -> tuple[int, NFSAttrs]:
        """PUTFH, WRITE FILE_SYNC4, GETATTR: one round trip that makes ``data`` durable
        and returns the attributes after it (sections 18.32, 18.7).  Returns (bytes
        written, attributes)."""
        res = await self.compound(
            lambda s: [
                nfs4.PUTFH4args(object=fh),
                nfs4.WRITE4args(
                    stateid=stateid_of(stateid),
                    offset=offset,
                    stable=stable_how4.FILE_SYNC4,
                    data=data,
                ),
                nfs4.GETATTR4args(attr_request=STAT_ATTRS),
            ],
            cred,
            via=fh,
        )
        wr = _res(res, 1, nfs4.WRITE4res)
        assert wr.resok is not None
        return wr.resok.count, _attrs(_res(res, 2, nfs4.GETATTR4res))

    def forget_fh(self, fh: bytes) -> None:
        """The FUSE layer dropped the file: drop what is kept per filehandle for it
        (routing, the per-file lock) unless open or lock state still uses it.  A
        delegation nobody uses goes back (it only kept an idle open)."""
        deleg = self.usable_delegation(fh)
        if deleg is not None and not any(s.in_use() for s in self.state.opens_of(fh)):
            self.return_soon(deleg)
        if self.state.opens_of(fh):
            return
        self._fs_by_fh.pop(fh, None)
        lock = self._file_locks.get(fh)
        if lock is not None and not lock.locked() and not lock.statistics().tasks_waiting:
            del self._file_locks[fh]

    # ------------------------------------------------------------------ data
    async def read(
        self,
        fh: bytes,
        stateid: StateRef,
        offset: int,
        count: int,
        cred: Credential | None = None,
    ) -> tuple[Buffer, bool]:
        """One READ of at most ``count`` bytes at ``offset`` (section 18.22): (data, eof).

        ``data`` is a view of the reply (no copy).

        ``stateid`` may be the ``OpenState`` itself: its current stateid is used at each
        attempt (it changes when state is reclaimed after a migration).
        """
        res = await self.compound(
            lambda s: [
                nfs4.PUTFH4args(object=fh),
                nfs4.READ4args(stateid=stateid_of(stateid), offset=offset, count=count),
            ],
            cred,
            via=fh,
        )
        rd = _res(res, 1, nfs4.READ4res)
        assert rd.resok is not None
        return rd.resok.data, rd.resok.eof

    async def write(
        self,
        fh: bytes,
        stateid: StateRef,
        offset: int,
        data: bytes | memoryview,
        stable: stable_how4 = stable_how4.UNSTABLE4,
        cred: Credential | None = None,
    ) -> WriteResult:
        """One WRITE (section 18.32); the caller splits by ``maxwrite``."""
        res = await self.compound(
            lambda s: [
                nfs4.PUTFH4args(object=fh),
                nfs4.WRITE4args(
                    stateid=stateid_of(stateid), offset=offset, stable=stable, data=data
                ),
            ],
            cred,
            via=fh,
        )
        wr = _res(res, 1, nfs4.WRITE4res)
        assert wr.resok is not None
        return _write_result(wr.resok)

    def max_writes_per_compound(self) -> int:
        """How many WRITEs ``write_many`` may put in one COMPOUND (a count, >= 1): the
        session's ``ca_maxoperations`` less SEQUENCE and PUTFH (RFC 8881 section
        18.36.3)."""
        created = self.session.create_session
        ops = created.csr_fore_chan_attrs.ca_maxoperations if created is not None else 0
        return max(1, (ops or 16) - 2)

    async def write_many(
        self,
        fh: bytes,
        stateid: StateRef,
        pieces: Sequence[tuple[int, Buffer]],
        stable: stable_how4 = stable_how4.UNSTABLE4,
        cred: Credential | None = None,
    ) -> WriteManyResult:
        """Several WRITEs to one file, as few COMPOUNDs as the session allows: PUTFH,
        then a WRITE per ``(offset, data)`` piece, executed in order (RFC 8881 sections
        16.2.3, 18.32); at most ``max_writes_per_compound()`` WRITEs and ``maxwrite``
        bytes of data to a COMPOUND, one COMPOUND after the other.  Each piece at most
        ``maxwrite`` bytes.

        A COMPOUND stops at the first operation that fails, so when one WRITE fails the
        result holds those before it that succeeded, and the error; nothing after it is
        sent.

        Raises:
            NFSClientError: nothing was written (PUTFH failed, the server unreachable).
        """
        limit = self.max_writes_per_compound()
        groups: list[list[tuple[int, Buffer]]] = []
        size = 0
        for piece in pieces:
            if not groups or len(groups[-1]) >= limit or size + len(piece[1]) > self.maxwrite:
                groups.append([])
                size = 0
            groups[-1].append(piece)
            size += len(piece[1])
        written: list[WriteResult] = []
        for group in groups:
            try:
                done, error = await self._write_compound(fh, stateid, group, stable, cred)
            except NFSClientError as e:
                if not written:
                    raise
                return WriteManyResult(written, e)
            written += done
            if error is not None:
                return WriteManyResult(written, error)
        return WriteManyResult(written, None)

    async def _write_compound(
        self,
        fh: bytes,
        stateid: StateRef,
        pieces: Sequence[tuple[int, Buffer]],
        stable: stable_how4,
        cred: Credential | None,
    ) -> tuple[list[WriteResult], NFS4Error | None]:
        """One COMPOUND of ``write_many``: the WRITEs done, and the error that stopped it."""
        try:
            res = await self.compound(
                lambda s: [
                    nfs4.PUTFH4args(object=fh),
                    *(
                        nfs4.WRITE4args(
                            stateid=stateid_of(stateid), offset=off, stable=stable, data=data
                        )
                        for off, data in pieces
                    ),
                ],
                cred,
                via=fh,
            )
        except NFS4Error as e:
            if not any(isinstance(r, nfs4.WRITE4res) for r in e.results):
                raise  # PUTFH (or the session) failed: nothing was written
            done = [
                _write_result(r.resok)
                for r in e.results
                if isinstance(r, nfs4.WRITE4res) and r.resok is not None
            ]
            return done, e
        results = []
        for index in range(1, len(pieces) + 1):
            wr = _res(res, index, nfs4.WRITE4res)
            assert wr.resok is not None
            results.append(_write_result(wr.resok))
        return results, None

    async def commit(
        self, fh: bytes, offset: int = 0, count: int = 0, cred: Credential | None = None
    ) -> bytes:
        """COMMIT (section 18.3): the write verifier to compare with the WRITEs'."""
        res = await self.compound(
            [nfs4.PUTFH4args(object=fh), nfs4.COMMIT4args(offset=offset, count=count)], cred
        )
        cm = _res(res, 1, nfs4.COMMIT4res)
        assert cm.resok is not None
        return cm.resok.writeverf

    # ------------------------------------------------------------------ callbacks
    async def handle_callback(self, args: cb.CB_COMPOUND4args) -> list[cb.CbResOp]:
        """The operations of a CB_COMPOUND after CB_SEQUENCE (RFC 8881 section 20).

        CB_NOTIFY_LOCK wakes a blocked lock waiter (section 20.11); CB_RECALL,
        CB_GETATTR, CB_RECALL_ANY and CB_RECALLABLE_OBJ_AVAIL concern delegations
        (sections 20.2, 20.1, 20.6, 20.7); the rest get the session's default answers.
        Install as ``ServerSession.on_callback``.
        """
        results: list[cb.CbResOp] = []
        for op in args.argarray:
            if isinstance(op, cb.CB_NOTIFY_LOCK4args):
                woke = self.notify_lock(op.cnla_fh, op.cnla_lock_owner.owner)
                log.debug("CB_NOTIFY_LOCK: %s", "waiter woken" if woke else "nobody waits")
                results.append(cb.CB_NOTIFY_LOCK4res(status=nfsstat4.NFS4_OK))
            elif isinstance(op, cb.CB_RECALL4args):
                results.append(self._cb_recall(op))
            elif isinstance(op, cb.CB_GETATTR4args):
                results.append(self._cb_getattr(op))
            elif isinstance(op, cb.CB_RECALL_ANY4args):
                results.append(self._cb_recall_any(op))
            elif isinstance(op, cb.CB_RECALLABLE_OBJ_AVAIL4args):
                # More delegations could be had (section 20.7): this client asks for
                # them at its next OPEN anyway.
                results.append(cb.CB_RECALLABLE_OBJ_AVAIL4res(status=nfsstat4.NFS4_OK))
            else:
                results.append(default_cb_result(op))
            if results[-1].status != nfsstat4.NFS4_OK:
                break
        return results

    # ------------------------------------------------------------------ byte-range locks
    def lock_owner(self, name: bytes) -> bytes:
        """The lock owner's ``owner`` bytes for a name unique on this mount (9.1.4)."""
        return self._owner_prefix + b"/lock/" + name

    async def lock(
        self,
        state: OpenState,
        lock_owner: bytes,
        offset: int,
        length: int,
        write: bool,
        cred: Credential | None = None,
        *,
        wait: bool = False,
    ) -> LockState:
        """LOCK a byte range (section 18.10) with POSIX semantics for the owner's ranges.

        ``length`` in bytes, 2**64 - 1 meaning to the end of file.  The first lock of a
        lock owner on an open uses open_to_lock_owner4, later ones exist_lock_owner4.
        What the owner already holds there is replaced (upgrade, downgrade, merge), as
        servers do (section 9.1.5); one that cannot split (NFS4ERR_LOCK_RANGE) gets the
        new layout range by range.  With ``wait`` (F_SETLKW) the request is
        READW_LT/WRITEW_LT and is retried on NFS4ERR_DENIED with back-off from
        ``LOCK_POLL_FIRST`` to ``LOCK_POLL_MAX`` seconds, at once on CB_NOTIFY_LOCK
        (section 9.6); cancelling the caller ends the wait and leaves no lock behind.

        Raises:
            NFS4Error: NFS4ERR_DENIED (EAGAIN) without ``wait``; NFS4ERR_DEADLOCK...
        """
        owner = self.lock_owner(lock_owner)
        if not wait:
            return await self._lock_once(state, owner, offset, length, write, False, cred)
        key = (state.fh, owner)
        delay = LOCK_POLL_FIRST
        while True:
            wake = self._lock_wakeups.setdefault(key, trio.Event())
            try:
                return await self._lock_once(state, owner, offset, length, write, True, cred)
            except NFS4Error as e:
                if e.status != nfsstat4.NFS4ERR_DENIED:
                    raise
            with trio.move_on_after(delay):
                await wake.wait()
            # After CB_NOTIFY_LOCK the lock may be free now: start the back-off again.
            delay = LOCK_POLL_FIRST if wake.is_set() else min(delay * 2, LOCK_POLL_MAX)

    def notify_lock(self, fh: bytes, owner: bytes) -> bool:
        """CB_NOTIFY_LOCK (RFC 8881 section 20.11): wake the waiter for ``owner`` on ``fh``.

        Returns True if somebody was waiting.
        """
        wake = self._lock_wakeups.pop((fh, owner), None)
        if wake is None:
            return False
        wake.set()
        return True

    async def _lock_once(
        self,
        state: OpenState,
        owner: bytes,
        offset: int,
        length: int,
        write: bool,
        blocking: bool,
        cred: Credential | None,
    ) -> LockState:
        """One LOCK attempt, serialized with the file's other state operations."""
        if blocking:
            locktype = nfs_lock_type4.WRITEW_LT if write else nfs_lock_type4.READW_LT
        else:
            locktype = nfs_lock_type4.WRITE_LT if write else nfs_lock_type4.READ_LT
        start, end = offset, lock_end(offset, length)
        async with self.file_lock(state.fh):
            lock_state = self.state.lock_state(state, owner)
            if lock_state.held.covers(start, end, locktype):
                return lock_state  # POSIX: already held so; nothing changes
            try:
                await self._send_lock(lock_state, start, end, locktype, cred, undo=True)
            except NFS4Error as e:
                if e.status != nfsstat4.NFS4ERR_LOCK_RANGE:
                    raise
                after = LockRanges(list(lock_state.held.ranges))
                after.lock(start, end, locktype)
                await self._relayout(lock_state, after, cred)
            return lock_state

    async def _send_lock(
        self,
        lock_state: LockState,
        start: int,
        end: int,
        locktype: nfs_lock_type4,
        cred: Credential | None,
        undo: bool = False,
    ) -> None:
        """LOCK ``[start, end)`` for ``lock_state`` and record it (``file_lock`` held).

        With ``undo``, a LOCK that the server grants after its caller was interrupted is
        taken back (LOCKU) and the owner's earlier ranges there are restored, so the
        server holds what the client's record says.
        """
        fh = lock_state.open.fh
        hook: OrphanHook | None = None
        if undo:
            before = lock_state.held.overlapping(start, end)

            async def hook(result: CompoundResult) -> None:
                lk = _res(result, 1, nfs4.LOCK4res)
                if lk.resok is None:
                    return
                async with self.file_lock(fh):
                    lock_state.update(lk.resok.lock_stateid)
                    log.info("LOCKU of a LOCK whose caller was interrupted")
                    await self._send_locku(lock_state, start, end, cred)
                    for piece in before:
                        await self._send_lock(
                            lock_state, piece.start, piece.end, piece.locktype, cred
                        )

        res = await self.compound(
            lambda s: [
                nfs4.PUTFH4args(object=fh),
                nfs4.LOCK4args(
                    locktype=locktype,
                    reclaim=False,
                    offset=start,
                    length=lock_length(start, end),
                    locker=make_locker(s.clientid, lock_state),
                ),
            ],
            cred,
            via=fh,
            on_orphan=hook,
        )
        lk = _res(res, 1, nfs4.LOCK4res)
        assert lk.resok is not None
        lock_state.update(lk.resok.lock_stateid)
        lock_state.held.lock(start, end, locktype)
        lock_state.lost = None

    async def _send_locku(
        self, lock_state: LockState, start: int, end: int, cred: Credential | None
    ) -> None:
        """LOCKU ``[start, end)`` exactly as given, and record it (``file_lock`` held)."""
        fh = lock_state.open.fh
        res = await self.compound(
            lambda s: [
                nfs4.PUTFH4args(object=fh),
                nfs4.LOCKU4args(
                    locktype=nfs_lock_type4.WRITE_LT,
                    seqid=0,
                    lock_stateid=stateid_of(lock_state),
                    offset=start,
                    length=lock_length(start, end),
                ),
            ],
            cred,
            via=fh,
        )
        lu = _res(res, 1, nfs4.LOCKU4res)
        if lu.lock_stateid is not None:
            lock_state.update(lu.lock_stateid)
        lock_state.held.unlock(start, end)

    async def _relayout(
        self, lock_state: LockState, after: LockRanges, cred: Credential | None
    ) -> None:
        """Make the server hold ``after`` for a server that cannot split ranges.

        Every held range not in ``after`` is unlocked whole, then every range of
        ``after`` not held is locked.  Not atomic: another client may take a range in
        between (its LOCK then fails with NFS4ERR_DENIED), so it is logged.
        """
        log.warning(
            "the server cannot split byte-range locks (NFS4ERR_LOCK_RANGE): replacing "
            "the owner's ranges one by one, not atomically"
        )
        keep = [(r.start, r.end, r.locktype) for r in after.ranges]
        for r in list(lock_state.held.ranges):
            if (r.start, r.end, r.locktype) not in keep:
                await self._send_locku(lock_state, r.start, r.end, cred)
        have = [(r.start, r.end, r.locktype) for r in lock_state.held.ranges]
        for start, end, locktype in keep:
            if (start, end, locktype) not in have:
                await self._send_lock(lock_state, start, end, locktype, cred)

    async def unlock(
        self,
        lock_state: LockState,
        offset: int,
        length: int,
        cred: Credential | None = None,
    ) -> None:
        """Release a byte range (section 18.12) of one lock state, splitting as POSIX does.

        Raises:
            NFSClientError: no LOCK was ever granted to this lock state.
        """
        if lock_state.stateid is None:
            raise NFSClientError("LOCKU before any LOCK")
        async with self.file_lock(lock_state.open.fh):
            await self._locku(lock_state, offset, lock_end(offset, length), cred)

    async def unlock_owner(
        self,
        fh: bytes,
        lock_owner: bytes,
        offset: int,
        length: int,
        cred: Credential | None = None,
    ) -> int:
        """Release a range of whatever ``lock_owner`` holds on ``fh``, through any open.

        What F_UNLCK and a close (POSIX: any descriptor of the file) ask for.  Sends
        nothing when the owner holds nothing there.  Returns the ranges released (a
        count).
        """
        owner = self.lock_owner(lock_owner)
        states = self.state.locks_of(fh, owner)
        if not states:
            return 0
        released = 0
        end = lock_end(offset, length)
        async with self.file_lock(fh):
            for lock_state in states:
                released += await self._locku(lock_state, offset, end, cred)
        return released

    async def _locku(
        self, lock_state: LockState, start: int, end: int, cred: Credential | None
    ) -> int:
        """Unlock ``[start, end)`` piece by held piece (``file_lock`` held).

        Each LOCKU covers a range the owner holds or a part of one, so a server that
        cannot split still accepts whole ranges; a part it refuses to split
        (NFS4ERR_LOCK_RANGE) is done by re-laying the owner's ranges.  A lock state left
        with no locks is freed (FREE_STATEID, section 18.38) and forgotten.  Returns
        the pieces released (a count).
        """
        pieces = lock_state.held.overlapping(start, end)
        if lock_state.lost is not None:
            # The server does not hold these any more (a reclaim failed): forget them
            # here; the application learns that the lock is gone by letting go of it.
            lock_state.held.unlock(start, end)
            if not lock_state.held:
                self.state.forget_lock(lock_state)
            return len(pieces)
        for piece in pieces:
            try:
                await self._send_locku(lock_state, piece.start, piece.end, cred)
            except NFS4Error as e:
                if e.status != nfsstat4.NFS4ERR_LOCK_RANGE:
                    raise
                after = LockRanges(list(lock_state.held.ranges))
                after.unlock(piece.start, piece.end)
                await self._relayout(lock_state, after, cred)
        if pieces and not lock_state.held and lock_state.stateid is not None:
            await self._free_lock_state(lock_state, cred)
        return len(pieces)

    async def _free_lock_state(self, lock_state: LockState, cred: Credential | None) -> None:
        """FREE_STATEID of a lock stateid that holds no locks any more (section 8.2.4)."""
        stateid = lock_state.stateid
        self.state.forget_lock(lock_state)
        if stateid is None:
            return
        try:
            await self.compound(
                [
                    nfs4.PUTFH4args(object=lock_state.open.fh),
                    nfs4.FREE_STATEID4args(fsa_stateid=stateid),
                ],
                cred,
                via=lock_state.open.fh,
            )
        except NFS4Error as e:
            log.info("FREE_STATEID of a lock stateid: %s", e)

    async def test_lock(
        self,
        fh: bytes,
        lock_owner: bytes,
        offset: int,
        length: int,
        write: bool,
        cred: Credential | None = None,
    ) -> nfs4.LOCK4denied | None:
        """LOCKT (section 18.11): None if the range could be locked, else the conflict."""
        try:
            await self.compound(
                lambda s: [
                    nfs4.PUTFH4args(object=fh),
                    nfs4.LOCKT4args(
                        locktype=nfs_lock_type4.WRITE_LT if write else nfs_lock_type4.READ_LT,
                        offset=offset,
                        length=length,
                        owner=nfs4.lock_owner4(
                            clientid=s.clientid, owner=self.lock_owner(lock_owner)
                        ),
                    ),
                ],
                cred,
                via=fh,
            )
        except NFS4Error as e:
            if e.results and isinstance(e.results[-1], nfs4.LOCKT4res):
                denied = e.results[-1].denied
                if denied is not None:
                    return denied
            raise
        return None


def symlink_type(target: bytes) -> nfs4.createtype4:
    return nfs4.createtype4(type=nfs_ftype4.NF4LNK, linkdata=target)


def dir_type() -> nfs4.createtype4:
    return nfs4.createtype4(type=nfs_ftype4.NF4DIR)

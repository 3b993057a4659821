"""NFSv4.1 operation handlers of the test server (RFC 8881 section 18).

Each handler takes the :class:`Compound` being executed and its decoded arguments and
returns the operation's result (a ``session.xdr.nfs4`` ``*4res``), or raises
:class:`~contrib.testserver.model.FsError` with the status to return.  The executor
(``server.ServerInstance.process_compound``) checks, before each operation, what RFC
8881 checks at the start of every operation: a current filehandle where one is needed
(NFS4ERR_NOFILEHANDLE), a file system that is absent here (NFS4ERR_MOVED, section 11.3
"Filehandles and absent file systems": PUTFH of such a filehandle succeeds, the next
operation that uses it fails), and a file system frozen for migration (NFS4ERR_DELAY,
seed 001 section 4.2.7).

Handlers are synchronous: a COMPOUND runs atomically with respect to other requests.
Work that must wait (CB_RECALL of a delegation) is started in the background and the
operation answers NFS4ERR_DELAY, as real servers do (RFC 8881 section 10.4.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from contrib.testserver import attrs as attrmod
from contrib.testserver.clients import (
    BACK_LIMITS,
    FORE_LIMITS,
    ClientRecord,
    GracePeriod,
    Principal,
    Session,
    negotiate_channel,
)
from contrib.testserver.model import (
    MAXFILESIZE,
    MAXLINK,
    FileSystem,
    FsError,
    Inode,
    check_name,
)
from contrib.testserver.security import secinfo_entries
from contrib.testserver.state import (
    AnyState,
    Delegation,
    LockState,
    OpenState,
    StateTable,
)
from session.locks import lock_end, lock_length, plain_lock_type
from session.xdr import nfs4
from session.xdr.codec import Decoder, Encoder
from session.xdr.const import (
    ACCESS4_DELETE,
    ACCESS4_EXECUTE,
    ACCESS4_EXTEND,
    ACCESS4_LOOKUP,
    ACCESS4_MODIFY,
    ACCESS4_READ,
    ACE4_ACCESS_ALLOWED_ACE_TYPE,
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    CREATE_SESSION4_FLAG_CONN_RDMA,
    CREATE_SESSION4_FLAG_PERSIST,
    EXCHGID4_FLAG_BIND_PRINC_STATEID,
    EXCHGID4_FLAG_CONFIRMED_R,
    EXCHGID4_FLAG_MASK_PNFS,
    EXCHGID4_FLAG_SUPP_FENCE_OPS,
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    EXCHGID4_FLAG_UPD_CONFIRMED_REC_A,
    EXCHGID4_FLAG_USE_NON_PNFS,
    FATTR4,
    FH4_VOL_RENAME,
    NFS4_UINT64_MAX,
    OPEN4_RESULT_LOCKTYPE_POSIX,
    OPEN4_RESULT_PRESERVE_UNLINKED,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WANT_ANY_DELEG,
    OPEN4_SHARE_ACCESS_WANT_CANCEL,
    OPEN4_SHARE_ACCESS_WANT_DELEG_MASK,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    OPEN4_SHARE_ACCESS_WANT_PUSH_DELEG_WHEN_UNCONTENDED,
    OPEN4_SHARE_ACCESS_WANT_READ_DELEG,
    OPEN4_SHARE_ACCESS_WANT_SIGNAL_DELEG_WHEN_RESRC_AVAIL,
    OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG,
    OPEN4_SHARE_ACCESS_WRITE,
    OPEN4_SHARE_DENY_BOTH,
    OPEN4_SHARE_DENY_READ,
    channel_dir_from_client4,
    channel_dir_from_server4,
    createmode4,
    limit_by4,
    nfs_ftype4,
    nfs_lock_type4,
    nfs_opnum4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
    opentype4,
    secinfo_style4,
    stable_how4,
    state_protect_how4,
    why_no_delegation4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, bitmap4_to_set

if TYPE_CHECKING:
    from contrib.testserver.server import Endpoint, Node, ServerInstance

S = nfsstat4
OP = nfs_opnum4

EXCHGID4_ALLOWED_ARG_FLAGS: Final = (
    EXCHGID4_FLAG_SUPP_MOVED_REFER
    | EXCHGID4_FLAG_SUPP_MOVED_MIGR
    | EXCHGID4_FLAG_SUPP_FENCE_OPS
    | EXCHGID4_FLAG_BIND_PRINC_STATEID
    | EXCHGID4_FLAG_MASK_PNFS
    | EXCHGID4_FLAG_UPD_CONFIRMED_REC_A
)
"""eia_flags a client may send (RFC 8881 section 18.35.3: other bits "cannot be set"
and are refused with NFS4ERR_INVAL); CONFIRMED_R is reply-only."""

CREATE_SESSION4_ALLOWED_FLAGS: Final = (
    CREATE_SESSION4_FLAG_PERSIST
    | CREATE_SESSION4_FLAG_CONN_BACK_CHAN
    | CREATE_SESSION4_FLAG_CONN_RDMA
)
"""csa_flags defined by RFC 8881 section 18.36.1; any other bit is NFS4ERR_INVAL (this
server grants CONN_BACK_CHAN only: PERSIST and CONN_RDMA are never set in csr_flags)."""

SERVER_IMPL_ID: Final = nfs4.nfs_impl_id4(
    nii_domain="fusenfs.invalid",
    nii_name="fusenfs contrib test server (migration-capable NFSv4.1)",
    nii_date=nfs4.nfstime4(0, 0),
)

SESSIONLESS_OPS: Final = frozenset(
    {
        OP.OP_EXCHANGE_ID,
        OP.OP_CREATE_SESSION,
        OP.OP_DESTROY_SESSION,
        OP.OP_DESTROY_CLIENTID,
        OP.OP_BIND_CONN_TO_SESSION,
    }
)
"""Operations allowed without SEQUENCE, as the only operation (RFC 8881 section 16.2.3)."""

NO_FH_OPS: Final = frozenset(
    {
        OP.OP_SEQUENCE,
        OP.OP_PUTFH,
        OP.OP_PUTROOTFH,
        OP.OP_PUTPUBFH,
        OP.OP_RESTOREFH,
        OP.OP_EXCHANGE_ID,
        OP.OP_CREATE_SESSION,
        OP.OP_DESTROY_SESSION,
        OP.OP_DESTROY_CLIENTID,
        OP.OP_BIND_CONN_TO_SESSION,
        OP.OP_TEST_STATEID,
        OP.OP_FREE_STATEID,
        OP.OP_RECLAIM_COMPLETE,
        OP.OP_BACKCHANNEL_CTL,
        OP.OP_DELEGPURGE,
        OP.OP_RELEASE_LOCKOWNER,
        OP.OP_ILLEGAL,
    }
)
"""Operations that do not use the current filehandle on entry (the others need one)."""

SAVED_FH_OPS: Final = frozenset({OP.OP_RENAME, OP.OP_LINK})
"""Operations that also use the saved filehandle."""

NOT_SUPPORTED_OPS: Final = frozenset(
    {
        OP.OP_OPEN_CONFIRM,
        OP.OP_RENEW,
        OP.OP_SETCLIENTID,
        OP.OP_SETCLIENTID_CONFIRM,
        OP.OP_RELEASE_LOCKOWNER,
        OP.OP_OPENATTR,
        OP.OP_DELEGPURGE,
        OP.OP_GET_DIR_DELEGATION,
        OP.OP_GETDEVICEINFO,
        OP.OP_GETDEVICELIST,
        OP.OP_LAYOUTCOMMIT,
        OP.OP_LAYOUTGET,
        OP.OP_LAYOUTRETURN,
        OP.OP_SET_SSV,
        OP.OP_WANT_DELEGATION,
    }
)
"""Answered NFS4ERR_NOTSUPP: NFSv4.0-only operations ("mandatory not to implement",
RFC 8881 section 17), and OPTIONAL features this server does not offer (named
attributes, CLAIM_DELEGATE_PREV / DELEGPURGE, directory delegations, pNFS, SSV)."""

PUTFH_LIKE_OPS: Final = frozenset({OP.OP_PUTFH, OP.OP_PUTROOTFH, OP.OP_PUTPUBFH, OP.OP_RESTOREFH})
"""The put-filehandle operations of RFC 8881 section 2.6.3.1.1."""

SECURITY_DEFERRING_OPS: Final = PUTFH_LIKE_OPS | {
    OP.OP_LOOKUP,
    OP.OP_LOOKUPP,
    OP.OP_OPEN,
    OP.OP_SECINFO,
    OP.OP_SECINFO_NO_NAME,
    OP.OP_SAVEFH,
}
"""Operations after a put-filehandle operation that judge the flavour themselves (the
target of LOOKUP / LOOKUPP, the file OPEN opens; SECINFO and SECINFO_NO_NAME never
answer NFS4ERR_WRONGSEC; after SAVEFH the decision waits for RESTOREFH or the next
operation using the handle; of several put-filehandle operations in a row only the
last is judged): RFC 8881 sections 2.6.3.1.1.1 - 2.6.3.1.1.5."""

NO_SECURITY_CHECK_OPS: Final = PUTFH_LIKE_OPS | {
    OP.OP_LOOKUP,
    OP.OP_LOOKUPP,
    OP.OP_SECINFO,
    OP.OP_SECINFO_NO_NAME,
    OP.OP_SAVEFH,
}
"""Operations that use the current filehandle but are not checked on entry (they check
later, or never): see ``security_precheck``."""


def put_fh_security(c: Compound, following: int | None) -> nfsstat4 | None:
    """After a put-filehandle operation: NFS4ERR_WRONGSEC for it if the next operation
    (``following``, None if there is none) does not judge the flavour itself and the
    new current filehandle's file system does not allow the request's flavour (RFC
    8881 section 2.6.3.1.1); else None, the check done or left to what follows."""
    c.sec_checked = False
    if following is None or following in SECURITY_DEFERRING_OPS or c.current is None:
        return None
    try:
        c.check_flavour(c.current.fs)
    except FsError as exc:
        return exc.status
    c.sec_checked = True
    return None


def security_precheck(c: Compound, op: nfs_opnum4) -> None:
    """At the start of an operation using the current filehandle: if its file system's
    flavours have not been checked for this request yet (after SAVEFH, or a
    put-filehandle operation that deferred the check), check them now.

    Raises:
        FsError: NFS4ERR_WRONGSEC.
    """
    if c.sec_checked or op in NO_SECURITY_CHECK_OPS or c.current is None:
        return
    c.check_flavour(c.current.fs)
    c.sec_checked = True


@dataclass(slots=True)
class OpStatus:
    """An error result for any operation: just the status (every ``*4res`` union's
    default arm is void), except SETATTR4res whose ``attrsset`` is always present."""

    opnum: int
    status: nfsstat4

    def pack(self, enc: Encoder) -> None:
        enc.int32(self.status)
        if self.opnum == OP.OP_SETATTR:
            enc.uint32(0)


@dataclass(slots=True)
class FhRef:
    """The current or saved filehandle: which file system and inode it names."""

    fs: FileSystem
    inode: Inode

    @property
    def fh(self) -> bytes:
        return self.fs.fh(self.inode)

    @property
    def key(self) -> tuple[str, int]:
        return (self.fs.name, self.inode.fileid)


class Compound:
    """One COMPOUND being executed: credentials, session, current and saved filehandles
    and stateids (RFC 8881 sections 16.2.3 and 16.2.3.1.2).

    Args:
        instance: the server instance answering.
        node: its node the request arrived at (sessions are per node).
        conn: the connection (for binding it to a session's channels).
        principal: ("sys", uid) / ("none", 0).
        uid, gid, gids: the AUTH_SYS credential (AUTH_NONE: nobody).
        args_size: bytes of the COMPOUND arguments (for ca_maxrequestsize).
        count: how many operations the request has.
        endpoint: the address it arrived at (None: any address of the instance).
    """

    def __init__(
        self,
        instance: ServerInstance,
        node: Node,
        conn: Any,
        principal: Principal,
        uid: int,
        gid: int,
        gids: list[int],
        count: int,
        endpoint: Endpoint | None = None,
    ) -> None:
        self.instance = instance
        self.endpoint = endpoint
        self.node = node
        self.conn = conn
        self.principal = principal
        self.uid = uid
        self.gid = gid
        self.gids = gids
        self.count = count
        self.index = 0
        self.session: Session | None = None
        self.client: ClientRecord | None = None
        self.current: FhRef | None = None
        self.saved: FhRef | None = None
        self.current_stateid: nfs4.stateid4 | None = None
        self.saved_stateid: nfs4.stateid4 | None = None
        self.sequenced = False
        #: CB_GETATTR answers obtained for this COMPOUND, by delegation ``other``.
        self.cb_answers: dict[bytes, CbGetattrAnswer] = {}
        #: The security flavour of the request ("sys", "krb5p", ...) and the bytes it
        #: adds to the reply (set by the executor).
        self.flavour = "sys"
        self.reply_overhead = 0
        #: The current filehandle's file system allows ``flavour`` (checked), or the
        #: check is still due (RFC 8881 section 2.6.3.1.1).
        self.sec_checked = False

    @property
    def state(self) -> StateTable:
        return self.instance.state

    @property
    def attrs_source(self) -> attrmod.AttrProvider:
        """Where attribute values come from: the instance as seen at this address."""
        return self.endpoint if self.endpoint is not None else self.instance

    def present(self, fs: FileSystem) -> bool:
        """``fs`` is served by this instance at the address the request arrived at."""
        return self.instance.present(fs, self.endpoint)

    def need_fh(self) -> FhRef:
        if self.current is None:
            raise FsError(S.NFS4ERR_NOFILEHANDLE)
        return self.current

    def need_saved(self) -> FhRef:
        if self.saved is None:
            raise FsError(S.NFS4ERR_NOFILEHANDLE, "no saved filehandle")
        return self.saved

    def need_client(self) -> ClientRecord:
        if self.client is None:
            raise FsError(S.NFS4ERR_OP_NOT_IN_SESSION)
        return self.client

    def set_fh(self, ref: FhRef) -> None:
        """Change the current filehandle; the current stateid no longer applies."""
        self.current = ref
        self.current_stateid = None

    def check_flavour(self, fs: FileSystem) -> None:
        """The request's flavour must be one ``fs`` allows here (RFC 8881 section 2.6);
        a file system absent here is judged where it is served (NFS4ERR_MOVED comes
        first).

        Raises:
            FsError: NFS4ERR_WRONGSEC.
        """
        if not self.present(fs):
            return
        allowed = self.instance.flavours(fs)
        if self.flavour not in allowed:
            self.instance.note_wrongsec(self.client, fs, self.flavour, allowed)
            raise FsError(
                S.NFS4ERR_WRONGSEC,
                f"{fs.name} allows {', '.join(allowed) or 'no flavour'} here, not {self.flavour}",
            )

    def all_gids(self) -> list[int]:
        return [self.gid, *self.gids]


ResOp = nfs4.ResOp
Handler = Callable[[Compound, Any], ResOp]
HANDLERS: dict[int, Handler] = {}
_F = TypeVar("_F", bound=Callable[..., ResOp])


def handles(opnum: nfs_opnum4) -> Callable[[_F], _F]:
    """Register a handler for an operation number."""

    def register(fn: _F) -> _F:
        HANDLERS[int(opnum)] = fn
        return fn

    return register


# -- helpers ---------------------------------------------------------------------------
def require_dir(ref: FhRef) -> None:
    """RFC 8881 (LOOKUP, READDIR, CREATE, ...): NFS4ERR_NOTDIR, or NFS4ERR_SYMLINK for a
    symbolic link."""
    if ref.inode.type == nfs_ftype4.NF4LNK:
        raise FsError(S.NFS4ERR_SYMLINK)
    if not ref.inode.is_dir():
        raise FsError(S.NFS4ERR_NOTDIR)


def require_regular(inode: Inode) -> None:
    """READ, WRITE, COMMIT, LOCK, OPEN targets: NFS4ERR_ISDIR for a directory,
    NFS4ERR_SYMLINK for a symbolic link, NFS4ERR_WRONG_TYPE otherwise (RFC 8881
    section 18.22.3 and the like)."""
    if inode.type == nfs_ftype4.NF4REG:
        return
    if inode.is_dir():
        raise FsError(S.NFS4ERR_ISDIR)
    if inode.type == nfs_ftype4.NF4LNK:
        raise FsError(S.NFS4ERR_SYMLINK)
    raise FsError(S.NFS4ERR_WRONG_TYPE)


def check_perm(
    c: Compound, inode: Inode, r: bool = False, w: bool = False, x: bool = False
) -> None:
    if not attrmod.mode_permits(inode, c.uid, c.all_gids(), r, w, x):
        raise FsError(S.NFS4ERR_ACCESS)


def change_info(before: int, after: int) -> nfs4.change_info4:
    return nfs4.change_info4(atomic=True, before=before, after=after)


def check_writable(c: Compound, fs: FileSystem) -> None:
    fs.check_writable()


def recall_conflicting(c: Compound, key: tuple[str, int], write: bool = True) -> None:
    """Recall other clients' delegations that conflict with an operation on a file
    (RFC 8881 sections 10.2 and 10.4.4): one that changes it (``write``) conflicts with
    every delegation, one that only reads it (READ, an OPEN for reading) with write
    delegations.  The operation answers NFS4ERR_DELAY until they are returned or
    revoked (a lease after the recall)."""
    client = c.client
    conflicts = [
        d
        for d in c.state.delegations_on(key)
        if (client is None or d.clientid != client.clientid) and (write or d.write)
    ]
    if not conflicts:
        return
    for deleg in conflicts:
        c.instance.recall(deleg)
    kinds = "write delegation" if all(d.write for d in conflicts) else "delegation"
    raise FsError(S.NFS4ERR_DELAY, f"{kinds} being recalled")


def resolve_stateid(
    c: Compound,
    sid: nfs4.stateid4,
    ref: FhRef | None,
    *,
    allow_special: bool = False,
) -> AnyState | None:
    """Find the state a stateid names (RFC 8881 sections 8.2 and 8.2.3).

    Returns None for the anonymous and READ-bypass stateids (when ``allow_special``).

    Raises:
        FsError: NFS4ERR_BAD_STATEID (unknown, another client's, special where not
            allowed, wrong file, seqid ahead), NFS4ERR_OLD_STATEID (seqid behind),
            NFS4ERR_EXPIRED / NFS4ERR_ADMIN_REVOKED / NFS4ERR_DELEG_REVOKED (revoked).
    """
    if sid.seqid == 1 and sid.other == nfs4.CURRENT_STATEID.other:
        if c.current_stateid is None:
            raise FsError(S.NFS4ERR_BAD_STATEID, "no current stateid")
        sid = c.current_stateid
    if sid.is_special():
        if allow_special and (sid == nfs4.ANONYMOUS_STATEID or sid == nfs4.READ_BYPASS_STATEID):
            return None
        raise FsError(S.NFS4ERR_BAD_STATEID, "special stateid not allowed here")
    record = c.state.get(sid.other)
    client = c.client
    if record is None or client is None or record.clientid != client.clientid:
        raise FsError(S.NFS4ERR_BAD_STATEID, "unknown stateid")
    if record.revoked is not None:
        raise FsError(record.revoked, f"{record.kind()} stateid revoked")
    if sid.seqid != 0:
        if sid.seqid < record.seqid:
            raise FsError(S.NFS4ERR_OLD_STATEID)
        if sid.seqid > record.seqid:
            raise FsError(S.NFS4ERR_BAD_STATEID, "seqid from the future")
    if ref is not None and record.file != ref.key:
        raise FsError(S.NFS4ERR_BAD_STATEID, "stateid for another file")
    return record


def stateid_status(c: Compound, sid: nfs4.stateid4) -> nfsstat4:
    """TEST_STATEID's verdict on one stateid (RFC 8881 section 18.48.3)."""
    if sid.is_special():
        return S.NFS4ERR_BAD_STATEID
    record = c.state.get(sid.other)
    if record is not None and c.instance.cluster.is_frozen(record.fs):
        return S.NFS4ERR_DELAY
    try:
        resolve_stateid(c, sid, None)
    except FsError as exc:
        return exc.status
    return S.NFS4_OK


def check_write_stateid(c: Compound, record: AnyState) -> None:
    """WRITE and SETATTR of size take an open or lock stateid of an open for writing,
    or a write delegation's stateid (RFC 8881 sections 8.2.2 and 18.32.3); anything
    else is NFS4ERR_OPENMODE."""
    if isinstance(record, Delegation):
        if not record.write:
            raise FsError(S.NFS4ERR_OPENMODE, "a read delegation's stateid")
        return
    opened = open_of(c, record)
    if opened is None or not opened.access & OPEN4_SHARE_ACCESS_WRITE:
        raise FsError(S.NFS4ERR_OPENMODE, "not open for writing")


def open_of(c: Compound, record: AnyState) -> OpenState | None:
    if isinstance(record, OpenState):
        return record
    if isinstance(record, LockState):
        found = c.state.get(record.open_other)
        return found if isinstance(found, OpenState) else None
    return None


def grace_nonreclaim(c: Compound, fs: FileSystem) -> None:
    """Non-reclaim locking requests wait while a grace period covers the file system
    (RFC 8881 section 8.4.2.1; per-FS grace, seed 001 section 4.2.3)."""
    grace = c.instance.active_grace(fs.name)
    if grace is not None:
        raise FsError(S.NFS4ERR_GRACE, grace.describe())


def reclaim_complete_first(c: Compound, client: ClientRecord) -> None:
    """A non-reclaim OPEN or LOCK before the client ID's global RECLAIM_COMPLETE gets
    NFS4ERR_GRACE (RFC 8881 section 18.51.3: "If non-reclaim locking operations are done
    before the RECLAIM_COMPLETE, an NFS4ERR_GRACE error will be returned"), in a grace
    period or not."""
    if client.reclaim_complete:
        return
    c.instance.note_grace_before_reclaim_complete(client)
    raise FsError(S.NFS4ERR_GRACE, f"client ID {client.clientid:#x} has not sent RECLAIM_COMPLETE")


def grace_reclaim(c: Compound, fs: FileSystem) -> GracePeriod:
    """The grace period a reclaim on ``fs`` by this client falls in, or NFS4ERR_NO_GRACE
    (no grace period covers it, or the client already sent RECLAIM_COMPLETE for it)."""
    client = c.need_client()
    grace = c.instance.reclaim_grace(fs.name, client.co_ownerid)
    if grace is None:
        raise FsError(S.NFS4ERR_NO_GRACE, f"no grace period for reclaims on {fs.name}")
    return grace


def first_use_moved(c: Compound, fs: FileSystem) -> None:
    c.instance.note_moved(c.client, fs)


# -- filehandle operations, RFC 8881 sections 18.8, 18.19 - 18.21, 18.27, 18.28 --------
@handles(OP.OP_PUTFH)
def op_putfh(c: Compound, args: nfs4.PUTFH4args) -> ResOp:
    """PUTFH (RFC 8881 section 18.19).  The handle is judged here: NFS4ERR_BADHANDLE,
    NFS4ERR_STALE (object removed), NFS4ERR_FHEXPIRED (a volatile handle of an older
    filehandle epoch, section 4.2.3; 15.1.2) -- but only where the file system is
    present: at an instance or address where it is absent any handle of it is taken
    and the next operation gets NFS4ERR_MOVED (section 11.3), so a client holding old
    handles can still fetch fs_locations there."""
    fs, inode, handle = c.instance.model.resolve_handle(args.object)
    if c.present(fs):
        still_open = bool(c.state.opens_on((fs.name, inode.fileid)))
        why = fs.fh_expiry(handle, inode, still_open)
        if why is not None:
            c.instance.note_fhexpired(c.client, fs, handle.epoch, why)
            raise FsError(S.NFS4ERR_FHEXPIRED, why)
    c.set_fh(FhRef(fs, inode))
    return nfs4.PUTFH4res(S.NFS4_OK)


@handles(OP.OP_PUTROOTFH)
def op_putrootfh(c: Compound, args: nfs4.PUTROOTFH4args) -> ResOp:
    model = c.instance.model
    c.set_fh(FhRef(model.pseudo, model.pseudo.root))
    return nfs4.PUTROOTFH4res(S.NFS4_OK)


@handles(OP.OP_PUTPUBFH)
def op_putpubfh(c: Compound, args: nfs4.PUTPUBFH4args) -> ResOp:
    model = c.instance.model
    c.set_fh(FhRef(model.pseudo, model.pseudo.root))
    return nfs4.PUTPUBFH4res(S.NFS4_OK)


@handles(OP.OP_GETFH)
def op_getfh(c: Compound, args: nfs4.GETFH4args) -> ResOp:
    return nfs4.GETFH4res(S.NFS4_OK, nfs4.GETFH4resok(c.need_fh().fh))


@handles(OP.OP_SAVEFH)
def op_savefh(c: Compound, args: nfs4.SAVEFH4args) -> ResOp:
    c.saved = c.need_fh()
    c.saved_stateid = c.current_stateid
    return nfs4.SAVEFH4res(S.NFS4_OK)


@handles(OP.OP_RESTOREFH)
def op_restorefh(c: Compound, args: nfs4.RESTOREFH4args) -> ResOp:
    if c.saved is None:
        raise FsError(S.NFS4ERR_RESTOREFH)
    c.current = c.saved
    c.current_stateid = c.saved_stateid
    return nfs4.RESTOREFH4res(S.NFS4_OK)


# -- namespace, RFC 8881 sections 18.13 - 18.15, 18.24 - 18.26, 18.4, 18.9 -------------
@handles(OP.OP_LOOKUP)
def op_lookup(c: Compound, args: nfs4.LOOKUP4args) -> ResOp:
    ref = c.need_fh()
    require_dir(ref)
    check_name(args.objname)
    check_perm(c, ref.inode, x=True)
    fs, inode = c.instance.model.lookup(ref.fs, ref.inode, args.objname)
    c.check_flavour(fs)  # the target's file system (RFC 8881 section 2.6.3.1.1.3)
    c.set_fh(FhRef(fs, inode))
    c.sec_checked = True
    return nfs4.LOOKUP4res(S.NFS4_OK)


@handles(OP.OP_LOOKUPP)
def op_lookupp(c: Compound, args: nfs4.LOOKUPP4args) -> ResOp:
    ref = c.need_fh()
    require_dir(ref)
    fs, inode = c.instance.model.lookupp(ref.fs, ref.inode)
    c.check_flavour(fs)  # the parent's file system (RFC 8881 section 2.6.3.1.1.4)
    c.set_fh(FhRef(fs, inode))
    c.sec_checked = True
    return nfs4.LOOKUPP4res(S.NFS4_OK)


@handles(OP.OP_READLINK)
def op_readlink(c: Compound, args: nfs4.READLINK4args) -> ResOp:
    ref = c.need_fh()
    if ref.inode.type != nfs_ftype4.NF4LNK:
        raise FsError(S.NFS4ERR_INVAL, "not a symbolic link")
    return nfs4.READLINK4res(S.NFS4_OK, nfs4.READLINK4resok(ref.inode.target))


@handles(OP.OP_CREATE)
def op_create(c: Compound, args: nfs4.CREATE4args) -> ResOp:
    ref = c.need_fh()
    require_dir(ref)
    check_name(args.objname)
    fs, directory = ref.fs, ref.inode
    check_writable(c, fs)
    check_perm(c, directory, w=True, x=True)
    ftype = args.objtype.type
    if ftype not in (
        nfs_ftype4.NF4DIR,
        nfs_ftype4.NF4LNK,
        nfs_ftype4.NF4BLK,
        nfs_ftype4.NF4CHR,
        nfs_ftype4.NF4SOCK,
        nfs_ftype4.NF4FIFO,
    ):
        raise FsError(S.NFS4ERR_BADTYPE, f"CREATE of {ftype.name} (use OPEN for files)")
    if args.objname in directory.entries:
        raise FsError(S.NFS4ERR_EXIST)
    values, bits = attrmod.decode_for_set(args.createattrs)
    if FATTR4.SIZE in bits:
        raise FsError(S.NFS4ERR_INVAL, "size in CREATE attributes")
    if ftype == nfs_ftype4.NF4LNK and not args.objtype.linkdata:
        raise FsError(S.NFS4ERR_INVAL, "empty symbolic link")
    default_mode = {nfs_ftype4.NF4DIR: 0o755, nfs_ftype4.NF4LNK: 0o777}.get(ftype, 0o644)
    before = directory.change
    inode = fs.new_inode(ftype, default_mode, c.uid, c.gid)
    if ftype == nfs_ftype4.NF4LNK:
        inode.target = args.objtype.linkdata or b""
    if args.objtype.devdata is not None:
        inode.rdev = (args.objtype.devdata.specdata1, args.objtype.devdata.specdata2)
    attrmod.apply_simple(fs, inode, values, c.instance.model.idmap)
    fs.add_entry(directory, args.objname, inode)
    c.set_fh(FhRef(fs, inode))
    return nfs4.CREATE4res(
        S.NFS4_OK,
        nfs4.CREATE4resok(change_info(before, directory.change), bitmap4_from(bits)),
    )


@handles(OP.OP_REMOVE)
def op_remove(c: Compound, args: nfs4.REMOVE4args) -> ResOp:
    ref = c.need_fh()
    require_dir(ref)
    check_name(args.target)
    fs, directory = ref.fs, ref.inode
    check_writable(c, fs)
    check_perm(c, directory, w=True, x=True)
    target = fs.lookup_name(directory, args.target)
    if target.junction is not None:
        raise FsError(S.NFS4ERR_XDEV, "a file system is mounted there")
    if target.is_dir() and target.entries:
        raise FsError(S.NFS4ERR_NOTEMPTY)
    recall_conflicting(c, (fs.name, target.fileid))
    before = directory.change
    fs.remove_entry(directory, args.target)
    fs.drop_link(target, still_open=bool(c.state.opens_on((fs.name, target.fileid))))
    return nfs4.REMOVE4res(S.NFS4_OK, nfs4.REMOVE4resok(change_info(before, directory.change)))


@handles(OP.OP_RENAME)
def op_rename(c: Compound, args: nfs4.RENAME4args) -> ResOp:
    src_ref = c.need_saved()
    dst_ref = c.need_fh()
    require_dir(src_ref)
    require_dir(dst_ref)
    check_name(args.oldname)
    check_name(args.newname)
    if src_ref.fs is not dst_ref.fs:
        raise FsError(S.NFS4ERR_XDEV)
    fs = src_ref.fs
    check_writable(c, fs)
    check_perm(c, src_ref.inode, w=True, x=True)
    check_perm(c, dst_ref.inode, w=True, x=True)
    src_dir, dst_dir = src_ref.inode, dst_ref.inode
    moving = fs.lookup_name(src_dir, args.oldname)
    if moving.junction is not None:
        raise FsError(S.NFS4ERR_XDEV, "a file system is mounted there")
    src_before, dst_before = src_dir.change, dst_dir.change
    existing_entry = dst_dir.entries.get(args.newname)
    existing = fs.get(existing_entry.fileid) if existing_entry is not None else None
    if existing is not None:
        if existing.fileid == moving.fileid:
            return nfs4.RENAME4res(
                S.NFS4_OK,
                nfs4.RENAME4resok(
                    change_info(src_before, src_dir.change),
                    change_info(dst_before, dst_dir.change),
                ),
            )
        if existing.junction is not None:
            raise FsError(S.NFS4ERR_XDEV, "a file system is mounted on the target")
        if moving.is_dir() != existing.is_dir():
            raise FsError(S.NFS4ERR_EXIST, "directory and non-directory")
        if existing.is_dir() and existing.entries:
            raise FsError(S.NFS4ERR_EXIST, "target directory not empty")
    if moving.is_dir() and fs.is_ancestor(moving, dst_dir):
        raise FsError(S.NFS4ERR_INVAL, "a directory cannot move into itself")
    recall_conflicting(c, (fs.name, moving.fileid))
    if existing is not None:
        recall_conflicting(c, (fs.name, existing.fileid))
        fs.remove_entry(dst_dir, args.newname)
        fs.drop_link(existing, still_open=bool(c.state.opens_on((fs.name, existing.fileid))))
    fs.remove_entry(src_dir, args.oldname)
    fs.add_entry(dst_dir, args.newname, moving)
    fs.touch(moving)
    if fs.fh_expire_type & FH4_VOL_RENAME:
        fs.expire_filehandle(moving, still_open=bool(c.state.opens_on((fs.name, moving.fileid))))
        c.instance.event(
            "fh-expired",
            f"RENAME of {args.oldname!r} to {args.newname!r} in {fs.name}: the filehandle of "
            f"fileid {moving.fileid:#x} expired (FH4_VOL_RENAME, RFC 8881 section 4.2.3); a "
            "LOOKUP of the new name gives its new one",
            fs=fs.name,
            fileid=moving.fileid,
            cause="rename",
        )
    return nfs4.RENAME4res(
        S.NFS4_OK,
        nfs4.RENAME4resok(
            change_info(src_before, src_dir.change), change_info(dst_before, dst_dir.change)
        ),
    )


@handles(OP.OP_LINK)
def op_link(c: Compound, args: nfs4.LINK4args) -> ResOp:
    src = c.need_saved()
    dst = c.need_fh()
    require_dir(dst)
    check_name(args.newname)
    if src.inode.is_dir():
        raise FsError(S.NFS4ERR_ISDIR)
    if src.fs is not dst.fs:
        raise FsError(S.NFS4ERR_XDEV)
    fs = dst.fs
    check_writable(c, fs)
    check_perm(c, dst.inode, w=True, x=True)
    if args.newname in dst.inode.entries:
        raise FsError(S.NFS4ERR_EXIST)
    if src.inode.nlink >= MAXLINK:
        raise FsError(S.NFS4ERR_MLINK)
    recall_conflicting(c, src.key)  # its link count changes (10.4.4)
    before = dst.inode.change
    fs.add_entry(dst.inode, args.newname, src.inode)
    src.inode.nlink += 1
    src.inode.unlinked = False
    fs.touch(src.inode)
    return nfs4.LINK4res(S.NFS4_OK, nfs4.LINK4resok(change_info(before, dst.inode.change)))


# -- attributes, RFC 8881 sections 18.1, 18.7, 18.15, 18.30, 18.31 ---------------------
CB_GETATTR_TRIGGERS: Final = frozenset(
    {FATTR4.SIZE, FATTR4.CHANGE, FATTR4.TIME_MODIFY, FATTR4.TIME_METADATA}
)
"""Attributes whose GETATTR by another client makes the server ask a write delegation's
holder with CB_GETATTR (RFC 8881 section 10.4.3: size and change, and the times the
server constructs from them)."""

CB_GETATTR_REQUEST: Final = (FATTR4.SIZE, FATTR4.CHANGE)
"""What CB_GETATTR asks the holder for: the only attributes a client is required to
answer (RFC 8881 sections 10.4.3 and 20.1)."""


@dataclass(slots=True)
class CbGetattrAnswer:
    """What a write delegation's holder answered CB_GETATTR with (RFC 8881 section 20.1).

    Attributes:
        size: bytes, or None if not returned.
        change: the holder's change attribute, or None if not returned.
        error: why there is no answer (no back channel, no reply in time, an error
            status); None when the holder answered.
    """

    size: int | None = None
    change: int | None = None
    error: str | None = None


class CallbackNeeded(Exception):
    """Raised by GETATTR before it changes anything: the executor sends CB_GETATTR to
    the holder of ``deleg`` (``ServerInstance.cb_getattr``), records the answer in
    ``Compound.cb_answers`` and runs the operation again (RFC 8881 section 10.4.3)."""

    def __init__(self, deleg: Delegation, fh: bytes) -> None:
        super().__init__(f"CB_GETATTR needed for delegation {deleg.other.hex()}")
        self.deleg = deleg
        self.fh = fh


def _write_delegation_size(c: Compound, ref: FhRef, want: set[int]) -> int | None:
    """GETATTR of size/change (CB_GETATTR_TRIGGERS) by a client other than the holder
    of a write delegation on the file (RFC 8881 section 10.4.3).

    Returns the size to report (the holder's), or None to answer from the server's
    own attributes (no such delegation, or the holder's copy is not modified).  When
    the holder reports a modified copy (its change differs from the ``sc`` recorded
    for the delegation, or its size from the server's), the delegation is marked
    modified for good and every such GETATTR gives the file a new change attribute
    ("nsc", greater than any given before) and time_modify = time_metadata = now,
    stored in the file's attributes; the size is not stored.

    Raises:
        CallbackNeeded: CB_GETATTR has not been sent for this operation yet.
        FsError: NFS4ERR_DELAY while the delegation is being recalled, or when
            CB_GETATTR failed (the delegation is then recalled).
    """
    client = c.client
    if client is None or not want & CB_GETATTR_TRIGGERS:
        return None
    held = [d for d in c.state.delegations_on(ref.key) if d.write and d.clientid != client.clientid]
    if not held:
        return None
    deleg = held[0]
    if deleg.recall_started is not None:
        raise FsError(S.NFS4ERR_DELAY, "write delegation being recalled")
    answer = c.cb_answers.get(deleg.other)
    if answer is None:
        raise CallbackNeeded(deleg, ref.fh)
    inode = ref.inode
    if answer.error is not None:
        c.instance.event(
            "cb-getattr",
            f"CB_GETATTR of write delegation {deleg.other.hex()} failed ({answer.error}): "
            "recalling it instead (RFC 8881 section 10.4.3)",
            clientid=deleg.clientid,
            stateid=deleg.other.hex(),
            error=answer.error,
        )
        c.instance.recall(deleg)
        raise FsError(S.NFS4ERR_DELAY, "CB_GETATTR failed: write delegation being recalled")
    size = answer.size if answer.size is not None else inode.size
    sc_before = deleg.sc
    changed = answer.change is not None and answer.change != deleg.sc
    if not deleg.modified and (changed or size != inode.size):
        deleg.modified = True
    if deleg.modified:
        ref.fs.touch(inode, data=True)
        deleg.sc = inode.change
    c.instance.event(
        "cb-getattr",
        f"CB_GETATTR of write delegation {deleg.other.hex()} (client {deleg.clientid:#x}): "
        f"size {answer.size}, change {answer.change} (sc {sc_before}): "
        + (
            f"modified at the client; answering size {size}, change {inode.change}"
            if deleg.modified
            else f"not modified; answering the server's size {inode.size}, change {inode.change}"
        )
        + " (RFC 8881 section 10.4.3)",
        clientid=deleg.clientid,
        stateid=deleg.other.hex(),
        size=answer.size,
        change=answer.change,
        modified=deleg.modified,
        answered_size=size,
        answered_change=inode.change,
    )
    return size if deleg.modified else None


@handles(OP.OP_GETATTR)
def op_getattr(c: Compound, args: nfs4.GETATTR4args) -> ResOp:
    ref = c.need_fh()
    want = attrmod.requested(args.attr_request)
    if want & attrmod.WRITE_ONLY_ATTRS:
        raise FsError(S.NFS4ERR_INVAL, "GETATTR of a write-only attribute")
    absent = not c.present(ref.fs)
    if absent and not want & attrmod.LOCATION_ATTRS:
        first_use_moved(c, ref.fs)
        raise FsError(S.NFS4ERR_MOVED, f"file system {ref.fs.name} is not here")
    size = None if absent else _write_delegation_size(c, ref, want)
    fattr = attrmod.build(c.attrs_source, ref.fs, ref.inode, want, absent=absent, size=size)
    if want & {FATTR4.FS_LOCATIONS, FATTR4.FS_LOCATIONS_INFO}:
        c.instance.note_locations_fetched(c.client, ref.fs)
    return nfs4.GETATTR4res(S.NFS4_OK, nfs4.GETATTR4resok(fattr))


@handles(OP.OP_SETATTR)
def op_setattr(c: Compound, args: nfs4.SETATTR4args) -> ResOp:
    ref = c.need_fh()
    fs, inode = ref.fs, ref.inode
    values, bits = attrmod.decode_for_set(args.obj_attributes)
    check_writable(c, fs)
    if bits - {FATTR4.SIZE} and c.uid != 0 and c.uid != inode.uid:
        only_times_now = bits <= {FATTR4.TIME_ACCESS_SET, FATTR4.TIME_MODIFY_SET}
        if not (
            only_times_now and attrmod.mode_permits(inode, c.uid, c.all_gids(), False, True, False)
        ):
            raise FsError(S.NFS4ERR_PERM, "not the owner")
    if (
        values.owner is not None
        and c.uid != 0
        and attrmod.parse_owner(values.owner, c.instance.model.idmap) != inode.uid
    ):
        raise FsError(S.NFS4ERR_PERM, "only root changes the owner")
    if values.size is not None:
        if inode.is_dir():
            raise FsError(S.NFS4ERR_ISDIR)
        if inode.type != nfs_ftype4.NF4REG:
            raise FsError(S.NFS4ERR_INVAL, "size of a non-regular file")
        record = resolve_stateid(c, args.stateid, ref, allow_special=True)
        if record is None:
            if c.state.denied_to_special(ref.key, OPEN4_SHARE_ACCESS_WRITE):
                raise FsError(S.NFS4ERR_LOCKED, "an open denies writing")
            check_perm(c, inode, w=True)
        else:
            check_write_stateid(c, record)
        if values.size > MAXFILESIZE:
            raise FsError(S.NFS4ERR_FBIG)
        growth = max(0, values.size - inode.size)
        if fs.space_used() + growth > fs.space_total:
            raise FsError(S.NFS4ERR_NOSPC)
    if bits:
        # Any attribute change by another client conflicts with its delegations (10.4.4).
        recall_conflicting(c, ref.key)
    if values.size is not None:
        if values.size < len(inode.data):
            del inode.data[values.size :]
        elif values.size > len(inode.data):
            inode.data.extend(bytes(values.size - len(inode.data)))
        fs.touch(inode, data=True)
    attrmod.apply_simple(fs, inode, values, c.instance.model.idmap)
    return nfs4.SETATTR4res(S.NFS4_OK, bitmap4_from(bits))


def _verify(c: Compound, given: nfs4.fattr4) -> bool:
    ref = c.need_fh()
    bits = attrmod.decode_for_verify(given)
    current = attrmod.build(c.attrs_source, ref.fs, ref.inode, bits)
    return set(attrmod.requested(current.attrmask)) == bits and current.attr_vals == given.attr_vals


@handles(OP.OP_VERIFY)
def op_verify(c: Compound, args: nfs4.VERIFY4args) -> ResOp:
    if not _verify(c, args.obj_attributes):
        raise FsError(S.NFS4ERR_NOT_SAME)
    return nfs4.VERIFY4res(S.NFS4_OK)


@handles(OP.OP_NVERIFY)
def op_nverify(c: Compound, args: nfs4.NVERIFY4args) -> ResOp:
    if _verify(c, args.obj_attributes):
        raise FsError(S.NFS4ERR_SAME)
    return nfs4.NVERIFY4res(S.NFS4_OK)


@handles(OP.OP_ACCESS)
def op_access(c: Compound, args: nfs4.ACCESS4args) -> ResOp:
    ref = c.need_fh()
    known = (
        ACCESS4_READ
        | ACCESS4_LOOKUP
        | ACCESS4_MODIFY
        | ACCESS4_EXTEND
        | ACCESS4_DELETE
        | ACCESS4_EXECUTE
    )
    if args.access & ~known:
        raise FsError(S.NFS4ERR_INVAL, f"unknown ACCESS bits {args.access:#x}")
    supported, granted = attrmod.granted_access(ref.fs, ref.inode, c.uid, c.all_gids(), args.access)
    return nfs4.ACCESS4res(S.NFS4_OK, nfs4.ACCESS4resok(supported, granted))


# -- READDIR, RFC 8881 section 18.23 and section 11.4.2 (absent file systems) ----------
READDIR_MIN_MAXCOUNT: Final = 64


@handles(OP.OP_READDIR)
def op_readdir(c: Compound, args: nfs4.READDIR4args) -> ResOp:
    ref = c.need_fh()
    if not ref.inode.is_dir():
        raise FsError(S.NFS4ERR_NOTDIR)
    want = attrmod.requested(args.attr_request)
    if want & attrmod.WRITE_ONLY_ATTRS:
        raise FsError(S.NFS4ERR_INVAL, "READDIR of a write-only attribute")
    check_perm(c, ref.inode, r=True)
    directory = ref.inode
    if args.cookie in (1, 2) or args.cookie >= directory.next_cookie:
        raise FsError(S.NFS4ERR_BAD_COOKIE, f"cookie {args.cookie}")
    if args.cookie != 0 and args.cookieverf != directory.cookieverf:
        raise FsError(S.NFS4ERR_NOT_SAME, "cookie verifier")
    if args.maxcount < READDIR_MIN_MAXCOUNT:
        raise FsError(S.NFS4ERR_TOOSMALL)
    model = c.instance.model
    # cookieverf (8) + no more entries (4) + eof (4) + the result's status word (4)
    used = 20
    entries: list[nfs4.entry4] = []
    eof = True
    for name, dentry in directory.entries.items():
        if dentry.cookie <= args.cookie:
            continue
        child = ref.fs.get(dentry.fileid)
        child_fs, child_inode = model.cross(ref.fs, child)
        absent = child_fs is not ref.fs and not c.present(child_fs)
        if absent:
            if want & attrmod.LOCATION_ATTRS:
                fattr = attrmod.build(c.attrs_source, child_fs, child_inode, want, absent=True)
                if want & {FATTR4.FS_LOCATIONS, FATTR4.FS_LOCATIONS_INFO}:
                    c.instance.note_locations_fetched(c.client, child_fs)
            elif FATTR4.RDATTR_ERROR in want:
                fattr = attrmod.build(
                    c.attrs_source,
                    child_fs,
                    child_inode,
                    want,
                    absent=True,
                    rdattr_error=S.NFS4ERR_MOVED,
                )
            else:
                first_use_moved(c, child_fs)
                raise FsError(S.NFS4ERR_MOVED, f"entry {name!r} is an absent file system")
        else:
            fattr = attrmod.build(c.attrs_source, child_fs, child_inode, want)
        entry = nfs4.entry4(dentry.cookie, name, fattr)
        enc = Encoder()
        entry.pack(enc)
        size = 4 + len(enc.getvalue())
        if used + size > args.maxcount:
            if not entries:
                raise FsError(S.NFS4ERR_TOOSMALL, "maxcount too small for one entry")
            eof = False
            break
        used += size
        entries.append(entry)
    return nfs4.READDIR4res(
        S.NFS4_OK, nfs4.READDIR4resok(directory.cookieverf, nfs4.dirlist4(entries, eof))
    )


# -- SECINFO, SECINFO_NO_NAME, RFC 8881 sections 18.29 and 18.45 -----------------------
@handles(OP.OP_SECINFO)
def op_secinfo(c: Compound, args: nfs4.SECINFO4args) -> ResOp:
    """SECINFO (RFC 8881 section 18.29): the flavours of the file system the name is
    in -- across a junction, the one mounted there -- in this server's order of
    preference.  Never NFS4ERR_WRONGSEC; consumes the current filehandle."""
    ref = c.need_fh()
    require_dir(ref)
    check_name(args.name)
    fs, _ = c.instance.model.lookup(ref.fs, ref.inode, args.name)
    c.current = None  # SECINFO consumes the current filehandle (18.29.3)
    return nfs4.SECINFO4res(S.NFS4_OK, secinfo_entries(c.instance.flavours(fs)))


@handles(OP.OP_SECINFO_NO_NAME)
def op_secinfo_no_name(c: Compound, args: nfs4.SECINFO_NO_NAME4args) -> ResOp:
    """SECINFO_NO_NAME (RFC 8881 section 18.45): the flavours of the current
    filehandle's file system (SECINFO_STYLE4_CURRENT_FH) or its parent's
    (SECINFO_STYLE4_PARENT)."""
    ref = c.need_fh()
    fs = ref.fs
    if args.style == secinfo_style4.SECINFO_STYLE4_PARENT:
        require_dir(ref)
        fs, _ = c.instance.model.lookupp(ref.fs, ref.inode)
    elif args.style != secinfo_style4.SECINFO_STYLE4_CURRENT_FH:
        raise FsError(S.NFS4ERR_INVAL, "unknown secinfo style")
    c.current = None  # consumed (18.45.3)
    return nfs4.SECINFO_NO_NAME4res(S.NFS4_OK, secinfo_entries(c.instance.flavours(fs)))


# -- OPEN, RFC 8881 section 18.16 ------------------------------------------------------
DELEG_ACE: Final = nfs4.nfsace4(ACE4_ACCESS_ALLOWED_ACE_TYPE, 0, 0, "EVERYONE@")
"""The ``permissions`` of every delegation granted: an empty ACE (the client checks
access with ACCESS as usual, RFC 8881 section 10.4)."""


def read_delegation4(deleg: Delegation) -> nfs4.open_delegation4:
    """OPEN's answer for a read delegation (RFC 8881 section 18.16)."""
    return nfs4.open_delegation4(
        open_delegation_type4.OPEN_DELEGATE_READ,
        read=nfs4.open_read_delegation4(deleg.stateid(), False, DELEG_ACE),
    )


def write_delegation4(deleg: Delegation) -> nfs4.open_delegation4:
    """OPEN's answer for a write delegation: the stateid and a space limit by size
    (NFS_LIMIT_SIZE, bytes; RFC 8881 sections 10.4.1 and 18.16)."""
    return nfs4.open_delegation4(
        open_delegation_type4.OPEN_DELEGATE_WRITE,
        write=nfs4.open_write_delegation4(
            deleg.stateid(),
            False,
            nfs4.nfs_space_limit4(limit_by4.NFS_LIMIT_SIZE, filesize=deleg.space_limit),
            DELEG_ACE,
        ),
    )


def delegation4(deleg: Delegation) -> nfs4.open_delegation4:
    return write_delegation4(deleg) if deleg.write else read_delegation4(deleg)


def space_limit(fs: FileSystem, inode: Inode) -> int:
    """The space limit of a write delegation, bytes: the file's size and all the free
    space of its file system (generous: the holder never needs to ask, 10.4.1)."""
    return min(MAXFILESIZE, inode.size + max(0, fs.space_total - fs.space_used()))


def _no_delegation(want: int, reason: why_no_delegation4) -> nfs4.open_delegation4:
    """OPEN_DELEGATE_NONE_EXT with the reason when the client expressed a want
    (RFC 8881 section 18.16.3), else plain OPEN_DELEGATE_NONE."""
    if want == OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE:
        return nfs4.open_delegation4(open_delegation_type4.OPEN_DELEGATE_NONE)
    if reason == why_no_delegation4.WND4_CONTENTION:
        none = nfs4.open_none_delegation4(reason, ond_server_will_push_deleg=False)
    elif reason == why_no_delegation4.WND4_RESOURCE:
        none = nfs4.open_none_delegation4(reason, ond_server_will_signal_avail=False)
    else:
        none = nfs4.open_none_delegation4(reason)
    return nfs4.open_delegation4(open_delegation_type4.OPEN_DELEGATE_NONE_EXT, od_whynone=none)


def _delegation_choice(
    c: Compound,
    ref: FhRef,
    access: int,
    deny: int,
    want: int,
    opened: OpenState,
) -> nfs4.open_delegation4:
    """Grant a delegation when wanted (or no preference) and nothing conflicts (RFC
    8881 sections 10.4 and 18.16.3); else say why not when a want was expressed.

    * A write delegation (OPEN_DELEGATE_WRITE, with a space limit) for an open with
      write access (OPEN4_SHARE_ACCESS_WRITE or BOTH) and no preference,
      WANT_WRITE_DELEG or WANT_ANY_DELEG, when no other client has the file open or
      delegated.  WANT_WRITE_DELEG on a read-only open gets one too if the caller may
      write the file (so it can open for writing locally later).
    * A read delegation for a read-only open (no preference, WANT_READ_DELEG,
      WANT_ANY_DELEG), or WANT_READ_DELEG with write access, when no other client has
      the file open for writing or a delegation on it being recalled.
    * Upgrade: a client holding a read delegation that opens for writing gets the same
      delegation (its ``other`` kept, seqid advanced) as a write delegation when no
      other client has the file open or delegated; otherwise OPEN_DELEGATE_NONE (or
      NONE_EXT WND4_CONTENTION).  A client holding a write delegation gets none again.
    * WANT_NO_DELEG: OPEN_DELEGATE_NONE_EXT with WND4_NOT_WANTED.
    """
    client = c.need_client()
    inst = c.instance
    if want == OPEN4_SHARE_ACCESS_WANT_NO_DELEG:
        return _no_delegation(want, why_no_delegation4.WND4_NOT_WANTED)
    writing = bool(access & OPEN4_SHARE_ACCESS_WRITE)
    may_write = writing or (
        want == OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG
        and attrmod.mode_permits(ref.inode, c.uid, c.all_gids(), False, True, False)
        and not ref.fs.read_only
    )
    want_write = may_write and want in (
        OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
        OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG,
        OPEN4_SHARE_ACCESS_WANT_ANY_DELEG,
    )
    others_open = [st for st in c.state.opens_on(ref.key) if st.clientid != client.clientid]
    others_deleg = [d for d in c.state.delegations_on(ref.key) if d.clientid != client.clientid]
    exclusive = not others_open and not others_deleg
    existing = c.state.find_delegation(client.clientid, ref.key)
    if existing is not None:
        if existing.write or not writing:
            return nfs4.open_delegation4(open_delegation_type4.OPEN_DELEGATE_NONE)
        # A read delegation's holder opens for writing: upgrade it if nothing conflicts.
        if want_write and exclusive and inst.config.write_delegations:
            existing.dtype = open_delegation_type4.OPEN_DELEGATE_WRITE
            existing.sc = ref.inode.change
            existing.modified = False
            existing.space_limit = space_limit(ref.fs, ref.inode)
            existing.bump()
            inst.event(
                "delegation-granted",
                f"read delegation {existing.other.hex()} on {ref.fs.name}:"
                f"{ref.inode.fileid:#x} upgraded to a write delegation for client "
                f"{client.clientid:#x} (RFC 8881 section 10.4)",
                clientid=client.clientid,
                stateid=existing.other.hex(),
                dtype="write",
                upgrade=True,
            )
            return write_delegation4(existing)
        return _no_delegation(
            want,
            why_no_delegation4.WND4_CONTENTION
            if not exclusive
            else why_no_delegation4.WND4_NOT_SUPP_UPGRADE,
        )
    reason: why_no_delegation4 | None = None
    dtype = open_delegation_type4.OPEN_DELEGATE_READ
    if want_write and inst.config.write_delegations:
        dtype = open_delegation_type4.OPEN_DELEGATE_WRITE
        if not exclusive:
            reason = why_no_delegation4.WND4_CONTENTION
    elif want == OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG:
        reason = (
            why_no_delegation4.WND4_RESOURCE
            if not inst.config.write_delegations
            else why_no_delegation4.WND4_WRITE_DELEG_NOT_SUPP_FTYPE
        )
    elif writing and want != OPEN4_SHARE_ACCESS_WANT_READ_DELEG:
        # Write access, write delegations off: a read one would be of no use.
        reason = why_no_delegation4.WND4_RESOURCE
    elif any(st.access & OPEN4_SHARE_ACCESS_WRITE for st in others_open) or any(
        d.recall_started is not None or d.write for d in others_deleg
    ):
        reason = why_no_delegation4.WND4_CONTENTION
    if reason is None and not inst.config.delegations:
        reason = why_no_delegation4.WND4_RESOURCE
    if reason is None and (
        inst.backchannel_for(client) is None or inst.active_grace(ref.fs.name) is not None
    ):
        reason = why_no_delegation4.WND4_RESOURCE
    if reason is not None:
        return _no_delegation(want, reason)
    deleg = c.state.new_delegation(client.clientid, ref.key, dtype)
    if deleg.write:
        deleg.sc = ref.inode.change
        deleg.space_limit = space_limit(ref.fs, ref.inode)
    kind = "write" if deleg.write else "read"
    inst.event(
        "delegation-granted",
        f"{kind} delegation {deleg.other.hex()} on {ref.fs.name}:{ref.inode.fileid:#x} "
        f"to client {client.clientid:#x} (RFC 8881 section 10.4)",
        clientid=client.clientid,
        stateid=deleg.other.hex(),
        dtype=kind,
    )
    return delegation4(deleg)


def _open_create(
    c: Compound, ref: FhRef, name: bytes, how: nfs4.createhow4
) -> tuple[Inode, bool, set[int]]:
    """OPEN4_CREATE by name: ``(inode, created, attrset)`` (RFC 8881 section 18.16.3)."""
    fs, directory = ref.fs, ref.inode
    existing_entry = directory.entries.get(name)
    mode = how.mode
    attrs_f: nfs4.fattr4 | None = None
    verifier: bytes | None = None
    if mode in (createmode4.UNCHECKED4, createmode4.GUARDED4):
        attrs_f = how.createattrs
    elif mode == createmode4.EXCLUSIVE4:
        verifier = how.createverf
    elif mode == createmode4.EXCLUSIVE4_1 and how.ch_createboth is not None:
        verifier = how.ch_createboth.cva_verf
        attrs_f = how.ch_createboth.cva_attrs
    else:
        raise FsError(S.NFS4ERR_INVAL, f"create mode {mode}")
    values, bits = attrmod.decode_for_set(attrs_f) if attrs_f is not None else (NFSAttrs(), set())
    if existing_entry is not None:
        target = fs.get(existing_entry.fileid)
        if target.junction is not None:
            raise FsError(S.NFS4ERR_ISDIR)
        if mode == createmode4.GUARDED4:
            raise FsError(S.NFS4ERR_EXIST)
        if verifier is not None:
            if target.create_verf == verifier:
                return target, True, bits  # a retransmitted exclusive create (18.16.3)
            raise FsError(S.NFS4ERR_EXIST)
        truncate = values.size == 0 and target.type == nfs_ftype4.NF4REG
        return target, False, {FATTR4.SIZE} if truncate else set()
    check_writable(c, fs)
    check_perm(c, directory, w=True, x=True)
    inode = fs.new_inode(nfs_ftype4.NF4REG, 0o644, c.uid, c.gid)
    inode.create_verf = verifier
    if values.size:
        inode.data.extend(bytes(values.size))
    attrmod.apply_simple(fs, inode, values, c.instance.model.idmap)
    fs.add_entry(directory, name, inode)
    return inode, True, bits


@handles(OP.OP_OPEN)
def op_open(c: Compound, args: nfs4.OPEN4args) -> ResOp:
    client = c.need_client()
    ref = c.need_fh()
    access = args.share_access & OPEN4_SHARE_ACCESS_BOTH
    want = args.share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
    extra = args.share_access & ~(
        OPEN4_SHARE_ACCESS_BOTH
        | OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
        | OPEN4_SHARE_ACCESS_WANT_SIGNAL_DELEG_WHEN_RESRC_AVAIL
        | OPEN4_SHARE_ACCESS_WANT_PUSH_DELEG_WHEN_UNCONTENDED
    )
    if access == 0 or extra or args.share_deny & ~OPEN4_SHARE_DENY_BOTH:
        raise FsError(S.NFS4ERR_INVAL, "share_access / share_deny")
    if want > OPEN4_SHARE_ACCESS_WANT_CANCEL:
        raise FsError(S.NFS4ERR_INVAL, f"want {want:#x}")
    if want == OPEN4_SHARE_ACCESS_WANT_CANCEL:
        want = OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE
    deny = args.share_deny
    claim = args.claim.claim
    create = args.openhow.opentype == opentype4.OPEN4_CREATE
    owner = args.owner.owner
    deleg_used: Delegation | None = None
    reclaim = claim == open_claim_type4.CLAIM_PREVIOUS
    dir_before = dir_after = 0
    created = False
    attrset: set[int] = set()
    if claim in (open_claim_type4.CLAIM_NULL, open_claim_type4.CLAIM_DELEGATE_CUR):
        require_dir(ref)
        if claim == open_claim_type4.CLAIM_NULL:
            name = args.claim.file or b""
        else:
            info = args.claim.delegate_cur_info
            if info is None or create:
                raise FsError(S.NFS4ERR_INVAL)
            name = info.file
        check_name(name)
        check_perm(c, ref.inode, x=True)
        dir_before = ref.inode.change
        if create:
            if args.openhow.how is None:
                raise FsError(S.NFS4ERR_INVAL)
            if ref.fs.read_only:
                raise FsError(S.NFS4ERR_ROFS)
            reclaim_complete_first(c, client)
            grace_nonreclaim(c, ref.fs)
            inode, created, attrset = _open_create(c, ref, name, args.openhow.how)
            target = FhRef(ref.fs, inode)
        else:
            fs, inode = c.instance.model.lookup(ref.fs, ref.inode, name)
            target = FhRef(fs, inode)
        dir_after = ref.inode.change
        if claim == open_claim_type4.CLAIM_DELEGATE_CUR and args.claim.delegate_cur_info:
            found = resolve_stateid(c, args.claim.delegate_cur_info.delegate_stateid, target)
            if not isinstance(found, Delegation):
                raise FsError(S.NFS4ERR_BAD_STATEID, "not a delegation stateid")
            deleg_used = found
    elif claim in (
        open_claim_type4.CLAIM_FH,
        open_claim_type4.CLAIM_PREVIOUS,
        open_claim_type4.CLAIM_DELEG_CUR_FH,
    ):
        if create:
            raise FsError(S.NFS4ERR_INVAL, f"{claim.name} with OPEN4_CREATE")
        target = ref
        if claim == open_claim_type4.CLAIM_DELEG_CUR_FH:
            if args.claim.oc_delegate_stateid is None:
                raise FsError(S.NFS4ERR_INVAL)
            found = resolve_stateid(c, args.claim.oc_delegate_stateid, target)
            if not isinstance(found, Delegation):
                raise FsError(S.NFS4ERR_BAD_STATEID, "not a delegation stateid")
            deleg_used = found
    elif claim in (open_claim_type4.CLAIM_DELEGATE_PREV, open_claim_type4.CLAIM_DELEG_PREV_FH):
        raise FsError(S.NFS4ERR_NOTSUPP, "delegation reclaim after client restart")
    else:
        raise FsError(S.NFS4ERR_INVAL, f"claim {claim}")

    fs, inode = target.fs, target.inode
    if not c.present(fs):
        first_use_moved(c, fs)
        raise FsError(S.NFS4ERR_MOVED)
    require_regular(inode)
    if reclaim:
        grace = grace_reclaim(c, fs)
        if grace.is_lost_open(client.co_ownerid, owner, fs.name, inode.fileid):
            raise FsError(S.NFS4ERR_RECLAIM_BAD, "this open is known to be lost (seed 4.2.1)")
    elif not created and deleg_used is None:
        reclaim_complete_first(c, client)
        grace_nonreclaim(c, fs)
    if not created:
        if access & OPEN4_SHARE_ACCESS_READ:
            check_perm(c, inode, r=True)
        if access & OPEN4_SHARE_ACCESS_WRITE or attrset:
            check_perm(c, inode, w=True)
            check_writable(c, fs)
    existing = c.state.find_open(client.clientid, owner, target.key)
    conflict = c.state.share_conflict(target.key, access, deny, exclude=existing)
    if conflict is not None:
        raise FsError(S.NFS4ERR_RECLAIM_CONFLICT if reclaim else S.NFS4ERR_SHARE_DENIED)
    if (
        reclaim
        and args.claim.delegate_type == open_delegation_type4.OPEN_DELEGATE_WRITE
        and (
            any(st.clientid != client.clientid for st in c.state.opens_on(target.key))
            or any(d.clientid != client.clientid for d in c.state.delegations_on(target.key))
        )
    ):
        raise FsError(
            S.NFS4ERR_RECLAIM_CONFLICT, "another client reclaimed state on the file first"
        )
    # Another client's write delegation conflicts with any open; a read delegation
    # with an open for writing or denying reads (RFC 8881 section 10.4.4).
    recall_conflicting(
        c,
        target.key,
        write=bool(access & OPEN4_SHARE_ACCESS_WRITE or deny & OPEN4_SHARE_DENY_READ),
    )
    if attrset == {FATTR4.SIZE} and not created:
        if not access & OPEN4_SHARE_ACCESS_WRITE:
            raise FsError(S.NFS4ERR_INVAL, "truncating OPEN without write access")
        del inode.data[:]
        fs.touch(inode, data=True)
    if existing is not None:
        existing.access |= access
        existing.deny |= deny
        existing.access_seen.add(existing.access)
        existing.deny_seen.add(existing.deny)
        existing.access_seen.add(access)
        existing.deny_seen.add(deny)
        opened = existing
        opened.bump()
    else:
        opened = c.state.new_open(client.clientid, owner, target.key, access, deny)
    opened.reclaimed = opened.reclaimed or reclaim
    reclaim_type = args.claim.delegate_type if reclaim else None
    if reclaim_type in (
        open_delegation_type4.OPEN_DELEGATE_READ,
        open_delegation_type4.OPEN_DELEGATE_WRITE,
    ):
        # CLAIM_PREVIOUS with a delegation type: the delegation is reclaimed with the
        # open (RFC 8881 sections 10.2.1 and 18.16.3), in the global grace after a
        # restart or the per-file-system one after a migration without TSM.
        assert reclaim_type is not None
        deleg = c.state.find_delegation(client.clientid, target.key)
        if deleg is None:
            deleg = c.state.new_delegation(client.clientid, target.key, reclaim_type)
        elif reclaim_type == open_delegation_type4.OPEN_DELEGATE_WRITE and not deleg.write:
            deleg.dtype = reclaim_type
            deleg.bump()
        if deleg.write:
            deleg.sc = inode.change
            deleg.modified = False
            deleg.space_limit = space_limit(fs, inode)
        delegation = delegation4(deleg)
        c.instance.event(
            "reclaim",
            f"client {client.clientid:#x} reclaimed a "
            f"{'write' if deleg.write else 'read'} delegation {deleg.other.hex()} on "
            f"{fs.name}:{inode.fileid:#x} (CLAIM_PREVIOUS, RFC 8881 section 10.2.1)",
            clientid=client.clientid,
            fs=fs.name,
            stateid=deleg.other.hex(),
            dtype="write" if deleg.write else "read",
        )
    elif reclaim or deleg_used is not None:
        delegation = nfs4.open_delegation4(open_delegation_type4.OPEN_DELEGATE_NONE)
    else:
        delegation = _delegation_choice(c, target, access, deny, want, opened)
    c.set_fh(target)
    c.current_stateid = opened.stateid()
    if reclaim:
        c.instance.event(
            "reclaim",
            f"client {client.clientid:#x} reclaimed an open of {fs.name}:{inode.fileid:#x}",
            clientid=client.clientid,
            fs=fs.name,
        )
    return nfs4.OPEN4res(
        S.NFS4_OK,
        nfs4.OPEN4resok(
            stateid=opened.stateid(),
            cinfo=change_info(dir_before, dir_after),
            rflags=OPEN4_RESULT_LOCKTYPE_POSIX | OPEN4_RESULT_PRESERVE_UNLINKED,
            attrset=bitmap4_from(attrset),
            delegation=delegation,
        ),
    )


@handles(OP.OP_OPEN_DOWNGRADE)
def op_open_downgrade(c: Compound, args: nfs4.OPEN_DOWNGRADE4args) -> ResOp:
    ref = c.need_fh()
    record = resolve_stateid(c, args.open_stateid, ref)
    if not isinstance(record, OpenState):
        raise FsError(S.NFS4ERR_BAD_STATEID, "not an open stateid")
    access = args.share_access & OPEN4_SHARE_ACCESS_BOTH
    deny = args.share_deny
    if (
        access == 0
        or access & ~record.access
        or deny & ~record.deny
        or access not in record.access_seen
        or deny not in record.deny_seen
    ):
        raise FsError(S.NFS4ERR_INVAL, "not a downgrade to modes opened before (18.18.3)")
    record.access = access
    record.deny = deny
    sid = record.bump()
    c.current_stateid = sid
    return nfs4.OPEN_DOWNGRADE4res(S.NFS4_OK, nfs4.OPEN_DOWNGRADE4resok(sid))


@handles(OP.OP_CLOSE)
def op_close(c: Compound, args: nfs4.CLOSE4args) -> ResOp:
    ref = c.need_fh()
    record = resolve_stateid(c, args.open_stateid, ref)
    if not isinstance(record, OpenState):
        raise FsError(S.NFS4ERR_BAD_STATEID, "not an open stateid")
    # CLOSE releases the open-owner's byte-range locks on the file (18.2.4).
    c.state.remove_many(c.state.locks_of_open(record))
    c.state.remove(record)
    if ref.inode.unlinked and not c.state.opens_on(ref.key):
        ref.fs.forget_if_unlinked(ref.inode)
    c.current_stateid = nfs4.INVALID_STATEID
    return nfs4.CLOSE4res(S.NFS4_OK, nfs4.INVALID_STATEID)


# -- READ, WRITE, COMMIT, RFC 8881 sections 18.22, 18.32, 18.3 -------------------------
@handles(OP.OP_READ)
def op_read(c: Compound, args: nfs4.READ4args) -> ResOp:
    ref = c.need_fh()
    require_regular(ref.inode)
    record = resolve_stateid(c, args.stateid, ref, allow_special=True)
    if record is None:
        if c.state.denied_to_special(ref.key, OPEN4_SHARE_ACCESS_READ):
            raise FsError(S.NFS4ERR_LOCKED, "an open denies reading")
        check_perm(c, ref.inode, r=True)
    recall_conflicting(c, ref.key, write=False)  # another client's write delegation
    limit = c.instance.max_io
    if c.session is not None:
        limit = min(limit, c.session.fore.ca_maxresponsesize - 1024)
    count = max(0, min(args.count, limit))
    data = bytes(ref.inode.data[args.offset : args.offset + count])
    eof = args.offset + len(data) >= len(ref.inode.data)
    return nfs4.READ4res(S.NFS4_OK, nfs4.READ4resok(eof, data))


@handles(OP.OP_WRITE)
def op_write(c: Compound, args: nfs4.WRITE4args) -> ResOp:
    ref = c.need_fh()
    require_regular(ref.inode)
    record = resolve_stateid(c, args.stateid, ref, allow_special=True)
    if record is None:
        if c.state.denied_to_special(ref.key, OPEN4_SHARE_ACCESS_WRITE):
            raise FsError(S.NFS4ERR_LOCKED, "an open denies writing")
        check_perm(c, ref.inode, w=True)
    else:
        check_write_stateid(c, record)
    fs, inode = ref.fs, ref.inode
    check_writable(c, fs)
    data = args.data[: c.instance.config.max_write_count]  # all of it when None
    end = args.offset + len(data)
    if end > MAXFILESIZE:
        raise FsError(S.NFS4ERR_FBIG)
    growth = max(0, end - len(inode.data))
    if growth and fs.space_used() + growth > fs.space_total:
        raise FsError(S.NFS4ERR_NOSPC)
    recall_conflicting(c, ref.key)
    if args.offset > len(inode.data):
        inode.data.extend(bytes(args.offset - len(inode.data)))
    inode.data[args.offset : end] = data
    fs.touch(inode, data=True)
    committed = (
        stable_how4.UNSTABLE4 if args.stable == stable_how4.UNSTABLE4 else stable_how4.FILE_SYNC4
    )
    return nfs4.WRITE4res(
        S.NFS4_OK,
        nfs4.WRITE4resok(len(data), committed, c.instance.write_verifier),
    )


@handles(OP.OP_COMMIT)
def op_commit(c: Compound, args: nfs4.COMMIT4args) -> ResOp:
    ref = c.need_fh()
    require_regular(ref.inode)
    if args.offset + args.count > NFS4_UINT64_MAX:
        raise FsError(S.NFS4ERR_INVAL, "offset + count overflows")
    return nfs4.COMMIT4res(S.NFS4_OK, nfs4.COMMIT4resok(c.instance.write_verifier))


# -- byte-range locks, RFC 8881 sections 18.10 - 18.12 ---------------------------------
def _lock_range(offset: int, length: int) -> tuple[int, int]:
    if length == 0:
        raise FsError(S.NFS4ERR_INVAL, "zero length")
    if length != NFS4_UINT64_MAX and offset + length > NFS4_UINT64_MAX + 1:
        raise FsError(S.NFS4ERR_INVAL, "offset + length overflows")
    return offset, lock_end(offset, length)


def _denied(conflict: Any) -> nfs4.LOCK4denied:
    return nfs4.LOCK4denied(
        offset=conflict.start,
        length=lock_length(conflict.start, conflict.end),
        locktype=conflict.locktype,
        owner=nfs4.state_owner4(conflict.owner[0], conflict.owner[1]),
    )


def _check_locktype(locktype: nfs_lock_type4) -> None:
    if locktype not in (
        nfs_lock_type4.READ_LT,
        nfs_lock_type4.WRITE_LT,
        nfs_lock_type4.READW_LT,
        nfs_lock_type4.WRITEW_LT,
    ):
        raise FsError(S.NFS4ERR_INVAL, f"lock type {int(locktype)}")


@handles(OP.OP_LOCK)
def op_lock(c: Compound, args: nfs4.LOCK4args) -> ResOp:
    client = c.need_client()
    ref = c.need_fh()
    require_regular(ref.inode)
    _check_locktype(args.locktype)
    start, end = _lock_range(args.offset, args.length)
    existing: LockState | None
    if args.locker.new_lock_owner:
        oto = args.locker.open_owner
        assert oto is not None
        found = resolve_stateid(c, oto.open_stateid, ref)
        if not isinstance(found, OpenState):
            raise FsError(S.NFS4ERR_BAD_STATEID, "not an open stateid")
        opened = found
        owner = oto.lock_owner.owner
        existing = c.state.find_lock(client.clientid, owner, opened.other)
    else:
        elo = args.locker.lock_owner
        assert elo is not None
        found = resolve_stateid(c, elo.lock_stateid, ref)
        if not isinstance(found, LockState):
            raise FsError(S.NFS4ERR_BAD_STATEID, "not a lock stateid")
        existing = found
        owner = found.owner
        open_found = c.state.get(found.open_other)
        if not isinstance(open_found, OpenState) or open_found.revoked is not None:
            raise FsError(S.NFS4ERR_BAD_STATEID, "the lock's open is gone")
        opened = open_found
    kind = plain_lock_type(args.locktype)
    if kind == nfs_lock_type4.READ_LT and not opened.access & OPEN4_SHARE_ACCESS_READ:
        raise FsError(S.NFS4ERR_OPENMODE, "read lock on a file not open for reading")
    if kind == nfs_lock_type4.WRITE_LT and not opened.access & OPEN4_SHARE_ACCESS_WRITE:
        raise FsError(S.NFS4ERR_OPENMODE, "write lock on a file not open for writing")
    fs = ref.fs
    if args.reclaim:
        grace = grace_reclaim(c, fs)
        if grace.is_lost_lock(client.co_ownerid, owner, fs.name, ref.inode.fileid, start, end):
            raise FsError(S.NFS4ERR_RECLAIM_BAD, "this lock is known to be lost (seed 4.2.1)")
    else:
        reclaim_complete_first(c, client)
        grace_nonreclaim(c, fs)
    if (
        existing is not None
        and not c.instance.config.lock_splitting
        and not existing.held.exact_or_disjoint(start, end)
    ):
        raise FsError(S.NFS4ERR_LOCK_RANGE, "this server does not split locks")
    conflict = c.state.lock_conflict(ref.key, (client.clientid, owner), start, end, kind)
    if conflict is not None:
        if args.reclaim:
            raise FsError(S.NFS4ERR_RECLAIM_CONFLICT)
        return nfs4.LOCK4res(S.NFS4ERR_DENIED, denied=_denied(conflict))
    if existing is None:
        lock = c.state.new_lock(client.clientid, owner, opened)
        sid = lock.stateid()
    else:
        lock = existing
        sid = lock.bump()
    lock.held.lock(start, end, kind)
    c.current_stateid = sid
    if args.reclaim:
        c.instance.event(
            "reclaim",
            f"client {client.clientid:#x} reclaimed a lock on {fs.name}:{ref.inode.fileid:#x}",
            clientid=client.clientid,
            fs=fs.name,
        )
    return nfs4.LOCK4res(S.NFS4_OK, resok=nfs4.LOCK4resok(sid))


@handles(OP.OP_LOCKT)
def op_lockt(c: Compound, args: nfs4.LOCKT4args) -> ResOp:
    client = c.need_client()
    ref = c.need_fh()
    require_regular(ref.inode)
    _check_locktype(args.locktype)
    start, end = _lock_range(args.offset, args.length)
    grace_nonreclaim(c, ref.fs)
    # NFSv4.1: the client ID is the session's, whatever lock_owner4.clientid says.
    conflict = c.state.lock_conflict(
        ref.key, (client.clientid, args.owner.owner), start, end, args.locktype
    )
    if conflict is not None:
        return nfs4.LOCKT4res(S.NFS4ERR_DENIED, denied=_denied(conflict))
    return nfs4.LOCKT4res(S.NFS4_OK)


@handles(OP.OP_LOCKU)
def op_locku(c: Compound, args: nfs4.LOCKU4args) -> ResOp:
    ref = c.need_fh()
    require_regular(ref.inode)
    _check_locktype(args.locktype)
    start, end = _lock_range(args.offset, args.length)
    found = resolve_stateid(c, args.lock_stateid, ref)
    if not isinstance(found, LockState):
        raise FsError(S.NFS4ERR_BAD_STATEID, "not a lock stateid")
    if not c.instance.config.lock_splitting and not found.held.exact_or_disjoint(start, end):
        raise FsError(S.NFS4ERR_LOCK_RANGE, "this server does not split locks")
    found.held.unlock(start, end)
    sid = found.bump()
    c.current_stateid = sid
    return nfs4.LOCKU4res(S.NFS4_OK, sid)


# -- delegations and stateids, RFC 8881 sections 18.6, 18.38, 18.48 --------------------
@handles(OP.OP_DELEGRETURN)
def op_delegreturn(c: Compound, args: nfs4.DELEGRETURN4args) -> ResOp:
    ref = c.need_fh()
    found = resolve_stateid(c, args.deleg_stateid, ref)
    if not isinstance(found, Delegation):
        raise FsError(S.NFS4ERR_BAD_STATEID, "not a delegation stateid")
    c.state.remove(found)
    c.instance.event(
        "delegation-returned",
        f"delegation {found.other.hex()} returned by client {found.clientid:#x}"
        + (" after CB_RECALL" if found.recall_started is not None else ""),
        clientid=found.clientid,
        stateid=found.other.hex(),
    )
    return nfs4.DELEGRETURN4res(S.NFS4_OK)


@handles(OP.OP_TEST_STATEID)
def op_test_stateid(c: Compound, args: nfs4.TEST_STATEID4args) -> ResOp:
    c.need_client()
    codes = [stateid_status(c, sid) for sid in args.ts_stateids]
    return nfs4.TEST_STATEID4res(S.NFS4_OK, nfs4.TEST_STATEID4resok(codes))


@handles(OP.OP_FREE_STATEID)
def op_free_stateid(c: Compound, args: nfs4.FREE_STATEID4args) -> ResOp:
    client = c.need_client()
    sid = args.fsa_stateid
    if sid.seqid == 1 and sid.other == nfs4.CURRENT_STATEID.other:
        # The current stateid of the COMPOUND (RFC 8881 section 16.2.3.1.2): e.g.
        # [PUTFH, LOCK, FREE_STATEID(current)] frees -- or refuses to free -- that lock.
        if c.current_stateid is None or c.current_stateid.is_special():
            raise FsError(S.NFS4ERR_BAD_STATEID, "no current stateid")
        sid = c.current_stateid
    if sid.is_special():
        raise FsError(S.NFS4ERR_BAD_STATEID)
    record = c.state.get(sid.other)
    if record is None or record.clientid != client.clientid:
        raise FsError(S.NFS4ERR_BAD_STATEID)
    if c.instance.cluster.is_frozen(record.fs):
        raise FsError(S.NFS4ERR_DELAY, "file system being migrated")
    if record.revoked is None:
        if sid.seqid != 0 and sid.seqid < record.seqid:
            raise FsError(S.NFS4ERR_OLD_STATEID)
        # RFC 8881 section 18.38.3: a stateid with valid locks of any kind (an open's
        # share reservation, a delegation, byte ranges) is not freed.
        if not isinstance(record, LockState) or record.ranges:
            raise FsError(S.NFS4ERR_LOCKS_HELD, f"{record.kind()} stateid still holds locks")
    c.state.remove(record)
    if record.revoked is not None:
        c.instance.event(
            "stateid-freed",
            f"client {client.clientid:#x} acknowledged the loss of {record.kind()} "
            f"{record.other.hex()} with FREE_STATEID",
            clientid=client.clientid,
            stateid=record.other.hex(),
        )
    return nfs4.FREE_STATEID4res(S.NFS4_OK)


# -- client IDs and sessions, RFC 8881 sections 18.33 - 18.37, 18.50, 18.51 -------------
@handles(OP.OP_EXCHANGE_ID)
def op_exchange_id(c: Compound, args: nfs4.EXCHANGE_ID4args) -> ResOp:
    inst = c.instance
    flags = args.eia_flags
    if flags & ~EXCHGID4_ALLOWED_ARG_FLAGS:
        raise FsError(S.NFS4ERR_INVAL, f"eia_flags {flags:#x}")
    protect = args.eia_state_protect
    mach = _mach_cred_request(c, protect)
    owner = args.eia_clientowner
    now = inst.now()
    conf = inst.clients.confirmed_for(owner.co_ownerid)
    # Case 3 (RFC 8881 section 18.35.4): another principal for a confirmed owner is
    # refused only while that client ID has an unexpired lease with state; otherwise the
    # old client ID and its state are deleted and the request is a new owner.  Under
    # SP4_MACH_CRED the unexpired lease alone keeps the owner to its machine credential
    # (section 18.35.3).
    may_replace = conf is not None and (
        now - conf.last_renewal > inst.lease_time
        or (conf.mach_cred is None and not inst.state.valid_for_client(conf.clientid))
    )
    outcome = inst.clients.exchange_id(
        owner.co_ownerid, owner.co_verifier, flags, c.principal, now, may_replace=may_replace
    )
    if outcome.status != S.NFS4_OK or outcome.record is None:
        raise FsError(outcome.status, outcome.case)
    if outcome.deleted is not None:
        inst.destroy_client(
            outcome.deleted,
            reason=f"{outcome.case}: another principal took the client owner over",
        )
    record = outcome.record
    if not record.confirmed:
        # A new record takes the protection asked for (a confirmed one keeps its own).
        record.mach_cred = c.principal if mach is not None else None
        record.mach_enforce, record.mach_allow = mach or (frozenset(), frozenset())
    record.impl_id = list(args.eia_client_impl_id)
    eir_flags = EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_SUPP_MOVED_MIGR
    eir_flags |= EXCHGID4_FLAG_USE_NON_PNFS
    if record.confirmed:
        eir_flags |= EXCHGID4_FLAG_CONFIRMED_R
    inst.event(
        "exchange-id",
        f"EXCHANGE_ID from {record.owner_text()}: {outcome.case} -> client ID "
        f"{record.clientid:#x} ({'confirmed' if record.confirmed else 'unconfirmed'}) "
        f"(RFC 8881 section 18.35.4)",
        clientid=record.clientid,
        confirmed=record.confirmed,
        case=outcome.case,
        owner=record.owner_text(),
        principal=str(c.principal[1]) if c.principal[0] == "gss" else repr(c.principal),
        state_protect="SP4_MACH_CRED" if record.mach_cred is not None else "SP4_NONE",
    )
    return nfs4.EXCHANGE_ID4res(
        S.NFS4_OK,
        nfs4.EXCHANGE_ID4resok(
            eir_clientid=record.clientid,
            eir_sequenceid=record.eir_sequenceid,
            eir_flags=eir_flags,
            eir_state_protect=_state_protect_reply(record),
            eir_server_owner=inst.server_owner(c.node),
            eir_server_scope=inst.server_scope,
            eir_server_impl_id=[SERVER_IMPL_ID],
        ),
    )


V41_OPS: Final = frozenset(
    int(op) for op in OP if op.name.startswith("OP_") and op != OP.OP_ILLEGAL
)


def _mach_cred_request(
    c: Compound, protect: nfs4.state_protect4_a
) -> tuple[frozenset[int], frozenset[int]] | None:
    """EXCHANGE_ID's state protection (RFC 8881 sections 2.10.8.3 and 18.35.3): None
    for SP4_NONE; for SP4_MACH_CRED the operations this server will enforce (all the
    client listed in spo_must_enforce that NFSv4.1 has) and allow (likewise
    spo_must_allow: the machine credential may send anything here, stateids are not
    bound to principals).

    Raises:
        FsError: NFS4ERR_INVAL for SP4_MACH_CRED sent other than with RPCSEC_GSS
            integrity or privacy (section 18.35.3: the client MUST); NFS4ERR_NOTSUPP
            for SP4_SSV.
    """
    how = protect.spa_how
    if how == state_protect_how4.SP4_NONE:
        return None
    if how != state_protect_how4.SP4_MACH_CRED or protect.spa_mach_ops is None:
        raise FsError(S.NFS4ERR_NOTSUPP, f"state protection {how}: SP4_NONE and SP4_MACH_CRED only")
    if c.flavour not in ("krb5i", "krb5p"):
        raise FsError(
            S.NFS4ERR_INVAL,
            f"SP4_MACH_CRED sent with {c.flavour}: RPCSEC_GSS with integrity or privacy "
            "is required (RFC 8881 section 18.35.3)",
        )
    ops_asked = protect.spa_mach_ops
    enforce = frozenset(bitmap4_to_set(ops_asked.spo_must_enforce, limit=128)) & V41_OPS
    allow = frozenset(bitmap4_to_set(ops_asked.spo_must_allow, limit=128)) & V41_OPS
    return enforce, allow


def _state_protect_reply(record: ClientRecord) -> nfs4.state_protect4_r:
    """eir_state_protect: what this server enforces for the client ID (18.35.4)."""
    if record.mach_cred is None:
        return nfs4.state_protect4_r(state_protect_how4.SP4_NONE)
    return nfs4.state_protect4_r(
        state_protect_how4.SP4_MACH_CRED,
        spr_mach_ops=nfs4.state_protect_ops4(
            bitmap4_from(sorted(record.mach_enforce)), bitmap4_from(sorted(record.mach_allow))
        ),
    )


def enforce_mach_cred(c: Compound, record: ClientRecord, opnum: int) -> None:
    """SP4_MACH_CRED (RFC 8881 section 2.10.8.3): an operation the client ID's
    spo_must_enforce lists, sent for it by another principal than the machine
    credential, fails.

    Raises:
        FsError: NFS4ERR_WRONG_CRED.
    """
    if record.wrong_cred(opnum, c.principal):
        name = nfs_opnum4(opnum).name.removeprefix("OP_")
        c.instance.event(
            "wrong-cred",
            f"NFS4ERR_WRONG_CRED: {name} for client ID {record.clientid:#x} from "
            f"{c.principal[1]}, not its machine credential "
            f"{record.mach_cred[1] if record.mach_cred else ''} "
            "(SP4_MACH_CRED, RFC 8881 section 2.10.8.3)",
            clientid=record.clientid,
            op=name,
        )
        raise FsError(S.NFS4ERR_WRONG_CRED, f"{name} needs the machine credential")


@handles(OP.OP_CREATE_SESSION)
def op_create_session(c: Compound, args: nfs4.CREATE_SESSION4args) -> ResOp:
    inst = c.instance
    record = inst.clients.get(args.csa_clientid)
    if record is None:
        raise FsError(S.NFS4ERR_STALE_CLIENTID)
    if record.principal != c.principal:
        raise FsError(S.NFS4ERR_CLID_INUSE, "CREATE_SESSION by another principal")
    enforce_mach_cred(c, record, OP.OP_CREATE_SESSION)
    if record.confirmed and args.csa_sequence == record.cs_seqid and record.cs_reply is not None:
        # A retry of the last CREATE_SESSION: its cached reply (18.36.4).
        return nfs4.CREATE_SESSION4res.unpack(Decoder(record.cs_reply))
    if args.csa_sequence != record.eir_sequenceid:
        raise FsError(S.NFS4ERR_SEQ_MISORDERED, "csa_sequence")
    if args.csa_flags & ~CREATE_SESSION4_ALLOWED_FLAGS:
        raise FsError(S.NFS4ERR_INVAL, f"undefined csa_flags bits {args.csa_flags:#x}")
    fore = _negotiate(args.csa_fore_chan_attrs, back=False)
    back = _negotiate(args.csa_back_chan_attrs, back=True)
    flags = args.csa_flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN
    session = inst.new_session(record, c.node, fore, back, flags, args)
    session.fore_conns.add(id(c.conn))
    if flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN and c.conn is not None:
        session.bind_back(c.conn)
    if not record.confirmed:
        inst.confirm_client(record)
    record.cs_seqid = args.csa_sequence
    record.last_renewal = inst.now()
    res = nfs4.CREATE_SESSION4res(
        S.NFS4_OK,
        nfs4.CREATE_SESSION4resok(
            csr_sessionid=session.sessionid,
            csr_sequence=args.csa_sequence,
            csr_flags=flags,
            csr_fore_chan_attrs=fore,
            csr_back_chan_attrs=back,
        ),
    )
    enc = Encoder()
    res.pack(enc)
    record.cs_reply = enc.getvalue()
    inst.event(
        "create-session",
        f"session {session.sessionid.hex()} for client {record.clientid:#x}: "
        f"{fore.ca_maxrequests} slots, back channel "
        f"{'on this connection' if flags else 'not requested'} (RFC 8881 section 18.36)",
        clientid=record.clientid,
        sessionid=session.sessionid.hex(),
    )
    return res


def _negotiate(req: nfs4.channel_attrs4, *, back: bool) -> nfs4.channel_attrs4:
    got = negotiate_channel(req, BACK_LIMITS if back else FORE_LIMITS)
    if isinstance(got, nfs4.channel_attrs4):
        return got
    raise FsError(got, "channel attributes")


@handles(OP.OP_DESTROY_SESSION)
def op_destroy_session(c: Compound, args: nfs4.DESTROY_SESSION4args) -> ResOp:
    inst = c.instance
    session = c.node.sessions.get(args.dsa_sessionid)
    if session is None:
        raise FsError(S.NFS4ERR_BADSESSION)
    if not c.sequenced and id(c.conn) not in session.fore_conns:
        raise FsError(S.NFS4ERR_CONN_NOT_BOUND_TO_SESSION)
    owner = inst.clients.get(session.clientid)
    if owner is not None:
        enforce_mach_cred(c, owner, OP.OP_DESTROY_SESSION)
    if c.session is session and c.index != c.count - 1:
        # RFC 8881 section 18.37.3: DESTROY_SESSION of the session the COMPOUND's
        # SEQUENCE named "MUST be the final operation"; refused (the session stays) so
        # that nothing runs on a session that no longer exists.
        raise FsError(
            S.NFS4ERR_NOT_ONLY_OP,
            f"DESTROY_SESSION of the session in use is op {c.index} of {c.count}, not the last",
        )
    inst.destroy_session(session, c.node, reason="DESTROY_SESSION")
    return nfs4.DESTROY_SESSION4res(S.NFS4_OK)


@handles(OP.OP_DESTROY_CLIENTID)
def op_destroy_clientid(c: Compound, args: nfs4.DESTROY_CLIENTID4args) -> ResOp:
    inst = c.instance
    record = inst.clients.get(args.dca_clientid)
    if record is None:
        raise FsError(S.NFS4ERR_STALE_CLIENTID)
    enforce_mach_cred(c, record, OP.OP_DESTROY_CLIENTID)
    if record.sessions:
        raise FsError(S.NFS4ERR_CLIENTID_BUSY, "the client ID has sessions")
    if inst.state.valid_for_client(record.clientid):
        raise FsError(S.NFS4ERR_CLIENTID_BUSY, "the client ID holds state")
    inst.destroy_client(record, reason="DESTROY_CLIENTID")
    return nfs4.DESTROY_CLIENTID4res(S.NFS4_OK)


@handles(OP.OP_BIND_CONN_TO_SESSION)
def op_bind_conn_to_session(c: Compound, args: nfs4.BIND_CONN_TO_SESSION4args) -> ResOp:
    inst = c.instance
    session = c.node.sessions.get(args.bctsa_sessid)
    if session is None:
        raise FsError(S.NFS4ERR_BADSESSION)
    record = inst.clients.get(session.clientid)
    if record is None:
        raise FsError(S.NFS4ERR_BADSESSION)
    enforce_mach_cred(c, record, OP.OP_BIND_CONN_TO_SESSION)
    direction = args.bctsa_dir
    if direction == channel_dir_from_client4.CDFC4_FORE:
        result = channel_dir_from_server4.CDFS4_FORE
    elif direction == channel_dir_from_client4.CDFC4_BACK:
        result = channel_dir_from_server4.CDFS4_BACK
    elif direction in (
        channel_dir_from_client4.CDFC4_FORE_OR_BOTH,
        channel_dir_from_client4.CDFC4_BACK_OR_BOTH,
    ):
        result = channel_dir_from_server4.CDFS4_BOTH
    else:
        raise FsError(S.NFS4ERR_INVAL, f"bctsa_dir {int(direction)}")
    if result in (channel_dir_from_server4.CDFS4_FORE, channel_dir_from_server4.CDFS4_BOTH):
        session.fore_conns.add(id(c.conn))
    back = (channel_dir_from_server4.CDFS4_BACK, channel_dir_from_server4.CDFS4_BOTH)
    if result in back and c.conn is not None:
        session.bind_back(c.conn)
    record.last_renewal = inst.now()
    inst.event(
        "bind-conn",
        f"connection bound to session {session.sessionid.hex()} ({result.name})"
        + (
            f", a session transferred from {session.transferred_from}"
            if session.transferred_from
            else ""
        ),
        sessionid=session.sessionid.hex(),
    )
    return nfs4.BIND_CONN_TO_SESSION4res(
        S.NFS4_OK, nfs4.BIND_CONN_TO_SESSION4resok(session.sessionid, result, False)
    )


@handles(OP.OP_BACKCHANNEL_CTL)
def op_backchannel_ctl(c: Compound, args: nfs4.BACKCHANNEL_CTL4args) -> ResOp:
    if c.session is None:
        raise FsError(S.NFS4ERR_OP_NOT_IN_SESSION)
    c.session.cb_program = args.bca_cb_program
    c.session.cb_sec_parms = list(args.bca_sec_parms)
    return nfs4.BACKCHANNEL_CTL4res(S.NFS4_OK)


@handles(OP.OP_RECLAIM_COMPLETE)
def op_reclaim_complete(c: Compound, args: nfs4.RECLAIM_COMPLETE4args) -> ResOp:
    inst = c.instance
    client = c.need_client()
    if args.rca_one_fs:
        ref = c.need_fh()
        if not c.present(ref.fs):
            first_use_moved(c, ref.fs)
            raise FsError(S.NFS4ERR_MOVED)
        status = inst.reclaim_complete_fs(client, ref.fs.name)
    else:
        status = inst.reclaim_complete_global(client)
    if status != S.NFS4_OK:
        raise FsError(status)
    return nfs4.RECLAIM_COMPLETE4res(S.NFS4_OK)

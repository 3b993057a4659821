"""One NFSv4.1 client ID and session with one server, and the one path every COMPOUND takes.

RFC 8881 sections implemented here:

* 18.35 EXCHANGE_ID (uniform client-string model, section 2.4: one ``co_ownerid`` per
  client instance, stable across restarts so servers can merge migrated state);
* 18.36 CREATE_SESSION with a backchannel on the same connection (CONN_BACK_CHAN,
  section 2.10.3.1) and fore-channel attributes negotiated from the reply;
* 2.10.6 / 18.46 SEQUENCE: slots, sequence ids, the reply cache (exactly-once after a
  lost connection: the same slot and seqid are re-sent), status flags;
* 8.3 lease renewal: an idle client sends a SEQUENCE at least every lease_time / 2;
* 18.51 RECLAIM_COMPLETE after a new client ID;
* 18.37 / 18.50 DESTROY_SESSION and DESTROY_CLIENTID at unmount.

The async shell (this module) owns the transport and the tasks; the protocol state it
drives (``SlotTable``) is sans-I/O.  The transport is replaceable: dropping it and
connecting a new one touches no session or file state (DESIGN.md invariant 1).
"""

from __future__ import annotations

import contextvars
import errno
import hashlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import trio

from session.errors import (
    CallTimeout,
    NFSClientError,
    ReplyOverdue,
    ReplyTooLarge,
    TransportError,
    XdrError,
)
from session.gss import GssCredential, GssError, GssIntegrityError
from session.rpc import (
    NEGOTIATED_MAXIMUM,
    NULL_AUTH,
    PRE_SESSION_MAX_RECORD,
    PRE_SESSION_MAXIMUM,
    AuthSys,
    Credential,
    RpcCall,
    accept_stat,
    encode_accepted_reply,
    session_max_record,
)
from session.slots import Slot, SlotOutcome, SlotTable
from session.status import NFS4Error, nfs4_error
from session.transport import KeptReply, Transport
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder, Encoder, Gathered
from session.xdr.const import (
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    EXCHGID4_FLAG_CONFIRMED_R,
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    NFS4_PROGRAM,
    NFS_V4,
    channel_dir_from_client4,
    nfs_opnum4,
    nfsstat4,
    state_protect_how4,
)
from session.xdr.fattr import bitmap4_from, bitmap4_to_set

log = logging.getLogger("session")

NFS4_CALLBACK_PROGRAM = 0x40000000
NFSPROC4_COMPOUND = 1

#: SP4_MACH_CRED (RFC 8881 section 2.10.8.3): what only the machine credential may do
#: (the client ID and its sessions), and what it may do besides the owner (give state
#: back, and the checks recovery makes), as the Linux client asks.
MACH_CRED_ENFORCE: Final = (
    nfs_opnum4.OP_BIND_CONN_TO_SESSION,
    nfs_opnum4.OP_EXCHANGE_ID,
    nfs_opnum4.OP_CREATE_SESSION,
    nfs_opnum4.OP_DESTROY_SESSION,
    nfs_opnum4.OP_DESTROY_CLIENTID,
)
MACH_CRED_ALLOW: Final = (
    nfs_opnum4.OP_CLOSE,
    nfs_opnum4.OP_OPEN_DOWNGRADE,
    nfs_opnum4.OP_LOCKU,
    nfs_opnum4.OP_DELEGRETURN,
    nfs_opnum4.OP_COMMIT,
    nfs_opnum4.OP_SECINFO,
    nfs_opnum4.OP_SECINFO_NO_NAME,
    nfs_opnum4.OP_LAYOUTRETURN,
    nfs_opnum4.OP_TEST_STATEID,
    nfs_opnum4.OP_FREE_STATEID,
    nfs_opnum4.OP_WRITE,
)

#: Statuses after which a COMPOUND is retried as a new request, with backoff.
RETRY_STATUSES = frozenset({nfsstat4.NFS4ERR_DELAY, nfsstat4.NFS4ERR_GRACE})
#: SEQUENCE statuses meaning the session itself is gone (section 2.10.13).
SESSION_LOST = frozenset(
    {
        nfsstat4.NFS4ERR_BADSESSION,
        nfsstat4.NFS4ERR_DEADSESSION,
        nfsstat4.NFS4ERR_CONN_NOT_BOUND_TO_SESSION,
    }
)
CLIENT_LOST = frozenset({nfsstat4.NFS4ERR_STALE_CLIENTID, nfsstat4.NFS4ERR_EXPIRED})


def host_co_ownerid(instance: str) -> bytes:
    """A stable ``co_ownerid`` for this host and client instance (RFC 8881 section 2.4).

    Derived from /etc/machine-id (or the host name) and ``instance`` (the mount point),
    so the same mount on the same host presents the same owner after a restart, and two
    mounts in two processes never overwrite each other's client ID.
    """
    try:
        with open("/etc/machine-id", "rb") as f:
            machine = f.read().strip()
    except OSError:
        machine = socket.gethostname().encode()
    digest = hashlib.sha256(machine + b"\0" + instance.encode()).hexdigest()[:24]
    return f"fusenfs/{socket.gethostname()}/{digest}".encode()


@dataclass(slots=True)
class SessionOptions:
    """Tunables of one server session.

    Attributes:
        timeo: seconds one try may take (connect, BIND_CONN_TO_SESSION, the call) before
            the connection is dropped and the request re-sent on its slot: nfs(5)
            ``timeo``, here in seconds (nfs(5) counts tenths).  A minor timeout.
        retrans: how many re-sends follow the first try before a major timeout
            (a count).  ``timeo * (retrans + 1)`` seconds is the retry budget.
        hard: at a major timeout, keep trying ("server not responding, still trying")
            instead of failing the call with ETIMEDOUT (nfs(5) ``hard`` / ``soft``).
            Either way a waiting caller can be cancelled (FUSE INTERRUPT).
        softerr: soft only: a major timeout fails with ETIMEDOUT (nfs(5) softerr);
            otherwise with EIO (nfs(5) soft).
        nconnect: TCP connections to the server, all bound to the session (RFC 8881
            section 2.10.5; the first also carries the backchannel); requests are spread
            over them in turn (nfs(5) nconnect).
        max_request: bytes; upper bound asked for ``ca_maxrequestsize`` (wsize + headers).
        max_response: bytes; upper bound asked for ``ca_maxresponsesize`` (rsize + headers).
        max_slots: the number of slots asked for (``ca_maxrequests``).
        retry_limit: seconds a COMPOUND keeps being retried on DELAY/GRACE before
            the status is raised.
    """

    timeo: float = 30.0
    retrans: int = 3
    hard: bool = False
    softerr: bool = False
    nconnect: int = 1
    max_request: int = 1024 * 1024 + 4096
    max_response: int = 1024 * 1024 + 4096
    max_slots: int = 64
    retry_limit: float = 120.0

    @property
    def budget(self) -> float:
        """Seconds from a request's first try to its major timeout: timeo * (retrans + 1)."""
        return self.timeo * (self.retrans + 1)


@dataclass(frozen=True, slots=True)
class CompoundResult:
    """The decoded reply of one COMPOUND, the SEQUENCE result stripped off.

    Attributes:
        resarray: one result per operation sent (by the caller's list, SEQUENCE excluded).
        status_flags: ``sr_status_flags`` of the SEQUENCE reply.
    """

    resarray: list[nfs4.ResOp]
    status_flags: int


@dataclass(slots=True)
class SessionStatistics:
    compounds: int = 0
    retries_delay: int = 0
    reconnects: int = 0
    replays: int = 0
    renewals: int = 0
    session_rebuilds: int = 0
    callbacks: int = 0
    #: Tries that got no reply within ``timeo`` (each re-sent on its slot).
    minor_timeouts: int = 0
    #: Requests that reached ``timeo * (retrans + 1)`` without a reply.
    major_timeouts: int = 0
    #: Requests whose caller went away (interrupted) while they were on the wire; the
    #: slot stayed with them until answered (RFC 8881 section 2.10.6.2).
    orphaned: int = 0


@dataclass(frozen=True, slots=True)
class OpStats:
    """What /proc/self/mountstats gives per operation, for one kind of COMPOUND.

    Attributes:
        ops: COMPOUNDs of this kind (a count).
        transmissions: sends, re-sends after a lost connection or a timeout included.
        timeouts: tries that got no reply within ``timeo`` (minor timeouts).
        bytes_sent, bytes_received: RPC record bodies, bytes.
        rtt_ms_total, rtt_ms_max: from a send to its reply, milliseconds.
        exec_ms_total, exec_ms_max: from the caller's request to its result
            (waiting for a slot, retries and backoff included), milliseconds.
        errors: COMPOUNDs that ended with an NFS error status.
    """

    ops: int = 0
    transmissions: int = 0
    timeouts: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    rtt_ms_total: float = 0.0
    rtt_ms_max: float = 0.0
    exec_ms_total: float = 0.0
    exec_ms_max: float = 0.0
    errors: int = 0


@dataclass(slots=True)
class _OpCounter:
    """The running counts behind one ``OpStats`` (same fields, mutable)."""

    ops: int = 0
    transmissions: int = 0
    timeouts: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    rtt_ms_total: float = 0.0
    rtt_ms_max: float = 0.0
    exec_ms_total: float = 0.0
    exec_ms_max: float = 0.0
    errors: int = 0

    def frozen(self) -> OpStats:
        return OpStats(*(getattr(self, name) for name in self.__slots__))


#: The counter of the COMPOUND this task (or the keeper task it started) is sending.
_OP_COUNTER: contextvars.ContextVar[_OpCounter | None] = contextvars.ContextVar(
    "_OP_COUNTER", default=None
)


def _transmission(counter: _OpCounter | None, body: bytes | Gathered) -> float:
    """Count one transmission of ``body`` in ``counter``; returns when it starts."""
    if counter is not None:
        counter.transmissions += 1
        counter.bytes_sent += len(body)
    return trio.current_time()


class _Counting:
    """Counts one COMPOUND in ``counter`` while in its ``with`` block: the time it took
    (milliseconds) and whether it failed with an ``NFS4Error``; meanwhile ``_OP_COUNTER``
    names the counter, for the bytes and round trips of each transmission.  (A class:
    a generator-based context manager cost more than the rest of the bookkeeping.)"""

    __slots__ = ("_counter", "_started", "_token")

    def __init__(self, counter: _OpCounter) -> None:
        self._counter = counter

    def __enter__(self) -> None:
        self._token = _OP_COUNTER.set(self._counter)
        self._started = trio.current_time()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        _OP_COUNTER.reset(self._token)
        counter = self._counter
        took = (trio.current_time() - self._started) * 1000
        counter.ops += 1
        counter.exec_ms_total += took
        counter.exec_ms_max = max(counter.exec_ms_max, took)
        if isinstance(exc, NFS4Error):
            counter.errors += 1


#: True in a task that no interrupt cancels (only the session's or mount's shutdown):
#: read-ahead and write-behind.  If such a task is cancelled after all, its request is
#: not handed to a keeper task (``ServerSession.compound``): the slot is freed, the
#: request's fate unknown.  Set it at the top of such a task, with
#: ``UNINTERRUPTED.set(True)``: each trio task has its own copy.
UNINTERRUPTED: contextvars.ContextVar[bool] = contextvars.ContextVar("UNINTERRUPTED", default=False)
#: Operations that only set up a COMPOUND; a COMPOUND is counted under its first other.
_SETUP_OPS = frozenset(
    {
        nfs_opnum4.OP_SEQUENCE,
        nfs_opnum4.OP_PUTFH,
        nfs_opnum4.OP_PUTROOTFH,
        nfs_opnum4.OP_PUTPUBFH,
        nfs_opnum4.OP_SAVEFH,
        nfs_opnum4.OP_RESTOREFH,
    }
)


def main_op(ops: Sequence[nfs4.ArgOp]) -> str:
    """The name a COMPOUND is counted under: its first operation that does more than set
    it up ("READ" for PUTFH+READ); "SEQUENCE" for a bare one (lease renewal)."""
    for op in ops:
        if op.OPNUM not in _SETUP_OPS:
            return op.OPNUM.name.removeprefix("OP_")
    return "SEQUENCE"


StatusFlagsHook = Callable[[int], None]
OrphanHook = Callable[["CompoundResult"], Awaitable[None]]
CallbackHandler = Callable[[cb.CB_COMPOUND4args], Awaitable[list[cb.CbResOp]]]


#: Operations that are safe to execute twice: a COMPOUND made only of these need not
#: ask for its reply to be cached (RFC 8881 section 2.10.6.1.3).  WRITE counts: the same
#: bytes at the same offset give the same file.
IDEMPOTENT_OPS = frozenset(
    {
        nfs_opnum4.OP_ACCESS,
        nfs_opnum4.OP_COMMIT,
        nfs_opnum4.OP_GETATTR,
        nfs_opnum4.OP_GETFH,
        nfs_opnum4.OP_LOOKUP,
        nfs_opnum4.OP_LOOKUPP,
        nfs_opnum4.OP_NVERIFY,
        nfs_opnum4.OP_PUTFH,
        nfs_opnum4.OP_PUTPUBFH,
        nfs_opnum4.OP_PUTROOTFH,
        nfs_opnum4.OP_READ,
        nfs_opnum4.OP_READDIR,
        nfs_opnum4.OP_READLINK,
        nfs_opnum4.OP_RESTOREFH,
        nfs_opnum4.OP_SAVEFH,
        nfs_opnum4.OP_SECINFO,
        nfs_opnum4.OP_SECINFO_NO_NAME,
        nfs_opnum4.OP_TEST_STATEID,
        nfs_opnum4.OP_VERIFY,
        nfs_opnum4.OP_WRITE,
        nfs_opnum4.OP_LOCKT,
    }
)


def needs_reply_cache(ops: Sequence[nfs4.ArgOp]) -> bool:
    """True if re-executing ``ops`` could differ from replaying them (set sa_cachethis)."""
    return any(op.OPNUM not in IDEMPOTENT_OPS for op in ops)


def op_names(ops: Sequence[object]) -> str:
    """``"SEQUENCE PUTFH READ"`` for a debug line."""
    return " ".join(type(op).__name__.removesuffix("4args").removesuffix("4res") for op in ops)


@dataclass(slots=True)
class _Exchange:
    """One request on one slot, carried by whoever owns the slot until it is answered:
    its caller, or a keeper task.

    Attributes:
        table, slot: the slot (and the table it came from) the request uses.
        body: the encoded COMPOUND (bytes, or pieces when it holds a WRITE's data),
            re-sent unchanged after a reconnect.
        started: ``time.monotonic()`` when the request was encoded (seconds).
        res: the decoded reply, once there is one.
        failure: what the carrier raised instead (usually an ``NFSClientError``).
        misordered_retry: SEQ_MISORDERED was explained (the slot stepped back once).
        orphaned: the caller was cancelled before the request was done.
        orphan_hook: then called with a successful result.
        kept: the reply a cancelled caller left its keeper to wait for.
    """

    table: SlotTable
    slot: Slot
    body: bytes | Gathered
    cred: Credential
    started: float
    sent: list[nfs4.ArgOp] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    res: nfs4.COMPOUND4res | None = None
    failure: Exception | None = None
    misordered_retry: bool = False
    orphaned: bool = False
    orphan_hook: OrphanHook | None = None
    kept: KeptReply | None = None

    def keep(self, kept: KeptReply) -> None:
        """``Transport.call(keep=)``: the caller was cancelled with the record sent."""
        self.kept = kept

    def take_kept(self) -> KeptReply | None:
        """The reply a cancelled caller left to wait for (once), or None."""
        kept, self.kept = self.kept, None
        return kept


@dataclass
class ServerSession:
    """A client ID and session with the server at ``host``:``port``.

    Use ``await s.start(nursery)`` (EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE and the
    lease renewer), then ``await s.compound([...])``; ``await s.shutdown()`` destroys
    the session and the client ID.
    """

    host: str
    port: int
    co_ownerid: bytes
    options: SessionOptions = field(default_factory=SessionOptions)
    machine_cred: Credential = field(default_factory=lambda: AuthSys(uid=0, gid=0, gids=[]))
    on_status_flags: StatusFlagsHook | None = None
    on_callback: CallbackHandler | None = None
    #: Called on a new client ID, after the new session and before RECLAIM_COMPLETE:
    #: the state manager reclaims opens and locks there (RFC 8881 section 8.4.2.1).
    on_new_client_id: Callable[[], Awaitable[None]] | None = None
    # -- established state ------------------------------------------------------------
    co_verifier: bytes = field(default_factory=lambda: os.urandom(8))
    clientid: int = 0
    create_session_seqid: int = 0
    sessionid: bytes = b""
    exchange_id: nfs4.EXCHANGE_ID4resok | None = None
    #: The EXCHANGE_ID result before the last new client ID: recovery compares the
    #: server_owner and server_scope (seed 001 section 4.1.3).
    previous_exchange_id: nfs4.EXCHANGE_ID4resok | None = None
    create_session: nfs4.CREATE_SESSION4resok | None = None
    lease_time: int = 90
    status_flags: int = 0
    #: Operation numbers the server enforces SP4_MACH_CRED for (EXCHANGE_ID's reply).
    mach_enforced: frozenset[int] = frozenset()
    slots: SlotTable = field(default_factory=lambda: SlotTable(1))
    stats: SessionStatistics = field(default_factory=SessionStatistics)
    _transport: Transport | None = None
    _nursery: trio.Nursery | None = None
    _slot_wait: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    _connect_lock: trio.Lock = field(default_factory=trio.Lock)
    _recover_lock: trio.Lock = field(default_factory=trio.Lock)
    _last_renewal: float = 0.0
    _cb_seqids: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    _closing: bool = False
    _renewing: bool = False
    _outage: bool = False  # a reconnect is under way (logged once per outage)
    _op_stats: dict[str, _OpCounter] = field(default_factory=dict)
    _extra: list[Transport | None] = field(default_factory=list)  # nconnect's others
    _next_conn: int = 0
    _not_responding: bool = False  # a major timeout was logged; "OK" when a reply comes

    # ---------------------------------------------------------------- set-up and teardown
    async def start(self, nursery: trio.Nursery) -> None:
        """Connect, establish the client ID and session, send RECLAIM_COMPLETE.

        Raises:
            TransportError: the server cannot be reached.
            NFS4Error: the server refused EXCHANGE_ID or CREATE_SESSION.
        """
        await self.open(nursery)
        await self.establish_client_id()
        await self.establish_session()
        await self.reclaim_complete()
        self.start_renewal()

    async def open(self, nursery: trio.Nursery) -> None:
        """Connect only: migration recovery inspects EXCHANGE_ID before deciding more.

        Raises:
            TransportError: the server cannot be reached.
        """
        self._nursery = nursery
        await self._connect()

    def start_renewal(self) -> None:
        """Start the lease renewer (once) in the nursery given to ``open``."""
        if self._nursery is None:
            raise TransportError("session not opened")
        if not self._renewing:
            self._renewing = True
            self._nursery.start_soon(self._renew_lease_loop)

    async def adopt_session(self, sessionid: bytes, slots: SlotTable) -> bool:
        """Use a session that migrated here with Transparent State Migration.

        BIND_CONN_TO_SESSION on this server's connection (seed 001 sections 4.2.2,
        4.2.7): if the server accepts, the session was transferred and keeps the slot
        table as the client knew it; otherwise the caller creates a new session.
        """
        transport = await self._connect()
        previous = self.sessionid
        self.sessionid = sessionid
        if not await self._bind_connection(transport):
            self.sessionid = previous
            return False
        table = SlotTable(slots.max_slots)
        for mine, theirs in zip(table.slots, slots.slots, strict=False):
            mine.seqid = theirs.seqid
        self.slots = table
        self._apply_record_limit()
        self._slot_wait.unpark_all()
        await self.refresh_lease_time()
        return True

    async def share_session(self, other: ServerSession) -> bool:
        """Carry ``other``'s session on this connection too (session trunking).

        BIND_CONN_TO_SESSION here (RFC 8881 section 18.34); if the server accepts, this
        object uses the very slot table of ``other``.  One session has one slot table,
        whichever connection carries a request (section 2.10.5), so two objects for one
        session must not each count sequence ids: requests on both connections would
        reuse a slot's next seqid (NFS4ERR_SEQ_MISORDERED, or a reply cached for the
        other request).  Unlike ``adopt_session``, whose session was copied to another
        server with slots of its own there.  False: not bound (the caller creates a
        session instead).
        """
        transport = await self._connect()
        previous = self.sessionid
        self.sessionid = other.sessionid
        if not await self._bind_connection(transport):
            self.sessionid = previous
            return False
        self.slots = other.slots
        self._slot_wait = other._slot_wait
        self.create_session = other.create_session
        self._apply_record_limit()
        await self.refresh_lease_time()
        return True

    def _state_protect(self) -> nfs4.state_protect4_a:
        """SP4_MACH_CRED when the machine credential is RPCSEC_GSS (RFC 8881 section
        2.10.8.3, 18.35): the operations that manage the client ID and its sessions must
        come with the machine credential; those that give state back may (so a user's
        expired ticket cannot keep an open or a delegation from being returned).  With
        AUTH_SYS there is nothing to protect: SP4_NONE."""
        if not isinstance(self.machine_cred, GssCredential):
            return nfs4.state_protect4_a(spa_how=state_protect_how4.SP4_NONE)
        return nfs4.state_protect4_a(
            spa_how=state_protect_how4.SP4_MACH_CRED,
            spa_mach_ops=nfs4.state_protect_ops4(
                spo_must_enforce=bitmap4_from(int(op) for op in MACH_CRED_ENFORCE),
                spo_must_allow=bitmap4_from(int(op) for op in MACH_CRED_ALLOW),
            ),
        )

    def _note_state_protect(self, resok: nfs4.EXCHANGE_ID4resok) -> None:
        """Remember which operations the server enforces SP4_MACH_CRED for: they are
        sent with the machine credential whoever asks (section 18.35.3)."""
        protect = resok.eir_state_protect
        self.mach_enforced = frozenset()
        if protect.spr_how == state_protect_how4.SP4_MACH_CRED and protect.spr_mach_ops:
            self.mach_enforced = frozenset(
                bitmap4_to_set(protect.spr_mach_ops.spo_must_enforce, limit=128)
            )

    def _exchange_id_args(self) -> nfs4.EXCHANGE_ID4args:
        """EXCHANGE_ID4args for this client instance (uniform client string, section 2.4)."""
        return nfs4.EXCHANGE_ID4args(
            eia_clientowner=nfs4.client_owner4(
                co_verifier=self.co_verifier, co_ownerid=self.co_ownerid
            ),
            eia_flags=EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_SUPP_MOVED_MIGR,
            eia_state_protect=self._state_protect(),
            eia_client_impl_id=[
                nfs4.nfs_impl_id4(
                    nii_domain="fusenfs.invalid",
                    nii_name="fusenfs 0.1 (Python userspace NFSv4.1 client)",
                    nii_date=nfs4.nfstime4(seconds=0, nseconds=0),
                )
            ],
        )

    async def establish_client_id(self) -> nfs4.EXCHANGE_ID4resok:
        """EXCHANGE_ID (RFC 8881 section 18.35) with the migration/referral flags."""
        res = await self.sessionless([self._exchange_id_args()])
        resok = _ok(res[0], nfs4.EXCHANGE_ID4resok)
        self.exchange_id = resok
        self.clientid = resok.eir_clientid
        self.create_session_seqid = resok.eir_sequenceid
        self._note_state_protect(resok)
        log.info(
            "EXCHANGE_ID %s:%d clientid=%#x flags=%#x confirmed=%s server_owner=%r%s",
            self.host,
            self.port,
            resok.eir_clientid,
            resok.eir_flags,
            bool(resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R),
            resok.eir_server_owner.so_major_id,
            " SP4_MACH_CRED" if self.mach_enforced else "",
        )
        return resok

    async def exchange_id_probe(self) -> nfs4.EXCHANGE_ID4resok:
        """EXCHANGE_ID again with the same owner and verifier, changing nothing here.

        For a client ID the server already has confirmed, this returns it (RFC 8881
        section 18.35.4, case 2): migration recovery uses it to see whether state
        migrated into a client ID the client already holds (seed 001 4.2.2).
        """
        res = await self.sessionless([self._exchange_id_args()])
        return _ok(res[0], nfs4.EXCHANGE_ID4resok)

    async def establish_session(self) -> nfs4.CREATE_SESSION4resok:
        """CREATE_SESSION (RFC 8881 section 18.36) with a backchannel on this connection."""
        opts = self.options
        fore = nfs4.channel_attrs4(
            ca_headerpadsize=0,
            ca_maxrequestsize=opts.max_request,
            ca_maxresponsesize=opts.max_response,
            ca_maxresponsesize_cached=8192,
            ca_maxoperations=16,
            ca_maxrequests=opts.max_slots,
            ca_rdma_ird=[],
        )
        back = nfs4.channel_attrs4(
            ca_headerpadsize=0,
            ca_maxrequestsize=16384,
            ca_maxresponsesize=16384,
            ca_maxresponsesize_cached=0,
            ca_maxoperations=4,
            ca_maxrequests=4,
            ca_rdma_ird=[],
        )
        args = nfs4.CREATE_SESSION4args(
            csa_clientid=self.clientid,
            csa_sequence=self.create_session_seqid,
            csa_flags=CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
            csa_fore_chan_attrs=fore,
            csa_back_chan_attrs=back,
            csa_cb_program=NFS4_CALLBACK_PROGRAM,
            csa_sec_parms=[nfs4.callback_sec_parms4(cb_secflavor=0)],
        )
        res = await self.sessionless([args])
        resok = _ok(res[0], nfs4.CREATE_SESSION4resok)
        self.create_session = resok
        self.create_session_seqid = (self.create_session_seqid + 1) & 0xFFFFFFFF
        self.sessionid = resok.csr_sessionid
        attrs = resok.csr_fore_chan_attrs
        self._apply_record_limit()
        extras, self._extra = self._extra, []  # bound to the old session
        for extra in extras:
            if extra is not None:
                await _close_quietly(extra)
        self.slots = SlotTable(max(1, attrs.ca_maxrequests))
        self._slot_wait.unpark_all()
        self._cb_seqids.clear()
        log.info(
            "CREATE_SESSION %s:%d session=%s slots=%d maxreq=%d maxresp=%d flags=%#x",
            self.host,
            self.port,
            resok.csr_sessionid.hex(),
            attrs.ca_maxrequests,
            attrs.ca_maxrequestsize,
            attrs.ca_maxresponsesize,
            resok.csr_flags,
        )
        await self.refresh_lease_time()
        return resok

    async def refresh_lease_time(self) -> None:
        """Read ``lease_time`` (seconds) from the root (RFC 8881 section 5.8.1.11)."""
        from session.xdr.const import FATTR4
        from session.xdr.fattr import bitmap4_from, decode_fattr4

        res = await self.compound(
            [
                nfs4.PUTROOTFH4args(),
                nfs4.GETATTR4args(attr_request=bitmap4_from([FATTR4.LEASE_TIME])),
            ]
        )
        getattr_res = res.resarray[1]
        assert isinstance(getattr_res, nfs4.GETATTR4res) and getattr_res.resok is not None
        attrs = decode_fattr4(getattr_res.resok.obj_attributes)
        if attrs.lease_time:
            self.lease_time = attrs.lease_time

    async def reclaim_complete(self, one_fs: bool = False, fh: bytes | None = None) -> None:
        """RECLAIM_COMPLETE (RFC 8881 section 18.51); global, or for the FS of ``fh``.

        NFS4ERR_COMPLETE_ALREADY is not an error here.
        """
        ops: list[nfs4.ArgOp] = []
        if one_fs:
            if fh is None:
                raise ValueError("RECLAIM_COMPLETE(rca_one_fs) needs a filehandle of the FS")
            ops.append(nfs4.PUTFH4args(object=fh))
        ops.append(nfs4.RECLAIM_COMPLETE4args(rca_one_fs=one_fs))
        try:
            await self.compound(ops)
        except NFS4Error as e:
            if e.status != nfsstat4.NFS4ERR_COMPLETE_ALREADY:
                raise

    async def shutdown(self) -> None:
        """DESTROY_SESSION and DESTROY_CLIENTID (sections 18.37, 18.50), then disconnect.

        Errors are logged, not raised: the mount is going away regardless.
        """
        self._closing = True
        try:
            with trio.move_on_after(5):
                if self.sessionid:
                    await self.sessionless(
                        [nfs4.DESTROY_SESSION4args(dsa_sessionid=self.sessionid)]
                    )
                    self.sessionid = b""
                if self.clientid:
                    await self.sessionless([nfs4.DESTROY_CLIENTID4args(dca_clientid=self.clientid)])
                await self.destroy_credential(self.machine_cred)
        except NFSClientError as e:
            log.info("shutdown of %s:%d: %s", self.host, self.port, e)
        for extra in self._extra:
            if extra is not None:
                await _close_quietly(extra)
        self._extra = []
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def destroy_credential(self, cred: Credential) -> None:
        """RPCSEC_GSS_DESTROY of ``cred``'s context on this server (RFC 2203 section
        5.4), if it is an RPCSEC_GSS credential with one; nothing for other flavors.
        Bounded by ``timeo``; errors are logged (the server forgets contexts anyway)."""
        if not isinstance(cred, GssCredential) or self._transport is None:
            return
        with trio.move_on_after(self.options.timeo):
            await cred.destroy(self._transport, NFS4_PROGRAM, NFS_V4)

    async def _cred_ready(self, cred: Credential) -> None:
        """Have ``cred`` ready to seal before a slot is taken: an RPCSEC_GSS context
        is created (or renewed) here, so a user without Kerberos credentials fails
        with EACCES without costing a slot's sequence (RFC 2203 section 5.2).  A
        connection lost meanwhile is made again, backing off from 0.1 s to 5 s.

        Raises:
            trio.TooSlowError: not ready within ``options.budget`` seconds.
            GssError: the context could not be created (no credentials, refused).
        """
        if not isinstance(cred, GssCredential):
            return
        delay = 0.1
        with trio.fail_after(self.options.budget):
            while True:
                try:
                    transport = await self._transport_for_call()
                    await cred.ready(transport, NFS4_PROGRAM, NFS_V4)
                    return
                except ReplyTooLarge:
                    raise
                except TransportError as e:
                    # Lost while (re)connecting or creating the context: as ``_send``
                    # does for a call, connect again after a pause, within the budget.
                    log.debug("%s:%d context not ready: %s", self.host, self.port, e)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ---------------------------------------------------------------- the transport
    async def _connect(self) -> Transport:
        """The current transport, connecting a new one if there is none or it closed.

        Each wait is bounded by ``options.timeo`` (the TCP connect, then, on a reconnect,
        BIND_CONN_TO_SESSION), so ``_connect_lock`` is never held across an unbounded
        wait; callers may bound it more tightly.

        Raises:
            TransportError: the connection or the bind failed or timed out.
        """
        t = self._transport
        if t is not None and not t.closed:
            return t  # the usual case, without the lock's trip through the scheduler
        async with self._connect_lock:
            t = self._transport
            if t is not None and not t.closed:
                return t
            if self._nursery is None:
                raise TransportError("session not started")
            if t is not None:
                self.stats.reconnects += 1
                if not self._outage:
                    self._outage = True
                    log.warning(
                        "connection to %s:%d lost; reconnecting (in-flight requests are "
                        "re-sent on their slots)",
                        self.host,
                        self.port,
                    )
            timeo = self.options.timeo
            with trio.move_on_after(timeo) as connecting:
                limit, source = self._record_limit()
                transport = await Transport.connect(
                    self.host,
                    self.port,
                    nursery=self._nursery,
                    on_call=self._on_backchannel_call,
                    max_record=limit,
                    max_record_source=source,
                )
            if connecting.cancelled_caught:
                raise TransportError(
                    f"cannot connect to {self.host}:{self.port}: no answer in {timeo:g} s"
                )
            try:
                if t is not None and self.sessionid:
                    # A new connection must be bound to the session before use; with
                    # SP4_NONE the first SEQUENCE binds it implicitly (section 2.10.3.1),
                    # but the backchannel needs BIND_CONN_TO_SESSION.
                    await self._bind_connection(transport)
            except BaseException:
                await _close_quietly(transport)
                raise
            self._transport = transport
            return transport

    def _record_limit(self) -> tuple[int, str]:
        """The largest record accepted from the server (bytes), and what it is named in
        the error: before a session a small fixed cap; then what CREATE_SESSION
        negotiated (never more than was asked): a reply larger than
        ca_maxresponsesize breaks the protocol (RFC 8881 sections 2.10.6.4, 18.36.3)."""
        if not self.sessionid:
            return PRE_SESSION_MAX_RECORD, PRE_SESSION_MAXIMUM
        cs = self.create_session
        fore = self.options.max_response
        back = 16384
        if cs is not None:
            fore = min(cs.csr_fore_chan_attrs.ca_maxresponsesize, fore)
            back = min(cs.csr_back_chan_attrs.ca_maxrequestsize, back)
        return session_max_record(fore, back), NEGOTIATED_MAXIMUM

    def _apply_record_limit(self) -> None:
        if self._transport is not None:
            self._transport.set_max_record(*self._record_limit())

    async def _bind_connection(
        self,
        transport: Transport,
        direction: channel_dir_from_client4 = channel_dir_from_client4.CDFC4_FORE_OR_BOTH,
    ) -> bool:
        """BIND_CONN_TO_SESSION for both channels (RFC 8881 section 18.34).

        Returns True if bound, False if the server refused (the caller then creates a
        session, or lets SEQUENCE report the unbound connection).

        Raises:
            TransportError: no reply within ``options.timeo`` seconds (the connection is
                useless: the caller drops it and tries again within its budget).
        """
        args = nfs4.BIND_CONN_TO_SESSION4args(
            bctsa_sessid=self.sessionid,
            bctsa_dir=direction,
            bctsa_use_conn_in_rdma_mode=False,
        )
        body = _encode_compound([args])
        timeo = self.options.timeo
        try:
            with trio.fail_after(timeo):
                reply = await transport.call(
                    NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, body, self.machine_cred
                )
            res = _decode_compound(reply, [args])
        except trio.TooSlowError:
            raise TransportError(
                f"server {self.host}:{self.port}: no reply to BIND_CONN_TO_SESSION in {timeo:g} s"
            ) from None
        except TransportError:
            raise
        except NFSClientError as e:
            log.info("BIND_CONN_TO_SESSION failed: %s", e)
            return False
        if res.status != nfsstat4.NFS4_OK:
            log.info("BIND_CONN_TO_SESSION: %s", res.status.name)
            return False
        return True

    async def drop_transport(self, only: Transport | None = None) -> None:
        """Close the connection (tests and recovery); the session survives.

        Args:
            only: close the current connection only if it is this one (a request that
                timed out on an old connection must not close a newer one).
        """
        t = self._transport
        if t is not None and (only is None or t is only):
            await _close_quietly(t)
        for extra in self._extra:
            if extra is not None and (only is None or extra is only):
                await _close_quietly(extra)

    def _ready_transport(self) -> Transport | None:
        """The connection ``_transport_for_call`` would give now without waiting, or
        None when it would have to connect first (or choose among ``nconnect``)."""
        if self.options.nconnect > 1 and self.sessionid:
            return None
        t = self._transport
        return t if t is not None and not t.closed else None

    async def _transport_for_call(self) -> Transport:
        """The connection for the next request: the main one, or with ``nconnect`` the
        next in turn, connected and bound to the session (fore channel) on first use.
        A connection that cannot be set up is skipped for the main one."""
        primary = await self._connect()
        n = self.options.nconnect
        if n <= 1 or not self.sessionid:
            return primary
        self._next_conn = (self._next_conn + 1) % n
        if self._next_conn == 0:
            return primary
        index = self._next_conn - 1
        while len(self._extra) <= index:
            self._extra.append(None)
        extra = self._extra[index]
        if extra is not None and not extra.closed:
            return extra
        assert self._nursery is not None
        try:
            extra = await Transport.connect(
                self.host, self.port, nursery=self._nursery, on_call=self._on_backchannel_call
            )
            extra.set_max_record(*self._record_limit())
            if not await self._bind_connection(extra, channel_dir_from_client4.CDFC4_FORE):
                await _close_quietly(extra)
                return primary
        except TransportError as e:
            log.debug("extra connection %d to %s:%d: %s", index + 1, self.host, self.port, e)
            return primary
        self._extra[index] = extra
        return extra

    def _heard_from_server(self) -> None:
        """A reply arrived: end an outage, logging its end once (as the kernel's "OK")."""
        if self._not_responding:
            self._not_responding = False
            log.warning("server %s:%d OK", self.host, self.port)
        if self._outage:
            self._outage = False
            log.warning("connection to %s:%d restored", self.host, self.port)

    def _major_timeout(self, budget: float, reason: str) -> None:
        """``timeo * (retrans + 1)`` without a reply: say so once per outage."""
        self.stats.major_timeouts += 1
        if not self._not_responding:
            self._not_responding = True
            how = "still trying" if self.options.hard else "timed out"
            log.warning(
                "server %s:%d not responding, %s (no reply in %.0f s: %s)",
                self.host,
                self.port,
                how,
                budget,
                reason,
            )

    async def _send(
        self,
        body: bytes | Gathered,
        cred: Credential,
        exchange: _Exchange | None = None,
        handoff: bool = False,
    ) -> bytes | memoryview:
        """Send one record, re-sending the same bytes after a lost connection.

        The caller keeps its slot and seqid, so the server's reply cache makes the
        re-send exactly-once (RFC 8881 section 2.10.6.2).  Each try (connecting and
        binding a connection if needed, then the call) may take ``timeo`` seconds (a
        minor timeout: the connection is dropped and the request re-sent); reconnects
        back off from 0.1 s to 5 s.  After ``timeo * (retrans + 1)`` seconds without a
        reply (a major timeout) a soft session fails the call; a hard one logs "not
        responding" once and keeps trying.  Every wait is a checkpoint: a cancelled
        caller returns at once.

        With ``handoff`` (``exchange`` is carried by its interruptible caller, see
        ``_carry``), a caller cancelled while its record is on a live connection
        leaves the wait for the reply in ``exchange.kept`` (``Transport.call(keep=)``);
        the keeper task that takes the request over continues here from that wait, so
        a record is never sent twice on one connection (RFC 8881 section 2.9.2).

        Raises:
            CallTimeout: soft, and the server did not answer within the budget (ETIMEDOUT).
            ReplyTooLarge: the reply exceeded the negotiated size (re-sending would get
                the same reply).
        """
        opts = self.options
        budget = opts.budget
        start = trio.current_time()
        major_at = start + budget
        delay = 0.1
        counter = _OP_COUNTER.get()
        keep = exchange.keep if exchange is not None and handoff else None
        while True:
            transport: Transport | None = None
            now = trio.current_time()
            try_deadline = now + opts.timeo if opts.hard else min(now + opts.timeo, major_at)
            reply: bytes | memoryview | None = None
            timed_out = False
            try:
                kept = exchange.take_kept() if exchange is not None else None
                if kept is not None:
                    # Taking over from a cancelled caller: the record is on the wire.
                    if isinstance(kept.transport, Transport):
                        transport = kept.transport
                    sent_at = trio.current_time()
                    reply = await kept.wait()
                elif not isinstance(cred, GssCredential):
                    # Nothing to wait for before sending once connected: the transport
                    # times the reply itself (a cancel scope costs more than the rest
                    # of this function), so that only the caller's cancellation hands
                    # that wait over (``keep``).
                    transport = self._ready_transport()
                    if transport is None:
                        with trio.CancelScope(deadline=try_deadline):
                            transport = await self._transport_for_call()
                    if transport is None:
                        timed_out = True
                    else:
                        sent_at = _transmission(counter, body)
                        reply = await transport.call(
                            NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, body, cred, try_deadline, keep
                        )
                else:
                    # RPCSEC_GSS: creating or renewing the context is bounded too.
                    with trio.CancelScope(deadline=try_deadline):
                        transport = await self._transport_for_call()
                        sent_at = _transmission(counter, body)
                        reply = await transport.call(
                            NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, body, cred
                        )
                    timed_out = reply is None
            except ReplyTooLarge:
                raise
            except ReplyOverdue:
                timed_out = True
            except TransportError as e:
                last_error = str(e)
            if reply is not None:
                if counter is not None:
                    rtt = (trio.current_time() - sent_at) * 1000
                    counter.bytes_received += len(reply)
                    counter.rtt_ms_total += rtt
                    counter.rtt_ms_max = max(counter.rtt_ms_max, rtt)
                self._heard_from_server()
                return reply
            if timed_out:
                # The deadline passed: a minor timeout.
                last_error = f"no reply in {opts.timeo:g} s"
                self.stats.minor_timeouts += 1
                if counter is not None:
                    counter.timeouts += 1
                await self.drop_transport(only=transport)
            now = trio.current_time()
            if now >= major_at:
                self._major_timeout(budget, last_error)
                if not opts.hard or self._closing:
                    timeout = CallTimeout(
                        f"server {self.host}:{self.port} not responding: no reply in "
                        f"{now - start:.0f} s (timeo={opts.timeo:g} s, retrans={opts.retrans}): "
                        f"{last_error}"
                    )
                    # nfs(5): soft fails with EIO, softerr with ETIMEDOUT.
                    timeout.errno = errno.ETIMEDOUT if opts.softerr else errno.EIO
                    raise timeout
                major_at = now + budget
            elif self._closing:
                raise CallTimeout(f"server {self.host}:{self.port}: {last_error} (unmounting)")
            log.debug("%s:%d re-sending after: %s", self.host, self.port, last_error)
            self.stats.replays += 1
            pause = delay if opts.hard else min(delay, max(0.0, major_at - now))
            await trio.sleep(pause)
            delay = min(delay * 2, 5.0)

    # ---------------------------------------------------------------- compounds
    async def sessionless(self, ops: list[nfs4.ArgOp]) -> list[nfs4.ResOp]:
        """A COMPOUND without SEQUENCE (EXCHANGE_ID, CREATE_SESSION, DESTROY_*...).

        Raises:
            NFS4Error: the COMPOUND failed; ``.results`` holds the partial results.
        """
        with self._counted(ops):
            return await self._sessionless(ops)

    def _counted(self, ops: Sequence[nfs4.ArgOp]) -> _Counting:
        """Count one COMPOUND under its main operation (``op_statistics``): a context
        manager around the whole COMPOUND, re-sends and retries included."""
        name = main_op(ops)
        counter = self._op_stats.get(name)
        if counter is None:
            counter = self._op_stats[name] = _OpCounter()
        return _Counting(counter)

    def op_statistics(self) -> dict[str, OpStats]:
        """Per-operation counts, bytes and times since the session object was made
        (what /proc/self/mountstats shows for a kernel NFS mount), by ``main_op``."""
        return {name: c.frozen() for name, c in sorted(self._op_stats.items())}

    async def _sessionless(self, ops: list[nfs4.ArgOp]) -> list[nfs4.ResOp]:
        delay = 0.1
        deadline = trio.current_time() + self.options.retry_limit
        while True:
            body = _encode_compound(ops)
            started = time.monotonic()
            log.debug("-> %s:%d [%s] %d B", self.host, self.port, op_names(ops), len(body))
            reply = await self._send(body, self.machine_cred)
            res = _decode_compound(reply, ops)
            log.debug(
                "<- %s:%d %s%s %.1f ms",
                self.host,
                self.port,
                res.status.name,
                _failed_at(res),
                (time.monotonic() - started) * 1000,
            )
            if res.status == nfsstat4.NFS4_OK:
                return res.resarray
            if res.status in RETRY_STATUSES and trio.current_time() < deadline:
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            raise _compound_error(res, ops)

    async def _acquire_slot(self) -> tuple[SlotTable, Slot]:
        """A free slot, waiting as long as it takes; with the table it came from (the
        session's table may be replaced while waiting: a new session)."""
        while True:
            table = self.slots
            slot = table.acquire()
            if slot is not None:
                return table, slot
            await self._slot_wait.park()

    def _release_slot(self, slot: Slot, outcome: SlotOutcome, table: SlotTable) -> None:
        if slot.in_use:
            table.release(slot, outcome)
        self._slot_wait.unpark()

    async def compound(
        self,
        ops: list[nfs4.ArgOp],
        cred: Credential | None = None,
        cachethis: bool | None = None,
        on_orphan: OrphanHook | None = None,
    ) -> CompoundResult:
        """Send ``[SEQUENCE] + ops`` and return the results (RFC 8881 section 2.10.6).

        The one path for every session compound (DESIGN.md invariant 2): it waits for a
        slot, re-sends on its slot after a lost connection, retries DELAY and GRACE with
        bounded exponential backoff (``options.retry_limit`` seconds), rebuilds a lost
        session, and records SEQUENCE status flags.

        Cancelling the caller (a FUSE INTERRUPT) returns at once, but a request already
        handed to the server keeps its slot until it is answered, re-sent after a
        reconnect, or times out: the slot's sequence id stays what the server's reply
        cache expects (section 2.10.6.2).  If such an orphaned request then succeeds,
        ``on_orphan`` gets its results (the caller uses it to undo state nobody will
        use: CLOSE an OPEN, LOCKU a LOCK).

        The caller's task carries the request (sends it, waits for the reply, frees
        the slot); a keeper task starts only for a caller cancelled before its request
        was done, and waits for the reply to the record already sent (a task and two
        scheduler rounds per COMPOUND saved: about a tenth of a small COMPOUND's CPU
        time).  RPCSEC_GSS requests always travel in a keeper task.  A task that no
        interrupt reaches (``UNINTERRUPTED``: read-ahead, write-behind) gets no keeper:
        cancelled after all (at shutdown), it frees the slot with the request's fate
        unknown, as after a timeout (``SlotOutcome.UNKNOWN``).

        Args:
            ops: the operations after SEQUENCE.
            cred: the RPC credential (the FUSE caller's); the machine's by default.
            cachethis: ``sa_cachethis`` (ask the server to cache the whole reply); by
                default true when any op is not idempotent (``needs_reply_cache``).
            on_orphan: called with the results of a request whose caller was cancelled.

        Raises:
            NFS4Error: (a subclass for MOVED, state loss...) the first failing op;
                ``.results`` holds the results up to and including it.
            CallTimeout / TransportError: the server stayed unreachable.
        """
        with self._counted(ops):
            if cred is None or (
                self.mach_enforced and any(int(op.OPNUM) in self.mach_enforced for op in ops)
            ):
                # SP4_MACH_CRED: these operations only with the machine credential.
                cred = self.machine_cred
            return await self._compound(ops, cred, cachethis, on_orphan)

    async def _compound(
        self,
        ops: list[nfs4.ArgOp],
        cred: Credential,
        cachethis: bool | None,
        on_orphan: OrphanHook | None,
    ) -> CompoundResult:
        if cachethis is None:
            cachethis = needs_reply_cache(ops)
        delay = 0.05
        deadline = trio.current_time() + self.options.retry_limit
        while True:
            res = await self._sequenced(ops, cred, cachethis, on_orphan)
            self.stats.compounds += 1
            if res.status == nfsstat4.NFS4_OK:
                return CompoundResult(res.resarray[1:], self.status_flags)
            if res.status == nfsstat4.NFS4ERR_RETRY_UNCACHED_REP and not cachethis:
                # A re-send after a lost connection found no cached reply; every op
                # here is idempotent, so it is sent again as a new request (2.10.6.1.3).
                self.stats.replays += 1
                continue
            if res.status in RETRY_STATUSES and trio.current_time() < deadline:
                self.stats.retries_delay += 1
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            raise _compound_error(res, ops, skip_sequence=True)

    async def _sequenced(
        self,
        ops: list[nfs4.ArgOp],
        cred: Credential,
        cachethis: bool,
        on_orphan: OrphanHook | None,
    ) -> nfs4.COMPOUND4res:
        """One request on one slot, until SEQUENCE itself succeeds or fails for good.

        The caller carries the request itself (``_carry``); if it is cancelled first, a
        keeper task takes the request and its slot over, so that the caller returns at
        once and the slot stays with its request.  An ``UNINTERRUPTED`` caller has no
        keeper: cancelled (at shutdown), it frees the slot with the request's fate
        unknown.  An RPCSEC_GSS request travels in a keeper task from the start
        (``_hand_to_keeper``): its context may have to be created or renewed on the
        way.
        """
        if self._nursery is None:
            raise TransportError("session not started")
        seq_delay = 0.05
        while True:
            try:
                await self._cred_ready(cred)
            except trio.TooSlowError:
                raise CallTimeout(
                    f"server {self.host}:{self.port}: no RPCSEC_GSS context within "
                    f"{self.options.budget:g} s"
                ) from None
            table, slot = await self._acquire_slot()
            try:
                seq = nfs4.SEQUENCE4args(
                    sa_sessionid=self.sessionid,
                    sa_sequenceid=slot.next_seqid,
                    sa_slotid=slot.slotid,
                    sa_highest_slotid=table.sa_highest_slotid(),
                    sa_cachethis=cachethis,
                )
                body = _encode_compound([seq, *ops])
            except BaseException:
                self._release_slot(slot, SlotOutcome.NOT_SEQUENCED, table)
                raise
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "-> %s:%d session=%s slot=%d seq=%d [SEQUENCE %s] %d B",
                    self.host,
                    self.port,
                    self.sessionid[:4].hex(),
                    slot.slotid,
                    seq.sa_sequenceid,
                    op_names(ops),
                    len(body),
                )
            exchange = _Exchange(
                table, slot, body, cred, started=time.monotonic(), sent=[seq, *ops]
            )
            if UNINTERRUPTED.get():
                await self._carry(exchange)
            elif isinstance(cred, GssCredential):
                await self._hand_to_keeper(exchange, on_orphan)
            else:
                await self._carry_interruptible(exchange, on_orphan)
            if exchange.failure is not None:
                raise exchange.failure
            res = exchange.res
            if res is None:
                raise TransportError(f"session with {self.host}:{self.port} closed")
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "<- %s:%d slot=%d %s%s %.1f ms",
                    self.host,
                    self.port,
                    slot.slotid,
                    res.status.name,
                    _failed_at(res),
                    (time.monotonic() - exchange.started) * 1000,
                )
            if not res.resarray or not isinstance(res.resarray[0], nfs4.SEQUENCE4res):
                raise nfs4_error(res.status, 0, "SEQUENCE")
            status = res.resarray[0].status
            if status == nfsstat4.NFS4_OK:
                return res
            if status == nfsstat4.NFS4ERR_SEQ_MISORDERED and exchange.misordered_retry:
                continue
            if status == nfsstat4.NFS4ERR_DELAY:
                # The server is still working on this slot's previous request.
                await trio.sleep(seq_delay)
                seq_delay = min(seq_delay * 2, 1.0)
                continue
            if status in SESSION_LOST and not self._closing:
                await self._rebuild_session(table)
                continue
            if status in CLIENT_LOST and not self._closing:
                await self._rebuild_client(table)
                continue
            raise nfs4_error(status, 0, "SEQUENCE")

    async def _hand_to_keeper(self, exchange: _Exchange, on_orphan: OrphanHook | None) -> None:
        """Start the keeper task of ``exchange`` and wait until it is done; if this
        caller is cancelled first, the request becomes an orphan (``on_orphan``)."""
        assert self._nursery is not None
        self._nursery.start_soon(self._carry, exchange)
        answered = False
        try:
            await exchange.done.wait()
            answered = True
        finally:
            if not answered:
                self._orphan(exchange, on_orphan)

    async def _carry_interruptible(self, exchange: _Exchange, on_orphan: OrphanHook | None) -> None:
        """``_carry`` in the caller's task; if the caller is cancelled before the request
        is done, a keeper task carries it on and the request becomes an orphan
        (``on_orphan``)."""
        try:
            await self._carry(exchange, handoff=True)
        except trio.Cancelled:
            self._orphan(exchange, on_orphan)
            raise

    def _orphan(self, exchange: _Exchange, on_orphan: OrphanHook | None) -> None:
        """The caller of ``exchange`` was cancelled: unless the request is done, it
        becomes an orphan, whose successful result goes to ``on_orphan``."""
        if not exchange.done.is_set():
            exchange.orphan_hook = on_orphan
            exchange.orphaned = True
            self.stats.orphaned += 1

    async def _carry(self, exchange: _Exchange, handoff: bool = False) -> None:
        """Send ``exchange``'s request, read SEQUENCE's result, free the slot: in the
        caller's task or in a keeper task.

        The slot is released with what is known of the request's fate (SEQUENCED when
        the server processed SEQUENCE; NOT_SEQUENCED when it refused it; UNKNOWN when no
        reply came), which decides the slot's next sequence id (section 2.10.6.1).

        With ``handoff`` (an interruptible caller's own task), a cancellation before the
        request is done starts a keeper task that carries it on from where it was
        (waiting for the reply already sent, ``_send``), keeping the slot; without
        (a keeper, an ``UNINTERRUPTED`` caller) it frees the slot, the fate unknown.
        """
        outcome = SlotOutcome.UNKNOWN
        table, slot = exchange.table, exchange.slot
        handed_off = False
        try:
            try:
                reply = await self._send(exchange.body, exchange.cred, exchange, handoff)
            except trio.Cancelled:
                if handoff and self._nursery is not None:
                    try:
                        self._nursery.start_soon(self._carry, exchange)
                        handed_off = True
                    except RuntimeError:
                        # The session is closing: nobody carries it on (fate unknown).
                        kept = exchange.take_kept()
                        if kept is not None:
                            kept.abandon()
                raise
            res = _decode_compound(reply)
            head = res.resarray[0] if res.resarray else None
            if isinstance(head, nfs4.SEQUENCE4res) and head.resok is not None:
                outcome = SlotOutcome.SEQUENCED
                ok = head.resok
                table.update_from_reply(ok.sr_highest_slotid, ok.sr_target_highest_slotid)
                self._note_status_flags(ok.sr_status_flags)
                self._last_renewal = trio.current_time()
            else:
                outcome = SlotOutcome.NOT_SEQUENCED
                if isinstance(head, nfs4.SEQUENCE4res) and (
                    head.status == nfsstat4.NFS4ERR_SEQ_MISORDERED
                ):
                    exchange.misordered_retry = table.misordered(slot)
            # After the slot's fate is known: a reply that does not answer what was
            # sent is an error for the caller, not results with holes.
            check_results(res, exchange.sent)
            exchange.res = res
        except GssError as e:
            # Refused before the record was sent (no ticket, no context): the slot's
            # sequence did not move.  A reply that failed its checksum was processed.
            if not isinstance(e, GssIntegrityError):
                outcome = SlotOutcome.NOT_SEQUENCED
            exchange.failure = e
        except Exception as e:  # NFSClientError, or a bug: the caller raises it
            exchange.failure = e
        finally:
            if not handed_off:
                # Released once: after a rebuild another request may hold this slot.
                self._release_slot(slot, outcome, table)
                exchange.done.set()
        if exchange.orphaned and exchange.orphan_hook is not None:
            done = exchange.res
            if done is not None and done.status == nfsstat4.NFS4_OK:
                try:
                    await exchange.orphan_hook(CompoundResult(done.resarray[1:], self.status_flags))
                except NFSClientError as e:
                    log.info("undoing an interrupted request: %s", e)

    def _note_status_flags(self, flags: int) -> None:
        if flags != self.status_flags:
            log.info("SEQUENCE status flags %#x -> %#x", self.status_flags, flags)
        self.status_flags = flags
        if flags and self.on_status_flags is not None:
            self.on_status_flags(flags)

    # ---------------------------------------------------------------- recovery hooks
    async def _rebuild_session(self, lost: SlotTable) -> None:
        """BADSESSION and friends: a new session on the same client ID (section 2.10.13)."""
        async with self._recover_lock:
            if self.slots is not lost:
                return  # somebody else already rebuilt it
            self.stats.session_rebuilds += 1
            log.warning("session %s lost; creating a new one", self.sessionid.hex())
            try:
                await self.establish_session()
            except NFS4Error as e:
                if e.status in CLIENT_LOST:
                    await self._new_client_id()
                else:
                    raise

    async def _rebuild_client(self, lost: SlotTable) -> None:
        """STALE_CLIENTID / EXPIRED: a new client ID and session (section 8.4.2)."""
        async with self._recover_lock:
            if self.slots is not lost:
                return
            await self._new_client_id()

    async def _new_client_id(self) -> None:
        self.stats.session_rebuilds += 1
        log.warning("client ID %#x lost (server reboot or lease expiry)", self.clientid)
        self.previous_exchange_id = self.exchange_id
        await self.establish_client_id()
        await self.establish_session()
        if self.on_new_client_id is not None:
            await self.on_new_client_id()
        await self.reclaim_complete()

    async def _renew_lease_loop(self) -> None:
        """Renew the lease with a bare SEQUENCE when idle (RFC 8881 section 8.3)."""
        self._last_renewal = trio.current_time()
        while not self._closing:
            due = self._last_renewal + self.lease_time / 2
            await trio.sleep_until(max(due, trio.current_time() + 0.5))
            if self._closing:
                return
            if trio.current_time() >= self._last_renewal + self.lease_time / 2 - 0.5:
                try:
                    await self.compound([])
                    self.stats.renewals += 1
                except NFSClientError as e:
                    log.warning("lease renewal with %s:%d failed: %s", self.host, self.port, e)
                    await trio.sleep(1)

    # ---------------------------------------------------------------- backchannel
    async def _on_backchannel_call(self, call: RpcCall) -> bytes:
        """Answer CB_NULL and CB_COMPOUND arriving on the fore connection (section 20)."""
        verf = NULL_AUTH
        if call.prog != NFS4_CALLBACK_PROGRAM:
            return encode_accepted_reply(call.xid, verf, accept_stat.PROG_UNAVAIL)
        if call.proc == 0:
            return encode_accepted_reply(call.xid, verf, accept_stat.SUCCESS)
        if call.proc != 1:
            return encode_accepted_reply(call.xid, verf, accept_stat.PROC_UNAVAIL)
        self.stats.callbacks += 1
        try:
            dec = Decoder(call.args)
            args = cb.CB_COMPOUND4args.unpack(dec)
        except NFSClientError as e:
            log.warning("undecodable callback: %s", e)
            return encode_accepted_reply(call.xid, verf, accept_stat.GARBAGE_ARGS)
        res = await self._cb_compound(args)
        enc = Encoder()
        res.pack(enc)
        return encode_accepted_reply(call.xid, verf, accept_stat.SUCCESS, enc.getvalue())

    async def _cb_compound(self, args: cb.CB_COMPOUND4args) -> cb.CB_COMPOUND4res:
        """CB_SEQUENCE then the rest, via ``on_callback`` (RFC 8881 sections 20.9, 20.2)."""
        results: list[cb.CbResOp] = []
        if not args.argarray or not isinstance(args.argarray[0], cb.CB_SEQUENCE4args):
            return cb.CB_COMPOUND4res(
                status=nfsstat4.NFS4ERR_OP_NOT_IN_SESSION, tag=args.tag, resarray=[]
            )
        seq = args.argarray[0]
        if seq.csa_sessionid != self.sessionid:
            st = nfsstat4.NFS4ERR_BADSESSION
            results.append(cb.CB_SEQUENCE4res(status=st))
            return cb.CB_COMPOUND4res(status=st, tag=args.tag, resarray=results)
        results.append(
            cb.CB_SEQUENCE4res(
                status=nfsstat4.NFS4_OK,
                resok=cb.CB_SEQUENCE4resok(
                    csr_sessionid=seq.csa_sessionid,
                    csr_sequenceid=seq.csa_sequenceid,
                    csr_slotid=seq.csa_slotid,
                    csr_highest_slotid=seq.csa_highest_slotid,
                    csr_target_highest_slotid=seq.csa_highest_slotid,
                ),
            )
        )
        rest = args.argarray[1:]
        status = nfsstat4.NFS4_OK
        if rest:
            if self.on_callback is not None:
                more = await self.on_callback(
                    cb.CB_COMPOUND4args(
                        tag=args.tag,
                        minorversion=args.minorversion,
                        callback_ident=args.callback_ident,
                        argarray=rest,
                    )
                )
            else:
                more = [default_cb_result(op) for op in rest]
            results.extend(more)
            for r in more:
                if r.status != nfsstat4.NFS4_OK:
                    status = r.status
                    break
        return cb.CB_COMPOUND4res(status=status, tag=args.tag, resarray=results)

    def statistics(self) -> SessionStatistics:
        return self.stats


_T = TypeVar("_T")


def default_cb_result(op: cb.CbArgOp) -> cb.CbResOp:
    """The answer to a callback when no handler is installed (RFC 8881 section 20).

    fusenfs declines delegations (OPEN4_SHARE_ACCESS_WANT_NO_DELEG) and returns any it
    gets at once, so a CB_RECALL finds nothing to recall (NFS4_OK: it is being returned)
    and a CB_GETATTR has no delegated file (NFS4ERR_BADHANDLE).
    """
    if isinstance(op, cb.CB_RECALL4args):
        return cb.CB_RECALL4res(status=nfsstat4.NFS4_OK)
    if isinstance(op, cb.CB_GETATTR4args):
        return cb.CB_GETATTR4res(status=nfsstat4.NFS4ERR_BADHANDLE)
    result_class = cb.CB_RES_BY_OPNUM.get(op.OPNUM, cb.CB_ILLEGAL4res)
    if issubclass(result_class, cb.CbStatusOnly4res):
        return result_class(status=nfsstat4.NFS4ERR_NOTSUPP)
    return cb.CB_ILLEGAL4res(status=nfsstat4.NFS4ERR_OP_ILLEGAL)


async def _close_quietly(transport: Transport) -> None:
    """Close a connection within a second, even from a cancelled task."""
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await transport.aclose()


def _ok(res: nfs4.ResOp, resok_type: type[_T]) -> _T:
    resok = getattr(res, "resok", None)
    if not isinstance(resok, resok_type):
        raise NFSClientError(f"{type(res).__name__}: OK without a result body")
    return resok


def _encode_compound(ops: Sequence[nfs4.ArgOp]) -> bytes | Gathered:
    """COMPOUND4args of ``ops``; a WRITE's data is kept apart, not copied (``Gathered``)."""
    enc = Encoder()
    nfs4.COMPOUND4args(tag=b"", minorversion=1, argarray=list(ops)).pack(enc)
    return enc.gathered()


def _decode_compound(
    reply: bytes | memoryview, sent: Sequence[nfs4.ArgOp] | None = None
) -> nfs4.COMPOUND4res:
    """Decode a COMPOUND4res; with ``sent``, also ``check_results``.

    Raises:
        XdrError: malformed, or not an answer to ``sent``.
    """
    dec = Decoder(reply)
    res = nfs4.COMPOUND4res.unpack(dec)
    dec.done_or_raise("COMPOUND4res")
    if sent is not None:
        check_results(res, sent)
    return res


def check_results(res: nfs4.COMPOUND4res, sent: Sequence[nfs4.ArgOp]) -> None:
    """Raise unless ``res`` answers the operations ``sent`` (RFC 8881 section 16.2.3).

    The results are those of the operations in order, stopping at the first that
    failed: NFS4_OK with fewer results than operations, more results than operations,
    or a result for another operation (other than ILLEGAL for the failing last one)
    is a broken reply, refused here rather than met as a missing result later.

    Raises:
        XdrError: naming the mismatch.
    """
    got, want = len(res.resarray), len(sent)
    if got > want or (res.status == nfsstat4.NFS4_OK and got != want):
        raise XdrError(
            "COMPOUND4res", 0, f"{res.status.name} with {got} results for {want} operations"
        )
    for i, (op, r) in enumerate(zip(sent, res.resarray, strict=False)):
        illegal = r.OPNUM == nfs_opnum4.OP_ILLEGAL and i == got - 1 and res.status
        if r.OPNUM != op.OPNUM and not illegal:
            raise XdrError(
                "COMPOUND4res", 0, f"result {i} is for {r.OPNUM.name}, not {op.OPNUM.name}"
            )


def _failed_at(res: nfs4.COMPOUND4res) -> str:
    if res.status == nfsstat4.NFS4_OK or not res.resarray:
        return ""
    last = res.resarray[-1]
    return f" at op {len(res.resarray) - 1}/{len(res.resarray)} ({op_names([last])})"


def _compound_error(
    res: nfs4.COMPOUND4res, ops: Sequence[nfs4.ArgOp], skip_sequence: bool = False
) -> NFS4Error:
    """The exception for a failed COMPOUND: the last result is the failing op."""
    index = len(res.resarray) - 1
    name = op_names([res.resarray[-1]]) if res.resarray else ""
    if skip_sequence:
        index -= 1
    err = nfs4_error(res.status, index, name)
    err.results = res.resarray[1:] if skip_sequence else res.resarray
    return err


__all__ = [
    "NFS4_CALLBACK_PROGRAM",
    "UNINTERRUPTED",
    "CompoundResult",
    "ServerSession",
    "SessionOptions",
    "host_co_ownerid",
    "nfs_opnum4",
]

"""Client IDs, sessions, slots with their reply cache, and grace periods (sans-I/O).

* :class:`ClientTable` decides EXCHANGE_ID by the cases of RFC 8881 section 18.35.4
  (new owner, non-update on a confirmed record, client collision, client restart,
  update of a confirmed record) and CREATE_SESSION's sequencing of section 18.36.4
  (``csa_sequence`` against the client record's slot, replay of the cached reply,
  unconfirmed -> confirmed).
* :class:`Session` holds the fore-channel slot table; :func:`check_sequence` is the
  SEQUENCE slot decision of RFC 8881 section 2.10.6.1 (new request, retry answered
  from the reply cache, retry of an uncached reply, misordered, bad slot), with the
  relaxed sequencing of a transferred session's slots that seed 001 section 4.2.7
  describes.
* :class:`GracePeriod` is a grace period: global after a reboot (RFC 8881 section
  8.4.2.1) or per file system after a migration without full state transfer (seed 001
  sections 4.2.1 and 4.2.3), with the reclaim-complete bookkeeping of section 18.51 and
  the locks known to be lost whose reclaim must be refused.

Time is a float in seconds from the caller's clock (``trio.current_time()`` in the
server), so tests may drive these objects without sockets.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Protocol

from session.rpc import Credential
from session.xdr.const import (
    EXCHGID4_FLAG_UPD_CONFIRMED_REC_A,
    nfsstat4,
)
from session.xdr.nfs4 import (
    callback_sec_parms4,
    channel_attrs4,
    nfs_impl_id4,
)

Principal = tuple[str, int | str]
"""Who sent a request: ("sys", uid) for AUTH_SYS, ("none", 0) for AUTH_NONE,
("gss", "alice@REALM") for RPCSEC_GSS (the krb5 mechanism, whatever the service)."""


class BackChannel(Protocol):
    """A connection the server can send callbacks on (``ServerConnection``)."""

    @property
    def closed(self) -> bool: ...

    def callback(
        self, prog: int, vers: int, proc: int, args: bytes | memoryview, cred: Credential
    ) -> Awaitable[bytes]: ...


# -- slots and the reply cache, RFC 8881 section 2.10.6 --------------------------------
@dataclass(slots=True)
class Slot:
    """One fore-channel slot of a session (RFC 8881 section 2.10.6.1).

    Attributes:
        seqid: sequence id of the last request executed on it (0: none yet).
        reply: the whole encoded COMPOUND4res of that request, if it asked for caching
            (``sa_cachethis``); a retry gets exactly these bytes.
        status: the COMPOUND status of that request.
        sequence_only: the encoded SEQUENCE4res of that request, for answering a retry
            of an uncached request with NFS4ERR_RETRY_UNCACHED_REP.
        args_digest: SHA-1 of the request's arguments (detects a false retry).
        relaxed: the session was transferred by migration and the client has not yet
            used this slot on this server: sequencing is not enforced (seed 4.2.7).
        in_progress: the request on it is still executing (waiting for a CB_GETATTR
            answer): a retry gets NFS4ERR_DELAY (RFC 8881 section 2.10.6.2).  Not
            copied by a transfer.
    """

    seqid: int = 0
    reply: bytes | None = None
    status: nfsstat4 = nfsstat4.NFS4_OK
    sequence_only: bytes | None = None
    args_digest: bytes = b""
    relaxed: bool = False
    in_progress: bool = False

    def copy(self) -> Slot:
        return Slot(
            self.seqid,
            self.reply,
            self.status,
            self.sequence_only,
            self.args_digest,
            self.relaxed,
        )


class SeqDecision(Enum):
    """What SEQUENCE does with a request on a slot."""

    NEW = "new request"
    REPLAY = "retry: answered from the reply cache"
    REPLAY_UNCACHED = "retry of an uncached reply: NFS4ERR_RETRY_UNCACHED_REP"
    FALSE_RETRY = "same slot and seqid, different request: NFS4ERR_SEQ_FALSE_RETRY"
    MISORDERED = "neither the last seqid nor the next: NFS4ERR_SEQ_MISORDERED"


def args_digest(args: bytes) -> bytes:
    """A digest of a request's XDR arguments (to tell a retry from a false retry)."""
    return hashlib.sha1(args, usedforsecurity=False).digest()


def check_sequence(slot: Slot, sa_sequenceid: int, digest: bytes) -> SeqDecision:
    """The slot decision of RFC 8881 section 2.10.6.1 for one SEQUENCE.

    A slot of a transferred session in ``relaxed`` mode (seed 001 section 4.2.7) takes
    any sequence id as a new request, except a retry of a request the source server
    executed and cached with a reply other than NFS4ERR_DELAY / NFS4ERR_MOVED, which
    is replayed (it may have been non-idempotent).
    """
    last = slot.seqid
    if slot.relaxed:
        if (
            sa_sequenceid == last
            and slot.reply is not None
            and slot.args_digest == digest
            and slot.status not in (nfsstat4.NFS4ERR_DELAY, nfsstat4.NFS4ERR_MOVED)
        ):
            return SeqDecision.REPLAY
        return SeqDecision.NEW
    if sa_sequenceid == last and last != 0:
        if slot.args_digest and slot.args_digest != digest:
            return SeqDecision.FALSE_RETRY
        if slot.reply is not None:
            return SeqDecision.REPLAY
        return SeqDecision.REPLAY_UNCACHED
    if sa_sequenceid == (last + 1) & 0xFFFFFFFF:
        return SeqDecision.NEW
    return SeqDecision.MISORDERED


# -- sessions, RFC 8881 sections 2.10 and 18.36 ----------------------------------------
@dataclass(slots=True, eq=False)
class Session:
    """One session of a client ID on one server node (same so_minor_id).

    Attributes:
        sessionid: 16 bytes, unique in the cluster (kept when transferred).
        clientid: the owning client ID.
        fore / back: negotiated channel attributes.
        flags: csr_flags (CREATE_SESSION4_FLAG_*).
        cb_program / cb_sec_parms: where and how to send callbacks (18.36, 18.33).
        slots: the fore-channel slot table (``fore.ca_maxrequests`` slots).
        fore_conns: connections bound to the fore channel (identities).
        back_conns: connections bound to the back channel, newest last.
        cb_seqid: the last back-channel sequence id used on slot 0.
        transferred_from: name of the instance it came from by migration, if any.
    """

    sessionid: bytes
    clientid: int
    fore: channel_attrs4
    back: channel_attrs4
    flags: int
    cb_program: int
    cb_sec_parms: list[callback_sec_parms4]
    slots: list[Slot]
    fore_conns: set[int] = field(default_factory=set)
    back_conns: list[BackChannel] = field(default_factory=list)
    cb_seqid: int = 0
    transferred_from: str | None = None

    def backchannel(self) -> BackChannel | None:
        """The newest live back-channel connection, if any."""
        self.back_conns = [c for c in self.back_conns if not c.closed]
        return self.back_conns[-1] if self.back_conns else None

    def bind_back(self, conn: BackChannel) -> None:
        if conn not in self.back_conns:
            self.back_conns.append(conn)

    def copy_for_transfer(self, source: str) -> Session:
        """The session as the destination of a migration receives it (seed 4.2.7):
        same id, slots and cached replies, every slot relaxed, no connection."""
        slots = [s.copy() for s in self.slots]
        for s in slots:
            s.relaxed = True
        return Session(
            self.sessionid,
            self.clientid,
            self.fore,
            self.back,
            self.flags,
            self.cb_program,
            list(self.cb_sec_parms),
            slots,
            cb_seqid=self.cb_seqid,
            transferred_from=source,
        )


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """What the server offers on a channel: sizes in bytes, operations and slots counts."""

    max_request: int = 1024 * 1024 + 64 * 1024
    max_response: int = 1024 * 1024 + 64 * 1024
    max_response_cached: int = 64 * 1024
    max_operations: int = 64
    max_requests: int = 64
    min_size: int = 512


FORE_LIMITS: Final = ChannelLimits()
BACK_LIMITS: Final = ChannelLimits(
    max_request=64 * 1024,
    max_response=64 * 1024,
    max_response_cached=0,
    max_operations=8,
    max_requests=4,
)


def negotiate_channel(req: channel_attrs4, limits: ChannelLimits) -> channel_attrs4 | nfsstat4:
    """The channel attributes to grant for a request (RFC 8881 section 18.36.3), or the
    error: NFS4ERR_TOOSMALL for sizes the server cannot work with, NFS4ERR_INVAL for
    zero slots or operations."""
    if req.ca_maxrequests == 0 or req.ca_maxoperations == 0:
        return nfsstat4.NFS4ERR_INVAL
    if req.ca_maxrequestsize < limits.min_size or req.ca_maxresponsesize < limits.min_size:
        return nfsstat4.NFS4ERR_TOOSMALL
    return channel_attrs4(
        ca_headerpadsize=0,
        ca_maxrequestsize=min(req.ca_maxrequestsize, limits.max_request),
        ca_maxresponsesize=min(req.ca_maxresponsesize, limits.max_response),
        ca_maxresponsesize_cached=min(req.ca_maxresponsesize_cached, limits.max_response_cached),
        ca_maxoperations=min(req.ca_maxoperations, limits.max_operations),
        ca_maxrequests=min(req.ca_maxrequests, limits.max_requests),
        ca_rdma_ird=[],
    )


# -- client records, RFC 8881 sections 2.4 and 18.35 -----------------------------------
@dataclass(slots=True, eq=False)
class ClientRecord:
    """A client ID (RFC 8881 section 2.4).

    Attributes:
        clientid: the 64-bit client ID.
        co_ownerid / co_verifier: the client owner it was made for.
        principal: who made it (compared by EXCHANGE_ID and CREATE_SESSION).
        confirmed: CREATE_SESSION confirmed it.
        cs_seqid: sequence id of the last CREATE_SESSION executed (the client record's
            slot, section 18.36.4); the next must be ``cs_seqid + 1``.
        cs_reply: the encoded CREATE_SESSION4res of that one, for a retry.
        last_renewal: lease-clock time of the last renewal (section 8.3).
        sessions: its sessions on this instance, by id.
        reclaim_complete: the global RECLAIM_COMPLETE was done (section 18.51).
        reclaim_complete_fs: file systems it sent RECLAIM_COMPLETE(rca_one_fs) for since
            they arrived here.
        lease_moved: file systems migrated away while it held state on them, whose
            location attribute it has not fetched yet (SEQ4_STATUS_LEASE_MOVED).
        origin: how the record came to be (for the event log and ``status``).
        mach_cred: SP4_MACH_CRED (RFC 8881 section 2.10.8.3): the principal whose
            EXCHANGE_ID created the record (the machine credential); None: SP4_NONE.
        mach_enforce / mach_allow: the operations answered in spo_must_enforce (only
            the machine credential may send them for this client ID: else
            NFS4ERR_WRONG_CRED) and spo_must_allow (section 18.35.3).
    """

    clientid: int
    co_ownerid: bytes
    co_verifier: bytes
    principal: Principal
    confirmed: bool
    cs_seqid: int
    last_renewal: float
    eia_flags: int = 0
    impl_id: list[nfs_impl_id4] = field(default_factory=list)
    cs_reply: bytes | None = None
    sessions: dict[bytes, Session] = field(default_factory=dict)
    reclaim_complete: bool = False
    reclaim_complete_fs: set[str] = field(default_factory=set)
    lease_moved: set[str] = field(default_factory=set)
    origin: str = "EXCHANGE_ID"
    mach_cred: Principal | None = None
    mach_enforce: frozenset[int] = frozenset()
    mach_allow: frozenset[int] = frozenset()

    def wrong_cred(self, opnum: int, principal: Principal) -> bool:
        """True if ``opnum`` from ``principal`` breaks this record's SP4_MACH_CRED."""
        return (
            self.mach_cred is not None
            and opnum in self.mach_enforce
            and principal != self.mach_cred
        )

    @property
    def eir_sequenceid(self) -> int:
        """What EXCHANGE_ID returns: the csa_sequence the next CREATE_SESSION must use."""
        return (self.cs_seqid + 1) & 0xFFFFFFFF

    def owner_text(self) -> str:
        """The client owner for a person: printable text or hex."""
        text = self.co_ownerid.decode("utf-8", "replace")
        return text if text.isprintable() else "0x" + self.co_ownerid.hex()


@dataclass(slots=True)
class ExchangeIdOutcome:
    """The EXCHANGE_ID decision: ``status``, the record to return, which RFC case."""

    status: nfsstat4
    record: ClientRecord | None
    case: str
    replaced: ClientRecord | None = None
    #: Case 3 with no unexpired state: the confirmed record of another principal,
    #: already removed from the table; the server deletes its sessions and state.
    deleted: ClientRecord | None = None


class ClientTable:
    """The client records of one server instance.

    Args:
        id_prefix: the top 32 bits of every client ID made here (instance and boot), so
            client IDs are unique in the cluster and stale ones are recognised.
    """

    def __init__(self, id_prefix: int) -> None:
        self.id_prefix = id_prefix & 0xFFFFFFFF
        self.by_id: dict[int, ClientRecord] = {}
        self._counter = itertools.count(1)

    def __iter__(self) -> Iterator[ClientRecord]:
        return iter(list(self.by_id.values()))

    def new_clientid(self) -> int:
        return (self.id_prefix << 32) | next(self._counter)

    def get(self, clientid: int) -> ClientRecord | None:
        return self.by_id.get(clientid)

    def confirmed_for(self, co_ownerid: bytes) -> ClientRecord | None:
        for rec in self.by_id.values():
            if rec.confirmed and rec.co_ownerid == co_ownerid:
                return rec
        return None

    def unconfirmed_for(self, co_ownerid: bytes) -> ClientRecord | None:
        for rec in self.by_id.values():
            if not rec.confirmed and rec.co_ownerid == co_ownerid:
                return rec
        return None

    def add(self, record: ClientRecord) -> None:
        self.by_id[record.clientid] = record

    def remove(self, record: ClientRecord) -> None:
        self.by_id.pop(record.clientid, None)

    def exchange_id(
        self,
        co_ownerid: bytes,
        co_verifier: bytes,
        flags: int,
        principal: Principal,
        now: float,
        *,
        may_replace: bool,
    ) -> ExchangeIdOutcome:
        """Decide an EXCHANGE_ID by the cases of RFC 8881 section 18.35.4.

        Args:
            may_replace: the confirmed record of this owner has no unexpired lease with
                state (it holds no state, or its lease expired), so a different principal
                may take the owner over: the old client ID and its state are deleted and
                the request is treated as a new owner (case 3, second half).
        """
        conf = self.confirmed_for(co_ownerid)
        unconf = self.unconfirmed_for(co_ownerid)
        if flags & EXCHGID4_FLAG_UPD_CONFIRMED_REC_A:
            if conf is None:
                return ExchangeIdOutcome(
                    nfsstat4.NFS4ERR_NOENT, None, "update, no confirmed record"
                )
            if conf.principal != principal:
                return ExchangeIdOutcome(nfsstat4.NFS4ERR_PERM, None, "update, wrong principal")
            if conf.co_verifier != co_verifier:
                return ExchangeIdOutcome(nfsstat4.NFS4ERR_NOT_SAME, None, "update, wrong verifier")
            conf.eia_flags = flags
            return ExchangeIdOutcome(nfsstat4.NFS4_OK, conf, "case 6: update")
        deleted: ClientRecord | None = None
        if conf is not None:
            if conf.principal != principal and not may_replace:
                return ExchangeIdOutcome(
                    nfsstat4.NFS4ERR_CLID_INUSE,
                    None,
                    "case 3: client collision, the client ID has an unexpired lease with state",
                )
            if conf.principal == principal and conf.co_verifier == co_verifier:
                return ExchangeIdOutcome(
                    nfsstat4.NFS4_OK, conf, "case 2: non-update on existing client ID"
                )
            if conf.principal == principal:
                case = "case 4: client restart"
            else:
                case = "case 3: client collision, no unexpired state: old client ID deleted"
                self.remove(conf)
                deleted = conf
        else:
            case = "case 5: client restart, unconfirmed" if unconf else "case 1: new owner"
        if unconf is not None:
            self.remove(unconf)
        record = ClientRecord(
            clientid=self.new_clientid(),
            co_ownerid=co_ownerid,
            co_verifier=co_verifier,
            principal=principal,
            confirmed=False,
            cs_seqid=0,
            last_renewal=now,
            eia_flags=flags,
        )
        self.add(record)
        return ExchangeIdOutcome(nfsstat4.NFS4_OK, record, case, replaced=unconf, deleted=deleted)


def sessionid_for(clientid: int, serial: int) -> bytes:
    """A 16-byte session id: the client ID and a process-wide serial number."""
    return struct.pack(">QQ", clientid, serial)


_session_serial = itertools.count(1)


def next_session_serial() -> int:
    return next(_session_serial)


# -- grace periods, RFC 8881 section 8.4.2 and seed 001 sections 4.2.1 / 4.2.3 ---------
@dataclass(slots=True)
class LostState:
    """A lock the client held that is known to be lost: its reclaim must be refused.

    ``kind`` is "open", "lock" or "delegation"; ``start``/``end`` bound a lock's range.
    """

    co_ownerid: bytes
    owner: bytes
    fs: str
    fileid: int
    kind: str
    start: int = 0
    end: int = 0

    def matches_open(self, co_ownerid: bytes, owner: bytes, fs: str, fileid: int) -> bool:
        return (
            self.kind == "open"
            and self.co_ownerid == co_ownerid
            and self.owner == owner
            and (self.fs, self.fileid) == (fs, fileid)
        )

    def matches_lock(
        self, co_ownerid: bytes, owner: bytes, fs: str, fileid: int, start: int, end: int
    ) -> bool:
        return (
            self.kind == "lock"
            and self.co_ownerid == co_ownerid
            and self.owner == owner
            and (self.fs, self.fileid) == (fs, fileid)
            and self.start < end
            and start < self.end
        )


@dataclass(slots=True)
class GracePeriod:
    """A grace period during which only reclaims may obtain locks.

    Attributes:
        fs: None for the global grace period after a reboot (RFC 8881 section 8.4.2.1);
            else the file system with a per-FS grace period after migration.
        ends_at: lease-clock time it ends at the latest.
        reclaimers: client owner -> RECLAIM_COMPLETE done, for the clients allowed to
            reclaim (those that held state before the reboot or on the source server).
        lost: locks known to be lost, whose reclaim is refused (seed 4.2.1).
        lift_early: end as soon as every reclaimer has sent RECLAIM_COMPLETE.
    """

    fs: str | None
    ends_at: float
    reclaimers: dict[bytes, bool]
    lost: list[LostState] = field(default_factory=list)
    lift_early: bool = True

    def over(self, now: float) -> bool:
        if now >= self.ends_at:
            return True
        return self.lift_early and all(self.reclaimers.values())

    def may_reclaim(self, co_ownerid: bytes, now: float) -> bool:
        """The client is a reclaimer that has not finished, in an active period."""
        return not self.over(now) and self.reclaimers.get(co_ownerid) is False

    def is_lost_open(self, co_ownerid: bytes, owner: bytes, fs: str, fileid: int) -> bool:
        return any(lost.matches_open(co_ownerid, owner, fs, fileid) for lost in self.lost)

    def is_lost_lock(
        self, co_ownerid: bytes, owner: bytes, fs: str, fileid: int, start: int, end: int
    ) -> bool:
        return any(
            lost.matches_lock(co_ownerid, owner, fs, fileid, start, end) for lost in self.lost
        )

    def describe(self) -> str:
        scope = "global" if self.fs is None else f"file system {self.fs}"
        done = sum(1 for v in self.reclaimers.values() if v)
        return f"{scope} grace ({done}/{len(self.reclaimers)} reclaimers complete)"

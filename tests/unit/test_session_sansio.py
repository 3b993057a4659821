"""The session engine against a scripted server, over memory streams (no sockets).

``FakeServer`` answers EXCHANGE_ID, CREATE_SESSION, SEQUENCE (slots, seqids and a reply
cache, RFC 8881 section 2.10.6) and the few operations the session itself sends, using
the project's XDR classes.  Each test scripts what goes wrong: a lost request, a
misordered seqid, a lowered target slot, a forgotten session or client ID, DELAY, status
flags, a callback.  ``Transport.connect`` is replaced so that every "connection" is a
``trio.testing.memory_stream_pair`` with a ``ServerConnection`` on the far end, so the
autojump ``MockClock`` drives timeouts, backoff and lease renewal without real waits.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from recovery.manager import StateManager
from session.client import NFSClient
from session.errors import XdrError
from session.rpc import (
    NULL_AUTH,
    AuthNone,
    ProgUnavail,
    RpcCall,
    accept_stat,
    arg_bytes,
    encode_accepted_reply,
)
from session.session import (
    NFS4_CALLBACK_PROGRAM,
    UNINTERRUPTED,
    CompoundResult,
    ServerSession,
    SessionOptions,
    _compound_error,
    _decode_compound,
    _encode_compound,
    default_cb_result,
    host_co_ownerid,
    needs_reply_cache,
    op_names,
)
from session.state import OpenState
from session.status import NFS4Error, NFS4ErrRetryable
from session.transport import ServerConnection, Transport
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder, encode
from session.xdr.const import (
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_LEASE_MOVED,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
    channel_dir_from_client4,
    channel_dir_from_server4,
    nfs_lock_type4,
    nfs_opnum4,
    nfsstat4,
    open_delegation_type4,
    stable_how4,
    state_protect_how4,
)
from session.xdr.fattr import NFSAttrs, encode_fattr4

OK = nfsstat4.NFS4_OK
TIMEOUT = 600  # mock seconds
FH = b"\x01" * 8
STATEID = nfs4.stateid4(1, b"S" * 12)


# =============================================================== the scripted server
@dataclass
class FakeSlot:
    seqid: int = 0
    reply: nfs4.COMPOUND4res | None = None
    cached: bool = False


@dataclass
class Seen:
    """One COMPOUND the server received: when (mock seconds), what, on which connection."""

    at: float
    args: nfs4.COMPOUND4args
    conn: int

    @property
    def names(self) -> list[str]:
        return [op.OPNUM.name.removeprefix("OP_") for op in self.args.argarray]

    @property
    def sequence(self) -> nfs4.SEQUENCE4args | None:
        first = self.args.argarray[0] if self.args.argarray else None
        return first if isinstance(first, nfs4.SEQUENCE4args) else None


Action = Callable[["FakeServer", nfs4.COMPOUND4args], Awaitable[str | None]]


def drop_first(op_type: type[nfs4.ArgOp]) -> Action:
    """An action that drops (answers not) the first COMPOUND holding an ``op_type``, then
    removes itself: the server answers everything after it."""

    async def action(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        if any(isinstance(op, op_type) for op in args.argarray):
            srv.action = None
            return "drop"
        return None

    return action


@dataclass
class FakeServer:
    """A minimal NFSv4.1 server: one client owner at a time, slots with a reply cache.

    Scripting knobs:
        max_slots: the ``ca_maxrequests`` granted (a count).
        lease_time: seconds, answered to GETATTR(lease_time).
        latency: mock seconds before each COMPOUND is answered.
        sequence_errors: statuses for the next SEQUENCEs, before any slot check.
        op_errors: per operation, statuses for its next executions.
        target_highest_slotid: ``sr_target_highest_slotid`` to answer (None: all).
        status_flags: ``sr_status_flags`` to answer.
        action: called first with every COMPOUND; may return "drop" (no reply),
            "cut" (close the connection without executing) or "cut-after" (execute,
            then close the connection instead of replying).
    """

    max_slots: int = 8
    lease_time: int = 3600
    latency: float = 0.0
    sequence_errors: deque[nfsstat4] = field(default_factory=deque)
    op_errors: dict[nfs_opnum4, deque[nfsstat4]] = field(default_factory=dict)
    target_highest_slotid: int | None = None
    status_flags: int = 0
    action: Action | None = None
    # -- state -------------------------------------------------------------------------
    clientids: dict[bytes, int] = field(default_factory=dict)
    confirmed: set[int] = field(default_factory=set)
    sessions: dict[bytes, list[FakeSlot]] = field(default_factory=dict)
    next_id: int = 1
    seen: list[Seen] = field(default_factory=list)
    executed: Counter[str] = field(default_factory=Counter)
    connections: list[ServerConnection] = field(default_factory=list)
    #: ``other`` of the stateids READ accepts; others get NFS4ERR_STALE_STATEID.
    valid_state: set[bytes] = field(default_factory=set)
    #: LOCK answers NFS4ERR_DENIED while this is true.
    lock_denied: bool = False

    # -- the wire ----------------------------------------------------------------------
    async def handle(self, conn: ServerConnection, call: RpcCall) -> bytes | None:
        if call.proc == 0:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS)
        args = nfs4.COMPOUND4args.unpack(Decoder(call.args))
        self.seen.append(Seen(trio.current_time(), args, self.connections.index(conn)))
        what = await self.action(self, args) if self.action is not None else None
        if what == "drop":
            return None
        if what == "cut":
            await conn.aclose()
            return None
        if self.latency:
            await trio.sleep(self.latency)
        res = self.compound(args)
        if what == "cut-after":
            await conn.aclose()
            return None
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, encode(res))

    def reboot(self) -> None:
        """Forget every client ID and session, as a restarted server does."""
        self.clientids.clear()
        self.confirmed.clear()
        self.sessions.clear()

    @property
    def session_slots(self) -> list[FakeSlot]:
        (slots,) = self.sessions.values()
        return slots

    def names(self) -> list[list[str]]:
        return [s.names for s in self.seen]

    def sequences(self) -> list[nfs4.SEQUENCE4args]:
        return [s.sequence for s in self.seen if s.sequence is not None]

    # -- COMPOUND ----------------------------------------------------------------------
    def compound(self, args: nfs4.COMPOUND4args) -> nfs4.COMPOUND4res:
        ops = args.argarray
        results: list[nfs4.ResOp] = []
        slot: FakeSlot | None = None
        seq = ops[0] if ops and isinstance(ops[0], nfs4.SEQUENCE4args) else None
        if seq is not None:
            status, slot = self._sequence(seq)
            if status == "replay":
                assert slot is not None and slot.reply is not None
                if slot.cached:
                    return slot.reply
                # Not cached (sa_cachethis was false): as Ganesha does, SEQUENCE succeeds
                # and the next operation says NFS4ERR_RETRY_UNCACHED_REP.
                retry = nfsstat4.NFS4ERR_RETRY_UNCACHED_REP
                head = slot.reply.resarray[:1]
                res_cls = nfs4.RES_BY_OPNUM[ops[1].OPNUM] if len(ops) > 1 else None
                tail = [_status_res(res_cls, retry)] if res_cls is not None else []
                return nfs4.COMPOUND4res(retry if tail else OK, args.tag, [*head, *tail])
            assert isinstance(status, nfsstat4)
            if status != OK:
                return nfs4.COMPOUND4res(status, args.tag, [nfs4.SEQUENCE4res(status)])
            assert slot is not None
            slots = self.sessions[seq.sa_sessionid]
            highest = len(slots) - 1
            target = highest if self.target_highest_slotid is None else self.target_highest_slotid
            results.append(
                nfs4.SEQUENCE4res(
                    OK,
                    nfs4.SEQUENCE4resok(
                        sr_sessionid=seq.sa_sessionid,
                        sr_sequenceid=seq.sa_sequenceid,
                        sr_slotid=seq.sa_slotid,
                        sr_highest_slotid=highest,
                        sr_target_highest_slotid=target,
                        sr_status_flags=self.status_flags,
                    ),
                )
            )
            ops = ops[1:]
        status = OK
        for op in ops:
            res = self._op(op)
            results.append(res)
            if res.status != OK:
                status = res.status
                break
        reply = nfs4.COMPOUND4res(status, args.tag, results)
        if seq is not None and slot is not None:
            slot.seqid = seq.sa_sequenceid
            slot.reply = reply
            slot.cached = seq.sa_cachethis
        return reply

    def _sequence(self, seq: nfs4.SEQUENCE4args) -> tuple[nfsstat4 | str, FakeSlot | None]:
        if self.sequence_errors:
            return self.sequence_errors.popleft(), None
        slots = self.sessions.get(seq.sa_sessionid)
        if slots is None:
            return nfsstat4.NFS4ERR_BADSESSION, None
        if seq.sa_slotid >= len(slots):
            return nfsstat4.NFS4ERR_BADSLOT, None
        slot = slots[seq.sa_slotid]
        if seq.sa_sequenceid == (slot.seqid + 1) & 0xFFFFFFFF:
            return OK, slot
        if seq.sa_sequenceid == slot.seqid and slot.reply is not None:
            return "replay", slot
        return nfsstat4.NFS4ERR_SEQ_MISORDERED, None

    def _op(self, op: nfs4.ArgOp) -> nfs4.ResOp:
        name = op.OPNUM.name.removeprefix("OP_")
        errors = self.op_errors.get(op.OPNUM)
        if errors:
            return _status_res(nfs4.RES_BY_OPNUM[op.OPNUM], errors.popleft())
        self.executed[name] += 1
        if isinstance(op, nfs4.EXCHANGE_ID4args):
            owner = op.eia_clientowner.co_ownerid
            if owner not in self.clientids:
                self.clientids[owner] = 0x1000 + self.next_id
                self.next_id += 1
            return nfs4.EXCHANGE_ID4res(
                OK,
                nfs4.EXCHANGE_ID4resok(
                    eir_clientid=self.clientids[owner],
                    eir_sequenceid=1,
                    eir_flags=EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_SUPP_MOVED_MIGR,
                    eir_state_protect=nfs4.state_protect4_r(spr_how=state_protect_how4.SP4_NONE),
                    eir_server_owner=nfs4.server_owner4(so_minor_id=0, so_major_id=b"fake"),
                    eir_server_scope=b"fake",
                    eir_server_impl_id=[],
                ),
            )
        if isinstance(op, nfs4.CREATE_SESSION4args):
            if op.csa_clientid not in self.clientids.values():
                return nfs4.CREATE_SESSION4res(nfsstat4.NFS4ERR_STALE_CLIENTID)
            self.confirmed.add(op.csa_clientid)
            sessionid = self.next_id.to_bytes(16, "big")
            self.next_id += 1
            fore = op.csa_fore_chan_attrs
            granted = min(fore.ca_maxrequests, self.max_slots)
            self.sessions[sessionid] = [FakeSlot() for _ in range(granted)]
            fore_reply = nfs4.channel_attrs4(
                ca_headerpadsize=0,
                ca_maxrequestsize=fore.ca_maxrequestsize,
                ca_maxresponsesize=fore.ca_maxresponsesize,
                ca_maxresponsesize_cached=fore.ca_maxresponsesize_cached,
                ca_maxoperations=fore.ca_maxoperations,
                ca_maxrequests=granted,
                ca_rdma_ird=[],
            )
            return nfs4.CREATE_SESSION4res(
                OK,
                nfs4.CREATE_SESSION4resok(
                    csr_sessionid=sessionid,
                    csr_sequence=op.csa_sequence,
                    csr_flags=op.csa_flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
                    csr_fore_chan_attrs=fore_reply,
                    csr_back_chan_attrs=op.csa_back_chan_attrs,
                ),
            )
        if isinstance(op, nfs4.BIND_CONN_TO_SESSION4args):
            if op.bctsa_sessid not in self.sessions:
                return nfs4.BIND_CONN_TO_SESSION4res(nfsstat4.NFS4ERR_BADSESSION)
            return nfs4.BIND_CONN_TO_SESSION4res(
                OK,
                nfs4.BIND_CONN_TO_SESSION4resok(
                    bctsr_sessid=op.bctsa_sessid,
                    bctsr_dir=channel_dir_from_server4.CDFS4_BOTH,
                    bctsr_use_conn_in_rdma_mode=False,
                ),
            )
        if isinstance(op, nfs4.GETATTR4args):
            attrs = encode_fattr4(NFSAttrs(lease_time=self.lease_time))
            return nfs4.GETATTR4res(OK, nfs4.GETATTR4resok(attrs))
        if isinstance(op, nfs4.READ4args):
            if op.stateid.other not in self.valid_state:
                return nfs4.READ4res(nfsstat4.NFS4ERR_STALE_STATEID)
            return nfs4.READ4res(OK, nfs4.READ4resok(eof=True, data=b"data"))
        if isinstance(op, nfs4.REMOVE4args):
            return nfs4.REMOVE4res(OK, nfs4.REMOVE4resok(nfs4.change_info4(True, 1, 2)))
        if isinstance(op, nfs4.OPEN4args):
            stateid = nfs4.stateid4(1, self.next_id.to_bytes(12, "big"))
            self.next_id += 1
            self.valid_state.add(stateid.other)
            return nfs4.OPEN4res(
                OK,
                nfs4.OPEN4resok(
                    stateid=stateid,
                    cinfo=nfs4.change_info4(True, 1, 2),
                    rflags=0,
                    attrset=[],
                    delegation=nfs4.open_delegation4(
                        delegation_type=open_delegation_type4.OPEN_DELEGATE_NONE
                    ),
                ),
            )
        if isinstance(op, nfs4.LOCK4args):
            if self.lock_denied:
                holder = nfs4.state_owner4(clientid=1, owner=b"someone else")
                return nfs4.LOCK4res(
                    nfsstat4.NFS4ERR_DENIED,
                    denied=nfs4.LOCK4denied(0, 10, nfs_lock_type4.WRITE_LT, holder),
                )
            return nfs4.LOCK4res(OK, nfs4.LOCK4resok(nfs4.stateid4(1, b"L" * 12)))
        if isinstance(op, nfs4.CLOSE4args):
            self.valid_state.discard(op.open_stateid.other)
            return nfs4.CLOSE4res(OK, nfs4.stateid4(0, bytes(12)))
        if isinstance(op, nfs4.DESTROY_SESSION4args):
            self.sessions.pop(op.dsa_sessionid, None)
            return nfs4.DESTROY_SESSION4res(OK)
        if isinstance(op, nfs4.DESTROY_CLIENTID4args):
            return nfs4.DESTROY_CLIENTID4res(OK)
        if isinstance(op, nfs4.RECLAIM_COMPLETE4args):
            return nfs4.RECLAIM_COMPLETE4res(OK)
        if isinstance(op, nfs4.PUTFH4args | nfs4.PUTROOTFH4args):
            return _status_res(nfs4.RES_BY_OPNUM[op.OPNUM], OK)
        return _status_res(nfs4.RES_BY_OPNUM[op.OPNUM], nfsstat4.NFS4ERR_NOTSUPP)


def _status_res(cls: Any, status: nfsstat4) -> nfs4.ResOp:
    """A result of class ``cls`` (any result class) carrying only a status: an error,
    or NFS4_OK for a result without a body."""
    res: nfs4.ResOp = cls(status)
    return res


@asynccontextmanager
async def fake_session(
    monkeypatch: pytest.MonkeyPatch,
    server: FakeServer,
    options: SessionOptions | None = None,
    **kwargs: Any,
) -> AsyncIterator[ServerSession]:
    """A started ``ServerSession`` whose connections reach ``server`` through memory."""

    async def connect(
        cls: type[Transport],
        host: str,
        port: int,
        *,
        nursery: trio.Nursery,
        on_call: Any = None,
        max_record: int = 1 << 26,
        max_record_source: str = "maximum",
    ) -> Transport:
        client_end, server_end = trio.testing.memory_stream_pair()
        conn = ServerConnection(server_end, peer="client")
        conn.on_call = functools.partial(server.handle, conn)
        server.connections.append(conn)
        await nursery.start(conn.run)
        transport = cls(client_end, peer=f"{host}:{port}", on_call=on_call, max_record=max_record)
        await nursery.start(transport.run)
        return transport

    monkeypatch.setattr(Transport, "connect", classmethod(connect))
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            "127.0.0.1",
            2049,
            b"fusenfs/test/owner",
            options=options or SessionOptions(),
            **kwargs,
        )
        await session.start(nursery)
        yield session
        await session.shutdown()
        nursery.cancel_scope.cancel()


GETATTR_OPS: list[nfs4.ArgOp] = [nfs4.PUTFH4args(FH), nfs4.GETATTR4args([1 << 1])]


# ================================================================ pure functions
@pytest.mark.parametrize(
    ("ops", "cache"),
    [
        ([], False),
        ([nfs4.PUTFH4args(FH), nfs4.GETATTR4args([])], False),
        ([nfs4.PUTFH4args(FH), nfs4.READ4args(STATEID, 0, 10)], False),
        (
            [
                nfs4.PUTFH4args(FH),
                nfs4.WRITE4args(STATEID, 0, stable_how4.UNSTABLE4, b"x"),
            ],
            False,
        ),
        ([nfs4.PUTFH4args(FH), nfs4.COMMIT4args(0, 0)], False),
        ([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"a")], True),
        ([nfs4.PUTFH4args(FH), nfs4.SAVEFH4args(), nfs4.RENAME4args(b"a", b"b")], True),
        ([nfs4.PUTFH4args(FH), nfs4.CLOSE4args(0, STATEID)], True),
        ([nfs4.RECLAIM_COMPLETE4args(False)], True),
        ([nfs4.PUTFH4args(FH), nfs4.SETATTR4args(STATEID, nfs4.fattr4([], b""))], True),
    ],
)
def test_needs_reply_cache(ops: list[nfs4.ArgOp], cache: bool) -> None:
    assert needs_reply_cache(ops) is cache


def test_lock_needs_the_reply_cache_but_lockt_does_not() -> None:
    owner = nfs4.state_owner4(clientid=1, owner=b"o")
    lockt = nfs4.LOCKT4args(nfs_lock_type4.WRITE_LT, 0, 1, owner)
    locker = nfs4.locker4(
        new_lock_owner=False, lock_owner=nfs4.exist_lock_owner4(lock_stateid=STATEID, lock_seqid=0)
    )
    lock = nfs4.LOCK4args(nfs_lock_type4.WRITE_LT, False, 0, 1, locker)
    assert not needs_reply_cache([nfs4.PUTFH4args(FH), lockt])
    assert needs_reply_cache([nfs4.PUTFH4args(FH), lock])


def test_encode_compound_round_trip() -> None:
    ops: list[nfs4.ArgOp] = [
        nfs4.SEQUENCE4args(b"s" * 16, 7, 3, 5, True),
        nfs4.PUTFH4args(FH),
        nfs4.READ4args(STATEID, 4096, 8192),
    ]
    args = nfs4.COMPOUND4args.unpack(Decoder(arg_bytes(_encode_compound(ops))))
    assert args.tag == b"" and args.minorversion == 1
    assert args.argarray == ops


def test_decode_compound_round_trip_and_trailing_bytes() -> None:
    res = nfs4.COMPOUND4res(
        OK,
        b"",
        [
            nfs4.SEQUENCE4res(OK, nfs4.SEQUENCE4resok(b"s" * 16, 7, 3, 63, 63, 0)),
            nfs4.PUTFH4res(OK),
            nfs4.READ4res(OK, nfs4.READ4resok(eof=True, data=b"hello")),
        ],
    )
    assert _decode_compound(encode(res)) == res
    with pytest.raises(XdrError):
        _decode_compound(encode(res) + b"\0\0\0\0")
    with pytest.raises(XdrError):
        _decode_compound(encode(res)[:-4])


def test_compound_error_names_the_failing_op_after_sequence() -> None:
    res = nfs4.COMPOUND4res(
        nfsstat4.NFS4ERR_NOENT,
        b"",
        [
            nfs4.SEQUENCE4res(OK, nfs4.SEQUENCE4resok(b"s" * 16, 1, 0, 0, 0, 0)),
            nfs4.PUTFH4res(OK),
            nfs4.LOOKUP4res(nfsstat4.NFS4ERR_NOENT),
        ],
    )
    ops: list[nfs4.ArgOp] = [nfs4.PUTFH4args(FH), nfs4.LOOKUP4args(b"x")]
    err = _compound_error(res, ops, skip_sequence=True)
    assert (err.status, err.op_index, err.op_name) == (nfsstat4.NFS4ERR_NOENT, 1, "LOOKUP")
    assert err.results == res.resarray[1:]


def test_op_names() -> None:
    assert op_names([nfs4.PUTFH4args(FH), nfs4.GETATTR4args([])]) == "PUTFH GETATTR"
    assert op_names([nfs4.PUTFH4res(OK)]) == "PUTFH"


def test_default_cb_result() -> None:
    recall = cb.CB_RECALL4args(stateid=STATEID, truncate=False, fh=FH)
    assert default_cb_result(recall) == cb.CB_RECALL4res(OK)
    getattr_ = cb.CB_GETATTR4args(fh=FH, attr_request=[])
    assert default_cb_result(getattr_) == cb.CB_GETATTR4res(nfsstat4.NFS4ERR_BADHANDLE)
    recall_any = cb.CB_RECALL_ANY4args(craa_objects_to_keep=0, craa_type_mask=[1])
    assert default_cb_result(recall_any) == cb.CB_RECALL_ANY4res(nfsstat4.NFS4ERR_NOTSUPP)
    recall_slot = cb.CB_RECALL_SLOT4args(rsa_target_highest_slotid=0)
    assert default_cb_result(recall_slot) == cb.CB_RECALL_SLOT4res(nfsstat4.NFS4ERR_NOTSUPP)


def test_host_co_ownerid_is_stable_per_instance() -> None:
    a = host_co_ownerid("/mnt/a")
    assert a == host_co_ownerid("/mnt/a")
    assert a != host_co_ownerid("/mnt/b")
    assert a.startswith(b"fusenfs/")
    assert len(a) <= 1024  # NFS4_OPAQUE_LIMIT


# ======================================================== against the scripted server
async def test_start_exchanges_id_creates_session_and_completes_reclaim(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(max_slots=8, lease_time=45)
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            names = server.names()
            assert names[:4] == [
                ["EXCHANGE_ID"],
                ["CREATE_SESSION"],
                ["SEQUENCE", "PUTROOTFH", "GETATTR"],
                ["SEQUENCE", "RECLAIM_COMPLETE"],
            ]
            eid = server.seen[0].args.argarray[0]
            assert isinstance(eid, nfs4.EXCHANGE_ID4args)
            moved = EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_SUPP_MOVED_MIGR
            assert eid.eia_flags & moved == moved
            assert eid.eia_clientowner.co_ownerid == b"fusenfs/test/owner"
            cs = server.seen[1].args.argarray[0]
            assert isinstance(cs, nfs4.CREATE_SESSION4args)
            assert cs.csa_clientid == session.clientid
            assert cs.csa_sequence == 1  # eir_sequenceid
            assert cs.csa_flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN
            assert cs.csa_fore_chan_attrs.ca_maxrequests == 64
            assert cs.csa_cb_program == NFS4_CALLBACK_PROGRAM
            # The table has the server's ca_maxrequests, not what was asked for.
            assert len(session.slots.slots) == 8
            assert session.lease_time == 45
            assert session.sessionid in server.sessions
        assert server.names()[-2:] == [["DESTROY_SESSION"], ["DESTROY_CLIENTID"]]
        assert not server.sessions


async def test_debug_lines_name_the_server(
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 9: every --debug line says which server (address:port) a COMPOUND went to."""
    server = FakeServer()
    caplog.set_level("DEBUG", logger="session")
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            await session.compound(GETATTR_OPS)
    lines = [r.getMessage() for r in caplog.records if r.getMessage()[:3] in ("-> ", "<- ")]
    assert len(lines) >= 4
    assert all(line[3:].startswith("127.0.0.1:2049 ") for line in lines), lines


async def test_cachethis_is_set_only_for_non_idempotent_compounds(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            await session.compound(GETATTR_OPS)
            await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"x")])
            await session.compound(GETATTR_OPS, cachethis=True)
            seqs = server.sequences()[-3:]
            assert [s.sa_cachethis for s in seqs] == [False, True, True]


async def test_compounds_wait_for_a_slot_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(max_slots=2, latency=0.01)
    results: list[int] = []

    async def one(session: ServerSession) -> None:
        res = await session.compound(GETATTR_OPS)
        results.append(len(res.resarray))

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(one, session)
            assert results == [2] * 50
            assert session.slots.statistics().waits > 0
            assert {s.sa_slotid for s in server.sequences()} == {0, 1}


async def test_cancelled_request_keeps_its_slot_until_answered(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A caller cancelled while its request is on the wire (a FUSE INTERRUPT) returns at
    once, but the request keeps its slot: it is re-sent on the same slot and seqid after
    the minor timeout and answered, and only then does the next request get the slot,
    with the next seqid (RFC 8881 section 2.10.6.2)."""
    server = FakeServer(max_slots=1)

    undone: list[CompoundResult] = []

    async def undo(result: CompoundResult) -> None:
        undone.append(result)

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=10, retrans=2)
        ) as session:
            base = session.slots.slots[0].seqid
            server.action = drop_first(nfs4.REMOVE4args)
            start = trio.current_time()
            with trio.move_on_after(1.0) as scope:
                await session.compound(
                    [nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")], on_orphan=undo
                )
            assert scope.cancelled_caught
            assert trio.current_time() - start == pytest.approx(1.0)
            assert session.slots.slots[0].in_use  # still the orphan's
            assert session.stats.orphaned == 1
            res = await session.compound([nfs4.PUTFH4args(FH)])
            assert len(res.resarray) == 1
            assert trio.current_time() - start >= 10  # waited for the kept request
            seqids = [s.sa_sequenceid for s in server.sequences()[-3:]]
            assert seqids == [base + 1, base + 1, base + 2]
            assert server.executed["REMOVE"] == 1
            assert [type(r.resarray[1]).__name__ for r in undone] == ["REMOVE4res"]
            assert not session.slots.slots[0].uncertain


def keeper_tasks(session: ServerSession) -> int:
    """How many keeper tasks (``ServerSession._carry``) are carrying requests now."""
    assert session._nursery is not None
    return sum(task.name.endswith("._carry") for task in session._nursery.child_tasks)


def assert_sent_again_on_another_connection(server: FakeServer, op: str, after: float) -> None:
    """The COMPOUND holding ``op`` came twice, the second time on another connection and
    not before ``after`` (mock seconds: the minor timeout), and was executed once."""
    copies = [s for s in server.seen if op in s.names]
    assert len(copies) == 2
    assert copies[0].conn != copies[1].conn
    assert copies[1].at >= after
    assert server.executed[op] == 1


async def test_callers_carry_their_own_requests_until_cancelled(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Every AUTH_SYS caller sends its COMPOUND and waits for the reply in its own task,
    interruptible or not: no keeper task.  Only when an interruptible caller is
    cancelled with its request on the wire does a keeper take the request and its slot
    over; it waits for the reply to the record already sent, and sends it again only
    on a new connection, after the minor timeout (RFC 8881 section 2.9.2)."""
    server = FakeServer(max_slots=1)
    keepers: list[int] = []

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=10, retrans=2)
        ) as session:

            async def count_keepers(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
                if any(isinstance(op, nfs4.GETATTR4args) for op in args.argarray):
                    keepers.append(keeper_tasks(session))
                return None

            async def uninterrupted() -> None:
                UNINTERRUPTED.set(True)
                await session.compound(GETATTR_OPS)

            server.action = count_keepers
            await session.compound(GETATTR_OPS)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(uninterrupted)
            assert keepers == [0, 0]

            server.action = drop_first(nfs4.REMOVE4args)
            start = trio.current_time()
            with trio.move_on_after(1.0) as scope:
                await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")])
            assert scope.cancelled_caught
            assert keeper_tasks(session) == 1
            assert session.slots.slots[0].in_use
            await trio.sleep(5)
            removes = [s for s in server.seen if "REMOVE" in s.names]
            assert len(removes) == 1  # waited for, not sent again on its connection
            await session.compound(GETATTR_OPS)  # the slot, once the orphan is answered
            assert keeper_tasks(session) == 0
    assert_sent_again_on_another_connection(server, "REMOVE", after=start + 10)


async def test_request_interrupted_on_an_extra_connection_is_not_sent_twice_on_it(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """With nconnect the caller picks a connection before sending (no ready one): a
    caller cancelled while waiting there leaves the same wait to its keeper too, so
    the request goes again only after the minor timeout, on another connection."""
    server = FakeServer(max_slots=1)
    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(nconnect=2, timeo=10, retrans=2)
        ) as session:
            server.action = drop_first(nfs4.REMOVE4args)
            start = trio.current_time()
            with trio.move_on_after(1.0) as scope:
                await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")])
            assert scope.cancelled_caught
            await session.compound(GETATTR_OPS)
    assert_sent_again_on_another_connection(server, "REMOVE", after=start + 10)


async def test_request_interrupted_while_connecting_is_sent_by_its_keeper(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A caller cancelled before its request could be sent (the connection was being
    made again) returns at once; its keeper connects, sends it once, and the caller's
    ``on_orphan`` gets the result."""
    server = FakeServer(max_slots=1)
    undone: list[CompoundResult] = []

    async def undo(result: CompoundResult) -> None:
        undone.append(result)

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            fast_connect = Transport.connect

            async def slow_connect(cls: type[Transport], *args: Any, **kwargs: Any) -> Transport:
                await trio.sleep(2)
                return await fast_connect(*args, **kwargs)

            monkeypatch.setattr(Transport, "connect", classmethod(slow_connect))
            await session.drop_transport()
            with trio.move_on_after(1.0) as scope:
                await session.compound(
                    [nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")], on_orphan=undo
                )
            assert scope.cancelled_caught
            assert not [s for s in server.seen if "REMOVE" in s.names]
            assert session.stats.orphaned == 1
            await session.compound(GETATTR_OPS)
    assert server.executed["REMOVE"] == 1
    assert [type(r.resarray[1]).__name__ for r in undone] == ["REMOVE4res"]


async def test_cancelled_uninterrupted_request_frees_its_slot_with_its_fate_unknown(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """An UNINTERRUPTED request cancelled after all (the mount shutting down) has no
    keeper to wait for its reply: the slot is freed at once, its fate unknown as after
    a timeout, and no orphan is counted.  The next request on the slot finds the
    server's seqid with one step back (RFC 8881 section 2.10.6.1)."""
    server = FakeServer(max_slots=1)

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=10, retrans=2)
        ) as session:
            base = session.slots.slots[0].seqid
            server.action = drop_first(nfs4.GETATTR4args)

            async def uninterrupted() -> None:
                UNINTERRUPTED.set(True)
                with trio.move_on_after(1.0) as scope:
                    await session.compound(GETATTR_OPS)
                assert scope.cancelled_caught

            async with trio.open_nursery() as nursery:
                nursery.start_soon(uninterrupted)
            slot = session.slots.slots[0]
            assert not slot.in_use
            assert slot.uncertain
            assert session.stats.orphaned == 0
            res = await session.compound([nfs4.PUTFH4args(FH)])
            assert len(res.resarray) == 1
            seqids = [s.sa_sequenceid for s in server.sequences()[-3:]]
            assert seqids == [base + 1, base + 2, base + 1]
            assert not slot.uncertain


async def test_interrupted_open_executed_later_is_closed(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """An OPEN by filehandle whose caller is interrupted while the server holds it: the
    caller returns at once; the OPEN is re-sent and executed; nobody uses the open, so
    the client CLOSEs it and no open state is left on the server (issue 7, item 3)."""
    server = FakeServer()

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=10, retrans=2)
        ) as session:
            client = NFSClient(session, "/export", owner_prefix=b"t")
            server.action = drop_first(nfs4.OPEN4args)
            with trio.move_on_after(1.0) as scope:
                await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
            assert scope.cancelled_caught
            await trio.sleep(30)
            assert server.executed["OPEN"] == 1
            assert server.executed["CLOSE"] == 1
            assert server.valid_state == set()
            assert client.state.opens == {}


async def test_timed_out_request_then_seq_misordered_steps_back_once(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A soft request that timed out leaves its slot's fate unknown (SlotOutcome.UNKNOWN).
    If the server never saw it, the next seqid is one too far: SEQ_MISORDERED, and the
    client steps back once and re-sends (RFC 8881 section 2.10.6.1)."""
    from session.errors import CallTimeout

    server = FakeServer(max_slots=1)

    async def drop_getattr(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        return "drop" if any(isinstance(op, nfs4.GETATTR4args) for op in args.argarray) else None

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=5, retrans=1)
        ) as session:
            base = session.slots.slots[0].seqid
            server.action = drop_getattr
            with pytest.raises(CallTimeout):
                await session.compound(GETATTR_OPS)
            assert session.slots.slots[0].uncertain
            server.action = None
            res = await session.compound([nfs4.PUTFH4args(FH)])
            assert len(res.resarray) == 1
            seqids = [s.sa_sequenceid for s in server.sequences()[-2:]]
            assert seqids == [base + 2, base + 1]
            assert not session.slots.slots[0].uncertain
            assert session.slots.slots[0].seqid == base + 1


async def test_unexplained_seq_misordered_is_raised(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.sequence_errors.append(nfsstat4.NFS4ERR_SEQ_MISORDERED)
            with pytest.raises(NFS4Error) as info:
                await session.compound(GETATTR_OPS)
            assert info.value.status == nfsstat4.NFS4ERR_SEQ_MISORDERED
            assert info.value.op_name == "SEQUENCE"
            await session.compound(GETATTR_OPS)  # the slot is still usable


async def test_lowered_target_highest_slotid_limits_the_slots_used(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(max_slots=8, latency=0.01)

    async def burst(session: ServerSession) -> set[int]:
        before = len(server.sequences())
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(session.compound, GETATTR_OPS)
        return {s.sa_slotid for s in server.sequences()[before:]}

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            assert max(await burst(session)) == 7
            server.target_highest_slotid = 1
            await session.compound(GETATTR_OPS)  # the reply carries the new target
            assert session.slots.target_highest_slotid == 1
            assert session.slots.usable_limit() == 1
            assert await burst(session) <= {0, 1}
            assert max(s.sa_highest_slotid for s in server.sequences()[-20:]) <= 1
            server.target_highest_slotid = None  # raised again: all slots back in use
            await session.compound(GETATTR_OPS)
            assert max(await burst(session)) == 7


async def test_badsession_creates_a_new_session_on_the_same_client_id(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(max_slots=4, latency=0.01)
    reclaims: list[float] = []

    async def on_new_client_id() -> None:
        reclaims.append(trio.current_time())

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server, on_new_client_id=on_new_client_id) as session:
            old_session, clientid = session.sessionid, session.clientid
            server.sessions.clear()  # the server dropped the session
            async with trio.open_nursery() as nursery:  # in flight and waiting for slots
                for _ in range(30):
                    nursery.start_soon(session.compound, GETATTR_OPS)
            assert session.sessionid != old_session
            assert session.sessionid in server.sessions
            assert session.clientid == clientid
            assert server.executed["CREATE_SESSION"] == 2  # one rebuild for 30 callers
            assert server.executed["EXCHANGE_ID"] == 1
            assert session.stats.session_rebuilds == 1
            assert reclaims == []  # same client ID: nothing to reclaim
            assert session.slots.in_use_count() == 0


async def test_lost_client_id_is_rebuilt_and_state_reclaimed_before_reclaim_complete(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    order: list[str] = []

    async def on_new_client_id() -> None:
        order.append(f"reclaim after {server.names()[-1]}")

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server, on_new_client_id=on_new_client_id) as session:
            old_clientid = session.clientid
            server.reboot()
            before = len(server.seen)
            await session.compound(GETATTR_OPS)
            after = [n for n in server.names()[before:] if n != ["BIND_CONN_TO_SESSION"]]
            assert after == [
                ["SEQUENCE", "PUTFH", "GETATTR"],  # NFS4ERR_BADSESSION
                ["CREATE_SESSION"],  # NFS4ERR_STALE_CLIENTID
                ["EXCHANGE_ID"],
                ["CREATE_SESSION"],
                ["SEQUENCE", "PUTROOTFH", "GETATTR"],  # lease_time again
                ["SEQUENCE", "RECLAIM_COMPLETE"],
                ["SEQUENCE", "PUTFH", "GETATTR"],  # the caller's compound, re-sent
            ]
            assert order == ["reclaim after ['SEQUENCE', 'PUTROOTFH', 'GETATTR']"]
            assert session.clientid != old_clientid


async def test_stale_clientid_on_sequence_rebuilds_the_client_id(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    calls: list[int] = []

    async def on_new_client_id() -> None:
        calls.append(1)

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server, on_new_client_id=on_new_client_id) as session:
            server.sequence_errors.append(nfsstat4.NFS4ERR_STALE_CLIENTID)
            await session.compound(GETATTR_OPS)
            assert server.executed["EXCHANGE_ID"] == 2
            assert server.executed["CREATE_SESSION"] == 2
            assert server.executed["RECLAIM_COMPLETE"] == 2
            assert calls == [1]


async def test_request_built_before_a_restart_is_rebuilt_with_reclaimed_state(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A READ that meets a server restart is re-sent by the session after the new client
    ID and the reclaim, still with the old stateid: NFS4ERR_STALE_STATEID.  The client
    builds it again from the open state, which the reclaim updated (RFC 8881 8.4.2.1)."""
    server = FakeServer()
    old = nfs4.stateid4(1, b"O" * 12)
    new = nfs4.stateid4(1, b"N" * 12)
    server.valid_state.add(old.other)
    state = OpenState(fh=FH, fs_id=1, owner=b"o", stateid=old)

    async def reclaim() -> None:
        state.stateid = new  # what OPEN(CLAIM_PREVIOUS) gives
        server.valid_state.add(new.other)

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server, on_new_client_id=reclaim) as session:
            client = NFSClient(session, "/export", owner_prefix=b"t")
            assert await client.read(FH, state, 0, 4) == (b"data", True)
            server.reboot()
            server.valid_state.clear()
            before = len(server.seen)
            assert await client.read(FH, state, 0, 4) == (b"data", True)
            reads = [s for s in server.seen[before:] if "READ" in s.names]
            sent = [
                op.stateid
                for s in reads
                for op in s.args.argarray
                if isinstance(op, nfs4.READ4args)
            ]
            assert sent == [old, old, new]  # BADSESSION, STALE_STATEID, OK
            # A stateid that no reclaim renews stays stale: the error reaches the caller.
            server.reboot()
            with pytest.raises(NFS4Error) as info:
                await client.read(FH, old, 0, 4)
            assert info.value.status == nfsstat4.NFS4ERR_STALE_STATEID


async def test_delay_is_retried_with_growing_backoff(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.op_errors[nfs_opnum4.OP_GETATTR] = deque([nfsstat4.NFS4ERR_DELAY] * 4)
            before = len(server.seen)
            res = await session.compound(GETATTR_OPS)
            assert isinstance(res.resarray[1], nfs4.GETATTR4res)
            tries = server.seen[before:]
            assert len(tries) == 5
            gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
            assert gaps == pytest.approx([0.05, 0.1, 0.2, 0.4])
            # Each try is a new request: SEQUENCE succeeded, so the seqid moved on.
            seqids = [t.sequence.sa_sequenceid for t in tries if t.sequence is not None]
            assert len(set(seqids)) == 5
            assert session.stats.retries_delay == 4


async def test_grace_is_retried_like_delay(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.op_errors[nfs_opnum4.OP_GETATTR] = deque([nfsstat4.NFS4ERR_GRACE] * 2)
            await session.compound(GETATTR_OPS)
            assert session.stats.retries_delay == 2


async def test_delay_beyond_the_retry_limit_is_raised(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(retry_limit=3.0)
        ) as session:
            server.op_errors[nfs_opnum4.OP_GETATTR] = deque([nfsstat4.NFS4ERR_DELAY] * 1000)
            start = trio.current_time()
            with pytest.raises(NFS4ErrRetryable) as info:
                await session.compound(GETATTR_OPS)
            assert info.value.status == nfsstat4.NFS4ERR_DELAY
            assert info.value.errno == 11  # EAGAIN
            assert info.value.op_index == 1 and info.value.op_name == "GETATTR"
            assert 3.0 <= trio.current_time() - start <= 3.0 + 2.0


async def test_delay_on_sequence_resends_the_same_slot_and_seqid(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(max_slots=1)
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.sequence_errors.extend([nfsstat4.NFS4ERR_DELAY] * 2)
            await session.compound(GETATTR_OPS)
            last = [(s.sa_slotid, s.sa_sequenceid) for s in server.sequences()[-3:]]
            assert last[0] == last[1] == last[2]


async def test_status_flags_are_recorded_and_reported(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    reported: list[int] = []
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server, on_status_flags=reported.append) as session:
            assert session.status_flags == 0 and reported == []
            flags = SEQ4_STATUS_LEASE_MOVED | SEQ4_STATUS_RECALLABLE_STATE_REVOKED
            server.status_flags = flags
            res = await session.compound(GETATTR_OPS)
            assert res.status_flags == flags
            assert session.status_flags == flags
            assert reported == [flags]
            server.status_flags = 0
            res = await session.compound(GETATTR_OPS)
            assert res.status_flags == 0 and session.status_flags == 0
            assert reported == [flags]  # a clear word is not reported


async def test_state_manager_records_each_new_status_flag_once(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session, trio.open_nursery() as nursery:
            manager = StateManager(NFSClient(session, "/export", owner_prefix=b"t"), nursery)
            manager.attach()
            server.status_flags = SEQ4_STATUS_ADMIN_STATE_REVOKED
            await session.compound(GETATTR_OPS)
            await session.compound(GETATTR_OPS)
            server.status_flags |= SEQ4_STATUS_RECALLABLE_STATE_REVOKED
            await session.compound(GETATTR_OPS)
            assert [(e.what, e.rule) for e in manager.log.events] == [
                ("state revoked by the administrator", "RFC 8881 18.46.3"),
                ("unreturned delegations revoked", "RFC 8881 18.46.3"),
            ]
            assert all("sr_status_flags=" in e.evidence for e in manager.log.events)
            nursery.cancel_scope.cancel()


async def test_idle_session_renews_its_lease(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(lease_time=20)
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            before = len(server.seen)
            await trio.sleep(65)
            renewals = [s for s in server.seen[before:] if s.names == ["SEQUENCE"]]
            assert len(renewals) == session.stats.renewals
            assert 5 <= len(renewals) <= 7
            gaps = [b.at - a.at for a, b in itertools.pairwise(renewals)]
            assert all(gap <= 20 / 2 + 0.5 for gap in gaps)
            # Traffic renews the lease too: a busy session sends no bare SEQUENCE.
            before = len(server.seen)
            for _ in range(30):
                await session.compound(GETATTR_OPS)
                await trio.sleep(2)
            assert [s for s in server.seen[before:] if s.names == ["SEQUENCE"]] == []


async def test_timeout_resends_the_same_request_on_a_new_connection(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()

    async def drop_once(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        if any(isinstance(op, nfs4.REMOVE4args) for op in args.argarray):
            srv.action = None
            return "drop"
        return None

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=10, retrans=2)
        ) as session:
            server.action = drop_once
            start = trio.current_time()
            await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")])
            assert trio.current_time() - start >= 10
            removes = [s for s in server.seen if "REMOVE" in s.names]
            assert len(removes) == 2
            assert removes[0].args == removes[1].args  # the same slot, seqid, bytes
            assert (removes[0].conn, removes[1].conn) == (0, 1)
            assert server.executed["REMOVE"] == 1
            assert session.stats.reconnects == 1
            assert ["BIND_CONN_TO_SESSION"] in server.names()


async def test_server_that_never_answers_gives_a_timeout(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    from session.errors import CallTimeout

    server = FakeServer()

    async def drop_getattr(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        return "drop" if any(isinstance(op, nfs4.GETATTR4args) for op in args.argarray) else None

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=5, retrans=2)
        ) as session:
            server.action = drop_getattr
            start = trio.current_time()
            with pytest.raises(CallTimeout):
                await session.compound(GETATTR_OPS)
            assert 10 <= trio.current_time() - start <= 15 + 1
            server.action = None


async def test_silent_server_after_a_reconnect_fails_within_the_budget(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Issue 7: a server that closes the connection once and then answers nothing, not
    even BIND_CONN_TO_SESSION on the new connection.  The call fails with ETIMEDOUT
    within timeo * (retrans + 1), the connect lock is free again, and lease renewal
    goes on."""
    from session.errors import CallTimeout

    server = FakeServer()

    async def cut_then_silence(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        if (
            any(isinstance(op, nfs4.GETATTR4args) for op in args.argarray)
            and not srv.executed["cut"]
        ):
            srv.executed["cut"] += 1
            return "cut"
        return "drop"

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=2, retrans=1)
        ) as session:
            server.action = cut_then_silence
            start = trio.current_time()
            with pytest.raises(CallTimeout) as info:
                await session.compound(GETATTR_OPS)
            assert trio.current_time() - start <= 4 + 0.5
            assert "not responding" in str(info.value)
            assert ["BIND_CONN_TO_SESSION"] in server.names()
            assert not session._connect_lock.locked()
            # A second call is bounded the same way (no lock left held, no hang).
            start = trio.current_time()
            with pytest.raises(CallTimeout):
                await session.compound(GETATTR_OPS)
            assert trio.current_time() - start <= 4 + 0.5
            server.action = None
            await session.compound(GETATTR_OPS)  # and the session recovers


async def test_hard_session_waits_logs_once_and_stays_interruptible(
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """hard: no ETIMEDOUT at the major timeout; "not responding" is logged once and "OK"
    once when the server answers again; a waiting caller can still be cancelled."""
    server = FakeServer()
    silent = True

    async def maybe_drop(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        return "drop" if silent else None

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=2, retrans=1, hard=True)
        ) as session:
            server.action = maybe_drop
            caplog.set_level("WARNING", logger="session")
            with trio.move_on_after(30) as scope:  # an interrupt after 30 s
                await session.compound(GETATTR_OPS)
            assert scope.cancelled_caught
            start = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def waiter() -> None:
                    await session.compound(GETATTR_OPS)

                nursery.start_soon(waiter)
                await trio.sleep(20)
                silent = False
            assert trio.current_time() - start >= 20
            messages = [r.getMessage() for r in caplog.records]
            assert sum("not responding, still trying" in m for m in messages) == 1
            assert sum(m.endswith(" OK") for m in messages) == 1
            assert session.stats.major_timeouts >= 2


async def test_soft_timeouts_are_eio_and_softerr_ones_etimedout(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """nfs(5): a soft mount's call that gets no reply fails with EIO; softerr: ETIMEDOUT."""
    import errno

    from session.errors import CallTimeout

    async def drop_getattr(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        return "drop" if any(isinstance(op, nfs4.GETATTR4args) for op in args.argarray) else None

    for softerr, expected in ((False, errno.EIO), (True, errno.ETIMEDOUT)):
        server = FakeServer()
        with trio.fail_after(TIMEOUT):
            async with fake_session(
                monkeypatch, server, options=SessionOptions(timeo=2, retrans=1, softerr=softerr)
            ) as session:
                server.action = drop_getattr
                with pytest.raises(CallTimeout) as info:
                    await session.compound(GETATTR_OPS)
                assert info.value.errno == expected
                server.action = None


async def test_op_statistics_count_compounds_bytes_times_and_timeouts(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """What fusenfs stats shows per operation, like /proc/self/mountstats."""
    server = FakeServer(latency=0.01)
    dropped = False

    async def drop_first_remove(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        nonlocal dropped
        if any(isinstance(op, nfs4.REMOVE4args) for op in args.argarray) and not dropped:
            dropped = True
            return "drop"
        return None

    with trio.fail_after(TIMEOUT):
        async with fake_session(
            monkeypatch, server, options=SessionOptions(timeo=5, retrans=2)
        ) as session:
            start = session.op_statistics()["GETATTR"]  # start() read lease_time
            for _ in range(3):
                await session.compound(GETATTR_OPS)
            server.action = drop_first_remove
            await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")])
            stats = session.op_statistics()
    getattr_ = stats["GETATTR"]
    assert (getattr_.ops - start.ops, getattr_.transmissions - start.transmissions) == (3, 3)
    assert getattr_.timeouts == 0
    assert getattr_.bytes_sent > 0 and getattr_.bytes_received > 0
    assert getattr_.rtt_ms_max >= 10 and getattr_.exec_ms_total >= getattr_.rtt_ms_total
    remove = stats["REMOVE"]
    assert (remove.ops, remove.transmissions, remove.timeouts) == (1, 2, 1)
    assert remove.exec_ms_max >= 5000  # waited out the minor timeout
    assert stats["EXCHANGE_ID"].ops == 1 and stats["CREATE_SESSION"].ops == 1


async def test_nconnect_spreads_requests_over_bound_connections(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """nconnect=3: two more connections, each bound to the session's fore channel with
    BIND_CONN_TO_SESSION (RFC 8881 section 2.10.5), requests in turn on all three."""
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server, options=SessionOptions(nconnect=3)) as session:
            before = len(server.seen)
            for _ in range(9):
                await session.compound(GETATTR_OPS)
            used = Counter(s.conn for s in server.seen[before:] if "GETATTR" in s.names)
            binds = [s for s in server.seen if s.names == ["BIND_CONN_TO_SESSION"]]
    assert len(server.connections) == 3
    assert sorted(used.values()) == [3, 3, 3]
    assert len(binds) == 2
    for b in binds:
        op = b.args.argarray[0]
        assert isinstance(op, nfs4.BIND_CONN_TO_SESSION4args)
        assert op.bctsa_dir == channel_dir_from_client4.CDFC4_FORE


async def test_reply_lost_with_the_connection_is_replayed_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Executed, then the connection dropped before the reply: the re-send on the same
    slot and seqid is answered from the reply cache, so REMOVE runs exactly once."""
    server = FakeServer()

    async def cut_after_remove(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        if any(isinstance(op, nfs4.REMOVE4args) for op in args.argarray):
            srv.action = None
            return "cut-after"
        return None

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.action = cut_after_remove
            res = await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")])
            assert isinstance(res.resarray[1], nfs4.REMOVE4res)
            assert res.resarray[1].status == OK
            assert server.executed["REMOVE"] == 1
            removes = [s for s in server.seen if "REMOVE" in s.names]
            assert len(removes) == 2 and removes[0].args == removes[1].args
            assert session.stats.reconnects == 1


async def test_uncached_idempotent_request_is_resent_as_a_new_one(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """sa_cachethis false, executed, reply lost: the re-send gets
    NFS4ERR_RETRY_UNCACHED_REP, and the client sends it again with the next seqid."""
    server = FakeServer()

    async def cut_after_getattr(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        if any(isinstance(op, nfs4.GETATTR4args) for op in args.argarray):
            srv.action = None
            return "cut-after"
        return None

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.action = cut_after_getattr
            before = len(server.seen)
            res = await session.compound(GETATTR_OPS)
            assert isinstance(res.resarray[1], nfs4.GETATTR4res)
            tries = [s for s in server.seen[before:] if "GETATTR" in s.names]
            seqs = [t.sequence for t in tries]
            assert len(seqs) == 3
            assert all(s is not None and not s.sa_cachethis for s in seqs)
            ids = [(s.sa_slotid, s.sa_sequenceid) for s in seqs if s is not None]
            assert ids[0] == ids[1] and ids[2][1] == ids[1][1] + 1
            assert server.executed["GETATTR"] >= 2


async def test_connection_cut_before_execution_resends_on_the_same_slot(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()

    async def cut_before(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        if any(isinstance(op, nfs4.REMOVE4args) for op in args.argarray):
            srv.action = None
            return "cut"
        return None

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.action = cut_before
            await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")])
            assert server.executed["REMOVE"] == 1
            assert session.stats.reconnects == 1


async def test_blocked_lock_is_retried_at_once_on_cb_notify_lock(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """F_SETLKW: WRITEW_LT, NFS4ERR_DENIED, a back-off growing to LOCK_POLL_MAX; a
    CB_NOTIFY_LOCK for the waiting owner ends the pause at once (RFC 8881 section 9.6,
    20.11)."""
    from session.client import LOCK_POLL_MAX

    server = FakeServer(lock_denied=True)
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            client = NFSClient(session, "/export", owner_prefix=b"t")
            session.on_callback = client.handle_callback
            state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_BOTH)
            got: list[float] = []

            async def waiter() -> None:
                await client.lock(state, b"me", 0, 10, write=True, wait=True)
                got.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.sleep(20)
                locks = [s for s in server.seen if "LOCK" in s.names]
                kinds = {
                    op.locktype
                    for s in locks
                    for op in s.args.argarray
                    if isinstance(op, nfs4.LOCK4args)
                }
                assert kinds == {nfs_lock_type4.WRITEW_LT}
                gaps = [b.at - a.at for a, b in itertools.pairwise(locks)]
                assert max(gaps) <= LOCK_POLL_MAX + 0.01  # bounded back-off
                assert not got
                server.lock_denied = False
                now = trio.current_time()
                notify = cb.CB_NOTIFY_LOCK4args(
                    cnla_fh=FH, cnla_lock_owner=nfs4.state_owner4(1, client.lock_owner(b"me"))
                )
                await call_back(server, cb_compound(session.sessionid, [notify]))
            assert got and got[0] - now < 0.01  # at once, not after the pause


# ---------------------------------------------------------------- the backchannel
def cb_compound(sessionid: bytes, ops: list[cb.CbArgOp], with_sequence: bool = True) -> bytes:
    argarray: list[cb.CbArgOp] = []
    if with_sequence:
        argarray.append(
            cb.CB_SEQUENCE4args(
                csa_sessionid=sessionid,
                csa_sequenceid=1,
                csa_slotid=0,
                csa_highest_slotid=0,
                csa_cachethis=False,
                csa_referring_call_lists=[],
            )
        )
    argarray += ops
    return encode(
        cb.CB_COMPOUND4args(tag=b"cb", minorversion=1, callback_ident=0, argarray=argarray)
    )


async def call_back(server: FakeServer, body: bytes, proc: int = 1) -> bytes:
    conn = server.connections[-1]
    return bytes(await conn.callback(NFS4_CALLBACK_PROGRAM, 1, proc, body, AuthNone()))


async def test_cb_recall_is_answered_with_cb_sequence(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            recall = cb.CB_RECALL4args(stateid=STATEID, truncate=False, fh=FH)
            reply = await call_back(server, cb_compound(session.sessionid, [recall]))
            res = cb.CB_COMPOUND4res.unpack(Decoder(reply))
            assert res.status == OK and res.tag == b"cb"
            seq, rec = res.resarray
            assert isinstance(seq, cb.CB_SEQUENCE4res) and seq.resok is not None
            assert seq.resok.csr_sessionid == session.sessionid
            assert (seq.resok.csr_sequenceid, seq.resok.csr_slotid) == (1, 0)
            assert rec == cb.CB_RECALL4res(OK)
            assert session.stats.callbacks == 1


async def test_callback_handler_gets_the_ops_after_cb_sequence(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    got: list[cb.CB_COMPOUND4args] = []

    async def handler(args: cb.CB_COMPOUND4args) -> list[cb.CbResOp]:
        got.append(args)
        return [cb.CB_RECALL4res(nfsstat4.NFS4ERR_BADHANDLE)]

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server, on_callback=handler) as session:
            recall = cb.CB_RECALL4args(stateid=STATEID, truncate=True, fh=FH)
            reply = await call_back(server, cb_compound(session.sessionid, [recall]))
            res = cb.CB_COMPOUND4res.unpack(Decoder(reply))
            assert res.status == nfsstat4.NFS4ERR_BADHANDLE
            assert len(res.resarray) == 2
            assert [a.argarray for a in got] == [[recall]]


async def test_callback_for_another_session_or_without_cb_sequence_is_refused(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    recall = cb.CB_RECALL4args(stateid=STATEID, truncate=False, fh=FH)
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            reply = await call_back(server, cb_compound(b"\xee" * 16, [recall]))
            res = cb.CB_COMPOUND4res.unpack(Decoder(reply))
            assert res.status == nfsstat4.NFS4ERR_BADSESSION
            reply = await call_back(
                server, cb_compound(session.sessionid, [recall], with_sequence=False)
            )
            res = cb.CB_COMPOUND4res.unpack(Decoder(reply))
            assert res.status == nfsstat4.NFS4ERR_OP_NOT_IN_SESSION
            assert res.resarray == []


async def test_cb_null_and_unknown_programs(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server):
            assert await call_back(server, b"", proc=0) == b""
            conn = server.connections[-1]
            with pytest.raises(ProgUnavail):
                await conn.callback(100003, 4, 0, b"", AuthNone())


async def test_callback_is_answered_while_fore_channel_requests_wait(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The server may call back before it answers a fore-channel request (a recall
    racing an OPEN, RFC 8881 section 2.10.6.3): both complete."""
    server = FakeServer()
    answered: list[bytes] = []

    async def recall_first(srv: FakeServer, args: nfs4.COMPOUND4args) -> str | None:
        if any(isinstance(op, nfs4.REMOVE4args) for op in args.argarray):
            srv.action = None
            (sessionid,) = srv.sessions
            recall = cb.CB_RECALL4args(stateid=STATEID, truncate=False, fh=FH)
            answered.append(await call_back(srv, cb_compound(sessionid, [recall])))
        return None

    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            server.action = recall_first
            await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"f")])
            assert len(answered) == 1
            assert cb.CB_COMPOUND4res.unpack(Decoder(answered[0])).status == OK


# ---------------------------------------------------------------- state protection
def test_exchange_id_asks_sp4_mach_cred_only_with_a_gss_machine_credential() -> None:
    """RFC 8881 2.10.8.3 / 18.35: with a Kerberos machine credential EXCHANGE_ID asks
    SP4_MACH_CRED, the client ID's own operations enforced and the ones that give
    state back allowed; with AUTH_SYS, SP4_NONE."""
    from session.gss import GssCredential
    from session.session import MACH_CRED_ALLOW, MACH_CRED_ENFORCE
    from session.xdr.fattr import bitmap4_to_set

    plain = ServerSession("127.0.0.1", 2049, b"o")._exchange_id_args()
    assert plain.eia_state_protect.spa_how == state_protect_how4.SP4_NONE
    gss = ServerSession(
        "127.0.0.1", 2049, b"o", machine_cred=GssCredential("nfs@localhost")
    )._exchange_id_args()
    protect = gss.eia_state_protect
    assert protect.spa_how == state_protect_how4.SP4_MACH_CRED
    assert protect.spa_mach_ops is not None
    enforced = bitmap4_to_set(protect.spa_mach_ops.spo_must_enforce)
    allowed = bitmap4_to_set(protect.spa_mach_ops.spo_must_allow)
    assert enforced == {int(op) for op in MACH_CRED_ENFORCE}
    assert nfs_opnum4.OP_DESTROY_CLIENTID in enforced
    assert {nfs_opnum4.OP_CLOSE, nfs_opnum4.OP_DELEGRETURN} <= allowed
    assert allowed == {int(op) for op in MACH_CRED_ALLOW}


async def test_operations_the_server_enforces_go_with_the_machine_credential(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """An operation in the server's spo_must_enforce is sent with the machine
    credential even when a user's was given (section 18.35.3)."""
    from session.rpc import AuthSys

    server = FakeServer()
    user = AuthSys(uid=1000, gid=1000, gids=[])
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session:
            sent: list[object] = []
            real = ServerSession._compound

            async def spy(self: ServerSession, ops: Any, cred: Any, *rest: Any) -> Any:
                sent.append(cred)
                return await real(self, ops, cred, *rest)

            monkeypatch.setattr(ServerSession, "_compound", spy)
            session.mach_enforced = frozenset({int(nfs_opnum4.OP_REMOVE)})
            await session.compound([nfs4.PUTFH4args(FH), nfs4.REMOVE4args(b"x")], user)
            await session.compound(GETATTR_OPS, user)
            assert sent == [session.machine_cred, user]


def test_main_op_skips_filehandle_setup() -> None:
    """mountstats counts PUTFH SAVEFH PUTFH RENAME under RENAME, not SAVEFH."""
    from session.session import main_op

    rename: list[nfs4.ArgOp] = [nfs4.PUTFH4args(FH), nfs4.SAVEFH4args(), nfs4.PUTFH4args(FH)]
    assert main_op([*rename, nfs4.RENAME4args(b"a", b"b")]) == "RENAME"
    assert main_op([*rename, nfs4.LINK4args(b"c")]) == "LINK"
    assert main_op([nfs4.PUTFH4args(FH), nfs4.RESTOREFH4args()]) == "SEQUENCE"

"""Delegations in the client (RFC 8881 section 10), against a scripted server.

``DelegServer`` is the session tests' ``FakeServer`` that grants a delegation with each
OPEN (read, or write when asked for write access), answers DELEGRETURN, TEST_STATEID and
FREE_STATEID, and GETATTR with a size and change attribute.  The callbacks (CB_RECALL,
CB_GETATTR, CB_RECALL_ANY) are sent on the backchannel as a server sends them, so what
is checked is what goes over the wire in each direction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from test_session_sansio import (
    FH,
    OK,
    TIMEOUT,
    FakeServer,
    call_back,
    cb_compound,
    fake_session,
)

from recovery.manager import StateManager
from recovery.reclaim import reclaim_all
from session.client import NFSClient
from session.session import ServerSession
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder
from session.xdr.const import (
    FATTR4,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WANT_DELEG_MASK,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    OPEN4_SHARE_ACCESS_WRITE,
    RCA4_TYPE_MASK_RDATA_DLG,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
    limit_by4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, decode_fattr4, encode_fattr4

SIZE = 1234
CHANGE = 77


@dataclass
class DelegServer(FakeServer):
    """A FakeServer that grants delegations and knows their stateids."""

    #: Grant delegations at OPEN (else OPEN_DELEGATE_NONE).
    grant: bool = True
    #: Set the recall flag on the delegations granted (section 18.16.3).
    grant_recall: bool = False
    #: ``other`` of every delegation stateid granted and not returned.
    delegations: set[bytes] = field(default_factory=set)
    #: ``other`` of delegation stateids TEST_STATEID calls revoked.
    revoked: set[bytes] = field(default_factory=set)
    #: The OPEN4args received, in order.
    opens: list[nfs4.OPEN4args] = field(default_factory=list)

    def _op(self, op: nfs4.ArgOp) -> nfs4.ResOp:
        if isinstance(op, nfs4.OPEN4args):
            self.executed["OPEN"] += 1
            self.opens.append(op)
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
                    delegation=self._delegation(op),
                ),
            )
        if isinstance(op, nfs4.DELEGRETURN4args):
            self.executed["DELEGRETURN"] += 1
            if op.deleg_stateid.other not in self.delegations:
                return nfs4.DELEGRETURN4res(nfsstat4.NFS4ERR_BAD_STATEID)
            self.delegations.discard(op.deleg_stateid.other)
            return nfs4.DELEGRETURN4res(OK)
        if isinstance(op, nfs4.TEST_STATEID4args):
            self.executed["TEST_STATEID"] += 1
            codes = [
                nfsstat4.NFS4ERR_DELEG_REVOKED if s.other in self.revoked else OK
                for s in op.ts_stateids
            ]
            return nfs4.TEST_STATEID4res(OK, nfs4.TEST_STATEID4resok(codes))
        if isinstance(op, nfs4.FREE_STATEID4args):
            self.executed["FREE_STATEID"] += 1
            self.revoked.discard(op.fsa_stateid.other)
            self.delegations.discard(op.fsa_stateid.other)
            return nfs4.FREE_STATEID4res(OK)
        if isinstance(op, nfs4.GETATTR4args):
            self.executed["GETATTR"] += 1
            attrs = NFSAttrs(lease_time=self.lease_time, size=SIZE, change=CHANGE)
            return nfs4.GETATTR4res(OK, nfs4.GETATTR4resok(encode_fattr4(attrs)))
        return super()._op(op)

    def _delegation(self, op: nfs4.OPEN4args) -> nfs4.open_delegation4:
        want = op.share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
        if not self.grant or want == OPEN4_SHARE_ACCESS_WANT_NO_DELEG:
            return nfs4.open_delegation4(delegation_type=open_delegation_type4.OPEN_DELEGATE_NONE)
        stateid = nfs4.stateid4(1, b"D" + self.next_id.to_bytes(11, "big"))
        self.next_id += 1
        self.delegations.add(stateid.other)
        ace = nfs4.nfsace4(type=0, flag=0, access_mask=0, who="")
        if op.share_access & OPEN4_SHARE_ACCESS_WRITE:
            return nfs4.open_delegation4(
                delegation_type=open_delegation_type4.OPEN_DELEGATE_WRITE,
                write=nfs4.open_write_delegation4(
                    stateid=stateid,
                    recall=self.grant_recall,
                    space_limit=nfs4.nfs_space_limit4(
                        limitby=limit_by4.NFS_LIMIT_SIZE, filesize=1 << 40
                    ),
                    permissions=ace,
                ),
            )
        return nfs4.open_delegation4(
            delegation_type=open_delegation_type4.OPEN_DELEGATE_READ,
            read=nfs4.open_read_delegation4(
                stateid=stateid, recall=self.grant_recall, permissions=ace
            ),
        )


def ops_sent(server: FakeServer, name: str) -> int:
    return sum(names.count(name) for names in server.names())


async def settle() -> None:
    """Let background returns run (mock clock: no real wait)."""
    await trio.sleep(1)


async def recall(server: FakeServer, session: ServerSession, stateid: nfs4.stateid4) -> None:
    op = cb.CB_RECALL4args(stateid=stateid, truncate=False, fh=FH)
    reply = cb.CB_COMPOUND4res.unpack(
        Decoder(await call_back(server, cb_compound(session.sessionid, [op])))
    )
    assert reply.status == OK


def client_for(session: ServerSession, nursery: trio.Nursery) -> NFSClient:
    client = NFSClient(session, "/export", owner_prefix=b"t")
    session.on_callback = client.handle_callback
    client.task_nursery = nursery
    return client


@asynccontextmanager
async def delegating(
    monkeypatch: pytest.MonkeyPatch, server: FakeServer
) -> AsyncIterator[tuple[ServerSession, NFSClient, trio.Nursery]]:
    """A session to ``server``, a client answering its callbacks, and the nursery its
    delegation returns run in (cancelled at the end), all within TIMEOUT mock seconds."""
    with trio.fail_after(TIMEOUT):
        async with fake_session(monkeypatch, server) as session, trio.open_nursery() as n:
            yield session, client_for(session, n), n
            n.cancel_scope.cancel()


async def test_read_delegation_is_kept_and_a_reopen_sends_no_open(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """10.4.1: OPEN asks with no preference; the read delegation granted is kept; the
    last close keeps the open, and the next open of the file is answered locally."""
    server = DelegServer()
    async with delegating(monkeypatch, server) as (_session, client, _n):
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        wish = server.opens[0].share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
        assert wish == OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE
        deleg = client.usable_delegation(FH)
        assert deleg is not None and not deleg.write
        await client.release(state, OPEN4_SHARE_ACCESS_READ)
        for _ in range(5):
            again = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
            assert again is state
            await client.release(again, OPEN4_SHARE_ACCESS_READ)
        assert ops_sent(server, "OPEN") == 1
        assert ops_sent(server, "CLOSE") == 0
        assert client.stats.delegations_granted == 1


async def test_open_for_write_under_a_read_delegation_goes_to_the_server(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A read delegation does not cover write access: that open is an OPEN (upgrade)."""
    server = DelegServer()
    async with delegating(monkeypatch, server) as (_session, client, _n):
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        await client.release(state, OPEN4_SHARE_ACCESS_READ)
        writer = await client.open_fh(FH, OPEN4_SHARE_ACCESS_BOTH)
        assert ops_sent(server, "OPEN") == 2
        assert writer.server_access == OPEN4_SHARE_ACCESS_BOTH


async def test_nodeleg_asks_for_none_and_returns_one_granted_anyway(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """-o nodeleg: OPEN4_SHARE_ACCESS_WANT_NO_DELEG; a server that grants regardless
    gets DELEGRETURN at once, and the last close is a CLOSE."""
    server = DelegServer()
    server_ignores = DelegServer._delegation

    def always(self: DelegServer, op: nfs4.OPEN4args) -> nfs4.open_delegation4:
        op.share_access &= ~OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
        return server_ignores(self, op)

    async with delegating(monkeypatch, server) as (_session, client, _n):
        client.want_delegations = False
        monkeypatch.setattr(DelegServer, "_delegation", always)
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        wish = server.opens[0].share_access
        assert wish & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK == 0  # cleared by `always`
        assert ops_sent(server, "DELEGRETURN") == 1 and not server.delegations
        assert client.usable_delegation(FH) is None
        await client.release(state, OPEN4_SHARE_ACCESS_READ)
        assert ops_sent(server, "CLOSE") == 1


async def test_nodeleg_open_carries_want_no_deleg(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = DelegServer()
    async with delegating(monkeypatch, server) as (_session, client, _n):
        client.want_delegations = False
        await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        wish = server.opens[0].share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK
        assert wish == OPEN4_SHARE_ACCESS_WANT_NO_DELEG
        assert not server.delegations


async def test_cb_recall_writes_back_closes_the_kept_open_then_delegreturns(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """20.2 / 10.4.1: CB_RECALL is answered at once; then the write-back hook runs, the
    open kept only for the delegation is CLOSEd, and DELEGRETURN follows."""
    server = DelegServer()
    async with delegating(monkeypatch, server) as (session, client, _n):
        order: list[str] = []

        async def write_back(fh: bytes) -> None:
            assert fh == FH
            order.append("write-back")

        client.on_delegation_return = write_back
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_BOTH)
        await client.release(state, OPEN4_SHARE_ACCESS_BOTH)
        deleg = client.usable_delegation(FH)
        assert deleg is not None and deleg.write
        sent_before = len(server.seen)
        await recall(server, session, deleg.stateid)
        await settle()
        order += [n for names in server.names()[sent_before:] for n in names if n != "SEQUENCE"]
        assert order == ["write-back", "PUTFH", "CLOSE", "PUTFH", "DELEGRETURN"]
        assert not server.delegations and not client.state.delegations
        assert not client.state.opens
        assert client.stats.delegations_recalled == 1
        assert client.stats.delegations_returned == 1


async def test_recall_of_a_file_in_use_keeps_its_open(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """An open an application still uses is the server's already: only DELEGRETURN;
    and the next open of it is an OPEN again."""
    server = DelegServer()
    async with delegating(monkeypatch, server) as (session, client, _n):
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        deleg = client.usable_delegation(FH)
        assert deleg is not None
        await recall(server, session, deleg.stateid)
        await settle()
        assert ops_sent(server, "CLOSE") == 0 and ops_sent(server, "DELEGRETURN") == 1
        assert client.state.find_open(FH, state.owner) is state
        await client.release(state, OPEN4_SHARE_ACCESS_READ)
        assert ops_sent(server, "CLOSE") == 1


async def test_recall_during_recovery_waits_for_it(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A CB_RECALL while the file system is parked (migration or reclaim under way) is
    answered, but the return waits until the file system is back."""
    server = DelegServer()
    async with delegating(monkeypatch, server) as (session, client, _n):
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        await client.release(state, OPEN4_SHARE_ACCESS_READ)
        deleg = client.usable_delegation(FH)
        assert deleg is not None
        client.learn_fh(FH, NFSAttrs(fsid=nfs4.fsid4(1, 1)))
        fs = client.fs_of(FH)
        assert fs is not None
        client.park(fs)
        await recall(server, session, deleg.stateid)
        await trio.sleep(30)
        assert ops_sent(server, "DELEGRETURN") == 0
        client.unpark(fs)
        await settle()
        assert ops_sent(server, "DELEGRETURN") == 1


async def test_cb_getattr_answers_the_size_and_change_written_under_the_delegation(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """10.4.3 / 20.1: CB_GETATTR gets the client's size; change is the granted value,
    plus one once the client wrote under the delegation."""
    server = DelegServer()
    async with delegating(monkeypatch, server) as (session, client, _n):
        await client.open_fh_attrs(FH, OPEN4_SHARE_ACCESS_BOTH)
        request = bitmap4_from({FATTR4.SIZE, FATTR4.CHANGE})

        async def cb_getattr() -> NFSAttrs:
            op = cb.CB_GETATTR4args(fh=FH, attr_request=request)
            raw = await call_back(server, cb_compound(session.sessionid, [op]))
            res = cb.CB_COMPOUND4res.unpack(Decoder(raw))
            got = res.resarray[1]
            assert isinstance(got, cb.CB_GETATTR4res) and got.resok is not None
            return decode_fattr4(got.resok.obj_attributes)

        before = await cb_getattr()
        assert (before.size, before.change) == (SIZE, CHANGE)
        client.note_delegated_write(FH, SIZE + 4096)
        after = await cb_getattr()
        assert (after.size, after.change) == (SIZE + 4096, CHANGE + 1)


async def test_cb_getattr_without_a_write_delegation_is_refused(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = DelegServer()
    async with delegating(monkeypatch, server) as (session, _client, n):
        client_for(session, n)
        op = cb.CB_GETATTR4args(fh=FH, attr_request=bitmap4_from({FATTR4.SIZE}))
        raw = await call_back(server, cb_compound(session.sessionid, [op]))
        res = cb.CB_COMPOUND4res.unpack(Decoder(raw))
        assert res.resarray[1].status == nfsstat4.NFS4ERR_BADHANDLE


async def test_cb_recall_any_returns_all_but_the_number_to_keep_idle_first(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """20.6: keep at most craa_objects_to_keep read delegations; unused ones go first."""
    server = DelegServer()
    fhs = [bytes([i]) * 8 for i in range(2, 6)]
    async with delegating(monkeypatch, server) as (session, client, _n):
        states = [await client.open_fh(fh, OPEN4_SHARE_ACCESS_READ) for fh in fhs]
        for state in states[:3]:
            await client.release(state, OPEN4_SHARE_ACCESS_READ)
        op = cb.CB_RECALL_ANY4args(
            craa_objects_to_keep=1, craa_type_mask=bitmap4_from({RCA4_TYPE_MASK_RDATA_DLG})
        )
        await call_back(server, cb_compound(session.sessionid, [op]))
        await settle()
        assert ops_sent(server, "DELEGRETURN") == 3
        assert list(client.state.delegations) == [fhs[3]]  # the one in use stays


async def test_recallable_state_revoked_tests_frees_and_forgets(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """18.46.3: SEQ4_STATUS_RECALLABLE_STATE_REVOKED makes the state manager
    TEST_STATEID the delegations, FREE_STATEID the revoked one and close the open that
    was kept only for it; the other delegation stays."""
    server = DelegServer()
    other_fh = b"\x07" * 8
    async with delegating(monkeypatch, server) as (_session, client, n):
        manager = StateManager(client, n)
        manager.attach()
        for fh in (FH, other_fh):
            state = await client.open_fh(fh, OPEN4_SHARE_ACCESS_READ)
            await client.release(state, OPEN4_SHARE_ACCESS_READ)
        lost = client.state.delegations[FH]
        server.revoked.add(lost.stateid.other)
        server.status_flags = SEQ4_STATUS_RECALLABLE_STATE_REVOKED
        await client.getattr(FH)
        server.status_flags = 0
        await settle()
        assert ops_sent(server, "TEST_STATEID") == 1
        assert ops_sent(server, "FREE_STATEID") == 1
        assert list(client.state.delegations) == [other_fh]
        assert [s.fh for s in client.state.opens.values()] == [other_fh]
        assert client.stats.delegations_revoked == 1
        assert manager.statistics()["delegations"] == {
            "held": 1,
            "write": 0,
            "granted": 2,
            "recalled": 0,
            "returned": 0,
            "reclaimed": 0,
            "revoked": 1,
        }


async def test_reclaim_asks_for_the_delegation_back_with_claim_previous(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """10.2.1: after a restart the open is reclaimed with CLAIM_PREVIOUS and the
    delegation's type; the regained delegation's stateid replaces the old one.  A
    delegation the server does not give back is dropped, and its kept open closed."""
    server = DelegServer()
    other_fh = b"\x07" * 8
    async with delegating(monkeypatch, server) as (session, client, _n):
        for fh, access in ((FH, OPEN4_SHARE_ACCESS_BOTH), (other_fh, OPEN4_SHARE_ACCESS_READ)):
            state = await client.open_fh(fh, access)
            await client.release(state, access)
        before = client.state.delegations[FH].stateid
        opens = list(client.state.opens.values())
        delegs = list(client.state.delegations.values())
        server.opens.clear()
        calls = 0

        def second_not(self: DelegServer, op: nfs4.OPEN4args) -> nfs4.open_delegation4:
            nonlocal calls
            calls += 1
            if calls == 2:
                return nfs4.open_delegation4(
                    delegation_type=open_delegation_type4.OPEN_DELEGATE_NONE
                )
            return granting(self, op)

        granting = DelegServer._delegation
        monkeypatch.setattr(DelegServer, "_delegation", second_not)
        report = await reclaim_all(client, opens, [], session, delegs)
        claims = [(o.claim.claim, o.claim.delegate_type) for o in server.opens]
        assert claims == [
            (open_claim_type4.CLAIM_PREVIOUS, open_delegation_type4.OPEN_DELEGATE_WRITE),
            (open_claim_type4.CLAIM_PREVIOUS, open_delegation_type4.OPEN_DELEGATE_READ),
        ]
        # The open kept only for a delegation had no users: its access is reclaimed.
        assert server.opens[0].share_access & 0xFF == OPEN4_SHARE_ACCESS_BOTH
        assert report.delegations_reclaimed == 1 and report.lost_delegations == 1
        regained = client.state.delegations[FH]
        assert regained.stateid != before and regained.write
        assert list(client.state.delegations) == [FH]
        assert [s.fh for s in client.state.opens.values()] == [FH]
        assert client.stats.delegations_reclaimed == 1


async def test_forgotten_file_returns_its_idle_delegation(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The kernel forgot the inode: a delegation only an idle open used goes back."""
    server = DelegServer()
    async with delegating(monkeypatch, server) as (_session, client, _n):
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        await client.release(state, OPEN4_SHARE_ACCESS_READ)
        client.forget_fh(FH)
        await settle()
        assert ops_sent(server, "CLOSE") == 1 and ops_sent(server, "DELEGRETURN") == 1
        assert not client.state.opens and not client.state.delegations


async def test_return_all_at_unmount(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    server = DelegServer()
    async with delegating(monkeypatch, server) as (_session, client, _n):
        for i in range(3):
            state = await client.open_fh(bytes([9 + i]) * 8, OPEN4_SHARE_ACCESS_READ)
            await client.release(state, OPEN4_SHARE_ACCESS_READ)
        await client.return_all_delegations()
        assert ops_sent(server, "DELEGRETURN") == 3 and not server.delegations
        assert ops_sent(server, "CLOSE") == 3


async def test_delegation_granted_with_the_recall_flag_goes_back_at_once(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """18.16.3: ``recall`` set in the grant means the server wants it back already."""
    server = DelegServer(grant_recall=True)
    async with delegating(monkeypatch, server) as (_session, client, _n):
        state = await client.open_fh(FH, OPEN4_SHARE_ACCESS_READ)
        assert ops_sent(server, "DELEGRETURN") == 1
        await client.release(state, OPEN4_SHARE_ACCESS_READ)
        assert ops_sent(server, "CLOSE") == 1

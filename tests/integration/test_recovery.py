"""Reboot recovery against a real NFS-Ganesha that is restarted mid-test (RFC 8881 8.4.2).

Each test runs its own Ganesha (the shared one must not be restarted under other tests).
After ``GaneshaServer.restart()`` (same port and RecoveryRoot) the server has forgotten
the session and the client ID and is in its grace period: the client must find out from
the next COMPOUND (BIND_CONN_TO_SESSION / SEQUENCE: NFS4ERR_BADSESSION, CREATE_SESSION:
NFS4ERR_STALE_CLIENTID), build a new client ID and session, reclaim its opens
(OPEN CLAIM_PREVIOUS) and locks (LOCK reclaim=TRUE) through the ``StateManager``, send
RECLAIM_COMPLETE, and carry on with the caller's request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio

from contrib.ganesha import GaneshaServer
from fusenfs.fileio import WriteBehind
from recovery.manager import StateManager
from session.client import NFSClient, dir_type
from session.session import ServerSession, SessionOptions, host_co_ownerid
from session.status import NFS4Error
from session.xdr import nfs4
from session.xdr.codec import Buffer
from session.xdr.const import (
    OPEN4_SHARE_ACCESS_BOTH,
    nfs_lock_type4,
    nfsstat4,
    open_claim_type4,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs

from .recording import RecordingSession

pytestmark = pytest.mark.ganesha

GRACE = 30  # seconds: long enough that reclaim always happens inside it
LEASE = 10  # the renewer (every LEASE / 2) rarely meets the restart first


@asynccontextmanager
async def mounted(
    server: GaneshaServer, nursery: trio.Nursery
) -> AsyncIterator[tuple[RecordingSession, NFSClient, StateManager]]:
    """A session, a mounted client and its attached ``StateManager``."""
    tag = uuid.uuid4().hex
    session = RecordingSession(
        server.address,
        server.port,
        host_co_ownerid("test/" + tag),
        options=SessionOptions(timeo=10, retrans=3),
    )
    with trio.fail_after(30):
        await session.start(nursery)
        client = NFSClient(session, server.pseudo, owner_prefix=f"test-{tag}".encode())
        await client.mount()
    manager = StateManager(client, nursery)
    manager.attach()
    try:
        yield session, client, manager
    finally:
        with trio.CancelScope(shield=True):
            await session.shutdown()


@pytest.fixture
def rebootable(ganesha: GaneshaServer) -> Iterator[GaneshaServer]:
    """A Ganesha of this test's own, with a grace period (needs what ``ganesha`` needs)."""
    server = GaneshaServer(grace_period=GRACE, lease_lifetime=LEASE)
    try:
        server.start()
        server.wait_grace_over()
        yield server
    finally:
        server.cleanup()


async def restart(server: GaneshaServer) -> None:
    """Restart Ganesha in a later second than it started: its epoch (client IDs, session
    IDs, stateids, the write verifier) is its start time in seconds."""
    assert server.started_at is not None
    await trio.sleep(max(0.0, server.started_at + 2.0 - time.monotonic()))
    await trio.to_thread.run_sync(server.restart)


async def test_restart_reclaims_open_and_lock_in_grace(rebootable: GaneshaServer) -> None:
    server = rebootable
    name = f"reclaim-{uuid.uuid4().hex[:8]}"
    with trio.fail_after(GRACE + 60):
        async with trio.open_nursery() as nursery:
            async with mounted(server, nursery) as (session, client, manager):
                d, _ = await client.create(
                    client.root_fh, name.encode(), dir_type(), NFSAttrs(mode=0o755)
                )
                opened = await client.open(d, b"f", OPEN4_SHARE_ACCESS_BOTH, create=True)
                state = opened.state
                await client.write(opened.fh, state, 0, b"before restart", stable_how4.FILE_SYNC4)
                lock = await client.lock(state, b"A", 0, 100, write=True)
                assert lock.stateid is not None
                old = (session.clientid, session.sessionid, state.stateid, lock.stateid)

                await restart(server)
                assert server.in_grace() is True
                mark = len(session.exchanges)
                data, _ = await client.read(opened.fh, state, 0, 100)
                assert data == b"before restart"

                # What the client saw and did, in order.  Whichever COMPOUND met the
                # restart first (this READ, or the lease renewer) got NFS4ERR_BADSESSION.
                steps = session.steps(mark)
                assert any(status == "NFS4ERR_BADSESSION" for _, status in steps)
                i = steps.index(("CREATE_SESSION", "NFS4ERR_STALE_CLIENTID"))
                assert steps[i + 1 : i + 3] == [
                    ("EXCHANGE_ID", "NFS4_OK"),
                    ("CREATE_SESSION", "NFS4_OK"),
                ]
                reclaim_open = steps.index(("PUTFH OPEN", "NFS4_OK"))
                reclaim_lock = steps.index(("PUTFH LOCK", "NFS4_OK"))
                complete = steps.index(("RECLAIM_COMPLETE", "NFS4_OK"))
                assert i < reclaim_open < reclaim_lock < complete
                # A READ built before the restart and re-sent on the new session carries
                # the old stateid (Ganesha: NFS4ERR_STALE_STATEID); the client builds it
                # again with the reclaimed one.
                reads = [st for ops, st in steps[complete + 1 :] if ops == "PUTFH READ"]
                assert reads[-1] == "NFS4_OK"
                assert set(reads[:-1]) <= {"NFS4ERR_STALE_STATEID"}
                sent = [a for a, _ in session.exchanges[mark:]]
                (open_args,) = [
                    op for a in sent for op in a.argarray if isinstance(op, nfs4.OPEN4args)
                ]
                assert open_args.claim.claim == open_claim_type4.CLAIM_PREVIOUS
                assert open_args.share_access & OPEN4_SHARE_ACCESS_BOTH == OPEN4_SHARE_ACCESS_BOTH
                (lock_args,) = [
                    op for a in sent for op in a.argarray if isinstance(op, nfs4.LOCK4args)
                ]
                assert lock_args.reclaim
                assert (lock_args.offset, lock_args.length) == (0, 100)
                assert lock_args.locktype == nfs_lock_type4.WRITE_LT

                # New client ID, session and stateids; the same state objects.
                assert session.clientid != old[0] and session.sessionid != old[1]
                assert state.stateid.other != old[2].other
                assert lock.stateid is not None and lock.stateid.other != old[3].other
                assert client.state.find_open(opened.fh, client.open_owner(None)) is state
                assert session.stats.session_rebuilds >= 1
                assert any(e.what == "server restarted: reclaiming" for e in manager.log.events)
                assert manager.log.counters.get("reclaims") == 2
                assert not any(e.what == "state not reclaimed" for e in manager.log.events)

                # The lock is still ours: another client's LOCKT is denied (it may have to
                # wait out the grace period: NFS4ERR_GRACE is retried).
                other_session = ServerSession(
                    server.address, server.port, host_co_ownerid("test/" + uuid.uuid4().hex)
                )
                await other_session.start(nursery)
                try:
                    other = NFSClient(other_session, server.pseudo, owner_prefix=b"other")
                    await other.mount()
                    fh, _ = await other.lookup(d, b"f")
                    denied = await other.test_lock(fh, b"B", 10, 1, write=False)
                    assert denied is not None
                    assert (denied.offset, denied.length) == (0, 100)
                    assert denied.owner.clientid == session.clientid
                    assert denied.owner.owner == client.lock_owner(b"A")
                finally:
                    await other_session.shutdown()

                # And the reclaimed open writes, unlocks and closes as before.
                await client.write(opened.fh, state, 0, b"after  restart", stable_how4.FILE_SYNC4)
                await client.unlock(lock, 0, 100)
                await client.release(state, OPEN4_SHARE_ACCESS_BOTH)
                assert (server.export_path / name / "f").read_bytes() == b"after  restart"
            nursery.cancel_scope.cancel()


async def test_restart_changes_the_write_verifier_and_write_behind_resends(
    rebootable: GaneshaServer,
) -> None:
    """Unstable WRITEs before a restart, COMMIT after: the verifier differs, so the data
    is written again FILE_SYNC (RFC 8881 section 18.32.3)."""
    server = rebootable
    name = f"verf-{uuid.uuid4().hex[:8]}"
    data = bytes(range(256)) * 1024
    with trio.fail_after(GRACE + 60):
        async with trio.open_nursery() as nursery:
            async with mounted(server, nursery) as (_, client, _):
                opened = await client.open(
                    client.root_fh, name.encode(), OPEN4_SHARE_ACCESS_BOTH, create=True
                )

                async def write(
                    offset: int, chunk: Buffer, stable: stable_how4
                ) -> tuple[int, stable_how4, bytes]:
                    res = await client.write(opened.fh, opened.state, offset, chunk, stable)
                    return res.count, res.committed, res.writeverf

                async def commit() -> bytes:
                    return await client.commit(opened.fh)

                wb = WriteBehind(write, commit, block=64 * 1024, nursery=nursery)
                await wb.write(0, data)
                await wb.drain()
                await restart(server)
                assert server.in_grace() is True
                await wb.commit()
                assert wb.resends == len(data) // (64 * 1024)
                got, _ = await client.read(opened.fh, opened.state, 0, len(data))
                assert got == data
                await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
            nursery.cancel_scope.cancel()
    assert (server.export_path / name).read_bytes() == data


async def test_restart_without_grace_reports_the_state_lost(ganesha: GaneshaServer) -> None:
    """Grace_Period 0: the server is out of grace when the client comes back, so the
    reclaim gets NFS4ERR_NO_GRACE; the manager records the loss, the open is reported
    lost, and I/O with its old stateid fails instead of silently succeeding."""
    server = GaneshaServer(grace_period=0, lease_lifetime=LEASE)
    try:
        server.start()
        server.wait_grace_over()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                async with mounted(server, nursery) as (session, client, manager):
                    opened = await client.open(
                        client.root_fh, b"nograce", OPEN4_SHARE_ACCESS_BOTH, create=True
                    )
                    await restart(server)
                    assert server.in_grace() is False
                    with pytest.raises(NFS4Error) as info:
                        await client.read(opened.fh, opened.state, 0, 10)
                    steps = session.steps()
                    assert ("PUTFH OPEN", "NFS4ERR_NO_GRACE") in steps
                    lost = [e for e in manager.log.events if e.what == "state not reclaimed"]
                    assert len(lost) == 1 and "NO_GRACE" in lost[0].evidence
                    print("after a restart without grace:", info.value, steps)
                    assert info.value.status in {
                        nfsstat4.NFS4ERR_BAD_STATEID,
                        nfsstat4.NFS4ERR_STALE_STATEID,
                        nfsstat4.NFS4ERR_EXPIRED,
                    }
                nursery.cancel_scope.cancel()
    finally:
        server.cleanup()

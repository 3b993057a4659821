"""Migration recovery through the Python API: what the FUSE scenarios cannot see.

Everything runs in the test's trio loop: the contrib test-server cluster, an
``NFSClient`` with its attached ``StateManager`` (no FUSE, no daemon), and where needed
a second, independent client.  The checks look at protocol state directly: byte-range
locks held through ``NFSClient.lock`` after a migration (a conflicting LOCKT / LOCK from
another client on the destination, TEST_STATEID of the lock stateid there), the path
the manager took (``mgr.log.migrations`` and ``mgr.log.events``), path changes to a
trunkable address, server_scope / so_major_id changes at one address (seed 001
4.1.3), failover past an unusable location, and racing MOVED recoveries.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import trio

from contrib.testserver import Cluster, ClusterConfig, FsSpec, InstanceConfig, open_cluster
from contrib.testserver.server import EndpointConfig
from recovery.migration import test_stateids as stateid_codes
from session.client import OpenResult
from session.state import LockState
from session.status import NFS4Error
from session.xdr.const import OPEN4_SHARE_ACCESS_BOTH, nfsstat4, stable_how4

from .harness import ApiMount as Mount
from .harness import api_mount

LEASE = 4
GRACE = 3.0
DATA = b"locked bytes that travel with the file system"
#: The range ``owner1`` locks in every test.
RANGE = (0, 100)


def config(*instances: InstanceConfig) -> ClusterConfig:
    """A cluster of ``instances`` (default: A on 127.0.0.1, B on 127.0.0.2); a and b on A."""
    chosen = list(instances) or [
        InstanceConfig("A", [EndpointConfig("127.0.0.1")]),
        InstanceConfig("B", [EndpointConfig("127.0.0.2")]),
    ]
    for inst in chosen:
        inst.lease_time, inst.grace_time = LEASE, GRACE
    return ClusterConfig(chosen, [FsSpec("a"), FsSpec("b")], lease_time=LEASE, grace_time=GRACE)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with open_cluster(config()) as running:
        yield running


async def open_locked(m: Mount, name: bytes = b"locked") -> tuple[OpenResult, LockState]:
    """Create ``name``, write-lock RANGE as ``owner1``, write DATA (FILE_SYNC)."""
    opened = await m.client.open(m.client.root_fh, name, OPEN4_SHARE_ACCESS_BOTH, create=True)
    lock = await m.client.lock(opened.state, b"owner1", *RANGE, write=True)
    await m.client.write(opened.fh, opened.state, 0, DATA, stable_how4.FILE_SYNC4)
    return opened, lock


async def assert_lock_held(m: Mount, other: Mount, opened: OpenResult, lock: LockState) -> None:
    """The lock is ours on the server now serving the file: TEST_STATEID says OK there,
    another client's LOCKT and LOCK conflict; after LOCKU the other client gets it."""
    dest = m.session_of_fh(opened.fh)
    assert lock.stateid is not None
    assert await stateid_codes(dest, [lock.stateid, opened.state.stateid]) == [
        nfsstat4.NFS4_OK,
        nfsstat4.NFS4_OK,
    ]
    denied = await other.client.test_lock(opened.fh, b"intruder", 10, 1, write=False)
    assert denied is not None
    assert (denied.offset, denied.length) == RANGE
    assert denied.owner.owner == m.client.lock_owner(b"owner1")
    theirs = await other.client.open(other.client.root_fh, b"locked", OPEN4_SHARE_ACCESS_BOTH)
    assert theirs.fh == opened.fh
    with pytest.raises(NFS4Error) as refused:
        await other.client.lock(theirs.state, b"intruder", 50, 10, write=True)
    assert refused.value.status == nfsstat4.NFS4ERR_DENIED
    await m.client.unlock(lock, *RANGE)
    assert await other.client.test_lock(opened.fh, b"intruder", 10, 1, write=True) is None
    mine = await other.client.lock(theirs.state, b"intruder", 50, 10, write=True)
    await other.client.unlock(mine, 50, 10)


# ---------------------------------------------------------------------------- 1. locks
@pytest.mark.parametrize(
    ("tsm", "lose_lock", "expect"),
    [
        # (decision, reclaimed, tested, freed); the open for write brought a write
        # delegation, which TSM verifies with TEST_STATEID (one more tested)
        pytest.param(True, False, ("TSM", 0, 1, 0), id="tsm"),
        pytest.param(False, False, ("no TSM", 2, 0, 0), id="no-tsm"),
        pytest.param(True, True, ("TSM", 1, 3, 1), id="tsm-lock-stateid-lost"),
    ],
)
async def test_byte_range_lock_survives_migration(
    cluster: Cluster, tsm: bool, lose_lock: bool, expect: tuple[str, int, int, int]
) -> None:
    with trio.fail_after(20):
        async with api_mount(cluster, "holder") as m:
            opened, lock = await open_locked(m)
            assert lock.stateid is not None
            lost_other = lock.stateid.other
            report = await cluster.migrate(
                "a", to="B", tsm=tsm, lose_stateids=[lost_other.hex()] if lose_lock else []
            )
            if lose_lock:
                assert report.lost == [lost_other.hex()]
            data, _ = await m.client.read(opened.fh, opened.state, 0, 200)
            assert data == DATA

            (rec,) = m.mgr.log.migrations
            assert rec.ok and rec.kind == "migration" and rec.trigger == "NFS4ERR_MOVED"
            assert (rec.decision, rec.reclaimed, rec.tested, rec.freed) == expect
            b = cluster.instance("B").endpoints[0]
            assert rec.destination == f"{b.address}:{b.port}"
            assert m.session_of_fh(opened.fh).host == b.address
            assert m.events("RECLAIM_COMPLETE(rca_one_fs=TRUE)")
            if lose_lock:
                assert lock.stateid.other != lost_other  # reclaimed: a new lock stateid
            async with api_mount(cluster, "other", instance="B") as other:
                await assert_lock_held(m, other, opened, lock)


# ---------------------------------------------------------------------------- 2. path change
@pytest.mark.parametrize(
    ("minor", "relation"),
    [
        pytest.param(0, "session-trunkable", id="session-trunking"),
        pytest.param(1, "clientid-trunkable", id="clientid-trunking"),
    ],
)
async def test_trunkable_location_is_a_path_change(minor: int, relation: str) -> None:
    """Seed 001 4.2.4: the address in use stops serving the file system (NFS4ERR_MOVED
    there) while the same server goes on serving it at another address: no migration,
    no reclaim, no RECLAIM_COMPLETE; open and lock state stay valid."""
    trunked = InstanceConfig(
        "A", [EndpointConfig("127.0.0.1"), EndpointConfig("127.0.0.4", so_minor_id=minor)]
    )
    with trio.fail_after(20):
        async with (
            open_cluster(
                config(trunked, InstanceConfig("B", [EndpointConfig("127.0.0.2")]))
            ) as cluster,
            api_mount(cluster, "trunk", export="/export") as m,
        ):
            client = m.client
            a_dir, _ = await client.lookup(client.root_fh, b"a")
            b_dir, _ = await client.lookup(client.root_fh, b"b")
            opened = await client.open(a_dir, b"f", OPEN4_SHARE_ACCESS_BOTH, create=True)
            lock = await client.lock(opened.state, b"owner1", *RANGE, write=True)
            await client.write(opened.fh, opened.state, 0, DATA, stable_how4.FILE_SYNC4)
            in_b = await client.open(b_dir, b"g", OPEN4_SHARE_ACCESS_BOTH, create=True)
            await client.write(in_b.fh, in_b.state, 0, b"on b", stable_how4.FILE_SYNC4)
            src = m.session_of_fh(opened.fh)
            stateids = (opened.state.stateid, lock.stateid)

            cluster.retire_address("a", "127.0.0.1")
            data, _ = await client.read(opened.fh, opened.state, 0, 200)
            assert data == DATA

            (rec,) = m.mgr.log.migrations
            assert rec.ok and rec.kind == "path change" and rec.decision == relation
            assert (rec.reclaimed, rec.tested, rec.freed) == (0, 0, 0)
            new = cluster.instance("A").endpoints[1]
            assert rec.destination == f"{new.address}:{new.port}"
            dest = m.session_of_fh(opened.fh)
            assert dest is not src and dest.host == "127.0.0.4"
            assert dest.clientid == src.clientid
            if minor == 0:
                assert dest.sessionid == src.sessionid
                assert rec.session == "same session, new connection"
            else:
                assert dest.sessionid != src.sessionid
                assert rec.session == "new session on the same client ID"
            assert not m.events("RECLAIM_COMPLETE(rca_one_fs")
            record = cluster.instance("A").clients.get(src.clientid)
            assert record is not None and not record.reclaim_complete_fs  # none was sent
            assert not m.events("initial migration status")
            assert m.mgr.log.counters.get("reclaims", 0) == 0
            assert (opened.state.stateid, lock.stateid) == stateids
            assert await stateid_codes(dest, [s for s in stateids if s]) == [nfsstat4.NFS4_OK] * 2
            # b is still served at 127.0.0.1 by the source session; both paths work, in
            # turn and at once (with session trunking: one session, one slot table).
            assert m.session_of_fh(in_b.fh) is src
            for _ in range(3):
                assert (await client.read(in_b.fh, in_b.state, 0, 10))[0] == b"on b"
                assert (await client.read(opened.fh, opened.state, 0, 200))[0] == DATA
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(client.read, in_b.fh, in_b.state, 0, 10)
                    nursery.start_soon(client.read, opened.fh, opened.state, 0, 200)
            await src.compound([])
            await dest.compound([])
            async with api_mount(cluster, "other", export="/export", index=1) as other:
                await other.client.lookup(other.client.root_fh, b"a")
                denied = await other.client.test_lock(opened.fh, b"intruder", 0, 1, write=True)
            assert denied is not None and (denied.offset, denied.length) == RANGE
            await client.unlock(lock, *RANGE)
            await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)


# ---------------------------------------------------------------------------- 3. seed 4.1.3
SCOPE_LOST = "server_scope changed at this address: state treated as lost, not reclaimed"
MAJOR_CHANGED = "so_major_id changed under the same scope: attempting reclaims"
RECLAIMING = "server restarted: reclaiming"


async def test_new_server_scope_at_the_address_loses_state(cluster: Cluster) -> None:
    """Seed 001 4.1.3: after a restart the address answers with another server_scope:
    nothing obtained before can be trusted, so nothing is reclaimed; I/O with the old
    open state fails instead of being carried over."""
    with trio.fail_after(20):
        async with api_mount(cluster, "scope") as m:
            opened, _ = await open_locked(m)
            session = m.client.session
            before = session.clientid
            cluster.set_server_scope("A", b"another-scope")
            cluster.reboot("A")
            with pytest.raises(NFS4Error) as failed:
                await m.client.read(opened.fh, opened.state, 0, 200)
            assert failed.value.status in (
                nfsstat4.NFS4ERR_STALE_STATEID,
                nfsstat4.NFS4ERR_BAD_STATEID,
            )
            assert session.clientid != before
            assert session.exchange_id is not None
            assert session.exchange_id.eir_server_scope == b"another-scope"
            (lost,) = m.events(SCOPE_LOST)
            assert "b'fusenfs-testserver' -> b'another-scope'" in lost
            assert not m.events(RECLAIMING) and not m.events(MAJOR_CHANGED)
            assert m.mgr.log.counters.get("state_lost_scope_change") == 1
            assert m.mgr.log.counters.get("reclaims", 0) == 0
            assert cluster.instance("A").state.for_fs("a") == []  # nothing reclaimed


async def test_new_so_major_id_under_the_same_scope_reclaims(cluster: Cluster) -> None:
    """Seed 001 4.1.3: only so_major_id changed (same scope): filehandles may still be
    good, so the client reclaims its open and its lock, and they work as before."""
    with trio.fail_after(20):
        async with api_mount(cluster, "major") as m:
            opened, lock = await open_locked(m)
            old = (opened.state.stateid, lock.stateid)
            cluster.set_so_major_id("A", b"A-after-restart")
            cluster.reboot("A")
            data, _ = await m.client.read(opened.fh, opened.state, 0, 200)
            assert data == DATA
            (changed,) = m.events(MAJOR_CHANGED)
            assert "b'fusenfs-testserver/A' -> b'A-after-restart'" in changed
            (reclaiming,) = m.events(RECLAIMING)
            assert "1 opens, 1 lock owners" in reclaiming
            assert not m.events(SCOPE_LOST) and not m.events("state not reclaimed")
            assert m.mgr.log.counters.get("reclaims") == 2
            assert (opened.state.stateid, lock.stateid) != old
            async with api_mount(cluster, "other") as other:
                await assert_lock_held(m, other, opened, lock)


# ---------------------------------------------------------------------------- 4. failover
def unused_port(host: str) -> int:
    """A port on ``host`` where nothing listens (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unusable_first_location_is_skipped(cluster: Cluster) -> None:
    """The location list starts with an address where nothing listens: the client
    records it as unusable and migrates to the next one (RFC 8881 11.5.5)."""
    dead = f"127.0.0.9:{unused_port('127.0.0.9')}"
    with trio.fail_after(20):
        async with api_mount(cluster, "failover") as m:
            opened, lock = await open_locked(m)
            await cluster.migrate("a", to="B")
            cluster.set_locations("a", [[dead], ["B"]], replace=True)
            data, _ = await m.client.read(opened.fh, opened.state, 0, 200)
            assert data == DATA

            (rec,) = m.mgr.log.migrations
            b = cluster.instance("B").endpoints[0]
            assert rec.ok and rec.kind == "migration" and rec.decision == "TSM"
            assert rec.destination == f"{b.address}:{b.port}"
            (fetched,) = m.events("fetched location attributes")
            assert f"2 location elements: {dead}:/export/a, {b.address}:{b.port}" in fetched
            whats = [e.what for e in m.mgr.log.events]
            skipped = whats.index(f"location {dead} unusable")
            assert "cannot connect" in m.mgr.log.events[skipped].evidence
            assert skipped < whats.index(f"EXCHANGE_ID to {b.address}:{b.port}: not trunkable")
            assert dead not in m.mgr.servers
            async with api_mount(cluster, "other", instance="B") as other:
                await assert_lock_held(m, other, opened, lock)


# ---------------------------------------------------------------------------- 5. racing MOVED
async def test_concurrent_moved_errors_recover_once(cluster: Cluster) -> None:
    """Many reads meet NFS4ERR_MOVED at once: one recovery runs, the others wait for it
    (their calls parked), and every read succeeds at the destination."""
    readers, late = 16, 8
    with trio.fail_after(20):
        async with api_mount(cluster, "racing") as m:
            opened, _ = await open_locked(m)
            await cluster.migrate("a", to="B", tsm=False)
            results: list[bytes] = []

            async def read() -> None:
                data, _ = await m.client.read(opened.fh, opened.state, 0, 200)
                results.append(bytes(data))

            async with trio.open_nursery() as nursery:
                for _ in range(readers):
                    nursery.start_soon(read)
                # The first MOVED parks the file system before recovery's first await:
                # reads started from now on wait for the recovery without sending.
                while m.client.stats.moved_errors == 0:
                    await trio.sleep(0)
                for _ in range(late):
                    nursery.start_soon(read)
            assert results == [DATA] * (readers + late)
            assert m.client.stats.moved_errors >= 2  # the recoveries did race
            assert m.client.stats.parked_calls >= late
            (rec,) = m.mgr.log.migrations
            assert rec.ok and rec.decision == "no TSM" and rec.reclaimed == 2
            assert len(m.events("migration recovery starts")) == 1


async def test_a_referral_is_resolved_once_per_junction(cluster: Cluster) -> None:
    """Issue 9, item 7: LOOKUP of a junction meets NFS4ERR_MOVED each time (the kernel
    looks it up again whenever its entry expires), but the client follows the referral
    once (one location fetch, one EXCHANGE_ID) and then goes straight to the root it
    found on the other server."""
    cluster.add_referral("/export/a/far", "far", served_by="B")
    with trio.fail_after(60):
        async with api_mount(cluster, "referral") as m:
            first, _ = await m.client.lookup(m.client.root_fh, b"far")
            for _ in range(5):
                again, attrs = await m.client.lookup(m.client.root_fh, b"far")
                assert again == first and attrs.fileid is not None
            followed = [r for r in m.mgr.log.migrations if r.kind == "referral"]
            assert len(followed) == 1
            assert len(m.mgr.sessions()) == 2  # A, and B once


async def test_same_fsid_on_two_servers_then_one_migrates() -> None:
    """Issue 9, item 6: ``a`` on A and ``b`` on B report the same fsid (legal: an fsid
    means something only within one server).  The mount of A's /export reaches ``b``
    through a referral; then ``b`` moves to C.  Each file system must stay routed to
    its own server: keyed by fsid alone, the migration of ``b`` would re-route ``a``'s
    calls to C too (NFS4ERR_STALE or MOVED there)."""
    c = InstanceConfig("C", [EndpointConfig("127.0.0.3")])
    cfg = config(
        InstanceConfig("A", [EndpointConfig("127.0.0.1")]),
        InstanceConfig("B", [EndpointConfig("127.0.0.2")]),
        c,
    )
    cfg.filesystems[1].served_by = "B"
    async with open_cluster(cfg) as cluster:
        cluster.filesystem("b").fsid = cluster.filesystem("a").fsid
        with trio.fail_after(60):
            async with api_mount(cluster, "collide", export="/export") as m:
                client = m.client
                dir_a, _ = await client.lookup(client.root_fh, b"a")
                dir_b, _ = await client.lookup(client.root_fh, b"b")
                fs_a, fs_b = client.fs_of(dir_a), client.fs_of(dir_b)
                assert fs_a is not None and fs_b is not None and fs_a is not fs_b
                assert fs_a.fsid == fs_b.fsid
                in_a = await client.open(dir_a, b"fa", OPEN4_SHARE_ACCESS_BOTH, create=True)
                in_b = await client.open(dir_b, b"fb", OPEN4_SHARE_ACCESS_BOTH, create=True)
                await client.write(in_a.fh, in_a.state, 0, b"on a", stable_how4.FILE_SYNC4)
                await client.write(in_b.fh, in_b.state, 0, b"on b", stable_how4.FILE_SYNC4)
                await cluster.migrate("b", to="C", tsm=True)
                for _ in range(3):
                    assert (await client.read(in_b.fh, in_b.state, 0, 10))[0] == b"on b"
                    assert (await client.read(in_a.fh, in_a.state, 0, 10))[0] == b"on a"
                assert m.session_of_fh(in_b.fh).host == "127.0.0.3"
                assert m.session_of_fh(in_a.fh).host == "127.0.0.1"
                await client.release(in_a.state, OPEN4_SHARE_ACCESS_BOTH)
                await client.release(in_b.state, OPEN4_SHARE_ACCESS_BOTH)

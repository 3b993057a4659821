"""Delegations through a real mount of the contrib test server (issue 14).

The fusenfs mount is a daemon process; the test server cluster runs in the test's trio
loop; a second client is the Python API with its own client ID.  What is counted is
what fusenfs sent (``fusenfs stats``: COMPOUNDs by main operation), and what the server
saw (its event log and state table).

* A file opened read-only gets a read delegation; then stat and open/read/close of it
  send nothing.  A second client opening it for write makes the server recall it;
  fusenfs returns it within a second, the second client's open succeeds, and the first
  reads the second's data at its next open (close-to-open).
* A delegation held across migration: with TSM it moves and TEST_STATEID says it is
  valid on the destination; without TSM it is reclaimed there (CLAIM_PREVIOUS with the
  delegation type) in the per-file-system grace; lost in transit, it is freed and
  dropped while the application's open goes on.  A recall after the move works.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from contrib.testserver import Cluster
from session.xdr.const import OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ, stable_how4

from .harness import Scenario, api_mount, last_migration, scenario

pytestmark = pytest.mark.fuse

CONTENT = b"delegated content\n" * 200


def _operations(stats: dict[str, Any]) -> dict[str, int]:
    """COMPOUNDs sent, by main operation, lease renewals left out."""
    ops = {name: int(op["ops"]) for name, op in stats["operations"].items()}
    ops.pop("SEQUENCE", None)
    return ops


def _sent_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    a, b = _operations(before), _operations(after)
    return {name: b[name] - a.get(name, 0) for name in b if b[name] != a.get(name, 0)}


async def _settled(sc: Scenario, cluster: Cluster) -> dict[str, Any]:
    """The mount's statistics once server A holds no open of file system a: the RELEASE
    (and CLOSE) of a close(2) follows it, so a count taken at once may miss the last one.
    The server drops the open as it handles the CLOSE, and the mount counts the CLOSE
    when the reply comes, a moment later: the counts are read until they hold still."""
    for _ in range(50):
        if not [st for st in cluster.instance("A").state.for_fs("a") if st.kind() == "open"]:
            break
        await trio.sleep(0.1)
    else:
        raise AssertionError("server A still holds an open 5 s after the last close(2)")
    last = await sc.stats()
    for _ in range(25):
        await trio.sleep(0.2)
        now = await sc.stats()
        if _operations(now) == _operations(last):
            return now
        last = now
    raise AssertionError("the mount's COMPOUND counts still change 5 s after the last close")


def _open_read_close(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _delegations_of(cluster: Cluster, instance: str) -> list[Any]:
    return [st for st in cluster.instance(instance).state.for_fs("a") if st.kind() == "delegation"]


async def _delegated_file(sc: Scenario, name: str) -> str:
    """Create ``name`` with CONTENT through the mount, then open it read-only once:
    the read delegation comes with that OPEN."""
    path = os.path.join(sc.mountpoint, name)
    await trio.to_thread.run_sync(Path(path).write_bytes, CONTENT)
    assert await trio.to_thread.run_sync(_open_read_close, path) == CONTENT
    stats = await sc.stats()
    assert stats["delegations"]["held"] == 1, stats["delegations"]
    return path


async def test_release_downgrades_only_to_a_union_of_opens(cluster: Cluster) -> None:
    """A file opened for both, then for reading under that open (no OPEN sent: the
    open covers it), then closed for writing: READ alone was never an OPEN, so an
    OPEN_DOWNGRADE to it is NFS4ERR_INVAL (RFC 8881 section 18.18.3) and the open keeps
    both until CLOSE.  The mount hit this when close(2) of a writer reached the client
    after a reader had opened the file (the RELEASE is asynchronous)."""
    with trio.fail_after(60):
        async with api_mount(cluster, "downgrade") as m:
            client = m.client
            opened = await client.open(
                client.root_fh, b"downgrade", OPEN4_SHARE_ACCESS_BOTH, create=True
            )
            state = opened.state
            reader = await client.open_fh(opened.fh, OPEN4_SHARE_ACCESS_READ)
            assert reader is state and state.users[OPEN4_SHARE_ACCESS_READ] == 1
            await client.release(state, OPEN4_SHARE_ACCESS_BOTH)  # was: NFS4ERR_INVAL
            assert state.server_access == OPEN4_SHARE_ACCESS_BOTH
            data, _ = await client.read(opened.fh, state.stateid, 0, 10)
            assert data == b""
            await client.release(state, OPEN4_SHARE_ACCESS_READ)
            await client.remove(client.root_fh, b"downgrade")


async def test_read_delegation_serves_stat_and_open_locally_until_recalled(
    cluster: Cluster,
) -> None:
    with trio.fail_after(120):
        async with scenario(cluster) as sc:
            path = await _delegated_file(sc, "deleg-read")
            (deleg,) = _delegations_of(cluster, "A")
            before = await sc.stats()
            for _ in range(20):
                await trio.to_thread.run_sync(os.stat, path)
                assert await trio.to_thread.run_sync(_open_read_close, path) == CONTENT
            await trio.sleep(1.5)  # past actimeo=1: the kernel asks again; still local
            for _ in range(5):
                await trio.to_thread.run_sync(os.stat, path)
                assert await trio.to_thread.run_sync(_open_read_close, path) == CONTENT
            after = await sc.stats()
            sent = _sent_between(before, after)
            # The path walk revalidates the directory once its 1 s attribute time is
            # out (a GETATTR of the root, not delegated); the file itself costs nothing.
            assert set(sent) <= {"GETATTR"} and sent.get("GETATTR", 0) <= 2, sent

            async with api_mount(cluster, "writer") as other:
                root = other.client.root_fh
                started = time.time()
                opened = await other.client.open(root, b"deleg-read", OPEN4_SHARE_ACCESS_BOTH)
                waited = time.time() - started
                new = CONTENT.upper()  # the same length: no truncation needed
                await other.client.write(opened.fh, opened.state, 0, new, stable_how4.FILE_SYNC4)
                await other.client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
            events = cluster.events.find()
            recalled = [e for e in events if e.kind == "cb-recall"]
            returned = [
                e
                for e in events
                if e.kind == "delegation-returned" and e.details["stateid"] == deleg.other.hex()
            ]
            assert recalled and returned
            assert returned[0].time - recalled[0].time < 1.0
            assert waited < 5, f"the second client's OPEN waited {waited:.1f} s"
            # Close-to-open: the first client's next open sees the second's data.
            assert await trio.to_thread.run_sync(_open_read_close, path) == new
            stats = await sc.stats()
    assert stats["delegations"]["recalled"] == 1
    assert stats["delegations"]["returned"] == 1
    assert stats["delegations"]["held"] == 1  # the new read-only open got a new one


def _read_uncached(fd: int) -> bytes:
    """pread after dropping the kernel's pages: the READ reaches the server."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return os.pread(fd, len(CONTENT) + 100, 0)


VARIANTS = ["tsm", "no-tsm", "lost-delegation"]


@pytest.mark.parametrize("variant", VARIANTS)
async def test_delegation_held_across_migration(cluster: Cluster, variant: str) -> None:
    """An application holds the file open read-only, with the delegation; the file
    system moves; LEASE_MOVED on the lease renewal starts recovery.  The application
    sees nothing, and the delegation is where the variant says: transferred and tested
    (TSM), reclaimed in the destination's per-FS grace (no TSM), or freed and dropped
    (lost in transit).  A second client's write open is then recalled on B."""
    with trio.fail_after(150):
        async with scenario(cluster) as sc:
            path = await _delegated_file(sc, f"deleg-{variant}")
            fd = await trio.to_thread.run_sync(os.open, path, os.O_RDONLY)
            try:
                (deleg,) = _delegations_of(cluster, "A")
                options: dict[str, Any] = {"tsm": variant != "no-tsm"}
                if variant == "lost-delegation":
                    options["lose_stateids"] = [deleg.other.hex()]
                await cluster.migrate("a", to="B", **options)
                # No application call reaches the server (the delegation answers them):
                # the lease renewal's SEQ4_STATUS_LEASE_MOVED starts the recovery.
                for _ in range(100):
                    stats = await sc.stats()
                    if [m for m in stats["migrations"] if m["kind"] != "referral"]:
                        break
                    await trio.sleep(0.2)
                m = last_migration(stats)
                assert m["ok"], m
                assert await trio.to_thread.run_sync(_read_uncached, fd) == CONTENT
                on_b = _delegations_of(cluster, "B")
                whats = [e["what"] for e in stats["events"]]
                if variant == "tsm":
                    assert m["decision"] == "TSM"
                    assert "TEST_STATEID: 1 of 1 delegations transferred" in whats
                    assert [d.other for d in on_b] == [deleg.other]
                    assert stats["delegations"]["held"] == 1
                elif variant == "no-tsm":
                    assert m["decision"] == "no TSM"
                    assert any(w.startswith("delegations: 1 reclaimed") for w in whats), whats
                    assert len(on_b) == 1 and stats["delegations"]["reclaimed"] == 1
                else:
                    assert "TEST_STATEID: 0 of 1 delegations transferred" in whats
                    assert stats["delegations"]["held"] == 0
                    assert stats["delegations"]["revoked"] == 1
                async with api_mount(cluster, "writer", instance="B") as other:
                    opened = await other.client.open(
                        other.client.root_fh, f"deleg-{variant}".encode(), OPEN4_SHARE_ACCESS_BOTH
                    )
                    await other.client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
                assert not _delegations_of(cluster, "B")
                assert await trio.to_thread.run_sync(_read_uncached, fd) == CONTENT
            finally:
                await trio.to_thread.run_sync(os.close, fd)


async def test_nodeleg_declines_and_every_open_goes_to_the_server(cluster: Cluster) -> None:
    """-o nodeleg: OPEN says WANT_NO_DELEG, the server grants none, and each open and
    close of the file is an OPEN and a CLOSE again."""
    with trio.fail_after(120):
        async with scenario(cluster, options="nodeleg") as sc:
            path = os.path.join(sc.mountpoint, "declined")
            await trio.to_thread.run_sync(Path(path).write_bytes, CONTENT)
            assert await trio.to_thread.run_sync(_open_read_close, path) == CONTENT
            before = await _settled(sc, cluster)
            for _ in range(5):
                assert await trio.to_thread.run_sync(_open_read_close, path) == CONTENT
            after = await _settled(sc, cluster)
    assert not _delegations_of(cluster, "A")
    assert after["delegations"]["held"] == 0 and after["delegations"]["granted"] == 0
    sent = _sent_between(before, after)
    assert sent.get("OPEN") == 5 and sent.get("CLOSE") == 5, sent

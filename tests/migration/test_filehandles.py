"""Volatile filehandles through a real mount (issue 9, item 9; RFC 8881 4.2.3, 11.11.2).

The contrib test server expires a file system's filehandles on demand, or gives the
file system new ones on the destination of a migration.  An application with open
files doing I/O must not notice: the client, told NFS4ERR_FHEXPIRED, finds each object
again by its path (LOOKUP from the root), keeps inode numbers, open files, stateids and
locks, and sends the request again.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from contrib.testserver import Cluster, open_cluster

from .harness import assert_app_unharmed, last_migration, scenario, three_instances

pytestmark = pytest.mark.fuse

SETTLE = 1.0


@pytest.fixture
async def volatile() -> AsyncIterator[Cluster]:
    """Instances A, B, C; file system ``a`` with FH4_VOLATILE_ANY filehandles."""
    config = three_instances()
    config.filesystems[0].fh_expire_type = "volatile-any"
    async with open_cluster(config) as running:
        yield running


async def run_app_through(cluster: Cluster, event: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mount /export/a, start the application, run ``event()``, let it run on."""
    with trio.fail_after(120):
        async with scenario(cluster) as sc:
            app = await sc.start_app()
            await trio.sleep(SETTLE)
            await event()
            await trio.sleep(SETTLE)
            listing = await trio.to_thread.run_sync(os.listdir, sc.mountpoint)
            assert {"log.dat", "ref.dat"} <= set(listing)
            result = await app.finish()
            stats = await sc.stats()
    assert_app_unharmed(result)
    return result, stats


async def test_expired_filehandles_are_found_again_by_path(volatile: Cluster) -> None:
    async def expire() -> None:
        report = volatile.expire_filehandles("a")
        assert report.epoch >= 1

    result, _stats = await run_app_through(volatile, expire)
    assert result["blocks"] > 0
    assert volatile.events.find("fhexpired")  # the client did meet NFS4ERR_FHEXPIRED


@pytest.mark.parametrize("tsm", [True, False])
async def test_migration_to_new_filehandles(volatile: Cluster, tsm: bool) -> None:
    async def move() -> None:
        await volatile.migrate("a", to="B", tsm=tsm, new_filehandles=True)

    _result, stats = await run_app_through(volatile, move)
    m = last_migration(stats)
    assert m["ok"], m
    found = [e for e in stats["events"] if "new filehandles" in e["what"]]
    assert found, stats["events"][-20:]
    if not tsm:
        assert m["reclaimed"] >= 2  # reclaimed with the new filehandles


async def test_listing_after_expiry_keeps_open_files(volatile: Cluster) -> None:
    """A READDIR that brings a known file's new filehandle before any I/O met the old
    one expired: the open file must move to the new handle with its state, not be
    left with a handle the mount no longer knows (ESTALE at the next WRITE)."""

    def open_and_write(path: str) -> tuple[int, int]:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
        os.pwrite(fd, b"before", 0)
        os.fsync(fd)
        return fd, os.fstat(fd).st_ino

    def write_again(fd: int) -> bytes:
        os.pwrite(fd, b"after!", 6)
        os.fsync(fd)  # the WRITE and COMMIT go with the file's filehandle
        return os.pread(fd, 64, 0)

    with trio.fail_after(60):
        async with scenario(volatile) as sc:
            path = os.path.join(sc.mountpoint, "kept.dat")
            fd, ino = await trio.to_thread.run_sync(open_and_write, path)
            try:
                volatile.expire_filehandles("a")
                # The listing meets the root's expired handle first, and learns every
                # entry's new handle from READDIR.
                assert "kept.dat" in await trio.to_thread.run_sync(os.listdir, sc.mountpoint)
                assert await trio.to_thread.run_sync(write_again, fd) == b"beforeafter!"
                assert (await trio.to_thread.run_sync(os.fstat, fd)).st_ino == ino
            finally:
                os.close(fd)

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

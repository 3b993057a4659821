"""A migration loop: 100 moves of one file system back and forth under load.

A writer appends and a reader verifies throughout (tests/migration/app.py); the test
waits for the client to finish each recovery before the next move.  It prints the
median and longest recovery (the time the file system was parked, from ``fusenfs
stats``) and the longest operation the application saw.
"""

from __future__ import annotations

import pytest
import trio

from contrib.testserver import Cluster

from .harness import assert_app_unharmed, scenario

pytestmark = pytest.mark.fuse

MIGRATIONS = 100


async def test_one_hundred_migrations_back_and_forth(cluster: Cluster) -> None:
    with trio.fail_after(600):
        async with scenario(cluster) as sc:
            app = await sc.start_app()
            await trio.sleep(0.5)
            for i in range(MIGRATIONS):
                await cluster.migrate("a", to="B" if i % 2 == 0 else "A")
                with trio.fail_after(30):
                    while True:
                        stats = await sc.stats()
                        summary = stats["summary"]
                        if summary["migrations"] + summary["failed"] > i:
                            break
                        await trio.sleep(0.02)
                assert summary["failed"] == 0, stats["migrations"][-3:]
            await trio.sleep(0.5)
            result = await app.finish()
            stats = await sc.stats()
    assert_app_unharmed(result)
    summary = stats["summary"]
    assert summary["migrations"] == MIGRATIONS and summary["failed"] == 0
    print(
        f"\n{MIGRATIONS} migrations: recovery median {summary['recovery_ms_median']} ms, "
        f"longest {summary['recovery_ms_longest']} ms; application: {result['ops']} operations, "
        f"median {result['median_op'] * 1000:.2f} ms, longest {result['max_pause'] * 1000:.1f} ms, "
        f"{len(result['pauses_over_20ms'])} over 20 ms"
    )

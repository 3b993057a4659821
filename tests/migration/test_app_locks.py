"""Application fcntl locks carried across migrations, through a real mount (issue 8).

A process on the fusenfs mount holds a write lock; an independent client (the Python
API, another client ID) checks on the server now serving the file that the lock is
still there after the move — its LOCKT conflicts with exactly the locked range — and
that it is gone once the application unlocks.  Variants: TSM (the lock stateid moves
with the file system), no TSM (reclaimed in the destination's per-file-system grace),
and TSM with the lock stateid lost in transit (TEST_STATEID, FREE_STATEID, reclaim).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from contrib.testserver import Cluster

from .harness import LineReader, api_mount, last_migration, scenario

pytestmark = pytest.mark.fuse

HOLDER = Path(__file__).parents[1] / "fuse" / "lockholder.py"


class AsyncHolder:
    """tests/fuse/lockholder.py as a trio process: one command, one answer line."""

    def __init__(self, proc: trio.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self._stdin = proc.stdin
        self._lines = LineReader(proc.stdout)

    @classmethod
    async def start(cls, path: str) -> AsyncHolder:
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(HOLDER), path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return cls(proc)

    async def ask(self, command: str, timeout: float = 30) -> str:
        with trio.fail_after(timeout):
            await self._stdin.send_all(command.encode() + b"\n")
            return await self._lines.line()

    def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


VARIANTS: dict[str, dict[str, Any]] = {
    "tsm": {"tsm": True},
    "no-tsm": {"tsm": False},
    "lost-lock-stateid": {"tsm": True},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_application_lock_survives_migration(cluster: Cluster, variant: str) -> None:
    name = f"locked-{variant}"
    with trio.fail_after(120):
        async with scenario(cluster) as sc:
            path = os.path.join(sc.mountpoint, name)
            await trio.to_thread.run_sync(Path(path).write_bytes, b"locked data")
            holder = await AsyncHolder.start(path)
            try:
                assert await holder.ask("open rw") == "ok"
                assert await holder.ask("setlk w 0 100") == "ok"
                async with api_mount(cluster, "other") as other:
                    fh, _ = await other.client.lookup(other.client.root_fh, name.encode())
                    before = await other.client.test_lock(fh, b"intruder", 10, 1, write=False)
                    assert before is not None
                    options = dict(VARIANTS[variant])
                    if variant == "lost-lock-stateid":
                        state = cluster.instance("A").state.for_fs("a")
                        locks = [st.other.hex() for st in state if st.kind() == "lock"]
                        assert len(locks) == 1
                        options["lose_stateids"] = locks
                    await cluster.migrate("a", to="B", **options)
                    # The application's next lock request meets NFS4ERR_MOVED: recovery.
                    assert await holder.ask("getlk w 200 1") == "none"
                    denied = await other.client.test_lock(fh, b"intruder", 10, 1, write=False)
                    assert denied is not None, "the lock did not survive the migration"
                    assert (denied.offset, denied.length) == (0, 100)
                    assert other.client.session_for(other.client.fs_of(fh)).host == "127.0.0.2"
                    assert await holder.ask("setlk u 0 100") == "ok"
                    assert await other.client.test_lock(fh, b"intruder", 0, 1, write=True) is None
            finally:
                holder.stop()
            stats = await sc.stats()
    m = last_migration(stats)
    assert m["ok"], m
    if variant == "no-tsm":
        assert m["decision"] == "no TSM" and m["reclaimed"] >= 2
    elif variant == "lost-lock-stateid":
        assert m["freed"] >= 1 and m["reclaimed"] >= 1
    else:
        assert m["decision"] == "TSM" and m["reclaimed"] == 0


async def test_lock_that_cannot_be_reclaimed_is_reported(cluster: Cluster) -> None:
    """The lock was revoked on the source before a move without TSM; the destination's
    per-file-system grace refuses its reclaim (NFS4ERR_RECLAIM_BAD).  The application's
    next I/O on the file fails with EIO (not silently unlocked), ``fusenfs stats`` names
    the file, and after the application unlocks the file works again."""
    name = "revoked-lock"
    with trio.fail_after(120):
        async with scenario(cluster) as sc:
            path = os.path.join(sc.mountpoint, name)
            await trio.to_thread.run_sync(Path(path).write_bytes, b"locked data")
            holder = await AsyncHolder.start(path)
            try:
                assert await holder.ask("open rw") == "ok"
                assert await holder.ask("setlk w 0 100") == "ok"
                state = cluster.instance("A").state.for_fs("a")
                (lock,) = [st.other.hex() for st in state if st.kind() == "lock"]
                cluster.revoke("A", lock)
                await cluster.migrate("a", to="B", tsm=False)
                ino = (await trio.to_thread.run_sync(os.stat, path)).st_ino
                assert await holder.ask("getlk w 200 1") == "none"  # recovery runs now

                def read() -> bytes:
                    with open(path, "rb") as f:
                        return f.read()

                with pytest.raises(OSError) as info:
                    await trio.to_thread.run_sync(read)
                assert info.value.errno == 5  # EIO
                stats = await sc.stats()
                lost = [e for e in stats["events"] if e["what"].startswith("lock lost on")]
                assert lost and f"inode {ino}" in lost[0]["what"]
                assert "9.11" in lost[0]["rule"]
                assert await holder.ask("setlk u 0 100") == "ok"
                assert await trio.to_thread.run_sync(read) == b"locked data"
            finally:
                holder.stop()

"""Application locks through two real mounts of one NFS-Ganesha export (issue 8).

Each lock is taken by a separate process (``lockholder.py``: the lock owner is the
process) on mount A or mount B; the two mounts are two NFSv4.1 clients of the server, so
a conflict between them can only be seen if the locks reached the server.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer

from .helpers import Mount, MountFactory, Workspace, wait_until

HOLDER = Path(__file__).with_name("lockholder.py")
CONFLICT = {str(errno.EAGAIN), str(errno.EACCES)}


class Holder:
    """One lockholder process; every read of its answers is bounded."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HOLDER), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 20.0) -> str | None:
        """The next answer line, or None if none came within ``timeout`` seconds."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().strip()

    def ask(self, command: str, timeout: float = 20.0) -> str:
        self.send(command)
        got = self.answer(timeout)
        assert got is not None, f"{command!r}: no answer in {timeout} s"
        return got

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for h in made:
        h.stop()


@pytest.fixture
def two_mounts(ws: Workspace, mount: MountFactory) -> tuple[Path, Path]:
    """The same file through mount A (``ws``) and a second mount B."""
    a = ws.dir / "locked"
    a.write_bytes(b"x" * 4096)
    other: Mount = mount()
    b = other.path / ws.dir.name / "locked"
    assert b.read_bytes() == b"x" * 4096
    return a, b


def holder(holders: list[Holder], path: Path, mode: str = "rw") -> Holder:
    h = Holder(path)
    holders.append(h)
    assert h.ask(f"open {mode}") == "ok"
    return h


def test_fcntl_lock_on_a_stops_b_and_getlk_reports_it(
    two_mounts: tuple[Path, Path], holders: list[Holder]
) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("setlk w 0 100") == "ok"
    assert hb.ask("setlk w 50 10").split()[-1] in CONFLICT
    assert hb.ask("setlk r 0 1").split()[-1] in CONFLICT
    assert hb.ask("setlk w 100 50") == "ok"  # a disjoint range: at once
    kind, start, length, _pid = hb.ask("getlk w 0 0").split()
    assert (kind, start, length) == ("w", "0", "100")
    assert ha.ask("setlk u 0 100") == "ok"
    assert hb.ask("setlk w 0 100") == "ok"


def test_posix_split_and_downgrade_reach_the_server(
    two_mounts: tuple[Path, Path], holders: list[Holder]
) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("setlk w 0 100") == "ok"
    assert ha.ask("setlk u 40 20") == "ok"  # split: [0, 40) and [60, 100) stay
    assert hb.ask("setlk w 40 20") == "ok"
    assert hb.ask("setlk w 0 10").split()[-1] in CONFLICT
    assert hb.ask("setlk u 40 20") == "ok"
    assert ha.ask("setlk r 0 40") == "ok"  # downgrade of the first piece
    assert hb.ask("setlk r 0 10") == "ok"  # shares a read lock now
    assert hb.ask("setlk w 70 1").split()[-1] in CONFLICT  # [60, 100) is still a write lock


def test_flock_on_a_stops_b_and_is_shared_for_readers(
    two_mounts: tuple[Path, Path], holders: list[Holder]
) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("flock ex-nb") == "ok"
    assert hb.ask("flock ex-nb") == f"err {errno.EWOULDBLOCK}"
    assert hb.ask("flock sh-nb") == f"err {errno.EWOULDBLOCK}"
    assert ha.ask("flock sh") == "ok"  # conversion to shared
    assert hb.ask("flock sh-nb") == "ok"
    assert ha.ask("flock un") == "ok"
    assert hb.ask("flock un") == "ok"
    assert hb.ask("flock ex-nb") == "ok"


def test_lockf_is_a_posix_lock_too(two_mounts: tuple[Path, Path], holders: list[Holder]) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("lockf 10 10") == "ok"
    assert hb.ask("setlk w 15 1").split()[-1] in CONFLICT


def test_blocking_lock_is_granted_soon_after_release(
    two_mounts: tuple[Path, Path], holders: list[Holder]
) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("setlk w 0 0") == "ok"
    hb.send("setlkw w 0 0")
    assert hb.answer(timeout=2.0) is None  # waits
    released = time.monotonic()
    assert ha.ask("setlk u 0 0") == "ok"
    assert hb.answer(timeout=10.0) == "ok"
    assert time.monotonic() - released < 1.0
    assert ha.ask("setlk w 0 1").split()[-1] in CONFLICT


def test_flock_waiter_is_granted_after_release(
    two_mounts: tuple[Path, Path], holders: list[Holder]
) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("flock ex") == "ok"
    hb.send("flock ex")
    assert hb.answer(timeout=2.0) is None
    released = time.monotonic()
    assert ha.ask("close") == "ok"  # the last close of the description releases it
    assert hb.answer(timeout=10.0) == "ok"
    assert time.monotonic() - released < 1.0


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_waiting_process_interrupted_leaves_no_lock(
    two_mounts: tuple[Path, Path], holders: list[Holder], how: str
) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("setlk w 0 0") == "ok"
    hb.send("setlkw w 0 0")
    assert hb.answer(timeout=2.0) is None
    sent = time.monotonic()
    hb.proc.send_signal(getattr(signal, how))
    if how == "SIGKILL":
        hb.proc.wait(timeout=5)
    else:
        assert hb.answer(timeout=5.0) == f"err {errno.EINTR}"
    assert time.monotonic() - sent < 2.0
    assert ha.ask("setlk u 0 0") == "ok"
    time.sleep(1.0)  # a LOCK that was in flight when the waiter left is undone by now
    hc = holder(holders, a)
    assert hc.ask("setlk w 0 0") == "ok"  # nothing of B's is left on the server


def test_close_and_exit_release_posix_locks(
    two_mounts: tuple[Path, Path], holders: list[Holder]
) -> None:
    a, b = two_mounts
    ha, hb = holder(holders, a), holder(holders, b)
    assert ha.ask("setlk w 0 10") == "ok"
    assert hb.ask("setlk w 0 10").split()[-1] in CONFLICT
    assert ha.ask("close") == "ok"  # POSIX: any close by the owner releases
    assert hb.ask("setlk w 0 10") == "ok"
    assert hb.ask("setlk u 0 10") == "ok"
    hd = holder(holders, a)
    assert hd.ask("setlk w 0 10") == "ok"
    hd.send("exit")
    hd.proc.wait(timeout=10)
    assert wait_until(lambda: hb.ask("setlk w 0 10") == "ok", timeout=10)


def test_nolock_keeps_locks_local(
    ws: Workspace, mount: MountFactory, holders: list[Holder]
) -> None:
    a = ws.dir / "local"
    a.write_bytes(b"y")
    local = mount("nolock")
    b = local.path / ws.dir.name / "local"
    ha, hb = holder(holders, a), holder(holders, b)
    assert hb.ask("setlk w 0 0") == "ok"  # local to mount B: the server never sees it
    assert ha.ask("setlk w 0 0") == "ok"
    hb2 = holder(holders, b)
    assert hb2.ask("setlk w 0 0").split()[-1] in CONFLICT  # but it works on B itself


def test_lock_revalidates_cached_data(two_mounts: tuple[Path, Path], holders: list[Holder]) -> None:
    """RFC 8881 section 10.3.2: a reader that locks sees what a writer wrote under a
    lock through another client, even with the data cached."""
    a, b = two_mounts
    with open(b, "rb") as f:
        assert f.read() == b"x" * 4096  # cached on B
        ha = holder(holders, a)
        assert ha.ask("setlk w 0 0") == "ok"
        with open(a, "r+b") as w:
            w.write(b"new!")
        assert ha.ask("setlk u 0 0") == "ok"
        hb = holder(holders, b)
        assert hb.ask("setlk r 0 0") == "ok"
        f.seek(0)
        assert f.read(4) == b"new!"
    os.sync()


def test_lock_is_reclaimed_after_a_server_restart(
    ganesha: GaneshaServer, mount: MountFactory, holders: list[Holder]
) -> None:
    """Ganesha restarts with a lock held: mount A reclaims it in the grace period, so a
    process on mount B is still refused, until A unlocks (RFC 8881 sections 8.4.2.1,
    9.11).  A Ganesha of this test's own: the shared one must not restart."""
    server = GaneshaServer(grace_period=15, lease_lifetime=10)
    try:
        server.start()
        server.wait_grace_over()
        ma, mb = mount(port=server.port), mount(port=server.port)
        (ma.path / "f").write_bytes(b"z" * 10)
        ha, hb = holder(holders, ma.path / "f"), holder(holders, mb.path / "f")
        assert ha.ask("setlk w 0 0") == "ok"
        assert hb.ask("setlk w 0 0").split()[-1] in CONFLICT
        started = server.started_at or 0.0
        time.sleep(max(0.0, started + 2.0 - time.monotonic()))  # a new epoch second
        server.restart()
        # B's LOCK waits out the grace period (NFS4ERR_GRACE), then meets A's reclaimed lock.
        assert hb.ask("setlk w 0 0", timeout=60).split()[-1] in CONFLICT
        assert ha.ask("setlk u 0 0") == "ok"
        assert hb.ask("setlk w 0 0") == "ok"
        for h in holders:
            h.stop()
        problems = mb.unmount() + ma.unmount()
        assert not problems, problems
    finally:
        server.cleanup()

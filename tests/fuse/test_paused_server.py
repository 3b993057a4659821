"""A mount whose server stops answering (issue 7): bounded waits, killable processes.

NFS-Ganesha of this test's own is paused with SIGSTOP (its listening socket still
accepts connections, so every reconnect succeeds and then hears nothing, which is how a
BIND_CONN_TO_SESSION without a deadline used to hang forever).  With ``timeo=20,
retrans=1`` (about 4 s of retry budget) a ``stat`` must fail within 15 s, a process
blocked in ``cat`` must die within a second of SIGKILL (FUSE INTERRUPT), and after
SIGCONT the same mount works again, without a restart.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from contrib.ganesha import GaneshaServer

from .helpers import MiB, MountFactory, wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]


@pytest.fixture
def pausable(ganesha: GaneshaServer) -> Iterator[GaneshaServer]:
    """A Ganesha of this test's own (pausing the shared one would stall other tests);
    resumed and stopped afterwards whatever happened."""
    server = GaneshaServer()
    try:
        server.start()
        server.wait_grace_over()
        yield server
    finally:
        pid = server.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        server.cleanup()


def test_paused_server_bounded_and_killable_then_works_again(
    pausable: GaneshaServer, mount: MountFactory
) -> None:
    server = pausable
    m = mount("soft,timeo=20,retrans=1", port=server.port)
    (server.export_path / "uncached.bin").write_bytes(os.urandom(8 * MiB))
    (m.path / "before.txt").write_bytes(b"written before the pause")
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            os.stat(m.path / "a-new-name")
        assert info.value.errno in (errno.EIO, errno.ETIMEDOUT), info.value
        assert time.monotonic() - started < 15

        cat = subprocess.Popen(["cat", str(m.path / "uncached.bin")], stdout=subprocess.DEVNULL)
        time.sleep(1.5)
        assert cat.poll() is None, "cat should be waiting for the paused server"
        killed = time.monotonic()
        cat.kill()
        cat.wait(timeout=10)
        assert time.monotonic() - killed < 1.0
    finally:
        os.kill(pid, signal.SIGCONT)
    # The same mount works again once the server answers.
    assert wait_until(lambda: (m.path / "before.txt").exists(), timeout=30)
    assert (m.path / "before.txt").read_bytes() == b"written before the pause"
    with open(m.path / "uncached.bin", "rb") as f:
        assert len(f.read()) == 8 * MiB
    (m.path / "after.txt").write_bytes(b"and after")
    assert (server.export_path / "after.txt").read_bytes() == b"and after"
    warnings = [line for line in m.log_text().splitlines() if " session WARNING " in line]
    assert sum("not responding" in line for line in warnings) == 1, warnings
    assert sum(line.endswith(" OK") for line in warnings) == 1, warnings

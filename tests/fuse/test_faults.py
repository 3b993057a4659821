"""Long transfers survive the TCP connection being cut under them.

The mount talks to Ganesha through ``contrib.tcpproxy``; SIGUSR1 makes the proxy reset
every connection (an RST each way, as when a network path fails), and the client must
reconnect, bind its session to the new connection and re-send what was in flight
(RFC 8881 section 2.10.6: the session's replay cache makes re-sent non-idempotent
requests safe).  The cuts are timed by the copy's own progress (``/proc/PID/io``), so
each lands in the middle of the transfer whatever the machine's speed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer
from contrib.tcpproxy import ProxyProcess

from .helpers import (
    MiB,
    MountFactory,
    drop_caches,
    run,
    sha256_file,
    write_random_file,
)

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

BIG = 256 * MiB
#: Fractions of the transfer at which the connection is cut.
CUT_AT = (0.15, 0.35, 0.55, 0.75)
TRANSFER_TIMEOUT = 180.0


@pytest.fixture
def proxy(ganesha: GaneshaServer) -> Iterator[ProxyProcess]:
    """The proxy; tests name it before ``mount`` so that it outlives the mount."""
    with ProxyProcess(f"{ganesha.address}:{ganesha.port}") as p:
        yield p


def io_counter(pid: int, name: str) -> int | None:
    """A counter from /proc/PID/io (rchar, wchar: bytes through read/write calls)."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value)
    return None


def run_with_cuts(
    argv: list[str | os.PathLike[str]], proxy: ProxyProcess, counter: str, total: int
) -> tuple[subprocess.CompletedProcess[str], list[float]]:
    """Run ``argv``, cutting the proxy's connections as ``counter`` passes ``CUT_AT``.

    Returns the finished process and the progress (fraction) at each cut that happened
    while the command was still running.
    """
    proc = subprocess.Popen(
        [os.fspath(a) for a in argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TRANSFER_TIMEOUT
    during: list[float] = []
    pending = list(CUT_AT)
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            done = io_counter(proc.pid, counter)
            if pending and done is not None and done >= pending[0] * total:
                pending.pop(0)
                proxy.cut()
                if proc.poll() is None:
                    during.append(done / total)
            time.sleep(0.002)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"{argv} did not finish in {TRANSFER_TIMEOUT} s with cuts; stderr {err!r}")
    if proc.poll() is None or time.monotonic() >= deadline:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"{argv} did not finish in {TRANSFER_TIMEOUT} s with cuts")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), during


def test_copy_in_survives_connection_cuts(
    proxy: ProxyProcess,
    mount: MountFactory,
    fresh_dir: str,
    ganesha: GaneshaServer,
    local_tmp: Path,
) -> None:
    m = mount(port=proxy.port)
    os.mkdir(m.path / fresh_dir)
    src = local_tmp / "big.bin"
    digest = write_random_file(src, BIG)
    dst = m.path / fresh_dir / "big.bin"
    result, during = run_with_cuts(["cp", src, dst], proxy, "wchar", BIG)
    assert result.returncode == 0, f"cp failed across cuts: {result.stderr.strip()}"
    assert len(during) >= 3, f"only {len(during)} cuts landed during the copy: {during}"
    server_copy = ganesha.export_path / fresh_dir / "big.bin"
    assert os.stat(server_copy).st_size == BIG
    assert sha256_file(server_copy) == digest, "the server's copy differs after the cuts"
    assert os.stat(dst).st_size == BIG
    assert m.is_mounted()
    print(f"cuts at {[f'{x:.0%}' for x in during]}")


def test_long_read_survives_connection_cuts(
    proxy: ProxyProcess,
    mount: MountFactory,
    fresh_dir: str,
    ganesha: GaneshaServer,
) -> None:
    m = mount(port=proxy.port)
    os.mkdir(m.path / fresh_dir)
    server_copy = ganesha.export_path / fresh_dir / "big.bin"
    digest = write_random_file(server_copy, BIG)
    drop_caches()
    through_mount = m.path / fresh_dir / "big.bin"
    # cmp reads both files, so its rchar runs to twice the file's size.
    result, during = run_with_cuts(["cmp", server_copy, through_mount], proxy, "rchar", 2 * BIG)
    assert result.returncode == 0, f"cmp across cuts: {result.stdout} {result.stderr}".strip()
    assert len(during) >= 3, f"only {len(during)} cuts landed during the read: {during}"
    # And once more, whole, after the dust settled.
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    assert sha256_file(through_mount) == digest
    run(["cmp", server_copy, through_mount], timeout=TRANSFER_TIMEOUT)
    print(f"cuts at {[f'{x:.0%}' for x in during]}")

"""The mount process's lifecycle: stopping is bounded, whatever the server does.

- SIGTERM to a mount process whose server stopped answering releases the mount point
  within the retry budget plus a few seconds, also while a program waits in a request
  (a lazy unmount) and while a file is open with data the server never got (the log
  names the file).  With the server up, SIGTERM writes that data first.
- ``fusenfs umount`` succeeds after the server closed the connection once and went
  silent, idle or busy.
- SIGINT to a ``fusenfs mount`` parent while it waits stops the mount process: exit 130,
  one line, nothing mounted, no process left; also when the mount was already up.
- On a terminal the waiting parent shows a progress line; ``--debug`` says where the
  debug log goes.

The server is made unreachable with ``contrib.tcpproxy`` between the mount and Ganesha,
stopped with SIGSTOP (connections stay open, nothing is answered, new connections
complete in the listen backlog): the shared Ganesha is never paused.  A silent server
is a listening socket that never reads.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer
from contrib.tcpproxy import ProxyProcess
from fusenfs.cli import is_mounted

from .helpers import (
    MOUNT_TIMEOUT,
    REPO,
    Mount,
    MountFactory,
    SilentServer,
    alive,
    daemon_pids,
    fusenfs_argv,
    run,
    wait_gone,
    wait_until,
)

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

#: timeo 1 s (tenths in -o), one re-send: the retry budget is timeo * (retrans + 1) = 2 s.
FAST = "timeo=10,retrans=1"
TIMEO, RETRANS = 1.0, 1
#: The check: the mount point is released within timeo * retrans + 5 s.
RELEASE_BOUND = TIMEO * RETRANS + 5.0
#: ``fusenfs umount`` of such a mount: budget + grace (5 s) + fusermount3 runs.
UMOUNT_BOUND = TIMEO * (RETRANS + 1) + 5.0 + 5.0


class PausableProxy(ProxyProcess):
    """The fault proxy, which can also be paused (SIGSTOP) and resumed (SIGCONT)."""

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        assert wait_until(lambda: _state(self.proc.pid) == "T", 5.0), "the proxy did not stop"

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
        super().close()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


@pytest.fixture
def proxy(ganesha: GaneshaServer) -> Iterator[PausableProxy]:
    """The proxy; tests name it before ``mount`` so that it outlives the mount."""
    p = PausableProxy(f"{ganesha.address}:{ganesha.port}")
    yield p
    p.close()


def wait_released(mountpoint: Path, bound: float) -> float:
    """Seconds until ``mountpoint`` is no longer mounted; fails the test after ``bound``."""
    started = time.monotonic()
    released = wait_until(lambda: not is_mounted(os.fspath(mountpoint)), bound)
    elapsed = time.monotonic() - started
    assert released, f"{mountpoint} still mounted {bound:g} s after being asked to stop"
    return elapsed


@contextlib.contextmanager
def hung_stat(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A ``stat PATH`` that waits in the kernel for the mount; killed afterwards."""
    proc = subprocess.Popen(
        ["stat", os.fspath(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # It must be inside its LOOKUP, not merely started.
        assert wait_until(lambda: _state(proc.pid) in ("S", "D"), 5.0)
        time.sleep(0.3)
        assert proc.poll() is None, f"stat returned at once: {proc.communicate()}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


@contextlib.contextmanager
def killed_on_failure(m: Mount) -> Iterator[None]:
    """If the test fails while the mount process still serves (stuck waiting for the
    paused proxy), SIGKILL it: the fixture's teardown stats the mount point, which would
    wait for that process; killed, the kernel answers ENOTCONN at once."""
    try:
        yield
    except BaseException:
        if alive(m.daemon_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.daemon_pid, signal.SIGKILL)
            wait_gone(m.daemon_pid, 5.0)
        if is_mounted(os.fspath(m.path)):
            subprocess.run(["fusermount3", "-uz", m.path], capture_output=True, timeout=10)
        raise


# ---------------------------------------------------------------------- SIGTERM


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "request-waiting"])
def test_sigterm_releases_the_mount_while_the_server_is_unreachable(
    proxy: PausableProxy, mount: MountFactory, busy: bool
) -> None:
    m = mount(FAST, port=proxy.port)
    assert os.listdir(m.path) is not None
    proxy.pause()
    with killed_on_failure(m), contextlib.ExitStack() as stack:
        waiter = stack.enter_context(hung_stat(m.path / "nothing-here")) if busy else None
        started = time.monotonic()
        os.kill(m.daemon_pid, signal.SIGTERM)
        released = wait_released(m.path, RELEASE_BOUND)
        assert wait_gone(m.daemon_pid, RELEASE_BOUND + 2 - (time.monotonic() - started)), (
            f"the mount process {m.daemon_pid} still runs after its mount point was released"
        )
        exited = time.monotonic() - started
        if waiter is not None:
            # The program that waited gets an error (ENOTCONN), not a hang.
            waiter.wait(timeout=5)
            assert waiter.returncode != 0
    print(f"released after {released:.2f} s, exited after {exited:.2f} s")
    log = m.log_text()
    assert "Traceback" not in log, log
    if busy:
        assert "lazy unmount" in log, log


def test_sigterm_names_the_file_whose_data_could_not_be_written(
    proxy: PausableProxy, mount: MountFactory, fresh_dir: str
) -> None:
    m = mount(FAST, port=proxy.port)
    os.mkdir(m.path / fresh_dir)
    path = m.path / fresh_dir / "unwritten.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with killed_on_failure(m):
            proxy.pause()
            # Acknowledged once queued in write-behind; it never reaches the server.
            assert os.write(fd, b"x" * 65536) == 65536
            os.kill(m.daemon_pid, signal.SIGTERM)
            released = wait_released(m.path, RELEASE_BOUND)
            assert wait_gone(m.daemon_pid, 5.0)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    print(f"released after {released:.2f} s")
    log = m.log_text()
    assert f"data not written for {path}: " in log, log
    assert "lazy unmount" in log, log  # the file was still open


def test_sigterm_writes_open_files_before_unmounting(
    mount: MountFactory, ganesha: GaneshaServer, fresh_dir: str
) -> None:
    m = mount(FAST)
    os.mkdir(m.path / fresh_dir)
    data = os.urandom(3 * 1024 * 1024 + 5)
    fd = os.open(m.path / fresh_dir / "kept.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, data) == len(data)
        os.kill(m.daemon_pid, signal.SIGTERM)
        wait_released(m.path, RELEASE_BOUND)
        assert wait_gone(m.daemon_pid, 5.0)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    assert (ganesha.export_path / fresh_dir / "kept.bin").read_bytes() == data
    assert "data not written" not in m.log_text()


# ---------------------------------------------------------------------- fusenfs umount


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "request-waiting"])
def test_umount_after_the_server_closed_once_and_went_silent(
    proxy: PausableProxy, mount: MountFactory, busy: bool
) -> None:
    m = mount(FAST, port=proxy.port)
    assert os.listdir(m.path) is not None
    proxy.cut()  # answers a few calls, closes once ...
    proxy.pause()  # ... and stays silent
    with killed_on_failure(m), contextlib.ExitStack() as stack:
        if busy:
            stack.enter_context(hung_stat(m.path / "nothing-here"))
        started = time.monotonic()
        result = run(fusenfs_argv("umount", m.path), timeout=UMOUNT_BOUND + 10, check=False)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, f"fusenfs umount: {result.stderr}"
        assert "Traceback" not in result.stderr
        assert not is_mounted(os.fspath(m.path))
        assert elapsed < UMOUNT_BOUND, f"fusenfs umount took {elapsed:.1f} s"
        assert wait_gone(m.daemon_pid, 5.0), "the mount process did not exit"
    print(f"fusenfs umount took {elapsed:.2f} s; stderr: {result.stderr.strip()!r}")
    if busy:
        lines = result.stderr.strip().splitlines()
        assert lines and all(line.startswith("fusenfs: ") for line in lines), lines
        assert "busy" in lines[0], lines


# ---------------------------------------------------------------------- the mount parent


def _start_mount(
    mountpoint: Path, port: int, *extra: str, stderr: int | None = subprocess.PIPE
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        fusenfs_argv("mount", "127.0.0.1:/export", mountpoint, "-o", f"port={port}", *extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=REPO,
    )


def _child_of(parent: subprocess.Popen[str], mountpoint: Path) -> int:
    """The forked mount process (the parent's child serving ``mountpoint``)."""
    found: list[int] = []

    def forked() -> bool:
        found[:] = [pid for pid in daemon_pids(mountpoint) if pid != parent.pid]
        return bool(found) or parent.poll() is not None

    assert wait_until(forked, MOUNT_TIMEOUT), "fusenfs mount did not fork"
    assert found, f"fusenfs mount exited before forking: {parent.communicate(timeout=10)}"
    return found[0]


@contextlib.contextmanager
def cleanup(mountpoint: Path, procs: list[int]) -> Iterator[None]:
    """Whatever a test started for ``mountpoint``: killed by pid and unmounted."""
    try:
        yield
    finally:
        for pid in procs:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
        if is_mounted(os.fspath(mountpoint)):
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, timeout=10)


def assert_interrupted_cleanly(
    parent: subprocess.Popen[str], child: int, mountpoint: Path, stderr: str
) -> None:
    assert parent.returncode == 130, f"exit {parent.returncode}: {stderr}"
    assert stderr.strip().splitlines()[-1:] == ["fusenfs: mount interrupted; nothing mounted"], (
        stderr
    )
    assert not is_mounted(os.fspath(mountpoint))
    assert wait_gone(child, 5.0), f"the mount process {child} still runs"
    assert not daemon_pids(mountpoint)


def test_sigint_while_the_server_is_silent(tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with SilentServer() as server:
        parent = _start_mount(mountpoint, server.port)
        procs = [parent.pid]
        with cleanup(mountpoint, procs):
            child = _child_of(parent, mountpoint)
            procs.append(child)
            time.sleep(1.0)  # the child waits for EXCHANGE_ID
            assert parent.poll() is None
            started = time.monotonic()
            parent.send_signal(signal.SIGINT)
            _out, err = parent.communicate(timeout=30)
            elapsed = time.monotonic() - started
            assert_interrupted_cleanly(parent, child, mountpoint, err)
            # Not a terminal: no progress line, just the one line.
            assert err.strip() == "fusenfs: mount interrupted; nothing mounted", err
    print(f"interrupted in {elapsed:.2f} s")


def test_sigint_after_the_mount_process_mounted(proxy: PausableProxy, tmp_path: Path) -> None:
    # The parent is stopped until its child has mounted: then SIGINT arrives with the
    # child's "ok" unread, so the parent has to take the mount down again.
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    proxy.pause()
    parent = _start_mount(mountpoint, proxy.port)
    procs = [parent.pid]
    with cleanup(mountpoint, procs):
        child = _child_of(parent, mountpoint)
        procs.append(child)
        os.kill(parent.pid, signal.SIGSTOP)
        proxy.resume()
        assert wait_until(lambda: is_mounted(os.fspath(mountpoint)), MOUNT_TIMEOUT), (
            "the mount process did not mount"
        )
        os.kill(parent.pid, signal.SIGINT)
        os.kill(parent.pid, signal.SIGCONT)
        _out, err = parent.communicate(timeout=30)
        assert_interrupted_cleanly(parent, child, mountpoint, err)


def test_progress_line_on_a_terminal(tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    master, slave = os.openpty()
    output = b""
    try:
        with SilentServer() as server:
            parent = _start_mount(mountpoint, server.port, stderr=slave)
            os.close(slave)
            slave = -1
            procs = [parent.pid]
            with cleanup(mountpoint, procs):
                procs.append(_child_of(parent, mountpoint))
                deadline = time.monotonic() + 2.6
                while time.monotonic() < deadline:
                    if select.select([master], [], [], 0.1)[0]:
                        output += os.read(master, 4096)
                parent.send_signal(signal.SIGINT)
                parent.wait(timeout=30)
                while select.select([master], [], [], 0.2)[0]:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: the other side is closed
                        break
                    if not chunk:
                        break
                    output += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = output.decode(errors="replace")
    assert f"\rfusenfs: waiting for 127.0.0.1:{server.port} (2 s)..." in text, repr(text)
    assert parent.returncode == 130
    # The progress line is erased before the last line.
    assert text.endswith("\r\x1b[Kfusenfs: mount interrupted; nothing mounted\r\n"), repr(text)


def test_debug_says_where_the_log_goes(ganesha: GaneshaServer, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    log_path = tmp_path / "debug.log"
    parent = _start_mount(mountpoint, ganesha.port, "--debug", "--log-file", os.fspath(log_path))
    procs = [parent.pid]
    with cleanup(mountpoint, procs):
        _out, err = parent.communicate(timeout=MOUNT_TIMEOUT)
        procs.extend(daemon_pids(mountpoint))
        assert parent.returncode == 0, err
        assert err.strip() == f"fusenfs: debug log: {log_path}", err
        run(fusenfs_argv("umount", mountpoint), timeout=30)
        assert all(wait_gone(pid, 10.0) for pid in procs)
    assert "[EXCHANGE_ID]" in log_path.read_text()  # a COMPOUND logged at DEBUG

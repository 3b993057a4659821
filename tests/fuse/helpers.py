"""Helpers for the FUSE mount tests: bounded commands, hashes, the mount record.

Every wait here is bounded: commands run with a timeout, polls with a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import pytest

from contrib.ganesha import GaneshaServer
from fusenfs.cli import is_mounted

REPO = Path(__file__).resolve().parents[2]

#: Seconds for ``fusenfs mount`` to return, and for ``fusenfs umount``.
MOUNT_TIMEOUT = 30.0
UMOUNT_TIMEOUT = 30.0
#: Seconds the daemon gets to exit after the unmount.
DAEMON_EXIT_TIMEOUT = 15.0
#: Seconds a test may use a mount before the watchdog kills the client daemon.
TEST_DEADLINE = 240.0

MiB = 1024 * 1024


def in_ci() -> bool:
    """True under CI (CI=true), where a test that cannot run must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def fuse_unavailable() -> str | None:
    """Why real FUSE mounts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "FUSE mount tests need root"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    return None


def fusenfs_argv(*args: str | os.PathLike[str]) -> list[str]:
    """The ``fusenfs`` command line, run by this interpreter from this checkout."""
    return [sys.executable, "-m", "fusenfs", *(os.fspath(a) for a in args)]


def run(
    argv: Sequence[str | os.PathLike[str]],
    timeout: float = 60.0,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout; with ``check`` a non-zero exit fails the test."""
    args = [os.fspath(a) for a in argv]
    try:
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=REPO if cwd is None else cwd,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(args)} did not finish in {timeout} s (stderr: {e.stderr!r})")
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
        )
    return result


def drop_caches() -> None:
    """Make the kernel forget clean dentries and inodes (FUSE then sends FORGET, and the
    next access a fresh LOOKUP)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("2\n")


def sha256_file(path: Path, chunk: int = 4 * MiB) -> str:
    """Hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_random_file(path: Path, size: int, chunk: int = 8 * MiB) -> str:
    """Fill ``path`` with ``size`` random bytes; returns their SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def daemon_pids(mountpoint: Path) -> list[int]:
    """Pids of ``fusenfs mount`` processes for exactly this mount point (by command line)."""
    want = os.fspath(mountpoint).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mount" in argv and want in argv and any(b"fusenfs" in a for a in argv):
            pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (the daemon is not our child)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    return wait_until(lambda: not alive(pid), timeout)


@dataclass
class Mount:
    """One fusenfs mount made for a test.

    Attributes:
        path: the mount point.
        log_path: the client daemon's log file.
        options: the ``-o`` string it was mounted with.
        daemon_pid: the background ``fusenfs mount`` process serving it.
        port: the server port it talks to (the proxy's, when mounted through one).
        watchdog_fired: the test ran past ``TEST_DEADLINE`` and the daemon was killed.
    """

    path: Path
    log_path: Path
    options: str
    daemon_pid: int
    port: int
    watchdog_fired: bool = False
    unmounted: bool = False
    deadline: float = TEST_DEADLINE
    _watchdog: threading.Timer | None = field(default=None, repr=False)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"

    def is_mounted(self) -> bool:
        """From /proc/self/mountinfo, never a stat: it answers for a hung or dead
        mount too (``os.path.ismount`` waits on the first, says False for the second)."""
        return is_mounted(os.fspath(self.path))

    def start_watchdog(self, seconds: float = TEST_DEADLINE) -> None:
        """Kill the daemon if the test still runs ``seconds`` from now (see conftest)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.deadline = seconds
        self._watchdog = threading.Timer(seconds, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        # Killing the daemon closes /dev/fuse: the kernel then fails every pending and
        # later request on the mount (ENOTCONN), so a hung os.* call in the test returns.
        self.watchdog_fired = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.daemon_pid, signal.SIGKILL)

    def unmount(self) -> list[str]:
        """``fusenfs umount``, then check the daemon exits; force a clean-up if not.

        Returns what went wrong (nothing when all was well).  Idempotent.
        """
        problems: list[str] = []
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.watchdog_fired:
            problems.append(
                f"{self.path}: the test ran past {self.deadline} s; the watchdog killed "
                "the client daemon"
            )
        if self.unmounted:
            return problems
        if self.is_mounted() and not self.watchdog_fired:
            try:
                result = subprocess.run(
                    fusenfs_argv("umount", self.path),
                    capture_output=True,
                    text=True,
                    timeout=UMOUNT_TIMEOUT,
                    cwd=REPO,
                )
                if result.returncode != 0:
                    problems.append(
                        f"fusenfs umount {self.path} failed ({result.returncode}): "
                        f"{result.stderr.strip()}"
                    )
            except subprocess.TimeoutExpired:
                problems.append(f"fusenfs umount {self.path} did not return in {UMOUNT_TIMEOUT} s")
        if not problems and not wait_gone(self.daemon_pid, DAEMON_EXIT_TIMEOUT):
            problems.append(
                f"the client daemon {self.daemon_pid} did not exit within "
                f"{DAEMON_EXIT_TIMEOUT} s of unmounting {self.path}"
            )
        # Whatever happened, leave nothing behind.
        if alive(self.daemon_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.daemon_pid, signal.SIGKILL)
            wait_gone(self.daemon_pid, 5)
        if self.is_mounted():
            subprocess.run(["fusermount3", "-uz", self.path], capture_output=True, timeout=10)
            if self.is_mounted():
                problems.append(f"{self.path} is still mounted after fusermount3 -uz")
        self.unmounted = True
        return problems


class MountFactory(Protocol):
    """``mount(options="actimeo=1", port=None, public=False) -> Mount``; ``port`` defaults
    to Ganesha's; ``public`` puts the mount point where other users can reach it."""

    def __call__(
        self, options: str = "", *, port: int | None = None, public: bool = False
    ) -> Mount: ...


@dataclass
class Workspace:
    """A mount and a fresh directory in it.

    Attributes:
        mount: the mount.
        dir: the test's directory, through the mount (made by os.mkdir on the mount).
        server: the same directory on the server's side (in Ganesha's export).
        ganesha: the server.
    """

    mount: Mount
    dir: Path
    server: Path
    ganesha: GaneshaServer


class SilentServer:
    """A TCP listener on 127.0.0.1 that never answers.

    Nothing calls ``accept``: the kernel completes connections into the backlog and no
    byte is ever read or sent, as a server that accepts and says nothing.  Use as a
    context manager; ``port`` is where it listens.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ClosingServer(SilentServer):
    """A TCP listener on 127.0.0.1 that accepts every connection and closes it at once.

    A thread accepts; ``connections`` counts them.  ``close()`` stops the thread
    (bounded) and the listener.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sock.settimeout(0.1)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        super().close()

    def __enter__(self) -> ClosingServer:
        return self

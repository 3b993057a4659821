"""Daemons the test helpers start (NFS-Ganesha, the Kerberos KDC): stopped exactly.

Each helper starts its daemon as a child in a session of its own and keeps the
``subprocess.Popen``; ``stop_child`` ends exactly that process (SIGTERM, then SIGKILL),
and a ``Leftovers`` registry stops, when the Python process exits, every daemon that
was started and not stopped (a test that crashed, an interrupted benchmark).  Nothing
is ever looked up or killed by name.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import subprocess
import threading
from typing import Generic, Protocol, TypeVar


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM ``proc``, wait at most ``timeout`` seconds, then SIGKILL it.

    Returns:
        Its exit status (negative: the signal that ended it).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10.0)
    return proc.returncode


class Stoppable(Protocol):
    def stop(self, timeout: float = 10.0) -> int | None: ...


S = TypeVar("S", bound=Stoppable)


class Leftovers(Generic[S]):
    """The daemons of one kind this process started and has not stopped yet.

    ``add`` when started, ``discard`` when stopped; at exit each one left is stopped
    (5 s each before SIGKILL), its errors ignored: the process is ending anyway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[S] = set()
        atexit.register(self.stop_all)

    def add(self, daemon: S) -> None:
        with self._lock:
            self._running.add(daemon)

    def discard(self, daemon: S) -> None:
        with self._lock:
            self._running.discard(daemon)

    def stop_all(self) -> None:
        with self._lock:
            left = list(self._running)
        for daemon in left:
            with contextlib.suppress(Exception):
                daemon.stop(timeout=5.0)

"""The caller's supplementary groups, read from /proc per request (fusenfs.fs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pyfuse3

from fusenfs.fs import supplementary_groups

SLEEPER = "import time; print('ready', flush=True); time.sleep(30)"


@contextlib.contextmanager
def sleeper(groups: str) -> Iterator[subprocess.Popen[str]]:
    """A process with these supplementary groups, started and ready; killed after."""
    argv = ["setpriv", f"--groups={groups}", sys.executable, "-c", SLEEPER]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"  # groups set, python started
            yield child
        finally:
            child.kill()  # Popen's exit then closes the pipe and waits


def test_groups_of_a_running_process_in_the_kernels_order() -> None:
    with sleeper("4001,77,4002") as child:
        assert supplementary_groups(child.pid) == [77, 4001, 4002]  # the kernel sorts them


def test_same_groups_as_pyfuse3_reads() -> None:
    assert set(supplementary_groups(os.getpid())) == pyfuse3.get_sup_groups(os.getpid())


def test_many_groups_beyond_the_first_read() -> None:
    many = ",".join(str(10_000 + i) for i in range(2_000))  # a "Groups:" line of 12 KB
    with sleeper(many) as child:
        assert supplementary_groups(child.pid) == [10_000 + i for i in range(2_000)]


def test_no_process_no_groups() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert supplementary_groups(child.pid) == []  # reaped: /proc/PID is gone
    assert supplementary_groups(0) == []  # requests the kernel makes itself

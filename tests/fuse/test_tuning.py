"""Kernel-side settings the mount makes for speed (issue 10)."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from fusenfs.runner import READAHEAD_KB, readahead_knob

from .helpers import Mount, Workspace, fusenfs_argv, run, wait_until

pytestmark = pytest.mark.fuse


def test_mount_read_ahead_is_raised(ws: Workspace) -> None:
    """FUSE mounts start with 128 KiB of read-ahead (one READ request in flight at a
    time); the daemon raises it once FUSE_INIT is answered, and it stays."""
    knob = readahead_knob(str(ws.mount.path))
    assert knob is not None
    assert wait_until(lambda: knob.read_text().strip() == str(READAHEAD_KB), timeout=10)


def _compounds(m: Mount) -> Counter[str]:
    """COMPOUNDs the mount has sent so far, by main operation (lease renewals left out)."""
    result = run(fusenfs_argv("stats", "--json", m.path), timeout=30)
    ops = json.loads(result.stdout)["operations"]
    return Counter({name: op["ops"] for name, op in ops.items() if name != "SEQUENCE"})


def test_small_file_in_a_new_directory_costs_three_compounds(ws: Workspace) -> None:
    """mkdir, then create + write 100 B + close of a file in it: LOOKUP (the kernel's,
    of the new name), OPEN(create) and WRITE+CLOSE -- no GETATTR of the directory,
    whose attributes came back with its CREATE (as a tar or mkdir -p does it)."""
    os.stat(ws.dir)
    before = _compounds(ws.mount)
    made = ws.dir / "made"
    os.mkdir(made)
    (made / "small").write_bytes(b"x" * 100)
    sent = _compounds(ws.mount) - before
    assert sent == Counter({"CREATE": 1, "LOOKUP": 2, "OPEN": 1, "WRITE": 1}), sent
    assert (ws.server / "made" / "small").read_bytes() == b"x" * 100


def _minor_faults(pid: int) -> int:
    """Minor page faults of process ``pid`` so far (/proc/PID/stat field 10)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7])


def test_write_buffers_are_reused_without_faulting_pages_in(ws: Workspace) -> None:
    """A COMMIT frees the UNSTABLE data it made durable all at once.  If that memory
    goes back to the system, the next as many WRITE buffers each fault in (and zero)
    a fresh page per 4 KiB: over 10,000 faults per 128 MiB written.  Kept in the heap
    for reuse (runner.tune_malloc), a second 128 MiB copy faults almost nothing."""
    block = os.urandom(1 << 20)
    path = ws.dir / "big"

    def copy() -> None:
        with open(path, "wb") as f:
            for _ in range(128):
                f.write(block)
            os.fsync(f.fileno())  # the COMMIT that frees the held UNSTABLE data

    copy()  # the heap grows to what a copy needs
    before = _minor_faults(ws.mount.daemon_pid)
    copy()
    faults = _minor_faults(ws.mount.daemon_pid) - before
    assert faults < 2_000, f"{faults} minor faults in the mount for a 128 MiB copy"
    assert (ws.server / "big").stat().st_size == 128 << 20

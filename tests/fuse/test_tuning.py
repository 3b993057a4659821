"""Kernel-side settings the mount makes for speed (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusenfs.cli import mount_device
from fusenfs.runner import READAHEAD_KB

from .helpers import Workspace, wait_until

pytestmark = pytest.mark.fuse


def test_mount_read_ahead_is_raised(ws: Workspace) -> None:
    """FUSE mounts start with 128 KiB of read-ahead (one READ request in flight at a
    time); the daemon raises it once FUSE_INIT is answered, and it stays."""
    device = mount_device(str(ws.mount.path))
    assert device is not None
    knob = Path(f"/sys/class/bdi/{device}/read_ahead_kb")
    assert wait_until(lambda: knob.read_text().strip() == str(READAHEAD_KB), timeout=10)

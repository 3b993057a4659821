"""contrib/nullfs.py, the benchmark's do-nothing pyfuse3 file system: it mounts, dd writes
and reads through it, and SIGTERM unmounts it.  Root and /dev/fuse only (a failure under
CI=true)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import REPO, fuse_unavailable, in_ci, run, sha256_file, wait_until

MOUNT_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0
MiB = 1 << 20


def _mounted(path: Path) -> bool:
    """From /proc/self/mounts: never stats the path (a dead FUSE daemon would hang it)."""
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f if len(line.split()) > 2)


@pytest.fixture
def nullfs(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """``python3 -m contrib.nullfs MNT`` in the foreground; stopped exactly afterwards."""
    reason = fuse_unavailable()
    if reason is not None:
        if in_ci():
            pytest.fail(f"FUSE is required under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "nullfs.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "contrib.nullfs", str(mnt)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
            start_new_session=True,
        )
    try:
        up = wait_until(lambda: _mounted(mnt) or proc.poll() is not None, MOUNT_TIMEOUT)
        if not up or not _mounted(mnt):
            pytest.fail(f"nullfs did not mount {mnt}: {log.read_text(errors='replace')}")
        yield mnt, proc
    finally:
        if _mounted(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=EXIT_TIMEOUT)
        if _mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT)


def test_dd_write_and_read(nullfs: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    mnt, _ = nullfs
    assert os.listdir(mnt) == ["null"]
    target = mnt / "null"
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(8 * MiB))
    run(["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fsync", "status=none"], 30)
    assert target.stat().st_size == 8 * MiB  # the writes were taken (and dropped)
    out = tmp_path / "out.bin"
    run(["dd", f"if={target}", f"of={out}", "bs=1M", "status=none"], 30)
    assert out.stat().st_size == 8 * MiB
    assert sha256_file(out) == sha256_file(_zeros(tmp_path / "zeros.bin", 8 * MiB))
    os.truncate(target, 3000)
    with open(target, "rb") as f:
        assert f.read() == bytes(3000)


def test_only_one_file(nullfs: tuple[Path, subprocess.Popen[bytes]]) -> None:
    mnt, _ = nullfs
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "other")
    with pytest.raises(PermissionError) as err:
        open(mnt / "other", "wb").close()
    assert err.value.errno == errno.EPERM


def test_sigterm_unmounts_and_exits(nullfs: tuple[Path, subprocess.Popen[bytes]]) -> None:
    mnt, proc = nullfs
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=EXIT_TIMEOUT) == 0
    assert not _mounted(mnt)


def test_bad_mount_point(tmp_path: Path) -> None:
    result = run(
        [sys.executable, "-m", "contrib.nullfs", str(tmp_path / "missing")], 30, check=False
    )
    assert result.returncode == 1
    assert "is not a directory" in result.stderr


def _zeros(path: Path, size: int) -> Path:
    path.write_bytes(bytes(size))
    return path

"""Close-to-open consistency between two fusenfs mounts of the same export.

nfs(5): after a writer closes a file, a reader that opens it afterwards sees everything
written (RFC 8881 section 10.3.1 states it for delegations; clients do it for all
files).  On a FUSE mount that takes two things: ``open`` fetches fresh attributes and
drops the kernel's pages unless the change attribute held still (``keep_cache``), and
``flush`` (close) commits the writer's data.

What close-to-open does *not* cover is the name cache: the kernel keeps a name -> inode
entry for ``entry_timeout`` (acregmin/acdirmin here) without asking the client, so on
mount B a name that mount A removed or replaced keeps resolving to the old inode until
that time runs out.  The kernel NFS client behaves the same way (``lookupcache=all``).
Those tests mount B with ``actimeo=1`` and allow it a bounded wait.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer

from .helpers import MiB, Mount, MountFactory, wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

#: The attribute/name cache time for mount B in the name-cache tests, and how long past
#: it a change may take to show.
ACTIMEO = 1
NAME_CACHE_WAIT = ACTIMEO + 4.0


def write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def open_and_read(path: Path) -> tuple[bytes, int]:
    """What an application sees: open, fstat, read to the end, close."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        parts = []
        while chunk := os.read(fd, MiB):
            parts.append(chunk)
        return b"".join(parts), size
    finally:
        os.close(fd)


def two_mounts(
    mount: MountFactory, fresh_dir: str, b_options: str = ""
) -> tuple[Mount, Mount, Path, Path]:
    a = mount()
    b = mount(b_options)
    os.mkdir(a.path / fresh_dir)
    return a, b, a.path / fresh_dir, b.path / fresh_dir


def test_close_to_open_new_content_and_size(mount: MountFactory, fresh_dir: str) -> None:
    # Default cache times on both mounts: B's kernel would happily keep the old
    # attributes and pages for 3 s or more; only the open must make it look again.
    _a, _b, da, db = two_mounts(mount, fresh_dir)
    f_a, f_b = da / "shared", db / "shared"
    write_file(f_a, b"version 1\n")
    assert open_and_read(f_b) == (b"version 1\n", 10)
    assert os.stat(f_b).st_size == 10  # now cached on B (attributes and pages)

    # Grow it on A: B's next open sees the new size and all of the content.
    v2 = os.urandom(3 * MiB + 123)
    write_file(f_a, v2)
    assert open_and_read(f_b) == (v2, len(v2))
    assert os.stat(f_b).st_size == len(v2)

    # Shrink it on A.
    write_file(f_a, b"short")
    assert open_and_read(f_b) == (b"short", 5)

    # Overwrite in place with the same size: only the change attribute tells.
    for i in range(3):
        same_size = bytes([0x41 + i]) * 5
        fd = os.open(f_a, os.O_WRONLY)
        try:
            os.pwrite(fd, same_size, 0)
        finally:
            os.close(fd)
        assert open_and_read(f_b) == (same_size, 5), f"round {i}"

    # And the other way round: B writes, A reads.
    write_file(f_b, b"written on B")
    assert open_and_read(f_a) == (b"written on B", 12)


def test_close_to_open_partial_overwrite_of_a_large_cached_file(
    mount: MountFactory, fresh_dir: str
) -> None:
    # B reads a large file (its pages cached), A changes one block in the middle
    # without changing the size; B's next open must not serve the stale cached block.
    _a, _b, da, db = two_mounts(mount, fresh_dir)
    data = bytearray(os.urandom(8 * MiB))
    write_file(da / "big", bytes(data))
    assert open_and_read(db / "big") == (bytes(data), len(data))
    patch = os.urandom(4096)
    fd = os.open(da / "big", os.O_WRONLY)
    try:
        os.pwrite(fd, patch, 5 * MiB + 4096)
    finally:
        os.close(fd)
    data[5 * MiB + 4096 : 5 * MiB + 8192] = patch
    got, size = open_and_read(db / "big")
    assert size == len(data)
    assert got == bytes(data), "B served stale cached pages after A's change"


def test_file_created_on_one_mount_is_visible_on_the_other(
    mount: MountFactory, fresh_dir: str
) -> None:
    _a, _b, da, db = two_mounts(mount, fresh_dir, f"actimeo={ACTIMEO}")
    assert os.listdir(db) == []
    # A miss is cached for the directory's attribute time (nfs(5) lookupcache=all, as
    # the kernel client does), so a new name shows up on B within that time.
    with pytest.raises(FileNotFoundError):
        os.stat(db / "new")
    write_file(da / "new", b"made on A")
    assert wait_until(lambda: (db / "new").exists(), NAME_CACHE_WAIT)
    assert os.stat(db / "new").st_size == 9
    assert open_and_read(db / "new") == (b"made on A", 9)
    assert os.listdir(db) == ["new"]
    os.mkdir(da / "subdir")
    write_file(da / "subdir" / "inner", b"deeper")
    assert sorted(os.listdir(db)) == ["new", "subdir"]
    assert open_and_read(db / "subdir" / "inner") == (b"deeper", 6)


def test_removal_and_replacement_show_after_the_name_cache_time(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer
) -> None:
    # B caches names for ACTIMEO seconds (see the module docstring).
    _a, _b, da, db = two_mounts(mount, fresh_dir, f"actimeo={ACTIMEO}")
    write_file(da / "doomed", b"soon gone")
    write_file(da / "replaced", b"old file")
    assert open_and_read(db / "doomed") == (b"soon gone", 9)
    old_ino = os.stat(db / "replaced").st_ino

    os.unlink(da / "doomed")
    assert not (ganesha.export_path / fresh_dir / "doomed").exists()

    def gone() -> bool:
        try:
            os.stat(db / "doomed")
        except FileNotFoundError:
            return True
        return False

    assert wait_until(gone, NAME_CACHE_WAIT), f"B still sees doomed after {NAME_CACHE_WAIT} s"
    assert os.listdir(db) == ["replaced"]

    # Replace "replaced" by a new file (new inode) under the same name.
    write_file(da / "replacement", b"new file!")
    os.rename(da / "replacement", da / "replaced")

    def replaced() -> bool:
        try:
            return open_and_read(db / "replaced") == (b"new file!", 9)
        except OSError as e:
            # Opening the old inode in the meantime may fail as stale, never hang.
            assert e.errno in (errno.ESTALE, errno.ENOENT), e
            return False

    assert wait_until(replaced, NAME_CACHE_WAIT), (
        f"B still has the old file after {NAME_CACHE_WAIT} s"
    )
    assert os.stat(db / "replaced").st_ino != old_ino


def test_lookupcache_positive_does_not_cache_misses(mount: MountFactory, fresh_dir: str) -> None:
    """nfs(5) lookupcache=positive: only names that exist are cached, so a name
    created on another client is found at once."""
    _a, _b, da, db = two_mounts(mount, fresh_dir, "lookupcache=positive")
    with pytest.raises(FileNotFoundError):
        os.stat(db / "new")
    write_file(da / "new", b"made on A")
    assert os.stat(db / "new").st_size == 9

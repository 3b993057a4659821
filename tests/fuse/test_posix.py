"""POSIX details a local file system gets right, through a real mount (issue 9).

"." and ".." in readdir, NAME_MAX, and what a user who is not the owner may do: touch a
file they can write (UTIME_NOW goes as SET_TO_SERVER_TIME4) and write to a setuid file
(the bits end up cleared, the write succeeds).  The other users are plain uids run with
setpriv on an allow_other mount.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import stat
import subprocess
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer

from .helpers import MountFactory, Workspace, run

pytestmark = pytest.mark.fuse

OTHER_UID = 4242  # any uid that owns nothing on the export
GROUP_GID = 4343  # a group only the test gives OTHER_UID, as a supplementary one


def as_other(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command as OTHER_UID (no supplementary groups)."""
    return run(
        ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", *argv],
        check=False,
    )


def raw_readdir(path: Path) -> dict[str, int]:
    """name -> d_ino exactly as readdir(3) returns them (os.scandir hides the dots, and
    ls shows the outer directory's inode for ".." of a mount point)."""

    class Dirent(ctypes.Structure):
        _fields_ = [
            ("d_ino", ctypes.c_uint64),
            ("d_off", ctypes.c_int64),
            ("d_reclen", ctypes.c_ushort),
            ("d_type", ctypes.c_ubyte),
            ("d_name", ctypes.c_char * 256),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.restype = ctypes.POINTER(Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.closedir.argtypes = [ctypes.c_void_p]
    handle = libc.opendir(os.fsencode(path))
    assert handle, os.strerror(ctypes.get_errno())
    found: dict[str, int] = {}
    try:
        for _ in range(10_000):
            entry = libc.readdir(handle)
            if not entry:
                break
            found[entry.contents.d_name.decode()] = entry.contents.d_ino
    finally:
        libc.closedir(handle)
    return found


def test_readdir_has_dot_and_dotdot_with_their_inode_numbers(ws: Workspace) -> None:
    sub = ws.dir / "sub"
    sub.mkdir()
    (sub / "f").write_bytes(b"")
    entries = raw_readdir(sub)
    assert set(entries) == {".", "..", "f"}
    assert entries["."] == os.stat(sub).st_ino
    assert entries[".."] == os.stat(ws.dir).st_ino
    assert entries["f"] == os.stat(sub / "f").st_ino
    top = raw_readdir(ws.mount.path)
    assert top["."] == top[".."] == os.stat(ws.mount.path).st_ino  # ".." of the root
    listing = run(["ls", "-fa", str(sub)]).stdout.split()
    assert sorted(listing) == [".", "..", "f"]
    assert sorted(os.listdir(sub)) == ["f"]


def test_name_max_is_255_and_enforced(ws: Workspace) -> None:
    assert os.statvfs(ws.dir).f_namemax <= 255
    longest = ws.dir / ("n" * 255)
    longest.write_bytes(b"ok")
    assert longest.read_bytes() == b"ok"
    with pytest.raises(OSError) as info:
        (ws.dir / ("n" * 256)).write_bytes(b"no")
    assert info.value.errno == errno.ENAMETOOLONG


def test_non_owner_touch_of_a_writable_file(mount: MountFactory, fresh_dir: str) -> None:
    m = mount("allow_other", public=True)
    d = m.path / fresh_dir
    d.mkdir(mode=0o755)
    f = d / "shared"
    f.write_bytes(b"data")
    os.chmod(f, 0o666)
    old = 1_000_000_000
    os.utime(f, (old, old))
    result = as_other("touch", str(f))
    assert result.returncode == 0, result.stderr
    assert os.stat(f).st_mtime > old + 1000
    # Setting an explicit time is still the owner's privilege.
    result = as_other("touch", "-d", "2001-01-01", str(f))
    assert result.returncode != 0


def test_non_owner_write_to_a_setuid_file_clears_the_bits(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer
) -> None:
    m = mount("allow_other", public=True)
    d = m.path / fresh_dir
    d.mkdir(mode=0o755)
    f = d / "setuid"
    f.write_bytes(b"#!/bin/sh\n")
    os.chmod(f, 0o4777)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o4777
    result = as_other("sh", "-c", f"echo appended >> {f}")
    assert result.returncode == 0, result.stderr
    assert f.read_bytes() == b"#!/bin/sh\nappended\n"
    mode = stat.S_IMODE(os.stat(f).st_mode)
    assert not mode & stat.S_ISUID, oct(mode)
    assert mode & 0o777 == 0o777
    server_mode = stat.S_IMODE((ganesha.export_path / fresh_dir / "setuid").stat().st_mode)
    assert not server_mode & stat.S_ISUID


def test_supplementary_groups_reach_the_server(mount: MountFactory, fresh_dir: str) -> None:
    """AUTH_SYS carries the caller's supplementary groups (RFC 5531 appendix A), read
    per request from the process: a group that is neither the caller's own nor its
    primary one still grants the group's permission bits, and without it the server
    refuses."""
    m = mount("allow_other", public=True)
    d = m.path / fresh_dir
    d.mkdir(mode=0o755)
    f = d / "group-only"
    f.write_bytes(b"for the group")
    os.chown(f, 0, GROUP_GID)
    os.chmod(f, 0o640)
    base = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}"]
    member = run([*base, f"--groups={GROUP_GID}", "cat", str(f)], check=False)
    assert member.returncode == 0, member.stderr
    assert member.stdout == "for the group"
    outsider = as_other("cat", str(f))
    assert outsider.returncode != 0
    assert "Permission denied" in outsider.stderr


def test_read_after_write_through_another_descriptor(ws: Workspace) -> None:
    """POSIX read-after-write on one client: a reader that already read the file sees
    what another descriptor (same process, then another process) wrote, at once."""
    f = ws.dir / "shared-data"
    f.write_bytes(b"initial")
    reader = os.open(f, os.O_RDONLY)
    try:
        assert os.pread(reader, 65536, 0) == b"initial"
        writer = os.open(f, os.O_WRONLY)
        try:
            new = bytes(range(256)) * 16 + b"tail!"  # 4,101 bytes
            assert os.pwrite(writer, new, 0) == 4101
            assert os.fstat(reader).st_size == 4101
            assert os.pread(reader, 65536, 0) == new
        finally:
            os.close(writer)
        other = b"from another process".ljust(4101, b".")
        run(["python3", "-c", f"open({str(f)!r}, 'r+b').write({other!r})"])
        assert os.pread(reader, 65536, 0) == other
        # ... and truncation through a path shrinks what the reader sees.
        os.truncate(f, 10)
        assert os.pread(reader, 65536, 0) == other[:10]
    finally:
        os.close(reader)


def test_a_listing_does_not_shrink_a_file_being_written(ws: Workspace) -> None:
    """While written data is still on its way to the server (write-behind), the
    server's size is behind the file's.  A directory listing (READDIRPLUS attributes)
    or a lookup must not hand the kernel that size: it would cut the file short, and a
    read of what was just written would return nothing (the kernel NFS client keeps
    the size while writes are pending too)."""
    f = ws.dir / "growing"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        chunk = os.urandom(1024 * 1024)
        seen: list[tuple[int, int, int]] = []
        for i in range(32):
            os.pwrite(fd, chunk, i * len(chunk))
            if i % 4 == 3:
                os.listdir(ws.dir)  # the entries come with the server's attributes
                end = (i + 1) * len(chunk)
                size = os.fstat(fd).st_size
                got = len(os.pread(fd, 4096, i * len(chunk)))
                if size != end or got != 4096:
                    seen.append((end, size, got))
        assert not seen, f"(size written, size seen, bytes read back): {seen}"
        assert os.pread(fd, len(chunk), 31 * len(chunk)) == chunk
    finally:
        os.close(fd)
    assert (ws.server / "growing").stat().st_size == 32 * len(chunk)


def test_a_truncation_under_an_open_writer_is_not_undone_by_a_listing(ws: Workspace) -> None:
    """The size a writer's data reached holds against older sizes from the server,
    but not against a truncation made since: ftruncate() and O_TRUNC through the mount
    lower it, and a listing afterwards shows the new size."""
    f = ws.dir / "cut"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, os.urandom(4 * 1024 * 1024), 0)
        os.ftruncate(fd, 1000)
        os.listdir(ws.dir)
        assert os.fstat(fd).st_size == 1000
        os.pwrite(fd, b"x" * 3000, 0)
        other = os.open(f, os.O_WRONLY | os.O_TRUNC)  # a second open cuts it to 0
        os.close(other)
        os.listdir(ws.dir)
        assert os.fstat(fd).st_size == 0
        assert os.stat(f).st_size == 0
    finally:
        os.close(fd)
    assert (ws.server / "cut").stat().st_size == 0


def test_random_writes_and_rewrites_land_as_written(ws: Workspace) -> None:
    """Writes of 1 B to 96 KiB all over a file, many over bytes written just before:
    small ones go several to a COMPOUND, large ones each in its own WRITE, and a write
    of bytes that a WRITE still in flight covers must not overtake it (WRITEs in flight
    at once may run in any order on the server).  After fsync the server's file is
    what the same writes give locally, and so is what the mount reads back."""
    rng = random.Random(8881)
    size = 512 * 1024
    expect = bytearray(size)
    path = ws.dir / "random"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
        for i in range(2000):
            n = rng.choice([1, 100, 512, 4096, 8000, 65536, 98304])
            off = rng.randrange(0, size - n + 1)
            data = bytes([i % 251 + 1]) * n
            assert os.pwrite(fd, data, off) == n
            expect[off : off + n] = data
        os.fsync(fd)
        assert (ws.server / "random").read_bytes() == expect
    finally:
        os.close(fd)
    assert path.read_bytes() == expect

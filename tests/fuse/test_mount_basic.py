"""POSIX behaviour of a fusenfs mount, driven with plain ``os.*`` calls.

Each test works in its own directory made through the mount (``ws.dir``) and checks the
server's side of the same files (``ws.server``, Ganesha's export directory) where that
tells more than the mount alone.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer

from .helpers import MiB, MountFactory, Workspace, drop_caches, wait_until

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

#: Seconds to wait for the kernel's asynchronous RELEASE after close(2).
RELEASE_WAIT = 10.0


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def errno_of(exc: pytest.ExceptionInfo[OSError]) -> str:
    return errno.errorcode.get(exc.value.errno or 0, str(exc.value.errno))


# ---------------------------------------------------------------------- namespace


def test_rename_over_existing_file_replaces_it(ws: Workspace) -> None:
    src, dst = ws.dir / "src", ws.dir / "dst"
    write_file(src, b"new contents")
    write_file(dst, b"old contents that are longer")
    src_ino = os.stat(src).st_ino
    os.rename(src, dst)
    assert not src.exists()
    assert dst.read_bytes() == b"new contents"
    assert os.stat(dst).st_size == len(b"new contents")
    assert os.stat(dst).st_ino == src_ino, "rename must keep the file's inode number"
    assert sorted(os.listdir(ws.dir)) == ["dst"]
    assert sorted(os.listdir(ws.server)) == ["dst"]
    assert (ws.server / "dst").read_bytes() == b"new contents"


def test_rename_directory_over_empty_directory(ws: Workspace) -> None:
    os.mkdir(ws.dir / "a")
    write_file(ws.dir / "a" / "inside", b"x")
    os.mkdir(ws.dir / "b")
    os.rename(ws.dir / "a", ws.dir / "b")
    assert sorted(os.listdir(ws.dir)) == ["b"]
    assert (ws.dir / "b" / "inside").read_bytes() == b"x"
    # ...but not over a non-empty one.
    os.mkdir(ws.dir / "c")
    write_file(ws.dir / "c" / "keep", b"y")
    with pytest.raises(OSError) as exc:
        os.rename(ws.dir / "b", ws.dir / "c")
    assert exc.value.errno in (errno.ENOTEMPTY, errno.EEXIST), errno_of(exc)


def test_rmdir_of_non_empty_directory_is_enotempty(ws: Workspace) -> None:
    d = ws.dir / "full"
    os.mkdir(d)
    write_file(d / "f", b"data")
    with pytest.raises(OSError) as exc:
        os.rmdir(d)
    assert exc.value.errno == errno.ENOTEMPTY, errno_of(exc)
    assert (d / "f").read_bytes() == b"data"
    with pytest.raises(NotADirectoryError):
        os.rmdir(d / "f")
    os.unlink(d / "f")
    os.rmdir(d)
    assert not d.exists()
    assert os.listdir(ws.server) == []


def test_unlink_of_open_file_keeps_it_usable_until_close(ws: Workspace) -> None:
    path = ws.dir / "victim"
    write_file(ws.dir / "bystander", b"stays")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, b"before unlink\n") == 14
        os.unlink(path)
        # The name is gone at once, on the mount and on the server...
        with pytest.raises(FileNotFoundError):
            os.stat(path)
        assert "victim" not in os.listdir(ws.dir)
        assert "victim" not in os.listdir(ws.server)
        # ...but the open descriptor still reads and writes the file.
        assert os.pwrite(fd, b"after unlink\n", 14) == 13
        assert os.pread(fd, 100, 0) == b"before unlink\nafter unlink\n"
        os.fsync(fd)
        assert os.fstat(fd).st_size == 27
        os.ftruncate(fd, 6)
        assert os.pread(fd, 100, 0) == b"before"
        # A new file may take the name meanwhile.
        write_file(path, b"another file")
        assert os.pread(fd, 100, 0) == b"before"
    finally:
        os.close(fd)
    # After the last close nothing of it is left, on the server either (RELEASE is
    # asynchronous after close(2), hence the bounded wait).
    expected = ["bystander", "victim"]
    assert wait_until(lambda: sorted(os.listdir(ws.server)) == expected, RELEASE_WAIT), (
        f"server still holds {sorted(os.listdir(ws.server))}"
    )
    assert sorted(os.listdir(ws.dir)) == expected
    assert path.read_bytes() == b"another file"


def test_mkdir_of_existing_name_is_eexist(ws: Workspace) -> None:
    os.mkdir(ws.dir / "d")
    with pytest.raises(FileExistsError):
        os.mkdir(ws.dir / "d")
    write_file(ws.dir / "f", b"")
    with pytest.raises(FileExistsError):
        os.mkdir(ws.dir / "f")
    with pytest.raises(FileExistsError):
        os.open(ws.dir / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert stat.S_ISDIR(os.stat(ws.dir / "d").st_mode)
    assert stat.S_ISREG(os.stat(ws.dir / "f").st_mode)


def test_open_of_missing_file_is_enoent(ws: Workspace) -> None:
    with pytest.raises(FileNotFoundError):
        os.open(ws.dir / "missing", os.O_RDONLY)
    with pytest.raises(FileNotFoundError):
        os.stat(ws.dir / "missing")
    with pytest.raises(FileNotFoundError):
        os.open(ws.dir / "no-dir" / "missing", os.O_WRONLY | os.O_CREAT, 0o644)
    with pytest.raises(FileNotFoundError):
        os.unlink(ws.dir / "missing")
    with pytest.raises(FileNotFoundError):
        os.rename(ws.dir / "missing", ws.dir / "other")
    write_file(ws.dir / "file", b"")
    with pytest.raises(NotADirectoryError):
        os.stat(ws.dir / "file" / "below")


def test_hard_link_counts(ws: Workspace) -> None:
    a = ws.dir / "a"
    write_file(a, b"linked")
    os.mkdir(ws.dir / "sub")
    assert os.stat(a).st_nlink == 1
    os.link(a, ws.dir / "b")
    os.link(a, ws.dir / "sub" / "c")
    names = [a, ws.dir / "b", ws.dir / "sub" / "c"]
    assert [os.stat(p).st_nlink for p in names] == [3, 3, 3]
    assert len({os.stat(p).st_ino for p in names}) == 1
    assert os.stat(ws.server / "a").st_nlink == 3
    with pytest.raises(FileExistsError):
        os.link(a, ws.dir / "b")
    os.unlink(ws.dir / "b")
    assert os.stat(a).st_nlink == 2
    assert os.stat(ws.dir / "sub" / "c").st_nlink == 2
    drop_caches()
    assert os.stat(ws.dir / "sub" / "c").st_nlink == 2
    assert (ws.dir / "sub" / "c").read_bytes() == b"linked"
    # Directories: 2 + one per subdirectory.
    assert os.stat(ws.dir).st_nlink == 3
    os.mkdir(ws.dir / "sub2")
    assert os.stat(ws.dir).st_nlink == 4


def test_symlink_and_readlink(ws: Workspace) -> None:
    write_file(ws.dir / "target", b"pointed at")
    targets = {
        "rel": "target",
        "dangling": "no/such/../file",
        "absolute": "/etc/hostname",
        "long": "x" * 1000,
    }
    for name, target in targets.items():
        os.symlink(target, ws.dir / name)
    for name, target in targets.items():
        assert os.readlink(ws.dir / name) == target
        st = os.lstat(ws.dir / name)
        assert stat.S_ISLNK(st.st_mode)
        assert st.st_size == len(target)
        assert os.readlink(ws.server / name) == target
    assert (ws.dir / "rel").read_bytes() == b"pointed at"
    with pytest.raises(FileNotFoundError):
        os.stat(ws.dir / "dangling")
    with pytest.raises(OSError) as exc:
        os.readlink(ws.dir / "target")
    assert exc.value.errno == errno.EINVAL, errno_of(exc)
    drop_caches()
    assert os.readlink(ws.dir / "long") == "x" * 1000


def test_mkfifo_creates_a_fifo_or_fails_cleanly(ws: Workspace) -> None:
    path = ws.dir / "fifo"
    try:
        os.mkfifo(path, 0o640)
    except OSError as e:
        # A server may refuse special files; that must be a clean errno, never EIO.
        assert e.errno in (errno.EPERM, errno.EACCES, errno.EINVAL, errno.EOPNOTSUPP), e
        assert not path.exists()
        return
    st = os.lstat(path)
    assert stat.S_ISFIFO(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert stat.S_ISFIFO(os.lstat(ws.server / "fifo").st_mode)
    # Opening it works as a local FIFO does (the kernel serves the pipe itself).
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(wfd, b"through the fifo")
            assert os.read(rfd, 100) == b"through the fifo"
        finally:
            os.close(wfd)
    finally:
        os.close(rfd)
    os.unlink(path)
    assert os.listdir(ws.server) == []


# ---------------------------------------------------------------------- attributes


def test_chmod(ws: Workspace) -> None:
    f = ws.dir / "f"
    write_file(f, b"mode bits")
    for mode in (0o600, 0o640, 0o755, 0o444, 0o4755, 0o2750, 0o1777, 0o000, 0o644):
        os.chmod(f, mode)
        assert stat.S_IMODE(os.stat(f).st_mode) == mode, oct(mode)
        assert stat.S_IMODE(os.stat(ws.server / "f").st_mode) == mode, oct(mode)
    d = ws.dir / "d"
    os.mkdir(d, 0o755)
    os.chmod(d, 0o700)
    drop_caches()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_ISDIR(os.stat(d).st_mode)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644
    # Creation modes honour the umask, as on a local file system.
    old = os.umask(0o027)
    try:
        write_file(ws.dir / "masked", b"", mode=0o666)
        os.mkdir(ws.dir / "masked-dir", 0o777)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(ws.dir / "masked").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(ws.dir / "masked-dir").st_mode) == 0o750


def test_truncate_grow_and_shrink(ws: Workspace) -> None:
    f = ws.dir / "f"
    data = bytes(range(256)) * 40  # 10240 bytes
    write_file(f, data)
    # By path (the client opens the file around the SETATTR).
    os.truncate(f, 100_000)
    assert os.stat(f).st_size == 100_000
    assert f.read_bytes() == data + bytes(100_000 - len(data))
    os.truncate(f, 1000)
    assert os.stat(f).st_size == 1000
    assert f.read_bytes() == data[:1000]
    assert (ws.server / "f").read_bytes() == data[:1000]
    os.truncate(f, 0)
    assert os.stat(f).st_size == 0
    assert f.read_bytes() == b""
    # Through an open descriptor, mixed with writes.
    fd = os.open(f, os.O_RDWR)
    try:
        os.write(fd, b"0123456789")
        os.ftruncate(fd, 4)
        assert os.fstat(fd).st_size == 4
        assert os.pread(fd, 100, 0) == b"0123"
        os.ftruncate(fd, 3 * MiB)
        assert os.fstat(fd).st_size == 3 * MiB
        os.pwrite(fd, b"end", 3 * MiB - 3)
        assert os.pread(fd, 8, 3 * MiB - 8) == b"\0\0\0\0\0end"
    finally:
        os.close(fd)
    assert os.stat(ws.server / "f").st_size == 3 * MiB
    # O_TRUNC on open.
    fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert os.stat(f).st_size == 0
    assert os.stat(ws.server / "f").st_size == 0


def _server_time_precision_ns(directory: Path) -> int:
    """The finest time step the server's file system keeps: 1 (ns) or coarser."""
    probe = directory / ".time-probe"
    probe.write_bytes(b"")
    try:
        os.utime(probe, ns=(1_000_001_001, 1_000_001_001))
        kept = os.stat(probe).st_mtime_ns
    finally:
        probe.unlink()
    return {1_000_001_001: 1, 1_000_001_000: 1000}.get(kept, 1_000_000_000)


def test_utime_round_trips_exact_times(ws: Workspace) -> None:
    f = ws.dir / "f"
    write_file(f, b"times")
    precision = _server_time_precision_ns(ws.server)
    cases = [
        (1_600_000_000_123_456_789, 1_500_000_000_987_654_321),
        (0, 1),
        (2_000_000_000_000_000_001, 1_700_000_000_999_999_999),
        (1_234_567_890_000_000_000, 1_234_567_890_000_000_000),
    ]
    for atime, mtime in cases:
        os.utime(f, ns=(atime, mtime))
        want_a, want_m = atime - atime % precision, mtime - mtime % precision
        st = os.stat(f)
        assert (st.st_atime_ns, st.st_mtime_ns) == (want_a, want_m)
        server = os.stat(ws.server / "f")
        assert (server.st_atime_ns, server.st_mtime_ns) == (want_a, want_m)
    # Fresh from the server after the kernel forgot the inode.
    drop_caches()
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_234_567_890_000_000_000,) * 2
    # Directories and "now".
    os.utime(ws.dir, ns=(1_111_111_111_222_222_222, 1_333_333_333_444_444_444))
    assert os.stat(ws.dir).st_mtime_ns == 1_333_333_333_444_444_444 - (
        1_333_333_333_444_444_444 % precision
    )
    before = time.time()
    os.utime(f)
    st = os.stat(f)
    assert st.st_mtime_ns == os.stat(ws.server / "f").st_mtime_ns
    assert before - 2 <= st.st_mtime <= time.time() + 2


def test_inode_numbers_are_stable(ws: Workspace) -> None:
    f = ws.dir / "f"
    write_file(f, b"inode")
    os.mkdir(ws.dir / "sub")
    os.link(f, ws.dir / "sub" / "g")
    ino = os.stat(f).st_ino
    dir_ino = os.stat(ws.dir / "sub").st_ino
    assert os.stat(ws.dir / "sub" / "g").st_ino == ino
    assert ino != dir_ino
    listed = {e.name: e.inode() for e in os.scandir(ws.dir)}
    assert listed["f"] == ino and listed["sub"] == dir_ino
    for _ in range(2):
        drop_caches()
        assert os.stat(ws.dir / "sub" / "g").st_ino == ino
        assert os.stat(f).st_ino == ino
        assert os.stat(ws.dir / "sub").st_ino == dir_ino
        assert {e.name: e.inode() for e in os.scandir(ws.dir)} == listed
    # Renamed, the file keeps its number too.
    os.rename(f, ws.dir / "renamed")
    drop_caches()
    assert os.stat(ws.dir / "renamed").st_ino == ino
    # Distinct files have distinct numbers.
    write_file(ws.dir / "other", b"")
    assert os.stat(ws.dir / "other").st_ino not in (ino, dir_ino)


# ---------------------------------------------------------------------- data


def test_write_is_visible_in_stat_size_at_once(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer
) -> None:
    # actimeo=0: the kernel keeps no attributes, so every stat below is a GETATTR that
    # the client must answer only after its write-behind has reached the server; the
    # server's own file then has that size too (unstable data is visible to stat).
    m = mount("actimeo=0")
    os.mkdir(m.path / fresh_dir)
    f = m.path / fresh_dir / "growing"
    server = ganesha.export_path / fresh_dir / "growing"
    chunk = os.urandom(768 * 1024)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for i in range(1, 9):
            assert os.write(fd, chunk) == len(chunk)
            assert os.fstat(fd).st_size == i * len(chunk)
            assert os.stat(server).st_size == i * len(chunk)
            assert os.stat(f).st_size == i * len(chunk)
        os.pwrite(fd, b"tail", 20 * MiB)
        assert os.stat(f).st_size == 20 * MiB + 4
        assert os.stat(server).st_size == 20 * MiB + 4
    finally:
        os.close(fd)
    assert os.stat(f).st_size == 20 * MiB + 4
    with open(server, "rb") as check:
        assert check.read(len(chunk)) == chunk
        check.seek(20 * MiB)
        assert check.read() == b"tail"


def test_fsync_puts_data_on_the_server(ws: Workspace) -> None:
    f = ws.dir / "f"
    first, second = os.urandom(3 * MiB + 17), os.urandom(100_000)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, first)
        os.fsync(fd)
        assert (ws.server / "f").read_bytes() == first
        os.pwrite(fd, second, 1000)
        os.fdatasync(fd)
        expected = first[:1000] + second + first[1000 + len(second) :]
        assert (ws.server / "f").read_bytes() == expected
        os.fsync(fd)  # nothing new: still fine
    finally:
        os.close(fd)
    assert f.read_bytes() == expected
    # fsync of a descriptor opened read-only, and of a directory, succeed too.
    rfd = os.open(f, os.O_RDONLY)
    try:
        os.fsync(rfd)
    finally:
        os.close(rfd)
    dfd = os.open(ws.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def test_o_append_writer(ws: Workspace) -> None:
    f = ws.dir / "log"
    write_file(f, b"one\n")
    fd = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"two\n")
        os.write(fd, b"three\n")
        os.lseek(fd, 0, os.SEEK_SET)  # O_APPEND writes go to the end regardless
        os.write(fd, b"four\n")
    finally:
        os.close(fd)
    assert f.read_bytes() == b"one\ntwo\nthree\nfour\n"
    # Two appenders on the same mount interleave whole writes, never overwrite.
    fd1 = os.open(f, os.O_WRONLY | os.O_APPEND)
    fd2 = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(50):
            os.write(fd1 if i % 2 else fd2, f"line {i:02d}\n".encode())
    finally:
        os.close(fd1)
        os.close(fd2)
    lines = f.read_bytes().splitlines()
    assert lines[:4] == [b"one", b"two", b"three", b"four"]
    assert lines[4:] == [f"line {i:02d}".encode() for i in range(50)]
    # Shell-style appends, each a fresh open.
    for i in range(5):
        fd = os.open(f, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"shell {i}\n".encode())
        finally:
            os.close(fd)
    assert (ws.server / "log").read_bytes().splitlines()[-5:] == [
        f"shell {i}".encode() for i in range(5)
    ]

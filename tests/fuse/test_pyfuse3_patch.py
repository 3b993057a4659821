"""The patched pyfuse3 (contrib/pyfuse3/) on a real mount: locks, interrupts, "now" times.

A tiny pyfuse3 file system (this module, run as ``python -m tests.fuse.test_pyfuse3_patch
serve VARIANT MOUNTPOINT RECORD``) serves a root directory with two files: ``f`` (4 KiB)
and ``slow``, whose reads never complete.  It appends one JSON line per interesting
handler call to RECORD, which the tests read.  Two variants:

- ``full``: getlk/setlk/flock handlers with a real lock table (so that two processes
  conflict through the file system) and ``enable_interrupts = True``;
- ``plain``: neither, i.e. what every pyfuse3 file system was before the patch.

The file system runs in a subprocess and the system calls come from this process and
from child processes (this module again: ``child-getlk``, ``child-setlk``, ...), as an
application's would.  Every wait is bounded; each test's file system is unmounted
(``fusermount3 -u``, then ``-uz``) and its processes killed by PID, also on failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest

from .helpers import REPO, fuse_unavailable, in_ci, wait_until

pytestmark = pytest.mark.fuse

#: Seconds for the file system to come up, and to go away after the unmount.
MOUNT_TIMEOUT = 15.0
EXIT_TIMEOUT = 10.0
#: Seconds for a handler call to show up in the record.
RECORD_TIMEOUT = 10.0
#: Seconds a child process may take (python start-up included).
CHILD_TIMEOUT = 30.0
#: What the brief promises for SIGKILL of a process blocked in a request.
KILL_DEADLINE = 2.0

FILE_SIZE = 4096
MIB = 1 << 20
ROOT_INODE = 1
FILE_INODE = 2
SLOW_INODE = 3
NAMES = {b"f": FILE_INODE, b"slow": SLOW_INODE}

#: struct flock on Linux x86-64 / aarch64: l_type, l_whence, l_start, l_len, l_pid (32 bytes).
FLOCK_FORMAT = "hhqqi4x"


def pack_flock(l_type: int, l_start: int, l_len: int) -> bytes:
    return struct.pack(FLOCK_FORMAT, l_type, os.SEEK_SET, l_start, l_len, 0)


def unpack_flock(data: bytes) -> tuple[int, int, int, int]:
    """(l_type, l_start, l_len, l_pid) of a struct flock."""
    l_type, _whence, l_start, l_len, l_pid = struct.unpack(FLOCK_FORMAT, data)
    return l_type, l_start, l_len, l_pid


# ------------------------------------------------------------------ the file system
# Only the ``serve`` subprocess imports pyfuse3's runtime parts; the test process
# needs nothing of it but the record format.


def serve(variant: str, mountpoint: str, record_path: str) -> None:
    """Mount the test file system and serve it until unmounted or sent SIGTERM."""
    import pyfuse3
    import trio
    from pyfuse3 import (
        EntryAttributes,
        FileInfo,
        FileLock,
        FUSEError,
        RequestContext,
        SetattrFields,
    )

    record_file: TextIO = open(record_path, "a", buffering=1)  # noqa: SIM115 (whole process)

    def record(op: str, **fields: Any) -> None:
        record_file.write(json.dumps({"op": op, **fields}) + "\n")

    @dataclass
    class Range:
        """One POSIX lock: [start, end) bytes, end None meaning "to end of file"."""

        owner: int
        l_type: int
        start: int
        end: int | None
        pid: int

        def overlaps(self, start: int, end: int | None) -> bool:
            return (end is None or self.start < end) and (self.end is None or start < self.end)

    def range_end(lock: FileLock) -> int | None:
        return None if lock.l_len == 0 else lock.l_start + lock.l_len

    class PlainFs(pyfuse3.Operations):
        """Two files in a root directory; no lock handlers, no interrupts."""

        def __init__(self) -> None:
            super().__init__()
            now = time.time_ns()
            self.times = {ino: [now, now] for ino in (ROOT_INODE, FILE_INODE, SLOW_INODE)}
            self.next_fh = 1
            self.fh_inode: dict[int, int] = {}
            self.kept: list[tuple[int, bytes | memoryview]] = []

        def attrs(self, inode: int) -> EntryAttributes:
            entry = EntryAttributes()
            entry.st_ino = inode
            if inode == ROOT_INODE:
                entry.st_mode = stat.S_IFDIR | 0o755
                entry.st_nlink = 2
            else:
                entry.st_mode = stat.S_IFREG | 0o666
                entry.st_size = FILE_SIZE
            entry.st_atime_ns, entry.st_mtime_ns = self.times[inode]
            entry.st_ctime_ns = self.times[inode][1]
            entry.attr_timeout = 0
            entry.entry_timeout = 60
            return entry

        async def lookup(
            self, parent_inode: int, name: bytes, ctx: RequestContext
        ) -> EntryAttributes:
            if parent_inode != ROOT_INODE or name not in NAMES:
                raise FUSEError(errno.ENOENT)
            return self.attrs(NAMES[name])

        async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
            return self.attrs(inode)

        async def setattr(
            self,
            inode: int,
            attr: EntryAttributes,
            fields: SetattrFields,
            fh: int | None,
            ctx: RequestContext,
        ) -> EntryAttributes:
            record(
                "setattr",
                inode=inode,
                update_atime=fields.update_atime,
                update_mtime=fields.update_mtime,
                update_atime_now=fields.update_atime_now,
                update_mtime_now=fields.update_mtime_now,
                atime_ns=attr.st_atime_ns,
                mtime_ns=attr.st_mtime_ns,
            )
            if fields.update_atime:
                self.times[inode][0] = attr.st_atime_ns
            if fields.update_mtime:
                self.times[inode][1] = attr.st_mtime_ns
            return self.attrs(inode)

        async def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
            fh = self.next_fh
            self.next_fh += 1
            self.fh_inode[fh] = inode
            # direct_io: reads reach read() in the caller's context, so that a signal
            # to the caller interrupts that very request.
            return FileInfo(fh=fh, direct_io=inode == SLOW_INODE)

        async def read(self, fh: int, off: int, size: int) -> bytes:
            if self.fh_inode[fh] != SLOW_INODE:
                return b"x" * max(0, min(size, FILE_SIZE - off))
            record("read-start", fh=fh)
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                record("read-cancelled", fh=fh)
                raise
            raise AssertionError("unreachable")

        async def write(self, fh: int, off: int, buf: bytes | memoryview) -> int:
            self.kept.append((off, buf))
            record(
                "write",
                off=off,
                size=len(buf),
                type=type(buf).__name__,
                readonly=memoryview(buf).readonly,
            )
            return len(buf)

        async def flush(self, fh: int) -> None:
            # Every buffer a write handed over still holds what was written into it
            # (block i of the file: the byte i + 1), however many requests came since.
            intact = all(bytes(buf) == bytes([off // MIB + 1]) * len(buf) for off, buf in self.kept)
            record("flush", fh=fh, kept=len(self.kept), intact=intact)

        async def release(self, fh: int) -> None:
            record("release", fh=fh)
            del self.fh_inode[fh]

    class LockFs(PlainFs):
        """PlainFs with lock handlers (a lock table per inode), interrupts and
        zero-copy writes."""

        enable_interrupts = True
        enable_zero_copy_writes = True

        def __init__(self) -> None:
            super().__init__()
            self.posix: dict[int, list[Range]] = {}
            self.flocks: dict[int, dict[int, int]] = {}  # inode -> owner -> LOCK_SH/EX
            self.changed = trio.Event()

        def notify(self) -> None:
            self.changed.set()
            self.changed = trio.Event()

        def conflict(self, inode: int, owner: int, lock: FileLock) -> Range | None:
            for r in self.posix.get(inode, []):
                if (
                    r.owner != owner
                    and r.overlaps(lock.l_start, range_end(lock))
                    and fcntl.F_WRLCK in (r.l_type, lock.l_type)
                ):
                    return r
            return None

        async def getlk(self, fh: int, owner: int, lock: FileLock, ctx: RequestContext) -> FileLock:
            record("getlk", fh=fh, owner=owner, **lock_fields(lock), pid=ctx.pid)
            r = self.conflict(self.fh_inode[fh], owner, lock)
            if r is None:
                return FileLock(fcntl.F_UNLCK)
            length = 0 if r.end is None else r.end - r.start
            return FileLock(r.l_type, r.start, length, r.pid)

        async def setlk(
            self, fh: int, owner: int, lock: FileLock, sleep: bool, ctx: RequestContext
        ) -> None:
            record("setlk", fh=fh, owner=owner, **lock_fields(lock), sleep=sleep, pid=ctx.pid)
            inode = self.fh_inode[fh]
            if lock.l_type != fcntl.F_UNLCK:
                while self.conflict(inode, owner, lock) is not None:
                    if not sleep:
                        raise FUSEError(errno.EAGAIN)
                    try:
                        await self.changed.wait()
                    except trio.Cancelled:
                        record("setlk-cancelled", owner=owner, pid=ctx.pid)
                        raise
            start, end = lock.l_start, range_end(lock)
            kept: list[Range] = []
            for r in self.posix.get(inode, []):
                if r.owner != owner or not r.overlaps(start, end):
                    kept.append(r)
                    continue
                if r.start < start:  # the part before the new range stays
                    kept.append(Range(owner, r.l_type, r.start, start, r.pid))
                if end is not None and (r.end is None or r.end > end):  # and the part after
                    kept.append(Range(owner, r.l_type, end, r.end, r.pid))
            if lock.l_type != fcntl.F_UNLCK:
                kept.append(Range(owner, lock.l_type, start, end, lock.l_pid))
            self.posix[inode] = kept
            self.notify()

        async def flock(self, fh: int, owner: int, op: int, ctx: RequestContext) -> None:
            record("flock", fh=fh, owner=owner, lock_op=op, pid=ctx.pid)
            holders = self.flocks.setdefault(self.fh_inode[fh], {})
            if op & fcntl.LOCK_UN:
                holders.pop(owner, None)
                self.notify()
                return
            want = op & (fcntl.LOCK_SH | fcntl.LOCK_EX)
            while any(o != owner and fcntl.LOCK_EX in (kind, want) for o, kind in holders.items()):
                if op & fcntl.LOCK_NB:
                    raise FUSEError(errno.EWOULDBLOCK)
                await self.changed.wait()
            holders[owner] = want
            self.notify()

    def lock_fields(lock: FileLock) -> dict[str, int]:
        return {"type": lock.l_type, "start": lock.l_start, "len": lock.l_len, "l_pid": lock.l_pid}

    ops = LockFs() if variant == "full" else PlainFs()
    options = set(pyfuse3.default_options)
    options.add("fsname=pyfuse3-patch-test")
    pyfuse3.init(ops, mountpoint, options)

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def stop_on_sigterm() -> None:
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        record("sigterm")
                        nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_sigterm)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    record("mounted", pid=os.getpid())
    try:
        trio.run(main)
    finally:
        record("main-returned")
        pyfuse3.close(unmount=True)
        record_file.close()


# ------------------------------------------------------------------ child processes


def child(command: str, args: list[str]) -> None:
    """What a child process does: one locking call on a file, result on stdout as JSON."""
    path = args[0]
    if command == "read":
        with open(path, "rb", buffering=0) as f:
            print(json.dumps({"read": len(f.read(16))}), flush=True)
        return
    fd = os.open(path, os.O_RDWR)
    if command == "getlk":
        l_type, start, length = (int(a) for a in args[1:4])
        result = fcntl.fcntl(fd, fcntl.F_GETLK, pack_flock(l_type, start, length))
        print(json.dumps({"getlk": unpack_flock(result), "pid": os.getpid()}), flush=True)
    elif command == "setlk":
        l_type, start, length = (int(a) for a in args[1:4])
        try:
            fcntl.fcntl(fd, fcntl.F_SETLK, pack_flock(l_type, start, length))
            print(json.dumps({"errno": 0}), flush=True)
        except OSError as e:
            print(json.dumps({"errno": e.errno}), flush=True)
    elif command == "flock-nb":
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            print(json.dumps({"errno": 0}), flush=True)
        except OSError as e:
            print(json.dumps({"errno": e.errno}), flush=True)
    elif command == "setlkw":
        # fcntl(F_SETLKW) through libc: Python's fcntl.fcntl would retry on EINTR
        # (PEP 475).  A SIGINT handler without SA_RESTART makes the kernel return EINTR.
        signal.signal(signal.SIGINT, lambda signum, frame: None)
        signal.siginterrupt(signal.SIGINT, True)
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(pack_flock(fcntl.F_WRLCK, 0, 0))
        print(json.dumps({"waiting": True}), flush=True)
        res = libc.fcntl(fd, fcntl.F_SETLKW, buf)
        print(json.dumps({"res": res, "errno": ctypes.get_errno()}), flush=True)
    else:
        raise SystemExit(f"unknown child command {command!r}")
    os.close(fd)


def module_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.fuse.test_pyfuse3_patch", *args]


def run_child(*args: str) -> dict[str, Any]:
    """Run a child command to completion (bounded) and return what it printed."""
    try:
        result = subprocess.run(
            module_argv(*args), capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=REPO
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child {args} did not finish in {CHILD_TIMEOUT} s: {e.stderr!r}")
    assert result.returncode == 0, f"child {args} failed: {result.stderr}"
    value: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


# ------------------------------------------------------------------ test side


@dataclass
class Served:
    """One running test file system: its mount point, server process and record."""

    mountpoint: Path
    record_path: Path
    server: subprocess.Popen[bytes]
    children: list[subprocess.Popen[str]] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    @property
    def file(self) -> Path:
        return self.mountpoint / "f"

    @property
    def slow(self) -> Path:
        return self.mountpoint / "slow"

    def open(self, path: Path) -> int:
        """os.open(path, O_RDWR); whatever the test leaves open is closed at teardown."""
        fd = os.open(path, os.O_RDWR)
        self.fds.append(fd)
        return fd

    def close(self, fd: int) -> None:
        self.fds.remove(fd)
        os.close(fd)

    def records(self, op: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.record_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e for e in entries if op is None or e["op"] == op]

    def wait_record(self, op: str, count: int = 1, timeout: float = RECORD_TIMEOUT) -> None:
        """Wait until the record has ``count`` entries of ``op``; fail the test if not."""
        if not wait_until(lambda: len(self.records(op)) >= count, timeout):
            pytest.fail(f"no {count} x {op!r} in the record after {timeout} s: {self.records()}")

    def wait_for(self, op: str, timeout: float = RECORD_TIMEOUT, **match: Any) -> dict[str, Any]:
        """The first ``op`` record whose fields include ``match``, waiting for it."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [e for e in self.records(op) if all(e.get(k) == v for k, v in match.items())]
            return bool(found)

        if not wait_until(check, timeout):
            pytest.fail(f"no {op} {match} in the record after {timeout} s: {self.records()}")
        return found[0]

    def start_child(self, *args: str) -> subprocess.Popen[str]:
        """Start a child command in the background (stopped at teardown by PID)."""
        proc = subprocess.Popen(
            module_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
        )
        self.children.append(proc)
        return proc

    def stop(self) -> list[str]:
        """Unmount, stop the server and the children; returns what went wrong."""
        problems: list[str] = []
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
        if is_mounted(self.mountpoint):
            result = subprocess.run(
                ["fusermount3", "-u", self.mountpoint], capture_output=True, timeout=10
            )
            if result.returncode != 0:
                problems.append(f"fusermount3 -u failed: {result.stderr.decode().strip()}")
                self.server.terminate()
        try:
            self.server.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"the file system did not exit in {EXIT_TIMEOUT} s; killed it")
            self.server.kill()
            self.server.wait(timeout=EXIT_TIMEOUT)
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True, timeout=10)
            if is_mounted(self.mountpoint):
                problems.append(f"{self.mountpoint} is still mounted after fusermount3 -uz")
        for proc in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=EXIT_TIMEOUT)
            if proc.poll() is None:
                problems.append(f"child {proc.args!r} (pid {proc.pid}) did not exit")
        return problems


def is_mounted(path: Path) -> bool:
    """True if ``path`` is a mount point, also when its FUSE server is gone (where
    os.path.ismount fails with ENOTCONN and says False)."""
    target = os.fspath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


@contextlib.contextmanager
def served(variant: str) -> Iterator[Served]:
    """Mount the test file system (``variant`` "full" or "plain") for one test."""
    reason = fuse_unavailable()
    if reason is not None:
        if in_ci():
            pytest.fail(f"FUSE is required under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    tmp = tempfile.mkdtemp(prefix="pyfuse3-patch-")
    try:
        mountpoint = Path(tmp) / "mnt"
        mountpoint.mkdir()
        record_path = Path(tmp) / "record.jsonl"
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 (closed below)
        server = subprocess.Popen(
            module_argv("serve", variant, str(mountpoint), str(record_path)),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        fs = Served(mountpoint, record_path, server)
        try:
            if not wait_until(
                lambda: is_mounted(mountpoint) or server.poll() is not None, MOUNT_TIMEOUT
            ) or not is_mounted(mountpoint):
                pytest.fail(f"the test file system did not mount: {server_log(tmp)}")
            yield fs
        except BaseException:
            fs.stop()  # the test's own failure is the one to report
            raise
        finally:
            log.close()
        problems = fs.stop()
        if problems:
            pytest.fail("\n".join([*problems, server_log(tmp)]), pytrace=False)
    finally:
        # Never recurse into a file system that is still mounted.
        if not is_mounted(Path(tmp) / "mnt"):
            shutil.rmtree(tmp, ignore_errors=True)


def server_log(tmp: str) -> str:
    return (Path(tmp) / "server.log").read_text(errors="replace")[-3000:]


# ------------------------------------------------------------------ (1) lock handlers


def test_posix_locks_reach_the_handlers_and_close_releases_them() -> None:
    with served("full") as fs:
        fd = fs.open(fs.file)
        fcntl.fcntl(fd, fcntl.F_SETLK, pack_flock(fcntl.F_WRLCK, 10, 20))
        (mine,) = fs.records("setlk")
        assert (mine["type"], mine["start"], mine["len"], mine["sleep"]) == (
            fcntl.F_WRLCK,
            10,
            20,
            False,
        )
        assert mine["l_pid"] == os.getpid() == mine["pid"]
        owner = mine["owner"]

        # Another process sees the lock through getlk, and cannot take it.
        seen = run_child("child-getlk", str(fs.file), str(fcntl.F_RDLCK), "0", "100")
        assert seen["getlk"] == [fcntl.F_WRLCK, 10, 20, os.getpid()]
        (getlk,) = fs.records("getlk")
        assert (getlk["type"], getlk["start"], getlk["len"]) == (fcntl.F_RDLCK, 0, 100)
        assert getlk["owner"] != owner
        assert run_child("child-setlk", str(fs.file), str(fcntl.F_WRLCK), "25", "1") == {
            "errno": errno.EAGAIN
        }
        free = run_child("child-getlk", str(fs.file), str(fcntl.F_WRLCK), "30", "0")
        assert free["getlk"][0] == fcntl.F_UNLCK

        # lockf(3) is setlk too; an explicit unlock arrives as F_UNLCK.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 100)
        fcntl.fcntl(fd, fcntl.F_SETLK, pack_flock(fcntl.F_UNLCK, 10, 20))
        calls = fs.records("setlk")
        mine_later = [(c["type"], c["start"], c["len"]) for c in calls if c["owner"] == owner]
        assert mine_later == [
            (fcntl.F_WRLCK, 10, 20),
            (fcntl.F_WRLCK, 100, 5),
            (fcntl.F_UNLCK, 10, 20),
        ]

        # close(): flush, then F_UNLCK over the whole file for this process's owner.
        fh = mine["fh"]
        n_flush = len([e for e in fs.records("flush") if e["fh"] == fh])
        fs.close(fd)
        assert wait_until(
            lambda: len([e for e in fs.records("flush") if e["fh"] == fh]) > n_flush,
            RECORD_TIMEOUT,
        )
        assert wait_until(lambda: len(fs.records("setlk")) > len(calls), RECORD_TIMEOUT)
        events = fs.records()
        flush_at = max(i for i, e in enumerate(events) if e["op"] == "flush" and e["fh"] == fh)
        unlock_at = max(i for i, e in enumerate(events) if e["op"] == "setlk" and e["fh"] == fh)
        unlock = events[unlock_at]
        assert (unlock["type"], unlock["start"], unlock["len"], unlock["sleep"]) == (
            fcntl.F_UNLCK,
            0,
            0,
            False,
        )
        assert unlock["owner"] == owner
        assert unlock_at > flush_at, "the lock release comes after flush"
        # The lock is gone for other processes.
        assert run_child("child-setlk", str(fs.file), str(fcntl.F_WRLCK), "100", "5") == {
            "errno": 0
        }


def test_flock_reaches_the_handler_per_open_file_and_release_unlocks() -> None:
    with served("full") as fs:
        fd1 = fs.open(fs.file)
        fd2 = fs.open(fs.file)  # a second open file description
        fcntl.flock(fd1, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
        dup = os.dup(fd1)
        fs.fds.append(dup)
        fcntl.flock(dup, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: no conflict
        calls = fs.records("flock")
        assert [c["lock_op"] for c in calls] == [fcntl.LOCK_EX | fcntl.LOCK_NB] * 3
        owner1, owner2, owner_dup = (c["owner"] for c in calls)
        assert owner1 == owner_dup != owner2, "the owner is the open file description"
        assert fs.records("setlk") == [], "flock() must not arrive as a POSIX lock"
        assert run_child("child-flock-nb", str(fs.file)) == {"errno": errno.EWOULDBLOCK}

        # The last close of the open file sends LOCK_UN with its owner, then release.
        fh1 = calls[0]["fh"]
        fs.close(dup)
        fs.close(fd1)
        assert wait_until(
            lambda: any(e["fh"] == fh1 for e in fs.records("release")), RECORD_TIMEOUT
        )
        events = fs.records()
        release_at = next(
            i for i, e in enumerate(events) if e["op"] == "release" and e["fh"] == fh1
        )
        unlocks = [e for e in events[:release_at] if e["op"] == "flock" and e["fh"] == fh1]
        assert (unlocks[-1]["lock_op"], unlocks[-1]["owner"]) == (fcntl.LOCK_UN, owner1)
        assert run_child("child-flock-nb", str(fs.file)) == {"errno": 0}
        fs.close(fd2)


# ------------------------------------------------------------------ (2) no lock handlers


def test_without_lock_handlers_locks_stay_local() -> None:
    with served("plain") as fs:
        fd = fs.open(fs.file)
        fcntl.fcntl(fd, fcntl.F_SETLK, pack_flock(fcntl.F_WRLCK, 0, 0))
        assert run_child("child-setlk", str(fs.file), str(fcntl.F_WRLCK), "0", "1") == {
            "errno": errno.EAGAIN
        }
        seen = run_child("child-getlk", str(fs.file), str(fcntl.F_RDLCK), "0", "0")
        assert seen["getlk"][:3] == [fcntl.F_WRLCK, 0, 0]
        fcntl.fcntl(fd, fcntl.F_SETLK, pack_flock(fcntl.F_UNLCK, 0, 0))
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_child("child-flock-nb", str(fs.file)) == {"errno": errno.EWOULDBLOCK}
        fs.close(fd)  # the kernel drops the local flock lock itself
        assert run_child("child-flock-nb", str(fs.file)) == {"errno": 0}
        ops = {e["op"] for e in fs.records()}
        assert ops <= {"mounted", "flush", "release"}, ops


# ------------------------------------------------------------------ (3) interrupts


def test_sigkill_ends_a_process_blocked_in_a_handler() -> None:
    with served("full") as fs:
        reader = fs.start_child("child-read", str(fs.slow))
        fs.wait_record("read-start")
        t0 = time.monotonic()
        reader.kill()
        try:
            reader.wait(timeout=KILL_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the blocked reader survived SIGKILL for {KILL_DEADLINE} s")
        assert time.monotonic() - t0 < KILL_DEADLINE
        assert reader.returncode == -signal.SIGKILL
        fs.wait_record("read-cancelled")
        # The file system goes on serving.
        assert os.stat(fs.file).st_size == FILE_SIZE
        assert fs.file.read_bytes() == b"x" * FILE_SIZE


def test_without_interrupts_sigkill_waits_for_the_reply() -> None:
    # The reason for enable_interrupts: the kernel waits for the reply, so the process
    # cannot die while the handler runs.  (Stopping the file system ends the wait.)
    with served("plain") as fs:
        reader = fs.start_child("child-read", str(fs.slow))
        fs.wait_record("read-start")
        reader.kill()
        with pytest.raises(subprocess.TimeoutExpired):
            reader.wait(timeout=1.0)
        assert fs.records("read-cancelled") == []
        fs.server.kill()  # closes /dev/fuse: the kernel fails the request
        reader.wait(timeout=EXIT_TIMEOUT)
        assert reader.returncode == -signal.SIGKILL


def test_sigint_interrupts_a_blocking_setlkw() -> None:
    with served("full") as fs:
        fd = fs.open(fs.file)
        fcntl.fcntl(fd, fcntl.F_SETLK, pack_flock(fcntl.F_WRLCK, 0, 0))
        waiter = fs.start_child("child-setlkw", str(fs.file))
        # (A child's exec also closes the inherited descriptor: flush and F_UNLCK.)
        fs.wait_for("setlk", sleep=True, pid=waiter.pid, type=fcntl.F_WRLCK)
        waiter.send_signal(signal.SIGINT)
        try:
            out, err = waiter.communicate(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("F_SETLKW was not interrupted by SIGINT")
        assert waiter.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == {"res": -1, "errno": errno.EINTR}
        fs.wait_record("setlk-cancelled")
        fs.close(fd)


def test_cancelling_the_main_loop_still_ends_it() -> None:
    # A handler blocked in its interrupt scope must not keep a cancelled main loop alive.
    with served("full") as fs:
        reader = fs.start_child("child-read", str(fs.slow))
        fs.wait_record("read-start")
        fs.server.send_signal(signal.SIGTERM)
        try:
            fs.server.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the cancelled main loop did not return in {EXIT_TIMEOUT} s")
        ops = [e["op"] for e in fs.records()]
        assert ops[ops.index("sigterm") :] == ["sigterm", "read-cancelled", "main-returned"]
        reader.wait(timeout=EXIT_TIMEOUT)


# ------------------------------------------------------------------ (4) setattr "now"


def test_touch_reports_now_and_touch_d_does_not() -> None:
    with served("plain") as fs:
        subprocess.run(["touch", fs.file], check=True, timeout=CHILD_TIMEOUT)
        now = fs.records("setattr")[-1]
        assert now["update_atime_now"] is True and now["update_mtime_now"] is True
        assert now["update_atime"] is True and now["update_mtime"] is True  # as before
        assert abs(now["mtime_ns"] - time.time_ns()) < 60 * 10**9  # the kernel's clock

        stamp = "2020-01-02 03:04:05 UTC"
        subprocess.run(["touch", "-d", stamp, fs.file], check=True, timeout=CHILD_TIMEOUT)
        explicit = fs.records("setattr")[-1]
        assert explicit["update_atime_now"] is False and explicit["update_mtime_now"] is False
        assert explicit["update_atime"] is True and explicit["update_mtime"] is True
        assert explicit["mtime_ns"] == 1577934245 * 10**9
        assert os.stat(fs.file).st_mtime_ns == 1577934245 * 10**9


# ------------------------------------------------------------------ (5) zero-copy writes


def write_blocks(fs: Served) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Write 8 MiB in 1 MiB blocks (block i: the byte i + 1), then 40 bytes at block 8,
    and close; returns the write records and the flush record."""
    fd = fs.open(fs.file)
    for i in range(8):
        os.pwrite(fd, bytes([i + 1]) * MIB, i * MIB)
    os.pwrite(fd, bytes([9]) * 40, 8 * MIB)
    fs.close(fd)
    return fs.records("write"), fs.wait_for("flush")


def test_large_writes_arrive_as_views_that_outlive_their_request() -> None:
    """With ``enable_zero_copy_writes``, a 1 MiB write reaches the handler as a
    read-only view of the request buffer, which later requests do not overwrite; a
    small write is copied into bytes as before."""
    with served("full") as fs:
        writes, flush = write_blocks(fs)
    large = [w for w in writes if w["off"] < 8 * MIB]
    assert sum(w["size"] for w in large) == 8 * MIB
    assert {(w["type"], w["readonly"]) for w in large} == {("memoryview", True)}
    assert [(w["type"], w["size"]) for w in writes if w["off"] >= 8 * MIB] == [("bytes", 40)]
    assert flush["kept"] == len(writes) and flush["intact"] is True


def test_without_zero_copy_writes_every_write_is_bytes() -> None:
    with served("plain") as fs:
        writes, flush = write_blocks(fs)
    assert sum(w["size"] for w in writes) == 8 * MIB + 40
    assert {w["type"] for w in writes} == {"bytes"}
    assert flush["intact"] is True


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        serve(*argv[1:4])
    elif argv[0].startswith("child-"):
        child(argv[0].removeprefix("child-"), argv[1:])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} serve VARIANT MOUNTPOINT RECORD | child-...")


if __name__ == "__main__":
    main(sys.argv[1:])

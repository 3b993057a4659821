"""A do-nothing pyfuse3 file system: the throughput ceiling of any pyfuse3 client here.

    python3 -m contrib.nullfs MOUNTPOINT [--debug]

It mounts in the foreground and serves until SIGTERM or SIGINT (then it unmounts and
exits 0) or until someone unmounts it (``fusermount3 -u MOUNTPOINT``).

The root directory holds one regular file, ``null``.  Every handler returns at once:

- ``read(off, size)`` returns ``size`` zero bytes (fewer at the end of the file);
- ``write(off, buf)`` accepts ``len(buf)`` bytes and drops them; the file's size becomes
  the largest offset written, so a later read sees as many (zero) bytes as were written;
- truncation (``setattr`` of the size, ``O_TRUNC``) sets the size, and nothing else is kept;
- ``fsync``, ``flush`` and ``release`` do nothing;
- ``open`` tells the kernel not to keep the file's cached pages (``keep_cache=False``),
  so every read after an open reaches the handler and returns zeros.

Any other name is ENOENT, and creating one is EPERM.  What ``dd`` measures through this
mount is the cost of the kernel's FUSE path and of pyfuse3's request loop alone, so a
real pyfuse3 client (fusenfs) cannot be faster than this; contrib/bench.py uses it as the
ceiling.  Not a test fixture of fusenfs itself.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import stat
import sys
import time
from typing import Final

import pyfuse3
import trio

log = logging.getLogger("contrib.nullfs")

#: The one file's name and inode number.
FILE_NAME: Final = b"null"
FILE_INODE: Final = pyfuse3.InodeT(pyfuse3.ROOT_INODE + 1)
#: The only file handle handed out (nothing is kept per open).
FILE_HANDLE: Final = pyfuse3.FileHandleT(1)
DIR_HANDLE: Final = pyfuse3.FileHandleT(2)
#: Seconds the kernel may cache names and attributes.
CACHE_TIMEOUT: Final = 1.0
#: Block size reported by stat and statfs (bytes).
BLOCK_SIZE: Final = 1 << 20


class NullOperations(pyfuse3.Operations):
    """The handlers of the null file system (see the module docstring).

    Attributes:
        size: the file's size in bytes (largest offset written, or the last truncation).
        reads / writes: requests served so far (counts), and the bytes they moved.
    """

    enable_writeback_cache = False  # as fusenfs: every write request reaches the handler

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.reads = 0
        self.read_bytes = 0
        self.writes = 0
        self.write_bytes = 0
        self._started_ns = time.time_ns()

    def _attrs(self, inode: pyfuse3.InodeT) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        attrs.generation = 0
        attrs.entry_timeout = CACHE_TIMEOUT
        attrs.attr_timeout = CACHE_TIMEOUT
        if inode == pyfuse3.ROOT_INODE:
            attrs.st_mode = pyfuse3.ModeT(stat.S_IFDIR | 0o755)
            attrs.st_nlink = 2
            attrs.st_size = 0
        else:
            attrs.st_mode = pyfuse3.ModeT(stat.S_IFREG | 0o666)
            attrs.st_nlink = 1
            attrs.st_size = self.size
        attrs.st_uid = os.getuid()
        attrs.st_gid = os.getgid()
        attrs.st_rdev = 0
        attrs.st_blksize = BLOCK_SIZE
        attrs.st_blocks = 0
        attrs.st_atime_ns = self._started_ns
        attrs.st_mtime_ns = self._started_ns
        attrs.st_ctime_ns = self._started_ns
        return attrs

    @staticmethod
    def _check_inode(inode: pyfuse3.InodeT) -> None:
        if inode not in (pyfuse3.ROOT_INODE, FILE_INODE):
            raise pyfuse3.FUSEError(errno.ENOENT)

    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if parent_inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if name == FILE_NAME:
            return self._attrs(FILE_INODE)
        if name in (b".", b".."):
            return self._attrs(pyfuse3.ROOT_INODE)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        self._check_inode(inode)
        return self._attrs(inode)

    async def setattr(
        self,
        inode: pyfuse3.InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: pyfuse3.FileHandleT | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        self._check_inode(inode)
        if fields.update_size:
            if inode != FILE_INODE:
                raise pyfuse3.FUSEError(errno.EISDIR)
            self.size = attr.st_size
        return self._attrs(inode)  # mode, owner and times are accepted and dropped

    async def open(
        self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        self._check_inode(inode)
        if inode != FILE_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & os.O_TRUNC:
            self.size = 0
        # keep_cache=False: the kernel drops the file's pages at every open, so reads
        # reach read() (zeros), not pages cached from earlier writes.
        return pyfuse3.FileInfo(fh=FILE_HANDLE, keep_cache=False)

    async def create(
        self,
        parent_inode: pyfuse3.InodeT,
        name: bytes,
        mode: int,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        count = max(0, min(size, self.size - off))
        self.reads += 1
        self.read_bytes += count
        return bytes(count)

    async def write(self, fh: pyfuse3.FileHandleT, off: int, buf: bytes) -> int:
        self.writes += 1
        self.write_bytes += len(buf)
        self.size = max(self.size, off + len(buf))
        return len(buf)

    async def flush(self, fh: pyfuse3.FileHandleT) -> None:
        return None

    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        return None

    async def fsync(self, fh: pyfuse3.FileHandleT, datasync: bool) -> None:
        return None

    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return DIR_HANDLE

    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        if start_id == 0:
            pyfuse3.readdir_reply(token, FILE_NAME, self._attrs(FILE_INODE), 1)

    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        return None

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = BLOCK_SIZE
        data.f_frsize = BLOCK_SIZE
        data.f_blocks = 1 << 20  # 1 TiB of room that is never used
        data.f_bfree = data.f_blocks
        data.f_bavail = data.f_blocks
        data.f_files = 2
        data.f_ffree = 0
        data.f_favail = 0
        data.f_namemax = 255
        return data


async def _stop_on_signal() -> None:
    """End ``pyfuse3.main`` on the first SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal %d: unmounting", signum)
            pyfuse3.terminate()
            return


async def serve(ops: NullOperations, mountpoint: str) -> None:
    """Mount ``ops`` on ``mountpoint`` and serve until a signal or an external unmount.

    Always unmounts (unless the kernel already did) and releases the FUSE session.

    Raises:
        RuntimeError: pyfuse3 could not mount (missing /dev/fuse, not a directory...).
    """
    options = set(pyfuse3.default_options)
    options.add("fsname=nullfs")
    options.add("subtype=nullfs")
    pyfuse3.init(ops, mountpoint, options)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()
    finally:
        # After a signal this is what ends the mount.  After an external unmount it is
        # harmless: libfuse sees the closed connection (POLLERR) and does not unmount.
        # (Never stat the mount point here: nobody would answer the kernel's request.)
        pyfuse3.close(unmount=True)
    log.info(
        "served %d reads (%d B) and %d writes (%d B)",
        ops.reads,
        ops.read_bytes,
        ops.writes,
        ops.write_bytes,
    )


def main(argv: list[str] | None = None) -> int:
    """``python3 -m contrib.nullfs MOUNTPOINT``; exit status 0, or 1 if it cannot mount."""
    parser = argparse.ArgumentParser(
        prog="python3 -m contrib.nullfs",
        description="Mount a do-nothing pyfuse3 file system (one file, 'null') in the "
        "foreground until SIGTERM/SIGINT.",
    )
    parser.add_argument("mountpoint", metavar="MOUNTPOINT")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    mountpoint = os.path.abspath(args.mountpoint)
    if not os.path.isdir(mountpoint):
        print(f"nullfs: mount point {mountpoint} is not a directory", file=sys.stderr)
        return 1
    try:
        trio.run(serve, NullOperations(), mountpoint)
    except RuntimeError as err:
        print(f"nullfs: cannot mount on {mountpoint}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

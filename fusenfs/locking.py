"""Application locks through the mount: fcntl/lockf and flock as NFSv4.1 byte-range locks.

The FUSE handlers (``getlk``, ``setlk``, ``flock``; pyfuse3 with the patches in
contrib/pyfuse3) turn each kernel lock request into LOCK, LOCKT or LOCKU (RFC 8881
sections 9 and 18.10-18.12), so what an application locks is what the server holds,
reclaims and migrates (DESIGN.md invariant 12):

* POSIX locks (fcntl F_GETLK/F_SETLK/F_SETLKW, lockf): one NFS lock owner per FUSE lock
  owner (the kernel's id of the locking process's file table).  The kernel keeps no
  local copy of locks a file system manages, so the split/merge/upgrade rules of POSIX
  live in ``session.locks``; a close of any descriptor of the file by the owner comes
  as ``setlk(F_UNLCK)`` for the whole file (pyfuse3 sends it after FLUSH).
* flock: a whole-file byte-range lock, as the Linux NFS client emulates it, with
  flock's own owner (the open file description, not the process); it is released at the
  last close of that description.
* Blocking requests (F_SETLKW, flock without LOCK_NB) wait with READW_LT / WRITEW_LT
  and back-off (``NFSClient.lock``); a signal (FUSE INTERRUPT) ends the wait with EINTR.
* Caches (section 10.3.2): taking a lock revalidates the file's attributes and drops the
  cached pages if the change attribute moved; releasing one writes back dirty data
  first, so the next holder reads it.
* A lock the client could not reclaim after a server restart or a migration makes the
  file's next I/O fail with EIO (``lost_lock``), until the application unlocks it.

``nolock`` and ``local_lock=`` (nfs(5)) keep chosen kinds local to the mount:
``operations_class`` removes the handlers, and pyfuse3 then leaves those locks to the
kernel.
"""

from __future__ import annotations

import errno
import fcntl
import logging
from typing import TYPE_CHECKING, Any

import pyfuse3

from session.locks import EOF_OFFSET, NFS4_UINT64_MAX, lock_end
from session.rpc import Credential
from session.status import NFS4Error
from session.xdr.const import OPEN4_SHARE_ACCESS_WRITE, nfs_lock_type4, nfsstat4

if TYPE_CHECKING:
    from fusenfs.fs import NFSOperations, OpenFile
    from fusenfs.inodes import Inode

log = logging.getLogger("fusenfs.locks")

#: The largest l_start / l_start + l_len a struct flock can carry (off_t), bytes.
OFF_T_MAX = (1 << 63) - 1
#: local_lock= values (nfs(5)) and which kinds each keeps local to the mount.
LOCAL_LOCK_KINDS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "posix": frozenset({"posix"}),
    "flock": frozenset({"flock"}),
    "all": frozenset({"posix", "flock"}),
}


def supported() -> bool:
    """Whether the installed pyfuse3 has the lock handlers (contrib/pyfuse3 patch 0001)."""
    return hasattr(pyfuse3, "FileLock") and hasattr(pyfuse3.Operations, "setlk")


def posix_owner(owner: int) -> bytes:
    """The lock-owner name of a FUSE POSIX lock owner (uint64), unique on the mount."""
    return b"posix:%x" % owner


def flock_owner(owner: int) -> bytes:
    """The lock-owner name of a FUSE flock owner (an open file description)."""
    return b"flock:%x" % owner


def flock_range(lock: pyfuse3.FileLock) -> tuple[int, int]:
    """(offset, NFS length) of a ``pyfuse3.FileLock``: l_len 0 is to end of file."""
    start = int(lock.l_start)
    length = int(lock.l_len)
    if length < 0:  # POSIX allows a negative l_len: the range ends at l_start
        start, length = start + length, -length
    if length == 0:
        return start, NFS4_UINT64_MAX
    return start, length


def denied_to_flock(offset: int, length: int, locktype: int, pid: int) -> pyfuse3.FileLock:
    """A ``pyfuse3.FileLock`` for a conflict LOCKT or LOCK reported (section 18.11.4)."""
    end = lock_end(offset, length)
    start = min(offset, OFF_T_MAX)
    l_len = 0 if end >= EOF_OFFSET or end > OFF_T_MAX else end - start
    write = locktype in (nfs_lock_type4.WRITE_LT, nfs_lock_type4.WRITEW_LT)
    return pyfuse3.FileLock(
        l_type=fcntl.F_WRLCK if write else fcntl.F_RDLCK, l_start=start, l_len=l_len, l_pid=pid
    )


class LockHandlers:
    """The lock handlers of ``NFSOperations`` (a mixin: it uses the class's tables).

    ``NFSOperations`` wraps each with ``fuse_errors``, so an ``NFS4Error`` leaves as
    its errno: NFS4ERR_DENIED is EAGAIN, NFS4ERR_DEADLOCK EDEADLK.
    """

    async def getlk(
        self,
        fh: pyfuse3.FileHandleT,
        owner: int,
        lock: pyfuse3.FileLock,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.FileLock:
        """F_GETLK: LOCKT with the caller's owner; a conflict comes back as a FileLock.

        The pid is the holder's when it is a process on this mount, else 0 (a holder
        on another client).
        """
        ops = self._ops()
        of = ops._file(fh)
        cred = ops._cred(ctx)
        offset, length = flock_range(lock)
        write = lock.l_type == fcntl.F_WRLCK
        denied = await ops.client.test_lock(
            of.inode.fh, posix_owner(owner), offset, length, write, cred
        )
        if denied is None:
            return pyfuse3.FileLock(l_type=fcntl.F_UNLCK)
        pid = ops._lock_pids.get(denied.owner.owner, 0)
        return denied_to_flock(denied.offset, denied.length, denied.locktype, pid)

    async def setlk(
        self,
        fh: pyfuse3.FileHandleT,
        owner: int,
        lock: pyfuse3.FileLock,
        sleep: bool,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        """F_SETLK / F_SETLKW / F_UNLCK (and the unlock pyfuse3 sends at each close)."""
        ops = self._ops()
        of = ops._file(fh)
        offset, length = flock_range(lock)
        name = posix_owner(owner)
        if lock.l_type == fcntl.F_UNLCK:
            await self._unlock(of, name, offset, length, ctx)
            return
        await self._lock(of, name, offset, length, lock.l_type == fcntl.F_WRLCK, sleep, ctx)

    async def flock(
        self, fh: pyfuse3.FileHandleT, owner: int, op: int, ctx: pyfuse3.RequestContext
    ) -> None:
        """flock(2) as a whole-file byte-range lock (LOCK_SH, LOCK_EX, LOCK_UN, LOCK_NB)."""
        ops = self._ops()
        of = ops._file(fh)
        name = flock_owner(owner)
        kind = op & ~fcntl.LOCK_NB
        if kind == fcntl.LOCK_UN:
            await self._unlock(of, name, 0, NFS4_UINT64_MAX, ctx)
            return
        if kind not in (fcntl.LOCK_SH, fcntl.LOCK_EX):
            raise pyfuse3.FUSEError(errno.EINVAL)
        write = kind == fcntl.LOCK_EX
        await self._lock(of, name, 0, NFS4_UINT64_MAX, write, not op & fcntl.LOCK_NB, ctx)

    # ------------------------------------------------------------------ helpers
    def _ops(self) -> NFSOperations:
        return self  # type: ignore[return-value]

    async def _lock(
        self,
        of: OpenFile,
        name: bytes,
        offset: int,
        length: int,
        write: bool,
        wait: bool,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        ops = self._ops()
        cred = ops._cred(ctx)
        if write and not of.access & OPEN4_SHARE_ACCESS_WRITE:
            # A write lock needs an open for writing on the server too (NFS4ERR_OPENMODE).
            raise pyfuse3.FUSEError(errno.EBADF)
        await ops._ensure_open(of)
        try:
            await ops.client.lock(of.state, name, offset, length, write, cred, wait=wait)
        except NFS4Error as e:
            if e.status == nfsstat4.NFS4ERR_OPENMODE:
                raise pyfuse3.FUSEError(errno.EBADF) from None
            raise
        ops._lock_pids[ops.client.lock_owner(name)] = int(ctx.pid)
        await self._revalidate(of.inode, cred)

    async def _unlock(
        self, of: OpenFile, name: bytes, offset: int, length: int, ctx: pyfuse3.RequestContext
    ) -> None:
        ops = self._ops()
        client = ops.client
        if not client.state.locks_of(of.inode.fh, client.lock_owner(name)):
            # The common case at close: nothing held, nothing to send, and no need to
            # know the caller's groups.
            return
        cred = ops._cred(ctx)
        # Data written under the lock reaches the server before the lock goes, so the
        # next holder reads it (RFC 8881 section 10.3.2).
        await ops.commit_inode(of.inode)
        await client.unlock_owner(of.inode.fh, name, offset, length, cred)

    async def _revalidate(self, inode: Inode, cred: Credential) -> None:
        """After a lock is granted: fresh attributes; drop cached data if it changed."""
        ops = self._ops()
        before = inode.attrs.change
        attrs = await ops._fresh_attrs(inode, cred)
        if before is not None and attrs.change != before:
            ops.drop_cached_data(inode)

    def lost_lock(self, inode: Inode) -> str | None:
        """Why a lock on this file was lost (reclaim failed), or None (section 9.11)."""
        for lock_state in self._ops().client.state.locks.values():
            if lock_state.open.fh == inode.fh and lock_state.lost is not None:
                return lock_state.lost
        return None


def operations_class(base: type[NFSOperations], local: frozenset[str]) -> type[NFSOperations]:
    """``base`` without the handlers of the lock kinds in ``local`` ("posix", "flock").

    pyfuse3 registers a lock handler only when the class overrides pyfuse3's own, so
    restoring pyfuse3's leaves those locks to the kernel, local to this mount (nfs(5)
    ``local_lock``).  Without the pyfuse3 patch every kind is local.
    """
    if not supported():
        log.warning("pyfuse3 lacks lock handlers (run contrib/setup.sh): locks stay local")
        return base
    attrs: dict[str, Any] = {}
    if "posix" in local:
        attrs["getlk"] = pyfuse3.Operations.getlk
        attrs["setlk"] = pyfuse3.Operations.setlk
    if "flock" in local:
        attrs["flock"] = pyfuse3.Operations.flock
    if not attrs:
        return base
    return type(f"{base.__name__}LocalLocks", (base,), attrs)

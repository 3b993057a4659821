"""The FUSE edge: a pyfuse3 ``Operations`` subclass over ``session.client.NFSClient``.

Each handler turns one kernel request into one COMPOUND where it can (lookup is
PUTFH+LOOKUP+GETFH+GETATTR; create is one OPEN with GETFH+GETATTR), keeps the inode table
and open-file table, and maps every error to an errno: ``fuse_errors`` wraps each handler
so that only ``pyfuse3.FUSEError`` ever leaves it (PYFUSE3.md).

Caching follows nfs(5): attributes and entries are trusted for acregmin..acregmax
seconds (files) or acdirmin..acdirmax (directories); close-to-open consistency
(RFC 8881 section 10.3.1 describes it for delegations; clients do it for all files):
open fetches fresh attributes and drops cached pages if the change attribute moved, and
close (flush) commits written data before returning.
"""

from __future__ import annotations

import errno
import functools
import grp
import logging
import os
import pwd
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from fusenfs.fileio import ReadAhead, ReadFn, WriteBehind
from fusenfs.inodes import Inode, InodeTable, StatAttrs
from fusenfs.locking import LockHandlers
from session.client import Caller, DirEntry, NFSClient
from session.errors import NFSClientError
from session.gss import GssCredentialsUnavailable
from session.mount import FileSystem
from session.rpc import Credential
from session.state import OpenState, share_access_for_flags
from session.status import NFS4Error
from session.xdr import nfs4
from session.xdr.codec import Buffer
from session.xdr.const import (
    OPEN4_SHARE_ACCESS_WRITE,
    nfs_ftype4,
    nfsstat4,
    stable_how4,
    time_how4,
)
from session.xdr.fattr import NFSAttrs

log = logging.getLogger("fusenfs")

P = ParamSpec("P")
R = TypeVar("R")

NOBODY = 65534
NAME_MAX = 255  # Linux's limit on one path component, bytes
#: Sequential read-ahead of one file: READs of the session's maxread (1 MiB by default,
#: ``fusenfs.runner.DEFAULT_RSIZE``) kept in flight beyond the one being read, at most
#: this many (a count) and at most this many bytes (a larger rsize gets fewer).
READ_AHEAD_BLOCKS = 4
READ_AHEAD_BYTES = 16 * 1024 * 1024
TYPE_BITS: dict[int, int] = {
    nfs_ftype4.NF4REG: stat.S_IFREG,
    nfs_ftype4.NF4DIR: stat.S_IFDIR,
    nfs_ftype4.NF4BLK: stat.S_IFBLK,
    nfs_ftype4.NF4CHR: stat.S_IFCHR,
    nfs_ftype4.NF4LNK: stat.S_IFLNK,
    nfs_ftype4.NF4SOCK: stat.S_IFSOCK,
    nfs_ftype4.NF4FIFO: stat.S_IFIFO,
}


def fuse_errors(
    handler: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Let only ``pyfuse3.FUSEError`` out of a handler (HOUSE_STYLE.md: the FUSE edge).

    ``NFSClientError`` (and ``NFS4Error``) carry their errno; anything else is a bug,
    logged with its traceback and returned as EIO.  ``trio.Cancelled`` passes through.
    """

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except NFSClientError as e:
            # A user without Kerberos credentials: session.usercreds logged the one line.
            quiet = e.errno in (errno.ENOENT, errno.EEXIST) or isinstance(
                e, GssCredentialsUnavailable
            )
            level = logging.DEBUG if quiet else logging.INFO
            log.log(level, "%s: %s -> %s", handler.__name__, e, errno.errorcode.get(e.errno))
            raise pyfuse3.FUSEError(e.errno) from None
        except OSError as e:
            log.info("%s: %s", handler.__name__, e)
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        except Exception:
            log.exception("%s failed (a bug in fusenfs)", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


class StaleHandle(NFSClientError):
    """A filehandle expired and the file cannot be found again (ESTALE)."""

    errno = errno.ESTALE


#: Bytes read from /proc/PID/status at a time; its "Groups:" line is about the
#: twelfth, within the first 300 bytes unless the process has many groups.
_STATUS_CHUNK = 4096
_GROUPS_LABEL = b"\nGroups:"


def supplementary_groups(pid: int) -> list[int]:
    """The supplementary group IDs of process ``pid``, from the "Groups:" line of
    /proc/PID/status, in the kernel's order; [] when the process is gone (or ``pid``
    is 0, as on requests the kernel makes itself) or the line is missing.

    Read fresh on every request, as AUTH_SYS needs the caller's groups as they are
    now.  ``pyfuse3.get_sup_groups`` reads the same line through a text file object,
    which takes twice the time (14 against 6 microseconds here) on the path of every
    FUSE request that sends a COMPOUND.
    """
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    head = bytearray()
    try:
        while True:
            chunk = os.read(fd, _STATUS_CHUNK)
            head += chunk
            start = head.find(_GROUPS_LABEL)
            end = head.find(b"\n", start + 1) if start >= 0 else -1
            if end >= 0 or not chunk:
                break
    except OSError:
        return []
    finally:
        os.close(fd)
    if end < 0:
        return []
    try:
        return [int(g) for g in head[start + len(_GROUPS_LABEL) : end].split()]
    except ValueError:
        return []


@dataclass(slots=True)
class CacheTimes:
    """nfs(5) attribute cache bounds in seconds."""

    acregmin: float = 3.0
    acregmax: float = 60.0
    acdirmin: float = 30.0
    acdirmax: float = 60.0

    def bounds(self, is_dir: bool) -> tuple[float, float]:
        """(minimum, maximum) seconds for a directory or another file."""
        if is_dir:
            return self.acdirmin, max(self.acdirmin, self.acdirmax)
        return self.acregmin, max(self.acregmin, self.acregmax)


@dataclass(slots=True)
class OpenFile:
    """One FUSE file handle: an inode, the shared open state, its READ and its writes.

    Cached data is the inode's (``NFSOperations._readers``), shared by all its open
    files; ``read_fn`` is this handle's READ (its stateid and credential) for what the
    cache has to fetch.
    """

    inode: Inode
    state: OpenState
    access: int
    cred: Credential
    read_fn: ReadFn
    writer: WriteBehind | None
    #: The NFS open was closed at the last close(2) (``NFSOperations.flush``), though
    #: the kernel keeps this handle until RELEASE: a later use opens again.
    closed: bool = False


@dataclass(slots=True)
class OpenDir:
    """One FUSE directory handle with the READDIR cookie verifier and a page of entries."""

    inode: Inode
    cred: Credential
    cookieverf: bytes = bytes(8)
    page_from: int | None = None
    entries: list[DirEntry] = field(default_factory=list)
    eof: bool = False

    def cached_after(self, cookie: int) -> list[DirEntry] | None:
        """Cached entries after ``cookie``; None if the page does not reach it."""
        if self.page_from is not None and cookie == self.page_from:
            return self.entries
        for i, entry in enumerate(self.entries):
            if entry.cookie == cookie:
                return self.entries[i + 1 :]
        return None


class IdMapper:
    """owner / owner_group strings <-> uid / gid (RFC 8881 section 5.9).

    Numeric strings map directly (what AUTH_SYS servers send without idmapping);
    ``name@domain`` maps through the local user database; anything else is nobody.
    """

    def __init__(self) -> None:
        self._uids: dict[str, int] = {}
        self._gids: dict[str, int] = {}

    @staticmethod
    def _map(value: str, table: dict[str, int], lookup: Callable[[str], int]) -> int:
        cached = table.get(value)
        if cached is not None:
            return cached
        name = value.split("@", 1)[0]
        if name.isdigit():
            result = int(name)
        else:
            try:
                result = lookup(name)
            except KeyError:
                result = NOBODY
        table[value] = result
        return result

    def uid(self, owner: str | None) -> int:
        if owner is None:
            return NOBODY
        return self._map(owner, self._uids, lambda n: pwd.getpwnam(n).pw_uid)

    def gid(self, group: str | None) -> int:
        if group is None:
            return NOBODY
        return self._map(group, self._gids, lambda n: grp.getgrnam(n).gr_gid)


def settime(now: bool, ns: int) -> nfs4.settime4:
    """settime4 for a time to set: the server's clock when the kernel said "now"
    (UTIME_NOW: any user with write access may, RFC 8881 section 5.8.2.39 and
    time_how4), else the given time (``ns``: nanoseconds; only the owner may)."""
    if now:
        return nfs4.settime4(set_it=time_how4.SET_TO_SERVER_TIME4)
    return nfs4.settime4(set_it=time_how4.SET_TO_CLIENT_TIME4, time=ns_nfstime(ns))


def ns_nfstime(ns: int) -> nfs4.nfstime4:
    return nfs4.nfstime4(seconds=ns // 1_000_000_000, nseconds=ns % 1_000_000_000)


class NFSOperations(LockHandlers, pyfuse3.Operations):
    """FUSE requests served by an NFSv4.1 mount.

    Args:
        client: the mounted ``NFSClient`` (``mount()`` done).
        nursery: where read-ahead and write-behind tasks run.
        cache: attribute cache bounds.
    """

    supports_dot_lookup = True
    enable_writeback_cache = False
    #: A signal to a process waiting on the server (FUSE INTERRUPT) cancels its request:
    #: EINTR at once; a request already sent keeps its slot until answered (pyfuse3
    #: patch 0002; session.session.ServerSession.compound).
    enable_interrupts = True
    #: A large write arrives as a view of the request buffer libfuse read it into, not
    #: a copy (pyfuse3 patch 0004): the WRITE sends it to the socket from there, and
    #: the write-behind keeps that view until COMMIT.
    enable_zero_copy_writes = True
    #: Application locks become NFS locks (fusenfs.locking; pyfuse3 patch 0001).
    getlk = fuse_errors(LockHandlers.getlk)
    setlk = fuse_errors(LockHandlers.setlk)
    flock = fuse_errors(LockHandlers.flock)

    def __init__(
        self, client: NFSClient, nursery: trio.Nursery, cache: CacheTimes | None = None
    ) -> None:
        super().__init__()
        self.client = client
        self.nursery = nursery
        self.cache = cache or CacheTimes()
        #: Cache names that do not exist (nfs(5) lookupcache=all); off for
        #: lookupcache=positive / none.
        self.negative_lookups = True
        #: Let the kernel cache names found for the attribute cache time; off for
        #: lookupcache=none (every path walk asks again).
        self.positive_lookups = True
        #: The longest name component, bytes (nfs(5) namlen; at most Linux's NAME_MAX).
        self.name_max = NAME_MAX
        #: Close-to-open consistency (nfs(5) cto, the default): every open fetches fresh
        #: attributes and drops cached data that changed.  nocto: an open trusts
        #: attributes still within their cache time.
        self.close_to_open = True
        #: Bumped by every change to the namespace (``_namespace_changed``).
        self._namespace_epoch = 1
        self.inodes = InodeTable(on_new_fh=client.rename_fh)
        self.inodes.set_root(client.root_fh, client.root_attrs, client.fs_id_of(client.root_fh))
        self.ids = IdMapper()
        self._files: dict[int, OpenFile] = {}
        #: Read-ahead data per inode number, shared by its open files (DESIGN.md
        #: invariant 10); dropped at the last close.
        self._readers: dict[int, ReadAhead] = {}
        self._dirs: dict[int, OpenDir] = {}
        self._next_fh = 1
        self._hidden_counter = 0
        #: Delegated files by (directory inode, name): a lookup of one is answered here
        #: (no other client can rename or remove it without a recall, RFC 8881 10.4.4).
        self._delegated_names: dict[tuple[int, bytes], Inode] = {}
        #: The pid that last took a lock as each lock owner (F_GETLK reports it).
        self._lock_pids: dict[bytes, int] = {}
        client.describe_fh = self.describe_fh
        client.on_fh_expired = self._refresh_fh
        #: Expired filehandles being looked up again, and the event set when done.
        self._refreshing: dict[bytes, trio.Event] = {}
        client.on_filehandles_expired = self._refresh_filesystem
        client.on_delegation_return = self._delegation_return
        #: Set by the runner: the state manager's statistics (migrations, events).
        self.recovery_stats: Callable[[], dict[str, Any]] | None = None

    # ------------------------------------------------------------------ helpers
    def _cred(self, ctx: pyfuse3.RequestContext) -> Credential:
        """Who asks: uid, gid, groups and pid of the request (``session.client.Caller``).
        The client maps it to the wire credential per file system: AUTH_SYS as it is,
        or on a Kerberos mount the user's own RPCSEC_GSS credential (the pid says
        where that user's ticket cache is: its ``KRB5CCNAME``)."""
        groups = [g for g in supplementary_groups(ctx.pid) if g != ctx.gid][:16]
        return Caller(uid=ctx.uid, gid=ctx.gid, gids=groups, pid=ctx.pid)

    def _check_name(self, name: bytes) -> bytes:
        """ENAMETOOLONG for a component longer than the NAME_MAX ``statfs`` reports."""
        if len(name) > self.name_max:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
        return name

    def _inode(self, ino: int) -> Inode:
        inode = self.inodes.get(ino)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return inode

    def _entry(self, inode: Inode) -> pyfuse3.EntryAttributes:
        a = inode.attrs
        entry = pyfuse3.EntryAttributes()
        is_dir = a.type == nfs_ftype4.NF4DIR
        timeout = inode.cache_timeout(*self.cache.bounds(is_dir))
        entry.st_ino = inode.ino
        entry.generation = 0
        entry.entry_timeout = timeout if self.positive_lookups else 0
        entry.attr_timeout = timeout
        entry.st_mode = TYPE_BITS.get(int(a.type or nfs_ftype4.NF4REG), stat.S_IFREG) | (
            (a.mode or 0) & 0o7777
        )
        entry.st_nlink = a.numlinks or 1
        entry.st_uid = self.ids.uid(a.owner)
        entry.st_gid = self.ids.gid(a.owner_group)
        if a.rawdev is not None:
            entry.st_rdev = os.makedev(*a.rawdev)
        entry.st_size = a.size or 0
        if inode.dirty:
            # Written since the attributes were last fetched after the writes: the
            # server's size (of a listing, a lookup) may be older than the WRITEs, and a
            # smaller size would make the kernel cut the file short.
            entry.st_size = max(entry.st_size, self._written_end(inode))
        entry.st_blksize = 1024 * 1024
        entry.st_blocks = ((a.space_used or 0) + 511) // 512
        entry.st_atime_ns = a.atime_ns
        entry.st_mtime_ns = a.mtime_ns
        entry.st_ctime_ns = a.ctime_ns
        return entry

    def _learn(
        self, fh: bytes, attrs: NFSAttrs, parent: Inode | None = None, name: bytes = b""
    ) -> Inode:
        """The inode for an entry the kernel is being given (one more lookup reference).

        ``parent`` and ``name``: where it was found, remembered for ".." and for
        re-resolving a filehandle by path.
        """
        inode = self.inodes.learn(fh, attrs, self.client.fs_id_of(fh))
        inode.lookups += 1
        if parent is not None and name not in (b"", b".", b".."):
            inode.parent, inode.name = parent.ino, name
        return inode

    def describe_fh(self, fh: bytes) -> str:
        """A person's name for a file: its inode number and fileid (logs, stats)."""
        for node in self._known_inodes():
            if node.fh == fh:
                return f"inode {node.ino} (fileid {node.fileid:#x})"
        return "fh " + fh.hex()

    async def commit_inode(self, inode: Inode) -> None:
        """Write back and COMMIT every open file's dirty data of ``inode``."""
        for writer in self._writers(inode):
            await writer.commit()

    async def _delegation_return(self, fh: bytes) -> None:
        """A delegation on ``fh`` goes back: what was written under it reaches the
        server first (RFC 8881 section 10.4.1)."""
        node = self.inodes.find_fh(fh)
        if node is not None:
            self._delegated_names.pop((node.parent, node.name), None)
            await self.commit_inode(node)
            node.trusted = 0  # the attributes are no longer guaranteed

    def _note_delegated(self, node: Inode) -> None:
        """``node`` has fresh attributes and a delegation: its stat and its lookup are
        answered locally from now on (until a namespace change or the recall)."""
        if self.client.usable_delegation(node.fh) is None:
            return
        self._trust(node)
        if node.parent and node.name:
            self._delegated_names[(node.parent, node.name)] = node

    def _delegated_child(self, parent: Inode, name: bytes) -> Inode | None:
        node = self._delegated_names.get((parent.ino, name))
        if node is None:
            return None
        if (
            node.parent == parent.ino
            and node.name == name
            and node.trusted == self._namespace_epoch
            and self.inodes.get(node.ino) is node
            and self.client.usable_delegation(node.fh) is not None
        ):
            return node
        del self._delegated_names[(parent.ino, name)]
        return None

    def drop_cached_data(self, inode: Inode) -> None:
        """Forget cached file data of ``inode``: read-ahead blocks and kernel pages."""
        reader = self._readers.get(inode.ino)
        if reader is not None:
            reader.invalidate()
        try:
            pyfuse3.invalidate_inode(inode.ino, attr_only=False)
        except OSError as e:
            log.debug("invalidate_inode(%d): %s", inode.ino, e)

    def _check_lost_lock(self, inode: Inode) -> None:
        """EIO for I/O on a file whose lock could not be reclaimed (RFC 8881 9.11)."""
        reason = self.lost_lock(inode)
        if reason is not None:
            log.warning(
                "I/O on %s refused: a lock on it was lost (%s)", self.describe_fh(inode.fh), reason
            )
            raise pyfuse3.FUSEError(errno.EIO)

    async def _drain_writes(self, inode: Inode) -> None:
        """Wait for this inode's write-behind, so the server's size and mtime are current."""
        for writer in self._writers(inode):
            if writer.busy:
                await writer.drain()

    async def _fresh_attrs(self, inode: Inode, cred: Credential | None = None) -> StatAttrs:
        await self._drain_writes(inode)
        attrs = await self.client.getattr(inode.fh, cred)
        inode.set_attrs(attrs)
        inode.dirty = self._writes_pending(inode)
        if not inode.dirty:
            self.client.note_server_attrs(inode.fh, attrs)
            self._note_delegated(inode)
        return inode.attrs

    def _writers(self, inode: Inode) -> list[WriteBehind]:
        """The write-behind of each open file of ``inode`` opened for writing (a copy:
        files may open and close while the caller waits)."""
        return [
            of.writer for of in self._files.values() if of.inode is inode and of.writer is not None
        ]

    def _written_end(self, inode: Inode) -> int:
        """Where the data written to ``inode`` through its open files ends (bytes)."""
        return max((writer.written_end for writer in self._writers(inode)), default=0)

    def _truncated(self, inode: Inode, size: int) -> None:
        """``inode`` was cut to ``size`` bytes: its writers' data ends there at most."""
        for writer in self._writers(inode):
            writer.truncated(size)

    def _writes_pending(self, inode: Inode) -> bool:
        return any(writer.busy for writer in self._writers(inode))

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    # ------------------------------------------------------------------ metadata
    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._inode(parent_inode)
        self._check_name(name)
        if name == b".":
            inode = parent
            inode.lookups += 1
            return self._entry(inode)
        known = self._delegated_child(parent, name)
        if known is not None:
            known.lookups += 1
            return self._entry(known)
        try:
            fh, attrs = await self.client.lookup(parent.fh, name, self._cred(ctx))
        except NFS4Error as e:
            if e.status != nfsstat4.NFS4ERR_NOENT or not self.negative_lookups:
                raise
            # A negative entry: the kernel remembers that the name does not exist for
            # the directory's attribute cache time (nfs(5) lookupcache=all), instead of
            # asking again (a create right after asks first).
            entry = pyfuse3.EntryAttributes()
            entry.st_ino = 0
            entry.entry_timeout = parent.ac_timeout or self.cache.bounds(True)[0]
            return entry
        node = self._learn(fh, attrs, parent, name)
        if not node.dirty:
            self._note_delegated(node)
        return self._entry(node)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, nlookup in inode_list:
            gone = self.inodes.forget(ino, nlookup)
            if gone is not None:
                if self._delegated_names.get((gone.parent, gone.name)) is gone:
                    del self._delegated_names[(gone.parent, gone.name)]
                self.client.forget_fh(gone.fh)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self._inode(inode)
        if not self._attrs_fresh(node):
            await self._fresh_attrs(node, self._cred(ctx))
        return self._entry(node)

    def _attrs_fresh(self, node: Inode) -> bool:
        """The cached attributes may answer a stat: they came with the open or the
        close of the file (the kernel drops its own copy after writes and at open, and
        asks right after), less than the attribute cache time ago (nfs(5)
        acregmin..acregmax; noac: never), with no write and no change to the
        namespace since (an unlink elsewhere changes nlink, a create the directory)."""
        if node.dirty or node.trusted != self._namespace_epoch:
            return False
        if self.client.usable_delegation(node.fh) is not None:
            # Nobody else may change the file while this client holds a delegation on
            # it (RFC 8881 section 10.4.3): the attributes hold until it is recalled.
            return True
        if node.ac_timeout <= 0:
            return False
        return time.monotonic() - node.attrs_at < node.ac_timeout

    def _trust(self, node: Inode) -> None:
        """The attributes just fetched with an open or close may answer the next stat."""
        node.trusted = self._namespace_epoch

    def _post_op(self, directory: Inode, attrs: NFSAttrs | None) -> None:
        """A directory's attributes as the COMPOUND that changed it returned them: they
        may answer the stat (or the lookup revalidation) that follows."""
        if attrs is not None:
            directory.set_attrs(attrs)
            self._trust(directory)

    def _namespace_changed(self) -> None:
        """A create, remove, link or rename: no cached attributes answer a stat now."""
        self._namespace_epoch += 1

    @fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = self._inode(inode)
        cred = self._cred(ctx)
        # WRITEs still in flight would land after the SETATTR and move mtime (and the
        # size) past what was set: futimens() right after write(), as tar does.
        await self._drain_writes(node)
        want = NFSAttrs()
        if fields.update_mode and not self._kills_privileges(node, attr.st_mode, ctx):
            want.mode = attr.st_mode & 0o7777
        if fields.update_uid:
            want.owner = str(attr.st_uid)
        if fields.update_gid:
            want.owner_group = str(attr.st_gid)
        if fields.update_atime:
            want.time_access_set = settime(
                getattr(fields, "update_atime_now", False), attr.st_atime_ns
            )
        if fields.update_mtime:
            want.time_modify_set = settime(
                getattr(fields, "update_mtime_now", False), attr.st_mtime_ns
            )
        stateid: nfs4.stateid4 | None = None
        if fields.update_size:
            want.size = attr.st_size
            self._truncated(node, attr.st_size)
            of = self._files.get(fh) if fh is not None else None
            if of is not None and of.access & OPEN4_SHARE_ACCESS_WRITE:
                stateid = of.state.stateid
            reader = self._readers.get(node.ino)
            if reader is not None:
                reader.invalidate()
        if want.present():
            if fields.update_size and stateid is None:
                # truncate(2) by path: open for write around the SETATTR (section 18.30.3).
                state = await self.client.open_fh(node.fh, OPEN4_SHARE_ACCESS_WRITE, cred)
                try:
                    attrs = await self.client.setattr(node.fh, want, state.stateid, cred)
                finally:
                    await self.client.release(state, OPEN4_SHARE_ACCESS_WRITE, cred)
            else:
                attrs = await self.client.setattr(node.fh, want, stateid, cred)
            node.set_attrs(attrs)
            if not self._writes_pending(node):
                self.client.note_server_attrs(node.fh, attrs)
        else:
            await self._fresh_attrs(node, cred)
        return self._entry(node)

    def _kills_privileges(self, node: Inode, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        """True for the kernel's own "clear setuid/setgid" before a non-owner's write.

        The kernel asks with the writer's credentials, which the server refuses (only
        the owner may chmod); but an NFS server clears those bits itself when someone
        other than the owner writes (as a local file system does).  So the request is
        not sent, and the attributes returned already show the bits cleared.  A real
        chmod by a non-owner never gets here: the kernel refuses it first
        (default_permissions).
        """
        current = (node.attrs.mode or 0) & 0o7777
        cleared = current & ~mode & 0o7777
        uid = self.ids.uid(node.attrs.owner)
        if ctx.uid == 0 or ctx.uid == uid or not cleared:
            return False
        if cleared & ~(stat.S_ISUID | stat.S_ISGID) or mode & 0o7777 & ~current:
            return False
        node.attrs.mode = mode & 0o7777
        return True

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return await self.client.readlink(self._inode(inode).fh, self._cred(ctx))

    @fuse_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        # With default_permissions the kernel checks modes itself; ask the server when
        # it does not (ACCESS4_READ=1, LOOKUP=2, MODIFY=4, EXTEND=8, EXECUTE=0x20).
        mask = 0
        if mode & os.R_OK:
            mask |= 0x1
        if mode & os.W_OK:
            mask |= 0x4 | 0x8
        if mode & os.X_OK:
            mask |= 0x20 | 0x2
        if not mask:
            return True
        node = self._inode(inode)
        allowed = await self.client.access(node.fh, mask, self._cred(ctx))
        return allowed == mask or (bool(allowed) and not (mask & ~allowed & ~0x22))

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        a = await self.client.statfs(self.client.root_fh, self._cred(ctx))
        out = pyfuse3.StatvfsData()
        bsize = 4096
        out.f_bsize = 1024 * 1024
        out.f_frsize = bsize
        out.f_blocks = (a.space_total or 0) // bsize
        out.f_bfree = (a.space_free or 0) // bsize
        out.f_bavail = (a.space_avail or 0) // bsize
        out.f_files = a.files_total or 0
        out.f_ffree = a.files_free or 0
        out.f_favail = a.files_avail or 0
        # The server's maxname may describe its own limits rather than the file system's
        # (Ganesha says 1024 on ext4); programs size names from it, so no more than
        # NAME_MAX, as the Linux client does.
        out.f_namemax = min(a.maxname or NAME_MAX, self.name_max)
        return out

    # ------------------------------------------------------------------ namespace
    async def _create_entry(
        self,
        parent_inode: int,
        name: bytes,
        objtype: nfs4.createtype4,
        mode: int,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        parent = self._inode(parent_inode)
        self._check_name(name)
        self._namespace_changed()
        attrs = NFSAttrs(mode=mode & ~ctx.umask & 0o7777)
        fh, got, dir_attrs = await self.client.create_in(
            parent.fh, name, objtype, attrs, self._cred(ctx)
        )
        self._post_op(parent, dir_attrs)  # the kernel asks for them next (mkdir -p, tar)
        return self._entry(self._learn(fh, got, parent, name))

    @fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return await self._create_entry(
            parent_inode, name, nfs4.createtype4(type=nfs_ftype4.NF4DIR), mode, ctx
        )

    @fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return await self._create_entry(
            parent_inode,
            name,
            nfs4.createtype4(type=nfs_ftype4.NF4LNK, linkdata=target),
            0o777,
            ctx,
        )

    @fuse_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        kind = stat.S_IFMT(mode)
        self._check_name(name)
        self._namespace_changed()
        if kind == stat.S_IFREG:
            parent = self._inode(parent_inode)
            cred = self._cred(ctx)
            opened = await self.client.open(
                parent.fh,
                name,
                OPEN4_SHARE_ACCESS_WRITE,
                create=True,
                exclusive=True,
                attrs=NFSAttrs(mode=mode & ~ctx.umask & 0o7777),
                cred=cred,
            )
            self._post_op(parent, opened.dir_attrs)
            await self.client.release(opened.state, OPEN4_SHARE_ACCESS_WRITE, cred)
            return self._entry(self._learn(opened.fh, opened.attrs, parent, name))
        if kind == stat.S_IFIFO:
            objtype = nfs4.createtype4(type=nfs_ftype4.NF4FIFO)
        elif kind == stat.S_IFSOCK:
            objtype = nfs4.createtype4(type=nfs_ftype4.NF4SOCK)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            objtype = nfs4.createtype4(
                type=nfs_ftype4.NF4CHR if kind == stat.S_IFCHR else nfs_ftype4.NF4BLK,
                devdata=nfs4.specdata4(specdata1=os.major(rdev), specdata2=os.minor(rdev)),
            )
        else:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return await self._create_entry(parent_inode, name, objtype, mode, ctx)

    async def _find_child(self, parent: Inode, name: bytes) -> Inode | None:
        """The inode already known for ``parent/name``, if any (by fileid, not a LOOKUP)."""
        try:
            fh, attrs = await self.client.lookup(parent.fh, name)
        except NFS4Error:
            return None
        if attrs.fsid is None or attrs.fileid is None:
            return None
        for node in self._known_inodes():
            if node.fs_id == self.client.fs_id_of(fh) and node.fileid == attrs.fileid:
                self.inodes.set_fh(node, fh)
                return node
        return None

    # ------------------------------------------------------------------ volatile handles
    async def _refresh_fh(self, old: bytes) -> bytes:
        """NFS4ERR_FHEXPIRED for ``old``: the same file's new filehandle, by its path.

        RFC 8881 section 4.2.3: a client that holds an expired (volatile) filehandle
        looks the object up again from a filehandle it still can use; the inode number,
        open files and locks stay (only the handle changes).

        Raises:
            NFSClientError: (ESTALE) the file's path is not known, or another file is
                there now.
        """
        # Several requests may meet the same expired handle at once: the first one finds
        # the file again, the others wait for it and use what it found.  (Finding it
        # may meet other expired handles, of its directories: those are resolved by
        # nested calls, each for its own handle.)
        running = self._refreshing.get(old)
        if running is not None:
            await running.wait()
        replaced = self.client.current_fh(old)
        if replaced != old:
            return replaced
        node = self.inodes.find_fh(old)
        if node is None:
            raise StaleHandle("an expired filehandle of a file this mount no longer knows")
        done = self._refreshing[old] = trio.Event()
        try:
            return await self._resolve_by_path(node)
        finally:
            del self._refreshing[old]
            done.set()

    async def _resolve_by_path(self, node: Inode) -> bytes:
        """LOOKUP ``node`` again from the mount's root, component by component."""
        root = self._inode(pyfuse3.ROOT_INODE)
        if node is root:
            root.fh = await self.client.resolve_root()
            return root.fh
        names = self.inodes.path_of(node.ino)
        if names is None:
            raise StaleHandle(f"{self.describe_fh(node.fh)}: its path is not known")
        current = self.client.current_fh(root.fh)
        attrs = NFSAttrs()
        for name in names:
            current, attrs = await self.client.lookup(current, name)
            found = self.inodes.find_key(self.client.fs_id_of(current), attrs.fileid)
            if found is not None and found.fh != current:
                self.inodes.set_fh(found, current)
                found.set_attrs(attrs)
        if attrs.fileid != node.fileid:
            raise StaleHandle(f"{self.describe_fh(node.fh)}: another file has its name now")
        return current

    async def _refresh_filesystem(self, fs: FileSystem) -> int:
        """Every open file of ``fs`` looked up again (after a migration that gave the
        file system new filehandles); parents first.  Returns how many were replaced."""
        held = {n.ino: n for n in self._known_inodes() if n.fs_id == fs.fs_id}
        root = self._inode(pyfuse3.ROOT_INODE)
        if root.fs_id == fs.fs_id:
            held[root.ino] = root
        done = 0
        for node in sorted(held.values(), key=lambda n: len(self.inodes.path_of(n.ino) or [])):
            before = node.fh
            try:
                await self._resolve_by_path(node)
            except NFSClientError as e:
                log.warning("%s not found again: %s", self.describe_fh(before), e)
                continue
            done += node.fh != before
        return done

    def _known_inodes(self) -> list[Inode]:
        return [of.inode for of in self._files.values()]

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._inode(parent_inode)
        self._namespace_changed()
        cred = self._cred(ctx)
        victim = await self._find_child(parent, name) if self._files else None
        if victim is not None and victim.opens > 0 and victim.hidden is None:
            # Silly rename: the server would drop the file, but it is still open here.
            # Hide it and REMOVE it at the last close, as NFS clients always have.
            self._hidden_counter += 1
            hidden = f".fusenfs{victim.fileid:x}.{self._hidden_counter}".encode()
            await self.client.rename(parent.fh, name, parent.fh, hidden, cred)
            victim.hidden = (parent.fh, hidden)
            return
        self._post_op(parent, await self.client.remove(parent.fh, name, cred))

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._inode(parent_inode)
        self._namespace_changed()
        self._post_op(parent, await self.client.remove(parent.fh, name, self._cred(ctx)))

    @fuse_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)  # RENAME_NOREPLACE/EXCHANGE: no NFS op
        old = self._inode(parent_inode_old)
        new = self._inode(parent_inode_new)
        self._check_name(name_new)
        self._namespace_changed()
        await self.client.rename(old.fh, name_old, new.fh, name_new, self._cred(ctx))
        for node in self.inodes.children(old.ino, name_old):
            node.parent, node.name = new.ino, name_new

    @fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        node = self._inode(inode)
        parent = self._inode(new_parent_inode)
        self._check_name(new_name)
        self._namespace_changed()
        attrs = await self.client.link(node.fh, parent.fh, new_name, self._cred(ctx))
        node.set_attrs(attrs)
        node.lookups += 1
        return self._entry(node)

    # ------------------------------------------------------------------ files
    def _open_file(self, inode: Inode, state: OpenState, access: int, cred: Credential) -> int:
        client = self.client
        fh_bytes = inode.fh

        # The I/O functions use the handle's open state as it is at each call: it is
        # replaced when the open is closed at close(2) and opened again (``flush``).
        async def read_fn(offset: int, count: int) -> tuple[Buffer, bool]:
            return await client.read(fh_bytes, of.state, offset, count, cred)

        async def write_fn(
            offset: int, data: Buffer, stable: stable_how4
        ) -> tuple[int, stable_how4, bytes]:
            r = await client.write(fh_bytes, of.state, offset, data, stable, cred)
            return r.count, r.committed, r.writeverf

        async def write_many_fn(
            pieces: list[tuple[int, Buffer]], stable: stable_how4
        ) -> tuple[list[tuple[int, stable_how4, bytes]], NFSClientError | None]:
            r = await client.write_many(fh_bytes, of.state, pieces, stable, cred)
            return [(w.count, w.committed, w.writeverf) for w in r.written], r.error

        async def commit_fn() -> bytes:
            return await client.commit(fh_bytes, 0, 0, cred)

        if inode.ino not in self._readers:
            block = client.maxread
            ahead = max(1, min(READ_AHEAD_BLOCKS, READ_AHEAD_BYTES // block))
            self._readers[inode.ino] = ReadAhead(read_fn, block, ahead, self.nursery)
        writer = None
        if access & OPEN4_SHARE_ACCESS_WRITE:
            writer = WriteBehind(
                write_fn,
                commit_fn,
                min(client.maxwrite, 1024 * 1024),
                self.nursery,
                write_many_fn=write_many_fn,
                max_batch=client.max_writes_per_compound(),
            )
        number = self._new_fh()
        of = OpenFile(inode, state, access, cred, read_fn, writer)
        self._files[number] = of
        inode.opens += 1
        return number

    async def _ensure_open(self, of: OpenFile) -> None:
        """Open again a handle whose NFS open was closed at close(2) (a dup'ed or
        inherited descriptor is used after the first one closed)."""
        if of.closed:
            of.state = await self.client.open_fh(of.inode.fh, of.access, of.cred)
            of.closed = False

    def _keep_cache(self, inode: Inode, attrs: StatAttrs) -> bool:
        """Close-to-open: keep the kernel's pages only if the change attribute held still."""
        keep = inode.change_at_open is not None and inode.change_at_open == attrs.change
        inode.change_at_open = attrs.change
        return keep

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._inode(inode)
        cred = self._cred(ctx)
        access = share_access_for_flags(flags)
        await self._drain_writes(node)
        cached = node.ac_timeout > 0 and time.monotonic() - node.attrs_at < node.ac_timeout
        if self._attrs_fresh(node) and self.client.usable_delegation(node.fh) is not None:
            # Under a delegation no other client changed the file: no GETATTR, and the
            # open is local when an open the server holds covers it (section 10.4.1).
            state = await self.client.open_fh(node.fh, access, cred)
        elif not self.close_to_open and cached and not node.dirty:
            state = await self.client.open_fh(node.fh, access, cred)  # nocto: no GETATTR
        else:
            state, fetched = await self.client.open_fh_attrs(node.fh, access, cred)
            node.set_attrs(fetched)
            node.dirty = self._writes_pending(node)
            self._trust(node)
            if not node.dirty:
                self.client.note_server_attrs(node.fh, fetched)
                self._note_delegated(node)
        if flags & os.O_TRUNC and access & OPEN4_SHARE_ACCESS_WRITE and node.attrs.size:
            self._truncated(node, 0)
            node.set_attrs(
                await self.client.setattr(node.fh, NFSAttrs(size=0), state.stateid, cred)
            )
        number = self._open_file(node, state, access, cred)
        keep = self._keep_cache(node, node.attrs)
        if not keep:
            self._readers[node.ino].invalidate()  # close-to-open: another client wrote
            # keep_cache=False drops the kernel's pages, not its attributes: without this
            # a reader would go on seeing the old size (and read only that much) until
            # attr_timeout ran out.  Safe here: no writeback cache, attributes only.
            try:
                pyfuse3.invalidate_inode(node.ino, attr_only=True)
            except OSError as e:
                log.debug("invalidate_inode(%d): %s", node.ino, e)
        return pyfuse3.FileInfo(fh=number, keep_cache=keep)

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._inode(parent_inode)
        self._check_name(name)
        self._namespace_changed()
        cred = self._cred(ctx)
        access = share_access_for_flags(flags)
        opened = await self.client.open(
            parent.fh,
            name,
            access,
            create=True,
            exclusive=bool(flags & os.O_EXCL),
            attrs=NFSAttrs(mode=mode & ~ctx.umask & 0o7777),
            cred=cred,
        )
        self._post_op(parent, opened.dir_attrs)
        node = self._learn(opened.fh, opened.attrs, parent, name)
        if flags & os.O_TRUNC and opened.attrs.size:
            self._truncated(node, 0)
            node.set_attrs(
                await self.client.setattr(node.fh, NFSAttrs(size=0), opened.state.stateid, cred)
            )
        number = self._open_file(node, opened.state, access, cred)
        node.change_at_open = node.attrs.change
        return pyfuse3.FileInfo(fh=number, keep_cache=False), self._entry(node)

    def _file(self, fh: int) -> OpenFile:
        of = self._files.get(fh)
        if of is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return of

    @fuse_errors
    # pyfuse3 replies with any buffer (PyObject_GetBuffer), though its stub says bytes:
    # a view of the cached READ reply goes to the kernel without a copy.
    async def read(self, fh: int, off: int, size: int) -> Buffer:  # type: ignore[override]
        of = self._file(fh)
        self._check_lost_lock(of.inode)
        await self._ensure_open(of)
        # POSIX read-after-write on one client: what any descriptor of this file wrote
        # reaches the server before this READ (UNSTABLE data is visible to READs).
        await self._drain_writes(of.inode)
        return await self._readers[of.inode.ino].read(off, size, of.read_fn)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: Buffer) -> int:
        of = self._file(fh)
        self._check_lost_lock(of.inode)
        if of.writer is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        await self._ensure_open(of)
        self._readers[of.inode.ino].invalidate_range(off, len(buf))
        of.inode.dirty = True
        self.client.note_delegated_write(of.inode.fh, off + len(buf))
        return await of.writer.write(off, buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        """close(2): make what was written durable before close returns (close-to-open).

        A small file written in a few pieces and held by this handle alone is written,
        closed and its attributes read in one COMPOUND (WRITE FILE_SYNC4, CLOSE,
        GETATTR); otherwise the write-behind is committed (COMMIT) and CLOSE waits for
        the release.
        """
        of = self._file(fh)
        if of.writer is None or of.closed:
            return
        deleg = self.client.usable_delegation(of.inode.fh)
        if deleg is not None and deleg.write:
            # No other client can open the file while this one holds a write
            # delegation (RFC 8881 section 10.4): close-to-open needs nothing here.
            # The data is written at the release, or when the delegation goes back.
            return
        final = of.writer.take_final()
        if final is None:
            await of.writer.commit()
            return
        try:
            if self.client.is_last_user(of.state):
                written, attrs = await self.client.close_with(of.state, of.access, final, of.cred)
                of.closed = True
            else:
                written, attrs = await self.client.write_sync(
                    of.inode.fh, of.state, final[0], final[1], of.cred
                )
        except BaseException:
            of.writer.restore(final)
            raise
        short = written < len(final[1])
        if short:
            # A short FILE_SYNC WRITE (RFC 8881 section 18.32.3): the rest goes the usual way.
            of.writer.restore((final[0] + written, final[1][written:]))
        else:
            of.writer.final_sent()
        of.inode.set_attrs(attrs)
        of.inode.dirty = self._writes_pending(of.inode)
        self._trust(of.inode)
        if short:
            await self._ensure_open(of)
            await of.writer.commit()

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        of = self._file(fh)
        if of.writer is not None:
            await of.writer.commit()

    @fuse_errors
    async def release(self, fh: int) -> None:
        of = self._files.get(fh)
        if of is None:
            return
        node = of.inode
        try:
            # Written out while the handle is still in the table, so an exit flush
            # (``flush_for_exit``) sees it; release errors reach no application: log them.
            if of.writer is not None and not of.closed:
                try:
                    await of.writer.commit()
                except NFSClientError as e:
                    log.warning("data not written for %s: %s", self.describe_fh(node.fh), e)
                    raise
        finally:
            self._files.pop(fh, None)
            node.opens -= 1
            if not of.closed:
                await self.client.release(of.state, of.access, of.cred)
            if node.opens == 0 and node.hidden is not None:
                dir_fh, hidden = node.hidden
                node.hidden = None
                try:
                    await self.client.remove(dir_fh, hidden, of.cred)
                except NFS4Error as e:
                    if e.status != nfsstat4.NFS4ERR_NOENT:
                        raise
            if node.opens == 0:
                self._readers.pop(node.ino, None)
            if node.opens == 0 and node.lookups == 0 and self.inodes.forget(node.ino, 0):
                self.client.forget_fh(node.fh)

    # ------------------------------------------------------------------ directories
    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._inode(inode)
        number = self._new_fh()
        self._dirs[number] = OpenDir(node, self._cred(ctx))
        return number

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """READDIR pages by cookie (RFC 8881 section 18.23); ``start_id`` is a cookie.

        Entries come with their attributes and filehandle, so ``ls -l`` needs no
        GETATTR per entry; each reply the kernel accepts adds a lookup reference.
        """
        od = self._dirs.get(fh)
        if od is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        # NFSv4 servers never return "." and ".." (cookies 1 and 2 are reserved for them,
        # RFC 8881 section 18.23.3): the client makes them, at offsets 1 and 2.
        if start_id == 0 and not pyfuse3.readdir_reply(token, b".", self._entry(od.inode), 1):
            return
        if start_id <= 1 and not pyfuse3.readdir_reply(
            token, b"..", self._parent_entry(od.inode), 2
        ):
            return
        cookie = start_id if start_id > 2 else 0
        while True:
            entries = od.cached_after(cookie)
            if entries is None:
                verf = od.cookieverf if cookie else bytes(8)
                page, verf, eof = await self.client.readdir(od.inode.fh, cookie, verf, od.cred)
                od.page_from, od.entries, od.eof, od.cookieverf = cookie, page, eof, verf
                if not page:
                    return  # empty page: the end, whatever eof says
                entries = page
            elif not entries:
                if od.eof:
                    return
                od.page_from, od.entries = None, []
                continue
            for entry in entries:
                cookie = entry.cookie
                a = entry.attrs
                fhandle = a.filehandle
                if a.rdattr_error in (nfsstat4.NFS4ERR_MOVED, nfsstat4.NFS4ERR_WRONGSEC):
                    # A junction to an absent file system (RFC 8881 section 11.5.6):
                    # follow the referral so the entry shows the file system's root.
                    # Or to a file system that wants another flavour (section
                    # 2.6.3.1.1): the lookup negotiates it.
                    try:
                        fhandle, a = await self.client.lookup(od.inode.fh, entry.name, od.cred)
                    except NFSClientError as e:
                        log.info("junction %r not followed: %s", entry.name, e)
                        continue
                elif a.rdattr_error not in (None, nfsstat4.NFS4_OK):
                    continue
                if fhandle is None or a.fileid is None:
                    continue
                inode = self.inodes.learn(fhandle, a, self.client.fs_id_of(fhandle))
                if not pyfuse3.readdir_reply(token, entry.name, self._entry(inode), cookie):
                    return
                inode.lookups += 1
                inode.parent, inode.name = od.inode.ino, entry.name

    def _parent_entry(self, inode: Inode) -> pyfuse3.EntryAttributes:
        """The entry of ".." in directory ``inode``: its parent (the root's is itself)."""
        if inode.ino == pyfuse3.ROOT_INODE:
            return self._entry(inode)
        parent = self.inodes.get(inode.parent)
        if parent is not None:
            return self._entry(parent)
        entry = pyfuse3.EntryAttributes()  # forgotten by the kernel: its number is enough
        entry.st_ino = inode.parent or pyfuse3.ROOT_INODE
        entry.st_mode = stat.S_IFDIR
        return entry

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> dict[str, Any]:
        """The mount's counters and, with a state manager, its recovery history."""
        data: dict[str, Any] = {
            "inodes": len(self.inodes),
            "open_files": len(self._files),
            "open_dirs": len(self._dirs),
            "time": time.time(),
        }
        if self.recovery_stats is not None:
            data.update(self.recovery_stats())
        return data

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        """No extended attributes (NFSv4.1 has none): ENOSYS, after which the kernel
        answers every getxattr on the mount itself (EOPNOTSUPP) and stops asking for
        ``security.capability`` before each write(2) (``fusenfs.statsock``)."""
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        """No extended attributes: ENOSYS, as ``getxattr``."""
        raise pyfuse3.FUSEError(errno.ENOSYS)

    # ------------------------------------------------------------------ exit
    async def flush_for_exit(
        self, name_of: Callable[[int], str | None] | None = None
    ) -> list[tuple[str, str]]:
        """Write every open file's write-behind data before the mount goes away.

        Each open file's ``WriteBehind`` is committed (drain, COMMIT, FILE_SYNC re-sends
        after a verifier change; RFC 8881 sections 18.32, 18.3), all files concurrently.
        The caller bounds it (``trio.move_on_after``): it gives up 0.1 s before the
        caller's effective deadline, so that it returns the list instead of being
        cancelled with it.  WRITEs still in flight then run on in the mount's nursery
        (the ``nursery`` given to the constructor) until the caller cancels it.

        Args:
            name_of: a name for a FUSE inode number (a path an application opened it
                by), or None when unknown: then ``inode N (fileid F)``.

        Returns:
            (name, reason) for each file whose data is not known to be on the server's
            stable storage: a WRITE or COMMIT failed (the error), or no reply came
            before the deadline.  Empty when everything was written.
        """
        writers = [(of.inode, of.writer) for of in self._files.values() if of.writer is not None]
        failed: dict[int, str] = {}
        waiting: dict[int, int] = {}  # inode number -> writers not finished yet

        async def commit_one(inode: Inode, writer: WriteBehind) -> None:
            try:
                await writer.commit()
            except NFSClientError as e:
                failed.setdefault(inode.ino, str(e) or type(e).__name__)
            waiting[inode.ino] -= 1

        margin = 0.1  # seconds before the caller's deadline: time to return the list
        deadline = trio.current_effective_deadline() - margin
        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                for inode, writer in writers:
                    waiting[inode.ino] = waiting.get(inode.ino, 0) + 1
                    nursery.start_soon(commit_one, inode, writer)
        for ino, left in waiting.items():
            if left and ino not in failed:
                failed[ino] = "no reply from the server before the exit deadline"
        inodes = {inode.ino: inode for inode, _ in writers}
        result = []
        for ino, reason in failed.items():
            name = name_of(ino) if name_of is not None else None
            if name is None:
                name = f"inode {ino} (fileid {inodes[ino].fileid:#x})"
            result.append((name, reason))
        return result

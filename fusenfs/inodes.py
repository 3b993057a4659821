"""The inode table: FUSE inode numbers for NFS files, stable per (file system, fileid).

The kernel knows files by inode number; the server by filehandle.  An inode number is
handed out the first time the client sees a (file system, fileid) pair and never changes
for the life of the mount, even across a migration (which keeps fileids, RFC 8881
section 11.11.3 / seed 000).  The file system is the superblock's ``fs_id``, not the
fsid: two servers may report the same fsid for different file systems
(``session.mount``).  Lookup counts follow the FUSE protocol: every entry
returned (lookup, create, mkdir, readdir...) adds one, ``forget`` subtracts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyfuse3

from session.xdr.fattr import NFSAttrs
from session.xdr.nfs4 import nfstime4


@dataclass(slots=True)
class StatAttrs:
    """The attributes a stat needs, as one inode keeps them (compact: the full
    ``NFSAttrs`` record and its nfstime4 objects cost about 700 bytes an inode, this
    about 150; with 100,000 cached inodes that is the difference).

    Attributes: the fattr4 attributes of RFC 8881 section 5.8 that ``stat`` shows,
    times in nanoseconds since the epoch, owner and group as the server's strings
    (interned: most files share a few).
    """

    type: int | None = None
    mode: int | None = None
    numlinks: int | None = None
    owner: str | None = None
    owner_group: str | None = None
    rawdev: tuple[int, int] | None = None
    size: int | None = None
    space_used: int | None = None
    change: int | None = None
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0

    def update(self, a: NFSAttrs) -> None:
        """Take what ``a`` carries; keep what it lacks."""
        if a.type is not None:
            self.type = int(a.type)
        if a.mode is not None:
            self.mode = a.mode
        if a.numlinks is not None:
            self.numlinks = a.numlinks
        if a.owner is not None:
            self.owner = sys.intern(a.owner)
        if a.owner_group is not None:
            self.owner_group = sys.intern(a.owner_group)
        if a.rawdev is not None:
            self.rawdev = (a.rawdev.specdata1, a.rawdev.specdata2)
        if a.size is not None:
            self.size = a.size
        if a.space_used is not None:
            self.space_used = a.space_used
        if a.change is not None:
            self.change = a.change
        if a.time_access is not None:
            self.atime_ns = nfstime_ns(a.time_access)
        if a.time_modify is not None:
            self.mtime_ns = nfstime_ns(a.time_modify)
        if a.time_metadata is not None:
            self.ctime_ns = nfstime_ns(a.time_metadata)
        # Equal values share one int object (36 bytes each): a file written once and
        # never read has the same atime, mtime and ctime (7 MB of 100,000 inodes), and
        # servers that derive the change attribute from ctime (Ganesha's VFS) send it
        # in nanoseconds too.
        if self.atime_ns == self.mtime_ns:
            self.atime_ns = self.mtime_ns
        if self.ctime_ns == self.mtime_ns:
            self.ctime_ns = self.mtime_ns
        if self.change == self.ctime_ns:
            self.change = self.ctime_ns


def nfstime_ns(t: nfstime4) -> int:
    """An nfstime4 in nanoseconds since the epoch."""
    return t.seconds * 1_000_000_000 + t.nseconds


@dataclass(slots=True)
class Inode:
    """What the client keeps for one inode.

    Attributes:
        ino: the FUSE inode number.
        fh: the current NFS filehandle.
        fs_id: the file system it is on (``session.mount.FileSystem.fs_id``).
        fileid: the server's fileid (uint64).
        lookups: the kernel's lookup count (a count).
        attrs: the last attributes fetched, and ``attrs_at`` when (monotonic seconds).
        opens: FUSE file handles open on it (a count).
        change_at_open: the change attribute at the last open (close-to-open check).
        hidden: (directory fh, name) of a silly-renamed file, removed at last close.
        parent: the inode number of the directory it was last found in (0: unknown).
        name: its name there (bytes): with ``parent``, a path from the mount's root.
    """

    ino: int
    fh: bytes
    fs_id: int
    fileid: int
    lookups: int = 0
    attrs: StatAttrs = field(default_factory=StatAttrs)
    attrs_at: float = 0.0
    opens: int = 0
    change_at_open: int | None = None
    hidden: tuple[bytes, bytes] | None = None
    parent: int = 0
    name: bytes = b""
    #: Seconds the kernel may trust these attributes: grows while the file does not
    #: change, back to the minimum when it does (nfs(5) acregmin..acregmax).
    ac_timeout: float = 0.0
    #: The change attribute moved at the last refresh (or nothing is known yet).
    changed: bool = True
    #: Written since the attributes were fetched: size and times may be stale.
    dirty: bool = False
    #: The namespace epoch in which the attributes came with an open or close (they
    #: may answer a stat while it lasts, ``NFSOperations._attrs_fresh``); 0: never.
    trusted: int = 0

    def set_attrs(self, attrs: NFSAttrs) -> None:
        """Fresh attributes from the server (those it did not send are kept)."""
        if attrs.change is not None and self.attrs.change is not None:
            self.changed = attrs.change != self.attrs.change
        self.attrs.update(attrs)
        self.attrs_at = time.monotonic()

    def cache_timeout(self, low: float, high: float) -> float:
        """The next attribute timeout in seconds: doubled while unchanged, within [low, high]."""
        if self.changed or self.ac_timeout < low:
            self.ac_timeout = low
        else:
            self.ac_timeout = min(max(self.ac_timeout * 2, low), high)
        self.changed = False
        return self.ac_timeout


def _key(fs_id: int, fileid: int) -> int:
    """One int for (fs_id, fileid): the fileid attribute is a uint64 (RFC 8881 section 5.8.2),
    so the file system goes above its 64 bits and no two pairs share a key."""
    return fs_id << 64 | fileid


class InodeTable:
    """Inodes by number and by (fs_id, fileid); numbers are never reused within a mount.

    Args:
        on_new_fh: called as ``on_new_fh(old, new)`` whenever a known inode's
            filehandle changes (the server gave the same (fs_id, fileid) a new handle:
            volatile handles that expired, RFC 8881 section 4.2.3, or a migration with
            new handles), once the inode holds the new one.  The NFS client moves
            what it keeps under ``old`` (open and lock state) there; without that an
            open file is left with a handle nothing knows any more.
    """

    def __init__(self, on_new_fh: Callable[[bytes, bytes], None] | None = None) -> None:
        self._by_ino: dict[int, Inode] = {}
        # Keyed by ``_key(fs_id, fileid)``: one int, not a tuple of two (with 100,000
        # inodes a tuple key cost about 2 MB more).
        self._ino_by_key: dict[int, int] = {}
        self._next = pyfuse3.ROOT_INODE + 1
        self.on_new_fh = on_new_fh

    def __len__(self) -> int:
        return len(self._by_ino)

    def get(self, ino: int) -> Inode | None:
        return self._by_ino.get(ino)

    def set_root(self, fh: bytes, attrs: NFSAttrs, fs_id: int) -> Inode:
        fileid = attrs.fileid or 0
        inode = Inode(ino=pyfuse3.ROOT_INODE, fh=fh, fs_id=fs_id, fileid=fileid, lookups=1)
        inode.set_attrs(attrs)
        self._by_ino[inode.ino] = inode
        self._ino_by_key[_key(fs_id, fileid)] = inode.ino
        return inode

    def learn(self, fh: bytes, attrs: NFSAttrs, fs_id: int) -> Inode:
        """The inode for a file just seen on file system ``fs_id`` (attributes must
        include the fileid).

        A known (fs_id, fileid) keeps its number; its filehandle (``set_fh``) and
        attributes update.

        Raises:
            ValueError: the attributes lack a fileid.
        """
        if attrs.fileid is None:
            raise ValueError("the server returned no fileid; inode numbers need it")
        key = _key(fs_id, attrs.fileid)
        ino = self._ino_by_key.get(key)
        if ino is None:
            ino = self._next
            self._next += 1
            self._ino_by_key[key] = ino
        inode = self._by_ino.get(ino)
        if inode is None:
            inode = Inode(ino=ino, fh=fh, fs_id=fs_id, fileid=attrs.fileid)
            self._by_ino[ino] = inode
        else:
            self.set_fh(inode, fh)
        inode.set_attrs(attrs)
        return inode

    def set_fh(self, inode: Inode, fh: bytes) -> None:
        """``inode`` is known by ``fh`` now (``on_new_fh`` is told of a change)."""
        if inode.fh != fh:
            old, inode.fh = inode.fh, fh
            if self.on_new_fh is not None:
                self.on_new_fh(old, fh)

    def find_fh(self, fh: bytes) -> Inode | None:
        """The inode whose filehandle is ``fh`` (a scan: for the rare expired handle)."""
        for inode in self._by_ino.values():
            if inode.fh == fh:
                return inode
        return None

    def find_key(self, fs_id: int, fileid: int | None) -> Inode | None:
        """The inode of (fs_id, fileid), if one is held."""
        ino = self._ino_by_key.get(_key(fs_id, fileid)) if fileid is not None else None
        return None if ino is None else self._by_ino.get(ino)

    def children(self, parent: int, name: bytes) -> list[Inode]:
        """Known inodes last seen as ``name`` in directory ``parent`` (after a rename)."""
        return [i for i in self._by_ino.values() if i.parent == parent and i.name == name]

    def path_of(self, ino: int, limit: int = 4096) -> list[bytes] | None:
        """Names from the mount's root to ``ino`` (root: []), or None where unknown.

        ``limit`` bounds the walk (a count of components), so a cycle cannot hang it.
        """
        names: list[bytes] = []
        while ino != pyfuse3.ROOT_INODE:
            inode = self._by_ino.get(ino)
            if inode is None or not inode.parent or not inode.name or len(names) >= limit:
                return None
            names.append(inode.name)
            ino = inode.parent
        return names[::-1]

    def forget(self, ino: int, nlookup: int) -> Inode | None:
        """Drop ``nlookup`` kernel references; the record goes when none remain.

        Returns the inode if its record went (the caller drops what it kept for it).
        """
        inode = self._by_ino.get(ino)
        if inode is None or ino == pyfuse3.ROOT_INODE:
            return None
        inode.lookups = max(0, inode.lookups - nlookup)
        if inode.lookups == 0 and inode.opens == 0:
            del self._by_ino[ino]
            return inode
        return None

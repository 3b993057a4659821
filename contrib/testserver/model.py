"""The exported file systems and the pseudo-fs namespace, in memory (sans-I/O).

One :class:`Model` is shared by every server instance of a cluster: it holds the
pseudo file system (``/``, ``/export``, ...) and the exported file systems, each with
its own ``fsid`` (RFC 8881 section 5.8.1.9) and its own tree of inodes: directories,
regular files (a ``bytearray``), symbolic links and special files.  Which instance
*serves* a file system is not the model's business (``cluster.py`` keeps that map);
the model answers questions about names, inodes and filehandles.

Filehandles (RFC 8881 section 4) encode ``(file system index, fileid, generation,
filehandle epoch, object serial)``, so any instance can tell which file system a
filehandle belongs to.  By default they are persistent (``FH4_PERSISTENT``) and stay
valid when their file system migrates (RFC 8881 section 11.11.2, "Filehandles and File
System Transitions": the same filehandles on source and destination).

Volatile filehandles (RFC 8881 section 4.2.3): a file system may be configured with
another ``fh_expire_type`` (:func:`parse_fh_expire_type`).  Expiry is per file system:
:meth:`FileSystem.expire_filehandles` starts a new *filehandle epoch*, after which a
handle of an older epoch is expired (the server answers NFS4ERR_FHEXPIRED) while a
lookup hands out the new handle of the same object (same fileid, same fsid).  One
object's handle alone expires by its *serial* (:meth:`FileSystem.expire_filehandle`,
used for RENAME under ``FH4_VOL_RENAME``).  Under ``FH4_NOEXPIRE_WITH_OPEN`` the old
handles of files open at the time of an expiry stay valid while they stay open.  The
pseudo-fs never expires its handles (its root is where a client starts over).  A
handle of a removed object is NFS4ERR_STALE, never FHEXPIRED (section 4.2.3).

Junctions: a directory may have another file system mounted on it (``Inode.junction``).
LOOKUP of its name crosses into the root of that file system; LOOKUPP of a file system
root goes back to the junction's parent.  Whether the crossed-into file system is
*present* on the instance answering is decided by the instance (an absent one is a
referral or a migrated file system, RFC 8881 section 11.3).

Errors are :class:`FsError` carrying the ``nfsstat4`` a server returns.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from contrib.testserver.security import IdMap, parse_sec
from session.xdr.const import (
    FH4_NOEXPIRE_WITH_OPEN,
    FH4_PERSISTENT,
    FH4_VOL_MIGRATION,
    FH4_VOL_RENAME,
    FH4_VOLATILE_ANY,
    NFS4_FHSIZE,
    nfs_ftype4,
    nfsstat4,
)
from session.xdr.nfs4 import fsid4, nfstime4

FH_MAGIC: Final = b"tsfh"
_FH = struct.Struct(">4sIQIII")  # magic, fs index, fileid, generation, fh epoch, serial
FH_SIZE: Final = _FH.size  # 28 bytes, well under NFS4_FHSIZE
assert FH_SIZE <= NFS4_FHSIZE

FH_EXPIRE_NAMES: Final[dict[str, int]] = {
    "persistent": FH4_PERSISTENT,
    "noexpire-with-open": FH4_NOEXPIRE_WITH_OPEN,
    "volatile-any": FH4_VOLATILE_ANY,
    "vol-migration": FH4_VOL_MIGRATION,
    "vol-rename": FH4_VOL_RENAME,
}
"""Names of the fh_expire_type bits (RFC 8881 section 4.2.3) in configurations."""
_FH_EXPIRE_RFC_NAMES: Final = {
    FH4_NOEXPIRE_WITH_OPEN: "FH4_NOEXPIRE_WITH_OPEN",
    FH4_VOLATILE_ANY: "FH4_VOLATILE_ANY",
    FH4_VOL_MIGRATION: "FH4_VOL_MIGRATION",
    FH4_VOL_RENAME: "FH4_VOL_RENAME",
}
_FH_EXPIRE_ALL: Final = (
    FH4_NOEXPIRE_WITH_OPEN | FH4_VOLATILE_ANY | FH4_VOL_MIGRATION | FH4_VOL_RENAME
)

MAXNAME: Final = 255
"""Longest file name component in bytes (attribute maxname, RFC 8881 section 5.7)."""
MAXLINK: Final = 32000
"""Most hard links to one file (attribute maxlink)."""
MAXFILESIZE: Final = 1 << 40
"""Largest file in bytes (attribute maxfilesize): 1 TiB, sparse files are bytearrays."""
FIRST_COOKIE: Final = 3
"""READDIR cookies 1 and 2 are reserved (RFC 8881 section 18.23.3); 0 means start."""
NOBODY: Final = 65534

PSEUDO_FS_NAME: Final = "(pseudo)"


class FsError(Exception):
    """An operation on the model failed with ``status`` (an ``nfsstat4``)."""

    def __init__(self, status: nfsstat4, detail: str = "") -> None:
        super().__init__(f"{status.name}{': ' + detail if detail else ''}")
        self.status = status
        self.detail = detail


def now_nfstime() -> nfstime4:
    """The wall-clock time as ``nfstime4`` (seconds, nanoseconds)."""
    ns = time.time_ns()
    return nfstime4(ns // 1_000_000_000, ns % 1_000_000_000)


def check_name(name: bytes) -> None:
    """Validate a component4 (RFC 8881 section 14.2 and 18.x error lists).

    Raises:
        FsError: NFS4ERR_INVAL (empty), NFS4ERR_BADNAME ("." / ".." / a "/" inside /
            a NUL byte), NFS4ERR_NAMETOOLONG (over ``MAXNAME`` bytes), NFS4ERR_BADCHAR
            (not UTF-8).
    """
    if not name:
        raise FsError(nfsstat4.NFS4ERR_INVAL, "empty name")
    if len(name) > MAXNAME:
        raise FsError(nfsstat4.NFS4ERR_NAMETOOLONG, f"{len(name)} bytes")
    if name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise FsError(nfsstat4.NFS4ERR_BADNAME, repr(name))
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        raise FsError(nfsstat4.NFS4ERR_BADCHAR, repr(name)) from None


def parse_fh_expire_type(value: str | int) -> int:
    """The fh_expire_type bits (attribute 2, RFC 8881 sections 4.2.3 and 5.8.1.3) from a
    configuration value.

    ``value`` is an ``int`` bitmask, or names joined by ``+``, ``,`` or ``|``: the
    keys of :data:`FH_EXPIRE_NAMES` ("persistent", "volatile-any", "vol-migration",
    "vol-rename", "noexpire-with-open") or the RFC names ("FH4_VOLATILE_ANY"), in any
    case; "volatile-any+noexpire-with-open" is FH4_VOLATILE_ANY | FH4_NOEXPIRE_WITH_OPEN.

    Raises:
        ValueError: an unknown name or bit, "persistent" combined with a volatile bit,
            or FH4_NOEXPIRE_WITH_OPEN without FH4_VOLATILE_ANY (section 4.2.3: it "may
            only be set when FH4_VOLATILE_ANY is set").
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"fh_expire_type must be a name or an integer, not {value!r}")
    if isinstance(value, int):
        bits = value
        if bits & ~_FH_EXPIRE_ALL or bits < 0:
            raise ValueError(f"fh_expire_type {value:#x} has bits RFC 8881 does not define")
    else:
        bits = 0
        names = [n.strip() for n in value.replace("|", "+").replace(",", "+").split("+")]
        if not any(names):
            raise ValueError("empty fh_expire_type")
        persistent = False
        for name in names:
            key = name.lower().removeprefix("fh4_").replace("_", "-")
            if key not in FH_EXPIRE_NAMES:
                known = ", ".join(FH_EXPIRE_NAMES)
                raise ValueError(f"unknown fh_expire_type {name!r} (known: {known})")
            persistent = persistent or key == "persistent"
            bits |= FH_EXPIRE_NAMES[key]
        if persistent and bits:
            raise ValueError(f"{value!r}: persistent means no volatile bit is set")
    if bits & FH4_NOEXPIRE_WITH_OPEN and not bits & FH4_VOLATILE_ANY:
        raise ValueError(
            "FH4_NOEXPIRE_WITH_OPEN may only be set with FH4_VOLATILE_ANY (RFC 8881 4.2.3)"
        )
    return bits


def fh_expire_type_text(bits: int) -> str:
    """``"FH4_PERSISTENT"`` or the set bits' RFC names joined by ``|``."""
    if bits == FH4_PERSISTENT:
        return "FH4_PERSISTENT"
    return "|".join(name for bit, name in sorted(_FH_EXPIRE_RFC_NAMES.items()) if bits & bit)


class FhFields(NamedTuple):
    """What a test-server filehandle encodes (:func:`parse_fh`)."""

    fs_index: int  # the file system's index in the model
    fileid: int
    generation: int  # Inode.generation: a mismatch is NFS4ERR_STALE
    epoch: int  # FileSystem.fh_epoch when handed out: older is NFS4ERR_FHEXPIRED
    serial: int  # Inode.fh_serial when handed out: older is NFS4ERR_FHEXPIRED


@dataclass(slots=True)
class DirEntry:
    """One name in a directory: the inode's ``fileid`` and the entry's READDIR ``cookie``."""

    fileid: int
    cookie: int


@dataclass(slots=True, eq=False)
class Inode:
    """One object of a file system.

    Attributes:
        fileid: unique in the whole model (the file system index is in the top bits).
        type: the ``nfs_ftype4``.
        mode: permission bits (MODE4_*, 12 bits).
        nlink: names referring to it (directories: 2 + subdirectories).
        data: file contents (regular files).
        target: link text (symbolic links).
        rdev: (major, minor) of a device.
        entries: name -> entry (directories), in cookie order.
        parent: fileid of the parent directory (directories; the root's is itself).
        junction: name of the file system mounted on this directory, if any.
        change: the change attribute (RFC 8881 section 5.8.1.4), strictly increasing.
        generation: part of the filehandle; a reused fileid never gets an old one.
        fh_serial: part of the filehandle; raised when this object's handle alone
            expires (RENAME under FH4_VOL_RENAME).
        create_verf: the EXCLUSIVE4_1 create verifier (RFC 8881 section 18.16.3).
        cookieverf: this directory's READDIR cookie verifier (8 bytes).
        unlinked: removed from every directory, kept while open (PRESERVE_UNLINKED).
    """

    fileid: int
    type: nfs_ftype4
    mode: int
    uid: int
    gid: int
    change: int
    generation: int = 1
    nlink: int = 1
    data: bytearray = field(default_factory=bytearray)
    target: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    entries: dict[bytes, DirEntry] = field(default_factory=dict)
    parent: int = 0
    junction: str | None = None
    next_cookie: int = FIRST_COOKIE
    cookieverf: bytes = field(default_factory=lambda: os.urandom(8))
    atime: nfstime4 = field(default_factory=now_nfstime)
    mtime: nfstime4 = field(default_factory=now_nfstime)
    ctime: nfstime4 = field(default_factory=now_nfstime)
    crtime: nfstime4 = field(default_factory=now_nfstime)
    create_verf: bytes | None = None
    unlinked: bool = False
    fh_serial: int = 0

    @property
    def size(self) -> int:
        """Bytes: file length, link text length, or a nominal 4096 for directories."""
        if self.type == nfs_ftype4.NF4REG:
            return len(self.data)
        if self.type == nfs_ftype4.NF4LNK:
            return len(self.target)
        if self.type == nfs_ftype4.NF4DIR:
            return 4096
        return 0

    @property
    def space_used(self) -> int:
        """Bytes of storage: the size rounded up to 4 KiB blocks."""
        return (self.size + 4095) // 4096 * 4096

    def is_dir(self) -> bool:
        return self.type == nfs_ftype4.NF4DIR


class FileSystem:
    """One file system: an ``fsid``, a root directory and a table of inodes.

    Args:
        name: short name ("a"), used by the control API.
        index: small integer, unique in the model (0 is the pseudo-fs); in filehandles.
        path: where it is mounted in the namespace, e.g. ``("export", "a")``.
        read_only: every modification fails with NFS4ERR_ROFS.
        space_total: bytes the file system offers (attributes space_*).
        files_total: inodes it offers (attributes files_*).
        fh_expire_type: the fh_expire_type bits it reports (RFC 8881 section 4.2.3;
            any value :func:`parse_fh_expire_type` takes).
        sec: the security flavours it allows, in SECINFO order (``security.parse_sec``
            names: krb5p, krb5i, krb5, sys, none); None: every flavour the answering
            instance accepts (RFC 8881 section 2.6).

    Attributes:
        fh_epoch: the current filehandle epoch (uint32): handles of older epochs are
            expired (:meth:`expire_filehandles`).
        fh_kept_open: FH4_NOEXPIRE_WITH_OPEN: fileid -> the (epoch, serial) pairs of
            its old handles still valid because the file was open when they expired.
        fh_expired_by: old epoch -> why it expired (for event messages).
    """

    def __init__(
        self,
        name: str,
        index: int,
        path: tuple[str, ...],
        *,
        read_only: bool = False,
        space_total: int = 1 << 30,
        files_total: int = 1 << 20,
        fh_expire_type: str | int = FH4_PERSISTENT,
        sec: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name
        self.sec = sec
        self.index = index
        self.path = path
        self.fsid = fsid4(0x7E57_0000 + index, index)
        self.read_only = read_only
        self.space_total = space_total
        self.files_total = files_total
        self.fh_expire_type = parse_fh_expire_type(fh_expire_type)
        self.fh_epoch = 0
        self.fh_kept_open: dict[int, set[tuple[int, int]]] = {}
        self.fh_expired_by: dict[int, str] = {}
        self.inodes: dict[int, Inode] = {}
        self._next_fileid = 1
        self._change = 0
        self.root = self.new_inode(nfs_ftype4.NF4DIR, 0o755, 0, 0)
        self.root.parent = self.root.fileid
        #: (file system, directory fileid) this one is mounted on; None for the pseudo-fs.
        self.mounted_on: tuple[FileSystem, int] | None = None
        #: Further junctions to it inside other exported file systems (referrals):
        #: (path, file system holding the junction).
        self.aliases: list[tuple[tuple[str, ...], FileSystem]] = []

    def __repr__(self) -> str:
        return f"<FileSystem {self.name} /{'/'.join(self.path)} fsid={self.fsid}>"

    # -- inodes -------------------------------------------------------------------------
    def next_change(self) -> int:
        """A new value for a change attribute: strictly increasing in this file system."""
        self._change += 1
        return self._change

    def new_inode(self, ftype: nfs_ftype4, mode: int, uid: int, gid: int) -> Inode:
        fileid = (self.index << 40) | self._next_fileid
        self._next_fileid += 1
        inode = Inode(fileid, ftype, mode & 0o7777, uid, gid, self.next_change())
        if ftype == nfs_ftype4.NF4DIR:
            inode.nlink = 2
        self.inodes[fileid] = inode
        return inode

    def touch(self, inode: Inode, *, data: bool = False) -> None:
        """Record a change: new change attribute and ctime (and mtime if ``data``)."""
        inode.change = self.next_change()
        stamp = now_nfstime()
        inode.ctime = stamp
        if data:
            inode.mtime = stamp

    def get(self, fileid: int) -> Inode:
        inode = self.inodes.get(fileid)
        if inode is None:
            raise FsError(nfsstat4.NFS4ERR_STALE, f"fileid {fileid:#x} no longer exists")
        return inode

    def fh(self, inode: Inode) -> bytes:
        """The current filehandle of ``inode`` (RFC 8881 section 4.2: opaque to clients)."""
        return _FH.pack(
            FH_MAGIC, self.index, inode.fileid, inode.generation, self.fh_epoch, inode.fh_serial
        )

    # -- volatile filehandles, RFC 8881 section 4.2.3 ----------------------------------
    def expire_filehandles(self, open_fileids: Iterable[int], cause: str) -> int:
        """Expire every filehandle of this file system now: a new epoch begins.

        Args:
            open_fileids: files open on the serving instance; under
                FH4_VOLATILE_ANY | FH4_NOEXPIRE_WITH_OPEN their current handles stay
                valid while they stay open.
            cause: why, for messages ("expire-fh", "migration to B ...").

        Returns:
            The new epoch.

        Raises:
            ValueError: the pseudo-fs (its handles never expire).
        """
        if self.index == 0:
            raise ValueError("the pseudo-fs filehandles never expire")
        old = self.fh_epoch
        self.fh_epoch = (old + 1) & 0xFFFFFFFF
        self.fh_expired_by[old] = cause
        keep = set(open_fileids) if self.fh_expire_type & FH4_NOEXPIRE_WITH_OPEN else set()
        for fileid in list(self.fh_kept_open):
            if fileid not in keep:
                del self.fh_kept_open[fileid]
        for fileid in keep:
            inode = self.inodes.get(fileid)
            if inode is not None:
                self.fh_kept_open.setdefault(fileid, set()).add((old, inode.fh_serial))
        return self.fh_epoch

    def expire_filehandle(self, inode: Inode, still_open: bool) -> None:
        """Expire the current filehandle of ``inode`` alone (RENAME under
        FH4_VOL_RENAME); kept while open under FH4_NOEXPIRE_WITH_OPEN."""
        if self.index == 0:
            return
        if still_open and self.fh_expire_type & FH4_NOEXPIRE_WITH_OPEN:
            self.fh_kept_open.setdefault(inode.fileid, set()).add((self.fh_epoch, inode.fh_serial))
        inode.fh_serial = (inode.fh_serial + 1) & 0xFFFFFFFF

    def forget_kept_handles(self) -> None:
        """Old handles of open files expire too (a change of handle class, RFC 8881
        section 11.11.2: "all filehandles are assumed to expire")."""
        self.fh_kept_open.clear()

    def fh_expiry(self, handle: FhFields, inode: Inode, still_open: bool) -> str | None:
        """Why ``handle`` (of ``inode``) has expired, or None if it is still valid.

        ``still_open``: the file has an open on the serving instance (an old handle kept
        under FH4_NOEXPIRE_WITH_OPEN is valid only as long as that lasts).
        """
        if handle.epoch == self.fh_epoch and handle.serial == inode.fh_serial:
            return None
        kept = self.fh_kept_open.get(inode.fileid)
        if kept is not None and (handle.epoch, handle.serial) in kept:
            if still_open:
                return None
            del self.fh_kept_open[inode.fileid]
        if handle.epoch != self.fh_epoch:
            cause = self.fh_expired_by.get(handle.epoch, "an expiry")
            return f"filehandle epoch {handle.epoch} of {self.name} expired by {cause}"
        return f"filehandle of fileid {inode.fileid:#x} expired by a RENAME (FH4_VOL_RENAME)"

    def space_used(self) -> int:
        return sum(inode.space_used for inode in self.inodes.values())

    def check_writable(self) -> None:
        if self.read_only:
            raise FsError(nfsstat4.NFS4ERR_ROFS, f"file system {self.name} is read-only")

    # -- directories --------------------------------------------------------------------
    def lookup_name(self, directory: Inode, name: bytes) -> Inode:
        """The inode named ``name`` in ``directory`` (no junction crossing)."""
        entry = directory.entries.get(name)
        if entry is None:
            raise FsError(nfsstat4.NFS4ERR_NOENT, repr(name))
        return self.get(entry.fileid)

    def add_entry(self, directory: Inode, name: bytes, inode: Inode) -> None:
        directory.entries[name] = DirEntry(inode.fileid, directory.next_cookie)
        directory.next_cookie += 1
        if inode.is_dir():
            directory.nlink += 1
            inode.parent = directory.fileid
        self.touch(directory, data=True)

    def remove_entry(self, directory: Inode, name: bytes) -> Inode:
        entry = directory.entries.pop(name)
        inode = self.get(entry.fileid)
        if inode.is_dir():
            directory.nlink -= 1
        self.touch(directory, data=True)
        return inode

    def drop_link(self, inode: Inode, still_open: bool) -> None:
        """One name of ``inode`` went away; forget it if no name and no open remain."""
        inode.nlink -= 2 if inode.is_dir() else 1
        if inode.nlink <= 0 or inode.is_dir():
            inode.unlinked = True
            inode.nlink = 0
            if not still_open:
                self.inodes.pop(inode.fileid, None)
        else:
            self.touch(inode)

    def forget_if_unlinked(self, inode: Inode) -> None:
        """The last open of an unlinked inode closed: drop it (RFC 8881 section 18.16.3)."""
        if inode.unlinked:
            self.inodes.pop(inode.fileid, None)

    def is_ancestor(self, ancestor: Inode, inode: Inode) -> bool:
        """True if directory ``ancestor`` is ``inode`` or contains it (RENAME loops)."""
        current = inode
        for _ in range(10_000):
            if current.fileid == ancestor.fileid:
                return True
            if current.parent == current.fileid or current.parent == 0:
                return False
            parent = self.inodes.get(current.parent)
            if parent is None:
                return False
            current = parent
        return False

    def walk(self) -> Iterator[Inode]:
        yield from self.inodes.values()


def parse_fh(fh: bytes) -> FhFields:
    """The fields of a filehandle (file system index, fileid, generation, epoch, serial).

    Raises:
        FsError: NFS4ERR_BADHANDLE if it is not one of ours.
    """
    if len(fh) != FH_SIZE:
        raise FsError(nfsstat4.NFS4ERR_BADHANDLE, f"filehandle of {len(fh)} bytes")
    magic, index, fileid, generation, epoch, serial = _FH.unpack(fh)
    if magic != FH_MAGIC:
        raise FsError(nfsstat4.NFS4ERR_BADHANDLE, "not a test-server filehandle")
    return FhFields(index, fileid, generation, epoch, serial)


class Model:
    """The namespace: the pseudo-fs and the exported file systems, shared by instances.

    ``add_filesystem("a", "/export/a")`` creates file system ``a`` and mounts it on
    ``/export/a`` (creating pseudo-fs directories on the way).  A path inside another
    exported file system (``/export/a/ref``) mounts it on a directory of that file
    system: a junction, which an instance not serving the inner file system presents
    as a referral (RFC 8881 section 11.5.6, "File System Referrals").
    """

    def __init__(self, idmap: IdMap | None = None) -> None:
        #: owners and principals (RFC 8881 section 5.9), shared by every instance.
        self.idmap = idmap if idmap is not None else IdMap()
        self.pseudo = FileSystem(PSEUDO_FS_NAME, 0, (), read_only=True)
        self.filesystems: dict[str, FileSystem] = {}
        self._by_index: dict[int, FileSystem] = {0: self.pseudo}

    # -- building -----------------------------------------------------------------------
    def add_filesystem(
        self,
        name: str,
        path: str,
        *,
        read_only: bool = False,
        space_total: int = 1 << 30,
        fh_expire_type: str | int = FH4_PERSISTENT,
        sec: str | Sequence[str] | None = None,
    ) -> FileSystem:
        """Create file system ``name`` and mount it on ``path``, allowing the security
        flavours ``sec`` (None: every flavour an instance accepts).

        Raises:
            ValueError: the name is taken, the path is empty or already a mount point,
                a component of it exists and is not a directory, ``fh_expire_type``
                is not valid (:func:`parse_fh_expire_type`), or ``sec`` names an unknown
                flavour.
        """
        flavours = parse_sec(sec) if sec is not None else None
        fh_bits = parse_fh_expire_type(fh_expire_type)
        if name in self.filesystems or name == PSEUDO_FS_NAME:
            raise ValueError(f"file system {name!r} already exists")
        components = tuple(c for c in path.split("/") if c)
        if not components:
            raise ValueError("a file system cannot be mounted on /")
        fs = FileSystem(
            name,
            len(self._by_index),
            components,
            read_only=read_only,
            space_total=space_total,
            fh_expire_type=fh_bits,
            sec=flavours,
        )
        parent_fs, parent_dir = self.pseudo, self.pseudo.root
        for i, comp in enumerate(components):
            raw = comp.encode()
            last = i == len(components) - 1
            entry = parent_dir.entries.get(raw)
            if entry is None:
                if parent_fs is not self.pseudo and not last:
                    raise ValueError(f"{'/'.join(components[: i + 1])} does not exist")
                child = parent_fs.new_inode(nfs_ftype4.NF4DIR, 0o755, 0, 0)
                parent_fs.add_entry(parent_dir, raw, child)
            else:
                child = parent_fs.get(entry.fileid)
                if not child.is_dir():
                    raise ValueError(f"{'/'.join(components[: i + 1])} is not a directory")
            if last:
                if child.junction is not None:
                    raise ValueError(f"/{path.strip('/')} is already a mount point")
                child.junction = name
                fs.mounted_on = (parent_fs, child.fileid)
                break
            if child.junction is not None:
                parent_fs = self.filesystems[child.junction]
                parent_dir = parent_fs.root
            else:
                parent_dir = child
        self.filesystems[name] = fs
        self._by_index[fs.index] = fs
        return fs

    def inside_export(self, path: str) -> bool:
        """True if the parent directory of ``path`` lies inside an exported file system
        (not in the pseudo-fs)."""
        components = [c for c in path.split("/") if c]
        directory = self.pseudo.root
        for comp in components[:-1]:
            entry = directory.entries.get(comp.encode())
            if entry is None:
                return False
            child = self.pseudo.get(entry.fileid)
            if child.junction is not None:
                return True
            directory = child
        return False

    def add_junction(self, path: str, fs: FileSystem) -> None:
        """Make the directory ``path`` inside an exported file system a junction to
        ``fs`` (created if missing), in addition to ``fs``'s own mount point.

        Raises:
            ValueError: the parent does not exist, or the name is taken by a non-directory
                or another junction.
        """
        components = tuple(c for c in path.split("/") if c)
        holder, directory = self.pseudo, self.pseudo.root
        for comp in components[:-1]:
            holder, inode = self.lookup(holder, directory, comp.encode())
            if not inode.is_dir():
                raise ValueError(f"{comp} in {path} is not a directory")
            directory = inode
        name = components[-1].encode()
        entry = directory.entries.get(name)
        if entry is None:
            junction = holder.new_inode(nfs_ftype4.NF4DIR, 0o755, 0, 0)
            holder.add_entry(directory, name, junction)
        else:
            junction = holder.get(entry.fileid)
            if not junction.is_dir() or junction.junction is not None:
                raise ValueError(f"{path} cannot become a junction")
        junction.junction = fs.name
        fs.aliases.append((components, holder))

    # -- resolving ----------------------------------------------------------------------
    def filesystem(self, name: str) -> FileSystem:
        fs = self.filesystems.get(name)
        if fs is None:
            raise KeyError(f"no file system named {name!r}")
        return fs

    def by_index(self, index: int) -> FileSystem | None:
        return self._by_index.get(index)

    def resolve(self, fh: bytes) -> tuple[FileSystem, Inode]:
        """The file system and inode of a filehandle, whatever its epoch (expiry is
        the serving instance's decision: :meth:`resolve_handle`).

        Raises:
            FsError: NFS4ERR_BADHANDLE (not ours, unknown file system), NFS4ERR_STALE
                (the object was removed, or its fileid reused with a new generation).
        """
        fs, inode, _ = self.resolve_handle(fh)
        return fs, inode

    def resolve_handle(self, fh: bytes) -> tuple[FileSystem, Inode, FhFields]:
        """As :meth:`resolve`, also giving the handle's fields (for
        :meth:`FileSystem.fh_expiry`).  A removed object is NFS4ERR_STALE even if its
        handle had expired too (RFC 8881 section 4.2.3)."""
        handle = parse_fh(fh)
        fs = self._by_index.get(handle.fs_index)
        if fs is None:
            raise FsError(
                nfsstat4.NFS4ERR_BADHANDLE, f"no file system with index {handle.fs_index}"
            )
        inode = fs.get(handle.fileid)
        if inode.generation != handle.generation:
            raise FsError(nfsstat4.NFS4ERR_STALE, "generation changed")
        return fs, inode, handle

    def root_fh(self) -> bytes:
        return self.pseudo.fh(self.pseudo.root)

    def cross(self, fs: FileSystem, inode: Inode) -> tuple[FileSystem, Inode]:
        """Follow a junction downwards: ``inode`` itself, or the root of what is mounted on it."""
        if inode.junction is not None:
            inner = self.filesystems[inode.junction]
            return inner, inner.root
        return fs, inode

    def lookup(self, fs: FileSystem, directory: Inode, name: bytes) -> tuple[FileSystem, Inode]:
        """LOOKUP semantics: the named object, crossing into a mounted file system."""
        return self.cross(fs, fs.lookup_name(directory, name))

    def lookupp(self, fs: FileSystem, directory: Inode) -> tuple[FileSystem, Inode]:
        """LOOKUPP semantics: the parent directory, crossing up out of a file system root.

        Raises:
            FsError: NFS4ERR_NOENT at the root of the namespace.
        """
        if directory.fileid == fs.root.fileid:
            if fs.mounted_on is None:
                raise FsError(nfsstat4.NFS4ERR_NOENT, "the root of the namespace has no parent")
            outer, junction_id = fs.mounted_on
            junction = outer.get(junction_id)
            return outer, outer.get(junction.parent)
        return fs, fs.get(directory.parent)

    def mounted_on_fileid(self, fs: FileSystem, inode: Inode) -> int:
        """Attribute mounted_on_fileid (RFC 8881 section 5.8.2.19): for a file system
        root, the fileid of the directory it is mounted on."""
        if inode.fileid == fs.root.fileid and fs.mounted_on is not None:
            return fs.mounted_on[1]
        return inode.fileid

    def path_of(self, fs: FileSystem) -> list[str]:
        """The pathname4 of a file system's root in the namespace (``fs_root``)."""
        return list(fs.path)

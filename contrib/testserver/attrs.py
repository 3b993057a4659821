"""File attributes on the server side: GETATTR values, SETATTR, VERIFY, ACCESS.

RFC 8881 section 5 defines the attributes; this module computes them for an inode of
the model and applies the settable ones.  Encoding reuses ``session.xdr.fattr``
(``NFSAttrs`` and ``encode_fattr4``), so the server speaks exactly the client's codecs.

Absent file systems (RFC 8881 section 11.4, "Getting Attributes for an Absent File
System"): only fs_locations, fs_locations_info, fs_status, fsid, mounted_on_fileid and
rdattr_error are available; other requested attributes are simply not returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol

from contrib.testserver.model import (
    MAXFILESIZE,
    MAXLINK,
    MAXNAME,
    NOBODY,
    FileSystem,
    FsError,
    Inode,
    Model,
    now_nfstime,
)
from contrib.testserver.security import IdMap
from session.errors import XdrError
from session.xdr.const import (
    ACCESS4_DELETE,
    ACCESS4_EXECUTE,
    ACCESS4_EXTEND,
    ACCESS4_LOOKUP,
    ACCESS4_MODIFY,
    ACCESS4_READ,
    FATTR4,
    FH4_PERSISTENT,
    FSCHARSET_CAP4_ALLOWS_ONLY_UTF8,
    nfs_ftype4,
    nfsstat4,
    time_how4,
)
from session.xdr.fattr import (
    ATTR_CODECS,
    NFSAttrs,
    bitmap4_from,
    bitmap4_to_set,
    decode_fattr4,
    encode_fattr4,
)
from session.xdr.nfs4 import (
    fattr4,
    fs4_status,
    fs_locations4,
    fs_locations_info4,
    nfstime4,
    specdata4,
)

A = FATTR4

SUPPORTED_ATTRS: Final[frozenset[int]] = frozenset(
    {
        A.SUPPORTED_ATTRS,
        A.TYPE,
        A.FH_EXPIRE_TYPE,
        A.CHANGE,
        A.SIZE,
        A.LINK_SUPPORT,
        A.SYMLINK_SUPPORT,
        A.NAMED_ATTR,
        A.FSID,
        A.UNIQUE_HANDLES,
        A.LEASE_TIME,
        A.RDATTR_ERROR,
        A.CANSETTIME,
        A.CASE_INSENSITIVE,
        A.CASE_PRESERVING,
        A.CHOWN_RESTRICTED,
        A.FILEHANDLE,
        A.FILEID,
        A.FILES_AVAIL,
        A.FILES_FREE,
        A.FILES_TOTAL,
        A.FS_LOCATIONS,
        A.HOMOGENEOUS,
        A.MAXFILESIZE,
        A.MAXLINK,
        A.MAXNAME,
        A.MAXREAD,
        A.MAXWRITE,
        A.MODE,
        A.NO_TRUNC,
        A.NUMLINKS,
        A.OWNER,
        A.OWNER_GROUP,
        A.RAWDEV,
        A.SPACE_AVAIL,
        A.SPACE_FREE,
        A.SPACE_TOTAL,
        A.SPACE_USED,
        A.TIME_ACCESS,
        A.TIME_ACCESS_SET,
        A.TIME_CREATE,
        A.TIME_DELTA,
        A.TIME_METADATA,
        A.TIME_MODIFY,
        A.TIME_MODIFY_SET,
        A.MOUNTED_ON_FILEID,
        A.FS_STATUS,
        A.FS_LOCATIONS_INFO,
        A.SUPPATTR_EXCLCREAT,
        A.FS_CHARSET_CAP,
    }
)
"""Attributes this server supports (attribute supported_attrs, RFC 8881 section 5.8.1.1)."""

SETTABLE_ATTRS: Final[frozenset[int]] = frozenset(
    {A.SIZE, A.MODE, A.OWNER, A.OWNER_GROUP, A.TIME_ACCESS_SET, A.TIME_MODIFY_SET}
)
"""What SETATTR and the create attributes may set (RFC 8881 section 5.6/5.7 "R/W")."""

WRITE_ONLY_ATTRS: Final[frozenset[int]] = frozenset({A.TIME_ACCESS_SET, A.TIME_MODIFY_SET})
"""GETATTR of these is NFS4ERR_INVAL (RFC 8881 section 5.5)."""

LOCATION_ATTRS: Final[frozenset[int]] = frozenset(
    {A.FS_LOCATIONS, A.FS_LOCATIONS_INFO, A.FS_STATUS}
)
"""Asking for one of these makes GETATTR work on an absent file system (RFC 8881
section 11.4.1) and READDIR report an absent entry's attributes (11.4.2)."""

ABSENT_FS_ATTRS: Final[frozenset[int]] = frozenset(
    {A.FS_LOCATIONS, A.FS_LOCATIONS_INFO, A.FS_STATUS, A.FSID, A.MOUNTED_ON_FILEID, A.RDATTR_ERROR}
)
"""What an absent file system offers (RFC 8881 section 11.4.1)."""


class AttrProvider(Protocol):
    """What attribute values need from the instance answering."""

    @property
    def model(self) -> Model: ...

    @property
    def lease_time(self) -> int: ...

    @property
    def max_io(self) -> int: ...

    def fs_locations(self, fs: FileSystem) -> fs_locations4: ...

    def fs_locations_info(self, fs: FileSystem) -> fs_locations_info4: ...

    def fs_status(self, fs: FileSystem) -> fs4_status: ...


def owner_string(uid: int, idmap: IdMap | None = None) -> str:
    """The owner attribute for a uid: ``name@domain`` for a user the id map knows by
    name (a Kerberos principal mapped to it, or configured), else the number (RFC 8881
    section 5.9 allows numeric strings with AUTH_SYS)."""
    return idmap.owner(uid) if idmap is not None else str(uid)


def parse_owner(text: str, idmap: IdMap | None = None) -> int:
    """A uid or gid from an owner / owner_group string ("1000", "1000@domain", "root",
    "alice@domain" for a user the id map knows).

    Raises:
        FsError: NFS4ERR_BADOWNER for a name this server does not know.
    """
    name = text.split("@", 1)[0]
    if name.isdigit():
        return int(name)
    if name == "root":
        return 0
    if name in ("nobody", "nogroup"):
        return NOBODY
    known = idmap.uid_of(name) if idmap is not None else None
    if known is not None:
        return known
    raise FsError(nfsstat4.NFS4ERR_BADOWNER, repr(text))


def requested(words: Iterable[int]) -> set[int]:
    return bitmap4_to_set(list(words))


def build(
    src: AttrProvider,
    fs: FileSystem,
    inode: Inode,
    want: set[int],
    *,
    absent: bool = False,
    rdattr_error: nfsstat4 = nfsstat4.NFS4_OK,
    size: int | None = None,
) -> fattr4:
    """The fattr4 answering a request for ``want`` on ``inode`` of ``fs``.

    With ``absent`` the file system is not present on the answering instance: only
    ``ABSENT_FS_ATTRS`` are given (RFC 8881 section 11.4.1).  ``size`` (bytes), when
    given, is reported instead of the inode's: the size a write delegation's holder
    answered CB_GETATTR with (section 10.4.3).
    """
    a = NFSAttrs()
    want = want & SUPPORTED_ATTRS
    if absent:
        want = want & ABSENT_FS_ATTRS
    model = src.model

    def has(attr: int) -> bool:
        return attr in want

    if has(A.SUPPORTED_ATTRS):
        a.supported_attrs = bitmap4_from(SUPPORTED_ATTRS)
    if has(A.TYPE):
        a.type = inode.type
    if has(A.FH_EXPIRE_TYPE):
        # Per file system (RFC 8881 sections 4.2.3 and 5.8.1.3); the pseudo-fs's is
        # FH4_PERSISTENT: its root never expires.
        a.fh_expire_type = fs.fh_expire_type if fs.index != 0 else FH4_PERSISTENT
    if has(A.CHANGE):
        a.change = inode.change
    if has(A.SIZE):
        a.size = inode.size if size is None else size
    if has(A.LINK_SUPPORT):
        a.link_support = True
    if has(A.SYMLINK_SUPPORT):
        a.symlink_support = True
    if has(A.NAMED_ATTR):
        a.named_attr = False
    if has(A.FSID):
        a.fsid = fs.fsid
    if has(A.UNIQUE_HANDLES):
        a.unique_handles = True
    if has(A.LEASE_TIME):
        a.lease_time = src.lease_time
    if has(A.RDATTR_ERROR):
        a.rdattr_error = rdattr_error
    if has(A.CANSETTIME):
        a.cansettime = True
    if has(A.CASE_INSENSITIVE):
        a.case_insensitive = False
    if has(A.CASE_PRESERVING):
        a.case_preserving = True
    if has(A.CHOWN_RESTRICTED):
        a.chown_restricted = True
    if has(A.FILEHANDLE):
        a.filehandle = fs.fh(inode)
    if has(A.FILEID):
        a.fileid = inode.fileid
    if want & {A.FILES_AVAIL, A.FILES_FREE, A.FILES_TOTAL}:
        free = max(0, fs.files_total - len(fs.inodes))
        a.files_avail = free if has(A.FILES_AVAIL) else None
        a.files_free = free if has(A.FILES_FREE) else None
        a.files_total = fs.files_total if has(A.FILES_TOTAL) else None
    if has(A.FS_LOCATIONS):
        a.fs_locations = src.fs_locations(fs)
    if has(A.HOMOGENEOUS):
        a.homogeneous = True
    if has(A.MAXFILESIZE):
        a.maxfilesize = MAXFILESIZE
    if has(A.MAXLINK):
        a.maxlink = MAXLINK
    if has(A.MAXNAME):
        a.maxname = MAXNAME
    if has(A.MAXREAD):
        a.maxread = src.max_io
    if has(A.MAXWRITE):
        a.maxwrite = src.max_io
    if has(A.MODE):
        a.mode = inode.mode
    if has(A.NO_TRUNC):
        a.no_trunc = True
    if has(A.NUMLINKS):
        a.numlinks = inode.nlink
    if has(A.OWNER):
        a.owner = owner_string(inode.uid, model.idmap)
    if has(A.OWNER_GROUP):
        a.owner_group = model.idmap.group(inode.gid)
    if has(A.RAWDEV):
        a.rawdev = specdata4(*inode.rdev)
    if want & {A.SPACE_AVAIL, A.SPACE_FREE, A.SPACE_TOTAL}:
        free = max(0, fs.space_total - fs.space_used())
        a.space_avail = free if has(A.SPACE_AVAIL) else None
        a.space_free = free if has(A.SPACE_FREE) else None
        a.space_total = fs.space_total if has(A.SPACE_TOTAL) else None
    if has(A.SPACE_USED):
        a.space_used = inode.space_used
    if has(A.TIME_ACCESS):
        a.time_access = inode.atime
    if has(A.TIME_CREATE):
        a.time_create = inode.crtime
    if has(A.TIME_DELTA):
        a.time_delta = nfstime4(0, 1)
    if has(A.TIME_METADATA):
        a.time_metadata = inode.ctime
    if has(A.TIME_MODIFY):
        a.time_modify = inode.mtime
    if has(A.MOUNTED_ON_FILEID):
        a.mounted_on_fileid = model.mounted_on_fileid(fs, inode)
    if has(A.FS_STATUS):
        a.fs_status = src.fs_status(fs)
    if has(A.FS_LOCATIONS_INFO):
        a.fs_locations_info = src.fs_locations_info(fs)
    if has(A.SUPPATTR_EXCLCREAT):
        a.suppattr_exclcreat = bitmap4_from(SETTABLE_ATTRS)
    if has(A.FS_CHARSET_CAP):
        a.fs_charset_cap = FSCHARSET_CAP4_ALLOWS_ONLY_UTF8
    return encode_fattr4(a, only=want)


def decode_for_set(f: fattr4) -> tuple[NFSAttrs, set[int]]:
    """Decode SETATTR / create attributes and check they may be set.

    Returns:
        the values and the set of attribute numbers present.

    Raises:
        FsError: NFS4ERR_ATTRNOTSUPP for an attribute this server does not support,
            NFS4ERR_INVAL for a supported read-only one (RFC 8881 section 18.30.4),
            NFS4ERR_BADXDR for values that do not decode.
    """
    bits = bitmap4_to_set(f.attrmask)
    for bit in bits:
        if bit not in SUPPORTED_ATTRS or bit not in ATTR_CODECS:
            raise FsError(nfsstat4.NFS4ERR_ATTRNOTSUPP, f"attribute {bit}")
        if bit not in SETTABLE_ATTRS:
            raise FsError(nfsstat4.NFS4ERR_INVAL, f"attribute {FATTR4(bit).name} is read-only")
    try:
        attrs = decode_fattr4(f)
    except XdrError as exc:
        raise FsError(nfsstat4.NFS4ERR_BADXDR, str(exc)) from None
    return attrs, bits


def decode_for_verify(f: fattr4) -> set[int]:
    """Check VERIFY / NVERIFY attributes (RFC 8881 sections 18.31.3, 18.15.3).

    Raises:
        FsError: NFS4ERR_ATTRNOTSUPP (unsupported), NFS4ERR_INVAL (rdattr_error or a
            write-only attribute), NFS4ERR_BADXDR.
    """
    bits = bitmap4_to_set(f.attrmask)
    for bit in bits:
        if bit not in SUPPORTED_ATTRS:
            raise FsError(nfsstat4.NFS4ERR_ATTRNOTSUPP, f"attribute {bit}")
        if bit == A.RDATTR_ERROR or bit in WRITE_ONLY_ATTRS:
            raise FsError(nfsstat4.NFS4ERR_INVAL, f"attribute {FATTR4(bit).name} in VERIFY")
    try:
        decode_fattr4(f)
    except XdrError as exc:
        raise FsError(nfsstat4.NFS4ERR_BADXDR, str(exc)) from None
    return bits


def apply_simple(fs: FileSystem, inode: Inode, attrs: NFSAttrs, idmap: IdMap | None = None) -> None:
    """Apply mode, owner, owner_group and the times (not size: the caller handles it);
    owner names are mapped by ``idmap``.

    Raises:
        FsError: NFS4ERR_BADOWNER, NFS4ERR_INVAL (a time with nseconds >= 10**9).
    """
    changed = False
    if attrs.mode is not None:
        inode.mode = attrs.mode & 0o7777
        changed = True
    if attrs.owner is not None:
        inode.uid = parse_owner(attrs.owner, idmap)
        changed = True
    if attrs.owner_group is not None:
        inode.gid = parse_owner(attrs.owner_group, idmap)
        changed = True
    for setting, field_name in (
        (attrs.time_access_set, "atime"),
        (attrs.time_modify_set, "mtime"),
    ):
        if setting is None:
            continue
        if setting.set_it == time_how4.SET_TO_CLIENT_TIME4 and setting.time is not None:
            if setting.time.nseconds >= 1_000_000_000:
                raise FsError(nfsstat4.NFS4ERR_INVAL, "nseconds out of range")
            value = setting.time
        else:
            value = now_nfstime()
        setattr(inode, field_name, value)
        changed = True
    if changed:
        fs.touch(inode)


# -- access checks, RFC 8881 section 18.1 ---------------------------------------------
def supported_access(inode: Inode) -> int:
    """The ACCESS4 bits meaningful for the object's type."""
    if inode.type == nfs_ftype4.NF4DIR:
        return ACCESS4_READ | ACCESS4_LOOKUP | ACCESS4_MODIFY | ACCESS4_EXTEND | ACCESS4_DELETE
    return ACCESS4_READ | ACCESS4_MODIFY | ACCESS4_EXTEND | ACCESS4_EXECUTE


def mode_permits(inode: Inode, uid: int, gids: Iterable[int], r: bool, w: bool, x: bool) -> bool:
    """POSIX permission check of the mode bits; uid 0 may do anything but execute a file
    with no execute bit at all."""
    if uid == 0:
        return not x or inode.is_dir() or bool(inode.mode & 0o111)
    if inode.uid == uid:
        shift = 6
    elif inode.gid in set(gids):
        shift = 3
    else:
        shift = 0
    bits = (inode.mode >> shift) & 7
    return (not r or bool(bits & 4)) and (not w or bool(bits & 2)) and (not x or bool(bits & 1))


def granted_access(
    fs: FileSystem, inode: Inode, uid: int, gids: Iterable[int], wanted: int
) -> tuple[int, int]:
    """``(supported, access)`` for ACCESS: the bits of ``wanted`` the caller is granted."""
    gid_list = list(gids)
    supported = supported_access(inode) & wanted
    granted = 0
    writable = not fs.read_only
    if supported & ACCESS4_READ and mode_permits(inode, uid, gid_list, True, False, False):
        granted |= ACCESS4_READ
    if supported & ACCESS4_LOOKUP and mode_permits(inode, uid, gid_list, False, False, True):
        granted |= ACCESS4_LOOKUP
    can_write = writable and mode_permits(inode, uid, gid_list, False, True, False)
    if inode.is_dir():
        can_write = can_write and mode_permits(inode, uid, gid_list, False, False, True)
    for bit in (ACCESS4_MODIFY, ACCESS4_EXTEND, ACCESS4_DELETE):
        if supported & bit and can_write:
            granted |= bit
    if supported & ACCESS4_EXECUTE and mode_permits(inode, uid, gid_list, False, False, True):
        granted |= ACCESS4_EXECUTE
    return supported, granted

"""NFSv4 status codes as exceptions, and their errno (RFC 8881 section 15).

``NFS4Error`` carries the failing ``nfsstat4``, the index of the operation that failed
in its COMPOUND (an index, 0-based) and that operation's name.  A subclass exists for
each status that the client treats specially; ``nfs4_error()`` builds the right one,
falling back to ``NFS4Error`` for the rest (HOUSE_STYLE.md: dnspython's map).
"""

from __future__ import annotations

import errno
from typing import Any

from session.errors import NFSClientError
from session.xdr.const import nfsstat4

S = nfsstat4

#: nfsstat4 -> errno at the FUSE edge.  Unknown statuses map to EIO.
ERRNO_BY_STATUS: dict[int, int] = {
    S.NFS4ERR_PERM: errno.EPERM,
    S.NFS4ERR_NOENT: errno.ENOENT,
    S.NFS4ERR_IO: errno.EIO,
    S.NFS4ERR_NXIO: errno.ENXIO,
    S.NFS4ERR_ACCESS: errno.EACCES,
    S.NFS4ERR_EXIST: errno.EEXIST,
    S.NFS4ERR_XDEV: errno.EXDEV,
    S.NFS4ERR_NOTDIR: errno.ENOTDIR,
    S.NFS4ERR_ISDIR: errno.EISDIR,
    S.NFS4ERR_INVAL: errno.EINVAL,
    S.NFS4ERR_FBIG: errno.EFBIG,
    S.NFS4ERR_NOSPC: errno.ENOSPC,
    S.NFS4ERR_ROFS: errno.EROFS,
    S.NFS4ERR_MLINK: errno.EMLINK,
    S.NFS4ERR_NAMETOOLONG: errno.ENAMETOOLONG,
    S.NFS4ERR_NOTEMPTY: errno.ENOTEMPTY,
    S.NFS4ERR_DQUOT: errno.EDQUOT,
    S.NFS4ERR_STALE: errno.ESTALE,
    S.NFS4ERR_BADHANDLE: errno.ESTALE,
    S.NFS4ERR_FHEXPIRED: errno.ESTALE,
    S.NFS4ERR_NOTSUPP: errno.EOPNOTSUPP,
    S.NFS4ERR_TOOSMALL: errno.EINVAL,
    S.NFS4ERR_SERVERFAULT: errno.EIO,
    S.NFS4ERR_BADTYPE: errno.EINVAL,
    S.NFS4ERR_DELAY: errno.EAGAIN,
    S.NFS4ERR_SYMLINK: errno.ELOOP,
    S.NFS4ERR_WRONG_TYPE: errno.EINVAL,
    S.NFS4ERR_BADNAME: errno.EINVAL,
    S.NFS4ERR_BADCHAR: errno.EINVAL,
    S.NFS4ERR_LOCKED: errno.EAGAIN,
    S.NFS4ERR_DENIED: errno.EAGAIN,
    S.NFS4ERR_SHARE_DENIED: errno.EACCES,
    S.NFS4ERR_OPENMODE: errno.EBADF,
    S.NFS4ERR_FILE_OPEN: errno.EBUSY,
    S.NFS4ERR_ATTRNOTSUPP: errno.EOPNOTSUPP,
    S.NFS4ERR_DEADLOCK: errno.EDEADLK,
    S.NFS4ERR_WRONGSEC: errno.EPERM,
    S.NFS4ERR_MOVED: errno.EIO,
    S.NFS4ERR_GRACE: errno.EAGAIN,
    S.NFS4ERR_NOFILEHANDLE: errno.EBADF,
}


def status_errno(status: int) -> int:
    """The errno for an nfsstat4 (EIO for anything not in ``ERRNO_BY_STATUS``)."""
    return ERRNO_BY_STATUS.get(status, errno.EIO)


class NFS4Error(NFSClientError):
    """A COMPOUND failed with ``status`` at operation ``op_index`` (``op_name``).

    Attributes:
        status: the nfsstat4 (an ``OpenEnum``; unknown codes kept).
        op_index: 0-based index of the failing operation in the COMPOUND, -1 if unknown.
        op_name: e.g. ``"PUTFH"``; ``""`` if unknown.
        errno: what the FUSE edge returns.
    """

    def __init__(self, status: int, op_index: int = -1, op_name: str = "") -> None:
        self.status = nfsstat4(status)
        self.op_index = op_index
        self.op_name = op_name
        self.errno = status_errno(status)
        #: The COMPOUND's results up to and including the failing one (set by the session).
        self.results: list[Any] = []
        where = f" at op {op_index} ({op_name})" if op_name else ""
        super().__init__(f"{self.status.name}{where}")


class NFS4ErrMoved(NFS4Error):
    """NFS4ERR_MOVED: the file system is no longer here (RFC 8881 sections 11.3, 11.13)."""


class NFS4ErrSessionLost(NFS4Error):
    """BADSESSION / DEADSESSION / CONN_NOT_BOUND_TO_SESSION: the session must be rebuilt."""


class NFS4ErrClientLost(NFS4Error):
    """STALE_CLIENTID / EXPIRED: the client ID is gone (reboot or lease expiry recovery)."""


class NFS4ErrStateLost(NFS4Error):
    """BAD_STATEID / OLD_STATEID / EXPIRED on a stateid / ADMIN_REVOKED / DELEG_REVOKED."""


class NFS4ErrRetryable(NFS4Error):
    """DELAY / GRACE: retried by the session with bounded backoff before surfacing."""


_SUBCLASS: dict[int, type[NFS4Error]] = {
    S.NFS4ERR_MOVED: NFS4ErrMoved,
    S.NFS4ERR_BADSESSION: NFS4ErrSessionLost,
    S.NFS4ERR_DEADSESSION: NFS4ErrSessionLost,
    S.NFS4ERR_CONN_NOT_BOUND_TO_SESSION: NFS4ErrSessionLost,
    S.NFS4ERR_STALE_CLIENTID: NFS4ErrClientLost,
    S.NFS4ERR_EXPIRED: NFS4ErrClientLost,
    S.NFS4ERR_BAD_STATEID: NFS4ErrStateLost,
    S.NFS4ERR_OLD_STATEID: NFS4ErrStateLost,
    S.NFS4ERR_ADMIN_REVOKED: NFS4ErrStateLost,
    S.NFS4ERR_DELEG_REVOKED: NFS4ErrStateLost,
    S.NFS4ERR_DELAY: NFS4ErrRetryable,
    S.NFS4ERR_GRACE: NFS4ErrRetryable,
}


def nfs4_error(status: int, op_index: int = -1, op_name: str = "") -> NFS4Error:
    """Build the most specific ``NFS4Error`` subclass for ``status``."""
    return _SUBCLASS.get(status, NFS4Error)(status, op_index, op_name)

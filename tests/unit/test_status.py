"""nfsstat4 -> exception and errno (RFC 8881 section 15; HOUSE_STYLE.md: dnspython's map)."""

from __future__ import annotations

import errno

import pytest

from session.errors import NFSClientError
from session.status import (
    ERRNO_BY_STATUS,
    NFS4ErrClientLost,
    NFS4ErrMoved,
    NFS4Error,
    NFS4ErrRetryable,
    NFS4ErrSessionLost,
    NFS4ErrStateLost,
    nfs4_error,
    status_errno,
)
from session.xdr.const import nfsstat4

S = nfsstat4


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (S.NFS4ERR_MOVED, NFS4ErrMoved),
        (S.NFS4ERR_BADSESSION, NFS4ErrSessionLost),
        (S.NFS4ERR_DEADSESSION, NFS4ErrSessionLost),
        (S.NFS4ERR_CONN_NOT_BOUND_TO_SESSION, NFS4ErrSessionLost),
        (S.NFS4ERR_STALE_CLIENTID, NFS4ErrClientLost),
        (S.NFS4ERR_EXPIRED, NFS4ErrClientLost),
        (S.NFS4ERR_BAD_STATEID, NFS4ErrStateLost),
        (S.NFS4ERR_OLD_STATEID, NFS4ErrStateLost),
        (S.NFS4ERR_ADMIN_REVOKED, NFS4ErrStateLost),
        (S.NFS4ERR_DELEG_REVOKED, NFS4ErrStateLost),
        (S.NFS4ERR_DELAY, NFS4ErrRetryable),
        (S.NFS4ERR_GRACE, NFS4ErrRetryable),
    ],
)
def test_nfs4_error_picks_the_subclass(status: nfsstat4, cls: type[NFS4Error]) -> None:
    err = nfs4_error(status, 2, "PUTFH")
    assert type(err) is cls
    assert isinstance(err, NFS4Error) and isinstance(err, NFSClientError)
    assert err.status == status
    assert (err.op_index, err.op_name) == (2, "PUTFH")


@pytest.mark.parametrize(
    "status", [S.NFS4ERR_NOENT, S.NFS4ERR_EXIST, S.NFS4ERR_IO, S.NFS4ERR_SERVERFAULT]
)
def test_statuses_without_special_handling_use_the_base_class(status: nfsstat4) -> None:
    assert type(nfs4_error(status)) is NFS4Error


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (S.NFS4ERR_PERM, errno.EPERM),
        (S.NFS4ERR_NOENT, errno.ENOENT),
        (S.NFS4ERR_IO, errno.EIO),
        (S.NFS4ERR_ACCESS, errno.EACCES),
        (S.NFS4ERR_EXIST, errno.EEXIST),
        (S.NFS4ERR_XDEV, errno.EXDEV),
        (S.NFS4ERR_NOTDIR, errno.ENOTDIR),
        (S.NFS4ERR_ISDIR, errno.EISDIR),
        (S.NFS4ERR_INVAL, errno.EINVAL),
        (S.NFS4ERR_FBIG, errno.EFBIG),
        (S.NFS4ERR_NOSPC, errno.ENOSPC),
        (S.NFS4ERR_ROFS, errno.EROFS),
        (S.NFS4ERR_MLINK, errno.EMLINK),
        (S.NFS4ERR_NAMETOOLONG, errno.ENAMETOOLONG),
        (S.NFS4ERR_NOTEMPTY, errno.ENOTEMPTY),
        (S.NFS4ERR_DQUOT, errno.EDQUOT),
        (S.NFS4ERR_STALE, errno.ESTALE),
        (S.NFS4ERR_BADHANDLE, errno.ESTALE),
        (S.NFS4ERR_FHEXPIRED, errno.ESTALE),
        (S.NFS4ERR_NOTSUPP, errno.EOPNOTSUPP),
        (S.NFS4ERR_DELAY, errno.EAGAIN),
        (S.NFS4ERR_GRACE, errno.EAGAIN),
        (S.NFS4ERR_DENIED, errno.EAGAIN),
        (S.NFS4ERR_LOCKED, errno.EAGAIN),
        (S.NFS4ERR_DEADLOCK, errno.EDEADLK),
        (S.NFS4ERR_SYMLINK, errno.ELOOP),
        (S.NFS4ERR_SHARE_DENIED, errno.EACCES),
        (S.NFS4ERR_OPENMODE, errno.EBADF),
        (S.NFS4ERR_FILE_OPEN, errno.EBUSY),
        (S.NFS4ERR_MOVED, errno.EIO),
        (S.NFS4ERR_SERVERFAULT, errno.EIO),
    ],
)
def test_errno_of_the_main_statuses(status: nfsstat4, expected: int) -> None:
    assert status_errno(status) == expected
    assert nfs4_error(status).errno == expected


def test_every_mapped_errno_is_a_real_errno() -> None:
    assert all(code in errno.errorcode for code in ERRNO_BY_STATUS.values())


def test_statuses_without_an_errno_entry_give_eio() -> None:
    assert S.NFS4ERR_STALE_CLIENTID not in ERRNO_BY_STATUS
    assert nfs4_error(S.NFS4ERR_STALE_CLIENTID).errno == errno.EIO
    assert nfs4_error(S.NFS4ERR_BADSESSION).errno == errno.EIO


def test_unknown_status_is_eio_and_keeps_its_number() -> None:
    err = nfs4_error(987654, 0, "FROB")
    assert type(err) is NFS4Error
    assert err.errno == errno.EIO
    assert int(err.status) == 987654
    assert isinstance(err.status, nfsstat4)
    assert "987654" in str(err)
    assert "FROB" in str(err)


def test_message_names_status_and_failing_op() -> None:
    err = nfs4_error(S.NFS4ERR_NOENT, 3, "LOOKUP")
    assert str(err) == "NFS4ERR_NOENT at op 3 (LOOKUP)"
    assert str(nfs4_error(S.NFS4ERR_NOENT)) == "NFS4ERR_NOENT"
    assert err.results == []


def test_nfs4_error_is_raisable_and_caught_as_the_base() -> None:
    with pytest.raises(NFS4Error) as info:
        raise nfs4_error(S.NFS4ERR_GRACE, 1, "OPEN")
    assert isinstance(info.value, NFS4ErrRetryable)

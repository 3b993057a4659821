"""The FUSE lock edge without a mount: struct flock <-> NFS ranges, owners, local_lock."""

from __future__ import annotations

import fcntl

import pyfuse3

from fusenfs.fs import NFSOperations
from fusenfs.locking import (
    LOCAL_LOCK_KINDS,
    OFF_T_MAX,
    denied_to_flock,
    flock_owner,
    flock_range,
    operations_class,
    posix_owner,
)
from session.locks import NFS4_UINT64_MAX
from session.xdr.const import nfs_lock_type4


def test_flock_ranges_to_nfs() -> None:
    assert flock_range(pyfuse3.FileLock(fcntl.F_WRLCK, 10, 0, 0)) == (10, NFS4_UINT64_MAX)
    assert flock_range(pyfuse3.FileLock(fcntl.F_RDLCK, 10, 5, 0)) == (10, 5)


def test_conflicts_to_struct_flock() -> None:
    whole = denied_to_flock(0, NFS4_UINT64_MAX, nfs_lock_type4.WRITE_LT, 42)
    assert (whole.l_type, whole.l_start, whole.l_len, whole.l_pid) == (fcntl.F_WRLCK, 0, 0, 42)
    part = denied_to_flock(100, 50, nfs_lock_type4.READ_LT, 0)
    assert (part.l_type, part.l_start, part.l_len) == (fcntl.F_RDLCK, 100, 50)
    huge = denied_to_flock(1 << 63, 10, nfs_lock_type4.WRITEW_LT, 0)
    assert huge.l_start == OFF_T_MAX and huge.l_len == 0 and huge.l_type == fcntl.F_WRLCK


def test_posix_and_flock_owners_are_distinct() -> None:
    assert posix_owner(0x1234) != flock_owner(0x1234)


def test_local_lock_removes_the_handlers() -> None:
    assert operations_class(NFSOperations, LOCAL_LOCK_KINDS["none"]) is NFSOperations
    base = vars(pyfuse3.Operations)
    both = vars(operations_class(NFSOperations, LOCAL_LOCK_KINDS["all"]))
    assert all(both[name] is base[name] for name in ("getlk", "setlk", "flock"))
    posix = vars(operations_class(NFSOperations, LOCAL_LOCK_KINDS["posix"]))
    assert posix["setlk"] is base["setlk"] and posix["getlk"] is base["getlk"]
    assert "flock" not in posix  # inherited from NFSOperations: stays an NFS lock

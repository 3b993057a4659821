"""The installed pyfuse3 carries fusenfs's patches (contrib/pyfuse3/): the API they add.

No mount here (tests/fuse/test_pyfuse3_patch.py exercises the behaviour on a real one):
the lock handlers and FileLock of 0001, Operations.enable_interrupts of 0002, and the
SetattrFields "now" flags of 0003.  A failure here means contrib/setup.sh did not install
the patched build (for example, pip replaced it with the plain release).
"""

from __future__ import annotations

import copy
import errno
import fcntl

import pyfuse3
import pytest
from pyfuse3 import FileLock, FUSEError, Operations, SetattrFields


def test_filelock_defaults_describe_no_lock() -> None:
    lock = FileLock()
    assert (lock.l_type, lock.l_start, lock.l_len, lock.l_pid) == (fcntl.F_UNLCK, 0, 0, 0)


def test_filelock_fields_are_struct_flock_fields() -> None:
    lock = FileLock(fcntl.F_WRLCK, 10, 0, 1234)
    assert (lock.l_type, lock.l_start, lock.l_len, lock.l_pid) == (fcntl.F_WRLCK, 10, 0, 1234)
    lock = FileLock(l_type=fcntl.F_RDLCK, l_start=2**40, l_len=7)
    assert (lock.l_type, lock.l_start, lock.l_len, lock.l_pid) == (fcntl.F_RDLCK, 2**40, 7, 0)
    lock.l_type = fcntl.F_UNLCK
    lock.l_len = 0
    assert (lock.l_type, lock.l_len) == (fcntl.F_UNLCK, 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"l_type": 99}, "l_type"),
        ({"l_type": fcntl.F_RDLCK, "l_start": -1}, "l_start"),
        ({"l_type": fcntl.F_RDLCK, "l_len": -5}, "l_len"),
    ],
)
def test_filelock_rejects_bad_values_naming_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FileLock(**kwargs)


def test_filelock_copies() -> None:
    # (Like pyfuse3's other data classes: copy works, pickle cannot find pyfuse3.__init__.)
    lock = FileLock(fcntl.F_WRLCK, 1, 2, 3)
    clone = copy.copy(lock)
    assert clone is not lock
    assert (clone.l_type, clone.l_start, clone.l_len, clone.l_pid) == (fcntl.F_WRLCK, 1, 2, 3)


async def test_lock_handlers_default_to_enosys() -> None:
    ops = Operations()
    ctx = pyfuse3.RequestContext()
    with pytest.raises(FUSEError) as getlk:
        await ops.getlk(1, 2, FileLock(), ctx)
    with pytest.raises(FUSEError) as setlk:
        await ops.setlk(1, 2, FileLock(fcntl.F_WRLCK), False, ctx)
    with pytest.raises(FUSEError) as flock:
        await ops.flock(1, 2, fcntl.LOCK_EX | fcntl.LOCK_NB, ctx)
    assert [e.value.errno for e in (getlk, setlk, flock)] == [errno.ENOSYS] * 3


def test_interrupts_are_opt_in() -> None:
    assert Operations.enable_interrupts is False

    class Interruptible(Operations):
        enable_interrupts = True

    assert Interruptible().enable_interrupts is True


def test_zero_copy_writes_are_opt_in() -> None:
    assert Operations.enable_zero_copy_writes is False


def test_setattr_fields_have_the_now_flags() -> None:
    fields = SetattrFields()
    assert fields.update_atime_now is False
    assert fields.update_mtime_now is False
    assert fields.update_atime is False and fields.update_mtime is False

"""Open and lock state without I/O (RFC 8881 sections 8.2.2, 9.1.4, 18.2.4)."""

from __future__ import annotations

import os

import pytest

from session.state import (
    LockState,
    OpenState,
    StateTable,
    newest_stateid,
    seqid_newer,
    share_access_for_flags,
)
from session.xdr.const import (
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WRITE,
)
from session.xdr.nfs4 import stateid4

OTHER_A = b"A" * 12
OTHER_B = b"B" * 12
FS1 = 1  # fs_id: the superblock's numbers for two file systems
FS2 = 2


def sid(seqid: int, other: bytes = OTHER_A) -> stateid4:
    return stateid4(seqid=seqid, other=other)


# -- seqid order, section 8.2.2 ---------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [
        (2, 1, True),
        (1, 2, False),
        (5, 5, False),
        (0, 0xFFFFFFFF, True),  # wrapped: 0 follows 2**32 - 1
        (0xFFFFFFFF, 0, False),
        (3, 0xFFFFFFF0, True),
        (0x7FFFFFFF, 0, True),  # just under half the space ahead
        (0x80000000, 0, False),  # half the space away is "older"
        (0x80000001, 1, False),
    ],
)
def test_seqid_newer_wraps_modulo_2_32(a: int, b: int, newer: bool) -> None:
    assert seqid_newer(a, b) is newer


def test_newest_stateid_keeps_the_newer_seqid() -> None:
    assert newest_stateid(sid(3), sid(4)) == sid(4)
    assert newest_stateid(sid(4), sid(3)) == sid(4)  # a late reply does not go back
    assert newest_stateid(sid(4), sid(4)) == sid(4)
    assert newest_stateid(sid(0xFFFFFFFF), sid(1)) == sid(1)  # across the wrap


def test_newest_stateid_with_another_other_is_new_state() -> None:
    assert newest_stateid(sid(9), sid(1, OTHER_B)) == sid(1, OTHER_B)


# -- OpenState ----------------------------------------------------------------------------
def test_open_state_access_is_the_union_of_users() -> None:
    state = OpenState(fh=b"fh", fs_id=FS1, owner=b"o", stateid=sid(1))
    assert state.access() == 0 and not state.in_use()
    state.add_user(OPEN4_SHARE_ACCESS_READ)
    assert state.access() == OPEN4_SHARE_ACCESS_READ and state.in_use()
    state.add_user(OPEN4_SHARE_ACCESS_WRITE)
    assert state.access() == OPEN4_SHARE_ACCESS_BOTH
    state.add_user(OPEN4_SHARE_ACCESS_READ)
    state.remove_user(OPEN4_SHARE_ACCESS_WRITE)
    assert state.access() == OPEN4_SHARE_ACCESS_READ  # two readers remain
    state.remove_user(OPEN4_SHARE_ACCESS_READ)
    assert state.access() == OPEN4_SHARE_ACCESS_READ
    state.remove_user(OPEN4_SHARE_ACCESS_READ)
    assert state.access() == 0 and not state.in_use()


def test_open_state_both_user_covers_read_and_write() -> None:
    state = OpenState(fh=b"fh", fs_id=FS1, owner=b"o", stateid=sid(1))
    state.add_user(OPEN4_SHARE_ACCESS_BOTH)
    state.add_user(OPEN4_SHARE_ACCESS_READ)
    assert state.access() == OPEN4_SHARE_ACCESS_BOTH
    state.remove_user(OPEN4_SHARE_ACCESS_BOTH)
    assert state.access() == OPEN4_SHARE_ACCESS_READ


R, W, RW = OPEN4_SHARE_ACCESS_READ, OPEN4_SHARE_ACCESS_WRITE, OPEN4_SHARE_ACCESS_BOTH


@pytest.mark.parametrize(
    ("opens", "need", "target"),
    [
        ([R, RW], R, R),  # opened for reading, then upgraded: back to reading
        ([W, R], R, R),  # W then R: READ alone was an OPEN
        ([W, R], W, W),
        ([RW], R, None),  # only BOTH was ever opened: READ alone is no union of OPENs
        ([W, RW], R, None),
        ([R, W], RW, None),  # nothing to shed
        ([R, RW], RW, None),
    ],
)
def test_open_downgrade_only_to_a_union_of_opens(
    opens: list[int], need: int, target: int | None
) -> None:
    """OPEN_DOWNGRADE's share_access must be the union of some of the OPENs in effect
    (RFC 8881 section 18.18.3), or the server answers NFS4ERR_INVAL."""
    state = OpenState(fh=b"fh", fs_id=FS1, owner=b"o", stateid=sid(1))
    for access in opens:
        state.opened_with(access)
    assert state.server_access == RW  # every case opened for writing and reading
    assert state.downgrade_access(need) == target
    if target is not None:
        state.downgraded_to(target)
        assert state.server_access == target
        assert state.downgrade_access(target) is None  # nothing more to shed


def test_releasing_an_access_never_added_raises() -> None:
    state = OpenState(fh=b"fh", fs_id=FS1, owner=b"o", stateid=sid(1))
    state.add_user(OPEN4_SHARE_ACCESS_READ)
    with pytest.raises(ValueError):
        state.remove_user(OPEN4_SHARE_ACCESS_WRITE)
    state.remove_user(OPEN4_SHARE_ACCESS_READ)
    with pytest.raises(ValueError):
        state.remove_user(OPEN4_SHARE_ACCESS_READ)


def test_open_state_update_ignores_older_seqids() -> None:
    state = OpenState(fh=b"fh", fs_id=FS1, owner=b"o", stateid=sid(2))
    state.update(sid(1))
    assert state.stateid == sid(2)
    state.update(sid(3))
    assert state.stateid == sid(3)


def test_lock_state_first_update_takes_any_stateid() -> None:
    open_state = OpenState(fh=b"fh", fs_id=FS1, owner=b"o", stateid=sid(1))
    lock = LockState(open=open_state, owner=b"L")
    assert lock.stateid is None
    lock.update(sid(5, OTHER_B))
    assert lock.stateid == sid(5, OTHER_B)
    lock.update(sid(4, OTHER_B))
    assert lock.stateid == sid(5, OTHER_B)
    lock.update(sid(6, OTHER_B))
    assert lock.stateid == sid(6, OTHER_B)


# -- StateTable -------------------------------------------------------------------------
def test_record_open_merges_opens_of_one_owner() -> None:
    table = StateTable()
    first = table.record_open(b"f1", FS1, b"owner", sid(1))
    again = table.record_open(b"f1", FS1, b"owner", sid(2))
    assert again is first and first.stateid == sid(2)
    other_owner = table.record_open(b"f1", FS1, b"owner2", sid(1, OTHER_B))
    assert other_owner is not first
    assert table.find_open(b"f1", b"owner") is first
    assert table.find_open(b"f1", b"nobody") is None
    assert len(table.opens) == 2


def test_record_open_keeps_the_newest_stateid() -> None:
    table = StateTable()
    state = table.record_open(b"f1", FS1, b"owner", sid(3))
    table.record_open(b"f1", FS1, b"owner", sid(2))  # a reply overtaken by a newer one
    assert state.stateid == sid(3)


def test_lock_state_is_one_per_open_and_lock_owner() -> None:
    table = StateTable()
    state = table.record_open(b"f1", FS1, b"owner", sid(1))
    a = table.lock_state(state, b"A")
    assert table.lock_state(state, b"A") is a
    b = table.lock_state(state, b"B")
    assert b is not a and b.open is state
    assert len(table.locks) == 2


def test_forget_open_drops_its_locks_only() -> None:
    table = StateTable()
    s1 = table.record_open(b"f1", FS1, b"owner", sid(1))
    s2 = table.record_open(b"f2", FS1, b"owner", sid(1, OTHER_B))
    table.lock_state(s1, b"A")
    table.lock_state(s1, b"B")
    kept = table.lock_state(s2, b"A")
    table.forget_open(s1)
    assert table.find_open(b"f1", b"owner") is None
    assert list(table.locks.values()) == [kept]
    table.forget_open(s1)  # twice is harmless
    assert table.find_open(b"f2", b"owner") is s2


def test_opens_on_and_locks_on_select_by_file_system() -> None:
    table = StateTable()
    a = table.record_open(b"a", FS1, b"o", sid(1))
    b = table.record_open(b"b", FS2, b"o", sid(1, OTHER_B))
    c = table.record_open(b"c", FS1, b"o2", sid(2))
    la = table.lock_state(a, b"L")
    lb = table.lock_state(b, b"L")
    assert table.opens_on(FS1) == [a, c]
    assert table.opens_on(FS2) == [b]
    assert table.opens_on(9) == []
    assert table.locks_on(FS1) == [la]
    assert table.locks_on(FS2) == [lb]


# -- POSIX flags --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "access"),
    [
        (os.O_RDONLY, OPEN4_SHARE_ACCESS_READ),
        (os.O_WRONLY, OPEN4_SHARE_ACCESS_WRITE),
        (os.O_RDWR, OPEN4_SHARE_ACCESS_BOTH),
        (os.O_WRONLY | os.O_APPEND | os.O_CREAT, OPEN4_SHARE_ACCESS_WRITE),
        (os.O_RDWR | os.O_TRUNC, OPEN4_SHARE_ACCESS_BOTH),
        (os.O_RDONLY | os.O_NONBLOCK, OPEN4_SHARE_ACCESS_READ),
    ],
)
def test_share_access_for_flags(flags: int, access: int) -> None:
    assert share_access_for_flags(flags) == access

"""POSIX lock-range bookkeeping (session.locks): split, merge, upgrade, downgrade."""

from __future__ import annotations

import pytest

from session.locks import (
    EOF_OFFSET,
    NFS4_UINT64_MAX,
    LockRanges,
    conflicts,
    lock_end,
    lock_length,
    plain_lock_type,
)
from session.xdr.const import nfs_lock_type4

R = nfs_lock_type4.READ_LT
W = nfs_lock_type4.WRITE_LT


def held(ranges: LockRanges) -> list[tuple[int, int, str]]:
    return [(r.start, r.end, "W" if r.locktype == W else "R") for r in ranges.ranges]


def test_unlock_in_the_middle_splits() -> None:
    locks = LockRanges()
    locks.lock(0, 100, W)
    locks.unlock(40, 60)
    assert held(locks) == [(0, 40, "W"), (60, 100, "W")]


def test_adjacent_and_overlapping_locks_of_one_type_merge() -> None:
    locks = LockRanges()
    locks.lock(0, 10, R)
    locks.lock(10, 20, R)
    locks.lock(15, 30, R)
    assert held(locks) == [(0, 30, "R")]
    locks.lock(40, 50, R)
    assert held(locks) == [(0, 30, "R"), (40, 50, "R")]


def test_upgrade_of_part_of_a_read_lock() -> None:
    locks = LockRanges()
    locks.lock(0, 100, R)
    locks.lock(10, 20, W)
    assert held(locks) == [(0, 10, "R"), (10, 20, "W"), (20, 100, "R")]


def test_downgrade_then_merge_back() -> None:
    locks = LockRanges()
    locks.lock(0, 100, W)
    locks.lock(10, 20, R)
    assert held(locks) == [(0, 10, "W"), (10, 20, "R"), (20, 100, "W")]
    locks.lock(10, 20, nfs_lock_type4.WRITEW_LT)  # the blocking form counts as WRITE
    assert held(locks) == [(0, 100, "W")]


def test_lock_to_end_of_file_and_unlock_of_everything() -> None:
    locks = LockRanges()
    locks.lock(100, lock_end(100, NFS4_UINT64_MAX), W)
    assert locks.wire() == [(100, NFS4_UINT64_MAX, W)]
    locks.lock(0, 10, R)
    locks.unlock(0, EOF_OFFSET)
    assert not locks and len(locks) == 0


def test_unlock_of_a_range_not_held_changes_nothing() -> None:
    locks = LockRanges()
    locks.lock(0, 10, W)
    locks.unlock(20, 30)
    assert held(locks) == [(0, 10, "W")]


def test_covers_overlapping_and_exact_or_disjoint() -> None:
    locks = LockRanges()
    locks.lock(0, 100, R)
    assert locks.covers(10, 20, R)
    assert not locks.covers(10, 20, W)
    assert not locks.covers(90, 110, R)
    assert [(r.start, r.end) for r in locks.overlapping(50, 200)] == [(50, 100)]
    assert locks.exact_or_disjoint(0, 100) and locks.exact_or_disjoint(100, 200)
    assert not locks.exact_or_disjoint(0, 50)


def test_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty lock range"):
        LockRanges().lock(5, 5, W)


def test_wire_lengths_and_types() -> None:
    assert lock_end(5, NFS4_UINT64_MAX) == EOF_OFFSET
    assert lock_end(NFS4_UINT64_MAX - 1, 10) == EOF_OFFSET  # past 2**64 - 1 means EOF
    assert lock_length(5, EOF_OFFSET) == NFS4_UINT64_MAX
    assert lock_length(5, 15) == 10
    assert plain_lock_type(nfs_lock_type4.READW_LT) == R
    assert conflicts(W, R) and conflicts(R, W) and conflicts(W, W)
    assert not conflicts(R, nfs_lock_type4.READW_LT)

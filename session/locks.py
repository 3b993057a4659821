"""Byte-range lock bookkeeping with POSIX semantics: sans-I/O (RFC 8881 sections 9.1-9.6).

One lock owner's locks on one file are a set of disjoint ranges, each READ_LT or
WRITE_LT.  A new lock replaces whatever the owner held in its range (an upgrade or a
downgrade of that part), an unlock removes its range (splitting a held range in two if
it falls inside), and adjacent or overlapping ranges of one type merge, exactly as
fcntl(2) defines it for one process.  NFSv4 servers keep locks the same way (section
9.1.5 lets a server refuse what it cannot split with NFS4ERR_LOCK_RANGE), so the client
can send each request as the application made it and keep this copy of what it holds:
for release at close, for reclaim after a server restart or migration (section 9.11),
and for undoing a lock whose caller was interrupted.

Ranges are ``[start, end)`` in bytes; ``end == EOF_OFFSET`` means "to end of file",
which is ``length == NFS4_UINT64_MAX`` on the wire (section 18.10.3) and ``l_len == 0``
in struct flock.  The contrib test server keeps its locks with the same class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from session.xdr.const import NFS4_UINT64_MAX, nfs_lock_type4

#: Exclusive end of a lock "to end of file": past every real offset (2**64).
EOF_OFFSET: Final = 1 << 64


def lock_end(offset: int, length: int) -> int:
    """Exclusive end of the wire range ``(offset, length)``; length 2**64 - 1 is to EOF.

    A range that would run past 2**64 - 1 also ends at EOF (the server would reply
    NFS4ERR_INVAL for it, section 18.10.4; the client never sends one).
    """
    if length == NFS4_UINT64_MAX:
        return EOF_OFFSET
    return min(offset + length, EOF_OFFSET)


def lock_length(start: int, end: int) -> int:
    """The wire ``length`` of ``[start, end)``: 2**64 - 1 for a range to end of file."""
    return NFS4_UINT64_MAX if end >= EOF_OFFSET else end - start


def plain_lock_type(locktype: nfs_lock_type4) -> nfs_lock_type4:
    """READW_LT / WRITEW_LT are the blocking forms of READ_LT / WRITE_LT (section 18.10.3)."""
    if locktype == nfs_lock_type4.READW_LT:
        return nfs_lock_type4.READ_LT
    if locktype == nfs_lock_type4.WRITEW_LT:
        return nfs_lock_type4.WRITE_LT
    return locktype


def conflicts(held: nfs_lock_type4, wanted: nfs_lock_type4) -> bool:
    """Whether a lock of type ``held`` blocks one of type ``wanted`` by another owner."""
    write = nfs_lock_type4.WRITE_LT
    return plain_lock_type(held) == write or plain_lock_type(wanted) == write


@dataclass(slots=True)
class LockRange:
    """A locked byte range ``[start, end)`` (bytes; ``end == EOF_OFFSET``: to end of file)."""

    start: int
    end: int
    locktype: nfs_lock_type4

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end

    @property
    def length(self) -> int:
        """The wire length (2**64 - 1 to end of file)."""
        return lock_length(self.start, self.end)


@dataclass(slots=True)
class LockRanges:
    """The ranges one lock owner holds on one file: disjoint, sorted, merged per type."""

    ranges: list[LockRange] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def lock(self, start: int, end: int, locktype: nfs_lock_type4) -> None:
        """Hold ``[start, end)`` as ``locktype``, replacing what was held there (POSIX).

        Raises:
            ValueError: an empty or inverted range.
        """
        if end <= start:
            raise ValueError(f"empty lock range [{start}, {end})")
        self.unlock(start, end)
        self.ranges.append(LockRange(start, end, plain_lock_type(locktype)))
        self.ranges.sort(key=lambda r: r.start)
        merged: list[LockRange] = []
        for r in self.ranges:
            last = merged[-1] if merged else None
            if last is not None and last.locktype == r.locktype and last.end >= r.start:
                last.end = max(last.end, r.end)
            else:
                merged.append(r)
        self.ranges = merged

    def unlock(self, start: int, end: int) -> None:
        """Release ``[start, end)``, splitting a held range that it cuts through."""
        kept: list[LockRange] = []
        for r in self.ranges:
            if not r.overlaps(start, end):
                kept.append(r)
                continue
            if r.start < start:
                kept.append(LockRange(r.start, start, r.locktype))
            if r.end > end:
                kept.append(LockRange(end, r.end, r.locktype))
        self.ranges = kept

    def overlapping(self, start: int, end: int) -> list[LockRange]:
        """The held pieces inside ``[start, end)`` (clipped copies)."""
        return [
            LockRange(max(r.start, start), min(r.end, end), r.locktype)
            for r in self.ranges
            if r.overlaps(start, end)
        ]

    def covers(self, start: int, end: int, locktype: nfs_lock_type4) -> bool:
        """True if ``[start, end)`` is already held wholly as ``locktype``."""
        wanted = plain_lock_type(locktype)
        return any(r.start <= start and end <= r.end and r.locktype == wanted for r in self.ranges)

    def exact_or_disjoint(self, start: int, end: int) -> bool:
        """True if every held range is exactly ``[start, end)`` or disjoint from it (what a
        server that cannot split locks accepts; otherwise NFS4ERR_LOCK_RANGE, 9.1.5)."""
        return all(
            (r.start == start and r.end == end) or not r.overlaps(start, end) for r in self.ranges
        )

    def wire(self) -> list[tuple[int, int, nfs_lock_type4]]:
        """Every held range as ``(offset, length, locktype)`` for LOCK / LOCKU / reclaim."""
        return [(r.start, r.length, r.locktype) for r in self.ranges]


__all__ = [
    "EOF_OFFSET",
    "NFS4_UINT64_MAX",
    "LockRange",
    "LockRanges",
    "conflicts",
    "lock_end",
    "lock_length",
    "plain_lock_type",
]

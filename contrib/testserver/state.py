"""Locking state of one server instance: stateids, opens, byte-range locks, delegations.

Sans-I/O: plain objects and synchronous methods; time is passed in by the caller.

* Stateids (RFC 8881 section 8.2): a 12-byte ``other`` that names the state and a
  ``seqid`` that advances each time the state changes (OPEN upgrade, OPEN_DOWNGRADE,
  LOCK, LOCKU).  ``other`` values are unique in the whole cluster, so a stateid moved to
  another instance by Transparent State Migration keeps its value (RFC 8881 section
  11.12, seed 001 section 4.2.1: "the stateid including the current sequence value").
* Opens (section 9.1.4 / 18.16): one :class:`OpenState` per (client, open-owner, file),
  with the union of the share access and deny bits granted (share reservations,
  section 9.7).
* Byte-range locks (section 9 / 18.10 - 18.12): one :class:`LockState` per
  (lock-owner, open), holding POSIX-style ranges (split and merged like fcntl locks).
* Delegations (section 10.2): read and write delegations, one per (client, file); a
  write delegation records what CB_GETATTR handling needs (section 10.4.3).

A state record that is revoked (lease expiry, administrative revocation, a delegation
not returned, a stateid lost during migration) stays in the table with ``revoked`` set
to the status its use returns (NFS4ERR_EXPIRED, NFS4ERR_ADMIN_REVOKED,
NFS4ERR_DELEG_REVOKED) until the client frees it with FREE_STATEID (section 8.4.2 and
18.38); its share reservation and locks are released at once.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from session.locks import LockRange, LockRanges, conflicts, plain_lock_type
from session.xdr.const import (
    nfs_lock_type4,
    nfsstat4,
    open_delegation_type4,
)
from session.xdr.nfs4 import stateid4

FileKey = tuple[str, int]
"""(file system name, fileid): the file a piece of state is on."""

OwnerKey = tuple[int, bytes]
"""(clientid, owner bytes): an open-owner or lock-owner (RFC 8881 section 3.3.10)."""

_cluster_prefix = os.urandom(4)
_other_counter = itertools.count(1)


def new_other() -> bytes:
    """A fresh 12-byte stateid ``other``, unique in this process (every instance)."""
    return _cluster_prefix + struct.pack(">Q", next(_other_counter))


@dataclass(slots=True, eq=False)
class StateRecord:
    """Fields common to every stateid (RFC 8881 section 8.2).

    Attributes:
        other: 12 bytes naming the state.
        seqid: the current sequence value (uint32; starts at 1).
        clientid: the client ID owning it.
        fs: name of the file system of the file.
        fileid: the file.
        revoked: None while valid; else the status a use returns.
    """

    other: bytes
    seqid: int
    clientid: int
    fs: str
    fileid: int
    revoked: nfsstat4 | None = None

    @property
    def file(self) -> FileKey:
        return (self.fs, self.fileid)

    def stateid(self) -> stateid4:
        return stateid4(self.seqid, self.other)

    def bump(self) -> stateid4:
        """Advance the seqid (0 is skipped: it means "current" on the wire, 8.2.2)."""
        self.seqid = (self.seqid + 1) & 0xFFFFFFFF or 1
        return self.stateid()

    def kind(self) -> str:
        return "state"


@dataclass(slots=True, eq=False)
class OpenState(StateRecord):
    """An open: share access/deny granted to one open-owner on one file (18.16).

    ``access_seen``/``deny_seen`` record every access and deny value the owner opened
    with, so OPEN_DOWNGRADE can refuse a combination never opened (18.18.3).
    """

    owner: bytes = b""
    access: int = 0
    deny: int = 0
    access_seen: set[int] = field(default_factory=set)
    deny_seen: set[int] = field(default_factory=set)
    reclaimed: bool = False

    def kind(self) -> str:
        return "open"


@dataclass(slots=True, eq=False)
class LockState(StateRecord):
    """The byte-range locks of one lock-owner, obtained through one open (18.10)."""

    owner: bytes = b""
    open_other: bytes = b""
    held: LockRanges = field(default_factory=LockRanges)

    @property
    def ranges(self) -> list[LockRange]:
        """The held ranges, sorted and merged (POSIX semantics, ``session.locks``)."""
        return self.held.ranges

    def kind(self) -> str:
        return "lock"


@dataclass(slots=True, eq=False)
class Delegation(StateRecord):
    """A read or write delegation (RFC 8881 section 10.2).

    Attributes:
        dtype: OPEN_DELEGATE_READ or OPEN_DELEGATE_WRITE.
        recall_started: the lease-clock time CB_RECALL was first sent (None: not being
            recalled).
        sc: write delegations: the change attribute the server recorded for the file
            when it granted the delegation, raised each time a CB_GETATTR finds the
            holder's copy modified (section 10.4.3, "sc" and "nsc").
        modified: write delegations: a CB_GETATTR found the holder's copy modified;
            stays True until the delegation is returned or revoked (10.4.3).
        space_limit: write delegations: bytes the holder may write locally
            (nfs_space_limit4 NFS_LIMIT_SIZE, section 10.4.1).
    """

    dtype: open_delegation_type4 = open_delegation_type4.OPEN_DELEGATE_READ
    recall_started: float | None = None
    sc: int = 0
    modified: bool = False
    space_limit: int = 0

    @property
    def write(self) -> bool:
        return self.dtype == open_delegation_type4.OPEN_DELEGATE_WRITE

    def kind(self) -> str:
        return "delegation"


AnyState = OpenState | LockState | Delegation


@dataclass(slots=True)
class LockConflict:
    """What LOCK4denied / LOCKT report: the conflicting range and its owner."""

    start: int
    end: int
    locktype: nfs_lock_type4
    owner: OwnerKey


class StateTable:
    """All locking state of one server instance, indexed by ``other`` and by file."""

    def __init__(self) -> None:
        self.records: dict[bytes, AnyState] = {}
        self._opens: dict[FileKey, list[OpenState]] = {}
        self._locks: dict[FileKey, list[LockState]] = {}
        self._delegs: dict[FileKey, list[Delegation]] = {}

    # -- lookup -------------------------------------------------------------------------
    def get(self, other: bytes) -> AnyState | None:
        return self.records.get(other)

    def opens_on(self, key: FileKey) -> list[OpenState]:
        """Valid (not revoked) opens on a file."""
        return list(self._opens.get(key, ()))

    def locks_on(self, key: FileKey) -> list[LockState]:
        return list(self._locks.get(key, ()))

    def delegations_on(self, key: FileKey) -> list[Delegation]:
        return list(self._delegs.get(key, ()))

    def find_open(self, clientid: int, owner: bytes, key: FileKey) -> OpenState | None:
        for st in self._opens.get(key, ()):
            if st.clientid == clientid and st.owner == owner:
                return st
        return None

    def find_lock(self, clientid: int, owner: bytes, open_other: bytes) -> LockState | None:
        for st in self.records.values():
            if (
                isinstance(st, LockState)
                and st.revoked is None
                and st.clientid == clientid
                and st.owner == owner
                and st.open_other == open_other
            ):
                return st
        return None

    def find_delegation(self, clientid: int, key: FileKey) -> Delegation | None:
        for st in self._delegs.get(key, ()):
            if st.clientid == clientid:
                return st
        return None

    def locks_of_open(self, open_state: OpenState) -> list[LockState]:
        return [
            st
            for st in self.records.values()
            if isinstance(st, LockState) and st.open_other == open_state.other
        ]

    def for_client(self, clientid: int) -> list[AnyState]:
        return [st for st in self.records.values() if st.clientid == clientid]

    def for_fs(self, fs: str) -> list[AnyState]:
        return [st for st in self.records.values() if st.fs == fs]

    def files_open(self) -> Iterator[FileKey]:
        yield from self._opens

    def revoked_for_client(self, clientid: int) -> list[AnyState]:
        return [
            st for st in self.records.values() if st.clientid == clientid and st.revoked is not None
        ]

    def valid_for_client(self, clientid: int) -> list[AnyState]:
        return [
            st for st in self.records.values() if st.clientid == clientid and st.revoked is None
        ]

    # -- creation -----------------------------------------------------------------------
    def add(self, record: AnyState) -> AnyState:
        """Insert a record (new, or transferred from another instance)."""
        self.records[record.other] = record
        if record.revoked is None:
            self._index(record)
        return record

    def _index(self, record: AnyState) -> None:
        if isinstance(record, OpenState):
            self._opens.setdefault(record.file, []).append(record)
        elif isinstance(record, LockState):
            self._locks.setdefault(record.file, []).append(record)
        else:
            self._delegs.setdefault(record.file, []).append(record)

    def _unindex(self, record: AnyState) -> None:
        if isinstance(record, OpenState):
            bucket_o = self._opens.get(record.file)
            if bucket_o is not None and record in bucket_o:
                bucket_o.remove(record)
                if not bucket_o:
                    del self._opens[record.file]
        elif isinstance(record, LockState):
            bucket_l = self._locks.get(record.file)
            if bucket_l is not None and record in bucket_l:
                bucket_l.remove(record)
                if not bucket_l:
                    del self._locks[record.file]
        else:
            bucket_d = self._delegs.get(record.file)
            if bucket_d is not None and record in bucket_d:
                bucket_d.remove(record)
                if not bucket_d:
                    del self._delegs[record.file]

    def new_open(
        self, clientid: int, owner: bytes, key: FileKey, access: int, deny: int
    ) -> OpenState:
        st = OpenState(
            new_other(),
            1,
            clientid,
            key[0],
            key[1],
            owner=owner,
            access=access,
            deny=deny,
            access_seen={access},
            deny_seen={deny},
        )
        self.add(st)
        return st

    def new_lock(self, clientid: int, owner: bytes, open_state: OpenState) -> LockState:
        st = LockState(
            new_other(),
            1,
            clientid,
            open_state.fs,
            open_state.fileid,
            owner=owner,
            open_other=open_state.other,
        )
        self.add(st)
        return st

    def new_delegation(
        self,
        clientid: int,
        key: FileKey,
        dtype: open_delegation_type4 = open_delegation_type4.OPEN_DELEGATE_READ,
    ) -> Delegation:
        st = Delegation(new_other(), 1, clientid, key[0], key[1], dtype=dtype)
        self.add(st)
        return st

    # -- removal and revocation ---------------------------------------------------------
    def remove(self, record: AnyState) -> None:
        """Forget a record (CLOSE, DELEGRETURN, FREE_STATEID, client destruction)."""
        self.records.pop(record.other, None)
        self._unindex(record)

    def revoke(self, record: AnyState, status: nfsstat4) -> None:
        """Mark a record revoked: its share/locks are released, it stays for FREE_STATEID."""
        if record.revoked is None:
            self._unindex(record)
        record.revoked = status
        if isinstance(record, LockState):
            record.ranges.clear()

    def remove_many(self, records: Iterable[AnyState]) -> None:
        for record in list(records):
            self.remove(record)

    # -- share reservations, RFC 8881 section 9.7 ---------------------------------------
    def share_conflict(
        self, key: FileKey, access: int, deny: int, exclude: OpenState | None = None
    ) -> OpenState | None:
        """An open on ``key`` whose deny bits forbid ``access`` or whose access ``deny``
        forbids; opens of ``exclude`` (the same open-owner, upgrading) do not count."""
        for st in self._opens.get(key, ()):
            if st is exclude:
                continue
            if (st.deny & access) or (st.access & deny):
                return st
        return None

    def denied_to_special(self, key: FileKey, access: int) -> bool:
        """True if some open denies ``access`` (I/O with a special stateid, 8.2.3)."""
        return any(st.deny & access for st in self._opens.get(key, ()))

    # -- byte-range locks, RFC 8881 sections 9 and 18.10 - 18.12 -------------------------
    def lock_conflict(
        self, key: FileKey, owner: OwnerKey, start: int, end: int, locktype: nfs_lock_type4
    ) -> LockConflict | None:
        """The first lock of another owner that conflicts with ``[start, end)``."""
        wanted = plain_lock_type(locktype)
        for st in self._locks.get(key, ()):
            if (st.clientid, st.owner) == owner:
                continue
            for r in st.ranges:
                if not r.overlaps(start, end):
                    continue
                if conflicts(r.locktype, wanted):
                    return LockConflict(r.start, r.end, r.locktype, (st.clientid, st.owner))
        return None

"""Open and lock state, grouped per file system: sans-I/O (RFC 8881 sections 8, 9).

State belongs to the mount, not to the connection (DESIGN.md invariant 1): nothing here
knows about transports or sessions, so a migration can move the binding to a server
while open files, stateids and locks stay put.

Share access is reference-counted per (file, open owner).  NFSv4 merges every OPEN of one
file by one open owner into one stateid (section 9.1.4): a second OPEN upgrades it, a
CLOSE ends all of them.  So the client OPENs again only when the union of access grows,
OPEN_DOWNGRADEs when it shrinks, and CLOSEs when the last user releases it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from session.locks import LockRanges
from session.xdr.const import (
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WRITE,
    nfs_lock_type4,
)
from session.xdr.nfs4 import stateid4


def seqid_newer(a: int, b: int) -> bool:
    """True if stateid seqid ``a`` is newer than ``b`` (uint32, wrapping; section 8.2.2)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


def newest_stateid(current: stateid4, new: stateid4) -> stateid4:
    """Keep the newest of two stateids for the same state (section 8.2.2).

    A reply may arrive after a newer one; an older seqid must not replace a newer one.
    A different ``other`` means new state and always wins.
    """
    if current.other != new.other or seqid_newer(new.seqid, current.seqid):
        return new
    return current


@dataclass(slots=True)
class OpenState:
    """One open file as the server sees it: a (file, open owner) pair with one stateid.

    Attributes:
        fh: the file's filehandle (bytes).
        fs_id: the file system the file is on (the superblock's number for it).
        owner: the open owner's ``owner`` bytes.
        stateid: the newest open stateid.
        users: how many client handles use each access mode, keyed by
            OPEN4_SHARE_ACCESS_READ / _WRITE / _BOTH (counts).
    """

    fh: bytes
    fs_id: int
    owner: bytes
    stateid: stateid4
    users: dict[int, int] = field(default_factory=dict)
    #: The server said OPEN4_RESULT_MAY_NOTIFY_LOCK: it may send CB_NOTIFY_LOCK when a
    #: lock a client waits for becomes free (RFC 8881 section 9.6, 20.11).
    may_notify_lock: bool = False
    #: The share access of each OPEN in effect (OPEN4_SHARE_ACCESS_* values): an
    #: OPEN_DOWNGRADE may only ask for a union of some of them (RFC 8881 section
    #: 18.18.3; a server answers NFS4ERR_INVAL otherwise).
    opened: set[int] = field(default_factory=set)

    @property
    def server_access(self) -> int:
        """The share access the server holds for this open (OPEN4_SHARE_ACCESS_* bits):
        the union of the OPENs in effect (an OPEN adds to it, section 18.16.3; an
        OPEN_DOWNGRADE replaces it).  Under a delegation an open nobody uses is kept
        (not CLOSEd), so a later open with access within this is local."""
        bits = 0
        for value in self.opened:
            bits |= value
        return bits

    def opened_with(self, access: int) -> None:
        """An OPEN with ``access`` (OPEN4_SHARE_ACCESS_* bits) succeeded on this open."""
        self.opened.add(access)

    def downgrade_access(self, need: int) -> int | None:
        """The share access to OPEN_DOWNGRADE to when the users need only ``need``.

        Returns:
            the smallest union of OPENs in effect that covers ``need`` and is less than
            what the server holds; None if there is none (then the open keeps what it
            holds until CLOSE: downgrading to anything else is NFS4ERR_INVAL, RFC 8881
            section 18.18.3).
        """
        held = self.server_access
        best: int | None = None
        values = sorted(self.opened)
        for pick in range(1, 1 << len(values)):
            union = 0
            for index, value in enumerate(values):
                if pick >> index & 1:
                    union |= value
            if union & need != need or union == held:
                continue
            if best is None or union.bit_count() < best.bit_count():
                best = union
        return best

    def downgraded_to(self, access: int) -> None:
        """An OPEN_DOWNGRADE to ``access`` succeeded: the OPENs beyond it are no longer
        in effect."""
        self.opened = {value for value in self.opened if value | access == access}
        self.opened.add(access)

    def access(self) -> int:
        """The union of share access the users need (OPEN4_SHARE_ACCESS_* bits)."""
        bits = 0
        for mode, count in self.users.items():
            if count > 0:
                bits |= mode
        return bits

    def add_user(self, access: int) -> None:
        self.users[access] = self.users.get(access, 0) + 1

    def remove_user(self, access: int) -> None:
        count = self.users.get(access, 0)
        if count <= 0:
            raise ValueError(f"no user with share access {access} to release")
        self.users[access] = count - 1

    def in_use(self) -> bool:
        return any(count > 0 for count in self.users.values())

    def update(self, new: stateid4) -> None:
        self.stateid = newest_stateid(self.stateid, new)


@dataclass(slots=True)
class LockState:
    """A lock owner's locks on one open file (section 9.1.4: a lock stateid).

    Attributes:
        open: the open the locks were made under.
        owner: the lock owner's bytes.
        stateid: the newest lock stateid, or None before the first LOCK.
        held: the ranges held, with POSIX split/merge semantics (``session.locks``).
        lost: why the server no longer holds these locks (a reclaim failed), else None:
            the application's next operation on the file is told (EIO).
    """

    open: OpenState
    owner: bytes
    stateid: stateid4 | None = None
    held: LockRanges = field(default_factory=LockRanges)
    lost: str | None = None

    @property
    def ranges(self) -> list[tuple[int, int, nfs_lock_type4]]:
        """Held ranges as (offset, length, locktype) (bytes; length 2**64-1 = to EOF)."""
        return self.held.wire()

    def update(self, new: stateid4) -> None:
        self.stateid = new if self.stateid is None else newest_stateid(self.stateid, new)


@dataclass(slots=True)
class Delegation:
    """A delegation the server granted on one file (RFC 8881 section 10.2).

    Attributes:
        fh: the file's filehandle (bytes).
        fs_id: the file system it is on.
        stateid: the delegation stateid.
        write: a write delegation (OPEN_DELEGATE_WRITE); else a read one.
        change: the file's change attribute when granted (CB_GETATTR, section 10.4.3).
        size: bytes: the file's size as this client knows it (under a write delegation
            the client's writes are the truth, and CB_GETATTR answers with it).
        modified: written under the delegation (CB_GETATTR reports change + 1).
        recalled: the server asked for it back (CB_RECALL): nothing new may use it.
    """

    fh: bytes
    fs_id: int
    stateid: stateid4
    write: bool
    change: int | None = None
    size: int | None = None
    modified: bool = False
    recalled: bool = False


@dataclass(slots=True)
class StateTable:
    """Every open, lock and delegation of one mount, findable per file and file system."""

    opens: dict[tuple[bytes, bytes], OpenState] = field(default_factory=dict)
    locks: dict[tuple[bytes, bytes, bytes], LockState] = field(default_factory=dict)
    delegations: dict[bytes, Delegation] = field(default_factory=dict)

    def opens_of(self, fh: bytes) -> list[OpenState]:
        """Every open of one file (by any owner)."""
        return [s for s in self.opens.values() if s.fh == fh]

    def find_open(self, fh: bytes, owner: bytes) -> OpenState | None:
        return self.opens.get((fh, owner))

    def record_open(self, fh: bytes, fs_id: int, owner: bytes, stateid: stateid4) -> OpenState:
        """Record (or upgrade) the open of ``fh`` by ``owner`` with the server's stateid."""
        state = self.opens.get((fh, owner))
        if state is None:
            state = OpenState(fh=fh, fs_id=fs_id, owner=owner, stateid=stateid)
            self.opens[(fh, owner)] = state
        else:
            state.update(stateid)
        return state

    def forget_open(self, state: OpenState) -> None:
        """After CLOSE: the open and its lock states are gone (section 18.2.4)."""
        self.opens.pop((state.fh, state.owner), None)
        for key in [k for k, v in self.locks.items() if v.open is state]:
            del self.locks[key]

    def delegations_on(self, fs_id: int) -> list[Delegation]:
        return [d for d in self.delegations.values() if d.fs_id == fs_id]

    def rename_fh(self, old: bytes, new: bytes) -> None:
        """The file's filehandle changed (it expired, RFC 8881 section 4.2.3): its opens,
        locks and delegation stay the same objects, with their stateids, under the new
        handle."""
        deleg = self.delegations.pop(old, None)
        if deleg is not None:
            deleg.fh = new
            self.delegations[new] = deleg
        for key, state in list(self.opens.items()):
            if state.fh == old:
                del self.opens[key]
                state.fh = new
                self.opens[(new, state.owner)] = state
        for lock_key, lock in list(self.locks.items()):
            if lock_key[0] == old:
                del self.locks[lock_key]
                self.locks[(new, lock_key[1], lock_key[2])] = lock

    def forget_lock(self, lock: LockState) -> None:
        """After FREE_STATEID of a lock stateid with no locks left."""
        key = (lock.open.fh, lock.open.owner, lock.owner)
        if self.locks.get(key) is lock:
            del self.locks[key]

    def lock_state(self, open_state: OpenState, lock_owner: bytes) -> LockState:
        key = (open_state.fh, open_state.owner, lock_owner)
        state = self.locks.get(key)
        if state is None:
            state = LockState(open=open_state, owner=lock_owner)
            self.locks[key] = state
        return state

    def opens_on(self, fs_id: int) -> list[OpenState]:
        """Opens on one file system: what migration must carry over (section 11.12)."""
        return [s for s in self.opens.values() if s.fs_id == fs_id]

    def locks_on(self, fs_id: int) -> list[LockState]:
        return [s for s in self.locks.values() if s.open.fs_id == fs_id]

    def locks_of(self, fh: bytes, lock_owner: bytes) -> list[LockState]:
        """Every lock state of one lock owner on one file (through any open of it)."""
        return [s for s in self.locks.values() if s.open.fh == fh and s.owner == lock_owner]


def share_access_for_flags(flags: int) -> int:
    """OPEN4_SHARE_ACCESS_* for POSIX open flags (O_RDONLY / O_WRONLY / O_RDWR)."""
    import os

    mode = flags & os.O_ACCMODE
    if mode == os.O_WRONLY:
        return OPEN4_SHARE_ACCESS_WRITE
    if mode == os.O_RDWR:
        return OPEN4_SHARE_ACCESS_BOTH
    return OPEN4_SHARE_ACCESS_READ

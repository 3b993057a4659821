"""The fore-channel slot table: sans-I/O (RFC 8881 sections 2.10.6.1 and 18.46).

Each slot carries one request at a time and a sequence id.  A request on slot ``i``
uses ``sa_sequenceid = slot.seqid + 1``; when the server answers SEQUENCE (whatever the
status of the later operations), the slot's seqid advances.  When no reply arrives (the
connection dropped), the same request is sent again on the same slot with the same
seqid, and the server's reply cache answers it exactly once (section 2.10.6.2).

The table never raises "out of slots": ``acquire()`` returns ``None`` and the async
caller waits (``session.session``).  It honours the server's ``sr_highest_slotid`` (the
highest slot the server will accept) and ``sr_target_highest_slotid`` (the highest it
wants used), both slot indexes, not counts.  Recovery parks the table: while parked,
``acquire()`` gives nothing, so new calls wait and the in-flight ones drain (DESIGN.md
invariant 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from session.xdr.codec import UINT32_MAX


class SlotOutcome(Enum):
    """What happened to the request that held a slot, as ``release()`` needs to know."""

    #: The server processed SEQUENCE (it replied with any status after SEQUENCE, or
    #: SEQUENCE itself succeeded): the seqid advances.
    SEQUENCED = "sequenced"
    #: The server did not process SEQUENCE (NFS4ERR_BADSLOT, BADSESSION, SEQ_MISORDERED,
    #: DELAY on SEQUENCE with no cache entry): the seqid stays.
    NOT_SEQUENCED = "not-sequenced"
    #: No reply is known (the request timed out): the server may or may not have seen
    #: it.  The next use sends seqid + 1; a SEQ_MISORDERED reply then tells the client
    #: to fall back one seqid (``Slot.misordered``), once per such unconfirmed step.
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Slot:
    """One fore-channel slot.

    Attributes:
        slotid: the slot index (``sa_slotid``).
        seqid: the sequence id of the last request the server sequenced on this slot
            (uint32; the next request uses ``seqid + 1`` modulo 2**32).
        in_use: a request holds the slot.
        unconfirmed: how many of the latest seqid advances were for requests whose fate
            is unknown (``SlotOutcome.UNKNOWN``): the server's seqid may be up to this
            many behind ``seqid`` (a count).
    """

    slotid: int
    seqid: int = 0
    in_use: bool = False
    unconfirmed: int = 0

    @property
    def next_seqid(self) -> int:
        return (self.seqid + 1) & UINT32_MAX

    @property
    def uncertain(self) -> bool:
        """The last request's fate is unknown (see ``SlotOutcome.UNKNOWN``)."""
        return self.unconfirmed > 0


@dataclass(frozen=True, slots=True)
class SlotTableStatistics:
    """Counters (counts) for ``SlotTable.statistics()``."""

    size: int
    in_use: int
    highest_slotid: int
    target_highest_slotid: int
    acquisitions: int
    waits: int
    parked: bool


@dataclass(slots=True)
class SlotTable:
    """Slots ``0..highest_slotid`` of one session's fore channel.

    Args:
        max_slots: ``ca_maxrequests`` from CREATE_SESSION's reply (a count, >= 1).
    """

    max_slots: int
    slots: list[Slot] = field(init=False)
    highest_slotid: int = field(init=False)  # index: the server accepts 0..highest
    target_highest_slotid: int = field(init=False)  # index: the server wants 0..target
    parked: bool = False
    acquisitions: int = 0
    waits: int = 0

    def __post_init__(self) -> None:
        if self.max_slots < 1:
            raise ValueError(f"a session needs at least one slot, got {self.max_slots}")
        self.slots = [Slot(i) for i in range(self.max_slots)]
        self.highest_slotid = self.max_slots - 1
        self.target_highest_slotid = self.max_slots - 1

    # -- handing out slots -------------------------------------------------------------
    def usable_limit(self) -> int:
        """Highest slot index a new request may take (an index)."""
        return min(self.highest_slotid, self.target_highest_slotid, len(self.slots) - 1)

    def acquire(self) -> Slot | None:
        """The lowest free usable slot, now marked in use; ``None`` if all are busy or parked."""
        if self.parked:
            self.waits += 1
            return None
        for slot in self.slots[: self.usable_limit() + 1]:
            if not slot.in_use:
                slot.in_use = True
                self.acquisitions += 1
                return slot
        self.waits += 1
        return None

    def sa_highest_slotid(self) -> int:
        """``sa_highest_slotid``: the highest slot index the client has in use (an index)."""
        busy = [s.slotid for s in self.slots if s.in_use]
        return max(busy) if busy else 0

    def release(self, slot: Slot, outcome: SlotOutcome) -> None:
        """Give a slot back, advancing its seqid if the server sequenced the request."""
        if not slot.in_use:
            raise ValueError(f"slot {slot.slotid} released twice")
        slot.in_use = False
        if outcome is SlotOutcome.SEQUENCED:
            slot.seqid = slot.next_seqid
            slot.unconfirmed = 0
        elif outcome is SlotOutcome.UNKNOWN:
            # Assume the server saw it; a SEQ_MISORDERED reply corrects this.
            slot.seqid = slot.next_seqid
            slot.unconfirmed += 1

    def misordered(self, slot: Slot) -> bool:
        """NFS4ERR_SEQ_MISORDERED on ``slot``: step back one seqid if an advance was unconfirmed.

        Each step undoes one advance made for a request whose fate was unknown, so the
        client never goes below the last seqid the server confirmed (re-sending that one
        would fetch another request's cached reply).  Returns True if the request
        should be resent on the same slot with the corrected seqid; False if the
        misorder cannot be explained (a protocol error).
        """
        if slot.unconfirmed > 0:
            slot.seqid = (slot.seqid - 1) & UINT32_MAX
            slot.unconfirmed -= 1
            return True
        return False

    def update_from_reply(self, sr_highest_slotid: int, sr_target_highest_slotid: int) -> None:
        """Apply the limits from a SEQUENCE reply (RFC 8881 section 18.46.3).

        Slots above a lowered ``sr_highest_slotid`` are forgotten by the server; their
        seqids restart when they become usable again.  A raised limit grows the table.
        """
        if sr_highest_slotid < self.highest_slotid:
            for slot in self.slots[sr_highest_slotid + 1 :]:
                if not slot.in_use:
                    slot.seqid = 0
                    slot.unconfirmed = 0
        if sr_highest_slotid >= len(self.slots):
            # Bounded growth: never more than 1024 slots whatever the server says.
            new_size = min(sr_highest_slotid + 1, 1024)
            self.slots.extend(Slot(i) for i in range(len(self.slots), new_size))
        self.highest_slotid = min(sr_highest_slotid, len(self.slots) - 1)
        self.target_highest_slotid = min(sr_target_highest_slotid, self.highest_slotid)

    def reset(self) -> None:
        """A new session: all seqids restart (the replacement session's slots are fresh)."""
        for slot in self.slots:
            slot.seqid = 0
            slot.unconfirmed = 0

    # -- parking for recovery -----------------------------------------------------------
    def park(self) -> None:
        """Stop handing out slots (recovery drains the table)."""
        self.parked = True

    def unpark(self) -> None:
        self.parked = False

    def in_use_count(self) -> int:
        return sum(1 for s in self.slots if s.in_use)

    def statistics(self) -> SlotTableStatistics:
        return SlotTableStatistics(
            size=len(self.slots),
            in_use=self.in_use_count(),
            highest_slotid=self.highest_slotid,
            target_highest_slotid=self.target_highest_slotid,
            acquisitions=self.acquisitions,
            waits=self.waits,
            parked=self.parked,
        )

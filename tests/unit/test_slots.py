"""The slot table without sockets (RFC 8881 sections 2.10.6.1, 18.46)."""

from __future__ import annotations

import pytest

from session.slots import SlotOutcome, SlotTable


def test_first_request_uses_seqid_1_and_advances_when_sequenced() -> None:
    table = SlotTable(2)
    slot = table.acquire()
    assert slot is not None and slot.slotid == 0 and slot.next_seqid == 1
    table.release(slot, SlotOutcome.SEQUENCED)
    again = table.acquire()
    assert again is slot and again.next_seqid == 2


def test_not_sequenced_keeps_the_seqid_for_a_replay() -> None:
    table = SlotTable(1)
    slot = table.acquire()
    assert slot is not None
    table.release(slot, SlotOutcome.NOT_SEQUENCED)
    assert slot.next_seqid == 1


def test_full_table_returns_none_instead_of_raising() -> None:
    table = SlotTable(2)
    a, b = table.acquire(), table.acquire()
    assert a is not None and b is not None and {a.slotid, b.slotid} == {0, 1}
    assert table.acquire() is None
    assert table.statistics().waits == 1
    table.release(a, SlotOutcome.SEQUENCED)
    assert table.acquire() is a


def test_sa_highest_slotid_is_the_highest_index_in_use() -> None:
    table = SlotTable(4)
    slots = [table.acquire() for _ in range(3)]
    assert table.sa_highest_slotid() == 2
    assert slots[2] is not None
    table.release(slots[2], SlotOutcome.SEQUENCED)
    assert table.sa_highest_slotid() == 1


def test_target_highest_slotid_limits_new_requests() -> None:
    table = SlotTable(8)
    table.update_from_reply(sr_highest_slotid=7, sr_target_highest_slotid=1)
    got = [table.acquire() for _ in range(3)]
    assert [s.slotid if s else None for s in got] == [0, 1, None]


def test_lowered_highest_slotid_resets_forgotten_slots() -> None:
    table = SlotTable(4)
    for _ in range(2):
        slots = [table.acquire() for _ in range(4)]
        for s in slots:
            assert s is not None
            table.release(s, SlotOutcome.SEQUENCED)
    assert table.slots[3].seqid == 2
    table.update_from_reply(sr_highest_slotid=1, sr_target_highest_slotid=1)
    assert table.slots[3].seqid == 0 and table.slots[1].seqid == 2
    table.update_from_reply(sr_highest_slotid=3, sr_target_highest_slotid=3)
    assert table.slots[3].next_seqid == 1


def test_raised_highest_slotid_grows_the_table_within_bounds() -> None:
    table = SlotTable(2)
    table.update_from_reply(sr_highest_slotid=5, sr_target_highest_slotid=5)
    assert table.statistics().size == 6
    table.update_from_reply(sr_highest_slotid=100000, sr_target_highest_slotid=100000)
    assert table.statistics().size == 1024


def test_unknown_outcome_then_misordered_steps_back_once() -> None:
    table = SlotTable(1)
    slot = table.acquire()
    assert slot is not None
    table.release(slot, SlotOutcome.UNKNOWN)  # cancelled in flight
    slot = table.acquire()
    assert slot is not None and slot.next_seqid == 2
    assert table.misordered(slot) is True
    assert slot.next_seqid == 1
    assert table.misordered(slot) is False  # a second misorder is a real protocol error


def test_seqid_wraps_modulo_2_32() -> None:
    table = SlotTable(1)
    table.slots[0].seqid = 0xFFFFFFFF
    slot = table.acquire()
    assert slot is not None and slot.next_seqid == 0
    table.release(slot, SlotOutcome.SEQUENCED)
    assert slot.seqid == 0


def test_parked_table_hands_out_nothing() -> None:
    table = SlotTable(2)
    table.park()
    assert table.acquire() is None
    table.unpark()
    assert table.acquire() is not None


def test_double_release_and_empty_table_are_errors() -> None:
    table = SlotTable(1)
    slot = table.acquire()
    assert slot is not None
    table.release(slot, SlotOutcome.SEQUENCED)
    with pytest.raises(ValueError, match="released twice"):
        table.release(slot, SlotOutcome.SEQUENCED)
    with pytest.raises(ValueError):
        SlotTable(0)

"""The LEASE_MOVED discovery machine through every transition (seed 001 section 4.2.6)."""

from __future__ import annotations

import pytest

from recovery.discovery import (
    TRANSITIONS,
    CheckFs,
    Discovery,
    DiscoveryError,
    DiscoveryState,
    FsChecked,
    Idle,
    LeaseMovedSeen,
    Verify,
    VerifyDone,
)

S = DiscoveryState


def st(d: Discovery[str]) -> DiscoveryState:
    """The state, read through a call so that mypy does not narrow it between steps."""
    return d.state


def test_idle_until_lease_moved() -> None:
    d: Discovery[str] = Discovery()
    assert st(d) is S.NON_OPERATING
    assert isinstance(d.next_step(), Idle)


def test_a_full_pass_finds_the_migrated_fs_and_completes() -> None:
    d: Discovery[str] = Discovery()
    d.receive(LeaseMovedSeen(), ["a", "b", "c"])
    assert st(d) is S.NORMAL
    assert d.next_step() == CheckFs("a")
    d.receive(FsChecked("a", migrated=False))
    assert d.next_step() == CheckFs("b")
    d.receive(FsChecked("b", migrated=True))
    assert st(d) is S.VERIFYING
    assert d.to_recover == ["b"]
    assert isinstance(d.next_step(), Verify)
    d.receive(VerifyDone(lease_moved=False))
    assert st(d) is S.NON_OPERATING
    assert isinstance(d.next_step(), Idle)


def test_verify_still_set_resumes_the_walk() -> None:
    d: Discovery[str] = Discovery()
    d.receive(LeaseMovedSeen(), ["a", "b"])
    d.next_step()
    d.receive(FsChecked("a", migrated=True))
    d.next_step()
    d.receive(VerifyDone(lease_moved=True), ["a", "b"])
    assert st(d) is S.NORMAL
    assert d.next_step() == CheckFs("b")  # continues where it was
    d.receive(FsChecked("b", migrated=True))
    assert d.to_recover == ["a", "b"]
    d.next_step()
    d.receive(VerifyDone(lease_moved=False))
    assert st(d) is S.NON_OPERATING


def test_lease_moved_seen_by_others_while_verifying_forces_another_verify() -> None:
    d: Discovery[str] = Discovery()
    d.receive(LeaseMovedSeen(), ["a"])
    d.next_step()
    d.receive(FsChecked("a", migrated=True))
    assert isinstance(d.next_step(), Verify)
    d.receive(LeaseMovedSeen(by_discovery=False))  # another request saw it meanwhile
    assert st(d) is S.VERIFYING and d.noted_by_others
    d.receive(VerifyDone(lease_moved=False))
    assert st(d) is S.VERIFYING  # the note is used: verify again
    assert not d.noted_by_others
    assert isinstance(d.next_step(), Verify)
    d.receive(VerifyDone(lease_moved=False))
    assert st(d) is S.NON_OPERATING


def test_own_indication_while_verifying_is_not_noted() -> None:
    d: Discovery[str] = Discovery()
    d.receive(LeaseMovedSeen(), ["a"])
    d.next_step()
    d.receive(FsChecked("a", migrated=True))
    d.next_step()
    d.receive(LeaseMovedSeen(by_discovery=True))
    assert not d.noted_by_others


def test_pass_without_migrated_fs_verifies_at_the_end() -> None:
    d: Discovery[str] = Discovery()
    d.receive(LeaseMovedSeen(), ["a"])
    d.next_step()
    d.receive(FsChecked("a", migrated=False))
    assert st(d) is S.NORMAL
    assert isinstance(d.next_step(), Verify)
    assert st(d) is S.VERIFYING
    d.receive(VerifyDone(lease_moved=True), ["a"])
    assert st(d) is S.NORMAL and d.passes == 2
    assert d.next_step() == CheckFs("a")


def test_lease_moved_in_normal_changes_nothing() -> None:
    d: Discovery[str] = Discovery()
    d.receive(LeaseMovedSeen(), ["a", "b"])
    d.receive(LeaseMovedSeen(), ["a", "b", "c"])
    assert st(d) is S.NORMAL and d.pending == ["a", "b"] and d.passes == 1


@pytest.mark.parametrize(
    ("setup", "event"),
    [
        ([], VerifyDone(lease_moved=False)),
        ([], FsChecked("a", migrated=True)),
        ([LeaseMovedSeen()], VerifyDone(lease_moved=False)),
        ([LeaseMovedSeen()], FsChecked("zzz", migrated=False)),
    ],
)
def test_unexpected_events_are_errors(setup: list[LeaseMovedSeen], event: object) -> None:
    d: Discovery[str] = Discovery()
    for e in setup:
        d.receive(e, ["a"])
    with pytest.raises(DiscoveryError):
        d.receive(event, ["a"])  # type: ignore[arg-type]


def test_every_transition_is_exercised_and_recorded() -> None:
    seen: set[tuple[DiscoveryState, str]] = set()
    for script in (
        test_a_full_pass_finds_the_migrated_fs_and_completes,
        test_verify_still_set_resumes_the_walk,
        test_lease_moved_seen_by_others_while_verifying_forces_another_verify,
        test_own_indication_while_verifying_is_not_noted,
        test_pass_without_migrated_fs_verifies_at_the_end,
        test_lease_moved_in_normal_changes_nothing,
    ):
        script()
    d: Discovery[str] = Discovery()
    d.receive(LeaseMovedSeen(by_discovery=True), ["a"])
    d.receive(LeaseMovedSeen(by_discovery=True), ["a"])
    d.receive(FsChecked("a", migrated=False))
    d.next_step()
    d.receive(LeaseMovedSeen(by_discovery=False))
    d.receive(VerifyDone(lease_moved=True), ["a"])
    d.next_step()
    d.receive(FsChecked("a", migrated=True))
    d.next_step()
    d.receive(LeaseMovedSeen(by_discovery=True))
    d.receive(VerifyDone(lease_moved=False))
    for old, key, _new in d.history:
        seen.add((old, key))
    # the scripted tests above cover the remaining keys; check the table is total here
    assert {(S.NON_OPERATING, "lease_moved:self"), (S.VERIFYING, "verify:set")} <= seen
    assert len(TRANSITIONS) == 11

"""Trunking and TSM decisions without sockets (seed 001 sections 4.2.2-4.2.4)."""

from __future__ import annotations

from recovery.tsm import (
    ServerIdentity,
    StateAction,
    Trunking,
    TsmStatus,
    action_of,
    after_state_merger,
    classify_exchange_id,
    state_action,
    trunking,
)
from session.xdr.const import (
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_LEASE_MOVED,
)


def ident(
    major: bytes = b"A",
    minor: int = 0,
    scope: bytes = b"s",
    clientid: int = 1,
    confirmed: bool = True,
) -> ServerIdentity:
    return ServerIdentity(major, minor, scope, clientid, confirmed)


def test_trunking_cases() -> None:
    assert trunking(ident(), ident()) is Trunking.SESSION
    assert trunking(ident(), ident(minor=1)) is Trunking.CLIENT_ID
    assert trunking(ident(), ident(minor=1, clientid=2)) is Trunking.NONE
    assert trunking(ident(), ident(major=b"B")) is Trunking.NONE
    assert trunking(ident(), ident(scope=b"other")) is Trunking.NONE


def test_exchange_id_classification() -> None:
    no_tsm = classify_exchange_id(ident(clientid=9, confirmed=False), known_clientids={1})
    assert no_tsm.status is TsmStatus.NO_TSM and "unconfirmed" in no_tsm.evidence
    merger = classify_exchange_id(ident(clientid=1, confirmed=True), known_clientids={1})
    assert merger.status is TsmStatus.STATE_MERGER and "already known" in merger.evidence
    moved = classify_exchange_id(ident(clientid=7, confirmed=True), known_clientids={1})
    assert moved.status is TsmStatus.TRANSFERRED_CLIENT_ID
    odd = classify_exchange_id(ident(clientid=1, confirmed=False), known_clientids={1})
    assert odd.status is TsmStatus.NO_TSM
    assert "4.2.2" in merger.rule


def test_state_merger_resolved_by_test_stateid() -> None:
    assert after_state_merger(True).status is TsmStatus.TRANSFERRED_CLIENT_ID
    assert after_state_merger(False).status is TsmStatus.NO_TSM


def test_state_action() -> None:
    assert action_of(state_action(False, 0)) is StateAction.RECLAIM_ALL
    assert action_of(state_action(True, 0)) is StateAction.NOTHING_LOST
    assert action_of(state_action(True, SEQ4_STATUS_LEASE_MOVED)) is StateAction.NOTHING_LOST
    lost = state_action(True, SEQ4_STATUS_ADMIN_STATE_REVOKED)
    assert action_of(lost) is StateAction.TEST_AND_RECLAIM
    assert "0x" in lost.evidence

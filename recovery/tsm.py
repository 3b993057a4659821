"""Migration decisions: trunking, Transparent State Migration, what state work to do.

Sans-I/O: each function takes what the client has seen (EXCHANGE_ID results, client IDs
it already holds, TEST_STATEID answers, SEQUENCE status flags) and returns a decision
with the evidence and the rule it follows, for the event log (DESIGN.md invariant 8).

References: RFC 8881 sections 2.10.5 (trunking), 11.12 (transferring state upon
migration), 11.13 (client responsibilities when access is transitioned); seed 001
sections 4.2.2 (initial migration status), 4.2.3 (client response), 4.2.4 (multiple
location entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from session.xdr.const import (
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED,
    SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
)

#: SEQUENCE flags that report state lost (RFC 8881 section 18.46.3).
STATE_LOST_FLAGS = (
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED
    | SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED
    | SEQ4_STATUS_ADMIN_STATE_REVOKED
    | SEQ4_STATUS_RECALLABLE_STATE_REVOKED
)


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """What EXCHANGE_ID says about the server behind an address (RFC 8881 s. 2.10.5).

    Attributes:
        so_major_id: eir_server_owner.so_major_id.
        so_minor_id: eir_server_owner.so_minor_id.
        server_scope: eir_server_scope.
        clientid: eir_clientid.
        confirmed: EXCHGID4_FLAG_CONFIRMED_R was set.
    """

    so_major_id: bytes
    so_minor_id: int
    server_scope: bytes
    clientid: int
    confirmed: bool


class Trunking(Enum):
    """How two addresses relate (RFC 8881 section 2.10.5)."""

    SESSION = "session-trunkable"  # same server_owner (major and minor) and scope
    CLIENT_ID = "clientid-trunkable"  # same major id and scope, same client ID
    NONE = "not trunkable"


def trunking(current: ServerIdentity, candidate: ServerIdentity) -> Trunking:
    """Whether ``candidate`` is another path to the server behind ``current``.

    Two addresses reach the same server if their so_major_id and server_scope agree;
    with the same so_minor_id too, one session can use both (session trunking), else
    they share the client ID but need their own sessions (client-ID trunking).  Client ID
    trunking additionally needs the same eir_clientid (section 2.10.5.1).
    """
    if (current.so_major_id, current.server_scope) != (
        candidate.so_major_id,
        candidate.server_scope,
    ):
        return Trunking.NONE
    if current.so_minor_id == candidate.so_minor_id:
        return Trunking.SESSION
    if current.clientid == candidate.clientid:
        return Trunking.CLIENT_ID
    return Trunking.NONE


class TsmStatus(Enum):
    """The initial migration status (seed 001 section 4.2.2)."""

    NO_TSM = "no transparent state migration"
    STATE_MERGER = "state merger: TSM may or may not have happened"
    TRANSFERRED_CLIENT_ID = "client ID transferred: TSM happened"


@dataclass(frozen=True, slots=True)
class Decision:
    """A recovery decision with its evidence and the rule that made it."""

    status: TsmStatus
    evidence: str
    rule: str


def classify_exchange_id(dest: ServerIdentity, known_clientids: set[int]) -> Decision:
    """Seed 001 section 4.2.2, from the destination's EXCHANGE_ID reply.

    * unconfirmed, not previously known: no TSM;
    * confirmed, already known to the client: state merger (TSM unknown: TEST_STATEID
      one stateid to find out, ``after_state_merger``);
    * confirmed, not previously known: the client ID was transferred, TSM happened.

    An unconfirmed client ID the client already knows cannot carry migrated state:
    it is treated as no TSM.
    """
    known = dest.clientid in known_clientids
    evidence = (
        f"eir_clientid={dest.clientid:#x} "
        f"{'confirmed' if dest.confirmed else 'unconfirmed'}, "
        f"{'already known' if known else 'not previously known'}"
    )
    if not dest.confirmed:
        return Decision(TsmStatus.NO_TSM, evidence, "seed 001 4.2.2; RFC 8881 11.13, 11.14")
    if known:
        return Decision(TsmStatus.STATE_MERGER, evidence, "seed 001 4.2.2; RFC 8881 11.12")
    return Decision(TsmStatus.TRANSFERRED_CLIENT_ID, evidence, "seed 001 4.2.2; RFC 8881 11.12")


def after_state_merger(one_stateid_valid: bool) -> Decision:
    """State merger: one transferred stateid valid means TSM began (seed 001 4.2.2)."""
    if one_stateid_valid:
        return Decision(
            TsmStatus.TRANSFERRED_CLIENT_ID,
            "TEST_STATEID: a stateid from the source is valid on the destination",
            "seed 001 4.2.2",
        )
    return Decision(
        TsmStatus.NO_TSM,
        "TEST_STATEID: the stateid from the source is not valid on the destination",
        "seed 001 4.2.2",
    )


class StateAction(Enum):
    """What to do with the migrated file system's state (seed 001 section 4.2.3)."""

    RECLAIM_ALL = "reclaim every open and lock in the per-fs grace period"
    NOTHING_LOST = "no reclaim needed"
    TEST_AND_RECLAIM = "TEST_STATEID all stateids, reclaim the lost, FREE_STATEID revoked"


def state_action(tsm_happened: bool, status_flags: int) -> Decision:
    """Seed 001 4.2.3: every case ends with RECLAIM_COMPLETE(rca_one_fs = TRUE)."""
    if not tsm_happened:
        return Decision(TsmStatus.NO_TSM, "no TSM", StateAction.RECLAIM_ALL.value)
    lost = status_flags & STATE_LOST_FLAGS
    if lost:
        return Decision(
            TsmStatus.TRANSFERRED_CLIENT_ID,
            f"sr_status_flags={status_flags:#x} report lost state",
            StateAction.TEST_AND_RECLAIM.value,
        )
    return Decision(
        TsmStatus.TRANSFERRED_CLIENT_ID,
        f"sr_status_flags={status_flags:#x}: nothing lost",
        StateAction.NOTHING_LOST.value,
    )


def action_of(decision: Decision) -> StateAction:
    """The ``StateAction`` a ``state_action`` decision names."""
    return StateAction(decision.rule)

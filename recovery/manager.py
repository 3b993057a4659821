"""The state manager: one per server, the only place recovery happens (DESIGN.md invariant 3).

Recovery must be serialized (seed 000: migration recovery is serialized with state
recovery).  The session calls in here through two hooks:

* ``on_new_client_id``: the server lost our client ID (reboot, lease expiry); reclaim
  every open and lock in its grace period before RECLAIM_COMPLETE (RFC 8881 s. 8.4.2.1);
* ``on_status_flags``: SEQUENCE's ``sr_status_flags`` (section 18.46.3) report state
  the server revoked or a lease that moved; each is recorded as an event.  Handling
  SEQ4_STATUS_LEASE_MOVED (migration discovery, section 11 and seed 001 s. 4.2.5) is
  the migration work that builds on this.

Every decision is an ``Event`` with the evidence and the RFC section (invariant 8).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio

from recovery.reclaim import ReclaimReport, reclaim_all
from session.client import NFSClient
from session.xdr.const import (
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_CB_PATH_DOWN,
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED,
    SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED,
    SEQ4_STATUS_LEASE_MOVED,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
    SEQ4_STATUS_RESTART_RECLAIM_NEEDED,
)

log = logging.getLogger("recovery")

#: SEQUENCE status flags and what they mean, with the RFC 8881 section that says so.
FLAG_MEANINGS: dict[int, tuple[str, str]] = {
    SEQ4_STATUS_CB_PATH_DOWN: ("the server cannot reach our backchannel", "18.46.3"),
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED: ("lease expired: all state revoked", "18.46.3"),
    SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED: ("lease expired: some state revoked", "18.46.3"),
    SEQ4_STATUS_ADMIN_STATE_REVOKED: ("state revoked by the administrator", "18.46.3"),
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED: ("unreturned delegations revoked", "18.46.3"),
    SEQ4_STATUS_LEASE_MOVED: ("a file system we hold state on migrated", "11.7.7.1"),
    SEQ4_STATUS_RESTART_RECLAIM_NEEDED: ("server restarted: reclaim needed", "18.46.3"),
}


@dataclass(frozen=True, slots=True)
class Event:
    """One recovery step: when (seconds since the epoch), what, the evidence, the rule."""

    when: float
    what: str
    evidence: str
    rfc: str


@dataclass(slots=True)
class StateManager:
    """Serializes recovery for one server's session.

    Args:
        client: the mount's client; its session's hooks are set by ``attach()``.
    """

    client: NFSClient
    events: list[Event] = field(default_factory=list)
    reclaims: list[ReclaimReport] = field(default_factory=list)
    seen_flags: int = 0
    _lock: trio.Lock = field(default_factory=trio.Lock)

    def attach(self) -> None:
        """Become the session's recovery hooks."""
        session = self.client.session
        session.on_new_client_id = self.recover_client_id
        session.on_status_flags = self.note_status_flags

    def record(self, what: str, evidence: str, rfc: str) -> Event:
        event = Event(time.time(), what, evidence, rfc)
        self.events.append(event)
        log.info("recovery: %s (%s; RFC 8881 section %s)", what, evidence, rfc)
        return event

    def note_status_flags(self, flags: int) -> None:
        """Record each SEQUENCE status flag the first time it appears (section 18.46.3)."""
        new = flags & ~self.seen_flags
        self.seen_flags = flags
        for bit, (meaning, rfc) in FLAG_MEANINGS.items():
            if new & bit:
                self.record(meaning, f"sr_status_flags={flags:#x}", rfc)

    async def recover_client_id(self) -> None:
        """Reclaim every open and lock on the new client ID (section 8.4.2.1)."""
        async with self._lock:
            opens = list(self.client.state.opens.values())
            locks = list(self.client.state.locks.values())
            self.record(
                "reclaiming state on a new client ID",
                f"{len(opens)} opens, {len(locks)} lock owners",
                "8.4.2.1",
            )
            report = await reclaim_all(self.client, opens, locks)
            self.reclaims.append(report)
            if report.errors:
                self.record("state not reclaimed", "; ".join(report.errors[:5]), "8.4.2.1")

"""Recovery events: what was seen, what was decided, and which rule says so (invariant 8).

Every recovery step records an ``Event``; ``fusenfs mount --debug`` logs them as they
happen and ``fusenfs stats MOUNTPOINT`` prints them with the per-file-system history.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("recovery")


@dataclass(frozen=True, slots=True)
class Event:
    """One recovery step.

    Attributes:
        when: seconds since the epoch.
        fs: the file system concerned ("" for server-wide events), e.g. "fsid 1.2".
        what: what was seen or done, one line.
        evidence: the protocol facts behind it (statuses, flags, client IDs).
        rule: the RFC 8881 or seed section followed.
    """

    when: float
    fs: str
    what: str
    evidence: str
    rule: str


@dataclass(slots=True)
class MigrationRecord:
    """One file system transition, for ``fusenfs stats``.

    Attributes:
        fs: the file system, as in ``Event.fs``.
        kind: "migration", "path change" (trunkable location) or "referral".
        source / destination: "host:port".
        trigger: "NFS4ERR_MOVED" or "SEQ4_STATUS_LEASE_MOVED".
        decision: the TSM decision (e.g. "client ID transferred: TSM happened").
        started / finished: monotonic seconds; ``parked`` calls waited meanwhile.
    """

    fs: str
    kind: str
    source: str
    destination: str = ""
    trigger: str = ""
    decision: str = ""
    session: str = ""
    started: float = 0.0
    finished: float = 0.0
    reclaimed: int = 0
    tested: int = 0
    freed: int = 0
    ok: bool = False
    error: str = ""

    @property
    def seconds(self) -> float:
        return max(0.0, self.finished - self.started)


@dataclass(slots=True)
class EventLog:
    """Events and migration records of one mount, bounded in length."""

    limit: int = 10000
    events: list[Event] = field(default_factory=list)
    migrations: list[MigrationRecord] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def record(self, fs: str, what: str, evidence: str, rule: str) -> Event:
        event = Event(time.time(), fs, what, evidence, rule)
        self.events.append(event)
        if len(self.events) > self.limit:
            del self.events[: len(self.events) - self.limit]
        log.info("recovery %s: %s (%s) [%s]", fs or "-", what, evidence, rule)
        return event

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def as_dict(self, last_events: int = 40, last_migrations: int = 40) -> dict[str, Any]:
        """A summary over all migrations, and the most recent events and migrations.

        Bounded so that it fits an extended attribute (64 KiB) however long the mount
        has run: ``summary`` covers everything, the lists only the last entries.
        """
        moves = [m for m in self.migrations if m.kind != "referral"]
        ok = [m.seconds for m in moves if m.ok]
        summary = {
            "migrations": len(ok),
            "failed": len(moves) - len(ok),
            "referrals": len(self.migrations) - len(moves),
            "recovery_ms_median": round(statistics.median(ok) * 1000, 2) if ok else None,
            "recovery_ms_longest": round(max(ok) * 1000, 2) if ok else None,
        }
        return {
            "summary": summary,
            "events": [asdict(e) for e in self.events[-last_events:]] if last_events else [],
            "migrations": [
                dict(asdict(m), seconds=m.seconds) for m in self.migrations[-last_migrations:]
            ],
            "counters": dict(self.counters),
        }

"""The cluster's event log: what the servers did, in order, readable by a person.

Every control action (migrate, referral, reboot, lease expiry, ...) and every protocol
event worth seeing (a new client ID, a session, a delegation recalled, a grace period
starting or ending, SEQ4_STATUS_LEASE_MOVED set or cleared, NFS4ERR_MOVED returned the
first time to a client) is one :class:`Event`.  Events go to the logger
``contrib.testserver.events`` at INFO (so ``serve`` prints them) and are kept in memory
for ``events`` on the control socket and for tests (``EventLog.find``, ``wait_for``).
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

log = logging.getLogger("contrib.testserver.events")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened.

    Attributes:
        seq: position in the log (1, 2, ...).
        time: wall-clock time (seconds since the epoch).
        instance: the server instance it happened on (None: the cluster).
        kind: a short stable tag ("migrate", "lease-moved-set", "client-confirmed", ...).
        message: a sentence for a person, with the RFC section where it helps.
        details: machine-readable facts (JSON-compatible values).
    """

    seq: int
    time: float
    instance: str | None
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.time))
        frac = f"{self.time % 1:.3f}"[1:]
        where = f"[{self.instance}] " if self.instance else ""
        return f"{stamp}{frac} #{self.seq} {where}{self.kind}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "instance": self.instance,
            "kind": self.kind,
            "message": self.message,
            "details": self.details,
        }


class EventLog:
    """A bounded, ordered log of :class:`Event`; subscribers are woken on each event.

    Args:
        maxlen: how many events to keep (older ones are dropped; ``seq`` keeps counting).
    """

    def __init__(self, maxlen: int = 20_000) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self._changed = trio.Event()
        self.last_seq = 0

    def emit(self, instance: str | None, kind: str, message: str, **details: Any) -> Event:
        event = Event(next(self._seq), time.time(), instance, kind, message, details)
        self._events.append(event)
        self.last_seq = event.seq
        log.info("%s", event.line())
        self._changed.set()
        self._changed = trio.Event()
        return event

    def since(self, seq: int = 0) -> list[Event]:
        """Events with ``seq`` greater than the given one, oldest first."""
        return [e for e in self._events if e.seq > seq]

    def find(
        self, kind: str | None = None, instance: str | None = None, since: int = 0
    ) -> list[Event]:
        return [
            e
            for e in self._events
            if e.seq > since
            and (kind is None or e.kind == kind)
            and (instance is None or e.instance == instance)
        ]

    async def wait_for(self, predicate: Callable[[Event], bool], since: int = 0) -> Event:
        """Wait until an event after ``since`` satisfies ``predicate``; return it.

        Callers bound the wait with ``trio.fail_after``.
        """
        while True:
            for event in self.since(since):
                if predicate(event):
                    return event
                since = event.seq
            await self._changed.wait()

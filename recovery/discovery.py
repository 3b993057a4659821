"""The LEASE_MOVED migration discovery machine: sans-I/O (seed 001 sections 4.2.5, 4.2.6).

SEQ4_STATUS_LEASE_MOVED says that *some* file system on which this client holds state
has migrated away from the server that answered, and it stays set until the client
fetches a location attribute (fs_locations or fs_locations_info) for *every* such file
system (RFC 8881 sections 18.46.3 and 11.13).  The indication does not say which file system, so
one discovery task per server walks the file systems the client uses there:

* NON_OPERATING: nothing to do; a LEASE_MOVED seen anywhere starts a pass (NORMAL).
* NORMAL: fetch a location attribute and fs_status for each file system in turn.  A
  migrated one (fss_absent and not STATUS4_REFERRAL) gets migration recovery scheduled,
  without waiting for it, and the machine goes to VERIFYING.  After the last file system
  it verifies too.
* VERIFYING: send one COMPOUND to see whether LEASE_MOVED is still set.  Set: back to
  NORMAL, continuing the walk.  Clear, but another request saw LEASE_MOVED while the
  verification was in flight (the server state it reflects may be newer): verify again.
  Clear, and nobody saw it meanwhile: done, NON_OPERATING.

This module only decides.  ``recovery.manager`` performs the steps it asks for and feeds
back what it saw (HOUSE_STYLE.md: h11's table of ``(state, event) -> next state``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Generic, TypeVar


class DiscoveryState(Enum):
    NON_OPERATING = "non-operating"
    NORMAL = "normal"
    VERIFYING = "verifying"  # completion/verification, seed 001 section 4.2.6


# -- events fed in ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LeaseMovedSeen:
    """A reply carried SEQ4_STATUS_LEASE_MOVED; ``by_discovery`` if it was our own request."""

    by_discovery: bool = False


@dataclass(frozen=True, slots=True)
class FsChecked:
    """The location attribute and fs_status of ``fs`` were fetched."""

    fs: object
    migrated: bool  # fss_absent and fss_type != STATUS4_REFERRAL


@dataclass(frozen=True, slots=True)
class VerifyDone:
    """The verification COMPOUND returned; ``lease_moved`` is its SEQUENCE flag."""

    lease_moved: bool


Event = LeaseMovedSeen | FsChecked | VerifyDone


# -- steps asked for ----------------------------------------------------------------------
F = TypeVar("F")


@dataclass(frozen=True, slots=True)
class CheckFs(Generic[F]):
    """Fetch fs_locations(_info) and fs_status for ``fs``."""

    fs: F


@dataclass(frozen=True, slots=True)
class Verify:
    """Send a COMPOUND (a SEQUENCE is enough) and report LEASE_MOVED with ``VerifyDone``."""


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to do until the next LEASE_MOVED."""


class DiscoveryError(Exception):
    """An event that the current state does not accept (a bug in the caller)."""


S = DiscoveryState
#: (state, event type, condition) -> next state.  Conditions: "self" = LEASE_MOVED seen
#: by the discovery task's own request, "other" = by another request; "migrated" /
#: "present" for FsChecked; "set" / "clear" for VerifyDone.
TRANSITIONS: Final[dict[tuple[DiscoveryState, str], DiscoveryState]] = {
    (S.NON_OPERATING, "lease_moved:other"): S.NORMAL,
    (S.NON_OPERATING, "lease_moved:self"): S.NORMAL,
    (S.NORMAL, "lease_moved:other"): S.NORMAL,  # the running pass covers it
    (S.NORMAL, "lease_moved:self"): S.NORMAL,
    (S.NORMAL, "checked:present"): S.NORMAL,
    (S.NORMAL, "checked:migrated"): S.VERIFYING,
    (S.VERIFYING, "lease_moved:other"): S.VERIFYING,  # noted, used when the verify returns
    (S.VERIFYING, "lease_moved:self"): S.VERIFYING,
    (S.VERIFYING, "verify:set"): S.NORMAL,
    (S.VERIFYING, "verify:clear+noted"): S.VERIFYING,  # verify again
    (S.VERIFYING, "verify:clear"): S.NON_OPERATING,
}


def _key(event: Event, noted: bool) -> str:
    if isinstance(event, LeaseMovedSeen):
        return "lease_moved:self" if event.by_discovery else "lease_moved:other"
    if isinstance(event, FsChecked):
        return "checked:migrated" if event.migrated else "checked:present"
    if event.lease_moved:
        return "verify:set"
    return "verify:clear+noted" if noted else "verify:clear"


@dataclass
class Discovery(Generic[F]):
    """One server's discovery machine over the file systems the client uses there.

    Feed events with ``receive()``; ask ``next_step()`` what to do.  ``to_recover``
    collects migrated file systems found (the caller schedules their recovery and pops
    them); ``history`` records every transition for the event log.
    """

    state: DiscoveryState = DiscoveryState.NON_OPERATING
    pending: list[F] = field(default_factory=list)  # file systems not yet checked this pass
    noted_by_others: bool = False
    to_recover: list[F] = field(default_factory=list)
    history: list[tuple[DiscoveryState, str, DiscoveryState]] = field(default_factory=list)
    passes: int = 0
    _verify_sent: bool = False

    def receive(self, event: Event, filesystems: Sequence[F] = ()) -> DiscoveryState:
        """Apply one event; ``filesystems`` (those held on this server) start a pass.

        Raises:
            DiscoveryError: the event is not expected in this state (e.g. a VerifyDone
                while not verifying, or an FsChecked for a file system not asked for).
        """
        key = _key(event, self.noted_by_others)
        new = TRANSITIONS.get((self.state, key))
        if new is None:
            raise DiscoveryError(f"{key} not expected in state {self.state.value}")
        old = self.state
        if isinstance(event, LeaseMovedSeen):
            if old is S.NON_OPERATING:
                self._start_pass(filesystems)
            elif old is S.VERIFYING and not event.by_discovery:
                self.noted_by_others = True
        elif isinstance(event, FsChecked):
            if not self.pending or self.pending[0] != event.fs:
                raise DiscoveryError(f"FsChecked for {event.fs!r}, which was not asked for")
            self.pending.pop(0)
            if event.migrated:
                self.to_recover.append(event.fs)
        else:
            if not self._verify_sent:
                raise DiscoveryError("VerifyDone without a Verify step")
            self._verify_sent = False
            if event.lease_moved:
                if not self.pending:
                    self._start_pass(filesystems)  # walk again: something is still moved
            else:
                self.noted_by_others = False
        self.state = new
        self.history.append((old, key, new))
        return new

    def _start_pass(self, filesystems: Sequence[F]) -> None:
        self.pending = list(filesystems)
        self.passes += 1
        self.noted_by_others = False

    def next_step(self) -> CheckFs[F] | Verify | Idle:
        """What the discovery task should do now."""
        if self.state is S.NON_OPERATING:
            return Idle()
        if self.state is S.NORMAL:
            if self.pending:
                return CheckFs(self.pending[0])
            # The whole pass found nothing more: verify whether the indication cleared.
            self.state = S.VERIFYING
            self.history.append((S.NORMAL, "pass-complete", S.VERIFYING))
        self._verify_sent = True
        return Verify()

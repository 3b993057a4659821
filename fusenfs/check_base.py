"""The parts of ``fusenfs check`` every check shares: outcomes, results, the registry.

A check is a :class:`CheckSpec`: a stable code ("SESS3"), a title, the RFC 8881 (or seed)
section it rests on, what it does, the rule in plain words, the COMPOUNDs it sends (for
``--explain``), and an async function that returns a :class:`Finding`.  Failing steps
raise :class:`CheckFailed` with what was sent, what came back and what the RFC asks for;
anything a check cannot do against a server (the export is read-only, no referral in
it, no ``--migrate-cmd``) is NOT-SUPPORTED with the reason, raised as
:class:`NotSupported`.

Outcomes (RFC 2119 words decide which): FAIL when the server breaks a MUST (or the
checker could not get an answer at all); WARN when it departs from a SHOULD, or from a
behaviour the RFC allows but clients depend on; PASS otherwise.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.Enum):
    """The result of one check, in the order of severity."""

    PASS = "PASS"
    NOT_SUPPORTED = "NOT-SUPPORTED"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(slots=True)
class Finding:
    """What a check found.

    Attributes:
        outcome: PASS, FAIL, WARN or NOT-SUPPORTED.
        summary: one line for the report.
        sent: the COMPOUND(s) behind the verdict, e.g. "SEQUENCE(slot 0, seq 2) PUTROOTFH".
        got: what came back, e.g. "NFS4_OK, 3 results, reply 212 bytes".
        expected: what RFC 8881 asks for, in plain words.
        details: evidence and timings, one line each (shown for every outcome but PASS,
            and for PASS when ``show_details``).
        show_details: print ``details`` even when the check passed (timings).
    """

    outcome: Outcome
    summary: str
    sent: str = ""
    got: str = ""
    expected: str = ""
    details: list[str] = field(default_factory=list)
    show_details: bool = False


class CheckFailed(Exception):
    """A step of a check failed: carries the FAIL (or WARN) finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.summary)
        self.finding = finding


class NotSupported(Exception):
    """The check cannot run against this server (the message says why)."""


def fail(
    summary: str,
    *,
    sent: str = "",
    got: str = "",
    expected: str = "",
    details: list[str] | None = None,
) -> CheckFailed:
    """A :class:`CheckFailed` with a FAIL finding (``raise fail(...)``)."""
    return CheckFailed(Finding(Outcome.FAIL, summary, sent, got, expected, list(details or [])))


def warn(
    summary: str,
    *,
    sent: str = "",
    got: str = "",
    expected: str = "",
    details: list[str] | None = None,
) -> CheckFailed:
    """A :class:`CheckFailed` with a WARN finding: a SHOULD not followed."""
    return CheckFailed(Finding(Outcome.WARN, summary, sent, got, expected, list(details or [])))


def passed(summary: str, details: list[str] | None = None, show: bool = False) -> Finding:
    return Finding(Outcome.PASS, summary, details=list(details or []), show_details=show)


CheckFunction = Callable[[Any], Awaitable[Finding]]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check of ``fusenfs check``.

    Attributes:
        code: stable identifier, letters then a number ("EID1", "MIG4").
        title: a few words for the report line.
        section: the RFC 8881 or seed section it checks, e.g. "RFC 8881 2.10.6.4".
        does: what the check does, for ``--explain``.
        rule: the rule it rests on, in plain words, for ``--explain``.
        compounds: the COMPOUNDs it sends, one per line, for ``--explain``.
        run: ``async def run(ctx) -> Finding``.
        migration: needs ``--migrate-cmd``.
    """

    code: str
    title: str
    section: str
    does: str
    rule: str
    compounds: tuple[str, ...]
    run: CheckFunction
    migration: bool = False

    @property
    def group(self) -> str:
        """The letters of the code: "SESS" for "SESS3"."""
        return self.code.rstrip("0123456789")


@dataclass(slots=True)
class Result:
    """One check's outcome in a run, with how long it took (seconds)."""

    spec: CheckSpec
    finding: Finding
    seconds: float

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "code": self.spec.code,
            "title": self.spec.title,
            "section": self.spec.section,
            "outcome": f.outcome.value,
            "summary": f.summary,
            "sent": f.sent,
            "got": f.got,
            "expected": f.expected,
            "details": list(f.details),
            "seconds": round(self.seconds, 3),
        }


REGISTRY: dict[str, CheckSpec] = {}


def check(
    code: str,
    title: str,
    section: str,
    *,
    does: str,
    rule: str,
    compounds: tuple[str, ...],
    migration: bool = False,
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under ``code`` (in definition order = report order).

    Raises:
        ValueError: the code is already registered or malformed.
    """

    def register(fn: CheckFunction) -> CheckFunction:
        if code in REGISTRY:
            raise ValueError(f"check code {code} registered twice")
        if not code[:1].isalpha() or not code[-1:].isdigit():
            raise ValueError(f"check code {code!r}: letters then a number")
        REGISTRY[code] = CheckSpec(code, title, section, does, rule, compounds, fn, migration)
        return fn

    return register


def exit_status(results: list[Result]) -> int:
    """0 when nothing failed, else 1 (``fusenfs check``'s exit status)."""
    return 1 if any(r.finding.outcome is Outcome.FAIL for r in results) else 0


def counts(results: list[Result]) -> dict[str, int]:
    """How many of each outcome, every outcome present (0 when none)."""
    out = {o.value: 0 for o in Outcome}
    for r in results:
        out[r.finding.outcome.value] += 1
    return out

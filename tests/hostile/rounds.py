"""Seeded rounds of the client API against a fresh :class:`HostileServer` each.

One round: draw a :class:`~tests.hostile.server.Plan` from the round's seed, start a
server on 127.0.0.1, run one client (``ServerSession``, ``NFSClient`` or
``fusenfs.runner.probe``) against it under a deadline, and classify what came out.
A round passes when the client returned or raised only ``NFSClientError`` (groups of
them included), within ``timeo * (retrans + 1) + slack`` seconds, with no traceback
logged; anything else is a failure with the seed to re-run it.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import random
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import trio

from fusenfs import runner
from session.client import ANONYMOUS_STATEID, STAT_ATTRS, NFSClient
from session.errors import NFSClientError
from session.session import ServerSession, SessionOptions
from session.xdr import nfs4
from session.xdr.fattr import decode_fattr4

from .server import FILE_DATA, FILE_NAME, HOST, HostileServer, Plan

#: Which round is running in this task (log records are attributed to it).
CURRENT_ROUND: contextvars.ContextVar[int] = contextvars.ContextVar("hostile_round", default=-1)

KINDS: Final = ("session", "client", "probe")


def options_for(timeo: float, retrans: int) -> SessionOptions:
    """Session options of the rounds: DELAY/GRACE retries end with the same budget."""
    return SessionOptions(timeo=timeo, retrans=retrans, retry_limit=timeo * (retrans + 1))


def budget_for(options: SessionOptions) -> float:
    """Seconds a round may take: the retry budget, plus one ``timeo`` for destroying the
    session at the end (as ``fusenfs`` does) and a second for scheduling."""
    return options.timeo * (options.retrans + 1) + options.timeo + 1.0


@dataclass(slots=True)
class RoundResult:
    """What one round did.

    Attributes:
        outcome: "ok" (returned), "error" (only NFSClientError came out), or a failure:
            "crash" (anything else came out), "overrun" (finished after the budget),
            "hang" (still running at the hard limit), "traceback" (one was logged),
            "server-bug" (the hostile server itself failed).
    """

    index: int
    seed: int
    kind: str
    plan: Plan
    outcome: str
    detail: str
    elapsed: float
    actions: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome not in ("ok", "error")

    def report(self) -> str:
        lines = [
            f"round {self.index} kind={self.kind} seed={self.seed} {self.plan.describe()}: "
            f"{self.outcome} after {self.elapsed:.2f} s",
            f"    {self.detail}",
        ]
        lines += [f"    server: {a}" for a in self.actions[-8:]]
        return "\n".join(lines)


class TracebackCatcher(logging.Handler):
    """Collects log records that carry a traceback, by round."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_round: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            text = f"{record.name}: {record.getMessage()}: " + "".join(
                traceback.format_exception(*record.exc_info)[-3:]
            )
            self.by_round.setdefault(CURRENT_ROUND.get(), []).append(text.strip())


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def summarize(exc: BaseException) -> str:
    """One exception as ``Type: message`` plus its last frames."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in frames)
    return f"{type(exc).__name__}: {exc} [{where}]"


# -- the clients ---------------------------------------------------------------------------
async def _shutdown(session: ServerSession, timeo: float) -> None:
    """Destroy the session within one ``timeo`` (as ``fusenfs`` does at exit), shielded."""
    with trio.move_on_after(timeo, shield=True):
        await session.shutdown()


async def drive_session(port: int, options: SessionOptions, seed: int) -> None:
    """ServerSession.start, then one COMPOUND [PUTROOTFH, GETATTR], then shutdown.

    The checks here are ``ServerSession.compound``'s documented contract (one result
    per operation, of that operation's type); a violation is a client failure.
    """
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            host=HOST, port=port, co_ownerid=f"hostile/{seed}".encode(), options=options
        )
        try:
            await session.start(nursery)
            res = await session.compound(
                [nfs4.PUTROOTFH4args(), nfs4.GETATTR4args(attr_request=STAT_ATTRS)]
            )
            if len(res.resarray) != 2:
                raise AssertionError(f"compound: {len(res.resarray)} results for 2 operations")
            ga = res.resarray[1]
            if not isinstance(ga, nfs4.GETATTR4res) or ga.resok is None:
                raise AssertionError(f"compound: NFS4_OK but result 1 is {ga!r}")
            decode_fattr4(ga.resok.obj_attributes)
        finally:
            await _shutdown(session, options.timeo)
            nursery.cancel_scope.cancel()


async def drive_client(port: int, options: SessionOptions, seed: int) -> None:
    """NFSClient: mount, getattr, lookup, read (what a mount does first)."""
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            host=HOST, port=port, co_ownerid=f"hostile/{seed}".encode(), options=options
        )
        try:
            await session.start(nursery)
            client = NFSClient(session, "/", owner_prefix=b"hostile")
            await client.mount()
            await client.getattr(client.root_fh)
            fh, _ = await client.lookup(client.root_fh, FILE_NAME)
            data, _ = await client.read(fh, ANONYMOUS_STATEID, 0, len(FILE_DATA))
            if len(data) > len(FILE_DATA):
                raise AssertionError(f"read: {len(data)} bytes for {len(FILE_DATA)} asked")
        finally:
            await _shutdown(session, options.timeo)
            nursery.cancel_scope.cancel()


def probe_takes_options() -> bool:
    """Whether ``fusenfs.runner.probe`` accepts SessionOptions (its retry budget)."""
    return "options" in inspect.signature(runner.probe).parameters


async def drive_probe(port: int, options: SessionOptions, seed: int) -> None:
    """``fusenfs.runner.probe``: what ``fusenfs probe`` runs."""
    if probe_takes_options():
        await runner.probe(HOST, port, options)  # type: ignore[call-arg, unused-ignore]
    else:  # an older probe with the default 30 s timeo: the session API instead
        await drive_session(port, options, seed)


DRIVERS: Final[dict[str, Callable[[int, SessionOptions, int], Awaitable[None]]]] = {
    "session": drive_session,
    "client": drive_client,
    "probe": drive_probe,
}


# -- one round -------------------------------------------------------------------------------
def round_seed(base_seed: int, index: int) -> int:
    return base_seed * 1_000_003 + index


async def run_round(
    index: int,
    seed: int,
    kind: str,
    options: SessionOptions,
    catcher: TracebackCatcher,
    plan: Plan | None = None,
) -> RoundResult:
    """Run one round; never raises for what the client does (it is classified)."""
    CURRENT_ROUND.set(index)
    plan = plan or Plan.draw(random.Random(seed), seed)
    server = HostileServer(plan)
    budget = budget_for(options)
    hard_limit = 2 * budget
    error: BaseException | None = None
    async with trio.open_nursery() as servers:
        port = await servers.start(server.serve)
        started = trio.current_time()
        try:
            with trio.move_on_after(hard_limit) as scope:
                await DRIVERS[kind](port, options, seed)
        except Exception as exc:  # classified below: NFSClientError or a failure
            error = exc
        elapsed = trio.current_time() - started
        servers.cancel_scope.cancel()
    result = RoundResult(index, seed, kind, plan, "ok", "returned", elapsed, server.actions)
    if error is not None:
        bad = [e for e in leaves(error) if not isinstance(e, NFSClientError)]
        if bad:
            result.outcome, result.detail = "crash", summarize(bad[0])
        else:
            result.outcome, result.detail = "error", summarize(next(leaves(error)))
    if scope.cancelled_caught:
        result.outcome = "hang"
        result.detail = f"still running after {hard_limit:.1f} s (budget {budget:.1f} s)"
    elif elapsed > budget and not result.failed:
        result.outcome = "overrun"
        result.detail = f"took {elapsed:.2f} s, budget {budget:.1f} s; then {result.detail}"
    logged = catcher.by_round.pop(index, [])
    if logged and not result.failed:
        result.outcome, result.detail = "traceback", logged[0]
    if server.errors:
        result.outcome, result.detail = "server-bug", summarize(server.errors[0])
    return result

"""The client against a hostile NFSv4.1 server (issue 7's hostile-server checks).

- ``test_hostile_server_answers_right``: with no misbehaviour the server is a good one
  (so that every failure below is the client's).
- ``test_hostile_rounds``: a few hundred seeded rounds, each a fresh server and client,
  mixing random, truncated, inflated, wrong-xid, duplicate, stale, silent and closing
  replies, a 1 MiB attribute bitmap, oversized records, RPC errors, error statuses,
  inconsistent COMPOUNDs and junk callbacks.  Pass: only ``NFSClientError`` comes out,
  no round runs past ``timeo * (retrans + 1) + slack``, no traceback is logged, and
  the test process's peak RSS grows by less than 200 MB.
- ``test_huge_bitmap_fails_fast`` / ``test_probe_huge_bitmap``: the 1 MiB all-ones
  GETATTR bitmap through the API and through the real ``fusenfs probe`` (peak RSS of
  the child under 200 MB, a one-line error within a few seconds).
- ``test_oversized_reply_is_refused_without_retry``: a reply larger than the negotiated
  ca_maxresponsesize fails the call with "exceeds the negotiated maximum", at once.

Re-run one round: ``HOSTILE_SEED=S HOSTILE_ROUND=I pytest tests/hostile -k rounds``;
``HOSTILE_ROUNDS=N`` changes the number of rounds.
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from session.errors import CallTimeout, NFSClientError, XdrError
from session.rpc import RecordTooLarge
from session.session import ServerSession, SessionOptions

from .rounds import (
    DRIVERS,
    KINDS,
    RoundResult,
    TracebackCatcher,
    budget_for,
    leaves,
    options_for,
    probe_takes_options,
    round_seed,
    run_round,
)
from .server import HOST, HostileServer, Misbehaviour, Plan, ServerThread

TIMEO = 0.3
RETRANS = 1
OPTIONS = options_for(TIMEO, RETRANS)
BASE_SEED = int(os.environ.get("HOSTILE_SEED", "20240607"))
ROUNDS = int(os.environ.get("HOSTILE_ROUNDS", "300"))
ONLY_ROUND = os.environ.get("HOSTILE_ROUND")
PARALLEL = 4  # rounds at once: most of a round's time is spent waiting on a timer
MAX_FAILURES = 12  # stop starting rounds after this many failures (keeps the run short)
RSS_GROWTH_LIMIT = 200 * 1024 * 1024  # bytes
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def catcher() -> Iterator[TracebackCatcher]:
    handler = TracebackCatcher()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def _maxrss() -> int:
    """Peak RSS of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def test_hostile_server_answers_right(catcher: TracebackCatcher) -> None:
    plan = Plan(good_calls=1_000_000, misbehaviours=(Misbehaviour.SILENT,), seed=1)
    for index, kind in enumerate(KINDS):
        with trio.fail_after(10):
            result = await run_round(index, 1, kind, OPTIONS, catcher, plan=plan)
        assert (result.outcome, result.detail) == ("ok", "returned"), result.report()
        assert result.elapsed < 1.0, result.report()


@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [("hang", "hang"), ("slow", "overrun"), ("crash", "crash"), ("group", "crash"),
     ("nfs-group", "error"), ("logged", "traceback")],
)  # fmt: skip
async def test_round_harness_classifies(
    behaviour: str, outcome: str, catcher: TracebackCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness itself: what it must catch in a client is reported as a failure."""
    budget = budget_for(OPTIONS)

    async def client(port: int, options: SessionOptions, seed: int) -> None:
        if behaviour == "hang":
            await trio.sleep_forever()
        elif behaviour == "slow":
            await trio.sleep(budget + 0.2)
        elif behaviour == "crash":
            raise KeyError("boom")
        elif behaviour == "group":
            raise ExceptionGroup("g", [CallTimeout("t"), AssertionError("a")])
        elif behaviour == "nfs-group":
            inner = ExceptionGroup("h", [XdrError("x", 0, "")])
            raise ExceptionGroup("g", [CallTimeout("t"), inner])
        else:
            try:
                raise ValueError("inside")
            except ValueError:
                logging.getLogger("session").exception("logged with a traceback")

    monkeypatch.setitem(DRIVERS, "session", client)
    plan = Plan(good_calls=0, misbehaviours=(Misbehaviour.SILENT,), seed=5)
    with trio.fail_after(3 * budget + 5):
        result = await run_round(0, 5, "session", OPTIONS, catcher, plan=plan)
    assert result.outcome == outcome, result.report()
    assert result.failed == (outcome != "error")


async def test_hostile_rounds(catcher: TracebackCatcher) -> None:
    indexes = [int(ONLY_ROUND)] if ONLY_ROUND is not None else list(range(ROUNDS))
    results: list[RoundResult] = []
    failures: list[RoundResult] = []
    limiter = trio.CapacityLimiter(PARALLEL)
    rss_before = _maxrss()
    started = time.monotonic()

    async def one(index: int) -> None:
        async with limiter:
            if len(failures) >= MAX_FAILURES:
                return
            seed = round_seed(BASE_SEED, index)
            result = await run_round(index, seed, KINDS[index % len(KINDS)], OPTIONS, catcher)
            results.append(result)
            if result.failed:
                failures.append(result)

    # Each round bounds itself (2 x budget, then shutdown within one timeo); this only
    # guards against the harness itself hanging.
    with trio.fail_after(30 + len(indexes) * 2 * budget_for(OPTIONS) / PARALLEL):
        async with trio.open_nursery() as nursery:
            for index in indexes:
                nursery.start_soon(one, index)
    wall = time.monotonic() - started
    growth = _maxrss() - rss_before

    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    by_mode: dict[str, list[int]] = {}
    for r in failures:
        for m in r.plan.misbehaviours:
            by_mode.setdefault(m.value, []).append(r.index)
    summary = (
        f"{len(results)} rounds in {wall:.1f} s (seed {BASE_SEED}, probe with options: "
        f"{probe_takes_options()}): {counts}; peak RSS growth {growth / 2**20:.0f} MiB"
    )
    print(summary)
    if failures:
        stopped = " (stopped early)" if len(failures) >= MAX_FAILURES else ""
        text = "\n".join(r.report() for r in sorted(failures, key=lambda r: r.index))
        pytest.fail(
            f"{len(failures)} failing rounds{stopped}; {summary}\n"
            f"misbehaviours in failing rounds: {by_mode}\n{text}\n"
            f"re-run one: HOSTILE_SEED={BASE_SEED} HOSTILE_ROUND=<round>",
            pytrace=False,
        )
    assert growth < RSS_GROWTH_LIMIT, summary


async def _start_errors(session: ServerSession) -> list[Exception]:
    """``session.start`` in a nursery of its own; what it raised (group members flattened)."""
    try:
        async with trio.open_nursery() as nursery:
            try:
                await session.start(nursery)
            finally:
                nursery.cancel_scope.cancel()
    except Exception as exc:
        return [e for e in leaves(exc) if isinstance(e, Exception)]
    return []


async def test_huge_bitmap_fails_fast() -> None:
    """The API: a 1 MiB all-ones GETATTR bitmap is a clear XdrError within a second."""
    plan = Plan(good_calls=0, misbehaviours=(Misbehaviour.HUGE_BITMAP,), seed=2)
    server = HostileServer(plan)
    rss_before = _maxrss()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            started = trio.current_time()
            session = ServerSession(HOST, port, b"hostile/huge", options=OPTIONS)
            errors = await _start_errors(session)
            elapsed = trio.current_time() - started
            nursery.cancel_scope.cancel()
    assert len(errors) == 1 and isinstance(errors[0], NFSClientError), errors
    assert "fattr4" in str(errors[0]), errors
    assert elapsed < 1.0
    assert _maxrss() - rss_before < 100 * 1024 * 1024
    assert any("GETATTR" in a and "huge-bitmap (GETATTR)" in a for a in server.actions)


async def test_oversized_reply_is_refused_without_retry() -> None:
    """A reply larger than the negotiated size fails its call at once, not after the
    retry budget, with the sizes in the message (issue 7, item 2)."""
    plan = Plan(good_calls=2, misbehaviours=(Misbehaviour.OVERSIZED,), seed=3)
    server = HostileServer(plan)
    options = options_for(2.0, 1)  # a 4 s budget: a re-sending client would use it up
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            started = trio.current_time()
            session = ServerSession(HOST, port, b"hostile/oversized", options=options)
            errors = await _start_errors(session)
            elapsed = trio.current_time() - started
            nursery.cancel_scope.cancel()
    assert errors, "the oversized reply was accepted"
    assert all(isinstance(e, NFSClientError) for e in errors), errors
    message = str(errors[0])
    assert "exceeds the negotiated maximum" in message, (message, server.actions)
    assert isinstance(errors[0], RecordTooLarge) or "reply of" in message
    assert elapsed < options.timeo, (elapsed, server.actions)
    assert server.calls == 3, server.actions  # refused once, not re-sent


#: Runs ``fusenfs`` and writes the peak RSS of this very process image (VmHWM, kB)
#: to the file named by argv[1]: ``ru_maxrss`` of a child would also count the test
#: process it was forked from (Linux carries the pre-exec peak over an execve).
_MEASURED_CLI = """
import sys
from fusenfs.cli import main

def peak(path):
    with open('/proc/self/status') as f:
        kb = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    with open(path, 'w') as out:
        out.write(kb)

path = sys.argv.pop(1)
try:
    code = main(sys.argv[1:])
finally:
    peak(path)
sys.exit(code)
"""


def _run_cli(args: list[str], timeout: float) -> tuple[int, str, str, float, int]:
    """Run ``fusenfs ARGS``: (exit status, stdout, stderr, seconds, peak RSS of that
    process in bytes).  The child is killed at ``timeout``."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as hwm,
    ):
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEASURED_CLI, hwm.name, *args],
            cwd=REPO,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError(
                f"fusenfs {' '.join(args)} still running after {timeout} s"
            ) from None
        elapsed = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        peak_kb = int(hwm.read().strip() or 0)
        return status, out.read().decode(), err.read().decode(), elapsed, peak_kb * 1024


def test_probe_huge_bitmap() -> None:
    """``fusenfs probe`` against a server sending a 1 MiB all-ones bitmap in the root
    GETATTR: a non-zero exit within a few seconds, one clear line, RSS under 200 MB."""
    plan = Plan(good_calls=0, misbehaviours=(Misbehaviour.HUGE_BITMAP,), seed=4)
    with ServerThread(plan) as thread:
        status, out, err, elapsed, rss = _run_cli(["probe", f"{HOST}:{thread.port}"], 60)
        actions = list(thread.server.actions)
    lines = [line for line in err.splitlines() if line.strip()]
    print(
        f"fusenfs probe: exit {status} in {elapsed:.2f} s, peak RSS {rss / 2**20:.0f} MiB: {err!r}"
    )
    assert status != 0, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "fattr4" in lines[0], lines[0]
    assert elapsed < 5.0, (elapsed, lines)
    assert rss < 200 * 1024 * 1024, rss
    assert any("huge-bitmap (GETATTR)" in a for a in actions), actions

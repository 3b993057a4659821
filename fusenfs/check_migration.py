"""Migration checks: the operator moves the export, the project's own client recovers.

With ``--migrate-cmd`` the checker runs four scenarios, each a real migration made by the
operator's command while a fresh fusenfs client (``ServerSession``, ``NFSClient`` and the
``StateManager`` of ``recovery/``) holds state on the export:

* ``held`` ({tsm} = tsm): an open, a byte-range lock and a stream of FILE_SYNC WRITEs in
  flight.  MIG1 (NFS4ERR_MOVED on held state, the writes survive), MIG2 (Transparent
  State Migration: what the destination's EXCHANGE_ID and TEST_STATEID show), MIG3
  (session transfer), MIG4 (fs_status and fs_locations at the source afterwards).
* ``idle`` ({tsm} = tsm): an open that is not touched.  MIG5: SEQ4_STATUS_LEASE_MOVED
  on the next SEQUENCE, found by the LEASE_MOVED discovery task.
* ``no-tsm`` ({tsm} = no-tsm): an open and a lock, idle.  MIG6: the destination's
  per-file-system grace period (another client's OPEN gets NFS4ERR_GRACE there), the
  reclaims, RECLAIM_COMPLETE(rca_one_fs), then NFS4ERR_NO_GRACE for a late reclaim.
* ``freeze`` ({tsm} = tsm, {freeze} = --freeze): WRITEs in flight while the server
  answers NFS4ERR_DELAY.  MIG7.

The client's event log (``recovery.events``) gives each decision with its evidence; the
checks report it with the timings the client saw.  Without ``--migrate-cmd`` every MIG
check is NOT-SUPPORTED, saying why.
"""

from __future__ import annotations

import contextlib
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from fusenfs.check_base import CheckFailed, Finding, NotSupported, check, fail, passed, warn
from fusenfs.check_context import CheckContext
from fusenfs.check_wire import Wire
from recovery.events import Event, MigrationRecord
from recovery.locations import parse_server
from recovery.manager import StateManager
from recovery.migration import test_stateids
from session.client import NFSClient, OpenResult
from session.errors import NFSClientError
from session.mount import FileSystem
from session.session import ServerSession, SessionOptions
from session.state import LockState
from session.status import NFS4Error
from session.xdr import nfs4
from session.xdr.const import (
    FATTR4,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    fs4_status_type,
    nfs_lock_type4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
    opentype4,
    stable_how4,
)
from session.xdr.fattr import bitmap4_from

S = nfsstat4
BLOCK = 4096
LOCK_RANGE = (0, 4096)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    tsm: bool
    freeze: bool


SCENARIOS = {
    "held": Scenario("held", True, False),
    "idle": Scenario("idle", True, False),
    "no-tsm": Scenario("no-tsm", False, False),
    "freeze": Scenario("freeze", True, True),
}


@dataclass(slots=True)
class Writer:
    """FILE_SYNC WRITEs of numbered 4 KiB blocks, one after another, while a migration
    happens: (start, end, error) per WRITE, times in ``time.monotonic()`` seconds."""

    done: list[tuple[float, float, str]] = field(default_factory=list)
    expected: bytearray = field(default_factory=bytearray)
    stop: trio.Event = field(default_factory=trio.Event)

    async def run(self, client: NFSClient, opened: OpenResult) -> None:
        index = 1
        while not self.stop.is_set():
            data = (b"%08d" % index) * (BLOCK // 8)
            started = time.monotonic()
            error = ""
            try:
                await client.write(
                    opened.fh, opened.state, index * BLOCK, data, stable_how4.FILE_SYNC4
                )
                end = index * BLOCK + BLOCK
                if len(self.expected) < end:
                    self.expected.extend(bytes(end - len(self.expected)))
                self.expected[index * BLOCK : end] = data
            except NFSClientError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.done.append((started, time.monotonic(), error))
            if error:
                return
            index += 1
            await trio.sleep(0.02)

    def errors(self) -> list[str]:
        return [e for _, _, e in self.done if e]

    def after(self, moment: float) -> int:
        return sum(1 for s, _, e in self.done if s >= moment and not e)

    def longest(self) -> float:
        return max((end - s for s, end, _ in self.done), default=0.0)


@dataclass(slots=True)
class Outcome:
    """What one scenario saw (shared by the checks that report on it)."""

    scenario: Scenario
    error: str = ""
    command: str = ""
    command_seconds: float = 0.0
    command_output: str = ""
    moved_at: float | None = None  # seconds after the command returned
    record: MigrationRecord | None = None
    events: list[Event] = field(default_factory=list)
    moved_errors: int = 0
    retries_delay: int = 0
    writer: Writer | None = None
    content_ok: bool | None = None
    stateid_codes: list[nfsstat4] = field(default_factory=list)
    lock_denied: bool | None = None
    source_probe: dict[str, Any] = field(default_factory=dict)
    lease_moved: dict[str, Any] = field(default_factory=dict)
    grace: dict[str, Any] = field(default_factory=dict)
    destination: tuple[str, int] | None = None
    held: int = 0

    def event_lines(self, *fragments: str) -> list[str]:
        out = []
        for e in self.events:
            if not fragments or any(f in e.what for f in fragments):
                out.append(
                    f"{e.what}: {e.evidence} [{e.rule}]" if e.evidence else f"{e.what} [{e.rule}]"
                )
        return out


# ---------------------------------------------------------------------- plumbing
def precondition(ctx: CheckContext) -> None:
    """Raises NotSupported when migration cannot be checked (no --migrate-cmd)."""
    if ctx.options.migrate_cmd:
        return
    reason = "no --migrate-cmd given: only the server's operator can move a file system"
    eid = ctx.eid
    if eid is not None and not eid.eir_flags & 0x2:
        reason += (
            "; and the server does not claim migration support (eir_flags lacks "
            "EXCHGID4_FLAG_SUPP_MOVED_MIGR)"
        )
    raise NotSupported(reason)


_E = TypeVar("_E", bound=BaseException)


def first(group: BaseExceptionGroup[_E]) -> _E:
    """The first leaf exception of a (nested) exception group."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf  # type: ignore[return-value]


def location(ctx: CheckContext) -> tuple[str, int, list[str]]:
    """Where the export is now: (host, port, path), updated after each migration."""
    here = ctx.cache.get("location")
    if here is None:
        here = (ctx.host, ctx.port, list(ctx.components))
        ctx.cache["location"] = here
    return here


def command_for(ctx: CheckContext, scenario: Scenario) -> str:
    """The --migrate-cmd with the placeholders filled in for this scenario."""
    host, port, path = location(ctx)
    count = int(ctx.cache.get("migrations", 0))
    targets = ctx.options.migrate_to
    values = {
        "fs": ctx.options.migrate_fs or (path[-1] if path else ""),
        "path": "/" + "/".join(path),
        "target": targets[count % len(targets)] if targets else "",
        "source": f"{host}:{port}",
        "tsm": "tsm" if scenario.tsm else "no-tsm",
        "freeze": f"{ctx.options.freeze:g}" if scenario.freeze else "0",
        "scenario": scenario.name,
        "server": ctx.host,
        "port": str(ctx.port),
    }
    assert ctx.options.migrate_cmd is not None
    return string.Formatter().vformat(ctx.options.migrate_cmd, (), values)


async def run_command(ctx: CheckContext, outcome: Outcome) -> None:
    """Run the migrate command (bounded by --migrate-timeout); record its timing.

    Raises:
        CheckFailed: it failed or timed out.
    """
    cmd = command_for(ctx, outcome.scenario)
    outcome.command = cmd
    started = time.monotonic()
    try:
        with trio.fail_after(ctx.options.migrate_timeout):
            proc = await trio.run_process(
                ["/bin/sh", "-c", cmd], capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        raise fail(
            f"the migrate command ran longer than {ctx.options.migrate_timeout:g} s",
            sent=cmd,
            expected="the command returns once the file system moved",
        ) from None
    outcome.command_seconds = time.monotonic() - started
    text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    outcome.command_output = text[-400:]
    if proc.returncode != 0:
        raise fail(
            f"the migrate command exited {proc.returncode}",
            sent=cmd,
            got=outcome.command_output,
            expected="exit status 0",
        )
    ctx.cache["migrations"] = int(ctx.cache.get("migrations", 0)) + 1


@dataclass(slots=True)
class Mounted:
    client: NFSClient
    mgr: StateManager
    dir_fh: bytes

    def fs_of(self, fh: bytes) -> FileSystem:
        fs = self.client.fs_of(fh)
        assert fs is not None
        return fs

    def session_of(self, fh: bytes) -> ServerSession:
        return self.client.session_for(self.client.fs_of(fh))


@contextlib.asynccontextmanager
async def mounted(ctx: CheckContext, tag: str) -> AsyncIterator[Mounted]:
    """A fusenfs client with recovery attached, at the export's current location, and the
    scratch directory's filehandle; every session destroyed afterwards."""
    host, port, path = location(ctx)
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            host,
            port,
            co_ownerid=ctx.owner(f"mig-{tag}"),
            options=SessionOptions(timeo=ctx.options.timeo, retrans=2, retry_limit=60),
        )
        mgr: StateManager | None = None
        client: NFSClient | None = None
        try:
            with trio.fail_after(ctx.options.timeo * 3):
                await session.start(nursery)
                client = NFSClient(
                    session, "/" + "/".join(path), owner_prefix=f"check-{tag}".encode()
                )
                await client.mount()
                mgr = StateManager(client, nursery)
                mgr.attach()
                dir_fh, _ = await client.lookup(client.root_fh, ctx.scratch_name.encode())
            yield Mounted(client, mgr, dir_fh)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(ctx.options.timeo):
                if client is not None:
                    # As at an unmount: delegations go back before the client ID (the
                    # clean-up's REMOVEs would otherwise wait for their recall).
                    with contextlib.suppress(NFSClientError):
                        await client.return_all_delegations()
                for each in mgr.sessions() if mgr is not None else [session]:
                    with contextlib.suppress(NFSClientError):
                        await each.shutdown()
            nursery.cancel_scope.cancel()


async def hold(
    m: Mounted, ctx: CheckContext, stem: str, lock: bool
) -> tuple[OpenResult, LockState | None]:
    opened = await m.client.open(
        m.dir_fh, ctx.file_name(stem), OPEN4_SHARE_ACCESS_BOTH, create=True
    )
    locked = (
        await m.client.lock(opened.state, b"mig-locker", *LOCK_RANGE, write=True) if lock else None
    )
    await m.client.write(opened.fh, opened.state, 0, b"L" * BLOCK, stable_how4.FILE_SYNC4)
    return opened, locked


async def release(m: Mounted, opened: OpenResult, locked: LockState | None) -> None:
    with trio.move_on_after(10), contextlib.suppress(NFSClientError):
        if locked is not None:
            await m.client.unlock(locked, *LOCK_RANGE)
        await m.client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)


async def probe_source(ctx: CheckContext, host: str, port: int, fh: bytes) -> dict[str, Any]:
    """At the source, with a handle of the moved file system: GETATTR of the location
    attributes, GETATTR(size) and GETFH (RFC 8881 sections 11.3, 11.18)."""
    w = await ctx.wire("mig-source", host=host, port=port)
    want = [FATTR4.FS_STATUS, FATTR4.FS_LOCATIONS, FATTR4.FS_LOCATIONS_INFO, FATTR4.FSID]
    locs = await w.seq([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(bitmap4_from(want))])
    plain = await w.seq(
        [nfs4.PUTFH4args(fh), nfs4.GETATTR4args(bitmap4_from([FATTR4.SIZE, FATTR4.TYPE]))]
    )
    getfh = await w.seq([nfs4.PUTFH4args(fh), nfs4.GETFH4args()])
    return {"locations": locs, "attrs": locs.attrs(), "plain": plain, "getfh": getfh}


def destination_of(
    probe: dict[str, Any], default_port: int, source: tuple[str, int]
) -> tuple[str, int, list[str]] | None:
    attrs = probe.get("attrs")
    if attrs is None or attrs.fs_locations is None:
        return None
    for loc in attrs.fs_locations.locations:
        for server in loc.server:
            try:
                host, port = parse_server(server, default_port)
            except ValueError:
                continue
            if (host, port) != source:
                return host, port, list(loc.rootpath)
    return None


def note_moved(outcome: Outcome, m: Mounted, command_end: float) -> None:
    outcome.events = list(m.mgr.log.events)
    outcome.moved_errors = m.client.stats.moved_errors
    for e in outcome.events:
        if e.what.startswith("migration recovery starts"):
            outcome.moved_at = max(0.0, e.when - command_end)
            break
    moves = [r for r in m.mgr.log.migrations if r.kind != "referral"]
    outcome.record = moves[-1] if moves else None


async def wait_for_record(m: Mounted, seconds: float) -> MigrationRecord | None:
    with trio.move_on_after(seconds):
        while True:
            moves = [r for r in m.mgr.log.migrations if r.kind != "referral"]
            if moves:
                return moves[-1]
            await trio.sleep(0.05)
    return None


def update_location(ctx: CheckContext, outcome: Outcome, m: Mounted, fh: bytes) -> None:
    """After recovery: where the export is now (the destination session, and the path
    the source's fs_locations gave for it)."""
    session = m.session_of(fh)
    host, port, path = location(ctx)
    probe = outcome.source_probe
    dest = destination_of(probe, port, (host, port)) if probe else None
    new_path = dest[2] if dest is not None and dest[:2] == (session.host, session.port) else path
    ctx.cache["location"] = (session.host, session.port, new_path or path)
    outcome.destination = (session.host, session.port)


# ---------------------------------------------------------------------- scenarios
async def scenario(ctx: CheckContext, name: str) -> Outcome:
    """Run a scenario once (later calls get the same outcome)."""
    precondition(ctx)
    ctx.need_scratch()
    key = f"scenario:{name}"
    cached = ctx.cache.get(key)
    if isinstance(cached, Outcome):
        return cached
    outcome = Outcome(SCENARIOS[name])
    ctx.cache[key] = outcome
    runner = {
        "held": held_scenario,
        "idle": idle_scenario,
        "no-tsm": no_tsm_scenario,
        "freeze": freeze_scenario,
    }[name]
    # The scenario runs tasks (the WRITE stream, the client's own): what fails arrives
    # wrapped in exception groups.
    try:
        await runner(ctx, outcome)
    except* CheckFailed as group:  # from run_command: reported by every check of the scenario
        f = first(group).finding
        outcome.error = f.summary + (f" ({f.got})" if f.got else "")
    except* NFSClientError as group:
        exc = first(group)
        outcome.error = outcome.error or f"{type(exc).__name__}: {exc}"
    return outcome


async def verify_content(m: Mounted, opened: OpenResult, writer: Writer) -> bool:
    expected = bytes(writer.expected)
    got = bytearray()
    offset = BLOCK
    while offset < len(expected):
        data, eof = await m.client.read(
            opened.fh, opened.state, offset, min(65536, len(expected) - offset)
        )
        got += bytes(data)
        offset += len(data)
        if eof or not data:
            break
    return bytes(got) == expected[BLOCK:]


async def lock_denied_elsewhere(ctx: CheckContext, dest: tuple[str, int], fh: bytes) -> bool | None:
    """Another client at the destination tests the held range: True if DENIED."""
    try:
        w: Wire = await ctx.wire("mig-lockt", host=dest[0], port=dest[1])
    except NFSClientError:
        return None
    reply = await w.seq(
        [
            nfs4.PUTFH4args(fh),
            nfs4.LOCKT4args(
                nfs_lock_type4.WRITE_LT, 10, 1, nfs4.state_owner4(w.clientid, b"intruder")
            ),
        ]
    )
    return reply.status == S.NFS4ERR_DENIED


async def held_scenario(ctx: CheckContext, outcome: Outcome) -> None:
    async with mounted(ctx, "held") as m:
        opened, locked = await hold(m, ctx, "mig-held", lock=True)
        source = (m.client.session.host, m.client.session.port)
        writer = Writer()
        outcome.writer = writer
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run, m.client, opened)
            await trio.sleep(0.2)
            try:
                await run_command(ctx, outcome)
                end = time.monotonic()
                wall_end = time.time()
                with trio.move_on_after(max(30.0, 3 * ctx.lease_time)):
                    while writer.after(end) < 3 and not writer.errors():
                        await trio.sleep(0.05)
            finally:
                writer.stop.set()
        outcome.source_probe = await probe_source(ctx, *source, m.client.root_fh)
        record = await wait_for_record(m, 5)
        note_moved(outcome, m, wall_end)
        if record is None:
            return
        update_location(ctx, outcome, m, opened.fh)
        outcome.content_ok = await verify_content(m, opened, writer)
        sids = [opened.state.stateid] + (
            [locked.stateid] if locked is not None and locked.stateid else []
        )
        outcome.held = len(sids)
        outcome.stateid_codes = await test_stateids(m.session_of(opened.fh), sids)
        if outcome.destination is not None:
            outcome.lock_denied = await lock_denied_elsewhere(ctx, outcome.destination, opened.fh)
        await release(m, opened, locked)


async def idle_scenario(ctx: CheckContext, outcome: Outcome) -> None:
    async with mounted(ctx, "idle") as m:
        opened, _ = await hold(m, ctx, "mig-idle", lock=False)
        session = m.client.session
        await run_command(ctx, outcome)
        end, wall_end = time.monotonic(), time.time()
        first = await session.compound([])  # the next lease renewal, nothing touched
        info: dict[str, Any] = {"flags": first.status_flags, "seen_after": time.monotonic() - end}
        record = await wait_for_record(m, max(10.0, 3 * ctx.lease_time))
        info["recovered_after"] = time.monotonic() - end
        note_moved(outcome, m, wall_end)
        with contextlib.suppress(NFSClientError):
            later = await session.compound([])
            info["flags_after"] = later.status_flags
        outcome.lease_moved = info
        if record is not None:
            update_location(ctx, outcome, m, opened.fh)
            outcome.stateid_codes = await test_stateids(
                m.session_of(opened.fh), [opened.state.stateid]
            )
        await release(m, opened, None)


async def no_tsm_scenario(ctx: CheckContext, outcome: Outcome) -> None:
    async with mounted(ctx, "no-tsm") as m:
        opened, locked = await hold(m, ctx, "mig-notsm", lock=True)
        source = (m.client.session.host, m.client.session.port)
        root_fh = m.client.root_fh
        await run_command(ctx, outcome)
        end, wall_end = time.monotonic(), time.time()
        outcome.source_probe = await probe_source(ctx, *source, root_fh)
        dest = destination_of(outcome.source_probe, source[1], source)
        grace: dict[str, Any] = {}
        bystander: Wire | None = None
        scratch_there: bytes | None = None
        if dest is not None:
            # Another client at the destination, before the holder has reclaimed.
            try:
                bystander = await ctx.wire("mig-bystander", host=dest[0], port=dest[1])
                scratch_there = await bystander.lookup_path([*dest[2], ctx.scratch_name])
                probe = bystander.open_args(
                    ctx.file_name("bystander"), OPEN4_SHARE_ACCESS_BOTH, create=True
                )
                early = await bystander.seq([nfs4.PUTFH4args(scratch_there), probe])
                grace["early"] = early
                grace["probe"] = probe
            except NFSClientError as exc:
                grace["early_error"] = str(exc)
        # Now the holder touches its file: NFS4ERR_MOVED, recovery, reclaims.
        await m.client.read(opened.fh, opened.state, 0, 16)
        record = await wait_for_record(m, 10)
        grace["recovered_after"] = time.monotonic() - end
        note_moved(outcome, m, wall_end)
        if record is None:
            outcome.grace = grace
            return
        update_location(ctx, outcome, m, opened.fh)
        outcome.held = 2
        dest_session = m.session_of(opened.fh)
        late: list[nfs4.ArgOp] = [
            nfs4.PUTFH4args(opened.fh),
            nfs4.OPEN4args(
                0,
                OPEN4_SHARE_ACCESS_BOTH | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
                0,
                nfs4.open_owner4(dest_session.clientid, opened.state.owner),
                nfs4.openflag4(opentype4.OPEN4_NOCREATE),
                nfs4.open_claim4(
                    open_claim_type4.CLAIM_PREVIOUS,
                    delegate_type=open_delegation_type4.OPEN_DELEGATE_NONE,
                ),
            ),
        ]
        try:
            await dest_session.compound(late)
            grace["late"] = S.NFS4_OK
        except NFS4Error as exc:
            grace["late"] = exc.status
        if bystander is not None and scratch_there is not None and "probe" in grace:
            after = None
            with trio.move_on_after(max(10.0, 2 * ctx.lease_time)):
                while True:
                    after = await bystander.seq([nfs4.PUTFH4args(scratch_there), grace["probe"]])
                    if after.status != S.NFS4ERR_GRACE:
                        break
                    await trio.sleep(0.2)
            grace["after"] = after
        outcome.grace = grace
        outcome.stateid_codes = await test_stateids(
            dest_session,
            [opened.state.stateid] + ([locked.stateid] if locked and locked.stateid else []),
        )
        await release(m, opened, locked)


async def freeze_scenario(ctx: CheckContext, outcome: Outcome) -> None:
    async with mounted(ctx, "freeze") as m:
        opened, locked = await hold(m, ctx, "mig-freeze", lock=False)
        writer = Writer()
        outcome.writer = writer
        before = m.client.session.stats.retries_delay
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run, m.client, opened)
            await trio.sleep(0.2)
            try:
                await run_command(ctx, outcome)
                end, wall_end = time.monotonic(), time.time()
                with trio.move_on_after(max(30.0, 3 * ctx.lease_time)):
                    while writer.after(end) < 3 and not writer.errors():
                        await trio.sleep(0.05)
            finally:
                writer.stop.set()
        outcome.retries_delay = m.client.session.stats.retries_delay - before
        record = await wait_for_record(m, 5)
        note_moved(outcome, m, wall_end)
        if record is not None:
            update_location(ctx, outcome, m, opened.fh)
            outcome.content_ok = await verify_content(m, opened, writer)
        await release(m, opened, locked)


# ---------------------------------------------------------------------- reporting
def common(outcome: Outcome) -> None:
    """Raises FAIL for a scenario that could not run or saw no migration."""
    if outcome.error:
        raise fail(
            f"the {outcome.scenario.name} scenario failed: {outcome.error}",
            sent=outcome.command,
            got=outcome.command_output or outcome.error,
            expected="the command moves the file system and exits 0; the client recovers",
            details=outcome.event_lines()[-8:],
        )
    if outcome.record is None:
        raise fail(
            "no migration seen after the migrate command",
            sent=outcome.command,
            got=f"the client got no NFS4ERR_MOVED and no SEQ4_STATUS_LEASE_MOVED; command output: "
            f"{outcome.command_output or '(none)'}",
            expected="the file system absent at the source: NFS4ERR_MOVED to the client "
            "using it (11.3)",
        )
    if not outcome.record.ok:
        raise fail(
            f"the client could not recover: {outcome.record.error}",
            sent=outcome.command,
            details=outcome.event_lines()[-10:],
        )


def timings(outcome: Outcome) -> str:
    rec = outcome.record
    parts = [f"command {outcome.command_seconds:.2f} s"]
    if outcome.moved_at is not None:
        parts.append(f"recovery began {outcome.moved_at:.2f} s after it")
    if rec is not None:
        parts.append(f"recovery {rec.seconds:.2f} s")
    w = outcome.writer
    if w is not None and w.done:
        parts.append(f"{len(w.done)} WRITEs, longest {w.longest():.2f} s")
    return "; ".join(parts)


@check(
    "MIG1",
    "NFS4ERR_MOVED on held state, WRITEs in flight",
    "RFC 8881 11.5.5, 11.14",
    does="A fusenfs client opens a file, write-locks a range and keeps FILE_SYNC WRITEs going; "
    "the migrate command moves the export ({tsm}=tsm). The client must get NFS4ERR_MOVED, "
    "find the new location and go on: every WRITE succeeds, the data reads back, and "
    "another client at the destination finds the range locked.",
    rule="Once a file system has moved, the source answers NFS4ERR_MOVED to operations on "
    "it and gives its new location in fs_locations; the destination serves the same data "
    "and, with the state transferred or reclaimed, the same locks.",
    compounds=(
        "SEQUENCE PUTFH WRITE(FILE_SYNC)  (repeatedly, until NFS4ERR_MOVED)",
        "SEQUENCE PUTFH GETATTR(fsid, fs_locations, fs_locations_info, fs_status, "
        "mounted_on_fileid)",
        "EXCHANGE_ID / BIND_CONN_TO_SESSION or CREATE_SESSION at the destination",
        "SEQUENCE PUTFH READ ...; LOCKT from another client at the destination",
    ),
    migration=True,
)
async def mig1(ctx: CheckContext) -> Finding:
    outcome = await scenario(ctx, "held")
    common(outcome)
    w = outcome.writer
    assert w is not None and outcome.record is not None
    details = [
        *outcome.event_lines("migration recovery starts", "fetched location", "EXCHANGE_ID to"),
    ]
    if w.errors():
        raise fail(
            "a WRITE in flight failed across the migration",
            sent="WRITE(FILE_SYNC)",
            got=w.errors()[0],
            expected="the WRITE completed at the destination after recovery",
            details=details,
        )
    if not outcome.moved_errors:
        raise fail(
            "the client never got NFS4ERR_MOVED for the held file",
            got=f"trigger {outcome.record.trigger}",
            expected="NFS4ERR_MOVED on the next operation on the moved file system (11.3)",
            details=details,
        )
    if outcome.content_ok is False:
        raise fail(
            "the data read back at the destination differs from what was written",
            expected="the same data at every location of a migrated file system (11.5.5)",
            details=details,
        )
    if outcome.lock_denied is False:
        raise fail(
            "another client at the destination was not denied the locked range",
            sent="LOCKT(WRITE_LT, 10+1) from another client at the destination",
            got="not NFS4ERR_DENIED",
            expected="NFS4ERR_DENIED: the lock moved with the file system",
            details=details,
        )
    rec = outcome.record
    return passed(
        f"{rec.source} -> {rec.destination}: {outcome.moved_errors} NFS4ERR_MOVED, no WRITE "
        f"failed, data and lock intact; {timings(outcome)}",
        details,
        show=True,
    )


@check(
    "MIG2",
    "Transparent State Migration evidence",
    "RFC 8881 11.12; seed 001 4.2.2",
    does="From the held scenario: how the destination answered the client's EXCHANGE_ID "
    "(client ID confirmed or not, known or not), the client's decision, and TEST_STATEID "
    "of the open and lock stateids at the destination after recovery.",
    rule="With TSM the destination knows the client's state: EXCHANGE_ID returns a confirmed "
    "client ID (a transferred one, or the client's own there), and the stateids from the "
    "source are valid (TEST_STATEID NFS4_OK) -- or, if some were lost, the SEQ4_STATUS "
    "revoked-state bits say so. Without TSM the client ID is new and unconfirmed and the "
    "client reclaims in a grace period.",
    compounds=("EXCHANGE_ID at the destination", "SEQUENCE TEST_STATEID(open, lock)"),
    migration=True,
)
async def mig2(ctx: CheckContext) -> Finding:
    outcome = await scenario(ctx, "held")
    common(outcome)
    rec = outcome.record
    assert rec is not None
    details = outcome.event_lines(
        "initial migration status", "TSM", "no TSM", "reclaim", "TEST_STATEID"
    )
    codes = ", ".join(c.name for c in outcome.stateid_codes)
    if (
        rec.decision == "TSM"
        and rec.tested == 0
        and any(c != S.NFS4_OK for c in outcome.stateid_codes)
    ):
        raise fail(
            "the destination claims TSM (a confirmed client ID) but the stateids are not "
            "valid there",
            sent="TEST_STATEID(open, lock) at the destination",
            got=codes,
            expected="NFS4_OK for transferred state, or SEQ4_STATUS revoked bits for what was lost",
            details=details,
        )
    if any(c != S.NFS4_OK for c in outcome.stateid_codes):
        raise fail(
            "the held state is not valid at the destination after recovery",
            sent="TEST_STATEID",
            got=codes,
            expected="NFS4_OK: transferred (TSM) or reclaimed",
            details=details,
        )
    how = f"{rec.decision}: reclaimed {rec.reclaimed}, tested {rec.tested}, freed {rec.freed}"
    return passed(f"{how}; TEST_STATEID at the destination: {codes}", details, show=True)


@check(
    "MIG3",
    "session transfer",
    "RFC 8881 11.12; seed 001 4.2.7",
    does="From the held scenario: whether the client could keep its session at the "
    "destination (BIND_CONN_TO_SESSION accepted) or had to create one, and whether the "
    "WRITEs went on in it.",
    rule="With TSM a server may transfer the sessions too; then BIND_CONN_TO_SESSION at the "
    "destination succeeds and the slots go on (relaxed until each is used again). "
    "Otherwise BIND_CONN_TO_SESSION fails and the client creates a session on the "
    "destination's client ID; both are correct.",
    compounds=(
        "BIND_CONN_TO_SESSION(the source's session) at the destination",
        "CREATE_SESSION if refused",
    ),
    migration=True,
)
async def mig3(ctx: CheckContext) -> Finding:
    outcome = await scenario(ctx, "held")
    common(outcome)
    rec = outcome.record
    assert rec is not None and outcome.writer is not None
    details = outcome.event_lines("session:")
    if outcome.writer.errors():
        raise fail(
            "WRITEs failed on the destination's session",
            got=outcome.writer.errors()[0],
            details=details,
        )
    return passed(
        f"{rec.session}; {outcome.writer.after(0)} WRITEs done, none failed", details, show=True
    )


@check(
    "MIG4",
    "the source after the move",
    "RFC 8881 11.3, 11.16, 11.18",
    does="After the held scenario's migration, asks the source, with the file system's old "
    "root filehandle: GETATTR of fs_status, fs_locations and fs_locations_info; GETATTR of "
    "size and type; GETFH.",
    rule="At the source the file system is now absent: only a GETATTR asking a location "
    "attribute works (fs_status says absent, and not STATUS4_REFERRAL for a file system "
    "that was here; fs_locations names where it went); GETATTR of other attributes and "
    "GETFH get NFS4ERR_MOVED.",
    compounds=(
        "SEQUENCE PUTFH(old root) GETATTR(fs_status, fs_locations, fs_locations_info, fsid)",
        "SEQUENCE PUTFH(old root) GETATTR(size, type)",
        "SEQUENCE PUTFH(old root) GETFH",
    ),
    migration=True,
)
async def mig4(ctx: CheckContext) -> Finding:
    outcome = await scenario(ctx, "held")
    common(outcome)
    probe = outcome.source_probe
    locs = probe["locations"]
    attrs = probe["attrs"]
    details = [
        f"locations: {locs.got}",
        f"GETATTR(size, type): {probe['plain'].got}",
        f"GETFH: {probe['getfh'].got}",
    ]
    if locs.status != S.NFS4_OK or attrs is None or attrs.fs_locations is None:
        raise fail(
            "the source does not give the moved file system's locations",
            sent=locs.sent,
            got=locs.got,
            expected="NFS4_OK with fs_locations naming the destination",
            details=details,
        )
    for reply, what in (
        (probe["plain"], "GETATTR without a location attribute"),
        (probe["getfh"], "GETFH"),
    ):
        if reply.status != S.NFS4ERR_MOVED:
            raise fail(
                f"{what} at the source did not get NFS4ERR_MOVED",
                sent=reply.sent,
                got=reply.got,
                expected="NFS4ERR_MOVED: the file system is absent there",
                details=details,
            )
    st = attrs.fs_status
    if st is not None and not st.fss_absent:
        raise fail(
            "fs_status at the source says present after the move",
            sent=locs.sent,
            got=f"fss_absent FALSE, {st.fss_type.name}",
            expected="fss_absent TRUE",
            details=details,
        )
    if st is not None and st.fss_type == fs4_status_type.STATUS4_REFERRAL:
        raise warn(
            "fs_status at the source calls the migrated file system a referral",
            sent=locs.sent,
            got="STATUS4_REFERRAL",
            expected="another fss_type: clients tell migration from referral by it",
            details=details,
        )
    servers = [
        ",".join(loc.server) + ":/" + "/".join(loc.rootpath) for loc in attrs.fs_locations.locations
    ]
    status = f"fs_status absent, {st.fss_type.name}" if st is not None else "no fs_status"
    return passed(
        f"{status}; fs_locations {'; '.join(servers)}; other operations NFS4ERR_MOVED", details
    )


@check(
    "MIG5",
    "SEQ4_STATUS_LEASE_MOVED on idle state",
    "RFC 8881 18.46.3, 11.14",
    does="A fusenfs client holds an open on the export and does nothing; after the migrate "
    "command it sends only a lease renewal (a bare SEQUENCE). The LEASE_MOVED discovery "
    "task must find the moved file system, recover it, and see the flag clear.",
    rule="When a file system on which the client holds state moves, the source sets "
    "SEQ4_STATUS_LEASE_MOVED in every SEQUENCE reply until the client has fetched "
    "fs_locations or fs_locations_info for each such file system: a client that touches "
    "nothing still learns of the move.",
    compounds=(
        "SEQUENCE (lease renewal)",
        "SEQUENCE PUTFH GETATTR(fsid, fs_locations, fs_locations_info, fs_status, ...)",
        "SEQUENCE (verification: LEASE_MOVED clear)",
    ),
    migration=True,
)
async def mig5(ctx: CheckContext) -> Finding:
    outcome = await scenario(ctx, "idle")
    info = outcome.lease_moved
    flags = int(info.get("flags", 0))
    if outcome.error:
        common(outcome)
    details = outcome.event_lines(
        "a file system we hold state on migrated", "discovery", "migration recovery starts"
    )
    if not flags & 0x80:
        if outcome.record is not None:
            raise warn(
                "the renewal after the move did not carry SEQ4_STATUS_LEASE_MOVED",
                sent="SEQUENCE (lease renewal)",
                got=f"sr_status_flags {flags:#x}",
                expected="SEQ4_STATUS_LEASE_MOVED until the client fetches the locations",
                details=details,
            )
        raise fail(
            "an idle client was not told that its file system moved",
            sent="SEQUENCE (lease renewal)",
            got=f"sr_status_flags {flags:#x}; no recovery",
            expected="SEQ4_STATUS_LEASE_MOVED (18.46.3)",
            details=details,
        )
    common(outcome)
    rec = outcome.record
    assert rec is not None
    after = info.get("flags_after")
    if after is not None and after & 0x80:
        raise fail(
            "SEQ4_STATUS_LEASE_MOVED stayed set after the client fetched the locations",
            sent="SEQUENCE after recovery",
            got=f"sr_status_flags {after:#x}",
            expected="the flag clear once fs_locations was fetched for every moved file system",
            details=details,
        )
    return passed(
        f"LEASE_MOVED on the first renewal ({info['seen_after']:.2f} s after the command); "
        f"trigger {rec.trigger}; "
        f"recovered {info['recovered_after']:.2f} s after the command ({rec.decision}); "
        "flag clear afterwards",
        details,
        show=True,
    )


@check(
    "MIG6",
    "per-file-system grace and rca_one_fs",
    "RFC 8881 11.12, 18.51.3",
    does="A fusenfs client holds an open and a lock; the migrate command moves the export "
    "without TSM ({tsm}=no-tsm). Before the holder reclaims, another client at the "
    "destination tries an ordinary OPEN there; then the holder recovers (reclaims, "
    "RECLAIM_COMPLETE(rca_one_fs)); then it tries one more reclaim, and the other client "
    "opens again.",
    rule="Without TSM the destination gives the file system's clients a grace period of its "
    "own: reclaims (OPEN CLAIM_PREVIOUS, LOCK reclaim) succeed, ordinary locking there gets "
    "NFS4ERR_GRACE until the reclaimers are done. RECLAIM_COMPLETE with rca_one_fs ends one "
    "client's reclaims for that file system; a reclaim after it gets NFS4ERR_NO_GRACE.",
    compounds=(
        "(another client) SEQUENCE PUTFH OPEN(CLAIM_NULL, create)  -> NFS4ERR_GRACE",
        "SEQUENCE PUTFH OPEN(CLAIM_PREVIOUS); SEQUENCE PUTFH LOCK(reclaim)",
        "SEQUENCE PUTFH RECLAIM_COMPLETE(rca_one_fs=TRUE)",
        "SEQUENCE PUTFH OPEN(CLAIM_PREVIOUS)  -> NFS4ERR_NO_GRACE",
    ),
    migration=True,
)
async def mig6(ctx: CheckContext) -> Finding:
    outcome = await scenario(ctx, "no-tsm")
    common(outcome)
    rec = outcome.record
    assert rec is not None
    g = outcome.grace
    details = outcome.event_lines("initial migration status", "reclaim", "RECLAIM_COMPLETE")
    if rec.decision != "no TSM":
        raise NotSupported(
            f"the move was done with TSM ({rec.decision}) although {{tsm}} was no-tsm: "
            "no reclaim, no per-file-system grace to check"
        )
    if rec.reclaimed < outcome.held:
        raise fail(
            f"reclaims refused at the destination: {rec.reclaimed} of {outcome.held}",
            sent="OPEN(CLAIM_PREVIOUS), LOCK(reclaim) at the destination",
            expected="NFS4_OK in the destination's grace period",
            details=details,
        )
    late = g.get("late")
    if late == S.NFS4_OK:
        raise fail(
            "a reclaim after RECLAIM_COMPLETE(rca_one_fs) was accepted",
            sent="OPEN(CLAIM_PREVIOUS)",
            got="NFS4_OK",
            expected="NFS4ERR_NO_GRACE (18.51.3)",
            details=details,
        )
    early = g.get("early")
    after = g.get("after")
    parts = [
        f"{rec.reclaimed} reclaims accepted, RECLAIM_COMPLETE(rca_one_fs) done, a late reclaim "
        f"{late.name if isinstance(late, nfsstat4) else late}"
    ]
    if early is not None:
        details.insert(0, f"another client's OPEN before the reclaims: {early.got}")
        if early.status != S.NFS4ERR_GRACE:
            raise warn(
                "an ordinary OPEN on the migrated file system was granted before its "
                "reclaims ended",
                sent=early.sent,
                got=early.got,
                expected="NFS4ERR_GRACE while clients reclaim there (unless no conflict is "
                "possible)",
                details=details,
            )
        parts.append("another client got NFS4ERR_GRACE meanwhile")
    if after is not None:
        details.append(f"its OPEN after the reclaims: {after.got}")
        if after.status != S.NFS4_OK:
            raise fail(
                "the grace period did not end after the reclaims",
                sent=after.sent,
                got=after.got,
                expected="NFS4_OK once every reclaimer is done or the period ends",
                details=details,
            )
        parts.append("and NFS4_OK after")
    return passed("; ".join(parts) + f"; recovery {rec.seconds:.2f} s", details, show=True)


@check(
    "MIG7",
    "NFS4ERR_DELAY during a freeze",
    "seed 001 4.2.7; RFC 8881 11.14",
    does="A fusenfs client keeps FILE_SYNC WRITEs going while the migrate command moves the "
    "export after asking the server to freeze it first ({freeze} seconds). The WRITEs must "
    "wait (NFS4ERR_DELAY, retried) and then go on at the destination.",
    rule="While a file system's state is being transferred the source may hold its "
    "operations off with NFS4ERR_DELAY; the client retries them, and once the move is done "
    "gets NFS4ERR_MOVED and recovers. No WRITE fails.",
    compounds=(
        "SEQUENCE PUTFH WRITE(FILE_SYNC)  -> NFS4ERR_DELAY, retried",
        "... NFS4ERR_MOVED, recovery",
    ),
    migration=True,
)
async def mig7(ctx: CheckContext) -> Finding:
    outcome = await scenario(ctx, "freeze")
    common(outcome)
    w = outcome.writer
    assert w is not None
    details = [timings(outcome)]
    if w.errors():
        raise fail(
            "a WRITE failed across the freeze and the move",
            got=w.errors()[0],
            expected="the WRITE waits (NFS4ERR_DELAY) and completes",
            details=details,
        )
    if outcome.retries_delay == 0:
        raise NotSupported(
            f"the server answered no NFS4ERR_DELAY during the move ({timings(outcome)}): "
            "no freeze, or the command ignores {freeze}"
        )
    return passed(
        f"{outcome.retries_delay} NFS4ERR_DELAY retries; longest WRITE {w.longest():.2f} s "
        f"(freeze {ctx.options.freeze:g} s asked); {len(w.done)} WRITEs, none failed; "
        f"content {'verified' if outcome.content_ok else 'not verified'}",
        details,
        show=True,
    )

"""Running a mount: session, client, FUSE, all in one trio nursery (PYFUSE3.md).

``serve_mount`` connects, establishes the session, finds the export's root, mounts the
FUSE file system and serves it until it is unmounted (``fusermount3 -u``) or the process
gets SIGINT/SIGTERM; then it destroys the session and client ID (RFC 8881 sections
18.37, 18.50).  ``probe`` asks a server what it says about itself.

Stopping is bounded by the mount's retry budget, ``timeo * (retrans + 1)`` seconds,
whatever the server does (DESIGN.md invariant 11).  On SIGTERM or SIGINT:

1. the write-behind data of open files is flushed for at most the budget, while FUSE
   goes on serving; each file whose data could not be written is logged by name
   (``data not written for PATH: REASON``);
2. the mount point is released: ``fusermount3 -u``; if that fails because the mount is
   busy (files open, or programs waiting in requests for a dead server), a lazy unmount
   ``fusermount3 -uz`` as ``umount -l`` does, with a log line saying so;
3. FUSE handlers still waiting are cancelled (``pyfuse3.main`` runs in a cancel scope of
   its own), the FUSE connection is closed (whoever still waits gets ENOTCONN), the
   sessions are destroyed with a short deadline (``DESTROY_DEADLINE``), and
   ``serve_mount`` returns.

A signal before the mount is up cancels the set-up: ``ready`` hears about it and nothing
is mounted.  When the kernel unmounts the file system (``fusenfs umount``), steps 1 and 3
run the same way.

A mounted file system is recorded in a *mount record*: a JSON file under
``/run/fusenfs/`` (or ``$XDG_RUNTIME_DIR/fusenfs/`` when /run is not writable), named by
a hash of the mount point, holding the serving process's pid and start time and the
mount's timeo and retrans (``MountRecord``).  ``fusenfs umount`` reads it to find the
process to stop and how long to wait; a record whose process is gone (or is another
process by now) is stale and ignored.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyfuse3
import trio

from fusenfs.cli import is_mounted, mount_device, mount_id
from fusenfs.fs import CacheTimes, NFSOperations
from fusenfs.locking import LOCAL_LOCK_KINDS, operations_class
from fusenfs.options import MountOptions
from recovery.manager import StateManager
from session.client import FSINFO_ATTRS, NFSClient
from session.errors import CallTimeout, NFSClientError
from session.session import ServerSession, SessionOptions, host_co_ownerid
from session.transport import resolve_address
from session.xdr import nfs4
from session.xdr.const import FATTR4, nfs_ftype4
from session.xdr.fattr import bitmap4_from, bitmap4_to_set, decode_fattr4

log = logging.getLogger("fusenfs")

#: Seconds given to DESTROY_SESSION and DESTROY_CLIENTID at exit (never more than timeo).
DESTROY_DEADLINE = 2.0
#: Seconds one fusermount3 run may take.
UNMOUNT_TIMEOUT = 10.0
#: ``fusenfs probe`` defaults: a server that does not answer fails within 15 s.
PROBE_TIMEO = 5.0
PROBE_RETRANS = 2


def session_options(opts: MountOptions) -> SessionOptions:
    """Session tunables from mount options (rsize/wsize cap the channel sizes)."""
    s = SessionOptions(timeo=opts.timeo, retrans=opts.retrans)
    if opts.rsize:
        s.max_response = opts.rsize + 4096
    if opts.wsize:
        s.max_request = opts.wsize + 4096
    return s


def retry_budget(timeo: float, retrans: int) -> float:
    """Seconds a call may wait for the server before it fails: ``timeo * (retrans + 1)``."""
    return timeo * (retrans + 1)


@dataclass(slots=True)
class MountRequest:
    host: str
    path: str
    mountpoint: str
    options: MountOptions


# ---------------------------------------------------------------------- mount records


@dataclass(frozen=True, slots=True)
class MountRecord:
    """What a running mount publishes about itself for ``fusenfs umount``.

    Attributes:
        pid: the process serving the mount.
        start_time: its start time (clock ticks since boot, /proc/PID/stat field 22):
            a pid reused by another process does not match.
        mountpoint: the absolute mount point.
        server: ``SERVER:/PATH``.
        timeo: seconds per try; retrans: re-sends (the mount's retry budget).
    """

    pid: int
    start_time: int
    mountpoint: str
    server: str
    timeo: float
    retrans: int

    @property
    def budget(self) -> float:
        """Seconds the mount process may spend flushing before it unmounts."""
        return retry_budget(self.timeo, self.retrans)


#: Kernel read-ahead for the mount, KiB.  FUSE starts a mount at 128 KiB: one 128 KiB
#: READ request at a time, each a round trip through the daemon.  With 4 MiB the
#: kernel keeps many in flight (the kernel NFS client likewise sizes its read-ahead
#: from rsize).  Measured here: sequential read 0.73 s -> 0.43 s for 256 MiB; 16 MiB
#: was slower again.
READAHEAD_KB = 4096


#: Seconds between two returns of freed heap memory to the system.
TRIM_INTERVAL = 10.0


async def _return_free_memory() -> None:
    """Give freed heap back to the system now and then (glibc ``malloc_trim``).

    READ and WRITE buffers are 1 MiB; glibc raises its mmap threshold after freeing a
    few, so later ones come from the heap, and a heap freed in the middle stays
    resident: after a large copy the mount kept about 200 MB it no longer used.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return  # not glibc
    while True:
        await trio.sleep(TRIM_INTERVAL)
        trim(0)


async def set_readahead(mountpoint: str, kib: int) -> None:
    """Set the kernel read-ahead of the mount (its bdi's read_ahead_kb), if allowed.

    The kernel sets it when it gets the answer to FUSE_INIT, so this waits until the
    main loop has answered (the value then stays), trying for a bounded time.
    """
    device = mount_device(mountpoint)
    if device is None:
        return
    knob = Path(f"/sys/class/bdi/{device}/read_ahead_kb")
    for _ in range(50):  # 50 * 0.1 s
        await trio.sleep(0.1)
        try:
            if knob.read_text().strip() == str(kib):
                return
            knob.write_text(f"{kib}\n")
        except OSError as e:
            log.debug("read-ahead of %s left as it is: %s", mountpoint, e)
            return


def record_dirs() -> list[Path]:
    """Where mount records live, in order of preference."""
    dirs = [Path("/run/fusenfs")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        dirs.append(Path(runtime) / "fusenfs")
    return dirs


def _record_name(mountpoint: str) -> str:
    return hashlib.sha256(mountpoint.encode()).hexdigest()[:24] + ".json"


def process_start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot, or None if it is not running."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def write_mount_record(req: MountRequest) -> Path | None:
    """Record this process as serving ``req.mountpoint``; the file written, or None."""
    start = process_start_time(os.getpid())
    if start is None:
        return None
    record = MountRecord(
        pid=os.getpid(),
        start_time=start,
        mountpoint=req.mountpoint,
        server=f"{req.host}:{req.path}",
        timeo=req.options.timeo,
        retrans=req.options.retrans,
    )
    problems = []
    for directory in record_dirs():
        path = directory / _record_name(req.mountpoint)
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(asdict(record)))
            tmp.replace(path)
        except OSError as e:
            problems.append(f"{directory}: {e.strerror or e}")
            continue
        return path
    log.info("no mount record written (fusenfs umount cannot stop a stuck mount): %s", problems)
    return None


def read_mount_record(mountpoint: str) -> MountRecord | None:
    """The live mount record for ``mountpoint``, or None; stale records are removed."""
    for directory in record_dirs():
        path = directory / _record_name(mountpoint)
        try:
            record = MountRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if record.mountpoint == mountpoint and process_start_time(record.pid) == record.start_time:
            return record
        with contextlib.suppress(OSError):
            path.unlink()
    return None


def remove_mount_record(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


# ---------------------------------------------------------------------- exit helpers


def open_paths(mountpoint: str) -> dict[int, str]:
    """Paths of the files open on the mount at ``mountpoint``, by inode number.

    From /proc/*/fdinfo (``mnt_id`` and ``ino``) and the /proc/*/fd links: none of it
    sends a request to the file system, so it answers while the mount hangs.  A path is
    the one some process opened the file by.
    """
    wanted = mount_id(mountpoint)
    if wanted is None:
        return {}
    paths: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{entry.name}/fdinfo/{fd}", encoding="ascii") as f:
                    info = dict(line.split(":", 1) for line in f if ":" in line)
                if int(info.get("mnt_id", "-1")) != wanted or "ino" not in info:
                    continue
                path = os.readlink(f"/proc/{entry.name}/fd/{fd}")
            except (OSError, ValueError):
                continue
            paths.setdefault(int(info["ino"]), path)
    return paths


async def _run_tool(argv: list[str]) -> subprocess.CompletedProcess[bytes] | None:
    """Run ``argv`` for at most ``UNMOUNT_TIMEOUT`` seconds; None if it did not finish."""
    with trio.move_on_after(UNMOUNT_TIMEOUT):
        return await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return None


def _tool_error(result: subprocess.CompletedProcess[bytes] | None) -> str:
    if result is None:
        return f"no answer in {UNMOUNT_TIMEOUT:g} s"
    lines = result.stderr.decode(errors="replace").strip().splitlines()
    if not lines:
        return f"exit status {result.returncode}"
    # "fusermount3: failed to unmount /mnt: Device or resource busy": the reason.
    return lines[-1].rsplit(": ", 1)[-1]


async def release_mountpoint(mountpoint: str, open_files: int) -> bool:
    """Unmount ``mountpoint``: ``fusermount3 -u``, or lazily (``-uz``) if it is busy.

    Args:
        mountpoint: the mount point (absolute).
        open_files: FUSE file handles still open (a count), for the log line.

    Returns:
        True if the mount point is no longer mounted.
    """
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        log.warning("fusermount3 not found: libfuse unmounts %s", mountpoint)
        return False
    result = await _run_tool([tool, "-u", mountpoint])
    if result is not None and result.returncode == 0:
        log.info("unmounted %s", mountpoint)
        return True
    if not is_mounted(mountpoint):
        return True
    log.warning(
        "%s is busy (%s; open files: %d): lazy unmount (fusermount3 -uz, as umount -l "
        "does); programs still using it get ENOTCONN",
        mountpoint,
        _tool_error(result),
        open_files,
    )
    result = await _run_tool([tool, "-uz", mountpoint])
    if not is_mounted(mountpoint):
        return True
    log.error("cannot unmount %s: %s", mountpoint, _tool_error(result))
    return False


async def _destroy_sessions(sessions: list[ServerSession], timeo: float) -> None:
    """DESTROY_SESSION and DESTROY_CLIENTID on every session, all within a short deadline.

    Shielded: it runs at exit, also when the caller is being cancelled.
    """
    if not sessions:
        return
    deadline = min(DESTROY_DEADLINE, timeo)
    with trio.move_on_after(deadline, shield=True) as scope:
        async with trio.open_nursery() as nursery:
            for each in sessions:
                nursery.start_soon(each.shutdown)
    if scope.cancelled_caught:
        log.info("no answer to DESTROY_SESSION within %g s; exiting without it", deadline)


# ---------------------------------------------------------------------- serving


@dataclass(slots=True)
class _Stop:
    """How the mount is being stopped; shared by the main task and the signal task."""

    signum: int | None = None  # the SIGINT/SIGTERM that asked us to stop
    requested: trio.Event = field(default_factory=trio.Event)
    #: Cancelled by a signal that arrives before the mount is up.
    setup: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: The main task is already cleaning up (the kernel unmounted us): no second run.
    closing: bool = False
    #: Set when a signal-driven flush and unmount are over (or were skipped).
    released: trio.Event = field(default_factory=trio.Event)
    flushed: bool = False


async def _watch_signals(signals: AsyncIterator[int], stop: _Stop) -> None:
    async for signum in signals:
        if stop.signum is None:
            stop.signum = signum
            log.info("signal %d (%s): stopping", signum, signal.Signals(signum).name)
            stop.setup.cancel()
            stop.requested.set()
        else:
            log.info("signal %d again: already stopping (bounded by the retry budget)", signum)


async def _flush_for_exit(req: MountRequest, ops: NFSOperations, stop: _Stop) -> None:
    """Flush write-behind data for at most the retry budget; log what was not written."""
    if stop.flushed:
        return
    stop.flushed = True
    budget = retry_budget(req.options.timeo, req.options.retrans)
    open_files = ops.statistics()["open_files"]
    if not open_files:
        return
    log.info("flushing %d open files (at most %g s)", open_files, budget)
    with trio.move_on_after(budget) as scope:
        names = await trio.to_thread.run_sync(open_paths, req.mountpoint, abandon_on_cancel=True)
        failed = await ops.flush_for_exit(names.get)
    if scope.cancelled_caught:
        log.error("data of %d open files may not be written: no time left to flush", open_files)
        return
    for name, reason in failed:
        log.error("data not written for %s: %s", name, reason)


async def _stop_on_request(
    req: MountRequest, ops: NFSOperations, stop: _Stop, fuse_scope: trio.CancelScope
) -> None:
    """On SIGINT/SIGTERM: flush, release the mount point, cancel the FUSE handlers."""
    try:
        await stop.requested.wait()
        if stop.closing:
            return
        await _flush_for_exit(req, ops, stop)
        await release_mountpoint(req.mountpoint, ops.statistics()["open_files"])
    finally:
        fuse_scope.cancel()
        stop.released.set()


async def serve_mount(req: MountRequest, ready: Callable[[str | None], None]) -> None:
    """Mount and serve until unmounted or signalled (see the module docstring).

    ``ready(None)`` is called once mounted; ``ready(message)`` instead when the mount
    failed or a signal stopped it first (then nothing is mounted).  SIGINT and SIGTERM
    are handled here from the start.

    Raises:
        BaseException: only bugs; every server or mount failure goes to ``ready``.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stop = _Stop()
            nursery.start_soon(_watch_signals, signals, stop)
            try:
                await _mount_and_serve(req, ready, nursery, stop)
            finally:
                nursery.cancel_scope.cancel()


async def _mount_and_serve(
    req: MountRequest, ready: Callable[[str | None], None], nursery: trio.Nursery, stop: _Stop
) -> None:
    opts = req.options
    spec = f"{req.host}:{req.path}"
    sessions: list[ServerSession] = []
    client: NFSClient | None = None
    with stop.setup:
        try:
            address = await resolve_address(req.host, opts.port)
            session = ServerSession(
                host=address,
                port=opts.port,
                co_ownerid=host_co_ownerid(os.path.realpath(req.mountpoint)),
                options=session_options(opts),
            )
            sessions.append(session)
            await session.start(nursery)
            client = NFSClient(session, req.path, owner_prefix=session.co_ownerid)
            await client.mount()
        except NFSClientError as e:
            ready(f"mount {spec} failed: {e}")
            await _destroy_sessions(sessions, opts.timeo)
            return
    if client is None or stop.signum is not None:
        ready(f"mount {spec} interrupted by signal {stop.signum}; nothing mounted")
        await _destroy_sessions(sessions, opts.timeo)
        return
    if client.root_attrs.type != nfs_ftype4.NF4DIR:
        # FUSE would mount it, and then every access would fail with EIO.
        ready(f"{spec} is not a directory")
        await _destroy_sessions(sessions, opts.timeo)
        return
    manager = StateManager(client, nursery)
    manager.attach()
    ops_class = operations_class(NFSOperations, LOCAL_LOCK_KINDS[opts.local_lock])
    ops = ops_class(
        client,
        nursery,
        CacheTimes(opts.acregmin, opts.acregmax, opts.acdirmin, opts.acdirmax),
    )
    ops.recovery_stats = manager.statistics
    ops.negative_lookups = opts.lookupcache == "all"
    fuse_options = set(pyfuse3.default_options)
    fuse_options.add(f"fsname={spec}")
    fuse_options.add("subtype=fusenfs")
    if opts.allow_other:
        fuse_options.add("allow_other")
    if opts.ro:
        fuse_options.add("ro")
    try:
        pyfuse3.init(ops, req.mountpoint, fuse_options)
    except RuntimeError as e:
        ready(f"cannot mount on {req.mountpoint}: {e}")
        await _destroy_sessions(manager.sessions(), opts.timeo)
        return
    log.info(
        "mounted %s on %s (maxread=%d maxwrite=%d lease=%ds timeo=%gs retrans=%d)",
        spec,
        req.mountpoint,
        client.maxread,
        client.maxwrite,
        client.session.lease_time,
        opts.timeo,
        opts.retrans,
    )
    record = write_mount_record(req)
    ready(None)
    try:
        # pyfuse3.main() returns by itself when the kernel unmounted us (fusermount3 -u);
        # on a signal _stop_on_request flushes, unmounts and then cancels it, handlers
        # that still wait for the server included.
        with trio.CancelScope() as fuse_scope:
            nursery.start_soon(_stop_on_request, req, ops, stop, fuse_scope)
            nursery.start_soon(_return_free_memory)
            nursery.start_soon(set_readahead, req.mountpoint, READAHEAD_KB)
            await pyfuse3.main(min_tasks=4, max_tasks=64)
    finally:
        with trio.CancelScope(shield=True):
            if stop.requested.is_set():
                await stop.released.wait()  # bounded: budget + two fusermount3 runs
            else:
                stop.closing = True
                stop.requested.set()  # ends _stop_on_request without a second unmount
                await _flush_for_exit(req, ops, stop)
            still = is_mounted(req.mountpoint)
            if still:
                log.warning("%s still mounted: libfuse unmounts it", req.mountpoint)
            pyfuse3.close(unmount=still)
            remove_mount_record(record)
            await _destroy_sessions(manager.sessions(), opts.timeo)
        log.info("stopped serving %s", req.mountpoint)


# ---------------------------------------------------------------------- probe


async def probe(
    host: str, port: int, options: SessionOptions | None = None
) -> list[tuple[str, str]]:
    """What a server says about itself: (label, value) lines for ``fusenfs probe``.

    EXCHANGE_ID (server_owner, server_scope, implementation id), CREATE_SESSION
    (negotiated channel attributes), GETATTR on the root (supported attributes, fsid,
    lease time), then DESTROY_SESSION and DESTROY_CLIENTID.  All of it within one retry
    budget, ``timeo * (retrans + 1)`` seconds of ``options`` (default: ``PROBE_TIMEO``,
    ``PROBE_RETRANS``), and the destroy within ``DESTROY_DEADLINE``.

    Raises:
        TransportError: the name does not resolve or the connection is refused.
        CallTimeout: the server did not complete the exchange within the budget.
        NFS4Error: the server refused an operation.
    """
    options = options or SessionOptions(timeo=PROBE_TIMEO, retrans=PROBE_RETRANS)
    budget = retry_budget(options.timeo, options.retrans)
    address = await resolve_address(host, port)
    lines: list[tuple[str, str]] = []
    error: NFSClientError | None = None
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            host=address,
            port=port,
            co_ownerid=host_co_ownerid(f"probe/{os.getpid()}"),
            options=options,
        )
        try:
            with trio.move_on_after(budget) as scope:
                await _probe_lines(session, nursery, host, port, address, lines)
            if scope.cancelled_caught:
                error = CallTimeout(
                    f"server {address}:{port} not responding: no complete answer in {budget:g} s"
                )
        except NFSClientError as e:
            error = e
        finally:
            await _destroy_sessions([session], options.timeo)
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return lines


async def _probe_lines(
    session: ServerSession,
    nursery: trio.Nursery,
    host: str,
    port: int,
    address: str,
    lines: list[tuple[str, str]],
) -> None:
    await session.start(nursery)
    eid = session.exchange_id
    cs = session.create_session
    assert eid is not None and cs is not None
    lines.append(("server", f"{host}:{port} ({address})"))
    lines.append(("server_owner.so_major_id", _show(eid.eir_server_owner.so_major_id)))
    lines.append(("server_owner.so_minor_id", str(eid.eir_server_owner.so_minor_id)))
    lines.append(("server_scope", _show(eid.eir_server_scope)))
    for impl in eid.eir_server_impl_id:
        lines.append(("implementation", f"{impl.nii_name} ({impl.nii_domain})"))
    lines.append(("clientid", f"{eid.eir_clientid:#018x}"))
    lines.append(("exchange_id flags", f"{eid.eir_flags:#010x}"))
    fore, back = cs.csr_fore_chan_attrs, cs.csr_back_chan_attrs
    for label, ca in (("fore channel", fore), ("back channel", back)):
        lines.append(
            (
                label,
                f"slots={ca.ca_maxrequests} maxrequestsize={ca.ca_maxrequestsize} "
                f"maxresponsesize={ca.ca_maxresponsesize} "
                f"cached={ca.ca_maxresponsesize_cached} maxops={ca.ca_maxoperations}",
            )
        )
    lines.append(("session flags", f"{cs.csr_flags:#x}"))
    res = await session.compound(
        [
            nfs4.PUTROOTFH4args(),
            nfs4.GETATTR4args(
                attr_request=bitmap4_from([*bitmap4_to_set(FSINFO_ATTRS), FATTR4.FH_EXPIRE_TYPE])
            ),
        ]
    )
    ga = res.resarray[1]
    assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
    attrs = decode_fattr4(ga.resok.obj_attributes)
    supported = bitmap4_to_set(attrs.supported_attrs or [])
    names = [FATTR4(n).name.removeprefix("FATTR4_").lower() for n in sorted(supported)]
    lines.append(("root fsid", str(attrs.fsid)))
    lines.append(("lease_time", f"{attrs.lease_time} s"))
    lines.append(("maxread / maxwrite", f"{attrs.maxread} / {attrs.maxwrite} bytes"))
    lines.append(("fh_expire_type", f"{attrs.fh_expire_type}"))
    lines.append(("supported_attrs", " ".join(names)))


def _show(value: bytes) -> str:
    """Opaque bytes for a person: text if printable (a trailing NUL shown as such), else hex."""
    text = value.rstrip(b"\0").decode("ascii", "replace")
    if text.isprintable() and "\ufffd" not in text:
        return text + ("\\0" * (len(value) - len(value.rstrip(b"\0"))))
    return "0x" + value.hex()

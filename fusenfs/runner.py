"""Running a mount: session, client, FUSE, all in one trio nursery (PYFUSE3.md).

``serve_mount`` connects, establishes the session, finds the export's root, mounts the
FUSE file system and serves it until it is unmounted (``fusermount3 -u``) or the process
gets SIGINT/SIGTERM; then it destroys the session and client ID (RFC 8881 sections
18.37, 18.50).  ``probe`` asks a server what it says about itself.

Mounting is attempted as mount.nfs does (nfs(5) ``retry``, ``bg``): an RPC NULL call
first (a server that is not NFS, or not NFSv4, is named as such in one line), then the
session (soft while mounting, whatever ``hard`` says: the mount is bounded by ``retry``)
and the export's root (a missing or unexported path is named, with what the server
does export).  A failure that may pass (no connection, no answer) is retried for
``retry`` minutes, with pauses from ``RETRY_FIRST`` to ``RETRY_MAX`` seconds; with
``bg`` the caller hears of the first one and may return.  Once mounted the session is
made hard or soft as the options say, and the kernel mount flags (``noexec``,
``nosuid``...) are the options' ``kernel_flags``.  What libfuse and fusermount3 print
when they cannot mount (no access to /dev/fuse, allow_other without user_allow_other)
becomes the one-line error.  The mount's statistics (its statistics socket,
``fusenfs.statsock``, read by ``fusenfs stats``) carry, besides the recovery history,
what /proc/self/mountstats gives for a kernel mount (``statistics_hook``).

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

Kerberos (``sec=`` lists krb5, krb5i or krb5p; RFC 2203, RFC 8881 section 2.6): the
machine credential (``-o keytab=PATH,principal=NAME``, by default ``host/FQDN`` from
``/etc/krb5.keytab``, ``session.gss.machine_source``) is checked before connecting (a
missing keytab or key is a one-line mount error saying how to provide it); the session
uses it, with integrity, for what belongs to the client as a whole (EXCHANGE_ID asks
SP4_MACH_CRED), targeting ``nfs@HOST`` for the HOST of ``SERVER:/PATH``.  The export's
flavour is negotiated (``NFSClient.negotiate_export``); each local user then reaches
each server with their own tickets (``session.usercreds.UserCredentials`` per server,
installed as ``NFSClient.user_credentials``), and at unmount their contexts are
destroyed before the sessions.

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
import dataclasses
import gc
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from fusenfs.cli import is_mounted, mount_device, mount_id
from fusenfs.fs import CacheTimes, NFSOperations
from fusenfs.locking import LOCAL_LOCK_KINDS, operations_class
from fusenfs.options import MountOptionError, MountOptions
from fusenfs.statsock import runtime_dirs, runtime_name, serve_statistics
from recovery.manager import StateManager
from session.client import FSINFO_ATTRS, NFSClient, secinfo_name
from session.errors import (
    CallTimeout,
    NFSClientError,
    ReplyTooLarge,
    RpcError,
    TransportError,
    XdrError,
)
from session.gss import (
    GssCredential,
    GssCredentialsUnavailable,
    GssError,
    KeytabSource,
    machine_source,
    rpc_gss_service_t,
)
from session.mount import split_path
from session.rpc import (
    NULL_AUTH,
    Credential,
    ProgMismatch,
    ProgUnavail,
    decode_reply,
    encode_call,
)
from session.session import OpStats, ServerSession, SessionOptions, host_co_ownerid
from session.status import NFS4Error
from session.transport import resolve_address
from session.usercreds import UserCredentials
from session.xdr import nfs4
from session.xdr.const import (
    FATTR4,
    NFS4_PROGRAM,
    NFS_V4,
    NFSPROC4_NULL,
    nfs_ftype4,
    nfsstat4,
    secinfo_style4,
)
from session.xdr.fattr import bitmap4_from, bitmap4_to_set, decode_fattr4

log = logging.getLogger("fusenfs")

#: Seconds given to DESTROY_SESSION and DESTROY_CLIENTID at exit (never more than timeo).
DESTROY_DEADLINE = 2.0
#: Seconds one fusermount3 run may take.
UNMOUNT_TIMEOUT = 10.0
#: ``fusenfs probe`` defaults: a server that does not answer fails within 15 s.
PROBE_TIMEO = 5.0
PROBE_RETRANS = 2


#: Seconds the RPC NULL call that checks for NFSv4 may take (at most ``timeo``).
NULL_CALL_TIMEOUT = 5.0
#: Seconds between mount attempts (retry=): the first pause, and the longest.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
#: Export discovery (mount errors, ``probe``): directories read at most, and depth.
EXPORT_SCAN_DIRS = 32
EXPORT_SCAN_DEPTH = 4


#: READ size the mount asks for when ``rsize`` is not given, bytes: the session's
#: ``ca_maxresponsesize`` is this plus 4 KiB for the headers, and the server may grant
#: less (RFC 8881 section 18.36.3).  1 MiB, the Linux NFS client's largest rsize and the
#: largest read FUSE hands the client: one READ per FUSE read.  Larger READs save the
#: mount little and cost the server more: measured here (256 MiB, dd, cold cache, 8
#: runs each, alternating), Ganesha spent a median 0.67 ms of CPU per MB (0.34-1.08)
#: serving 4 MiB READs against 0.39 (0.37-0.56) for 1 MiB ones, the mount about the
#: same (0.78 against 0.82 ms per MB), and 1 MiB READs were faster (medians 878
#: against 721 MB/s).
#: WRITEs are 1 MiB too: one FUSE write is one WRITE, with no copy to join them.
DEFAULT_RSIZE = 1024 * 1024


def session_options(opts: MountOptions, *, setup: bool = False) -> SessionOptions:
    """Session tunables from mount options.

    rsize/wsize cap the channel sizes (rsize ``DEFAULT_RSIZE`` when not given, wsize
    the session's default); ``hard``/``soft``/``softerr``, ``timeo``,
    ``retrans`` and ``nconnect`` go to the session as they are.  With ``setup`` the
    session is soft whatever the options say: mounting is bounded by ``retry=``, not by
    ``hard`` (nfs(5)); ``serve_mount`` makes it hard once mounted.

    Raises:
        MountOptionError: an option this session layer cannot honour (named).
    """
    fields = {f.name for f in dataclasses.fields(SessionOptions)}
    wanted: dict[str, Any] = {
        "timeo": opts.timeo,
        "retrans": opts.retrans,
        "hard": opts.hard and not setup,
        "softerr": opts.softerr,
        "nconnect": opts.nconnect,
    }
    neutral: dict[str, Any] = {"hard": False, "softerr": False, "nconnect": 1}
    for name, value in wanted.items():
        if name not in fields and value != neutral.get(name, value):
            raise MountOptionError(f"mount option {name}: not supported by this session layer")
    s = SessionOptions(**{k: v for k, v in wanted.items() if k in fields})
    s.max_response = (opts.rsize or DEFAULT_RSIZE) + 4096
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


class NotNFSv41(NFSClientError):
    """The server does not speak NFSv4.1: not ONC RPC at all, no NFS program, other NFS
    versions only, or NFSv4 without minor version 1.  Retrying will not help."""


class MountPathError(NFSClientError):
    """The export path cannot be mounted (missing, not exported, not allowed)."""


class MountFailed(NFSClientError):
    """A mount gave up: the message says why (explained, with the attempts made)."""


class MachineCredentialError(NFSClientError):
    """A Kerberos mount has no usable machine credential (keytab or key missing, the
    KDC refused it): the message names what is missing and how to provide it."""


# ---------------------------------------------------------------------- Kerberos


#: How to provide the machine credential, for the mount error that lacks it.
MACHINE_CREDENTIAL_HOW = (
    "add the principal to the keytab (kadmin: addprinc -randkey {principal}; "
    "ktadd -k {keytab} {principal}) or name another with -o keytab=PATH,principal=NAME"
)


async def check_machine_credential(opts: MountOptions) -> KeytabSource:
    """The machine credential of a Kerberos mount, checked before connecting: its
    keytab (``opts.keytab``, else ``$KRB5_CLIENT_KTNAME`` or ``/etc/krb5.keytab``)
    exists and holds a key the KDC takes for its principal (``opts.principal``, else
    ``host/FQDN``).  Its first ticket is got now, into this process's memory cache
    (``session.gss.KeytabSource``), within ``opts.timeo`` seconds.

    Raises:
        MachineCredentialError: one line naming the principal and keytab, what is
            wrong, and how to provide it.
    """
    source = machine_source(opts.keytab or None, opts.principal or None)
    path = source.keytab.removeprefix("FILE:")
    need = f"sec={opts.sec} needs the machine credential {source.principal} from {path}"
    how = MACHINE_CREDENTIAL_HOW.format(principal=source.principal, keytab=path)
    if not os.path.exists(path):
        raise MachineCredentialError(f"{need}, which does not exist: {how}")
    if not os.access(path, os.R_OK):
        raise MachineCredentialError(f"{need}, which this process cannot read: {how}")
    try:
        with trio.fail_after(opts.timeo):
            await trio.to_thread.run_sync(source, abandon_on_cancel=True)
    except trio.TooSlowError:
        raise MachineCredentialError(
            f"{need}: no ticket from the KDC within {opts.timeo:g} s (is the KDC of the "
            "default realm reachable?)"
        ) from None
    except GssCredentialsUnavailable as e:
        reason = str(e).rsplit(f"{source.keytab}: ", 1)[-1]
        raise MachineCredentialError(
            f"{need}: the keytab has no key for it or the KDC refused it (klist -k {path} "
            f"lists the keytab; GSS said {reason}); {how}"
        ) from None
    return source


def install_kerberos(client: NFSClient, source: KeytabSource | None) -> None:
    """The security hooks of a mount's client: ``sec=`` flavours are set by the
    caller; here the machine credential for a server name (the state manager's, for
    migration and referral destinations) and the per-user credentials per server."""
    if source is None:
        return

    def machine_for(host: str, service: rpc_gss_service_t) -> Credential:
        return machine_credential(source, host, service)

    def users_for(session: ServerSession) -> UserCredentials:
        machine = session.machine_cred
        if not isinstance(machine, GssCredential):
            raise NFSClientError(f"{session.host}:{session.port}: no Kerberos machine credential")
        return UserCredentials(machine.target, machine.service, machine=machine)

    client.machine_credential = machine_for
    client.user_credentials = users_for


def machine_credential(
    source: KeytabSource,
    host: str,
    service: rpc_gss_service_t = rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY,
) -> GssCredential:
    """The machine credential for the server named ``host`` (GSS target ``nfs@HOST``:
    its principal is ``nfs/HOST``), integrity by default as the Linux client's lease
    credential (what it sends has no filehandle, so every export takes it)."""
    return GssCredential(
        f"nfs@{host}", service, source=source, label=f"machine credential {source.principal}"
    )


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
#: kernel keeps many in flight, and each is 1 MiB (FUSE's max_pages, from libfuse's
#: 1 MiB max_write), so a 1 MiB dd costs one FUSE round trip, not eight (the kernel
#: NFS client likewise sizes its read-ahead from rsize).  Measured here: sequential
#: read 0.73 s -> 0.43 s for 256 MiB; 16 MiB was slower again.
READAHEAD_KB = 4096


#: The cyclic garbage collector's thresholds while mounted (``gc.set_threshold``):
#: allocations before a young collection, then young collections per middle one and
#: middle ones per full one.  A full collection walks every object the mount holds,
#: and with 100,000 cached inodes (about 250,000 objects) each took about 140 ms and
#: came every 0.6 s during a ``find`` and every 3.5 s afterwards, collecting nothing:
#: inodes, attributes and filehandles are freed by reference counting, not in cycles.
GC_THRESHOLDS = (10_000, 20, 100)


def tune_garbage_collector() -> None:
    """Make the mount's cyclic garbage collection rarer (``GC_THRESHOLDS``)."""
    gc.set_threshold(*GC_THRESHOLDS)


#: Seconds between two looks at whether freed heap can go back to the system.  Random
#: writes to a few files hold up to ``WriteBehind.max_uncommitted`` (64 MiB) each until
#: their COMMIT; freed then, the heap stayed resident for another 10-20 s with a 10 s
#: interval: 4 fio jobs left 330 MB, and a ``find`` right after ended at 391 MB instead
#: of 129 MB (the benchmark's inode step).
TRIM_INTERVAL = 2.0
#: READ and WRITE data (bytes) below which an interval counts as quiet: then it does.
TRIM_QUIET = 1024 * 1024

#: glibc malloc while mounted (``tune_malloc``): blocks of at least MMAP_THRESHOLD
#: bytes get a mapping of their own, smaller ones (the 1 MiB READ and WRITE buffers)
#: come from the heap; up to TRIM_THRESHOLD bytes free at the heap's top stay there
#: for the next buffers instead of going back to the system at each free().
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc <malloc.h> parameter numbers for mallopt(3)
_M_MMAP_THRESHOLD = -3


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_malloc() -> bool:
    """Let freed 1 MiB buffers be reused from the heap (glibc ``mallopt``).

    A COMMIT frees the UNSTABLE data it made durable (up to ``max_uncommitted``, 64 MiB)
    at once.  glibc then gave the top of the heap back, and the next 64 MiB of WRITE
    buffers took a page fault and a zeroed page for every 4 KiB: 15,000-20,000 faults
    per 256 MiB written, 12% of the mount's CPU.  Kept, they cost nothing;
    ``return_free_memory`` gives free memory back once the data traffic stops.

    Returns whether both thresholds were set (False: not glibc).
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def data_bytes(sessions: Callable[[], Iterable[ServerSession]]) -> Callable[[], int]:
    """A function giving the READ and WRITE record bytes (sent + received) so far over
    the ``sessions`` that exist when it is called."""

    def moved() -> int:
        return sum(
            stats.bytes_sent + stats.bytes_received
            for session in sessions()
            for name, stats in session.op_statistics().items()
            if name in ("READ", "WRITE")
        )

    return moved


async def return_free_memory(
    moved: Callable[[], int], interval: float = TRIM_INTERVAL, quiet: int = TRIM_QUIET
) -> None:
    """Give freed heap back to the system (glibc ``malloc_trim``) after each
    ``interval`` seconds in which less than ``quiet`` bytes of file data moved
    (``moved()``: a running total of bytes).  Runs until cancelled; returns at once
    without glibc.

    While data flows the heap keeps the 1 MiB buffers it will need again
    (``tune_malloc``); afterwards it gives them back, with what a heap freed in the
    middle would otherwise keep resident (about 200 MB after a large copy).
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return  # not glibc
    last = moved()
    while True:
        await trio.sleep(interval)
        now = moved()
        if now - last < quiet:
            trim(0)
        last = now


def readahead_knob(mountpoint: str) -> Path | None:
    """The sysfs file holding the kernel read-ahead (KiB) of the file system mounted
    on ``mountpoint`` (its bdi's ``read_ahead_kb``), or None if nothing is mounted."""
    device = mount_device(mountpoint)
    return None if device is None else Path(f"/sys/class/bdi/{device}/read_ahead_kb")


async def set_readahead(mountpoint: str, kib: int) -> None:
    """Set the kernel read-ahead of the mount (its bdi's read_ahead_kb), if allowed.

    The kernel sets it when it gets the answer to FUSE_INIT, so this waits until the
    main loop has answered (the value then stays), trying for a bounded time.
    """
    knob = readahead_knob(mountpoint)
    if knob is None:
        return
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
    """Where mount records live, in order of preference (``fusenfs.statsock``)."""
    return runtime_dirs()


def _record_name(mountpoint: str) -> str:
    return runtime_name(mountpoint, ".json")


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


async def serve_mount(
    req: MountRequest,
    ready: Callable[[str | None], None],
    background: Callable[[str], None] | None = None,
) -> None:
    """Mount and serve until unmounted or signalled (see the module docstring).

    ``ready(None)`` is called once mounted; ``ready(message)`` instead when the mount
    failed or a signal stopped it first (then nothing is mounted).  With ``bg``, after
    the first attempt failed for a reason that may pass, ``background(reason)`` is
    called once and the attempts go on for ``retry`` minutes (nfs(5) bg); ``ready`` is
    still called at the end.  SIGINT and SIGTERM are handled here from the start.

    Raises:
        BaseException: only bugs; every server or mount failure goes to ``ready``.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stop = _Stop()
            nursery.start_soon(_watch_signals, signals, stop)
            try:
                await _mount_and_serve(req, ready, background, nursery, stop)
            finally:
                nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------- setting up


async def check_nfs4(host: str, port: int, timeout: float) -> None:
    """Does the server speak NFSv4 at all?  One RPC NULL call to the NFS program,
    version 4 (RFC 8881 section 16.1; RFC 5531 record marking), on a connection of its
    own, as mount.nfs pings a server before mounting.

    Returns quietly when NULL is answered, and when no verdict came within ``timeout``
    seconds (the connection closed before any byte, or nothing was answered): the
    session's own retries decide then.

    Raises:
        TransportError: the connection cannot be made (the reason: refused...).
        NotNFSv41: the answer is not ONC RPC, or the server offers no NFS version 4.
    """
    peer = f"{host}:{port}"
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as e:
        raise TransportError(f"cannot connect to {peer}: {_os_reason(e)}") from None
    try:
        with trio.move_on_after(timeout):
            verdict = await _null_call(stream, peer)
            if verdict is not None:
                raise verdict
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


def _os_reason(e: OSError) -> str:
    """The errno text behind an OSError (trio's "all attempts to connect ... failed"
    carries the real one, "Connection refused", as its cause)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        if isinstance(seen, BaseExceptionGroup) and seen.exceptions:
            seen = seen.exceptions[0]
            continue
        seen = seen.__cause__ or seen.__context__
    return str(e)


#: A NULL reply is about 24 bytes; a record mark announcing more is not one.
NULL_REPLY_MAX = 4096


async def _null_call(stream: trio.SocketStream, peer: str) -> NotNFSv41 | None:
    """Send NULL on ``stream`` and read the reply: a ``NotNFSv41`` saying what the
    server is instead, or None (answered, or closed without a byte)."""
    xid = int.from_bytes(os.urandom(4), "big")
    body = encode_call(xid, NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, NULL_AUTH, NULL_AUTH)
    try:
        await stream.send_all((0x80000000 | len(body)).to_bytes(4, "big") + body)
        data = b""
        while True:
            if len(data) >= 4:
                mark = int.from_bytes(data[:4], "big")
                if not mark & 0x80000000 or mark & 0x7FFFFFFF > NULL_REPLY_MAX:
                    return _not_rpc(peer, data)  # not one last fragment of a small reply
                if len(data) >= 4 + (mark & 0x7FFFFFFF):
                    break
            chunk = await stream.receive_some(NULL_REPLY_MAX)
            if not chunk:
                return _not_rpc(peer, data) if data else None
            data += chunk
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return None  # no verdict: the session will see
    length = int.from_bytes(data[:4], "big") & 0x7FFFFFFF
    try:
        reply = decode_reply(data[4 : 4 + length])
    except XdrError:
        return _not_rpc(peer, data)
    except ProgUnavail:
        return NotNFSv41(
            f"{peer} is not an NFS server: it speaks ONC RPC but offers no NFS "
            "(program 100003 unavailable)"
        )
    except ProgMismatch as e:
        versions = f"{e.low}" if e.low == e.high else f"{e.low} to {e.high}"
        return NotNFSv41(
            f"{peer} speaks NFS version {versions} only, not NFSv4.1: fusenfs needs an "
            "NFSv4.1 server"
        )
    except RpcError:
        return None  # an auth error, say: the session will see
    if reply.xid != xid:
        return _not_rpc(peer, data)
    return None


def _not_rpc(peer: str, data: bytes) -> NotNFSv41:
    text = data[:32].decode("ascii", "replace").strip()
    shown = f" (it sent {text!r})" if text.isprintable() and "\ufffd" not in text else ""
    return NotNFSv41(f"{peer} is not an NFS server: its answer is not ONC RPC{shown}")


def _temporary(e: NFSClientError) -> bool:
    """A mount failure that may pass (nfs(5) retry=): no connection, no answer."""
    return isinstance(e, CallTimeout | TransportError) and not isinstance(e, ReplyTooLarge)


def explain(e: NFSClientError, server: str) -> str:
    """One line for a mount or probe failure, saying what went wrong where."""
    if isinstance(e, NFS4Error) and e.status == nfsstat4.NFS4ERR_MINOR_VERS_MISMATCH:
        return (
            f"{server} speaks NFSv4 but not NFSv4.1 (EXCHANGE_ID: "
            "NFS4ERR_MINOR_VERS_MISMATCH; an NFSv4.0-only server?): fusenfs needs NFSv4.1"
        )
    if isinstance(e, GssError) and "not found in Kerberos database" in str(e):
        return (
            f"{e} (the server's principal is nfs/HOST for the HOST of SERVER:/PATH: "
            "mount by the name its keytab was made for, not an address)"
        )
    return str(e)


def _fsid_label(fsid: nfs4.fsid4 | None) -> str:
    """``fsid MAJOR.MINOR``, as ``fusenfs stats`` labels file systems."""
    return "fsid ?" if fsid is None else f"fsid {fsid.major}.{fsid.minor}"


def _resok(results: list[nfs4.ResOp], index: int, kind: type[Any], server: str) -> Any:
    """``results[index].resok``, checked to be a ``kind`` with a result: a reply that
    says NFS4_OK and carries something else is the server's error, not a crash."""
    res = results[index] if 0 <= index < len(results) else None
    resok = getattr(res, "resok", None) if isinstance(res, kind) else None
    if resok is None:
        raise NFSClientError(
            f"{server}: inconsistent reply: result {index} is not a {kind.__name__} with its result"
        )
    return resok


_SCAN_ATTRS = bitmap4_from([FATTR4.RDATTR_ERROR, FATTR4.TYPE, FATTR4.FSID, FATTR4.FILEHANDLE])


async def list_exports(session: ServerSession) -> tuple[nfs4.fsid4 | None, list[tuple[str, str]]]:
    """The server's exports: walk its pseudo-file system (RFC 8881 section 7.3) from
    the root, reading directories that share the root's fsid; an entry with another
    fsid is an export's root.  At most ``EXPORT_SCAN_DIRS`` directories,
    ``EXPORT_SCAN_DEPTH`` deep, one READDIR page each.

    Returns:
        (the root's fsid, [(path, "fsid M.m")] in path order); no exports when the root
        is itself an export (nothing differs from it).

    Raises:
        NFSClientError: a call failed.
    """
    res = await session.compound(
        [
            nfs4.PUTROOTFH4args(),
            nfs4.GETFH4args(),
            nfs4.GETATTR4args(attr_request=bitmap4_from([FATTR4.FSID])),
        ]
    )
    server = f"{session.host}:{session.port}"
    root_fh: bytes = _resok(res.resarray, 1, nfs4.GETFH4res, server).object
    ga = _resok(res.resarray, 2, nfs4.GETATTR4res, server)
    root_fsid = decode_fattr4(ga.obj_attributes).fsid
    found: list[tuple[str, str]] = []
    queue: list[tuple[str, bytes, int]] = [("", root_fh, 0)]
    visited = 0
    while queue and visited < EXPORT_SCAN_DIRS:
        prefix, fh, depth = queue.pop(0)
        visited += 1
        res = await session.compound(
            [
                nfs4.PUTFH4args(object=fh),
                nfs4.READDIR4args(
                    cookie=0,
                    cookieverf=bytes(8),
                    dircount=8192,
                    maxcount=32768,
                    attr_request=_SCAN_ATTRS,
                ),
            ]
        )
        rd = _resok(res.resarray, 1, nfs4.READDIR4res, server)
        for entry in rd.reply.entries:
            attrs = decode_fattr4(entry.attrs)
            path = f"{prefix}/{entry.name.decode(errors='replace')}"
            if attrs.rdattr_error == nfsstat4.NFS4ERR_WRONGSEC:
                # A junction into an export that wants another flavour than the one
                # asking (RFC 8881 section 2.6.3.1): an export all the same (Ganesha
                # gives the directory's own fsid beside the error).
                found.append((path, "fsid ?: NFS4ERR_WRONGSEC, it wants another flavour"))
            elif attrs.fsid is not None and attrs.fsid != root_fsid:
                found.append((path, _fsid_label(attrs.fsid)))
            elif (
                attrs.type == nfs_ftype4.NF4DIR
                and attrs.filehandle is not None
                and depth + 1 < EXPORT_SCAN_DEPTH
            ):
                queue.append((path, attrs.filehandle, depth + 1))
    return root_fsid, sorted(found)


async def _path_error(session: ServerSession, path: str, e: NFS4Error) -> str:
    """The export path's failure, naming the path: missing, not exported, refused."""
    server = f"{session.host}:{session.port}"
    comps = split_path(path)
    k = e.op_index  # 0: PUTROOTFH, 1..: the LOOKUP of comps[k - 1]
    if e.op_name != "LOOKUP" or not 1 <= k <= len(comps):
        return f"{path} on {server}: {e}"
    missing = "/" + "/".join(comps[:k])
    parent = "/" + "/".join(comps[: k - 1])
    status = e.status.name
    if e.status == nfsstat4.NFS4ERR_NOENT:
        exports: list[tuple[str, str]] = []
        with contextlib.suppress(NFSClientError), trio.move_on_after(session.options.timeo):
            _, exports = await list_exports(session)
        names = [p for p, _ in exports]
        inside = [p for p in names if parent == p or parent.startswith(p + "/")]
        if inside:
            return f"{missing} does not exist on {server} ({status}, in the export {inside[0]})"
        if names:
            return (
                f"{missing} is not exported by {server} ({status} in its pseudo-file "
                f"system; it exports {', '.join(names)})"
            )
        return f"{missing} does not exist on {server} ({status})"
    if e.status in (nfsstat4.NFS4ERR_ACCESS, nfsstat4.NFS4ERR_PERM):
        return f"{missing}: {server} denies this client access ({status})"
    if e.status == nfsstat4.NFS4ERR_WRONGSEC:
        return (
            f"{missing}: {server} wants another security flavour there ({status}); "
            "mount with one it takes (-o sec=...; fusenfs probe SERVER PATH lists them)"
        )
    if e.status == nfsstat4.NFS4ERR_NOTDIR:
        return f"{parent} on {server} is not a directory ({status})"
    return f"{missing} on {server}: {status}"


async def _attempt(
    req: MountRequest, address: str, nursery: trio.Nursery, machine: KeytabSource | None = None
) -> tuple[ServerSession, NFSClient]:
    """One try at mounting: NULL, the session (soft), the export's root.

    ``machine``: the machine credential's source on a Kerberos mount (the session's
    machine credential targets ``nfs@`` the mount's server name).

    Raises:
        NFSClientError: the try failed (``NotNFSv41``, ``MountPathError``,
            ``NoCommonFlavour``...); the session made for it is destroyed.
    """
    opts = req.options
    await check_nfs4(address, opts.port, min(opts.timeo, NULL_CALL_TIMEOUT))
    session = ServerSession(
        host=address,
        port=opts.port,
        co_ownerid=host_co_ownerid(os.path.realpath(req.mountpoint)),
        options=session_options(opts, setup=True),
    )
    if machine is not None:
        session.machine_cred = machine_credential(machine, req.host)
    try:
        await session.start(nursery)
        client = NFSClient(session, req.path, owner_prefix=session.co_ownerid)
        client.sec_flavours = opts.sec_flavours
        install_kerberos(client, machine)
        try:
            await client.mount()
        except NFS4Error as e:
            if e.op_name != "LOOKUP":
                raise
            raise MountPathError(await _path_error(session, req.path, e)) from None
    except BaseException:
        await _destroy_sessions([session], opts.timeo)
        raise
    return session, client


async def _set_up(
    req: MountRequest, nursery: trio.Nursery, background: Callable[[str], None] | None
) -> tuple[ServerSession, NFSClient]:
    """Attempts until one succeeds, a failure cannot pass, or ``retry`` minutes are over.

    Raises:
        NFSClientError: the last failure, its message explained (``explain``).
    """
    opts = req.options
    address = await resolve_address(req.host, opts.port)  # a name that does not resolve: now
    server = f"{req.host}:{opts.port}"
    machine = await check_machine_credential(opts) if opts.kerberos else None
    started = trio.current_time()
    deadline = started + opts.retry_minutes * 60
    delay = RETRY_FIRST
    attempts = 0
    backgrounded = False
    while True:
        attempts += 1
        try:
            return await _attempt(req, address, nursery, machine)
        except NFSClientError as e:
            reason = explain(e, server)
            if not _temporary(e) or trio.current_time() + delay > deadline:
                if attempts > 1:
                    reason += (
                        f" (gave up after {attempts} attempts in "
                        f"{trio.current_time() - started:.0f} s; retry={opts.retry_minutes})"
                    )
                raise MountFailed(reason) from None
            if opts.bg and background is not None and not backgrounded:
                backgrounded = True
                background(reason)
            log.warning(
                "mount %s:%s: %s; trying again in %g s (retry=%d min)",
                req.host,
                req.path,
                reason,
                delay,
                opts.retry_minutes,
            )
        await trio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)


def _init_fuse(ops: NFSOperations, mountpoint: str, options: set[str]) -> str | None:
    """``pyfuse3.init``, catching what libfuse and fusermount3 print on stderr (fd 2):
    None when mounted, else one line saying why not (their reason, not just
    "fuse_session_mount failed").  What they printed is logged either way."""
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        failure: str | None = None
        try:
            pyfuse3.init(ops, mountpoint, options)
        except RuntimeError as e:
            failure = str(e)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        lines = [ln.strip() for ln in caught.read().decode(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    for line in lines:
        log.info("libfuse: %s", line)
    if failure is None:
        return None
    reason = lines[-1] if lines else failure
    hint = ""
    if "/dev/fuse" in reason and "ermission denied" in reason:
        hint = " (this user may not open /dev/fuse: ask for read-write access to it)"
    elif "user_allow_other" in reason:
        hint = " (or mount without allow_other)"
    return f"cannot mount on {mountpoint}: {reason}{hint}"


def _merge_op_stats(parts: list[dict[str, OpStats]]) -> dict[str, dict[str, float]]:
    """Per-operation figures of several sessions added up (maxima: the largest)."""
    merged: dict[str, dict[str, float]] = {}
    for part in parts:
        for name, op in part.items():
            into = merged.setdefault(name, {f.name: 0 for f in dataclasses.fields(OpStats)})
            for key, value in asdict(op).items():
                into[key] = max(into[key], value) if key.endswith("_max") else into[key] + value
    return dict(sorted(merged.items()))


def statistics_hook(
    req: MountRequest, manager: StateManager, client: NFSClient, started: float
) -> Callable[[], dict[str, Any]]:
    """What the statistics socket adds to the mount's counters: the recovery history
    (the state manager's), the mount (source, options in effect, age), and per session
    and in all what /proc/self/mountstats gives for a kernel mount: the session's
    counters and the per-operation counts, bytes, RTT and execute times."""

    def hook() -> dict[str, Any]:
        data: dict[str, Any] = dict(manager.statistics())
        sessions = manager.sessions()
        data["mount"] = {
            "source": f"{req.host}:{req.path}",
            "mountpoint": req.mountpoint,
            "pid": os.getpid(),
            "nfs": "4.1",
            "proto": "tcp",
            "age": time.time() - started,
            "options": req.options.describe(client.maxread, client.maxwrite),
            # The flavour negotiated for the export's root (RFC 8881 section 2.6).
            "flavour": client.root_flavour.value,
        }
        data["sessions"] = [
            {
                "server": f"{s.host}:{s.port}",
                "session": s.sessionid.hex(),
                "lease_time": s.lease_time,
                "counters": asdict(s.stats),
                "operations": {name: asdict(op) for name, op in s.op_statistics().items()},
            }
            for s in sessions
        ]
        data["operations"] = _merge_op_stats([s.op_statistics() for s in sessions])
        return data

    return hook


async def _mount_and_serve(
    req: MountRequest,
    ready: Callable[[str | None], None],
    background: Callable[[str], None] | None,
    nursery: trio.Nursery,
    stop: _Stop,
) -> None:
    opts = req.options
    spec = f"{req.host}:{req.path}"
    session: ServerSession | None = None
    client: NFSClient | None = None
    with stop.setup:
        try:
            session, client = await _set_up(req, nursery, background)
        except NFSClientError as e:
            ready(f"mount {spec} failed: {e}")
            return
    if session is None or client is None or stop.signum is not None:
        ready(f"mount {spec} interrupted by signal {stop.signum}; nothing mounted")
        if session is not None:
            await _destroy_sessions([session], opts.timeo)
        return
    if client.root_attrs.type != nfs_ftype4.NF4DIR:
        # FUSE would mount it, and then every access would fail with EIO.
        ready(f"{spec} is not a directory")
        await _destroy_sessions([session], opts.timeo)
        return
    if is_mounted(req.mountpoint):  # a background mount: something came first
        ready(f"cannot mount on {req.mountpoint}: something is mounted there by now")
        await _destroy_sessions([session], opts.timeo)
        return
    # Mounting was soft (bounded by retry=); from now on calls are as the options say.
    session.options = dataclasses.replace(session.options, hard=opts.hard)
    manager = StateManager(client, nursery)
    manager.attach()
    ops_class = operations_class(NFSOperations, LOCAL_LOCK_KINDS[opts.local_lock])
    ops = ops_class(client, nursery, CacheTimes(*opts.cache_times()))
    ops.recovery_stats = statistics_hook(req, manager, client, time.time())
    ops.negative_lookups = opts.lookupcache == "all"
    ops.positive_lookups = opts.lookupcache != "none"
    ops.name_max = opts.namlen
    ops.close_to_open = opts.cto
    client.want_delegations = opts.delegations
    fuse_options = set(pyfuse3.default_options)
    fuse_options.add(f"fsname={spec}")
    fuse_options.add("subtype=fusenfs")
    if opts.allow_other:
        fuse_options.add("allow_other")
    fuse_options.update(opts.kernel_flags())
    failure = _init_fuse(ops, req.mountpoint, fuse_options)
    if failure is not None:
        ready(failure)
        await _destroy_sessions(manager.sessions(), opts.timeo)
        return
    log.info(
        "mounted %s on %s (maxread=%d maxwrite=%d lease=%ds flavour %s; %s)",
        spec,
        req.mountpoint,
        client.maxread,
        client.maxwrite,
        client.session.lease_time,
        client.root_flavour.value,
        opts.describe(client.maxread, client.maxwrite),
    )
    record = write_mount_record(req)
    statistics_scope = trio.CancelScope()

    async def publish_statistics() -> None:
        with statistics_scope:
            await serve_statistics(req.mountpoint, ops.statistics, public=opts.allow_other)

    nursery.start_soon(publish_statistics)
    ready(None)
    try:
        # pyfuse3.main() returns by itself when the kernel unmounted us (fusermount3 -u);
        # on a signal _stop_on_request flushes, unmounts and then cancels it, handlers
        # that still wait for the server included.
        with trio.CancelScope() as fuse_scope:
            nursery.start_soon(_stop_on_request, req, ops, stop, fuse_scope)
            nursery.start_soon(return_free_memory, data_bytes(manager.sessions))
            tune_garbage_collector()
            tune_malloc()
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
            statistics_scope.cancel()
            remove_mount_record(record)
            await _return_delegations(client, opts.timeo)
            await _destroy_user_contexts(client, opts.timeo)
            await _destroy_sessions(manager.sessions(), opts.timeo)
        log.info("stopped serving %s", req.mountpoint)


async def _return_delegations(client: NFSClient, timeo: float) -> None:
    """DELEGRETURN every delegation before the client ID goes (RFC 8881 section
    10.2: returned, not left for the server to revoke), bounded by ``timeo``."""
    held = len(client.state.delegations)
    if not held:
        return
    with trio.move_on_after(timeo) as scope:
        await client.return_all_delegations()
    if scope.cancelled_caught:
        log.warning("%d delegations not returned in %g s", len(client.state.delegations), timeo)


async def _destroy_user_contexts(client: NFSClient, timeo: float) -> None:
    """RPCSEC_GSS_DESTROY of the users' contexts before the sessions go (RFC 2203
    section 5.4), within ``DESTROY_DEADLINE`` (never more than ``timeo``), shielded."""
    deadline = min(DESTROY_DEADLINE, timeo)
    with trio.move_on_after(deadline, shield=True) as scope:
        destroyed = await client.destroy_user_contexts()
    if scope.cancelled_caught:
        log.info("users' RPCSEC_GSS contexts not all destroyed within %g s", deadline)
    elif destroyed:
        log.info("destroyed %d users' RPCSEC_GSS contexts", destroyed)


# ---------------------------------------------------------------------- probe


async def probe(
    host: str, port: int, options: SessionOptions | None = None, path: str | None = None
) -> list[tuple[str, str]]:
    """What a server says about itself: (label, value) lines for ``fusenfs probe``.

    An RPC NULL call (does it speak NFSv4?), EXCHANGE_ID (server_owner, server_scope,
    implementation id), CREATE_SESSION (negotiated channel attributes), GETATTR on the
    root (supported attributes, fsid, lease time), the exports found in the
    pseudo-file system with their fsids and security flavours (SECINFO, RFC 8881
    sections 2.6, 18.29, 18.45; the root's with SECINFO_NO_NAME), and with ``path``
    that path's fsid (the export's, as ``fusenfs stats`` shows it) and flavours; then
    DESTROY_SESSION and
    DESTROY_CLIENTID.  All of it within one retry budget, ``timeo * (retrans + 1)``
    seconds of ``options`` (default: ``PROBE_TIMEO``, ``PROBE_RETRANS``), and the
    destroy within ``DESTROY_DEADLINE``.

    Raises:
        TransportError: the name does not resolve or the connection is refused.
        CallTimeout: the server did not complete the exchange within the budget.
        NotNFSv41: the server does not speak NFSv4.1 (the message says what it speaks).
        MountPathError: ``path`` cannot be looked up (the message names it).
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
                await check_nfs4(address, port, min(options.timeo, NULL_CALL_TIMEOUT))
                await _probe_lines(session, nursery, host, port, address, path, lines)
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
        if isinstance(error, NFS4Error) and not isinstance(error, MountPathError):
            message = explain(error, f"{host}:{port}")
            if message != str(error):
                raise NotNFSv41(message)
        raise error
    return lines


async def _probe_lines(
    session: ServerSession,
    nursery: trio.Nursery,
    host: str,
    port: int,
    address: str,
    path: str | None,
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
    ga = _resok(res.resarray, 1, nfs4.GETATTR4res, f"{host}:{port}")
    attrs = decode_fattr4(ga.obj_attributes)
    supported = bitmap4_to_set(attrs.supported_attrs or [])
    names = [FATTR4(n).name.removeprefix("FATTR4_").lower() for n in sorted(supported)]
    exports: list[tuple[str, str]] = []
    unlisted = ""
    try:
        _, exports = await list_exports(session)
    except NFS4Error as e:  # a server may refuse READDIR of its root: still a probe
        unlisted = f"cannot list them: {e}"
    root_kind = "pseudo-file system" if exports else "the root"
    lines.append(("root fsid", f"{_fsid_label(attrs.fsid)} ({root_kind})"))
    lines.append(("root sec", await flavours_of(session, [])))
    for export_path, label in exports:
        sec = await flavours_of(session, split_path(export_path))
        lines.append(("export", f"{export_path} ({label}; sec={sec})"))
    if unlisted:
        lines.append(("exports", unlisted))
    if path is not None:
        lines.append((f"{path} fsid", await _path_fsid(session, path)))
        lines.append((f"{path} sec", await flavours_of(session, split_path(path))))
    lines.append(("lease_time", f"{attrs.lease_time} s"))
    lines.append(("maxread / maxwrite", f"{attrs.maxread} / {attrs.maxwrite} bytes"))
    lines.append(("fh_expire_type", f"{attrs.fh_expire_type}"))
    lines.append(("supported_attrs", " ".join(names)))


async def flavours_of(session: ServerSession, comps: list[str]) -> str:
    """The security flavours the server offers for the object at ``comps`` (RFC 8881
    section 2.6): SECINFO of the last component from its parent (section 18.29), or
    for the root SECINFO_NO_NAME (SECINFO_STYLE4_CURRENT_FH, section 18.45); as a
    colon list in the server's order (``krb5p:krb5i:sys``; ``none`` is AUTH_NONE), or
    what the server said instead (a LOOKUP on the way may want another flavour).
    Sent with the session's machine credential: SECINFO answers any flavour.
    """
    ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args()]
    ops += [nfs4.LOOKUP4args(objname=c.encode()) for c in comps[:-1]]
    if comps:
        ops.append(nfs4.SECINFO4args(name=comps[-1].encode()))
    else:
        ops.append(nfs4.SECINFO_NO_NAME4args(style=secinfo_style4.SECINFO_STYLE4_CURRENT_FH))
    try:
        res = await session.compound(ops)
    except NFS4Error as e:
        return f"? ({e})"
    got = res.resarray[-1] if res.resarray else None
    entries = getattr(got, "resok", None)
    if not isinstance(got, nfs4.SECINFO4res | nfs4.SECINFO_NO_NAME4res) or entries is None:
        return "? (no SECINFO list in the reply)"
    return ":".join(secinfo_name(e) for e in entries) or "(none offered)"


async def _path_fsid(session: ServerSession, path: str) -> str:
    """``fsid M.m`` of ``path`` (PUTROOTFH, LOOKUP each component, GETATTR).

    Raises:
        MountPathError: a component cannot be looked up (the message names it).
    """
    ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args()]
    ops += [nfs4.LOOKUP4args(objname=c.encode()) for c in split_path(path)]
    ops.append(nfs4.GETATTR4args(attr_request=bitmap4_from([FATTR4.FSID])))
    try:
        res = await session.compound(ops)
    except NFS4Error as e:
        if e.status == nfsstat4.NFS4ERR_WRONGSEC:
            return f"?: NFS4ERR_WRONGSEC to AUTH_SYS ({e.op_name}); see {path} sec"
        if e.op_name != "LOOKUP":
            raise
        raise MountPathError(await _path_error(session, path, e)) from None
    ga = _resok(res.resarray, len(ops) - 1, nfs4.GETATTR4res, f"{session.host}:{session.port}")
    return _fsid_label(decode_fattr4(ga.obj_attributes).fsid)


def _show(value: bytes) -> str:
    """Opaque bytes for a person: text if printable (a trailing NUL shown as such), else hex."""
    text = value.rstrip(b"\0").decode("ascii", "replace")
    if text.isprintable() and "\ufffd" not in text:
        return text + ("\\0" * (len(value) - len(value.rstrip(b"\0"))))
    return "0x" + value.hex()

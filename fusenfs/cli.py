"""The ``fusenfs`` command: mount, umount, stats, probe, check; and mount(8)'s helper.

    fusenfs mount SERVER:/PATH MOUNTPOINT [-o opts] [-f] [--debug] [--log-file FILE]
    fusenfs umount MOUNTPOINT
    fusenfs stats [MOUNTPOINT] [--json]
    fusenfs probe SERVER[:PORT] [PATH] [-o timeo=N,retrans=N]
    fusenfs check ...                           (fusenfs.check: scenario checks)

mount(8) runs fusenfs in two ways, and both forms are accepted:

- ``mount -t fuse.fusenfs SERVER:/PATH DIR -o OPTS`` (and fstab type ``fuse.fusenfs``):
  mount(8) runs mount.fuse3, which runs ``fusenfs SERVER:/PATH DIR -o OPTS`` through
  /bin/sh with the system PATH (so ``fusenfs`` must be on it: contrib/setup.sh links
  /usr/local/bin/fusenfs);
- ``mount -t fusenfs SERVER:/PATH DIR -o OPTS`` (fstab type ``fusenfs``): mount(8) runs
  /sbin/mount.fusenfs (contrib/setup.sh links it to the ``mount.fusenfs`` command) as
  ``mount.fusenfs SERVER:/PATH DIR [-sfnvrw] -o OPTS``.

Either way the options are mount(8)'s and nfs(5)'s (``fusenfs.options``); mount(8)'s
own (``_netdev``, ``nofail``, ``noauto``, ``user``, ``defaults``...) are accepted as
mount(8)'s, and ``suid`` and ``dev`` default to on as mount(8) makes them.

Every failure the user can cause (a bad address, a refused connection, an unknown
option, a missing or non-empty mount point, an export path that is not a directory) is
one line on stderr and a non-zero exit.  Output into a closed pipe (``fusenfs stats M |
head -1``) ends the command quietly with status 141, as SIGPIPE ends ``cat``.

``mount`` daemonizes: the parent forks, the child (its own session) mounts and reports
"ok" or an error through a pipe, and the parent exits 0 or prints the error.  While the
parent waits and stderr is a terminal, one progress line is updated in place.  SIGINT
or SIGTERM to the parent while it waits stops the child (SIGTERM; SIGKILL and
``fusermount3 -uz`` if it does not stop in time), leaves nothing mounted, prints one line
and exits 128 + the signal number (130 for Ctrl-C).  With ``-o bg`` (nfs(5)) a first
attempt that fails for a reason that may pass (no connection, no answer) makes the
child report "bg": the parent says so in one line and exits 0 while the child goes on
trying for ``retry`` minutes.

``umount`` runs ``fusermount3 -u``.  If the mount is busy it asks the mount process to
stop (SIGTERM to the pid in its mount record, see ``fusenfs.runner``), which flushes,
unmounts (lazily if still busy) and exits; if the mount point is still mounted after
``UMOUNT_WAIT_MAX`` seconds at most, a lazy unmount (``fusermount3 -uz``).  Each step is
one line on stderr; it always returns within a bounded time.

``stats MOUNTPOINT`` prints what /proc/self/mountstats gives for a kernel NFS mount
(options in effect, per-operation counts, bytes, RTT and execute times, re-sends and
timeouts, the session's counters) and the migration and recovery history; ``stats``
alone lists every fusenfs mount (fstype ``fuse.fusenfs`` in /proc/self/mountinfo).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from fusenfs.options import (
    MountOptionError,
    MountOptions,
    check_combination,
    parse_options,
    parse_server_port,
    parse_server_spec,
)
from session.errors import CallTimeout, NFSClientError

if TYPE_CHECKING:
    from fusenfs.runner import MountRequest

log = logging.getLogger("fusenfs")

EXIT_USAGE = 2
EXIT_FAILURE = 32  # mount(8): mount failure
EXIT_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for cat killed by SIGPIPE

#: The signals that stop a mount (and the mount parent's wait).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
#: Seconds the mount parent waits for an interrupted child to stop before SIGKILL.
CHILD_STOP_TIMEOUT = 10.0
#: Seconds ``umount`` gives the mount process beyond its retry budget, and at most in all.
UMOUNT_GRACE = 5.0
UMOUNT_WAIT_MAX = 20.0
#: Seconds a fusermount3 run may take.
FUSERMOUNT_TIMEOUT = 10.0
#: Seconds of waiting before the mount parent shows its progress line.
PROGRESS_AFTER = 1.0


class CliError(Exception):
    """A one-line error for the user."""


def setup_logging(debug: bool, to_file: str | None = None, quiet_session: bool = False) -> None:
    """Log to stderr or ``to_file``; INFO for fusenfs, WARNING for the session layer.

    ``quiet_session``: ERROR for the session layer (``probe``: its result is one line,
    not a warning per reconnect).
    """
    level = logging.DEBUG if debug else logging.INFO
    handler: logging.Handler
    handler = logging.FileHandler(to_file) if to_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not debug:
        session_level = logging.ERROR if quiet_session else logging.WARNING
        logging.getLogger("session").setLevel(session_level)
        logging.getLogger("session.transport").setLevel(session_level)


def _mount_table() -> list[tuple[int, str, str]] | None:
    """(mount id, ``major:minor``, escaped mount point) of each line of
    /proc/self/mountinfo, or None if it cannot be read."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    return [(int(row[0]), row[2], row[4]) for row in rows if len(row) > 4 and row[0].isdigit()]


def _escaped(path: str) -> str:
    """``path`` as mountinfo writes it (octal escapes for backslash, space, tab, newline)."""
    return (
        path.replace("\\", "\\134")
        .replace(" ", "\\040")
        .replace("\t", "\\011")
        .replace("\n", "\\012")
    )


def is_mounted(path: str) -> bool:
    """Whether ``path`` is a mount point, from /proc/self/mountinfo.

    Unlike ``os.path.ismount`` this never stats the path, so it answers even when the
    file system behind it hangs (a FUSE daemon waiting for a dead server).
    """
    table = _mount_table()
    if table is None:
        return os.path.ismount(path)
    wanted = _escaped(path)
    return any(point == wanted for _, _, point in table)


def mount_id(path: str) -> int | None:
    """The mount id (mountinfo's first field, fdinfo's ``mnt_id``) of the mount on
    ``path`` (the topmost if several are stacked), or None if nothing is mounted there."""
    wanted = _escaped(path)
    ids = [ident for ident, _, point in _mount_table() or [] if point == wanted]
    return ids[-1] if ids else None


def mount_device(path: str) -> str | None:
    """``major:minor`` of the (topmost) file system mounted on ``path``, or None; from
    mountinfo, never a stat (a FUSE daemon asking about its own mount would wait for
    itself)."""
    wanted = _escaped(path)
    devices = [dev for _, dev, point in _mount_table() or [] if point == wanted]
    return devices[-1] if devices else None


def check_mountpoint(path: str) -> None:
    """An absent, non-directory, mounted or non-empty mount point is a ``CliError``."""
    in_use = f"{path} is already a mount point (in use: unmount it first, or choose another)"
    if is_mounted(path):  # first: a stat of a hung mount would wait for it
        raise CliError(in_use)
    if not os.path.isdir(path):
        raise CliError(f"mount point {path} does not exist or is not a directory")
    if os.path.ismount(path):
        raise CliError(in_use)
    if os.listdir(path):
        raise CliError(f"mount point {path} is not empty")


#: The subcommands; a first argument that is none of them but holds a ':' is a
#: mount(8)-style call, ``fusenfs SERVER:/PATH DIR -o OPTS`` (mount.fuse3 runs that).
COMMANDS = ("mount", "umount", "stats", "probe", "check")

OPTIONS_HELP = (
    "comma-separated mount(8) and nfs(5) options: ro/rw, exec/noexec, suid/nosuid, "
    "dev/nodev, sync/async, atime/noatime/relatime, hard/soft/softerr, timeo=N (tenths "
    "of s, default 600), retrans=N (default 2), port=N, rsize=N, wsize=N, nconnect=N, "
    "ac/noac, actimeo=S, acregmin=S, acregmax=S, acdirmin=S, acdirmax=S, "
    "lookupcache=all|positive|none, cto/nocto, nolock, local_lock=..., bg/fg, retry=MIN, "
    "vers=4.1, proto=tcp, sec=FLAVOURS (sys, krb5, krb5i, krb5p; a colon list in order "
    "of preference, e.g. sec=krb5p:krb5i:sys), clientaddr=ADDR, intr/nointr, namlen=N; "
    "mount(8)'s own (_netdev, nofail, noauto, user, defaults, x-*); fusenfs's allow_other, "
    "foreground, debug, and for Kerberos the machine credential's keytab=PATH (default "
    "/etc/krb5.keytab) and principal=NAME (default host/FQDN)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusenfs",
        description="Userspace NFSv4.1 client mounted through FUSE; also run by mount(8) "
        "as 'fusenfs SERVER:/PATH DIR -o OPTS'",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mount", help="mount SERVER:/PATH on MOUNTPOINT")
    m.add_argument("spec", metavar="SERVER:/PATH")
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    m.add_argument(
        "-o", dest="options", action="append", default=[], metavar="OPTS", help=OPTIONS_HELP
    )
    m.add_argument("-f", "--foreground", action="store_true", help="do not daemonize")
    m.add_argument("--debug", action="store_true", help="log one line per COMPOUND each way")
    m.add_argument(
        "--log-file",
        help="where the mount logs (default: stderr in the foreground, "
        "/tmp/fusenfs-<pid>.log for a daemonized mount)",
    )
    u = sub.add_parser("umount", help="unmount MOUNTPOINT")
    u.add_argument("mountpoint", metavar="MOUNTPOINT")
    st = sub.add_parser(
        "stats",
        help="per-operation statistics, servers, migrations, recovery events of a mount; "
        "without MOUNTPOINT: every fusenfs mount",
    )
    st.add_argument("mountpoint", metavar="MOUNTPOINT", nargs="?")
    st.add_argument("--json", action="store_true", help="print the raw JSON")
    st.add_argument("--events", type=int, default=20, metavar="N", help="last N events")
    p = sub.add_parser(
        "probe",
        help="show what an NFSv4.1 server says about itself (exports, their fsids and "
        "security flavours)",
    )
    p.add_argument("server", metavar="SERVER[:PORT]", help="the server (default port 2049)")
    p.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        help="also show this path's fsid (an export's) and security flavours",
    )
    p.add_argument(
        "-o",
        dest="options",
        action="append",
        default=[],
        metavar="OPTS",
        help="timeo=N (tenths of s, default 50), retrans=N (default 2): the probe gives "
        "up after timeo*(retrans+1)",
    )
    p.add_argument("--debug", action="store_true")
    sub.add_parser("check", help="scenario checks of a server (fusenfs check --help)")
    return parser


def build_helper_parser(prog: str) -> argparse.ArgumentParser:
    """mount(8)'s calling convention for a helper: ``SPEC DIR [-sfnvrw] [-o OPTS]``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="mount an NFSv4.1 export through FUSE (a mount(8) helper)"
    )
    parser.add_argument("spec", metavar="SERVER:/PATH")
    parser.add_argument("mountpoint", metavar="DIR")
    parser.add_argument(
        "-o", dest="options", action="append", default=[], metavar="OPTS", help=OPTIONS_HELP
    )
    parser.add_argument("-s", dest="sloppy", action="store_true", help="tolerate unknown options")
    parser.add_argument("-f", dest="fake", action="store_true", help="check, do not mount")
    parser.add_argument("-n", dest="no_mtab", action="store_true", help="(no mtab is written)")
    parser.add_argument("-v", dest="verbose", action="store_true", help="say what is done")
    parser.add_argument("-r", dest="ro", action="store_true", help="read-only (-o ro)")
    parser.add_argument("-w", dest="rw", action="store_true", help="read-write (-o rw)")
    parser.add_argument("-t", dest="type", help="fusenfs or fuse.fusenfs")
    parser.add_argument("-N", dest="namespace", help="(not supported)")
    return parser


@dataclass(slots=True)
class MountCall:
    """One mount asked for, by ``fusenfs mount`` or by mount(8)."""

    spec: str
    mountpoint: str
    options: list[str]
    foreground: bool = False
    debug: bool = False
    log_file: str | None = None
    via_mount8: bool = False
    sloppy: bool = False
    fake: bool = False
    verbose: bool = False


def cmd_mount(args: argparse.Namespace) -> int:
    return do_mount(
        MountCall(
            spec=args.spec,
            mountpoint=args.mountpoint,
            options=args.options,
            foreground=args.foreground,
            debug=args.debug,
            log_file=args.log_file,
        )
    )


def helper_main(argv: list[str], prog: str) -> int:
    """``mount.fusenfs SPEC DIR -o OPTS`` (mount(8)) or ``fusenfs SPEC DIR -o OPTS``
    (mount.fuse3): a daemonizing mount with mount(8)'s defaults."""
    # mount(8) runs helpers with no PATH at all; fusermount3 and friends live here.
    os.environ.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    args = build_helper_parser(prog).parse_args(argv)
    if args.type is not None and args.type not in ("fusenfs", "fuse.fusenfs"):
        raise MountOptionError(f"-t {args.type}: this helper mounts fusenfs only")
    if args.namespace is not None:
        raise MountOptionError("-N: mounting in another namespace is not supported")
    options = list(args.options)
    if args.ro:
        options.append("ro")
    if args.rw:
        options.append("rw")
    return do_mount(
        MountCall(
            spec=args.spec,
            mountpoint=args.mountpoint,
            options=options,
            via_mount8=True,
            sloppy=args.sloppy,
            fake=args.fake,
            verbose=args.verbose,
        )
    )


def _check_log_file(path: str) -> None:
    """The log file can be written (opened for appending, as logging will)."""
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise CliError(f"cannot write the log file {path}: {e.strerror or e}") from None


def do_mount(call: MountCall) -> int:
    """Parse, check, then mount in the foreground or daemonized (module docstring)."""
    from fusenfs.runner import MountRequest, serve_mount, session_options

    opts = MountOptions(via_mount8=call.via_mount8)
    for text in call.options:
        parse_options(text, opts, sloppy=call.sloppy)
    for ignored in opts.ignored:
        print(f"fusenfs: ignoring unknown mount option {ignored!r} (sloppy, -s)", file=sys.stderr)
    opts.foreground = opts.foreground or call.foreground
    opts.debug = opts.debug or call.debug
    check_combination(opts)
    session_options(opts)  # an option the session layer cannot honour: refused now
    host, path = parse_server_spec(call.spec)
    mountpoint = os.path.abspath(call.mountpoint)
    check_mountpoint(mountpoint)
    if call.log_file is not None:
        _check_log_file(call.log_file)
    request = MountRequest(host=host, path=path, mountpoint=mountpoint, options=opts)
    if call.verbose or call.fake:
        print(
            f"fusenfs: {'would mount' if call.fake else 'mounting'} {host}:{path} on "
            f"{mountpoint} ({opts.describe()})"
        )
    if call.fake:
        return 0

    if opts.foreground:
        setup_logging(opts.debug, call.log_file)
        failure: list[str] = []

        def ready(message: str | None) -> None:
            if message:
                failure.append(message)

        trio.run(serve_mount, request, ready)
        if failure:
            raise CliError(failure[0])
        return 0

    # Daemonize like mount.nfs: the parent returns once the mount is up (or failed).
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    # SIGINT/SIGTERM stay blocked across the fork until the parent's handlers are in
    # place: a Ctrl-C at any moment finds a parent that knows its child.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        os.close(read_fd)
        _daemon(request, write_fd, call.log_file or daemon_log_path(os.getpid()))
    os.close(write_fd)
    log_file = (call.log_file or daemon_log_path(pid)) if opts.debug else None
    return _wait_for_daemon(pid, read_fd, request, log_file)


def daemon_log_path(pid: int) -> str:
    """Where a daemonized mount logs without ``--log-file``."""
    return f"/tmp/fusenfs-{pid}.log"


#: What the mount process writes to the pipe: "ok", "bg:REASON", or an error line.
REPORT_OK = "ok"
REPORT_BACKGROUND = "bg:"


def _daemon(request: MountRequest, write_fd: int, log_file: str) -> NoReturn:
    """The mount process (the forked child): mount, report through ``write_fd``, serve.

    Writing the report tolerates a parent that went away (EPIPE): if it went away
    before hearing that the mount is up, nobody was told it is, so the mount is
    stopped (a SIGTERM to ourselves: the same bounded path as any stop).  After a
    "bg" report the parent is gone by design: the outcome is only logged.
    """
    from fusenfs.runner import serve_mount

    told = False
    backgrounded = False
    code = 0

    def report(text: str) -> bool:
        nonlocal told
        told = True
        try:
            os.write(write_fd, text.encode())
            return True
        except OSError as e:
            log.warning("cannot tell the mount command (%s)", e.strerror)
            return False
        finally:
            with contextlib.suppress(OSError):
                os.close(write_fd)

    try:
        os.setsid()
        setup_logging(request.options.debug, log_file)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)

        def ready_daemon(message: str | None) -> None:
            nonlocal code
            if message is not None:
                code = EXIT_FAILURE
            if backgrounded:
                if message is None:
                    log.info("background mount of %s is up", request.mountpoint)
                else:
                    log.error("background mount gave up: %s", message)
                return
            if told:
                return
            if not report(message or REPORT_OK) and message is None:
                log.warning(
                    "the mount command went away before hearing that %s is mounted: unmounting",
                    request.mountpoint,
                )
                os.kill(os.getpid(), signal.SIGTERM)

        def background(reason: str) -> None:
            nonlocal backgrounded
            if told:
                return
            backgrounded = True
            report(REPORT_BACKGROUND + reason)

        _watch_parent(write_fd, lambda: told)
        trio.run(serve_mount, request, ready_daemon, background)
    except BaseException as e:  # the parent must hear about any failure
        log.exception("mount process failed")
        if not told:
            with contextlib.suppress(OSError):
                os.write(write_fd, f"mount failed: {e}".encode())
        code = EXIT_FAILURE
    finally:
        logging.shutdown()
    os._exit(code)


#: Seconds between two looks of the mount process at its parent's end of the pipe.
PARENT_POLL = 0.5


def _watch_parent(write_fd: int, reported: Callable[[], bool]) -> None:
    """Stop the mount process (SIGTERM to itself: nothing gets mounted) if the command
    waiting for its report goes away first, killed (a SIGKILL leaves it no time to stop
    its child): its end of the pipe closes.  A thread, on a duplicate of ``write_fd``;
    it ends once the report is written."""
    watched = os.dup(write_fd)

    def watch() -> None:
        try:
            poller = select.poll()
            poller.register(watched, 0)  # POLLERR / POLLHUP are reported anyway
            while not reported():
                if poller.poll(PARENT_POLL * 1000) and not reported():
                    log.warning("the mount command went away before the mount was up: stopping")
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
        finally:
            os.close(watched)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signum)


class _Progress:
    """One line on a terminal, updated in place: ``fusenfs: waiting for HOST:PORT (N s)...``."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.shown = False

    def show(self, seconds: float) -> None:
        sys.stderr.write(f"\rfusenfs: waiting for {self.server} ({seconds:.0f} s)...\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def _read_report(read_fd: int, progress: _Progress | None) -> str:
    """What the child writes to the pipe, until it closes it ("ok" or an error)."""
    started = time.monotonic()
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([read_fd], [], [], 0.25)
        if ready:
            data = os.read(read_fd, 4096)
            if not data:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(data)
        waited = time.monotonic() - started
        if progress is not None and waited >= PROGRESS_AFTER:
            progress.show(waited)


def _reap(pid: int, timeout: float) -> bool:
    """Wait (bounded) for our child ``pid`` to exit; True once it has."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _lazy_unmount(mountpoint: str) -> None:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        return
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        subprocess.run([tool, "-uz", mountpoint], capture_output=True, timeout=FUSERMOUNT_TIMEOUT)


def _wait_for_daemon(pid: int, read_fd: int, request: MountRequest, debug_log: str | None) -> int:
    """The parent's side of ``_daemon``: wait for its report; on SIGINT/SIGTERM, undo.

    Called with ``STOP_SIGNALS`` blocked; they are unblocked once their handlers are
    installed, inside the ``try`` that handles them.
    """
    mountpoint = request.mountpoint
    server = f"{request.host}:{request.options.port}"
    progress = _Progress(server) if sys.stderr.isatty() else None
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in STOP_SIGNALS}
    try:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            if debug_log is not None:
                print(f"fusenfs: debug log: {debug_log}", file=sys.stderr)
            message = _read_report(read_fd, progress)
        except (_Interrupted, KeyboardInterrupt) as e:
            for signum in previous:
                signal.signal(signum, signal.SIG_IGN)
            if progress is not None:
                progress.clear()
            number = e.signum if isinstance(e, _Interrupted) else int(signal.SIGINT)
            return _abandon_mount(pid, mountpoint, number)
    finally:
        if progress is not None:
            progress.clear()
        os.close(read_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if message.startswith(REPORT_BACKGROUND):
        reason = message.removeprefix(REPORT_BACKGROUND)
        print(
            f"fusenfs: {request.host}:{request.path}: {reason}; retrying in the background "
            f"(pid {pid}, for up to {request.options.retry_minutes} min: retry=)",
            file=sys.stderr,
        )
        return 0
    if message != REPORT_OK:
        raise CliError(message or "the mount process died before mounting")
    return 0


def _abandon_mount(pid: int, mountpoint: str, signum: int) -> int:
    """Stop the child and make sure nothing stays mounted; one line; 128 + ``signum``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # mounted or not, it stops (runner: bounded)
    if not _reap(pid, CHILD_STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid, 5.0)
    if is_mounted(mountpoint):
        _lazy_unmount(mountpoint)  # it mounted and could not unmount, or was killed
    if is_mounted(mountpoint):
        print(
            f"fusenfs: mount interrupted; {mountpoint} is still mounted "
            f"(fusermount3 -uz {mountpoint} failed)",
            file=sys.stderr,
        )
    else:
        print("fusenfs: mount interrupted; nothing mounted", file=sys.stderr)
    return 128 + signum


def _fusermount(*args: str) -> tuple[bool, str]:
    """Run fusermount3 with a timeout: (succeeded, its last line of stderr or a reason)."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise CliError("fusermount3 not found (install the fuse3 package)")
    try:
        result = subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=FUSERMOUNT_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return False, f"{tool} {' '.join(args)} did not finish in {FUSERMOUNT_TIMEOUT:g} s"
    lines = result.stderr.strip().splitlines()
    # "fusermount3: failed to unmount /mnt: Device or resource busy": the reason.
    reason = lines[-1].rsplit(": ", 1)[-1] if lines else f"exit status {result.returncode}"
    return result.returncode == 0, reason


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def cmd_umount(args: argparse.Namespace) -> int:
    """Unmount; if busy, stop the mount process; at last, lazily (module docstring)."""
    from fusenfs.runner import process_start_time, read_mount_record

    mountpoint = os.path.abspath(args.mountpoint)
    if not is_mounted(mountpoint):
        raise CliError(f"{mountpoint} is not mounted")
    record = read_mount_record(mountpoint)
    wait = UMOUNT_WAIT_MAX if record is None else min(record.budget + UMOUNT_GRACE, UMOUNT_WAIT_MAX)

    def daemon_gone() -> bool:
        return record is None or process_start_time(record.pid) != record.start_time

    ok, reason = _fusermount("-u", mountpoint)
    if ok or not is_mounted(mountpoint):
        # The kernel let go; the mount process destroys its session and exits.
        if not _wait(daemon_gone, wait) and record is not None:
            print(
                f"fusenfs: {mountpoint} unmounted, but its mount process {record.pid} "
                f"is still running after {wait:g} s",
                file=sys.stderr,
            )
        return 0
    if record is not None:
        print(
            f"fusenfs: {mountpoint} is busy ({reason}); asking its mount process "
            f"{record.pid} to stop",
            file=sys.stderr,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        if _wait(lambda: not is_mounted(mountpoint), wait):
            _wait(daemon_gone, UMOUNT_GRACE)
            return 0
        print(
            f"fusenfs: {mountpoint} still mounted after {wait:g} s: lazy unmount (fusermount3 -uz)",
            file=sys.stderr,
        )
    else:
        print(
            f"fusenfs: {mountpoint} is busy ({reason}) and no mount process is recorded "
            "for it: lazy unmount (fusermount3 -uz)",
            file=sys.stderr,
        )
    ok, reason = _fusermount("-uz", mountpoint)
    if is_mounted(mountpoint):
        raise CliError(f"cannot unmount {mountpoint}: {reason}")
    return 0


#: Seconds ``fusenfs stats`` (listing every mount) waits for one mount to answer.
STATS_LIST_TIMEOUT = 2.0


def _unescape(field: str) -> str:
    """A mountinfo field without its octal escapes (``\\040`` is a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def fusenfs_mounts() -> list[dict[str, str]]:
    """Every fusenfs mount in /proc/self/mountinfo (fstype ``fuse.fusenfs``): its
    ``source`` (SERVER:/PATH), ``mountpoint`` and per-mount ``flags``."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        before, sep, after = line.partition(" - ")
        head, tail = before.split(), after.split()
        if not sep or len(head) < 6 or len(tail) < 2 or tail[0] != "fuse.fusenfs":
            continue
        mounts.append(
            {"source": _unescape(tail[1]), "mountpoint": _unescape(head[4]), "flags": head[5]}
        )
    return mounts


def read_stats(mountpoint: str, timeout: float | None = None) -> dict[str, Any]:
    """The statistics the mount at ``mountpoint`` publishes on its statistics socket
    (``fusenfs.statsock``).

    ``timeout``: seconds to wait for the mount process to answer; None waits.

    Raises:
        CliError: not a fusenfs mount (no socket, nobody listening), or no answer in
            ``timeout`` seconds.
    """
    from fusenfs.statsock import StatisticsUnavailable, mount_key, read_statistics

    if not is_mounted(mount_key(mountpoint)):
        raise CliError(f"{mountpoint}: not a fusenfs mount (nothing is mounted there)")
    try:
        return read_statistics(mountpoint, timeout)
    except StatisticsUnavailable as e:
        raise CliError(f"{mountpoint}: {e}") from None


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds // 60 % 60} min"


def cmd_stats(args: argparse.Namespace) -> int:
    """One mount's statistics (mountstats-like, then its history), or every mount."""
    if args.mountpoint is None:
        return _list_mounts(args.json)
    mountpoint = os.path.abspath(args.mountpoint)
    data = read_stats(mountpoint)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    mount = data.get("mount", {})
    if mount:
        print(
            f"{mount['source']} on {mount['mountpoint']} (fuse.fusenfs, pid {mount['pid']}): "
            f"NFSv{mount['nfs']} over {mount['proto'].upper()}, up {_age(mount['age'])}"
        )
        print(f"opts: {mount['options']}")
    print(f"inodes {data['inodes']}, open files {data['open_files']}")
    for s in data.get("sessions", []):
        c = s["counters"]
        print(
            f"session {s['session'][:8] or '-'} with {s['server']} (lease {s['lease_time']} s):"
            f" compounds {c.get('compounds', 0)}, reconnects {c.get('reconnects', 0)}, "
            f"re-sends {c.get('replays', 0)}, minor timeouts {c.get('minor_timeouts', 0)}, "
            f"major timeouts {c.get('major_timeouts', 0)}, DELAY retries "
            f"{c.get('retries_delay', 0)}, orphaned {c.get('orphaned', 0)}, renewals "
            f"{c.get('renewals', 0)}, session rebuilds {c.get('session_rebuilds', 0)}"
        )
    operations = data.get("operations", {})
    if operations:
        print(format_operations(operations))
    client = data.get("client", {})
    counters = data.get("counters", {})
    print(
        f"parked calls {client.get('parked_calls', 0)}, MOVED errors "
        f"{client.get('moved_errors', 0)}, reclaims {counters.get('reclaims', 0)}, "
        f"TEST_STATEIDs {counters.get('test_stateid', 0)}, "
        f"LEASE_MOVED seen {counters.get('lease_moved_seen', 0)}"
    )
    summary = data.get("summary", {})
    if summary.get("migrations") or summary.get("failed") or summary.get("referrals"):
        print(
            f"migrations {summary['migrations']} (failed {summary['failed']}), referrals "
            f"{summary['referrals']}; recovery median {summary['recovery_ms_median']} ms, "
            f"longest {summary['recovery_ms_longest']} ms"
        )
    for fs in data.get("filesystems", []):
        print(f"{fs['fs']:<16} {fs['path']:<24} on {fs['server']}")
    migrations = data.get("migrations", [])
    if migrations:
        print("migrations:")
    for m in migrations:
        status = "ok" if m["ok"] else f"FAILED: {m['error']}"
        print(
            f"  {m['fs']:<16} {m['kind']:<12} {m['source']} -> {m['destination'] or '?'} "
            f"({m['trigger']}; {m['decision']}; session: {m['session'] or '-'}) "
            f"{m['seconds'] * 1000:.1f} ms, reclaimed {m['reclaimed']}, "
            f"tested {m['tested']}, freed {m['freed']} {status}"
        )
    events = data.get("events", [])[-args.events :] if args.events else []
    if events:
        print("events:")
    for ev in events:
        stamp = time.strftime("%H:%M:%S", time.localtime(ev["when"]))
        print(f"  {stamp} {ev['fs'] or '-':<14} {ev['what']} ({ev['evidence']}) [{ev['rule']}]")
    return 0


def format_operations(operations: dict[str, dict[str, float]]) -> str:
    """The per-operation table, as mountstats prints a kernel mount's: per kind of
    COMPOUND (its main operation) the count, transmissions, timeouts, errors, bytes
    each way, and average and largest RTT and execute time in milliseconds."""
    header = (
        f"  {'operation':<20} {'ops':>7} {'trans':>7} {'timeouts':>8} {'errors':>6} "
        f"{'bytes sent':>12} {'bytes recv':>12} {'avg RTT':>8} {'max RTT':>8} "
        f"{'avg exe':>8} {'max exe':>8}"
    )
    rows = ["per-operation statistics (times in ms):", header]
    for name, op in operations.items():
        count = max(int(op["ops"]), 1)
        sends = max(int(op["transmissions"]), 1)
        rows.append(
            f"  {name:<20} {int(op['ops']):>7} {int(op['transmissions']):>7} "
            f"{int(op['timeouts']):>8} {int(op['errors']):>6} {int(op['bytes_sent']):>12} "
            f"{int(op['bytes_received']):>12} {op['rtt_ms_total'] / sends:>8.2f} "
            f"{op['rtt_ms_max']:>8.2f} {op['exec_ms_total'] / count:>8.2f} "
            f"{op['exec_ms_max']:>8.2f}"
        )
    return "\n".join(rows)


def _list_mounts(as_json: bool) -> int:
    """``fusenfs stats``: one line per fusenfs mount (or a JSON list)."""
    listing: list[dict[str, Any]] = []
    for m in fusenfs_mounts():
        entry: dict[str, Any] = dict(m)
        try:
            data = read_stats(m["mountpoint"], STATS_LIST_TIMEOUT)
        except CliError as e:
            entry["error"] = str(e).split(": ", 1)[-1]
        else:
            mount = data.get("mount", {})
            operations = data.get("operations", {})
            sessions = data.get("sessions", [])
            entry.update(
                pid=mount.get("pid"),
                age=mount.get("age"),
                servers=[s["server"] for s in sessions],
                compounds=sum(int(op["ops"]) for op in operations.values()),
                timeouts=sum(int(op["timeouts"]) for op in operations.values()),
                major_timeouts=sum(s["counters"].get("major_timeouts", 0) for s in sessions),
            )
        listing.append(entry)
    if as_json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing:
        print("no fusenfs mounts")
    for item in listing:
        if "error" in item:
            print(f"{item['source']} on {item['mountpoint']} ({item['flags']}): {item['error']}")
            continue
        servers = ", ".join(item["servers"]) or "-"
        print(
            f"{item['source']} on {item['mountpoint']} ({item['flags']}): pid {item['pid']}, "
            f"up {_age(item['age'] or 0)}, server {servers}, {item['compounds']} compounds, "
            f"{item['timeouts']} timeouts, {item['major_timeouts']} major"
        )
    return 0


def probe_options(texts: list[str]) -> tuple[float, int]:
    """``-o timeo=N,retrans=N`` of ``probe``: (timeo in seconds, retrans).

    Raises:
        MountOptionError: another option, or a bad value.
    """
    from fusenfs.runner import PROBE_RETRANS, PROBE_TIMEO

    opts = MountOptions(timeo=PROBE_TIMEO, retrans=PROBE_RETRANS)
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            name = part.partition("=")[0]
            if name not in ("timeo", "retrans"):
                raise MountOptionError(f"probe option {name!r}: probe takes timeo and retrans")
            parse_options(part, opts)
    return opts.timeo, opts.retrans


def probe_target(server: str, path: str | None) -> tuple[str, int, str | None]:
    """``SERVER[:PORT]`` (and a ``PATH``), or ``SERVER:/PATH`` (port 2049) -> (host,
    port, path or None).

    Raises:
        MountOptionError: a bad spec or path, or a port out of range.
    """
    if ":/" in server and not server.startswith("["):
        if path is not None:
            raise MountOptionError(f"probe {server} {path}: the path is given twice")
        host, spec_path = parse_server_spec(server)
        return host, 2049, spec_path
    host, port = parse_server_port(server)
    if path is not None and not path.startswith("/"):
        raise MountOptionError(f"probe path {path!r}: must start with /")
    return host, port, path


def cmd_probe(args: argparse.Namespace) -> int:
    from fusenfs.runner import probe
    from session.session import SessionOptions

    timeo, retrans = probe_options(args.options)
    host, port, path = probe_target(args.server, args.path)
    setup_logging(args.debug, quiet_session=True)
    host = host.strip("[]")
    try:
        lines = trio.run(probe, host, port, SessionOptions(timeo=timeo, retrans=retrans), path)
    except BaseException as exc:
        inner = only_exception(exc)
        if isinstance(inner, CallTimeout):
            reason = re.sub(r"^server \S+ not responding: ", "", str(inner))
            raise CliError(f"{host}:{port} not responding: {reason}") from None
        raise
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label:<{width}}  {value}")
    return 0


def cmd_check(argv: list[str]) -> int:
    """``fusenfs check ARGS``: ``fusenfs.check.main(ARGS)``, imported only now."""
    try:
        check = importlib.import_module("fusenfs.check")
    except ModuleNotFoundError as e:
        if e.name != "fusenfs.check":
            raise
        raise CliError("check: not available (fusenfs/check.py is not installed)") from None
    code: int = check.main(argv)
    return code


def only_exception(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, or ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: list[str] | None = None) -> int:
    """The ``fusenfs`` command, and ``mount.fusenfs`` when run by that name.

    ``fusenfs SERVER:/PATH DIR -o OPTS`` (no subcommand: what mount.fuse3 runs for
    ``mount -t fuse.fusenfs``) and ``mount.fusenfs SERVER:/PATH DIR [-sfnvrw] -o OPTS``
    (what mount(8) runs for ``mount -t fusenfs``) mount with mount(8)'s defaults.
    """
    prog = os.path.basename(sys.argv[0]) if argv is None else "fusenfs"
    argv = sys.argv[1:] if argv is None else argv
    command = "mount"
    try:
        if prog.startswith("mount."):
            code = helper_main(argv, prog)
        elif argv and argv[0] not in COMMANDS and not argv[0].startswith("-") and ":" in argv[0]:
            code = helper_main(argv, "fusenfs")
        elif argv and argv[0] == "check":
            command = "check"
            code = cmd_check(argv[1:])
        else:
            args = build_parser().parse_args(argv)
            command = args.command
            handlers = {
                "mount": cmd_mount,
                "umount": cmd_umount,
                "probe": cmd_probe,
                "stats": cmd_stats,
            }
            code = handlers[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe can still be told from an error
        return code
    except BrokenPipeError:
        return _closed_stdout()
    except MountOptionError as e:
        print(f"fusenfs: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, NFSClientError, OSError) as e:
        print(f"fusenfs: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except BaseExceptionGroup as group:
        # trio nurseries wrap what a task raised; a single user-level error is still
        # a one-line message, not a traceback.
        inner = only_exception(group)
        if isinstance(inner, (CliError, NFSClientError, OSError)):
            print(f"fusenfs: {inner}", file=sys.stderr)
            return EXIT_FAILURE
        raise
    except KeyboardInterrupt:
        # Before the fork, or before a foreground mount's trio.run took over SIGINT.
        if command == "mount":
            print("fusenfs: mount interrupted; nothing mounted", file=sys.stderr)
        return 130


def mount_helper() -> int:
    """The ``mount.fusenfs`` command (/sbin/mount.fusenfs links to it)."""
    return main()


def _closed_stdout() -> int:
    """stdout is a pipe nobody reads any more (``| head``): exit quietly, as cat does.

    Python would report the failed flush of what is still buffered at exit; pointing
    stdout at /dev/null first drops that (the reader did not want it).
    """
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE

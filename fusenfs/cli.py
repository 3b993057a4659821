"""The ``fusenfs`` command: mount, umount, probe.

    fusenfs mount SERVER:/PATH MOUNTPOINT [-o opts] [-f] [--debug]
    fusenfs umount MOUNTPOINT
    fusenfs stats MOUNTPOINT
    fusenfs probe SERVER[:PORT] [-o timeo=N,retrans=N]

Every failure the user can cause (a bad address, a refused connection, an unknown
option, a missing or non-empty mount point, an export path that is not a directory) is
one line on stderr and a non-zero exit.  Output into a closed pipe (``fusenfs stats M |
head -1``) ends the command quietly with status 141, as SIGPIPE ends ``cat``.

``mount`` daemonizes: the parent forks, the child (its own session) mounts and reports
"ok" or an error through a pipe, and the parent exits 0 or prints the error.  While the
parent waits and stderr is a terminal, one progress line is updated in place.  SIGINT
or SIGTERM to the parent while it waits stops the child (SIGTERM; SIGKILL and
``fusermount3 -uz`` if it does not stop in time), leaves nothing mounted, prints one line
and exits 128 + the signal number (130 for Ctrl-C).

``umount`` runs ``fusermount3 -u``.  If the mount is busy it asks the mount process to
stop (SIGTERM to the pid in its mount record, see ``fusenfs.runner``), which flushes,
unmounts (lazily if still busy) and exits; if the mount point is still mounted after
``UMOUNT_WAIT_MAX`` seconds at most, a lazy unmount (``fusermount3 -uz``).  Each step is
one line on stderr; it always returns within a bounded time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

import trio

from fusenfs.options import MountOptionError, MountOptions, parse_options, parse_server_spec
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
    return [
        (int(row[0]), row[2], row[4]) for row in rows if len(row) > 4 and row[0].isdigit()
    ]


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
    if is_mounted(path):  # first: a stat of a hung mount would wait for it
        raise CliError(f"{path} is already a mount point")
    if not os.path.isdir(path):
        raise CliError(f"mount point {path} does not exist or is not a directory")
    if os.path.ismount(path):
        raise CliError(f"{path} is already a mount point")
    if os.listdir(path):
        raise CliError(f"mount point {path} is not empty")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusenfs", description="Userspace NFSv4.1 client mounted through FUSE"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mount", help="mount SERVER:/PATH on MOUNTPOINT")
    m.add_argument("spec", metavar="SERVER:/PATH")
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    m.add_argument(
        "-o",
        dest="options",
        action="append",
        default=[],
        metavar="OPTS",
        help="comma-separated options: port=N, ro, rsize=N, wsize=N, timeo=N "
        "(tenths of s), retrans=N, actimeo=S, acregmin=S, acregmax=S, acdirmin=S, "
        "acdirmax=S, sec=sys, allow_other, foreground, debug",
    )
    m.add_argument("-f", "--foreground", action="store_true", help="do not daemonize")
    m.add_argument("--debug", action="store_true", help="log one line per COMPOUND each way")
    m.add_argument(
        "--log-file",
        help="where a daemonized mount logs (default: syslog-less /tmp/fusenfs-<pid>.log)",
    )
    u = sub.add_parser("umount", help="unmount MOUNTPOINT")
    u.add_argument("mountpoint", metavar="MOUNTPOINT")
    st = sub.add_parser("stats", help="per-file-system servers, migrations, recovery events")
    st.add_argument("mountpoint", metavar="MOUNTPOINT")
    st.add_argument("--json", action="store_true", help="print the raw JSON")
    st.add_argument("--events", type=int, default=20, metavar="N", help="last N events")
    p = sub.add_parser("probe", help="show what an NFSv4.1 server says about itself")
    p.add_argument("server", metavar="SERVER[:PORT]")
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
    return parser


def cmd_mount(args: argparse.Namespace) -> int:
    from fusenfs.runner import MountRequest, serve_mount

    opts = MountOptions()
    for text in args.options:
        parse_options(text, opts)
    opts.foreground = opts.foreground or args.foreground
    opts.debug = opts.debug or args.debug
    host, path = parse_server_spec(args.spec)
    mountpoint = os.path.abspath(args.mountpoint)
    check_mountpoint(mountpoint)
    request = MountRequest(host=host, path=path, mountpoint=mountpoint, options=opts)

    if opts.foreground:
        setup_logging(opts.debug)
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
        _daemon(request, write_fd, args.log_file or daemon_log_path(os.getpid()))
    os.close(write_fd)
    log_file = (args.log_file or daemon_log_path(pid)) if opts.debug else None
    return _wait_for_daemon(pid, read_fd, request.mountpoint, f"{host}:{opts.port}", log_file)


def daemon_log_path(pid: int) -> str:
    """Where a daemonized mount logs without ``--log-file``."""
    return f"/tmp/fusenfs-{pid}.log"


def _daemon(request: MountRequest, write_fd: int, log_file: str) -> NoReturn:
    """The mount process (the forked child): mount, report through ``write_fd``, serve.

    Writing the report tolerates a parent that went away (EPIPE): if it went away
    before hearing that the mount is up, nobody was told it is, so the mount is
    stopped (a SIGTERM to ourselves: the same bounded path as any stop).
    """
    from fusenfs.runner import serve_mount

    told = False
    code = 0
    try:
        os.setsid()
        setup_logging(request.options.debug, log_file)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)

        def ready_daemon(message: str | None) -> None:
            nonlocal told
            if told:
                return
            told = True
            try:
                os.write(write_fd, (message or "ok").encode())
            except OSError as e:
                if message is None:
                    log.warning(
                        "the mount command went away (%s) before hearing that %s is "
                        "mounted: unmounting",
                        e.strerror,
                        request.mountpoint,
                    )
                    os.kill(os.getpid(), signal.SIGTERM)
            finally:
                with contextlib.suppress(OSError):
                    os.close(write_fd)

        trio.run(serve_mount, request, ready_daemon)
    except BaseException as e:  # the parent must hear about any failure
        log.exception("mount process failed")
        if not told:
            with contextlib.suppress(OSError):
                os.write(write_fd, f"mount failed: {e}".encode())
        code = EXIT_FAILURE
    finally:
        logging.shutdown()
    os._exit(code)


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


def _wait_for_daemon(
    pid: int, read_fd: int, mountpoint: str, server: str, debug_log: str | None
) -> int:
    """The parent's side of ``_daemon``: wait for its report; on SIGINT/SIGTERM, undo.

    Called with ``STOP_SIGNALS`` blocked; they are unblocked once their handlers are
    installed, inside the ``try`` that handles them.
    """
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
    if message != "ok":
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


def cmd_stats(args: argparse.Namespace) -> int:
    """Print the statistics a mount publishes in its root's ``user.fusenfs.stats``."""
    mountpoint = os.path.abspath(args.mountpoint)
    try:
        raw = os.getxattr(mountpoint, "user.fusenfs.stats")
    except OSError as e:
        raise CliError(f"{mountpoint}: not a fusenfs mount ({e.strerror})") from None
    data = json.loads(raw)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"inodes {data['inodes']}, open files {data['open_files']}")
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


def cmd_probe(args: argparse.Namespace) -> int:
    from fusenfs.runner import probe
    from session.session import SessionOptions

    timeo, retrans = probe_options(args.options)
    setup_logging(args.debug, quiet_session=True)
    host, sep, port_text = args.server.rpartition(":")
    if not sep or not port_text.isdigit():
        host, port = args.server, 2049
    else:
        port = int(port_text)
    host = host.strip("[]")
    try:
        lines = trio.run(probe, host, port, SessionOptions(timeo=timeo, retrans=retrans))
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


def only_exception(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, or ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"mount": cmd_mount, "umount": cmd_umount, "probe": cmd_probe, "stats": cmd_stats}
    try:
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
        if args.command == "mount":
            print("fusenfs: mount interrupted; nothing mounted", file=sys.stderr)
        return 130


def _closed_stdout() -> int:
    """stdout is a pipe nobody reads any more (``| head``): exit quietly, as cat does.

    Python would report the failed flush of what is still buffered at exit; pointing
    stdout at /dev/null first drops that (the reader did not want it).
    """
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE

"""The ``fusenfs`` command: mount, umount, probe.

    fusenfs mount SERVER:/PATH MOUNTPOINT [-o opts] [-f] [--debug]
    fusenfs umount MOUNTPOINT
    fusenfs probe SERVER[:PORT]

Every failure the user can cause (a bad address, a refused connection, an unknown
option, a missing or non-empty mount point) is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time

import trio

from fusenfs.options import MountOptionError, MountOptions, parse_options, parse_server_spec
from session.errors import NFSClientError

log = logging.getLogger("fusenfs")

EXIT_USAGE = 2
EXIT_FAILURE = 32  # mount(8): mount failure


class CliError(Exception):
    """A one-line error for the user."""


def setup_logging(debug: bool, to_file: str | None = None) -> None:
    level = logging.DEBUG if debug else logging.INFO
    handler: logging.Handler
    handler = logging.FileHandler(to_file) if to_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not debug:
        logging.getLogger("session").setLevel(logging.WARNING)
        logging.getLogger("session.transport").setLevel(logging.WARNING)


def is_mounted(path: str) -> bool:
    """Whether ``path`` is a mount point, from /proc/self/mountinfo.

    Unlike ``os.path.ismount`` this never stats the path, so it answers even when the
    file system behind it hangs (a FUSE daemon waiting for a dead server).
    """
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            points = [line.split()[4] for line in f if len(line.split()) > 4]
    except OSError:
        return os.path.ismount(path)
    wanted = path.replace("\\", "\\134").replace(" ", "\\040")
    return wanted in points


def check_mountpoint(path: str) -> None:
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
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        if message != "ok":
            raise CliError(message or "the mount process died before mounting")
        return 0
    os.close(read_fd)
    os.setsid()
    log_file = args.log_file or f"/tmp/fusenfs-{os.getpid()}.log"
    setup_logging(opts.debug, log_file)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    told = False

    def ready_daemon(message: str | None) -> None:
        nonlocal told
        os.write(write_fd, (message or "ok").encode())
        os.close(write_fd)
        told = True

    code = 0
    try:
        trio.run(serve_mount, request, ready_daemon)
    except BaseException as e:  # the parent must hear about any failure
        log.exception("mount process failed")
        if not told:
            os.write(write_fd, f"mount failed: {e}".encode())
        code = EXIT_FAILURE
    os._exit(code)


def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint = os.path.abspath(args.mountpoint)
    if not is_mounted(mountpoint):
        raise CliError(f"{mountpoint} is not mounted")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise CliError("fusermount3 not found (install the fuse3 package)")
    result = subprocess.run([tool, "-u", mountpoint], capture_output=True, text=True)
    if result.returncode != 0:
        raise CliError(result.stderr.strip() or f"{tool} -u {mountpoint} failed")
    deadline = time.monotonic() + 10
    while is_mounted(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.05)
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


def cmd_probe(args: argparse.Namespace) -> int:
    from fusenfs.runner import probe

    setup_logging(args.debug)
    host, sep, port_text = args.server.rpartition(":")
    if not sep or not port_text.isdigit():
        host, port = args.server, 2049
    else:
        port = int(port_text)
    host = host.strip("[]")
    lines = trio.run(probe, host, port)
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
        return handlers[args.command](args)
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
        return 130

"""``fusenfs-testserver`` / ``python -m contrib.testserver``: run and drive a cluster.

    serve --instance 127.0.0.1 --instance 127.0.0.2 --fs a --fs b --control /tmp/x.sock
          [--sec a=krb5p:krb5i] [--krb5-keytab PATH [--krb5-principal nfs@localhost]]
          [--user alice=1001:1001]
    status | events [--since N] [--follow]
    migrate FS --to INSTANCE [--tsm | --no-tsm] [--no-session] [--new-clientid]
                             [--lose STATEID ...] [--freeze SECONDS] [--new-filehandles]
    expire-fh FS [--force] | fh-expire-type FS TYPE
    referral PATH --fs NAME --on INSTANCE
    reboot INSTANCE | expire INSTANCE [--clientid HEX] [--purge]
    revoke INSTANCE STATEID | locations [--replace] FS ENTRY [ENTRY ...]
    recall-any INSTANCE [--clientid HEX] [--keep N] [--mask rdata,wdata]
    retire FS ADDRESS
    scope INSTANCE SCOPE | owner INSTANCE MAJOR | minor ADDRESS N | move ADDRESS --to INSTANCE

``--instance`` takes ``[NAME=]ADDR[:PORT][/MINOR][,ADDR[:PORT][/MINOR]...]``: several
addresses of one instance are session-trunkable (same so_minor_id) or client-ID
trunkable (different ones).  ``--fs`` takes ``NAME[=PATH][@INSTANCE]``, and
``--fh-expire-type NAME=TYPE`` what it reports as fh_expire_type ("volatile-any",
"vol-migration", "vol-rename", "volatile-any+noexpire-with-open", ...).  Instances not
named are A, B, C in order.  Every client command talks to ``--control`` (default
``$FUSENFS_TESTSERVER_CONTROL`` or /tmp/fusenfs-testserver.sock).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Final

import trio

from contrib.testserver.cluster import Cluster, ClusterConfig, ControlError, FsSpec, open_cluster
from contrib.testserver.control import DEFAULT_CONTROL_PATH, request, serve_control
from contrib.testserver.model import parse_fh_expire_type
from contrib.testserver.security import GssConfig, acceptor_credentials, parse_sec
from contrib.testserver.server import EndpointConfig, InstanceConfig
from session.gss import GssCredentialsUnavailable

log = logging.getLogger("contrib.testserver")


class UsageError(Exception):
    """A bad command-line value (one line for the user)."""


def parse_instance(text: str, index: int, lease: int, grace: float | None) -> InstanceConfig:
    """``[NAME=]ADDR[:PORT][/MINOR][,...]`` -> InstanceConfig."""
    name, eq, rest = text.partition("=")
    if not eq:
        name, rest = chr(ord("A") + index), text
    endpoints: list[EndpointConfig] = []
    for part in rest.split(","):
        addr_port, slash, minor = part.partition("/")
        addr, colon, port = addr_port.partition(":")
        try:
            endpoints.append(
                EndpointConfig(
                    addr.strip(),
                    int(port) if colon else 0,
                    int(minor) if slash else 0,
                )
            )
        except ValueError:
            raise UsageError(f"bad --instance {text!r}: ports and minor ids are numbers") from None
    if not name or not endpoints:
        raise UsageError(f"bad --instance {text!r}")
    return InstanceConfig(name=name, endpoints=endpoints, lease_time=lease, grace_time=grace)


def apply_fh_expire_types(filesystems: list[FsSpec], items: list[str]) -> None:
    """``NAME=TYPE`` items (``--fh-expire-type``) set ``FsSpec.fh_expire_type``."""
    by_name = {spec.name: spec for spec in filesystems}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not value:
            raise UsageError(f"bad --fh-expire-type {item!r}: NAME=TYPE")
        spec = by_name.get(name)
        if spec is None:
            raise UsageError(f"--fh-expire-type {item!r}: no --fs {name}")
        try:
            parse_fh_expire_type(value)
        except ValueError as exc:
            raise UsageError(f"--fh-expire-type {item!r}: {exc}") from None
        spec.fh_expire_type = value


RECALL_ANY_TYPES: Final = {
    "rdata": 0,
    "wdata": 1,
    "dir": 2,
    "file-layout": 3,
    "blk-layout": 4,
}
"""Names of CB_RECALL_ANY type mask bits (RCA4_TYPE_MASK_RDATA_DLG ..., RFC 8881
section 20.6); the RFC names and bit numbers are accepted too."""


def parse_recall_mask(text: str) -> list[int]:
    """``rdata,wdata`` / ``RCA4_TYPE_MASK_WDATA_DLG`` / ``0,1`` -> bit numbers."""
    bits: list[int] = []
    for item in text.split(","):
        name = item.strip()
        if not name:
            continue
        lowered = name.lower().removeprefix("rca4_type_mask_").replace("_", "-")
        lowered = lowered.removesuffix("-dlg")
        if lowered in RECALL_ANY_TYPES:
            bits.append(RECALL_ANY_TYPES[lowered])
        elif name.isdigit() and int(name) < 32:
            bits.append(int(name))
        else:
            known = ", ".join(RECALL_ANY_TYPES)
            raise UsageError(f"bad --mask item {name!r} (known: {known}, or a bit 0 - 31)")
    if not bits:
        raise UsageError(f"bad --mask {text!r}: no type given")
    return bits


def apply_sec(filesystems: list[FsSpec], items: list[str]) -> None:
    """``NAME=FLAVOURS`` items (``--sec``) set ``FsSpec.sec``."""
    by_name = {spec.name: spec for spec in filesystems}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not value:
            raise UsageError(f"bad --sec {item!r}: NAME=FLAVOURS, e.g. a=krb5p:krb5i")
        spec = by_name.get(name)
        if spec is None:
            raise UsageError(f"--sec {item!r}: no --fs {name}")
        try:
            spec.sec = list(parse_sec(value))
        except ValueError as exc:
            raise UsageError(f"--sec {item!r}: {exc}") from None


def parse_user(text: str) -> tuple[str, tuple[int, int]]:
    """``NAME=UID[:GID]`` (``--user``) -> (name, (uid, gid)); the gid defaults to the uid."""
    name, eq, ids = text.partition("=")
    uid_text, _, gid_text = ids.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else uid
    except ValueError:
        raise UsageError(f"bad --user {text!r}: NAME=UID[:GID]") from None
    if not eq or not name or "@" in name or not 0 <= uid < 1 << 32 or not 0 <= gid < 1 << 32:
        raise UsageError(f"bad --user {text!r}: NAME=UID[:GID]")
    return name, (uid, gid)


def parse_fs(text: str) -> FsSpec:
    """``NAME[=PATH][@INSTANCE]`` -> FsSpec."""
    head, at, instance = text.partition("@")
    name, eq, path = head.partition("=")
    if not name:
        raise UsageError(f"bad --fs {text!r}")
    return FsSpec(name, path if eq else None, instance if at else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusenfs-testserver",
        description="A migration-capable NFSv4.1 test server cluster (RFC 8881 section 11)",
    )
    parser.add_argument(
        "--control",
        default=os.environ.get("FUSENFS_TESTSERVER_CONTROL", DEFAULT_CONTROL_PATH),
        help="the Unix control socket (default: %(default)s)",
    )
    # --control may also follow the subcommand (serve ... --control PATH).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--control", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", parents=[common], help="run a cluster in the foreground")
    s.add_argument("--instance", action="append", required=True, metavar="SPEC")
    s.add_argument("--fs", action="append", default=[], metavar="NAME[=PATH][@INSTANCE]")
    s.add_argument(
        "--fh-expire-type",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="fh_expire_type of file system NAME: persistent (default), volatile-any, "
        "vol-migration, vol-rename, noexpire-with-open, joined by +",
    )
    s.add_argument(
        "--sec",
        action="append",
        default=[],
        metavar="NAME=FLAVOURS",
        help="security flavours file system NAME allows, in SECINFO order: krb5p, krb5i, "
        "krb5, sys, none joined by : (default: every flavour the instance accepts)",
    )
    s.add_argument(
        "--krb5-keytab",
        metavar="PATH",
        help="accept RPCSEC_GSS (krb5, krb5i, krb5p) with the keys of this keytab "
        "(KRB5_CONFIG in the environment names the realm)",
    )
    s.add_argument(
        "--krb5-principal",
        metavar="NAME",
        help="the service principal: host-based nfs@localhost, or nfs/localhost@REALM "
        "(default: any key of the keytab)",
    )
    s.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME=UID[:GID]",
        help="map principal NAME@REALM (and owner NAME@DOMAIN) to UID, GID (before the "
        "password database)",
    )
    s.add_argument("--nfs4-domain", default="fusenfs.test", help="domain of owner strings")
    s.add_argument("--lease", type=int, default=90, help="lease time in seconds")
    s.add_argument("--grace", type=float, default=None, help="grace period in seconds")
    s.add_argument("--no-delegations", action="store_true", help="grant no delegations")
    s.add_argument(
        "--no-write-delegations",
        action="store_true",
        help="grant read delegations only",
    )
    s.add_argument("--debug", action="store_true", help="log one line per COMPOUND")

    sub.add_parser("status", parents=[common], help="instances, clients, state, file systems")
    e = sub.add_parser("events", parents=[common], help="the event log")
    e.add_argument("--since", type=int, default=0)
    e.add_argument("--follow", action="store_true", help="keep printing new events")

    m = sub.add_parser("migrate", parents=[common], help="move a file system to another instance")
    m.add_argument("fs")
    m.add_argument("--to", required=True)
    tsm = m.add_mutually_exclusive_group()
    tsm.add_argument(
        "--tsm",
        dest="no_tsm",
        action="store_false",
        default=False,
        help="with Transparent State Migration (the default; for scripts: --{tsm} in "
        "fusenfs check --migrate-cmd)",
    )
    tsm.add_argument(
        "--no-tsm", action="store_true", default=False, help="no Transparent State Migration"
    )
    m.add_argument("--no-session", action="store_true", help="do not transfer sessions")
    m.add_argument(
        "--new-clientid",
        action="store_true",
        help="transfer the client ID as a new confirmed one instead of merging",
    )
    m.add_argument("--lose", nargs="+", default=[], metavar="STATEID")
    m.add_argument("--freeze", type=float, default=0.0, metavar="SECONDS")
    m.add_argument(
        "--new-filehandles",
        action="store_true",
        help="the destination serves new filehandles: old ones get NFS4ERR_FHEXPIRED there",
    )

    xf = sub.add_parser(
        "expire-fh",
        parents=[common],
        help="every filehandle of a file system expires now (NFS4ERR_FHEXPIRED)",
    )
    xf.add_argument("fs")
    xf.add_argument(
        "--force",
        action="store_true",
        help="even if its fh_expire_type has no FH4_VOLATILE_ANY",
    )
    ft = sub.add_parser(
        "fh-expire-type", parents=[common], help="change what a file system reports"
    )
    ft.add_argument("fs")
    ft.add_argument(
        "type", help="e.g. volatile-any, vol-migration, volatile-any+noexpire-with-open"
    )

    r = sub.add_parser(
        "referral", parents=[common], help="make PATH a junction to a new file system elsewhere"
    )
    r.add_argument("path")
    r.add_argument("--fs", required=True)
    r.add_argument("--on", required=True)

    rb = sub.add_parser(
        "reboot", parents=[common], help="restart an instance (new boot verifier, grace)"
    )
    rb.add_argument("instance")

    x = sub.add_parser("expire", parents=[common], help="expire leases now")
    x.add_argument("instance")
    x.add_argument("--clientid")
    x.add_argument("--purge", action="store_true", help="forget the client ID entirely")

    rv = sub.add_parser("revoke", parents=[common], help="administratively revoke a stateid")
    rv.add_argument("instance")
    rv.add_argument("stateid")

    ra = sub.add_parser(
        "recall-any",
        parents=[common],
        help="send CB_RECALL_ANY: a client returns all but N of its delegations",
    )
    ra.add_argument("instance")
    ra.add_argument("--clientid", help="hex; default every client holding delegations")
    ra.add_argument("--keep", type=int, default=0, help="objects to keep (default 0)")
    ra.add_argument(
        "--mask",
        default="rdata,wdata",
        help="types to recall: rdata, wdata, dir, file-layout, blk-layout or bit numbers, "
        "comma-separated (default %(default)s)",
    )

    lo = sub.add_parser(
        "locations", parents=[common], help="extra location entries of a file system"
    )
    lo.add_argument("fs")
    lo.add_argument("entries", nargs="*", metavar="SERVER[,SERVER...]")
    lo.add_argument(
        "--replace",
        action="store_true",
        help="the entries are the whole list (the serving instance is not put first)",
    )
    rt = sub.add_parser(
        "retire",
        parents=[common],
        help="an address stops serving a file system; its instance's other addresses go on",
    )
    rt.add_argument("fs")
    rt.add_argument("address")

    sc = sub.add_parser("scope", parents=[common], help="change an instance's server_scope")
    sc.add_argument("instance")
    sc.add_argument("scope")
    ow = sub.add_parser("owner", parents=[common], help="change an instance's so_major_id")
    ow.add_argument("instance")
    ow.add_argument("major")
    mi = sub.add_parser(
        "minor", parents=[common], help="change the so_minor_id reported at an address"
    )
    mi.add_argument("address")
    mi.add_argument("minor", type=int)
    mv = sub.add_parser("move", parents=[common], help="move an address to another instance")
    mv.add_argument("address")
    mv.add_argument("--to", required=True)
    return parser


def setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("session").setLevel(logging.WARNING)
    logging.getLogger("contrib.testserver").setLevel(logging.DEBUG if debug else logging.INFO)


async def run_serve(config: ClusterConfig, control: str) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly (the control socket removed)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_cluster(config) as cluster, trio.open_nursery() as nursery:
            await nursery.start(serve_control, cluster, control)
            _print_ready(cluster, control)
            async for signum in signals:
                cluster.events.emit(None, "shutdown", f"signal {signum}: stopping the cluster")
                break
            nursery.cancel_scope.cancel()


def _print_ready(cluster: Cluster, control: str) -> None:
    for inst in cluster.instances.values():
        for ep in inst.endpoints:
            print(
                f"instance {inst.name} {ep.address}:{ep.port} "
                f"so_major_id={inst.so_major_id.decode()} so_minor_id={ep.so_minor_id}",
                flush=True,
            )
    for fs in cluster.model.filesystems.values():
        where = cluster.location_of(fs.name)
        print(f"fs {fs.name} /{'/'.join(fs.path)} on {where.name if where else '-'}", flush=True)
    print(f"control {control}", flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    instances = [
        parse_instance(text, i, args.lease, args.grace) for i, text in enumerate(args.instance)
    ]
    for inst in instances:
        inst.delegations = not args.no_delegations
        inst.write_delegations = not args.no_write_delegations
    filesystems = [parse_fs(text) for text in args.fs] or [FsSpec("a")]
    apply_fh_expire_types(filesystems, args.fh_expire_type)
    apply_sec(filesystems, args.sec)
    if args.krb5_principal and not args.krb5_keytab:
        raise UsageError("--krb5-principal needs --krb5-keytab")
    gss = GssConfig(args.krb5_keytab, args.krb5_principal) if args.krb5_keytab else None
    if gss is not None:
        try:
            acceptor_credentials(gss)  # a bad keytab or principal: one line, not a traceback
        except GssCredentialsUnavailable as exc:
            raise UsageError(str(exc)) from None
    users = dict(parse_user(text) for text in args.user)
    config = ClusterConfig(
        instances,
        filesystems,
        args.lease,
        args.grace,
        gss=gss,
        users=users,
        nfs4_domain=args.nfs4_domain,
    )
    setup_logging(args.debug)
    try:
        trio.run(run_serve, config, args.control)
    except KeyboardInterrupt:
        return 0
    return 0


def _show(result: Any) -> None:
    if result is None:
        print("ok")
    else:
        print(json.dumps(result, indent=2))


def _print_events(events: list[dict[str, Any]]) -> int:
    last = 0
    for event in events:
        stamp = time.strftime("%H:%M:%S", time.localtime(event["time"]))
        where = f"[{event['instance']}] " if event["instance"] else ""
        print(f"{stamp} #{event['seq']} {where}{event['kind']}: {event['message']}", flush=True)
        last = int(event["seq"])
    return last


def cmd_client(args: argparse.Namespace) -> int:
    path = args.control
    command = args.command
    if command == "status":
        _show(request(path, "status"))
    elif command == "events":
        last = _print_events(request(path, "events", since=args.since)) or args.since
        while args.follow:
            time.sleep(0.5)
            last = _print_events(request(path, "events", since=last)) or last
    elif command == "migrate":
        _show(
            request(
                path,
                "migrate",
                fs=args.fs,
                to=args.to,
                tsm=not args.no_tsm,
                session=not args.no_session,
                merge=not args.new_clientid,
                lose=args.lose,
                freeze=args.freeze,
                new_filehandles=args.new_filehandles,
                timeout=args.freeze + 60,
            )
        )
    elif command == "expire-fh":
        _show(request(path, "expire-fh", fs=args.fs, force=args.force))
    elif command == "fh-expire-type":
        value: str | int = args.type  # a name; the cluster says what is wrong with it
        with contextlib.suppress(ValueError):
            value = int(args.type, 0)
        _show(request(path, "fh-expire-type", fs=args.fs, type=value))
    elif command == "referral":
        _show(request(path, "referral", path=args.path, fs=args.fs, on=args.on))
    elif command == "reboot":
        _show(request(path, "reboot", instance=args.instance))
    elif command == "expire":
        _show(
            request(
                path, "expire", instance=args.instance, clientid=args.clientid, purge=args.purge
            )
        )
    elif command == "revoke":
        _show(request(path, "revoke", instance=args.instance, stateid=args.stateid))
    elif command == "recall-any":
        _show(
            request(
                path,
                "recall-any",
                instance=args.instance,
                clientid=args.clientid,
                keep=args.keep,
                mask=parse_recall_mask(args.mask),
            )
        )
    elif command == "locations":
        entries = [e.split(",") for e in args.entries]
        _show(request(path, "locations", fs=args.fs, entries=entries, replace=args.replace))
    elif command == "retire":
        _show(request(path, "retire", fs=args.fs, address=args.address))
    elif command == "scope":
        _show(request(path, "scope", instance=args.instance, scope=args.scope))
    elif command == "owner":
        _show(request(path, "major", instance=args.instance, major=args.major))
    elif command == "minor":
        _show(request(path, "minor", address=args.address, minor=args.minor))
    elif command == "move":
        _show(request(path, "move", address=args.address, to=args.to))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        return cmd_client(args)
    except (UsageError, ControlError) as exc:
        print(f"fusenfs-testserver: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fusenfs-testserver: {args.control}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

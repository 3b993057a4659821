"""``fusenfs check SERVER:/PATH``: how an NFSv4.1 server handles sessions, referrals and migration.

Runs the registered checks (``fusenfs.check_sessions``, ``fusenfs.check_namespace``,
``fusenfs.check_migration``) against a server and prints one line per check::

    CODE   OUTCOME        SECTION               what was found

with PASS, FAIL, WARN or NOT-SUPPORTED, the RFC 8881 (or seed) section, and for anything
but PASS what was sent, what came back and what the RFC asks for.  The exit status is 0
only when nothing FAILed (1 otherwise, 2 for a usage error, 3 when the server could not
be used at all).  ``--json FILE`` and ``--junit FILE`` write the same results for CI
systems; on a terminal a progress line shows the check running.  ``--explain CODE``
prints what a check does, the rule it rests on and the COMPOUNDs it sends.

The migration checks run only with ``--migrate-cmd CMD``: a shell command that makes the
server move the export, run once per migration scenario with these placeholders
replaced (``{{`` and ``}}`` for literal braces):

    {fs}       the file system (--migrate-fs; default: the export path's last component)
    {path}     the export path
    {target}   where to move it: the --migrate-to values, one per migration, in turn
    {source}   where it is now, HOST:PORT
    {tsm}      "tsm" or "no-tsm": whether the scenario wants Transparent State Migration
    {freeze}   seconds the scenario asks the server to answer NFS4ERR_DELAY first (0 or more)
    {scenario} the scenario's name: held, idle, no-tsm, freeze
    {server}, {port}  the SERVER and port given on the command line

For the project's test server: ``--migrate-cmd "python3 -m contrib.testserver --control
SOCK migrate {fs} --to {target} --{tsm} --freeze {freeze}" --migrate-to B,A``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import socket
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import trio

from fusenfs import check_migration, check_namespace, check_sessions  # noqa: F401 (register)
from fusenfs.check_base import (
    REGISTRY,
    CheckFailed,
    CheckSpec,
    Finding,
    NotSupported,
    Outcome,
    Result,
    counts,
    exit_status,
)
from fusenfs.check_context import CheckContext, CheckOptions
from fusenfs.check_wire import WireError
from session.errors import NFSClientError

#: Width of the report's section column (the longest section cited, 30 characters).
SECTION_WIDTH = 30

#: The report's order of check groups.
GROUP_ORDER = ("EID", "TRK", "SESS", "SEQ", "RC", "ST", "LEASE", "LOC", "REF", "MIG")

PLACEHOLDERS = ("fs", "path", "target", "source", "tsm", "freeze", "scenario", "server", "port")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNUSABLE = 0, 1, 2, 3

log = logging.getLogger("fusenfs.check")


class UsageError(Exception):
    """A bad argument (one line for the user)."""


# ---------------------------------------------------------------------- arguments
def parse_target(spec: str) -> tuple[str, str]:
    """``"127.0.0.1:/export"`` -> (host, path); ``[::1]:/x`` for IPv6.

    Raises:
        UsageError: no ``:/path`` part or no host.
    """
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"bad server {spec!r}: expected [ADDR]:/PATH")
        path = rest[1:]
    else:
        host, sep, path = spec.rpartition(":")
        if not sep:
            raise UsageError(f"bad server {spec!r}: expected SERVER:/PATH")
    if not host:
        raise UsageError(f"bad server {spec!r}: no server name")
    if not path.startswith("/"):
        raise UsageError(f"bad server {spec!r}: the path must start with /")
    return host, path


def parse_o(texts: Sequence[str]) -> dict[str, Any]:
    """``-o port=N,sec=sys,timeo=T`` (timeo in tenths of a second, as nfs(5)).

    Raises:
        UsageError: an unknown option or a bad value.
    """
    out: dict[str, Any] = {"port": 2049, "timeo": 10.0}
    for text in texts:
        for raw in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = raw.partition("=")
            if name == "port" and sep:
                if not value.isdigit() or not 0 < int(value) < 65536:
                    raise UsageError(f"-o port={value}: a port number 1-65535")
                out["port"] = int(value)
            elif name == "sec" and sep:
                if value != "sys":
                    raise UsageError(f"-o sec={value}: only sec=sys is supported")
            elif name == "timeo" and sep:
                if not value.isdigit() or int(value) < 1:
                    raise UsageError(f"-o timeo={value}: tenths of a second, at least 1")
                out["timeo"] = int(value) / 10
            else:
                raise UsageError(f"-o {raw}: fusenfs check takes port=N, sec=sys, timeo=T")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusenfs check",
        description="Check how an NFSv4.1 server handles sessions, referrals and migration "
        "(RFC 8881 chapters 2.10, 11 and 18).",
        epilog="Placeholders of --migrate-cmd: "
        + ", ".join("{" + n + "}" for n in PLACEHOLDERS)
        + " (see --help-migrate).",
    )
    p.add_argument("server", nargs="?", metavar="SERVER:/PATH")
    p.add_argument("-o", action="append", default=[], metavar="port=N,sec=sys,timeo=T")
    p.add_argument("--migrate-cmd", metavar="CMD", help="shell command that migrates the export")
    p.add_argument(
        "--migrate-fs", metavar="NAME", help="value of {fs} (default: last path component)"
    )
    p.add_argument(
        "--migrate-to",
        metavar="TARGET[,TARGET...]",
        default="",
        help="values of {target}, one per migration, in turn",
    )
    p.add_argument("--migrate-timeout", type=float, default=120.0, metavar="SECONDS")
    p.add_argument(
        "--freeze",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="{freeze} of the freeze scenario",
    )
    p.add_argument("--only", metavar="CODE,...", help="run only these checks (e.g. SESS3,MIG1)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--junit", metavar="FILE", help="write the results as JUnit XML")
    p.add_argument("--explain", metavar="CODE", help="what a check does and the rule it rests on")
    p.add_argument("--list", action="store_true", help="list the checks")
    p.add_argument("--help-migrate", action="store_true", help="the --migrate-cmd placeholders")
    p.add_argument("--grace-wait", type=float, default=120.0, metavar="SECONDS")
    p.add_argument("--lease-wait", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--walk-dirs", type=int, default=200, metavar="N")
    return p


def order_key(spec: CheckSpec) -> tuple[int, int]:
    group = spec.group
    rank = GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)
    return rank, int(spec.code[len(group) :])


def select(only: str | None) -> list[CheckSpec]:
    """The checks to run, in report order.

    Raises:
        UsageError: an unknown code (the message lists the known ones).
    """
    specs = sorted(REGISTRY.values(), key=order_key)
    if not only:
        return specs
    wanted = [c.strip().upper() for c in only.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in REGISTRY]
    if unknown:
        raise UsageError(
            f"--only: unknown check code(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}"
        )
    return [s for s in specs if s.code in wanted]


# ---------------------------------------------------------------------- running
async def run_one(spec: CheckSpec, ctx: CheckContext) -> Result:
    started = time.monotonic()
    try:
        finding = await spec.run(ctx)
    except CheckFailed as exc:
        finding = exc.finding
    except NotSupported as exc:
        finding = Finding(Outcome.NOT_SUPPORTED, str(exc))
    except WireError as exc:
        finding = Finding(
            Outcome.FAIL,
            f"no usable answer: {exc}",
            expected="an answer to every COMPOUND (RFC 8881 section 16.2)",
        )
    except NFSClientError as exc:
        finding = Finding(Outcome.FAIL, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug in the checker: reported as such, the run goes on
        log.exception("check %s crashed", spec.code)
        finding = Finding(
            Outcome.FAIL,
            f"internal error in fusenfs check (a bug here, not necessarily the server's): {exc!r}",
        )
    return Result(spec, finding, time.monotonic() - started)


async def run_checks(
    options: CheckOptions,
    specs: Sequence[CheckSpec],
    progress: Callable[[int, CheckSpec], None] | None = None,
    header: Callable[[list[str]], None] | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Preflight, then each check in turn (one at a time), then clean up.

    Raises:
        WireError: the preflight failed (the server cannot be checked).
    """
    results: list[Result] = []
    unusable: NFSClientError | None = None
    async with trio.open_nursery() as nursery:
        ctx = CheckContext(options, nursery)
        try:
            lines = await ctx.preflight()
        except NFSClientError as exc:
            unusable = exc
        else:
            if header is not None:
                header(lines)
            for i, spec in enumerate(specs):
                if progress is not None:
                    progress(i, spec)
                mark = ctx.mark()
                try:
                    result = await run_one(spec, ctx)
                finally:
                    await ctx.release(mark)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        finally:
            await ctx.close()
            nursery.cancel_scope.cancel()
    if unusable is not None:
        raise unusable
    return results


# ---------------------------------------------------------------------- reports
def report_line(result: Result) -> list[str]:
    """The report lines of one result: the check line, then for anything but PASS (and
    for a PASS that shows its timings) the evidence, indented."""
    spec, f = result.spec, result.finding
    lines = [f"{spec.code:<6} {f.outcome.value:<13} {spec.section:<{SECTION_WIDTH}} {f.summary}"]
    pad = " " * 7
    if f.outcome is not Outcome.PASS:
        for label, text in (("sent", f.sent), ("got", f.got), ("expected", f.expected)):
            if text:
                lines.append(f"{pad}{label + ':':<10}{text}")
    if f.outcome is not Outcome.PASS or f.show_details:
        lines += [f"{pad}{d}" for d in f.details]
    return lines


def summary_line(results: list[Result], seconds: float) -> str:
    c = counts(results)
    parts = ", ".join(f"{n} {name}" for name, n in c.items() if n)
    return f"{len(results)} checks in {seconds:.1f} s: {parts or 'none'}"


def to_json(
    results: list[Result], options: CheckOptions, started: float, seconds: float, header: list[str]
) -> dict[str, Any]:
    return {
        "tool": "fusenfs check",
        "server": f"{options.host}:{options.export}",
        "port": options.port,
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "seconds": round(seconds, 3),
        "exit_status": exit_status(results),
        "server_info": header,
        "summary": counts(results),
        "checks": [r.to_json() for r in results],
    }


def to_junit(
    results: list[Result], options: CheckOptions, started: float, seconds: float
) -> ET.Element:
    """JUnit XML (testsuites > testsuite > testcase): FAIL is a <failure>, NOT-SUPPORTED a
    <skipped>, WARN a passing test case whose <system-out> starts with "WARN"."""
    c = counts(results)
    name = f"fusenfs check {options.host}:{options.export}"
    attrs = {
        "name": name,
        "tests": str(len(results)),
        "failures": str(c["FAIL"]),
        "errors": "0",
        "skipped": str(c["NOT-SUPPORTED"]),
        "time": f"{seconds:.3f}",
    }
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            **attrs,
            "timestamp": datetime.datetime.fromtimestamp(started, datetime.UTC)
            .replace(tzinfo=None)
            .isoformat(timespec="seconds"),
            "hostname": socket.gethostname(),
        },
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (("server", f"{options.host}:{options.port}"), ("export", options.export)):
        ET.SubElement(props, "property", {"name": key, "value": value})
    for r in results:
        f = r.finding
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"fusenfs.check.{r.spec.group}",
                "name": f"{r.spec.code} {r.spec.title}",
                "time": f"{r.seconds:.3f}",
            },
        )
        text = "\n".join(report_line(r)[1:])
        if f.outcome is Outcome.FAIL:
            failure = ET.SubElement(
                case, "failure", {"message": f"{r.spec.section}: {f.summary}", "type": "FAIL"}
            )
            failure.text = text
        elif f.outcome is Outcome.NOT_SUPPORTED:
            ET.SubElement(case, "skipped", {"message": f.summary})
        out = ET.SubElement(case, "system-out")
        out.text = f"{f.outcome.value} {r.spec.section}: {f.summary}" + (
            f"\n{text}" if text else ""
        )
    return root


def explain(code: str) -> str:
    """What ``--explain CODE`` prints.

    Raises:
        UsageError: an unknown code.
    """
    spec = REGISTRY.get(code.strip().upper())
    if spec is None:
        raise UsageError(f"--explain: unknown check code {code!r}; known: {', '.join(REGISTRY)}")
    wrap = textwrap.TextWrapper(width=88, initial_indent="  ", subsequent_indent="  ")
    out = [f"{spec.code}: {spec.title} ({spec.section})", ""]
    out += ["What it does:", wrap.fill(spec.does), ""]
    out += ["The rule:", wrap.fill(spec.rule), ""]
    out += ["COMPOUNDs it sends:"] + [f"  {c}" for c in spec.compounds]
    if spec.migration:
        out += ["", "Needs --migrate-cmd (see fusenfs check --help-migrate)."]
    return "\n".join(out)


def list_checks() -> str:
    specs = sorted(REGISTRY.values(), key=order_key)
    return "\n".join(f"{s.code:<6} {s.section:<{SECTION_WIDTH}} {s.title}" for s in specs)


class Progress:
    """One line on a terminal (stderr) naming the check that runs; cleared after."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.active = stream.isatty()

    def show(self, index: int, spec: CheckSpec) -> None:
        if self.active:
            self.stream.write(f"\r\033[K[{index + 1}/{self.total}] {spec.code} {spec.title} ...")
            self.stream.flush()

    def clear(self) -> None:
        if self.active:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ---------------------------------------------------------------------- main
def options_from(args: argparse.Namespace) -> CheckOptions:
    if not args.server:
        raise UsageError("SERVER:/PATH is required (or --explain CODE, --list)")
    host, path = parse_target(args.server)
    o = parse_o(args.o)
    targets = [t.strip() for t in args.migrate_to.split(",") if t.strip()]
    if args.migrate_cmd:
        check_template(args.migrate_cmd)
        if "{target}" in args.migrate_cmd and not targets:
            raise UsageError("--migrate-cmd uses {target}: give --migrate-to TARGET[,TARGET...]")
    return CheckOptions(
        host=host,
        port=o["port"],
        export=path,
        timeo=o["timeo"],
        grace_wait=args.grace_wait,
        walk_dirs=args.walk_dirs,
        lease_wait=args.lease_wait,
        migrate_cmd=args.migrate_cmd,
        migrate_fs=args.migrate_fs,
        migrate_to=targets,
        migrate_timeout=args.migrate_timeout,
        freeze=args.freeze,
    )


def check_template(cmd: str) -> None:
    """Raises UsageError for a placeholder ``--migrate-cmd`` does not know."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(cmd) if f is not None]
    except ValueError as exc:
        raise UsageError(f"--migrate-cmd: {exc} (write {{{{ and }}}} for braces)") from None
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        raise UsageError(
            f"--migrate-cmd: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {', '.join('{' + n + '}' for n in PLACEHOLDERS)}"
        )


def main(argv: list[str]) -> int:
    """``fusenfs check ...``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_USAGE
    out = sys.stdout
    try:
        if args.help_migrate:
            print(__doc__.split("The migration checks", 1)[1].strip(), file=out)
            return EXIT_OK
        if args.list:
            print(list_checks(), file=out)
            return EXIT_OK
        if args.explain:
            print(explain(args.explain), file=out)
            return EXIT_OK
        options = options_from(args)
        specs = select(args.only)
    except UsageError as exc:
        print(f"fusenfs check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress(sys.stderr, len(specs))
    started = time.time()
    header: list[str] = []

    def show_header(lines: list[str]) -> None:
        header.extend(lines)
        print(f"fusenfs check {options.host}:{options.export} (port {options.port})", file=out)
        for line in lines:
            print(f"  {line}", file=out)
        out.flush()

    def show_result(result: Result) -> None:
        progress.clear()
        for line in report_line(result):
            print(line, file=out)
        out.flush()

    try:
        results = trio.run(run_checks, options, specs, progress.show, show_header, show_result)
    except (WireError, NFSClientError) as exc:
        progress.clear()
        print(
            f"fusenfs check: cannot check {options.host}:{options.export}: {exc}", file=sys.stderr
        )
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        progress.clear()
        print("fusenfs check: interrupted", file=sys.stderr)
        return 130
    progress.clear()
    seconds = time.time() - started
    print(summary_line(results, seconds), file=out)
    status = exit_status(results)
    try:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(to_json(results, options, started, seconds, header), f, indent=2)
                f.write("\n")
        if args.junit:
            tree = ET.ElementTree(to_junit(results, options, started, seconds))
            ET.indent(tree)
            tree.write(args.junit, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        print(f"fusenfs check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

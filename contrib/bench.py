"""Benchmark fusenfs against its peers on one NFS-Ganesha, all on 127.0.0.1 (issue 10).

    python3 -m contrib.bench [--size-mib 256] [--files 1000] [--inodes 100000]
                             [--repeat 1] [--only STEP,...] [--libnfs-only]
                             [--workdir DIR] [--json FILE]

Root only (Ganesha's VFS FSAL, FUSE mounts, dropping the page cache).  Not part of the
tests.  One run starts what the chosen steps need, each recorded by PID or mount point
and stopped exactly (also after a failure, Ctrl-C or SIGTERM):

- rpcbind, if none runs and NFSv3 is needed (libnfs's write); stopped only if started here;
- NFS-Ganesha with NFSv4.0/4.1 (and NFSv3 for libnfs's write) on a free port, over an
  export on tmpfs (``--workdir``, so the disk does not weigh in);
- the *timing mount*: ``python3 -m fusenfs mount -o port=N,foreground`` (no debug);
- the *debug mount*: a second fusenfs mount of the same export with ``--debug
  --log-file LOG``, used only to count what goes on the wire (debug logging slows it
  down, so nothing is timed on it);
- the *null FS*: ``python3 -m contrib.nullfs`` (contrib/nullfs.py), a pyfuse3 file system
  whose handlers return at once: the ceiling of any pyfuse3 client on this machine.

Mounts are stopped with ``fusermount3 -u``, then ``fusermount3 -uz`` if still mounted,
then SIGTERM and SIGKILL to the recorded PID if the process does not exit.  Commands run
with timeouts, and a watchdog kills the mount processes (by PID) when one step runs past
``STEP_TIMEOUT`` seconds, so a hung mount fails the step instead of the whole run.

Steps (``--only`` takes step names, or a figure name that selects every step ending in
``-NAME``: ``--only read`` runs fusenfs-read, libnfs-read and null-read):

======================  =====================================================================
fusenfs-write           ``dd if=SOURCE of=MNT/NEW bs=1M conv=fsync`` (``--size-mib`` random)
libnfs-write            ``nfs-cp SOURCE nfs://.../EXPORT_PATH/NEW?version=3`` (libnfs's NFSv4
                        write does not work against Ganesha)
null-write              the same dd into the null FS
session-write           the source copied to a new export file by fusenfs's session layer
                        alone (``contrib.session_copy``: NFSClient, no FUSE, 4 WRITEs in
                        flight): what the FUSE hop costs; timed and CPU-metered by the copy
                        itself, from the first WRITE to COMMIT's reply
fusenfs-read            after dropping the page cache, ``dd bs=1M`` of a file written directly
                        into the export (a name the kernel never saw) into a local file
libnfs-read             ``nfs-cp nfs://.../export/FILE?version=4 LOCAL`` (NFSv4.0)
null-read               the same dd out of the null FS
session-read            an export file copied to a local file by the session layer alone
                        (4 READs in flight), as session-write
fusenfs-reread          a new file read twice through the mount; the second ``dd bs=1M
                        of=/dev/null`` is timed; on the debug mount the READs on the wire
                        during the second read are counted (goal: none), beside what
                        mincore(2) shows the kernel evicted from its page cache in between
                        (a VM host's DAMON pageout does, see ``proactive_reclaim``): each
                        evicted 1 MiB block needs a READ, any READ beyond those is the
                        client's (goal: none)
local-reread            the same two reads of a local file (tmpfs: the page cache speed)
fusenfs-create          ``--files`` times create + write 100 B + close, then stat each twice
                        (the second, timed, stat is within the attribute timeout), then
                        remove; on the debug mount the COMPOUNDs per file and per stat
local-create            the same in a local directory
fusenfs-randread        ``fio`` 4 KiB random reads (psync, buffered) of a 64 MiB file for
                        ``FIO_RUNTIME`` s; on the debug mount ``FIO_COUNT_IOS`` of them with
                        the READs on the wire per application read
local-randread          the same fio job on the file in the export directory
fusenfs-randwrite       as randread, random writes, with ``end_fsync``; WRITEs per write
local-randwrite         the same on the export directory
fusenfs-randread-jobs   ``FIO_JOBS`` fio jobs at once, each on a file of its own
                        (``FIO_SIZE / FIO_JOBS`` bytes, made directly in the export), one
                        IOPS figure for all; shown against the local directory and against
                        fusenfs's one job (requests of several processes in flight at once)
local-randread-jobs     the same jobs on the export directory
fusenfs-randwrite-jobs  as randread-jobs, random writes
local-randwrite-jobs    the same on the export directory
fusenfs-inodes          ``find`` over a tree of ``--inodes`` files made directly in the
                        export, then VmRSS of the mount process (goal <= 150 MB), then
                        ``ls -lR``; both timed
local-inodes            the same find and ls -lR on the export directory itself
======================  =====================================================================

All reads of large files go to a local file on tmpfs (nfs-cp cannot write to
/dev/null), and the data is checked byte for byte where the benchmark copies it: the
sha256 of every written and read copy is compared with the source's (zeros for the
null FS), and the small files' contents are checked in the export.

CPU: each sequential transfer also records the CPU it cost, in ms per MB moved (user +
system, from /proc and from the waited-for command's rusage): on the client side the
command (dd or nfs-cp) plus, for fusenfs, its mount process (the kernel's FUSE work is
charged to whoever made the system call, so the two are the whole client side), and on
the server side Ganesha's.  On a machine with few cores these say where the time goes:
when client and server together need about as many CPU-seconds per second as there are
cores, the transfer is CPU-bound and faster client code is the only way up.  The null
FS gets the timing mount's read-ahead (``fusenfs.runner.READAHEAD_KB``), so its reads
arrive as the same 1 MiB requests.

Counting on the wire: the debug mount logs one line per COMPOUND, e.g. ``-> 127.0.0.1:PORT
session=abcd slot=3 seq=17 [SEQUENCE PUTFH READ] 148 B`` (session/session.py,
``_sequenced``; sessionless ones ``-> 127.0.0.1:PORT [EXCHANGE_ID] ...``).  The benchmark
notes the log's size before an action and, after it (and after the log has been quiet
for ``SETTLE_QUIET`` s, at most ``SETTLE_LIMIT`` s), counts the lines appended and the
operations in their brackets.  A bare ``[SEQUENCE]`` compound is a lease renewal that no
application action caused; it is counted apart and left out of the per-operation figures.

Output: progress lines on stderr (``[3/15] fusenfs sequential read ...``), then on stdout
a table of every figure with its peer, the ratio fusenfs/peer, the goal of issue 10 and
whether it is met; ``--json FILE`` writes the same as JSON.  Throughput is MB/s (10^6
bytes per second), sizes MB (10^6 bytes); medians over ``--repeat`` runs.  Exit status 0,
1 if a step failed or the benchmark could not run, 128+N after signal N.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import math
import mmap
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, NoReturn

from contrib.ganesha import GaneshaError, GaneshaServer, port_accepts, unavailable_reason
from fusenfs.runner import DEFAULT_RSIZE, READAHEAD_KB, readahead_knob

MB: Final = 1_000_000
MIB: Final = 1 << 20
#: Bytes ``Bench.warm`` touches beyond twice the transfer (Ganesha's and the mount's
#: buffers, the source's copy in a peer).
WARM_SLACK: Final = 256 * MIB
KIB: Final = 1 << 10
REPO: Final = Path(__file__).resolve().parents[1]
RPCBIND_PORT: Final = 111
#: Seconds for one large copy (dd, nfs-cp), generous for slow machines.
TRANSFER_TIMEOUT: Final = 900.0
#: Seconds for a mount to appear, for one fusermount3 run, for a mount process to exit.
MOUNT_TIMEOUT: Final = 30.0
FUSERMOUNT_TIMEOUT: Final = 20.0
EXIT_TIMEOUT: Final = 20.0
#: Seconds one step may run before the watchdog kills the mount processes.
STEP_TIMEOUT: Final = 3600.0
#: Seconds for one find or ls -lR over the inode tree.
TREE_TIMEOUT: Final = 1800.0
#: The debug log counts as settled after this many quiet seconds, waiting at most LIMIT.
SETTLE_QUIET: Final = 0.5
SETTLE_LIMIT: Final = 10.0
#: Seconds a new file's kernel entry and attributes stay valid on the mount (acregmin,
#: 3 s by default), and a margin: the stat count waits this long after the creates.
NEW_ENTRY_TIMEOUT: Final = 3.0 + 0.5
#: fio: file size (bytes), block size, seconds of a timed run, I/Os of a counted run.
FIO_SIZE: Final = 64 * MIB
FIO_BLOCK: Final = 4 * KIB
FIO_RUNTIME: Final = 10
FIO_COUNT_IOS: Final = 2000
#: fio jobs of the concurrent runs, each on a file of its own (FIO_SIZE / FIO_JOBS
#: bytes): requests of several processes at once, as the slot table allows.
FIO_JOBS: Final = 4
#: Seconds a fio run may take beyond its own runtime (layout, fsync, start-up).
FIO_SLACK: Final = 120.0
#: Files per directory of the inode tree.
TREE_FANOUT: Final = 1000
#: Issue 10's bound on the mount process's RSS with 100,000 cached inodes, MB.
RSS_TARGET_MB: Final = 150.0
SMALL_PAYLOAD: Final = b"x" * 100
NULL_FILE: Final = "null"  # the null FS's one file (contrib/nullfs.py FILE_NAME)


class BenchError(RuntimeError):
    """The benchmark, or one step of it, could not run; the message says why."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; unwinds like KeyboardInterrupt so every cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- counting compounds in the debug log (no I/O) ---------------------------------------

#: One request line of the debug log (session/session.py): the server, for sequenced
#: compounds the session, slot and sequence id, the operations, the encoded size.
COMPOUND_LINE: Final = re.compile(
    r"(?:^|\s)-> (?P<server>\S+:\d+) "
    r"(?:session=(?P<session>[0-9a-f]+) slot=(?P<slot>\d+) seq=(?P<seq>\d+) )?"
    r"\[(?P<ops>[A-Za-z0-9_ ]*)\] (?P<size>\d+) B\s*$"
)


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU used during one transfer: by the commands it ran and by processes it watched.

    ``with CpuMeter(server=ganesha_pid, client=(mount_pid,)) as cpu: run(...)``; then
    ``cpu.client_seconds`` is the CPU seconds of the commands run (waited-for children,
    e.g. dd or nfs-cp) plus those of the ``client`` processes (the FUSE daemon), and
    ``cpu.server_seconds`` those of the ``server`` process.  Kernel work is charged to whoever
    made the system call (the daemon's replies to FUSE, dd's copies out of the page
    cache), so client CPU is the whole cost of the client side.
    """

    server: int | None = None
    client: tuple[int, ...] = ()
    client_seconds: float = 0.0
    server_seconds: float = 0.0
    _start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float]:
        server = process_cpu_seconds(self.server) if self.server is not None else 0.0
        watched = sum(process_cpu_seconds(pid) for pid in self.client)
        return children_cpu_seconds(), watched, server

    def __enter__(self) -> CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        children, watched, server = (b - a for a, b in zip(self._start, self._now(), strict=True))
        self.client_seconds = children + watched
        self.server_seconds = server


@dataclass(frozen=True)
class SessionCopy:
    """What ``contrib.session_copy`` printed: bytes copied, the copy's wall seconds
    (first READ or WRITE to the last reply) and its process's CPU seconds in that span."""

    bytes: int
    seconds: float
    cpu_seconds: float


@dataclass
class WireCount:
    """What the client sent between two points of a debug log.

    Attributes:
        compounds: COMPOUND requests (lines), all kinds.
        sessionless: of those, without SEQUENCE (EXCHANGE_ID, CREATE_SESSION, ...).
        renewals: of those, a bare SEQUENCE (lease renewal, RFC 8881 section 8.3).
        ops: operations by name over all compounds (SEQUENCE included).
        bytes_sent: encoded COMPOUND sizes added up (bytes, RPC header excluded).
    """

    compounds: int = 0
    sessionless: int = 0
    renewals: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0

    @property
    def application_compounds(self) -> int:
        """Compounds other than lease renewals: what the measured action caused."""
        return self.compounds - self.renewals

    def op(self, name: str) -> int:
        """How many operations ``name`` (e.g. "READ") were sent."""
        return self.ops.get(name, 0)

    def add(self, ops: Sequence[str], size: int) -> None:
        """Count one compound of ``ops`` (the bracket's names) and ``size`` bytes."""
        self.compounds += 1
        self.bytes_sent += size
        if not ops or ops[0] != "SEQUENCE":
            self.sessionless += 1
        elif len(ops) == 1:
            self.renewals += 1
        self.ops.update(ops)

    def __add__(self, other: WireCount) -> WireCount:
        return WireCount(
            self.compounds + other.compounds,
            self.sessionless + other.sessionless,
            self.renewals + other.renewals,
            self.ops + other.ops,
            self.bytes_sent + other.bytes_sent,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "compounds": self.compounds,
            "application_compounds": self.application_compounds,
            "sessionless": self.sessionless,
            "renewals": self.renewals,
            "ops": dict(sorted(self.ops.items())),
            "bytes_sent": self.bytes_sent,
        }


def parse_compound_line(line: str) -> tuple[list[str], int] | None:
    """The operations and size (bytes) of one ``->`` request line, or None if it is not one."""
    match = COMPOUND_LINE.search(line)
    if match is None:
        return None
    return match.group("ops").split(), int(match.group("size"))


def count_compounds(text: str | Iterable[str]) -> WireCount:
    """Count the COMPOUND request lines in ``text`` (a log excerpt, or its lines)."""
    lines = text.splitlines() if isinstance(text, str) else text
    count = WireCount()
    for line in lines:
        parsed = parse_compound_line(line)
        if parsed is not None:
            count.add(*parsed)
    return count


class WireLog:
    """The debug mount's log, read between two points of the run.

    ``mark()`` is the log's size now; ``count_since(mark)`` counts the complete lines
    appended after it.  The log only grows while the benchmark runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def mark(self) -> int:
        """The current end of the log (bytes)."""
        return self.size()

    def count_since(self, mark: int) -> WireCount:
        """Compounds in the complete lines written after ``mark`` (bytes from the start)."""
        if self.size() <= mark:
            return WireCount()
        with open(self.path, "rb") as f:
            f.seek(mark)
            data = f.read()
        end = data.rfind(b"\n")
        return count_compounds(data[: end + 1].decode("utf-8", errors="replace"))

    def settle(self, quiet: float = SETTLE_QUIET, limit: float = SETTLE_LIMIT) -> bool:
        """Wait until the log has not grown for ``quiet`` s (at most ``limit`` s in all).

        Returns whether it went quiet: work the client does after the application's
        call returned (a deferred CLOSE, a write-behind flush) is counted too.
        """
        deadline = time.monotonic() + limit
        last = self.size()
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now - quiet_since >= quiet:
                return True
            if now >= deadline:
                return False
            time.sleep(min(0.05, quiet))
            size = self.size()
            if size != last:
                last = size
                quiet_since = time.monotonic()


# -- figures, goals, the table and JSON (no I/O) ----------------------------------------


@dataclass
class Measurement:
    """Repeated runs of one measurement; ``values`` in ``unit``."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    label: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def ratio(ours: float | None, peer: float | None) -> float | None:
    """``ours / peer``, or None when either is missing or not finite, or peer is 0."""
    if ours is None or peer is None or not finite(ours) or not finite(peer) or peer == 0:
        return None
    return ours / peer


@dataclass(frozen=True)
class Goal:
    """A goal of issue 10 on a figure's ratio (fusenfs/peer) or on its value."""

    subject: Literal["ratio", "value"]
    op: Literal[">=", "<="]
    bound: float

    def met(self, value: float | None, ratio_: float | None) -> bool | None:
        """Whether the goal is met; None when the figure it is about is missing."""
        subject = ratio_ if self.subject == "ratio" else value
        if subject is None or not finite(subject):
            return None
        return subject >= self.bound if self.op == ">=" else subject <= self.bound

    def __str__(self) -> str:
        return f"{self.subject} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Comparison:
    """One row of the table: a fusenfs measurement beside a peer measurement or a target.

    ``peer`` names a measurement; ``target`` is a fixed number standing in for a peer
    (issue 10's bound); with neither the row has no peer.  ``unit`` is shown while
    nothing was measured (and beside the target).
    """

    figure: str
    ours: str
    peer: str | None = None
    peer_label: str = "-"
    target: float | None = None
    goal: Goal | None = None
    unit: str = ""

    def measurements(self) -> tuple[str, ...]:
        """The measurement names this row shows."""
        return (self.ours,) if self.peer is None else (self.ours, self.peer)


@dataclass(frozen=True)
class Row:
    """A rendered-ready row: numbers (None when missing) and the note on what is missing."""

    figure: str
    ours: float | None
    unit: str
    peer_label: str
    peer: float | None
    peer_unit: str
    ratio: float | None
    goal: str
    met: bool | None
    note: str

    def to_json(self) -> dict[str, object]:
        return {
            "figure": self.figure,
            "fusenfs": self.ours,
            "unit": self.unit,
            "peer": self.peer_label,
            "peer_value": self.peer,
            "peer_unit": self.peer_unit,
            "ratio": self.ratio,
            "goal": self.goal,
            "met": self.met,
            "note": self.note,
        }


def build_rows(
    comparisons: Sequence[Comparison],
    measurements: dict[str, Measurement],
    notes: dict[str, str] | None = None,
) -> list[Row]:
    """The table's rows: medians, ratios fusenfs/peer and goals.

    ``notes`` maps a measurement name to why it is missing ("fio not installed",
    "failed", "not run"); a missing measurement without a note is "not run".
    """
    notes = notes or {}
    rows = []
    for comp in comparisons:
        ours_m = measurements.get(comp.ours)
        ours = ours_m.median if ours_m is not None and ours_m.values else None
        unit = ours_m.unit if ours_m is not None else comp.unit
        peer: float | None = None
        peer_unit = unit
        missing = [] if ours is not None else [comp.ours]
        if comp.peer is not None:
            peer_m = measurements.get(comp.peer)
            peer = peer_m.median if peer_m is not None and peer_m.values else None
            if peer_m is not None:
                peer_unit = peer_m.unit
            if peer is None:
                missing.append(comp.peer)
        elif comp.target is not None:
            peer = comp.target
        r = ratio(ours, peer)
        seen: list[str] = []
        for name in missing:
            note = f"{name}: {notes.get(name, 'not run')}"
            if note not in seen:
                seen.append(note)
        rows.append(
            Row(
                figure=comp.figure,
                ours=ours,
                unit=unit,
                peer_label=comp.peer_label,
                peer=peer,
                peer_unit=peer_unit,
                ratio=r,
                goal=str(comp.goal) if comp.goal else "",
                met=comp.goal.met(ours, r) if comp.goal else None,
                note="; ".join(seen),
            )
        )
    return rows


def format_number(value: float | None) -> str:
    """A number for the table: 3 significant digits at least, no exponent, "-" if missing."""
    if value is None or not finite(value):
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    digits = 1 - math.floor(math.log10(magnitude))  # two significant digits
    return f"{value:.{digits}f}"


def format_value(value: float | None, unit: str) -> str:
    """``format_number(value)`` followed by the unit (nothing after "-")."""
    text = format_number(value)
    return text if text == "-" or not unit else f"{text} {unit}"


TABLE_HEADER: Final = ("figure", "fusenfs", "peer", "peer value", "ratio", "goal", "met", "note")


def render_table(rows: Sequence[Row]) -> str:
    """The rows as a plain aligned text table (columns of TABLE_HEADER), one line each."""
    cells = [list(TABLE_HEADER)]
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        cells.append(
            [
                row.figure,
                format_value(row.ours, row.unit),
                row.peer_label,
                format_value(row.peer, row.peer_unit),
                format_number(row.ratio),
                row.goal,
                met if row.goal else "",
                row.note,
            ]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_HEADER))]
    numeric = {1, 3, 4}  # right-aligned columns
    out = []
    for index, line in enumerate(cells):
        parts = [
            cell.rjust(widths[i]) if i in numeric and index else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(parts).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


#: The debug-mount counts: what was counted, and what one application operation is.
WIRE_LABELS: Final = {
    "reread": ("re-read (2nd dd of the whole file)", "dd", "dds"),
    "create": ("create+write 100 B+close", "file", "files"),
    "stat": ("stat within the attribute timeout", "stat", "stats"),
    "remove": ("remove", "file", "files"),
    "randread": ("fio 4 KiB random read", "read", "reads"),
    "randwrite": ("fio 4 KiB random write", "write", "writes"),
}


def render_wire(counts: dict[str, list[tuple[WireCount, int]]]) -> str:
    """One line per debug-mount count: compounds, and operations per application op
    (SEQUENCE left out: there is one per compound), over all runs."""
    lines = []
    for key, runs in counts.items():
        total = WireCount()
        for count, _ in runs:
            total = total + count
        app_ops = sum(n for _, n in runs)
        label, unit, units = WIRE_LABELS.get(key, (key, "op", "ops"))
        per = ", ".join(
            f"{name} {format_number(n / app_ops)}"
            for name, n in sorted(total.ops.items())
            if name != "SEQUENCE"
        )
        lines.append(
            f"{label}: {app_ops:,} {unit if app_ops == 1 else units}, "
            f"{total.application_compounds:,} COMPOUNDs "
            f"({format_number(total.application_compounds / app_ops)} per {unit}"
            + (f", {total.renewals} lease renewals left out" if total.renewals else "")
            + f"); per {unit}: {per or 'nothing'}"
        )
    return "\n".join(lines)


def legacy_ratios(rows: Sequence[Row]) -> dict[str, float]:
    """The two ratios earlier versions of the benchmark wrote to JSON, when measured."""
    names = {
        FIGURE_WRITE: "write fusenfs/libnfs-v3",
        FIGURE_READ: "read fusenfs/libnfs-v4.0",
    }
    return {names[r.figure]: r.ratio for r in rows if r.figure in names and r.ratio is not None}


# -- the table's rows --------------------------------------------------------------------

FIGURE_WRITE: Final = "sequential write (dd bs=1M conv=fsync)"
FIGURE_READ: Final = "sequential read, cold cache (dd bs=1M)"


def comparisons(files: int, inodes: int) -> list[Comparison]:
    """Every figure of issue 10, in table order, with its peer and goal."""
    libnfs_w, libnfs_r = "libnfs NFSv3 write (nfs-cp)", "libnfs NFSv4.0 read (nfs-cp)"
    null, local, target = "null pyfuse3 FS (dd)", "local directory", "target"
    return [
        Comparison(
            FIGURE_WRITE,
            "fusenfs-write",
            "libnfs-write",
            libnfs_w,
            goal=Goal("ratio", ">=", 1.0),
            unit="MB/s",
        ),
        Comparison(
            "sequential write vs pyfuse3 ceiling",
            "fusenfs-write",
            "null-write",
            null,
            goal=Goal("ratio", ">=", 0.5),
            unit="MB/s",
        ),
        Comparison(
            FIGURE_READ,
            "fusenfs-read",
            "libnfs-read",
            libnfs_r,
            goal=Goal("ratio", ">=", 1.0),
            unit="MB/s",
        ),
        Comparison(
            "sequential read vs pyfuse3 ceiling", "fusenfs-read", "null-read", null, unit="MB/s"
        ),
        Comparison(
            "client CPU per MB written (dd + mount)",
            "fusenfs-write-client-cpu",
            "libnfs-write-client-cpu",
            "nfs-cp",
            unit="ms/MB",
        ),
        Comparison(
            "Ganesha CPU per MB written",
            "fusenfs-write-server-cpu",
            "libnfs-write-server-cpu",
            "serving nfs-cp",
            unit="ms/MB",
        ),
        Comparison(
            "client CPU per MB read (dd + mount)",
            "fusenfs-read-client-cpu",
            "libnfs-read-client-cpu",
            "nfs-cp",
            unit="ms/MB",
        ),
        Comparison(
            "Ganesha CPU per MB read",
            "fusenfs-read-server-cpu",
            "libnfs-read-server-cpu",
            "serving nfs-cp",
            unit="ms/MB",
        ),
        Comparison(
            "write without FUSE (session layer alone)",
            "session-write",
            "libnfs-write",
            libnfs_w,
            unit="MB/s",
        ),
        Comparison(
            "read without FUSE (session layer alone)",
            "session-read",
            "libnfs-read",
            libnfs_r,
            unit="MB/s",
        ),
        Comparison(
            "client CPU per MB written, no FUSE",
            "session-write-client-cpu",
            "libnfs-write-client-cpu",
            "nfs-cp",
            unit="ms/MB",
        ),
        Comparison(
            "client CPU per MB read, no FUSE",
            "session-read-client-cpu",
            "libnfs-read-client-cpu",
            "nfs-cp",
            unit="ms/MB",
        ),
        Comparison(
            "re-read from page cache (2nd dd)",
            "fusenfs-reread",
            "local-reread",
            "local page cache (2nd dd)",
            goal=Goal("ratio", ">=", 0.8),
            unit="MB/s",
        ),
        Comparison(
            "READs on the wire during the re-read",
            "reread-wire-reads",
            peer_label=target,
            target=0,
            goal=Goal("value", "<=", 0),
            unit="READs",
        ),
        Comparison(
            "page cache the kernel evicted before the re-read",
            "reread-evicted-mb",
            unit="MB",
        ),
        Comparison(
            "READs beyond what the evicted pages need",
            "reread-reads-beyond-evicted",
            "reread-evicted-blocks",
            "READs the gaps need",
            goal=Goal("value", "<=", 0),
            unit="READs",
        ),
        Comparison(
            f"create+write 100 B+close ({files} files)",
            "fusenfs-create",
            "local-create",
            local,
            unit="files/s",
        ),
        Comparison(
            "COMPOUNDs per create+write+close",
            "create-compounds",
            peer_label=target,
            target=3,
            goal=Goal("value", "<=", 3),
            unit="/file",
        ),
        Comparison(
            "stat within attribute timeout", "fusenfs-stat", "local-stat", local, unit="files/s"
        ),
        Comparison(
            "COMPOUNDs per stat within timeout",
            "stat-compounds",
            peer_label=target,
            target=0,
            goal=Goal("value", "<=", 0),
            unit="/stat",
        ),
        Comparison("remove", "fusenfs-remove", "local-remove", local, unit="files/s"),
        Comparison("COMPOUNDs per remove", "remove-compounds", unit="/file"),
        Comparison(
            "4 KiB random read (fio)", "fusenfs-randread", "local-randread", local, unit="IOPS"
        ),
        Comparison("READs on the wire per random read", "randread-wire-reads", unit="/read"),
        Comparison(
            "4 KiB random write (fio)", "fusenfs-randwrite", "local-randwrite", local, unit="IOPS"
        ),
        Comparison("WRITEs on the wire per random write", "randwrite-wire-writes", unit="/write"),
        Comparison(
            f"4 KiB random read, {FIO_JOBS} jobs (fio)",
            "fusenfs-randread-jobs",
            "local-randread-jobs",
            local,
            unit="IOPS",
        ),
        Comparison(
            "  the same against 1 job",
            "fusenfs-randread-jobs",
            "fusenfs-randread",
            "fusenfs, 1 job",
            unit="IOPS",
        ),
        Comparison(
            f"4 KiB random write, {FIO_JOBS} jobs (fio)",
            "fusenfs-randwrite-jobs",
            "local-randwrite-jobs",
            local,
            unit="IOPS",
        ),
        Comparison(
            "  the same against 1 job",
            "fusenfs-randwrite-jobs",
            "fusenfs-randwrite",
            "fusenfs, 1 job",
            unit="IOPS",
        ),
        Comparison(
            f"mount RSS, {inodes:,} cached inodes",
            "fusenfs-rss",
            peer_label=target,
            target=RSS_TARGET_MB,
            goal=Goal("value", "<=", RSS_TARGET_MB),
            unit="MB",
        ),
        Comparison("mount RSS before the find", "fusenfs-rss-before", unit="MB"),
        Comparison(f"find over {inodes:,} files", "fusenfs-find", "local-find", local, unit="s"),
        Comparison("ls -lR right after", "fusenfs-ls-lR", "local-ls-lR", local, unit="s"),
    ]


# -- commands, files, processes -----------------------------------------------------------


def run(argv: Sequence[str], timeout: float = TRANSFER_TIMEOUT) -> float:
    """Run a command (stdout discarded), raise BenchError on failure; its wall time (s).

    On a timeout, an exception or a signal the command is killed (subprocess.run) and
    waited for before this returns.
    """
    return _run(argv, timeout, None)[0]


def run_output(argv: Sequence[str], timeout: float = TRANSFER_TIMEOUT) -> tuple[float, str]:
    """As ``run``, and return the command's stdout too."""
    return _run(argv, timeout, subprocess.PIPE)


def _run(argv: Sequence[str], timeout: float, stdout: int | None) -> tuple[float, str]:
    args = list(argv)
    started = time.perf_counter()
    try:
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdout is None else stdout,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{' '.join(args)}: timed out after {timeout:g} s") from err
    except FileNotFoundError as err:
        raise BenchError(f"{args[0]}: command not found") from err
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(args)}: exit status {result.returncode}\n"
            f"{(result.stdout or '').strip()[-2000:]}\n{result.stderr.strip()[-2000:]}".rstrip()
        )
    return elapsed, result.stdout or ""


def set_read_ahead(mountpoint: Path, kib: int) -> None:
    """Set the kernel read-ahead of the mount on ``mountpoint`` to ``kib`` KiB.

    fusenfs raises its own mount's (``fusenfs.runner.READAHEAD_KB``), and with it the
    size of FUSE's read requests (128 KiB -> 1 MiB); the null FS gets the same, so its
    ceiling is measured with the same requests.

    Raises:
        BenchError: the mount or its read-ahead knob cannot be found or written.
    """
    knob = readahead_knob(str(mountpoint))
    if knob is None:
        raise BenchError(f"{mountpoint} is not mounted: cannot set its read-ahead")
    try:
        knob.write_text(f"{kib}\n")
    except OSError as err:
        raise BenchError(f"cannot set the read-ahead of {mountpoint} ({knob}): {err}") from err


def wait_idle(pid: int, quiet: float = 0.3, limit: float = 10.0) -> float:
    """Wait until process ``pid`` has used no CPU for ``quiet`` seconds (at most
    ``limit`` seconds in all); return the CPU seconds it used meanwhile.

    After ``drop_caches`` the kernel sends a FUSE daemon a FORGET for every inode it
    dropped: 100,000 cached inodes cost fusenfs about 0.3 CPU-seconds, which would
    otherwise be charged to the transfer timed next.
    """
    start = last = process_cpu_seconds(pid)
    deadline = time.monotonic() + limit
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = process_cpu_seconds(pid)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            break
    return last - start


def drop_caches() -> None:
    """Write back and drop the kernel's page cache and dentries (root); tmpfs stays."""
    os.sync()
    with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm_memory(size: int, chunk: int = 4 * MIB) -> None:
    """Write to ``size`` bytes of new anonymous memory, then free it, so that the
    memory a timed transfer takes next is memory the machine has touched just now.

    On the VM this was measured on, memory that has not been used for a while is slow
    the first time it is written: a dd into a new tmpfs file wrote about 1 GiB at
    2 GB/s and the rest at 260-300 MB/s (the host backs the pages again), and pages
    freed a second before were fast again, but after 20 s they were slow once more.
    Every transfer allocates pages (the file Ganesha writes, the local copy of a read,
    the mount's page cache), so without this the peer that happened to get cold pages
    lost: the same session-layer write ran at 1,000 MB/s in one run and 260 MB/s
    (Ganesha at 5 instead of 0.8 ms CPU per MB) two runs later, as files Ganesha still
    held open used up the warm memory.  ``size`` is in bytes.
    """
    block = b"\x01" * chunk
    with mmap.mmap(-1, size) as memory:
        for _ in range(size // chunk):
            memory.write(block)


def page_cache_gaps(path: Path, block: int) -> tuple[int, int]:
    """What of ``path`` is not in the kernel's page cache, by mincore(2) on a read-only
    mapping (which faults nothing in): (missing bytes, how many ``block``-aligned
    ``block``-byte blocks hold a missing page).

    ``block`` is the mount's READ size: each such block costs a re-read one READ.

    Raises:
        OSError: the file cannot be opened or mapped, or mincore fails.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, 0
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            pages = (size + page - 1) // page
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    missing = [i for i in range(pages) if not vec[i] & 1]
    return min(len(missing) * page, size), len({i * page // block for i in missing})


def proactive_reclaim() -> str | None:
    """The kernel's DAMON schemes that page out memory it sees as cold, described; None
    when there are none.

    Such a scheme (run by a VM's host to take memory back) evicts clean page-cache pages
    a few seconds after they were read: a re-read then needs READs for them whatever the
    client does.
    """
    found = []
    for state in sorted(Path("/sys/kernel/mm/damon/admin/kdamonds").glob("*/state")):
        with contextlib.suppress(OSError):
            if state.read_text().strip() != "on":
                continue
            for action in sorted(state.parent.glob("contexts/*/schemes/*/action")):
                if action.read_text().strip() == "pageout":
                    age = (action.parent / "access_pattern/age/min").read_text().strip()
                    found.append(f"kdamond {state.parent.name}: pageout at age >= {age}")
    return "; ".join(found) or None


def write_random(path: Path, size: int) -> None:
    """``size`` random bytes into ``path`` (written under a temporary name, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        left = size
        while left:
            chunk = min(left, 4 * MIB)
            f.write(os.urandom(chunk))
            left -= chunk
    tmp.rename(path)


def make_source(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes at ``path``, made once and reused while it fits."""
    if not (path.exists() and path.stat().st_size == size):
        write_random(path, size)
    return path


def sha256_file(path: Path, chunk: int = 4 * MIB) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_zeros(size: int, chunk: int = 4 * MIB) -> str:
    """Hex SHA-256 of ``size`` zero bytes."""
    digest = hashlib.sha256()
    zeros = bytes(min(size, chunk))
    left = size
    while left:
        step = min(left, len(zeros))
        digest.update(zeros[:step])
        left -= step
    return digest.hexdigest()


def is_mounted(mountpoint: Path) -> bool:
    """True if ``mountpoint`` is a FUSE mount point now (from /proc/self/mounts).

    Never stats the path, so it answers even when the file system behind it hangs.
    """
    target = str(mountpoint).replace("\\", "\\134").replace(" ", "\\040")
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[1] == target and fields[2].startswith("fuse"):
                return True
    return False


def parse_vmrss(status_text: str) -> int:
    """Bytes of the ``VmRSS:`` line of a /proc/PID/status text.

    Raises:
        BenchError: there is no VmRSS line (a kernel thread, or a zombie).
    """
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            scale = {"kB": KIB, "mB": MIB}.get(fields[2] if len(fields) > 2 else "kB", KIB)
            return int(fields[1]) * scale
    raise BenchError("no VmRSS line in /proc/PID/status (process gone or a zombie?)")


def rss_bytes(pid: int) -> int:
    """VmRSS of process ``pid`` in bytes."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as err:
        raise BenchError(f"cannot read /proc/{pid}/status: {err}") from err
    return parse_vmrss(text)


def fio_argv(
    path: Path,
    rw: Literal["randread", "randwrite"],
    runtime: int | None,
    ios: int | None,
    jobs: int = 1,
) -> list[str]:
    """The fio command line of the benchmark's 4 KiB random I/O job on ``path``.

    Buffered (``psync``, no O_DIRECT), ``FIO_SIZE`` bytes, the same random sequence
    every run; either ``runtime`` seconds (time-based) or ``ios`` I/Os.  Writes end
    with an fsync, so what was written reaches the server.  One job on the file
    ``path``; or ``jobs`` of them at once, ``path`` a directory holding each job's own
    file ``fio.N`` (N from 0, ``FIO_SIZE / jobs`` bytes), reported together
    (``--group_reporting``: one IOPS figure for all).
    """
    if jobs == 1:
        where = [f"--filename={path}", f"--size={FIO_SIZE}"]
    else:
        where = [
            f"--directory={path}",
            "--filename_format=fio.$jobnum",
            f"--size={FIO_SIZE // jobs}",
            "--group_reporting",
        ]
    argv = [
        "fio",
        f"--name={rw}",
        *where,
        f"--rw={rw}",
        f"--bs={FIO_BLOCK}",
        "--ioengine=psync",
        "--direct=0",
        "--invalidate=1",
        "--randrepeat=1",
        "--fallocate=none",
        f"--numjobs={jobs}",
        "--output-format=json",
    ]
    if runtime is not None:
        argv += ["--time_based", f"--runtime={runtime}"]
    if ios is not None:
        argv += [f"--number_ios={ios}", f"--runtime={int(FIO_SLACK)}"]
    if rw == "randwrite":
        argv.append("--end_fsync=1")
    return argv


def parse_fio_json(stdout: str, direction: Literal["read", "write"]) -> tuple[float, int]:
    """IOPS and total I/Os of the first job in fio's ``--output-format=json`` output.

    fio may print warnings before the JSON; they are skipped.

    Raises:
        BenchError: no JSON, or it has no such job or direction.
    """
    start = stdout.find("{")
    try:
        data = json.loads(stdout[start:]) if start >= 0 else None
        job = data["jobs"][0][direction] if isinstance(data, dict) else None
        if not isinstance(job, dict):
            raise TypeError("no job")
        return float(job["iops"]), int(job["total_ios"])
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise BenchError(f"cannot read fio's JSON output ({err}): {stdout[:500]!r}") from err


@contextlib.contextmanager
def rpcbind_running() -> Iterator[None]:
    """Make sure rpcbind answers on 127.0.0.1:111; stop it afterwards if started here."""
    if port_accepts("127.0.0.1", RPCBIND_PORT):
        yield
        return
    rpcbind = shutil.which("rpcbind") or "/usr/sbin/rpcbind"
    if not os.path.exists(rpcbind):
        raise BenchError("rpcbind not found (apt-get install rpcbind)")
    progress(f"starting rpcbind ({rpcbind} -w -f)")
    proc = subprocess.Popen(
        [rpcbind, "-w", "-f"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10.0
        while not port_accepts("127.0.0.1", RPCBIND_PORT):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("rpcbind did not start")
            time.sleep(0.05)
        yield
    finally:
        stop_process(proc, "rpcbind")


def stop_process(proc: subprocess.Popen[bytes], name: str, grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (this very child, by its PID), wait ``grace`` s, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            progress(f"{name} (pid {proc.pid}) ignored SIGTERM: SIGKILL")
            proc.kill()
            proc.wait(timeout=grace)


def progress(message: str, end: str = "\n") -> None:
    """One progress line (or its start) on stderr."""
    print(message, end=end, file=sys.stderr, flush=True)


class MountProcess:
    """A FUSE file system served in the foreground by one child process.

    ``start()`` runs ``argv`` (its own session, so a Ctrl-C on the terminal reaches only
    the benchmark, which then stops it in order) with stdout and stderr appended to
    ``log``, and waits until ``mountpoint`` is mounted.  ``stop()`` unmounts and makes
    sure that very process has exited (see the module docstring).
    """

    def __init__(self, name: str, argv: Sequence[str], mountpoint: Path, log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.path = mountpoint
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} was not started")
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> MountProcess:
        if is_mounted(self.path):
            raise BenchError(f"{self.path} is already mounted")
        shutil.rmtree(self.path, ignore_errors=True)  # an empty mount point
        self.path.mkdir(parents=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=REPO,
                start_new_session=True,
            )
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(self.path):
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with status {self.proc.returncode} before "
                    f"mounting {self.path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not mount {self.path} in {MOUNT_TIMEOUT:g} s")
            time.sleep(0.05)
        return self

    def check(self) -> None:
        """Raise BenchError if the process has exited or the mount is gone."""
        if self.proc is None:
            raise BenchError(f"{self.name} was not started")
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} (pid {self.proc.pid}) exited with status "
                f"{self.proc.returncode}:\n{self.log_tail(1500)}"
            )
        if not is_mounted(self.path):
            raise BenchError(f"{self.name}: {self.path} is no longer mounted")

    def kill(self) -> None:
        """SIGKILL the process (the watchdog): requests on the mount then fail at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self) -> None:
        """``fusermount3 -u``, then ``-uz`` if still mounted; the process must exit
        (SIGTERM, then SIGKILL).  Bounded: about a minute at the very worst."""
        proc = self.proc
        if proc is None:
            return
        if is_mounted(self.path):
            self._fusermount("-u")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=EXIT_TIMEOUT if not is_mounted(self.path) else 1.0)
        if is_mounted(self.path):
            progress(f"{self.name}: {self.path} still mounted: fusermount3 -uz")
            self._fusermount("-uz")
        stop_process(proc, self.name)
        if is_mounted(self.path):
            progress(f"{self.name}: {self.path} is still mounted after stopping pid {proc.pid}")

    def _fusermount(self, flags: str) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(
                ["fusermount3", flags, str(self.path)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=FUSERMOUNT_TIMEOUT,
            )

    def __enter__(self) -> MountProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()


class Watchdog:
    """Kill the mount processes if a step runs longer than ``timeout`` seconds.

    A killed FUSE daemon makes every request on its mount fail (ENOTCONN), so whatever
    the step is blocked in returns and the step fails instead of hanging the run.
    """

    def __init__(self, mounts: Callable[[], Iterable[MountProcess]], timeout: float) -> None:
        self.fired = False
        self._mounts = mounts
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        for mount in self._mounts():
            mount.kill()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


# -- steps --------------------------------------------------------------------------------

#: What a step needs: servers and mounts to start, commands, the random source file.
Need = Literal["ganesha", "nfsv3", "fusenfs", "debug", "nullfs", "nfs-cp", "fio", "source"]


@dataclass(frozen=True)
class Step:
    """One action of the benchmark (one progress line); see the module docstring."""

    name: str
    title: str  # str.format()ed with Bench.title_fields()
    needs: frozenset[Need]
    produces: tuple[str, ...]
    action: Callable[[Bench], None]


def _needs(*names: Need) -> frozenset[Need]:
    return frozenset(names)


class Bench:
    """One benchmark run against one Ganesha; see the module docstring."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.size_mib: int = args.size_mib
        self.size: int = args.size_mib * MIB
        self.files: int = args.files
        self.inodes: int = args.inodes
        self.repeat: int = args.repeat
        self.steps: list[Step] = select_steps(args.only, args.libnfs_only)
        self.workdir = Path(args.workdir).resolve()
        self.export = self.workdir / "export"
        self.source = self.workdir / f"source-{args.size_mib}MiB.bin"
        self.debug_log_path = self.workdir / "fusenfs-debug.log"
        self.results: dict[str, Measurement] = {}
        self.wire: dict[str, list[tuple[WireCount, int]]] = {}
        self.status: dict[str, dict[str, object]] = {}
        self.notes: dict[str, str] = {}
        self.failures: list[str] = []
        self.server: GaneshaServer | None = None
        self.mnt: MountProcess | None = None
        self.debug: MountProcess | None = None
        self.null: MountProcess | None = None
        self.wire_log = WireLog(self.debug_log_path)
        self.elapsed = 0.0
        self.reclaim = proactive_reclaim()
        self._counter = 0
        self._source_sha: str | None = None
        self._zero_sha: str | None = None
        self._tree: Path | None = None
        self._fio_file: Path | None = None
        self._fio_dir: Path | None = None

    # -- helpers ----------------------------------------------------------------------

    def title_fields(self) -> dict[str, object]:
        return {
            "size_mib": self.size_mib,
            "files": self.files,
            "inodes": f"{self.inodes:,}",
            "fio_runtime": FIO_RUNTIME,
            "fio_ios": FIO_COUNT_IOS,
            "fio_jobs": FIO_JOBS,
        }

    def fresh(self, stem: str, suffix: str = ".bin") -> str:
        self._counter += 1
        return f"{stem}-{os.getpid()}-{self._counter}{suffix}"

    def record(self, name: str, unit: str, value: float, label: str = "") -> None:
        m = self.results.setdefault(name, Measurement(name, unit, label=label or name))
        m.values.append(value)

    def record_wire(self, name: str, count: WireCount, app_ops: int) -> None:
        """Keep a debug-mount count of ``app_ops`` application operations (a count)."""
        self.wire.setdefault(name, []).append((count, app_ops))

    def throughput(self, name: str, seconds: float, label: str) -> None:
        self.record(name, "MB/s", self.size / MB / seconds, label)

    def drop_caches(self) -> None:
        """``drop_caches``, then wait until every mount process is idle again (the
        FORGETs for the inodes the kernel dropped are not charged to what is timed next,
        fusenfs's or a peer's)."""
        drop_caches()
        for mount in self.mounts():
            with contextlib.suppress(OSError):
                wait_idle(mount.pid)

    def warm(self) -> None:
        """Just before a timed transfer: ``warm_memory`` for what it will allocate (the
        file written, or the local copy and the page cache of the file read)."""
        warm_memory(2 * self.size + WARM_SLACK)

    def cpu_meter(self, mount: MountProcess | None = None) -> CpuMeter:
        """A ``CpuMeter`` watching Ganesha (if running) and ``mount``'s process."""
        server = self.server.pid if self.server is not None else None
        return CpuMeter(server=server, client=(mount.pid,) if mount is not None else ())

    def cpu_per_mb(self, name: str, cpu: CpuMeter, label: str) -> None:
        """Record ``name``-client-cpu and ``name``-server-cpu in ms per MB moved."""
        mb = self.size / MB
        self.record(f"{name}-client-cpu", "ms/MB", cpu.client_seconds * 1000 / mb, label)
        if cpu.server is not None:
            self.record(f"{name}-server-cpu", "ms/MB", cpu.server_seconds * 1000 / mb, label)

    def source_sha(self) -> str:
        if self._source_sha is None:
            self._source_sha = sha256_file(self.source)
        return self._source_sha

    def zero_sha(self) -> str:
        if self._zero_sha is None:
            self._zero_sha = sha256_zeros(self.size)
        return self._zero_sha

    def check_copy(self, path: Path, expected: str, what: str) -> None:
        """Raise BenchError unless ``path`` has the size and SHA-256 expected."""
        size = path.stat().st_size
        if size != self.size:
            raise BenchError(f"{what}: {path} has {size} bytes, expected {self.size}")
        got = sha256_file(path)
        if got != expected:
            raise BenchError(f"{what}: {path} differs from the source (sha256 {got})")

    def timing(self) -> MountProcess:
        if self.mnt is None:
            raise BenchError("the fusenfs timing mount is not running")
        self.mnt.check()
        return self.mnt

    def debugging(self) -> MountProcess:
        if self.debug is None:
            raise BenchError("the fusenfs debug mount is not running")
        self.debug.check()
        return self.debug

    def nullfs(self) -> MountProcess:
        if self.null is None:
            raise BenchError("the null FS is not mounted")
        self.null.check()
        return self.null

    def ganesha(self) -> GaneshaServer:
        if self.server is None or not self.server.running:
            raise BenchError("Ganesha is not running")
        return self.server

    def mounts(self) -> list[MountProcess]:
        return [m for m in (self.mnt, self.debug, self.null) if m is not None]

    def out_file(self) -> Path:
        return self.workdir / self.fresh("out")

    def remove_from_export(self, name: str) -> None:
        """Remove the export's file ``name``, through NFS while the timing mount is up.

        Ganesha keeps a descriptor open for each file it served; a file removed behind
        its back stays open there, its tmpfs pages allocated, and Ganesha's writes grew
        slower run after run (its CPU per MB written 0.6 -> 2.6 ms, for libnfs and
        fusenfs alike).  A REMOVE through the mount makes it close the file.
        """
        if self.mnt is not None:
            try:
                self.mnt.check()
            except BenchError:
                pass
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.mnt.path / name)
                return
        (self.export / name).unlink(missing_ok=True)

    def export_copy(self) -> str:
        """A new name in the export holding a copy of the source (made directly there)."""
        name = self.fresh("read")
        shutil.copyfile(self.source, self.export / name)
        return name

    def fio_file(self) -> Path:
        """The fio job's file in the export (random bytes, made once per run)."""
        if self._fio_file is None or not self._fio_file.exists():
            path = self.export / self.fresh("fio")
            write_random(path, FIO_SIZE)
            self._fio_file = path
        return self._fio_file

    def fio_dir(self) -> Path:
        """The directory in the export of the concurrent fio jobs: ``FIO_JOBS`` files
        ``fio.N`` of random bytes (``fio_argv``), made once per run."""
        if self._fio_dir is None or not self._fio_dir.exists():
            path = self.export / self.fresh("fio-jobs", "")
            path.mkdir()
            for job in range(FIO_JOBS):
                write_random(path / f"fio.{job}", FIO_SIZE // FIO_JOBS)
            self._fio_dir = path
        return self._fio_dir

    def inode_tree(self) -> Path:
        """A tree of ``inodes`` empty files (TREE_FANOUT per directory) made directly in
        the export, once per run."""
        if self._tree is None:
            tree = self.export / self.fresh("tree", "")
            tree.mkdir()
            for index in range(self.inodes):
                directory = tree / f"d{index // TREE_FANOUT:04d}"
                if index % TREE_FANOUT == 0:
                    directory.mkdir()
                os.close(os.open(directory / f"f{index:07d}", os.O_WRONLY | os.O_CREAT, 0o644))
            self._tree = tree
        return self._tree

    def tree_entries(self) -> int:
        """Lines ``find TREE`` prints: the files, their directories and the top."""
        return self.inodes + math.ceil(self.inodes / TREE_FANOUT) + 1

    # -- sequential transfers ---------------------------------------------------------------

    def step_fusenfs_write(self) -> None:
        mnt = self.timing()
        name = self.fresh("fusenfs-write")
        argv = ["dd", f"if={self.source}", f"of={mnt.path / name}", "bs=1M", "conv=fsync"]
        try:
            self.warm()
            with self.cpu_meter(mnt) as cpu:
                seconds = run([*argv, "status=none"])
            self.check_copy(self.export / name, self.source_sha(), "fusenfs write")
        finally:
            self.remove_from_export(name)
        self.throughput("fusenfs-write", seconds, "fusenfs dd write")
        self.cpu_per_mb("fusenfs-write", cpu, "fusenfs dd write")

    def step_libnfs_write(self) -> None:
        server = self.ganesha()
        name = self.fresh("libnfs-write")
        try:
            self.warm()
            with self.cpu_meter() as cpu:
                seconds = run(["nfs-cp", str(self.source), server.url(name, version=3)])
            self.check_copy(self.export / name, self.source_sha(), "libnfs write")
        finally:
            self.remove_from_export(name)
        self.throughput("libnfs-write", seconds, "libnfs NFSv3 write (nfs-cp)")
        self.cpu_per_mb("libnfs-write", cpu, "libnfs NFSv3 write (nfs-cp)")

    def session_copy(self, direction: str, local: str, name: str) -> SessionCopy:
        """Run ``contrib.session_copy`` against Ganesha: ``direction`` "read" copies the
        export's file ``name`` to the file ``local``, "write" the other way."""
        server = self.ganesha()
        where = [server.address, str(server.port), server.pseudo]
        argv = [sys.executable, "-m", "contrib.session_copy", direction]
        argv += [local, *where, name] if direction == "write" else [*where, name, local]
        _, out = run_output(argv)
        try:
            got = json.loads(out)
            return SessionCopy(int(got["bytes"]), float(got["seconds"]), float(got["cpu_seconds"]))
        except (ValueError, KeyError, TypeError) as err:
            raise BenchError(f"contrib.session_copy printed {out[:200]!r}") from err

    def record_session_copy(self, name: str, got: SessionCopy, cpu: CpuMeter) -> None:
        """Record ``name`` (MB/s), its client CPU (the copy's own) and Ganesha's."""
        if got.bytes != self.size:
            raise BenchError(f"{name}: copied {got.bytes} bytes, expected {self.size}")
        label = "fusenfs session layer, no FUSE"
        self.throughput(name, got.seconds, label)
        mb = self.size / MB
        self.record(f"{name}-client-cpu", "ms/MB", got.cpu_seconds * 1000 / mb, label)
        if cpu.server is not None:
            self.record(f"{name}-server-cpu", "ms/MB", cpu.server_seconds * 1000 / mb, label)

    def step_session_write(self) -> None:
        name = self.fresh("session-write")
        try:
            self.warm()
            with self.cpu_meter() as cpu:
                got = self.session_copy("write", str(self.source), name)
            self.check_copy(self.export / name, self.source_sha(), "session layer write")
        finally:
            self.remove_from_export(name)
        self.record_session_copy("session-write", got, cpu)

    def step_session_read(self) -> None:
        name = self.export_copy()
        out = self.out_file()
        try:
            self.drop_caches()
            self.warm()
            with self.cpu_meter() as cpu:
                got = self.session_copy("read", str(out), name)
            self.check_copy(out, self.source_sha(), "session layer read")
        finally:
            out.unlink(missing_ok=True)
            self.remove_from_export(name)
        self.record_session_copy("session-read", got, cpu)

    def step_null_write(self) -> None:
        target = self.nullfs().path / NULL_FILE
        argv = ["dd", f"if={self.source}", f"of={target}", "bs=1M", "conv=fsync"]
        self.warm()
        seconds = run([*argv, "status=none"])
        size = target.stat().st_size
        if size != self.size:
            raise BenchError(f"null FS write: {target} has {size} bytes, expected {self.size}")
        self.throughput("null-write", seconds, "null pyfuse3 FS (dd)")

    def step_fusenfs_read(self) -> None:
        mnt = self.timing()
        name = self.export_copy()
        out = self.out_file()
        try:
            self.drop_caches()
            self.warm()
            with self.cpu_meter(mnt) as cpu:
                seconds = run(["dd", f"if={mnt.path / name}", f"of={out}", "bs=1M", "status=none"])
            self.check_copy(out, self.source_sha(), "fusenfs read")
        finally:
            out.unlink(missing_ok=True)
            self.remove_from_export(name)
        self.throughput("fusenfs-read", seconds, "fusenfs dd read")
        self.cpu_per_mb("fusenfs-read", cpu, "fusenfs dd read")

    def step_libnfs_read(self) -> None:
        server = self.ganesha()
        name = self.export_copy()
        out = self.out_file()
        try:
            self.drop_caches()
            self.warm()
            with self.cpu_meter() as cpu:
                seconds = run(["nfs-cp", server.url(name, version=4), str(out)])
            self.check_copy(out, self.source_sha(), "libnfs read")
        finally:
            out.unlink(missing_ok=True)
            self.remove_from_export(name)
        self.throughput("libnfs-read", seconds, "libnfs NFSv4.0 read (nfs-cp)")
        self.cpu_per_mb("libnfs-read", cpu, "libnfs NFSv4.0 read (nfs-cp)")

    def step_null_read(self) -> None:
        source = self.nullfs().path / NULL_FILE
        os.truncate(source, self.size)  # the null FS's file: as many zeros as we read
        out = self.out_file()
        try:
            self.drop_caches()
            self.warm()
            seconds = run(["dd", f"if={source}", f"of={out}", "bs=1M", "status=none"])
            self.check_copy(out, self.zero_sha(), "null FS read")
        finally:
            out.unlink(missing_ok=True)
        self.throughput("null-read", seconds, "null pyfuse3 FS (dd)")

    # -- re-read from the page cache ----------------------------------------------------------

    def _read_twice(self, path: Path) -> float:
        """Read ``path`` once (checking its SHA-256), then time a second ``dd`` of it."""
        got = sha256_file(path)
        if got != self.source_sha():
            raise BenchError(f"re-read: first read of {path} differs from the source")
        return run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"])

    def step_fusenfs_reread(self) -> None:
        mnt, debug = self.timing(), self.debugging()
        name = self.export_copy()
        try:
            self.drop_caches()
            seconds = self._read_twice(mnt.path / name)
            self.throughput("fusenfs-reread", seconds, "fusenfs 2nd dd")
            got = sha256_file(debug.path / name)  # the debug mount's first read
            if got != self.source_sha():
                raise BenchError("re-read: the debug mount read different data")
            # What the kernel dropped since the first read (proactive reclaim) has to be
            # read again; measured before the count starts (its open and close are not
            # the re-read's).
            evicted_bytes, evicted_blocks = page_cache_gaps(debug.path / name, DEFAULT_RSIZE)
            self.wire_log.settle()  # the first read's CLOSE (release is asynchronous)
            mark = self.wire_log.mark()
            run(["dd", f"if={debug.path / name}", "of=/dev/null", "bs=1M", "status=none"])
            self.wire_log.settle()
            count = self.wire_log.count_since(mark)
        finally:
            self.remove_from_export(name)
        reads = count.op("READ")
        self.record("reread-wire-reads", "READs", reads, "READs on the wire")
        self.record("reread-evicted-mb", "MB", evicted_bytes / MB, "evicted after 1st read")
        self.record("reread-evicted-blocks", "READs", evicted_blocks, "READs the gaps need")
        self.record(
            "reread-reads-beyond-evicted",
            "READs",
            max(0, reads - evicted_blocks),
            "READs beyond the gaps",
        )
        self.record("reread-wire-compounds", "COMPOUNDs", count.application_compounds)
        self.record_wire("reread", count, 1)

    def step_local_reread(self) -> None:
        seconds = self._read_twice(self.source)
        self.throughput("local-reread", seconds, "local page cache (2nd dd)")

    # -- small files --------------------------------------------------------------------------

    def _small_files(
        self, top: Path, server_side: Path | None, settle: float = 0.0
    ) -> tuple[float, float, float]:
        """Create (+100 B, close), stat twice, remove ``files`` files under ``top``.

        Returns files per second of the create, the second stat pass and the remove.
        ``server_side``: the same directory seen in the export, to check the contents.
        ``settle``: seconds to wait before the first stat pass, for every entry made by
        the creates to time out (``NEW_ENTRY_TIMEOUT``): the first pass then fetches
        them all again and the second, timed, one is within their new timeout however
        long the creates took.  (Without it a create pass of over 3 s left the second
        stat pass asking the mount for most files: 4,000-10,000 instead of about
        280,000 stats per second.)
        """
        top.mkdir()
        names = [top / f"f{i:05d}" for i in range(self.files)]

        def timed(action: Callable[[Path], object]) -> float:
            started = time.perf_counter()
            for path in names:
                action(path)
            return time.perf_counter() - started

        created = timed(_create_small)
        if server_side is not None:
            for path in names:
                data = (server_side / path.name).read_bytes()
                if data != SMALL_PAYLOAD:
                    raise BenchError(f"small files: {path.name} holds {data[:40]!r}...")
        time.sleep(settle)
        timed(os.stat)  # fetches what has to be fetched; the next pass is within actimeo
        stated = timed(os.stat)
        removed = timed(os.unlink)
        top.rmdir()
        return self.files / created, self.files / stated, self.files / removed

    def step_fusenfs_create(self) -> None:
        mnt, debug = self.timing(), self.debugging()
        name = self.fresh("meta", "")
        create, stat_, remove = self._small_files(
            mnt.path / name, self.export / name, settle=NEW_ENTRY_TIMEOUT
        )
        self.record("fusenfs-create", "files/s", create, "fusenfs")
        self.record("fusenfs-stat", "files/s", stat_, "fusenfs")
        self.record("fusenfs-remove", "files/s", remove, "fusenfs")

        top = debug.path / self.fresh("meta-debug", "")
        top.mkdir()
        names = [top / f"f{i:05d}" for i in range(self.files)]
        log = self.wire_log
        log.settle()
        mark = log.mark()
        for path in names:
            _create_small(path)
        log.settle()
        created = log.count_since(mark)
        # Wait until every new entry has timed out, so that each first stat below
        # fetches it again and the counted stat is well within its timeout.  Without
        # the wait, an entry that was about to expire at its first stat expired before
        # the second: 1 LOOKUP in 1,000 stats, now and then.
        time.sleep(NEW_ENTRY_TIMEOUT)
        stated = WireCount()
        for path in names:
            os.stat(path)
            mark = log.mark()
            os.stat(path)  # within the attribute timeout of the stat just before
            stated = stated + log.count_since(mark)
        log.settle()
        mark = log.mark()
        for path in names:
            os.unlink(path)
        log.settle()
        removed = log.count_since(mark)
        top.rmdir()
        n = self.files
        self.record("create-compounds", "/file", created.application_compounds / n)
        self.record("stat-compounds", "/stat", stated.application_compounds / n)
        self.record("remove-compounds", "/file", removed.application_compounds / n)
        self.record_wire("create", created, n)
        self.record_wire("stat", stated, n)
        self.record_wire("remove", removed, n)

    def step_local_create(self) -> None:
        create, stat_, remove = self._small_files(self.workdir / self.fresh("meta", ""), None)
        self.record("local-create", "files/s", create, "local directory")
        self.record("local-stat", "files/s", stat_, "local directory")
        self.record("local-remove", "files/s", remove, "local directory")

    # -- random I/O ---------------------------------------------------------------------------

    def _fio(self, path: Path, rw: Literal["randread", "randwrite"], jobs: int = 1) -> float:
        argv = fio_argv(path, rw, FIO_RUNTIME, None, jobs)
        _, out = run_output(argv, timeout=FIO_RUNTIME + FIO_SLACK)
        return parse_fio_json(out, "read" if rw == "randread" else "write")[0]

    def _fio_wire(self, path: Path, rw: Literal["randread", "randwrite"]) -> tuple[WireCount, int]:
        self.wire_log.settle()
        mark = self.wire_log.mark()
        _, out = run_output(fio_argv(path, rw, None, FIO_COUNT_IOS), timeout=2 * FIO_SLACK)
        self.wire_log.settle()
        count = self.wire_log.count_since(mark)
        ios = parse_fio_json(out, "read" if rw == "randread" else "write")[1]
        if ios <= 0:
            raise BenchError(f"fio {rw} on the debug mount did no I/O")
        return count, ios

    def _fio_where(self, jobs: int) -> tuple[str, Path]:
        """The figure-name suffix and the export path of a fio run of ``jobs`` jobs: the
        fio file for one, the fio directory's files for more."""
        return ("-jobs", self.fio_dir()) if jobs > 1 else ("", self.fio_file())

    def _fio_fusenfs(self, rw: Literal["randread", "randwrite"], jobs: int = 1) -> None:
        """fio ``rw`` through the timing mount (``_fio_where``); with one job, also the
        NFS operations per I/O on the debug mount."""
        suffix, where = self._fio_where(jobs)
        iops = self._fio(self.timing().path / where.name, rw, jobs)
        self.record(f"fusenfs-{rw}{suffix}", "IOPS", iops, "fusenfs")
        if jobs == 1:
            op, per = ("READ", "read") if rw == "randread" else ("WRITE", "write")
            count, ios = self._fio_wire(self.debugging().path / where.name, rw)
            self.record(f"{rw}-wire-{per}s", f"/{per}", count.op(op) / ios)
            self.record_wire(rw, count, ios)

    def _fio_local(self, rw: Literal["randread", "randwrite"], jobs: int = 1) -> None:
        """fio ``rw`` on the export directory itself, as ``_fio_fusenfs`` does on the mount."""
        suffix, where = self._fio_where(jobs)
        iops = self._fio(where, rw, jobs)
        self.record(f"local-{rw}{suffix}", "IOPS", iops, "local export dir")

    def step_fusenfs_randread(self) -> None:
        self._fio_fusenfs("randread")

    def step_local_randread(self) -> None:
        self._fio_local("randread")

    def step_fusenfs_randwrite(self) -> None:
        self._fio_fusenfs("randwrite")

    def step_local_randwrite(self) -> None:
        self._fio_local("randwrite")

    def step_fusenfs_randread_jobs(self) -> None:
        self._fio_fusenfs("randread", FIO_JOBS)

    def step_local_randread_jobs(self) -> None:
        self._fio_local("randread", FIO_JOBS)

    def step_fusenfs_randwrite_jobs(self) -> None:
        self._fio_fusenfs("randwrite", FIO_JOBS)

    def step_local_randwrite_jobs(self) -> None:
        self._fio_local("randwrite", FIO_JOBS)

    # -- many inodes --------------------------------------------------------------------------

    def step_fusenfs_inodes(self) -> None:
        mnt = self.timing()
        tree = self.inode_tree()
        self.drop_caches()
        before = rss_bytes(mnt.pid)
        started = time.perf_counter()
        _, listing = run_output(["find", str(mnt.path / tree.name)], timeout=TREE_TIMEOUT)
        found = time.perf_counter() - started
        after_find = rss_bytes(mnt.pid)
        lines = listing.count("\n")
        if lines != self.tree_entries():
            raise BenchError(f"find on the mount: {lines} entries, expected {self.tree_entries()}")
        listed = run(["ls", "-lR", str(mnt.path / tree.name)], timeout=TREE_TIMEOUT)
        after_ls = rss_bytes(mnt.pid)
        self.record("fusenfs-rss-before", "MB", before / MB, "fusenfs")
        self.record("fusenfs-rss", "MB", after_find / MB, "fusenfs")
        self.record("fusenfs-rss-after-ls", "MB", after_ls / MB, "fusenfs")
        self.record("fusenfs-find", "s", found, "fusenfs")
        self.record("fusenfs-ls-lR", "s", listed, "fusenfs")

    def step_local_inodes(self) -> None:
        tree = self.inode_tree()
        self.drop_caches()
        started = time.perf_counter()
        _, listing = run_output(["find", str(tree)], timeout=TREE_TIMEOUT)
        found = time.perf_counter() - started
        if listing.count("\n") != self.tree_entries():
            raise BenchError(f"find {tree}: wrong number of entries")
        listed = run(["ls", "-lR", str(tree)], timeout=TREE_TIMEOUT)
        self.record("local-find", "s", found, "local export dir")
        self.record("local-ls-lR", "s", listed, "local export dir")

    # -- the run ------------------------------------------------------------------------------

    def missing_tool(self, step: Step) -> str | None:
        """Why ``step`` cannot run on this machine (a missing command), or None."""
        if "fio" in step.needs and shutil.which("fio") is None:
            return "fio not installed"
        if "nfs-cp" in step.needs and shutil.which("nfs-cp") is None:
            return "nfs-cp not installed (libnfs-utils)"
        return None

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._run()
        finally:
            self.elapsed = time.monotonic() - started

    def _run(self) -> None:
        if os.geteuid() != 0:
            raise BenchError("the benchmark needs root (Ganesha, FUSE mounts, drop_caches)")
        runnable = []
        for step in self.steps:
            reason = self.missing_tool(step)
            if reason is None:
                runnable.append(step)
                continue
            self.status[step.name] = {"status": "skipped", "reason": reason}
            for name in step.produces:
                self.notes[name] = reason
            progress(f"{step.name}: skipped, {reason}")
        needs: set[Need] = set().union(*(s.needs for s in runnable)) if runnable else set()
        if needs & {"ganesha", "fusenfs", "debug"}:
            reason = unavailable_reason()
            if reason is not None:
                raise BenchError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.export, ignore_errors=True)
        self.export.mkdir()
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, self.export, True)  # last: after every stop
            if "source" in needs:
                progress(f"preparing {self.size_mib} MiB of random data in {self.source}")
                make_source(self.source, self.size)
                self.source_sha()
            if "ganesha" in needs:
                self._start_server(stack, "nfsv3" in needs)
            server = self.server
            if "fusenfs" in needs and server is not None:
                self.mnt = stack.enter_context(self._fusenfs(server, "mnt", debug=False))
            if "debug" in needs and server is not None:
                self.debug_log_path.unlink(missing_ok=True)
                self.debug = stack.enter_context(self._fusenfs(server, "mnt-debug", debug=True))
            if "nullfs" in needs:
                self.null = stack.enter_context(self._nullfs())
                set_read_ahead(self.null.path, READAHEAD_KB)
            total = len(runnable) * self.repeat
            index = 0
            for run_index in range(1, self.repeat + 1):
                for step in runnable:
                    index += 1
                    self._run_step(step, index, total, run_index)

    def _start_server(self, stack: contextlib.ExitStack, nfsv3: bool) -> None:
        if nfsv3:
            stack.enter_context(rpcbind_running())
        protocols = (3, 4) if nfsv3 else (4,)
        progress(f"starting NFS-Ganesha (NFS versions {protocols}, minor versions 0, 1)")
        server = GaneshaServer(self.export, protocols=protocols, minor_versions=(0, 1))
        self.server = stack.enter_context(server)
        server.wait_grace_over()
        progress(
            f"Ganesha pid {server.pid} on {server.address}:{server.port}, export {self.export}"
        )

    def _fusenfs(self, server: GaneshaServer, mnt: str, debug: bool) -> MountProcess:
        mountpoint = self.workdir / mnt
        argv = [
            sys.executable,
            "-m",
            "fusenfs",
            "mount",
            f"{server.address}:{server.pseudo}",
            str(mountpoint),
            "-o",
            f"port={server.port},foreground",
        ]
        if debug:
            # In the foreground fusenfs logs to stderr, which goes to the same file.
            argv += ["--debug", "--log-file", str(self.debug_log_path)]
            log = self.debug_log_path
            name = "fusenfs debug mount"
        else:
            log = self.workdir / "fusenfs-mount.log"
            log.unlink(missing_ok=True)
            name = "fusenfs timing mount"
        progress(f"mounting {name} on {mountpoint}")
        return MountProcess(name, argv, mountpoint, log)

    def _nullfs(self) -> MountProcess:
        mountpoint = self.workdir / "mnt-null"
        log = self.workdir / "nullfs.log"
        log.unlink(missing_ok=True)
        progress(f"mounting the null FS on {mountpoint}")
        argv = [sys.executable, "-m", "contrib.nullfs", str(mountpoint)]
        return MountProcess("null FS", argv, mountpoint, log)

    def _run_step(self, step: Step, index: int, total: int, run_index: int) -> None:
        title = step.title.format(**self.title_fields())
        suffix = f" (run {run_index}/{self.repeat})" if self.repeat > 1 else ""
        progress(f"[{index}/{total}] {title}{suffix}...", end="")
        started = time.monotonic()
        error: str | None = None
        with Watchdog(self.mounts, STEP_TIMEOUT) as watchdog:
            try:
                step.action(self)
            except (BenchError, GaneshaError, OSError) as err:
                error = str(err) or type(err).__name__
                if watchdog.fired:
                    error = f"ran past {STEP_TIMEOUT:g} s, mount processes killed: {error}"
            except BaseException:
                progress(" interrupted")
                raise
        seconds = time.monotonic() - started
        entry = self.status.setdefault(step.name, {"status": "ok", "seconds": []})
        times = entry.setdefault("seconds", [])
        if isinstance(times, list):
            times.append(round(seconds, 3))
        if error is None:
            progress(f" {seconds:.1f} s")
            return
        progress(f" FAILED after {seconds:.1f} s")
        progress(f"  {step.name}: {error}")
        entry["status"] = "failed"
        entry["error"] = error
        self.failures.append(f"{step.name}: {error}")
        for name in step.produces:
            self.notes.setdefault(name, "failed")

    # -- results ------------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """The table's rows: those showing something a selected step measures."""
        selected = {name for step in self.steps for name in step.produces}
        notes = dict(self.notes)
        for name in {n for step in STEPS for n in step.produces} - selected:
            notes.setdefault(name, "not selected")
        chosen = [
            c
            for c in comparisons(self.files, self.inodes)
            if selected.intersection(c.measurements())
        ]
        return build_rows(chosen, self.results, notes)

    def summary(self) -> dict[str, object]:
        """Everything measured, as the JSON written by ``--json``."""
        rows = self.rows()
        return {
            "parameters": {
                "size_bytes": self.size,
                "files": self.files,
                "inodes": self.inodes,
                "repeat": self.repeat,
                "steps": [s.name for s in self.steps],
                "workdir": str(self.workdir),
                "proactive_reclaim": self.reclaim,
                "fio": {
                    "size_bytes": FIO_SIZE,
                    "block_bytes": FIO_BLOCK,
                    "runtime_s": FIO_RUNTIME,
                    "counted_ios": FIO_COUNT_IOS,
                    "jobs_of_concurrent_runs": FIO_JOBS,
                },
            },
            "figures": [r.to_json() for r in rows],
            "measurements": {
                m.name: {
                    "label": m.label,
                    "unit": m.unit,
                    "values": m.values,
                    "median": m.median if m.values else None,
                }
                for m in self.results.values()
            },
            "wire": {
                key: [{"app_ops": n, **count.to_json()} for count, n in runs]
                for key, runs in self.wire.items()
            },
            "steps": self.status,
            "failures": self.failures,
            "elapsed_seconds": round(self.elapsed, 1),
            # What earlier versions wrote, kept for scripts that read them.
            "size_bytes": self.size,
            "files": self.files,
            "repeat": self.repeat,
            "results": {
                m.name: {"unit": m.unit, "values": m.values} for m in self.results.values()
            },
            "medians": {m.name: m.median for m in self.results.values()},
            "ratios": legacy_ratios(rows),
        }

    def report(self) -> str:
        """The table and the failures, as printed on stdout."""
        lines = [
            f"fusenfs benchmark: {self.size_mib} MiB files, {self.files} small files, "
            f"{self.inodes:,} inodes, median of {self.repeat} run(s); ratio = fusenfs/peer",
            "",
            render_table(self.rows()),
        ]
        if self.reclaim:
            lines += ["", f"the kernel reclaims cold memory on its own ({self.reclaim})"]
        if self.wire:
            lines += ["", "on the wire (debug mount):", render_wire(self.wire)]
        if self.failures:
            lines += ["", "failed steps:"] + [f"  {f}" for f in self.failures]
        lines += ["", f"benchmark ran {self.elapsed:.0f} s"]
        return "\n".join(lines)


def _create_small(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, SMALL_PAYLOAD)
    finally:
        os.close(fd)


STEPS: Final[tuple[Step, ...]] = (
    Step(
        "fusenfs-write",
        "fusenfs sequential write ({size_mib} MiB, dd conv=fsync)",
        _needs("ganesha", "fusenfs", "source"),
        ("fusenfs-write", "fusenfs-write-client-cpu", "fusenfs-write-server-cpu"),
        Bench.step_fusenfs_write,
    ),
    Step(
        "libnfs-write",
        "libnfs NFSv3 write ({size_mib} MiB, nfs-cp)",
        _needs("ganesha", "nfsv3", "nfs-cp", "source"),
        ("libnfs-write", "libnfs-write-client-cpu", "libnfs-write-server-cpu"),
        Bench.step_libnfs_write,
    ),
    Step(
        "null-write",
        "null FS sequential write ({size_mib} MiB, dd conv=fsync)",
        _needs("nullfs", "source"),
        ("null-write",),
        Bench.step_null_write,
    ),
    Step(
        "session-write",
        "session layer write, no FUSE ({size_mib} MiB, contrib.session_copy)",
        _needs("ganesha", "source"),
        ("session-write", "session-write-client-cpu", "session-write-server-cpu"),
        Bench.step_session_write,
    ),
    Step(
        "fusenfs-read",
        "fusenfs sequential read, cold cache ({size_mib} MiB, dd)",
        _needs("ganesha", "fusenfs", "source"),
        ("fusenfs-read", "fusenfs-read-client-cpu", "fusenfs-read-server-cpu"),
        Bench.step_fusenfs_read,
    ),
    Step(
        "libnfs-read",
        "libnfs NFSv4.0 read ({size_mib} MiB, nfs-cp)",
        _needs("ganesha", "nfs-cp", "source"),
        ("libnfs-read", "libnfs-read-client-cpu", "libnfs-read-server-cpu"),
        Bench.step_libnfs_read,
    ),
    Step(
        "null-read",
        "null FS sequential read ({size_mib} MiB, dd)",
        _needs("nullfs"),
        ("null-read",),
        Bench.step_null_read,
    ),
    Step(
        "session-read",
        "session layer read, no FUSE ({size_mib} MiB, contrib.session_copy)",
        _needs("ganesha", "source"),
        ("session-read", "session-read-client-cpu", "session-read-server-cpu"),
        Bench.step_session_read,
    ),
    Step(
        "fusenfs-reread",
        "fusenfs re-read from the page cache ({size_mib} MiB; wire count)",
        _needs("ganesha", "fusenfs", "debug", "source"),
        (
            "fusenfs-reread",
            "reread-wire-reads",
            "reread-wire-compounds",
            "reread-evicted-mb",
            "reread-evicted-blocks",
            "reread-reads-beyond-evicted",
        ),
        Bench.step_fusenfs_reread,
    ),
    Step(
        "local-reread",
        "local re-read from the page cache ({size_mib} MiB)",
        _needs("source"),
        ("local-reread",),
        Bench.step_local_reread,
    ),
    Step(
        "fusenfs-create",
        "fusenfs create/stat/remove {files} small files (+ wire count)",
        _needs("ganesha", "fusenfs", "debug"),
        (
            "fusenfs-create",
            "fusenfs-stat",
            "fusenfs-remove",
            "create-compounds",
            "stat-compounds",
            "remove-compounds",
        ),
        Bench.step_fusenfs_create,
    ),
    Step(
        "local-create",
        "local create/stat/remove {files} small files",
        _needs(),
        ("local-create", "local-stat", "local-remove"),
        Bench.step_local_create,
    ),
    Step(
        "fusenfs-randread",
        "fusenfs fio 4 KiB random read ({fio_runtime} s; wire count over {fio_ios})",
        _needs("ganesha", "fusenfs", "debug", "fio"),
        ("fusenfs-randread", "randread-wire-reads"),
        Bench.step_fusenfs_randread,
    ),
    Step(
        "local-randread",
        "local fio 4 KiB random read ({fio_runtime} s)",
        _needs("fio"),
        ("local-randread",),
        Bench.step_local_randread,
    ),
    Step(
        "fusenfs-randwrite",
        "fusenfs fio 4 KiB random write ({fio_runtime} s; wire count over {fio_ios})",
        _needs("ganesha", "fusenfs", "debug", "fio"),
        ("fusenfs-randwrite", "randwrite-wire-writes"),
        Bench.step_fusenfs_randwrite,
    ),
    Step(
        "local-randwrite",
        "local fio 4 KiB random write ({fio_runtime} s)",
        _needs("fio"),
        ("local-randwrite",),
        Bench.step_local_randwrite,
    ),
    Step(
        "fusenfs-randread-jobs",
        "fusenfs fio 4 KiB random read, {fio_jobs} jobs ({fio_runtime} s)",
        _needs("ganesha", "fusenfs", "fio"),
        ("fusenfs-randread-jobs",),
        Bench.step_fusenfs_randread_jobs,
    ),
    Step(
        "local-randread-jobs",
        "local fio 4 KiB random read, {fio_jobs} jobs ({fio_runtime} s)",
        _needs("fio"),
        ("local-randread-jobs",),
        Bench.step_local_randread_jobs,
    ),
    Step(
        "fusenfs-randwrite-jobs",
        "fusenfs fio 4 KiB random write, {fio_jobs} jobs ({fio_runtime} s)",
        _needs("ganesha", "fusenfs", "fio"),
        ("fusenfs-randwrite-jobs",),
        Bench.step_fusenfs_randwrite_jobs,
    ),
    Step(
        "local-randwrite-jobs",
        "local fio 4 KiB random write, {fio_jobs} jobs ({fio_runtime} s)",
        _needs("fio"),
        ("local-randwrite-jobs",),
        Bench.step_local_randwrite_jobs,
    ),
    Step(
        "fusenfs-inodes",
        "fusenfs find + RSS + ls -lR over {inodes} files",
        _needs("ganesha", "fusenfs"),
        (
            "fusenfs-rss",
            "fusenfs-rss-before",
            "fusenfs-rss-after-ls",
            "fusenfs-find",
            "fusenfs-ls-lR",
        ),
        Bench.step_fusenfs_inodes,
    ),
    Step(
        "local-inodes",
        "local find + ls -lR over {inodes} files",
        _needs(),
        ("local-find", "local-ls-lR"),
        Bench.step_local_inodes,
    ),
)

LIBNFS_STEPS: Final = ("libnfs-write", "libnfs-read")


def select_steps(only: str | None, libnfs_only: bool = False) -> list[Step]:
    """The steps to run, in benchmark order.

    ``only``: comma-separated step names, or figure names (``read`` selects every step
    named ``*-read``); None for all.  ``libnfs_only``: the libnfs steps alone.

    Raises:
        ValueError: an unknown name (the message lists the known ones), an empty list,
            or both arguments given.
    """
    if libnfs_only:
        if only is not None:
            raise ValueError("--libnfs-only and --only exclude each other")
        return [s for s in STEPS if s.name in LIBNFS_STEPS]
    if only is None:
        return list(STEPS)
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    if not wanted:
        raise ValueError("--only needs at least one step name")
    chosen: set[str] = set()
    for item in wanted:
        matches = {s.name for s in STEPS if s.name == item or s.name.endswith("-" + item)}
        if not matches:
            known = ", ".join(s.name for s in STEPS)
            figures = ", ".join(sorted({s.name.split("-", 1)[1] for s in STEPS}))
            raise ValueError(f"unknown step {item!r}; steps: {known}; figures: {figures}")
        chosen |= matches
    return [s for s in STEPS if s.name in chosen]


def _interrupt(signum: int, frame: types.FrameType | None) -> NoReturn:
    # One signal is enough: further ones must not break the cleanup (which is bounded).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m contrib.bench",
        description="Benchmark fusenfs against libnfs, a null pyfuse3 file system and "
        "the local file system, on a local NFS-Ganesha (root).",
    )
    parser.add_argument("--size-mib", type=_positive, default=256, help="file size (256)")
    parser.add_argument("--files", type=_positive, default=1000, help="small files (1000)")
    parser.add_argument(
        "--inodes", type=_positive, default=100_000, help="files in the find tree (100000)"
    )
    parser.add_argument("--repeat", type=_positive, default=1, help="runs of each step (1)")
    parser.add_argument(
        "--only",
        metavar="STEP,...",
        help="run only these steps, or figures (read = fusenfs-read,libnfs-read,null-read); "
        "steps: " + ", ".join(s.name for s in STEPS),
    )
    parser.add_argument(
        "--libnfs-only", action="store_true", help="measure libnfs only (no mounts)"
    )
    parser.add_argument(
        "--workdir",
        default="/dev/shm/fusenfs-bench",
        help="scratch directory holding the source file, the export and the mount "
        "points (default on tmpfs)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        select_steps(args.only, args.libnfs_only)
    except ValueError as err:
        parser.error(str(err))
    bench = Bench(args)
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        bench.run()
    except (BenchError, GaneshaError) as err:
        print(f"bench: {err}", file=sys.stderr)
        status = 1
    except Interrupted as err:
        print(f"bench: interrupted by {err}; everything started was stopped", file=sys.stderr)
        status = 128 + err.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if bench.failures and status == 0:
        status = 1
    if bench.results or bench.status:  # also what was measured before a signal
        print(bench.report(), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(bench.summary(), indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())

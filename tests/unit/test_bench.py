"""contrib/bench.py without running the benchmark: counting compounds in debug-log lines,
ratios and goals, the table and the JSON, step selection, fio and /proc parsing."""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import resource
from pathlib import Path

import pytest

from contrib import bench
from contrib.bench import (
    BenchError,
    Comparison,
    Goal,
    Measurement,
    WireCount,
    WireLog,
    build_rows,
    count_compounds,
    format_number,
    format_value,
    parse_compound_line,
    parse_fio_json,
    parse_vmrss,
    ratio,
    render_table,
    render_wire,
    select_steps,
)

MIB = bench.MIB

# Lines as fusenfs --debug writes them (session/session.py; cli.setup_logging's format).
SEQ_READ = (
    "2026-12-02 00:52:46,535 session DEBUG -> 127.0.0.1:40175 session=abcd1234 slot=3 "
    "seq=17 [SEQUENCE PUTFH READ] 148 B"
)
SEQ_OPEN = (
    "2026-12-02 00:52:46,536 session DEBUG -> 127.0.0.1:40175 session=abcd1234 slot=0 "
    "seq=18 [SEQUENCE PUTFH OPEN GETFH GETATTR] 220 B"
)
RENEWAL = (
    "2026-12-02 00:52:47,001 session DEBUG -> 127.0.0.1:40175 session=abcd1234 slot=1 "
    "seq=2 [SEQUENCE] 44 B"
)
SESSIONLESS = "2026-12-02 00:52:40,000 session DEBUG -> 127.0.0.1:40175 [EXCHANGE_ID] 160 B"
REPLY = "2026-12-02 00:52:46,540 session DEBUG <- 127.0.0.1:40175 slot=3 NFS4_OK 0.4 ms"
OTHER = "2026-12-02 00:52:46,535 fusenfs DEBUG lookup: NFS4ERR_NOENT at op 1 (LOOKUP) -> ENOENT"


# -- parsing and counting ---------------------------------------------------------------


def test_parse_sequenced_and_sessionless_lines() -> None:
    assert parse_compound_line(SEQ_READ) == (["SEQUENCE", "PUTFH", "READ"], 148)
    assert parse_compound_line(SESSIONLESS) == (["EXCHANGE_ID"], 160)
    assert parse_compound_line(RENEWAL) == (["SEQUENCE"], 44)


@pytest.mark.parametrize("line", [REPLY, OTHER, "", "-> nothing [READ]", "[SEQUENCE] 3 B"])
def test_other_lines_are_not_compounds(line: str) -> None:
    assert parse_compound_line(line) is None


def test_count_compounds_counts_lines_and_ops() -> None:
    text = "\n".join([SESSIONLESS, SEQ_OPEN, SEQ_READ, REPLY, SEQ_READ, OTHER, RENEWAL])
    count = count_compounds(text)
    assert count.compounds == 5
    assert count.sessionless == 1
    assert count.renewals == 1
    assert count.application_compounds == 4
    assert count.op("READ") == 2
    assert count.op("SEQUENCE") == 4
    assert count.op("PUTFH") == 3
    assert count.op("WRITE") == 0
    assert count.bytes_sent == 160 + 220 + 148 + 148 + 44


def test_count_compounds_accepts_lines() -> None:
    assert count_compounds([SEQ_READ, SEQ_READ]).op("READ") == 2
    assert count_compounds("").compounds == 0


def test_wire_counts_add_up() -> None:
    total = count_compounds(SEQ_READ) + count_compounds("\n".join([RENEWAL, SESSIONLESS]))
    assert (total.compounds, total.renewals, total.sessionless) == (3, 1, 1)
    assert total.ops["SEQUENCE"] == 2
    as_json = total.to_json()
    assert as_json["application_compounds"] == 2
    assert as_json["ops"] == {"EXCHANGE_ID": 1, "PUTFH": 1, "READ": 1, "SEQUENCE": 2}


def test_wire_log_counts_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "debug.log"
    log = WireLog(path)
    assert log.mark() == 0  # no log yet
    assert log.count_since(0).compounds == 0
    path.write_text(SEQ_OPEN + "\n" + SEQ_READ + "\n")
    mark = log.mark()
    with open(path, "a") as f:
        f.write(SEQ_READ + "\n" + REPLY + "\n" + SEQ_READ)  # the last line is incomplete
    count = log.count_since(mark)
    assert count.compounds == 1
    assert count.op("OPEN") == 0
    with open(path, "a") as f:
        f.write("\n")
    assert log.count_since(mark).op("READ") == 2
    assert log.count_since(0).op("READ") == 3


def test_wire_log_settles_when_quiet(tmp_path: Path) -> None:
    path = tmp_path / "debug.log"
    path.write_text(SEQ_READ + "\n")
    assert WireLog(path).settle(quiet=0.05, limit=2.0) is True


# -- ratios, goals, rows ----------------------------------------------------------------


def test_ratio_arithmetic() -> None:
    assert ratio(300.0, 600.0) == 0.5
    assert ratio(0.0, 5.0) == 0.0
    assert ratio(5.0, 0.0) is None
    assert ratio(None, 5.0) is None
    assert ratio(5.0, None) is None
    assert ratio(float("nan"), 5.0) is None
    assert ratio(5.0, float("inf")) is None


def test_goals() -> None:
    at_least = Goal("ratio", ">=", 0.8)
    assert at_least.met(1.0, 0.8) is True
    assert at_least.met(1.0, 0.79) is False
    assert at_least.met(1.0, None) is None
    at_most = Goal("value", "<=", 3)
    assert at_most.met(3.0, None) is True
    assert at_most.met(3.01, 0.1) is False
    assert at_most.met(None, None) is None
    assert str(at_least) == "ratio >= 0.8"
    assert str(Goal("value", "<=", 150.0)) == "value <= 150"


def _measurements(**values: tuple[str, list[float]]) -> dict[str, Measurement]:
    return {name: Measurement(name, unit, list(vals)) for name, (unit, vals) in values.items()}


def test_build_rows_with_peer_target_and_missing() -> None:
    comps = [
        Comparison("write", "ours-w", "peer-w", "libnfs", goal=Goal("ratio", ">=", 1.0)),
        Comparison(
            "per file",
            "per-file",
            peer_label="target",
            target=3,
            goal=Goal("value", "<=", 3),
            unit="/file",
        ),
        Comparison("stat", "per-stat", peer_label="target", target=0, goal=Goal("value", "<=", 0)),
        Comparison("iops", "ours-io", "peer-io", "local", unit="IOPS"),
        Comparison("rss", "rss"),
    ]
    measured = _measurements(
        **{"ours-w": ("MB/s", [300.0, 500.0, 400.0]), "peer-w": ("MB/s", [800.0])},
        **{"per-file": ("/file", [6.0]), "per-stat": ("/stat", [0.0])},
        **{"rss": ("MB", [99.5])},
    )
    rows = build_rows(comps, measured, {"ours-io": "fio not installed"})
    write, per_file, per_stat, iops, rss = rows
    assert (write.ours, write.peer, write.ratio, write.met) == (400.0, 800.0, 0.5, False)
    assert write.peer_label == "libnfs" and write.goal == "ratio >= 1"
    assert (per_file.peer, per_file.ratio, per_file.met) == (3, 2.0, False)
    assert (per_stat.peer, per_stat.ratio, per_stat.met) == (0, None, True)
    assert iops.ours is None and iops.met is None and iops.unit == "IOPS"
    assert iops.note == "ours-io: fio not installed; peer-io: not run"
    assert rss.peer is None and rss.goal == "" and rss.note == ""


def test_median_of_repeats() -> None:
    assert Measurement("m", "s", [3.0, 1.0, 2.0]).median == 2.0
    assert math.isnan(Measurement("m", "s").median)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (0.0, "0"),
        (6.0, "6"),
        (150000.0, "150,000"),
        (1437.8, "1,438"),
        (18.04, "18.0"),
        (0.455, "0.46"),
        (0.0022, "0.0022"),
        (0.000171, "0.00017"),
        (-0.5, "-0.50"),
    ],
)
def test_format_number(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_format_value() -> None:
    assert format_value(412.3, "MB/s") == "412 MB/s"
    assert format_value(None, "MB/s") == "-"
    assert format_value(3.0, "") == "3"


# -- the table, the wire summary, the JSON ----------------------------------------------


def test_render_table_aligns_columns() -> None:
    comps = [
        Comparison("sequential write", "w", "p", "libnfs NFSv3", goal=Goal("ratio", ">=", 1.0)),
        Comparison("READs", "r", peer_label="target", target=0, goal=Goal("value", "<=", 0)),
        Comparison("fio", "f", "lf", "local", unit="IOPS"),
    ]
    measured = _measurements(w=("MB/s", [412.0]), p=("MB/s", [824.0]), r=("READs", [0.0]))
    text = render_table(build_rows(comps, measured, {"f": "fio not installed"}))
    lines = text.splitlines()
    assert lines[0].split() == [
        "figure",
        "fusenfs",
        "peer",
        "peer",
        "value",
        "ratio",
        "goal",
        "met",
        "note",
    ]
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 5
    write = lines[2]
    assert "412 MB/s" in write and "824 MB/s" in write and "0.50" in write
    assert write.rstrip().endswith("NO")
    assert "ratio >= 1" in write
    assert "yes" in lines[3]
    assert "f: fio not installed" in lines[4]
    # Every column starts at the same place on every line.
    for header in ("peer ", "ratio", "goal", "met"):
        start = lines[0].index(header)
        assert all(line[start - 2 : start] == "  " for line in lines[2:])
    # Numbers are right-aligned: the fusenfs column ends at the same place.
    end = lines[0].index("peer ") - 2
    assert lines[2][:end].endswith("412 MB/s")
    assert lines[3][:end].endswith("0 READs")


def test_render_wire() -> None:
    counts = {
        "create": [
            (count_compounds("\n".join([SEQ_OPEN, SEQ_READ, RENEWAL])), 2),
            (count_compounds(SEQ_OPEN), 2),
        ]
    }
    text = render_wire(counts)
    assert text.startswith("create+write 100 B+close: 4 files, 3 COMPOUNDs (0.75 per file")
    assert "1 lease renewals left out" in text
    assert "per file: GETATTR 0.50, GETFH 0.50, OPEN 0.50, PUTFH 0.75, READ 0.25" in text
    assert "SEQUENCE" not in text


def _args(**overrides: object) -> argparse.Namespace:
    args = bench.build_parser().parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_summary_json_and_report(tmp_path: Path) -> None:
    b = bench.Bench(_args(workdir=str(tmp_path), only="write,create"))
    b.record("fusenfs-write", "MB/s", 400.0)
    b.record("libnfs-write", "MB/s", 800.0)
    b.record("create-compounds", "/file", 6.0)
    b.record_wire("create", count_compounds(SEQ_OPEN), 1)
    b.notes["null-write"] = "failed"
    b.failures.append("null-write: boom")
    summary = json.loads(json.dumps(b.summary()))  # serializable as it is
    figures = {f["figure"]: f for f in summary["figures"]}
    write = figures[bench.FIGURE_WRITE]
    assert (write["fusenfs"], write["peer_value"], write["ratio"], write["met"]) == (
        400.0,
        800.0,
        0.5,
        False,
    )
    assert figures["sequential write vs pyfuse3 ceiling"]["note"] == "null-write: failed"
    assert figures["COMPOUNDs per create+write+close"]["met"] is False
    # Only rows of the selected steps: nothing about fio or the inode tree.
    assert not any("fio" in name or "RSS" in name for name in figures)
    assert summary["ratios"] == {"write fusenfs/libnfs-v3": 0.5}
    assert summary["medians"]["fusenfs-write"] == 400.0
    assert summary["wire"]["create"][0]["ops"]["OPEN"] == 1
    assert summary["parameters"]["steps"] == [
        "fusenfs-write",
        "libnfs-write",
        "null-write",
        "session-write",
        "fusenfs-create",
        "local-create",
    ]
    report = b.report()
    assert "failed steps:" in report and "null-write: boom" in report
    assert "on the wire (debug mount):" in report


# -- steps, options, parsers ------------------------------------------------------------


def test_select_steps() -> None:
    assert [s.name for s in select_steps(None)] == [s.name for s in bench.STEPS]
    assert [s.name for s in select_steps("read")] == [
        "fusenfs-read",
        "libnfs-read",
        "null-read",
        "session-read",
    ]
    assert [s.name for s in select_steps("local-inodes, fusenfs-write")] == [
        "fusenfs-write",
        "local-inodes",
    ]
    assert [s.name for s in select_steps(None, libnfs_only=True)] == ["libnfs-write", "libnfs-read"]
    # Figure names and step names match whole dash-separated suffixes only.
    assert [s.name for s in select_steps("reread")] == ["fusenfs-reread", "local-reread"]


@pytest.mark.parametrize("only", ["nope", "ead", "", " , "])
def test_select_steps_rejects_unknown(only: str) -> None:
    with pytest.raises(ValueError, match="step"):
        select_steps(only)


def test_select_steps_rejects_both() -> None:
    with pytest.raises(ValueError, match="exclude"):
        select_steps("read", libnfs_only=True)


def test_every_row_shows_a_measurement_a_step_produces() -> None:
    produced = {name for step in bench.STEPS for name in step.produces}
    for comp in bench.comparisons(1000, 100_000):
        assert set(comp.measurements()) <= produced, comp.figure


def test_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = bench.build_parser().parse_args(["--inodes", "5000", "--only", "inodes"])
    assert (args.inodes, args.only, args.size_mib, args.files, args.repeat) == (
        5000,
        "inodes",
        256,
        1000,
        1,
    )
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--only", "bogus"])
    assert exit_.value.code == 2
    assert "unknown step 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--inodes", "0"])


FIO_JSON = {
    "fio version": "fio-3.33",
    "jobs": [
        {
            "jobname": "randread",
            "read": {"iops": 1437.8, "total_ios": 14378},
            "write": {"iops": 0.0, "total_ios": 0},
        }
    ],
}


def test_parse_fio_json() -> None:
    text = "fio: note: both iodepth >= 1 and synchronous I/O engine are selected\n"
    text += json.dumps(FIO_JSON)
    assert parse_fio_json(text, "read") == (1437.8, 14378)
    assert parse_fio_json(json.dumps(FIO_JSON), "write") == (0.0, 0)
    for bad in ["", "fio: error", '{"jobs": []}', '{"jobs": [{"read": 3}]}']:
        with pytest.raises(BenchError, match="fio"):
            parse_fio_json(bad, "read")


def test_fio_argv() -> None:
    timed = bench.fio_argv(Path("/m/f"), "randread", 10, None)
    assert timed[0] == "fio" and "--filename=/m/f" in timed
    assert {"--rw=randread", "--bs=4096", "--time_based", "--runtime=10"} <= set(timed)
    assert "--end_fsync=1" not in timed
    counted = bench.fio_argv(Path("/m/f"), "randwrite", None, 2000)
    assert {"--rw=randwrite", "--number_ios=2000", "--end_fsync=1"} <= set(counted)
    assert "--time_based" not in counted
    assert "--numjobs=1" in timed and "--size=67108864" in timed


def test_fio_argv_of_concurrent_jobs_gives_each_its_own_file() -> None:
    """Several jobs: a directory with one file per job (fio.0, fio.1, ... as
    Bench.fio_dir makes them), the size split between them, one report for all."""
    argv = bench.fio_argv(Path("/m/d"), "randread", 10, None, jobs=4)
    assert {"--directory=/m/d", "--filename_format=fio.$jobnum", "--numjobs=4"} <= set(argv)
    assert f"--size={bench.FIO_SIZE // 4}" in argv and "--group_reporting" in argv
    assert not any(a.startswith("--filename=") for a in argv)


def test_parse_vmrss() -> None:
    status = "Name:\tpython3\nVmPeak:\t  200000 kB\nVmRSS:\t  101234 kB\nThreads:\t3\n"
    assert parse_vmrss(status) == 101234 * 1024
    with pytest.raises(BenchError, match="VmRSS"):
        parse_vmrss("Name:\tkthreadd\n")


def test_sha256_zeros_matches_hashlib() -> None:
    import hashlib

    size = 5 * 1024 * 1024 + 3
    assert bench.sha256_zeros(size, chunk=1 << 20) == hashlib.sha256(bytes(size)).hexdigest()


def test_wire_count_add_classifies() -> None:
    count = WireCount()
    count.add(["SEQUENCE", "PUTFH", "WRITE"], 220)
    count.add(["SEQUENCE"], 44)
    count.add(["CREATE_SESSION"], 100)
    count.add([], 8)  # an empty COMPOUND is sessionless too
    assert (count.compounds, count.renewals, count.sessionless) == (4, 1, 2)
    assert count.application_compounds == 3
    assert count.op("WRITE") == 1 and count.bytes_sent == 372


def test_page_cache_gaps_on_tmpfs_are_none(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    path = shm / f"fusenfs-gaps-{tmp_path.name}"
    try:
        path.write_bytes(b"x" * (3 * MIB + 5))  # tmpfs pages are the file: never evicted
        assert bench.page_cache_gaps(path, MIB) == (0, 0)
    finally:
        path.unlink(missing_ok=True)


def test_page_cache_gaps_count_evicted_pages_and_their_blocks(tmp_path: Path) -> None:
    path = tmp_path / "file"
    with open(path, "wb") as f:
        f.write(b"y" * (8 * MIB))
        f.flush()
        os.fsync(f.fileno())  # clean pages: DONTNEED evicts them
        # Whole 2 MiB-aligned ranges: a large folio is evicted only whole.
        os.posix_fadvise(f.fileno(), 2 * MIB, 2 * MIB, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(f.fileno(), 6 * MIB, 2 * MIB, os.POSIX_FADV_DONTNEED)
    missing, blocks = bench.page_cache_gaps(path, MIB)
    # Exactly these, unless the kernel reclaimed more meanwhile (a VM host's DAMON).
    assert missing >= 4 * MIB and blocks >= 4
    assert bench.page_cache_gaps(path, 4 * MIB)[1] == 2  # both 4 MiB halves have gaps
    empty = tmp_path / "empty"
    empty.touch()
    assert bench.page_cache_gaps(empty, MIB) == (0, 0)


def test_warm_memory_touches_and_frees_any_size() -> None:
    def rss() -> int:
        return bench.parse_vmrss(Path("/proc/self/status").read_text())

    size = 64 * bench.MIB + 12_345  # not a multiple of the chunk
    before, faults = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    bench.warm_memory(size)
    touched = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    huge = thp.exists() and "[always]" in thp.read_text()
    page = 2 * bench.MIB if huge else mmap.PAGESIZE
    assert touched >= 0.9 * 64 * bench.MIB / page  # every page was written to
    assert rss() - before < 16 * bench.MIB  # and went back when it returned

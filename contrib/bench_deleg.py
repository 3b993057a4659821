"""Benchmark: open + stat + close of delegated files, against delegations declined (issue 14).

    python3 -m contrib.bench_deleg [--files 1000] [--repeat 3] [--json FILE]

Root only (FUSE mounts).  Not part of the tests.  One run starts, each recorded by PID or
mount point and stopped exactly (also after a failure or Ctrl-C):

- the contrib test server (``python3 -m contrib.testserver serve``) on 127.0.0.1 and a
  free port, one file system, read delegations on (NFS-Ganesha 4.3's VFS back end grants
  none: it answers WND4_NOT_SUPP_FTYPE, so the test server is the peer that does);
- two fusenfs mounts of its export: the default one (delegations accepted) and one with
  ``-o nodeleg`` (declined: OPEN says OPEN4_SHARE_ACCESS_WANT_NO_DELEG).

Each mount creates ``--files`` files of 100 bytes in a directory of its own and reads each
once (that read-only OPEN is where the server grants a read delegation).  Then, timed, for
every file: ``open(O_RDONLY)``, ``fstat``, ``close``; ``--repeat`` times, the median
kept.  The COMPOUNDs each mount sent during the timed passes come from its own
statistics (``fusenfs stats``: COMPOUNDs by main operation; bare SEQUENCEs, which are
lease renewals, are left out).

Output: a table on stdout with files/s and COMPOUNDs per file for each mount, and the
ratio delegated/declined; ``--json FILE`` writes the same.  Exit status 0, 1 if the
benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from contrib.bench import REPO, BenchError, MountProcess, progress, stop_process
from fusenfs.statsock import read_statistics

#: Seconds for the test server to print its "control" line.
SERVER_TIMEOUT = 30.0
STATS_TIMEOUT = 30.0  # seconds for the mount to answer on its statistics socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """The test server, its output in workdir/server.log; returns when it is ready."""
    log = workdir / "server.log"
    argv = [sys.executable, "-m", "contrib.testserver", "serve"]
    argv += ["--instance", f"127.0.0.1:{port}", "--fs", "a"]
    argv += ["--control", str(workdir / "control.sock")]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
            start_new_session=True,
        )
    deadline = time.monotonic() + SERVER_TIMEOUT
    while b"control " not in log.read_bytes():
        if proc.poll() is not None:
            raise BenchError(f"the test server exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            stop_process(proc, "test server")
            raise BenchError(f"the test server was not ready in {SERVER_TIMEOUT:g} s")
        time.sleep(0.05)
    return proc


def operations(mountpoint: Path) -> dict[str, int]:
    """COMPOUNDs the mount sent so far, by main operation, lease renewals left out."""
    data = read_statistics(os.fspath(mountpoint), STATS_TIMEOUT)
    ops = {name: int(op["ops"]) for name, op in data.get("operations", {}).items()}
    ops.pop("SEQUENCE", None)
    return ops


def delegations_held(mountpoint: Path) -> int:
    data = read_statistics(os.fspath(mountpoint), STATS_TIMEOUT)
    return int(data.get("delegations", {}).get("held", 0))


def prepare(folder: Path, files: int) -> list[Path]:
    folder.mkdir()
    paths = [folder / f"f{i:05d}" for i in range(files)]
    for path in paths:
        path.write_bytes(b"x" * 100)
    for path in paths:
        with open(path, "rb") as f:
            f.read()
    return paths


def open_stat_close(paths: list[Path]) -> float:
    """Seconds for open(O_RDONLY) + fstat + close of every path."""
    started = time.perf_counter()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        os.fstat(fd)
        os.close(fd)
    return time.perf_counter() - started


def measure(mount: Path, name: str, files: int, repeat: int) -> dict[str, Any]:
    progress(f"{name}: creating and reading {files} files")
    paths = prepare(mount / name, files)
    held = delegations_held(mount)
    before = operations(mount)
    times = []
    for i in range(repeat):
        progress(f"{name}: open+fstat+close pass {i + 1}/{repeat}")
        times.append(open_stat_close(paths))
    after = operations(mount)
    sent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    per_file = sum(sent.values()) / (files * repeat)
    return {
        "mount": name,
        "files": files,
        "delegations_held": held,
        "seconds": statistics.median(times),
        "files_per_s": files / statistics.median(times),
        "compounds_per_file": per_file,
        "compounds": sent,
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'mount':<12} {'delegations':>11} {'files/s':>9} {'COMPOUNDs/file':>15}  by operation",
    ]
    for r in rows:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(r["compounds"].items())) or "none"
        lines.append(
            f"{r['mount']:<12} {r['delegations_held']:>11} {r['files_per_s']:>9.0f} "
            f"{r['compounds_per_file']:>15.2f}  {ops}"
        )
    deleg, declined = rows
    speed = deleg["files_per_s"] / declined["files_per_s"]
    lines.append(f"ratio delegated/declined: {speed:.2f}x files/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m contrib.bench_deleg", description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("contrib.bench_deleg: run as root (FUSE mounts)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="fusenfs-bench-deleg-"))
    port = free_port()
    server: subprocess.Popen[bytes] | None = None
    mounts: list[MountProcess] = []
    try:
        server = start_server(workdir, port)
        for name, extra in (("delegated", ""), ("declined", ",nodeleg")):
            argv = [sys.executable, "-m", "fusenfs", "mount", "127.0.0.1:/export/a"]
            argv += [str(workdir / name), "-o", f"port={port},foreground{extra}"]
            mounts.append(MountProcess(name, argv, workdir / name, workdir / f"{name}.log"))
            mounts[-1].start()
        rows = [measure(m.path, m.name, args.files, args.repeat) for m in mounts]
    except (BenchError, OSError) as e:
        print(f"contrib.bench_deleg: {e}", file=sys.stderr)
        return 1
    finally:
        for m in mounts:
            m.stop()
        if server is not None:
            stop_process(server, "test server")
        with contextlib.suppress(OSError):
            for m in mounts:
                m.path.rmdir()
    print(render(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

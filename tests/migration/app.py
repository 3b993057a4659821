"""An application on the mount, for migration scenarios: keeps files open and does I/O.

    python app.py DIR STOPFILE [--idle]

Opens ``DIR/log.dat`` (appended by a writer) and ``DIR/ref.dat`` (written once, then
read back and compared over and over), prints one line ``ready {...}`` once both are
open, and works until STOPFILE exists (or 300 s pass).  Each operation's duration is
recorded: the longest are the pauses the application saw.  At the end it re-reads both
files through the same descriptors, compares them byte by byte with what it wrote,
stats them again, and prints ``done {...}`` (JSON) with errors, inode numbers before
and after, and pause figures.  With ``--idle`` it opens, writes once and then only
waits, touching the files again at the end: the "no activity" case.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

BLOCK = 4096


def pattern(i: int) -> bytes:
    return (i.to_bytes(4, "big") * (BLOCK // 4))[:BLOCK]


def main() -> int:
    folder, stopfile = sys.argv[1], sys.argv[2]
    idle = "--idle" in sys.argv[3:]
    log_path, ref_path = os.path.join(folder, "log.dat"), os.path.join(folder, "ref.dat")
    log_fd = os.open(log_path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    ref_fd = os.open(ref_path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    reference = os.urandom(256 * 1024)
    os.pwrite(ref_fd, reference, 0)
    os.fsync(ref_fd)
    ino_before = {
        "log": [os.fstat(log_fd).st_ino, os.stat(log_path).st_ino],
        "ref": [os.fstat(ref_fd).st_ino, os.stat(ref_path).st_ino],
    }
    print("ready " + json.dumps({"ino": ino_before}), flush=True)
    errors: list[str] = []
    durations: list[float] = []
    blocks = 0
    deadline = time.monotonic() + 300
    while not os.path.exists(stopfile) and time.monotonic() < deadline:
        if idle:
            time.sleep(0.2)
            continue
        t0 = time.monotonic()
        try:
            os.pwrite(log_fd, pattern(blocks), blocks * BLOCK)
            if blocks % 8 == 0:
                os.fsync(log_fd)
            got = os.pread(ref_fd, 16384, (blocks * 16384) % len(reference))
            want = reference[(blocks * 16384) % len(reference) :][:16384]
            if got != want:
                errors.append(f"ref mismatch at block {blocks}")
            blocks += 1
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e}")
            time.sleep(0.05)
        durations.append(time.monotonic() - t0)
        time.sleep(0.002)
    try:
        os.fsync(log_fd)
        whole = os.pread(log_fd, blocks * BLOCK + BLOCK, 0)
        if whole != b"".join(pattern(i) for i in range(blocks)):
            errors.append(f"log content differs ({len(whole)} bytes for {blocks} blocks)")
        if os.pread(ref_fd, len(reference) + 1, 0) != reference:
            errors.append("ref content differs")
        ino_after = {
            "log": [os.fstat(log_fd).st_ino, os.stat(log_path).st_ino],
            "ref": [os.fstat(ref_fd).st_ino, os.stat(ref_path).st_ino],
        }
    except OSError as e:
        errors.append(f"final check: {type(e).__name__}: {e}")
        ino_after = {}
    os.close(log_fd)
    os.close(ref_fd)
    result = {
        "errors": errors[:20],
        "error_count": len(errors),
        "blocks": blocks,
        "ino_before": ino_before,
        "ino_after": ino_after,
        "max_pause": max(durations, default=0.0),
        "median_op": statistics.median(durations) if durations else 0.0,
        "ops": len(durations),
        "pauses_over_20ms": sorted((d for d in durations if d > 0.02), reverse=True)[:200],
    }
    print("done " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

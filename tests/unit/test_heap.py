"""The mount's glibc heap settings (fusenfs.runner.tune_malloc, return_free_memory).

Each case runs in a child Python: mallopt changes the whole process's allocator."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Fills and frees 64 MiB of 1 MiB blocks (a COMMIT's worth of WRITE data), then lets
# return_free_memory run for a few intervals with the given data rate; prints the
# resident memory freed blocks still take and the page faults of a second fill.
CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import trio
    from fusenfs.runner import return_free_memory, tune_malloc

    rate = int(sys.argv[1])

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def fill():
        return [bytes(bytearray(1 << 20)) for _ in range(64)]

    tuned = tune_malloc()
    blocks = fill()
    del blocks
    after_free = rss()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = fill()
    refill_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    del blocks
    total = 0

    def moved():
        global total
        total += rate
        return total

    async def main():
        with trio.move_on_after(0.35):
            await return_free_memory(moved, interval=0.1)

    trio.run(main)
    print(json.dumps({"tuned": tuned, "kept": after_free, "refill_faults": refill_faults,
                      "after_trim": rss()}))
    """
)


def _child(rate: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(rate)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, int] = json.loads(out.stdout)
    return result


def test_freed_buffers_are_reused_without_faults_and_given_back_when_data_stops() -> None:
    quiet = _child(rate=0)
    assert quiet["tuned"]
    # The freed 64 MiB stayed in the heap, and filling it again faulted nothing in.
    assert quiet["kept"] > 60 << 20, quiet
    assert quiet["refill_faults"] < 1000, quiet
    # No data moved during the intervals: the heap went back to the system.
    assert quiet["after_trim"] < quiet["kept"] - (48 << 20), quiet


def test_free_memory_is_kept_while_data_flows() -> None:
    busy = _child(rate=2 << 20)  # 2 MiB more at every look: above TRIM_QUIET
    assert busy["after_trim"] > 60 << 20, busy

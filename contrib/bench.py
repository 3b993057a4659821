"""Benchmark fusenfs against libnfs on one NFS-Ganesha, all on 127.0.0.1.

    python3 -m contrib.bench [--size-mib 256] [--files 1000] [--repeat 1] [--libnfs-only]

One run starts rpcbind if none is running (NFSv3 needs it; it is stopped again if this
run started it), starts Ganesha with NFSv3 and NFSv4.0/4.1 on a free port over an export
on tmpfs (so the disk does not weigh in), mounts it with ``fusenfs mount`` in the
foreground in a subprocess, and measures:

- fusenfs sequential write: ``dd bs=1M conv=fsync`` of a random file into the mount;
- fusenfs sequential read: ``dd bs=1M`` of a file written directly into the export (a
  name the kernel has never seen, so no page cache), after dropping caches;
- libnfs NFSv4.0 read: ``nfs-cp nfs://.../export/FILE?version=4&nfsport=PORT LOCAL``;
- libnfs NFSv3 write: ``nfs-cp SRC nfs://.../EXPORT_PATH/NEW?version=3`` (libnfs's NFSv4
  write does not work against Ganesha);
- fusenfs metadata: create (with 100 bytes), stat, and remove ``--files`` small files.

It prints MB/s (10^6 bytes per second) or operations per second, the median over
``--repeat`` runs, and the ratios fusenfs/libnfs.  Not part of the test run.  Root only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from contrib.ganesha import GaneshaError, GaneshaServer, port_accepts, unavailable_reason

MB: Final = 1_000_000
MIB: Final = 1 << 20
RPCBIND_PORT: Final = 111
TRANSFER_TIMEOUT: Final = 900.0  # seconds for one 256 MiB copy, generous for slow machines
MOUNT_TIMEOUT: Final = 30.0


class BenchError(RuntimeError):
    """The benchmark could not run; the message says why."""


@dataclass
class Measurement:
    """Repeated runs of one measurement; ``values`` in ``unit`` (higher is better)."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


def run(argv: list[str], timeout: float = TRANSFER_TIMEOUT) -> float:
    """Run a command, raise BenchError on failure, return its wall time in seconds."""
    started = time.perf_counter()
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{' '.join(argv)}: timed out after {timeout:g} s") from err
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)}: exit status {result.returncode}\n"
            f"{result.stdout.strip()}\n{result.stderr.strip()}".rstrip()
        )
    return elapsed


def drop_caches() -> None:
    """Write back and drop the kernel's page cache (root); tmpfs content stays."""
    os.sync()
    with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def make_source(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes at ``path``, made once and reused while it fits."""
    if path.exists() and path.stat().st_size == size:
        return path
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        left = size
        while left:
            chunk = min(left, 4 * MIB)
            f.write(os.urandom(chunk))
            left -= chunk
    tmp.rename(path)
    return path


def is_mounted(mountpoint: Path) -> bool:
    """True if ``mountpoint`` is a FUSE mount point now (from /proc/self/mounts)."""
    target = str(mountpoint)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[1] == target and fields[2].startswith("fuse"):
                return True
    return False


@contextlib.contextmanager
def rpcbind_running() -> Iterator[None]:
    """Make sure rpcbind answers on 127.0.0.1:111; stop it afterwards if started here."""
    if port_accepts("127.0.0.1", RPCBIND_PORT):
        yield
        return
    rpcbind = shutil.which("rpcbind") or "/usr/sbin/rpcbind"
    if not os.path.exists(rpcbind):
        raise BenchError("rpcbind not found (apt-get install rpcbind)")
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
        proc.terminate()
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10.0)


@contextlib.contextmanager
def fusenfs_mounted(server: GaneshaServer, mountpoint: Path, log: Path) -> Iterator[None]:
    """``fusenfs mount`` in the foreground in a subprocess; unmount and wait afterwards."""
    fusenfs = shutil.which("fusenfs")
    if fusenfs is None:
        raise BenchError("fusenfs command not found (bash contrib/setup.sh)")
    if is_mounted(mountpoint):
        raise BenchError(f"{mountpoint} is already mounted")
    shutil.rmtree(mountpoint, ignore_errors=True)  # fusenfs wants an empty mount point
    mountpoint.mkdir(parents=True)
    source = f"{server.address}:{server.pseudo}"
    argv = [fusenfs, "mount", source, str(mountpoint), "-o", f"port={server.port},foreground"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(mountpoint):
            if proc.poll() is not None:
                raise BenchError(
                    f"fusenfs mount exited with status {proc.returncode}:\n"
                    + log.read_text(errors="replace")[-4000:]
                )
            if time.monotonic() > deadline:
                raise BenchError(f"fusenfs did not mount {mountpoint} in {MOUNT_TIMEOUT:g} s")
            time.sleep(0.05)
        yield
    finally:
        if is_mounted(mountpoint):
            for umount in (
                [fusenfs, "umount", str(mountpoint)],
                ["fusermount3", "-u", "-z", str(mountpoint)],
            ):
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    subprocess.run(umount, capture_output=True, timeout=20.0)
                if not is_mounted(mountpoint):
                    break
        try:
            proc.wait(timeout=20.0)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5.0)


class Bench:
    """One benchmark run against one Ganesha; see the module docstring."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.size: int = args.size_mib * MIB
        self.files: int = args.files
        self.repeat: int = args.repeat
        self.libnfs_only: bool = args.libnfs_only
        self.workdir = Path(args.workdir).resolve()
        self.export = self.workdir / "export"
        self.mnt = self.workdir / "mnt"
        self.source = self.workdir / f"source-{args.size_mib}MiB.bin"
        self.results: dict[str, Measurement] = {}
        self._counter = 0

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}-{os.getpid()}-{self._counter}.bin"

    def record(self, name: str, unit: str, value: float) -> None:
        self.results.setdefault(name, Measurement(name, unit)).values.append(value)
        print(f"  {name:<34} {value:10.1f} {unit}", flush=True)

    def throughput(self, name: str, seconds: float) -> None:
        self.record(name, "MB/s", self.size / MB / seconds)

    def check_size(self, path: Path) -> None:
        size = path.stat().st_size
        if size != self.size:
            raise BenchError(f"{path}: {size} bytes, expected {self.size}")

    # -- measurements ---------------------------------------------------------------

    def libnfs_v4_read(self, server: GaneshaServer, name: str) -> None:
        out = self.workdir / self.fresh("libnfs-read-out")
        drop_caches()
        try:
            seconds = run(["nfs-cp", server.url(name, version=4), str(out)])
            self.check_size(out)
        finally:
            out.unlink(missing_ok=True)
        self.throughput("libnfs NFSv4.0 read (nfs-cp)", seconds)

    def libnfs_v3_write(self, server: GaneshaServer) -> None:
        name = self.fresh("libnfs-write")
        seconds = run(["nfs-cp", str(self.source), server.url(name, version=3)])
        self.check_size(self.export / name)
        (self.export / name).unlink()
        self.throughput("libnfs NFSv3 write (nfs-cp)", seconds)

    def fusenfs_write(self) -> None:
        name = self.fresh("fusenfs-write")
        argv = ["dd", f"if={self.source}", f"of={self.mnt / name}", "bs=1M", "conv=fsync"]
        seconds = run([*argv, "status=none"])
        self.check_size(self.export / name)
        (self.export / name).unlink()
        self.throughput("fusenfs write (dd conv=fsync)", seconds)

    def fusenfs_read(self, name: str) -> None:
        drop_caches()
        seconds = run(["dd", f"if={self.mnt / name}", "of=/dev/null", "bs=1M", "status=none"])
        self.throughput("fusenfs read (dd)", seconds)

    def fusenfs_metadata(self) -> None:
        top = self.mnt / self.fresh("meta").removesuffix(".bin")
        top.mkdir()
        names = [top / f"f{i:05d}" for i in range(self.files)]
        payload = b"x" * 100

        def timed(action: Callable[[Path], object]) -> float:
            started = time.perf_counter()
            for path in names:
                action(path)
            return time.perf_counter() - started

        def create(path: Path) -> None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)

        created = timed(create)
        stated = timed(os.stat)
        removed = timed(os.unlink)
        top.rmdir()
        self.record("fusenfs create+write 100 B", "files/s", self.files / created)
        self.record("fusenfs stat", "files/s", self.files / stated)
        self.record("fusenfs remove", "files/s", self.files / removed)

    # -- the run --------------------------------------------------------------------

    def run(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise BenchError(reason)
        if shutil.which("nfs-cp") is None:
            raise BenchError("nfs-cp not found (apt-get install libnfs-utils)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.export, ignore_errors=True)
        self.export.mkdir()
        print(f"preparing {self.size // MIB} MiB of random data in {self.source}", flush=True)
        make_source(self.source, self.size)
        with (
            rpcbind_running(),
            GaneshaServer(self.export, protocols=(3, 4), minor_versions=(0, 1)) as server,
        ):
            server.wait_grace_over()
            print(
                f"Ganesha {server.address}:{server.port} (NFSv3, v4.0, v4.1), export "
                f"{self.export}, {self.repeat} run(s) of {self.size // MIB} MiB and "
                f"{self.files} files",
                flush=True,
            )
            if self.libnfs_only:
                self.rounds(server)
            else:
                log = self.workdir / "fusenfs-mount.log"
                with fusenfs_mounted(server, self.mnt, log):
                    self.rounds(server)
        shutil.rmtree(self.export, ignore_errors=True)

    def rounds(self, server: GaneshaServer) -> None:
        for i in range(1, self.repeat + 1):
            print(f"run {i}/{self.repeat}", flush=True)
            name = self.fresh("read")
            shutil.copyfile(self.source, self.export / name)
            if not self.libnfs_only:
                self.fusenfs_write()
                self.fusenfs_read(name)
            self.libnfs_v3_write(server)
            self.libnfs_v4_read(server, name)
            (self.export / name).unlink()
            if not self.libnfs_only:
                self.fusenfs_metadata()

    def report(self) -> dict[str, object]:
        print("\nmedian over runs:")
        for m in self.results.values():
            print(f"  {m.name:<34} {m.median:10.1f} {m.unit}")
        ratios: dict[str, float] = {}
        pairs = [
            (
                "write fusenfs/libnfs-v3",
                "fusenfs write (dd conv=fsync)",
                "libnfs NFSv3 write (nfs-cp)",
            ),
            ("read fusenfs/libnfs-v4.0", "fusenfs read (dd)", "libnfs NFSv4.0 read (nfs-cp)"),
        ]
        for label, ours, theirs in pairs:
            if ours in self.results and theirs in self.results:
                ratios[label] = self.results[ours].median / self.results[theirs].median
                print(f"  ratio {label:<28} {ratios[label]:10.2f}")
        return {
            "size_bytes": self.size,
            "files": self.files,
            "repeat": self.repeat,
            "results": {
                m.name: {"unit": m.unit, "values": m.values} for m in self.results.values()
            },
            "medians": {m.name: m.median for m in self.results.values()},
            "ratios": ratios,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m contrib.bench",
        description="Compare fusenfs with libnfs on a local NFS-Ganesha (root).",
    )
    parser.add_argument("--size-mib", type=int, default=256, help="file size (default 256)")
    parser.add_argument("--files", type=int, default=1000, help="small files (default 1000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (default 1)")
    parser.add_argument(
        "--libnfs-only", action="store_true", help="measure libnfs only (no fusenfs mount)"
    )
    parser.add_argument(
        "--workdir",
        default="/dev/shm/fusenfs-bench",
        help="scratch directory holding the source file and the export (default on tmpfs)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.files < 1 or args.repeat < 1:
        parser.error("--size-mib, --files and --repeat must be at least 1")
    bench = Bench(args)
    try:
        bench.run()
    except (BenchError, GaneshaError) as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    summary = bench.report()
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Migration scenario harness: the contrib test server cluster, a real FUSE mount, a real app.

The cluster runs in the test's trio loop (instances A, B, C on 127.0.0.1-3, free
ports); the fusenfs mount and the application are separate processes, so nothing
blocks the servers.  ``Scenario`` bundles them:

    async with scenario(cluster, "/export/a") as sc:
        app = await sc.start_app()
        await cluster.migrate("a", to="B")
        result = await app.finish()
        stats = await sc.stats()
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from contrib.testserver import Cluster, ClusterConfig, FsSpec, InstanceConfig
from contrib.testserver.server import EndpointConfig
from fusenfs.cli import is_mounted
from fusenfs.runner import read_mount_record
from fusenfs.statsock import read_statistics
from recovery.manager import StateManager
from session.client import NFSClient
from session.session import ServerSession, SessionOptions

APP = Path(__file__).with_name("app.py")
LEASE = 4
GRACE = 4.0


def three_instances(lease: int = LEASE, grace: float = GRACE) -> ClusterConfig:
    return ClusterConfig(
        instances=[
            InstanceConfig(name, [EndpointConfig(addr)], lease_time=lease, grace_time=grace)
            for name, addr in (("A", "127.0.0.1"), ("B", "127.0.0.2"), ("C", "127.0.0.3"))
        ],
        filesystems=[FsSpec("a"), FsSpec("b")],
        lease_time=lease,
        grace_time=grace,
    )


class LineReader:
    """Lines from a process's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = b""

    async def line(self) -> str:
        while b"\n" not in self._buf:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError("the process closed its output")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()


@dataclass
class App:
    """The application process (tests/migration/app.py) working in ``folder``."""

    proc: trio.Process
    reader: LineReader
    stopfile: str
    ready: dict[str, Any]

    async def finish(self, timeout: float = 120) -> dict[str, Any]:
        """Ask it to stop, and return its final report."""
        Path(self.stopfile).touch()
        with trio.fail_after(timeout):
            while True:
                line = await self.reader.line()
                if line.startswith("done "):
                    result: dict[str, Any] = json.loads(line[5:])
                    await self.proc.wait()
                    return result


@dataclass
class Scenario:
    cluster: Cluster
    mountpoint: str
    log_path: str
    workdir: str
    apps: list[App] = field(default_factory=list)

    async def start_app(self, subdir: str = "", idle: bool = False) -> App:
        folder = os.path.join(self.mountpoint, subdir) if subdir else self.mountpoint
        stopfile = os.path.join(self.workdir, f"stop-{uuid.uuid4().hex[:6]}")
        argv = [sys.executable, str(APP), folder, stopfile] + (["--idle"] if idle else [])
        proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        reader = LineReader(proc.stdout)
        with trio.fail_after(30):
            line = await reader.line()
        assert line.startswith("ready "), line
        app = App(proc, reader, stopfile, json.loads(line[6:]))
        self.apps.append(app)
        return app

    async def stats(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(read_statistics, self.mountpoint, 30.0)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text().splitlines()[-lines:])
        except OSError:
            return "(no client log)"


@asynccontextmanager
async def scenario(
    cluster: Cluster, export: str = "/export/a", instance: str = "A", options: str = ""
) -> AsyncIterator[Scenario]:
    """Mount ``export`` of ``instance`` through fusenfs (a daemon process)."""
    ep = cluster.instance(instance).endpoints[0]
    workdir = tempfile.mkdtemp(prefix="fusenfs-mig-")
    mnt = os.path.join(workdir, "mnt")
    os.mkdir(mnt)
    log_path = os.path.join(workdir, "client.log")
    opts = f"port={ep.port},actimeo=1" + (f",{options}" if options else "")
    argv = [sys.executable, "-m", "fusenfs", "mount", f"{ep.address}:{export}", mnt]
    argv += ["-o", opts, "--log-file", log_path]
    with trio.fail_after(30):
        done = await trio.run_process(argv, capture_stderr=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"mount failed: {done.stderr.decode()}")
    sc = Scenario(cluster, mnt, log_path, workdir)
    try:
        yield sc
    except BaseException:
        print("---- client log ----\n" + sc.log_tail())
        raise
    finally:
        for app in sc.apps:
            if app.proc.returncode is None:
                app.proc.kill()
        with trio.CancelScope(shield=True):
            await unmount(mnt)


async def unmount(mnt: str) -> None:
    """``fusenfs umount``; if the daemon hangs (a test failed mid-recovery), kill exactly
    the daemon serving ``mnt`` (by PID) and detach the mount point."""
    record = read_mount_record(mnt)
    pids = [record.pid] if record is not None else []
    umount = [sys.executable, "-m", "fusenfs", "umount", mnt]
    with trio.move_on_after(20):
        await trio.run_process(umount, check=False, capture_stderr=True)
    if is_mounted(mnt):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["fusermount3", "-uz", mnt], check=False, capture_output=True)


@dataclass
class ApiMount:
    """A mounted ``NFSClient`` and its ``StateManager``."""

    client: NFSClient
    mgr: StateManager

    def session_of_fh(self, fh: bytes) -> ServerSession:
        return self.client.session_for(self.client.fs_of(fh))

    def events(self, fragment: str) -> list[str]:
        """The recorded events whose ``what`` contains ``fragment``."""
        return [f"{e.what} ({e.evidence})" for e in self.mgr.log.events if fragment in e.what]


@asynccontextmanager
async def api_mount(
    cluster: Cluster, name: str, instance: str = "A", export: str = "/export/a", index: int = 0
) -> AsyncIterator[ApiMount]:
    """Mount ``export`` of ``instance`` (its ``index``-th address) with a client ID of
    its own (``co_ownerid`` unique per call), recovery attached."""
    ep = cluster.instance(instance).endpoints[index]
    async with trio.open_nursery() as nursery:
        session = ServerSession(
            ep.address,
            ep.port,
            co_ownerid=f"api-test/{name}/{uuid.uuid4().hex}".encode(),
            options=SessionOptions(timeo=5, retrans=2, retry_limit=15),
        )
        await session.start(nursery)
        client = NFSClient(session, export, owner_prefix=name.encode())
        await client.mount()
        mgr = StateManager(client, nursery)
        mgr.attach()
        try:
            yield ApiMount(client, mgr)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                for each in mgr.sessions():
                    await each.shutdown()
            nursery.cancel_scope.cancel()


def assert_app_unharmed(result: dict[str, Any]) -> None:
    """Zero errors, same inode numbers, content byte-identical (the app checks it)."""
    assert result["error_count"] == 0, result["errors"]
    assert result["ino_after"] == result["ino_before"]
    for pair in result["ino_before"].values():
        assert pair[0] == pair[1]


def last_migration(stats: dict[str, Any]) -> dict[str, Any]:
    migrations = [m for m in stats["migrations"] if m["kind"] != "referral"]
    assert migrations, stats["events"][-20:]
    result: dict[str, Any] = migrations[-1]
    return result

"""The command line: ``serve`` in a subprocess, then client subcommands over the Unix
control socket (JSON lines), and a raw GETATTR showing the migration took effect."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from contrib.testserver.control import request
from contrib.testserver.rawclient import RawClient
from contrib.testserver.server import universal_address
from session.xdr import nfs4
from session.xdr.const import FATTR4, fs4_status_type, nfsstat4
from session.xdr.fattr import bitmap4_from, decode_fattr4

CLI = [sys.executable, "-m", "contrib.testserver"]


async def _cli(control: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*CLI, "--control", control, *args], capture_stdout=True, capture_stderr=True, check=False
    )


async def _read_ready(stdout: trio.abc.ReceiveStream) -> dict[str, tuple[str, int]]:
    """Parse "instance NAME ADDR:PORT ..." lines until "control PATH"."""
    buffer = b""
    endpoints: dict[str, tuple[str, int]] = {}
    while True:
        chunk = await stdout.receive_some(4096)
        assert chunk, f"serve exited early: {buffer.decode()}"
        buffer += chunk
        for line in buffer.decode().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "instance" and ":" in words[2]:
                host, port = words[2].rsplit(":", 1)
                endpoints[words[1]] = (host, int(port))
            if len(words) == 2 and words[0] == "control":
                return endpoints


async def test_serve_and_control_commands(nursery: trio.Nursery) -> None:
    with trio.fail_after(30), tempfile.TemporaryDirectory(prefix="ts-cli-") as tmp:
        control = str(Path(tmp) / "control.sock")
        proc = await trio.lowlevel.open_process(
            [
                *CLI,
                "--control",
                control,
                "serve",
                "--instance",
                "127.0.0.1",
                "--instance",
                "B=127.0.0.2",
                "--fs",
                "a",
                "--fs",
                "b@B",
                "--lease",
                "5",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert proc.stdout is not None
            endpoints = await _read_ready(proc.stdout)
            assert set(endpoints) == {"A", "B"}
            status = json.loads((await _cli(control, "status")).stdout)
            served = {i["name"]: i["serves"] for i in status["instances"]}
            assert served == {"A": ["a"], "B": ["b"]}
            client = await RawClient.connect(*endpoints["A"], nursery, owner=b"cli-test")
            await client.establish()
            fh = await client.lookup_path("/export/a")
            moved = await _cli(control, "migrate", "a", "--to", "B", "--freeze", "0.2")
            assert moved.returncode == 0, moved.stderr.decode()
            report = json.loads(moved.stdout)
            assert (report["source"], report["destination"], report["tsm"]) == ("A", "B", True)
            want = bitmap4_from([FATTR4.FS_LOCATIONS, FATTR4.FS_STATUS])
            res = await client.seq([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(want)])
            assert res.status == nfsstat4.NFS4_OK
            ga = res.resarray[-1]
            assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
            attrs = decode_fattr4(ga.resok.obj_attributes)
            assert attrs.fs_status is not None and attrs.fs_status.fss_absent
            assert attrs.fs_status.fss_type != fs4_status_type.STATUS4_REFERRAL
            assert attrs.fs_locations is not None
            assert attrs.fs_locations.locations[0].server == [universal_address(*endpoints["B"])]
            events = (await _cli(control, "events")).stdout.decode()
            assert "freeze" in events and "migrate" in events
            replaced = await _cli(control, "locations", "--replace", "a", "127.0.0.9:3000", "B")
            assert replaced.returncode == 0, replaced.stderr.decode()
            res = await client.seq([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(want)])
            ga = res.resarray[-1]
            assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
            attrs = decode_fattr4(ga.resok.obj_attributes)
            assert attrs.fs_locations is not None
            assert [loc.server for loc in attrs.fs_locations.locations] == [
                [universal_address("127.0.0.9", 3000)],
                [universal_address(*endpoints["B"])],
            ]
            alone = await _cli(control, "retire", "a", "127.0.0.2")
            assert alone.returncode == 2 and b"no other address of B" in alone.stderr
            bad = await _cli(control, "migrate", "nope", "--to", "B")
            assert bad.returncode == 2 and b"no file system" in bad.stderr
            assert request(control, "reboot", instance="B")["instance"] == "B"
            assert request(control, "expire", instance="A") == [f"{client.clientid:#x}"]
        finally:
            proc.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0
        assert not Path(control).exists()

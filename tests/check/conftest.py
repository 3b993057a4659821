"""Fixtures for the ``fusenfs check`` tests: the contrib test server with its control
socket (the --migrate-cmd target), and a way to run ``python3 -m fusenfs.check``.

- ``reference``: instances A (127.0.0.1) and B (127.0.0.2) on free ports, lease 3 s,
  grace 3 s, file system ``a`` on A with a referral ``/export/a/ref`` to file system
  ``r`` on B, and the control socket in a temporary directory.
- ``run_check(*args, timeout=...)``: the checker as a separate process (the same code path
  as the command line), bounded; returns a :class:`CheckRun`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import fusenfs.check  # noqa: F401 (registers every check)
from contrib.testserver import Cluster, ClusterConfig, FsSpec, InstanceConfig, open_cluster
from contrib.testserver.control import serve_control
from contrib.testserver.server import EndpointConfig
from fusenfs.check_base import REGISTRY

LEASE = 3
OUTCOMES = {"PASS", "FAIL", "WARN", "NOT-SUPPORTED"}


@dataclass
class Reference:
    """The running test-server cluster and how to reach and drive it."""

    cluster: Cluster
    control: str
    workdir: Path

    @property
    def port(self) -> int:
        return self.cluster.instance("A").endpoints[0].port

    def migrate_cmd(self) -> str:
        return (
            f"{sys.executable} -m contrib.testserver --control {self.control} "
            "migrate {fs} --to {target} --{tsm} --freeze {freeze}"
        )


@pytest.fixture
async def reference() -> AsyncIterator[Reference]:
    config = ClusterConfig(
        [
            InstanceConfig("A", [EndpointConfig("127.0.0.1")], lease_time=LEASE, grace_time=LEASE),
            InstanceConfig("B", [EndpointConfig("127.0.0.2")], lease_time=LEASE, grace_time=LEASE),
        ],
        [FsSpec("a")],
        lease_time=LEASE,
        grace_time=LEASE,
    )
    with tempfile.TemporaryDirectory(prefix="fusenfs-check-") as tmp:
        control = str(Path(tmp) / "control.sock")
        async with open_cluster(config) as cluster, trio.open_nursery() as inner:
            await inner.start(serve_control, cluster, control)
            cluster.add_referral("/export/a/ref", "r", "B")
            yield Reference(cluster, control, Path(tmp))
            inner.cancel_scope.cancel()


@dataclass
class CheckRun:
    """One run of the checker: exit status, report, and the parsed --json / --junit."""

    returncode: int
    stdout: str
    stderr: str
    data: dict[str, Any] | None
    junit: ET.Element | None

    def outcomes(self) -> dict[str, str]:
        """Check code -> outcome, from the text report."""
        out = {}
        for line in self.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in REGISTRY and parts[1] in OUTCOMES:
                out[parts[0]] = parts[1]
        return out


RunCheck = Callable[..., Awaitable[CheckRun]]


@pytest.fixture
def run_check(tmp_path: Path) -> RunCheck:
    async def run(*args: str, timeout: float = 240, files: bool = True) -> CheckRun:
        argv = [sys.executable, "-m", "fusenfs.check", *args]
        json_path, junit_path = tmp_path / "check.json", tmp_path / "check.xml"
        if files:
            argv += ["--json", str(json_path), "--junit", str(junit_path)]
        with trio.fail_after(timeout):
            done = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
        data = json.loads(json_path.read_text()) if files and json_path.exists() else None
        junit = ET.parse(junit_path).getroot() if files and junit_path.exists() else None
        return CheckRun(done.returncode, done.stdout.decode(), done.stderr.decode(), data, junit)

    return run


def validate(run: CheckRun) -> None:
    """The JSON and JUnit files agree with the text report and with each other, and have
    the shapes CI systems read (RFC-free: the tools' formats)."""
    assert run.data is not None and run.junit is not None, run.stderr
    data, root = run.data, run.junit
    text = run.outcomes()
    checks = data["checks"]
    assert [c["code"] for c in checks] == list(text), "JSON and report list the same checks"
    for c in checks:
        assert c["outcome"] in OUTCOMES and c["outcome"] == text[c["code"]]
        assert c["code"] in REGISTRY and c["section"] and c["title"] and c["summary"]
        assert isinstance(c["seconds"], float | int) and c["seconds"] >= 0
        if c["outcome"] == "FAIL":
            assert c["summary"] and (c["got"] or c["details"]), c
    summary = data["summary"]
    assert sum(summary.values()) == len(checks)
    assert data["exit_status"] == run.returncode == (1 if summary["FAIL"] else 0)
    # JUnit: testsuites > testsuite > testcase, counts consistent.
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    assert (
        len(cases) == len(checks) == int(suite.get("tests", "-1")) == int(root.get("tests", "-1"))
    )
    failures = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert len(failures) == summary["FAIL"] == int(suite.get("failures", "-1"))
    assert len(skipped) == summary["NOT-SUPPORTED"] == int(suite.get("skipped", "-1"))
    assert suite.get("errors") == "0"
    float(suite.get("time", "x"))
    for case, c in zip(cases, checks, strict=True):
        assert case.get("name", "").startswith(c["code"] + " ")
        assert case.get("classname") == f"fusenfs.check.{REGISTRY[c['code']].group}"
        float(case.get("time", "x"))
        out = case.find("system-out")
        assert out is not None and (out.text or "").startswith(c["outcome"])

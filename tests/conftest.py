"""Shared fixtures: a real NFS-Ganesha server for the whole session, fresh directory names.

- ``ganesha``: one ``contrib.ganesha.GaneshaServer`` (NFSv4.1, 127.0.0.1, a free port,
  a temporary export) started once per test session, already out of its grace period.
  Skipped when not root or Ganesha is not installed, except under CI (CI=true), where
  that is a failure.
- ``fresh_dir``: a unique name for a directory that does not exist yet at the top of the
  export; removed from the export after the test.
- When a test that used ``ganesha`` fails, its report gains a section with what Ganesha
  logged during the test.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Generator, Iterator

import pytest

from contrib.ganesha import GaneshaError, GaneshaServer, unavailable_reason

_LOG_TAIL_LINES = 60
_log_offset = pytest.StashKey[int]()
_active: list[GaneshaServer] = []


def in_ci() -> bool:
    """True when running under CI (CI=true), where skipping a real-server test is an error."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def ganesha() -> Iterator[GaneshaServer]:
    """A running NFS-Ganesha (NFSv4.1 only) exporting a temporary directory as /export.

    Use ``ganesha.address``, ``ganesha.port``, ``ganesha.pseudo`` ("/export") to reach it
    and ``ganesha.export_path`` to look at the server's side of the files.
    """
    reason = unavailable_reason()
    if reason is not None:
        if in_ci():
            pytest.fail(f"NFS-Ganesha is required under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    server = GaneshaServer()
    try:
        server.start()
    except GaneshaError as err:
        server.cleanup()
        pytest.fail(f"could not start NFS-Ganesha: {err}", pytrace=False)
    _active.append(server)
    try:
        server.wait_grace_over()
        yield server
    finally:
        _active.remove(server)
        server.cleanup()


@pytest.fixture
def fresh_dir(request: pytest.FixtureRequest, ganesha: GaneshaServer) -> Iterator[str]:
    """A unique directory name, not yet existing, for the top of the export.

    The test creates it (through the client); whatever is there afterwards is removed.
    Its server-side path is ``ganesha.export_path / fresh_dir``.
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:48].strip("_.") or "t"
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    path = ganesha.export_path / name
    assert not path.exists()
    yield name
    shutil.rmtree(path, ignore_errors=True)
    if path.is_symlink() or path.exists():
        path.unlink(missing_ok=True)


def _server_log_size() -> int:
    if not _active:
        return 0
    try:
        return _active[0].log_path.stat().st_size
    except OSError:
        return 0


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_log_offset] = _server_log_size()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach what Ganesha logged during a failed test to its report."""
    report = yield
    if report.failed and _active and "ganesha" in getattr(item, "fixturenames", ()):
        server = _active[0]
        try:
            with open(server.log_path, "rb") as log:
                log.seek(item.stash.get(_log_offset, 0))
                lines = log.read().decode(errors="replace").splitlines()
        except OSError as err:
            lines = [f"(cannot read the log: {err})"]
        if not lines:
            lines = server.log_tail(_LOG_TAIL_LINES).splitlines()
        title = f"NFS-Ganesha log {server.log_path} (last {_LOG_TAIL_LINES} lines)"
        report.sections.append((title, "\n".join(lines[-_LOG_TAIL_LINES:])))
    return report

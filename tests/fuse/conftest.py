"""Real FUSE mounts of the session's NFS-Ganesha export, made with the ``fusenfs`` command.

- ``mount``: a factory.  ``mount("actimeo=1")`` runs ``python -m fusenfs mount
  127.0.0.1:/export DIR -o port=N,actimeo=1 --log-file LOG`` (the daemonizing form, as a
  user would) on a fresh directory, waits for it to return (bounded) and gives back a
  ``helpers.Mount`` (``.path``, ``.log_path``, ``.daemon_pid``).  Every mount made in a
  test is unmounted after it with ``fusenfs umount``; a failed unmount, or a daemon that
  does not exit after it, fails the test (an error at teardown), after a forced clean-up
  (SIGKILL, ``fusermount3 -uz``) so that nothing is left behind.
- ``ws``: the usual case: one default mount plus a fresh directory made *through the
  mount* at the top of the export (``ws.dir``), and that directory on the server's side
  (``ws.server``).
- ``local_tmp``: scratch space on the local disk, for sources and copies.
- Bounds: subprocesses get timeouts (``helpers.run``).  An ``os.*`` call on the mount
  cannot be given one, so every mount has a watchdog: if the test still uses it after
  ``helpers.TEST_DEADLINE`` seconds, the client daemon is killed, the kernel fails every
  request on that mount (ENOTCONN) instead of hanging, and the test fails saying so.
- When a test fails, its report gains the tail of each client log it made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer

from .helpers import (
    MOUNT_TIMEOUT,
    REPO,
    Mount,
    MountFactory,
    Workspace,
    daemon_pids,
    fuse_unavailable,
    fusenfs_argv,
    in_ci,
)

#: Lines of each client log shown under a failed test.
LOG_TAIL_LINES = 80

_mounts_key = pytest.StashKey[list[Mount]]()


@pytest.fixture
def mount(
    request: pytest.FixtureRequest, ganesha: GaneshaServer, tmp_path: Path
) -> Iterator[MountFactory]:
    """A factory of fusenfs mounts of the Ganesha export (see the module docstring)."""
    reason = fuse_unavailable()
    if reason is not None:
        if in_ci():
            pytest.fail(f"FUSE is required under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    made: list[Mount] = []
    publics: list[Path] = []  # world-searchable parents of ``public`` mount points
    request.node.stash[_mounts_key] = made

    def make(options: str = "", *, port: int | None = None, public: bool = False) -> Mount:
        index = len(made)
        if public:
            # Other users must reach the mount point (allow_other tests): tmp_path's
            # ancestors are private to root, so use a world-searchable directory.
            outer = Path(tempfile.mkdtemp(prefix="fusenfs-public-"))
            outer.chmod(0o755)
            publics.append(outer)
            mountpoint = outer / f"mnt{index}"
        else:
            mountpoint = tmp_path / f"mnt{index}"
        mountpoint.mkdir()
        log_path = tmp_path / f"client{index}.log"
        port = ganesha.port if port is None else port
        opts = ",".join(filter(None, [f"port={port}", options]))
        spec = f"{ganesha.address}:{ganesha.pseudo}"
        argv = fusenfs_argv("mount", spec, mountpoint, "-o", opts, "--log-file", log_path)
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            for pid in daemon_pids(mountpoint):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, timeout=10)
            pytest.fail(f"fusenfs mount {spec} -o {opts} did not return in {MOUNT_TIMEOUT} s")
        if result.returncode != 0:
            pytest.fail(
                f"fusenfs mount {spec} -o {opts} failed ({result.returncode}): "
                f"{result.stderr.strip()}"
            )
        pids = daemon_pids(mountpoint)
        m = Mount(
            path=mountpoint,
            log_path=log_path,
            options=opts,
            daemon_pid=pids[0] if pids else -1,
            port=port,
        )
        made.append(m)
        assert os.path.ismount(mountpoint), f"fusenfs mount returned 0 but {mountpoint} is not"
        assert len(pids) == 1, f"expected one daemon serving {mountpoint}, found {pids}"
        m.start_watchdog()
        return m

    yield make

    problems: list[str] = []
    for m in reversed(made):
        problems.extend(m.unmount())
    for outer in publics:
        # Only once nothing is mounted below it: never delete through a mount.
        if not any(m.is_mounted() for m in made if outer in m.path.parents):
            shutil.rmtree(outer, ignore_errors=True)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def ws(mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer) -> Workspace:
    """One default mount and a fresh directory made through it."""
    m = mount()
    path = m.path / fresh_dir
    os.mkdir(path)
    return Workspace(mount=m, dir=path, server=ganesha.export_path / fresh_dir, ganesha=ganesha)


@pytest.fixture
def local_tmp() -> Iterator[Path]:
    """A scratch directory on the local disk (not in the export), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="fusenfs-fuse-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every client log a failed test made to its report."""
    report = yield
    if report.failed:
        for m in item.stash.get(_mounts_key, []):
            lines = m.log_text().splitlines()
            title = f"fusenfs client log {m.log_path} ({m.path}, -o {m.options})"
            report.sections.append((title, "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty)"))
    return report

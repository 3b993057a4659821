"""The ``fusenfs`` command's failures: one line on stderr, a non-zero exit, no traceback,
and nothing left behind (no mount, no background process).

Most need no server and no mount; the ones that talk to Ganesha are marked so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer, pick_free_port

from .helpers import (
    MOUNT_TIMEOUT,
    REPO,
    ClosingServer,
    MountFactory,
    SilentServer,
    daemon_pids,
    fuse_unavailable,
    fusenfs_argv,
    run,
    wait_gone,
    wait_until,
)

pytestmark = pytest.mark.fuse

EXIT_USAGE = 2  # argparse and bad options
EXIT_FAILURE = 32  # mount(8): mount failure


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mnt"
    d.mkdir()
    return d


def fusenfs(*args: str | os.PathLike[str], timeout: float = MOUNT_TIMEOUT) -> tuple[int, str]:
    """Run ``fusenfs ARGS``; returns (exit status, stderr)."""
    result = run(fusenfs_argv(*args), timeout=timeout, check=False)
    return result.returncode, result.stderr


def assert_one_line_error(code: int, stderr: str, *expect: str) -> str:
    assert code != 0
    assert "Traceback" not in stderr, f"exit {code}:\n{stderr}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("fusenfs: "), line
    for word in expect:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def assert_nothing_left(mountpoint: Path) -> None:
    assert not os.path.ismount(mountpoint), f"{mountpoint} was mounted after all"
    assert wait_until(lambda: not daemon_pids(mountpoint), 10.0), (
        f"fusenfs processes left for {mountpoint}: {daemon_pids(mountpoint)}"
    )


def test_unresolvable_server(empty_dir: Path) -> None:
    code, err = fusenfs("mount", "nosuchhost.invalid:/x", empty_dir, timeout=60)
    assert_one_line_error(code, err, "nosuchhost.invalid", "resolve")
    assert code == EXIT_FAILURE
    assert_nothing_left(empty_dir)


def test_connection_refused(empty_dir: Path) -> None:
    port = pick_free_port("127.0.0.1")
    started = time.monotonic()
    code, err = fusenfs("mount", "127.0.0.1:/export", empty_dir, "-o", f"port={port},retry=0")
    assert_one_line_error(code, err, f"127.0.0.1:{port}", "connect")
    assert code == EXIT_FAILURE
    assert time.monotonic() - started < 20, "a refused connection should fail fast"
    assert_nothing_left(empty_dir)


@pytest.mark.parametrize(
    ("options", "expect"),
    [
        ("bogus", "bogus"),
        ("port=2049,bogus=1", "bogus"),
        ("port=notanumber", "port"),
        ("port=70000", "port"),
        ("vers=3", "4.1"),
        ("sec=krb9", "sec"),
        ("ro=1", "ro"),
    ],
)
def test_bad_mount_options(empty_dir: Path, options: str, expect: str) -> None:
    code, err = fusenfs("mount", "127.0.0.1:/export", empty_dir, "-o", options)
    assert_one_line_error(code, err, expect)
    assert code == EXIT_USAGE
    assert_nothing_left(empty_dir)


@pytest.mark.parametrize("spec", ["127.0.0.1", "127.0.0.1:export", ":/export"])
def test_bad_server_spec(empty_dir: Path, spec: str) -> None:
    code, err = fusenfs("mount", spec, empty_dir, "-o", "port=1")
    assert_one_line_error(code, err, "spec")
    assert code == EXIT_USAGE


def test_missing_mountpoint(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    code, err = fusenfs("mount", "127.0.0.1:/export", missing, "-o", "port=1")
    assert_one_line_error(code, err, str(missing), "does not exist")
    assert not missing.exists()


def test_mountpoint_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"")
    code, err = fusenfs("mount", "127.0.0.1:/export", f, "-o", "port=1")
    assert_one_line_error(code, err, str(f), "not a directory")


def test_non_empty_mountpoint(empty_dir: Path) -> None:
    (empty_dir / "something").write_bytes(b"here")
    code, err = fusenfs("mount", "127.0.0.1:/export", empty_dir, "-o", "port=1")
    assert_one_line_error(code, err, str(empty_dir), "not empty")
    assert (empty_dir / "something").read_bytes() == b"here"
    assert_nothing_left(empty_dir)


def test_usage_errors_exit_2(empty_dir: Path) -> None:
    code, err = fusenfs()
    assert code == EXIT_USAGE and "Traceback" not in err and "usage" in err.lower()
    code, err = fusenfs("mount", "127.0.0.1:/export")
    assert code == EXIT_USAGE and "Traceback" not in err and "usage" in err.lower()
    code, err = fusenfs("frobnicate")
    assert code == EXIT_USAGE and "Traceback" not in err


def test_umount_of_something_not_mounted(empty_dir: Path) -> None:
    code, err = fusenfs("umount", empty_dir)
    assert_one_line_error(code, err, str(empty_dir), "not mounted")


def test_probe_refused() -> None:
    port = pick_free_port("127.0.0.1")
    code, err = fusenfs("probe", f"127.0.0.1:{port}")
    assert_one_line_error(code, err, "connect")


#: Seconds for the interpreter to start and import fusenfs, on top of a budget.
STARTUP = 8.0


def test_probe_gives_up_on_a_server_that_closes_every_connection() -> None:
    # timeo=1 s, retrans=1: the budget is 2 s, however often it reconnects meanwhile.
    with ClosingServer() as server:
        started = time.monotonic()
        code, err = fusenfs("probe", f"127.0.0.1:{server.port}", "-o", "timeo=10,retrans=1")
        elapsed = time.monotonic() - started
    assert_one_line_error(code, err, f"127.0.0.1:{server.port} not responding")
    assert code == EXIT_FAILURE
    assert elapsed < 2 + STARTUP, f"probe took {elapsed:.1f} s"
    assert server.connections >= 2, "the probe did not even reconnect"
    print(f"probe gave up after {elapsed:.2f} s, {server.connections} connections")


def test_probe_of_a_silent_server_gives_up_within_its_default_budget() -> None:
    # The defaults: timeo=5 s, retrans=2, so 15 s.
    with SilentServer() as server:
        started = time.monotonic()
        code, err = fusenfs("probe", f"127.0.0.1:{server.port}", timeout=60)
        elapsed = time.monotonic() - started
    assert_one_line_error(code, err, f"127.0.0.1:{server.port} not responding")
    assert 15 <= elapsed < 15 + STARTUP, f"probe took {elapsed:.1f} s"


@pytest.mark.parametrize("options", ["bogus", "port=1", "timeo=x"])
def test_probe_bad_options(options: str) -> None:
    code, err = fusenfs("probe", "127.0.0.1:1", "-o", options)
    assert_one_line_error(code, err, options.partition("=")[0])
    assert code == EXIT_USAGE


# ---------------------------------------------------------------------- with a server


@pytest.mark.ganesha
@pytest.mark.parametrize("path", ["/export/no-such-dir", "/no-such-export"])
def test_export_path_that_does_not_exist(
    empty_dir: Path, ganesha: GaneshaServer, path: str
) -> None:
    code, err = fusenfs(
        "mount", f"{ganesha.address}:{path}", empty_dir, "-o", f"port={ganesha.port}"
    )
    assert_one_line_error(code, err, path, "NOENT")
    assert code == EXIT_FAILURE
    assert_nothing_left(empty_dir)


@pytest.mark.ganesha
def test_regular_file_export_is_refused(
    empty_dir: Path, ganesha: GaneshaServer, fresh_dir: str
) -> None:
    (ganesha.export_path / fresh_dir).mkdir()
    (ganesha.export_path / fresh_dir / "hello.txt").write_text("hello\n")
    spec = f"{ganesha.address}:{ganesha.pseudo}/{fresh_dir}/hello.txt"
    code, err = fusenfs("mount", spec, empty_dir, "-o", f"port={ganesha.port}")
    line = assert_one_line_error(code, err)
    assert line == f"fusenfs: {spec} is not a directory"
    assert code == EXIT_FAILURE
    assert_nothing_left(empty_dir)


@pytest.mark.ganesha
def test_stats_into_a_closed_pipe_is_quiet(mount: MountFactory) -> None:
    m = mount()
    # As typed: nothing but the first line, no complaint.
    shell = run(
        ["sh", "-c", f"{' '.join(fusenfs_argv('stats', '--json', m.path))} | head -1"],
        timeout=30,
    )
    assert shell.stderr == "", shell.stderr
    assert shell.stdout == "{\n"
    # A reader that is gone before the first write: exit 141 (as cat, killed by
    # SIGPIPE), still nothing on stderr.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            fusenfs_argv("stats", m.path),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            cwd=REPO,
        )
    finally:
        os.close(write_end)
    assert result.stderr == "", result.stderr
    assert result.returncode == 141


@pytest.mark.ganesha
def test_probe_shows_server_owner_and_supported_attrs(ganesha: GaneshaServer) -> None:
    result = run(fusenfs_argv("probe", f"{ganesha.address}:{ganesha.port}"), timeout=30)
    assert "Traceback" not in result.stderr
    fields = {}
    for line in result.stdout.splitlines():
        label, _, value = line.partition("  ")
        fields[label.strip()] = value.strip()
    assert fields.get("server_owner.so_major_id"), result.stdout
    assert "server_owner.so_minor_id" in fields
    attrs = set(fields.get("supported_attrs", "").split())
    assert {"supported_attrs", "type", "change", "size", "fsid", "fileid", "mode"} <= attrs
    assert fields["lease_time"].endswith(" s")


@pytest.mark.ganesha
def test_mount_on_an_existing_mount(mount: MountFactory) -> None:
    m = mount()
    code, err = fusenfs("mount", "127.0.0.1:/export", m.path, "-o", f"port={m.port}")
    assert_one_line_error(code, err, str(m.path))
    assert m.is_mounted()
    assert daemon_pids(m.path) == [m.daemon_pid]


@pytest.mark.ganesha
@pytest.mark.parametrize("how", ["umount", "SIGTERM", "SIGINT"])
def test_foreground_mount_serves_until_unmounted_or_interrupted(
    empty_dir: Path, ganesha: GaneshaServer, fresh_dir: str, how: str
) -> None:
    # README: with -f it "stays in the foreground until unmounted or interrupted";
    # either way it must leave no mount behind and exit 0.
    reason = fuse_unavailable()
    if reason is not None:
        pytest.skip(reason)
    argv = fusenfs_argv(
        "mount", f"{ganesha.address}:{ganesha.pseudo}", empty_dir, "-o", f"port={ganesha.port}"
    )
    proc = subprocess.Popen(
        [*argv, "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert wait_until(lambda: os.path.ismount(empty_dir), MOUNT_TIMEOUT), (
            "the foreground mount did not come up"
        )
        assert proc.poll() is None, "the foreground process must stay"
        os.mkdir(empty_dir / fresh_dir)
        (empty_dir / fresh_dir / how).write_bytes(b"foreground")
        assert (ganesha.export_path / fresh_dir / how).read_bytes() == b"foreground"
        if how == "umount":
            run(fusenfs_argv("umount", empty_dir), timeout=30)
        else:
            proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"{how}: exit {proc.returncode}: {err}"
        assert "Traceback" not in err
        assert not os.path.ismount(empty_dir), f"still mounted after {how} (exit 0)"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if os.path.ismount(empty_dir):
            subprocess.run(["fusermount3", "-uz", empty_dir], timeout=10, check=False)
    assert wait_gone(proc.pid, 5)

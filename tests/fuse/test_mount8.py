"""mount(8) and fstab mount fusenfs (issue 11), and the errors a person meets.

- ``mount -t fuse.fusenfs SPEC DIR -o OPTS``: mount(8) runs mount.fuse3, which runs
  ``fusenfs SPEC DIR -o OPTS`` through /bin/sh with the default PATH (mount(8) passes no
  PATH); ``mount -t fusenfs``: mount(8) runs /sbin/mount.fusenfs.  Both mount the
  session's Ganesha export; ``umount DIR`` unmounts it and the mount process exits.
- An fstab line, in a temporary file given to ``mount -T FILE DIR`` (util-linux's other
  fstab): /etc/fstab is never touched, and the test checks that.
- The errors: a server that is not NFS, or NFSv4.0 only; a path missing on the server, or
  not exported; a port out of range; a log file that cannot be written; a user without
  access to /dev/fuse; a mount point in use.  Each is one line that says what is wrong.
- ``probe`` shows an export's fsid as ``stats`` does.

The mount(8) tests need what contrib/setup.sh installs: /sbin/mount.fusenfs and
``fusenfs`` on the default PATH; without them they are skipped (failed under CI).
Whatever a test mounts is unmounted by it, and the mount process it started is stopped
by pid, also on failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer
from fusenfs.cli import is_mounted
from fusenfs.runner import read_mount_record

from .helpers import (
    MOUNT_TIMEOUT,
    MountFactory,
    alive,
    fuse_unavailable,
    fusenfs_argv,
    in_ci,
    run,
    wait_gone,
)

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

#: The PATH /bin/sh uses when it is given none (mount(8) passes none to helpers).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HELPER = Path("/sbin/mount.fusenfs")


@pytest.fixture
def mount8() -> None:
    """Skip (fail under CI) unless FUSE works and the mount(8) helpers are installed."""
    reason = fuse_unavailable()
    if reason is None and not HELPER.exists():
        reason = f"{HELPER} is missing (run contrib/setup.sh)"
    if reason is None and shutil.which("fusenfs", path=DEFAULT_PATH) is None:
        reason = "fusenfs is not on the default PATH (run contrib/setup.sh)"
    if reason is not None:
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def fstype_and_source(mountpoint: Path) -> tuple[str, str, set[str]]:
    """(fstype, source, per-mount flags) of the mount on ``mountpoint``."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        head, tail = before.split(), after.split()
        if head[4] == os.fspath(mountpoint):
            return tail[0], tail[1], set(head[5].split(","))
    raise AssertionError(f"{mountpoint} is not mounted")


@contextlib.contextmanager
def unmounted_after(mountpoint: Path) -> Iterator[list[int]]:
    """Collects the mount processes serving ``mountpoint`` (``note``) and, whatever
    happens, unmounts it (umount, then a lazy unmount) and stops them by pid."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        if is_mounted(os.fspath(mountpoint)):
            subprocess.run(["umount", mountpoint], capture_output=True, timeout=30)
        if is_mounted(os.fspath(mountpoint)):
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, timeout=10)
        for pid in pids:
            if alive(pid) and not wait_gone(pid, 15):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def note(pids: list[int], mountpoint: Path) -> int:
    """The pid of the process serving ``mountpoint`` (its mount record), noted."""
    record = read_mount_record(os.fspath(mountpoint))
    assert record is not None, f"no mount record for {mountpoint}"
    pids.append(record.pid)
    return record.pid


def umount_and_wait(mountpoint: Path, pid: int) -> None:
    result = run(["umount", mountpoint], timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert not is_mounted(os.fspath(mountpoint))
    assert wait_gone(pid, 15), f"the mount process {pid} did not exit after umount"


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith("fusenfs: "), lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]


def _fstab_digest() -> str:
    try:
        return hashlib.sha256(Path("/etc/fstab").read_bytes()).hexdigest()
    except OSError:
        return "absent"


# ---------------------------------------------------------------------- mount(8)


@pytest.mark.parametrize("fstype", ["fuse.fusenfs", "fusenfs"])
def test_mount_t_mounts_and_umount_unmounts(
    mount8: None, ganesha: GaneshaServer, tmp_path: Path, fresh_dir: str, fstype: str
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    spec = f"{ganesha.address}:{ganesha.pseudo}"
    with unmounted_after(mountpoint) as pids:
        result = run(
            ["mount", "-t", fstype, spec, mountpoint, "-o", f"port={ganesha.port}"],
            timeout=MOUNT_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        pid = note(pids, mountpoint)
        kind, source, flags = fstype_and_source(mountpoint)
        assert (kind, source) == ("fuse.fusenfs", spec)
        assert not {"nosuid", "nodev"} & flags, flags  # mount(8)'s defaults: suid, dev
        os.mkdir(mountpoint / fresh_dir)
        (mountpoint / fresh_dir / "via-mount8").write_bytes(b"mount(8)")
        assert (ganesha.export_path / fresh_dir / "via-mount8").read_bytes() == b"mount(8)"
        umount_and_wait(mountpoint, pid)


@pytest.mark.parametrize("fstype", ["fuse.fusenfs", "fusenfs"])
def test_fstab_line_then_mount_dir_and_umount_dir(
    mount8: None, ganesha: GaneshaServer, tmp_path: Path, fresh_dir: str, fstype: str
) -> None:
    before = _fstab_digest()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    fstab = tmp_path / "fstab"
    options = f"port={ganesha.port},soft,timeo=5,retrans=2,_netdev"
    fstab.write_text(
        f"# a test's own fstab (mount -T)\n"
        f"{ganesha.address}:{ganesha.pseudo} {mountpoint} {fstype} {options} 0 0\n"
    )
    with unmounted_after(mountpoint) as pids:
        result = run(["mount", "-T", fstab, mountpoint], timeout=MOUNT_TIMEOUT, check=False)
        assert result.returncode == 0, result.stderr
        pid = note(pids, mountpoint)
        stats = json.loads(run(fusenfs_argv("stats", "--json", mountpoint), timeout=30).stdout)
        in_effect = stats["mount"]["options"].split(",")
        for word in ("soft", "timeo=5", "retrans=2", f"port={ganesha.port}"):
            assert word in in_effect, in_effect
        os.mkdir(mountpoint / fresh_dir)
        assert (ganesha.export_path / fresh_dir).is_dir()
        umount_and_wait(mountpoint, pid)
    assert _fstab_digest() == before, "/etc/fstab changed"


def test_mount_fuse3_runs_fusenfs_with_no_environment(
    mount8: None, ganesha: GaneshaServer, tmp_path: Path
) -> None:
    """The old form, ``mount.fuse3 'fusenfs#SPEC' DIR``, with nothing in the environment:
    /bin/sh finds fusenfs on its default PATH."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    spec = f"fusenfs#{ganesha.address}:{ganesha.pseudo}"
    with unmounted_after(mountpoint) as pids:
        result = subprocess.run(
            ["/sbin/mount.fuse3", spec, mountpoint, "-o", f"port={ganesha.port}"],
            capture_output=True,
            text=True,
            timeout=MOUNT_TIMEOUT,
            env={},
        )
        assert result.returncode == 0, result.stderr
        pid = note(pids, mountpoint)
        assert fstype_and_source(mountpoint)[0] == "fuse.fusenfs"
        umount_and_wait(mountpoint, pid)


def test_mount8_user_option_implies_noexec_nosuid_nodev(
    mount8: None, ganesha: GaneshaServer, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    spec = f"{ganesha.address}:{ganesha.pseudo}"
    with unmounted_after(mountpoint) as pids:
        result = run(
            [
                "mount",
                "-t",
                "fuse.fusenfs",
                spec,
                mountpoint,
                "-o",
                f"port={ganesha.port},user,nofail,noauto,defaults,rw",
            ],
            timeout=MOUNT_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        pid = note(pids, mountpoint)
        assert {"noexec", "nosuid", "nodev", "rw"} <= fstype_and_source(mountpoint)[2]
        umount_and_wait(mountpoint, pid)


def test_mount8_refused_option_is_one_line(
    mount8: None, ganesha: GaneshaServer, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    spec = f"{ganesha.address}:{ganesha.pseudo}"
    result = run(
        ["mount", "-t", "fusenfs", spec, mountpoint, "-o", f"port={ganesha.port},vers=3"],
        timeout=MOUNT_TIMEOUT,
        check=False,
    )
    one_line_error(result, "vers=3", "4.1")
    assert not is_mounted(os.fspath(mountpoint))


def test_mount8_sloppy_warns_about_unknown_options(
    mount8: None, ganesha: GaneshaServer, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    spec = f"{ganesha.address}:{ganesha.pseudo}"
    with unmounted_after(mountpoint) as pids:
        result = run(
            ["mount", "-s", "-t", "fusenfs", spec, mountpoint, "-o", f"port={ganesha.port},wibble"],
            timeout=MOUNT_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        pid = note(pids, mountpoint)
        assert "ignoring unknown mount option 'wibble'" in result.stderr
        umount_and_wait(mountpoint, pid)


# ---------------------------------------------------------------------- errors


def fusenfs(
    *args: str | os.PathLike[str], timeout: float = MOUNT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return run(fusenfs_argv(*args), timeout=timeout, check=False)


class BannerServer:
    """A TCP server on 127.0.0.1 that greets each connection as ssh does and closes it:
    not ONC RPC at all."""

    def __init__(self, banner: bytes = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n") -> None:
        self.banner = banner
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(self.banner)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def banner_server() -> Iterator[BannerServer]:
    server = BannerServer()
    yield server
    server.close()


def test_a_server_that_is_not_nfs(banner_server: BannerServer, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    where = f"127.0.0.1:{banner_server.port}"
    started = time.monotonic()
    one_line_error(fusenfs("probe", where), where, "is not an NFS server", "SSH-2.0")
    result = fusenfs("mount", "127.0.0.1:/export", mountpoint, "-o", f"port={banner_server.port}")
    one_line_error(result, where, "is not an NFS server")
    assert time.monotonic() - started < 20, "no need to wait for a verdict like that"
    assert not is_mounted(os.fspath(mountpoint))


@pytest.fixture
def nfs40_only(ganesha: GaneshaServer) -> Iterator[GaneshaServer]:
    """A Ganesha of this test's own that speaks NFSv4.0 only."""
    server = GaneshaServer(minor_versions=(0,))
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def test_an_nfsv40_only_server(nfs40_only: GaneshaServer, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    where = f"{nfs40_only.address}:{nfs40_only.port}"
    one_line_error(fusenfs("probe", where), where, "not NFSv4.1", "MINOR_VERS_MISMATCH")
    result = fusenfs(
        "mount", f"{nfs40_only.address}:/export", mountpoint, "-o", f"port={nfs40_only.port}"
    )
    one_line_error(result, where, "not NFSv4.1")
    assert not is_mounted(os.fspath(mountpoint))


def test_missing_and_unexported_paths_are_named(ganesha: GaneshaServer, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    where = f"{ganesha.address}:{ganesha.port}"
    port = f"port={ganesha.port}"
    result = fusenfs("mount", f"{ganesha.address}:/no-such-export", mountpoint, "-o", port)
    one_line_error(result, "/no-such-export is not exported by", where, "it exports /export")
    result = fusenfs("mount", f"{ganesha.address}:/export/no-such/deeper", mountpoint, "-o", port)
    one_line_error(result, "/export/no-such does not exist", "in the export /export", "NOENT")
    result = fusenfs("probe", where, "/no-such-export")
    one_line_error(result, "/no-such-export is not exported")
    assert not is_mounted(os.fspath(mountpoint))


def test_probe_port_out_of_range() -> None:
    result = fusenfs("probe", "127.0.0.1:99999")
    one_line_error(result, "port 99999 out of range")
    assert result.returncode == 2


def test_log_file_that_cannot_be_written(ganesha: GaneshaServer, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    for extra in ([], ["-f"]):
        result = fusenfs(
            "mount",
            f"{ganesha.address}:{ganesha.pseudo}",
            mountpoint,
            "-o",
            f"port={ganesha.port}",
            "--log-file",
            "/nonexistent/x",
            *extra,
        )
        one_line_error(result, "/nonexistent/x", "No such file or directory")
        assert not is_mounted(os.fspath(mountpoint))


def test_foreground_mount_logs_to_its_log_file(
    ganesha: GaneshaServer, tmp_path: Path, fresh_dir: str
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    log = tmp_path / "fg.log"
    argv = fusenfs_argv(
        "mount",
        f"{ganesha.address}:{ganesha.pseudo}",
        mountpoint,
        "-o",
        f"port={ganesha.port},foreground,debug",
        "--log-file",
        log,
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(os.fspath(mountpoint)) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate(timeout=10)
            time.sleep(0.05)
        assert is_mounted(os.fspath(mountpoint))
        os.mkdir(mountpoint / fresh_dir)
        run(fusenfs_argv("umount", mountpoint), timeout=30)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "[EXCHANGE_ID]" in log.read_text()  # at DEBUG, in the file
        assert "EXCHANGE_ID" not in err  # and not on stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if is_mounted(os.fspath(mountpoint)):
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, timeout=10)


OTHER_UID = 65534


def test_a_user_who_may_not_use_dev_fuse_is_told_why(ganesha: GaneshaServer) -> None:
    """A non-root background mount: the one line carries libfuse's or fusermount3's
    reason (Permission denied on /dev/fuse, user_allow_other...), not just
    "fuse_session_mount failed".  The user keeps read access to the interpreter (under
    root's home) through the one capability CAP_DAC_READ_SEARCH."""
    home = Path(tempfile.mkdtemp(prefix="fusenfs-nonroot-"))
    try:
        home.chmod(0o755)
        mountpoint = home / "mnt"
        mountpoint.mkdir()
        os.chown(mountpoint, OTHER_UID, OTHER_UID)
        logs = home / "logs"
        logs.mkdir()
        os.chown(logs, OTHER_UID, OTHER_UID)
        argv = [
            "setpriv",
            f"--reuid={OTHER_UID}",
            f"--regid={OTHER_UID}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            *fusenfs_argv(
                "mount",
                f"{ganesha.address}:{ganesha.pseudo}",
                mountpoint,
                "-o",
                f"port={ganesha.port}",
                "--log-file",
                logs / "client.log",
            ),
        ]
        result = run(argv, timeout=MOUNT_TIMEOUT, check=False)
        if "setpriv:" in result.stderr:
            pytest.skip(f"setpriv cannot drop to uid {OTHER_UID} here: {result.stderr.strip()}")
        line = one_line_error(result, f"cannot mount on {mountpoint}")
        assert "fuse_session_mount failed" not in line, line
        fuse = Path("/dev/fuse").stat()
        if not fuse.st_mode & 0o006:
            assert "/dev/fuse" in line and "Permission denied" in line, line
        assert not is_mounted(os.fspath(mountpoint))
    finally:
        if not is_mounted(os.fspath(home / "mnt")):
            shutil.rmtree(home, ignore_errors=True)


def test_a_mount_point_in_use(mount: MountFactory, ganesha: GaneshaServer) -> None:
    m = mount()
    result = fusenfs(
        "mount", f"{ganesha.address}:{ganesha.pseudo}", m.path, "-o", f"port={ganesha.port}"
    )
    one_line_error(result, f"{m.path} is already a mount point", "unmount it first")
    assert m.is_mounted()


def test_probe_shows_the_exports_fsid_as_stats_does(
    mount: MountFactory, ganesha: GaneshaServer
) -> None:
    result = run(
        fusenfs_argv("probe", f"{ganesha.address}:{ganesha.port}", ganesha.pseudo), timeout=30
    )
    fields: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        label, _, value = line.partition("  ")
        fields.setdefault(label.strip(), []).append(value.strip())
    probed = fields[f"{ganesha.pseudo} fsid"][0]
    assert any(v.startswith(f"{ganesha.pseudo} (fsid ") for v in fields["export"]), fields
    m = mount()
    stats = json.loads(run(fusenfs_argv("stats", "--json", m.path), timeout=30).stdout)
    assert [fs["fs"] for fs in stats["filesystems"]] == [probed]
    assert fields["root fsid"][0] != f"{probed} (pseudo-file system)"

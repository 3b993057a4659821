"""Mount options through real mounts of the session's NFS-Ganesha (issue 11).

Every option either changes what the mount does as mount(8) or nfs(5) says (a test
here, or the one named beside it), or is refused with one line that names it:

- mount(8)'s generic options as kernel mount flags: noexec stops a script, ro refuses
  writes, sync puts data on the server before write(2) returns; the others show in
  /proc/self/mountinfo; mount(8)'s own options change nothing on the mount;
- hard / soft / softerr with timeo and retrans against a server that stops answering
  (``contrib.tcpproxy`` in front of Ganesha, paused with SIGSTOP: the shared Ganesha is
  never paused); intr / nointr: a waiting process can be killed either way;
- the attribute cache (ac / noac / actimeo / acregmin / acregmax / acdirmin /
  acdirmax), lookupcache, cto / nocto, rsize / wsize, nconnect, local_lock (nolock is
  tests/fuse/test_locks.py::test_nolock_keeps_locks_local), bg / fg / retry;
- the options accepted with no behaviour to show (vers=4.1, proto=tcp, sec=sys,
  clientaddr, namlen=255, intr) in one mount; the refused ones, each one line;
- ``fusenfs stats``: its per-operation figures against the COMPOUNDs counted in the
  --debug log of the same mount.

Every wait is bounded; a mount stuck on the paused proxy is killed (``killed_on_failure``)
so that the fixtures' unmount does not wait for it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer, pick_free_port
from fusenfs.cli import is_mounted
from fusenfs.statsock import read_statistics, socket_paths

from .helpers import (
    MOUNT_TIMEOUT,
    REPO,
    MiB,
    Mount,
    MountFactory,
    alive,
    drop_caches,
    fusenfs_argv,
    run,
    sha256_file,
    wait_gone,
    wait_until,
    write_random_file,
)
from .test_lifecycle import PausableProxy, killed_on_failure
from .test_locks import CONFLICT, Holder, holder

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

EXIT_USAGE = 2


@pytest.fixture
def proxy(ganesha: GaneshaServer) -> Iterator[PausableProxy]:
    """A pausable proxy in front of Ganesha; named before ``mount`` so it outlives it."""
    p = PausableProxy(f"{ganesha.address}:{ganesha.port}")
    yield p
    p.close()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for h in made:
        h.stop()


def mountinfo(path: Path) -> tuple[set[str], set[str]]:
    """(per-mount flags, super options) of the mount on ``path``, from mountinfo."""
    want = os.fspath(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        head, tail = before.split(), after.split()
        if head[4] == want:
            return set(head[5].split(",")), set(tail[2].split(","))
    raise AssertionError(f"{path} is not in /proc/self/mountinfo")


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed with exactly one ``fusenfs: ...`` line naming ``words``."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith("fusenfs: "), lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]


def stats_of(m: Mount) -> dict[str, object]:
    result = run(fusenfs_argv("stats", "--json", m.path), timeout=30)
    data: dict[str, object] = json.loads(result.stdout)
    return data


# ---------------------------------------------------------------------- mount(8) flags


def test_noexec_stops_a_script(mount: MountFactory, fresh_dir: str) -> None:
    plain = mount()
    os.mkdir(plain.path / fresh_dir)
    script = plain.path / fresh_dir / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from the mount\n")
    script.chmod(0o755)
    assert run([script], timeout=30).stdout == "hello from the mount\n"  # exec: the default

    m = mount("noexec")
    assert "noexec" in mountinfo(m.path)[0]
    with pytest.raises(PermissionError):
        subprocess.run([m.path / fresh_dir / "hello.sh"], capture_output=True, timeout=30)
    # Reading it is still fine; only running it is not.
    assert (m.path / fresh_dir / "hello.sh").read_text().startswith("#!/bin/sh")


def test_ro_refuses_writes(mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer) -> None:
    (ganesha.export_path / fresh_dir).mkdir()
    (ganesha.export_path / fresh_dir / "f").write_bytes(b"server data")
    m = mount("ro")
    assert "ro" in mountinfo(m.path)[0]
    assert (m.path / fresh_dir / "f").read_bytes() == b"server data"
    with pytest.raises(OSError) as info:
        (m.path / fresh_dir / "new").write_bytes(b"x")
    assert info.value.errno == errno.EROFS
    with pytest.raises(OSError) as info:
        os.open(m.path / fresh_dir / "f", os.O_WRONLY)
    assert info.value.errno == errno.EROFS


@pytest.mark.parametrize(
    ("options", "present", "absent"),
    [
        ("", {"rw", "nosuid", "nodev", "relatime"}, {"noexec", "sync"}),  # FUSE's default
        ("rw,exec,suid,dev", {"rw"}, {"nosuid", "nodev", "noexec"}),
        ("nosuid,nodev", {"nosuid", "nodev"}, set()),
        ("noatime", {"noatime"}, {"relatime"}),
        ("noatime,atime", {"relatime"}, {"noatime"}),
        ("relatime", {"relatime"}, {"noatime"}),
        ("sync", {"sync"}, set()),
        ("sync,async", set(), {"sync"}),
        ("dirsync", {"dirsync"}, set()),
        ("user", {"noexec", "nosuid", "nodev"}, set()),  # mount(8): user implies them
        ("users,exec,suid", {"nodev"}, {"noexec", "nosuid"}),
        # mount(8)'s own: accepted, nothing changes on the mount
        (
            "_netdev,nofail,noauto,auto,defaults,nouser,x-systemd.automount,comment=x",
            {"rw", "nosuid", "nodev", "relatime"},
            {"noexec", "sync", "ro"},
        ),
    ],
)
def test_mount_flags_show_in_mountinfo(
    mount: MountFactory, options: str, present: set[str], absent: set[str]
) -> None:
    m = mount(options)
    flags, super_options = mountinfo(m.path)
    both = flags | super_options
    assert present <= both, f"-o {options}: {sorted(both)}"
    assert not absent & both, f"-o {options}: {sorted(both)}"


def test_suid_and_nosuid_on_a_setuid_program(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer
) -> None:
    """A setuid-root copy of id(1) on the export: suid runs it as root, nosuid as the
    user who runs it."""
    (ganesha.export_path / fresh_dir).mkdir()
    program = ganesha.export_path / fresh_dir / "id-setuid"
    program.write_bytes(Path("/usr/bin/id").read_bytes())
    os.chown(program, 0, 0)
    program.chmod(0o4755)
    (ganesha.export_path / fresh_dir).chmod(0o755)
    uid = 4243
    for options, expected in (("suid,allow_other", "0"), ("nosuid,allow_other", str(uid))):
        m = mount(options, public=True)
        result = run(
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                m.path / fresh_dir / "id-setuid",
                "-u",
            ],
            timeout=30,
        )
        assert result.stdout.strip() == expected, f"-o {options}: {result}"


def test_sync_puts_data_on_the_server_before_write_returns(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer
) -> None:
    m = mount("sync")
    os.mkdir(m.path / fresh_dir)
    server = ganesha.export_path / fresh_dir / "f"
    data = os.urandom(200 * 1024)
    fd = os.open(m.path / fresh_dir / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for i in range(3):
            assert os.write(fd, data) == len(data)
            # Still open, nothing asked through the mount: on the server already.
            assert server.read_bytes() == data * (i + 1)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- hard and soft


def _file_for_reading(m: Mount, ganesha: GaneshaServer, fresh_dir: str, size: int) -> Path:
    """A file written on the server's side (not cached by the mount), in ``fresh_dir``."""
    (ganesha.export_path / fresh_dir).mkdir(exist_ok=True)
    write_random_file(ganesha.export_path / fresh_dir / "data.bin", size)
    return m.path / fresh_dir / "data.bin"


@pytest.mark.parametrize(("how", "expected"), [("soft", errno.EIO), ("softerr", errno.ETIMEDOUT)])
def test_soft_read_fails_within_the_budget_and_works_again(
    proxy: PausableProxy,
    mount: MountFactory,
    ganesha: GaneshaServer,
    fresh_dir: str,
    how: str,
    expected: int,
) -> None:
    timeo, retrans = 1.0, 2  # timeo=10 tenths
    m = mount(f"{how},timeo=10,retrans={retrans}", port=proxy.port)
    path = _file_for_reading(m, ganesha, fresh_dir, 4 * MiB)
    # OPEN now, so that what waits below is a READ; O_DIRECT makes it one READ request (a
    # buffered read is a read-ahead and then, when that fails, the page read the kernel
    # tries again: two requests, each waiting for its own budget).
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, 65536)  # page-aligned, as O_DIRECT wants
    try:
        with killed_on_failure(m):
            proxy.pause()
            started = time.monotonic()
            with pytest.raises(OSError) as info:
                os.preadv(fd, [buffer], 0)
            elapsed = time.monotonic() - started
            assert info.value.errno == expected, info.value
            # nfs(5): a soft call fails once retrans re-sends went unanswered.
            assert timeo * retrans * 0.9 <= elapsed <= timeo * (retrans + 1) + 3, elapsed
            proxy.resume()
            assert wait_until(lambda: _readable(fd, buffer), timeout=30), "no recovery"
    finally:
        os.close(fd)
        buffer.close()
    assert sha256_file(path) == sha256_file(ganesha.export_path / fresh_dir / "data.bin")
    print(f"{how}: {errno.errorcode[expected]} after {elapsed:.2f} s")
    ops = stats_of(m)["operations"]
    assert isinstance(ops, dict)
    assert sum(op["timeouts"] for op in ops.values()) >= retrans  # minor timeouts counted


def _readable(fd: int, buffer: mmap.mmap) -> bool:
    try:
        return os.preadv(fd, [buffer], 0) == len(buffer)
    except OSError:
        return False


def test_hard_read_waits_and_completes_when_the_server_returns(
    proxy: PausableProxy, mount: MountFactory, ganesha: GaneshaServer, fresh_dir: str
) -> None:
    """hard (the default) with nointr: the read waits past the budget, says "not
    responding, still trying" and "OK" once each, and completes; a process that waits
    can still be killed (SIGKILL), as on Linux since 2.6.25."""
    budget = 1.0 * (1 + 1)  # timeo=10, retrans=1
    m = mount("hard,nointr,timeo=10,retrans=1", port=proxy.port)
    path = _file_for_reading(m, ganesha, fresh_dir, 4 * MiB)
    (ganesha.export_path / fresh_dir / "other.bin").write_bytes(os.urandom(MiB))
    expected = (ganesha.export_path / fresh_dir / "data.bin").read_bytes()[:65536]
    fd = os.open(path, os.O_RDONLY)
    got: list[bytes | OSError] = []

    def reader() -> None:
        try:
            got.append(os.read(fd, 65536))
        except OSError as e:
            got.append(e)

    try:
        with killed_on_failure(m):
            proxy.pause()
            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            cat = subprocess.Popen(
                ["cat", m.path / fresh_dir / "other.bin"], stdout=subprocess.DEVNULL
            )
            time.sleep(budget * 2 + 1.5)
            assert thread.is_alive(), f"a hard read returned while the server was away: {got}"
            assert cat.poll() is None, "cat should be waiting for the paused server"
            killed = time.monotonic()
            cat.kill()
            cat.wait(timeout=10)
            assert time.monotonic() - killed < 1.0
            proxy.resume()
            thread.join(timeout=30)
            assert not thread.is_alive(), "the read did not complete after the server returned"
    finally:
        os.close(fd)
    assert got == [expected]
    warnings = [line for line in m.log_text().splitlines() if " session WARNING " in line]
    assert sum("not responding, still trying" in line for line in warnings) == 1, warnings
    assert sum(line.endswith(" OK") for line in warnings) == 1, warnings


# ---------------------------------------------------------------------- caches


@pytest.mark.parametrize(
    ("options", "cached"),
    [
        ("actimeo=30", True),
        ("acregmin=30,acregmax=30", True),
        ("ac,acregmin=30,acregmax=30", True),
        ("actimeo=0", False),
        ("acregmin=0,acregmax=0", False),
        ("actimeo=30,noac", False),  # nfs(5): noac wins
    ],
)
def test_file_attribute_cache(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer, options: str, cached: bool
) -> None:
    (ganesha.export_path / fresh_dir).mkdir()
    server = ganesha.export_path / fresh_dir / "f"
    server.write_bytes(b"1")
    m = mount(options)
    f = m.path / fresh_dir / "f"
    assert f.stat().st_size == 1
    with open(server, "ab") as out:
        out.write(b"22")
    size = f.stat().st_size
    assert size == (1 if cached else 3), f"-o {options}: size {size}"


@pytest.mark.parametrize(
    ("options", "cached"),
    [
        ("acdirmin=30,acdirmax=30", True),
        ("acdirmin=0,acdirmax=0", False),
        ("noac", False),
    ],
)
def test_directory_attribute_cache(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer, options: str, cached: bool
) -> None:
    (ganesha.export_path / fresh_dir).mkdir()
    m = mount(options)
    d = m.path / fresh_dir
    before = d.stat().st_nlink
    (ganesha.export_path / fresh_dir / "sub").mkdir()  # the parent gains a link
    after = d.stat().st_nlink
    assert after == (before if cached else before + 1), f"-o {options}: {before} -> {after}"


@pytest.mark.parametrize(
    ("lookupcache", "negative_cached"), [("all", True), ("positive", False), ("none", False)]
)
def test_lookupcache(
    mount: MountFactory,
    fresh_dir: str,
    ganesha: GaneshaServer,
    lookupcache: str,
    negative_cached: bool,
) -> None:
    """nfs(5): lookupcache=all remembers that a name does not exist (for the directory's
    attribute cache time); positive and none ask again."""
    (ganesha.export_path / fresh_dir).mkdir()
    m = mount(f"lookupcache={lookupcache},acdirmin=30,acdirmax=30")
    name = m.path / fresh_dir / "appears-later"
    assert not name.exists()
    (ganesha.export_path / fresh_dir / "appears-later").write_bytes(b"now")
    assert name.exists() is not negative_cached, f"lookupcache={lookupcache}"


@pytest.mark.parametrize(("lookupcache", "positive_cached"), [("all", True), ("none", False)])
def test_lookupcache_none_forgets_names_found(
    mount: MountFactory,
    fresh_dir: str,
    lookupcache: str,
    positive_cached: bool,
) -> None:
    """nfs(5): lookupcache=none revalidates every name, so a file renamed away by
    another client is gone at once; with the default the name found is kept for the
    attribute cache time (the old name still stats)."""
    other = mount("")  # another client: the rename goes through the server
    (other.path / fresh_dir).mkdir()
    (other.path / fresh_dir / "moves").write_bytes(b"x")
    m = mount(f"lookupcache={lookupcache},actimeo=30")
    name = m.path / fresh_dir / "moves"
    assert name.exists()
    os.rename(other.path / fresh_dir / "moves", other.path / fresh_dir / "moved")
    assert name.exists() is positive_cached, f"lookupcache={lookupcache}"


def test_namlen_limits_names(mount: MountFactory, fresh_dir: str) -> None:
    """nfs(5) namlen=N: statfs reports N as the longest name; a longer one gets
    ENAMETOOLONG from the client without reaching the server."""
    m = mount("namlen=100")
    (m.path / fresh_dir).mkdir()
    assert os.statvfs(m.path).f_namemax == 100
    (m.path / fresh_dir / ("a" * 100)).write_bytes(b"ok")
    with pytest.raises(OSError) as info:
        (m.path / fresh_dir / ("a" * 101)).write_bytes(b"too long")
    assert info.value.errno == errno.ENAMETOOLONG


@pytest.mark.parametrize(("options", "sees_change"), [("", True), ("nocto", False)])
def test_close_to_open(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer, options: str, sees_change: bool
) -> None:
    """cto (the default): an open revalidates and drops cached data another client
    changed; nocto: an open within the attribute cache time trusts what is cached."""
    (ganesha.export_path / fresh_dir).mkdir()
    server = ganesha.export_path / fresh_dir / "f"
    server.write_bytes(b"aaaa")
    m = mount(",".join(filter(None, ["actimeo=30", options])))
    f = m.path / fresh_dir / "f"
    for _ in range(3):  # opened, read and cached; the kernel's attributes settled too
        assert f.read_bytes() == b"aaaa"
    time.sleep(0.05)
    server.write_bytes(b"bbbb")  # the same size; change and mtime move
    assert f.read_bytes() == (b"bbbb" if sees_change else b"aaaa"), f"-o {options}"


# ---------------------------------------------------------------------- transfers


def test_rsize_and_wsize_cap_reads_and_writes(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer
) -> None:
    m = mount("rsize=65536,wsize=32768")
    assert "maxread=65536 maxwrite=32768" in m.log_text()
    path = _file_for_reading(m, ganesha, fresh_dir, MiB)
    drop_caches()
    assert sha256_file(path) == sha256_file(ganesha.export_path / fresh_dir / "data.bin")
    written = m.path / fresh_dir / "written.bin"
    with open(written, "wb") as f:
        f.write(os.urandom(512 * 1024))
        f.flush()
        os.fsync(f.fileno())
    ops = stats_of(m)["operations"]
    assert isinstance(ops, dict)
    read, write = ops["READ"], ops["WRITE"]
    assert read["ops"] >= 16 and read["bytes_received"] / read["ops"] <= 65536 + 512, read
    assert write["ops"] >= 16 and write["bytes_sent"] / write["ops"] <= 32768 + 512, write
    assert "rsize=65536" in stats_of(m)["mount"]["options"]  # type: ignore[index]


def _connections(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to 127.0.0.1:``port``."""
    result = run(["ss", "-Htnp", "state", "established", "dst", f"127.0.0.1:{port}"], timeout=10)
    return sum(f"pid={pid}," in line for line in result.stdout.splitlines())


@pytest.mark.parametrize("n", [1, 4])
def test_nconnect_opens_n_connections(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer, n: int
) -> None:
    m = mount(f"nconnect={n}")
    path = _file_for_reading(m, ganesha, fresh_dir, 16 * MiB)
    drop_caches()
    assert sha256_file(path) == sha256_file(ganesha.export_path / fresh_dir / "data.bin")
    assert wait_until(lambda: _connections(m.daemon_pid, ganesha.port) == n, timeout=10), (
        f"nconnect={n}: {_connections(m.daemon_pid, ganesha.port)} connections"
    )


@pytest.mark.parametrize(("local_lock", "local"), [("posix", {"posix"}), ("flock", {"flock"})])
def test_local_lock_keeps_those_locks_local(
    mount: MountFactory,
    fresh_dir: str,
    holders: list[Holder],
    local_lock: str,
    local: set[str],
) -> None:
    """nfs(5) local_lock=posix|flock: those locks stay on this client, the others reach
    the server (where another client's conflicting lock stops them); nolock (=all) is
    test_locks.py::test_nolock_keeps_locks_local."""
    other = mount()
    os.mkdir(other.path / fresh_dir)
    (other.path / fresh_dir / "f").write_bytes(b"z")
    m = mount(f"local_lock={local_lock}")
    theirs = holder(holders, other.path / fresh_dir / "f")
    mine = holder(holders, m.path / fresh_dir / "f")
    # A whole-file write lock held at the server by the other client: an flock() that
    # reaches the server conflicts with it too (NFS has byte-range locks only).
    assert theirs.ask("setlk w 0 0") == "ok"
    posix = mine.ask("setlk w 0 0")
    flock = mine.ask("flock ex-nb")
    assert (posix == "ok") is ("posix" in local), f"fcntl lock with {local_lock}: {posix}"
    assert (flock == "ok") is ("flock" in local), f"flock with {local_lock}: {flock}"
    for answer in (posix, flock):
        assert answer == "ok" or answer.split()[-1] in CONFLICT, answer


# ---------------------------------------------------------------------- bg, fg, retry


@contextlib.contextmanager
def proxy_on(port: int, target: str) -> Iterator[subprocess.Popen[str]]:
    """contrib.tcpproxy listening on 127.0.0.1:``port`` (a mount's server coming up)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "contrib.tcpproxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--target",
            target,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the proxy prints it or dies
        assert line.startswith("listening "), line
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def cleaned_up(mountpoint: Path) -> Iterator[list[int]]:
    """Whatever mount processes a test started for ``mountpoint`` (pids it appends):
    stopped by pid, and the mount point unmounted, whatever happened."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        if is_mounted(os.fspath(mountpoint)):
            run(fusenfs_argv("umount", mountpoint), timeout=60, check=False)
        for pid in pids:
            if alive(pid) and not wait_gone(pid, 10):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if is_mounted(os.fspath(mountpoint)):
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, timeout=10)


def _mount_process(mountpoint: Path) -> int | None:
    from fusenfs.runner import read_mount_record

    record = read_mount_record(os.fspath(mountpoint))
    return None if record is None else record.pid


def test_fg_retry_waits_for_the_server_to_come(
    ganesha: GaneshaServer, tmp_path: Path, fresh_dir: str
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    port = pick_free_port("127.0.0.1")
    argv = fusenfs_argv(
        "mount",
        "127.0.0.1:/export",
        mountpoint,
        "-o",
        f"port={port},retry=1",
        "--log-file",
        tmp_path / "client.log",
    )
    with cleaned_up(mountpoint) as pids:
        started = time.monotonic()
        command = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=REPO)
        pids.append(command.pid)
        time.sleep(3.0)
        assert command.poll() is None, "fg: the mount command returned while it retries"
        with proxy_on(port, f"{ganesha.address}:{ganesha.port}"):
            _out, err = command.communicate(timeout=MOUNT_TIMEOUT)
            elapsed = time.monotonic() - started
            assert command.returncode == 0, err
            assert is_mounted(os.fspath(mountpoint))
            pid = _mount_process(mountpoint)
            assert pid is not None
            pids.append(pid)
            os.mkdir(mountpoint / fresh_dir)
            assert (ganesha.export_path / fresh_dir).is_dir()
            run(fusenfs_argv("umount", mountpoint), timeout=60)
    assert elapsed >= 3.0
    assert "trying again" in (tmp_path / "client.log").read_text()


def test_retry_0_fails_at_once(tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    port = pick_free_port("127.0.0.1")
    started = time.monotonic()
    result = run(
        fusenfs_argv("mount", "127.0.0.1:/export", mountpoint, "-o", f"port={port},retry=0"),
        timeout=60,
        check=False,
    )
    one_line_error(result, f"127.0.0.1:{port}", "Connection refused")
    assert time.monotonic() - started < 10
    assert not is_mounted(os.fspath(mountpoint))


def test_bg_returns_and_mounts_when_the_server_comes(
    ganesha: GaneshaServer, tmp_path: Path, fresh_dir: str
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    port = pick_free_port("127.0.0.1")
    with cleaned_up(mountpoint) as pids:
        started = time.monotonic()
        result = run(
            fusenfs_argv(
                "mount",
                "127.0.0.1:/export",
                mountpoint,
                "-o",
                f"port={port},bg,retry=1",
                "--log-file",
                tmp_path / "client.log",
            ),
            timeout=60,
            check=False,
        )
        found = re.search(r"\(pid (\d+),", result.stderr)
        if found:
            pids.append(int(found.group(1)))
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 10
        line = one_line_error(
            subprocess.CompletedProcess(result.args, 1, "", result.stderr),
            "retrying in the background",
            "Connection refused",
        )
        assert found, line
        assert not is_mounted(os.fspath(mountpoint))
        with proxy_on(port, f"{ganesha.address}:{ganesha.port}"):
            assert wait_until(lambda: is_mounted(os.fspath(mountpoint)), timeout=40), (
                tmp_path / "client.log"
            ).read_text()
            os.mkdir(mountpoint / fresh_dir)
            assert (ganesha.export_path / fresh_dir).is_dir()
            run(fusenfs_argv("umount", mountpoint), timeout=60)
            assert wait_gone(pids[0], 15)
    assert "background mount of" in (tmp_path / "client.log").read_text()


# ---------------------------------------------------------------------- accepted, refused


def test_accepted_options_without_behaviour_to_show(mount: MountFactory, fresh_dir: str) -> None:
    m = mount(
        "vers=4.1,nfsvers=4.1,minorversion=1,proto=tcp,tcp,intr,sec=sys,"
        "clientaddr=127.0.0.1,namlen=255,fg,lock,ac,cto,noresvport"
    )
    os.mkdir(m.path / fresh_dir)
    assert os.statvfs(m.path).f_namemax == 255
    options = stats_of(m)["mount"]["options"]  # type: ignore[index]
    for word in ("vers=4.1", "proto=tcp", "sec=sys", "clientaddr=127.0.0.1", "namlen=255"):
        assert word in options.split(","), options


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ("vers=3", ["vers=3", "4.1"]),
        ("nfsvers=4.0", ["nfsvers=4.0", "NFSv4.0"]),
        ("vers=4.2", ["vers=4.2", "not supported yet"]),
        ("minorversion=0", ["minorversion=0"]),
        ("minorversion=2", ["minorversion=2"]),
        ("proto=udp", ["proto=udp", "TCP only"]),
        ("proto=rdma", ["proto=rdma"]),
        ("udp", ["udp"]),
        ("sec=krb5:krb5", ["sec=krb5:krb5", "given twice"]),
        ("sec=krb9", ["sec=krb9", "unknown flavour"]),
        ("sec=none", ["sec=none", "unknown flavour"]),
        ("keytab=relative.keytab", ["keytab", "absolute path"]),
        ("keytab=/etc/krb5.keytab", ["keytab=/etc/krb5.keytab", "no Kerberos flavour"]),
        ("rsize=1_048_576", ["rsize", "1_048_576"]),
        ("rsize=+65536", ["rsize", "+65536"]),
        ("wsize=64k", ["wsize", "64k"]),
        ("timeo=-1", ["timeo"]),
        ("retrans=x", ["retrans"]),
        ("nconnect=17", ["nconnect=17"]),
        ("clientaddr=nowhere", ["clientaddr"]),
        ("retry=soon", ["retry"]),
        ("lookupcache=some", ["lookupcache=some"]),
        ("local_lock=some", ["local_lock=some"]),
        ("strictatime", ["strictatime"]),
        ("mountport=635", ["mountport"]),
        ("bg,foreground", ["bg", "foreground"]),
        ("hard=1", ["hard"]),
    ],
)
def test_refused_options_one_line(tmp_path: Path, options: str, names: list[str]) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = run(
        fusenfs_argv("mount", "127.0.0.1:/export", mountpoint, "-o", f"port=1,{options}"),
        timeout=30,
        check=False,
    )
    one_line_error(result, *names)
    assert result.returncode == EXIT_USAGE
    assert not is_mounted(os.fspath(mountpoint))


# ---------------------------------------------------------------------- fusenfs stats

#: A --debug line for a COMPOUND sent: ``-> HOST:PORT [session=... slot=N seq=N ]
#: [OPS] N B`` (session/session.py).
SENT = re.compile(r" -> \S+ (?:session=\S+ slot=\d+ seq=\d+ )?\[([A-Z_ ]+)\] (\d+) B$")
SETUP_OPS = {"SEQUENCE", "PUTFH", "PUTROOTFH", "PUTPUBFH", "SAVEFH", "RESTOREFH"}


def main_op(names: list[str]) -> str:
    """The operation a COMPOUND is counted under: its first that does more than set up."""
    return next((n for n in names if n not in SETUP_OPS), "SEQUENCE")


def test_stats_per_operation_match_the_debug_log(
    mount: MountFactory, fresh_dir: str, ganesha: GaneshaServer
) -> None:
    m = mount("debug")
    d = m.path / fresh_dir
    os.mkdir(d)
    for i in range(5):
        (d / f"f{i}").write_bytes(os.urandom(100_000 + i))
    os.rename(d / "f0", d / "renamed")
    os.unlink(d / "f1")
    assert sorted(os.listdir(d)) == ["f2", "f3", "f4", "renamed"]
    drop_caches()
    for name in ("f2", "f3"):
        assert len((d / name).read_bytes()) > 100_000
    assert not (d / "missing").exists()
    data = stats_of(m)
    counted: Counter[str] = Counter()
    sent_bytes: Counter[str] = Counter()
    for line in m.log_text().splitlines():
        found = SENT.search(line)
        if found:
            op = main_op(found.group(1).split())
            counted[op] += 1
            sent_bytes[op] += int(found.group(2))
    ops = data["operations"]
    assert isinstance(ops, dict)
    for op in set(ops) | set(counted):
        if op == "SEQUENCE":  # a lease renewal may be logged after the stats were read
            assert counted[op] >= ops.get(op, {"ops": 0})["ops"]
            continue
        figures = ops.get(op)
        assert figures is not None, f"{op}: {counted[op]} in the log, none in stats"
        assert figures["ops"] == counted[op], f"{op}: stats {figures}, log {counted[op]}"
        # No re-sends here: one transmission each, and the bytes the log shows.
        assert figures["transmissions"] == figures["ops"], (op, figures)
        assert figures["bytes_sent"] == sent_bytes[op], (op, figures, sent_bytes[op])
        assert figures["rtt_ms_max"] <= figures["exec_ms_max"] + 0.5, (op, figures)
    # (A rename is PUTFH SAVEFH PUTFH RENAME: counted under RENAME.)
    for op in ("OPEN", "READ", "WRITE", "REMOVE", "READDIR", "LOOKUP", "CREATE", "CLOSE"):
        assert ops.get(op, {"ops": 0})["ops"] > 0, f"no {op} counted: {sorted(ops)}"

    text = run(fusenfs_argv("stats", m.path), timeout=30).stdout
    assert "per-operation statistics" in text
    assert re.search(r"^\s+READ\s+\d+", text, re.M), text
    assert "opts: " in text and ",hard," in text
    listing = run(fusenfs_argv("stats"), timeout=30).stdout
    assert any(
        line.startswith(f"{ganesha.address}:{ganesha.pseudo} on {m.path} ")
        for line in listing.splitlines()
    ), listing
    listed = json.loads(run(fusenfs_argv("stats", "--json"), timeout=30).stdout)
    mine = [e for e in listed if e["mountpoint"] == os.fspath(m.path)]
    assert len(mine) == 1 and mine[0]["pid"] == m.daemon_pid, listed


def test_no_extended_attributes_and_the_statistics_on_a_private_socket(
    mount: MountFactory, fresh_dir: str
) -> None:
    """NFSv4.1 has no extended attributes: the mount answers getxattr and listxattr
    with ENOSYS, so the kernel answers them itself from then on (EOPNOTSUPP) and
    stops asking the mount for ``security.capability`` before each write.  The
    statistics are on a socket beside the mount record, the mounting user's alone,
    gone with the mount."""
    m = mount()
    f = m.path / fresh_dir / "f"
    f.parent.mkdir()
    f.write_bytes(b"x" * 4096)
    for target, name in ((f, "security.capability"), (f, "user.a"), (m.path, "user.b")):
        with pytest.raises(OSError) as info:
            os.getxattr(target, name)
        assert info.value.errno == errno.EOPNOTSUPP, (target, name, info.value)
    with pytest.raises(OSError) as info:
        os.listxattr(f)
    assert info.value.errno == errno.EOPNOTSUPP
    with open(f, "r+b") as out:
        out.write(b"y" * 4096)  # writes go on as before

    (sock,) = [p for p in socket_paths(os.fspath(m.path)) if p.exists()]
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert read_statistics(os.fspath(m.path), 10)["mount"]["pid"] == m.daemon_pid
    assert m.unmount() == []
    assert not sock.exists()

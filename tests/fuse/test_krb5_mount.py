"""Kerberos mounts (issue 13) against NFS-Ganesha with a local KDC, through FUSE.

The realm is ``contrib.krb5``'s shared one (one per test session: ``nfs/localhost`` for
Ganesha, ``host/localhost`` as the client's machine credential, users alice and bob).
The mounts name the server ``localhost`` (the GSS target is ``nfs@localhost``) and
give the machine credential with ``-o keytab=...,principal=host/localhost``.

- each of sec=krb5, krb5i and krb5p mounts, and a 64 MiB file is copied in and out
  byte-identically; the mount time and both copies' MB/s are printed (``-s``), not
  asserted, beside the same for AUTH_SYS (sec=krb5p:sys on a sys-only export);
- a mount of the pseudo-file system's root with sec=sys:krb5p crosses into the
  Kerberos export: NFS4ERR_WRONGSEC, SECINFO, krb5p there, sys above;
- two local users with their own ticket caches (``KRB5CCNAME``) on one allow_other
  mount: each one's files belong to them as the server maps them, and the server
  enforces each one's identity; a user without tickets gets EACCES at once, the log
  says so in one line, and the mount stays up; at unmount their contexts are
  destroyed;
- sec=krb5p:sys against an export that takes sys only falls back to sys; sec=krb5
  there is a one-line mount error naming both lists; a missing machine credential is
  a one-line error saying how to provide it;
- ``fusenfs probe`` lists each export's flavours.

Ganesha maps principals to local users through an idmapd.conf of its own
(``IdmapConf``: ``Local-Realms`` = the test realm), so alice@FUSENFS.TEST is the local
user alice.  The local users alice and bob are created for the module (``useradd``)
when they do not exist, and removed afterwards (only those this module created).
Everything started is stopped by its own handle: the KDC and Ganesha by PID, mounts by
``fusenfs umount`` (then SIGKILL of their daemon and ``fusermount3 -uz`` if needed).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaError, GaneshaKrb5, GaneshaServer, unavailable_reason
from contrib.krb5 import FusenfsRealm, realm_for_tests

from .helpers import (
    MOUNT_TIMEOUT,
    REPO,
    MiB,
    Mount,
    daemon_pids,
    fuse_unavailable,
    fusenfs_argv,
    in_ci,
    run,
    sha256_file,
    wait_until,
    write_random_file,
)

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]

EXIT_FAILURE = 32  # mount(8): mount failure
COPY_SIZE = 64 * MiB
USERS = ("alice", "bob")
#: A uid with no passwd entry, no ticket cache and no KRB5CCNAME.
NO_CREDS_UID = 29977
#: Seconds a command run as a user may take.
USER_TIMEOUT = 60.0


# ====================================================================== fixtures
def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def krb5_realm(request: pytest.FixtureRequest) -> FusenfsRealm:
    """The throw-away realm (contrib.krb5.shared_realm), one per test session."""
    return realm_for_tests(request.config)


@pytest.fixture(scope="module")
def local_users() -> Iterator[dict[str, pwd.struct_passwd]]:
    """Local users alice and bob (made with useradd if missing, removed afterwards)."""
    made: list[str] = []
    users: dict[str, pwd.struct_passwd] = {}
    try:
        for name in USERS:
            try:
                users[name] = pwd.getpwnam(name)
            except KeyError:
                run(
                    ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                    timeout=30,
                )
                made.append(name)
                users[name] = pwd.getpwnam(name)
            assert users[name].pw_uid != 0, f"{name} is root"
        yield users
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, timeout=30, check=False)


def idmapd_conf(realm: FusenfsRealm) -> Path:
    """An idmapd.conf for Ganesha: principals of the test realm are local users."""
    path = realm.workdir / "idmapd.conf"
    path.write_text(
        "[General]\n"
        "Domain = localdomain\n"
        f"Local-Realms = {realm.realm}\n"
        "[Mapping]\n"
        "Nobody-User = nobody\n"
        "Nobody-Group = nogroup\n"
        "[Translation]\n"
        "Method = nsswitch\n"
    )
    return path


def start_ganesha(realm: FusenfsRealm, sectypes: tuple[str, ...]) -> GaneshaServer:
    reason = unavailable_reason() or fuse_unavailable()
    if reason is not None:
        _skip_or_fail(reason)
    assert realm.nfs_keytab is not None
    server = GaneshaServer(
        krb5=GaneshaKrb5.from_realm(realm, realm.nfs_keytab, sectypes=sectypes),
        nfsv4_options={"IdmapConf": str(idmapd_conf(realm))},
    )
    try:
        server.start()
    except GaneshaError as err:
        server.cleanup()
        pytest.fail(f"could not start NFS-Ganesha with Kerberos: {err}", pytrace=False)
    # Root's requests go with the machine credential: a principal Ganesha may map to
    # root or to nobody (idmapping); either may create at the top.
    os.chmod(server.export_path, 0o1777)
    server.wait_grace_over()
    return server


@pytest.fixture(scope="module")
def krb5_ganesha(krb5_realm: FusenfsRealm) -> Iterator[GaneshaServer]:
    """Ganesha whose export takes krb5, krb5i and krb5p (not sys)."""
    server = start_ganesha(krb5_realm, ("krb5", "krb5i", "krb5p"))
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def sys_ganesha(krb5_realm: FusenfsRealm) -> Iterator[GaneshaServer]:
    """Ganesha with Kerberos on, whose export takes sys only."""
    server = start_ganesha(krb5_realm, ("sys",))
    yield server
    server.cleanup()


def machine_options(realm: FusenfsRealm) -> str:
    assert realm.host_keytab is not None
    return f"keytab={realm.host_keytab.path},principal=host/localhost"


@dataclass
class Mounted:
    mount: Mount
    seconds: float  # how long ``fusenfs mount`` took


MountKrb5 = Callable[..., Mounted]


@pytest.fixture
def krb5_mount(krb5_realm: FusenfsRealm, tmp_path: Path) -> Iterator[MountKrb5]:
    """``krb5_mount(server, "sec=krb5p", public=False, path=None)``: ``fusenfs mount
    localhost:PATH`` (the export by default) with the realm's machine credential;
    each mount is unmounted after the test (a failed unmount fails the test, after a
    forced clean-up)."""
    made: list[Mount] = []
    publics: list[Path] = []

    def make(
        server: GaneshaServer, options: str, *, public: bool = False, path: str | None = None
    ) -> Mounted:
        if public:
            outer = Path(tempfile.mkdtemp(prefix="fusenfs-krb5-public-"))
            outer.chmod(0o755)  # other users must reach the mount point
            publics.append(outer)
            mountpoint = outer / f"mnt{len(made)}"
        else:
            mountpoint = tmp_path / f"mnt{len(made)}"
        mountpoint.mkdir()
        log_path = tmp_path / f"client{len(made)}.log"
        opts = f"port={server.port},{machine_options(krb5_realm)},{options}"
        argv = fusenfs_argv(
            "mount",
            f"localhost:{server.pseudo if path is None else path}",
            mountpoint,
            "-o",
            opts,
            "--log-file",
            log_path,
        )
        started = time.monotonic()
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            for pid in daemon_pids(mountpoint):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, timeout=10)
            pytest.fail(f"fusenfs mount -o {opts} did not return in {MOUNT_TIMEOUT} s")
        seconds = time.monotonic() - started
        if result.returncode != 0:
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            pytest.fail(f"fusenfs mount -o {opts} failed: {result.stderr.strip()}\n{log}")
        pids = daemon_pids(mountpoint)
        m = Mount(mountpoint, log_path, opts, pids[0] if pids else -1, server.port)
        made.append(m)
        assert len(pids) == 1, f"expected one daemon serving {mountpoint}, found {pids}"
        m.start_watchdog()
        return Mounted(m, seconds)

    yield make

    problems: list[str] = []
    for m in reversed(made):
        problems.extend(m.unmount())
    for outer in publics:
        if not any(m.is_mounted() for m in made if outer in m.path.parents):
            shutil.rmtree(outer, ignore_errors=True)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def server_dir(krb5_ganesha: GaneshaServer) -> Iterator[str]:
    """A fresh directory at the top of the Kerberos export, sticky and world-writable
    (made on the server's side), removed afterwards; its name."""
    name = f"krb5-{uuid.uuid4().hex[:8]}"
    path = krb5_ganesha.export_path / name
    path.mkdir()
    path.chmod(0o1777)
    yield name
    shutil.rmtree(path, ignore_errors=True)


def as_user(
    uid: int, gid: int, argv: list[str], ccache: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``uid``:``gid`` (no supplementary groups), with ``KRB5CCNAME``
    set to ``ccache`` or not set at all; bounded by ``USER_TIMEOUT``."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    if ccache is not None:
        env["KRB5CCNAME"] = ccache
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=USER_TIMEOUT, env=env, cwd="/"
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} did not finish in {USER_TIMEOUT} s (a hang)")


def drop_page_cache() -> None:
    """Forget cached file data too, so a read comes from the server."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


# ====================================================================== tests
@pytest.mark.parametrize(
    ("sec", "flavour", "server_fixture"),
    [
        ("krb5", "krb5", "krb5_ganesha"),
        ("krb5i", "krb5i", "krb5_ganesha"),
        ("krb5p", "krb5p", "krb5_ganesha"),
        ("krb5p:sys", "sys", "sys_ganesha"),  # the baseline: AUTH_SYS, same server build
    ],
)
def test_copy_64_mib_in_and_out(
    request: pytest.FixtureRequest,
    krb5_mount: MountKrb5,
    tmp_path: Path,
    sec: str,
    flavour: str,
    server_fixture: str,
) -> None:
    """A 64 MiB file copied in (cp) arrives byte-identical on the server; copied out
    again after the page cache is dropped, it is byte-identical here."""
    server: GaneshaServer = request.getfixturevalue(server_fixture)
    mounted = krb5_mount(server, f"sec={sec}")
    m = mounted.mount
    assert f"flavour {flavour};" in m.log_text(), m.log_text()
    source = tmp_path / "source.bin"
    digest = write_random_file(source, COPY_SIZE)
    name = f"big-{uuid.uuid4().hex[:8]}.bin"
    target = m.path / name
    started = time.monotonic()
    run(["cp", source, target], timeout=300)
    copied_in = time.monotonic() - started
    assert sha256_file(server.export_path / name) == digest
    drop_page_cache()
    back = tmp_path / "back.bin"
    started = time.monotonic()
    run(["cp", target, back], timeout=300)
    copied_out = time.monotonic() - started
    assert sha256_file(back) == digest
    os.unlink(target)
    mb = COPY_SIZE / 1e6
    print(
        f"\nsec={sec} ({flavour}): mount {mounted.seconds:.2f} s; 64 MiB in "
        f"{copied_in:.2f} s ({mb / copied_in:.0f} MB/s), out {copied_out:.2f} s "
        f"({mb / copied_out:.0f} MB/s)"
    )


def test_each_user_with_their_own_tickets(
    krb5_realm: FusenfsRealm,
    krb5_ganesha: GaneshaServer,
    krb5_mount: MountKrb5,
    server_dir: str,
    local_users: dict[str, pwd.struct_passwd],
    tmp_path: Path,
) -> None:
    """alice and bob on one allow_other krb5i mount, each with a ticket cache of their
    own named by KRB5CCNAME: each file belongs to its creator on the server and through
    the mount, and bob may not write alice's file (the server sees bob)."""
    m = krb5_mount(krb5_ganesha, "sec=krb5i,allow_other", public=True).mount
    caches: dict[str, str] = {}
    for name, pw in local_users.items():
        caches[name] = krb5_realm.kinit(
            name, ccache=tmp_path / f"{name}.ccache", owner=(pw.pw_uid, pw.pw_gid)
        )
    for name, pw in local_users.items():
        path = f"{m.path}/{server_dir}/{name}.txt"
        done = as_user(pw.pw_uid, pw.pw_gid, ["sh", "-c", f"echo {name} > {path}"], caches[name])
        assert done.returncode == 0, f"{name}: {done.stderr}\n{m.log_text()}"
    for name, pw in local_users.items():
        on_server = os.stat(krb5_ganesha.export_path / server_dir / f"{name}.txt")
        assert (on_server.st_uid, on_server.st_gid) == (pw.pw_uid, pw.pw_gid), name
        through_mount = os.stat(m.path / server_dir / f"{name}.txt")
        assert through_mount.st_uid == pw.pw_uid, name
    bob = local_users["bob"]
    alices = f"{m.path}/{server_dir}/alice.txt"
    denied = as_user(bob.pw_uid, bob.pw_gid, ["sh", "-c", f"echo bob >> {alices}"], caches["bob"])
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied.stderr
    assert (krb5_ganesha.export_path / server_dir / "alice.txt").read_text() == "alice\n"
    run(fusenfs_argv("umount", m.path), timeout=60)
    assert wait_until(lambda: "users' RPCSEC_GSS contexts" in m.log_text(), 15), m.log_text()
    assert "destroyed 2 users' RPCSEC_GSS contexts" in m.log_text()


def test_a_user_without_tickets_gets_eacces_and_the_mount_stays_up(
    krb5_realm: FusenfsRealm,
    krb5_ganesha: GaneshaServer,
    krb5_mount: MountKrb5,
    server_dir: str,
    local_users: dict[str, pwd.struct_passwd],
    tmp_path: Path,
) -> None:
    """A uid with no cache at all: EACCES for each try (no hang), one log line for all
    of them; alice keeps working on the same mount."""
    assert not os.path.exists(f"/tmp/krb5cc_{NO_CREDS_UID}")
    m = krb5_mount(krb5_ganesha, "sec=krb5p,allow_other", public=True).mount
    target = f"{m.path}/{server_dir}/nobody.txt"
    for argv in (["touch", target], ["ls", f"{m.path}/{server_dir}"], ["touch", target]):
        done = as_user(NO_CREDS_UID, NO_CREDS_UID, argv)
        assert done.returncode != 0
        assert "Permission denied" in done.stderr, done.stderr
    assert not (krb5_ganesha.export_path / server_dir / "nobody.txt").exists()
    lines = [
        line
        for line in m.log_text().splitlines()
        if f"uid {NO_CREDS_UID}" in line and "no Kerberos credentials" in line
    ]
    assert len(lines) == 1, m.log_text()
    assert "run kinit" in lines[0]
    alice = local_users["alice"]
    cache = krb5_realm.kinit(
        "alice", ccache=tmp_path / "alice.ccache", owner=(alice.pw_uid, alice.pw_gid)
    )
    done = as_user(
        alice.pw_uid, alice.pw_gid, ["sh", "-c", f"echo still > {m.path}/{server_dir}/a"], cache
    )
    assert done.returncode == 0, done.stderr
    assert m.is_mounted()


def test_crossing_from_the_pseudo_root_into_a_kerberos_export(
    krb5_ganesha: GaneshaServer, krb5_mount: MountKrb5, server_dir: str
) -> None:
    """localhost:/ with sec=sys:krb5p: the pseudo-file system takes sys, the first
    choice; READDIR there shows the export as NFS4ERR_WRONGSEC, the LOOKUP into it
    says so too, SECINFO of "export" offers krb5 flavours only, and the export goes
    with krb5p while the pseudo-file system keeps sys (RFC 8881 section 2.6.3.1.1)."""
    m = krb5_mount(krb5_ganesha, "sec=sys:krb5p,debug", path="/").mount
    assert "flavour sys;" in m.log_text(), m.log_text()
    assert "export" in os.listdir(m.path)
    assert server_dir in os.listdir(m.path / "export")
    name = f"{server_dir}/made-by-root"
    (m.path / "export" / name).write_text("through krb5p\n")  # AUTH_SYS: WRONGSEC
    assert (krb5_ganesha.export_path / name).read_text() == "through krb5p\n"
    log = m.log_text()
    assert "[SEQUENCE PUTFH SECINFO]" in log, log
    assert re.search(r"security flavour of fsid \S+ on \S+: krb5p \(was sys\)", log), log


def test_krb5p_or_sys_falls_back_to_sys_on_a_sys_only_export(
    sys_ganesha: GaneshaServer, krb5_mount: MountKrb5
) -> None:
    """sec=krb5p:sys: SECINFO says sys only, so the export goes with AUTH_SYS (root's
    file is root's on the server: no_root_squash, not the machine principal's nobody)."""
    m = krb5_mount(sys_ganesha, "sec=krb5p:sys").mount
    assert "flavour sys;" in m.log_text(), m.log_text()
    stats = json.loads(run(fusenfs_argv("stats", "--json", m.path), timeout=30).stdout)
    assert stats["mount"]["flavour"] == "sys"
    assert "sec=krb5p:sys" in stats["mount"]["options"].split(",")
    name = f"sys-{uuid.uuid4().hex[:8]}"
    (m.path / name).write_text("via AUTH_SYS\n")
    on_server = os.stat(sys_ganesha.export_path / name)
    assert (on_server.st_uid, on_server.st_gid) == (0, 0)
    assert (m.path / name).read_text() == "via AUTH_SYS\n"
    os.unlink(m.path / name)


def test_krb5_against_a_sys_only_export_names_both_lists(
    krb5_realm: FusenfsRealm, sys_ganesha: GaneshaServer, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    opts = f"port={sys_ganesha.port},sec=krb5:krb5i,retry=0,{machine_options(krb5_realm)}"
    result = run(
        fusenfs_argv("mount", "localhost:/export", mountpoint, "-o", opts),
        timeout=MOUNT_TIMEOUT,
        check=False,
    )
    line = one_line(result)
    assert result.returncode == EXIT_FAILURE
    assert "localhost:/export: the server offers sys (SECINFO)" in line, line
    assert "sec=krb5:krb5i allows none of them" in line, line
    assert not os.path.ismount(mountpoint)
    assert wait_until(lambda: not daemon_pids(mountpoint), 10)


@pytest.mark.parametrize(
    ("machine", "words"),
    [
        ("keytab=/nonexistent/krb5.keytab", ["/nonexistent/krb5.keytab", "does not exist"]),
        ("principal=host/not-in-the-keytab", ["host/not-in-the-keytab", "has no key"]),
    ],
)
def test_no_machine_credential_is_one_line_saying_how_to_provide_it(
    krb5_realm: FusenfsRealm,
    krb5_ganesha: GaneshaServer,
    tmp_path: Path,
    machine: str,
    words: list[str],
) -> None:
    assert krb5_realm.host_keytab is not None
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    given = dict(o.split("=", 1) for o in machine_options(krb5_realm).split(","))
    key, value = machine.split("=", 1)
    given[key] = value
    opts = f"port={krb5_ganesha.port},sec=krb5p," + ",".join(f"{k}={v}" for k, v in given.items())
    result = run(
        fusenfs_argv("mount", "localhost:/export", mountpoint, "-o", opts),
        timeout=MOUNT_TIMEOUT,
        check=False,
    )
    line = one_line(result)
    assert result.returncode == EXIT_FAILURE
    for word in [*words, "machine credential", "-o keytab=PATH,principal=NAME", "ktadd"]:
        assert word in line, line
    assert not os.path.ismount(mountpoint)


def test_probe_lists_each_exports_flavours(krb5_ganesha: GaneshaServer) -> None:
    result = run(
        fusenfs_argv("probe", f"localhost:{krb5_ganesha.port}", krb5_ganesha.pseudo), timeout=60
    )
    fields: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        label, _, value = line.partition("  ")
        fields.setdefault(label.strip(), []).append(value.strip())
    (export,) = fields["export"]
    assert export.startswith(f"{krb5_ganesha.pseudo} (fsid "), export
    flavours = export.rsplit("sec=", 1)[1].rstrip(")")
    assert set(flavours.split(":")) == {"krb5", "krb5i", "krb5p"}, export
    (path_sec,) = fields[f"{krb5_ganesha.pseudo} sec"]
    assert set(path_sec.split(":")) == {"krb5", "krb5i", "krb5p"}, path_sec
    assert "sys" in fields["root sec"][0].split(":")  # the pseudo-file system
    assert result.stderr == ""


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``fusenfs: ...`` line of a refused command's stderr."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("fusenfs: "), lines[0]
    return lines[0]

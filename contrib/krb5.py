"""A throw-away MIT Kerberos realm on loopback, for RPCSEC_GSS tests, benchmarks and demos.

``KerberosRealm`` keeps everything in one temporary directory: krb5.conf, kdc.conf, the
KDC database and stash, keytabs, credential caches and the KDC's log.  Nothing is
written to /etc; every process that takes part (the KDC, kinit, Ganesha, the client) is
pointed at the directory through the environment (``env()``: ``KRB5_CONFIG``,
``KRB5_KDC_PROFILE``, and on request ``KRB5CCNAME`` / ``KRB5_KTNAME``).

The KDC (``krb5kdc -n``, a child process recorded by PID) listens on one loopback
address and a free port, UDP and TCP (``kdc_listen`` / ``kdc_tcp_listen``), and is
stopped with SIGTERM (SIGKILL if it lingers) by that PID only.

Facts this module relies on (MIT krb5 1.20, Debian 12; see shared/KERBEROS.md):

- MIT's profile parser wants ``{`` at the end of a line and ``}`` on a line of its own;
  a one-line realm stanza is silently ignored ("Cannot find KDC for realm").
- ``kinit`` reads the password from stdin when stdin is not a terminal.
- A service ticket lives at most as long as the service principal's ``maxlife``, so a
  short-lived principal makes GSS contexts expire on schedule (``add_service(...,
  max_life=10)``) while the users' TGTs stay valid.
- Host-based names (``nfs@localhost``) map to the realm through ``[domain_realm]``;
  ``dns_canonicalize_hostname = false`` and ``rdns = false`` keep them as written.

Typical use::

    with KerberosRealm() as realm:
        nfs = realm.add_service("nfs", "localhost")          # keytab for the server
        realm.add_user("alice")
        ccache = realm.kinit("alice")                         # "FILE:/tmp/.../alice.ccache"
        env = realm.env(ccache=ccache)                        # for a client process

Command line (the README's demo): ``python -m contrib.krb5 serve --user alice`` creates
a realm with ``nfs/localhost`` and ``host/localhost`` keytabs and a ticket for alice,
prints the environment to use, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

from contrib.children import Leftovers, stop_child

__all__ = [
    "DEFAULT_REALM",
    "FusenfsRealm",
    "KerberosError",
    "KerberosRealm",
    "Keytab",
    "realm_for_tests",
    "shared_realm",
    "stop_shared_realm",
    "unavailable_reason",
]

DEFAULT_REALM: Final = "FUSENFS.TEST"
LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")
#: Programs the realm needs (Debian packages krb5-kdc, krb5-admin-server, krb5-user).
PROGRAMS: Final = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit")

#: Started and not stopped yet: stopped when the Python process exits.
_running: Leftovers[KerberosRealm] = Leftovers()


class KerberosError(RuntimeError):
    """The realm could not be made or used; the message carries the tool's output."""


def unavailable_reason() -> str | None:
    """Why a realm cannot be made on this machine, or None when it can."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return (
            f"MIT Kerberos tools missing: {', '.join(missing)} "
            "(apt-get install krb5-kdc krb5-admin-server krb5-user)"
        )
    return None


def _check_loopback(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if not isinstance(ip, ipaddress.IPv4Address) or ip not in LOOPBACK:
        raise ValueError(f"only loopback addresses (127.0.0.0/8) are allowed, not {address}")
    return address


def _free_port(address: str) -> int:
    """A port free for both TCP and UDP on ``address`` right now (the KDC wants both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((address, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((address, port))
                except OSError:
                    continue
        return port
    raise KerberosError(f"no port free for both TCP and UDP on {address}")


@dataclass(frozen=True, slots=True)
class Keytab:
    """A keytab file and the principal whose keys it holds.

    Attributes:
        path: the keytab file (``FILE:`` is implied).
        principal: the full principal name, e.g. ``"nfs/localhost@FUSENFS.TEST"``.
    """

    path: Path
    principal: str

    @property
    def name(self) -> str:
        """The keytab name for ``KRB5_KTNAME`` / GSS cred stores: ``FILE:PATH``."""
        return f"FILE:{self.path}"


class KerberosRealm:
    """One MIT KDC and its realm, entirely inside a temporary directory.

    Args:
        realm: the realm name (upper case by convention).
        address: loopback IPv4 address the KDC listens on (127.0.0.0/8 only).
        port: UDP and TCP port; 0 picks a free one.
        workdir: directory for everything; default a new temporary directory, removed
            by ``cleanup()``.
        hostnames: host names mapped to the realm in ``[domain_realm]`` (the servers'
            names as the client writes them, e.g. ``"localhost"``).
        max_life: the realm's longest ticket lifetime, seconds.
        start_timeout: seconds ``start()`` waits for the KDC to listen.

    Raises:
        ValueError: a non-loopback address, a bad port or a non-positive lifetime.
    """

    def __init__(
        self,
        realm: str = DEFAULT_REALM,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        workdir: str | os.PathLike[str] | None = None,
        hostnames: Sequence[str] = ("localhost",),
        max_life: int = 10 * 3600,
        start_timeout: float = 15.0,
    ) -> None:
        if not realm or any(c.isspace() for c in realm):
            raise ValueError(f"bad realm name {realm!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        if max_life <= 0:
            raise ValueError(f"max_life must be > 0 seconds, got {max_life}")
        self.realm = realm
        self.address = _check_loopback(address)
        self.port = port
        self.hostnames = tuple(hostnames)
        self.max_life = max_life
        self.start_timeout = start_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(
            tempfile.mkdtemp(prefix="fusenfs-krb5-") if workdir is None else workdir
        ).resolve()
        self.krb5_conf = self.workdir / "krb5.conf"
        self.kdc_conf = self.workdir / "kdc.conf"
        self.database = self.workdir / "principal"
        self.stash = self.workdir / "stash"
        self.pid_path = self.workdir / "kdc.pid"
        self.log_path = self.workdir / "kdc.log"
        self.stdio_path = self.workdir / "kdc.stdio"
        self._proc: subprocess.Popen[bytes] | None = None
        self._created = False
        self._passwords: dict[str, str] = {}

    # -- names ----------------------------------------------------------------------
    def principal(self, name: str) -> str:
        """``name`` with the realm appended unless it already has one."""
        return name if "@" in name else f"{name}@{self.realm}"

    # -- environment ----------------------------------------------------------------
    def env(
        self,
        *,
        ccache: str | None = None,
        keytab: Keytab | str | None = None,
        base: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The environment for a process of this realm.

        Args:
            ccache: ``KRB5CCNAME`` (e.g. what ``kinit`` returned); omitted if None.
            keytab: ``KRB5_KTNAME`` (an acceptor's keytab, e.g. Ganesha's); omitted if None.
            base: the environment to extend; default ``os.environ``.

        Returns:
            a new dict; ``KRB5_CONFIG``, ``KRB5_KDC_PROFILE`` and ``KRB5RCACHEDIR``
            (an acceptor's replay cache, e.g. Ganesha's) always set.
        """
        env = dict(os.environ if base is None else base)
        env["KRB5_CONFIG"] = str(self.krb5_conf)
        env["KRB5_KDC_PROFILE"] = str(self.kdc_conf)
        env["KRB5RCACHEDIR"] = str(self.workdir)  # acceptors' replay caches, not /var/tmp
        if ccache is not None:
            env["KRB5CCNAME"] = ccache
        if keytab is not None:
            env["KRB5_KTNAME"] = keytab.name if isinstance(keytab, Keytab) else keytab
        return env

    def config_text(self) -> str:
        """The krb5.conf every process of the realm reads."""
        domains = "\n".join(f"  {host} = {self.realm}" for host in self.hostnames)
        return (
            "# Generated by contrib/krb5.py\n"
            "[libdefaults]\n"
            f"  default_realm = {self.realm}\n"
            "  dns_lookup_realm = false\n"
            "  dns_lookup_kdc = false\n"
            "  dns_canonicalize_hostname = false\n"
            "  rdns = false\n"
            "  ignore_acceptor_hostname = true\n"
            "  udp_preference_limit = 1\n"
            f"  default_ccache_name = FILE:{self.workdir}/krb5cc_%{{uid}}\n"
            "[realms]\n"
            f"  {self.realm} = {{\n"
            f"    kdc = {self.address}:{self.port}\n"
            "  }\n"
            "[domain_realm]\n"
            f"{domains}\n"
        )

    def kdc_config_text(self) -> str:
        """The kdc.conf the KDC and kadmin.local read."""
        listen = f"{self.address}:{self.port}"
        return (
            "# Generated by contrib/krb5.py\n"
            "[kdcdefaults]\n"
            f"  kdc_listen = {listen}\n"
            f"  kdc_tcp_listen = {listen}\n"
            "[realms]\n"
            f"  {self.realm} = {{\n"
            f"    database_name = {self.database}\n"
            f"    key_stash_file = {self.stash}\n"
            f"    acl_file = {self.workdir}/kadm5.acl\n"
            f"    max_life = {self.max_life}s\n"
            f"    max_renewable_life = {self.max_life}s\n"
            f"    kdc_listen = {listen}\n"
            f"    kdc_tcp_listen = {listen}\n"
            "  }\n"
            "[logging]\n"
            f"  kdc = FILE:{self.log_path}\n"
        )

    # -- life cycle -----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """PID of the running KDC started by this object, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> Self:
        """Create the realm (once) and start the KDC; wait until it accepts TCP.

        Raises:
            KerberosError: the tools are missing, the database could not be made, or
                the KDC exited or did not listen within ``start_timeout`` seconds.
        """
        if self.running:
            raise KerberosError(f"KDC already running (pid {self.pid})")
        reason = unavailable_reason()
        if reason is not None:
            raise KerberosError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = _free_port(self.address)
        self.krb5_conf.write_text(self.config_text())
        self.kdc_conf.write_text(self.kdc_config_text())
        (self.workdir / "kadm5.acl").write_text("")
        if not self._created:
            self._run(
                ["kdb5_util", "create", "-s", "-r", self.realm, "-P", secrets.token_hex(16)],
                what="creating the KDC database",
            )
            self._created = True
        self.pid_path.unlink(missing_ok=True)
        with open(self.stdio_path, "ab") as stdio:
            self._proc = subprocess.Popen(
                ["krb5kdc", "-n", "-r", self.realm, "-P", str(self.pid_path)],
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.workdir,
                start_new_session=True,
            )
        _running.add(self)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                raise KerberosError(
                    f"krb5kdc exited with status {status} before listening on "
                    f"{self.address}:{self.port}\n{self._diagnostics()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.address, self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise KerberosError(
            f"krb5kdc did not listen on {self.address}:{self.port} within "
            f"{self.start_timeout:g} s\n{self._diagnostics()}"
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the KDC this object started (SIGTERM, then SIGKILL after ``timeout`` s).

        Returns its exit status, or None if it was never started.
        """
        proc = self._proc
        if proc is None:
            return None
        _running.discard(self)
        return stop_child(proc, timeout)

    def cleanup(self) -> None:
        """Stop the KDC and remove the directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- principals and keytabs -----------------------------------------------------
    def kadmin(self, query: str) -> str:
        """Run one ``kadmin.local`` query against the realm's database; its output.

        Raises:
            KerberosError: kadmin.local failed or reported an error.
        """
        out = self._run(["kadmin.local", "-r", self.realm, "-q", query], what=f"kadmin {query!r}")
        for line in out.splitlines():
            low = line.lower()
            if "error" in low or "while " in low or "not found" in low:
                raise KerberosError(f"kadmin {query!r}: {line.strip()}\n{out}")
        return out

    def add_user(
        self, name: str, password: str | None = None, *, max_life: int | None = None
    ) -> str:
        """Add a user principal with a password (random unless given); return the password.

        Args:
            name: e.g. ``"alice"`` (the realm is appended).
            max_life: the principal's ticket lifetime limit in seconds (TGTs).
        """
        password = password or secrets.token_urlsafe(12)
        life = f' -maxlife "{max_life} seconds"' if max_life is not None else ""
        self.kadmin(f"addprinc -pw {password}{life} {self.principal(name)}")
        self._passwords[self.principal(name)] = password
        return password

    def add_service(
        self,
        service: str,
        host: str = "localhost",
        *,
        keytab: str | os.PathLike[str] | None = None,
        max_life: int | None = None,
    ) -> Keytab:
        """Add ``service/host`` with a random key and write its keytab.

        Args:
            service: ``"nfs"`` for an NFS server, ``"host"`` for a machine credential.
            host: the host part as clients name the server (``nfs@localhost``).
            keytab: where to write it; default ``WORKDIR/SERVICE-HOST.keytab``.
            max_life: the principal's ticket lifetime limit, seconds: every service
                ticket for it (and so every GSS context with it) expires this soon.

        Returns:
            the keytab and the full principal name.
        """
        principal = self.principal(f"{service}/{host}")
        path = Path(keytab) if keytab is not None else self.workdir / f"{service}-{host}.keytab"
        life = f' -maxlife "{max_life} seconds"' if max_life is not None else ""
        self.kadmin(f"addprinc -randkey{life} {principal}")
        self.kadmin(f"ktadd -k {path} {principal}")
        return Keytab(path, principal)

    def set_max_life(self, name: str, seconds: int) -> None:
        """Change a principal's ticket lifetime limit (tickets issued from now on)."""
        self.kadmin(f'modprinc -maxlife "{seconds} seconds" {self.principal(name)}')

    def kinit(
        self,
        name: str,
        *,
        password: str | None = None,
        ccache: str | os.PathLike[str] | None = None,
        lifetime: int | None = None,
        owner: tuple[int, int] | None = None,
        timeout: float = 15.0,
    ) -> str:
        """Get a TGT for user ``name`` into a FILE credential cache; return ``FILE:PATH``.

        Args:
            password: default: the one ``add_user`` set.
            ccache: the cache file; default ``WORKDIR/NAME.ccache``.
            lifetime: requested ticket lifetime in seconds (``kinit -l``).
            owner: ``(uid, gid)`` to give the cache file to (a local user's own cache).

        Raises:
            KerberosError: no password known, or kinit failed.
        """
        principal = self.principal(name)
        password = password if password is not None else self._passwords.get(principal)
        if password is None:
            raise KerberosError(f"no password known for {principal}")
        path = Path(ccache) if ccache is not None else self.workdir / f"{_file_part(name)}.ccache"
        argv = ["kinit", "-c", f"FILE:{path}"]
        if lifetime is not None:
            argv += ["-l", f"{lifetime}s"]
        argv.append(principal)
        self._run(argv, what=f"kinit {principal}", stdin=password + "\n", timeout=timeout)
        if owner is not None:
            os.chown(path, owner[0], owner[1])
        return f"FILE:{path}"

    def kinit_keytab(
        self,
        keytab: Keytab,
        *,
        ccache: str | os.PathLike[str] | None = None,
        timeout: float = 15.0,
    ) -> str:
        """A TGT for a keytab's principal into a FILE cache (``kinit -k -t``); ``FILE:PATH``."""
        path = (
            Path(ccache)
            if ccache is not None
            else self.workdir / f"{_file_part(keytab.principal)}.ccache"
        )
        self._run(
            ["kinit", "-k", "-t", str(keytab.path), "-c", f"FILE:{path}", keytab.principal],
            what=f"kinit -k {keytab.principal}",
            timeout=timeout,
        )
        return f"FILE:{path}"

    # -- helpers --------------------------------------------------------------------
    def _run(
        self, argv: list[str], *, what: str, stdin: str | None = None, timeout: float = 30.0
    ) -> str:
        try:
            done = subprocess.run(
                argv,
                input=stdin if stdin is not None else "",
                capture_output=True,
                text=True,
                env=self.env(),
                cwd=self.workdir,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise KerberosError(f"{what}: no answer in {timeout:g} s") from None
        except OSError as exc:
            raise KerberosError(f"{what}: {exc}") from None
        out = done.stdout + done.stderr
        if done.returncode != 0:
            raise KerberosError(f"{what} failed (status {done.returncode}): {out.strip()}")
        return out

    def _diagnostics(self) -> str:
        parts = []
        for path in (self.log_path, self.stdio_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    parts += [f"--- {path} ---", text[-3000:]]
        return "\n".join(parts)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"KerberosRealm({self.realm} kdc={self.address}:{self.port} {self.workdir} {state})"


class FusenfsRealm(KerberosRealm):
    """A realm with what the tests, the benchmark and the demo use, made at ``start()``:

    * ``nfs_keytab``: ``nfs/localhost`` (Ganesha's and the test server's acceptor key;
      clients name the server ``nfs@localhost``);
    * ``host_keytab``: ``host/localhost`` (the client's machine credential);
    * ``short_keytab``: ``host/expiring`` with tickets of ``short_life`` seconds (a
      machine credential whose contexts expire mid-test);
    * users ``alice`` and ``bob`` with tickets in ``ccaches[name]``.

    ``activate()`` points this process at the realm (``KRB5_CONFIG``,
    ``KRB5RCACHEDIR``: python-gssapi reads them) and ``deactivate()`` restores what
    was there.
    """

    USERS: Final = ("alice", "bob")

    def __init__(self, *args: Any, short_life: int = 8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.short_life = short_life
        self.nfs_keytab: Keytab | None = None
        self.host_keytab: Keytab | None = None
        self.short_keytab: Keytab | None = None
        self.ccaches: dict[str, str] = {}
        self._saved_env: dict[str, str | None] | None = None

    def start(self) -> Self:
        super().start()
        if self.nfs_keytab is None:
            self.nfs_keytab = self.add_service("nfs", "localhost")
            self.host_keytab = self.add_service("host", "localhost")
            self.short_keytab = self.add_service("host", "expiring", max_life=self.short_life)
            for user in self.USERS:
                self.add_user(user)
                self.ccaches[user] = self.kinit(user)
        return self

    def activate(self) -> None:
        """Set this process's Kerberos environment to the realm's (idempotent)."""
        if self._saved_env is not None:
            return
        wanted = self.env(base={})
        self._saved_env = {key: os.environ.get(key) for key in wanted}
        os.environ.update(wanted)

    def deactivate(self) -> None:
        """Restore the environment ``activate`` replaced."""
        saved, self._saved_env = self._saved_env, None
        for key, value in (saved or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def cleanup(self) -> None:
        self.deactivate()
        super().cleanup()


_shared: FusenfsRealm | None = None


def shared_realm() -> FusenfsRealm:
    """One ``FusenfsRealm`` per process, started and activated on first use (the test
    fixtures of several directories share it); ``stop_shared_realm`` ends it.

    Raises:
        KerberosError: it could not be started.
    """
    global _shared
    if _shared is None:
        realm = FusenfsRealm()
        try:
            realm.start()
        except BaseException:
            realm.cleanup()
            raise
        realm.activate()
        _shared = realm
    return _shared


def realm_for_tests(config: Any) -> FusenfsRealm:
    """The shared realm for a pytest session (``config``: the ``pytest.Config``).

    A test module's fixture is one line::

        @pytest.fixture(scope="session")
        def krb5_realm(request: pytest.FixtureRequest) -> FusenfsRealm:
            return realm_for_tests(request.config)

    Every module gets the same realm (``shared_realm``), stopped when the session ends.
    Skips the test when the MIT tools are missing, except under CI (CI=true), where
    that fails it, as does a realm that does not start.
    """
    import pytest

    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"Kerberos is required under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        realm = shared_realm()
    except KerberosError as err:
        pytest.fail(f"could not start the Kerberos realm: {err}", pytrace=False)
    config.add_cleanup(stop_shared_realm)
    return realm


def stop_shared_realm() -> None:
    """Stop and remove the shared realm, if there is one (idempotent)."""
    global _shared
    realm, _shared = _shared, None
    if realm is not None:
        realm.cleanup()


def _file_part(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# -- command line ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    realm = KerberosRealm(args.realm, workdir=args.workdir)
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        realm.start()
        nfs = realm.add_service("nfs", args.host)
        host = realm.add_service("host", args.host)
        lines = [
            f"krb5: realm {realm.realm}, KDC {realm.address}:{realm.port} (pid {realm.pid})",
            f"export KRB5_CONFIG={realm.krb5_conf}",
            f"# server keytab ({nfs.principal}): {nfs.path}",
            f"# machine keytab ({host.principal}): {host.path}",
        ]
        for user in args.user:
            password = realm.add_user(user)
            ccache = realm.kinit(user)
            lines.append(f"# {user}: password {password}; KRB5CCNAME={ccache}")
    except KerberosError as err:
        print(f"krb5: {err}", file=sys.stderr)
        realm.cleanup()
        return 1
    print("\n".join(lines), flush=True)
    try:
        while not stop.wait(0.5):
            if not realm.running:
                print("krb5: the KDC exited unexpectedly", file=sys.stderr)
                return 1
    finally:
        if args.workdir is None:
            realm.cleanup()
        else:
            realm.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m contrib.krb5 serve [--user NAME]...``: a realm until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m contrib.krb5", description="A throw-away Kerberos realm on loopback."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a realm until SIGINT/SIGTERM")
    serve.add_argument("--realm", default=DEFAULT_REALM)
    serve.add_argument("--host", default="localhost", help="the NFS server's host name")
    serve.add_argument("--user", action="append", default=[], help="a user to kinit (repeat)")
    serve.add_argument("--workdir", default=None, help="directory to keep (default: temp)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

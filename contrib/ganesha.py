"""Run NFS-Ganesha on a loopback address and a free port, for tests, demos and benchmarks.

``GaneshaServer`` writes a config into its own temporary directory (config, log, pid file,
RecoveryRoot), starts ``ganesha.nfsd -F`` in the foreground as a child process, waits until
it accepts TCP connections, and stops it with SIGTERM (SIGKILL if it does not go).

Facts about Ganesha 4.3 (Debian 12) that this module relies on, checked on this machine:

- With ``-L LOG -p PIDFILE`` and ``RecoveryRoot`` set it needs neither /var/log/ganesha
  nor /var/lib/nfs/ganesha.  It creates /var/run/ganesha itself (callback credential
  cache) and is content when it exists; ``start()`` creates it first.  Without a system
  D-Bus it logs CRIT lines about DBUS and carries on; the same for /etc/krb5.keytab and
  "Cannot acquire credentials for principal nfs".  Nothing here uses D-Bus.
- It binds an AF_INET6 socket on the v4-mapped ``Bind_addr`` (``[::ffff:127.0.0.1]:PORT``).
  Several instances run at once with distinct ports, or with the same port on distinct
  loopback addresses (127.0.0.1 and 127.0.0.2), each with its own RecoveryRoot and pid
  file.  A port clash makes it exit with status 2 and "Address already in use" in the log.
- ``Enable_UDP = false`` keeps it off UDP (otherwise it binds UDP on NFS_Port as well).
- ``Grace_Period`` accepts 0 (its minimum); ``Lease_Lifetime`` accepts 0 silently, which
  no client can live with, so 1 is the least usable lease.
- With ``Enable_NLM = false`` grace ends as soon as every client recorded in RecoveryRoot
  has sent RECLAIM_COMPLETE.  A fresh RecoveryRoot records none, so a freshly started
  server logs "NFS Server Now NOT IN GRACE" at once; a restart that keeps the RecoveryRoot
  after clients held state stays in grace for the whole Grace_Period.
- RecoveryBackend ``fs`` keeps client records under RecoveryRoot/v4recov and v4old.
- By default Ganesha caches attributes and directory entries for 60 s, so a change made
  directly in the exported directory stays invisible to clients; this module sets
  ``Attr_Expiration_Time = 0`` on the export unless told otherwise.
- SIGTERM stops it within milliseconds ("NFS EXIT: regular exit"), and it unregisters
  from rpcbind (NFSv3 only) on the way out.  It can be restarted on the same port at once.

Kerberos (``krb5=GaneshaKrb5(...)``, shared/KERBEROS.md): an ``NFS_KRB5`` block with the
service principal and keytab, ``SecType`` on the export (default krb5, krb5i, krb5p),
and ``KRB5_CONFIG`` / ``KRB5_KTNAME`` / ``KRB5RCACHEDIR`` in Ganesha's environment, so
it uses a throw-away realm (``contrib.krb5``) and writes nothing outside its workdir
(``CCacheDir`` is there too).  With AUTH_SYS such an export answers NFS4ERR_WRONGSEC.

Command line: ``python -m contrib.ganesha serve --export DIR [--port N] [--pseudo /export]``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

from contrib.children import Leftovers, stop_child

GANESHA_BINARY: Final = "ganesha.nfsd"
LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")
CALLBACK_CREDS_DIR: Final = "/var/run/ganesha"

#: Ganesha log lines this module looks for.
_INITIALIZED: Final = "NFS SERVER INITIALIZED"
_ADDR_IN_USE: Final = "Address already in use"
_GRACE_LINE: Final = re.compile(r"NFS Server Now (NOT )?IN GRACE")

#: Log levels at which Ganesha writes its EVENT lines (INITIALIZED, grace changes).
_EVENT_LEVELS: Final = frozenset({"EVENT", "INFO", "DEBUG", "MID_DEBUG", "FULL_DEBUG"})

ConfigValue = str | int | bool | Sequence[int]

#: Started and not stopped yet: stopped when the Python process exits.
_running: Leftovers[GaneshaServer] = Leftovers()


class GaneshaError(RuntimeError):
    """Ganesha could not be started or stopped; the message carries the log tail."""


@dataclass(frozen=True, slots=True)
class GaneshaKrb5:
    """Kerberos settings of one Ganesha (RPCSEC_GSS: krb5, krb5i, krb5p).

    Attributes:
        keytab: the keytab holding the service principal's key (``nfs/HOST``).
        krb5_conf: the krb5.conf of the realm (``KRB5_CONFIG``).
        principal: Ganesha's ``PrincipalName``, host-based: ``nfs@HOST`` (clients then
            name the server ``HOST``).
        sectypes: the export's ``SecType`` list (``sys`` may be added to allow
            AUTH_SYS as well).
    """

    keytab: str | os.PathLike[str]
    krb5_conf: str | os.PathLike[str]
    principal: str = "nfs@localhost"
    sectypes: tuple[str, ...] = ("krb5", "krb5i", "krb5p")

    def __post_init__(self) -> None:
        unknown = set(self.sectypes) - {"none", "sys", "krb5", "krb5i", "krb5p"}
        if unknown or not self.sectypes:
            raise ValueError(
                f"SecType must be some of none, sys, krb5, krb5i, krb5p, not {self.sectypes}"
            )
        if '"' in self.principal or not self.principal:
            raise ValueError(f"bad principal name {self.principal!r}")

    @classmethod
    def from_realm(
        cls,
        realm: Any,
        keytab: Any,
        *,
        sectypes: Sequence[str] = ("krb5", "krb5i", "krb5p"),
    ) -> Self:
        """Settings for a ``contrib.krb5.KerberosRealm`` and one of its ``Keytab``s of
        ``nfs/HOST`` (the principal becomes ``nfs@HOST``)."""
        service_host = str(keytab.principal).split("@", 1)[0]
        service, _, host = service_host.partition("/")
        return cls(keytab.path, realm.krb5_conf, f"{service}@{host}", tuple(sectypes))

    def block(self, ccache_dir: str) -> str:
        """The NFS_KRB5 block of ganesha.conf."""
        return (
            "NFS_KRB5 {\n"
            f'    PrincipalName = "{self.principal}";\n'
            f"    KeytabPath = {_render_value(str(self.keytab))};\n"
            f"    CCacheDir = {_render_value(ccache_dir)};\n"
            "    Active_krb5 = true;\n"
            "}"
        )

    def env(self, workdir: str) -> dict[str, str]:
        """What Ganesha's environment needs for this realm."""
        return {
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KTNAME": f"FILE:{self.keytab}",
            "KRB5RCACHEDIR": workdir,
        }


def unavailable_reason() -> str | None:
    """Say why Ganesha cannot run on this machine, or None when it can.

    Checks: root (the VFS FSAL uses open_by_handle_at), the ganesha.nfsd binary and the
    VFS FSAL library (Debian packages nfs-ganesha and nfs-ganesha-vfs).
    """
    if os.geteuid() != 0:
        return "NFS-Ganesha's VFS FSAL needs root (open_by_handle_at); not running as root"
    if shutil.which(GANESHA_BINARY) is None:
        return f"{GANESHA_BINARY} not found (apt-get install nfs-ganesha nfs-ganesha-vfs)"
    fsal = glob.glob("/usr/lib/*/ganesha/libfsalvfs.so") + glob.glob(
        "/usr/lib/ganesha/libfsalvfs.so"
    )
    if not fsal:
        return "Ganesha's VFS FSAL (libfsalvfs.so) not found (apt-get install nfs-ganesha-vfs)"
    return None


def check_loopback(address: str) -> str:
    """Return ``address`` if it is an IPv4 address in 127.0.0.0/8, else raise ValueError."""
    ip = ipaddress.ip_address(address)
    if not isinstance(ip, ipaddress.IPv4Address) or ip not in LOOPBACK:
        raise ValueError(f"only loopback addresses (127.0.0.0/8) are allowed, not {address}")
    return address


def pick_free_port(address: str = "127.0.0.1") -> int:
    """Ask the kernel for a TCP port that is free on ``address`` right now.

    Another process may take it before Ganesha binds it; ``GaneshaServer.start`` retries
    with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((check_loopback(address), 0))
        port: int = sock.getsockname()[1]
    return port


def port_accepts(address: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``address:port`` is accepted within ``timeout`` seconds."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _render_value(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value.startswith("/"):
            return '"' + value.replace('"', '\\"') + '"'
        return value
    return ", ".join(str(v) for v in value)


def _render_block(name: str, params: Mapping[str, ConfigValue], indent: str = "") -> str:
    lines = [f"{indent}{name} {{"]
    lines.extend(f"{indent}    {key} = {_render_value(val)};" for key, val in params.items())
    return "\n".join(lines)


def render_config(
    *,
    address: str,
    port: int,
    export_path: str,
    pseudo: str,
    export_id: int,
    recovery_root: str,
    protocols: Iterable[int],
    minor_versions: Iterable[int],
    grace_period: int,
    lease_lifetime: int,
    attr_expiration_time: int | None,
    log_level: str,
    core_options: Mapping[str, ConfigValue] | None = None,
    nfsv4_options: Mapping[str, ConfigValue] | None = None,
    export_options: Mapping[str, ConfigValue] | None = None,
    krb5: GaneshaKrb5 | None = None,
    krb5_ccache_dir: str | None = None,
) -> str:
    """Return the text of a ganesha.conf serving one VFS export on ``address:port``.

    The ``*_options`` mappings add to (or override) the parameters of the NFS_CORE_PARAM,
    NFSV4 and EXPORT blocks, e.g. ``{"Delegations": True}``.  ``krb5`` adds the NFS_KRB5
    block (with ``krb5_ccache_dir`` as CCacheDir) and the export's SecType.
    """
    protos = tuple(protocols)
    core: dict[str, ConfigValue] = {
        "Protocols": protos,
        "NFS_Port": port,
        "Bind_addr": address,
        "Enable_NLM": False,
        "Enable_RQUOTA": False,
        "Enable_UDP": False,
    }
    core.update(core_options or {})
    nfsv4: dict[str, ConfigValue] = {
        "Minor_Versions": tuple(minor_versions),
        "Grace_Period": grace_period,
        "Lease_Lifetime": lease_lifetime,
        "RecoveryBackend": "fs",
        "RecoveryRoot": recovery_root,
    }
    nfsv4.update(nfsv4_options or {})
    export: dict[str, ConfigValue] = {
        "Export_Id": export_id,
        "Path": export_path,
        "Pseudo": pseudo,
        "Access_Type": "RW",
        "Squash": "No_Root_Squash",
        "SecType": "sys",
        "Protocols": protos,
        "Transports": "TCP",
    }
    if attr_expiration_time is not None:
        export["Attr_Expiration_Time"] = attr_expiration_time
    if krb5 is not None:
        export["SecType"] = ", ".join(krb5.sectypes)
    export.update(export_options or {})
    parts = [
        "# Generated by contrib/ganesha.py",
        _render_block("NFS_CORE_PARAM", core) + "\n}",
        _render_block("NFSV4", nfsv4) + "\n}",
        _render_block("EXPORT", export) + "\n    FSAL {\n        Name = VFS;\n    }\n}",
        _render_block("LOG", {"Default_Log_Level": log_level}) + "\n}",
    ]
    if krb5 is not None:
        parts.insert(3, krb5.block(krb5_ccache_dir or recovery_root))
    return "\n\n".join(parts) + "\n"


class GaneshaServer:
    """One NFS-Ganesha process serving one directory on a loopback address.

    Args:
        export_path: the directory to export; created if missing.  Default: ``export``
            inside the server's own temporary directory.
        address: loopback IPv4 address to bind (127.0.0.0/8 only).
        port: TCP port; 0 picks a free one (and retries with another on a clash).  The
            port chosen at the first start is kept by later starts (``restart``).
        pseudo: the export's NFSv4 pseudo-fs path.
        export_id: Ganesha's Export_Id.
        minor_versions: NFSv4 minor versions served; libnfs needs 0.
        protocols: NFS versions, (4,) or (3, 4); NFSv3 needs rpcbind running.
        grace_period: seconds of grace after a restart with known clients (0 is the least
            Ganesha accepts; a fresh RecoveryRoot ends grace at once anyway).
        lease_lifetime: lease in seconds (1 is the least usable value).
        attr_expiration_time: Ganesha's attribute cache time on the export, seconds; 0
            makes changes made directly in the export directory visible at once; None
            leaves Ganesha's default (60).
        log_level: Ganesha's Default_Log_Level (EVENT, INFO, DEBUG, FULL_DEBUG, ...).
        workdir: directory for config, log, pid file and RecoveryRoot; default a new
            temporary directory, removed by ``cleanup()``.
        core_options, nfsv4_options, export_options: extra parameters for those blocks.
        start_timeout: seconds ``start()`` waits for Ganesha to listen.
        krb5: serve RPCSEC_GSS with these Kerberos settings (``GaneshaKrb5``); the
            export's SecType becomes ``krb5.sectypes``.
    """

    def __init__(
        self,
        export_path: str | os.PathLike[str] | None = None,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        pseudo: str = "/export",
        export_id: int = 1,
        minor_versions: Iterable[int] = (1,),
        protocols: Iterable[int] = (4,),
        grace_period: int = 5,
        lease_lifetime: int = 10,
        attr_expiration_time: int | None = 0,
        log_level: str = "EVENT",
        workdir: str | os.PathLike[str] | None = None,
        core_options: Mapping[str, ConfigValue] | None = None,
        nfsv4_options: Mapping[str, ConfigValue] | None = None,
        export_options: Mapping[str, ConfigValue] | None = None,
        start_timeout: float = 20.0,
        krb5: GaneshaKrb5 | None = None,
    ) -> None:
        self.address = check_loopback(address)
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        if not pseudo.startswith("/"):
            raise ValueError(f"pseudo path must be absolute: {pseudo!r}")
        if grace_period < 0 or lease_lifetime < 1:
            raise ValueError("grace_period must be >= 0 and lease_lifetime >= 1 (seconds)")
        self.port = port
        self._auto_port = port == 0
        self.pseudo = pseudo
        self.export_id = export_id
        self.minor_versions = tuple(minor_versions)
        self.protocols = tuple(protocols)
        self.grace_period = grace_period
        self.lease_lifetime = lease_lifetime
        self.attr_expiration_time = attr_expiration_time
        self.log_level = log_level.upper()
        self.core_options = dict(core_options or {})
        self.nfsv4_options = dict(nfsv4_options or {})
        self.export_options = dict(export_options or {})
        self.start_timeout = start_timeout
        self.krb5 = krb5
        self._own_workdir = workdir is None
        self.workdir = Path(
            tempfile.mkdtemp(prefix="fusenfs-ganesha-") if workdir is None else workdir
        ).resolve()
        self.export_path = (
            self.workdir / "export" if export_path is None else Path(export_path).resolve()
        )
        self.config_path = self.workdir / "ganesha.conf"
        self.log_path = self.workdir / "ganesha.log"
        self.pid_path = self.workdir / "ganesha.pid"
        self.stdio_path = self.workdir / "ganesha.stdio"
        self.recovery_root = self.workdir / "recovery"
        self.krb5_ccache_dir = self.workdir / "krb5cc"
        self.started_at: float | None = None
        self._log_offset = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- life cycle -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Pid of the running ganesha.nfsd, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the ganesha.nfsd started by this object is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start Ganesha and wait (at most ``start_timeout`` s) until it accepts TCP.

        Raises:
            GaneshaError: it is unavailable, exited, or did not listen in time; the
                message carries the end of its log.
        """
        if self.running:
            raise GaneshaError(f"Ganesha already running (pid {self.pid})")
        reason = unavailable_reason()
        if reason is not None:
            raise GaneshaError(reason)
        for directory in (self.workdir, self.recovery_root, self.export_path):
            directory.mkdir(parents=True, exist_ok=True)
        if self.krb5 is not None:
            self.krb5_ccache_dir.mkdir(mode=0o700, exist_ok=True)
        # Ganesha makes this itself on first use (callback credential cache); making it
        # here avoids a race between instances starting at the same moment.
        with contextlib.suppress(OSError):
            Path(CALLBACK_CREDS_DIR).mkdir(parents=True, exist_ok=True)
        attempts = 8 if self._auto_port else 1
        for attempt in range(1, attempts + 1):
            if self._auto_port and (attempt > 1 or self.port == 0):
                self.port = pick_free_port(self.address)
            if self._launch():
                return self
        raise GaneshaError(
            f"Ganesha found no free port on {self.address} in {attempts} attempts\n"
            + self.log_tail()
        )

    def _launch(self) -> bool:
        """Start one ganesha.nfsd; True once it listens, False on a port clash."""
        self.config_path.write_text(self.config_text())
        self.pid_path.unlink(missing_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [
            GANESHA_BINARY,
            "-F",
            "-f",
            str(self.config_path),
            "-L",
            str(self.log_path),
            "-p",
            str(self.pid_path),
        ]
        env = None
        if self.krb5 is not None:
            env = {**os.environ, **self.krb5.env(str(self.workdir))}
        with open(self.stdio_path, "ab") as stdio:
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        _running.add(self)
        deadline = self.started_at + self.start_timeout
        listening = False
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                log = self.log_text(since_start=True)
                if self._auto_port and _ADDR_IN_USE in log:
                    return False
                raise GaneshaError(
                    f"ganesha.nfsd exited with status {status} before listening on "
                    f"{self.address}:{self.port}\n{self._diagnostics()}"
                )
            if not listening:
                listening = port_accepts(self.address, self.port, timeout=0.2)
            if listening and (
                self.log_level not in _EVENT_LEVELS
                or _INITIALIZED in self.log_text(since_start=True)
            ):
                return True
            time.sleep(0.05)
        self.stop()
        raise GaneshaError(
            f"ganesha.nfsd did not listen on {self.address}:{self.port} within "
            f"{self.start_timeout:g} s\n{self._diagnostics()}"
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop Ganesha: SIGTERM, wait at most ``timeout`` s, then SIGKILL.

        Returns its exit status, or None if it was not started.
        """
        proc = self._proc
        if proc is None:
            return None
        _running.discard(self)
        return stop_child(proc, timeout)

    def restart(self) -> Self:
        """Stop and start again on the same address, port and RecoveryRoot (a reboot)."""
        self.stop()
        self._auto_port = False
        return self.start()

    def cleanup(self) -> None:
        """Stop Ganesha and remove the temporary directory if this object created it."""
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

    # -- grace ----------------------------------------------------------------------

    def in_grace(self) -> bool | None:
        """Whether the last grace line logged since the last start says IN GRACE.

        None when the log has no grace line (log level above EVENT).
        """
        matches = list(_GRACE_LINE.finditer(self.log_text(since_start=True)))
        if not matches:
            return None
        return matches[-1].group(1) is None

    def wait_grace_over(self, margin: float = 1.0) -> float:
        """Block until the grace period that began at the last start is over.

        Returns as soon as the log says "NFS Server Now NOT IN GRACE" (at once for a fresh
        RecoveryRoot); otherwise waits until start + grace_period + lease_lifetime / 2 +
        ``margin`` seconds (Ganesha's reaper lifts grace on its next pass).  Returns the
        seconds waited.
        """
        if self.started_at is None:
            raise GaneshaError("Ganesha was never started")
        began = time.monotonic()
        deadline = self.started_at + self.grace_period + self.lease_lifetime / 2 + margin
        while time.monotonic() < deadline:
            if self.in_grace() is False:
                break
            time.sleep(0.1)
        return time.monotonic() - began

    # -- text -----------------------------------------------------------------------

    def config_text(self) -> str:
        """The ganesha.conf this server runs with."""
        return render_config(
            address=self.address,
            port=self.port,
            export_path=str(self.export_path),
            pseudo=self.pseudo,
            export_id=self.export_id,
            recovery_root=str(self.recovery_root),
            protocols=self.protocols,
            minor_versions=self.minor_versions,
            grace_period=self.grace_period,
            lease_lifetime=self.lease_lifetime,
            attr_expiration_time=self.attr_expiration_time,
            log_level=self.log_level,
            core_options=self.core_options,
            nfsv4_options=self.nfsv4_options,
            export_options=self.export_options,
            krb5=self.krb5,
            krb5_ccache_dir=str(self.krb5_ccache_dir),
        )

    def log_text(self, since_start: bool = False) -> str:
        """Ganesha's log: all of it, or only what the last start wrote."""
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                data = f.read()
        except FileNotFoundError:
            return ""
        return data.decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        tail = self.log_text().splitlines()[-lines:]
        return "\n".join(tail)

    def _diagnostics(self) -> str:
        parts = [f"--- {self.log_path} (tail) ---", self.log_tail()]
        with contextlib.suppress(OSError):
            stdio = self.stdio_path.read_text(errors="replace").strip()
            if stdio:
                parts += [f"--- {self.stdio_path} ---", stdio[-4000:]]
        return "\n".join(parts)

    def url(self, path: str = "", version: int = 4) -> str:
        """A libnfs URL for ``path`` inside the export (NFSv4 via pseudo, NFSv3 via Path)."""
        if version == 3:
            root = str(self.export_path)
            return f"nfs://{self.address}{root}/{path.lstrip('/')}?version=3"
        root = self.pseudo.rstrip("/")
        return f"nfs://{self.address}{root}/{path.lstrip('/')}?version=4&nfsport={self.port}"

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return (
            f"GaneshaServer({self.address}:{self.port} pseudo={self.pseudo} "
            f"path={self.export_path} {state})"
        )


# -- command line ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    server = GaneshaServer(
        args.export,
        address=args.address,
        port=args.port,
        pseudo=args.pseudo,
        minor_versions=args.minor_versions,
        protocols=args.protocols,
        grace_period=args.grace_period,
        lease_lifetime=args.lease_lifetime,
        workdir=args.workdir,
        log_level=args.log_level,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start()
    except GaneshaError as err:
        print(f"ganesha: {err}", file=sys.stderr)
        server.cleanup()
        return 1
    print(
        f"ganesha: {server.address}:{server.port} pseudo={server.pseudo} "
        f"path={server.export_path} log={server.log_path}",
        flush=True,
    )
    status = 0
    try:
        while not stop.wait(0.5):
            if not server.running:
                print(f"ganesha: exited unexpectedly\n{server.log_tail()}", file=sys.stderr)
                status = 1
                break
    finally:
        if args.workdir is None and status == 0:
            server.cleanup()
        else:
            server.stop()
    return status


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m contrib.ganesha serve --export DIR``: run Ganesha in the foreground."""
    parser = argparse.ArgumentParser(
        prog="python -m contrib.ganesha", description="Run NFS-Ganesha on loopback."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a directory until SIGINT/SIGTERM")
    serve.add_argument("--export", required=True, help="directory to export (created)")
    serve.add_argument("--address", default="127.0.0.1", help="loopback address to bind")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument("--pseudo", default="/export", help="NFSv4 pseudo path")
    serve.add_argument(
        "--minor-versions", type=_int_list, default=(1,), help="e.g. 0,1 (default 1)"
    )
    serve.add_argument("--protocols", type=_int_list, default=(4,), help="e.g. 3,4 (default 4)")
    serve.add_argument("--grace-period", type=int, default=5, help="seconds (default 5)")
    serve.add_argument("--lease-lifetime", type=int, default=10, help="seconds (default 10)")
    serve.add_argument("--log-level", default="EVENT", help="Ganesha log level")
    serve.add_argument(
        "--workdir", default=None, help="directory for config/log/recovery (default: temp)"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

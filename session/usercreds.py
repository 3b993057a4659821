"""Each local user's own Kerberos credentials for RPCSEC_GSS, as rpc.gssd finds them.

A FUSE request carries the caller's uid and pid.  ``UserCredentials.for_user(uid, pid)``
gives the ``session.gss.GssCredential`` for that user with one server: one per (uid,
credential cache), kept, so every request of the user shares one GSS context with the
server.  The cache is, in this order:

1. ``KRB5CCNAME`` in the environment of the calling process (``/proc/PID/environ``),
   when it names a FILE cache;
2. the default cache for the uid, ``FILE:/tmp/krb5cc_%{uid}`` unless configured (MIT's
   default; krb5.conf's ``default_ccache_name`` for the uid if the site changed it).

fusenfs runs as root, so a user must not get someone else's tickets by pointing
``KRB5CCNAME`` at them: a cache is used only if it is a regular file owned by the
uid, and it is opened here first (the final component not followed if a symlink,
then checked with ``fstat``) and handed to Kerberos as ``/proc/self/fd/N``, so a
swapped path cannot redirect it.  Other cache types (KEYRING, KCM, DIR, MEMORY) are
not read for other users; such a ``KRB5CCNAME`` falls back to the default cache.

uid 0 uses the machine credential (as rpc.gssd does without ``-n``) when one is given.

A user without credentials gets ``GssCredentialsUnavailable`` (errno EACCES) at once,
with one line in the log (at most one per ``log_interval`` seconds per uid) saying why
and what to do; the FUSE edge turns it into EACCES.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import gssapi
from gssapi.raw.misc import GSSError

from session.gss import (
    GssCredential,
    GssCredentialsUnavailable,
    rpc_gss_service_t,
)

__all__ = [
    "DEFAULT_CCACHE_TEMPLATE",
    "CheckedCcacheSource",
    "UserCredentials",
    "UserCredentialsStatistics",
    "ccache_path",
    "environ_ccache",
]

log = logging.getLogger("session.gss")

DEFAULT_CCACHE_TEMPLATE: Final = "FILE:/tmp/krb5cc_%{uid}"
"""MIT Kerberos' default credential cache name; ``%{uid}`` is the user's uid."""

MAX_ENVIRON: Final = 1 << 20
"""Bytes of /proc/PID/environ read at most."""


def environ_ccache(pid: int, proc: str = "/proc") -> str | None:
    """``KRB5CCNAME`` of process ``pid``, or None (unset, or the process is gone)."""
    try:
        with open(f"{proc}/{pid}/environ", "rb") as f:
            data = f.read(MAX_ENVIRON)
    except OSError:
        return None
    for entry in data.split(b"\0"):
        if entry.startswith(b"KRB5CCNAME="):
            return entry[len(b"KRB5CCNAME=") :].decode("utf-8", "surrogateescape") or None
    return None


def ccache_path(name: str) -> str | None:
    """The file of a FILE credential cache name (``FILE:/p`` or a bare ``/p``); None
    for any other type (KEYRING:, KCM:, DIR:, MEMORY:, ...)."""
    if name.startswith("FILE:"):
        path = name[len("FILE:") :]
    elif ":" in name.split("/", 1)[0]:
        return None  # TYPE:residual of another type
    else:
        path = name
    return path if path.startswith("/") else None


class CheckedCcacheSource:
    """A user's FILE cache, opened safely for a root process (see the module docstring).

    Each call opens the file without following a final symlink, checks it is a
    regular file owned by ``uid``, and acquires Kerberos credentials from it as
    ``/proc/self/fd/N``; the descriptor stays open until the next call (GSS reads the
    cache again while creating the context) or ``close``.

    Raises (when called):
        GssCredentialsUnavailable: missing, not a regular file, owned by another
            user, or no usable tickets in it.
    """

    def __init__(self, path: str, uid: int) -> None:
        self.path = path
        self.uid = uid
        self._fd: int | None = None
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return f"uid {self.uid} (FILE:{self.path})"

    def __call__(self) -> gssapi.Credentials:
        fd = self._open()
        with self._lock:
            old, self._fd = self._fd, fd
        if old is not None:
            with contextlib.suppress(OSError):
                os.close(old)
        try:
            creds = gssapi.Credentials(
                usage="initiate", store={"ccache": f"FILE:/proc/self/fd/{fd}"}
            )
            lifetime = creds.lifetime
        except GSSError as exc:
            raise GssCredentialsUnavailable(
                f"uid {self.uid}: no usable Kerberos tickets in FILE:{self.path} "
                f"({_short(exc)}); run kinit"
            ) from None
        if lifetime is not None and lifetime <= 0:
            raise GssCredentialsUnavailable(
                f"uid {self.uid}: the Kerberos tickets in FILE:{self.path} expired; run kinit"
            )
        return creds

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
        except FileNotFoundError:
            raise GssCredentialsUnavailable(
                f"uid {self.uid}: no Kerberos credentials (FILE:{self.path} does not exist); "
                "run kinit"
            ) from None
        except OSError as exc:
            raise GssCredentialsUnavailable(
                f"uid {self.uid}: cannot open the credential cache FILE:{self.path}: "
                f"{exc.strerror or exc}"
            ) from None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode) or st.st_uid != self.uid:
            os.close(fd)
            what = (
                "not a regular file"
                if not stat.S_ISREG(st.st_mode)
                else f"owned by uid {st.st_uid}"
            )
            raise GssCredentialsUnavailable(
                f"uid {self.uid}: refusing the credential cache FILE:{self.path} ({what})"
            )
        return fd

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _short(exc: GSSError) -> str:
    try:
        return "; ".join(str(m) for m in exc.get_all_statuses(exc.min_code, False) if m)
    except Exception:  # pragma: no cover - message lookup failing is not the error
        return str(exc)


@dataclass(frozen=True, slots=True)
class UserCredentialsStatistics:
    """Counters of one ``UserCredentials``.

    Attributes:
        credentials: per-user credentials made (a count; one per uid and cache).
        denied: ``for_user`` calls refused for lack of credentials.
        from_environ: lookups that used the caller's ``KRB5CCNAME``.
    """

    credentials: int
    denied: int
    from_environ: int


class UserCredentials:
    """Per-user RPCSEC_GSS credentials with one server (see the module docstring).

    Args:
        target: the server's GSS service name, ``"nfs@HOST"``.
        service: the RPCSEC_GSS service of the mount (sec=krb5 / krb5i / krb5p).
        machine: the machine credential; uid 0 uses it when ``root_uses_machine``.
        root_uses_machine: rpc.gssd's default; False makes root find tickets like
            everyone else.
        ccache_template: the default cache for a uid, ``%{uid}`` replaced.
        proc: where /proc is (tests).
        pid_ttl: seconds a process's ``KRB5CCNAME`` is remembered (pids are reused,
            but the cache must still belong to the uid).
        log_interval: seconds between two "no credentials" lines for one uid.
        retry_delay: seconds a failed context creation is not tried again for a user
            (``GssCredential.retry_delay``).
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        target: str,
        service: rpc_gss_service_t = rpc_gss_service_t.RPC_GSS_SVC_NONE,
        *,
        machine: GssCredential | None = None,
        root_uses_machine: bool = True,
        ccache_template: str = DEFAULT_CCACHE_TEMPLATE,
        proc: str = "/proc",
        pid_ttl: float = 30.0,
        log_interval: float = 60.0,
        retry_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if "%{uid}" not in ccache_template:
            raise ValueError(f"ccache_template must contain %{{uid}}: {ccache_template!r}")
        self.target = target
        self.service = service
        self.machine = machine.with_service(service) if machine is not None else None
        self.root_uses_machine = root_uses_machine
        self.ccache_template = ccache_template
        self.proc = proc
        self.pid_ttl = pid_ttl
        self.log_interval = log_interval
        self.retry_delay = retry_delay
        self.clock = clock
        self._by_cache: dict[tuple[int, str], tuple[GssCredential, CheckedCcacheSource]] = {}
        self._by_pid: dict[tuple[int, int], tuple[str | None, float]] = {}
        self._logged: dict[int, float] = {}
        self._denied = 0
        self._from_environ = 0

    def default_ccache(self, uid: int) -> str:
        """The default cache name for ``uid``."""
        return self.ccache_template.replace("%{uid}", str(uid))

    def ccache_for(self, uid: int, pid: int | None) -> tuple[str, str]:
        """The cache to use for ``uid`` called from ``pid``, and where it came from.

        Returns:
            ``(name, why)``: e.g. ``("FILE:/tmp/krb5cc_1000", "default for uid 1000")``.
        """
        if pid is not None and pid > 0:
            now = self.clock()
            key = (uid, pid)
            remembered = self._by_pid.get(key)
            if remembered is None or remembered[1] <= now:
                if len(self._by_pid) > 4096:
                    self._by_pid = {k: v for k, v in self._by_pid.items() if v[1] > now}
                remembered = (environ_ccache(pid, self.proc), now + self.pid_ttl)
                self._by_pid[key] = remembered
            name = remembered[0]
            if name is not None:
                if ccache_path(name) is not None:
                    return name, f"KRB5CCNAME of pid {pid}"
                self._note(uid, f"KRB5CCNAME={name} of pid {pid} is not a FILE cache; ignored")
        return self.default_ccache(uid), f"default for uid {uid}"

    def for_user(self, uid: int, pid: int | None = None, gid: int | None = None) -> GssCredential:
        """The credential of user ``uid`` (FUSE ``ctx.uid``, ``ctx.pid``).

        Raises:
            GssCredentialsUnavailable: the user has no credential cache (errno EACCES;
                logged in one line).  Expired or unusable tickets are found when the
                context is created (the first call raises the same error then).
        """
        if uid == 0 and self.root_uses_machine and self.machine is not None:
            return self.machine
        name, why = self.ccache_for(uid, pid)
        if why.startswith("KRB5CCNAME"):
            self._from_environ += 1
        path = ccache_path(name)
        if path is None:
            self._denied += 1
            message = f"uid {uid}: credential cache {name} ({why}) is not a FILE cache"
            self._note(uid, message + "; access denied")
            raise GssCredentialsUnavailable(message)
        found = self._by_cache.get((uid, path))
        if found is not None:
            return found[0]
        try:
            st = os.stat(path)
        except OSError:
            self._denied += 1
            message = (
                f"uid {uid}: no Kerberos credentials ({why}: {name} does not exist); run kinit"
            )
            self._note(uid, message)
            raise GssCredentialsUnavailable(message) from None
        if st.st_uid != uid:
            self._denied += 1
            message = (
                f"uid {uid}: refusing credential cache {name} ({why}): owned by uid {st.st_uid}"
            )
            self._note(uid, message)
            raise GssCredentialsUnavailable(message)
        source = CheckedCcacheSource(path, uid)
        cred = GssCredential(
            self.target,
            self.service,
            source=source,
            label=f"uid {uid}",
            uid=uid,
            gid=gid,
            retry_delay=self.retry_delay,
        )
        self._by_cache[(uid, path)] = (cred, source)
        return cred

    def credentials(self) -> list[GssCredential]:
        """Every per-user credential made so far (to destroy their contexts at unmount)."""
        return [cred for cred, _ in self._by_cache.values()]

    def forget(self, uid: int | None = None) -> None:
        """Drop the credentials of ``uid`` (or all): the next request looks again."""
        for key in [k for k in self._by_cache if uid is None or k[0] == uid]:
            _, source = self._by_cache.pop(key)
            source.close()
        for pid_key in [k for k in self._by_pid if uid is None or k[0] == uid]:
            del self._by_pid[pid_key]

    def close(self) -> None:
        """Close every cache descriptor held (the credentials stay usable: they reopen)."""
        for _, source in self._by_cache.values():
            source.close()

    def statistics(self) -> UserCredentialsStatistics:
        return UserCredentialsStatistics(len(self._by_cache), self._denied, self._from_environ)

    def _note(self, uid: int, message: str) -> None:
        """Log ``message`` unless one was logged for ``uid`` within ``log_interval``."""
        now = self.clock()
        last = self._logged.get(uid)
        if last is None or now - last >= self.log_interval:
            self._logged[uid] = now
            log.warning("RPCSEC_GSS: %s", message)

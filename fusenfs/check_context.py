"""What every check of ``fusenfs check`` runs against: the server, the export, a scratch
directory, and facts learned once (the preflight, the referral walk).

:class:`CheckContext` is made by ``fusenfs.check.run_checks``.  ``preflight()`` connects,
establishes a client ID and session, finds the export, reads ``supported_attrs`` and
``lease_time``, waits out a grace period (an OPEN that gets NFS4ERR_GRACE is retried for
up to ``grace_wait`` seconds), and creates a scratch directory at the top of the export
(``.fusenfs-check-PID-RANDOM``) for the checks that need files; ``close()`` removes it and
destroys every client ID the checks made.  A read-only export leaves ``scratch_fh`` None:
checks that need to write are then NOT-SUPPORTED.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from fusenfs.check_base import NotSupported
from fusenfs.check_wire import Wire, WireError
from session.errors import NFSClientError
from session.xdr import nfs4
from session.xdr.const import (
    FATTR4,
    OPEN4_SHARE_ACCESS_BOTH,
    nfs_ftype4,
    nfsstat4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, bitmap4_to_set, decode_fattr4, encode_fattr4

S = nfsstat4


@dataclass(slots=True)
class CheckOptions:
    """How ``fusenfs check`` was asked to run.

    Attributes:
        host / port: the server.
        export: the export path, e.g. "/export/a"; ``components`` the same split.
        timeo: seconds one COMPOUND may take before the check gives up on it.
        grace_wait: seconds to wait for a grace period to end before checking.
        walk_dirs / walk_depth: bounds of the walk looking for referrals (directories
            read, levels below the export).
        lease_wait: longest a lease check waits, seconds.
        migrate_cmd: the shell command that migrates the export (None: migration checks
            are NOT-SUPPORTED); placeholders in ``fusenfs.check.PLACEHOLDERS``.
        migrate_fs: the value of {fs} (default: the export path's last component).
        migrate_to: the values of {target}, used in turn, one per migration.
        migrate_timeout: seconds the command may run.
        freeze: seconds asked for as {freeze} in the freeze scenario.
    """

    host: str
    port: int
    export: str
    timeo: float = 10.0
    grace_wait: float = 120.0
    walk_dirs: int = 200
    walk_depth: int = 4
    lease_wait: float = 60.0
    migrate_cmd: str | None = None
    migrate_fs: str | None = None
    migrate_to: list[str] = field(default_factory=list)
    migrate_timeout: float = 120.0
    freeze: float = 2.0

    @property
    def components(self) -> list[str]:
        return [c for c in self.export.split("/") if c]


@dataclass(slots=True)
class Referral:
    """A junction to an absent file system found by the walk.

    Attributes:
        parent_fh: the directory holding it; ``name`` its entry there.
        path: its path from the pseudo-fs root (components).
        evidence: how the walk saw it (rdattr_error, fs_status).
    """

    parent_fh: bytes
    name: bytes
    path: list[str]
    evidence: str


_owner_counter = itertools.count(1)


class CheckContext:
    """State shared by the checks of one run (see the module docstring)."""

    def __init__(self, options: CheckOptions, nursery: trio.Nursery) -> None:
        self.options = options
        self.nursery = nursery
        self.host = options.host
        self.port = options.port
        self.components = options.components
        self.wires: list[Wire] = []
        self.main: Wire | None = None
        self.eid: nfs4.EXCHANGE_ID4resok | None = None
        self.export_fh = b""
        self.export_attrs = NFSAttrs()
        self.supported: set[int] = set()
        self.lease_time = 90
        self.grace_waited = 0.0
        self.scratch_fh: bytes | None = None
        self.scratch_name = f".fusenfs-check-{os.getpid()}-{os.urandom(3).hex()}"
        self.scratch_reason = ""
        self._referrals: list[Referral] | None = None
        self.walk_summary = ""
        self.flags_log: list[tuple[str, int]] = []
        #: Shared results of multi-check work (the migration scenarios), by name.
        self.cache: dict[str, Any] = {}
        self._files = itertools.count(1)
        self._renewer = trio.CancelScope()

    # -- wires ------------------------------------------------------------------------
    def owner(self, tag: str) -> bytes:
        return (
            f"fusenfs-check/{socket.gethostname()}/{os.getpid()}/{tag}-{next(_owner_counter)}"
        ).encode()

    async def wire(
        self,
        tag: str,
        *,
        establish: bool = True,
        uid: int = 0,
        owner: bytes | None = None,
        verifier: bytes | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> Wire:
        """A new connection with a new client owner (or the given one); established
        (EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE) unless told otherwise.  Closed
        and its client ID destroyed by ``close()``.

        Raises:
            WireError: the connection or a step of the establishment failed.
        """
        w = await Wire.connect(
            host or self.host,
            port or self.port,
            self.nursery,
            owner=owner or self.owner(tag),
            timeo=self.options.timeo,
            uid=uid,
            verifier=verifier,
        )
        self.wires.append(w)
        if establish:
            await w.establish()
        return w

    def note_flags(self, where: str, flags: int) -> None:
        self.flags_log.append((where, flags))

    # -- preflight --------------------------------------------------------------------
    async def preflight(self) -> list[str]:
        """Connect, find the export, wait out grace, make the scratch directory.

        Returns lines describing the server for the report header.

        Raises:
            WireError: the server cannot be used at all (unreachable, refuses a client
                ID or session, the export does not exist).
        """
        w = await self.wire("main")
        self.main = w
        self.eid = w.eid
        self.export_fh = await w.lookup_path(self.components)
        want = [
            FATTR4.SUPPORTED_ATTRS,
            FATTR4.LEASE_TIME,
            FATTR4.FSID,
            FATTR4.TYPE,
            FATTR4.FILEID,
        ]
        reply, attrs = await w.getattr(self.export_fh, want)
        if attrs is None:
            raise WireError(f"GETATTR of the export: {reply.got}")
        self.export_attrs = attrs
        self.supported = bitmap4_to_set(attrs.supported_attrs or [])
        self.lease_time = attrs.lease_time or 90
        self.nursery.start_soon(self._renew_main)
        if attrs.type is not None and attrs.type != nfs_ftype4.NF4DIR:
            raise WireError(f"{self.options.export} is not a directory")
        await self._make_scratch(w)
        lines = []
        eid = self.eid
        if eid is not None:
            lines.append(
                f"server_owner {_show(eid.eir_server_owner.so_major_id)} minor "
                f"{eid.eir_server_owner.so_minor_id}, scope {_show(eid.eir_server_scope)}"
            )
            for impl in eid.eir_server_impl_id:
                lines.append(f"implementation {impl.nii_name} ({impl.nii_domain})")
        lines.append(
            f"lease_time {self.lease_time} s; "
            + (f"waited {self.grace_waited:.1f} s for grace to end; " if self.grace_waited else "")
            + (
                f"scratch directory {self.scratch_name}"
                if self.scratch_fh
                else f"no scratch directory ({self.scratch_reason})"
            )
        )
        return lines

    async def _make_scratch(self, w: Wire) -> None:
        mkdir = nfs4.CREATE4args(
            nfs4.createtype4(nfs_ftype4.NF4DIR),
            self.scratch_name.encode(),
            encode_fattr4(NFSAttrs()),
        )
        reply = await w.seq([nfs4.PUTFH4args(self.export_fh), mkdir, nfs4.GETFH4args()])
        if reply.status != S.NFS4_OK:
            self.scratch_reason = f"CREATE of a directory in the export: {reply.got}"
            return
        self.scratch_fh = reply.fh()
        # Wait out a grace period: an ordinary OPEN gets NFS4ERR_GRACE until it ends.
        started = time.monotonic()
        probe = w.open_args(b"grace-probe", OPEN4_SHARE_ACCESS_BOTH, create=True)
        while True:
            reply = await w.seq([nfs4.PUTFH4args(self.scratch_fh or b""), probe])
            if reply.status != S.NFS4ERR_GRACE:
                break
            if time.monotonic() - started > self.options.grace_wait:
                raise WireError(
                    f"the server stayed in its grace period for {self.options.grace_wait:g} s "
                    "(OPEN gets NFS4ERR_GRACE); try again later or raise --grace-wait"
                )
            await trio.sleep(1)
        self.grace_waited = time.monotonic() - started if reply.status == S.NFS4_OK else 0.0
        if self.grace_waited < 1:
            self.grace_waited = 0.0
        opened = reply.first(nfs4.OPEN4res)
        if isinstance(opened, nfs4.OPEN4res) and opened.resok is not None:
            await w.seq(
                [
                    nfs4.PUTFH4args(self.scratch_fh or b""),
                    nfs4.LOOKUP4args(b"grace-probe"),
                    nfs4.CLOSE4args(0, opened.resok.stateid),
                ]
            )
            await w.seq([nfs4.PUTFH4args(self.scratch_fh or b""), nfs4.REMOVE4args(b"grace-probe")])

    async def _renew_main(self) -> None:
        """Keep the main client ID's lease (RFC 8881 section 8.3) while checks run: a bare
        SEQUENCE every third of lease_time on the session's last slot (checks use slot 0
        of the main session, so the two never share a slot)."""
        with self._renewer:
            while True:
                await trio.sleep(max(1.0, self.lease_time / 3))
                w = self.main
                if w is None or w.fore is None or w.fore.ca_maxrequests < 2:
                    return
                with contextlib.suppress(NFSClientError):
                    await w.seq([], slot=w.fore.ca_maxrequests - 1)

    def mark(self) -> int:
        """Where the wires of the next check begin (for ``release``)."""
        return len(self.wires)

    async def release(self, mark: int) -> None:
        """Destroy the client IDs a check made (the wires after ``mark``); never raises."""
        done, self.wires = self.wires[mark:], self.wires[:mark]
        for w in reversed(done):
            with trio.CancelScope(shield=True), trio.move_on_after(self.options.timeo):
                await w.destroy()

    def need_scratch(self) -> bytes:
        """The scratch directory's filehandle.

        Raises:
            NotSupported: the export is not writable.
        """
        if self.scratch_fh is None:
            raise NotSupported(f"needs a writable export: {self.scratch_reason}")
        return self.scratch_fh

    def file_name(self, stem: str) -> bytes:
        return f"{stem}-{next(self._files)}".encode()

    # -- the referral walk ------------------------------------------------------------
    async def referrals(self) -> list[Referral]:
        """Junctions to absent file systems below the export, found by a bounded
        breadth-first walk: READDIR asking for rdattr_error, type and fsid (no location
        attribute, so that an absent file system's entry reports NFS4ERR_MOVED in
        rdattr_error, RFC 8881 section 11.4).  At most ``walk_dirs`` directories and
        ``walk_depth`` levels; the scratch directory is skipped."""
        if self._referrals is not None:
            return self._referrals
        assert self.main is not None
        found: list[Referral] = []
        queue: list[tuple[bytes, list[str], int]] = [(self.export_fh, list(self.components), 0)]
        read = 0
        want = bitmap4_from([FATTR4.RDATTR_ERROR, FATTR4.TYPE, FATTR4.FILEHANDLE])
        while queue and read < self.options.walk_dirs:
            fh, path, depth = queue.pop(0)
            read += 1
            cookie, verf = 0, bytes(8)
            for _page in range(50):
                reply = await self.main.seq(
                    [nfs4.PUTFH4args(fh), nfs4.READDIR4args(cookie, verf, 8192, 32768, want)]
                )
                rd = reply.op(2)
                if not isinstance(rd, nfs4.READDIR4res) or rd.resok is None:
                    break
                for entry in rd.resok.reply.entries:
                    cookie = entry.cookie
                    name = entry.name.decode(errors="replace")
                    if name == self.scratch_name:
                        continue
                    try:
                        attrs = decode_fattr4(entry.attrs)
                    except NFSClientError:
                        continue
                    if attrs.rdattr_error == S.NFS4ERR_MOVED:
                        found.append(
                            Referral(fh, entry.name, [*path, name], "rdattr_error NFS4ERR_MOVED")
                        )
                    elif (
                        attrs.type == nfs_ftype4.NF4DIR
                        and attrs.filehandle
                        and depth + 1 <= self.options.walk_depth
                    ):
                        queue.append((attrs.filehandle, [*path, name], depth + 1))
                verf = rd.resok.cookieverf
                if rd.resok.reply.eof or not rd.resok.reply.entries:
                    break
        self.walk_summary = (
            f"{read} directories read (at most {self.options.walk_dirs}, depth "
            f"{self.options.walk_depth}), {len(found)} referral(s)"
        )
        self._referrals = found
        return found

    # -- teardown ---------------------------------------------------------------------
    async def close(self) -> None:
        """Remove the scratch directory (what the checks left in it) and destroy every
        client ID the run made; never raises, bounded by ``timeo`` per call."""
        self._renewer.cancel()
        with trio.CancelScope(shield=True):
            if self.scratch_fh is not None and self.main is not None:
                with (
                    contextlib.suppress(NFSClientError),
                    trio.move_on_after(self.options.timeo * 3),
                ):
                    # A fresh client ID: the main one may have been lost (a server that
                    # drops it is what a check may find); where the export is now, which
                    # the migration checks may have changed.
                    host, port, path = self.cache.get(
                        "location", (self.host, self.port, self.components)
                    )
                    w = await self.wire("cleanup", host=host, port=port)
                    export_fh = await w.lookup_path(path)
                    scratch = await w.lookup_path([*path, self.scratch_name])
                    await self._remove_tree(w, scratch, depth=0)
                    await w.seq(
                        [nfs4.PUTFH4args(export_fh), nfs4.REMOVE4args(self.scratch_name.encode())]
                    )
            for w in reversed(self.wires):
                with trio.move_on_after(self.options.timeo):
                    await w.destroy()

    async def _remove_tree(self, w: Wire, fh: bytes, depth: int) -> None:
        want = bitmap4_from([FATTR4.TYPE, FATTR4.FILEHANDLE])
        reply = await w.seq(
            [nfs4.PUTFH4args(fh), nfs4.READDIR4args(0, bytes(8), 8192, 65536, want)]
        )
        rd = reply.op(2)
        if not isinstance(rd, nfs4.READDIR4res) or rd.resok is None:
            return
        for entry in rd.resok.reply.entries:
            attrs = decode_fattr4(entry.attrs)
            if attrs.type == nfs_ftype4.NF4DIR and attrs.filehandle and depth < 3:
                await self._remove_tree(w, attrs.filehandle, depth + 1)
            await w.seq([nfs4.PUTFH4args(fh), nfs4.REMOVE4args(entry.name)])


def _show(value: bytes) -> str:
    text = value.rstrip(b"\0").decode("ascii", "replace")
    if text.isprintable() and "\ufffd" not in text:
        return repr(text)
    return "0x" + value.hex()

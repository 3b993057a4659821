"""The multi-instance cluster and its control API: migrate, referral, reboot, ...

A :class:`Cluster` runs several :class:`~contrib.testserver.server.ServerInstance` s in
one trio nursery, sharing one :class:`~contrib.testserver.model.Model` of the file
systems.  Each file system is served by exactly one instance at a time
(``location_of``); the others present it as absent: a referral, or a migrated file
system if it used to be served there (RFC 8881 section 11.3).

Control actions (all logged as events, ``events.py``):

* :meth:`Cluster.migrate` moves a file system to another instance (RFC 8881 sections
  11.11 - 11.14; seed 001 sections 4.2.1 - 4.2.7), with or without Transparent State
  Migration, with or without the sessions, merging into the client's existing client
  ID on the destination or transferring the client ID as a new confirmed one, losing
  chosen stateids, after a freeze window during which the file system answers
  NFS4ERR_DELAY.  Afterwards the source answers NFS4ERR_MOVED for the file system and
  sets SEQ4_STATUS_LEASE_MOVED for every client that held state on it until that
  client fetches a location attribute of it; without full state transfer the
  destination opens a per-FS grace period for reclaims and refuses reclaims of locks
  known to be lost.
* :meth:`Cluster.add_referral` mounts a new file system, served by another instance,
  on a directory (a junction): a referral everywhere else (STATUS4_REFERRAL).
* :meth:`Cluster.reboot`, :meth:`Cluster.expire`, :meth:`Cluster.revoke`,
  :meth:`Cluster.recall_any` (CB_RECALL_ANY to a client, RFC 8881 section 20.6).
* :meth:`Cluster.set_locations` adds location entries (trunkable addresses of the
  current server, or other servers) to fs_locations / fs_locations_info, or replaces
  them.
* :meth:`Cluster.retire_address`: one address of the serving instance stops serving a
  file system (NFS4ERR_MOVED there) while the instance's other addresses go on: a
  path change for the client, not a migration (seed 001 section 4.2.4).
* :meth:`Cluster.expire_filehandles` (volatile filehandles, RFC 8881 section 4.2.3):
  every filehandle of a file system expires now (NFS4ERR_FHEXPIRED on PUTFH where it is
  served), lookups give new ones for the same objects; ``migrate(...,
  new_filehandles=True)`` makes the destination serve new filehandles (a new handle
  class, section 11.11.2); :meth:`Cluster.set_fh_expire_type` changes what the
  fh_expire_type attribute reports.
* :meth:`Cluster.set_server_scope`, :meth:`Cluster.set_so_major_id`,
  :meth:`Cluster.set_so_minor_id`, :meth:`Cluster.move_address`: the reconfiguration
  events of seed 001 section 4.1.3.

Use from tests::

    async with open_cluster(ClusterConfig.simple(["127.0.0.1", "127.0.0.2"], ["a", "b"],
                                                 lease_time=2)) as cluster:
        a, b = cluster.instance("A"), cluster.instance("B")
        port = a.endpoints[0].port
        ...
        report = await cluster.migrate("a", to="B", tsm=True)
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from contrib.testserver.clients import ClientRecord, LostState
from contrib.testserver.events import EventLog
from contrib.testserver.model import (
    FileSystem,
    Model,
    fh_expire_type_text,
    parse_fh_expire_type,
)
from contrib.testserver.security import GssConfig, IdMap
from contrib.testserver.server import (
    Endpoint,
    EndpointConfig,
    InstanceConfig,
    ServerInstance,
    universal_address,
)
from contrib.testserver.state import AnyState, Delegation, LockState, OpenState
from session.xdr.const import (
    FH4_VOL_MIGRATION,
    FH4_VOLATILE_ANY,
    RCA4_TYPE_MASK_RDATA_DLG,
    RCA4_TYPE_MASK_WDATA_DLG,
    nfsstat4,
)

DEFAULT_SCOPE: Final = b"fusenfs-testserver"
LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")


class ControlError(Exception):
    """A control request that cannot be done (unknown name, bad argument)."""


def check_loopback(address: str) -> None:
    """Only 127.0.0.0/8 may be used (DESIGN.md: addresses)."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ControlError(f"{address!r} is not an IPv4 address") from None
    if ip not in LOOPBACK:
        raise ControlError(f"{address} is not a loopback address (127.0.0.0/8 only)")


@dataclass(slots=True)
class FsSpec:
    """A file system to create: ``name``, mount ``path`` (default /export/NAME), the
    instance serving it (default: the first), the ``fh_expire_type`` it reports
    (RFC 8881 section 4.2.3): "persistent" (the default), "volatile-any",
    "vol-migration", "vol-rename", combinations such as
    "volatile-any+noexpire-with-open", or the bitmask (``model.parse_fh_expire_type``),
    and the security flavours it allows, ``sec`` ("krb5p:krb5i", or a list; names of
    ``security.FLAVOURS``; None: every flavour the serving instance accepts; RFC 8881
    section 2.6)."""

    name: str
    path: str | None = None
    served_by: str | None = None
    read_only: bool = False
    fh_expire_type: str | int = "persistent"
    sec: str | list[str] | None = None


@dataclass(slots=True)
class ClusterConfig:
    """Instances and file systems of a cluster; ``lease_time`` (seconds) and
    ``grace_time`` apply to instances that do not set their own, ``gss`` (RPCSEC_GSS,
    ``security.GssConfig``) to instances without one.  ``users`` (name -> (uid, gid)),
    ``nfs4_domain`` and ``local_realms`` make the id map of owners and Kerberos
    principals (``security.IdMap``)."""

    instances: list[InstanceConfig]
    filesystems: list[FsSpec]
    lease_time: int = 90
    grace_time: float | None = None
    server_scope: bytes = DEFAULT_SCOPE
    gss: GssConfig | None = None
    users: dict[str, tuple[int, int]] = field(default_factory=dict)
    nfs4_domain: str = "fusenfs.test"
    local_realms: list[str] = field(default_factory=list)

    @classmethod
    def simple(
        cls,
        addresses: Sequence[str],
        filesystems: Sequence[str],
        *,
        lease_time: int = 90,
        grace_time: float | None = None,
        ports: Sequence[int] | None = None,
        gss: GssConfig | None = None,
        sec: str | None = None,
    ) -> ClusterConfig:
        """One instance per address, named A, B, C...; file systems served by A, each
        allowing the flavours ``sec`` (None: all the instances accept); RPCSEC_GSS
        with ``gss`` on every instance."""
        instances = [
            InstanceConfig(
                name=chr(ord("A") + i),
                endpoints=[EndpointConfig(addr, ports[i] if ports else 0)],
                lease_time=lease_time,
                grace_time=grace_time,
            )
            for i, addr in enumerate(addresses)
        ]
        return cls(
            instances,
            [FsSpec(n, sec=sec) for n in filesystems],
            lease_time,
            grace_time,
            gss=gss,
        )


@dataclass(slots=True)
class ClientTransfer:
    """How one client's state went from the source to the destination."""

    co_ownerid: str
    source_clientid: int
    dest_clientid: int | None
    how: str
    sessions: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MigrationReport:
    """What :meth:`Cluster.migrate` did (also in the event log)."""

    fs: str
    source: str
    destination: str
    tsm: bool
    transfer_session: bool
    merge_client: bool
    freeze: float
    clients: list[ClientTransfer] = field(default_factory=list)
    transferred: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    lease_moved: list[int] = field(default_factory=list)
    grace: bool = False
    new_filehandles: bool = False
    fh_epoch: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "fs": self.fs,
            "source": self.source,
            "destination": self.destination,
            "tsm": self.tsm,
            "transfer_session": self.transfer_session,
            "merge_client": self.merge_client,
            "freeze": self.freeze,
            "clients": [
                {
                    "co_ownerid": c.co_ownerid,
                    "source_clientid": f"{c.source_clientid:#x}",
                    "dest_clientid": f"{c.dest_clientid:#x}" if c.dest_clientid else None,
                    "how": c.how,
                    "sessions": c.sessions,
                }
                for c in self.clients
            ],
            "transferred": self.transferred,
            "lost": self.lost,
            "lease_moved": [f"{cid:#x}" for cid in self.lease_moved],
            "grace": self.grace,
            "new_filehandles": self.new_filehandles,
            "fh_epoch": self.fh_epoch,
        }


@dataclass(slots=True)
class FhExpiryReport:
    """What :meth:`Cluster.expire_filehandles` did (also in the event log).

    Attributes:
        fs: the file system.
        instance: the instance serving it (where old handles get NFS4ERR_FHEXPIRED).
        epoch: the new filehandle epoch.
        fh_expire_type: what the file system reports, e.g. "FH4_VOLATILE_ANY".
        kept_open: fileids whose old handles stay valid while open
            (FH4_NOEXPIRE_WITH_OPEN).
        forced: done although fh_expire_type does not allow it (no FH4_VOLATILE_ANY).
    """

    fs: str
    instance: str
    epoch: int
    fh_expire_type: str
    kept_open: list[int] = field(default_factory=list)
    forced: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "fs": self.fs,
            "instance": self.instance,
            "epoch": self.epoch,
            "fh_expire_type": self.fh_expire_type,
            "kept_open": [f"{fileid:#x}" for fileid in self.kept_open],
            "forced": self.forced,
        }


class Cluster:
    """Server instances sharing one model of the file systems (module docstring)."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.server_scope = config.server_scope
        self.model = Model(IdMap.from_config(config.users, config.nfs4_domain, config.local_realms))
        self.events = EventLog()
        self.instances: dict[str, ServerInstance] = {}
        self._location: dict[str, ServerInstance] = {}
        self._extra_locations: dict[str, list[list[str]]] = {}
        self._replaced_locations: set[str] = set()
        self._frozen: dict[str, float] = {}
        self._migrating: set[str] = set()
        #: (file system, instance) -> the filehandle epoch that instance served the
        #: file system with last: its handle class (fs_locations_info, 11.11.2).
        self._served_epoch: dict[tuple[str, str], int] = {}
        for i, icfg in enumerate(config.instances):
            if icfg.name in self.instances:
                raise ControlError(f"two instances named {icfg.name}")
            for ep in icfg.endpoints:
                check_loopback(ep.address)
            if icfg.gss is None:
                icfg.gss = config.gss
            self.instances[icfg.name] = ServerInstance(self, i, icfg)
        if not self.instances:
            raise ControlError("a cluster needs at least one instance")
        for spec in config.filesystems:
            self.add_filesystem(
                spec.name,
                spec.path,
                spec.served_by,
                read_only=spec.read_only,
                fh_expire_type=spec.fh_expire_type,
                sec=spec.sec,
            )

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, nursery: trio.Nursery) -> None:
        """Bind every instance's endpoints and start serving in ``nursery``."""
        for inst in self.instances.values():
            await inst.start(nursery)
        self.events.emit(
            None,
            "cluster-started",
            "; ".join(
                f"{inst.name} on {', '.join(f'{ep.address}:{ep.port}' for ep in inst.endpoints)}"
                for inst in self.instances.values()
            ),
        )

    # -- lookups ------------------------------------------------------------------------
    def instance(self, name_or_address: str) -> ServerInstance:
        """An instance by name ("A") or by one of its addresses ("127.0.0.2")."""
        inst = self.instances.get(name_or_address)
        if inst is not None:
            return inst
        for inst in self.instances.values():
            for ep in inst.endpoints:
                if name_or_address in (ep.address, f"{ep.address}:{ep.port}"):
                    return inst
        raise ControlError(f"no instance named or listening on {name_or_address!r}")

    def instance_for_uaddr(self, server: str) -> ServerInstance | None:
        for inst in self.instances.values():
            for ep in inst.endpoints:
                if server in (ep.uaddr(), ep.address if ep.port == 2049 else ""):
                    return inst
        return None

    def filesystem(self, name: str) -> FileSystem:
        try:
            return self.model.filesystem(name)
        except KeyError:
            raise ControlError(f"no file system named {name!r}") from None

    def location_of(self, fs_name: str) -> ServerInstance | None:
        return self._location.get(fs_name)

    def location_entries(self, fs: FileSystem) -> list[list[str]]:
        """Location entries of a file system: the serving instance's addresses that
        serve it (one entry: they reach the same server), then the extra entries; only
        the extra entries if :meth:`set_locations` replaced the list."""
        entries: list[list[str]] = []
        if fs.index == 0:
            return entries
        serving = self._location.get(fs.name)
        if serving is not None and fs.name not in self._replaced_locations:
            entries.append([ep.uaddr() for ep in serving.endpoints if fs.name not in ep.retired])
        entries.extend(list(e) for e in self._extra_locations.get(fs.name, []))
        return entries

    def is_frozen(self, fs_name: str) -> bool:
        return fs_name in self._frozen

    def handle_class(self, fs: FileSystem, owner: ServerInstance | None) -> int:
        """FSLI4BX_CLHANDLE of a location (RFC 8881 sections 11.11.2 and 11.17): the
        filehandle epoch the instance last served the file system with (the current one
        for an instance that never served it, or a server outside the cluster), as a
        byte 1 - 255.  Equal classes: filehandles valid at one are valid at the other."""
        epoch = fs.fh_epoch
        if owner is not None:
            epoch = self._served_epoch.get((fs.name, owner.name), epoch)
        return epoch % 255 + 1

    # -- building -----------------------------------------------------------------------
    def add_filesystem(
        self,
        name: str,
        path: str | None = None,
        served_by: str | None = None,
        *,
        read_only: bool = False,
        fh_expire_type: str | int = "persistent",
        sec: str | Sequence[str] | None = None,
    ) -> FileSystem:
        """Create a file system mounted on ``path`` (default /export/NAME), reporting
        ``fh_expire_type`` and allowing the flavours ``sec`` (see :class:`FsSpec`).

        Raises:
            ControlError: a bad name, path, fh_expire_type or flavour.
        """
        inst = self.instance(served_by) if served_by else next(iter(self.instances.values()))
        try:
            fs = self.model.add_filesystem(
                name,
                path or f"/export/{name}",
                read_only=read_only,
                fh_expire_type=fh_expire_type,
                sec=sec,
            )
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        self._location[name] = inst
        self._served_epoch[(name, inst.name)] = fs.fh_epoch
        return fs

    def add_referral(
        self, path: str, fs_name: str, served_by: str, target_path: str | None = None
    ) -> FileSystem:
        """Make ``path`` a junction to a new file system ``fs_name`` served by
        ``served_by``: on every other instance a referral (RFC 8881 sections 11.3,
        11.5.6 and 11.18): LOOKUP crosses into an absent file system, GETATTR of
        fs_locations there gives ``served_by``'s addresses, fs_status says absent with
        STATUS4_REFERRAL, any other use NFS4ERR_MOVED.

        A ``path`` in the pseudo-fs (``/export/r``) is the file system's mount point on
        every instance.  A ``path`` inside an exported file system (``/export/a/ref``)
        becomes a junction there, and the file system is also mounted in the pseudo-fs
        at ``target_path`` (default ``/export/FS_NAME``): the rootpath its server offers,
        since the referring file system is absent on the target server.
        """
        inst = self.instance(served_by)
        if self.model.inside_export(path):
            fs = self.add_filesystem(fs_name, target_path or f"/export/{fs_name}", inst.name)
            try:
                self.model.add_junction(path, fs)
            except ValueError as exc:
                raise ControlError(str(exc)) from None
        else:
            fs = self.add_filesystem(fs_name, path, inst.name)
        others = [i.name for i in self.instances.values() if i is not inst]
        self.events.emit(
            None,
            "referral",
            f"{path} is now a junction to file system {fs_name} on {inst.name} "
            f"({', '.join(ep.uaddr() for ep in inst.endpoints)}:/{'/'.join(fs.path)}); "
            f"a referral on {', '.join(others) or 'no other instance'}",
            fs=fs_name,
            path=path,
            served_by=inst.name,
        )
        return fs

    def set_locations(
        self, fs_name: str, entries: Sequence[Sequence[str]], *, replace: bool = False
    ) -> None:
        """Extra location entries for a file system: each entry lists server strings
        ("127.0.0.3", "127.0.0.3:2050", or an instance name for all its addresses).

        With ``replace`` the entries are the whole list, in this order: the serving
        instance's addresses are not put first (name the instance to list it, e.g.
        after an address where nothing listens: failover, RFC 8881 section 11.5.5).
        """
        fs = self.filesystem(fs_name)
        resolved: list[list[str]] = []
        for entry in entries:
            servers: list[str] = []
            for item in entry:
                if item in self.instances:
                    servers.extend(ep.uaddr() for ep in self.instances[item].endpoints)
                    continue
                host, _, port = item.partition(":")
                check_loopback(host)
                servers.append(universal_address(host, int(port)) if port else host)
            resolved.append(servers)
        self._extra_locations[fs.name] = resolved
        if replace:
            self._replaced_locations.add(fs.name)
        else:
            self._replaced_locations.discard(fs.name)
        self.events.emit(
            None,
            "locations",
            f"{'location entries' if replace else 'extra location entries'} for {fs_name}: "
            f"{resolved} (RFC 8881 section 11.16)",
            fs=fs_name,
            entries=resolved,
            replace=replace,
        )

    def retire_address(self, fs_name: str, address: str) -> None:
        """``address`` stops serving ``fs_name``; its instance goes on serving it at its
        other addresses (seed 001 section 4.2.4: "a specific server address being used
        becomes unavailable to service a particular file system").

        At ``address`` the file system is then absent: its operations get
        NFS4ERR_MOVED, fs_status says absent but not STATUS4_REFERRAL, and the location
        entries (everywhere) list the instance's remaining addresses.  Those reach the
        same server, so a client sees a path change with its state intact: session
        trunking when the remaining address has the same so_minor_id, client ID
        trunking otherwise (RFC 8881 section 2.10.5).  A migration of the file system
        undoes it.

        Raises:
            ControlError: no such address, the file system is not served by its
                instance, or no other address of it would serve the file system.
        """
        fs = self.filesystem(fs_name)
        inst = self.instance(address)
        ep = _endpoint(inst, address)
        if self._location.get(fs.name) is not inst:
            raise ControlError(f"{fs_name} is not served by {inst.name}")
        if not any(e is not ep and fs.name not in e.retired for e in inst.endpoints):
            raise ControlError(f"no other address of {inst.name} would serve {fs_name}")
        ep.retired.add(fs.name)
        inst.event(
            "address-retired",
            f"{ep.address}:{ep.port} no longer serves {fs_name} (NFS4ERR_MOVED there); "
            f"{inst.name} still serves it at "
            + ", ".join(
                f"{e.address}:{e.port}/{e.so_minor_id}"
                for e in inst.endpoints
                if fs.name not in e.retired
            )
            + " (seed 001 section 4.2.4)",
            fs=fs_name,
            address=f"{ep.address}:{ep.port}",
        )

    # -- migration ----------------------------------------------------------------------
    async def migrate(
        self,
        fs_name: str,
        to: str,
        *,
        tsm: bool = True,
        transfer_session: bool = True,
        merge_client: bool = True,
        lose_stateids: Sequence[str | bytes] = (),
        freeze: float = 0.0,
        new_filehandles: bool = False,
    ) -> MigrationReport:
        """Move ``fs_name`` to instance ``to`` (see the module docstring).

        Args:
            tsm: Transparent State Migration: stateids keep their values on the
                destination (RFC 8881 section 11.12; seed 001 section 4.2.1).
            transfer_session: with TSM, the client's sessions are copied to the
                destination, their slots relaxed until used (seed 001 section 4.2.7).
            merge_client: with TSM, the state joins the client's existing confirmed
                client ID on the destination (EXCHANGE_ID there returns it); else the
                client ID is transferred as a new confirmed one (seed 001 4.2.2).
            lose_stateids: stateids (hex of ``other``) not transferred: on the
                destination they are revoked (NFS4ERR_ADMIN_REVOKED, the SEQ4_STATUS
                revoked-state bits) and may be reclaimed in a per-FS grace period.
            freeze: seconds during which operations on the file system get
                NFS4ERR_DELAY before the transfer happens (seed 001 section 4.2.7).
            new_filehandles: the destination serves the file system with new
                filehandles (a new filehandle epoch): every old handle of it gets
                NFS4ERR_FHEXPIRED there (on PUTFH), lookups give the new ones (same
                fileids, same fsid), and fs_locations_info reports source and
                destination in different handle classes (RFC 8881 section 11.11.2:
                then "all filehandles are assumed to expire as part of the file system
                transition", whatever fh_expire_type says, FH4_NOEXPIRE_WITH_OPEN
                included).  Stateids are not tied to handles and migrate as usual.
                Without it filehandles stay valid (the same handle class), also for a
                file system reporting FH4_VOL_MIGRATION.

        Raises:
            ControlError: unknown names, already there, or a migration in progress.
        """
        fs = self.filesystem(fs_name)
        src = self._location.get(fs_name)
        dst = self.instance(to)
        if src is None:
            raise ControlError(f"{fs_name} is not served anywhere")
        if src is dst:
            raise ControlError(f"{fs_name} is already on {dst.name}")
        if fs_name in self._migrating:
            raise ControlError(f"{fs_name} is already being migrated")
        lost_others = {bytes.fromhex(x) if isinstance(x, str) else bytes(x) for x in lose_stateids}
        report = MigrationReport(
            fs_name, src.name, dst.name, tsm, tsm and transfer_session, merge_client, freeze
        )
        report.new_filehandles = new_filehandles
        self._migrating.add(fs_name)
        try:
            if freeze > 0:
                self._frozen[fs_name] = freeze
                self.events.emit(
                    src.name,
                    "freeze",
                    f"{fs_name} frozen for {freeze:g} s: its operations get NFS4ERR_DELAY "
                    "while state is transferred (seed 001 section 4.2.7)",
                    fs=fs_name,
                    seconds=freeze,
                )
                try:
                    await trio.sleep(freeze)
                finally:
                    self._frozen.pop(fs_name, None)
            self._transfer(fs, src, dst, report, lost_others)
        finally:
            self._migrating.discard(fs_name)
            self._frozen.pop(fs_name, None)
        return report

    def _transfer(
        self,
        fs: FileSystem,
        src: ServerInstance,
        dst: ServerInstance,
        report: MigrationReport,
        lost_others: set[bytes],
    ) -> None:
        """The atomic part of a migration."""
        records: list[AnyState] = src.state.for_fs(fs.name)
        holders: dict[int, ClientRecord] = {}
        for st in records:
            rec = src.clients.get(st.clientid)
            if rec is not None:
                holders[rec.clientid] = rec
        self._location[fs.name] = dst
        for ep in (*src.endpoints, *dst.endpoints):
            ep.retired.discard(fs.name)
        src.migrated_away.add(fs.name)
        dst.migrated_away.discard(fs.name)
        dst.fs_arrived(fs.name)
        if report.new_filehandles:
            fs.forget_kept_handles()
            fs.expire_filehandles(
                (), cause=f"the migration from {src.name} to {dst.name} with new filehandles"
            )
        self._served_epoch[(fs.name, dst.name)] = fs.fh_epoch
        report.fh_epoch = fs.fh_epoch
        mode = (
            "with Transparent State Migration"
            + (
                ", sessions transferred"
                if report.transfer_session
                else ", sessions not transferred"
            )
            + (", into existing client IDs" if report.merge_client else ", client IDs transferred")
            if report.tsm
            else "without state transfer (clients reclaim in a per-FS grace period)"
        ) + (", with new filehandles" if report.new_filehandles else "")
        self.events.emit(
            None,
            "migrate",
            f"file system {fs.name} moved from {src.name} to {dst.name} {mode} "
            f"(RFC 8881 section 11.12)",
            fs=fs.name,
            source=src.name,
            destination=dst.name,
            tsm=report.tsm,
            new_filehandles=report.new_filehandles,
        )
        if report.new_filehandles:
            volatile = fs.fh_expire_type & (FH4_VOL_MIGRATION | FH4_VOLATILE_ANY)
            dst.event(
                "fh-expired",
                f"{dst.name} serves {fs.name} with new filehandles (epoch {fs.fh_epoch}): old "
                f"ones get NFS4ERR_FHEXPIRED here, lookups give the new ones (same fileids, "
                f"same fsid); fs_locations_info puts {src.name} and {dst.name} in different "
                "handle classes (RFC 8881 section 11.11.2)"
                + (
                    ""
                    if volatile
                    else f"; note: {fs.name} reports "
                    f"{fh_expire_type_text(fs.fh_expire_type)}, so only a client reading the "
                    "handle classes can expect this"
                ),
                fs=fs.name,
                epoch=fs.fh_epoch,
                cause="migration",
            )
        for rec in holders.values():
            rec.lease_moved.add(fs.name)
            report.lease_moved.append(rec.clientid)
            src.event(
                "lease-moved-set",
                f"SEQ4_STATUS_LEASE_MOVED set for client {rec.clientid:#x} until it fetches "
                f"the locations of {fs.name} (RFC 8881 section 18.46.3, seed 001 4.2.5)",
                clientid=rec.clientid,
                fs=fs.name,
            )
        for st in records:
            src.state.remove(st)
        lost_before: list[LostState] = []
        for st in records:
            holder = holders.get(st.clientid)
            if st.revoked is not None and holder is not None:
                lost_before.append(_lost_state(holder, st))
        if not report.tsm:
            reclaimers = {rec.co_ownerid for rec in holders.values()}
            for rec in holders.values():
                report.clients.append(
                    ClientTransfer(rec.owner_text(), rec.clientid, None, "not transferred")
                )
            report.lost = [st.other.hex() for st in records]
            dst.start_grace(fs.name, reclaimers, lost_before)
            report.grace = True
            return
        clientid_map: dict[int, ClientRecord] = {}
        for rec in holders.values():
            target, how = self._destination_client(rec, src, dst, report.merge_client)
            clientid_map[rec.clientid] = target
            target.last_renewal = dst.now()
            transfer = ClientTransfer(rec.owner_text(), rec.clientid, target.clientid, how)
            if report.transfer_session:
                for session in list(rec.sessions.values()):
                    moved = session.copy_for_transfer(src.name)
                    moved.clientid = target.clientid
                    dst.primary_node.sessions[moved.sessionid] = moved
                    target.sessions[moved.sessionid] = moved
                    transfer.sessions.append(moved.sessionid.hex())
            report.clients.append(transfer)
            dst.event(
                "client-transfer",
                f"state of {rec.owner_text()} (client {rec.clientid:#x} on {src.name}) {how} "
                f"{target.clientid:#x}"
                + (
                    f"; session(s) {', '.join(transfer.sessions)} transferred, slots relaxed "
                    "until used (seed 001 section 4.2.7)"
                    if transfer.sessions
                    else "; no session transferred"
                ),
                source_clientid=rec.clientid,
                clientid=target.clientid,
                how=how,
            )
        lost_now: list[AnyState] = []
        for st in records:
            new_owner = clientid_map.get(st.clientid)
            if new_owner is None:
                continue
            st.clientid = new_owner.clientid
            if st.other in lost_others and st.revoked is None:
                status = (
                    nfsstat4.NFS4ERR_DELEG_REVOKED
                    if isinstance(st, Delegation)
                    else nfsstat4.NFS4ERR_ADMIN_REVOKED
                )
                st.revoked = status
                if isinstance(st, LockState):
                    st.ranges.clear()
                lost_now.append(st)
                report.lost.append(st.other.hex())
            else:
                report.transferred.append(st.other.hex())
            dst.state.add(st)
            if isinstance(st, Delegation) and st.revoked is None and st.recall_started is not None:
                st.recall_started = None
                dst.recall(st)
        for st in lost_now:
            dst.event(
                "stateid-lost",
                f"{st.kind()} stateid {st.other.hex()} not transferred: revoked on {dst.name} "
                "(SEQ4_STATUS revoked-state bits; reclaimable in the per-FS grace period)",
                stateid=st.other.hex(),
                clientid=st.clientid,
            )
        if lost_now or lost_before:
            reclaimers = set()
            for st in lost_now:
                owner = dst.clients.get(st.clientid)
                if owner is not None:
                    reclaimers.add(owner.co_ownerid)
            dst.start_grace(fs.name, reclaimers, lost_before)
            report.grace = True

    def _destination_client(
        self, rec: ClientRecord, src: ServerInstance, dst: ServerInstance, merge: bool
    ) -> tuple[ClientRecord, str]:
        existing = dst.clients.confirmed_for(rec.co_ownerid)
        if existing is not None:
            how = (
                "merged into existing client ID"
                if merge
                else (
                    "merged into existing client ID (already known on the destination, so it "
                    "cannot be transferred as a new one)"
                )
            )
            return existing, how
        target = ClientRecord(
            clientid=dst.clients.new_clientid(),
            co_ownerid=rec.co_ownerid,
            co_verifier=rec.co_verifier,
            principal=rec.principal,
            confirmed=True,
            cs_seqid=rec.cs_seqid,
            last_renewal=dst.now(),
            eia_flags=rec.eia_flags,
            impl_id=list(rec.impl_id),
            reclaim_complete=True,
            origin=f"transferred from {src.name}",
            mach_cred=rec.mach_cred,
            mach_enforce=rec.mach_enforce,
            mach_allow=rec.mach_allow,
        )
        unconf = dst.clients.unconfirmed_for(rec.co_ownerid)
        if unconf is not None:
            dst.clients.remove(unconf)
        dst.clients.add(target)
        return target, "transferred as new confirmed client ID"

    # -- volatile filehandles, RFC 8881 section 4.2.3 ------------------------------------
    def expire_filehandles(self, fs_name: str, *, force: bool = False) -> FhExpiryReport:
        """Every filehandle of ``fs_name`` expires now (a new filehandle epoch).

        Where the file system is served, PUTFH of an old handle answers
        NFS4ERR_FHEXPIRED (NFS4ERR_STALE if the object is gone); PUTROOTFH + LOOKUP...
        or a LOOKUP from a still-valid handle (the pseudo-fs never expires) gives the new
        handle of the same object: same fileid, same fsid.  Opens, locks and
        delegations are kept by fileid, so their stateids go on working with the new
        handles.  Under FH4_NOEXPIRE_WITH_OPEN the old handles of files open now stay
        valid until they are closed.  Where the file system is absent, old handles are
        still taken by PUTFH (then NFS4ERR_MOVED, section 11.3).

        Args:
            force: expire even though the file system's fh_expire_type lacks
                FH4_VOLATILE_ANY (a server breaking its own promise: for testing how a
                client copes).

        Raises:
            ControlError: unknown file system, or not FH4_VOLATILE_ANY and not ``force``.
        """
        fs = self.filesystem(fs_name)
        serving = self._location.get(fs.name)
        if serving is None:
            raise ControlError(f"{fs_name} is not served anywhere")
        text = fh_expire_type_text(fs.fh_expire_type)
        if not fs.fh_expire_type & FH4_VOLATILE_ANY and not force:
            raise ControlError(
                f"{fs_name} reports fh_expire_type {text}: its filehandles may not expire at "
                "any time (RFC 8881 section 4.2.3); set it to volatile-any first "
                "(set_fh_expire_type / fh-expire-type), or force it"
            )
        forced = not fs.fh_expire_type & FH4_VOLATILE_ANY
        open_ids = {fileid for name, fileid in serving.state.files_open() if name == fs.name}
        epoch = fs.expire_filehandles(open_ids, cause="expire-fh" + (" (forced)" if forced else ""))
        self._served_epoch[(fs.name, serving.name)] = epoch
        report = FhExpiryReport(
            fs.name, serving.name, epoch, text, sorted(fs.fh_kept_open), forced=forced
        )
        serving.event(
            "fh-expired",
            f"every filehandle of {fs.name} expired (new epoch {epoch}): old ones get "
            f"NFS4ERR_FHEXPIRED on {serving.name}, lookups give new ones for the same "
            "fileids (RFC 8881 section 4.2.3)"
            + (
                f"; {len(report.kept_open)} open file(s) keep their old handle while open "
                "(FH4_NOEXPIRE_WITH_OPEN)"
                if report.kept_open
                else ""
            )
            + (
                f"; forced although {fs.name} reports {text}, which promises otherwise"
                if report.forced
                else ""
            ),
            fs=fs.name,
            epoch=epoch,
            cause="expire-fh",
            forced=report.forced,
        )
        return report

    def set_fh_expire_type(self, fs_name: str, value: str | int) -> str:
        """Change what ``fs_name`` reports as fh_expire_type (RFC 8881 section 4.2.3);
        any value :class:`FsSpec` takes.  Filehandles do not change; clients see the new
        value at their next GETATTR of it.  Returns the RFC text ("FH4_VOLATILE_ANY").

        Raises:
            ControlError: unknown file system or a bad value.
        """
        fs = self.filesystem(fs_name)
        try:
            bits = parse_fh_expire_type(value)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        before = fh_expire_type_text(fs.fh_expire_type)
        fs.fh_expire_type = bits
        text = fh_expire_type_text(bits)
        self.events.emit(
            None,
            "fh-expire-type",
            f"{fs.name} now reports fh_expire_type {text} (was {before}; RFC 8881 section "
            "4.2.3); its filehandles are unchanged",
            fs=fs.name,
            fh_expire_type=bits,
        )
        return text

    # -- other control actions ----------------------------------------------------------
    def reboot(self, instance: str) -> ServerInstance:
        inst = self.instance(instance)
        inst.reboot()
        return inst

    def expire(self, instance: str, clientid: int | None = None, purge: bool = False) -> list[int]:
        return self.instance(instance).expire(clientid, purge)

    def revoke(self, instance: str, stateid: str | bytes) -> str:
        other = bytes.fromhex(stateid) if isinstance(stateid, str) else stateid
        try:
            return self.instance(instance).revoke_stateid(other)
        except KeyError as exc:
            raise ControlError(str(exc)) from None

    async def recall_any(
        self,
        instance: str,
        clientid: int | None = None,
        *,
        keep: int = 0,
        mask: Sequence[int] = (RCA4_TYPE_MASK_RDATA_DLG, RCA4_TYPE_MASK_WDATA_DLG),
    ) -> dict[str, str]:
        """Send CB_RECALL_ANY (RFC 8881 section 20.6) from ``instance``: the client
        should return all but ``keep`` of its recallable objects of the types in
        ``mask`` (RCA4_TYPE_MASK_* bit numbers; default read and write delegations).

        Args:
            clientid: the client; None: every confirmed client holding delegations there.

        Returns:
            client ID (hex) -> the client's CB_COMPOUND status, or why it got none.

        Raises:
            ControlError: unknown instance or client ID, a negative ``keep``, or a mask
                bit outside 0 - 31.
        """
        inst = self.instance(instance)
        if keep < 0 or keep > 0xFFFFFFFF:
            raise ControlError(f"objects to keep must be 0 - 4294967295, not {keep}")
        bits = list(mask)
        if any(not 0 <= bit < 32 for bit in bits):
            raise ControlError(f"CB_RECALL_ANY type mask bits are 0 - 31, not {bits}")
        if clientid is not None:
            record = inst.clients.get(clientid)
            if record is None or not record.confirmed:
                raise ControlError(f"no confirmed client ID {clientid:#x} on {inst.name}")
            targets = [record]
        else:
            targets = [
                rec
                for rec in inst.clients
                if rec.confirmed
                and any(
                    isinstance(st, Delegation) for st in inst.state.valid_for_client(rec.clientid)
                )
            ]
        results: dict[str, str] = {}
        for record in targets:
            results[f"{record.clientid:#x}"] = await inst.recall_any(record, keep, bits)
        return results

    def set_server_scope(self, instance: str, scope: bytes) -> None:
        """Change eir_server_scope (seed 001 section 4.1.3: state and filehandles from
        before must be treated as lost)."""
        inst = self.instance(instance)
        inst.server_scope = scope
        inst.event("server-scope", f"server_scope is now {scope!r} (seed 001 section 4.1.3)")

    def set_so_major_id(self, instance: str, major: bytes) -> None:
        """Change server_owner.so_major_id: the addresses now claim to be another server."""
        inst = self.instance(instance)
        inst.so_major_id = major
        inst.event("server-owner", f"so_major_id is now {major!r} (seed 001 section 4.1.3)")

    def set_so_minor_id(self, address: str, minor: int) -> None:
        """Change the so_minor_id reported at one address: it moves to another node of
        its instance (sessions of the old node are not valid there)."""
        inst = self.instance(address)
        for ep in inst.endpoints:
            if address in (ep.address, f"{ep.address}:{ep.port}"):
                ep.so_minor_id = minor
                inst.event(
                    "server-owner",
                    f"{ep.address}:{ep.port} now reports so_minor_id {minor} "
                    "(seed 001 section 4.1.3; RFC 8881 section 2.10.5 trunking)",
                )
                return
        raise ControlError(f"no address {address}")

    def move_address(self, address: str, to: str) -> None:
        """An address moves to another instance (a different server answers there now)."""
        src = self.instance(address)
        dst = self.instance(to)
        for ep in list(src.endpoints):
            if address in (ep.address, f"{ep.address}:{ep.port}"):
                if len(src.endpoints) == 1:
                    raise ControlError(f"{src.name} would be left without an address")
                src.endpoints.remove(ep)
                ep.instance = dst
                ep.retired.clear()
                dst.endpoints.append(ep)
                for conn in list(ep.connections):
                    src.spawn(conn.aclose)
                self.events.emit(
                    None,
                    "address-moved",
                    f"{ep.address}:{ep.port} now belongs to {dst.name} (server_owner "
                    f"{dst.so_major_id!r}; seed 001 section 4.1.3)",
                )
                return
        raise ControlError(f"no address {address}")

    # -- introspection ------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Everything a person wants to see: instances, clients, state, file systems."""
        instances = []
        for inst in self.instances.values():
            clients = []
            for rec in inst.clients:
                valid = inst.state.valid_for_client(rec.clientid)
                revoked = inst.state.revoked_for_client(rec.clientid)
                clients.append(
                    {
                        "clientid": f"{rec.clientid:#x}",
                        "owner": rec.owner_text(),
                        "confirmed": rec.confirmed,
                        "origin": rec.origin,
                        "principal": str(rec.principal[1])
                        if rec.principal[0] == "gss"
                        else f"{rec.principal[0]}:{rec.principal[1]}",
                        "state_protect": "SP4_MACH_CRED" if rec.mach_cred else "SP4_NONE",
                        "sessions": [sid.hex() for sid in rec.sessions],
                        "state": [
                            {
                                "stateid": st.other.hex(),
                                "seqid": st.seqid,
                                "kind": st.kind(),
                                "fs": st.fs,
                            }
                            for st in valid
                        ],
                        "revoked": [
                            {
                                "stateid": st.other.hex(),
                                "kind": st.kind(),
                                "status": st.revoked.name if st.revoked else "",
                            }
                            for st in revoked
                        ],
                        "lease_moved": sorted(rec.lease_moved),
                    }
                )
            instances.append(
                {
                    "name": inst.name,
                    "endpoints": [
                        {
                            "address": ep.address,
                            "port": ep.port,
                            "so_minor_id": ep.so_minor_id,
                            "retired": sorted(ep.retired),
                        }
                        for ep in inst.endpoints
                    ],
                    "so_major_id": inst.so_major_id.decode("utf-8", "replace"),
                    "server_scope": inst.server_scope.decode("utf-8", "replace"),
                    "boot_verifier": inst.boot_verifier.hex(),
                    "lease_time": inst.lease_time,
                    "gss": (
                        {
                            "keytab": inst.config.gss.keytab_name,
                            "principal": inst.config.gss.principal,
                            "contexts": len(inst.gss.handles) if inst.gss else 0,
                        }
                        if inst.config.gss is not None
                        else None
                    ),
                    "serves": sorted(n for n, i in self._location.items() if i is inst),
                    "migrated_away": sorted(inst.migrated_away),
                    "graces": [g.describe() for g in inst.graces],
                    "clients": clients,
                }
            )
        filesystems = [
            {
                "name": fs.name,
                "path": "/" + "/".join(fs.path),
                "fsid": [fs.fsid.major, fs.fsid.minor],
                "served_by": self._location[fs.name].name if fs.name in self._location else None,
                "frozen": fs.name in self._frozen,
                "files": len(fs.inodes),
                "fh_expire_type": fh_expire_type_text(fs.fh_expire_type),
                "fh_epoch": fs.fh_epoch,
                "sec": list(fs.sec) if fs.sec is not None else None,
            }
            for fs in self.model.filesystems.values()
        ]
        return {"instances": instances, "filesystems": filesystems}


def _endpoint(inst: ServerInstance, address: str) -> Endpoint:
    """The endpoint of ``inst`` at ``address`` ("127.0.0.1" or "127.0.0.1:PORT")."""
    for ep in inst.endpoints:
        if address in (ep.address, f"{ep.address}:{ep.port}"):
            return ep
    raise ControlError(f"no address {address}")


def _lost_state(holder: ClientRecord, st: AnyState) -> LostState:
    if isinstance(st, LockState):
        start = min((r.start for r in st.ranges), default=0)
        end = max((r.end for r in st.ranges), default=1 << 64)
        return LostState(holder.co_ownerid, st.owner, st.fs, st.fileid, "lock", start, end)
    if isinstance(st, OpenState):
        return LostState(holder.co_ownerid, st.owner, st.fs, st.fileid, "open")
    return LostState(holder.co_ownerid, b"", st.fs, st.fileid, "delegation")


@contextlib.asynccontextmanager
async def open_cluster(config: ClusterConfig) -> AsyncIterator[Cluster]:
    """Start a cluster in a nursery of its own; stop it when the block exits."""
    cluster = Cluster(config)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()

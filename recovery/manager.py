"""The state manager: where every recovery of a mount happens (DESIGN.md invariant 3).

Recovery must be serialized (seed 000: migration recovery is serialized with state
recovery).  Here each source server has one lock, and every recovery touching it (a
reboot reclaim, a migration away from it) holds that lock while it runs; the file
system being recovered is parked, so its calls wait, while calls for other file
systems keep flowing (issue: "where the protocol allows").

Hooks it installs:

* ``NFSClient.on_moved``: NFS4ERR_MOVED on a file system the client holds: migration
  recovery, promptly and for that file system (seed 001 4.2.5);
* ``NFSClient.on_referral``: NFS4ERR_MOVED while crossing into a new file system
  during LOOKUP: a referral (seed 000, 002);
* ``ServerSession.on_status_flags``: SEQ4_STATUS_LEASE_MOVED starts or feeds one
  discovery task per server (``recovery.discovery``, seed 001 4.2.6); other flags are
  recorded;
* ``ServerSession.on_new_client_id``: a server restart: reclaim in its grace period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from recovery.discovery import CheckFs, Discovery, FsChecked, Idle, LeaseMovedSeen, VerifyDone
from recovery.events import EventLog
from recovery.locations import LocationElement
from recovery.migration import (
    IN_DISCOVERY,
    address_of,
    fetch_locations,
    fs_label,
    identity,
    migrate_fs,
    resolve_referral,
)
from recovery.reclaim import ReclaimReport, reclaim_all
from recovery.tsm import ServerIdentity
from session.client import NFSClient
from session.errors import NFSClientError
from session.gss import GssCredential
from session.mount import FileSystem
from session.session import ServerSession
from session.status import NFS4ErrMoved, NFS4Error
from session.transport import resolve_address
from session.xdr import nfs4
from session.xdr.const import (
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_CB_PATH_DOWN,
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED,
    SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED,
    SEQ4_STATUS_LEASE_MOVED,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
    SEQ4_STATUS_RESTART_RECLAIM_NEEDED,
)
from session.xdr.fattr import NFSAttrs

log = logging.getLogger("recovery")

#: SEQUENCE status flags and what they mean, with the RFC 8881 section that says so.
FLAG_MEANINGS: dict[int, tuple[str, str]] = {
    SEQ4_STATUS_CB_PATH_DOWN: ("the server cannot reach our backchannel", "18.46.3"),
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED: ("lease expired: all state revoked", "18.46.3"),
    SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED: ("lease expired: some state revoked", "18.46.3"),
    SEQ4_STATUS_ADMIN_STATE_REVOKED: ("state revoked by the administrator", "18.46.3"),
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED: ("unreturned delegations revoked", "18.46.3"),
    SEQ4_STATUS_LEASE_MOVED: ("a file system we hold state on migrated", "18.46.3, 11.13"),
    SEQ4_STATUS_RESTART_RECLAIM_NEEDED: ("server restarted: reclaim needed", "18.46.3"),
}

#: Upper bound on discovery passes without the indication clearing, then a pause.
MAX_PASSES_BEFORE_PAUSE = 5


@dataclass
class _ServerTasks:
    """Per-server recovery bookkeeping."""

    session: ServerSession
    lock: trio.Lock = field(default_factory=trio.Lock)
    discovery: Discovery[FileSystem] = field(default_factory=Discovery)
    wake: trio.Event = field(default_factory=trio.Event)
    running: bool = False
    seen_flags: int = 0


class StateManager:
    """Recovery for one mount: reboot reclaim, migration, referral, LEASE_MOVED discovery.

    Args:
        client: the mount's client (its first session already started).
        nursery: where discovery and recovery tasks run.
        log: the event log (a new one by default).
    """

    def __init__(self, client: NFSClient, nursery: trio.Nursery, log: EventLog | None = None):
        self.client = client
        self.nursery = nursery
        self.log = log or EventLog()
        self.servers: dict[str, _ServerTasks] = {}
        self._recovering: dict[int, trio.Event] = {}  # by fs_id

    # ------------------------------------------------------------------ wiring
    def attach(self) -> None:
        """Install the hooks on the client and its first session."""
        self.client.on_moved = self.on_moved
        self.client.on_referral = self.on_referral
        self.client.task_nursery = self.nursery
        self.adopt(self.client.session)

    def adopt(self, session: ServerSession) -> None:
        """Watch a session: its status flags and client ID loss come here."""
        key = address_of(session)
        if key not in self.servers or self.servers[key].session is not session:
            self.servers[key] = _ServerTasks(session)
        session.on_status_flags = lambda flags, s=session: self.note_status_flags(s, flags)
        session.on_callback = self.client.handle_callback

        async def reclaim_after_restart(s: ServerSession = session) -> None:
            await self.recover_client_id(s)

        session.on_new_client_id = reclaim_after_restart
        session.start_renewal()

    def sessions(self) -> list[ServerSession]:
        return [t.session for t in self.servers.values()]

    def tasks_for(self, session: ServerSession) -> _ServerTasks:
        key = address_of(session)
        tasks = self.servers.get(key)
        if tasks is None or tasks.session is not session:
            self.adopt(session)
            tasks = self.servers[key]
        return tasks

    async def session_to(
        self, element: LocationElement
    ) -> tuple[ServerSession, nfs4.EXCHANGE_ID4resok, bool]:
        """A session object for a location and a fresh EXCHANGE_ID result from it.

        An address the mount already uses gets a probing EXCHANGE_ID that changes
        nothing (same owner and verifier: the server returns the existing client ID);
        a new address gets a new ``ServerSession``, connected, with its client ID
        established but no session yet (the caller decides: adopt or create).  On a
        Kerberos mount the new session's machine credential is for the destination's
        principal, ``nfs@`` the location's server name, with the service the mount's
        machine credential has (``NFSClient.machine_credential``): a context with the
        source means nothing there.
        Returns (session, EXCHANGE_ID result, whether the session existed).
        """
        host = await resolve_address(element.host, element.port)
        key = f"{host}:{element.port}"
        known = self.servers.get(key)
        if known is not None:
            return known.session, await known.session.exchange_id_probe(), True
        first = self.client.session
        machine = first.machine_cred
        make_machine = self.client.machine_credential
        if make_machine is not None and isinstance(machine, GssCredential):
            machine = make_machine(element.host, machine.service)
        session = ServerSession(
            host=host,
            port=element.port,
            co_ownerid=first.co_ownerid,
            co_verifier=first.co_verifier,
            options=first.options,
            machine_cred=machine,
        )
        await session.open(self.nursery)
        resok = await session.establish_client_id()
        return session, resok, False

    def known_clientids(self, dest: ServerIdentity, exclude: ServerSession | None) -> set[int]:
        """Client IDs this client already holds on the server behind ``dest``."""
        out: set[int] = set()
        for tasks in self.servers.values():
            s = tasks.session
            if s is exclude or s.exchange_id is None or not s.sessionid:
                continue
            ident = identity(s)
            if (ident.so_major_id, ident.server_scope) == (dest.so_major_id, dest.server_scope):
                out.add(ident.clientid)
        return out

    # ------------------------------------------------------------------ MOVED
    async def on_moved(self, fs: FileSystem, err: NFS4Error) -> None:
        """NFS4ERR_MOVED on ``fs``: recover it now (or wait for the recovery under way)."""
        await self.recover(fs, "NFS4ERR_MOVED")

    async def recover(self, fs: FileSystem, trigger: str) -> None:
        """Migration recovery of ``fs``, parked and serialized with its server's recovery."""
        running = self._recovering.get(fs.fs_id)
        if running is not None:
            await running.wait()
            return
        done = trio.Event()
        self._recovering[fs.fs_id] = done
        self.client.park(fs)
        src = self.client.session_for(fs)
        try:
            async with self.tasks_for(src).lock:
                self.log.record(
                    fs_label(fs),
                    f"migration recovery starts ({trigger})",
                    f"source {address_of(src)}",
                    "RFC 8881 11.5.5, 11.13; seed 001 4.2.5",
                )
                await migrate_fs(self, fs, src, trigger)
        except NFSClientError as e:
            self.log.record(fs_label(fs), "migration recovery failed", str(e), "seed 001 4.2.5")
        except Exception as e:
            # A bug, not the server: say so loudly, but keep the mount (and its other
            # file systems) up; the parked calls are released and fail or retry.
            log.exception("migration recovery of %s failed (a bug in fusenfs)", fs_label(fs))
            self.log.record(fs_label(fs), "migration recovery failed (internal error)", repr(e), "")
        finally:
            parked = self.client.unpark(fs)
            self.log.count("parked_calls", parked)
            del self._recovering[fs.fs_id]
            done.set()

    async def on_referral(self, dir_fh: bytes, name: bytes) -> tuple[bytes, NFSAttrs]:
        """A LOOKUP hit an absent file system: follow the referral (seed 000, 002)."""
        src = self.client.session_for(self.client.fs_of(dir_fh))
        return await resolve_referral(self, src, dir_fh, name)

    # ------------------------------------------------------------------ status flags
    def note_status_flags(self, session: ServerSession, flags: int) -> None:
        """Record new flags; LEASE_MOVED goes to the server's discovery task (4.2.6)."""
        tasks = self.tasks_for(session)
        new = flags & ~tasks.seen_flags
        tasks.seen_flags = flags
        for bit, (meaning, rfc) in FLAG_MEANINGS.items():
            if new & bit:
                self.log.record(
                    "",
                    meaning,
                    f"{address_of(session)} sr_status_flags={flags:#x}",
                    f"RFC 8881 {rfc}",
                )
        if new & SEQ4_STATUS_RECALLABLE_STATE_REVOKED:
            self.nursery.start_soon(self._revoked_delegations, session)
        if flags & SEQ4_STATUS_LEASE_MOVED:
            self.log.count("lease_moved_seen")
            tasks.discovery.receive(
                LeaseMovedSeen(by_discovery=IN_DISCOVERY.get()), self._filesystems_on(session)
            )
            tasks.wake.set()
            if not tasks.running:
                tasks.running = True
                self.nursery.start_soon(self._discovery_task, tasks)

    async def _revoked_delegations(self, session: ServerSession) -> None:
        """SEQ4_STATUS_RECALLABLE_STATE_REVOKED: find the revoked delegations by
        TEST_STATEID and FREE_STATEID them (RFC 8881 section 18.46.3, 10.2.1)."""
        try:
            revoked = await self.client.check_delegations(session)
        except NFSClientError as e:
            self.log.record("", "revoked delegations not checked", str(e), "RFC 8881 18.46.3")
            return
        if not revoked:
            return
        self.log.record(
            "",
            f"{revoked} revoked delegations freed",
            f"{address_of(session)}: TEST_STATEID, FREE_STATEID",
            "RFC 8881 18.46.3, 18.48, 18.38",
        )
        self.log.count("delegations_revoked", revoked)

    def _filesystems_on(self, session: ServerSession) -> list[FileSystem]:
        return [
            fs
            for fs in self.client.superblock.filesystems.values()
            if self.client.session_for(fs) is session
        ]

    async def _discovery_task(self, tasks: _ServerTasks) -> None:
        """The migration discovery task of one server (seed 001 4.2.6)."""
        IN_DISCOVERY.set(True)
        session = tasks.session
        d = tasks.discovery
        passes_seen = d.passes
        while True:
            step = d.next_step()
            if isinstance(step, Idle):
                tasks.wake = trio.Event()
                self.log.record(
                    "",
                    "discovery: LEASE_MOVED cleared; non-operating",
                    address_of(session),
                    "seed 001 4.2.6",
                )
                await tasks.wake.wait()
                continue
            if d.passes - passes_seen >= MAX_PASSES_BEFORE_PAUSE:
                # The indication keeps coming back: do not spin; try again later.
                passes_seen = d.passes
                await trio.sleep(max(1.0, session.lease_time / 4))
            try:
                if isinstance(step, CheckFs):
                    fs = step.fs
                    try:
                        locs = await fetch_locations(session, fs.root_fh)
                        migrated = locs.migrated
                    except NFS4ErrMoved:
                        migrated = True
                    self.log.record(
                        fs_label(fs),
                        f"discovery: {'migrated' if migrated else 'present'}",
                        address_of(session),
                        "seed 001 4.2.6",
                    )
                    d.receive(FsChecked(fs, migrated))
                    if migrated:
                        self.nursery.start_soon(self.recover, fs, "SEQ4_STATUS_LEASE_MOVED")
                else:
                    res = await session.compound([])
                    d.receive(
                        VerifyDone(bool(res.status_flags & SEQ4_STATUS_LEASE_MOVED)),
                        self._filesystems_on(session),
                    )
            except NFSClientError as e:
                self.log.record("", "discovery step failed", str(e), "seed 001 4.2.6")
                await trio.sleep(1)
                d.pending = [fs for fs in d.pending if fs in self._filesystems_on(session)]

    # ------------------------------------------------------------------ reboot
    async def recover_client_id(self, session: ServerSession) -> None:
        """A new client ID on ``session``: reclaim what it serves (RFC 8881 8.4.2.1).

        The new EXCHANGE_ID is compared with the old one (seed 001 section 4.1.3): a
        different server_scope means another server now answers at this address, and
        nothing obtained before can be trusted: the state is treated as lost, not
        reclaimed.  A different so_major_id under the same scope: reclaim (the
        filehandles may still be good).  Same major id: only the minor id, which
        decides trunking, is taken as it now is.
        """
        before, after = session.previous_exchange_id, session.exchange_id
        if before is not None and after is not None:
            if before.eir_server_scope != after.eir_server_scope:
                self.log.record(
                    "",
                    "server_scope changed at this address: state treated as lost, not reclaimed",
                    f"{address_of(session)}: {before.eir_server_scope!r} -> "
                    f"{after.eir_server_scope!r}",
                    "seed 001 4.1.3; RFC 8881 2.10.5",
                )
                self.log.count("state_lost_scope_change")
                return
            if before.eir_server_owner.so_major_id != after.eir_server_owner.so_major_id:
                self.log.record(
                    "",
                    "so_major_id changed under the same scope: attempting reclaims",
                    f"{before.eir_server_owner.so_major_id!r} -> "
                    f"{after.eir_server_owner.so_major_id!r}",
                    "seed 001 4.1.3",
                )
        async with self.tasks_for(session).lock:
            fs_ids = {fs.fs_id for fs in self._filesystems_on(session)}
            opens = [s for s in self.client.state.opens.values() if s.fs_id in fs_ids]
            locks = [lk for lk in self.client.state.locks.values() if lk.open.fs_id in fs_ids]
            delegs = [d for d in self.client.state.delegations.values() if d.fs_id in fs_ids]
            self.log.record(
                "",
                "server restarted: reclaiming",
                f"{address_of(session)}: {len(opens)} opens, {len(locks)} lock owners, "
                f"{len(delegs)} delegations",
                "RFC 8881 8.4.2.1, 10.2.1",
            )
            report = await reclaim_all(self.client, opens, locks, session, delegs)
            self.log.count("reclaims", report.opens_reclaimed + report.locks_reclaimed)
            self.note_reclaim_report("", report, "RFC 8881 8.4.2.1")

    # ------------------------------------------------------------------ reporting
    def note_reclaim_report(self, label: str, report: ReclaimReport, rule: str) -> None:
        """Record what a reclaim pass could not get back; each lost lock by its file.

        A lost lock is not dropped silently: the application is told (EIO) on its next
        use of the file (RFC 8881 section 9.11: a lock not reclaimed is lost).
        """
        if report.errors:
            self.log.record(label, "state not reclaimed", "; ".join(report.errors[:5]), rule)
        for lock in report.lost_locks:
            self.log.record(
                label,
                f"lock lost on {self.client.file_label(lock.open.fh)}",
                f"{lock.lost}; the application gets EIO on its next use of the file",
                f"{rule}; RFC 8881 9.11",
            )

    def statistics(self) -> dict[str, object]:
        """Per-file-system server and history, migrations, counters (for ``fusenfs stats``)."""
        fss = []
        for fs in self.client.superblock.filesystems.values():
            s = self.client.session_for(fs)
            fss.append(
                {
                    "fs": fs_label(fs),
                    "path": "/" + "/".join(fs.path),
                    "server": address_of(s),
                    "history": [{"when": w, "move": m, "kind": k} for w, m, k in fs.history],
                }
            )
        data = self.log.as_dict()
        data["filesystems"] = fss
        data["client"] = {
            "parked_calls": self.client.stats.parked_calls,
            "moved_errors": self.client.stats.moved_errors,
        }
        st = self.client.stats
        data["delegations"] = {
            "held": len(self.client.state.delegations),
            "write": sum(1 for d in self.client.state.delegations.values() if d.write),
            "granted": st.delegations_granted,
            "recalled": st.delegations_recalled,
            "returned": st.delegations_returned,
            "reclaimed": st.delegations_reclaimed,
            "revoked": st.delegations_revoked,
        }
        return data

"""Migration, path changes and referrals: the procedures (RFC 8881 section 11; seed 001 4.2).

Called by the state manager (``recovery.manager``) with the file system parked, one
recovery at a time per source server.  The steps, each recorded as an event:

1. Location discovery: GETATTR(fs_locations, fs_locations_info, fs_status, fsid) with a
   filehandle of the file system, on the server that said NFS4ERR_MOVED (section 11.13;
   seed 002 step 2).  fs_status present means there is nothing to recover.
2. For each location element, best first (``recovery.locations``): EXCHANGE_ID to it,
   compare server_owner and server_scope with the source (section 2.10.5).  Trunkable:
   a path change, not a migration: bind to it, keep all state, no reclaim and no
   RECLAIM_COMPLETE (seed 001 4.2.4).
3. Otherwise a migration: decide TSM from the client ID's confirmation status and
   whether it is already known (seed 001 4.2.2, ``recovery.tsm``); with TSM, try to
   adopt the source's session with BIND_CONN_TO_SESSION, else CREATE_SESSION.
4. State (seed 001 4.2.3): no TSM: reclaim opens and locks in the destination's
   per-file-system grace; TSM with loss reported by SEQ4_STATUS bits: TEST_STATEID every
   stateid of the file system, FREE_STATEID the revoked ones and reclaim them; TSM
   without loss: nothing.  In every case RECLAIM_COMPLETE(rca_one_fs = TRUE).
5. Rebind the file system to the destination's session and unpark: the parked calls
   are rebuilt there with the current stateids (``NFSClient.compound``).

Superblock, inode numbers and open-file objects never change (seed 000; DESIGN.md
invariants 1 and 5): only the binding of a file system to a server does.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recovery.events import MigrationRecord
from recovery.locations import (
    LocationElement,
    choose_order,
    from_fs_locations,
    from_fs_locations_info,
)
from recovery.reclaim import reclaim_all
from recovery.tsm import (
    ServerIdentity,
    StateAction,
    Trunking,
    TsmStatus,
    action_of,
    after_state_merger,
    classify_exchange_id,
    state_action,
    trunking,
)
from session.client import STAT_ATTRS
from session.errors import NFSClientError
from session.mount import FileSystem
from session.session import ServerSession
from session.state import Delegation, LockState, OpenState
from session.status import NFS4Error
from session.xdr import nfs4
from session.xdr.const import (
    EXCHGID4_FLAG_CONFIRMED_R,
    FATTR4,
    fs4_status_type,
    nfsstat4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, decode_fattr4

if TYPE_CHECKING:
    from recovery.manager import StateManager

log = logging.getLogger("recovery")

#: What location discovery asks for (RFC 8881 sections 11.16, 11.17, 11.18).
LOCATION_ATTRS = bitmap4_from(
    [
        FATTR4.FSID,
        FATTR4.FS_LOCATIONS,
        FATTR4.FS_LOCATIONS_INFO,
        FATTR4.FS_STATUS,
        FATTR4.MOUNTED_ON_FILEID,
    ]
)

#: True inside the discovery task, so its own LEASE_MOVED indications are told apart.
IN_DISCOVERY: contextvars.ContextVar[bool] = contextvars.ContextVar("IN_DISCOVERY", default=False)


@dataclass(frozen=True, slots=True)
class Locations:
    """A location-attribute fetch: the status and the elements, best first."""

    status: nfs4.fs4_status | None
    elements: list[LocationElement]
    fs_root: tuple[str, ...]
    attrs: NFSAttrs

    @property
    def migrated(self) -> bool:
        """Absent and not a referral (seed 001 4.2.5, 4.2.6)."""
        s = self.status
        return s is not None and s.fss_absent and s.fss_type != fs4_status_type.STATUS4_REFERRAL


def fs_label(fs: FileSystem) -> str:
    return f"fsid {fs.fsid.major}.{fs.fsid.minor}"


def address_of(session: ServerSession) -> str:
    return f"{session.host}:{session.port}"


def identity(session: ServerSession, resok: nfs4.EXCHANGE_ID4resok | None = None) -> ServerIdentity:
    """The server identity from an EXCHANGE_ID result (the session's own by default)."""
    r = resok or session.exchange_id
    if r is None:
        raise NFSClientError(f"no EXCHANGE_ID result for {address_of(session)}")
    return ServerIdentity(
        so_major_id=r.eir_server_owner.so_major_id,
        so_minor_id=r.eir_server_owner.so_minor_id,
        server_scope=r.eir_server_scope,
        clientid=r.eir_clientid,
        confirmed=bool(r.eir_flags & EXCHGID4_FLAG_CONFIRMED_R),
    )


def locations_from(attrs: NFSAttrs, default_port: int) -> Locations:
    """Location elements from fetched attributes, fs_locations_info preferred."""
    elements: list[LocationElement] = []
    fs_root: tuple[str, ...] = ()
    if attrs.fs_locations_info is not None:
        elements = from_fs_locations_info(attrs.fs_locations_info, default_port)
        fs_root = tuple(attrs.fs_locations_info.fli_fs_root)
    if not elements and attrs.fs_locations is not None:
        elements = from_fs_locations(attrs.fs_locations, default_port)
        fs_root = tuple(attrs.fs_locations.fs_root)
    return Locations(attrs.fs_status, elements, fs_root, attrs)


async def fetch_locations(
    session: ServerSession, fh: bytes, name: bytes | None = None
) -> Locations:
    """GETATTR of the location attributes for the file system of ``fh`` (or of ``fh/name``).

    Sent straight to ``session``, not through the parking path: it must work while the
    file system is parked, and GETATTR of these attributes is allowed on an absent file
    system (RFC 8881 section 11.13; the Linux client does PUTFH + GETATTR too).

    Raises:
        NFS4Error: the server refused (MOVED here means it will not even say where).
    """
    ops: list[nfs4.ArgOp] = [nfs4.PUTFH4args(object=fh)]
    if name is not None:
        ops.append(nfs4.LOOKUP4args(objname=name))
    ops.append(nfs4.GETATTR4args(attr_request=LOCATION_ATTRS))
    res = await session.compound(ops)
    ga = res.resarray[-1]
    if not isinstance(ga, nfs4.GETATTR4res) or ga.resok is None:
        raise NFSClientError("GETATTR of the location attributes returned no attributes")
    return locations_from(decode_fattr4(ga.resok.obj_attributes), session.port)


def stateids_of(opens: Iterable[OpenState], locks: Iterable[LockState]) -> list[nfs4.stateid4]:
    out = [s.stateid for s in opens]
    out += [lk.stateid for lk in locks if lk.stateid is not None]
    return out


async def test_stateids(session: ServerSession, stateids: list[nfs4.stateid4]) -> list[nfsstat4]:
    """TEST_STATEID (RFC 8881 section 18.48): one status per stateid, in order."""
    if not stateids:
        return []
    res = await session.compound([nfs4.TEST_STATEID4args(ts_stateids=stateids)])
    ts = res.resarray[0]
    assert isinstance(ts, nfs4.TEST_STATEID4res) and ts.resok is not None
    return list(ts.resok.tsr_status_codes)


async def free_stateid(session: ServerSession, stateid: nfs4.stateid4) -> None:
    """FREE_STATEID (section 18.38): acknowledge a revoked stateid."""
    try:
        await session.compound([nfs4.FREE_STATEID4args(fsa_stateid=stateid)])
    except NFS4Error as e:
        log.info("FREE_STATEID: %s", e)


class MigrationFailed(NFSClientError):
    """No location of the file system could be used."""


async def migrate_fs(mgr: StateManager, fs: FileSystem, src: ServerSession, trigger: str) -> bool:
    """Recover ``fs`` after NFS4ERR_MOVED or LEASE_MOVED discovery; True if it moved.

    Raises:
        MigrationFailed: no location worked (each attempt is in the event log).
        NFS4Error: the source refused to give locations.
    """
    label = fs_label(fs)
    rec = MigrationRecord(fs=label, kind="migration", source=address_of(src), trigger=trigger)
    rec.started = time.monotonic()
    locs = await fetch_locations(src, fs.root_fh)
    status = locs.status
    mgr.log.record(
        label,
        "fetched location attributes",
        f"fs_status absent={status.fss_absent if status else '?'} "
        f"type={status.fss_type.name if status else '?'}; "
        f"{len(locs.elements)} location elements: "
        + ", ".join(f"{e.address()}:/{'/'.join(e.fs_path)}" for e in locs.elements),
        "RFC 8881 11.13, 11.16-11.18; seed 002",
    )
    if status is not None and not status.fss_absent:
        mgr.log.record(label, "file system still present: nothing to migrate", "", "11.3, 11.18")
        return False
    candidates = choose_order(locs.elements, locs.fs_root or tuple(fs.path))
    for element in candidates:
        try:
            done = await _try_location(mgr, fs, src, element, rec)
        except NFSClientError as e:
            mgr.log.record(label, f"location {element.address()} unusable", str(e), "11.5.5")
            continue
        if done:
            rec.finished = time.monotonic()
            rec.ok = True
            mgr.log.migrations.append(rec)
            fs.history.append((time.time(), f"{rec.source} -> {rec.destination}", rec.kind))
            return True
    rec.finished = time.monotonic()
    rec.error = "no usable location"
    mgr.log.migrations.append(rec)
    raise MigrationFailed(f"{label}: none of {len(candidates)} locations could be used")


async def _try_location(
    mgr: StateManager,
    fs: FileSystem,
    src: ServerSession,
    element: LocationElement,
    rec: MigrationRecord,
) -> bool:
    label = fs_label(fs)
    client = mgr.client
    dest, resok, existed = await mgr.session_to(element)
    if dest is src:
        mgr.log.record(label, f"location {element.address()} is the source itself", "", "11.13")
        return False
    dest_id = identity(dest, resok)
    src_id = identity(src)
    relation = trunking(src_id, dest_id)
    mgr.log.record(
        label,
        f"EXCHANGE_ID to {element.address()}: {relation.value}",
        f"source so_major_id={src_id.so_major_id!r} minor={src_id.so_minor_id} "
        f"scope={src_id.server_scope!r}; destination so_major_id={dest_id.so_major_id!r} "
        f"minor={dest_id.so_minor_id} scope={dest_id.server_scope!r}",
        "RFC 8881 2.10.5; seed 001 4.2.4",
    )
    rec.destination = address_of(dest)
    if relation is not Trunking.NONE:
        # Another path to the same server: the state is where it was.
        if not existed:
            if relation is Trunking.SESSION and await dest.share_session(src):
                rec.session = "same session, new connection"
            else:
                await dest.establish_session()
                rec.session = "new session on the same client ID"
            mgr.adopt(dest)
        rec.kind = "path change"
        rec.decision = relation.value
        client.bind(fs, dest)
        mgr.log.record(label, "path change: no reclaim, no RECLAIM_COMPLETE", "", "seed 001 4.2.4")
        return True

    known = mgr.known_clientids(dest_id, exclude=None if existed else dest)
    decision = classify_exchange_id(dest_id, known)
    mgr.log.record(
        label,
        f"initial migration status: {decision.status.value}",
        decision.evidence,
        decision.rule,
    )
    new_client_id = not existed
    if not existed:
        if decision.status is TsmStatus.TRANSFERRED_CLIENT_ID and await dest.adopt_session(
            src.sessionid, src.slots
        ):
            rec.session = "transferred (BIND_CONN_TO_SESSION accepted)"
        else:
            await dest.establish_session()
            rec.session = "new session (CREATE_SESSION)"
        mgr.log.record(
            label,
            f"session: {rec.session}",
            f"source session {src.sessionid.hex()}",
            "seed 001 4.2.2, 4.2.7",
        )
        mgr.adopt(dest)
    else:
        rec.session = "existing session to the destination"

    opens = client.state.opens_on(fs.fs_id)
    locks = client.state.locks_on(fs.fs_id)
    delegs = client.state.delegations_on(fs.fs_id)
    tsm = decision.status is TsmStatus.TRANSFERRED_CLIENT_ID
    if decision.status is TsmStatus.STATE_MERGER:
        sample = stateids_of(opens, locks)[:1]
        if sample:
            codes = await test_stateids(dest, sample)
            rec.tested += 1
            mgr.log.count("test_stateid")
            merged = after_state_merger(codes[0] == nfsstat4.NFS4_OK)
            mgr.log.record(
                label, merged.status.value, f"{merged.evidence}: {codes[0].name}", merged.rule
            )
            tsm = merged.status is TsmStatus.TRANSFERRED_CLIENT_ID
        else:
            tsm = True  # no state to lose: nothing distinguishes the cases
    rec.decision = "TSM" if tsm else "no TSM"

    # From here on the file system's calls go to the destination.
    client.bind(fs, dest)
    replaced = await client.check_filehandles(fs)
    if replaced:
        mgr.log.record(
            label,
            f"destination has new filehandles: {replaced} found again by path",
            "PUTFH of the file system's root: NFS4ERR_FHEXPIRED",
            "RFC 8881 4.2.3, 11.11.2",
        )
    fresh = await dest.compound([])
    action = state_action(tsm, fresh.status_flags)
    mgr.log.record(label, action_of(action).value, action.evidence, "seed 001 4.2.3")
    kind = action_of(action)
    if kind is StateAction.RECLAIM_ALL:
        report = await reclaim_all(client, opens, locks, dest, delegs)
        rec.reclaimed += report.opens_reclaimed + report.locks_reclaimed
        mgr.log.count("reclaims", report.opens_reclaimed + report.locks_reclaimed)
        mgr.note_reclaim_report(label, report, "seed 001 4.2.1")
        if delegs:
            mgr.log.record(
                label,
                f"delegations: {report.delegations_reclaimed} reclaimed, "
                f"{report.lost_delegations} not regained (dropped)",
                "OPEN(CLAIM_PREVIOUS) with delegate_type",
                "RFC 8881 10.2.1; seed 001 4.2.3",
            )
    elif kind is StateAction.TEST_AND_RECLAIM:
        await _test_and_reclaim(mgr, fs, dest, opens, locks, rec, delegs)
    elif delegs:
        await _verify_delegations(mgr, fs, dest, delegs, rec)
    await dest.reclaim_complete(one_fs=True, fh=fs.root_fh)
    mgr.log.record(label, "RECLAIM_COMPLETE(rca_one_fs=TRUE)", "", "seed 001 4.2.3; RFC 8881 18.51")
    if new_client_id and not tsm:
        await dest.reclaim_complete()
    return True


async def _test_and_reclaim(
    mgr: StateManager,
    fs: FileSystem,
    dest: ServerSession,
    opens: list[OpenState],
    locks: list[LockState],
    rec: MigrationRecord,
    delegs: list[Delegation],
) -> None:
    """TSM with loss: TEST_STATEID all, FREE_STATEID and reclaim the lost (seed 4.2.3).

    A lost delegation is freed; it is reclaimed with its file's open when that was
    lost too, else dropped (section 10.2.1: the file's next open goes to the server).
    """
    label = fs_label(fs)
    lost_delegs = await _verify_delegations(mgr, fs, dest, delegs, rec, drop=False)
    open_codes = await test_stateids(dest, [s.stateid for s in opens])
    with_ids = [lk for lk in locks if lk.stateid is not None]
    lock_codes = await test_stateids(dest, [lk.stateid for lk in with_ids if lk.stateid])
    rec.tested += len(open_codes) + len(lock_codes)
    mgr.log.count("test_stateid", len(open_codes) + len(lock_codes))
    lost_opens = [s for s, c in zip(opens, open_codes, strict=True) if c != nfsstat4.NFS4_OK]
    lost_locks = [lk for lk, c in zip(with_ids, lock_codes, strict=True) if c != nfsstat4.NFS4_OK]
    for state in lost_opens:
        await free_stateid(dest, state.stateid)
    for lk in lost_locks:
        if lk.stateid is not None:
            await free_stateid(dest, lk.stateid)
    rec.freed += len(lost_opens) + len(lost_locks)
    mgr.log.record(
        label,
        f"TEST_STATEID: {len(lost_opens)} opens and {len(lost_locks)} locks lost; freed",
        ", ".join(c.name for c in [*open_codes, *lock_codes]),
        "RFC 8881 18.48, 18.38; seed 001 4.2.3",
    )
    # A lock whose open was lost goes with it; reclaim both.
    lost_ids = {id(s) for s in lost_opens}
    relock = lost_locks + [lk for lk in locks if id(lk.open) in lost_ids and lk not in lost_locks]
    lost_fhs = {s.fh for s in lost_opens}
    for deleg in [d for d in lost_delegs if d.fh not in lost_fhs]:
        await mgr.client.drop_delegation(deleg, dest)
    reclaim_delegs = [d for d in lost_delegs if d.fh in lost_fhs]
    report = await reclaim_all(mgr.client, lost_opens, relock, dest, reclaim_delegs)
    rec.reclaimed += report.opens_reclaimed + report.locks_reclaimed
    mgr.log.count("reclaims", report.opens_reclaimed + report.locks_reclaimed)
    mgr.note_reclaim_report(label, report, "seed 001 4.2.3")


async def _verify_delegations(
    mgr: StateManager,
    fs: FileSystem,
    dest: ServerSession,
    delegs: list[Delegation],
    rec: MigrationRecord,
    drop: bool = True,
) -> list[Delegation]:
    """TEST_STATEID the delegations that should have come with the file system
    (Transparent State Migration, RFC 8881 11.12; seed 001 4.2.3); FREE_STATEID the
    ones the destination does not know.  ``drop``: forget them too (their kept opens
    closed).  Returns the lost ones."""
    codes = await test_stateids(dest, [d.stateid for d in delegs])
    rec.tested += len(codes)
    mgr.log.count("test_stateid", len(codes))
    lost = [d for d, c in zip(delegs, codes, strict=True) if c != nfsstat4.NFS4_OK]
    for deleg in lost:
        await free_stateid(dest, deleg.stateid)
        if drop:
            await mgr.client.drop_delegation(deleg, dest)
    mgr.log.record(
        fs_label(fs),
        f"TEST_STATEID: {len(delegs) - len(lost)} of {len(delegs)} delegations transferred",
        ", ".join(c.name for c in codes),
        "RFC 8881 18.48, 10.2.1; seed 001 4.2.3",
    )
    return lost


async def resolve_referral(
    mgr: StateManager, src: ServerSession, dir_fh: bytes, name: bytes
) -> tuple[bytes, NFSAttrs]:
    """A LOOKUP crossed into an absent file system: follow the referral (section 11.5.6).

    Fetch the junction's locations, connect to a location, look up the file system's
    path there and return its root as if LOOKUP had: a new file system appears under
    the same FUSE tree, like an automount (seed 000: referral vs migration).

    Raises:
        MigrationFailed: no location could be used.
    """
    client = mgr.client
    label = f"referral {name.decode(errors='replace')}"
    locs = await fetch_locations(src, dir_fh, name)
    mgr.log.record(
        label,
        "LOOKUP crossed into an absent file system: a referral",
        f"fs_status type={locs.status.fss_type.name if locs.status else '?'}; locations "
        + ", ".join(f"{e.address()}:/{'/'.join(e.fs_path)}" for e in locs.elements),
        "RFC 8881 11.5.6; seed 000, 002",
    )
    rec = MigrationRecord(
        fs=label, kind="referral", source=address_of(src), trigger="NFS4ERR_MOVED"
    )
    rec.started = time.monotonic()
    for element in locs.elements:
        try:
            dest, _, existed = await mgr.session_to(element)
            if not existed:
                await dest.establish_session()
                await dest.reclaim_complete()
                mgr.adopt(dest)
            ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args()]
            ops += [nfs4.LOOKUP4args(objname=c.encode()) for c in element.fs_path]
            ops += [nfs4.GETFH4args(), nfs4.GETATTR4args(attr_request=STAT_ATTRS)]
            res = await dest.compound(ops)
        except NFSClientError as e:
            mgr.log.record(label, f"location {element.address()} unusable", str(e), "11.5.6")
            continue
        getfh = res.resarray[-2]
        ga = res.resarray[-1]
        assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
        assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
        fh = getfh.resok.object
        attrs = decode_fattr4(ga.resok.obj_attributes)
        if attrs.fsid is not None:
            client.adopt_filesystem(fh, attrs, list(element.fs_path), dest)
        rec.destination = address_of(dest)
        rec.finished = time.monotonic()
        rec.ok = True
        mgr.log.migrations.append(rec)
        mgr.log.record(
            label,
            f"mounted {element.address()}:/{'/'.join(element.fs_path)}",
            f"fsid {attrs.fsid}",
            "11.5.6",
        )
        return fh, attrs
    raise MigrationFailed(f"{label}: none of {len(locs.elements)} locations could be used")


__all__ = ["IN_DISCOVERY", "fetch_locations", "migrate_fs", "resolve_referral"]

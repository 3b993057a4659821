"""Reclaiming open and lock state on a new client ID (RFC 8881 sections 8.4.2, 9.11).

After a server restart (NFS4ERR_STALE_CLIENTID, BADSESSION with an unknown client) the
client has a new client ID and the server is in its grace period.  Every open is
re-established with OPEN(CLAIM_PREVIOUS) by filehandle and every byte-range lock with
LOCK(reclaim=TRUE), then RECLAIM_COMPLETE ends this client's reclaims (section 18.51).
The mount's ``StateTable`` keeps the same ``OpenState``, ``LockState`` and
``Delegation`` objects; only their stateids change, so open FUSE handles continue
without noticing.  Delegations come back with their files' opens (CLAIM_PREVIOUS with
the delegation type, section 10.2.1).

Migration without Transparent State Migration reuses these steps, per file system,
in the destination's per-FS grace (seed 001 section 4.2.3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from session.client import NFSClient, make_locker
from session.session import CompoundResult, ServerSession
from session.state import Delegation, LockState, OpenState
from session.status import NFS4Error
from session.xdr import nfs4
from session.xdr.const import (
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    OPEN4_SHARE_DENY_NONE,
    nfs_lock_type4,
    open_claim_type4,
    open_delegation_type4,
    opentype4,
)

log = logging.getLogger("recovery")


@dataclass(slots=True)
class ReclaimReport:
    """What a reclaim pass did (counts), and what it could not get back."""

    opens_reclaimed: int = 0
    locks_reclaimed: int = 0
    delegations_reclaimed: int = 0
    lost_delegations: int = 0
    lost_opens: list[OpenState] = field(default_factory=list)
    lost_locks: list[LockState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def reclaim_open(
    client: NFSClient,
    state: OpenState,
    session: ServerSession | None = None,
    delegation: Delegation | None = None,
) -> bool:
    """OPEN(CLAIM_PREVIOUS) of ``state.fh`` with the access it held (section 9.11).

    ``delegation``: the delegation held on the file, reclaimed with this open
    (``delegate_type``, section 10.2.1); its stateid is replaced by the regained one.

    Returns:
        True if the server gave the delegation back (False when none was asked for).

    Raises:
        NFS4Error: the server refused the reclaim (e.g. NFS4ERR_NO_GRACE, RECLAIM_BAD).
    """
    kind = open_delegation_type4.OPEN_DELEGATE_NONE
    if delegation is not None:
        kind = (
            open_delegation_type4.OPEN_DELEGATE_WRITE
            if delegation.write
            else open_delegation_type4.OPEN_DELEGATE_READ
        )
    # An open kept only for a delegation has no users: reclaim what the server held.
    access = state.server_access | state.access()
    # No new delegation beyond the one being reclaimed (section 18.16.3).
    wish = OPEN4_SHARE_ACCESS_WANT_NO_DELEG
    if delegation is not None:
        wish = OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE

    def build(session: ServerSession) -> list[nfs4.ArgOp]:
        return [
            nfs4.PUTFH4args(object=state.fh),
            nfs4.OPEN4args(
                seqid=0,
                share_access=access | wish,
                share_deny=OPEN4_SHARE_DENY_NONE,
                owner=nfs4.open_owner4(clientid=session.clientid, owner=state.owner),
                openhow=nfs4.openflag4(opentype=opentype4.OPEN4_NOCREATE),
                claim=nfs4.open_claim4(claim=open_claim_type4.CLAIM_PREVIOUS, delegate_type=kind),
            ),
        ]

    res = await _send(client, session, build, state.fh)
    opened = res.resarray[1]
    assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None
    state.stateid = opened.resok.stateid  # new state: a new "other"
    state.opened = {access}  # the one OPEN in effect on the new server (18.18.3)
    granted = opened.resok.delegation
    body = granted.read if granted.read is not None else granted.write
    if delegation is None or body is None:
        return False
    delegation.stateid = body.stateid
    delegation.write = granted.write is not None
    if body.recall:
        delegation.recalled = True
    return True


async def reclaim_lock(
    client: NFSClient, lock: LockState, session: ServerSession | None = None
) -> None:
    """LOCK(reclaim=TRUE) of every range ``lock`` held (section 18.10.3)."""
    lock.stateid = None
    for offset, length, locktype in list(lock.ranges):

        def build(
            session: ServerSession, offset: int = offset, length: int = length, lt: int = locktype
        ) -> list[nfs4.ArgOp]:
            return [
                nfs4.PUTFH4args(object=lock.open.fh),
                nfs4.LOCK4args(
                    locktype=nfs_lock_type4(lt),
                    reclaim=True,
                    offset=offset,
                    length=length,
                    locker=make_locker(session.clientid, lock),
                ),
            ]

        res = await _send(client, session, build, lock.open.fh)
        lk = res.resarray[1]
        assert isinstance(lk, nfs4.LOCK4res) and lk.resok is not None
        lock.update(lk.resok.lock_stateid)


async def _send(
    client: NFSClient,
    session: ServerSession | None,
    build: Callable[[ServerSession], list[nfs4.ArgOp]],
    fh: bytes,
) -> CompoundResult:
    """Straight to ``session`` when recovery names one (the file system is parked, so
    the client's own path would wait for the very recovery that is sending this), with
    the client's own credential under the file system's security flavour (a Kerberos
    file system below a sys root refuses AUTH_SYS, RFC 8881 section 2.6)."""
    if session is not None:
        cred = client.wire_credential(None, session, client.flavour_of(client.fs_of(fh)))
        return await session.compound(build(session), cred)
    return await client.compound(build, via=fh)


async def reclaim_all(
    client: NFSClient,
    opens: list[OpenState],
    locks: list[LockState],
    session: ServerSession | None = None,
    delegations: list[Delegation] | None = None,
) -> ReclaimReport:
    """Reclaim ``opens``, with ``delegations``, then ``locks``; failures are reported,
    not raised.

    Each delegation is reclaimed with the first open of its file (CLAIM_PREVIOUS with
    its delegate_type, RFC 8881 section 10.2.1); one the server does not give back, or
    held on a file with no open, is dropped (the file's next open goes to the server),
    as is one regained with the recall flag set, which is then returned.

    ``session``: send there directly (migration recovery, the file system parked).
    """
    report = ReclaimReport()
    dropped: list[Delegation] = []
    pending_return: list[Delegation] = []
    pending = {d.fh: d for d in delegations or []}
    for state in opens:
        deleg = pending.pop(state.fh, None)
        try:
            if await reclaim_open(client, state, session, deleg):
                assert deleg is not None
                report.delegations_reclaimed += 1
                client.stats.delegations_reclaimed += 1
                if deleg.recalled:
                    pending_return.append(deleg)
            elif deleg is not None:
                dropped.append(deleg)
            report.opens_reclaimed += 1
        except NFS4Error as e:
            log.warning("reclaim of open of %s failed: %s", client.file_label(state.fh), e)
            report.lost_opens.append(state)
            report.errors.append(f"open of {client.file_label(state.fh)}: {e}")
            if deleg is not None:
                dropped.append(deleg)
    for deleg in [*dropped, *pending.values()]:
        log.info("delegation on %s not regained", client.file_label(deleg.fh))
        report.lost_delegations += 1
        await client.drop_delegation(deleg, session)
    for deleg in pending_return:
        client.return_soon(deleg)
    lost = {id(s) for s in report.lost_opens}
    for lock in locks:
        if id(lock.open) in lost:
            lock.lost = "its open could not be reclaimed"
            report.lost_locks.append(lock)
            continue
        try:
            await reclaim_lock(client, lock, session)
            report.locks_reclaimed += 1
        except NFS4Error as e:
            log.warning("reclaim of lock on %s failed: %s", client.file_label(lock.open.fh), e)
            lock.lost = f"reclaim refused: {e}"
            report.lost_locks.append(lock)
            report.errors.append(f"lock on {client.file_label(lock.open.fh)}: {e}")
    log.info(
        "reclaimed %d opens and %d locks; lost %d opens, %d locks",
        report.opens_reclaimed,
        report.locks_reclaimed,
        len(report.lost_opens),
        len(report.lost_locks),
    )
    return report

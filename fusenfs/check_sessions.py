"""Checks of client IDs, sessions, the reply cache, reclaim and stateids (no operator needed).

RFC 8881 sections: 18.35 EXCHANGE_ID, 2.10.5 trunking, 18.34 BIND_CONN_TO_SESSION,
18.36 CREATE_SESSION, 2.10.6 SEQUENCE and the reply cache, 18.51 RECLAIM_COMPLETE,
18.48 TEST_STATEID, 18.38 FREE_STATEID, 8.3 and 18.46.3 leases and status flags.
Every check makes its own client owner (a new client ID) so that none disturbs another.
"""

from __future__ import annotations

import os

import trio

from fusenfs.check_base import Finding, NotSupported, check, fail, passed, warn
from fusenfs.check_context import CheckContext
from fusenfs.check_wire import (
    Reply,
    Wire,
    back_channel,
    describe_ops,
    fore_channel,
)
from session.errors import NFSClientError
from session.rawargs import DEFAULT_EIA_FLAGS
from session.xdr import nfs4
from session.xdr.const import (
    CREATE_SESSION4_FLAG_CONN_RDMA,
    CREATE_SESSION4_FLAG_PERSIST,
    EXCHGID4_FLAG_CONFIRMED_R,
    EXCHGID4_FLAG_MASK_PNFS,
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    EXCHGID4_FLAG_UPD_CONFIRMED_REC_A,
    FATTR4,
    NFS4_UINT64_MAX,
    OPEN4_SHARE_ACCESS_BOTH,
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_CB_PATH_DOWN,
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED,
    SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED,
    SEQ4_STATUS_LEASE_MOVED,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
    SEQ4_STATUS_RESTART_RECLAIM_NEEDED,
    channel_dir_from_client4,
    nfs_ftype4,
    nfs_lock_type4,
    nfsstat4,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, encode_fattr4

S = nfsstat4

#: sr_status_flags bits RFC 8881 section 18.46.3 defines (0x1 .. 0x1000).
DEFINED_SEQ4_FLAGS = 0x1FFF
REVOKED_FLAGS = (
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED
    | SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED
    | SEQ4_STATUS_ADMIN_STATE_REVOKED
    | SEQ4_STATUS_RECALLABLE_STATE_REVOKED
)


# ---------------------------------------------------------------------- helpers
def resok_of(reply: Reply, cls: type[nfs4.ResOp]) -> object | None:
    r = reply.first(cls)
    return getattr(r, "resok", None) if r is not None else None


def require(reply: Reply, wanted: set[nfsstat4] | nfsstat4, summary: str, expected: str) -> None:
    """Raise FAIL unless the COMPOUND status is one of ``wanted``."""
    ok = {wanted} if isinstance(wanted, nfsstat4) else wanted
    if reply.status not in ok:
        raise fail(summary, sent=reply.sent, got=reply.got, expected=expected)


async def open_file(
    ctx: CheckContext, w: Wire, stem: str, *, owner: bytes = b"check-owner"
) -> tuple[bytes, nfs4.stateid4, bytes]:
    """Create and open (read-write) a new file in the scratch directory: (fh, stateid, name).

    Raises:
        NotSupported: no writable scratch directory.
        CheckFailed: the OPEN failed.
    """
    scratch = ctx.need_scratch()
    name = ctx.file_name(stem)
    reply = await w.seq(
        [
            nfs4.PUTFH4args(scratch),
            w.open_args(name, OPEN4_SHARE_ACCESS_BOTH, create=True, owner=owner),
            nfs4.GETFH4args(),
        ]
    )
    require(reply, S.NFS4_OK, "could not create a file to test with", "OPEN(create) to succeed")
    opened = reply.first(nfs4.OPEN4res)
    fh = reply.fh()
    assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None and fh is not None
    return fh, opened.resok.stateid, name


def lock_args(
    open_sid: nfs4.stateid4, owner: bytes, offset: int, length: int, clientid: int
) -> nfs4.LOCK4args:
    return nfs4.LOCK4args(
        nfs_lock_type4.WRITE_LT,
        False,
        offset,
        length,
        nfs4.locker4(
            True,
            open_owner=nfs4.open_to_lock_owner4(0, open_sid, 0, nfs4.state_owner4(clientid, owner)),
        ),
    )


def never_issued(model: nfs4.stateid4) -> nfs4.stateid4:
    """A stateid like ``model`` (same server-chosen prefix) that the server never issued:
    the last four bytes of ``other`` inverted."""
    tail = bytes(b ^ 0xFF for b in model.other[-4:])
    return nfs4.stateid4(1, model.other[:-4] + tail)


def flag_names(flags: int, table: dict[int, str]) -> str:
    names = [name for bit, name in table.items() if flags & bit]
    return ", ".join(names) or "none"


EID_FLAG_NAMES = {
    EXCHGID4_FLAG_SUPP_MOVED_REFER: "SUPP_MOVED_REFER",
    EXCHGID4_FLAG_SUPP_MOVED_MIGR: "SUPP_MOVED_MIGR",
    0x4: "SUPP_FENCE_OPS",
    0x100: "BIND_PRINC_STATEID",
    0x10000: "USE_NON_PNFS",
    0x20000: "USE_PNFS_MDS",
    0x40000: "USE_PNFS_DS",
    EXCHGID4_FLAG_UPD_CONFIRMED_REC_A: "UPD_CONFIRMED_REC_A",
    EXCHGID4_FLAG_CONFIRMED_R: "CONFIRMED_R",
}


# ---------------------------------------------------------------------- EXCHANGE_ID
@check(
    "EID1",
    "EXCHANGE_ID reply flags",
    "RFC 8881 18.35.3, 18.35.4",
    does="A new client owner sends EXCHANGE_ID, confirms the client ID with CREATE_SESSION "
    "and sends the same EXCHANGE_ID again; the flags of both replies are examined.",
    rule="A new client ID is unconfirmed: EXCHGID4_FLAG_CONFIRMED_R is clear in the first "
    "reply. UPD_CONFIRMED_REC_A is an argument bit and never appears in eir_flags. The "
    "server must name a pNFS role (USE_NON_PNFS, USE_PNFS_MDS or USE_PNFS_DS). Once "
    "confirmed, the same owner and verifier get the same client ID back with CONFIRMED_R "
    "set (case 2, 'non-update on existing client ID').",
    compounds=(
        "EXCHANGE_ID(eia_flags SUPP_MOVED_REFER|SUPP_MOVED_MIGR)",
        "CREATE_SESSION",
        "EXCHANGE_ID (same owner and verifier)",
    ),
)
async def eid1(ctx: CheckContext) -> Finding:
    w = await ctx.wire("eid1", establish=False)
    first = await w.exchange_id()
    require(first, S.NFS4_OK, "EXCHANGE_ID failed", "NFS4_OK for a new client owner")
    assert w.eid is not None
    flags = w.eid.eir_flags
    problems = []
    if flags & EXCHGID4_FLAG_CONFIRMED_R:
        problems.append("CONFIRMED_R set for a client ID never confirmed")
    if flags & EXCHGID4_FLAG_UPD_CONFIRMED_REC_A:
        problems.append("UPD_CONFIRMED_REC_A set in eir_flags")
    if not flags & EXCHGID4_FLAG_MASK_PNFS:
        problems.append("no pNFS role bit (USE_NON_PNFS, USE_PNFS_MDS, USE_PNFS_DS)")
    if problems:
        raise fail(
            "; ".join(problems),
            sent=first.sent,
            got=f"eir_flags {flags:#x} ({flag_names(flags, EID_FLAG_NAMES)})",
            expected="CONFIRMED_R and UPD_CONFIRMED_REC_A clear, one pNFS role set",
        )
    clientid = w.clientid
    cs = await w.create_session()
    require(cs, S.NFS4_OK, "CREATE_SESSION failed", "NFS4_OK confirming the new client ID")
    again = await w.exchange_id()
    require(again, S.NFS4_OK, "repeated EXCHANGE_ID failed", "NFS4_OK (case 2)")
    assert w.eid is not None
    if w.eid.eir_clientid != clientid or not w.eid.eir_flags & EXCHGID4_FLAG_CONFIRMED_R:
        raise fail(
            "the confirmed client ID was not returned as such",
            sent=again.sent,
            got=f"eir_clientid {w.eid.eir_clientid:#x} (was {clientid:#x}), eir_flags "
            f"{w.eid.eir_flags:#x}",
            expected="the same client ID with EXCHGID4_FLAG_CONFIRMED_R (18.35.4 case 2)",
        )
    return passed(
        f"eir_flags {flags:#x} ({flag_names(flags, EID_FLAG_NAMES)}); confirmed client ID "
        "returned with CONFIRMED_R"
    )


@check(
    "EID2",
    "SUPP_MOVED_REFER / SUPP_MOVED_MIGR",
    "RFC 8881 18.35.3",
    does="Reads the migration and referral bits of the server's EXCHANGE_ID reply and "
    "compares them with what the server does: whether the export holds a referral "
    "(the walk of REF1).",
    rule="A server that may perform a referral MUST set EXCHGID4_FLAG_SUPP_MOVED_REFER in "
    "eir_flags; one that may migrate a file system MUST set EXCHGID4_FLAG_SUPP_MOVED_MIGR. "
    "The client's bits do not oblige the server either way.",
    compounds=("EXCHANGE_ID (the preflight's)", "READDIR ... of the export, bounded walk"),
)
async def eid2(ctx: CheckContext) -> Finding:
    assert ctx.eid is not None
    flags = ctx.eid.eir_flags
    refer = bool(flags & EXCHGID4_FLAG_SUPP_MOVED_REFER)
    migr = bool(flags & EXCHGID4_FLAG_SUPP_MOVED_MIGR)
    referrals = await ctx.referrals()
    text = (
        f"eir_flags {flags:#x}: SUPP_MOVED_REFER {'set' if refer else 'clear'}, "
        f"SUPP_MOVED_MIGR {'set' if migr else 'clear'}"
    )
    if referrals and not refer:
        raise fail(
            "the export holds a referral but SUPP_MOVED_REFER is clear",
            sent="EXCHANGE_ID(eia_flags SUPP_MOVED_REFER|SUPP_MOVED_MIGR)",
            got=text + f"; referral at /{'/'.join(referrals[0].path)}",
            expected="EXCHGID4_FLAG_SUPP_MOVED_REFER set by a server that performs referrals",
        )
    ctx.cache["supp_moved_migr"] = migr
    return passed(text + (f"; {len(referrals)} referral(s) in the export" if referrals else ""))


@check(
    "EID3",
    "undefined eia_flags bits refused",
    "RFC 8881 18.35.3",
    does="Sends EXCHANGE_ID with one undefined bit set in eia_flags (0x8, then 0x1000).",
    rule="Bits the protocol does not define cannot be set in eia_flags; if they are, the "
    "server MUST reject the operation with NFS4ERR_INVAL.",
    compounds=("EXCHANGE_ID(eia_flags SUPP_MOVED_REFER|0x8)", "EXCHANGE_ID(eia_flags ...|0x1000)"),
)
async def eid3(ctx: CheckContext) -> Finding:
    w = await ctx.wire("eid3", establish=False)
    for bit in (0x8, 0x1000):
        reply = await w.exchange_id(flags=DEFAULT_EIA_FLAGS | bit)
        require(
            reply,
            S.NFS4ERR_INVAL,
            f"an undefined eia_flags bit ({bit:#x}) was accepted",
            "NFS4ERR_INVAL for any bit not defined in 18.35.1",
        )
    return passed("NFS4ERR_INVAL for eia_flags bits 0x8 and 0x1000")


@check(
    "EID4",
    "client restart: a new verifier",
    "RFC 8881 18.35.3, 18.35.4",
    does="Establishes a client ID and session, then sends EXCHANGE_ID with the same owner "
    "and a new verifier (a restarted client) and confirms the new client ID; then uses "
    "the old session and the old client ID.",
    rule="A server MUST NOT use the same client ID for two incarnations of a client owner: "
    "the new verifier gets a new, unconfirmed client ID (case 5, 'client restart'). When "
    "CREATE_SESSION confirms it, the old record is destroyed with its sessions and locks.",
    compounds=(
        "EXCHANGE_ID, CREATE_SESSION, SEQUENCE",
        "EXCHANGE_ID (new co_verifier), CREATE_SESSION",
        "SEQUENCE on the old session",
        "CREATE_SESSION(old client ID)",
    ),
)
async def eid4(ctx: CheckContext) -> Finding:
    w = await ctx.wire("eid4")
    old_clientid, old_session = w.clientid, w.sessionid
    restart = await w.exchange_id(verifier=os.urandom(8))
    require(restart, S.NFS4_OK, "EXCHANGE_ID with a new verifier failed", "NFS4_OK (case 5)")
    assert w.eid is not None
    if w.clientid == old_clientid or w.eid.eir_flags & EXCHGID4_FLAG_CONFIRMED_R:
        raise fail(
            "a restarted client got its old client ID back",
            sent=restart.sent,
            got=f"eir_clientid {w.clientid:#x} (old {old_clientid:#x}), "
            f"eir_flags {w.eid.eir_flags:#x}",
            expected="a new, unconfirmed client ID",
        )
    cs = await w.create_session()
    require(cs, S.NFS4_OK, "CREATE_SESSION of the new client ID failed", "NFS4_OK")
    stale = await w.seq([], sessionid=old_session, seqid=2)
    old_cs = await w.call([w.create_session_args(clientid=old_clientid, sequence=2, flags=0)])
    details = [f"old session: {stale.got}", f"old client ID: {old_cs.got}"]
    if stale.status == S.NFS4_OK or old_cs.status == S.NFS4_OK:
        raise warn(
            "the old incarnation's session or client ID still works after the restart",
            sent=f"{stale.sent}; {old_cs.sent}",
            got=f"{stale.got}; {old_cs.got}",
            expected="NFS4ERR_BADSESSION and NFS4ERR_STALE_CLIENTID: the confirmed new record "
            "replaces the old one (18.35.4 case 5, 18.36.4)",
        )
    return passed(
        f"new client ID {w.clientid:#x} (old {old_clientid:#x}); old session "
        f"{stale.status.name}, old client ID {old_cs.status.name}",
        details,
    )


@check(
    "EID5",
    "another principal for a confirmed owner",
    "RFC 8881 18.35.4",
    does="A client ID (AUTH_SYS uid 0) holds an open file; the same client owner and "
    "verifier arrive with another principal (uid 4242). Then the open is closed and the "
    "other principal tries again.",
    rule="Case 3, 'client collision': while the confirmed client ID has an unexpired lease "
    "with state, the server returns NFS4ERR_CLID_INUSE and changes nothing. Without state "
    "(or with an expired lease) the case is a new owner: the old client ID and its state "
    "are deleted and a new, unconfirmed client ID is returned.",
    compounds=(
        "EXCHANGE_ID, CREATE_SESSION, OPEN(create) as uid 0",
        "EXCHANGE_ID as uid 4242 (same owner, same verifier)",
        "CLOSE; EXCHANGE_ID as uid 4242",
    ),
)
async def eid5(ctx: CheckContext) -> Finding:
    w = await ctx.wire("eid5")
    fh, sid, name = await open_file(ctx, w, "eid5")
    other = await ctx.wire("eid5", establish=False, uid=4242, owner=w.owner, verifier=w.verifier)
    busy = await other.exchange_id()
    if busy.status != S.NFS4ERR_CLID_INUSE:
        e = other.eid
        what = ""
        if e is not None:
            what = (
                f"eir_clientid {e.eir_clientid:#x} ("
                + ("the holder's own, " if e.eir_clientid == w.clientid else "a new one, ")
                + ("confirmed" if e.eir_flags & EXCHGID4_FLAG_CONFIRMED_R else "unconfirmed")
                + ")"
            )
        details = []
        if busy.status == S.NFS4_OK and e is not None and e.eir_clientid != w.clientid:
            # What happens if the other principal goes on: does the holder lose its state?
            confirm = await other.create_session()
            tested = await w.seq([nfs4.TEST_STATEID4args([sid])])
            ts = resok_of(tested, nfs4.TEST_STATEID4res)
            codes = (
                ": " + ", ".join(c.name for c in ts.tsr_status_codes)
                if isinstance(ts, nfs4.TEST_STATEID4resok)
                else ""
            )
            details = [
                f"the other principal's CREATE_SESSION: {confirm.got}",
                f"then the holder's SEQUENCE TEST_STATEID(open): {tested.got}{codes}",
            ]
        raise fail(
            "another principal was given the client owner while it holds state",
            sent=f"{busy.sent} as uid 4242",
            got=f"{busy.got}; {what}",
            expected="NFS4ERR_CLID_INUSE: the client ID has an unexpired lease with state "
            "(18.35.4 case 3; 2.4.3: otherwise the server MUST return NFS4ERR_CLID_INUSE)",
            details=details,
        )
    closed = await w.seq([nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, sid)])
    require(closed, S.NFS4_OK, "CLOSE failed", "NFS4_OK")
    await w.seq([nfs4.PUTFH4args(ctx.need_scratch()), nfs4.REMOVE4args(name)])
    taken = await other.exchange_id()
    if taken.status != S.NFS4_OK:
        raise warn(
            "another principal was refused the client owner although it holds no state",
            sent=f"{taken.sent} as uid 4242 (after CLOSE)",
            got=taken.got,
            expected="a new unconfirmed client ID: without state case 3 is a new owner "
            "(a server that keeps an open-owner after CLOSE may still answer CLID_INUSE)",
        )
    return passed("NFS4ERR_CLID_INUSE while holding an open; after CLOSE a new client ID")


# ---------------------------------------------------------------------- trunking
@check(
    "TRK1",
    "server_owner and scope stable",
    "RFC 8881 2.10.5, 18.35.3",
    does="Sends EXCHANGE_ID for a confirmed client owner on a second connection, and for "
    "a new owner on a third, and compares server_owner, server_scope and the client ID.",
    rule="The server_owner (major and minor id) and server_scope identify the server "
    "behind an address; a client decides trunking and migration from them, so they must "
    "not change from one connection to the next. The confirmed owner gets its client ID "
    "again (case 2).",
    compounds=(
        "EXCHANGE_ID on connection 2 (same owner)",
        "EXCHANGE_ID on connection 3 (new owner)",
    ),
)
async def trk1(ctx: CheckContext) -> Finding:
    assert ctx.main is not None and ctx.eid is not None
    ref = ctx.eid
    second = await ctx.wire(
        "trk1", establish=False, owner=ctx.main.owner, verifier=ctx.main.verifier
    )
    third = await ctx.wire("trk1", establish=False)
    r2 = await second.exchange_id()
    r3 = await third.exchange_id()
    require(r2, S.NFS4_OK, "EXCHANGE_ID on a second connection failed", "NFS4_OK")
    require(r3, S.NFS4_OK, "EXCHANGE_ID on a third connection failed", "NFS4_OK")
    assert second.eid is not None and third.eid is not None
    for label, got in (("second", second.eid), ("third", third.eid)):
        same = (
            got.eir_server_owner.so_major_id == ref.eir_server_owner.so_major_id
            and got.eir_server_scope == ref.eir_server_scope
        )
        if not same:
            raise fail(
                f"server_owner.so_major_id or server_scope differs on the {label} connection",
                sent="EXCHANGE_ID",
                got=f"{got.eir_server_owner.so_major_id!r}/{got.eir_server_scope!r}",
                expected=f"{ref.eir_server_owner.so_major_id!r}/{ref.eir_server_scope!r} "
                "as on the first connection",
            )
        if got.eir_server_owner.so_minor_id != ref.eir_server_owner.so_minor_id:
            raise warn(
                f"so_minor_id differs on the {label} connection to the same address",
                sent="EXCHANGE_ID",
                got=str(got.eir_server_owner.so_minor_id),
                expected=f"{ref.eir_server_owner.so_minor_id} (same address, same node)",
            )
    if second.eid.eir_clientid != ref.eir_clientid:
        raise fail(
            "the confirmed client owner got another client ID on a second connection",
            sent=r2.sent,
            got=f"{second.eid.eir_clientid:#x}",
            expected=f"{ref.eir_clientid:#x} with CONFIRMED_R (18.35.4 case 2)",
        )
    return passed("same server_owner, server_scope and client ID on three connections")


@check(
    "TRK2",
    "one session over two connections",
    "RFC 8881 2.10.5, 18.34",
    does="Binds a second connection to an existing session with BIND_CONN_TO_SESSION and "
    "sends requests on both connections with the session's one slot table.",
    rule="Connections to addresses with the same server_owner (major and minor) may carry "
    "the same session (session trunking). BIND_CONN_TO_SESSION associates a connection "
    "with a session; the slot table is the session's, whichever connection a request "
    "arrives on, so sequence ids continue across connections.",
    compounds=(
        "BIND_CONN_TO_SESSION(CDFC4_FORE_OR_BOTH) on connection 2",
        "SEQUENCE(slot 0, next seq) on connection 2",
        "SEQUENCE(slot 0, next seq) on connection 1",
    ),
)
async def trk2(ctx: CheckContext) -> Finding:
    w = await ctx.wire("trk2")
    first = await w.seq([nfs4.PUTROOTFH4args()])
    require(first, S.NFS4_OK, "SEQUENCE failed", "NFS4_OK")
    extra = await ctx.wire("trk2", establish=False, owner=w.owner, verifier=w.verifier)
    bind = await extra.call(
        [
            nfs4.BIND_CONN_TO_SESSION4args(
                w.sessionid, channel_dir_from_client4.CDFC4_FORE_OR_BOTH, False
            )
        ]
    )
    require(
        bind,
        S.NFS4_OK,
        "BIND_CONN_TO_SESSION refused on a second connection to the same server",
        "NFS4_OK: a connection with the same server_owner can be bound to the session",
    )
    extra.sessionid = w.sessionid
    extra.seqids = dict(w.seqids)
    on_second = await extra.seq([nfs4.PUTROOTFH4args()])
    require(on_second, S.NFS4_OK, "SEQUENCE on the bound connection failed", "NFS4_OK")
    w.seqids = dict(extra.seqids)
    back = await w.seq([nfs4.PUTROOTFH4args()])
    require(
        back,
        S.NFS4_OK,
        "the slot's sequence did not continue on the first connection",
        "NFS4_OK: one slot table for the session, whichever connection",
    )
    return passed("BIND_CONN_TO_SESSION accepted; slot 0 sequenced 2, 3, 4 across both connections")


@check(
    "TRK3",
    "trunking of the location addresses",
    "RFC 8881 2.10.5, 11.5.5",
    does="Collects the server addresses in fs_locations of the export and of every "
    "referral found, sends EXCHANGE_ID (the preflight's owner and verifier) to each, and "
    "compares server_owner, server_scope and the client ID.",
    rule="Two addresses with the same so_major_id and server_scope claim to be one server: "
    "a client then shares its client ID (and state) between them, so the server behind "
    "both must return the same client ID for the same client owner. An address that is "
    "another server must say so with another so_major_id or scope.",
    compounds=(
        "GETATTR(fs_locations) of the export and each referral",
        "EXCHANGE_ID at each address",
    ),
)
async def trk3(ctx: CheckContext) -> Finding:
    from fusenfs.check_namespace import location_addresses

    assert ctx.main is not None and ctx.eid is not None
    addresses = await location_addresses(ctx)
    if not addresses:
        raise NotSupported("no server address in fs_locations of the export or of a referral")
    lines = []
    me = ctx.eid
    for host, port in addresses:
        try:
            w = await ctx.wire(
                "trk3",
                establish=False,
                owner=ctx.main.owner,
                verifier=ctx.main.verifier,
                host=host,
                port=port,
            )
            reply = await w.exchange_id()
        except NFSClientError as exc:  # reported, not fatal
            lines.append(f"{host}:{port}: unreachable ({exc})")
            continue
        if reply.status != S.NFS4_OK or w.eid is None:
            lines.append(f"{host}:{port}: EXCHANGE_ID {reply.got}")
            continue
        e = w.eid
        same = (
            e.eir_server_owner.so_major_id == me.eir_server_owner.so_major_id
            and e.eir_server_scope == me.eir_server_scope
        )
        knows = e.eir_clientid == me.eir_clientid and bool(e.eir_flags & EXCHGID4_FLAG_CONFIRMED_R)
        if same and not knows:
            raise warn(
                f"{host}:{port} claims the server_owner and scope of {ctx.host}:{ctx.port} "
                "but does not know its confirmed client ID",
                sent=f"EXCHANGE_ID (owner {ctx.main.owner.decode(errors='replace')}, confirmed "
                f"at {ctx.host}:{ctx.port}) at {host}:{port}",
                got=f"client ID {e.eir_clientid:#x}"
                + (" confirmed" if e.eir_flags & EXCHGID4_FLAG_CONFIRMED_R else " unconfirmed")
                + f" (here {me.eir_clientid:#x} confirmed), both so_major_id "
                f"{e.eir_server_owner.so_major_id!r}, scope {e.eir_server_scope!r}",
                expected="one server: the same client ID with CONFIRMED_R (case 2); another "
                "server: another so_major_id or scope -- falsely matching server owners "
                "make a client verify every address before trusting it (2.5, 2.10.5)",
                details=lines,
            )
        lines.append(
            f"{host}:{port}: {'same server' if same else 'another server'} "
            f"(so_major_id {e.eir_server_owner.so_major_id!r}, minor "
            f"{e.eir_server_owner.so_minor_id}, client ID {e.eir_clientid:#x}"
            + (", confirmed" if e.eir_flags & EXCHGID4_FLAG_CONFIRMED_R else "")
            + ")"
        )
    return passed(f"{len(addresses)} location address(es) consistent", lines, show=True)


# ---------------------------------------------------------------------- CREATE_SESSION
@check(
    "SESS1",
    "channel attributes honoured",
    "RFC 8881 18.36.3",
    does="Creates a session asking for a header padding of 64 bytes, 8 slots, 1 MiB "
    "requests and replies, 8 KiB cached replies, 16 operations, and a back channel of 2 "
    "slots and 4 operations; compares the reply with what was asked.",
    rule="The server may lower ca_headerpadsize, ca_maxrequestsize, ca_maxresponsesize and "
    "ca_maxresponsesize_cached, but MUST NOT raise them; for the back channel it MUST NOT "
    "change ca_maxoperations and ca_maxrequests. csr_sequence MUST equal csa_sequence. "
    "CONN_BACK_CHAN, PERSIST and CONN_RDMA may be set in csr_flags only if requested.",
    compounds=("EXCHANGE_ID", "CREATE_SESSION(csa_flags CONN_BACK_CHAN; fore and back as above)"),
)
async def sess1(ctx: CheckContext) -> Finding:
    w = await ctx.wire("sess1", establish=False)
    require(await w.exchange_id(), S.NFS4_OK, "EXCHANGE_ID failed", "NFS4_OK")
    fore = fore_channel(padding=64)
    back = back_channel()
    sequence = w.cs_sequence
    reply = await w.create_session(fore=fore, back=back)
    require(reply, S.NFS4_OK, "CREATE_SESSION failed", "NFS4_OK")
    cs = resok_of(reply, nfs4.CREATE_SESSION4res)
    assert isinstance(cs, nfs4.CREATE_SESSION4resok)
    got_f, got_b = cs.csr_fore_chan_attrs, cs.csr_back_chan_attrs
    problems = []
    for label, asked, granted in (("fore", fore, got_f), ("back", back, got_b)):
        for name in (
            "ca_headerpadsize",
            "ca_maxrequestsize",
            "ca_maxresponsesize",
            "ca_maxresponsesize_cached",
        ):
            if getattr(granted, name) > getattr(asked, name):
                problems.append(
                    f"{label} {name} raised to {getattr(granted, name)} "
                    f"(asked {getattr(asked, name)})"
                )
    for name in ("ca_maxoperations", "ca_maxrequests"):
        if getattr(got_b, name) != getattr(back, name):
            problems.append(
                f"back {name} changed to {getattr(got_b, name)} (offered {getattr(back, name)})"
            )
    if cs.csr_sequence != sequence:
        problems.append(f"csr_sequence {cs.csr_sequence} for csa_sequence {sequence}")
    if cs.csr_flags & (CREATE_SESSION4_FLAG_PERSIST | CREATE_SESSION4_FLAG_CONN_RDMA):
        problems.append(f"csr_flags {cs.csr_flags:#x} grants PERSIST or CONN_RDMA, not requested")
    if got_f.ca_maxrequests < 1:
        problems.append("no fore-channel slot")
    granted_text = (
        f"fore: pad {got_f.ca_headerpadsize}, {got_f.ca_maxrequests} slots, maxrequestsize "
        f"{got_f.ca_maxrequestsize}, maxresponsesize {got_f.ca_maxresponsesize}, cached "
        f"{got_f.ca_maxresponsesize_cached}, {got_f.ca_maxoperations} ops; back: "
        f"{got_b.ca_maxrequests} slots, {got_b.ca_maxoperations} ops; csr_flags {cs.csr_flags:#x}"
    )
    if problems:
        raise fail(
            "; ".join(problems),
            sent=reply.sent,
            got=granted_text,
            expected="sizes lowered or kept, never raised; back-channel slots and operations "
            "as offered; csr_sequence = csa_sequence",
        )
    return passed(granted_text)


async def session_with(
    ctx: CheckContext, tag: str, fore: nfs4.channel_attrs4
) -> tuple[Wire, Reply]:
    """A new client ID whose session asks for ``fore``; RECLAIM_COMPLETE done."""
    w = await ctx.wire(tag, establish=False)
    require(await w.exchange_id(), S.NFS4_OK, "EXCHANGE_ID failed", "NFS4_OK")
    reply = await w.create_session(fore=fore)
    if reply.status == S.NFS4_OK:
        rc = await w.seq([nfs4.RECLAIM_COMPLETE4args(False)])
        require(rc, {S.NFS4_OK, S.NFS4ERR_COMPLETE_ALREADY}, "RECLAIM_COMPLETE failed", "NFS4_OK")
    return w, reply


async def small_session(
    ctx: CheckContext, tag: str, field: str, sizes: tuple[int, ...]
) -> tuple[Wire, int]:
    """A session whose fore-channel ``field`` is the smallest of ``sizes`` the server
    accepts (it answers NFS4ERR_TOOSMALL for smaller ones); (wire, granted value)."""
    last = None
    for size in sizes:
        fore = fore_channel(**{field: size})
        w, reply = await session_with(ctx, tag, fore)
        if reply.status == S.NFS4_OK:
            assert w.fore is not None
            name = {
                "maxreq": "ca_maxrequestsize",
                "maxresp": "ca_maxresponsesize",
                "cached": "ca_maxresponsesize_cached",
            }[field]
            return w, getattr(w.fore, name)
        last = reply
        if reply.status != S.NFS4ERR_TOOSMALL:
            break
    assert last is not None
    raise fail(
        "no session with a small channel could be created",
        sent=last.sent,
        got=last.got,
        expected="NFS4_OK (the server may lower the sizes) or NFS4ERR_TOOSMALL",
    )


@check(
    "SESS2",
    "slot table",
    "RFC 8881 2.10.6.1, 18.46.3",
    does="Uses the highest slot the session granted, then a slot beyond the table.",
    rule="Slots run from 0 to ca_maxrequests - 1. SEQUENCE on any of them works; sr_slotid and "
    "sr_sequenceid MUST echo sa_slotid and sa_sequenceid, and sr_highest_slotid SHOULD NOT "
    "be below the sa_highest_slotid sent. A slot outside the table gets NFS4ERR_BADSLOT.",
    compounds=(
        "SEQUENCE(slot N-1, seq 1, highest N-1) PUTROOTFH",
        "SEQUENCE(slot N+1000, seq 1)",
    ),
)
async def sess2(ctx: CheckContext) -> Finding:
    w = await ctx.wire("sess2")
    assert w.fore is not None
    top = w.fore.ca_maxrequests - 1
    reply = await w.seq([nfs4.PUTROOTFH4args()], slot=top, highest=top)
    require(reply, S.NFS4_OK, f"SEQUENCE on slot {top}, the last one granted, failed", "NFS4_OK")
    seq = resok_of(reply, nfs4.SEQUENCE4res)
    assert isinstance(seq, nfs4.SEQUENCE4resok)
    if seq.sr_slotid != top or seq.sr_sequenceid != 1:
        raise fail(
            "SEQUENCE's reply does not echo the slot and sequence id",
            sent=reply.sent,
            got=f"sr_slotid {seq.sr_slotid}, sr_sequenceid {seq.sr_sequenceid}",
            expected=f"sr_slotid {top}, sr_sequenceid 1",
        )
    beyond = top + 1000
    bad = await w.seq([], slot=beyond, highest=beyond)
    require(
        bad,
        S.NFS4ERR_BADSLOT,
        "a slot outside the table was accepted",
        f"NFS4ERR_BADSLOT (the table has slots 0..{top})",
    )
    if seq.sr_highest_slotid < top:
        raise warn(
            "sr_highest_slotid is below the sa_highest_slotid sent",
            sent=reply.sent,
            got=f"sr_highest_slotid {seq.sr_highest_slotid}",
            expected=f"at least {top}",
        )
    return passed(
        f"{top + 1} slots; slot {top} works, slot {beyond} NFS4ERR_BADSLOT; "
        f"sr_highest_slotid {seq.sr_highest_slotid}, target {seq.sr_target_highest_slotid}"
    )


@check(
    "SESS3",
    "ca_maxrequestsize enforced",
    "RFC 8881 2.10.6.4, 18.36.3",
    does="Creates a session asking for a small ca_maxrequestsize (the smallest of 4096, "
    "8192, 16384 the server accepts) and sends a WRITE larger than the size granted.",
    rule="ca_maxrequestsize counts the whole RPC call, headers included. A request that "
    "exceeds it gets NFS4ERR_REQ_TOO_BIG, on SEQUENCE (nothing executed) or on the "
    "operation that goes over the limit.",
    compounds=("CREATE_SESSION(fore ca_maxrequestsize 4096)", "SEQUENCE PUTFH WRITE(>4096 bytes)"),
)
async def sess3(ctx: CheckContext) -> Finding:
    ctx.need_scratch()
    w, limit = await small_session(ctx, "sess3", "maxreq", (4096, 8192, 16384))
    fh, sid, _ = await open_file(ctx, w, "sess3")
    data = b"r" * (limit + 512)
    reply = await w.seq(
        [nfs4.PUTFH4args(fh), nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, data)]
    )
    require(
        reply,
        S.NFS4ERR_REQ_TOO_BIG,
        f"a {len(data) + 200}-byte request was accepted on a session with "
        f"ca_maxrequestsize {limit}",
        "NFS4ERR_REQ_TOO_BIG (on SEQUENCE or on the WRITE)",
    )
    where = "SEQUENCE" if len(reply.res.resarray) == 1 else "the WRITE"
    return passed(f"ca_maxrequestsize {limit}: NFS4ERR_REQ_TOO_BIG on {where}")


async def big_file(ctx: CheckContext, size: int) -> tuple[bytes, nfs4.stateid4]:
    """A scratch file of ``size`` bytes written through the main session: (fh, stateid)."""
    assert ctx.main is not None
    fh, sid, _ = await open_file(ctx, ctx.main, "big")
    chunk = 256 * 1024
    for offset in range(0, size, chunk):
        n = min(chunk, size - offset)
        wr = await ctx.main.seq(
            [nfs4.PUTFH4args(fh), nfs4.WRITE4args(sid, offset, stable_how4.FILE_SYNC4, b"d" * n)]
        )
        require(wr, S.NFS4_OK, "writing a test file failed", "NFS4_OK")
    return fh, sid


@check(
    "SESS4",
    "ca_maxresponsesize enforced",
    "RFC 8881 2.10.6.4, 18.36.3",
    does="Creates a session asking for a small ca_maxresponsesize and READs three times "
    "that many bytes of a file.",
    rule="No reply may exceed ca_maxresponsesize (RPC header included). A READ may return "
    "fewer bytes than asked for; otherwise the reply is NFS4ERR_REP_TOO_BIG.",
    compounds=("CREATE_SESSION(fore ca_maxresponsesize 4096)", "SEQUENCE PUTFH READ(3 x the size)"),
)
async def sess4(ctx: CheckContext) -> Finding:
    ctx.need_scratch()
    w, limit = await small_session(ctx, "sess4", "maxresp", (4096, 8192, 16384, 65536))
    fh, _ = await big_file(ctx, 3 * limit)
    anon = nfs4.stateid4(0, bytes(12))
    reply = await w.seq([nfs4.PUTFH4args(fh), nfs4.READ4args(anon, 0, 3 * limit)])
    if reply.size > limit:
        raise fail(
            f"a {reply.size}-byte reply on a session with ca_maxresponsesize {limit}",
            sent=reply.sent,
            got=reply.got,
            expected="a short READ that fits, or NFS4ERR_REP_TOO_BIG",
        )
    require(
        reply,
        {S.NFS4_OK, S.NFS4ERR_REP_TOO_BIG},
        "the READ failed",
        "NFS4_OK or NFS4ERR_REP_TOO_BIG",
    )
    rd = resok_of(reply, nfs4.READ4res)
    how = (
        f"a short READ of {len(rd.data)} bytes"
        if isinstance(rd, nfs4.READ4resok)
        else "NFS4ERR_REP_TOO_BIG"
    )
    return passed(f"ca_maxresponsesize {limit}: {how}, reply {reply.size} bytes")


@check(
    "SESS5",
    "ca_maxresponsesize_cached enforced",
    "RFC 8881 2.10.6.4, 18.46.3",
    does="Creates a session asking for small cached replies (the server may lower it), "
    "READs three times that many bytes with sa_cachethis, then sends the same request "
    "again on the same slot and sequence id.",
    rule="With sa_cachethis the server MUST cache the reply; a reply larger than "
    "ca_maxresponsesize_cached MUST get NFS4ERR_REP_TOO_BIG_TO_CACHE (on SEQUENCE, or on "
    "the operation that would not fit, and that reply is cached). The retry gets the "
    "cached reply.",
    compounds=(
        "CREATE_SESSION(fore ca_maxresponsesize_cached 2048)",
        "SEQUENCE(slot 0, seq 1, cachethis) PUTFH READ(3 x the size)",
        "the same again (a retry)",
    ),
)
async def sess5(ctx: CheckContext) -> Finding:
    ctx.need_scratch()
    w, limit = await small_session(ctx, "sess5", "cached", (2048, 4096, 8192))
    fh, _ = await big_file(ctx, 3 * max(limit, 1024))
    anon = nfs4.stateid4(0, bytes(12))
    ops: list[nfs4.ArgOp] = [nfs4.PUTFH4args(fh), nfs4.READ4args(anon, 0, 3 * max(limit, 1024))]
    first = await w.seq(ops, slot=0, cachethis=True)
    if first.status == S.NFS4_OK and first.size > limit:
        raise fail(
            f"a {first.size}-byte reply with sa_cachethis, ca_maxresponsesize_cached {limit}",
            sent=first.sent,
            got=first.got,
            expected="NFS4ERR_REP_TOO_BIG_TO_CACHE (or a READ short enough to cache)",
        )
    require(
        first,
        {S.NFS4_OK, S.NFS4ERR_REP_TOO_BIG_TO_CACHE},
        "the READ with sa_cachethis failed",
        "NFS4ERR_REP_TOO_BIG_TO_CACHE or a short READ",
    )
    seqid = w.seqids.get(0, 1) if first.op(0) and first.status_of(0) == S.NFS4_OK else 1
    retry = await w.seq(ops, slot=0, seqid=seqid, cachethis=True)
    if retry.status != first.status or len(retry.res.resarray) != len(first.res.resarray):
        raise fail(
            "the retry did not get the cached reply",
            sent=f"{retry.sent} (a retry)",
            got=f"first: {first.got}; retry: {retry.got}",
            expected="the reply cached for the slot (2.10.6.2)",
        )
    where = "SEQUENCE" if len(first.res.resarray) == 1 else "the READ"
    how = (
        f"NFS4ERR_REP_TOO_BIG_TO_CACHE on {where}"
        if first.status == S.NFS4ERR_REP_TOO_BIG_TO_CACHE
        else f"a short READ ({first.size} bytes)"
    )
    return passed(f"ca_maxresponsesize_cached {limit}: {how}; the retry got the same reply")


@check(
    "SESS6",
    "channels too small for any reply",
    "RFC 8881 18.36.3, 2.10.6.4",
    does="Asks CREATE_SESSION for a fore channel whose ca_maxresponsesize (64 bytes) could "
    "never carry a reply; then for a session with ca_maxresponsesize_cached 0 and sends "
    "SEQUENCE with sa_cachethis.",
    rule="If the client's ca_maxresponsesize is such that no reply could ever be sent, the "
    "server SHOULD return NFS4ERR_TOOSMALL (and MUST NOT raise the value). A cached-reply "
    "size of 0 is legal; then every reply to sa_cachethis exceeds it, and the server MUST "
    "answer NFS4ERR_REP_TOO_BIG_TO_CACHE -- on SEQUENCE, leaving the slot as it was.",
    compounds=(
        "CREATE_SESSION(fore ca_maxresponsesize 64)",
        "CREATE_SESSION(fore ca_maxresponsesize_cached 0)",
        "SEQUENCE(slot 0, next seq, cachethis) PUTROOTFH",
        "SEQUENCE(slot 0, the same seq) PUTROOTFH",
    ),
)
async def sess6(ctx: CheckContext) -> Finding:
    w, tiny = await session_with(ctx, "sess6", fore_channel(maxresp=64))
    notes = []
    if tiny.status == S.NFS4_OK:
        assert w.fore is not None
        if w.fore.ca_maxresponsesize > 64:
            raise fail(
                "ca_maxresponsesize raised above what the client can take",
                sent=tiny.sent,
                got=f"ca_maxresponsesize {w.fore.ca_maxresponsesize}",
                expected="NFS4ERR_TOOSMALL (the server MUST NOT raise the value)",
            )
        notes.append("a 64-byte channel was granted (SHOULD be NFS4ERR_TOOSMALL)")
    elif tiny.status != S.NFS4ERR_TOOSMALL:
        raise fail(
            "CREATE_SESSION with a tiny channel failed oddly",
            sent=tiny.sent,
            got=tiny.got,
            expected="NFS4ERR_TOOSMALL",
        )
    w, reply = await session_with(ctx, "sess6", fore_channel(cached=0))
    require(reply, S.NFS4_OK, "CREATE_SESSION with ca_maxresponsesize_cached 0 failed", "NFS4_OK")
    assert w.fore is not None
    if w.fore.ca_maxresponsesize_cached > 0:
        raise fail(
            "ca_maxresponsesize_cached raised from 0",
            sent=reply.sent,
            got=f"ca_maxresponsesize_cached {w.fore.ca_maxresponsesize_cached}",
            expected="0 (the server MUST NOT raise it)",
        )
    seqid = w.seqids.get(0, 0) + 1
    cached = await w.seq([nfs4.PUTROOTFH4args()], slot=0, seqid=seqid, cachethis=True)
    if cached.status != S.NFS4ERR_REP_TOO_BIG_TO_CACHE:
        raise fail(
            "a reply was promised to the cache of a session that caches nothing",
            sent=cached.sent,
            got=cached.got,
            expected="NFS4ERR_REP_TOO_BIG_TO_CACHE",
        )
    if len(cached.res.resarray) == 1:
        again = await w.seq([nfs4.PUTROOTFH4args()], slot=0, seqid=seqid)
        if again.status_of(0) == S.NFS4ERR_SEQ_MISORDERED:
            raise fail(
                "the slot changed although SEQUENCE failed",
                sent=again.sent,
                got=again.got,
                expected=f"sequence id {seqid} still the next one: a SEQUENCE error leaves "
                "the slot unchanged (2.10.6.1.2)",
            )
        if again.status != S.NFS4_OK:
            raise warn(
                "a request without sa_cachethis was refused on a session caching 0 bytes",
                sent=again.sent,
                got=again.got,
                expected="a reply: NFS4ERR_REP_TOO_BIG_TO_CACHE is for sa_cachethis; a session "
                "that can answer nothing should have been refused with NFS4ERR_TOOSMALL",
            )
    if notes:
        raise warn(
            notes[0],
            sent=tiny.sent,
            got=tiny.got,
            expected="NFS4ERR_TOOSMALL for a channel no reply fits",
        )
    return passed(
        "NFS4ERR_TOOSMALL for a 64-byte channel; cached size 0: NFS4ERR_REP_TOO_BIG_TO_CACHE "
        "for sa_cachethis, the slot unchanged"
    )


# ---------------------------------------------------------------------- SEQUENCE
@check(
    "SEQ1",
    "reply cache: a retry is not executed again",
    "RFC 8881 2.10.6.1, 2.10.6.2",
    does="Creates a directory with sa_cachethis, then sends the very same request on the "
    "same slot and sequence id, as a client does after losing a connection.",
    rule="A request whose sequence id equals the slot's is a retry: the server returns the "
    "cached reply and does not execute it again (exactly-once semantics). Executing the "
    "CREATE again would answer NFS4ERR_EXIST.",
    compounds=(
        "SEQUENCE(slot 0, seq N, cachethis) PUTFH CREATE(dir) GETFH",
        "the same request again",
    ),
)
async def seq1(ctx: CheckContext) -> Finding:
    scratch = ctx.need_scratch()
    w = await ctx.wire("seq1")
    name = ctx.file_name("seq1")
    ops: list[nfs4.ArgOp] = [
        nfs4.PUTFH4args(scratch),
        nfs4.CREATE4args(nfs4.createtype4(nfs_ftype4.NF4DIR), name, encode_fattr4(NFSAttrs())),
        nfs4.GETFH4args(),
    ]
    first = await w.seq(ops, cachethis=True)
    require(first, S.NFS4_OK, "CREATE failed", "NFS4_OK")
    retry = await w.seq(ops, seqid=w.seqids[0], cachethis=True)
    if retry.status != S.NFS4_OK or retry.fh() != first.fh():
        raise fail(
            "the retry was executed again instead of answered from the reply cache",
            sent=f"{retry.sent} (a retry)",
            got=retry.got,
            expected="the cached reply: NFS4_OK with the same filehandle",
        )
    same = (
        "byte for byte" if retry.raw == first.raw else "same results (SEQUENCE fields recomputed)"
    )
    return passed(f"the retry got the cached reply, {same}")


@check(
    "SEQ2",
    "misordered sequence ids",
    "RFC 8881 2.10.6.1, 18.46.3",
    does="On a fresh slot sends sequence ids 2 and 0 (the first use must be 1), then 1, 3, "
    "0 and 2.",
    rule="The first SEQUENCE on a slot MUST carry sequence id 1. A sequence id that is "
    "neither the slot's (a retry) nor the next one is misordered: NFS4ERR_SEQ_MISORDERED, "
    "and an error from SEQUENCE leaves the slot unchanged.",
    compounds=(
        "SEQUENCE(slot 1, seq 2)",
        "SEQUENCE(slot 1, seq 0)",
        "SEQUENCE(slot 1, seq 1)",
        "SEQUENCE(slot 1, seq 3)",
        "SEQUENCE(slot 1, seq 0)",
        "SEQUENCE(slot 1, seq 2)",
    ),
)
async def seq2(ctx: CheckContext) -> Finding:
    w = await ctx.wire("seq2")
    assert w.fore is not None
    slot = 1 if w.fore.ca_maxrequests > 1 else 0
    if slot == 0:
        w.seqids.clear()
        # slot 0 was used by RECLAIM_COMPLETE: start from its next sequence id
        raise NotSupported("the server granted one slot, used already; needs a fresh slot")
    steps = [
        (2, S.NFS4ERR_SEQ_MISORDERED),
        (0, S.NFS4ERR_SEQ_MISORDERED),
        (1, S.NFS4_OK),
        (3, S.NFS4ERR_SEQ_MISORDERED),
        (0, S.NFS4ERR_SEQ_MISORDERED),
        (2, S.NFS4_OK),
    ]
    for seqid, want in steps:
        reply = await w.seq([nfs4.PUTROOTFH4args()], slot=slot, seqid=seqid)
        if reply.status_of(0) != want:
            raise fail(
                f"sequence id {seqid} on slot {slot}: {reply.status.name}",
                sent=reply.sent,
                got=reply.got,
                expected=f"{want.name}"
                + (" (the first use of a slot is sequence id 1)" if seqid != 1 else ""),
            )
    return passed("sequence ids 2, 0 (first use), 3, 0 misordered; 1 and 2 accepted")


@check(
    "SEQ3",
    "retry of an uncached request",
    "RFC 8881 2.10.6.1.3",
    does="Sends a request without sa_cachethis, then the same request again on the same "
    "slot and sequence id.",
    rule="Without sa_cachethis the server either cached the whole reply anyway (and returns "
    "it) or answers the retry with SEQUENCE NFS4_OK and NFS4ERR_RETRY_UNCACHED_REP on the "
    "next operation. It MUST NOT return NFS4ERR_RETRY_UNCACHED_REP on SEQUENCE itself.",
    compounds=("SEQUENCE(slot 0, seq N) PUTROOTFH GETFH", "the same request again"),
)
async def seq3(ctx: CheckContext) -> Finding:
    w = await ctx.wire("seq3")
    ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args(), nfs4.GETFH4args()]
    first = await w.seq(ops)
    require(first, S.NFS4_OK, "the request failed", "NFS4_OK")
    retry = await w.seq(ops, seqid=w.seqids[0])
    if retry.status_of(0) == S.NFS4ERR_RETRY_UNCACHED_REP:
        raise fail(
            "NFS4ERR_RETRY_UNCACHED_REP on SEQUENCE",
            sent=retry.sent,
            got=retry.got,
            expected="SEQUENCE NFS4_OK, then NFS4ERR_RETRY_UNCACHED_REP on PUTROOTFH",
        )
    if retry.status == S.NFS4_OK and retry.fh() == first.fh():
        return passed("the retry got the whole reply (the server caches uncached replies too)")
    if retry.status == S.NFS4ERR_RETRY_UNCACHED_REP and retry.status_of(0) == S.NFS4_OK:
        return passed("SEQUENCE NFS4_OK, NFS4ERR_RETRY_UNCACHED_REP on the next operation")
    raise fail(
        "an unexpected answer to the retry",
        sent=retry.sent,
        got=retry.got,
        expected="the original reply, or NFS4ERR_RETRY_UNCACHED_REP on the operation after "
        "SEQUENCE",
    )


@check(
    "SEQ4",
    "false retry",
    "RFC 8881 2.10.6.1.3.1, 18.46.3",
    does="Sends a request, then a different request with the same slot and sequence id; "
    "then the first request again from another user (AUTH_SYS uid 4242) on a new slot's "
    "retry.",
    rule="Reusing a slot and sequence id for a different request is a false retry: the "
    "server may treat it as the retry it looks like (the cached reply) or return "
    "NFS4ERR_SEQ_FALSE_RETRY; it must not execute the new request. A retry from another "
    "user, once detected, MUST get NFS4ERR_SEQ_FALSE_RETRY.",
    compounds=(
        "SEQUENCE(slot 0, seq N, cachethis) PUTROOTFH GETFH",
        "SEQUENCE(slot 0, seq N, cachethis) PUTROOTFH GETATTR(lease_time)",
        "SEQUENCE(slot 0, seq N+1, cachethis) PUTROOTFH GETFH, then its retry as uid 4242",
    ),
)
async def seq4(ctx: CheckContext) -> Finding:
    w = await ctx.wire("seq4")
    ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args(), nfs4.GETFH4args()]
    first = await w.seq(ops, cachethis=True)
    require(first, S.NFS4_OK, "the request failed", "NFS4_OK")
    other: list[nfs4.ArgOp] = [
        nfs4.PUTROOTFH4args(),
        nfs4.GETATTR4args(bitmap4_from([FATTR4.LEASE_TIME])),
    ]
    false = await w.seq(other, seqid=w.seqids[0], cachethis=True)
    if false.first(nfs4.GETATTR4res) is not None:
        raise fail(
            "a different request with the slot's sequence id was executed",
            sent=false.sent,
            got=false.got,
            expected="NFS4ERR_SEQ_FALSE_RETRY, or the cached reply of the first request",
        )
    how = (
        "NFS4ERR_SEQ_FALSE_RETRY"
        if false.status == S.NFS4ERR_SEQ_FALSE_RETRY
        else f"answered as a retry ({false.got})"
    )
    second = await w.seq(ops, cachethis=True)
    require(second, S.NFS4_OK, "the request failed", "NFS4_OK")
    saved = w.cred
    from session.rpc import AuthSys

    w.cred = AuthSys(4242, 4242, [], machinename="fusenfs-check")
    try:
        stranger = await w.seq(ops, seqid=w.seqids[0], cachethis=True)
    finally:
        w.cred = saved
    if stranger.status != S.NFS4ERR_SEQ_FALSE_RETRY:
        raise warn(
            f"false retry: {how}; but a retry from another user was answered",
            sent=f"{stranger.sent} as uid 4242",
            got=stranger.got,
            expected="NFS4ERR_SEQ_FALSE_RETRY once the server sees the users differ",
        )
    return passed(f"false retry: {how}; another user's retry: NFS4ERR_SEQ_FALSE_RETRY")


# ---------------------------------------------------------------------- RECLAIM_COMPLETE
@check(
    "RC1",
    "global RECLAIM_COMPLETE",
    "RFC 8881 18.51.3, 18.51.4",
    does="A new client ID sends RECLAIM_COMPLETE(rca_one_fs=FALSE) twice.",
    rule="A new client ID sends one global RECLAIM_COMPLETE, even with nothing to reclaim; "
    "a second one gets NFS4ERR_COMPLETE_ALREADY.",
    compounds=("SEQUENCE RECLAIM_COMPLETE(FALSE)", "SEQUENCE RECLAIM_COMPLETE(FALSE)"),
)
async def rc1(ctx: CheckContext) -> Finding:
    w = await ctx.wire("rc1", establish=False)
    require(await w.exchange_id(), S.NFS4_OK, "EXCHANGE_ID failed", "NFS4_OK")
    require(await w.create_session(), S.NFS4_OK, "CREATE_SESSION failed", "NFS4_OK")
    once = await w.seq([nfs4.RECLAIM_COMPLETE4args(False)])
    require(once, S.NFS4_OK, "the first RECLAIM_COMPLETE failed", "NFS4_OK")
    twice = await w.seq([nfs4.RECLAIM_COMPLETE4args(False)])
    require(
        twice,
        S.NFS4ERR_COMPLETE_ALREADY,
        "a second RECLAIM_COMPLETE was accepted",
        "NFS4ERR_COMPLETE_ALREADY",
    )
    return passed("NFS4_OK, then NFS4ERR_COMPLETE_ALREADY")


@check(
    "RC2",
    "locking before RECLAIM_COMPLETE",
    "RFC 8881 18.51.3",
    does="A new client ID opens a new file (OPEN, CLAIM_NULL, create) before sending "
    "RECLAIM_COMPLETE, then sends it and opens again.",
    rule="Before its first non-reclaim operation that obtains a lock, a new client ID MUST "
    "send a global RECLAIM_COMPLETE; a non-reclaim locking operation before it gets "
    "NFS4ERR_GRACE (in a grace period or not).",
    compounds=(
        "EXCHANGE_ID, CREATE_SESSION",
        "SEQUENCE PUTFH OPEN(CLAIM_NULL, create)",
        "SEQUENCE RECLAIM_COMPLETE(FALSE)",
        "SEQUENCE PUTFH OPEN(CLAIM_NULL, create)",
    ),
)
async def rc2(ctx: CheckContext) -> Finding:
    scratch = ctx.need_scratch()
    w = await ctx.wire("rc2", establish=False)
    require(await w.exchange_id(), S.NFS4_OK, "EXCHANGE_ID failed", "NFS4_OK")
    require(await w.create_session(), S.NFS4_OK, "CREATE_SESSION failed", "NFS4_OK")
    name = ctx.file_name("rc2")
    opening: list[nfs4.ArgOp] = [
        nfs4.PUTFH4args(scratch),
        w.open_args(name, OPEN4_SHARE_ACCESS_BOTH, create=True),
    ]
    early = await w.seq(opening)
    if early.status != S.NFS4ERR_GRACE:
        raise fail(
            "an OPEN before the client's RECLAIM_COMPLETE was not refused",
            sent=early.sent,
            got=early.got,
            expected="NFS4ERR_GRACE until the client sends RECLAIM_COMPLETE",
        )
    require(
        await w.seq([nfs4.RECLAIM_COMPLETE4args(False)]),
        S.NFS4_OK,
        "RECLAIM_COMPLETE failed",
        "NFS4_OK",
    )
    after = await w.seq(opening)
    require(after, S.NFS4_OK, "the OPEN after RECLAIM_COMPLETE failed", "NFS4_OK")
    return passed("NFS4ERR_GRACE before RECLAIM_COMPLETE, NFS4_OK after")


@check(
    "RC3",
    "RECLAIM_COMPLETE(rca_one_fs)",
    "RFC 8881 18.51.3",
    does="An established client ID sends RECLAIM_COMPLETE(rca_one_fs=TRUE) with the export's "
    "root as current filehandle, then without a current filehandle.",
    rule="rca_one_fs=TRUE ends reclaims for the file system of the current filehandle (after "
    "a file system transition); it needs a current filehandle, so without one the answer "
    "is NFS4ERR_NOFILEHANDLE. With nothing to reclaim there, NFS4_OK or "
    "NFS4ERR_COMPLETE_ALREADY.",
    compounds=("SEQUENCE PUTFH(export) RECLAIM_COMPLETE(TRUE)", "SEQUENCE RECLAIM_COMPLETE(TRUE)"),
)
async def rc3(ctx: CheckContext) -> Finding:
    w = await ctx.wire("rc3")
    one = await w.seq([nfs4.PUTFH4args(ctx.export_fh), nfs4.RECLAIM_COMPLETE4args(True)])
    require(
        one,
        {S.NFS4_OK, S.NFS4ERR_COMPLETE_ALREADY},
        "RECLAIM_COMPLETE(rca_one_fs) failed",
        "NFS4_OK or NFS4ERR_COMPLETE_ALREADY",
    )
    bare = await w.seq([nfs4.RECLAIM_COMPLETE4args(True)])
    if bare.status != S.NFS4ERR_NOFILEHANDLE:
        raise warn(
            "RECLAIM_COMPLETE(rca_one_fs) without a current filehandle was not refused",
            sent=bare.sent,
            got=bare.got,
            expected="NFS4ERR_NOFILEHANDLE: rca_one_fs names the file system of the current "
            "filehandle",
        )
    return passed(
        f"with the export's root: {one.status.name}; without a filehandle: NFS4ERR_NOFILEHANDLE"
    )


# ---------------------------------------------------------------------- stateids
@check(
    "ST1",
    "TEST_STATEID",
    "RFC 8881 18.48.3",
    does="Opens a file, opens it again with the same owner (the stateid's seqid advances), "
    "and tests the current stateid, the older one, an unknown one and the anonymous "
    "special stateid.",
    rule="TEST_STATEID answers, for each stateid, what using it would return: NFS4_OK for "
    "the current one, NFS4ERR_OLD_STATEID for an earlier seqid, NFS4ERR_BAD_STATEID for one "
    "the server never issued; special stateids are always NFS4ERR_BAD_STATEID.",
    compounds=(
        "SEQUENCE PUTFH OPEN(create) GETFH",
        "SEQUENCE PUTFH OPEN (same owner)",
        "SEQUENCE TEST_STATEID(current, older, unknown, anonymous)",
    ),
)
async def st1(ctx: CheckContext) -> Finding:
    w = await ctx.wire("st1")
    fh, first, name = await open_file(ctx, w, "st1")
    again = await w.seq(
        [nfs4.PUTFH4args(ctx.need_scratch()), w.open_args(name, OPEN4_SHARE_ACCESS_BOTH)]
    )
    require(again, S.NFS4_OK, "the second OPEN failed", "NFS4_OK")
    opened = again.first(nfs4.OPEN4res)
    assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None
    current = opened.resok.stateid
    unknown = never_issued(current)
    anonymous = nfs4.stateid4(0, bytes(12))
    sids = [current, first, unknown, anonymous]
    want = [S.NFS4_OK, S.NFS4ERR_OLD_STATEID, S.NFS4ERR_BAD_STATEID, S.NFS4ERR_BAD_STATEID]
    if current.seqid == first.seqid:
        sids, want = (
            [current, unknown, anonymous],
            [S.NFS4_OK, S.NFS4ERR_BAD_STATEID, S.NFS4ERR_BAD_STATEID],
        )
    reply = await w.seq([nfs4.TEST_STATEID4args(sids)])
    require(reply, S.NFS4_OK, "TEST_STATEID failed", "NFS4_OK with one status per stateid")
    ts = resok_of(reply, nfs4.TEST_STATEID4res)
    assert isinstance(ts, nfs4.TEST_STATEID4resok)
    got = list(ts.tsr_status_codes)
    mapped = [S.NFS4ERR_BAD_STATEID if c == S.NFS4ERR_STALE_STATEID else c for c in got]
    if got != want and mapped == want:
        raise warn(
            "NFS4ERR_STALE_STATEID for a stateid this server instance never issued",
            sent=reply.sent,
            got=", ".join(s.name for s in got),
            expected=", ".join(s.name for s in want) + " (NFS4ERR_STALE_STATEID is not among "
            "TEST_STATEID's valid statuses: previous instances are not considered)",
        )
    if got != want:
        raise fail(
            "TEST_STATEID's statuses do not match the stateids",
            sent=reply.sent,
            got=", ".join(s.name for s in got),
            expected=", ".join(s.name for s in want),
        )
    await w.seq([nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, current)])
    return passed(", ".join(s.name.removeprefix("NFS4ERR_") for s in got))


@check(
    "ST2",
    "FREE_STATEID",
    "RFC 8881 18.38.3",
    does="Opens a file and locks a range; FREE_STATEID of the lock stateid and of the open "
    "stateid; LOCKU; FREE_STATEID of the lock stateid again, then TEST_STATEID of it and "
    "FREE_STATEID of an unknown stateid.",
    rule="A stateid with valid locks of any kind (byte ranges, the open's share reservation) "
    "is not freed: NFS4ERR_LOCKS_HELD. A lock stateid with no locks left is freed, after "
    "which any use of it is NFS4ERR_BAD_STATEID.",
    compounds=(
        "SEQUENCE PUTFH LOCK(WRITE_LT, 0+100)",
        "SEQUENCE FREE_STATEID(lock)",
        "SEQUENCE FREE_STATEID(open)",
        "SEQUENCE PUTFH LOCKU",
        "SEQUENCE FREE_STATEID(lock)",
        "SEQUENCE TEST_STATEID(lock)",
        "SEQUENCE FREE_STATEID(unknown)",
    ),
)
async def st2(ctx: CheckContext) -> Finding:
    w = await ctx.wire("st2")
    fh, sid, _ = await open_file(ctx, w, "st2")
    locked = await w.seq([nfs4.PUTFH4args(fh), lock_args(sid, b"st2-locker", 0, 100, w.clientid)])
    require(locked, S.NFS4_OK, "LOCK failed", "NFS4_OK")
    lk = resok_of(locked, nfs4.LOCK4res)
    assert isinstance(lk, nfs4.LOCK4resok)
    lsid = lk.lock_stateid
    for label, target in (("the lock stateid", lsid), ("the open stateid", sid)):
        held = await w.seq([nfs4.FREE_STATEID4args(target)])
        require(
            held,
            S.NFS4ERR_LOCKS_HELD,
            f"FREE_STATEID of {label} holding locks was not refused",
            "NFS4ERR_LOCKS_HELD: the stateid still has locks",
        )
    unlocked = await w.seq(
        [nfs4.PUTFH4args(fh), nfs4.LOCKU4args(nfs_lock_type4.WRITE_LT, 0, lsid, 0, NFS4_UINT64_MAX)]
    )
    require(unlocked, S.NFS4_OK, "LOCKU failed", "NFS4_OK")
    lu = unlocked.first(nfs4.LOCKU4res)
    assert isinstance(lu, nfs4.LOCKU4res) and lu.lock_stateid is not None
    freed = await w.seq([nfs4.FREE_STATEID4args(lu.lock_stateid)])
    require(freed, S.NFS4_OK, "FREE_STATEID of a lock stateid with no locks failed", "NFS4_OK")
    tested = await w.seq([nfs4.TEST_STATEID4args([lu.lock_stateid])])
    ts = resok_of(tested, nfs4.TEST_STATEID4res)
    if not isinstance(ts, nfs4.TEST_STATEID4resok) or list(ts.tsr_status_codes) != [
        S.NFS4ERR_BAD_STATEID
    ]:
        raise fail(
            "a freed stateid is still known",
            sent=tested.sent,
            got=tested.got,
            expected="NFS4ERR_BAD_STATEID for any use after FREE_STATEID",
        )
    unknown = await w.seq([nfs4.FREE_STATEID4args(never_issued(sid))])
    await w.seq([nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, sid)])
    if unknown.status == S.NFS4ERR_STALE_STATEID:
        raise warn(
            "FREE_STATEID of a stateid never issued: NFS4ERR_STALE_STATEID",
            sent=unknown.sent,
            got=unknown.got,
            expected="NFS4ERR_BAD_STATEID (in NFSv4.1 a previous server instance is detected "
            "by the session, not by stateids)",
        )
    require(
        unknown, S.NFS4ERR_BAD_STATEID, "FREE_STATEID of an unknown stateid", "NFS4ERR_BAD_STATEID"
    )
    return passed(
        "NFS4ERR_LOCKS_HELD for the held lock and the open; freed after LOCKU, then "
        "NFS4ERR_BAD_STATEID"
    )


# ---------------------------------------------------------------------- leases
@check(
    "LEASE1",
    "a bare SEQUENCE renews the lease",
    "RFC 8881 8.3, 18.46.3",
    does="Opens a file, then for 1.3 lease times (at most --lease-wait seconds) sends only a "
    "bare SEQUENCE every third of the lease, and tests the open stateid.",
    rule="Every successful SEQUENCE renews the client ID's lease; a client that only renews "
    "keeps its state: the open stays valid and no revoked-state flag appears.",
    compounds=(
        "SEQUENCE PUTFH OPEN(create)",
        "SEQUENCE (every lease_time / 3)",
        "SEQUENCE TEST_STATEID(open)",
    ),
)
async def lease1(ctx: CheckContext) -> Finding:
    w = await ctx.wire("lease1")
    fh, sid, _ = await open_file(ctx, w, "lease1")
    lease = ctx.lease_time
    span = min(1.3 * lease, ctx.options.lease_wait)
    step = max(0.5, lease / 3)
    waited = 0.0
    while waited < span:
        await trio.sleep(min(step, span - waited))
        waited += min(step, span - waited)
        reply = await w.seq([])
        require(reply, S.NFS4_OK, "a renewing SEQUENCE failed", "NFS4_OK")
        if w.flags_seen & REVOKED_FLAGS:
            raise fail(
                "state was revoked although the lease was renewed",
                sent=reply.sent,
                got=f"sr_status_flags {w.flags_seen:#x}",
                expected="no revoked-state bit",
            )
    tested = await w.seq([nfs4.TEST_STATEID4args([sid])])
    ts = resok_of(tested, nfs4.TEST_STATEID4res)
    if not isinstance(ts, nfs4.TEST_STATEID4resok) or list(ts.tsr_status_codes) != [S.NFS4_OK]:
        raise fail(
            "the open did not survive a renewed lease",
            sent=tested.sent,
            got=tested.got,
            expected="NFS4_OK: SEQUENCE renews the lease",
        )
    await w.seq([nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, sid)])
    note = (
        "" if span >= lease else f" (less than the lease: --lease-wait {ctx.options.lease_wait:g})"
    )
    return passed(f"open valid after {span:.1f} s of bare SEQUENCEs, lease_time {lease} s{note}")


FLAG_NAMES = {
    0x1: "CB_PATH_DOWN",
    0x2: "CB_GSS_CONTEXTS_EXPIRING",
    0x4: "CB_GSS_CONTEXTS_EXPIRED",
    0x8: "EXPIRED_ALL_STATE_REVOKED",
    0x10: "EXPIRED_SOME_STATE_REVOKED",
    0x20: "ADMIN_STATE_REVOKED",
    0x40: "RECALLABLE_STATE_REVOKED",
    0x80: "LEASE_MOVED",
    0x100: "RESTART_RECLAIM_NEEDED",
    0x200: "CB_PATH_DOWN_SESSION",
    0x400: "BACKCHANNEL_FAULT",
    0x800: "DEVID_CHANGED",
    0x1000: "DEVID_DELETED",
}


@check(
    "LEASE2",
    "SEQ4_STATUS flags in normal operation",
    "RFC 8881 18.46.3",
    does="Creates a session with a back channel on its connection, reclaims nothing, holds "
    "no delegation, and reads sr_status_flags of several SEQUENCEs.",
    rule="The flags report state: revoked state, a moved lease, a needed reclaim, a broken "
    "back channel. With a fresh client ID that did its RECLAIM_COMPLETE, lost nothing and "
    "has a working back channel, none of them applies; undefined bits are never set.",
    compounds=("EXCHANGE_ID, CREATE_SESSION(CONN_BACK_CHAN), RECLAIM_COMPLETE", "SEQUENCE x 3"),
)
async def lease2(ctx: CheckContext) -> Finding:
    w = await ctx.wire("lease2")
    seen = 0
    for _ in range(3):
        reply = await w.seq([])
        require(reply, S.NFS4_OK, "SEQUENCE failed", "NFS4_OK")
        seen |= w.flags_seen
    undefined = seen & ~DEFINED_SEQ4_FLAGS
    if undefined:
        raise fail(
            "undefined sr_status_flags bits set",
            sent="SEQUENCE",
            got=f"{seen:#x}",
            expected="only the bits of 18.46.3",
        )
    wrong = seen & (
        REVOKED_FLAGS
        | SEQ4_STATUS_LEASE_MOVED
        | SEQ4_STATUS_RESTART_RECLAIM_NEEDED
        | SEQ4_STATUS_CB_PATH_DOWN
    )
    if wrong:
        raise warn(
            "status flags report trouble a fresh client ID does not have",
            sent="SEQUENCE (x 3) after RECLAIM_COMPLETE, with a back channel",
            got=f"sr_status_flags {seen:#x} ({flag_names(seen, FLAG_NAMES)})",
            expected="no revoked-state, LEASE_MOVED, RESTART_RECLAIM_NEEDED or CB_PATH_DOWN bit",
        )
    return passed(f"sr_status_flags {seen:#x} ({flag_names(seen, FLAG_NAMES)})")


__all__ = ["describe_ops", "open_file", "require"]

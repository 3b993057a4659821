"""Checks of the location attributes and of referrals (RFC 8881 chapter 11, no operator needed).

The location attributes are read on the export's root (LOC1-3); the referral checks
(REF1-6) use the first junction to an absent file system that a bounded walk of the
export finds (``CheckContext.referrals``).  On NFS-Ganesha a referral is a sticky
directory without execute bits (mode 1666) carrying a ``user.fs_location`` extended
attribute "SERVER:/path"; on the project's test server, ``referral PATH --fs NAME --on
INSTANCE``.
"""

from __future__ import annotations

from fusenfs.check_base import Finding, NotSupported, check, fail, passed, warn
from fusenfs.check_context import CheckContext, Referral
from fusenfs.check_sessions import require
from fusenfs.check_wire import Reply, Wire
from recovery.locations import parse_server
from session.errors import NFSClientError
from session.xdr import nfs4
from session.xdr.const import FATTR4, fs4_status_type, nfs_ftype4, nfsstat4
from session.xdr.fattr import NFSAttrs, bitmap4_from, decode_fattr4

S = nfsstat4
LOCATION_ATTRS = (FATTR4.FS_LOCATIONS, FATTR4.FS_LOCATIONS_INFO, FATTR4.FS_STATUS)


def servers_of(attrs: NFSAttrs) -> list[str]:
    """Every server string in fs_locations and fs_locations_info, in order."""
    out: list[str] = []
    if attrs.fs_locations is not None:
        for loc in attrs.fs_locations.locations:
            out += list(loc.server)
    if attrs.fs_locations_info is not None:
        for item in attrs.fs_locations_info.fli_items:
            out += [e.fls_server for e in item.fli_entries]
    return out


def describe_locations(attrs: NFSAttrs) -> str:
    parts = []
    if attrs.fs_locations is not None:
        fl = attrs.fs_locations
        entries = "; ".join(
            f"{','.join(loc.server)}:/{'/'.join(loc.rootpath)}" for loc in fl.locations
        )
        parts.append(f"fs_locations fs_root /{'/'.join(fl.fs_root)}, [{entries}]")
    if attrs.fs_locations_info is not None:
        fli = attrs.fs_locations_info
        n = sum(len(i.fli_entries) for i in fli.fli_items)
        parts.append(f"fs_locations_info {len(fli.fli_items)} item(s), {n} server(s)")
    if attrs.fs_status is not None:
        st = attrs.fs_status
        parts.append(f"fs_status absent={st.fss_absent} type={st.fss_type.name}")
    return "; ".join(parts) or "no location attribute"


async def location_addresses(ctx: CheckContext) -> list[tuple[str, int]]:
    """(host, port) of every server named in the location attributes of the export's root
    and of each referral found, other than the server itself, in order, once each."""
    assert ctx.main is not None
    seen: list[tuple[str, int]] = []
    batches: list[list[nfs4.ArgOp]] = [
        [nfs4.PUTFH4args(ctx.export_fh), nfs4.GETATTR4args(bitmap4_from(LOCATION_ATTRS[:2]))]
    ]
    for ref in await ctx.referrals():
        batches.append(
            [
                nfs4.PUTFH4args(ref.parent_fh),
                nfs4.LOOKUP4args(ref.name),
                nfs4.GETATTR4args(bitmap4_from(LOCATION_ATTRS[:2])),
            ]
        )
    for ops in batches:
        reply = await ctx.main.seq(ops)
        attrs = reply.attrs()
        if attrs is None:
            continue
        for server in servers_of(attrs):
            try:
                host, port = parse_server(server, ctx.port)
            except ValueError:
                continue
            if (host, port) != (ctx.host, ctx.port) and (host, port) not in seen:
                seen.append((host, port))
    return seen


def supported(ctx: CheckContext, attr: FATTR4) -> bool:
    return int(attr) in ctx.supported


async def junction(ctx: CheckContext) -> Referral:
    """The first referral of the export.

    Raises:
        NotSupported: none was found (the message gives the walk's bounds).
    """
    found = await ctx.referrals()
    if not found:
        raise NotSupported(f"no referral found in the export ({ctx.walk_summary})")
    return found[0]


async def junction_getattr(ctx: CheckContext, ref: Referral, attrs: list[int]) -> Reply:
    assert ctx.main is not None
    return await ctx.main.seq(
        [
            nfs4.PUTFH4args(ref.parent_fh),
            nfs4.LOOKUP4args(ref.name),
            nfs4.GETATTR4args(bitmap4_from(attrs)),
        ]
    )


def where(ref: Referral) -> str:
    return "/" + "/".join(ref.path)


# ---------------------------------------------------------------------- the root
async def root_location_check(ctx: CheckContext, attr: FATTR4, name: str) -> tuple[Reply, NFSAttrs]:
    assert ctx.main is not None
    referrals = await ctx.referrals()
    if not supported(ctx, attr):
        if referrals and attr == FATTR4.FS_LOCATIONS:
            rule = (
                "a server that returns NFS4ERR_MOVED MUST support fs_locations"
                if attr == FATTR4.FS_LOCATIONS
                else f"a server that returns NFS4ERR_MOVED SHOULD support {name}"
            )
            finding = fail if attr == FATTR4.FS_LOCATIONS else warn
            raise finding(
                f"{name} is not in supported_attrs, yet the export holds a referral",
                sent="GETATTR(supported_attrs)",
                got=f"no {name}; referral at {where(referrals[0])}",
                expected=rule + " (RFC 8881 11.3)",
            )
        raise NotSupported(f"{name} is not in supported_attrs (RECOMMENDED attribute)")
    reply, attrs = await ctx.main.getattr(ctx.export_fh, [attr, FATTR4.FSID])
    require(reply, S.NFS4_OK, f"GETATTR({name}) of the export failed", "NFS4_OK")
    if attrs is None or getattr(attrs, name) is None:
        raise warn(
            f"{name} is in supported_attrs but GETATTR does not return it",
            sent=reply.sent,
            got=reply.got,
            expected=f"the {name} value: without it the client cannot learn the file system's "
            "path or its other locations",
        )
    return reply, attrs


@check(
    "LOC1",
    "fs_locations of the export",
    "RFC 8881 11.16",
    does="GETATTR(fs_locations) of the export's root, if supported_attrs lists it; checks "
    "that every server string parses (a name, an address, or a universal address "
    "a.b.c.d.p1.p2) and that fs_root is a path.",
    rule="fs_locations gives the path of the file system on this server (fs_root) and the "
    "locations where it can also be found. A server that ever answers NFS4ERR_MOVED MUST "
    "support it.",
    compounds=("SEQUENCE PUTFH(export) GETATTR(fs_locations, fsid)",),
)
async def loc1(ctx: CheckContext) -> Finding:
    reply, attrs = await root_location_check(ctx, FATTR4.FS_LOCATIONS, "fs_locations")
    bad = []
    for server in servers_of(attrs):
        try:
            parse_server(server, ctx.port)
        except ValueError as exc:
            bad.append(f"{server!r}: {exc}")
    if bad:
        raise warn(
            "a location's server string does not parse",
            sent=reply.sent,
            got="; ".join(bad),
            expected="a DNS name, an IP address or a universal address",
        )
    return passed(describe_locations(attrs))


@check(
    "LOC2",
    "fs_locations_info of the export",
    "RFC 8881 11.17",
    does="GETATTR(fs_locations_info) of the export's root, if supported_attrs lists it.",
    rule="fs_locations_info describes each location with flags and ranks (writable, "
    "currency, handle and fileid classes); servers SHOULD provide fs_locations too.",
    compounds=("SEQUENCE PUTFH(export) GETATTR(fs_locations_info, fsid)",),
)
async def loc2(ctx: CheckContext) -> Finding:
    _, attrs = await root_location_check(ctx, FATTR4.FS_LOCATIONS_INFO, "fs_locations_info")
    if not supported(ctx, FATTR4.FS_LOCATIONS):
        raise warn(
            "fs_locations_info without fs_locations",
            got="supported_attrs lacks fs_locations",
            expected="servers SHOULD make fs_locations available with fs_locations_info (11.1)",
        )
    return passed(describe_locations(attrs))


@check(
    "LOC3",
    "fs_status of the export",
    "RFC 8881 11.18",
    does="GETATTR(fs_status) of the export's root, if supported_attrs lists it.",
    rule="fs_status says whether the file system is present here (fss_absent FALSE for the "
    "one being served) and of what kind it is.",
    compounds=("SEQUENCE PUTFH(export) GETATTR(fs_status, fsid)",),
)
async def loc3(ctx: CheckContext) -> Finding:
    reply, attrs = await root_location_check(ctx, FATTR4.FS_STATUS, "fs_status")
    assert attrs.fs_status is not None
    if attrs.fs_status.fss_absent:
        raise fail(
            "the export being served says it is absent",
            sent=reply.sent,
            got=describe_locations(attrs),
            expected="fss_absent FALSE for a present file system",
        )
    return passed(describe_locations(attrs))


# ---------------------------------------------------------------------- referrals
@check(
    "REF1",
    "READDIR over a referral",
    "RFC 8881 11.4, 11.5.6",
    does="Walks the export (bounded breadth-first READDIR) for an entry that is the root of "
    "an absent file system, then READs its directory three ways: asking rdattr_error, "
    "asking a location attribute, and asking neither.",
    rule="In a READDIR of a present directory, the entry for an absent file system reports "
    "NFS4ERR_MOVED in rdattr_error when that is asked and no location attribute is; with a "
    "location attribute asked, the entry's attributes come back normally; asking neither, "
    "the whole READDIR fails with NFS4ERR_MOVED.",
    compounds=(
        "SEQUENCE PUTFH(dir) READDIR(rdattr_error, type, filehandle)   (the walk)",
        "SEQUENCE PUTFH(dir) READDIR(fs_locations, fsid, mounted_on_fileid)",
        "SEQUENCE PUTFH(dir) READDIR(type, size)",
    ),
)
async def ref1(ctx: CheckContext) -> Finding:
    ref = await junction(ctx)
    assert ctx.main is not None
    w = ctx.main

    async def listing(attrs: list[int]) -> tuple[Reply, NFSAttrs | None]:
        reply = await w.seq(
            [
                nfs4.PUTFH4args(ref.parent_fh),
                nfs4.READDIR4args(0, bytes(8), 8192, 65536, bitmap4_from(attrs)),
            ]
        )
        rd = reply.op(2)
        if isinstance(rd, nfs4.READDIR4res) and rd.resok is not None:
            for entry in rd.resok.reply.entries:
                if entry.name == ref.name:
                    return reply, decode_fattr4(entry.attrs)
        return reply, None

    with_locs, entry = await listing([FATTR4.FS_LOCATIONS, FATTR4.FSID, FATTR4.MOUNTED_ON_FILEID])
    require(
        with_locs,
        S.NFS4_OK,
        "READDIR asking fs_locations failed over a referral",
        "NFS4_OK: with a location attribute asked, attributes are fetched normally",
    )
    neither, _ = await listing([FATTR4.TYPE, FATTR4.SIZE])
    details = [
        f"walk: {ctx.walk_summary}; {where(ref)} ({ref.evidence})",
        f"READDIR(fs_locations, fsid, mounted_on_fileid): {with_locs.got}; the entry has "
        + (describe_locations(entry) if entry is not None else "no attributes"),
        f"READDIR(type, size): {neither.got}",
    ]
    problems = []
    if entry is None or entry.fs_locations is None:
        problems.append("the referral's entry lacks fs_locations when it is asked for")
    if neither.status != S.NFS4ERR_MOVED:
        problems.append("READDIR asking neither rdattr_error nor a location attribute did not fail")
    if problems:
        raise warn(
            "; ".join(problems),
            sent=f"{with_locs.sent}; {neither.sent}",
            got=f"{with_locs.got}; {neither.got}",
            expected="the entry's fs_locations when asked (11.4: attributes are fetched "
            "normally); NFS4ERR_MOVED for the whole READDIR when neither rdattr_error nor a "
            "location attribute is asked",
            details=details,
        )
    return passed(
        f"referral {where(ref)}: rdattr_error NFS4ERR_MOVED; with fs_locations the entry "
        "is listed; without either READDIR fails with NFS4ERR_MOVED",
        details,
    )


@check(
    "REF2",
    "LOOKUP into a referral, then fs_locations",
    "RFC 8881 11.3, 11.16",
    does="Sends, as the Linux client does on a referral: PUTFH(parent) LOOKUP(junction) "
    "GETATTR(fs_locations, fsid, mounted_on_fileid).",
    rule="The check for an absent file system happens at the start of each operation, so "
    "LOOKUP into one succeeds and the GETATTR that follows returns the location attributes "
    "asked for (and the few others allowed); fs_locations MUST be available.",
    compounds=(
        "SEQUENCE PUTFH(parent) LOOKUP(name) GETATTR(fs_locations, fsid, mounted_on_fileid)",
    ),
)
async def ref2(ctx: CheckContext) -> Finding:
    ref = await junction(ctx)
    reply = await junction_getattr(
        ctx, ref, [FATTR4.FS_LOCATIONS, FATTR4.FSID, FATTR4.MOUNTED_ON_FILEID]
    )
    if reply.status_of(2) == S.NFS4ERR_MOVED:
        raise fail(
            "LOOKUP into the referral failed with NFS4ERR_MOVED",
            sent=reply.sent,
            got=reply.got,
            expected="LOOKUP succeeds; the next operation decides (only location attributes)",
        )
    require(
        reply,
        S.NFS4_OK,
        "GETATTR(fs_locations) of the referral failed",
        "NFS4_OK with fs_locations",
    )
    attrs = reply.attrs()
    if attrs is None or attrs.fs_locations is None or not attrs.fs_locations.locations:
        raise fail(
            "the referral has no fs_locations",
            sent=reply.sent,
            got=reply.got,
            expected="fs_locations naming where the file system is",
        )
    ctx.cache["ref_attrs"] = attrs
    return passed(describe_locations(attrs))


@check(
    "REF3",
    "what else a client gets at a referral",
    "RFC 8881 11.3, 11.4",
    does="After LOOKUP into the referral: GETATTR of ordinary attributes only (type, size), "
    "GETFH, READDIR; compares the referral's fsid with its parent's and asks "
    "mounted_on_fileid.",
    rule="In an absent file system only a GETATTR that asks for fs_locations, "
    "fs_locations_info or fs_status is performed; any other operation, GETFH and READDIR "
    "included, gets NFS4ERR_MOVED. The absent file system's fsid SHOULD differ from every "
    "fsid of this server, and mounted_on_fileid SHOULD be available.",
    compounds=(
        "SEQUENCE PUTFH(parent) LOOKUP(name) GETATTR(type, size)",
        "SEQUENCE PUTFH(parent) LOOKUP(name) GETFH",
        "SEQUENCE PUTFH(parent) LOOKUP(name) READDIR(type)",
    ),
)
async def ref3(ctx: CheckContext) -> Finding:
    ref = await junction(ctx)
    assert ctx.main is not None
    plain = await junction_getattr(ctx, ref, [FATTR4.TYPE, FATTR4.SIZE])
    getfh = await ctx.main.seq(
        [nfs4.PUTFH4args(ref.parent_fh), nfs4.LOOKUP4args(ref.name), nfs4.GETFH4args()]
    )
    listing = await ctx.main.seq(
        [
            nfs4.PUTFH4args(ref.parent_fh),
            nfs4.LOOKUP4args(ref.name),
            nfs4.READDIR4args(0, bytes(8), 4096, 8192, bitmap4_from([FATTR4.TYPE])),
        ]
    )
    for reply, what in (
        (plain, "GETATTR without a location attribute"),
        (getfh, "GETFH"),
        (listing, "READDIR"),
    ):
        if reply.status == S.NFS4_OK:
            raise fail(
                f"{what} in the absent file system succeeded",
                sent=reply.sent,
                got=reply.got,
                expected="NFS4ERR_MOVED: the file system is absent here",
            )
    info = await junction_getattr(
        ctx, ref, [FATTR4.FSID, FATTR4.MOUNTED_ON_FILEID, FATTR4.FS_LOCATIONS]
    )
    attrs = info.attrs() or NFSAttrs()
    parent = await ctx.main.getattr(ref.parent_fh, [FATTR4.FSID])
    parent_fsid = parent[1].fsid if parent[1] else None
    details = [
        f"GETATTR(type, size): {plain.got}",
        f"GETFH: {getfh.got}",
        f"READDIR: {listing.got}",
        f"fsid {attrs.fsid} (parent {parent_fsid}), mounted_on_fileid {attrs.mounted_on_fileid}",
    ]
    if attrs.fsid is None or attrs.fsid == parent_fsid or attrs.mounted_on_fileid is None:
        raise warn(
            "the referral's fsid is its parent's, or fsid / mounted_on_fileid is missing",
            sent=info.sent,
            got=f"fsid {attrs.fsid} (parent {parent_fsid}), "
            f"mounted_on_fileid {attrs.mounted_on_fileid}",
            expected="an fsid of its own (the boundary between present and absent file systems) "
            "and mounted_on_fileid (11.4)",
            details=details,
        )
    return passed(
        "ordinary GETATTR, GETFH and READDIR: NFS4ERR_MOVED; own fsid, mounted_on_fileid given",
        details,
    )


@check(
    "REF4",
    "fs_status of a referral",
    "RFC 8881 11.18",
    does="GETATTR(fs_status) after LOOKUP into the referral, if supported_attrs lists it.",
    rule="For a referral fs_status says absent (fss_absent TRUE) with fss_type "
    "STATUS4_REFERRAL; a client tells a referral from a migrated file system by it. A "
    "server that returns NFS4ERR_MOVED SHOULD support fs_status.",
    compounds=("SEQUENCE PUTFH(parent) LOOKUP(name) GETATTR(fs_status)",),
)
async def ref4(ctx: CheckContext) -> Finding:
    ref = await junction(ctx)
    if not supported(ctx, FATTR4.FS_STATUS):
        raise warn(
            "fs_status is not supported, yet the server has referrals",
            got="supported_attrs lacks fs_status",
            expected="servers that return NFS4ERR_MOVED SHOULD support fs_status (11.3)",
        )
    reply = await junction_getattr(ctx, ref, [FATTR4.FS_STATUS])
    require(reply, S.NFS4_OK, "GETATTR(fs_status) of the referral failed", "NFS4_OK")
    attrs = reply.attrs()
    st = attrs.fs_status if attrs else None
    if st is None or not st.fss_absent:
        raise fail(
            "the referral's fs_status does not say absent",
            sent=reply.sent,
            got=reply.got,
            expected="fss_absent TRUE",
        )
    if st.fss_type != fs4_status_type.STATUS4_REFERRAL:
        raise warn(
            "the referral's fs_status is not STATUS4_REFERRAL",
            sent=reply.sent,
            got=st.fss_type.name,
            expected="STATUS4_REFERRAL: an absent file system that was never here",
        )
    return passed("fss_absent TRUE, STATUS4_REFERRAL")


@check(
    "REF5",
    "fs_locations_info of a referral",
    "RFC 8881 11.17",
    does="GETATTR(fs_locations_info) after LOOKUP into the referral, if supported_attrs lists it.",
    rule="A server that returns NFS4ERR_MOVED SHOULD support fs_locations_info; the items "
    "name the file system's locations and their properties.",
    compounds=("SEQUENCE PUTFH(parent) LOOKUP(name) GETATTR(fs_locations_info)",),
)
async def ref5(ctx: CheckContext) -> Finding:
    ref = await junction(ctx)
    if not supported(ctx, FATTR4.FS_LOCATIONS_INFO):
        raise warn(
            "fs_locations_info is not supported, yet the server has referrals",
            got="supported_attrs lacks fs_locations_info",
            expected="servers that return NFS4ERR_MOVED SHOULD support fs_locations_info (11.3)",
        )
    reply = await junction_getattr(ctx, ref, [FATTR4.FS_LOCATIONS_INFO])
    require(reply, S.NFS4_OK, "GETATTR(fs_locations_info) of the referral failed", "NFS4_OK")
    attrs = reply.attrs()
    if attrs is None or attrs.fs_locations_info is None or not attrs.fs_locations_info.fli_items:
        raise fail(
            "the referral's fs_locations_info is missing or empty",
            sent=reply.sent,
            got=reply.got,
            expected="at least one location item",
        )
    return passed(describe_locations(attrs))


@check(
    "REF6",
    "the referral's target serves the file system",
    "RFC 8881 11.5.6, 11.16",
    does="Follows the first location of the referral: connects to it, establishes a client "
    "ID and session, looks up the location's rootpath and reads its type and fs_status.",
    rule="A referral sends the client to another server where the file system is present: "
    "at the rootpath fs_locations gives, that server serves a directory (and, if it "
    "supports fs_status, says present).",
    compounds=(
        "EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE at the location",
        "SEQUENCE PUTROOTFH LOOKUP(rootpath...) GETATTR(type, fsid, fs_status)",
    ),
)
async def ref6(ctx: CheckContext) -> Finding:
    ref = await junction(ctx)
    attrs = ctx.cache.get("ref_attrs")
    if not isinstance(attrs, NFSAttrs):
        reply = await junction_getattr(ctx, ref, [FATTR4.FS_LOCATIONS])
        attrs = reply.attrs()
    if attrs is None or attrs.fs_locations is None or not attrs.fs_locations.locations:
        raise NotSupported("the referral has no fs_locations to follow (see REF2)")
    loc = attrs.fs_locations.locations[0]
    if not loc.server:
        raise fail(
            "the referral's first location names no server",
            got=describe_locations(attrs),
            expected="at least one server per location",
        )
    host, port = parse_server(loc.server[0], ctx.port)
    try:
        w: Wire = await ctx.wire("ref6", host=host, port=port)
    except NFSClientError as exc:
        raise fail(
            f"the referral's target {host}:{port} cannot be used",
            got=str(exc),
            expected="a server there that accepts a client ID and session",
        ) from None
    want = [FATTR4.TYPE, FATTR4.FSID, FATTR4.FS_STATUS]
    reply = await w.seq([*w.path_ops(loc.rootpath), nfs4.GETATTR4args(bitmap4_from(want))])
    require(
        reply,
        S.NFS4_OK,
        f"{host}:{port} does not serve /{'/'.join(loc.rootpath)}",
        "NFS4_OK: the location's rootpath exists there",
    )
    got = reply.attrs() or NFSAttrs()
    if got.type != nfs_ftype4.NF4DIR or (got.fs_status is not None and got.fs_status.fss_absent):
        raise fail(
            "the referral's target is not a present directory",
            sent=reply.sent,
            got=f"type {got.type}, {describe_locations(got)}",
            expected="a directory whose fs_status (if any) says present",
        )
    return passed(
        f"{host}:{port}:/{'/'.join(loc.rootpath)} is a present directory, fsid {got.fsid}"
    )

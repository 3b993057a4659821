"""Migration, referrals and server reconfiguration, checked against RFC 8881 section 11
and the seed 001 sections 4.1.3 and 4.2.1 - 4.2.7.

The fixture cluster: instance A (127.0.0.1) serves file systems a and b, instance B
(127.0.0.2) serves c; leases and grace periods are 3 s.
"""

from __future__ import annotations

import pytest
import trio

from contrib.testserver import (
    Cluster,
    ClusterConfig,
    ControlError,
    FsSpec,
    InstanceConfig,
    open_cluster,
)
from contrib.testserver.rawclient import RawClient
from contrib.testserver.server import EndpointConfig, universal_address
from session.xdr import nfs4
from session.xdr.const import (
    EXCHGID4_FLAG_CONFIRMED_R,
    FATTR4,
    FSLI4BX_GFLAGS,
    FSLI4GF_CUR_REQ,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_LEASE_MOVED,
    channel_dir_from_client4,
    fs4_status_type,
    nfs_lock_type4,
    nfsstat4,
    open_claim_type4,
    stable_how4,
)
from session.xdr.fattr import bitmap4_from, decode_fattr4

from .conftest import Connect, endpoint
from .test_ts_state import new_lock, open_file

S = nfsstat4
LOCATION_ATTRS = bitmap4_from([FATTR4.FS_LOCATIONS, FATTR4.FS_STATUS, FATTR4.FSID])
STAT_ATTRS = bitmap4_from([FATTR4.TYPE, FATTR4.SIZE, FATTR4.FILEID, FATTR4.MODE])


async def holder_of(
    connect: Connect, owner: bytes, path: str = "/export/a"
) -> tuple[RawClient, bytes, nfs4.stateid4]:
    """A client on A holding an open of ``path``/file (with data "migrating data")."""
    c = await connect("A", owner=owner)
    await c.establish()
    root = await c.lookup_path(path)
    fh, sid, _ = await open_file(c, root, b"file", OPEN4_SHARE_ACCESS_BOTH)
    await c.ok(
        [nfs4.PUTFH4args(fh), nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, b"migrating data")]
    )
    return c, fh, sid


def getattr_of(res: nfs4.COMPOUND4res) -> nfs4.GETATTR4res:
    ga = res.resarray[-1]
    assert isinstance(ga, nfs4.GETATTR4res)
    return ga


async def test_moved_and_lease_moved_until_locations_fetched(
    cluster: Cluster, connect: Connect
) -> None:
    """After migration the source answers NFS4ERR_MOVED for the file system (at the first
    operation using the filehandle: PUTFH itself succeeds, RFC 8881 section 11.3) and sets
    SEQ4_STATUS_LEASE_MOVED for the client holding state there until it fetches a
    location attribute (18.46.3; seed 001 4.2.5).  fs_status says absent, not a
    referral; fs_locations names B; other file systems on A are unaffected."""
    with trio.fail_after(10):
        c, fh, sid = await holder_of(connect, b"lease-moved")
        bystander = await connect("A", owner=b"bystander")
        await bystander.establish()
        await cluster.migrate("a", to="B", tsm=False)
        res = await c.seq([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(STAT_ATTRS)])
        assert c.last_flags & SEQ4_STATUS_LEASE_MOVED
        assert res.status == S.NFS4ERR_MOVED and len(res.resarray) == 3
        assert res.resarray[1].status == S.NFS4_OK  # PUTFH
        read = await c.seq([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 5)])
        assert read.status == S.NFS4ERR_MOVED
        await bystander.ok([])
        assert not bystander.last_flags & SEQ4_STATUS_LEASE_MOVED
        # fs_status alone does not clear LEASE_MOVED.
        status_only = bitmap4_from([FATTR4.FS_STATUS])
        res = await c.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(status_only)])
        attrs = decode_fattr4(_resok(getattr_of(res)))
        assert attrs.fs_status is not None and attrs.fs_status.fss_absent
        assert attrs.fs_status.fss_type != fs4_status_type.STATUS4_REFERRAL
        assert c.last_flags & SEQ4_STATUS_LEASE_MOVED
        res = await c.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(LOCATION_ATTRS)])
        attrs = decode_fattr4(_resok(getattr_of(res)))
        host, port = endpoint(cluster, "B")
        assert attrs.fs_locations is not None
        assert attrs.fs_locations.fs_root == ["export", "a"]
        assert [loc.server for loc in attrs.fs_locations.locations] == [
            [universal_address(host, port)]
        ]
        assert attrs.fs_locations.locations[0].rootpath == ["export", "a"]
        assert attrs.fsid == cluster.filesystem("a").fsid
        await c.ok([])
        assert not c.last_flags & SEQ4_STATUS_LEASE_MOVED
        b_root = await c.lookup_path("/export/b")
        await open_file(c, b_root, b"still-here", OPEN4_SHARE_ACCESS_READ)
        kinds = [e.kind for e in cluster.events.since(0)]
        assert "lease-moved-set" in kinds and "lease-moved-cleared" in kinds and "moved" in kinds


def _resok(ga: nfs4.GETATTR4res) -> nfs4.fattr4:
    assert ga.resok is not None
    return ga.resok.obj_attributes


async def test_lease_moved_needs_every_migrated_fs(cluster: Cluster, connect: Connect) -> None:
    """With two migrated file systems the flag stays until both locations are fetched."""
    with trio.fail_after(10):
        c, fh_a, _ = await holder_of(connect, b"two-fs")
        b_root = await c.lookup_path("/export/b")
        fh_b, _, _ = await open_file(c, b_root, b"other", OPEN4_SHARE_ACCESS_READ)
        await cluster.migrate("a", to="B", tsm=False)
        await cluster.migrate("b", to="B", tsm=False)
        await c.ok([nfs4.PUTFH4args(fh_a), nfs4.GETATTR4args(LOCATION_ATTRS)])
        await c.ok([])
        assert c.last_flags & SEQ4_STATUS_LEASE_MOVED
        info = bitmap4_from([FATTR4.FS_LOCATIONS_INFO])
        res = await c.ok([nfs4.PUTFH4args(fh_b), nfs4.GETATTR4args(info)])
        attrs = decode_fattr4(_resok(getattr_of(res)))
        assert attrs.fs_locations_info is not None
        entry = attrs.fs_locations_info.fli_items[0].fli_entries[0]
        assert not entry.fls_info[FSLI4BX_GFLAGS] & FSLI4GF_CUR_REQ  # B, not A
        await c.ok([])
        assert not c.last_flags & SEQ4_STATUS_LEASE_MOVED


async def test_freeze_gives_delay_even_in_a_two_fs_compound(
    cluster: Cluster, connect: Connect, nursery: trio.Nursery
) -> None:
    """Seed 001 section 4.2.7: while the file system is frozen its operations get
    NFS4ERR_DELAY; in a COMPOUND touching b then a, the b operations succeed and the
    first a operation fails; afterwards the source says MOVED."""
    with trio.fail_after(10):
        c, fh_a, sid = await holder_of(connect, b"frozen")
        b_root = await c.lookup_path("/export/b")
        done = trio.Event()

        async def migrate() -> None:
            await cluster.migrate("a", to="B", freeze=1.0)
            done.set()

        nursery.start_soon(migrate)
        await cluster.events.wait_for(lambda e: e.kind == "freeze")
        res = await c.seq(
            [
                nfs4.PUTFH4args(b_root),
                nfs4.GETATTR4args(STAT_ATTRS),
                nfs4.PUTFH4args(fh_a),
                nfs4.READ4args(sid, 0, 4),
            ]
        )
        assert res.status == S.NFS4ERR_DELAY
        assert [r.status for r in res.resarray] == [
            S.NFS4_OK,
            S.NFS4_OK,
            S.NFS4_OK,
            S.NFS4_OK,
            S.NFS4ERR_DELAY,
        ]
        ts = await c.ok([nfs4.TEST_STATEID4args([sid])])
        tsr = ts.resarray[-1]
        assert isinstance(tsr, nfs4.TEST_STATEID4res) and tsr.resok is not None
        assert tsr.resok.tsr_status_codes == [S.NFS4ERR_DELAY]
        await done.wait()
        res = await c.seq([nfs4.PUTFH4args(fh_a), nfs4.READ4args(sid, 0, 4)])
        assert res.status == S.NFS4ERR_MOVED


async def test_tsm_merged_client_id(cluster: Cluster, connect: Connect) -> None:
    """Seed 001 4.2.2, state merger: the client already has a client ID on B; after TSM
    EXCHANGE_ID on B returns that confirmed client ID; TEST_STATEID on B says the open
    stateid is valid and a lost lock stateid is not; SEQ4_STATUS_ADMIN_STATE_REVOKED is
    set until FREE_STATEID."""
    with trio.fail_after(10):
        owner = b"merged-client"
        c, fh, sid = await holder_of(connect, owner)
        lk = await c.ok([nfs4.PUTFH4args(fh), new_lock(sid, b"lock-owner", 0, 10)])
        lock_res = lk.resarray[-1]
        assert isinstance(lock_res, nfs4.LOCK4res) and lock_res.resok is not None
        lock_sid = lock_res.resok.lock_stateid
        on_b = await connect("B", owner=owner, verifier=c.verifier)
        await on_b.establish()
        known_on_b = on_b.clientid
        report = await cluster.migrate(
            "a", to="B", tsm=True, transfer_session=False, lose_stateids=[lock_sid.other.hex()]
        )
        assert report.clients[0].dest_clientid == known_on_b
        again = await on_b.exchange_id()
        assert again.resok is not None
        assert again.resok.eir_clientid == known_on_b
        assert again.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
        res = await on_b.ok([nfs4.TEST_STATEID4args([sid, lock_sid])])
        tsr = res.resarray[-1]
        assert isinstance(tsr, nfs4.TEST_STATEID4res) and tsr.resok is not None
        assert tsr.resok.tsr_status_codes == [S.NFS4_OK, S.NFS4ERR_ADMIN_REVOKED]
        assert on_b.last_flags & SEQ4_STATUS_ADMIN_STATE_REVOKED
        read = await on_b.ok([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 100)])
        rd = read.resarray[-1]
        assert isinstance(rd, nfs4.READ4res) and rd.resok is not None
        assert rd.resok.data == b"migrating data"
        # The lost lock may be reclaimed in B's per-FS grace period (seed 001 4.2.1).
        reclaim = new_lock(sid, b"lock-owner", 0, 10, reclaim=True)
        assert (await on_b.seq([nfs4.PUTFH4args(fh), reclaim])).status == S.NFS4_OK
        await on_b.ok([nfs4.FREE_STATEID4args(lock_sid)])
        await on_b.ok([])
        assert not on_b.last_flags & SEQ4_STATUS_ADMIN_STATE_REVOKED


async def test_tsm_transferred_client_id_and_session(cluster: Cluster, connect: Connect) -> None:
    """Seed 001 4.2.2, transferred client ID: the client was unknown on B; EXCHANGE_ID on
    B returns a confirmed client ID it never had.  The session came too (4.2.7): a new
    connection binds to it with BIND_CONN_TO_SESSION and its slots accept the client's
    next sequence ids without NFS4ERR_SEQ_MISORDERED; the open stateid works on B."""
    with trio.fail_after(10):
        owner = b"transferred-client"
        c, fh, sid = await holder_of(connect, owner)
        await c.ok([], slot=2)
        report = await cluster.migrate("a", to="B", tsm=True, merge_client=False)
        assert report.clients[0].how.startswith("transferred")
        on_b = await connect("B", owner=owner, verifier=c.verifier)
        res = await on_b.exchange_id()
        assert res.resok is not None
        assert res.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
        assert res.resok.eir_clientid not in (c.clientid, 0)
        bind = await on_b.call(
            [
                nfs4.BIND_CONN_TO_SESSION4args(
                    c.sessionid, channel_dir_from_client4.CDFC4_FORE_OR_BOTH, False
                )
            ]
        )
        assert bind.status == S.NFS4_OK
        on_b.sessionid = c.sessionid
        on_b.seqids = dict(c.seqids)
        read = await on_b.ok([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 100)])
        assert read.status == S.NFS4_OK
        relaxed = await on_b.seq([], slot=5, seqid=77)  # never used there: relaxed
        assert relaxed.status == S.NFS4_OK
        strict = await on_b.seq([], slot=5, seqid=90)  # now established: misordered
        assert strict.status == S.NFS4ERR_SEQ_MISORDERED
        assert any(e.kind == "slot-established" for e in cluster.events.since(0))


async def test_no_tsm_per_fs_grace(cluster: Cluster, connect: Connect) -> None:
    """Seed 001 4.2.2 / 4.2.3: without TSM the client gets a new unconfirmed client ID on
    B; B's per-FS grace period lets it reclaim its open and lock of the migrated file
    system (not of c, which B always served: NO_GRACE), makes other clients' new opens
    wait (GRACE), and ends for it with RECLAIM_COMPLETE(rca_one_fs)."""
    with trio.fail_after(10):
        owner = b"no-tsm-client"
        c, fh, sid = await holder_of(connect, owner)
        await c.ok([nfs4.PUTFH4args(fh), new_lock(sid, b"lock-owner", 0, 10)])
        await cluster.migrate("a", to="B", tsm=False)
        on_b = await connect("B", owner=owner, verifier=c.verifier)
        eid = await on_b.exchange_id()
        assert eid.resok is not None
        assert not eid.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
        assert eid.resok.eir_clientid != c.clientid
        assert (await on_b.create_session()).status == S.NFS4_OK
        # A global RECLAIM_COMPLETE (new client ID) does not end the per-FS reclaims.
        await on_b.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        other = await connect("B", owner=b"someone-else")
        await other.establish()
        a_root = await other.lookup_path("/export/a")
        waiting = await other.seq(
            [nfs4.PUTFH4args(a_root), other.open_args(b"new", OPEN4_SHARE_ACCESS_READ, create=True)]
        )
        assert waiting.status == S.NFS4ERR_GRACE
        c_root = await on_b.lookup_path("/export/c")
        cfh, _, _ = await open_file(on_b, c_root, b"cfile", OPEN4_SHARE_ACCESS_READ, owner=b"x")
        elsewhere = on_b.open_args(
            None, OPEN4_SHARE_ACCESS_READ, claim=open_claim_type4.CLAIM_PREVIOUS, owner=b"x2"
        )
        assert (await on_b.seq([nfs4.PUTFH4args(cfh), elsewhere])).status == S.NFS4ERR_NO_GRACE
        reclaim = on_b.open_args(
            None, OPEN4_SHARE_ACCESS_BOTH, claim=open_claim_type4.CLAIM_PREVIOUS
        )
        res = await on_b.ok([nfs4.PUTFH4args(fh), reclaim])
        opened = res.resarray[-1]
        assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None
        new_sid = opened.resok.stateid
        relock = new_lock(new_sid, b"lock-owner", 0, 10, reclaim=True)
        assert (await on_b.seq([nfs4.PUTFH4args(fh), relock])).status == S.NFS4_OK
        # The old stateid means nothing on B.
        ts = await on_b.ok([nfs4.TEST_STATEID4args([sid])])
        tsr = ts.resarray[-1]
        assert isinstance(tsr, nfs4.TEST_STATEID4res) and tsr.resok is not None
        assert tsr.resok.tsr_status_codes == [S.NFS4ERR_BAD_STATEID]
        done: list[nfs4.ArgOp] = [nfs4.PUTFH4args(fh), nfs4.RECLAIM_COMPLETE4args(True)]
        assert (await on_b.seq(done)).status == S.NFS4_OK
        assert (await on_b.seq(done)).status == S.NFS4ERR_COMPLETE_ALREADY
        late = new_lock(new_sid, b"lock-owner-2", 20, 10, reclaim=True)
        assert (await on_b.seq([nfs4.PUTFH4args(fh), late])).status == S.NFS4ERR_NO_GRACE
        # Every reclaimer is done: the grace period is lifted for everyone.
        assert (
            await other.seq(
                [
                    nfs4.PUTFH4args(a_root),
                    other.open_args(b"new", OPEN4_SHARE_ACCESS_READ, create=True),
                ]
            )
        ).status == S.NFS4_OK


async def test_known_lost_lock_is_not_reclaimable(cluster: Cluster, connect: Connect) -> None:
    """Seed 001 4.2.1: a lock revoked on the source and not yet freed is known lost; the
    destination refuses its reclaim (NFS4ERR_RECLAIM_BAD) and accepts the open's."""
    with trio.fail_after(10):
        owner = b"lost-lock-client"
        c, fh, sid = await holder_of(connect, owner)
        res = await c.ok([nfs4.PUTFH4args(fh), new_lock(sid, b"lock-owner", 0, 10)])
        lock_res = res.resarray[-1]
        assert isinstance(lock_res, nfs4.LOCK4res) and lock_res.resok is not None
        cluster.revoke("A", lock_res.resok.lock_stateid.other.hex())
        await cluster.migrate("a", to="B", tsm=False)
        on_b = await connect("B", owner=owner)
        await on_b.establish()
        reclaim = on_b.open_args(
            None, OPEN4_SHARE_ACCESS_BOTH, claim=open_claim_type4.CLAIM_PREVIOUS
        )
        res = await on_b.ok([nfs4.PUTFH4args(fh), reclaim])
        opened = res.resarray[-1]
        assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None
        relock = new_lock(
            opened.resok.stateid, b"lock-owner", 0, 10, nfs_lock_type4.WRITE_LT, reclaim=True
        )
        assert (await on_b.seq([nfs4.PUTFH4args(fh), relock])).status == S.NFS4ERR_RECLAIM_BAD


async def test_referral(cluster: Cluster, connect: Connect) -> None:
    """RFC 8881 sections 11.3, 11.4 and 11.18: a junction to a file system on B is a
    referral on A: LOOKUP crosses, GETFH gets MOVED, GETATTR of fs_locations / fs_status
    works (absent, STATUS4_REFERRAL, B's address, the rootpath on B); READDIR of the
    parent reports the entry through rdattr_error (NFS4ERR_MOVED) or fails with MOVED
    when neither rdattr_error nor a location attribute is asked for."""
    with trio.fail_after(10):
        fs = cluster.add_referral("/export/a/ref", "r", "B")
        c = await connect("A", owner=b"referral-client")
        await c.establish()
        root = await c.lookup_path("/export/a")
        crossing = await c.seq([nfs4.PUTFH4args(root), nfs4.LOOKUP4args(b"ref"), nfs4.GETFH4args()])
        assert crossing.status == S.NFS4ERR_MOVED and len(crossing.resarray) == 4
        res = await c.ok(
            [nfs4.PUTFH4args(root), nfs4.LOOKUP4args(b"ref"), nfs4.GETATTR4args(LOCATION_ATTRS)]
        )
        attrs = decode_fattr4(_resok(getattr_of(res)))
        assert attrs.fs_status is not None and attrs.fs_status.fss_absent
        assert attrs.fs_status.fss_type == fs4_status_type.STATUS4_REFERRAL
        assert attrs.fs_locations is not None
        assert attrs.fs_locations.fs_root == ["export", "a", "ref"]
        host, port = endpoint(cluster, "B")
        assert attrs.fs_locations.locations[0].server == [universal_address(host, port)]
        assert attrs.fs_locations.locations[0].rootpath == ["export", "r"]
        assert attrs.fsid == fs.fsid
        with_error = bitmap4_from([FATTR4.RDATTR_ERROR, FATTR4.TYPE, FATTR4.FSID])
        listing = await c.ok(
            [nfs4.PUTFH4args(root), nfs4.READDIR4args(0, bytes(8), 1000, 8000, with_error)]
        )
        rd = listing.resarray[-1]
        assert isinstance(rd, nfs4.READDIR4res) and rd.resok is not None
        entries = {e.name: decode_fattr4(e.attrs) for e in rd.resok.reply.entries}
        assert entries[b"ref"].rdattr_error == S.NFS4ERR_MOVED
        assert entries[b"ref"].type is None and entries[b"ref"].fsid == fs.fsid
        plain = bitmap4_from([FATTR4.TYPE])
        failing = await c.seq(
            [nfs4.PUTFH4args(root), nfs4.READDIR4args(0, bytes(8), 1000, 8000, plain)]
        )
        assert failing.status == S.NFS4ERR_MOVED
        # On B the file system is present at its rootpath.
        on_b = await connect("B")
        await on_b.establish()
        r_root = await on_b.lookup_path("/export/r")
        await open_file(on_b, r_root, b"x", OPEN4_SHARE_ACCESS_READ)
        # c, served by B from the start, is a referral on A at /export/c.
        res = await c.ok(
            [
                nfs4.PUTROOTFH4args(),
                nfs4.LOOKUP4args(b"export"),
                nfs4.LOOKUP4args(b"c"),
                nfs4.GETATTR4args(LOCATION_ATTRS),
            ]
        )
        attrs = decode_fattr4(_resok(getattr_of(res)))
        assert (
            attrs.fs_status is not None
            and attrs.fs_status.fss_type == fs4_status_type.STATUS4_REFERRAL
        )


async def test_multiple_location_entries(cluster: Cluster, connect: Connect) -> None:
    """Seed 001 4.2.4: several location entries: B's addresses (trunkable, one entry),
    then other servers."""
    with trio.fail_after(10):
        c, fh, _ = await holder_of(connect, b"locations")
        cluster.set_locations("a", [["127.0.0.9:2049"], ["127.0.0.10:3000", "127.0.0.11"]])
        await cluster.migrate("a", to="B", tsm=False)
        res = await c.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(LOCATION_ATTRS)])
        attrs = decode_fattr4(_resok(getattr_of(res)))
        assert attrs.fs_locations is not None
        host, port = endpoint(cluster, "B")
        assert [loc.server for loc in attrs.fs_locations.locations] == [
            [universal_address(host, port)],
            ["127.0.0.9"],
            ["127.0.0.10.11.184", "127.0.0.11"],
        ]


async def test_trunking_and_server_owner_changes(nursery: trio.Nursery) -> None:
    """RFC 8881 2.10.5 and seed 001 4.1.3: two addresses with the same server_owner share
    sessions (session trunking); a different so_minor_id shares the client ID but not
    sessions (client ID trunking); changing so_minor_id, so_major_id and server_scope
    shows in EXCHANGE_ID."""
    with trio.fail_after(10):
        config = ClusterConfig(
            instances=[
                InstanceConfig(
                    "T",
                    [
                        EndpointConfig("127.0.0.1"),
                        EndpointConfig("127.0.0.3"),
                        EndpointConfig("127.0.0.4", so_minor_id=1),
                    ],
                    lease_time=3,
                )
            ],
            filesystems=[FsSpec("a")],
            lease_time=3,
        )
        async with open_cluster(config) as cl:
            eps = cl.instance("T").endpoints
            first = await RawClient.connect(eps[0].address, eps[0].port, nursery, owner=b"trunk")
            await first.establish()
            same = await RawClient.connect(
                eps[1].address, eps[1].port, nursery, owner=b"trunk", verifier=first.verifier
            )
            other = await RawClient.connect(
                eps[2].address, eps[2].port, nursery, owner=b"trunk", verifier=first.verifier
            )
            e1 = await same.exchange_id()
            e2 = await other.exchange_id()
            assert e1.resok is not None and e2.resok is not None
            assert e1.resok.eir_clientid == e2.resok.eir_clientid == first.clientid
            assert e1.resok.eir_server_owner.so_minor_id == 0
            assert e2.resok.eir_server_owner.so_minor_id == 1
            same.sessionid = other.sessionid = first.sessionid
            assert (await same.seq([], slot=1)).status == S.NFS4_OK
            assert (await other.seq([], slot=2)).status == S.NFS4ERR_BADSESSION
            cl.set_so_minor_id("127.0.0.4", 0)
            cl.set_so_major_id("T", b"another-server")
            cl.set_server_scope("T", b"another-scope")
            e3 = await other.exchange_id()
            assert e3.resok is not None
            assert e3.resok.eir_server_owner.so_minor_id == 0
            assert e3.resok.eir_server_owner.so_major_id == b"another-server"
            assert e3.resok.eir_server_scope == b"another-scope"
            assert (await other.seq([], slot=2)).status == S.NFS4_OK
            nursery.cancel_scope.cancel()


async def test_retired_address_is_a_path_change(nursery: trio.Nursery) -> None:
    """Seed 001 4.2.4: an address of the serving instance stops serving a file system.
    There the file system is absent (NFS4ERR_MOVED; fs_status absent, not a referral)
    and the location entries list the instance's other addresses; at those the same
    session (same so_minor_id) or the same client ID (another so_minor_id) goes on with
    the same stateids.  Other file systems stay at the retired address; no
    LEASE_MOVED (the lease did not move); a migration undoes the retirement."""
    with trio.fail_after(10):
        config = ClusterConfig(
            instances=[
                InstanceConfig(
                    "T",
                    [
                        EndpointConfig("127.0.0.1"),
                        EndpointConfig("127.0.0.4"),
                        EndpointConfig("127.0.0.5", so_minor_id=1),
                    ],
                    lease_time=3,
                ),
                InstanceConfig("U", [EndpointConfig("127.0.0.2")], lease_time=3),
            ],
            filesystems=[FsSpec("a"), FsSpec("b")],
            lease_time=3,
        )
        async with open_cluster(config) as cl:
            eps = cl.instance("T").endpoints
            c = await RawClient.connect(eps[0].address, eps[0].port, nursery, owner=b"retire")
            await c.establish()
            root = await c.lookup_path("/export/a")
            fh, sid, _ = await open_file(c, root, b"file", OPEN4_SHARE_ACCESS_BOTH)
            write = nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, b"same server")
            await c.ok([nfs4.PUTFH4args(fh), write])

            with pytest.raises(ControlError, match="not served by U"):
                cl.retire_address("a", "127.0.0.2")
            cl.retire_address("a", "127.0.0.1")
            read = await c.seq([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 64)])
            assert read.status == S.NFS4ERR_MOVED
            assert not c.last_flags & SEQ4_STATUS_LEASE_MOVED
            res = await c.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(LOCATION_ATTRS)])
            attrs = decode_fattr4(_resok(getattr_of(res)))
            assert attrs.fs_status is not None and attrs.fs_status.fss_absent
            assert attrs.fs_status.fss_type != fs4_status_type.STATUS4_REFERRAL
            assert attrs.fs_locations is not None
            assert [loc.server for loc in attrs.fs_locations.locations] == [
                [eps[1].uaddr(), eps[2].uaddr()]
            ]
            b_root = await c.lookup_path("/export/b")  # b is still served here
            await open_file(c, b_root, b"other", OPEN4_SHARE_ACCESS_READ)

            # Session trunking: the same session, the same stateid, at 127.0.0.4.
            same = await RawClient.connect(
                eps[1].address, eps[1].port, nursery, owner=b"retire", verifier=c.verifier
            )
            e1 = await same.exchange_id()
            assert e1.resok is not None and e1.resok.eir_clientid == c.clientid
            assert e1.resok.eir_server_owner.so_minor_id == 0
            same.sessionid = c.sessionid
            res = await same.ok([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 64)], slot=1)
            assert isinstance(res.resarray[-1], nfs4.READ4res)
            assert res.resarray[-1].resok is not None
            assert res.resarray[-1].resok.data == b"same server"
            res = await same.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(LOCATION_ATTRS)], slot=1)
            attrs = decode_fattr4(_resok(getattr_of(res)))
            assert attrs.fs_status is not None and not attrs.fs_status.fss_absent

            # Client ID trunking: a new session on the same client ID at 127.0.0.5.
            other = await RawClient.connect(
                eps[2].address, eps[2].port, nursery, owner=b"retire", verifier=c.verifier
            )
            e2 = await other.exchange_id()
            assert e2.resok is not None and e2.resok.eir_clientid == c.clientid
            assert e2.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
            assert (await other.seq([], sessionid=c.sessionid, slot=2)).status == (
                S.NFS4ERR_BADSESSION
            )
            other.clientid, other.cs_sequence = c.clientid, e2.resok.eir_sequenceid
            cs = await other.create_session()
            assert cs.status == S.NFS4_OK
            await other.ok([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 64)])

            cl.retire_address("a", "127.0.0.4")
            with pytest.raises(ControlError, match="no other address"):
                cl.retire_address("a", "127.0.0.5")
            retired = {
                ep["address"]: ep["retired"] for ep in cl.status()["instances"][0]["endpoints"]
            }
            assert retired == {"127.0.0.1": ["a"], "127.0.0.4": ["a"], "127.0.0.5": []}
            assert [e.kind for e in cl.events.since(0)].count("address-retired") == 2
            await cl.migrate("a", to="U")
            await cl.migrate("a", to="T")
            assert all(not ep.retired for ep in eps)
            nursery.cancel_scope.cancel()


async def test_replaced_location_entries(cluster: Cluster, connect: Connect) -> None:
    """``set_locations(..., replace=True)``: the entries are the whole list, in order (an
    unusable address may come before the real server: failover, RFC 8881 11.5.5)."""
    with trio.fail_after(10):
        c, fh, _ = await holder_of(connect, b"replaced")
        await cluster.migrate("a", to="B", tsm=False)
        cluster.set_locations("a", [["127.0.0.9:3000"], ["B"]], replace=True)
        res = await c.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(LOCATION_ATTRS)])
        attrs = decode_fattr4(_resok(getattr_of(res)))
        assert attrs.fs_locations is not None
        host, port = endpoint(cluster, "B")
        assert [loc.server for loc in attrs.fs_locations.locations] == [
            ["127.0.0.9.11.184"],
            [universal_address(host, port)],
        ]
        cluster.set_locations("a", [["127.0.0.9:3000"]])
        res = await c.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(LOCATION_ATTRS)])
        attrs = decode_fattr4(_resok(getattr_of(res)))
        assert attrs.fs_locations is not None
        assert [loc.server for loc in attrs.fs_locations.locations] == [
            [universal_address(host, port)],
            ["127.0.0.9.11.184"],
        ]

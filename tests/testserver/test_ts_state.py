"""Opens, share reservations, byte-range locks, stateids, leases, delegations, reboot
and grace, and namespace errors of the test server, checked against RFC 8881
(sections 8, 9, 10 and 18)."""

from __future__ import annotations

import trio

from contrib.testserver import Cluster, open_cluster
from contrib.testserver.rawclient import RawClient
from session.xdr import nfs4
from session.xdr.const import (
    FATTR4,
    NFS4_UINT64_MAX,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    OPEN4_SHARE_ACCESS_WRITE,
    OPEN4_SHARE_DENY_NONE,
    OPEN4_SHARE_DENY_WRITE,
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
    createmode4,
    nfs_ftype4,
    nfs_lock_type4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
    secinfo_style4,
    stable_how4,
    why_no_delegation4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, encode_fattr4

from .conftest import Connect, two_instance_config

S = nfsstat4


async def open_file(
    c: RawClient,
    dir_fh: bytes,
    name: bytes,
    access: int,
    *,
    deny: int = OPEN4_SHARE_DENY_NONE,
    create: bool = True,
    owner: bytes = b"owner",
    want: int | None = None,
) -> tuple[bytes, nfs4.stateid4, nfs4.OPEN4resok]:
    """OPEN (creating) by name: (filehandle, open stateid, OPEN4resok)."""
    wants = OPEN4_SHARE_ACCESS_WANT_NO_DELEG if want is None else want
    res = await c.ok(
        [
            nfs4.PUTFH4args(dir_fh),
            c.open_args(name, access, deny=deny, create=create, owner=owner, want=wants),
            nfs4.GETFH4args(),
        ]
    )
    opened, getfh = res.resarray[2], res.resarray[3]
    assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None
    assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
    return getfh.resok.object, opened.resok.stateid, opened.resok


def new_lock(
    open_sid: nfs4.stateid4,
    owner: bytes,
    offset: int,
    length: int,
    locktype: nfs_lock_type4 = nfs_lock_type4.WRITE_LT,
    reclaim: bool = False,
) -> nfs4.LOCK4args:
    return nfs4.LOCK4args(
        locktype,
        reclaim,
        offset,
        length,
        nfs4.locker4(
            True,
            open_owner=nfs4.open_to_lock_owner4(0, open_sid, 0, nfs4.state_owner4(0, owner)),
        ),
    )


def more_lock(
    lock_sid: nfs4.stateid4,
    offset: int,
    length: int,
    locktype: nfs_lock_type4 = nfs_lock_type4.WRITE_LT,
) -> nfs4.LOCK4args:
    return nfs4.LOCK4args(
        locktype,
        False,
        offset,
        length,
        nfs4.locker4(False, lock_owner=nfs4.exist_lock_owner4(lock_sid, 0)),
    )


def last(res: nfs4.COMPOUND4res) -> nfs4.ResOp:
    return res.resarray[-1]


async def export_a(c: RawClient) -> bytes:
    return await c.lookup_path("/export/a")


async def test_share_reservations(client: RawClient, connect: Connect) -> None:
    """9.7 / 18.16.4: DENY_WRITE held by one owner refuses another's write open
    (SHARE_DENIED); the same owner may upgrade; OPEN_DOWNGRADE back; CLOSE releases."""
    with trio.fail_after(10):
        root = await export_a(client)
        fh, sid, _ = await open_file(
            client, root, b"shared", OPEN4_SHARE_ACCESS_READ, deny=OPEN4_SHARE_DENY_WRITE
        )
        other = await connect("A", owner=b"other-client")
        await other.establish()
        res = await other.seq(
            [nfs4.PUTFH4args(fh), other.open_args(None, OPEN4_SHARE_ACCESS_WRITE, owner=b"x")]
        )
        assert res.status == S.NFS4ERR_SHARE_DENIED
        reader = await other.seq(
            [nfs4.PUTFH4args(fh), other.open_args(None, OPEN4_SHARE_ACCESS_READ, owner=b"x")]
        )
        assert reader.status == S.NFS4_OK
        # Same owner upgrades to BOTH: same "other", seqid + 1.
        _, sid2, _ = await open_file(client, root, b"shared", OPEN4_SHARE_ACCESS_BOTH, create=False)
        assert sid2.other == sid.other and sid2.seqid == sid.seqid + 1
        down = await client.seq(
            [
                nfs4.PUTFH4args(fh),
                nfs4.OPEN_DOWNGRADE4args(sid2, 0, OPEN4_SHARE_ACCESS_READ, OPEN4_SHARE_DENY_WRITE),
            ]
        )
        assert down.status == S.NFS4_OK
        bad = await client.seq(
            [
                nfs4.PUTFH4args(fh),
                nfs4.OPEN_DOWNGRADE4args(
                    nfs4.stateid4(0, sid.other), 0, OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_DENY_NONE
                ),
            ]
        )
        assert bad.status == S.NFS4ERR_INVAL
        # WRITE through a read-only open: OPENMODE.
        write = await client.seq(
            [
                nfs4.PUTFH4args(fh),
                nfs4.WRITE4args(nfs4.stateid4(0, sid.other), 0, stable_how4.FILE_SYNC4, b"x"),
            ]
        )
        assert write.status == S.NFS4ERR_OPENMODE
        closed = await client.seq(
            [nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, nfs4.stateid4(0, sid.other))]
        )
        assert closed.status == S.NFS4_OK
        assert (
            await other.seq(
                [nfs4.PUTFH4args(fh), other.open_args(None, OPEN4_SHARE_ACCESS_WRITE, owner=b"x")]
            )
        ).status == S.NFS4_OK


async def test_stateid_checks(client: RawClient) -> None:
    """8.2.2 / 18.48: an old seqid -> OLD_STATEID, a future one or unknown "other" ->
    BAD_STATEID, seqid 0 means current; TEST_STATEID reports each; after CLOSE the
    stateid is BAD_STATEID; a stateid of another file -> BAD_STATEID."""
    with trio.fail_after(10):
        root = await export_a(client)
        fh, sid1, _ = await open_file(client, root, b"st", OPEN4_SHARE_ACCESS_READ)
        _, sid2, _ = await open_file(client, root, b"st", OPEN4_SHARE_ACCESS_BOTH, create=False)
        other_fh, _, _ = await open_file(client, root, b"st2", OPEN4_SHARE_ACCESS_READ)

        async def read(fh_: bytes, sid: nfs4.stateid4) -> nfsstat4:
            return (await client.seq([nfs4.PUTFH4args(fh_), nfs4.READ4args(sid, 0, 10)])).status

        assert await read(fh, sid1) == S.NFS4ERR_OLD_STATEID
        assert await read(fh, sid2) == S.NFS4_OK
        assert await read(fh, nfs4.stateid4(0, sid1.other)) == S.NFS4_OK
        assert await read(fh, nfs4.stateid4(sid2.seqid + 5, sid1.other)) == S.NFS4ERR_BAD_STATEID
        assert await read(other_fh, sid2) == S.NFS4ERR_BAD_STATEID
        bogus = nfs4.stateid4(1, b"\x42" * 12)
        res = await client.ok([nfs4.TEST_STATEID4args([sid2, sid1, bogus, nfs4.ANONYMOUS_STATEID])])
        ts = last(res)
        assert isinstance(ts, nfs4.TEST_STATEID4res) and ts.resok is not None
        assert ts.resok.tsr_status_codes == [
            S.NFS4_OK,
            S.NFS4ERR_OLD_STATEID,
            S.NFS4ERR_BAD_STATEID,
            S.NFS4ERR_BAD_STATEID,
        ]
        # FREE_STATEID of a live open: LOCKS_HELD (CLOSE it instead, 18.38.3).
        free = await client.seq([nfs4.FREE_STATEID4args(sid2)])
        assert free.status == S.NFS4ERR_LOCKS_HELD
        await client.ok([nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, sid2)])
        assert await read(fh, sid2) == S.NFS4ERR_BAD_STATEID
        # The anonymous stateid reads without an open (8.2.3).
        assert await read(fh, nfs4.ANONYMOUS_STATEID) == S.NFS4_OK


async def test_byte_range_lock_conflicts(client: RawClient, connect: Connect) -> None:
    """18.10 - 18.12: a write lock conflicts with any other owner's lock (DENIED with the
    holder in LOCK4denied); read locks share; LOCKT tests; LOCKU releases a sub-range
    (split); a read lock needs read access (OPENMODE); zero length is INVAL."""
    with trio.fail_after(10):
        root = await export_a(client)
        fh, sid, _ = await open_file(client, root, b"locked", OPEN4_SHARE_ACCESS_BOTH)
        res = await client.ok([nfs4.PUTFH4args(fh), new_lock(sid, b"lo-1", 0, 100)])
        lk = last(res)
        assert isinstance(lk, nfs4.LOCK4res) and lk.resok is not None
        lock_sid = lk.resok.lock_stateid
        assert lock_sid.seqid == 1

        other = await connect("A", owner=b"locker-2")
        await other.establish()
        ofh, osid, _ = await open_file(
            other, root, b"locked", OPEN4_SHARE_ACCESS_BOTH, create=False
        )
        denied = await other.seq([nfs4.PUTFH4args(ofh), new_lock(osid, b"lo-2", 50, 10)])
        assert denied.status == S.NFS4ERR_DENIED
        info = last(denied)
        assert isinstance(info, nfs4.LOCK4res) and info.denied is not None
        assert (info.denied.offset, info.denied.length) == (0, 100)
        assert info.denied.owner.owner == b"lo-1"
        assert info.denied.owner.clientid == client.clientid

        test = nfs4.LOCKT4args(
            nfs_lock_type4.READ_LT, 99, 1, nfs4.state_owner4(other.clientid, b"lo-2")
        )
        lockt = await other.seq([nfs4.PUTFH4args(ofh), test])
        assert lockt.status == S.NFS4ERR_DENIED
        # Unlock the middle: [0,40) and [60,100) stay; [40,60) is free for others.
        unlock = nfs4.LOCKU4args(nfs_lock_type4.WRITE_LT, 0, lock_sid, 40, 20)
        res = await client.ok([nfs4.PUTFH4args(fh), unlock])
        lu = last(res)
        assert isinstance(lu, nfs4.LOCKU4res) and lu.lock_stateid is not None
        assert lu.lock_stateid.seqid == 2
        granted = await other.ok([nfs4.PUTFH4args(ofh), new_lock(osid, b"lo-2", 45, 10)])
        assert isinstance(last(granted), nfs4.LOCK4res)
        still = await other.seq([nfs4.PUTFH4args(ofh), more_lock(_lock_sid(granted), 30, 20)])
        assert still.status == S.NFS4ERR_DENIED
        # Read locks of two owners coexist.
        r1 = await client.seq(
            [nfs4.PUTFH4args(fh), more_lock(lu.lock_stateid, 200, 10, nfs_lock_type4.READ_LT)]
        )
        assert r1.status == S.NFS4_OK
        r2 = await other.seq(
            [nfs4.PUTFH4args(ofh), more_lock(_lock_sid(granted), 205, 10, nfs_lock_type4.READ_LT)]
        )
        assert r2.status == S.NFS4_OK
        zero = await client.seq([nfs4.PUTFH4args(fh), more_lock(_lock_sid(r1), 0, 0)])
        assert zero.status == S.NFS4ERR_INVAL
        # A lock owner of a read-only open cannot take a write lock.
        rfh, rsid, _ = await open_file(client, root, b"ro", OPEN4_SHARE_ACCESS_READ, owner=b"ro")
        mode = await client.seq([nfs4.PUTFH4args(rfh), new_lock(rsid, b"lo-3", 0, NFS4_UINT64_MAX)])
        assert mode.status == S.NFS4ERR_OPENMODE
        # FREE_STATEID of a lock stateid with locks: LOCKS_HELD.
        free = await client.seq([nfs4.FREE_STATEID4args(nfs4.stateid4(0, lock_sid.other))])
        assert free.status == S.NFS4ERR_LOCKS_HELD


def _lock_sid(res: nfs4.COMPOUND4res) -> nfs4.stateid4:
    lk = res.resarray[-1]
    assert isinstance(lk, nfs4.LOCK4res) and lk.resok is not None
    return lk.resok.lock_stateid


async def test_lock_range_without_splitting(cluster: Cluster, client: RawClient) -> None:
    """A server that cannot split locks answers NFS4ERR_LOCK_RANGE (18.10.4)."""
    with trio.fail_after(10):
        cluster.instance("A").config.lock_splitting = False
        root = await export_a(client)
        fh, sid, _ = await open_file(client, root, b"nosplit", OPEN4_SHARE_ACCESS_BOTH)
        res = await client.ok([nfs4.PUTFH4args(fh), new_lock(sid, b"lo", 0, 100)])
        unlock = nfs4.LOCKU4args(nfs_lock_type4.WRITE_LT, 0, _lock_sid(res), 10, 10)
        assert (await client.seq([nfs4.PUTFH4args(fh), unlock])).status == S.NFS4ERR_LOCK_RANGE


async def test_lease_expiry_revokes_state(connect: Connect) -> None:
    """8.3 / 18.46.3: without renewal for a lease, the state is revoked: SEQUENCE says
    EXPIRED_ALL_STATE_REVOKED, the stateid gives NFS4ERR_EXPIRED (READ and TEST_STATEID)
    until FREE_STATEID; a conflicting open of another client then succeeds."""
    with trio.fail_after(15):
        async with (
            open_cluster(two_instance_config(lease=1, grace=1)) as cl,
            trio.open_nursery() as n,
        ):
            ep = cl.instance("A").endpoints[0]
            c = await RawClient.connect(ep.address, ep.port, n, owner=b"sleepy")
            await c.establish()
            root = await c.lookup_path("/export/a")
            fh, sid, _ = await open_file(
                c, root, b"exp", OPEN4_SHARE_ACCESS_BOTH, deny=OPEN4_SHARE_DENY_WRITE
            )
            await cl.events.wait_for(lambda e: e.kind == "lease-expired")
            res = await c.seq([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 1)])
            assert c.last_flags & SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED
            assert res.status == S.NFS4ERR_EXPIRED
            ts = last(await c.ok([nfs4.TEST_STATEID4args([sid])]))
            assert isinstance(ts, nfs4.TEST_STATEID4res) and ts.resok is not None
            assert ts.resok.tsr_status_codes == [S.NFS4ERR_EXPIRED]
            other = await RawClient.connect(ep.address, ep.port, n, owner=b"awake")
            await other.establish()
            await open_file(other, root, b"exp", OPEN4_SHARE_ACCESS_WRITE, create=False)
            await c.ok([nfs4.FREE_STATEID4args(sid)])
            await c.ok([])
            assert not c.last_flags & SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED
            n.cancel_scope.cancel()


async def test_read_delegation_recalled_on_conflict(client: RawClient, connect: Connect) -> None:
    """10.4 / 20.2: a read open without WANT_NO_DELEG gets a read delegation; another
    client's write open gets NFS4ERR_DELAY while CB_RECALL goes over the back channel;
    after DELEGRETURN the open succeeds.  WANT_NO_DELEG is honoured (NONE_EXT)."""
    with trio.fail_after(10):
        root = await export_a(client)
        fh, _, declined = await open_file(client, root, b"deleg", OPEN4_SHARE_ACCESS_READ)
        assert declined.delegation.delegation_type == open_delegation_type4.OPEN_DELEGATE_NONE_EXT
        assert declined.delegation.od_whynone is not None
        assert declined.delegation.od_whynone.ond_why == why_no_delegation4.WND4_NOT_WANTED
        _, _, granted = await open_file(
            client,
            root,
            b"deleg",
            OPEN4_SHARE_ACCESS_READ,
            create=False,
            owner=b"owner-2",
            want=OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
        )
        assert granted.delegation.delegation_type == open_delegation_type4.OPEN_DELEGATE_READ
        assert granted.delegation.read is not None
        deleg_sid = granted.delegation.read.stateid
        # Opening under the delegation (CLAIM_DELEG_CUR_FH, 18.16.3) needs no new grant.
        under = client.open_args(
            None,
            OPEN4_SHARE_ACCESS_READ,
            owner=b"owner-3",
            claim=open_claim_type4.CLAIM_DELEG_CUR_FH,
            delegation=deleg_sid,
        )
        assert (await client.seq([nfs4.PUTFH4args(fh), under])).status == S.NFS4_OK

        writer = await connect("A", owner=b"writer")
        await writer.establish()
        wopen: list[nfs4.ArgOp] = [
            nfs4.PUTFH4args(fh),
            writer.open_args(None, OPEN4_SHARE_ACCESS_WRITE),
        ]
        assert (await writer.seq(wopen)).status == S.NFS4ERR_DELAY
        recall = await client.wait_callback()
        assert [r.stateid for r in recall.recalls()] == [deleg_sid]
        assert recall.recalls()[0].fh == fh
        await client.ok([nfs4.PUTFH4args(fh), nfs4.DELEGRETURN4args(deleg_sid)])
        assert (await writer.seq(wopen)).status == S.NFS4_OK


async def test_reboot_grace_and_reclaim(cluster: Cluster, connect: Connect) -> None:
    """8.4.2: after a reboot the old session is BADSESSION and the client ID stale; in the
    grace period non-reclaim opens get GRACE, CLAIM_PREVIOUS reclaims succeed until the
    client's RECLAIM_COMPLETE, after which reclaims get NO_GRACE.  The write verifier
    changes (18.32.3)."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"rebooter")
        await c.establish()
        root = await export_a(c)
        fh, sid, _ = await open_file(c, root, b"kept", OPEN4_SHARE_ACCESS_BOTH)
        old_verf = cluster.instance("A").write_verifier
        cluster.reboot("A")
        assert cluster.instance("A").write_verifier != old_verf
        c = await connect("A", owner=b"rebooter")
        assert (await c.seq([], sessionid=b"\0" * 16)).status == S.NFS4ERR_BADSESSION
        await c.establish(reclaim_complete=False)
        fresh = await c.seq(
            [nfs4.PUTFH4args(root), c.open_args(b"new", OPEN4_SHARE_ACCESS_READ, create=True)]
        )
        assert fresh.status == S.NFS4ERR_GRACE
        reclaim = c.open_args(None, OPEN4_SHARE_ACCESS_BOTH, claim=open_claim_type4.CLAIM_PREVIOUS)
        res = await c.seq([nfs4.PUTFH4args(fh), reclaim])
        assert res.status == S.NFS4_OK
        await c.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        again = await c.seq([nfs4.PUTFH4args(fh), reclaim])
        assert again.status == S.NFS4ERR_NO_GRACE
        done = await c.seq([nfs4.RECLAIM_COMPLETE4args(False)])
        assert done.status == S.NFS4ERR_COMPLETE_ALREADY
        # The only reclaimer is done: grace is over, ordinary opens work.
        await open_file(c, root, b"new", OPEN4_SHARE_ACCESS_READ)
        assert sid.other


async def test_namespace_errors(client: RawClient) -> None:
    """Errors a real server returns: NOENT, EXIST, NOTEMPTY, ISDIR, NOTDIR, BADNAME,
    STALE (a removed file's handle), XDEV, ROFS (the pseudo-fs), BADTYPE."""
    with trio.fail_after(10):
        root = await export_a(client)
        pseudo = await client.lookup_path("/export")
        mkd = nfs4.CREATE4args(nfs4.createtype4(nfs_ftype4.NF4DIR), b"d", encode_fattr4(NFSAttrs()))
        res = await client.ok([nfs4.PUTFH4args(root), mkd, nfs4.GETFH4args()])
        dir_fh = _fh(res)
        assert (await client.seq([nfs4.PUTFH4args(root), mkd])).status == S.NFS4ERR_EXIST
        file_fh, fsid, _ = await open_file(client, dir_fh, b"f", OPEN4_SHARE_ACCESS_BOTH)
        await client.ok([nfs4.PUTFH4args(file_fh), nfs4.CLOSE4args(0, fsid)])

        async def status(ops: list[nfs4.ArgOp]) -> nfsstat4:
            return (await client.seq(ops)).status

        assert await status([nfs4.PUTFH4args(root), nfs4.LOOKUP4args(b"nope")]) == S.NFS4ERR_NOENT
        assert await status([nfs4.PUTFH4args(root), nfs4.LOOKUP4args(b"..")]) == S.NFS4ERR_BADNAME
        assert await status([nfs4.PUTFH4args(root), nfs4.REMOVE4args(b"d")]) == S.NFS4ERR_NOTEMPTY
        assert await status([nfs4.PUTFH4args(file_fh), nfs4.LOOKUP4args(b"x")]) == S.NFS4ERR_NOTDIR
        assert (
            await status([nfs4.PUTFH4args(dir_fh), nfs4.READ4args(nfs4.ANONYMOUS_STATEID, 0, 1)])
            == S.NFS4ERR_ISDIR
        )
        assert await status([nfs4.PUTFH4args(pseudo), mkd]) == S.NFS4ERR_ROFS
        reg = nfs4.CREATE4args(nfs4.createtype4(nfs_ftype4.NF4REG), b"r", encode_fattr4(NFSAttrs()))
        assert await status([nfs4.PUTFH4args(root), reg]) == S.NFS4ERR_BADTYPE
        b_root = await client.lookup_path("/export/b")
        cross: list[nfs4.ArgOp] = [
            nfs4.PUTFH4args(dir_fh),
            nfs4.SAVEFH4args(),
            nfs4.PUTFH4args(b_root),
            nfs4.RENAME4args(b"f", b"f"),
        ]
        assert await status(cross) == S.NFS4ERR_XDEV
        await client.ok([nfs4.PUTFH4args(dir_fh), nfs4.REMOVE4args(b"f")])
        assert await status([nfs4.PUTFH4args(file_fh), nfs4.GETFH4args()]) == S.NFS4ERR_STALE
        assert await status([nfs4.GETFH4args()]) == S.NFS4ERR_NOFILEHANDLE
        assert await status([nfs4.PUTFH4args(b"junk")]) == S.NFS4ERR_BADHANDLE


def _fh(res: nfs4.COMPOUND4res) -> bytes:
    getfh = res.resarray[-1]
    assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
    return getfh.resok.object


async def test_file_operations(client: RawClient) -> None:
    """WRITE / READ / COMMIT with the boot verifier, SETATTR size, RENAME, LINK, symlink
    READLINK, READDIR paging with cookies and cookieverf, VERIFY / NVERIFY, EXCLUSIVE4_1
    create retransmission, SECINFO_NO_NAME consuming the filehandle."""
    with trio.fail_after(10):
        root = await export_a(client)
        fh, sid, _ = await open_file(client, root, b"data", OPEN4_SHARE_ACCESS_BOTH)
        res = await client.ok(
            [nfs4.PUTFH4args(fh), nfs4.WRITE4args(sid, 3, stable_how4.UNSTABLE4, b"abc")]
        )
        wr = last(res)
        assert isinstance(wr, nfs4.WRITE4res) and wr.resok is not None
        assert wr.resok.count == 3 and wr.resok.committed == stable_how4.UNSTABLE4
        inst_verf = wr.resok.writeverf
        res = await client.ok(
            [nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 100), nfs4.COMMIT4args(0, 0)]
        )
        rd, cm = res.resarray[2], res.resarray[3]
        assert isinstance(rd, nfs4.READ4res) and rd.resok is not None
        assert rd.resok.data == b"\0\0\0abc" and rd.resok.eof
        assert isinstance(cm, nfs4.COMMIT4res) and cm.resok is not None
        assert cm.resok.writeverf == inst_verf
        setsize = nfs4.SETATTR4args(sid, encode_fattr4(NFSAttrs(size=2)))
        res = await client.ok([nfs4.PUTFH4args(fh), setsize])
        sa = last(res)
        assert isinstance(sa, nfs4.SETATTR4res) and sa.attrsset == bitmap4_from([FATTR4.SIZE])
        attrs = await client.getattrs(fh, [FATTR4.SIZE, FATTR4.TYPE, FATTR4.NUMLINKS])
        assert attrs.size == 2 and attrs.type == nfs_ftype4.NF4REG and attrs.numlinks == 1
        verify = nfs4.VERIFY4args(encode_fattr4(NFSAttrs(size=2)))
        nverify = nfs4.NVERIFY4args(encode_fattr4(NFSAttrs(size=2)))
        assert (await client.seq([nfs4.PUTFH4args(fh), verify])).status == S.NFS4_OK
        assert (await client.seq([nfs4.PUTFH4args(fh), nverify])).status == S.NFS4ERR_SAME
        await client.ok(
            [
                nfs4.PUTFH4args(fh),
                nfs4.SAVEFH4args(),
                nfs4.PUTFH4args(root),
                nfs4.LINK4args(b"data-link"),
                nfs4.SAVEFH4args(),
                nfs4.RENAME4args(b"data-link", b"renamed"),
            ]
        )
        attrs = await client.getattrs(fh, [FATTR4.NUMLINKS])
        assert attrs.numlinks == 2
        sym = nfs4.CREATE4args(
            nfs4.createtype4(nfs_ftype4.NF4LNK, linkdata=b"target/path"),
            b"sym",
            encode_fattr4(NFSAttrs()),
        )
        res = await client.ok([nfs4.PUTFH4args(root), sym, nfs4.READLINK4args()])
        rl = last(res)
        assert isinstance(rl, nfs4.READLINK4res) and rl.resok is not None
        assert rl.resok.link == b"target/path"
        for i in range(30):
            await open_file(client, root, b"many-%02d" % i, OPEN4_SHARE_ACCESS_READ, owner=b"m")
        names: list[bytes] = []
        cookie, verf, eof = 0, bytes(8), False
        want = bitmap4_from([FATTR4.RDATTR_ERROR, FATTR4.FILEHANDLE, FATTR4.TYPE, FATTR4.FILEID])
        while not eof:
            res = await client.ok(
                [nfs4.PUTFH4args(root), nfs4.READDIR4args(cookie, verf, 200, 600, want)]
            )
            rdr = last(res)
            assert isinstance(rdr, nfs4.READDIR4res) and rdr.resok is not None
            verf = rdr.resok.cookieverf
            entries = rdr.resok.reply.entries
            names += [e.name for e in entries]
            if entries:
                cookie = entries[-1].cookie
            eof = rdr.resok.reply.eof
        assert sorted(names) == sorted(
            [b"data", b"renamed", b"sym"] + [b"many-%02d" % i for i in range(30)]
        )
        stale_verf = await client.seq(
            [nfs4.PUTFH4args(root), nfs4.READDIR4args(cookie, b"\x01" * 8, 200, 600, want)]
        )
        assert stale_verf.status == S.NFS4ERR_NOT_SAME
        verifier = b"exclusiv"
        excl = client.open_args(
            b"excl",
            OPEN4_SHARE_ACCESS_BOTH,
            create=True,
            mode=createmode4.EXCLUSIVE4_1,
            verifier=verifier,
            owner=b"e",
        )
        await client.ok([nfs4.PUTFH4args(root), excl])
        again = await client.seq([nfs4.PUTFH4args(root), excl])
        assert again.status == S.NFS4_OK  # a retransmission with the same verifier
        excl2 = client.open_args(
            b"excl",
            OPEN4_SHARE_ACCESS_BOTH,
            create=True,
            mode=createmode4.EXCLUSIVE4_1,
            verifier=b"another!",
            owner=b"e",
        )
        assert (await client.seq([nfs4.PUTFH4args(root), excl2])).status == S.NFS4ERR_EXIST
        consumed = await client.seq(
            [
                nfs4.PUTFH4args(root),
                nfs4.SECINFO_NO_NAME4args(secinfo_style4.SECINFO_STYLE4_CURRENT_FH),
                nfs4.GETFH4args(),
            ]
        )
        assert consumed.status == S.NFS4ERR_NOFILEHANDLE
        assert len(consumed.resarray) == 4


async def test_unreturned_delegation_is_revoked(connect: Connect) -> None:
    """10.4.6 / 18.46.3: a delegation not returned within a lease after CB_RECALL is
    revoked: the holder sees SEQ4_STATUS_RECALLABLE_STATE_REVOKED and DELEG_REVOKED for
    the stateid, and the conflicting open then succeeds."""
    with trio.fail_after(15):
        async with (
            open_cluster(two_instance_config(lease=1, grace=1)) as cl,
            trio.open_nursery() as n,
        ):
            ep = cl.instance("A").endpoints[0]
            holder = await RawClient.connect(ep.address, ep.port, n, owner=b"holder")
            await holder.establish()
            root = await holder.lookup_path("/export/a")
            fh, _, opened = await open_file(
                holder,
                root,
                b"f",
                OPEN4_SHARE_ACCESS_READ,
                want=OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
            )
            assert opened.delegation.read is not None
            deleg = opened.delegation.read.stateid

            async def renew() -> None:  # the holder stays alive; only the delegation lapses
                while True:
                    await holder.ok([], slot=1)
                    await trio.sleep(0.2)

            n.start_soon(renew)
            writer = await RawClient.connect(ep.address, ep.port, n, owner=b"writer")
            await writer.establish()
            wopen: list[nfs4.ArgOp] = [
                nfs4.PUTFH4args(fh),
                writer.open_args(None, OPEN4_SHARE_ACCESS_WRITE),
            ]
            assert (await writer.seq(wopen)).status == S.NFS4ERR_DELAY
            await holder.wait_callback()
            await cl.events.wait_for(lambda e: e.kind == "delegation-revoked")
            await holder.ok([])
            assert holder.last_flags & SEQ4_STATUS_RECALLABLE_STATE_REVOKED
            ret = await holder.seq([nfs4.PUTFH4args(fh), nfs4.DELEGRETURN4args(deleg)])
            assert ret.status == S.NFS4ERR_DELEG_REVOKED
            await writer.ok(wopen)
            await holder.ok([nfs4.FREE_STATEID4args(deleg)])
            await holder.ok([])
            assert not holder.last_flags & SEQ4_STATUS_RECALLABLE_STATE_REVOKED
            n.cancel_scope.cancel()


async def test_purged_lease_loses_the_client_id(cluster: Cluster, connect: Connect) -> None:
    """A lease expired with the client ID forgotten: BADSESSION on SEQUENCE, then
    STALE_CLIENTID on CREATE_SESSION (the reboot-like recovery path, 8.4.2)."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"purged")
        await c.establish()
        assert cluster.expire("A", c.clientid, purge=True) == [c.clientid]
        assert (await c.seq([])).status == S.NFS4ERR_BADSESSION
        stale = await c.call([c.create_session_args(sequence=2)])
        assert stale.status == S.NFS4ERR_STALE_CLIENTID

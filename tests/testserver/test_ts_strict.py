"""The test server's stricter RFC 8881 behaviours (issue 12, item 5), one raw-compound test each.

* a non-reclaim OPEN / LOCK before the client's RECLAIM_COMPLETE gets NFS4ERR_GRACE, in a
  grace period and after it (section 18.51.3);
* a second reboot before the reclaims finish keeps every unfinished reclaimer, and the
  grace period does not end before they are done (section 8.4.3);
* ca_maxresponsesize_cached and ca_maxresponsesize are enforced (NFS4ERR_REP_TOO_BIG_TO_CACHE,
  NFS4ERR_REP_TOO_BIG, section 2.10.6.4), the too-big reply is still cached, a state-changing
  operation that might not fit is not executed, and a channel too small for any reply is
  refused at CREATE_SESSION or at SEQUENCE (section 18.36.3);
* EXCHANGE_ID by another principal for a confirmed client ID follows case 3 of section
  18.35.4: NFS4ERR_CLID_INUSE only while that client ID has an unexpired lease with state;
* undefined flag bits in EXCHANGE_ID and CREATE_SESSION get NFS4ERR_INVAL;
* FREE_STATEID of a stateid that still holds locks gets NFS4ERR_LOCKS_HELD (18.38.3),
  also when named by the current stateid;
* DESTROY_SESSION of the session in use must be the last operation (18.37.3);
* a CB_RECALL lost with its session is re-sent on the client's new session (2.10.6.2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from contrib.testserver import Cluster, ClusterConfig, FsSpec, InstanceConfig, open_cluster
from contrib.testserver.rawclient import Callback, RawClient
from contrib.testserver.server import EndpointConfig
from session.rpc import NULL_AUTH, RpcCall, accept_stat, encode_accepted_reply
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder, Encoder
from session.xdr.const import (
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    CREATE_SESSION4_FLAG_PERSIST,
    EXCHGID4_FLAG_CONFIRMED_R,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    NFS4_CALLBACK,
    NFS4_UINT64_MAX,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    OPEN4_SHARE_ACCESS_WRITE,
    nfs_ftype4,
    nfs_lock_type4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs, encode_fattr4

from .conftest import Connect
from .test_ts_state import export_a, new_lock, open_file

S = nfsstat4


def long_grace_config(grace: float = 30.0) -> ClusterConfig:
    """One instance A on 127.0.0.1 with a grace period long enough for a multi-step
    test (lease 10 s), file system a."""
    return ClusterConfig(
        [InstanceConfig("A", [EndpointConfig("127.0.0.1")], lease_time=10, grace_time=grace)],
        [FsSpec("a")],
        lease_time=10,
        grace_time=grace,
    )


@pytest.fixture
async def long_grace() -> AsyncIterator[Cluster]:
    async with open_cluster(long_grace_config()) as running:
        yield running


async def raw(cluster: Cluster, nursery: trio.Nursery, owner: bytes) -> RawClient:
    ep = cluster.instance("A").endpoints[0]
    return await RawClient.connect(ep.address, ep.port, nursery, owner=owner)


def channel(
    *, maxreq: int = 1 << 20, maxresp: int = 1 << 20, cached: int = 16384, slots: int = 8
) -> nfs4.channel_attrs4:
    return nfs4.channel_attrs4(0, maxreq, maxresp, cached, 32, slots, [])


async def create_session(
    c: RawClient, fore: nfs4.channel_attrs4, flags: int = CREATE_SESSION4_FLAG_CONN_BACK_CHAN
) -> nfs4.CREATE_SESSION4res:
    """CREATE_SESSION with chosen fore-channel attributes and csa_flags; on success the
    client uses the new session (fresh slots)."""
    args = nfs4.CREATE_SESSION4args(
        csa_clientid=c.clientid,
        csa_sequence=c.cs_sequence,
        csa_flags=flags,
        csa_fore_chan_attrs=fore,
        csa_back_chan_attrs=nfs4.channel_attrs4(0, 16384, 16384, 0, 4, 2, []),
        csa_cb_program=NFS4_CALLBACK,
        csa_sec_parms=[nfs4.callback_sec_parms4(cb_secflavor=0)],
    )
    res = await c.call([args])
    cs = res.resarray[0]
    assert isinstance(cs, nfs4.CREATE_SESSION4res)
    if cs.resok is not None:
        c.sessionid = cs.resok.csr_sessionid
        c.cs_sequence = (c.cs_sequence + 1) & 0xFFFFFFFF
        c.seqids = {}
    return cs


def mkdir(name: bytes) -> nfs4.CREATE4args:
    return nfs4.CREATE4args(nfs4.createtype4(nfs_ftype4.NF4DIR), name, encode_fattr4(NFSAttrs()))


def reclaim_open(c: RawClient, owner: bytes = b"owner") -> nfs4.OPEN4args:
    return c.open_args(
        None, OPEN4_SHARE_ACCESS_BOTH, owner=owner, claim=open_claim_type4.CLAIM_PREVIOUS
    )


def open_sid(res: nfs4.COMPOUND4res) -> nfs4.stateid4:
    opened = next(r for r in res.resarray if isinstance(r, nfs4.OPEN4res))
    assert opened.resok is not None
    return opened.resok.stateid


def lock_sid(res: nfs4.COMPOUND4res) -> nfs4.stateid4:
    locked = next(r for r in res.resarray if isinstance(r, nfs4.LOCK4res))
    assert locked.resok is not None
    return locked.resok.lock_stateid


# ------------------------------------------------------------------ 18.51.3: GRACE first
async def test_open_before_reclaim_complete_gets_grace(
    long_grace: Cluster, nursery: trio.Nursery
) -> None:
    """Section 18.51.3: a new client ID must send RECLAIM_COMPLETE before its first
    non-reclaim locking operation; before it, OPEN (creating or not) and LOCK get
    NFS4ERR_GRACE -- in the grace period after a reboot, and after that grace ended."""
    with trio.fail_after(20):
        holder = await raw(long_grace, nursery, b"strict-holder")
        await holder.establish()
        root = await export_a(holder)
        fh, _, _ = await open_file(holder, root, b"held", OPEN4_SHARE_ACCESS_BOTH)
        long_grace.reboot("A")

        # In the grace period: the reclaimer, before its RECLAIM_COMPLETE.
        holder = await raw(long_grace, nursery, b"strict-holder")
        await holder.establish(reclaim_complete=False)
        fresh = holder.open_args(b"new", OPEN4_SHARE_ACCESS_BOTH, create=True)
        assert (await holder.seq([nfs4.PUTFH4args(root), fresh])).status == S.NFS4ERR_GRACE
        reclaimed = await holder.ok([nfs4.PUTFH4args(fh), reclaim_open(holder)])
        sid = open_sid(reclaimed)
        # A non-reclaim LOCK through the reclaimed open: also before RECLAIM_COMPLETE.
        lock = new_lock(sid, b"locker", 0, 10)
        assert (await holder.seq([nfs4.PUTFH4args(fh), lock])).status == S.NFS4ERR_GRACE
        assert long_grace.events.find(kind="grace-before-reclaim-complete")
        await holder.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        # The only reclaimer is done: the grace period is over.
        assert not long_grace.instance("A").graces
        assert (await holder.seq([nfs4.PUTFH4args(fh), lock])).status == S.NFS4_OK

        # After the grace period: a new client ID that skipped RECLAIM_COMPLETE.
        late = await raw(long_grace, nursery, b"strict-late")
        await late.establish(reclaim_complete=False)
        again = late.open_args(b"late", OPEN4_SHARE_ACCESS_BOTH, create=True)
        assert (await late.seq([nfs4.PUTFH4args(root), again])).status == S.NFS4ERR_GRACE
        missing = await late.seq([nfs4.PUTFH4args(root), nfs4.LOOKUP4args(b"late")])
        assert missing.status == S.NFS4ERR_NOENT  # refused before creating anything
        await late.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        assert (await late.seq([nfs4.PUTFH4args(root), again])).status == S.NFS4_OK


# ------------------------------------------------------------------ 8.4.3: second reboot
async def test_second_reboot_keeps_every_reclaimer(
    long_grace: Cluster, nursery: trio.Nursery
) -> None:
    """Two clients hold opens; A reboots; one comes back, reclaims, but does not finish;
    A reboots again.  Both stay reclaimers of the new grace period: the first one's
    RECLAIM_COMPLETE does not end it (an ordinary OPEN still gets GRACE), the second can
    still reclaim, and only its RECLAIM_COMPLETE ends the grace period."""
    with trio.fail_after(25):
        files: dict[bytes, bytes] = {}
        for owner in (b"first", b"second"):
            c = await raw(long_grace, nursery, owner)
            await c.establish()
            root = await export_a(c)
            files[owner], _, _ = await open_file(c, root, owner, OPEN4_SHARE_ACCESS_BOTH)
        long_grace.reboot("A")

        first = await raw(long_grace, nursery, b"first")
        await first.establish(reclaim_complete=False)
        await first.ok([nfs4.PUTFH4args(files[b"first"]), reclaim_open(first)])
        long_grace.reboot("A")  # before anyone finished reclaiming
        assert long_grace.events.find(kind="reclaimers-kept")
        (grace,) = long_grace.instance("A").graces
        assert set(grace.reclaimers) == {b"first", b"second"}

        first = await raw(long_grace, nursery, b"first")
        await first.establish(reclaim_complete=False)
        await first.ok([nfs4.PUTFH4args(files[b"first"]), reclaim_open(first)])
        await first.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        other = await raw(long_grace, nursery, b"bystander")
        await other.establish()
        root = await export_a(other)
        ordinary = other.open_args(b"ordinary", OPEN4_SHARE_ACCESS_BOTH, create=True)
        assert (await other.seq([nfs4.PUTFH4args(root), ordinary])).status == S.NFS4ERR_GRACE

        second = await raw(long_grace, nursery, b"second")
        await second.establish(reclaim_complete=False)
        await second.ok([nfs4.PUTFH4args(files[b"second"]), reclaim_open(second)])
        await second.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        assert not long_grace.instance("A").graces
        assert (await other.seq([nfs4.PUTFH4args(root), ordinary])).status == S.NFS4_OK


# ------------------------------------------------------------------ 2.10.6.4: reply sizes
async def test_reply_too_big_to_cache(connect: Connect) -> None:
    """ca_maxresponsesize_cached 1024: a READ of 4 KiB with sa_cachethis gets
    NFS4ERR_REP_TOO_BIG_TO_CACHE on the READ, and that reply is the cached one (a retry
    gets the same bytes); without sa_cachethis the READ works.  An OPEN whose largest
    result might not fit is not executed."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"too-big-to-cache")
        await c.exchange_id()
        cs = await create_session(c, channel(cached=1024))
        assert cs.resok is not None
        assert cs.resok.csr_fore_chan_attrs.ca_maxresponsesize_cached == 1024
        await c.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        root = await export_a(c)
        fh, sid, _ = await open_file(c, root, b"big", OPEN4_SHARE_ACCESS_BOTH)
        await c.ok(
            [nfs4.PUTFH4args(fh), nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, b"x" * 4096)]
        )
        read: list[nfs4.ArgOp] = [nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 4096)]
        res, first = await c.seq_bytes(read, slot=1, cachethis=True)
        assert res.status == S.NFS4ERR_REP_TOO_BIG_TO_CACHE
        assert [type(r) for r in res.resarray][:2] == [nfs4.SEQUENCE4res, nfs4.PUTFH4res]
        assert len(res.resarray) == 3
        replay, again = await c.seq_bytes(read, slot=1, seqid=c.seqids[1], cachethis=True)
        assert again == first and replay.status == S.NFS4ERR_REP_TOO_BIG_TO_CACHE
        plain = await c.seq(read, slot=1)
        assert plain.status == S.NFS4_OK
        # OPEN's result can be ~2.6 KB (a delegation with an ACE, an owner): not run.
        opening = c.open_args(b"not-created", OPEN4_SHARE_ACCESS_BOTH, create=True)
        refused = await c.seq([nfs4.PUTFH4args(root), opening], cachethis=True)
        assert refused.status == S.NFS4ERR_REP_TOO_BIG_TO_CACHE
        missing = await c.seq([nfs4.PUTFH4args(root), nfs4.LOOKUP4args(b"not-created")])
        assert missing.status == S.NFS4ERR_NOENT


async def test_reply_too_big(connect: Connect) -> None:
    """ca_maxresponsesize 2048: a READDIR whose entries would make a larger reply gets
    NFS4ERR_REP_TOO_BIG (its maxcount does not override the channel); a READ is cut
    short to fit instead (READ may return fewer bytes)."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"too-big")
        await c.exchange_id()
        cs = await create_session(c, channel(maxresp=2048, cached=2048))
        assert cs.resok is not None and cs.resok.csr_fore_chan_attrs.ca_maxresponsesize == 2048
        await c.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        root = await export_a(c)
        res = await c.ok([nfs4.PUTFH4args(root), mkdir(b"many"), nfs4.GETFH4args()])
        getfh = res.resarray[-1]
        assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
        many = getfh.resok.object
        for i in range(40):
            await c.ok([nfs4.PUTFH4args(many), mkdir(b"entry-with-a-long-name-%02d" % i)])
        listing = nfs4.READDIR4args(0, bytes(8), 4096, 65536, [0, 0])
        big = await c.seq([nfs4.PUTFH4args(many), listing])
        assert big.status == S.NFS4ERR_REP_TOO_BIG
        assert len(big.resarray) == 3


async def test_channel_too_small(connect: Connect) -> None:
    """Section 18.36.3: channel sizes no reply could fit get NFS4ERR_TOOSMALL at
    CREATE_SESSION; ca_maxresponsesize_cached 0 is granted, and then a SEQUENCE asking
    for caching gets NFS4ERR_REP_TOO_BIG_TO_CACHE on SEQUENCE itself, leaving the slot
    as it was (the same sequence id then works without sa_cachethis)."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"too-small")
        await c.exchange_id()
        assert (await create_session(c, channel(maxresp=100))).status == S.NFS4ERR_TOOSMALL
        assert (await create_session(c, channel(maxreq=100))).status == S.NFS4ERR_TOOSMALL
        cs = await create_session(c, channel(cached=0))
        assert cs.resok is not None
        assert cs.resok.csr_fore_chan_attrs.ca_maxresponsesize_cached == 0
        cached = await c.seq([nfs4.PUTROOTFH4args()], cachethis=True)
        assert cached.status == S.NFS4ERR_REP_TOO_BIG_TO_CACHE
        (seq,) = cached.resarray
        assert isinstance(seq, nfs4.SEQUENCE4res) and seq.resok is None
        assert (await c.seq([nfs4.PUTROOTFH4args()], seqid=1)).status == S.NFS4_OK


async def test_request_too_big(connect: Connect) -> None:
    """ca_maxrequestsize counts the RPC header too: a WRITE that fits the COMPOUND
    arguments alone (4080 bytes) but not the whole call gets NFS4ERR_REQ_TOO_BIG on SEQUENCE."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"req-too-big")
        await c.exchange_id()
        await create_session(c, channel(maxreq=4096))
        await c.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        root = await export_a(c)
        fh, sid, _ = await open_file(c, root, b"w", OPEN4_SHARE_ACCESS_BOTH)
        write = nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, b"y" * 3960)
        res = await c.seq([nfs4.PUTFH4args(fh), write])
        assert res.status == S.NFS4ERR_REQ_TOO_BIG
        small = nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, b"y" * 3000)
        assert (await c.seq([nfs4.PUTFH4args(fh), small])).status == S.NFS4_OK


# ------------------------------------------------------------------ 18.35.4 case 3
async def test_exchange_id_principal_change_cases(cluster: Cluster, connect: Connect) -> None:
    """Case 3: another principal for a confirmed client owner.  While the client ID has
    an unexpired lease with state: NFS4ERR_CLID_INUSE, nothing changes.  Once it holds no
    valid state (here: its lease expired and its open was revoked), the old client ID,
    its sessions and its state are deleted and the newcomer gets a new unconfirmed
    client ID.  A confirmed client ID with no state at all is taken over the same way.
    An unconfirmed record of another principal is simply replaced (case 4)."""
    with trio.fail_after(10):
        owner = b"principal-change"
        mine = await connect("A", owner=owner, verifier=b"verifier")
        await mine.establish()
        root = await export_a(mine)
        await open_file(mine, root, b"p3", OPEN4_SHARE_ACCESS_BOTH)
        other = await connect("A", owner=owner, verifier=b"verifier", uid=4242)
        assert (await other.exchange_id()).status == S.NFS4ERR_CLID_INUSE
        assert (await mine.seq([])).status == S.NFS4_OK

        cluster.expire("A", mine.clientid)  # the lease expired: the open is revoked
        taken = await other.exchange_id()
        assert taken.status == S.NFS4_OK and taken.resok is not None
        assert taken.resok.eir_clientid != mine.clientid
        assert not taken.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
        assert (await mine.seq([])).status == S.NFS4ERR_BADSESSION
        stale = await mine.call([mine.create_session_args()])
        assert stale.status == S.NFS4ERR_STALE_CLIENTID
        assert cluster.events.find(kind="client-destroyed")
        await other.create_session()
        await other.ok([nfs4.RECLAIM_COMPLETE4args(False)])

        # A confirmed client ID without state: taken over at once.
        idle = await connect("A", owner=b"idle-owner")
        await idle.establish()
        newcomer = await connect("A", owner=b"idle-owner", uid=7)
        res = await newcomer.exchange_id()
        assert res.status == S.NFS4_OK and res.resok is not None
        assert res.resok.eir_clientid != idle.clientid
        assert (await idle.seq([])).status == S.NFS4ERR_BADSESSION

        # Unconfirmed, another principal: case 4, replaced.
        first = await connect("A", owner=b"unconfirmed-owner")
        await first.exchange_id()
        second = await connect("A", owner=b"unconfirmed-owner", uid=9)
        replaced = await second.exchange_id()
        assert replaced.status == S.NFS4_OK and replaced.resok is not None
        assert replaced.resok.eir_clientid != first.clientid
        gone = await first.call([first.create_session_args()])
        assert gone.status == S.NFS4ERR_STALE_CLIENTID


# ------------------------------------------------------------------ undefined flags
async def test_undefined_flag_bits_are_invalid(connect: Connect) -> None:
    """EXCHANGE_ID: eia_flags bits RFC 8881 does not define, or CONFIRMED_R (reply only),
    get NFS4ERR_INVAL (section 18.35.3).  CREATE_SESSION: csa_flags outside PERSIST,
    CONN_BACK_CHAN and CONN_RDMA get NFS4ERR_INVAL and confirm nothing; PERSIST is not
    granted by this server (csr_flags lacks it)."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"flags")
        for bits in (0x8, 0x200, 0x00100000, EXCHGID4_FLAG_CONFIRMED_R):
            res = await c.exchange_id(flags=EXCHGID4_FLAG_SUPP_MOVED_REFER | bits)
            assert res.status == S.NFS4ERR_INVAL, hex(bits)
        assert (await c.exchange_id()).status == S.NFS4_OK
        bad = await create_session(c, channel(), flags=CREATE_SESSION4_FLAG_CONN_BACK_CHAN | 0x8)
        assert bad.status == S.NFS4ERR_INVAL
        again = await c.exchange_id()
        assert again.resok is not None and not again.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
        flags = CREATE_SESSION4_FLAG_CONN_BACK_CHAN | CREATE_SESSION4_FLAG_PERSIST
        good = await create_session(c, channel(), flags=flags)
        assert good.resok is not None
        assert good.resok.csr_flags == CREATE_SESSION4_FLAG_CONN_BACK_CHAN


# ------------------------------------------------------------------ 18.38.3
async def test_free_stateid_with_locks_held(client: RawClient) -> None:
    """FREE_STATEID of a lock stateid holding a range, whether named by value or as the
    current stateid right after LOCK, of an open stateid, and of a delegation stateid:
    NFS4ERR_LOCKS_HELD, the stateid stays valid.  After LOCKU it is freed, and any later
    use is NFS4ERR_BAD_STATEID."""
    with trio.fail_after(10):
        root = await export_a(client)
        fh, sid, _ = await open_file(client, root, b"free-me", OPEN4_SHARE_ACCESS_BOTH)
        locked = await client.ok([nfs4.PUTFH4args(fh), new_lock(sid, b"lo", 0, 100)])
        lsid = lock_sid(locked)
        assert (await client.seq([nfs4.FREE_STATEID4args(lsid)])).status == S.NFS4ERR_LOCKS_HELD
        current = await client.seq(
            [
                nfs4.PUTFH4args(fh),
                nfs4.LOCK4args(
                    nfs_lock_type4.WRITE_LT,
                    False,
                    200,
                    10,
                    nfs4.locker4(False, lock_owner=nfs4.exist_lock_owner4(lsid, 0)),
                ),
                nfs4.FREE_STATEID4args(nfs4.CURRENT_STATEID),
            ]
        )
        assert current.status == S.NFS4ERR_LOCKS_HELD and len(current.resarray) == 4
        lsid = lock_sid(current)
        assert (await client.seq([nfs4.FREE_STATEID4args(sid)])).status == S.NFS4ERR_LOCKS_HELD
        tested = await client.ok([nfs4.TEST_STATEID4args([lsid, sid])])
        ts = tested.resarray[1]
        assert isinstance(ts, nfs4.TEST_STATEID4res) and ts.resok is not None
        assert ts.resok.tsr_status_codes == [S.NFS4_OK, S.NFS4_OK]

        unlock = nfs4.LOCKU4args(nfs_lock_type4.WRITE_LT, 0, lsid, 0, NFS4_UINT64_MAX)
        unlocked = await client.ok([nfs4.PUTFH4args(fh), unlock])
        locku = unlocked.resarray[-1]
        assert isinstance(locku, nfs4.LOCKU4res) and locku.lock_stateid is not None
        await client.ok([nfs4.FREE_STATEID4args(locku.lock_stateid)])
        tested = await client.ok([nfs4.TEST_STATEID4args([locku.lock_stateid])])
        ts = tested.resarray[1]
        assert isinstance(ts, nfs4.TEST_STATEID4res) and ts.resok is not None
        assert ts.resok.tsr_status_codes == [S.NFS4ERR_BAD_STATEID]

        # A delegation is a lock too.
        _, _, granted = await open_file(
            client,
            root,
            b"free-me",
            OPEN4_SHARE_ACCESS_READ,
            create=False,
            owner=b"reader",
            want=OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
        )
        if granted.delegation.delegation_type == open_delegation_type4.OPEN_DELEGATE_READ:
            assert granted.delegation.read is not None
            dsid = granted.delegation.read.stateid
            held = await client.seq([nfs4.FREE_STATEID4args(dsid)])
            assert held.status == S.NFS4ERR_LOCKS_HELD


# ------------------------------------------------------------------ 18.37.3
async def test_destroy_session_in_use_must_be_last(client: RawClient, connect: Connect) -> None:
    """DESTROY_SESSION of the session SEQUENCE named, followed by another operation:
    NFS4ERR_NOT_ONLY_OP on DESTROY_SESSION, nothing after it runs, the session lives on.
    As the last operation it destroys the session.  Another session of the client may be
    destroyed anywhere after SEQUENCE."""
    with trio.fail_after(10):
        sessionid = client.sessionid
        res = await client.seq(
            [nfs4.DESTROY_SESSION4args(sessionid), nfs4.PUTROOTFH4args(), nfs4.GETFH4args()]
        )
        assert res.status == S.NFS4ERR_NOT_ONLY_OP
        assert [type(r) for r in res.resarray] == [nfs4.SEQUENCE4res, nfs4.DESTROY_SESSION4res]
        assert (await client.seq([nfs4.PUTROOTFH4args()])).status == S.NFS4_OK

        # A second session of the same client ID, destroyed from the first mid-COMPOUND.
        slots = dict(client.seqids)
        spare = await client.create_session()
        assert spare.resok is not None
        second = spare.resok.csr_sessionid
        client.sessionid, client.seqids = sessionid, slots
        res = await client.seq(
            [nfs4.DESTROY_SESSION4args(second), nfs4.PUTROOTFH4args(), nfs4.GETFH4args()]
        )
        assert res.status == S.NFS4_OK
        assert (await client.seq([], sessionid=second, seqid=1)).status == S.NFS4ERR_BADSESSION

        last = await client.seq([nfs4.PUTROOTFH4args(), nfs4.DESTROY_SESSION4args(sessionid)])
        assert last.status == S.NFS4_OK
        assert (await client.seq([])).status == S.NFS4ERR_BADSESSION


# ------------------------------------------------------------------ 2.10.6.2: callbacks
class ForgetfulClient(RawClient):
    """A raw client that answers its first CB_COMPOUND as a client that has lost the
    session it names would: CB_SEQUENCE NFS4ERR_BADSESSION."""

    forgot = 0

    def _answer_callback(self, call: RpcCall) -> bytes | None:
        if call.proc != 1 or self.forgot:
            return super()._answer_callback(call)
        self.forgot += 1
        args = cb.CB_COMPOUND4args.unpack(Decoder(call.args))
        self.callbacks.append(Callback(args))
        enc = Encoder()
        st = S.NFS4ERR_BADSESSION
        cb.CB_COMPOUND4res(st, args.tag, [cb.CB_SEQUENCE4res(st)]).pack(enc)
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, enc.getvalue())


async def delegated(holder: RawClient, root: bytes, name: bytes) -> tuple[bytes, nfs4.stateid4]:
    """Create ``name`` and get a read delegation on it (a second open-owner's READ open)."""
    fh, _, _ = await open_file(holder, root, name, OPEN4_SHARE_ACCESS_BOTH)
    _, _, granted = await open_file(
        holder,
        root,
        name,
        OPEN4_SHARE_ACCESS_READ,
        create=False,
        owner=b"deleg-owner",
        want=OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    )
    assert granted.delegation.delegation_type == open_delegation_type4.OPEN_DELEGATE_READ
    assert granted.delegation.read is not None
    return fh, granted.delegation.read.stateid


@pytest.mark.parametrize("how", ["destroyed-before", "badsession-reply"])
async def test_callback_lost_with_session_is_resent(
    cluster: Cluster, nursery: trio.Nursery, connect: Connect, how: str
) -> None:
    """The holder of a read delegation loses its session -- it destroyed it before the
    recall, or answers the recall's CB_SEQUENCE with NFS4ERR_BADSESSION as a client that
    lost it would -- then creates a new session with a back channel: the CB_RECALL comes
    again on the new session (its CB_SEQUENCE names it, sequence id 1), and after
    DELEGRETURN the conflicting open succeeds."""
    with trio.fail_after(15):
        ep = cluster.instance("A").endpoints[0]
        holder: ForgetfulClient = await ForgetfulClient.connect(
            ep.address, ep.port, nursery, owner=b"cb-holder"
        )
        if how == "destroyed-before":
            holder.forgot = 1  # answers normally: the loss is the destroyed session
        await holder.establish()
        root = await export_a(holder)
        fh, deleg = await delegated(holder, root, b"recalled")
        old_session = holder.sessionid
        if how == "destroyed-before":
            gone = await holder.call([nfs4.DESTROY_SESSION4args(old_session)])
            assert gone.status == S.NFS4_OK

        writer = await connect("A", owner=b"cb-writer")
        await writer.establish()
        wopen: list[nfs4.ArgOp] = [
            nfs4.PUTFH4args(fh),
            writer.open_args(None, OPEN4_SHARE_ACCESS_WRITE),
        ]
        assert (await writer.seq(wopen)).status == S.NFS4ERR_DELAY
        if how == "badsession-reply":
            await cluster.events.wait_for(
                lambda e: e.kind == "cb-recall-reply" and "lost" in e.message
            )
            seq = holder.callbacks[0].args.argarray[0]
            assert isinstance(seq, cb.CB_SEQUENCE4args) and seq.csa_sessionid == old_session
            gone = await holder.call([nfs4.DESTROY_SESSION4args(old_session)])
            assert gone.status == S.NFS4_OK
        else:
            await cluster.events.wait_for(
                lambda e: e.kind == "cb-recall" and "no back channel" in e.message
            )
        await holder.create_session()
        assert holder.sessionid != old_session
        count = 2 if how == "badsession-reply" else 1
        recall = await holder.wait_callback(count)
        seq = recall.args.argarray[0]
        assert isinstance(seq, cb.CB_SEQUENCE4args)
        assert seq.csa_sessionid == holder.sessionid and seq.csa_sequenceid == 1
        assert [r.stateid for r in recall.recalls()] == [deleg]
        sends = cluster.events.find(kind="cb-recall")
        key = "resent" if how == "badsession-reply" else "waited"
        assert any(e.details.get(key) for e in sends)
        await holder.ok([nfs4.PUTFH4args(fh), nfs4.DELEGRETURN4args(deleg)])
        assert (await writer.seq(wopen)).status == S.NFS4_OK


# ------------------------------------------------------------------ 2.10.6.1.3.1
async def test_retry_from_another_user_is_a_false_retry(
    client: RawClient, connect: Connect
) -> None:
    """The same slot, sequence id and arguments from another user (AUTH_SYS uid 4242) is
    not a retry: NFS4ERR_SEQ_FALSE_RETRY (a MUST once the server sees the users differ);
    the same user's retry gets the cached reply."""
    with trio.fail_after(10):
        ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args(), nfs4.GETFH4args()]
        first, raw_first = await client.seq_bytes(ops, slot=2, cachethis=True)
        assert first.status == S.NFS4_OK
        stranger = await connect("A", owner=b"stranger", uid=4242)
        stranger.sessionid = client.sessionid
        res = await stranger.seq(ops, slot=2, seqid=client.seqids[2], cachethis=True)
        assert res.status == S.NFS4ERR_SEQ_FALSE_RETRY
        _, raw_again = await client.seq_bytes(ops, slot=2, seqid=client.seqids[2], cachethis=True)
        assert raw_again == raw_first

"""Client IDs, sessions and COMPOUND rules of the test server, checked against RFC 8881.

EXCHANGE_ID cases (section 18.35.4), CREATE_SESSION sequencing (18.36.4), SEQUENCE and
the reply cache (2.10.6), COMPOUND processing (16.2.3), DESTROY_*, BIND_CONN_TO_SESSION.
"""

from __future__ import annotations

import trio

from contrib.testserver import Cluster
from contrib.testserver.rawclient import RawClient, decode_compound, encode_compound
from session.xdr import nfs4
from session.xdr.const import (
    EXCHGID4_FLAG_CONFIRMED_R,
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    EXCHGID4_FLAG_UPD_CONFIRMED_REC_A,
    EXCHGID4_FLAG_USE_NON_PNFS,
    NFS4_PROGRAM,
    NFS_V4,
    NFSPROC4_COMPOUND,
    OPEN4_SHARE_ACCESS_BOTH,
    channel_dir_from_client4,
    channel_dir_from_server4,
    nfs_ftype4,
    nfs_opnum4,
    nfsstat4,
    state_protect_how4,
)
from session.xdr.fattr import NFSAttrs, encode_fattr4

from .conftest import Connect

S = nfsstat4


def mkdir(name: bytes) -> nfs4.CREATE4args:
    return nfs4.CREATE4args(nfs4.createtype4(nfs_ftype4.NF4DIR), name, encode_fattr4(NFSAttrs()))


async def test_exchange_id_new_owner_is_unconfirmed(connect: Connect, cluster: Cluster) -> None:
    """Case 1 (18.35.4): a new owner gets a new unconfirmed client ID; the reply names the
    server (server_owner, scope) and the migration/referral support flags."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"case-1")
        res = await c.exchange_id()
        assert res.status == S.NFS4_OK and res.resok is not None
        ok = res.resok
        assert not ok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
        assert ok.eir_flags & EXCHGID4_FLAG_SUPP_MOVED_MIGR
        assert ok.eir_flags & EXCHGID4_FLAG_SUPP_MOVED_REFER
        assert ok.eir_flags & EXCHGID4_FLAG_USE_NON_PNFS
        assert ok.eir_server_owner.so_major_id == cluster.instance("A").so_major_id
        assert ok.eir_server_scope == cluster.server_scope
        assert ok.eir_server_impl_id and ok.eir_server_impl_id[0].nii_name


async def test_exchange_id_confirmed_returns_same_client(connect: Connect) -> None:
    """Case 2: after CREATE_SESSION confirmed it, the same owner and verifier get the same
    client ID with EXCHGID4_FLAG_CONFIRMED_R."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"case-2")
        await c.establish()
        first = c.clientid
        again = await c.exchange_id()
        assert again.resok is not None
        assert again.resok.eir_clientid == first
        assert again.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R


async def test_exchange_id_client_restart_replaces_record(connect: Connect) -> None:
    """Case 4: a new verifier (client reboot) gets a new unconfirmed client ID; its
    CREATE_SESSION removes the old client ID and its sessions."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"case-4")
        await c.establish()
        old_clientid, old_session = c.clientid, c.sessionid
        res = await c.exchange_id(verifier=b"rebooted")
        assert res.resok is not None
        assert res.resok.eir_clientid != old_clientid
        assert not res.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R
        # The old session still works until the new client ID is confirmed.
        assert (await c.seq([], sessionid=old_session)).status == S.NFS4_OK
        assert (await c.create_session()).status == S.NFS4_OK
        gone = await c.seq([], sessionid=old_session, seqid=1)
        assert gone.status == S.NFS4ERR_BADSESSION
        stale = await c.call([c.create_session_args(clientid=old_clientid, sequence=1)])
        assert stale.status == S.NFS4ERR_STALE_CLIENTID


async def test_exchange_id_collision_and_updates(connect: Connect) -> None:
    """Case 3: another principal for a confirmed owner in use (an unexpired lease with
    state: an open) -> NFS4ERR_CLID_INUSE; UPD_CONFIRMED_REC_A: no confirmed record ->
    NOENT, wrong verifier -> NOT_SAME, wrong principal -> PERM, else the confirmed record."""
    with trio.fail_after(10):
        owner = b"case-3"
        c = await connect("A", owner=owner, verifier=b"verifier")
        update = EXCHGID4_FLAG_UPD_CONFIRMED_REC_A | EXCHGID4_FLAG_SUPP_MOVED_MIGR
        assert (await c.exchange_id(flags=update)).status == S.NFS4ERR_NOENT
        await c.establish()
        root = await c.lookup_path("/export/a")
        held = c.open_args(b"case-3-held", OPEN4_SHARE_ACCESS_BOTH, create=True)
        await c.ok([nfs4.PUTFH4args(root), held])
        intruder = await connect("A", owner=owner, verifier=b"verifier", uid=1000)
        assert (await intruder.exchange_id()).status == S.NFS4ERR_CLID_INUSE
        assert (await intruder.exchange_id(flags=update)).status == S.NFS4ERR_PERM
        assert (
            await c.exchange_id(flags=update, verifier=b"other!!!")
        ).status == S.NFS4ERR_NOT_SAME
        res = await c.exchange_id(flags=update)
        assert res.resok is not None and res.resok.eir_clientid == c.clientid
        assert res.resok.eir_flags & EXCHGID4_FLAG_CONFIRMED_R


async def test_exchange_id_rejects_bad_flags(connect: Connect) -> None:
    with trio.fail_after(10):
        c = await connect("A")
        assert (await c.exchange_id(flags=EXCHGID4_FLAG_CONFIRMED_R)).status == S.NFS4ERR_INVAL


async def test_create_session_sequence(connect: Connect) -> None:
    """18.36.4: unknown client ID -> STALE_CLIENTID; a csa_sequence other than
    eir_sequenceid -> SEQ_MISORDERED; a retry of the last CREATE_SESSION gets its reply;
    channel attributes are negotiated down to the server's limits."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"cs-seq")
        res = await c.call([c.create_session_args(clientid=0xDEAD, sequence=1)])
        assert res.status == S.NFS4ERR_STALE_CLIENTID
        await c.exchange_id()
        wrong = await c.call([c.create_session_args(sequence=c.cs_sequence + 5)])
        assert wrong.status == S.NFS4ERR_SEQ_MISORDERED
        args = c.create_session_args(slots=1000)
        first = await c.call([args])
        again = await c.call([args])
        assert first.status == S.NFS4_OK and again.status == S.NFS4_OK
        a, b = first.resarray[0], again.resarray[0]
        assert isinstance(a, nfs4.CREATE_SESSION4res) and a.resok is not None
        assert isinstance(b, nfs4.CREATE_SESSION4res) and b.resok is not None
        assert a.resok.csr_sessionid == b.resok.csr_sessionid
        assert a.resok.csr_fore_chan_attrs.ca_maxrequests == 64
        assert a.resok.csr_fore_chan_attrs.ca_rdma_ird == []


async def test_compound_position_rules(connect: Connect, client: RawClient) -> None:
    """16.2.3 / 18.46.3: no SEQUENCE -> OP_NOT_IN_SESSION; a sessionless op with others
    -> NOT_ONLY_OP; SEQUENCE not first -> SEQUENCE_POS; minor version 0 ->
    MINOR_VERS_MISMATCH with no results; unknown op -> OP_ILLEGAL; OPENATTR -> NOTSUPP."""
    with trio.fail_after(10):
        c = await connect("A")
        res = await c.call([nfs4.PUTROOTFH4args()])
        assert res.status == S.NFS4ERR_OP_NOT_IN_SESSION
        res = await c.call([c.exchange_id_args(), nfs4.PUTROOTFH4args()])
        assert res.status == S.NFS4ERR_NOT_ONLY_OP
        res = await client.seq([nfs4.PUTROOTFH4args(), client.sequence_args(slot=1)])
        assert res.status == S.NFS4ERR_SEQUENCE_POS and len(res.resarray) == 3
        res = await c.call([nfs4.PUTROOTFH4args()], minorversion=0)
        assert res.status == S.NFS4ERR_MINOR_VERS_MISMATCH and res.resarray == []
        res = await client.seq([nfs4.PUTROOTFH4args(), nfs4.OPENATTR4args(False)])
        assert res.status == S.NFS4ERR_NOTSUPP
        # An operation number outside NFSv4.1 (99), appended to an encoded COMPOUND:
        # tag (empty, 4 bytes) and minorversion (4) precede the operation count.
        body = bytearray(encode_compound([client.sequence_args()]))
        body[8:12] = (2).to_bytes(4, "big")
        body += (99).to_bytes(4, "big")
        raw = await client.transport.call(
            NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, bytes(body), client.cred
        )
        client.seqids[0] += 1
        illegal = decode_compound(raw)
        assert illegal.status == S.NFS4ERR_OP_ILLEGAL
        assert isinstance(illegal.resarray[-1], nfs4.ILLEGAL4res)


async def test_sequence_errors(client: RawClient) -> None:
    """2.10.6.1: BADSESSION, BADSLOT, SEQ_MISORDERED; a slot's first request uses 1."""
    with trio.fail_after(10):
        assert (await client.seq([], sessionid=b"\0" * 16)).status == S.NFS4ERR_BADSESSION
        assert (await client.seq([], slot=500)).status == S.NFS4ERR_BADSLOT
        assert (await client.seq([], slot=2, seqid=5)).status == S.NFS4ERR_SEQ_MISORDERED
        ok = await client.seq([], slot=2)
        assert ok.status == S.NFS4_OK
        seq = ok.resarray[0]
        assert isinstance(seq, nfs4.SEQUENCE4res) and seq.resok is not None
        assert seq.resok.sr_highest_slotid == 7  # the fixture asked for 8 slots
        assert seq.resok.sr_status_flags == 0


async def test_reply_cache_replays_identical_bytes(client: RawClient) -> None:
    """2.10.6.2: a retry (same slot and seqid) of a request sent with sa_cachethis gets
    exactly the cached reply, and the non-idempotent CREATE is not done twice."""
    with trio.fail_after(10):
        root = await client.lookup_path("/export/a")
        ops: list[nfs4.ArgOp] = [nfs4.PUTFH4args(root), mkdir(b"once"), nfs4.GETFH4args()]
        res1, raw1 = await client.seq_bytes(ops, slot=1, cachethis=True)
        assert res1.status == S.NFS4_OK
        _, raw2 = await client.seq_bytes(ops, slot=1, seqid=client.seqids[1], cachethis=True)
        assert raw2 == raw1
        # A new request with the same CREATE now fails: it was executed exactly once.
        res3 = await client.seq(ops, slot=1)
        assert res3.status == S.NFS4ERR_EXIST
        # A retry carrying different arguments is a false retry.
        other: list[nfs4.ArgOp] = [nfs4.PUTFH4args(root), mkdir(b"other")]
        false = await client.seq(other, slot=1, seqid=client.seqids[1])
        assert false.status == S.NFS4ERR_SEQ_FALSE_RETRY


async def test_retry_of_uncached_reply(client: RawClient) -> None:
    """2.10.6.1.3: a retry of a request sent without sa_cachethis gets SEQUENCE OK and
    NFS4ERR_RETRY_UNCACHED_REP on the next operation."""
    with trio.fail_after(10):
        ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args(), nfs4.GETFH4args()]
        assert (await client.seq(ops, slot=3)).status == S.NFS4_OK
        res = await client.seq(ops, slot=3, seqid=client.seqids[3])
        assert res.status == S.NFS4ERR_RETRY_UNCACHED_REP
        assert isinstance(res.resarray[0], nfs4.SEQUENCE4res)
        assert res.resarray[0].status == S.NFS4_OK
        assert len(res.resarray) == 2


async def test_destroy_session_and_clientid(connect: Connect) -> None:
    """18.37 / 18.50: DESTROY_CLIENTID with a session -> CLIENTID_BUSY; after
    DESTROY_SESSION it succeeds and the client ID is stale."""
    with trio.fail_after(10):
        c = await connect("A", owner=b"destroy")
        await c.establish()
        busy = await c.call([nfs4.DESTROY_CLIENTID4args(c.clientid)])
        assert busy.status == S.NFS4ERR_CLIENTID_BUSY
        assert (await c.call([nfs4.DESTROY_SESSION4args(c.sessionid)])).status == S.NFS4_OK
        assert (await c.seq([])).status == S.NFS4ERR_BADSESSION
        assert (await c.call([nfs4.DESTROY_CLIENTID4args(c.clientid)])).status == S.NFS4_OK
        stale = await c.call([nfs4.DESTROY_CLIENTID4args(c.clientid)])
        assert stale.status == S.NFS4ERR_STALE_CLIENTID


async def test_bind_conn_to_session_and_trunking(connect: Connect, client: RawClient) -> None:
    """18.34: a second connection binds to the session (both channels); an unknown
    session -> BADSESSION; the bound connection can then sequence on the session."""
    with trio.fail_after(10):
        second = await connect("A")
        bad = await second.call(
            [nfs4.BIND_CONN_TO_SESSION4args(b"\1" * 16, channel_dir_from_client4.CDFC4_FORE, False)]
        )
        assert bad.status == S.NFS4ERR_BADSESSION
        res = await second.call(
            [
                nfs4.BIND_CONN_TO_SESSION4args(
                    client.sessionid, channel_dir_from_client4.CDFC4_BACK_OR_BOTH, False
                )
            ]
        )
        bound = res.resarray[0]
        assert isinstance(bound, nfs4.BIND_CONN_TO_SESSION4res) and bound.resok is not None
        assert bound.resok.bctsr_dir == channel_dir_from_server4.CDFS4_BOTH
        second.sessionid = client.sessionid
        assert (await second.seq([], slot=4)).status == S.NFS4_OK


async def test_unsupported_state_protection(connect: Connect) -> None:
    """18.35.3: SP4_MACH_CRED must come with RPCSEC_GSS integrity or privacy (over
    AUTH_SYS: NFS4ERR_INVAL; the Kerberos cases are in test_ts_gss.py); SP4_SSV is not
    offered (NFS4ERR_NOTSUPP)."""
    with trio.fail_after(10):
        c = await connect("A")
        args = c.exchange_id_args()
        args.eia_state_protect = nfs4.state_protect4_a(
            state_protect_how4.SP4_MACH_CRED, spa_mach_ops=nfs4.state_protect_ops4([], [])
        )
        res = await c.call([args])
        assert res.status == S.NFS4ERR_INVAL
        assert res.resarray[0].OPNUM == nfs_opnum4.OP_EXCHANGE_ID
        args.eia_state_protect = nfs4.state_protect4_a(
            state_protect_how4.SP4_SSV,
            spa_ssv_parms=nfs4.ssv_sp_parms4(nfs4.state_protect_ops4([], []), [], [], 0, 0),
        )
        res = await c.call([args])
        assert res.status == S.NFS4ERR_NOTSUPP

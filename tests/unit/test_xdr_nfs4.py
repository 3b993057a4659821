"""Codec tests for session.xdr.nfs4: round trips of every operation's args and results,
fixed byte vectors (hex written by hand from RFC 5662 and RFC 4506), and hostile input.
"""

from __future__ import annotations

from typing import Any

import pytest

from session.errors import XdrError
from session.xdr.codec import BULK_MIN, Decoder, Encoder, Gathered, Packable, decode, encode
from session.xdr.const import (
    AUTH_NONE,
    AUTH_SYS,
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    NFS4_UINT64_MAX,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_DENY_NONE,
    RPCSEC_GSS,
    SEQ4_STATUS_LEASE_MOVED,
    channel_dir_from_client4,
    channel_dir_from_server4,
    createmode4,
    fs4_status_type,
    limit_by4,
    nfs_ftype4,
    nfs_lock_type4,
    nfs_opnum4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
    opentype4,
    rpc_gss_svc_t,
    secinfo_style4,
    stable_how4,
    state_protect_how4,
    time_how4,
    why_no_delegation4,
)
from session.xdr.nfs4 import (
    ANONYMOUS_STATEID,
    ARGS_BY_OPNUM,
    CURRENT_STATEID,
    INVALID_STATEID,
    READ_BYPASS_STATEID,
    RES_BY_OPNUM,
    ACCESS4args,
    ACCESS4res,
    ACCESS4resok,
    ArgOp,
    BACKCHANNEL_CTL4args,
    BACKCHANNEL_CTL4res,
    BIND_CONN_TO_SESSION4args,
    BIND_CONN_TO_SESSION4res,
    BIND_CONN_TO_SESSION4resok,
    CLOSE4args,
    CLOSE4res,
    COMMIT4args,
    COMMIT4res,
    COMMIT4resok,
    COMPOUND4args,
    COMPOUND4res,
    CREATE4args,
    CREATE4res,
    CREATE4resok,
    CREATE_SESSION4args,
    CREATE_SESSION4res,
    CREATE_SESSION4resok,
    DELEGPURGE4args,
    DELEGPURGE4res,
    DELEGRETURN4args,
    DELEGRETURN4res,
    DESTROY_CLIENTID4args,
    DESTROY_CLIENTID4res,
    DESTROY_SESSION4args,
    DESTROY_SESSION4res,
    EXCHANGE_ID4args,
    EXCHANGE_ID4res,
    EXCHANGE_ID4resok,
    FREE_STATEID4args,
    FREE_STATEID4res,
    GETATTR4args,
    GETATTR4res,
    GETATTR4resok,
    GETFH4args,
    GETFH4res,
    GETFH4resok,
    ILLEGAL4res,
    LINK4args,
    LINK4res,
    LINK4resok,
    LOCK4args,
    LOCK4denied,
    LOCK4res,
    LOCK4resok,
    LOCKT4args,
    LOCKT4res,
    LOCKU4args,
    LOCKU4res,
    LOOKUP4args,
    LOOKUP4res,
    LOOKUPP4args,
    LOOKUPP4res,
    NVERIFY4args,
    NVERIFY4res,
    OPEN4args,
    OPEN4res,
    OPEN4resok,
    OPEN_DOWNGRADE4args,
    OPEN_DOWNGRADE4res,
    OPEN_DOWNGRADE4resok,
    OPENATTR4args,
    OPENATTR4res,
    PUTFH4args,
    PUTFH4res,
    PUTPUBFH4args,
    PUTPUBFH4res,
    PUTROOTFH4args,
    PUTROOTFH4res,
    READ4args,
    READ4res,
    READ4resok,
    READDIR4args,
    READDIR4res,
    READDIR4resok,
    READLINK4args,
    READLINK4res,
    READLINK4resok,
    RECLAIM_COMPLETE4args,
    RECLAIM_COMPLETE4res,
    RELEASE_LOCKOWNER4args,
    RELEASE_LOCKOWNER4res,
    REMOVE4args,
    REMOVE4res,
    REMOVE4resok,
    RENAME4args,
    RENAME4res,
    RENAME4resok,
    ResOp,
    RESTOREFH4args,
    RESTOREFH4res,
    SAVEFH4args,
    SAVEFH4res,
    SECINFO4args,
    SECINFO4res,
    SECINFO_NO_NAME4args,
    SECINFO_NO_NAME4res,
    SEQUENCE4args,
    SEQUENCE4res,
    SEQUENCE4resok,
    SETATTR4args,
    SETATTR4res,
    TEST_STATEID4args,
    TEST_STATEID4res,
    TEST_STATEID4resok,
    VERIFY4args,
    VERIFY4res,
    WRITE4args,
    WRITE4res,
    WRITE4resok,
    authsys_parms,
    callback_sec_parms4,
    change_info4,
    channel_attrs4,
    client_owner4,
    createhow4,
    createtype4,
    creatverfattr,
    dirlist4,
    entry4,
    exist_lock_owner4,
    fattr4,
    fs4_status,
    fs_location4,
    fs_locations4,
    fs_locations_info4,
    fs_locations_item4,
    fs_locations_server4,
    fsid4,
    gss_cb_handles4,
    locker4,
    nfs_impl_id4,
    nfs_modified_limit4,
    nfs_space_limit4,
    nfsace4,
    nfstime4,
    open_claim4,
    open_claim_delegate_cur4,
    open_delegation4,
    open_none_delegation4,
    open_read_delegation4,
    open_to_lock_owner4,
    open_write_delegation4,
    openflag4,
    rpcsec_gss_info,
    secinfo4,
    server_owner4,
    settime4,
    specdata4,
    ssv_prot_info4,
    ssv_sp_parms4,
    state_owner4,
    state_protect4_a,
    state_protect4_r,
    state_protect_ops4,
    stateid4,
    unpack_argop,
)

OK = nfsstat4.NFS4_OK
SID = bytes(range(16))
SID_AA = b"\xaa" * 16
STATEID = stateid4(1, bytes(range(1, 13)))
OWNER = state_owner4(0x0102030405060708, b"ow")
CINFO = change_info4(True, 10, 11)
VERF = b"\x00\x00\x00\x00\x00\x00\x00\x01"
ATTRS = fattr4([0x10, 0x2], bytes(12))
ACE = nfsace4(0, 0, 0x1, "EVERYONE@")
TIME = nfstime4(-5, 999_999_999)
IMPL = nfs_impl_id4("example.org", "fusenfs", nfstime4(1_700_000_000, 0))
CHAN = channel_attrs4(0, 1_049_620, 1_049_480, 6_000, 16, 64, [])
SP_OPS = state_protect_ops4([0x1], [0x2, 0x0])


def roundtrip(value: Packable) -> Any:
    data = encode(value)
    return decode(type(value), data)  # type: ignore[type-var]


# -- one or more instances of every argument class ----------------------------------------
ARG_SAMPLES: list[ArgOp] = [
    ACCESS4args(0x3F),
    CLOSE4args(0, STATEID),
    COMMIT4args(0, 0),
    CREATE4args(createtype4(nfs_ftype4.NF4DIR), b"dir", ATTRS),
    CREATE4args(createtype4(nfs_ftype4.NF4LNK, linkdata=b"../target"), b"ln", ATTRS),
    CREATE4args(createtype4(nfs_ftype4.NF4BLK, devdata=specdata4(8, 1)), b"blk", ATTRS),
    CREATE4args(createtype4(nfs_ftype4.NF4CHR, devdata=specdata4(1, 3)), b"chr", ATTRS),
    CREATE4args(createtype4(nfs_ftype4.NF4FIFO), b"fifo", fattr4([], b"")),
    DELEGPURGE4args(7),
    DELEGRETURN4args(STATEID),
    GETATTR4args([0x0010_0010, 0x2]),
    GETFH4args(),
    LINK4args(b"new"),
    LOCK4args(
        nfs_lock_type4.WRITE_LT,
        False,
        0,
        NFS4_UINT64_MAX,
        locker4(True, open_owner=open_to_lock_owner4(0, STATEID, 0, OWNER)),
    ),
    LOCK4args(
        nfs_lock_type4.READW_LT,
        True,
        100,
        200,
        locker4(False, lock_owner=exist_lock_owner4(STATEID, 3)),
    ),
    LOCKT4args(nfs_lock_type4.READ_LT, 0, 10, OWNER),
    LOCKU4args(nfs_lock_type4.WRITE_LT, 0, STATEID, 0, 10),
    LOOKUP4args(b"name\xff"),
    LOOKUPP4args(),
    NVERIFY4args(ATTRS),
    OPEN4args(
        0,
        OPEN4_SHARE_ACCESS_READ,
        OPEN4_SHARE_DENY_NONE,
        OWNER,
        openflag4(opentype4.OPEN4_NOCREATE),
        open_claim4(open_claim_type4.CLAIM_NULL, file=b"f"),
    ),
    OPEN4args(
        0,
        3,
        0,
        OWNER,
        openflag4(opentype4.OPEN4_CREATE, createhow4(createmode4.UNCHECKED4, createattrs=ATTRS)),
        open_claim4(open_claim_type4.CLAIM_PREVIOUS, delegate_type=open_delegation_type4(1)),
    ),
    OPEN4args(
        0,
        3,
        0,
        OWNER,
        openflag4(opentype4.OPEN4_CREATE, createhow4(createmode4.GUARDED4, createattrs=ATTRS)),
        open_claim4(
            open_claim_type4.CLAIM_DELEGATE_CUR,
            delegate_cur_info=open_claim_delegate_cur4(STATEID, b"g"),
        ),
    ),
    OPEN4args(
        0,
        3,
        0,
        OWNER,
        openflag4(opentype4.OPEN4_CREATE, createhow4(createmode4.EXCLUSIVE4, createverf=VERF)),
        open_claim4(open_claim_type4.CLAIM_DELEGATE_PREV, file_delegate_prev=b"h"),
    ),
    OPEN4args(
        0,
        3,
        0,
        OWNER,
        openflag4(
            opentype4.OPEN4_CREATE,
            createhow4(createmode4.EXCLUSIVE4_1, ch_createboth=creatverfattr(VERF, ATTRS)),
        ),
        open_claim4(open_claim_type4.CLAIM_FH),
    ),
    OPEN4args(
        0,
        1,
        0,
        OWNER,
        openflag4(opentype4.OPEN4_NOCREATE),
        open_claim4(open_claim_type4.CLAIM_DELEG_CUR_FH, oc_delegate_stateid=STATEID),
    ),
    OPEN4args(
        0,
        1,
        0,
        OWNER,
        openflag4(opentype4.OPEN4_NOCREATE),
        open_claim4(open_claim_type4.CLAIM_DELEG_PREV_FH),
    ),
    OPENATTR4args(True),
    OPEN_DOWNGRADE4args(STATEID, 0, 1, 0),
    PUTFH4args(b"\x01" * 128),
    PUTPUBFH4args(),
    PUTROOTFH4args(),
    READ4args(STATEID, 1 << 40, 1 << 20),
    READDIR4args(0, bytes(8), 4096, 32768, [0x0010_0000]),
    READLINK4args(),
    REMOVE4args(b"x"),
    RENAME4args(b"a", b"bb"),
    RESTOREFH4args(),
    SAVEFH4args(),
    SECINFO4args(b"export"),
    SETATTR4args(ANONYMOUS_STATEID, ATTRS),
    VERIFY4args(ATTRS),
    WRITE4args(STATEID, 5, stable_how4.FILE_SYNC4, b"hello"),
    RELEASE_LOCKOWNER4args(OWNER),
    BACKCHANNEL_CTL4args(
        0x40000000,
        [
            callback_sec_parms4(AUTH_NONE),
            callback_sec_parms4(
                AUTH_SYS, cbsp_sys_cred=authsys_parms(1, "host", 1000, 100, [100, 4])
            ),
            callback_sec_parms4(
                RPCSEC_GSS,
                cbsp_gss_handles=gss_cb_handles4(rpc_gss_svc_t.RPC_GSS_SVC_PRIVACY, b"s", b"c"),
            ),
        ],
    ),
    BIND_CONN_TO_SESSION4args(SID, channel_dir_from_client4.CDFC4_FORE_OR_BOTH, False),
    EXCHANGE_ID4args(
        client_owner4(VERF, b"fusenfs/host"),
        EXCHGID4_FLAG_SUPP_MOVED_MIGR,
        state_protect4_a(state_protect_how4.SP4_NONE),
        [IMPL],
    ),
    EXCHANGE_ID4args(
        client_owner4(VERF, b"o"),
        0,
        state_protect4_a(state_protect_how4.SP4_MACH_CRED, spa_mach_ops=SP_OPS),
        [],
    ),
    EXCHANGE_ID4args(
        client_owner4(VERF, b"o"),
        0,
        state_protect4_a(
            state_protect_how4.SP4_SSV,
            spa_ssv_parms=ssv_sp_parms4(SP_OPS, [b"\x06\x05"], [b"\x06\x09", b"\x06"], 16, 2),
        ),
        [],
    ),
    CREATE_SESSION4args(1, 1, 3, CHAN, channel_attrs4(0, 4096, 4096, 0, 2, 1, [5]), 0x40000000, []),
    DESTROY_SESSION4args(SID),
    FREE_STATEID4args(STATEID),
    SECINFO_NO_NAME4args(secinfo_style4.SECINFO_STYLE4_PARENT),
    SEQUENCE4args(SID, 0xFFFFFFFF, 3, 63, True),
    TEST_STATEID4args([STATEID, CURRENT_STATEID]),
    TEST_STATEID4args([]),
    DESTROY_CLIENTID4args(0xFEDCBA9876543210),
    RECLAIM_COMPLETE4args(True),
]

DELEG_NONE = open_delegation4(open_delegation_type4.OPEN_DELEGATE_NONE)
DELEG_READ = open_delegation4(
    open_delegation_type4.OPEN_DELEGATE_READ, read=open_read_delegation4(STATEID, False, ACE)
)
DELEG_WRITE_SIZE = open_delegation4(
    open_delegation_type4.OPEN_DELEGATE_WRITE,
    write=open_write_delegation4(
        STATEID, True, nfs_space_limit4(limit_by4.NFS_LIMIT_SIZE, filesize=1 << 30), ACE
    ),
)
DELEG_WRITE_BLOCKS = open_delegation4(
    open_delegation_type4.OPEN_DELEGATE_WRITE,
    write=open_write_delegation4(
        STATEID,
        False,
        nfs_space_limit4(limit_by4.NFS_LIMIT_BLOCKS, mod_blocks=nfs_modified_limit4(10, 512)),
        ACE,
    ),
)
DELEG_NONE_EXT = [
    open_delegation4(
        open_delegation_type4.OPEN_DELEGATE_NONE_EXT,
        od_whynone=open_none_delegation4(why_no_delegation4.WND4_CONTENTION, True),
    ),
    open_delegation4(
        open_delegation_type4.OPEN_DELEGATE_NONE_EXT,
        od_whynone=open_none_delegation4(
            why_no_delegation4.WND4_RESOURCE, ond_server_will_signal_avail=False
        ),
    ),
    open_delegation4(
        open_delegation_type4.OPEN_DELEGATE_NONE_EXT,
        od_whynone=open_none_delegation4(why_no_delegation4.WND4_IS_DIR),
    ),
]

RES_SAMPLES: list[ResOp] = [
    ACCESS4res(OK, ACCESS4resok(0x3F, 0x03)),
    CLOSE4res(OK, INVALID_STATEID),
    COMMIT4res(OK, COMMIT4resok(VERF)),
    CREATE4res(OK, CREATE4resok(CINFO, [0x2])),
    DELEGPURGE4res(nfsstat4.NFS4ERR_NOTSUPP),
    DELEGRETURN4res(OK),
    GETATTR4res(OK, GETATTR4resok(ATTRS)),
    GETFH4res(OK, GETFH4resok(b"\x07" * 33)),
    LINK4res(OK, LINK4resok(CINFO)),
    LOCK4res(OK, resok=LOCK4resok(STATEID)),
    LOCK4res(
        nfsstat4.NFS4ERR_DENIED,
        denied=LOCK4denied(0, NFS4_UINT64_MAX, nfs_lock_type4.WRITE_LT, OWNER),
    ),
    LOCKT4res(OK),
    LOCKT4res(nfsstat4.NFS4ERR_DENIED, LOCK4denied(5, 6, nfs_lock_type4.READ_LT, OWNER)),
    LOCKU4res(OK, STATEID),
    LOOKUP4res(nfsstat4.NFS4ERR_NOENT),
    LOOKUPP4res(OK),
    NVERIFY4res(nfsstat4.NFS4ERR_SAME),
    *[
        OPEN4res(OK, OPEN4resok(STATEID, CINFO, 0x4, [0x10], deleg))
        for deleg in [DELEG_NONE, DELEG_READ, DELEG_WRITE_SIZE, DELEG_WRITE_BLOCKS, *DELEG_NONE_EXT]
    ],
    OPEN4res(nfsstat4.NFS4ERR_SHARE_DENIED),
    OPENATTR4res(OK),
    OPEN_DOWNGRADE4res(OK, OPEN_DOWNGRADE4resok(STATEID)),
    PUTFH4res(nfsstat4.NFS4ERR_MOVED),
    PUTPUBFH4res(OK),
    PUTROOTFH4res(OK),
    READ4res(OK, READ4resok(True, b"abc")),
    READ4res(nfsstat4.NFS4ERR_DELAY),
    READDIR4res(
        OK,
        READDIR4resok(
            VERF,
            dirlist4([entry4(1, b"a", ATTRS), entry4(2, b"bcde", fattr4([], b""))], False),
        ),
    ),
    READDIR4res(OK, READDIR4resok(VERF, dirlist4([], True))),
    READLINK4res(OK, READLINK4resok(b"/some/where")),
    REMOVE4res(OK, REMOVE4resok(CINFO)),
    RENAME4res(OK, RENAME4resok(CINFO, change_info4(False, 1, 2))),
    RESTOREFH4res(OK),
    SAVEFH4res(OK),
    SECINFO4res(
        OK,
        [
            secinfo4(
                RPCSEC_GSS,
                rpcsec_gss_info(
                    b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02", 0, rpc_gss_svc_t.RPC_GSS_SVC_NONE
                ),
            ),
            secinfo4(AUTH_SYS),
        ],
    ),
    SETATTR4res(OK, [0x10]),
    SETATTR4res(nfsstat4.NFS4ERR_PERM, []),
    VERIFY4res(nfsstat4.NFS4ERR_NOT_SAME),
    WRITE4res(OK, WRITE4resok(5, stable_how4.UNSTABLE4, VERF)),
    RELEASE_LOCKOWNER4res(OK),
    BACKCHANNEL_CTL4res(OK),
    BIND_CONN_TO_SESSION4res(
        OK, BIND_CONN_TO_SESSION4resok(SID, channel_dir_from_server4.CDFS4_BOTH, False)
    ),
    EXCHANGE_ID4res(
        OK,
        EXCHANGE_ID4resok(
            0x1122334455667788,
            1,
            0x00010103,
            state_protect4_r(state_protect_how4.SP4_NONE),
            server_owner4(0, b"major"),
            b"scope",
            [IMPL],
        ),
    ),
    EXCHANGE_ID4res(
        OK,
        EXCHANGE_ID4resok(
            1,
            1,
            0,
            state_protect4_r(state_protect_how4.SP4_MACH_CRED, spr_mach_ops=SP_OPS),
            server_owner4(1, b""),
            b"",
            [],
        ),
    ),
    EXCHANGE_ID4res(
        OK,
        EXCHANGE_ID4resok(
            1,
            1,
            0,
            state_protect4_r(
                state_protect_how4.SP4_SSV,
                spr_ssv_info=ssv_prot_info4(SP_OPS, 1, 2, 32, 16, [b"h1", b"h2"]),
            ),
            server_owner4(1, b"m"),
            b"s",
            [],
        ),
    ),
    EXCHANGE_ID4res(nfsstat4.NFS4ERR_CLID_INUSE),
    CREATE_SESSION4res(OK, CREATE_SESSION4resok(SID, 1, 0, CHAN, CHAN)),
    DESTROY_SESSION4res(OK),
    FREE_STATEID4res(nfsstat4.NFS4ERR_LOCKS_HELD),
    SECINFO_NO_NAME4res(OK, [secinfo4(AUTH_SYS), secinfo4(AUTH_NONE)]),
    SEQUENCE4res(OK, SEQUENCE4resok(SID, 1, 2, 3, 4, SEQ4_STATUS_LEASE_MOVED)),
    SEQUENCE4res(nfsstat4.NFS4ERR_BADSESSION),
    TEST_STATEID4res(OK, TEST_STATEID4resok([OK, nfsstat4.NFS4ERR_BAD_STATEID])),
    DESTROY_CLIENTID4res(nfsstat4.NFS4ERR_CLIENTID_BUSY),
    RECLAIM_COMPLETE4res(nfsstat4.NFS4ERR_COMPLETE_ALREADY),
    ILLEGAL4res(nfsstat4.NFS4ERR_OP_ILLEGAL),
]


def _id(value: object) -> str:
    return type(value).__name__


@pytest.mark.parametrize("value", ARG_SAMPLES, ids=_id)
def test_args_roundtrip(value: ArgOp) -> None:
    assert roundtrip(value) == value
    assert ARGS_BY_OPNUM[value.OPNUM] is type(value)


@pytest.mark.parametrize("value", RES_SAMPLES, ids=_id)
def test_res_roundtrip(value: ResOp) -> None:
    assert roundtrip(value) == value
    assert RES_BY_OPNUM[value.OPNUM] is type(value)


@pytest.mark.parametrize("cls", list(RES_BY_OPNUM.values()), ids=lambda c: c.__name__)
def test_every_res_error_status_is_void(cls: type[ResOp]) -> None:
    """Any status other than OK (and DENIED for LOCK/LOCKT) carries no data."""
    status = nfsstat4.NFS4ERR_SERVERFAULT
    data = bytes.fromhex("00002716")  # 10006
    if cls is SETATTR4res:
        data += bytes(4)  # attrsset is always present: an empty bitmap
    value = decode(cls, data)
    assert value.status is status
    assert encode(value) == data


def test_samples_cover_every_registered_op() -> None:
    assert {type(v) for v in ARG_SAMPLES} == set(ARGS_BY_OPNUM.values())
    assert {type(v) for v in RES_SAMPLES} == set(RES_BY_OPNUM.values())
    assert set(ARGS_BY_OPNUM) | {nfs_opnum4.OP_ILLEGAL} == set(RES_BY_OPNUM)


def test_opnums_match_rfc5662() -> None:
    assert SEQUENCE4args.OPNUM == 53 and SEQUENCE4res.OPNUM == 53
    assert PUTFH4args.OPNUM == 22 and READ4args.OPNUM == 25 and WRITE4args.OPNUM == 38
    assert EXCHANGE_ID4args.OPNUM == 42 and CREATE_SESSION4args.OPNUM == 43
    assert RECLAIM_COMPLETE4args.OPNUM == 58 and ILLEGAL4res.OPNUM == 10044
    assert SECINFO_NO_NAME4args.OPNUM == 52 and TEST_STATEID4args.OPNUM == 55


def test_compound_roundtrip_all_ops() -> None:
    args = COMPOUND4args(b"all", 1, list(ARG_SAMPLES))
    assert roundtrip(args) == args
    res = COMPOUND4res(nfsstat4.NFS4ERR_OP_ILLEGAL, b"all", list(RES_SAMPLES))
    assert roundtrip(res) == res


def test_compound_opnames() -> None:
    args = COMPOUND4args(b"", 1, [SEQUENCE4args(SID, 1, 0, 0, False), PUTROOTFH4args()])
    assert args.opnames() == "SEQUENCE PUTROOTFH"


def test_compound_unpack_head_and_op_by_op() -> None:
    ops: list[ArgOp] = [PUTROOTFH4args(), GETFH4args()]
    data = encode(COMPOUND4args(b"t", 1, ops)) + bytes.fromhex("000000ff")
    dec = Decoder(data)
    assert COMPOUND4args.unpack_head(dec) == (b"t", 1, 2)
    assert [unpack_argop(dec), unpack_argop(dec)] == ops


# -- special stateids, RFC 8881 section 8.2.3 --------------------------------------------
def test_special_stateids() -> None:
    assert encode(ANONYMOUS_STATEID) == bytes(16)
    assert encode(READ_BYPASS_STATEID) == b"\xff" * 16
    assert encode(CURRENT_STATEID) == bytes.fromhex("00000001") + bytes(12)
    assert encode(INVALID_STATEID) == b"\xff" * 4 + bytes(12)
    assert all(s.is_special() for s in (ANONYMOUS_STATEID, READ_BYPASS_STATEID, CURRENT_STATEID))
    assert not STATEID.is_special()
    assert hash(stateid4(0, bytes(12))) == hash(ANONYMOUS_STATEID)


# -- fixed byte vectors ------------------------------------------------------------------
SESSION_HEX = "000102030405060708090a0b0c0d0e0f"
AA16 = "aa" * 16
COMPOUND_HEX = (
    "00000002 72640000 00000001 00000003"
    "00000035" + AA16 + "00000001 00000000 00000000 00000000"
    "00000016 00000004 01020304"
    "00000019 00000000 000000000000000000000000 0000000000001000 00100000"
)

VECTORS: list[tuple[Packable, str]] = [
    (stateid4(1, bytes(range(1, 13))), "00000001 0102030405060708090a0b0c"),
    (
        SEQUENCE4args(SID, 0x11, 2, 7, True),
        SESSION_HEX + "00000011 00000002 00000007 00000001",
    ),
    (
        SEQUENCE4res(OK, SEQUENCE4resok(SID, 0x11, 2, 7, 15, SEQ4_STATUS_LEASE_MOVED)),
        "00000000" + SESSION_HEX + "00000011 00000002 00000007 0000000f 00000080",
    ),
    (PUTFH4args(b"\xde\xad\xbe\xef\x01"), "00000005 deadbeef 01000000"),
    (GETATTR4args([0x0010_0010, 0x2]), "00000002 00100010 00000002"),
    (
        COMPOUND4args(
            b"rd",
            1,
            [
                SEQUENCE4args(b"\xaa" * 16, 1, 0, 0, False),
                PUTFH4args(b"\x01\x02\x03\x04"),
                READ4args(ANONYMOUS_STATEID, 0x1000, 0x100000),
            ],
        ),
        COMPOUND_HEX,
    ),
    (PUTFH4res(nfsstat4.NFS4ERR_MOVED), "00002723"),
    (READ4res(nfsstat4.NFS4ERR_DELAY), "00002718"),
    (
        COMPOUND4res(
            nfsstat4.NFS4ERR_MOVED,
            b"",
            [
                SEQUENCE4res(OK, SEQUENCE4resok(b"\xaa" * 16, 1, 0, 0, 0, 0)),
                PUTFH4res(nfsstat4.NFS4ERR_MOVED),
            ],
        ),
        "00002723 00000000 00000002"
        "00000035 00000000" + AA16 + "00000001 00000000 00000000 00000000 00000000"
        "00000016 00002723",
    ),
    (
        LOCK4res(
            nfsstat4.NFS4ERR_DENIED,
            denied=LOCK4denied(0, NFS4_UINT64_MAX, nfs_lock_type4.WRITE_LT, OWNER),
        ),
        "0000271a 0000000000000000 ffffffffffffffff 00000002 0102030405060708 00000002 6f770000",
    ),
    (
        EXCHANGE_ID4args(
            client_owner4(VERF, b"fusenfs"),
            EXCHGID4_FLAG_SUPP_MOVED_MIGR | EXCHGID4_FLAG_SUPP_MOVED_REFER,
            state_protect4_a(state_protect_how4.SP4_NONE),
            [],
        ),
        "0000000000000001 00000007 667573656e667300 00000003 00000000 00000000",
    ),
    (
        READ4res(OK, READ4resok(True, b"hello")),
        "00000000 00000001 00000005 68656c6c 6f000000",
    ),
    (
        WRITE4args(ANONYMOUS_STATEID, 8, stable_how4.UNSTABLE4, b"xyz"),
        "00000000 000000000000000000000000 0000000000000008 00000000 00000003 78797a00",
    ),
    (nfstime4(-1, 5), "ffffffffffffffff 00000005"),
    (settime4(time_how4.SET_TO_SERVER_TIME4), "00000000"),
    (
        READDIR4resok(VERF, dirlist4([entry4(3, b"a", fattr4([], b""))], True)),
        "0000000000000001 00000001 0000000000000003 00000001 61000000 00000000 00000000"
        "00000000 00000001",
    ),
]


@pytest.mark.parametrize(("value", "hexstr"), VECTORS, ids=lambda v: _id(v)[:40])
def test_vector(value: Packable, hexstr: str) -> None:
    data = bytes.fromhex(hexstr.replace(" ", ""))
    assert encode(value).hex() == data.hex()
    assert decode(type(value), data) == value  # type: ignore[type-var]


# -- hostile and malformed input ---------------------------------------------------------
def test_truncated_buffer() -> None:
    data = encode(SEQUENCE4args(SID, 1, 0, 0, True))
    with pytest.raises(XdrError) as err:
        decode(SEQUENCE4args, data[:-1])
    assert err.value.type_name == "SEQUENCE4args.sa_cachethis"
    assert err.value.offset == 28


@pytest.mark.parametrize("cut", range(1, 40))
def test_truncated_compound_always_xdr_error(cut: int) -> None:
    data = bytes.fromhex(COMPOUND_HEX.replace(" ", ""))
    with pytest.raises(XdrError):
        decode(COMPOUND4args, data[:-cut])


def test_trailing_bytes() -> None:
    with pytest.raises(XdrError, match="trailing"):
        decode(PUTFH4res, bytes(8))


def test_hostile_opaque_length() -> None:
    with pytest.raises(XdrError) as err:
        decode(PUTFH4args, bytes.fromhex("ffffffff 00000000".replace(" ", "")))
    assert err.value.type_name == "PUTFH4args.object" and err.value.offset == 0
    with pytest.raises(XdrError) as err:
        decode(READ4res, bytes.fromhex("00000000 00000000 ffffffff 0000".replace(" ", "")))
    assert err.value.type_name == "READ4resok.data" and err.value.offset == 8
    # a filehandle longer than NFS4_FHSIZE is refused even if the bytes are there
    with pytest.raises(XdrError, match="maximum 128"):
        decode(PUTFH4args, bytes.fromhex("00000084") + bytes(132))


def test_hostile_array_count() -> None:
    with pytest.raises(XdrError) as err:
        decode(GETATTR4args, bytes.fromhex("00001000 00000001 00000002".replace(" ", "")))
    assert err.value.type_name == "GETATTR4args.attr_request"
    with pytest.raises(XdrError) as err:
        decode(TEST_STATEID4args, bytes.fromhex("00000002") + bytes(16))
    assert err.value.type_name == "stateid4"
    with pytest.raises(XdrError):
        decode(COMPOUND4args, bytes.fromhex("00000000 00000001 7fffffff".replace(" ", "")))
    with pytest.raises(XdrError, match="exceeds the maximum 1024"):
        decode(COMPOUND4res, bytes.fromhex("00000000 00000000 00000401".replace(" ", "")))


def test_unknown_union_discriminant() -> None:
    # OPEN4args ending with the void arm CLAIM_FH, then the claim changed to 99
    value = OPEN4args(
        0, 1, 0, OWNER, openflag4(opentype4.OPEN4_NOCREATE), open_claim4(open_claim_type4.CLAIM_FH)
    )
    data = encode(value)[:-4] + bytes.fromhex("00000063")
    with pytest.raises(XdrError) as err:
        decode(OPEN4args, data)
    assert err.value.type_name == "open_claim4"
    assert err.value.offset == len(data) - 4
    assert "unknown discriminant 99" in str(err.value)


@pytest.mark.parametrize(
    ("cls", "hexstr", "union"),
    [
        (createhow4, "00000009", "createhow4"),
        (open_delegation4, "00000004", "open_delegation4"),
        (nfs_space_limit4, "00000003", "nfs_space_limit4"),
        (callback_sec_parms4, "00000003", "callback_sec_parms4"),
        (state_protect4_a, "00000003", "state_protect4_a"),
        (state_protect4_r, "00000007", "state_protect4_r"),
        (COMPOUND4args, "00000000 00000001 00000001 0000270f", "nfs_argop4"),
        (COMPOUND4res, "00000000 00000000 00000001 0000002f 00000000", "nfs_resop4"),
    ],
)
def test_unknown_discriminants(cls: type[Any], hexstr: str, union: str) -> None:
    with pytest.raises(XdrError) as err:
        decode(cls, bytes.fromhex(hexstr.replace(" ", "")))
    assert err.value.type_name == union


def test_default_void_arms_accept_unknown() -> None:
    """createtype4, secinfo4, settime4, openflag4 and open_none_delegation4 have a
    ``default: void`` arm in RFC 5662, so unknown discriminants decode."""
    assert decode(createtype4, bytes.fromhex("00000063")).type == 99
    assert decode(secinfo4, bytes.fromhex("00000190")).flavor == 400
    assert decode(settime4, bytes.fromhex("00000002")).time is None
    assert decode(openflag4, bytes.fromhex("00000002")).how is None
    assert decode(open_none_delegation4, bytes.fromhex("00000063")).ond_why == 99


def test_unknown_enum_value_kept() -> None:
    data = bytes.fromhex("00067932")  # 424242
    res = decode(PUTFH4res, data)
    assert res.status == 424242
    assert res.status.name == "nfsstat4_424242"
    assert isinstance(res.status, nfsstat4)
    assert encode(res) == data
    assert nfsstat4(424242) is not nfsstat4.NFS4_OK


def test_bad_bool() -> None:
    with pytest.raises(XdrError, match="bool"):
        decode(RECLAIM_COMPLETE4args, bytes.fromhex("00000002"))


# -- packing with the selected arm missing -------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        ACCESS4res(OK),
        CLOSE4res(OK),
        LOCK4res(nfsstat4.NFS4ERR_DENIED),
        LOCKT4res(nfsstat4.NFS4ERR_DENIED),
        SECINFO4res(OK),
        open_claim4(open_claim_type4.CLAIM_NULL),
        open_claim4(open_claim_type4(42)),
        createhow4(createmode4.EXCLUSIVE4),
        createtype4(nfs_ftype4.NF4LNK),
        open_delegation4(open_delegation_type4.OPEN_DELEGATE_READ),
        locker4(True),
        settime4(time_how4.SET_TO_CLIENT_TIME4),
        callback_sec_parms4(AUTH_SYS),
        callback_sec_parms4(99),
        state_protect4_a(state_protect_how4.SP4_SSV),
        channel_attrs4(0, 0, 0, 0, 0, 0, [1, 2]),
        EXCHANGE_ID4args(
            client_owner4(VERF, b""), 0, state_protect4_a(state_protect_how4.SP4_NONE), [IMPL] * 2
        ),
    ],
    ids=_id,
)
def test_pack_missing_arm_raises_value_error(value: Packable) -> None:
    with pytest.raises(ValueError):
        value.pack(Encoder())


def test_fixed_sizes_enforced_on_pack() -> None:
    with pytest.raises(ValueError):
        encode(SEQUENCE4args(b"short", 1, 0, 0, False))
    with pytest.raises(ValueError):
        encode(stateid4(0, b"x"))


# -- structures used by attributes -------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        fsid4(1, NFS4_UINT64_MAX),
        specdata4(1, 2),
        TIME,
        settime4(time_how4.SET_TO_CLIENT_TIME4, TIME),
        fs_location4(["10.0.0.1", "server.example"], ["export", "a"]),
        fs_locations4(["x"], [fs_location4(["s"], []), fs_location4([], ["p"])]),
        fs_locations_info4(
            1,
            -1,
            ["root"],
            [
                fs_locations_item4(
                    [
                        fs_locations_server4(0, bytes([1, 0, 2, 3]), "s1"),
                        fs_locations_server4(-1, b"", "s2"),
                    ],
                    ["r", "p"],
                )
            ],
        ),
        fs4_status(True, fs4_status_type.STATUS4_REFERRAL, "src", "cur", -1, TIME),
    ],
    ids=_id,
)
def test_struct_roundtrip(value: Packable) -> None:
    assert roundtrip(value) == value


def test_large_read_write_payload() -> None:
    payload = bytes(range(256)) * 4096 + b"\x01\x02\x03"  # 1 MiB + 3, needs padding
    write = WRITE4args(STATEID, 0, stable_how4.UNSTABLE4, payload)
    data = encode(write)
    assert len(data) == 16 + 8 + 4 + 4 + len(payload) + 1
    assert data[-1:] == b"\x00"
    assert decode(WRITE4args, data) == write
    read = READ4res(OK, READ4resok(False, payload))
    back = decode(READ4res, encode(read))
    assert back.resok is not None and back.resok.data == payload
    enc = Encoder()
    enc.opaque_bulk(memoryview(payload)[1:6])
    assert enc.getvalue() == bytes.fromhex("00000005 0102030405000000".replace(" ", ""))


def test_large_write_is_encoded_in_pieces_without_copying_its_data() -> None:
    """A WRITE's data of BULK_MIN bytes or more is kept apart (a view of the caller's
    buffer) between the bytes before and after it; joined, the pieces are exactly the
    encoding ``opaque`` gives; a small payload stays inline."""
    payload = bytes(range(256)) * 4096 + b"\x01\x02\x03"  # 1 MiB + 3: padding follows
    enc = Encoder()
    WRITE4args(STATEID, 7, stable_how4.UNSTABLE4, payload).pack(enc)
    enc.uint32(0xCAFE)  # something after the padding
    gathered = enc.gathered()
    assert isinstance(gathered, Gathered)
    assert len(gathered.pieces) == 3
    head, data, tail = gathered.pieces
    assert isinstance(data, memoryview) and data.obj is payload  # not a copy
    assert bytes(tail) == b"\x00" + bytes.fromhex("0000cafe")
    plain = Encoder()
    STATEID.pack(plain)
    plain.uint64(7)
    plain.uint32(stable_how4.UNSTABLE4)
    plain.opaque(payload)
    plain.uint32(0xCAFE)
    assert gathered.joined() == enc.getvalue() == plain.getvalue()
    assert len(gathered) == len(plain.getvalue())
    assert bytes(head) == plain.getvalue()[: len(head)]

    small = Encoder()
    small.opaque_bulk(b"x" * (BULK_MIN - 1))
    assert isinstance(small.gathered(), bytes)
    at_bound = Encoder()
    at_bound.opaque_bulk(b"x" * BULK_MIN)
    assert isinstance(at_bound.gathered(), Gathered)
    at_bound.reset()
    assert at_bound.gathered() == b""


def test_readdir_long_list_is_iterative() -> None:
    entries = [entry4(i, b"n%d" % i, fattr4([], b"")) for i in range(20000)]
    value = READDIR4res(OK, READDIR4resok(VERF, dirlist4(entries, True)))
    assert roundtrip(value) == value

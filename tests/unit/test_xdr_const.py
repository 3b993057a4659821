"""Tests for session.xdr.const: RFC 5662 numbers and open enums."""

from __future__ import annotations

import enum

import pytest

from session.xdr import const
from session.xdr.codec import Decoder, Encoder, OpenEnum
from session.xdr.const import FATTR4, nfs_cb_opnum4, nfs_opnum4, nfsstat4

NFSSTAT4 = {
    "NFS4_OK": 0, "NFS4ERR_PERM": 1, "NFS4ERR_NOENT": 2, "NFS4ERR_IO": 5, "NFS4ERR_NXIO": 6,
    "NFS4ERR_ACCESS": 13, "NFS4ERR_EXIST": 17, "NFS4ERR_XDEV": 18, "NFS4ERR_NOTDIR": 20,
    "NFS4ERR_ISDIR": 21, "NFS4ERR_INVAL": 22, "NFS4ERR_FBIG": 27, "NFS4ERR_NOSPC": 28,
    "NFS4ERR_ROFS": 30, "NFS4ERR_MLINK": 31, "NFS4ERR_NAMETOOLONG": 63,
    "NFS4ERR_NOTEMPTY": 66, "NFS4ERR_DQUOT": 69, "NFS4ERR_STALE": 70,
    "NFS4ERR_BADHANDLE": 10001, "NFS4ERR_BAD_COOKIE": 10003, "NFS4ERR_NOTSUPP": 10004,
    "NFS4ERR_TOOSMALL": 10005, "NFS4ERR_SERVERFAULT": 10006, "NFS4ERR_BADTYPE": 10007,
    "NFS4ERR_DELAY": 10008, "NFS4ERR_SAME": 10009, "NFS4ERR_DENIED": 10010,
    "NFS4ERR_EXPIRED": 10011, "NFS4ERR_LOCKED": 10012, "NFS4ERR_GRACE": 10013,
    "NFS4ERR_FHEXPIRED": 10014, "NFS4ERR_SHARE_DENIED": 10015, "NFS4ERR_WRONGSEC": 10016,
    "NFS4ERR_CLID_INUSE": 10017, "NFS4ERR_RESOURCE": 10018, "NFS4ERR_MOVED": 10019,
    "NFS4ERR_NOFILEHANDLE": 10020, "NFS4ERR_MINOR_VERS_MISMATCH": 10021,
    "NFS4ERR_STALE_CLIENTID": 10022, "NFS4ERR_STALE_STATEID": 10023,
    "NFS4ERR_OLD_STATEID": 10024, "NFS4ERR_BAD_STATEID": 10025, "NFS4ERR_BAD_SEQID": 10026,
    "NFS4ERR_NOT_SAME": 10027, "NFS4ERR_LOCK_RANGE": 10028, "NFS4ERR_SYMLINK": 10029,
    "NFS4ERR_RESTOREFH": 10030, "NFS4ERR_LEASE_MOVED": 10031, "NFS4ERR_ATTRNOTSUPP": 10032,
    "NFS4ERR_NO_GRACE": 10033, "NFS4ERR_RECLAIM_BAD": 10034,
    "NFS4ERR_RECLAIM_CONFLICT": 10035, "NFS4ERR_BADXDR": 10036, "NFS4ERR_LOCKS_HELD": 10037,
    "NFS4ERR_OPENMODE": 10038, "NFS4ERR_BADOWNER": 10039, "NFS4ERR_BADCHAR": 10040,
    "NFS4ERR_BADNAME": 10041, "NFS4ERR_BAD_RANGE": 10042, "NFS4ERR_LOCK_NOTSUPP": 10043,
    "NFS4ERR_OP_ILLEGAL": 10044, "NFS4ERR_DEADLOCK": 10045, "NFS4ERR_FILE_OPEN": 10046,
    "NFS4ERR_ADMIN_REVOKED": 10047, "NFS4ERR_CB_PATH_DOWN": 10048,
    "NFS4ERR_BADIOMODE": 10049, "NFS4ERR_BADLAYOUT": 10050,
    "NFS4ERR_BAD_SESSION_DIGEST": 10051, "NFS4ERR_BADSESSION": 10052,
    "NFS4ERR_BADSLOT": 10053, "NFS4ERR_COMPLETE_ALREADY": 10054,
    "NFS4ERR_CONN_NOT_BOUND_TO_SESSION": 10055, "NFS4ERR_DELEG_ALREADY_WANTED": 10056,
    "NFS4ERR_BACK_CHAN_BUSY": 10057, "NFS4ERR_LAYOUTTRYLATER": 10058,
    "NFS4ERR_LAYOUTUNAVAILABLE": 10059, "NFS4ERR_NOMATCHING_LAYOUT": 10060,
    "NFS4ERR_RECALLCONFLICT": 10061, "NFS4ERR_UNKNOWN_LAYOUTTYPE": 10062,
    "NFS4ERR_SEQ_MISORDERED": 10063, "NFS4ERR_SEQUENCE_POS": 10064,
    "NFS4ERR_REQ_TOO_BIG": 10065, "NFS4ERR_REP_TOO_BIG": 10066,
    "NFS4ERR_REP_TOO_BIG_TO_CACHE": 10067, "NFS4ERR_RETRY_UNCACHED_REP": 10068,
    "NFS4ERR_UNSAFE_COMPOUND": 10069, "NFS4ERR_TOO_MANY_OPS": 10070,
    "NFS4ERR_OP_NOT_IN_SESSION": 10071, "NFS4ERR_HASH_ALG_UNSUPP": 10072,
    "NFS4ERR_CLIENTID_BUSY": 10074, "NFS4ERR_PNFS_IO_HOLE": 10075,
    "NFS4ERR_SEQ_FALSE_RETRY": 10076, "NFS4ERR_BAD_HIGH_SLOT": 10077,
    "NFS4ERR_DEADSESSION": 10078, "NFS4ERR_ENCR_ALG_UNSUPP": 10079,
    "NFS4ERR_PNFS_NO_LAYOUT": 10080, "NFS4ERR_NOT_ONLY_OP": 10081,
    "NFS4ERR_WRONG_CRED": 10082, "NFS4ERR_WRONG_TYPE": 10083,
    "NFS4ERR_DIRDELEG_UNAVAIL": 10084, "NFS4ERR_REJECT_DELEG": 10085,
    "NFS4ERR_RETURNCONFLICT": 10086, "NFS4ERR_DELEG_REVOKED": 10087,
}  # fmt: skip


def test_nfsstat4_complete_and_exact() -> None:
    assert {m.name: m.value for m in nfsstat4} == NFSSTAT4


def test_opnums_contiguous() -> None:
    values = sorted(m.value for m in nfs_opnum4)
    assert values == [*range(3, 59), 10044]
    assert int(nfs_opnum4.OP_SEQUENCE) == 53 and int(nfs_opnum4.OP_EXCHANGE_ID) == 42
    cb_values = sorted(m.value for m in nfs_cb_opnum4)
    assert cb_values == [*range(3, 15), 10044]


WIRE_ENUMS = [
    obj
    for obj in vars(const).values()
    if isinstance(obj, type) and issubclass(obj, enum.IntEnum) and obj.__module__ == const.__name__
]


@pytest.mark.parametrize("cls", WIRE_ENUMS, ids=lambda c: c.__name__)
def test_every_enum_is_open_without_accidental_aliases(cls: type[OpenEnum]) -> None:
    assert issubclass(cls, OpenEnum)
    if cls is not FATTR4:
        assert len(cls.__members__) == len(list(cls))  # no aliases
    pseudo = cls(987654)
    assert pseudo.value == 987654 and pseudo.name == f"{cls.__name__}_987654"


def test_fattr4_aliases() -> None:
    # mypy treats the aliases as distinct literals, so look them up by name here
    assert FATTR4["SIZE"] is FATTR4["FATTR4_SIZE"]
    assert FATTR4(4).name == "FATTR4_SIZE"
    assert len(list(FATTR4)) == 77
    for member in FATTR4:
        assert FATTR4[member.name.removeprefix("FATTR4_")] is member


def test_unknown_status_roundtrips_through_codec() -> None:
    enc = Encoder()
    enc.int32(nfsstat4(424242))
    data = enc.getvalue()
    assert data.hex() == "00067932"
    status = Decoder(data).enum(nfsstat4)
    assert status == 424242 and status.name == "nfsstat4_424242"


def test_flag_values() -> None:
    assert const.EXCHGID4_FLAG_SUPP_MOVED_REFER == 0x1
    assert const.EXCHGID4_FLAG_SUPP_MOVED_MIGR == 0x2
    assert const.EXCHGID4_FLAG_BIND_PRINC_STATEID == 0x100
    assert const.EXCHGID4_FLAG_MASK_PNFS == (
        const.EXCHGID4_FLAG_USE_NON_PNFS
        | const.EXCHGID4_FLAG_USE_PNFS_MDS
        | const.EXCHGID4_FLAG_USE_PNFS_DS
    )
    assert const.EXCHGID4_FLAG_CONFIRMED_R == 0x80000000
    assert const.EXCHGID4_FLAG_UPD_CONFIRMED_REC_A == 0x40000000
    seq = [
        const.SEQ4_STATUS_CB_PATH_DOWN,
        const.SEQ4_STATUS_CB_GSS_CONTEXTS_EXPIRING,
        const.SEQ4_STATUS_CB_GSS_CONTEXTS_EXPIRED,
        const.SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED,
        const.SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED,
        const.SEQ4_STATUS_ADMIN_STATE_REVOKED,
        const.SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
        const.SEQ4_STATUS_LEASE_MOVED,
        const.SEQ4_STATUS_RESTART_RECLAIM_NEEDED,
        const.SEQ4_STATUS_CB_PATH_DOWN_SESSION,
        const.SEQ4_STATUS_BACKCHANNEL_FAULT,
        const.SEQ4_STATUS_DEVID_CHANGED,
        const.SEQ4_STATUS_DEVID_DELETED,
    ]
    assert seq == [1 << i for i in range(13)]
    assert [1 << i for i in range(6)] == [
        const.ACCESS4_READ,
        const.ACCESS4_LOOKUP,
        const.ACCESS4_MODIFY,
        const.ACCESS4_EXTEND,
        const.ACCESS4_DELETE,
        const.ACCESS4_EXECUTE,
    ]
    assert const.CREATE_SESSION4_FLAG_CONN_RDMA == 4
    assert const.FSLI4BX_WRITEORDER == 11 and const.FSLI4GF_SPLIT == 0x10
    assert const.NFS4_SESSIONID_SIZE == 16 and const.NFS4_OTHER_SIZE == 12

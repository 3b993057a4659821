"""Tests for session.xdr.cb: the callback program's operations and CB_COMPOUND."""

from __future__ import annotations

from typing import Any

import pytest

from session.errors import XdrError
from session.xdr.cb import (
    CB_ARGS_BY_OPNUM,
    CB_RES_BY_OPNUM,
    CB_COMPOUND4args,
    CB_COMPOUND4res,
    CB_GETATTR4args,
    CB_GETATTR4res,
    CB_GETATTR4resok,
    CB_ILLEGAL4res,
    CB_NOTIFY_LOCK4args,
    CB_NOTIFY_LOCK4res,
    CB_RECALL4args,
    CB_RECALL4res,
    CB_RECALL_ANY4args,
    CB_RECALL_ANY4res,
    CB_RECALL_SLOT4args,
    CB_RECALL_SLOT4res,
    CB_RECALLABLE_OBJ_AVAIL4args,
    CB_RECALLABLE_OBJ_AVAIL4res,
    CB_SEQUENCE4args,
    CB_SEQUENCE4res,
    CB_SEQUENCE4resok,
    CB_WANTS_CANCELLED4args,
    CB_WANTS_CANCELLED4res,
    CbArgOp,
    CbResOp,
    referring_call4,
    referring_call_list4,
    unpack_cb_argop,
)
from session.xdr.codec import Decoder, Packable, decode, encode
from session.xdr.const import nfs_cb_opnum4, nfsstat4
from session.xdr.fattr import NFSAttrs, encode_fattr4
from session.xdr.nfs4 import state_owner4, stateid4

OK = nfsstat4.NFS4_OK
SID = bytes(range(16))
SID_AA = b"\xaa" * 16
STATEID = stateid4(1, bytes(11) + b"\x09")
CBSEQ = CB_SEQUENCE4args(
    SID, 1, 0, 0, False, [referring_call_list4(SID_AA, [referring_call4(5, 2)])]
)

ARG_SAMPLES: list[CbArgOp] = [
    CB_GETATTR4args(b"\x01\x02", [0x18]),
    CB_RECALL4args(STATEID, True, b"\xfe\xed"),
    CB_RECALL_ANY4args(0, [0x1]),
    CB_RECALLABLE_OBJ_AVAIL4args(3, [0x3]),
    CB_RECALL_SLOT4args(7),
    CBSEQ,
    CB_SEQUENCE4args(SID, 0xFFFFFFFF, 3, 9, True, []),
    CB_WANTS_CANCELLED4args(True, False),
    CB_NOTIFY_LOCK4args(b"\x05", state_owner4(9, b"lockowner")),
]

RES_SAMPLES: list[CbResOp] = [
    CB_GETATTR4res(OK, CB_GETATTR4resok(encode_fattr4(NFSAttrs(size=10, change=3)))),
    CB_GETATTR4res(nfsstat4.NFS4ERR_BADHANDLE),
    CB_RECALL4res(OK),
    CB_RECALL_ANY4res(OK),
    CB_RECALLABLE_OBJ_AVAIL4res(OK),
    CB_RECALL_SLOT4res(nfsstat4.NFS4ERR_BAD_HIGH_SLOT),
    CB_SEQUENCE4res(OK, CB_SEQUENCE4resok(SID, 1, 0, 0, 0)),
    CB_SEQUENCE4res(nfsstat4.NFS4ERR_SEQ_MISORDERED),
    CB_WANTS_CANCELLED4res(OK),
    CB_NOTIFY_LOCK4res(OK),
    CB_ILLEGAL4res(nfsstat4.NFS4ERR_OP_ILLEGAL),
]


def _id(value: object) -> str:
    return type(value).__name__


def roundtrip(value: Packable) -> Any:
    return decode(type(value), encode(value))  # type: ignore[type-var]


@pytest.mark.parametrize("value", ARG_SAMPLES, ids=_id)
def test_cb_args_roundtrip(value: CbArgOp) -> None:
    assert roundtrip(value) == value
    assert CB_ARGS_BY_OPNUM[value.OPNUM] is type(value)


@pytest.mark.parametrize("value", RES_SAMPLES, ids=_id)
def test_cb_res_roundtrip(value: CbResOp) -> None:
    assert roundtrip(value) == value
    assert CB_RES_BY_OPNUM[value.OPNUM] is type(value)


def test_samples_cover_registries() -> None:
    assert {type(v) for v in ARG_SAMPLES} == set(CB_ARGS_BY_OPNUM.values())
    assert {type(v) for v in RES_SAMPLES} == set(CB_RES_BY_OPNUM.values())


def test_recall_any_and_obj_avail_are_distinct() -> None:
    any_ = CB_RECALL_ANY4args(1, [1])
    avail = CB_RECALLABLE_OBJ_AVAIL4args(1, [1])
    assert encode(any_) == encode(avail)
    assert any_ != avail  # type: ignore[comparison-overlap]
    assert not isinstance(avail, CB_RECALL_ANY4args)


CBSEQ_HEX = (
    "000102030405060708090a0b0c0d0e0f 00000001 00000000 00000000 00000000"
    " 00000001" + " aa" * 16 + " 00000001 00000005 00000002"
)


@pytest.mark.parametrize(
    ("value", "hexstr"),
    [
        (CBSEQ, CBSEQ_HEX),
        (
            CB_COMPOUND4args(b"", 1, 0, [CBSEQ, CB_RECALL4args(STATEID, False, b"\xfe\xed")]),
            "00000000 00000001 00000000 00000002 0000000b "
            + CBSEQ_HEX
            + " 00000004 00000001 000000000000000000000009 00000000 00000002 feed0000",
        ),
        (
            CB_COMPOUND4res(
                OK,
                b"cb",
                [CB_SEQUENCE4res(OK, CB_SEQUENCE4resok(SID, 1, 0, 4, 4)), CB_RECALL4res(OK)],
            ),
            "00000000 00000002 63620000 00000002 0000000b 00000000"
            " 000102030405060708090a0b0c0d0e0f 00000001 00000000 00000004 00000004"
            " 00000004 00000000",
        ),
        (CB_RECALL4res(nfsstat4.NFS4ERR_BADHANDLE), "00002711"),
    ],
    ids=["CB_SEQUENCE4args", "CB_COMPOUND4args", "CB_COMPOUND4res", "CB_RECALL4res"],
)
def test_cb_vectors(value: Packable, hexstr: str) -> None:
    data = bytes.fromhex(hexstr.replace(" ", ""))
    assert encode(value).hex() == data.hex()
    assert decode(type(value), data) == value  # type: ignore[type-var]


def test_cb_compound_roundtrip_all() -> None:
    args = CB_COMPOUND4args(b"t", 1, 0, list(ARG_SAMPLES))
    assert roundtrip(args) == args
    res = CB_COMPOUND4res(OK, b"t", list(RES_SAMPLES))
    assert roundtrip(res) == res


def test_unknown_cb_operation() -> None:
    # CB_LAYOUTRECALL (5) has no args class here
    data = bytes.fromhex("00000000 00000001 00000000 00000001 00000005 00000000".replace(" ", ""))
    with pytest.raises(XdrError) as err:
        decode(CB_COMPOUND4args, data)
    assert err.value.type_name == "nfs_cb_argop4" and err.value.offset == 16
    dec = Decoder(data)
    assert CB_COMPOUND4args.unpack_head(dec) == (b"", 1, 0, 1)
    with pytest.raises(XdrError):
        unpack_cb_argop(dec)
    with pytest.raises(XdrError) as err:
        decode(
            CB_COMPOUND4res,
            bytes.fromhex("00000000 00000000 00000001 00000006 00000000".replace(" ", "")),
        )
    assert err.value.type_name == "nfs_cb_resop4"


def test_hostile_referring_call_count() -> None:
    data = bytes.fromhex(CBSEQ_HEX.replace(" ", ""))
    hostile = data[:32] + bytes.fromhex("0fffffff") + data[36:]
    with pytest.raises(XdrError) as err:
        decode(CB_SEQUENCE4args, hostile)
    assert err.value.type_name == "referring_call_list4" and err.value.offset == 32


def test_truncated_cb_sequence() -> None:
    data = bytes.fromhex(CBSEQ_HEX.replace(" ", ""))
    for cut in range(1, len(data)):
        with pytest.raises(XdrError):
            decode(CB_SEQUENCE4args, data[:cut])


def test_cb_opnums() -> None:
    assert int(nfs_cb_opnum4.OP_CB_SEQUENCE) == 11 and CB_SEQUENCE4args.OPNUM == 11
    assert CB_RECALL4args.OPNUM == 4 and CB_GETATTR4args.OPNUM == 3
    assert CB_ILLEGAL4res.OPNUM == 10044


def test_missing_ok_arm() -> None:
    with pytest.raises(ValueError):
        encode(CB_SEQUENCE4res(OK))
    with pytest.raises(ValueError):
        encode(CB_GETATTR4res(OK))

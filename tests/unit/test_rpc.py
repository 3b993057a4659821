"""ONC RPC messages and authentication (RFC 5531 sections 8, 9 and appendix A)."""

from __future__ import annotations

import errno

import pytest

from session.errors import RpcError, XdrError
from session.rpc import (
    NULL_AUTH,
    AuthError,
    AuthNone,
    AuthSys,
    GarbageArgs,
    ProcUnavail,
    ProgMismatch,
    ProgUnavail,
    RecordReader,
    RpcCall,
    RpcMismatch,
    RpcReply,
    SystemErr,
    UnsupportedRpcVersion,
    accept_stat,
    auth_flavor,
    auth_stat,
    authsys_parms,
    decode_call,
    decode_reply,
    encode_accepted_reply,
    encode_call,
    encode_rejected_reply,
    frame_record,
    msg_type,
    opaque_auth,
    peek_xid_and_type,
    reject_stat,
)
from session.xdr.codec import Decoder, Encoder


def h(text: str) -> bytes:
    """Hex with spaces and newlines allowed, one XDR word per group."""
    return bytes.fromhex(text)


NFS_PROGRAM = 100003  # 0x000186a3

CALL_AUTH_NONE = h(
    """
    12345678 00000000 00000002 000186a3 00000004 00000000
    00000000 00000000
    00000000 00000000
    """
)

AUTHSYS_BODY = h(
    """
    00000007
    00000004 686f7374
    000003e8 00000064
    00000002 0000000a 00000014
    """
)

CALL_AUTH_SYS = (
    h("00000001 00000000 00000002 000186a3 00000004 00000001")
    + h("00000001 00000020")
    + AUTHSYS_BODY
    + h("00000000 00000000")
    + h("deadbeef")
)


# -- calls --------------------------------------------------------------------------------


def test_call_auth_none_vector() -> None:
    auth = AuthNone()
    body = encode_call(0x12345678, NFS_PROGRAM, 4, 0, auth.cred, auth.verf, b"")
    assert body == CALL_AUTH_NONE


def test_call_auth_sys_vector() -> None:
    auth = AuthSys(uid=1000, gid=100, gids=[10, 20], machinename="host", stamp=7)
    body = encode_call(1, NFS_PROGRAM, 4, 1, auth.cred, auth.verf, h("deadbeef"))
    assert body == CALL_AUTH_SYS


def test_decode_call_auth_sys_vector() -> None:
    call = decode_call(CALL_AUTH_SYS)
    assert call == RpcCall(
        xid=1,
        rpcvers=2,
        prog=NFS_PROGRAM,
        vers=4,
        proc=1,
        cred=opaque_auth(auth_flavor.AUTH_SYS, AUTHSYS_BODY),
        verf=NULL_AUTH,
        args=h("deadbeef"),
    )
    parms = authsys_parms.unpack(Decoder(call.cred.body))
    assert parms == authsys_parms(7, "host", 1000, 100, [10, 20])


def test_decode_call_auth_none_vector() -> None:
    call = decode_call(CALL_AUTH_NONE)
    assert (call.xid, call.prog, call.vers, call.proc) == (0x12345678, NFS_PROGRAM, 4, 0)
    assert call.cred == NULL_AUTH and call.verf == NULL_AUTH and call.args == b""


def test_machinename_is_padded() -> None:
    enc = Encoder()
    authsys_parms(0, "abcde", 0, 0, []).pack(enc)
    assert enc.getvalue() == h("00000000 00000005 6162636465000000 00000000 00000000 00000000")


def test_decode_call_wrong_rpcvers() -> None:
    body = bytearray(CALL_AUTH_NONE)
    body[8:12] = h("00000003")
    with pytest.raises(UnsupportedRpcVersion, match="rpcvers 3") as info:
        decode_call(bytes(body))
    assert info.value.xid == 0x12345678
    assert isinstance(info.value, RpcError)


def test_decode_call_rejects_reply_and_truncation() -> None:
    with pytest.raises(XdrError, match="expected CALL"):
        decode_call(encode_accepted_reply(1, NULL_AUTH, accept_stat.SUCCESS))
    with pytest.raises(XdrError):
        decode_call(CALL_AUTH_NONE[:-6])


def test_unknown_auth_flavor_is_kept() -> None:
    body = bytearray(CALL_AUTH_NONE)
    body[24:28] = h("00000309")  # flavor 777
    call = decode_call(bytes(body))
    assert int(call.cred.flavor) == 777
    assert call.cred.flavor.name == "auth_flavor_777"


def test_opaque_auth_limit() -> None:
    opaque_auth(auth_flavor.RPCSEC_GSS, b"x" * 400)
    with pytest.raises(ValueError, match="401 bytes"):
        opaque_auth(auth_flavor.RPCSEC_GSS, b"x" * 401)
    wire = h("00000006 00000191") + b"x" * 404
    with pytest.raises(XdrError, match="exceeds the maximum 400"):
        opaque_auth.unpack(Decoder(wire))


def test_authsys_limits() -> None:
    with pytest.raises(ValueError, match="17 entries"):
        AuthSys(0, 0, gids=range(17))
    with pytest.raises(ValueError, match="machinename"):
        AuthSys(0, 0, machinename="m" * 256)
    wire = h("00000000 00000000 00000000 00000000 00000011") + bytes(68)
    with pytest.raises(XdrError, match="exceeds the maximum 16"):
        authsys_parms.unpack(Decoder(wire))


def test_authsys_credential_is_cached() -> None:
    a = AuthSys(1000, 1000, [4, 24], machinename="client")
    b = AuthSys(1000, 1000, (4, 24), machinename="client")
    c = AuthSys(1001, 1000, [4, 24], machinename="client")
    assert a.cred is b.cred
    assert a.cred != c.cred
    assert a.verf == NULL_AUTH


# -- replies ------------------------------------------------------------------------------


def test_accepted_success_vector() -> None:
    body = encode_accepted_reply(0x12345678, NULL_AUTH, accept_stat.SUCCESS, h("0000002a"))
    assert body == h("12345678 00000001 00000000 00000000 00000000 00000000 0000002a")
    assert decode_reply(body) == RpcReply(0x12345678, NULL_AUTH, h("0000002a"))


def test_prog_mismatch_vector_and_exception() -> None:
    body = encode_accepted_reply(9, NULL_AUTH, accept_stat.PROG_MISMATCH, mismatch=(2, 3))
    assert body == h("00000009 00000001 00000000 00000000 00000000 00000002 00000002 00000003")
    with pytest.raises(ProgMismatch, match=r"RPC PROG_MISMATCH: server supports versions 2\.\.3"):
        decode_reply(body)
    try:
        decode_reply(body)
    except ProgMismatch as exc:
        assert (exc.low, exc.high) == (2, 3)
        assert exc.errno == errno.EPROTONOSUPPORT


@pytest.mark.parametrize(
    ("stat", "exc_type", "message"),
    [
        (accept_stat.PROG_UNAVAIL, ProgUnavail, "RPC PROG_UNAVAIL"),
        (accept_stat.PROC_UNAVAIL, ProcUnavail, "RPC PROC_UNAVAIL"),
        (accept_stat.GARBAGE_ARGS, GarbageArgs, "RPC GARBAGE_ARGS"),
        (accept_stat.SYSTEM_ERR, SystemErr, "RPC SYSTEM_ERR"),
    ],
)
def test_accept_errors(stat: accept_stat, exc_type: type[RpcError], message: str) -> None:
    body = encode_accepted_reply(5, NULL_AUTH, stat)
    assert body == h("00000005 00000001 00000000 00000000 00000000") + stat.to_bytes(4, "big")
    with pytest.raises(exc_type, match=message) as info:
        decode_reply(body)
    assert isinstance(info.value, RpcError)


def test_unknown_accept_stat_is_rpc_error() -> None:
    body = h("00000005 00000001 00000000 00000000 00000000 00000063")
    with pytest.raises(RpcError, match="unknown accept_stat 99"):
        decode_reply(body)


def test_rpc_mismatch_vector_and_exception() -> None:
    body = encode_rejected_reply(3, reject_stat.RPC_MISMATCH, mismatch=(2, 2))
    assert body == h("00000003 00000001 00000001 00000000 00000002 00000002")
    with pytest.raises(RpcMismatch, match=r"RPC RPC_MISMATCH: server supports RPC versions 2\.\.2"):
        decode_reply(body)


@pytest.mark.parametrize("stat", list(auth_stat))
def test_auth_error_every_auth_stat(stat: auth_stat) -> None:
    body = encode_rejected_reply(4, reject_stat.AUTH_ERROR, auth=stat)
    assert body == h("00000004 00000001 00000001 00000001") + stat.to_bytes(4, "big")
    with pytest.raises(AuthError, match=f"RPC AUTH_ERROR: {stat.name} ") as info:
        decode_reply(body)
    assert info.value.stat == stat
    assert info.value.errno == errno.EACCES


def test_auth_error_gss_values() -> None:
    assert int(auth_stat.RPCSEC_GSS_CREDPROBLEM) == 13
    assert int(auth_stat.RPCSEC_GSS_CTXPROBLEM) == 14
    body = h("00000004 00000001 00000001 00000001 0000000e")
    with pytest.raises(AuthError, match="RPCSEC_GSS_CTXPROBLEM"):
        decode_reply(body)


def test_unknown_auth_stat_kept() -> None:
    body = h("00000004 00000001 00000001 00000001 00000064")
    with pytest.raises(AuthError, match="auth_stat_100") as info:
        decode_reply(body)
    assert int(info.value.stat) == 100


@pytest.mark.parametrize(
    ("hex_body", "match"),
    [
        ("00000004", "needs 4 bytes"),
        ("00000004 00000000", "expected REPLY"),
        ("00000004 00000001 00000002", "unknown reply_stat 2"),
        ("00000004 00000001 00000001 00000002", "unknown reject_stat 2"),
        ("00000004 00000001 00000000 00000000 00000008 00", "opaque_auth.body"),
        ("00000004 00000001 00000000 00000000 00000000 00000002 00000002", "mismatch_info.high"),
    ],
)
def test_malformed_replies(hex_body: str, match: str) -> None:
    with pytest.raises(XdrError, match=match):
        decode_reply(h(hex_body))


def test_encode_reply_argument_checks() -> None:
    with pytest.raises(ValueError):
        encode_accepted_reply(1, NULL_AUTH, accept_stat.PROG_MISMATCH)
    with pytest.raises(ValueError):
        encode_accepted_reply(1, NULL_AUTH, accept_stat.SUCCESS, mismatch=(1, 2))
    with pytest.raises(ValueError):
        encode_accepted_reply(1, NULL_AUTH, accept_stat.SYSTEM_ERR, b"xxxx")
    with pytest.raises(ValueError):
        encode_rejected_reply(1, reject_stat.RPC_MISMATCH)
    with pytest.raises(ValueError):
        encode_rejected_reply(1, reject_stat.AUTH_ERROR, mismatch=(2, 2))
    with pytest.raises(ValueError):
        encode_rejected_reply(1, reject_stat.AUTH_ERROR)


def test_peek_xid_and_type() -> None:
    assert peek_xid_and_type(CALL_AUTH_NONE) == (0x12345678, msg_type.CALL)
    reply = encode_accepted_reply(0xFFFFFFFF, NULL_AUTH, accept_stat.SUCCESS)
    assert peek_xid_and_type(reply) == (0xFFFFFFFF, msg_type.REPLY)
    with pytest.raises(XdrError, match="needs 8 bytes"):
        peek_xid_and_type(b"\x00" * 7)
    with pytest.raises(XdrError, match="unknown msg_type 2"):
        peek_xid_and_type(h("00000001 00000002"))


# -- client <-> server round trip through record marking (no sockets) --------------------


def test_call_round_trip_server_client() -> None:
    auth = AuthSys(0, 0, machinename="client")
    args = bytes(range(256)) * 40
    client_to_server = b"".join(
        frame_record(encode_call(77, NFS_PROGRAM, 4, 1, auth.cred, auth.verf, args), 1000)
    )

    server_reader = RecordReader()
    calls: list[bytes | memoryview] = []
    for i in range(0, len(client_to_server), 333):
        calls.extend(server_reader.feed(client_to_server[i : i + 333]))
    assert len(calls) == 1
    call = decode_call(calls[0])
    assert (call.xid, call.prog, call.vers, call.proc, call.cred) == (
        77,
        NFS_PROGRAM,
        4,
        1,
        auth.cred,
    )
    assert call.args == args

    reply = encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, call.args[::-1])
    server_to_client = b"".join(frame_record(reply))
    client_reader = RecordReader()
    (record,) = client_reader.feed(server_to_client)
    assert peek_xid_and_type(record) == (77, msg_type.REPLY)
    assert decode_reply(record).results == args[::-1]

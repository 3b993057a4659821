"""RPCSEC_GSS (session.gss): XDR, sequence windows, sealing, and a client against the
sans-I/O acceptor over an in-memory link.

The XDR and window tests need nothing.  The rest use a real Kerberos mechanism: the
``krb5_realm`` fixture (a KDC on loopback; alice's ticket cache, the nfs/localhost
keytab) and python-gssapi contexts created in this process.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from contrib.krb5 import FusenfsRealm, realm_for_tests
from session.errors import XdrError
from session.gss import (
    MAXSEQ,
    CcacheSource,
    GssAccepted,
    GssAcceptor,
    GssContextError,
    GssCredential,
    GssCredentialsUnavailable,
    GssIntegrityError,
    GssSealedCall,
    ReplayWindow,
    SecFlavor,
    SequenceWindow,
    acceptor_credentials,
    decode_init_arg,
    encode_init_arg,
    gss_major_text,
    parse_sec,
    rpc_gss_cred_vers_1_t,
    rpc_gss_init_res,
    rpc_gss_proc_t,
    rpc_gss_service_t,
)
from session.rpc import (
    NULL_AUTH,
    AuthError,
    AuthSys,
    PlainCall,
    RpcCall,
    accept_stat,
    auth_flavor,
    auth_stat,
    decode_call,
    encode_accepted_reply,
    encode_call_header,
    opaque_auth,
)
from session.transport import AUTH_REFRESHES, RpcConnection, serve_connection
from session.xdr.codec import Decoder, Gathered

PROG = 100003
VERS = 4
NONE = rpc_gss_service_t.RPC_GSS_SVC_NONE
INTEG = rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY
PRIV = rpc_gss_service_t.RPC_GSS_SVC_PRIVACY
SERVICES = [NONE, INTEG, PRIV]


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# ------------------------------------------------------------------------------------
# XDR, RFC 2203 section 5
# ------------------------------------------------------------------------------------

CRED_VECTORS = [
    (
        rpc_gss_cred_vers_1_t(rpc_gss_proc_t.RPCSEC_GSS_DATA, 1, NONE, h("0102030405")),
        "00000001 00000000 00000001 00000001 00000005 0102030405000000",
    ),
    (
        rpc_gss_cred_vers_1_t(rpc_gss_proc_t.RPCSEC_GSS_INIT, 0, NONE, b""),
        "00000001 00000001 00000000 00000001 00000000",
    ),
    (
        rpc_gss_cred_vers_1_t(rpc_gss_proc_t.RPCSEC_GSS_DESTROY, 0x7FFFFFFF, PRIV, h("aabbccdd")),
        "00000001 00000003 7fffffff 00000003 00000004 aabbccdd",
    ),
]


@pytest.mark.parametrize(("cred", "wire"), CRED_VECTORS)
def test_rpc_gss_cred_t_vectors(cred: rpc_gss_cred_vers_1_t, wire: str) -> None:
    auth = cred.to_opaque()
    assert auth.flavor == auth_flavor.RPCSEC_GSS
    assert auth.body == h(wire)
    assert rpc_gss_cred_vers_1_t.from_opaque(auth) == cred


@pytest.mark.parametrize(
    ("auth", "words"),
    [
        (opaque_auth(auth_flavor.AUTH_SYS, h("00000001")), "not RPCSEC_GSS"),
        (opaque_auth(auth_flavor.RPCSEC_GSS, h("00000002 00000000")), "version 2"),
        (opaque_auth(auth_flavor.RPCSEC_GSS, h("00000001 00000000 00000001")), "needs 4"),
        (
            opaque_auth(
                auth_flavor.RPCSEC_GSS, h("00000001 00000000 00000001 00000001 00000000 00")
            ),
            "trailing",
        ),
    ],
)
def test_rpc_gss_cred_t_refuses(auth: opaque_auth, words: str) -> None:
    with pytest.raises(XdrError, match=words):
        rpc_gss_cred_vers_1_t.from_opaque(auth)


def test_rpc_gss_cred_t_keeps_unknown_proc_and_service() -> None:
    cred = rpc_gss_cred_vers_1_t.from_opaque(
        opaque_auth(auth_flavor.RPCSEC_GSS, h("00000001 00000009 00000005 00000007 00000000"))
    )
    assert int(cred.gss_proc) == 9 and int(cred.service) == 7 and cred.seq_num == 5


def test_rpc_gss_init_res_vector() -> None:
    wire = h("00000002 abcd0000 00000000 00000001 00000080 00000003 010203 00")
    res = rpc_gss_init_res.decode(wire)
    assert res == rpc_gss_init_res(h("abcd"), 0, 1, 128, h("010203"))
    from session.xdr.codec import Encoder

    enc = Encoder()
    res.pack(enc)
    assert enc.getvalue() == wire


@pytest.mark.parametrize(
    ("wire", "words"),
    [
        ("00000002 abcd0000 00000000", "rpc_gss_init_res.gss_minor"),
        ("00000191" + "00" * 404, "exceeds the maximum 400"),
        ("00000000 00000000 00000000 00000001 00000000 00000000", "trailing"),
    ],
)
def test_rpc_gss_init_res_refuses(wire: str, words: str) -> None:
    with pytest.raises(XdrError, match=words):
        rpc_gss_init_res.decode(h(wire))


def test_init_arg_round_trip() -> None:
    assert encode_init_arg(h("0102030405")) == h("00000005 0102030405000000")
    assert decode_init_arg(h("00000005 0102030405000000")) == h("0102030405")
    with pytest.raises(XdrError):
        decode_init_arg(h("00000009 0102"))


def test_gss_major_text() -> None:
    assert gss_major_text(0) == "GSS_S_COMPLETE"
    assert gss_major_text(1) == "GSS_S_CONTINUE_NEEDED"
    assert gss_major_text(7 << 16) == "GSS_S_NO_CRED"
    assert gss_major_text(13 << 16) == "GSS_S_FAILURE"
    assert gss_major_text((12 << 16) | 1) == "GSS_S_CONTEXT_EXPIRED|GSS_S_CONTINUE_NEEDED"


# ------------------------------------------------------------------------------------
# Sequence windows, RFC 2203 section 5.3.3.1
# ------------------------------------------------------------------------------------


def test_sequence_window_issues_in_order_and_waits_for_the_oldest() -> None:
    w = SequenceWindow(3)
    assert [w.issue(), w.issue(), w.issue()] == [1, 2, 3]
    assert not w.has_room()  # 4 - 1 == 3: seq 1 could fall below the server's window
    w.retire(2)
    assert not w.has_room()  # the oldest (1) still holds it
    w.retire(1)
    assert w.has_room() and w.oldest == 3
    assert w.issue() == 4 and w.issue() == 5
    assert not w.has_room()
    with pytest.raises(RuntimeError, match="window full"):
        w.issue()
    w.retire(3)
    w.retire(3)  # idempotent
    assert w.outstanding == 2 and w.issue() == 6


def test_sequence_window_stops_below_maxseq() -> None:
    w = SequenceWindow(10, first=MAXSEQ - 2)
    assert w.issue() == MAXSEQ - 2 and w.issue() == MAXSEQ - 1
    assert w.exhausted and not w.has_room()
    with pytest.raises(RuntimeError):
        w.issue()


@pytest.mark.parametrize(("size", "first"), [(0, 1), (5, -1), (5, MAXSEQ + 1)])
def test_sequence_window_refuses_bad_arguments(size: int, first: int) -> None:
    with pytest.raises(ValueError):
        SequenceWindow(size, first)


def test_replay_window() -> None:
    w = ReplayWindow(4)
    assert w.check(5)
    assert not w.check(5)  # duplicate
    assert w.check(3) and not w.check(3)  # late but inside the window, once
    assert w.check(2)  # 5 - 2 = 3 < 4
    assert not w.check(1)  # below the window
    assert w.check(9) and w.highest == 9
    assert not w.check(5)  # now below: 9 - 5 = 4
    assert w.check(6) and w.check(8) and not w.check(8)
    assert w.check(1000) and not w.check(999 - 3)
    with pytest.raises(ValueError):
        ReplayWindow(0)


# ------------------------------------------------------------------------------------
# Flavours and the plain credentials' side of the Credential protocol
# ------------------------------------------------------------------------------------


def test_parse_sec() -> None:
    assert parse_sec("krb5p:krb5i:krb5:sys") == [
        SecFlavor.KRB5P,
        SecFlavor.KRB5I,
        SecFlavor.KRB5,
        SecFlavor.SYS,
    ]
    assert SecFlavor.KRB5I.service == INTEG and SecFlavor.SYS.service is None
    assert SecFlavor.KRB5P.pseudoflavor == 390005
    with pytest.raises(ValueError, match="unknown flavour 'lkey'"):
        parse_sec("krb5:lkey")
    with pytest.raises(ValueError, match="given twice"):
        parse_sec("krb5:krb5")


def test_sec_flavor_from_secinfo() -> None:
    oid = h("2a864886f712010202")
    assert SecFlavor.from_secinfo(1, None, None) is SecFlavor.SYS
    assert SecFlavor.from_secinfo(6, oid, 2) is SecFlavor.KRB5I
    assert SecFlavor.from_secinfo(6, h("0609") + oid, 3) is SecFlavor.KRB5P
    assert SecFlavor.from_secinfo(6, h("2b0601050502"), 1) is None  # SPNEGO: not used
    assert SecFlavor.from_secinfo(390003, None, None) is None


def test_auth_sys_seals_the_old_header() -> None:
    cred = AuthSys(1000, 1000, [10])
    sealed = cred.seal(0x1234, PROG, VERS, 1, b"args")
    assert isinstance(sealed, PlainCall)
    assert sealed.header == encode_call_header(0x1234, PROG, VERS, 1, cred.cred, NULL_AUTH)
    assert list(sealed.body) == [b"args"]
    assert cred.seal(1, PROG, VERS, 0, b"").body == ()
    assert sealed.unwrap(NULL_AUTH, b"res") == b"res"
    assert not cred.rejected(sealed, AuthError(auth_stat.RPCSEC_GSS_CREDPROBLEM))


# ------------------------------------------------------------------------------------
# A client and the acceptor over an in-memory link (real krb5 contexts)
# ------------------------------------------------------------------------------------


@dataclass
class Server:
    """An echo program (results: the arguments reversed) behind ``GssAcceptor``."""

    acceptor: GssAcceptor
    calls: list[RpcCall] = field(default_factory=list)
    accepted: list[GssAccepted] = field(default_factory=list)
    tamper: Callable[[bytes], bytes] | None = None
    hold: trio.Event | None = None
    refuse_gss: bool = False
    in_progress: int = 0
    most_in_progress: int = 0

    async def handle(self, call: RpcCall) -> bytes | None:
        self.calls.append(call)
        if self.refuse_gss:
            from session.rpc import encode_rejected_reply, reject_stat

            return encode_rejected_reply(
                call.xid, reject_stat.AUTH_ERROR, auth=auth_stat.AUTH_BADCRED
            )
        outcome = self.acceptor.accept(call)
        if not isinstance(outcome, GssAccepted):
            return outcome
        self.accepted.append(outcome)
        self.in_progress += 1
        self.most_in_progress = max(self.most_in_progress, self.in_progress)
        try:
            if self.hold is not None:
                await self.hold.wait()
        finally:
            self.in_progress -= 1
        reply = self.acceptor.reply(outcome, bytes(outcome.args)[::-1])
        return self.tamper(reply) if self.tamper is not None else reply


@pytest.fixture(scope="session")
def krb5_realm(request: pytest.FixtureRequest) -> FusenfsRealm:
    """The throw-away realm (contrib.krb5.shared_realm), one per test session."""
    return realm_for_tests(request.config)


@pytest.fixture
def acceptor(krb5_realm: FusenfsRealm) -> GssAcceptor:
    assert krb5_realm.nfs_keytab is not None
    return GssAcceptor(acceptor_credentials(krb5_realm.nfs_keytab.name, "nfs@localhost"))


def alice(realm: FusenfsRealm, service: rpc_gss_service_t = NONE, **kw: object) -> GssCredential:
    return GssCredential(
        "nfs@localhost",
        service,
        source=CcacheSource(realm.ccaches["alice"]),
        label="alice",
        uid=1000,
        **kw,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def linked(server: Server) -> AsyncIterator[RpcConnection]:
    """A client connection to ``server`` over a memory stream pair."""
    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server_end, server.handle)
        conn = RpcConnection(client_end, peer="memory")
        await nursery.start(conn.run)
        try:
            yield conn
        finally:
            await conn.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
async def test_each_service_round_trip(
    krb5_realm: FusenfsRealm, acceptor: GssAcceptor, service: rpc_gss_service_t
) -> None:
    server = Server(acceptor)
    cred = alice(krb5_realm, service)
    with trio.fail_after(20):
        async with linked(server) as conn:
            for payload in (b"abcdefgh", b"x" * 5, b""):
                assert bytes(await conn.call(PROG, VERS, 1, payload, cred)) == payload[::-1]
            # Arguments in pieces (a WRITE's data kept apart): signed or sealed whole.
            pieces = Gathered([b"head", memoryview(os.urandom(70000)), b"tail"])
            back = await conn.call(PROG, VERS, 1, pieces, cred)
            assert bytes(back) == pieces.joined()[::-1]
    init = [c for c in server.calls if c.proc == 0]
    assert len(init) == 1  # Kerberos needs one round trip (RFC 2203 section 5.2)
    assert [a.seq_num for a in server.accepted] == [1, 2, 3, 4]
    assert all(a.service == service for a in server.accepted)
    assert server.accepted[0].principal == f"alice@{krb5_realm.realm}"
    assert cred.principal == f"alice@{krb5_realm.realm}"
    stats = cred.statistics()
    assert (stats.contexts, stats.sealed, stats.failures) == (1, 4, 0)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
async def test_call_on_the_wire(
    krb5_realm: FusenfsRealm, acceptor: GssAcceptor, service: rpc_gss_service_t
) -> None:
    """The header's credential and verifier (RFC 2203 section 5.3.1) and the body's
    framing per service (5.3.2), decoded independently of the client code."""
    server = Server(acceptor)
    cred = alice(krb5_realm, service)
    args = b"ARGUMENT-BYTES-" * 3  # 45 bytes: padding needed
    with trio.fail_after(20):
        async with linked(server) as conn:
            await conn.call(PROG, VERS, 1, b"warm", cred)
            await cred.ready(conn, PROG, VERS)
            sealed = cred.seal(0xABCD, PROG, VERS, 7, args)
            sealed.release()
    assert isinstance(sealed, GssSealedCall)
    record = sealed.header + b"".join(bytes(p) for p in sealed.body)
    call = decode_call(record)
    assert (call.xid, call.prog, call.vers, call.proc) == (0xABCD, PROG, VERS, 7)
    gcred = rpc_gss_cred_vers_1_t.from_opaque(call.cred)
    assert gcred.gss_proc == rpc_gss_proc_t.RPCSEC_GSS_DATA
    assert gcred.seq_num == sealed.seq_num == 2 and gcred.service == service
    assert gcred.handle == acceptor.handles[0]
    assert call.verf.flavor == auth_flavor.RPCSEC_GSS
    assert len(call.verf.body) == 28  # a krb5 MIC token (RFC 4121)
    body = call.args
    if service == NONE:
        assert body == args
    elif service == INTEG:
        (n,) = struct.unpack_from(">I", body)
        assert n == 4 + len(args)
        assert body[4:8] == struct.pack(">I", 2) and body[8 : 8 + len(args)] == args
        checksum_at = 4 + ((n + 3) & ~3)
        (m,) = struct.unpack_from(">I", body, checksum_at)
        assert m == 28 and len(body) == checksum_at + 4 + 28
    else:
        (n,) = struct.unpack_from(">I", body)
        assert len(body) == 4 + ((n + 3) & ~3)
        assert b"ARGUMENT" not in body
    # The acceptor verifies the header MIC and unwraps exactly the arguments.
    outcome = acceptor.accept(call)
    assert isinstance(outcome, GssAccepted) and bytes(outcome.args) == args


async def test_every_transmission_gets_a_new_seq_num(
    krb5_realm: FusenfsRealm, acceptor: GssAcceptor
) -> None:
    """A re-send after a lost connection is sealed anew (RFC 2203 section 5.3.3.1); the
    context outlives the connection."""
    hold = trio.Event()
    server = Server(acceptor, hold=hold)
    cred = alice(krb5_realm, INTEG)
    with trio.fail_after(20):
        async with linked(server) as first, trio.open_nursery() as nursery:

            async def doomed() -> None:
                with pytest.raises(Exception, match="closed"):
                    await first.call(PROG, VERS, 1, b"same request", cred)

            nursery.start_soon(doomed)
            while not server.accepted:
                await trio.sleep(0.01)
            await first.aclose()
        hold.set()
        async with linked(server) as second:
            assert bytes(await second.call(PROG, VERS, 1, b"same request", cred)) == (
                b"tseuqer emas"
            )
    assert [a.seq_num for a in server.accepted] == [1, 2]
    assert [bytes(a.args) for a in server.accepted] == [b"same request"] * 2
    assert cred.statistics().contexts == 1
    assert cred.context is not None and cred.context.window.outstanding == 0


async def test_rejected_context_is_created_again_and_the_call_resent(
    krb5_realm: FusenfsRealm, acceptor: GssAcceptor
) -> None:
    server = Server(acceptor)
    cred = alice(krb5_realm, PRIV)
    with trio.fail_after(20):
        async with linked(server) as conn:
            await conn.call(PROG, VERS, 1, b"one", cred)
            old = acceptor.handles
            acceptor.forget()  # as after a server restart: RPCSEC_GSS_CREDPROBLEM
            assert bytes(await conn.call(PROG, VERS, 1, b"two", cred)) == b"owt"
            acceptor.expire(acceptor.handles[0])
            assert bytes(await conn.call(PROG, VERS, 1, b"three", cred)) == b"eerht"
    stats = cred.statistics()
    assert (stats.contexts, stats.renewals_rejected) == (3, 2)
    assert acceptor.handles != old
    assert [bytes(a.args) for a in server.accepted] == [b"one", b"two", b"three"]


async def test_a_context_rejected_every_time_fails_after_the_refreshes(
    krb5_realm: FusenfsRealm, acceptor: GssAcceptor
) -> None:
    server = Server(acceptor)
    cred = alice(krb5_realm, NONE)

    class Forgetful(GssAcceptor):
        def accept(self, call: RpcCall) -> bytes | GssAccepted | None:
            out = super().accept(call)
            if isinstance(out, GssAccepted):
                self.forget()
                from session.rpc import encode_rejected_reply, reject_stat

                return encode_rejected_reply(
                    call.xid, reject_stat.AUTH_ERROR, auth=auth_stat.RPCSEC_GSS_CTXPROBLEM
                )
            return out

    server.acceptor = Forgetful(acceptor.creds)
    with trio.fail_after(20):
        async with linked(server) as conn:
            with pytest.raises(AuthError, match="RPCSEC_GSS_CTXPROBLEM") as info:
                await conn.call(PROG, VERS, 1, b"never", cred)
    assert info.value.errno == errno.EACCES
    assert cred.statistics().contexts == AUTH_REFRESHES + 1


async def test_context_past_its_lifetime_is_replaced(
    krb5_realm: FusenfsRealm, acceptor: GssAcceptor
) -> None:
    """GSS_S_CONTEXT_EXPIRED locally: the next call creates a context first."""
    now = [1000.0]
    server = Server(acceptor)
    cred = alice(krb5_realm, INTEG, clock=lambda: now[0])
    with trio.fail_after(20):
        async with linked(server) as conn:
            await conn.call(PROG, VERS, 1, b"a", cred)
            first = cred.context
            assert first is not None and first.expires_at > now[0] + 3600
            now[0] = first.renew_at + 0.1
            await conn.call(PROG, VERS, 1, b"b", cred)
    assert cred.context is not first
    stats = cred.statistics()
    assert (stats.contexts, stats.renewals_expired, stats.renewals_rejected) == (2, 1, 0)
    assert len(acceptor.handles) == 2


def flip_in_results(offset_from_end: int) -> Callable[[bytes], bytes]:
    def tamper(reply: bytes) -> bytes:
        data = bytearray(reply)
        data[len(data) - offset_from_end] ^= 0x01
        return bytes(data)

    return tamper


@pytest.mark.parametrize(
    ("service", "offset", "words"),
    [
        (INTEG, 40, "rpc_gss_integ_data checksum does not match"),  # in the data
        (INTEG, 4, "rpc_gss_integ_data checksum does not match"),  # in the checksum
        (PRIV, 20, "rpc_gss_priv_data does not unwrap"),
    ],
    ids=["integ-data", "integ-checksum", "priv"],
)
async def test_tampered_reply_is_an_integrity_error(
    krb5_realm: FusenfsRealm,
    acceptor: GssAcceptor,
    service: rpc_gss_service_t,
    offset: int,
    words: str,
) -> None:
    server = Server(acceptor)
    cred = alice(krb5_realm, service)
    payload = bytes(range(64))
    with trio.fail_after(20):
        async with linked(server) as conn:
            await conn.call(PROG, VERS, 1, payload, cred)
            server.tamper = flip_in_results(offset)
            with pytest.raises(GssIntegrityError, match=words) as info:
                await conn.call(PROG, VERS, 1, payload, cred)
            assert info.value.errno == errno.EIO
            assert "reply to xid=0x" in str(info.value)
            server.tamper = None  # the connection and the context are still good
            assert bytes(await conn.call(PROG, VERS, 1, payload, cred)) == payload[::-1]


async def test_reply_verifier_is_checked(krb5_realm: FusenfsRealm, acceptor: GssAcceptor) -> None:
    """Under service none only the verifier protects the reply (RFC 2203 5.3.3.2)."""
    server = Server(acceptor)
    cred = alice(krb5_realm, NONE)

    def wrong_seq(reply: bytes) -> bytes:
        accepted = server.accepted[-1]
        other = dataclasses.replace(accepted, seq_num=accepted.seq_num + 1)
        return acceptor.reply(other, bytes(accepted.args)[::-1])

    def null_verf(reply: bytes) -> bytes:
        accepted = server.accepted[-1]
        return encode_accepted_reply(accepted.xid, NULL_AUTH, accept_stat.SUCCESS, b"forged")

    with trio.fail_after(20):
        async with linked(server) as conn:
            server.tamper = wrong_seq
            with pytest.raises(GssIntegrityError, match="verifier does not match"):
                await conn.call(PROG, VERS, 1, b"data", cred)
            server.tamper = null_verf
            with pytest.raises(GssIntegrityError, match="flavor AUTH_NONE, not RPCSEC_GSS"):
                await conn.call(PROG, VERS, 1, b"data", cred)


async def test_sequence_window_limits_calls_in_flight(krb5_realm: FusenfsRealm) -> None:
    assert krb5_realm.nfs_keytab is not None
    acceptor = GssAcceptor(acceptor_credentials(krb5_realm.nfs_keytab.name), seq_window=3)
    server = Server(acceptor)
    cred = alice(krb5_realm, NONE)
    results: list[bytes] = []
    with trio.fail_after(20):
        async with linked(server) as conn:
            await conn.call(PROG, VERS, 1, b"0", cred)
            server.hold = hold = trio.Event()
            async with trio.open_nursery() as nursery:

                async def one(i: int) -> None:
                    results.append(bytes(await conn.call(PROG, VERS, 1, b"%d" % i, cred)))

                for i in range(1, 9):
                    nursery.start_soon(one, i)
                await trio.testing.wait_all_tasks_blocked()
                assert server.in_progress == 3  # the window: 3 numbers outstanding
                hold.set()
    assert sorted(results) == sorted(b"%d" % i for i in range(1, 9))
    assert server.most_in_progress == 3
    assert cred.statistics().window_waits >= 5
    assert len(set(a.seq_num for a in server.accepted)) == 9


async def test_user_without_credentials_gets_eacces_at_once(
    krb5_realm: FusenfsRealm, acceptor: GssAcceptor
) -> None:
    server = Server(acceptor)
    cred = GssCredential(
        "nfs@localhost", source=CcacheSource("FILE:/nonexistent/krb5cc_4242"), label="uid 4242"
    )
    with trio.fail_after(20):
        async with linked(server) as conn:
            for _ in range(3):
                with pytest.raises(GssCredentialsUnavailable, match="krb5cc_4242") as info:
                    await conn.call(PROG, VERS, 1, b"x", cred)
                assert info.value.errno == errno.EACCES
    assert server.calls == []  # nothing reached the server
    assert cred.statistics().failures == 1  # retry_delay: not asked again at once


async def test_unknown_server_principal(krb5_realm: FusenfsRealm, acceptor: GssAcceptor) -> None:
    server = Server(acceptor)
    cred = GssCredential("nfs@nowhere.invalid", source=CcacheSource(krb5_realm.ccaches["bob"]))
    with trio.fail_after(20):
        async with linked(server) as conn:
            with pytest.raises(GssContextError, match=r"nfs@nowhere\.invalid") as info:
                await conn.call(PROG, VERS, 1, b"x", cred)
    assert info.value.errno == errno.EACCES
    assert server.calls == []


async def test_server_without_rpcsec_gss(krb5_realm: FusenfsRealm, acceptor: GssAcceptor) -> None:
    server = Server(acceptor, refuse_gss=True)
    cred = alice(krb5_realm)
    with trio.fail_after(20):
        async with linked(server) as conn:
            with pytest.raises(GssContextError, match=r"refused context creation.*AUTH_BADCRED"):
                await conn.call(PROG, VERS, 1, b"x", cred)


async def test_server_proof_is_checked(krb5_realm: FusenfsRealm, acceptor: GssAcceptor) -> None:
    """The COMPLETE reply's verifier must be the MIC of seq_window (RFC 2203 5.2.3.1)."""

    class Liar(GssAcceptor):
        @staticmethod
        def _init_reply(xid: int, verf: opaque_auth, res: rpc_gss_init_res) -> bytes:
            bad = dataclasses.replace(res, seq_window=res.seq_window + 1)
            return GssAcceptor._init_reply(xid, verf, bad)

    server = Server(Liar(acceptor.creds))
    cred = alice(krb5_realm)
    with trio.fail_after(20):
        async with linked(server) as conn:
            with pytest.raises(GssContextError, match="did not prove the context"):
                await conn.call(PROG, VERS, 1, b"x", cred)


async def test_destroy(krb5_realm: FusenfsRealm, acceptor: GssAcceptor) -> None:
    server = Server(acceptor)
    cred = alice(krb5_realm, PRIV)
    with trio.fail_after(20):
        async with linked(server) as conn:
            await conn.call(PROG, VERS, 1, b"x", cred)
            assert len(acceptor.handles) == 1
            await cred.destroy(conn, PROG, VERS)
            assert acceptor.handles == [] and cred.context is None
            assert bytes(await conn.call(PROG, VERS, 1, b"yz", cred)) == b"zy"
    destroy = [
        c
        for c in server.calls
        if c.proc == 0
        and rpc_gss_cred_vers_1_t.from_opaque(c.cred).gss_proc == rpc_gss_proc_t.RPCSEC_GSS_DESTROY
    ]
    assert len(destroy) == 1 and destroy[0].args == b""
    assert cred.statistics().destroyed == 1


async def test_services_share_one_context(krb5_realm: FusenfsRealm, acceptor: GssAcceptor) -> None:
    server = Server(acceptor)
    priv = alice(krb5_realm, PRIV)
    integ = priv.with_service(INTEG)
    with trio.fail_after(20):
        async with linked(server) as conn:
            await conn.call(PROG, VERS, 1, b"p", priv)
            await conn.call(PROG, VERS, 1, b"i", integ)
    assert [a.service for a in server.accepted] == [PRIV, INTEG]
    assert len(acceptor.handles) == 1 and integ.uid == 1000


def test_acceptor_refuses_bad_calls(krb5_realm: FusenfsRealm, acceptor: GssAcceptor) -> None:
    """Unknown handle: CREDPROBLEM; not RPCSEC_GSS version 1: AUTH_BADCRED."""
    from session.rpc import decode_reply

    unknown = rpc_gss_cred_vers_1_t(rpc_gss_proc_t.RPCSEC_GSS_DATA, 1, NONE, b"nope")
    call = RpcCall(
        7, 2, PROG, VERS, 1, unknown.to_opaque(), opaque_auth(auth_flavor.RPCSEC_GSS, b"x"), b""
    )
    reply = acceptor.accept(call)
    assert isinstance(reply, bytes)
    with pytest.raises(AuthError, match="RPCSEC_GSS_CREDPROBLEM"):
        decode_reply(reply)
    version_2 = opaque_auth(auth_flavor.RPCSEC_GSS, b"\0\0\0\2")
    bad = RpcCall(8, 2, PROG, VERS, 1, version_2, NULL_AUTH, b"")
    reply = acceptor.accept(bad)
    assert isinstance(reply, bytes)
    with pytest.raises(AuthError, match="AUTH_BADCRED"):
        decode_reply(reply)
    assert Decoder(reply).uint32() == 8


def test_machine_source_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from session.gss import DEFAULT_MACHINE_KEYTAB, machine_principal, machine_source

    monkeypatch.delenv("KRB5_CLIENT_KTNAME", raising=False)
    source = machine_source()
    assert source.keytab == DEFAULT_MACHINE_KEYTAB == "FILE:/etc/krb5.keytab"
    assert source.principal == machine_principal() == f"host/{socket.getfqdn().lower()}"
    assert machine_principal("Client.Example.ORG") == "host/client.example.org"
    monkeypatch.setenv("KRB5_CLIENT_KTNAME", "FILE:/srv/nfs-client.keytab")
    assert machine_source(principal="nfs/client").keytab == "FILE:/srv/nfs-client.keytab"

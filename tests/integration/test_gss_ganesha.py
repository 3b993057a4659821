"""RPCSEC_GSS against NFS-Ganesha with a local KDC (session.gss, RFC 2203).

Everything goes through ``session.session.ServerSession`` with a GSS machine credential
(``host/localhost`` from its keytab): EXCHANGE_ID, CREATE_SESSION, SEQUENCE,
RECLAIM_COMPLETE, OPEN, WRITE, READ, COMMIT and CLOSE, under krb5, krb5i and krb5p.

``WireTap``, an in-test TCP proxy on loopback, keeps every RPC record each way (to look
for plaintext and for sequence numbers), can change a reply on its way to the client,
and can cut the connections.  The realm is ``contrib.krb5``'s shared one; the file data
is random, so its bytes on the wire are recognisable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from contrib.ganesha import GaneshaKrb5, GaneshaServer, unavailable_reason
from contrib.krb5 import FusenfsRealm, Keytab, realm_for_tests
from session.gss import (
    GssCredential,
    GssIntegrityError,
    KeytabSource,
    SecFlavor,
    rpc_gss_cred_vers_1_t,
    rpc_gss_proc_t,
    rpc_gss_service_t,
)
from session.rpc import (
    MAX_RECORD_DEFAULT,
    AuthSys,
    Credential,
    RecordReader,
    auth_flavor,
    decode_call,
    frame_record,
)
from session.session import ServerSession, SessionOptions
from session.status import NFS4Error
from session.xdr import nfs4
from session.xdr.const import (
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_DENY_NONE,
    createmode4,
    nfsstat4,
    open_claim_type4,
    opentype4,
    secinfo_style4,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs, encode_fattr4

pytestmark = pytest.mark.ganesha

KiB = 1024
MiB = 1024 * KiB
TARGET = "nfs@localhost"
FLAVOURS = {
    "krb5": rpc_gss_service_t.RPC_GSS_SVC_NONE,
    "krb5i": rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY,
    "krb5p": rpc_gss_service_t.RPC_GSS_SVC_PRIVACY,
}


# ====================================================================== fixtures
@pytest.fixture(scope="session")
def krb5_realm(request: pytest.FixtureRequest) -> FusenfsRealm:
    """The throw-away realm (contrib.krb5.shared_realm), one per test session."""
    return realm_for_tests(request.config)


def _start_ganesha(realm: FusenfsRealm, sectypes: tuple[str, ...]) -> GaneshaServer:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"NFS-Ganesha is required under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    assert realm.nfs_keytab is not None
    server = GaneshaServer(krb5=GaneshaKrb5.from_realm(realm, realm.nfs_keytab, sectypes=sectypes))
    try:
        server.start()
    except Exception as err:
        server.cleanup()
        pytest.fail(f"could not start NFS-Ganesha with Kerberos: {err}", pytrace=False)
    # The machine principal maps to no local user (no idmapping): anonymous on the
    # server, which may create files only in a world-writable directory.
    os.chmod(server.export_path, 0o777)
    server.wait_grace_over()
    return server


@pytest.fixture(scope="module")
def krb5_ganesha(krb5_realm: FusenfsRealm) -> Iterator[GaneshaServer]:
    """Ganesha whose export takes sys, krb5, krb5i and krb5p."""
    server = _start_ganesha(krb5_realm, ("sys", "krb5", "krb5i", "krb5p"))
    yield server
    server.cleanup()


def machine(
    realm: FusenfsRealm, service: rpc_gss_service_t, keytab: Keytab | None = None
) -> GssCredential:
    """A machine credential from a keytab (host/localhost unless given)."""
    kt = keytab or realm.host_keytab
    assert kt is not None
    return GssCredential(
        TARGET, service, source=KeytabSource(kt.name, kt.principal), label=kt.principal
    )


# ====================================================================== the tap
class WireTap:
    """A loopback TCP proxy to ``target`` that keeps, changes or cuts RPC records.

    Attributes:
        calls, replies: every record body client -> server and server -> client.
        tamper: applied to each reply record before it goes on (None: unchanged).
        keep: whether records are kept (off for bulk transfers).
    """

    def __init__(self, target: tuple[str, int], *, keep: bool = True) -> None:
        self.target = target
        self.keep = keep
        self.calls: list[bytes] = []
        self.replies: list[bytes] = []
        self.tamper: Callable[[bytes], bytes] | None = None
        self.port = 0
        self.cuts = 0
        self._cut_at_call = False
        self._scopes: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def cut(self) -> None:
        """Drop every open connection (new ones are accepted)."""
        self.cuts += 1
        for scope in list(self._scopes):
            scope.cancel()

    def cut_at_next_call(self) -> None:
        """Drop every open connection when the next call arrives, that call kept but
        not forwarded: the client is sure to have a request outstanding on the cut."""
        self._cut_at_call = True

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with trio.open_nursery() as nursery:
                    up = (client, server, self.calls, None, nursery.cancel_scope)
                    down = (server, client, self.replies, self._change, nursery.cancel_scope)
                    nursery.start_soon(self._pump, *up)
                    nursery.start_soon(self._pump, *down)
            finally:
                self._scopes.discard(scope)
        for stream in (client, server):
            await trio.aclose_forcefully(stream)

    def _change(self, record: bytes) -> bytes:
        return self.tamper(record) if self.tamper is not None else record

    async def _pump(
        self,
        src: trio.SocketStream,
        dst: trio.SocketStream,
        kept: list[bytes],
        change: Callable[[bytes], bytes] | None,
        scope: trio.CancelScope,
    ) -> None:
        reader = RecordReader(MAX_RECORD_DEFAULT)
        try:
            while data := await src.receive_some(1 << 20):
                for received in reader.feed(data):
                    record = bytes(received)
                    if change is not None:
                        record = change(record)
                    if self.keep:
                        kept.append(record)
                    if kept is self.calls and self._cut_at_call:
                        self._cut_at_call = False
                        self.cut()
                        return
                    for piece in frame_record(record):
                        await dst.send_all(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    def gss_data_seq_nums(self) -> list[int]:
        """The RPCSEC_GSS sequence numbers of every DATA call that went through."""
        seqs = []
        for record in self.calls:
            call = decode_call(record)
            if call.cred.flavor == auth_flavor.RPCSEC_GSS:
                cred = rpc_gss_cred_vers_1_t.from_opaque(call.cred)
                if cred.gss_proc == rpc_gss_proc_t.RPCSEC_GSS_DATA:
                    seqs.append(cred.seq_num)
        return seqs


@asynccontextmanager
async def tapped(server: GaneshaServer, *, keep: bool = True) -> AsyncIterator[WireTap]:
    tap = WireTap((server.address, server.port), keep=keep)
    async with trio.open_nursery() as nursery:
        await nursery.start(tap.run)
        try:
            yield tap
        finally:
            nursery.cancel_scope.cancel()


# ====================================================================== NFS helpers
@dataclass
class OpenFile:
    fh: bytes
    stateid: nfs4.stateid4


@asynccontextmanager
async def session_with(
    port: int, cred: Credential, *, options: SessionOptions | None = None
) -> AsyncIterator[ServerSession]:
    """A started ``ServerSession`` to 127.0.0.1:``port`` with ``cred`` as its machine
    credential, shut down at the end."""
    owner = f"fusenfs-gss-test/{os.urandom(6).hex()}".encode()
    async with trio.open_nursery() as nursery:
        s = ServerSession("127.0.0.1", port, owner, options or SessionOptions(timeo=10), cred)
        await s.start(nursery)
        try:
            yield s
        finally:
            with trio.move_on_after(10):
                await s.shutdown()
            nursery.cancel_scope.cancel()


async def create(s: ServerSession, name: bytes) -> OpenFile:
    """OPEN (create, UNCHECKED4, mode 0666) in the export's root; RFC 8881 18.16."""
    res = await s.compound(
        [
            nfs4.PUTROOTFH4args(),
            nfs4.LOOKUP4args(objname=b"export"),
            nfs4.OPEN4args(
                seqid=0,
                share_access=OPEN4_SHARE_ACCESS_BOTH | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
                share_deny=OPEN4_SHARE_DENY_NONE,
                owner=nfs4.open_owner4(clientid=s.clientid, owner=b"gss-test"),
                openhow=nfs4.openflag4(
                    opentype=opentype4.OPEN4_CREATE,
                    how=nfs4.createhow4(
                        mode=createmode4.UNCHECKED4,
                        createattrs=encode_fattr4(NFSAttrs(mode=0o666)),
                    ),
                ),
                claim=nfs4.open_claim4(claim=open_claim_type4.CLAIM_NULL, file=name),
            ),
            nfs4.GETFH4args(),
        ]
    )
    opened, getfh = res.resarray[2], res.resarray[3]
    assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None
    assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
    return OpenFile(getfh.resok.object, opened.resok.stateid)


async def write(s: ServerSession, f: OpenFile, offset: int, data: bytes) -> None:
    res = await s.compound(
        [
            nfs4.PUTFH4args(object=f.fh),
            nfs4.WRITE4args(
                stateid=f.stateid, offset=offset, stable=stable_how4.UNSTABLE4, data=data
            ),
        ]
    )
    written = res.resarray[1]
    assert isinstance(written, nfs4.WRITE4res) and written.resok is not None
    assert written.resok.count == len(data)


async def read(s: ServerSession, f: OpenFile, offset: int, count: int) -> bytes:
    res = await s.compound(
        [
            nfs4.PUTFH4args(object=f.fh),
            nfs4.READ4args(stateid=f.stateid, offset=offset, count=count),
        ]
    )
    got = res.resarray[1]
    assert isinstance(got, nfs4.READ4res) and got.resok is not None
    return bytes(got.resok.data)


async def read_all(s: ServerSession, f: OpenFile, size: int, chunk: int = 512 * KiB) -> bytes:
    """``size`` bytes from offset 0, one READ of ``chunk`` bytes after another."""
    return b"".join([await read(s, f, off, chunk) for off in range(0, size, chunk)])


async def commit_and_close(s: ServerSession, f: OpenFile) -> None:
    await s.compound([nfs4.PUTFH4args(object=f.fh), nfs4.COMMIT4args(offset=0, count=0)])
    await s.compound(
        [nfs4.PUTFH4args(object=f.fh), nfs4.CLOSE4args(seqid=0, open_stateid=f.stateid)]
    )


def unique(name: str) -> bytes:
    return f"{name}-{os.urandom(4).hex()}".encode()


# ====================================================================== tests
@pytest.mark.parametrize("flavour", list(FLAVOURS))
async def test_open_write_read_under_each_flavour(
    krb5_realm: FusenfsRealm, krb5_ganesha: GaneshaServer, flavour: str
) -> None:
    """EXCHANGE_ID, CREATE_SESSION, SEQUENCE, OPEN/WRITE/READ/CLOSE with a GSS machine
    credential; under krb5p no plaintext of the file crosses the wire either way."""
    service = FLAVOURS[flavour]
    cred = machine(krb5_realm, service)
    data = os.urandom(3 * 256 * KiB + 123)
    name = unique(flavour)
    with trio.fail_after(60):
        async with tapped(krb5_ganesha) as tap, session_with(tap.port, cred) as s:
            f = await create(s, name)
            for offset in range(0, len(data), 256 * KiB):
                await write(s, f, offset, data[offset : offset + 256 * KiB])
            back = b"".join(
                [await read(s, f, off, 256 * KiB) for off in range(0, len(data), 256 * KiB)]
            )
            await commit_and_close(s, f)
    assert back == data
    assert (krb5_ganesha.export_path / name.decode()).read_bytes() == data
    seqs = tap.gss_data_seq_nums()
    assert len(seqs) == len(set(seqs)) >= 10  # every call RPCSEC_GSS DATA, numbered once
    assert all(decode_call(c).cred.flavor == auth_flavor.RPCSEC_GSS for c in tap.calls)
    services = {rpc_gss_cred_vers_1_t.from_opaque(decode_call(c).cred).service for c in tap.calls}
    assert service in services
    probes = [data[i : i + 32] for i in range(1000, len(data), 100_000)]
    wire = b"".join(tap.calls) + b"".join(tap.replies)
    seen = sum(p in wire for p in probes)
    if flavour == "krb5p":
        assert seen == 0, "plaintext of the file on the wire under krb5p"
    else:
        assert seen == len(probes)  # the probe finds plaintext where there is some
    stats = cred.statistics()
    assert stats.contexts == 1 and stats.failures == 0


async def test_auth_sys_gets_wrongsec_on_a_kerberos_export(krb5_realm: FusenfsRealm) -> None:
    """SecType krb5* only: AUTH_SYS may set up the client ID but not enter the export
    (NFS4ERR_WRONGSEC, RFC 8881 section 2.6.3.1); SECINFO names the GSS flavours."""
    server = _start_ganesha(krb5_realm, ("krb5", "krb5i", "krb5p"))
    try:
        with trio.fail_after(60):
            async with session_with(server.port, AuthSys(0, 0)) as s:
                with pytest.raises(NFS4Error) as info:
                    await s.compound([nfs4.PUTROOTFH4args(), nfs4.LOOKUP4args(objname=b"export")])
                assert info.value.status == nfsstat4.NFS4ERR_WRONGSEC
                res = await s.compound([nfs4.PUTROOTFH4args(), nfs4.SECINFO4args(name=b"export")])
            secinfo = res.resarray[1]
            assert isinstance(secinfo, nfs4.SECINFO4res) and secinfo.resok is not None
            offered = [
                SecFlavor.from_secinfo(
                    e.flavor,
                    e.flavor_info.oid if e.flavor_info else None,
                    e.flavor_info.service if e.flavor_info else None,
                )
                for e in secinfo.resok
            ]
            assert set(offered) == {SecFlavor.KRB5, SecFlavor.KRB5I, SecFlavor.KRB5P}
            async with session_with(
                server.port, machine(krb5_realm, rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY)
            ) as s:
                await s.compound(
                    [
                        nfs4.PUTROOTFH4args(),
                        nfs4.LOOKUP4args(objname=b"export"),
                        nfs4.SECINFO_NO_NAME4args(style=secinfo_style4.SECINFO_STYLE4_CURRENT_FH),
                    ]
                )
    finally:
        server.cleanup()


def flip_first_big_reply(tap: WireTap, at_least: int) -> Callable[[bytes], bytes]:
    """A tamper hook: flip one byte in the middle of the first reply of ``at_least``
    bytes (a READ reply's data), then pass everything unchanged."""
    done = [False]

    def tamper(record: bytes) -> bytes:
        if done[0] or len(record) < at_least:
            return record
        done[0] = True
        changed = bytearray(record)
        changed[len(changed) // 2] ^= 0x20
        return bytes(changed)

    return tamper


@pytest.mark.parametrize(
    ("flavour", "words"),
    [
        ("krb5i", "rpc_gss_integ_data checksum does not match"),
        ("krb5p", "rpc_gss_priv_data does not unwrap"),
    ],
)
async def test_tampered_reply_is_an_integrity_error(
    krb5_realm: FusenfsRealm, krb5_ganesha: GaneshaServer, flavour: str, words: str
) -> None:
    """One byte of a READ reply flipped on the way: the READ fails with an integrity
    error naming what failed, no data comes back, and the session carries on."""
    cred = machine(krb5_realm, FLAVOURS[flavour])
    data = os.urandom(256 * KiB)
    with trio.fail_after(60):
        async with tapped(krb5_ganesha) as tap, session_with(tap.port, cred) as s:
            f = await create(s, unique(f"tamper-{flavour}"))
            await write(s, f, 0, data)
            tap.tamper = flip_first_big_reply(tap, 128 * KiB)
            got: bytes | None = None
            with pytest.raises(GssIntegrityError, match=words) as info:
                got = await read(s, f, 0, len(data))
            assert got is None
            assert "reply to xid=0x" in str(info.value)
            assert await read(s, f, 0, len(data)) == data  # the next READ is intact
            await commit_and_close(s, f)


async def test_context_rejected_by_the_server_mid_stream(
    krb5_realm: FusenfsRealm, krb5_ganesha: GaneshaServer
) -> None:
    """The server no longer knows the context (as after its restart): it answers
    RPCSEC_GSS_CREDPROBLEM; the client creates a new context and re-sends, and every
    write of a concurrent stream completes."""
    cred = machine(krb5_realm, rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY)
    chunk = 64 * KiB
    data = os.urandom(48 * chunk)
    with trio.fail_after(90):
        async with session_with(krb5_ganesha.port, cred) as s:
            f = await create(s, unique("rejected"))
            async with trio.open_nursery() as nursery:
                for i in range(48):
                    nursery.start_soon(write, s, f, i * chunk, data[i * chunk : (i + 1) * chunk])
                    if i == 12:
                        await trio.sleep(0.05)
                        context = cred.context
                        assert context is not None
                        context.handle = b"\xde\xad" + context.handle  # unknown to Ganesha
            assert await read_all(s, f, len(data)) == data
            await commit_and_close(s, f)
    stats = cred.statistics()
    assert stats.renewals_rejected >= 1 and stats.contexts >= 2


async def test_context_expires_during_a_long_copy(
    krb5_realm: FusenfsRealm, krb5_ganesha: GaneshaServer
) -> None:
    """host/expiring's tickets live ``short_life`` seconds, so its contexts expire while
    the copy runs; each is replaced and the copy completes byte-identically."""
    cred = machine(krb5_realm, rpc_gss_service_t.RPC_GSS_SVC_PRIVACY, krb5_realm.short_keytab)
    chunk = 128 * KiB
    pieces: list[bytes] = []
    until = time.monotonic() + krb5_realm.short_life * 2.5
    with trio.fail_after(krb5_realm.short_life * 2.5 + 60):
        async with session_with(krb5_ganesha.port, cred) as s:
            f = await create(s, unique("expiring"))
            while time.monotonic() < until:
                piece = os.urandom(chunk)
                await write(s, f, len(pieces) * chunk, piece)
                pieces.append(piece)
                await trio.sleep(0.05)
            data = b"".join(pieces)
            back = await read_all(s, f, len(data))
            await commit_and_close(s, f)
    assert back == data
    stats = cred.statistics()
    assert stats.contexts >= 2, stats
    assert stats.renewals_expired + stats.renewals_rejected >= 1, stats


async def test_resend_after_a_cut_gets_a_new_seq_num(
    krb5_realm: FusenfsRealm, krb5_ganesha: GaneshaServer
) -> None:
    """Connections cut under concurrent writes: requests are re-sent on their slots
    (same NFS slot and sequence id) with new RPCSEC_GSS sequence numbers (RFC 2203
    section 5.3.3.1), and the data is intact."""
    cred = machine(krb5_realm, rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY)
    chunk = 64 * KiB
    data = os.urandom(64 * chunk)
    with trio.fail_after(120):
        async with tapped(krb5_ganesha) as tap, session_with(tap.port, cred) as s:
            f = await create(s, unique("cut"))
            async with trio.open_nursery() as nursery:
                for i in range(64):
                    nursery.start_soon(write, s, f, i * chunk, data[i * chunk : (i + 1) * chunk])
                    if i in (16, 40):
                        tap.cut_at_next_call()
                        await trio.sleep(0.02)
            assert await read_all(s, f, len(data)) == data
            await commit_and_close(s, f)
    seqs = tap.gss_data_seq_nums()
    assert len(seqs) == len(set(seqs)), "an RPCSEC_GSS sequence number was sent twice"
    assert s.stats.reconnects >= 1
    writes = [c for c in tap.calls if len(c) > chunk and decode_call(c).cred.flavor == 6]
    assert tap.cuts == 2
    assert len(writes) > 64  # some WRITE went twice, each time numbered anew
    assert cred.statistics().contexts == 1  # the context outlived the connections


# ====================================================================== throughput
async def _copy_through(port: int, cred: Credential, size: int, depth: int) -> tuple[float, float]:
    """Write then read ``size`` bytes in 1 MiB requests, ``depth`` in flight; MB/s each."""
    chunk = 1 * MiB
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    async with session_with(port, cred) as s:
        f = await create(s, unique("throughput"))
        limiter = trio.CapacityLimiter(depth)
        back = bytearray(size)

        async def put(offset: int) -> None:
            async with limiter:
                await write(s, f, offset, data[offset : offset + chunk])

        async def get(offset: int) -> None:
            async with limiter:
                back[offset : offset + chunk] = await read(s, f, offset, chunk)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for offset in range(0, size, chunk):
                nursery.start_soon(put, offset)
        await s.compound([nfs4.PUTFH4args(object=f.fh), nfs4.COMMIT4args(offset=0, count=0)])
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for offset in range(0, size, chunk):
                nursery.start_soon(get, offset)
        read_s = time.perf_counter() - started
        await commit_and_close(s, f)
    assert hashlib.sha256(back).hexdigest() == digest
    return size / write_s / 1e6, size / read_s / 1e6


async def test_throughput_per_flavour(
    krb5_realm: FusenfsRealm, krb5_ganesha: GaneshaServer
) -> None:
    """64 MiB written and read through ServerSession under sys, krb5, krb5i and krb5p
    in one run, 8 requests of 1 MiB in flight; prints MB/s (no timing assertion)."""
    size = 64 * MiB
    rows = []
    creds: list[tuple[str, Credential]] = [("sys", AuthSys(0, 0))]
    creds += [(name, machine(krb5_realm, service)) for name, service in FLAVOURS.items()]
    with trio.fail_after(600):
        for name, cred in creds:
            rows.append((name, *await _copy_through(krb5_ganesha.port, cred, size, depth=8)))
    lines = [f"RPCSEC_GSS throughput, {size // MiB} MiB via ServerSession (Ganesha, loopback):"]
    lines += [f"  {name:6s} write {w:7.1f} MB/s   read {r:7.1f} MB/s" for name, w, r in rows]
    print("\n" + "\n".join(lines))
    with (
        contextlib.suppress(OSError),
        open(os.environ.get("GSS_BENCH_OUT", os.devnull), "a") as out,
    ):
        out.write("\n".join(lines) + "\n")

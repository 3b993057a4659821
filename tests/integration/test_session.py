"""The session engine against a real NFS-Ganesha (RFC 8881 sections 2.10, 8.3, 18.35-18.51).

Client ID and session set-up, the waiting slot table under load, lease renewal, and what
happens to requests in flight when the connection goes: re-sent on their slots, answered
from the server's reply cache, executed exactly once.  Connections are cut three ways:
``ServerSession.drop_transport()``, ``contrib.tcpproxy`` in a subprocess (SIGUSR1), and
``ReplyEater``, an in-test proxy that lets a chosen request reach the server and then
swallows its reply and resets the connection, which makes "executed but the reply was
lost" deterministic.
"""

from __future__ import annotations

import contextlib
import os
import struct
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from contrib.ganesha import GaneshaServer
from contrib.tcpproxy import ProxyProcess
from session.client import NFSClient, dir_type
from session.rpc import (
    RecordReader,
    decode_reply,
    frame_record,
    msg_type,
    peek_xid_and_type,
)
from session.session import SessionOptions, host_co_ownerid
from session.slots import SlotOutcome
from session.status import NFS4Error
from session.xdr import nfs4
from session.xdr.codec import Decoder, encode
from session.xdr.const import (
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    EXCHGID4_FLAG_SUPP_MOVED_MIGR,
    EXCHGID4_FLAG_SUPP_MOVED_REFER,
    OPEN4_SHARE_ACCESS_BOTH,
    nfsstat4,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs, encode_fattr4

from .recording import RecordingSession

pytestmark = pytest.mark.ganesha

REPO = Path(__file__).resolve().parents[2]
KiB = 1024


# ====================================================================== helpers


@asynccontextmanager
async def mounted(
    server: GaneshaServer, *, port: int | None = None, options: SessionOptions | None = None
) -> AsyncIterator[tuple[RecordingSession, NFSClient]]:
    """A started session (its own client ID) and a mounted ``NFSClient`` on the export."""
    tag = uuid.uuid4().hex
    async with trio.open_nursery() as nursery:
        session = RecordingSession(
            server.address,
            server.port if port is None else port,
            host_co_ownerid("test/" + tag),
            options=options or SessionOptions(),
        )
        with trio.fail_after(30):
            await session.start(nursery)
            client = NFSClient(session, server.pseudo, owner_prefix=f"test-{tag}".encode())
            await client.mount()
        try:
            yield session, client
        finally:
            with trio.CancelScope(shield=True):
                await session.shutdown()
            nursery.cancel_scope.cancel()


async def make_dir(client: NFSClient, name: str) -> bytes:
    fh, _ = await client.create(client.root_fh, name.encode(), dir_type(), NFSAttrs(mode=0o755))
    return fh


class ReplyEater:
    """A loopback TCP proxy that can lose one reply on purpose.

    Everything is forwarded both ways.  When ``match`` is set, the first reply whose
    decoded COMPOUND4res satisfies it is not forwarded: it is kept in ``eaten`` and both
    connections are reset, so the server has executed the request and the client never
    sees the answer.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.match: Callable[[nfs4.COMPOUND4res], bool] | None = None
        self.eaten: list[nfs4.COMPOUND4res] = []
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        server = await trio.open_tcp_stream(*self.target)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._up, client, server, nursery.cancel_scope)
                nursery.start_soon(self._down, server, client, nursery.cancel_scope)
        finally:
            for stream in (client, server):
                with contextlib.suppress(OSError):
                    linger = struct.pack("ii", 1, 0)  # close() sends RST
                    stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, linger)
                await trio.aclose_forcefully(stream)

    @staticmethod
    async def _up(src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await src.receive_some(1 << 20):
                await dst.send_all(data)
        scope.cancel()

    async def _down(
        self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        records = RecordReader()
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await src.receive_some(1 << 20):
                for record in records.feed(data):
                    if self.match is not None and peek_xid_and_type(record)[1] == msg_type.REPLY:
                        results = decode_reply(record).results
                        res = nfs4.COMPOUND4res.unpack(Decoder(results))
                        if self.match(res):
                            self.match = None
                            self.eaten.append(res)
                            scope.cancel()
                            return
                    await dst.send_all(b"".join(frame_record(record)))
        scope.cancel()


@asynccontextmanager
async def reply_eater(server: GaneshaServer) -> AsyncIterator[ReplyEater]:
    proxy = ReplyEater((server.address, server.port))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()


def has(op_type: type) -> Callable[[nfs4.COMPOUND4res], bool]:
    return lambda res: any(isinstance(r, op_type) for r in res.resarray)


@pytest.fixture(scope="module")
def short_lease_ganesha(ganesha: GaneshaServer) -> Iterator[GaneshaServer]:
    """A second Ganesha with a 2 s lease (needs what ``ganesha`` needs, so depends on it)."""
    server = GaneshaServer(lease_lifetime=2, grace_period=0)
    try:
        server.start()
        server.wait_grace_over()
        yield server
    finally:
        server.cleanup()


# ============================================================== set-up and teardown
async def test_exchange_id_session_and_reclaim_complete(ganesha: GaneshaServer) -> None:
    with trio.fail_after(60):
        async with mounted(ganesha) as (session, _):
            (eid_args, _), (cs_args, _) = session.exchanges[:2]
            eid = eid_args.argarray[0]
            assert isinstance(eid, nfs4.EXCHANGE_ID4args)
            moved = EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_SUPP_MOVED_MIGR
            assert eid.eia_flags & moved == moved
            assert session.exchange_id is not None
            assert session.clientid == session.exchange_id.eir_clientid != 0
            cs = cs_args.argarray[0]
            assert isinstance(cs, nfs4.CREATE_SESSION4args)
            assert cs.csa_clientid == session.clientid
            assert cs.csa_sequence == session.exchange_id.eir_sequenceid
            assert session.create_session is not None
            assert len(session.sessionid) == 16
            assert session.sessionid == session.create_session.csr_sessionid
            assert session.create_session.csr_flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN
            granted = session.create_session.csr_fore_chan_attrs.ca_maxrequests
            assert len(session.slots.slots) == granted >= 1
            assert session.lease_time == ganesha.lease_lifetime
            # RECLAIM_COMPLETE went out once at start and succeeded.
            sent = session.sent_with(nfs4.RECLAIM_COMPLETE4args)
            assert len(sent) == 1 and sent[0][1].status == nfsstat4.NFS4_OK
            # A second one is NFS4ERR_COMPLETE_ALREADY, which reclaim_complete() tolerates.
            with pytest.raises(NFS4Error) as info:
                await session.compound([nfs4.RECLAIM_COMPLETE4args(rca_one_fs=False)])
            assert info.value.status == nfsstat4.NFS4ERR_COMPLETE_ALREADY
            await session.reclaim_complete()
            sessionid, clientid = session.sessionid, session.clientid
        # shutdown: DESTROY_SESSION then DESTROY_CLIENTID, both accepted.
        tail = [(a.argarray[0], r.status) for a, r in session.exchanges[-2:]]
        assert tail == [
            (nfs4.DESTROY_SESSION4args(dsa_sessionid=sessionid), nfsstat4.NFS4_OK),
            (nfs4.DESTROY_CLIENTID4args(dca_clientid=clientid), nfsstat4.NFS4_OK),
        ]


async def test_asked_slot_count_is_honoured(ganesha: GaneshaServer) -> None:
    with trio.fail_after(60):
        async with mounted(ganesha, options=SessionOptions(max_slots=2)) as (session, _):
            cs = session.exchanges[1][0].argarray[0]
            assert isinstance(cs, nfs4.CREATE_SESSION4args)
            assert cs.csa_fore_chan_attrs.ca_maxrequests == 2
            assert session.create_session is not None
            assert session.create_session.csr_fore_chan_attrs.ca_maxrequests == 2
            assert len(session.slots.slots) == 2


@pytest.mark.parametrize("max_slots", [64, 2])
async def test_many_concurrent_compounds_wait_for_slots(
    ganesha: GaneshaServer, max_slots: int
) -> None:
    with trio.fail_after(120):
        async with mounted(ganesha, options=SessionOptions(max_slots=max_slots)) as (
            session,
            client,
        ):
            fileids: list[int | None] = []

            async def one() -> None:
                fileids.append((await client.getattr(client.root_fh)).fileid)

            before = len(session.exchanges)
            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(one)
            assert fileids == [client.root_attrs.fileid] * 200
            slots_used = set()
            for args, res in session.exchanges[before:]:
                seq = args.argarray[0]
                assert isinstance(seq, nfs4.SEQUENCE4args)
                assert res.status == nfsstat4.NFS4_OK
                slots_used.add(seq.sa_slotid)
            assert max(slots_used) < len(session.slots.slots)
            assert len(slots_used) > 1  # the calls really overlapped
            if max_slots == 2:
                assert slots_used == {0, 1}
                assert session.slots.statistics().waits > 0
            assert session.slots.in_use_count() == 0


async def test_idle_session_renews_its_lease(short_lease_ganesha: GaneshaServer) -> None:
    """Idle for three 2 s leases, the session keeps its client ID and open state.

    A control session whose renewer is put to sleep (its ``lease_time`` raised after
    start) idles alongside and loses its state: the wait is long enough to matter.
    """
    server = short_lease_ganesha
    with trio.fail_after(60):
        async with mounted(server) as (session, client), mounted(server) as (lazy, control):
            assert session.lease_time == 2
            lazy.lease_time = 3600  # its renewer now waits half an hour
            files = []
            for c in (client, control):
                name = f"lease-{uuid.uuid4().hex[:8]}".encode()
                opened = await c.open(c.root_fh, name, OPEN4_SHARE_ACCESS_BOTH, create=True)
                await c.write(opened.fh, opened.state, 0, b"kept", stable_how4.FILE_SYNC4)
                files.append((name, opened))
            renewals = session.stats.renewals
            await trio.sleep(3 * session.lease_time)  # idle for three leases
            assert session.stats.renewals - renewals >= 3
            assert lazy.stats.renewals == 0
            # The lease never lapsed: the open state is still good, no recovery ran.
            (name, opened), (_, lost) = files
            data, _ = await client.read(opened.fh, opened.state, 0, 100)
            assert data == b"kept"
            assert session.stats.session_rebuilds == 0
            await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
            await client.remove(client.root_fh, name)
            # The control's lease expired: a new client ID, and its open is gone.
            with pytest.raises(NFS4Error) as info:
                await control.read(lost.fh, lost.state, 0, 100)
            assert info.value.status in {
                nfsstat4.NFS4ERR_EXPIRED,
                nfsstat4.NFS4ERR_BAD_STATEID,
                nfsstat4.NFS4ERR_STALE_STATEID,
            }
            assert lazy.stats.session_rebuilds >= 1


# ============================================================== lost connections
#: Bytes per WRITE or READ in the cut tests.
BLOCK = 512 * KiB


async def _write_and_read_through_cuts(
    session: RecordingSession, client: NFSClient, dir_fh: bytes, cut: Callable[[], None]
) -> bytes:
    """50 concurrent WRITEs, ``cut()`` while they are in flight; then 50 READs, cut again.

    Returns the file's content as read back; asserts that both cuts hit requests in
    flight.  The blocks are large (``BLOCK``) so that the server still has most of
    the 25 MiB to answer when the cut, which takes a millisecond or so, lands.
    """
    opened = await client.open(dir_fh, b"data", OPEN4_SHARE_ACCESS_BOTH, create=True)
    blocks = [os.urandom(BLOCK) for _ in range(50)]
    written: dict[int, int] = {}
    read: dict[int, bytes] = {}

    async def write(i: int) -> None:
        res = await client.write(opened.fh, opened.state.stateid, i * BLOCK, blocks[i])
        written[i] = res.count

    async def read_block(i: int) -> None:
        data, _ = await client.read(opened.fh, opened.state.stateid, i * BLOCK, BLOCK)
        read[i] = bytes(data)

    for job in (write, read_block):
        reconnects = session.stats.reconnects
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(job, i)
            # Cut once at least a few requests are in flight on the current connection.
            while True:
                await trio.sleep(0)
                transport = session._transport
                if transport is not None and transport.statistics().in_flight >= 5:
                    break
            assert len(written if job is write else read) < 50
            cut()
        assert session.stats.reconnects > reconnects
    assert written == {i: BLOCK for i in range(50)}
    await client.commit(opened.fh)
    assert b"".join(read[i] for i in range(50)) == b"".join(blocks)
    await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
    return b"".join(blocks)


async def test_drop_transport_during_50_writes_and_reads(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with trio.fail_after(120):
        async with mounted(ganesha) as (session, client):
            dir_fh = await make_dir(client, fresh_dir)
            async with trio.open_nursery() as nursery:

                def cut() -> None:
                    nursery.start_soon(session.drop_transport)

                expected = await _write_and_read_through_cuts(session, client, dir_fh, cut)
            assert (ganesha.export_path / fresh_dir / "data").read_bytes() == expected
            assert session.stats.reconnects >= 2


async def test_tcpproxy_cut_during_50_writes_and_reads(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with ProxyProcess(f"{ganesha.address}:{ganesha.port}") as proxy, trio.fail_after(120):
        async with mounted(ganesha, port=proxy.port) as (session, client):
            dir_fh = await make_dir(client, fresh_dir)
            # The cut returns once the proxy has reset the connections (it blocks the
            # event loop that long): the requests in flight cannot finish before it.
            expected = await _write_and_read_through_cuts(session, client, dir_fh, proxy.cut)
            # Checked on the server's side, not through the client.
            assert (ganesha.export_path / fresh_dir / "data").read_bytes() == expected
            assert session.stats.reconnects >= 2
            assert session.stats.replays >= 2


# ======================================================== exactly once after a cut
async def test_remove_whose_reply_was_lost_is_executed_once(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with trio.fail_after(60):
        async with (
            reply_eater(ganesha) as proxy,
            mounted(ganesha, port=proxy.port) as (
                session,
                client,
            ),
        ):
            dir_fh = await make_dir(client, fresh_dir)
            victim = ganesha.export_path / fresh_dir / "victim"
            await client.create(dir_fh, b"victim", dir_type(), NFSAttrs(mode=0o755))
            assert victim.is_dir()
            proxy.match = has(nfs4.REMOVE4res)
            await client.remove(dir_fh, b"victim")  # not NFS4ERR_NOENT: the cached reply
            (eaten,) = proxy.eaten
            assert eaten.status == nfsstat4.NFS4_OK  # the server did remove it the first time
            assert not victim.exists()
            assert session.stats.reconnects == 1
            (args, res), *_ = session.sent_with(nfs4.REMOVE4args)
            seq = args.argarray[0]
            assert isinstance(seq, nfs4.SEQUENCE4args) and seq.sa_cachethis
            assert res == eaten  # the replayed reply is the one that was lost


async def test_create_whose_reply_was_lost_is_executed_once(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with trio.fail_after(60):
        async with (
            reply_eater(ganesha) as proxy,
            mounted(ganesha, port=proxy.port) as (
                session,
                client,
            ),
        ):
            dir_fh = await make_dir(client, fresh_dir)
            proxy.match = has(nfs4.CREATE4res)
            fh, attrs = await client.create(dir_fh, b"sub", dir_type(), NFSAttrs(mode=0o700))
            assert len(proxy.eaten) == 1  # not NFS4ERR_EXIST on the re-send
            assert (ganesha.export_path / fresh_dir / "sub").is_dir()
            assert attrs.mode == 0o700
            assert (await client.lookup(dir_fh, b"sub"))[0] == fh
            assert session.stats.reconnects == 1


async def test_rename_whose_reply_was_lost_is_executed_once(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with trio.fail_after(60):
        async with (
            reply_eater(ganesha) as proxy,
            mounted(ganesha, port=proxy.port) as (
                _,
                client,
            ),
        ):
            dir_fh = await make_dir(client, fresh_dir)
            await client.create(dir_fh, b"a", dir_type(), NFSAttrs(mode=0o755))
            proxy.match = has(nfs4.RENAME4res)
            await client.rename(dir_fh, b"a", dir_fh, b"b")  # a re-execution says NOENT
            assert len(proxy.eaten) == 1
            assert sorted(os.listdir(ganesha.export_path / fresh_dir)) == ["b"]


async def test_idempotent_compound_whose_reply_was_lost_is_sent_again(
    ganesha: GaneshaServer,
) -> None:
    """sa_cachethis is false for GETATTR; Ganesha answers the re-send on the same slot
    with SEQUENCE OK and NFS4ERR_RETRY_UNCACHED_REP, and the client sends it anew."""
    with trio.fail_after(60):
        async with (
            reply_eater(ganesha) as proxy,
            mounted(ganesha, port=proxy.port) as (
                session,
                client,
            ),
        ):
            proxy.match = has(nfs4.GETATTR4res)
            attrs = await client.getattr(client.root_fh)
            assert attrs.fileid == client.root_attrs.fileid
            assert len(proxy.eaten) == 1
            tries = session.sent_with(nfs4.GETATTR4args)[-2:]
            (first_args, first_res), (second_args, second_res) = tries
            assert first_res.status == nfsstat4.NFS4ERR_RETRY_UNCACHED_REP
            assert second_res.status == nfsstat4.NFS4_OK
            a, b = first_args.argarray[0], second_args.argarray[0]
            assert isinstance(a, nfs4.SEQUENCE4args) and isinstance(b, nfs4.SEQUENCE4args)
            assert not a.sa_cachethis
            assert b.sa_sequenceid != a.sa_sequenceid or b.sa_slotid != a.sa_slotid


async def test_manual_replay_of_a_slot_returns_the_cached_reply(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    """The reply cache itself, with the session's slot table driven by hand: the same
    CREATE on the same slot and seqid twice is one directory and two equal replies."""
    with trio.fail_after(60):
        async with mounted(ganesha) as (session, client):
            dir_fh = await make_dir(client, fresh_dir)
            # sa_cachethis was set for the CREATE compound, not for the LOOKUPs of mount.
            (create_args, _), *_ = session.sent_with(nfs4.CREATE4args)
            seq = create_args.argarray[0]
            assert isinstance(seq, nfs4.SEQUENCE4args) and seq.sa_cachethis
            (lookup_args, _), *_ = session.sent_with(nfs4.LOOKUP4args)
            seq = lookup_args.argarray[0]
            assert isinstance(seq, nfs4.SEQUENCE4args) and not seq.sa_cachethis

            _, slot = await session._acquire_slot()
            try:

                def create_once(seqid: int) -> bytes:
                    return encode(
                        nfs4.COMPOUND4args(
                            tag=b"",
                            minorversion=1,
                            argarray=[
                                nfs4.SEQUENCE4args(
                                    sa_sessionid=session.sessionid,
                                    sa_sequenceid=seqid,
                                    sa_slotid=slot.slotid,
                                    sa_highest_slotid=session.slots.sa_highest_slotid(),
                                    sa_cachethis=True,
                                ),
                                nfs4.PUTFH4args(object=dir_fh),
                                nfs4.CREATE4args(
                                    objtype=dir_type(),
                                    objname=b"once",
                                    createattrs=encode_fattr4(NFSAttrs(mode=0o755)),
                                ),
                                nfs4.GETFH4args(),
                            ],
                        )
                    )

                async def send(body: bytes) -> nfs4.COMPOUND4res:
                    reply = await session._send(body, session.machine_cred)
                    return nfs4.COMPOUND4res.unpack(Decoder(reply))

                seqid = slot.next_seqid
                first = await send(create_once(seqid))
                again = await send(create_once(seqid))
                # The next seqid on the same slot is a new request: now the name exists.
                fresh = await send(create_once((seqid + 1) & 0xFFFFFFFF))
                slot.seqid = (seqid + 1) & 0xFFFFFFFF  # where the server has the slot now
            finally:
                session.slots.release(slot, SlotOutcome.NOT_SEQUENCED)
            assert first.status == nfsstat4.NFS4_OK
            assert again == first
            assert fresh.status == nfsstat4.NFS4ERR_EXIST
            assert (ganesha.export_path / fresh_dir / "once").is_dir()
            # The session goes on using that slot with the right seqid.
            for _ in range(2 * len(session.slots.slots)):
                await client.getattr(dir_fh)

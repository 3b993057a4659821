"""The trio transport: xid matching, failures, cancellation, backchannel (RFC 5531).

Most tests put a scripted peer on the far end of ``trio.testing.memory_stream_pair``;
a few use a real listener on 127.0.0.1 (and only there).
"""

from __future__ import annotations

import contextlib
import functools
import random
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from session.errors import ReplyOverdue, ReplyTooLarge, RpcError, TransportError
from session.rpc import (
    LAST_FRAGMENT,
    NULL_AUTH,
    AuthNone,
    AuthSys,
    ProgMismatch,
    ProgUnavail,
    RecordReader,
    RecordTooLarge,
    RpcCall,
    RpcMismatch,
    accept_stat,
    auth_flavor,
    decode_call,
    decode_reply,
    encode_accepted_reply,
    encode_call,
    frame_record,
    msg_type,
    peek_xid_and_type,
)
from session.transport import (
    NEGOTIATED_MAXIMUM,
    PRE_SESSION_MAX_RECORD,
    PRE_SESSION_MAXIMUM,
    KeptReply,
    RpcConnection,
    ServerConnection,
    Transport,
    serve_connection,
    session_max_record,
)
from session.xdr.codec import Gathered

TIMEOUT = 10  # seconds; every test is bounded
PROG, VERS = 100003, 4
CB_PROG = 0x40000000  # an NFSv4.1 callback program number
CRED = AuthSys(uid=1000, gid=1000, gids=[], machinename="test")


class ScriptedPeer:
    """The far end of a memory stream, reading and writing raw records."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = RecordReader()
        self.records: deque[bytes] = deque()

    async def receive(self) -> bytes:
        while not self.records:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("transport closed the stream")
            self.records.extend(bytes(r) for r in self.reader.feed(data))
        return self.records.popleft()

    async def receive_call(self) -> RpcCall:
        return decode_call(await self.receive())

    async def send(self, body: bytes) -> None:
        await self.stream.send_all(b"".join(frame_record(body)))

    async def reply(self, call: RpcCall, results: bytes) -> None:
        await self.send(encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, results))


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RpcConnection, ScriptedPeer]]:
    """A running client connection on a memory stream, and the scripted peer."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        conn = await nursery.start(RpcConnection(client_stream, peer="test-server:2049").run)
        yield conn, ScriptedPeer(server_stream)
        await conn.aclose()


def word(n: int) -> bytes:
    return struct.pack(">I", n)


@contextlib.asynccontextmanager
async def tcp_server(
    on_stream: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[tuple[trio.Nursery, int]]:
    """A listener on 127.0.0.1 (a free port) that serves each connection with
    ``on_stream``; yields the nursery it runs in (for the client's tasks too) and the
    port.  Everything in the nursery is cancelled at the end."""
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, on_stream, listeners)
        yield nursery, port
        nursery.cancel_scope.cancel()


async def test_many_concurrent_calls_answered_out_of_order(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    n = 100
    results: dict[int, bytes] = {}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def one(i: int) -> None:
                results[i] = bytes(await conn.call(PROG, VERS, 1, word(i), CRED))

            for i in range(n):
                nursery.start_soon(one, i)
            calls = [await peer.receive_call() for _ in range(n)]
            assert conn.statistics().in_flight == n
            assert len({c.xid for c in calls}) == n
            random.Random(5).shuffle(calls)
            for call in calls:
                assert call.cred == CRED.cred
                await peer.reply(call, call.args * 2)
    assert results == {i: word(i) * 2 for i in range(n)}
    stats = conn.statistics()
    assert (stats.calls_sent, stats.replies_received, stats.in_flight) == (n, n, 0)


async def test_xids_increment_from_random_start(pair: tuple[RpcConnection, ScriptedPeer]) -> None:
    conn, peer = pair
    with trio.fail_after(TIMEOUT):
        xids = []
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.call, PROG, VERS, 0, b"", AuthNone())
                call = await peer.receive_call()
                xids.append(call.xid)
                await peer.reply(call, b"")
    assert xids[1] == (xids[0] + 1) & 0xFFFFFFFF
    assert xids[2] == (xids[1] + 1) & 0xFFFFFFFF


async def test_reply_to_unknown_xid_is_dropped(pair: tuple[RpcConnection, ScriptedPeer]) -> None:
    conn, peer = pair
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            got: list[bytes] = []

            async def caller() -> None:
                got.append(bytes(await conn.call(PROG, VERS, 1, b"", CRED)))

            nursery.start_soon(caller)
            call = await peer.receive_call()
            bogus = encode_accepted_reply(call.xid ^ 0x5A5A, NULL_AUTH, accept_stat.SUCCESS)
            await peer.send(bogus + word(666))
            await peer.reply(call, word(42))
    assert got == [word(42)]
    assert conn.statistics().replies_dropped == 1
    assert not conn.closed


async def test_connection_drop_fails_all_in_flight(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    errors: list[TransportError] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def caller() -> None:
                try:
                    await conn.call(PROG, VERS, 1, b"", CRED)
                except TransportError as exc:
                    errors.append(exc)

            for _ in range(5):
                nursery.start_soon(caller)
            for _ in range(5):
                await peer.receive_call()
            await peer.stream.aclose()
        await conn.wait_closed()
    assert len(errors) == 5
    for exc in errors:
        assert str(exc) == "connection to test-server:2049 lost: closed by peer"
        assert exc.__suppress_context__
    assert conn.closed
    with trio.fail_after(TIMEOUT), pytest.raises(TransportError, match="lost: closed by peer"):
        await conn.call(PROG, VERS, 1, b"", CRED)
    assert conn.statistics().in_flight == 0


async def test_malformed_record_drops_connection(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.send, word(1) + word(7))  # msg_type 7
            with pytest.raises(TransportError, match=r"lost: malformed record.*msg_type 7"):
                await conn.call(PROG, VERS, 1, b"", CRED)
        await conn.wait_closed()


async def test_hostile_record_length_drops_connection(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def hostile() -> None:
                await peer.receive_call()
                await peer.stream.send_all(b"\xff\xff\xff\xf0")

            nursery.start_soon(hostile)
            with pytest.raises(TransportError, match="record of 2147483632 bytes"):
                await conn.call(PROG, VERS, 1, b"", CRED)
    assert conn.closed


async def test_cancelled_call_does_not_affect_others(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    got: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            cancel_scope = trio.CancelScope()

            async def doomed() -> None:
                with cancel_scope:
                    await conn.call(PROG, VERS, 1, word(1), CRED)
                    pytest.fail("the cancelled call returned")

            async def survivor() -> None:
                got.append(bytes(await conn.call(PROG, VERS, 1, word(2), CRED)))

            nursery.start_soon(doomed)
            first = await peer.receive_call()
            nursery.start_soon(survivor)
            second = await peer.receive_call()
            if first.args != word(1):
                first, second = second, first
            cancel_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert conn.statistics().in_flight == 1
            await peer.reply(first, b"late")  # dropped: its caller is gone
            await peer.reply(second, word(22))
    assert cancel_scope.cancelled_caught
    assert got == [word(22)]
    stats = conn.statistics()
    assert (stats.replies_dropped, stats.replies_received, stats.in_flight) == (1, 1, 0)
    assert not conn.closed


async def test_cancelled_call_can_leave_its_reply_to_be_waited_for_elsewhere(
    pair: tuple[RpcConnection, ScriptedPeer], autojump_clock: trio.testing.MockClock
) -> None:
    """``call(keep=)``: a caller cancelled with its call sent hands the wait over; the
    reply still comes to the same xid (no second transmission), and the taker gets
    the results, or ReplyOverdue at the call's own deadline."""
    conn, peer = pair
    kept: list[KeptReply] = []
    with trio.fail_after(TIMEOUT):
        with trio.move_on_after(1) as scope:
            await conn.call(PROG, VERS, 1, word(1), CRED, keep=kept.append)
        assert scope.cancelled_caught
        assert len(kept) == 1 and kept[0].transport is conn
        assert conn.statistics().in_flight == 1  # still expected
        first = await peer.receive_call()
        await peer.reply(first, word(11))
        assert bytes(await kept[0].wait()) == word(11)

        deadline = trio.current_time() + 5
        with trio.move_on_after(1) as scope:
            await conn.call(PROG, VERS, 1, word(2), CRED, deadline, keep=kept.append)
        assert scope.cancelled_caught
        await peer.receive_call()  # never answered
        with pytest.raises(ReplyOverdue):
            await kept[1].wait()
        assert trio.current_time() == pytest.approx(deadline)
    stats = conn.statistics()
    assert (stats.calls_sent, stats.replies_received, stats.in_flight) == (2, 1, 0)
    assert not conn.closed


class AnsweredCall:
    """A task function: one call on ``conn`` with a deadline 60 s away; keeps the reply."""

    def __init__(self, conn: RpcConnection, args: bytes) -> None:
        self.conn, self.args = conn, args
        self.result = b""

    async def __call__(self) -> None:
        deadline = trio.current_time() + 60
        self.result = bytes(await self.conn.call(PROG, VERS, 1, self.args, CRED, deadline))


async def test_call_unanswered_by_its_deadline_is_overdue_and_the_connection_stays(
    pair: tuple[RpcConnection, ScriptedPeer], autojump_clock: trio.testing.MockClock
) -> None:
    """A call given a deadline fails with ReplyOverdue at that time (the watchdog), not
    before; the connection stays up, a late reply is dropped, the next call works."""
    conn, peer = pair
    waited: list[float] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def caller() -> None:
                start = trio.current_time()
                with pytest.raises(ReplyOverdue, match="by its deadline"):
                    await conn.call(PROG, VERS, 1, word(1), CRED, deadline=start + 5)
                waited.append(trio.current_time() - start)

            nursery.start_soon(caller)
            call = await peer.receive_call()
            await trio.sleep(6)
            assert waited == [pytest.approx(5)]
            assert conn.statistics().in_flight == 0
            await peer.reply(call, b"late")  # nobody waits for it now
            answered = AnsweredCall(conn, word(7))
            nursery.start_soon(answered)
            await peer.reply(await peer.receive_call(), word(77))
    assert answered.result == word(77)
    stats = conn.statistics()
    assert (stats.replies_dropped, stats.replies_received) == (1, 1)
    assert not conn.closed


async def test_an_earlier_deadline_wakes_the_watchdog_earlier(
    pair: tuple[RpcConnection, ScriptedPeer], autojump_clock: trio.testing.MockClock
) -> None:
    """A call with a nearer deadline than every call before it fails at its own
    deadline, not at the earlier calls' later one."""
    conn, peer = pair
    failed: dict[str, float] = {}
    with trio.fail_after(TIMEOUT * 10):
        async with trio.open_nursery() as nursery:

            async def caller(name: str, after: float) -> None:
                start = trio.current_time()
                with pytest.raises(ReplyOverdue):
                    await conn.call(PROG, VERS, 1, b"", CRED, deadline=start + after)
                failed[name] = trio.current_time() - start

            nursery.start_soon(caller, "far", 50.0)
            await peer.receive_call()
            nursery.start_soon(caller, "near", 5.0)
            await peer.receive_call()
    assert failed == {"near": pytest.approx(5), "far": pytest.approx(50)}


async def test_deadlines_of_ended_calls_do_not_pile_up(
    pair: tuple[RpcConnection, ScriptedPeer], autojump_clock: trio.testing.MockClock
) -> None:
    """Calls answered (or cancelled) long before their deadline leave nothing behind:
    the watchdog's heap holds the calls still waiting, not every call made within a
    deadline's span."""
    conn, peer = pair
    with trio.fail_after(TIMEOUT):
        for n in range(200):
            async with trio.open_nursery() as nursery:
                task = AnsweredCall(conn, word(n))
                nursery.start_soon(task)
                call = await peer.receive_call()
                if n % 10 == 0:
                    nursery.cancel_scope.cancel()
                else:
                    await peer.reply(call, word(n))
            assert task.result in (b"", word(n))
    assert len(conn._deadlines) <= 1  # (the heap itself: nothing else shows its size)


async def test_prog_mismatch_surfaces_and_connection_survives(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def server() -> None:
                call = await peer.receive_call()
                await peer.send(
                    encode_accepted_reply(
                        call.xid, NULL_AUTH, accept_stat.PROG_MISMATCH, mismatch=(2, 3)
                    )
                )
                call = await peer.receive_call()
                await peer.reply(call, word(1))

            nursery.start_soon(server)
            with pytest.raises(ProgMismatch, match=r"server supports versions 2\.\.3") as info:
                await conn.call(PROG, 9, 0, b"", CRED)
            assert (info.value.low, info.value.high) == (2, 3)
            assert await conn.call(PROG, VERS, 0, b"", CRED) == word(1)


async def test_aclose_fails_in_flight_and_later_calls(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def closer() -> None:
                await peer.receive_call()
                await conn.aclose()

            nursery.start_soon(closer)
            with pytest.raises(TransportError, match="connection to test-server:2049 closed"):
                await conn.call(PROG, VERS, 1, b"", CRED)
        assert conn.closed
        await conn.wait_closed()
        with pytest.raises(TransportError, match="closed"):
            await conn.call(PROG, VERS, 1, b"", CRED)
        await conn.aclose()  # idempotent


# -- backchannel --------------------------------------------------------------------------


async def test_backchannel_call_dispatched_and_answered() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    seen: list[RpcCall] = []

    async def on_call(call: RpcCall) -> bytes:
        seen.append(call)
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, call.args)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            conn = RpcConnection(client_stream, peer="s", on_call=on_call)
            await nursery.start(conn.run)
            peer = ScriptedPeer(server_stream)
            cb = encode_call(0xC0FFEE, CB_PROG, 1, 1, NULL_AUTH, NULL_AUTH, word(99))
            await peer.send(cb)
            record = await peer.receive()
            assert peek_xid_and_type(record) == (0xC0FFEE, msg_type.REPLY)
            assert decode_reply(record).results == word(99)
            assert seen[0].prog == CB_PROG and seen[0].proc == 1
            assert conn.statistics().calls_received == 1
            await conn.aclose()


async def test_backchannel_answers_and_calls_interleave() -> None:
    """A backchannel call arrives while a forward call is waiting on the same stream."""
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def on_call(call: RpcCall) -> bytes:
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            conn = await nursery.start(RpcConnection(client_stream, on_call=on_call).run)
            peer = ScriptedPeer(server_stream)
            got: list[bytes] = []

            async def caller() -> None:
                got.append(await conn.call(PROG, VERS, 1, b"", CRED))

            nursery.start_soon(caller)
            forward = await peer.receive_call()
            await peer.send(encode_call(forward.xid, CB_PROG, 1, 0, NULL_AUTH, NULL_AUTH))
            cb_reply = await peer.receive()
            assert peek_xid_and_type(cb_reply) == (forward.xid, msg_type.REPLY)
            await peer.reply(forward, word(5))
            await trio.testing.wait_all_tasks_blocked()
            assert got == [word(5)]
            await conn.aclose()


async def test_backchannel_without_handler_is_prog_unavail(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    _, peer = pair
    with trio.fail_after(TIMEOUT):
        await peer.send(encode_call(17, CB_PROG, 1, 0, NULL_AUTH, NULL_AUTH))
        with pytest.raises(ProgUnavail):
            decode_reply(await peer.receive())


async def test_backchannel_handler_failure_is_system_err() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def on_call(call: RpcCall) -> bytes:
        raise ValueError("handler bug")

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            conn = await nursery.start(RpcConnection(client_stream, on_call=on_call).run)
            peer = ScriptedPeer(server_stream)
            await peer.send(encode_call(18, CB_PROG, 1, 1, NULL_AUTH, NULL_AUTH))
            with pytest.raises(RpcError, match="SYSTEM_ERR"):
                decode_reply(await peer.receive())
            assert not conn.closed
            await conn.aclose()


async def test_backchannel_bad_rpcvers_is_rpc_mismatch(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    _, peer = pair
    body = bytearray(encode_call(19, CB_PROG, 1, 0, NULL_AUTH, NULL_AUTH))
    body[8:12] = word(3)
    with trio.fail_after(TIMEOUT):
        await peer.send(bytes(body))
        with pytest.raises(RpcMismatch, match=r"2\.\.2"):
            decode_reply(await peer.receive())


# -- real TCP on 127.0.0.1 ----------------------------------------------------------------


async def echo_handler(call: RpcCall) -> bytes | None:
    if call.proc == 2:
        return None  # no reply at all
    if call.proc == 3:
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.PROC_UNAVAIL)
    return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, call.args)


async def test_tcp_round_trip_large_records_and_server_callback() -> None:
    server_conns: list[ServerConnection] = []
    cb_seen: list[RpcCall] = []

    async def on_stream(stream: trio.SocketStream) -> None:
        conn = ServerConnection(stream, on_call=echo_handler)
        server_conns.append(conn)
        await conn.run()

    async def client_cb(call: RpcCall) -> bytes:
        cb_seen.append(call)
        assert call.cred.flavor == auth_flavor.AUTH_SYS
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, b"pong")

    with trio.fail_after(TIMEOUT):
        async with tcp_server(on_stream) as (nursery, port):
            transport = await Transport.connect(
                "127.0.0.1", port, nursery=nursery, on_call=client_cb
            )
            assert transport.peer == f"127.0.0.1:{port}"

            # Concurrent large calls: frames must not interleave.
            payloads = [bytes([i]) * (256 * 1024 + 4 * i) for i in range(8)]
            results: dict[int, bytes] = {}
            async with trio.open_nursery() as calls:

                async def one(i: int) -> None:
                    results[i] = bytes(await transport.call(PROG, VERS, 1, payloads[i], CRED))

                for i in range(len(payloads)):
                    calls.start_soon(one, i)
            assert results == dict(enumerate(payloads))

            big = random.Random(1).randbytes(1 << 20)
            assert await transport.call(PROG, VERS, 1, big, CRED) == big
            # Arguments in pieces (a WRITE's data kept apart) arrive as one record.
            pieces = Gathered([b"head", memoryview(big), b"tail"])
            assert await transport.call(PROG, VERS, 1, pieces, CRED) == pieces.joined()

            # A call the server never answers can be abandoned with a deadline.
            with trio.move_on_after(0.05):
                await transport.call(PROG, VERS, 2, b"", CRED)
            with pytest.raises(RpcError, match="PROC_UNAVAIL"):
                await transport.call(PROG, VERS, 3, b"", CRED)

            # The server end calls back over the same connection.
            (server_conn,) = server_conns
            assert await server_conn.callback(CB_PROG, 1, 0, b"", CRED) == b"pong"
            assert cb_seen[0].prog == CB_PROG

            stats = transport.statistics()
            assert (stats.calls_sent, stats.replies_received) == (12, 11)
            assert stats.calls_received == 1
            assert stats.bytes_sent > 4 * (1 << 20)
            assert stats.bytes_received > 3 * (1 << 20)

            await transport.aclose()
            await server_conn.wait_closed()  # the server saw EOF and closed its end


async def test_large_reply_buffers_are_kept_while_busy_and_given_back_when_idle() -> None:
    """A large reply is received into a buffer the connection keeps for the next one
    (a sequential reader's READs), and gives back only once it has been idle for
    ``release_after`` seconds: not as soon as no call is outstanding, which between
    two READs of one reader is most of the time."""

    async def on_stream(stream: trio.SocketStream) -> None:
        await ServerConnection(stream, on_call=echo_handler).run()

    big = random.Random(2).randbytes(1 << 20)
    with trio.fail_after(TIMEOUT):
        async with tcp_server(on_stream) as (nursery, port):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            conn = RpcConnection(stream, release_after=0.2)
            await nursery.start(conn.run)

            kept = []
            for _ in range(4):  # one after another: idle between them
                reply = await conn.call(PROG, VERS, 1, big, CRED)
                assert bytes(reply) == big
                del reply  # the reply's buffer is free for the next one
                kept.append(conn.statistics().buffers_kept)
            assert kept[0] >= len(big), "the buffer of the last reply is kept"
            assert kept == [kept[0]] * 4, "one buffer served all four replies"
            await trio.sleep(0.5)  # idle longer than release_after
            assert conn.statistics().buffers_kept == 0
            # And a reply after the release is received as before.
            assert bytes(await conn.call(PROG, VERS, 1, big, CRED)) == big
            await conn.aclose()


async def test_calls_queued_behind_a_full_socket_go_out_whole_and_in_order() -> None:
    """A call finding the sender idle writes its record itself; once the socket's
    buffer is full the rest of that record, and every later one, wait in the sender's
    queue.  The peer reads nothing until 24 MiB of calls are outstanding (more than
    both ends' socket buffers), then every record arrives whole and in order."""
    count, size = 24, 1 << 20
    start_reading = trio.Event()
    seen: list[bytes] = []

    async def on_stream(stream: trio.SocketStream) -> None:
        await start_reading.wait()
        peer = ScriptedPeer(stream)
        for _ in range(count):
            call = await peer.receive_call()
            seen.append(bytes(call.args[:1]))
            assert bytes(call.args) == call.args[:1] * size
            await peer.reply(call, call.args[:1])

    with trio.fail_after(TIMEOUT):
        async with tcp_server(on_stream) as (nursery, port):
            transport = await Transport.connect("127.0.0.1", port, nursery=nursery)
            results: list[bytes] = []

            async def one(i: int) -> None:
                results.append(bytes(await transport.call(PROG, VERS, 1, bytes([i]) * size, CRED)))

            async with trio.open_nursery() as calls:
                for i in range(count):
                    calls.start_soon(one, i)
                    await trio.sleep(0)  # each call starts before the next: a known order
                while transport.statistics().in_flight < count:
                    await trio.sleep(0.01)
                start_reading.set()
            assert seen == [bytes([i]) for i in range(count)]
            assert sorted(results) == seen
            assert transport.statistics().bytes_sent > count * size
            await transport.aclose()


async def test_close_while_the_sender_waits_for_room_in_the_socket() -> None:
    """The peer never reads: the sender waits for room in the socket's buffer for
    ever.  ``aclose`` still returns at once and every call fails with the reason."""
    stop = trio.Event()

    async def on_stream(stream: trio.SocketStream) -> None:
        await stop.wait()

    with trio.fail_after(TIMEOUT):
        async with tcp_server(on_stream) as (nursery, port):
            transport = await Transport.connect("127.0.0.1", port, nursery=nursery)
            errors: list[TransportError] = []

            async def one(i: int) -> None:
                try:
                    await transport.call(PROG, VERS, 1, bytes([i]) * (1 << 20), CRED)
                except TransportError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as calls:
                for i in range(24):
                    calls.start_soon(one, i)
                # Wait until the socket's buffers are full and the sender is stuck.
                last = -1
                while transport.statistics().bytes_sent != last:
                    last = transport.statistics().bytes_sent
                    await trio.sleep(0.2)
                assert last < 24 << 20
                with trio.fail_after(1):
                    await transport.aclose()
            assert len(errors) == 24
            assert all("closed" in str(exc) for exc in errors)
            stop.set()


async def test_large_reply_arriving_in_slow_pieces_is_received_whole() -> None:
    """A 1 MiB reply written in 64 KiB pieces, 20 ms apart, is received whole (into
    the connection's own buffer, a piece at a time); a reply cut off in its middle by
    the peer's close fails the call as a lost connection."""
    big = random.Random(3).randbytes(1 << 20)

    async def on_stream(stream: trio.SocketStream) -> None:
        peer = ScriptedPeer(stream)
        for cut in (False, True):
            call = await peer.receive_call()
            record = b"".join(
                frame_record(encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, big))
            )
            if cut:
                record = record[: len(record) // 2]
            for start in range(0, len(record), 65536):
                await stream.send_all(record[start : start + 65536])
                await trio.sleep(0.02)
        await stream.aclose()

    with trio.fail_after(TIMEOUT):
        async with tcp_server(on_stream) as (nursery, port):
            transport = await Transport.connect("127.0.0.1", port, nursery=nursery)
            assert bytes(await transport.call(PROG, VERS, 1, b"", CRED)) == big
            with pytest.raises(TransportError, match="lost: closed by peer"):
                await transport.call(PROG, VERS, 1, b"", CRED)


async def test_tcp_reset_fails_in_flight_calls() -> None:
    accepted = trio.Event()

    async def on_stream(stream: trio.SocketStream) -> None:
        peer = ScriptedPeer(stream)
        await peer.receive()
        # SO_LINGER 0: close sends RST instead of FIN.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        accepted.set()

    with trio.fail_after(TIMEOUT):
        async with tcp_server(on_stream) as (nursery, port):
            transport = await Transport.connect("127.0.0.1", port, nursery=nursery)
            with pytest.raises(TransportError, match=f"connection to 127.0.0.1:{port} lost"):
                await transport.call(PROG, VERS, 1, b"", CRED)
            await transport.wait_closed()


async def test_serve_connection_with_nursery_start() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(serve_connection, server_stream, echo_handler, peer="c")
            )
            assert isinstance(server, ServerConnection)
            client = await nursery.start(RpcConnection(client_stream, peer="s").run)
            assert await client.call(PROG, VERS, 1, word(7), CRED) == word(7)
            await client.aclose()
            await server.wait_closed()


async def test_connect_refused_is_transport_error() -> None:
    with trio.fail_after(TIMEOUT):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await listeners[0].aclose()
        async with trio.open_nursery() as nursery:
            with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{port}"):
                await Transport.connect("127.0.0.1", port, nursery=nursery)


# -- the record bound (issue 7: bounded by what was negotiated) ---------------------------
async def _call_collecting(
    conn: RpcConnection, proc: int, out: dict[int, BaseException | bytes]
) -> None:
    try:
        out[proc] = bytes(await conn.call(PROG, VERS, proc, b"", CRED))
    except TransportError as exc:
        out[proc] = exc


async def test_oversized_reply_fails_its_call_others_get_plain_loss(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    conn.set_max_record(1000, NEGOTIATED_MAXIMUM)
    assert (conn.max_record, conn.max_record_source) == (1000, NEGOTIATED_MAXIMUM)
    out: dict[int, BaseException | bytes] = {}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for proc in (1, 2, 3):
                nursery.start_soon(_call_collecting, conn, proc, out)
            calls = {c.proc: c for c in [await peer.receive_call() for _ in range(3)]}
            await peer.reply(calls[1], word(1))  # within the bound: delivered
            big = encode_accepted_reply(calls[2].xid, NULL_AUTH, accept_stat.SUCCESS, bytes(2000))
            await peer.send(big)
        await conn.wait_closed()
    assert out[1] == word(1)
    culprit = out[2]
    assert isinstance(culprit, RecordTooLarge) and isinstance(culprit, ReplyTooLarge)
    assert str(culprit) == (
        f"connection to test-server:2049 lost: reply of {len(big)} bytes exceeds the "
        f"negotiated maximum 1000 (xid 0x{calls[2].xid:08x})"
    )
    assert culprit.xid == calls[2].xid and culprit.limit == 1000
    # the innocent call may be re-sent on a new connection: a plain TransportError
    innocent = out[3]
    assert type(innocent) is TransportError
    assert "lost: reply of" in str(innocent) and "exceeds the negotiated maximum" in str(innocent)
    with pytest.raises(TransportError) as later:
        await conn.call(PROG, VERS, 4, b"", CRED)
    assert type(later.value) is TransportError


async def test_oversized_reply_without_its_xid_fails_every_waiting_call(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    conn.set_max_record(PRE_SESSION_MAX_RECORD, PRE_SESSION_MAXIMUM)
    out: dict[int, BaseException | bytes] = {}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for proc in (1, 2):
                nursery.start_soon(_call_collecting, conn, proc, out)
            for _ in range(2):
                await peer.receive_call()
            # the mark alone: which call it answers cannot be known without waiting
            await peer.stream.send_all(struct.pack(">I", LAST_FRAGMENT | (1 << 20)))
        await conn.wait_closed()
    for proc in (1, 2):
        err = out[proc]
        assert isinstance(err, RecordTooLarge)
        assert str(err).endswith(
            f"lost: record of {1 << 20} bytes exceeds the pre-session maximum "
            f"{PRE_SESSION_MAX_RECORD}"
        )


async def test_oversized_backchannel_call_fails_calls_as_plain_loss(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    conn.max_record = 500
    out: dict[int, BaseException | bytes] = {}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_call_collecting, conn, 1, out)
            await peer.receive_call()
            cb_call = encode_call(7, CB_PROG, 1, 1, NULL_AUTH, NULL_AUTH, bytes(600))
            await peer.send(cb_call)
        await conn.wait_closed()
    err = out[1]
    assert type(err) is TransportError
    expected = f"lost: call of {len(cb_call)} bytes exceeds the maximum 500 (xid 0x00000007)"
    assert expected in str(err)


async def test_max_record_changed_while_running(
    pair: tuple[RpcConnection, ScriptedPeer],
) -> None:
    conn, peer = pair
    conn.set_max_record(PRE_SESSION_MAX_RECORD, PRE_SESSION_MAXIMUM)
    payload = bytes(200_000)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def big_reply() -> None:
                await peer.reply(await peer.receive_call(), payload)

            nursery.start_soon(big_reply)
            with pytest.raises(RecordTooLarge, match="exceeds the pre-session maximum 65536"):
                await conn.call(PROG, VERS, 1, b"", CRED)
    # a fresh connection: raised after "CREATE_SESSION", the same reply is accepted
    client_stream, server_stream = trio.testing.memory_stream_pair()
    peer = ScriptedPeer(server_stream)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            conn = await nursery.start(
                RpcConnection(
                    client_stream,
                    peer="s",
                    max_record=PRE_SESSION_MAX_RECORD,
                    max_record_source=PRE_SESSION_MAXIMUM,
                ).run
            )
            conn.set_max_record(session_max_record(1 << 20, 16384), NEGOTIATED_MAXIMUM)
            got: list[bytes] = []

            async def caller() -> None:
                got.append(await conn.call(PROG, VERS, 1, b"", CRED))

            nursery.start_soon(caller)
            await peer.reply(await peer.receive_call(), payload)
            await trio.testing.wait_all_tasks_blocked()
            assert got == [payload]
            with pytest.raises(ValueError):
                conn.max_record = -1
            await conn.aclose()


async def test_server_connection_send_record_and_send_raw() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def handler(call: RpcCall) -> bytes | None:
        reply = encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, word(call.proc))
        if call.proc == 2:
            await server.send_raw(b"\x80\x00\x00\x10ab")  # announces 16 bytes, sends 2
            return None
        await server.send_record(reply)  # sent twice: the duplicate is dropped
        return reply

    server = ServerConnection(server_stream, peer="c", on_call=handler)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            client = await nursery.start(RpcConnection(client_stream, peer="s").run)
            assert await client.call(PROG, VERS, 1, b"", CRED) == word(1)
            await trio.testing.wait_all_tasks_blocked()
            assert client.statistics().replies_dropped == 1
            # the broken frame leaves the client waiting for 14 more bytes: bounded
            # only by the caller's deadline
            with trio.move_on_after(0.1) as scope:
                await client.call(PROG, VERS, 2, b"", CRED)
            assert scope.cancelled_caught
            assert client.statistics().bytes_received == 2 * 32 + 6
            await client.aclose()
            await server.wait_closed()
            with pytest.raises(TransportError):
                await server.send_raw(b"x")

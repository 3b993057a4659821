"""ONC RPC over one TCP connection, both directions (trio I/O shell around session.rpc).

One :class:`RpcConnection` owns one byte stream and nothing else: no NFS state lives
here, so the session above can drop a connection and attach a new one (DESIGN.md,
invariant 1).  It runs two tasks in a nursery the caller can see:

* a reader that reassembles records (RFC 5531 section 11) and demultiplexes them with
  ``peek_xid_and_type``: a REPLY wakes the caller waiting on its xid; a CALL (the
  NFSv4.1 backchannel, RFC 8881 section 2.10.3.1) is answered by a handler in its own
  task;
* a sender that writes queued records whole and in order, so records from concurrent
  callers never interleave.

A caller never awaits while it writes: a record goes out without a checkpoint, so no
cancellation can stop it half-written, which would corrupt the stream for every other
caller.  On a socket, a caller that finds the sender idle (nothing queued, nothing
being written) makes the ``writev`` itself; what the socket's buffer does not take,
and every record sent while the sender is busy, goes into the sender's unbounded
queue (``send_nowait``), and the sender writes it as the socket drains.  The reader
and the sender make their socket calls directly too (``_Socket``): trio's socket
methods pass through the scheduler after each call that succeeded, which was a
third of the scheduler rounds of a call; here only a call that would block waits.

:class:`Transport` is the client end (``Transport.connect``); :class:`ServerConnection`
and :func:`serve_connection` are the server end used by the project's test server,
with ``callback()`` to send calls back to the client over the same stream.

Errors: every failure of the connection (EOF, reset, a malformed or oversized record)
fails all in-flight calls with ``TransportError("connection to HOST:PORT lost: REASON")``
and every later call at once.  A record larger than ``max_record`` fails the call it
answers with :class:`~session.rpc.RecordTooLarge` (a ``TransportError``: "reply of N
bytes exceeds the negotiated maximum M"), which is not worth re-sending: the same
request gets the same reply.  ``max_record`` is a property of the running connection,
so a session can lower it from CREATE_SESSION's sizes (``session_max_record``) and
use ``PRE_SESSION_MAX_RECORD`` before that.  RPC-level rejections raise the ``session.rpc``
exceptions (``ProgMismatch``, ``AuthError``, ...).  A call waits as long as its caller
lets it (a cancel scope), or until its own ``deadline`` (``ReplyOverdue``).  Logger
``session.transport``: connects and disconnects at INFO.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Self, TypeVar

import trio

from session.errors import ReplyOverdue, TransportError, XdrError
from session.rpc import (
    LAST_FRAGMENT,
    MAX_FRAGMENT,
    MAX_RECORD_DEFAULT,
    NEGOTIATED_MAXIMUM,
    NULL_AUTH,
    PRE_SESSION_MAX_RECORD,
    PRE_SESSION_MAXIMUM,
    RPC_VERSION,
    AuthError,
    CallArgs,
    Credential,
    RecordReader,
    RecordTooLarge,
    RpcCall,
    SealedCall,
    UnsupportedRpcVersion,
    accept_stat,
    decode_call,
    decode_reply,
    encode_accepted_reply,
    encode_rejected_reply,
    msg_type,
    peek_xid_and_type,
    reject_stat,
    session_max_record,
)

__all__ = [
    "AUTH_REFRESHES",
    "NEGOTIATED_MAXIMUM",
    "PRE_SESSION_MAXIMUM",
    "PRE_SESSION_MAX_RECORD",
    "RECEIVE_SIZE",
    "RELEASE_AFTER",
    "CallHandler",
    "KeptReply",
    "RecordTooLarge",
    "RpcConnection",
    "ServerConnection",
    "Transport",
    "TransportStatistics",
    "connect",
    "serve_connection",
    "session_max_record",
]

#: Socket send/receive buffer asked for, bytes (the kernel may cap it).
SOCKET_BUFFER = 4 * 1024 * 1024

log = logging.getLogger("session.transport")

CallHandler = Callable[[RpcCall], Awaitable[bytes | None]]
"""Answers one received call: returns the whole encoded reply record body (built with
``encode_accepted_reply`` / ``encode_rejected_reply``), or None to send no reply.
An exception other than ``Cancelled`` is logged and answered with SYSTEM_ERR."""

RECEIVE_SIZE: Final = 1 << 16
"""Bytes asked of each ``receive_some`` (64 KiB): enough for many small replies at
once, and little of a large one (a READ reply), whose body is then received straight
into its own buffer (``RecordReader.receive_buffer``) instead of being copied there
from this one.  With 1 MiB, most of a 1 MiB READ reply arrived in the previous
``receive_some`` and was copied: 9% of the mount's time while reading."""

RELEASE_AFTER: Final = 2.0
"""Seconds a connection waits with no call outstanding before it gives back the
buffers kept for large records (``RecordReader.release_buffers``).  Giving them back
at once whenever the last reply was in made a sequential reader allocate (and zero) a
new buffer for most READs: 12% of the mount's time."""

_JOIN_LIMIT: Final = 64 * 1024
"""Records up to this many bytes are joined with their mark into one write."""

_SMALL_PIECE: Final = 4096
"""In a larger record, neighbouring pieces up to this many bytes are joined (an
RPCSEC_GSS length word, padding and checksum around a big payload)."""

AUTH_REFRESHES: Final = 2
"""Times one call is sealed and sent again after the server rejected a credential that
renewed itself (``Credential.rejected``), before the AuthError is raised."""

_MARK = struct.Struct(">I")
_XID_MASK: Final = 0xFFFFFFFF

Frame = list[bytes | memoryview]


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    """Counters of one connection since it was created.

    Attributes:
        calls_sent: calls handed to the sender (a count).
        replies_received: replies matched to a waiting call.
        replies_dropped: replies for no waiting xid (late, after a cancelled call).
        calls_received: calls from the peer (on a client: backchannel calls).
        bytes_sent: bytes written to the stream, record marks included.
        bytes_received: bytes read from the stream, record marks included.
        in_flight: calls sent or being sent and not yet answered.
        buffers_kept: bytes of the buffers kept for large records (given back after
            ``RELEASE_AFTER`` seconds idle).
    """

    calls_sent: int
    replies_received: int
    replies_dropped: int
    calls_received: int
    bytes_sent: int
    bytes_received: int
    in_flight: int
    buffers_kept: int


@dataclass(slots=True)
class _Pending:
    """A call waiting for its reply: ``body`` or ``error`` is set, then ``done``."""

    done: trio.Event
    body: bytes | memoryview | None = None
    error: TransportError | None = None

    def result(self) -> bytes | memoryview:
        """The reply record once ``done``; raises ``error`` if the call failed."""
        if self.error is not None:
            raise self.error from None
        assert self.body is not None
        return self.body


class KeptReply:
    """The reply still to come to a call whose caller was cancelled while waiting for
    it (``RpcConnection.call(keep=)``): the xid stays expected on the connection, and
    whoever takes this waits for the same reply instead of sending the call again.

    NFSv4 forbids sending a request twice on one connection (RFC 8881 section
    2.9.2: a retry only on a new connection); a session slot's request therefore
    waits here for its reply, or for the connection to be lost, or for the call's
    deadline.

    Attributes:
        transport: the connection the call went out on.
    """

    __slots__ = ("_pending", "_sealed", "_xid", "transport")

    def __init__(
        self, transport: RpcConnection, xid: int, pending: _Pending, sealed: SealedCall
    ) -> None:
        self.transport = transport
        self._xid = xid
        self._pending = pending
        self._sealed = sealed

    async def wait(self) -> bytes | memoryview:
        """The call's results, as ``RpcConnection.call`` would have returned them.

        Raises what ``call`` raises once the call was sent (``TransportError``,
        ``ReplyOverdue`` at the call's deadline, the RPC rejections), except that an
        AUTH_ERROR is not answered by sending the call again with a renewed credential.
        If the waiter is cancelled, the reply is forgotten (dropped when it comes).
        """
        pending = self._pending
        try:
            try:
                await pending.done.wait()
            finally:
                self.transport._forget(self._xid, pending)
            reply = decode_reply(pending.result())
            return self._sealed.unwrap(reply.verf, reply.results)
        finally:
            self._sealed.release()

    def abandon(self) -> None:
        """Nobody will wait: forget the call (a late reply is dropped)."""
        self.transport._forget(self._xid, self._pending)
        self._sealed.release()


_R = TypeVar("_R")


class _Socket:
    """The system calls of one connected, non-blocking trio socket, made directly.

    trio's own socket methods pass through the scheduler after every call that
    succeeded (a checkpoint); a connection making one call per record spent a
    scheduler round on each.  Here a call that succeeds returns at once; one that
    would block waits until the socket is ready; every ``BURST`` calls in a row that
    did not wait, one checkpoint lets other tasks run.  A receive that got less than
    it asked for emptied the socket: the next one waits for data first instead of
    failing with EAGAIN.  One task receives and one sends.

    Errors are trio's: ``BrokenResourceError`` for a failed call (its message the
    system's), ``ClosedResourceError`` when the socket is closed meanwhile.
    """

    BURST: Final = 16

    __slots__ = ("_drained", "_fd", "_sock", "_streak")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._streak = 0
        self._drained = False  # the last receive left nothing to read

    async def _ready(self, readable: bool) -> None:
        self._streak = 0
        if readable:
            await trio.lowlevel.wait_readable(self._sock)
        else:
            await trio.lowlevel.wait_writable(self._sock)

    async def _done(self) -> None:
        self._streak += 1
        if self._streak >= self.BURST:
            self._streak = 0
            await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._sock.fileno() == -1:
            raise trio.ClosedResourceError("the socket was closed")

    async def _receive(self, size: int, call: Callable[[], _R], got: Callable[[_R], int]) -> _R:
        """``call()`` (a receive of up to ``size`` bytes), again once the socket is
        readable for as long as it would block; ``got`` tells how many bytes it gave."""
        if self._drained:
            await self._ready(readable=True)
        while True:
            self._check_open()
            try:
                result = call()
            except BlockingIOError:
                await self._ready(readable=True)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            self._drained = got(result) < size
            if not self._drained:
                await self._done()
            return result

    async def receive(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" at the end of the stream."""
        return await self._receive(size, lambda: os.read(self._fd, size), len)

    async def receive_into(self, target: memoryview) -> int:
        """Bytes read into ``target`` (a count; 0 at the end of the stream)."""
        return await self._receive(len(target), lambda: os.readv(self._fd, [target]), int)

    def send_now(self, frame: Frame) -> tuple[int, Frame]:
        """Write what the socket takes of ``frame`` without waiting: (bytes written,
        the pieces left, ``[]`` when it took all)."""
        self._check_open()
        views = [memoryview(piece).cast("B") for piece in frame]
        try:
            sent = os.writev(self._fd, views)
        except BlockingIOError:
            return 0, frame
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        written = sent
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]
        return written, list(views)

    async def send_frame(self, frame: Frame) -> int:
        """Send every piece of ``frame`` in order; returns the bytes sent (all)."""
        total = 0
        while True:
            sent, frame = self.send_now(frame)
            total += sent
            if not frame:
                break
            if not sent:
                await self._ready(readable=False)
        await self._done()
        return total


def _frame(header: bytes, *payload: bytes | memoryview) -> Frame:
    """Record-mark ``header`` and the ``payload`` pieces as one last fragment, without
    copying big pieces (small records are joined into one write)."""
    size = len(header) + sum(len(p) for p in payload)
    if size > MAX_FRAGMENT:
        raise ValueError(f"RPC record of {size} bytes is larger than one fragment")
    mark = _MARK.pack(LAST_FRAGMENT | size)
    if size <= _JOIN_LIMIT:
        return [b"".join((mark, header, *payload))]
    frame: Frame = []
    run: list[bytes | memoryview] = []
    for index, piece in enumerate((mark, header, *payload)):
        if len(piece) <= (_JOIN_LIMIT if index < 2 else _SMALL_PIECE):
            run.append(piece)
            continue
        if run:
            frame.append(b"".join(run))
            run = []
        frame.append(piece)
    if run:
        frame.append(b"".join(run))
    return frame


async def resolve_address(host: str, port: int) -> str:
    """An IP address for ``host`` (a name or an address), for connecting to ``port``.

    Raises:
        TransportError: the name does not resolve (the message names it).
    """
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise TransportError(f"cannot resolve server {host!r}: {e}") from None
    return str(infos[0][4][0])


def _describe(exc: BaseException) -> str:
    """A short reason for a broken stream, including the OSError behind it if any."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


def _peer_name(stream: trio.abc.Stream) -> str:
    """``HOST:PORT`` of a socket stream's peer, else a placeholder."""
    if isinstance(stream, trio.SocketStream):
        try:
            addr = stream.socket.getpeername()
        except OSError:
            return "unconnected socket"
        if isinstance(addr, tuple) and len(addr) >= 2:
            return f"{addr[0]}:{addr[1]}"
        return str(addr)
    return "peer"


class RpcConnection:
    """ONC RPC over one stream, in both directions (RFC 5531 sections 9 and 11).

    Create it, then run :meth:`run` in a nursery (``await nursery.start(conn.run)``);
    :meth:`Transport.connect` does both.  While running, :meth:`call` sends calls and
    waits for their replies (many in flight at once, matched by xid) and calls from the
    peer are answered by ``on_call`` (an attribute; None answers PROG_UNAVAIL).

    Args:
        stream: a connected ``trio.abc.Stream`` (TCP socket, or a memory stream in tests).
        peer: name used in messages, e.g. ``"127.0.0.1:2049"``; default from the socket.
        on_call: handler for calls received from the peer.
        max_record: largest record accepted from the peer, bytes (see ``max_record``).
        max_record_source: what that bound is, for messages (``PRE_SESSION_MAXIMUM``,
            ``NEGOTIATED_MAXIMUM``; default ``"maximum"``).
        receive_size: bytes asked of each ``receive_some``.
        release_after: seconds idle before the large-record buffers go back
            (``RELEASE_AFTER``).

    Raises:
        ValueError: a negative ``max_record``.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        peer: str | None = None,
        on_call: CallHandler | None = None,
        max_record: int = MAX_RECORD_DEFAULT,
        max_record_source: str = "maximum",
        receive_size: int = RECEIVE_SIZE,
        release_after: float = RELEASE_AFTER,
    ) -> None:
        self.peer = peer if peer is not None else _peer_name(stream)
        self.on_call = on_call
        self._stream = stream
        self._records = RecordReader(max_record, max_record_source)
        self._receive_size = receive_size
        self._release_after = release_after
        # Unbounded: a caller queues its frame without waiting for the sender (each
        # waiting caller holds its frame either way); the sender writes them in order.
        self._send_tx, self._send_rx = trio.open_memory_channel[Frame](math.inf)
        self._send_busy = 0  # frames queued or being written by the sender (a count)
        # On a socket, a call finding the sender idle writes its frame itself.
        self._direct = _Socket(stream.socket) if isinstance(stream, trio.SocketStream) else None
        self._pending: dict[int, _Pending] = {}
        self._xid = random.getrandbits(32)
        self._nursery: trio.Nursery | None = None
        self._running = False
        self._closed = False
        self._close_message = ""
        self._closed_event = trio.Event()
        #: Deadlines of calls that have one, a heap of (deadline, order, xid, call):
        #: ``_watchdog`` fails a call still waiting at its deadline.  Entries of calls
        #: that ended are dropped when they reach the top.
        self._deadlines: list[tuple[float, int, int, _Pending]] = []
        self._deadline_order = itertools.count()
        #: The watchdog's sleep, whose deadline is the earliest it knows of (None while
        #: it is not sleeping).
        self._watch: trio.CancelScope | None = None
        self._calls_sent = 0
        self._replies_received = 0
        self._replies_dropped = 0
        self._calls_received = 0
        self._bytes_sent = 0
        self._bytes_received = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.peer} {state} in_flight={len(self._pending)}>"

    # -- the record bound ---------------------------------------------------------------
    @property
    def max_record(self) -> int:
        """Largest record accepted from the peer, in bytes (RFC 5531 section 11 records,
        marks excluded).  May be set while the connection runs; each record is held to
        the value in force when its first fragment arrives.  A larger record fails the
        connection (``RecordTooLarge`` for the call it answers)."""
        return self._records.max_record

    @max_record.setter
    def max_record(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"max_record must be >= 0, got {size}")
        self._records.max_record = size

    @property
    def max_record_source(self) -> str:
        """What ``max_record`` is, as error messages name it ("negotiated maximum")."""
        return self._records.max_record_source

    @max_record_source.setter
    def max_record_source(self, source: str) -> None:
        self._records.max_record_source = source

    def set_max_record(self, size: int, source: str) -> None:
        """Set ``max_record`` and ``max_record_source`` together, e.g.
        ``conn.set_max_record(session_max_record(fore, back), NEGOTIATED_MAXIMUM)``.

        Raises:
            ValueError: a negative ``size``.
        """
        self.max_record = size
        self.max_record_source = source

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the connection was lost or closed; calls then fail at once."""
        return self._closed

    async def wait_closed(self) -> None:
        """Wait until the connection is down and its stream closed."""
        await self._closed_event.wait()

    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader and sender until the connection ends; then close the stream.

        Use ``conn = await nursery.start(conn.run)``: ``started`` gives the connection.
        Returns normally when the connection is lost or closed (the reason is what
        calls raise); re-raises ``Cancelled`` if cancelled from outside.

        Raises:
            RuntimeError: ``run`` was already called.
        """
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._closed:
                    nursery.cancel_scope.cancel()
                else:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._sender)
                    nursery.start_soon(self._watchdog)
                task_status.started(self)
        finally:
            self._nursery = None
            self._lose("connection task stopped")
            try:
                await trio.aclose_forcefully(self._stream)
            finally:
                self._closed_event.set()

    async def aclose(self) -> None:
        """Close the connection: in-flight and later calls raise ``TransportError``.

        Idempotent; returns once the stream is closed.
        """
        self._lose(f"connection to {self.peer} closed", lost=False)
        if self._running:
            await self._closed_event.wait()
        else:
            try:
                await trio.aclose_forcefully(self._stream)
            finally:
                self._closed_event.set()

    def statistics(self) -> TransportStatistics:
        """A snapshot of this connection's counters."""
        return TransportStatistics(
            calls_sent=self._calls_sent,
            replies_received=self._replies_received,
            replies_dropped=self._replies_dropped,
            calls_received=self._calls_received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            in_flight=len(self._pending),
            buffers_kept=self._records.pooled_bytes,
        )

    # -- calls --------------------------------------------------------------------------
    async def call(
        self,
        prog: int,
        vers: int,
        proc: int,
        args: CallArgs,
        cred: Credential,
        deadline: float | None = None,
        keep: Callable[[KeptReply], None] | None = None,
    ) -> bytes | memoryview:
        """Send one call and wait for its reply (RFC 5531 section 9).

        Many calls may be in flight at once; each gets a fresh xid (random start,
        incrementing modulo 2**32).  If the caller is cancelled, its xid is forgotten
        and a later reply to it is dropped; other calls are unaffected.

        The credential seals the transmission (``Credential.ready`` then ``seal``:
        RPCSEC_GSS creates its context, numbers the call and signs or encrypts the
        arguments) and checks the reply (``SealedCall.unwrap``).  When the server
        rejects the credential and the credential can renew itself (an expired
        RPCSEC_GSS context: RPCSEC_GSS_CREDPROBLEM / CTXPROBLEM, RFC 2203 section
        5.3.3.3), the same arguments are sealed and sent again, at most
        ``AUTH_REFRESHES`` times.  Such a re-send carries the same NFS request (for a
        session: the same slot and sequence id), so it is a retry in the session's
        sense too; it was not executed, as the server refused it before that.

        Args:
            prog, vers, proc: uint32 program, version and procedure numbers.
            args: the procedure's XDR-encoded arguments (sent without copying by
                AUTH_NONE / AUTH_SYS).
            cred: supplies the call's credential and verifier.
            deadline: ``trio.current_time()`` by which the reply must have come, or
                ``ReplyOverdue`` is raised (the connection stays up).  Cheaper than a
                cancel scope around the call, but it bounds only the wait for the
                reply: not ``cred.ready`` (an RPCSEC_GSS context being created).
            keep: if the caller is cancelled after the call was sent and before its
                reply came, the call is not forgotten: ``keep`` gets a ``KeptReply``
                to wait for the reply with (in another task), and ``Cancelled``
                propagates.  Without it the xid is forgotten.

        Returns:
            the accepted SUCCESS reply's results (XDR-encoded: a view of the record),
            as the credential unwrapped them.

        Raises:
            RecordTooLarge: the reply to this call (or, when its xid could not be
                read, some reply while this call waited) was larger than
                ``max_record``; the connection is lost.  Re-sending will not help.
            TransportError: the connection is closed, or was lost before the reply.
            ReplyOverdue: (a TransportError) no reply by ``deadline``.
            ProgUnavail, ProgMismatch, ProcUnavail, GarbageArgs, SystemErr, RpcMismatch,
                AuthError (session.rpc): the peer did not accept the call.
            RpcError: (a credential's subclass, e.g. ``session.gss.GssIntegrityError``)
                the reply's verifier or protection did not check out.
            NFSClientError: the credential could not be made ready (e.g.
                ``session.gss.GssError``: no Kerberos credentials).
            XdrError: the reply's RPC header is malformed.
        """
        refreshes = 0
        while True:
            if self._closed:
                raise TransportError(self._close_message) from None
            await cred.ready(self, prog, vers)
            if self._closed:
                raise TransportError(self._close_message) from None
            xid = self._next_xid()
            sealed = cred.seal(xid, prog, vers, proc, args)
            try:
                body = await self._round_trip(
                    xid, _frame(sealed.header, *sealed.body), deadline, keep, sealed
                )
                try:
                    reply = decode_reply(body)
                except AuthError as exc:
                    if refreshes < AUTH_REFRESHES and cred.rejected(sealed, exc):
                        refreshes += 1
                        log.info(
                            "%s: xid=0x%08x %s; sending again with a renewed credential",
                            self.peer,
                            xid,
                            exc,
                        )
                        continue
                    raise
                return sealed.unwrap(reply.verf, reply.results)
            finally:
                if xid not in self._pending:
                    sealed.release()
                # else: kept (``keep``), the KeptReply releases it.

    async def _round_trip(
        self,
        xid: int,
        frame: Frame,
        deadline: float | None = None,
        keep: Callable[[KeptReply], None] | None = None,
        sealed: SealedCall | None = None,
    ) -> bytes | memoryview:
        """Hand ``frame`` to the sender and wait for the record answering ``xid``, until
        ``deadline`` (``_watchdog``) if there is one; if cancelled meanwhile, hand the
        wait to ``keep`` (see ``call``)."""
        slot = _Pending(trio.Event())
        self._pending[xid] = slot
        if deadline is not None:
            self._add_deadline(deadline, xid, slot)
        kept = False
        try:
            try:
                self._send_now(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._lose(_describe(exc))  # fails this slot too (if not done already)
            else:
                self._calls_sent += 1
            await slot.done.wait()
        except trio.Cancelled:
            if keep is not None and sealed is not None and self._pending.get(xid) is slot:
                keep(KeptReply(self, xid, slot, sealed))
                kept = True
            raise
        finally:
            if not kept:
                self._forget(xid, slot)
        return slot.result()

    def _forget(self, xid: int, slot: _Pending) -> None:
        """Stop expecting a reply to ``xid`` (still ``slot``'s): a reply that comes later
        is dropped, and ``slot`` ends (its deadline entry can go)."""
        if self._pending.get(xid) is slot:
            del self._pending[xid]
            slot.done.set()

    def _add_deadline(self, deadline: float, xid: int, slot: _Pending) -> None:
        heap = self._deadlines
        while heap and heap[0][3].done.is_set():
            heapq.heappop(heap)  # calls that ended: most of them, in order
        heapq.heappush(heap, (deadline, next(self._deadline_order), xid, slot))
        watch = self._watch
        if watch is not None and deadline < watch.deadline:
            watch.deadline = deadline  # wake the watchdog earlier

    async def _watchdog(self) -> None:
        """Fail each call still waiting at its deadline with ``ReplyOverdue``; a reply
        that comes later finds no call and is dropped."""
        heap = self._deadlines
        while True:
            now = trio.current_time()
            while heap and (heap[0][3].done.is_set() or heap[0][0] <= now):
                _, _, xid, slot = heapq.heappop(heap)
                if not slot.done.is_set() and self._pending.get(xid) is slot:
                    del self._pending[xid]
                    slot.error = ReplyOverdue(
                        f"{self.peer}: no reply to xid=0x{xid:08x} by its deadline"
                    )
                    slot.done.set()
            with trio.move_on_at(heap[0][0] if heap else math.inf) as self._watch:
                await trio.sleep_forever()
            self._watch = None

    def _send_now(self, frame: Frame) -> None:
        """Send ``frame`` after every frame before it, without waiting: written here
        while the sender is idle (as much as the socket takes), the rest queued for the
        sender, which writes queued frames in order.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: the connection is lost.
        """
        if self._direct is not None and not self._send_busy:
            sent, frame = self._direct.send_now(frame)
            self._bytes_sent += sent
            if not frame:
                return
        self._send_busy += 1
        self._send_tx.send_nowait(frame)

    def _next_xid(self) -> int:
        while True:
            self._xid = (self._xid + 1) & _XID_MASK
            if self._xid not in self._pending:
                return self._xid

    # -- failure ------------------------------------------------------------------------
    def _lose(
        self, reason: str, *, lost: bool = True, too_large: RecordTooLarge | None = None
    ) -> None:
        """Mark the connection down; fail every waiting call; stop the tasks.

        Args:
            reason: why (``lost=True``), or the whole message (``lost=False``).
            too_large: the refused record, when that is why: the call it answers gets
                this error (every waiting call, when its xid is unknown); the others
                get a plain ``TransportError``.
        """
        if self._closed:
            return
        self._closed = True
        if lost:
            self._close_message = f"connection to {self.peer} lost: {reason}"
            log.info("connection to %s lost: %s", self.peer, reason)
        else:
            self._close_message = reason
            log.info("connection to %s closed", self.peer)
        for xid, slot in self._pending.items():
            if too_large is not None and _answers(too_large, xid):
                slot.error = too_large.with_context(f"connection to {self.peer} lost: ")
            else:
                slot.error = TransportError(self._close_message)
            slot.done.set()
        self._pending.clear()
        self._send_rx.close()  # callers blocked handing over a frame get BrokenResourceError
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- tasks --------------------------------------------------------------------------
    async def _reader(self) -> None:
        records = self._records
        stream = self._stream
        # On a socket the reader makes the system calls itself: a large record (a READ
        # reply) is received straight into its own buffer, and a read that returned
        # data is not followed by a trip through the scheduler (_Socket).
        sock = _Socket(stream.socket) if isinstance(stream, trio.SocketStream) else None
        try:
            while True:
                target = records.receive_buffer() if sock is not None else None
                if sock is not None and target is not None:
                    try:
                        count = await sock.receive_into(target)
                    finally:
                        target.release()  # the record may be handed on: no view left
                    if not count:
                        self._lose("closed by peer")
                        return
                    self._bytes_received += count
                    self._dispatch_all(records.received(count))
                    continue
                if self._pending or not self._records.pooled_bytes:
                    data = await self._receive_some(sock)
                else:
                    # Idle, holding buffers: give them back if it stays idle.
                    # (A receive may be cancelled without losing data.)
                    with trio.move_on_after(self._release_after) as idle:
                        data = await self._receive_some(sock)
                    if idle.cancelled_caught:
                        if not self._pending:
                            self._records.release_buffers()
                        continue
                if not data:
                    self._lose("closed by peer")
                    return
                self._bytes_received += len(data)
                self._dispatch_all(records.feed(data))
                if records.failed is not None:
                    raise records.failed
        except RecordTooLarge as exc:
            log.warning("%s: %s; dropping the connection", self.peer, exc)
            self._lose(str(exc), too_large=exc)
        except XdrError as exc:
            self._lose(f"malformed record: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lose(_describe(exc))

    async def _receive_some(self, sock: _Socket | None) -> bytes | bytearray:
        if sock is None:
            return await self._stream.receive_some(self._receive_size)
        return await sock.receive(self._receive_size)

    def _dispatch_all(self, records: list[bytes | memoryview]) -> None:
        """Route ``records`` in order.  (A function of its own: no reference to the
        last record outlives it, so its buffer can serve the next large record.)"""
        for record in records:
            self._dispatch(record)

    def _dispatch(self, record: bytes | memoryview) -> None:
        """Route one record: a reply to its caller, a call to a handler task."""
        xid, mtype = peek_xid_and_type(record)
        if mtype == msg_type.REPLY:
            slot = self._pending.pop(xid, None)
            if slot is None:
                self._replies_dropped += 1
                log.debug("%s: dropped reply to unknown xid=0x%08x", self.peer, xid)
                return
            self._replies_received += 1
            slot.body = record
            slot.done.set()
        else:
            self._calls_received += 1
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_call, xid, record)

    async def _serve_call(self, xid: int, record: bytes | memoryview) -> None:
        try:
            call = decode_call(record)
        except UnsupportedRpcVersion:
            reply: bytes | None = encode_rejected_reply(
                xid, reject_stat.RPC_MISMATCH, mismatch=(RPC_VERSION, RPC_VERSION)
            )
        except XdrError as exc:
            log.warning("%s: undecodable call xid=0x%08x: %s", self.peer, xid, exc)
            reply = encode_accepted_reply(xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
        else:
            reply = await self._answer(call)
        if reply is None:
            return
        try:
            self._send_now(_frame(reply))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lose(_describe(exc))  # the peer will not see this reply anyway

    async def _answer(self, call: RpcCall) -> bytes | None:
        handler = self.on_call
        if handler is None:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.PROG_UNAVAIL)
        try:
            return await handler(call)
        except Exception:
            log.exception(
                "%s: handler failed for call xid=0x%08x prog=%d vers=%d proc=%d",
                self.peer,
                call.xid,
                call.prog,
                call.vers,
                call.proc,
            )
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SYSTEM_ERR)

    async def _sender(self) -> None:
        stream = self._stream
        sock = self._direct
        try:
            while True:
                try:
                    # A queued frame is taken without a trip through the scheduler.
                    frame = self._send_rx.receive_nowait()
                except trio.WouldBlock:
                    frame = await self._send_rx.receive()
                if sock is not None:
                    # One writev for the frame's pieces, more only while the socket's
                    # buffer is full.
                    self._bytes_sent += await sock.send_frame(frame)
                else:
                    for piece in frame:
                        await stream.send_all(piece)
                        self._bytes_sent += len(piece)
                self._send_busy -= 1
        except trio.EndOfChannel:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lose(_describe(exc))


def _answers(too_large: RecordTooLarge, xid: int) -> bool:
    """Whether the refused record is (or, its xid unknown, may be) the reply to ``xid``."""
    if too_large.xid is None:
        return True
    return too_large.xid == xid and too_large.mtype != msg_type.CALL


class Transport(RpcConnection):
    """The client end: one TCP connection to an NFS server, replaceable.

    Made by :meth:`connect`; its tasks run in the nursery given there.
    """

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        nursery: trio.Nursery,
        on_call: CallHandler | None = None,
        max_record: int = MAX_RECORD_DEFAULT,
        max_record_source: str = "maximum",
    ) -> Self:
        """Open a TCP connection and start its tasks in ``nursery``.

        Args:
            host: address or name of the server (tests: 127.0.0.x only).
            port: TCP port.
            nursery: where the reader and sender tasks run.
            on_call: backchannel handler (CB_NULL, CB_COMPOUND); None: PROG_UNAVAIL.
            max_record: largest record accepted from the server, bytes; an NFSv4.1
                session passes ``PRE_SESSION_MAX_RECORD`` (with ``PRE_SESSION_MAXIMUM``)
                and lowers or raises it with ``set_max_record`` after CREATE_SESSION.
            max_record_source: what ``max_record`` is, for error messages.

        Raises:
            TransportError: the connection could not be made.
        """
        peer = f"{host}:{port}"
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise TransportError(f"cannot connect to {peer}: {exc.strerror or exc}") from None
        # Room for a whole 1 MiB WRITE or READ per send/receive: fewer wake-ups per record.
        for option in (trio.socket.SO_SNDBUF, trio.socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                stream.setsockopt(trio.socket.SOL_SOCKET, option, SOCKET_BUFFER)
        transport = cls(
            stream,
            peer=peer,
            on_call=on_call,
            max_record=max_record,
            max_record_source=max_record_source,
        )
        await nursery.start(transport.run)
        log.info("connected to %s", peer)
        return transport


async def connect(
    host: str,
    port: int,
    *,
    nursery: trio.Nursery,
    on_call: CallHandler | None = None,
) -> Transport:
    """Shorthand for :meth:`Transport.connect`."""
    return await Transport.connect(host, port, nursery=nursery, on_call=on_call)


class ServerConnection(RpcConnection):
    """The server end of one client connection (the project's test server).

    ``on_call`` answers the client's calls, each in its own task; :meth:`callback` sends
    calls to the client over the same stream (the NFSv4.1 backchannel).  To let the
    handler know its connection, build the connection first::

        conn = ServerConnection(stream)
        conn.on_call = functools.partial(server.dispatch, conn)
        await conn.run()
    """

    async def callback(
        self, prog: int, vers: int, proc: int, args: CallArgs, cred: Credential
    ) -> bytes | memoryview:
        """Send a call to the client and return its results; as :meth:`call`."""
        return await self.call(prog, vers, proc, args, cred)

    async def send_record(self, body: bytes) -> None:
        """Send one record-marked record now, besides what handlers return (a test server
        sending a reply twice, or a reply to an xid that was never called).

        Raises:
            TransportError: the connection is closed.
        """
        await self._send_frame(_frame(body))

    async def send_raw(self, data: bytes) -> None:
        """Send ``data`` as it is, with no record mark: for test servers that must break
        the framing (a mark announcing more than follows, garbage between records).
        Goes through the sender like every record, so it never splits another record.

        Raises:
            TransportError: the connection is closed.
        """
        await self._send_frame([data])

    async def _send_frame(self, frame: Frame) -> None:
        if self._closed:
            raise TransportError(self._close_message)
        try:
            self._send_now(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lose(_describe(exc))
            raise TransportError(self._close_message) from None
        await trio.lowlevel.checkpoint()


async def serve_connection(
    stream: trio.abc.Stream,
    handler: CallHandler,
    *,
    peer: str | None = None,
    max_record: int = MAX_RECORD_DEFAULT,
    task_status: trio.TaskStatus[ServerConnection] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer RPC calls on ``stream`` with ``handler`` until the client goes away.

    Each call runs in its own task; replies are sent as they complete.  Suitable for
    ``trio.serve_tcp(functools.partial(serve_connection, handler=h), port)``; with
    ``nursery.start`` it gives the :class:`ServerConnection` (for callbacks).
    Returns normally when the connection ends; the stream is closed.
    """
    log.info("serving %s", peer if peer is not None else _peer_name(stream))
    conn = ServerConnection(stream, peer=peer, on_call=handler, max_record=max_record)
    await conn.run(task_status=task_status)

"""Data paths of one open file: read-ahead and write-behind (RFC 8881 sections 18.22, 18.32, 18.3).

FUSE hands the client reads of at most 128 KiB (1 MiB once the mount's read-ahead is
raised, ``fusenfs.runner.READAHEAD_KB``) and writes of at most 1 MiB, one at a time per
descriptor.  Sending them one by one leaves the server idle between round trips,
so, like a kernel NFS client:

* ``ReadAhead`` notices sequential reads and keeps several ``maxread``-sized READs in
  flight ahead of the reader (1 MiB each by default, ``fusenfs.runner.DEFAULT_RSIZE``:
  one READ serves one FUSE read);
* ``WriteBehind`` acknowledges a write once its data is queued, sends UNSTABLE WRITEs
  (split by ``maxwrite``) concurrently, keeps the data until a COMMIT with the same write
  verifier makes it durable, and re-sends it FILE_SYNC if the verifier changed (the
  server rebooted, section 18.32.3).  An error is latched and reported by the next write,
  ``flush`` or ``fsync``, as close(2) reports it on a kernel NFS mount.

Both are bounded: read-ahead keeps at most ``window`` blocks; write-behind at most
``max_inflight`` WRITEs in flight and ``max_uncommitted`` bytes held before it COMMITs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from session.errors import NFSClientError
from session.session import UNINTERRUPTED
from session.xdr.codec import Buffer
from session.xdr.const import stable_how4

log = logging.getLogger("fusenfs.io")

ReadFn = Callable[[int, int], Awaitable[tuple[Buffer, bool]]]
WriteFn = Callable[[int, Buffer, stable_how4], Awaitable[tuple[int, stable_how4, bytes]]]
#: Several WRITEs in one COMPOUND: pieces [(offset, data)] -> (a (count, committed,
#: writeverf) for each piece written, in order, and the error that stopped the rest).
WriteManyFn = Callable[
    [list[tuple[int, Buffer]], stable_how4],
    Awaitable[tuple[list[tuple[int, stable_how4, bytes]], NFSClientError | None]],
]
CommitFn = Callable[[], Awaitable[bytes]]


@dataclass(slots=True)
class _Block:
    done: trio.Event = field(default_factory=trio.Event)
    data: Buffer = b""
    eof: bool = False
    error: BaseException | None = None


class ReadAhead:
    """Sequential read-ahead over ``read_fn(offset, count) -> (data, eof)``.

    One per file (inode), shared by all its open files: each ``read`` may bring the
    READ function of its own open (its stateid and credential); blocks it fetches serve
    every reader.  Writes, truncation and a changed change attribute must
    ``invalidate`` what they make stale (POSIX read-after-write on one client).

    Args:
        read_fn: one READ of at most ``count`` bytes (bytes, offsets in bytes): the
            default when ``read`` is given none.
        block: READ size in bytes (the session's maxread).
        ahead: blocks to keep in flight beyond the one being read (a count), reached
            by growing one block per sequential read.
        nursery: where prefetch tasks run.
    """

    def __init__(self, read_fn: ReadFn, block: int, ahead: int, nursery: trio.Nursery) -> None:
        self._read = read_fn
        self.block = block
        self.ahead = ahead
        self._nursery = nursery
        self._blocks: dict[int, _Block] = {}
        self._next_offset = 0
        self._streak = 0  # sequential reads before this one (a count)
        self.reads = 0
        self.prefetched = 0

    def invalidate(self) -> None:
        """Forget every cached block (the file changed under us)."""
        self._blocks.clear()

    def invalidate_range(self, offset: int, length: int) -> None:
        """Forget the blocks that hold any byte of ``[offset, offset + length)``, and the
        block before it (it may end short of the range: a stale end of file).

        Blocks still being fetched are forgotten too; their READ finishes unused.
        """
        first = max(offset // self.block - 1, 0)
        last = (offset + max(length, 1) - 1) // self.block
        for index in [i for i in self._blocks if first <= i <= last]:
            del self._blocks[index]

    def _start(self, index: int, read_fn: ReadFn) -> _Block:
        blk = self._blocks.get(index)
        if blk is None:
            blk = _Block()
            self._blocks[index] = blk
            self._nursery.start_soon(self._fetch, index, blk, read_fn)
        return blk

    async def _read_range(
        self, offset: int, size: int, read_fn: ReadFn | None = None
    ) -> tuple[Buffer, bool]:
        """``size`` bytes at ``offset`` in as many READs as it takes: (data, eof).

        A READ may return fewer bytes than asked without being at end of file (RFC 8881
        section 18.22.3); FUSE would take a short reply for end of file.  One READ's
        data is returned as it came (a view of the reply, no copy).
        """
        read = read_fn or self._read
        parts: list[Buffer] = []
        got = 0
        while got < size:
            data, eof = await read(offset + got, size - got)
            parts.append(data)
            got += len(data)
            if eof or not data:
                return _joined(parts), True
        return _joined(parts), False

    async def _fetch(self, index: int, blk: _Block, read_fn: ReadFn) -> None:
        # A prefetch task: only the mount's shutdown cancels it.
        UNINTERRUPTED.set(True)
        try:
            blk.data, blk.eof = await self._read_range(index * self.block, self.block, read_fn)
        except NFSClientError as e:
            blk.error = e
        finally:
            blk.done.set()

    async def read(self, offset: int, size: int, read_fn: ReadFn | None = None) -> Buffer:
        """``size`` bytes at ``offset`` or fewer at end of file.

        Args:
            read_fn: the READ to use for what must be fetched (default: the one given
                at construction).

        Raises:
            NFSClientError: the READ that covers the range failed.
        """
        read = read_fn or self._read
        self.reads += 1
        sequential = offset == self._next_offset
        self._next_offset = offset + size
        if not sequential and offset != 0:
            self._streak = 0
            data, _ = await self._read_range(offset, size, read)
            return data
        # The window grows by a block with each sequential read, as the kernel's
        # read-ahead does: reading the head of a large file costs one block.
        ahead = min(self.ahead, self._streak)
        self._streak = self._streak + 1 if sequential else 1
        first = offset // self.block
        last = (offset + size - 1) // self.block
        for index in range(first, last + 1 + ahead):
            if index > last and index not in self._blocks:
                self.prefetched += 1
            self._start(index, read)
        for index in [i for i in self._blocks if i < first - 1]:
            del self._blocks[index]
        out: list[Buffer] = []
        for index in range(first, last + 1):
            blk = self._blocks[index]
            await blk.done.wait()
            if blk.error is not None:
                self._blocks.pop(index, None)
                raise blk.error
            start = max(offset - index * self.block, 0)
            end = min(offset + size - index * self.block, len(blk.data))
            if start < end:
                out.append(memoryview(blk.data)[start:end])  # a view: no copy
            if blk.eof or len(blk.data) < self.block:
                # Nothing beyond end of file: do not keep prefetching past it.
                for later in [i for i in self._blocks if i > index]:
                    del self._blocks[later]
                break
        return _joined(out)


def _joined(parts: list[Buffer]) -> Buffer:
    """One buffer of ``parts``: the only one as it is, else one copy."""
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


class WriteBehind:
    """Concurrent UNSTABLE writes with COMMIT and verifier checking.

    Small writes are gathered (contiguous ones joined, up to ``gather_limit`` bytes)
    instead of sent one by one: a file written in a few small pieces and closed costs
    one WRITE, which the caller can send FILE_SYNC together with CLOSE
    (``take_final``).  With ``write_many_fn``, a small write that does not join the
    gathered piece puts that piece aside, and the pieces put aside go together, one
    WRITE each in one COMPOUND, once there are ``max_batch`` of them or
    ``gather_limit`` bytes: small random writes cost a fraction of a COMPOUND each
    (the operations run in order, so a later piece overwrites an earlier one as it
    would have on its own).  Anything that needs the data on the server (``drain``,
    ``commit``, a large write that does not join the gathered piece) sends it first.

    Args:
        write_fn: one WRITE: (offset, data, stable) -> (count, committed, writeverf).
        commit_fn: COMMIT of the whole file -> writeverf.
        block: bytes per WRITE (the server's maxwrite, capped).
        nursery: where WRITE tasks run.
        max_inflight: WRITEs in flight at once (a count).
        max_uncommitted: bytes held for a possible re-send before a COMMIT is forced.
        gather_limit: writes smaller than this many bytes are gathered (0: never).
        write_many_fn: several WRITEs in one COMPOUND (None: one COMPOUND each).
        max_batch: pieces put aside at most before they are sent (a count: the WRITEs
            one COMPOUND may hold).
    """

    def __init__(
        self,
        write_fn: WriteFn,
        commit_fn: CommitFn,
        block: int,
        nursery: trio.Nursery,
        max_inflight: int = 16,
        max_uncommitted: int = 64 * 1024 * 1024,
        gather_limit: int = 64 * 1024,
        write_many_fn: WriteManyFn | None = None,
        max_batch: int = 14,
    ) -> None:
        self._write = write_fn
        self._write_many = write_many_fn
        self.max_batch = max(1, max_batch)
        self._batch: list[tuple[int, Buffer]] = []  # pieces put aside, in write order
        self._batch_bytes = 0
        # The byte ranges [start, end) of each WRITE task in flight, and its end.
        self._ranges: dict[int, tuple[list[tuple[int, int]], trio.Event]] = {}
        # WRITE tasks start in the order they are asked for (trio's Lock is FIFO): one
        # that waits for an overlapping WRITE is not overtaken by a later one.
        self._order = trio.Lock()
        self._range_ids = itertools.count()
        self._commit = commit_fn
        self.block = block
        self._nursery = nursery
        self._slots = trio.Semaphore(max_inflight)
        self._max_inflight = max_inflight
        self.max_uncommitted = max_uncommitted
        self._inflight = 0
        self._idle = trio.Event()
        self._idle.set()
        self._uncommitted: list[tuple[int, Buffer, bytes]] = []  # (offset, data, verf)
        self._uncommitted_bytes = 0
        self._error: NFSClientError | None = None
        self.gather_limit = gather_limit
        self._gathered = bytearray()
        self._gather_offset = 0
        self._written_end = 0  # see written_end
        self._final_rid: int | None = None  # the range of take_final's data, while out
        self.writes = 0
        self.commits = 0
        self.resends = 0

    @property
    def busy(self) -> bool:
        """Data written here is not yet known to have reached the server."""
        return self._inflight > 0 or bool(self._gathered) or bool(self._batch)

    @property
    def written_end(self) -> int:
        """Where the furthest data written here ends (an offset in bytes; 0 before the
        first write), lowered by ``truncated``.

        The file is at least this long.  A size the server sent with a listing or a
        lookup may be older than the WRITEs (the server answered it before them, or
        while they were still on their way), so whoever shows the file's size from
        such a reply shows at least this (a smaller size would make the kernel cut the
        file short under its writer).
        """
        return self._written_end

    def truncated(self, size: int) -> None:
        """The file was cut to ``size`` bytes (SETATTR, O_TRUNC) through this mount."""
        self._written_end = min(self._written_end, size)

    @property
    def clean(self) -> bool:
        """Nothing gathered, in flight or waiting for COMMIT, and no latched error."""
        return not (self.busy or self._uncommitted or self._error)

    def take_final(self) -> tuple[int, bytes] | None:
        """The gathered data (offset, bytes), taken away, if it is all this writer holds.

        For the last compound of a file (WRITE FILE_SYNC4, then CLOSE): when nothing is
        in flight or waiting for COMMIT, that one WRITE makes everything durable.
        None otherwise (then ``commit``).  The data counts as in flight until the
        caller says how its compound ended: ``final_sent`` once the WRITE was
        answered, ``restore`` (the data back, to be sent the usual way) if it failed
        or wrote less.  Meanwhile drains wait for it, and a later write of its bytes
        waits too (see ``_claim``).
        """
        # Data already taken and not yet back counts in ``_inflight``.
        if not self._gathered or self._inflight or self._uncommitted or self._error or self._batch:
            return None
        data, self._gathered = bytes(self._gathered), bytearray()
        offset = self._gather_offset
        self._begin_in_flight()
        self._final_rid = self._hold([(offset, offset + len(data))])
        return offset, data

    def final_sent(self) -> None:
        """The caller's compound with the data of ``take_final`` was answered: the
        data is on the server (FILE_SYNC4), and no longer in flight here."""
        rid, self._final_rid = self._final_rid, None
        if rid is not None:
            self._unhold(rid)
            self._done_in_flight()

    def restore(self, final: tuple[int, bytes]) -> None:
        """Put back (the unwritten rest of) what ``take_final`` gave, after the
        caller's compound failed or its WRITE was short; it goes the usual way."""
        offset, data = final
        if self._gathered:
            raise ValueError("restore after new writes were gathered")
        self._gather_offset, self._gathered = offset, bytearray(data)
        self.final_sent()  # no longer out: gathered again

    async def _send_gathered(self) -> None:
        """Send the gathered piece and the pieces put aside (one COMPOUND for all)."""
        self._put_aside()
        await self._send_batch()

    def _put_aside(self) -> None:
        """Move the gathered piece to the pieces sent together."""
        if self._gathered:
            self._batch.append((self._gather_offset, bytes(self._gathered)))
            self._batch_bytes += len(self._gathered)
            self._gathered = bytearray()

    async def _send_batch(self) -> None:
        """Start the WRITEs of the pieces put aside: one COMPOUND with a WRITE for each
        (a plain WRITE for one).  Their writes were acknowledged: if the caller is
        cancelled (a FUSE interrupt) before the WRITE task starts, the pieces stay put
        aside for the next drain instead of being lost."""
        pieces, self._batch, self._batch_bytes = self._batch, [], 0
        if not pieces:
            return
        try:
            if len(pieces) == 1:
                await self._queue(*pieces[0])
            else:
                rid = await self._claim([(off, off + len(data)) for off, data in pieces])
                self._nursery.start_soon(self._send, pieces, rid)
        except BaseException:
            self._batch[:0] = pieces
            self._batch_bytes += sum(len(data) for _, data in pieces)
            raise

    def _raise_latched(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    async def write(self, offset: int, data: Buffer) -> int:
        """Queue ``data`` at ``offset``; returns ``len(data)`` once the WRITEs are in flight.

        ``data`` is bytes or a read-only view (a FUSE request buffer): it is sent and
        held for COMMIT as it is, so nothing may change it afterwards.

        Raises:
            NFSClientError: a previous write of this file failed (latched).
        """
        self._raise_latched()
        self._written_end = max(self._written_end, offset + len(data))
        if self._uncommitted_bytes >= self.max_uncommitted:
            await self.commit()
        small = len(data) < self.gather_limit
        if self._gathered and (
            offset != self._gather_offset + len(self._gathered)
            or len(self._gathered) + len(data) > self.gather_limit
        ):
            if small and self._write_many is not None:
                self._put_aside()
                if len(self._batch) >= self.max_batch or self._batch_bytes >= self.gather_limit:
                    await self._send_batch()
            else:
                await self._send_gathered()
        elif self._batch and not small:
            await self._send_gathered()
        if small:
            if not self._gathered:
                self._gather_offset = offset
            self._gathered += data
            return len(data)
        await self._queue(offset, data)
        return len(data)

    async def _queue(self, offset: int, data: Buffer) -> None:
        """Start the WRITEs of ``data`` at ``offset`` (split by ``block``)."""
        view = memoryview(data)
        for start in range(0, len(data), self.block):
            # One FUSE write usually fits one WRITE: then no copy at all.
            chunk = data if len(data) <= self.block else bytes(view[start : start + self.block])
            at = offset + start
            rid = await self._claim([(at, at + len(chunk))])
            self._nursery.start_soon(self._send, [(at, chunk)], rid)

    async def _claim(self, ranges: list[tuple[int, int]]) -> int:
        """A WRITE slot (``max_inflight``) for a task that writes ``ranges``, once no WRITE
        in flight overlaps them: WRITEs in flight at once may run on the server in any
        order, so a later write of the same bytes must not overtake an earlier one.
        Claims are granted in the order asked (``_order``); the caller starts its task
        at once, with no checkpoint in between.  Returns the id under which the ranges
        stay known until ``_release``.

        The data counts as in flight from the start of the claim: it has left the
        gathered piece and the pieces put aside, and a drain of another task (a
        GETATTR's) must wait for it as for a WRITE already sent."""
        self._begin_in_flight()
        try:
            async with self._order:
                while True:
                    earlier = next(
                        (
                            done
                            for held, done in self._ranges.values()
                            if any(s < end and start < e for s, e in held for start, end in ranges)
                        ),
                        None,
                    )
                    if earlier is None:
                        break
                    await earlier.wait()
                await self._slots.acquire()
        except BaseException:
            self._done_in_flight()
            raise
        return self._hold(ranges)

    def _hold(self, ranges: list[tuple[int, int]]) -> int:
        """Make ``ranges`` known as being written (``_claim`` waits for them); the id."""
        rid = next(self._range_ids)
        self._ranges[rid] = (ranges, trio.Event())
        return rid

    def _unhold(self, rid: int) -> None:
        """The ranges held under ``rid`` are written (or given up): wake who waits."""
        _, done = self._ranges.pop(rid)
        done.set()

    def _begin_in_flight(self) -> None:
        """One more WRITE in flight: drains wait until it is over."""
        self._inflight += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def _done_in_flight(self) -> None:
        """One WRITE in flight is over, or its claim failed; the last wakes drains."""
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    def _release(self, rid: int) -> None:
        """A WRITE task is over: its slot and its ranges are free."""
        self._unhold(rid)
        self._slots.release()
        self._done_in_flight()

    async def _write_fully(self, offset: int, data: Buffer, stable: stable_how4) -> None:
        """WRITE ``data`` at ``offset``, continuing after short writes (section 18.32.3).

        Pieces the server left UNSTABLE are held, with their verifier, for COMMIT.
        """
        sent = 0
        while sent < len(data):
            count, committed, verf = await self._write(offset + sent, data[sent:], stable)
            if count <= 0:
                raise NFSClientError(f"server wrote 0 bytes at offset {offset + sent}")
            self._written(offset + sent, data[sent : sent + count], committed, verf)
            sent += count

    def _written(self, offset: int, data: Buffer, committed: stable_how4, verf: bytes) -> None:
        """One WRITE wrote ``data`` at ``offset``: held, with its verifier, for COMMIT
        if the server left it UNSTABLE."""
        self.writes += 1
        if committed == stable_how4.UNSTABLE4:
            self._uncommitted.append((offset, data, verf))
            self._uncommitted_bytes += len(data)

    async def _send(self, pieces: list[tuple[int, Buffer]], rid: int) -> None:
        # A write-behind task: only the mount's shutdown cancels it.  UNSTABLE WRITEs of
        # ``pieces``: one, or several in one COMPOUND (a short one's rest on its own).
        UNINTERRUPTED.set(True)
        try:
            if len(pieces) == 1 or self._write_many is None:
                for offset, data in pieces:
                    await self._write_fully(offset, data, stable_how4.UNSTABLE4)
            else:
                written, error = await self._write_many(pieces, stable_how4.UNSTABLE4)
                for (offset, data), (count, committed, verf) in zip(pieces, written, strict=False):
                    self._written(offset, data[:count], committed, verf)
                    if count < len(data):
                        # A short WRITE (section 18.32.3): the rest on its own.
                        await self._write_fully(offset + count, data[count:], stable_how4.UNSTABLE4)
                if error is not None:
                    raise error
        except NFSClientError as e:
            if self._error is None:
                self._error = e
        finally:
            self._release(rid)

    async def drain(self) -> None:
        """Send what is gathered, then wait until no WRITE is in flight (the data has
        reached the server, maybe unstable)."""
        await self._send_gathered()
        while self._inflight:
            await self._idle.wait()

    async def commit(self) -> None:
        """Drain, COMMIT, and re-send FILE_SYNC anything whose verifier changed.

        Raises:
            NFSClientError: a write or the commit failed.
        """
        await self.drain()
        self._raise_latched()
        if not self._uncommitted:
            return
        held, self._uncommitted = self._uncommitted, []
        held_bytes, self._uncommitted_bytes = self._uncommitted_bytes, 0
        verf: bytes | None = None
        try:
            verf = await self._commit()
        finally:
            if verf is None:
                # Not known to be durable: keep it for the next COMMIT.
                self._uncommitted = held + self._uncommitted
                self._uncommitted_bytes += held_bytes
        self.commits += 1
        stale = [(off, data) for off, data, v in held if v != verf]
        if stale:
            log.warning(
                "write verifier changed (server restart?): re-sending %d writes", len(stale)
            )
            done = 0
            try:
                for off, data in stale:
                    self.resends += 1
                    await self._write_fully(off, data, stable_how4.FILE_SYNC4)
                    done += 1
            finally:
                if done < len(stale):
                    # Re-send the rest at the next COMMIT (no verifier matches b"").
                    rest = [(off, data, b"") for off, data in stale[done:]]
                    self._uncommitted = rest + self._uncommitted
                    self._uncommitted_bytes += sum(len(data) for _, data in stale[done:])

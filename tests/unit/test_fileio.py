"""Read-ahead and write-behind over fake READ / WRITE / COMMIT functions (no sockets).

The fakes keep a bytes "server file", take a little (mock) time per call so that calls
overlap, and count what they were asked.  RFC 8881 sections 18.22 (READ), 18.32 (WRITE,
write verifier) and 18.3 (COMMIT).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from fusenfs.fileio import ReadAhead, WriteBehind
from session.errors import NFSClientError
from session.session import UNINTERRUPTED
from session.status import NFS4Error, nfs4_error
from session.xdr.codec import Buffer
from session.xdr.const import nfsstat4, stable_how4

KiB = 1024
TIMEOUT = 30  # mock seconds; with the autojump clock nothing really waits


@pytest.fixture
async def nursery_() -> AsyncIterator[trio.Nursery]:
    """A nursery for prefetch / write tasks, cancelled after the test."""
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


# ======================================================================== read-ahead
class FakeReader:
    """``read_fn`` over ``data``: at most ``max_reply`` bytes per READ, eof at the end."""

    def __init__(self, data: bytes, max_reply: int | None = None, latency: float = 0.01):
        self.data = data
        self.max_reply = max_reply
        self.latency = latency
        self.calls: list[tuple[int, int]] = []
        self.fail_offsets: set[int] = set()
        self.inflight = 0
        self.max_inflight = 0

    async def read(self, offset: int, count: int) -> tuple[bytes, bool]:
        self.calls.append((offset, count))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await trio.sleep(self.latency)
            if offset in self.fail_offsets:
                raise nfs4_error(nfsstat4.NFS4ERR_IO, 1, "READ")
            if self.max_reply is not None:
                count = min(count, self.max_reply)
            chunk = self.data[offset : offset + count]
            return chunk, offset + len(chunk) >= len(self.data)
        finally:
            self.inflight -= 1


async def read_all(ra: ReadAhead, piece: int) -> bytes:
    out = bytearray()
    offset = 0
    while True:
        chunk = await ra.read(offset, piece)
        if not chunk:
            return bytes(out)
        assert len(chunk) <= piece
        out += chunk
        offset += len(chunk)


@pytest.mark.parametrize("size", [0, 1, 128 * KiB, 1024 * KiB, 1024 * KiB + 12345])
async def test_sequential_reads_return_exact_data(
    size: int, nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    data = os.urandom(size)
    fake = FakeReader(data)
    ra = ReadAhead(fake.read, block=256 * KiB, ahead=3, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        assert await read_all(ra, 128 * KiB) == data
    # Every block of the file was fetched once, however many 128 KiB reads used it.
    inside = [off for off, _ in fake.calls if off < size]
    assert sorted(inside) == sorted(set(inside))
    assert len(inside) == -(-size // (256 * KiB))


async def test_read_ahead_keeps_blocks_in_flight(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = 128 * KiB
    data = os.urandom(16 * block)
    fake = FakeReader(data)
    ra = ReadAhead(fake.read, block=block, ahead=4, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        for index in range(5):  # the window grows to 4 blocks ahead
            assert await ra.read(index * block, block) == data[index * block : (index + 1) * block]
        # The fifth read (block 4) had blocks 5..8 in flight: 4 ahead.
        assert ra.prefetched == 7
        await trio.testing.wait_all_tasks_blocked()  # their READs are sent
        assert sorted(off for off, _ in fake.calls) == [i * block for i in range(9)]
        await trio.sleep(fake.latency)  # blocks 5..8 arrive
        start = trio.current_time()
        assert await ra.read(5 * block, block) == data[5 * block : 6 * block]
        # Block 5 was already there: no waiting for a READ round trip.
        assert trio.current_time() == start
        assert ra.prefetched == 8  # block 9 joins the window
        await trio.sleep(fake.latency / 2)  # its READ is sent (not yet answered)
        assert (9 * block, block) in fake.calls
        assert len(fake.calls) == 10


async def test_read_ahead_grows_with_sequential_reads(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Reading the head of a large file fetches one block, not the whole window: each
    sequential read lets one more block run ahead, up to ``ahead``."""
    block = 128 * KiB
    data = os.urandom(16 * block)
    fake = FakeReader(data)
    ra = ReadAhead(fake.read, block=block, ahead=4, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        assert await ra.read(0, 100) == data[:100]
        await trio.testing.wait_all_tasks_blocked()
        assert [off for off, _ in fake.calls] == [0]  # block 0 only
        assert ra.prefetched == 0
        assert await ra.read(100, 100) == data[100:200]
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(off for off, _ in fake.calls) == [0, block]  # one ahead
        assert await ra.read(200, block) == data[200 : 200 + block]
        assert ra.prefetched == 3  # blocks 1..3: two ahead of block 1
        assert fake.max_inflight <= 3
        # A jump elsewhere starts over: the exact range, no window.
        calls = len(fake.calls)
        assert await ra.read(10 * block + 5, 10) == data[10 * block + 5 : 10 * block + 15]
        assert len(fake.calls) == calls + 1


async def test_read_ahead_block_is_completed_from_short_replies(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    data = os.urandom(600 * KiB)
    fake = FakeReader(data, max_reply=100 * KiB)  # a server with a smaller maxread
    ra = ReadAhead(fake.read, block=256 * KiB, ahead=1, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        assert await read_all(ra, 128 * KiB) == data


async def test_random_access_reads_directly(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = 128 * KiB
    data = os.urandom(32 * block)
    fake = FakeReader(data)
    ra = ReadAhead(fake.read, block=block, ahead=4, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        for offset in (20 * block + 7, 3 * block + 100, 31 * block, 9 * block - 1):
            fake.calls.clear()
            assert await ra.read(offset, 4096) == data[offset : offset + 4096]
            assert fake.calls == [(offset, 4096)]  # no prefetch for a random read
        assert ra.prefetched == 0


async def test_prefetch_reads_are_marked_uninterrupted_and_random_reads_are_not(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Blocks are fetched in tasks of the mount's nursery, which no FUSE interrupt
    cancels: their READs run ``UNINTERRUPTED`` (cancelled at shutdown, a READ frees its
    slot instead of going to a keeper task).  A random read runs in the FUSE request's
    own task, which an interrupt may cancel: it is not marked."""
    block = 128 * KiB
    data = os.urandom(32 * block)
    fake = FakeReader(data)
    marks: list[tuple[int, bool]] = []

    async def read(offset: int, count: int) -> tuple[bytes, bool]:
        marks.append((offset, UNINTERRUPTED.get()))
        return await fake.read(offset, count)

    ra = ReadAhead(read, block=block, ahead=2, nursery=nursery_)
    random_offset = 20 * block + 7
    with trio.fail_after(TIMEOUT):
        assert await ra.read(0, block) == data[:block]
        assert await ra.read(block, block) == data[block : 2 * block]
        assert await ra.read(random_offset, 4096) == data[random_offset : random_offset + 4096]
        await trio.testing.wait_all_tasks_blocked()
    assert sorted(marks) == [(0, True), (block, True), (2 * block, True), (random_offset, False)]
    assert UNINTERRUPTED.get() is False  # the prefetch tasks' setting stays theirs


async def test_random_read_is_completed_from_short_replies(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A READ may return fewer bytes than asked without eof (RFC 8881 section 18.22.3);
    FUSE takes a short read for end of file, so the client must ask for the rest."""
    data = os.urandom(1024 * KiB)
    fake = FakeReader(data, max_reply=32 * KiB)
    ra = ReadAhead(fake.read, block=128 * KiB, ahead=2, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        offset = 500 * KiB + 3
        assert await ra.read(offset, 128 * KiB) == data[offset : offset + 128 * KiB]


async def test_reads_at_and_past_end_of_file(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    data = os.urandom(300 * KiB)
    fake = FakeReader(data)
    ra = ReadAhead(fake.read, block=128 * KiB, ahead=2, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        assert await ra.read(0, 128 * KiB) == data[: 128 * KiB]
        assert await ra.read(128 * KiB, 128 * KiB) == data[128 * KiB : 256 * KiB]
        assert await ra.read(256 * KiB, 128 * KiB) == data[256 * KiB :]  # short: EOF
        assert await ra.read(300 * KiB, 128 * KiB) == b""
        assert await ra.read(10 * 1024 * KiB, 4096) == b""  # far past the end


async def test_read_error_propagates_and_is_not_cached(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = 64 * KiB
    data = os.urandom(8 * block)
    fake = FakeReader(data)
    fake.fail_offsets.add(2 * block)
    ra = ReadAhead(fake.read, block=block, ahead=2, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        assert await ra.read(0, block) == data[:block]
        assert await ra.read(block, block) == data[block : 2 * block]
        with pytest.raises(NFS4Error) as info:
            await ra.read(2 * block, block)
        assert info.value.status == nfsstat4.NFS4ERR_IO
        fake.fail_offsets.clear()  # the server recovered: a retry reads it again
        assert await ra.read(2 * block, block) == data[2 * block : 3 * block]


async def test_invalidate_drops_cached_blocks(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    block = 64 * KiB
    old = bytes(4 * block)
    fake = FakeReader(old)
    ra = ReadAhead(fake.read, block=block, ahead=2, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        assert await ra.read(0, block // 2) == old[: block // 2]
        assert await ra.read(block // 2, block // 2) == old[block // 2 : block]  # 1 ahead
        await trio.sleep(1)  # let the prefetches land
        fake.data = b"\x01" * (4 * block)  # the file changed on the server
        assert await ra.read(block, block) == old[block : 2 * block]  # cached
        ra.invalidate()
        assert await ra.read(2 * block, block) == fake.data[2 * block : 3 * block]
        assert await ra.read(0, block) == fake.data[:block]


# ======================================================================= write-behind
class FakeWriter:
    """WRITE and COMMIT on a bytearray "server file" with a write verifier.

    ``stable_store`` is what survives a server restart: FILE_SYNC writes go there at once,
    UNSTABLE ones only at COMMIT.  ``restart()`` loses the unstable data and changes the
    verifier, as a rebooted server does (RFC 8881 section 18.32.3).
    """

    def __init__(self, max_count: int | None = None, latency: float = 0.01) -> None:
        self.file = bytearray()
        self.stable_store = bytearray()
        self.verf = b"verf-001"
        self.max_count = max_count
        self.latency = latency
        self.writes: list[tuple[int, int, stable_how4]] = []
        self.commits = 0
        self.inflight = 0
        self.max_inflight = 0
        self.fail_offsets: set[int] = set()
        self.restart_at_commit = False
        self.fail_commits = 0
        self.fail_file_sync = 0
        self.kinds: set[str] = set()  # the types of the data WRITEs were given
        self.latency_at: dict[int, float] = {}  # offset -> latency of the next WRITE there
        self.compounds = 0  # write_many calls

    @staticmethod
    def _put(buf: bytearray, offset: int, data: Buffer) -> None:
        if len(buf) < offset + len(data):
            buf.extend(bytes(offset + len(data) - len(buf)))
        buf[offset : offset + len(data)] = data

    async def write(
        self, offset: int, data: Buffer, stable: stable_how4
    ) -> tuple[int, stable_how4, bytes]:
        self.kinds.add(type(data).__name__)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await trio.sleep(self.latency_at.pop(offset, self.latency))
            if offset in self.fail_offsets:
                raise nfs4_error(nfsstat4.NFS4ERR_NOSPC, 1, "WRITE")
            if stable == stable_how4.FILE_SYNC4 and self.fail_file_sync:
                self.fail_file_sync -= 1
                raise nfs4_error(nfsstat4.NFS4ERR_IO, 1, "WRITE")
            if self.max_count is not None:
                data = data[: self.max_count]
            self.writes.append((offset, len(data), stable))
            self._put(self.file, offset, data)
            if stable != stable_how4.UNSTABLE4:
                self._put(self.stable_store, offset, data)
            return len(data), stable, self.verf
        finally:
            self.inflight -= 1

    async def write_many(
        self, pieces: list[tuple[int, Buffer]], stable: stable_how4
    ) -> tuple[list[tuple[int, stable_how4, bytes]], NFSClientError | None]:
        """One COMPOUND of WRITEs: executed in order, stopping at the first that fails."""
        self.compounds += 1
        done: list[tuple[int, stable_how4, bytes]] = []
        for offset, data in pieces:
            try:
                done.append(await self.write(offset, data, stable))
            except NFSClientError as e:
                return done, e
        return done, None

    async def commit(self) -> bytes:
        await trio.sleep(self.latency)
        if self.fail_commits:
            self.fail_commits -= 1
            raise nfs4_error(nfsstat4.NFS4ERR_IO, 1, "COMMIT")
        self.commits += 1
        if self.restart_at_commit:
            self.restart_at_commit = False
            self.restart()
        self.stable_store[:] = self.file
        return self.verf

    def restart(self) -> None:
        self.file[:] = self.stable_store
        self.verf = b"verf-002"


def make_wb(
    fake: FakeWriter, nursery: trio.Nursery, block: int, inflight: int = 4, batch: int = 0
) -> WriteBehind:
    """A WriteBehind on ``fake``; with ``batch``, small writes elsewhere go up to that
    many in one COMPOUND (``write_many``)."""
    return WriteBehind(
        fake.write,
        fake.commit,
        block=block,
        nursery=nursery,
        max_inflight=inflight,
        write_many_fn=fake.write_many if batch else None,
        max_batch=batch or 1,
    )


async def test_written_data_reaches_the_file(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=64 * KiB)
    data = os.urandom(1000 * KiB + 17)
    with trio.fail_after(TIMEOUT):
        for off in range(0, len(data), 128 * KiB):
            assert await wb.write(off, data[off : off + 128 * KiB]) == len(
                data[off : off + 128 * KiB]
            )
        await wb.commit()
    assert bytes(fake.file) == data
    assert bytes(fake.stable_store) == data
    assert fake.commits == 1 and wb.commits == 1
    assert not wb.busy
    assert all(count <= 64 * KiB for _, count, _ in fake.writes)
    assert {stable for _, _, stable in fake.writes} == {stable_how4.UNSTABLE4}


async def test_write_returns_before_the_server_answers(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter(latency=5.0)
    wb = make_wb(fake, nursery_, block=64 * KiB)
    with trio.fail_after(TIMEOUT):
        start = trio.current_time()
        await wb.write(0, b"x" * (128 * KiB))
        assert trio.current_time() == start  # queued, not waited for
        assert wb.busy
        await wb.drain()
        assert not wb.busy and trio.current_time() - start == pytest.approx(5.0)
    assert bytes(fake.file) == b"x" * (128 * KiB)


async def test_written_end_outlasts_the_writes_until_a_truncation(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter(latency=5.0)
    wb = make_wb(fake, nursery_, block=64 * KiB)
    with trio.fail_after(TIMEOUT):
        assert wb.written_end == 0
        await wb.write(0, b"x" * (128 * KiB))
        await wb.write(256 * KiB, b"y" * (64 * KiB))
        await wb.write(128 * KiB, b"z" * (64 * KiB))  # an earlier range: the end stays
        assert wb.written_end == 320 * KiB and len(fake.file) < 320 * KiB
        await wb.drain()
        # On the server now, but a size it sent before the WRITEs may still arrive.
        assert wb.written_end == 320 * KiB
        wb.truncated(100)
        assert wb.written_end == 100
        await wb.write(0, b"small")  # gathered, not sent; inside the file
        assert wb.written_end == 100
        wb.truncated(1000)  # a truncation upwards: nothing written beyond 100
        assert wb.written_end == 100
        await wb.write(200, b"more")
        assert wb.written_end == 204
        await wb.drain()


async def test_inflight_writes_are_bounded(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=4 * KiB, inflight=3)
    data = os.urandom(256 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, data)  # 64 WRITEs
        await wb.commit()
    assert fake.max_inflight == 3
    assert len(fake.writes) == 64
    assert bytes(fake.file) == data


async def test_short_writes_continue_with_the_rest(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter(max_count=1000)
    wb = make_wb(fake, nursery_, block=8 * KiB)
    data = os.urandom(20 * KiB + 3)
    with trio.fail_after(TIMEOUT):
        await wb.write(100, data)
        await wb.commit()
    assert bytes(fake.file[100:]) == data
    assert all(count <= 1000 for _, count, _ in fake.writes)
    assert sum(count for _, count, _ in fake.writes) == len(data)
    assert wb.writes == len(fake.writes)


async def test_error_is_latched_and_raised_by_the_next_write(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    fake.fail_offsets.add(8 * KiB)
    wb = make_wb(fake, nursery_, block=4 * KiB)
    with trio.fail_after(TIMEOUT):
        assert await wb.write(0, b"a" * (16 * KiB)) == 16 * KiB  # accepted: queued
        await wb.drain()
        with pytest.raises(NFS4Error) as info:
            await wb.write(16 * KiB, b"b" * 4096)
        assert info.value.status == nfsstat4.NFS4ERR_NOSPC
        # Reported once; the next write goes through.
        fake.fail_offsets.clear()
        assert await wb.write(16 * KiB, b"b" * 4096) == 4096
        await wb.commit()


async def test_error_is_latched_and_raised_by_commit(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    fake.fail_offsets.add(0)
    wb = make_wb(fake, nursery_, block=4 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"a" * 4096)
        with pytest.raises(NFS4Error):
            await wb.commit()
        await wb.commit()  # nothing latched any more


async def test_zero_byte_write_reply_is_an_error(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter(max_count=0)
    wb = make_wb(fake, nursery_, block=4 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"a" * 10)
        with pytest.raises(NFSClientError, match="0 bytes"):
            await wb.commit()


async def test_verifier_change_resends_exactly_the_uncommitted_data(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=16 * KiB)
    first = os.urandom(64 * KiB)
    second = os.urandom(48 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, first)
        await wb.commit()  # durable under verf-001
        fake.writes.clear()
        await wb.write(64 * KiB, second)
        fake.restart_at_commit = True  # the server reboots before COMMIT: data lost
        await wb.commit()
    assert fake.verf == b"verf-002"
    resent = [(off, n) for off, n, stable in fake.writes if stable == stable_how4.FILE_SYNC4]
    # The three 16 KiB pieces of the second write, not the committed first one.
    assert sorted(resent) == [(64 * KiB + i * 16 * KiB, 16 * KiB) for i in range(3)]
    assert wb.resends == 3
    assert bytes(fake.stable_store) == first + second
    assert bytes(fake.file) == first + second


async def test_writes_behind_are_marked_uninterrupted_and_commit_resends_are_not(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The WRITEs sent behind the application run in the mount's nursery, which no FUSE
    interrupt cancels: they are ``UNINTERRUPTED``.  A re-send after a changed verifier
    is made by COMMIT in the caller's task (fsync, close), which an interrupt may
    cancel: it is not marked."""
    fake = FakeWriter()
    marks: list[tuple[stable_how4, bool]] = []

    async def write(
        offset: int, data: Buffer, stable: stable_how4
    ) -> tuple[int, stable_how4, bytes]:
        marks.append((stable, UNINTERRUPTED.get()))
        return await fake.write(offset, data, stable)

    wb = WriteBehind(write, fake.commit, block=16 * KiB, nursery=nursery_)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, os.urandom(32 * KiB))
        fake.restart_at_commit = True
        await wb.commit()
    assert marks == [
        (stable_how4.UNSTABLE4, True),
        (stable_how4.UNSTABLE4, True),
        (stable_how4.FILE_SYNC4, False),
        (stable_how4.FILE_SYNC4, False),
    ]
    assert UNINTERRUPTED.get() is False


async def test_views_of_fuse_request_buffers_are_sent_and_resent_without_a_copy(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Large writes come from pyfuse3 as read-only views of its request buffers
    (``enable_zero_copy_writes``): each becomes one WRITE of that very view, and the
    views kept for COMMIT are what is sent again when the verifier changed."""
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=1024 * KiB)
    blocks = [os.urandom(512 * KiB) for _ in range(4)]
    with trio.fail_after(TIMEOUT):
        for i, block in enumerate(blocks):
            await wb.write(i * 512 * KiB, memoryview(block).toreadonly())
        fake.restart_at_commit = True
        await wb.commit()
    assert fake.kinds == {"memoryview"}
    resent = [(off, n) for off, n, stable in fake.writes if stable == stable_how4.FILE_SYNC4]
    assert sorted(resent) == [(i * 512 * KiB, 512 * KiB) for i in range(4)]
    assert bytes(fake.stable_store) == b"".join(blocks)


async def test_resend_after_verifier_change_continues_short_writes(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter(max_count=5000)
    wb = make_wb(fake, nursery_, block=16 * KiB)
    data = os.urandom(16 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, data)
        fake.restart_at_commit = True
        await wb.commit()
    assert bytes(fake.stable_store) == data
    resent = sum(n for _, n, stable in fake.writes if stable == stable_how4.FILE_SYNC4)
    assert resent == len(data)


async def test_failed_commit_keeps_the_data_for_the_next_one(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Until a COMMIT succeeds the data is not known to be durable: a failed COMMIT
    must not drop it, or a server restart before the next COMMIT loses it silently."""
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=16 * KiB)
    data = os.urandom(64 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, data)
        fake.fail_commits = 1
        with pytest.raises(NFS4Error):
            await wb.commit()
        fake.restart()  # the unstable data is lost on the server; new verifier
        await wb.commit()
    assert wb.resends == 4
    assert bytes(fake.stable_store) == data


async def test_failed_resend_is_tried_again_at_the_next_commit(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=16 * KiB)
    data = os.urandom(64 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, data)
        fake.restart_at_commit = True
        fake.fail_file_sync = 1  # the first FILE_SYNC re-send fails
        with pytest.raises(NFS4Error):
            await wb.commit()
        await wb.commit()
    assert bytes(fake.stable_store) == data


async def test_same_verifier_means_no_resend(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=16 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"z" * (32 * KiB))
        await wb.commit()
        await wb.commit()  # nothing uncommitted: no COMMIT sent
    assert wb.resends == 0 and fake.commits == 1
    assert all(stable == stable_how4.UNSTABLE4 for _, _, stable in fake.writes)


async def test_uncommitted_limit_forces_a_commit(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Data held for a re-send is bounded: at ``max_uncommitted`` bytes (counted when the
    WRITEs complete) the next write COMMITs first."""
    fake = FakeWriter()
    wb = WriteBehind(
        fake.write,
        fake.commit,
        block=16 * KiB,
        nursery=nursery_,
        max_inflight=2,
        max_uncommitted=64 * KiB,
    )
    data = os.urandom(256 * KiB)
    with trio.fail_after(TIMEOUT):
        for off in range(0, len(data), 32 * KiB):
            await wb.write(off, data[off : off + 32 * KiB])
            await wb.drain()
        commits_while_writing = fake.commits
        await wb.commit()
    # 256 KiB in 64 KiB batches: three forced COMMITs, then the final one.
    assert commits_while_writing == 3
    assert fake.commits == 4
    assert bytes(fake.stable_store) == data


async def test_small_contiguous_writes_are_gathered_into_one_write(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A few small writes cost one WRITE: nothing is sent until the data is needed."""
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=64 * KiB)
    with trio.fail_after(TIMEOUT):
        for i in range(10):
            await wb.write(i * 10, b"%010d" % i)
        assert fake.writes == [] and wb.busy and not wb.clean
        await wb.commit()
    assert fake.writes == [(0, 100, stable_how4.UNSTABLE4)]
    assert bytes(fake.stable_store) == b"".join(b"%010d" % i for i in range(10))
    assert wb.clean


async def test_a_write_elsewhere_sends_the_gathered_piece_first(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=64 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"a" * 100)
        await wb.write(1000, b"b" * 100)  # not contiguous: the first piece goes now
        await wb.drain()  # and drain sends the second (a reader must see it)
    assert sorted((off, n) for off, n, _ in fake.writes) == [(0, 100), (1000, 100)]
    assert not wb.busy


async def test_a_write_of_bytes_in_flight_waits_for_the_earlier_write(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """WRITEs in flight at once may be executed in any order: a write of bytes that an
    earlier WRITE still in flight covers waits for it, so the later data is what the
    file keeps (POSIX: the last write wins).  Writes elsewhere do not wait."""
    fake = FakeWriter()
    fake.latency_at[0] = 2.0  # the first WRITE is slow: the second would overtake it
    wb = make_wb(fake, nursery_, block=64 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"a" * (64 * KiB))
        start = trio.current_time()
        await wb.write(128 * KiB, b"c" * (64 * KiB))
        assert trio.current_time() == start  # elsewhere: no wait
        await wb.write(0, b"b" * (64 * KiB))
        assert trio.current_time() - start == pytest.approx(2.0)
        await wb.commit()
    assert bytes(fake.file[: 64 * KiB]) == b"b" * (64 * KiB)
    assert [off for off, _, _ in fake.writes] == [128 * KiB, 0, 0]


async def test_drain_waits_for_a_write_another_task_is_still_starting(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A piece on its way to a WRITE slot is in flight for everyone: a second drain (a
    GETATTR's, while the release's COMMIT starts the last WRITE) returns only once the
    piece reached the server, and ``busy`` holds all along.  Otherwise the GETATTR
    reads the size from before the write, and the file looks short (a stat right after
    close(2) under a write delegation)."""
    fake = FakeWriter()
    fake.latency_at[0] = 1.0
    wb = make_wb(fake, nursery_, block=64 * KiB, inflight=1)
    drained: list[bytes] = []

    async def second_drain() -> None:
        await wb.drain()
        drained.append(bytes(fake.file[128 * KiB :]))

    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"a" * (64 * KiB))  # the only slot, for 1 s
        await wb.write(128 * KiB, b"tail")  # gathered
        async with trio.open_nursery() as n:
            n.start_soon(wb.drain)  # waits for the slot
            await trio.testing.wait_all_tasks_blocked()
            n.start_soon(second_drain)
            await trio.testing.wait_all_tasks_blocked()
            while not drained:
                assert wb.busy
                await trio.sleep(0.001)
    assert drained == [b"tail"]
    assert not wb.busy


async def test_small_writes_elsewhere_go_together_in_one_compound(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Small random writes: each piece is put aside and they go as one COMPOUND of
    WRITEs once ``max_batch`` are waiting (or at drain): one WRITE per piece, in write
    order, so a piece written twice ends with its second data."""
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=64 * KiB, batch=4)
    offsets = [7 * KiB, 1 * KiB, 9 * KiB, 3 * KiB, 1 * KiB, 5 * KiB]
    with trio.fail_after(TIMEOUT):
        for i, off in enumerate(offsets):
            await wb.write(off, bytes([65 + i]) * 100)
        await trio.testing.wait_all_tasks_blocked()
        assert fake.compounds == 1  # the first four pieces
        await wb.drain()
        assert fake.compounds == 2 and not wb.busy
        await wb.commit()
    assert [off for off, _, _ in fake.writes] == offsets
    assert fake.file[1 * KiB : 1 * KiB + 100] == b"E" * 100  # written twice: the second
    for i, off in enumerate(offsets):
        if i != 1:
            assert fake.file[off : off + 100] == bytes([65 + i]) * 100
    assert bytes(fake.stable_store) == bytes(fake.file) and wb.clean


async def test_an_interrupted_write_keeps_the_pieces_already_acknowledged(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A write cancelled (a FUSE interrupt) while the pieces put aside wait to go (here
    for a WRITE in flight over their bytes) fails itself, but the pieces of the writes
    before it, which were acknowledged, stay and reach the file at the next drain."""
    fake = FakeWriter()
    fake.latency_at[0] = 5.0
    wb = make_wb(fake, nursery_, block=64 * KiB, batch=2)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"a" * (64 * KiB))  # in flight for 5 s
        await wb.write(100, b"b" * 10)
        await wb.write(300, b"c" * 10)
        with trio.move_on_after(1) as scope:
            await wb.write(70000, b"d" * 10)  # two pieces aside: they must wait
        assert scope.cancelled_caught and wb.busy
        await wb.commit()
    assert bytes(fake.stable_store[100:110]) == b"b" * 10
    assert bytes(fake.stable_store[300:310]) == b"c" * 10
    assert len(fake.stable_store) == 64 * KiB  # the interrupted write: not done


async def test_a_failed_write_in_a_compound_latches_and_keeps_the_others(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A WRITE that fails stops the COMPOUND: the error is latched, and the pieces
    written before it are kept for COMMIT like any other (re-sent if the verifier
    changes); a short WRITE's rest goes on its own."""
    fake = FakeWriter(max_count=60)
    fake.fail_offsets.add(3000)
    wb = make_wb(fake, nursery_, block=64 * KiB, batch=8)
    with trio.fail_after(TIMEOUT):
        for off in (1000, 2000, 3000, 4000):
            await wb.write(off, b"w" * 100)
        await wb.drain()
        with pytest.raises(NFSClientError, match="NOSPC"):
            await wb.write(5000, b"x")
        fake.restart_at_commit = True
        await wb.commit()
    assert bytes(fake.stable_store[1000:1100]) == b"w" * 100  # short: 60, then 40
    assert bytes(fake.stable_store[2000:2100]) == b"w" * 100
    assert fake.stable_store[4000:4100] != b"w" * 100  # after the failure: not sent


async def test_take_final_gives_the_gathered_data_once_and_restore_puts_it_back(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The caller sends the last small piece itself (WRITE FILE_SYNC4 with CLOSE)."""
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=64 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"hello ")
        await wb.write(6, b"world")
        final = wb.take_final()
        assert final == (0, b"hello world")
        assert wb.take_final() is None and wb.busy  # on its way, in the caller's hands
        wb.restore(final)  # the caller's compound failed
        assert not wb.clean
        await wb.commit()
        assert wb.clean
    assert bytes(fake.stable_store) == b"hello world" and fake.commits == 1


async def test_a_drain_waits_for_the_final_piece_the_caller_is_writing(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """While close(2)'s COMPOUND (WRITE FILE_SYNC4, CLOSE) carries the data
    ``take_final`` gave, the writer is busy, and a drain (a stat's GETATTR from another
    process) returns only once the caller says the COMPOUND is over: a GETATTR
    answered before that WRITE would show the size from before it."""
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=64 * KiB)
    drained_at: list[float] = []

    async def drain() -> None:
        await wb.drain()
        drained_at.append(trio.current_time())

    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"tail")
        final = wb.take_final()
        assert final == (0, b"tail")
        async with trio.open_nursery() as n:
            n.start_soon(drain)
            await trio.sleep(1.0)  # the caller's COMPOUND
            assert wb.busy and not drained_at
            wb.final_sent()
        assert drained_at == [pytest.approx(1.0)]
        assert wb.clean and not fake.writes  # the caller wrote it, not the writer


async def test_take_final_refuses_when_other_data_waits_for_commit(
    nursery_: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeWriter()
    wb = make_wb(fake, nursery_, block=64 * KiB)
    with trio.fail_after(TIMEOUT):
        await wb.write(0, b"x" * (64 * KiB))  # big enough to go at once, UNSTABLE
        await wb.drain()
        await wb.write(64 * KiB, b"tail")
        assert wb.take_final() is None  # a FILE_SYNC of the tail would not cover the rest
        await wb.commit()
    assert fake.commits == 1 and len(fake.stable_store) == 64 * KiB + 4

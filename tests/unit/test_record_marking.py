"""Record marking, RFC 5531 section 11: RecordReader and frame_record."""

from __future__ import annotations

import os
import struct

import pytest

from session.errors import TransportError
from session.rpc import (
    DIRECT_RECORD_MIN,
    LAST_FRAGMENT,
    MAX_FRAGMENT,
    NEGOTIATED_MAXIMUM,
    PRE_SESSION_MAX_RECORD,
    PRE_SESSION_MAXIMUM,
    RPC_HEADER_ROOM,
    RecordReader,
    RecordTooLarge,
    frame_record,
    msg_type,
    session_max_record,
)


def fragment(payload: bytes, last: bool) -> bytes:
    """One fragment written by hand: 4-byte mark then the payload."""
    return struct.pack(">I", (LAST_FRAGMENT if last else 0) | len(payload)) + payload


def wire(record: bytes, max_fragment: int = MAX_FRAGMENT) -> bytes:
    return b"".join(frame_record(record, max_fragment))


# -- frame_record -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "max_fragment", "hex_wire"),
    [
        (b"", MAX_FRAGMENT, "80000000"),
        (b"\x01\x02\x03\x04", MAX_FRAGMENT, "80000004 01020304"),
        (b"\x01\x02\x03\x04", 4, "80000004 01020304"),
        (b"\x01\x02\x03\x04\x05", 4, "00000004 01020304 80000001 05"),
        (b"abcdefgh", 3, "00000003 616263 00000003 646566 80000002 6768"),
    ],
)
def test_frame_record_vectors(record: bytes, max_fragment: int, hex_wire: str) -> None:
    assert wire(record, max_fragment) == bytes.fromhex(hex_wire)


def test_frame_record_does_not_copy_single_fragment() -> None:
    record = os.urandom(1 << 20)
    pieces = frame_record(record)
    assert len(pieces) == 2
    assert pieces[1] is record


@pytest.mark.parametrize("bad", [0, -1, MAX_FRAGMENT + 1])
def test_frame_record_rejects_bad_fragment_size(bad: int) -> None:
    with pytest.raises(ValueError, match="max_fragment"):
        frame_record(b"x", bad)


# -- RecordReader -------------------------------------------------------------------------


def test_single_record_whole() -> None:
    reader = RecordReader()
    assert reader.feed(fragment(b"hello world!", last=True)) == [b"hello world!"]
    assert reader.buffered == 0


def test_several_records_in_one_chunk() -> None:
    data = wire(b"one") + wire(b"") + wire(b"three") + wire(b"fo")[:3]
    reader = RecordReader()
    assert reader.feed(data) == [b"one", b"", b"three"]
    assert reader.feed(wire(b"fo")[3:]) == [b"fo"]


def test_fed_one_byte_at_a_time() -> None:
    records = [b"", b"a", os.urandom(37), os.urandom(1000)]
    data = b"".join(wire(r, max_fragment=7) for r in records)
    reader = RecordReader()
    out: list[bytes | memoryview] = []
    for i in range(len(data)):
        out.extend(reader.feed(data[i : i + 1]))
    assert out == records


def test_multi_fragment_reassembly() -> None:
    data = fragment(b"abc", False) + fragment(b"defg", False) + fragment(b"h", True)
    assert RecordReader().feed(data) == [b"abcdefgh"]


def test_zero_length_fragments() -> None:
    data = (
        fragment(b"", False)
        + fragment(b"ab", False)
        + fragment(b"", False)
        + fragment(b"cd", False)
        + fragment(b"", True)  # an empty last fragment ends the record
        + fragment(b"", True)  # an empty record
    )
    reader = RecordReader()
    assert reader.feed(data) == [b"abcd", b""]


def test_mark_split_across_feeds() -> None:
    data = fragment(b"xyzw", True)
    reader = RecordReader()
    assert reader.feed(data[:1]) == []
    assert reader.feed(data[1:3]) == []
    assert reader.feed(data[3:6]) == []
    assert reader.feed(data[6:]) == [b"xyzw"]


def test_large_record_is_received_in_place() -> None:
    """A large one-fragment record offers its own buffer for the rest of its bytes: a
    socket can receive straight into it, and the record is that buffer (no join)."""
    record = os.urandom(DIRECT_RECORD_MIN * 3 + 5)
    data = fragment(record, last=True)
    reader = RecordReader()
    assert reader.receive_buffer() is None  # nothing announced yet
    assert reader.feed(data[:1000]) == []  # the mark and the first bytes, copied in
    assert reader.buffered == 996
    target = reader.receive_buffer()
    assert target is not None and len(target) == len(record) - 996
    target[:DIRECT_RECORD_MIN] = data[1000 : 1000 + DIRECT_RECORD_MIN]
    assert reader.received(DIRECT_RECORD_MIN) == []
    rest = data[1000 + DIRECT_RECORD_MIN :]
    target = reader.receive_buffer()
    assert target is not None and len(target) == len(rest)
    target[:] = rest
    del target
    (got,) = reader.received(len(rest))
    assert got == record
    assert reader.buffered == 0 and reader.receive_buffer() is None
    # Small records, and records in several fragments, are fed as before.
    assert reader.feed(fragment(b"small", True)) == [b"small"]
    big = os.urandom(DIRECT_RECORD_MIN)
    reader.feed(fragment(big[:10], False) + fragment(big[10:], True)[:100])
    assert reader.receive_buffer() is None


def test_large_record_buffers_are_used_again_when_free() -> None:
    """A buffer is used for the next large record only once no view of its last one
    is left; ``release_buffers`` drops them."""
    first, second = os.urandom(DIRECT_RECORD_MIN), os.urandom(DIRECT_RECORD_MIN)
    reader = RecordReader()
    (held,) = reader.feed(fragment(first, last=True))
    piece = held[10:20]  # a view of a view still refers to the buffer
    del held
    (other,) = reader.feed(fragment(second, last=True))
    assert bytes(piece) == first[10:20] and other == second  # a new buffer: nothing lost
    assert isinstance(other, memoryview) and isinstance(piece, memoryview)
    buffer_of_second = id(other.obj)  # (not the object: that would be a reference)
    del other
    (third,) = reader.feed(fragment(first, last=True))
    assert isinstance(third, memoryview)
    assert id(third.obj) == buffer_of_second  # free again: used again
    assert third == first and bytes(piece) == first[10:20]
    reader.release_buffers()  # a record still held keeps its buffer
    (fourth,) = reader.feed(fragment(second, last=True))
    assert third == first and fourth == second and bytes(piece) == first[10:20]


def test_received_counts_are_checked() -> None:
    reader = RecordReader()
    with pytest.raises(ValueError, match="no record is being received"):
        reader.received(1)
    reader.feed(struct.pack(">I", LAST_FRAGMENT | DIRECT_RECORD_MIN))
    with pytest.raises(ValueError, match="more than"):
        reader.received(DIRECT_RECORD_MIN + 1)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_accepts_other_buffers(kind: type[bytearray] | type[memoryview]) -> None:
    buf = bytearray(fragment(b"data", True))
    reader = RecordReader()
    out = reader.feed(kind(buf))
    buf[4:8] = b"XXXX"  # the reader must not keep a view of a mutable buffer
    assert out == [b"data"]


def test_hostile_length_raises_naming_the_length() -> None:
    reader = RecordReader(max_record=1024)
    with pytest.raises(
        RecordTooLarge, match=r"^record of 2147483647 bytes exceeds the maximum 1024$"
    ) as info:
        reader.feed(b"\xff\xff\xff\xff")
    assert info.value.length == 0x7FFFFFFF
    assert info.value.limit == 1024
    assert info.value.xid is None and info.value.mtype is None
    assert reader.failed is info.value
    assert isinstance(info.value, TransportError)
    # The stream cannot be resynchronised: the reader stays failed.
    with pytest.raises(RecordTooLarge):
        reader.feed(fragment(b"ok", True))


def test_record_limit_counts_all_fragments() -> None:
    reader = RecordReader(max_record=10)
    assert reader.feed(fragment(b"x" * 6, False)) == []
    with pytest.raises(RecordTooLarge, match="11 bytes") as info:
        reader.feed(fragment(b"y" * 5, True))
    assert info.value.complete
    reader = RecordReader(max_record=10)
    with pytest.raises(RecordTooLarge, match="record of at least 11 bytes") as info:
        reader.feed(fragment(b"x" * 11, False))
    assert not info.value.complete


def test_record_exactly_at_limit_is_accepted() -> None:
    reader = RecordReader(max_record=10)
    assert reader.feed(fragment(b"x" * 4, False) + fragment(b"y" * 6, True)) == [b"xxxxyyyyyy"]
    # The bound applies per record, not to the connection.
    assert reader.feed(fragment(b"z" * 10, True)) == [b"z" * 10]


def test_default_limit_allows_64_mib_payload_but_not_hostile() -> None:
    reader = RecordReader()
    assert reader.max_record > 64 * 1024 * 1024
    assert reader.feed(struct.pack(">I", LAST_FRAGMENT | (64 * 1024 * 1024 + 200))) == []
    with pytest.raises(RecordTooLarge):
        RecordReader().feed(struct.pack(">I", LAST_FRAGMENT | (1 << 30)))


def test_negative_limit_rejected() -> None:
    with pytest.raises(ValueError):
        RecordReader(max_record=-1)


@pytest.mark.parametrize("max_fragment", [MAX_FRAGMENT, 1 << 16, 100_000])
def test_large_record_in_64k_chunks(max_fragment: int) -> None:
    record = os.urandom(1 << 20)
    data = wire(record, max_fragment) + wire(b"next")
    reader = RecordReader()
    out: list[bytes | memoryview] = []
    for start in range(0, len(data), 1 << 16):
        out.extend(reader.feed(data[start : start + (1 << 16)]))
    assert out == [record, b"next"]
    assert reader.buffered == 0


def test_many_large_records_stay_linear() -> None:
    # 64 MiB in 64 KiB chunks: quadratic buffering would take minutes; linear is fast.
    record = bytes(range(256)) * 4096  # 1 MiB
    chunk = wire(record)
    reader = RecordReader()
    count = 0
    for _ in range(64):
        for start in range(0, len(chunk), 1 << 16):
            count += len(reader.feed(chunk[start : start + (1 << 16)]))
    assert count == 64


def test_tiny_fragments_are_coalesced() -> None:
    # 100 KiB as 1-byte fragments: the reader must not keep 100 000 separate pieces.
    payload = os.urandom(100_000)
    data = wire(payload, max_fragment=1)
    reader = RecordReader()
    assert reader.feed(data[:-5]) == []
    assert len(reader._pieces) == 1
    assert reader.buffered == len(payload) - 1
    assert reader.feed(data[-5:]) == [payload]


def _reply_head(xid: int, mtype: int = msg_type.REPLY) -> bytes:
    return struct.pack(">II", xid, mtype)


def test_refused_record_names_its_xid_and_type_when_they_came_with_the_mark() -> None:
    reader = RecordReader(max_record=1000, source=NEGOTIATED_MAXIMUM)
    data = struct.pack(">I", LAST_FRAGMENT | 2000) + _reply_head(0x1234ABCD) + bytes(100)
    with pytest.raises(RecordTooLarge) as info:
        reader.feed(data)
    assert str(info.value) == (
        "reply of 2000 bytes exceeds the negotiated maximum 1000 (xid 0x1234abcd)"
    )
    assert info.value.xid == 0x1234ABCD and info.value.mtype == msg_type.REPLY
    assert info.value.source == NEGOTIATED_MAXIMUM
    # a call (the back channel), its head split over two earlier fragments
    reader = RecordReader(max_record=1000)
    assert reader.feed(fragment(b"\0\0", False) + fragment(b"\0\7\0\0\0\0", False)) == []
    with pytest.raises(RecordTooLarge, match=r"^call of 1008 bytes .* \(xid 0x00000007\)$"):
        reader.feed(struct.pack(">I", LAST_FRAGMENT | 1000))
    # only the xid at hand: the type is unknown, so is the kind of record
    with pytest.raises(RecordTooLarge, match=r"^record of 2000 bytes .*\(xid 0x00000009\)$"):
        RecordReader(max_record=1000).feed(struct.pack(">II", LAST_FRAGMENT | 2000, 9))
    # a message type that is neither CALL nor REPLY
    with pytest.raises(RecordTooLarge, match=r"^record of") as info:
        RecordReader(max_record=1000).feed(struct.pack(">III", LAST_FRAGMENT | 2000, 0, 7))
    assert info.value.mtype is None and info.value.xid == 0


def test_records_before_a_refused_one_are_still_returned() -> None:
    reader = RecordReader(max_record=100)
    data = fragment(b"ok", True) + struct.pack(">I", LAST_FRAGMENT | 101) + _reply_head(5)
    assert reader.feed(data) == [b"ok"]
    assert reader.failed is not None and reader.failed.xid == 5
    with pytest.raises(RecordTooLarge):
        reader.feed(b"")


def test_limit_changed_while_running_applies_from_the_next_record() -> None:
    reader = RecordReader(max_record=100, source=PRE_SESSION_MAXIMUM)
    assert reader.feed(fragment(b"a" * 50, False)) == []
    reader.max_record = 60
    reader.max_record_source = NEGOTIATED_MAXIMUM
    # the record under way keeps the bound it started with (100)
    assert reader.feed(fragment(b"b" * 40, True)) == [b"a" * 50 + b"b" * 40]
    # the next one gets the new bound
    assert reader.feed(fragment(b"c" * 60, True)) == [b"c" * 60]
    with pytest.raises(RecordTooLarge, match="exceeds the negotiated maximum 60"):
        reader.feed(fragment(b"d" * 61, True))
    # raising the bound works the same way
    reader = RecordReader(max_record=10)
    reader.max_record = 1 << 20
    assert reader.feed(fragment(b"e" * 1000, True)) == [b"e" * 1000]


def test_pre_session_and_session_bounds() -> None:
    # EXCHANGE_ID's largest legal reply is about 5 KiB; the cap leaves ample room
    assert 16 * 1024 <= PRE_SESSION_MAX_RECORD <= 64 * 1024
    mib = 1 << 20
    assert session_max_record(mib + 4096, 16384) == mib + 4096
    assert session_max_record(4096, 200_000) == 200_000 + RPC_HEADER_ROOM
    assert session_max_record(0, 0) == PRE_SESSION_MAX_RECORD
    with pytest.raises(ValueError):
        session_max_record(-1, 0)

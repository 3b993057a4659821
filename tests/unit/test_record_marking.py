"""Record marking, RFC 5531 section 11: RecordReader and frame_record."""

from __future__ import annotations

import os
import struct

import pytest

from session.errors import TransportError
from session.rpc import (
    LAST_FRAGMENT,
    MAX_FRAGMENT,
    RecordReader,
    RecordTooLarge,
    frame_record,
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
    out: list[bytes] = []
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


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_accepts_other_buffers(kind: type[bytearray] | type[memoryview]) -> None:
    buf = bytearray(fragment(b"data", True))
    reader = RecordReader()
    out = reader.feed(kind(buf))
    buf[4:8] = b"XXXX"  # the reader must not keep a view of a mutable buffer
    assert out == [b"data"]


def test_hostile_length_raises_naming_the_length() -> None:
    reader = RecordReader(max_record=1024)
    with pytest.raises(RecordTooLarge, match=r"2147483647 bytes.*1024-byte limit") as info:
        reader.feed(b"\xff\xff\xff\xff")
    assert info.value.length == 0x7FFFFFFF
    assert info.value.limit == 1024
    assert isinstance(info.value, TransportError)
    # The stream cannot be resynchronised: the reader stays failed.
    with pytest.raises(RecordTooLarge):
        reader.feed(fragment(b"ok", True))


def test_record_limit_counts_all_fragments() -> None:
    reader = RecordReader(max_record=10)
    assert reader.feed(fragment(b"x" * 6, False)) == []
    with pytest.raises(RecordTooLarge, match="11 bytes"):
        reader.feed(fragment(b"y" * 5, True))


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
    out: list[bytes] = []
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

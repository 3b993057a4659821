"""Tests for session.xdr.fattr: bitmap4 helpers, attribute codecs, fattr4 vectors."""

from __future__ import annotations

import dataclasses
import random
import struct
import time
import tracemalloc

import pytest

from session.errors import XdrError
from session.xdr import fattr as fattr_module
from session.xdr.codec import Decoder, decode, encode
from session.xdr.const import FATTR4, fs4_status_type, layouttype4, nfs_ftype4, nfsstat4, time_how4
from session.xdr.fattr import (
    ATTR_CODECS,
    KNOWN_ATTR_WORDS,
    NFSAttrs,
    bitmap4_bits,
    bitmap4_from,
    bitmap4_to_set,
    decode_fattr4,
    decode_fattr4_partial,
    encode_fattr4,
    fattr4,
)
from session.xdr.nfs4 import (
    change_policy4,
    fs4_status,
    fs_location4,
    fs_locations4,
    fs_locations_info4,
    fs_locations_item4,
    fs_locations_server4,
    fsid4,
    mode_masked4,
    nfsace4,
    nfsacl41,
    nfstime4,
    settime4,
    specdata4,
)

T = nfstime4(1_700_000_000, 123)


def test_bitmap4_from_and_to_set() -> None:
    assert bitmap4_from([]) == []
    assert bitmap4_from([FATTR4.SIZE, FATTR4.FSID, FATTR4.MODE]) == [0x110, 0x2]
    assert bitmap4_from([0, 31, 32, 95]) == [0x80000001, 0x1, 0x80000000]
    assert bitmap4_to_set([0x80000001, 0x0, 0x80000000]) == {0, 31, 95}
    assert bitmap4_to_set([]) == set()
    with pytest.raises(ValueError):
        bitmap4_from([-1])


@pytest.mark.parametrize("bits", [set(), {0}, {1, 2, 3}, {31, 32, 63, 64}, set(range(0, 200, 7))])
def test_bitmap4_roundtrip(bits: set[int]) -> None:
    assert bitmap4_to_set(bitmap4_from(bits)) == bits


def test_fattr4_size_mode_fsid_vector() -> None:
    attrs = NFSAttrs(size=0x1234, mode=0o644, fsid=fsid4(1, 2))
    f = encode_fattr4(attrs)
    expected = bytes.fromhex(
        "00000002 00000110 00000002 0000001c"
        " 0000000000001234"  # size (bit 4)
        " 0000000000000001 0000000000000002"  # fsid (bit 8)
        " 000001a4".replace(" ", "")  # mode (bit 33)
    )
    assert encode(f) == expected
    assert decode(fattr4, expected) == f
    assert decode_fattr4(f) == attrs
    assert attrs.present() == {FATTR4.SIZE, FATTR4.FSID, FATTR4.MODE}


def test_fattr4_empty() -> None:
    f = encode_fattr4(NFSAttrs())
    assert f == fattr4([], b"")
    assert encode(f) == bytes(8)
    assert decode_fattr4(f) == NFSAttrs()


def test_codec_table_matches_nfsattrs_fields() -> None:
    names = [name for name, _, _ in ATTR_CODECS.values()]
    assert len(names) == len(set(names))
    assert set(names) == {f.name for f in dataclasses.fields(NFSAttrs)}
    for attr, (name, _, _) in ATTR_CODECS.items():
        assert attr.name == "FATTR4_" + name.upper()


def test_fattr4_numbers_match_rfc5662() -> None:
    expected = {
        "SUPPORTED_ATTRS": 0, "TYPE": 1, "FH_EXPIRE_TYPE": 2, "CHANGE": 3, "SIZE": 4,
        "LINK_SUPPORT": 5, "SYMLINK_SUPPORT": 6, "NAMED_ATTR": 7, "FSID": 8,
        "UNIQUE_HANDLES": 9, "LEASE_TIME": 10, "RDATTR_ERROR": 11, "ACL": 12,
        "ACLSUPPORT": 13, "CANSETTIME": 15, "FILEHANDLE": 19, "FILEID": 20,
        "FILES_AVAIL": 21, "FILES_FREE": 22, "FILES_TOTAL": 23, "FS_LOCATIONS": 24,
        "MAXFILESIZE": 27, "MAXLINK": 28, "MAXNAME": 29, "MAXREAD": 30, "MAXWRITE": 31,
        "MODE": 33, "NUMLINKS": 35, "OWNER": 36, "OWNER_GROUP": 37, "RAWDEV": 41,
        "SPACE_AVAIL": 42, "SPACE_FREE": 43, "SPACE_TOTAL": 44, "SPACE_USED": 45,
        "TIME_ACCESS": 47, "TIME_ACCESS_SET": 48, "TIME_DELTA": 51, "TIME_METADATA": 52,
        "TIME_MODIFY": 53, "TIME_MODIFY_SET": 54, "MOUNTED_ON_FILEID": 55, "DACL": 58,
        "FS_STATUS": 61, "FS_LOCATIONS_INFO": 67, "SUPPATTR_EXCLCREAT": 75,
        "FS_CHARSET_CAP": 76,
    }  # fmt: skip
    for name, number in expected.items():
        assert FATTR4[name] == number
        assert FATTR4["FATTR4_" + name] is FATTR4[name]


FULL = NFSAttrs(
    supported_attrs=[0xFFFFFFFF, 0x3FFFFF],
    type=nfs_ftype4.NF4DIR,
    fh_expire_type=0,
    change=2**64 - 1,
    size=1 << 40,
    link_support=True,
    symlink_support=True,
    named_attr=False,
    fsid=fsid4(7, 8),
    unique_handles=True,
    lease_time=90,
    rdattr_error=nfsstat4.NFS4ERR_MOVED,
    acl=[nfsace4(0, 0, 0x1F01FF, "OWNER@"), nfsace4(1, 0x40, 0x2, "GROUP@")],
    aclsupport=3,
    archive=False,
    cansettime=True,
    case_insensitive=False,
    case_preserving=True,
    chown_restricted=True,
    filehandle=b"\x01\x02\x03",
    fileid=42,
    files_avail=1,
    files_free=2,
    files_total=3,
    fs_locations=fs_locations4(["export"], [fs_location4(["10.0.0.2"], ["export"])]),
    hidden=False,
    homogeneous=True,
    maxfilesize=2**63 - 1,
    maxlink=255,
    maxname=255,
    maxread=1 << 20,
    maxwrite=1 << 20,
    mimetype="text/plain",
    mode=0o4755,
    no_trunc=True,
    numlinks=2,
    owner="alice@example.org",
    owner_group="staff@example.org",
    quota_avail_hard=10,
    quota_avail_soft=11,
    quota_used=12,
    rawdev=specdata4(0, 0),
    space_avail=100,
    space_free=200,
    space_total=300,
    space_used=4096,
    system=False,
    time_access=T,
    time_access_set=settime4(time_how4.SET_TO_SERVER_TIME4),
    time_backup=T,
    time_create=T,
    time_delta=nfstime4(0, 1),
    time_metadata=T,
    time_modify=nfstime4(-1, 0),
    time_modify_set=settime4(time_how4.SET_TO_CLIENT_TIME4, T),
    mounted_on_fileid=43,
    dir_notif_delay=nfstime4(1, 0),
    dirent_notif_delay=nfstime4(2, 0),
    dacl=nfsacl41(1, [nfsace4(0, 0, 1, "EVERYONE@")]),
    sacl=nfsacl41(0, []),
    change_policy=change_policy4(1, 2),
    fs_status=fs4_status(False, fs4_status_type.STATUS4_FIXED, "", "", 0, T),
    fs_layout_types=[layouttype4.LAYOUT4_NFSV4_1_FILES],
    layout_blksize=4096,
    layout_alignment=4096,
    fs_locations_info=fs_locations_info4(
        0,
        60,
        ["a"],
        [fs_locations_item4([fs_locations_server4(0, bytes([3, 0, 1, 1, 1, 1, 1, 1]), "s")], [])],
    ),
    retention_hold=0,
    mode_set_masked=mode_masked4(0o644, 0o777),
    suppattr_exclcreat=[0x10, 0x2],
    fs_charset_cap=2,
)


def test_every_attribute_roundtrip() -> None:
    assert all(getattr(FULL, f.name) is not None for f in dataclasses.fields(NFSAttrs))
    f = encode_fattr4(FULL)
    assert bitmap4_to_set(f.attrmask) == set(ATTR_CODECS)
    assert FULL.present() == set(ATTR_CODECS)
    back = decode_fattr4(decode(fattr4, encode(f)))
    assert back == FULL


@pytest.mark.parametrize("attr", sorted(ATTR_CODECS), ids=lambda a: a.name)
def test_each_attribute_alone(attr: FATTR4) -> None:
    name = ATTR_CODECS[attr][0]
    single = NFSAttrs(**{name: getattr(FULL, name)})
    f = encode_fattr4(single)
    assert f.attrmask == bitmap4_from([attr])
    assert decode_fattr4(f) == single


def test_encode_only_subset() -> None:
    f = encode_fattr4(FULL, only={FATTR4.SIZE, FATTR4.MODE, FATTR4.LAYOUT_HINT})
    assert decode_fattr4(f) == NFSAttrs(size=FULL.size, mode=FULL.mode)


def test_unknown_attribute_bit_stops_decoding() -> None:
    # size (bit 4) then bit 63 (layout_hint, not decoded here): size still comes out,
    # and the 8 bytes of layout_hint's value are left alone.
    f = fattr4([0x10, 0x80000000], struct.pack(">Q", 77) + bytes(8))
    assert decode_fattr4_partial(f) == (NFSAttrs(size=77), 63)
    assert decode_fattr4(f) == NFSAttrs(size=77)
    assert decode_fattr4_partial(fattr4(bitmap4_from([200]), b"junk")) == (NFSAttrs(), 200)
    assert decode_fattr4_partial(fattr4([0x10], bytes(8))) == (NFSAttrs(size=0), None)


def test_bitmap4_bits_is_lazy_and_bounded() -> None:
    bits = bitmap4_bits([0xFFFFFFFF] * 1_000_000)
    assert [next(bits) for _ in range(3)] == [0, 1, 2]
    assert list(bitmap4_bits([0x80000001, 0, 0x1], limit=64)) == [0, 31]
    assert list(bitmap4_bits([0x80000001, 0, 0x1], limit=65)) == [0, 31, 64]
    assert list(bitmap4_bits([0xFFFFFFFF], limit=0)) == []
    assert bitmap4_to_set([0xFFFFFFFF] * 1_000_000, limit=40) == set(range(40))


#: Every attribute below 63 (layout_hint, the first one without a codec here) has one.
BELOW_63: frozenset[int] = frozenset(range(63))


def _all_ones_wire(size: int, attr_vals: bytes) -> bytes:
    """An encoded fattr4 with a ``size``-byte all-ones attrmask."""
    return struct.pack(">I", size // 4) + b"\xff" * size + encode(fattr4([], attr_vals))[4:]


@pytest.mark.parametrize("size", [1 << 20, 4 << 20], ids=["1MiB", "4MiB"])
def test_huge_all_ones_bitmap_is_cheap(size: int) -> None:
    """Issue 7: a 1 MiB all-ones bitmap took 640 MB and 20 s; now O(words) and fast."""
    assert {int(a) for a in ATTR_CODECS} >= BELOW_63 and 63 not in ATTR_CODECS
    vals = encode_fattr4(FULL, only=BELOW_63).attr_vals
    wire = _all_ones_wire(size, vals)
    expected = NFSAttrs(
        **{name: getattr(FULL, name) for a, (name, _, _) in ATTR_CODECS.items() if a in BELOW_63}
    )
    # time: wire bytes to attributes, without tracemalloc's per-object overhead
    started = time.perf_counter()
    f = fattr4.unpack(Decoder(wire))
    attrs, stopped_at = decode_fattr4_partial(f)
    elapsed = time.perf_counter() - started
    assert (attrs, stopped_at) == (expected, 63)
    assert elapsed < 0.3, f"{elapsed:.3f} s"
    # memory: decoding the attributes allocates nothing per bitmap word...
    tracemalloc.start()
    try:
        decode_fattr4(f)
        _, peak = tracemalloc.get_traced_memory()
        assert peak < 64 * 1024, peak
        # ... and the wire decode holds the words once (a list of ints), no set of bits
        tracemalloc.reset_peak()
        fattr4.unpack(Decoder(wire))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * size, f"{peak} bytes for a {size}-byte bitmap"


def test_all_ones_bitmap_without_values_is_a_clear_error() -> None:
    with pytest.raises(XdrError) as err:
        decode_fattr4(fattr4.unpack(Decoder(_all_ones_wire(1 << 20, b""))))
    assert err.value.type_name == "fattr4.supported_attrs"
    assert err.value.offset == 0


def test_bitmap4_longer_than_the_data_is_an_error_before_any_work() -> None:
    # fattr4.attrmask announcing 2**30 words with 8 bytes behind it
    with pytest.raises(XdrError) as err:
        fattr4.unpack(Decoder(struct.pack(">III", 1 << 30, 0, 0)))
    assert err.value.type_name == "fattr4.attrmask" and err.value.offset == 0
    assert "cannot fit in 8 bytes" in err.value.detail
    # a bitmap4-valued attribute (supported_attrs) announcing more words than attr_vals
    f = fattr4(bitmap4_from([FATTR4.SUPPORTED_ATTRS]), struct.pack(">III", 3, 1, 2))
    with pytest.raises(XdrError) as err:
        decode_fattr4(f)
    assert err.value.type_name == "fattr4.supported_attrs"
    assert "bitmap4 of 3 words needs 12 bytes, 8 left" in err.value.detail
    with pytest.raises(XdrError, match="bitmap4 of 4294967295 words"):
        Decoder(b"\xff\xff\xff\xff").bitmap4()


def test_bitmap_valued_attribute_keeps_only_known_words() -> None:
    assert KNOWN_ATTR_WORDS == 3  # attribute numbers up to 95; RFC 8881's end at 76
    words = [0xFFFFFFFF] * 100_000
    f = encode_fattr4(NFSAttrs(supported_attrs=words, type=nfs_ftype4.NF4REG))
    attrs = decode_fattr4(decode(fattr4, encode(f)))
    assert attrs.supported_attrs == words[:KNOWN_ATTR_WORDS]
    assert attrs.type == nfs_ftype4.NF4REG  # the skipped words were stepped over


def test_uint32_array_bulk_decode_matches_word_by_word() -> None:
    words = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x01020304]
    data = struct.pack(f">I{len(words)}I", len(words), *words)
    dec = Decoder(data + b"tail")
    assert dec.uint32_array("x") == words
    assert dec.offset == len(data)
    with pytest.raises(XdrError, match="count 7 exceeds the maximum 6"):
        Decoder(struct.pack(">I", 7) + bytes(28)).uint32_array("x", 6)
    with pytest.raises(XdrError, match="count 2 cannot fit in 4 bytes"):
        Decoder(struct.pack(">II", 2, 0)).uint32_array("x")
    assert Decoder(bytes(4)).uint32_array("x") == []


def test_attr_vals_must_be_consumed_exactly() -> None:
    with pytest.raises(XdrError) as err:
        decode_fattr4(fattr4([0x10], bytes(12)))
    assert err.value.type_name == "fattr4" and "trailing" in err.value.detail


def test_attr_vals_short() -> None:
    with pytest.raises(XdrError) as err:
        decode_fattr4(fattr4([0x110], bytes(8 + 12)))  # size, then a short fsid
    assert err.value.type_name == "fattr4.fsid"
    assert err.value.offset == 16


def test_hostile_string_in_attribute() -> None:
    f = fattr4(bitmap4_from([FATTR4.OWNER]), bytes.fromhex("fffffff0"))
    with pytest.raises(XdrError) as err:
        decode_fattr4(f)
    assert err.value.type_name == "fattr4.owner"


def test_unknown_enum_values_in_attributes_kept() -> None:
    f = fattr4(bitmap4_from([FATTR4.TYPE, FATTR4.RDATTR_ERROR]), bytes.fromhex("0000006300067932"))
    attrs = decode_fattr4(f)
    assert attrs.type == 99 and attrs.rdattr_error == 424242
    assert encode_fattr4(attrs) == f


def test_owner_invalid_utf8_kept() -> None:
    f = fattr4(bitmap4_from([FATTR4.OWNER]), bytes.fromhex("00000002 c3280000".replace(" ", "")))
    attrs = decode_fattr4(f)
    assert attrs.owner is not None
    assert encode_fattr4(attrs) == f


def test_planned_decoding_matches_decoding_one_by_one() -> None:
    """The per-bitmap plan (fixed-size runs in one struct call) gives exactly what
    decoding attribute by attribute gives, for every attribute and random subsets."""
    rng = random.Random(5)
    names = sorted(ATTR_CODECS)
    subsets = [names] + [rng.sample(names, rng.randint(1, len(names))) for _ in range(200)]
    for subset in subsets:
        wanted = NFSAttrs(**{ATTR_CODECS[a][0]: getattr(FULL, ATTR_CODECS[a][0]) for a in subset})
        f = decode(fattr4, encode(encode_fattr4(wanted)))
        assert fattr_module._plan_for(f.attrmask) is not None
        assert fattr_module._decode_known(f) == fattr_module._decode_each(f)
        assert decode_fattr4(f) == wanted


def test_a_value_the_plan_refuses_is_reported_by_attribute() -> None:
    """A bool of 2 inside a fixed-size run: the run is decoded again one by one, and
    the error names the attribute and its offset."""
    f = fattr4(
        bitmap4_from([FATTR4.SIZE, FATTR4.LINK_SUPPORT, FATTR4.FILEID]),
        struct.pack(">QIQ", 1, 2, 3),
    )
    with pytest.raises(XdrError) as err:
        decode_fattr4(f)
    assert err.value.type_name == "fattr4.link_support" and err.value.offset == 8
    assert "0 or 1" in err.value.detail


def test_plans_are_bounded() -> None:
    assert fattr_module._plan_for([0x10] * 5) is None  # too long a bitmap: no plan
    for bit in range(300):
        fattr_module._plan_for(bitmap4_from([bit % 90, 90 + bit % 30]))
    assert len(fattr_module._PLANS) <= fattr_module._PLANS_KEPT


def test_planned_decoding_of_extreme_fixed_values() -> None:
    """Signedness and widths of the struct formats: the largest unsigned values, and
    the most negative seconds an nfstime4 (int64) can hold."""
    top = NFSAttrs(
        type=nfs_ftype4.NF4DIR,
        change=2**64 - 1,
        size=2**64 - 1,
        fsid=fsid4(2**64 - 1, 2**63),
        fileid=2**64 - 1,
        mode=0xFFFFFFFF,
        numlinks=0xFFFFFFFF,
        rawdev=specdata4(0xFFFFFFFF, 0x80000000),
        time_access=nfstime4(-(2**63), 0xFFFFFFFF),
        time_modify=nfstime4(2**63 - 1, 999_999_999),
    )
    f = encode_fattr4(top)
    assert fattr_module._decode_known(f)[0] == top
    assert fattr_module._decode_each(f)[0] == top

"""Location entries into location elements (RFC 8881 sections 11.16, 11.17)."""

from __future__ import annotations

import pytest

from recovery.locations import (
    choose_order,
    from_fs_locations,
    from_fs_locations_info,
    parse_server,
    universal_address,
)
from session.xdr.const import FSLI4GF_ABSENT
from session.xdr.nfs4 import (
    fs_location4,
    fs_locations4,
    fs_locations_info4,
    fs_locations_item4,
    fs_locations_server4,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("127.0.0.2.8.1", ("127.0.0.2", 2049)),
        ("127.0.0.2:20490", ("127.0.0.2", 20490)),
        ("[::1]:2050", ("::1", 2050)),
        ("[::1]", ("::1", 111)),
        ("127.0.0.3", ("127.0.0.3", 111)),
        ("server.example", ("server.example", 111)),
    ],
)
def test_parse_server(name: str, expected: tuple[str, int]) -> None:
    assert parse_server(name, 111) == expected


def test_parse_server_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_server("", 1)
    with pytest.raises(ValueError):
        parse_server("127.0.0.1:0", 1)
    with pytest.raises(ValueError):
        parse_server("300.0.0.1.8.1", 1)


def test_universal_address_round_trip() -> None:
    assert universal_address("127.0.0.2", 2049) == "127.0.0.2.8.1"
    assert parse_server(universal_address("127.0.0.9", 40001), 0) == ("127.0.0.9", 40001)


def test_fs_locations_keeps_server_order_and_expands_every_server() -> None:
    attr = fs_locations4(
        fs_root=["export", "a"],
        locations=[
            fs_location4(server=["127.0.0.2.8.1", "127.0.0.3:99"], rootpath=["export", "a"]),
            fs_location4(server=["127.0.0.4"], rootpath=["other"]),
        ],
    )
    got = from_fs_locations(attr, 2049)
    assert [(e.host, e.port, e.fs_path) for e in got] == [
        ("127.0.0.2", 2049, ("export", "a")),
        ("127.0.0.3", 99, ("export", "a")),
        ("127.0.0.4", 2049, ("other",)),
    ]
    assert got[0].address() == "127.0.0.2:2049"


def info(rank: int, order: int, gflags: int = 0) -> bytes:
    raw = bytearray(12)
    raw[0], raw[8], raw[10] = gflags, rank, order
    return bytes(raw)


def test_fs_locations_info_sorted_by_rank_then_order_and_absent_skipped() -> None:
    attr = fs_locations_info4(
        fli_flags=0,
        fli_valid_for=0,
        fli_fs_root=["export", "a"],
        fli_items=[
            fs_locations_item4(
                fli_entries=[
                    fs_locations_server4(0, info(2, 0), "127.0.0.5.8.1"),
                    fs_locations_server4(0, info(1, 5), "127.0.0.6.8.1"),
                    fs_locations_server4(0, info(1, 1), "127.0.0.7.8.1"),
                    fs_locations_server4(0, info(0, 0, FSLI4GF_ABSENT), "127.0.0.8.8.1"),
                    fs_locations_server4(0, b"", "127.0.0.9.8.1"),
                ],
                fli_rootpath=["export", "a"],
            )
        ],
    )
    got = from_fs_locations_info(attr, 1)
    assert [e.host for e in got] == ["127.0.0.9", "127.0.0.7", "127.0.0.6", "127.0.0.5"]


def test_choose_order_prefers_the_same_fs_name() -> None:
    attr = fs_locations4(
        fs_root=["a"],
        locations=[
            fs_location4(server=["127.0.0.2"], rootpath=["b"]),
            fs_location4(server=["127.0.0.3"], rootpath=["a"]),
        ],
    )
    ordered = choose_order(from_fs_locations(attr, 2049), ("a",))
    assert [e.host for e in ordered] == ["127.0.0.3", "127.0.0.2"]

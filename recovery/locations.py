"""Location attributes into location elements (RFC 8881 sections 11.2, 11.16, 11.17).

``fs_locations`` and ``fs_locations_info`` list *location entries*: a server name and
the file system's path there.  Each entry becomes one or more *location elements*
(seed 001 section 4.2): an address, a port, and the fs name (the path in that server's
pseudo-fs).  A server name may be:

* a universal address (RFC 5665 section 5.2.3.3): ``127.0.0.2.8.1`` is 127.0.0.2 port
  2049 (the last two numbers are the port's high and low bytes);
* ``host:port`` or ``[v6addr]:port``;
* a bare IP address or a DNS name, with the port the mount already uses.

Names are resolved by the caller (``recovery.migration``); here only the order and the
parsing are decided, sans-I/O.  fs_locations_info ranks: a lower read rank, then a lower
read order, is preferred (section 11.17.2); entries flagged FSLI4GF_ABSENT are skipped.
fs_locations has no ranks: entries keep the server's order.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from session.xdr.const import (
    FSLI4BX_GFLAGS,
    FSLI4BX_READORDER,
    FSLI4BX_READRANK,
    FSLI4GF_ABSENT,
)
from session.xdr.nfs4 import fs_locations4, fs_locations_info4


@dataclass(frozen=True, slots=True)
class LocationElement:
    """One place the file system can be reached.

    Attributes:
        host: an IP address or a DNS name still to resolve.
        port: TCP port.
        fs_path: the file system's path in that server's namespace (components).
        rank: (read rank, read order, position) -- lower sorts first.
        source: "fs_locations" or "fs_locations_info", for the event log.
    """

    host: str
    port: int
    fs_path: tuple[str, ...]
    rank: tuple[int, int, int]
    source: str

    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(name: str, default_port: int) -> tuple[str, int]:
    """A location entry's server string -> (host, port).

    Raises:
        ValueError: an empty name or a port out of range.
    """
    name = name.strip()
    if not name:
        raise ValueError("empty server name in a location entry")
    if name.startswith("["):
        host, _, rest = name[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
        return host, _check_port(port, name)
    parts = name.split(".")
    if len(parts) == 6 and all(p.isdigit() for p in parts):
        host = ".".join(parts[:4])
        ipaddress.IPv4Address(host)
        return host, _check_port(int(parts[4]) * 256 + int(parts[5]), name)
    if name.count(":") == 1:
        host, _, port_text = name.partition(":")
        if port_text.isdigit():
            return host, _check_port(int(port_text), name)
    return name, default_port


def _check_port(port: int, name: str) -> int:
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range in location {name!r}")
    return port


def universal_address(host: str, port: int) -> str:
    """IPv4 ``host`` and ``port`` as an RFC 5665 universal address (servers use this)."""
    return f"{host}.{port >> 8}.{port & 0xFF}"


def from_fs_locations(attr: fs_locations4, default_port: int) -> list[LocationElement]:
    """Elements of an fs_locations attribute, in the server's order (section 11.16)."""
    out: list[LocationElement] = []
    for entry in attr.locations:
        for server in entry.server:
            host, port = parse_server(server, default_port)
            rank = (0, 0, len(out))
            out.append(LocationElement(host, port, tuple(entry.rootpath), rank, "fs_locations"))
    return out


def from_fs_locations_info(attr: fs_locations_info4, default_port: int) -> list[LocationElement]:
    """Elements of an fs_locations_info attribute, best first (section 11.17).

    Entries whose fls_info marks the file system absent there are left out.
    """
    out: list[LocationElement] = []
    for item in attr.fli_items:
        for entry in item.fli_entries:
            info = entry.fls_info
            gflags = info[FSLI4BX_GFLAGS] if len(info) > FSLI4BX_GFLAGS else 0
            if gflags & FSLI4GF_ABSENT:
                continue
            read_rank = info[FSLI4BX_READRANK] if len(info) > FSLI4BX_READRANK else 0
            read_order = info[FSLI4BX_READORDER] if len(info) > FSLI4BX_READORDER else 0
            host, port = parse_server(entry.fls_server, default_port)
            out.append(
                LocationElement(
                    host,
                    port,
                    tuple(item.fli_rootpath),
                    (read_rank, read_order, len(out)),
                    "fs_locations_info",
                )
            )
    return sorted(out, key=lambda e: e.rank)


def choose_order(
    elements: list[LocationElement], current_path: tuple[str, ...]
) -> list[LocationElement]:
    """Candidates in the order to try them (seed 001 section 4.2.2).

    Elements whose fs name matches the one in use come first (they may be trunkable
    with the current server: a path change, not a migration); then the rest, each
    group keeping the rank order.
    """
    same = [e for e in elements if e.fs_path == current_path]
    other = [e for e in elements if e.fs_path != current_path]
    return same + other

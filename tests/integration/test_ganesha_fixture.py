"""The real-server fixture itself: Ganesha listens, answers ONC RPC, runs side by side.

The RPC bytes are written by hand (RFC 5531 call/reply, record marking section 11) so that
this test does not depend on the client's own codecs.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import trio

from contrib.ganesha import GaneshaError, GaneshaServer, port_accepts

pytestmark = pytest.mark.ganesha

NFS_PROGRAM = 100003
RPC_VERSION = 2
CALL, REPLY = 0, 1
MSG_ACCEPTED = 0
SUCCESS, PROG_MISMATCH = 0, 2
AUTH_NONE = 0
LAST_FRAGMENT = 0x8000_0000


def rpc_call(xid: int, prog: int, vers: int, proc: int) -> bytes:
    """One record-marked ONC RPC CALL with AUTH_NONE credential and verifier, no args."""
    body = struct.pack(">10I", xid, CALL, RPC_VERSION, prog, vers, proc, AUTH_NONE, 0, AUTH_NONE, 0)
    return struct.pack(">I", LAST_FRAGMENT | len(body)) + body


async def rpc_roundtrip(server: GaneshaServer, request: bytes) -> bytes:
    """Send one record, return the body of the one-fragment record that comes back."""
    stream = await trio.open_tcp_stream(server.address, server.port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while len(data) < 4 or len(data) < 4 + (struct.unpack_from(">I", data)[0] & ~LAST_FRAGMENT):
            chunk = await stream.receive_some(65536)
            assert chunk, f"connection closed after {len(data)} bytes"
            data += chunk
    (mark,) = struct.unpack_from(">I", data)
    assert mark & LAST_FRAGMENT, "expected a single last fragment"
    return data[4 : 4 + (mark & ~LAST_FRAGMENT)]


def parse_accepted_reply(body: bytes, xid: int) -> tuple[int, bytes]:
    """Check an accepted REPLY for ``xid``; return (accept_stat, the bytes after it)."""
    rxid, mtype, reply_stat, verf_flavor, verf_len = struct.unpack_from(">5I", body)
    assert (rxid, mtype, reply_stat) == (xid, REPLY, MSG_ACCEPTED)
    assert verf_flavor == AUTH_NONE
    pos = 20 + (verf_len + 3) // 4 * 4
    (accept_stat,) = struct.unpack_from(">I", body, pos)
    return accept_stat, body[pos + 4 :]


def test_fixture_is_out_of_grace_and_accepts_tcp(ganesha: GaneshaServer) -> None:
    assert ganesha.running
    assert ganesha.address == "127.0.0.1"
    assert ganesha.pseudo == "/export"
    assert ganesha.export_path.is_dir()
    assert port_accepts(ganesha.address, ganesha.port)
    assert ganesha.in_grace() is False


async def test_rpc_null_call_is_accepted(ganesha: GaneshaServer) -> None:
    with trio.fail_after(10):
        body = await rpc_roundtrip(ganesha, rpc_call(0x1A2B3C4D, NFS_PROGRAM, 4, 0))
    accept_stat, rest = parse_accepted_reply(body, 0x1A2B3C4D)
    assert accept_stat == SUCCESS
    assert rest == b""  # NFSPROC4_NULL returns void


async def test_rpc_version_mismatch_reports_only_v4(ganesha: GaneshaServer) -> None:
    with trio.fail_after(10):
        body = await rpc_roundtrip(ganesha, rpc_call(7, NFS_PROGRAM, 2, 0))
    accept_stat, rest = parse_accepted_reply(body, 7)
    assert accept_stat == PROG_MISMATCH
    assert struct.unpack(">2I", rest) == (4, 4)


def test_second_instance_runs_beside_the_first(ganesha: GaneshaServer, tmp_path: Path) -> None:
    with GaneshaServer(tmp_path / "export2", start_timeout=20) as other:
        assert other.port != ganesha.port
        assert other.workdir != ganesha.workdir
        assert port_accepts(other.address, other.port)
        assert port_accepts(ganesha.address, ganesha.port)
    assert not other.running
    assert not port_accepts(other.address, other.port)
    assert port_accepts(ganesha.address, ganesha.port)


def test_same_port_on_another_loopback_address(ganesha: GaneshaServer) -> None:
    with GaneshaServer(address="127.0.0.2", port=ganesha.port) as other:
        assert port_accepts("127.0.0.2", ganesha.port)
        assert "127.0.0.2" in other.config_text()
    assert port_accepts(ganesha.address, ganesha.port)


def test_start_failure_reports_the_log(ganesha: GaneshaServer) -> None:
    server = GaneshaServer(nfsv4_options={"Grace_Period": -1})
    try:
        with pytest.raises(GaneshaError, match="not allowed for signed values"):
            server.start()
        assert not server.running
    finally:
        server.cleanup()


def test_only_loopback_addresses_are_accepted() -> None:
    with pytest.raises(ValueError, match="loopback"):
        GaneshaServer(address="10.0.0.1")


def test_fresh_dir_is_a_new_name_in_the_export(ganesha: GaneshaServer, fresh_dir: str) -> None:
    assert "/" not in fresh_dir
    assert not (ganesha.export_path / fresh_dir).exists()

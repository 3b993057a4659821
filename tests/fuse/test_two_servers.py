"""Two NFS-Ganesha servers whose file systems report the same fsid (issue 9, item 6).

Both export directories of one disk, so both report that disk's fsid (legal: an fsid
means something only within one server, RFC 8881 section 5.8.1.9).  The first (the
session's shared Ganesha on 127.0.0.1) holds a referral to the second (127.0.0.2, its
own export id): a sticky directory without execute bits carrying ``user.fs_location``,
as Ganesha 4.3 implements referrals.  The mount follows the referral and the referring
file system must keep working: a client that keys file systems by fsid alone re-routes
the root's calls to the second server and gets NFS4ERR_STALE there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer

from .helpers import MountFactory, Workspace

pytestmark = [pytest.mark.fuse, pytest.mark.ganesha]


@pytest.fixture
def second(ganesha: GaneshaServer) -> Iterator[GaneshaServer]:
    """A Ganesha on 127.0.0.2 exporting a directory beside the first one's export."""
    export = ganesha.export_path.parent / f"second-{uuid.uuid4().hex[:8]}"
    export.mkdir()
    (export / "far.txt").write_bytes(b"served by the second server\n")
    server = GaneshaServer(export, address="127.0.0.2", export_id=7)
    try:
        server.start()
        server.wait_grace_over()
        yield server
    finally:
        server.cleanup()


def universal_address(address: str, port: int) -> str:
    """RFC 5665 universal address of an IPv4 TCP endpoint: a.b.c.d.p1.p2."""
    return f"{address}.{port >> 8}.{port & 0xFF}"


def make_referral(directory: Path, server: GaneshaServer) -> None:
    """Ganesha 4.3's referral: mode 1666 and user.fs_location = HOST:/path."""
    directory.mkdir()
    location = f"{universal_address(server.address, server.port)}:{server.pseudo}"
    os.setxattr(directory, "user.fs_location", location.encode())
    directory.chmod(0o1666)


def test_referral_to_a_server_with_the_same_fsid(
    ws: Workspace, ganesha: GaneshaServer, second: GaneshaServer, mount: MountFactory
) -> None:
    assert os.stat(ganesha.export_path).st_dev == os.stat(second.export_path).st_dev
    junction = f"ref-{uuid.uuid4().hex[:6]}"
    make_referral(ganesha.export_path / junction, second)
    m = mount()
    root = m.path
    (root / ws.dir.name / "near.txt").write_bytes(b"on the first server\n")
    # Follow the referral: the second server's file system appears under the tree.
    assert (root / junction / "far.txt").read_bytes() == b"served by the second server\n"
    assert "far.txt" in os.listdir(root / junction)
    # The referring file system keeps working: read, create, list, on the first server.
    assert (root / ws.dir.name / "near.txt").read_bytes() == b"on the first server\n"
    (root / ws.dir.name / "made-after.txt").write_bytes(b"new")
    assert (ganesha.export_path / ws.dir.name / "made-after.txt").read_bytes() == b"new"
    assert junction in os.listdir(root) and ws.dir.name in os.listdir(root)
    # And a file created in the referred file system lands on the second server.
    (root / junction / "made-there.txt").write_bytes(b"far")
    assert (second.export_path / "made-there.txt").read_bytes() == b"far"
    # Distinct file systems: the same fileid on both would not collide as inodes.
    assert os.stat(root / junction).st_ino != os.stat(root).st_ino

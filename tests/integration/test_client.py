"""``NFSClient`` against a real NFS-Ganesha: files, directories, errors, opens, locks.

Each test mounts with its own client ID and works in ``fresh_dir``; results are checked
on the server's side (``ganesha.export_path``) as well as through the client.
RFC 8881 section 18 (the operations) and section 9 (opens and byte-range locks).
"""

from __future__ import annotations

import errno
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import pytest
import trio

from contrib.ganesha import GaneshaServer
from session.client import NFSClient, dir_type, symlink_type
from session.session import SessionOptions, host_co_ownerid
from session.status import NFS4Error, NFS4ErrStateLost
from session.xdr import nfs4
from session.xdr.const import (
    ACCESS4_LOOKUP,
    ACCESS4_MODIFY,
    ACCESS4_READ,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_ACCESS_WRITE,
    OPEN4_SHARE_DENY_WRITE,
    nfs_ftype4,
    nfs_lock_type4,
    nfsstat4,
    open_claim_type4,
    opentype4,
    stable_how4,
    time_how4,
)
from session.xdr.fattr import NFSAttrs

from .recording import RecordingSession

pytestmark = pytest.mark.ganesha

KiB = 1024
TO_EOF = 0xFFFFFFFFFFFFFFFF


# ====================================================================== helpers


@asynccontextmanager
async def mounted(server: GaneshaServer) -> AsyncIterator[tuple[RecordingSession, NFSClient]]:
    """A started session (its own client ID) and a mounted ``NFSClient`` on the export."""
    tag = uuid.uuid4().hex
    async with trio.open_nursery() as nursery:
        session = RecordingSession(
            server.address, server.port, host_co_ownerid("test/" + tag), options=SessionOptions()
        )
        with trio.fail_after(30):
            await session.start(nursery)
            client = NFSClient(session, server.pseudo, owner_prefix=f"test-{tag}".encode())
            await client.mount()
        try:
            yield session, client
        finally:
            with trio.CancelScope(shield=True):
                await session.shutdown()
            nursery.cancel_scope.cancel()


async def make_dir(client: NFSClient, parent: bytes, name: str | bytes, mode: int = 0o755) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    fh, attrs = await client.create(parent, raw, dir_type(), NFSAttrs(mode=mode))
    assert attrs.type == nfs_ftype4.NF4DIR
    return fh


async def make_file(client: NFSClient, dir_fh: bytes, name: bytes, data: bytes = b"") -> bytes:
    opened = await client.open(
        dir_fh, name, OPEN4_SHARE_ACCESS_BOTH, create=True, attrs=NFSAttrs(mode=0o644)
    )
    if data:
        await client.write(opened.fh, opened.state.stateid, 0, data, stable_how4.FILE_SYNC4)
    await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
    return opened.fh


async def open_denying_writers(client: NFSClient, fh: bytes) -> nfsstat4:
    """OPEN(READ, deny WRITE) by ``client`` and CLOSE at once: the status of the OPEN.

    NFS4ERR_SHARE_DENIED says some other open holds WRITE access (RFC 8881 section 9.7).
    """
    args = nfs4.OPEN4args(
        seqid=0,
        share_access=OPEN4_SHARE_ACCESS_READ | OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
        share_deny=OPEN4_SHARE_DENY_WRITE,
        owner=nfs4.open_owner4(clientid=client.session.clientid, owner=b"deny-writers"),
        openhow=nfs4.openflag4(opentype=opentype4.OPEN4_NOCREATE),
        claim=nfs4.open_claim4(claim=open_claim_type4.CLAIM_FH),
    )
    try:
        res = await client.compound([nfs4.PUTFH4args(object=fh), args])
    except NFS4Error as e:
        return e.status
    opened = res.resarray[1]
    assert isinstance(opened, nfs4.OPEN4res) and opened.resok is not None
    await client.compound(
        [nfs4.PUTFH4args(object=fh), nfs4.CLOSE4args(seqid=0, open_stateid=opened.resok.stateid)]
    )
    return nfsstat4.NFS4_OK


# ====================================================================== data path
async def test_open_write_commit_read_close_round_trip(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with trio.fail_after(60):
        async with mounted(ganesha) as (session, client):
            dir_fh = await make_dir(client, client.root_fh, fresh_dir)
            opened = await client.open(
                dir_fh,
                b"file",
                OPEN4_SHARE_ACCESS_BOTH,
                create=True,
                exclusive=True,
                attrs=NFSAttrs(mode=0o640),
            )
            assert opened.created
            assert opened.attrs.type == nfs_ftype4.NF4REG
            assert opened.attrs.mode == 0o640 and opened.attrs.size == 0
            state = opened.state
            assert client.state.find_open(opened.fh, client.open_owner(None)) is state

            data = os.urandom(client.maxwrite + 300 * KiB)
            verifiers = set()
            for off in range(0, len(data), client.maxwrite):
                piece = data[off : off + client.maxwrite]
                res = await client.write(opened.fh, state.stateid, off, piece)
                assert res.count == len(piece)
                verifiers.add(res.writeverf)
            assert len(verifiers) == 1
            assert await client.commit(opened.fh) == verifiers.pop()

            back = bytearray()
            eof = False
            while not eof:
                chunk, eof = await client.read(opened.fh, state.stateid, len(back), client.maxread)
                back += chunk
            assert bytes(back) == data
            tail, eof = await client.read(opened.fh, state.stateid, len(data), 100)
            assert (tail, eof) == (b"", True)
            assert (await client.getattr(opened.fh)).size == len(data)

            await client.release(state, OPEN4_SHARE_ACCESS_BOTH)
            assert client.state.opens == {}
            assert len(session.ops_sent(nfs4.CLOSE4args)) == 1
            with pytest.raises(NFS4ErrStateLost):  # the stateid died with the CLOSE
                await client.read(opened.fh, state.stateid, 0, 10)
        on_server = ganesha.export_path / fresh_dir / "file"
        assert on_server.read_bytes() == data
        assert stat.S_IMODE(on_server.stat().st_mode) == 0o640


async def test_several_writes_in_one_compound_land_in_order(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    """``write_many``: one COMPOUND of a PUTFH and a WRITE per piece (RFC 8881 section
    18.32), executed in order: a piece written twice keeps its second data.  A WRITE
    the server refuses (an offset past any file size) stops the COMPOUND; the result
    has the WRITEs before it, and the error."""
    with trio.fail_after(60):
        async with mounted(ganesha) as (session, client):
            dir_fh = await make_dir(client, client.root_fh, fresh_dir)
            opened = await client.open(dir_fh, b"file", OPEN4_SHARE_ACCESS_BOTH, create=True)
            pieces = [(8192, b"c" * 100), (0, b"a" * 100), (4096, b"b" * 50), (0, b"A" * 10)]
            before = len(session.exchanges)
            done = await client.write_many(opened.fh, opened.state, pieces)
            assert done.error is None and [w.count for w in done.written] == [100, 100, 50, 10]
            assert len(session.exchanges) == before + 1
            limit = client.max_writes_per_compound()
            assert limit >= len(pieces)

            # More than one COMPOUND holds: one after the other.
            many = [(10000 + 10 * i, b"%010d" % i) for i in range(limit + 3)]
            before = len(session.exchanges)
            done = await client.write_many(opened.fh, opened.state, many)
            assert done.error is None and len(done.written) == len(many)
            assert len(session.exchanges) == before + 2

            # And more bytes than one WRITE may carry: a COMPOUND for each piece here.
            half = client.maxwrite // 2 + 1
            big = await client.open(dir_fh, b"big", OPEN4_SHARE_ACCESS_BOTH, create=True)
            before = len(session.exchanges)
            large = [(i * half, bytes([i + 1]) * half) for i in range(3)]
            done = await client.write_many(big.fh, big.state, large)
            assert done.error is None and [w.count for w in done.written] == [half] * 3
            assert len(session.exchanges) == before + 3
            await client.commit(big.fh)
            await client.release(big.state, OPEN4_SHARE_ACCESS_BOTH)

            beyond = 2**63  # past any file size the server allows
            bad = await client.write_many(opened.fh, opened.state, [(20000, b"x"), (beyond, b"y")])
            assert [w.count for w in bad.written] == [1] and bad.error is not None
            await client.commit(opened.fh)
            await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
        data = (ganesha.export_path / fresh_dir / "file").read_bytes()
    assert data[:100] == b"A" * 10 + b"a" * 90
    assert data[4096:4146] == b"b" * 50 and data[8192:8292] == b"c" * 100
    assert len(data) == 20001 and data[20000:] == b"x"
    assert data[10000 : 10000 + 10 * len(many)] == b"".join(p for _, p in many)
    assert (ganesha.export_path / fresh_dir / "big").read_bytes() == b"".join(d for _, d in large)


async def test_statfs_and_access(ganesha: GaneshaServer) -> None:
    with trio.fail_after(30):
        async with mounted(ganesha) as (_, client):
            fs = await client.statfs(client.root_fh)
            disk = os.statvfs(ganesha.export_path)
            assert fs.space_total == disk.f_blocks * disk.f_frsize
            assert fs.files_total is not None and fs.files_total > 0
            assert fs.maxname is not None and fs.maxname >= 255
            mask = ACCESS4_READ | ACCESS4_LOOKUP | ACCESS4_MODIFY
            assert await client.access(client.root_fh, mask) == mask  # root, no_root_squash


# ====================================================================== directories
async def test_readdir_of_1200_entries_pages_by_cookie(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    directory = ganesha.export_path / fresh_dir
    directory.mkdir()
    for i in range(1200):
        (directory / f"entry-{i:05d}-{'x' * 20}").write_bytes(b"")
    (directory / "subdir").mkdir()
    expected = {name.encode(): os.stat(directory / name).st_ino for name in os.listdir(directory)}
    with trio.fail_after(60):
        async with mounted(ganesha) as (_, client):
            dir_fh, attrs = await client.lookup(client.root_fh, fresh_dir.encode())
            assert attrs.type == nfs_ftype4.NF4DIR
            seen: dict[bytes, int | None] = {}
            cookies: set[int] = set()
            cookie, verf, eof, pages = 0, bytes(8), False, 0
            while not eof:
                entries, verf, eof = await client.readdir(dir_fh, cookie, verf, maxcount=16384)
                pages += 1
                assert entries or eof
                for entry in entries:
                    assert entry.name not in seen, f"{entry.name!r} listed twice"
                    assert entry.cookie not in cookies
                    seen[entry.name] = entry.attrs.fileid
                    cookies.add(entry.cookie)
                    assert entry.attrs.filehandle
                if entries:
                    cookie = entries[-1].cookie
            assert pages > 5
            assert seen == expected  # no "." or "..", every name, the right fileids
            sub_fh, _ = await client.lookup(dir_fh, b"subdir")
            assert sub_fh == next(
                e.attrs.filehandle
                for e in (await client.readdir(dir_fh, 0, bytes(8), maxcount=1 << 20))[0]
                if e.name == b"subdir"
            )


async def test_create_lookup_rename_link_remove(ganesha: GaneshaServer, fresh_dir: str) -> None:
    root = ganesha.export_path / fresh_dir
    with trio.fail_after(60):
        async with mounted(ganesha) as (_, client):
            d = await make_dir(client, client.root_fh, fresh_dir)
            a = await make_dir(client, d, "a")
            b = await make_dir(client, d, "b")
            fh = await make_file(client, a, b"f", b"content")
            assert (root / "a" / "f").read_bytes() == b"content"

            found, attrs = await client.lookup(a, b"f")
            assert found == fh and attrs.size == 7 and attrs.numlinks == 1
            parent, _ = await client.lookup(a, b"..")
            assert parent == d

            await client.rename(a, b"f", a, b"g")  # same directory
            assert os.listdir(root / "a") == ["g"]
            await client.rename(a, b"g", b, b"h")  # across directories
            assert os.listdir(root / "a") == [] and os.listdir(root / "b") == ["h"]
            await make_file(client, b, b"other", b"old")
            await client.rename(b, b"h", b, b"other")  # replaces the target
            assert os.listdir(root / "b") == ["other"]
            assert (root / "b" / "other").read_bytes() == b"content"

            after = await client.link(fh, a, b"hard")
            assert after.numlinks == 2
            assert os.stat(root / "a" / "hard").st_ino == os.stat(root / "b" / "other").st_ino
            await client.remove(b, b"other")
            assert (await client.getattr(fh)).numlinks == 1
            assert (root / "a" / "hard").read_bytes() == b"content"

            link_fh, link_attrs = await client.create(
                a, b"sym", symlink_type(b"hard"), NFSAttrs(mode=0o777)
            )
            assert link_attrs.type == nfs_ftype4.NF4LNK
            assert await client.readlink(link_fh) == b"hard"
            assert os.readlink(root / "a" / "sym") == "hard"

            await client.remove(a, b"sym")
            await client.remove(a, b"hard")
            await client.remove(d, b"a")
            await client.remove(d, b"b")
            assert os.listdir(root) == []


async def test_setattr_mode_size_and_times(ganesha: GaneshaServer, fresh_dir: str) -> None:
    path = ganesha.export_path / fresh_dir / "f"
    with trio.fail_after(60):
        async with mounted(ganesha) as (_, client):
            d = await make_dir(client, client.root_fh, fresh_dir)
            opened = await client.open(
                d, b"f", OPEN4_SHARE_ACCESS_BOTH, create=True, attrs=NFSAttrs(mode=0o644)
            )
            await client.write(opened.fh, opened.state.stateid, 0, b"x" * 1000)

            attrs = await client.setattr(opened.fh, NFSAttrs(mode=0o600))
            assert attrs.mode == 0o600
            assert stat.S_IMODE(path.stat().st_mode) == 0o600

            attrs = await client.setattr(opened.fh, NFSAttrs(size=10), opened.state.stateid)
            assert attrs.size == 10 and path.stat().st_size == 10
            attrs = await client.setattr(opened.fh, NFSAttrs(size=100_000), opened.state.stateid)
            assert attrs.size == 100_000
            assert path.read_bytes() == b"x" * 10 + bytes(100_000 - 10)

            when = nfs4.nfstime4(seconds=1_000_000_000, nseconds=500_000_000)
            attrs = await client.setattr(
                opened.fh,
                NFSAttrs(
                    time_modify_set=nfs4.settime4(time_how4.SET_TO_CLIENT_TIME4, when),
                    time_access_set=nfs4.settime4(
                        time_how4.SET_TO_CLIENT_TIME4, nfs4.nfstime4(900_000_000, 0)
                    ),
                ),
            )
            assert attrs.time_modify == when
            assert attrs.time_access == nfs4.nfstime4(900_000_000, 0)
            st = path.stat()
            assert st.st_mtime_ns == 1_000_000_000_500_000_000
            assert st.st_atime_ns == 900_000_000 * 10**9

            before = time.time()
            attrs = await client.setattr(
                opened.fh,
                NFSAttrs(time_modify_set=nfs4.settime4(time_how4.SET_TO_SERVER_TIME4)),
            )
            assert attrs.time_modify is not None
            assert abs(attrs.time_modify.seconds - before) < 5
            await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)


async def test_errors_map_to_errno(ganesha: GaneshaServer, fresh_dir: str) -> None:
    with trio.fail_after(60):
        async with mounted(ganesha) as (_, client):
            d = await make_dir(client, client.root_fh, fresh_dir)
            sub = await make_dir(client, d, "sub")
            f = await make_file(client, sub, b"f", b"data")

            async def fails(status: nfsstat4, code: int, op: str, call: Awaitable[object]) -> None:
                with pytest.raises(NFS4Error) as info:
                    await call
                assert info.value.status == status
                assert info.value.errno == code
                assert info.value.op_name == op

            st = nfsstat4
            await fails(st.NFS4ERR_NOENT, errno.ENOENT, "LOOKUP", client.lookup(d, b"missing"))
            await fails(st.NFS4ERR_NOENT, errno.ENOENT, "OPEN", client.open(d, b"missing", 1))
            await fails(st.NFS4ERR_NOENT, errno.ENOENT, "REMOVE", client.remove(d, b"missing"))
            await fails(
                st.NFS4ERR_NOENT, errno.ENOENT, "RENAME", client.rename(d, b"missing", d, b"x")
            )
            await fails(
                st.NFS4ERR_EXIST,
                errno.EEXIST,
                "CREATE",
                client.create(d, b"sub", dir_type(), NFSAttrs(mode=0o755)),
            )
            await fails(
                st.NFS4ERR_EXIST,
                errno.EEXIST,
                "OPEN",
                client.open(sub, b"f", OPEN4_SHARE_ACCESS_BOTH, create=True, exclusive=True),
            )
            await fails(st.NFS4ERR_NOTEMPTY, errno.ENOTEMPTY, "REMOVE", client.remove(d, b"sub"))
            await fails(st.NFS4ERR_NOTDIR, errno.ENOTDIR, "LOOKUP", client.lookup(f, b"x"))
            await fails(st.NFS4ERR_NOTDIR, errno.ENOTDIR, "READDIR", client.readdir(f, 0, bytes(8)))
            await fails(
                st.NFS4ERR_NOTDIR,
                errno.ENOTDIR,
                "CREATE",
                client.create(f, b"x", dir_type(), NFSAttrs()),
            )
            await fails(
                st.NFS4ERR_ISDIR,
                errno.EISDIR,
                "OPEN",
                client.open(d, b"sub", OPEN4_SHARE_ACCESS_READ),
            )
            await fails(
                st.NFS4ERR_ISDIR,
                errno.EISDIR,
                "READ",
                client.read(sub, nfs4.ANONYMOUS_STATEID, 0, 10),
            )
            await fails(st.NFS4ERR_ISDIR, errno.EISDIR, "LINK", client.link(sub, d, b"l"))
            await fails(st.NFS4ERR_INVAL, errno.EINVAL, "READLINK", client.readlink(f))
            await fails(
                st.NFS4ERR_NAMETOOLONG, errno.ENAMETOOLONG, "LOOKUP", client.lookup(d, b"n" * 300)
            )
            # Nothing above left state behind.
            assert client.state.opens == {}


# ====================================================================== opens
async def test_opens_of_one_owner_share_one_stateid(ganesha: GaneshaServer, fresh_dir: str) -> None:
    """Two opens of one file by one open owner are one server open (RFC 8881 section
    9.1.4): the second OPEN upgrades it, releasing one user OPEN_DOWNGRADEs, the last
    CLOSEs."""
    with trio.fail_after(60):
        async with mounted(ganesha) as (session, client), mounted(ganesha) as (_, other):
            d = await make_dir(client, client.root_fh, fresh_dir)
            opened = await client.open(
                d, b"f", OPEN4_SHARE_ACCESS_READ, create=True, attrs=NFSAttrs(mode=0o644)
            )
            state = opened.state
            first = state.stateid
            fsid = opened.attrs.fsid
            assert fsid is not None

            assert await open_denying_writers(other, opened.fh) == nfsstat4.NFS4_OK
            upgraded = await client.open_fh(opened.fh, OPEN4_SHARE_ACCESS_WRITE)
            assert upgraded is state and len(client.state.opens) == 1
            assert state.access() == OPEN4_SHARE_ACCESS_BOTH
            assert state.stateid.other == first.other
            assert state.stateid.seqid == first.seqid + 1
            last_open = session.ops_sent(nfs4.OPEN4args)[-1]
            assert isinstance(last_open, nfs4.OPEN4args)
            assert last_open.share_access & OPEN4_SHARE_ACCESS_BOTH == OPEN4_SHARE_ACCESS_BOTH
            denied = await open_denying_writers(other, opened.fh)
            assert denied == nfsstat4.NFS4ERR_SHARE_DENIED  # the server holds WRITE too

            opens_before = len(session.ops_sent(nfs4.OPEN4args))
            again = await client.open_fh(opened.fh, OPEN4_SHARE_ACCESS_READ)
            assert again is state  # covered by what is held: no OPEN sent
            assert len(session.ops_sent(nfs4.OPEN4args)) == opens_before
            assert state.users == {OPEN4_SHARE_ACCESS_READ: 2, OPEN4_SHARE_ACCESS_WRITE: 1}

            await client.write(opened.fh, state.stateid, 0, b"written", stable_how4.FILE_SYNC4)

            await client.release(state, OPEN4_SHARE_ACCESS_WRITE)
            (down,) = session.ops_sent(nfs4.OPEN_DOWNGRADE4args)
            assert isinstance(down, nfs4.OPEN_DOWNGRADE4args)
            assert down.share_access == OPEN4_SHARE_ACCESS_READ
            assert state.stateid.other == first.other
            assert state.stateid.seqid == first.seqid + 2
            # The server holds READ only now: another client may deny writers.  (Ganesha
            # 4.3 still accepts a WRITE on the downgraded stateid, so that is no test.)
            assert await open_denying_writers(other, opened.fh) == nfsstat4.NFS4_OK
            data, _ = await client.read(opened.fh, state.stateid, 0, 100)
            assert data == b"written"

            await client.release(state, OPEN4_SHARE_ACCESS_READ)  # one reader left
            assert session.ops_sent(nfs4.CLOSE4args) == []
            assert len(session.ops_sent(nfs4.OPEN_DOWNGRADE4args)) == 1
            await client.release(state, OPEN4_SHARE_ACCESS_READ)
            (close,) = session.ops_sent(nfs4.CLOSE4args)
            assert isinstance(close, nfs4.CLOSE4args)
            assert close.open_stateid == state.stateid
            assert client.state.opens == {}
            with pytest.raises(NFS4ErrStateLost):
                await client.read(opened.fh, state.stateid, 0, 10)


# ====================================================================== locks
async def test_byte_range_locks_conflict_between_owners(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with trio.fail_after(60):
        async with mounted(ganesha) as (session, client), mounted(ganesha) as (_, other):
            d = await make_dir(client, client.root_fh, fresh_dir)
            opened = await client.open(
                d, b"f", OPEN4_SHARE_ACCESS_BOTH, create=True, attrs=NFSAttrs(mode=0o666)
            )
            state = opened.state
            lock_a = await client.lock(state, b"A", 0, 100, write=True)
            assert lock_a.stateid is not None
            assert lock_a.ranges == [(0, 100, nfs_lock_type4.WRITE_LT)]

            # LOCKT from owner B of the same client: the conflict, with its range.
            denied = await client.test_lock(opened.fh, b"B", 50, 10, write=True)
            assert denied is not None
            assert (denied.offset, denied.length) == (0, 100)
            assert denied.locktype == nfs_lock_type4.WRITE_LT
            assert denied.owner.owner == client.lock_owner(b"A")
            assert denied.owner.clientid == session.clientid
            assert await client.test_lock(opened.fh, b"B", 50, 10, write=False) is not None
            assert await client.test_lock(opened.fh, b"B", 100, 10, write=True) is None
            assert await client.test_lock(opened.fh, b"A", 0, 100, write=True) is None

            # ... and from another client altogether.
            fh_other, _ = await other.lookup(d, b"f")
            denied = await other.test_lock(fh_other, b"C", 0, TO_EOF, write=False)
            assert denied is not None and denied.owner.clientid == session.clientid

            # LOCK by B: NFS4ERR_DENIED with the conflict, EAGAIN at the FUSE edge.
            with pytest.raises(NFS4Error) as info:
                await client.lock(state, b"B", 90, 20, write=True)
            assert info.value.status == nfsstat4.NFS4ERR_DENIED
            assert info.value.errno == errno.EAGAIN
            res = info.value.results[-1]
            assert isinstance(res, nfs4.LOCK4res) and res.denied is not None
            assert (res.denied.offset, res.denied.length) == (0, 100)

            # A lets go; B gets it (after its failed first attempt).
            await client.unlock(lock_a, 0, 100)
            assert lock_a.ranges == []
            lock_b = await client.lock(state, b"B", 90, 20, write=True)
            assert lock_b.stateid is not None and lock_b.stateid != lock_a.stateid
            denied = await client.test_lock(opened.fh, b"A", 0, 100, write=False)
            assert denied is not None
            assert (denied.offset, denied.length) == (90, 20)
            assert denied.owner.owner == client.lock_owner(b"B")

            # B extends with its existing lock stateid (exist_lock_owner4).
            await client.lock(state, b"B", 200, 10, write=True)
            assert lock_b.ranges == [(90, 20, 2), (200, 10, 2)]
            assert await other.test_lock(fh_other, b"C", 205, 1, write=True) is not None
            await client.unlock(lock_b, 90, 20)
            await client.unlock(lock_b, 200, 10)
            assert await other.test_lock(fh_other, b"C", 0, TO_EOF, write=True) is None
            await client.release(state, OPEN4_SHARE_ACCESS_BOTH)
            assert client.state.locks == {}


async def test_read_locks_are_shared_and_go_with_the_last_close(
    ganesha: GaneshaServer, fresh_dir: str
) -> None:
    with trio.fail_after(60):
        async with mounted(ganesha) as (session, client), mounted(ganesha) as (_, other):
            d = await make_dir(client, client.root_fh, fresh_dir)
            opened = await client.open(d, b"f", OPEN4_SHARE_ACCESS_BOTH, create=True)
            await client.lock(opened.state, b"A", 0, TO_EOF, write=False)
            await client.lock(opened.state, b"B", 0, 10, write=False)
            denied = await client.test_lock(opened.fh, b"C", 5, 1, write=True)
            assert denied is not None and denied.locktype == nfs_lock_type4.READ_LT
            with pytest.raises(NFS4Error) as info:
                await client.lock(opened.state, b"C", 5, 1, write=True)
            assert info.value.status == nfsstat4.NFS4ERR_DENIED
            fh_other, _ = await other.lookup(d, b"f")
            assert await other.test_lock(fh_other, b"D", 0, 1, write=False) is None
            assert await other.test_lock(fh_other, b"D", 0, 1, write=True) is not None
            # The last close lets go of the locks still held (CLOSE would otherwise be
            # NFS4ERR_LOCKS_HELD, RFC 8881 section 18.2.3) and closes.
            await client.release(opened.state, OPEN4_SHARE_ACCESS_BOTH)
            assert len(session.ops_sent(nfs4.LOCKU4args)) == 2
            assert len(session.ops_sent(nfs4.CLOSE4args)) == 1
            assert client.state.opens == {} and client.state.locks == {}
            assert await other.test_lock(fh_other, b"D", 0, TO_EOF, write=True) is None

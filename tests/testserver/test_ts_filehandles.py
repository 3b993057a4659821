"""Volatile filehandles of the test server (RFC 8881 sections 4.2.3 and 11.11.2):
fh_expire_type per file system, ``expire_filehandles`` / ``expire-fh``, RENAME under
FH4_VOL_RENAME, FH4_NOEXPIRE_WITH_OPEN, and ``migrate(new_filehandles=True)``.

What is checked: an expired handle gets NFS4ERR_FHEXPIRED on PUTFH where its file
system is served (NFS4ERR_MOVED behaviour on the source of a migration is unchanged), a
lookup by path gives the new handle of the same object (same fileid, same fsid), the
pseudo-fs never expires, open stateids keep working with the new handle, and the event
log says what happened.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from contrib.testserver import (
    Cluster,
    ClusterConfig,
    ControlError,
    FsSpec,
    InstanceConfig,
    open_cluster,
)
from contrib.testserver.model import (
    FileSystem,
    fh_expire_type_text,
    parse_fh,
    parse_fh_expire_type,
)
from contrib.testserver.rawclient import RawClient
from contrib.testserver.server import EndpointConfig
from session.xdr import nfs4
from session.xdr.const import (
    FATTR4,
    FH4_NOEXPIRE_WITH_OPEN,
    FH4_PERSISTENT,
    FH4_VOL_MIGRATION,
    FH4_VOL_RENAME,
    FH4_VOLATILE_ANY,
    FSLI4BX_CLHANDLE,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    channel_dir_from_client4,
    nfs_ftype4,
    nfs_lock_type4,
    nfsstat4,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, decode_fattr4

from .test_ts_cli import CLI, _cli, _read_ready
from .test_ts_state import new_lock, open_file

S = nfsstat4
ID_ATTRS = [FATTR4.FILEID, FATTR4.FSID, FATTR4.FILEHANDLE, FATTR4.FH_EXPIRE_TYPE]


def fh_config() -> ClusterConfig:
    """A (127.0.0.1) serves p (persistent), v (volatile-any), n (volatile-any +
    noexpire-with-open), r (vol-rename) and m (vol-migration); B (127.0.0.2) none."""
    return ClusterConfig(
        instances=[
            InstanceConfig("A", [EndpointConfig("127.0.0.1")], lease_time=5, grace_time=2),
            InstanceConfig("B", [EndpointConfig("127.0.0.2")], lease_time=5, grace_time=2),
        ],
        filesystems=[
            FsSpec("p"),
            FsSpec("v", fh_expire_type="volatile-any"),
            FsSpec("n", fh_expire_type="volatile-any+noexpire-with-open"),
            FsSpec("r", fh_expire_type="vol-rename"),
            FsSpec("m", fh_expire_type="vol-migration"),
        ],
        lease_time=5,
        grace_time=2,
    )


@asynccontextmanager
async def fh_cluster() -> AsyncIterator[Cluster]:
    async with open_cluster(fh_config()) as cluster:
        yield cluster


async def connect_to(
    cluster: Cluster,
    name: str,
    nursery: trio.Nursery,
    owner: bytes | None = None,
    verifier: bytes | None = None,
) -> RawClient:
    ep = cluster.instance(name).endpoints[0]
    return await RawClient.connect(ep.address, ep.port, nursery, owner=owner, verifier=verifier)


async def attrs_of(c: RawClient, fh: bytes) -> NFSAttrs:
    return await c.getattrs(fh, ID_ATTRS)


def statuses(res: nfs4.COMPOUND4res) -> list[nfsstat4]:
    return [r.status for r in res.resarray]


# -- sans-I/O ------------------------------------------------------------------------------
def test_parse_fh_expire_type() -> None:
    """Names, RFC names and integers; NOEXPIRE_WITH_OPEN only with VOLATILE_ANY (4.2.3)."""
    assert parse_fh_expire_type("persistent") == FH4_PERSISTENT
    assert parse_fh_expire_type("volatile-any") == FH4_VOLATILE_ANY
    assert parse_fh_expire_type("FH4_VOL_MIGRATION") == FH4_VOL_MIGRATION
    assert (
        parse_fh_expire_type("volatile-any+noexpire-with-open")
        == FH4_VOLATILE_ANY | FH4_NOEXPIRE_WITH_OPEN
    )
    assert parse_fh_expire_type("vol-migration,vol-rename") == FH4_VOL_MIGRATION | FH4_VOL_RENAME
    assert parse_fh_expire_type(FH4_VOLATILE_ANY | FH4_NOEXPIRE_WITH_OPEN) == 3
    bad_values: list[str | int] = ["noexpire-with-open", "sometimes", "persistent+volatile-any"]
    for bad in [*bad_values, "", 16, 1, -1]:
        with pytest.raises(ValueError):
            parse_fh_expire_type(bad)
    assert fh_expire_type_text(0) == "FH4_PERSISTENT"
    assert fh_expire_type_text(3) == "FH4_NOEXPIRE_WITH_OPEN|FH4_VOLATILE_ANY"


def test_filesystem_epochs_and_kept_handles() -> None:
    """A new epoch expires every handle; a handle kept under NOEXPIRE_WITH_OPEN is
    valid while open and expires for good at the first use after the close."""
    fs = FileSystem("n", 1, ("export", "n"), fh_expire_type=FH4_VOLATILE_ANY | 1)
    f = fs.new_inode(nfs_ftype4.NF4REG, 0o644, 0, 0)
    g = fs.new_inode(nfs_ftype4.NF4REG, 0o644, 0, 0)
    old_f, old_g = parse_fh(fs.fh(f)), parse_fh(fs.fh(g))
    assert fs.fh_expiry(old_f, f, still_open=False) is None
    assert fs.expire_filehandles([f.fileid], cause="a test") == 1
    assert parse_fh(fs.fh(f)).epoch == 1
    assert fs.fh_expiry(old_f, f, still_open=True) is None
    assert fs.fh_expiry(old_g, g, still_open=True) == "filehandle epoch 0 of n expired by a test"
    assert fs.fh_expiry(old_f, f, still_open=False) is not None
    assert fs.fh_expiry(old_f, f, still_open=True) is not None  # reopened: still expired
    current = parse_fh(fs.fh(g))
    fs.expire_filehandle(g, still_open=False)
    assert fs.fh_expiry(current, g, still_open=False) is not None
    assert fs.fh_expiry(parse_fh(fs.fh(g)), g, still_open=False) is None


# -- the fh_expire_type attribute ------------------------------------------------------------
async def test_fh_expire_type_reported_per_configuration(nursery: trio.Nursery) -> None:
    """GETATTR fh_expire_type gives each file system's configured value (and for every
    object of it); the pseudo-fs is FH4_PERSISTENT; set_fh_expire_type changes it at run
    time (logged) without changing any handle; bad values are refused by name."""
    with trio.fail_after(10):
        async with fh_cluster() as cluster:
            c = await connect_to(cluster, "A", nursery)
            await c.establish()
            expected = {
                "p": FH4_PERSISTENT,
                "v": FH4_VOLATILE_ANY,
                "n": FH4_VOLATILE_ANY | FH4_NOEXPIRE_WITH_OPEN,
                "r": FH4_VOL_RENAME,
                "m": FH4_VOL_MIGRATION,
            }
            for name, bits in expected.items():
                root = await c.lookup_path(f"/export/{name}")
                assert (await attrs_of(c, root)).fh_expire_type == bits, name
                fh, sid, _ = await open_file(c, root, b"f", OPEN4_SHARE_ACCESS_READ)
                assert (await attrs_of(c, fh)).fh_expire_type == bits, name
                await c.ok([nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, sid)])
            pseudo = await c.lookup_path("/export")
            assert (await attrs_of(c, pseudo)).fh_expire_type == FH4_PERSISTENT
            p_root = await c.lookup_path("/export/p")
            assert cluster.set_fh_expire_type("p", "vol-migration") == "FH4_VOL_MIGRATION"
            assert (await attrs_of(c, p_root)).fh_expire_type == FH4_VOL_MIGRATION
            assert await c.lookup_path("/export/p") == p_root
            events = cluster.events.find("fh-expire-type")
            assert events and "FH4_VOL_MIGRATION (was FH4_PERSISTENT" in events[-1].message
            with pytest.raises(ControlError, match="unknown fh_expire_type 'nope'"):
                cluster.set_fh_expire_type("p", "nope")
            with pytest.raises(ControlError, match="FH4_VOLATILE_ANY"):
                cluster.set_fh_expire_type("p", "noexpire-with-open")
            with pytest.raises(ControlError, match="no file system"):
                cluster.set_fh_expire_type("zz", "volatile-any")
            status = {fs["name"]: fs for fs in cluster.status()["filesystems"]}
            assert status["n"]["fh_expire_type"] == "FH4_NOEXPIRE_WITH_OPEN|FH4_VOLATILE_ANY"
            assert status["v"]["fh_epoch"] == 0


# -- expire-fh --------------------------------------------------------------------------------
async def test_expire_fh_old_handles_fhexpired_new_ones_by_lookup(nursery: trio.Nursery) -> None:
    """After expire_filehandles("v") every old handle of v gets NFS4ERR_FHEXPIRED on
    PUTFH; PUTROOTFH + LOOKUP gives new handles (same fileid, same fsid); a LOOKUP from
    the still-valid /export handle gives the new root; the open stateid reads and writes
    through the new handle, the lock stateid unlocks and the open closes; a removed
    object's old handle is NFS4ERR_STALE; other file systems are untouched; the event log
    says what happened."""
    with trio.fail_after(10):
        async with fh_cluster() as cluster:
            c = await connect_to(cluster, "A", nursery, owner=b"expire-fh")
            await c.establish()
            export = await c.lookup_path("/export")
            root = await c.lookup_path("/export/v")
            fh, sid, _ = await open_file(c, root, b"file", OPEN4_SHARE_ACCESS_BOTH)
            await c.ok(
                [nfs4.PUTFH4args(fh), nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, b"abc")]
            )
            locked = await c.ok([nfs4.PUTFH4args(fh), new_lock(sid, b"lock-owner", 0, 10)])
            lock_res = locked.resarray[-1]
            assert isinstance(lock_res, nfs4.LOCK4res) and lock_res.resok is not None
            lock_sid = lock_res.resok.lock_stateid
            gone, gone_sid, _ = await open_file(c, root, b"gone", OPEN4_SHARE_ACCESS_READ)
            await c.ok([nfs4.PUTFH4args(gone), nfs4.CLOSE4args(0, gone_sid)])
            await c.ok([nfs4.PUTFH4args(root), nfs4.REMOVE4args(b"gone")])
            before = await attrs_of(c, fh)
            p_root = await c.lookup_path("/export/p")

            report = cluster.expire_filehandles("v")
            assert (report.fs, report.instance, report.epoch) == ("v", "A", 1)
            assert not report.forced and report.kept_open == []
            assert report.fh_expire_type == "FH4_VOLATILE_ANY"

            for old in (fh, root):
                res = await c.seq([nfs4.PUTFH4args(old), nfs4.GETATTR4args(bitmap4_from([]))])
                assert statuses(res) == [S.NFS4_OK, S.NFS4ERR_FHEXPIRED]
                assert res.status == S.NFS4ERR_FHEXPIRED
            res = await c.seq([nfs4.PUTFH4args(gone)])
            assert res.status == S.NFS4ERR_STALE
            new_fh = await c.lookup_path("/export/v/file")
            assert new_fh != fh
            after = await attrs_of(c, new_fh)
            assert (after.fileid, after.fsid) == (before.fileid, before.fsid)
            assert after.filehandle == new_fh
            res = await c.ok([nfs4.PUTFH4args(export), nfs4.LOOKUP4args(b"v"), nfs4.GETFH4args()])
            getfh = res.resarray[-1]
            assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
            assert getfh.resok.object == await c.lookup_path("/export/v") != root
            read = await c.ok([nfs4.PUTFH4args(new_fh), nfs4.READ4args(sid, 0, 10)])
            rd = read.resarray[-1]
            assert isinstance(rd, nfs4.READ4res) and rd.resok is not None
            assert rd.resok.data == b"abc"
            await c.ok(
                [nfs4.PUTFH4args(new_fh), nfs4.WRITE4args(sid, 3, stable_how4.FILE_SYNC4, b"d")]
            )
            unlock = nfs4.LOCKU4args(nfs_lock_type4.WRITE_LT, 0, lock_sid, 0, 10)
            await c.ok([nfs4.PUTFH4args(new_fh), unlock])
            await c.ok([nfs4.PUTFH4args(new_fh), nfs4.CLOSE4args(0, sid)])
            assert await c.lookup_path("/export/p") == p_root
            await c.ok([nfs4.PUTFH4args(p_root), nfs4.GETATTR4args(bitmap4_from([]))])

            expired = cluster.events.find("fh-expired")
            assert len(expired) == 1 and expired[0].instance == "A"
            assert "every filehandle of v expired (new epoch 1)" in expired[0].message
            answered = cluster.events.find("fhexpired")
            assert answered and answered[0].details["fs"] == "v"
            assert "NFS4ERR_FHEXPIRED to client" in answered[0].message
            assert "expired by expire-fh" in answered[0].message


async def test_expire_fh_refused_unless_volatile_any_or_forced(nursery: trio.Nursery) -> None:
    """A file system without FH4_VOLATILE_ANY promised its handles do not expire at any
    time: expire_filehandles refuses, naming the reason; force=True does it anyway and
    says so.  The pseudo-fs handles (/, /export) never expire."""
    with trio.fail_after(10):
        async with fh_cluster() as cluster:
            c = await connect_to(cluster, "A", nursery)
            await c.establish()
            root = await c.lookup_path("/export/m")
            pseudo = await c.lookup_path("/export")
            with pytest.raises(ControlError, match="fh_expire_type FH4_VOL_MIGRATION"):
                cluster.expire_filehandles("m")
            with pytest.raises(ControlError, match="no file system"):
                cluster.expire_filehandles("(pseudo)")
            report = cluster.expire_filehandles("m", force=True)
            assert report.forced and report.epoch == 1
            res = await c.seq([nfs4.PUTFH4args(root)])
            assert res.status == S.NFS4ERR_FHEXPIRED
            await c.ok([nfs4.PUTFH4args(pseudo), nfs4.LOOKUP4args(b"m")])
            await c.ok([nfs4.PUTROOTFH4args(), nfs4.GETFH4args()])
            assert "forced although m reports" in cluster.events.find("fh-expired")[-1].message


async def test_noexpire_with_open(nursery: trio.Nursery) -> None:
    """FH4_VOLATILE_ANY | FH4_NOEXPIRE_WITH_OPEN: the old handle of a file open at the
    expiry stays valid while it is open (and PUTFH + GETFH of it gives the new handle);
    a closed file's old handle expires at once; after CLOSE the kept one expires too."""
    with trio.fail_after(10):
        async with fh_cluster() as cluster:
            c = await connect_to(cluster, "A", nursery)
            await c.establish()
            root = await c.lookup_path("/export/n")
            kept, sid, _ = await open_file(c, root, b"kept", OPEN4_SHARE_ACCESS_READ)
            closed, closed_sid, _ = await open_file(c, root, b"closed", OPEN4_SHARE_ACCESS_READ)
            await c.ok([nfs4.PUTFH4args(closed), nfs4.CLOSE4args(0, closed_sid)])
            report = cluster.expire_filehandles("n")
            fileid = parse_fh(kept).fileid
            assert report.kept_open == [fileid]
            res = await c.ok([nfs4.PUTFH4args(kept), nfs4.GETFH4args()])
            getfh = res.resarray[-1]
            assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
            assert getfh.resok.object == await c.lookup_path("/export/n/kept") != kept
            assert (await c.seq([nfs4.PUTFH4args(closed)])).status == S.NFS4ERR_FHEXPIRED
            assert (await c.seq([nfs4.PUTFH4args(root)])).status == S.NFS4ERR_FHEXPIRED
            await c.ok([nfs4.PUTFH4args(kept), nfs4.CLOSE4args(0, sid)])
            assert (await c.seq([nfs4.PUTFH4args(kept)])).status == S.NFS4ERR_FHEXPIRED
            event = cluster.events.find("fh-expired")[0]
            assert "keep their old handle while open" in event.message


async def test_vol_rename_expires_the_renamed_object(nursery: trio.Nursery) -> None:
    """FH4_VOL_RENAME: RENAME expires the renamed object's handle (FHEXPIRED on PUTFH),
    a LOOKUP of the new name gives its new handle with the same fileid; the directory's
    and other files' handles stay valid."""
    with trio.fail_after(10):
        async with fh_cluster() as cluster:
            c = await connect_to(cluster, "A", nursery)
            await c.establish()
            root = await c.lookup_path("/export/r")
            moving, sid, _ = await open_file(c, root, b"old", OPEN4_SHARE_ACCESS_READ)
            other, other_sid, _ = await open_file(c, root, b"other", OPEN4_SHARE_ACCESS_READ)
            for fh, st in ((moving, sid), (other, other_sid)):
                await c.ok([nfs4.PUTFH4args(fh), nfs4.CLOSE4args(0, st)])
            await c.ok(
                [
                    nfs4.PUTFH4args(root),
                    nfs4.SAVEFH4args(),
                    nfs4.PUTFH4args(root),
                    nfs4.RENAME4args(b"old", b"new"),
                ]
            )
            assert (await c.seq([nfs4.PUTFH4args(moving)])).status == S.NFS4ERR_FHEXPIRED
            renamed = await c.lookup_path("/export/r/new")
            assert renamed != moving
            assert (await attrs_of(c, renamed)).fileid == parse_fh(moving).fileid
            await c.ok([nfs4.PUTFH4args(root), nfs4.PUTFH4args(other)])
            event = cluster.events.find("fh-expired")[-1]
            assert event.details["cause"] == "rename" and "FH4_VOL_RENAME" in event.message


# -- migration with new filehandles ---------------------------------------------------------
async def test_migrate_new_filehandles(nursery: trio.Nursery) -> None:
    """migrate(new_filehandles=True) with TSM and the session: on the source the old
    handle is still taken by PUTFH and the next operation gets NFS4ERR_MOVED, location
    attributes work; on the destination the old handle gets NFS4ERR_FHEXPIRED, a path
    lookup gives the new one (same fileid and fsid) and the transferred open stateid
    reads through it; fs_locations_info puts source and destination in different handle
    classes; a later migration back without new handles keeps the new handles valid."""
    with trio.fail_after(15):
        async with fh_cluster() as cluster:
            owner = b"fh-migration"
            c = await connect_to(cluster, "A", nursery, owner=owner)
            await c.establish()
            root = await c.lookup_path("/export/m")
            fh, sid, _ = await open_file(c, root, b"file", OPEN4_SHARE_ACCESS_BOTH)
            await c.ok(
                [nfs4.PUTFH4args(fh), nfs4.WRITE4args(sid, 0, stable_how4.FILE_SYNC4, b"moved")]
            )
            before = await attrs_of(c, fh)
            report = await cluster.migrate("m", to="B", new_filehandles=True)
            assert report.new_filehandles and report.fh_epoch == 1
            assert report.to_json()["new_filehandles"] is True

            res = await c.seq([nfs4.PUTFH4args(fh), nfs4.READ4args(sid, 0, 5)])
            assert statuses(res) == [S.NFS4_OK, S.NFS4_OK, S.NFS4ERR_MOVED]
            info = bitmap4_from([FATTR4.FS_LOCATIONS_INFO, FATTR4.FS_STATUS])
            res = await c.ok([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(info)])
            ga = res.resarray[-1]
            assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
            located = decode_fattr4(ga.resok.obj_attributes)
            assert located.fs_status is not None and located.fs_status.fss_absent

            cluster.set_locations("m", [["A"]])  # list the source too: compare classes
            located = await c.getattrs(fh, [FATTR4.FS_LOCATIONS_INFO])
            assert located.fs_locations_info is not None
            b_entry, a_entry = (item.fli_entries[0] for item in located.fs_locations_info.fli_items)
            assert b_entry.fls_info[FSLI4BX_CLHANDLE] != a_entry.fls_info[FSLI4BX_CLHANDLE]

            on_b = await connect_to(cluster, "B", nursery, owner=owner, verifier=c.verifier)
            await on_b.exchange_id()
            on_b.sessionid, on_b.seqids = c.sessionid, dict(c.seqids)
            bind = nfs4.BIND_CONN_TO_SESSION4args(
                c.sessionid, channel_dir_from_client4.CDFC4_FORE_OR_BOTH, False
            )
            assert (await on_b.call([bind])).status == S.NFS4_OK
            for old in (fh, root):
                res = await on_b.seq([nfs4.PUTFH4args(old), nfs4.READ4args(sid, 0, 5)])
                assert statuses(res) == [S.NFS4_OK, S.NFS4ERR_FHEXPIRED]
            new_fh = await on_b.lookup_path("/export/m/file")
            assert new_fh != fh
            after = await attrs_of(on_b, new_fh)
            assert (after.fileid, after.fsid) == (before.fileid, before.fsid)
            read = await on_b.ok([nfs4.PUTFH4args(new_fh), nfs4.READ4args(sid, 0, 10)])
            rd = read.resarray[-1]
            assert isinstance(rd, nfs4.READ4res) and rd.resok is not None
            assert rd.resok.data == b"moved"

            kinds = [(e.instance, e.kind) for e in cluster.events.since(0)]
            assert (None, "migrate") in kinds and ("B", "fh-expired") in kinds
            assert ("B", "fhexpired") in kinds
            migrate_event = cluster.events.find("migrate")[-1]
            assert "with new filehandles" in migrate_event.message
            assert migrate_event.details["new_filehandles"] is True
            assert "different handle classes" in cluster.events.find("fh-expired")[-1].message

            back = await cluster.migrate("m", to="A")
            assert not back.new_filehandles and back.fh_epoch == 1
            await c.ok([nfs4.PUTFH4args(new_fh), nfs4.GETATTR4args(bitmap4_from([]))])
            assert (await c.seq([nfs4.PUTFH4args(fh)])).status == S.NFS4ERR_FHEXPIRED


async def test_migrate_without_new_filehandles_keeps_them(nursery: trio.Nursery) -> None:
    """A file system reporting FH4_VOL_MIGRATION migrated without new_filehandles keeps
    its handles (same handle class in fs_locations_info: RFC 8881 section 11.11.2 lets
    that decide); a FH4_PERSISTENT one may get new handles too (the handle class says so,
    and the event notes what the attribute promised)."""
    with trio.fail_after(10):
        async with fh_cluster() as cluster:
            c = await connect_to(cluster, "A", nursery)
            await c.establish()
            m_root = await c.lookup_path("/export/m")
            p_root = await c.lookup_path("/export/p")
            await cluster.migrate("m", to="B", tsm=False)
            await cluster.migrate("p", to="B", tsm=False, new_filehandles=True)
            on_b = await connect_to(cluster, "B", nursery)
            await on_b.establish()
            await on_b.ok([nfs4.PUTFH4args(m_root), nfs4.GETATTR4args(bitmap4_from([]))])
            assert (await on_b.seq([nfs4.PUTFH4args(p_root)])).status == S.NFS4ERR_FHEXPIRED
            assert "only a client reading the handle classes" in (
                cluster.events.find("fh-expired")[-1].message
            )


# -- the command line -------------------------------------------------------------------------
async def test_cli_expire_fh_and_migrate_new_filehandles(nursery: trio.Nursery) -> None:
    """``serve --fh-expire-type a=volatile-any``, then ``expire-fh``,
    ``fh-expire-type``, ``expire-fh`` refused and ``--force``d, ``migrate
    --new-filehandles``; a raw client sees NFS4ERR_FHEXPIRED; ``events`` names it."""
    with trio.fail_after(40), tempfile.TemporaryDirectory(prefix="ts-fh-") as tmp:
        control = str(Path(tmp) / "control.sock")
        bad = await trio.run_process(
            [
                *CLI,
                "--control",
                control,
                "serve",
                "--instance",
                "127.0.0.1",
                "--fs",
                "a",
                "--fh-expire-type",
                "a=x",
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert bad.returncode == 2 and b"unknown fh_expire_type 'x'" in bad.stderr
        proc = await trio.lowlevel.open_process(
            [
                *CLI,
                "--control",
                control,
                "serve",
                "--instance",
                "127.0.0.1",
                "--instance",
                "B=127.0.0.2",
                "--fs",
                "a",
                "--fh-expire-type",
                "a=volatile-any",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert proc.stdout is not None
            endpoints = await _read_ready(proc.stdout)
            client = await RawClient.connect(*endpoints["A"], nursery, owner=b"cli-fh")
            await client.establish()
            fh = await client.lookup_path("/export/a")
            assert (await client.getattrs(fh, [FATTR4.FH_EXPIRE_TYPE])).fh_expire_type == 2
            done = await _cli(control, "expire-fh", "a")
            assert done.returncode == 0, done.stderr.decode()
            assert json.loads(done.stdout)["epoch"] == 1
            assert (await client.seq([nfs4.PUTFH4args(fh)])).status == S.NFS4ERR_FHEXPIRED
            fh = await client.lookup_path("/export/a")
            changed = await _cli(control, "fh-expire-type", "a", "vol-migration")
            assert json.loads(changed.stdout)["fh_expire_type"] == "FH4_VOL_MIGRATION"
            refused = await _cli(control, "expire-fh", "a")
            assert refused.returncode == 2 and b"may not expire at any time" in refused.stderr
            forced = await _cli(control, "expire-fh", "a", "--force")
            assert json.loads(forced.stdout)["forced"] is True
            numeric = await _cli(control, "fh-expire-type", "a", "0x6")
            assert b"FH4_VOLATILE_ANY|FH4_VOL_MIGRATION" in numeric.stdout
            moved = await _cli(control, "migrate", "a", "--to", "B", "--new-filehandles")
            assert moved.returncode == 0, moved.stderr.decode()
            report = json.loads(moved.stdout)
            assert report["new_filehandles"] is True and report["fh_epoch"] == 3
            status = json.loads((await _cli(control, "status")).stdout)
            (fs_a,) = status["filesystems"]
            assert (fs_a["fh_epoch"], fs_a["served_by"]) == (3, "B")
            events = (await _cli(control, "events")).stdout.decode()
            assert "fh-expired: every filehandle of a expired" in events
            assert "fhexpired: NFS4ERR_FHEXPIRED" in events
            assert "[B] fh-expired: B serves a with new filehandles" in events
        finally:
            proc.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0

"""Sans-I/O pieces of the test server, without sockets: the SEQUENCE slot decision, the
EXCHANGE_ID case table, lock arithmetic, share reservations, grace periods, the model's
filehandles and namespace, and lease expiry on a mock clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from contrib.testserver import Cluster
from contrib.testserver.clients import (
    FORE_LIMITS,
    ClientRecord,
    ClientTable,
    GracePeriod,
    LostState,
    SeqDecision,
    Slot,
    check_sequence,
    negotiate_channel,
)
from contrib.testserver.model import FsError, Model, check_name
from contrib.testserver.server import universal_address
from contrib.testserver.state import StateTable
from session.locks import EOF_OFFSET, lock_end, lock_length
from session.xdr import nfs4
from session.xdr.const import (
    EXCHGID4_FLAG_UPD_CONFIRMED_REC_A,
    NFS4_UINT64_MAX,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WRITE,
    OPEN4_SHARE_DENY_NONE,
    OPEN4_SHARE_DENY_WRITE,
    nfs_ftype4,
    nfs_lock_type4,
    nfsstat4,
)

from .conftest import two_instance_config

S = nfsstat4
D = SeqDecision


@pytest.mark.parametrize(
    ("slot", "seqid", "digest", "expected"),
    [
        (Slot(0), 1, b"a", D.NEW),
        (Slot(0), 0, b"a", D.MISORDERED),
        (Slot(0), 2, b"a", D.MISORDERED),
        (Slot(5, reply=b"r", args_digest=b"a"), 5, b"a", D.REPLAY),
        (Slot(5, reply=None, args_digest=b"a"), 5, b"a", D.REPLAY_UNCACHED),
        (Slot(5, reply=b"r", args_digest=b"a"), 5, b"b", D.FALSE_RETRY),
        (Slot(5), 6, b"a", D.NEW),
        (Slot(5), 4, b"a", D.MISORDERED),
        (Slot(0xFFFFFFFF), 0, b"a", D.NEW),  # wraps modulo 2**32
        (Slot(5, relaxed=True), 99, b"a", D.NEW),  # seed 001 4.2.7
        (Slot(5, reply=b"r", args_digest=b"a", relaxed=True), 5, b"a", D.REPLAY),
        (
            Slot(5, reply=b"r", args_digest=b"a", status=S.NFS4ERR_MOVED, relaxed=True),
            5,
            b"a",
            D.NEW,
        ),
    ],
)
def test_check_sequence(slot: Slot, seqid: int, digest: bytes, expected: SeqDecision) -> None:
    assert check_sequence(slot, seqid, digest) is expected


def test_exchange_id_case_table() -> None:
    table = ClientTable(1)
    me = ("sys", 0)
    first = table.exchange_id(b"owner", b"v1", 0, me, 0.0, may_replace=False)
    assert first.status == S.NFS4_OK and first.record is not None
    assert first.case.startswith("case 1")
    again = table.exchange_id(b"owner", b"v1", 0, me, 0.0, may_replace=False)
    assert again.case.startswith("case 5") and again.record is not None
    assert again.record.clientid != first.record.clientid
    assert table.get(first.record.clientid) is None
    again.record.confirmed = True
    same = table.exchange_id(b"owner", b"v1", 0, me, 0.0, may_replace=False)
    assert same.record is again.record and same.case.startswith("case 2")
    restart = table.exchange_id(b"owner", b"v2", 0, me, 0.0, may_replace=False)
    assert restart.case.startswith("case 4") and restart.record is not again.record
    other = table.exchange_id(b"owner", b"v1", 0, ("sys", 5), 0.0, may_replace=False)
    assert other.status == S.NFS4ERR_CLID_INUSE
    upd = EXCHGID4_FLAG_UPD_CONFIRMED_REC_A
    assert table.exchange_id(b"owner", b"v1", upd, me, 0.0, may_replace=False).status == S.NFS4_OK
    assert table.exchange_id(b"x", b"v1", upd, me, 0.0, may_replace=False).status == S.NFS4ERR_NOENT


def test_channel_negotiation() -> None:
    req = nfs4.channel_attrs4(64, 1 << 30, 1 << 30, 1 << 30, 1000, 1000, [7])
    got = negotiate_channel(req, FORE_LIMITS)
    assert isinstance(got, nfs4.channel_attrs4)
    assert got.ca_headerpadsize == 0 and got.ca_rdma_ird == []
    assert got.ca_maxrequests == FORE_LIMITS.max_requests
    assert got.ca_maxrequestsize == FORE_LIMITS.max_request
    small = nfs4.channel_attrs4(0, 100, 100, 0, 8, 8, [])
    assert negotiate_channel(small, FORE_LIMITS) == S.NFS4ERR_TOOSMALL
    none = nfs4.channel_attrs4(0, 4096, 4096, 0, 8, 0, [])
    assert negotiate_channel(none, FORE_LIMITS) == S.NFS4ERR_INVAL


def test_lock_arithmetic_and_conflicts() -> None:
    table = StateTable()
    key = ("a", 7)
    opened = table.new_open(1, b"oo", key, OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_DENY_NONE)
    mine = table.new_lock(1, b"me", opened)
    mine.held.lock(0, 100, nfs_lock_type4.WRITE_LT)
    mine.held.unlock(40, 60)
    assert [(r.start, r.end) for r in mine.ranges] == [(0, 40), (60, 100)]
    mine.held.lock(40, 60, nfs_lock_type4.WRITEW_LT)
    assert [(r.start, r.end) for r in mine.ranges] == [(0, 100)]
    mine.held.lock(10, 20, nfs_lock_type4.READ_LT)
    assert [(r.start, r.end, r.locktype) for r in mine.ranges] == [
        (0, 10, nfs_lock_type4.WRITE_LT),
        (10, 20, nfs_lock_type4.READ_LT),
        (20, 100, nfs_lock_type4.WRITE_LT),
    ]
    assert table.lock_conflict(key, (1, b"me"), 0, 100, nfs_lock_type4.WRITE_LT) is None
    conflict = table.lock_conflict(key, (2, b"you"), 15, 16, nfs_lock_type4.READ_LT)
    assert conflict is None  # read over read
    conflict = table.lock_conflict(key, (2, b"you"), 5, 15, nfs_lock_type4.READ_LT)
    assert conflict is not None and (conflict.start, conflict.end) == (0, 10)
    assert lock_end(5, NFS4_UINT64_MAX) == EOF_OFFSET
    assert lock_length(5, EOF_OFFSET) == NFS4_UINT64_MAX
    assert not mine.held.exact_or_disjoint(0, 50)
    assert mine.held.exact_or_disjoint(200, 300)


def test_share_reservations_and_revocation() -> None:
    table = StateTable()
    key = ("a", 1)
    writer = table.new_open(1, b"w", key, OPEN4_SHARE_ACCESS_READ, OPEN4_SHARE_DENY_WRITE)
    assert table.share_conflict(key, OPEN4_SHARE_ACCESS_WRITE, 0) is writer
    assert table.share_conflict(key, OPEN4_SHARE_ACCESS_READ, 0) is None
    assert table.share_conflict(key, OPEN4_SHARE_ACCESS_WRITE, 0, exclude=writer) is None
    assert table.denied_to_special(key, OPEN4_SHARE_ACCESS_WRITE)
    table.revoke(writer, S.NFS4ERR_EXPIRED)
    assert table.share_conflict(key, OPEN4_SHARE_ACCESS_WRITE, 0) is None
    assert table.get(writer.other) is writer and writer.revoked == S.NFS4ERR_EXPIRED
    assert table.revoked_for_client(1) == [writer]
    assert writer.bump().seqid == 2


def test_grace_period_bookkeeping() -> None:
    lost = LostState(b"c1", b"lo", "a", 5, "lock", 0, 10)
    grace = GracePeriod("a", ends_at=10.0, reclaimers={b"c1": False, b"c2": False}, lost=[lost])
    assert grace.may_reclaim(b"c1", 1.0) and not grace.may_reclaim(b"c3", 1.0)
    assert grace.is_lost_lock(b"c1", b"lo", "a", 5, 5, 6)
    assert not grace.is_lost_lock(b"c1", b"lo", "a", 5, 10, 20)
    assert not grace.is_lost_open(b"c1", b"lo", "a", 5)
    grace.reclaimers[b"c1"] = True
    assert not grace.may_reclaim(b"c1", 1.0) and not grace.over(1.0)
    grace.reclaimers[b"c2"] = True
    assert grace.over(1.0)
    assert GracePeriod(None, 10.0, {b"c": False}).over(10.0)


def test_model_filehandles_and_namespace() -> None:
    model = Model()
    a = model.add_filesystem("a", "/export/a")
    model.add_filesystem("b", "/export/b")
    with pytest.raises(ValueError):
        model.add_filesystem("a2", "/export/a")
    export_fs, export = model.lookup(model.pseudo, model.pseudo.root, b"export")
    fs, root = model.lookup(export_fs, export, b"a")
    assert fs is a and root is a.root
    assert model.lookupp(a, a.root) == (model.pseudo, export)
    assert model.mounted_on_fileid(a, a.root) == model.pseudo.lookup_name(export, b"a").fileid
    f = a.new_inode(nfs_ftype4.NF4REG, 0o644, 0, 0)
    a.add_entry(a.root, b"f", f)
    assert model.resolve(a.fh(f)) == (a, f)
    with pytest.raises(FsError) as bad:
        model.resolve(b"not a handle")
    assert bad.value.status == S.NFS4ERR_BADHANDLE
    a.remove_entry(a.root, b"f")
    a.drop_link(f, still_open=False)
    with pytest.raises(FsError) as stale:
        model.resolve(a.fh(f))
    assert stale.value.status == S.NFS4ERR_STALE
    assert model.inside_export("/export/a/ref") and not model.inside_export("/export/r")
    for name, status in [
        (b"", S.NFS4ERR_INVAL),
        (b"..", S.NFS4ERR_BADNAME),
        (b"x" * 256, S.NFS4ERR_NAMETOOLONG),
        (b"\xff", S.NFS4ERR_BADCHAR),
    ]:
        with pytest.raises(FsError) as err:
            check_name(name)
        assert err.value.status == status
    assert universal_address("127.0.0.2", 2049) == "127.0.0.2"
    assert universal_address("127.0.0.2", 20490) == "127.0.0.2.80.10"


async def test_lease_expiry_on_a_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    """The reaper revokes a silent client's state after one lease (RFC 8881 section 8.3)
    and drops an unconfirmed record; a renewed client keeps its state."""
    cluster = Cluster(two_instance_config(lease=30))
    inst = cluster.instance("A")
    now = trio.current_time()

    def client(clientid: int, confirmed: bool) -> ClientRecord:
        rec = ClientRecord(clientid, b"o%d" % clientid, b"v", ("sys", 0), confirmed, 0, now)
        inst.clients.add(rec)
        return rec

    silent, renewed, unconfirmed = client(1, True), client(2, True), client(3, False)
    lost = inst.state.new_open(1, b"oo", ("a", 9), OPEN4_SHARE_ACCESS_READ, 0)
    kept = inst.state.new_open(2, b"oo", ("a", 9), OPEN4_SHARE_ACCESS_READ, 0)
    await trio.sleep(20)
    renewed.last_renewal = trio.current_time()
    await trio.sleep(20)
    inst.reap()
    assert lost.revoked == S.NFS4ERR_EXPIRED and kept.revoked is None
    assert inst.clients.get(unconfirmed.clientid) is None
    assert inst.clients.get(silent.clientid) is silent
    assert [e.kind for e in cluster.events.since(0)] == ["lease-expired"]

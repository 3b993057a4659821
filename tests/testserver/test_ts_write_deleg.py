"""Write delegations of the test server, raw compounds against RFC 8881 section 10
(10.2, 10.4, 10.4.3), 18.16.3 (OPEN's delegation answer), 20.1 (CB_GETATTR) and 20.6
(CB_RECALL_ANY): granting and upgrading, conflicts that recall, CB_GETATTR with the
holder's size and change, reclaim after a restart and after a migration without TSM,
Transparent State Migration, and the CB_RECALL_ANY control."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from contrib.testserver import Cluster
from contrib.testserver.cli import parse_recall_mask
from contrib.testserver.control import execute
from contrib.testserver.rawclient import Callback, RawClient
from session.rpc import RpcCall
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder
from session.xdr.const import (
    FATTR4,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WANT_ANY_DELEG,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG,
    OPEN4_SHARE_ACCESS_WRITE,
    OPEN4_SHARE_DENY_NONE,
    RCA4_TYPE_MASK_RDATA_DLG,
    RCA4_TYPE_MASK_WDATA_DLG,
    limit_by4,
    nfsstat4,
    open_claim_type4,
    open_delegation_type4,
    stable_how4,
    why_no_delegation4,
)
from session.xdr.fattr import (
    NFSAttrs,
    bitmap4_from,
    bitmap4_to_set,
    decode_fattr4,
    encode_fattr4,
)

from .conftest import Connect

S = nfsstat4
D = open_delegation_type4
CONTENT = b"0123456789" * 100  # 1000 bytes


async def export_a(c: RawClient) -> bytes:
    return await c.lookup_path("/export/a")


async def opened(
    c: RawClient,
    fh: bytes,
    access: int,
    *,
    want: int = OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE,
    owner: bytes = b"owner",
) -> nfs4.OPEN4resok:
    """OPEN by filehandle (CLAIM_FH); the OPEN4resok."""
    res = await c.ok([nfs4.PUTFH4args(fh), c.open_args(None, access, owner=owner, want=want)])
    op = res.resarray[-1]
    assert isinstance(op, nfs4.OPEN4res) and op.resok is not None
    return op.resok


async def new_file(c: RawClient, root: bytes, name: bytes, data: bytes = CONTENT) -> bytes:
    """Create ``name`` holding ``data`` with an open that wants no delegation, then close
    it: a file nobody holds state on; its filehandle."""
    res = await c.ok(
        [
            nfs4.PUTFH4args(root),
            c.open_args(
                name,
                OPEN4_SHARE_ACCESS_BOTH,
                create=True,
                owner=b"creator",
                want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
            ),
            nfs4.GETFH4args(),
            nfs4.WRITE4args(nfs4.CURRENT_STATEID, 0, stable_how4.FILE_SYNC4, data),
            nfs4.CLOSE4args(0, nfs4.CURRENT_STATEID),
        ]
    )
    getfh = res.resarray[3]
    assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
    return getfh.resok.object


async def write_delegated(
    holder: RawClient, name: bytes
) -> tuple[bytes, nfs4.stateid4, nfs4.OPEN4resok]:
    """A file with ``holder``'s write delegation: (fh, delegation stateid, OPEN4resok)."""
    root = await export_a(holder)
    fh = await new_file(holder, root, name)
    resok = await opened(holder, fh, OPEN4_SHARE_ACCESS_BOTH)
    assert resok.delegation.delegation_type == D.OPEN_DELEGATE_WRITE, resok.delegation
    assert resok.delegation.write is not None
    return fh, resok.delegation.write.stateid, resok


async def two_clients(connect: Connect) -> tuple[RawClient, RawClient]:
    holder = await connect("A", owner=b"wd-holder")
    await holder.establish()
    other = await connect("A", owner=b"wd-other")
    await other.establish()
    return holder, other


def getattr_ops(fh: bytes, *attrs: int) -> list[nfs4.ArgOp]:
    return [nfs4.PUTFH4args(fh), nfs4.GETATTR4args(bitmap4_from(attrs))]


def attrs_of(res: nfs4.COMPOUND4res) -> NFSAttrs:
    ga = res.resarray[-1]
    assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
    return decode_fattr4(ga.resok.obj_attributes)


async def test_write_delegation_granted_with_space_limit(connect: Connect) -> None:
    """18.16.3 / 10.4: an open for writing with no preference gets OPEN_DELEGATE_WRITE
    with an NFS_LIMIT_SIZE space limit; WANT_NO_DELEG gets NONE_EXT WND4_NOT_WANTED;
    another client's open makes a WANT_WRITE_DELEG answer WND4_CONTENTION (and a
    no-preference open just OPEN_DELEGATE_NONE); the delegation stateid writes."""
    with trio.fail_after(10):
        holder, other = await two_clients(connect)
        root = await export_a(holder)
        fh, deleg, resok = await write_delegated(holder, b"granted")
        write = resok.delegation.write
        assert write is not None and not write.recall
        assert write.space_limit.limitby == limit_by4.NFS_LIMIT_SIZE
        assert write.space_limit.filesize is not None
        assert write.space_limit.filesize >= 1 << 20  # generous: the free space
        # WRITE with the write delegation's stateid (8.2.2).
        res = await holder.ok(
            [nfs4.PUTFH4args(fh), nfs4.WRITE4args(deleg, 0, stable_how4.UNSTABLE4, b"ABC")]
        )
        assert res.status == S.NFS4_OK

        declined = await opened(
            other,
            await new_file(other, root, b"declined"),
            OPEN4_SHARE_ACCESS_WRITE,
            want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
        )
        assert declined.delegation.delegation_type == D.OPEN_DELEGATE_NONE_EXT
        assert declined.delegation.od_whynone is not None
        assert declined.delegation.od_whynone.ond_why == why_no_delegation4.WND4_NOT_WANTED

        shared = await new_file(holder, root, b"shared")
        await opened(other, shared, OPEN4_SHARE_ACCESS_READ, want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG)
        contended = await opened(
            holder, shared, OPEN4_SHARE_ACCESS_BOTH, want=OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG
        )
        assert contended.delegation.delegation_type == D.OPEN_DELEGATE_NONE_EXT
        assert contended.delegation.od_whynone is not None
        assert contended.delegation.od_whynone.ond_why == why_no_delegation4.WND4_CONTENTION
        plain = await opened(holder, shared, OPEN4_SHARE_ACCESS_BOTH, owner=b"owner-2")
        assert plain.delegation.delegation_type == D.OPEN_DELEGATE_NONE


async def test_read_delegation_stateid_does_not_write(connect: Connect) -> None:
    """A read delegation's stateid is no licence to WRITE (NFS4ERR_OPENMODE)."""
    with trio.fail_after(10):
        holder, _ = await two_clients(connect)
        root = await export_a(holder)
        fh = await new_file(holder, root, b"read-only")
        resok = await opened(holder, fh, OPEN4_SHARE_ACCESS_READ)
        assert resok.delegation.delegation_type == D.OPEN_DELEGATE_READ
        assert resok.delegation.read is not None
        res = await holder.seq(
            [
                nfs4.PUTFH4args(fh),
                nfs4.WRITE4args(resok.delegation.read.stateid, 0, stable_how4.UNSTABLE4, b"x"),
            ]
        )
        assert res.status == S.NFS4ERR_OPENMODE


async def test_upgrade_read_delegation_to_write(connect: Connect) -> None:
    """A read delegation's holder that opens for writing gets the same delegation (its
    ``other``, seqid advanced) as a write one when nobody else has the file; with
    another client's open it stays a read delegation (WND4_CONTENTION when a want is
    expressed)."""
    with trio.fail_after(10):
        holder, other = await two_clients(connect)
        root = await export_a(holder)
        fh = await new_file(holder, root, b"upgrade")
        first = await opened(holder, fh, OPEN4_SHARE_ACCESS_READ)
        assert first.delegation.read is not None
        read_sid = first.delegation.read.stateid
        upgraded = await opened(holder, fh, OPEN4_SHARE_ACCESS_BOTH, owner=b"writer")
        assert upgraded.delegation.delegation_type == D.OPEN_DELEGATE_WRITE
        assert upgraded.delegation.write is not None
        write_sid = upgraded.delegation.write.stateid
        assert write_sid.other == read_sid.other
        assert write_sid.seqid == read_sid.seqid + 1

        fh2 = await new_file(holder, root, b"no-upgrade")
        second = await opened(holder, fh2, OPEN4_SHARE_ACCESS_READ)
        assert second.delegation.delegation_type == D.OPEN_DELEGATE_READ
        await opened(other, fh2, OPEN4_SHARE_ACCESS_READ, want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG)
        refused = await opened(
            holder,
            fh2,
            OPEN4_SHARE_ACCESS_BOTH,
            owner=b"w2",
            want=OPEN4_SHARE_ACCESS_WANT_ANY_DELEG,
        )
        assert refused.delegation.delegation_type == D.OPEN_DELEGATE_NONE_EXT
        assert refused.delegation.od_whynone is not None
        assert refused.delegation.od_whynone.ond_why == why_no_delegation4.WND4_CONTENTION


Conflict = Callable[[RawClient, bytes, bytes], list[nfs4.ArgOp]]


def _open_read(c: RawClient, root: bytes, fh: bytes) -> list[nfs4.ArgOp]:
    return [
        nfs4.PUTFH4args(fh),
        c.open_args(None, OPEN4_SHARE_ACCESS_READ, want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG),
    ]


def _read(c: RawClient, root: bytes, fh: bytes) -> list[nfs4.ArgOp]:
    return [nfs4.PUTFH4args(fh), nfs4.READ4args(nfs4.ANONYMOUS_STATEID, 0, 10)]


def _write(c: RawClient, root: bytes, fh: bytes) -> list[nfs4.ArgOp]:
    return [
        nfs4.PUTFH4args(fh),
        nfs4.WRITE4args(nfs4.ANONYMOUS_STATEID, 0, stable_how4.FILE_SYNC4, b"other"),
    ]


def _setattr(c: RawClient, root: bytes, fh: bytes) -> list[nfs4.ArgOp]:
    return [
        nfs4.PUTFH4args(fh),
        nfs4.SETATTR4args(nfs4.ANONYMOUS_STATEID, encode_fattr4(NFSAttrs(mode=0o600))),
    ]


def _remove(c: RawClient, root: bytes, fh: bytes) -> list[nfs4.ArgOp]:
    return [nfs4.PUTFH4args(root), nfs4.REMOVE4args(b"conflict")]


def _rename(c: RawClient, root: bytes, fh: bytes) -> list[nfs4.ArgOp]:
    return [
        nfs4.PUTFH4args(root),
        nfs4.SAVEFH4args(),
        nfs4.PUTFH4args(root),
        nfs4.RENAME4args(b"conflict", b"renamed"),
    ]


def _link(c: RawClient, root: bytes, fh: bytes) -> list[nfs4.ArgOp]:
    return [
        nfs4.PUTFH4args(fh),
        nfs4.SAVEFH4args(),
        nfs4.PUTFH4args(root),
        nfs4.LINK4args(b"linked"),
    ]


@pytest.mark.parametrize(
    "conflict",
    [_open_read, _read, _write, _setattr, _remove, _rename, _link],
    ids=["open-read", "read", "write", "setattr", "remove", "rename", "link"],
)
async def test_conflicts_recall_write_delegation(connect: Connect, conflict: Conflict) -> None:
    """10.4.4: any OPEN, READ, WRITE, SETATTR, REMOVE, RENAME or LINK of the file by
    another client recalls the write delegation (CB_RECALL to the holder) and answers
    NFS4ERR_DELAY until DELEGRETURN; then it succeeds."""
    with trio.fail_after(10):
        holder, other = await two_clients(connect)
        fh, deleg, _ = await write_delegated(holder, b"conflict")
        root = await export_a(other)
        ops = conflict(other, root, fh)
        assert (await other.seq(ops)).status == S.NFS4ERR_DELAY
        recall = await holder.wait_callback()
        assert [r.stateid.other for r in recall.recalls()] == [deleg.other]
        # Still recalled: DELAY again, no second CB_RECALL.
        assert (await other.seq(ops)).status == S.NFS4ERR_DELAY
        await holder.ok([nfs4.PUTFH4args(fh), nfs4.DELEGRETURN4args(deleg)])
        assert (await other.seq(ops)).status == S.NFS4_OK
        assert len(holder.callbacks) == 1


async def test_holder_operations_do_not_recall(connect: Connect, cluster: Cluster) -> None:
    """The holder's own READ, WRITE, SETATTR and GETATTR need no recall or CB_GETATTR."""
    with trio.fail_after(10):
        holder, _ = await two_clients(connect)
        fh, _, resok = await write_delegated(holder, b"mine")
        await holder.ok(
            [
                nfs4.PUTFH4args(fh),
                nfs4.WRITE4args(resok.stateid, 0, stable_how4.UNSTABLE4, b"mine"),
                nfs4.READ4args(resok.stateid, 0, 4),
                nfs4.SETATTR4args(resok.stateid, encode_fattr4(NFSAttrs(size=10))),
                nfs4.GETATTR4args(bitmap4_from([FATTR4.SIZE, FATTR4.CHANGE])),
            ]
        )
        assert holder.callbacks == []
        assert not cluster.events.find(kind="cb-getattr")


async def test_cb_getattr_unmodified(connect: Connect, cluster: Cluster) -> None:
    """10.4.3: another client's GETATTR of size/change makes the server send CB_GETATTR
    (size and change) to the holder; a holder whose change is the one the server
    recorded at the grant and whose size is the server's has nothing modified: the
    answer is the server's own size and change, unchanged."""
    with trio.fail_after(10):
        holder, other = await two_clients(connect)
        fh, _, _ = await write_delegated(holder, b"unmodified")
        server = attrs_of(await holder.ok(getattr_ops(fh, FATTR4.SIZE, FATTR4.CHANGE)))
        holder.getattr_reply = NFSAttrs(size=server.size, change=server.change, mode=0o777)
        got = attrs_of(await other.ok(getattr_ops(fh, FATTR4.SIZE, FATTR4.CHANGE)))
        assert (got.size, got.change) == (len(CONTENT), server.change)
        (callback,) = holder.callbacks
        (asked,) = callback.getattrs()
        assert asked.fh == fh
        assert bitmap4_to_set(asked.attr_request) == {FATTR4.SIZE, FATTR4.CHANGE}
        (event,) = cluster.events.find(kind="cb-getattr")
        assert event.details["modified"] is False
        assert event.details["answered_change"] == server.change
        # GETATTR of attributes CB_GETATTR is not about asks nothing.
        await other.ok(getattr_ops(fh, FATTR4.MODE, FATTR4.OWNER))
        assert len(holder.callbacks) == 1


async def test_cb_getattr_modified(connect: Connect, cluster: Cluster) -> None:
    """10.4.3: a holder reporting a change other than the server's recorded one (c + 1)
    and a larger size: the other client gets the holder's size and change = the
    server's change + 1 or more (nsc > sc); each further GETATTR gives a still larger
    change (the holder may keep answering the same c + 1); time_modify moves; the
    server's own size is not changed by it."""
    with trio.fail_after(10):
        holder, other = await two_clients(connect)
        fh, _, _ = await write_delegated(holder, b"modified")
        base = attrs_of(
            await holder.ok(getattr_ops(fh, FATTR4.SIZE, FATTR4.CHANGE, FATTR4.TIME_MODIFY))
        )
        assert base.change is not None and base.time_modify is not None
        holder.getattr_reply = NFSAttrs(size=5000, change=base.change + 1)
        await trio.sleep(0.01)  # a later time_modify
        first = attrs_of(
            await other.ok(getattr_ops(fh, FATTR4.SIZE, FATTR4.CHANGE, FATTR4.TIME_MODIFY))
        )
        assert first.size == 5000
        assert first.change is not None and first.change >= base.change + 1
        assert first.time_modify is not None
        assert (first.time_modify.seconds, first.time_modify.nseconds) > (
            base.time_modify.seconds,
            base.time_modify.nseconds,
        )
        second = attrs_of(await other.ok(getattr_ops(fh, FATTR4.SIZE, FATTR4.CHANGE)))
        assert second.size == 5000
        assert second.change is not None and second.change > first.change
        events = cluster.events.find(kind="cb-getattr")
        assert [e.details["modified"] for e in events] == [True, True]
        assert [e.details["answered_change"] for e in events] == [first.change, second.change]
        assert events[0].details["size"] == 5000
        # The server keeps its own size; its change moved with what it answered.
        mine = attrs_of(await holder.ok(getattr_ops(fh, FATTR4.SIZE, FATTR4.CHANGE)))
        assert (mine.size, mine.change) == (len(CONTENT), second.change)
        # A size that differs is a modification even with the recorded change.
        fh2, _, _ = await write_delegated(holder, b"size-only")
        base2 = attrs_of(await holder.ok(getattr_ops(fh2, FATTR4.CHANGE)))
        holder.getattr_reply = NFSAttrs(size=7, change=base2.change)
        grown = attrs_of(await other.ok(getattr_ops(fh2, FATTR4.SIZE, FATTR4.CHANGE)))
        assert grown.size == 7
        assert grown.change is not None and base2.change is not None
        assert grown.change > base2.change


async def test_cb_getattr_failure_recalls(connect: Connect, cluster: Cluster) -> None:
    """10.4.3: when CB_GETATTR fails (here the holder answers NFS4ERR_BADHANDLE) the
    server recalls the delegation instead; the GETATTR answers NFS4ERR_DELAY until the
    DELEGRETURN, then the server's attributes."""
    with trio.fail_after(10):
        holder, other = await two_clients(connect)
        fh, deleg, _ = await write_delegated(holder, b"failing")
        holder.getattr_status = S.NFS4ERR_BADHANDLE
        assert (await other.seq(getattr_ops(fh, FATTR4.SIZE))).status == S.NFS4ERR_DELAY
        recall = await holder.wait_callback(2)
        assert [r.stateid.other for r in recall.recalls()] == [deleg.other]
        (event,) = cluster.events.find(kind="cb-getattr")
        assert "NFS4ERR_BADHANDLE" in event.details["error"]
        await holder.ok([nfs4.PUTFH4args(fh), nfs4.DELEGRETURN4args(deleg)])
        assert attrs_of(await other.ok(getattr_ops(fh, FATTR4.SIZE))).size == len(CONTENT)


class SilentHolder(RawClient):
    """Answers everything but CB_GETATTR, which it records and leaves without a reply."""

    def _answer_callback(self, call: RpcCall) -> bytes | None:
        if call.proc == 1:
            args = cb.CB_COMPOUND4args.unpack(Decoder(call.args))
            if any(isinstance(op, cb.CB_GETATTR4args) for op in args.argarray):
                self.callbacks.append(Callback(args))
                self._callback_seen.set()
                self._callback_seen = trio.Event()
                return None
        return super()._answer_callback(call)


async def test_cb_getattr_unanswered_recalls_and_retry_waits(
    cluster: Cluster, nursery: trio.Nursery
) -> None:
    """A CB_GETATTR left unanswered: the GETATTR waits at most the callback timeout
    (half a lease here) and then answers NFS4ERR_DELAY with the delegation recalled; a
    retry of that request while it waits gets NFS4ERR_DELAY on SEQUENCE (2.10.6.2)."""
    with trio.fail_after(15):
        ep = cluster.instance("A").endpoints[0]
        holder = await SilentHolder.connect(ep.address, ep.port, nursery, owner=b"silent")
        await holder.establish()
        other = await RawClient.connect(ep.address, ep.port, nursery, owner=b"asker")
        await other.establish()
        fh, deleg, _ = await write_delegated(holder, b"silent")
        seqid = other.seqids.get(0, 0) + 1
        statuses: list[nfsstat4] = []

        async def ask() -> None:
            res = await other.seq(getattr_ops(fh, FATTR4.SIZE), seqid=seqid)
            statuses.append(res.status)

        started = trio.current_time()
        async with trio.open_nursery() as n:
            n.start_soon(ask)
            await holder.wait_callback()  # the CB_GETATTR is out, the GETATTR waits
            retry = await other.seq(getattr_ops(fh, FATTR4.SIZE), seqid=seqid)
            first = retry.resarray[0]
            assert isinstance(first, nfs4.SEQUENCE4res)
            assert first.status == S.NFS4ERR_DELAY
        waited = trio.current_time() - started
        assert statuses == [S.NFS4ERR_DELAY]
        assert 1.0 < waited < 5.0, waited  # the callback timeout: half the 3 s lease
        assert cluster.instance("A").state.get(deleg.other) is not None
        assert any(e.kind == "cb-recall" for e in cluster.events.find())


async def test_reclaim_write_delegation_after_reboot(cluster: Cluster, connect: Connect) -> None:
    """10.2.1 / 18.16.3: after a restart, CLAIM_PREVIOUS with delegate_type
    OPEN_DELEGATE_WRITE reclaims the open and a write delegation in the grace period."""
    with trio.fail_after(10):
        holder, _ = await two_clients(connect)
        fh, _, _ = await write_delegated(holder, b"rebooted")
        cluster.reboot("A")
        again = await connect("A", owner=b"wd-holder", verifier=holder.verifier)
        await again.establish(reclaim_complete=False)
        reclaim = again.open_args(
            None,
            OPEN4_SHARE_ACCESS_BOTH,
            claim=open_claim_type4.CLAIM_PREVIOUS,
            delegate_type=D.OPEN_DELEGATE_WRITE,
        )
        res = await again.ok([nfs4.PUTFH4args(fh), reclaim])
        op = res.resarray[-1]
        assert isinstance(op, nfs4.OPEN4res) and op.resok is not None
        assert op.resok.delegation.delegation_type == D.OPEN_DELEGATE_WRITE
        assert op.resok.delegation.write is not None
        dsid = op.resok.delegation.write.stateid
        (deleg,) = cluster.instance("A").state.delegations_on(("a", _fileid(cluster, fh)))
        assert deleg.write and deleg.other == dsid.other
        await again.ok([nfs4.RECLAIM_COMPLETE4args(False)])


def _fileid(cluster: Cluster, fh: bytes) -> int:
    _, inode, _ = cluster.model.resolve_handle(fh)
    return inode.fileid


async def test_write_delegation_with_tsm(cluster: Cluster, connect: Connect) -> None:
    """11.12 (TSM): the write delegation moves with its stateid and type: TEST_STATEID on
    B says it is valid, it still writes, and another client's open on B recalls it from
    B."""
    with trio.fail_after(10):
        holder, _ = await two_clients(connect)
        fh, deleg, _ = await write_delegated(holder, b"moving")
        await cluster.migrate("a", to="B", tsm=True, transfer_session=False)
        on_b = await connect("B", owner=b"wd-holder", verifier=holder.verifier)
        await on_b.establish(reclaim_complete=False)  # a transferred client ID
        res = await on_b.ok([nfs4.TEST_STATEID4args([deleg])])
        tested = res.resarray[-1]
        assert isinstance(tested, nfs4.TEST_STATEID4res) and tested.resok is not None
        assert tested.resok.tsr_status_codes == [S.NFS4_OK]
        (moved,) = cluster.instance("B").state.delegations_on(("a", _fileid(cluster, fh)))
        assert moved.write and moved.other == deleg.other
        await on_b.ok(
            [nfs4.PUTFH4args(fh), nfs4.WRITE4args(deleg, 0, stable_how4.FILE_SYNC4, b"on B")]
        )
        rival = await connect("B", owner=b"rival")
        await rival.establish()
        ropen: list[nfs4.ArgOp] = [
            nfs4.PUTFH4args(fh),
            rival.open_args(None, OPEN4_SHARE_ACCESS_READ, want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG),
        ]
        assert (await rival.seq(ropen)).status == S.NFS4ERR_DELAY
        recall = await on_b.wait_callback()
        assert [r.stateid.other for r in recall.recalls()] == [deleg.other]
        await on_b.ok([nfs4.PUTFH4args(fh), nfs4.DELEGRETURN4args(deleg)])
        assert (await rival.seq(ropen)).status == S.NFS4_OK


async def test_write_delegation_reclaimed_after_migration_without_tsm(
    cluster: Cluster, connect: Connect
) -> None:
    """Seed 001 4.2.3: without TSM the destination's per-file-system grace takes
    CLAIM_PREVIOUS with OPEN_DELEGATE_WRITE: the write delegation is reclaimed there;
    another client's open waits for the grace (NFS4ERR_GRACE), not for a recall."""
    with trio.fail_after(10):
        holder, _ = await two_clients(connect)
        fh, _, _ = await write_delegated(holder, b"reclaimed")
        await cluster.migrate("a", to="B", tsm=False)
        on_b = await connect("B", owner=b"wd-holder", verifier=holder.verifier)
        await on_b.establish()
        reclaim = on_b.open_args(
            None,
            OPEN4_SHARE_ACCESS_BOTH,
            claim=open_claim_type4.CLAIM_PREVIOUS,
            delegate_type=D.OPEN_DELEGATE_WRITE,
        )
        res = await on_b.ok([nfs4.PUTFH4args(fh), reclaim])
        op = res.resarray[-1]
        assert isinstance(op, nfs4.OPEN4res) and op.resok is not None
        assert op.resok.delegation.delegation_type == D.OPEN_DELEGATE_WRITE
        await on_b.ok([nfs4.PUTFH4args(fh), nfs4.RECLAIM_COMPLETE4args(True)])
        (deleg,) = cluster.instance("B").state.delegations_on(("a", _fileid(cluster, fh)))
        assert deleg.write
        assert any(
            e.kind == "reclaim" and e.details.get("dtype") == "write" for e in cluster.events.find()
        )


async def test_recall_any(cluster: Cluster, connect: Connect) -> None:
    """20.6: the CB_RECALL_ANY control reaches the holder with objects_to_keep and the
    type mask bits; the client's status comes back and is logged."""
    with trio.fail_after(10):
        holder, other = await two_clients(connect)
        await write_delegated(holder, b"any-1")
        await write_delegated(holder, b"any-2")
        results = await cluster.recall_any("A", holder.clientid, keep=1)
        assert results == {f"{holder.clientid:#x}": "NFS4_OK"}
        (callback,) = holder.callbacks
        (args,) = callback.recall_anys()
        assert args.craa_objects_to_keep == 1
        assert bitmap4_to_set(args.craa_type_mask) == {
            RCA4_TYPE_MASK_RDATA_DLG,
            RCA4_TYPE_MASK_WDATA_DLG,
        }
        (event,) = cluster.events.find(kind="cb-recall-any")
        assert event.details["held"] == 2 and event.details["status"] == "NFS4_OK"
        # Every client holding delegations (other holds none), through the control
        # protocol, with a mask of write delegations only.
        answer = await execute(
            cluster, {"cmd": "recall-any", "instance": "A", "keep": 0, "mask": [1]}
        )
        assert answer == {"ok": True, "result": {f"{holder.clientid:#x}": "NFS4_OK"}}
        assert bitmap4_to_set(holder.callbacks[1].recall_anys()[0].craa_type_mask) == {1}
        bad = await execute(cluster, {"cmd": "recall-any", "instance": "A", "mask": [40]})
        assert bad["ok"] is False and "0 - 31" in bad["error"]
        assert other.callbacks == []


def test_recall_mask_names() -> None:
    """The CLI's --mask: names, RFC names and bit numbers."""
    assert parse_recall_mask("rdata,wdata") == [0, 1]
    assert parse_recall_mask("RCA4_TYPE_MASK_WDATA_DLG,4") == [1, 4]
    assert parse_recall_mask("dir") == [2]
    with pytest.raises(Exception, match="bad --mask item"):
        parse_recall_mask("everything")


async def test_write_delegations_can_be_turned_off(connect: Connect, cluster: Cluster) -> None:
    """InstanceConfig.write_delegations False (serve --no-write-delegations): a write
    open gets no delegation; WANT_WRITE_DELEG says WND4_RESOURCE; read ones still come."""
    with trio.fail_after(10):
        cluster.instance("A").config.write_delegations = False
        holder, _ = await two_clients(connect)
        root = await export_a(holder)
        fh = await new_file(holder, root, b"off")
        plain = await opened(holder, fh, OPEN4_SHARE_ACCESS_BOTH)
        assert plain.delegation.delegation_type == D.OPEN_DELEGATE_NONE
        wanted = await opened(
            holder, fh, OPEN4_SHARE_ACCESS_WRITE, want=OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG
        )
        assert wanted.delegation.od_whynone is not None
        assert wanted.delegation.od_whynone.ond_why == why_no_delegation4.WND4_RESOURCE
        fh2 = await new_file(holder, root, b"off-read")
        read = await opened(holder, fh2, OPEN4_SHARE_ACCESS_READ, owner=b"reader")
        assert read.delegation.delegation_type == D.OPEN_DELEGATE_READ
        assert OPEN4_SHARE_DENY_NONE == 0

"""A hostile NFSv4.1 server for tests: correct up to a chosen call, then misbehaving.

It listens on 127.0.0.1 (a free port) and speaks just enough NFSv4.1 for a client to
mount and read one file: NULL, EXCHANGE_ID, CREATE_SESSION, BIND_CONN_TO_SESSION,
SEQUENCE, PUTROOTFH, PUTFH, GETFH, LOOKUP, LOOKUPP, GETATTR, ACCESS, READ,
RECLAIM_COMPLETE, DESTROY_SESSION, DESTROY_CLIENTID (RFC 8881 section 18).  Everything
goes through the project's own codecs: calls are read by
``session.transport.ServerConnection``, arguments decoded and results encoded with
``session.xdr.nfs4`` (COMPOUND replies with the contrib test server's
``encode_compound_res``, channel sizes with its ``negotiate_channel``).

A :class:`Plan` says how many calls (over all connections, in arrival order) get the
right answer; every later call gets one :class:`Misbehaviour`, drawn with the plan's
seeded ``random.Random``.  What was done is kept in ``HostileServer.actions`` so a
failing test can say what the client saw.

Only for tests: it never binds anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import random
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import trio

from contrib.testserver.clients import BACK_LIMITS, FORE_LIMITS, negotiate_channel
from contrib.testserver.ops import OpStatus
from contrib.testserver.server import RawResult, encode_compound_res
from session.errors import NFSClientError
from session.rpc import (
    LAST_FRAGMENT,
    MAX_AUTH_BYTES,
    NULL_AUTH,
    PRE_SESSION_MAX_RECORD,
    RpcCall,
    accept_stat,
    auth_flavor,
    auth_stat,
    encode_accepted_reply,
    encode_call,
    encode_rejected_reply,
    reject_stat,
)
from session.transport import ServerConnection
from session.xdr import nfs4
from session.xdr.codec import Decoder, Encoder, Packable
from session.xdr.const import (
    ACCESS4_LOOKUP,
    ACCESS4_READ,
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    EXCHGID4_FLAG_USE_NON_PNFS,
    FATTR4,
    NFS4_PROGRAM,
    NFS_V4,
    NFSPROC4_COMPOUND,
    NFSPROC4_NULL,
    channel_dir_from_server4,
    nfs_ftype4,
    nfs_opnum4,
    nfsstat4,
    state_protect_how4,
)
from session.xdr.fattr import (
    KNOWN_ATTR_WORDS,
    NFSAttrs,
    bitmap4_from,
    bitmap4_to_set,
    encode_fattr4,
)

log = logging.getLogger("tests.hostile")

OP = nfs_opnum4
S = nfsstat4

HOST: Final = "127.0.0.1"
NFS4_CALLBACK_PROGRAM: Final = 0x40000000
CB_COMPOUND: Final = 1

HUGE_BITMAP_BYTES: Final = 1 << 20
"""Size of the all-ones attribute bitmap of ``Misbehaviour.HUGE_BITMAP`` (1 MiB)."""

ROOT_FH: Final = b"hostile-root"
FILE_FH: Final = b"hostile-file-f"
FILE_NAME: Final = b"f"
FILE_DATA: Final = bytes(range(256)) * 16  # 4096 bytes


class Misbehaviour(enum.Enum):
    """What the server does to a call instead of answering it right."""

    RANDOM = "random"  # random bytes for the reply (framed), or after a valid RPC header
    TRUNCATED_XDR = "truncated-xdr"  # the right reply cut short, framed as what is left
    TRUNCATED_RECORD = "truncated-record"  # a mark for the whole reply, part of it, silence
    INFLATED = "inflated"  # one count / opaque length / bitmap length in the reply made huge
    WRONG_XID = "wrong-xid"  # the right reply with another xid
    DUPLICATE = "duplicate"  # the right reply, twice
    STALE = "stale"  # an earlier reply's body under this call's xid
    SILENT = "silent"  # no reply
    CLOSE = "close"  # close the connection, no reply
    CLOSE_THEN_SILENT = "close-then-silent"  # close once; after that, silence
    HUGE_BITMAP = "huge-bitmap"  # GETATTR with a 1 MiB all-ones attrmask and no values
    HUGE_STATE_PROTECT = "huge-state-protect"  # EXCHANGE_ID: SP4_MACH_CRED, 1 MiB bitmaps
    OVERSIZED = "oversized"  # a valid reply larger than the negotiated ca_maxresponsesize
    RPC_ERROR = "rpc-error"  # PROG_MISMATCH, GARBAGE_ARGS, AUTH_ERROR, bad verifier...
    BAD_STATUS = "bad-status"  # a valid reply with an error status (DELAY, BADSESSION...)
    INCONSISTENT = "inconsistent"  # COMPOUND status and results that do not agree
    CALLBACK_JUNK = "callback-junk"  # a garbage CB_COMPOUND call first, then the answer


#: Misbehaviours after which the client can only time out (no reply ever comes).
TIMING: Final = frozenset(
    {
        Misbehaviour.TRUNCATED_RECORD,
        Misbehaviour.WRONG_XID,
        Misbehaviour.SILENT,
        Misbehaviour.CLOSE,
        Misbehaviour.CLOSE_THEN_SILENT,
    }
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How a server behaves.

    Attributes:
        good_calls: calls answered right before misbehaving (a count over all
            connections, in arrival order; NULL calls count).
        misbehaviours: one is drawn for each call after those.
        seed: seeds the server's ``random.Random`` (draws and random bytes).
    """

    good_calls: int
    misbehaviours: tuple[Misbehaviour, ...]
    seed: int

    @classmethod
    def draw(cls, rng: random.Random, seed: int, max_good: int = 10) -> Plan:
        """A random plan: mostly one misbehaviour per server, sometimes a mix."""
        kinds = list(Misbehaviour)
        if rng.random() < 0.75:
            chosen: tuple[Misbehaviour, ...] = (rng.choice(kinds),)
        else:
            chosen = tuple(rng.sample(kinds, rng.randint(2, 4)))
        return cls(rng.randint(0, max_good), chosen, seed)

    def describe(self) -> str:
        names = ",".join(m.value for m in self.misbehaviours)
        return f"good_calls={self.good_calls} misbehaviours={names} seed={self.seed}"


@dataclass(slots=True)
class Answer:
    """The right reply to one call, and what it is made of (for the misbehaviours)."""

    xid: int
    body: bytes  # the whole RPC reply record body
    results: bytes = b""  # the COMPOUND4res (empty for NULL and RPC errors)
    tag: bytes = b""
    status: nfsstat4 = S.NFS4_OK
    items: list[tuple[int, Packable]] = field(default_factory=list)
    opnums: list[int] = field(default_factory=list)  # the operations that were asked


_T = TypeVar("_T")


class _LengthTracer(Decoder):
    """A Decoder that notes where each count and length word of what it decodes is."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.lengths: list[int] = []

    def opaque(self, what: str = "opaque", limit: int | None = None) -> bytes:
        self.lengths.append(self.offset)
        return super().opaque(what, limit)

    def array(
        self, unpack_item: Callable[[], _T], what: str, limit: int | None = None, min_item: int = 4
    ) -> list[_T]:
        self.lengths.append(self.offset)
        return super().array(unpack_item, what, limit, min_item)

    def uint32_array(self, what: str, limit: int | None = None) -> list[int]:
        self.lengths.append(self.offset)
        return super().uint32_array(what, limit)

    def bitmap4(self, what: str = "bitmap4", keep: int | None = None) -> list[int]:
        self.lengths.append(self.offset)
        return super().bitmap4(what, keep)


def length_offsets(results: bytes) -> list[int]:
    """Byte offsets in an encoded COMPOUND4res of every count / length word in it."""
    dec = _LengthTracer(results)
    nfs4.COMPOUND4res.unpack(dec)
    return dec.lengths


def _huge_getattr_result() -> bytes:
    """GETATTR4res NFS4_OK with a ``HUGE_BITMAP_BYTES`` all-ones attrmask, no values."""
    words = HUGE_BITMAP_BYTES // 4
    return struct.pack(">II", S.NFS4_OK, words) + b"\xff" * HUGE_BITMAP_BYTES + bytes(4)


_HUGE_GETATTR: Final = _huge_getattr_result()

_BAD_STATUSES: Final = (
    S.NFS4ERR_DELAY,
    S.NFS4ERR_GRACE,
    S.NFS4ERR_BADSESSION,
    S.NFS4ERR_DEADSESSION,
    S.NFS4ERR_CONN_NOT_BOUND_TO_SESSION,
    S.NFS4ERR_STALE_CLIENTID,
    S.NFS4ERR_EXPIRED,
    S.NFS4ERR_SEQ_MISORDERED,
    S.NFS4ERR_BADSLOT,
    S.NFS4ERR_MOVED,
    S.NFS4ERR_SERVERFAULT,
    S.NFS4ERR_RETRY_UNCACHED_REP,
    S.NFS4ERR_REP_TOO_BIG,
    S.NFS4ERR_BADXDR,
    S.NFS4ERR_STALE,
    S.NFS4ERR_NOENT,
    S.NFS4ERR_COMPLETE_ALREADY,
)


def _attrs_of(fh: bytes) -> NFSAttrs:
    is_dir = fh == ROOT_FH
    t = nfs4.nfstime4(1_700_000_000, 0)
    return NFSAttrs(
        supported_attrs=bitmap4_from(
            [a for a in FATTR4 if a < 64 and a not in (FATTR4.ACL, FATTR4.FS_LOCATIONS)]
        ),
        type=nfs_ftype4.NF4DIR if is_dir else nfs_ftype4.NF4REG,
        fh_expire_type=0,
        change=7,
        size=4096 if is_dir else len(FILE_DATA),
        link_support=True,
        symlink_support=True,
        named_attr=False,
        fsid=nfs4.fsid4(0x4057, 1),
        unique_handles=True,
        lease_time=90,
        filehandle=fh,
        fileid=1 if is_dir else 2,
        maxfilesize=1 << 40,
        maxlink=255,
        maxname=255,
        maxread=1 << 20,
        maxwrite=1 << 20,
        mode=0o755 if is_dir else 0o644,
        numlinks=2 if is_dir else 1,
        owner="0",
        owner_group="0",
        rawdev=nfs4.specdata4(0, 0),
        space_used=4096,
        files_avail=10,
        files_free=10,
        files_total=20,
        space_avail=1 << 30,
        space_free=1 << 30,
        space_total=1 << 31,
        time_access=t,
        time_metadata=t,
        time_modify=t,
        mounted_on_fileid=1 if is_dir else 2,
    )


class HostileServer:
    """The server: ``await nursery.start(server.serve)`` gives its port.

    Args:
        plan: when and how to misbehave.

    Attributes:
        calls: calls received so far (a count).
        actions: one line per call: its number, what it was, what was done.
        errors: exceptions of the server's own code (a bug here, not in the client).
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.calls = 0
        self.actions: list[str] = []
        self.errors: list[BaseException] = []
        self.connections = 0
        self._closed_once = False
        self._broken: set[int] = set()  # connections whose framing the server broke
        self._history: list[bytes] = []  # earlier reply bodies (for STALE)
        self._clientid = 0x4057000000000001
        self._sessions: dict[bytes, nfs4.channel_attrs4] = {}
        self._fore_max_response = 0  # of the last session made (0: none yet)

    # -- serving -----------------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1, a free port (given to ``task_status``), until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        port = int(listeners[0].socket.getsockname()[1])
        task_status.started(port)
        await trio.serve_listeners(self._on_stream, listeners)

    async def _on_stream(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = ServerConnection(stream, peer=f"hostile-client-{self.connections}")
        conn.on_call = functools.partial(self._on_call, conn)
        await conn.run()

    async def _on_call(self, conn: ServerConnection, call: RpcCall) -> bytes | None:
        try:
            return await self._handle(conn, call)
        except (trio.Cancelled, NFSClientError):
            raise
        except Exception as exc:  # a bug of this server: recorded for the test to report
            self.errors.append(exc)
            raise

    async def _handle(self, conn: ServerConnection, call: RpcCall) -> bytes | None:
        self.calls += 1
        number = self.calls
        answer = self._answer(call)
        what = self._describe(call, answer)
        if id(conn) in self._broken:
            self.actions.append(f"{number} {what}: silent (framing broken earlier)")
            return None
        if number <= self.plan.good_calls:
            self.actions.append(f"{number} {what}: answered")
            self._history.append(answer.body)
            return answer.body
        mode = self.rng.choice(self.plan.misbehaviours)
        body, note = await self._misbehave(mode, conn, call, answer)
        self.actions.append(f"{number} {what}: {mode.value} {note}".rstrip())
        return body

    @staticmethod
    def _describe(call: RpcCall, answer: Answer) -> str:
        if call.proc == NFSPROC4_NULL:
            return "NULL"
        names = [nfs_opnum4(op).name.removeprefix("OP_") for op in answer.opnums]
        return "[" + " ".join(names) + "]"

    # -- the right answers -------------------------------------------------------------
    def _answer(self, call: RpcCall) -> Answer:
        if call.prog != NFS4_PROGRAM or call.vers != NFS_V4:
            return Answer(
                call.xid, encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.PROG_UNAVAIL)
            )
        if call.proc == NFSPROC4_NULL:
            return Answer(call.xid, encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS))
        if call.proc != NFSPROC4_COMPOUND:
            return Answer(
                call.xid, encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.PROC_UNAVAIL)
            )
        try:
            args = nfs4.COMPOUND4args.unpack(Decoder(call.args))
        except NFSClientError:
            return Answer(
                call.xid, encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
            )
        items: list[tuple[int, Packable]] = []
        status = S.NFS4_OK
        current = b""
        for op in args.argarray:
            result, status, current = self._execute(op, current)
            items.append((op.OPNUM, result))
            if status != S.NFS4_OK:
                break
        results = encode_compound_res(status, args.tag, items)
        return Answer(
            call.xid,
            encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, results),
            results,
            args.tag,
            status,
            items,
            [op.OPNUM for op in args.argarray],
        )

    def _execute(self, op: nfs4.ArgOp, fh: bytes) -> tuple[Packable, nfsstat4, bytes]:
        """One operation: (result, status, current filehandle after it)."""
        if isinstance(op, nfs4.EXCHANGE_ID4args):
            resok = nfs4.EXCHANGE_ID4resok(
                eir_clientid=self._clientid,
                eir_sequenceid=1,
                eir_flags=EXCHGID4_FLAG_USE_NON_PNFS,
                eir_state_protect=nfs4.state_protect4_r(spr_how=state_protect_how4.SP4_NONE),
                eir_server_owner=nfs4.server_owner4(so_minor_id=0, so_major_id=b"hostile"),
                eir_server_scope=b"hostile",
                eir_server_impl_id=[],
            )
            return nfs4.EXCHANGE_ID4res(S.NFS4_OK, resok), S.NFS4_OK, fh
        if isinstance(op, nfs4.CREATE_SESSION4args):
            fore = negotiate_channel(op.csa_fore_chan_attrs, FORE_LIMITS)
            back = negotiate_channel(op.csa_back_chan_attrs, BACK_LIMITS)
            if isinstance(fore, nfsstat4) or isinstance(back, nfsstat4):
                bad = fore if isinstance(fore, nfsstat4) else back
                assert isinstance(bad, nfsstat4)
                return OpStatus(op.OPNUM, bad), bad, fh
            sessionid = self.rng.randbytes(16)
            self._sessions[sessionid] = fore
            self._fore_max_response = fore.ca_maxresponsesize
            cs = nfs4.CREATE_SESSION4resok(
                csr_sessionid=sessionid,
                csr_sequence=op.csa_sequence,
                csr_flags=op.csa_flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
                csr_fore_chan_attrs=fore,
                csr_back_chan_attrs=back,
            )
            return nfs4.CREATE_SESSION4res(S.NFS4_OK, cs), S.NFS4_OK, fh
        if isinstance(op, nfs4.SEQUENCE4args):
            if op.sa_sessionid not in self._sessions:
                return nfs4.SEQUENCE4res(S.NFS4ERR_BADSESSION), S.NFS4ERR_BADSESSION, fh
            slots = self._sessions[op.sa_sessionid].ca_maxrequests
            seq = nfs4.SEQUENCE4resok(
                sr_sessionid=op.sa_sessionid,
                sr_sequenceid=op.sa_sequenceid,
                sr_slotid=op.sa_slotid,
                sr_highest_slotid=slots - 1,
                sr_target_highest_slotid=slots - 1,
                sr_status_flags=0,
            )
            return nfs4.SEQUENCE4res(S.NFS4_OK, seq), S.NFS4_OK, fh
        if isinstance(op, nfs4.BIND_CONN_TO_SESSION4args):
            if op.bctsa_sessid not in self._sessions:
                return OpStatus(op.OPNUM, S.NFS4ERR_BADSESSION), S.NFS4ERR_BADSESSION, fh
            bound = nfs4.BIND_CONN_TO_SESSION4resok(
                bctsr_sessid=op.bctsa_sessid,
                bctsr_dir=channel_dir_from_server4.CDFS4_BOTH,
                bctsr_use_conn_in_rdma_mode=False,
            )
            return nfs4.BIND_CONN_TO_SESSION4res(S.NFS4_OK, bound), S.NFS4_OK, fh
        if isinstance(op, nfs4.PUTROOTFH4args):
            return nfs4.PUTROOTFH4res(S.NFS4_OK), S.NFS4_OK, ROOT_FH
        if isinstance(op, nfs4.PUTFH4args):
            if op.object not in (ROOT_FH, FILE_FH):
                return nfs4.PUTFH4res(S.NFS4ERR_BADHANDLE), S.NFS4ERR_BADHANDLE, fh
            return nfs4.PUTFH4res(S.NFS4_OK), S.NFS4_OK, op.object
        if not fh and not isinstance(
            op,
            nfs4.RECLAIM_COMPLETE4args | nfs4.DESTROY_SESSION4args | nfs4.DESTROY_CLIENTID4args,
        ):
            return OpStatus(op.OPNUM, S.NFS4ERR_NOFILEHANDLE), S.NFS4ERR_NOFILEHANDLE, fh
        if isinstance(op, nfs4.GETFH4args):
            return nfs4.GETFH4res(S.NFS4_OK, nfs4.GETFH4resok(fh)), S.NFS4_OK, fh
        if isinstance(op, nfs4.LOOKUP4args):
            if fh != ROOT_FH:
                return nfs4.LOOKUP4res(S.NFS4ERR_NOTDIR), S.NFS4ERR_NOTDIR, fh
            if op.objname != FILE_NAME:
                return nfs4.LOOKUP4res(S.NFS4ERR_NOENT), S.NFS4ERR_NOENT, fh
            return nfs4.LOOKUP4res(S.NFS4_OK), S.NFS4_OK, FILE_FH
        if isinstance(op, nfs4.LOOKUPP4args):
            return nfs4.LOOKUPP4res(S.NFS4_OK), S.NFS4_OK, ROOT_FH
        if isinstance(op, nfs4.GETATTR4args):
            wanted = bitmap4_to_set(op.attr_request, limit=KNOWN_ATTR_WORDS * 32)
            attrs = encode_fattr4(_attrs_of(fh), only=wanted)
            return nfs4.GETATTR4res(S.NFS4_OK, nfs4.GETATTR4resok(attrs)), S.NFS4_OK, fh
        if isinstance(op, nfs4.ACCESS4args):
            granted = op.access & (ACCESS4_READ | ACCESS4_LOOKUP)
            res = nfs4.ACCESS4res(S.NFS4_OK, nfs4.ACCESS4resok(op.access, granted))
            return res, S.NFS4_OK, fh
        if isinstance(op, nfs4.READ4args):
            if fh != FILE_FH:
                return nfs4.READ4res(S.NFS4ERR_ISDIR), S.NFS4ERR_ISDIR, fh
            data = FILE_DATA[op.offset : op.offset + op.count]
            eof = op.offset + len(data) >= len(FILE_DATA)
            return nfs4.READ4res(S.NFS4_OK, nfs4.READ4resok(eof, data)), S.NFS4_OK, fh
        if isinstance(op, nfs4.RECLAIM_COMPLETE4args):
            return nfs4.RECLAIM_COMPLETE4res(S.NFS4_OK), S.NFS4_OK, fh
        if isinstance(op, nfs4.DESTROY_SESSION4args):
            self._sessions.pop(op.dsa_sessionid, None)
            return nfs4.DESTROY_SESSION4res(S.NFS4_OK), S.NFS4_OK, fh
        if isinstance(op, nfs4.DESTROY_CLIENTID4args):
            return nfs4.DESTROY_CLIENTID4res(S.NFS4_OK), S.NFS4_OK, fh
        return OpStatus(op.OPNUM, S.NFS4ERR_NOTSUPP), S.NFS4ERR_NOTSUPP, fh

    # -- the wrong ones ----------------------------------------------------------------
    def _reply(self, xid: int, results: bytes) -> bytes:
        return encode_accepted_reply(xid, NULL_AUTH, accept_stat.SUCCESS, results)

    def _record_limit(self) -> int:
        """What the client should accept now: the session's size, else the pre-session cap."""
        return self._fore_max_response or PRE_SESSION_MAX_RECORD

    async def _misbehave(
        self, mode: Misbehaviour, conn: ServerConnection, call: RpcCall, answer: Answer
    ) -> tuple[bytes | None, str]:
        """(the reply body to send or None, a note on what was done)."""
        rng = self.rng
        good = answer.body
        if mode is Misbehaviour.RANDOM:
            variant = rng.randrange(3)
            if variant == 0:
                return rng.randbytes(rng.randrange(0, 64)), "(random record)"
            if variant == 1:
                return self._reply(
                    call.xid, rng.randbytes(rng.randrange(0, 256))
                ), "(random results)"
            cut = rng.randrange(0, len(good))
            return good[:cut] + rng.randbytes(rng.randrange(1, 64)), f"(random after byte {cut})"
        if mode is Misbehaviour.TRUNCATED_XDR:
            cut = rng.randrange(0, len(good))
            return good[:cut], f"(first {cut} of {len(good)} bytes)"
        if mode is Misbehaviour.TRUNCATED_RECORD:
            cut = rng.randrange(0, len(good))
            self._broken.add(id(conn))
            await conn.send_raw(struct.pack(">I", LAST_FRAGMENT | len(good)) + good[:cut])
            return None, f"(mark for {len(good)} bytes, {cut} sent)"
        if mode is Misbehaviour.INFLATED:
            return self._inflated(answer)
        if mode is Misbehaviour.WRONG_XID:
            xid = (call.xid + rng.randrange(1, 1 << 32)) & 0xFFFFFFFF
            return struct.pack(">I", xid) + good[4:], f"(xid 0x{xid:08x})"
        if mode is Misbehaviour.DUPLICATE:
            await conn.send_record(good)
            return good, ""
        if mode is Misbehaviour.STALE:
            if not self._history:
                return rng.randbytes(rng.randrange(8, 64)), "(no earlier reply: random)"
            index = rng.randrange(len(self._history))
            return struct.pack(">I", call.xid) + self._history[index][4:], f"(reply {index + 1})"
        if mode is Misbehaviour.SILENT:
            return None, ""
        if mode is Misbehaviour.CLOSE:
            await self._close(conn)
            return None, ""
        if mode is Misbehaviour.CLOSE_THEN_SILENT:
            if self._closed_once:
                return None, "(silent)"
            self._closed_once = True
            await self._close(conn)
            return None, "(closed)"
        if mode is Misbehaviour.HUGE_BITMAP:
            return self._huge_bitmap(answer)
        if mode is Misbehaviour.HUGE_STATE_PROTECT:
            return self._huge_state_protect(answer)
        if mode is Misbehaviour.OVERSIZED:
            return self._oversized(answer)
        if mode is Misbehaviour.RPC_ERROR:
            return self._rpc_error(call.xid)
        if mode is Misbehaviour.BAD_STATUS:
            return self._bad_status(answer)
        if mode is Misbehaviour.INCONSISTENT:
            return self._inconsistent(answer)
        if mode is Misbehaviour.CALLBACK_JUNK:
            xid = rng.getrandbits(32)
            args = rng.randbytes(rng.randrange(0, 128))
            if rng.random() < 0.5:  # a count or a length that cannot fit
                args = struct.pack(">I", rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 20])) + args
            junk = encode_call(
                xid, NFS4_CALLBACK_PROGRAM, 1, CB_COMPOUND, NULL_AUTH, NULL_AUTH, args
            )
            await conn.send_record(junk)
            return good, f"(CB_COMPOUND xid 0x{xid:08x}, {len(args)} bytes of args)"
        raise AssertionError(f"unhandled misbehaviour {mode}")

    @staticmethod
    async def _close(conn: ServerConnection) -> None:
        """Close the connection from inside one of its handlers: ``aclose`` cancels the
        connection's tasks, this one included, so it does not return (not shielded:
        it would wait for itself)."""
        await conn.aclose()

    def _inflated(self, answer: Answer) -> tuple[bytes | None, str]:
        if not answer.results:
            return answer.body, "(nothing to inflate: answered)"
        offsets = length_offsets(answer.results)
        at = self.rng.choice(offsets)
        (old,) = struct.unpack_from(">I", answer.results, at)
        left = len(answer.results) - at - 4
        new = (
            self.rng.choice(
                [
                    0xFFFFFFFF,
                    0x7FFFFFFF,
                    0x80000000,
                    1 << 20,
                    old + 1,
                    old * 2 + 8,
                    left + 1,
                    left // 4 + 1,
                ]
            )
            & 0xFFFFFFFF
        )
        results = answer.results[:at] + struct.pack(">I", new) + answer.results[at + 4 :]
        return self._reply(answer.xid, results), f"(word at {at}: {old} -> {new})"

    def _huge_state_protect(self, answer: Answer) -> tuple[bytes | None, str]:
        """EXCHANGE_ID answered with SP4_MACH_CRED and two 1 MiB bitmaps in
        state_protect4_r (the client asked for SP4_NONE), before any session exists."""
        if OP.OP_EXCHANGE_ID in answer.opnums and answer.status == S.NFS4_OK:
            words = HUGE_BITMAP_BYTES // 4
            bitmap = struct.pack(">I", words) + b"\xff" * HUGE_BITMAP_BYTES
            enc = Encoder()
            resok = answer.items[0][1]
            assert isinstance(resok, nfs4.EXCHANGE_ID4res) and resok.resok is not None
            r = resok.resok
            enc.int32(S.NFS4_OK)
            enc.uint64(r.eir_clientid)
            enc.uint32(r.eir_sequenceid)
            enc.uint32(r.eir_flags)
            enc.int32(state_protect_how4.SP4_MACH_CRED)
            raw = enc.getvalue() + bitmap + bitmap
            enc = Encoder()
            r.eir_server_owner.pack(enc)
            enc.opaque(r.eir_server_scope)
            enc.uint32(0)
            raw += enc.getvalue()
            items: list[tuple[int, Packable]] = [(OP.OP_EXCHANGE_ID, RawResult(raw))]
            results = encode_compound_res(S.NFS4_OK, answer.tag, items)
            return self._reply(answer.xid, results), "(spo_must_enforce, spo_must_allow)"
        return answer.body, "(not EXCHANGE_ID: answered)"

    def _huge_bitmap(self, answer: Answer) -> tuple[bytes | None, str]:
        """Every GETATTR result with a 1 MiB all-ones attrmask and no values."""
        items = list(answer.items)
        for i, (opnum, _) in enumerate(items):
            if opnum == OP.OP_GETATTR:
                items[i] = (opnum, RawResult(_HUGE_GETATTR))
        if items == answer.items:
            return answer.body, "(no GETATTR: answered)"
        return self._reply(
            answer.xid, encode_compound_res(answer.status, answer.tag, items)
        ), "(GETATTR)"

    def _oversized(self, answer: Answer) -> tuple[bytes | None, str]:
        if not answer.results:
            return answer.body, "(not a COMPOUND: answered)"
        limit = self._record_limit()
        pad = limit - len(answer.body) + self.rng.randrange(4, 8192)
        # a longer tag (opaque, echoed back): still valid XDR, just too big
        tag = answer.tag + b"t" * max(pad, 4)
        results = encode_compound_res(answer.status, tag, answer.items)
        body = self._reply(answer.xid, results)
        return body, f"({len(body)} bytes; the client's maximum is {limit})"

    def _rpc_error(self, xid: int) -> tuple[bytes | None, str]:
        rng = self.rng
        variant = rng.randrange(8)
        if variant == 0:
            return encode_accepted_reply(
                xid, NULL_AUTH, accept_stat.PROG_MISMATCH, mismatch=(3, 3)
            ), "(PROG_MISMATCH)"
        if variant == 1:
            stat = rng.choice(
                [
                    accept_stat.PROG_UNAVAIL,
                    accept_stat.PROC_UNAVAIL,
                    accept_stat.GARBAGE_ARGS,
                    accept_stat.SYSTEM_ERR,
                ]
            )
            return encode_accepted_reply(xid, NULL_AUTH, stat), f"({stat.name})"
        if variant == 2:
            return encode_accepted_reply(
                xid, NULL_AUTH, accept_stat(rng.randrange(6, 1000))
            ), "(unknown accept_stat)"
        if variant == 3:
            return encode_rejected_reply(
                xid, reject_stat.RPC_MISMATCH, mismatch=(3, 4)
            ), "(RPC_MISMATCH)"
        if variant == 4:
            why = auth_stat(rng.choice([1, 2, 5, 7, 13, 99]))
            rejected = encode_rejected_reply(xid, reject_stat.AUTH_ERROR, auth=why)
            return rejected, f"(AUTH_ERROR {why.name})"
        if variant == 5:  # a verifier longer than RFC 5531 allows
            enc = Encoder()
            enc.uint32(xid)
            enc.int32(1)  # REPLY
            enc.int32(0)  # MSG_ACCEPTED
            enc.int32(auth_flavor.AUTH_NONE)
            enc.opaque(b"v" * (MAX_AUTH_BYTES + 4))
            enc.int32(accept_stat.SUCCESS)
            return enc.getvalue(), "(verifier of 404 bytes)"
        if variant == 6:  # unknown reply_stat / reject_stat
            return struct.pack(
                ">IIII", xid, 1, rng.choice([2, 1]), 77
            ), "(unknown reply or reject stat)"
        return struct.pack(">II", xid, 0), "(a CALL where a reply belongs)"

    def _bad_status(self, answer: Answer) -> tuple[bytes | None, str]:
        if not answer.results or not answer.items:
            return answer.body, "(not a COMPOUND: answered)"
        status = self.rng.choice(_BAD_STATUSES)
        if self.rng.random() < 0.1:
            status = nfsstat4(self.rng.randrange(1, 100_000))
        at = self.rng.randrange(len(answer.items))
        items = list(answer.items[:at])
        items.append((answer.items[at][0], OpStatus(answer.items[at][0], status)))
        results = encode_compound_res(status, answer.tag, items)
        return self._reply(answer.xid, results), f"({status.name} at op {at})"

    def _inconsistent(self, answer: Answer) -> tuple[bytes | None, str]:
        if not answer.results or not answer.items:
            return answer.body, "(not a COMPOUND: answered)"
        rng = self.rng
        variant = rng.randrange(5)
        items = list(answer.items)
        status = answer.status
        if variant == 0:  # COMPOUND NFS4_OK but the last op failed
            opnum = items[-1][0]
            items[-1] = (opnum, OpStatus(opnum, rng.choice(_BAD_STATUSES)))
            status = S.NFS4_OK
            note = "(status OK, last op failed)"
        elif variant == 1:  # COMPOUND failed but every op OK
            status = rng.choice(_BAD_STATUSES)
            note = f"(status {status.name}, every op OK)"
        elif variant == 2:  # fewer results than operations, status OK
            items = items[: rng.randrange(len(items))]
            status = S.NFS4_OK
            note = f"({len(items)} of {len(answer.items)} results)"
        elif variant == 3:  # more results than operations
            items = items + items
            note = f"({len(items)} results for {len(answer.items)} operations)"
        else:  # the results in another order (operation codes included)
            rng.shuffle(items)
            note = "(results shuffled)"
        return self._reply(answer.xid, encode_compound_res(status, answer.tag, items)), note


class ServerThread:
    """A :class:`HostileServer` in a thread of its own (its own trio loop), for tests
    that run the client in another process.  Use as a context manager; ``port`` is set
    on entry, and the thread is stopped and joined on exit.

    Raises (on entry):
        RuntimeError: the server did not start within ``timeout`` seconds.
    """

    def __init__(self, plan: Plan, timeout: float = 10.0) -> None:
        self.server = HostileServer(plan)
        self.port = 0
        self._timeout = timeout
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self._failure: BaseException | None = None

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(self._timeout) or not self.port:
            raise RuntimeError(f"hostile server did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(self._timeout)
        if self._thread.is_alive():
            raise RuntimeError("hostile server thread did not stop")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by __enter__ / the test
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.port = await nursery.start(self.server.serve)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()


def describe_actions(server: HostileServer, last: int = 12) -> Sequence[str]:
    """The server's last ``last`` actions, for a failure message."""
    return server.actions[-last:]

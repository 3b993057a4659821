"""A scripted NFSv4.1 client: raw COMPOUNDs over the project's RPC transport.

For tests and for people probing a server step by step.  Nothing is hidden: the
caller picks slots, sequence ids, ``sa_cachethis``, client owners and credentials,
and gets the decoded ``COMPOUND4res`` (and, when asked, the raw reply bytes) back.
Callbacks arriving on the connection (CB_COMPOUND, RFC 8881 section 20) are recorded
in ``callbacks`` and answered: CB_SEQUENCE with NFS4_OK, CB_RECALL with
``recall_status`` (NFS4_OK by default), CB_GETATTR with ``getattr_status`` and the
attributes in ``getattr_reply`` (those of them asked for; none by default),
CB_RECALL_ANY with ``recall_any_status``.

Example::

    async with trio.open_nursery() as nursery:
        c = await RawClient.connect("127.0.0.1", port, nursery, owner=b"test-1")
        await c.establish()                      # EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE
        res = await c.seq([nfs4.PUTROOTFH4args(), nfs4.GETFH4args()])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Self

import trio

from session.rawargs import RawArgs
from session.rpc import (
    NULL_AUTH,
    AuthSys,
    Credential,
    RpcCall,
    accept_stat,
    encode_accepted_reply,
)
from session.transport import Transport
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder, Encoder
from session.xdr.const import (
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    FATTR4,
    NFS4_CALLBACK,
    NFS4_PROGRAM,
    NFS_V4,
    NFSPROC4_COMPOUND,
    nfsstat4,
)
from session.xdr.fattr import (
    ATTR_CODECS,
    NFSAttrs,
    bitmap4_from,
    bitmap4_to_set,
    decode_fattr4,
    encode_fattr4,
)

_FATTR4_BITS: Final = frozenset(int(a) for a in FATTR4)


class CompoundFailed(Exception):
    """A COMPOUND the caller expected to succeed did not (``res`` holds the reply)."""

    def __init__(self, res: nfs4.COMPOUND4res) -> None:
        last = type(res.resarray[-1]).__name__ if res.resarray else "-"
        super().__init__(f"{res.status.name} at op {len(res.resarray) - 1} ({last})")
        self.res = res
        self.status = res.status


@dataclass(slots=True)
class Callback:
    """One CB_COMPOUND the client received."""

    args: cb.CB_COMPOUND4args

    def recalls(self) -> list[cb.CB_RECALL4args]:
        return [op for op in self.args.argarray if isinstance(op, cb.CB_RECALL4args)]

    def getattrs(self) -> list[cb.CB_GETATTR4args]:
        return [op for op in self.args.argarray if isinstance(op, cb.CB_GETATTR4args)]

    def recall_anys(self) -> list[cb.CB_RECALL_ANY4args]:
        return [op for op in self.args.argarray if isinstance(op, cb.CB_RECALL_ANY4args)]


def encode_compound(ops: Sequence[nfs4.ArgOp], tag: bytes = b"", minorversion: int = 1) -> bytes:
    enc = Encoder()
    nfs4.COMPOUND4args(tag=tag, minorversion=minorversion, argarray=list(ops)).pack(enc)
    return enc.getvalue()


def decode_compound(data: bytes | memoryview) -> nfs4.COMPOUND4res:
    dec = Decoder(data)
    res = nfs4.COMPOUND4res.unpack(dec)
    dec.done_or_raise("COMPOUND4res")
    return res


class RawClient(RawArgs):
    """One connection, one client owner, at most one session (see the module docstring).

    Attributes:
        clientid: from the last EXCHANGE_ID.
        cs_sequence: the csa_sequence the next CREATE_SESSION uses.
        sessionid: from the last CREATE_SESSION (or set by hand: a transferred one).
        seqids: per-slot sequence id last used.
        callbacks: CB_COMPOUNDs received, oldest first.
        recall_status: what CB_RECALL is answered with.
        getattr_reply: the attributes CB_GETATTR is answered with (only those asked
            for are sent, as a client must, RFC 8881 section 20.1).
        getattr_status: CB_GETATTR's status (anything but NFS4_OK: no attributes).
        recall_any_status: what CB_RECALL_ANY is answered with.
    """

    def __init__(
        self,
        transport: Transport,
        owner: bytes,
        verifier: bytes,
        cred: Credential,
    ) -> None:
        self.transport = transport
        self.owner = owner
        self.verifier = verifier
        self.cred = cred
        self.clientid = 0
        self.cs_sequence = 0
        self.sessionid = b""
        self.seqids: dict[int, int] = {}
        self.callbacks: list[Callback] = []
        self.recall_status = nfsstat4.NFS4_OK
        self.getattr_reply = NFSAttrs()
        self.getattr_status = nfsstat4.NFS4_OK
        self.recall_any_status = nfsstat4.NFS4_OK
        self._callback_seen = trio.Event()
        self.last_flags = 0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        nursery: trio.Nursery,
        *,
        owner: bytes | None = None,
        verifier: bytes | None = None,
        uid: int = 0,
        gid: int = 0,
        cred: Credential | None = None,
    ) -> Self:
        """Connect to ``host:port`` (127.0.0.0/8 in tests) with an AUTH_SYS credential
        of ``uid``/``gid``, or ``cred`` (e.g. a ``session.gss.GssCredential``; the
        ``cred`` attribute may be changed between calls), as an instance of the class
        it is called on (subclasses may answer callbacks differently)."""
        client: Self | None = None

        async def on_call(call: RpcCall) -> bytes | None:
            assert client is not None
            return client._answer_callback(call)

        transport = await Transport.connect(host, port, nursery=nursery, on_call=on_call)
        client = cls(
            transport,
            owner if owner is not None else b"raw-" + os.urandom(6).hex().encode(),
            verifier if verifier is not None else os.urandom(8),
            cred if cred is not None else AuthSys(uid, gid, machinename="rawclient"),
        )
        return client

    async def aclose(self) -> None:
        await self.transport.aclose()

    # -- raw calls ------------------------------------------------------------------
    async def call_bytes(
        self, ops: Sequence[nfs4.ArgOp], *, tag: bytes = b"", minorversion: int = 1
    ) -> bytes:
        """Send a COMPOUND; the reply's COMPOUND4res bytes."""
        return bytes(
            await self.transport.call(
                NFS4_PROGRAM,
                NFS_V4,
                NFSPROC4_COMPOUND,
                encode_compound(ops, tag, minorversion),
                self.cred,
            )
        )

    async def call(
        self, ops: Sequence[nfs4.ArgOp], *, tag: bytes = b"", minorversion: int = 1
    ) -> nfs4.COMPOUND4res:
        """Send a COMPOUND as given (no SEQUENCE added)."""
        return decode_compound(await self.call_bytes(ops, tag=tag, minorversion=minorversion))

    async def seq(
        self,
        ops: Sequence[nfs4.ArgOp],
        *,
        slot: int = 0,
        seqid: int | None = None,
        cachethis: bool = False,
        sessionid: bytes | None = None,
        check: bool = False,
    ) -> nfs4.COMPOUND4res:
        """``[SEQUENCE] + ops`` on ``slot``; the slot's seqid advances when SEQUENCE
        succeeds.  With ``check``, raise :class:`CompoundFailed` unless NFS4_OK."""
        res, _ = await self.seq_bytes(
            ops, slot=slot, seqid=seqid, cachethis=cachethis, sessionid=sessionid
        )
        if check and res.status != nfsstat4.NFS4_OK:
            raise CompoundFailed(res)
        return res

    async def seq_bytes(
        self,
        ops: Sequence[nfs4.ArgOp],
        *,
        slot: int = 0,
        seqid: int | None = None,
        cachethis: bool = False,
        sessionid: bytes | None = None,
    ) -> tuple[nfs4.COMPOUND4res, bytes]:
        """As :meth:`seq`, also giving the reply bytes (for reply-cache comparisons)."""
        args = self.sequence_args(slot, seqid, cachethis, sessionid)
        raw = await self.call_bytes([args, *ops])
        res = decode_compound(raw)
        first = res.resarray[0] if res.resarray else None
        if isinstance(first, nfs4.SEQUENCE4res) and first.status == nfsstat4.NFS4_OK:
            self.seqids[slot] = args.sa_sequenceid
            if first.resok is not None:
                self.last_flags = first.resok.sr_status_flags
        return res, raw

    async def ok(self, ops: Sequence[nfs4.ArgOp], **kw: object) -> nfs4.COMPOUND4res:
        """:meth:`seq` that must succeed."""
        res = await self.seq(ops, **kw)  # type: ignore[arg-type]
        if res.status != nfsstat4.NFS4_OK:
            raise CompoundFailed(res)
        return res

    # -- client ID and session ------------------------------------------------------
    async def exchange_id(
        self,
        flags: int | None = None,
        verifier: bytes | None = None,
        state_protect: nfs4.state_protect4_a | None = None,
    ) -> nfs4.EXCHANGE_ID4res:
        """EXCHANGE_ID alone; on success remembers the client ID and csa_sequence."""
        res = await self.call([self.exchange_id_args(flags, verifier, state_protect)])
        eid = res.resarray[0]
        assert isinstance(eid, nfs4.EXCHANGE_ID4res)
        if eid.resok is not None:
            self.clientid = eid.resok.eir_clientid
            self.cs_sequence = eid.resok.eir_sequenceid
        return eid

    def create_session_args(
        self,
        *,
        clientid: int | None = None,
        sequence: int | None = None,
        back_channel: bool = True,
        slots: int = 8,
    ) -> nfs4.CREATE_SESSION4args:
        fore = nfs4.channel_attrs4(0, 1 << 20, 1 << 20, 16384, 32, slots, [])
        back = nfs4.channel_attrs4(0, 16384, 16384, 0, 4, 2, [])
        return nfs4.CREATE_SESSION4args(
            csa_clientid=clientid if clientid is not None else self.clientid,
            csa_sequence=sequence if sequence is not None else self.cs_sequence,
            csa_flags=CREATE_SESSION4_FLAG_CONN_BACK_CHAN if back_channel else 0,
            csa_fore_chan_attrs=fore,
            csa_back_chan_attrs=back,
            csa_cb_program=NFS4_CALLBACK,
            csa_sec_parms=[nfs4.callback_sec_parms4(cb_secflavor=0)],
        )

    async def create_session(self, **kw: object) -> nfs4.CREATE_SESSION4res:
        """CREATE_SESSION alone; on success remembers the session (fresh slots)."""
        res = await self.call([self.create_session_args(**kw)])  # type: ignore[arg-type]
        cs = res.resarray[0]
        assert isinstance(cs, nfs4.CREATE_SESSION4res)
        if cs.resok is not None:
            self.sessionid = cs.resok.csr_sessionid
            self.cs_sequence = (self.cs_sequence + 1) & 0xFFFFFFFF
            self.seqids = {}
        return cs

    async def establish(self, *, reclaim_complete: bool = True) -> None:
        """EXCHANGE_ID, CREATE_SESSION (with a back channel), RECLAIM_COMPLETE."""
        eid = await self.exchange_id()
        if eid.status != nfsstat4.NFS4_OK:
            raise RuntimeError(f"EXCHANGE_ID: {eid.status.name}")
        cs = await self.create_session()
        if cs.status != nfsstat4.NFS4_OK:
            raise RuntimeError(f"CREATE_SESSION: {cs.status.name}")
        if reclaim_complete:
            await self.ok([nfs4.RECLAIM_COMPLETE4args(rca_one_fs=False)])

    # -- conveniences ---------------------------------------------------------------
    async def lookup_path(self, path: str) -> bytes:
        """The filehandle of ``path`` (PUTROOTFH, LOOKUP each component, GETFH)."""
        ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args()]
        ops += [nfs4.LOOKUP4args(c.encode()) for c in path.split("/") if c]
        ops.append(nfs4.GETFH4args())
        res = await self.ok(ops)
        getfh = res.resarray[-1]
        assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
        return getfh.resok.object

    async def getattrs(self, fh: bytes, attrs: Sequence[int]) -> NFSAttrs:
        res = await self.ok(
            [nfs4.PUTFH4args(fh), nfs4.GETATTR4args(attr_request=bitmap4_from(attrs))]
        )
        ga = res.resarray[-1]
        assert isinstance(ga, nfs4.GETATTR4res) and ga.resok is not None
        return decode_fattr4(ga.resok.obj_attributes)

    # -- the back channel -----------------------------------------------------------
    async def wait_callback(self, count: int = 1) -> Callback:
        """Wait until ``count`` callbacks have arrived; the latest one."""
        while len(self.callbacks) < count:
            await self._callback_seen.wait()
        return self.callbacks[count - 1]

    def _answer_callback(self, call: RpcCall) -> bytes | None:
        """The reply to a callback (None: send none; subclasses may choose that)."""
        if call.proc == 0:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS)
        args = cb.CB_COMPOUND4args.unpack(Decoder(call.args))
        self.callbacks.append(Callback(args))
        self._callback_seen.set()
        self._callback_seen = trio.Event()
        results: list[cb.CbResOp] = []
        status = nfsstat4.NFS4_OK
        for op in args.argarray:
            if isinstance(op, cb.CB_SEQUENCE4args):
                results.append(
                    cb.CB_SEQUENCE4res(
                        nfsstat4.NFS4_OK,
                        cb.CB_SEQUENCE4resok(
                            op.csa_sessionid,
                            op.csa_sequenceid,
                            op.csa_slotid,
                            op.csa_highest_slotid,
                            op.csa_highest_slotid,
                        ),
                    )
                )
            elif isinstance(op, cb.CB_RECALL4args):
                results.append(cb.CB_RECALL4res(self.recall_status))
                status = self.recall_status
            elif isinstance(op, cb.CB_GETATTR4args):
                status = self.getattr_status
                if status == nfsstat4.NFS4_OK:
                    reply = NFSAttrs()
                    for bit in bitmap4_to_set(op.attr_request):
                        codec = ATTR_CODECS.get(FATTR4(bit)) if bit in _FATTR4_BITS else None
                        if codec is not None:
                            name = codec[0]
                            setattr(reply, name, getattr(self.getattr_reply, name))
                    results.append(
                        cb.CB_GETATTR4res(status, cb.CB_GETATTR4resok(encode_fattr4(reply)))
                    )
                else:
                    results.append(cb.CB_GETATTR4res(status))
            elif isinstance(op, cb.CB_RECALL_ANY4args):
                results.append(cb.CB_RECALL_ANY4res(self.recall_any_status))
                status = self.recall_any_status
            else:
                results.append(cb.CB_ILLEGAL4res(nfsstat4.NFS4ERR_OP_ILLEGAL))
                status = nfsstat4.NFS4ERR_OP_ILLEGAL
            if status != nfsstat4.NFS4_OK:
                break
        enc = Encoder()
        cb.CB_COMPOUND4res(status, args.tag, results).pack(enc)
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, enc.getvalue())

"""Raw COMPOUNDs for ``fusenfs check``: every slot, sequence id and flag chosen by the check.

:class:`Wire` is one TCP connection with one client owner and at most one session in use,
speaking NFSv4.1 over the project's RPC transport (``session.transport``) and XDR codecs.
Nothing is retried or hidden: each call returns a :class:`Reply` with the decoded
``COMPOUND4res``, its size in bytes and how long it took, and describes itself for the
report (``Reply.sent``, ``Reply.got``).  Callbacks arriving on the connection (CB_NULL,
CB_COMPOUND, RFC 8881 section 20) are answered -- CB_SEQUENCE NFS4_OK, CB_RECALL NFS4_OK --
and recorded.

Every wait is bounded by ``timeo`` seconds; a server that does not answer, or drops the
connection, raises :class:`WireError` naming the COMPOUND.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from session.errors import NFSClientError
from session.rawargs import DEFAULT_EIA_FLAGS, RawArgs
from session.rpc import NULL_AUTH, AuthSys, RpcCall, accept_stat, encode_accepted_reply
from session.transport import Transport
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder, Encoder
from session.xdr.const import (
    CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    FATTR4,
    NFS4_PROGRAM,
    NFS_V4,
    NFSPROC4_COMPOUND,
    nfs_opnum4,
    nfsstat4,
    opentype4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, bitmap4_to_set, decode_fattr4

NFS4_CALLBACK_PROGRAM = 0x40000000
RPC_REPLY_HEADER = 24
"""Bytes of an accepted RPC reply header with an AUTH_NONE verifier, which the reply
sizes of RFC 8881 section 18.36.3 include (the transport hands over only the results)."""


class WireError(NFSClientError):
    """No usable reply: the server did not answer in time, or the connection broke."""


def attr_names(bitmap: Sequence[int]) -> str:
    """``"fs_locations, fs_status"`` for a bitmap4."""
    names = []
    for bit in sorted(bitmap4_to_set(bitmap)):
        try:
            names.append(FATTR4(bit).name.removeprefix("FATTR4_").lower())
        except ValueError:
            names.append(f"attr{bit}")
    return ", ".join(names)


def op_name(op: object) -> str:
    return type(op).__name__.removesuffix("4args").removesuffix("4res")


def describe_op(op: nfs4.ArgOp) -> str:
    """One operation of a request, with the arguments that matter for a report."""
    name = op_name(op)
    if isinstance(op, nfs4.SEQUENCE4args):
        extra = ", cachethis" if op.sa_cachethis else ""
        return f"SEQUENCE(slot {op.sa_slotid}, seq {op.sa_sequenceid}{extra})"
    if isinstance(op, nfs4.LOOKUP4args):
        return f"LOOKUP({op.objname.decode(errors='replace')!r})"
    if isinstance(op, nfs4.GETATTR4args):
        return f"GETATTR({attr_names(op.attr_request)})"
    if isinstance(op, nfs4.READDIR4args):
        return f"READDIR({attr_names(op.attr_request)}; maxcount {op.maxcount})"
    if isinstance(op, nfs4.READ4args):
        return f"READ(offset {op.offset}, count {op.count})"
    if isinstance(op, nfs4.WRITE4args):
        return f"WRITE(offset {op.offset}, {len(op.data)} bytes)"
    if isinstance(op, nfs4.OPEN4args):
        claim = op.claim.claim.name.removeprefix("CLAIM_")
        what = f" {op.claim.file.decode(errors='replace')!r}" if op.claim.file else ""
        create = ", create" if op.openhow.opentype == opentype4.OPEN4_CREATE else ""
        return f"OPEN({claim}{what}{create})"
    if isinstance(op, nfs4.LOCK4args):
        reclaim = ", reclaim" if op.reclaim else ""
        return f"LOCK({op.locktype.name}, {op.offset}+{op.length}{reclaim})"
    if isinstance(op, nfs4.EXCHANGE_ID4args):
        return f"EXCHANGE_ID(eia_flags {op.eia_flags:#x})"
    if isinstance(op, nfs4.CREATE_SESSION4args):
        fore = op.csa_fore_chan_attrs
        return (
            f"CREATE_SESSION(csa_flags {op.csa_flags:#x}; fore: {fore.ca_maxrequests} slots, "
            f"maxrequestsize {fore.ca_maxrequestsize}, maxresponsesize "
            f"{fore.ca_maxresponsesize}, cached {fore.ca_maxresponsesize_cached})"
        )
    if isinstance(op, nfs4.RECLAIM_COMPLETE4args):
        return f"RECLAIM_COMPLETE(rca_one_fs={'TRUE' if op.rca_one_fs else 'FALSE'})"
    if isinstance(op, nfs4.TEST_STATEID4args):
        return f"TEST_STATEID({len(op.ts_stateids)} stateids)"
    return name


def describe_ops(ops: Sequence[nfs4.ArgOp]) -> str:
    return " ".join(describe_op(op) for op in ops) or "(no operations)"


def describe_res(res: nfs4.COMPOUND4res) -> str:
    """``"NFS4ERR_MOVED at op 2 (GETATTR)"`` or ``"NFS4_OK"``."""
    if res.status == nfsstat4.NFS4_OK:
        return "NFS4_OK"
    if not res.resarray:
        return f"{res.status.name} (no results)"
    index = len(res.resarray) - 1
    return f"{res.status.name} at op {index} ({op_name(res.resarray[-1])})"


@dataclass(slots=True)
class Reply:
    """One COMPOUND and its reply.

    Attributes:
        ops: what was sent.
        res: the decoded reply.
        size: bytes of the reply as the RPC layer carried it (results plus a 24-byte
            accepted-reply header).
        raw: the COMPOUND4res bytes (to compare a replay byte for byte).
        seconds: from send to reply.
    """

    ops: list[nfs4.ArgOp]
    res: nfs4.COMPOUND4res
    size: int
    raw: bytes
    seconds: float

    @property
    def status(self) -> nfsstat4:
        return self.res.status

    @property
    def sent(self) -> str:
        return describe_ops(self.ops)

    @property
    def got(self) -> str:
        return (
            f"{describe_res(self.res)}; {len(self.res.resarray)} results, reply {self.size} bytes"
        )

    def op(self, index: int) -> nfs4.ResOp | None:
        return self.res.resarray[index] if index < len(self.res.resarray) else None

    def first(self, cls: type[nfs4.ResOp]) -> nfs4.ResOp | None:
        for r in self.res.resarray:
            if isinstance(r, cls):
                return r
        return None

    def status_of(self, index: int) -> nfsstat4 | None:
        r = self.op(index)
        return None if r is None else r.status

    def attrs(self) -> NFSAttrs | None:
        """The attributes of the last GETATTR that succeeded."""
        found = None
        for r in self.res.resarray:
            if isinstance(r, nfs4.GETATTR4res) and r.resok is not None:
                found = r.resok.obj_attributes
        return decode_fattr4(found) if found is not None else None

    def fh(self) -> bytes | None:
        """The filehandle of the last GETFH that succeeded."""
        found = None
        for r in self.res.resarray:
            if isinstance(r, nfs4.GETFH4res) and r.resok is not None:
                found = r.resok.object
        return found


@dataclass(slots=True)
class Callback:
    """A CB_COMPOUND received on the connection."""

    args: cb.CB_COMPOUND4args
    when: float


@dataclass(slots=True)
class Wire(RawArgs):
    """One connection, one client owner, raw COMPOUNDs (see the module docstring).

    Attributes:
        clientid / cs_sequence: from the last EXCHANGE_ID (and CREATE_SESSION).
        sessionid / fore / back: the session in use and its negotiated channels.
        seqids: slot id -> the sequence id last used on it (successfully).
        eid: the last successful EXCHANGE_ID4resok.
    """

    host: str
    port: int
    transport: Transport
    owner: bytes
    verifier: bytes
    timeo: float
    cred: AuthSys
    clientid: int = 0
    cs_sequence: int = 0
    sessionid: bytes = b""
    fore: nfs4.channel_attrs4 | None = None
    back: nfs4.channel_attrs4 | None = None
    seqids: dict[int, int] = field(default_factory=dict)
    eid: nfs4.EXCHANGE_ID4resok | None = None
    callbacks: list[Callback] = field(default_factory=list)
    flags_seen: int = 0
    impl_id: ClassVar[list[nfs4.nfs_impl_id4]] = [
        nfs4.nfs_impl_id4(
            nii_domain="fusenfs.invalid", nii_name="fusenfs check", nii_date=nfs4.nfstime4(0, 0)
        )
    ]
    open_owner: ClassVar[bytes] = b"check-owner"

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        nursery: trio.Nursery,
        *,
        owner: bytes,
        timeo: float,
        uid: int = 0,
        gid: int = 0,
        verifier: bytes | None = None,
    ) -> Wire:
        """Open a connection (within ``timeo`` seconds) with an AUTH_SYS credential.

        Raises:
            WireError: the connection could not be made.
        """
        holder: list[Wire] = []

        async def on_call(call: RpcCall) -> bytes:
            return holder[0].answer_callback(call)

        try:
            with trio.fail_after(timeo):
                transport = await Transport.connect(host, port, nursery=nursery, on_call=on_call)
        except trio.TooSlowError:
            raise WireError(f"cannot connect to {host}:{port}: no answer in {timeo:g} s") from None
        except NFSClientError as exc:
            raise WireError(str(exc)) from None
        wire = cls(
            host,
            port,
            transport,
            owner,
            verifier if verifier is not None else os.urandom(8),
            timeo,
            AuthSys(uid, gid, [], machinename="fusenfs-check"),
        )
        holder.append(wire)
        return wire

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self.transport.aclose()

    # -- raw calls ------------------------------------------------------------------
    async def call(
        self, ops: Sequence[nfs4.ArgOp], *, tag: bytes = b"", minorversion: int = 1
    ) -> Reply:
        """Send a COMPOUND exactly as given.

        Raises:
            WireError: no reply within ``timeo``, the connection broke, or the reply
                does not decode.
        """
        enc = Encoder()
        nfs4.COMPOUND4args(tag=tag, minorversion=minorversion, argarray=list(ops)).pack(enc)
        started = time.monotonic()
        try:
            with trio.fail_after(self.timeo):
                data = await self.transport.call(
                    NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, enc.getvalue(), self.cred
                )
        except trio.TooSlowError:
            raise WireError(
                f"no reply from {self.host}:{self.port} in {self.timeo:g} s to "
                f"[{describe_ops(ops)}]"
            ) from None
        except NFSClientError as exc:
            raise WireError(f"[{describe_ops(ops)}]: {exc}") from None
        raw = bytes(data)
        try:
            dec = Decoder(raw)
            res = nfs4.COMPOUND4res.unpack(dec)
            dec.done_or_raise("COMPOUND4res")
        except NFSClientError as exc:
            raise WireError(f"undecodable reply to [{describe_ops(ops)}]: {exc}") from None
        return Reply(list(ops), res, len(raw) + RPC_REPLY_HEADER, raw, time.monotonic() - started)

    async def seq(
        self,
        ops: Sequence[nfs4.ArgOp],
        *,
        slot: int = 0,
        seqid: int | None = None,
        cachethis: bool = False,
        sessionid: bytes | None = None,
        highest: int | None = None,
    ) -> Reply:
        """``[SEQUENCE] + ops``; the slot's sequence id advances when SEQUENCE succeeds."""
        args = self.sequence_args(slot, seqid, cachethis, sessionid, highest)
        reply = await self.call([args, *ops])
        head = reply.op(0)
        if isinstance(head, nfs4.SEQUENCE4res) and head.resok is not None:
            if sessionid is None or sessionid == self.sessionid:
                self.seqids[slot] = args.sa_sequenceid
            self.flags_seen = head.resok.sr_status_flags
        return reply

    # -- client ID and session ------------------------------------------------------
    async def exchange_id(
        self, flags: int = DEFAULT_EIA_FLAGS, verifier: bytes | None = None
    ) -> Reply:
        """EXCHANGE_ID alone; on success the client ID and csa_sequence are kept."""
        reply = await self.call([self.exchange_id_args(flags, verifier)])
        eid = reply.op(0)
        if isinstance(eid, nfs4.EXCHANGE_ID4res) and eid.resok is not None:
            self.eid = eid.resok
            self.clientid = eid.resok.eir_clientid
            self.cs_sequence = eid.resok.eir_sequenceid
        return reply

    def create_session_args(
        self,
        *,
        fore: nfs4.channel_attrs4 | None = None,
        back: nfs4.channel_attrs4 | None = None,
        flags: int = CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
        sequence: int | None = None,
        clientid: int | None = None,
    ) -> nfs4.CREATE_SESSION4args:
        return nfs4.CREATE_SESSION4args(
            csa_clientid=self.clientid if clientid is None else clientid,
            csa_sequence=self.cs_sequence if sequence is None else sequence,
            csa_flags=flags,
            csa_fore_chan_attrs=fore or fore_channel(),
            csa_back_chan_attrs=back or back_channel(),
            csa_cb_program=NFS4_CALLBACK_PROGRAM,
            csa_sec_parms=[nfs4.callback_sec_parms4(cb_secflavor=0)],
        )

    async def create_session(
        self,
        *,
        fore: nfs4.channel_attrs4 | None = None,
        back: nfs4.channel_attrs4 | None = None,
        flags: int = CREATE_SESSION4_FLAG_CONN_BACK_CHAN,
    ) -> Reply:
        """CREATE_SESSION alone; on success the session is used from then on."""
        reply = await self.call([self.create_session_args(fore=fore, back=back, flags=flags)])
        cs = reply.op(0)
        if isinstance(cs, nfs4.CREATE_SESSION4res) and cs.resok is not None:
            self.sessionid = cs.resok.csr_sessionid
            self.fore = cs.resok.csr_fore_chan_attrs
            self.back = cs.resok.csr_back_chan_attrs
            self.cs_sequence = (self.cs_sequence + 1) & 0xFFFFFFFF
            self.seqids = {}
        return reply

    async def establish(self, *, reclaim_complete: bool = True) -> None:
        """EXCHANGE_ID, CREATE_SESSION (back channel on this connection), and unless told
        otherwise RECLAIM_COMPLETE(rca_one_fs=FALSE).

        Raises:
            WireError: a step failed (the message names it).
        """
        eid = await self.exchange_id()
        if eid.status != nfsstat4.NFS4_OK:
            raise WireError(f"EXCHANGE_ID: {eid.got}")
        cs = await self.create_session()
        if cs.status != nfsstat4.NFS4_OK:
            raise WireError(f"CREATE_SESSION: {cs.got}")
        if reclaim_complete:
            rc = await self.seq([nfs4.RECLAIM_COMPLETE4args(rca_one_fs=False)])
            if rc.status not in (nfsstat4.NFS4_OK, nfsstat4.NFS4ERR_COMPLETE_ALREADY):
                raise WireError(f"RECLAIM_COMPLETE: {rc.got}")

    async def ok(self, ops: Sequence[nfs4.ArgOp], **kw: object) -> Reply:
        """:meth:`seq` that must succeed.

        Raises:
            WireError: it did not (the message has the reply).
        """
        reply = await self.seq(ops, **kw)  # type: ignore[arg-type]
        if reply.status != nfsstat4.NFS4_OK:
            raise WireError(f"[{reply.sent}]: {reply.got}")
        return reply

    async def destroy(self) -> None:
        """DESTROY_SESSION and DESTROY_CLIENTID, best effort, then close (never raises)."""
        try:
            if self.sessionid:
                await self.call([nfs4.DESTROY_SESSION4args(self.sessionid)])
            if self.clientid:
                await self.call([nfs4.DESTROY_CLIENTID4args(self.clientid)])
        except NFSClientError:
            pass
        await self.aclose()

    # -- conveniences ---------------------------------------------------------------
    def path_ops(self, components: Sequence[str]) -> list[nfs4.ArgOp]:
        ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args()]
        ops += [nfs4.LOOKUP4args(c.encode()) for c in components]
        return ops

    async def lookup_path(self, components: Sequence[str]) -> bytes:
        """The filehandle of a path (PUTROOTFH, LOOKUP each component, GETFH).

        Raises:
            WireError: the lookup failed.
        """
        reply = await self.ok([*self.path_ops(components), nfs4.GETFH4args()])
        fh = reply.fh()
        if fh is None:
            raise WireError(f"[{reply.sent}]: no filehandle")
        return fh

    async def getattr(self, fh: bytes, attrs: Sequence[int]) -> tuple[Reply, NFSAttrs | None]:
        reply = await self.seq([nfs4.PUTFH4args(fh), nfs4.GETATTR4args(bitmap4_from(attrs))])
        return reply, reply.attrs()

    # -- the back channel -----------------------------------------------------------
    def answer_callback(self, call: RpcCall) -> bytes:
        """CB_NULL: success; CB_COMPOUND: CB_SEQUENCE and CB_RECALL answered NFS4_OK,
        anything else NFS4ERR_OP_ILLEGAL (RFC 8881 sections 19 and 20)."""
        if call.proc == 0:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS)
        try:
            args = cb.CB_COMPOUND4args.unpack(Decoder(call.args))
        except NFSClientError:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
        self.callbacks.append(Callback(args, time.monotonic()))
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
                results.append(cb.CB_RECALL4res(nfsstat4.NFS4_OK))
            else:
                results.append(cb.CB_ILLEGAL4res(nfsstat4.NFS4ERR_OP_ILLEGAL))
                status = nfsstat4.NFS4ERR_OP_ILLEGAL
                break
        enc = Encoder()
        cb.CB_COMPOUND4res(status, args.tag, results).pack(enc)
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, enc.getvalue())


def fore_channel(
    *,
    maxreq: int = 1024 * 1024 + 4096,
    maxresp: int = 1024 * 1024 + 4096,
    cached: int = 8192,
    ops: int = 16,
    slots: int = 8,
    padding: int = 0,
) -> nfs4.channel_attrs4:
    """Fore-channel attributes to ask for (sizes in bytes; ``slots`` a count)."""
    return nfs4.channel_attrs4(padding, maxreq, maxresp, cached, ops, slots, [])


def back_channel() -> nfs4.channel_attrs4:
    return nfs4.channel_attrs4(0, 16384, 16384, 0, 4, 2, [])


def opnum(res: nfs4.ResOp) -> nfs_opnum4:
    return res.OPNUM

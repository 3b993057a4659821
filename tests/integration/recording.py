"""A ``ServerSession`` that records what went on the wire, for the integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from session.rpc import Credential, arg_bytes
from session.session import ServerSession, _Exchange
from session.xdr import nfs4
from session.xdr.codec import Decoder, Gathered


@dataclass
class RecordingSession(ServerSession):
    """A ``ServerSession`` that keeps every COMPOUND it sent and the reply it got
    (``exchanges``, in the order the replies came)."""

    exchanges: list[tuple[nfs4.COMPOUND4args, nfs4.COMPOUND4res]] = field(default_factory=list)

    async def _send(
        self,
        body: bytes | Gathered,
        cred: Credential,
        exchange: _Exchange | None = None,
        handoff: bool = False,
    ) -> bytes | memoryview:
        reply = await super()._send(body, cred, exchange, handoff)
        args = nfs4.COMPOUND4args.unpack(Decoder(arg_bytes(body)))
        self.exchanges.append((args, nfs4.COMPOUND4res.unpack(Decoder(reply))))
        return reply

    def ops_sent(self, op_type: type) -> list[nfs4.ArgOp]:
        """Every operation of type ``op_type`` sent, in order."""
        return [op for a, _ in self.exchanges for op in a.argarray if isinstance(op, op_type)]

    def sent_with(self, op_type: type) -> list[tuple[nfs4.COMPOUND4args, nfs4.COMPOUND4res]]:
        """The exchanges whose COMPOUND holds an ``op_type``."""
        return [
            (a, r) for a, r in self.exchanges if any(isinstance(op, op_type) for op in a.argarray)
        ]

    def steps(self, since: int = 0) -> list[tuple[str, str]]:
        """(operations after SEQUENCE, status) of each COMPOUND from ``since`` on."""
        out = []
        for args, res in self.exchanges[since:]:
            names = [op.OPNUM.name.removeprefix("OP_") for op in args.argarray]
            if names[:1] == ["SEQUENCE"]:
                names = names[1:]
            out.append((" ".join(names), res.status.name))
        return out

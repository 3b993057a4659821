"""One exception tree for the client (HOUSE_STYLE.md: exceptions).

``NFSClientError`` is the root.  Each error carries an ``errno`` so that the FUSE edge
can turn anything that escapes recovery into ``pyfuse3.FUSEError(errno)``.
"""

from __future__ import annotations

import errno as _errno


class NFSClientError(Exception):
    """Base of every error raised by fusenfs; ``errno`` is what the FUSE edge returns."""

    errno: int = _errno.EIO


class XdrError(NFSClientError):
    """Malformed XDR: a length larger than what remains, a bad discriminant, short data.

    Attributes:
        type_name: the XDR type being decoded when it went wrong (e.g. ``"READ4resok"``).
        offset: byte offset into the buffer being decoded (an index, bytes).
    """

    def __init__(self, type_name: str, offset: int, detail: str) -> None:
        super().__init__(f"XDR {type_name} at offset {offset}: {detail}")
        self.type_name = type_name
        self.offset = offset
        self.detail = detail


class TransportError(NFSClientError):
    """The connection to the server failed, closed, or could not be made."""

    errno = _errno.EIO


class ReplyOverdue(TransportError):
    """No reply came before the call's deadline (``RpcConnection.call(deadline=)``).
    The connection is still up; the caller decides (the session drops it and sends the
    request again: a minor timeout)."""

    errno = _errno.ETIMEDOUT


class ReplyTooLarge(TransportError):
    """A record from the server was larger than the negotiated maximum (or, before a
    session exists, than the fixed pre-session cap).  Re-sending the request would get
    the same reply, so it is not retried."""

    errno = _errno.EIO


class RpcError(NFSClientError):
    """The server rejected the RPC call (RFC 5531 section 9): PROG_MISMATCH, AUTH_ERROR..."""

    errno = _errno.EIO


class CallTimeout(NFSClientError):
    """A call got no reply in time (the ``timeo`` mount option)."""

    errno = _errno.ETIMEDOUT

"""NFSv4.1 session engine: XDR, ONC RPC, transport, sessions, state (RFC 8881)."""

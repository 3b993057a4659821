"""fusenfs: a userspace NFSv4.1 client mounted through FUSE (RFC 8881).

Packages: ``fusenfs`` (this: FUSE edge and CLI), ``session`` (the NFSv4.1 session
engine), ``recovery`` (state recovery and migration), ``contrib`` (servers and tools).
"""

__version__ = "0.1.0"

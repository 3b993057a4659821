"""Copy one file to or from an NFSv4.1 export through fusenfs's session layer alone.

    python3 -m contrib.session_copy read HOST PORT EXPORT NAME LOCAL [--inflight 4]
    python3 -m contrib.session_copy write LOCAL HOST PORT EXPORT NAME [--inflight 4]

EXPORT is the export's path in the server's namespace (``/export``), NAME a file in
its root directory.

No FUSE, no mount: ``session.client.NFSClient`` over one ``ServerSession``, READs or
UNSTABLE WRITEs of ``rsize``/``wsize`` (1 MiB, capped by the server's maxread and
maxwrite) with ``--inflight`` of them outstanding at a time (the mount's read-ahead
keeps 4), then COMMIT for a write (RFC 8881 sections 18.22, 18.32, 18.3).  A write
creates NAME (or truncates it) and checks COMMIT's verifier against the WRITEs'.

It prints one JSON object: ``{"bytes": N, "seconds": S, "cpu_seconds": C}``, where S is
the wall time from the first READ or WRITE to the last reply (COMMIT included) and C
this process's CPU time (user + system) in that span: the cost of the NFS client's work
without Python's start-up, the connection or the OPEN.  contrib/bench.py uses it to show
what the FUSE hop costs (the ``session-read`` and ``session-write`` steps).  Not a test
fixture; the exit status is 0 only if every byte was copied.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import trio

from session.client import NFSClient
from session.errors import NFSClientError
from session.session import UNINTERRUPTED, ServerSession, SessionOptions, host_co_ownerid
from session.state import OpenState
from session.status import NFS4Error
from session.xdr.const import (
    OPEN4_SHARE_ACCESS_READ,
    OPEN4_SHARE_ACCESS_WRITE,
    stable_how4,
)
from session.xdr.fattr import NFSAttrs

#: Bytes per READ or WRITE at most (the mount's rsize and wsize default).
BLOCK = 1024 * 1024
#: Seconds for the whole copy before it is abandoned.
DEADLINE = 600.0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_blocks(count: int, inflight: int, one: Callable[[int], Awaitable[None]]) -> None:
    """``one(index)`` for each block index below ``count``, ``inflight`` at a time, in
    tasks marked ``UNINTERRUPTED`` as the mount's read-ahead and write-behind are."""
    limit = trio.Semaphore(inflight)

    async def task(index: int) -> None:
        UNINTERRUPTED.set(True)
        try:
            await one(index)
        finally:
            limit.release()

    async with trio.open_nursery() as nursery:
        for index in range(count):
            await limit.acquire()
            nursery.start_soon(task, index)


async def open_file(client: NFSClient, name: str, access: int, create: bool) -> OpenState:
    """OPEN ``name`` in the export's root (created empty, or truncated, with ``create``)."""
    attrs = NFSAttrs(mode=0o644, size=0) if create else None
    opened = await client.open(client.root_fh, name.encode(), access, create=create, attrs=attrs)
    return opened.state


async def copy(args: argparse.Namespace) -> dict[str, float]:
    """The copy ``args`` ask for, within ``DEADLINE`` seconds: its JSON fields.

    Raises:
        NFSClientError: the server refused something or stopped answering.
        trio.TooSlowError: not done within ``DEADLINE``.
    """
    with trio.fail_after(DEADLINE):
        return await _copy(args)


async def _copy(args: argparse.Namespace) -> dict[str, float]:
    session = ServerSession(
        args.host,
        args.port,
        host_co_ownerid("session-copy/" + uuid.uuid4().hex),
        options=SessionOptions(),
    )
    failure: NFSClientError | OSError | None = None
    result: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        try:
            await session.start(nursery)
            client = NFSClient(session, args.export, owner_prefix=b"session-copy")
            await client.mount()
            if args.direction == "read":
                result = await _read(client, args.name, args.local, args.inflight)
            else:
                result = await _write(client, args.name, args.local, args.inflight)
        except NFS4Error as e:
            # What the server said about the file: name it.
            failure = NFSClientError(f"{args.export.rstrip('/')}/{args.name}: {e}")
        except (NFSClientError, OSError) as e:
            failure = e  # raised below, on its own (not in the nursery's group)
        finally:
            with trio.CancelScope(shield=True):
                await session.shutdown()
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def _read(client: NFSClient, path: str, local: str, inflight: int) -> dict[str, float]:
    state = await open_file(client, path, OPEN4_SHARE_ACCESS_READ, create=False)
    size = (await client.getattr(state.fh)).size or 0
    block = min(BLOCK, client.maxread)
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:

        async def one(index: int) -> None:
            offset = index * block
            got = 0
            while got < min(block, size - offset):
                data, eof = await client.read(state.fh, state, offset + got, block - got)
                os.pwrite(fd, data, offset + got)
                got += len(data)
                if eof or not data:
                    break

        start, cpu = time.monotonic(), cpu_seconds()
        await run_blocks(-(-size // block), inflight, one)
        seconds, cpu = time.monotonic() - start, cpu_seconds() - cpu
    finally:
        os.close(fd)
    await client.release(state, OPEN4_SHARE_ACCESS_READ)
    return {"bytes": size, "seconds": seconds, "cpu_seconds": cpu}


async def _write(client: NFSClient, path: str, local: str, inflight: int) -> dict[str, float]:
    with open(local, "rb") as source:
        data = memoryview(source.read())
    state = await open_file(client, path, OPEN4_SHARE_ACCESS_WRITE, create=True)
    block = min(BLOCK, client.maxwrite)
    verifiers: set[bytes] = set()

    async def one(index: int) -> None:
        offset = index * block
        end = min(offset + block, len(data))
        while offset < end:
            written = await client.write(state.fh, state, offset, data[offset:end])
            if written.count <= 0:
                raise NFSClientError(f"server wrote 0 bytes at offset {offset}")
            if written.committed == stable_how4.UNSTABLE4:
                verifiers.add(written.writeverf)
            offset += written.count

    start, cpu = time.monotonic(), cpu_seconds()
    await run_blocks(-(-len(data) // block), inflight, one)
    committed = await client.commit(state.fh)
    seconds, cpu = time.monotonic() - start, cpu_seconds() - cpu
    if verifiers - {committed}:
        raise NFSClientError("the write verifier changed before COMMIT (server restart?)")
    await client.release(state, OPEN4_SHARE_ACCESS_WRITE)
    return {"bytes": len(data), "seconds": seconds, "cpu_seconds": cpu}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m contrib.session_copy",
        description="Copy a file through fusenfs's NFSv4.1 session layer (no FUSE).",
    )
    sub = parser.add_subparsers(dest="direction", required=True)
    read = sub.add_parser("read", help="copy the export's NAME to LOCAL")
    write = sub.add_parser("write", help="copy LOCAL to the export's NAME")
    write.add_argument("local", help="the local file to copy")
    for p in (read, write):
        p.add_argument("host", help="the server's address (127.0.0.1)")
        p.add_argument("port", type=int, help="the server's NFS port")
        p.add_argument("export", help="the export's path on the server (/export)")
        p.add_argument("name", help="a file in the export's root directory")
        p.add_argument("--inflight", type=int, default=4, help="READs/WRITEs at once (4)")
    read.add_argument("local", help="the local file to write")
    args = parser.parse_args(argv)
    if args.inflight < 1:
        parser.error("--inflight must be at least 1")
    if "/" in args.name or args.name in ("", ".", ".."):
        parser.error(f"{args.name!r}: NAME is a file name in the export's root")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        result = trio.run(copy, args)
    except trio.TooSlowError:
        print(f"session_copy: not done within {DEADLINE:g} s", file=sys.stderr)
        return 1
    except (NFSClientError, OSError) as e:
        print(f"session_copy: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

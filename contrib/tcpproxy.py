"""A loopback TCP proxy that can cut its connections on demand, for fault tests.

    python -m contrib.tcpproxy --listen 127.0.0.1:0 --target 127.0.0.1:2049

prints ``listening 127.0.0.1:PORT`` and forwards every connection to the target.
``SIGUSR1`` resets every open connection (both sides see the connection drop, as when a
network path fails), new connections are accepted as before.  Only loopback addresses
are accepted, on both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import struct
import sys

import trio

#: SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
_RESET = struct.pack("ii", 1, 0)


def loopback(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:2049"`` -> ``("127.0.0.1", 2049)``; anything off loopback is refused."""
    host, _, port = addr.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"tcpproxy: {host} is not a loopback address")
    return host, int(port)


class Proxy:
    """Forward connections to ``target``; ``cut()`` drops them all at once."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._scopes: set[trio.CancelScope] = set()
        self.connections = 0
        self.cuts = 0

    def cut(self) -> None:
        self.cuts += 1
        for scope in list(self._scopes):
            scope.cancel()

    async def handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                server = await trio.open_tcp_stream(*self.target)
            except OSError:
                await client.aclose()
                return
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, server, nursery.cancel_scope)
                    nursery.start_soon(_pump, server, client, nursery.cancel_scope)
            finally:
                self._scopes.discard(scope)
        # Cut or finished: reset both sides so each sees the drop at once.
        for stream in (client, server):
            with contextlib.suppress(OSError):
                stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, _RESET)
            await trio.aclose_forcefully(stream)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while data := await src.receive_some(1 << 20):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


async def main_async(listen: tuple[str, int], target: tuple[str, int]) -> None:
    proxy = Proxy(target)
    listeners = await trio.open_tcp_listeners(listen[1], host=listen[0])
    sockname = listeners[0].socket.getsockname()
    print(f"listening {sockname[0]}:{sockname[1]}", flush=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, proxy.handle, listeners)
        with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGTERM, signal.SIGINT) as sigs:
            async for signum in sigs:
                if signum == signal.SIGUSR1:
                    proxy.cut()
                    print(f"cut {proxy.cuts}", flush=True)
                else:
                    nursery.cancel_scope.cancel()
                    return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    trio.run(main_async, loopback(args.listen), loopback(args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import queue
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import trio

#: The repository's top directory (the proxy runs as ``python -m contrib.tcpproxy`` there).
REPO = Path(__file__).resolve().parent.parent

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


class ProxyProcess:
    """This proxy in a child process, for tests: started in front of ``target``
    (``"HOST:PORT"`` on loopback), with every wait bounded.

    Attributes:
        proc: the child process (stop it with ``close``).
        port: where it listens, on 127.0.0.1.
        cuts: cuts asked for so far (a count).
        output: the lines it printed so far.

    Raises:
        RuntimeError: it did not report its port within ``timeout`` seconds.
    """

    def __init__(self, target: str, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "contrib.tcpproxy", "--target", target],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        first = self._next_line(timeout)
        if first is None or not first.startswith("listening "):
            self.close()
            raise RuntimeError(f"tcpproxy did not start: {first!r} {self.output}")
        self.port = int(first.rsplit(":", 1)[1])
        self.cuts = 0

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def _next_line(self, timeout: float) -> str | None:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        self.output.append(line)
        return line

    def cut(self, timeout: float = 10.0) -> None:
        """Reset every connection; returns once the proxy says it did.

        Raises:
            RuntimeError: no "cut N" from the proxy within ``timeout`` seconds.
        """
        self.proc.send_signal(signal.SIGUSR1)
        self.cuts += 1
        line = self._next_line(timeout)
        if line != f"cut {self.cuts}":
            raise RuntimeError(f"tcpproxy answered {line!r} to cut {self.cuts}")

    def close(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    trio.run(main_async, loopback(args.listen), loopback(args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a running mount keeps its files, and the socket ``fusenfs stats`` reads.

A mount process keeps two files about itself in ``/run/fusenfs/`` (or
``$XDG_RUNTIME_DIR/fusenfs/`` when /run is not writable), both named by a hash of the
mount point: the *mount record* (``.json``, ``fusenfs.runner.MountRecord``) and the
*statistics socket* (``.sock``).  Each connection to the socket gets the mount's
statistics as one JSON document, then end of stream.

The statistics used to be an extended attribute of the mount's root.  Any getxattr
handler makes the kernel ask the mount process for ``security.capability`` before every
write(2) (to know whether the write must drop file capabilities) and ``ls`` ask for
``security.selinux`` on every file: a FUSE round trip each, on the path of the system
call.  A file system that answers getxattr with ENOSYS is never asked again, which is
right for NFSv4.1 (no extended attributes) and leaves the statistics to this socket.

The socket is the mounting user's alone (mode 0600), as the mount itself is without
``allow_other``; with it, everyone's (0666), as the mount is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("fusenfs.statsock")

#: Seconds the mount gives one reader of the statistics socket to take the document.
SEND_TIMEOUT = 5.0


def runtime_dirs() -> list[Path]:
    """Where a mount's record and statistics socket live, in order of preference."""
    dirs = [Path("/run/fusenfs")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        dirs.append(Path(runtime) / "fusenfs")
    return dirs


def mount_key(mountpoint: str) -> str:
    """``mountpoint`` as the mount's files are named by: absolute, its parent's
    symbolic links resolved (the path the kernel shows in /proc/self/mountinfo).

    The mount point itself is not resolved: on a mounted FUSE file system that would
    ask the mount process, which may be stuck or be the caller.
    """
    parent, name = os.path.split(os.path.abspath(mountpoint))
    return os.path.join(os.path.realpath(parent), name)


def runtime_name(mountpoint: str, suffix: str) -> str:
    """The file name, in a runtime directory, of the mount at ``mountpoint`` with
    ``suffix`` (".json", ".sock")."""
    return hashlib.sha256(mount_key(mountpoint).encode()).hexdigest()[:24] + suffix


def socket_paths(mountpoint: str) -> list[Path]:
    """Where the statistics socket of the mount at ``mountpoint`` may be."""
    return [d / runtime_name(mountpoint, ".sock") for d in runtime_dirs()]


async def _listen(mountpoint: str, public: bool) -> tuple[trio.SocketListener, Path] | None:
    """A listening socket at the first of ``socket_paths`` that takes one (with its
    path), or None."""
    for path in socket_paths(mountpoint):
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a socket left by a process that is gone
            await sock.bind(os.fspath(path))
            os.chmod(path, 0o666 if public else 0o600)
            sock.listen(16)
        except OSError:
            sock.close()
            continue
        return trio.SocketListener(sock), path
    return None


async def serve_statistics(
    mountpoint: str,
    statistics: Callable[[], dict[str, Any]],
    *,
    public: bool = False,
    task_status: trio.TaskStatus[Path | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer each connection to the mount's statistics socket with ``statistics()``
    as JSON, until cancelled; then remove the socket.  ``public``: anyone may connect
    (a mount with ``allow_other``), else only the mount process's user (and root).

    ``task_status.started`` gets the socket's path, or None when no runtime directory
    would take it (then this returns at once; ``fusenfs stats`` will say it found no
    socket).
    """
    bound = await _listen(mountpoint, public)
    task_status.started(None if bound is None else bound[1])
    if bound is None:
        log.info(
            "no statistics socket for %s in %s: fusenfs stats cannot read this mount",
            mountpoint,
            " or ".join(os.fspath(d) for d in runtime_dirs()),
        )
        return
    listener, path = bound
    ours = os.stat(path).st_ino

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            document = json.dumps(statistics(), default=str, separators=(",", ":")).encode()
            with trio.move_on_after(SEND_TIMEOUT):
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(document)

    try:
        await trio.serve_listeners(answer, [listener])
    finally:
        # Not a socket a later mount on the same mount point made meanwhile.
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == ours:
                path.unlink()


class StatisticsUnavailable(Exception):
    """The mount's statistics could not be read; the message says why."""


def read_statistics(mountpoint: str, timeout: float | None = None) -> dict[str, Any]:
    """The statistics of the mount at ``mountpoint``, read from its socket.

    ``timeout``: seconds for the mount process to answer; None waits.

    Raises:
        StatisticsUnavailable: no socket (not a fusenfs mount, or one that could not
            make it), nobody listening on it, no answer in ``timeout`` seconds, or an
            answer that is not a JSON object.
    """
    paths = [p for p in socket_paths(mountpoint) if p.exists()]
    if not paths:
        where = " or ".join(os.fspath(p.parent) for p in socket_paths(mountpoint))
        raise StatisticsUnavailable(f"no statistics socket for it in {where}")
    problems = []
    for path in paths:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            chunks = []
            try:
                sock.connect(os.fspath(path))
                while chunk := sock.recv(1 << 16):
                    chunks.append(chunk)
            except TimeoutError:
                raise StatisticsUnavailable(
                    f"the mount process did not answer in {timeout:g} s"
                ) from None
            except OSError as e:
                problems.append(f"{path}: {e.strerror or e}")
                continue
        try:
            data = json.loads(b"".join(chunks))
        except ValueError as e:
            raise StatisticsUnavailable(f"{path}: not a statistics document ({e})") from None
        if not isinstance(data, dict):
            raise StatisticsUnavailable(f"{path}: not a statistics document")
        return data
    raise StatisticsUnavailable("; ".join(problems))

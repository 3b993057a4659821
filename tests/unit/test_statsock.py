"""The statistics socket (fusenfs.statsock): a real Unix socket in a temporary runtime
directory, served by trio and read as ``fusenfs stats`` reads it."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from fusenfs import statsock
from fusenfs.statsock import (
    StatisticsUnavailable,
    mount_key,
    read_statistics,
    serve_statistics,
    socket_paths,
)

TIMEOUT = 10  # seconds; every test is bounded
MOUNTPOINT = "/mnt/somewhere"


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sockets go to a directory of the test's own, never /run/fusenfs."""
    directory = tmp_path / "run"
    monkeypatch.setattr(statsock, "runtime_dirs", lambda: [directory])
    return directory


async def test_each_reader_gets_the_statistics_of_that_moment(runtime_dir: Path) -> None:
    counter = {"calls": 0}

    def statistics() -> dict[str, Any]:
        counter["calls"] += 1
        return {"calls": counter["calls"], "events": ["x" * 100_000]}  # > one recv

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            path = await nursery.start(serve_statistics, MOUNTPOINT, statistics)
            assert path == socket_paths(MOUNTPOINT)[0] and path.parent == runtime_dir
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
            first = await trio.to_thread.run_sync(read_statistics, MOUNTPOINT, 5.0)
            second = await trio.to_thread.run_sync(read_statistics, MOUNTPOINT, 5.0)
            assert (first["calls"], second["calls"]) == (1, 2)
            assert len(first["events"][0]) == 100_000
            nursery.cancel_scope.cancel()
    assert not path.exists(), "the socket goes with the server"


async def test_a_socket_left_by_a_dead_mount_is_refused_then_replaced() -> None:
    (path,) = socket_paths(MOUNTPOINT)
    path.parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(path))
    dead.close()  # the file stays, nobody listens
    with pytest.raises(StatisticsUnavailable, match="Connection refused"):
        read_statistics(MOUNTPOINT, 5.0)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_statistics, MOUNTPOINT, lambda: {"ok": True})
            assert await trio.to_thread.run_sync(read_statistics, MOUNTPOINT, 5.0) == {"ok": True}
            nursery.cancel_scope.cancel()


async def test_a_server_that_ends_leaves_a_later_servers_socket_alone() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            old_scope = trio.CancelScope()

            async def old_server() -> None:
                with old_scope:
                    await serve_statistics(MOUNTPOINT, lambda: {"who": "old"})

            nursery.start_soon(old_server)
            while not socket_paths(MOUNTPOINT)[0].exists():
                await trio.sleep(0.01)
            # A new mount on the same mount point replaces the socket ...
            await nursery.start(serve_statistics, MOUNTPOINT, lambda: {"who": "new"})
            # ... and the old one ending does not take the new one's away.
            old_scope.cancel()
            await trio.sleep(0.05)
            got = await trio.to_thread.run_sync(read_statistics, MOUNTPOINT, 5.0)
            assert got == {"who": "new"}
            nursery.cancel_scope.cancel()


async def test_a_public_mounts_socket_is_everyones() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            path = await nursery.start(
                functools.partial(serve_statistics, MOUNTPOINT, dict, public=True)
            )
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
            nursery.cancel_scope.cancel()


def test_no_socket_names_where_it_looked(runtime_dir: Path) -> None:
    expected = re.escape(f"no statistics socket for it in {runtime_dir}")
    with pytest.raises(StatisticsUnavailable, match=expected):
        read_statistics(MOUNTPOINT, 1.0)


@contextlib.contextmanager
def plain_listener() -> Iterator[socket.socket]:
    """A listening socket where the mount's statistics socket would be, that nobody
    serves (connections wait in its backlog until the test accepts them)."""
    (path,) = socket_paths(MOUNTPOINT)
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(os.fspath(path))
        sock.listen(1)
        yield sock


def test_a_mount_that_does_not_answer_is_a_timeout() -> None:
    with (
        plain_listener(),
        pytest.raises(StatisticsUnavailable, match=r"did not answer in 0\.2 s"),
    ):
        read_statistics(MOUNTPOINT, 0.2)


def test_an_answer_that_is_not_a_json_object_is_refused() -> None:
    with plain_listener() as server:

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"[1, 2]")

        worker = threading.Thread(target=answer)
        worker.start()
        try:
            with pytest.raises(StatisticsUnavailable, match="not a statistics document"):
                read_statistics(MOUNTPOINT, 5.0)
        finally:
            worker.join(5)


def test_the_mount_point_is_named_with_its_parent_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert mount_key(os.fspath(tmp_path / "link" / "mnt")) == os.fspath(real / "mnt")
    assert socket_paths(os.fspath(tmp_path / "link" / "mnt")) == socket_paths(
        os.fspath(real / "mnt")
    )
    # The mount point itself is never resolved (it is not even looked at).
    assert mount_key(os.fspath(real / "missing")) == os.fspath(real / "missing")

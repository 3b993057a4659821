"""Fixtures for the test-server tests: a running cluster and raw clients.

- ``cluster``: instances A (127.0.0.1) and B (127.0.0.2) on free ports, lease 3 s,
  grace 3 s; file systems a and b on A, c on B.
- ``connect``: ``await connect("A", owner=b"...")`` gives a connected
  :class:`~contrib.testserver.rawclient.RawClient` (its tasks in the test's nursery).
- ``client``: a raw client with a session on A (EXCHANGE_ID, CREATE_SESSION with a back
  channel, RECLAIM_COMPLETE).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from contrib.testserver import Cluster, ClusterConfig, FsSpec, InstanceConfig, open_cluster
from contrib.testserver.rawclient import RawClient
from contrib.testserver.server import EndpointConfig

LEASE = 3
Connect = Callable[..., Awaitable[RawClient]]


def two_instance_config(lease: int = LEASE, grace: float | None = LEASE) -> ClusterConfig:
    return ClusterConfig(
        instances=[
            InstanceConfig("A", [EndpointConfig("127.0.0.1")], lease_time=lease, grace_time=grace),
            InstanceConfig("B", [EndpointConfig("127.0.0.2")], lease_time=lease, grace_time=grace),
        ],
        filesystems=[FsSpec("a"), FsSpec("b"), FsSpec("c", served_by="B")],
        lease_time=lease,
        grace_time=grace,
    )


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with open_cluster(two_instance_config()) as running:
        yield running


def endpoint(cluster: Cluster, name: str, index: int = 0) -> tuple[str, int]:
    ep = cluster.instance(name).endpoints[index]
    return ep.address, ep.port


@pytest.fixture
def connect(cluster: Cluster, nursery: trio.Nursery) -> Connect:
    async def make(name: str = "A", index: int = 0, **kw: Any) -> RawClient:
        host, port = endpoint(cluster, name, index)
        return await RawClient.connect(host, port, nursery, **kw)

    return make


@pytest.fixture
async def client(connect: Connect) -> RawClient:
    c = await connect("A", owner=b"fixture-client")
    await c.establish()
    return c

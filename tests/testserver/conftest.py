"""Fixtures for the test-server tests: a running cluster and raw clients.

- ``cluster``: instances A (127.0.0.1) and B (127.0.0.2) on free ports, lease 3 s,
  grace 3 s; file systems a and b on A, c on B.
- ``connect``: ``await connect("A", owner=b"...")`` gives a connected
  :class:`~contrib.testserver.rawclient.RawClient` (its tasks in the test's nursery).
- ``client``: a raw client with a session on A (EXCHANGE_ID, CREATE_SESSION with a back
  channel, RECLAIM_COMPLETE).
- ``krb5_realm``: the throw-away Kerberos realm of the test session
  (``contrib.krb5.realm_for_tests``; skipped without the MIT tools, failed under CI);
  ``gss_keytab``: one keytab with nfs/localhost, nfs/127.0.0.1 and nfs/127.0.0.2
  (``contrib.testserver.kerberos.cluster_keytab``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from contrib.krb5 import FusenfsRealm, Keytab, realm_for_tests
from contrib.testserver import Cluster, ClusterConfig, FsSpec, InstanceConfig, open_cluster
from contrib.testserver.kerberos import cluster_hosts, cluster_keytab
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


@pytest.fixture(scope="session")
def krb5_realm(request: pytest.FixtureRequest) -> FusenfsRealm:
    """The throw-away realm (contrib.krb5.shared_realm), one per test session."""
    return realm_for_tests(request.config)


@pytest.fixture(scope="session")
def gss_keytab(krb5_realm: FusenfsRealm) -> Keytab:
    """nfs/localhost, nfs/127.0.0.1, nfs/127.0.0.2: every name a client of the two
    instances asks for (the mount source's, the location entries' addresses)."""
    return cluster_keytab(krb5_realm, cluster_hosts(["127.0.0.1", "127.0.0.2"]))

"""A migration-capable NFSv4.1 test server (RFC 8881), for fusenfs and its tests.

Several server instances on loopback addresses share one in-memory model of the
exported file systems; a control API (Python, and a Unix-socket protocol with a CLI)
migrates file systems between them with or without Transparent State Migration, makes
referrals, reboots instances, expires leases or filehandles and changes server
identities, so a client can be tested against every event RFC 8881 section 11 and the
seed 001 sections 4.1.3 and 4.2.1 - 4.2.7 describe.  See README.md in this directory.

Quick start in a test::

    from contrib.testserver import ClusterConfig, open_cluster

    async with open_cluster(ClusterConfig.simple(["127.0.0.1", "127.0.0.2"], ["a"])) as cl:
        port = cl.instance("A").endpoints[0].port
        await cl.migrate("a", to="B")
"""

from contrib.testserver.cluster import (
    Cluster,
    ClusterConfig,
    ControlError,
    FhExpiryReport,
    FsSpec,
    MigrationReport,
    open_cluster,
)
from contrib.testserver.events import Event, EventLog
from contrib.testserver.server import EndpointConfig, InstanceConfig, ServerInstance

__all__ = [
    "Cluster",
    "ClusterConfig",
    "ControlError",
    "EndpointConfig",
    "Event",
    "EventLog",
    "FhExpiryReport",
    "FsSpec",
    "InstanceConfig",
    "MigrationReport",
    "ServerInstance",
    "open_cluster",
]

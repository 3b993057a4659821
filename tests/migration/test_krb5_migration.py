"""Migration of a krb5p mount (issue 13, item 4; "Migration scenarios (TSM and no TSM)
on a krb5p mount of the contrib test server: zero application errors, content intact").

The cluster of the other scenarios (A, B, C on 127.0.0.1-3) accepts RPCSEC_GSS with one
keytab holding nfs/localhost and nfs/127.0.0.1-3 (``contrib.testserver.kerberos``), and
its file system ``a`` allows krb5p only, so anything the client sends for it with
another flavour would fail (NFS4ERR_WRONGSEC) and show as an application error.  The
mount is ``fusenfs mount 127.0.0.1:/export/a -o sec=krb5p`` with the machine credential
host/localhost from its keytab (the application runs as root: its requests go with the
machine credential); its GSS target is ``nfs@127.0.0.1``, and after the move the client
needs a context with ``nfs@127.0.0.2``, the server of the location entry.

Checked: zero application errors, the same inode numbers, every byte the application
wrote read back (``assert_app_unharmed``); the recovery path (TSM: no reclaims; no TSM:
reclaims in B's per-file-system grace); on B a context was created and the client's
requests there were Kerberos ones (the EXCHANGE_ID from host/localhost with
SP4_MACH_CRED, no NFS4ERR_WRONGSEC for ``a`` anywhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from contrib.krb5 import FusenfsRealm, Keytab, realm_for_tests
from contrib.testserver import Cluster, FsSpec, open_cluster
from contrib.testserver.kerberos import cluster_hosts, cluster_keytab
from contrib.testserver.security import GssConfig

from .harness import assert_app_unharmed, last_migration, scenario, three_instances

pytestmark = pytest.mark.fuse

SETTLE = 1.0  # seconds of application I/O after an event
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="session")
def krb5_realm(request: pytest.FixtureRequest) -> FusenfsRealm:
    """The throw-away realm (contrib.krb5.shared_realm), one per test session."""
    return realm_for_tests(request.config)


@pytest.fixture(scope="session")
def cluster_keys(krb5_realm: FusenfsRealm) -> Keytab:
    return cluster_keytab(krb5_realm, cluster_hosts(ADDRESSES))


@pytest.fixture
async def krb5_cluster(cluster_keys: Keytab) -> AsyncIterator[Cluster]:
    config = three_instances()
    config.gss = GssConfig(str(cluster_keys.path), "nfs@localhost")
    config.filesystems = [FsSpec("a", sec="krb5p"), FsSpec("b")]
    async with open_cluster(config) as running:
        yield running


def krb5p_options(realm: FusenfsRealm) -> str:
    assert realm.host_keytab is not None
    return f"sec=krb5p,keytab={realm.host_keytab.path},principal=host/localhost"


async def migrate_krb5p_under_load(
    cluster: Cluster, realm: FusenfsRealm, **options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mount /export/a with sec=krb5p, run the application, move a to B with
    ``options``, let it run on; (app result, client stats) once it is checked unharmed.
    Before the unmount (which destroys them) B must hold the client's contexts."""
    b = cluster.instance("B")
    with trio.fail_after(120):
        async with scenario(cluster, "/export/a", options=krb5p_options(realm)) as sc:
            app = await sc.start_app()
            await trio.sleep(SETTLE)
            await cluster.migrate("a", to="B", **options)
            await trio.sleep(SETTLE)
            result = await app.finish()
            stats = await sc.stats()
            assert b.gss is not None and b.gss.handles, "no RPCSEC_GSS context with B"
            assert stats["mount"]["flavour"] == "krb5p", stats["mount"]
    assert_app_unharmed(result)
    return result, stats


def assert_kerberos_on_b(cluster: Cluster, realm: FusenfsRealm) -> None:
    """The client spoke Kerberos to B: its EXCHANGE_ID there came from the machine
    principal with SP4_MACH_CRED; nobody got NFS4ERR_WRONGSEC for ``a``."""
    machine = f"host/localhost@{realm.realm}"
    exchanges = cluster.events.find(kind="exchange-id", instance="B")
    assert exchanges, "the client never sent EXCHANGE_ID to B"
    assert all(e.details["principal"] == machine for e in exchanges), exchanges
    assert any(e.details["state_protect"] == "SP4_MACH_CRED" for e in exchanges), exchanges
    wrongsec = [e for e in cluster.events.find(kind="wrongsec") if e.details["fs"] == "a"]
    assert not wrongsec, [e.message for e in wrongsec]


async def test_krb5p_mount_migrates_with_tsm(
    krb5_realm: FusenfsRealm, krb5_cluster: Cluster
) -> None:
    _result, stats = await migrate_krb5p_under_load(
        krb5_cluster, krb5_realm, tsm=True, transfer_session=False, merge_client=False
    )
    m = last_migration(stats)
    assert m["ok"] and m["decision"] == "TSM" and m["reclaimed"] == 0, m
    assert m["destination"].startswith("127.0.0.2:")
    assert_kerberos_on_b(krb5_cluster, krb5_realm)


async def test_krb5p_mount_migrates_without_tsm(
    krb5_realm: FusenfsRealm, krb5_cluster: Cluster
) -> None:
    _result, stats = await migrate_krb5p_under_load(krb5_cluster, krb5_realm, tsm=False)
    m = last_migration(stats)
    assert m["ok"] and m["decision"] == "no TSM" and m["reclaimed"] >= 2, m
    assert any("RECLAIM_COMPLETE(rca_one_fs=TRUE)" in e["what"] for e in stats["events"])
    assert_kerberos_on_b(krb5_cluster, krb5_realm)
    reclaims = krb5_cluster.events.find(kind="reclaim", instance="B")
    assert reclaims, "no reclaim reached B"

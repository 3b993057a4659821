"""Keytabs for a test-server cluster in a ``contrib.krb5`` realm (tests, demos).

A client names the server it talks to: ``nfs@HOST`` with HOST as written in the mount
source (``localhost``), and after a migration or referral as the location entry gives
it.  The cluster's location entries are universal addresses (``127.0.0.2.139.19``:
address and port), so a client asks for ``nfs@127.0.0.2``, and the KDC issues a ticket
for ``nfs/127.0.0.2@REALM`` (krb5.conf of the realm: no DNS canonicalisation, no
reverse lookup).  The acceptor of every instance therefore needs a key for each name a
client may use: :func:`cluster_keytab` puts ``nfs/localhost`` and ``nfs/ADDRESS`` for
every address of the cluster into one keytab, creating the principals that are missing.
With the realm's ``ignore_acceptor_hostname = true`` an acceptor configured as
``nfs@localhost`` (host-based) accepts any of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from contrib.krb5 import KerberosError, KerberosRealm, Keytab


def cluster_hosts(addresses: Iterable[str], *, extra: Iterable[str] = ("localhost",)) -> list[str]:
    """The host names clients use for a cluster: ``extra`` (the mount source's name),
    then every address (the location entries' servers), each once, in order."""
    out: list[str] = []
    for host in (*extra, *addresses):
        if host not in out:
            out.append(host)
    return out


def cluster_keytab(
    realm: KerberosRealm,
    hosts: Iterable[str],
    *,
    service: str = "nfs",
    path: str | Path | None = None,
) -> Keytab:
    """One keytab with the keys of ``service/HOST`` for every host in ``hosts``.

    Principals missing from the realm are created with random keys; existing ones
    are extracted as they are (``ktadd -norandkey``), so keytabs made earlier for them
    (the realm's own ``nfs/localhost`` one) stay valid.

    Args:
        path: where to write it (replaced); default ``WORKDIR/SERVICE-cluster.keytab``.

    Returns:
        the keytab, named after the first host's principal.

    Raises:
        KerberosError: kadmin failed.
        ValueError: no hosts.
    """
    names = list(hosts)
    if not names:
        raise ValueError("cluster_keytab needs at least one host name")
    target = Path(path) if path is not None else realm.workdir / f"{service}-cluster.keytab"
    target.unlink(missing_ok=True)
    for host in names:
        principal = realm.principal(f"{service}/{host}")
        try:
            realm.kadmin(f"getprinc {principal}")
        except KerberosError:
            realm.kadmin(f"addprinc -randkey {principal}")
        realm.kadmin(f"ktadd -norandkey -k {target} {principal}")
    return Keytab(target, realm.principal(f"{service}/{names[0]}"))

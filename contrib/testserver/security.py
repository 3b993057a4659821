"""Security of the test server: flavours, RPCSEC_GSS acceptor configuration, principals
mapped to owners (sans-I/O but for reading the keytab).

* **Flavours** (RFC 8881 sections 2.2.1.1 and 2.6): ``sys`` (AUTH_SYS), ``none``
  (AUTH_NONE) and the Kerberos V5 triples ``krb5`` / ``krb5i`` / ``krb5p`` (RPCSEC_GSS
  with the krb5 mechanism and the services none, integrity, privacy).  Each file system
  allows a list of them (``FsSpec.sec``); SECINFO and SECINFO_NO_NAME answer that list
  (``secinfo_entries``), and a request whose flavour is not in it gets
  NFS4ERR_WRONGSEC.  A flavour is one exact triple: krb5p does not satisfy an export
  that allows krb5i only.
* **RPCSEC_GSS** (RFC 2203): :class:`GssConfig` names the keytab and the service
  principal an instance accepts as; ``acceptor_for`` makes the
  ``session.gss.GssAcceptor``.
* **Principals to owners** (RFC 8881 section 5.9, as rpc.svcgssd / gssproxy with
  idmapd do): :class:`IdMap` maps ``user@REALM`` to the local user ``user`` (the
  configured users first, then the password database; unknown: nobody), a machine
  principal ``service/host@REALM`` (``host/...``, ``nfs/...``) to root, and gives
  ``name@domain`` owner strings for users it knows by name (numeric strings for the
  rest, as with AUTH_SYS).
"""

from __future__ import annotations

import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import gssapi
from gssapi.raw.misc import GSSError

from session.gss import KRB5_OID_DER, GssAcceptor, GssCredentialsUnavailable
from session.xdr import nfs4
from session.xdr.const import AUTH_NONE, AUTH_SYS, RPCSEC_GSS, rpc_gss_svc_t

NOBODY: Final = 65534

SYS: Final = "sys"
NONE: Final = "none"
KRB5: Final = "krb5"
KRB5I: Final = "krb5i"
KRB5P: Final = "krb5p"

GSS_FLAVOURS: Final[dict[str, rpc_gss_svc_t]] = {
    KRB5: rpc_gss_svc_t.RPC_GSS_SVC_NONE,
    KRB5I: rpc_gss_svc_t.RPC_GSS_SVC_INTEGRITY,
    KRB5P: rpc_gss_svc_t.RPC_GSS_SVC_PRIVACY,
}
"""The Kerberos flavours by RPCSEC_GSS service (RFC 2203 section 5; the pseudo-flavours
390003 - 390005)."""

FLAVOURS: Final = (KRB5P, KRB5I, KRB5, SYS, NONE)
"""Every flavour this server knows, strongest first (the SECINFO order of the default)."""

PLAIN_FLAVOURS: Final = (SYS, NONE)
"""What a file system allows by default on an instance without RPCSEC_GSS."""


def flavour_of_service(service: int) -> str:
    """The flavour name of an RPCSEC_GSS service (``rpc_gss_svc_t``).

    Raises:
        ValueError: an unknown service.
    """
    for name, svc in GSS_FLAVOURS.items():
        if int(svc) == int(service):
            return name
    raise ValueError(f"unknown RPCSEC_GSS service {service}")


def parse_sec(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"krb5p:krb5i"`` (or ``,``-separated, or a list) -> flavour names in order.

    Raises:
        ValueError: empty, an unknown or a repeated flavour (the message names it).
    """
    items = value.replace(",", ":").split(":") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if name not in FLAVOURS:
            raise ValueError(f"unknown security flavour {item!r} (known: {', '.join(FLAVOURS)})")
        if name in out:
            raise ValueError(f"security flavour {name} given twice")
        out.append(name)
    if not out:
        raise ValueError("an empty list of security flavours")
    return tuple(out)


def secinfo_entries(flavours: Iterable[str]) -> list[nfs4.secinfo4]:
    """SECINFO4resok for ``flavours`` (RFC 8881 section 18.29.2): AUTH_SYS, AUTH_NONE,
    or RPCSEC_GSS with the krb5 OID (DER contents octets), qop 0 and the service."""
    out: list[nfs4.secinfo4] = []
    for name in flavours:
        if name == SYS:
            out.append(nfs4.secinfo4(AUTH_SYS))
        elif name == NONE:
            out.append(nfs4.secinfo4(AUTH_NONE))
        else:
            out.append(
                nfs4.secinfo4(RPCSEC_GSS, nfs4.rpcsec_gss_info(KRB5_OID_DER, 0, GSS_FLAVOURS[name]))
            )
    return out


@dataclass(slots=True)
class GssConfig:
    """RPCSEC_GSS for an instance (RFC 2203; the krb5 mechanism).

    Attributes:
        keytab: the acceptor's keytab, a path or ``FILE:PATH``: a key for each name
            clients ask for (``nfs/localhost``, ``nfs/127.0.0.2``, ...; see the README).
        principal: what the acceptor answers as: host-based ``nfs@localhost`` (with
            krb5.conf's ``ignore_acceptor_hostname`` any ``nfs/...`` key of the keytab
            does), a Kerberos name ``nfs/localhost@REALM`` (exactly that one), or None
            (any key of the keytab).
        seq_window: the sequence window granted to clients, a count (RFC 2203 5.2.3.1).
    """

    keytab: str
    principal: str | None = None
    seq_window: int = 128

    @property
    def keytab_name(self) -> str:
        return self.keytab if ":" in self.keytab.split("/", 1)[0] else f"FILE:{self.keytab}"


def acceptor_credentials(config: GssConfig) -> Any:
    """python-gssapi acceptor credentials for ``config``.

    Raises:
        GssCredentialsUnavailable: the keytab has no usable key for the principal.
    """
    name = None
    if config.principal is not None:
        kind = (
            gssapi.NameType.kerberos_principal
            if "/" in config.principal
            else gssapi.NameType.hostbased_service
        )
        name = gssapi.Name(config.principal, kind)
    try:
        return gssapi.Credentials(name=name, usage="accept", store={"keytab": config.keytab_name})
    except GSSError as exc:
        raise GssCredentialsUnavailable(
            f"no acceptor credentials for {config.principal or 'any principal'} in "
            f"{config.keytab_name}: {exc.gen_message()}"
        ) from None


def acceptor_for(config: GssConfig) -> GssAcceptor:
    """A ``GssAcceptor`` for ``config`` (raises as ``acceptor_credentials``)."""
    return GssAcceptor(acceptor_credentials(config), seq_window=config.seq_window)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a principal is on this server: ``uid``, ``gid`` and how it was mapped."""

    uid: int
    gid: int
    how: str


@dataclass(slots=True)
class IdMap:
    """Names <-> numeric ids (RFC 8881 section 5.9) and GSS principals -> identities.

    Args:
        users: user name -> (uid, gid), consulted before the password database.
        domain: the NFSv4 id domain of ``name@domain`` owner strings.
        realms: the realms whose user principals map to local users (idmapd's
            Local-Realms); empty: every realm.
    """

    users: dict[str, tuple[int, int]] = field(default_factory=dict)
    domain: str = "fusenfs.test"
    realms: frozenset[str] = frozenset()
    _names: dict[int, str] = field(default_factory=dict)
    _groups: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        users: Mapping[str, tuple[int, int]] | None = None,
        domain: str = "fusenfs.test",
        realms: Iterable[str] = (),
    ) -> IdMap:
        idmap = cls(dict(users or {}), domain, frozenset(realms))
        for name, (uid, _) in idmap.users.items():
            idmap._names.setdefault(uid, name)
        return idmap

    def principal(self, principal: str) -> Identity:
        """The identity of a GSS initiator principal.

        ``user@REALM`` -> the user (configured, else the password database, else
        nobody); ``service/host@REALM`` (a machine principal) -> root; a realm outside
        ``realms`` -> nobody.
        """
        name, _, realm = principal.rpartition("@")
        if not name:
            name, realm = principal, ""
        if self.realms and realm not in self.realms:
            return Identity(NOBODY, NOBODY, f"realm {realm} is not local: nobody")
        if "/" in name:
            return Identity(0, 0, f"machine principal {principal}: root")
        known = self.users.get(name)
        if known is not None:
            self._names.setdefault(known[0], name)
            return Identity(known[0], known[1], f"user {name} (configured)")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return Identity(NOBODY, NOBODY, f"no local user {name}: nobody")
        self._names.setdefault(entry.pw_uid, name)
        return Identity(entry.pw_uid, entry.pw_gid, f"local user {name}")

    def owner(self, uid: int) -> str:
        """The owner string of ``uid``: ``name@domain`` for users mapped by name (a
        principal seen, or configured), else the number (as with AUTH_SYS)."""
        name = self._names.get(uid)
        return f"{name}@{self.domain}" if name is not None else str(uid)

    def group(self, gid: int) -> str:
        """The owner_group string of ``gid`` (numeric: groups are not mapped)."""
        name = self._groups.get(gid)
        return f"{name}@{self.domain}" if name is not None else str(gid)

    def uid_of(self, name: str) -> int | None:
        """The uid of a user name this map knows (configured or seen), or None."""
        known = self.users.get(name)
        if known is not None:
            return known[0]
        for uid, seen in self._names.items():
            if seen == name:
                return uid
        return None

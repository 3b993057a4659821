"""One NFSv4.1 server instance: listeners, the COMPOUND executor, sessions, leases.

A :class:`ServerInstance` is one *server* in the sense of RFC 8881 section 2.5: it has
a ``server_owner`` major id, a ``server_scope``, a boot verifier, a client table, the
locking state and a lease clock.  It listens on one or more :class:`Endpoint` s
(loopback address and port).  Endpoints with the same ``so_minor_id`` form one
:class:`Node` and share sessions (session trunking, RFC 8881 section 2.10.5); endpoints
of one instance with different minor ids share client IDs and state but not sessions
(client ID trunking).

The executor (:meth:`ServerInstance.process_compound`) implements RFC 8881 section
16.2.3 (COMPOUND processing: stop at the first failure, OP_ILLEGAL, NOTSUPP, SEQUENCE
first, sessionless operations alone) and section 2.10.6 (SEQUENCE: slots, the reply
cache answering a retry with the same bytes, NFS4ERR_RETRY_UNCACHED_REP,
NFS4ERR_SEQ_MISORDERED, NFS4ERR_BADSLOT, NFS4ERR_BADSESSION, ``sr_status_flags``).
Operation handlers are in ``ops.py``.

Background tasks per instance (in the cluster's nursery): one listener task per
endpoint, one task per connection (``session.transport.serve_connection``), the lease
reaper (lease expiry, delegation-recall timeouts, grace period ends) and CB_RECALL
sends on the back channel (``ServerConnection.callback``).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from contrib.testserver import ops
from contrib.testserver.clients import (
    ClientRecord,
    ClientTable,
    GracePeriod,
    Principal,
    SeqDecision,
    Session,
    Slot,
    args_digest,
    check_sequence,
    next_session_serial,
    sessionid_for,
)
from contrib.testserver.model import FileSystem, FsError, Model
from contrib.testserver.ops import Compound, FhRef, OpStatus
from contrib.testserver.security import (
    FLAVOURS,
    NONE,
    PLAIN_FLAVOURS,
    SYS,
    GssConfig,
    IdMap,
    acceptor_for,
    flavour_of_service,
)
from contrib.testserver.state import Delegation, StateTable
from session.errors import NFSClientError, XdrError
from session.gss import GssAccepted, GssAcceptor, GssError
from session.rpc import (
    NULL_AUTH,
    AuthNone,
    AuthSys,
    Credential,
    RpcCall,
    accept_stat,
    auth_flavor,
    auth_stat,
    authsys_parms,
    encode_accepted_reply,
    encode_rejected_reply,
    reject_stat,
)
from session.transport import ServerConnection
from session.xdr import cb, nfs4
from session.xdr.codec import Decoder, Encoder, Packable
from session.xdr.const import (
    AUTH_NONE,
    AUTH_SYS,
    CB_COMPOUND,
    FSLI4BX_CLCHANGE,
    FSLI4BX_CLFILEID,
    FSLI4BX_CLHANDLE,
    FSLI4BX_CLREADDIR,
    FSLI4BX_CLSIMUL,
    FSLI4BX_CLWRITEVER,
    FSLI4BX_GFLAGS,
    FSLI4GF_ABSENT,
    FSLI4GF_CUR_REQ,
    FSLI4GF_WRITABLE,
    NFS4_PROGRAM,
    NFS_CB,
    NFS_V4,
    NFSPROC4_COMPOUND,
    NFSPROC4_NULL,
    SEQ4_STATUS_ADMIN_STATE_REVOKED,
    SEQ4_STATUS_CB_PATH_DOWN,
    SEQ4_STATUS_CB_PATH_DOWN_SESSION,
    SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED,
    SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED,
    SEQ4_STATUS_LEASE_MOVED,
    SEQ4_STATUS_RECALLABLE_STATE_REVOKED,
    fs4_status_type,
    nfs_opnum4,
    nfsstat4,
    rpc_gss_svc_t,
)
from session.xdr.fattr import bitmap4_from, decode_fattr4

if TYPE_CHECKING:
    from contrib.testserver.cluster import Cluster

log = logging.getLogger("contrib.testserver")
S = nfsstat4
OP = nfs_opnum4

VALID_OPNUMS: Final = frozenset(
    int(m) for m in nfs_opnum4 if m.name.startswith("OP_") and m != nfs_opnum4.OP_ILLEGAL
)
"""Operation numbers of NFSv4.1 (RFC 8881 section 16.2.1); anything else is OP_ILLEGAL."""

FSLI4_INFO_LEN: Final = 12
"""Bytes of fs_locations_server4.fls_info this server fills (FSLI4BX_* up to WRITEORDER)."""


@dataclass(slots=True)
class EndpointConfig:
    """Where an instance listens: a loopback ``address`` and ``port`` (0: any free one),
    and the ``so_minor_id`` it reports there (RFC 8881 section 2.5)."""

    address: str
    port: int = 0
    so_minor_id: int = 0


@dataclass(slots=True)
class InstanceConfig:
    """How to build a :class:`ServerInstance`.

    Attributes:
        name: short name ("A").
        endpoints: where it listens.
        so_major_id: server_owner.so_major_id (default: derived from the name).
        server_scope: eir_server_scope (default: the cluster's common scope).
        lease_time: seconds (attribute lease_time, RFC 8881 section 5.8.1.11).
        grace_time: seconds of a grace period (default: lease_time).
        delegations: grant delegations when not declined (read, and write unless
            ``write_delegations`` is off).
        lock_splitting: POSIX lock semantics; False makes sub-range LOCK/LOCKU answer
            NFS4ERR_LOCK_RANGE like servers that cannot split locks.
        max_io: maxread / maxwrite in bytes.
        grace_lift_early: end a grace period once every reclaimer sent RECLAIM_COMPLETE.
        write_delegations: grant write delegations too (``delegations`` must be on).
        gss: accept RPCSEC_GSS with this keytab and principal (``security.GssConfig``);
            None: AUTH_SYS and AUTH_NONE only.
        cb_timeout: seconds a CB_GETATTR or CB_RECALL_ANY may take (at most half a
            lease); a CB_GETATTR not answered in time makes the server recall.
        max_write_count: a WRITE writes at most this many bytes and says so in its
            count (a short WRITE, RFC 8881 section 18.32.3: the client must send the
            rest); None: all of it.
    """

    name: str
    endpoints: list[EndpointConfig]
    so_major_id: bytes | None = None
    server_scope: bytes | None = None
    lease_time: int = 90
    grace_time: float | None = None
    delegations: bool = True
    lock_splitting: bool = True
    max_io: int = 1024 * 1024
    grace_lift_early: bool = True
    write_delegations: bool = True
    cb_timeout: float = 2.0
    gss: GssConfig | None = None
    max_write_count: int | None = None


class Node:
    """The sessions of one (instance, so_minor_id): addresses sharing them are
    session-trunkable (RFC 8881 section 2.10.5)."""

    def __init__(self, so_minor_id: int) -> None:
        self.so_minor_id = so_minor_id
        self.sessions: dict[bytes, Session] = {}


class Endpoint:
    """One listening address of an instance."""

    def __init__(self, instance: ServerInstance, config: EndpointConfig) -> None:
        self.instance = instance
        self.address = config.address
        self.port = config.port
        self.so_minor_id = config.so_minor_id
        self.connections: set[ServerConnection] = set()
        self.listeners: list[trio.SocketListener] = []
        #: File systems this address no longer serves although its instance does
        #: (:meth:`Cluster.retire_address`): here they are absent, NFS4ERR_MOVED.
        self.retired: set[str] = set()

    def __repr__(self) -> str:
        return f"<Endpoint {self.instance.name} {self.address}:{self.port}>"

    @property
    def node(self) -> Node:
        return self.instance.node(self.so_minor_id)

    def uaddr(self) -> str:
        """The address as a location server string: "ADDR" for port 2049, else the
        RFC 5665 universal address "ADDR.P1.P2" that carries the port."""
        return universal_address(self.address, self.port)

    # -- the instance as seen at this address (``attrs.AttrProvider``) ----------------
    @property
    def model(self) -> Model:
        return self.instance.model

    @property
    def lease_time(self) -> int:
        return self.instance.lease_time

    @property
    def max_io(self) -> int:
        return self.instance.max_io

    def fs_locations(self, fs: FileSystem) -> nfs4.fs_locations4:
        return self.instance.fs_locations(fs)

    def fs_locations_info(self, fs: FileSystem) -> nfs4.fs_locations_info4:
        return self.instance.fs_locations_info(fs)

    def fs_status(self, fs: FileSystem) -> nfs4.fs4_status:
        return self.instance.fs_status(fs, self)


def universal_address(address: str, port: int) -> str:
    if port == 2049:
        return address
    return f"{address}.{port >> 8}.{port & 0xFF}"


@dataclass(slots=True)
class RawResult:
    """Already-encoded result bytes (a cached SEQUENCE4res in an uncached replay)."""

    data: bytes

    def pack(self, enc: Encoder) -> None:
        enc.pack_fopaque(len(self.data), self.data)


def encode_compound_res(
    status: nfsstat4, tag: bytes, results: Iterable[tuple[int, Packable]]
) -> bytes:
    """COMPOUND4res (RFC 8881 section 16.2): status, tag, then each (opnum, result)."""
    enc = Encoder()
    items = list(results)
    enc.int32(status)
    enc.opaque(tag)
    enc.uint32(len(items))
    for opnum, res in items:
        enc.int32(opnum)
        res.pack(enc)
    return enc.getvalue()


@dataclass(slots=True)
class _CacheTarget:
    slot: Slot
    cachethis: bool
    sequence_bytes: bytes = b""


RPC_REPLY_HEADER: Final = 24
"""Bytes of an accepted RPC reply header with an AUTH_NONE verifier (xid, msg_type,
reply_stat, verifier flavor and length, accept_stat): ca_maxresponsesize counts them
(RFC 8881 section 18.36.3: sizes include the RPC headers, not the record mark)."""

SEQUENCE_RESULT_BYTES: Final = 4 + 40
"""opnum + an NFS4_OK SEQUENCE4res (status, sessionid, four counters, status flags)."""

ERROR_RESULT_BYTES: Final = 8
"""opnum + status: the smallest result, room for which is kept for the next operation."""

READ_ONLY_OPS: Final = frozenset(
    {
        OP.OP_ACCESS,
        OP.OP_GETATTR,
        OP.OP_GETFH,
        OP.OP_LOOKUP,
        OP.OP_LOOKUPP,
        OP.OP_NVERIFY,
        OP.OP_VERIFY,
        OP.OP_PUTFH,
        OP.OP_PUTPUBFH,
        OP.OP_PUTROOTFH,
        OP.OP_SAVEFH,
        OP.OP_RESTOREFH,
        OP.OP_READ,
        OP.OP_READDIR,
        OP.OP_READLINK,
        OP.OP_SECINFO,
        OP.OP_SECINFO_NO_NAME,
        OP.OP_TEST_STATEID,
        OP.OP_LOCKT,
    }
)
"""Operations that change nothing on the server: executed, then their result is measured
against the reply limits.  Every other operation is measured before it runs, by the
largest result it can have (``MAX_RESULT_BYTES``), and not run if that may not fit: an
operation that changed state must not have its result replaced by an error."""

MAX_RESULT_BYTES: Final = {
    OP.OP_CLOSE: 24,
    OP.OP_COMMIT: 16,
    OP.OP_CREATE: 56,
    OP.OP_DELEGRETURN: 8,
    OP.OP_FREE_STATEID: 8,
    OP.OP_LINK: 28,
    OP.OP_LOCKU: 24,
    OP.OP_OPEN_DOWNGRADE: 24,
    OP.OP_RECLAIM_COMPLETE: 8,
    OP.OP_REMOVE: 28,
    OP.OP_RENAME: 48,
    OP.OP_SETATTR: 32,
    OP.OP_WRITE: 28,
    OP.OP_DESTROY_SESSION: 8,
    OP.OP_DESTROY_CLIENTID: 8,
    OP.OP_BACKCHANNEL_CTL: 8,
    OP.OP_BIND_CONN_TO_SESSION: 32,
    OP.OP_CREATE_SESSION: 128,
}
"""Upper bounds, bytes, of an operation's encoded result without the opnum, for the ones
whose size does not depend on the file system (others, OPEN and LOCK with an owner of up
to 1024 bytes, EXCHANGE_ID with its owner and scope, use ``DEFAULT_MAX_RESULT_BYTES``)."""

DEFAULT_MAX_RESULT_BYTES: Final = 2600


def request_size(call: RpcCall) -> int:
    """Bytes of the RPC call as ca_maxrequestsize counts them: the call header with its
    credential and verifier, and the arguments (RFC 8881 section 18.36.3)."""

    def auth(body: bytes) -> int:
        return 8 + (len(body) + 3) // 4 * 4

    return 24 + auth(call.cred.body) + auth(call.verf.body) + len(call.args)


def compound_header_size(tag: bytes) -> int:
    """RPC reply header + COMPOUND4res status, tag and result count, bytes."""
    return RPC_REPLY_HEADER + 4 + 4 + (len(tag) + 3) // 4 * 4 + 4


@dataclass(slots=True)
class _ReplyLimit:
    """How large this COMPOUND's reply may grow (RFC 8881 section 2.10.6.4).

    Attributes:
        size: bytes, the RPC header included: ca_maxresponsesize, or with sa_cachethis
            ca_maxresponsesize_cached when that is smaller.
        status: what an operation that would not fit gets: NFS4ERR_REP_TOO_BIG, or
            NFS4ERR_REP_TOO_BIG_TO_CACHE when the cache limit is the one exceeded.
    """

    size: int
    status: nfsstat4


def reply_limit(fore: nfs4.channel_attrs4, cachethis: bool) -> _ReplyLimit:
    if cachethis and fore.ca_maxresponsesize_cached < fore.ca_maxresponsesize:
        return _ReplyLimit(fore.ca_maxresponsesize_cached, S.NFS4ERR_REP_TOO_BIG_TO_CACHE)
    return _ReplyLimit(fore.ca_maxresponsesize, S.NFS4ERR_REP_TOO_BIG)


class CallbackError(Exception):
    """A callback that cannot be sent (no back channel)."""


GSS_VERIFIER_OVERHEAD: Final = 32
"""Bytes an RPCSEC_GSS reply verifier (a krb5 MIC, 28 bytes with AES) adds to a reply
beyond the AUTH_NONE one ``RPC_REPLY_HEADER`` counts (rounded up)."""

GSS_SERVICE_OVERHEAD: Final = {
    rpc_gss_svc_t.RPC_GSS_SVC_NONE: 0,
    rpc_gss_svc_t.RPC_GSS_SVC_INTEGRITY: 48,
    rpc_gss_svc_t.RPC_GSS_SVC_PRIVACY: 80,
}
"""Bytes the protection of the results adds (rpc_gss_integ_data: length, seq_num and
the MIC; rpc_gss_priv_data: length, seq_num and the wrap token's header, confounder and
checksum), rounded up: counted against ca_maxresponsesize (RFC 8881 section 2.10.6.4)."""


@dataclass(slots=True)
class Credentials:
    """Who sent a call and how (RFC 5531 section 8.2, RFC 2203).

    Attributes:
        principal: ("sys", uid), ("none", 0) or ("gss", "alice@REALM").
        uid, gid, gids: the identity file access is checked with.
        flavour: "sys", "none", "krb5", "krb5i" or "krb5p" (``security.FLAVOURS``).
        reply_overhead: bytes the flavour adds to every reply (verifier, protection).
        how: how a GSS principal was mapped (``security.IdMap.principal``).
    """

    principal: Principal
    uid: int
    gid: int
    gids: list[int] = field(default_factory=list)
    flavour: str = SYS
    reply_overhead: int = 0
    how: str = ""


def parse_credential(call: RpcCall) -> Credentials | None:
    """The caller from an AUTH_SYS or AUTH_NONE credential; None for a flavor this
    function does not take (RPCSEC_GSS goes through the instance's acceptor)."""
    flavor = call.cred.flavor
    if flavor == auth_flavor.AUTH_SYS:
        try:
            parms = authsys_parms.unpack(Decoder(call.cred.body))
        except NFSClientError:
            return None
        return Credentials(("sys", parms.uid), parms.uid, parms.gid, list(parms.gids), SYS)
    if flavor == auth_flavor.AUTH_NONE:
        return Credentials(("none", 0), 65534, 65534, [], NONE)
    return None


def gss_credentials(accepted: GssAccepted, idmap: IdMap) -> Credentials:
    """The caller of an RPCSEC_GSS call the acceptor verified: its principal mapped to
    a local identity (``IdMap.principal``: user@REALM -> that user, a machine
    principal -> root), the flavour its service makes (krb5, krb5i, krb5p)."""
    identity = idmap.principal(accepted.principal)
    service = rpc_gss_svc_t(accepted.service)
    return Credentials(
        ("gss", accepted.principal),
        identity.uid,
        identity.gid,
        [],
        flavour_of_service(service),
        GSS_VERIFIER_OVERHEAD + GSS_SERVICE_OVERHEAD.get(service, 80),
        identity.how,
    )


class ServerInstance:
    """One NFSv4.1 server of the cluster (see the module docstring)."""

    def __init__(self, cluster: Cluster, index: int, config: InstanceConfig) -> None:
        self.cluster = cluster
        self.index = index
        self.config = config
        self.name = config.name
        self.so_major_id = config.so_major_id or f"fusenfs-testserver/{config.name}".encode()
        self.server_scope = config.server_scope or cluster.server_scope
        self.endpoints = [Endpoint(self, ep) for ep in config.endpoints]
        self._nodes: dict[int, Node] = {}
        self.boot_count = 0
        self.boot_verifier = b""
        self.clients = self._new_client_table()
        self.state = StateTable()
        self.graces: list[GracePeriod] = []
        #: File systems this instance served and that migrated away (absent here, not
        #: referrals: fs_status.fss_type is not STATUS4_REFERRAL).
        self.migrated_away: set[str] = set()
        self._moved_reported: set[tuple[int, str]] = set()
        self._fhexpired_reported: set[tuple[int, str, int, str]] = set()
        self._cb_locks: dict[bytes, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        #: The RPCSEC_GSS acceptor (made by ``start`` from ``config.gss``).
        self.gss: GssAcceptor | None = None
        self._new_boot()

    def __repr__(self) -> str:
        return f"<ServerInstance {self.name} {[ep.address for ep in self.endpoints]}>"

    # -- identity ----------------------------------------------------------------------
    def _new_boot(self) -> None:
        self.boot_count += 1
        self.boot_verifier = struct.pack(">I", int(time.time()) & 0xFFFFFFFF) + os.urandom(4)
        self.clients = self._new_client_table()

    def _new_client_table(self) -> ClientTable:
        prefix = ((self.index & 0xFF) << 24) | (self.boot_count & 0xFFFF) << 8 | 0x5A
        return ClientTable(prefix)

    def node(self, so_minor_id: int) -> Node:
        node = self._nodes.get(so_minor_id)
        if node is None:
            node = Node(so_minor_id)
            self._nodes[so_minor_id] = node
        return node

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    @property
    def primary_node(self) -> Node:
        return self.endpoints[0].node

    def server_owner(self, node: Node) -> nfs4.server_owner4:
        return nfs4.server_owner4(so_minor_id=node.so_minor_id, so_major_id=self.so_major_id)

    @property
    def model(self) -> Model:
        return self.cluster.model

    @property
    def lease_time(self) -> int:
        return self.config.lease_time

    @property
    def grace_time(self) -> float:
        return self.config.grace_time if self.config.grace_time is not None else self.lease_time

    @property
    def max_io(self) -> int:
        return self.config.max_io

    @property
    def write_verifier(self) -> bytes:
        """WRITE / COMMIT verifier: the boot verifier (RFC 8881 section 18.32.3)."""
        return self.boot_verifier

    def now(self) -> float:
        return trio.current_time()

    def event(self, kind: str, message: str, **details: Any) -> None:
        self.cluster.events.emit(self.name, kind, message, **details)

    # -- presence, locations (RFC 8881 sections 11.3, 11.16 - 11.18) -------------------
    def present(self, fs: FileSystem, ep: Endpoint | None = None) -> bool:
        """The file system is served here (the pseudo-fs always is); with ``ep``, at
        that address too (it may have been retired for the file system there)."""
        if fs.index == 0:
            return True
        return self.cluster.location_of(fs.name) is self and (
            ep is None or fs.name not in ep.retired
        )

    def fs_root(self, fs: FileSystem) -> list[str]:
        """The file system's path on this server (fs_locations4.fs_root): where it is
        mounted, or for a referral the junction inside a file system present here."""
        if not self.present(fs):
            for path, holder in fs.aliases:
                if self.present(holder):
                    return list(path)
        return self.model.path_of(fs)

    def fs_locations(self, fs: FileSystem) -> nfs4.fs_locations4:
        """fs_locations (RFC 8881 section 11.16): the serving instance's addresses as one
        location, then any extra location entries configured for the file system."""
        path = self.model.path_of(fs)
        locations = [
            nfs4.fs_location4(server=list(servers), rootpath=path)
            for servers in self.cluster.location_entries(fs)
        ]
        return nfs4.fs_locations4(fs_root=self.fs_root(fs), locations=locations)

    def fs_locations_info(self, fs: FileSystem) -> nfs4.fs_locations_info4:
        """fs_locations_info (RFC 8881 section 11.17): one item per location entry; the
        class bytes say fileids, change attributes and READDIR cookies stay valid across
        all locations, write verifiers do not, and filehandles do where the handle
        class (``Cluster.handle_class``: the filehandle epoch the location serves) is
        the same (RFC 8881 section 11.11.2)."""
        path = self.model.path_of(fs)
        items: list[nfs4.fs_locations_item4] = []
        serving = self.cluster.location_of(fs.name)
        for servers in self.cluster.location_entries(fs):
            entries = []
            for server in servers:
                owner = self.cluster.instance_for_uaddr(server)
                info = bytearray(FSLI4_INFO_LEN)
                flags = 0
                if not fs.read_only and fs.index != 0:
                    flags |= FSLI4GF_WRITABLE
                if owner is self:
                    flags |= FSLI4GF_CUR_REQ
                if owner is not None and owner is not serving and fs.index != 0:
                    flags |= FSLI4GF_ABSENT
                info[FSLI4BX_GFLAGS] = flags
                cls = (owner.index + 1) if owner is not None else 0xFF
                info[FSLI4BX_CLSIMUL] = cls
                info[FSLI4BX_CLHANDLE] = self.cluster.handle_class(fs, owner)
                info[FSLI4BX_CLFILEID] = 1
                info[FSLI4BX_CLWRITEVER] = cls
                info[FSLI4BX_CLCHANGE] = 1
                info[FSLI4BX_CLREADDIR] = 1
                entries.append(nfs4.fs_locations_server4(0, bytes(info), server))
            items.append(nfs4.fs_locations_item4(entries, path))
        return nfs4.fs_locations_info4(0, 0, self.fs_root(fs), items)

    def fs_status(self, fs: FileSystem, ep: Endpoint | None = None) -> nfs4.fs4_status:
        """fs_status (RFC 8881 section 11.18): absent here (at ``ep``) or not; an absent
        file system that migrated away, or that this instance serves at other addresses
        only, is not STATUS4_REFERRAL (seed 001 sections 4.2.4, 4.2.6)."""
        absent = not self.present(fs, ep)
        if absent and fs.name not in self.migrated_away and not self.present(fs):
            kind = fs4_status_type.STATUS4_REFERRAL
        elif fs.read_only or fs.index == 0:
            kind = fs4_status_type.STATUS4_FIXED
        else:
            kind = fs4_status_type.STATUS4_WRITABLE
        return nfs4.fs4_status(
            fss_absent=absent,
            fss_type=kind,
            fss_source="",
            fss_current="",
            fss_age=0,
            fss_version=nfs4.nfstime4(0, 0),
        )

    # -- security flavours, RFC 8881 section 2.6 -----------------------------------------
    def flavours(self, fs: FileSystem) -> tuple[str, ...]:
        """The flavours ``fs`` allows at this instance, in SECINFO order: its own list
        (``FsSpec.sec``) without the Kerberos ones if this instance has no RPCSEC_GSS,
        or by default every flavour the instance accepts (krb5p, krb5i, krb5 with
        ``config.gss``, then sys, none)."""
        accepted = FLAVOURS if self.config.gss is not None else PLAIN_FLAVOURS
        if fs.sec is None:
            return accepted
        return tuple(f for f in fs.sec if f in accepted)

    def note_wrongsec(
        self,
        client: ClientRecord | None,
        fs: FileSystem,
        flavour: str,
        allowed: tuple[str, ...],
    ) -> None:
        """Log the first NFS4ERR_WRONGSEC a (client, file system, flavour) gets."""
        key = (client.clientid if client else 0, f"wrongsec:{fs.name}:{flavour}")
        if key in self._moved_reported:
            return
        self._moved_reported.add(key)
        self.event(
            "wrongsec",
            f"NFS4ERR_WRONGSEC to client {key[0]:#x}: {flavour} is not one of the flavours "
            f"{fs.name} allows ({', '.join(allowed) or 'none'}); SECINFO tells them "
            "(RFC 8881 sections 2.6.3.1, 18.29)",
            clientid=key[0],
            fs=fs.name,
            flavour=flavour,
            allowed=list(allowed),
        )

    def note_moved(self, client: ClientRecord | None, fs: FileSystem) -> None:
        """Log the first NFS4ERR_MOVED for a (client, file system)."""
        key = (client.clientid if client else 0, fs.name)
        if key in self._moved_reported:
            return
        self._moved_reported.add(key)
        if self.present(fs):
            kind = "address retired"
        elif fs.name in self.migrated_away:
            kind = "migrated"
        else:
            kind = "referral"
        where = self.cluster.location_of(fs.name)
        self.event(
            "moved",
            f"NFS4ERR_MOVED to client {key[0]:#x} for file system {fs.name} "
            f"({kind}; now on {where.name if where else 'nowhere'}) (RFC 8881 section 11.3)",
            clientid=key[0],
            fs=fs.name,
        )

    def note_fhexpired(
        self, client: ClientRecord | None, fs: FileSystem, epoch: int, why: str
    ) -> None:
        """Log the first NFS4ERR_FHEXPIRED for a (client, file system, old epoch, cause)."""
        key = (client.clientid if client else 0, fs.name, epoch, why)
        if key in self._fhexpired_reported:
            return
        self._fhexpired_reported.add(key)
        self.event(
            "fhexpired",
            f"NFS4ERR_FHEXPIRED to client {key[0]:#x} for a filehandle of {fs.name}: {why} "
            f"(current epoch {fs.fh_epoch}); a lookup by name gives the new one "
            "(RFC 8881 section 4.2.3)",
            clientid=key[0],
            fs=fs.name,
            epoch=epoch,
        )

    def note_grace_before_reclaim_complete(self, client: ClientRecord) -> None:
        """Log the first NFS4ERR_GRACE a client gets for locking before its global
        RECLAIM_COMPLETE (RFC 8881 section 18.51.3)."""
        key = (client.clientid, "reclaim-complete")
        if key in self._moved_reported:
            return
        self._moved_reported.add(key)
        self.event(
            "grace-before-reclaim-complete",
            f"NFS4ERR_GRACE to client {client.clientid:#x}: a non-reclaim OPEN or LOCK before "
            "its RECLAIM_COMPLETE (RFC 8881 section 18.51.3)",
            clientid=client.clientid,
        )

    def note_locations_fetched(self, client: ClientRecord | None, fs: FileSystem) -> None:
        """A location attribute of ``fs`` was fetched: clear its part of LEASE_MOVED
        (RFC 8881 section 18.46.3; seed 001 section 4.2.5)."""
        if client is None or fs.name not in client.lease_moved:
            return
        client.lease_moved.discard(fs.name)
        self.event(
            "lease-moved-cleared",
            f"client {client.clientid:#x} fetched the locations of {fs.name}; "
            + (
                "SEQ4_STATUS_LEASE_MOVED now clear"
                if not client.lease_moved
                else f"still pending for {sorted(client.lease_moved)}"
            ),
            clientid=client.clientid,
            fs=fs.name,
            pending=sorted(client.lease_moved),
        )

    # -- grace periods, RFC 8881 section 8.4.2 and seed 001 sections 4.2.1, 4.2.3 ------
    def graces_for(self, fs_name: str) -> list[GracePeriod]:
        now = self.now()
        return [g for g in self.graces if (g.fs is None or g.fs == fs_name) and not g.over(now)]

    def active_grace(self, fs_name: str) -> GracePeriod | None:
        found = self.graces_for(fs_name)
        return found[0] if found else None

    def reclaim_grace(self, fs_name: str, co_ownerid: bytes) -> GracePeriod | None:
        now = self.now()
        for grace in self.graces_for(fs_name):
            if grace.may_reclaim(co_ownerid, now):
                return grace
        return None

    def reclaim_complete_global(self, client: ClientRecord) -> nfsstat4:
        """RECLAIM_COMPLETE with rca_one_fs FALSE (RFC 8881 section 18.51.3)."""
        if client.reclaim_complete:
            return S.NFS4ERR_COMPLETE_ALREADY
        client.reclaim_complete = True
        for grace in self.graces:
            if grace.fs is None and client.co_ownerid in grace.reclaimers:
                grace.reclaimers[client.co_ownerid] = True
                self.event(
                    "reclaim-complete",
                    f"client {client.clientid:#x} finished reclaiming: {grace.describe()}",
                    clientid=client.clientid,
                )
        self._end_graces()
        return S.NFS4_OK

    def reclaim_complete_fs(self, client: ClientRecord, fs_name: str) -> nfsstat4:
        """RECLAIM_COMPLETE with rca_one_fs TRUE: ends the client's reclaims in the
        per-FS grace period of a migrated file system (RFC 8881 section 18.51.3, seed 001
        section 4.2.3); a second one for the same file system is COMPLETE_ALREADY."""
        if fs_name in client.reclaim_complete_fs:
            return S.NFS4ERR_COMPLETE_ALREADY
        client.reclaim_complete_fs.add(fs_name)
        for grace in self.graces:
            if grace.fs == fs_name and client.co_ownerid in grace.reclaimers:
                grace.reclaimers[client.co_ownerid] = True
                self.event(
                    "reclaim-complete",
                    f"client {client.clientid:#x} sent RECLAIM_COMPLETE(rca_one_fs) for "
                    f"{fs_name}: {grace.describe()}",
                    clientid=client.clientid,
                    fs=fs_name,
                )
        self._end_graces()
        return S.NFS4_OK

    def start_grace(
        self, fs_name: str | None, reclaimers: Iterable[bytes], lost: Iterable[Any] = ()
    ) -> GracePeriod:
        grace = GracePeriod(
            fs=fs_name,
            ends_at=self.now() + self.grace_time,
            reclaimers={co: False for co in reclaimers},
            lost=list(lost),
            lift_early=self.config.grace_lift_early,
        )
        self.graces = [g for g in self.graces if g.fs != fs_name]
        self.graces.append(grace)
        if fs_name is not None:
            self.fs_arrived(fs_name)
        self.event(
            "grace-start",
            f"{grace.describe()} for {self.grace_time:g} s; "
            f"{len(grace.lost)} lock(s) known lost will be refused "
            f"(RFC 8881 section 8.4.2.1, seed 001 section 4.2.1)",
            fs=fs_name,
            reclaimers=len(grace.reclaimers),
        )
        self._end_graces()
        return grace

    def fs_arrived(self, fs_name: str) -> None:
        """A file system migrated here: its RECLAIM_COMPLETE(rca_one_fs) is due again."""
        for record in self.clients:
            record.reclaim_complete_fs.discard(fs_name)

    def _end_graces(self) -> None:
        now = self.now()
        for grace in list(self.graces):
            if grace.over(now):
                self.graces.remove(grace)
                why = "all reclaimers done" if all(grace.reclaimers.values()) else "timed out"
                self.event("grace-end", f"{grace.describe()} ended ({why})", fs=grace.fs)
                if grace.fs is not None:
                    self._forget_unlinked(grace.fs)

    def _forget_unlinked(self, fs_name: str) -> None:
        fs = self.model.filesystems.get(fs_name)
        if fs is None:
            return
        for inode in list(fs.inodes.values()):
            if inode.unlinked and not self.state.opens_on((fs_name, inode.fileid)):
                fs.forget_if_unlinked(inode)

    # -- clients and sessions ----------------------------------------------------------
    def new_session(
        self,
        record: ClientRecord,
        node: Node,
        fore: nfs4.channel_attrs4,
        back: nfs4.channel_attrs4,
        flags: int,
        args: nfs4.CREATE_SESSION4args,
    ) -> Session:
        sessionid = sessionid_for(record.clientid, next_session_serial())
        session = Session(
            sessionid=sessionid,
            clientid=record.clientid,
            fore=fore,
            back=back,
            flags=flags,
            cb_program=args.csa_cb_program,
            cb_sec_parms=list(args.csa_sec_parms),
            slots=[Slot() for _ in range(fore.ca_maxrequests)],
        )
        node.sessions[sessionid] = session
        record.sessions[sessionid] = session
        return session

    def confirm_client(self, record: ClientRecord) -> None:
        """CREATE_SESSION confirmed ``record``: an older confirmed record of the same
        owner (a restarted client, RFC 8881 section 18.35.4 case 4) goes with its state."""
        old = self.clients.confirmed_for(record.co_ownerid)
        record.confirmed = True
        if old is not None and old is not record:
            self.destroy_client(old, reason=f"replaced by client ID {record.clientid:#x}")
        self.event(
            "client-confirmed",
            f"client ID {record.clientid:#x} of {record.owner_text()} confirmed",
            clientid=record.clientid,
        )

    def destroy_session(self, session: Session, node: Node | None, reason: str) -> None:
        for n in [node] if node is not None else self.nodes:
            if n is not None:
                n.sessions.pop(session.sessionid, None)
        record = self.clients.get(session.clientid)
        if record is not None:
            record.sessions.pop(session.sessionid, None)
        self._cb_locks.pop(session.sessionid, None)
        self.event(
            "destroy-session",
            f"session {session.sessionid.hex()} destroyed ({reason})",
            sessionid=session.sessionid.hex(),
        )

    def destroy_client(self, record: ClientRecord, reason: str) -> None:
        for session in list(record.sessions.values()):
            for node in self.nodes:
                node.sessions.pop(session.sessionid, None)
        record.sessions.clear()
        for st in self.state.for_client(record.clientid):
            self.state.remove(st)
            self._after_release(st.fs, st.fileid)
        self.clients.remove(record)
        self.event(
            "client-destroyed",
            f"client ID {record.clientid:#x} of {record.owner_text()} destroyed ({reason})",
            clientid=record.clientid,
        )

    def status_flags(self, client: ClientRecord, session: Session) -> int:
        """sr_status_flags for a SEQUENCE of ``client`` (RFC 8881 section 18.46.3)."""
        flags = 0
        revoked = self.state.revoked_for_client(client.clientid)
        if any(r.revoked == S.NFS4ERR_EXPIRED for r in revoked):
            if self.state.valid_for_client(client.clientid):
                flags |= SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED
            else:
                flags |= SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED
        if any(r.revoked == S.NFS4ERR_ADMIN_REVOKED for r in revoked):
            flags |= SEQ4_STATUS_ADMIN_STATE_REVOKED
        if any(r.revoked == S.NFS4ERR_DELEG_REVOKED for r in revoked):
            flags |= SEQ4_STATUS_RECALLABLE_STATE_REVOKED
        if client.lease_moved:
            flags |= SEQ4_STATUS_LEASE_MOVED
        has_delegations = any(
            isinstance(st, Delegation) for st in self.state.valid_for_client(client.clientid)
        )
        if has_delegations:
            if session.backchannel() is None:
                flags |= SEQ4_STATUS_CB_PATH_DOWN_SESSION
            if self.backchannel_for(client) is None:
                flags |= SEQ4_STATUS_CB_PATH_DOWN
        return flags

    def backchannel_for(self, client: ClientRecord) -> tuple[Session, ServerConnection] | None:
        for session in client.sessions.values():
            conn = session.backchannel()
            if conn is not None and isinstance(conn, ServerConnection):
                return session, conn
        return None

    # -- control actions used by the cluster -------------------------------------------
    def reboot(self) -> None:
        """Restart: new boot verifier, every client ID, session and lock forgotten, a
        grace period for the clients that had confirmed client IDs (RFC 8881 section
        8.4.2), connections dropped.

        A reboot during a grace period (RFC 8881 section 8.4.3, edge conditions) keeps
        as reclaimers every client still entitled to reclaim in it -- one that held state
        before the earlier reboot and has not yet sent RECLAIM_COMPLETE, whether or not it
        came back in between -- so the new grace period neither forgets them nor ends
        early when the others finish; locks known lost stay refused."""
        reclaimers = {rec.co_ownerid for rec in self.clients if rec.confirmed}
        lost: list[Any] = []
        carried = 0
        now = self.now()
        for grace in self.graces:
            if now >= grace.ends_at:
                continue
            pending = {co for co, done in grace.reclaimers.items() if not done}
            carried += len(pending - reclaimers)
            reclaimers |= pending
            lost.extend(grace.lost)
        old_state = self.state
        self.state = StateTable()
        self._new_boot()
        for node in self.nodes:
            node.sessions.clear()
        self.graces = []
        self._moved_reported.clear()
        self._fhexpired_reported.clear()
        self._cb_locks.clear()
        if self.gss is not None:
            self.gss.forget()  # contexts do not survive a restart (RFC 2203 5.3.3.3)
        for fs_name in {st.fs for st in old_state.records.values()}:
            self._forget_unlinked(fs_name)
        self.event(
            "reboot",
            f"rebooted: boot verifier {self.boot_verifier.hex()}, {len(reclaimers)} client(s) "
            "may reclaim; old sessions get NFS4ERR_BADSESSION, old client IDs "
            "NFS4ERR_STALE_CLIENTID",
            boot_verifier=self.boot_verifier.hex(),
        )
        if carried:
            self.event(
                "reclaimers-kept",
                f"{carried} client(s) that had not finished reclaiming in the interrupted grace "
                "period stay reclaimers (RFC 8881 section 8.4.3)",
                carried=carried,
            )
        if reclaimers:
            self.start_grace(None, reclaimers, lost)
        self.drop_connections()

    def drop_connections(self) -> None:
        for ep in self.endpoints:
            for conn in list(ep.connections):
                self.spawn(conn.aclose)

    def expire(self, clientid: int | None = None, purge: bool = False) -> list[int]:
        """Expire leases now (RFC 8881 section 8.3): revoke their state (NFS4ERR_EXPIRED,
        SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED), or with ``purge`` forget the client IDs
        entirely (NFS4ERR_BADSESSION / NFS4ERR_STALE_CLIENTID)."""
        done = []
        for record in self.clients:
            if clientid is not None and record.clientid != clientid:
                continue
            if not record.confirmed:
                continue
            if purge:
                self.destroy_client(record, reason="lease expired (purged by control)")
            else:
                self._revoke_expired(record)
            done.append(record.clientid)
        return done

    def _revoke_expired(self, record: ClientRecord) -> None:
        valid = self.state.valid_for_client(record.clientid)
        for st in valid:
            self.state.revoke(st, S.NFS4ERR_EXPIRED)
            self._after_release(st.fs, st.fileid)
        record.last_renewal = self.now()
        self.event(
            "lease-expired",
            f"lease of client {record.clientid:#x} expired: {len(valid)} stateid(s) revoked "
            "(SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED until freed; RFC 8881 section 8.3)",
            clientid=record.clientid,
            revoked=len(valid),
        )

    def revoke_stateid(self, other: bytes) -> str:
        """Administratively revoke one stateid (NFS4ERR_ADMIN_REVOKED / DELEG_REVOKED)."""
        record = self.state.get(other)
        if record is None:
            raise KeyError(f"no stateid {other.hex()} on {self.name}")
        status = (
            S.NFS4ERR_DELEG_REVOKED if isinstance(record, Delegation) else S.NFS4ERR_ADMIN_REVOKED
        )
        self.state.revoke(record, status)
        self._after_release(record.fs, record.fileid)
        self.event(
            "revoked",
            f"{record.kind()} stateid {other.hex()} of client {record.clientid:#x} revoked "
            f"({status.name})",
            clientid=record.clientid,
            stateid=other.hex(),
        )
        return record.kind()

    def _after_release(self, fs_name: str, fileid: int) -> None:
        fs = self.model.filesystems.get(fs_name)
        if fs is None:
            return
        inode = fs.inodes.get(fileid)
        if inode is not None and inode.unlinked and not self.state.opens_on((fs_name, fileid)):
            fs.forget_if_unlinked(inode)

    # -- delegations: CB_RECALL, RFC 8881 sections 10.4.4 and 20.2 ----------------------
    def recall(self, deleg: Delegation) -> None:
        """Start recalling a delegation (once); the reaper revokes it after a lease."""
        if deleg.recall_started is not None:
            return
        deleg.recall_started = self.now()
        self.spawn(self._send_recall, deleg)

    def _recall_pending(self, deleg: Delegation) -> bool:
        """The delegation is still held here, unreturned and not revoked."""
        return self.state.get(deleg.other) is deleg and deleg.revoked is None

    async def _send_recall(self, deleg: Delegation) -> None:
        """Send CB_RECALL until the client answers it, re-sending when it is lost.

        A recall whose connection closes, whose session is destroyed (the client answers
        CB_SEQUENCE with NFS4ERR_BADSESSION, or the session disappears while it is out),
        or that finds no back channel at all, is sent again as soon as the client binds a
        back channel: on the same session with the same slot and sequence id (a retry,
        RFC 8881 section 2.10.6.2), or on a new session of the client ID with that
        session's next sequence id.  Meanwhile SEQUENCE reports
        SEQ4_STATUS_CB_PATH_DOWN(_SESSION) (section 18.46.3).  It stops when the
        delegation is returned or revoked (the reaper revokes it a lease after the first
        recall)."""
        fs = self.model.filesystems.get(deleg.fs)
        if fs is None or deleg.fileid not in fs.inodes:
            return
        fh = fs.fh(fs.inodes[deleg.fileid])
        #: sessionid -> the sequence id this recall used there (a retry reuses it).
        used: dict[bytes, int] = {}
        waiting_reported = False
        lost_with: bytes | None = None
        pause = 0.05
        while self._recall_pending(deleg):
            client = self.clients.get(deleg.clientid)
            found = self.backchannel_for(client) if client is not None else None
            if found is None:
                if not waiting_reported:
                    waiting_reported = True
                    self.event(
                        "cb-recall",
                        f"cannot send CB_RECALL of delegation {deleg.other.hex()} yet: client "
                        f"{deleg.clientid:#x} has no back channel; it is sent when one is "
                        "bound (RFC 8881 section 2.10.6.2), or the delegation is revoked a "
                        "lease after the recall",
                        stateid=deleg.other.hex(),
                    )
                await trio.sleep(0.05)
                continue
            session, conn = found
            retry = session.sessionid in used
            lock = self._cb_locks.setdefault(session.sessionid, trio.Lock())
            async with lock:
                if not retry:
                    session.cb_seqid = (session.cb_seqid + 1) & 0xFFFFFFFF
                    used[session.sessionid] = session.cb_seqid
                seqid = used[session.sessionid]
                args = cb.CB_COMPOUND4args(
                    tag=b"",
                    minorversion=1,
                    callback_ident=0,
                    argarray=[
                        cb.CB_SEQUENCE4args(session.sessionid, seqid, 0, 0, False, []),
                        cb.CB_RECALL4args(deleg.stateid(), False, fh),
                    ],
                )
                enc = Encoder()
                args.pack(enc)
                how = "re-sent" if retry or lost_with is not None else "sent"
                self.event(
                    "cb-recall",
                    f"CB_RECALL of delegation {deleg.other.hex()} {how} to client "
                    f"{deleg.clientid:#x} on session {session.sessionid.hex()} seq {seqid}"
                    + (
                        f" (lost with session {lost_with.hex()})"
                        if lost_with is not None and lost_with != session.sessionid
                        else ""
                    )
                    + " (RFC 8881 section 20.2)",
                    stateid=deleg.other.hex(),
                    clientid=deleg.clientid,
                    sessionid=session.sessionid.hex(),
                    resent=how == "re-sent",
                    waited=waiting_reported,
                )
                status = "no reply"
                lost = True
                try:
                    with trio.move_on_after(self.lease_time):
                        reply = await conn.callback(
                            session.cb_program,
                            NFS_CB,
                            CB_COMPOUND,
                            enc.getvalue(),
                            _cb_cred(session),
                        )
                        res = cb.CB_COMPOUND4res.unpack(Decoder(reply))
                        status = res.status.name
                        head = res.resarray[0] if res.resarray else None
                        seq_failed = isinstance(head, cb.CB_SEQUENCE4res) and head.status in (
                            S.NFS4ERR_BADSESSION,
                            S.NFS4ERR_DEADSESSION,
                        )
                        if seq_failed:
                            # The client does not know this session (any more): its back
                            # channel is useless until the client binds one again, and
                            # SEQUENCE says so (SEQ4_STATUS_CB_PATH_DOWN_SESSION).
                            session.back_conns = [
                                x for x in session.back_conns if id(x) != id(conn)
                            ]
                        lost = (
                            seq_failed
                            or client is None
                            or (session.sessionid not in client.sessions)
                        )
                except NFSClientError as exc:
                    status = f"failed: {exc}"
            self.event(
                "cb-recall-reply",
                f"CB_RECALL of {deleg.other.hex()}: {status}"
                + ("; the recall is lost with its session or connection" if lost else ""),
                stateid=deleg.other.hex(),
            )
            if not lost:
                return
            lost_with = session.sessionid
            if client is not None and session.sessionid not in client.sessions:
                used.pop(session.sessionid, None)
            await trio.sleep(pause)
            pause = min(pause * 2, 1.0)

    # -- other callbacks: CB_GETATTR, CB_RECALL_ANY (RFC 8881 sections 20.1, 20.6) ------
    async def callback(
        self, client: ClientRecord, ops_args: list[cb.CbArgOp]
    ) -> cb.CB_COMPOUND4res:
        """Send one CB_COMPOUND [CB_SEQUENCE, *ops_args] on a back channel of ``client``
        (slot 0, the session's next sequence id) and return the decoded reply.  Callers
        bound the wait.

        Raises:
            CallbackError: the client has no back channel.
            NFSClientError: the connection failed, or the reply does not decode.
        """
        found = self.backchannel_for(client)
        if found is None:
            raise CallbackError(f"client {client.clientid:#x} has no back channel")
        session, conn = found
        lock = self._cb_locks.setdefault(session.sessionid, trio.Lock())
        async with lock:
            session.cb_seqid = (session.cb_seqid + 1) & 0xFFFFFFFF
            args = cb.CB_COMPOUND4args(
                tag=b"",
                minorversion=1,
                callback_ident=0,
                argarray=[
                    cb.CB_SEQUENCE4args(session.sessionid, session.cb_seqid, 0, 0, False, []),
                    *ops_args,
                ],
            )
            enc = Encoder()
            args.pack(enc)
            reply = await conn.callback(
                session.cb_program, NFS_CB, CB_COMPOUND, enc.getvalue(), _cb_cred(session)
            )
        return cb.CB_COMPOUND4res.unpack(Decoder(reply))

    @property
    def cb_timeout(self) -> float:
        """Seconds a CB_GETATTR may take before the delegation is recalled instead."""
        return min(self.config.cb_timeout, max(0.5, self.lease_time / 2))

    async def cb_getattr(self, deleg: Delegation, fh: bytes) -> ops.CbGetattrAnswer:
        """Ask a write delegation's holder for size and change (CB_GETATTR, RFC 8881
        sections 10.4.3 and 20.1), waiting at most ``cb_timeout`` seconds.  Never
        raises: a failure is an answer with ``error`` set."""
        client = self.clients.get(deleg.clientid)
        if client is None:
            return ops.CbGetattrAnswer(error="the holder's client ID is gone")
        request = cb.CB_GETATTR4args(fh, bitmap4_from(ops.CB_GETATTR_REQUEST))
        error = f"no answer within {self.cb_timeout:g} s"
        res: cb.CB_COMPOUND4res | None = None
        with trio.move_on_after(self.cb_timeout):
            try:
                res = await self.callback(client, [request])
            except (CallbackError, NFSClientError) as exc:
                error = str(exc)
        if res is None:
            return ops.CbGetattrAnswer(error=error)
        got = res.resarray[1] if len(res.resarray) > 1 else None
        if not isinstance(got, cb.CB_GETATTR4res):
            return ops.CbGetattrAnswer(error=f"CB_COMPOUND {res.status.name}")
        if got.status != S.NFS4_OK or got.resok is None:
            return ops.CbGetattrAnswer(error=f"CB_GETATTR {got.status.name}")
        try:
            attrs = decode_fattr4(got.resok.obj_attributes)
        except XdrError as exc:
            return ops.CbGetattrAnswer(error=f"CB_GETATTR attributes do not decode: {exc}")
        return ops.CbGetattrAnswer(size=attrs.size, change=attrs.change)

    async def recall_any(self, client: ClientRecord, keep: int, mask: Iterable[int]) -> str:
        """Send CB_RECALL_ANY(craa_objects_to_keep=``keep``, craa_type_mask=``mask``
        bits, e.g. RCA4_TYPE_MASK_RDATA_DLG / RCA4_TYPE_MASK_WDATA_DLG) to ``client``
        (RFC 8881 section 20.6); the client's status, or why it was not answered
        (waits at most ``cb_timeout`` seconds)."""
        bits = sorted(set(mask))
        held = sum(
            1 for st in self.state.valid_for_client(client.clientid) if isinstance(st, Delegation)
        )
        request = cb.CB_RECALL_ANY4args(
            craa_objects_to_keep=keep, craa_type_mask=bitmap4_from(bits)
        )
        status = f"no answer within {self.cb_timeout:g} s"
        with trio.move_on_after(self.cb_timeout):
            try:
                res = await self.callback(client, [request])
                status = res.status.name
            except (CallbackError, NFSClientError) as exc:
                status = f"failed: {exc}"
        self.event(
            "cb-recall-any",
            f"CB_RECALL_ANY to client {client.clientid:#x}: keep {keep} of its {held} "
            f"delegation(s), type mask bits {bits}: {status} (RFC 8881 section 20.6)",
            clientid=client.clientid,
            keep=keep,
            mask=bits,
            held=held,
            status=status,
        )
        return status

    # -- the lease reaper --------------------------------------------------------------
    def reap(self) -> None:
        """Expire leases, revoke unreturned recalled delegations, end grace periods."""
        now = self.now()
        lease = self.lease_time
        for record in self.clients:
            idle = now - record.last_renewal
            if not record.confirmed:
                if idle > lease:
                    self.clients.remove(record)
                continue
            if idle > lease and self.state.valid_for_client(record.clientid):
                self._revoke_expired(record)
        for st in list(self.state.records.values()):
            if (
                isinstance(st, Delegation)
                and st.revoked is None
                and st.recall_started is not None
                and now - st.recall_started > lease
            ):
                self.state.revoke(st, S.NFS4ERR_DELEG_REVOKED)
                self.event(
                    "delegation-revoked",
                    f"delegation {st.other.hex()} not returned within a lease after CB_RECALL: "
                    "revoked (SEQ4_STATUS_RECALLABLE_STATE_REVOKED)",
                    clientid=st.clientid,
                    stateid=st.other.hex(),
                )
        self._end_graces()

    async def _reaper(self) -> None:
        tick = max(0.05, min(1.0, self.lease_time / 8))
        while True:
            await trio.sleep(tick)
            self.reap()

    # -- I/O: listeners and connections ------------------------------------------------
    def spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def start(self, nursery: trio.Nursery) -> None:
        """Bind every endpoint (port 0: a free one, then recorded) and serve.

        Raises:
            GssCredentialsUnavailable: ``config.gss`` names a keytab without the key.
        """
        self._nursery = nursery
        if self.config.gss is not None and self.gss is None:
            self.gss = acceptor_for(self.config.gss)
            self.event(
                "gss",
                f"RPCSEC_GSS accepted as {self.config.gss.principal or 'any principal'} of "
                f"{self.config.gss.keytab_name} (RFC 2203; krb5, krb5i, krb5p)",
                keytab=self.config.gss.keytab_name,
                principal=self.config.gss.principal,
            )
        for ep in self.endpoints:
            await self.bind(ep)
        nursery.start_soon(self._reaper)

    async def bind(self, ep: Endpoint) -> None:
        assert self._nursery is not None
        listeners = await trio.open_tcp_listeners(ep.port, host=ep.address)
        ep.listeners = listeners
        sock = listeners[0].socket
        ep.port = int(sock.getsockname()[1])
        self._nursery.start_soon(self._serve_listeners, ep, listeners)
        log.info("instance %s listening on %s:%d", self.name, ep.address, ep.port)

    async def _serve_listeners(self, ep: Endpoint, listeners: list[trio.SocketListener]) -> None:
        async def handler(stream: trio.SocketStream) -> None:
            await self._serve_stream(ep, stream)

        await trio.serve_listeners(handler, listeners)

    async def _serve_stream(self, ep: Endpoint, stream: trio.SocketStream) -> None:
        conn = ServerConnection(stream)
        owner = ep

        async def on_call(call: RpcCall) -> bytes | None:
            return await self.handle_call(conn, owner, call)

        conn.on_call = on_call
        ep.connections.add(conn)
        try:
            await conn.run()
        finally:
            ep.connections.discard(conn)
            for node in self.nodes:
                for session in node.sessions.values():
                    session.fore_conns.discard(id(conn))

    async def handle_call(
        self, conn: ServerConnection, ep: Endpoint, call: RpcCall
    ) -> bytes | None:
        """Answer one RPC call (RFC 5531 section 9; NFSv4 program, RFC 8881 section 16)."""
        if ep.instance is not self:
            # The address was moved to another instance while this connection was open.
            return await ep.instance.handle_call(conn, ep, call)
        if call.prog != NFS4_PROGRAM:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.PROG_UNAVAIL)
        if call.vers != NFS_V4:
            return encode_accepted_reply(
                call.xid, NULL_AUTH, accept_stat.PROG_MISMATCH, mismatch=(NFS_V4, NFS_V4)
            )
        if call.cred.flavor == auth_flavor.RPCSEC_GSS:
            return await self._handle_gss_call(conn, ep, call)
        if call.proc == NFSPROC4_NULL:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS)
        if call.proc != NFSPROC4_COMPOUND:
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.PROC_UNAVAIL)
        creds = parse_credential(call)
        if creds is None:
            return encode_rejected_reply(
                call.xid, reject_stat.AUTH_ERROR, auth=auth_stat.AUTH_BADCRED
            )
        try:
            body = await self.process_compound(conn, ep, call, creds)
        except XdrError as exc:
            log.info("%s: garbage arguments from %s: %s", self.name, conn.peer, exc)
            return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
        return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.SUCCESS, body)

    async def _handle_gss_call(
        self, conn: ServerConnection, ep: Endpoint, call: RpcCall
    ) -> bytes | None:
        """An RPCSEC_GSS call (RFC 2203 section 5): context creation and destruction
        are answered by the acceptor; a data call is verified and unwrapped there,
        executed as its principal, and its results protected with the call's service.
        Without ``config.gss``: AUTH_ERROR AUTH_BADCRED, as for any flavor not taken."""
        acceptor = self.gss
        if acceptor is None:
            return encode_rejected_reply(
                call.xid, reject_stat.AUTH_ERROR, auth=auth_stat.AUTH_BADCRED
            )
        outcome = acceptor.accept(call)
        if not isinstance(outcome, GssAccepted):
            return outcome  # a reply of the acceptor's own, or None: drop (5.3.3.1)
        try:
            if call.proc == NFSPROC4_NULL:
                return acceptor.reply(outcome, b"")
            if call.proc != NFSPROC4_COMPOUND:
                return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.PROC_UNAVAIL)
            creds = gss_credentials(outcome, self.model.idmap)
            try:
                body = await self.process_compound(conn, ep, call, creds, args=outcome.args)
            except XdrError as exc:
                log.info("%s: garbage arguments from %s: %s", self.name, conn.peer, exc)
                return encode_accepted_reply(call.xid, NULL_AUTH, accept_stat.GARBAGE_ARGS)
            return acceptor.reply(outcome, body)
        except GssError as exc:
            # The context went away while the call ran (RPCSEC_GSS_DESTROY, a reboot):
            # no verifier can be made; the client re-sends on a new context.
            log.info("%s: no reply to xid=0x%08x: %s", self.name, call.xid, exc)
            return None

    # -- the COMPOUND executor, RFC 8881 section 16.2.3 --------------------------------
    async def process_compound(
        self,
        conn: Any,
        ep: Endpoint,
        call: RpcCall,
        creds: Credentials,
        args: bytes | memoryview | None = None,
    ) -> bytes:
        """Execute one COMPOUND and return the encoded COMPOUND4res.

        The operations run synchronously, one after the other, except that a GETATTR
        needing a CB_GETATTR (RFC 8881 section 10.4.3) waits for the holder's answer
        and is then run again; meanwhile the slot is in progress (a retry on it gets
        NFS4ERR_DELAY) and other requests are served.

        ``args`` are the COMPOUND's arguments when they are not ``call.args`` as sent
        (RPCSEC_GSS integrity or privacy: unwrapped by the acceptor); ``call`` is what
        came on the wire (ca_maxrequestsize counts it).

        Raises:
            XdrError: the COMPOUND header does not decode (GARBAGE_ARGS).
        """
        started = time.monotonic()
        raw = bytes(call.args if args is None else args)
        dec = Decoder(raw)
        tag, minorversion, count = nfs4.COMPOUND4args.unpack_head(dec)
        if minorversion != 1:
            return encode_compound_res(S.NFS4ERR_MINOR_VERS_MISMATCH, tag, [])
        c = Compound(
            self, ep.node, conn, creds.principal, creds.uid, creds.gid, creds.gids, count, ep
        )
        c.flavour = creds.flavour
        c.reply_overhead = creds.reply_overhead
        results: list[tuple[int, Packable]] = []
        names: list[str] = []
        status = S.NFS4_OK
        cache: _CacheTarget | None = None
        limit: _ReplyLimit | None = None
        used = compound_header_size(tag) + creds.reply_overhead
        try:
            for index in range(count):
                c.index = index
                try:
                    opnum = dec.int32("nfs_argop4.argop")
                except XdrError:
                    results.append((OP.OP_ILLEGAL, OpStatus(OP.OP_ILLEGAL, S.NFS4ERR_BADXDR)))
                    status = S.NFS4ERR_BADXDR
                    break
                if opnum not in VALID_OPNUMS:
                    names.append("ILLEGAL")
                    results.append((OP.OP_ILLEGAL, OpStatus(OP.OP_ILLEGAL, S.NFS4ERR_OP_ILLEGAL)))
                    status = S.NFS4ERR_OP_ILLEGAL
                    break
                op = nfs_opnum4(opnum)
                names.append(op.name.removeprefix("OP_"))
                early = self._position_error(op, index, count)
                unsupported = op in ops.NOT_SUPPORTED_OPS or opnum not in ops.HANDLERS
                if early is None and unsupported and op != OP.OP_SEQUENCE:
                    early = S.NFS4ERR_NOTSUPP
                if early is not None:
                    results.append((opnum, OpStatus(opnum, early)))
                    status = early
                    break
                arg_cls = nfs4.ARGS_BY_OPNUM.get(op)
                if arg_cls is None:
                    results.append((opnum, OpStatus(opnum, S.NFS4ERR_NOTSUPP)))
                    status = S.NFS4ERR_NOTSUPP
                    break
                try:
                    op_args = arg_cls.unpack(dec)
                except XdrError:
                    results.append((opnum, OpStatus(opnum, S.NFS4ERR_BADXDR)))
                    status = S.NFS4ERR_BADXDR
                    break
                if isinstance(op_args, nfs4.SEQUENCE4args):
                    outcome = self._sequence(c, op_args, call, raw, count, dec, tag)
                    if isinstance(outcome, bytes):
                        self._log_compound(conn, call, names, count, outcome, started, replay=True)
                        return outcome
                    seq_res, cache = outcome
                    results.append((opnum, seq_res))
                    used += SEQUENCE_RESULT_BYTES
                    status = seq_res.status
                    if status != S.NFS4_OK:
                        break
                    if c.session is not None and cache is not None:
                        limit = reply_limit(c.session.fore, cache.cachethis)
                        cache.slot.in_progress = True
                    continue
                more = index < count - 1
                if limit is not None and op not in READ_ONLY_OPS:
                    largest = MAX_RESULT_BYTES.get(op, DEFAULT_MAX_RESULT_BYTES)
                    if used + 4 + largest + (ERROR_RESULT_BYTES if more else 0) > limit.size:
                        # Not executed: its result might not fit (RFC 8881 section 2.10.6.4).
                        results.append((opnum, OpStatus(opnum, limit.status)))
                        status = limit.status
                        break
                result, status = await self._run_op(c, op, op_args)
                if status == S.NFS4_OK and op in ops.PUTFH_LIKE_OPS:
                    # RFC 8881 section 2.6.3.1.1: the put-filehandle operation answers
                    # NFS4ERR_WRONGSEC unless the next one judges the flavour itself
                    # (LOOKUP, LOOKUPP, OPEN, SECINFO, SECINFO_NO_NAME, SAVEFH) or there
                    # is none (2.6.3.1.1.6, "Put Filehandle Operation + Nothing").
                    following = _peek_opnum(raw, dec.offset) if more else None
                    wrongsec = ops.put_fh_security(c, following)
                    if wrongsec is not None:
                        result, status = OpStatus(opnum, wrongsec), wrongsec
                enc = Encoder()
                result.pack(enc)
                encoded = enc.getvalue()
                tail = ERROR_RESULT_BYTES if more and status == S.NFS4_OK else 0
                if limit is not None and used + 4 + len(encoded) + tail > limit.size:
                    if op not in READ_ONLY_OPS and status == S.NFS4_OK:
                        log.warning(
                            "%s: %s executed but its %d-byte result exceeds the reply limit",
                            self.name,
                            op.name,
                            len(encoded),
                        )
                    result, status = OpStatus(opnum, limit.status), limit.status
                    results.append((opnum, result))
                    break
                results.append((opnum, RawResult(encoded)))
                used += 4 + len(encoded)
                if status != S.NFS4_OK:
                    break
        finally:
            if cache is not None:
                cache.slot.in_progress = False
        body = encode_compound_res(status, tag, results)
        if cache is not None:
            cache.slot.reply = body if cache.cachethis else None
            cache.slot.sequence_only = cache.sequence_bytes
            cache.slot.status = status
        self._log_compound(
            conn, call, names, count, body, started, status=status, done=len(results)
        )
        return body

    async def _run_op(self, c: Compound, op: nfs_opnum4, args: Any) -> tuple[Packable, nfsstat4]:
        """One operation: the start-of-operation checks, then its handler; a handler
        asking for CB_GETATTR (``ops.CallbackNeeded``) is run again with the answer."""
        for _ in range(3):
            try:
                self._precheck(c, op)
                res = ops.HANDLERS[int(op)](c, args)
                return res, res.status
            except FsError as exc:
                return OpStatus(int(op), exc.status), exc.status
            except ops.CallbackNeeded as need:
                c.cb_answers[need.deleg.other] = await self.cb_getattr(need.deleg, need.fh)
        return OpStatus(int(op), S.NFS4ERR_DELAY), S.NFS4ERR_DELAY

    @staticmethod
    def _position_error(op: nfs_opnum4, index: int, count: int) -> nfsstat4 | None:
        """SEQUENCE must come first; without it only the session-establishing operations
        may be sent, each alone (RFC 8881 sections 2.10.6.1, 16.2.3 and 18.46.3)."""
        if index == 0:
            if op == OP.OP_SEQUENCE:
                return None
            if op in ops.SESSIONLESS_OPS:
                return S.NFS4ERR_NOT_ONLY_OP if count > 1 else None
            return S.NFS4ERR_OP_NOT_IN_SESSION
        if op == OP.OP_SEQUENCE:
            return S.NFS4ERR_SEQUENCE_POS
        return None

    def _precheck(self, c: Compound, op: nfs_opnum4) -> None:
        """What is checked at the start of every operation: a current filehandle where
        one is used, an absent file system (NFS4ERR_MOVED, RFC 8881 section 11.3), a file
        system frozen by a migration in progress (NFS4ERR_DELAY, seed 001 section 4.2.7),
        and the request's security flavour if not yet checked (NFS4ERR_WRONGSEC,
        section 2.6.3.1.1)."""
        if c.client is not None and op != OP.OP_EXCHANGE_ID:
            ops.enforce_mach_cred(c, c.client, int(op))
        if op in ops.NO_FH_OPS:
            return
        refs: list[FhRef] = [c.need_fh()]
        if op in ops.SAVED_FH_OPS:
            refs.append(c.need_saved())
        for ref in refs:
            if not c.present(ref.fs) and op != OP.OP_GETATTR:
                self.note_moved(c.client, ref.fs)
                raise FsError(S.NFS4ERR_MOVED, f"file system {ref.fs.name} is not here")
            if self.cluster.is_frozen(ref.fs.name):
                raise FsError(S.NFS4ERR_DELAY, f"file system {ref.fs.name} is being migrated")
        ops.security_precheck(c, op)

    def _sequence(
        self,
        c: Compound,
        args: nfs4.SEQUENCE4args,
        call: RpcCall,
        raw_args: bytes,
        count: int,
        dec: Decoder,
        tag: bytes,
    ) -> bytes | tuple[nfs4.SEQUENCE4res, _CacheTarget | None]:
        """SEQUENCE (RFC 8881 sections 2.10.6.1 and 18.46): the slot decision, then the
        lease renewal and status flags of a new request.

        A request larger than ca_maxrequestsize gets NFS4ERR_REQ_TOO_BIG; one whose
        smallest possible reply (SEQUENCE's result and, if more operations follow, an
        error for the next) exceeds ca_maxresponsesize gets NFS4ERR_REP_TOO_BIG, or with
        sa_cachethis ca_maxresponsesize_cached NFS4ERR_REP_TOO_BIG_TO_CACHE: a
        channel too small for any reply (section 2.10.6.4).  These are SEQUENCE errors,
        so the slot does not change (section 2.10.6.1.2).

        ``raw_args`` are the COMPOUND's arguments as executed (unwrapped under
        RPCSEC_GSS): a retry is recognised by them and the caller, not by the bytes
        on the wire, which RPCSEC_GSS seals anew for each transmission."""
        session = c.node.sessions.get(args.sa_sessionid)
        record = self.clients.get(session.clientid) if session is not None else None
        if session is None or record is None:
            return nfs4.SEQUENCE4res(S.NFS4ERR_BADSESSION), None
        if args.sa_slotid >= len(session.slots):
            return nfs4.SEQUENCE4res(S.NFS4ERR_BADSLOT), None
        if args.sa_highest_slotid >= len(session.slots):
            return nfs4.SEQUENCE4res(S.NFS4ERR_BAD_HIGH_SLOT), None
        if count > session.fore.ca_maxoperations:
            return nfs4.SEQUENCE4res(S.NFS4ERR_TOO_MANY_OPS), None
        if request_size(call) > session.fore.ca_maxrequestsize:
            return nfs4.SEQUENCE4res(S.NFS4ERR_REQ_TOO_BIG), None
        if record.wrong_cred(OP.OP_SEQUENCE, c.principal):
            return nfs4.SEQUENCE4res(S.NFS4ERR_WRONG_CRED), None
        slot = session.slots[args.sa_slotid]
        # The caller is part of the request: a "retry" from another user is a false
        # retry (RFC 8881 section 2.10.6.1.3.1: then NFS4ERR_SEQ_FALSE_RETRY is a MUST).
        digest = args_digest(raw_args + repr(c.principal).encode())
        decision = check_sequence(slot, args.sa_sequenceid, digest)
        if slot.in_progress and decision in (
            SeqDecision.REPLAY,
            SeqDecision.REPLAY_UNCACHED,
            SeqDecision.FALSE_RETRY,
        ):
            # A retry of a request still executing (RFC 8881 section 2.10.6.2).
            return nfs4.SEQUENCE4res(S.NFS4ERR_DELAY), None
        if decision is SeqDecision.REPLAY:
            assert slot.reply is not None
            slot.relaxed = False
            return slot.reply
        if decision is SeqDecision.REPLAY_UNCACHED:
            items: list[tuple[int, Packable]] = [
                (OP.OP_SEQUENCE, RawResult(slot.sequence_only or b""))
            ]
            if count > 1 and dec.remaining() >= 4:
                next_op = dec.int32("nfs_argop4.argop")
                items.append((next_op, OpStatus(next_op, S.NFS4ERR_RETRY_UNCACHED_REP)))
                return encode_compound_res(S.NFS4ERR_RETRY_UNCACHED_REP, tag, items)
            return encode_compound_res(S.NFS4_OK, tag, items)
        if decision is SeqDecision.FALSE_RETRY:
            return nfs4.SEQUENCE4res(S.NFS4ERR_SEQ_FALSE_RETRY), None
        if decision is SeqDecision.MISORDERED:
            return nfs4.SEQUENCE4res(S.NFS4ERR_SEQ_MISORDERED), None
        limit = reply_limit(session.fore, args.sa_cachethis)
        smallest = compound_header_size(tag) + c.reply_overhead + SEQUENCE_RESULT_BYTES
        if count > 1:
            smallest += ERROR_RESULT_BYTES
        if smallest > limit.size:
            return nfs4.SEQUENCE4res(limit.status), None
        if slot.relaxed:
            self.event(
                "slot-established",
                f"slot {args.sa_slotid} of transferred session {session.sessionid.hex()} "
                f"now sequenced from {args.sa_sequenceid} (seed 001 section 4.2.7)",
                sessionid=session.sessionid.hex(),
            )
        slot.relaxed = False
        slot.seqid = args.sa_sequenceid
        slot.args_digest = digest
        slot.reply = None
        session.fore_conns.add(id(c.conn))
        record.last_renewal = self.now()
        c.session = session
        c.client = record
        c.sequenced = True
        highest = len(session.slots) - 1
        res = nfs4.SEQUENCE4res(
            S.NFS4_OK,
            nfs4.SEQUENCE4resok(
                sr_sessionid=session.sessionid,
                sr_sequenceid=args.sa_sequenceid,
                sr_slotid=args.sa_slotid,
                sr_highest_slotid=highest,
                sr_target_highest_slotid=highest,
                sr_status_flags=self.status_flags(record, session),
            ),
        )
        enc = Encoder()
        res.pack(enc)
        return res, _CacheTarget(slot, args.sa_cachethis, enc.getvalue())

    def _log_compound(
        self,
        conn: Any,
        call: RpcCall,
        names: list[str],
        count: int,
        body: bytes,
        started: float,
        *,
        status: nfsstat4 = S.NFS4_OK,
        done: int = 0,
        replay: bool = False,
    ) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        elapsed = (time.monotonic() - started) * 1000
        peer = getattr(conn, "peer", "?")
        if replay:
            log.debug(
                "%s <- %s xid=0x%08x replayed from the reply cache, %d B",
                self.name,
                peer,
                call.xid,
                len(body),
            )
            return
        where = (
            ""
            if status == S.NFS4_OK
            else f" at op {done - 1}/{count} ({names[-1] if names else '?'})"
        )
        log.debug(
            "%s -> %s xid=0x%08x [%s] <- %s%s %d B %.1f ms",
            self.name,
            peer,
            call.xid,
            " ".join(names),
            status.name,
            where,
            len(body),
            elapsed,
        )


def _peek_opnum(raw: bytes, offset: int) -> int | None:
    """The operation number at ``offset`` of a COMPOUND's arguments, if there is one."""
    if len(raw) - offset < 4:
        return None
    return int(struct.unpack_from(">i", raw, offset)[0])


def _cb_cred(session: Session) -> Credential:
    """The credential for callbacks: from csa_sec_parms (AUTH_SYS, else AUTH_NONE)."""
    for parms in session.cb_sec_parms:
        if parms.cb_secflavor == AUTH_SYS and parms.cbsp_sys_cred is not None:
            sys_cred = parms.cbsp_sys_cred
            return AuthSys(
                sys_cred.uid,
                sys_cred.gid,
                sys_cred.gids[:16],
                sys_cred.machinename[:255] or "testserver",
                sys_cred.stamp,
            )
    for parms in session.cb_sec_parms:
        if parms.cb_secflavor == AUTH_NONE:
            return AuthNone()
    return AuthNone()

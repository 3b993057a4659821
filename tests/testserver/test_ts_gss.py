"""RPCSEC_GSS on the test server (issue 13, item 4): real Kerberos contexts from the
throw-away realm of ``contrib.krb5`` (KDC on loopback) against ``GssAcceptor`` in
the server, RFC 2203 and RFC 8881 sections 2.6 (security negotiation), 2.10.8.3 /
18.35 (SP4_MACH_CRED), 18.29 / 18.45 (SECINFO, SECINFO_NO_NAME).

The clients are ``session.gss.GssCredential``: the machine credential host/localhost
(from its keytab), users alice and bob (their ticket caches), each asking for
``nfs@localhost`` unless a test names another server (``nfs@127.0.0.2``: the name a
client takes from a location entry)."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import AsyncIterator

import pytest
import trio

from contrib.krb5 import FusenfsRealm, KerberosError, Keytab
from contrib.testserver import Cluster, ClusterConfig, FsSpec, InstanceConfig, open_cluster
from contrib.testserver.cli import apply_sec, main, parse_user
from contrib.testserver.rawclient import RawClient
from contrib.testserver.security import GssConfig, IdMap, parse_sec
from contrib.testserver.server import EndpointConfig
from session.errors import NFSClientError
from session.gss import (
    KRB5_OID_DER,
    CcacheSource,
    GssCredential,
    KeytabSource,
    rpc_gss_service_t,
)
from session.rpc import AuthSys, Credential
from session.xdr import nfs4
from session.xdr.const import (
    AUTH_NONE,
    AUTH_SYS,
    FATTR4,
    OPEN4_SHARE_ACCESS_BOTH,
    OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
    RPCSEC_GSS,
    channel_dir_from_client4,
    nfs_opnum4,
    nfsstat4,
    secinfo_style4,
    stable_how4,
    state_protect_how4,
)
from session.xdr.fattr import NFSAttrs, bitmap4_from, bitmap4_to_set, encode_fattr4

S = nfsstat4
OP = nfs_opnum4
NONE = rpc_gss_service_t.RPC_GSS_SVC_NONE
INTEG = rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY
PRIV = rpc_gss_service_t.RPC_GSS_SVC_PRIVACY
SERVICES = {"krb5": NONE, "krb5i": INTEG, "krb5p": PRIV}

ENFORCE = {
    OP.OP_BIND_CONN_TO_SESSION,
    OP.OP_EXCHANGE_ID,
    OP.OP_CREATE_SESSION,
    OP.OP_DESTROY_SESSION,
    OP.OP_DESTROY_CLIENTID,
}
ALLOW = {OP.OP_CLOSE, OP.OP_LOCKU, OP.OP_DELEGRETURN, OP.OP_WRITE, OP.OP_TEST_STATEID}
UNMAPPED = "nomap"  # a principal of the realm with no local user


def machine(
    realm: FusenfsRealm, service: rpc_gss_service_t, target: str = "nfs@localhost"
) -> GssCredential:
    kt = realm.host_keytab
    assert kt is not None
    return GssCredential(
        target, service, source=KeytabSource(kt.name, kt.principal), label=kt.principal
    )


def user(
    realm: FusenfsRealm, name: str, service: rpc_gss_service_t, target: str = "nfs@localhost"
) -> GssCredential:
    return GssCredential(target, service, source=CcacheSource(realm.ccaches[name]), label=name)


def unmapped_ccache(realm: FusenfsRealm) -> str:
    """A ticket cache for a principal with no local user (made once per realm)."""
    if UNMAPPED not in realm.ccaches:
        try:
            realm.kadmin(f"getprinc {realm.principal(UNMAPPED)}")
            realm.kadmin(f"cpw -pw unmapped-pw {realm.principal(UNMAPPED)}")
        except KerberosError:
            realm.add_user(UNMAPPED, "unmapped-pw")
        realm.ccaches[UNMAPPED] = realm.kinit(UNMAPPED, password="unmapped-pw")
    return realm.ccaches[UNMAPPED]


def gss_config(keytab: Keytab, principal: str | None = "nfs@localhost") -> ClusterConfig:
    """A (127.0.0.1) and B (127.0.0.2) with RPCSEC_GSS; file systems a (every flavour),
    k (krb5p only), i (krb5i then krb5), s (sys only), all on A; bob configured as
    uid 2002 (before the password database)."""
    return ClusterConfig(
        instances=[
            InstanceConfig("A", [EndpointConfig("127.0.0.1")], lease_time=3, grace_time=3),
            InstanceConfig("B", [EndpointConfig("127.0.0.2")], lease_time=3, grace_time=3),
        ],
        filesystems=[
            FsSpec("a"),
            FsSpec("k", sec="krb5p"),
            FsSpec("i", sec="krb5i:krb5"),
            FsSpec("s", sec="sys"),
        ],
        lease_time=3,
        grace_time=3,
        gss=GssConfig(str(keytab.path), principal),
        users={"bob": (2002, 2002)},
    )


@pytest.fixture
async def gss_cluster(krb5_realm: FusenfsRealm, gss_keytab: Keytab) -> AsyncIterator[Cluster]:
    async with open_cluster(gss_config(gss_keytab)) as running:
        yield running


async def connect(
    cluster: Cluster, nursery: trio.Nursery, cred: Credential, owner: bytes, instance: str = "A"
) -> RawClient:
    ep = cluster.instance(instance).endpoints[0]
    return await RawClient.connect(ep.address, ep.port, nursery, owner=owner, cred=cred)


def secinfo_flavours(entries: list[nfs4.secinfo4]) -> list[str]:
    names = {NONE: "krb5", INTEG: "krb5i", PRIV: "krb5p"}
    out = []
    for entry in entries:
        if entry.flavor == AUTH_SYS:
            out.append("sys")
        elif entry.flavor == AUTH_NONE:
            out.append("none")
        else:
            assert entry.flavor == RPCSEC_GSS and entry.flavor_info is not None
            assert entry.flavor_info.oid == KRB5_OID_DER
            out.append(names[rpc_gss_service_t(entry.flavor_info.service)])
    return out


async def create_file(c: RawClient, dir_fh: bytes, name: bytes, data: bytes = b"") -> bytes:
    """OPEN-create ``name`` (no delegation), write ``data``, CLOSE; its filehandle."""
    ops: list[nfs4.ArgOp] = [
        nfs4.PUTFH4args(dir_fh),
        c.open_args(
            name,
            OPEN4_SHARE_ACCESS_BOTH,
            create=True,
            owner=name,
            want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
        ),
        nfs4.GETFH4args(),
    ]
    if data:
        ops.append(nfs4.WRITE4args(nfs4.CURRENT_STATEID, 0, stable_how4.FILE_SYNC4, data))
    ops.append(nfs4.CLOSE4args(0, nfs4.CURRENT_STATEID))
    res = await c.ok(ops)
    getfh = res.resarray[3]
    assert isinstance(getfh, nfs4.GETFH4res) and getfh.resok is not None
    return getfh.resok.object


async def owner_of(c: RawClient, fh: bytes) -> str:
    attrs = await c.getattrs(fh, [FATTR4.OWNER])
    assert attrs.owner is not None
    return attrs.owner


# -------------------------------------------------------------------- the three services
@pytest.mark.parametrize("flavour", list(SERVICES))
async def test_each_service(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery, flavour: str
) -> None:
    """RFC 2203 5.3.2: a whole client life under krb5, krb5i and krb5p with the machine
    credential -- EXCHANGE_ID, CREATE_SESSION, OPEN/WRITE/READ/CLOSE, DESTROY_SESSION,
    DESTROY_CLIENTID -- with one context, every call verified and its results
    protected as the call was (the client checks the reply verifier and the MIC or
    wrap: ``GssCredential`` raises on a mismatch)."""
    with trio.fail_after(30):
        cred = machine(krb5_realm, SERVICES[flavour])
        c = await connect(gss_cluster, nursery, cred, f"svc-{flavour}".encode())
        await c.establish()
        root = await c.lookup_path("/export/a")
        data = os.urandom(100_000)
        fh = await create_file(c, root, flavour.encode(), data)
        res = await c.ok(
            [
                nfs4.PUTFH4args(fh),
                c.open_args(None, OPEN4_SHARE_ACCESS_BOTH, want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG),
                nfs4.READ4args(nfs4.CURRENT_STATEID, 0, len(data)),
                nfs4.CLOSE4args(0, nfs4.CURRENT_STATEID),
            ]
        )
        read = res.resarray[3]
        assert isinstance(read, nfs4.READ4res) and read.resok is not None
        assert read.resok.data == data
        assert await owner_of(c, fh) == "0"  # the machine principal is root
        await c.call([nfs4.DESTROY_SESSION4args(c.sessionid)])
        done = await c.call([nfs4.DESTROY_CLIENTID4args(c.clientid)])
        assert done.status == S.NFS4_OK
        stats = cred.statistics()
        assert (stats.contexts, stats.failures, stats.renewals_rejected) == (1, 0, 0)
        (event,) = gss_cluster.events.find(kind="exchange-id")
        assert event.details["principal"] == f"host/localhost@{krb5_realm.realm}"


async def test_names_of_every_instance_address(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """The cluster keytab holds nfs/localhost and nfs/ADDRESS for each address: a client
    asking for ``nfs@127.0.0.2`` (the host of a location entry of B) gets a context with
    B, and ``nfs@127.0.0.1`` or ``nfs@localhost`` with A."""
    with trio.fail_after(30):
        for instance, target in (
            ("A", "nfs@localhost"),
            ("A", "nfs@127.0.0.1"),
            ("B", "nfs@127.0.0.2"),
        ):
            cred = machine(krb5_realm, INTEG, target)
            c = await connect(gss_cluster, nursery, cred, target.encode(), instance)
            await c.establish()
            assert cred.statistics().contexts == 1


async def test_strict_service_principal(
    krb5_realm: FusenfsRealm, gss_keytab: Keytab, nursery: trio.Nursery
) -> None:
    """GssConfig(principal="nfs/localhost@REALM") accepts exactly that principal: a
    client asking for nfs@127.0.0.1 gets no context (EACCES), nfs@localhost does."""
    config = gss_config(gss_keytab, principal=krb5_realm.principal("nfs/localhost"))
    with trio.fail_after(30):
        async with open_cluster(config) as cluster:
            good = machine(krb5_realm, INTEG, "nfs@localhost")
            c = await connect(cluster, nursery, good, b"strict-good")
            await c.establish()
            bad = machine(krb5_realm, INTEG, "nfs@127.0.0.1")
            other = await connect(cluster, nursery, bad, b"strict-bad")
            with pytest.raises(NFSClientError):
                await other.exchange_id()


async def test_without_gss_rpcsec_gss_is_refused(
    krb5_realm: FusenfsRealm, nursery: trio.Nursery
) -> None:
    """An instance without GssConfig answers RPCSEC_GSS with AUTH_ERROR (the context
    cannot be created: the client's error, EACCES) and offers sys and none only."""
    config = ClusterConfig.simple(["127.0.0.1"], ["a"], lease_time=3)
    with trio.fail_after(30):
        async with open_cluster(config) as cluster:
            c = await connect(cluster, nursery, machine(krb5_realm, INTEG), b"no-gss")
            with pytest.raises(NFSClientError):
                await c.exchange_id()
            c.cred = AuthSys(0, 0)
            await c.establish()
            res = await c.ok(
                [
                    nfs4.PUTROOTFH4args(),
                    nfs4.SECINFO_NO_NAME4args(secinfo_style4.SECINFO_STYLE4_CURRENT_FH),
                ]
            )
            sec = res.resarray[-1]
            assert isinstance(sec, nfs4.SECINFO_NO_NAME4res) and sec.resok is not None
            assert secinfo_flavours(sec.resok) == ["sys", "none"]


# ----------------------------------------------------------------- principals -> owners
async def test_principals_map_to_owners(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """RFC 8881 section 5.9: a file created by alice@REALM belongs to the local user
    alice (from the password database) and its owner attribute is alice@DOMAIN; bob
    is configured (uid 2002, before the password database); a principal with no
    local user creates files as nobody; the machine principal host/localhost as root.
    Owner strings name users the server knows by name, numbers otherwise."""
    with trio.fail_after(30):
        mach = machine(krb5_realm, INTEG)
        c = await connect(gss_cluster, nursery, mach, b"owners")
        await c.establish()
        root = await c.lookup_path("/export/a")
        await c.ok([nfs4.PUTFH4args(root), open_to_all()])
        expected_alice = pwd.getpwnam("alice").pw_uid if _has_user("alice") else 65534
        fs = gss_cluster.filesystem("a")
        cases = [
            (user(krb5_realm, "alice", INTEG), b"by-alice", expected_alice, "alice@fusenfs.test"),
            (user(krb5_realm, "bob", INTEG), b"by-bob", 2002, "bob@fusenfs.test"),
            (
                GssCredential(
                    "nfs@localhost", INTEG, source=CcacheSource(unmapped_ccache(krb5_realm))
                ),
                b"by-nobody",
                65534,
                "65534",
            ),
            (mach, b"by-root", 0, "0"),
        ]
        if expected_alice == 65534:
            cases[0] = (cases[0][0], cases[0][1], 65534, "65534")
        for cred, name, uid, owner in cases:
            c.cred = cred
            fh = await create_file(c, root, name)
            _, inode, _ = gss_cluster.model.resolve_handle(fh)
            assert inode.uid == uid, name
            c.cred = mach
            assert await owner_of(c, fh) == owner, name
        assert fs.name == "a"


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def open_to_all() -> nfs4.SETATTR4args:
    """SETATTR mode 0777 (a directory everyone may create in)."""
    return nfs4.SETATTR4args(nfs4.ANONYMOUS_STATEID, encode_fattr4(NFSAttrs(mode=0o777)))


def test_id_map_rules() -> None:
    """IdMap: configured users first, machine principals are root, realms outside
    local_realms are nobody, owner strings of known users are name@domain."""
    idmap = IdMap.from_config({"carol": (3003, 3004)}, "example.test", ["GOOD.TEST"])
    assert idmap.principal("carol@GOOD.TEST").uid == 3003
    assert idmap.principal("carol@GOOD.TEST").gid == 3004
    assert idmap.principal("host/client.example.test@GOOD.TEST").uid == 0
    assert idmap.principal("carol@EVIL.TEST").uid == 65534
    assert idmap.owner(3003) == "carol@example.test"
    assert idmap.owner(1234) == "1234"
    assert idmap.uid_of("carol") == 3003
    assert parse_sec("krb5p:krb5i,sys") == ("krb5p", "krb5i", "sys")
    with pytest.raises(ValueError, match="unknown security flavour"):
        parse_sec("krb5x")
    with pytest.raises(ValueError, match="twice"):
        parse_sec("sys:sys")


# ----------------------------------------------------------- SECINFO and NFS4ERR_WRONGSEC
async def test_secinfo_and_wrongsec(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """RFC 8881 2.6.3.1, 18.29, 18.45: SECINFO / SECINFO_NO_NAME answer each export's
    flavours in its order; a request of another flavour gets NFS4ERR_WRONGSEC on the
    LOOKUP that crosses into the export, on a PUTFH followed by an operation that uses
    the handle (not when PUTFH is last or followed by SECINFO_NO_NAME), and, after
    PUTFH + SAVEFH, on the next operation that uses it; krb5p does not satisfy an
    export of krb5i and krb5 only."""
    with trio.fail_after(30):
        kp = await connect(gss_cluster, nursery, machine(krb5_realm, PRIV), b"sec-krb5p")
        await kp.establish()
        k_fh = await kp.lookup_path("/export/k")
        export = await kp.lookup_path("/export")
        a_fh = await kp.lookup_path("/export/a")

        async def secinfo(c: RawClient, name: bytes) -> list[str]:
            res = await c.ok([nfs4.PUTFH4args(export), nfs4.SECINFO4args(name)])
            sec = res.resarray[-1]
            assert isinstance(sec, nfs4.SECINFO4res) and sec.resok is not None
            return secinfo_flavours(sec.resok)

        sysc = await connect(gss_cluster, nursery, AuthSys(0, 0), b"sec-sys")
        await sysc.establish()  # EXCHANGE_ID and the pseudo-fs take any flavour
        assert await secinfo(sysc, b"k") == ["krb5p"]
        assert await secinfo(sysc, b"i") == ["krb5i", "krb5"]
        assert await secinfo(sysc, b"s") == ["sys"]
        assert await secinfo(sysc, b"a") == ["krb5p", "krb5i", "krb5", "sys", "none"]
        res = await sysc.ok(
            [
                nfs4.PUTFH4args(k_fh),
                nfs4.SECINFO_NO_NAME4args(secinfo_style4.SECINFO_STYLE4_CURRENT_FH),
            ]
        )
        no_name = res.resarray[-1]
        assert isinstance(no_name, nfs4.SECINFO_NO_NAME4res) and no_name.resok is not None
        assert secinfo_flavours(no_name.resok) == ["krb5p"]
        res = await sysc.ok(
            [nfs4.PUTFH4args(k_fh), nfs4.SECINFO_NO_NAME4args(secinfo_style4.SECINFO_STYLE4_PARENT)]
        )
        parent = res.resarray[-1]
        assert isinstance(parent, nfs4.SECINFO_NO_NAME4res) and parent.resok is not None
        assert secinfo_flavours(parent.resok) == ["krb5p", "krb5i", "krb5", "sys", "none"]

        getattr_op = nfs4.GETATTR4args(bitmap4_from([FATTR4.SIZE]))
        walk: list[nfs4.ArgOp] = [
            nfs4.PUTROOTFH4args(),
            nfs4.LOOKUP4args(b"export"),
            nfs4.LOOKUP4args(b"k"),
        ]
        res = await sysc.seq(walk)
        assert res.status == S.NFS4ERR_WRONGSEC and len(res.resarray) == 4  # the LOOKUP of k
        res = await sysc.seq([nfs4.PUTFH4args(k_fh), getattr_op])
        assert res.status == S.NFS4ERR_WRONGSEC and len(res.resarray) == 2  # on PUTFH
        assert (await sysc.seq([nfs4.PUTFH4args(k_fh)])).status == S.NFS4_OK  # 2.6.3.1.1.6
        deferred: list[nfs4.ArgOp] = [nfs4.PUTFH4args(k_fh), nfs4.SAVEFH4args(), getattr_op]
        res = await sysc.seq(deferred)
        assert res.status == S.NFS4ERR_WRONGSEC and len(res.resarray) == 4  # on GETATTR
        # Of two put-filehandle operations only the last counts.
        assert (
            await sysc.seq([nfs4.PUTFH4args(k_fh), nfs4.PUTFH4args(a_fh), getattr_op])
        ).status == S.NFS4_OK
        restored: list[nfs4.ArgOp] = [
            nfs4.PUTFH4args(k_fh),
            nfs4.SAVEFH4args(),
            nfs4.PUTFH4args(a_fh),
            nfs4.RESTOREFH4args(),
            getattr_op,
        ]
        res = await sysc.seq(restored)
        assert res.status == S.NFS4ERR_WRONGSEC and len(res.resarray) == 5  # RESTOREFH
        assert (await kp.seq([nfs4.PUTFH4args(k_fh), getattr_op])).status == S.NFS4_OK
        assert (await kp.seq(walk)).status == S.NFS4_OK
        # krb5p on an export of krb5i:krb5, krb5i on it, and on one of sys only.
        res = await kp.seq(
            [nfs4.PUTROOTFH4args(), nfs4.LOOKUP4args(b"export"), nfs4.LOOKUP4args(b"i")]
        )
        assert res.status == S.NFS4ERR_WRONGSEC
        ki = await connect(gss_cluster, nursery, machine(krb5_realm, INTEG), b"sec-krb5i")
        await ki.establish()
        assert (
            await ki.seq(
                [nfs4.PUTROOTFH4args(), nfs4.LOOKUP4args(b"export"), nfs4.LOOKUP4args(b"i")]
            )
        ).status == S.NFS4_OK
        assert (
            await ki.seq(
                [nfs4.PUTROOTFH4args(), nfs4.LOOKUP4args(b"export"), nfs4.LOOKUP4args(b"s")]
            )
        ).status == S.NFS4ERR_WRONGSEC
        events = gss_cluster.events.find(kind="wrongsec")
        assert {(e.details["fs"], e.details["flavour"]) for e in events} >= {
            ("k", "sys"),
            ("i", "krb5p"),
            ("s", "krb5i"),
        }


# ------------------------------------------------------------------------ SP4_MACH_CRED
def mach_cred_request(
    enforce: set[nfs_opnum4] = ENFORCE, allow: set[nfs_opnum4] = ALLOW
) -> nfs4.state_protect4_a:
    return nfs4.state_protect4_a(
        state_protect_how4.SP4_MACH_CRED,
        spa_mach_ops=nfs4.state_protect_ops4(
            bitmap4_from(int(op) for op in enforce), bitmap4_from(int(op) for op in allow)
        ),
    )


async def test_sp4_mach_cred(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """RFC 8881 2.10.8.3 / 18.35: EXCHANGE_ID with SP4_MACH_CRED (krb5i) is answered
    SP4_MACH_CRED with the operations enforced and allowed; then only the principal that
    created the client ID may BIND_CONN_TO_SESSION, DESTROY_SESSION, DESTROY_CLIENTID
    (others: NFS4ERR_WRONG_CRED) or take the client owner over (CLID_INUSE while the
    lease lasts), while a user's own operations in the session are served as that user.
    SP4_MACH_CRED sent with krb5 (no integrity) is NFS4ERR_INVAL."""
    with trio.fail_after(30):
        mach = machine(krb5_realm, INTEG)
        alice = user(krb5_realm, "alice", INTEG)
        c = await connect(gss_cluster, nursery, mach, b"protected")
        eid = await c.exchange_id(state_protect=mach_cred_request())
        assert eid.resok is not None
        protect = eid.resok.eir_state_protect
        assert protect.spr_how == state_protect_how4.SP4_MACH_CRED
        assert protect.spr_mach_ops is not None
        assert bitmap4_to_set(protect.spr_mach_ops.spo_must_enforce) == {int(o) for o in ENFORCE}
        assert bitmap4_to_set(protect.spr_mach_ops.spo_must_allow) == {int(o) for o in ALLOW}
        assert (await c.create_session()).status == S.NFS4_OK
        await c.ok([nfs4.RECLAIM_COMPLETE4args(False)])

        c.cred = alice
        root = await c.lookup_path("/export/a")
        res = await c.call([nfs4.DESTROY_SESSION4args(c.sessionid)])
        assert res.status == S.NFS4ERR_WRONG_CRED
        bind = nfs4.BIND_CONN_TO_SESSION4args(
            c.sessionid, channel_dir_from_client4.CDFC4_FORE, False
        )
        assert (await c.call([bind])).status == S.NFS4ERR_WRONG_CRED
        assert (
            await c.call([nfs4.DESTROY_CLIENTID4args(c.clientid)])
        ).status == S.NFS4ERR_WRONG_CRED
        takeover = await c.call([c.exchange_id_args(state_protect=mach_cred_request())])
        assert takeover.status == S.NFS4ERR_CLID_INUSE
        # Not enforced: alice creates a file, as alice, in the machine's session.
        c.cred = mach
        await c.ok([nfs4.PUTFH4args(root), open_to_all()])
        c.cred = alice
        fh = await create_file(c, root, b"alices")
        _, inode, _ = gss_cluster.model.resolve_handle(fh)
        assert inode.uid == (pwd.getpwnam("alice").pw_uid if _has_user("alice") else 65534)
        assert gss_cluster.events.find(kind="wrong-cred")

        c.cred = mach  # the machine credential does what it protects
        await c.ok([nfs4.PUTROOTFH4args()])
        assert (await c.call([nfs4.DESTROY_SESSION4args(c.sessionid)])).status == S.NFS4_OK
        assert (await c.call([nfs4.DESTROY_CLIENTID4args(c.clientid)])).status == S.NFS4_OK

        weak = await connect(gss_cluster, nursery, machine(krb5_realm, NONE), b"weak")
        refused = await weak.exchange_id(state_protect=mach_cred_request())
        assert refused.status == S.NFS4ERR_INVAL


async def test_sp4_mach_cred_moves_with_tsm(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """A client ID protected by SP4_MACH_CRED and transferred by TSM keeps its machine
    credential on the destination: there too, alice may not bind a connection to its
    session (NFS4ERR_WRONG_CRED), and EXCHANGE_ID answers SP4_MACH_CRED."""
    with trio.fail_after(30):
        mach = machine(krb5_realm, PRIV, "nfs@localhost")
        c = await connect(gss_cluster, nursery, mach, b"moving-protected")
        await c.exchange_id(state_protect=mach_cred_request())
        await c.create_session()
        await c.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        root = await c.lookup_path("/export/a")
        await create_file(c, root, b"state")
        await c.ok(
            [
                nfs4.PUTFH4args(root),
                c.open_args(
                    b"state", OPEN4_SHARE_ACCESS_BOTH, want=OPEN4_SHARE_ACCESS_WANT_NO_DELEG
                ),
            ]
        )
        await gss_cluster.migrate("a", to="B", tsm=True, merge_client=False)
        on_b = await connect(
            gss_cluster,
            nursery,
            machine(krb5_realm, PRIV, "nfs@127.0.0.2"),
            b"moving-protected",
            "B",
        )
        on_b.verifier = c.verifier
        eid = await on_b.exchange_id(state_protect=mach_cred_request())
        assert eid.resok is not None
        assert eid.resok.eir_state_protect.spr_how == state_protect_how4.SP4_MACH_CRED
        on_b.cred = user(krb5_realm, "alice", PRIV, "nfs@127.0.0.2")
        bind = nfs4.BIND_CONN_TO_SESSION4args(
            c.sessionid, channel_dir_from_client4.CDFC4_FORE, False
        )
        assert (await on_b.call([bind])).status == S.NFS4ERR_WRONG_CRED


# ------------------------------------------------------------- retries and restarts
async def test_retry_under_privacy_is_replayed(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """2.10.6.1.3: a retry (same slot and sequence id, same arguments, same principal)
    is answered from the reply cache although RPCSEC_GSS sealed it anew (new seq_num,
    new encryption): the server compares the unwrapped arguments, not the wire."""
    with trio.fail_after(30):
        c = await connect(gss_cluster, nursery, machine(krb5_realm, PRIV), b"retrier")
        await c.establish()
        ops: list[nfs4.ArgOp] = [nfs4.PUTROOTFH4args(), nfs4.GETFH4args()]
        first, raw1 = await c.seq_bytes(ops, cachethis=True)
        again, raw2 = await c.seq_bytes(ops, seqid=c.seqids[0], cachethis=True)
        assert first.status == again.status == S.NFS4_OK
        assert raw1 == raw2


async def test_contexts_are_lost_with_a_reboot(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """A restarted instance knows no context: the client's next call is refused with
    RPCSEC_GSS_CREDPROBLEM and GssCredential creates a new context and sends again
    (RFC 2203 5.3.3.3); the client reclaims as usual."""
    with trio.fail_after(30):
        cred = machine(krb5_realm, INTEG)
        c = await connect(gss_cluster, nursery, cred, b"rebooted")
        await c.establish()
        gss_cluster.reboot("A")
        c = await connect(gss_cluster, nursery, cred, b"rebooted")
        c.verifier = os.urandom(8)
        await c.establish(reclaim_complete=False)
        await c.ok([nfs4.RECLAIM_COMPLETE4args(False)])
        stats = cred.statistics()
        assert stats.contexts == 2 and stats.renewals_rejected == 1


# --------------------------------------------------------------------------- the CLI
def test_cli_security_options(capsys: pytest.CaptureFixture[str]) -> None:
    """serve --sec NAME=FLAVOURS and --user NAME=UID[:GID] parse; a keytab without the
    key is one line on stderr and exit status 2, not a traceback."""
    specs = [FsSpec("a"), FsSpec("k")]
    apply_sec(specs, ["k=krb5p:krb5i"])
    assert specs[1].sec == ["krb5p", "krb5i"] and specs[0].sec is None
    assert parse_user("alice=1001") == ("alice", (1001, 1001))
    assert parse_user("bob=1002:100") == ("bob", (1002, 100))
    status = main(
        [
            "serve",
            "--instance",
            "127.0.0.1",
            "--krb5-keytab",
            "/nonexistent.keytab",
            "--control",
            "/tmp/unused.sock",
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "no acceptor credentials" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- throughput
async def test_throughput_by_flavour(
    krb5_realm: FusenfsRealm, gss_cluster: Cluster, nursery: trio.Nursery
) -> None:
    """MB/s of 8 MiB written and read in 512 KiB requests, one at a time, under sys,
    krb5, krb5i and krb5p (printed with ``-s``): what RPCSEC_GSS costs the Python
    server and client together on this machine; data intact each time."""
    size, chunk = 8 << 20, 512 << 10
    data = os.urandom(size)
    rows = []
    with trio.fail_after(120):
        for flavour in ("sys", "krb5", "krb5i", "krb5p"):
            cred: Credential = (
                AuthSys(0, 0) if flavour == "sys" else machine(krb5_realm, SERVICES[flavour])
            )
            c = await connect(gss_cluster, nursery, cred, f"bench-{flavour}".encode())
            await c.establish()
            root = await c.lookup_path("/export/a")
            fh = await create_file(c, root, f"bench-{flavour}".encode())
            started = time.perf_counter()
            for off in range(0, size, chunk):
                await c.ok(
                    [
                        nfs4.PUTFH4args(fh),
                        nfs4.WRITE4args(
                            nfs4.ANONYMOUS_STATEID,
                            off,
                            stable_how4.UNSTABLE4,
                            data[off : off + chunk],
                        ),
                    ]
                )
            wrote = time.perf_counter() - started
            started = time.perf_counter()
            got = bytearray()
            for off in range(0, size, chunk):
                res = await c.ok(
                    [nfs4.PUTFH4args(fh), nfs4.READ4args(nfs4.ANONYMOUS_STATEID, off, chunk)]
                )
                rd = res.resarray[-1]
                assert isinstance(rd, nfs4.READ4res) and rd.resok is not None
                got += rd.resok.data
            read = time.perf_counter() - started
            assert bytes(got) == data
            rows.append((flavour, size / wrote / 1e6, size / read / 1e6))
    print("\nflavour  write MB/s  read MB/s  (8 MiB, 512 KiB requests, one in flight)")
    for flavour, w, r in rows:
        print(f"{flavour:7}  {w:10.1f}  {r:9.1f}")
    assert all(w > 0 and r > 0 for _, w, r in rows)

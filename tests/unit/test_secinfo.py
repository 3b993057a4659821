"""Security negotiation and the wire credential of each request (session.client),
without sockets.

- ``choose_flavour`` and friends: the user's ``sec=`` order decides among what SECINFO
  offers; a refusal names both lists (RFC 8881 sections 2.6.3.1, 18.29).
- ``ExportNegotiation``, the mount's state machine, driven with the replies Ganesha
  gives (checked against NFS-Ganesha 4.3: a LOOKUP into an export that wants another
  flavour says NFS4ERR_WRONGSEC, SECINFO of the name from its parent answers any
  flavour, SECINFO_NO_NAME needs one the object takes).
- ``NFSClient.wire_credential``: identities (``Caller``) become AUTH_SYS or the user's
  own RPCSEC_GSS credential for the server serving the file system, with the file
  system's service; the client itself and uid 0 use the machine credential.  The
  sessions are real ``ServerSession`` objects that are never started; the caches are
  empty files (``UserCredentials`` only checks their owner before a context is made).
- ``NFSClient.lookup`` crossing into a file system with another flavour, and a file
  system whose filehandle turns NFS4ERR_WRONGSEC, with a ``ScriptedSession``: a
  ``ServerSession`` whose ``compound`` answers from a table, as the server would.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from session.client import (
    MAX_NEGOTIATION_ROUNDS,
    ROOT_AUTH_SYS,
    Caller,
    ExportNegotiation,
    NFSClient,
    NoCommonFlavour,
    choose_flavour,
    offered_flavours,
    protected_flavour,
    secinfo_name,
)
from session.gss import (
    KRB5_OID_DER,
    GssCredential,
    GssCredentialsUnavailable,
    SecFlavor,
    rpc_gss_service_t,
)
from session.mount import FileSystem
from session.rpc import AuthSys, Credential
from session.session import CompoundResult, OrphanHook, ServerSession
from session.status import NFS4Error, nfs4_error
from session.usercreds import UserCredentials
from session.xdr import nfs4
from session.xdr.const import nfs_ftype4, nfsstat4, rpc_gss_svc_t, secinfo_style4
from session.xdr.fattr import NFSAttrs, encode_fattr4

SYS, KRB5, KRB5I, KRB5P = SecFlavor.SYS, SecFlavor.KRB5, SecFlavor.KRB5I, SecFlavor.KRB5P
NONE_SVC = rpc_gss_service_t.RPC_GSS_SVC_NONE
INTEG = rpc_gss_service_t.RPC_GSS_SVC_INTEGRITY
PRIV = rpc_gss_service_t.RPC_GSS_SVC_PRIVACY
WRONGSEC = nfsstat4.NFS4ERR_WRONGSEC


def entry(flavour: SecFlavor) -> nfs4.secinfo4:
    """The secinfo4 a server sends for ``flavour``."""
    if flavour is SYS:
        return nfs4.secinfo4(1)
    service = flavour.service
    assert service is not None
    return nfs4.secinfo4(6, nfs4.rpcsec_gss_info(KRB5_OID_DER, 0, service))


def entries(*flavours: SecFlavor) -> list[nfs4.secinfo4]:
    return [entry(f) for f in flavours]


# ====================================================================== choosing
def test_the_users_order_decides_not_the_servers() -> None:
    offered = entries(KRB5P, KRB5I, KRB5, SYS)  # the server's order of preference
    assert choose_flavour([KRB5I, KRB5P], offered, "s:/x") is KRB5I
    assert choose_flavour([SYS, KRB5P], offered, "s:/x") is SYS
    assert choose_flavour([KRB5P, SYS], entries(SYS), "s:/x") is SYS


def test_no_common_flavour_names_both_lists() -> None:
    with pytest.raises(NoCommonFlavour) as info:
        choose_flavour([KRB5, KRB5I], entries(SYS), "localhost:/export")
    text = str(info.value)
    assert text == (
        "localhost:/export: the server offers sys (SECINFO); sec=krb5:krb5i allows none of them"
    )
    assert info.value.errno == errno.EPERM
    with pytest.raises(NoCommonFlavour, match="offers nothing"):
        choose_flavour([SYS], [], "s:/x")


def test_entries_this_client_cannot_use_are_named_and_skipped() -> None:
    other_mech = nfs4.secinfo4(6, nfs4.rpcsec_gss_info(b"\x2b\x06\x01", 0, rpc_gss_svc_t(2)))
    odd = [nfs4.secinfo4(0), other_mech, nfs4.secinfo4(390004), entry(KRB5P)]
    assert [secinfo_name(e) for e in odd] == [
        "none",
        "gss(oid 2b0601, RPC_GSS_SVC_INTEGRITY)",
        "flavor 390004",
        "krb5p",
    ]
    assert offered_flavours(odd) == [KRB5P]
    with pytest.raises(NoCommonFlavour, match=r"offers none, gss.*flavor 390004, krb5p"):
        choose_flavour([KRB5], odd, "s:/x")


@pytest.mark.parametrize(
    ("current", "wanted", "expected"),
    [
        (KRB5P, [KRB5P], KRB5P),  # privacy carries the checksum; krb5p-only exports
        (KRB5I, [KRB5I, SYS], KRB5I),
        (KRB5, [KRB5, KRB5I], KRB5I),  # the mount uses krb5i: SECINFO with integrity
        (SYS, [KRB5P, SYS], KRB5I),
        (KRB5, [KRB5], KRB5),  # nothing with integrity allowed: as the file system
        (SYS, [SYS], SYS),
    ],
)
def test_secinfo_is_asked_with_integrity_when_the_mount_uses_it(
    current: SecFlavor, wanted: list[SecFlavor], expected: SecFlavor
) -> None:
    assert protected_flavour(current, wanted) is expected


# ====================================================================== the mount's walk
def lookups(ops: list[nfs4.ArgOp]) -> list[bytes]:
    return [op.objname for op in ops if isinstance(op, nfs4.LOOKUP4args)]


def walk_ok(ops: list[nfs4.ArgOp], fh: bytes, offered: list[SecFlavor] | None) -> list[nfs4.ResOp]:
    """The results of a successful walk (PUT*, LOOKUP..., GETFH[, SECINFO_NO_NAME])."""
    out: list[nfs4.ResOp] = []
    for op in ops:
        if isinstance(op, nfs4.PUTROOTFH4args):
            out.append(nfs4.PUTROOTFH4res(nfsstat4.NFS4_OK))
        elif isinstance(op, nfs4.PUTFH4args):
            out.append(nfs4.PUTFH4res(nfsstat4.NFS4_OK))
        elif isinstance(op, nfs4.LOOKUP4args):
            out.append(nfs4.LOOKUP4res(nfsstat4.NFS4_OK))
        elif isinstance(op, nfs4.GETFH4args):
            out.append(nfs4.GETFH4res(nfsstat4.NFS4_OK, nfs4.GETFH4resok(fh)))
        elif isinstance(op, nfs4.SECINFO_NO_NAME4args):
            assert offered is not None
            out.append(nfs4.SECINFO_NO_NAME4res(nfsstat4.NFS4_OK, entries(*offered)))
        elif isinstance(op, nfs4.SECINFO4args):
            assert offered is not None
            out.append(nfs4.SECINFO4res(nfsstat4.NFS4_OK, entries(*offered)))
    return out


def test_the_first_flavour_reaches_the_root_and_the_export_list_decides() -> None:
    n = ExportNegotiation(["export"], [KRB5I, KRB5P], "localhost:/export")
    req = n.next_request()
    assert req is not None and req.flavour is KRB5I and req.kind == "walk"
    assert [type(op).__name__ for op in req.ops] == [
        "PUTROOTFH4args",
        "LOOKUP4args",
        "GETFH4args",
        "SECINFO_NO_NAME4args",
    ]
    sni = req.ops[-1]
    assert isinstance(sni, nfs4.SECINFO_NO_NAME4args)
    assert sni.style == secinfo_style4.SECINFO_STYLE4_CURRENT_FH
    n.receive(walk_ok(req.ops, b"root", [KRB5P, KRB5I, KRB5]))
    assert n.next_request() is None and n.finished
    assert (n.root_fh, n.flavour, n.offered) == (b"root", KRB5I, [KRB5P, KRB5I, KRB5])
    assert n.answers == [("localhost:/export", ["krb5p", "krb5i", "krb5"])]


def test_wrongsec_at_the_export_asks_secinfo_with_integrity_and_falls_back_to_sys() -> None:
    """sec=krb5p:sys against an export that takes sys only (what Ganesha answers)."""
    n = ExportNegotiation(["export"], [KRB5P, SYS], "localhost:/export")
    walk = n.next_request()
    assert walk is not None and walk.flavour is KRB5P
    n.receive(nfs4_error(WRONGSEC, 1, "LOOKUP"))
    ask = n.next_request()
    assert ask is not None and ask.kind == "secinfo"
    assert ask.flavour is KRB5P  # the walk's own: privacy protects it already
    assert isinstance(ask.ops[0], nfs4.PUTROOTFH4args)
    assert isinstance(ask.ops[-2], nfs4.GETFH4args)
    assert ask.ops[-1] == nfs4.SECINFO4args(name=b"export")
    n.receive(walk_ok(ask.ops, b"pseudo-root", [SYS]))
    walk = n.next_request()
    assert walk is not None and walk.flavour is SYS
    assert walk.ops[0] == nfs4.PUTFH4args(object=b"pseudo-root")
    assert lookups(walk.ops) == [b"export"]
    n.receive(walk_ok(walk.ops, b"export-root", [SYS]))
    assert n.next_request() is None
    assert (n.root_fh, n.flavour) == (b"export-root", SYS)
    assert [where for where, _ in n.answers] == ["localhost:/export", "localhost:/export"]


def test_secinfo_refused_with_integrity_is_asked_again_as_the_walk_went() -> None:
    n = ExportNegotiation(["a", "b"], [SYS, KRB5I], "s:/a/b")
    walk = n.next_request()
    assert walk is not None
    n.receive(nfs4_error(WRONGSEC, 2, "LOOKUP"))  # "b" wants another flavour
    ask = n.next_request()
    assert ask is not None and ask.flavour is KRB5I and lookups(ask.ops) == [b"a"]
    n.receive(nfs4_error(WRONGSEC, 0, "PUTROOTFH"))
    again = n.next_request()
    assert again is not None and again.kind == "secinfo" and again.flavour is SYS
    n.receive(walk_ok(again.ops, b"fh-a", [KRB5I]))
    walk = n.next_request()
    assert walk is not None and walk.flavour is KRB5I
    assert walk.ops[0] == nfs4.PUTFH4args(object=b"fh-a") and lookups(walk.ops) == [b"b"]
    n.receive(walk_ok(walk.ops, b"fh-b", [KRB5I]))
    assert (n.root_fh, n.flavour) == (b"fh-b", KRB5I)


def test_none_in_common_is_one_error_naming_the_path_and_both_lists() -> None:
    n = ExportNegotiation(["export"], [KRB5], "localhost:/export")
    walk = n.next_request()
    assert walk is not None
    n.receive(nfs4_error(WRONGSEC, 1, "LOOKUP"))
    ask = n.next_request()
    assert ask is not None and ask.flavour is KRB5
    with pytest.raises(NoCommonFlavour) as info:
        n.receive(walk_ok(ask.ops, b"pseudo", [SYS]))
    assert "localhost:/export: the server offers sys (SECINFO); sec=krb5 allows" in str(info.value)


def test_a_flavour_refused_at_the_root_gives_way_to_the_next() -> None:
    n = ExportNegotiation(["export"], [KRB5P, KRB5I], "s:/export")
    first = n.next_request()
    assert first is not None
    n.receive(nfs4_error(WRONGSEC, 0, "PUTROOTFH"))
    second = n.next_request()
    assert second is not None and second.flavour is KRB5I and second.kind == "walk"
    with pytest.raises(NoCommonFlavour, match="s:/: the server refuses every flavour of sec"):
        n.receive(nfs4_error(WRONGSEC, 0, "PUTROOTFH"))  # nothing left to try


def test_wrongsec_after_the_last_lookup_is_about_the_export_root() -> None:
    n = ExportNegotiation(["x", "export"], [KRB5, SYS], "s:/x/export")
    walk = n.next_request()
    assert walk is not None
    n.receive(nfs4_error(WRONGSEC, 3, "GETFH"))
    ask = n.next_request()
    assert ask is not None and lookups(ask.ops) == [b"x"]
    assert ask.ops[-1] == nfs4.SECINFO4args(name=b"export")


def test_a_server_without_secinfo_no_name_keeps_the_flavour_that_worked() -> None:
    n = ExportNegotiation(["export"], [KRB5I, KRB5P], "s:/export")
    walk = n.next_request()
    assert walk is not None
    n.receive(nfs4_error(nfsstat4.NFS4ERR_NOTSUPP, 3, "SECINFO_NO_NAME"))
    walk = n.next_request()
    assert walk is not None and walk.kind == "walk"
    assert not any(isinstance(op, nfs4.SECINFO_NO_NAME4args) for op in walk.ops)
    n.receive(walk_ok(walk.ops, b"root", None))
    assert (n.root_fh, n.flavour, n.offered) == (b"root", KRB5I, [KRB5I])


def test_other_errors_count_their_op_from_the_root() -> None:
    """After the walk restarted at /a, NOENT for /a/b/c is reported at op 3, as in
    PUTROOTFH, LOOKUP a, LOOKUP b, LOOKUP c (the mount's path error names "c")."""
    n = ExportNegotiation(["a", "b", "c"], [KRB5, SYS], "s:/a/b/c")
    walk = n.next_request()
    assert walk is not None
    n.receive(nfs4_error(WRONGSEC, 2, "LOOKUP"))
    ask = n.next_request()
    assert ask is not None
    n.receive(walk_ok(ask.ops, b"fh-a", [SYS]))
    walk = n.next_request()
    assert walk is not None and lookups(walk.ops) == [b"b", b"c"]
    with pytest.raises(NFS4Error) as info:
        n.receive(nfs4_error(nfsstat4.NFS4ERR_NOENT, 2, "LOOKUP"))
    assert (info.value.status, info.value.op_index, info.value.op_name) == (
        nfsstat4.NFS4ERR_NOENT,
        3,
        "LOOKUP",
    )


def test_a_server_that_contradicts_itself_is_given_up_on() -> None:
    """SECINFO says sys, the LOOKUP with sys says WRONGSEC again, forever."""
    n = ExportNegotiation(["export"], [KRB5, SYS], "s:/export")
    with pytest.raises(NoCommonFlavour, match=f"did not settle in {MAX_NEGOTIATION_ROUNDS}"):
        for _ in range(10 * MAX_NEGOTIATION_ROUNDS):
            req = n.next_request()
            assert req is not None
            if req.kind == "walk":
                n.receive(nfs4_error(WRONGSEC, len(lookups(req.ops)), "LOOKUP"))
            else:
                n.receive(walk_ok(req.ops, b"p", [SYS]))


# ====================================================================== wire credentials
def kerberos_session(host: str, machine_host: str = "localhost") -> ServerSession:
    machine = GssCredential(f"nfs@{machine_host}", INTEG, label="machine credential host/t")
    return ServerSession(host, 2049, b"owner", machine_cred=machine)


def users_hook(tmp_path: Path) -> Callable[[ServerSession], UserCredentials]:
    """The runner's per-server credentials, with the caches under ``tmp_path``."""

    def make(session: ServerSession) -> UserCredentials:
        machine = session.machine_cred
        assert isinstance(machine, GssCredential)
        return UserCredentials(
            machine.target,
            machine.service,
            machine=machine,
            ccache_template=f"FILE:{tmp_path}/krb5cc_%{{uid}}",
            proc=str(tmp_path / "proc"),
        )

    return make


def cache_for(tmp_path: Path, uid: int) -> Path:
    """An (empty) FILE cache owned by ``uid``: enough until a context is created."""
    path = tmp_path / f"krb5cc_{uid}"
    path.write_bytes(b"")
    os.chown(path, uid, uid)
    return path


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def test_an_auth_sys_mount_sends_identities_as_they_are() -> None:
    session = ServerSession("127.0.0.1", 2049, b"owner")  # AUTH_SYS machine credential
    client = NFSClient(session, "/export", b"p")
    caller = Caller(1000, 1000, [4, 24], pid=123)
    assert client.wire_credential(caller, session, SYS) is caller
    assert client.wire_credential(None, session, SYS) is None  # the session's own
    assert not client.negotiates


def test_sys_file_systems_of_a_kerberos_mount_send_auth_sys() -> None:
    session = kerberos_session("127.0.0.1")
    client = NFSClient(session, "/export", b"p")
    client.sec_flavours = [KRB5P, SYS]
    caller = Caller(1000, 1000)
    assert client.negotiates
    assert client.wire_credential(caller, session, SYS) is caller
    assert client.wire_credential(None, session, SYS) is ROOT_AUTH_SYS


@pytest.mark.parametrize("flavour", [KRB5, KRB5I, KRB5P])
def test_the_client_and_root_use_the_machine_credential_with_the_flavours_service(
    flavour: SecFlavor,
) -> None:
    session = kerberos_session("127.0.0.1")
    machine = session.machine_cred
    assert isinstance(machine, GssCredential)
    client = NFSClient(session, "/export", b"p")
    client.sec_flavours = [flavour]
    for who in (None, Caller(0, 0, pid=1)):
        wire = client.wire_credential(who, session, flavour)
        assert isinstance(wire, GssCredential)
        assert (wire.target, wire.label, wire.service) == (
            "nfs@localhost",
            "machine credential host/t",
            flavour.service,
        )
        assert wire.uid is None  # open owners: as root


@needs_root
def test_each_user_gets_their_own_credential_per_server(tmp_path: Path) -> None:
    """uid 51010 and 51011 on two servers: four credentials, each for its server
    (``nfs@HOST`` of the session's machine credential) with the flavour's service."""
    first = kerberos_session("127.0.0.1", "localhost")
    second = kerberos_session("127.0.0.2", "dest.example")
    client = NFSClient(first, "/export", b"p")
    client.sec_flavours = [KRB5P, KRB5I]
    client.user_credentials = users_hook(tmp_path)
    for uid in (51010, 51011):
        cache_for(tmp_path, uid)
    alice, bob = Caller(51010, 51010, pid=None), Caller(51011, 51011, pid=None)
    seen: dict[tuple[str, int], Credential | None] = {}
    for session in (first, second):
        for who in (alice, bob):
            wire = client.wire_credential(who, session, KRB5P)
            assert isinstance(wire, GssCredential)
            assert wire.service == PRIV and wire.uid == who.uid
            assert wire.label == f"uid {who.uid}"
            seen[(wire.target, who.uid)] = wire
    assert sorted(seen) == [
        ("nfs@dest.example", 51010),
        ("nfs@dest.example", 51011),
        ("nfs@localhost", 51010),
        ("nfs@localhost", 51011),
    ]
    # Another flavour on the same server: the same principal and context, integrity.
    again = client.wire_credential(alice, first, KRB5I)
    assert isinstance(again, GssCredential)
    assert again.service == INTEG and again.target == "nfs@localhost"
    assert client.users_on(first) is client.users_on(first)
    assert client.users_on(first) is not client.users_on(second)


@needs_root
def test_the_callers_krb5ccname_is_followed(tmp_path: Path) -> None:
    """A Caller's pid leads to its KRB5CCNAME (here a fake /proc/PID/environ)."""
    session = kerberos_session("127.0.0.1")
    client = NFSClient(session, "/export", b"p")
    client.sec_flavours = [KRB5]
    client.user_credentials = users_hook(tmp_path)
    own = tmp_path / "alice-own.ccache"
    own.write_bytes(b"")
    os.chown(own, 51012, 51012)
    (tmp_path / "proc" / "4242").mkdir(parents=True)
    (tmp_path / "proc" / "4242" / "environ").write_bytes(
        b"HOME=/x\0KRB5CCNAME=FILE:" + os.fsencode(own) + b"\0"
    )
    wire = client.wire_credential(Caller(51012, 51012, pid=4242), session, KRB5)
    assert isinstance(wire, GssCredential) and wire.service == NONE_SVC
    assert client.users_on(session).statistics().from_environ == 1


def test_a_user_without_credentials_is_refused_at_once(tmp_path: Path) -> None:
    session = kerberos_session("127.0.0.1")
    client = NFSClient(session, "/export", b"p")
    client.sec_flavours = [KRB5]
    client.user_credentials = users_hook(tmp_path)
    with pytest.raises(GssCredentialsUnavailable) as info:
        client.wire_credential(Caller(51013, 51013), session, KRB5)
    assert info.value.errno == errno.EACCES
    assert "uid 51013: no Kerberos credentials" in str(info.value)
    assert "run kinit" in str(info.value)


def test_a_wire_credential_passed_in_goes_as_it_is() -> None:
    session = kerberos_session("127.0.0.1")
    client = NFSClient(session, "/export", b"p")
    client.sec_flavours = [KRB5]
    other = GssCredential("nfs@elsewhere", PRIV)
    assert client.wire_credential(other, session, KRB5) is other


# ====================================================================== the client's paths
Reply = list[nfs4.ResOp] | NFS4Error


class ScriptedSession(ServerSession):
    """A ``ServerSession`` that is never started: ``compound`` answers with
    ``answer(ops, cred)`` (results after SEQUENCE, or an NFS4Error to raise), and
    records what was sent and with which credential."""

    def __init__(self, answer: Callable[[list[nfs4.ArgOp], Credential | None], Reply]) -> None:
        super().__init__(
            "127.0.0.1", 2049, b"owner", machine_cred=GssCredential("nfs@localhost", INTEG)
        )
        self.answer = answer
        self.sent: list[tuple[list[nfs4.ArgOp], Credential | None]] = []

    async def compound(
        self,
        ops: list[nfs4.ArgOp],
        cred: Credential | None = None,
        cachethis: bool | None = None,
        on_orphan: OrphanHook | None = None,
    ) -> CompoundResult:
        self.sent.append((ops, cred))
        reply = self.answer(ops, cred)
        if isinstance(reply, NFS4Error):
            raise reply
        return CompoundResult(reply, 0)


def flavour_sent(cred: Credential | None) -> SecFlavor:
    if isinstance(cred, AuthSys):
        return SYS
    assert isinstance(cred, GssCredential)
    return {NONE_SVC: KRB5, INTEG: KRB5I, PRIV: KRB5P}[cred.service]


def attrs_of(major: int) -> nfs4.GETATTR4res:
    fattr = encode_fattr4(NFSAttrs(fsid=nfs4.fsid4(major, 0), type=nfs_ftype4.NF4DIR, mode=0o755))
    return nfs4.GETATTR4res(nfsstat4.NFS4_OK, nfs4.GETATTR4resok(fattr))


def mounted_client(session: ScriptedSession, flavours: list[SecFlavor]) -> NFSClient:
    """A client whose root (fh b"root", fsid 1) is known, flavour ``flavours[0]``."""
    client = NFSClient(session, "/export", b"p")
    client.sec_flavours = flavours
    client.root_flavour = flavours[0]
    client.root_fh = b"root"
    client.learn_fh(b"root", NFSAttrs(fsid=nfs4.fsid4(1, 0)))
    return client


async def test_lookup_into_an_export_with_another_flavour() -> None:
    """krb5p:krb5i mount; /sub is an export of its own that takes krb5i only: LOOKUP
    says WRONGSEC, SECINFO (asked with krb5p) says krb5i, the LOOKUP again with krb5i,
    and the new file system keeps krb5i while the root keeps krb5p."""

    def answer(ops: list[nfs4.ArgOp], cred: Credential | None) -> Reply:
        flavour = flavour_sent(cred)
        if isinstance(ops[1], nfs4.SECINFO4args):
            return [
                nfs4.PUTFH4res(nfsstat4.NFS4_OK),
                nfs4.SECINFO4res(nfsstat4.NFS4_OK, entries(KRB5I)),
            ]
        if isinstance(ops[1], nfs4.LOOKUP4args):
            if flavour is not KRB5I:
                return nfs4_error(WRONGSEC, 1, "LOOKUP")
            return [
                nfs4.PUTFH4res(nfsstat4.NFS4_OK),
                nfs4.LOOKUP4res(nfsstat4.NFS4_OK),
                nfs4.GETFH4res(nfsstat4.NFS4_OK, nfs4.GETFH4resok(b"sub")),
                attrs_of(2),
            ]
        raise AssertionError(f"unexpected {ops}")

    session = ScriptedSession(answer)
    client = mounted_client(session, [KRB5P, KRB5I])
    fh, attrs = await client.lookup(b"root", b"sub")
    assert fh == b"sub" and attrs.fsid == nfs4.fsid4(2, 0)
    kinds = [(type(ops[1]).__name__, flavour_sent(cred)) for ops, cred in session.sent]
    assert kinds == [
        ("LOOKUP4args", KRB5P),
        ("SECINFO4args", KRB5P),
        ("LOOKUP4args", KRB5I),
    ]
    assert client.flavour_of(client.fs_of(b"sub")) is KRB5I
    assert client.flavour_of(client.fs_of(b"root")) is KRB5P


async def test_lookup_where_none_of_sec_is_offered_is_eperm() -> None:
    def answer(ops: list[nfs4.ArgOp], cred: Credential | None) -> Reply:
        if isinstance(ops[1], nfs4.SECINFO4args):
            return [
                nfs4.PUTFH4res(nfsstat4.NFS4_OK),
                nfs4.SECINFO4res(nfsstat4.NFS4_OK, entries(SYS)),
            ]
        return nfs4_error(WRONGSEC, 1, "LOOKUP")

    client = mounted_client(ScriptedSession(answer), [KRB5])
    with pytest.raises(NoCommonFlavour, match="sub: the server offers sys") as info:
        await client.lookup(b"root", b"sub")
    assert info.value.errno == errno.EPERM


async def test_a_file_system_whose_filehandle_turns_wrongsec_is_negotiated_again() -> None:
    """After a move the file system takes krb5i only: GETATTR says WRONGSEC at PUTFH;
    SECINFO_NO_NAME, refused with krb5p too, is answered with krb5i; GETATTR again."""

    def answer(ops: list[nfs4.ArgOp], cred: Credential | None) -> Reply:
        if flavour_sent(cred) is not KRB5I:
            return nfs4_error(WRONGSEC, 0, "PUTFH")
        if isinstance(ops[1], nfs4.SECINFO_NO_NAME4args):
            return [
                nfs4.PUTFH4res(nfsstat4.NFS4_OK),
                nfs4.SECINFO_NO_NAME4res(nfsstat4.NFS4_OK, entries(KRB5I)),
            ]
        return [nfs4.PUTFH4res(nfsstat4.NFS4_OK), attrs_of(1)]

    session = ScriptedSession(answer)
    client = mounted_client(session, [KRB5P, KRB5, KRB5I])
    attrs = await client.getattr(b"root", Caller(0, 0))
    assert attrs.fsid == nfs4.fsid4(1, 0)
    kinds = [(type(ops[1]).__name__, flavour_sent(cred)) for ops, cred in session.sent]
    assert kinds == [
        ("GETATTR4args", KRB5P),
        ("SECINFO_NO_NAME4args", KRB5),  # krb5p is the one refused: not asked again
        ("SECINFO_NO_NAME4args", KRB5I),
        ("GETATTR4args", KRB5I),
    ]
    root_fs = client.fs_of(b"root")
    assert isinstance(root_fs, FileSystem) and client.flavour_of(root_fs) is KRB5I


async def test_a_file_system_that_refuses_every_flavour_is_eperm_once() -> None:
    client = mounted_client(
        ScriptedSession(lambda ops, cred: nfs4_error(WRONGSEC, 0, "PUTFH")), [KRB5P, KRB5I]
    )
    with pytest.raises(NoCommonFlavour, match="refuses every flavour of sec=krb5p:krb5i"):
        await client.getattr(b"root")


async def test_an_auth_sys_mount_never_negotiates() -> None:
    session = ScriptedSession(lambda ops, cred: nfs4_error(WRONGSEC, 1, "LOOKUP"))
    client = mounted_client(session, [SYS])
    with pytest.raises(NFS4Error) as info:
        await client.lookup(b"root", b"sub", Caller(1000, 1000))
    assert info.value.status == WRONGSEC and len(session.sent) == 1


async def test_a_file_system_a_referral_brought_is_asked_its_flavour_first() -> None:
    """A referral's file system starts with the root's flavour (krb5i, which reached
    it); before its first call SECINFO_NO_NAME says it offers krb5p too, which the
    user prefers: the GETATTR goes with krb5p."""

    def answer(ops: list[nfs4.ArgOp], cred: Credential | None) -> Reply:
        if isinstance(ops[1], nfs4.SECINFO_NO_NAME4args):
            offered = entries(KRB5I, KRB5P)
            return [
                nfs4.PUTFH4res(nfsstat4.NFS4_OK),
                nfs4.SECINFO_NO_NAME4res(nfsstat4.NFS4_OK, offered),
            ]
        return [nfs4.PUTFH4res(nfsstat4.NFS4_OK), attrs_of(9)]

    session = ScriptedSession(answer)
    client = mounted_client(session, [KRB5P, KRB5I])
    client.root_flavour = KRB5I
    far = client.adopt_filesystem(b"far", NFSAttrs(fsid=nfs4.fsid4(9, 0)), ["far"], session)
    assert client.flavour_of(far) is KRB5I
    await client.getattr(b"far")
    await client.getattr(b"far")  # asked once
    kinds = [(type(ops[1]).__name__, flavour_sent(cred)) for ops, cred in session.sent]
    assert kinds == [
        ("SECINFO_NO_NAME4args", KRB5I),
        ("GETATTR4args", KRB5P),
        ("GETATTR4args", KRB5P),
    ]
    assert client.flavour_of(far) is KRB5P

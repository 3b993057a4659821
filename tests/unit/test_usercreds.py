"""Per-user Kerberos credentials (session.usercreds): which cache, the ownership checks,
one credential per user, EACCES with one log line, and two users against one server.

Real caches from the ``krb5_realm`` fixture (alice's and bob's tickets) are copied into
files owned by made-up uids (the tests run as root); /proc is a fake directory where
a test needs a process environment.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from contrib.krb5 import FusenfsRealm, realm_for_tests
from session.gss import (
    CcacheSource,
    GssAccepted,
    GssAcceptor,
    GssCredential,
    GssCredentialsUnavailable,
    acceptor_credentials,
    rpc_gss_service_t,
)
from session.rpc import RpcCall
from session.transport import RpcConnection, serve_connection
from session.usercreds import (
    CheckedCcacheSource,
    UserCredentials,
    ccache_path,
    environ_ccache,
)

ALICE_UID = 51000
BOB_UID = 51001
PRIV = rpc_gss_service_t.RPC_GSS_SVC_PRIVACY

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture(scope="session")
def krb5_realm(request: pytest.FixtureRequest) -> FusenfsRealm:
    """The throw-away realm (contrib.krb5.shared_realm), one per test session."""
    return realm_for_tests(request.config)


def own_copy(realm: FusenfsRealm, user: str, path: Path, uid: int) -> Path:
    """A copy of ``user``'s ticket cache at ``path``, owned by ``uid``."""
    shutil.copyfile(realm.ccaches[user].removeprefix("FILE:"), path)
    os.chown(path, uid, uid)
    os.chmod(path, 0o600)
    return path


def fake_proc(root: Path, pid: int, environ: dict[str, str]) -> str:
    (root / str(pid)).mkdir(parents=True)
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in environ.items())
    (root / str(pid) / "environ").write_bytes(data)
    return str(root)


def test_environ_ccache(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 42, {"HOME": "/x", "KRB5CCNAME": "FILE:/tmp/mine", "Z": "1"})
    assert environ_ccache(42, proc) == "FILE:/tmp/mine"
    fake_proc(tmp_path, 43, {"HOME": "/x"})
    assert environ_ccache(43, proc) is None
    assert environ_ccache(44, proc) is None  # no such process


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("FILE:/tmp/krb5cc_1000", "/tmp/krb5cc_1000"),
        ("/tmp/krb5cc_1000", "/tmp/krb5cc_1000"),
        ("KEYRING:persistent:1000", None),
        ("KCM:1000", None),
        ("DIR:/run/user/1000/krb5cc", None),
        ("FILE:relative", None),
    ],
)
def test_ccache_path(name: str, path: str | None) -> None:
    assert ccache_path(name) == path


def test_checked_source_reads_a_cache_the_user_owns(
    krb5_realm: FusenfsRealm, tmp_path: Path
) -> None:
    cache = own_copy(krb5_realm, "alice", tmp_path / "cc", ALICE_UID)
    source = CheckedCcacheSource(str(cache), ALICE_UID)
    creds = source()
    assert str(creds.name) == f"alice@{krb5_realm.realm}"
    source.close()


def test_checked_source_refuses(krb5_realm: FusenfsRealm, tmp_path: Path) -> None:
    cache = own_copy(krb5_realm, "alice", tmp_path / "cc", ALICE_UID)
    with pytest.raises(GssCredentialsUnavailable, match=f"owned by uid {ALICE_UID}"):
        CheckedCcacheSource(str(cache), BOB_UID)()  # bob pointing at alice's cache
    link = tmp_path / "link"
    link.symlink_to(cache)
    os.lchown(link, BOB_UID, BOB_UID)
    with pytest.raises(GssCredentialsUnavailable, match="cannot open"):
        CheckedCcacheSource(str(link), BOB_UID)()  # a symlink is not followed
    with pytest.raises(GssCredentialsUnavailable, match=r"does not exist\); run kinit") as info:
        CheckedCcacheSource(str(tmp_path / "none"), BOB_UID)()
    assert info.value.errno == errno.EACCES
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a ccache")
    os.chown(garbage, BOB_UID, BOB_UID)
    with pytest.raises(GssCredentialsUnavailable, match="no usable Kerberos tickets"):
        CheckedCcacheSource(str(garbage), BOB_UID)()


def test_which_cache_and_one_credential_per_user(krb5_realm: FusenfsRealm, tmp_path: Path) -> None:
    own_copy(krb5_realm, "alice", tmp_path / f"krb5cc_{ALICE_UID}", ALICE_UID)
    elsewhere = own_copy(krb5_realm, "alice", tmp_path / "alice-elsewhere", ALICE_UID)
    proc = fake_proc(tmp_path / "proc", 100, {"KRB5CCNAME": f"FILE:{elsewhere}"})
    fake_proc(tmp_path / "proc", 101, {"KRB5CCNAME": "KEYRING:persistent:51000"})
    users = UserCredentials(
        "nfs@localhost", PRIV, ccache_template=f"FILE:{tmp_path}/krb5cc_%{{uid}}", proc=proc
    )
    assert users.ccache_for(ALICE_UID, 100) == (f"FILE:{elsewhere}", "KRB5CCNAME of pid 100")
    assert users.ccache_for(ALICE_UID, 101)[1] == f"default for uid {ALICE_UID}"
    assert users.ccache_for(ALICE_UID, None)[0] == f"FILE:{tmp_path}/krb5cc_{ALICE_UID}"
    a1 = users.for_user(ALICE_UID, 100)
    a2 = users.for_user(ALICE_UID, 100)
    a3 = users.for_user(ALICE_UID, 999)  # no such process: the default cache
    assert a1 is a2 and a1 is not a3
    assert a1.uid == ALICE_UID and a1.service == PRIV
    assert users.statistics().credentials == 2


def test_user_without_credentials_is_refused_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    users = UserCredentials(
        "nfs@localhost",
        ccache_template=f"FILE:{tmp_path}/krb5cc_%{{uid}}",
        proc=str(tmp_path),
        clock=lambda: now[0],
    )
    caplog.set_level(logging.WARNING, logger="session.gss")
    for _ in range(5):
        with pytest.raises(GssCredentialsUnavailable, match="run kinit") as info:
            users.for_user(BOB_UID, 77)
        assert info.value.errno == errno.EACCES
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and f"uid {BOB_UID}: no Kerberos credentials" in lines[0]
    now[0] = 61.0
    with pytest.raises(GssCredentialsUnavailable):
        users.for_user(BOB_UID, 77)
    assert len(caplog.records) == 2
    assert users.statistics().denied == 6


def test_root_uses_the_machine_credential(krb5_realm: FusenfsRealm, tmp_path: Path) -> None:
    machine = GssCredential("nfs@localhost", source=CcacheSource(krb5_realm.ccaches["bob"]))
    users = UserCredentials(
        "nfs@localhost", PRIV, machine=machine, ccache_template=f"FILE:{tmp_path}/cc_%{{uid}}"
    )
    root = users.for_user(0, 1)
    assert root.service == PRIV and root.context is machine.context
    nobody = UserCredentials(
        "nfs@localhost",
        machine=machine,
        root_uses_machine=False,
        ccache_template=f"FILE:{tmp_path}/cc_%{{uid}}",
    )
    with pytest.raises(GssCredentialsUnavailable):
        nobody.for_user(0, 1)
    with pytest.raises(ValueError, match="uid"):
        UserCredentials("nfs@localhost", ccache_template="FILE:/tmp/fixed")


@asynccontextmanager
async def gss_server(acceptor: GssAcceptor, seen: list[str]) -> AsyncIterator[RpcConnection]:
    async def handle(call: RpcCall) -> bytes | None:
        out = acceptor.accept(call)
        if not isinstance(out, GssAccepted):
            return out
        seen.append(out.principal)
        return acceptor.reply(out, out.args)

    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server_end, handle)
        conn = RpcConnection(client_end, peer="memory")
        await nursery.start(conn.run)
        try:
            yield conn
        finally:
            await conn.aclose()
            nursery.cancel_scope.cancel()


async def test_two_users_each_with_their_own_principal(
    krb5_realm: FusenfsRealm, tmp_path: Path
) -> None:
    own_copy(krb5_realm, "alice", tmp_path / f"krb5cc_{ALICE_UID}", ALICE_UID)
    own_copy(krb5_realm, "bob", tmp_path / f"krb5cc_{BOB_UID}", BOB_UID)
    users = UserCredentials(
        "nfs@localhost", PRIV, ccache_template=f"FILE:{tmp_path}/krb5cc_%{{uid}}"
    )
    assert krb5_realm.nfs_keytab is not None
    acceptor = GssAcceptor(acceptor_credentials(krb5_realm.nfs_keytab.name))
    seen: list[str] = []
    with trio.fail_after(20):
        async with gss_server(acceptor, seen) as conn:
            for uid in (ALICE_UID, BOB_UID, ALICE_UID, BOB_UID):
                await conn.call(100003, 4, 1, b"x", users.for_user(uid))
            # bob's cache goes away: his next context cannot be made (EACCES), alice's
            # context is untouched.
            (tmp_path / f"krb5cc_{BOB_UID}").unlink()
            users.for_user(BOB_UID).forget_context()
            with pytest.raises(GssCredentialsUnavailable, match="does not exist") as info:
                await conn.call(100003, 4, 1, b"x", users.for_user(BOB_UID))
            assert info.value.errno == errno.EACCES
            await conn.call(100003, 4, 1, b"x", users.for_user(ALICE_UID))
    realm = krb5_realm.realm
    assert seen == [f"alice@{realm}", f"bob@{realm}"] * 2 + [f"alice@{realm}"]
    assert len(acceptor.handles) == 2  # one context per user
    users.close()

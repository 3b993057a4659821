"""Mount option and server spec parsing (fusenfs.options): nfs(5) and mount(8) options,
each with its meaning or refused with a one-line reason naming it."""

from __future__ import annotations

import pytest

from fusenfs.options import (
    MountOptionError,
    MountOptions,
    check_combination,
    parse_options,
    parse_server_port,
    parse_server_spec,
)


def test_defaults_are_nfs5s_for_tcp() -> None:
    o = parse_options("")
    assert (o.timeo, o.retrans, o.hard, o.softerr) == (60.0, 2, True, False)
    assert (o.port, o.sec, o.nconnect, o.lookupcache, o.local_lock) == (
        2049,
        "sys",
        1,
        "all",
        "none",
    )
    assert (o.cto, o.noac, o.bg, o.retry_minutes) == (True, False, False, 2)
    assert o.budget == 180.0
    assert parse_options("bg").retry_minutes == 10000
    assert parse_options("bg,retry=5").retry_minutes == 5
    assert parse_options("retry=0").retry_minutes == 0


def test_parses_the_nfs5_options() -> None:
    o = parse_options("port=20490,ro,rsize=65536,wsize=131072,timeo=50,retrans=2,actimeo=7")
    assert (o.port, o.ro, o.rsize, o.wsize, o.timeo, o.retrans) == (
        20490,
        True,
        65536,
        131072,
        5.0,
        2,
    )
    assert (o.acregmin, o.acregmax, o.acdirmin, o.acdirmax) == (7, 7, 7, 7)
    o = parse_options("acregmin=1,acdirmax=90,allow_other,foreground,debug,sec=sys")
    assert (o.acregmin, o.acdirmax, o.allow_other, o.foreground, o.debug) == (
        1,
        90,
        True,
        True,
        True,
    )


def test_later_options_win() -> None:
    assert parse_options("ro,rw").ro is False
    assert parse_options("soft,hard").hard is True
    o = parse_options("hard,softerr")
    assert (o.hard, o.softerr) == (False, True)
    o = parse_options("softerr,soft")
    assert (o.hard, o.softerr) == (False, False)
    assert parse_options("noexec,exec").noexec is False
    assert parse_options("nocto,cto").cto is True
    assert parse_options("bg,fg").bg is False


def test_several_o_strings_add_up() -> None:
    o = parse_options("port=1")
    parse_options("soft,timeo=5", o)
    assert (o.port, o.hard, o.timeo) == (1, False, 0.5)


@pytest.mark.parametrize(
    "text", ["vers=4.1", "nfsvers=4.1", "vers=4", "minorversion=1", "vers=4,minorversion=1"]
)
def test_nfs_version_41_is_accepted(text: str) -> None:
    parse_options(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vers=3", "NFS version 4.1 only"),
        ("nfsvers=2", "NFS version 4.1 only"),
        ("vers=4.0", "NFSv4.0 is not supported"),
        ("vers=4.2", "NFSv4.2 is not supported yet"),
        ("minorversion=0", "NFSv4.0 is not supported"),
        ("minorversion=2", "NFSv4.2 is not supported yet"),
        ("vers=5", "NFS version 4.1 only"),
        ("proto=udp", "TCP only"),
        ("proto=rdma", "RDMA is not supported"),
        ("proto=sctp", "must be tcp"),
        ("udp", "TCP only"),
        ("rdma", "RDMA"),
        ("sec=krb5:krb5i:krb5", "sec=krb5:krb5i:krb5: krb5 given twice"),
        ("sec=krb5x", "unknown flavour 'krb5x' .known: sys, krb5, krb5i, krb5p"),
        ("sec=none", "unknown flavour 'none'"),
        ("sec=", "sec=: unknown flavour ''"),
        ("keytab=etc/krb5.keytab", "keytab='etc/krb5.keytab': must be an absolute path"),
        ("principal=host/a b", "principal='host/a b': not a Kerberos principal name"),
        ("principal=a@b@c", "not a Kerberos principal name"),
        ("mountport=635", "NFSv2/v3 option"),
        ("acl", "NFSv3"),
        ("fsc", "FS-Cache"),
        ("resvport", "ordinary port"),
        ("strictatime", "libfuse cannot set this flag"),
        ("nodiratime", "libfuse cannot set this flag"),
        ("lazytime", "libfuse"),
        ("nconnect=0", "nconnect=0: must be between 1 and 16"),
        ("nconnect=17", "between 1 and 16"),
        ("clientaddr=not-an-address", "not an IPv4 or IPv6 address"),
        ("timeo=0", "timeo=0: must be between 1 and 6000"),
        ("retry=-1", "not a whole number"),
    ],
)
def test_refused_options_say_why(text: str, message: str) -> None:
    with pytest.raises(MountOptionError, match=message) as info:
        parse_options(text)
    assert text.partition("=")[0].partition(":")[0] in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "value", ["1_048_576", "+65536", "-65536", "0x10000", " 65536", "65 536", "6.5e4", ""]
)
def test_sizes_are_decimal_digits_only(value: str) -> None:
    with pytest.raises(MountOptionError, match=r"rsize=.*: not a whole number|needs a value"):
        parse_options(f"rsize={value}")


def test_rsize_and_wsize_bounds_and_rounding() -> None:
    # nfs(5): a size that is not a multiple of 1024 is rounded down to one.
    assert parse_options("rsize=65537,wsize=4097").rsize == 65536
    assert parse_options("wsize=4097").wsize == 4096
    with pytest.raises(MountOptionError, match="rsize=1000: must be between 1024"):
        parse_options("rsize=1000")
    with pytest.raises(MountOptionError, match="wsize=999999999: must be between"):
        parse_options("wsize=999999999")


def test_port() -> None:
    assert parse_options("port=0").port == 2049  # nfs(5), NFSv4: the standard port
    with pytest.raises(MountOptionError, match="port=70000: must be between 0 and 65535"):
        parse_options("port=70000")


def test_noac_means_actimeo_0_and_synchronous_writes() -> None:
    o = parse_options("actimeo=30,noac")
    assert o.cache_times() == (0, 0, 0, 0)
    assert o.synchronous and "sync" in o.kernel_flags()
    # nfs(5): noac wins over the times, whatever the order.
    assert parse_options("noac,acregmin=10").cache_times() == (0, 0, 0, 0)
    assert not parse_options("noac,async").synchronous
    assert parse_options("noac,ac").cache_times() == (3, 60, 30, 60)
    assert parse_options("sync").synchronous
    assert not parse_options("").synchronous


def test_kernel_flags() -> None:
    assert parse_options("").kernel_flags() == ["rw", "nosuid", "nodev"]  # FUSE's default
    # Through mount(8), suid and dev are on unless told otherwise (mount(8) defaults).
    assert MountOptions(via_mount8=True).kernel_flags() == ["rw", "suid", "dev"]
    o = parse_options("ro,noexec,suid,dev,sync,dirsync,noatime")
    assert o.kernel_flags() == ["ro", "noexec", "suid", "dev", "sync", "dirsync", "noatime"]
    assert "noatime" not in parse_options("noatime,relatime").kernel_flags()
    assert "noatime" not in parse_options("noatime,atime").kernel_flags()


def test_mount8s_own_options_are_accepted_and_recorded() -> None:
    text = "_netdev,nofail,noauto,auto,defaults,nouser,x-systemd.automount,comment=home,user=joe"
    o = parse_options(text)
    assert o.mount8 == text.split(",")
    assert o.kernel_flags() == ["rw", "nosuid", "nodev"]


def test_user_implies_noexec_nosuid_nodev_unless_overridden() -> None:
    o = MountOptions(via_mount8=True)
    parse_options("user", o)
    assert o.kernel_flags() == ["rw", "noexec", "nosuid", "nodev"]
    o = MountOptions(via_mount8=True)
    parse_options("users,exec", o)
    assert o.kernel_flags() == ["rw", "nosuid", "nodev"]
    o = MountOptions(via_mount8=True)
    parse_options("owner", o)
    assert o.kernel_flags() == ["rw", "nosuid", "nodev"]
    assert o.mount8 == ["owner"]


def test_accepted_nfs5_options() -> None:
    o = parse_options("intr,proto=tcp,tcp,noresvport,nofsc,clientaddr=127.0.0.1,nconnect=4")
    assert (o.intr, o.clientaddr, o.nconnect) == (True, "127.0.0.1", 4)
    assert parse_options("nointr").intr is False
    assert parse_options("clientaddr=::1").clientaddr == "::1"
    assert parse_options("namlen=100").namlen == 100
    assert parse_options("namlen=255").namlen == 255
    assert parse_options("namlen=1024").namlen == 255
    assert parse_options("nocto").cto is False


def test_sec_is_a_list_of_flavours_in_order_of_preference() -> None:
    """nfs(5): sec=krb5p:krb5i:krb5:sys; fusenfs uses the first the server offers."""
    o = parse_options("sec=krb5p:krb5i:krb5:sys")
    assert o.sec == "krb5p:krb5i:krb5:sys"
    assert [f.value for f in o.sec_flavours] == ["krb5p", "krb5i", "krb5", "sys"]
    assert o.kerberos
    assert parse_options("sec=KRB5I").sec == "krb5i"
    assert parse_options("sec=krb5,sec=sys").sec == "sys"  # the later one wins
    assert not parse_options("sec=sys").kerberos
    assert "sec=krb5p:sys" in parse_options("sec=krb5p:sys").describe().split(",")


def test_the_machine_credential_options() -> None:
    o = parse_options("sec=krb5p,keytab=/etc/fusenfs.keytab,principal=nfs-client/c.example.org")
    check_combination(o)
    assert (o.keytab, o.principal) == ("/etc/fusenfs.keytab", "nfs-client/c.example.org")
    words = o.describe().split(",")
    assert "keytab=/etc/fusenfs.keytab" in words
    assert "principal=nfs-client/c.example.org" in words
    assert parse_options("keytab=FILE:/k.keytab").keytab == "/k.keytab"
    assert parse_options("principal=host/c.example.org@EXAMPLE.ORG").principal == (
        "host/c.example.org@EXAMPLE.ORG"
    )
    defaults = parse_options("sec=krb5")
    assert (defaults.keytab, defaults.principal) == ("", "")  # host/FQDN, /etc/krb5.keytab
    assert not any(w.startswith(("keytab=", "principal=")) for w in defaults.describe().split(","))


@pytest.mark.parametrize("text", ["keytab=/etc/x.keytab", "principal=host/c", "sec=sys,keytab=/k"])
def test_machine_credential_options_need_a_kerberos_flavour(text: str) -> None:
    o = parse_options(text)
    with pytest.raises(MountOptionError, match="has no Kerberos flavour"):
        check_combination(o)


def test_lookupcache() -> None:
    assert parse_options("").lookupcache == "all"
    assert parse_options("lookupcache=pos").lookupcache == "positive"
    assert parse_options("lookupcache=none").lookupcache == "none"
    with pytest.raises(MountOptionError, match="lookupcache=some: must be all"):
        parse_options("lookupcache=some")


def test_lock_options() -> None:
    assert parse_options("").local_lock == "none"
    assert parse_options("nolock").local_lock == "all"
    assert parse_options("nolock,lock").local_lock == "none"
    assert parse_options("local_lock=flock").local_lock == "flock"
    with pytest.raises(MountOptionError, match="local_lock=some: must be none, posix"):
        parse_options("local_lock=some")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus", "unknown mount option 'bogus'"),
        ("colour=red", "unknown mount option 'colour'"),
        ("port=abc", "port='abc': not a whole number"),
        ("port=70000", "port=70000: must be between 0 and 65535"),
        ("ro=1", "ro takes no value"),
        ("_netdev=1", "_netdev takes no value"),
        ("timeo", "timeo needs a value"),
        ("sec=krb9", "unknown flavour 'krb9'"),
        ("vers=3", "NFS version 4.1 only"),
    ],
)
def test_bad_options_name_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MountOptionError, match=message):
        parse_options(text)


def test_sloppy_keeps_unknown_names_for_a_warning() -> None:
    o = parse_options("port=5,bogus,colour=red", sloppy=True)
    assert (o.port, o.ignored) == (5, ["bogus", "colour=red"])
    with pytest.raises(MountOptionError):  # a known option's bad value still fails
        parse_options("port=x", sloppy=True)


def test_bg_and_foreground_contradict() -> None:
    with pytest.raises(MountOptionError, match="bg and foreground contradict"):
        check_combination(parse_options("bg,foreground"))
    check_combination(parse_options("bg"))


def test_describe_gives_the_options_in_effect() -> None:
    text = parse_options("port=7,soft,timeo=5,nconnect=2").describe(rsize=65536, wsize=32768)
    words = text.split(",")
    for word in ("vers=4.1", "soft", "timeo=5", "retrans=2", "nconnect=2", "port=7"):
        assert word in words
    assert "rsize=65536" in words and "wsize=32768" in words
    assert "hard" in parse_options("").describe().split(",")
    assert "softerr" in parse_options("softerr").describe().split(",")


def test_server_spec() -> None:
    assert parse_server_spec("127.0.0.1:/export") == ("127.0.0.1", "/export")
    assert parse_server_spec("[::1]:/a/b") == ("::1", "/a/b")
    for bad in ("127.0.0.1", ":/export", "host:export"):
        with pytest.raises(MountOptionError):
            parse_server_spec(bad)


def test_server_and_port() -> None:
    assert parse_server_port("127.0.0.1") == ("127.0.0.1", 2049)
    assert parse_server_port("127.0.0.1:20490") == ("127.0.0.1", 20490)
    assert parse_server_port("[::1]:20490") == ("::1", 20490)
    assert parse_server_port("::1") == ("::1", 2049)
    with pytest.raises(MountOptionError, match="port 99999 out of range"):
        parse_server_port("127.0.0.1:99999")
    with pytest.raises(MountOptionError, match="port 0 out of range"):
        parse_server_port("127.0.0.1:0")
    with pytest.raises(MountOptionError, match="not a number"):
        parse_server_port("127.0.0.1:nfs")


def test_probe_target() -> None:
    from fusenfs.cli import probe_target

    assert probe_target("127.0.0.1", None) == ("127.0.0.1", 2049, None)
    assert probe_target("127.0.0.1:20490", "/export") == ("127.0.0.1", 20490, "/export")
    assert probe_target("127.0.0.1:/export", None) == ("127.0.0.1", 2049, "/export")
    assert probe_target("[::1]:20490", None) == ("::1", 20490, None)
    with pytest.raises(MountOptionError, match="port 99999 out of range"):
        probe_target("127.0.0.1:99999", None)
    with pytest.raises(MountOptionError, match="must start with /"):
        probe_target("127.0.0.1", "export")
    with pytest.raises(MountOptionError, match="given twice"):
        probe_target("127.0.0.1:/export", "/export")


def test_mountinfo_fields_are_unescaped() -> None:
    from fusenfs.cli import _unescape

    assert _unescape(r"/mnt/a\040b\011c\134d") == "/mnt/a b\tc\\d"


def test_op_statistics_of_sessions_add_up() -> None:
    from fusenfs.runner import _merge_op_stats
    from session.session import OpStats

    a = {"READ": OpStats(ops=2, transmissions=3, bytes_received=10, rtt_ms_max=4.0)}
    b = {
        "READ": OpStats(ops=1, transmissions=1, bytes_received=5, rtt_ms_max=9.0),
        "WRITE": OpStats(ops=1, errors=1),
    }
    merged = _merge_op_stats([a, b])
    assert list(merged) == ["READ", "WRITE"]
    assert merged["READ"]["ops"] == 3 and merged["READ"]["transmissions"] == 4
    assert merged["READ"]["bytes_received"] == 15 and merged["READ"]["rtt_ms_max"] == 9.0
    assert merged["WRITE"]["errors"] == 1


def test_operations_table() -> None:
    from fusenfs.cli import format_operations

    text = format_operations(
        {
            "READ": {
                "ops": 4,
                "transmissions": 5,
                "timeouts": 1,
                "errors": 0,
                "bytes_sent": 400,
                "bytes_received": 4096,
                "rtt_ms_total": 10.0,
                "rtt_ms_max": 4.0,
                "exec_ms_total": 20.0,
                "exec_ms_max": 8.0,
            }
        }
    )
    row = text.splitlines()[-1].split()
    assert row == ["READ", "4", "5", "1", "0", "400", "4096", "2.00", "4.00", "5.00", "8.00"]


def test_delegations_on_by_default_and_nodeleg_declines() -> None:
    assert parse_options("").delegations is True
    assert parse_options("nodeleg").delegations is False
    assert parse_options("nodeleg,deleg").delegations is True
    assert "nodeleg" in parse_options("nodeleg").describe(0, 0).split(",")

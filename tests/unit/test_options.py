"""Mount option and server spec parsing."""

from __future__ import annotations

import pytest

from fusenfs.options import MountOptionError, parse_options, parse_server_spec


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
        ("port=70000", "port=70000: must be between 1 and 65535"),
        ("ro=1", "ro takes no value"),
        ("sec=krb5", "only sec=sys"),
        ("vers=3", "NFS version 4.1 only"),
    ],
)
def test_bad_options_name_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MountOptionError, match=message):
        parse_options(text)


def test_server_spec() -> None:
    assert parse_server_spec("127.0.0.1:/export") == ("127.0.0.1", "/export")
    assert parse_server_spec("[::1]:/a/b") == ("::1", "/a/b")
    for bad in ("127.0.0.1", ":/export", "host:export"):
        with pytest.raises(MountOptionError):
            parse_server_spec(bad)

"""The checker's own parts, without a server: arguments, --explain, --list, the report
lines, the JSON and JUnit writers, the progress line, the --migrate-cmd placeholders."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import pytest

from fusenfs import check
from fusenfs.check_base import REGISTRY, CheckSpec, Finding, Outcome, Result, counts, exit_status
from fusenfs.check_context import CheckOptions
from fusenfs.check_migration import SCENARIOS, command_for
from fusenfs.check_wire import describe_ops, describe_res
from session.xdr import nfs4
from session.xdr.const import FATTR4, nfsstat4
from session.xdr.fattr import bitmap4_from


def spec(code: str) -> CheckSpec:
    return REGISTRY[code]


def results() -> list[Result]:
    return [
        Result(spec("EID1"), Finding(Outcome.PASS, "fine"), 0.01),
        Result(
            spec("SESS3"),
            Finding(
                Outcome.FAIL,
                "a 4808-byte request was accepted",
                sent="SEQUENCE(slot 0, seq 3) PUTFH WRITE(offset 0, 4608 bytes)",
                got="NFS4_OK; 3 results, reply 112 bytes",
                expected='NFS4ERR_REQ_TOO_BIG <&> "quoted"',
                details=["ca_maxrequestsize 4096"],
            ),
            0.2,
        ),
        Result(spec("RC3"), Finding(Outcome.WARN, "not refused", expected="NOFILEHANDLE"), 0.0),
        Result(spec("MIG1"), Finding(Outcome.NOT_SUPPORTED, "no --migrate-cmd given"), 0.0),
    ]


def test_registry_codes_are_stable_and_complete() -> None:
    codes = [s.code for s in sorted(REGISTRY.values(), key=check.order_key)]
    assert codes == [
        *(f"EID{i}" for i in range(1, 6)),
        *(f"TRK{i}" for i in range(1, 4)),
        *(f"SESS{i}" for i in range(1, 7)),
        *(f"SEQ{i}" for i in range(1, 5)),
        *(f"RC{i}" for i in range(1, 4)),
        "ST1",
        "ST2",
        "LEASE1",
        "LEASE2",
        "LOC1",
        "LOC2",
        "LOC3",
        *(f"REF{i}" for i in range(1, 7)),
        *(f"MIG{i}" for i in range(1, 8)),
    ]
    for s in REGISTRY.values():
        assert s.section.startswith(("RFC 8881", "seed 001")), s.code
        assert len(s.section) <= check.SECTION_WIDTH, s.code
        assert s.does and s.rule and s.compounds and s.title
        assert s.migration == s.code.startswith("MIG")


@pytest.mark.parametrize("code", sorted(REGISTRY))
def test_explain_every_check(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--explain", code.lower()]) == 0
    out = capsys.readouterr().out
    s = REGISTRY[code]
    assert out.startswith(f"{code}: {s.title} ({s.section})")
    assert "What it does:" in out and "The rule:" in out and "COMPOUNDs it sends:" in out
    for compound in s.compounds:
        assert compound in out
    assert ("--migrate-cmd" in out) == s.migration


def test_list_and_help_migrate(capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(REGISTRY) and lines[0].startswith("EID1 ")
    assert check.main(["--help-migrate"]) == 0
    text = capsys.readouterr().out
    for name in check.PLACEHOLDERS:
        assert "{" + name + "}" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "SERVER:/PATH is required"),
        (["127.0.0.1"], "expected SERVER:/PATH"),
        (["127.0.0.1:export"], "must start with /"),
        (["127.0.0.1:/x", "-o", "port=0"], "port number"),
        (["127.0.0.1:/x", "-o", "sec=krb5"], "only sec=sys"),
        (["127.0.0.1:/x", "-o", "rsize=4096"], "takes port=N, sec=sys, timeo=T"),
        (["127.0.0.1:/x", "--only", "SESS3,NOPE1"], "unknown check code(s) NOPE1"),
        (["127.0.0.1:/x", "--migrate-cmd", "mv {fs} {where}"], "unknown placeholder(s) {where}"),
        (["127.0.0.1:/x", "--migrate-cmd", "mv {fs} {target}"], "give --migrate-to"),
        (["127.0.0.1:/x", "--migrate-cmd", "echo {"], "for braces"),
        (["--explain", "XYZ9"], "unknown check code"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main(argv) == 2
    assert message in capsys.readouterr().err


def test_parse_o_and_target() -> None:
    assert check.parse_o(["port=20490,sec=sys", "timeo=25"]) == {"port": 20490, "timeo": 2.5}
    assert check.parse_target("[::1]:/export/a") == ("::1", "/export/a")
    assert check.parse_target("server.example:/") == ("server.example", "/")


def test_report_lines() -> None:
    passed, failed, warned, unsupported = (check.report_line(r) for r in results())
    assert passed == [f"EID1   PASS          {REGISTRY['EID1'].section:<30} fine"]
    assert failed[0].startswith("SESS3  FAIL          RFC 8881 2.10.6.4, 18.36.3")
    assert failed[1:] == [
        "       sent:     SEQUENCE(slot 0, seq 3) PUTFH WRITE(offset 0, 4608 bytes)",
        "       got:      NFS4_OK; 3 results, reply 112 bytes",
        '       expected: NFS4ERR_REQ_TOO_BIG <&> "quoted"',
        "       ca_maxrequestsize 4096",
    ]
    assert warned[1] == "       expected: NOFILEHANDLE"
    assert unsupported == [
        f"MIG1   NOT-SUPPORTED {REGISTRY['MIG1'].section:<30} no --migrate-cmd given"
    ]
    rs = results()
    assert counts(rs) == {"PASS": 1, "NOT-SUPPORTED": 1, "WARN": 1, "FAIL": 1}
    assert exit_status(rs) == 1 and exit_status(rs[:1] + rs[2:]) == 0
    assert check.summary_line(rs, 2.5) == (
        "4 checks in 2.5 s: 1 PASS, 1 NOT-SUPPORTED, 1 WARN, 1 FAIL"
    )


def test_json_and_junit_agree() -> None:
    rs = results()
    options = CheckOptions("127.0.0.1", 2049, "/export")
    data = json.loads(json.dumps(check.to_json(rs, options, 1_700_000_000.0, 1.5, ["x"])))
    assert data["exit_status"] == 1
    assert [c["outcome"] for c in data["checks"]] == ["PASS", "FAIL", "WARN", "NOT-SUPPORTED"]
    assert data["checks"][1]["expected"] == 'NFS4ERR_REQ_TOO_BIG <&> "quoted"'
    root = ET.fromstring(ET.tostring(check.to_junit(rs, options, 1_700_000_000.0, 1.5)))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = suite.findall("testcase")
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message", "").endswith("request was accepted")
    assert '<&> "quoted"' in (failure.text or "")
    assert cases[3].find("skipped") is not None
    out = cases[2].find("system-out")
    assert out is not None and (out.text or "").startswith("WARN RFC 8881 18.51.3")


def test_progress_line_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        p = check.Progress(stream, 41)
        p.show(2, spec("EID3"))
        p.clear()
    assert tty.getvalue() == "\r\033[K[3/41] EID3 undefined eia_flags bits refused ...\r\033[K"
    assert pipe.getvalue() == ""


def test_migrate_command_placeholders() -> None:
    options = CheckOptions(
        "127.0.0.1",
        40411,
        "/export/a",
        migrate_cmd="ctl migrate {fs} --to {target} --{tsm} --freeze {freeze} # {scenario} "
        "{source} {path} {server}:{port} {{literal}}",
        migrate_to=["B", "A"],
        freeze=1.5,
    )

    class Ctx:
        def __init__(self) -> None:
            self.options = options
            self.host, self.port, self.components = "127.0.0.1", 40411, ["export", "a"]
            self.cache: dict[str, object] = {}

    ctx = Ctx()
    first = command_for(ctx, SCENARIOS["held"])  # type: ignore[arg-type]
    assert first == (
        "ctl migrate a --to B --tsm --freeze 0 # held 127.0.0.1:40411 /export/a "
        "127.0.0.1:40411 {literal}"
    )
    ctx.cache["migrations"] = 1
    ctx.cache["location"] = ("127.0.0.2", 2049, ["export", "a"])
    second = command_for(ctx, SCENARIOS["no-tsm"])  # type: ignore[arg-type]
    assert second.startswith("ctl migrate a --to A --no-tsm --freeze 0 # no-tsm 127.0.0.2:2049")
    ctx.cache["migrations"] = 2
    third = command_for(ctx, SCENARIOS["freeze"])  # type: ignore[arg-type]
    assert "--to B --tsm --freeze 1.5 # freeze" in third


def test_describe_compounds() -> None:
    ops: list[nfs4.ArgOp] = [
        nfs4.SEQUENCE4args(b"s" * 16, 7, 2, 2, True),
        nfs4.PUTROOTFH4args(),
        nfs4.LOOKUP4args(b"export"),
        nfs4.GETATTR4args(bitmap4_from([FATTR4.FS_LOCATIONS, FATTR4.FS_STATUS])),
        nfs4.RECLAIM_COMPLETE4args(True),
    ]
    assert describe_ops(ops) == (
        "SEQUENCE(slot 2, seq 7, cachethis) PUTROOTFH LOOKUP('export') "
        "GETATTR(fs_locations, fs_status) RECLAIM_COMPLETE(rca_one_fs=TRUE)"
    )
    res = nfs4.COMPOUND4res(
        nfsstat4.NFS4ERR_MOVED,
        b"",
        [nfs4.SEQUENCE4res(nfsstat4.NFS4ERR_MOVED)],
    )
    assert describe_res(res) == "NFS4ERR_MOVED at op 0 (SEQUENCE)"

"""``fusenfs check`` against NFS-Ganesha 4.3 on loopback (issue 12, item 4): an honest report.

The session's shared Ganesha (127.0.0.1) gets a referral -- Ganesha 4.3's form: a sticky
directory without execute bits (mode 1666) carrying ``user.fs_location`` "a.b.c.d.p1.p2:/path"
-- to a second Ganesha on 127.0.0.2.  The sessions and referral checks must run (none is
NOT-SUPPORTED for lack of a way to test it), every migration check is NOT-SUPPORTED with
the reason (no --migrate-cmd; Ganesha does not claim EXCHGID4_FLAG_SUPP_MOVED_MIGR), the
exit status is non-zero exactly when a check FAILed, and every FAIL says what was sent,
what came back and what RFC 8881 asks for.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrib.ganesha import GaneshaServer

from .conftest import RunCheck, validate

pytestmark = [pytest.mark.ganesha]

SESSION_CHECKS = [
    "EID1",
    "EID2",
    "EID3",
    "EID4",
    "EID5",
    "TRK1",
    "TRK2",
    "TRK3",
    "SESS1",
    "SESS2",
    "SESS3",
    "SESS4",
    "SESS5",
    "SESS6",
    "SEQ1",
    "SEQ2",
    "SEQ3",
    "SEQ4",
    "RC1",
    "RC2",
    "RC3",
    "ST1",
    "ST2",
    "LEASE1",
    "LEASE2",
]
REFERRAL_CHECKS = ["REF1", "REF2", "REF3", "REF6"]
MIGRATION_CHECKS = [f"MIG{i}" for i in range(1, 8)]


@pytest.fixture
def referral(ganesha: GaneshaServer) -> Iterator[Path]:
    """A second Ganesha on 127.0.0.2 and a referral to it at the top of the shared export."""
    export = ganesha.export_path.parent / f"referred-{uuid.uuid4().hex[:8]}"
    export.mkdir()
    (export / "far.txt").write_bytes(b"served by the second server\n")
    second = GaneshaServer(export, address="127.0.0.2", export_id=9)
    junction = ganesha.export_path / f"ref-{uuid.uuid4().hex[:6]}"
    try:
        second.start()
        second.wait_grace_over()
        junction.mkdir()
        port = second.port
        location = f"{second.address}.{port >> 8}.{port & 0xFF}:{second.pseudo}"
        os.setxattr(junction, "user.fs_location", location.encode())
        junction.chmod(0o1666)
        yield junction
    finally:
        if junction.exists():
            junction.chmod(0o755)
            junction.rmdir()
        second.cleanup()


async def test_honest_report_against_ganesha(
    ganesha: GaneshaServer, referral: Path, run_check: RunCheck
) -> None:
    run = await run_check(
        f"{ganesha.address}:{ganesha.pseudo}", "-o", f"port={ganesha.port}", timeout=300
    )
    report = run.stdout + run.stderr
    outcomes = run.outcomes()
    assert run.returncode in (0, 1), report
    validate(run)
    assert run.data is not None
    for code in SESSION_CHECKS + REFERRAL_CHECKS:
        assert outcomes[code] != "NOT-SUPPORTED", f"{code} did not run:\n{report}"
    # The referral itself works the way a client needs it.
    assert outcomes["REF2"] == "PASS", report
    assert outcomes["REF6"] == "PASS", report
    assert f"/{referral.name}" in run.stdout
    for code in MIGRATION_CHECKS:
        assert outcomes[code] == "NOT-SUPPORTED", report
    checks = {c["code"]: c for c in run.data["checks"]}
    reason = checks["MIG1"]["summary"]
    assert "no --migrate-cmd" in reason and "EXCHGID4_FLAG_SUPP_MOVED_MIGR" in reason
    failed = [c for c in run.data["checks"] if c["outcome"] == "FAIL"]
    assert run.returncode == (1 if failed else 0)
    for c in failed:
        assert c["sent"] and c["got"] and c["expected"], c
    # The scratch directory is gone from the export.
    assert not [p for p in ganesha.export_path.iterdir() if p.name.startswith(".fusenfs-check")]

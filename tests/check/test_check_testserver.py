"""``fusenfs check`` against the reference target, the contrib test server (issue 12, item 4).

With the test server's control command as --migrate-cmd every check must PASS (exit 0),
and the --json and --junit files must be valid and agree with the report.  A migrate
command that fails makes the migration checks FAIL, naming the command.
"""

from __future__ import annotations

import trio

import fusenfs.check  # noqa: F401 (registers every check)
from fusenfs.check_base import REGISTRY

from .conftest import Reference, RunCheck, validate


async def test_every_check_passes_against_the_test_server(
    reference: Reference, run_check: RunCheck
) -> None:
    run = await run_check(
        "127.0.0.1:/export/a",
        "-o",
        f"port={reference.port}",
        "--migrate-cmd",
        reference.migrate_cmd(),
        "--migrate-to",
        "B,A",
        "--freeze",
        "1",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    outcomes = run.outcomes()
    assert set(outcomes) == set(REGISTRY), "every registered check ran"
    assert {code: o for code, o in outcomes.items() if o != "PASS"} == {}, run.stdout
    validate(run)
    assert run.data is not None and run.data["summary"]["PASS"] == len(REGISTRY)
    # The migration checks report the timings the client saw.
    mig1 = next(c for c in run.data["checks"] if c["code"] == "MIG1")
    assert "recovery" in mig1["summary"] and "WRITEs" in mig1["summary"]
    # Four migrations (B, A, B, A): the file system is back on A, and the checker cleaned
    # up its scratch directory there.
    a = reference.cluster.filesystem("a")
    assert reference.cluster.location_of("a") is reference.cluster.instance("A")
    root = reference.cluster.model.lookup(a, a.root, b"ref")  # the referral is still there
    assert root is not None
    assert not [n for n in a.root.entries if n.startswith(b".fusenfs-check")]
    # The source saw each scenario's client: its event log has the migrations and the
    # LEASE_MOVED of the idle scenario.
    kinds = {e.kind for e in reference.cluster.events.since(0)}
    assert {"migrate", "lease-moved-set", "lease-moved-cleared", "freeze", "grace-start"} <= kinds


async def test_a_failing_migrate_command_fails_the_migration_checks(
    reference: Reference, run_check: RunCheck
) -> None:
    run = await run_check(
        "127.0.0.1:/export/a",
        "-o",
        f"port={reference.port}",
        "--only",
        "MIG1,MIG4,EID1",
        "--migrate-cmd",
        "echo no such file system {fs} >&2; exit 3",
    )
    assert run.returncode == 1
    outcomes = run.outcomes()
    assert outcomes == {"EID1": "PASS", "MIG1": "FAIL", "MIG4": "FAIL"}
    assert "the migrate command exited 3" in run.stdout
    assert "no such file system a" in run.stdout
    validate(run)


async def test_only_and_order(reference: Reference, run_check: RunCheck) -> None:
    """--only runs just those checks, in the report's order, and --json / --junit hold
    just them; without --migrate-cmd a migration check is NOT-SUPPORTED, with the reason."""
    run = await run_check(
        "127.0.0.1:/export/a", "-o", f"port={reference.port}", "--only", "MIG2,REF2,SEQ1"
    )
    assert run.returncode == 0, run.stdout
    assert list(run.outcomes()) == ["SEQ1", "REF2", "MIG2"]
    assert run.outcomes()["MIG2"] == "NOT-SUPPORTED"
    assert "no --migrate-cmd given" in run.stdout
    validate(run)


async def test_unreachable_server_is_exit_3(run_check: RunCheck) -> None:
    """Nothing listens there: one line on stderr, exit status 3, no report files."""
    with trio.fail_after(30):
        run = await run_check("127.0.0.1:/export", "-o", "port=1,timeo=20")
    assert run.returncode == 3
    assert "cannot check 127.0.0.1:/export" in run.stderr
    assert run.data is None

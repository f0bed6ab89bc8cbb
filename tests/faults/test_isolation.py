"""Scenario 6 — organisation isolation under RLS, two tenants at once, through the real CLI.

Four organisations; two runners log in as `hera_org_user`, each restricted by RLS to a disjoint pair, and migrate
at the same time under different run ids. Each run touches only its pair; neither can see, let alone resume or
roll back, the other's run; rolling one back leaves the other pair exactly as its own run left it; a role with no
organisation allowed, and specs naming a hidden organisation, fail with exit 2 and a clear message, writing
nothing. Every check of the six tables is made as the superuser.
"""

from __future__ import annotations

from pathlib import Path

from runner import contract
from runner.db.connect import connect
from runner.errors import EXIT_OK, EXIT_USAGE
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import (
    LEDGER,
    Spawned,
    audit,
    dump,
    dump_diff,
    hera,
    results,
    role_dsn,
    rows_in,
    spec_file,
    unexpected_total,
)
from tests.integration.test_engine_support import candidate_ids, one


def test_two_restricted_tenants_at_once(db_dsn: str, tmp_path: Path) -> None:
    orgs = [o.organization_id for o in generate(db_dsn, size="small", orgs=4, seed=141).organizations]
    pairs = {"run-tenant-a": orgs[:2], "run-tenant-b": orgs[2:]}
    path = spec_file(tmp_path)
    spec = load_spec(path)
    with connect(db_dsn) as conn:
        before = {run: dump(conn, pair) for run, pair in pairs.items()}
        want = {run: {i for o in pair for i in candidate_ids(conn, o, spec, "reverse_repost")}
                for run, pair in pairs.items()}
    dsns = {run: role_dsn(db_dsn, pair) for run, pair in pairs.items()}
    with LEDGER.scenario("RLS isolation: two tenants at once") as tally:
        procs = {run: Spawned(dsns[run], ["run", str(path), "--run-id", run, "--now", "--no-progress",
                                          "--report-dir", str(tmp_path / run), "--workers", "2"], tmp_path / "logs")
                 for run in pairs}
        for run, proc in procs.items():
            assert proc.wait(600) == EXIT_OK, (run, proc.tail())
        migrated = {}
        with connect(db_dsn) as conn:
            for run, pair in pairs.items():
                other = [o for o in orgs if o not in pair]
                a = audit(conn, orgs, run)
                assert a.exactly_once() and a.originals == want[run], run
                assert audit(conn, other, run).originals == set(), f"{run} touched another tenant"
                assert one(conn, "SELECT count(*) FROM core_entities WHERE entity_type = %s AND entity_code = %s "
                                 "AND NOT organization_id = ANY(%s::uuid[])",
                           (contract.JOURNAL_ENTITY_TYPE, run, pair)) == 0
                res = results(tmp_path / run)
                assert sorted(o["organization_id"] for o in res["organizations"]) == sorted(pair)
                assert unexpected_total(res) == 0
                migrated[run] = dump(conn, pair, journal=True)
                tally.rows_checked += len(a.originals)

        # one tenant cannot see, resume or roll back the other's run; hidden organisations are refused
        a_dsn, b_run, hidden = dsns["run-tenant-a"], "run-tenant-b", orgs[2]
        named = spec_file(tmp_path, include=[orgs[0], hidden], name="hidden.yaml")
        nobody = role_dsn(db_dsn, [])
        refusals = [
            (a_dsn, ["rollback", b_run, "--no-progress"], "no run"),
            (a_dsn, ["status", b_run], "no run"),
            (a_dsn, ["run", str(named), "--run-id", "run-x2", "--now", "--no-progress", "--report-dir",
                     str(tmp_path / "x2")], "not visible to this role"),
            (a_dsn, ["plan", str(path), "--org", hidden], "not visible to this role"),
            (nobody, ["run", str(path), "--run-id", "run-x3", "--now", "--no-progress", "--report-dir",
                      str(tmp_path / "x3")], "no organisation is in scope"),
        ]
        for dsn, args, says in refusals:
            done = hera(dsn, *args)
            assert done.returncode == EXIT_USAGE, (args, done.stdout[-1500:], done.stderr[-1500:])
            assert says in done.stderr and "Traceback" not in done.stderr, (args, done.stderr[-1500:])
        tally.faults = len(refusals)
        with connect(db_dsn) as conn:
            for run, pair in pairs.items():
                assert dump_diff(migrated[run], dump(conn, pair, journal=True)) == {}, f"a refusal wrote in {run}"
            assert one(conn, "SELECT count(*) FROM core_entities WHERE entity_type = %s AND entity_code LIKE "
                             "'run-x%%'", (contract.JOURNAL_ENTITY_TYPE,)) == 0

        # `--resume` of B's run as tenant A: nothing of that run is visible to A, so the command starts A's own run
        # of that name (docs/contract.md §4) in A's organisations — already migrated, so nothing to check (exit 4)
        # — and B's run, rows and journal, is not touched.
        own = hera(a_dsn, "run", str(path), "--run-id", b_run, "--resume", "--now", "--no-progress", "--report-dir",
                   str(tmp_path / "x1"))
        assert own.returncode == 4 and "--resume starts it" in own.stdout, own.stdout[-1500:] + own.stderr[-1500:]
        with connect(db_dsn) as conn:
            assert dump_diff(migrated[b_run], dump(conn, pairs[b_run], journal=True)) == {}, "A's resume wrote in B"

        # tenant A rolls back while tenant B keeps its migration
        rb = hera(a_dsn, "rollback", "run-tenant-a", "--no-progress")
        assert rb.returncode == EXIT_OK, rb.stdout[-2000:] + rb.stderr[-2000:]
        with connect(db_dsn) as conn:
            assert dump_diff(before["run-tenant-a"], dump(conn, pairs["run-tenant-a"])) == {}
            assert dump_diff(migrated[b_run], dump(conn, pairs[b_run], journal=True)) == {}
        rb = hera(dsns[b_run], "rollback", b_run, "--no-progress")
        assert rb.returncode == EXIT_OK, rb.stdout[-2000:] + rb.stderr[-2000:]
        with connect(db_dsn) as conn:
            for run, pair in pairs.items():
                assert dump_diff(before[run], dump(conn, pair)) == {}
                tally.rows_checked += rows_in(before[run]) * 2

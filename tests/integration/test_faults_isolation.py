"""Organisation isolation (fast version of `nox -s faults` scenario 6), through the real CLI.

The runner logs in as `hera_org_user`, the non-superuser role that RLS restricts to the organisations listed in
`app.allowed_orgs` (fixtures/sql/40_rls.sql). With three organisations and two allowed: run and rollback migrate
and restore exactly the two, and the third is byte-for-byte untouched throughout (checked as the superuser); a
spec or an --org naming the hidden organisation fails with exit 2 and a clear message before anything is written.
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


def test_a_restricted_role_migrates_and_rolls_back_only_its_organisations(db_dsn: str, tmp_path: Path) -> None:
    orgs = [o.organization_id for o in generate(db_dsn, size="small", orgs=3, seed=91).organizations]
    allowed, hidden = orgs[:2], orgs[2]
    dsn = role_dsn(db_dsn, allowed)
    path = spec_file(tmp_path, narrow=True)
    spec = load_spec(path)
    with connect(db_dsn) as conn:
        before = dump(conn, orgs)
        want = {o: set(candidate_ids(conn, o, spec, "reverse_repost")) for o in orgs}
    assert want[hidden]  # the hidden organisation has candidates the run must not touch
    with connect(dsn) as conn:  # what the role sees
        assert one(conn, "SELECT count(*) FROM universal_transactions WHERE organization_id = %s", (hidden,)) == 0
        assert one(conn, "SELECT current_user") == "hera_org_user"

    def hidden_untouched() -> None:
        with connect(db_dsn) as conn:
            now = dump(conn, [hidden], journal=True)
            assert dump_diff(dump_of(before, hidden), now) == {}
            assert one(conn, "SELECT count(*) FROM core_entities WHERE organization_id = %s AND entity_type = %s",
                       (hidden, contract.JOURNAL_ENTITY_TYPE)) == 0

    with LEDGER.scenario("fast: RLS role isolation") as tally:
        report = tmp_path / "report"
        run = hera(dsn, "run", str(path), "--run-id", "run-iso", "--now", "--no-progress", "--report-dir",
                   str(report))
        assert run.returncode == EXIT_OK, run.stdout[-3000:] + run.stderr[-3000:]
        res = results(report)
        assert sorted(o["organization_id"] for o in res["organizations"]) == sorted(allowed)
        assert unexpected_total(res) == 0
        with connect(db_dsn) as conn:
            a = audit(conn, orgs, "run-iso")
        assert a.exactly_once() and a.originals == want[allowed[0]] | want[allowed[1]]
        hidden_untouched()

        # naming the hidden organisation: exit 2, a clear message, nothing written anywhere
        named = spec_file(tmp_path, narrow=True, include=[hidden], name="hidden.yaml")
        # (more refusals — --org, plan, another tenant's run — in tests/faults/test_isolation.py)
        proc = hera(dsn, "run", str(named), "--run-id", "run-hidden", "--now", "--no-progress", "--report-dir",
                    str(tmp_path / "hidden"))
        assert proc.returncode == EXIT_USAGE, (proc.stdout[-2000:], proc.stderr[-2000:])
        assert hidden in proc.stderr and "not visible to this role" in proc.stderr and "Traceback" not in proc.stderr
        with connect(db_dsn) as conn:
            assert one(conn, "SELECT count(*) FROM core_entities WHERE entity_type = %s AND entity_code = %s",
                       (contract.JOURNAL_ENTITY_TYPE, "run-hidden")) == 0
        hidden_untouched()

        rollback = hera(dsn, "rollback", "run-iso", "--no-progress")
        assert rollback.returncode == EXIT_OK, rollback.stdout[-3000:] + rollback.stderr[-3000:]
        with connect(db_dsn) as conn:
            after = dump(conn, orgs)
        assert dump_diff(before, after) == {}
        hidden_untouched()
        tally.faults = 1
        tally.rows_checked = rows_in(before) + rows_in(after)
        tally.duplicates = a.duplicates
        tally.unexpected = unexpected_total(res)


def dump_of(d: dict[str, dict[str, str]], org: str) -> dict[str, dict[str, str]]:
    """The rows of one organisation out of a dump of several (by the organisation id in the row)."""
    import json

    out: dict[str, dict[str, str]] = {}
    for table, rows in d.items():
        key = "id" if table == "core_organizations" else "organization_id"
        out[table] = {i: r for i, r in rows.items() if json.loads(r)[key] == org}
    return out

"""Bad data in the source (fast version of `nox -s faults` scenario 5), through the real CLI.

An organisation broken the ways real ledgers are: an unbalanced transaction, a NULL line amount, a line whose
organisation differs from its header's, a header with a v1 code no mapping names, and lines without a header.
`plan` reports the unknown code and the headerless lines; `run` quarantines the three broken candidates, each
with its reason, migrates every other candidate exactly once and passes every check (the error-rate alert fires:
three quarantined of ~130 candidates); nothing is lost or changed that the run should not change; `rollback`
gives back the exact pre-run state, bad rows included.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from runner.db.connect import connect
from runner.engine import Quarantined, journal, run_status
from runner.engine.context import Sql
from runner.errors import EXIT_CHECK_FAILED, EXIT_OK
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import (
    LEDGER,
    UNKNOWN_CODE,
    audit,
    dump,
    dump_diff,
    hera,
    plant_bad_rows,
    results,
    rows_in,
    spec_file,
    unexpected_total,
)
from tests.integration.test_engine_support import candidate_ids


def test_bad_source_rows_are_quarantined_or_reported_and_nothing_is_lost(db_dsn: str, tmp_path: Path) -> None:
    orgs = [o.organization_id for o in generate(db_dsn, size="small", orgs=2, seed=83).organizations]
    path = spec_file(tmp_path, narrow=True)
    spec = load_spec(path)
    with connect(db_dsn) as conn:
        ids = candidate_ids(conn, orgs[0], spec, "reverse_repost")
        bad = plant_bad_rows(conn, orgs[0], orgs[1], ids, random.Random(9))
        conn.commit()
        want = {o: set(candidate_ids(conn, o, spec, "reverse_repost")) for o in orgs}
        before = dump(conn, orgs)
    assert bad.unknown_code not in want[orgs[0]]  # unmapped: not a candidate at all
    with LEDGER.scenario("fast: bad source rows") as tally:
        tally.faults = 5
        plan = hera(db_dsn, "plan", str(path), "--json")
        assert plan.returncode == 0, plan.stderr
        first = next(o for o in json.loads(plan.stdout)["organizations"] if o["organization_id"] == orgs[0])
        assert first["unmapped"] == {UNKNOWN_CODE: 1}
        assert (first["orphan_lines"], first["orphan_transaction_ids"]) == (2, [bad.orphan_txn])

        report = tmp_path / "report"
        run = hera(db_dsn, "run", str(path), "--run-id", "run-bad", "--now", "--no-progress", "--report-dir",
                   str(report))
        res = results(report)
        # 3 quarantined of ~130 candidates is above the spec's critical error rate (1 %): exit 1 by that alert
        # alone; every check passes and the diff explains every change
        assert run.returncode == EXIT_CHECK_FAILED, run.stdout[-3000:] + run.stderr[-3000:]
        assert [(a["level"], a["metric"]) for a in res["alerts"] if a["level"] == "critical"] == [
            ("critical", "error_rate_pct")]
        assert all(c["status"] == "passed" for c in res["checks"] if c["severity"] == "critical")
        status = next(o for o in run_status(db_dsn, "run-bad").organizations if o.organization_id == orgs[0])
        reasons = {q.transaction_id: q.reason for q in _quarantined(db_dsn, "run-bad", orgs[0])}
        assert reasons == bad.quarantine_reasons()
        assert status.quarantine_reasons == {"unbalanced": 1, "null_line_amounts": 1, "cross_org_lines": 1}
        assert res["integrity_score"] == 100 and unexpected_total(res) == 0
        with connect(db_dsn) as conn:
            a = audit(conn, orgs, "run-bad")
            after = dump(conn, orgs)
        assert a.exactly_once()
        assert a.originals == (want[orgs[0]] | want[orgs[1]]) - set(reasons)  # the rest migrated, once
        lost = [(t, i) for t in before for i in before[t] if i not in after[t]]
        assert lost == []
        untouched = [bad.unbalanced, bad.null_amount, bad.cross_org, bad.unknown_code, *bad.orphan_lines]
        for table in ("universal_transactions", "universal_transaction_lines"):
            for row_id, row in before[table].items():
                if row_id in untouched or json.loads(row).get("transaction_id") in untouched:
                    assert after[table][row_id] == row, f"bad row {row_id} was changed by the run"

        rollback = hera(db_dsn, "rollback", "run-bad", "--no-progress")
        assert rollback.returncode == EXIT_OK, rollback.stdout[-3000:] + rollback.stderr[-3000:]
        with connect(db_dsn) as conn:
            assert dump_diff(before, dump(conn, orgs)) == {}
        tally.rows_checked = rows_in(before) + rows_in(after)
        tally.duplicates = a.duplicates
        tally.unexpected = unexpected_total(res)


def _quarantined(dsn: str, run_id: str, org: str) -> list[Quarantined]:
    sql = Sql()
    with connect(dsn) as conn:
        found = journal.find(conn, sql, [org], run_id)
        return list(journal.read_quarantine(conn, sql, [org], [j.id for j in found])[found[0].id])

"""Scenario 5 — bad data in the source, in quantity, across two organisations, through the real CLI.

Each organisation gets three rounds of the broken rows of tests/faults/harness.py `plant_bad_rows` (an unbalanced
transaction, a NULL line amount, a line of the other organisation, a header with an unknown v1 code, lines without
a header), plus two near misses that are NOT defects and must migrate: an imbalance below the spec's GL tolerance
and a header without any line. `plan` reports every unknown code and every headerless line; `run` quarantines each
broken candidate with its reason and migrates every other candidate exactly once with every check passing; no row
is lost and no broken row is changed; `rollback` restores both organisations exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from runner.db.connect import connect
from runner.engine import journal
from runner.engine.context import Sql
from runner.errors import EXIT_CHECK_FAILED, EXIT_OK
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import (
    LEDGER,
    UNKNOWN_CODE,
    BadRows,
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

RUN = "run-bad-source"


def test_bad_source_rows_in_quantity(db_dsn: str, tmp_path: Path) -> None:
    orgs = [o.organization_id for o in generate(db_dsn, size="small", orgs=2, seed=131).organizations]
    path = spec_file(tmp_path)
    spec = load_spec(path)
    rng = random.Random(17)
    planted: dict[str, list[BadRows]] = {o: [] for o in orgs}
    near_misses: list[str] = []
    with connect(db_dsn) as conn:
        for org, other in ((orgs[0], orgs[1]), (orgs[1], orgs[0])):
            for _ in range(3):
                ids = candidate_ids(conn, org, spec, "reverse_repost")
                planted[org].append(plant_bad_rows(conn, org, other, ids, rng))
            ids = sorted(set(candidate_ids(conn, org, spec, "reverse_repost"))
                         - {b for r in planted[org] for b in r.quarantine_reasons()})
            near = rng.choice(ids)  # an imbalance below the tolerance (0.0001): not a defect
            conn.execute("UPDATE universal_transaction_lines SET line_amount = line_amount + 0.00001 WHERE id = ("
                         "SELECT id FROM universal_transaction_lines WHERE transaction_id = %s AND smart_code LIKE "
                         "'%%.GL.%%' ORDER BY line_number LIMIT 1)", (near,))
            bare = rng.choice([i for i in ids if i != near])  # a header without lines: nothing to unbalance
            conn.execute("DELETE FROM universal_transaction_lines WHERE transaction_id = %s", (bare,))
            near_misses += [near, bare]
        conn.commit()
        want = {i for o in orgs for i in candidate_ids(conn, o, spec, "reverse_repost")}
        before = dump(conn, orgs)
    reasons = {k: v for rows in planted.values() for r in rows for k, v in r.quarantine_reasons().items()}
    assert len(reasons) == 18 and reasons.keys() <= want
    with LEDGER.scenario("bad source rows (3 rounds x 2 orgs)") as tally:
        tally.faults = sum(5 for rows in planted.values() for _ in rows) + 4
        plan = json.loads(hera(db_dsn, "plan", str(path), "--json").stdout)
        for org in plan["organizations"]:
            rows = planted[org["organization_id"]]
            assert org["unmapped"] == {UNKNOWN_CODE: 3}
            assert org["orphan_lines"] == 2 * len(rows)
            assert sorted(org["orphan_transaction_ids"]) == sorted(r.orphan_txn for r in rows)

        text = hera(db_dsn, "plan", str(path)).stdout  # what the operator reads
        assert text.count("LINES WITHOUT A HEADER: 6 ") == 2 and text.count(f"{UNKNOWN_CODE} ") == 2, text

        report = tmp_path / "report"
        run = hera(db_dsn, "run", str(path), "--run-id", RUN, "--now", "--no-progress", "--report-dir", str(report),
                   "--batch-size", "40")
        res = results(report)
        assert run.returncode in (EXIT_OK, EXIT_CHECK_FAILED), run.stdout[-3000:] + run.stderr[-3000:]
        assert all(c["status"] == "passed" for c in res["checks"] if c["severity"] == "critical"), res["checks"]
        assert {a["metric"] for a in res["alerts"] if a["level"] == "critical"} <= {"error_rate_pct"}
        assert unexpected_total(res) == 0 and res["integrity_score"] == 100
        got = _quarantine(db_dsn, orgs)
        assert got == reasons, {k: (got.get(k), v) for k, v in reasons.items() if got.get(k) != v}
        with connect(db_dsn) as conn:
            a = audit(conn, orgs, RUN)
            after = dump(conn, orgs)
        assert a.exactly_once() and a.originals == want - set(reasons)
        assert set(near_misses) <= a.originals  # not defects: migrated like any other candidate
        lost = [(t, i) for t in before for i in before[t] if i not in after[t]]
        assert lost == []
        broken = set(reasons) | {r.unknown_code for rows in planted.values() for r in rows} | {
            line for rows in planted.values() for r in rows for line in r.orphan_lines}
        changed = [(t, i) for t in ("universal_transactions", "universal_transaction_lines")
                   for i, row in before[t].items()
                   if (i in broken or json.loads(row).get("transaction_id") in broken) and after[t][i] != row]
        assert changed == [], changed[:5]
        tally.rows_checked += rows_in(before) + rows_in(after)

        rollback = hera(db_dsn, "rollback", RUN, "--no-progress")
        assert rollback.returncode == EXIT_OK, rollback.stdout[-3000:] + rollback.stderr[-3000:]
        with connect(db_dsn) as conn:
            assert dump_diff(before, dump(conn, orgs)) == {}
        tally.rows_checked += rows_in(before)
        tally.duplicates = a.duplicates
        tally.unexpected = unexpected_total(res)
        tally.notes.append(f"quarantined {len(reasons)} with their reasons; reported 6 unknown-code headers and "
                           f"{sum(2 * len(v) for v in planted.values())} headerless lines; 4 near misses migrated")


def _quarantine(dsn: str, orgs: list[str]) -> dict[str, str]:
    sql = Sql()
    with connect(dsn) as conn:
        found = journal.find(conn, sql, orgs, RUN)
        lists = journal.read_quarantine(conn, sql, orgs, [j.id for j in found])
    return {q.transaction_id: q.reason for entries in lists.values() for q in entries}

"""Scenario 3 — contention: v1 users void and reverse the very transactions the CLI is migrating.

Two organisations, two workers, the real `hera-migrate run` as a subprocess, and per organisation three v1 users
(tests/faults/harness.py V1Traffic) who pick their targets around the run's frontier — ahead of it, on rows a chunk
holds, just behind it — and also emit new eligible transactions and read. Proven:
- no v1 request fails in a way v1 alone would not (the one refusal allowed is HERA's own to a second reversal:
  the `<code>-REV` code is taken — by the run's reversal, which is a HERA reversal, or by another user's);
- nothing is reversed twice, by anyone; every candidate is migrated exactly once or was taken by a v1 user first;
  what users emitted during the run is migrated by the run's re-scan;
- the before/after diff classifies every row exactly as the ground truth says: v1 writes are concurrent, a void
  that landed on an original the run had already reversed ("late void") is unexpected (it needs review), every
  other change is expected; the exit code is 1 exactly when there was a late void;
- the rollback restores the rest, leaves the late-voided groups alone as conflicts, and changes no row a v1 user
  wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.db.connect import connect
from runner.errors import EXIT_CHECK_FAILED, EXIT_OK
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import (
    LEDGER,
    Spawned,
    V1Traffic,
    Watcher,
    audit,
    migration_induced,
    misclassified,
    results,
    spec_file,
    wait_until,
)
from tests.integration.test_engine_support import candidate_ids

RUN = "run-contention"


def test_v1_users_void_and_reverse_the_rows_being_migrated(db_dsn: str, tmp_path: Path) -> None:
    orgs = [o.organization_id for o in generate(db_dsn, size="small", orgs=2, seed=121).organizations]
    path = spec_file(tmp_path)
    spec = load_spec(path)
    with connect(db_dsn) as conn:
        ids = {o: candidate_ids(conn, o, spec, "reverse_repost") for o in orgs}
        accounts = {o: [r[0] for r in conn.execute(
            "SELECT id::text FROM core_entities WHERE organization_id = %s AND lower(entity_type) = 'gl_account' "
            "ORDER BY id LIMIT 2", (o,))] for o in orgs}
    report = tmp_path / "report"
    with LEDGER.scenario("contention: v1 users on migrating rows") as tally:
        proc = Spawned(db_dsn, ["run", str(path), "--run-id", RUN, "--now", "--no-progress", "--report-dir",
                                str(report), "--workers", "2", "--batch-size", "25"], tmp_path / "logs")
        users = [V1Traffic(db_dsn, o, RUN, ids[o], accounts[o], users=3, seed=31 + i, window=60, max_ops=500)
                 for i, o in enumerate(orgs)]
        for u in users:
            u.start()
        try:
            with Watcher(db_dsn, RUN) as w:
                wait_until(lambda: w.now().statuses == ("completed",), timeout=600, proc=proc,
                           what="the migration to complete")
        finally:
            for u in users:
                u.finish()
        code = proc.wait(600)
        assert code in (EXIT_OK, EXIT_CHECK_FAILED), proc.tail()
        ops = [op for u in users for op in u.ops]
        actors = [a for u in users for a in u.actors]
        with connect(db_dsn) as conn:
            bad = [op for u in users for op in migration_induced(u, conn)]
            a = audit(conn, orgs, RUN)
            late = {r[0] for r in conn.execute(
                "SELECT id::text FROM universal_transactions WHERE organization_id = ANY(%s::uuid[]) "
                "AND transaction_status = 'voided' AND metadata -> 'migration' ->> 'run_id' = %s", (orgs, RUN))}
        assert bad == [], [(op.kind, op.target, op.sqlstate, op.message) for op in bad]
        assert a.exactly_once() and max(a.reversals.values()) == 1, a.broken_links[:5]
        acted = {op.target for op in ops if op.kind in ("reverse", "void") and op.ok}
        emitted = {op.result for op in ops if op.kind == "emit" and op.ok}
        every = {i for o in orgs for i in ids[o]}
        assert every - a.originals <= acted, "a candidate was neither migrated nor taken by a v1 user"
        assert a.originals - every <= emitted
        assert len({op.kind for op in ops}) == 4 and len(acted) >= 50, len(acted)
        wrong, truths = misclassified(report / "snapshots.duckdb", RUN, actors)
        assert wrong == [], wrong[:10]
        assert truths["concurrent"] > 0 and truths["unexpected"] == len(late)
        assert code == (EXIT_CHECK_FAILED if late else EXIT_OK), results(report)["diff"]

        with connect(db_dsn) as conn:
            v1_rows = {r[0]: r[1] for r in conn.execute(
                "SELECT id::text, md5(to_jsonb(t)::text) FROM universal_transactions t WHERE organization_id = "
                "ANY(%s::uuid[]) AND (created_by::text = ANY(%s) OR updated_by::text = ANY(%s))",
                (orgs, actors, actors))}
        rollback = Spawned(db_dsn, ["rollback", RUN, "--no-progress"], tmp_path / "logs")
        assert rollback.wait(600) == (EXIT_CHECK_FAILED if late else EXIT_OK), rollback.tail()
        with connect(db_dsn) as conn:
            left = audit(conn, orgs, RUN)
            now = {r[0]: r[1] for r in conn.execute(
                "SELECT id::text, md5(to_jsonb(t)::text) FROM universal_transactions t WHERE id::text = ANY(%s)",
                (list(v1_rows),))}
        emitted_migrated = emitted & a.originals  # restored to what the user emitted, not left as migrated
        changed = {i for i in v1_rows if now.get(i) != v1_rows[i]} - emitted_migrated
        assert changed == set(), f"rollback changed rows v1 users wrote: {sorted(changed)[:5]}"
        assert left.originals == late, "rollback left something of the run besides the late-voided groups"
        tally.faults = len(ops)
        tally.rows_checked = sum(truths.values()) + len(v1_rows)
        tally.duplicates = a.duplicates
        tally.unexpected = len(wrong) + len(bad)
        refused = sum(not op.ok for op in ops)
        tally.notes.append(json.dumps({"v1_requests": len(ops), "voids_and_reverses_that_landed": len(acted),
                                       "refused_second_reversals": refused, "late_voids": len(late),
                                       "emitted_then_migrated": len(emitted_migrated)}))

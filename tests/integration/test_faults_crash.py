"""A short crash storm (fast version of `nox -s faults` scenario 1) on a small organisation: SIGKILL in the
before-snapshot, at a random instant of the chunk loop (from outside), in the validation and in the rollback, each
followed by `run --resume` (or `rollback` again); and a `run` reusing the finished run's id without --resume,
which must leave the run's evidence alone. The exact in-process kill points are covered chunk by chunk in
test_engine_kill.py; this covers the phases around them (tests/faults/storm.py has the invariants)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from runner.db.connect import connect
from runner.errors import EXIT_USAGE
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import LEDGER, hera, spec_file
from tests.faults.storm import Storm, StormPlan
from tests.integration.test_engine_support import candidate_ids


def test_short_crash_storm_across_all_phases(db_dsn: str, tmp_path: Path) -> None:
    org = generate(db_dsn, size="small", seed=103).organizations[0].organization_id
    path = spec_file(tmp_path, narrow=True)
    spec = load_spec(path)
    with connect(db_dsn) as conn:
        candidates = {t: set(candidate_ids(conn, org, spec, t)) for t in ("reverse_repost", "reporting_alias")}
    plan = StormPlan(snapshot_kills=1, chunk_kills=2, max_n=2, validation_kills=1, rollback_kills=1, seed=7,
                     batch_size=20)
    with LEDGER.scenario("fast: short crash storm") as tally:
        storm = Storm(db_dsn, [org], path, "run-short-storm", tmp_path, candidates, tally, plan)
        storm.kill_in_snapshot(resume=False)
        for i in range(plan.chunk_kills):
            assert storm.kill_in_chunks(i)
        storm.kill_in_validation()
        storm.finish_run()
        # `run` without --resume on the finished run's id is refused before the before-snapshot is taken (it used
        # to be re-taken first, replacing the run's real before-state — the evidence of its diff — and only then
        # did the engine refuse the id)
        digest = hashlib.sha256(storm.snapshot.read_bytes()).hexdigest()
        again = hera(db_dsn, *storm.run_args(resume=False))
        assert again.returncode == EXIT_USAGE and "already exists" in again.stderr, again.stderr[-2000:]
        assert hashlib.sha256(storm.snapshot.read_bytes()).hexdigest() == digest
        storm.storm_rollback()
        assert len(storm.kills) >= 5, storm.kills  # snapshot, 2 in the chunk loop, validation, rollback


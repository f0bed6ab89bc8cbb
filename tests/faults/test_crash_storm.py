"""Scenario 1 — the crash storm on one medium organisation (HERA_FAULTS_SIZE=small for a quicker look): at
least 20 SIGKILLs — twice in the before-snapshot, sixteen times in the chunk loop (exact in-process points and
random instants from outside) and once more in tier 3, twice in the validation, four times in the rollback —
each followed by `run --resume` (or `rollback` again). At the end validation passes with every candidate
migrated exactly once, and the rollback gives back the organisation as it was (tests/faults/storm.py has the
details and the invariants checked after every kill)."""

from __future__ import annotations

import os
from pathlib import Path

from runner.db.connect import connect
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import LEDGER, spec_file
from tests.faults.storm import Storm, StormPlan
from tests.integration.test_engine_support import candidate_ids

SIZE = os.environ.get("HERA_FAULTS_SIZE", "medium")


def test_crash_storm(db_dsn: str, tmp_path: Path) -> None:
    org = generate(db_dsn, size=SIZE, seed=101).organizations[0].organization_id
    path = spec_file(tmp_path)
    spec = load_spec(path)
    with connect(db_dsn) as conn:
        candidates = {t: set(candidate_ids(conn, org, spec, t)) for t in ("reverse_repost", "reporting_alias")}
    # medium: the engine's adaptive chunks (~200 of them); small: fixed chunks, enough of them for 16 kills
    plan = StormPlan() if SIZE != "small" else StormPlan(batch_size=10, max_n=3, step=(0.02, 0.06))
    with LEDGER.scenario(f"crash storm ({SIZE})") as tally:
        storm = Storm(db_dsn, [org], path, "run-storm", tmp_path, candidates, tally, plan)
        storm.kill_in_snapshot(resume=False)
        storm.kill_in_snapshot(resume=True)  # `--resume` of a run killed before its journal existed starts it
        for i in range(plan.chunk_kills):
            assert storm.kill_in_chunks(i), f"the run finished after only {i} chunk kills"
        assert storm.kill_in_alias_tier(), "the run finished before a kill could land in tier 3"
        storm.kill_in_validation()
        storm.kill_in_validation_deep()
        storm.finish_run()
        storm.storm_rollback()
        tally.notes.append(f"{len(storm.kills)} kills: " + ", ".join(storm.kills))
        assert len(storm.kills) >= 20, storm.kills
        points = {k.split(":")[0] for k in storm.kills}
        assert {"chunk_before_commit", "chunk_after_commit", "between_chunks"} <= points
        assert sum(k.startswith("rollback") for k in storm.kills) >= 3
        assert sum(k.startswith("validation") for k in storm.kills) >= 1

"""The validation catches every defect of the issue's list, planted one at a time into the state a clean run of the
real engine left (tests.tools.defects), and stays silent on the clean run.

One clean run on a small org is built once per module (generate → before-snapshot → run_migration) in a database
that every test clones (CREATE DATABASE … TEMPLATE), so each defect starts from the same migrated state; tests that
need the before/after diff get their own copy of the run's snapshots.duckdb (validate writes the `after` label into
it). The no-false-positive proof on a medium org is slow: it runs only with HERA_SLOW=1 (nox sessions set it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.db.connect import connect, with_database
from runner.db.providers import Server
from runner.engine import RunResult, run_migration
from runner.report import schema_errors
from runner.snapshot.extract import take_snapshot
from runner.spec import Spec, load_spec
from runner.synth.generate import generate
from runner.validate import validate_run
from tests.conftest import create_database, drop_database
from tests.tools.defects import DEFECTS, KINDS, plant

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
RUN = "run-defects-1"
SLOW = os.environ.get("HERA_SLOW") == "1"


@dataclass(frozen=True)
class CleanRun:
    database: str
    org: str
    snapshot: Path
    run_result: RunResult


def spec() -> Spec:
    return load_spec(PHASE7)


def clean_run(dsn: str, size: str, seed: int, snapshot: Path, run_id: str = RUN) -> tuple[str, RunResult,
                                                                                           dict[str, float]]:
    times: dict[str, float] = {}
    t0 = time.monotonic()
    org = generate(dsn, size=size, seed=seed).organizations[0].organization_id
    times["generate"] = time.monotonic() - t0
    t0 = time.monotonic()
    take_snapshot(dsn, [org], snapshot, "before")
    times["snapshot_before"] = time.monotonic() - t0
    t0 = time.monotonic()
    result = run_migration(dsn, spec(), orgs=(org,), run_id=run_id, workers=1, now=True)
    times["run"] = time.monotonic() - t0
    assert result.status == "completed"
    return org, result, times


@pytest.fixture(scope="module")
def migrated(pg_server: Server, core_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleanRun]:
    name = create_database(pg_server.dsn, template=core_template)
    snapshot = tmp_path_factory.mktemp("defects") / "snapshots.duckdb"
    try:
        org, result, _ = clean_run(with_database(pg_server.dsn, name), "small", 7, snapshot)
        yield CleanRun(name, org, snapshot, result)
    finally:
        drop_database(pg_server.dsn, name)


@pytest.fixture
def clone(pg_server: Server, migrated: CleanRun) -> Iterator[str]:
    """DSN of a copy of the migrated database."""
    name = create_database(pg_server.dsn, template=migrated.database)
    yield with_database(pg_server.dsn, name)
    drop_database(pg_server.dsn, name)


def read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def failing(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in results["checks"] if c["status"] in ("failed", "error")}


def test_the_clean_run_has_no_failure_and_scores_100(clone: str, migrated: CleanRun, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshots.duckdb"
    shutil.copy(migrated.snapshot, snapshot)
    out = validate_run(clone, spec(), RUN, report_dir=tmp_path / "r", run=migrated.run_result,
                       snapshot_path=snapshot)
    results = read(out.results_path)
    assert schema_errors(results) == []
    assert failing(results) == {}
    assert all(c["status"] == "passed" for c in results["checks"]), [
        (c["id"], c["status"], c["samples"][:2]) for c in results["checks"] if c["status"] != "passed"]
    assert (out.exit_code, results["integrity_score"], results["records"]["failed"]) == (0, 100.0, 0)
    assert results["diff"]["available"] and sum(results["diff"]["unexpected"].values()) == 0
    assert sum(results["diff"]["expected"].values()) > 0


def test_every_kind_of_the_issue_is_plantable() -> None:
    assert set(KINDS) == {"unbalanced_repost_line", "missing_reversal_line", "repost_amount_drift",
                          "wrong_v2_smart_code", "duplicate_repost", "missed_candidate", "closed_period_migrated",
                          "v1_row_mutated", "orphan_line", "cross_org_line", "alias_outside_mapping"}
    assert all(d.catches for d in DEFECTS.values())


@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_defect_fails_a_critical_check_that_names_it(kind: str, clone: str, migrated: CleanRun,
                                                               tmp_path: Path) -> None:
    defect = DEFECTS[kind]
    snapshot = None
    if defect.needs_diff:
        snapshot = tmp_path / "snapshots.duckdb"
        shutil.copy(migrated.snapshot, snapshot)
    planted = plant(clone, spec(), RUN, kind)
    assert planted.organization_id == migrated.org and planted.record_id
    out = validate_run(clone, spec(), RUN, report_dir=tmp_path / "r", run=migrated.run_result,
                       snapshot_path=snapshot)
    results = read(out.results_path)
    assert schema_errors(results) == []
    bad = failing(results)
    assert out.exit_code == 1 and results["status"] == "failed"
    assert results["integrity_score"] < 95
    assert set(defect.catches) <= set(bad), {c: [s["message"] for s in bad[c]["samples"][:2]] for c in bad}
    assert all(bad[c]["severity"] == "critical" for c in defect.catches)
    first = bad[defect.catches[0]]
    named = {s["record_id"] for s in first["samples"]}
    assert planted.record_id in named, (first["id"], first["samples"])
    assert {s["organization_id"] for s in first["samples"] if s["record_id"] == planted.record_id} == {
        planted.organization_id}
    if defect.needs_diff:  # only the diff sees it: no PostgreSQL check may claim to
        assert set(bad) == {"expected_effect_diff"}
        assert planted.record_id in {s["record_id"] for s in results["diff"]["samples"]}


def test_planting_refuses_an_unknown_kind_or_run_and_writes_nothing(clone: str) -> None:
    from runner.errors import DataError, UsageError

    def state() -> tuple[Any, ...]:
        with connect(clone) as conn:
            row = conn.execute("SELECT (SELECT count(*) FROM universal_transactions), "
                               "(SELECT count(*) FROM universal_transaction_lines), "
                               "(SELECT max(updated_at) FROM universal_transactions)").fetchone()
        assert row is not None
        return tuple(row)

    before = state()
    with pytest.raises(UsageError, match="unknown defect kind"):
        plant(clone, spec(), RUN, "no_such_defect")
    with pytest.raises(DataError, match="no journal"):
        plant(clone, spec(), "no-such-run", "orphan_line")
    assert state() == before


@pytest.mark.skipif(not SLOW, reason="medium-size proof: set HERA_SLOW=1 (nox sessions do) to run it")
def test_a_clean_medium_run_has_no_false_positive(db_dsn: str, tmp_path: Path,
                                                  record_property: Any) -> None:
    snapshot = tmp_path / "snapshots.duckdb"
    org, result, times = clean_run(db_dsn, "medium", 11, snapshot, run_id="run-defects-medium")
    t0 = time.monotonic()
    out = validate_run(db_dsn, spec(), "run-defects-medium", report_dir=tmp_path / "r", run=result,
                       snapshot_path=snapshot)
    times["validate"] = time.monotonic() - t0
    results = read(out.results_path)
    times.update({k: v for k, v in results["performance"]["phases"].items() if k.startswith("validate.")})
    times.update({f"check.{c['id']}": c["seconds"] for c in sorted(results["checks"], key=lambda c: -c["seconds"])[:5]})
    for name, seconds in times.items():
        record_property(name, round(seconds, 3))
    print("medium clean run timings (s):", json.dumps({k: round(v, 2) for k, v in times.items()}))
    assert schema_errors(results) == []
    assert failing(results) == {}, {c: v["samples"][:3] for c, v in failing(results).items()}
    assert (out.exit_code, results["integrity_score"]) == (0, 100.0)
    assert results["organizations"][0]["organization_id"] == org and results["organizations"][0]["migrated"] > 1000
    assert results["diff"]["available"] and sum(results["diff"]["unexpected"].values()) == 0

"""validate_run end to end on real PostgreSQL: results.json (valid against its schema), records.jsonl, index.html
and junit.xml; exit codes; alerts; the before/after snapshot forms; and a run of the real engine."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from runner.db.connect import connect, with_database
from runner.db.providers import Server
from runner.report import render_report, schema_errors
from runner.spec import Spec, load_spec
from runner.validate import validate_run
from tests.conftest import create_database, drop_database
from tests.integration import test_validate_checks as shared
from tests.integration.test_validate_checks import PHASE7, RUN, Migrated, build, phase7, wrong_v2_code

# The hand-migrated database of test_validate_checks (module-scoped: built once for this module too).
migrated_template = shared.migrated_template
migrated = shared.migrated


def with_alerts(spec: Spec, **critical: Any) -> Spec:
    return dataclasses.replace(spec, alerts=dataclasses.replace(
        spec.alerts, critical=dataclasses.replace(spec.alerts.critical, **critical)))


def read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def test_a_faithful_run_validates_and_every_artefact_agrees(migrated: tuple[str, Migrated], tmp_path: Path) -> None:
    dsn, m = migrated
    spec = with_alerts(load_spec(PHASE7), error_rate_above_pct=50.0)  # 1 quarantined of 7 candidates: ~14 %
    out = validate_run(dsn, spec, RUN, report_dir=tmp_path / "r",
                       performance={"phases": {"run": 1.5}, "latency": {"baseline": {"p95_ms": 10.0},
                                                                        "during": {"p95_ms": 10.4, "requests": 200,
                                                                                   "failures": 0}}})
    results = read(out.results_path)
    assert schema_errors(results) == []
    assert (out.exit_code, results["exit_code"], results["integrity_score"]) == (0, 0, 100.0)
    assert results["status"] == "warning"  # the warning error-rate alert (0.5 %) fires, the critical one does not
    assert [(a["level"], a["metric"]) for a in results["alerts"]] == [("warning", "error_rate_pct")]
    assert all(c["status"] == "passed" for c in results["checks"])
    assert len(results["checks"]) == 13
    org = results["organizations"][0]
    assert (org["organization_id"], org["migrated"], org["quarantined"]) == (m.org, 8, 1)
    # The hand migration took 9 of the organisation's candidates: the rest are counted, as still eligible.
    assert org["candidates"] == 9 + org["not_migrated"] and org["not_migrated"] > 0
    assert org["source"]["originals"] == 6 and org["target"] == {
        "reposts": 6, "reposts_amount": org["source"]["originals_amount"], "reversals": 6,
        "reversals_amount": org["target"]["reversals_amount"],
        "reversals_reconciliation": {"originals_lines_amount": org["target"]["reversals_reconciliation"][
            "originals_lines_amount"], "equal": True}}
    assert org["summaries"]["posting_rules"]["records"] == 10 and org["summaries"]["fiscal_periods"]["records"] == 12
    assert org["summaries"]["organization_config"]["migrated"] is True
    records = results["records"]
    assert (records["total"], records["passed"], records["failed"], records["requires_review"]) == (32, 31, 0, 1)
    assert records["by_kind"] == {"transaction": 6, "alias": 2, "entity": 22, "organization_config": 1,
                                  "quarantined": 1}
    lines = [json.loads(x) for x in out.records_path.read_text().splitlines()]
    assert len(lines) == 32
    review = [x for x in lines if x["status"] == "REQUIRES_REVIEW"]
    assert [(x["record_id"], x["kind"], x["reason"]) for x in review] == [(m.quarantined, "quarantined", "unbalanced")]
    assert results["performance"]["impact_pct"] == pytest.approx(4.0)
    assert results["system"]["business_continuity"]["v1_availability_pct"] == 100.0
    assert results["metrics"]["no_progress_minutes"] == 0.0  # the journal says completed
    html = out.html_path.read_text(encoding="utf-8")
    assert "PASSED WITH WARNINGS" in html and "gl_balanced" in html and "{{" not in html and m.org in html
    junit = ET.parse(out.junit_path).getroot()
    assert junit.get("failures") == "0" and junit.get("errors") == "0"
    names = [c.get("name") for c in junit.iter("testcase")]
    assert len(names) == 13 + 1 and names[-1] == "verdict"  # 13 checks and the verdict
    assert any(n and n.startswith("lines_preserved [") for n in names)


def test_a_corrupted_run_exits_1_and_names_the_record(pg_server: Server, migrated_template: tuple[str, Migrated],
                                                     tmp_path: Path) -> None:
    name = create_database(pg_server.dsn, template=migrated_template[0])
    try:
        dsn, m = with_database(pg_server.dsn, name), migrated_template[1]
        with connect(dsn) as conn:
            repost = wrong_v2_code(conn, m)
            conn.commit()
        out = validate_run(dsn, phase7(), RUN, report_dir=tmp_path)
    finally:
        drop_database(pg_server.dsn, name)
    results = read(out.results_path)
    assert schema_errors(results) == []
    assert out.exit_code == 1 and results["status"] == "failed"
    assert out.integrity_score < 95 and results["integrity_score"] == out.integrity_score
    # 30 of 31 migrated records pass (the quarantined one is outside the score), minus 10 for the critical check
    assert results["score"]["records_checked"] == 31 and results["score"]["records_passed"] == 30
    assert results["integrity_score"] == 86.77
    check = next(c for c in results["checks"] if c["id"] == "v2_code_matches_mapping")
    assert (check["status"], check["failures"], [s["record_id"] for s in check["samples"]]) == ("failed", 1, [repost])
    original = next(o for o, r in m.reposts.items() if r == repost)
    failed = [json.loads(x) for x in out.records_path.read_text().splitlines() if '"FAILED"' in x]
    assert [(x["record_id"], x["checks"]["field_accuracy"]) for x in failed] == [(original, "FAILED")]
    assert {(a["level"], a["metric"]) for a in results["alerts"]} >= {("critical", "integrity_score")}
    junit = ET.parse(out.junit_path).getroot()
    failures = [c for c in junit.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name", "").split(" ")[0] for c in failures] == ["v2_code_matches_mapping"]
    assert repost in (failures[0].find("failure").text or "")  # type: ignore[union-attr]
    html = out.html_path.read_text(encoding="utf-8")
    out.html_path.unlink()
    assert render_report(out.results_path).read_text(encoding="utf-8") == html  # a pure render of results.json


def test_snapshots_trial_balance_alias_comparison_and_the_diff(pg_server: Server, core_template: str,
                                                               tmp_path: Path) -> None:
    name = create_database(pg_server.dsn, template=core_template)
    snap = tmp_path / "snapshots.duckdb"
    try:
        dsn = with_database(pg_server.dsn, name)
        m = build(dsn, before_snapshot=snap)
        clean = validate_run(dsn, phase7(), RUN, report_dir=tmp_path / "clean", snapshot_path=snap)
        with connect(dsn) as conn:  # a change only the before/after comparison can see
            conn.execute("UPDATE universal_transactions SET reference_number = 'changed' WHERE id = %s",
                         (m.aliases[0],))
            conn.commit()
        dirty = validate_run(dsn, phase7(), RUN, report_dir=tmp_path / "dirty", snapshot_path=snap)
    finally:
        drop_database(pg_server.dsn, name)
    results = read(clean.results_path)
    assert schema_errors(results) == []
    checks = {c["id"]: c for c in results["checks"]}
    assert results["snapshot"]["after"] is True
    assert checks["trial_balance_unchanged"]["source"] == "snapshot"
    assert checks["alias_only_metadata"]["source"] == "postgresql+snapshot"
    assert results["diff"]["available"] is True, results["diff"]
    assert sum(results["diff"]["unexpected"].values()) == 0, results["diff"]["samples"]
    assert results["diff"]["expected"]["universal_transactions"] >= 6 + 6 + 6 + 2
    assert {c: checks[c]["status"] for c in checks} == dict.fromkeys(checks, "passed"), {
        c: checks[c]["samples"] for c in checks if checks[c]["status"] != "passed"}
    after = {c["id"]: c for c in read(dirty.results_path)["checks"]}
    assert dirty.exit_code == 1
    assert after["alias_only_metadata"]["status"] == "failed"
    assert [s["record_id"] for s in after["alias_only_metadata"]["samples"]] == [m.aliases[0]]
    assert "reference_number" in after["alias_only_metadata"]["samples"][0]["message"]
    assert after["expected_effect_diff"]["status"] == "failed"
    assert after["trial_balance_unchanged"]["status"] == "passed"


def test_a_run_of_the_real_engine_passes_every_check(db_dsn: str, tmp_path: Path) -> None:
    engine = pytest.importorskip("runner.engine")
    from runner.synth.generate import generate

    org = generate(db_dsn, size="small", seed=5).organizations[0].organization_id
    spec = phase7()
    result = engine.run_migration(db_dsn, spec, orgs=(org,), run_id="run-engine-1", workers=1, now=True)
    out = validate_run(db_dsn, spec, "run-engine-1", report_dir=tmp_path, run=result)
    results = read(out.results_path)
    assert schema_errors(results) == []
    bad = {c["id"]: c["samples"][:2] or c["error"] for c in results["checks"] if c["status"] != "passed"}
    assert bad == {}
    org_result = results["organizations"][0]
    assert org_result["migrated"] > 0 and org_result["records"]["failed"] == 0
    assert results["integrity_score"] == 100.0

"""results.json, its JSON Schema, index.html and junit.xml from a results.json fixture. No database."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.report import junit_xml, load_schema, render_report, render_results_html, schema_errors, write_reports
from runner.report.inventory import render_inventory

ORG = "3db521aa-b430-493f-b1d9-c39419cb1c45"
BAD = "0106509a-91c8-43d0-bd51-b908ee79dbee"


def sample_results() -> dict[str, Any]:
    """A failed validation: one critical record check failed in one organisation, a custom check errored."""
    family = {"records": 10, "passed": 10, "failed": 0, "requires_review": 0}
    return {
        "schema_version": "1.0", "run_id": "run-1",
        "spec": {"path": "specs/finance-dna-v2.yaml", "sha256": "ab" * 32, "name": "finance-dna-v2",
                 "version": "1.0.0"},
        "status": "failed", "exit_code": 1, "started_at": "2026-01-02T03:04:05.000001Z",
        "finished_at": "2026-01-02T03:04:09Z",
        "run": {"status": "completed", "started_at": "2026-01-02T02:00:00Z", "finished_at": "2026-01-02T02:10:00Z"},
        "integrity_score": 86.77,
        "score": {"records_checked": 31, "records_passed": 30, "base": 96.7742,
                  "penalties": [{"check": "v2_code_matches_mapping", "severity": "critical", "status": "failed",
                                 "points": 10.0}]},
        "organizations": [{
            "organization_id": ORG, "organization_code": "SYN-S17-001", "candidates": 9, "migrated": 8,
            "quarantined": 1, "integrity_score": 86.77,
            "records": {"checked": 31, "passed": 30, "failed": 1, "requires_review": 1,
                        "by_kind": {"transaction": 6, "alias": 2, "entity": 22, "organization_config": 1,
                                    "quarantined": 1},
                        "failed_by_category": {"data_completeness": 0, "field_accuracy": 1,
                                               "relationship_integrity": 0, "business_rule_compliance": 0}},
            "source": {"originals": 6, "originals_amount": "1234.5600", "aliases": 2, "entities": 22,
                       "quarantined": 1},
            "target": {"reposts": 6, "reposts_amount": "1234.5600", "reversals": 6, "reversals_amount": "1234.5600"},
            "critical_errors": 2, "warnings": 0,
            "summaries": {"posting_rules": family, "fiscal_periods": {**family, "records": 12, "passed": 12},
                          "organization_config": {"migrated": True, "records": 1, "passed": 1, "failed": 0,
                                                  "requires_review": 0},
                          "transaction_history": {"originals": 6, "reversals": 6, "reposts": 6, "aliases": 2,
                                                  "quarantined": 1, "originals_amount": "1234.5600",
                                                  "reposts_amount": "1234.5600"}},
            "run_status": "completed", "journal_last_write": "2026-01-02T02:10:00.000000Z"}],
        "checks": [
            {"id": "gl_balanced", "kind": "builtin", "description": "balances", "level": "record",
             "severity": "critical", "status": "passed", "failures": 0, "samples": [], "warn_threshold": None,
             "error_threshold": 1, "error": None, "source": "postgresql", "seconds": 0.01,
             "params": {"tolerance": "0.0001"},
             "organizations": [{"organization_id": ORG, "status": "passed", "failures": 0, "error": None}]},
            {"id": "v2_code_matches_mapping", "kind": "builtin", "description": "codes <v2>", "level": "record",
             "severity": "critical", "status": "failed", "failures": 1,
             "samples": [{"organization_id": ORG, "record_id": BAD,
                          "message": "repost X-V2: smart code HERA.A.B.C.D.v2 & <b>friends</b>"}],
             "warn_threshold": None, "error_threshold": 1, "error": None, "source": "postgresql", "seconds": 0.02,
             "params": {}, "organizations": [{"organization_id": ORG, "status": "failed", "failures": 1,
                                              "error": None}]},
            {"id": "no_cross_org_references", "kind": "builtin", "description": "no cross org", "level": "system",
             "severity": "critical", "status": "passed", "failures": 0, "samples": [], "warn_threshold": None,
             "error_threshold": 1, "error": None, "source": "postgresql", "seconds": 0.03, "params": {},
             "organizations": []},
            {"id": "broken-custom", "kind": "custom", "description": "custom", "level": "aggregate",
             "severity": "warning", "status": "error", "failures": 0, "samples": [], "warn_threshold": None,
             "error_threshold": 1, "error": "42703 column \"nope\" does not exist", "source": "postgresql",
             "seconds": 0.0, "params": {},
             "organizations": [{"organization_id": ORG, "status": "error", "failures": 0,
                                "error": "42703 column \"nope\" does not exist"}]},
        ],
        "records": {"total": 32, "passed": 30, "failed": 1, "requires_review": 1,
                    "by_kind": {"transaction": 6, "quarantined": 1},
                    "failed_by_category": {"data_completeness": 0, "field_accuracy": 1, "relationship_integrity": 0,
                                           "business_rule_compliance": 0},
                    "file": "records.jsonl",
                    "samples": [{"organization_id": ORG, "record_id": "9f0c1d2e-0000-4000-8000-000000000001",
                                 "kind": "transaction", "label": "JE-0001", "status": "FAILED",
                                 "checks": {"data_completeness": "PASSED", "field_accuracy": "FAILED",
                                            "relationship_integrity": "PASSED", "business_rule_compliance": "PASSED"},
                                 "errors": [{"check": "v2_code_matches_mapping", "severity": "critical",
                                             "fails_record": True}]}]},
        "system": {"organizations_in_scope": 1, "organizations_migrated": 1, "integrity_score": 86.77,
                   "performance_impact_pct": 4.0,
                   "business_continuity": {"measured": True, "v1_requests": 200, "v1_failures": 0,
                                           "v1_availability_pct": 100.0}},
        "diff": {"available": True, "error": None, "expected": {"universal_transactions": 20},
                 "unexpected": {"universal_transaction_lines": 2}, "concurrent": {"core_entities": 3},
                 "samples": [{"organization_id": ORG, "record_id": "line-1", "message": "line changed"}]},
        "snapshot": {"path": "reports/run-1/snapshots.duckdb", "before": True, "after": True, "error": None},
        "performance": {"records_per_second": 5012.5, "phases": {"run.reverse_repost": 2.4, "validate.checks": 0.6},
                        "latency": {"baseline": {"p50_ms": 2.0, "p95_ms": 10.0, "p99_ms": 20.0},
                                    "during": {"p50_ms": 2.1, "p95_ms": 10.4, "p99_ms": 22.0, "requests": 200,
                                               "failures": 0}},
                        "impact_pct": 4.0},
        "metrics": {"integrity_score": 86.77, "error_rate_pct": 22.222, "performance_impact_pct": 4.0,
                    "no_progress_minutes": 0.0, "validation_failures_per_hour": 2.0},
        "alerts": [{"level": "critical", "metric": "integrity_score", "value": 86.77, "threshold": 95.0,
                    "message": "integrity_score 86.77 is below the critical threshold 95"}],
    }


def test_the_fixture_matches_the_schema_and_the_schema_rejects_what_it_must() -> None:
    jsonschema.Draft202012Validator.check_schema(load_schema())
    good = sample_results()
    assert schema_errors(good) == []
    cases = [
        ("schema_version", "2.0"), ("integrity_score", 100.5), ("status", "ok"), ("exit_code", 3),
        ("checks", [{**good["checks"][0], "status": "skipped"}]),
        ("checks", [{**good["checks"][0], "level": "row"}]),
        ("checks", [{**good["checks"][0], "samples": [{"organization_id": ORG, "record_id": "x"}] * 1}]),
        ("checks", [{**good["checks"][0], "samples": [good["checks"][1]["samples"][0]] * 11}]),
        ("alerts", [{"level": "fatal", "metric": "integrity_score", "value": 1, "threshold": 2}]),
        ("organizations", [{**good["organizations"][0], "candidates": -1}]),
        ("started_at", "yesterday"),
    ]
    for key, value in cases:
        bad = copy.deepcopy(good)
        bad[key] = value
        assert schema_errors(bad), f"{key}={value!r} should not validate"
    missing = copy.deepcopy(good)
    del missing["organizations"][0]["integrity_score"]
    assert any("integrity_score" in e for e in schema_errors(missing))


def test_design_fields_are_required_by_the_schema() -> None:
    schema = load_schema()
    assert {"schema_version", "run_id", "spec", "status", "started_at", "finished_at", "integrity_score",
            "organizations", "checks", "diff", "performance", "alerts"} <= set(schema["required"])
    assert {"organization_id", "candidates", "migrated", "quarantined", "integrity_score"} <= set(
        schema["$defs"]["organization"]["required"])
    assert {"id", "level", "severity", "status", "failures", "samples"} <= set(schema["$defs"]["check"]["required"])


def test_html_is_a_self_contained_render_of_the_results(tmp_path: Path) -> None:
    html = render_results_html(sample_results())
    assert 'id="verdict">FAILED<' in html and "86.77" in html
    for check_id in ("gl_balanced", "v2_code_matches_mapping", "no_cross_org_references", "broken-custom"):
        assert f'id="check-{check_id}"' in html
    assert BAD in html and "SYN-S17-001" in html and "universal_transaction_lines" in html
    assert "&lt;b&gt;friends&lt;/b&gt;" in html and "<b>friends</b>" not in html  # escaped
    assert "42703 column &#34;nope&#34; does not exist" in html
    assert "{{" not in html and "{%" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<script" not in html
    path = tmp_path / "results.json"
    path.write_text(json.dumps(sample_results()), encoding="utf-8")
    assert render_report(path) == tmp_path / "index.html"
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == html


def test_a_passing_report_says_so() -> None:
    results = sample_results()
    results.update(status="passed", exit_code=0, alerts=[], checks=results["checks"][:1])
    results["diff"] = {"available": False, "error": None, "expected": {}, "unexpected": {}, "concurrent": {},
                       "samples": []}
    results["performance"]["latency"] = None
    html = render_results_html(results)
    assert 'id="verdict">PASSED<' in html and "No alert fired." in html and "No before/after snapshot diff" in html


def test_junit_has_one_testcase_per_check_and_organisation_and_parses() -> None:
    root = ET.fromstring(junit_xml(sample_results()))
    cases = list(root.iter("testcase"))
    assert [c.get("name") for c in cases] == ["gl_balanced [SYN-S17-001]", "v2_code_matches_mapping [SYN-S17-001]",
                                              "broken-custom [SYN-S17-001]", "no_cross_org_references"]
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")
    failure = cases[1].find("failure")
    assert failure is not None and BAD in (failure.text or "") and "<b>friends</b>" in (failure.text or "")
    error = cases[2].find("error")
    assert error is not None and "42703" in (error.get("message") or "")
    suites = {s.get("name"): s.get("tests") for s in root.iter("testsuite")}
    assert suites == {"record checks": "2", "aggregate checks": "1", "system checks": "1"}


def test_write_reports_writes_three_artefacts_from_one_document(tmp_path: Path) -> None:
    paths = write_reports(sample_results(), tmp_path)
    assert json.loads(paths["results"].read_text(encoding="utf-8")) == sample_results()
    assert paths["html"].read_text(encoding="utf-8") == render_results_html(sample_results())
    assert ET.parse(paths["junit"]).getroot().tag == "testsuites"


def test_the_inventory_report_still_renders() -> None:
    html = render_inventory({"size": "small", "seed": 1, "server": "embedded", "seconds": 1.0, "organizations": []})
    assert "HERA synthetic ledger inventory" in html


@pytest.mark.parametrize("doc", ["docs/results-schema.md"])
def test_the_doc_page_describes_every_top_level_field(doc: str) -> None:
    text = (Path(__file__).resolve().parents[2] / doc).read_text(encoding="utf-8")
    for key in load_schema()["properties"]:
        assert f"`{key}`" in text, key

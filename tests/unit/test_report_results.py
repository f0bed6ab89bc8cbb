"""results.json, its JSON Schema, index.html and junit.xml from a results.json fixture. No database."""

from __future__ import annotations

import copy
import json
import re
import stat
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
        "schema_version": "2.0", "run_id": "run-1",
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
            "reverse_reposted": 6, "aliased": 2, "quarantined": 1, "not_migrated": 0,
            "skipped": {"closed_period": 3, "voided": 1}, "skipped_total": 4, "unmapped": 2,
            "integrity_score": 86.77,
            "records": {"checked": 31, "passed": 30, "failed": 1, "requires_review": 1,
                        "by_kind": {"transaction": 6, "alias": 2, "entity": 22, "organization_config": 1,
                                    "quarantined": 1},
                        "failed_by_category": {"data_completeness": 0, "field_accuracy": 1,
                                               "relationship_integrity": 0, "business_rule_compliance": 0}},
            "source": {"originals": 6, "originals_amount": {"USD": "1234.5600", "AED": "900.0000"}, "aliases": 2,
                       "aliases_amount": {"EUR": "10.0000"}, "entities": 22,
                       "entities_by_family": {"posting_rules": 10, "fiscal_periods": 12}, "quarantined": 1},
            "target": {"reposts": 6, "reposts_amount": {"USD": "1234.5600", "AED": "900.0000"}, "reversals": 6,
                       "reversals_amount": {"USD": "2469.1200", "AED": "1800.0000"},
                       "reversals_reconciliation": {"originals_lines_amount": {"USD": "2469.12000000",
                                                                               "AED": "1800.00000000"},
                                                    "equal": True}},
            "by_code": [
                {"v1_code": "HERA.FIN.GL.TXN.JOURNAL.v1", "tier": "reverse_repost",
                 "v2_code": "HERA.FIN.GL.TXN.JOURNAL.v2", "candidates": 7, "reverse_reposted": 6, "aliased": 0,
                 "quarantined": 1, "not_migrated": 0, "unmapped": 0, "skipped": {"closed_period": 3, "voided": 1},
                 "skipped_total": 4,
                 "amounts": {"migrated": {"USD": "1234.5600", "AED": "900.0000"}, "skipped": {"USD": "77.0000"}}},
                {"v1_code": "HERA.FIN.AR.TXN.INVOICE.v1", "tier": "reporting_alias",
                 "v2_code": "HERA.FIN.AR.TXN.INVOICE.v2", "candidates": 2, "reverse_reposted": 0, "aliased": 2,
                 "quarantined": 0, "not_migrated": 0, "unmapped": 0, "skipped": {}, "skipped_total": 0,
                 "amounts": {"migrated": {"EUR": "10.0000"}}},
                {"v1_code": "HERA.FIN.XX.TXN.ODD.v1", "tier": None, "v2_code": None, "candidates": 0,
                 "reverse_reposted": 0, "aliased": 0, "quarantined": 0, "not_migrated": 0, "unmapped": 2,
                 "skipped": {}, "skipped_total": 0, "amounts": {"unmapped": {"GBP": "5.0000"}}}],
            "amounts": {"migrated": {"USD": "1234.5600", "AED": "900.0000", "EUR": "10.0000"}},
            "critical_errors": 2, "warnings": 0,
            "summaries": {"posting_rules": family, "fiscal_periods": {**family, "records": 12, "passed": 12},
                          "organization_config": {"migrated": True, "records": 1, "passed": 1, "failed": 0,
                                                  "requires_review": 0},
                          "transaction_history": {"originals": 6, "reversals": 6, "reposts": 6, "aliases": 2,
                                                  "quarantined": 1,
                                                  "originals_amount": {"USD": "1234.5600", "AED": "900.0000"},
                                                  "reposts_amount": {"USD": "1234.5600", "AED": "900.0000"}}},
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
                   "performance_impact": {
                       "cpu_usage_increase": {"baseline_pct": 10.0, "during_pct": 55.5, "increase_pct_points": 45.5,
                                              "increase_pct": 455.0},
                       "memory_usage_increase": None,
                       "response_time_impact": {"baseline_p95_ms": 10.0, "during_p95_ms": 10.4, "increase_pct": 4.0},
                       "source": "/proc of the database host (local server)",
                       "reasons": {"memory_usage_increase": "no baseline window was sampled"}},
                   "business_continuity": {"measured": True, "v1_requests": 200, "v1_failures": 0,
                                           "service_availability": 100.0, "transaction_success_rate": 100.0,
                                           "error_rate": 0.0, "v1_availability_pct": 100.0, "reason": None}},
        "counts": {"candidates": 9, "reverse_reposted": 6, "aliased": 2, "migrated": 8, "quarantined": 1,
                   "not_migrated": 0, "skipped_total": 4, "unmapped": 2, "entities": 22,
                   "checks": {"total": 4, "passed": 2, "warning": 0, "failed": 1, "error": 1, "from_spec": 4,
                              "expected_effect_diff": False}},
        "environment": {"database_server": {"version": "15.8", "build": "PostgreSQL 15.8", "host": "127.0.0.1",
                                            "port": 5432, "address": "127.0.0.1/32", "database": "hera",
                                            "user": "qa"},
                        "tool": {"name": "hera-migration-harness", "version": "0.1.0", "python": "3.11.9"},
                        "runner_host": "ci-1", "operator": "Ada QA", "operator_source": "HERA_OPERATOR",
                        "started_at": "2026-01-02T02:00:00Z", "finished_at": "2026-01-02T03:04:09Z"},
        "ledger": {"trial_balance": {
            "available": True, "reason": None, "rows": 2, "differing": 1, "tolerance": "0",
            "top": [{"organization_id": ORG, "account_id": "acc-1", "account_code": "1100", "currency": "USD",
                     "before": "1000.0000", "after": "1001.5000", "delta": "1.5000", "differs": True},
                    {"organization_id": ORG, "account_id": "acc-2", "account_code": "4000", "currency": "AED",
                     "before": "-250.0000", "after": "-250.0000", "delta": "0.0000", "differs": False}],
            "totals": {"AED": {"before": "-250.0000", "after": "-250.0000", "delta": "0.0000"},
                       "USD": {"before": "1000.0000", "after": "1001.5000", "delta": "1.5000"}},
            "csv": "trial_balance.csv"}},
        "diff": {"available": True, "error": None, "expected": {"universal_transactions": 20},
                 "unexpected": {"universal_transaction_lines": 2}, "concurrent": {"core_entities": 3},
                 "changes": [{"table": "universal_transaction_lines", "class": "unexpected", "inserted": 0,
                              "updated": 2, "deleted": 0, "sample_ids": ["line-1", "line-2"],
                              "changed_columns": ["line_amount"]}],
                 "samples": [{"organization_id": ORG, "record_id": "line-1", "message": "line changed"}]},
        "snapshot": {"path": "reports/run-1/snapshots.duckdb", "before": True, "after": True, "error": None},
        "performance": {"records_per_second": 5012.5, "records_per_second_basis": "candidates per second",
                        "phases": {"migrate": 2.5, "validate.checks": 0.6}, "phases_clock": "wall",
                        "engine_seconds_summed_over_organizations": {"reverse_repost": 2.4},
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
        ("schema_version", "1.0"), ("integrity_score", 100.5), ("status", "ok"), ("exit_code", 3),
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
                                              "broken-custom [SYN-S17-001]", "no_cross_org_references", "verdict"]
    # the verdict case fails only for a verdict that is no pass although no check failed (tested below)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "1", "1")
    failure = cases[1].find("failure")
    assert failure is not None and BAD in (failure.text or "") and "<b>friends</b>" in (failure.text or "")
    error = cases[2].find("error")
    assert error is not None and "42703" in (error.get("message") or "")
    suites = {s.get("name"): s.get("tests") for s in root.iter("testsuite")}
    assert suites == {"record checks": "2", "aggregate checks": "1", "system checks": "1", "verdict": "1"}


def test_write_reports_writes_three_artefacts_from_one_document(tmp_path: Path) -> None:
    (tmp_path / "records.jsonl").write_text("{}\n", encoding="utf-8")
    paths = write_reports(sample_results(), tmp_path)
    written = json.loads(paths["results"].read_text(encoding="utf-8"))
    assert {k: v for k, v in written.items() if k != "artefacts"} == sample_results()
    # every file of the directory is linked, and only files that exist (no load report here)
    assert [a["name"] for a in written["artefacts"]] == ["results.json", "index.html", "junit.xml", "records.jsonl"]
    html = paths["html"].read_text(encoding="utf-8")
    assert html == render_results_html(written)
    assert '<a href="records.jsonl">' in html and '<a href="trial_balance.csv">' in html
    assert ET.parse(paths["junit"]).getroot().tag == "testsuites"
    # a report is a document to share: readable by all like every other file (mkstemp alone gives 0600)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths.values()} == dict.fromkeys(
        ("results.json", "index.html", "junit.xml"), 0o644)


def test_the_inventory_report_still_renders() -> None:
    html = render_inventory({"size": "small", "seed": 1, "server": "embedded", "seconds": 1.0, "organizations": []})
    assert "HERA synthetic ledger inventory" in html


@pytest.mark.parametrize("doc", ["docs/results-schema.md"])
def test_the_doc_page_describes_every_top_level_field(doc: str) -> None:
    text = (Path(__file__).resolve().parents[2] / doc).read_text(encoding="utf-8")
    for key in load_schema()["properties"]:
        assert f"`{key}`" in text, key


@pytest.mark.parametrize("status", ["nothing_checked", "rolled_back"])
def test_junit_never_passes_a_run_with_nothing_to_check_or_rolled_back(status: str) -> None:
    results = sample_results()
    results["checks"] = [results["checks"][0]]  # only a passed check left
    assert ET.fromstring(junit_xml(results)).get("failures") == "0"
    results["status"] = status
    root = ET.fromstring(junit_xml(results))
    assert root.get("failures") == "1"
    (failure,) = root.iter("failure")
    assert failure.get("message", "").startswith(status)


def test_money_keeps_every_digit_with_separators_and_currency() -> None:
    from runner.report.html import amounts, money

    assert money("6925903.6800", "USD") == "6,925,903.68 USD"
    assert money("1.2345", "EUR") == "1.2345 EUR"  # never rounded away
    assert money("0E-8", "AED") == "0.00 AED" and money("-1234.5", "") == "-1,234.50 (no currency)"
    assert str(amounts({"USD": "1.5", "AED": "100"})) == (
        '<span class="amt">100.00 AED</span> · <span class="amt">1.50 USD</span>')


def test_a_rolled_back_or_empty_validation_is_never_shown_as_passed() -> None:
    results = sample_results()
    results.update(status="nothing_checked", exit_code=4, integrity_score=None, alerts=[])
    results["score"] = {**results["score"], "records_checked": 0, "records_passed": 0, "base": None, "penalties": []}
    results["organizations"][0]["integrity_score"] = None
    assert schema_errors(results) == []
    html = render_results_html(results)
    assert 'id="verdict">NOTHING CHECKED<' in html and "integrity score undefined" in html
    assert 'id="nothing-banner"' in html and ">PASSED<" not in html

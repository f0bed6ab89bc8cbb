"""The validation's pure parts: the wrapper's thresholds and statuses, the integrity score, alerts, the diff reader,
level-1 verdicts and the built-in statements' parameters. No database."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from runner.compile.custom import custom_text
from runner.snapshot.diff import DiffResult, DiffSample
from runner.spec import load_spec
from runner.spec.model import Alerts, CheckDef, CriticalAlerts, Threshold, Transform, WarningAlerts
from runner.validate import alerts, builtin, effects
from runner.validate.outcome import SAMPLE_LIMIT, combine, errored, merge, status_for, tally
from runner.validate.records import Flag, category, verdict
from runner.validate.score import integrity_score, penalty_for

PHASE7 = Path(__file__).resolve().parents[2] / "specs" / "finance-dna-v2.yaml"


def check(warn: int | None = None, error: int = 1, severity: str = "critical", level: str = "record") -> CheckDef:
    return CheckDef("c", "builtin", level, severity, warn, error, {})  # type: ignore[arg-type]


def rows(n: int, org: str = "o1") -> list[tuple[str, str, str]]:
    return [(org, f"r{i:03d}", f"problem {i}") for i in range(n)]


# --- the wrapper ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "warn", "error", "expected"), [
    (0, None, 1, "passed"), (1, None, 1, "failed"), (5, None, 1, "failed"),
    (0, 1, 3, "passed"), (1, 1, 3, "warning"), (2, 1, 3, "warning"), (3, 1, 3, "failed"),
    (4, None, 5, "passed"), (5, None, 5, "failed"), (9, 10, 20, "passed"), (10, 10, 20, "warning"),
])
def test_thresholds_decide_the_status(failures: int, warn: int | None, error: int, expected: str) -> None:
    assert status_for(failures, warn, error) == expected
    assert tally(check(warn, error), "o1", rows(failures)).status == expected


def test_tally_counts_every_row_keeps_ten_samples_and_every_flagged_id() -> None:
    result = tally(check(), "o1", rows(25))
    assert result.failures == 25 and len(result.samples) == SAMPLE_LIMIT == 10
    assert [s.record_id for s in result.samples] == [f"r{i:03d}" for i in range(10)]
    assert result.flagged == {"o1": {f"r{i:03d}" for i in range(25)}}
    assert result.samples[0].as_dict() == {"organization_id": "o1", "record_id": "r000", "message": "problem 0"}


def test_combine_sums_organisations_applies_thresholds_to_the_sum_and_an_error_wins() -> None:
    c = check(warn=None, error=5)
    a, b = tally(c, "o1", rows(3, "o1")), tally(c, "o2", rows(3, "o2"))
    assert (a.status, b.status) == ("passed", "passed")
    both = combine(c, "d", [a, b])
    assert (both.status, both.failures, len(both.samples)) == ("failed", 6, 6)
    assert both.org_result("o2").failures == 3
    broken = combine(c, "d", [a, errored("o2", "42703 column x does not exist")])
    assert broken.status == "error" and broken.failing and broken.error == "42703 column x does not exist"
    assert broken.as_dict()["organizations"][1] == {"organization_id": "o2", "status": "error", "failures": 0,
                                                    "error": "42703 column x does not exist", "seconds": 0.0}


def test_a_system_check_is_split_by_organisation_for_level_two() -> None:
    c = check(level="system", error=2)
    outcome = combine(c, "d", [tally(c, None, rows(1, "o1") + rows(2, "o2"))])
    assert outcome.status == "failed"
    assert (outcome.org_result("o1").status, outcome.org_result("o1").failures) == ("passed", 1)
    assert (outcome.org_result("o2").status, outcome.org_result("o2").failures) == ("failed", 2)


def test_merge_counts_a_record_once() -> None:
    c = check(error=3)
    org = tally(c, "o1", rows(2))
    merge(c, org, [("o1", "r000", "again"), ("o1", "x", "new")])
    assert (org.failures, org.status, [s.record_id for s in org.samples]) == (3, "failed", ["r000", "r001", "x"])


def pct(text: str) -> Threshold:
    return Threshold(percent=Decimal(text))


@pytest.mark.parametrize(("failures", "warn", "error", "checked", "expected"), [
    # error_threshold "0.5%" of 1000 checked records is 5 rows
    (4, None, pct("0.5"), 1000, "passed"), (5, None, pct("0.5"), 1000, "failed"),
    # warn on any offending row, fail from 0.5 %: the band QA asked for
    (0, Threshold(count=1), pct("0.5"), 1000, "passed"), (1, Threshold(count=1), pct("0.5"), 1000, "warning"),
    (4, Threshold(count=1), pct("0.5"), 1000, "warning"), (5, Threshold(count=1), pct("0.5"), 1000, "failed"),
    # a percentage never fires on zero rows, and one row is always enough when few records were checked
    (0, None, pct("0.5"), 0, "passed"), (1, None, pct("0.5"), 10, "failed"),
    # percentages on both sides
    (1, pct("0.1"), pct("1"), 1000, "warning"), (9, pct("0.1"), pct("1"), 1000, "warning"),
    (10, pct("0.1"), pct("1"), 1000, "failed"),
    # the number of checked records is unknown (a check run on its own): a percentage is as strict as one row
    (1, None, pct("50"), None, "failed"),
])
def test_percentage_thresholds_apply_to_the_checked_records(failures: int, warn: Threshold | None, error: Threshold,
                                                            checked: int | None, expected: str) -> None:
    assert status_for(failures, warn, error, checked) == expected


def test_combine_applies_percentages_to_each_organisation_and_to_the_run_total() -> None:
    c = CheckDef("c", "custom", "record", "critical", Threshold(count=1), pct("10"), {})
    a, b = tally(c, "o1", rows(3, "o1")), tally(c, "o2", rows(1, "o2"))
    assert (a.status, b.status) == ("failed", "failed")  # nothing counted yet: as strict as one row
    both = combine(c, "d", [a, b], checked={"o1": 20, "o2": 20})
    # o1: 3 of 20 checked = 15 % >= 10 %; o2: 1 of 20 = 5 %: a warning; the run: 4 of 40 = 10 %: failed
    assert (both.per_org[0].status, both.per_org[1].status, both.status) == ("failed", "warning", "failed")
    looser = combine(c, "d", [tally(c, "o1", rows(3, "o1")), tally(c, "o2", rows(1, "o2"))],
                     checked={"o1": 20, "o2": 80})
    assert looser.status == "warning"  # 4 of 100 = 4 %
    shown = looser.as_dict()
    # results.json keeps whole-row thresholds (the ones applied to the run total) and says what the spec wrote
    assert (shown["warn_threshold"], shown["error_threshold"]) == (1, 10)
    assert shown["thresholds"] == {"warn_threshold": "1", "error_threshold": "10%", "checked_records": 100}


def test_a_system_checks_organisation_split_uses_that_organisations_records() -> None:
    c = CheckDef("s", "custom", "system", "critical", None, pct("10"), {})
    outcome = combine(c, "d", [tally(c, None, rows(2, "o1") + rows(2, "o2"))], checked={"o1": 10, "o2": 100})
    assert outcome.status == "passed"  # 4 of 110 < 10 %
    assert outcome.org_result("o1").status == "failed"  # 2 of 10 = 20 %
    assert outcome.org_result("o2").status == "passed"  # 2 of 100 = 2 %


def test_an_errored_organisation_stays_an_error_when_thresholds_are_applied_again() -> None:
    c = CheckDef("c", "custom", "record", "critical", None, pct("50"), {})
    both = combine(c, "d", [tally(c, "o1", rows(0)), errored("o2", "boom")], checked={"o1": 5, "o2": 5})
    assert both.status == "error" and both.per_org[1].status == "error" and both.per_org[0].status == "passed"


def test_custom_sql_stops_at_its_first_semicolon() -> None:
    assert custom_text("SELECT 1 AS a; -- done\n") == "SELECT 1 AS a"
    assert custom_text("SELECT ';' AS a") == "SELECT ';' AS a"


# --- the integrity score -------------------------------------------------------------------------------------------


def test_score_of_a_clean_run_is_100_and_of_nothing_checked_undefined() -> None:
    assert integrity_score(0, 0, []) is None  # never a vacuous 100 over zero records
    assert integrity_score(0, 0, [("a", "critical", "failed")]) is None
    assert integrity_score(1000, 0, [("a", "critical", "passed"), ("b", "warning", "passed")]) == 100


def test_score_is_the_passed_share_rounded_down() -> None:
    assert integrity_score(2, 1, []) == Decimal("66.66")  # 66.666.. down, never up
    assert integrity_score(9999, 1, []) == Decimal("99.99")
    assert integrity_score(199_999, 1, []) == Decimal("99.99")  # 99.9995 does not round up to 100
    assert integrity_score(0, 5, []) == 0


@pytest.mark.parametrize(("severity", "status", "points"), [
    ("critical", "failed", 10), ("critical", "error", 10), ("warning", "failed", 2), ("warning", "error", 2),
    ("critical", "warning", Decimal("0.5")), ("warning", "warning", Decimal("0.5")), ("info", "failed", 0),
    ("info", "warning", 0), ("critical", "passed", 0),
])
def test_penalties(severity: str, status: str, points: Decimal) -> None:
    assert penalty_for(severity, status) == points
    assert integrity_score(10, 0, [("x", severity, status)]) == 100 - Decimal(points)


def test_one_failed_critical_check_pushes_even_a_perfect_run_below_the_critical_threshold() -> None:
    default = CriticalAlerts().integrity_score_below
    assert default == 95
    assert integrity_score(1_000_000, 0, [("expected_effect_diff", "critical", "failed")]) < default
    assert integrity_score(1_000_000, 0, [("gl_balanced", "critical", "error")]) < default


def test_score_never_goes_below_zero_and_is_deterministic() -> None:
    many = [(f"c{i}", "critical", "failed") for i in range(20)]
    assert integrity_score(5, 5, many) == 0
    assert integrity_score(123, 7, many[:1]) == integrity_score(123, 7, many[:1]) == Decimal("84.61")
    with pytest.raises(ValueError):
        integrity_score(-1, 0, [])


# --- alerts --------------------------------------------------------------------------------------------------------


def test_alerts_fire_on_the_spec_thresholds_critical_first_and_once_per_metric() -> None:
    fired = alerts.evaluate(Alerts(), {"integrity_score": 94.99, "error_rate_pct": 0.6,
                                       "performance_impact_pct": 10.0, "no_progress_minutes": 30.0,
                                       "validation_failures_per_hour": 6.0})
    assert [(a.level, a.metric) for a in fired] == [
        ("critical", "integrity_score"), ("critical", "no_progress_minutes"), ("warning", "error_rate_pct"),
        ("warning", "performance_impact_pct"), ("warning", "validation_failures_per_hour")]
    assert fired[0].as_dict() == {"level": "critical", "metric": "integrity_score", "value": 94.99, "threshold": 95.0,
                                  "message": "integrity_score 94.99 is below the critical threshold 95"}


def test_alerts_respect_boundaries_null_thresholds_and_missing_metrics() -> None:
    spec = Alerts(critical=CriticalAlerts(integrity_score_below=95, error_rate_above_pct=None),
                  warning=WarningAlerts(integrity_score_below=None, error_rate_above_pct=None,
                                        performance_impact_above_pct=None, validation_failures_per_hour_above=None))
    assert alerts.evaluate(spec, {"integrity_score": 95.0, "error_rate_pct": 99.0}) == []
    assert alerts.evaluate(spec, {"integrity_score": None, "performance_impact_pct": None}) == []
    assert [a.metric for a in alerts.evaluate(spec, {"performance_impact_pct": 10.001})] == ["performance_impact_pct"]


def test_rates_and_impact() -> None:
    assert alerts.failures_per_hour(3, 600) == 3  # a 10-minute run counts as an hour
    assert alerts.failures_per_hour(12, 7200) == 6
    assert alerts.impact_pct(10.0, 11.0) == pytest.approx(10.0)
    assert alerts.impact_pct(None, 11.0) is None and alerts.impact_pct(0, 1) is None


# --- the diff ------------------------------------------------------------------------------------------------------


def _diff(counts: dict[str, dict[str, int]], unexpected: list[DiffSample] | None = None) -> DiffResult:
    full = {cls: counts.get(cls, {}) for cls in ("expected", "unexpected", "concurrent")}
    return DiffResult(run_id="r", actor_id="a", counts=full, by_kind={},
                      samples={"unexpected": {"universal_transaction_lines": unexpected or []}})


def test_the_snapshot_layers_diff_becomes_counts_and_a_critical_system_check() -> None:
    row = DiffSample(table="universal_transaction_lines", record_id="L1", organization_id="o1", transaction_id="T1",
                     kind="updated", changed_columns=["line_amount"], reason="line changed in a transaction of the run")
    diff = effects.section(_diff({"expected": {"universal_transactions": 12},
                                  "unexpected": {"universal_transaction_lines": 1}}, [row]))
    assert diff["available"] and diff["unexpected"] == {"universal_transaction_lines": 1}
    assert diff["samples"] == [{"organization_id": "o1", "record_id": "L1",
                                "message": "universal_transaction_lines: line changed in a transaction of the run"}]
    outcome = effects.outcome(diff)
    assert outcome is not None and (outcome.status, outcome.failures, outcome.check.severity) == (
        "failed", 1, "critical")
    assert effects.outcome(effects.section(None)) is None
    clean = effects.outcome(effects.section(_diff({"expected": {"t": 3}, "concurrent": {"t": 1}})))
    assert clean is not None and clean.status == "passed"
    broken = effects.outcome(effects.section(effects.DiffFailure("boom")))
    assert broken is not None and broken.status == "error"


# --- level 1 -------------------------------------------------------------------------------------------------------


def test_record_verdicts() -> None:
    failing = Flag("lines_preserved", "critical", True)
    note = Flag("gl_balanced", "info", False)
    assert verdict("transaction", [], False)[0] == "PASSED"
    status, cats = verdict("transaction", [failing, note], False)
    assert status == "FAILED" and cats["field_accuracy"] == "FAILED" and cats["business_rule_compliance"] == "PASSED"
    assert verdict("transaction", [note], False)[0] == "PASSED"
    assert verdict("quarantined", [], False)[0] == "REQUIRES_REVIEW"
    assert verdict("transaction", [failing], True)[0] == "REQUIRES_REVIEW"
    assert category("no_cross_org_references") == "relationship_integrity"
    assert category("my-custom-check") == "business_rule_compliance"


# --- built-in statements -------------------------------------------------------------------------------------------


def test_resolution_binds_the_mappings_the_run_touched_and_entity_remaps() -> None:
    spec = load_spec(PHASE7)
    resolved = builtin.Resolved.build(spec, [
        ("original", None, "HERA.FINANCE.GL.TXN.JOURNAL.v1"), ("alias", None, "HERA.MFG.PROD.TXN.WO_ISSUE.v1"),
        ("original", None, "HERA.NOT.MAPPED.AT.ALL.v1"),
        ("entity", "posting_rules", "HERA.SALON.ENTITY.FINANCIAL_POLICY.VAT_POSTING.v1"),
        ("entity", "fiscal_periods", "HERA.SOMETHING.ELSE.ENTIRELY.v1")])
    assert resolved.mappings.v1_codes == ["HERA.FINANCE.GL.TXN.JOURNAL.v1", "HERA.MFG.PROD.TXN.WO_ISSUE.v1"]
    assert resolved.mappings.v2_codes == ["HERA.ACCOUNTING.GL.TXN.JOURNAL.v2", "HERA.MFG.PROD.TXN.WO_ISSUE.v2"]
    assert resolved.mappings.labels == ["gl-journal", "mfg-wo-issue"]
    assert resolved.expected_codes == ["HERA.ACCOUNTING.POLICY.RULE.VAT_POSTING.v2", "HERA.SOMETHING.ELSE.ENTIRELY.v1"]


def test_only_final_set_transforms_are_checked() -> None:
    tfs = (Transform(set_="metadata.a.b", value=1), Transform(set_="metadata.x", value=2),
           Transform(copy="metadata.y", to="metadata.a"), Transform(set_="dynamic.f.g", value="v"),
           Transform(rename="dynamic.f", to="dynamic.h"), Transform(set_="metadata.z", value=Decimal("0.10")))
    assert [t.target for t in builtin.final_sets(tfs)] == ["metadata.x", "metadata.z"]
    text = builtin.transform_params(load_spec(PHASE7))
    assert '"kind":"dynamic","field":"policy_config","path":["rule_version"],"value":"v2.1"' in text
    assert '"kind":"settings","field":null,"path":["finance_dna","version"]' in text


def test_ignore_fields_are_bound_flags_and_line_data_means_side() -> None:
    base = load_spec(PHASE7)
    rule = dataclasses.replace(base.validations.builtin.lines_preserved, ignore_fields=("tax_amount", "line_data"))
    spec = dataclasses.replace(base, validations=dataclasses.replace(
        base.validations, builtin=dataclasses.replace(base.validations.builtin, lines_preserved=rule)))
    ignoring = next(c for c in spec.validations.checks() if c.id == "lines_preserved")
    default = next(c for c in base.validations.checks() if c.id == "lines_preserved")
    params = builtin.params_for(ignoring, spec, builtin.Resolved())
    assert params["ignore"] == {"entity_id": False, "line_type": False, "quantity": False, "unit_amount": False,
                                "line_amount": False, "discount_amount": False, "tax_amount": True, "side": True}
    assert params["ov_to"] == ["HERA.ACCOUNTING.GL.LINE.DEBIT.v2", "HERA.ACCOUNTING.GL.LINE.CREDIT.v2"] * 6
    org = "00000000-0000-0000-0000-000000000001"
    one = builtin.statement(ignoring, spec, "r", builtin.Resolved(), org_id=org)
    other = builtin.statement(default, base, "r", builtin.Resolved(), org_id=org)
    assert one.text == other.text and one.params != other.params  # flags are bound, the SQL text is the same


def test_review_statements_cover_every_validation_template_with_values_bound() -> None:
    from runner.compile import template_names

    spec = load_spec(PHASE7)
    names = {s.name for s in builtin.review_statements(spec)}
    assert names == {t for t in template_names() if t.startswith("validate/")}
    for stmt in builtin.review_statements(spec):
        assert "run_id>" not in stmt.text and "HERA.ACCOUNTING" not in stmt.text, stmt.name
        # every statement binds the run's values, except the environment block's, which reads the server only
        assert stmt.params or stmt.name == "validate/environment", stmt.name

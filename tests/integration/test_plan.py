"""Tier 1: `plan` counts equal the generator's ground truth, it writes nothing, and scope narrows it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.db.connect import connect
from runner.plan import Plan, build_plan
from runner.spec import Spec, load_spec
from runner.spec.model import DateRange, Organizations
from runner.synth.generate import OrgResult, generate
from runner.synth.ledger import CodeTruth

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
ELIGIBLE = ("posted", "completed")
SIX = ("core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
       "universal_transactions", "universal_transaction_lines")


def hera(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    return subprocess.run([sys.executable, "-m", "runner", "--dsn", dsn, *args], capture_output=True, text=True,
                          timeout=120, check=False, env=env)


def expected_from_truth(truth: CodeTruth) -> dict[str, int]:
    """What the Phase 7 default scope must say for one v1 code, from the generator's own bookkeeping."""
    out = {"candidates": sum(n for s, n in truth.open_by_status.items() if s in ELIGIBLE),
           "ineligible_status": sum(n for s, n in truth.open_by_status.items() if s not in ELIGIBLE),
           "closed_period": truth.closed, "reversed": truth.reversed, "voided": truth.voided,
           "reversal_twin": truth.reversed}
    return {k: v for k, v in out.items() if v}


def observed(plan: Plan, org_id: str) -> dict[str, dict[str, int]]:
    org = next(o for o in plan.organizations if o.organization_id == org_id)
    out = {}
    for cp in org.codes:
        counts = {"candidates": cp.candidates, **cp.skipped}
        out[cp.v1_code] = {k: v for k, v in counts.items() if v}
    return out


def assert_plan_matches_truth(plan: Plan, org: OrgResult, spec: Spec) -> None:
    want = {code: expected_from_truth(t) for code, t in org.truth.by_code.items() if spec.resolve(code) is not None}
    assert observed(plan, org.organization_id) == want
    got = next(o for o in plan.organizations if o.organization_id == org.organization_id)
    assert got.unmapped == {}
    by_tier: dict[str, int] = {}
    for code, t in org.truth.by_code.items():
        res = spec.resolve(code)
        assert res is not None
        by_tier[res.mapping.tier] = by_tier.get(res.mapping.tier, 0) + expected_from_truth(t).get("candidates", 0)
    assert got.candidates("reverse_repost") == by_tier["reverse_repost"] > 0
    assert got.candidates("reporting_alias") == by_tier["reporting_alias"] > 0
    assert got.entities["posting_rules"] == {"active": org.posting_rules}
    assert got.entities["fiscal_periods"] == {k: v for k, v in org.fiscal_periods.items() if v}


def fingerprint(dsn: str) -> dict[str, str]:
    with connect(dsn) as conn:
        return {t: conn.execute(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) FROM {t} x"
                                ).fetchone()[0]  # type: ignore[index]
                for t in SIX}


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(PHASE7)


def test_plan_equals_ground_truth_small_two_orgs_and_writes_nothing(db_dsn: str, spec: Spec) -> None:
    gen = generate(db_dsn, size="small", orgs=2, seed=21)
    # Both case forms of the v1 code are in the data: the plan must count `.V1` rows as the same code.
    assert sum(t.flipped_case for o in gen.organizations for t in o.truth.by_code.values()) > 0
    before = fingerprint(db_dsn)
    plan = build_plan(db_dsn, spec)
    assert fingerprint(db_dsn) == before
    assert len(plan.organizations) == 2
    for org in gen.organizations:
        assert_plan_matches_truth(plan, org, spec)


def test_plan_equals_ground_truth_medium(db_dsn: str, spec: Spec) -> None:
    org = generate(db_dsn, size="medium", seed=3).organizations[0]
    plan = build_plan(db_dsn, spec)
    assert_plan_matches_truth(plan, org, spec)
    assert sum(o.candidates() for o in plan.organizations) > 25_000


def test_cli_plan_json_and_org_filter(db_dsn: str, spec: Spec) -> None:
    gen = generate(db_dsn, size="small", orgs=2, seed=22)
    first, second = gen.organizations
    proc = hera(db_dsn, "plan", str(PHASE7), "--org", second.organization_id, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [o["organization_id"] for o in doc["organizations"]] == [second.organization_id]
    want = sum(expected_from_truth(t).get("candidates", 0) for t in second.truth.by_code.values())
    got = doc["organizations"][0]["candidates"]
    assert got["reverse_repost"] + got["reporting_alias"] == want
    assert doc["spec"]["sha256"] == spec.sha256
    text = hera(db_dsn, "plan", str(PHASE7))
    assert text.returncode == 0, text.stderr
    assert first.organization_code in text.stdout and "reverse+repost" in text.stdout


def test_cli_plan_rejects_unknown_and_malformed_orgs(db_dsn: str) -> None:
    generate(db_dsn, size="small", seed=23)
    unknown = hera(db_dsn, "plan", str(PHASE7), "--org", "00000000-0000-4000-8000-000000000001")
    assert unknown.returncode == 2
    assert "not in this database" in unknown.stderr
    malformed = hera(db_dsn, "plan", str(PHASE7), "--org", "acme")
    assert malformed.returncode == 2
    assert "not an organisation id" in malformed.stderr


def test_plan_without_database_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    proc = subprocess.run([sys.executable, "-m", "runner", "plan", str(PHASE7)], capture_output=True, text=True,
                          timeout=60, check=False, env=env)
    assert proc.returncode == 2
    assert "--dsn" in proc.stderr


def test_scope_date_range_and_exclude(db_dsn: str, spec: Spec) -> None:
    gen = generate(db_dsn, size="small", orgs=2, seed=24)
    a, b = gen.organizations
    # Everything lies before 2100: the whole would-be-candidate set moves to out_of_date_range (reversed and
    # voided are still reported as such: the first reason wins, in the documented order).
    future = dataclasses.replace(spec, scope=dataclasses.replace(
        spec.scope, date_range=DateRange(from_=date(2100, 1, 1)),
        organizations=Organizations(exclude=(b.organization_id,))))
    plan = build_plan(db_dsn, future)
    assert [o.organization_id for o in plan.organizations] == [a.organization_id]
    org = plan.organizations[0]
    assert org.candidates() == 0
    moved = sum(c.skipped.get("out_of_date_range", 0) for c in org.codes)
    truth = a.truth.by_code.values()
    assert moved == sum(sum(t.open_by_status.values()) + t.closed for t in truth)


def test_unmapped_codes_are_reported_per_org(db_dsn: str, spec: Spec) -> None:
    org = generate(db_dsn, size="small", seed=25).organizations[0]
    dropped = {m.from_ for m in spec.mappings if m.tier == "reporting_alias"}
    narrower = dataclasses.replace(spec, mappings=tuple(m for m in spec.mappings if m.tier != "reporting_alias"))
    plan = build_plan(db_dsn, narrower)
    got = plan.organizations[0].unmapped
    # Reversal twins carry the same code but are not migration candidates: they are not counted as unmapped.
    want = {code: t.originals for code, t in org.truth.by_code.items() if code in dropped}
    assert got == want and want


def test_plan_runs_read_only(db_dsn: str, spec: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write smuggled into the plan's transaction fails: the transaction itself is READ ONLY."""
    generate(db_dsn, size="small", seed=26)
    import runner.plan as plan_module

    real = plan_module._run

    def sneaky(conn: psycopg.Connection[Any], stmt: Any) -> list[tuple[Any, ...]]:
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
            conn.execute("UPDATE core_organizations SET status = status")
        return real(conn, stmt)

    monkeypatch.setattr(plan_module, "_run", sneaky)
    build_plan(db_dsn, spec)




# --- the estimate: rates measured on the database, in a transaction that is rolled back ---------------------------

def test_calibration_measures_both_tiers_and_leaves_the_database_unchanged(db_dsn: str, spec: Spec) -> None:
    generate(db_dsn, size="small", seed=27)
    before = fingerprint(db_dsn)
    plan = build_plan(db_dsn, spec)
    assert fingerprint(db_dsn) == before  # every row of the six tables, byte for byte
    cal = plan.calibration
    assert cal is not None and cal.attempted
    for tier, rate in cal.rates.items():
        assert rate.measured, (tier, rate.reason)
        assert rate.samples > 0 and rate.seconds > 0 and rate.rate > 0
        assert rate.low <= rate.rate <= rate.high
        assert rate.statement_low is not None and rate.statement_rate is not None
        assert rate.statement_low <= rate.statement_rate <= (rate.statement_high or 0)
        assert rate.basis().startswith(f"{tier}: measured on this database")
    org = plan.organizations[0]
    assert 0 < org.estimate_seconds_low <= org.estimate_seconds <= org.estimate_seconds_high
    doc = json.loads(plan.to_json())
    assert doc["estimate_basis"] == plan.rates  # kept for compatibility: the central rate per tier
    est = doc["estimate"]
    assert est["seconds_low"] <= est["seconds"] <= est["seconds_high"] and est["calibration_rolled_back"]
    assert {t: b["measured"] for t, b in est["basis"].items()} == {"reverse_repost": True, "reporting_alias": True}
    # The spec's workers (4): the tier-2 statement was also timed in that many sessions at once (rolled back too).
    scaling = cal.scaling
    assert scaling is not None and scaling.measured, scaling
    assert (scaling.workers, scaling.sessions) == (spec.execution.workers, min(4, spec.execution.workers))
    assert 0.1 <= scaling.factor <= scaling.sessions and scaling.samples >= scaling.sessions * 5
    assert est["workers"] == spec.execution.workers and est["scaling"]["factor"] == round(scaling.factor, 3)
    one = build_plan(db_dsn, spec, workers=1)
    assert one.calibration is not None and one.calibration.scaling is not None
    assert not one.calibration.scaling.measured and one.calibration.scaling.reason is None
    assert fingerprint(db_dsn) == before
    # The sessions are gone: no transaction of the calibration is left open on the server.
    with connect(db_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                           ("hera-migrate plan-calibration%",)).fetchone()
    assert row is not None and row[0] == 0


def test_no_calibrate_executes_no_write(db_dsn: str, spec: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
    generate(db_dsn, size="small", seed=28)
    import runner.plan as plan_module

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("calibrate=False must not open the calibration's read-write transaction")

    monkeypatch.setattr(plan_module, "calibrate_rates", refuse)
    plan = build_plan(db_dsn, spec, calibrate=False)
    assert plan.calibration is not None and not plan.calibration.attempted
    for tier, rate in plan.calibration.rates.items():
        assert not rate.measured and rate.reason and "--no-calibrate" in rate.reason
        assert rate.rate == rate.low == rate.high == plan_module.DEFAULT_RATES[tier]
        assert rate.basis().startswith(f"{tier}: not measured (--no-calibrate")
    assert plan.organizations[0].estimate_seconds > 0


def test_read_only_database_plans_and_calibration_falls_back(db_dsn: str, spec: Spec) -> None:
    """A database that refuses writes (as a standby or a read-only user would): plan still works; with calibration
    it falls back to the default rates and says why instead of failing."""
    generate(db_dsn, size="small", seed=29)
    before = fingerprint(db_dsn)
    name = psycopg.conninfo.conninfo_to_dict(db_dsn)["dbname"]
    with connect(db_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')  # for new sessions
    strict = build_plan(db_dsn, spec, calibrate=False)
    assert strict.organizations[0].candidates() > 0
    tried = build_plan(db_dsn, spec)
    assert tried.calibration is not None
    for rate in tried.calibration.rates.values():
        assert not rate.measured and rate.reason and "accepts no writes" in rate.reason
        assert rate.basis().startswith(f"{rate.tier}: not measured (the database accepts no writes")
    assert tried.organizations[0].estimate_seconds == strict.organizations[0].estimate_seconds
    assert fingerprint(db_dsn) == before


def test_estimate_brackets_the_real_migrate_phase(db_dsn: str, spec: Spec, tmp_path: Path) -> None:
    from runner import pipeline

    generate(db_dsn, size="small", seed=30)
    plan = build_plan(db_dsn, spec)
    assert plan.calibration is not None and all(r.measured for r in plan.calibration.rates.values())
    low, high = plan.estimate_range()
    out = pipeline.run(db_dsn, PHASE7, pipeline.RunOptions(now=True, live_seconds=None, report_dir=tmp_path,
                                                           baseline_seconds=0.0),
                       pipeline.make_console(), progress=False)
    assert out.exit_code == 0
    migrated = out.results["performance"]["phases"]["migrate"]
    # A loose bound on purpose: the calibration times ~20 rows per tier for a fraction of a second, the run a few
    # seconds of chunks, both on a shared 2-core machine where other jobs shift either by a factor. The old fixed
    # rates were off by 30x (issue 14); a factor of 3 either side still catches that, not noise.
    assert low / 3 <= migrated <= high * 3, (low, high, migrated, [r.basis() for r in plan.calibration.rates.values()])


def test_interrupted_or_failing_calibration_leaves_nothing(db_dsn: str, spec: Spec,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the first batch has written: the exception goes through and nothing of the batch remains. A tier
    whose statement fails falls back alone, with the error as its reason; the other stays measured."""
    generate(db_dsn, size="small", seed=31)
    before = fingerprint(db_dsn)
    import runner.calibrate as calibrate_module

    real = calibrate_module._time_batch

    def interrupted(*args: Any) -> float:
        real(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(calibrate_module, "_time_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_plan(db_dsn, spec)
    assert fingerprint(db_dsn) == before

    def alias_denied(conn: psycopg.Connection[Any], spec: Spec, org_id: str, tier: str, batch: list[Any]) -> float:
        seconds = real(conn, spec, org_id, tier, batch)  # the batch has written
        if tier == "reporting_alias":
            conn.execute("SELECT 1/0")  # then the tier fails
        return seconds

    monkeypatch.setattr(calibrate_module, "_time_batch", alias_denied)
    plan = build_plan(db_dsn, spec)
    assert plan.calibration is not None
    repost, alias = plan.calibration.rates["reverse_repost"], plan.calibration.rates["reporting_alias"]
    assert repost.measured and not alias.measured
    assert alias.reason is not None and alias.reason.startswith("DivisionByZero")
    assert alias.rate == calibrate_module.DEFAULT_RATES["reporting_alias"]
    assert fingerprint(db_dsn) == before

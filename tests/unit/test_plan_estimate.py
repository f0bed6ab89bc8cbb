"""The plan's estimate without a database: per-tier rates with their range and basis, seconds per organisation,
the JSON and text forms (the measuring itself is tests/integration/test_plan.py)."""

from __future__ import annotations

import json

import pytest

from runner.calibrate import DEFAULT_RATES, ENGINE_FACTOR, Calibration, Scaling, TierRate
from runner.plan import CodePlan, OrgPlan, Plan, _estimate, render_text


def measured(tier: str, low: float, mid: float, high: float) -> TierRate:
    lo, hi = ENGINE_FACTOR[tier]
    return TierRate(tier=tier, rate=mid * (lo + hi) / 2, low=low * lo, high=high * hi, measured=True, samples=20,
                    seconds=20 / mid, statement_rate=mid, statement_low=low, statement_high=high,
                    organization_code="ORG-1")


def org(repost: int, alias: int) -> OrgPlan:
    return OrgPlan(organization_id="o1", organization_code="ORG-1", codes=[
        CodePlan(v1_code="A.v1", mapping="a", tier="reverse_repost", v2_code="A.v2", candidates=repost),
        CodePlan(v1_code="B.v1", mapping="b", tier="reporting_alias", v2_code="B.v2", candidates=alias)])


def test_estimate_range_follows_the_rate_range() -> None:
    rates = {"reverse_repost": measured("reverse_repost", 250, 300, 400),
             "reporting_alias": measured("reporting_alias", 1_000, 2_000, 2_500)}
    o = org(3_000, 2_000)
    _estimate(o, rates)
    # fastest rates → shortest time; the engine factor widens the range beyond the batches' spread
    (r_lo, r_hi), (a_lo, a_hi) = ENGINE_FACTOR["reverse_repost"], ENGINE_FACTOR["reporting_alias"]
    assert o.estimate_seconds_low == round(3_000 / (400 * r_hi) + 2_000 / (2_500 * a_hi), 1)
    assert o.estimate_seconds_high == round(3_000 / (250 * r_lo) + 2_000 / (1_000 * a_lo), 1)
    assert o.estimate_seconds_low <= o.estimate_seconds <= o.estimate_seconds_high


def test_basis_says_what_was_measured_or_why_not() -> None:
    text = measured("reverse_repost", 250, 300, 400).basis()
    assert "measured on this database (ORG-1): 20 reverse+repost" in text and "rolled back" in text
    assert "0.8–1.0×" in text and "250–400/s" in text
    fallback = TierRate.default("reverse_repost", DEFAULT_RATES["reverse_repost"], "no candidate of this tier in scope")
    assert fallback.basis() == "reverse_repost: not measured (no candidate of this tier in scope); default 300/s"


def test_json_and_text_carry_basis_and_range() -> None:
    rates = {"reverse_repost": measured("reverse_repost", 250, 300, 400),
             "reporting_alias": TierRate.default("reporting_alias", 2_000.0, "--no-calibrate: plan stays read-only")}
    o = org(3_000, 0)
    _estimate(o, rates)
    plan = Plan(spec_name="s", spec_sha256="x", organizations=[o], rates={t: r.rate for t, r in rates.items()},
                seconds=0.1, calibration=Calibration(rates=rates, seconds=0.4, attempted=True))
    doc = json.loads(plan.to_json())
    assert doc["estimate_basis"] == {"reverse_repost": 270.0, "reporting_alias": 2_000.0}
    est = doc["estimate"]
    assert (est["seconds_low"], est["seconds_high"]) == (7.5, 15.0) and est["calibration_rolled_back"]
    assert est["basis"]["reverse_repost"]["measured"] and est["basis"]["reverse_repost"]["samples"] == 20
    assert est["basis"]["reporting_alias"] == {**est["basis"]["reporting_alias"], "measured": False,
                                               "reason": "--no-calibrate: plan stays read-only", "samples": 0}
    text = render_text(plan)
    assert "estimate 7.5–15.0s" in text and "rolled back" in text and "--no-calibrate" in text


def test_several_workers_divide_by_the_measured_factor_not_by_n() -> None:
    """Four workers measured at 1.8× one session: the estimate is the one-session time ÷ 1.8; an organisation with
    two chunks keeps only two sessions busy (the factor interpolated at 2); nothing measured: one session."""
    rates = {"reverse_repost": measured("reverse_repost", 250, 300, 400),
             "reporting_alias": measured("reporting_alias", 1_000, 2_000, 2_500)}
    scaling = Scaling(workers=4, sessions=4, factor=1.8, measured=True, rate=540.0, samples=120)
    assert (scaling.at(1), scaling.at(4), scaling.at(8)) == (1.0, 1.8, 1.8)
    assert scaling.at(2) == pytest.approx(1 + 0.8 / 3)

    def plan_of(o: OrgPlan, workers: int, s: Scaling | None) -> Plan:
        return Plan(spec_name="s", spec_sha256="x", organizations=[o], rates={t: r.rate for t, r in rates.items()},
                    seconds=0.1, calibration=Calibration(rates=rates, scaling=s), workers=workers, batch_size=500)

    big = org(30_000, 2_000)
    one = plan_of(big, 1, Scaling(workers=1)).estimate_range()
    four = plan_of(big, 4, scaling).estimate_range()
    assert four == pytest.approx((one[0] / 1.8, one[1] / 1.8), abs=0.06)  # both rounded to 0.1 s
    unmeasured = plan_of(big, 4, Scaling(workers=4, sessions=4, reason="--no-calibrate")).estimate_range()
    assert unmeasured == one
    small = org(600, 0)  # two chunks of 500
    assert plan_of(small, 4, scaling).busy_sessions() == 2
    single = plan_of(small, 1, Scaling(workers=1)).estimate_range()
    assert plan_of(small, 4, scaling).estimate_range()[1] == pytest.approx(single[1] / scaling.at(2), abs=0.06)
    text = scaling.basis()
    assert "4 sessions at once" in text and "1.80× one session" in text and "rolled back" in text
    assert "not measured (--no-calibrate)" in Scaling(workers=4, sessions=4, reason="--no-calibrate").basis()

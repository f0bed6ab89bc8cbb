"""Exactly-once rests on plan and engine choosing the same rows. Both take the spec's scope and mappings from
runner.compile.params and the CASE from _macros/eligibility.sql.j2; here they are run side by side on real data,
for the Phase 7 spec and for scopes that move every switch, and must select the same transactions per v1 code and
tier (same count, same total amount)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner.compile import render
from runner.compile.params import Mappings, scope_params
from runner.db.connect import connect
from runner.engine.chunk import ChunkCtx
from runner.spec import Spec, load_spec
from runner.spec.model import DateRange
from runner.synth.generate import generate

PHASE7 = Path(__file__).resolve().parents[2] / "specs" / "finance-dna-v2.yaml"
JOURNAL = "00000000-0000-4000-8000-00000000000a"


def variants() -> list[Spec]:
    base = load_spec(PHASE7)
    scope = base.scope
    return [
        base,
        dataclasses.replace(base, scope=dataclasses.replace(
            scope, date_range=DateRange(from_=date(2025, 3, 1), to=date(2025, 9, 30)),
            transaction_statuses=("posted", "completed", "pending"))),
        dataclasses.replace(base, scope=dataclasses.replace(
            scope, fiscal_period_statuses=("open", "closed"), transactions_without_period="exclude",
            skip=dataclasses.replace(scope.skip, reversed=False, voided=False))),
    ]


def selected_by_plan(conn: Any, spec: Spec, org: str, mappings: Mappings) -> Counter[tuple[str, str, str]]:
    stmt = render("plan/candidates", org_ids=[org], v1_codes=mappings.v1_codes, v2_codes=mappings.v2_codes,
                  tiers=mappings.tiers, mapping_ids=mappings.labels, **scope_params(spec))
    out: Counter[tuple[str, str, str]] = Counter()
    for _org, v1_code, tier, _v2, _label, outcome, headers, amount in conn.execute(stmt.text, stmt.params):
        if outcome == "candidate":
            out[(v1_code, tier, "n")] += headers
            out[(v1_code, tier, "amount")] += amount
    return out


def selected_by_engine(conn: Any, spec: Spec, org: str, mappings: Mappings) -> Counter[tuple[str, str, str]]:
    ctx = ChunkCtx(spec=spec, run_id="eligibility", org_id=org, journal_id=JOURNAL, mappings=mappings)
    out: Counter[tuple[str, str, str]] = Counter()
    for tier in ("reverse_repost", "reporting_alias"):
        ids = ctx.candidates(conn, tier, exclude_quarantined=False)
        for v1_code, amount in conn.execute(
                r"SELECT regexp_replace(upper(smart_code), '\.V([0-9]+)$', '.v\1'), total_amount "
                "FROM universal_transactions WHERE id = ANY(%s::uuid[])", (ids,)):
            out[(v1_code, tier, "n")] += 1
            out[(v1_code, tier, "amount")] += amount
    return out


@pytest.mark.parametrize("which", range(3))
def test_plan_and_engine_select_the_same_rows(db_dsn: str, which: int) -> None:
    org = generate(db_dsn, size="small", seed=91).organizations[0].organization_id
    spec = variants()[which]
    with connect(db_dsn) as conn:
        stmt = render("plan/codes", org_ids=[org])
        codes = [r[1] for r in conn.execute(stmt.text, stmt.params)]
        mappings = Mappings.resolve(spec, codes)  # one set of parameters for both
        plan, engine = selected_by_plan(conn, spec, org, mappings), selected_by_engine(conn, spec, org, mappings)
    assert sum(n for (_, _, k), n in plan.items() if k == "n") > 0
    assert {k: v for k, v in engine.items() if v} == {k: v for k, v in plan.items() if v}
    assert all(isinstance(v, int | Decimal) for v in plan.values())

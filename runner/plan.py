"""Tier 1 — `hera-migrate plan`: which v1 transactions and entities a spec would migrate, and how long it would take.

The counts: statements in one READ ONLY, REPEATABLE READ transaction (one consistent picture, nothing written, no
temp tables): the distinct v1 codes per organisation; the spec's mappings resolved against them in Python (exact,
wildcard and regex selectors keep their Python semantics); then every header classified by a CTE query with the
resolved (v1, v2, tier) list bound as arrays.

The estimate: rates measured on this database (runner/calibrate.py; `calibrate=False` measures nothing and
keeps plan strictly read-only), per organisation and tier, with a range.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from runner.calibrate import (
    DEFAULT_RATES,
    TIERS,
    Calibration,
    Scaling,
    TierRate,
    calibrate_rates,
    calibration_statements,
)
from runner.compile import Statement, render
from runner.compile.params import Mappings, entity_params, scope_params
from runner.compile.scope import resolve_orgs
from runner.db.connect import connect
from runner.errors import DatabaseError
from runner.spec.model import Spec

STATEMENT_TIMEOUT_MS = 300_000
SKIP_REASONS = ("closed_period", "already_migrated", "reversed", "voided", "out_of_date_range", "ineligible_status",
                "no_period", "reversal_twin")


@dataclass
class CodePlan:
    v1_code: str
    mapping: str
    tier: str
    v2_code: str
    candidates: int = 0
    amount: Decimal = Decimal(0)
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class OrgPlan:
    organization_id: str
    organization_code: str
    codes: list[CodePlan] = field(default_factory=list)
    unmapped: dict[str, int] = field(default_factory=dict)
    entities: dict[str, dict[str, int]] = field(default_factory=dict)
    orphan_lines: int = 0  # lines whose header does not exist: never migrated, reported
    orphan_transaction_ids: list[str] = field(default_factory=list)  # up to 10 of the missing headers' ids
    estimate_seconds: float = 0.0  # at the central rates
    estimate_seconds_low: float = 0.0  # at the high end of the rate ranges
    estimate_seconds_high: float = 0.0  # at the low end
    sessions: int = 1  # the sessions a run with the plan's workers gives this organisation

    def candidates(self, tier: str | None = None) -> int:
        return sum(c.candidates for c in self.codes if tier is None or c.tier == tier)


@dataclass
class Plan:
    spec_name: str
    spec_sha256: str
    organizations: list[OrgPlan]
    rates: dict[str, float]  # the central rates the estimate uses, per tier
    seconds: float  # the read-only part
    calibration: Calibration | None = None
    workers: int = 1
    batch_size: int = 500

    def factor(self, sessions: int) -> float:
        """How much faster `sessions` sessions at once go than one (measured; 1 when not)."""
        scaling = self.calibration.scaling if self.calibration else None
        return scaling.at(sessions) if scaling is not None else 1.0

    def busy_sessions(self) -> int:
        """The sessions the run can keep busy at once: the workers, but a session needs a chunk of its own."""
        chunks = sum(-(-o.candidates() // max(1, self.batch_size)) for o in self.organizations)
        return max(1, min(self.workers, chunks))

    def total_seconds(self, rate_of: Callable[[TierRate], float] = lambda r: r.rate) -> float:
        """Every organisation with the plan's workers: the one-session time of all of them at the factor of the
        sessions the run keeps busy (organisations overlap, and a large one gets several sessions)."""
        if self.calibration is None:  # (hand-built plans) the organisations' own estimates, one after another
            return round(sum(o.estimate_seconds for o in self.organizations), 1)
        single = sum(o.candidates(t) / rate_of(r) for o in self.organizations
                     for t, r in self.calibration.rates.items() if rate_of(r) > 0)
        return round(single / self.factor(self.busy_sessions()), 1)

    def estimate_range(self) -> tuple[float, float]:
        """(fastest, slowest): at the high and the low end of the rate ranges."""
        return self.total_seconds(lambda r: r.high), self.total_seconds(lambda r: r.low)

    def as_dict(self) -> dict[str, Any]:
        def enc(value: Any) -> Any:
            return str(value) if isinstance(value, Decimal) else value

        orgs = []
        for org in self.organizations:
            d = asdict(org)
            d["codes"] = [{k: enc(v) for k, v in c.items()} for c in d["codes"]]
            d["candidates"] = {"reverse_repost": org.candidates("reverse_repost"),
                               "reporting_alias": org.candidates("reporting_alias")}
            orgs.append(d)
        low, high = self.estimate_range()
        cal = self.calibration
        estimate = {
            "seconds": self.total_seconds(),
            "seconds_low": low, "seconds_high": high,
            "workers": self.workers, "busy_sessions": self.busy_sessions(),
            "scaling": cal.scaling.as_dict() if cal and cal.scaling else None,
            "calibration_seconds": round(cal.seconds, 3) if cal else 0.0,
            "calibration_rolled_back": bool(cal and cal.attempted),
            "basis": {t: r.as_dict() for t, r in cal.rates.items()} if cal else {},
        }
        return {"spec": {"name": self.spec_name, "sha256": self.spec_sha256}, "organizations": orgs,
                "estimate_basis": self.rates, "estimate": estimate, "seconds": round(self.seconds, 3)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def statements(spec: Spec, org_ids: list[str], codes: list[str]) -> list[Statement]:
    """The tier-1 statements for `org_ids`, with the spec's mappings resolved against `codes`, then the
    calibration's own (the engine's run/reverse_repost and run/alias it also runs are in the engine's review)."""
    mappings = Mappings.resolve(spec, codes)
    org_id = org_ids[0] if org_ids else None
    return [
        render("plan/codes", org_ids=org_ids),
        render("plan/candidates", org_ids=org_ids, v1_codes=mappings.v1_codes, v2_codes=mappings.v2_codes,
               tiers=mappings.tiers, mapping_ids=mappings.labels, **scope_params(spec)),
        render("plan/entities", org_ids=org_ids, **entity_params(spec)),
        render("plan/orphan_lines", org_ids=org_ids),
        render("session/timeout", timeout_ms=STATEMENT_TIMEOUT_MS),
        *calibration_statements(spec, org_id, mappings),
    ]


def _run(conn: psycopg.Connection[Any], stmt: Statement) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(stmt.text, stmt.params).fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"{stmt.name} failed: {str(exc).strip()}") from exc


def build_plan(dsn: str, spec: Spec, requested_orgs: tuple[str, ...] = (),
               rates: dict[str, float] | None = None, calibrate: bool = True, workers: int | None = None) -> Plan:
    """The plan of `spec` on the database at `dsn`. `rates` replaces the default rates (used when nothing is
    measured); `calibrate=False` measures nothing and keeps plan strictly read-only. `workers` (default: the spec's
    execution.workers) is what the estimate assumes the run gets."""
    workers = max(1, workers if workers is not None else spec.execution.workers)
    t0 = time.monotonic()
    defaults = {**DEFAULT_RATES, **(rates or {})}
    with connect(dsn) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            _run(conn, render("session/timeout", timeout_ms=STATEMENT_TIMEOUT_MS))
            orgs = resolve_orgs(conn, spec, requested_orgs)
            org_ids = [o for o, _ in orgs]
            codes_stmt = render("plan/codes", org_ids=org_ids)
            code_rows = _run(conn, codes_stmt)
            codes = [r[1] for r in code_rows]
            candidates_stmt, entities_stmt, orphans_stmt = statements(spec, org_ids, codes)[1:4]
            rows = _run(conn, candidates_stmt)
            entity_rows = _run(conn, entities_stmt)
            orphan_rows = _run(conn, orphans_stmt)
    plans = {oid: OrgPlan(organization_id=oid, organization_code=code) for oid, code in orgs}
    by_code: dict[tuple[str, str], CodePlan] = {}
    for org_id, v1_code, tier, v2_code, mapping_id, outcome, headers, amount in rows:
        org = plans[str(org_id)]
        if outcome == "unmapped":
            org.unmapped[v1_code] = org.unmapped.get(v1_code, 0) + headers
            continue
        if tier is None:  # migration output or a skipped row of an unmapped code
            continue
        key = (str(org_id), v1_code)
        cp = by_code.get(key)
        if cp is None:
            cp = by_code[key] = CodePlan(v1_code=v1_code, mapping=mapping_id, tier=tier, v2_code=v2_code)
            org.codes.append(cp)
        if outcome == "candidate":
            cp.candidates += headers
            cp.amount += amount or Decimal(0)
        else:
            cp.skipped[outcome] = cp.skipped.get(outcome, 0) + headers
    families: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for org_id, family, status, count in entity_rows:
        families[str(org_id)][family][status or "unknown"] = count
    for org_id, lines, txn_ids in orphan_rows:
        plans[str(org_id)].orphan_lines = int(lines)
        plans[str(org_id)].orphan_transaction_ids = list(txn_ids)
    for org in plans.values():
        org.entities = {k: dict(v) for k, v in families[org.organization_id].items()}
        if spec.entities.organization_config is not None:
            org.entities["organization_config"] = {"organizations": 1}
    seconds = time.monotonic() - t0
    org_list = list(plans.values())
    if calibrate:
        calibration = calibrate_rates(dsn, spec, org_list, Mappings.resolve(spec, codes), defaults, workers)
    else:
        calibration = Calibration({t: TierRate.default(t, defaults[t], "--no-calibrate: plan stays read-only")
                                   for t in TIERS},
                                  scaling=Scaling(workers=workers, reason="--no-calibrate" if workers > 1 else None))
    plan = Plan(spec_name=spec.name, spec_sha256=spec.sha256, organizations=org_list,
                rates={t: r.rate for t, r in calibration.rates.items()}, seconds=seconds, calibration=calibration,
                workers=workers, batch_size=spec.execution.batch_size)
    per_org = max(1, workers // max(1, min(workers, len(org_list))))  # as the engine splits its workers
    for org in org_list:
        org.sessions = max(1, min(per_org, -(-org.candidates() // max(1, plan.batch_size))))
        _estimate(org, calibration.rates, plan.factor(org.sessions))
    return plan


def _estimate(org: OrgPlan, rates: dict[str, TierRate], factor: float = 1.0) -> None:
    """The organisation's seconds at the rates, `factor` times faster (its sessions at once)."""
    def seconds(rate_of: Callable[[TierRate], float]) -> float:
        return round(sum(org.candidates(t) / rate_of(r) for t, r in rates.items() if rate_of(r) > 0) / factor, 1)

    org.estimate_seconds = seconds(lambda r: r.rate)
    org.estimate_seconds_low = seconds(lambda r: r.high)  # the fastest rates give the shortest time
    org.estimate_seconds_high = seconds(lambda r: r.low)


def render_text(plan: Plan) -> str:
    """A plain-text table per organisation (the CLI prints it through rich)."""
    out: list[str] = []
    for org in plan.organizations:
        out.append(f"{org.organization_code} {org.organization_id}: {org.candidates('reverse_repost'):,} "
                   f"reverse+repost, {org.candidates('reporting_alias'):,} alias candidates; "
                   f"estimate {_span(org.estimate_seconds_low, org.estimate_seconds_high)}")
        header = f"  {'v1 code':<48} {'tier':<15} {'candidates':>10}  skipped"
        out.append(header)
        for c in sorted(org.codes, key=lambda c: c.v1_code):
            skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(c.skipped.items())) or "-"
            out.append(f"  {c.v1_code:<48} {c.tier:<15} {c.candidates:>10,}  {skipped}")
        for code, n in sorted(org.unmapped.items()):
            out.append(f"  {code:<48} {'UNMAPPED':<15} {n:>10,}  (no mapping covers this v1 code)")
        if org.orphan_lines:
            out.append(f"  LINES WITHOUT A HEADER: {org.orphan_lines:,} (never migrated; missing header ids, up to "
                       f"10: {', '.join(org.orphan_transaction_ids)})")
        for family, counts in sorted(org.entities.items()):
            out.append(f"  entities {family}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    low, high = plan.estimate_range()
    cal = plan.calibration
    if len(plan.organizations) > 1:
        out.append(f"all organisations with {plan.workers} worker(s): estimate {_span(low, high)}")
    out.append(f"plan took {plan.seconds:.2f}s (read-only)"
               + (f"; calibration {cal.seconds:.2f}s in a separate transaction, rolled back "
                  "(--no-calibrate keeps plan strictly read-only)" if cal and cal.attempted else ""))
    out.append("estimate basis (the migrate phase: tiers 2 and 3; entity migrations and scans add little):")
    if cal:
        out += [f"  {r.basis()}" for r in cal.rates.values()]
        if cal.scaling is not None:
            out.append(f"  {cal.scaling.basis()}")
    else:
        out.append("  " + ", ".join(f"{k} {v:,.0f}/s" for k, v in plan.rates.items()))
    return "\n".join(out)


def _span(low: float, high: float) -> str:
    return f"{low:,.1f}s" if low == high else f"{low:,.1f}–{high:,.1f}s"

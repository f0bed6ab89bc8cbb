"""results.json as a dict: levels 2 and 3, the score, performance and alerts, from what the validation measured.

Inputs (both may be absent):
- run: the run's facts (runner.validate.runfacts.RunFacts, from the engine's RunResult): status,
  started_at/finished_at, per-organisation candidates/migrated/aliased/quarantined, seconds per phase;
- performance: {records_per_second?, phases?: {name: seconds}, latency?: {baseline: {...}, during: {...}},
  timeline?: [{t, done, rate}]} where a latency block carries p50_ms/p95_ms/p99_ms (or p50/p95/p99, milliseconds),
  requests and failures, and timeline is the run's throughput series (runner.engine.throughput.ThroughputRecorder).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from runner.errors import EXIT_CHECK_FAILED, EXIT_NOTHING_CHECKED, EXIT_OK
from runner.spec.model import Spec
from runner.validate import alerts as alerting
from runner.validate import breakdown, impact
from runner.validate.outcome import CheckOutcome
from runner.validate.records import CATEGORIES, OrgRecords
from runner.validate.runfacts import RunFacts
from runner.validate.score import integrity_score, penalties

SCHEMA_VERSION = "2.0"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None




def same_amounts(a: dict[str, str], b: dict[str, str]) -> bool:
    """Two {currency: amount} maps hold the same money (numerically: scales may differ)."""
    nonzero = [{c: Decimal(v) for c, v in m.items() if Decimal(v)} for m in (a, b)]
    return nonzero[0] == nonzero[1]


def check_triples(outcomes: list[CheckOutcome], org_id: str | None = None) -> list[tuple[str, str, str]]:
    if org_id is None:
        return [(o.id, o.check.severity, o.status) for o in outcomes]
    return [(o.id, o.check.severity, o.org_result(org_id).status) for o in outcomes]


def organization(org_id: str, org_code: str, records: OrgRecords, summary: dict[str, Any],
                 outcomes: list[CheckOutcome], codes: list[dict[str, Any]]) -> dict[str, Any]:
    """Level 2: one organisation. Its counts come from one place, the per-code breakdown of the database
    (runner.validate.breakdown): `migrated` is reverse_reposted + aliased (both tiers), everywhere."""
    triples = check_triples(outcomes, org_id)
    score = integrity_score(records.passed, records.failed, triples)
    t = breakdown.totals(codes)
    families = {name: dict(counts) for name, counts in records.families.items()}

    def family(name: str) -> dict[str, Any]:
        counts = families.get(name, {})
        return {"records": sum(counts.values()), "passed": counts.get("PASSED", 0),
                "failed": counts.get("FAILED", 0), "requires_review": counts.get("REQUIRES_REVIEW", 0)}

    org_config = family("organization_config")
    lines_total = summary["originals_lines_amount"]
    return {
        "organization_id": org_id, "organization_code": org_code, "candidates": t["candidates"],
        "migrated": t["reverse_reposted"] + t["aliased"], "reverse_reposted": t["reverse_reposted"],
        "aliased": t["aliased"], "quarantined": t["quarantined"], "not_migrated": t["not_migrated"],
        "skipped": t["skipped"], "skipped_total": t["skipped_total"], "unmapped": t["unmapped"],
        "integrity_score": None if score is None else float(score),
        "records": {"checked": records.passed + records.failed, "passed": records.passed, "failed": records.failed,
                    "requires_review": records.review, "by_kind": dict(records.kinds),
                    "failed_by_category": {c: records.by_category[c] for c in CATEGORIES}},
        "source": {"originals": summary["originals"], "originals_amount": summary["originals_amount"],
                   "aliases": summary["aliases"], "aliases_amount": summary["aliases_amount"],
                   "entities": sum(summary["entities"].values()), "entities_by_family": dict(summary["entities"]),
                   "quarantined": t["quarantined"]},
        "target": {"reposts": summary["reposts"], "reposts_amount": summary["reposts_amount"],
                   "reversals": summary["reversals"], "reversals_amount": summary["reversals_amount"],
                   "reversals_reconciliation": {
                       "originals_lines_amount": lines_total,
                       "equal": same_amounts(lines_total, summary["reversals_amount"])}},
        "by_code": codes,
        "amounts": t["amounts"],
        "critical_errors": sum(1 for _, sev, st in triples if sev == "critical" and st in ("failed", "error")),
        "warnings": sum(1 for _, sev, st in triples
                        if st == "warning" or (sev != "critical" and st in ("failed", "error"))),
        "summaries": {
            "posting_rules": family("posting_rules"),
            "fiscal_periods": family("fiscal_periods"),
            "organization_config": {"migrated": org_config["records"] > 0, **org_config},
            "transaction_history": {
                "originals": summary["originals"], "reversals": summary["reversals"],
                "reposts": summary["reposts"], "aliases": summary["aliases"], "quarantined": t["quarantined"],
                "originals_amount": summary["originals_amount"], "reposts_amount": summary["reposts_amount"]},
        },
        "run_status": summary["journal_status"],
        "journal_last_write": summary["journal_last_write"],
    }


def _p95(block: Any) -> float | None:
    if not isinstance(block, dict):
        return None
    return _num(block.get("p95_ms", block.get("p95")))


RATE_BASIS = ("candidates handled (migrated + quarantined) per second of migrating, from the engine's progress "
              "(performance.timeline), as the progress bar counts them")


def performance_section(performance: dict[str, Any] | None, run: RunFacts | None,
                        phases: dict[str, float], handled: int) -> dict[str, Any]:
    """`phases` are wall-clock seconds of the pipeline's phases; the engine's own per-phase seconds are summed over
    organisations (organisations run in parallel), so they go apart, labelled, never next to a wall time."""
    perf = performance or {}
    wall: dict[str, float] = {}
    for name, seconds in (perf.get("phases") or {}).items():
        if _num(seconds) is not None:
            wall[str(name)] = round(float(seconds), 3)
    wall.update({k: round(v, 3) for k, v in phases.items()})
    summed = {str(k): round(float(v), 3) for k, v in (run.seconds if run is not None else {}).items()}
    rps = _num(perf.get("records_per_second"))
    basis = RATE_BASIS
    timeline = timeline_points(perf.get("timeline"))
    if rps is None and timeline and timeline[-1]["t"] > 0:
        # the engine's own progress, as the progress bar counts it: from its first to its last progress call
        rps = timeline[-1]["done"] / float(timeline[-1]["t"])
    if rps is None:
        migrate = wall.get("migrate")
        basis = "candidates handled (migrated + quarantined) per second of the migrate phase's wall clock"
        if migrate is None and run is not None and run.started_at and run.finished_at:
            migrate = (run.finished_at - run.started_at).total_seconds()
            basis = ("candidates handled (migrated + quarantined) per second of the run's journal window "
                     "(no migrate phase timing in this validation)")
        rps = handled / migrate if migrate and handled else None
    latency = perf.get("latency") if isinstance(perf.get("latency"), dict) else None
    baseline = latency.get("baseline") if latency else None
    during = latency.get("during") if latency else None
    out: dict[str, Any] = {
        "records_per_second": None if rps is None else round(rps, 3), "records_per_second_basis": basis,
        "phases": wall, "phases_clock": "wall",
        "engine_seconds_summed_over_organizations": summed,
        "latency": {"baseline": baseline if isinstance(baseline, dict) else None,
                    "during": during if isinstance(during, dict) else None} if latency else None,
        "impact_pct": alerting.impact_pct(_p95(baseline), _p95(during))}
    if timeline is not None:
        out["timeline"] = timeline
    report = perf.get("load_report")
    if latency and isinstance(report, str) and _relative_path(report):
        out["load_report"] = report
    return out


def _relative_path(value: str) -> bool:
    """A link the report may render: relative, inside the report directory, no scheme."""
    return bool(value) and ":" not in value and not value.startswith(("/", "\\")) and ".." not in value.split("/")


def timeline_points(value: Any) -> list[dict[str, Any]] | None:
    """The caller's throughput series as results.json writes it: [{t, done, rate}] with t and rate as numbers
    (seconds; candidates per second) and done an integer, in time order; None when absent or malformed."""
    if not isinstance(value, list):
        return None
    points = []
    for point in value:
        if not isinstance(point, dict):
            return None
        t, done, rate = _num(point.get("t")), _num(point.get("done")), _num(point.get("rate"))
        if t is None or done is None or rate is None or t < 0 or done < 0 or rate < 0:
            return None
        points.append({"t": round(t, 3), "done": int(done), "rate": round(rate, 3)})
    return sorted(points, key=lambda p: float(p["t"]))


def no_progress(run: RunFacts | None, journals: list[tuple[str | None, str | None]],
                now: datetime) -> float | None:
    """Minutes since the run last made progress; 0 once it completed. The run's state comes from `run` when
    given, else from the journals' status field; the last progress from the journals ((status, last write) per
    organisation)."""
    statuses = [run.status] if run is not None else [s for s, _ in journals if s is not None]
    if statuses and all(s == "completed" for s in statuses):
        return 0.0
    known = [s for s in (parse_time(w) for _, w in journals) if s is not None]
    if not statuses or not known:
        return None
    return round(max((now - max(known)).total_seconds(), 0.0) / 60.0, 3)


def error_rate(totals: OrgRecords) -> float | None:
    """Failed or quarantined candidates as a percentage of the candidates processed: level-1 transaction records
    (migrated originals, alias rows, quarantined candidates); entities are not candidates."""
    kinds = ("transaction", "alias", "quarantined")
    processed = sum(totals.kinds[k] for k in kinds)
    if not processed:
        return None
    bad = sum(totals.kind_status[(k, s)] for k in kinds for s in ("FAILED", "REQUIRES_REVIEW"))
    return round(100.0 * bad / processed, 3)


NOTHING_CHECKED = "nothing_checked"


def counts(orgs: list[dict[str, Any]], outcomes: list[CheckOutcome]) -> dict[str, Any]:
    """The one definition of every count the CLI, `status`, `check` and the report show (docs/results-schema.md
    `counts`): sums of the organisations' per-code breakdown, and the checks by status."""
    keys = ("candidates", "reverse_reposted", "aliased", "migrated", "quarantined", "not_migrated", "skipped_total",
            "unmapped")
    out: dict[str, Any] = {k: sum(int(o[k]) for o in orgs) for k in keys}
    out["entities"] = sum(int(o["source"]["entities"]) for o in orgs)
    by_status = {s: sum(1 for o in outcomes if o.status == s) for s in ("passed", "warning", "failed", "error")}
    out["checks"] = {"total": len(outcomes), **by_status,
                     "from_spec": sum(1 for o in outcomes if o.source != "diff"),
                     "expected_effect_diff": any(o.source == "diff" for o in outcomes)}
    return out


def verdict(outcomes: list[CheckOutcome], fired: list[alerting.Alert], checked: int) -> tuple[str, int]:
    """(status, exit code): a failing critical check or critical alert fails (1); otherwise nothing checked is
    its own verdict (4: never PASSED over zero records); otherwise warning or passed (0)."""
    if any(o.check.severity == "critical" and o.failing for o in outcomes) or any(
            a.level == "critical" for a in fired):
        return "failed", EXIT_CHECK_FAILED
    if checked == 0:
        return NOTHING_CHECKED, EXIT_NOTHING_CHECKED
    if fired or any(o.status != "passed" for o in outcomes):
        return "warning", EXIT_OK
    return "passed", EXIT_OK


def build(*, spec: Spec, run_id: str, started: datetime, finished: datetime, orgs: list[dict[str, Any]],
          outcomes: list[CheckOutcome], totals: OrgRecords, record_file: str | None, diff: dict[str, Any],
          performance: dict[str, Any], run: RunFacts | None, snapshot: dict[str, Any],
          journals: list[tuple[str | None, str | None]], environment: dict[str, Any],
          ledger: dict[str, Any], host: dict[str, Any] | None) -> dict[str, Any]:
    triples = check_triples(outcomes)
    score = integrity_score(totals.passed, totals.failed, triples)
    checked = totals.passed + totals.failed
    all_records = checked + totals.review
    run_start = run.started_at if run is not None else None
    run_end = run.finished_at if run is not None else None
    window = (run_end - run_start).total_seconds() if run_start and run_end else (finished - started).total_seconds()
    failures = sum(o.failures if o.status != "error" else max(o.failures, 1) for o in outcomes if o.status != "passed")
    metrics: dict[str, float | None] = {
        "integrity_score": None if score is None else float(score),
        "error_rate_pct": error_rate(totals),
        "performance_impact_pct": performance["impact_pct"],
        "no_progress_minutes": no_progress(run, journals, finished),
        "validation_failures_per_hour": alerting.failures_per_hour(failures, window),
    }
    fired = alerting.evaluate(spec.alerts, metrics)
    status, exit_code = verdict(outcomes, fired, checked)
    journal_states = sorted({s for s, _ in journals if s})
    latency = performance.get("latency") or {}
    host = host or {}
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id,
        "spec": {"path": None if spec.path is None else str(spec.path), "sha256": spec.sha256, "name": spec.name,
                 "version": spec.version},
        "status": status, "exit_code": exit_code, "started_at": iso(started), "finished_at": iso(finished),
        "run": {"status": run.status if run is not None else (
                    journal_states[0] if len(journal_states) == 1 else ", ".join(journal_states) or None),
                "started_at": iso(run_start) if run_start else None,
                "finished_at": iso(run_end) if run_end else None},
        "environment": environment,
        "integrity_score": metrics["integrity_score"],
        "score": {"records_checked": checked, "records_passed": totals.passed,
                  "base": None if not checked else float(round(Decimal(100) * totals.passed / checked, 4)),
                  "penalties": [{"check": p.check_id, "severity": p.severity, "status": p.status,
                                 "points": float(p.points)} for p in penalties(triples)]},
        "counts": counts(orgs, outcomes),
        "organizations": orgs,
        "checks": [o.as_dict() for o in outcomes],
        "records": {"total": all_records, "passed": totals.passed, "failed": totals.failed,
                    "requires_review": totals.review, "by_kind": dict(totals.kinds),
                    "failed_by_category": {c: totals.by_category[c] for c in CATEGORIES},
                    "file": record_file, "samples": totals.samples},
        "system": {"organizations_in_scope": len(orgs),
                   "organizations_migrated": sum(1 for o in orgs if o["migrated"] or o["records"]["checked"]),
                   "integrity_score": metrics["integrity_score"],
                   "performance_impact_pct": performance["impact_pct"],
                   "performance_impact": impact.performance_impact(
                       host.get("windows"), reason=host.get("reason"),
                       latency=latency if latency.get("baseline") or latency.get("during") else None),
                   "business_continuity": impact.business_continuity(latency.get("during"))},
        "ledger": ledger,
        "diff": diff,
        "snapshot": snapshot,
        "performance": performance,
        "metrics": metrics,
        "alerts": [a.as_dict() for a in fired],
    }

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

from runner.spec.model import Spec
from runner.validate import alerts as alerting
from runner.validate.outcome import CheckOutcome
from runner.validate.records import CATEGORIES, OrgRecords
from runner.validate.runfacts import OrgFacts, RunFacts
from runner.validate.score import integrity_score, penalties

SCHEMA_VERSION = "1.0"


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




def check_triples(outcomes: list[CheckOutcome], org_id: str | None = None) -> list[tuple[str, str, str]]:
    if org_id is None:
        return [(o.id, o.check.severity, o.status) for o in outcomes]
    return [(o.id, o.check.severity, o.org_result(org_id).status) for o in outcomes]


def organization(org_id: str, org_code: str, records: OrgRecords, summary: dict[str, Any],
                 outcomes: list[CheckOutcome], run_org: OrgFacts | None) -> dict[str, Any]:
    """Level 2: one organisation."""
    triples = check_triples(outcomes, org_id)
    score = integrity_score(records.passed, records.failed, triples)
    quarantined_db = records.kinds["quarantined"]
    migrated_db = summary["originals"] + summary["aliases"]
    if run_org is not None:
        migrated = run_org.migrated + run_org.aliased
        quarantined = run_org.quarantined
        candidates = run_org.candidates or migrated + quarantined
    else:
        migrated, quarantined, candidates = migrated_db, quarantined_db, migrated_db + quarantined_db
    families = {name: dict(counts) for name, counts in records.families.items()}

    def family(name: str) -> dict[str, Any]:
        counts = families.get(name, {})
        return {"records": sum(counts.values()), "passed": counts.get("PASSED", 0),
                "failed": counts.get("FAILED", 0), "requires_review": counts.get("REQUIRES_REVIEW", 0)}

    org_config = family("organization_config")
    return {
        "organization_id": org_id, "organization_code": org_code, "candidates": candidates, "migrated": migrated,
        "quarantined": quarantined, "integrity_score": float(score),
        "records": {"checked": records.passed + records.failed, "passed": records.passed, "failed": records.failed,
                    "requires_review": records.review, "by_kind": dict(records.kinds),
                    "failed_by_category": {c: records.by_category[c] for c in CATEGORIES}},
        "source": {"originals": summary["originals"], "originals_amount": summary["originals_amount"],
                   "aliases": summary["aliases"], "entities": sum(summary["entities"].values()),
                   "quarantined": quarantined_db},
        "target": {"reposts": summary["reposts"], "reposts_amount": summary["reposts_amount"],
                   "reversals": summary["reversals"], "reversals_amount": summary["reversals_amount"]},
        "critical_errors": sum(1 for _, sev, st in triples if sev == "critical" and st in ("failed", "error")),
        "warnings": sum(1 for _, sev, st in triples
                        if st == "warning" or (sev != "critical" and st in ("failed", "error"))),
        "summaries": {
            "posting_rules": family("posting_rules"),
            "fiscal_periods": family("fiscal_periods"),
            "organization_config": {"migrated": org_config["records"] > 0, **org_config},
            "transaction_history": {
                "originals": summary["originals"], "reversals": summary["reversals"],
                "reposts": summary["reposts"], "aliases": summary["aliases"], "quarantined": quarantined_db,
                "originals_amount": summary["originals_amount"], "reposts_amount": summary["reposts_amount"]},
        },
        "run_status": (run_org.status if run_org is not None else None) or summary["journal_status"],
        "journal_last_write": summary["journal_last_write"],
    }


def _p95(block: Any) -> float | None:
    if not isinstance(block, dict):
        return None
    return _num(block.get("p95_ms", block.get("p95")))


def performance_section(performance: dict[str, Any] | None, run: RunFacts | None,
                        phases: dict[str, float], migrated: int) -> dict[str, Any]:
    perf = performance or {}
    all_phases: dict[str, float] = {}
    for name, seconds in (run.seconds if run is not None else {}).items():
        all_phases[f"run.{name}"] = round(float(seconds), 3)
    for name, seconds in (perf.get("phases") or {}).items():
        if _num(seconds) is not None:
            all_phases[str(name)] = round(float(seconds), 3)
    all_phases.update({k: round(v, 3) for k, v in phases.items()})
    rps = _num(perf.get("records_per_second"))
    if rps is None and run is not None:
        start, end = run.started_at, run.finished_at
        if start and end and end > start and migrated:
            rps = migrated / (end - start).total_seconds()
    latency = perf.get("latency") if isinstance(perf.get("latency"), dict) else None
    baseline = latency.get("baseline") if latency else None
    during = latency.get("during") if latency else None
    out: dict[str, Any] = {
        "records_per_second": None if rps is None else round(rps, 3), "phases": all_phases,
        "latency": {"baseline": baseline if isinstance(baseline, dict) else None,
                    "during": during if isinstance(during, dict) else None} if latency else None,
        "impact_pct": alerting.impact_pct(_p95(baseline), _p95(during))}
    timeline = timeline_points(perf.get("timeline"))
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


def continuity(performance: dict[str, Any]) -> dict[str, Any]:
    during = (performance.get("latency") or {}).get("during") or {}
    requests, failures = _num(during.get("requests")), _num(during.get("failures"))
    if requests is None:
        return {"measured": False, "v1_requests": None, "v1_failures": None, "v1_availability_pct": None}
    availability = None if not requests else round(100.0 * (requests - (failures or 0)) / requests, 3)
    return {"measured": True, "v1_requests": int(requests), "v1_failures": int(failures or 0),
            "v1_availability_pct": availability}


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


def build(*, spec: Spec, run_id: str, started: datetime, finished: datetime, orgs: list[dict[str, Any]],
          outcomes: list[CheckOutcome], totals: OrgRecords, record_file: str | None, diff: dict[str, Any],
          performance: dict[str, Any], run: RunFacts | None, snapshot: dict[str, Any],
          journals: list[tuple[str | None, str | None]]) -> dict[str, Any]:
    triples = check_triples(outcomes)
    score = integrity_score(totals.passed, totals.failed, triples)
    all_records = totals.passed + totals.failed + totals.review
    run_start = run.started_at if run is not None else None
    run_end = run.finished_at if run is not None else None
    window = (run_end - run_start).total_seconds() if run_start and run_end else (finished - started).total_seconds()
    failures = sum(o.failures if o.status != "error" else max(o.failures, 1) for o in outcomes if o.status != "passed")
    metrics: dict[str, float | None] = {
        "integrity_score": float(score),
        "error_rate_pct": error_rate(totals),
        "performance_impact_pct": performance["impact_pct"],
        "no_progress_minutes": no_progress(run, journals, finished),
        "validation_failures_per_hour": alerting.failures_per_hour(failures, window),
    }
    fired = alerting.evaluate(spec.alerts, metrics)
    critical_check = any(o.check.severity == "critical" and o.failing for o in outcomes)
    exit_code = 1 if critical_check or any(a.level == "critical" for a in fired) else 0
    status = "failed" if exit_code else (
        "warning" if fired or any(o.status != "passed" for o in outcomes) else "passed")
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id,
        "spec": {"path": None if spec.path is None else str(spec.path), "sha256": spec.sha256, "name": spec.name,
                 "version": spec.version},
        "status": status, "exit_code": exit_code, "started_at": iso(started), "finished_at": iso(finished),
        "run": {"status": run.status if run is not None else None,
                "started_at": iso(run_start) if run_start else None,
                "finished_at": iso(run_end) if run_end else None},
        "integrity_score": float(score),
        "score": {"records_checked": totals.passed + totals.failed, "records_passed": totals.passed,
                  "base": float(Decimal(100) if not (totals.passed + totals.failed)
                                else round(Decimal(100) * totals.passed / (totals.passed + totals.failed), 4)),
                  "penalties": [{"check": p.check_id, "severity": p.severity, "status": p.status,
                                 "points": float(p.points)} for p in penalties(triples)]},
        "organizations": orgs,
        "checks": [o.as_dict() for o in outcomes],
        "records": {"total": all_records, "passed": totals.passed, "failed": totals.failed,
                    "requires_review": totals.review, "by_kind": dict(totals.kinds),
                    "failed_by_category": {c: totals.by_category[c] for c in CATEGORIES},
                    "file": record_file, "samples": totals.samples},
        "system": {"organizations_in_scope": len(orgs),
                   "organizations_migrated": sum(1 for o in orgs if o["migrated"] or o["records"]["checked"]),
                   "integrity_score": float(score), "performance_impact_pct": performance["impact_pct"],
                   "business_continuity": continuity(performance)},
        "diff": diff,
        "snapshot": snapshot,
        "performance": performance,
        "metrics": metrics,
        "alerts": [a.as_dict() for a in fired],
    }

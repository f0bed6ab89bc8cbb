"""What a rollback leaves in the run's report: the report must tell the run's current state, so every rollback
(the operator's `rollback RUN_ID` and the demo's rehearsal alike) rewrites results.json and index.html with a
`rollback` section — the engine's own verification per organisation and, when the whole run was rolled back and
a before-snapshot exists, a third snapshot compared with the before-snapshot row for row (every column; the run
journal left out: rollback keeps it as the audit trail).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.contract import SNAPSHOT_FILE
from runner.engine.outcome import RollbackResult

CONFLICT_SAMPLES = 10


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def comparison(dsn: str, result: RollbackResult, report_dir: Path, *, partial: bool,
               exclude_created_by: str | None = None) -> dict[str, Any]:
    """The row-for-row comparison with the before-snapshot, or why it was not made. `exclude_created_by`: rows
    that actor created are left out (a rehearsal under a v1 load: the load's own postings are not the run's)."""
    from runner.snapshot.compare import differing_rows
    from runner.snapshot.extract import take_snapshot
    from runner.validate.snapshot import labels

    out: dict[str, Any] = {"made": False, "reason": None, "identical": None, "differing_rows": {},
                           "excluded_created_by": exclude_created_by}
    snapshot = report_dir / SNAPSHOT_FILE
    scope = result.scope or {}
    if scope.get("to"):
        out["reason"] = (f"rolled back to checkpoint {scope['to']}: what the run did before it stays, so the "
                         "before-snapshot is not the state to compare with")
    elif scope.get("only"):
        out["reason"] = (f"only {', '.join(scope['only'])} rolled back (--only): the rest of the run's work stays")
    elif partial:
        out["reason"] = ("only some organisations were rolled back (--org): the before-snapshot also holds the "
                         "others, which still carry the migration")
    elif result.status != "rolled_back":
        out["reason"] = f"the rollback ended {result.status}: what it left is listed per organisation"
    elif "before" not in labels(snapshot):
        out["reason"] = f"no before-snapshot in {snapshot}"
    if out["reason"] is not None:
        return out
    take_snapshot(dsn, [o.organization_id for o in result.organizations], snapshot, "rollback")
    differing = differing_rows(snapshot, "before", "rollback", exclude_created_by=exclude_created_by)
    out.update(made=True, identical=not any(differing.values()), differing_rows=differing)
    return out


def section(dsn: str, result: RollbackResult, report_dir: Path, started: datetime, *, rehearsal: bool,
            partial: bool, exclude_created_by: str | None = None) -> dict[str, Any]:
    """results.json's `rollback` section (docs/results-schema.md)."""
    compared = comparison(dsn, result, report_dir, partial=partial, exclude_created_by=exclude_created_by)
    orgs = []
    for o in result.organizations:
        orgs.append({
            "organization_id": o.organization_id, "organization_code": o.organization_code, "status": o.status,
            "originals_restored": o.originals_restored, "reposts_deleted": o.reposts_deleted,
            "reversals_deleted": o.reversals_deleted, "aliases_restored": o.aliases_restored,
            "entities_restored": dict(o.entities), "conflicts": len(o.conflicts),
            "conflict_samples": [{"record_id": c.transaction_id, "role": c.role, "message": c.reason}
                                 for c in o.conflicts[:CONFLICT_SAMPLES]],
            "verified": o.verified, "problems": list(o.problems), "error": o.error})
    return {"status": result.status, "rehearsal": rehearsal, "partial": partial,
            "scope": {"to": (result.scope or {}).get("to"), "only": list((result.scope or {}).get("only") or [])},
            "started_at": _iso(started),
            "finished_at": _iso(datetime.now(UTC)), "seconds": round(result.seconds, 3),
            "verified": bool(orgs) and all(o["verified"] for o in orgs),
            "organizations": orgs, "comparison": compared}

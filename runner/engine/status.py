"""`status RUN_ID`: progress of a run from its journal only (committed checkpoints), so it works from another
process while the run goes on, and after it ended."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from runner.db.connect import connect
from runner.engine import checkpoints, journal
from runner.engine.context import WORKER_LOCK_CLASS, Sql, validate_run_id
from runner.engine.outcome import TIERS, OrgStatus, RunStatus
from runner.errors import UsageError


def run_status(dsn: str, run_id: str) -> RunStatus:
    if not validate_run_id(run_id):
        raise UsageError(f"invalid run id {run_id!r}")
    sql = Sql()
    with connect(dsn) as conn:
        conn.read_only = True
        with conn.transaction():
            org_ids = [o for o, _ in journal.all_orgs(conn, sql)]
            journals = journal.find(conn, sql, org_ids, run_id)
            if not journals:
                raise UsageError(f"no run {run_id} in this database (no journal with that run id)")
            ids = [j.id for j in journals]
            orgs = [j.organization_id for j in journals]
            fields = journal.read_fields(conn, sql, orgs, ids)
            quarantine = journal.read_quarantine(conn, sql, orgs, ids)
            cuts = checkpoints.listing(conn, sql, journals)
            _liveness(conn, sql, fields)
    out = RunStatus(run_id=run_id, status="unknown", checkpoints=[c.as_dict() for c in cuts])
    for j in journals:
        f = fields.get(j.id, {})
        q = quarantine.get(j.id, [])
        out.organizations.append(OrgStatus(
            organization_id=j.organization_id, organization_code=j.organization_code, journal_id=j.id,
            status=str(f.get("status") or j.status), spec=dict(j.metadata.get("spec") or {}),
            started_at=j.metadata.get("started_at"),
            candidates={t: int(f.get(f"candidates_{t}", 0) or 0) for t in TIERS},
            migrated=int(f.get("migrated", 0) or 0), aliased=int(f.get("aliased", 0) or 0),
            quarantined={t: sum(1 for x in q if x.tier == t) for t in TIERS},
            quarantine_reasons=dict(Counter(x.reason for x in q)), chunks=int(f.get("chunks", 0) or 0),
            phase=_text(f.get("phase")), last_chunk_at=_date(f.get("last_chunk_at")),
            finished_at=_date(f.get("finished_at")), fields=f))
    out.status = aggregate_status([o.status for o in out.organizations])
    return out


def live_workers(dsn: str, run_id: str) -> list[dict[str, Any]]:
    """The workers of `run_id` whose session is alive now (any runner process, this one included)."""
    return [w for o in run_status(dsn, run_id).organizations for w in o.fields.get("workers", []) if w.get("alive")]


def aggregate_status(statuses: list[str]) -> str:
    distinct = set(statuses)
    if len(distinct) == 1:
        return distinct.pop()
    for status in ("failed", "running", "requires_review", "incomplete"):
        if status in distinct:
            return status
    return "mixed"


def _liveness(conn: Any, sql: Sql, fields: dict[str, dict[str, Any]]) -> None:
    """Mark each worker of the journals alive or not (its session's liveness lock, runner/engine/session.py)."""
    workers = [w for f in fields.values() for w in f.get("workers", [])]
    keys = sorted({int(w["key"]) for w in workers if w.get("key") is not None})
    alive = {int(k): bool(a) for k, a in sql.rows(conn, "run/worker_alive", worker_class=WORKER_LOCK_CLASS,
                                                  worker_keys=keys)} if keys else {}
    for w in workers:
        w["alive"] = alive.get(int(w.get("key") or 0), False)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _date(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None

"""The run journal in the Sacred Six (docs/contract.md §6): per (organisation, run) one core_entities row of type
MIGRATION_RUN (entity_code = run id, metadata {run_id, spec, actor, started_at, status, options}) and its
checkpoint fields as core_dynamic_data rows, written in the same transaction as the chunk they record.

Checkpoint fields (field_name → value column):
  status (text), phase (text), candidates_reverse_repost / candidates_reporting_alias (number, set when the
  journal is created), migrated / aliased / chunks (number, incremented per chunk), quarantined (number: the
  count of quarantine rows), last_chunk_at / finished_at (date), entities (json, from the entity hook);
  entities_seq (number: the seq of the entity step's transaction);
  rollback: rollback_originals / rollback_reposts / rollback_reversals / rollback_aliases (incremented),
  conflicts (number), rolled_back_at (date), rolled_back_to (json: the checkpoint of a `rollback --to`),
  rolled_back_scopes (json: what a scoped rollback (`--only`) undid).
Quarantined candidates: field quarantine:<transaction id>, json {reason, tier, sqlstate, message, attempts, at, seq}.
Named checkpoints: field checkpoint:<name>, json {name, kind, seq, at, counters} (runner/engine/checkpoints.py).
Workers: field worker:<host:pid:n>, json {host, pid, n, key, started_at, state, tier, last_chunk_at, rate, migrated,
  aliased, chunks, quarantined}: each worker session increments only its own row in the transaction of each chunk,
  so the chunks of several workers (and runner processes) never queue on one journal row. `read_fields` adds the
  workers' counters to the organisation's (migrated, aliased, chunks), takes the latest last_chunk_at, and lists
  the workers under "workers".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from runner import contract
from runner.compile.jsonx import jdump
from runner.engine.context import QUARANTINE_PREFIX, WORKER_PREFIX, Sql
from runner.engine.outcome import Quarantined

COUNTERS = ("migrated", "aliased", "chunks", "rollback_originals", "rollback_reposts", "rollback_reversals",
            "rollback_aliases", "rollback_chunks")
QUARANTINED_FIELD = "quarantined"


@dataclass(frozen=True)
class Journal:
    id: str
    organization_id: str
    organization_code: str
    metadata: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.metadata.get("status", "unknown"))

    @property
    def spec_sha256(self) -> str:
        return str((self.metadata.get("spec") or {}).get("sha256", ""))


def now() -> datetime:
    return datetime.now(UTC)


def all_orgs(conn: psycopg.Connection[Any], sql: Sql) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in sql.rows(conn, "scope/organizations")]


def find(conn: psycopg.Connection[Any], sql: Sql, org_ids: list[str], run_id: str) -> list[Journal]:
    rows = sql.rows(conn, "run/journal_find", org_ids=org_ids, run_id=run_id)
    return [Journal(id=r[0], organization_id=r[1], organization_code=r[2], metadata=r[3] or {}) for r in rows]


def create(conn: psycopg.Connection[Any], sql: Sql, *, org_id: str, run_id: str, spec: dict[str, Any],
           options: dict[str, Any], candidates: dict[str, int]) -> str:
    started = now()
    metadata = {"run_id": run_id, "spec": spec, "actor": str(contract.MIGRATION_ACTOR_ID),
                "started_at": started.isoformat(), "status": "running", "options": options}
    row = sql.execute(conn, "run/journal_create", org_id=org_id, run_id=run_id,
                      entity_name=f"Migration run {run_id}",
                      description=f"hera-migrate run journal ({spec.get('name')})",
                      metadata=jdump(metadata)).fetchone()
    assert row is not None
    journal_id = str(row[0])
    checkpoint(conn, sql, org_id, journal_id,
               values={"status": "running", "candidates_reverse_repost": candidates.get("reverse_repost", 0),
                       "candidates_reporting_alias": candidates.get("reporting_alias", 0), "migrated": 0,
                       "aliased": 0, "chunks": 0, QUARANTINED_FIELD: 0})
    return journal_id


def set_meta(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str, **patch: Any) -> None:
    sql.execute(conn, "run/journal_meta", org_id=org_id, journal_id=journal_id, patch=jdump(patch))


def checkpoint(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str, *,
               counters: dict[str, int] | None = None, values: dict[str, Any] | None = None,
               count_quarantine: bool = True) -> None:
    """Increment `counters`, replace `values` (and recount the quarantine rows) in one statement."""
    names: list[str] = []
    types: list[str] = []
    numbers: list[Decimal | None] = []
    texts: list[str | None] = []
    dates: list[datetime | None] = []
    jsons: list[str | None] = []

    def add(name: str, value: Any) -> None:
        num = txt = ts = js = None
        if isinstance(value, bool | dict | list):
            kind, js = "json", jdump(value)
        elif isinstance(value, int | Decimal):
            kind, num = "number", Decimal(value)
        elif isinstance(value, datetime):
            kind, ts = "date", value
        else:
            kind, txt = "text", None if value is None else str(value)
        names.append(name)
        types.append(kind)
        numbers.append(num)
        texts.append(txt)
        dates.append(ts)
        jsons.append(js)

    for name, delta in (counters or {}).items():
        add(name, delta)
    for name, value in (values or {}).items():
        add(name, value)
    if count_quarantine and QUARANTINED_FIELD not in names:
        add(QUARANTINED_FIELD, 0)
    sql.execute(conn, "run/checkpoint", org_id=org_id, journal_id=journal_id, names=names, types=types,
                numbers=numbers, texts=texts, dates=dates, jsons=jsons, counters=list(COUNTERS),
                quarantined_field=QUARANTINED_FIELD)


def worker_tick(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str, worker: dict[str, Any],
                deltas: dict[str, int]) -> None:
    """The worker's own row, in the chunk's transaction: `worker` {host, pid, n, key, tier, rate, state, ...}
    replaces, `deltas` (migrated, aliased, chunks, quarantined) are added."""
    body = {**worker, **deltas, "last_chunk_at": now().isoformat()}
    sql.execute(conn, "run/worker_tick", org_id=org_id, journal_id=journal_id,
                field_name=WORKER_PREFIX + str(worker["name"]), body=jdump(body), counters=list(deltas))


def quarantine(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str,
               entries: list[Quarantined]) -> None:
    if not entries:
        return
    at = now().isoformat()
    bodies = [jdump({"reason": q.reason, "tier": q.tier, "sqlstate": q.sqlstate, "message": q.message,
                     "attempts": 1, "at": at}) for q in entries]
    sql.execute(conn, "run/quarantine", org_id=org_id, journal_id=journal_id,
                ids=[q.transaction_id for q in entries], bodies=bodies)


def unquarantine(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str, ids: list[str]) -> None:
    if ids:
        sql.execute(conn, "run/unquarantine", org_id=org_id, journal_id=journal_id,
                    field_names=[f"{QUARANTINE_PREFIX}{i}" for i in ids])


def read_fields(conn: psycopg.Connection[Any], sql: Sql, org_ids: list[str],
                journal_ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {j: {} for j in journal_ids}
    for entity_id, name, num, txt, ts, js in sql.rows(conn, "run/journal_fields", org_ids=org_ids,
                                                      journal_ids=journal_ids):
        value: Any = txt
        if num is not None:
            value = int(num) if num == num.to_integral_value() else num
        elif ts is not None:
            value = ts
        elif js is not None:
            value = js
        out.setdefault(entity_id, {})[name] = value
    return {entity_id: _add_workers(fields) for entity_id, fields in out.items()}


def _add_workers(fields: dict[str, Any]) -> dict[str, Any]:
    workers = [v for k, v in fields.items() if k.startswith(WORKER_PREFIX) and isinstance(v, dict)]
    out = {k: v for k, v in fields.items() if not k.startswith(WORKER_PREFIX)}
    for w in workers:
        for name in ("migrated", "aliased", "chunks"):
            out[name] = int(out.get(name) or 0) + int(w.get(name) or 0)
        at = _timestamp(w.get("last_chunk_at"))
        if at is not None and (not isinstance(out.get("last_chunk_at"), datetime) or at > out["last_chunk_at"]):
            out["last_chunk_at"] = at
    out["workers"] = sorted(workers, key=lambda w: str(w.get("name", "")))
    return out


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def read_quarantine(conn: psycopg.Connection[Any], sql: Sql, org_ids: list[str],
                    journal_ids: list[str]) -> dict[str, list[Quarantined]]:
    out: dict[str, list[Quarantined]] = {j: [] for j in journal_ids}
    for entity_id, txn_id, body in sql.rows(conn, "run/quarantine_list", org_ids=org_ids, journal_ids=journal_ids):
        body = body or {}
        out.setdefault(entity_id, []).append(Quarantined(
            transaction_id=txn_id, tier=str(body.get("tier", "")), reason=str(body.get("reason", "")),
            sqlstate=body.get("sqlstate"), message=body.get("message"), attempts=int(body.get("attempts", 1))))
    return out

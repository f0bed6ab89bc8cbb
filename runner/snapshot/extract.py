"""Before/after snapshots of in-scope organisations: PostgreSQL → DuckDB, one consistent picture, exact types.

`take_snapshot(dsn, org_ids, duckdb_path, label)` writes `<label>_<table>` for the six tables (core_organizations
filtered by id, the others by organization_id), `<label>_jsonb_derived` (below) and one row of the `snapshots`
table (label, taken_at, org_ids, PostgreSQL snapshot and its xmin, method, row counts, seconds). Everything is
replaced in one DuckDB transaction, so re-taking a label is idempotent and a failed take leaves the previous one.

Consistency: every row of a snapshot comes from ONE PostgreSQL transaction, `REPEATABLE READ READ ONLY`, whose
snapshot is fixed by its first statement (`SELECT pg_current_snapshot()`, recorded) before any table is read.

Methods (both run the same PostgreSQL SELECTs and cast to the same DuckDB types, see columns.py):
- ``scanner`` (default): DuckDB's postgres_scanner (the `duckdb-extension-postgres-scanner` wheel). The
  attached database is READ_ONLY; inside one DuckDB transaction the extension runs every `postgres_query` on the
  same PostgreSQL connection, in one `BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY` (it only
  spreads a scan over more connections for ctid-parallel table scans, which we do not use, and then they import
  the main transaction's exported snapshot). Rows stream as binary COPY into DuckDB.
- ``copy``: the fallback that needs no extension: psycopg runs `COPY (SELECT …) TO STDOUT (FORMAT csv)` for each
  table in one REPEATABLE READ READ ONLY transaction, streamed chunk by chunk to a temporary file beside the
  DuckDB file, then `read_csv` with explicit column types (no sniffing; quoted empty strings stay '' and only
  unquoted empty fields are NULL). TimeZone is UTC for the transaction so timestamps are printed unambiguously.
Rows never pass through Python objects in either method, so memory does not grow with the organisation.

`<label>_jsonb_derived` holds, for rows whose metadata carries a harness or reversal key, metadata sub-documents
computed by PostgreSQL's jsonb operators (metadata without the migration/reversal/alias keys, and
metadata.migration.pre.metadata). The diff compares those texts exactly; DuckDB's own JSON functions re-serialise
numbers through double precision (12345678901234.56789012 → 12345678901234.568), which a proof cannot afford.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import psycopg
from psycopg import conninfo

from runner import contract
from runner.compile import Statement, render, render_duck
from runner.db.connect import APPLICATION_NAME, redact
from runner.db.connect import connect as pg_connect
from runner.errors import DatabaseError, UsageError
from runner.snapshot import duck
from runner.snapshot.columns import Column, read_columns
from runner.snapshot.duck import LABELS, METADATA_TABLES, TABLES, Label

log = logging.getLogger(__name__)

Method = Literal["scanner", "copy"]
METHODS: tuple[Method, ...] = ("scanner", "copy")
PG_ALIAS = "hera_pg"

# Derived jsonb texts: (DuckDB column, PostgreSQL expression over `metadata`).
_STRIP = {
    "base_original": (contract.META_MIGRATION, *contract.HERA_REVERSAL_KEYS_ORIGINAL),
    "base_twin": (contract.META_MIGRATION, *contract.HERA_REVERSAL_KEYS_TWIN),
    "base_alias": (contract.META_MIGRATION, contract.META_REPORTING_ALIAS),
    "base_entity": (contract.META_MIGRATION,),
}
_MARK_KEYS = sorted({k for keys in _STRIP.values() for k in keys})
DERIVED_COLUMNS = (*_STRIP, "pre_metadata")


@dataclass
class SnapshotInfo:
    label: str
    method: str
    org_ids: list[str]
    rows: dict[str, int]
    seconds: float
    pg_snapshot: str
    pg_xmin: int
    taken_at: str  # ISO 8601, UTC: the snapshot transaction's start (now())
    server_version: str
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows_total / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method, "org_ids": self.org_ids, "rows": self.rows,
                "rows_total": self.rows_total, "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_per_second), "pg_snapshot": self.pg_snapshot,
                "pg_xmin": self.pg_xmin, "taken_at": self.taken_at,
                "server_version": self.server_version, "phases": {k: round(v, 3) for k, v in self.phases.items()}}


def take_snapshot(dsn: str, org_ids: Sequence[str | uuid.UUID], duckdb_path: Path, label: Label,
                  *, method: Method = "scanner", on_pg_snapshot: Callable[[], None] | None = None) -> SnapshotInfo:
    """Snapshot the organisations `org_ids` into `duckdb_path` as `label` (replacing an earlier one).

    `on_pg_snapshot` is called once the PostgreSQL snapshot is fixed and before any row is read (tests commit a
    concurrent write there to prove it stays out).
    """
    if label not in LABELS:
        raise UsageError(f"snapshot label must be one of {', '.join(LABELS)}, not {label!r}")
    if method not in METHODS:
        raise UsageError(f"snapshot method must be one of {', '.join(METHODS)}, not {method!r}")
    orgs = _org_ids(org_ids)
    t0 = time.monotonic()
    with pg_connect(dsn, autocommit=True) as conn:
        columns = {table: read_columns(conn, table) for table in TABLES}
        queries = pg_queries(columns, orgs, copy=method == "copy")
        # postgres_query takes a query text: psycopg writes the bound org ids into it, as it does for a COPY
        texts = {name: _inline(conn, stmt) for name, stmt in queries.items()} if method == "scanner" else {}
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    con = duck.connect(duckdb_path)
    attached = False
    try:
        _run(con, render_duck("snapshot/catalog_create"))
        if method == "scanner":
            _attach(con, dsn)
            attached = True
        con.begin()
        try:
            if method == "scanner":
                row, phases = _via_scanner(con, columns, texts, label, on_pg_snapshot)
            else:
                row, phases = _via_copy(con, dsn, columns, queries, label, duckdb_path, on_pg_snapshot)
            info = SnapshotInfo(label=label, method=method, org_ids=orgs, rows=_counts(con, label),
                                seconds=time.monotonic() - t0, pg_snapshot=row[0], pg_xmin=int(row[1]),
                                taken_at=row[2], server_version=row[3], phases=phases)
            _record(con, info)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        if attached:
            _run(con, render_duck("snapshot/detach", alias=PG_ALIAS))
        con.close()
    log.info("snapshot %s: %s rows in %.2fs via %s", label, f"{info.rows_total:,}", info.seconds, method)
    return info


def pg_queries(columns: dict[str, list[Column]], orgs: list[str], *, copy: bool) -> dict[str, Statement]:
    """The PostgreSQL reads of a snapshot: per table its rows, plus the derived jsonb texts ("derived")."""
    out = {table: render("snapshot/pg_rows", table=table, columns=columns[table], org_ids=orgs, copy=copy)
           for table in TABLES}
    out["derived"] = render("snapshot/pg_derived", tables=METADATA_TABLES, strip=_STRIP, marks=_MARK_KEYS,
                            org_ids=orgs, copy=copy)
    return out


def _inline(conn: psycopg.Connection[Any], stmt: Statement) -> str:
    return psycopg.ClientCursor(conn).mogrify(stmt.text, stmt.params)


def _run(con: duckdb.DuckDBPyConnection, stmt: Statement) -> duckdb.DuckDBPyConnection:
    return con.execute(stmt.text, stmt.params or None)


def _org_ids(org_ids: Sequence[str | uuid.UUID]) -> list[str]:
    if not org_ids:
        raise UsageError("a snapshot needs at least one organization id")
    try:
        return sorted({str(uuid.UUID(str(o))) for o in org_ids})
    except ValueError as exc:
        raise UsageError(f"not an organization id (uuid): {exc}") from exc


def _attach(con: duckdb.DuckDBPyConnection, dsn: str) -> None:
    duck.load_postgres_scanner(con)
    params = conninfo.conninfo_to_dict(dsn)
    params.setdefault("application_name", f"{APPLICATION_NAME}-snapshot")
    try:
        _run(con, render_duck("snapshot/attach", conninfo=conninfo.make_conninfo(**params),  # type: ignore[arg-type]
                              alias=PG_ALIAS))
    except duckdb.Error as exc:
        raise DatabaseError(f"DuckDB cannot attach PostgreSQL ({redact(dsn)}): {exc}") from exc


def _via_scanner(con: duckdb.DuckDBPyConnection, columns: dict[str, list[Column]], queries: dict[str, str],
                 label: str, on_pg_snapshot: Callable[[], None] | None) -> tuple[tuple[Any, ...], dict[str, float]]:
    """Inside the caller's DuckDB transaction: every postgres_query runs in the same PostgreSQL transaction."""
    phases: dict[str, float] = {}
    fixed = render_duck("snapshot/scanner_query", alias=PG_ALIAS, query=render("snapshot/pg_snapshot").text)
    row = _run(con, fixed).fetchone()
    if row is None:
        raise DatabaseError("PostgreSQL returned no snapshot")
    if on_pg_snapshot is not None:
        on_pg_snapshot()
    for name, query in queries.items():
        t1 = time.monotonic()
        _run(con, load_statement(columns, label, name, alias=PG_ALIAS, query=query, csv=None))
        phases[name] = time.monotonic() - t1
    return row, phases


def _via_copy(con: duckdb.DuckDBPyConnection, dsn: str, columns: dict[str, list[Column]],
              queries: dict[str, Statement], label: str, duckdb_path: Path,
              on_pg_snapshot: Callable[[], None] | None) -> tuple[tuple[Any, ...], dict[str, float]]:
    """COPY every table to CSV in one PostgreSQL transaction, then load the files in the caller's DuckDB one."""
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=".snapshot-", dir=duckdb_path.parent) as tmp:
        files = {name: Path(tmp) / f"{name}.csv" for name in queries}
        with pg_connect(dsn, autocommit=True) as conn:
            conn.execute(render("snapshot/pg_copy_session").text)
            row = conn.execute(render("snapshot/pg_snapshot").text).fetchone()
            if row is None:
                raise DatabaseError("PostgreSQL returned no snapshot")
            if on_pg_snapshot is not None:
                on_pg_snapshot()
            with conn.cursor() as cur:
                for name, stmt in queries.items():
                    t1 = time.monotonic()
                    with files[name].open("wb") as out, cur.copy(stmt.text, stmt.params) as copy:
                        for chunk in copy:
                            out.write(chunk)
                    phases[f"copy {name}"] = time.monotonic() - t1
            conn.commit()  # ends the read-only transaction pg_copy_session began
        for name in queries:
            t1 = time.monotonic()
            _run(con, load_statement(columns, label, name, alias=None, query=None, csv=str(files[name])))
            phases[f"load {name}"] = time.monotonic() - t1
    return tuple(row), phases


def load_statement(columns: dict[str, list[Column]], label: str, name: str, *, alias: str | None, query: str | None,
          csv: str | None) -> Statement:
    """The DuckDB statement that creates snapshot table `name` from PostgreSQL rows (scanner) or a CSV (copy)."""
    if name == "derived":
        target = duck.derived_table(label)
        cols = [("table_name", "VARCHAR", "VARCHAR"), ("id", "UUID", "UUID")]
        cols += [(c, "JSON", "VARCHAR") for c in DERIVED_COLUMNS]
    else:
        target = duck.snapshot_table(label, name)
        cols = [(c.name, c.duck_type, c.transport_type) for c in columns[name]]
    return render_duck("snapshot/load", target=target, columns=cols, alias=alias, query=query, csv=csv,
                       transport_types={n: t for n, _, t in cols})


def _counts(con: duckdb.DuckDBPyConnection, label: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES:
        row = _run(con, render_duck("snapshot/count", table=duck.snapshot_table(label, table))).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def _record(con: duckdb.DuckDBPyConnection, info: SnapshotInfo) -> None:
    _run(con, render_duck("snapshot/catalog_record", label=info.label, taken_at=info.taken_at,
                          org_ids=info.org_ids, pg_snapshot=info.pg_snapshot, pg_xmin=info.pg_xmin,
                          server_version=info.server_version, method=info.method, row_counts=json.dumps(info.rows),
                          seconds=round(info.seconds, 3)))

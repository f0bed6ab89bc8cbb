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
from psycopg import conninfo

from runner import contract
from runner.db.connect import APPLICATION_NAME, redact
from runner.db.connect import connect as pg_connect
from runner.errors import DatabaseError, UsageError
from runner.snapshot import duck
from runner.snapshot.columns import Column, duck_cast, read_columns
from runner.snapshot.duck import LABELS, METADATA_TABLES, SNAPSHOTS_TABLE, TABLES, Label, qi, ql

log = logging.getLogger(__name__)

Method = Literal["scanner", "copy"]
METHODS: tuple[Method, ...] = ("scanner", "copy")
PG_ALIAS = "hera_pg"

_SNAPSHOT_SQL = ("SELECT pg_current_snapshot()::text AS pg_snapshot, "
                 "pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS pg_xmin, "
                 "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS taken_at, "
                 "current_setting('server_version') AS server_version")

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
    queries = {table: _select(table, columns[table], orgs) for table in TABLES}
    queries["derived"] = _derived_select(orgs)
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    con = duck.connect(duckdb_path)
    attached = False
    try:
        _create_snapshots_table(con)
        if method == "scanner":
            _attach(con, dsn)
            attached = True
        con.execute("BEGIN")
        try:
            if method == "scanner":
                row, phases = _via_scanner(con, columns, queries, label, on_pg_snapshot)
            else:
                row, phases = _via_copy(con, dsn, columns, queries, label, duckdb_path, on_pg_snapshot)
            info = SnapshotInfo(label=label, method=method, org_ids=orgs, rows=_counts(con, label),
                                seconds=time.monotonic() - t0, pg_snapshot=row[0], pg_xmin=int(row[1]),
                                taken_at=row[2], server_version=row[3], phases=phases)
            _record(con, info)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        if attached:
            con.execute(f"DETACH {PG_ALIAS}")
        con.close()
    log.info("snapshot %s: %s rows in %.2fs via %s", label, f"{info.rows_total:,}", info.seconds, method)
    return info


def _org_ids(org_ids: Sequence[str | uuid.UUID]) -> list[str]:
    if not org_ids:
        raise UsageError("a snapshot needs at least one organization id")
    try:
        return sorted({str(uuid.UUID(str(o))) for o in org_ids})
    except ValueError as exc:
        raise UsageError(f"not an organization id (uuid): {exc}") from exc


def _org_filter(table: str, orgs: list[str]) -> str:
    key = "id" if table == "core_organizations" else "organization_id"
    return f"{qi(key)} = ANY(ARRAY[{', '.join(ql(o) for o in orgs)}]::uuid[])"


def _select(table: str, cols: list[Column], orgs: list[str]) -> str:
    exprs = ", ".join(f"{c.pg_expr} AS {qi(c.name)}" for c in cols)
    return f"SELECT {exprs} FROM public.{qi(table)} WHERE {_org_filter(table, orgs)}"  # noqa: S608


def _derived_select(orgs: list[str]) -> str:
    parts = []
    marks = ", ".join(ql(k) for k in _MARK_KEYS)
    for table in METADATA_TABLES:
        exprs = [f"(metadata {' '.join('- ' + ql(k) for k in keys)})::text AS {name}" for name, keys in _STRIP.items()]
        exprs.append(f"(metadata #> {ql('{' + contract.META_MIGRATION + ',pre,metadata}')})::text AS pre_metadata")
        parts.append(f"SELECT {ql(table)} AS table_name, id, {', '.join(exprs)} FROM public.{qi(table)} "  # noqa: S608
                     f"WHERE {_org_filter(table, orgs)} AND jsonb_typeof(metadata) = 'object' "
                     f"AND metadata ?| ARRAY[{marks}]")
    return " UNION ALL ".join(parts)


def _attach(con: duckdb.DuckDBPyConnection, dsn: str) -> None:
    duck.load_postgres_scanner(con)
    params = conninfo.conninfo_to_dict(dsn)
    params.setdefault("application_name", f"{APPLICATION_NAME}-snapshot")
    try:
        con.execute(f"ATTACH {ql(conninfo.make_conninfo(**params))} AS {PG_ALIAS} "  # type: ignore[arg-type]
                    "(TYPE postgres, READ_ONLY)")
    except duckdb.Error as exc:
        raise DatabaseError(f"DuckDB cannot attach PostgreSQL ({redact(dsn)}): {exc}") from exc


def _via_scanner(con: duckdb.DuckDBPyConnection, columns: dict[str, list[Column]], queries: dict[str, str],
                 label: str, on_pg_snapshot: Callable[[], None] | None) -> tuple[tuple[Any, ...], dict[str, float]]:
    """Inside the caller's DuckDB transaction: every postgres_query runs in the same PostgreSQL transaction."""
    phases: dict[str, float] = {}
    row = con.execute(f"SELECT * FROM postgres_query({ql(PG_ALIAS)}, {ql(_SNAPSHOT_SQL)})").fetchone()  # noqa: S608
    if row is None:
        raise DatabaseError("PostgreSQL returned no snapshot")
    if on_pg_snapshot is not None:
        on_pg_snapshot()
    for table in (*TABLES, "derived"):
        t1 = time.monotonic()
        # Identifiers pass through qi(), literals through ql(), org ids were parsed as UUIDs.
        con.execute(f"CREATE OR REPLACE TABLE {_target(label, table)} AS SELECT {_casts(columns, table)} "  # noqa: S608
                    f"FROM postgres_query({ql(PG_ALIAS)}, {ql(queries[table])})")
        phases[table] = time.monotonic() - t1
    return row, phases


def _via_copy(con: duckdb.DuckDBPyConnection, dsn: str, columns: dict[str, list[Column]], queries: dict[str, str],
              label: str, duckdb_path: Path,
              on_pg_snapshot: Callable[[], None] | None) -> tuple[tuple[Any, ...], dict[str, float]]:
    """COPY every table to CSV in one PostgreSQL transaction, then load the files in the caller's DuckDB one."""
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=".snapshot-", dir=duckdb_path.parent) as tmp:
        files = {name: Path(tmp) / f"{name}.csv" for name in queries}
        with pg_connect(dsn, autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute("SET LOCAL TimeZone = 'UTC'")
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            row = conn.execute(_SNAPSHOT_SQL).fetchone()
            if row is None:
                raise DatabaseError("PostgreSQL returned no snapshot")
            if on_pg_snapshot is not None:
                on_pg_snapshot()
            with conn.cursor() as cur:
                for name, query in queries.items():
                    t1 = time.monotonic()
                    with files[name].open("wb") as out, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                        for chunk in copy:
                            out.write(chunk)
                    phases[f"copy {name}"] = time.monotonic() - t1
            conn.execute("COMMIT")
        for name in queries:
            t1 = time.monotonic()
            con.execute(f"CREATE OR REPLACE TABLE {_target(label, name)} AS SELECT {_casts(columns, name)} "  # noqa: S608
                        f"FROM {_read_csv(files[name], _transport(columns, name))}")
            phases[f"load {name}"] = time.monotonic() - t1
    return tuple(row), phases


def _target(label: str, name: str) -> str:
    return qi(duck.derived_table(label) if name == "derived" else duck.snapshot_table(label, name))


def _transport(columns: dict[str, list[Column]], name: str) -> dict[str, str]:
    if name == "derived":
        return {"table_name": "VARCHAR", "id": "UUID", **dict.fromkeys(DERIVED_COLUMNS, "VARCHAR")}
    return {c.name: c.transport_type for c in columns[name]}


def _casts(columns: dict[str, list[Column]], name: str) -> str:
    if name == "derived":
        return "table_name, id, " + ", ".join(f"CAST({c} AS JSON) AS {c}" for c in DERIVED_COLUMNS)
    return ", ".join(f"{duck_cast(c, qi(c.name))} AS {qi(c.name)}" for c in columns[name])


def _read_csv(path: Path, spec: dict[str, str]) -> str:
    columns = "{" + ", ".join(f"{ql(name)}: {ql(typ)}" for name, typ in spec.items()) + "}"
    return (f"read_csv({ql(str(path))}, columns = {columns}, header = false, auto_detect = false, delim = ',', "
            "quote = '\"', escape = '\"', nullstr = '', allow_quoted_nulls = false, new_line = '\\n')")


def _counts(con: duckdb.DuckDBPyConnection, label: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES:
        row = con.execute(f"SELECT count(*) FROM {qi(duck.snapshot_table(label, table))}").fetchone()  # noqa: S608
        counts[table] = int(row[0]) if row else 0
    return counts


def _create_snapshots_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"""CREATE TABLE IF NOT EXISTS {SNAPSHOTS_TABLE} (
                        label VARCHAR PRIMARY KEY, taken_at TIMESTAMPTZ, org_ids UUID[], pg_snapshot VARCHAR,
                        pg_xmin BIGINT, server_version VARCHAR, method VARCHAR, row_counts JSON, seconds DOUBLE)""")


def _record(con: duckdb.DuckDBPyConnection, info: SnapshotInfo) -> None:
    con.execute(f"DELETE FROM {SNAPSHOTS_TABLE} WHERE label = ?", [info.label])  # noqa: S608
    con.execute(f"INSERT INTO {SNAPSHOTS_TABLE} VALUES (?, CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                [info.label, info.taken_at, info.org_ids, info.pg_snapshot, info.pg_xmin, info.server_version,
                 info.method, json.dumps(info.rows), round(info.seconds, 3)])

"""How each PostgreSQL column is read and stored in DuckDB: exact or not at all.

The column list comes from the PostgreSQL catalog at snapshot time (so a production table with extra columns is
snapshotted whole), and every column gets a PostgreSQL SELECT expression plus a DuckDB type:

- numeric(p,s) with p <= 38 → DECIMAL(p,s), read as is (money: numeric(19,4), numeric(20,8), numeric(20,10)).
- numeric without typmod, or p > 38 → VARCHAR holding the exact decimal text (`::text`). DuckDB's DECIMAL stops
  at 38 digits and the scanner would map such columns to DOUBLE. None of the six tables has one today.
- jsonb / json → JSON holding PostgreSQL's jsonb text (`::jsonb::text`): keys in jsonb order at every level,
  duplicates dropped, canonical spacing, numbers exactly as stored. DuckDB's JSON type keeps that text as is,
  so equal jsonb values have equal text whatever key order the writer used.
- text[] / varchar[] → VARCHAR[] (sent as `to_jsonb(col)::text`); other arrays → JSON.
- uuid, smallint/integer/bigint, boolean, date → UUID, SMALLINT/INTEGER/BIGINT, BOOLEAN, DATE.
- timestamptz / timestamp → TIMESTAMPTZ / TIMESTAMP (microseconds on both sides).
- text, varchar(n), char(n) → VARCHAR (char(n) keeps PostgreSQL's padding).
- anything else (float, interval, bytea, …) → VARCHAR, PostgreSQL's own text output (`::text`).

`pg_expr` is what snapshot/pg_rows reads; snapshot/load casts `transport_type` to `duck_type` where they differ.

Both extraction methods run the same SELECT expressions and cast to the same DuckDB types, so they produce
identical tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

from runner.compile import render
from runner.errors import DatabaseError
from runner.snapshot.duck import qi

_NUMERIC = re.compile(r"numeric\((\d+),(\d+)\)")
_DIRECT = {
    "uuid": "UUID", "smallint": "SMALLINT", "integer": "INTEGER", "bigint": "BIGINT", "boolean": "BOOLEAN",
    "date": "DATE", "timestamp with time zone": "TIMESTAMPTZ", "timestamp without time zone": "TIMESTAMP",
    "text": "VARCHAR",
}
_TEXTUAL = re.compile(r"(character varying|character|varchar|bpchar)(\(\d+\))?$")


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str  # format_type() output, e.g. "numeric(19,4)"
    duck_type: str  # the DuckDB column type
    pg_expr: str  # what the PostgreSQL SELECT reads (a quoted identifier, maybe with a cast)
    transport_type: str  # the DuckDB type of the value as it arrives, before the final cast

    @property
    def is_json(self) -> bool:
        return self.duck_type == "JSON"


def map_type(name: str, pg_type: str) -> Column:
    col = qi(name)
    if m := _NUMERIC.fullmatch(pg_type):
        precision, scale = int(m.group(1)), int(m.group(2))
        if precision <= 38:
            return Column(name, pg_type, f"DECIMAL({precision},{scale})", col, f"DECIMAL({precision},{scale})")
        return Column(name, pg_type, "VARCHAR", f"{col}::text", "VARCHAR")
    if pg_type in _DIRECT:
        duck = _DIRECT[pg_type]
        return Column(name, pg_type, duck, col, duck)
    if _TEXTUAL.fullmatch(pg_type):
        return Column(name, pg_type, "VARCHAR", col, "VARCHAR")
    if pg_type in ("jsonb", "json"):
        return Column(name, pg_type, "JSON", f"{col}::jsonb::text", "VARCHAR")
    if pg_type.endswith("[]"):
        element = pg_type[:-2]
        duck = "VARCHAR[]" if element == "text" or _TEXTUAL.fullmatch(element) else "JSON"
        return Column(name, pg_type, duck, f"to_jsonb({col})::text", "VARCHAR")
    return Column(name, pg_type, "VARCHAR", f"{col}::text", "VARCHAR")


def read_columns(conn: psycopg.Connection[Any], table: str) -> list[Column]:
    stmt = render("snapshot/pg_columns", qualified_table=f"public.{table}")
    rows = conn.execute(stmt.text, stmt.params).fetchall()
    if not rows:
        raise DatabaseError(f"table public.{table} not found: is the HERA core installed in this database?")
    names = {r[0] for r in rows}
    for needed in ("id", "organization_id") if table != "core_organizations" else ("id",):
        if needed not in names:
            raise DatabaseError(f"public.{table} has no column {needed}: not a HERA table")
    return [map_type(name, pg_type) for name, pg_type in rows]


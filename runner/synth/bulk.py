"""Bulk-load mode for the fixture generator: make the server's per-row work set-based for the load transaction.

Measured on this machine: HERA's smart-code CHECK regexes cost ~26 µs (strict) and ~40 µs (loose) per row in
PostgreSQL's regex engine, and each foreign key costs a row lookup per insert. For a load larger than what the
tables hold, this module, inside the load transaction only:
- disables HERA's row triggers (the generator writes rows in the state they would leave them; `verify` checks);
- drops secondary indexes and primary/unique keys and rebuilds them once at the end;
- drops foreign keys and re-adds them at the end, which validates every row in one set-based pass;
- drops the smart-code pattern CHECKs and re-adds them NOT VALID (as real HERA has its loose ones) after checking
  every *distinct* loaded smart code against the very same expressions.
The migration itself never uses this: it writes through the constraints and triggers exactly as HERA does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from runner.errors import DataError

log = logging.getLogger(__name__)

SIX = ("core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
       "universal_transactions", "universal_transaction_lines")

# HERA's smart-code pattern constraints (hera-reference §1.7): strict ones, then the loose case-insensitive ones.
PATTERN_CHECKS = ("chk_core_entities_smart_code_pattern", "chk_ut_smart_code_pattern", "chk_utl_smart_code_pattern",
                  "core_entities_smart_code_ck", "core_dynamic_data_smart_code_ck", "core_relationships_smart_code_ck",
                  "ut_smart_code_ck", "utl_smart_code_ck")


@dataclass
class BulkReport:
    bulk: bool = False
    indexes: int = 0
    foreign_keys: int = 0
    keys: int = 0
    pattern_checks: int = 0
    dropped_checks: list[tuple[str, str, str]] = field(default_factory=list)  # table, name, definition


def _fetch(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return conn.execute(query, (list(SIX),)).fetchall()


@contextmanager
def bulk_mode(conn: psycopg.Connection[Any], expected_rows: int) -> Iterator[BulkReport]:
    report = BulkReport()
    for table in SIX:
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
    row = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class "
                       "WHERE oid = 'public.universal_transaction_lines'::regclass").fetchone()
    report.bulk = row is not None and row[0] < expected_rows
    indexes: list[tuple[str, str]] = []
    fks: list[tuple[str, str, str]] = []
    keys: list[tuple[str, str, str]] = []
    if report.bulk:
        indexes = [(r[0], r[1]) for r in _fetch(conn, """
            SELECT ic.relname, pg_get_indexdef(i.indexrelid)
              FROM pg_index i
              JOIN pg_class c ON c.oid = i.indrelid
              JOIN pg_class ic ON ic.oid = i.indexrelid
             WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)""")]
        fks = [(r[0], r[1], r[2]) for r in _fetch(conn, """
            SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
              FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             WHERE k.contype = 'f' AND c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s)""")]
        # Primary and unique keys of random uuids are cheaper to build once than to maintain per row; the
        # foreign keys that depend on them are already in `fks`.
        keys = [(r[0], r[1], r[2]) for r in _fetch(conn, """
            SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
              FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             WHERE k.contype IN ('p', 'u') AND c.relnamespace = 'public'::regnamespace
               AND c.relname = ANY(%s)""")]
        report.dropped_checks = [(r[0], r[1], r[2]) for r in conn.execute("""
            SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
              FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             WHERE k.contype = 'c' AND c.relnamespace = 'public'::regnamespace AND k.conname = ANY(%s)""",
            (list(PATTERN_CHECKS),)).fetchall()]
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        for table, name, _ in [*fks, *keys, *report.dropped_checks]:
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table),
                                                                             sql.Identifier(name)))
    yield report
    if report.bulk:
        for _, definition in indexes:
            conn.execute(definition)  # catalog text from pg_get_indexdef, not user input
        for table, name, definition in [*keys, *fks]:
            _add_constraint(conn, table, name, definition)
        for table, name, definition in report.dropped_checks:
            _add_constraint(conn, table, name, definition.removesuffix(" NOT VALID") + " NOT VALID")
        report.indexes, report.foreign_keys, report.pattern_checks = len(indexes), len(fks), len(report.dropped_checks)
        report.keys = len(keys)
    for table in SIX:
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table)))


def _add_constraint(conn: psycopg.Connection[Any], table: str, name: str, definition: str) -> None:
    head = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
    conn.execute(head + sql.SQL(definition))  # catalog text from pg_get_constraintdef


def verify_patterns(conn: psycopg.Connection[Any], report: BulkReport, org_ids: list[str]) -> None:
    """Evaluate each dropped pattern CHECK on the distinct smart codes the load wrote (few, so cheap)."""
    problems: list[str] = []
    for table, name, definition in report.dropped_checks:
        expr = definition.removesuffix(" NOT VALID")
        key = "id" if table == "core_organizations" else "organization_id"
        # MATERIALIZED keeps the planner from pushing the regex below the DISTINCT (once per row again).
        head = sql.SQL("WITH d AS MATERIALIZED (SELECT DISTINCT smart_code FROM {} WHERE {} = ANY(%s)) "
                       "SELECT d.smart_code FROM d WHERE NOT ").format(sql.Identifier(table), sql.Identifier(key))
        query = head + sql.SQL(expr.removeprefix("CHECK ").replace("%", "%%"))  # catalog text
        bad = [r[0] for r in conn.execute(query, (org_ids,)).fetchall()]
        if bad:
            problems.append(f"{table}.{name} rejects {', '.join(bad[:5])}")
    if problems:
        raise DataError("generated smart codes violate HERA's patterns: " + "; ".join(problems))

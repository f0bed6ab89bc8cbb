"""Bulk-load mode for the fixture generator: make the server's per-row work set-based for the load transaction.

Every trigger, foreign key and index costs per row. For a load larger than what the tables hold, this module,
inside the load transaction only:
- disables the six tables' *enabled* user triggers by name and re-enables exactly those, in their original mode
  (production has triggers that are disabled on purpose and must stay so; the generator writes rows in the state
  the triggers would leave them, and `generate._verify` checks);
- drops secondary indexes and rebuilds them once at the end;
- drops the six tables' foreign keys and re-adds them at the end, which validates every row in one set-based pass;
- drops primary and unique keys and rebuilds them, except the ones a foreign key from a table outside the six
  depends on (production's workflow tables reference `core_entities` and `core_organizations`): those stay;
- drops the smart-code pattern CHECKs that are NOT VALID (production's loose ones) and re-adds them NOT VALID
  after checking every *distinct* loaded smart code against the very same expressions. Validated CHECKs stay in
  place and are paid per row: re-adding them validated would rescan every table.
The catalog afterwards is what it was before (names, definitions, validity, enabled states); a test pins that.
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

# HERA's smart-code pattern constraints (docs/hera-reference.md §1.7): strict ones, then the loose
# case-insensitive ones.
PATTERN_CHECKS = ("chk_core_entities_smart_code_pattern", "chk_ut_smart_code_pattern", "chk_utl_smart_code_pattern",
                  "core_entities_smart_code_ck", "core_dynamic_data_smart_code_ck", "core_relationships_smart_code_ck",
                  "ut_smart_code_ck", "utl_smart_code_ck")

# ALTER TABLE ... ENABLE [REPLICA | ALWAYS] TRIGGER, by pg_trigger.tgenabled.
_ENABLE = {"O": "ENABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}


@dataclass
class BulkReport:
    bulk: bool = False
    indexes: int = 0
    foreign_keys: int = 0
    keys: int = 0
    kept_keys: list[str] = field(default_factory=list)  # keys other tables' foreign keys depend on
    pattern_checks: int = 0
    triggers: int = 0
    dropped_checks: list[tuple[str, str, str]] = field(default_factory=list)  # table, name, definition


def _fetch(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return conn.execute(query, (list(SIX),)).fetchall()


def _enabled_triggers(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    return [(r[0], r[1], r[2]) for r in _fetch(conn, """
        SELECT c.relname, t.tgname, t.tgenabled::text
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
           AND c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s)
         ORDER BY 1, 2""")]


def _alter(table: str, action: sql.Composable) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ").format(sql.Identifier(table)) + action


@contextmanager
def bulk_mode(conn: psycopg.Connection[Any], expected_rows: int) -> Iterator[BulkReport]:
    report = BulkReport()
    triggers = _enabled_triggers(conn)
    for table, name, _ in triggers:
        conn.execute(_alter(table, sql.SQL("DISABLE TRIGGER {}").format(sql.Identifier(name))))
    report.triggers = len(triggers)
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
        # Primary and unique keys of random uuids are cheaper to build once than to maintain per row, unless a
        # foreign key we do not drop (one of another table) needs them.
        candidates = conn.execute("""
            SELECT c.relname, k.conname, pg_get_constraintdef(k.oid),
                   EXISTS (SELECT 1 FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.conrelid
                            WHERE f.contype = 'f' AND f.conindid = k.conindid
                              AND NOT (fc.relnamespace = 'public'::regnamespace AND fc.relname = ANY(%(six)s)))
              FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             WHERE k.contype IN ('p', 'u') AND c.relnamespace = 'public'::regnamespace
               AND c.relname = ANY(%(six)s)""", {"six": list(SIX)}).fetchall()
        keys = [(r[0], r[1], r[2]) for r in candidates if not r[3]]
        report.kept_keys = sorted(r[1] for r in candidates if r[3])
        report.dropped_checks = [(r[0], r[1], r[2]) for r in conn.execute("""
            SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
              FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             WHERE k.contype = 'c' AND NOT k.convalidated AND c.relnamespace = 'public'::regnamespace
               AND k.conname = ANY(%s)""", (list(PATTERN_CHECKS),)).fetchall()]
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        for table, name, _ in [*fks, *keys, *report.dropped_checks]:
            conn.execute(_alter(table, sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(name))))
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
    for table, name, mode in triggers:
        conn.execute(_alter(table, sql.SQL(_ENABLE[mode] + " {}").format(sql.Identifier(name))))


def _add_constraint(conn: psycopg.Connection[Any], table: str, name: str, definition: str) -> None:
    head = sql.SQL("ADD CONSTRAINT {} ").format(sql.Identifier(name))
    conn.execute(_alter(table, head + sql.SQL(definition)))  # catalog text from pg_get_constraintdef


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

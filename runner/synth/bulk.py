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

from runner.compile import Statement, render
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
_ENABLE = {"O": "ENABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}


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


def _run(conn: psycopg.Connection[Any], stmt: Statement) -> psycopg.Cursor[Any]:
    return conn.execute(stmt.text, stmt.params or None)  # without parameters a % in catalog text stays as it is


def _rows(conn: psycopg.Connection[Any], name: str, **context: Any) -> list[tuple[Any, ...]]:
    return _run(conn, render(name, **context)).fetchall()


@contextmanager
def bulk_mode(conn: psycopg.Connection[Any], expected_rows: int) -> Iterator[BulkReport]:
    report = BulkReport()
    tables = list(SIX)
    triggers = [(r[0], r[1], r[2]) for r in _rows(conn, "synth/enabled_triggers", tables=tables)]
    for table, name, _ in triggers:
        _run(conn, render("synth/trigger", table=table, trigger=name, action="DISABLE"))
    report.triggers = len(triggers)
    planned = _rows(conn, "synth/planned_rows")
    report.bulk = bool(planned) and planned[0][0] < expected_rows
    indexes: list[tuple[str, str]] = []
    fks: list[tuple[str, str, str]] = []
    keys: list[tuple[str, str, str]] = []
    if report.bulk:
        indexes = [(r[0], r[1]) for r in _rows(conn, "synth/secondary_indexes", tables=tables)]
        fks = [(r[0], r[1], r[2]) for r in _rows(conn, "synth/foreign_keys", tables=tables)]
        # Primary and unique keys of random uuids are cheaper to build once than to maintain per row, unless a
        # foreign key we do not drop (one of another table) needs them.
        candidates = _rows(conn, "synth/keys", tables=tables)
        keys = [(r[0], r[1], r[2]) for r in candidates if not r[3]]
        report.kept_keys = sorted(r[1] for r in candidates if r[3])
        report.dropped_checks = [(r[0], r[1], r[2])
                                 for r in _rows(conn, "synth/loose_checks", names=list(PATTERN_CHECKS))]
        for name, _ in indexes:
            _run(conn, render("synth/drop_index", index=name))
        for table, name, _ in [*fks, *keys, *report.dropped_checks]:
            _run(conn, render("synth/drop_constraint", table=table, constraint=name))
    yield report
    if report.bulk:
        for _, definition in indexes:
            _run(conn, render("synth/create_index", definition=definition))
        for table, name, definition in [*keys, *fks]:
            _run(conn, render("synth/add_constraint", table=table, constraint=name, definition=definition))
        for table, name, definition in report.dropped_checks:
            _run(conn, render("synth/add_constraint", table=table, constraint=name,
                              definition=definition.removesuffix(" NOT VALID") + " NOT VALID"))
        report.indexes, report.foreign_keys, report.pattern_checks = len(indexes), len(fks), len(report.dropped_checks)
        report.keys = len(keys)
    for table, name, mode in triggers:
        _run(conn, render("synth/trigger", table=table, trigger=name, action=_ENABLE[mode]))


def verify_patterns(conn: psycopg.Connection[Any], report: BulkReport, org_ids: list[str]) -> None:
    """Evaluate each dropped pattern CHECK on the distinct smart codes the load wrote (few, so cheap)."""
    problems: list[str] = []
    for table, name, definition in report.dropped_checks:
        expression = definition.removesuffix(" NOT VALID").removeprefix("CHECK ")  # catalog text
        bad = [r[0] for r in _rows(conn, "synth/pattern_violations", table=table, expression=expression,
                                   org_ids=org_ids)]
        if bad:
            problems.append(f"{table}.{name} rejects {', '.join(bad[:5])}")
    if problems:
        raise DataError("generated smart codes violate HERA's patterns: " + "; ".join(problems))

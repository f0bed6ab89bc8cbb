"""`compile --out` shows every statement `run`, `validate` and `rollback` send to PostgreSQL (issue 14).

A real small migration with the Phase 7 spec (two custom checks; posting rules, fiscal periods and organisation
config as entity migrations) runs, is validated again and rolled back while every query text handed to psycopg is
recorded. Each must be a statement `compile` writes for that spec (runner.review.compile_spec), compared up to
whitespace: values are bound parameters, so the text does not depend on them — the organisation, ids and run id
`compile` shows are samples, the run binds its own into the same text.

What is recorded:
- the harness's statements: every query given to a cursor (Cursor.execute / executemany / stream / copy,
  ServerCursor.execute / executemany, the raw cursors included; Connection.execute goes through Cursor.execute);
- psycopg's own commands (Connection._exec_command, a private method: if psycopg renames it, monkeypatch fails
  loudly): transaction control and the server-side cursor protocol, which psycopg writes itself. Each must be one
  of PSYCOPG_COMMANDS below; no statement of the harness may travel that way.

Out of scope, so not recorded:
- the DuckDB side: the snapshots read PostgreSQL through DuckDB's postgres_scanner over its own libpq connection
  (the queries are snapshot/pg_rows and snapshot/pg_derived, with the org ids written in by psycopg's mogrify;
  `compile` shows them with sample columns);
- the fixtures: CREATE DATABASE, the core's installation and the generator, all before recording starts (the db
  layer sends nothing of its own during the three verbs: its connection settings travel in the startup packet).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from runner import operate, pipeline, review
from runner.compile import Statement
from runner.spec import load_spec
from runner.synth.generate import generate

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
RUN = "cov-1"

CURSOR_METHODS: list[tuple[type[Any], str]] = [
    (psycopg.Cursor, "execute"), (psycopg.Cursor, "executemany"), (psycopg.Cursor, "stream"),
    (psycopg.Cursor, "copy"), (psycopg.ServerCursor, "execute"), (psycopg.ServerCursor, "executemany")]

# The exemptions: commands psycopg itself writes (never the harness), each with why it is not in `compile`.
PSYCOPG_COMMANDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"BEGIN( ISOLATION LEVEL (SERIALIZABLE|REPEATABLE READ|READ COMMITTED|READ UNCOMMITTED))?"
                r"( READ (ONLY|WRITE))?( (NOT )?DEFERRABLE)?|COMMIT|ROLLBACK"),
     "transaction control: psycopg's commit()/rollback() and the BEGIN it writes from the connection's "
     "isolation_level/read_only (the validation's own first statement is session/begin, in compile)"),
    (re.compile(r'(SAVEPOINT|RELEASE( SAVEPOINT)?|ROLLBACK TO( SAVEPOINT)?) "?_pg3_\d+"?'),
     "conn.transaction() nested in an open transaction (each check of a validation runs in a savepoint)"),
    (re.compile(r'(FETCH FORWARD (\d+|ALL) FROM|CLOSE) "[^"]+"'
                r"|SELECT 1 FROM pg_catalog\.pg_cursors WHERE name = '[^']+'"),
     "the server-side cursor protocol of a named cursor, whose query is recorded at ServerCursor.execute"),
    (re.compile(r'DEALLOCATE (ALL|"?_pg3_\d+"?)'),
     "psycopg's prepared-statement cache (a query run often is prepared under its recorded text) being dropped"),
]

# Statements whose text legitimately depends on the database: the whole-row restore of dynamic fields names every
# column of core_dynamic_data as this database has it (entities/field_columns reads the catalog at rollback time:
# HERA's production table has other columns than our stand-in's). `compile`, without a database, renders them with
# sample columns, so they are compared with the list of quoted column names masked.
CATALOG_COLUMNS = {"entities/restore_fields", "entities/reinsert_fields"}
COLUMN_LIST = re.compile(r'"[^"]+"(?:\s*,\s*"[^"]+")*')

# What the run must have exercised for the proof to mean something: the custom checks, entity migrations of all
# three families and their rollback, both transaction tiers and their rollback, a built-in check.
EXERCISED = {"custom/repost-keeps-currency", "custom/repost-keeps-date", "entities/lock_family",
             "entities/mark_entities", "entities/update_fields", "entities/update_settings",
             "entities/keep_settings_preimage", "entities/restore_entities", "entities/restore_fields",
             "entities/reinsert_fields", "entities/restore_settings", "run/reverse_repost", "run/alias",
             "rollback/restore_originals", "rollback/delete_headers", "validate/gl_balanced"}


@dataclass(frozen=True)
class Sent:
    via: str  # "Cursor.execute", ..., or "psycopg" for the connection's own commands
    text: str
    params: Any


def _text(query: Any, conn: psycopg.Connection[Any]) -> str:
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    return query.decode() if isinstance(query, bytes) else str(query)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _masked(text: str) -> str:
    return COLUMN_LIST.sub("<columns>", _norm(text))


@contextmanager
def recording() -> Iterator[list[Sent]]:
    """While open, every text psycopg sends is appended to the list it yields (class-level patches, undone on exit)."""
    sent: list[Sent] = []  # list.append is atomic: the engine's worker threads record into it too

    with pytest.MonkeyPatch.context() as mp:
        for cls, name in CURSOR_METHODS:
            mp.setattr(cls, name, _recording_cursor(cls, name, getattr(cls, name), sent))
        original = psycopg.Connection._exec_command  # where psycopg sends its own commands

        def command(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(Sent("psycopg", _text(query, self), None))
            return original(self, query, *args, **kwargs)  # a generator: psycopg drives it with `yield from`

        mp.setattr(psycopg.Connection, "_exec_command", command)
        yield sent


def _recording_cursor(cls: type[Any], name: str, original: Callable[..., Any], sent: list[Sent]) -> Callable[..., Any]:
    def method(self: Any, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        if name == "executemany":  # one statement, many parameter sets: the first one stands for all
            params = list(params)
        first = (params[0] if params else None) if name == "executemany" else params
        sent.append(Sent(f"{cls.__name__}.{name}", _text(query, self.connection), first))
        return original(self, query, params, *args, **kwargs)

    return method


def _template(sent: Sent, exact: dict[str, Statement], masked: dict[str, Statement]) -> Statement | None:
    return exact.get(_norm(sent.text)) or masked.get(_masked(sent.text))


def _same_binding(sent: Sent, stmt: Statement) -> bool:
    """The same parameters by name (%(pN)s) or by count ($n of a custom check), so every value is bound."""
    if isinstance(sent.params, dict):
        return set(sent.params) == set(stmt.params)
    return len(sent.params or ()) == len(stmt.params)


def test_compile_shows_every_statement_run_validate_and_rollback_send(db_dsn: str, tmp_path: Path) -> None:
    spec = load_spec(PHASE7)
    assert spec.validations.custom and spec.entities.organization_config is not None
    generate(db_dsn, size="small", seed=61)
    out = tmp_path / RUN
    console = pipeline.make_console()

    with recording() as sent:
        ran = pipeline.run(db_dsn, PHASE7, pipeline.RunOptions(run_id=RUN, report_dir=out, now=True,
                                                               live_seconds=None), console, progress=False)
        validated = pipeline.validate(db_dsn, RUN, out, console)
        rolled_back = operate.rollback(db_dsn, RUN, (), console, progress=False, report_dir=out)
    assert (ran.exit_code, validated.exit_code, rolled_back) == (0, 0, 0)

    compiled = review.compile_spec(spec)
    exact = {_norm(s.text): s for s in compiled if s.dialect == "postgres"}
    masked = {_masked(s.text): s for s in compiled if s.name in CATALOG_COLUMNS}
    missing: dict[str, str] = {}
    unbound: set[str] = set()
    matched: set[str] = set()
    for s in sent:
        if s.via == "psycopg":
            if not any(p.fullmatch(_norm(s.text)) for p, _ in PSYCOPG_COMMANDS):
                missing.setdefault(_norm(s.text)[:300], s.via)
            continue
        stmt = _template(s, exact, masked)
        if stmt is None:
            missing.setdefault(_norm(s.text)[:300], s.via)
        elif not _same_binding(s, stmt):
            unbound.add(stmt.name)
        else:
            matched.add(stmt.name)
    assert not missing, "sent to PostgreSQL but not in `compile --out`:\n" + "\n".join(
        f"[{via}] {text}" for text, via in missing.items())
    assert not unbound, f"bound with other parameters than `compile --out` shows: {sorted(unbound)}"
    assert matched >= EXERCISED, f"the run did not exercise {sorted(EXERCISED - matched)}"

"""Install the HERA-compatible core (fixtures/sql/*.sql) into a database, idempotently, and never over a HERA
database that is not ours.

Our core marks itself with a comment on `universal_transactions` (CORE_MARKER + version, written by
fixtures/sql/10_tables.sql). A database whose Sacred Six exist without that marker is a real (or another) HERA:
`install` refuses to touch it (exit 2), because our CREATE OR REPLACE FUNCTIONs would replace production's
RPCs and triggers with our stand-ins. Everything else (fixtures, plan, run, validate, rollback) works on
whatever core is there.
"""

from __future__ import annotations

import logging
import re
import time
from enum import Enum
from typing import Any

import psycopg

from runner.db.connect import connect
from runner.errors import DatabaseError, UsageError
from runner.resources import sql_files

log = logging.getLogger(__name__)

# Serialises concurrent installs into one database (any constant works; it only has to be shared).
_INSTALL_LOCK = 0x4845_5241  # "HERA"
CORE_MARKER = "hera-migration-harness core"
CORE_VERSION = 2
SIX = ("core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
       "universal_transactions", "universal_transaction_lines")


class CoreKind(Enum):
    NONE = "none"  # none of the six tables: a fresh database
    OURS = "ours"  # our core, this version
    OURS_OUTDATED = "ours-outdated"  # our core from an earlier version of the harness
    FOREIGN = "foreign"  # HERA tables we did not create: production's schema (or someone else's copy)


class ForeignCoreError(UsageError):
    """The database holds a HERA core that is not ours (or an outdated one of ours); nothing was changed."""


def core_kind(conn: psycopg.Connection[Any]) -> CoreKind:
    present = conn.execute(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' "
        "AND relname = ANY(%s)", (list(SIX),)).fetchone()
    if not present or present[0] == 0:
        return CoreKind.NONE
    row = conn.execute("SELECT obj_description(to_regclass('public.universal_transactions'), 'pg_class'), "
                       "to_regprocedure('public.hera_smart_code_is_strict(text)') IS NOT NULL").fetchone()
    comment, legacy = (row[0], row[1]) if row else (None, False)
    match = re.match(re.escape(CORE_MARKER) + r" (\d+)", comment or "")
    if match:
        return CoreKind.OURS if int(match.group(1)) == CORE_VERSION else CoreKind.OURS_OUTDATED
    # Cores of the harness before the marker existed are recognisable by a helper only they defined.
    return CoreKind.OURS_OUTDATED if legacy else CoreKind.FOREIGN


def refuse_unless_ours(kind: CoreKind) -> None:
    if kind is CoreKind.FOREIGN:
        raise ForeignCoreError(
            "this database already holds a HERA core that the harness did not install (no "
            f"'{CORE_MARKER}' marker on universal_transactions): refusing to install ours over it, which would "
            "replace its functions and triggers",
            hint="nothing was changed. Every other command (fixtures, plan, run, validate, rollback) works on "
                 "this database as it is; use a fresh database for our stand-in core")
    if kind is CoreKind.OURS_OUTDATED:
        raise ForeignCoreError(
            f"this database holds the harness's HERA core from an earlier version (not '{CORE_MARKER} "
            f"{CORE_VERSION}'); it cannot be upgraded in place",
            hint="nothing was changed; create a fresh database and run 'hera-migrate db schema' there")


def install(dsn: str) -> list[str]:
    """Run every core SQL file in order inside one transaction; returns the files applied.

    Refuses (ForeignCoreError, exit 2, nothing changed) when the database holds a HERA core that is not ours.
    """
    applied: list[str] = []
    with connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK,))
        refuse_unless_ours(core_kind(conn))
        for path in sql_files():
            t0 = time.monotonic()
            try:
                conn.execute(path.read_text(encoding="utf-8"))  # trusted file from fixtures/, not spec input
            except psycopg.Error as exc:
                raise DatabaseError(f"installing {path.name} failed: {str(exc).strip()}") from exc
            log.info("applied %s in %.2fs", path.name, time.monotonic() - t0)
            applied.append(path.name)
    return applied


def ensure_core(dsn: str) -> CoreKind:
    """What `fixtures` does before generating: install our core into a database without one, use any HERA core
    that is there (ours or production's) as it is. Returns what was found."""
    with connect(dsn) as conn:
        kind = core_kind(conn)
    if kind is CoreKind.NONE or kind is CoreKind.OURS:
        install(dsn)  # idempotent for ours
    elif kind is CoreKind.FOREIGN:
        log.info("a HERA core the harness did not install is present; generating into it as it is")
    else:
        refuse_unless_ours(kind)
    return kind


def installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('public.universal_transaction_lines') IS NOT NULL").fetchone()
    return bool(row and row[0])

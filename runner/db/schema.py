"""Install the HERA-compatible core (fixtures/sql/*.sql) into a database, idempotently."""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from runner.db.connect import connect
from runner.errors import DatabaseError
from runner.resources import sql_files

log = logging.getLogger(__name__)

# Serialises concurrent installs into one database (any constant works; it only has to be shared).
_INSTALL_LOCK = 0x4845_5241  # "HERA"


def install(dsn: str) -> list[str]:
    """Run every core SQL file in order inside one transaction; returns the files applied."""
    applied: list[str] = []
    with connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK,))
        for path in sql_files():
            t0 = time.monotonic()
            try:
                conn.execute(path.read_text(encoding="utf-8"))  # trusted file from fixtures/, not spec input
            except psycopg.Error as exc:
                raise DatabaseError(f"installing {path.name} failed: {str(exc).strip()}") from exc
            log.info("applied %s in %.2fs", path.name, time.monotonic() - t0)
            applied.append(path.name)
    return applied


def installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('public.universal_transaction_lines') IS NOT NULL").fetchone()
    return bool(row and row[0])

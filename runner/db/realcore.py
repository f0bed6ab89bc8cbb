"""Load HERA's real production schema (a `pg_dump` such as heraerp/heraerp-prd's `dump/schema.sql`) into a database,
so the harness can be tested and measured against the real thing instead of our stand-in core.

The file is never part of this project: its path comes at run time (`HERA_REAL_SCHEMA`). What it needs to load
into a vanilla PostgreSQL is what docs/hera-reference.md §6 lists — the Supabase roles, the `auth` schema with
`auth.users`, `auth.uid()`, `auth.role()` (and `auth.jwt()`), `pg_trgm` in `public` — and our own
fixtures/sql/00_prereqs.sql provides exactly that, so it doubles as the stub file.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from runner.db.connect import connect
from runner.errors import DatabaseError, UsageError
from runner.resources import data_dir

ENV = "HERA_REAL_SCHEMA"
STUBS = "00_prereqs.sql"


@dataclass(frozen=True)
class RealSchema:
    path: Path
    sha256: str
    size: int


def configured() -> RealSchema | None:
    """The schema file named by HERA_REAL_SCHEMA, or None when the variable is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    return describe(Path(value))


def describe(path: Path) -> RealSchema:
    if not path.is_file():
        raise UsageError(f"{ENV}={path}: no such file",
                         hint="point it at HERA's schema dump, e.g. dump/schema.sql of heraerp/heraerp-prd")
    data = path.read_bytes()
    return RealSchema(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def stubs_sql() -> str:
    return (data_dir("fixtures") / "sql" / STUBS).read_text(encoding="utf-8")


def load(dsn: str, schema: RealSchema) -> float:
    """Stubs, then the dump, into an empty database (each in its own transaction); returns the seconds taken.

    The dump changes session settings (search_path ''), so it runs on a connection of its own.
    """
    t0 = time.monotonic()
    text = schema.path.read_text(encoding="utf-8")
    for name, body in ((STUBS, stubs_sql()), (schema.path.name, text)):
        try:
            with connect(dsn) as conn:
                conn.execute(body)  # trusted files: our stubs and the operator's own HERA dump
                conn.commit()
        except psycopg.Error as exc:
            raise DatabaseError(f"loading {name} failed: {str(exc).strip()[:2000]}") from exc
    return time.monotonic() - t0

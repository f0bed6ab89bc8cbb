"""Row-for-row comparison of two snapshot labels: the proof that a rollback gave back the pre-run database.

Every column is compared (jsonb as PostgreSQL's canonical jsonb text, money as exact DECIMAL). The run journal —
the MIGRATION_RUN entities and their dynamic-data rows — is left out on purpose: rollback keeps it as the audit
trail of what was done and undone (runner/sql/snapshot/differing_rows).
"""

from __future__ import annotations

from pathlib import Path

from runner.compile import Statement, render_duck
from runner.snapshot.duck import LABELS, TABLES, connect


def differing_statement(table: str, a: str, b: str, exclude_created_by: str | None = None) -> Statement:
    if a not in LABELS or b not in LABELS:  # labels become table names: only the known ones
        raise ValueError(f"unknown snapshot label {a!r} or {b!r}")
    return render_duck("snapshot/differing_rows", table=table, a=a, b=b, exclude_created_by=exclude_created_by)


def differing_rows(duckdb_path: Path, a: str = "before", b: str = "rollback", *,
                   exclude_created_by: str | None = None) -> dict[str, int]:
    """Per table: rows of `a` missing from `b` plus rows of `b` missing from `a` (multiset difference); rows
    `exclude_created_by` created are left out (a rehearsal under load: the v1 load's own rows)."""
    statements = {table: differing_statement(table, a, b, exclude_created_by) for table in TABLES}
    out: dict[str, int] = {}
    with connect(duckdb_path, read_only=True) as con:
        for table, stmt in statements.items():
            row = con.execute(stmt.text, stmt.params or None).fetchone()
            out[table] = int(row[0]) if row else 0
    return out

"""Row-for-row comparison of two snapshot labels: the proof that a rollback gave back the pre-run database.

Every column is compared (jsonb as PostgreSQL's canonical jsonb text, money as exact DECIMAL). The run journal —
the MIGRATION_RUN entities and their dynamic-data rows — is left out on purpose: rollback keeps it as the audit
trail of what was done and undone.
"""

from __future__ import annotations

from pathlib import Path

from runner.contract import JOURNAL_ENTITY_TYPE
from runner.snapshot.duck import LABELS, TABLES, connect


def rows_without_journal(label: str, table: str) -> str:
    """A SELECT of `table` at `label` without the run journal (kept by rollback as the audit trail)."""
    src = f"{label}_{table}"
    if table == "core_entities":
        return f"SELECT * FROM {src} WHERE entity_type <> '{JOURNAL_ENTITY_TYPE}'"  # noqa: S608 - fixed names
    if table == "core_dynamic_data":
        return (f"SELECT * FROM {src} WHERE entity_id NOT IN (SELECT id FROM {label}_core_entities "  # noqa: S608
                f"WHERE entity_type = '{JOURNAL_ENTITY_TYPE}')")
    return f"SELECT * FROM {src}"  # noqa: S608


def differing_rows(duckdb_path: Path, a: str = "before", b: str = "rollback") -> dict[str, int]:
    """Per table: rows of `a` missing from `b` plus rows of `b` missing from `a` (multiset difference)."""
    if a not in LABELS or b not in LABELS:  # labels become table names: only the known ones
        raise ValueError(f"unknown snapshot label {a!r} or {b!r}")
    out: dict[str, int] = {}
    with connect(duckdb_path, read_only=True) as con:
        for table in TABLES:
            left, right = rows_without_journal(a, table), rows_without_journal(b, table)
            query = (f"SELECT (SELECT count(*) FROM ({left} EXCEPT ALL {right})) + "  # noqa: S608 - fixed names
                     f"(SELECT count(*) FROM ({right} EXCEPT ALL {left}))")
            row = con.execute(query).fetchone()
            out[table] = int(row[0]) if row else 0
    return out

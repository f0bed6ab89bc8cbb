"""What a diff stored (its diff_rows table), in one order: tests compare two classifications of the same snapshots
row for row (bucketed against one statement per table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb


def diff_rows(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT table_name, id, organization_id, transaction_id, kind, changed_columns, class, "
                           "reason FROM diff_rows ORDER BY ALL").fetchall()
    finally:
        con.close()

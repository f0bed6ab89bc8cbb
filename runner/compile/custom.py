"""Custom checks' SQL (a spec value, already proven read-only by runner.spec.sqlguard) as server SQL.

A custom check names its two parameters `:run_id` and `:organization_id`; they become PostgreSQL's `$n`
placeholders (run through psycopg's raw cursors) and stay bound values.
"""

from __future__ import annotations

from typing import Any

from runner.spec.sqlguard import tokenize


def custom_text(sql: str) -> str:
    """The custom check's SQL up to its first ';' (a trailing ';' would break DECLARE ... CURSOR FOR)."""
    tokens, _ = tokenize(sql)
    semi = next((t for t in tokens if t.kind == "semi"), None)
    return sql if semi is None else sql[:semi.start]


def positional(sql: str, available: dict[str, Any]) -> tuple[str, list[Any]]:
    """`:name` parameters as `$n`, padded with spaces to the same width, so a server error position in the
    returned text is the same offset in the spec's SQL."""
    tokens, problems = tokenize(sql)
    if problems:
        raise ValueError(problems[0].message)
    order: dict[str, int] = {}
    out: list[str] = []
    pos = 0
    for t in tokens:
        if t.kind == "param":
            n = order.setdefault(t.text, len(order) + 1)
            marker = f"${n}"
            out += [sql[pos:t.start], marker.ljust(t.end - t.start)]
            pos = t.end
    out.append(sql[pos:])
    return "".join(out), [available[name] for name in order]

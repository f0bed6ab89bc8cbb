"""Custom checks' SQL (a spec value, already proven read-only by runner.spec.sqlguard) as server SQL.

A custom check names its two parameters `:run_id` and `:organization_id`; they become PostgreSQL's `$n`
placeholders (run through psycopg's raw cursors) and stay bound values. The validation executes the statement
`custom_statement` returns and `compile --out` shows the same one, so the two cannot differ.
"""

from __future__ import annotations

from typing import Any

from runner.compile.templates import Statement
from runner.spec.model import CheckDef
from runner.spec.sqlguard import tokenize


def custom_text(sql: str) -> str:
    """The custom check's SQL up to its first ';' (a trailing ';' would break DECLARE ... CURSOR FOR)."""
    tokens, _ = tokenize(sql)
    semi = next((t for t in tokens if t.kind == "semi"), None)
    return sql if semi is None else sql[:semi.start]


def positional(sql: str, available: dict[str, Any]) -> tuple[str, list[Any]]:
    """`:name` parameters as `$n`, padded with spaces to the same width, so a server error position in the
    returned text is the same offset in the spec's SQL."""
    text, names = _numbered(sql)
    return text, [available[name] for name in names]


def _numbered(sql: str) -> tuple[str, list[str]]:
    """The text with `:name` as `$n` (same width), and the names in `$n` order."""
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
    return "".join(out), list(order)


def custom_statement(check: CheckDef, run_id: str, organization_id: Any) -> Statement:
    """Custom check `check` as the validation executes it: its SQL (custom_text) with `:name`s as `$n`, and their
    values as parameters named `$n (:name)` in `$n` order (the raw cursor takes them positionally:
    `list(params.values())`).

    Raises ValueError (the SQL does not tokenize) or KeyError (a parameter other than :run_id/:organization_id).
    """
    available = {"run_id": run_id, "organization_id": organization_id}
    text, names = _numbered(custom_text(check.sql or ""))
    return Statement(name=f"custom/{check.id}", text=text,
                     params={f"${n} (:{name})": available[name] for n, name in enumerate(names, start=1)})

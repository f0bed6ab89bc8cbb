"""One Jinja environment renders `runner/sql/<family>/<name>.sql.j2`, for PostgreSQL and for DuckDB.

Rules the templates live by (and tests enforce):
- every value reaches the database as a bound parameter: templates call `bind(value)`, which records the value
  and writes a placeholder (`%(pN)s` for psycopg, `$pN` for DuckDB), never the value;
- every identifier goes through the `ident` filter (psycopg.sql.Identifier quoting; DuckDB shares the syntax);
- `lit` writes a harness constant (a contract key, a reason text) as a string literal, for the few places a
  parameter cannot go (DuckDB macros and views); spec values never take that road;
- StrictUndefined: a template that names something the compiler did not pass fails loudly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, Undefined
from psycopg import sql

from runner import contract

_ENV = Environment(loader=PackageLoader("runner", "sql"), undefined=StrictUndefined, autoescape=False,
                   keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["ident"] = lambda *parts: sql.Identifier(*parts).as_string(None)
_ENV.filters["lit"] = lambda value: "'" + str(value).replace("'", "''") + "'"
_ENV.globals["contract"] = contract

Dialect = Literal["postgres", "duckdb"]
_PLACEHOLDER: dict[Dialect, str] = {"postgres": "%({})s", "duckdb": "${}"}


@dataclass(frozen=True)
class Statement:
    """One rendered statement: SQL text with named placeholders, and the values bound to them."""

    name: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)
    dialect: Dialect = "postgres"

    def review_text(self) -> str:
        """SQL followed by its parameters, as `compile --out` writes it for review."""
        where = " (DuckDB)" if self.dialect == "duckdb" else ""
        lines = [f"-- {self.name}{where}", self.text.rstrip(), ""]
        if self.params:
            lines.append("-- parameters:")
            lines += [f"--   {k} = {json.dumps(v, default=_json_default)}" for k, v in self.params.items()]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Param:
    """A named placeholder for a statement rendered once and run many times (the load's v1 calls): `bind(Param(
    "org"))` writes `%(org)s` and binds nothing; the caller supplies `org` with each execution."""

    name: str


def placeholders(*names: str) -> dict[str, Param]:
    """`render(name, **placeholders("org", "txn"))`: every value of a run-many statement as a named placeholder."""
    return {n: Param(n) for n in names}


class _Binder:
    def __init__(self, placeholder: str) -> None:
        self.params: dict[str, Any] = {}
        self.placeholder = placeholder

    def __call__(self, value: Any) -> str:
        if isinstance(value, Undefined):  # StrictUndefined does not trip when merely passed to a function
            value._fail_with_undefined_error()
        if isinstance(value, Param):
            return self.placeholder.format(value.name)
        name = f"p{len(self.params) + 1}"
        self.params[name] = list(value) if isinstance(value, tuple) else value
        return self.placeholder.format(name)


def render(name: str, **context: Any) -> Statement:
    """Render template `name` (e.g. "plan/candidates") with `context`; values must go through `bind`."""
    return _render(name, "postgres", context)


def render_duck(name: str, **context: Any) -> Statement:
    """Render a DuckDB template (runner/sql/diff, most of runner/sql/snapshot): `$pN` placeholders."""
    return _render(name, "duckdb", context)


def _render(name: str, dialect: Dialect, context: dict[str, Any]) -> Statement:
    binder = _Binder(_PLACEHOLDER[dialect])
    text = _ENV.get_template(f"{name}.sql.j2").render(bind=binder, **context)
    return Statement(name=name, text=text, params=binder.params, dialect=dialect)


def template_names() -> list[str]:
    root = Path(__file__).parent.parent / "sql"
    return sorted(str(p.relative_to(root)).removesuffix(".sql.j2") for p in root.rglob("*.sql.j2"))


def _json_default(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)

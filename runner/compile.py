"""Spec → SQL. One Jinja environment renders `runner/sql/<family>/<name>.sql.j2`.

Rules the templates live by (and tests enforce):
- every value reaches the database as a bound parameter: templates call `bind(value)`, which records the value
  and writes a `%(pN)s` placeholder, never the value;
- every identifier goes through the `ident` filter (psycopg.sql.Identifier quoting);
- StrictUndefined: a template that names something the compiler did not pass fails loudly.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Undefined
from psycopg import sql

from runner.spec.model import Spec

_ENV = Environment(loader=PackageLoader("runner", "sql"), undefined=StrictUndefined, autoescape=False,
                   keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["ident"] = lambda *parts: sql.Identifier(*parts).as_string(None)


@dataclass(frozen=True)
class Statement:
    """One rendered statement: SQL text with named placeholders, and the values bound to them."""

    name: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)

    def review_text(self) -> str:
        """SQL followed by its parameters, as `compile --out` writes it for review."""
        lines = [f"-- {self.name}", self.text.rstrip(), ""]
        if self.params:
            lines.append("-- parameters:")
            lines += [f"--   {k} = {json.dumps(v, default=_json_default)}" for k, v in self.params.items()]
        return "\n".join(lines) + "\n"


class _Binder:
    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        if isinstance(value, Undefined):  # StrictUndefined does not trip when merely passed to a function
            value._fail_with_undefined_error()
        name = f"p{len(self.params) + 1}"
        self.params[name] = list(value) if isinstance(value, tuple) else value
        return f"%({name})s"


def render(name: str, **context: Any) -> Statement:
    """Render template `name` (e.g. "plan/candidates") with `context`; values must go through `bind`."""
    binder = _Binder()
    text = _ENV.get_template(f"{name}.sql.j2").render(bind=binder, **context)
    return Statement(name=name, text=text, params=binder.params)


def template_names() -> list[str]:
    root = Path(__file__).parent / "sql"
    return sorted(str(p.relative_to(root)).removesuffix(".sql.j2") for p in root.rglob("*.sql.j2"))


def _json_default(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def compile_spec(spec: Spec) -> list[Statement]:
    """Every statement the spec compiles to, for review: tier-1 plan, the engine's run/rollback families, then the
    validation's checks.

    Without a database the organisations are the spec's `include` list and only exact (`from`) mappings are
    resolved; `plan` and `run` resolve wildcard and regex mappings against the codes really present. The SQL text
    never depends on those values: they are bound parameters.
    """
    from runner import plan

    org_ids = list(spec.scope.organizations.include)
    exact = [m.from_ for m in spec.mappings if m.from_ is not None]
    statements = plan.statements(spec, org_ids, exact)
    for package in ("runner.engine", "runner.validate"):
        try:
            module = importlib.import_module(package)
        except ImportError:  # a package still being built is optional for review
            continue
        review = getattr(module, "review_statements", None)
        if review is not None:
            statements += review(spec)
    return statements


def write_review(statements: list[Statement], out: Path, spec: Spec) -> list[Path]:
    """One `NN-family-name.sql` per statement (SQL, then its parameters as comments) plus `manifest.json`."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    manifest = []
    for i, stmt in enumerate(statements, start=1):
        path = out / f"{i:02d}-{stmt.name.replace('/', '-')}.sql"
        path.write_text(stmt.review_text(), encoding="utf-8")
        written.append(path)
        manifest.append({"file": path.name, "template": stmt.name, "parameters": sorted(stmt.params)})
    (out / "manifest.json").write_text(json.dumps(
        {"spec": {"name": spec.name, "version": spec.version, "path": str(spec.path) if spec.path else None,
                  "sha256": spec.sha256},
         "statements": manifest}, indent=2) + "\n", encoding="utf-8")
    return written

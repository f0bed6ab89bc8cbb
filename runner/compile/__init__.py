"""Spec → SQL, and nothing else turns a spec into SQL parameters.

- `templates`: the one Jinja environment for `runner/sql/<family>/<name>.sql.j2` and `render` (values bound,
  identifiers quoted);
- `params`: the spec as template parameters — scope (date window, statuses, skip switches), mapping resolution,
  line overrides, the run guard, entity families, repost codes — used alike by plan, engine and validate, so they
  cannot disagree about which rows a spec selects;
- `scope`: the organisations in scope of a database;
- `jsonx`: exact JSON (Decimal numbers, never a float) for everything written into or read back from HERA.

Import direction (ARCHITECTURE.md): spec → compile → plan | engine | snapshot | validate → report → pipeline → cli.
"""

from __future__ import annotations

from runner.compile.templates import Param, Statement, placeholders, render, render_duck, template_names

__all__ = ["Param", "Statement", "placeholders", "render", "render_duck", "template_names"]

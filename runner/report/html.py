"""index.html: the validation report, rendered ONLY from results.json (no database, no network, no assets).

`render_report(results_json)` is `hera-migrate report RUN_ID`: it re-renders index.html beside results.json from
that file alone, so the page an auditor reads always agrees with the source of truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_env = Environment(loader=PackageLoader("runner.report", "templates"), undefined=StrictUndefined,
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)

VERDICTS = {"passed": "PASSED", "warning": "PASSED WITH WARNINGS", "failed": "FAILED"}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_env.filters["fmt"] = _fmt


def render_results_html(results: dict[str, Any]) -> str:
    checks = results["checks"]
    levels = [(level, [c for c in checks if c["level"] == level]) for level in ("record", "aggregate", "system")]
    return _env.get_template("results.html.j2").render(
        r=results, verdict=VERDICTS.get(results["status"], results["status"].upper()), levels=levels,
        failing=[c for c in checks if c["status"] != "passed"],
        tables=sorted({t for cls in ("expected", "unexpected", "concurrent") for t in results["diff"][cls]}))


def render_report(results_json: Path) -> Path:
    """Re-render index.html next to `results_json` from that file alone; returns the HTML path."""
    results = json.loads(results_json.read_text(encoding="utf-8"))
    html = results_json.with_name("index.html")
    html.write_text(render_results_html(results), encoding="utf-8")
    return html

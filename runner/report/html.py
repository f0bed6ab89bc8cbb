"""index.html: the validation report, rendered ONLY from results.json (no database, no network, no assets).

`render_report(results_json)` is `hera-migrate report RUN_ID`: it re-renders index.html beside results.json from
that file alone, so the page an auditor reads always agrees with the source of truth. One self-contained file:
inline CSS and inline SVG charts (runner.report.charts), no script, nothing fetched.

`render_live_html(interim)` is the page `run` shows while it works (runner.report.live): an interim results dict of
the same shape plus a `live` block; it reloads itself until the validation's page replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from runner.report import charts
from runner.report.charts import fmt_seconds
from runner.report.files import write_atomic

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


def _seconds(value: Any) -> str:
    return "–" if value is None else fmt_seconds(float(value))


_env.filters["fmt"] = _fmt
_env.filters["seconds"] = _seconds
_env.globals["charts"] = charts


def render_results_html(results: dict[str, Any]) -> str:
    checks = results["checks"]
    levels = [(level, [c for c in checks if c["level"] == level]) for level in ("record", "aggregate", "system")]
    return _env.get_template("results.html.j2").render(
        r=results, verdict=VERDICTS.get(results["status"], results["status"].upper()), levels=levels,
        failing=[c for c in checks if c["status"] != "passed"],
        tables=sorted({t for cls in ("expected", "unexpected", "concurrent") for t in results["diff"][cls]}))


def render_live_html(interim: dict[str, Any]) -> str:
    """The live page of a run in progress (runner.report.live.interim_results)."""
    return _env.get_template("live.html.j2").render(r=interim, live=interim["live"])


def render_report(results_json: Path) -> Path:
    """Re-render index.html next to `results_json` from that file alone; returns the HTML path."""
    results = json.loads(results_json.read_text(encoding="utf-8"))
    return write_atomic(results_json.with_name("index.html"), render_results_html(results))

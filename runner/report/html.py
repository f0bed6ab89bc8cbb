"""index.html: the validation report, rendered ONLY from results.json (no database, no network, no assets).

`render_report(results_json)` is `hera-migrate report RUN_ID`: it re-renders index.html beside results.json from
that file alone, so the page an auditor reads always agrees with the source of truth. One self-contained file:
inline CSS and inline SVG charts (runner.report.charts), no script, nothing fetched.

`render_live_html(interim)` is the page `run` shows while it works (runner.report.live): an interim results dict of
the same shape plus a `live` block; it reloads itself until the validation's page replaces it.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from runner.errors import UsageError
from runner.report import charts
from runner.report.charts import fmt_seconds
from runner.report.files import write_atomic

_env = Environment(loader=PackageLoader("runner.report", "templates"), undefined=StrictUndefined,
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)

SCHEMA_MAJOR = "2"
VERDICTS = {"passed": "PASSED", "warning": "PASSED WITH WARNINGS", "failed": "FAILED", "rolled_back": "ROLLED BACK",
            "nothing_checked": "NOTHING CHECKED"}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def money(value: Any, currency: str | None = None) -> str:
    """Exact decimal text with thousands separators and the currency code: '6925903.6800' -> '6,925,903.68 USD'.
    Never rounded: trailing zeros beyond the cents are dropped, other digits kept."""
    if value is None or value == "":
        return "–"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    trimmed = amount.normalize()
    exponent = trimmed.as_tuple().exponent
    # at least the cents (adding zeros only); more digits only where the value really has them
    amount = trimmed if isinstance(exponent, int) and exponent < -2 else amount.quantize(Decimal("0.01"))
    text = f"{amount:,f}"
    code = (currency or "").strip()
    return f"{text} {code or '(no currency)'}" if currency is not None else text


def amounts(per_currency: Any) -> Markup:
    """{currency: amount}, one unbreakable amount per currency, never a sum across currencies."""
    if not per_currency:
        return Markup("–")
    return Markup(" · ").join(Markup('<span class="amt">{}</span>').format(money(v, c))
                              for c, v in sorted(per_currency.items()))


def _seconds(value: Any) -> str:
    return "–" if value is None else fmt_seconds(float(value))


_env.filters["fmt"] = _fmt
_env.filters["seconds"] = _seconds
_env.filters["money"] = money
_env.filters["amounts"] = amounts
_env.filters["nonzero"] = lambda value: bool(value) and Decimal(str(value)) != 0
_env.globals["charts"] = charts
_env.globals["verdicts"] = VERDICTS


def render_results_html(results: dict[str, Any]) -> str:
    checks = results["checks"]
    levels = [(level, [c for c in checks if c["level"] == level]) for level in ("record", "aggregate", "system")]
    return _env.get_template("results.html.j2").render(
        r=results, verdict=VERDICTS.get(results["status"], results["status"].upper()), levels=levels,
        failing=[c for c in checks if c["status"] != "passed"],
        tables=sorted({t for cls in ("expected", "unexpected", "concurrent") for t in results["diff"][cls]}))


def render_template(name: str, **context: Any) -> str:
    """Any other page of the report folder's templates (e.g. the emergency rollback's summary)."""
    return _env.get_template(name).render(**context)


def render_live_html(interim: dict[str, Any]) -> str:
    """The live page of a run in progress (runner.report.live.interim_results)."""
    return _env.get_template("live.html.j2").render(r=interim, live=interim["live"])


def render_report(results_json: Path) -> Path:
    """Re-render index.html next to `results_json` from that file alone; returns the HTML path."""
    results = json.loads(results_json.read_text(encoding="utf-8"))
    version = str(results.get("schema_version", "?"))
    if version.split(".")[0] != SCHEMA_MAJOR:
        raise UsageError(f"{results_json} is results.json schema {version}; this harness renders schema "
                         f"{SCHEMA_MAJOR}.x", hint="validate the run again to write a current results.json")
    return write_atomic(results_json.with_name("index.html"), render_results_html(results))

"""results.json: written once by the validation, the source of truth every other artefact is rendered from.

The format is versioned (`schema_version`, currently "1.0"), described field by field in
docs/results-schema.md and pinned by the JSON Schema `runner/report/results.schema.json` (shipped inside the
package so an installed wheel can validate its own output).
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_FILE = "results.schema.json"
log = logging.getLogger(__name__)


@cache
def load_schema() -> dict[str, Any]:
    text = resources.files("runner.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(results: dict[str, Any]) -> list[str]:
    """Every way `results` departs from the JSON Schema, as 'path: message' lines (empty when valid)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    return [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
            for e in sorted(validator.iter_errors(results), key=lambda e: list(map(str, e.absolute_path)))]


def write_results(results: dict[str, Any], path: Path) -> Path:
    """Write results.json (UTF-8, 2-space indent, keys in the writer's order). Results that do not match the
    schema are a bug of the harness: they are still written (nothing is lost) and the problems are logged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    problems = schema_errors(results)
    if problems:
        log.error("%s does not match %s: %s", path, SCHEMA_FILE, "; ".join(problems[:5]))
    return path


def write_reports(results: dict[str, Any], report_dir: Path) -> dict[str, Path]:
    """results.json, then index.html and junit.xml rendered from what was written."""
    from runner.report.html import render_report
    from runner.report.junit import write_junit

    results_path = write_results(results, report_dir / "results.json")
    html = render_report(results_path)
    junit = write_junit(json.loads(results_path.read_text(encoding="utf-8")), report_dir / "junit.xml")
    return {"results": results_path, "html": html, "junit": junit}

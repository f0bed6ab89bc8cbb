"""results.json: written once by the validation, the source of truth every other artefact is rendered from.

The format is versioned (`schema_version`, currently "2.0"), described field by field in
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

from runner.contract import SNAPSHOT_FILE
from runner.report.files import write_atomic

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
    write_atomic(path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    problems = schema_errors(results)
    if problems:
        log.error("%s does not match %s: %s", path, SCHEMA_FILE, "; ".join(problems[:5]))
    return path


# Every file a run's report directory may hold, in the order the page lists them: (name, what it is).
ARTEFACTS: tuple[tuple[str, str], ...] = (
    ("results.json", "the source of truth: every figure of this page (docs/results-schema.md)"),
    ("index.html", "this page, rendered from results.json alone"),
    ("junit.xml", "the checks as JUnit test cases, for CI"),
    ("records.jsonl", "one line per level-1 record: verdict and the checks that flagged it"),
    ("trial_balance.csv", "the trial balance before / after / delta per organisation, account and currency"),
    (SNAPSHOT_FILE, "the before / after (and rollback) snapshots of the six tables, DuckDB"),
    ("load/load.html", "the v1 load test: per-task latencies and the throttle's decisions"),
    ("load/load.json", "the v1 load test's measurements as data"),
    ("inventory.html", "the synthetic ledger the demo generated"),
    ("fixtures.json", "the synthetic ledger's inventory as data"),
)
_WRITTEN_HERE = {"results.json", "index.html", "junit.xml"}


def artefacts(report_dir: Path) -> list[dict[str, Any]]:
    """The artefacts of `report_dir` that exist (and the three this write produces), as relative links."""
    out = []
    for name, description in ARTEFACTS:
        path = report_dir / name
        if name in _WRITTEN_HERE or path.exists():
            out.append({"name": name, "path": name, "description": description,
                        "bytes": path.stat().st_size if path.exists() and name not in _WRITTEN_HERE else None})
    return out


def previous_rollback(results_json: Path, run_id: str) -> dict[str, Any] | None:
    """The rollback section of an earlier results.json of the same run, if any."""
    try:
        old = json.loads(results_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    section = old.get("rollback") if isinstance(old, dict) and old.get("run_id") == run_id else None
    return section if isinstance(section, dict) else None


def record_rollback(report_dir: Path, section: dict[str, Any]) -> dict[str, Path] | None:
    """Rewrite the run's results.json after a rollback: status `rolled_back`, the run's status from the rollback,
    the validation's own verdict kept under `rollback.validation_before`, and the rollback section (its own
    verification and the row-for-row comparison with the before-snapshot). None when the run has no report."""
    path = report_dir / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    earlier = results.get("rollback") if isinstance(results.get("rollback"), dict) else None
    section = dict(section)
    section["validation_before"] = (earlier or {}).get("validation_before") or {
        "status": results.get("status"), "exit_code": results.get("exit_code"),
        "integrity_score": results.get("integrity_score"), "finished_at": results.get("finished_at")}
    results["status"] = "rolled_back"
    results.setdefault("run", {})["status"] = section["status"]
    results["rollback"] = section
    return write_reports(results, report_dir)


def write_reports(results: dict[str, Any], report_dir: Path) -> dict[str, Path]:
    """results.json, then index.html and junit.xml rendered from what was written."""
    from runner.report.html import render_report
    from runner.report.junit import write_junit

    results["artefacts"] = artefacts(report_dir)
    results_path = write_results(results, report_dir / "results.json")
    html = render_report(results_path)
    junit = write_junit(json.loads(results_path.read_text(encoding="utf-8")), report_dir / "junit.xml")
    return {"results": results_path, "html": html, "junit": junit}

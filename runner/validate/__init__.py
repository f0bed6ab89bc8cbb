"""Validation of a migration run: built-in and custom checks through one wrapper, levels 1-3, the integrity
score, alerts, and the report artefacts (results.json, records.jsonl, index.html, junit.xml).

Public API:
- `validate_run(dsn, spec, run_id, *, report_dir, run=None, snapshot_path=None, diff=None, performance=None)
  -> ValidationOutcome` (exit_code, results, results_path, html_path, junit_path, records_path, ...): `run` is the
  engine's RunResult when the validation follows a run, `diff` a DiffResult computed elsewhere;
- `render_report(results_json) -> Path`: index.html re-rendered from results.json (`hera-migrate report`);
- `review_statements(spec)`: every validation statement, for `hera-migrate compile`.
The results.json format is docs/results-schema.md (JSON Schema: runner/report/results.schema.json).
"""

from __future__ import annotations

from runner.compile import Statement
from runner.report import render_report
from runner.spec.model import Spec
from runner.validate import builtin
from runner.validate.execute import begin_statement
from runner.validate.validation import ValidationOutcome, validate_run


def review_statements(spec: Spec) -> list[Statement]:
    return [begin_statement(), *builtin.review_statements(spec)]


__all__ = ["ValidationOutcome", "render_report", "review_statements", "validate_run"]

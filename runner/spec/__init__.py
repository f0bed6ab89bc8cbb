"""The spec language: YAML spec files, validated against specs/schema.json, as typed frozen dataclasses.

Public API:
- `load_spec(path) -> Spec` raises runner.errors.SpecError (exit code 2) carrying every problem;
- `run_check(paths) -> (exit_code, text)` is `hera-migrate check` (0 all files OK, 2 otherwise);
- `check_file(path) -> CheckResult` for callers that want the problems as objects.
"""

from __future__ import annotations

from runner.spec.api import CheckResult, check_file, load_spec, run_check, summary
from runner.spec.model import Mapping, Resolution, Spec

__all__ = ["CheckResult", "Mapping", "Resolution", "Spec", "check_file", "load_spec", "run_check", "summary"]

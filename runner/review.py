"""`hera-migrate compile`: every statement a spec compiles to, for review, with its bound parameters, then the
statements the harness runs whatever the spec (snapshots and diff, fixture generation, the v1 load).

It sits above every stage (it asks plan, the engine, the snapshot layer, the validation, the generator and the load
for their statements), so the compiler itself (runner/compile) stays the lowest layer and imports none of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner import dbcheck, engine, plan, validate
from runner.compile import Statement
from runner.compile.custom import custom_statement
from runner.compile.params import Mappings
from runner.load import v1
from runner.snapshot import review as snapshot_review
from runner.spec.model import Spec
from runner.synth import review as synth_review
from runner.validate.builtin import REVIEW_RUN_ID

SAMPLE_ORG = "00000000-0000-4000-8000-000000000001"


def compile_spec(spec: Spec) -> list[Statement]:
    """Every statement the spec compiles to, for review: tier-1 plan, the engine's run/rollback families (entity
    migrations included), the snapshots and their diff (DuckDB), the validation's checks, the custom checks' own
    SQL as the validation executes it, then the generator's and the v1 load's.

    Without a database the organisations are the spec's `include` list and only exact (`from`) mappings are
    resolved; `plan` and `run` resolve wildcard and regex mappings against the codes really present. The SQL text
    never depends on those values: they are bound parameters. (A custom check's SQL text is the spec's own, by
    design; its :run_id and :organization_id are bound all the same.)
    """
    org_ids = list(spec.scope.organizations.include)
    statements = plan.statements(spec, org_ids, Mappings.exact(spec).v1_codes)
    statements += engine.review_statements(spec)
    statements += snapshot_review.review_statements(spec)
    statements += validate.review_statements(spec)
    statements += custom_statements(spec)
    statements += dbcheck.review_statements(spec)
    statements += synth_review.review_statements()
    statements += v1.review_statements()
    return statements


def custom_statements(spec: Spec) -> list[Statement]:
    """Each enabled custom check as validation.Session.custom executes it (compile.custom.custom_statement): once
    per organisation (shown for the first `include` one) or, for a system-level check, once with no organisation."""
    orgs = list(spec.scope.organizations.include) or [SAMPLE_ORG]
    return [custom_statement(check, REVIEW_RUN_ID, None if check.level == "system" else orgs[0])
            for check in spec.validations.checks() if check.kind == "custom"]


def write_review(statements: list[Statement], out: Path, spec: Spec) -> list[Path]:
    """One `NNN-family-name.sql` per statement (SQL, then its parameters as comments) plus `manifest.json`."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    manifest = []
    width = max(2, len(str(len(statements))))  # names sort in execution order
    for i, stmt in enumerate(statements, start=1):
        path = out / f"{i:0{width}d}-{stmt.name.replace('/', '-')}.sql"
        path.write_text(stmt.review_text(), encoding="utf-8")
        written.append(path)
        manifest.append({"file": path.name, "template": stmt.name, "parameters": sorted(stmt.params)})
    (out / "manifest.json").write_text(json.dumps(
        {"spec": {"name": spec.name, "version": spec.version, "path": str(spec.path) if spec.path else None,
                  "sha256": spec.sha256},
         "statements": manifest}, indent=2) + "\n", encoding="utf-8")
    return written

"""`hera-migrate --dsn DSN check SPEC...`: the spec against a real HERA database, read-only.

Two things only a database can answer:
- every custom check's SQL plans (EXPLAIN, never executed) against the real columns, inside a READ ONLY
  transaction with a short statement timeout; a failure is a spec problem at the line of the SQL (exit 2);
- coverage: v1 header codes present in the database, per organisation in the spec's scope, that no mapping
  covers. That is a finding, not an error: the spec may leave codes alone on purpose (exit stays 0).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from runner import contract
from runner.compile import Statement, render
from runner.compile.custom import positional
from runner.compile.scope import resolve_orgs
from runner.db.connect import connect, redact
from runner.db.schema import installed
from runner.errors import EXIT_OK, EXIT_USAGE, DataError
from runner.spec import codes
from runner.spec.api import check_file
from runner.spec.model import Spec
from runner.spec.problems import Problem, SourceMap, render_all
from runner.spec.yamlsrc import read_yaml

EXPLAIN_TIMEOUT_MS = 5_000
_SAMPLE_RUN_ID = "check"


@dataclass(frozen=True)
class Finding:
    organization_id: str
    organization_code: str
    v1_code: str
    headers: int

    def render(self, display: str) -> str:
        return (f"{display}: coverage: {self.organization_code} ({self.organization_id}): {self.v1_code}: "
                f"{self.headers:,} header{'s' if self.headers != 1 else ''} that no mapping covers")


def coverage_statement(org_ids: list[str]) -> Statement:
    return render("check/coverage", org_ids=org_ids, migration_key=contract.META_MIGRATION)


def timeout_statement() -> Statement:
    return render("session/timeout", timeout_ms=EXPLAIN_TIMEOUT_MS)


def review_statements(spec: Spec) -> list[Statement]:
    """The statements of `check --dsn` (the custom checks' own SQL is the spec's, shown by the validation)."""
    return [coverage_statement(list(spec.scope.organizations.include)), timeout_statement()]


def coverage(conn: psycopg.Connection[Any], spec: Spec, org_ids: list[str]) -> list[Finding]:
    """v1 codes (the spec's source version) present per organisation that no mapping resolves."""
    stmt = coverage_statement(org_ids)
    rows = conn.execute(stmt.text, stmt.params).fetchall()
    suffix = f".{spec.dna.source}".lower()
    return [Finding(org_id, org_code, code, n) for org_id, org_code, code, n in rows
            if codes.normalize(code).lower().endswith(suffix) and spec.resolve(code) is None]


def _sql_problems(conn: psycopg.Connection[Any], spec: Spec, display: str, source: SourceMap,
                  org_id: str) -> list[Problem]:
    problems: list[Problem] = []
    available = {"run_id": _SAMPLE_RUN_ID, "organization_id": org_id}
    for i, check in enumerate(spec.validations.custom):
        path = ("validations", "custom", i, "sql")
        text, params = positional(check.sql, available)
        prefix = "EXPLAIN "
        try:
            with conn.transaction():
                timeout = timeout_statement()
                conn.execute(timeout.text, timeout.params)
                with psycopg.RawCursor(conn) as cur:
                    cur.execute(prefix + text, params)  # EXPLAIN plans the query, it does not run it
        except psycopg.Error as exc:
            diag = exc.diag
            message = (diag.message_primary or str(exc)).strip()
            loc = source.value(path)
            if diag.statement_position:
                offset = max(int(diag.statement_position) - 1 - len(prefix), 0)
                before = check.sql[:offset]
                loc = source.text_loc(path, before.count("\n"), len(before) - (before.rfind("\n") + 1))
            hint = f" ({diag.message_hint})" if diag.message_hint else ""
            problems.append(Problem(display, loc, path,
                                    f"custom check {check.id!r} does not plan against this database: "
                                    f"{diag.sqlstate or '?'} {message}{hint}"))
    return problems


def _spec_orgs(conn: psycopg.Connection[Any], spec: Spec) -> list[tuple[str, str]]:
    return resolve_orgs(conn, spec, ())


def check_against(dsn: str, path: Path) -> tuple[list[Problem], list[Finding]]:
    """Problems (exit 2) and coverage findings (exit 0) of one spec that already passed the offline check."""
    result = check_file(path)
    if result.spec is None:
        return list(result.problems), []
    spec = result.spec
    source = read_yaml(path, str(path)).source
    with connect(dsn) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        if not installed(conn):
            raise DataError(f"{redact(dsn)} has no HERA core schema (core_organizations, universal_transactions, ...)",
                            hint="point --dsn at a HERA database, or run 'hera-migrate db schema' there")
        orgs = _spec_orgs(conn, spec)
        org_ids = [o for o, _ in orgs]
        sample_org = org_ids[0] if org_ids else str(uuid.UUID(int=0))
        problems = _sql_problems(conn, spec, str(path), source, sample_org)
        findings = coverage(conn, spec, org_ids) if org_ids else []
        conn.rollback()
    return problems, findings


def run_db_check(dsn: str, paths: Sequence[Path]) -> tuple[int, str]:
    lines: list[str] = []
    failed = 0
    for path in dict.fromkeys(paths):
        problems, findings = check_against(dsn, path)
        if problems:
            failed += 1
            lines.extend(render_all(problems))
        lines.extend(f.render(str(path)) for f in findings)
        covered = "every v1 code in scope is mapped" if not findings else (
            f"{len(findings)} unmapped v1 code/organisation pair{'s' if len(findings) != 1 else ''} (findings)")
        lines.append(f"{path}: database check against {redact(dsn)}: "
                     f"{len(problems)} problem{'s' if len(problems) != 1 else ''}; {covered}")
    return (EXIT_USAGE if failed else EXIT_OK), "\n".join(lines)


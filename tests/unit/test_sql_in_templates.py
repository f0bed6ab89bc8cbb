"""Every SQL statement the harness runs lives in a template under runner/sql/ and renders through the compiler, so
`compile --out` shows it: no module of the package holds a statement in a Python string, but the few listed here,
each for a stated reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runner"
STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|COPY|SET|BEGIN|COMMIT|ROLLBACK|"
                       r"ANALYZE|ATTACH|DETACH|TRUNCATE|EXPLAIN|VACUUM|GRANT|LOCK)\b")
ALLOWED = {
    # Below the compiler in the import direction (db sits under compile): the embedded server's bootstrap
    # CREATE DATABASE and the core detection that runs before any HERA table may exist.
    "runner/db/providers.py", "runner/db/schema.py",
    # The EXPLAIN prefix that plans a spec's own custom SQL (compiled by compile.custom); error offsets depend on it.
    "runner/dbcheck.py",
    # Not statements: error messages about SQL.
    "runner/spec/sqlguard.py",
    # Not statements: sample catalog texts the review renders templates with.
    "runner/synth/review.py", "runner/snapshot/review.py",
}


def docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def sql_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstrings(tree)
    return [(n.lineno, n.value[:60]) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
            and STATEMENT.match(n.value)]


def test_no_statement_in_a_python_string() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel not in ALLOWED and (hits := sql_strings(path)):
            found[rel] = hits
    assert not found, f"SQL outside runner/sql templates: {found}"


def test_the_scan_sees_a_statement(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""SELECT in a docstring is fine."""\nQ = "SELECT 1 FROM t"\n'
                      'conn.execute("  UPDATE t SET x = 1")\n')
    assert [line for line, _ in sql_strings(module)] == [2, 3]


def test_every_allowed_module_exists() -> None:
    assert all((ROOT / rel).is_file() for rel in ALLOWED)

"""CLI verbs that touch a real database."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from runner.db.connect import connect


def hera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_db_schema_is_idempotent_from_the_cli(db_dsn: str) -> None:
    for _ in range(2):
        proc = hera("--dsn", db_dsn, "db", "schema")
        assert proc.returncode == 0, proc.stderr
        assert "HERA core installed" in proc.stdout


def test_fixtures_prints_org_ids_and_refuses_a_duplicate_seed(db_dsn: str) -> None:
    proc = hera("--dsn", db_dsn, "fixtures", "small", "--orgs", "2", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.split()
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
    with connect(db_dsn) as conn:
        found = conn.execute("SELECT count(*) FROM core_organizations WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()
    assert found == (2,)
    again = hera("--dsn", db_dsn, "fixtures", "small", "--seed", "3")
    assert again.returncode == 2
    assert "already exist" in again.stderr and "--seed" in again.stderr


def test_fixtures_without_schema_fails_clearly(new_empty_database: str) -> None:
    proc = hera("--dsn", new_empty_database, "fixtures", "small", "--no-schema")
    assert proc.returncode == 2
    assert "schema is not installed" in proc.stderr


def test_demo_ends_with_an_html_report(db_dsn: str, tmp_path: Path, conn: psycopg.Connection[Any]) -> None:
    """The README's main job: plan → run → validate → rollback rehearsal, the report's path last on stdout."""
    out = tmp_path / "demo"
    proc = hera("--dsn", db_dsn, "demo", "--report-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report: {(out / 'index.html').resolve()}"
    inventory = json.loads((out / "fixtures.json").read_text())
    org = inventory["organizations"][0]
    assert org["organization_id"] in (out / "inventory.html").read_text()
    results = json.loads((out / "results.json").read_text())
    # The report tells the current state: the run was validated (PASSED, 100), then the rehearsal rolled it back.
    assert results["status"] == "rolled_back" and results["rollback"]["rehearsal"] is True
    assert results["rollback"]["validation_before"] == {**results["rollback"]["validation_before"],
                                                        "status": "passed", "integrity_score": 100.0}
    assert all(n == 0 for n in results["diff"]["unexpected"].values())
    assert results["rollback"]["comparison"]["identical"] is True
    html = (out / "index.html").read_text()
    assert org["organization_id"] in html and "rollback rehearsal" in html.lower()
    assert 'id="verdict">ROLLED BACK<' in html
    # The rehearsal rolled everything back: the ledger holds exactly what was generated.
    stored = conn.execute("SELECT count(*) FROM universal_transactions WHERE organization_id = %s",
                          (org["organization_id"],)).fetchone()
    assert stored == (org["rows"]["universal_transactions"],)

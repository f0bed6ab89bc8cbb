"""The user-facing pipeline through the real CLI: run → status → validate → rollback → report, the demo, and the
exit codes of docs/contract.md §4 (0 fine, 1 critical failure, 2 usage, 3 runtime)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from runner.contract import JOURNAL_ENTITY_TYPE
from runner.db.connect import connect
from runner.plan import build_plan
from runner.spec import load_spec
from runner.synth.generate import generate

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
SCHEMA = json.loads((ROOT / "runner" / "report" / "results.schema.json").read_text())


def hera(*args: str, dsn: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    argv = [sys.executable, "-m", "runner", *(["--dsn", dsn] if dsn else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=env, cwd=cwd)


def state(dsn: str) -> dict[str, list[Any]]:
    """Every row of the six tables except the run journal (kept on purpose as the audit trail)."""
    out = {}
    with connect(dsn) as conn:
        journal = "(SELECT id FROM core_entities WHERE entity_type = %s)"
        queries = {
            "core_organizations": "SELECT to_jsonb(t)::text FROM core_organizations t ORDER BY id",
            "core_entities": "SELECT to_jsonb(t)::text FROM core_entities t WHERE entity_type <> %s ORDER BY id",
            "core_dynamic_data": f"SELECT to_jsonb(t)::text FROM core_dynamic_data t WHERE entity_id NOT IN {journal} "
                                 "ORDER BY id",
            "core_relationships": "SELECT to_jsonb(t)::text FROM core_relationships t ORDER BY id",
            "universal_transactions": "SELECT to_jsonb(t)::text FROM universal_transactions t ORDER BY id",
            "universal_transaction_lines": "SELECT to_jsonb(t)::text FROM universal_transaction_lines t ORDER BY id",
        }
        for table, query in queries.items():
            params = (JOURNAL_ENTITY_TYPE,) if "%s" in query else ()
            out[table] = [r[0] for r in conn.execute(query, params)]
    return out


def test_run_status_validate_rollback_report(db_dsn: str, tmp_path: Path) -> None:
    org = generate(db_dsn, size="small", seed=51).organizations[0]
    plan = build_plan(db_dsn, load_spec(PHASE7))
    before = state(db_dsn)
    out = tmp_path / "r"

    run = hera("run", str(PHASE7), "--run-id", "t-run-1", "--report-dir", str(out), "--no-progress", "--now",
               dsn=db_dsn)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"report: {(out / 'index.html').resolve()}" in run.stdout
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["run_id"] == "t-run-1" and results["integrity_score"] == 100
    assert all(n == 0 for n in results["diff"]["unexpected"].values())
    assert sum(results["diff"]["expected"].values()) > 0
    (got,) = results["organizations"]
    assert got["organization_id"] == org.organization_id
    assert got["migrated"] == plan.organizations[0].candidates()  # both tiers: reposted + aliased
    assert {(c["id"], c["status"]) for c in results["checks"]} >= {("gl_balanced", "passed"),
                                                                    ("trial_balance_unchanged", "passed")}
    for name in ("index.html", "junit.xml", "snapshots.duckdb"):
        assert (out / name).stat().st_size > 0

    status = hera("status", "t-run-1", "--json", dsn=db_dsn)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "completed"

    again = hera("validate", "t-run-1", "--report-dir", str(out), dsn=db_dsn)
    assert again.returncode == 0, again.stdout + again.stderr

    # Re-running the finished run changes nothing.
    rerun = hera("run", str(PHASE7), "--run-id", "t-run-1", "--resume", "--report-dir", str(out), "--no-progress",
                 "--now", dsn=db_dsn)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert json.loads((out / "results.json").read_text())["organizations"][0]["migrated"] == got["migrated"]

    back = hera("rollback", "t-run-1", "--no-progress", dsn=db_dsn)
    assert back.returncode == 0, back.stdout + back.stderr
    assert state(db_dsn) == before
    assert hera("rollback", "t-run-1", "--no-progress", dsn=db_dsn).returncode == 0
    assert state(db_dsn) == before

    (out / "index.html").unlink()
    rendered = hera("report", "t-run-1", "--report-dir", str(out))
    assert rendered.returncode == 0, rendered.stderr
    assert "t-run-1" in (out / "index.html").read_text()


def test_tampering_after_the_run_makes_validate_exit_1(db_dsn: str, tmp_path: Path) -> None:
    generate(db_dsn, size="small", seed=52)
    out = tmp_path / "r"
    run = hera("run", str(PHASE7), "--run-id", "t-run-2", "--report-dir", str(out), "--no-progress", "--now",
               dsn=db_dsn)
    assert run.returncode == 0, run.stdout + run.stderr
    with connect(db_dsn) as conn:
        line = conn.execute(
            "SELECT l.id, l.transaction_id FROM universal_transaction_lines l JOIN universal_transactions h "
            "ON h.id = l.transaction_id WHERE h.metadata -> 'migration' ->> 'role' = 'repost' "
            "AND l.smart_code LIKE '%%.GL.%%' ORDER BY l.id LIMIT 1").fetchone()
        assert line is not None
        # The migration actor "did" it, so it is not concurrent traffic: an unexplained change to a repost.
        conn.execute("UPDATE universal_transaction_lines SET line_amount = line_amount + 1 WHERE id = %s", (line[0],))
        conn.commit()
    checked = hera("validate", "t-run-2", "--report-dir", str(out), dsn=db_dsn)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    results = json.loads((out / "results.json").read_text())
    failed = {c["id"]: c for c in results["checks"] if c["status"] in ("failed", "error")}
    assert "gl_balanced" in failed
    assert str(line[1]) in {s["record_id"] for s in failed["gl_balanced"]["samples"]}
    assert results["integrity_score"] < 95
    assert any(a["level"] == "critical" for a in results["alerts"])


def test_usage_errors_exit_2(db_dsn: str, tmp_path: Path) -> None:
    generate(db_dsn, size="small", seed=53)
    cases = [
        (["run", str(PHASE7)], None, "--dsn"),
        (["run", str(PHASE7), "--retry-quarantined"], db_dsn, "--resume"),
        (["run", str(PHASE7), "--resume"], db_dsn, "--run-id"),
        (["run", str(PHASE7), "--run-id", "bad id; --"], db_dsn, "invalid run id"),
        (["validate", "no-such-run"], db_dsn, "no-such-run"),
        (["rollback", "no-such-run"], db_dsn, "no-such-run"),
        (["status", "no-such-run"], db_dsn, "no-such-run"),
        (["report", "no-such-run", "--report-dir", str(tmp_path / "none")], None, "results.json"),
    ]
    before = state(db_dsn)
    for argv, dsn, needle in cases:
        proc = hera(*argv, dsn=dsn, cwd=tmp_path)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert needle in proc.stderr, (argv, proc.stderr)
    assert state(db_dsn) == before


def test_resume_of_a_run_that_never_started_starts_it(db_dsn: str, tmp_path: Path) -> None:
    """docs/contract.md §4: the same `run --run-id X --resume` finishes a run after any crash, including one that
    died before anything of it existed (it used to refuse forever: "no journal of that run id")."""
    generate(db_dsn, size="small", seed=54)
    out = tmp_path / "r"
    first = hera("run", str(PHASE7), "--run-id", "t-fresh-1", "--resume", "--report-dir", str(out), "--no-progress",
                 "--now", dsn=db_dsn)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "nothing of run t-fresh-1 exists yet: --resume starts it" in first.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "passed" and results["counts"]["migrated"] == results["counts"]["candidates"] > 0
    again = hera("run", str(PHASE7), "--run-id", "t-fresh-1", "--resume", "--report-dir", str(out), "--no-progress",
                 "--now", dsn=db_dsn)
    assert again.returncode == 0 and "exists yet" not in again.stdout  # now it continues (a no-op), not restarts

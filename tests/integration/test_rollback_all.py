"""`rollback --all-runs`: every run of the database undone, newest first, organisations in parallel, resumable.

- engine: three runs over two organisations (two of them in the same organisation) come off exactly, also when
  the first attempt fails midway in every organisation;
- CLI: two runs with their reports, the emergency rollback SIGKILLed after its third chunk and run again: both
  organisations equal their before-snapshots, one summary report, each run's own report rewritten, the end
  notified to a local webhook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.db.connect import connect
from runner.engine import ChunkInfo, EngineHooks, run_migration, run_status
from runner.engine.rollback_all import AllRunsFailed, rollback_all_runs
from runner.synth.generate import generate
from tests.integration.test_engine_support import PHASE7, ROOT, dump, phase7
from tests.tools.webhook import webhook


class Crash(Exception):
    pass


class CrashSecondChunk(EngineHooks):
    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        if info.tier == "rollback" and info.chunk == 2:
            raise Crash("crash in the second rollback chunk")


def state(dsn: str, org: str) -> dict[str, list[Any]]:
    with connect(dsn) as conn:
        return dump(conn, org)


def test_all_runs_undoes_every_run_newest_first_and_resumes(core_dsn: str) -> None:
    db_dsn = core_dsn
    a, b = (o.organization_id for o in generate(db_dsn, size="small", orgs=2, seed=71).organizations)
    before = {a: state(db_dsn, a), b: state(db_dsn, b)}
    run_migration(db_dsn, phase7(narrow=True), orgs=(a,), run_id="run-1", workers=1, now=True)
    run_migration(db_dsn, phase7(), orgs=(b,), run_id="run-2", workers=1, now=True)
    third = run_migration(db_dsn, phase7(), orgs=(a,), run_id="run-3", workers=1, now=True).org(a)
    assert third.migrated > 0  # the newer run of organisation a took what the narrow one left

    with pytest.raises(AllRunsFailed) as failed:
        rollback_all_runs(db_dsn, workers=2, hooks=CrashSecondChunk(), batch_size=50)
    assert failed.value.result.status == "failed"
    assert state(db_dsn, a) != before[a]  # the first attempt stopped midway

    result = rollback_all_runs(db_dsn, workers=2, batch_size=50)
    assert result.status == "rolled_back"
    assert [r.run_id for r in result.runs] == ["run-3", "run-2", "run-1"]  # newest first
    assert all(o.verified and not o.conflicts for r in result.runs for o in r.organizations)
    by_run = {r.run_id: r for r in result.runs}
    assert by_run["run-3"].org(a).originals_restored == third.migrated  # counted over both attempts
    assert state(db_dsn, a) == before[a] and state(db_dsn, b) == before[b]
    for run_id in ("run-1", "run-2", "run-3"):
        assert run_status(db_dsn, run_id).status == "rolled_back"

    again = rollback_all_runs(db_dsn)  # nothing left: verified again, nothing changed
    assert again.status == "rolled_back" and len(again.already) == 3
    assert state(db_dsn, a) == before[a]


def hera_migrate(dsn: str, *args: str, kill: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERA_FAULT_KILL", "HERA_DSN")}
    if kill:
        env["HERA_FAULT_KILL"] = kill
    return subprocess.run([sys.executable, "-m", "runner", "--dsn", dsn, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_all_runs_killed_midway_and_run_again_restores_both_before_snapshots(db_dsn: str, tmp_path: Path) -> None:
    a, b = (o.organization_id for o in generate(db_dsn, size="small", orgs=2, seed=72).organizations)
    before = {a: state(db_dsn, a), b: state(db_dsn, b)}
    for run_id, org in (("run-a", a), ("run-b", b)):
        done = hera_migrate(db_dsn, "run", str(PHASE7), "--org", org, "--run-id", run_id, "--now", "--no-progress",
                            "--report-dir", str(tmp_path / run_id))
        assert done.returncode in (0, 1), done.stderr  # the verdict is not what this test is about
    summary_dir = tmp_path / "emergency"
    args = ["rollback", "--all-runs", "--workers", "2", "--no-progress", "--report-dir", str(summary_dir)]

    killed = hera_migrate(db_dsn, *args, kill="rollback_after_commit:3")
    assert killed.returncode == -9, killed.stderr
    assert not (summary_dir / "summary.json").exists()
    assert state(db_dsn, a) != before[a] or state(db_dsn, b) != before[b]  # killed midway

    with webhook() as hook:
        done = hera_migrate(db_dsn, *args, "--notify", hook.url)
        assert done.returncode == 0, done.stdout + done.stderr
        [finished] = [m for m in hook.messages() if m["event"] == "rollback_finished"]
    assert finished["status"] == "rolled_back" and "emergency rollback of 2 run(s)" in finished["text"]
    assert state(db_dsn, a) == before[a] and state(db_dsn, b) == before[b]
    summary = json.loads((summary_dir / "summary.json").read_text())
    assert summary["status"] == "rolled_back" and summary["verified"] and summary["conflicts"] == 0
    assert {r["run_id"] for r in summary["runs"]} == {"run-a", "run-b"}
    page = (summary_dir / "index.html").read_text()
    assert "run-a" in page and "run-b" in page and "identical" in page
    for run in summary["runs"]:
        assert sum(o["originals_restored"] for o in run["organizations"]) > 0  # over both invocations
        # each run's report, found where `run` wrote it (the journal says), compared with its before-snapshot
        assert run["comparison"]["made"] and run["comparison"]["identical"], run["comparison"]
        results = json.loads((tmp_path / run["run_id"] / "results.json").read_text())
        assert results["status"] == "rolled_back" and results["rollback"]["comparison"]["identical"]

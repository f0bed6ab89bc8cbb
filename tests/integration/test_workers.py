"""Several sessions per organisation and cooperating runner processes (runner/engine/organization.py, session.py).

- four worker sessions on one organisation: every candidate exactly once, each worker's own journal row, the
  journal's totals the sum of them, `status` lists the workers (alive while they work, not after);
- a storm: a runner with four workers SIGKILLed at random chunk points again and again, resumed with the same
  command each time: at every stop the journal agrees with the rows, at the end every candidate exactly once and
  the validation's verdict the same as an undisturbed run's;
- two runner processes on one run id, one SIGKILLed midway: the other finishes the run alone, validates it, and
  `status` shows the killed runner's workers as gone;
- one organisation rolled back on several sessions (the claiming one and its helpers) comes back exactly.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.db.connect import connect
from runner.engine import ChunkInfo, EngineHooks, NullProgress, OrgStatus, rollback_run, run_migration, run_status
from runner.engine.context import CHECKPOINT_LOCK_CLASS, advisory_key
from runner.synth.generate import generate
from tests.integration.test_engine_support import PHASE7, ROOT, dump, phase7, plan_candidates

STORM_KILLS = int(os.environ.get("HERA_WORKER_STORM_KILLS", "10"))
STORM_SIZE = os.environ.get("HERA_WORKER_STORM_SIZE", "small")  # nox -s faults: medium
POINTS = ("chunk_before_commit", "chunk_after_commit", "between_chunks")


def marks(dsn: str, org: str, run_id: str) -> Counter[str]:
    with connect(dsn) as conn:
        rows = conn.execute("SELECT metadata -> 'migration' ->> 'role', count(*) FROM universal_transactions "
                            "WHERE organization_id = %s AND metadata -> 'migration' ->> 'run_id' = %s GROUP BY 1",
                            (org, run_id)).fetchall()
    return Counter({r[0]: r[1] for r in rows})


def reposts_per_original(dsn: str, org: str, run_id: str) -> Counter[str]:
    with connect(dsn) as conn:
        rows = conn.execute("SELECT metadata -> 'migration' ->> 'original_txn_id' FROM universal_transactions "
                            "WHERE organization_id = %s AND metadata -> 'migration' ->> 'run_id' = %s "
                            "AND metadata -> 'migration' ->> 'role' = 'repost'", (org, run_id)).fetchall()
    return Counter(r[0] for r in rows)


def hera_migrate(dsn: str, *args: str, kill: str | None = None,
                 wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERA_FAULT_KILL", "HERA_DSN")}
    if kill:
        env["HERA_FAULT_KILL"] = kill
    argv = [sys.executable, "-m", "runner", "--dsn", dsn, *args]
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def sessions_gone(dsn: str, run_id: str, timeout: float = 30) -> OrgStatus:
    """The run's status once none of its workers is alive (a condition with a deadline, not a sleep: the server
    ends a killed client's backend when it reads EOF)."""
    deadline = time.monotonic() + timeout
    with connect(dsn, autocommit=True) as conn:
        while True:
            st = run_status(dsn, run_id).organizations[0]
            if not any(w["alive"] for w in st.fields["workers"]):
                return st
            assert time.monotonic() < deadline, "a killed runner's session is still alive"
            conn.execute("SELECT pg_sleep(0.05)")  # poll interval of the condition wait


class SeeWorkers(EngineHooks):
    """Reads `status` after chunk 6 of tier 2, while every worker session is still open."""

    def __init__(self, dsn: str, run_id: str) -> None:
        self.dsn, self.run_id = dsn, run_id
        self.seen: list[dict[str, Any]] = []

    def after_commit(self, info: ChunkInfo) -> None:
        if info.tier == "reverse_repost" and info.chunk == 6 and not self.seen:
            self.seen = run_status(self.dsn, self.run_id).organizations[0].fields["workers"]


def test_four_sessions_on_one_organisation_migrate_each_candidate_once(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=81).organizations[0].organization_id
    planned = plan_candidates(db_dsn, phase7(), org)
    seen = SeeWorkers(db_dsn, "run-w4")
    got = run_migration(db_dsn, phase7(), run_id="run-w4", workers=4, batch_size=20, now=True, hooks=seen).org(org)
    assert got.status == "completed"
    assert (got.migrated, got.aliased) == (planned["reverse_repost"], planned["reporting_alias"])
    per_original = reposts_per_original(db_dsn, org, "run-w4")
    assert len(per_original) == planned["reverse_repost"] and set(per_original.values()) == {1}
    assert marks(db_dsn, org, "run-w4")["alias"] == planned["reporting_alias"]

    workers = run_status(db_dsn, "run-w4").organizations[0].fields["workers"]
    assert len(workers) == 4 and len({w["pid"] for w in workers}) == 1
    assert all(w["chunks"] > 0 and w["state"] == "done" and not w["alive"] for w in workers)
    assert sum(w["migrated"] for w in workers) == planned["reverse_repost"]  # each counted its own, none twice
    assert sum(w["chunks"] for w in workers) == got.chunks
    assert len(seen.seen) >= 2 and all(w["alive"] for w in seen.seen)  # while working: alive, with a rate
    assert all(w.get("rate", 0) > 0 for w in seen.seen)


def test_a_storm_of_kills_on_four_workers_then_the_same_command_finishes_exactly_once(
        db_dsn: str, tmp_path: Path, new_database: Callable[[], str]) -> None:
    org = generate(db_dsn, size=STORM_SIZE, seed=82).organizations[0].organization_id
    planned = plan_candidates(db_dsn, phase7(), org)
    args = ["run", str(PHASE7), "--run-id", "run-storm", "--workers", "4", "--batch-size", "20", "--now",
            "--no-progress", "--resume", "--report-dir", str(tmp_path / "storm")]
    rng = random.Random(20261205)
    total = planned["reverse_repost"] + planned["reporting_alias"]
    rows: Counter[str] = Counter()
    for i in range(STORM_KILLS):
        point = POINTS[i % len(POINTS)]
        chunks_left = (total - rows["original"] - rows["alias"]) // 20
        spread = max(1, chunks_left // (STORM_KILLS - i + 1))  # kills at random chunks, leaving some for later ones
        proc = hera_migrate(db_dsn, *args, kill=f"{point}:{rng.randint(1, spread)}")
        assert isinstance(proc, subprocess.CompletedProcess)
        assert proc.returncode == -9, (i, point, proc.stdout[-2000:], proc.stderr[-2000:])
        st = sessions_gone(db_dsn, "run-storm")  # killed: PostgreSQL ends every session of the process
        rows = marks(db_dsn, org, "run-storm")
        # the journal (the workers' rows added up) agrees with the rows at every stop: no chunk half in
        assert (st.migrated, st.aliased) == (rows["original"], rows["alias"]) and rows["original"] == rows["repost"]
    assert rows["original"] < planned["reverse_repost"], "the storm ended after the run finished"

    done = hera_migrate(db_dsn, *args)
    assert isinstance(done, subprocess.CompletedProcess)
    per_original = reposts_per_original(db_dsn, org, "run-storm")
    assert len(per_original) == planned["reverse_repost"] and set(per_original.values()) == {1}
    assert marks(db_dsn, org, "run-storm")["alias"] == planned["reporting_alias"]
    results = json.loads((tmp_path / "storm" / "results.json").read_text())
    assert results["counts"]["reverse_reposted"] == planned["reverse_repost"]

    assert (done.returncode, results["status"], results["integrity_score"]) == undisturbed(new_database(), tmp_path)


def undisturbed(dsn: str, tmp_path: Path) -> tuple[int, str, Any]:
    """The storm's organisation (same size and seed) migrated without a single kill, on a database of its own."""
    generate(dsn, size=STORM_SIZE, seed=82)
    proc = hera_migrate(dsn, "run", str(PHASE7), "--run-id", "run-calm", "--workers", "4", "--batch-size", "20",
                        "--now", "--no-progress", "--report-dir", str(tmp_path / "calm"))
    assert isinstance(proc, subprocess.CompletedProcess)
    results = json.loads((tmp_path / "calm" / "results.json").read_text())
    return proc.returncode, results["status"], results["integrity_score"]


def gate_waiters(conn: Any) -> int:
    """Backends waiting on the organisation's checkpoint gate (sessions of runners ready for their next chunk)."""
    return int(conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
                            "AND NOT granted", (CHECKPOINT_LOCK_CLASS,)).fetchone()[0])


def test_two_runner_processes_finish_one_run_together_when_one_is_killed(db_dsn: str, tmp_path: Path) -> None:
    org = generate(db_dsn, size="small", seed=83).organizations[0].organization_id
    planned = plan_candidates(db_dsn, phase7(), org)
    report = tmp_path / "report"  # one report directory: the joining runners read the first one's before-snapshot
    run = ["run", str(PHASE7), "--run-id", "run-coop", "--workers", "2", "--batch-size", "10", "--now",
           "--no-progress", "--report-dir", str(report)]
    first = hera_migrate(db_dsn, *run, kill="chunk_after_commit:3")  # the run exists, three chunks in
    assert isinstance(first, subprocess.CompletedProcess) and first.returncode == -9, first.stderr

    with connect(db_dsn, autocommit=True) as gate:
        # Hold the organisation's checkpoint gate so both runners line up at their first chunk, then let them go
        # at once: from there they work side by side until one of them is killed.
        gate.execute("SELECT pg_advisory_lock(%s, %s)", (CHECKPOINT_LOCK_CLASS, advisory_key(org)))
        doomed = hera_migrate(db_dsn, *run, "--resume", kill="chunk_after_commit:8", wait=False)
        survivor = hera_migrate(db_dsn, *run, "--resume", wait=False)
        assert isinstance(doomed, subprocess.Popen) and isinstance(survivor, subprocess.Popen)
        deadline = time.monotonic() + 120
        while gate_waiters(gate) < 2:  # each runner's first transaction on the organisation waits at the gate
            assert time.monotonic() < deadline and doomed.poll() is None and survivor.poll() is None
            gate.execute("SELECT pg_sleep(0.05)")  # poll interval of the condition wait
        gate.execute("SELECT pg_advisory_unlock(%s, %s)", (CHECKPOINT_LOCK_CLASS, advisory_key(org)))
    _, doomed_err = doomed.communicate(timeout=600)
    out, err = survivor.communicate(timeout=600)
    assert doomed.returncode == -9, doomed_err
    assert survivor.returncode in (0, 1), out + err  # the verdict is the validation's; the run is complete

    per_original = reposts_per_original(db_dsn, org, "run-coop")
    assert len(per_original) == planned["reverse_repost"] and set(per_original.values()) == {1}
    assert marks(db_dsn, org, "run-coop")["alias"] == planned["reporting_alias"]
    results = json.loads((report / "results.json").read_text())  # the survivor validated: the last one standing
    assert results["counts"]["reverse_reposted"] == planned["reverse_repost"]
    assert results["counts"]["aliased"] == planned["reporting_alias"]
    [reconciled] = [c for c in results["checks"] if c["id"] == "count_amount_reconciliation"]
    assert reconciled["status"] == "passed"  # the journal, summed over three processes' workers, matches the rows

    workers = sessions_gone(db_dsn, "run-coop").fields["workers"]
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for w in workers:
        by_pid.setdefault(int(w["pid"]), []).append(w)
    assert set(by_pid) >= {doomed.pid, survivor.pid} and len(by_pid) == 3
    assert all(w["chunks"] > 0 for w in by_pid[doomed.pid] + by_pid[survivor.pid])  # both worked, side by side
    assert {w["state"] for w in by_pid[doomed.pid]} == {"running"}  # killed: never said done; not alive either
    assert {w["state"] for w in by_pid[survivor.pid]} == {"done"}
    status = hera_migrate(db_dsn, "status", "run-coop")
    assert isinstance(status, subprocess.CompletedProcess) and status.returncode == 0
    assert f":{doomed.pid}:" in status.stdout and "gone" in status.stdout and "done" in status.stdout


class Threads(NullProgress):
    """The worker threads that committed rollback chunks."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def chunk_done(self, org_id: str, tier: str, handled: int, quarantined: int, seconds: float) -> None:
        self.names.add(threading.current_thread().name)


def test_one_organisation_rolls_back_on_several_sessions_exactly(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=84).organizations[0].organization_id
    with connect(db_dsn) as conn:
        before = dump(conn, org)
    run = run_migration(db_dsn, phase7(), run_id="run-prb", workers=4, batch_size=25, now=True).org(org)
    threads = Threads()
    result = rollback_run(db_dsn, "run-prb", workers=3, batch_size=25, progress=threads)
    got = result.org(org)
    assert (result.status, got.verified, got.conflicts) == ("rolled_back", True, [])
    assert got.originals_restored == got.reposts_deleted == run.migrated and got.aliases_restored == run.aliased
    assert len(threads.names) >= 2  # the claiming session and its helpers took chunks of the same list
    with connect(db_dsn) as conn:
        assert dump(conn, org) == before  # every row, every column, as before the run

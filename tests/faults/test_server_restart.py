"""Scenario 2 — the PostgreSQL server restarted under the CLI, at random instants of a run and of a rollback.

A server of its own (the restarts would break every other test's database), two organisations migrated by two
workers, the real `hera-migrate` as a subprocess. The server is restarted with `fast` shutdown (sessions
terminated, clean) and with `immediate` shutdown (no clean shutdown: crash recovery at start) once the journal
shows the run (or the rollback) past a random point; then it is stopped outright until the runner gives up. The
contract allows two outcomes and the test accepts exactly those: the runner reconnects and finishes (exit 0), or
it exits 3 and `run --resume` (or `rollback` again) finishes. After every fault the exactly-once invariants hold;
at the end validation passes and the rollback restores both organisations exactly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.db.connect import connect
from runner.db.providers import LocalCluster, Server, start_local
from runner.errors import EXIT_OK, EXIT_RUNTIME
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import (
    LEDGER,
    Spawned,
    Tally,
    Watcher,
    audit,
    dump,
    dump_diff,
    fresh_database,
    pg_start,
    pg_stop,
    results,
    rows_in,
    spec_file,
    unexpected_total,
    wait_until,
)
from tests.integration.test_engine_support import candidate_ids

RUN = "run-restart"
TIMEOUT = 600.0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_local(prefer=os.environ.get("HERA_TEST_SERVER", "embedded"))
    try:
        yield srv
    finally:
        srv.stop()


def restart_at(proc: Spawned, cluster: LocalCluster, dsn: str, reached: str, target: int, mode: str,
               *, down: bool = False) -> bool:
    """Restart (or, `down`, stop until the runner gave up) once the journal counter `reached` passes `target`.
    False when the process finished before."""
    with Watcher(dsn, RUN) as w:
        if not wait_until(lambda: getattr(w.now(), reached) >= target, timeout=TIMEOUT, what=f"{reached} {target}",
                          proc=proc):
            return False
    pg_stop(cluster, mode)
    if down:
        proc.wait(TIMEOUT)  # the runner retries, cannot reconnect, gives up
    pg_start(cluster)
    return True


def moves_on(dsn: str, proc: Spawned, reached: str) -> bool:
    """True when the journal counter moves on while the process lives (it reconnected), False when it exits."""
    with Watcher(dsn, RUN) as w:
        at = getattr(w.now(), reached)
        return wait_until(lambda: getattr(w.now(), reached) > at, timeout=TIMEOUT, proc=proc,
                          what="the runner to move on or exit")


Fault = tuple[str, int, str, bool]  # journal counter, target, shutdown mode, stays down until the runner gives up


def chain(dsn: str, cluster: LocalCluster, first: list[str], again: list[str], faults: list[Fault], tally: Tally,
          logs: Path) -> list[str]:
    """One invocation after another through `faults`: after each fault the runner either reconnects (its journal
    counter moves on while it lives: the next fault hits the same process) or exits — 0 when it finished, 3 when it
    gave up, and then `again` continues. Ends with the work finished (exit 0)."""
    proc = Spawned(dsn, first, logs)
    outcomes: list[str] = []
    for reached, target, mode, down in faults:
        if not proc.alive():
            code = proc.wait()
            assert code in (EXIT_OK, EXIT_RUNTIME), proc.tail()
            assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.tail()
            if code == EXIT_OK:
                break
            tally.resumed += 1
            proc = Spawned(dsn, again, logs)
        if not restart_at(proc, cluster, dsn, reached, target, mode, down=down):
            assert proc.proc.returncode == EXIT_OK, proc.tail()
            break
        tally.faults += 1
        moved = moves_on(dsn, proc, reached)
        answer = ("reconnected and went on" if moved and proc.alive() else
                  f"exit {proc.wait()}" + (", resumed" if proc.proc.returncode == EXIT_RUNTIME else ""))
        outcomes.append(f"{first[0]}: {mode}{' outage' if down else ' restart'} at {reached} {target}: {answer}")
    code = proc.wait(TIMEOUT)
    assert code in (EXIT_OK, EXIT_RUNTIME), proc.tail()
    if code == EXIT_RUNTIME:
        tally.resumed += 1
        last = Spawned(dsn, again, logs)
        assert last.wait(TIMEOUT) == EXIT_OK, last.tail()
    return outcomes


def test_server_restarts_during_run_and_rollback(server: Server, tmp_path: Path) -> None:
    assert server.cluster is not None
    cluster = server.cluster
    dsn = fresh_database(server.dsn)
    orgs = [o.organization_id for o in generate(dsn, size="small", orgs=2, seed=111).organizations]
    path = spec_file(tmp_path, quick_retries=False)  # the Phase 7 back-off (1 s, doubling): it outlasts a restart
    spec = load_spec(path)
    with connect(dsn) as conn:
        want = {t: {i for o in orgs for i in candidate_ids(conn, o, spec, t)}
                for t in ("reverse_repost", "reporting_alias")}
        before = dump(conn, orgs)
    total = sum(len(v) for v in want.values())
    rng = random.Random(2)
    report = tmp_path / "report"
    logs = tmp_path / "logs"
    run = ["run", str(path), "--run-id", RUN, "--now", "--no-progress", "--report-dir", str(report),
           "--batch-size", "15", "--workers", "2"]
    resume = [*run, "--resume"]
    with LEDGER.scenario("server restarts (fast, immediate, outage)") as tally:
        targets = sorted(rng.sample(range(total // 10, total * 8 // 10), 3))
        faults: list[Fault] = [("done", targets[0], "fast", False), ("done", targets[1], "immediate", False),
                               ("done", targets[2], "immediate", True)]
        outcomes = chain(dsn, cluster, run, resume, faults, tally, logs)
        with connect(dsn) as conn:
            a = audit(conn, orgs, RUN)
        assert a.exactly_once() and a.originals == want["reverse_repost"] and a.aliases == want["reporting_alias"]
        tally.rows_checked += len(a.originals) + len(a.aliases)
        res = results(report)
        assert res["integrity_score"] == 100 and unexpected_total(res) == 0, res["diff"]

        rollback = ["rollback", RUN, "--no-progress"]
        rb_faults: list[Fault] = [("rollback_done", total * 3 // 10, "fast", False),
                                  ("rollback_done", total * 7 // 10, "immediate", False)]
        outcomes += chain(dsn, cluster, rollback, rollback, rb_faults, tally, logs)
        with connect(dsn) as conn:
            after = dump(conn, orgs)
        assert dump_diff(before, after) == {}
        tally.rows_checked += rows_in(before)
        tally.notes += outcomes
        assert tally.faults >= 5, outcomes

"""v1 traffic on the very rows being migrated (fast version of `nox -s faults` scenario 3).

1. The race HERA's reverse RPC makes possible: hera_txn_reverse_v1 inserts the `<code>-REV` twin first and only
   then updates (locks) the original, while a chunk locks its originals first and inserts their twins later. A v1
   reverse that arrives after a chunk locked X but before the chunk reversed X waits on X; the chunk then waits on
   the v1 twin's unique key. PostgreSQL breaks that cycle by aborting whoever checks first — the one that waited
   first, the v1 request — unless the migration gives up its wait sooner (its lock_timeout is below the server's
   deadlock_timeout) and retries the chunk. The window is made deterministic with a gate: a test-only trigger
   holds the chunk's first twin insert (a poll loop, not a lock, so the migration's own lock timeout does not
   fire) until the v1 request is seen waiting in pg_locks.
2. Random v1 users (reverse, void, emit, read) around the run's frontier while the pipeline runs: no v1 request
   fails in a way v1 alone would not fail, nothing is reversed twice, every candidate is migrated once or left to
   the v1 user who got there first, and the before/after diff classifies every row exactly as the ground truth
   says (v1 writes concurrent, a void that landed on an already migrated original unexpected, the rest expected).
"""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

from runner import contract, pipeline
from runner.db.connect import connect
from runner.engine import ChunkInfo, EngineHooks, run_migration
from runner.snapshot.extract import take_snapshot
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.faults.harness import (
    LEDGER,
    V1_EMIT,
    V1_REVERSE,
    V1Traffic,
    audit,
    migration_induced,
    misclassified,
    spec_file,
    wait_until,
)
from tests.integration.test_engine_support import candidate_ids, one

GATE = f"""
CREATE TABLE fault_gate (open boolean NOT NULL);
CREATE FUNCTION fault_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.created_by = '{contract.MIGRATION_ACTOR_ID}' AND NEW.transaction_code LIKE '%-REV' THEN
        WHILE NOT EXISTS (SELECT 1 FROM public.fault_gate WHERE open) LOOP
            PERFORM pg_sleep(0.005);  -- poll the gate (no lock wait: the migration's lock_timeout stays out of it)
        END LOOP;
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER zz_fault_gate BEFORE INSERT ON universal_transactions FOR EACH ROW EXECUTE FUNCTION fault_gate_wait();
"""


def _accounts(conn: psycopg.Connection[Any], org: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id::text FROM core_entities WHERE organization_id = %s "
                                       "AND lower(entity_type) = 'gl_account' ORDER BY id LIMIT 2", (org,))]


def test_a_v1_reverse_racing_a_chunk_is_not_the_deadlock_victim(db_dsn: str, tmp_path: Path) -> None:
    org = generate(db_dsn, size="small", seed=71).organizations[0].organization_id
    spec = load_spec(spec_file(tmp_path, narrow=True))
    with connect(db_dsn) as conn:
        ids = candidate_ids(conn, org, spec, "reverse_repost")
        conn.execute(GATE)
        conn.commit()
    victim = ids[7]  # in chunk 1 (the first 25 candidates in id order)
    actor = str(uuid.uuid4())
    outcome: dict[str, Any] = {}

    def migrate() -> None:
        try:
            outcome["run"] = run_migration(db_dsn, spec, run_id="run-race", workers=1, batch_size=25, now=True)
        except BaseException as exc:
            outcome["run_error"] = exc

    def v1_reverse(conn: psycopg.Connection[Any]) -> None:
        try:
            outcome["v1"] = one(conn, V1_REVERSE, (org, victim, "v1 user", actor))
        except psycopg.Error as exc:
            outcome["v1_error"] = (exc.sqlstate, str(exc).strip())

    with LEDGER.scenario("fast: v1 reverse racing a chunk") as tally, \
            connect(db_dsn, autocommit=True) as watch, connect(db_dsn, autocommit=True) as v1:
        runner = threading.Thread(target=migrate)
        runner.start()
        wait_until(lambda: watch.execute("SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'hera-migrate %' "
                                         "AND wait_event = 'PgSleep'").fetchone() is not None,
                   timeout=60, what="the chunk to reach its first reversal")
        client = threading.Thread(target=v1_reverse, args=(v1,))
        client.start()
        pid = v1.info.backend_pid
        wait_until(lambda: watch.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted",
                                         (pid,)).fetchone() is not None,
                   timeout=60, what="the v1 reverse to wait on the row the chunk holds")
        watch.execute("INSERT INTO fault_gate VALUES (true)")
        client.join(60)
        runner.join(120)
        assert not client.is_alive() and not runner.is_alive()
        assert "v1_error" not in outcome, f"the v1 request failed because of the migration: {outcome['v1_error']}"
        assert outcome["v1"]["success"] is True
        assert "run_error" not in outcome, outcome.get("run_error")
        got = outcome["run"].org(org)
        assert got.status == "completed" and got.session["retries"] >= 1  # the chunk yielded, then ran again
        with connect(db_dsn) as conn:
            a = audit(conn, [org], "run-race")
            by = one(conn, "SELECT created_by::text FROM universal_transactions WHERE metadata ->> 'reversal_of' = %s",
                     (victim,))
        assert a.exactly_once() and victim not in a.originals  # the v1 user got there first: theirs alone
        assert sorted(a.originals) == sorted(set(ids) - {victim}) and by == actor
        assert max(a.reversals.values()) == 1
        tally.faults, tally.rows_checked, tally.duplicates = 1, len(ids), a.duplicates


@pytest.mark.parametrize("seed", [5])
def test_v1_users_on_the_rows_being_migrated(db_dsn: str, tmp_path: Path, seed: int) -> None:
    org = generate(db_dsn, size="small", seed=73).organizations[0].organization_id
    spec_path = spec_file(tmp_path, narrow=True)
    spec = load_spec(spec_path)
    report = tmp_path / "report"
    with connect(db_dsn) as conn:
        ids = candidate_ids(conn, org, spec, "reverse_repost")
        accounts = _accounts(conn, org)
    take_snapshot(db_dsn, [org], report / pipeline.SNAPSHOT_FILE, "before")
    early: list[str] = []

    class EmitAfterFirstChunk(EngineHooks):
        """A v1 user emits an eligible transaction once the run is under way: the run's re-scan must migrate it
        and the diff must call it concurrent (it used to call it, its repost and its twin unexpected)."""

        def after_commit(self, info: ChunkInfo) -> None:
            if info.tier == "reverse_repost" and info.chunk == 1 and not early:
                with connect(db_dsn, autocommit=True) as conn:
                    early.append(str(one(conn, V1_EMIT, {"org": org, "code": "V1-EARLY", "amount": 10,
                                                         "dr": accounts[0], "cr": accounts[1],
                                                         "actor": traffic.actors[0]})))

    with LEDGER.scenario("fast: v1 users on migrating rows") as tally:
        traffic = V1Traffic(db_dsn, org, "run-v1", ids, accounts, users=3, seed=seed, window=30, max_ops=300)
        traffic.start()
        try:
            result = run_migration(db_dsn, spec, run_id="run-v1", workers=1, batch_size=20, now=True,
                                   hooks=EmitAfterFirstChunk())
        finally:
            traffic.finish()
        assert result.org(org).status == "completed"
        outcome = pipeline.validate(db_dsn, "run-v1", report, Console(file=io.StringIO()))
        ops = traffic.ops
        acted = {op.target for op in ops if op.kind in ("reverse", "void") and op.ok}
        assert len([op for op in ops if op.kind in ("reverse", "void")]) >= 30 and acted
        with connect(db_dsn) as conn:
            bad = migration_induced(traffic, conn)
            a = audit(conn, [org], "run-v1")
            late = {r[0] for r in conn.execute(
                "SELECT id::text FROM universal_transactions WHERE organization_id = %s AND transaction_status = "
                "'voided' AND metadata -> 'migration' ->> 'run_id' = 'run-v1'", (org,))}
        assert bad == [], [(op.kind, op.target, op.sqlstate, op.message) for op in bad]
        assert a.exactly_once() and max(a.reversals.values()) == 1  # nothing reversed twice, by anyone
        emitted = {op.result for op in ops if op.kind == "emit" and op.ok} | set(early)
        assert early and early[0] in a.originals  # emitted during the run, migrated by its re-scan
        assert set(ids) - a.originals <= acted  # a candidate the run left was taken by a v1 user first
        assert not (a.originals - set(ids) - emitted)
        wrong, truths = misclassified(report / pipeline.SNAPSHOT_FILE, "run-v1", traffic.actors)
        assert wrong == [], wrong[:10]
        assert truths["concurrent"] > 0 and truths["unexpected"] == len(late)
        assert outcome.exit_code == (1 if late else 0)
        tally.faults = len(ops)
        tally.rows_checked = sum(truths.values())
        tally.duplicates = a.duplicates
        tally.unexpected = len(wrong) + len(bad)
        tally.notes.append(f"{len(ops)} v1 requests, {len(traffic.errors())} refused as v1 refuses a second "
                           f"reversal, {len(late)} late void(s) flagged for review")

"""The engine under faults: a crash before commit and resume (exactly once), a concurrent writer holding a lock,
bad v1 rows quarantined and retried, transient errors retried, run-id and resume rules."""

from __future__ import annotations

import dataclasses
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors

from runner.db.connect import connect
from runner.engine import ChunkInfo, EngineHooks, RunFailed, run_migration, run_status
from runner.errors import UsageError
from runner.synth.generate import generate
from tests.integration.hera_helpers import Hera, named_call
from tests.integration.test_engine_support import (
    candidate_ids,
    dump,
    one,
    phase7,
    plan_candidates,
    run_rows,
)


class Crash(Exception):
    """Stands for the process dying: raised inside the chunk transaction, after its writes, before commit."""


class CrashAt(EngineHooks):
    def __init__(self, tier: str, chunk: int) -> None:
        self.tier, self.chunk = tier, chunk

    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        if info.tier == self.tier and info.chunk == self.chunk:
            # the chunk's writes are there, in this transaction
            assert one(conn, "SELECT count(*) FROM universal_transactions WHERE id = ANY(%s::uuid[]) "
                             "AND metadata ? 'migration'", (list(info.ids),)) == len(info.ids) > 0
            raise Crash(f"crash in {info.tier} chunk {info.chunk}")


@pytest.fixture
def org(db_dsn: str) -> str:
    return generate(db_dsn, size="small", seed=41).organizations[0].organization_id


def assert_exactly_once(dsn: str, org: str, run_id: str, expected: int) -> None:
    with connect(dsn) as conn:
        originals = run_rows(conn, org, run_id, "original")
        reposts = run_rows(conn, org, run_id, "repost")
        assert len(originals) == len(reposts) == expected
        assert len({r["metadata"]["migration"]["original_txn_id"] for r in reposts}) == expected
        twins = one(conn, "SELECT count(*) FROM universal_transactions WHERE organization_id = %s "
                          "AND metadata ->> 'reversal_reason' LIKE %s AND metadata ? 'reversal_of'",
                    (org, f"hera-migrate {run_id}:%"))
        assert twins == expected


def test_crash_before_commit_then_resume_exactly_once(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    planned = plan_candidates(db_dsn, spec, org)
    with pytest.raises(RunFailed) as failed:
        run_migration(db_dsn, spec, run_id="run-crash", workers=1, batch_size=25, now=True,
                      hooks=CrashAt("reverse_repost", 3))
    assert isinstance(failed.value.__cause__, Crash)
    assert failed.value.exit_code == 3
    half = failed.value.result.org(org)
    assert half.status == "failed" and half.migrated == 50  # chunks 1-2 committed, chunk 3 rolled back
    assert_exactly_once(db_dsn, org, "run-crash", 50)
    assert run_status(db_dsn, "run-crash").organizations[0].status == "failed"

    done = run_migration(db_dsn, spec, run_id="run-crash", resume=True, workers=1, batch_size=25, now=True)
    got = done.org(org)
    assert got.status == "completed"
    assert got.migrated == planned["reverse_repost"] and got.aliased == planned["reporting_alias"]
    assert got.session["migrated"] == planned["reverse_repost"] - 50
    assert got.candidates == planned
    assert_exactly_once(db_dsn, org, "run-crash", planned["reverse_repost"])

    # a finished run resumed again changes nothing at all (journal included)
    with connect(db_dsn) as conn:
        before = dump(conn, org, with_journal=True)
    again = run_migration(db_dsn, spec, run_id="run-crash", resume=True, workers=1, now=True)
    assert again.org(org).session["chunks"] == 0 and again.org(org).status == "completed"
    with connect(db_dsn) as conn:
        assert dump(conn, org, with_journal=True) == before


def test_crash_in_alias_tier_then_resume(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    planned = plan_candidates(db_dsn, spec, org)
    with pytest.raises(RunFailed):
        run_migration(db_dsn, spec, run_id="run-crash3", workers=1, batch_size=10, now=True,
                      hooks=CrashAt("reporting_alias", 2))
    done = run_migration(db_dsn, spec, run_id="run-crash3", resume=True, workers=1, now=True)
    assert done.org(org).aliased == planned["reporting_alias"]
    with connect(db_dsn) as conn:
        assert len(run_rows(conn, org, "run-crash3", "alias")) == planned["reporting_alias"]


def test_locked_candidate_is_skipped_then_resumed(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True, max_retries=1)
    with connect(db_dsn) as conn:
        victim = candidate_ids(conn, org, spec, "reverse_repost")[3]
    with connect(db_dsn) as writer:  # a v1 client holds the row
        writer.execute("SELECT 1 FROM universal_transactions WHERE id = %s FOR UPDATE", (victim,))
        t0 = time.monotonic()
        result = run_migration(db_dsn, spec, run_id="run-lock", workers=1, now=True)
        elapsed = time.monotonic() - t0
        got = result.org(org)
        assert got.status == "incomplete" and result.status == "incomplete"
        assert got.remaining == {"reverse_repost": 1, "reporting_alias": 0}
        assert elapsed < 30  # nothing waited on the lock beyond a short back-off
        with connect(db_dsn) as conn:
            assert one(conn, "SELECT metadata ? 'migration' FROM universal_transactions WHERE id = %s",
                       (victim,)) is False
        writer.rollback()
    resumed = run_migration(db_dsn, spec, run_id="run-lock", resume=True, workers=1, now=True)
    assert resumed.org(org).status == "completed" and resumed.org(org).session["migrated"] == 1
    with connect(db_dsn) as conn:
        assert one(conn, "SELECT metadata -> 'migration' ->> 'role' FROM universal_transactions WHERE id = %s",
                   (victim,)) == "original"


def test_locked_candidate_is_picked_up_by_a_later_pass(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    with connect(db_dsn) as conn:
        victim = candidate_ids(conn, org, spec, "reverse_repost")[0]
    writer = connect(db_dsn)
    writer.execute("SELECT 1 FROM universal_transactions WHERE id = %s FOR UPDATE", (victim,))

    class Release(EngineHooks):
        def after_commit(self, info: ChunkInfo) -> None:
            if info.chunk == 1:
                assert victim not in info.ids  # skipped while locked
                writer.rollback()  # the v1 client finishes

    try:
        result = run_migration(db_dsn, spec, run_id="run-later", workers=1, batch_size=30, now=True,
                               hooks=Release())
    finally:
        writer.close()
    assert result.org(org).status == "completed"
    with connect(db_dsn) as conn:
        assert one(conn, "SELECT metadata -> 'migration' ->> 'run_id' FROM universal_transactions WHERE id = %s",
                   (victim,)) == "run-later"


def test_bad_rows_quarantined_rest_migrated_and_retry_after_fix(db_dsn: str, org: str) -> None:
    spec = phase7()  # the FX case needs `posted` in scope
    planned = plan_candidates(db_dsn, spec, org)
    with connect(db_dsn) as conn:
        ids = candidate_ids(conn, org, spec, "reverse_repost")
        unbalanced, blocked, fx = ids[5], ids[17], ids[29]
        # 1. unbalanced GL lines (a line changed by hand)
        conn.execute("UPDATE universal_transaction_lines SET line_amount = line_amount + 1 WHERE id = "
                     "(SELECT id FROM universal_transaction_lines WHERE transaction_id = %s "
                     "AND smart_code LIKE '%%.GL.%%' ORDER BY line_number LIMIT 1)", (unbalanced,))
        # 2. HERA's reverse will fail: the -REV code it derives is taken (global UNIQUE) -> isolated by bisection
        code = one(conn, "SELECT transaction_code FROM universal_transactions WHERE id = %s", (blocked,))
        blocker = one(conn, "SELECT id FROM universal_transactions WHERE organization_id = %s "
                            "AND transaction_status = 'voided' LIMIT 1", (org,))
        conn.execute("UPDATE universal_transactions SET transaction_code = %s WHERE id = %s", (f"{code}-REV", blocker))
        # 3. posted in a foreign currency without FX fields (emit accepts it; the FX trigger checks only updates):
        #    rollback could never re-post it, so it must not be migrated
        accounts = [r[0] for r in conn.execute("SELECT id FROM core_entities WHERE organization_id = %s "
                                               "AND lower(entity_type) = 'gl_account' ORDER BY id LIMIT 2", (org,))]
        fx = str(named_call(conn, "hera_txn_emit_v1", p_organization_id=org, p_transaction_type="journal_entry",
                            p_smart_code="HERA.FINANCE.GL.TXN.JOURNAL.v1", p_transaction_code="FX-NO-RATE",
                            p_total_amount=Decimal(100), p_transaction_status="posted",
                            p_transaction_currency_code="EUR", p_base_currency_code="USD",
                            p_lines=Hera.gl_lines(accounts[0], accounts[1]), p_actor_user_id=uuid.uuid4()))
        conn.commit()
    result = run_migration(db_dsn, spec, run_id="run-q", workers=1, batch_size=40, now=True)
    got = result.org(org)
    assert got.status == "completed"
    reasons = {q.transaction_id: q for q in got.quarantine}
    assert set(reasons) == {unbalanced, blocked, fx}
    assert reasons[unbalanced].reason == "unbalanced"
    assert reasons[blocked].reason == "unique_violation" and reasons[blocked].sqlstate == "23505"
    assert reasons[fx].reason == "fx_incomplete"
    assert got.candidates["reverse_repost"] == planned["reverse_repost"] + 1  # the emitted FX row
    assert got.migrated == planned["reverse_repost"] - 2
    assert got.migrated + got.quarantined["reverse_repost"] == got.candidates["reverse_repost"]
    status = run_status(db_dsn, "run-q").organizations[0]
    assert status.quarantined["reverse_repost"] == 3 and status.quarantine_reasons["unbalanced"] == 1
    with connect(db_dsn) as conn:
        assert one(conn, "SELECT count(*) FROM universal_transactions WHERE id = ANY(%s::uuid[]) "
                         "AND metadata ? 'migration'", ([unbalanced, blocked, fx],)) == 0
    # a plain resume does not touch quarantined candidates
    again = run_migration(db_dsn, spec, run_id="run-q", resume=True, workers=1, now=True)
    assert again.org(org).session["migrated"] == 0 and again.org(org).quarantined_total == 3
    # fix two of them, retry: they migrate and leave the quarantine list; the third stays, with one more attempt
    with connect(db_dsn) as conn:
        conn.execute("UPDATE universal_transaction_lines SET line_amount = line_amount - 1 WHERE id = "
                     "(SELECT id FROM universal_transaction_lines WHERE transaction_id = %s "
                     "AND smart_code LIKE '%%.GL.%%' ORDER BY line_number LIMIT 1)", (unbalanced,))
        conn.execute("UPDATE universal_transactions SET transaction_code = transaction_code || '-X' WHERE id = %s",
                     (blocker,))
        conn.commit()
    retried = run_migration(db_dsn, spec, run_id="run-q", resume=True, retry_quarantined=True, workers=1, now=True)
    got = retried.org(org)
    assert got.session["migrated"] == 2 and got.migrated == planned["reverse_repost"]
    assert [(q.transaction_id, q.reason, q.attempts) for q in got.quarantine] == [(fx, "fx_incomplete", 2)]


class DeadlockOnce(EngineHooks):
    def __init__(self) -> None:
        self.raised = 0

    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        if info.tier == "reverse_repost" and self.raised < 2:
            self.raised += 1
            raise errors.DeadlockDetected("deadlock detected (injected)")


def test_transient_errors_are_retried(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True, max_retries=3)
    planned = plan_candidates(db_dsn, spec, org)
    hooks = DeadlockOnce()
    result = run_migration(db_dsn, spec, run_id="run-retry", workers=1, batch_size=40, now=True, hooks=hooks)
    got = result.org(org)
    assert hooks.raised == 2 and got.session["retries"] == 2
    assert got.status == "completed" and got.migrated == planned["reverse_repost"]
    assert_exactly_once(db_dsn, org, "run-retry", planned["reverse_repost"])


def test_retries_exhausted_fails_the_org_and_resume_finishes(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True, max_retries=1)
    hooks = DeadlockOnce()
    with pytest.raises(RunFailed) as failed:
        run_migration(db_dsn, spec, run_id="run-exhaust", workers=1, batch_size=40, now=True, hooks=hooks)
    assert failed.value.result.org(org).status == "failed"
    assert "gave up after 2 attempt" in (failed.value.result.org(org).error or "")
    assert run_status(db_dsn, "run-exhaust").status == "failed"
    done = run_migration(db_dsn, spec, run_id="run-exhaust", resume=True, workers=1, now=True)
    assert done.org(org).status == "completed"


def test_run_id_and_resume_rules(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    for bad in ("", "has space", "x" * 65, "semi;colon", "../up"):
        with pytest.raises(UsageError):
            run_migration(db_dsn, spec, run_id=bad, now=True)
    with pytest.raises(UsageError, match="no journal"):
        run_migration(db_dsn, spec, run_id="run-nope", resume=True, now=True)
    result = run_migration(db_dsn, spec, orgs=(org,), now=True)
    assert result.run_id.startswith("run-") and len(result.run_id) == len("run-20250101T000000Z-abcd")
    with pytest.raises(UsageError, match="already exists"):
        run_migration(db_dsn, spec, run_id=result.run_id, now=True)
    other = dataclasses.replace(spec, sha256="0" * 64)
    with pytest.raises(UsageError, match="sha256"):
        run_migration(db_dsn, other, run_id=result.run_id, resume=True, now=True)
    with pytest.raises(UsageError):
        run_status(db_dsn, "run-nope")


def test_status_reads_committed_progress_while_the_run_goes_on(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    seen: list[Any] = []

    class Peek(EngineHooks):
        def after_commit(self, info: ChunkInfo) -> None:
            if info.tier == "reverse_repost" and info.chunk == 2:
                seen.append(run_status(db_dsn, "run-peek"))  # another connection, the journal only

    result = run_migration(db_dsn, spec, run_id="run-peek", workers=1, batch_size=30, now=True, hooks=Peek())
    (status,) = seen
    st = status.organizations[0]
    assert (status.status, st.status, st.phase, st.migrated, st.aliased, st.chunks) == (
        "running", "running", "reverse_repost", 60, 0, 2)
    assert st.candidates == result.org(org).candidates and st.last_chunk_at is not None


def test_an_org_claimed_by_another_session_is_busy(db_dsn: str, org: str) -> None:
    from runner.engine.context import ADVISORY_LOCK_CLASS, advisory_key

    with connect(db_dsn, autocommit=True) as other:  # e.g. another runner process working on this org
        other.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS, advisory_key(org)))
        with pytest.raises(RunFailed) as failed:
            run_migration(db_dsn, phase7(narrow=True), run_id="run-busy", workers=1, now=True)
        assert failed.value.result.org(org).status == "busy"
    with connect(db_dsn) as conn:
        assert one(conn, "SELECT count(*) FROM universal_transactions WHERE organization_id = %s "
                         "AND metadata ? 'migration'", (org,)) == 0

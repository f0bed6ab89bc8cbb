"""Rollback restores the pre-run state exactly (full-row dumps of the six tables of the org), is idempotent and
resumable, works after a crashed half-run, and leaves rows changed by someone else after the run for review.

The one documented exception in every comparison: the run journal (the MIGRATION_RUN entity of the run and its
core_dynamic_data rows) stays as the audit trail of the run and its rollback.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from runner.db.connect import connect
from runner.engine import ChunkInfo, EngineHooks, RollbackFailed, RunFailed, rollback_run, run_migration, run_status
from runner.synth.generate import generate
from tests.integration.hera_helpers import named_call
from tests.integration.test_engine_support import dump, one, phase7, run_rows


class Crash(Exception):
    pass


class CrashAt(EngineHooks):
    def __init__(self, tier: str, chunk: int) -> None:
        self.tier, self.chunk = tier, chunk

    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        if info.tier == self.tier and info.chunk == self.chunk:
            raise Crash(f"crash in {info.tier} chunk {info.chunk}")


@pytest.fixture
def org(db_dsn: str) -> str:
    return generate(db_dsn, size="small", seed=51).organizations[0].organization_id


def snapshot(dsn: str, org: str, *, with_journal: bool = False) -> dict[str, list[Any]]:
    with connect(dsn) as conn:
        return dump(conn, org, with_journal=with_journal)


def test_rollback_restores_every_row_and_twice_is_a_noop(db_dsn: str, org: str) -> None:
    spec = phase7()
    before = snapshot(db_dsn, org)
    run = run_migration(db_dsn, spec, run_id="run-rb", workers=1, batch_size=150, now=True).org(org)
    assert run.migrated > 400 and run.aliased > 50
    assert snapshot(db_dsn, org) != before

    result = rollback_run(db_dsn, "run-rb", batch_size=150)
    got = result.org(org)
    assert (result.status, got.status, got.verified, got.problems, got.conflicts) == (
        "rolled_back", "rolled_back", True, [], [])
    assert got.originals_restored == got.reposts_deleted == got.reversals_deleted == run.migrated
    assert got.aliases_restored == run.aliased
    assert snapshot(db_dsn, org) == before  # every row of the org, every column, except the journal
    assert run_status(db_dsn, "run-rb").status == "rolled_back"

    with_journal = snapshot(db_dsn, org, with_journal=True)
    again = rollback_run(db_dsn, "run-rb").org(org)
    assert (again.status, again.originals_restored, again.aliases_restored, again.verified) == (
        "rolled_back", 0, 0, True)
    assert snapshot(db_dsn, org, with_journal=True) == with_journal  # nothing written the second time


def test_rollback_after_a_crashed_half_run(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    before = snapshot(db_dsn, org)
    with pytest.raises(RunFailed):
        run_migration(db_dsn, spec, run_id="run-half", workers=1, batch_size=25, now=True,
                      hooks=CrashAt("reverse_repost", 3))
    result = rollback_run(db_dsn, "run-half")
    assert result.org(org).originals_restored == 50 and result.org(org).verified
    assert snapshot(db_dsn, org) == before


def test_rollback_is_resumable_after_a_crash_of_its_own(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    before = snapshot(db_dsn, org)
    run_migration(db_dsn, spec, run_id="run-rr", workers=1, now=True)
    with pytest.raises(RollbackFailed) as failed:
        rollback_run(db_dsn, "run-rr", batch_size=25, hooks=CrashAt("rollback", 2))
    assert failed.value.result.org(org).originals_restored == 25
    assert snapshot(db_dsn, org) != before
    result = rollback_run(db_dsn, "run-rr", batch_size=25)
    assert result.status == "rolled_back" and result.org(org).verified
    assert snapshot(db_dsn, org) == before


def test_rows_changed_after_the_run_are_conflicts_left_as_they_are(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    before = snapshot(db_dsn, org)
    run_migration(db_dsn, spec, run_id="run-cf", workers=1, now=True)
    with connect(db_dsn) as conn:
        original = run_rows(conn, org, "run-cf", "original")[7]
        alias = run_rows(conn, org, "run-cf", "alias")[3]
        # a v1 client edits both rows through HERA after the migration (another actor, version + 1)
        patch = {"metadata": {**original["metadata"], "note": "edited after the migration"}}
        assert named_call(conn, "hera_txn_update_v1", p_organization_id=org, p_transaction_id=original["id"],
                          p_patch=patch, p_actor_user_id="11111111-1111-4111-8111-111111111111")["success"]
        conn.execute("UPDATE universal_transactions SET reference_number = 'changed', updated_at = now(), "
                     "updated_by = '11111111-1111-4111-8111-111111111111' WHERE id = %s", (alias["id"],))
        # and posts a new v1 transaction, which the rollback must leave alone
        new_txn = named_call(conn, "hera_txn_emit_v1", p_organization_id=org, p_transaction_type="journal_entry",
                             p_smart_code="HERA.FINANCE.GL.TXN.JOURNAL.v1", p_transaction_code="AFTER-RUN-1",
                             p_transaction_status="posted", p_actor_user_id="11111111-1111-4111-8111-111111111111")
        conn.commit()
        edited = {str(r[0]): r[1] for r in conn.execute(
            "SELECT id, to_jsonb(t) FROM universal_transactions t WHERE id = ANY(%s::uuid[])",
            ([str(x) for x in (original["id"], alias["id"], original["metadata"]["migration"]["repost_id"],
                               original["metadata"]["migration"]["reversal_id"])],))}
    result = rollback_run(db_dsn, "run-cf")
    got = result.org(org)
    assert result.status == got.status == "requires_review"
    assert {(c.transaction_id, c.role) for c in got.conflicts} == {(str(original["id"]), "original"),
                                                                   (str(alias["id"]), "alias")}
    assert got.verified  # nothing of the run is left but the conflicts
    after = snapshot(db_dsn, org)
    with connect(db_dsn) as conn:  # the conflicting groups are exactly as the concurrent writer left them
        now = {str(r[0]): r[1] for r in conn.execute(
            "SELECT id, to_jsonb(t) FROM universal_transactions t WHERE id = ANY(%s::uuid[])", (list(edited),))}
        assert now == edited
        assert one(conn, "SELECT count(*) FROM universal_transaction_lines WHERE transaction_id = ANY(%s::uuid[])",
                   (list(edited),)) > 0
    kept = set(edited) | {str(new_txn)}
    assert str(new_txn) in {r["id"] for r in after["universal_transactions"]}
    for table in ("universal_transactions", "universal_transaction_lines"):
        key = "id" if table == "universal_transactions" else "transaction_id"
        strip = [r for r in after[table] if r[key] not in kept]
        assert strip == [r for r in before[table] if r[key] not in kept], table
    assert run_status(db_dsn, "run-cf").status == "requires_review"


def test_a_restore_that_does_not_give_back_the_preimage_fails_the_chunk_and_writes_nothing(db_dsn: str,
                                                                                          org: str) -> None:
    # The restore statement itself compares each row as stored (after every BEFORE trigger) with its pre-image: a
    # trigger that changes what the rollback writes must stop the chunk, not slip through.
    spec = phase7(narrow=True)
    before = snapshot(db_dsn, org)
    run_migration(db_dsn, spec, run_id="run-pi", workers=1, now=True)
    with connect(db_dsn) as conn:
        target = str(run_rows(conn, org, "run-pi", "original")[4]["id"])
        conn.execute("CREATE FUNCTION test_bend_restore() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "NEW.transaction_status := 'bent'; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER zz_bend_restore BEFORE UPDATE ON universal_transactions FOR EACH ROW "
                     f"WHEN (NEW.id = '{target}'::uuid AND NOT NEW.metadata ? 'migration') "
                     "EXECUTE FUNCTION test_bend_restore()")
        conn.commit()
        migrated = snapshot(db_dsn, org, with_journal=True)
    with pytest.raises(RollbackFailed, match="differing from their pre-image") as failed:
        rollback_run(db_dsn, "run-pi", batch_size=1000)
    assert target in str(failed.value)
    assert snapshot(db_dsn, org, with_journal=True) == migrated  # the one chunk rolled back: nothing restored
    with connect(db_dsn) as conn:
        conn.execute("DROP TRIGGER zz_bend_restore ON universal_transactions")
        conn.execute("DROP FUNCTION test_bend_restore()")
        conn.commit()
    assert rollback_run(db_dsn, "run-pi").status == "rolled_back"
    assert snapshot(db_dsn, org) == before

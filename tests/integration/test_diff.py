"""The expected-effect diff on a real PostgreSQL: a migration simulated by hand with HERA's own RPCs, concurrent
v1 traffic by another actor, and deliberate tampering; every difference must land in the right class."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from runner import contract
from runner.db.connect import connect
from runner.snapshot import diff as diff_module
from runner.snapshot.diff import DiffResult, diff
from runner.snapshot.extract import take_snapshot
from runner.synth.generate import generate
from tests.integration.hera_helpers import Hera, named_call
from tests.tools.diffrows import diff_rows

ACTOR = contract.MIGRATION_ACTOR_ID
RUN = "run-test-0001"
V2_SUFFIX = r"regexp_replace(h.smart_code, '\.[vV][0-9]+$', '.v2')"


def _one(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def reverse_and_repost(conn: psycopg.Connection[Any], org: str, txn: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """What the engine does for one tier-2 original: pre-image, HERA reverse, v2 emit, migration marker."""
    pre = _one(conn, """SELECT to_jsonb(p) FROM (SELECT smart_code, smart_code_status, transaction_status, metadata,
                                                        version, updated_at, updated_by
                                                   FROM universal_transactions WHERE id = %s) p""", (txn,))
    reversal = named_call(conn, "hera_txn_reverse_v1", p_organization_id=org, p_transaction_id=txn,
                          p_reason="finance dna v2", p_actor_user_id=ACTOR)
    assert reversal["success"], reversal
    repost = _one(conn, f"""
        SELECT hera_txn_emit_v1(
                 p_organization_id => h.organization_id, p_transaction_type => h.transaction_type,
                 p_smart_code => {V2_SUFFIX}::varchar, p_transaction_code => h.transaction_code || '-V2',
                 p_transaction_date => h.transaction_date, p_total_amount => h.total_amount,
                 p_source_entity_id => h.source_entity_id, p_target_entity_id => h.target_entity_id,
                 p_transaction_status => %(status)s,
                 p_metadata => %(pre_meta)s::jsonb || jsonb_build_object('migration', jsonb_build_object(
                     'run_id', %(run)s::text, 'original_txn_id', h.id, 'tier', 'reverse_repost',
                     'role', 'repost', 'spec', 'finance-dna-v2')),
                 p_transaction_currency_code => h.transaction_currency_code,
                 p_base_currency_code => h.base_currency_code, p_exchange_rate => h.exchange_rate,
                 p_exchange_rate_date => h.exchange_rate_date, p_exchange_rate_type => h.exchange_rate_type,
                 p_lines => (SELECT jsonb_agg(l.line_data || jsonb_build_object(
                                 'line_number', l.line_number, 'entity_id', l.entity_id, 'line_type', l.line_type,
                                 'description', l.description, 'quantity', l.quantity, 'unit_amount', l.unit_amount,
                                 'line_amount', l.line_amount, 'smart_code', l.smart_code) ORDER BY l.line_number)
                               FROM universal_transaction_lines l WHERE l.transaction_id = h.id),
                 p_actor_user_id => %(actor)s)
          FROM universal_transactions h WHERE h.id = %(id)s""",
                  {"id": txn, "run": RUN, "actor": ACTOR, "status": pre["transaction_status"],
                   "pre_meta": Jsonb(pre["metadata"])})
    conn.execute("""UPDATE universal_transactions
                       SET metadata = metadata || jsonb_build_object('migration', jsonb_build_object(
                               'run_id', %(run)s::text, 'role', 'original', 'repost_id', %(repost)s::uuid,
                               'reversal_id', %(rev)s::uuid, 'tier', 'reverse_repost', 'pre', %(pre)s::jsonb)),
                           updated_by = %(actor)s
                     WHERE id = %(id)s""",
                 {"run": RUN, "repost": repost, "rev": reversal["reversal_id"], "pre": Jsonb(pre), "id": txn,
                  "actor": ACTOR})
    return uuid.UUID(reversal["reversal_id"]), repost


def alias(conn: psycopg.Connection[Any], txn: uuid.UUID) -> None:
    """Tier 3 as the engine writes it: metadata only, smart code byte-identical (listed when canonical)."""
    conn.execute(f"""UPDATE universal_transactions AS h
                        SET smart_code = h.smart_code,
                            metadata = h.metadata || jsonb_build_object(
                                'reporting_smartcode', {V2_SUFFIX},
                                'migration', jsonb_build_object('run_id', %(run)s::text, 'role', 'alias',
                                                                'tier', 'reporting_alias', 'actor', %(actor)s::uuid,
                                                                'pre', jsonb_build_object()))
                      WHERE h.id = %(id)s""", {"run": RUN, "actor": ACTOR, "id": txn})


def journal_and_entities(conn: psycopg.Connection[Any], org: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The run journal (entity + 2 fields), one posting-rule entity migrated with its policy_config, org settings."""
    hera = Hera(conn=conn, actor=ACTOR)
    journal = hera.entity(uuid.UUID(org), contract.JOURNAL_ENTITY_TYPE, smart_code=contract.JOURNAL_SMART_CODE,
                          entity_code=RUN, entity_name=f"migration {RUN}")
    for field, code in (("checkpoint:reverse_repost", contract.CHECKPOINT_SMART_CODE),
                        ("quarantine:00000000-0000-0000-0000-000000000001", contract.QUARANTINE_SMART_CODE)):
        hera.insert("core_dynamic_data", organization_id=org, entity_id=journal, field_name=field, field_type="json",
                    field_value_json={"done": 3}, smart_code=code, created_by=ACTOR, updated_by=ACTOR)
    policy = _one(conn, """SELECT id FROM core_entities WHERE organization_id = %s AND entity_type = 'financial_policy'
                            ORDER BY entity_code LIMIT 1""", (org,))
    conn.execute(r"""UPDATE core_entities
                        SET smart_code = regexp_replace(smart_code, '\.v1$', '.v2'), version = version + 1,
                            metadata = metadata || jsonb_build_object('migration', jsonb_build_object(
                                'run_id', %(run)s::text, 'role', 'entity', 'pre', jsonb_build_object(
                                    'smart_code', smart_code, 'metadata', metadata, 'version', version,
                                    'updated_at', updated_at, 'updated_by', updated_by))),
                            updated_by = %(actor)s, updated_at = now()
                      WHERE id = %(id)s""", {"run": RUN, "actor": ACTOR, "id": policy})
    cur = conn.execute("""UPDATE core_dynamic_data SET field_value_json = field_value_json || '{"v2": true}',
                                 updated_by = %s WHERE entity_id = %s AND field_name = 'policy_config'""",
                       (ACTOR, policy))
    assert cur.rowcount == 1
    conn.execute("""UPDATE core_organizations SET settings = settings || '{"finance_dna_version": "v2"}',
                           updated_by = %s, updated_at = now() WHERE id = %s""", (ACTOR, org))
    return journal, policy


@pytest.fixture
def scenario(db_dsn: str, tmp_path: Path) -> dict[str, Any]:
    org = generate(db_dsn, size="small", seed=21).organizations[0].organization_id
    path = tmp_path / "snapshots.duckdb"
    other = uuid.uuid4()
    with connect(db_dsn, autocommit=True) as conn:
        picks = [r[0] for r in conn.execute(
            """SELECT id FROM universal_transactions
                WHERE organization_id = %s AND transaction_status = 'posted' AND smart_code LIKE '%%.v1'
                  AND NOT metadata ?| ARRAY['reversal_of', 'reversal_id'] ORDER BY transaction_code LIMIT 6""",
            (org,))]
        t1, t2, t3, t4, t5, t6 = picks
        # A number beyond double precision in the alias row's metadata (v1 data, before the snapshot).
        conn.execute("UPDATE universal_transactions SET metadata = metadata || '{\"fx\": 12345678901234.56789012}', "
                     "updated_by = %s WHERE id = %s", (other, t4))
    take_snapshot(db_dsn, [org], path, "before")
    with connect(db_dsn, autocommit=True) as conn:
        lines = {t: _one(conn, "SELECT count(*) FROM universal_transaction_lines WHERE transaction_id = %s", (t,))
                 for t in picks}
        pairs = {t: reverse_and_repost(conn, org, t) for t in (t1, t2, t3)}
        alias(conn, t4)
        journal, policy = journal_and_entities(conn, org)
        # Deliberate tampering by the migration actor: an original's header column and an original's line.
        conn.execute("UPDATE universal_transactions SET reference_number = 'tampered', updated_by = %s "
                     "WHERE id = %s", (ACTOR, t3))
        tampered_line = _one(conn, """UPDATE universal_transaction_lines SET line_amount = line_amount + 1,
                                             updated_by = %s WHERE transaction_id = %s AND line_number = 1
                                      RETURNING id""", (ACTOR, t2))
        # Concurrent v1 traffic by another actor: a new journal, an edit, a deletion, a relationship change.
        accounts = [r[0] for r in conn.execute("SELECT id FROM core_entities WHERE organization_id = %s AND "
                                               "lower(entity_type) = 'gl_account' ORDER BY id LIMIT 2", (org,))]
        v1 = Hera(conn=conn, actor=other)
        new_txn = v1.emit(uuid.UUID(org), lines=Hera.gl_lines(accounts[0], accounts[1], 50),
                          p_transaction_code=f"CONC-{uuid.uuid4().hex[:8]}")
        conn.execute("UPDATE universal_transactions SET reference_number = 'edited', updated_by = %s WHERE id = %s",
                     (other, t5))
        conn.execute("DELETE FROM universal_transactions WHERE id = %s", (t6,))
        rel = _one(conn, "UPDATE core_relationships SET relationship_strength = 0.5, updated_by = %s WHERE id = "
                         "(SELECT min(id::text)::uuid FROM core_relationships WHERE organization_id = %s) "
                         "RETURNING id", (other, org))
    take_snapshot(db_dsn, [org], path, "after")
    return {"dsn": db_dsn, "org": org, "path": path, "t": picks, "lines": lines, "pairs": pairs,
            "journal": journal, "policy": policy, "tampered_line": tampered_line, "new_txn": new_txn, "rel": rel,
            "other": other}


def _ids(result: DiffResult, cls: str, table: str) -> set[str]:
    return {s.record_id for s in result.samples.get(cls, {}).get(table, [])}


def test_every_difference_is_classified(scenario: dict[str, Any]) -> None:
    s = scenario
    t1, t2, t3, t4, t5, t6 = s["t"]
    result = diff(s["path"], RUN, samples=50)
    migrated_lines = sum(s["lines"][t] for t in (t1, t2, t3))
    assert result.counts["expected"] == {
        "core_organizations": 1, "core_entities": 2, "core_dynamic_data": 3, "core_relationships": 0,
        "universal_transactions": 2 + 3 + 3 + 1,  # originals t1, t2; 3 twins; 3 reposts; alias t4
        "universal_transaction_lines": 2 * migrated_lines}
    assert result.counts["unexpected"] == {
        "core_organizations": 0, "core_entities": 0, "core_dynamic_data": 0, "core_relationships": 0,
        "universal_transactions": 1, "universal_transaction_lines": 1}
    assert result.counts["concurrent"] == {
        "core_organizations": 0, "core_entities": 0, "core_dynamic_data": 0, "core_relationships": 1,
        "universal_transactions": 3, "universal_transaction_lines": 2 + s["lines"][t6]}
    assert not result.ok

    twins = {str(rev) for rev, _ in s["pairs"].values()}
    reposts = {str(rep) for _, rep in s["pairs"].values()}
    assert _ids(result, "expected", "universal_transactions") == {str(t1), str(t2), str(t4)} | twins | reposts
    assert _ids(result, "expected", "core_entities") == {str(s["journal"]), str(s["policy"])}
    [tampered] = result.samples["unexpected"]["universal_transactions"]
    assert (tampered.record_id, tampered.kind) == (str(t3), "updated")
    assert "reference_number" in tampered.changed_columns and "reference_number" in tampered.reason
    assert tampered.organization_id == s["org"]
    [line] = result.samples["unexpected"]["universal_transaction_lines"]
    assert (line.record_id, line.transaction_id, line.changed_columns) == (
        str(s["tampered_line"]), str(t2), ["line_amount", "updated_by"])
    conc = result.samples["concurrent"]["universal_transactions"]
    assert {(c.record_id, c.kind) for c in conc} == {(str(s["new_txn"]), "inserted"), (str(t5), "updated"),
                                                     (str(t6), "deleted")}
    assert _ids(result, "concurrent", "core_relationships") == {str(s["rel"])}
    assert result.by_kind["concurrent"]["universal_transaction_lines"] == {
        "inserted": 2, "updated": 0, "deleted": s["lines"][t6]}

    shaped = result.as_dict()
    assert shaped["unexpected"]["universal_transactions"] == 1
    assert shaped["details"]["totals"]["unexpected"] == 2
    assert shaped["samples"]["unexpected"]["universal_transactions"][0]["record_id"] == str(t3)


def test_pre_image_and_late_writes_break_the_proof(scenario: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong pre-image, another actor editing a migrated original, and a deleted repost are all unexpected."""
    s = scenario
    t1, t2, t3, t4, *_ = s["t"]
    with connect(s["dsn"], autocommit=True) as conn:
        conn.execute("""UPDATE universal_transactions
                           SET metadata = jsonb_set(metadata, '{migration,pre,version}', '99'), updated_by = %s
                         WHERE id = %s""", (ACTOR, t1))
        conn.execute("UPDATE universal_transactions SET approval_required = true, updated_by = %s WHERE id = %s",
                     (s["other"], t2))
        conn.execute("DELETE FROM universal_transactions WHERE id = %s", (s["pairs"][t3][1],))
        # The alias row's number changed in its 17th significant digit: only exact jsonb text notices.
        conn.execute("UPDATE universal_transactions SET metadata = jsonb_set(metadata, '{fx}', "
                     "'12345678901234.56789013') WHERE id = %s", (t4,))
        # Another actor edits a -REV twin the run inserted: no longer HERA's reversal of the original.
        conn.execute("UPDATE universal_transactions SET reference_number = 'late edit', updated_by = %s "
                     "WHERE id = %s", (s["other"], s["pairs"][t2][0]))
        twin_line = _one(conn, "UPDATE universal_transaction_lines SET line_amount = line_amount - 1 "
                               "WHERE transaction_id = %s AND line_number = 1 RETURNING id", (s["pairs"][t1][0],))
        rel = _one(conn, "UPDATE core_relationships SET is_active = false, updated_by = %s WHERE id = "
                         "(SELECT max(id::text)::uuid FROM core_relationships WHERE organization_id = %s) "
                         "RETURNING id", (ACTOR, s["org"]))
    take_snapshot(s["dsn"], [s["org"]], s["path"], "after")  # re-taking replaces the earlier after snapshot
    result = diff(s["path"], RUN, samples=50)
    reasons = {x.record_id: x.reason for x in result.samples["unexpected"]["universal_transactions"]}
    assert set(reasons) == {str(t1), str(t2), str(t3), str(t4), str(s["pairs"][t2][0])}
    assert "differs from its original in: reference_number" in reasons[str(s["pairs"][t2][0])]
    assert "metadata changed beyond reporting_smartcode + migration" in reasons[str(t4)]
    assert "pre differs from the before row in: version" in reasons[str(t1)]
    assert "approval_required" in reasons[str(t2)] and "updated_by is not the migration actor" in reasons[str(t2)]
    assert "its repost (migration.repost_id) is not a new repost" in reasons[str(t3)]
    assert result.counts["expected"]["universal_transactions"] == 2 + 2  # twins of t1/t3, 2 reposts left
    [bad_line] = [x for x in result.samples["unexpected"]["universal_transaction_lines"] if x.kind == "inserted"]
    assert bad_line.record_id == str(twin_line) and "does not mirror original line 1" in bad_line.reason
    [actor_rel] = result.samples["unexpected"]["core_relationships"]
    assert actor_rel.record_id == str(rel) and "never writes relationships" in actor_rel.reason
    _same_in_small_buckets(s["path"], result, monkeypatch)  # broken pairings find the same (missing) partners


def _same_in_small_buckets(path: Path, whole: DiffResult, monkeypatch: pytest.MonkeyPatch) -> None:
    """Classifying in many small hash buckets (how a large organisation is classified within DuckDB's memory
    budget) gives every row the same class, kind, changed columns and reason as one statement per table."""
    one_statement = diff_rows(path)
    monkeypatch.setattr(diff_module, "BUCKET_PAIRS", 1)  # every table in about as many buckets as it has pairs
    bucketed = diff(path, RUN, samples=50)
    assert diff_rows(path) == one_statement and len(one_statement) > 20
    assert bucketed.counts == whole.counts and bucketed.by_kind == whole.by_kind


def test_bucketed_classification_is_the_same_row_for_row(scenario: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The twins and reposts are bucketed with their originals (and their lines with the originals' lines), so
    the cross-reference lookups cut to a bucket still find them."""
    _same_in_small_buckets(scenario["path"], diff(scenario["path"], RUN, samples=50), monkeypatch)

"""The built-in and custom checks on real PostgreSQL: a faithful migration passes every check; one corruption at a
time fails exactly the checks that can see it, naming the right record; a custom check with broken SQL reports
status "error" and the validation goes on.

The migration is done by hand here, exactly as the correlation contract says (runner/contract.py, docs/contract.md §6):
HERA's hera_txn_reverse_v1 for the -REV twin, hera_txn_emit_v1 for the v2 repost with metadata.migration, the
original marked with its pre-image; alias rows get metadata.reporting_smartcode; entities go through the
engine's migrate_entities. A module-scoped database holds that state and every test works on its own clone.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from runner import contract
from runner.db.connect import connect, with_database
from runner.db.providers import Server
from runner.engine.entities import migrate_entities
from runner.snapshot.extract import take_snapshot
from runner.spec import Spec, load_spec
from runner.spec.model import CustomCheck
from runner.synth.generate import generate
from runner.validate.validation import checks_on, run_checks
from tests.conftest import create_database, drop_database
from tests.integration.hera_helpers import named_call

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
RUN = "run-validate-1"
ACTOR = contract.MIGRATION_ACTOR_ID
TIER2 = ("HERA.FINANCE.GL.TXN.JOURNAL.v1", "HERA.ACCOUNTING.AR.TXN.CUSTOMER_INVOICE.v1", "HERA.SALON.POS.TXN.SALE.v1")
ALIAS = ("HERA.SALON.INVENTORY.TXN.ISSUE.v1",)
BUILTIN = ("gl_balanced", "one_reversal_one_repost", "reversal_nets_to_zero", "trial_balance_unchanged",
           "count_amount_reconciliation", "v2_code_matches_mapping", "lines_preserved", "closed_period_untouched",
           "no_cross_org_references", "alias_only_metadata", "entity_transform_matches")


def phase7(*custom: CustomCheck) -> Spec:
    spec = load_spec(PHASE7)
    return dataclasses.replace(spec, validations=dataclasses.replace(spec.validations, custom=tuple(custom)))


@dataclass
class Migrated:
    org: str
    other_org: str
    other_entity: str
    closed_period: str
    journal: str
    originals: list[str] = field(default_factory=list)
    reposts: dict[str, str] = field(default_factory=dict)  # original -> repost
    reversals: dict[str, str] = field(default_factory=dict)  # original -> reversal
    aliases: list[str] = field(default_factory=list)
    quarantined: str = ""
    posting_rule: str = ""
    fiscal_period_entity: str = ""


def candidates(conn: psycopg.Connection[Any], org: str, code: str, n: int, skip: int = 0) -> list[str]:
    rows = conn.execute(
        r"""SELECT h.id::text
              FROM universal_transactions h
              LEFT JOIN core_entities p ON p.id = h.fiscal_period_entity_id
             WHERE h.organization_id = %s
               AND regexp_replace(upper(h.smart_code), '\.V([0-9]+)$', '.v\1') = %s
               AND lower(h.transaction_status) IN ('posted', 'completed')
               AND NOT h.metadata ?| ARRAY['reversal_of', 'reversal_id', 'migration']
               AND (p.id IS NULL OR lower(coalesce(p.metadata ->> 'status', p.status)) = 'open')
               AND EXISTS (SELECT 1 FROM universal_transaction_lines l WHERE l.transaction_id = h.id)
             ORDER BY h.id LIMIT %s OFFSET %s""", (org, code, n, skip)).fetchall()
    assert len(rows) == n, f"not enough {code} candidates"
    return [r[0] for r in rows]


def migrate_original(conn: psycopg.Connection[Any], spec: Spec, org: str, oid: str) -> tuple[str, str]:
    """Tier 2 for one original, the way the contract (and the engine) does it."""
    pre = conn.execute("SELECT to_jsonb(p) FROM (SELECT h.smart_code, h.smart_code_status, h.transaction_status, "
                       "h.metadata, h.version, h.updated_at, h.updated_by FROM universal_transactions h "
                       "WHERE h.id = %s) p", (oid,)).fetchone()
    assert pre is not None
    with conn.cursor(row_factory=dict_row) as cur:
        h = cur.execute("SELECT * FROM universal_transactions WHERE id = %s", (oid,)).fetchone()
        lines = cur.execute("SELECT * FROM universal_transaction_lines WHERE transaction_id = %s "
                            "ORDER BY line_number", (oid,)).fetchall()
    assert h is not None
    res = spec.resolve(h["smart_code"])
    assert res is not None and res.mapping.tier == "reverse_repost"
    reversal = named_call(conn, "hera_txn_reverse_v1", p_organization_id=org, p_transaction_id=oid,
                          p_reversal_date=h["transaction_date"], p_reason=f"hera-migrate {RUN}",
                          p_actor_user_id=ACTOR)
    assert reversal["success"], reversal
    repost_lines = []
    for line in lines:
        side = (line["line_data"] or {}).get("side")
        repost_lines.append({**(line["line_data"] or {}), "line_number": line["line_number"],
                             "entity_id": str(line["entity_id"]) if line["entity_id"] else None,
                             "line_type": line["line_type"], "description": line["description"],
                             "quantity": str(line["quantity"]), "unit_amount": str(line["unit_amount"]),
                             "line_amount": str(line["line_amount"]), "discount_amount": str(line["discount_amount"]),
                             "tax_amount": str(line["tax_amount"]),
                             "smart_code": res.mapping.line_code(line["smart_code"], side, line["line_type"])})
    migration = {"run_id": RUN, "original_txn_id": oid, "tier": "reverse_repost", "role": "repost",
                 "spec": {"name": spec.name, "sha256": spec.sha256}, "actor": str(ACTOR)}
    repost = named_call(
        conn, "hera_txn_emit_v1", p_organization_id=org, p_transaction_type=h["transaction_type"],
        p_smart_code=res.target, p_transaction_code=f"{h['transaction_code']}-V2",
        p_transaction_date=h["transaction_date"], p_source_entity_id=h["source_entity_id"],
        p_target_entity_id=h["target_entity_id"], p_total_amount=h["total_amount"],
        p_transaction_status=h["transaction_status"], p_reference_number=h["reference_number"],
        p_business_context=h["business_context"] or {},
        p_metadata={**(h["metadata"] or {}), "migration": migration},
        p_transaction_currency_code=h["transaction_currency_code"], p_base_currency_code=h["base_currency_code"],
        p_exchange_rate=h["exchange_rate"], p_exchange_rate_date=h["exchange_rate_date"],
        p_exchange_rate_type=h["exchange_rate_type"], p_fiscal_period_entity_id=h["fiscal_period_entity_id"],
        p_fiscal_year=h["fiscal_year"], p_fiscal_period=h["fiscal_period"],
        p_posting_period_code=h["posting_period_code"], p_lines=repost_lines, p_actor_user_id=ACTOR)
    mark = {"run_id": RUN, "role": "original", "tier": "reverse_repost", "repost_id": str(repost),
            "reversal_id": reversal["reversal_id"], "spec": {"name": spec.name, "sha256": spec.sha256},
            "actor": str(ACTOR), "pre": pre[0]}
    # as the engine's mark: HERA's reverse leaves updated_by alone, the mark stamps the migration actor
    conn.execute("UPDATE universal_transactions SET updated_by = %s, metadata = coalesce(metadata, '{}'::jsonb) "
                 "|| jsonb_build_object('migration', %s::jsonb) WHERE organization_id = %s AND id = %s",
                 (ACTOR, Jsonb(mark), org, oid))
    return str(repost), str(reversal["reversal_id"])


def alias(conn: psycopg.Connection[Any], spec: Spec, org: str, tid: str) -> None:
    code = conn.execute("SELECT smart_code FROM universal_transactions WHERE id = %s", (tid,)).fetchone()
    assert code is not None
    res = spec.resolve(code[0])
    assert res is not None and res.mapping.tier == "reporting_alias"
    keep = "smart_code = smart_code, " if code[0].endswith(".v1") else ""
    mark = {"run_id": RUN, "role": "alias", "tier": "reporting_alias", "actor": str(ACTOR), "pre": {}}
    conn.execute(f"UPDATE universal_transactions SET {keep}metadata = coalesce(metadata, '{{}}'::jsonb) "
                 "|| jsonb_build_object('reporting_smartcode', %s::text, 'migration', %s::jsonb) "
                 "WHERE organization_id = %s AND id = %s", (res.target, Jsonb(mark), org, tid))


def build(dsn: str, before_snapshot: Path | None = None) -> Migrated:
    spec = phase7()
    org = generate(dsn, size="small", seed=17).organizations[0].organization_id
    if before_snapshot is not None:
        take_snapshot(dsn, [org], before_snapshot, "before")
    with connect(dsn) as conn:
        other = conn.execute("INSERT INTO core_organizations (organization_name, organization_code, created_by, "
                             "updated_by) VALUES ('Other', 'OTHER-ORG', %s, %s) RETURNING id::text",
                             (ACTOR, ACTOR)).fetchone()
        assert other is not None
        other_entity = conn.execute(
            "INSERT INTO core_entities (organization_id, entity_type, entity_name, smart_code, created_by, "
            "updated_by) VALUES (%s, 'gl_account', 'Foreign account', 'HERA.FINANCE.COA.ACCOUNT.9999.v1', %s, %s) "
            "RETURNING id::text", (other[0], ACTOR, ACTOR)).fetchone()
        closed = conn.execute("SELECT id::text FROM core_entities WHERE organization_id = %s AND "
                              "entity_type = 'fiscal_period' AND lower(coalesce(metadata ->> 'status', status)) = "
                              "'closed' ORDER BY entity_code LIMIT 1", (org,)).fetchone()
        journal = conn.execute(
            "INSERT INTO core_entities (organization_id, entity_type, entity_name, entity_code, smart_code, "
            "metadata, created_by, updated_by) VALUES (%s, %s, 'journal', %s, %s, %s, %s, %s) RETURNING id::text",
            (org, contract.JOURNAL_ENTITY_TYPE, RUN, contract.JOURNAL_SMART_CODE, Jsonb({"run_id": RUN}), ACTOR,
             ACTOR)).fetchone()
        assert other_entity is not None and closed is not None and journal is not None
        m = Migrated(org=org, other_org=other[0], other_entity=other_entity[0], closed_period=closed[0],
                     journal=journal[0])
        for code in TIER2:
            for oid in candidates(conn, org, code, 2):
                m.originals.append(oid)
                m.reposts[oid], m.reversals[oid] = migrate_original(conn, spec, org, oid)
        for code in ALIAS:
            for tid in candidates(conn, org, code, 2):
                alias(conn, spec, org, tid)
                m.aliases.append(tid)
        m.quarantined = candidates(conn, org, TIER2[0], 1)[0]
        conn.execute("INSERT INTO core_dynamic_data (organization_id, entity_id, field_name, field_type, "
                     "field_value_json, smart_code, created_by, updated_by) VALUES (%s, %s, %s, 'json', %s, %s, "
                     "%s, %s)", (org, m.journal, f"quarantine:{m.quarantined}",
                                 Jsonb({"reason": "unbalanced", "tier": "reverse_repost"}),
                                 contract.QUARANTINE_SMART_CODE, ACTOR, ACTOR))
        conn.execute("INSERT INTO core_dynamic_data (organization_id, entity_id, field_name, field_type, "
                     "field_value_text, smart_code, created_by, updated_by) VALUES (%s, %s, 'status', 'text', "
                     "'completed', %s, %s, %s)", (org, m.journal, contract.CHECKPOINT_SMART_CODE, ACTOR, ACTOR))
        migrate_entities(conn, spec, org, RUN)
        rule = conn.execute("SELECT id::text FROM core_entities WHERE organization_id = %s AND entity_type = "
                            "'financial_policy' ORDER BY id LIMIT 1", (org,)).fetchone()
        period = conn.execute("SELECT id::text FROM core_entities WHERE organization_id = %s AND entity_type = "
                              "'fiscal_period' ORDER BY id LIMIT 1", (org,)).fetchone()
        assert rule is not None and period is not None
        m.posting_rule, m.fiscal_period_entity = rule[0], period[0]
        conn.commit()
    return m


@pytest.fixture(scope="module")
def migrated_template(pg_server: Server, core_template: str) -> Iterator[tuple[str, Migrated]]:
    """(database name, what was migrated): a database holding one hand-migrated run; tests that change it work
    in a transaction they roll back, or on a clone (create_database(..., template=name))."""
    name = create_database(pg_server.dsn, template=core_template)
    migrated = build(with_database(pg_server.dsn, name))
    yield name, migrated
    drop_database(pg_server.dsn, name)


@pytest.fixture
def migrated(pg_server: Server, migrated_template: tuple[str, Migrated]) -> tuple[str, Migrated]:
    """(dsn, what was migrated) of the shared migrated database."""
    return with_database(pg_server.dsn, migrated_template[0]), migrated_template[1]


def checks_after(dsn: str, corrupt: Any, m: Migrated, spec: Spec | None = None) -> tuple[Any, dict[str, Any]]:
    """Apply `corrupt` in a transaction, run every check inside it, roll back: (corrupt's result, outcomes)."""
    with connect(dsn) as conn:
        try:
            named = corrupt(conn, m)
            return named, by_id(checks_on(conn, spec or phase7(), RUN, own_transaction=False))
        finally:
            conn.rollback()


def execute(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> int:
    return conn.execute(sql, params).rowcount


def by_id(outcomes: list[Any]) -> dict[str, Any]:
    return {o.id: o for o in outcomes}


def not_passed(outcomes: list[Any]) -> set[str]:
    return {o.id for o in outcomes if o.status != "passed"}


# --- a faithful migration ------------------------------------------------------------------------------------------


def test_every_builtin_check_passes_on_a_faithful_migration(migrated: tuple[str, Migrated]) -> None:
    dsn, m = migrated
    outcomes = run_checks(dsn, phase7(), RUN)
    assert [o.id for o in outcomes] == list(BUILTIN)
    assert not_passed(outcomes) == set(), {o.id: (o.error, o.samples[:2]) for o in outcomes if o.status != "passed"}
    assert all(o.failures == 0 and o.samples == [] for o in outcomes)
    per_org = by_id(outcomes)["gl_balanced"].per_org
    assert [o.organization_id for o in per_org] == [m.org]
    assert [o.organization_id for o in by_id(outcomes)["no_cross_org_references"].per_org] == [None]


def test_the_phase7_custom_checks_pass_on_a_faithful_migration(migrated: tuple[str, Migrated]) -> None:
    dsn, _ = migrated
    outcomes = run_checks(dsn, load_spec(PHASE7), RUN)
    custom = [o for o in outcomes if o.check.kind == "custom"]
    assert [o.id for o in custom] == ["repost-keeps-currency", "repost-keeps-date"]
    assert not_passed(outcomes) == set()


# --- one corruption at a time --------------------------------------------------------------------------------------


def _first_cr_line(conn: psycopg.Connection[Any], txn: str) -> int:
    row = conn.execute("SELECT min(line_number) FROM universal_transaction_lines WHERE transaction_id = %s "
                       "AND line_data ->> 'side' = 'CR' AND smart_code LIKE '%%.GL.%%'", (txn,)).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def unbalance_consistently(conn: psycopg.Connection[Any], m: Migrated) -> str:
    """Original, reversal and repost lose 1.00 on the same CR line: lines still match and the pair still nets to
    zero, but the repost (like the original) no longer balances."""
    oid = m.originals[0]
    n = _first_cr_line(conn, oid)
    for txn, delta in ((oid, "-1"), (m.reversals[oid], "1"), (m.reposts[oid], "-1")):
        execute(conn, "UPDATE universal_transaction_lines SET line_amount = line_amount + %s::numeric, "
                     "updated_by = %s WHERE transaction_id = %s AND line_number = %s", (delta, ACTOR, txn, n))
    return m.reposts[oid]


def wrong_reversal_link(conn: psycopg.Connection[Any], m: Migrated) -> str:
    oid = m.originals[1]
    execute(conn, "UPDATE universal_transactions SET metadata = jsonb_set(metadata, '{reversal_id}', "
                  "to_jsonb(%s::text)), updated_by = %s WHERE id = %s", (str(uuid.uuid4()), ACTOR, oid))
    return oid


def delete_reversal(conn: psycopg.Connection[Any], m: Migrated) -> str:
    oid = m.originals[2]
    execute(conn, "DELETE FROM universal_transactions WHERE id = %s", (m.reversals[oid],))
    return oid


def change_repost_quantity(conn: psycopg.Connection[Any], m: Migrated) -> str:
    oid = m.originals[3]
    execute(conn, "UPDATE universal_transaction_lines SET quantity = quantity + 1, updated_by = %s "
                 "WHERE transaction_id = %s AND line_number = 1", (ACTOR, m.reposts[oid]))
    return m.reposts[oid]


def change_reversal_amounts(conn: psycopg.Connection[Any], m: Migrated) -> str:
    oid = m.originals[4]
    execute(conn, "UPDATE universal_transaction_lines SET line_amount = line_amount + 5, updated_by = %s "
                 "WHERE transaction_id = %s", (ACTOR, m.reversals[oid]))
    return oid


def change_repost_total(conn: psycopg.Connection[Any], m: Migrated) -> str:
    execute(conn, "UPDATE universal_transactions SET total_amount = total_amount + 0.0001, updated_by = %s "
                 "WHERE id = %s", (ACTOR, m.reposts[m.originals[5]]))
    return "pos-sale"


def wrong_v2_code(conn: psycopg.Connection[Any], m: Migrated) -> str:
    repost = m.reposts[m.originals[0]]
    execute(conn, "UPDATE universal_transactions SET smart_code = 'HERA.ACCOUNTING.GL.TXN.JOURNAL.OTHER.v2', "
                 "updated_by = %s WHERE id = %s", (ACTOR, repost))
    return repost


def into_closed_period(conn: psycopg.Connection[Any], m: Migrated) -> str:
    repost = m.reposts[m.originals[1]]
    execute(conn, "UPDATE universal_transactions SET fiscal_period_entity_id = %s, updated_by = %s WHERE id = %s",
            (m.closed_period, ACTOR, repost))
    return repost


def line_to_other_org(conn: psycopg.Connection[Any], m: Migrated) -> str:
    repost = m.reposts[m.originals[2]]
    execute(conn, "UPDATE universal_transaction_lines SET organization_id = %s, updated_by = %s "
                 "WHERE transaction_id = %s AND line_number = 1", (m.other_org, ACTOR, repost))
    return repost


def foreign_line_account(conn: psycopg.Connection[Any], m: Migrated) -> str:
    """Original, reversal and repost all point one line at another organisation's account: lines still match,
    the pair still nets, the trial balance moves nothing; only the reference crosses organisations."""
    oid = m.originals[3]
    for txn in (oid, m.reversals[oid], m.reposts[oid]):
        execute(conn, "UPDATE universal_transaction_lines SET entity_id = %s, updated_by = %s "
                     "WHERE transaction_id = %s AND line_number = 1", (m.other_entity, ACTOR, txn))
    return [oid, m.reversals[oid], m.reposts[oid]]


def alias_code_changed(conn: psycopg.Connection[Any], m: Migrated) -> str:
    execute(conn, "UPDATE universal_transactions SET smart_code = 'HERA.SALON.INVENTORY.TXN.RECEIPT.v1', "
                 "updated_by = %s WHERE id = %s", (ACTOR, m.aliases[0]))
    return m.aliases[0]


def alias_key_wrong(conn: psycopg.Connection[Any], m: Migrated) -> str:
    execute(conn, "UPDATE universal_transactions SET metadata = jsonb_set(metadata, '{reporting_smartcode}', "
                 "'\"HERA.SALON.INVENTORY.TXN.ISSUE.v3\"'), updated_by = %s WHERE id = %s", (ACTOR, m.aliases[1]))
    return m.aliases[1]


def entity_code_reverted(conn: psycopg.Connection[Any], m: Migrated) -> str:
    execute(conn, "UPDATE core_entities SET smart_code = metadata #>> '{migration,pre,smart_code}', updated_by = %s "
                 "WHERE id = %s", (ACTOR, m.posting_rule))
    return m.posting_rule


def entity_set_lost(conn: psycopg.Connection[Any], m: Migrated) -> str:
    execute(conn, "UPDATE core_entities SET metadata = metadata - 'finance_dna_version', updated_by = %s "
                 "WHERE id = %s", (ACTOR, m.fiscal_period_entity))
    return m.fiscal_period_entity


CASES = [
    # (corruption, the checks that must fail, the check whose samples must name the record)
    (unbalance_consistently, {"gl_balanced"}, "gl_balanced"),
    (wrong_reversal_link, {"one_reversal_one_repost"}, "one_reversal_one_repost"),
    (delete_reversal, {"one_reversal_one_repost", "trial_balance_unchanged"}, "one_reversal_one_repost"),
    (change_repost_quantity, {"lines_preserved"}, "lines_preserved"),
    (change_reversal_amounts, {"reversal_nets_to_zero", "trial_balance_unchanged"}, "reversal_nets_to_zero"),
    (change_repost_total, {"count_amount_reconciliation"}, "count_amount_reconciliation"),
    (wrong_v2_code, {"v2_code_matches_mapping"}, "v2_code_matches_mapping"),
    (into_closed_period, {"closed_period_untouched"}, "closed_period_untouched"),
    (line_to_other_org, {"no_cross_org_references"}, "no_cross_org_references"),
    (foreign_line_account, {"no_cross_org_references"}, "no_cross_org_references"),
    (alias_code_changed, {"alias_only_metadata"}, "alias_only_metadata"),
    (alias_key_wrong, {"alias_only_metadata"}, "alias_only_metadata"),
    (entity_code_reverted, {"entity_transform_matches"}, "entity_transform_matches"),
    (entity_set_lost, {"entity_transform_matches"}, "entity_transform_matches"),
]


@pytest.mark.parametrize(("corrupt", "failing", "named_by"), CASES, ids=[c[0].__name__ for c in CASES])
def test_one_corruption_fails_exactly_the_checks_that_see_it(migrated: tuple[str, Migrated], corrupt: Any,
                                                            failing: set[str], named_by: str) -> None:
    dsn, m = migrated
    named, outcomes = checks_after(dsn, corrupt, m)
    records = sorted(named) if isinstance(named, list) else [named]
    assert not_passed(list(outcomes.values())) == failing, {
        o.id: [s.message for s in o.samples] for o in outcomes.values() if o.status != "passed"}
    target = outcomes[named_by]
    assert target.status == "failed" and target.check.severity == "critical"
    assert target.failures == len(records)
    assert [s.record_id for s in target.samples] == records, target.samples
    assert {s.organization_id for s in target.samples} == {m.org}
    assert all(s.message for s in target.samples)


def test_a_corruption_within_the_warn_band_is_a_warning(migrated: tuple[str, Migrated]) -> None:
    dsn, m = migrated
    spec = phase7()
    rule = dataclasses.replace(spec.validations.builtin.v2_code_matches_mapping, warn_threshold=1, error_threshold=3)
    spec = dataclasses.replace(spec, validations=dataclasses.replace(spec.validations, builtin=dataclasses.replace(
        spec.validations.builtin, v2_code_matches_mapping=rule)))
    _, outcomes = checks_after(dsn, wrong_v2_code, m, spec)
    outcome = outcomes["v2_code_matches_mapping"]
    assert (outcome.status, outcome.failures) == ("warning", 1)


# --- custom checks -------------------------------------------------------------------------------------------------


def custom(check_id: str, sql: str, **kw: Any) -> CustomCheck:
    return CustomCheck(id=check_id, description=f"custom {check_id}", sql=sql, **kw)


def test_custom_checks_run_per_organisation_or_once_and_never_crash(migrated: tuple[str, Migrated]) -> None:
    dsn, m = migrated
    spec = phase7(
        custom("finds-reposts", "SELECT organization_id, id AS record_id, 'repost' AS message "
                                "FROM universal_transactions WHERE organization_id = :organization_id "
                                "AND metadata -> 'migration' ->> 'run_id' = :run_id "
                                "AND metadata -> 'migration' ->> 'role' = 'repost' ORDER BY id;",
               severity="warning", warn_threshold=1, error_threshold=100),
        custom("syntax-error", "SELECT organization_id, id AS record_id, 'x' AS message FROM universal_transactions "
                               "WHERE organization_id = :organization_id AND no_such_column = 1"),
        custom("wrong-columns", "SELECT id FROM universal_transactions WHERE organization_id = :organization_id"),
        custom("times-out", "SELECT :organization_id::uuid AS organization_id, g::text AS record_id, 'slow' AS message "
                            "FROM generate_series(1, 100000000) AS g WHERE g < 0", timeout_seconds=0.2),
        custom("tries-to-write", "SELECT h.organization_id, h.id AS record_id, hera_txn_void_v1(p_organization_id "
                                 "=> h.organization_id, p_transaction_id => h.id, p_reason => 'x', p_actor_user_id "
                                 "=> h.created_by)::text AS message FROM universal_transactions h "
                                 "WHERE h.organization_id = :organization_id"),
        custom("system-level", "SELECT h.organization_id, h.id AS record_id, 'alias' AS message "
                               "FROM universal_transactions h WHERE h.metadata -> 'migration' ->> 'run_id' = :run_id "
                               "AND h.metadata -> 'migration' ->> 'role' = 'alias'",
               level="system", severity="info"),
    )
    outcomes = by_id(run_checks(dsn, spec, RUN))
    assert all(outcomes[c].status == "passed" for c in BUILTIN)
    found = outcomes["finds-reposts"]
    assert (found.status, found.failures) == ("warning", 6)
    assert [s.record_id for s in found.samples] == sorted(m.reposts.values())
    for check_id, sqlstate in (("syntax-error", "42703"), ("times-out", "57014"), ("tries-to-write", "25006")):
        o = outcomes[check_id]
        assert o.status == "error" and o.failing and o.failures == 0, (check_id, o.error)
        assert o.error is not None and o.error.startswith(sqlstate), (check_id, o.error)
    assert outcomes["wrong-columns"].status == "error"
    assert "missing organization_id, record_id, message" in (outcomes["wrong-columns"].error or "")
    system = outcomes["system-level"]
    assert [o.organization_id for o in system.per_org] == [None]
    assert (system.status, system.failures) == ("failed", 2)
    assert {s.record_id for s in system.samples} == set(m.aliases)
    with connect(dsn) as conn:  # the read-only transaction stopped the write
        row = conn.execute("SELECT count(*) FROM universal_transactions WHERE transaction_status = 'voided' "
                           "AND metadata ->> 'void_reason' = 'x'").fetchone()
    assert row == (0,)


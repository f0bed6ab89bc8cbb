"""Entity migrations (posting rules, fiscal periods, organisation config): declared transforms applied exactly,
idempotent, and rolled back to byte-identical rows."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.compile.jsonx import loads
from runner.contract import JOURNAL_ENTITY_TYPE, JOURNAL_SMART_CODE, MIGRATION_ACTOR_ID
from runner.db.connect import connect
from runner.engine.entities import migrate_entities, rollback_entities
from runner.spec import Spec, load_spec
from runner.spec.model import PostingRules, Transform
from runner.synth.generate import OrgResult, generate

PHASE7 = Path(__file__).resolve().parents[2] / "specs" / "finance-dna-v2.yaml"
RUN = "run-test-entities"


@pytest.fixture
def org(db_dsn: str) -> OrgResult:
    org = generate(db_dsn, size="small", seed=41).organizations[0]
    with connect(db_dsn) as conn:
        conn.execute("INSERT INTO core_entities (organization_id, entity_type, entity_name, entity_code, smart_code, "
                     "created_by, updated_by) VALUES (%s, %s, 'journal', %s, %s, %s, %s)",
                     (org.organization_id, JOURNAL_ENTITY_TYPE, RUN, JOURNAL_SMART_CODE, MIGRATION_ACTOR_ID,
                      MIGRATION_ACTOR_ID))
        conn.commit()
    return org


def state(dsn: str, org_id: str) -> dict[str, list[str]]:
    """Every row of the three tables entity migrations touch, except the run journal and its fields."""
    with connect(dsn) as conn:
        return {
            "org": [r[0] for r in conn.execute("SELECT to_jsonb(o)::text FROM core_organizations o WHERE id = %s",
                                               (org_id,))],
            "entities": [r[0] for r in conn.execute(
                "SELECT to_jsonb(e)::text FROM core_entities e WHERE organization_id = %s AND entity_type <> %s "
                "ORDER BY id", (org_id, JOURNAL_ENTITY_TYPE))],
            "dynamic": [r[0] for r in conn.execute(
                "SELECT to_jsonb(d)::text FROM core_dynamic_data d JOIN core_entities e ON e.id = d.entity_id "
                "WHERE d.organization_id = %s AND e.entity_type <> %s ORDER BY d.id", (org_id, JOURNAL_ENTITY_TYPE))],
        }


def run(dsn: str, fn: Any, *args: Any) -> dict[str, int]:
    with connect(dsn) as conn, conn.transaction():
        result: dict[str, int] = fn(conn, *args)
    return result


def fields(conn: psycopg.Connection[Any], org_id: str, name: str) -> dict[str, Any]:
    rows = conn.execute("SELECT e.entity_code, coalesce(d.field_value_json::text, to_jsonb(d.field_value_number)::text,"
                        " to_jsonb(d.field_value_text)::text) FROM core_dynamic_data d JOIN core_entities e "
                        "ON e.id = d.entity_id WHERE d.organization_id = %s AND d.field_name = %s",
                        (org_id, name)).fetchall()
    return {code: loads(value) for code, value in rows}


def test_phase7_entity_migrations_apply_exactly_and_roll_back(db_dsn: str, org: OrgResult) -> None:
    spec = load_spec(PHASE7)
    before = state(db_dsn, org.organization_id)
    priorities = {}
    with connect(db_dsn) as conn:
        priorities = fields(conn, org.organization_id, "priority")
    counts = run(db_dsn, migrate_entities, spec, org.organization_id, RUN)
    assert counts["posting_rules"] == org.posting_rules == 10
    assert counts["fiscal_periods"] == sum(org.fiscal_periods.values()) == 12
    assert counts["organization_config"] == 1
    with connect(db_dsn) as conn:
        codes = dict(conn.execute("SELECT entity_code, smart_code FROM core_entities WHERE organization_id = %s "
                                  "AND entity_type IN ('financial_policy', 'fiscal_period')",
                                  (org.organization_id,)).fetchall())
        configs = fields(conn, org.organization_id, "policy_config")
        settings = conn.execute("SELECT settings, updated_by FROM core_organizations WHERE id = %s",
                                (org.organization_id,)).fetchone()
        metas = [r[0] for r in conn.execute("SELECT metadata FROM core_entities WHERE organization_id = %s AND "
                                            "entity_type IN ('financial_policy', 'fiscal_period')",
                                            (org.organization_id,))]
    assert all(c.startswith("HERA.ACCOUNTING.POLICY.RULE.") and c.endswith(".v2")
               for k, c in codes.items() if k.startswith("POL-"))
    assert {c for k, c in codes.items() if k.startswith("FP-")} == {"HERA.ACCOUNTING.FISCAL.PERIOD.MONTH.v2"}
    assert len(configs) == 10
    for code, config in configs.items():
        assert config["rule_version"] == "v2.1"
        assert config["priority"] == priorities[code] and isinstance(config["priority"], Decimal)
    assert settings is not None
    # The generator's org already has finance_dna {version: v1, ...}: set/copy change only their keys.
    assert settings[0]["finance_dna"] == {"version": "v2", "fiscal_year_start_month": 1,
                                          "gl_posting_required": True, "auto_journal_enabled": True}
    assert settings[1] == MIGRATION_ACTOR_ID
    assert all(m["finance_dna_version"] == "v2" and m["migration"]["run_id"] == RUN for m in metas)

    again = run(db_dsn, migrate_entities, spec, org.organization_id, RUN)
    assert again == {"posting_rules": 0, "fiscal_periods": 0, "organization_config": 0, "dynamic_fields": 0}

    undone = run(db_dsn, rollback_entities, RUN, org.organization_id)
    assert undone["entities_restored"] == 22 and undone["organization_config"] == 1 and undone["conflicts"] == 0
    assert state(db_dsn, org.organization_id) == before
    assert run(db_dsn, rollback_entities, RUN, org.organization_id)["entities_restored"] == 0


def test_rename_removes_and_rollback_reinserts_the_same_row(db_dsn: str, org: OrgResult) -> None:
    base = load_spec(PHASE7)
    spec: Spec = dataclasses.replace(base, entities=dataclasses.replace(
        base.entities, fiscal_periods=None, organization_config=None,
        posting_rules=PostingRules(fields=("priority", "rank"),
                                   transforms=(Transform(rename="dynamic.priority", to="dynamic.rank"),))))
    before = state(db_dsn, org.organization_id)
    run(db_dsn, migrate_entities, spec, org.organization_id, RUN)
    with connect(db_dsn) as conn:
        assert fields(conn, org.organization_id, "priority") == {}
        assert len(fields(conn, org.organization_id, "rank")) == 10
    run(db_dsn, rollback_entities, RUN, org.organization_id)
    assert state(db_dsn, org.organization_id) == before


def test_rollback_leaves_a_row_changed_by_someone_else(db_dsn: str, org: OrgResult) -> None:
    spec = load_spec(PHASE7)
    run(db_dsn, migrate_entities, spec, org.organization_id, RUN)
    with connect(db_dsn) as conn:
        conn.execute("UPDATE core_entities SET entity_name = 'edited by a user', updated_by = %s, "
                     "version = version + 1 WHERE organization_id = %s AND entity_code = 'POL-0001'",
                     (org.actor_id, org.organization_id))
        conn.commit()
    undone = run(db_dsn, rollback_entities, RUN, org.organization_id)
    assert undone["conflicts"] == 1 and undone["entities_restored"] == 21
    with connect(db_dsn) as conn:
        row = conn.execute("SELECT entity_name, metadata ? 'migration' FROM core_entities WHERE organization_id = %s "
                           "AND entity_code = 'POL-0001'", (org.organization_id,)).fetchone()
    assert row == ("edited by a user", True)

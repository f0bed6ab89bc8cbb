"""The HERA-compatible core (fixtures/sql) must behave like real HERA (docs/hera-reference.md).

Each test pins one fact of the reference (section numbers in the docstrings), so a drift in the core fails here.
Every test runs twice: on our core and on HERA's production schema (HERA_REAL_SCHEMA; skipped without it), so
a fact our core pins is also a fact of production. The few tests about our core's own machinery (install,
the harness's restricted role) say so and run on ours only.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from runner.db import schema
from runner.db.connect import connect, with_database
from runner.db.providers import Server
from tests.conftest import CORES, create_database, drop_database, template_of
from tests.integration.hera_helpers import (
    CREDIT_CODE,
    DEBIT_CODE,
    JOURNAL_CODE,
    Hera,
    named_call,
)

SIX = ["core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
       "universal_transactions", "universal_transaction_lines"]

TS = "timestamp with time zone"
AI = [("ai_confidence", "numeric(5,4)", False, "0.0000")]
SC = [("smart_code", "character varying(100)", True, None), ("smart_code_status", "text", False, "'DRAFT'::text")]
AUDIT = [("created_at", TS, False, "now()"), ("updated_at", TS, False, "now()"),
         ("created_by", "uuid", False, None), ("updated_by", "uuid", False, None)]
VERSION = [("version", "integer", False, "1")]
ID = [("id", "uuid", True, "gen_random_uuid()")]
ORG = [("organization_id", "uuid", True, None)]
JSONB_EMPTY = "'{}'::jsonb"

# (column, type, NOT NULL, default) in table order: §1.1-§1.6.
EXPECTED_COLUMNS: dict[str, list[tuple[str, str, bool, str | None]]] = {
    "core_organizations": [
        *ID,
        ("organization_name", "text", True, None),
        ("organization_code", "text", True, None),
        ("organization_type", "text", False, "'business_unit'::text"),
        ("industry_classification", "text", False, None),
        ("parent_organization_id", "uuid", False, None),
        ("ai_insights", "jsonb", False, JSONB_EMPTY),
        ("ai_classification", "text", False, None),
        *AI,
        ("settings", "jsonb", False, JSONB_EMPTY),
        ("status", "text", False, "'active'::text"),
        *AUDIT,
    ],
    "core_entities": [
        *ID, *ORG,
        ("entity_type", "text", True, None),
        ("entity_name", "text", True, None),
        ("entity_code", "text", False, None),
        ("entity_description", "text", False, None),
        ("parent_entity_id", "uuid", False, None),
        *SC, *AI,
        ("ai_classification", "text", False, None),
        ("ai_insights", "jsonb", False, JSONB_EMPTY),
        ("business_rules", "jsonb", False, JSONB_EMPTY),
        ("metadata", "jsonb", False, JSONB_EMPTY),
        ("tags", "text[]", False, None),
        ("status", "text", False, "'active'::text"),
        *AUDIT, *VERSION,
    ],
    "core_dynamic_data": [
        *ID, *ORG,
        ("entity_id", "uuid", True, None),
        ("field_name", "text", True, None),
        ("field_type", "text", False, "'text'::text"),
        ("field_value_text", "text", False, None),
        ("field_value_number", "numeric(20,8)", False, None),
        ("field_value_boolean", "boolean", False, None),
        ("field_value_date", TS, False, None),
        ("field_value_json", "jsonb", False, None),
        ("field_value_file_url", "text", False, None),
        ("calculated_value", "jsonb", False, None),
        *SC, *AI,
        ("ai_enhanced_value", "text", False, None),
        ("ai_insights", "jsonb", False, JSONB_EMPTY),
        ("validation_rules", "jsonb", False, JSONB_EMPTY),
        ("validation_status", "text", False, "'valid'::text"),
        ("field_order", "integer", False, "1"),
        ("is_searchable", "boolean", False, "true"),
        ("is_required", "boolean", False, "false"),
        ("is_system_field", "boolean", False, "false"),
        *AUDIT, *VERSION,
    ],
    "core_relationships": [
        *ID, *ORG,
        ("from_entity_id", "uuid", True, None),
        ("to_entity_id", "uuid", True, None),
        ("relationship_type", "text", True, None),
        ("relationship_direction", "text", False, "'forward'::text"),
        ("relationship_strength", "numeric(5,4)", False, "1.0000"),
        ("relationship_data", "jsonb", False, JSONB_EMPTY),
        *SC, *AI,
        ("ai_classification", "text", False, None),
        ("ai_insights", "jsonb", False, JSONB_EMPTY),
        ("business_logic", "jsonb", False, JSONB_EMPTY),
        ("validation_rules", "jsonb", False, JSONB_EMPTY),
        ("is_active", "boolean", False, "true"),
        ("effective_date", TS, False, "now()"),
        ("expiration_date", TS, False, None),
        *AUDIT, *VERSION,
    ],
    "universal_transactions": [
        *ID, *ORG,
        ("transaction_type", "text", True, None),
        ("transaction_code", "text", False, None),
        ("transaction_date", TS, False, "now()"),
        ("source_entity_id", "uuid", False, None),
        ("target_entity_id", "uuid", False, None),
        ("total_amount", "numeric(19,4)", True, "0"),
        ("transaction_status", "text", False, "'pending'::text"),
        ("reference_number", "text", False, None),
        ("external_reference", "text", False, None),
        *SC, *AI,
        ("ai_classification", "text", False, None),
        ("ai_insights", "jsonb", False, JSONB_EMPTY),
        ("business_context", "jsonb", False, JSONB_EMPTY),
        ("metadata", "jsonb", False, JSONB_EMPTY),
        ("approval_required", "boolean", False, "false"),
        ("approved_by", "uuid", False, None),
        ("approved_at", TS, False, None),
        *AUDIT, *VERSION,
        ("transaction_currency_code", "character(3)", False, None),
        ("base_currency_code", "character(3)", False, None),
        ("exchange_rate", "numeric(20,10)", False, None),
        ("exchange_rate_date", "date", False, None),
        ("exchange_rate_type", "text", False, None),
        ("fiscal_period_entity_id", "uuid", False, None),
        ("fiscal_year", "integer", False, None),
        ("fiscal_period", "integer", False, None),
        ("posting_period_code", "text", False, None),
    ],
    "universal_transaction_lines": [
        *ID, *ORG,
        ("transaction_id", "uuid", True, None),
        ("line_number", "integer", True, None),
        ("entity_id", "uuid", False, None),
        ("line_type", "text", True, None),
        ("description", "text", False, None),
        ("quantity", "numeric(20,8)", False, "1"),
        ("unit_amount", "numeric(20,8)", False, "0"),
        ("line_amount", "numeric(20,8)", False, "0"),
        ("discount_amount", "numeric(20,8)", False, "0"),
        ("tax_amount", "numeric(20,8)", False, "0"),
        *SC, *AI,
        ("ai_classification", "text", False, None),
        ("ai_insights", "jsonb", False, JSONB_EMPTY),
        ("line_data", "jsonb", False, JSONB_EMPTY),
        *AUDIT, *VERSION,
    ],
}
EXPECTED_COUNTS = {"core_organizations": 15, "core_entities": 21, "core_dynamic_data": 28,
                   "core_relationships": 23, "universal_transactions": 35, "universal_transaction_lines": 23}


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_dsn(request: pytest.FixtureRequest, pg_server: Server, core: str) -> Any:
    """Every test of this module: a fresh database of our core, then one of HERA's production schema."""
    name = create_database(pg_server.dsn, template=template_of(request, core))
    yield with_database(pg_server.dsn, name)
    drop_database(pg_server.dsn, name)


@pytest.fixture
def ours_only(core: str) -> None:
    if core != "ours":
        pytest.skip("about our stand-in core's own machinery, which production does not have")


def columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str, bool, str | None]]:
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""", (f"public.{table}",)).fetchall()]


def constraint_of(exc: pytest.ExceptionInfo[psycopg.Error]) -> str | None:
    return exc.value.diag.constraint_name


# =============================================================================================================
# §6 prerequisites
# =============================================================================================================

def test_prereq_roles_schema_and_extension(conn: psycopg.Connection[Any]) -> None:
    roles = {r[0]: r[1:] for r in conn.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls FROM pg_roles "
        "WHERE rolname IN ('anon', 'authenticated', 'service_role', 'hera_org_user')").fetchall()}
    assert set(roles) == {"anon", "authenticated", "service_role", "hera_org_user"}
    assert roles["hera_org_user"] == (True, False, False)  # login, not superuser, no RLS bypass
    assert conn.execute("SELECT to_regclass('auth.users')").fetchone() == ("auth.users",)
    assert conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                        "WHERE e.extname = 'pg_trgm'").fetchone() == ("public",)
    assert conn.execute("SELECT public.similarity('journal', 'journals') > 0.5").fetchone() == (True,)


def test_auth_stubs_read_jwt_claims(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("SELECT auth.uid(), auth.role(), auth.jwt()").fetchone() == (None, None, None)
    sub = uuid.uuid4()
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                 (f'{{"sub": "{sub}", "role": "authenticated"}}',))
    uid, role, jwt = conn.execute("SELECT auth.uid(), auth.role(), auth.jwt()").fetchone()  # type: ignore[misc]
    assert (uid, role, jwt["sub"]) == (sub, "authenticated", str(sub))
    conn.execute("SELECT set_config('request.jwt.claims', '', false)")
    assert conn.execute("SELECT auth.role()").fetchone() == (None,)


# =============================================================================================================
# §1.1-§1.6 tables, §1.7 constraints, indexes
# =============================================================================================================

@pytest.mark.parametrize("table", SIX)
def test_columns_match_reference(conn: psycopg.Connection[Any], table: str) -> None:
    actual = columns(conn, table)
    assert len(actual) == EXPECTED_COUNTS[table]
    assert actual == EXPECTED_COLUMNS[table]


def test_columns_that_do_not_exist_in_production(conn: psycopg.Connection[Any]) -> None:
    absent = {
        "core_organizations": ["metadata", "smart_code", "organization_id", "version"],
        "core_dynamic_data": ["field_category", "field_key", "field_value", "metadata"],
        "core_relationships": ["source_entity_id", "target_entity_id"],
        "universal_transactions": ["status", "reference"],
        "universal_transaction_lines": ["debit_amount", "credit_amount", "line_entity_id", "metadata",
                                        "currency_code"],
    }
    for table, names in absent.items():
        present = {c[0] for c in columns(conn, table)}
        assert not present & set(names), (table, present & set(names))


def test_constraints_names_kinds_and_fk_actions(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """SELECT conrelid::regclass::text, conname, contype::text,
                  CASE WHEN contype = 'f' THEN confrelid::regclass::text END,
                  CASE WHEN contype = 'f' THEN confdeltype::text END,
                  CASE WHEN contype = 'f' THEN confupdtype::text END
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace""").fetchall()
    got = {(r[0], r[1]): r[2:] for r in rows}
    c = (None, None, None)
    expected = {
        ("core_organizations", "core_organizations_organization_code_key"): ("u", *c),
        ("core_organizations", "fk_parent_org"): ("f", "core_organizations", "a", "a"),
        ("core_entities", "core_entities_organization_id_fkey"): ("f", "core_organizations", "c", "a"),
        ("core_entities", "fk_parent_entity"): ("f", "core_entities", "a", "a"),
        ("core_entities", "chk_core_entities_smart_code_pattern"): ("c", *c),
        ("core_entities", "core_entities_smart_code_ck"): ("c", *c),
        ("core_dynamic_data", "core_dynamic_data_organization_id_fkey"): ("f", "core_organizations", "c", "a"),
        ("core_dynamic_data", "core_dynamic_data_entity_id_fkey"): ("f", "core_entities", "c", "a"),
        ("core_dynamic_data", "core_dynamic_data_smart_code_ck"): ("c", *c),
        ("core_relationships", "core_relationships_organization_id_fkey"): ("f", "core_organizations", "c", "a"),
        ("core_relationships", "core_relationships_from_entity_id_fkey"): ("f", "core_entities", "c", "a"),
        ("core_relationships", "core_relationships_to_entity_id_fkey"): ("f", "core_entities", "c", "a"),
        ("core_relationships", "no_self_relationship"): ("c", *c),
        ("core_relationships", "core_relationships_smart_code_ck"): ("c", *c),
        ("universal_transactions", "universal_transactions_transaction_code_key"): ("u", *c),
        ("universal_transactions", "universal_transactions_organization_id_fkey"):
            ("f", "core_organizations", "c", "a"),
        ("universal_transactions", "universal_transactions_source_entity_id_fkey"):
            ("f", "core_entities", "a", "a"),
        ("universal_transactions", "universal_transactions_target_entity_id_fkey"):
            ("f", "core_entities", "a", "a"),
        ("universal_transactions", "fk_txn_period_entity"): ("f", "core_entities", "r", "r"),
        ("universal_transactions", "chk_ut_smart_code_pattern"): ("c", *c),
        ("universal_transactions", "ut_smart_code_ck"): ("c", *c),
        ("universal_transactions", "chk_txn_total_sign"): ("c", *c),
        ("universal_transaction_lines", "universal_transaction_lines_transaction_id_line_number_key"): ("u", *c),
        ("universal_transaction_lines", "universal_transaction_lines_organization_id_fkey"):
            ("f", "core_organizations", "c", "a"),
        ("universal_transaction_lines", "universal_transaction_lines_transaction_id_fkey"):
            ("f", "universal_transactions", "c", "a"),
        ("universal_transaction_lines", "universal_transaction_lines_entity_id_fkey"):
            ("f", "core_entities", "a", "a"),
        ("universal_transaction_lines", "chk_utl_smart_code_pattern"): ("c", *c),
        ("universal_transaction_lines", "utl_smart_code_ck"): ("c", *c),
        ("universal_transaction_lines", "chk_gl_side_required"): ("c", *c),
    }
    for key, value in expected.items():
        assert got.get(key) == value, key
    for table in SIX:
        assert got.get((table, f"{table}_pkey"), ("?",))[0] == "p"
    # §1.7: the loose pattern CHECKs and the sign rule are NOT VALID in production, everything else validated.
    invalid = {r[0] for r in conn.execute("SELECT conname FROM pg_constraint WHERE connamespace = "
                                          "'public'::regnamespace AND NOT convalidated AND contype <> 't'")}
    assert invalid == {"core_entities_smart_code_ck", "core_dynamic_data_smart_code_ck",
                       "core_relationships_smart_code_ck", "ut_smart_code_ck", "utl_smart_code_ck",
                       "chk_txn_total_sign"}
    # No uniqueness on (org, entity_type, entity_code) and no per-org transaction_code key.
    assert not [k for k, v in got.items() if k[0] == "core_entities" and v[0] == "u"]


def test_indexes(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid), pg_get_expr(i.indpred, i.indrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relnamespace = 'public'::regnamespace""").fetchall()
    idx = {r[0]: r[1:] for r in rows}
    for name in ("ux_cdd_org_entity_field", "ux_dynamic_data_entity_field"):
        unique, definition, pred = idx[name]
        assert unique and pred is None
        assert "(organization_id, entity_id, field_name)" in definition
    unique, definition, pred = idx["core_entities_org_subdomain_uidx"]
    assert unique and "'subdomain'" in definition and "'organization'" in pred
    unique, definition, pred = idx["ux_user_by_auth_id"]
    assert unique and "'auth_user_id'" in definition and "'USER'" in pred
    unique, definition, pred = idx["ux_has_role_primary_per_org_user"]
    assert unique and "(organization_id, from_entity_id)" in definition
    assert "'HAS_ROLE'" in pred and "is_active" in pred and "is_primary" in pred
    unique, definition, _ = idx["universal_transactions_transaction_code_key"]
    assert unique and definition.endswith("(transaction_code)")
    defs = [d for _, d, _ in idx.values()]
    assert any("USING gin (entity_name gin_trgm_ops)" in d for d in defs)
    assert any("universal_transactions" in d and "(organization_id, transaction_date DESC, id DESC)" in d
               and "voided" in d for d in defs)
    gl = [(d, p) for _, d, p in idx.values() if "universal_transaction_lines" in d and p and "GL" in p]
    assert len(gl) == 2
    assert any("(transaction_id, ((line_data ->> 'side'::text)))" in d for d, _ in gl)
    assert any("(organization_id, transaction_id)" in d for d, _ in gl)
    # §8: production's index set is part of what a write costs (constraint indexes included)
    counts = dict(conn.execute("SELECT tablename, count(*) FROM pg_indexes WHERE schemaname = 'public' "
                               "AND tablename = ANY(%s) GROUP BY 1", (SIX,)).fetchall())
    assert counts == {"core_organizations": 2, "core_entities": 18, "core_dynamic_data": 10,
                      "core_relationships": 12, "universal_transactions": 16, "universal_transaction_lines": 10}


def test_org_delete_cascades_but_period_entity_is_restricted(hera: Hera) -> None:
    org = hera.org()
    period = hera.entity(org, "period")
    txn = hera.journal(org, p_fiscal_period_entity_id=period)
    # ON DELETE RESTRICT (confdeltype 'r', pinned above): SQLSTATE 23001 on PG 18, 23503 before.
    with pytest.raises((errors.RestrictViolation, errors.ForeignKeyViolation)) as exc:
        hera.conn.execute("DELETE FROM core_entities WHERE id = %s", (period,))
    assert constraint_of(exc) == "fk_txn_period_entity"
    hera.conn.execute("UPDATE universal_transactions SET fiscal_period_entity_id = NULL, updated_by = %s "
                      "WHERE id = %s", (hera.actor, txn))
    hera.conn.execute("DELETE FROM core_organizations WHERE id = %s", (org,))
    for table in SIX[1:]:
        assert hera.scalar(f"SELECT count(*) FROM {table} WHERE organization_id = %s", (org,)) == 0


# =============================================================================================================
# §1.8 enforce_actor_audit
# =============================================================================================================

@pytest.mark.parametrize("table", SIX)
def test_insert_without_actor_fails(hera: Hera, table: str) -> None:
    org = hera.org()
    ent = hera.entity(org)
    ent2 = hera.entity(org)
    txn = hera.journal(org)
    rows: dict[str, dict[str, Any]] = {
        "core_organizations": {"organization_name": "x", "organization_code": f"X-{uuid.uuid4().hex}"},
        "core_entities": {"organization_id": org, "entity_type": "GL_ACCOUNT", "entity_name": "x",
                          "smart_code": "HERA.FINANCE.COA.ACCOUNT.XX.v1"},
        "core_dynamic_data": {"organization_id": org, "entity_id": ent, "field_name": "f",
                              "smart_code": "HERA.FINANCE.COA.FIELD.GENERIC.v1"},
        "core_relationships": {"organization_id": org, "from_entity_id": ent, "to_entity_id": ent2,
                               "relationship_type": "MEMBER_OF", "smart_code": "HERA.FINANCE.REL.MEMBER.OF.v1"},
        "universal_transactions": {"organization_id": org, "transaction_type": "JOURNAL_ENTRY",
                                   "smart_code": JOURNAL_CODE},
        "universal_transaction_lines": {"organization_id": org, "transaction_id": txn, "line_number": 9,
                                        "line_type": "GL", "smart_code": DEBIT_CODE,
                                        "line_data": {"side": "DR"}},
    }
    with pytest.raises(errors.RaiseException, match=r"^created_by cannot be NULL \(actor required\)"):
        hera.insert(table, **rows[table], updated_by=hera.actor)
    # The same row with an actor goes in, so the actor is the only thing missing above.
    hera.insert(table, **rows[table], created_by=hera.actor)


@pytest.mark.parametrize("table", SIX)
def test_update_needs_updated_by(hera: Hera, table: str) -> None:
    org = hera.org()
    hera.seed(org)
    key = "id" if table == "core_organizations" else "organization_id"
    with pytest.raises(errors.RaiseException, match=r"updated_by cannot be NULL \(actor required\)"):
        hera.conn.execute(f"UPDATE {table} SET updated_by = NULL WHERE {key} = %s", (org,))
    # An UPDATE that leaves updated_by alone keeps the stored (non-NULL) actor and passes.
    assert hera.conn.execute(f"UPDATE {table} SET updated_at = now() WHERE {key} = %s", (org,)).rowcount >= 1


def test_any_uuid_is_an_actor(hera: Hera) -> None:
    """No FK behind created_by/updated_by: a random uuid is accepted."""
    org = hera.org()
    stranger = uuid.uuid4()
    ent = hera.insert("core_entities", organization_id=org, entity_type="x", entity_name="y",
                      smart_code="HERA.FINANCE.COA.ACCOUNT.YY.v1", created_by=stranger)
    assert hera.scalar("SELECT created_by FROM core_entities WHERE id = %s", (ent,)) == stranger


# =============================================================================================================
# §1.7/§1.8 smart codes and transaction type
# =============================================================================================================

def test_transaction_type_is_upper_cased(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    assert hera.header(txn)["transaction_type"] == "JOURNAL_ENTRY"
    hera.conn.execute("UPDATE universal_transactions SET transaction_type = 'sale' WHERE id = %s", (txn,))
    assert hera.header(txn)["transaction_type"] == "SALE"


def test_header_smart_code_version_case_flips(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    # INSERT: second normaliser lower-cases the version.
    assert hera.header(txn)["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.v1"
    # UPDATE without smart_code in SET: only the upper-casing trigger fires.
    hera.conn.execute("UPDATE universal_transactions SET transaction_status = 'posted' WHERE id = %s", (txn,))
    assert hera.header(txn)["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.V1"
    # hera_txn_update_v1 always sets smart_code, so the version is lower case again.
    res = named_call(hera.conn, "hera_txn_update_v1", p_organization_id=org, p_transaction_id=txn,
                     p_patch={"reference_number": "R-1"}, p_actor_user_id=hera.actor)
    assert res["success"] is True
    assert hera.header(txn)["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.v1"
    # A plain UPDATE listing smart_code (even unchanged) also keeps .v.
    hera.conn.execute("UPDATE universal_transactions SET smart_code = smart_code WHERE id = %s", (txn,))
    assert hera.header(txn)["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.v1"


def test_header_code_is_trimmed_and_upper_cased_on_insert(hera: Hera) -> None:
    org = hera.org()
    txn = hera.emit(org, p_smart_code="  hera.finance.gl.txn.journal.v3 ", p_transaction_code="LC-1")
    assert hera.header(txn)["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.v3"


def test_header_insertion_for_two_segment_codes(hera: Hera) -> None:
    org = hera.org()
    txn = hera.emit(org, p_smart_code="HERA.SALON.POS.SALE.v1", p_transaction_type="sale", p_total_amount=10)
    assert hera.header(txn)["smart_code"] == "HERA.SALON.POS.SALE.HEADER.v1"
    # Not on three segments.
    txn2 = hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.SALE.v1", p_transaction_type="sale")
    assert hera.header(txn2)["smart_code"] == "HERA.SALON.POS.TXN.SALE.v1"


@pytest.mark.parametrize("code", ["HERA.SD.SALES.TXN.SHIPMENT.v1", "HERA.HR.PAYROLL.TXN.PAYRUN.V1",
                                  "HERA.MM.INVENTORY.TXN.GOODS_RECEIPT.V1", "HERA.SALON_PRO.POS.TXN.SALE.v1",
                                  "HERA.FINANCE.GL.TXN.JOURNAL", "HERA.FINANCE.GL.TXN.JOURNAL.v1.LINE"])
def test_header_strict_scheme_rejects(hera: Hera, code: str) -> None:
    org = hera.org()
    with pytest.raises(errors.RaiseException, match=r"^smart_code violates HERA scheme"):
        hera.emit(org, p_smart_code=code)
    assert hera.scalar("SELECT count(*) FROM universal_transactions") == 0


def test_two_letter_industry_rejected_on_entities_and_lines(hera: Hera) -> None:
    org = hera.org()
    with pytest.raises(errors.CheckViolation) as exc:
        hera.entity(org, smart_code="HERA.SD.SALES.TXN.SHIPMENT.v1")
    assert constraint_of(exc) == "chk_core_entities_smart_code_pattern"
    txn = hera.journal(org)
    with pytest.raises(errors.CheckViolation) as exc:
        hera.insert("universal_transaction_lines", organization_id=org, transaction_id=txn, line_number=5,
                    line_type="x", smart_code="HERA.SD.SALES.TXN.SHIPMENT.v1", created_by=hera.actor)
    assert constraint_of(exc) == "chk_utl_smart_code_pattern"


def test_too_few_segments_rejected(hera: Hera) -> None:
    """HERA.ACCOUNTING.ORG.CONFIG.V2 has only two segments after the industry (Family A's cdd code)."""
    org = hera.org()
    ent = hera.entity(org)
    with pytest.raises(errors.CheckViolation) as exc:
        hera.insert("core_dynamic_data", organization_id=org, entity_id=ent, field_name="finance_dna_v2_config",
                    smart_code="HERA.ACCOUNTING.ORG.CONFIG.V2", created_by=hera.actor)
    assert constraint_of(exc) == "core_dynamic_data_smart_code_ck"
    with pytest.raises(errors.CheckViolation) as exc:
        hera.entity(org, smart_code="HERA.ACCOUNTING.ORG.CONFIG.V2")
    assert constraint_of(exc) in {"chk_core_entities_smart_code_pattern", "core_entities_smart_code_ck"}
    ent2 = hera.entity(org)
    with pytest.raises(errors.CheckViolation) as exc:
        hera.insert("core_relationships", organization_id=org, from_entity_id=ent, to_entity_id=ent2,
                    relationship_type="X", smart_code="HERA.ACCOUNTING.ORG.CONFIG.V2", created_by=hera.actor)
    assert constraint_of(exc) == "core_relationships_smart_code_ck"


def test_too_many_segments_rejected(hera: Hera) -> None:
    org = hera.org()
    hera.entity(org, smart_code="HERA.FINANCE.A1.A2.A3.A4.A5.A6.A7.A8.v1")  # 8 segments: the maximum
    with pytest.raises(errors.CheckViolation):
        hera.entity(org, smart_code="HERA.FINANCE.A1.A2.A3.A4.A5.A6.A7.A8.A9.v1")


STRICT_REFERENCE = r"^HERA\.[A-Z0-9]{3,15}(?:\.[A-Z0-9_]{2,30}){3,8}\.v[0-9]+$"
LOOSE_REFERENCE = r"^HERA\.[A-Z0-9_]{3,30}(?:\.[A-Z0-9_]{2,40}){3,8}\.v[0-9]+$"
STRICT_CHECKS = ("chk_core_entities_smart_code_pattern", "chk_ut_smart_code_pattern", "chk_utl_smart_code_pattern")
LOOSE_CHECKS = ("core_entities_smart_code_ck", "core_dynamic_data_smart_code_ck", "core_relationships_smart_code_ck",
                "ut_smart_code_ck", "utl_smart_code_ck")


def test_smart_code_checks_are_the_literal_patterns(conn: psycopg.Connection[Any]) -> None:
    """§1.7, §8: production checks smart codes with its literal regexes in the CHECKs themselves (35-71 µs per
    row), strict ones validated, loose ones NOT VALID; no helper function is involved, so no check of the
    harness may rely on one either."""
    rows = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace AND contype = 'c'")}
    for name in STRICT_CHECKS:
        definition, valid = rows[name]
        assert valid and STRICT_REFERENCE in definition and "upper((smart_code)::text)" in definition, name
    for name in LOOSE_CHECKS:
        definition, valid = rows[name]
        assert not valid and f"~* '{LOOSE_REFERENCE}'" in definition, name
    helpers = conn.execute("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
                           "AND proname LIKE 'hera_smart_code_is%%'").fetchall()
    assert helpers == []


def test_pattern_checks_accept_exactly_what_the_patterns_say(hera: Hera) -> None:
    """On a grid of boundary codes, a dynamic-data row (loose CHECK only) is accepted exactly when the loose
    pattern matches, an entity (strict and loose) exactly when both do."""
    org = hera.org()
    owner = hera.entity(org)
    codes = ["HERA.FINANCE.GL.TXN.JOURNAL.v1", "hera.finance.gl.txn.journal.v1", "HERA.FINANCE.GL.TXN.JOURNAL.V1",
             "HERA.SD.SALES.TXN.SHIPMENT.v1", "HERA.SALON_PRO.GL.TXN.JOURNAL.v1", f"HERA.{'A' * 15}.GL.TXN.X1.v1",
             f"HERA.{'A' * 16}.GL.TXN.X1.v1", f"HERA.FIN.{'D' * 30}.GL.TXN.v1", f"HERA.FIN.{'D' * 31}.GL.TXN.v1",
             f"HERA.FIN.{'D' * 41}.GL.TXN.v1", "HERA.FIN.GL.TXN.v1", "HERA.FIN.A1.A2.A3.A4.A5.A6.A7.A8.v1",
             "HERA.FIN.A1.A2.A3.A4.A5.A6.A7.A8.A9.v1", "HERA.FIN.GL.X.JOURNAL.v1", "HERA.FIN.GL.TXN.JOURNAL.v",
             "HERA.FIN.GL.TXN.JOURNAL.v12", "HERA.FIN.GL-X.TXN.JOURNAL.v1", " HERA.FIN.GL.TXN.JOURNAL.v1"]
    for i, code in enumerate(codes):
        strict, loose = hera.conn.execute(
            r"SELECT regexp_replace(upper(%(c)s), '\.V([0-9]+)$', '.v\1') ~ %(s)s, %(c)s ~* %(l)s",
            {"c": code, "s": STRICT_REFERENCE, "l": LOOSE_REFERENCE}).fetchone() or (None, None)
        for table, accepts in (("core_dynamic_data", loose), ("core_entities", strict and loose)):
            try:
                with hera.conn.transaction():
                    if table == "core_dynamic_data":
                        hera.insert(table, organization_id=org, entity_id=owner, field_name=f"f{i}",
                                    smart_code=code, created_by=hera.actor, updated_by=hera.actor)
                    else:
                        hera.entity(org, smart_code=code)
                stored = True
            except errors.CheckViolation:
                stored = False
            assert stored == accepts, (table, code)


def test_lower_case_entity_code_accepted_and_stored_as_written(hera: Hera) -> None:
    org = hera.org()
    ent = hera.entity(org, smart_code="hera.finance.test.entity.lower.v1")
    assert hera.scalar("SELECT smart_code FROM core_entities WHERE id = %s", (ent,)) == \
        "hera.finance.test.entity.lower.v1"
    ent2 = hera.entity(org, smart_code="HERA.FINANCE.TEST.ENTITY.UPPER.V1")
    assert hera.scalar("SELECT smart_code FROM core_entities WHERE id = %s", (ent2,)) == \
        "HERA.FINANCE.TEST.ENTITY.UPPER.V1"
    hera.conn.execute("UPDATE core_entities SET entity_name = 'renamed' WHERE id = %s", (ent,))
    assert hera.scalar("SELECT smart_code FROM core_entities WHERE id = %s", (ent,)) == \
        "hera.finance.test.entity.lower.v1"


def test_loose_pattern_on_dynamic_data_and_relationships(hera: Hera) -> None:
    """Only the loose pattern applies there: an underscore industry of up to 30 chars is fine."""
    org = hera.org()
    ent = hera.entity(org)
    ent2 = hera.entity(org)
    code = "HERA.SALON_PRO_SERVICES.DYN.FIELD.GENERIC.v1"
    cdd = hera.insert("core_dynamic_data", organization_id=org, entity_id=ent, field_name="f", smart_code=code,
                      created_by=hera.actor)
    assert hera.scalar("SELECT smart_code FROM core_dynamic_data WHERE id = %s", (cdd,)) == code
    hera.insert("core_relationships", organization_id=org, from_entity_id=ent, to_entity_id=ent2,
                relationship_type="HAS_CATEGORY", smart_code="hera.salon_pro.rel.has.category.v1",
                created_by=hera.actor)
    # ...while the strict pattern on core_entities refuses the underscore industry.
    with pytest.raises(errors.CheckViolation) as exc:
        hera.entity(org, smart_code=code)
    assert constraint_of(exc) == "chk_core_entities_smart_code_pattern"


def test_lines_keep_smart_code_case(hera: Hera) -> None:
    org = hera.org()
    dr, cr = hera.entity(org), hera.entity(org)
    lines = hera.gl_lines(dr, cr)
    lines[0]["smart_code"] = "HERA.FINANCE.GL.LINE.DEBIT.V1"
    lines[1]["smart_code"] = "HERA.FINANCE.GL.LINE.CREDIT.v1"
    txn = hera.emit(org, lines=lines)
    assert [x["smart_code"] for x in hera.lines(txn)] == ["HERA.FINANCE.GL.LINE.DEBIT.V1",
                                                          "HERA.FINANCE.GL.LINE.CREDIT.v1"]
    hera.conn.execute("UPDATE universal_transaction_lines SET description = 'x' WHERE transaction_id = %s", (txn,))
    assert hera.lines(txn)[0]["smart_code"] == "HERA.FINANCE.GL.LINE.DEBIT.V1"


def test_no_self_relationship(hera: Hera) -> None:
    org = hera.org()
    ent = hera.entity(org)
    with pytest.raises(errors.CheckViolation) as exc:
        hera.insert("core_relationships", organization_id=org, from_entity_id=ent, to_entity_id=ent,
                    relationship_type="MEMBER_OF", smart_code="HERA.FINANCE.REL.MEMBER.OF.v1",
                    created_by=hera.actor)
    assert constraint_of(exc) == "no_self_relationship"


def test_gl_side_required(hera: Hera) -> None:
    org = hera.org()
    dr, cr = hera.entity(org), hera.entity(org)
    # Nested line_data.side (the create_v1 shape) is stored one level too deep by emit.
    nested = [{k: v for k, v in line.items() if k != "side"} | {"line_data": {"side": line["side"]}}
              for line in hera.gl_lines(dr, cr)]
    with pytest.raises(errors.CheckViolation) as exc:
        hera.emit(org, lines=nested, p_transaction_code="NESTED")
    assert constraint_of(exc) == "chk_gl_side_required"
    # Lower-case side is not DR/CR exactly.
    lower = hera.gl_lines(dr, cr)
    lower[0]["side"] = "dr"
    with pytest.raises(errors.CheckViolation) as exc:
        hera.emit(org, lines=lower, p_transaction_code="LOWER")
    assert constraint_of(exc) == "chk_gl_side_required"
    assert hera.scalar("SELECT count(*) FROM universal_transactions") == 0  # the emit is atomic
    # Top-level side works.
    txn = hera.emit(org, lines=hera.gl_lines(dr, cr), p_transaction_code="TOP")
    assert [x["line_data"]["side"] for x in hera.lines(txn)] == ["DR", "CR"]
    # Non-GL lines need no side.
    hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.SALE.v1", p_transaction_type="SALE",
              lines=[{"smart_code": "HERA.SALON.POS.LINE.SERVICE.v1", "line_amount": 100}])


def test_total_sign_rule(hera: Hera) -> None:
    org = hera.org()
    with pytest.raises(errors.CheckViolation) as exc:
        hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.REFUND.v1", p_total_amount=50)
    assert constraint_of(exc) == "chk_txn_total_sign"
    refund = hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.REFUND.v1", p_total_amount=-50)
    assert hera.header(refund)["total_amount"] == Decimal("-50")
    with pytest.raises(errors.CheckViolation) as exc:
        hera.emit(org, p_smart_code=JOURNAL_CODE, p_total_amount=-1)
    assert constraint_of(exc) == "chk_txn_total_sign"
    with pytest.raises(errors.CheckViolation):
        hera.conn.execute("UPDATE universal_transactions SET total_amount = 1 WHERE id = %s", (refund,))


@pytest.mark.parametrize(("code", "negative"), [
    ("HERA.SALON.POS.CREDIT_MEMO.X.v1", True),        # part 4
    ("HERA.SALON.POS.RETURN.X.v1", True),
    ("HERA.SALON.POS.TXN.ADJUST.v1", True),           # part 5
    ("HERA.SALON.POS.TXN.REVERSAL.v1", True),
    ("HERA.SALON.INV.TXN.STOCK.WRITE_OFF.v1", True),  # part 6
    ("HERA.SALON.INV.TXN.STOCK.BREAKAGE.v1", True),
    ("HERA.SALON.POS.ADJUST.X.v1", False),            # ADJUST only counts in part 5
    ("HERA.SALON.POS.TXN.SALE.CREDIT_MEMO.v1", False),  # CREDIT_MEMO only in part 4
    ("HERA.SALON.INV.TXN.WASTE.v1", False),           # WASTE only in part 6
    ("HERA.FINANCE.GL.TXN.JOURNAL.REVERSAL.v1", False),  # part 6 REVERSAL is not negative
    ("HERA.FINANCE.GL.TXN.JOURNAL.v1", False),
])
def test_smart_is_negative_txn_static(conn: psycopg.Connection[Any], code: str, negative: bool) -> None:
    assert conn.execute("SELECT smart_is_negative_txn_static(%s)", (code,)).fetchone() == (negative,)


def test_transaction_code_unique_globally(hera: Hera) -> None:
    a, b = hera.org(), hera.org()
    hera.journal(a, code="JE-SHARED")
    with pytest.raises(errors.UniqueViolation) as exc:
        hera.journal(b, code="JE-SHARED")
    assert constraint_of(exc) == "universal_transactions_transaction_code_key"
    # NULL codes do not collide.
    hera.emit(a, p_transaction_code=None)
    hera.emit(b, p_transaction_code=None)


def test_line_number_unique_per_transaction(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    with pytest.raises(errors.UniqueViolation) as exc:
        hera.insert("universal_transaction_lines", organization_id=org, transaction_id=txn, line_number=1,
                    line_type="x", smart_code="HERA.SALON.POS.LINE.SERVICE.v1", created_by=hera.actor)
    assert constraint_of(exc) == "universal_transaction_lines_transaction_id_line_number_key"


def test_dynamic_data_one_value_per_entity_field(hera: Hera) -> None:
    org = hera.org()
    ent = hera.entity(org)
    row = {"organization_id": org, "entity_id": ent, "field_name": "account_code",
           "smart_code": "HERA.FINANCE.COA.FIELD.ACCOUNT_CODE.v1", "created_by": hera.actor}
    hera.insert("core_dynamic_data", **row, field_value_text="1100")
    with pytest.raises(errors.UniqueViolation) as exc:
        hera.insert("core_dynamic_data", **row, field_value_text="1200")
    assert constraint_of(exc) in {"ux_cdd_org_entity_field", "ux_dynamic_data_entity_field"}
    # Another entity (or org) may use the same field name.
    hera.insert("core_dynamic_data", **(row | {"entity_id": hera.entity(org)}))


def test_entity_code_is_not_unique(hera: Hera) -> None:
    org = hera.org()
    hera.entity(org, "GL_ACCOUNT", entity_code="1100")
    hera.entity(org, "GL_ACCOUNT", entity_code="1100")
    assert hera.scalar("SELECT count(*) FROM core_entities WHERE entity_code = '1100'") == 2


def test_primary_has_role_unique_per_user(hera: Hera) -> None:
    org = hera.org()
    user = hera.entity(org, "USER", smart_code="HERA.PLATFORM.USER.ENTITY.MEMBER.v1")
    roles = [hera.entity(org, "APP_ROLE", smart_code="HERA.PLATFORM.ROLE.ENTITY.APP.v1") for _ in range(3)]

    def link(role: uuid.UUID, primary: bool) -> uuid.UUID:
        return hera.insert("core_relationships", organization_id=org, from_entity_id=user, to_entity_id=role,
                           relationship_type="HAS_ROLE", relationship_data={"is_primary": primary},
                           smart_code="HERA.PLATFORM.REL.HAS.ROLE.v1", created_by=hera.actor)

    link(roles[0], True)
    link(roles[1], False)
    with pytest.raises(errors.UniqueViolation) as exc:
        link(roles[2], True)
    assert constraint_of(exc) == "ux_has_role_primary_per_org_user"


# =============================================================================================================
# §1.8 other triggers
# =============================================================================================================

def test_triggers_and_firing_order(conn: psycopg.Connection[Any]) -> None:
    """§1.8, §8: production's triggers, none with a WHEN clause (each function runs on every row), the two
    roll-up triggers on lines disabled, the canonical-type rule a deferred constraint trigger."""
    rows = conn.execute("""SELECT c.relname, t.tgname, t.tgenabled::text, pg_get_triggerdef(t.oid)
                             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                            WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace
                            ORDER BY 1, 2""").fetchall()
    by_table: dict[str, list[str]] = {}
    for table, name, enabled, definition in rows:
        assert enabled == ("D" if name in ("trg_tl_calc_amounts", "trg_tl_rollup_aiud") else "O"), name
        assert " WHEN " not in definition, definition
        by_table.setdefault(table, []).append(name)
    assert by_table["universal_transactions"] == ["enforce_actor_audit", "trg_enforce_txn_type_upper",
                                                  "trg_txn_fx_on_post", "trg_universal_txn_smartcode",
                                                  "trg_ut_smart_code_biud"]
    assert by_table["core_entities"] == ["enforce_actor_audit", "trg_hera_normalize_entity_biu",
                                         "trg_require_has_canonical_type"]
    assert by_table["core_dynamic_data"] == ["enforce_actor_audit", "trg_ef_soft_validate"]
    assert by_table["universal_transaction_lines"] == ["enforce_actor_audit", "trg_tl_calc_amounts",
                                                       "trg_tl_rollup_aiud"]
    for table in ("core_organizations", "core_relationships"):
        assert by_table[table] == ["enforce_actor_audit"]
    defs = {r[1]: r[3] for r in rows}
    assert "BEFORE INSERT OR UPDATE OF smart_code" in defs["trg_ut_smart_code_biud"]
    assert "DEFERRABLE INITIALLY DEFERRED" in defs["trg_require_has_canonical_type"]
    assert "tg_txn_fx_on_post_any('transaction_status')" in defs["trg_txn_fx_on_post"]


def test_every_function_of_our_core_is_one_of_productions(conn: psycopg.Connection[Any]) -> None:
    """Our core defines production's functions (same names and arguments) and nothing else but the listed
    harness additions, so nothing the harness calls can be missing on production."""
    from tests.unit.test_core_functions import HARNESS_ONLY, core_functions

    present = {r[0] for r in conn.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace IN ('public'::regnamespace, 'auth'::regnamespace)")}
    assert core_functions() - HARNESS_ONLY <= present
    ours = {r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "AND p.proname = ANY(%s)", (sorted(core_functions() - HARNESS_ONLY),))}
    assert {"hera_txn_reverse_v1(uuid,uuid,timestamp with time zone,text,uuid)", "smart_is_negative_txn_static(text)",
            "hera_txn_read_v1(uuid,uuid,boolean,boolean)", "tg_txn_fx_on_post_any()"} <= ours


def test_sign_check_function_is_not_inlined(conn: psycopg.Connection[Any]) -> None:
    """§8: chk_txn_total_sign calls smart_is_negative_txn_static, a SQL function whose body is a WITH query,
    which PostgreSQL never inlines (a real call, ~83 µs inside the RPCs). Its parameter is named p."""
    row = conn.execute("SELECT proargnames, prosrc FROM pg_proc WHERE proname = 'smart_is_negative_txn_static'"
                       ).fetchone()
    assert row is not None and row[0] == ["p"] and row[1].strip().upper().startswith("WITH")
    plan = conn.execute("EXPLAIN (VERBOSE) SELECT smart_is_negative_txn_static(smart_code) "
                        "FROM universal_transactions").fetchall()
    assert any("smart_is_negative_txn_static" in r[0] for r in plan)  # still a call after planning


def test_header_total_is_not_rolled_up(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org, amount=100, p_total_amount=7)
    assert hera.header(txn)["total_amount"] == Decimal("7")
    hera.conn.execute("UPDATE universal_transaction_lines SET line_amount = 999 WHERE transaction_id = %s", (txn,))
    assert hera.header(txn)["total_amount"] == Decimal("7")


@pytest.mark.parametrize("entity_type", ["PERSON", "STAFF", "EMPLOYEE", "ALIAS", "ROLE"])
def test_people_like_entities_fail_in_fresh_org(hera: Hera, entity_type: str) -> None:
    org = hera.org()
    with pytest.raises(errors.RaiseException, match=r"created_by cannot be NULL \(actor required\)"):
        hera.entity(org, entity_type, smart_code="HERA.SALON.ENTITY.STAFF.MEMBER.v1")
    assert hera.scalar("SELECT count(*) FROM core_entities WHERE organization_id = %s", (org,)) == 0
    # Other types are unaffected.
    hera.entity(org, "CUSTOMER", smart_code="HERA.SALON.ENTITY.CUSTOMER.MEMBER.v1")


def test_dynamic_data_soft_validation(hera: Hera) -> None:
    """§1.8: trg_ef_soft_validate judges the row stored under NEW.id. On INSERT nothing is stored yet, so every
    new field is 'invalid' with all four "present" flags false; an UPDATE judges the stored row (entity in the
    org, known field_type), whatever the new values are."""
    org = hera.org()
    ent = hera.entity(org)
    base = {"organization_id": org, "entity_id": ent, "smart_code": "HERA.FINANCE.COA.FIELD.GENERIC.v1",
            "created_by": hera.actor, "updated_by": hera.actor}
    a = hera.insert("core_dynamic_data", **base, field_name="a", field_type="number", field_value_number=3,
                    validation_status="valid")
    b = hera.insert("core_dynamic_data", **base, field_name="b", field_type="currency")
    inserted = {"validation_errors": {"missing_fields": {"organization_id": False, "entity_id": False,
                                                         "field_name": False, "smart_code": False}}}
    rows = {r[0]: (r[1], r[2]) for r in hera.conn.execute(
        "SELECT field_name, validation_status, ai_insights FROM core_dynamic_data WHERE organization_id = %s",
        (org,))}
    assert rows == {"a": ("invalid", inserted), "b": ("invalid", inserted)}
    hera.conn.execute("UPDATE core_dynamic_data SET field_value_number = 4 WHERE id = %s", (a,))
    hera.conn.execute("UPDATE core_dynamic_data SET field_value_text = 'x' WHERE id = %s", (b,))
    rows = {r[0]: (r[1], r[2]) for r in hera.conn.execute(
        "SELECT field_name, validation_status, ai_insights FROM core_dynamic_data WHERE organization_id = %s",
        (org,))}
    assert rows == {"a": ("valid", {"validation_errors": {}}),
                    "b": ("invalid", {"validation_errors": {"field_type": "unsupported type"}})}


def test_fx_required_when_posting_foreign_currency(hera: Hera) -> None:
    """§1.8: moving a financial code to POSTED with two different currencies needs rate, date and type; while
    it stays POSTED those are frozen; leaving POSTED is not guarded."""
    org = hera.org()
    txn = hera.journal(org, p_transaction_currency_code="EUR", p_base_currency_code="USD")
    with pytest.raises(errors.RaiseException, match="Cannot POST financial txn without exchange_rate"):
        hera.conn.execute("UPDATE universal_transactions SET transaction_status = 'posted' WHERE id = %s", (txn,))
    hera.conn.execute("""UPDATE universal_transactions SET transaction_status = 'POSTED', exchange_rate = 1.1,
                         exchange_rate_date = '2025-01-31', exchange_rate_type = 'SPOT' WHERE id = %s""", (txn,))
    with pytest.raises(errors.RaiseException, match="FX fields are immutable after POST"):
        hera.conn.execute("UPDATE universal_transactions SET exchange_rate = 1.2 WHERE id = %s", (txn,))
    hera.conn.execute("UPDATE universal_transactions SET transaction_status = 'reversed', exchange_rate = 1.2 "
                      "WHERE id = %s", (txn,))
    assert hera.header(txn)["exchange_rate"] == Decimal("1.2000000000")
    # Same currency, or a non-financial code, posts without rates.
    same = hera.journal(org)
    hera.conn.execute("UPDATE universal_transactions SET transaction_status = 'posted' WHERE id = %s", (same,))
    other = hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.SALE.v1", p_transaction_type="SALE",
                      p_transaction_currency_code="EUR", p_base_currency_code="USD")
    hera.conn.execute("UPDATE universal_transactions SET transaction_status = 'posted' WHERE id = %s", (other,))
    assert hera.header(other)["transaction_status"] == "posted"


# =============================================================================================================
# §2.1 hera_txn_emit_v1
# =============================================================================================================

def test_emit_signature(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute("""SELECT p.proargnames, pg_get_function_identity_arguments(p.oid), p.prosecdef,
                                  p.prorettype::regtype::text, p.pronargdefaults
                             FROM pg_proc p WHERE p.proname = 'hera_txn_emit_v1'""").fetchall()
    assert len(rows) == 1
    names, _, secdef, rettype, ndefaults = rows[0]
    assert names == [
        "p_organization_id", "p_transaction_type", "p_smart_code", "p_transaction_code", "p_transaction_date",
        "p_source_entity_id", "p_target_entity_id", "p_total_amount", "p_transaction_status",
        "p_reference_number", "p_external_reference", "p_business_context", "p_metadata", "p_approval_required",
        "p_approved_by", "p_approved_at", "p_transaction_currency_code", "p_base_currency_code",
        "p_exchange_rate", "p_exchange_rate_date", "p_exchange_rate_type", "p_fiscal_period_entity_id",
        "p_fiscal_year", "p_fiscal_period", "p_posting_period_code", "p_lines", "p_actor_user_id"]
    assert (secdef, rettype, ndefaults) == (True, "uuid", 24)


def test_emit_stores_header_and_lines(hera: Hera) -> None:
    org = hera.org()
    dr, cr = hera.entity(org), hera.entity(org)
    lines = hera.gl_lines(dr, cr, 100)
    lines.append({"smart_code": "HERA.FINANCE.GL.LINE.MEMO.v1", "side": "DR", "extra": {"k": 1}})  # defaults
    txn = hera.emit(org, lines=lines, p_transaction_code="JE-0001", p_total_amount=123.45,
                    p_metadata={"finance_dna_version": "v1"})
    assert isinstance(txn, uuid.UUID)
    h = hera.header(txn)
    assert (h["transaction_code"], h["total_amount"], h["transaction_status"], h["smart_code_status"],
            h["version"], h["created_by"], h["updated_by"], h["metadata"]) == \
        ("JE-0001", Decimal("123.45"), "pending", "DRAFT", 1, hera.actor, hera.actor, {"finance_dna_version": "v1"})
    got = hera.lines(txn)
    assert [x["line_number"] for x in got] == [1, 2, 3]
    assert [x["entity_id"] for x in got[:2]] == [dr, cr]
    assert [x["line_amount"] for x in got] == [Decimal(100), Decimal(100), Decimal(0)]
    third = got[2]
    assert (third["line_type"], third["quantity"], third["unit_amount"], third["discount_amount"],
            third["tax_amount"], third["description"], third["created_by"]) == \
        ("generic", Decimal(1), Decimal(0), Decimal(0), Decimal(0), None, hera.actor)
    # line_data is the entire line object.
    assert third["line_data"] == lines[2]
    assert got[0]["line_data"]["entity_id"] == str(dr) and got[0]["line_data"]["line_amount"] == 100


def test_emit_does_not_validate(hera: Hera) -> None:
    org = hera.org()
    dr, cr = hera.entity(org), hera.entity(org)
    txn = hera.emit(org, lines=hera.gl_lines(dr, cr, 100, credit_amount=60), p_total_amount=5)
    assert hera.header(txn)["total_amount"] == Decimal(5)
    assert len(hera.lines(txn)) == 2


def test_emit_default_line_code_violates_pattern(hera: Hera) -> None:
    org = hera.org()
    with pytest.raises(errors.CheckViolation) as exc:
        hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.SALE.v1", p_transaction_type="SALE",
                  lines=[{"line_amount": 10}])
    assert constraint_of(exc) in {"chk_utl_smart_code_pattern", "utl_smart_code_ck"}
    with pytest.raises(errors.CheckViolation) as exc:  # GL header: the .GL. default fails on the side first
        hera.emit(org, lines=[{"line_amount": 10}])
    assert constraint_of(exc) == "chk_gl_side_required"


def test_emit_without_actor_fails(hera: Hera) -> None:
    org = hera.org()
    with pytest.raises(errors.RaiseException, match="created_by cannot be NULL"):
        hera.emit(org, p_actor_user_id=None)


# =============================================================================================================
# §2.2 hera_txn_reverse_v1
# =============================================================================================================

def net_by_account(conn: psycopg.Connection[Any], txns: list[uuid.UUID]) -> dict[uuid.UUID, Decimal]:
    rows = conn.execute("""SELECT entity_id, sum(debit_amount - credit_amount)
                             FROM v_universal_transaction_lines_drcr WHERE transaction_id = ANY(%s)
                            GROUP BY entity_id""", (txns,)).fetchall()
    return dict(rows)  # type: ignore[arg-type]


def test_reverse_overload_b(hera: Hera) -> None:
    org = hera.org()
    orig = hera.journal(org, code="JE-0001", p_metadata={"source": "pos"}, p_reference_number="R-9")
    res = hera.reverse(org, orig, reason="duplicate")
    assert res["success"] is True and set(res) == {"success", "reversal_id", "original_id"}
    assert res["original_id"] == str(orig)
    rev = uuid.UUID(res["reversal_id"])

    r = hera.header(rev)
    assert r["transaction_code"] == "JE-0001-REV"
    assert r["transaction_status"] == "posted"
    assert r["transaction_type"] == "JOURNAL_ENTRY"
    assert r["reference_number"] == "R-9"
    assert r["total_amount"] == Decimal(200)  # |sum of negated lines|, not the journal amount
    assert r["metadata"]["source"] == "pos"
    assert r["metadata"]["reversal_of"] == str(orig)
    assert r["metadata"]["reversal_reason"] == "duplicate"
    assert "reversal_at" in r["metadata"]
    # Case-sensitive .REVERSAL insertion never matches the stored lower-case .v1, and the total UPDATE flips it.
    assert r["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.V1"
    assert r["created_by"] == hera.actor

    o = hera.header(orig)
    assert o["transaction_status"] == "reversed"
    assert o["version"] == 2
    assert o["metadata"]["reversal_id"] == str(rev)
    assert o["metadata"]["reversal_reason"] == "duplicate"
    assert "reversed_at" in o["metadata"] and o["metadata"]["source"] == "pos"
    assert o["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.V1"

    orig_lines, rev_lines = hera.lines(orig), hera.lines(rev)
    assert len(rev_lines) == len(orig_lines) == 2
    for a, b in zip(orig_lines, rev_lines, strict=True):
        assert b["line_number"] == a["line_number"]
        assert b["entity_id"] == a["entity_id"]
        assert b["line_amount"] == -a["line_amount"]
        assert b["quantity"] == -a["quantity"]
        assert b["line_data"]["side"] == a["line_data"]["side"]  # NOT flipped
        assert b["line_data"] == a["line_data"]
        assert b["description"] == "REVERSAL: " + a["description"]
        assert b["smart_code"] == a["smart_code"]
    # Signed DR-CR per account nets to zero over original + reversal; the reversal itself balances.
    assert set(net_by_account(hera.conn, [orig, rev]).values()) == {Decimal(0)}
    hera.conn.execute("SELECT hera_gl_validate_balance(%s, %s)", (org, rev))
    # No relationship row is written.
    assert hera.scalar("SELECT count(*) FROM core_relationships") == 0


def test_reverse_stamps_one_instant_and_leaves_the_originals_actor(hera: Hera) -> None:
    """§2.2 step 5, §8: p_reversal_date dates the twin and is the instant of reversal_at, reversed_at, the twin's
    created_at/updated_at and the original's updated_at; the original keeps its updated_by (only the twin and its
    lines carry the reversing actor); version + 1."""
    org = hera.org()
    orig = hera.journal(org)
    before = hera.header(orig)
    other = uuid.uuid4()
    when = "2024-03-31T10:00:00+00:00"
    res = named_call(hera.conn, "hera_txn_reverse_v1", p_organization_id=org, p_transaction_id=orig,
                     p_reversal_date=when, p_reason="period fix", p_actor_user_id=other)
    o, r = hera.header(orig), hera.header(uuid.UUID(res["reversal_id"]))
    instant = r["transaction_date"]
    assert instant.isoformat() == when
    assert (r["created_at"], r["updated_at"], o["updated_at"]) == (instant, instant, instant)
    stamps = {o["metadata"]["reversed_at"], r["metadata"]["reversal_at"]}
    assert len(stamps) == 1 and hera.scalar("SELECT %s::timestamptz", (stamps.pop(),)) == instant
    assert (o["updated_by"], o["created_by"], o["version"]) == (before["updated_by"], hera.actor, 2)
    assert (r["created_by"], r["updated_by"]) == (other, other)
    assert {line["created_by"] for line in hera.lines(r["id"])} == {other}


def test_reverse_of_a_row_without_updated_by_fails_on_the_actor_rule(hera: Hera) -> None:
    """The reverse's UPDATE of the original does not set updated_by, so an original whose updated_by is NULL
    (rows older than the actor rule) cannot be reversed at all: the actor trigger rejects the UPDATE."""
    org = hera.org()
    orig = hera.journal(org)
    with hera.conn.transaction():
        hera.conn.execute("ALTER TABLE universal_transactions DISABLE TRIGGER enforce_actor_audit")
        hera.conn.execute("UPDATE universal_transactions SET updated_by = NULL WHERE id = %s", (orig,))
        hera.conn.execute("ALTER TABLE universal_transactions ENABLE TRIGGER enforce_actor_audit")
    with pytest.raises(errors.RaiseException, match="updated_by cannot be NULL"):
        hera.reverse(org, orig)


def test_reverse_copies_some_header_fields_only(hera: Hera) -> None:
    org = hera.org()
    period = hera.entity(org, "period")
    orig = hera.journal(org, p_transaction_currency_code="EUR", p_base_currency_code="USD", p_exchange_rate=1.1,
                        p_exchange_rate_date="2025-01-31", p_exchange_rate_type="SPOT",
                        p_fiscal_period_entity_id=period, p_fiscal_year=2025, p_fiscal_period=1,
                        p_posting_period_code="2025-01", p_business_context={"channel": "pos"},
                        p_external_reference="EXT-7")
    rev = uuid.UUID(named_call(hera.conn, "hera_txn_reverse_v1", p_organization_id=org, p_transaction_id=orig,
                               p_reversal_date="2025-02-15T12:00:00Z", p_actor_user_id=hera.actor)["reversal_id"])
    r = hera.header(rev)
    copied = ("transaction_currency_code", "base_currency_code", "exchange_rate", "fiscal_year", "fiscal_period",
              "business_context", "external_reference", "source_entity_id", "target_entity_id")
    o = hera.header(orig)
    assert {k: r[k] for k in copied} == {k: o[k] for k in copied}
    assert (r["exchange_rate_date"], r["exchange_rate_type"], r["fiscal_period_entity_id"],
            r["posting_period_code"]) == (None, None, None, None)
    assert r["transaction_date"].isoformat().startswith("2025-02-15T12:00:00")


def test_reverse_inserts_reversal_segment_only_for_upper_case_version(hera: Hera) -> None:
    org = hera.org()
    orig = hera.journal(org, code="JE-UP")
    hera.conn.execute("UPDATE universal_transactions SET transaction_status = 'approved' WHERE id = %s", (orig,))
    assert hera.header(orig)["smart_code"].endswith(".V1")
    hera.conn.execute("UPDATE universal_transaction_lines SET smart_code = 'HERA.FINANCE.GL.LINE.DEBIT.V1' "
                      "WHERE transaction_id = %s AND line_number = 1", (orig,))
    rev = uuid.UUID(hera.reverse(org, orig)["reversal_id"])
    assert hera.header(rev)["smart_code"] == "HERA.FINANCE.GL.TXN.JOURNAL.REVERSAL.V1"
    assert [x["smart_code"] for x in hera.lines(rev)] == ["HERA.FINANCE.GL.LINE.DEBIT.REVERSAL.V1", CREDIT_CODE]


def test_reverse_failures(hera: Hera) -> None:
    org, other = hera.org(), hera.org()
    orig = hera.journal(org, code="JE-X")
    assert hera.reverse(other, orig) == {"success": False, "error": "Original transaction not found"}
    assert hera.reverse(org, uuid.uuid4()) == {"success": False, "error": "Original transaction not found"}
    with pytest.raises(errors.RaiseException, match="created_by cannot be NULL"):
        named_call(hera.conn, "hera_txn_reverse_v1", p_organization_id=org, p_transaction_id=orig)
    assert hera.header(orig)["transaction_status"] == "pending"
    hera.reverse(org, orig)
    with pytest.raises(errors.UniqueViolation) as exc:  # nothing but the global code key stops a 2nd reversal
        hera.reverse(org, orig)
    assert constraint_of(exc) == "universal_transactions_transaction_code_key"


def test_two_null_code_originals_cannot_both_be_reversed(hera: Hera) -> None:
    org = hera.org()
    a = hera.journal(org, code=None)
    b = hera.emit(org, p_transaction_code=None)
    rev = uuid.UUID(hera.reverse(org, a)["reversal_id"])
    assert hera.header(rev)["transaction_code"] == "-REV"
    with pytest.raises(errors.UniqueViolation):
        hera.reverse(org, b)


def test_reverse_overload_a_always_fails_on_actor(hera: Hera) -> None:
    org = hera.org()
    orig = hera.journal(org)
    with pytest.raises(errors.RaiseException, match="created_by cannot be NULL"):
        named_call(hera.conn, "hera_txn_reverse_v1", p_org_id=org, p_original_txn_id=orig, p_reason="x",
                   p_reversal_smart_code="HERA.FINANCE.GL.TXN.JOURNAL.V2")
    with pytest.raises(errors.RaiseException, match="INVALID_SMART_CODE"):
        named_call(hera.conn, "hera_txn_reverse_v1", p_org_id=org, p_original_txn_id=orig, p_reason="x",
                   p_reversal_smart_code="HERA.ACCOUNTING.GL_X.TXN.REVERSAL.V2")
    assert named_call(hera.conn, "hera_txn_reverse_v1", p_org_id=org, p_original_txn_id=uuid.uuid4(),
                      p_reason="x", p_reversal_smart_code="HERA.FINANCE.GL.TXN.JOURNAL.V2") == \
        {"success": False, "error": "Original transaction not found"}
    assert hera.header(orig)["transaction_status"] == "pending"
    assert hera.scalar("SELECT count(*) FROM universal_transactions") == 1


def test_reverse_overload_signatures(conn: psycopg.Connection[Any]) -> None:
    rows = {tuple(r[0]): r[1] for r in conn.execute(
        "SELECT proargnames, prosecdef FROM pg_proc WHERE proname = 'hera_txn_reverse_v1'").fetchall()}
    assert rows == {
        ("p_org_id", "p_original_txn_id", "p_reason", "p_reversal_smart_code"): True,
        ("p_organization_id", "p_transaction_id", "p_reversal_date", "p_reason", "p_actor_user_id"): True,
    }


# =============================================================================================================
# §2.3 hera_txn_read_v1
# =============================================================================================================

def test_read_positional_calls_are_ambiguous(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    with pytest.raises(errors.AmbiguousFunction):
        hera.conn.execute("SELECT hera_txn_read_v1(%s::uuid, %s::uuid, true)", (org, txn))
    with pytest.raises(errors.AmbiguousFunction):
        hera.conn.execute("SELECT hera_txn_read_v1(%s::uuid, %s::uuid)", (org, txn))
    with pytest.raises(errors.AmbiguousFunction):
        named_call(hera.conn, "hera_txn_read_v1", p_org_id=org, p_transaction_id=txn)
    res = hera.scalar("SELECT hera_txn_read_v1(%s::uuid, %s::uuid, true, false)", (org, txn))
    assert res["success"] is True


def test_read_overload_signatures(conn: psycopg.Connection[Any]) -> None:
    rows = {tuple(r[0]): r[1:] for r in conn.execute(
        "SELECT proargnames, pronargdefaults, prosecdef, prorettype::regtype::text FROM pg_proc "
        "WHERE proname = 'hera_txn_read_v1'").fetchall()}
    assert rows == {
        ("p_org_id", "p_transaction_id", "p_include_lines"): (1, True, "jsonb"),
        ("p_org_id", "p_transaction_id", "p_include_lines", "p_include_deleted"): (2, True, "jsonb"),
    }


def test_read_named_four_arguments(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    # Same line number twice is impossible, so check ordering on a three-line journal inserted out of order.
    hera.insert("universal_transaction_lines", organization_id=org, transaction_id=txn, line_number=0,
                line_type="MEMO", smart_code="HERA.FINANCE.MEMO.LINE.NOTE.v1", created_by=hera.actor)
    res = named_call(hera.conn, "hera_txn_read_v1", p_org_id=org, p_transaction_id=txn, p_include_lines=True,
                     p_include_deleted=False)
    assert set(res) == {"success", "action", "transaction_id", "data"}
    assert (res["success"], res["action"], res["transaction_id"]) == (True, "READ", str(txn))
    header, lines = res["data"]["header"], res["data"]["lines"]
    assert set(header) == {c[0] for c in EXPECTED_COLUMNS["universal_transactions"]} and len(header) == 35
    assert header["transaction_type"] == "JOURNAL_ENTRY"
    line_columns = {c[0] for c in EXPECTED_COLUMNS["universal_transaction_lines"]}
    assert all(set(line) == line_columns - {"organization_id", "transaction_id"} for line in lines)
    assert [line["line_number"] for line in lines] == [0, 1, 2]
    assert lines[1]["line_data"]["side"] == "DR"
    # Another org's id is not found.
    miss = named_call(hera.conn, "hera_txn_read_v1", p_org_id=hera.org(), p_transaction_id=txn,
                      p_include_deleted=False)
    assert miss["success"] is False


def test_read_hides_voided_unless_include_deleted(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    named_call(hera.conn, "hera_txn_void_v1", p_organization_id=org, p_transaction_id=txn, p_reason="dup",
               p_actor_user_id=hera.actor)
    hidden = named_call(hera.conn, "hera_txn_read_v1", p_org_id=org, p_transaction_id=txn,
                        p_include_deleted=False)
    assert hidden["success"] is False
    shown = named_call(hera.conn, "hera_txn_read_v1", p_org_id=org, p_transaction_id=txn, p_include_deleted=True)
    assert shown["success"] is True and shown["data"]["header"]["transaction_status"] == "voided"


def test_read_reports_errors_as_envelope(hera: Hera, db_dsn: str) -> None:
    """Errors inside read B come back as success:false with 'SQLSTATE: message' (here: a lock timeout)."""
    org = hera.org()
    txn = hera.journal(org)
    hera.conn.execute("SET lock_timeout = '50ms'")
    with connect(db_dsn) as locker:
        locker.execute("LOCK TABLE universal_transaction_lines IN ACCESS EXCLUSIVE MODE")
        res = named_call(hera.conn, "hera_txn_read_v1", p_org_id=org, p_transaction_id=txn,
                         p_include_deleted=False)
        locker.rollback()
    hera.conn.execute("RESET lock_timeout")
    assert res["success"] is False
    assert res["error"].startswith("55P03: ")


# =============================================================================================================
# §2.4 hera_txn_query_v1
# =============================================================================================================

def query(hera: Hera, org: uuid.UUID, **filters: Any) -> dict[str, Any]:
    return named_call(hera.conn, "hera_txn_query_v1", p_org_id=org, p_filters=filters)  # type: ignore[no-any-return]


def test_query_shape_order_and_paging(hera: Hera) -> None:
    org, other = hera.org(), hera.org()
    ids = [hera.journal(org, code=f"Q-{i}", p_transaction_date=f"2025-01-0{i + 1}T10:00:00Z") for i in range(3)]
    hera.journal(other, code="Q-OTHER")
    res = query(hera, org)
    assert (res["success"], res["action"]) == (True, "QUERY")
    data = res["data"]
    assert set(data) == {"items", "limit", "offset", "next_offset", "total"}
    assert (data["limit"], data["offset"], data["total"], data["next_offset"]) == (100, 0, 3, None)
    assert [i["id"] for i in data["items"]] == [str(x) for x in reversed(ids)]  # newest first
    assert "lines" not in data["items"][0] and len(data["items"][0]) == 35  # headers only
    page = query(hera, org, limit=2)["data"]
    assert (len(page["items"]), page["next_offset"]) == (2, 2)
    page2 = query(hera, org, limit=2, offset=2)["data"]
    assert [i["id"] for i in page2["items"]] == [str(ids[0])] and page2["next_offset"] is None
    assert query(hera, org, limit=0)["data"]["limit"] == 1
    assert query(hera, org, limit=10000)["data"]["limit"] == 500


def test_query_filters(hera: Hera) -> None:
    org = hera.org()
    src = hera.entity(org, "CUSTOMER", smart_code="HERA.SALON.ENTITY.CUSTOMER.MEMBER.v1")
    j1 = hera.journal(org, code="JE-A1", p_transaction_date="2025-02-01T00:00:00Z", p_reference_number="INV-77",
                      p_external_reference="EXT-1")
    j2 = hera.journal(org, code="JE-B2", p_transaction_date="2025-03-01T00:00:00Z", p_source_entity_id=src)
    sale = hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.SALE.v1", p_transaction_type="sale",
                     p_transaction_code="S-1", p_transaction_date="2025-02-15T00:00:00Z",
                     p_transaction_status="completed")
    void = hera.journal(org, code="JE-V", p_transaction_date="2025-02-20T00:00:00Z")
    named_call(hera.conn, "hera_txn_void_v1", p_organization_id=org, p_transaction_id=void,
               p_actor_user_id=hera.actor)

    def ids(**f: Any) -> set[str]:
        res = query(hera, org, **f)
        assert res["success"] is True, res
        return {i["id"] for i in res["data"]["items"]}

    s = str
    assert ids() == {s(j1), s(j2), s(sale)}
    assert ids(include_deleted=True) == {s(j1), s(j2), s(sale), s(void)}
    assert ids(transaction_type="SALE") == {s(sale)}
    assert ids(transaction_status="completed") == {s(sale)}
    assert ids(smart_code="HERA.SALON.POS.TXN.SALE.v1") == {s(sale)}
    assert ids(smart_code_prefix="HERA.FINANCE.") == {s(j1), s(j2)}
    assert ids(date_from="2025-02-01T00:00:00Z", date_to="2025-03-01T00:00:00Z") == {s(j1), s(sale)}
    assert ids(ids=[s(j2), s(void)]) == {s(j2)}
    assert ids(source_entity_id=s(src)) == {s(j2)}
    assert ids(transaction_code="JE-A1") == {s(j1)}
    assert ids(reference_number="INV-77") == {s(j1)}
    assert ids(external_reference="EXT-1") == {s(j1)}
    assert ids(search="inv-7") == {s(j1)}
    assert ids(search="b2") == {s(j2)}
    assert query(hera, org, transaction_type="SALE")["data"]["total"] == 1
    # Filters are parsed while the function's variables are initialised, outside its EXCEPTION block: a bad
    # value is raised, not returned as an envelope.
    with pytest.raises(errors.InvalidDatetimeFormat):
        query(hera, org, date_from="not a date")


# =============================================================================================================
# §2.5 validate, §2.7 void / update / delete / create
# =============================================================================================================

def test_validate_is_not_a_balance_check(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org, amount=100)
    res = named_call(hera.conn, "hera_txn_validate_v1", p_org_id=org, p_transaction_id=txn)
    checks = {c["check"]: c["status"] for c in res["checks"]}
    assert checks == {"smart_code_format": "pass", "lines_present": "pass",
                      "header_total_matches_lines": "fail", "currency_present": "pass"}
    assert res["success"] is False
    detail = next(c["detail"] for c in res["checks"] if c["check"] == "header_total_matches_lines")
    assert detail == {"header_total": 100, "computed_total": 200, "mode": "SIGNED_COMPARE"}
    # Underscores fail its format regex; no lines is a warning; no currency with a positive total fails.
    txn2 = hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.GOODS_RECEIPT.v1", p_transaction_type="x",
                     p_total_amount=0, p_transaction_currency_code=None)
    checks2 = {c["check"]: c["status"] for c in
               named_call(hera.conn, "hera_txn_validate_v1", p_org_id=org, p_transaction_id=txn2)["checks"]}
    assert checks2["smart_code_format"] == "fail" and checks2["lines_present"] == "warn"
    assert checks2["header_total_matches_lines"] == "pass"
    txn3 = hera.emit(org, p_smart_code="HERA.SALON.POS.TXN.SALE.v1", p_transaction_type="x",
                     p_total_amount=0.001, p_transaction_currency_code=None)
    checks3 = {c["check"]: c["status"] for c in
               named_call(hera.conn, "hera_txn_validate_v1", p_org_id=org, p_transaction_id=txn3)["checks"]}
    assert checks3["currency_present"] == "fail"


def test_void(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    res = named_call(hera.conn, "hera_txn_void_v1", p_organization_id=org, p_transaction_id=txn,
                     p_reason="entered twice", p_actor_user_id=hera.actor)
    assert res["success"] is True
    h = hera.header(txn)
    assert h["transaction_status"] == "voided" and h["version"] == 2
    assert h["metadata"]["void_reason"] == "entered twice"
    assert h["metadata"]["voided_by"] == str(hera.actor) and "voided_at" in h["metadata"]
    assert h["smart_code"].endswith(".V1")
    assert len(hera.lines(txn)) == 2  # nothing deleted
    miss = named_call(hera.conn, "hera_txn_void_v1", p_organization_id=hera.org(), p_transaction_id=txn)
    assert miss["success"] is False


def test_update_patch(hera: Hera) -> None:
    """§2.7: a COALESCE patch of some header columns (total_amount is not one of them), metadata replaced
    wholesale, updated_by the actor, version + 1; smart_code is always in the SET list, so it keeps .v1."""
    org = hera.org()
    txn = hera.journal(org, p_metadata={"a": 1, "b": 2})
    res = named_call(hera.conn, "hera_txn_update_v1", p_organization_id=org, p_transaction_id=txn,
                     p_patch={"metadata": {"c": 3}, "transaction_status": "approved", "total_amount": 150},
                     p_actor_user_id=hera.actor)
    assert res == {"success": True, "transaction_id": str(txn)}
    h = hera.header(txn)
    assert h["metadata"] == {"c": 3}  # replaced wholesale
    assert (h["transaction_status"], h["total_amount"], h["version"]) == ("approved", Decimal(100), 2)
    assert h["transaction_code"] is not None and h["smart_code"] == JOURNAL_CODE
    assert h["updated_by"] == hera.actor
    with pytest.raises(errors.RaiseException, match="actor required"):
        named_call(hera.conn, "hera_txn_update_v1", p_organization_id=org, p_transaction_id=txn, p_patch={})


def test_delete_only_empty_drafts(hera: Hera) -> None:
    org = hera.org()
    txn = hera.journal(org)
    refused = named_call(hera.conn, "hera_txn_delete_v1", p_organization_id=org, p_transaction_id=txn)
    assert refused["success"] is False and "Use VOID or REVERSAL" in refused["error"]
    draft = hera.emit(org, p_transaction_status="draft", p_total_amount=0)
    assert named_call(hera.conn, "hera_txn_delete_v1", p_organization_id=org, p_transaction_id=draft)["success"]
    assert hera.scalar("SELECT count(*) FROM universal_transactions") == 1


def test_create_v1(hera: Hera) -> None:
    org = hera.org()
    dr, cr = hera.entity(org), hera.entity(org)

    def lines(cr_amount: float) -> list[dict[str, Any]]:
        return [{"line_number": 1, "line_type": "GL", "smart_code": DEBIT_CODE, "line_amount": 100,
                 "entity_id": str(dr), "line_data": {"side": "DR"}},
                {"line_number": 2, "line_type": "GL", "smart_code": CREDIT_CODE, "line_amount": cr_amount,
                 "entity_id": str(cr), "line_data": {"side": "CR"}}]

    header = {"organization_id": str(org), "transaction_type": "journal_entry", "smart_code": JOURNAL_CODE,
              "transaction_code": "C-1", "total_amount": 100}
    ok = named_call(hera.conn, "hera_txn_create_v1", p_header=header, p_lines=lines(100),
                    p_actor_user_id=hera.actor)
    assert (ok["success"], ok["action"]) == (True, "CREATE"), ok
    assert len(ok["data"]["lines"]) == 2 and ok["data"]["lines"][0]["line_data"] == {"side": "DR"}
    bad = named_call(hera.conn, "hera_txn_create_v1", p_header=header | {"transaction_code": "C-2"},
                     p_lines=lines(90), p_actor_user_id=hera.actor)
    assert bad["success"] is False and bad["error"].startswith("P0001: GL_IMBALANCE: debits 100")
    assert hera.scalar("SELECT count(*) FROM universal_transactions WHERE transaction_code = 'C-2'") == 0
    upper_v = named_call(hera.conn, "hera_txn_create_v1", p_header=header | {"smart_code": JOURNAL_CODE[:-2] + "V1",
                                                                            "transaction_code": "C-3"},
                         p_lines=lines(100), p_actor_user_id=hera.actor)
    assert upper_v["success"] is False and "SMART_CODE_INVALID" in upper_v["error"]
    no_actor = named_call(hera.conn, "hera_txn_create_v1", p_header=header | {"transaction_code": "C-4"},
                          p_lines=lines(100))
    assert no_actor["success"] is False and "ACTOR_REQUIRED" in no_actor["error"]
    # A line without line_number is line 1: a second one collides with the first.
    unnumbered = [{k: v for k, v in line.items() if k != "line_number"} for line in lines(100)]
    clash = named_call(hera.conn, "hera_txn_create_v1", p_header=header | {"transaction_code": "C-5"},
                       p_lines=unnumbered, p_actor_user_id=hera.actor)
    assert clash["success"] is False and clash["error"].startswith("23505")
    # Unlike emit, create has no default line_type (a NOT NULL column).
    untyped = [{k: v for k, v in line.items() if k != "line_type"} for line in lines(100)]
    missing = named_call(hera.conn, "hera_txn_create_v1", p_header=header | {"transaction_code": "C-6"},
                         p_lines=untyped, p_actor_user_id=hera.actor)
    assert missing["success"] is False and missing["error"].startswith("23502")


# =============================================================================================================
# §2.6 GL balance
# =============================================================================================================

def test_line_side_functions(conn: psycopg.Connection[Any]) -> None:
    got = conn.execute("""SELECT hera_line_side('HERA.FINANCE.GL.LINE.X.v1', '{"side":"dr"}'),
                                 hera_line_side('HERA.FINANCE.GL.LINE.X.v1', '{"side":"CR"}'),
                                 hera_line_side('HERA.SALON.POS.LINE.X.v1', '{"side":"DR"}'),
                                 hera_line_side('HERA.FINANCE.GL.LINE.X.v1', '{}'),
                                 hera_line_debit_amount('DR', 5), hera_line_debit_amount('CR', 5),
                                 hera_line_credit_amount('CR', 5), hera_line_credit_amount(NULL, 5)""").fetchone()
    assert got == ("DR", "CR", None, None, Decimal(5), Decimal(0), Decimal(5), Decimal(0))


def test_gl_validate_balance(hera: Hera) -> None:
    org = hera.org()
    dr, cr = hera.entity(org), hera.entity(org)
    balanced = hera.emit(org, lines=hera.gl_lines(dr, cr, 100), p_transaction_code="B")
    hera.conn.execute("SELECT hera_gl_validate_balance(%s, %s)", (org, balanced))
    unbalanced = hera.emit(org, lines=hera.gl_lines(dr, cr, 100, credit_amount=99.5), p_transaction_code="U")
    with pytest.raises(errors.RaiseException,
                       match=r"^GL_IMBALANCE: debits 100\.0+ != credits 99\.50+ \(tolerance 0\.0001\)"):
        hera.conn.execute("SELECT hera_gl_validate_balance(%s, %s)", (org, unbalanced))
    hera.conn.execute("SELECT hera_gl_validate_balance(%s, %s, %s)", (org, unbalanced, Decimal(1)))
    tiny = hera.emit(org, lines=hera.gl_lines(dr, cr, 100, credit_amount=100.00005), p_transaction_code="T")
    hera.conn.execute("SELECT hera_gl_validate_balance(%s, %s)", (org, tiny))
    # Scoped by organization: another org sees no lines, hence nothing to be unbalanced.
    hera.conn.execute("SELECT hera_gl_validate_balance(%s, %s)", (hera.org(), unbalanced))


def test_drcr_view(hera: Hera) -> None:
    org = hera.org()
    dr, cr = hera.entity(org), hera.entity(org)
    lines = [*hera.gl_lines(dr, cr, 80), {"smart_code": "HERA.FINANCE.MEMO.LINE.NOTE.v1", "line_amount": 5}]
    txn = hera.emit(org, lines=lines)
    cols = [r[0] for r in hera.conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'v_universal_transaction_lines_drcr'::regclass "
        "AND attnum > 0 ORDER BY attnum").fetchall()]
    assert cols == [c[0] for c in EXPECTED_COLUMNS["universal_transaction_lines"]] + \
        ["side", "debit_amount", "credit_amount"]
    rows = hera.conn.execute("SELECT line_number, side, debit_amount, credit_amount FROM "
                             "v_universal_transaction_lines_drcr WHERE transaction_id = %s ORDER BY 1",
                             (txn,)).fetchall()
    assert rows == [(1, "DR", Decimal(80), Decimal(0)), (2, "CR", Decimal(0), Decimal(80)),
                    (3, None, Decimal(0), Decimal(0))]


# =============================================================================================================
# §1.9 RLS (production policies + the harness's hera_org_user isolation)
# =============================================================================================================

def test_rls_enabled_not_forced_with_policies(conn: psycopg.Connection[Any], core: str) -> None:
    flags = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY(%s) AND relnamespace = 'public'::regnamespace", (SIX,)).fetchall()}
    assert flags == {t: (True, False) for t in SIX}
    pols = conn.execute("SELECT tablename, policyname, cmd, roles::text[] FROM pg_policies "
                        "WHERE schemaname = 'public' AND tablename = ANY(%s)", (SIX,)).fetchall()
    got = {(t, p): (c, r) for t, p, c, r in pols}
    harness = {(t, "harness_org_isolation"): ("ALL", ["hera_org_user"]) for t in SIX}
    production = {
        **{(t, "allow_all_authenticated"): ("ALL", ["public"]) for t in SIX},
        ("core_relationships", "org_rel_read"): ("SELECT", ["public"]),
        ("core_relationships", "org_rel_write"): ("INSERT", ["public"]),
        ("core_entities", "platform_admin_access"): ("ALL", ["authenticated"]),
    }
    assert got == (production | harness if core == "ours" else production)


def seed_two_orgs(hera: Hera) -> tuple[uuid.UUID, uuid.UUID]:
    a, b = hera.org(), hera.org()
    hera.seed(a)
    hera.seed(b)
    return a, b


def visible_orgs(conn: psycopg.Connection[Any]) -> dict[str, set[uuid.UUID]]:
    out = {}
    for t in SIX:
        col = "id" if t == "core_organizations" else "organization_id"
        out[t] = {r[0] for r in conn.execute(f"SELECT DISTINCT {col} FROM {t}").fetchall()}
    return out


def test_rls_org_user_sees_only_allowed_orgs(hera: Hera, org_user_conn: psycopg.Connection[Any],
        ours_only: None) -> None:
    a, b = seed_two_orgs(hera)
    u = org_user_conn
    assert u.execute("SELECT current_user").fetchone() == ("hera_org_user",)
    assert all(v == set() for v in visible_orgs(u).values())  # unset -> nothing
    u.execute("SELECT set_config('app.allowed_orgs', %s, false)", (str(a),))
    assert visible_orgs(u) == {t: {a} for t in SIX}
    assert u.execute("SELECT count(DISTINCT organization_id) FROM v_universal_transaction_lines_drcr"
                     ).fetchone() == (1,)
    u.execute("SELECT set_config('app.allowed_orgs', %s, false)", (f" {a} , {b} ",))
    assert visible_orgs(u) == {t: {a, b} for t in SIX}


def test_rls_org_user_cannot_write_other_orgs(hera: Hera, org_user_conn: psycopg.Connection[Any],
        ours_only: None) -> None:
    a, b = seed_two_orgs(hera)
    u = org_user_conn
    u.execute("SELECT set_config('app.allowed_orgs', %s, false)", (str(a),))
    actor = Hera(conn=u, actor=hera.actor)
    actor.entity(a)  # own org: fine
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        actor.entity(b)
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        u.execute("UPDATE core_entities SET organization_id = %s WHERE organization_id = %s", (b, a))
    # Other orgs' rows are invisible to UPDATE/DELETE.
    assert u.execute("UPDATE universal_transactions SET reference_number = 'x' WHERE organization_id = %s",
                     (b,)).rowcount == 0
    assert u.execute("DELETE FROM core_dynamic_data WHERE organization_id = %s", (b,)).rowcount == 0
    assert hera.scalar("SELECT count(*) FROM core_dynamic_data WHERE organization_id = %s", (b,)) == 1


def test_rls_production_app_org_id_policies_widen_relationships(
        hera: Hera, org_user_conn: psycopg.Connection[Any], ours_only: None) -> None:
    """org_rel_read/org_rel_write are permissive and apply to every role, so for hera_org_user they are OR-ed
    with harness_org_isolation: app.org_id = B exposes (and allows inserting) B's relationships only."""
    a, b = seed_two_orgs(hera)
    u = org_user_conn
    u.execute("SELECT set_config('app.allowed_orgs', %s, false)", (str(a),))
    u.execute("SELECT set_config('app.org_id', %s, false)", (str(b),))
    seen = visible_orgs(u)
    assert seen["core_relationships"] == {a, b}
    assert all(seen[t] == {a} for t in SIX if t != "core_relationships")
    ents = [r[0] for r in hera.conn.execute("SELECT id FROM core_entities WHERE organization_id = %s LIMIT 2",
                                            (b,)).fetchall()]
    Hera(conn=u, actor=hera.actor).insert(
        "core_relationships", organization_id=b, from_entity_id=ents[1], to_entity_id=ents[0],
        relationship_type="MEMBER_OF", smart_code="HERA.FINANCE.REL.MEMBER.OF.v1", created_by=hera.actor)
    assert hera.scalar("SELECT count(*) FROM core_relationships WHERE organization_id = %s", (b,)) == 2


def test_rls_rpcs_are_security_definer(hera: Hera, org_user_conn: psycopg.Connection[Any], ours_only: None) -> None:
    """Production isolation is only the org filter inside each RPC: as SECURITY DEFINER they bypass RLS."""
    a, b = seed_two_orgs(hera)
    u = org_user_conn
    u.execute("SELECT set_config('app.allowed_orgs', %s, false)", (str(a),))
    res = named_call(u, "hera_txn_query_v1", p_org_id=b, p_filters={})
    assert res["data"]["total"] == 1
    Hera(conn=u, actor=hera.actor).emit(b, p_transaction_code="VIA-RPC")  # RPC writes bypass RLS too
    assert hera.scalar("SELECT organization_id FROM universal_transactions WHERE transaction_code = 'VIA-RPC'") == b
    assert u.execute("SELECT count(*) FROM universal_transactions WHERE transaction_code = 'VIA-RPC'"
                     ).fetchone() == (0,)


def test_transaction_rpcs_are_security_definer(conn: psycopg.Connection[Any]) -> None:
    secdef = dict(conn.execute("SELECT proname, bool_and(prosecdef) FROM pg_proc "
                               "WHERE proname = ANY(%s) GROUP BY proname",
                               (["hera_txn_emit_v1", "hera_txn_reverse_v1", "hera_txn_read_v1", "hera_txn_query_v1",
                                 "hera_txn_validate_v1", "hera_txn_void_v1", "hera_txn_update_v1",
                                 "hera_txn_delete_v1", "hera_txn_create_v1"],)).fetchall())
    assert secdef == {n: True for n in ("hera_txn_emit_v1", "hera_txn_reverse_v1", "hera_txn_read_v1",
                                        "hera_txn_query_v1", "hera_txn_validate_v1", "hera_txn_void_v1",
                                        "hera_txn_update_v1", "hera_txn_delete_v1", "hera_txn_create_v1")}


def test_rls_production_policy_lets_any_jwt_role_see_everything(hera: Hera) -> None:
    """§1.9: with JWT claims any of the three roles sees every organisation; without claims nothing. For the
    authenticated role, reading core_entities fails outright: platform_admin_access reads core_entities under
    the same policies (seen on the production dump as well)."""
    a, b = seed_two_orgs(hera)
    with hera.conn.transaction():
        hera.conn.execute("SET LOCAL ROLE anon")
        assert visible_orgs(hera.conn)["core_entities"] == set()  # no claims: nothing
        hera.conn.execute("SELECT set_config('request.jwt.claims', '{\"role\":\"anon\"}', true)")
        assert visible_orgs(hera.conn) == {t: {a, b} for t in SIX}
    with hera.conn.transaction():
        hera.conn.execute("SET LOCAL ROLE authenticated")
        hera.conn.execute("SELECT set_config('request.jwt.claims', '{\"role\":\"authenticated\"}', true)")
        seen = {t: {r[0] for r in hera.conn.execute(
            f"SELECT DISTINCT {'id' if t == 'core_organizations' else 'organization_id'} FROM {t}")}
            for t in SIX if t != "core_entities"}
        assert seen == {t: {a, b} for t in SIX if t != "core_entities"}
    with pytest.raises(errors.InvalidObjectDefinition, match="infinite recursion"), hera.conn.transaction():
        hera.conn.execute("SET LOCAL ROLE authenticated")
        hera.conn.execute("SELECT set_config('request.jwt.claims', '{\"role\":\"authenticated\"}', true)")
        hera.conn.execute("SELECT count(*) FROM core_entities")


def test_rls_jwt_role_is_or_ed_with_the_harness_policy(hera: Hera, org_user_conn: psycopg.Connection[Any],
                                                        ours_only: None) -> None:
    a, b = seed_two_orgs(hera)
    u = org_user_conn
    u.execute("SELECT set_config('request.jwt.claims', '{\"role\":\"authenticated\"}', false)")
    assert visible_orgs(u) == {t: {a, b} for t in SIX}  # allow_all_authenticated is OR-ed in


# =============================================================================================================
# Installation
# =============================================================================================================

FINGERPRINT_SQL = """
SELECT 'function', p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)) || coalesce(p.proacl::text, '')
  FROM pg_proc p WHERE p.pronamespace IN ('public'::regnamespace, 'auth'::regnamespace) AND p.prokind = 'f'
UNION ALL
SELECT 'trigger', tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid) || tgenabled::text
  FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'policy', tablename || '.' || policyname,
       concat_ws('|', permissive, roles::text, cmd, qual, with_check)
  FROM pg_policies WHERE schemaname = 'public'
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname IN ('public', 'auth')
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace IN ('public'::regnamespace, 'auth'::regnamespace)
UNION ALL
SELECT 'relation', c.oid::regclass::text,
       concat_ws('|', c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text,
                 (SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
                    FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped),
                 CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
  FROM pg_class c WHERE c.relnamespace IN ('public'::regnamespace, 'auth'::regnamespace)
   AND c.relkind IN ('r', 'v')
UNION ALL
SELECT 'role', rolname, concat_ws('|', rolcanlogin, rolsuper, rolbypassrls, rolinherit)
  FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role', 'hera_org_user')
UNION ALL
SELECT 'extension', extname, extnamespace::regnamespace::text || extversion FROM pg_extension
"""


def fingerprint(dsn: str) -> list[tuple[str, str, str]]:
    with connect(dsn, autocommit=True) as c:
        return sorted(c.execute(FINGERPRINT_SQL).fetchall())  # type: ignore[arg-type]


def test_install_is_idempotent(hera: Hera, db_dsn: str, ours_only: None) -> None:
    org = hera.org()
    txn = hera.journal(org)
    before = fingerprint(db_dsn)
    kinds = {k for k, _, _ in before}
    assert {"function", "trigger", "policy", "index", "constraint", "relation", "role", "extension"} <= kinds
    applied = schema.install(db_dsn)
    assert applied == sorted(applied) and applied[0].startswith("00_")
    after = fingerprint(db_dsn)
    assert after == before
    counts = {k: sum(1 for x in after if x[0] == k) for k in kinds}
    assert counts["trigger"] == 15 and counts["policy"] == 15
    # Data is untouched and the core still works.
    assert hera.header(txn)["smart_code"] == JOURNAL_CODE
    assert hera.reverse(org, txn)["success"] is True


def test_install_refuses_a_foreign_core(hera: Hera, db_dsn: str, core: str) -> None:
    """`db schema` must never install our stand-in over a HERA core it did not install (production's, say): it
    refuses and changes nothing. On our core, removing the marker makes it foreign in the same way."""
    txn = hera.journal(hera.org())
    if core == "ours":
        hera.conn.execute("COMMENT ON TABLE universal_transactions IS NULL")
    before = fingerprint(db_dsn)
    with connect(db_dsn) as c:
        assert schema.core_kind(c) is schema.CoreKind.FOREIGN
    with pytest.raises(schema.ForeignCoreError, match="refusing to install ours over it"):
        schema.install(db_dsn)
    assert fingerprint(db_dsn) == before
    assert hera.header(txn)["transaction_status"] == "pending"


def test_install_into_empty_database(pg_server: Any) -> None:
    """A database that never saw the template: every file applies in order and the core is usable."""
    name = f"t_empty_{uuid.uuid4().hex[:10]}"
    admin_dsn = with_database(pg_server.dsn, "postgres")
    with connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = with_database(pg_server.dsn, name)
        with connect(dsn, autocommit=True) as c:
            assert not schema.installed(c)
        files = schema.install(dsn)
        assert files[0] == "00_prereqs.sql" and len(files) >= 5
        with connect(dsn, autocommit=True) as c:
            assert schema.installed(c)
            with c.cursor(row_factory=dict_row) as cur:
                n = cur.execute("SELECT count(*) AS n FROM pg_proc WHERE proname LIKE 'hera\\_txn\\_%\\_v1'").fetchone()
            assert n is not None and n["n"] == 11
            h = Hera(conn=c, actor=uuid.uuid4())
            org = h.org()
            assert h.reverse(org, h.journal(org))["success"] is True
    finally:
        with connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

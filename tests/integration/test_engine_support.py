"""Helpers shared by the engine and rollback tests (no tests here): org-scoped full-row dumps, the trial balance,
the run's rows, and a spec with fast retries."""

from __future__ import annotations

import dataclasses
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from runner import contract
from runner.plan import build_plan
from runner.spec import Spec, load_spec
from runner.spec.model import Retries

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
ACTOR = str(contract.MIGRATION_ACTOR_ID)
SIX = ("core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
       "universal_transactions", "universal_transaction_lines")


def phase7(*, narrow: bool = False, max_retries: int = 2) -> Spec:
    """The Phase 7 spec with quick retries (tests never wait seconds for a back-off). `narrow` keeps only
    `completed` transactions in scope (about a fifth of the candidates, both smart-code spellings among them),
    for tests about the machinery rather than about coverage."""
    spec = load_spec(PHASE7)
    fast = Retries(max=max_retries, backoff_seconds=0.01, max_backoff_seconds=0.05)
    spec = dataclasses.replace(spec, execution=dataclasses.replace(spec.execution, retries=fast))
    if narrow:
        spec = dataclasses.replace(spec, scope=dataclasses.replace(spec.scope, transaction_statuses=("completed",)))
    return spec


def one(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def dump(conn: psycopg.Connection[Any], org: str, *, with_journal: bool = False) -> dict[str, list[Any]]:
    """Every row of the org in the six tables as JSON, in id order. Without the journal: the run journal entity
    (MIGRATION_RUN) and its core_dynamic_data rows are left out (they are the run's audit trail and stay)."""
    journal = [] if with_journal else [r[0] for r in conn.execute(
        "SELECT id FROM core_entities WHERE organization_id = %s AND entity_type = %s",
        (org, contract.JOURNAL_ENTITY_TYPE))]
    out: dict[str, list[Any]] = {}
    for table in SIX:
        key = "id" if table == "core_organizations" else "organization_id"
        extra = ""
        if table == "core_entities":
            extra = " AND NOT (t.id = ANY(%(j)s::uuid[]))"
        elif table == "core_dynamic_data":
            extra = " AND NOT (t.entity_id = ANY(%(j)s::uuid[]))"
        out[table] = [r[0] for r in conn.execute(
            f"SELECT to_jsonb(t) FROM {table} t WHERE t.{key} = %(o)s{extra} ORDER BY t.id", {"o": org, "j": journal})]
    return out


def trial_balance(conn: psycopg.Connection[Any], org: str) -> dict[tuple[Any, ...], Decimal]:
    """Σ line_amount per (account entity, side, header currency) over every line of the org."""
    rows = conn.execute(
        """SELECT l.entity_id, upper(l.line_data ->> 'side'), h.transaction_currency_code, sum(l.line_amount)
             FROM universal_transaction_lines l
             JOIN universal_transactions h ON h.id = l.transaction_id AND h.organization_id = l.organization_id
            WHERE l.organization_id = %s AND l.smart_code LIKE '%%.GL.%%'
            GROUP BY 1, 2, 3""", (org,)).fetchall()
    return {(r[0], r[1], r[2]): r[3] for r in rows if r[3] != 0}


def plan_candidates(dsn: str, spec: Spec, org: str) -> dict[str, int]:
    plan = build_plan(dsn, spec, (org,))
    got = plan.organizations[0]
    return {t: got.candidates(t) for t in ("reverse_repost", "reporting_alias")}


def candidate_ids(conn: psycopg.Connection[Any], org: str, spec: Spec, tier: str) -> list[str]:
    """Plan-eligible ids of one tier, computed here from the stored columns independently of the engine."""
    rows = conn.execute(
        """SELECT h.id::text, h.smart_code, h.transaction_status, h.metadata, p.status AS period_status,
                  h.fiscal_period_entity_id
             FROM universal_transactions h
             LEFT JOIN core_entities p ON p.id = h.fiscal_period_entity_id
            WHERE h.organization_id = %s ORDER BY h.id""", (org,)).fetchall()
    out = []
    for txn_id, code, status, meta, period_status, period in rows:
        res = spec.resolve(code)
        if res is None or res.mapping.tier != tier or "migration" in meta or "reversal_of" in meta:
            continue
        if status not in spec.scope.transaction_statuses or "reversal_id" in meta:
            continue
        if period is not None and period_status != "open":
            continue
        out.append(txn_id)
    return out


def run_rows(conn: psycopg.Connection[Any], org: str, run_id: str, role: str) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute(
        "SELECT * FROM universal_transactions WHERE organization_id = %s AND metadata -> 'migration' ->> 'run_id' = %s "
        "AND metadata -> 'migration' ->> 'role' = %s ORDER BY id", (org, run_id, role)).fetchall()


def lines_of(conn: psycopg.Connection[Any], txn_ids: list[Any]) -> dict[str, list[dict[str, Any]]]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    out: dict[str, list[dict[str, Any]]] = {}
    for row in cur.execute("SELECT * FROM universal_transaction_lines WHERE transaction_id = ANY(%s::uuid[]) "
                           "ORDER BY transaction_id, line_number", ([str(t) for t in txn_ids],)):
        out.setdefault(str(row["transaction_id"]), []).append(row)
    return out


def counts_by(rows: list[dict[str, Any]], key: str) -> Counter[Any]:
    return Counter(r[key] for r in rows)

"""HERA's v1 paths as a live client calls them: the five operations of the load mix, on one psycopg connection.

The locustfile times these and reports them; tests call them directly. Every call is what a production client
sends: named arguments (hera_txn_read_v1 is ambiguous otherwise), `side` at the top level of each emitted GL
line, an actor on every write (the load's own deterministic actor, so the before/after diff and the rollback
rehearsal can tell v1 traffic from the migration), the working 5-argument reverse overload.

Sales are emitted with HERA's emit default status `pending` unless told otherwise: a pending sale is outside the
Phase 7 scope (posted, completed), so live traffic does not keep feeding the run new candidates and the load
never reverses a transaction the migration already reversed. `emit_status="posted"` makes them candidates (the
engine then finishes `incomplete` while traffic keeps creating them; `run --resume` continues).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

LOAD_ACTOR_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:hera-migration-harness:v1-load-actor"))
SALE_CODE = "HERA.SALON.POS.TXN.SALE.v1"
SERVICE_LINE_CODE = "HERA.SALON.POS.LINE.SERVICE.v1"
GL_CODE = "HERA.FINANCE.GL.{side}.{role}.v1"
VAT_PERCENT = 10
# Account codes of the synthetic chart (fixtures/profiles.yaml) a POS sale posts to.
SALE_ACCOUNTS = {"CASH": "1100", "REVENUE": "4100", "PRODUCT_REV": "4200", "VAT": "2200"}

EMIT, READ, LIST, TRIAL_BALANCE, REVERSE_VOID = "emit_sale", "read_txn", "list_recent", "trial_balance", "reverse_void"
TASKS = (EMIT, READ, LIST, TRIAL_BALANCE, REVERSE_VOID)

TRIAL_BALANCE_SQL = """
SELECT l.entity_id, h.transaction_currency_code, sum(l.debit_amount) AS debit, sum(l.credit_amount) AS credit
  FROM universal_transactions h
  JOIN v_universal_transaction_lines_drcr l ON l.organization_id = h.organization_id AND l.transaction_id = h.id
 WHERE h.organization_id = %(org)s
   AND h.transaction_date >= %(from)s AND h.transaction_date < %(to)s
   AND h.transaction_status IS DISTINCT FROM 'voided'
   AND l.side IS NOT NULL
 GROUP BY 1, 2
 ORDER BY 1, 2"""


class AppError(Exception):
    """The RPC answered success=false."""


@dataclass(frozen=True)
class OrgContext:
    """What the load needs to know about the organisation it drives (read once at start)."""

    organization_id: str
    accounts: dict[str, str]  # role -> entity id
    customers: list[str]
    products: list[str]
    base_currency: str
    read_ids: list[str]  # existing transaction ids to read
    first_date: datetime
    last_date: datetime


def pick_org(conn: psycopg.Connection[Any]) -> str:
    """The organisation with the most transactions (the one a single-org run migrates)."""
    row = conn.execute("SELECT organization_id FROM universal_transactions GROUP BY 1 ORDER BY count(*) DESC, 1 "
                       "LIMIT 1").fetchone()
    if row is None:
        raise LookupError("no organisation with transactions: generate one first (hera-migrate fixtures SIZE)")
    return str(row[0])


def load_context(conn: psycopg.Connection[Any], org_id: str, *, read_sample: int = 2000,
                 seed: int = 0) -> OrgContext:
    accounts = {role: str(r[0]) for role, code in SALE_ACCOUNTS.items()
                for r in conn.execute("SELECT id FROM core_entities WHERE organization_id = %s "
                                      "AND lower(entity_type) = 'gl_account' AND entity_code = %s LIMIT 1",
                                      (org_id, code)).fetchall()}
    missing = sorted(set(SALE_ACCOUNTS) - set(accounts))
    if missing:
        raise LookupError(f"organisation {org_id} has no GL account for {', '.join(missing)} "
                          f"(codes {', '.join(SALE_ACCOUNTS[m] for m in missing)})")

    def ids(entity_type: str) -> list[str]:
        return [str(r[0]) for r in conn.execute(
            "SELECT id FROM core_entities WHERE organization_id = %s AND lower(entity_type) = %s ORDER BY id "
            "LIMIT 500", (org_id, entity_type)).fetchall()]

    # The ledger's own dates: rows an earlier load wrote (dated when it ran) would stretch the windows below.
    row = conn.execute("SELECT min(transaction_date), max(transaction_date), mode() WITHIN GROUP "
                       "(ORDER BY base_currency_code) FROM universal_transactions WHERE organization_id = %s "
                       "AND created_by IS DISTINCT FROM %s", (org_id, LOAD_ACTOR_ID)).fetchone()
    assert row is not None
    first, last, currency = row
    now = datetime.now().astimezone()
    # Deterministic sample of existing headers to read: every k-th id in id order.
    total = conn.execute("SELECT count(*) FROM universal_transactions WHERE organization_id = %s",
                         (org_id,)).fetchone()
    step = max(1, int(total[0] if total else 0) // max(read_sample, 1))
    read_ids = [str(r[0]) for r in conn.execute(
        "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM universal_transactions "
        "WHERE organization_id = %s) x WHERE n %% %s = 0 LIMIT %s", (org_id, step, read_sample)).fetchall()]
    random.Random(seed).shuffle(read_ids)
    return OrgContext(organization_id=org_id, accounts=accounts, customers=ids("customer"), products=ids("product"),
                      base_currency=str(currency or "USD").strip(), read_ids=read_ids,
                      first_date=first or now - timedelta(days=30), last_date=last or now)


def _money(cents: int) -> float:
    """Cents as a JSON number: the shortest repr of n/100 is its exact 2-decimal text, which numeric parses."""
    return cents / 100


@dataclass
class V1Client:
    """One simulated v1 user: its own random stream and the transactions it emitted (to reverse or void)."""

    ctx: OrgContext
    rng: random.Random
    emit_status: str = "pending"
    own: list[str] = field(default_factory=list)
    serial: int = 0
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    # --- the five operations ------------------------------------------------------------------------------

    def emit_sale(self, conn: psycopg.Connection[Any]) -> str:
        c, rng = self.ctx, self.rng
        self.serial += 1
        gross = rng.randint(1_000, 50_000)
        net = gross * 100 // (100 + VAT_PERCENT)
        tax = gross - net
        revenue = "REVENUE" if rng.random() < 0.6 else "PRODUCT_REV"
        lines: list[dict[str, Any]] = []
        if c.products:
            lines.append({"line_type": "SERVICE", "smart_code": SERVICE_LINE_CODE, "entity_id": rng.choice(c.products),
                          "description": "Service item", "quantity": 1, "unit_amount": _money(net),
                          "line_amount": _money(net), "item": "service"})
        for side, role, cents in (("DR", "CASH", gross), ("CR", revenue, net), ("CR", "VAT", tax)):
            lines.append({"line_type": "GL", "smart_code": GL_CODE.format(side=side, role=role),
                          "entity_id": c.accounts[role], "description": f"{side} {role.lower()}",
                          "line_amount": _money(cents), "side": side, "account_code": SALE_ACCOUNTS[role]})
        for n, line in enumerate(lines, start=1):
            line["line_number"] = n
        amount = Decimal(gross) / 100
        row = conn.execute(
            "SELECT hera_txn_emit_v1(p_organization_id => %(org)s, p_transaction_type => 'SALE', "
            "p_smart_code => %(code)s, p_transaction_code => %(txn_code)s, p_transaction_date => now(), "
            "p_source_entity_id => %(customer)s, p_total_amount => %(amount)s, p_transaction_status => %(status)s, "
            "p_reference_number => %(ref)s, p_business_context => %(context)s, p_metadata => %(meta)s, "
            "p_transaction_currency_code => %(cur)s, p_base_currency_code => %(cur)s, p_lines => %(lines)s, "
            "p_actor_user_id => %(actor)s)",
            {"org": c.organization_id, "code": SALE_CODE, "txn_code": f"LOAD-{self.tag}-{self.serial:07d}",
             "customer": rng.choice(c.customers) if c.customers else None, "amount": amount,
             "status": self.emit_status, "ref": f"LOAD-REF-{self.serial:07d}",
             "context": Jsonb({"channel": "pos_sale", "source": "hera-migrate load"}),
             "meta": Jsonb({"finance_dna_version": "v1", "gl_balanced": True, "total_dr": str(amount),
                            "total_cr": str(amount), "source": "hera-migrate load"}),
             "cur": c.base_currency, "lines": Jsonb(lines, dumps=json.dumps), "actor": LOAD_ACTOR_ID}).fetchone()
        assert row is not None
        txn_id = str(row[0])
        self.own.append(txn_id)
        return txn_id

    def read_txn(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        pool = self.ctx.read_ids
        txn = (self.rng.choice(self.own) if self.own and (not pool or self.rng.random() < 0.3)
               else self.rng.choice(pool) if pool else None)
        if txn is None:
            raise AppError("nothing to read yet")
        row = conn.execute("SELECT hera_txn_read_v1(p_org_id => %s, p_transaction_id => %s, p_include_lines => true, "
                           "p_include_deleted => true)", (self.ctx.organization_id, txn)).fetchone()
        return _ok(row)

    def list_recent(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        """The 20 newest transactions of the ledger's last 30 days (the app's "recent" screen).

        A fixed window, closed at the ledger's end: the load's own sales (dated now) stay out of it, so its cost
        does not grow with the load's running time — only with what the migration writes into it.
        """
        date_to = self.ctx.last_date + timedelta(days=1)
        date_from = date_to - timedelta(days=31)
        row = conn.execute("SELECT hera_txn_query_v1(p_org_id => %s, p_filters => %s)",
                           (self.ctx.organization_id, Jsonb({"date_from": date_from.isoformat(),
                                                             "date_to": date_to.isoformat(), "limit": 20}))
                           ).fetchone()
        return _ok(row)

    def trial_balance(self, conn: psycopg.Connection[Any]) -> int:
        """Debits and credits per account and currency for one month of the ledger (the GL view)."""
        c = self.ctx
        span = max((c.last_date - c.first_date).days, 1)
        start = c.first_date + timedelta(days=self.rng.randrange(span))
        start = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        rows = conn.execute(TRIAL_BALANCE_SQL, {"org": c.organization_id, "from": start, "to": end}).fetchall()
        return len(rows)

    def reverse_or_void(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        """Reverse (2 in 3) or void (1 in 3) one of this user's own earlier transactions."""
        if not self.own:
            self.emit_sale(conn)
        txn = self.own.pop(self.rng.randrange(len(self.own)))
        if self.rng.random() < 2 / 3:
            row = conn.execute("SELECT hera_txn_reverse_v1(p_organization_id => %s, p_transaction_id => %s, "
                               "p_reversal_date => now(), p_reason => 'Customer refund (load)', "
                               "p_actor_user_id => %s)", (self.ctx.organization_id, txn, LOAD_ACTOR_ID)).fetchone()
        else:
            row = conn.execute("SELECT hera_txn_void_v1(p_organization_id => %s, p_transaction_id => %s, "
                               "p_reason => 'Entered in error (load)', p_actor_user_id => %s)",
                               (self.ctx.organization_id, txn, LOAD_ACTOR_ID)).fetchone()
        return _ok(row)

    def call(self, conn: psycopg.Connection[Any], task: str) -> Any:
        return {EMIT: self.emit_sale, READ: self.read_txn, LIST: self.list_recent, TRIAL_BALANCE: self.trial_balance,
                REVERSE_VOID: self.reverse_or_void}[task](conn)


def _ok(row: Any) -> dict[str, Any]:
    result = row[0] if row else None
    if not isinstance(result, dict) or not result.get("success"):
        raise AppError(str((result or {}).get("error", "no result")) if isinstance(result, dict) else "no result")
    return result

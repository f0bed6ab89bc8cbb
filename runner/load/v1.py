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
from functools import cache
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from runner.compile import Statement, placeholders, render

LOAD_ACTOR_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:hera-migration-harness:v1-load-actor"))
SALE_CODE = "HERA.SALON.POS.TXN.SALE.v1"
SERVICE_LINE_CODE = "HERA.SALON.POS.LINE.SERVICE.v1"
GL_CODE = "HERA.FINANCE.GL.{side}.{role}.v1"
VAT_PERCENT = 10
# Account codes of the synthetic chart (fixtures/profiles.yaml) a POS sale posts to.
SALE_ACCOUNTS = {"CASH": "1100", "REVENUE": "4100", "PRODUCT_REV": "4200", "VAT": "2200"}

EMIT, READ, LIST, TRIAL_BALANCE, REVERSE_VOID = "emit_sale", "read_txn", "list_recent", "trial_balance", "reverse_void"
TASKS = (EMIT, READ, LIST, TRIAL_BALANCE, REVERSE_VOID)

# The v1 calls, rendered once (runner/sql/load) with named placeholders; each call supplies the values.
CALLS: dict[str, tuple[str, ...]] = {
    "load/emit_sale": ("org", "code", "txn_code", "customer", "amount", "status", "ref", "context", "meta", "cur",
                       "lines", "actor"),
    "load/read": ("org", "txn"), "load/recent": ("org", "filters"),
    "load/trial_balance": ("org", "date_from", "date_to"), "load/reverse": ("org", "txn", "actor"),
    "load/void": ("org", "txn", "actor"),
}


@cache
def call_statement(name: str) -> Statement:
    return render(name, **placeholders(*CALLS[name]))


def review_statements() -> list[Statement]:
    """`compile --out`: the load's statements (the v1 calls with their named placeholders; the setup reads with
    sample inputs)."""
    org = "00000000-0000-4000-8000-000000000001"
    return [render("load/busiest_org"), render("load/account", org_id=org, code=SALE_ACCOUNTS["CASH"]),
            render("load/entities", org_id=org, entity_type="customer"),
            render("load/ledger_span", org_id=org, load_actor=LOAD_ACTOR_ID),
            render("load/transaction_count", org_id=org), render("load/read_sample", org_id=org, step=10, limit=2000),
            *(call_statement(name) for name in CALLS)]


def _call(conn: psycopg.Connection[Any], name: str, **values: Any) -> psycopg.Cursor[Any]:
    return conn.execute(call_statement(name).text, values)


def _query(conn: psycopg.Connection[Any], name: str, **context: Any) -> list[tuple[Any, ...]]:
    stmt = render(name, **context)
    return conn.execute(stmt.text, stmt.params).fetchall()


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
    rows = _query(conn, "load/busiest_org")
    row = rows[0] if rows else None
    if row is None:
        raise LookupError("no organisation with transactions: generate one first (hera-migrate fixtures SIZE)")
    return str(row[0])


def load_context(conn: psycopg.Connection[Any], org_id: str, *, read_sample: int = 2000,
                 seed: int = 0) -> OrgContext:
    accounts = {role: str(r[0]) for role, code in SALE_ACCOUNTS.items()
                for r in _query(conn, "load/account", org_id=org_id, code=code)}
    missing = sorted(set(SALE_ACCOUNTS) - set(accounts))
    if missing:
        raise LookupError(f"organisation {org_id} has no GL account for {', '.join(missing)} "
                          f"(codes {', '.join(SALE_ACCOUNTS[m] for m in missing)})")

    def ids(entity_type: str) -> list[str]:
        return [str(r[0]) for r in _query(conn, "load/entities", org_id=org_id, entity_type=entity_type)]

    first, last, currency = _query(conn, "load/ledger_span", org_id=org_id, load_actor=LOAD_ACTOR_ID)[0]
    now = datetime.now().astimezone()
    total = _query(conn, "load/transaction_count", org_id=org_id)[0][0]
    step = max(1, int(total or 0) // max(read_sample, 1))
    read_ids = [str(r[0]) for r in _query(conn, "load/read_sample", org_id=org_id, step=step, limit=read_sample)]
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
        row = _call(
            conn, "load/emit_sale", org=c.organization_id, code=SALE_CODE,
            txn_code=f"LOAD-{self.tag}-{self.serial:07d}", customer=rng.choice(c.customers) if c.customers else None,
            amount=amount, status=self.emit_status, ref=f"LOAD-REF-{self.serial:07d}",
            context=Jsonb({"channel": "pos_sale", "source": "hera-migrate load"}),
            meta=Jsonb({"finance_dna_version": "v1", "gl_balanced": True, "total_dr": str(amount),
                        "total_cr": str(amount), "source": "hera-migrate load"}),
            cur=c.base_currency, lines=Jsonb(lines, dumps=json.dumps), actor=LOAD_ACTOR_ID).fetchone()
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
        row = _call(conn, "load/read", org=self.ctx.organization_id, txn=txn).fetchone()
        return _ok(row)

    def list_recent(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        """The 20 newest transactions of the ledger's last 30 days (the app's "recent" screen).

        A fixed window, closed at the ledger's end: the load's own sales (dated now) stay out of it, so its cost
        does not grow with the load's running time — only with what the migration writes into it.
        """
        date_to = self.ctx.last_date + timedelta(days=1)
        date_from = date_to - timedelta(days=31)
        row = _call(conn, "load/recent", org=self.ctx.organization_id,
                    filters=Jsonb({"date_from": date_from.isoformat(), "date_to": date_to.isoformat(), "limit": 20})
                    ).fetchone()
        return _ok(row)

    def trial_balance(self, conn: psycopg.Connection[Any]) -> int:
        """Debits and credits per account and currency for one month of the ledger (the GL view)."""
        c = self.ctx
        span = max((c.last_date - c.first_date).days, 1)
        start = c.first_date + timedelta(days=self.rng.randrange(span))
        start = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        rows = _call(conn, "load/trial_balance", org=c.organization_id, date_from=start, date_to=end).fetchall()
        return len(rows)

    def reverse_or_void(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        """Reverse (2 in 3) or void (1 in 3) one of this user's own earlier transactions."""
        if not self.own:
            self.emit_sale(conn)
        txn = self.own.pop(self.rng.randrange(len(self.own)))
        if self.rng.random() < 2 / 3:
            row = _call(conn, "load/reverse", org=self.ctx.organization_id, txn=txn, actor=LOAD_ACTOR_ID).fetchone()
        else:
            row = _call(conn, "load/void", org=self.ctx.organization_id, txn=txn, actor=LOAD_ACTOR_ID).fetchone()
        return _ok(row)

    def call(self, conn: psycopg.Connection[Any], task: str) -> Any:
        return {EMIT: self.emit_sale, READ: self.read_txn, LIST: self.list_recent, TRIAL_BALANCE: self.trial_balance,
                REVERSE_VOID: self.reverse_or_void}[task](conn)


def _ok(row: Any) -> dict[str, Any]:
    result = row[0] if row else None
    if not isinstance(result, dict) or not result.get("success"):
        raise AppError(str((result or {}).get("error", "no result")) if isinstance(result, dict) else "no result")
    return result

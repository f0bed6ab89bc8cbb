"""Helpers for tests against the HERA-compatible core: organizations, entities and journals written the way a
production client writes them (an actor on every row, named RPC arguments, `side` at the top of emit lines)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

JOURNAL_CODE = "HERA.FINANCE.GL.TXN.JOURNAL.v1"
DEBIT_CODE = "HERA.FINANCE.GL.LINE.DEBIT.v1"
CREDIT_CODE = "HERA.FINANCE.GL.LINE.CREDIT.v1"
ACCOUNT_CODE = "HERA.FINANCE.COA.ACCOUNT.MAIN.v1"
AUTO = "<auto>"


def _bind(value: Any) -> Any:
    if isinstance(value, dict | list):
        return Jsonb(value)
    if isinstance(value, float):  # float8 has no implicit cast to numeric: function lookup would fail
        return Decimal(str(value))
    return value


def named_call(conn: psycopg.Connection[Any], function: str, **args: Any) -> Any:
    """SELECT function(name => value, ...) and return the single value (dicts/lists are sent as jsonb)."""
    placeholders = ", ".join(f"{name} => %({name})s" for name in args)
    row = conn.execute(f"SELECT {function}({placeholders})", {k: _bind(v) for k, v in args.items()}).fetchone()
    assert row is not None
    return row[0]


@dataclass
class Hera:
    conn: psycopg.Connection[Any]
    actor: uuid.UUID

    def org(self, code: str | None = None, **columns: Any) -> uuid.UUID:
        code = code or f"ORG-{uuid.uuid4().hex[:8]}"
        cols = {"organization_name": f"Org {code}", "organization_code": code,
                "created_by": self.actor, "updated_by": self.actor, **columns}
        return self.insert("core_organizations", **cols)

    def entity(self, org: uuid.UUID, entity_type: str = "GL_ACCOUNT", *, smart_code: str = ACCOUNT_CODE,
               **columns: Any) -> uuid.UUID:
        cols = {"organization_id": org, "entity_type": entity_type,
                "entity_name": columns.pop("entity_name", f"{entity_type} {uuid.uuid4().hex[:6]}"),
                "smart_code": smart_code, "created_by": self.actor, "updated_by": self.actor, **columns}
        return self.insert("core_entities", **cols)

    def insert(self, table: str, **columns: Any) -> uuid.UUID:
        names = ", ".join(columns)
        values = ", ".join(f"%({k})s" for k in columns)
        row = self.conn.execute(f"INSERT INTO {table} ({names}) VALUES ({values}) RETURNING id",
                                {k: _bind(v) for k, v in columns.items()}).fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    @staticmethod
    def gl_lines(debit_account: uuid.UUID, credit_account: uuid.UUID, amount: float = 100,
                 credit_amount: float | None = None) -> list[dict[str, Any]]:
        """A two-line DR/CR journal as emit expects it: `side` is a top-level key of each line object."""
        return [
            {"line_number": 1, "line_type": "GL", "entity_id": str(debit_account), "smart_code": DEBIT_CODE,
             "side": "DR", "line_amount": amount, "description": "debit"},
            {"line_number": 2, "line_type": "GL", "entity_id": str(credit_account), "smart_code": CREDIT_CODE,
             "side": "CR", "line_amount": amount if credit_amount is None else credit_amount,
             "description": "credit"},
        ]

    def emit(self, org: uuid.UUID, *, lines: list[dict[str, Any]] | None = None, **args: Any) -> uuid.UUID:
        call = {"p_organization_id": org, "p_transaction_type": "journal_entry", "p_smart_code": JOURNAL_CODE,
                "p_total_amount": 100, "p_transaction_currency_code": "USD", "p_base_currency_code": "USD",
                "p_lines": lines or [], "p_actor_user_id": self.actor, **args}
        return named_call(self.conn, "hera_txn_emit_v1", **call)  # type: ignore[no-any-return]

    def journal(self, org: uuid.UUID, code: str | None = AUTO, amount: float = 100, **args: Any) -> uuid.UUID:
        """Emit a balanced journal between two fresh GL accounts of `org` (a unique code unless one is given;
        None stores a NULL transaction_code)."""
        dr = self.entity(org, "GL_ACCOUNT", entity_name="Cash")
        cr = self.entity(org, "GL_ACCOUNT", entity_name="Revenue")
        call = {"p_transaction_code": f"JE-{uuid.uuid4().hex[:10]}" if code == AUTO else code,
                "p_total_amount": amount, **args}
        return self.emit(org, lines=self.gl_lines(dr, cr, amount), **call)

    def seed(self, org: uuid.UUID) -> uuid.UUID:
        """One row in each of the five org-scoped tables (the org row exists already); returns the journal."""
        txn = self.journal(org)
        ent, ent2 = self.entity(org), self.entity(org)
        self.insert("core_dynamic_data", organization_id=org, entity_id=ent, field_name="f",
                    smart_code="HERA.FINANCE.COA.FIELD.GENERIC.v1", created_by=self.actor, updated_by=self.actor)
        self.insert("core_relationships", organization_id=org, from_entity_id=ent, to_entity_id=ent2,
                    relationship_type="MEMBER_OF", smart_code="HERA.FINANCE.REL.MEMBER.OF.v1",
                    created_by=self.actor, updated_by=self.actor)
        return txn

    def reverse(self, org: uuid.UUID, txn: uuid.UUID, reason: str = "test reversal") -> dict[str, Any]:
        return named_call(self.conn, "hera_txn_reverse_v1", p_organization_id=org,  # type: ignore[no-any-return]
                          p_transaction_id=txn, p_reason=reason, p_actor_user_id=self.actor)

    def header(self, txn: uuid.UUID) -> dict[str, Any]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM universal_transactions WHERE id = %s", (txn,)).fetchone()
        assert row is not None, f"no header {txn}"
        return row

    def lines(self, txn: uuid.UUID) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute("SELECT * FROM universal_transaction_lines WHERE transaction_id = %s "
                               "ORDER BY line_number, id", (txn,)).fetchall()

    def scalar(self, sql: str, params: Any = None) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

"""Transactions of one synthetic org: balanced GL journals in HERA's production convention.

Convention (docs/hera-reference.md §2.6, §7.2): a GL line's smart code contains `.GL.`, `line_data.side` is DR or CR and
`line_amount` is positive. Reversed and voided rows are written in the final state HERA's RPCs leave them in
(§2.2, §2.7): the reversed original is `reversed` with reversal keys and a `.V1` header code (the RPC's UPDATE does
not set smart_code), its twin is a `posted` `<code>-REV` header with negated lines on the same side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise
from random import Random
from typing import Any

from runner.synth import copytext as ct
from runner.synth.masterdata import MasterData, Period
from runner.synth.profiles import Profiles, TxnCode

HEADER_COLUMNS = (
    "id", "organization_id", "transaction_type", "transaction_code", "transaction_date", "source_entity_id",
    "target_entity_id", "total_amount", "transaction_status", "reference_number", "smart_code",
    "smart_code_status", "business_context", "metadata", "created_at", "updated_at", "created_by", "updated_by",
    "version", "transaction_currency_code", "base_currency_code", "exchange_rate", "exchange_rate_date",
    "exchange_rate_type", "fiscal_period_entity_id", "fiscal_year", "fiscal_period", "posting_period_code",
)
LINE_COLUMNS = (
    "id", "organization_id", "transaction_id", "line_number", "entity_id", "line_type", "description", "quantity",
    "unit_amount", "line_amount", "discount_amount", "tax_amount", "smart_code", "smart_code_status", "line_data",
    "created_at", "updated_at", "created_by", "updated_by", "version",
)

# Fixed rates keep generated data reproducible; quoted per unit of base currency.
FX_RATES = {"USD": "1.0000000000", "EUR": "1.0850000000", "GBP": "1.2700000000", "AED": "0.2723000000"}
INVENTORY_PAIRS = {"INVENTORY_ISSUE": ("COGS", "INVENTORY"), "WO_ISSUE": ("WIP", "INVENTORY"),
                   "WO_RECEIPT": ("INVENTORY", "WIP")}
VAT_RATE_PERCENT = 10
FATES = ("open", "closed", "reversed", "voided")


@dataclass
class CodeTruth:
    """What the generator decided for one v1 header code: the ground truth plan/validation compare against."""

    originals: int = 0
    open_by_status: dict[str, int] = field(default_factory=dict)
    open_amount_cents: int = 0
    closed: int = 0
    reversed: int = 0
    voided: int = 0
    flipped_case: int = 0  # open headers whose code reads `.V1` after a status update

    def as_dict(self) -> dict[str, Any]:
        return {"originals": self.originals, "open_by_status": dict(sorted(self.open_by_status.items())),
                "open_amount": ct.cents(self.open_amount_cents), "closed": self.closed,
                "reversed": self.reversed, "voided": self.voided, "flipped_case": self.flipped_case}


@dataclass
class LedgerTruth:
    by_code: dict[str, CodeTruth] = field(default_factory=dict)
    headers: int = 0
    lines: int = 0
    reversal_twins: int = 0


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def _split(rng: Random, total: int, parts: int) -> list[int]:
    """Split `total` cents into `parts` positive integers (exact, no rounding loss)."""
    if parts == 1:
        return [total]
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    bounds = [0, *cuts, total]
    return [b - a for a, b in pairwise(bounds)]


class LedgerWriter:
    """Draws transactions for one org and renders them as COPY text rows."""

    def __init__(self, profiles: Profiles, md: MasterData, rng: Random) -> None:
        self.p = profiles
        self.md = md
        self.rng = rng
        self.truth = LedgerTruth()
        codes = profiles.transaction_codes
        self._codes: list[TxnCode] = list(codes)
        self._status_names = list(profiles.statuses)
        self._line_data_cache: dict[tuple[str, str | None], str] = {}
        self._context_json: dict[str, str] = {}
        self._cum_weights = list(accumulate(c.weight for c in codes))
        self._status_cum = list(accumulate(profiles.statuses.values()))
        # Descriptions are stored COPY-escaped once; rows below use them as they are.
        self._desc = {(side, a.role): ct.text(f"{'Debit' if side == 'DR' else 'Credit'} {a.name}")
                      for a in profiles.gl_accounts for side in ("DR", "CR")}
        self._gl_code = {(side, a.role): profiles.gl_line_code.format(side=side, role=a.role)
                         for a in profiles.gl_accounts for side in ("DR", "CR")}

    # --- lines ---------------------------------------------------------------------------------------------

    def _line_data(self, entity: str, side: str | None) -> str:
        """line_data JSON text, cached: it depends only on the account and side."""
        key = (entity, side)
        cached = self._line_data_cache.get(key)
        if cached is None:
            value = ({"side": side, "account_code": self.md.account_code_by_entity[entity]} if side
                     else {"item": "service"})
            cached = self._line_data_cache[key] = ct.jsonb(value)
        return cached

    def _gl_lines(self, layout: str, txn_type: str, gross: int) -> list[tuple[str, str, int]]:
        """(side, account role, cents) GL lines for a layout; Σ DR = Σ CR = gross."""
        rng = self.rng
        net = gross * 100 // (100 + VAT_RATE_PERCENT)
        tax = gross - net
        if layout == "ar_invoice":
            return [("DR", "AR", gross), ("CR", "REVENUE", net), ("CR", "VAT", tax)]
        if layout == "ap_bill":
            return [("DR", "EXPENSE", net), ("DR", "VAT", tax), ("CR", "AP", gross)]
        if layout == "pos_sale":
            revenue = "REVENUE" if rng.random() < 0.6 else "PRODUCT_REV"
            return [("DR", "CASH", gross), ("CR", revenue, net), ("CR", "VAT", tax)]
        if layout == "inventory":
            dr, cr = INVENTORY_PAIRS.get(txn_type, ("COGS", "INVENTORY"))
            return [("DR", dr, gross), ("CR", cr, gross)]
        if layout == "payment":
            if rng.random() < 0.5:
                return [("DR", "AP", gross), ("CR", "CASH", gross)]
            return [("DR", "CASH", gross), ("CR", "AR", gross)]
        # journal: 1–3 debits and 1–3 credits over random accounts
        n_dr, n_cr = rng.randint(1, 3), rng.randint(1, 3)
        roles = [a.role for a in self.p.gl_accounts]
        lines = [("DR", rng.choice(roles), amt) for amt in _split(rng, gross, n_dr)]
        lines += [("CR", rng.choice(roles), amt) for amt in _split(rng, gross, n_cr)]
        return lines

    def _item_lines(self, layout: str, gross: int) -> list[int]:
        """Non-GL item lines (services/products sold); their amounts sum to the net."""
        net = gross * 100 // (100 + VAT_RATE_PERCENT)
        if layout == "pos_sale":
            return _split(self.rng, net, self.rng.randint(1, 2))
        if layout == "ar_invoice" and self.rng.random() < 0.5:
            return [net]
        return []

    # --- headers -------------------------------------------------------------------------------------------

    def transactions(self, count: int, code_prefix: str) -> Iterator[tuple[list[str], list[str]]]:
        """Yield (header rows, line rows) per transaction: the original and, if reversed, its twin."""
        p, md, rng = self.p, self.md, self.rng
        periods = md.periods
        actor = md.actor_id
        org = md.org_id
        for n in range(1, count + 1):
            tc = rng.choices(self._codes, cum_weights=self._cum_weights)[0]
            period = rng.choice(periods)
            day_offset = rng.randrange((period.end - period.start).days + 1)
            txn_ts = datetime.combine(period.start + timedelta(days=day_offset), datetime.min.time(),
                                      tzinfo=UTC) + timedelta(seconds=rng.randrange(8 * 3600, 20 * 3600))
            gross = rng.randint(1_000, 2_500_000)  # 10.00 .. 25,000.00
            currency = rng.choice(p.currencies) if rng.random() < 0.3 else md.base_currency
            roll = rng.random()
            if roll < p.reversed:
                fate = "reversed"
            elif roll < p.reversed + p.voided:
                fate = "voided"
            else:
                fate = "closed" if period.closed else "open"
            status = rng.choices(self._status_names, cum_weights=self._status_cum)[0]
            # One header in ten carries no period link, as in real data; only where the date is in an open period,
            # so eligibility stays unambiguous.
            link_period = period.closed or rng.random() >= 0.10
            flipped = fate == "open" and status == "completed" and rng.random() < 0.25

            truth = self.truth.by_code.setdefault(tc.code, CodeTruth())
            truth.originals += 1
            if fate == "open":
                truth.open_by_status[status] = truth.open_by_status.get(status, 0) + 1
                truth.open_amount_cents += gross
                truth.flipped_case += flipped
            else:
                setattr(truth, fate, getattr(truth, fate) + 1)

            txn_id = ct.new_uuid(rng)
            txn_code = f"{code_prefix}-{n:07d}"
            reference = f"REF-{n:07d}"
            customer = rng.choice(md.customers)
            gl = self._gl_lines(tc.layout, tc.type, gross)
            items = self._item_lines(tc.layout, gross)
            lines: list[tuple[str, str, str, str, int, str | None]] = []  # type, code, entity, desc, cents, side
            for amt in items:
                product = rng.choice(md.products)
                lines.append(("SERVICE", "HERA.SALON.POS.LINE.SERVICE.v1", product, "Service item", amt, None))
            for side, role, amt in gl:
                acct = md.accounts[role]
                lines.append(("GL", self._gl_code[(side, role)], acct.entity_id, self._desc[(side, role)], amt, side))

            created = _iso(txn_ts)
            amount = ct.cents(gross)
            meta: dict[str, Any] = {"finance_dna_version": "v1", "gl_balanced": True, "total_dr": amount,
                                    "total_cr": amount, "gl_posting_required": True, "source": "synthetic"}
            context = {"channel": tc.layout, "branch_id": md.branch_id}
            context_json = self._context_json.get(tc.layout)
            if context_json is None:
                context_json = self._context_json[tc.layout] = ct.jsonb(context)
            fx_rate = fx_date = fx_type = None
            if currency != md.base_currency:
                fx_rate, fx_date, fx_type = FX_RATES[currency], txn_ts.date().isoformat(), "SPOT"

            header_meta: dict[str, Any] | None = None  # only rows an RPC touched after the insert need their own
            smart_code = tc.code
            version = 1
            updated = created
            final_status = status
            twin: tuple[list[str], list[str]] | None = None
            if fate == "reversed":
                rev_ts = txn_ts + timedelta(days=rng.randint(1, 5))
                rev_id = ct.new_uuid(rng)
                header_meta = meta | {"reversed_at": _iso(rev_ts), "reversal_id": rev_id,
                                      "reversal_reason": "Customer dispute"}
                smart_code, version, updated, final_status = _flip(tc.code), 2, _iso(rev_ts), "reversed"
                twin = self._twin(tc, org, rev_id, txn_id, txn_code, rev_ts, customer, meta, context, currency,
                                  fx_rate, period, reference, lines, actor)
            elif fate == "voided":
                void_ts = txn_ts + timedelta(days=rng.randint(0, 3))
                header_meta = meta | {"voided_at": _iso(void_ts), "void_reason": "Entered in error",
                                      "voided_by": actor}
                smart_code, version, updated, final_status = _flip(tc.code), 2, _iso(void_ts), "voided"
            elif flipped:
                smart_code, version = _flip(tc.code), 2

            # Same text json.dumps gives for `meta`; formatted directly because it is the hot path.
            meta_json = (_PLAIN_META.format(amount=amount) if header_meta is None else ct.jsonb(header_meta))
            header = ct.row(
                txn_id, org, tc.type, txn_code, created, customer, ct.NULL, amount, final_status,
                reference, smart_code, "DRAFT", context_json, meta_json, created, updated,
                actor, actor, str(version), currency, md.base_currency, fx_rate or ct.NULL, fx_date or ct.NULL,
                fx_type or ct.NULL,
                period.entity_id if link_period else ct.NULL,
                str(period.fiscal_year) if link_period else ct.NULL,
                str(period.number) if link_period else ct.NULL,
                period.code if link_period else ct.NULL,
            )
            line_rows = [
                ct.row(ct.new_uuid(rng), org, txn_id, str(i), entity, ltype, desc, "1", ct.cents(amt),
                       ct.cents(amt), "0", "0", code, "DRAFT", self._line_data(entity, side),
                       created, created, actor, actor, "1")
                for i, (ltype, code, entity, desc, amt, side) in enumerate(lines, start=1)
            ]
            self.truth.headers += 1
            self.truth.lines += len(line_rows)
            if twin is None:
                yield [header], line_rows
            else:
                self.truth.headers += 1
                self.truth.lines += len(twin[1])
                self.truth.reversal_twins += 1
                yield [header, *twin[0]], line_rows + twin[1]

    def _twin(self, tc: TxnCode, org: str, rev_id: str, orig_id: str, orig_code: str, rev_ts: datetime,
              customer: str, meta: dict[str, Any], context: dict[str, Any], currency: str, fx_rate: str | None,
              period: Period, reference: str, lines: list[tuple[str, str, str, str, int, str | None]],
              actor: str) -> tuple[list[str], list[str]]:
        """The reversal header and lines exactly as hera_txn_reverse_v1 (overload B) writes them."""
        ts = _iso(rev_ts)
        twin_meta = meta | {"reversal_of": orig_id, "reversal_reason": "Customer dispute", "reversal_at": ts}
        total = sum(amt for *_, amt, _side in lines)
        header = ct.row(
            rev_id, org, tc.type, f"{orig_code}-REV", ts, customer, ct.NULL, ct.cents(total), "posted",
            reference, _flip(tc.code), "DRAFT", ct.jsonb(context), ct.jsonb(twin_meta), ts, ts, actor, actor, "1",
            currency, self.md.base_currency, fx_rate or ct.NULL, ct.NULL, ct.NULL, ct.NULL,
            str(period.fiscal_year), str(period.number), ct.NULL,
        )
        rows = [
            ct.row(ct.new_uuid(self.rng), org, rev_id, str(i), entity, ltype, f"REVERSAL: {desc}", "-1",
                   ct.cents(amt), ct.cents(-amt), "0", "0", code, "DRAFT",
                   ct.jsonb({"side": side, "account_code": self.md.account_code_by_entity[entity]}
                            if side else {"item": "service"}),
                   ts, ts, actor, actor, "1")
            for i, (ltype, code, entity, desc, amt, side) in enumerate(lines, start=1)
        ]
        return [header], rows


_PLAIN_META = ('{{"finance_dna_version":"v1","gl_balanced":true,"total_dr":"{amount}","total_cr":"{amount}",'
               '"gl_posting_required":true,"source":"synthetic"}}')


def _flip(code: str) -> str:
    """HERA's header normaliser on an UPDATE that does not set smart_code: the whole code upper-cased."""
    return code.upper()

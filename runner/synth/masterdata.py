"""Master data of one synthetic org: the organisation, its actor, chart of accounts, customers, products,
fiscal periods, posting rules, dynamic fields and relationships — shaped like real HERA data (reference §5)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from random import Random
from typing import Any

from runner.synth import copytext as ct
from runner.synth.profiles import Profiles, Size

ORG_COLUMNS = ("id", "organization_name", "organization_code", "organization_type", "industry_classification",
               "settings", "status", "created_at", "updated_at", "created_by", "updated_by")
ENTITY_COLUMNS = ("id", "organization_id", "entity_type", "entity_name", "entity_code", "entity_description",
                  "smart_code", "smart_code_status", "business_rules", "metadata", "status", "created_at",
                  "updated_at", "created_by", "updated_by", "version")
DYNAMIC_COLUMNS = ("id", "organization_id", "entity_id", "field_name", "field_type", "field_value_text",
                   "field_value_number", "field_value_boolean", "field_value_json", "smart_code", "ai_insights",
                   "validation_status", "created_at", "updated_at", "created_by", "updated_by")
# What HERA's trg_ef_soft_validate leaves on every INSERTed field: it judges the row stored under NEW.id, which
# does not exist yet (docs/hera-reference.md §1.8; production data: most fields look exactly like this).
INSERTED_FIELD_INSIGHTS = {"validation_errors": {"missing_fields": {
    "organization_id": False, "entity_id": False, "field_name": False, "smart_code": False}}}
RELATIONSHIP_COLUMNS = ("id", "organization_id", "from_entity_id", "to_entity_id", "relationship_type",
                        "relationship_data", "smart_code", "effective_date", "created_at", "updated_at", "created_by",
                        "updated_by")

# Ledgers end here, so the same seed gives the same dates on any day the generator runs.
LEDGER_END = date(2025, 12, 31)
POLICY_KINDS = ("REVENUE_RECOGNITION", "VAT_POSTING", "DISCOUNT_LIMIT", "COGS_POSTING", "PAYMENT_MATCHING",
                "CREDIT_LIMIT", "COMMISSION", "ROUNDING")
COUNTRY_BY_CURRENCY = {"USD": ("US", "en-US", "America/New_York"), "EUR": ("DE", "de-DE", "Europe/Berlin"),
                       "GBP": ("GB", "en-GB", "Europe/London"), "AED": ("AE", "en-AE", "Asia/Dubai")}


@dataclass(frozen=True)
class Period:
    entity_id: str
    code: str
    fiscal_year: int
    number: int
    start: date
    end: date
    closed: bool


@dataclass(frozen=True)
class AccountRef:
    entity_id: str
    code: str
    name: str


@dataclass
class MasterData:
    org_id: str
    org_code: str
    actor_id: str
    base_currency: str
    branch_id: str
    accounts: dict[str, AccountRef]  # by role
    account_code_by_entity: dict[str, str]
    customers: list[str]
    products: list[str]
    periods: list[Period]
    rows: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    posting_rules: int = 0


def _ts(d: date) -> str:
    return datetime.combine(d, time(6, 0), tzinfo=UTC).isoformat()


class _Builder:
    def __init__(self, rng: Random, org_id: str, actor: str, created: str) -> None:
        self.rng, self.org, self.actor, self.created = rng, org_id, actor, created
        self.rows: dict[str, list[str]] = defaultdict(list)

    def entity(self, etype: str, name: str, code: str | None, smart_code: str, *, metadata: dict[str, Any] | None
               = None, status: str = "active", description: str | None = None, entity_id: str | None = None,
               business_rules: dict[str, Any] | None = None) -> str:
        eid = entity_id or ct.new_uuid(self.rng)
        self.rows["core_entities"].append(ct.row(
            eid, self.org, etype, ct.text(name), ct.text(code), ct.text(description), smart_code, "ACTIVE",
            ct.jsonb(business_rules or {}), ct.jsonb(metadata or {}), status, self.created, self.created,
            self.actor, self.actor, "1"))
        return eid

    def field(self, entity_id: str, name: str, smart_code: str, *, text: str | None = None,
              number: str | None = None, boolean: bool | None = None, json_value: Any = None) -> None:
        ftype = ("json" if json_value is not None else "number" if number is not None
                 else "boolean" if boolean is not None else "text")
        self.rows["core_dynamic_data"].append(ct.row(
            ct.new_uuid(self.rng), self.org, entity_id, name, ftype, ct.text(text), number or ct.NULL,
            ct.NULL if boolean is None else ("t" if boolean else "f"),
            ct.NULL if json_value is None else ct.jsonb(json_value), smart_code, ct.jsonb(INSERTED_FIELD_INSIGHTS),
            "invalid", self.created, self.created, self.actor, self.actor))

    def relate(self, src: str, dst: str, rtype: str, smart_code: str, data: dict[str, Any] | None = None) -> None:
        self.rows["core_relationships"].append(ct.row(
            ct.new_uuid(self.rng), self.org, src, dst, rtype, ct.jsonb(data or {}), smart_code, self.created,
            self.created, self.created, self.actor, self.actor))


def build(profiles: Profiles, size: Size, rng: Random, *, org_code: str, org_name: str) -> MasterData:
    org_id = ct.new_uuid(rng)
    actor = ct.new_uuid(rng)
    base_currency = rng.choice(profiles.currencies)
    country, locale, tz = COUNTRY_BY_CURRENCY[base_currency]
    bounds = _period_bounds(size.fiscal_periods)
    created = _ts(bounds[0][0])
    b = _Builder(rng, org_id, actor, created)

    settings = {"currency": base_currency, "country": country, "locale": locale, "timezone": tz,
                "date_format": "YYYY-MM-DD", "theme": "default", "fiscal_year_start_month": 1,
                "finance_dna": {"version": "v1", "gl_posting_required": True, "auto_journal_enabled": True}}
    b.rows["core_organizations"].append(ct.row(
        org_id, ct.text(org_name), org_code, "business_unit", "salon", ct.jsonb(settings), "active", created,
        created, actor, actor))

    # The migration actor of v1 writes: a USER entity whose id is the actor uuid (auth_user_id is unique).
    b.entity("USER", "Synthetic Finance Bot", f"USR-{org_code}", "HERA.PLATFORM.USER.ENTITY.SYSTEM.v1",
             metadata={"auth_user_id": actor, "email": f"bot@{org_code.lower()}.example"}, entity_id=actor)
    b.entity("ORGANIZATION", org_name, org_code, "HERA.PLATFORM.ORG.ENTITY.MIRROR.v1",
             metadata={"organization_id": org_id})
    branch = b.entity("BRANCH", "Main Branch", "BR-001", "HERA.SALON.ORG.ENTITY.BRANCH.v1")

    accounts: dict[str, AccountRef] = {}
    for i, acct in enumerate(profiles.gl_accounts):
        etype = "gl_account" if i % 2 == 0 else "GL_ACCOUNT"  # both spellings occur in real HERA data
        eid = b.entity(etype, acct.name, acct.code, f"HERA.FINANCE.COA.ACCOUNT.{acct.code}.v1",
                       metadata={"account_type": acct.type})
        b.field(eid, "account_type", "HERA.FINANCE.COA.FIELD.ACCOUNT_TYPE.v1", text=acct.type)
        b.field(eid, "account_code", "HERA.FINANCE.COA.FIELD.ACCOUNT_CODE.v1", text=acct.code)
        b.field(eid, "is_active", "HERA.FINANCE.COA.FIELD.IS_ACTIVE.v1", boolean=True)
        accounts[acct.role] = AccountRef(eid, acct.code, acct.name)

    customers = []
    for i in range(size.customers):
        etype = "customer" if i % 3 else "CUSTOMER"
        cid = b.entity(etype, f"Customer {i + 1:05d}", f"CUST-{i + 1:05d}", "HERA.SALON.CRM.ENTITY.CUSTOMER.v1")
        b.relate(cid, branch, "MEMBER_OF", "HERA.SALON.CRM.REL.MEMBER_OF.BRANCH.v1")
        customers.append(cid)
    products = []
    for i in range(size.products):
        etype = "product" if i % 2 else "PRODUCT"
        pid = b.entity(etype, f"Service {i + 1:04d}", f"SVC-{i + 1:04d}", "HERA.SALON.CATALOG.ENTITY.SERVICE.v1")
        b.field(pid, "price", "HERA.SALON.CATALOG.FIELD.PRICE.v1", number=ct.cents(rng.randint(1_500, 40_000)))
        b.relate(pid, branch, "AVAILABLE_AT", "HERA.SALON.CATALOG.REL.AVAILABLE_AT.BRANCH.v1")
        products.append(pid)

    closed_count = round(size.fiscal_periods * profiles.closed_period)
    periods: list[Period] = []
    for i, (start, end) in enumerate(bounds):
        closed = i < closed_count
        code = f"FP-{start.year}-{start.month:02d}"
        status = "CLOSED" if closed else "OPEN"
        meta = {"period_type": "MONTH", "fiscal_year": start.year, "period_number": start.month,
                "status": status, "start_date": start.isoformat(), "end_date": end.isoformat()}
        pid = b.entity("fiscal_period", f"{start:%B %Y}", code, "HERA.FINANCE.FISCAL.PERIOD.MONTH.v1",
                       metadata=meta, status="closed" if closed else "open")
        b.field(pid, "period_status", "HERA.FINANCE.FISCAL.FIELD.PERIOD_STATUS.v1", text=status.lower())
        periods.append(Period(pid, code, start.year, start.month, start, end, closed))

    codes = [c.code for c in profiles.transaction_codes]
    for i in range(size.posting_rules):
        kind = POLICY_KINDS[i % len(POLICY_KINDS)]
        priority = 10 * (i + 1)
        applies_to = codes[i % len(codes)]
        dr, cr = rng.sample([a.role for a in profiles.gl_accounts], 2)
        pid = b.entity("financial_policy", f"{kind.replace('_', ' ').title()} Rule {i + 1}", f"POL-{i + 1:04d}",
                       f"HERA.SALON.ENTITY.FINANCIAL_POLICY.{kind}.v1",
                       metadata={"status": "active", "priority": priority, "created_by": actor,
                                 "policy_type": kind.lower()})
        config = {"applies_to": applies_to, "min_amount": 0, "max_amount": rng.choice([5_000, 50_000, 250_000]),
                  "debit_account": accounts[dr].code, "credit_account": accounts[cr].code}
        b.field(pid, "policy_config", "HERA.SALON.DYN.FIELD.GENERIC.TYPE.GENERIC.v1", json_value=config)
        b.field(pid, "priority", "HERA.SALON.DYN.FIELD.GENERIC.TYPE.GENERIC.v1", number=str(priority))

    return MasterData(org_id=org_id, org_code=org_code, actor_id=actor, base_currency=base_currency,
                      branch_id=branch, accounts=accounts,
                      account_code_by_entity={a.entity_id: a.code for a in accounts.values()},
                      customers=customers, products=products, periods=periods, rows=b.rows,
                      posting_rules=size.posting_rules)


def _period_bounds(months: int) -> list[tuple[date, date]]:
    """`months` consecutive calendar months ending with LEDGER_END's month, oldest first."""
    out: list[tuple[date, date]] = []
    y, m = LEDGER_END.year, LEDGER_END.month
    for _ in range(months):
        start = date(y, m, 1)
        following = date(y + (m == 12), m % 12 + 1, 1)
        out.append((start, following - timedelta(days=1)))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out[::-1]

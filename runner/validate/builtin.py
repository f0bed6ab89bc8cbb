"""The built-in checks as compiled statements: `runner/sql/validate/<check id>.sql.j2`, parameterised by the spec.

Every value reaches PostgreSQL bound (the compiler's `bind`): the run id, organisation ids, the JSON keys of the
correlation contract, tolerances, the spec's mappings resolved against the run's codes (arrays), line overrides,
entity remaps and `set` transforms (one jsonb document). The SQL text never depends on the spec's values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from runner import contract
from runner.compile import Statement, render
from runner.compile.jsonx import dumps
from runner.compile.params import Mappings, override_params, run_guard, scope_params
from runner.engine.context import WORKER_PREFIX
from runner.snapshot.rules import review_columns
from runner.spec import codes
from runner.spec.model import BUILTIN_LEVELS, CheckDef, Spec, Transform
from runner.validate import snapshot
from runner.validate.execute import BUILTIN_TIMEOUT_SECONDS, settings_statement

QUARANTINE_PREFIX = "quarantine:"  # the engine's journal field prefix (runner.engine.context.QUARANTINE_PREFIX)
REVIEW_RUN_ID = "<run_id>"  # the run id shown in `compile --out` (bound, never in the SQL text)

# Constants the templates bind: the correlation contract's JSON keys and values (docs/contract.md §6, runner.contract).
KEYS: dict[str, Any] = {
    "k_mig": contract.META_MIGRATION, "k_run": "run_id", "k_role": "role", "k_original": "original_txn_id",
    "k_repost_id": "repost_id", "k_reversal_id": "reversal_id", "k_reversal_of": "reversal_of", "k_pre": "pre",
    "k_family": "family", "k_smart_code": "smart_code", "k_metadata": "metadata", "k_status": "transaction_status",
    "k_sc_status": "smart_code_status", "k_alias": contract.META_REPORTING_ALIAS, "k_side": "side",
    "k_reason": "reason", "k_period_status": "status", "k_start_date": "start_date", "k_end_date": "end_date",
    "role_original": contract.ROLE_ORIGINAL, "role_repost": contract.ROLE_REPOST, "role_alias": contract.ROLE_ALIAS,
    "role_entity": contract.ROLE_ENTITY, "role_reversal": "reversal",
    "source_roles": [contract.ROLE_ORIGINAL, contract.ROLE_ALIAS],
    "tier_repost": "reverse_repost", "tier_alias": "reporting_alias",
    "gl_pattern": r"\.GL\.", "debit": "DR", "credit": "CR", "rev_suffix": "-REV", "status_reversed": "reversed",
    "closed": "closed", "date_pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "journal_type": contract.JOURNAL_ENTITY_TYPE, "org_preimage_field": contract.ORG_PREIMAGE_FIELD,
    "quarantine_prefix": QUARANTINE_PREFIX,
    "kind_metadata": "metadata", "kind_dynamic": "dynamic", "kind_settings": "settings",
    "kind_org_config": "organization_config", "kind_quarantined": "quarantined", "kind_reversal": "reversal",
    "kind_journal": "journal", "kind_original_lines": "original_lines", "kind_journal_status": "journal_status",
    "k_journal_status": "status",
    "k_migrated": "migrated", "k_aliased": "aliased", "k_worker_prefix": WORKER_PREFIX, "status_completed": "completed",
    "role_candidate": "candidate",
}

DESCRIPTIONS: dict[str, str] = {
    "gl_balanced": "Every repost of the run balances: debits equal credits over its GL lines.",
    "one_reversal_one_repost": "Every original has exactly one reversal and one repost of this run, linked both ways.",
    "reversal_nets_to_zero": "Original plus reversal net to zero per account and currency.",
    "trial_balance_unchanged": "The trial balance per account and currency is the same before and after the run.",
    "count_amount_reconciliation": "Per mapping, originals migrated and reposts agree in count and total amount; a "
                                   "completed run's journal agrees with the rows and left no candidate behind.",
    "v2_code_matches_mapping": "Every repost carries the v2 code its mapping gives and passes HERA's strict pattern.",
    "lines_preserved": "Every repost line equals its original line (amounts, accounts, sides; mapped line codes).",
    "closed_period_untouched": "Nothing of the run lies in or is dated into a closed fiscal period.",
    "no_cross_org_references": "No row of the run references a row of another organisation.",
    "alias_only_metadata": "Alias rows changed only by their reporting alias metadata.",
    "entity_transform_matches": "Migrated entities carry their remapped smart code and the declared set transforms.",
}
ORDER = tuple(BUILTIN_LEVELS)
LINE_FIELDS = ("entity_id", "line_type", "quantity", "unit_amount", "line_amount", "discount_amount", "tax_amount",
               "side")


@dataclass
class Resolved:
    """The spec resolved against the codes the run really touched in one organisation: its mappings (through the
    compiler's one resolution, compile.params.Mappings) and its entity remaps."""

    mappings: Mappings = field(default_factory=Mappings)
    # every code of the organisation the spec maps (role 'candidate'): what the run resolved its mappings against
    candidates: Mappings = field(default_factory=Mappings)
    families: list[str] = field(default_factory=list)
    pre_codes: list[str] = field(default_factory=list)
    expected_codes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, spec: Spec, rows: Iterable[tuple[str | None, str | None, str | None]]) -> Resolved:
        """rows: (role, family, code) from validate/run_codes."""
        out = cls()
        touched: list[str] = []
        candidates: list[str] = []
        for role, family, code in rows:
            if code is None:
                continue
            if role == KEYS["role_candidate"]:
                candidates.append(code)
            elif role == contract.ROLE_ENTITY:
                model = getattr(spec.entities, family or "", None)
                remap = getattr(model, "remap", None)
                target = remap(code, spec.dna.target) if remap is not None else None
                out.families.append(family or "")
                out.pre_codes.append(code)
                out.expected_codes.append(target or codes.normalize(code))
            else:
                touched.append(code)
        out.mappings = Mappings.resolve(spec, touched)
        out.candidates = Mappings.resolve(spec, candidates)
        return out

    @classmethod
    def from_spec(cls, spec: Spec) -> Resolved:
        """For review without a database: the exact (`from`) mappings and remaps only."""
        rows: list[tuple[str | None, str | None, str | None]] = [
            (role, None, m.from_) for m in spec.mappings if m.from_ is not None
            for role in ("original", KEYS["role_candidate"])]
        for family in ("posting_rules", "fiscal_periods"):
            model = getattr(spec.entities, family)
            if model is not None:
                rows += [(contract.ROLE_ENTITY, family, r.from_) for r in model.smart_codes if r.from_ is not None]
        return cls.build(spec, rows)


def _overlaps(a: str, b: str) -> bool:
    pa, pb = a.split("."), b.split(".")
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def final_sets(transforms: tuple[Transform, ...]) -> list[Transform]:
    """The `set` transforms whose value must still be there after all transforms ran: those that no later
    transform writes over, into, or renames away."""
    out = []
    for i, tf in enumerate(transforms):
        if tf.op != "set":
            continue
        later = transforms[i + 1:]
        if any(_overlaps(tf.target, t.target) or (t.op == "rename" and _overlaps(tf.target, t.source or ""))
               for t in later):
            continue
        out.append(tf)
    return out


def transform_params(spec: Spec) -> str:
    """The final `set` transforms of every entity family as one jsonb array (exact numbers, no float)."""
    rows: list[dict[str, Any]] = []
    families: list[tuple[str, tuple[Transform, ...]]] = []
    for family in ("posting_rules", "fiscal_periods", "organization_config"):
        model = getattr(spec.entities, family)
        if model is not None:
            families.append((family, model.transforms))
    for family, transforms in families:
        for tf in final_sets(transforms):
            head, *keys = tf.target.split(".")
            label = f"set {tf.target} = {dumps(tf.value)}"
            if head == "dynamic" and keys:
                rows.append({"family": family, "kind": "dynamic", "field": keys[0], "path": keys[1:],
                             "value": tf.value, "label": label})
            elif head in ("metadata", "settings"):
                rows.append({"family": family, "kind": head, "field": None, "path": keys, "value": tf.value,
                             "label": label})
    return dumps(rows)


def params_for(check: CheckDef, spec: Spec, resolved: Resolved, run_id: str = REVIEW_RUN_ID) -> dict[str, Any]:
    """The template context of one built-in check beyond the run, organisation and KEYS."""
    p = check.params
    if check.id in ("gl_balanced", "reversal_nets_to_zero"):
        return {"tolerance": Decimal(str(p.get("tolerance", "0.0001")))}
    if check.id == "trial_balance_unchanged":
        return {"tolerance": Decimal(str(p.get("tolerance", "0"))), "by_currency": bool(p.get("by_currency", True))}
    if check.id == "count_amount_reconciliation":
        m, c = resolved.mappings, resolved.candidates
        return {"amount_tolerance": Decimal(str(p.get("amount_tolerance", "0"))), "v1_codes": m.v1_codes,
                "labels": m.labels, "cand_v1_codes": c.v1_codes, "cand_tiers": c.tiers, "cand_labels": c.labels,
                "scope": scope_params(spec), "guard": run_guard(run_id)}
    if check.id in ("v2_code_matches_mapping", "alias_only_metadata"):
        m = resolved.mappings
        return {"v1_codes": m.v1_codes, "v2_codes": m.v2_codes, "labels": m.labels, "tiers": m.tiers}
    if check.id == "lines_preserved":
        ignored = set(p.get("ignore_fields") or ())
        ignore = {name: name in ignored for name in LINE_FIELDS}
        ignore["side"] = "line_data" in ignored
        return {"v1_codes": resolved.mappings.v1_codes, "mapping_indexes": resolved.mappings.mapping_indexes,
                "ignore": ignore, **override_params(spec)}
    if check.id == "closed_period_untouched":
        model = spec.entities.fiscal_periods
        types = model.entity_types if model is not None else ("fiscal_period",)
        return {"period_types": [t.lower() for t in types]}
    if check.id == "entity_transform_matches":
        return {"families": resolved.families, "pre_codes": resolved.pre_codes,
                "expected_codes": resolved.expected_codes, "transforms": transform_params(spec)}
    return {}


def statement(check: CheckDef, spec: Spec, run_id: str, resolved: Resolved, *, org_id: str | None = None,
              org_ids: list[str] | None = None) -> Statement:
    """The compiled statement of built-in `check` for one organisation (record/aggregate) or all (system)."""
    context: dict[str, Any] = {**KEYS, "run_id": run_id, **params_for(check, spec, resolved, run_id)}
    if check.level == "system":
        context["org_ids"] = list(org_ids or ([org_id] if org_id else []))
    else:
        context["org_id"] = org_id
    return render(f"validate/{check.id}", **context)


def helper(name: str, run_id: str, **context: Any) -> Statement:
    """The non-check statements of the validation (run_codes, records, links, org_summary, journal_orgs)."""
    return render(f"validate/{name}", **KEYS, run_id=run_id, **context)


# outcome labels of validate/code_breakdown beyond the eligibility CASE's own (runner.validate.breakdown)
OUTCOME_REPOSTED, OUTCOME_ALIASED, OUTCOME_CANDIDATE = "reverse_reposted", "reporting_alias_set", "candidate"


def code_breakdown_statement(spec: Spec, run_id: str, org_id: str, mappings: Mappings) -> Statement:
    """validate/code_breakdown: the organisation's headers per v1 code, outcome and currency."""
    return helper("code_breakdown", run_id, org_id=org_id, v1_codes=mappings.v1_codes, v2_codes=mappings.v2_codes,
                  tiers=mappings.tiers, outcome_reposted=OUTCOME_REPOSTED, outcome_aliased=OUTCOME_ALIASED,
                  outcome_candidate=OUTCOME_CANDIDATE, **scope_params(spec))


def review_statements(spec: Spec) -> list[Statement]:
    """Every validation statement, for `compile --out`: the helpers, then each enabled built-in check, rendered
    for the spec's `include` organisations (the first one for per-organisation statements)."""
    orgs = list(spec.scope.organizations.include)
    org = orgs[0] if orgs else "00000000-0000-0000-0000-000000000000"
    resolved = Resolved.from_spec(spec)
    out = [settings_statement(str(round(BUILTIN_TIMEOUT_SECONDS * 1000)), "off"),
           helper("journal_orgs", REVIEW_RUN_ID, org_ids=orgs),
           helper("run_codes", REVIEW_RUN_ID, org_id=org),
           helper("records", REVIEW_RUN_ID, org_id=org),
           helper("record_count", REVIEW_RUN_ID, org_id=org),
           helper("links", REVIEW_RUN_ID, org_id=org, ids=[]),
           helper("org_summary", REVIEW_RUN_ID, org_id=org),
           code_breakdown_statement(spec, REVIEW_RUN_ID, org, resolved.candidates),
           helper("environment", REVIEW_RUN_ID)]
    builtin = {c.id: c for c in spec.validations.checks() if c.kind == "builtin"}
    for check_id in ORDER:
        check = builtin.get(check_id) or _default_check(spec, check_id)  # every template, enabled or not
        out.append(statement(check, spec, REVIEW_RUN_ID, resolved, org_id=org, org_ids=orgs))
        if check_id == "trial_balance_unchanged":  # its snapshot form, when the run took snapshots
            tolerance, by_currency = trial_balance_params(spec, check)
            out.append(snapshot.trial_balance_statement(REVIEW_RUN_ID, orgs, tolerance, by_currency))
            out.append(snapshot.trial_balance_statement(REVIEW_RUN_ID, orgs, tolerance, by_currency, figures=True))
        elif check_id == "alias_only_metadata":
            columns = [name for name, _ in review_columns()["universal_transactions"]]
            out.append(snapshot.alias_statement(REVIEW_RUN_ID, orgs, columns))
    return out


def check_or_default(spec: Spec, check_id: str) -> CheckDef:
    """The spec's built-in check `check_id`, or its defaults when the spec does not enable it."""
    found = next((c for c in spec.validations.checks() if c.id == check_id and c.kind == "builtin"), None)
    return found if found is not None else _default_check(spec, check_id)


def trial_balance_params(spec: Spec, check: CheckDef) -> tuple[Decimal, bool]:
    """trial_balance_unchanged's (tolerance, by_currency), as every form of it binds them."""
    p = params_for(check, spec, Resolved())
    return p["tolerance"], p["by_currency"]


def _default_check(spec: Spec, check_id: str) -> CheckDef:
    rule = getattr(spec.validations.builtin, check_id)
    return CheckDef(check_id, "builtin", BUILTIN_LEVELS[check_id], rule.severity, rule.warn_threshold,
                    rule.error_threshold, rule.params())

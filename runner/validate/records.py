"""Level 1 (one verdict per source record of the run) and level 2 (one summary per organisation).

Source records: the migrated originals (reverse_repost), the alias rows (reporting_alias), the migrated entities,
the organisation's settings when the run migrated them, and the quarantined candidates of the run's journal.

A record's verdict comes from which checks flagged it. A check row names a record directly (an original, an alias,
an entity) or through a row the run wrote for it (a repost names its original in metadata.migration.original_txn_id,
a reversal in metadata.reversal_of). Each check belongs to one of four categories:

    data_completeness         one_reversal_one_repost, count_amount_reconciliation
    field_accuracy            lines_preserved, v2_code_matches_mapping, alias_only_metadata, entity_transform_matches
    relationship_integrity    no_cross_org_references
    business_rule_compliance  gl_balanced, reversal_nets_to_zero, closed_period_untouched, trial_balance_unchanged,
                              every custom check

Status: REQUIRES_REVIEW when quarantined or in a rollback conflict; else FAILED when a check of severity critical
or warning that did not pass (status failed, warning or error) flagged it; else PASSED (a flag of an info check,
or of a check still within its thresholds, is listed in the record's errors as a note). The full list goes to
records.jsonl (one JSON object per line); results.json keeps counts and samples.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from runner import contract
from runner.validate import builtin
from runner.validate.execute import Session
from runner.validate.outcome import SAMPLE_LIMIT, CheckOutcome

CATEGORIES = ("data_completeness", "field_accuracy", "relationship_integrity", "business_rule_compliance")
CHECK_CATEGORY = {
    "one_reversal_one_repost": "data_completeness", "count_amount_reconciliation": "data_completeness",
    "lines_preserved": "field_accuracy", "v2_code_matches_mapping": "field_accuracy",
    "alias_only_metadata": "field_accuracy", "entity_transform_matches": "field_accuracy",
    "no_cross_org_references": "relationship_integrity",
}
STATUSES = ("PASSED", "FAILED", "REQUIRES_REVIEW")
KIND_NAMES = {contract.ROLE_ORIGINAL: "transaction", contract.ROLE_ALIAS: "alias", contract.ROLE_ENTITY: "entity",
              "organization_config": "organization_config", "quarantined": "quarantined"}


def category(check_id: str) -> str:
    return CHECK_CATEGORY.get(check_id, "business_rule_compliance")


@dataclass
class Flag:
    check_id: str
    severity: str
    counts: bool  # True when it fails the record (severity critical/warning and the check did not pass)


@dataclass
class OrgRecords:
    organization_id: str
    counts: Counter[str] = field(default_factory=Counter)  # by status
    kinds: Counter[str] = field(default_factory=Counter)  # by kind
    kind_status: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (kind, status)
    families: dict[str, Counter[str]] = field(default_factory=dict)  # entity family -> status counts
    by_category: Counter[str] = field(default_factory=Counter)  # failed records per category
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.counts["PASSED"]

    @property
    def failed(self) -> int:
        return self.counts["FAILED"]

    @property
    def review(self) -> int:
        return self.counts["REQUIRES_REVIEW"]


def flags_by_org(outcomes: list[CheckOutcome]) -> dict[str, dict[str, list[Flag]]]:
    """organization_id -> record id -> the checks that flagged it."""
    out: dict[str, dict[str, list[Flag]]] = {}
    for outcome in outcomes:
        counts = outcome.check.severity in ("critical", "warning") and outcome.status != "passed"
        for org_id, ids in outcome.flagged().items():
            per = out.setdefault(org_id, {})
            for record_id in ids:
                per.setdefault(record_id, []).append(Flag(outcome.id, outcome.check.severity, counts))
    return out


def _uuid_like(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def attribute(session: Session, run_id: str, org_id: str, flags: dict[str, list[Flag]]) -> dict[str, list[Flag]]:
    """Flags keyed by source record: rows the run wrote (reposts, reversals) hand their flags to their original."""
    ids = [i for i in flags if _uuid_like(i)]
    links: dict[str, str] = {}
    if ids:
        stmt = builtin.helper("links", run_id, org_id=org_id, ids=ids)
        links = {str(r[0]): str(r[1]) for r in session.rows(stmt) if r[1] is not None}
    out: dict[str, list[Flag]] = {}
    for record_id, record_flags in flags.items():
        out.setdefault(record_id, []).extend(record_flags)
        source = links.get(record_id)
        if source is not None and source != record_id:
            out.setdefault(source, []).extend(record_flags)
    return out


def verdict(kind: str, flags: list[Flag], review: bool) -> tuple[str, dict[str, str]]:
    checks = dict.fromkeys(CATEGORIES, "PASSED")
    for f in flags:
        if f.counts:
            checks[category(f.check_id)] = "FAILED"
    if review or kind == "quarantined":
        return "REQUIRES_REVIEW", checks
    return ("FAILED" if any(f.counts for f in flags) else "PASSED"), checks


def level1(session: Session, run_id: str, org_id: str, flags: dict[str, list[Flag]], conflicts: set[str],
           out: IO[str] | None) -> OrgRecords:
    """Stream the organisation's source records, judge each, write records.jsonl lines to `out`."""
    result = OrgRecords(org_id)
    by_source = attribute(session, run_id, org_id, flags)
    for kind_raw, record_id, label, family in session.stream(builtin.helper("records", run_id, org_id=org_id)):
        kind = KIND_NAMES.get(str(kind_raw), str(kind_raw))
        record_flags = by_source.get(str(record_id), [])
        status, checks = verdict(kind, record_flags, str(record_id) in conflicts)
        result.counts[status] += 1
        result.kinds[kind] += 1
        result.kind_status[(kind, status)] += 1
        if kind == "entity":
            result.families.setdefault(str(family or "entity"), Counter())[status] += 1
        if kind == "organization_config":
            result.families.setdefault("organization_config", Counter())[status] += 1
        for cat, outcome in checks.items():
            if outcome == "FAILED":
                result.by_category[cat] += 1
        entry = {"organization_id": org_id, "record_id": str(record_id), "kind": kind, "label": label,
                 "status": status, "checks": checks,
                 "errors": [{"check": f.check_id, "severity": f.severity, "fails_record": f.counts}
                            for f in record_flags]}
        if kind == "quarantined":
            entry["reason"] = label
        if status != "PASSED" and len(result.samples) < SAMPLE_LIMIT:
            result.samples.append(entry)
        if out is not None:
            out.write(json.dumps(entry, separators=(",", ":")) + "\n")
    return result


def summary_rows(session: Session, run_id: str, org_id: str) -> dict[str, Any]:
    """Counts and amounts of what the run left in the organisation (validate/org_summary); amounts are kept per
    currency ({currency: decimal string}), never summed across currencies."""
    counts: dict[str, int] = {}
    amounts: dict[str, dict[str, Decimal]] = {}
    families: dict[str, int] = {}
    journal_at: str | None = None
    journals = 0
    journal_status: str | None = None
    for kind, family, n, total, currency in session.rows(builtin.helper("org_summary", run_id, org_id=org_id)):
        if kind == "journal":
            journal_at, journals = family, int(n)
        elif kind == "journal_status":
            journal_status = None if family is None else str(family)
        elif kind == contract.ROLE_ENTITY:
            families[str(family)] = families.get(str(family), 0) + int(n)
        elif kind is not None:
            counts[str(kind)] = counts.get(str(kind), 0) + int(n)
            per = amounts.setdefault(str(kind), {})
            per[str(currency or "")] = per.get(str(currency or ""), Decimal(0)) + Decimal(total or 0)

    def count(kind: str) -> int:
        return counts.get(kind, 0)

    def amount(kind: str) -> dict[str, str]:
        return {cur: format(value, "f") for cur, value in sorted(amounts.get(kind, {}).items())}

    return {
        "originals": count(contract.ROLE_ORIGINAL), "originals_amount": amount(contract.ROLE_ORIGINAL),
        "reposts": count(contract.ROLE_REPOST), "reposts_amount": amount(contract.ROLE_REPOST),
        "reversals": count("reversal"), "reversals_amount": amount("reversal"),
        "originals_lines_amount": amount("original_lines"),
        "aliases": count(contract.ROLE_ALIAS), "aliases_amount": amount(contract.ROLE_ALIAS),
        "entities": families, "journals": journals,
        "journal_last_write": journal_at, "journal_status": journal_status,
    }


def write_records(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")

"""Level 2, per v1 code: candidates, reversed + reposted, aliased, quarantined, still eligible and skipped by
reason, with amounts per currency (never summed across currencies), from validate/code_breakdown.

The skip reasons are the eligibility CASE `plan` uses, applied to the headers the run did not touch, so the
skipped counts here equal what `plan` printed before the run (barring v1 traffic in between).
`candidates` = reverse_reposted + aliased + quarantined + not_migrated: what `plan` counted as candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from runner.compile.params import Mappings
from runner.spec.model import Spec
from runner.validate import builtin
from runner.validate.execute import Session

REPOSTED, ALIASED, CANDIDATE = builtin.OUTCOME_REPOSTED, builtin.OUTCOME_ALIASED, builtin.OUTCOME_CANDIDATE
QUARANTINED = "quarantined"
UNMAPPED = "unmapped"
# outcome -> the field of a code's counts it adds to (everything else is a skip reason)
_COUNTED = {REPOSTED: "reverse_reposted", ALIASED: "aliased", QUARANTINED: "quarantined", CANDIDATE: "not_migrated"}


@dataclass
class CodeCounts:
    v1_code: str
    tier: str | None
    v2_code: str | None
    reverse_reposted: int = 0
    aliased: int = 0
    quarantined: int = 0
    not_migrated: int = 0
    unmapped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    # outcome group (migrated | quarantined | not_migrated | skipped | unmapped) -> currency -> amount
    amounts: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    @property
    def candidates(self) -> int:
        return self.reverse_reposted + self.aliased + self.quarantined + self.not_migrated

    def add(self, outcome: str, currency: str, headers: int, amount: Decimal) -> None:
        if outcome in _COUNTED:
            name = _COUNTED[outcome]
            setattr(self, name, getattr(self, name) + headers)
            group = "migrated" if outcome in (REPOSTED, ALIASED) else name
        elif outcome == UNMAPPED:
            self.unmapped += headers
            group = UNMAPPED
        else:
            self.skipped[outcome] = self.skipped.get(outcome, 0) + headers
            group = "skipped"
        per = self.amounts.setdefault(group, {})
        per[currency] = per.get(currency, Decimal(0)) + amount

    def as_dict(self) -> dict[str, Any]:
        return {"v1_code": self.v1_code, "tier": self.tier, "v2_code": self.v2_code, "candidates": self.candidates,
                "reverse_reposted": self.reverse_reposted, "aliased": self.aliased,
                "quarantined": self.quarantined, "not_migrated": self.not_migrated, "unmapped": self.unmapped,
                "skipped": dict(sorted(self.skipped.items())), "skipped_total": sum(self.skipped.values()),
                "amounts": {group: {cur: format(v, "f") for cur, v in sorted(per.items())}
                            for group, per in sorted(self.amounts.items())}}


def by_code(session: Session, spec: Spec, run_id: str, org_id: str, mappings: Mappings) -> list[dict[str, Any]]:
    """One entry per v1 code of the organisation, mapped codes first (by code), then unmapped ones. Rows whose
    code no mapping covers count as `unmapped` only, as `plan` does (whatever their eligibility)."""
    codes: dict[str, CodeCounts] = {}
    for v1_code, tier, v2_code, outcome, currency, headers, amount in session.rows(
            builtin.code_breakdown_statement(spec, run_id, org_id, mappings)):
        if tier is None and outcome != UNMAPPED:
            continue  # migration output or a skipped row of an unmapped code: `plan` leaves these out too
        entry = codes.get(v1_code)
        if entry is None:
            entry = codes[v1_code] = CodeCounts(str(v1_code), tier, v2_code)
        entry.add(str(outcome), str(currency or ""), int(headers), Decimal(amount or 0))
    ordered = sorted(codes.values(), key=lambda c: (c.tier is None, c.v1_code))
    return [c.as_dict() for c in ordered]


def totals(codes: list[dict[str, Any]]) -> dict[str, Any]:
    """The organisation's sums of `by_code`: counts, skipped by reason, amounts per group and currency."""
    out: dict[str, Any] = {k: 0 for k in ("candidates", "reverse_reposted", "aliased", "quarantined",
                                          "not_migrated", "unmapped", "skipped_total")}
    skipped: dict[str, int] = {}
    amounts: dict[str, dict[str, Decimal]] = {}
    for code in codes:
        for k in out:
            out[k] += code[k]
        for reason, n in code["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
        for group, per in code["amounts"].items():
            for cur, value in per.items():
                g = amounts.setdefault(group, {})
                g[cur] = g.get(cur, Decimal(0)) + Decimal(value)
    out["skipped"] = dict(sorted(skipped.items()))
    out["amounts"] = {g: {c: format(v, "f") for c, v in sorted(per.items())} for g, per in sorted(amounts.items())}
    return out

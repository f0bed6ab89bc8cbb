"""A spec as template parameters: the one definition of which rows a spec selects and how it rewrites them.

Plan (tier 1), the engine (tiers 2 and 3, each chunk re-checking eligibility under lock) and the validation all
build their statements from these values and the shared macros in runner/sql/_macros/, so what `plan` counts is
what `run` migrates and what `validate` expects (tests/integration/test_compile_eligibility.py proves it on data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from runner.spec import codes
from runner.spec.model import Spec

# metadata.reversal_reason of the -REV twins a run creates: it names the run, so a re-scan never takes a twin of
# its own run for a candidate (the run guard below).
REVERSAL_REASON = "hera-migrate {run_id}: Finance DNA v1 -> v2 reverse and repost"


def _day_start(day: date) -> str:
    return f"{day.isoformat()}T00:00:00+00:00"


def scope_params(spec: Spec) -> dict[str, Any]:
    """The eligibility window of `_macros/eligibility.sql.j2`: skip switches, the date range as a half-open
    [from, until) interval of UTC instants, periods and statuses in lower case."""
    scope = spec.scope
    date_from, date_to = scope.date_range.from_, scope.date_range.to
    return {
        "skip": scope.skip,
        "date_from": None if date_from is None else _day_start(date_from),
        "date_until": None if date_to is None else _day_start(date_to + timedelta(days=1)),
        "include_without_period": scope.transactions_without_period == "include",
        "period_statuses": [s.lower() for s in scope.fiscal_period_statuses],
        "statuses": [s.lower() for s in scope.transaction_statuses],
    }


@dataclass(frozen=True)
class Mappings:
    """The spec's mappings resolved against one set of v1 codes (HERA's normal form), as bound arrays: exact,
    wildcard and regex selectors keep the Python semantics of Spec.resolve."""

    v1_codes: list[str] = field(default_factory=list)
    v2_codes: list[str] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)
    mapping_indexes: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    @classmethod
    def resolve(cls, spec: Spec, v1_codes: list[str]) -> Mappings:
        out = cls()
        for code in sorted(set(v1_codes)):
            res = spec.resolve(code)
            if res is not None and res.source not in out.v1_codes:  # `.v1` and `.V1` are one code
                out.v1_codes.append(res.source)
                out.v2_codes.append(res.target)
                out.tiers.append(res.mapping.tier)
                out.mapping_indexes.append(res.mapping_index)
                out.labels.append(res.mapping.label)
        return out

    @classmethod
    def exact(cls, spec: Spec) -> Mappings:
        """Without a database: only the exact (`from`) mappings, for `compile --out`."""
        return cls.resolve(spec, [m.from_ for m in spec.mappings if m.from_ is not None])

    def params(self) -> dict[str, Any]:
        """For the run templates (mapping_cte): mappings by index."""
        return {"v1_codes": self.v1_codes, "v2_codes": self.v2_codes, "tiers": self.tiers,
                "mapping_indexes": self.mapping_indexes}


def override_params(spec: Spec) -> dict[str, list[Any]]:
    """Every mapping's line overrides, in order, as parallel arrays; `match` globs become anchored regexes that
    PostgreSQL applies to the line code in HERA's normal form (exactly what Mapping.line_code does in Python)."""
    out: dict[str, list[Any]] = {"ov_mapping": [], "ov_ord": [], "ov_side": [], "ov_type": [], "ov_pattern": [],
                                 "ov_to": []}
    for index, mapping in enumerate(spec.mappings):
        for ord_, override in enumerate(mapping.lines):
            pattern = None
            if override.match is not None:
                glob, _ = codes.parse_glob(override.match)
                # An invalid glob matches nothing in Python; a pattern no code can match does the same here.
                pattern = f"^(?:{glob.regex().pattern})$" if glob is not None else "^$"
            out["ov_mapping"].append(index)
            out["ov_ord"].append(ord_)
            out["ov_side"].append(override.side)
            out["ov_type"].append(override.line_type)
            out["ov_pattern"].append(pattern)
            out["ov_to"].append(codes.normalize(override.to))
    return out


def entity_params(spec: Spec) -> dict[str, list[str]]:
    """The entity types of the posting-rule and fiscal-period families, in lower case (HERA mixes cases)."""
    entities = spec.entities
    return {
        "posting_rule_types": [t.lower() for t in entities.posting_rules.entity_types] if entities.posting_rules
        else [],
        "fiscal_period_types": [t.lower() for t in entities.fiscal_periods.entity_types] if entities.fiscal_periods
        else [],
    }


def reversal_reason(run_id: str) -> str:
    return REVERSAL_REASON.format(run_id=run_id)


def run_guard(run_id: str) -> dict[str, str]:
    """Template values that keep a run off its own rows (see _macros/run.sql.j2 eligible_where)."""
    return {"run_id_key": "run_id", "run_id": run_id, "reason_key": "reversal_reason",
            "twin_pattern": REVERSAL_REASON.format(run_id="%")}


def spec_ref(spec: Spec) -> dict[str, Any]:
    """What metadata.migration.spec records on every row a run writes."""
    return {"name": spec.name, "sha256": spec.sha256}


def spec_info(spec: Spec) -> dict[str, Any]:
    return {"name": spec.name, "path": None if spec.path is None else str(spec.path), "sha256": spec.sha256}


def repost_code_suffix(spec: Spec) -> str:
    return f"-{spec.dna.target.upper()}"


def repost_code(spec: Spec, run_id: str, original_id: str, code: str | None, taken: bool) -> str:
    """The repost's transaction_code: `<code>-V2`; when that is already used in the org, a deterministic variant
    with a hash of (run, original); `MIG-<run>-<original id>` for an original without a code."""
    if code is None:
        return f"MIG-{run_id}-{original_id}"
    primary = f"{code}{repost_code_suffix(spec)}"
    if not taken:
        return primary
    digest = hashlib.sha256(f"{run_id}:{original_id}".encode()).hexdigest()[:10]
    return f"{primary}-{digest}"

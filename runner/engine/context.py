"""Everything a chunk statement needs besides its candidate ids: the run's constants, the spec's scope as template
parameters (the same ones `plan` uses), the mappings resolved against an organisation's codes, and the line
overrides as bound arrays.

All SQL goes through `runner.compile.render`; constants the templates need (JSON keys, reasons, patterns) are
passed from here as values and bound, so the rendered SQL carries no data literals.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from runner import contract
from runner.compile import Statement, render
from runner.spec import codes
from runner.spec.model import Spec

RUN_ID_PATTERN = re.compile(r"\A(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,64}\Z")  # not "." or "..": it names reports/<id>/
QUARANTINE_PREFIX = "quarantine:"
ADVISORY_LOCK_CLASS = 0x4845_5241  # "HERA": the namespace of the per-organisation advisory lock

# Per migration transaction (DESIGN §7: no parallel plans where gen_random_uuid() runs).
# The lock timeout stays well below PostgreSQL's deadlock_timeout (1 s): hera_txn_reverse_v1 inserts the -REV twin
# before it locks the original, a chunk locks its originals before it inserts their twins, so a v1 reverse that
# arrives mid-chunk can close a cycle. Whoever waited first is aborted by the deadlock check, and that is the v1
# request; a migration that gives up its wait sooner is aborted instead (55P03, transient: the chunk is retried)
# and the v1 request goes through (tests/integration/test_faults_contention.py). Chunks never wait for candidate
# rows (SKIP LOCKED), so the short timeout costs nothing otherwise.
LOCK_TIMEOUT = "200ms"
STATEMENT_TIMEOUT = "60s"

# Constants the templates bind (keys of JSON written into HERA, patterns, reasons).
SQL_CONSTANTS: dict[str, Any] = {
    "gl_pattern": r"\.GL\.",  # HERA's GL-line convention (60_gl.sql): case-sensitive '.GL.'
    "side_key": "side",
    "debit": "DR",
    "credit": "CR",
    "posted": "posted",
    "four_part_pattern": r"^HERA\.[^.]+\.[^.]+\.[^.]+\.V[0-9]+$",
    "reporting_key": contract.META_REPORTING_ALIAS,
    "migration_key": contract.META_MIGRATION,
    "run_id_key": "run_id",
    "role_key": "role",
    "attempts_key": "attempts",
    "tier_key": "tier",
    "reason_key": "reason",
    "reversal_of_key": "reversal_of",
    "reversal_reason_key": "reversal_reason",
    "quarantine_prefix": QUARANTINE_PREFIX,
    "journal_type": contract.JOURNAL_ENTITY_TYPE,
    "journal_smart_code": contract.JOURNAL_SMART_CODE,
    "checkpoint_smart_code": contract.CHECKPOINT_SMART_CODE,
    "quarantine_smart_code": contract.QUARANTINE_SMART_CODE,
    "json_type": "json",
    "actor": str(contract.MIGRATION_ACTOR_ID),
    "role_repost": contract.ROLE_REPOST,
    "role_original": contract.ROLE_ORIGINAL,
    "role_alias": contract.ROLE_ALIAS,
    "tier_repost": "reverse_repost",
    "tier_alias": "reporting_alias",
    "preimage_columns": contract.ORIGINAL_PREIMAGE_COLUMNS,
}

# Why a candidate was quarantined before anything was attempted (checked in run/lock_*.sql.j2).
REASONS = {
    "reason_cross_org": "cross_org_lines",  # lines of the header belong to another organisation
    "reason_null_amounts": "null_line_amounts",  # a NULL quantity/amount the repost could not reproduce
    "reason_unbalanced": "unbalanced",  # the original's GL lines do not balance (DR <> CR)
    "reason_fx": "fx_incomplete",  # posted, foreign currency, FX fields missing: rollback could not re-post it
    "reason_case": "noncanonical_smart_code",  # neither .v<n> canonical nor all upper case: not restorable
    # HERA's reverse cannot even update such a row (its UPDATE keeps the NULL, the actor trigger refuses it), nor
    # could a rollback restore a NULL updated_by
    "reason_actor": "null_updated_by",
    "reason_missing": "repost_missing",
    "reason_code": "repost_code_mismatch",
    "reason_lines": "repost_lines_differ",
    "reason_repost_unbalanced": "repost_unbalanced",
    "reason_reversal": "reversal_does_not_net",
}


def validate_run_id(run_id: str) -> bool:
    return RUN_ID_PATTERN.match(run_id) is not None


def advisory_key(org_id: str) -> int:
    """A stable signed 32-bit key per organisation (with ADVISORY_LOCK_CLASS: the two-int advisory lock)."""
    return int.from_bytes(hashlib.sha256(org_id.encode()).digest()[:4], "big", signed=True)


def scope_params(spec: Spec) -> dict[str, Any]:
    """The eligibility parameters of the shared macro, computed exactly as runner.plan.statements does."""
    scope = spec.scope
    date_from, date_to = scope.date_range.from_, scope.date_range.to
    return {
        "skip": scope.skip,
        "date_from": None if date_from is None else f"{date_from.isoformat()}T00:00:00+00:00",
        "date_until": None if date_to is None else f"{(date_to + timedelta(days=1)).isoformat()}T00:00:00+00:00",
        "include_without_period": scope.transactions_without_period == "include",
        "period_statuses": [s.lower() for s in scope.fiscal_period_statuses],
        "statuses": [s.lower() for s in scope.transaction_statuses],
    }


@dataclass(frozen=True)
class Mappings:
    """The spec's mappings resolved against one organisation's codes, as bound arrays."""

    v1_codes: list[str] = field(default_factory=list)
    v2_codes: list[str] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)
    mapping_indexes: list[int] = field(default_factory=list)

    @classmethod
    def resolve(cls, spec: Spec, org_codes: list[str]) -> Mappings:
        out = cls()
        for code in sorted(set(org_codes)):
            res = spec.resolve(code)
            if res is not None:
                out.v1_codes.append(res.source)
                out.v2_codes.append(res.target)
                out.tiers.append(res.mapping.tier)
                out.mapping_indexes.append(res.mapping_index)
        return out

    def params(self) -> dict[str, Any]:
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


def spec_ref(spec: Spec) -> dict[str, Any]:
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


REVERSAL_REASON = "hera-migrate {run_id}: Finance DNA v1 -> v2 reverse and repost"


def reversal_reason(run_id: str) -> str:
    """metadata.reversal_reason of the -REV twins a run creates (names the run)."""
    return REVERSAL_REASON.format(run_id=run_id)


def run_guard(run_id: str) -> dict[str, str]:
    """Template values that keep a run off its own rows (see _macros/run.sql.j2 eligible_where)."""
    return {"run_id_key": "run_id", "run_id": run_id, "reason_key": "reversal_reason",
            "twin_pattern": REVERSAL_REASON.format(run_id="%")}


def jdump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class Sql:
    """Renders engine templates (with the constants) and executes them on a connection."""

    def __init__(self, **common: Any) -> None:
        self.common = {**SQL_CONSTANTS, **REASONS, **common}

    def statement(self, name: str, **context: Any) -> Statement:
        return render(name, **{**self.common, **context})

    def execute(self, conn: psycopg.Connection[Any], name: str, **context: Any) -> psycopg.Cursor[Any]:
        stmt = self.statement(name, **context)
        return conn.execute(stmt.text, stmt.params)

    def rows(self, conn: psycopg.Connection[Any], name: str, **context: Any) -> list[tuple[Any, ...]]:
        return self.execute(conn, name, **context).fetchall()

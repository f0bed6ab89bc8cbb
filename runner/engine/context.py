"""The engine's own constants and its statement helper. What the spec says (scope, mappings, overrides, the run
guard) comes from runner.compile.params, the one place that turns a spec into SQL parameters.

All SQL goes through `runner.compile.render`; constants the templates need (JSON keys, reasons, patterns) are
passed from here as values and bound, so the rendered SQL carries no data literals.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import psycopg

from runner import contract
from runner.compile import Statement, render

RUN_ID_PATTERN = re.compile(r"\A(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,64}\Z")  # not "." or "..": it names reports/<id>/
QUARANTINE_PREFIX = "quarantine:"
CHECKPOINT_PREFIX = "checkpoint:"
ADVISORY_LOCK_CLASS = 0x4845_5241  # "HERA": the namespace of the per-organisation advisory lock
CHECKPOINT_LOCK_CLASS = 0x4845_5243  # "HERC": the per-organisation checkpoint gate (runner/engine/checkpoints.py)
WORKER_LOCK_CLASS = 0x4845_5257  # "HERW": each worker session's liveness lock (runner/engine/session.py)
JOURNAL_LOCK_CLASS = 0x4845_524A  # "HERJ": once-per-organisation steps of a run shared by runner processes
WORKER_PREFIX = "worker:"  # journal field of one worker: its counters, host, pid, rate (runner/engine/journal.py)

# Per migration transaction (docs/contract.md §7: no parallel plans where gen_random_uuid() runs).
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
    "checkpoint_prefix": CHECKPOINT_PREFIX,
    "worker_prefix": WORKER_PREFIX,
    "seq_key": "seq",
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

"""The migration engine: `run_migration` (tiers 2 and 3 plus the entity hook), `run_status` (from the journal),
`rollback_run` (exact restore) and `review_statements` (every engine statement, for `compile --out`).

How it works, in one place (details in each module):
- exactly once: a chunk is one database transaction that re-selects its candidates by the same eligibility
  predicate as `plan` (runner/sql/_macros/eligibility.sql.j2) under FOR UPDATE SKIP LOCKED, writes the reversal,
  the repost, the marks on the originals and the journal checkpoint, and commits. A crash anywhere rolls the
  chunk back; a marked original is no longer eligible, so a retry or `resume` never migrates it twice.
- smart-code case: HERA upper-cases a header code on an UPDATE that does not list smart_code and canonicalises
  it (`.v<n>`) on one that does; every UPDATE here picks its form from the case it must keep (repost.py,
  alias.py, rollback.py).
- sessions: `workers` database sessions, organisations in parallel and one large organisation on several; the
  same run in several runner processes works together (runner/engine/session.py: claims and liveness).
- quarantine: candidates that cannot be migrated faithfully are recognised before anything is written; an SQL
  error or a failed post-write check is isolated by savepoint bisection; both are recorded in the journal with
  their reason and the rest of the chunk migrates.
"""

from __future__ import annotations

from runner.engine.hooks import ChunkInfo, EngineHooks, NoThrottle, NullProgress, ProgressSink, Throttle
from runner.engine.migrate import RunFailed, new_run_id, run_migration
from runner.engine.outcome import (
    Conflict,
    OrgRollbackResult,
    OrgRunResult,
    OrgStatus,
    Quarantined,
    RollbackResult,
    RunResult,
    RunStatus,
)
from runner.engine.review import review_statements
from runner.engine.rollback import RollbackFailed, rollback_run
from runner.engine.status import run_status

__all__ = [
    "ChunkInfo",
    "Conflict",
    "EngineHooks",
    "NoThrottle",
    "NullProgress",
    "OrgRollbackResult",
    "OrgRunResult",
    "OrgStatus",
    "ProgressSink",
    "Quarantined",
    "RollbackFailed",
    "RollbackResult",
    "RunFailed",
    "RunResult",
    "RunStatus",
    "Throttle",
    "new_run_id",
    "review_statements",
    "rollback_run",
    "run_migration",
    "run_status",
]

"""The engine's pluggable edges: progress reporting, throttling, and test-only fault points.

- `ProgressSink`: told when an organisation starts, advances and finishes (the CLI passes the rich bars of
  runner.engine.progress; the default does nothing). Called from worker threads: implementations must be
  thread-safe.
- `Throttle`: consulted between chunks. `wait()` blocks while the load monitor wants the migration paused;
  `batch_size(default)` may shrink chunks. The default never pauses and keeps the spec's size. One throttle serves
  every worker thread of a run and may pace them together (runner.load.throttle: a number of chunks in flight
  across all workers, a rest after each chunk): a worker's wait() also marks the end of its previous chunk, so it
  may block while other workers' chunks run. `ReleasingThrottle.release()`, when a throttle has it, is how a worker
  says it starts no further chunk (it left the chunk loop), so its place is free at once.
- `EngineHooks`: fault points in the chunk loop for tests (crash before commit, act between chunks). Production
  code passes none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import psycopg


class ProgressSink(Protocol):
    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        """`total` is the number of candidates (all tiers) the organisation has at its start."""

    def org_advanced(self, org_id: str, done: int) -> None:
        """`done` more candidates were handled (migrated, aliased or quarantined; or rolled back)."""

    def chunk_done(self, org_id: str, tier: str, handled: int, quarantined: int, seconds: float) -> None:
        """A chunk of `tier` (reverse_repost, reporting_alias, rollback) committed: `handled` candidates (of
        which `quarantined` were quarantined) in `seconds`, on the calling worker thread (its name identifies
        the worker). Follows the chunk's org_advanced."""

    def org_finished(self, org_id: str, status: str) -> None:
        """The organisation is finished with `status` (completed, incomplete, failed, rolled_back, ...)."""


class NullProgress:
    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        return None

    def org_advanced(self, org_id: str, done: int) -> None:
        return None

    def chunk_done(self, org_id: str, tier: str, handled: int, quarantined: int, seconds: float) -> None:
        return None

    def org_finished(self, org_id: str, status: str) -> None:
        return None


class Throttle(Protocol):
    def wait(self) -> None:
        """Block while the migration should pause (called by each worker before each of its chunks, outside any
        transaction; the previous chunk of the calling worker is over)."""

    def batch_size(self, default: int) -> int:
        """The chunk size to use now; `default` is the run's configured size."""


@runtime_checkable
class ReleasingThrottle(Protocol):
    def release(self) -> None:
        """The calling worker starts no chunk now (it left the chunk loop: its share is done, or it stops)."""


class NoThrottle:
    def wait(self) -> None:
        return None

    def batch_size(self, default: int) -> int:
        return default

    def release(self) -> None:
        return None


@dataclass(frozen=True)
class ChunkInfo:
    """What a fault point is told about the chunk in progress."""

    organization_id: str
    tier: str  # reverse_repost | reporting_alias | rollback
    chunk: int  # 1-based number of the chunk within this org and tier, in this invocation
    ids: tuple[str, ...]  # candidate ids handled (migrated/aliased/restored) by the chunk


class EngineHooks:
    """Test-only fault points. Subclass and override; the defaults do nothing.

    `before_commit` runs inside the chunk's database transaction after every write of the chunk: raising there
    rolls the chunk back exactly like a crash would. `after_commit` runs after the chunk committed, outside any
    transaction (e.g. to release a lock held by a concurrent writer).
    """

    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        return None

    def after_commit(self, info: ChunkInfo) -> None:
        return None

"""One organisation of a run, on its own connection: claim it, journal it, migrate tier 2 then tier 3 in chunks,
call the entity hook, finish the journal.

Chunk loop per tier: the eligible ids are scanned once (no locks), then handled a chunk at a time, each chunk one
database transaction that re-selects its ids by the eligibility predicate under FOR UPDATE SKIP LOCKED. Chunk size:
an explicit batch size is used as is; the spec's batch size is a ceiling, and the next chunk is sized from the
measured time per candidate so that a chunk holds its row locks for about CHUNK_SECONDS (< 1 s). The throttle
may lower it further. When
the list is done the tier is scanned again: rows another session held (skipped) or that became eligible meanwhile
are handled in the next pass. A pass that handles nothing (everything left is locked by others) is retried with
back-off `retries.max` times, then the rest is reported as `remaining` (status incomplete; resume continues).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from runner.compile.params import Mappings
from runner.db.connect import connect
from runner.engine import alias, checkpoints, entities_hook, faults, journal, repost
from runner.engine.chunk import ChunkCtx, ChunkOutcome
from runner.engine.context import ADVISORY_LOCK_CLASS, LOCK_TIMEOUT, STATEMENT_TIMEOUT, Sql, advisory_key
from runner.engine.hooks import ChunkInfo, EngineHooks, ProgressSink, Throttle
from runner.engine.outcome import TIERS, OrgRunResult
from runner.engine.retry import RetriesExhausted, backoff_seconds, is_transient, pause
from runner.engine.window import Gate
from runner.errors import DatabaseError
from runner.spec.model import Spec

ChunkFn = Callable[..., ChunkOutcome]
# Lock-time budget of one chunk transaction (its candidates stay locked until commit). With `adaptive`, the chunk
# size follows the measured time per candidate so that a chunk takes about this long, never more than the batch.
CHUNK_SECONDS = 0.6
FIRST_ADAPTIVE_CHUNK = 100
MIN_CHUNK = 10
MAX_PASSES = 10  # scans of one tier per invocation (the first pass and re-scans for skipped or new candidates)
CHUNK_FUNCTIONS: dict[str, ChunkFn] = {"reverse_repost": repost.chunk, "reporting_alias": alias.chunk}


class Interrupted(Exception):
    """The run was asked to stop between chunks."""


@dataclass
class RunSettings:
    run_id: str
    spec: Spec
    batch_size: int
    resume: bool
    retry_quarantined: bool
    spec_info: dict[str, Any]
    options: dict[str, Any]
    journals: dict[str, journal.Journal] = field(default_factory=dict)  # existing, by organisation id
    adaptive: bool = False  # batch_size is a ceiling: chunks shrink to keep each transaction under CHUNK_SECONDS


class OrgRunner:
    def __init__(self, dsn: str, settings: RunSettings, org_id: str, org_code: str, *, progress: ProgressSink,
                 throttle: Throttle, gate: Gate, hooks: EngineHooks, stop: threading.Event) -> None:
        self.dsn = dsn
        self.s = settings
        self.spec = settings.spec
        self.org_id = org_id
        self.progress = progress
        self.throttle = throttle
        self.gate = gate
        self.hooks = hooks
        self.stop = stop
        self.sql = Sql(org_id=org_id)
        self.result = OrgRunResult(organization_id=org_id, organization_code=org_code)
        self.session = dict.fromkeys(("migrated", "aliased", "quarantined", "chunks", "retries"), 0)
        self.conn: psycopg.Connection[Any] | None = None
        self.ctx: ChunkCtx | None = None
        self.journal_id = ""
        self.exception: BaseException | None = None
        self.tier_chunks: dict[str, int] = {}
        self.chunk_times: dict[str, list[float]] = {}
        self.last_chunk: dict[str, tuple[int, float]] = {}

    # --- connection and claim --------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.dsn)
        with conn.transaction():
            row = self.sql.execute(conn, "run/org_lock", lock_class=ADVISORY_LOCK_CLASS,
                                   lock_key=advisory_key(self.org_id)).fetchone()
        if not row or not row[0]:
            conn.close()
            raise OrgBusy(self.org_id)
        return conn

    def _db(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                self.conn.close()
            self.conn = self._connect()
        return self.conn

    def close(self) -> None:
        if self.conn is None or self.conn.closed:
            return
        try:
            if not self.conn.broken:
                self.conn.rollback()
                with self.conn.transaction():
                    self.sql.execute(self.conn, "run/org_unlock", lock_class=ADVISORY_LOCK_CLASS,
                                     lock_key=advisory_key(self.org_id))
        except psycopg.Error:
            pass  # closing the session releases the claim anyway
        finally:
            self.conn.close()

    # --- the organisation ------------------------------------------------------------------------------------

    def run(self) -> OrgRunResult:
        t0 = time.monotonic()
        res = self.result
        try:
            conn = self._db()
            t = time.monotonic()
            with conn.transaction():
                codes = [r[0] for r in self.sql.rows(conn, "run/codes")]
            mappings = Mappings.resolve(self.spec, codes)
            existing = self.s.journals.get(self.org_id)
            self.ctx = ChunkCtx(spec=self.spec, run_id=self.s.run_id, org_id=self.org_id,
                                journal_id=existing.id if existing else "00000000-0000-0000-0000-000000000000",
                                mappings=mappings)
            first = not self.s.retry_quarantined
            with conn.transaction():
                todo = {tier: self.ctx.candidates(conn, tier, exclude_quarantined=first) for tier in TIERS}
            res.seconds["scan"] = time.monotonic() - t
            fields = self._open_journal(conn, existing, todo)
            hook = entities_hook.migrate_function()
            if existing and not any(todo.values()) and fields.get("status") == "completed" \
                    and (hook is None or "entities" in fields):
                res.status = "completed"  # finished before: nothing to do, write nothing
            else:
                self.progress.org_started(self.org_id, res.organization_code, sum(len(v) for v in todo.values()))
                for tier in TIERS:
                    t = time.monotonic()
                    self._tier(tier, todo[tier])
                    self._auto_checkpoint(tier)
                    res.seconds[tier] = time.monotonic() - t
                if hook is not None and "entities" not in fields:
                    t = time.monotonic()
                    self._entities(hook)
                    res.seconds["entities"] = time.monotonic() - t
                res.status = "incomplete" if any(res.remaining.values()) else "completed"
                self._finish(res.status)
        except OrgBusy as exc:
            res.status, res.error = "busy", str(exc)
        except Exception as exc:
            res.status, res.error = "failed", f"{type(exc).__name__}: {str(exc).strip()}"
            self._mark_failed()
            self.exception = exc
        finally:
            res.seconds["total"] = time.monotonic() - t0
            res.session = dict(self.session)
            self._load_totals()
            self.progress.org_finished(self.org_id, res.status)
            self.close()
        return res

    def _open_journal(self, conn: psycopg.Connection[Any], existing: journal.Journal | None,
                      todo: dict[str, list[str]]) -> dict[str, Any]:
        assert self.ctx is not None
        if existing is None:
            with conn.transaction():
                checkpoints.gate(conn, self.sql, self.org_id)
                self.journal_id = journal.create(
                    conn, self.sql, org_id=self.org_id, run_id=self.s.run_id, spec=self.s.spec_info,
                    options=self.s.options, candidates={t: len(ids) for t, ids in todo.items()})
                checkpoints.record_auto(conn, self.sql, self.org_id, self.journal_id, "start")
            self.ctx = ChunkCtx(spec=self.spec, run_id=self.s.run_id, org_id=self.org_id,
                                journal_id=self.journal_id, mappings=self.ctx.mappings)
            return {}
        self.journal_id = existing.id
        with conn.transaction():
            fields = journal.read_fields(conn, self.sql, [self.org_id], [existing.id]).get(existing.id, {})
            if any(todo.values()) or fields.get("status") != "completed":
                journal.set_meta(conn, self.sql, self.org_id, existing.id, status="running",
                                 resumed_at=journal.now().isoformat())
        return fields

    def _tier(self, tier: str, ids: list[str]) -> None:
        assert self.ctx is not None
        retries = self.spec.execution.retries
        exclude_quarantined = not self.s.retry_quarantined
        pending, stalled, first_pass, passes = ids, 0, True, 0
        while True:
            if not first_pass:
                conn = self._db()
                with conn.transaction():
                    pending = self.ctx.candidates(conn, tier, exclude_quarantined=exclude_quarantined)
            passes += 1
            if not pending or passes > MAX_PASSES:  # v1 traffic that keeps creating candidates: resume later
                self.result.remaining[tier] = len(pending)
                return
            handled, pos = 0, 0
            while pos < len(pending):
                self.gate.wait()
                self.throttle.wait()
                if self.stop.is_set():
                    raise Interrupted("stopped between chunks")
                size = max(1, min(self.throttle.batch_size(self.s.batch_size), self._adaptive_size(tier)))
                part = pending[pos:pos + size]
                pos += size
                faults.point("between_chunks")
                handled += self._chunk(tier, part, exclude_quarantined).handled
            # After the first pass a quarantined candidate is not retried again in this invocation.
            exclude_quarantined, first_pass = True, False
            if handled:
                stalled = 0
                continue
            stalled += 1
            if stalled > retries.max:
                self.result.remaining[tier] = len(pending)
                return
            pause(backoff_seconds(retries, stalled), self.stop)

    def _chunk(self, tier: str, ids: list[str], exclude_quarantined: bool) -> ChunkOutcome:
        assert self.ctx is not None
        fn = CHUNK_FUNCTIONS[tier]
        self.tier_chunks[tier] = self.tier_chunks.get(tier, 0) + 1
        info = ChunkInfo(self.org_id, tier, self.tier_chunks[tier], tuple(ids))

        def work(conn: psycopg.Connection[Any]) -> ChunkOutcome:
            assert self.ctx is not None
            outcome = fn(conn, self.ctx, ids, exclude_quarantined=exclude_quarantined)
            journal.quarantine(conn, self.sql, self.org_id, self.journal_id, outcome.quarantined)
            if self.s.retry_quarantined:
                journal.unquarantine(conn, self.sql, self.org_id, self.journal_id, outcome.done)
            counter = "migrated" if tier == "reverse_repost" else "aliased"
            now = journal.checkpoint(conn, self.sql, self.org_id, self.journal_id,
                                     counters={counter: len(outcome.done), "chunks": 1},
                                     values={"status": "running", "phase": tier, "last_chunk_at": journal.now()})
            chunks = int(now.get("chunks") or 0)
            if chunks % self.spec.execution.checkpoint_every_chunks == 0:
                checkpoints.record_auto(conn, self.sql, self.org_id, self.journal_id, f"chunk-{chunks}",
                                        {k: now.get(k) for k in ("migrated", "aliased", "chunks")})
            self.hooks.before_commit(conn, ChunkInfo(info.organization_id, tier, info.chunk, tuple(outcome.done)))
            faults.point("chunk_before_commit")
            return outcome

        t0 = time.monotonic()
        outcome: ChunkOutcome = self.transaction(work)
        faults.point("chunk_after_commit")
        self._chunk_time(tier, time.monotonic() - t0)
        self.last_chunk[tier] = (len(ids), time.monotonic() - t0)
        self.hooks.after_commit(ChunkInfo(info.organization_id, tier, info.chunk, tuple(outcome.done)))
        self.session["chunks"] += 1
        self.session["migrated" if tier == "reverse_repost" else "aliased"] += len(outcome.done)
        self.session["quarantined"] += len(outcome.quarantined)
        self.progress.org_advanced(self.org_id, outcome.handled)
        self.progress.chunk_done(self.org_id, tier, outcome.handled, len(outcome.quarantined),
                                 time.monotonic() - t0)
        return outcome

    def _adaptive_size(self, tier: str) -> int:
        """The next chunk size: the batch size, or with `adaptive` what fits CHUNK_SECONDS at the measured pace."""
        ceiling = self.s.batch_size
        if not self.s.adaptive:
            return ceiling
        last = self.last_chunk.get(tier)
        if last is None:
            return min(ceiling, FIRST_ADAPTIVE_CHUNK)
        size, seconds = last
        fits = int(CHUNK_SECONDS * size / max(seconds, 1e-3))
        return max(MIN_CHUNK, min(ceiling, 2 * size, fits))

    def _chunk_time(self, tier: str, seconds: float) -> None:
        times = self.chunk_times.setdefault(tier, [])
        times.append(seconds)
        self.result.chunk_seconds[f"{tier}_max"] = round(max(times), 4)
        self.result.chunk_seconds[f"{tier}_mean"] = round(sum(times) / len(times), 4)

    def transaction(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run `work` in one migration transaction; transient failures roll back, back off and retry."""
        retries = self.spec.execution.retries
        attempt = 0
        while True:
            try:
                conn = self._db()
            except DatabaseError:  # the server is away (a restart, a failover): reconnecting is retried like
                attempt += 1  # a lost connection is, with the same back-off
                self.session["retries"] += 1
                if attempt > retries.max:
                    raise
                pause(backoff_seconds(retries, attempt), self.stop)
                continue
            try:
                with conn.transaction():
                    self.sql.execute(conn, "run/session", lock_timeout=LOCK_TIMEOUT,
                                     statement_timeout=STATEMENT_TIMEOUT)
                    checkpoints.gate(conn, self.sql, self.org_id)
                    return work(conn)
            except psycopg.Error as exc:
                if not is_transient(exc, conn):
                    raise
                attempt += 1
                self.session["retries"] += 1
                if attempt > retries.max:
                    raise RetriesExhausted(attempt, exc) from exc
                pause(backoff_seconds(retries, attempt), self.stop)

    def _entities(self, hook: entities_hook.MigrateFn) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            counts = hook(conn, self.spec, self.org_id, self.s.run_id)
            self.result.entities = dict(counts)
            journal.checkpoint(conn, self.sql, self.org_id, self.journal_id,
                               values={"phase": "entities", "entities": dict(counts),
                                       "entities_seq": checkpoints.current_seq(conn, self.sql)})

        self.transaction(work)

    def _finish(self, status: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            journal.checkpoint(conn, self.sql, self.org_id, self.journal_id,
                               values={"status": status, "phase": "done", "finished_at": journal.now()})
            journal.set_meta(conn, self.sql, self.org_id, self.journal_id, status=status,
                             finished_at=journal.now().isoformat())
            checkpoints.record_auto(conn, self.sql, self.org_id, self.journal_id, "done")

        self.transaction(work)

    def _auto_checkpoint(self, what: str) -> None:
        self.transaction(lambda conn: checkpoints.record_auto(conn, self.sql, self.org_id, self.journal_id, what))

    def _mark_failed(self) -> None:
        if not self.journal_id:
            return
        try:
            def work(conn: psycopg.Connection[Any]) -> None:
                journal.checkpoint(conn, self.sql, self.org_id, self.journal_id, values={"status": "failed"})
                journal.set_meta(conn, self.sql, self.org_id, self.journal_id, status="failed")

            self.transaction(work)
        except Exception:  # best effort: the database may be what failed; resume works from any status
            return

    def _load_totals(self) -> None:
        """Cumulative counts of the run from the journal (all invocations)."""
        if not self.journal_id:
            return
        try:
            conn = self._db()
            with conn.transaction():
                fields = journal.read_fields(conn, self.sql, [self.org_id], [self.journal_id])[self.journal_id]
                quarantined = journal.read_quarantine(conn, self.sql, [self.org_id],
                                                      [self.journal_id])[self.journal_id]
        except Exception:
            return
        apply_totals(self.result, fields, quarantined)


def apply_totals(res: OrgRunResult, fields: dict[str, Any], quarantined: list[Any]) -> None:
    from runner.engine.outcome import QUARANTINE_SAMPLE

    res.candidates = {t: int(fields.get(f"candidates_{t}", 0) or 0) for t in TIERS}
    res.migrated = int(fields.get("migrated", 0) or 0)
    res.aliased = int(fields.get("aliased", 0) or 0)
    res.chunks = int(fields.get("chunks", 0) or 0)
    res.quarantined = {t: sum(1 for q in quarantined if q.tier == t) for t in TIERS}
    reasons: dict[str, int] = {}
    for q in quarantined:
        reasons[q.reason] = reasons.get(q.reason, 0) + 1
    res.quarantine_reasons = reasons
    res.quarantine = quarantined[:QUARANTINE_SAMPLE]
    if isinstance(fields.get("entities"), dict):
        res.entities = {k: int(v) for k, v in fields["entities"].items()}


class OrgBusy(Exception):
    def __init__(self, org_id: str) -> None:
        super().__init__(f"organisation {org_id} is being migrated or rolled back by another session")

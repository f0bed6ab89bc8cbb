"""One organisation of a run: journal it, migrate tier 2 then tier 3 in chunks on one or several worker sessions,
call the entity hook, finish the journal.

Chunk loop per tier: the eligible ids are scanned (no locks), then handed out a chunk at a time to the
organisation's worker sessions (runner/engine/session.py; `sessions` of them, each its own connection and
thread). A chunk is one database transaction that re-selects its ids by the eligibility predicate under
FOR UPDATE SKIP LOCKED: whoever locks a candidate first migrates it and marks it, and a marked original is never
eligible again — that is the whole exactly-once argument, whether the other session is a thread of this process,
another runner process, or a v1 request. A runner process joining the same run scans the same candidates but
starts at another place in the list (`offset`), so processes meet rarely; where they do, SKIP LOCKED and the
re-check decide. Chunk size: an explicit batch size is used as is; the spec's batch size is a ceiling, and the next
chunk is sized from the measured time per candidate so that a chunk holds its row locks for about CHUNK_SECONDS
(< 1 s). The throttle may lower it further and paces every worker. When the list is done the tier is scanned
again: rows another session held (skipped) or that became eligible meanwhile are handled in the next pass. A pass
that handles nothing (everything left is locked by others) is retried with back-off `retries.max` times, then the
rest is reported as `remaining` (status incomplete; resume continues).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from runner.compile.params import Mappings
from runner.engine import alias, checkpoints, entities_hook, faults, journal, repost
from runner.engine.chunk import ChunkCtx, ChunkOutcome
from runner.engine.context import JOURNAL_LOCK_CLASS, Sql, advisory_key
from runner.engine.hooks import ChunkInfo, EngineHooks, ProgressSink, ReleasingThrottle, Throttle
from runner.engine.outcome import TIERS, OrgRunResult
from runner.engine.retry import backoff_seconds, pause
from runner.engine.session import OrgBusy, OrgSession, side_by_side
from runner.engine.window import Gate
from runner.spec.model import Spec

log = logging.getLogger(__name__)

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
    offset: float = 0.0  # where in each candidate list this process starts (0..1): cooperating runners spread out


class _Cursor:
    """The chunks of one pass, handed out to the workers in turn (the size decided when a chunk is taken)."""

    def __init__(self, ids: list[str], offset: float) -> None:
        start = int(len(ids) * offset) if ids else 0
        self.ids = ids[start:] + ids[:start]
        self.pos = 0
        self.lock = threading.Lock()

    def done(self) -> bool:
        with self.lock:
            return self.pos >= len(self.ids)

    def take(self, size: int) -> list[str]:
        with self.lock:
            part = self.ids[self.pos:self.pos + size]
            self.pos += len(part)
            return part


class OrgRunner:
    def __init__(self, dsn: str, settings: RunSettings, org_id: str, org_code: str, *, progress: ProgressSink,
                 throttle: Throttle, gate: Gate, hooks: EngineHooks, stop: threading.Event,
                 sessions: int = 1) -> None:
        self.dsn = dsn
        self.s = settings
        self.spec = settings.spec
        self.org_id = org_id
        self.progress = progress
        self.throttle = throttle
        self.gate = gate
        self.hooks = hooks
        self.stop = stop
        self.n_sessions = max(1, sessions)
        self.sql = Sql(org_id=org_id)
        self.result = OrgRunResult(organization_id=org_id, organization_code=org_code)
        self.session = dict.fromkeys(("migrated", "aliased", "quarantined", "chunks", "retries"), 0)
        self.lock = threading.Lock()  # the counters above and the chunk timings, shared by the worker threads
        self.lead = self._session()
        self.workers: list[OrgSession] = [self.lead]
        self.ctx: ChunkCtx | None = None
        self.journal_id = ""
        self.exception: BaseException | None = None
        self.tier_chunks: dict[str, int] = {}
        self.chunk_times: dict[str, list[float]] = {}
        self.last_chunk: dict[str, tuple[int, float]] = {}
        self.chunks_total = 0  # the organisation's chunks over every invocation and runner (for auto:chunk-N)

    def _session(self) -> OrgSession:
        def retried() -> None:
            with self.lock:
                self.session["retries"] += 1

        return OrgSession(self.dsn, self.sql, self.org_id, self.spec.execution.retries, self.stop, retried)

    def transaction(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        return self.lead.transaction(work)

    def close(self) -> None:
        for w in self.workers:
            w.close(self._worker_done(w) if self.journal_id and w.chunks else None)

    def _worker_done(self, w: OrgSession) -> Callable[[psycopg.Connection[Any]], None]:
        def last(conn: psycopg.Connection[Any]) -> None:
            journal.worker_tick(conn, self.sql, self.org_id, self.journal_id, self._worker_info(w, None, "done"), {})

        return last

    # --- the organisation ------------------------------------------------------------------------------------

    def run(self) -> OrgRunResult:
        t0 = time.monotonic()
        res = self.result
        try:
            conn = self.lead.db()
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
            self.chunks_total = int(fields.get("chunks") or 0)
            hook = entities_hook.migrate_function()
            if fields.get("status") == "completed" and not any(todo.values()) \
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
                self._journal_guard(conn)  # a runner joining the run may be opening it at this very moment
                found = journal.find(conn, self.sql, [self.org_id], self.s.run_id)
                if found:
                    existing = found[0]
                else:
                    checkpoints.gate(conn, self.sql, self.org_id)
                    self.journal_id = journal.create(
                        conn, self.sql, org_id=self.org_id, run_id=self.s.run_id, spec=self.s.spec_info,
                        options=self.s.options, candidates={t: len(ids) for t, ids in todo.items()})
                    checkpoints.record_auto(conn, self.sql, self.org_id, self.journal_id, "start")
            if existing is None:
                self.ctx = ChunkCtx(spec=self.spec, run_id=self.s.run_id, org_id=self.org_id,
                                    journal_id=self.journal_id, mappings=self.ctx.mappings)
                return {}
            self.ctx = ChunkCtx(spec=self.spec, run_id=self.s.run_id, org_id=self.org_id, journal_id=existing.id,
                                mappings=self.ctx.mappings)
        self.journal_id = existing.id
        with conn.transaction():
            fields = journal.read_fields(conn, self.sql, [self.org_id], [existing.id]).get(existing.id, {})
            if any(todo.values()) or fields.get("status") != "completed":
                journal.set_meta(conn, self.sql, self.org_id, existing.id, status="running",
                                 resumed_at=journal.now().isoformat())
        return fields

    def _journal_guard(self, conn: psycopg.Connection[Any]) -> None:
        self.sql.execute(conn, "run/journal_guard", lock_class=JOURNAL_LOCK_CLASS,
                         lock_key=advisory_key(f"{self.org_id}:{self.s.run_id}"))

    # --- a tier: passes of chunks on the worker sessions -----------------------------------------------------------

    def _tier(self, tier: str, ids: list[str]) -> None:
        assert self.ctx is not None
        retries = self.spec.execution.retries
        exclude_quarantined = not self.s.retry_quarantined
        pending, stalled, first_pass, passes = ids, 0, True, 0
        self.transaction(lambda c: journal.checkpoint(c, self.sql, self.org_id, self.journal_id,
                                                      values={"phase": tier}, count_quarantine=False))
        while True:
            if not first_pass:
                conn = self.lead.db()
                with conn.transaction():
                    pending = self.ctx.candidates(conn, tier, exclude_quarantined=exclude_quarantined)
            passes += 1
            if not pending or passes > MAX_PASSES:  # v1 traffic that keeps creating candidates: resume later
                self.result.remaining[tier] = len(pending)
                return
            handled = self._pass(tier, _Cursor(pending, self.s.offset), exclude_quarantined)
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

    def _pass(self, tier: str, cursor: _Cursor, exclude_quarantined: bool) -> int:
        """Every chunk of the cursor, on all worker sessions at once; the candidates they handled."""
        while len(self.workers) < self.n_sessions and len(cursor.ids) > self.s.batch_size * len(self.workers):
            self.workers.append(self._session())
        if len(self.workers) == 1:
            return self._work(self.lead, tier, cursor, exclude_quarantined)
        handled = [0] * len(self.workers)
        errors: list[BaseException] = []
        abort = threading.Event()

        def worker(i: int, w: OrgSession) -> None:
            try:
                handled[i] = self._work(w, tier, cursor, exclude_quarantined, abort)
            except BaseException as exc:  # the first error stops the siblings between chunks, then is raised
                errors.append(exc)
                abort.set()

        side_by_side(lambda i: worker(i, self.workers[i]), len(self.workers))
        if errors:
            raise errors[0]
        return sum(handled)

    def _work(self, w: OrgSession, tier: str, cursor: _Cursor, exclude_quarantined: bool,
              abort: threading.Event | None = None) -> int:
        try:
            return self._chunks(w, tier, cursor, exclude_quarantined, abort)
        finally:  # this worker starts no further chunk: a throttle pacing all workers frees its place at once
            if isinstance(self.throttle, ReleasingThrottle):
                self.throttle.release()

    def _chunks(self, w: OrgSession, tier: str, cursor: _Cursor, exclude_quarantined: bool,
                abort: threading.Event | None) -> int:
        handled = 0
        while not cursor.done():  # (no throttle wait for a chunk that will not come)
            self.gate.wait()
            self.throttle.wait()
            if self.stop.is_set():
                raise Interrupted("stopped between chunks")
            if abort is not None and abort.is_set():
                return handled
            size = max(1, min(self.throttle.batch_size(self.s.batch_size), self._adaptive_size(tier)))
            part = cursor.take(size)
            if not part:
                return handled
            faults.point("between_chunks")
            handled += self._chunk(w, tier, part, exclude_quarantined).handled
        return handled

    def _chunk(self, w: OrgSession, tier: str, ids: list[str], exclude_quarantined: bool) -> ChunkOutcome:
        assert self.ctx is not None
        fn = CHUNK_FUNCTIONS[tier]
        with self.lock:
            self.tier_chunks[tier] = self.tier_chunks.get(tier, 0) + 1
            number = self.tier_chunks[tier]
        info = ChunkInfo(self.org_id, tier, number, tuple(ids))
        t0 = time.monotonic()

        def work(conn: psycopg.Connection[Any]) -> ChunkOutcome:
            assert self.ctx is not None
            outcome = fn(conn, self.ctx, ids, exclude_quarantined=exclude_quarantined)
            journal.quarantine(conn, self.sql, self.org_id, self.journal_id, outcome.quarantined)
            if self.s.retry_quarantined:
                journal.unquarantine(conn, self.sql, self.org_id, self.journal_id, outcome.done)
            counter = "migrated" if tier == "reverse_repost" else "aliased"
            seconds = time.monotonic() - t0
            journal.worker_tick(conn, self.sql, self.org_id, self.journal_id,
                                self._worker_info(w, tier, "running", outcome.handled / max(seconds, 1e-3)),
                                {counter: len(outcome.done), "chunks": 1, "quarantined": len(outcome.quarantined)})
            self.hooks.before_commit(conn, ChunkInfo(info.organization_id, tier, info.chunk, tuple(outcome.done)))
            faults.point("chunk_before_commit")
            return outcome

        outcome: ChunkOutcome = w.transaction(work)
        w.chunks += 1
        faults.point("chunk_after_commit")
        seconds = time.monotonic() - t0
        with self.lock:
            self._chunk_time(tier, seconds)
            self.last_chunk[tier] = (len(ids), seconds)
            self.session["chunks"] += 1
            self.session["migrated" if tier == "reverse_repost" else "aliased"] += len(outcome.done)
            self.session["quarantined"] += len(outcome.quarantined)
            self.chunks_total += 1
            every = self.spec.execution.checkpoint_every_chunks
            due = self.chunks_total % every == 0
        self.hooks.after_commit(ChunkInfo(info.organization_id, tier, info.chunk, tuple(outcome.done)))
        self.progress.org_advanced(self.org_id, outcome.handled)
        self.progress.chunk_done(self.org_id, tier, outcome.handled, len(outcome.quarantined), seconds)
        if due:
            self._chunk_checkpoint(w)
        return outcome

    def _worker_info(self, w: OrgSession, tier: str | None, state: str, rate: float | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"name": w.worker.name, "host": w.worker.host, "pid": w.worker.pid, "n": w.worker.n,
                                "key": w.worker.key, "state": state}
        if tier is not None:
            info["tier"] = tier
        if rate is not None:
            info["rate"] = round(rate, 1)
        return info

    def _chunk_checkpoint(self, w: OrgSession) -> None:
        """auto:chunk-<total>, an exact cut like an operator's: taken after this worker's chunk committed, under the
        exclusive gate (the other workers' chunks in flight commit first)."""
        try:
            conn = w.db()
            with conn.transaction():
                checkpoints.record_cut(conn, self.sql, self.org_id, self.journal_id)
        except psycopg.Error as exc:  # a missed automatic cut costs a rollback target, never the run
            log.warning("auto checkpoint after chunk %s of %s skipped: %s", self.chunks_total, self.org_id,
                        str(exc).strip())

    def _adaptive_size(self, tier: str) -> int:
        """The next chunk size: the batch size, or with `adaptive` what fits CHUNK_SECONDS at the measured pace."""
        ceiling = self.s.batch_size
        if not self.s.adaptive:
            return ceiling
        with self.lock:
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

    # --- the end of the organisation -----------------------------------------------------------------------------

    def _auto_checkpoint(self, what: str) -> None:
        self.transaction(lambda conn: checkpoints.record_auto(conn, self.sql, self.org_id, self.journal_id, what))

    def _entities(self, hook: entities_hook.MigrateFn) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            self._journal_guard(conn)  # once per organisation, whichever runner gets here first
            done = journal.read_fields(conn, self.sql, [self.org_id], [self.journal_id]).get(self.journal_id, {})
            if "entities" in done:
                return
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
        """Cumulative counts of the run from the journal (all invocations and runners)."""
        if not self.journal_id:
            return
        try:
            conn = self.lead.db()
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

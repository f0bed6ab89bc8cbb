"""`rollback RUN_ID`: restore the pre-run state of everything the run touched, per organisation, in chunks.

Per chunk (one transaction, resumable: whatever committed is done, the rest is found again by its marks):
  tier 2 — lock the run's originals (SKIP LOCKED), lock their repost and -REV twin, delete the lines then the
  headers of both, restore every pre-image column of the original (the UPDATE form chosen by the pre-image
  code's case: canonical `.v<n>` lists smart_code, upper `.V<n>` does not) and check it equals the pre-image;
  tier 3 — remove the alias keys and put back their previous values (form chosen by the stored code's case).
A group where anything was changed by someone else after the run (original, repost or twin no longer as the run
left it) is not touched and is reported as a conflict (REQUIRES_REVIEW). Then the entity hook, a final check
(no row of the run left but the conflicts), and the journal (kept as the audit trail) is marked rolled_back.

Scoped forms (runner/engine/checkpoints.py for the cut):
- `to` a checkpoint: only what the run's transactions after the cut wrote (rows whose metadata.migration.seq is
  higher; the entity step when its entities_seq is). The journal forgets what it recorded after the cut
  (checkpoints, quarantine entries, the entity step), its counters go down by what was undone, and its status
  becomes rolled_back_to_checkpoint: `run --resume` continues from there.
- `only` some parts: transactions (tiers 2 and 3), entities (posting rules, fiscal periods), config (the
  organisation's settings; one row, no transaction touched). Status partially_rolled_back unless all parts.
Organisations are rolled back in parallel (`workers` sessions), each claimed with the organisation lock; one large
organisation gets several of them (its claiming session opens helpers that take chunks of the same list).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from runner import contract
from runner.compile.params import reversal_reason
from runner.db.connect import connect
from runner.engine import checkpoints, entities_hook, faults, journal
from runner.engine.context import (
    ADVISORY_LOCK_CLASS,
    LOCK_TIMEOUT,
    STATEMENT_TIMEOUT,
    Sql,
    advisory_key,
    validate_run_id,
)
from runner.engine.hooks import ChunkInfo, EngineHooks, NullProgress, ProgressSink
from runner.engine.outcome import Conflict, OrgRollbackResult, RollbackResult
from runner.engine.retry import RetriesExhausted, backoff_seconds, is_transient, pause
from runner.engine.session import OrgBusy, side_by_side
from runner.errors import HarnessError, UsageError
from runner.spec.model import Retries

BATCH = 500
RETRIES = Retries()
PREIMAGE = contract.ORIGINAL_PREIMAGE_COLUMNS
PARTS = ("transactions", "entities", "config")
WHOLE = -1  # the boundary of a whole-run rollback: every seq is above it
FAR = 2**62  # a seq above every transaction id: `--only` without `--to` forgets no checkpoint


class RollbackFailed(HarnessError):
    def __init__(self, message: str, result: RollbackResult) -> None:
        super().__init__(message, hint="run rollback again: it continues where it stopped")
        self.result = result


@dataclass
class _Delta:
    """What one rollback chunk did; applied to the result only after the chunk committed."""

    handled: int = 0
    originals: int = 0
    reposts: int = 0
    reversals: int = 0
    aliases: int = 0
    conflicts: list[tuple[Conflict, list[str]]] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """What a rollback undoes: `to` a checkpoint (None: the whole run) and which parts."""

    to: str | None = None
    parts: tuple[str, ...] = PARTS

    @property
    def partial(self) -> bool:
        return self.to is not None or set(self.parts) != set(PARTS)

    def as_dict(self) -> dict[str, Any]:
        return {"to": self.to, "only": sorted(self.parts) if set(self.parts) != set(PARTS) else []}


@dataclass
class _Org:
    j: journal.Journal
    sql: Sql
    res: OrgRollbackResult
    conn: psycopg.Connection[Any]
    scope: Scope = Scope()
    boundary: int = WHOLE
    kept: set[str] = field(default_factory=set)  # ids of conflict groups, left for review
    chunk: int = 0
    dsn: str = ""
    sessions: int = 1  # sessions on this organisation: the claiming one and sessions - 1 helpers it opens
    helpers: list[psycopg.Connection[Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # res, kept and chunk, shared by the helpers


def rollback_run(dsn: str, run_id: str, *, orgs: tuple[str, ...] = (), to: str | None = None,
                 only: Sequence[str] = (), workers: int = 1, progress: ProgressSink | None = None,
                 hooks: EngineHooks | None = None, batch_size: int | None = None) -> RollbackResult:
    """Undo run `run_id` (or, with `to`/`only`, part of it) in `orgs` (default: every organisation it has a
    journal in), `workers` organisations at a time."""
    if not validate_run_id(run_id):
        raise UsageError(f"invalid run id {run_id!r}")
    unknown_parts = set(only) - set(PARTS)
    if unknown_parts:
        raise UsageError(f"--only takes {', '.join(PARTS)}; not {', '.join(sorted(unknown_parts))}")
    scope = Scope(to=to, parts=tuple(p for p in PARTS if p in only) if only else PARTS)
    t0 = time.monotonic()
    sql = Sql()
    with connect(dsn) as conn:
        visible = [o for o, _ in journal.all_orgs(conn, sql)]
        journals = journal.find(conn, sql, visible, run_id)
        cuts = checkpoints.boundaries(checkpoints.listing(conn, sql, journals), journals, to) if to else {}
        conn.rollback()
    if not journals:
        raise UsageError(f"no run {run_id} in this database (no journal with that run id)")
    if orgs:
        unknown = set(orgs) - {j.organization_id for j in journals}
        if unknown:
            raise UsageError(f"run {run_id} has no journal in organisation(s) {', '.join(sorted(unknown))}")
        journals = [j for j in journals if j.organization_id in orgs]
    result = RollbackResult(run_id=run_id, status="running", scope=scope.as_dict())
    groups: list[list[Job]] = []
    for j in journals:
        res = OrgRollbackResult(organization_id=j.organization_id, organization_code=j.organization_code)
        result.organizations.append(res)
        groups.append([(j, cuts.get(j.organization_id, WHOLE) if to else WHOLE, res)])
    errors = run_parallel(dsn, groups, scope, progress or NullProgress(), hooks or EngineHooks(), batch_size,
                          workers)
    result.seconds = time.monotonic() - t0
    result.status = overall_status(result)
    if errors:
        raise RollbackFailed(f"rollback of {run_id} did not finish in {len(errors)} organisation(s): "
                             f"{str(errors[0]).strip()}", result) from errors[0]
    return result


def overall_status(result: RollbackResult) -> str:
    statuses = {o.status for o in result.organizations}
    return ("failed" if statuses & {"failed", "busy"} else
            "requires_review" if "requires_review" in statuses else
            "incomplete" if "incomplete" in statuses else "rolled_back")


Job = tuple[journal.Journal, int | None, OrgRollbackResult]  # boundary None: nothing after the cut there


def run_parallel(dsn: str, groups: list[list[Job]], scope: Scope, sink: ProgressSink, hooks: EngineHooks,
                 batch_size: int | None, workers: int) -> list[BaseException]:
    """Roll back the jobs on up to `workers` sessions: the groups in parallel, the jobs of a group in order (one
    organisation's runs, newest first). Each job's outcome lands in its result; returns the errors."""
    errors: list[BaseException] = []
    pending = list(groups)
    lock = threading.Lock()
    at_once = max(1, min(workers, len(groups)))
    per_org = max(1, workers // at_once)  # one large organisation gets every session (as in a run)

    def one(j: journal.Journal, boundary: int | None, res: OrgRollbackResult) -> None:
        batch = batch_size or int((j.metadata.get("options") or {}).get("batch_size") or BATCH)
        try:
            if boundary is None:
                res.status, res.verified = "rolled_back", True  # nothing of it is after the cut
            else:
                rollback_org(dsn, j, res, sink, hooks, batch, scope, boundary, sessions=per_org)
        except OrgBusy as exc:
            res.status, res.error = "busy", str(exc)
            with lock:
                errors.append(exc)
        except Exception as exc:
            res.status, res.error = "failed", f"{type(exc).__name__}: {str(exc).strip()}"
            with lock:
                errors.append(exc)
        sink.org_finished(j.organization_id, res.status)

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                group = pending.pop(0)
            for job in group:
                one(*job)

    threads = [threading.Thread(target=worker, name=f"hera-rollback-worker-{i}", daemon=True)
               for i in range(at_once)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def rollback_org(dsn: str, j: journal.Journal, res: OrgRollbackResult, sink: ProgressSink, hooks: EngineHooks,
                 batch: int, scope: Scope = Scope(), boundary: int = WHOLE, sessions: int = 1) -> None:
    """Roll back one organisation of one run: its own session claims the organisation exclusively (no run and no
    other rollback can work on it), then it and `sessions - 1` helper sessions it opens under that claim take the
    chunks of one list (each chunk re-locks its rows with SKIP LOCKED, so no row is undone twice)."""
    t0 = time.monotonic()
    sql = Sql(org_id=j.organization_id, journal_id=j.id, run_id=j.metadata.get("run_id", ""))
    conn = connect(dsn)
    helpers: list[psycopg.Connection[Any]] = []  # opened by _pass under this session's claim
    try:
        with conn.transaction():
            row = sql.execute(conn, "run/org_lock", lock_class=ADVISORY_LOCK_CLASS,
                              lock_key=advisory_key(j.organization_id)).fetchone()
        if not row or not row[0]:
            raise OrgBusy(j.organization_id)
        o = _Org(j=j, sql=sql, res=res, conn=conn, scope=scope, boundary=boundary, dsn=dsn,
                 sessions=max(1, sessions), helpers=helpers)
        with conn.transaction():
            fields = journal.read_fields(conn, sql, [j.organization_id], [j.id]).get(j.id, {})
            transactions = "transactions" in scope.parts
            originals = _targets(o, "original") if transactions else []
            aliases = _targets(o, "alias") if transactions else []
        sink.org_started(j.organization_id, j.organization_code, len(originals) + len(aliases))
        did = bool(originals or aliases)
        _loop(o, "original", originals, batch, sink, hooks)
        _loop(o, "alias", aliases, batch, sink, hooks)
        entity_parts = tuple(p for p in scope.parts if p != "transactions")
        entities_after = int(fields.get("entities_seq") or 0) > boundary or "entities" not in fields
        hook = entities_hook.rollback_function()
        undone_entities = False
        if hook is not None and entity_parts and entities_after:
            def work(c: psycopg.Connection[Any]) -> None:
                res.entities = dict(hook(c, o.j.metadata.get("run_id", ""), o.j.organization_id, entity_parts))

            _transaction(o, work)
            undone_entities = any(v for k, v in res.entities.items() if k != "conflicts")
            did = did or undone_entities
            if res.entities.get("conflicts"):
                res.conflicts.append(Conflict(transaction_id="", role="entity",
                                              reason=f"{res.entities['conflicts']} entity row(s) changed after "
                                                     "the run were left as they are"))
        if transactions:
            _verify(o)
        else:
            res.verified = True  # nothing of the transaction tiers was in scope
        res.status = ("requires_review" if res.conflicts else "incomplete" if res.problems else "rolled_back")
        journal_status = res.status
        if res.status == "rolled_back" and scope.partial:
            journal_status = "rolled_back_to_checkpoint" if scope.to else "partially_rolled_back"
        if did or j.status != journal_status:
            _close(o, journal_status, forget_entities=bool(entity_parts) and entities_after)
    finally:
        res.seconds = round(time.monotonic() - t0, 3)
        for helper in helpers:
            helper.close()
        conn.close()


def _close(o: _Org, status: str, *, forget_entities: bool) -> None:
    """The journal after the rollback, in one transaction (after a partial one: what a resume needs)."""
    j, sql, scope = o.j, o.sql, o.scope
    values: dict[str, Any] = {"status": status, "conflicts": len(o.res.conflicts), "rolled_back_at": journal.now()}
    if scope.to:
        values["rolled_back_to"] = {"checkpoint": scope.to, "seq": o.boundary, "at": journal.now().isoformat()}
    if scope.partial and not scope.to:
        values["rolled_back_scopes"] = list(scope.parts)

    def close(c: psycopg.Connection[Any]) -> None:
        if scope.partial:
            sql.execute(c, "checkpoint/forget", org_id=j.organization_id, journal_id=j.id,
                        seq=o.boundary if scope.to else FAR,
                        fields=["entities", "entities_seq", "finished_at"] if forget_entities else ["finished_at"])
        journal.checkpoint(c, sql, j.organization_id, j.id, count_quarantine=scope.partial, values=values)
        journal.set_meta(c, sql, j.organization_id, j.id, status=status, rolled_back_at=journal.now().isoformat())

    _transaction(o, close)


def _targets(o: _Org, role: str) -> list[str]:
    rows = o.sql.rows(o.conn, "rollback/targets", role=role, exclude_ids=bool(o.kept), excluded=sorted(o.kept),
                      boundary=o.boundary)
    return [r[0] for r in rows]


def _loop(o: _Org, role: str, ids: list[str], batch: int, sink: ProgressSink, hooks: EngineHooks) -> None:
    stalled = 0
    pending = ids
    while pending:
        parts = [pending[pos:pos + batch] for pos in range(0, len(pending), batch)]
        handled = _pass(o, role, parts, sink, hooks)
        with o.conn.transaction():
            pending = _targets(o, role)
        if handled:
            stalled = 0
            continue
        stalled += 1
        if stalled > RETRIES.max:
            o.res.problems.append(f"{len(pending)} {role} row(s) stayed locked by other sessions; run rollback again")
            return
        pause(backoff_seconds(RETRIES, stalled))


def _pass(o: _Org, role: str, parts: list[list[str]], sink: ProgressSink, hooks: EngineHooks) -> int:
    """Every chunk of `parts` on the organisation's sessions (the claiming one, then helpers); rows undone."""
    while len(o.helpers) < o.sessions - 1 and len(parts) > len(o.helpers) + 1:
        o.helpers.append(connect(o.dsn))
    conns = [o.conn, *o.helpers[:max(0, len(parts) - 1)]]
    done = [0] * len(conns)
    errors: list[BaseException] = []

    def work(i: int, conn: psycopg.Connection[Any]) -> None:
        while not errors:
            with o.lock:
                if not parts:
                    return
                part = parts.pop(0)
                o.chunk += 1
                info = ChunkInfo(o.j.organization_id, "rollback", o.chunk, tuple(part))
            t0 = time.monotonic()
            try:
                delta: _Delta = _transaction(o, lambda c, p=part, n=info: _chunk(o, c, role, p, hooks, n), conn)
            except BaseException as exc:  # the siblings stop before their next chunk; the first error is raised
                errors.append(exc)
                return
            faults.point("rollback_after_commit")
            hooks.after_commit(info)
            with o.lock:
                _apply(o, delta)
            done[i] += delta.handled
            sink.org_advanced(o.j.organization_id, delta.handled)
            sink.chunk_done(o.j.organization_id, "rollback", delta.handled, 0, time.monotonic() - t0)

    if len(conns) == 1:
        work(0, o.conn)
    else:
        side_by_side(lambda i: work(i, conns[i]), len(conns))
    if errors:
        raise errors[0]
    return sum(done)


def _transaction(o: _Org, work: Any, conn: psycopg.Connection[Any] | None = None) -> Any:
    conn = conn or o.conn
    attempt = 0
    while True:
        try:
            with conn.transaction():
                o.sql.execute(conn, "run/session", lock_timeout=LOCK_TIMEOUT, statement_timeout=STATEMENT_TIMEOUT)
                return work(conn)
        except psycopg.Error as exc:
            if not is_transient(exc, conn) or conn.closed or conn.broken:
                raise  # a lost connection also lost the claim: rollback is re-run from the top
            attempt += 1
            if attempt > RETRIES.max:
                raise RetriesExhausted(attempt, exc) from exc
            pause(backoff_seconds(RETRIES, attempt))


def _chunk(o: _Org, conn: psycopg.Connection[Any], role: str, ids: list[str], hooks: EngineHooks,
           info: ChunkInfo) -> _Delta:
    delta = _originals(o, conn, ids) if role == "original" else _aliases(o, conn, ids)
    hooks.before_commit(conn, info)
    faults.point("rollback_before_commit")
    return delta


def _apply(o: _Org, d: _Delta) -> None:
    res = o.res
    res.originals_restored += d.originals
    res.reposts_deleted += d.reposts
    res.reversals_deleted += d.reversals
    res.aliases_restored += d.aliases
    res.chunks += 1
    for conflict, related in d.conflicts:
        res.conflicts.append(conflict)
        o.kept.update(related)


def _originals(o: _Org, conn: psycopg.Connection[Any], ids: list[str]) -> _Delta:
    sql = o.sql
    d = _Delta()
    locked = sql.rows(conn, "rollback/lock_originals", ids=ids)
    groups: dict[str, tuple[str, str | None, str | None, bool]] = {}
    for txn_id, pre, repost_id, reversal_id, canonical, unchanged, still_reversed in locked:
        if not unchanged or not still_reversed:
            _conflict(d, txn_id, "original", "the original was changed after the run (version/updated_at/"
                      "updated_by/status differ from what the run left)", [repost_id, reversal_id])
            continue
        groups[txn_id] = (pre, repost_id, reversal_id, bool(canonical))
    outputs = {r[0]: r for r in sql.rows(conn, "rollback/lock_outputs", ids=[
        x for g in groups.values() for x in (g[1], g[2]) if x is not None])}
    for txn_id, (_, repost_id, reversal_id, _) in list(groups.items()):
        problem = _output_problem(txn_id, outputs.get(repost_id or ""), outputs.get(reversal_id or ""))
        if problem:
            del groups[txn_id]
            _conflict(d, txn_id, "original", problem, [repost_id, reversal_id])
    d.handled = len(locked)
    if not groups:
        return d
    reposts = [g[1] for g in groups.values() if g[1]]
    twins = [g[2] for g in groups.values() if g[2]]
    sql.execute(conn, "rollback/delete_lines", ids=reposts + twins)
    deleted = sql.rows(conn, "rollback/delete_headers", ids=reposts + twins)
    if len(deleted) != len(reposts) + len(twins):
        raise RuntimeError(f"deleted {len(deleted)} of {len(reposts) + len(twins)} reposts/twins")
    restored, bad = 0, []
    for canonical in (True, False):
        part = [t for t, g in groups.items() if g[3] is canonical]
        if part:
            columns = [c for c in PREIMAGE if canonical or c != "smart_code"]
            rows = sql.rows(conn, "rollback/restore_originals", list_smart_code=canonical, columns=columns,
                            preimage_columns=PREIMAGE, ids=part, preimages=[groups[t][0] for t in part])
            restored += len(rows)
            bad += [txn_id for txn_id, differs in rows if differs]
    if restored != len(groups) or bad:
        raise RuntimeError(f"restored {restored} of {len(groups)} originals; differing from their pre-image: "
                           f"{bad[:5]}")
    counters = {"rollback_originals": restored, "rollback_reposts": len(reposts), "rollback_reversals": len(twins),
                "rollback_chunks": 1}
    if o.scope.partial:  # the run goes on from here: its own counter says what is still migrated
        counters["migrated"] = -restored
    journal.checkpoint(conn, sql, o.j.organization_id, o.j.id, count_quarantine=False, counters=counters,
                       values={"status": "rolling_back"})
    d.originals, d.reposts, d.reversals = restored, len(reposts), len(twins)
    return d


def _output_problem(original: str, repost: tuple[Any, ...] | None, twin: tuple[Any, ...] | None) -> str | None:
    if repost is None:
        return "the repost of the run is missing"
    _, is_repost, original_of, _, untouched = repost
    if not is_repost or original_of != original:
        return "the repost no longer names this original in metadata.migration"
    if not untouched:
        return "the repost was changed after the run"
    if twin is None:
        return "the reversal (-REV twin) of the run is missing"
    _, _, _, reversal_of, untouched = twin
    if reversal_of != original:
        return "the reversal no longer names this original in metadata.reversal_of"
    if not untouched:
        return "the reversal was changed after the run"
    return None


def _conflict(d: _Delta, txn_id: str, role: str, reason: str, related: list[str | None]) -> None:
    d.conflicts.append((Conflict(transaction_id=txn_id, role=role, reason=reason),
                        [txn_id, *(r for r in related if r)]))


def _aliases(o: _Org, conn: psycopg.Connection[Any], ids: list[str]) -> _Delta:
    sql = o.sql
    d = _Delta()
    locked = sql.rows(conn, "rollback/lock_aliases", ids=ids)
    forms: dict[bool, dict[str, str]] = {True: {}, False: {}}
    for txn_id, code, canonical, unchanged in locked:
        if not unchanged:
            _conflict(d, txn_id, "alias", "the aliased row was changed after the run", [])
            continue
        forms[bool(canonical)][txn_id] = code
    restored = 0
    for canonical, codes in forms.items():
        if not codes:
            continue
        rows = sql.rows(conn, "rollback/restore_aliases", list_smart_code=canonical, ids=list(codes))
        if any(codes.get(txn_id) != code for txn_id, code in rows) or len(rows) != len(codes):
            raise RuntimeError("restoring an alias would have changed the stored smart code")
        restored += len(rows)
    counters = {"rollback_aliases": restored, "rollback_chunks": 1}
    if o.scope.partial:
        counters["aliased"] = -restored
    journal.checkpoint(conn, sql, o.j.organization_id, o.j.id, count_quarantine=False, counters=counters,
                       values={"status": "rolling_back"})
    d.handled, d.aliases = len(locked), restored
    return d


def _verify(o: _Org) -> None:
    with o.conn.transaction():
        row = o.sql.execute(o.conn, "rollback/leftovers", kept=sorted(o.kept), boundary=o.boundary,
                            reason=reversal_reason(o.j.metadata.get("run_id", ""))).fetchone()
    marked, reposts, twins = row if row else (0, 0, 0)
    after = " after the checkpoint" if o.scope.to else ""
    if marked:
        o.res.problems.append(f"{marked} row(s) still carry metadata.migration of the run{after}")
    if reposts:
        o.res.problems.append(f"{reposts} repost(s) of the run are still there without their original's mark")
    if twins:
        o.res.problems.append(f"{twins} reversal(s) of the run are still there without their original's mark")
    o.res.verified = not o.res.problems

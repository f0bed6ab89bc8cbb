"""`run`: validate the run id and the journal, then migrate the organisations in scope with `workers` sessions.

The organisations go through a queue, priority organisations (spec.scope.organizations.priority) first, in the
order runner.compile.scope.resolve_orgs gives; min(workers, organisations) of them at a time, each with
workers // that many worker sessions of its own (runner/engine/organization.py), so one large organisation uses
every worker. An organisation that fails (retries exhausted, an unexpected error) stops with journal status
`failed`; the others finish, then the run raises RunFailed (exit code 3). Work already committed is safe and
`resume=True` continues it — also in several runner processes at once (cooperating runners): each claims its
chunks through PostgreSQL, and a process joining a run that live workers of another process work on starts at a
random place in each candidate list.
"""

from __future__ import annotations

import queue
import random
import secrets
import threading
from datetime import UTC, datetime

from runner.compile.params import spec_info
from runner.compile.scope import resolve_orgs
from runner.db.connect import connect
from runner.engine import journal
from runner.engine.context import Sql, validate_run_id
from runner.engine.hooks import EngineHooks, NoThrottle, NullProgress, ProgressSink, Throttle
from runner.engine.organization import OrgRunner, RunSettings
from runner.engine.outcome import RunResult
from runner.engine.status import live_workers
from runner.engine.window import Gate
from runner.errors import HarnessError, UsageError
from runner.spec.model import Spec


class RunFailed(HarnessError):
    """At least one organisation failed; committed work is safe and `resume` continues. Carries the result."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message, hint="run again with --resume (the same --run-id) to continue")
        self.result = result


def new_run_id(at: datetime | None = None) -> str:
    at = at or datetime.now(UTC)
    return f"run-{at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_migration(dsn: str, spec: Spec, *, orgs: tuple[str, ...] = (), run_id: str | None = None,
                  workers: int | None = None, batch_size: int | None = None, resume: bool = False,
                  retry_quarantined: bool = False, now: bool = False, progress: ProgressSink | None = None,
                  throttle: Throttle | None = None, hooks: EngineHooks | None = None,
                  stop: threading.Event | None = None, report_dir: str | None = None) -> RunResult:
    """Migrate the organisations in scope (tier 2, tier 3, entity hook) and return per-org counts.

    `batch_size` given: every chunk has exactly that many candidates (the last one fewer). Not given: the spec's
    batch size is a ceiling and chunks shrink so each transaction stays under ~1 s of lock time
    (engine/organization.py).
    `hooks` are test-only fault points; `stop` (set from another thread) ends the run between chunks.
    `report_dir`: where the run's report goes, recorded in the journal (`rollback --all-runs` rewrites it there).
    Returns with status `incomplete` when candidates stayed locked by other sessions (resume continues);
    raises RunFailed (exit 3) when an organisation failed, after the others finished.
    """
    if run_id is None:
        if resume:
            raise UsageError("resume needs the run id of the run to continue (--run-id)")
        run_id = new_run_id()
    if not validate_run_id(run_id):
        raise UsageError(f"invalid run id {run_id!r}: use 1-64 characters of A-Z a-z 0-9 . _ -")
    batch = batch_size if batch_size is not None else spec.execution.batch_size
    n_workers = workers if workers is not None else spec.execution.workers
    if batch < 1 or n_workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1")
    started = datetime.now(UTC)
    sql = Sql()
    with connect(dsn) as conn:
        scope = resolve_orgs(conn, spec, orgs)
        visible = [o for o, _ in journal.all_orgs(conn, sql)]
        found = {j.organization_id: j for j in journal.find(conn, sql, visible, run_id)}
        conn.rollback()
    _check_journals(run_id, spec, found, resume)
    options = {"workers": n_workers, "batch_size": batch, "adaptive_chunks": batch_size is None,
               "retry_quarantined": retry_quarantined, "now": now, "orgs": list(orgs), "resume": resume,
               "report_dir": report_dir}
    joining = bool(found) and bool(live_workers(dsn, run_id))  # another runner process works on this run now
    settings = RunSettings(run_id=run_id, spec=spec, batch_size=batch, resume=resume,
                           retry_quarantined=retry_quarantined, spec_info=spec_info(spec), options=options,
                           journals=found, adaptive=batch_size is None,
                           offset=random.random() if joining else 0.0)
    stop = stop or threading.Event()
    gate = Gate(spec.execution.off_peak_window, now=now, stop=stop)
    result = RunResult(run_id=run_id, spec=spec_info(spec), status="running", started_at=started, options=options)
    runners = _work(dsn, settings, scope, n_workers, progress or NullProgress(), throttle or NoThrottle(), gate,
                    hooks or EngineHooks(), stop)
    result.organizations = [r.result for r in runners]
    result.finished_at = datetime.now(UTC)
    _summarise(result)
    failed = [r for r in runners if r.result.status in ("failed", "busy")]
    if failed:
        first = failed[0]
        raise RunFailed(f"{len(failed)} organisation(s) did not finish: {first.result.organization_code} "
                        f"{first.result.error}", result) from first.exception
    return result


def _check_journals(run_id: str, spec: Spec, found: dict[str, journal.Journal], resume: bool) -> None:
    if not resume:
        if found:
            raise UsageError(f"run id {run_id} already exists (journal in {len(found)} organisation(s))",
                             hint="choose another --run-id, or continue it with --resume")
        return
    if not found:
        raise UsageError(f"cannot resume {run_id}: no journal of that run id in this database")
    for j in found.values():
        if j.status in ("rolled_back", "requires_review"):
            raise UsageError(f"cannot resume {run_id}: organisation {j.organization_code} was rolled back")
        if j.spec_sha256 != spec.sha256:
            raise UsageError(f"cannot resume {run_id}: it ran with spec sha256 {j.spec_sha256[:12] or '-'}..., "
                             f"this spec is {spec.sha256[:12] or '-'}...",
                             hint="resume with the same spec file the run started with")


def _work(dsn: str, settings: RunSettings, scope: list[tuple[str, str]], n_workers: int, progress: ProgressSink,
          throttle: Throttle, gate: Gate, hooks: EngineHooks, stop: threading.Event) -> list[OrgRunner]:
    at_once = max(1, min(n_workers, len(scope)))
    runners = [OrgRunner(dsn, settings, org_id, code, progress=progress, throttle=throttle, gate=gate, hooks=hooks,
                         stop=stop, sessions=max(1, n_workers // at_once)) for org_id, code in scope]
    jobs: queue.Queue[OrgRunner] = queue.Queue()
    for r in runners:  # already in priority order
        jobs.put(r)

    def worker() -> None:
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            job.run()

    threads = [threading.Thread(target=worker, name=f"hera-migrate-worker-{i}", daemon=True)
               for i in range(at_once)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        stop.set()  # workers stop between chunks; the current chunk commits or rolls back
        for t in threads:
            t.join()
        raise
    return runners


def _summarise(result: RunResult) -> None:
    phases: dict[str, float] = {}
    for org in result.organizations:
        for phase, seconds in org.seconds.items():
            phases[phase] = round(phases.get(phase, 0.0) + seconds, 3)
    result.seconds = phases
    statuses = {o.status for o in result.organizations}
    result.status = ("failed" if statuses & {"failed", "busy"} else
                     "incomplete" if "incomplete" in statuses else "completed")
    rates: dict[str, float] = {}
    migrated = sum(o.session.get("migrated", 0) for o in result.organizations)
    aliased = sum(o.session.get("aliased", 0) for o in result.organizations)
    if phases.get("reverse_repost"):
        rates["reverse_repost_txn_per_second"] = round(migrated / phases["reverse_repost"], 1)
    if phases.get("reporting_alias"):
        rates["reporting_alias_rows_per_second"] = round(aliased / phases["reporting_alias"], 1)
    wall = (result.finished_at - result.started_at).total_seconds() if result.finished_at else 0.0
    if wall > 0:
        rates["candidates_per_second_wall"] = round((migrated + aliased) / wall, 1)
    result.rates = rates


def summary_counts(result: RunResult) -> dict[str, int]:
    """Totals over organisations (for logs)."""
    out = {"migrated": 0, "aliased": 0, "quarantined": 0}
    for o in result.organizations:
        out["migrated"] += o.migrated
        out["aliased"] += o.aliased
        out["quarantined"] += o.quarantined_total
    return out


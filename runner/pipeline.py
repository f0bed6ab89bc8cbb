"""The verbs that move data or judge it — run, status, validate, report — as the CLI and the demo call them
(the verbs that undo, rollback and checkpoint, are in runner.operate): before-snapshot → migrate → after-snapshot +
diff + checks → results.json / index.html / junit.xml.

Everything returns the documented exit code (0 fine, 1 a critical check failed or a critical alert fired);
failures the operator must act on raise a HarnessError subclass with a hint (exit 2 or 3).

While `run` works, reports/<run_id>/index.html is a live dashboard (runner.report.live): re-rendered every few
seconds from a background thread with the progress so far and the journal's counters, reloading itself, until
the validation writes results.json and the final page rendered from it. The engine's progress goes through a
ThroughputRecorder, whose time series becomes results.json's performance.timeline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console

# re-exported: the CLI, the demo and the load session print through pipeline.make_console / print_table
from runner.console import make_console as make_console
from runner.console import print_table as print_table
from runner.contract import SNAPSHOT_FILE as SNAPSHOT_FILE  # re-exported: the CLI and tools use pipeline's
from runner.db.connect import connect
from runner.engine import faults
from runner.engine.outcome import RunResult
from runner.engine.throughput import ThroughputRecorder
from runner.errors import EXIT_OK, DataError, UsageError
from runner.report.live import LiveReport
from runner.spec import Spec, load_spec

if TYPE_CHECKING:
    from runner.engine.hooks import Throttle
    from runner.metrics import RunMetrics
    from runner.notify import Notifier
    from runner.validate.impact import HostSampler

REPORTS = Path("reports")


def report_dir_for(run_id: str, report_dir: Path | None) -> Path:
    return report_dir if report_dir is not None else REPORTS / run_id


def need_dsn(dsn: str | None, verb: str, *, spec: Path | None = None) -> str:
    """The DSN `verb` works on, else a usage error. With `spec`, the spec is loaded first, so its own problems
    (exit 2, FILE:LINE:COL) come before a missing database: its author fixes the file with no server at hand."""
    if spec is not None:
        load_spec(spec)
    if not dsn:
        raise UsageError(f"{verb} works on a HERA database: give --dsn DSN or set HERA_DSN "
                         "(an embedded server started for one command would be empty)")
    return dsn


@dataclass
class RunOptions:
    orgs: tuple[str, ...] = ()
    run_id: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    resume: bool = False
    retry_quarantined: bool = False
    now: bool = False
    report_dir: Path | None = None
    live_seconds: float | None = 3.0  # re-render the live index.html this often while running; None: no dashboard
    baseline_seconds: float = 1.0  # the host's CPU/memory baseline window right before migrating (impact.HostSampler)
    metrics_port: int | None = None  # live Prometheus metrics over HTTP (runner.metrics); 0: a free port
    metrics_addr: str = "127.0.0.1"
    metrics_textfile: Path | None = None  # ... and/or as a node_exporter textfile
    notify: tuple[str, ...] = ()  # --notify webhooks (URL or env:NAME), besides the spec's alerts.notify


@dataclass
class RunOutcome:
    exit_code: int
    run_id: str
    report_dir: Path
    html_path: Path | None
    results: dict[str, Any]


class SharedThrottleFinder(Protocol):
    """Finds a throttle another process shares through the report directory (runner.load.shared), or None."""

    def __call__(self, report_dir: Path, spec: Spec, console: Console | None = None, /) -> Throttle | None: ...


class LoadHook(Protocol):
    """A v1 load running alongside (runner.load.session): told when the migrate phase starts and ends; its
    measurements join the performance section of results.json."""

    def migrating(self) -> None: ...

    def migrated(self, result: RunResult) -> dict[str, Any]: ...


def run(dsn: str, spec_path: Path, opts: RunOptions, console: Console, *, progress: bool = True,
        throttle: Throttle | None = None, load: LoadHook | None = None,
        shared_throttle: SharedThrottleFinder | None = None, metrics: RunMetrics | None = None,
        notifier: Notifier | None = None) -> RunOutcome:
    """`throttle` paces the chunks; without one, `shared_throttle` may find one in the run's report directory (a
    `load --during` process sharing its live v1 latency there, see runner.load.shared); `load` is a load session
    around the run. `metrics` are live metrics its caller exposes (a load session); without them the run exposes its
    own as opts.metrics_* say. Alerts go to the webhooks of `notifier` plus the spec's (runner.notify); without one
    the run makes its own for opts.notify and the spec's, and also reports its end or its failure."""
    from runner import notify
    from runner.compile.scope import resolve_orgs
    from runner.engine import new_run_id, run_migration
    from runner.engine.progress import RichProgress
    from runner.metrics import ThrottleObservable, serve_metrics
    from runner.snapshot.extract import take_snapshot
    from runner.validate import validate_run
    from runner.validate.impact import HostSampler, server_is_local
    from runner.validate.snapshot import labels as snapshot_labels

    run_started = datetime.now(UTC)
    spec = load_spec(spec_path.resolve())  # the journal records the absolute path, so validate finds it later
    if opts.retry_quarantined and not opts.resume:
        raise UsageError("--retry-quarantined goes with --resume (it retries candidates a run quarantined)")
    run_id = opts.run_id if opts.run_id is not None else (None if opts.resume else new_run_id())
    if run_id is None:
        raise UsageError("--resume needs --run-id RUN_ID (the run to continue)")
    _check_run_id(run_id)  # before it names a directory: `--run-id ../x` must not create one outside reports/
    out = report_dir_for(run_id, opts.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    snapshot = out / SNAPSHOT_FILE
    phases: dict[str, float] = {}

    with connect(dsn) as conn:
        scope = resolve_orgs(conn, spec, opts.orgs)
    org_ids = [o for o, _ in scope]
    if not org_ids:
        raise UsageError("no organisation is in scope (spec scope.organizations and --org)")
    started = _journal_exists(dsn, run_id)
    if not opts.resume and started:  # refused before the before-snapshot of the existing run is overwritten
        raise UsageError(f"run id {run_id} already exists in this database",
                         hint="choose another --run-id, or continue it with --resume")
    if opts.resume and not started:
        # Nothing of the run is in the database (killed before its first journal write, or never started): the
        # same command that finishes a run after any crash starts it (docs/contract.md §4), and says which.
        console.print(f"[yellow]run {run_id} stopped before its first chunk (no journal yet): starting it again"
                      if snapshot.exists() else f"[yellow]nothing of run {run_id} exists yet: --resume starts it")
        opts = dataclasses.replace(opts, resume=False)
    if throttle is None and shared_throttle is not None:
        throttle = shared_throttle(out, spec, console)
    own = notifier is None  # else its caller (a load session) reports the end
    notes = notifier if notifier is not None else notify.Notifier(notify.cli_webhooks(opts.notify, console),
                                                                  console=console)
    notes.bind(run_id=run_id, report_dir=out)
    notes.add(notify.spec_webhooks(spec, console))
    live = _live_report(dsn, spec, run_id, out, scope, opts.live_seconds)
    sampler = HostSampler()  # the database host's CPU and memory, when it is this machine
    recorder = ThroughputRecorder()
    live.recorder = recorder
    local = server_is_local(dsn)
    exposed = contextlib.nullcontext(metrics) if metrics is not None else serve_metrics(
        run_id, port=opts.metrics_port, addr=opts.metrics_addr, textfile=opts.metrics_textfile, say=console.print)
    with (exposed as gauges, notes.guard("run") if own else contextlib.nullcontext(), live,
          sampler if local else contextlib.nullcontext()):
        if isinstance(throttle, ThrottleObservable):
            gauges.watch_throttle(throttle)
        has_before = snapshot.exists() and "before" in snapshot_labels(snapshot)
        if opts.resume and not has_before:
            console.print(f"[yellow]no before-snapshot in {snapshot}: the diff will be skipped for this run")
        elif not opts.resume or not has_before:
            live.set_phase("snapshot_before")
            gauges.set_phase("snapshot_before")
            t0 = time.monotonic()
            info = take_snapshot(dsn, org_ids, snapshot, "before")
            faults.point("snapshot")  # test-only: HERA_FAULT_KILL=snapshot:1 dies here (no journal yet)
            phases["snapshot_before"] = time.monotonic() - t0
            console.print(f"before-snapshot: {sum(info.rows.values()):,} rows of {len(org_ids)} organisation(s) "
                          f"in {phases['snapshot_before']:.1f}s → {snapshot}")

        def migrate() -> RunResult:
            return run_migration(dsn, spec, orgs=opts.orgs, run_id=run_id, workers=opts.workers,
                                 batch_size=opts.batch_size, resume=opts.resume,
                                 retry_quarantined=opts.retry_quarantined, now=opts.now, throttle=throttle,
                                 progress=gauges.sink(recorder), report_dir=str(out.resolve()))

        sampler.mark("baseline")  # the database host just before the migration: what "increase" is measured from
        sampler.wait(opts.baseline_seconds)
        sampler.mark("during")
        recorder.restart()
        live.set_phase("migrating", phases)
        gauges.set_phase("migrating")
        if load is not None:
            load.migrating()
        t0 = time.monotonic()
        try:
            if progress:
                with RichProgress(console) as sink:
                    recorder.inner = sink
                    result = migrate()
            else:
                result = migrate()
        finally:
            recorder.stop()
            recorder.inner = None
            sampler.stop()
        phases["migrate"] = time.monotonic() - t0
        console.print(run_summary(result))
        performance: dict[str, Any] = {"phases": phases}
        if load is not None:  # the load's latency and phases join the run's own
            measured = load.migrated(result)
            performance = {**measured, "phases": {**phases, **(measured.get("phases") or {})}}
        performance["timeline"] = recorder.timeline()
        others = other_runners(dsn, run_id)
        if others:  # cooperating runners: the last one to finish validates the whole run
            live.stop()
            gauges.set_phase("done")
            where = ", ".join(sorted({f"{w.get('host')}:{w.get('pid')}" for w in others}))
            console.print(f"this runner's share of {run_id} is done; {len(others)} worker(s) of other runner "
                          f"process(es) ({where}) still work on it: the last to finish validates (or run "
                          f"`hera-migrate validate {run_id}`)")
            if own:
                notes.close()
            return RunOutcome(EXIT_OK, run_id, out, None, {})

        live.set_phase("validating", phases)
        gauges.set_phase("validating")
        live.stop()  # from here on only the validation writes index.html (its final page)
        faults.point("validate")  # test-only: HERA_FAULT_KILL=validate:1 dies before validating
        t0 = time.monotonic()
        outcome = validate_run(dsn, spec, run_id, report_dir=out, run=result,
                               snapshot_path=snapshot if snapshot.exists() else None,
                               performance=performance, host=host_facts(sampler, local), started_at=run_started)
        phases["validate"] = time.monotonic() - t0
        notes.alerts(outcome.results, outcome.html_path, command="run")
        gauges.set_integrity_score(outcome.results.get("integrity_score"))
        gauges.set_phase("done")
    console.print(verdict_line(outcome.results, outcome.html_path))
    if own:
        notes.finished("run", outcome.results, outcome.exit_code, outcome.html_path)
        notes.close()
    return RunOutcome(outcome.exit_code, run_id, out, outcome.html_path, outcome.results)


def other_runners(dsn: str, run_id: str) -> list[dict[str, Any]]:
    """Live workers of `run_id` in other processes (this process's sessions are closed once the engine returns)."""
    import os
    import socket

    from runner.engine.status import live_workers

    me = (socket.gethostname(), os.getpid())
    return [w for w in live_workers(dsn, run_id) if (w.get("host"), w.get("pid")) != me]


def host_facts(sampler: HostSampler, local: bool) -> dict[str, Any]:
    """The database host's CPU/memory windows for results.json (runner.validate.impact), or why there are none."""
    if not local:
        return {"windows": None, "reason": "the database server is not on this machine: its CPU and memory are not "
                                           "visible from here"}
    if not sampler.available:
        return {"windows": None, "reason": sampler.reason}
    return {"windows": sampler.windows(), "reason": None}


def _live_report(dsn: str, spec: Spec, run_id: str, out: Path, scope: list[tuple[str, str]],
                 every: float | None) -> LiveReport:
    """The live dashboard of a run (a no-op one when `every` is None or 0)."""
    from runner.engine import run_status

    def journal() -> dict[str, Any]:
        return run_status(dsn, run_id).as_dict()

    info = {"path": None if spec.path is None else str(spec.path), "sha256": spec.sha256, "name": spec.name,
            "version": spec.version}
    return LiveReport(out / "index.html", run_id=run_id, spec=info, orgs=scope, journal=journal,
                      every=every or 0.0, enabled=bool(every))


def _check_run_id(run_id: str) -> None:
    from runner.engine.context import validate_run_id

    if not validate_run_id(run_id):
        raise UsageError(f"invalid run id {run_id!r}: use 1-64 characters of A-Z a-z 0-9 . _ -")


def _journal_exists(dsn: str, run_id: str) -> bool:
    from runner.engine import journal
    from runner.engine.context import Sql

    sql = Sql()
    with connect(dsn) as conn:
        return bool(journal.find(conn, sql, [o for o, _ in journal.all_orgs(conn, sql)], run_id))


def spec_of_run(dsn: str, run_id: str) -> Spec:
    """The spec a run was made with, from its journal; refuses a spec file that changed since."""
    from runner.engine import run_status

    status = run_status(dsn, run_id)
    if not status.organizations:
        raise DataError(f"no run {run_id} in this database", hint="hera-migrate status RUN_ID lists what is there")
    info = status.organizations[0].spec
    path = info.get("path")
    if not path or not Path(path).exists():
        raise UsageError(f"the spec of run {run_id} ({path}) is not readable from here")
    spec = load_spec(Path(path))
    if info.get("sha256") and spec.sha256 != info["sha256"]:
        raise UsageError(f"{path} changed since run {run_id} (sha256 {spec.sha256[:12]}… ≠ {info['sha256'][:12]}…); "
                         "validate with the spec the run used")
    return spec


def validate(dsn: str, run_id: str, report_dir: Path | None, console: Console, *,
             notify: tuple[str, ...] = ()) -> RunOutcome:
    """`notify`: --notify webhooks (URL or env:NAME); they and the spec's alerts.notify get every alert that
    fires and the verdict (runner.notify)."""
    from runner import notify as notifying
    from runner.engine import run_status
    from runner.validate import validate_run

    spec = spec_of_run(dsn, run_id)
    out = report_dir_for(run_id, report_dir)
    out.mkdir(parents=True, exist_ok=True)
    snapshot = out / SNAPSHOT_FILE
    notes = notifying.for_run(spec, notify, out, run_id=run_id, console=console)
    with notes.guard("validate"):
        status = run_status(dsn, run_id)
        outcome = validate_run(dsn, spec, run_id, report_dir=out,
                               snapshot_path=snapshot if snapshot.exists() else None)
        notes.alerts(outcome.results, outcome.html_path, command="validate")
    if not snapshot.exists():
        console.print(f"[yellow]no {snapshot}: validated without the before/after diff")
    console.print(f"journal status: {status.status}")
    console.print(verdict_line(outcome.results, outcome.html_path))
    notes.finished("validate", outcome.results, outcome.exit_code, outcome.html_path)
    notes.close()
    return RunOutcome(outcome.exit_code, run_id, out, outcome.html_path, outcome.results)


def status(dsn: str, run_id: str, console: Console, *, as_json: bool = False) -> int:
    from runner.engine import run_status

    st = run_status(dsn, run_id)
    if not st.organizations:
        raise DataError(f"no run {run_id} in this database (no MIGRATION_RUN journal with that id)")
    if as_json:
        console.print_json(json.dumps(st.as_dict(), default=str))
        return EXIT_OK
    print_table(console, f"{run_id}: {st.status}",
                ["organisation", "status", "phase", "done / total", "migrated", "reversed+reposted", "aliased",
                 "quarantined", "chunks", "last chunk"],
                [[o.organization_code, o.status, o.phase or "-", f"{o.done:,} / {o.total:,}",
                  f"{o.migrated + o.aliased:,}", f"{o.migrated:,}", f"{o.aliased:,}",
                  f"{sum(o.quarantined.values()):,}", f"{o.chunks:,}",
                  o.last_chunk_at.isoformat(timespec="seconds") if o.last_chunk_at else "-"]
                 for o in st.organizations])
    workers = [(o.organization_code, w) for o in st.organizations for w in o.fields.get("workers", [])]
    if workers:
        print_table(console, "workers (live: its session is open now)",
                    ["organisation", "worker (host:pid:n)", "state", "tier", "chunks", "handled", "rate /s",
                     "last chunk"],
                    [[code, str(w.get("name")), "live" if w.get("alive") else
                      "done" if w.get("state") == "done" else "gone", str(w.get("tier") or "-"),
                      f"{int(w.get('chunks') or 0):,}",
                      f"{int(w.get('migrated') or 0) + int(w.get('aliased') or 0) + int(w.get('quarantined') or 0):,}",
                      str(w.get("rate") or "-"), str(w.get("last_chunk_at") or "-")[:19]] for code, w in workers])
    named: dict[str, list[dict[str, Any]]] = {}
    for c in st.checkpoints:
        named.setdefault(c["name"], []).append(c)
    if named:
        print_table(console, "checkpoints (rollback RUN_ID --to NAME)",
                    ["checkpoint", "kind", "organisations", "first recorded", "migrated + aliased at the cut"],
                    [[name, cs[0]["kind"], ", ".join(c["organization_code"] for c in cs)[:60],
                      min(c["at"] for c in cs), f"{sum(_done_at_cut(c) for c in cs):,}"]
                     for name, cs in named.items()])
    return EXIT_OK


def _done_at_cut(checkpoint: dict[str, Any]) -> int:
    counters = checkpoint.get("counters") or {}
    return int(counters.get("migrated") or 0) + int(counters.get("aliased") or 0)


def report(run_id: str, report_dir: Path | None, console: Console) -> int:
    from runner.validate import render_report

    _check_run_id(run_id)
    results = report_dir_for(run_id, report_dir) / "results.json"
    if not results.exists():
        raise UsageError(f"{results} does not exist: run 'hera-migrate validate {run_id}' first")
    html = render_report(results)
    console.print(f"report: {html.resolve()}")
    return EXIT_OK


def render(results_json: Path) -> Path:
    from runner.validate import render_report

    return render_report(results_json)


def run_summary(result: RunResult) -> str:
    """The engine's counts, in the words of results.json's `counts`: migrated = reversed+reposted + aliased."""
    lines = [f"run {result.run_id}: {result.status}"]
    for o in result.organizations:
        q = o.quarantined_total
        lines.append(f"  {o.organization_code}: {o.migrated + o.aliased:,} migrated ({o.migrated:,} reversed+reposted, "
                     f"{o.aliased:,} aliased), "
                     f"{q:,} quarantined" + (f" ({', '.join(f'{k} {v}' for k, v in o.quarantine_reasons.items())})"
                                             if q else "")
                     + (f"; entities {', '.join(f'{k} {v}' for k, v in o.entities.items() if v)}"
                        if any(o.entities.values()) else ""))
    return "\n".join(lines)


def verdict_line(results: dict[str, Any], html: Path | None) -> str:
    from runner.report.html import VERDICTS

    alerts = [a for a in results.get("alerts", []) if a.get("level") == "critical"]
    failed = [c["id"] for c in results.get("checks", []) if c.get("status") in ("failed", "error")
              and c.get("severity") == "critical"]
    status = str(results.get("status"))
    extra = f"; critical: {', '.join(failed[:5])}" if failed else ""
    extra += f"; {len(alerts)} critical alert(s)" if alerts else ""
    score = results.get("integrity_score")
    counts = results.get("counts") or {}
    checked = (results.get("score") or {}).get("records_checked", 0)
    scored = ("integrity score undefined (0 records checked)" if score is None
              else f"integrity score {score} over {checked:,} records")
    tally = (f"; {counts.get('migrated', 0):,} migrated ({counts.get('reverse_reposted', 0):,} reversed+reposted, "
             f"{counts.get('aliased', 0):,} aliased), {counts.get('quarantined', 0):,} quarantined, "
             f"{(counts.get('checks') or {}).get('total', 0)} checks") if counts else ""
    where = f"\nreport: {html.resolve()}" if html is not None else ""
    return f"validation {VERDICTS.get(status, status.upper())}: {scored}{extra}{tally}{where}"

"""The operator's verbs that undo or mark: `rollback RUN_ID` (whole, `--to` a checkpoint, `--only` parts; and the
demo's rehearsal), `checkpoint RUN_ID NAME`, and the emergency `rollback --all-runs` with its one summary report
(summary.json, and index.html rendered from it alone). Every rollback rewrites the run's report
(runner.rollback_report): the report always tells the run's current state.

Every run the emergency rollback undid also gets its own report rewritten (reports/<run id>/, as `rollback RUN_ID`
does). The row-for-row comparison with a run's before-snapshot is made only where it can hold: when no older run
of the same organisations was rolled back with it (that older run's before-snapshot is then the reference).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from runner.console import print_table
from runner.db.connect import connect
from runner.engine.outcome import RollbackResult
from runner.errors import EXIT_OK, HarnessError, UsageError
from runner.report.files import write_atomic

if TYPE_CHECKING:
    from runner.engine.hooks import ProgressSink
    from runner.engine.rollback_all import AllRunsResult
    from runner.metrics import RunMetrics
    from runner.notify import Notifier

SUMMARY = "summary.json"


def checkpoint(dsn: str, run_id: str, name: str, console: Console) -> int:
    """Record checkpoint `name` across every organisation of the run (runner/engine/checkpoints.py)."""
    from runner.compile.scope import resolve_orgs
    from runner.engine import checkpoints, run_status
    from runner.pipeline import spec_of_run

    st = run_status(dsn, run_id)
    scope = [o.organization_id for o in st.organizations]
    try:  # every organisation the spec lets the run touch, also those it has not journaled yet
        spec = spec_of_run(dsn, run_id)
        with connect(dsn) as conn:
            scope += [o for o, _ in resolve_orgs(conn, spec, ())]
    except HarnessError as exc:  # the spec is not readable here: the journals' organisations are the scope
        console.print(f"[yellow]the run's spec could not be read ({str(exc).strip()}); the checkpoint covers the "
                      f"{len(scope)} organisation(s) the run has journaled so far")
    recorded = checkpoints.record_named(dsn, run_id, name, sorted(set(scope)))
    print_table(console, f"checkpoint {name} of {run_id} (seq {recorded[0].seq if recorded else '-'})",
                ["organisation", "migrated", "aliased", "chunks", "quarantined"],
                [[c.organization_code, *(f"{int(c.counters.get(k) or 0):,}"
                                         for k in ("migrated", "aliased", "chunks", "quarantined"))]
                 for c in recorded])
    console.print(f"`hera-migrate rollback {run_id} --to {name}` returns the run to this point")
    return EXIT_OK


def rollback_all(dsn: str, console: Console, *, progress: bool = True, report_dir: Path | None = None,
                 workers: int = 4, reports_root: Path = Path("reports"), metrics: RunMetrics | None = None,
                 notes: Notifier | None = None) -> int:
    """Undo every run in the database; write one summary report; rewrite each run's own report (where `run` wrote
    it, from the journal; else `reports_root`/RUN_ID)."""
    from runner.engine.progress import RichProgress
    from runner.engine.rollback_all import AllRunsFailed, rollback_all_runs

    started = datetime.now(UTC)
    out = report_dir or reports_root / f"rollback-all-{started:%Y%m%dT%H%M%SZ}"
    failed: AllRunsFailed | None = None
    def undo(sink: ProgressSink | None) -> AllRunsResult:
        if metrics is not None:
            metrics.set_phase("rolling_back")
        return rollback_all_runs(dsn, workers=workers, progress=metrics.sink(sink) if metrics is not None else sink)

    try:
        if progress:
            with RichProgress(console, label="emergency rollback") as bars:
                result = undo(bars)
        else:
            result = undo(None)
    except AllRunsFailed as exc:
        failed, result = exc, exc.result
    if metrics is not None:
        metrics.set_phase("done" if failed is None else "failed")
    summary = _summary(dsn, result, started, reports_root)
    html = write_summary(summary, out)
    for run in result.runs:
        print_rollback(console, run)
    if result.already:
        console.print(f"{len(result.already)} (run, organisation) pair(s) were rolled back before: verified again")
    if not result.runs:
        console.print("no migration run in this database: nothing to roll back")
    console.print(f"emergency rollback: {result.status} · {len(result.runs)} run(s) in {result.seconds:.1f}s · "
                  f"summary {html.resolve()}")
    if failed is not None:
        raise failed
    code = EXIT_OK if result.status == "rolled_back" else 1
    if notes is not None:
        notes.rollback_finished(result.status, code, html=html,
                                detail=f"emergency rollback of {len(result.runs)} run(s), {summary['conflicts']} "
                                       "conflict(s) to review")
    return code


def _summary(dsn: str, result: AllRunsResult, started: datetime, reports_root: Path) -> dict[str, Any]:
    from runner import rollback_report
    from runner.report import record_rollback

    runs = []
    order = list(result.orgs_by_run)  # newest first
    for run in result.runs:
        older = {r for r in order[order.index(run.run_id) + 1:]
                 if set(result.orgs_by_run[r]) & set(result.orgs_by_run[run.run_id])}
        report_dir = Path(result.report_dir_by_run.get(run.run_id) or reports_root / run.run_id)
        entry: dict[str, Any] = {**run.as_dict(), "started_at": result.started_by_run.get(run.run_id),
                                 "report": None, "comparison": None}
        if (report_dir / "results.json").exists():
            section = rollback_report.section(dsn, run, report_dir, started, rehearsal=False, partial=bool(older))
            if older:
                section["comparison"]["reason"] = (
                    f"older run(s) {', '.join(sorted(older))} of the same organisations were rolled back too: "
                    "the oldest run's before-snapshot is the state to compare with")
            written = record_rollback(report_dir, section)
            entry["comparison"] = section["comparison"]
            entry["report"] = str(written["html"]) if written else None
        else:
            entry["comparison"] = {"made": False, "reason": f"no report of the run in {report_dir}"}
        runs.append(entry)
    return {"kind": "emergency_rollback", "status": result.status, "started_at": _iso(started),
            "finished_at": _iso(datetime.now(UTC)), "seconds": round(result.seconds, 3),
            "database": _where(dsn), "runs": runs, "already_rolled_back": list(result.already),
            "verified": bool(runs) and all(o["verified"] for r in runs for o in r["organizations"]),
            "conflicts": sum(len(o["conflicts"]) for r in runs for o in r["organizations"])}


def write_summary(summary: dict[str, Any], out: Path) -> Path:
    """summary.json, then index.html rendered from that file alone."""
    out.mkdir(parents=True, exist_ok=True)
    path = write_atomic(out / SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")
    return render_summary(path)


def render_summary(summary_json: Path) -> Path:
    from runner.report.html import render_template

    summary = json.loads(summary_json.read_text(encoding="utf-8"))
    return write_atomic(summary_json.with_name("index.html"), render_template("emergency.html.j2", s=summary))


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _where(dsn: str) -> dict[str, Any]:
    with connect(dsn) as conn:
        info = conn.info
        return {"host": info.host, "port": info.port, "database": info.dbname, "user": info.user}


# --- rollback RUN_ID (and the demo's rehearsal) --------------------------------------------------------------


def rollback(dsn: str, run_id: str, orgs: tuple[str, ...], console: Console, *, progress: bool = True,
             report_dir: Path | None = None, to: str | None = None, only: tuple[str, ...] = (),
             workers: int = 1, metrics: RunMetrics | None = None, notes: Notifier | None = None) -> int:
    """Roll the run back (all of it, or what it did after checkpoint `to`, or `only` some parts), then rewrite
    its report (results.json + index.html) to say so: the report always tells the run's current state
    (runner.rollback_report). `notes` gets the end of the rollback (runner.notify)."""
    from runner.engine.context import validate_run_id
    from runner.pipeline import report_dir_for

    if not validate_run_id(run_id):
        raise UsageError(f"invalid run id {run_id!r}: use 1-64 characters of A-Z a-z 0-9 . _ -")
    started = datetime.now(UTC)
    out = report_dir_for(run_id, report_dir)
    result = rollback_result(dsn, run_id, orgs, console, progress=progress, to=to, only=only, workers=workers,
                             metrics=metrics)
    _record_rollback(dsn, run_id, result, out, started, console, rehearsal=False,
                     partial=bool(orgs) or bool(to) or bool(only))
    if to and result.status == "rolled_back":
        console.print(f"run {run_id} is back at checkpoint {to}: `hera-migrate run SPEC --run-id {run_id} --resume` "
                      "continues it from there")
    code = EXIT_OK if result.status == "rolled_back" else 1
    if notes is not None:
        conflicts = sum(len(o.conflicts) for o in result.organizations)
        notes.rollback_finished(result.status, code, html=out / "index.html" if (out / "index.html").exists() else None,
                                detail=f"{conflicts} conflict(s) to review" if conflicts else None)
    return code


def rehearse_rollback(dsn: str, run_id: str, report_dir: Path, console: Console, *,
                      exclude_created_by: str | None = None) -> dict[str, Any]:
    """The demo's rehearsal: the same rollback and report rewrite as `rollback`, marked as a rehearsal;
    `exclude_created_by` leaves that actor's rows out of the comparison (a rehearsal under a v1 load)."""
    started = datetime.now(UTC)
    result = rollback_result(dsn, run_id, (), console, progress=False)
    return _record_rollback(dsn, run_id, result, report_dir, started, console, rehearsal=True, partial=False,
                            exclude_created_by=exclude_created_by)


def _record_rollback(dsn: str, run_id: str, result: RollbackResult, out: Path, started: datetime,
                     console: Console, *, rehearsal: bool, partial: bool,
                     exclude_created_by: str | None = None) -> dict[str, Any]:
    from runner import rollback_report
    from runner.report import record_rollback

    section = rollback_report.section(dsn, result, out, started, rehearsal=rehearsal, partial=partial,
                                      exclude_created_by=exclude_created_by)
    compared = section["comparison"]
    if compared["made"]:
        console.print("before-snapshot vs after rollback: " + (
            "identical in all six tables (journal kept as audit trail)" if compared["identical"] else
            "DIFFERENT: " + ", ".join(f"{t} {n}" for t, n in compared["differing_rows"].items() if n)))
    else:
        console.print(f"no row-for-row comparison with the before-snapshot: {compared['reason']}")
    written = record_rollback(out, section)
    if written is None:
        console.print(f"[yellow]no report of {run_id} in {out} to update (results.json missing)")
    else:
        console.print(f"report rewritten (run rolled back): {written['html'].resolve()}")
    return section


def rollback_result(dsn: str, run_id: str, orgs: tuple[str, ...], console: Console, *, progress: bool = True,
                    to: str | None = None, only: tuple[str, ...] = (), workers: int = 1,
                    metrics: RunMetrics | None = None) -> RollbackResult:
    from runner.engine import rollback_run
    from runner.engine.progress import RichProgress

    def undo(sink: ProgressSink | None) -> RollbackResult:
        if metrics is not None:
            metrics.set_phase("rolling_back")
        out = rollback_run(dsn, run_id, orgs=orgs, to=to, only=only, workers=workers,
                           progress=metrics.sink(sink) if metrics is not None else sink)
        if metrics is not None:
            metrics.set_phase("done")
        return out

    if progress:
        with RichProgress(console, label="rolling back") as bars:
            result = undo(bars)
    else:
        result = undo(None)
    print_rollback(console, result)
    return result


def print_rollback(console: Console, result: RollbackResult) -> None:
    run_id = result.run_id
    scope = result.scope or {}
    what = (f" to checkpoint {scope['to']}" if scope.get("to") else "") + (
        f" (only {', '.join(scope['only'])})" if scope.get("only") else "")
    print_table(console, f"rollback of {run_id}{what}: {result.status} in {result.seconds:.1f}s",
                ["organisation", "status", "originals restored", "reposts deleted", "reversals deleted",
                 "aliases restored", "entities", "conflicts", "verified"],
                [[o.organization_code, o.status, f"{o.originals_restored:,}", f"{o.reposts_deleted:,}",
                  f"{o.reversals_deleted:,}", f"{o.aliases_restored:,}",
                  ", ".join(f"{k} {v}" for k, v in sorted(o.entities.items()) if v) or "-",
                  str(len(o.conflicts)), "yes" if o.verified else "NO"] for o in result.organizations])
    for o in result.organizations:
        for c in o.conflicts[:20]:
            console.print(f"  REQUIRES_REVIEW {o.organization_code} {c.role} {c.transaction_id}: {c.reason}")

"""`rollback --all-runs`: the emergency undo of every migration run in the database.

Every run journal of every visible organisation is found; per organisation the runs are undone newest first (a
run's marks never cover another run's rows, but a newer run may have been made on top of an older one's state),
organisations in parallel on `workers` sessions, each (run, organisation) with the same chunked, verified,
resumable rollback as `rollback RUN_ID`. A journal already rolled back (by an earlier, perhaps killed, invocation)
is only verified again, so the same command after a crash continues where it stopped. The result lists every run
with its organisations, conflicts and verification; the counts are the journal's cumulative rollback counters
(what every invocation restored), so a resumed emergency rollback still reports all of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from runner.db.connect import connect
from runner.engine import journal
from runner.engine.context import Sql
from runner.engine.hooks import EngineHooks, NullProgress, ProgressSink
from runner.engine.outcome import OrgRollbackResult, RollbackResult
from runner.engine.rollback import WHOLE, Job, Scope, overall_status, run_parallel
from runner.errors import HarnessError

DONE = "rolled_back"


@dataclass
class AllRunsResult:
    status: str = "running"
    runs: list[RollbackResult] = field(default_factory=list)  # newest run first
    already: list[dict[str, str]] = field(default_factory=list)  # (run, organisation) rolled back before
    orgs_by_run: dict[str, list[str]] = field(default_factory=dict)  # every organisation each run journaled
    started_by_run: dict[str, str] = field(default_factory=dict)
    report_dir_by_run: dict[str, str] = field(default_factory=dict)  # where `run` wrote each run's report
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "seconds": round(self.seconds, 3), "already": list(self.already),
                "runs": [{**r.as_dict(), "started_at": self.started_by_run.get(r.run_id)} for r in self.runs]}


def _cumulative_counts(dsn: str, journals: list[journal.Journal], by_run: dict[str, RollbackResult]) -> None:
    sql = Sql()
    with connect(dsn) as conn:
        fields = journal.read_fields(conn, sql, sorted({j.organization_id for j in journals}), [j.id for j in journals])
        conn.rollback()
    for j in journals:
        run = by_run.get(str(j.metadata.get("run_id")))
        res = next((o for o in run.organizations if o.organization_id == j.organization_id), None) if run else None
        if res is None:
            continue
        f = fields.get(j.id, {})
        for attr, name in (("originals_restored", "rollback_originals"), ("reposts_deleted", "rollback_reposts"),
                           ("reversals_deleted", "rollback_reversals"), ("aliases_restored", "rollback_aliases")):
            setattr(res, attr, max(getattr(res, attr), int(f.get(name) or 0)))


class AllRunsFailed(HarnessError):
    def __init__(self, message: str, result: AllRunsResult) -> None:
        super().__init__(message, hint="run `rollback --all-runs` again: it continues where it stopped")
        self.result = result


def all_journals(dsn: str) -> list[journal.Journal]:
    sql = Sql()
    with connect(dsn) as conn:
        visible = [o for o, _ in journal.all_orgs(conn, sql)]
        rows = sql.rows(conn, "rollback/all_journals", org_ids=visible)
        conn.rollback()
    return [journal.Journal(id=r[0], organization_id=r[1], organization_code=r[2],
                            metadata={"run_id": r[4], **(r[3] or {})}) for r in rows]


def rollback_all_runs(dsn: str, *, workers: int = 4, progress: ProgressSink | None = None,
                      hooks: EngineHooks | None = None, batch_size: int | None = None) -> AllRunsResult:
    t0 = time.monotonic()
    sink, hooks = progress or NullProgress(), hooks or EngineHooks()
    journals = all_journals(dsn)
    out = AllRunsResult()
    by_run: dict[str, RollbackResult] = {}
    per_org: dict[str, list[tuple[journal.Journal, OrgRollbackResult]]] = {}
    for j in journals:  # newest first
        run_id = str(j.metadata.get("run_id"))
        out.orgs_by_run.setdefault(run_id, []).append(j.organization_id)
        out.started_by_run.setdefault(run_id, str(j.metadata.get("started_at") or ""))
        report_dir = (j.metadata.get("options") or {}).get("report_dir")
        if report_dir:
            out.report_dir_by_run.setdefault(run_id, str(report_dir))
        if j.status == DONE:
            out.already.append({"run_id": run_id, "organization_code": j.organization_code})
        if run_id not in by_run:
            by_run[run_id] = RollbackResult(run_id=run_id, status="running")
            out.runs.append(by_run[run_id])
        res = OrgRollbackResult(organization_id=j.organization_id, organization_code=j.organization_code)
        by_run[run_id].organizations.append(res)
        per_org.setdefault(j.organization_id, []).append((j, res))
    # each organisation's runs, newest first, one group
    groups: list[list[Job]] = [[(j, WHOLE, res) for j, res in jobs] for jobs in per_org.values()]
    errors = run_parallel(dsn, groups, Scope(), sink, hooks, batch_size, workers)
    _cumulative_counts(dsn, journals, by_run)
    for r in out.runs:
        r.status = overall_status(r)
        r.seconds = sum(o.seconds for o in r.organizations)
    out.seconds = time.monotonic() - t0
    statuses = {r.status for r in out.runs}
    out.status = ("failed" if "failed" in statuses else "requires_review" if "requires_review" in statuses else
                  "incomplete" if "incomplete" in statuses else DONE)
    if errors:
        raise AllRunsFailed(f"the emergency rollback did not finish in {len(errors)} (run, organisation) "
                            f"pair(s): {str(errors[0]).strip()}", out) from errors[0]
    return out

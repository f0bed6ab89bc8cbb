"""`validate_run`: every check of the spec against one run, the three levels, the score, alerts and the report.

1. The run's organisations: those with a journal entity (MIGRATION_RUN, entity_code = run id), plus those of
   `run` (the engine's RunResult, when the validation follows a run in the same process).
2. Snapshots: when `snapshot_path` holds a `before` snapshot, a fresh `after` snapshot is taken (docs/contract.md §4,
   `validate`), trial_balance_unchanged compares the two and alias_only_metadata adds a full before/after
   comparison; the snapshot layer's diff runs unless `diff` is given. Without snapshots both checks use
   their PostgreSQL form. A snapshot that cannot be taken or read is noted in results.json; the PostgreSQL forms
   take over.
3. All PostgreSQL checks in one REPEATABLE READ READ ONLY transaction (runner.validate.execute), record and
   aggregate checks once per organisation, system checks once.
4. Level 1 (records.jsonl), level 2 (per organisation), level 3 (system), the integrity score, alerts.
5. records.jsonl, then results.json (the source of truth) and index.html and junit.xml rendered from it alone,
   all through the report layer (runner.report.write_reports), the one place results.json is written.
Exit code: 1 when a critical check failed or errored, or a critical alert fired; else 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from runner.db.connect import connect
from runner.engine.outcome import RunResult
from runner.errors import DataError, HarnessError
from runner.report import previous_rollback, write_reports
from runner.snapshot.diff import DiffResult
from runner.spec.model import CheckDef, Spec
from runner.validate import breakdown, builtin, effects, environment, records, snapshot, trial_balance
from runner.validate.assemble import build, organization, performance_section
from runner.validate.effects import DiffFailure
from runner.validate.execute import Session
from runner.validate.outcome import CheckOutcome, OrgCheck, combine, errored, merge, tally
from runner.validate.runfacts import RunFacts

RECORDS = "records.jsonl"


@dataclass(frozen=True)
class ValidationOutcome:
    exit_code: int
    results: dict[str, Any]  # results.json as written
    results_path: Path
    html_path: Path
    junit_path: Path
    records_path: Path
    integrity_score: float | None  # None: nothing was checked
    status: str


def _orgs(session: Session, run_id: str, run: RunFacts | None) -> list[tuple[str, str]]:
    found = [(str(r[0]), str(r[1])) for r in session.rows(builtin.helper("journal_orgs", run_id, org_ids=[]))]
    known = {o for o, _ in found}
    for org_id, org in (run.organizations if run is not None else {}).items():
        if org_id not in known:
            found.append((org_id, org.organization_code or org_id))
            known.add(org_id)
    return found


def _checked_records(session: Session, spec: Spec, run_id: str, org_ids: list[str]) -> dict[str, int] | None:
    """The level-1 records per organisation (the rows records.level1 will judge, in the same snapshot): what a
    percentage threshold is a percentage of. Counted only when some check has one."""
    if not any(check.uses_percent for check in spec.validations.checks()):
        return None
    return {org: int(session.rows(builtin.helper("record_count", run_id, org_id=org))[0][0]) for org in org_ids}


class _Validation:
    def __init__(self, spec: Spec, run_id: str, session: Session, orgs: list[tuple[str, str]],
                 snap: Path | None, checked: dict[str, int] | None = None) -> None:
        self.spec, self.run_id, self.session, self.orgs, self.snap = spec, run_id, session, orgs, snap
        self.checked = checked  # records per organisation for percentage thresholds (None: not counted)
        self.org_ids = [o for o, _ in orgs]
        self.resolved = {org: builtin.Resolved.build(spec, self.session.rows(
            builtin.helper("run_codes", run_id, org_id=org))) for org in self.org_ids}

    def run(self, check: CheckDef) -> CheckOutcome:
        t0 = time.monotonic()
        description = builtin.DESCRIPTIONS.get(check.id, "")
        if check.kind == "custom":
            description = next((c.description for c in self.spec.validations.custom if c.id == check.id), "")
            per = ([self.session.custom(check, self.run_id, None)] if check.level == "system"
                   else [self.session.custom(check, self.run_id, org) for org in self.org_ids])
            return combine(check, description, per, seconds=time.monotonic() - t0, checked=self.checked)
        if check.id == "trial_balance_unchanged" and self.snap is not None:
            return combine(check, description, self._tb_snapshot(check), source="snapshot",
                           seconds=time.monotonic() - t0, checked=self.checked)
        if check.level == "system":
            stmt = builtin.statement(check, self.spec, self.run_id, builtin.Resolved(), org_ids=self.org_ids)
            per = [self.session.builtin(check, stmt, None)]
        else:
            per = [self.session.builtin(check, builtin.statement(check, self.spec, self.run_id, self.resolved[org],
                                                                 org_id=org), org) for org in self.org_ids]
        source = "postgresql"
        if check.id == "alias_only_metadata" and self.snap is not None:
            source = "postgresql+snapshot"
            self._alias_snapshot(check, per)
        return combine(check, description, per, source=source, seconds=time.monotonic() - t0, checked=self.checked)

    def _tb_snapshot(self, check: CheckDef) -> list[OrgCheck]:
        assert self.snap is not None
        try:
            rows = snapshot.trial_balance_rows(self.snap, self.run_id, self.org_ids,
                                               *builtin.trial_balance_params(self.spec, check))
        except Exception as exc:  # a check never crashes the validation
            return [errored(org, f"snapshot trial balance failed: {exc}") for org in self.org_ids]
        return [tally(check, org, [r for r in rows if r[0] == org]) for org in self.org_ids]

    def _alias_snapshot(self, check: CheckDef, per: list[OrgCheck]) -> None:
        assert self.snap is not None
        try:
            rows = snapshot.alias_rows(self.snap, self.run_id, self.org_ids)
        except Exception as exc:
            for org in per:
                org.status, org.error = "error", f"snapshot comparison failed: {exc}"
            return
        for org in per:
            merge(check, org, [r for r in rows if r[0] == org.organization_id])


def _snapshots(dsn: str, org_ids: list[str], path: Path | None, phases: dict[str, float]) -> tuple[
        Path | None, dict[str, Any]]:
    info: dict[str, Any] = {"path": None if path is None else str(path), "before": False, "after": False,
                            "error": None}
    if path is None or "before" not in snapshot.labels(path):
        return None, info
    info["before"] = True
    t0 = time.monotonic()
    try:
        from runner.snapshot.extract import take_snapshot

        take_snapshot(dsn, org_ids, path, "after")
    except (HarnessError, OSError, ImportError) as exc:
        info["error"] = f"after snapshot failed: {exc}"
        return None, info
    finally:
        phases["validate.snapshot_after"] = time.monotonic() - t0
    info["after"] = "after" in snapshot.labels(path)
    return (path if info["after"] else None), info


def checks_on(conn: psycopg.Connection[Any], spec: Spec, run_id: str, *, own_transaction: bool = True,
              snapshot_path: Path | None = None) -> list[CheckOutcome]:
    """Every check of the spec against the run on `conn`, nothing written. `snapshot_path` is used only when it
    already holds both labels (no snapshot is taken here). See execute.Session for `own_transaction`."""
    snap = snapshot_path if snapshot_path is not None and {"before", "after"} <= snapshot.labels(snapshot_path) \
        else None
    with Session(conn, own_transaction=own_transaction) as session:
        orgs = _orgs(session, run_id, None)
        validation = _Validation(spec, run_id, session, orgs, snap)
        return [validation.run(check) for check in spec.validations.checks()]


def run_checks(dsn: str, spec: Spec, run_id: str, *, snapshot_path: Path | None = None) -> list[CheckOutcome]:
    """checks_on in its own read-only transaction on a new connection."""
    with connect(dsn) as conn:
        return checks_on(conn, spec, run_id, snapshot_path=snapshot_path)


def validate_run(dsn: str, spec: Spec, run_id: str, *, report_dir: Path, run: RunResult | None = None,
                 snapshot_path: Path | None = None, diff: DiffResult | DiffFailure | None = None,
                 performance: dict[str, Any] | None = None, host: dict[str, Any] | None = None,
                 started_at: datetime | None = None) -> ValidationOutcome:
    """Validate run `run_id` and write results.json, records.jsonl, index.html and junit.xml to `report_dir`.
    `host`: {"windows": the HostSampler's windows, "reason": why there are none} (runner.validate.impact);
    `started_at`: when the command began (the environment block's start), default now."""
    facts = RunFacts.of(run)
    started = datetime.now(UTC)
    phases: dict[str, float] = {}
    report_dir.mkdir(parents=True, exist_ok=True)
    with connect(dsn) as conn, Session(conn) as session:
        orgs = _orgs(session, run_id, facts)
    if not orgs:
        raise DataError(f"run {run_id} has no journal in this database (no {builtin.KEYS['journal_type']} entity "
                        f"with entity_code {run_id})", hint="check the run id with 'hera-migrate status RUN_ID'")
    org_ids = [o for o, _ in orgs]
    snap, snap_info = _snapshots(dsn, org_ids, snapshot_path, phases)
    if diff is None and snap is not None:
        diff = snapshot.run_diff(snap, run_id)
    diff_section = effects.section(diff)

    t0 = time.monotonic()
    records_path = report_dir / RECORDS
    summaries: dict[str, dict[str, Any]] = {}
    per_org_records: dict[str, records.OrgRecords] = {}
    with connect(dsn) as conn, Session(conn) as session:
        validation = _Validation(spec, run_id, session, orgs, snap, _checked_records(session, spec, run_id, org_ids))
        outcomes = [validation.run(check) for check in spec.validations.checks()]
        diff_check = effects.outcome(diff_section)
        if diff_check is not None:
            outcomes.append(diff_check)
        phases["validate.checks"] = time.monotonic() - t0
        t1 = time.monotonic()
        flags = records.flags_by_org(outcomes)
        review = set(facts.conflicts) if facts is not None else set()
        with records.write_records(records_path) as out:
            for org_id in org_ids:
                per_org_records[org_id] = records.level1(session, run_id, org_id, flags.get(org_id, {}), review, out)
                summaries[org_id] = records.summary_rows(session, run_id, org_id)
        phases["validate.records"] = time.monotonic() - t1
        codes = {org_id: breakdown.by_code(session, spec, run_id, org_id, validation.resolved[org_id].candidates)
                 for org_id in org_ids}
        server = environment.server_facts(session)

    totals = records.OrgRecords("*")
    for rec in per_org_records.values():
        totals.counts.update(rec.counts)
        totals.kinds.update(rec.kinds)
        totals.kind_status.update(rec.kind_status)
        totals.by_category.update(rec.by_category)
        totals.samples.extend(rec.samples[:max(0, 10 - len(totals.samples))])
    org_dicts = [organization(org_id, code, per_org_records[org_id], summaries[org_id], outcomes, codes[org_id])
                 for org_id, code in orgs]
    handled = sum(o["migrated"] + o["quarantined"] for o in org_dicts)
    perf = performance_section(performance, facts, phases, handled)
    ledger = trial_balance.section(snap, run_id, org_ids, report_dir, builtin.trial_balance_params(
        spec, builtin.check_or_default(spec, "trial_balance_unchanged")))
    finished = datetime.now(UTC)
    results = build(spec=spec, run_id=run_id, started=started, finished=finished, orgs=org_dicts,
                    outcomes=outcomes, totals=totals, record_file=RECORDS, diff=diff_section, performance=perf,
                    run=facts, snapshot=snap_info,
                    journals=[(s["journal_status"], s["journal_last_write"]) for s in summaries.values()],
                    environment=environment.block(dsn, server, started_at or started, finished), ledger=ledger,
                    host=host)
    carried = previous_rollback(report_dir / "results.json", run_id)
    if carried is not None and results["run"]["status"] == "rolled_back":
        results["rollback"] = carried  # the run's rollback stays on record when it is validated again
    paths = write_reports(results, report_dir)
    return ValidationOutcome(exit_code=int(results["exit_code"]), results=results, results_path=paths["results"],
                             html_path=paths["html"], junit_path=paths["junit"], records_path=records_path,
                             integrity_score=results["integrity_score"], status=str(results["status"]))

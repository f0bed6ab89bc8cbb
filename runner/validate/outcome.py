"""The one wrapper every check goes through, dbt-style: offending rows in, {failures, samples, status} out.

A check (built-in template, custom SQL, or a snapshot comparison) yields rows of at least
(organization_id, record_id, message), one per offending record. `tally` counts them, keeps up to
`SAMPLE_LIMIT` samples and the flagged record ids (for level 1), and `status_for` applies the thresholds:

- failures >= error_threshold            -> "failed"
- warn_threshold set and failures >= it  -> "warning"
- otherwise                              -> "passed"
- the check's SQL raised (syntax error, timeout, missing column ...) -> "error"; an error counts as a failure of
  the check's severity (exit code, score), never as a crash of the validation.

A threshold is a number of rows or a percentage of the checked records (spec.model.Threshold): the level-1
records of the run, counted per organisation. A percentage becomes whole rows (rounded up, at least one) for a
given count of checked records: an organisation's own count for its result, the run's total for the check's
result. Until the count is known (tally runs while the rows stream) a percentage is one row, as strict as it can
be; `combine` applies the thresholds again once the caller hands over the counts.

Severity says what a failure means: critical (exit code 1), warning (reported), info (shown only).
Records/aggregate checks run per organisation; `combine` adds the per-organisation results into the check's
overall result: failures summed, thresholds applied to the sum (a percentage: of all checked records), "error"
when any organisation errored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.spec.model import CheckDef, Threshold, as_threshold

Status = Literal["passed", "failed", "warning", "error"]
SAMPLE_LIMIT = 10
FAILING: frozenset[str] = frozenset({"failed", "error"})


@dataclass(frozen=True)
class Sample:
    organization_id: str
    record_id: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"organization_id": self.organization_id, "record_id": self.record_id, "message": self.message}


@dataclass
class OrgCheck:
    """One check evaluated in one organisation (organization_id None: a system check's single run)."""

    organization_id: str | None
    failures: int = 0
    status: Status = "passed"
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    flagged: dict[str, set[str]] = field(default_factory=dict)  # organization_id -> offending record ids


@dataclass
class CheckOutcome:
    check: CheckDef
    description: str
    status: Status
    failures: int
    samples: list[Sample]
    per_org: list[OrgCheck]
    error: str | None = None
    seconds: float = 0.0
    source: str = "postgresql"  # postgresql | snapshot | postgresql+snapshot | diff
    checked: Mapping[str, int] | None = None  # checked records per organisation (None: not counted)

    @property
    def checked_total(self) -> int | None:
        return None if self.checked is None else sum(self.checked.values())

    @property
    def id(self) -> str:
        return self.check.id

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    def flagged(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for org in self.per_org:
            for org_id, ids in org.flagged.items():
                out.setdefault(org_id, set()).update(ids)
        return out

    def org_result(self, organization_id: str) -> OrgCheck:
        """This check's result for one organisation: its own run for record/aggregate checks; for a system check,
        the rows that name the organisation, with the thresholds applied to their count."""
        for org in self.per_org:
            if org.organization_id == organization_id:
                return org
        rows = [s for org in self.per_org for s in org.samples if s.organization_id == organization_id]
        count = sum(len(org.flagged.get(organization_id, ())) for org in self.per_org)
        errored = next((org.error for org in self.per_org if org.error), None)
        checked = None if self.checked is None else self.checked.get(organization_id)
        status = "error" if errored else status_for(count, self.check.warn, self.check.error, checked)
        return OrgCheck(organization_id, count, status, rows[:SAMPLE_LIMIT], errored)

    def as_dict(self) -> dict[str, Any]:
        c = self.check
        total = self.checked_total
        warn = c.warn
        return {
            "id": c.id, "kind": c.kind, "description": self.description, "level": c.level, "severity": c.severity,
            "status": self.status, "failures": self.failures, "samples": [s.as_dict() for s in self.samples],
            # in whole rows, as applied to the check's result; `thresholds` says what the spec wrote
            "warn_threshold": None if warn is None else warn.rows(total), "error_threshold": c.error.rows(total),
            "thresholds": {"warn_threshold": None if warn is None else str(warn), "error_threshold": str(c.error),
                           "checked_records": total},
            "error": self.error, "source": self.source, "seconds": round(self.seconds, 3),
            "params": {k: _plain(v) for k, v in c.params.items()},
            "organizations": [{"organization_id": o.organization_id, "status": o.status, "failures": o.failures,
                               "error": o.error, "seconds": round(o.seconds, 3)}
                              for o in self.per_org if o.organization_id is not None],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def status_for(failures: int, warn_threshold: Threshold | int | None, error_threshold: Threshold | int,
               checked: int | None = None) -> Status:
    """The status for `failures` offending rows out of `checked` records (None: not counted)."""
    if failures >= as_threshold(error_threshold).rows(checked):
        return "failed"
    if warn_threshold is not None and failures >= as_threshold(warn_threshold).rows(checked):
        return "warning"
    return "passed"


def tally(check: CheckDef, organization_id: str | None, rows: Iterable[tuple[Any, Any, Any]], *,
          keep_ids: bool = True) -> OrgCheck:
    """Count offending rows (organization_id, record_id, message), keep samples and flagged ids, apply thresholds."""
    result = OrgCheck(organization_id)
    for org, record, message in rows:
        org_id = "" if org is None else str(org)
        record_id = "" if record is None else str(record)
        result.failures += 1
        if len(result.samples) < SAMPLE_LIMIT:
            result.samples.append(Sample(org_id, record_id, "" if message is None else str(message)))
        if keep_ids:
            result.flagged.setdefault(org_id, set()).add(record_id)
    result.status = status_for(result.failures, check.warn, check.error)
    return result


def errored(organization_id: str | None, message: str) -> OrgCheck:
    return OrgCheck(organization_id, 0, "error", [], message)


def combine(check: CheckDef, description: str, per_org: list[OrgCheck], *, source: str = "postgresql",
            seconds: float = 0.0, checked: Mapping[str, int] | None = None) -> CheckOutcome:
    """The check's result over its organisations. `checked`: the checked records per organisation, when counted
    (percentage thresholds): each organisation is judged again against its own count, the whole against the
    total."""
    total = None if checked is None else sum(checked.values())
    if checked is not None:
        for org in per_org:
            if org.status != "error":
                org.status = status_for(org.failures, check.warn, check.error,
                                        total if org.organization_id is None else checked.get(org.organization_id))
    failures = sum(o.failures for o in per_org)
    samples = [s for o in per_org for s in o.samples][:SAMPLE_LIMIT]
    errors = [o.error for o in per_org if o.error]
    status: Status = "error" if errors else status_for(failures, check.warn, check.error, total)
    error = None
    if errors:
        error = errors[0] if len(errors) == 1 else f"{errors[0]} (and {len(errors) - 1} more)"
    return CheckOutcome(check, description, status, failures, samples, per_org, error, seconds, source,
                        None if checked is None else dict(checked))


def merge(check: CheckDef, org_check: OrgCheck, rows: Iterable[tuple[Any, Any, Any]]) -> None:
    """Add rows of a second source (e.g. the snapshot half of a check) to `org_check`; a record already flagged
    counts once."""
    for org, record, message in rows:
        ids = org_check.flagged.setdefault(str(org), set())
        if str(record) in ids:
            continue
        ids.add(str(record))
        org_check.failures += 1
        if len(org_check.samples) < SAMPLE_LIMIT:
            org_check.samples.append(Sample(str(org), str(record), str(message)))
    if org_check.status != "error":
        org_check.status = status_for(org_check.failures, check.warn, check.error)

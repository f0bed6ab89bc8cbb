"""The expected-effect diff (before vs after snapshot, classified by the snapshot layer) in results.json, and as
the critical system check `expected_effect_diff`: any row in the class "unexpected" fails it.

The snapshot layer hands over a DiffResult (runner.snapshot.diff) or, when it could not compute one, a
DiffFailure; `section` turns either into results.json's `diff` block: {available, error, expected, unexpected,
concurrent (counts by table), changes (per table and class: inserted / updated / deleted, sample ids and the
columns that changed in the samples), samples (unexpected rows, at most SAMPLE_LIMIT)}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.snapshot.diff import CLASSES, DiffResult, DiffSample
from runner.spec.model import CheckDef
from runner.validate.outcome import SAMPLE_LIMIT, CheckOutcome, OrgCheck, Sample, combine, errored, status_for

DIFF_CHECK = CheckDef("expected_effect_diff", "builtin", "system", "critical", None, 1, {})
DIFF_DESCRIPTION = ("Before vs after snapshot: every difference is an effect the run was expected to have, or "
                    "a concurrent write by others; none is unexpected.")


@dataclass(frozen=True)
class DiffFailure:
    """The diff could not be computed; the validation reports it (the check errors) and goes on."""

    error: str


def section(diff: DiffResult | DiffFailure | None) -> dict[str, Any]:
    out: dict[str, Any] = {"available": False, "error": None, **{c: {} for c in CLASSES}, "changes": [],
                           "samples": []}
    if diff is None:
        return out
    if isinstance(diff, DiffFailure):
        out["error"] = diff.error
        return out
    out["available"] = True
    for cls in CLASSES:
        out[cls] = {str(table): int(n) for table, n in diff.counts.get(cls, {}).items()}
    out["changes"] = changes(diff)
    rows = [(table, s) for table, samples in diff.samples.get("unexpected", {}).items() for s in samples]
    out["samples"] = [_sample(table, s) for table, s in rows][:SAMPLE_LIMIT]
    return out


CHANGE_SAMPLES = 5


def changes(diff: DiffResult) -> list[dict[str, Any]]:
    """Per table and class with any row: how many rows were inserted, updated and deleted, up to CHANGE_SAMPLES
    sample ids and the columns the sampled updates changed."""
    out = []
    for cls in CLASSES:
        for table, kinds in sorted(diff.by_kind.get(cls, {}).items()):
            if not any(kinds.values()):
                continue
            samples = diff.samples.get(cls, {}).get(table, [])
            columns = sorted({c for s in samples for c in s.changed_columns})
            out.append({"table": str(table), "class": cls, "inserted": int(kinds.get("inserted", 0)),
                        "updated": int(kinds.get("updated", 0)), "deleted": int(kinds.get("deleted", 0)),
                        "sample_ids": [s.record_id for s in samples[:CHANGE_SAMPLES]], "changed_columns": columns})
    return out


def _sample(table: str, row: DiffSample) -> dict[str, str]:
    message = row.reason or ("changed " + ", ".join(row.changed_columns) if row.changed_columns
                             else "unexpected difference")
    text = message if message.startswith(table) else f"{table}: {message}"
    return {"organization_id": row.organization_id or "", "record_id": row.record_id, "message": text}


def outcome(diff: dict[str, Any]) -> CheckOutcome | None:
    """The system check for a diff section; None when no diff was computed at all."""
    if not diff["available"] and not diff["error"]:
        return None
    if diff["error"]:
        return combine(DIFF_CHECK, DIFF_DESCRIPTION, [errored(None, f"diff failed: {diff['error']}")], source="diff")
    failures = sum(diff["unexpected"].values())
    org = OrgCheck(None, failures, status_for(failures, DIFF_CHECK.warn_threshold, DIFF_CHECK.error_threshold))
    org.samples = [Sample(**s) for s in diff["samples"]]
    if failures and not org.samples:
        org.samples = [Sample("", table, f"{n} unexpected difference(s) in {table}")
                       for table, n in sorted(diff["unexpected"].items()) if n][:SAMPLE_LIMIT]
    for s in org.samples:
        if s.organization_id:
            org.flagged.setdefault(s.organization_id, set()).add(s.record_id)
    return combine(DIFF_CHECK, DIFF_DESCRIPTION, [org], source="diff")

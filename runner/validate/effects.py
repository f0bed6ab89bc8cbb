"""The expected-effect diff (before vs after snapshot, classified by the snapshot layer) in results.json, and as
the critical system check `expected_effect_diff`: any row in the class "unexpected" fails it.

The snapshot layer's `DiffResult.as_dict()` is read leniently, because only its classes are contract
(DESIGN.md §5: expected, unexpected, concurrent, counted by table). Accepted shapes, per class:
`{class: {table: count}}`, `{"counts": {class: {table: count}}}`, `{"tables": {table: {class: count}}}`; a
count may be an int or a list/dict of rows (counted by length). Samples of unexpected rows are read from
`unexpected_samples`, `samples.unexpected` or the rows of the class itself (dicts with organization_id,
id/record_id and message/reason/columns).
"""

from __future__ import annotations

from typing import Any

from runner.spec.model import CheckDef
from runner.validate.outcome import SAMPLE_LIMIT, CheckOutcome, OrgCheck, Sample, combine, errored, status_for

CLASSES = ("expected", "unexpected", "concurrent")
DIFF_CHECK = CheckDef("expected_effect_diff", "builtin", "system", "critical", None, 1, {})
DIFF_DESCRIPTION = ("Before vs after snapshot: every difference is an effect the run was expected to have, or "
                    "a concurrent write by others; none is unexpected.")


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple | dict):
        return len(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _by_table(value: Any) -> dict[str, int]:
    if isinstance(value, dict):
        return {str(table): _count(v) for table, v in value.items()}
    if value is None:
        return {}
    return {"total": _count(value)}


def normalize(diff: dict[str, Any] | None) -> dict[str, Any]:
    """{available, error, expected, unexpected, concurrent (counts by table), samples (unexpected, <= 10)}."""
    out: dict[str, Any] = {"available": False, "error": None, **{c: {} for c in CLASSES}, "samples": []}
    if diff is None:
        return out
    if diff.get("error"):
        out["error"] = str(diff["error"])
        return out
    out["available"] = True
    counts = diff.get("counts")
    source: dict[str, Any] = counts if isinstance(counts, dict) else diff
    for cls in CLASSES:
        out[cls] = _by_table(source.get(cls))
    tables = diff.get("tables")
    if isinstance(tables, dict) and not any(out[c] for c in CLASSES):
        for table, per in tables.items():
            if isinstance(per, dict):
                for cls in CLASSES:
                    if cls in per:
                        out[cls][str(table)] = _count(per[cls])
    samples: Any = diff.get("unexpected_samples")
    if samples is None and isinstance(diff.get("samples"), dict):
        samples = diff["samples"].get("unexpected")
    if samples is None and isinstance(diff.get("unexpected"), dict):
        samples = diff["unexpected"]
    if isinstance(samples, dict):  # table -> rows
        samples = [dict(row, table=table) for table, rows in samples.items() if isinstance(rows, list)
                   for row in rows if isinstance(row, dict)]
    out["samples"] = [_sample(s) for s in (samples or []) if isinstance(s, dict)][:SAMPLE_LIMIT]
    return out


def _sample(row: dict[str, Any]) -> dict[str, str]:
    record = row.get("record_id", row.get("id", ""))
    message = row.get("message") or row.get("reason") or row.get("changed_columns") or "unexpected difference"
    if isinstance(message, list):
        message = "changed " + ", ".join(map(str, message))
    table = row.get("table")
    text = f"{table}: {message}" if table and not str(message).startswith(str(table)) else str(message)
    return {"organization_id": str(row.get("organization_id") or ""), "record_id": str(record), "message": text}


def outcome(diff: dict[str, Any]) -> CheckOutcome | None:
    """The system check for a normalised diff; None when no diff was computed at all."""
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

"""The checks that read the DuckDB before/after snapshots (reports/<run_id>/snapshots.duckdb), and the adapter
to the snapshot layer's expected-effect diff.

- trial_balance_unchanged, snapshot form: the trial balance (net DR - CR of GL lines per organisation x account x
  currency, every header whatever its status) of the `before` snapshot equals that of the `after` snapshot,
  counting in `after` only headers that existed before or that the run inserted (its reposts, the reversals of
  its originals); rows other sessions inserted during the run are the diff's "concurrent" class, not a change of
  the migrated ledger. Sums are DuckDB DECIMAL(38, s): exact.
- alias_only_metadata, snapshot half: an alias row differs from its before image only in metadata (the two keys
  the alias adds: compared as PostgreSQL's own jsonb text, see runner.snapshot.extract), updated_at, updated_by,
  version and the case of the smart code's `.v<n>` suffix (the rules of the diff's class E4); every other column
  and its lines are identical.

The trial balance is its own template (validate/snapshot_trial_balance) rather than two runs of
snapshot/trial_balance on purpose: that one sums whole snapshots, so v1 traffic posting during the run (the load
test does) would read as a change of the ledger, and it leaves voided headers out, so a concurrent void would too.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from runner.compile import Statement, render_duck
from runner.snapshot import duck
from runner.snapshot.diff import DiffResult, diff
from runner.validate.effects import DiffFailure

Row = tuple[str, str, str]
ALIAS_FREE_COLUMNS = frozenset({"metadata", "updated_at", "updated_by", "version", "smart_code"})


def labels(path: Path | None) -> set[str]:
    """The snapshot labels recorded in `path` (empty when the file or its `snapshots` table is missing)."""
    if path is None or not path.exists():
        return set()
    try:
        con = duck.connect(path, read_only=True)
    except Exception:  # unreadable: no snapshot, the PostgreSQL forms take over
        return set()
    try:
        rows = con.execute(render_duck("snapshot/catalog_labels").text).fetchall()
        return {str(r[0]) for r in rows}
    except duckdb.Error:
        return set()
    finally:
        con.close()


def trial_balance_statement(run_id: str, org_ids: list[str], tolerance: Decimal, by_currency: bool, *,
                            figures: bool = False) -> Statement:
    return render_duck("validate/snapshot_trial_balance", run_id=run_id, org_ids=org_ids, tolerance=str(tolerance),
                       by_currency=by_currency, figures=figures)


def alias_statement(run_id: str, org_ids: list[str], columns: list[str]) -> Statement:
    """`columns`: the header columns of the snapshot; all but ALIAS_FREE_COLUMNS are compared."""
    return render_duck("validate/snapshot_alias", run_id=run_id, org_ids=org_ids,
                       compared=[c for c in columns if c not in ALIAS_FREE_COLUMNS])


def trial_balance_rows(path: Path, run_id: str, org_ids: list[str], tolerance: Decimal,
                       by_currency: bool) -> list[Row]:
    stmt = trial_balance_statement(run_id, org_ids, tolerance, by_currency)
    con = duck.connect(path, read_only=True)
    try:
        rows = con.execute(stmt.text, stmt.params).fetchall()
    finally:
        con.close()
    out = []
    for org, account, cur, before, after in rows:
        delta = Decimal(after) - Decimal(before)
        out.append((org, f"{account or '(no account)'} {cur}",
                    f"account {account or 'none'} ({cur}): balance before {_n(before)}, after {_n(after)}, "
                    f"after - before = {_n(delta)} (tolerance {_n(tolerance)})"))
    return out


def _n(value: Any) -> str:
    d = Decimal(value)
    return format(d.normalize(), "f") if d else "0"


def alias_rows(path: Path, run_id: str, org_ids: list[str]) -> list[Row]:
    con = duck.connect(path, read_only=True)
    try:
        described = render_duck("diff/columns", table=duck.snapshot_table("before", "universal_transactions"))
        cols = [r[0] for r in con.execute(described.text, described.params).fetchall()]
        stmt = alias_statement(run_id, org_ids, cols)
        rows = con.execute(stmt.text, stmt.params).fetchall()
    finally:
        con.close()
    out = []
    for org, record, code, columns, code_changed, metadata_changed, lines_changed in rows:
        problems = []
        if columns:
            problems.append(f"columns changed since the before snapshot: {columns}")
        if code_changed:
            problems.append("smart code changed since the before snapshot")
        if metadata_changed:
            problems.append("metadata changed beyond the alias keys since the before snapshot")
        if lines_changed:
            problems.append("lines changed since the before snapshot")
        if problems:
            out.append((org, record, f"alias {code or record}: {'; '.join(problems)}"))
    return out


def run_diff(path: Path, run_id: str) -> DiffResult | DiffFailure:
    """The snapshot layer's expected-effect diff; a failure is returned, not raised: the validation reports it in
    results.json (the diff check errors) and goes on."""
    try:
        return diff(path, run_id)
    except Exception as exc:  # reported in results.json, never fatal
        return DiffFailure(f"{type(exc).__name__}: {exc}")

"""The ledger proof in figures: the trial balance per organisation × account × currency before and after the run
and the delta (the snapshot form of trial_balance_unchanged, every row), the largest changes in results.json and
the whole table as `trial_balance.csv` beside it. Money stays decimal text end to end.

Without both snapshots there are no figures, and the section says so (never an empty table that reads as
"nothing changed").
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

from runner.report.files import open_atomic
from runner.snapshot import duck
from runner.validate.snapshot import trial_balance_statement

CSV_FILE = "trial_balance.csv"
TOP_ROWS = 15


def _text(value: Decimal) -> str:
    """Plain decimal text (never '0E-8')."""
    return format(value, "f")


def section(snap: Path | None, run_id: str, org_ids: list[str], report_dir: Path,
            params: tuple[Decimal, bool]) -> dict[str, Any]:
    tolerance, by_currency = params
    empty: dict[str, Any] = {"trial_balance": {"available": False, "reason": None, "rows": 0, "differing": 0,
                                               "tolerance": _text(tolerance), "top": [], "totals": {}, "csv": None}}
    if snap is None:
        empty["trial_balance"]["reason"] = "no before and after snapshots for this validation"
        return empty
    stmt = trial_balance_statement(run_id, org_ids, tolerance, by_currency, figures=True)
    try:
        con = duck.connect(snap, read_only=True)
        try:
            rows = con.execute(stmt.text, stmt.params).fetchall()
        finally:
            con.close()
    except Exception as exc:  # the figures are a view of the proof; the check itself reports its own errors
        empty["trial_balance"]["reason"] = f"the trial balance could not be read from the snapshots: {exc}"
        return empty
    figures = []
    totals: dict[str, dict[str, Decimal]] = {}
    for org, account, currency, before, after, code in rows:
        b, a = Decimal(before), Decimal(after)
        figures.append({"organization_id": org, "account_id": account, "account_code": code, "currency": currency,
                        "before": _text(b), "after": _text(a), "delta": _text(a - b),
                        "differs": abs(a - b) > tolerance})
        t = totals.setdefault(currency, {"before": Decimal(0), "after": Decimal(0)})
        t["before"] += b
        t["after"] += a
    path = report_dir / CSV_FILE
    with open_atomic(path) as out:
        writer = csv.writer(out)
        writer.writerow(["organization_id", "account_id", "account_code", "currency", "before", "after", "delta"])
        for f in figures:
            writer.writerow([f["organization_id"], f["account_id"], f["account_code"] or "", f["currency"],
                             f["before"], f["after"], f["delta"]])
    return {"trial_balance": {
        "available": True, "reason": None if figures else "the snapshots hold no GL line in scope",
        "rows": len(figures), "differing": sum(1 for f in figures if f["differs"]), "tolerance": _text(tolerance),
        "top": figures[:TOP_ROWS],
        "totals": {cur: {"before": _text(t["before"]), "after": _text(t["after"]),
                         "delta": _text(t["after"] - t["before"])}
                   for cur, t in sorted(totals.items())},
        "csv": CSV_FILE}}

"""Percentage thresholds end to end (issue 14, item 2): validate_run counts the run's level-1 records first and
judges a check's offending rows against that count; results.json says what was applied."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner.db.connect import connect
from runner.report import schema_errors
from runner.spec.model import CustomCheck, Threshold
from runner.validate import validate_run
from runner.validate.validation import checks_on
from tests.integration import test_validate_checks as shared
from tests.integration.test_validate_checks import RUN, Migrated, phase7

migrated_template = shared.migrated_template
migrated = shared.migrated

# Every repost of the run: 6 offending rows among the run's 32 level-1 records (18.75 %).
EVERY_REPOST = ("SELECT organization_id, id AS record_id, 'a repost' AS message FROM universal_transactions "
                "WHERE organization_id = :organization_id AND metadata -> 'migration' ->> 'run_id' = :run_id "
                "AND metadata -> 'migration' ->> 'role' = 'repost'")


def reposts_check(warn: Threshold | None, error: Threshold) -> CustomCheck:
    return CustomCheck(id="every-repost", description="flags every repost", sql=EVERY_REPOST,
                       warn_threshold=warn, error_threshold=error)


@pytest.mark.parametrize(("warn", "error", "status", "rows"), [
    (None, Threshold(percent=Decimal("18")), "failed", 6),  # 18 % of 32 = 5.76: from 6 rows
    (None, Threshold(percent=Decimal("20")), "passed", 7),  # 20 % of 32 = 6.4: from 7 rows
    (Threshold(count=1), Threshold(percent=Decimal("20")), "warning", 7),  # warn from the first row
])
def test_a_percentage_is_of_the_records_the_validation_checked(migrated: tuple[str, Migrated], tmp_path: Path,
                                                               warn: Threshold | None, error: Threshold,
                                                               status: str, rows: int) -> None:
    dsn, m = migrated
    spec = phase7(reposts_check(warn, error))
    out = validate_run(dsn, spec, RUN, report_dir=tmp_path)
    results: dict[str, Any] = json.loads(out.results_path.read_text(encoding="utf-8"))
    assert schema_errors(results) == []
    assert results["records"]["total"] == 32
    check = next(c for c in results["checks"] if c["id"] == "every-repost")
    assert (check["status"], check["failures"], check["error_threshold"]) == (status, 6, rows)
    assert check["thresholds"] == {"warn_threshold": None if warn is None else str(warn),
                                   "error_threshold": str(error), "checked_records": 32}
    (org,) = check["organizations"]
    assert (org["organization_id"], org["status"]) == (m.org, status)  # one organisation: its count is the total


def test_without_a_count_a_percentage_is_as_strict_as_one_row(migrated: tuple[str, Migrated]) -> None:
    """checks_on runs the checks alone (no level 1): nothing is counted, so "20%" fails from the first row."""
    dsn, _ = migrated
    with connect(dsn) as conn:
        outcomes = checks_on(conn, phase7(reposts_check(None, Threshold(percent=Decimal("20")))), RUN)
    outcome = next(o for o in outcomes if o.id == "every-repost")
    assert (outcome.status, outcome.failures, outcome.as_dict()["thresholds"]["checked_records"]) == ("failed", 6,
                                                                                                      None)

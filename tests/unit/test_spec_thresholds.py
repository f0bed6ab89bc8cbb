"""Thresholds that say what QA means (issue 14, item 2): a whole number of offending rows or a percentage of the
checked records ("0.5%"), for either threshold; the warning band is optional and may mix the two kinds."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from runner.errors import EXIT_OK, EXIT_USAGE
from runner.spec import check_file, load_spec, run_check
from runner.spec.model import Threshold
from runner.spec.problems import pointer

HEAD = """name: thresholds
version: "1"
owner: qa
mappings:
  - {from: HERA.FINANCE.GL.TXN.JOURNAL.v1, tier: reverse_repost}
validations:
  builtin:
"""


def write(tmp_path: Path, rule: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + f"    gl_balanced: {rule}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("rule", "warn", "error"), [
    ("{error_threshold: 1}", None, Threshold(count=1)),  # alone: fails on any offending row
    ('{error_threshold: "0.5%"}', None, Threshold(percent=Decimal("0.5"))),
    ("{error_threshold: 2.5%}", None, Threshold(percent=Decimal("2.5"))),  # plain YAML text, no quotes needed
    ('{warn_threshold: 1, error_threshold: "0.5%"}', Threshold(count=1), Threshold(percent=Decimal("0.5"))),
    ('{warn_threshold: "0.1%", error_threshold: 50}', Threshold(percent=Decimal("0.1")), Threshold(count=50)),
    ('{warn_threshold: "0.1%", error_threshold: "1%"}', Threshold(percent=Decimal("0.1")),
     Threshold(percent=Decimal("1"))),
    ('{error_threshold: "100%"}', None, Threshold(percent=Decimal("100"))),
])
def test_counts_and_percentages_are_accepted_and_typed(tmp_path: Path, rule: str, warn: Threshold | None,
                                                        error: Threshold) -> None:
    path = write(tmp_path, rule)
    code, text = run_check([path])
    assert code == EXIT_OK, text
    check = next(c for c in load_spec(path).validations.checks() if c.id == "gl_balanced")
    assert (check.warn, check.error) == (warn, error)


@pytest.mark.parametrize(("rule", "ptr", "says"), [
    ('{error_threshold: "0%"}', "/validations/builtin/gl_balanced/error_threshold", "more than 0%"),
    ('{error_threshold: "0.0%"}', "/validations/builtin/gl_balanced/error_threshold", "more than 0%"),
    ('{error_threshold: "150%"}', "/validations/builtin/gl_balanced/error_threshold",
     "a whole number of offending rows (e.g. 1) or a percentage"),
    ("{error_threshold: 0.5}", "/validations/builtin/gl_balanced/error_threshold", 'write a percentage as "0.5%"'),
    ('{error_threshold: "half"}', "/validations/builtin/gl_balanced/error_threshold",
     "a whole number of offending rows (e.g. 1) or a percentage"),
    ("{error_threshold: 0}", "/validations/builtin/gl_balanced/error_threshold", "at least 1"),
    ("{warn_threshold: 5, error_threshold: 5}", "/validations/builtin/gl_balanced/warn_threshold",
     "warn_threshold (5) must be lower than error_threshold (5)"),
    ('{warn_threshold: "2%", error_threshold: "1%"}', "/validations/builtin/gl_balanced/warn_threshold",
     "warn_threshold (2%) must be lower than error_threshold (1%)"),
    # error_threshold is not written: the default 1 fails the check first, so the band could never be reached
    ("{warn_threshold: 3}", "/validations/builtin/gl_balanced/warn_threshold", "error_threshold is 1 (the default)"),
    ('{warn_threshold: "1%"}', "/validations/builtin/gl_balanced/warn_threshold",
     "error_threshold is 1 (the default)"),
])
def test_thresholds_that_cannot_mean_anything_are_located_problems(tmp_path: Path, rule: str, ptr: str,
                                                                     says: str) -> None:
    path = write(tmp_path, rule)
    problems = check_file(path).problems
    assert [pointer(p.path) for p in problems if p.path is not None] == [ptr], [p.render() for p in problems]
    assert says in problems[0].message, problems[0].render()
    assert problems[0].loc.line == 8
    assert run_check([path])[0] == EXIT_USAGE


def test_custom_checks_take_percentages_too(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD.replace("  builtin:\n", "") + """  custom:
    - id: few-drifted-dates
      description: At most 0.5% of the records may carry another date.
      warn_threshold: 1
      error_threshold: "0.5%"
      sql: SELECT organization_id, id AS record_id, 'x' AS message FROM universal_transactions
""", encoding="utf-8")
    (check,) = [c for c in load_spec(path).validations.checks() if c.kind == "custom"]
    assert (check.warn, check.error) == (Threshold(count=1), Threshold(percent=Decimal("0.5")))
    assert (str(check.warn), str(check.error)) == ("1", "0.5%")


@pytest.mark.parametrize(("threshold", "checked", "rows"), [
    (Threshold(count=3), None, 3), (Threshold(count=3), 10, 3),
    # a percentage of the checked records, rounded up to whole rows, never below one row
    (Threshold(percent=Decimal("0.5")), 1000, 5), (Threshold(percent=Decimal("0.5")), 1001, 6),
    (Threshold(percent=Decimal("0.5")), 10, 1), (Threshold(percent=Decimal("0.5")), 0, 1),
    (Threshold(percent=Decimal("100")), 7, 7), (Threshold(percent=Decimal("33.3")), 3, 1),
    # nothing counted: a percentage is as strict as it can be (one row)
    (Threshold(percent=Decimal("10")), None, 1),
])
def test_a_threshold_in_rows(threshold: Threshold, checked: int | None, rows: int) -> None:
    assert threshold.rows(checked) == rows

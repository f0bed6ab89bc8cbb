"""The fault-and-abuse suite (`nox -s faults`): long scenarios kept out of the default test run.

The tests here are collected only when asked for — HERA_FAULTS=1 (the nox session sets it) or a path under
tests/faults on the command line — so `pytest` alone stays fast. At the end of a session that ran them, the
summary table (faults injected, runs resumed, rows checked, rows lost, duplicates, unexpected diffs) is printed
and written to reports/faults/summary.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.faults.harness import LEDGER, SUMMARY

HERE = Path(__file__).resolve().parent


def _selected() -> bool:
    if os.environ.get("HERA_FAULTS") == "1":
        return True
    for arg in sys.argv[1:]:
        if arg.startswith("-"):
            continue
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


SELECTED = _selected()
collect_ignore_glob = [] if SELECTED else ["test_*.py"]
_T0 = time.monotonic()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if not SELECTED or not LEDGER.tallies:
        return
    stats = terminalreporter.stats
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    passed = len(stats.get("passed", []))
    seconds = round(time.monotonic() - _T0, 1)
    totals = LEDGER.totals()
    path = LEDGER.write(SUMMARY, seconds=seconds, tests={"passed": passed, "failed": failed},
                       ok=failed == 0 and totals["lost"] == totals["duplicates"] == totals["unexpected"] == 0)
    terminalreporter.section("fault-and-abuse summary")
    for line in LEDGER.table().splitlines():
        terminalreporter.write_line(line)
    for tally in LEDGER.tallies:
        for note in tally.notes:
            terminalreporter.write_line(f"  {tally.scenario}: {note}")
    terminalreporter.write_line(
        f"faults injected {totals['faults']:,} · runs resumed {totals['resumed']:,} · rows checked "
        f"{totals['rows_checked']:,} · rows lost {totals['lost']} · duplicates {totals['duplicates']} · "
        f"unexpected diffs {totals['unexpected']} · tests passed {passed}, failed {failed} · {seconds:.0f}s")
    terminalreporter.write_line(f"written to {path}")

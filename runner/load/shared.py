"""The auto-throttle across two processes: `load --during RUN_ID` measures the baseline and keeps appending raw v1
samples; a `run --run-id RUN_ID` in another process finds them in the same report directory and throttles
against them.

`<report dir>/load/baseline.json` = {p95_ms, samples (path of the live sample file), written_at}. It is only
used while the sample file is live (written to within FRESH_SECONDS), so a stale file from an earlier session
never throttles a run. The throttle writes its decisions to `<report dir>/load/throttle.json` as it goes, for the
load process's report.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from runner.load.evidence import TailSource
from runner.load.samples import SampleTail
from runner.load.throttle import Decision, LatencyThrottle, throttle_settings
from runner.spec.model import Spec

FRESH_SECONDS = 10.0
LOAD_DIR = "load"  # <report dir>/load/: the load's files
SHARED_BASELINE = "baseline.json"  # what a `run` in another process reads to throttle against this load
THROTTLE_FILE = "throttle.json"


class SharedThrottle(LatencyThrottle):
    """A LatencyThrottle that also writes its summary to a file whenever it recorded a decision (a change of pace
    or a probe's outcome), and at least once per check interval for its counters."""

    path: Path
    _written = -1
    _written_at = float("-inf")

    def check(self, now: float | None = None) -> Decision | None:
        d = super().check(now)
        t = self.clock()
        if self.records != self._written or t - self._written_at >= self.interval:
            self._written, self._written_at = self.records, t
            with contextlib.suppress(OSError):
                self.path.write_text(json.dumps(self.summary()) + "\n", encoding="utf-8")
        return d


def throttle_from_report_dir(report_dir: Path, spec: Spec, console: Console | None = None, /) -> SharedThrottle | None:
    if not spec.execution.throttle.enabled:
        return None
    workdir = report_dir / LOAD_DIR
    try:
        info = json.loads((workdir / SHARED_BASELINE).read_text(encoding="utf-8"))
        samples = Path(str(info["samples"]))
        p95 = float(info["p95_ms"])
        tasks = {str(k): float(v) for k, v in (info.get("task_p95_ms") or {}).items()}
        live = time.time() - samples.stat().st_mtime < FRESH_SECONDS
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not live or p95 <= 0:
        return None
    interval = float(spec.execution.throttle.check_interval_seconds)
    tail = SampleTail(samples, keep_seconds=max(60.0, 3 * interval), keep_all=False)
    throttle = SharedThrottle(TailSource(tail), **throttle_settings(spec, p95, interval, task_p95_ms=tasks))
    throttle.path = workdir / THROTTLE_FILE
    if console is not None:
        console.print(f"auto-throttle: live v1 load found in {workdir} (baseline p95 {p95:.2f} ms, bound "
                      f"{throttle.limit_ms:.2f} ms)")
    return throttle


def read_throttle_summary(report_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((report_dir / LOAD_DIR / THROTTLE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

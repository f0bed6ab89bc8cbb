"""The run's throughput time series: a ProgressSink that timestamps the workers' progress.

`ThroughputRecorder` wraps another sink (the rich bars, or none) and timestamps every `org_advanced` call of the
workers. `timeline()` turns those stamps into the `performance.timeline` of results.json: points {t, done, rate} —
seconds since the migration started, candidates handled so far, and candidates per second over the interval that
ends at t. `progress()` is what the live dashboard (runner.report.live) shows.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.engine.hooks import ProgressSink

MAX_POINTS = 120
MIN_INTERVAL = 0.2
_NICE = (0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def bucket_seconds(duration: float, max_points: int = MAX_POINTS, minimum: float = MIN_INTERVAL) -> float:
    """The interval of the timeline: a round number of seconds giving at most `max_points` points."""
    want = max(minimum, duration / max_points)
    return float(next((n for n in _NICE if n >= want), math.ceil(want / 3600) * 3600))


def median_gap(events: list[tuple[float, int]]) -> float:
    """The median time between two progress reports (0 with fewer than three): the engine reports once per
    chunk, so an interval shorter than about two chunks would show the chunk cadence, not the rate."""
    times = sorted(t for t, _ in events)
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2] if len(gaps) >= 2 else 0.0


def timeline_points(events: list[tuple[float, int]], duration: float, *,
                    max_points: int = MAX_POINTS) -> list[dict[str, Any]]:
    """[(seconds since start, candidates handled)] → [{t, done, rate}], one point per interval plus t = 0.
    The interval is a round number of seconds: at least MIN_INTERVAL and twice the median time between progress
    reports, and long enough for at most `max_points` intervals."""
    if duration <= 0:
        return []
    step = bucket_seconds(duration, max_points, max(MIN_INTERVAL, 2 * median_gap(events)))
    n = max(1, math.ceil(duration / step - 1e-9))
    sums = [0] * n
    for t, count in events:
        sums[min(n - 1, max(0, int(t // step)))] += count
    points: list[dict[str, Any]] = [{"t": 0.0, "done": 0, "rate": 0.0}]
    done = 0
    for i, count in enumerate(sums):
        start, end = i * step, min((i + 1) * step, duration)
        done += count
        span = end - start
        points.append({"t": round(end, 3), "done": done, "rate": round(count / span, 3) if span > 0 else 0.0})
    return points


@dataclass
class OrgProgress:
    organization_id: str
    organization_code: str
    total: int = 0
    done: int = 0
    status: str = "running"
    started: float = 0.0
    finished: float | None = None


class ThroughputRecorder:
    """ProgressSink that timestamps progress (thread-safe: the engine calls it from its workers)."""

    def __init__(self, inner: ProgressSink | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self.stopped: float | None = None
        self._events: list[tuple[float, int]] = []
        self._orgs: dict[str, OrgProgress] = {}

    def _now(self) -> float:
        return self._clock() - self.started

    def restart(self) -> None:
        """Start the clock (and the series) again: call it right before the migration starts."""
        with self._lock:
            self.started, self.stopped = self._clock(), None
            self._events.clear()
            self._orgs.clear()

    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        with self._lock:
            self._orgs[org_id] = OrgProgress(org_id, org_code, max(total, 0), 0, "running", self._now())
        if self.inner is not None:
            self.inner.org_started(org_id, org_code, total)

    def org_advanced(self, org_id: str, done: int) -> None:
        with self._lock:
            if done > 0:
                self._events.append((self._now(), done))
                org = self._orgs.get(org_id)
                if org is not None:
                    org.done += done
        if self.inner is not None:
            self.inner.org_advanced(org_id, done)

    def chunk_done(self, org_id: str, tier: str, handled: int, quarantined: int, seconds: float) -> None:
        if self.inner is not None:
            self.inner.chunk_done(org_id, tier, handled, quarantined, seconds)

    def org_finished(self, org_id: str, status: str) -> None:
        with self._lock:
            org = self._orgs.get(org_id)
            if org is not None:
                org.status, org.finished = status, self._now()
        if self.inner is not None:
            self.inner.org_finished(org_id, status)

    def stop(self) -> None:
        with self._lock:
            if self.stopped is None:
                self.stopped = self._now()

    def elapsed(self) -> float:
        with self._lock:
            return self.stopped if self.stopped is not None else self._now()

    def timeline(self, *, max_points: int = MAX_POINTS) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._events)
            duration = self.stopped if self.stopped is not None else self._now()
        return timeline_points(events, duration, max_points=max_points)

    def progress(self) -> dict[str, Any]:
        """{elapsed_seconds, done, total, rate (overall, per second), organizations: [...]}."""
        with self._lock:
            orgs = [OrgProgress(**vars(o)) for o in self._orgs.values()]
            elapsed = self.stopped if self.stopped is not None else self._now()
        done, total = sum(o.done for o in orgs), sum(o.total for o in orgs)
        return {"elapsed_seconds": round(elapsed, 3), "done": done, "total": total,
                "rate": round(done / elapsed, 3) if elapsed > 0 else None,
                "organizations": [{"organization_id": o.organization_id, "organization_code": o.organization_code,
                                   "total": o.total, "done": o.done, "status": o.status} for o in orgs]}

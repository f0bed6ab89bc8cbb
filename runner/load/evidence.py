"""What the auto-throttle reads from the live v1 load: sources of recent requests, and the evidence a window of them
gives against a latency bound (runner/load/throttle.py decides from it).

A window's evidence is its p95, its size and how many requests were over the bound and over half of it. "A p95
within the bound" is counted, not read off one percentile: at most TAIL_SHARE of the requests over it. That lets
`breach` ask for significance (the odd slow request of an undisturbed v1 does not count) and lets each request be
held to its own task's bound (`per_task`): a mix with a rare heavy request (medium's 150-220 ms trial balance, 2.3 %
of the requests, the others 1-6 ms) has its overall p95 on the border of that request, and a window that happens to
hold a few more of them would otherwise read as a breach.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from runner.load.samples import SampleTail
from runner.load.stats import percentile

TAIL_SHARE = 0.05  # a p95 within the bound: at most this share of the requests over it
MIN_TASK_REQUESTS = 20  # baseline requests of a v1 task for a bound of its own (else the overall one applies)


class LatencySource(Protocol):
    def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
        """(p95 in ms, number of requests) of the v1 requests that ended in the last `seconds`."""


@runtime_checkable
class LatencySamples(Protocol):
    def recent_us(self, seconds: float) -> list[int]:
        """Latencies (µs) of the v1 requests that ended in the last `seconds`."""


@runtime_checkable
class TaskSamples(Protocol):
    def recent_tasks(self, seconds: float) -> list[tuple[str, int]]:
        """(task, latency µs) of the v1 requests that ended in the last `seconds`."""


class TailSource:
    """All three over the load generator's sample file (polled on every read)."""

    def __init__(self, tail: SampleTail, clock: Callable[[], float] = time.time) -> None:
        self.tail = tail
        self.clock = clock

    def recent_us(self, seconds: float) -> list[int]:
        self.tail.poll()
        return [s.latency_us for s in self.tail.since(self.clock() - seconds)]

    def recent_tasks(self, seconds: float) -> list[tuple[str, int]]:
        self.tail.poll()
        return [(s.task, s.latency_us) for s in self.tail.since(self.clock() - seconds)]

    def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
        lat = sorted(self.recent_us(seconds))
        return p95_ms(lat), len(lat)


def p95_ms(sorted_us: list[int]) -> float | None:
    p95 = percentile(sorted_us, 95)
    return None if p95 is None else p95 / 1000.0


@dataclass(frozen=True)
class Evidence:
    p95_ms: float | None
    requests: int
    over: int  # requests over the bound
    over_comfort: int = 0  # requests over half the bound (reference × (1 + max%/2))

    @property
    def comfortable(self) -> bool:
        """A p95 within half the bound: at most TAIL_SHARE of the requests over it."""
        return self.p95_ms is not None and self.over_comfort <= TAIL_SHARE * self.requests


def breach(ev: Evidence, z: float) -> bool:
    """More requests over the bound than a p95 within it allows (TAIL_SHARE), by `z` standard deviations."""
    allowed = TAIL_SHARE * ev.requests
    return ev.over > allowed + z * math.sqrt(allowed)


def overall(source: LatencySource, seconds: float, limit_ms: float, comfort_ms: float) -> Evidence:
    """The last `seconds` of requests against one bound (and its half, `comfort_ms`)."""
    if isinstance(source, LatencySamples):
        lat = sorted(source.recent_us(seconds))
        over = len(lat) - bisect.bisect_right(lat, limit_ms * 1000.0)
        comfort = len(lat) - bisect.bisect_right(lat, comfort_ms * 1000.0)
        return Evidence(p95_ms(lat), len(lat), over, comfort)
    p95, n = source.recent_p95_ms(seconds)  # a source of p95 only: over the bound means all of it is
    return Evidence(p95, n, n if p95 is not None and p95 > limit_ms else 0,
                    n if p95 is None or p95 >= comfort_ms else 0)


def per_task(requests: list[tuple[str, int]], task_p95: dict[str, float], default_ms: float, scale: float,
             max_pct: float) -> Evidence:
    """Each request against its own task's bound: its task's baseline p95 (`default_ms` for a task without one)
    × `scale` (the throttle's reference over its baseline) × (1 + max%); half the bound with max%/2."""
    high, low = 1 + max_pct / 100.0, 1 + max_pct / 200.0
    over = comfort = 0
    for task, us in requests:
        base = task_p95.get(task, default_ms) * scale * 1000.0
        over += us > base * high
        comfort += us > base * low
    return Evidence(p95_ms(sorted(us for _, us in requests)), len(requests), over, comfort)


def task_baselines(baseline: dict[str, Any], min_requests: int = MIN_TASK_REQUESTS) -> dict[str, float]:
    """p95 (ms) per v1 task of a baseline phase (stats.phase), for the tasks with enough requests to have one."""
    tasks = baseline.get("tasks") or {}
    return {name: float(t["p95_ms"]) for name, t in tasks.items()
            if (t.get("requests") or 0) >= min_requests and (t.get("p95_ms") or 0) > 0}

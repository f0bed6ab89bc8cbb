"""Auto-throttle: keep live v1 p95 latency within the spec's bound by shrinking chunks and pausing between them.

`LatencyThrottle` implements the engine's Throttle protocol (runner/engine/hooks.py): the chunk loop calls
`wait()` between chunks and `batch_size(default)` for the next chunk's size. Every `check_interval` seconds it
reads the v1 p95 of the last `window` seconds from a latency source (the load generator's raw samples) and
compares it with the baseline p95 measured before the run:

- above the bound (baseline × (1 + max%)): halve the chunk size, or cut it in proportion when p95 is more than
  twice the bound (not below `min_chunk`), and double the pause
  between chunks (starting at `first_pause`, at most `max_pause`);
- below half the bound (baseline × (1 + max%/2)): grow the chunk size by a quarter (up to the run's own size)
  and halve the pause (dropping it under 10 ms);
- in between: hold;
- a window with fewer than `min_samples` requests: there is no live load to protect (it ended or stalled), so
  the run goes back to full speed;
- the first chunk is `start_chunk` (the session starts at a quarter of the run's size): the first reading comes
  only after `check_interval`, and a full-size chunk before it would be the biggest hit v1 takes;
- `probe_after` slow-downs in a row at the floor (smallest chunk, longest pause) and still over the bound: a
  probe. The migration stands still for `probe_seconds` and the v1 p95 of that idle window is read. Still over the
  bound means the excess is not caused by the migration *running* — it is what the migration left behind (reverse
  + repost triples the rows a date-windowed v1 query reads) or the machine itself — and no pacing can remove it:
  the reference the bound is relative to becomes the idle p95 (recorded as a probe), and the run resumes
  cautiously. Within the bound means pacing is what helps: stay at the floor. The reported degradation
  (`impact_pct`, the alerts) always compares with the real baseline; only the throttle's target moves.

Multiplicative decrease, gentler increase: the usual shape of a controller that must not oscillate around a
noisy signal. Every decision
is recorded (`history`) for the report's timeline. Thread-safe: the engine's worker threads share one throttle.
The clock and the pause are injectable, so the controller is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from runner.load.samples import SampleTail
from runner.load.stats import percentile
from runner.metrics import ThrottleState


class LatencySource(Protocol):
    def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
        """(p95 in ms, number of requests) of the v1 requests that ended in the last `seconds`."""


class TailSource:
    """LatencySource over the load generator's sample file (polled on every read)."""

    def __init__(self, tail: SampleTail, clock: Callable[[], float] = time.time) -> None:
        self.tail = tail
        self.clock = clock

    def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
        self.tail.poll()
        lat = sorted(s.latency_us for s in self.tail.since(self.clock() - seconds))
        p95 = percentile(lat, 95)
        return (None if p95 is None else p95 / 1000.0), len(lat)


@dataclass(frozen=True)
class Decision:
    t: float  # seconds since the throttle was created
    p95_ms: float | None
    requests: int
    action: str  # slow_down | speed_up | hold | no_data
    chunk: int
    pause_s: float


class LatencyThrottle:
    def __init__(self, source: LatencySource, *, baseline_p95_ms: float, max_degradation_pct: float = 5.0,
                 check_interval: float = 10.0, window: float | None = None, ceiling: int = 500,
                 min_chunk: int = 10, start_chunk: int | None = None, first_pause: float = 0.1,
                 max_pause: float = 5.0, min_samples: int = 20,
                 probe_after: int = 3, probe_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[float], None] | None = None, stop: threading.Event | None = None) -> None:
        if baseline_p95_ms <= 0:
            raise ValueError("the baseline p95 must be positive")
        self.source = source
        self.baseline = baseline_p95_ms
        self.max_pct = max_degradation_pct
        self.reference = baseline_p95_ms  # what the bound is relative to; a probe may raise it (see module doc)
        self.interval = check_interval
        self.window = window if window is not None else check_interval
        self.ceiling = ceiling
        self.min_chunk = min_chunk
        self.first_pause = first_pause
        self.max_pause = max_pause
        self.min_samples = min_samples
        self.probe_after = probe_after
        self.probe_seconds = probe_seconds if probe_seconds is not None else self.window
        self.probes: list[dict[str, Any]] = []
        self._streak = 0  # consecutive slow-downs at the floor
        self._probe_end: float | None = None
        self.clock = clock
        self.stop = stop or threading.Event()
        self._pause = pause or self._sleep
        self.chunk = ceiling if start_chunk is None else max(min_chunk, min(ceiling, start_chunk))
        self.start_chunk = self.chunk
        self.pause_s = 0.0
        self.history: list[Decision] = []
        self.paused_seconds = 0.0
        self._t0 = clock()
        self._last_check = self._t0
        self._lock = threading.Lock()

    @property
    def limit_ms(self) -> float:
        return self.reference * (1 + self.max_pct / 100.0)

    @property
    def comfort_ms(self) -> float:
        return self.reference * (1 + self.max_pct / 200.0)

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)  # a real pause of the migration; set `stop` to cut it short

    # --- the engine's Throttle protocol ------------------------------------------------------------------

    def wait(self) -> None:
        self._maybe_check()
        with self._lock:
            probe_end = self._probe_end
        if probe_end is not None:  # the migration stands still for the probe window, then the probe is read
            remaining = probe_end - self.clock()
            if remaining > 0:
                self._pause(remaining)
            self._end_probe()
            return
        with self._lock:
            pause = self.pause_s
            self.paused_seconds += pause
        if pause > 0:
            self._pause(pause)

    def batch_size(self, default: int) -> int:
        with self._lock:
            if default < self.ceiling:  # the run's own size is smaller: never exceed it
                self.ceiling = default
                self.chunk = min(self.chunk, default)
            return max(1, min(default, self.chunk))

    # --- the controller ------------------------------------------------------------------------------------

    def _maybe_check(self) -> None:
        now = self.clock()
        with self._lock:
            if now - self._last_check < self.interval:
                return
            self._last_check = now
        self.check(now)

    def check(self, now: float | None = None) -> Decision:
        """Read the source once and adjust; returns (and records) the decision."""
        now = self.clock() if now is None else now
        p95, n = self.source.recent_p95_ms(self.window)
        with self._lock:
            if p95 is None or n < self.min_samples:  # no load to protect (it ended, or never started)
                action = "no_data"
                self.chunk, self.pause_s = self.ceiling, 0.0
            elif p95 > self.limit_ms:
                action = "slow_down"  # at least halve; more when far over the bound (p95 5× the bound: ÷5)
                self.chunk = max(self.min_chunk, int(self.chunk * min(0.5, self.limit_ms / p95)))
                self.pause_s = min(self.max_pause, max(self.first_pause, self.pause_s * 2))
                at_floor = self.chunk == self.min_chunk and self.pause_s >= self.max_pause
                self._streak = self._streak + 1 if at_floor else 0
                if self.probe_after and self._streak >= self.probe_after:
                    action, self._streak = "probe", 0
                    self._probe_end = now + self.probe_seconds
            elif p95 < self.comfort_ms:
                action, self._streak = "speed_up", 0
                self.chunk = min(self.ceiling, self.chunk + max(1, self.chunk // 4))
                self.pause_s = 0.0 if self.pause_s < 0.02 else self.pause_s / 2
            else:
                action = "hold"
            d = Decision(round(now - self._t0, 3), None if p95 is None else round(p95, 3), n, action, self.chunk,
                         round(self.pause_s, 3))
            self.history.append(d)
            return d

    def _end_probe(self) -> None:
        """Read the window in which the migration stood still. Still over the bound: the excess is not caused by
        the migration running (it is what the migration left behind, or the machine), so the reference becomes the
        idle p95 and the run resumes cautiously; within the bound: the migration was the cause, stay at the floor."""
        with self._lock:
            if self._probe_end is None:  # another worker thread read it already
                return
            self._probe_end = None
        p95, n = self.source.recent_p95_ms(self.probe_seconds)
        with self._lock:
            t = round(self.clock() - self._t0, 3)
            if p95 is not None and n >= self.min_samples and p95 > self.limit_ms:
                outcome = "not_the_migration"
                self.reference = p95
                self.chunk, self.pause_s = self.min_chunk, self.first_pause
            else:
                outcome = "the_migration" if p95 is not None and n >= self.min_samples else "no_data"
            self.probes.append({"t": t, "idle_p95_ms": None if p95 is None else round(p95, 3), "requests": n,
                                "outcome": outcome, "reference_p95_ms": round(self.reference, 3)})
            self.history.append(Decision(t, None if p95 is None else round(p95, 3), n, f"probe:{outcome}",
                                         self.chunk, round(self.pause_s, 3)))
            self._last_check = self.clock()

    def metrics_state(self) -> ThrottleState:
        """Its state now, for the live metrics (runner.metrics reads it at every scrape)."""
        with self._lock:
            last = self.history[-1].p95_ms if self.history else None
            return ThrottleState(paused=self.pause_s > 0 or self._probe_end is not None, batch_size=self.chunk,
                                 pause_seconds=self.pause_s, paused_seconds_total=self.paused_seconds,
                                 baseline_p95_ms=self.baseline, limit_p95_ms=self.limit_ms, p95_ms=last)

    def summary(self) -> dict[str, Any]:
        actions: dict[str, int] = {}
        for d in self.history:
            actions[d.action] = actions.get(d.action, 0) + 1
        # Over the bound although the migration already crawls (smallest chunk, longest pause): throttling harder
        # cannot help; the degradation has another cause (e.g. data the migration wrote slows a v1 query).
        saturated = sum(1 for d in self.history if d.action in ("slow_down", "probe") and d.chunk == self.min_chunk
                        and d.pause_s >= self.max_pause)
        return {"enabled": True, "baseline_p95_ms": round(self.baseline, 3), "max_v1_p95_degradation_pct": self.max_pct,
                "limit_p95_ms": round(self.baseline * (1 + self.max_pct / 100.0), 3),
                "final_limit_p95_ms": round(self.limit_ms, 3), "check_interval_seconds": self.interval,
                "window_seconds": self.window, "min_chunk": self.min_chunk, "start_chunk": self.start_chunk,
                "max_pause_seconds": self.max_pause,
                "final_chunk": self.chunk, "final_pause_seconds": round(self.pause_s, 3),
                "paused_seconds": round(self.paused_seconds, 3), "decisions": actions,
                "saturated_checks": saturated, "reference_p95_ms": round(self.reference, 3),
                "probes": list(self.probes),
                "history": [asdict(d) for d in self.history]}

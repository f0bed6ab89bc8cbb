"""Auto-throttle: keep the live v1 p95 latency within the spec's bound while the migration runs, pacing all of its
workers together.

`LatencyThrottle` implements the engine's Throttle protocol (runner/engine/hooks.py): every worker thread calls
`wait()` before each chunk and `batch_size(default)` for its size. One throttle serves every worker of the run, and
its pace is theirs together, never one per worker. The pace has three knobs:

- `slots`: how many chunks may be in flight at once, across all workers. wait() hands the caller a slot (blocking
  while all are taken); the worker holds it until it calls wait() again (its chunk is over), calls `release()`,
  its thread ends, or a lease runs out (four times the usual chunk time, at least `lease` seconds: a worker that
  left the chunk loop without saying so);
- `chunk`: the chunk size batch_size() allows;
- `duty`: the share of the time the migration may work. After every chunk no worker starts the next one before a
  rest of (1 − duty) / duty times the usual chunk's time (a chunk counted as at least `first_pause` long, a rest
  at most `max_pause`): the first slow-down (duty ½) rests `first_pause` after a short chunk.

Why these knobs: measured on the 2-core reference machine (small org, 10 v1 users × 5 requests/s; one run per
figure, baseline noise 0.3-38 %): chunks of 10, one in flight at a time (~40 ms each), left v1 p95 within its noise
(−10 to −13 %) while migrating as fast as the unthrottled run; one chunk at a time of 15-50 candidates (0.06-0.25 s)
raised it by 10-60 % (one of three runs of 20 stayed within noise), of the engine's own size (~130) by 113 %;
chunks of 10 two at a time stayed within noise, four at a time raised it by 100 %. Short bursts, one or two at a
time, are what v1 does not feel; the first chunk of the old throttle (a quarter of 500 on each of four workers,
before its first reading) was the biggest hit v1 took.

Decisions at every chunk boundary. wait() first closes the caller's previous chunk, then, when at least
`decide_every` seconds passed since the last decision (the load generator flushes its samples four times a
second: there is nothing newer to read sooner), it reads the v1 requests that ended since the current pace took
effect (since the last chunk begun under the previous pace ended; at most `window` seconds of them) and compares
them with the bound, reference × (1 + max%):

- per task: given the baseline's p95 of each v1 task (`task_p95_ms`), each request is held to its own task's
  bound, task p95 × (reference / baseline) × (1 + max%), and "the bound" below means those (why:
  runner/load/evidence.py);
- breach: more requests over the bound than a p95 within it allows (5 % of them), by a margin of `margin_z`
  standard deviations that the odd slow request of an undisturbed v1 rarely reaches. Multiplicative decrease at
  once: the chunk halved (cut in proportion when p95 is more than twice the bound; never under `min_chunk`), the
  slots halved, the duty halved (not under `first_pause` of work per `max_pause` of rest). The knob grown last is
  remembered as what hurt: for `memory` seconds it does not grow back to that value (another knob grows instead);
- comfortable: at least `grow_samples` requests at this pace and their p95 under half the bound (reference ×
  (1 + max%/2)): at most 5 % of them over it. One knob up per decision, by a quarter: the duty first (up to full
  time), then the chunk while a chunk is a short burst (under `burst` seconds) or no other slot may be added, else
  one more slot (up to the workers seen);
- otherwise hold: the evidence at this pace keeps accumulating;
- no_data: fewer than `min_samples` requests in the last `window` seconds: there is no live load to protect (it
  ended or stalled), so the run goes to full speed (the run's chunk, no slot limit, full duty). When load shows up
  again the pace starts over from its start.

Start small, earn speed: the pace starts at `start_chunk` with `start_slots` and `start_duty` (the load session:
the smallest chunk, one in flight, working a quarter of the time) and every step up needs `grow_samples` requests
that stayed within half the bound at the current pace. Measured (small org, quiet machine, four runs): starting at
full duty, the first second migrated 160-200 candidates and 12-14 % of the v1 requests in it were over the
baseline p95 (5 % expected); the first reading that could slow it down comes only after 20 requests. Without
`start_chunk` the throttle starts at full speed (the run's own size, no limit) and only slows down on a breach.

Probe: `probe_after` breaches since the pace came down to the floor (smallest chunk, one slot; the duty still
moves) without leaving it. The migration stands still (every worker waits) for a moment to settle (a quarter of
`probe_seconds`, at most 1 s: what the last chunk set off is not idle v1 yet), then `probe_seconds` in which the v1
p95 is read. Still over the bound (as significantly as a breach) means the excess is not caused by the migration
*running* — it is what the migration left behind (reverse + repost triples the rows a date-windowed v1 query reads)
or the machine itself — and no pacing can remove it: the reference the bound is relative to becomes the idle p95
(recorded as a probe), and the run resumes cautiously. Otherwise pacing is what helps: stay at the floor (and probe
half as often). The reported degradation (`impact_pct`, the alerts) always compares with the real baseline; only
the throttle's target moves.

Every change is recorded (`history`; holds at most once per `check_interval`) for the report's timeline.
Thread-safe. The clock and the pause are injectable, so the controller is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from runner.engine.organization import MIN_CHUNK
from runner.load import evidence
from runner.load.evidence import Evidence, LatencySource, TaskSamples, breach
from runner.metrics import ThrottleState
from runner.spec.model import Spec

START_CHUNK = MIN_CHUNK  # the engine's smallest chunk: where a cautious run starts
START_DUTY = 0.25  # ... working a quarter of the time (a rest of three chunks' time after each)
SLOT_POLL_SECONDS = 0.05  # how often a worker waiting for a slot looks for a holder that is gone
MAX_HISTORY = 2000  # recorded decisions kept; beyond, every other one of them is dropped (counts stay exact)


@dataclass(frozen=True)
class Decision:
    t: float  # seconds since the throttle was created
    p95_ms: float | None
    requests: int
    action: str  # slow_down | speed_up | hold | no_data | resume | probe | probe:<outcome>
    chunk: int
    pause_s: float  # the rest after a chunk of the usual length
    slots: int | None = None  # chunks in flight allowed across all workers (None: no limit)
    duty: float = 1.0  # the share of the time the migration may work


@dataclass
class _Slot:
    thread: threading.Thread
    start: float  # when its chunk may begin (after any pause)


def throttle_settings(spec: Spec, baseline_p95_ms: float, check_interval: float, *,
                      max_pause: float = 5.0, task_p95_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """The keyword arguments of a LatencyThrottle for a run of `spec` against a measured baseline (overall and, when
    known, per v1 task): the spec's bound and chunk size, a cautious start (the smallest chunk, one in flight, a
    quarter of the time), decisions reading at most 2 × check_interval seconds of v1 requests (4 to 10)."""
    th = spec.execution.throttle
    return {"baseline_p95_ms": baseline_p95_ms, "max_degradation_pct": float(th.max_v1_p95_degradation_pct),
            "check_interval": check_interval, "window": max(4.0, min(2 * check_interval, 10.0)),
            "ceiling": int(spec.execution.batch_size), "min_chunk": START_CHUNK, "start_chunk": START_CHUNK,
            "start_slots": 1, "start_duty": START_DUTY, "max_pause": max_pause, "task_p95_ms": task_p95_ms}


class LatencyThrottle:
    def __init__(self, source: LatencySource, *, baseline_p95_ms: float, max_degradation_pct: float = 5.0,
                 check_interval: float = 10.0, window: float | None = None, ceiling: int = 500,
                 min_chunk: int = 10, start_chunk: int | None = None, start_slots: int | None = None,
                 start_duty: float = 1.0, task_p95_ms: dict[str, float] | None = None,
                 first_pause: float = 0.1, max_pause: float = 5.0, min_samples: int = 20,
                 grow_samples: int | None = None, decide_every: float = 0.25, margin_z: float = 2.0,
                 burst: float = 0.1, memory: float = 30.0, lease: float = 1.0,
                 probe_after: int = 3, probe_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[float], None] | None = None, stop: threading.Event | None = None) -> None:
        if baseline_p95_ms <= 0:
            raise ValueError("the baseline p95 must be positive")
        self.source = source
        self.baseline = baseline_p95_ms
        self.max_pct = max_degradation_pct
        self.reference = baseline_p95_ms  # what the bound is relative to; a probe may raise it (see module doc)
        self.task_p95 = {k: v for k, v in (task_p95_ms or {}).items() if v > 0}  # bounds per v1 task (module doc)
        self.interval = check_interval
        self.window = window if window is not None else check_interval
        self.ceiling = ceiling
        self.min_chunk = max(1, min(min_chunk, ceiling))
        self.first_pause = first_pause
        self.max_pause = max_pause
        self.min_samples = min_samples
        self.grow_samples = grow_samples if grow_samples is not None else max(2 * min_samples, 50)
        self.decide_every = decide_every
        self.margin_z = margin_z
        self.burst = burst
        self.memory = memory
        self.lease = lease
        self.probe_after = probe_after
        self.probe_seconds = probe_seconds if probe_seconds is not None else self.window
        self.probe_settle = min(1.0, self.probe_seconds / 4)  # the last chunk's commits, not yet an idle v1
        self.probes: list[dict[str, Any]] = []
        self._streak = 0  # breaches since the pace came down to the floor (smallest chunk, one slot)
        self._probe_need = probe_after  # breaches at the floor before the next probe
        self._probe_end: float | None = None
        self.clock = clock
        self.stop = stop or threading.Event()
        self._pause = pause or self._sleep
        if start_chunk is None:  # no cautious start: full speed until the first breach
            self.start_chunk, self.start_slots = ceiling, start_slots
        else:
            self.start_chunk, self.start_slots = max(self.min_chunk, min(ceiling, start_chunk)), start_slots or 1
        self.min_duty = first_pause / (first_pause + max_pause)  # a chunk of first_pause, then max_pause of rest
        self.start_duty = 1.0 if start_chunk is None else max(self.min_duty, min(1.0, start_duty))
        self.chunk = self.start_chunk
        self.slots: int | None = self.start_slots
        self.duty = self.start_duty
        self.history: list[Decision] = []
        self.actions: dict[str, int] = {}
        self.records = 0  # decisions ever kept in the history
        self.paused_seconds = 0.0
        self.slot_wait_seconds = 0.0
        self.chunks_granted = 0
        self.max_in_flight = 0
        self._begun = False
        self._t0 = clock()
        self._last_decision = self._t0
        self._last_record = self._t0
        self._changed_at = self._t0  # when the pace last changed
        self._evidence_from = self._t0  # requests that ended after this were served under the current pace
        self._idle = False  # no load seen at the last decision (full speed)
        self._grown: str | None = None  # the knob the last speed-up grew: "chunk" | "slots" | "duty"
        self._hurt: dict[str, tuple[int, float]] = {}  # knob -> (value that hurt, until)
        self._busy: float | None = None  # moving average of a chunk's duration (s)
        self._holders: dict[int, _Slot] = {}
        self._seen: dict[int, float] = {}  # worker thread -> its last wait()
        self._next_start = self._t0
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._deciding = threading.Lock()

    @property
    def pause_s(self) -> float:
        """The rest after a chunk: (1 − duty) / duty times the usual chunk's time (at least `first_pause` counted),
        at most `max_pause`; 0 at full duty."""
        if self.duty >= 1.0:
            return 0.0
        return min(self.max_pause, max(self._busy or 0.0, self.first_pause) * (1.0 - self.duty) / self.duty)

    @property
    def limit_ms(self) -> float:
        return self.reference * (1 + self.max_pct / 100.0)

    @property
    def comfort_ms(self) -> float:
        return self.reference * (1 + self.max_pct / 200.0)

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)  # a real pause of the migration; set `stop` to cut it short

    # --- the engine's Throttle protocol ------------------------------------------------------------------

    def begin(self, now: float | None = None) -> None:
        """The migration starts now: decisions read only v1 requests that ended from here on (not those slowed by
        what came before it, e.g. the before-snapshot) and the history counts its time from here. The first wait()
        calls it when nobody did."""
        with self._lock:
            now = self.clock() if now is None else now
            self._begun = True
            self._t0 = self._last_record = self._changed_at = self._evidence_from = now
            self._next_start = now

    def wait(self) -> None:
        if not self._begun:
            self.begin()
        me = threading.current_thread()
        now = self.clock()
        with self._cv:
            self._release(me, now)
            self._seen[me.ident or 0] = now
        if now - self._last_decision >= self.decide_every:
            self._decide(now)
        with self._lock:
            probe_end = self._probe_end
        if probe_end is not None:  # every worker stands still for the probe window, then the probe is read
            remaining = probe_end - self.clock()
            if remaining > 0:
                self._pause(remaining)
            self._end_probe()
        self._acquire(me)

    def batch_size(self, default: int) -> int:
        with self._lock:
            if default < self.ceiling:  # the run's own size is smaller: never exceed it
                self.ceiling = default
                self.chunk = min(self.chunk, default)
                self.min_chunk = min(self.min_chunk, default)
            return max(1, min(default, self.chunk))

    def release(self) -> None:
        """The calling worker starts no chunk now (it left the chunk loop): its slot is free at once."""
        with self._cv:
            self._release(threading.current_thread(), self.clock())

    # --- the shared pace -----------------------------------------------------------------------------------

    def _release(self, thread: threading.Thread, now: float) -> None:
        """Close `thread`'s chunk, if it holds a slot (lock held)."""
        slot = self._holders.pop(thread.ident or 0, None)
        if slot is None:
            return
        if slot.thread is thread:  # (not a thread that ended and whose id was given to a new one)
            busy = max(0.0, now - slot.start)
            self._busy = busy if self._busy is None else 0.7 * self._busy + 0.3 * busy
        if slot.start < self._changed_at:  # a chunk of the previous pace just ended
            self._evidence_from = max(self._evidence_from, now)
        self._next_start = max(self._next_start, now + self.pause_s)  # (with this chunk's time in the average)
        self._cv.notify_all()

    def _expire(self, now: float) -> None:
        """Free the slots of workers that are gone: their thread ended, or their lease ran out (lock held)."""
        lease = max(self.lease, 4 * (self._busy or 0.0))
        for ident, slot in list(self._holders.items()):
            if not slot.thread.is_alive() or now - slot.start > lease:
                del self._holders[ident]
                if slot.start < self._changed_at:  # as if its chunk ended now
                    self._evidence_from = max(self._evidence_from, now)
                self._cv.notify_all()

    def _acquire(self, me: threading.Thread) -> None:
        """Take a slot (waiting while all are in use) and the next start time; pause until it."""
        waited_from: float | None = None
        with self._cv:
            while not self.stop.is_set():
                now = self.clock()
                self._expire(now)
                if self.slots is None or len(self._holders) < self.slots:
                    break
                if waited_from is None:
                    waited_from = now
                self._cv.wait(SLOT_POLL_SECONDS)
            now = self.clock()
            if waited_from is not None:
                self.slot_wait_seconds += max(0.0, now - waited_from)
            start = max(now, self._next_start) if self.pause_s > 0 else now
            if self._probe_end is not None:  # a probe began meanwhile: the migration stands still until its end
                start = max(start, self._probe_end)
            self._holders[me.ident or 0] = _Slot(me, start)
            self.chunks_granted += 1
            self.max_in_flight = max(self.max_in_flight, len(self._holders))
            pause = start - now
            self.paused_seconds += pause
        if pause > 0:
            self._pause(pause)

    # --- the controller ------------------------------------------------------------------------------------

    def _evidence(self, seconds: float) -> Evidence:
        """The last `seconds` of v1 requests against the bound and half of it (each against its own task's when
        both the task baselines and the source's tasks are known)."""
        if self.task_p95 and isinstance(self.source, TaskSamples):
            return evidence.per_task(self.source.recent_tasks(seconds), self.task_p95, self.baseline,
                                     self.reference / self.baseline, self.max_pct)
        return evidence.overall(self.source, seconds, self.limit_ms, self.comfort_ms)

    def _decide(self, now: float) -> None:
        if not self._deciding.acquire(blocking=False):
            return  # another worker is deciding right now
        try:
            self.check(now)
        finally:
            self._deciding.release()

    def check(self, now: float | None = None) -> Decision | None:
        """Read the source once and adjust; returns the decision when it was recorded (holds only once per
        check_interval)."""
        now = self.clock() if now is None else now
        self._last_decision = now
        recent = self._evidence(self.window)
        span = min(self.window, max(0.0, now - self._evidence_from))
        ev = recent if span >= self.window else self._evidence(span)
        with self._lock:
            if recent.requests < self.min_samples:  # no load to protect (it ended, or never started)
                changed = not self._idle or (self.chunk, self.slots, self.duty) != (self.ceiling, None, 1.0)
                self._idle = True
                self.chunk, self.slots, self.duty = self.ceiling, None, 1.0
                return self._record(now, recent, "no_data", changed)
            if self._idle:  # the load is back: start over from the cautious start
                self._idle = False
                self.chunk, self.slots = min(self.start_chunk, self.ceiling), self.start_slots
                self.duty = self.start_duty
                return self._record(now, recent, "resume", True)
            if ev.requests >= self.min_samples and breach(ev, self.margin_z):
                return self._slow_down(now, ev)
            if ev.requests >= self.grow_samples and ev.comfortable:
                return self._speed_up(now, ev)
            return self._record(now, ev, "hold", False)

    def _slow_down(self, now: float, ev: Evidence) -> Decision | None:
        """Multiplicative decrease of every knob (lock held)."""
        p95 = ev.p95_ms or self.limit_ms
        if self._grown in ("chunk", "slots"):  # what the last step up grew hurt: do not grow it back soon
            value = self.chunk if self._grown == "chunk" else (self.slots or len(self._holders) + 1)
            self._hurt[self._grown] = (value, now + self.memory)
        self._grown = None
        self.chunk = max(self.min_chunk, int(self.chunk * min(0.5, self.limit_ms / p95)))
        in_flight = self.slots if self.slots is not None else len(self._holders) + 1  # + the caller's
        self.slots = max(1, in_flight // 2)
        self.duty = max(self.min_duty, self.duty / 2)
        self._next_start = max(self._next_start, now + self.pause_s)  # the rest applies to the next chunk already
        at_floor = self.chunk == self.min_chunk and self.slots == 1
        self._streak = self._streak + 1 if at_floor else 0
        action = "slow_down"
        if self.probe_after and self._streak >= self._probe_need:
            action, self._streak = "probe", 0
            self._probe_end = now + self.probe_settle + self.probe_seconds
        return self._record(now, ev, action, True)

    def _capped(self, knob: str, value: int, now: float) -> bool:
        hurt = self._hurt.get(knob)
        return hurt is not None and now < hurt[1] and value >= hurt[0]

    def _speed_up(self, now: float, ev: Evidence) -> Decision | None:
        """One knob up (lock held): the duty first, then a short chunk longer, else one more slot."""
        if self.duty < 1.0:
            self.duty = min(1.0, self.duty * 1.25)
            self._grown = "duty"
            return self._record(now, ev, "speed_up", True)
        grown = self.chunk + max(1, self.chunk // 4)
        chunk_ok = self.chunk < self.ceiling and not self._capped("chunk", grown, now)
        workers = max(1, len(self._seen_recently(now)))
        slots_ok = self.slots is not None and self.slots < workers and not self._capped("slots", self.slots + 1, now)
        short = self._busy is None or self._busy < self.burst
        if chunk_ok and (short or not slots_ok):
            self.chunk, self._grown = min(self.ceiling, grown), "chunk"
        elif slots_ok and self.slots is not None:
            self.slots, self._grown = self.slots + 1, "slots"
        else:
            return self._record(now, ev, "hold", False)  # as fast as it may go now
        self._streak, self._probe_need = 0, self.probe_after  # off the floor
        return self._record(now, ev, "speed_up", True)

    def _seen_recently(self, now: float) -> list[int]:
        for ident, t in list(self._seen.items()):
            if now - t > max(self.window, self.lease):
                del self._seen[ident]
        return list(self._seen)

    def _record(self, now: float, ev: Evidence, action: str, changed: bool) -> Decision | None:
        """Count the decision; keep it in the history when it changed the pace, or no record for an interval."""
        self.actions[action] = self.actions.get(action, 0) + 1
        if changed:
            self._changed_at = self._evidence_from = now
        elif now - self._last_record < self.interval:
            return None
        self._last_record = now
        d = Decision(round(now - self._t0, 3), None if ev.p95_ms is None else round(ev.p95_ms, 3), ev.requests,
                     action, self.chunk, round(self.pause_s, 3), self.slots, round(self.duty, 4))
        self.history.append(d)
        self.records += 1
        if len(self.history) > MAX_HISTORY:
            self.history = self.history[:-1:2] + self.history[-1:]
        return d

    def _end_probe(self) -> None:
        """Read the window in which the migration stood still. Still over the bound, as significantly as a breach:
        the excess is not caused by the migration running (it is what the migration left behind, or the machine),
        so the reference becomes the idle p95 and the run resumes cautiously; else the migration was the cause:
        stay at the floor."""
        with self._lock:
            if self._probe_end is None:  # another worker thread read it already
                return
            self._probe_end = None
        ev = self._evidence(self.probe_seconds)
        p95, n = ev.p95_ms, ev.requests
        with self._lock:
            now = self.clock()
            t = round(now - self._t0, 3)
            # The same significance as a breach: one idle window of a noisy v1 reads over the bound by chance
            # (measured: an idle 4.8 ms against a 3.8 ms baseline whose after-run p95 was 3.9 ms), and moving the
            # reference on it would let the migration degrade v1 by that much.
            if p95 is not None and n >= self.min_samples and breach(ev, self.margin_z):
                outcome = "not_the_migration"
                self.reference = p95
                self.chunk, self.slots, self.duty = self.min_chunk, 1, 0.5
            else:
                outcome = "the_migration" if p95 is not None and n >= self.min_samples else "no_data"
                if outcome == "the_migration":  # pacing helps: probe less often while it stays at the floor
                    self._probe_need *= 2
            self.probes.append({"t": t, "idle_p95_ms": None if p95 is None else round(p95, 3), "requests": n,
                                "outcome": outcome, "reference_p95_ms": round(self.reference, 3)})
            self._record(now, Evidence(p95, n, 0), f"probe:{outcome}", True)
            self._last_decision = now

    def metrics_state(self) -> ThrottleState:
        """Its state now, for the live metrics (runner.metrics reads it at every scrape)."""
        with self._lock:
            last = self.history[-1].p95_ms if self.history else None
            return ThrottleState(paused=self.pause_s > 0 or self._probe_end is not None, batch_size=self.chunk,
                                 pause_seconds=self.pause_s, paused_seconds_total=self.paused_seconds,
                                 baseline_p95_ms=self.baseline, limit_p95_ms=self.limit_ms, p95_ms=last)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            history = list(self.history)
            # Over the bound although the migration already crawls (smallest chunk, one slot, lowest duty):
            # throttling harder cannot help; the degradation has another cause (e.g. data the migration wrote
            # slows a v1 query).
            saturated = sum(1 for d in history if d.action in ("slow_down", "probe") and d.chunk == self.min_chunk
                            and d.slots == 1 and d.duty <= self.min_duty)
            return {"enabled": True, "baseline_p95_ms": round(self.baseline, 3),
                    "max_v1_p95_degradation_pct": self.max_pct,
                    "limit_p95_ms": round(self.baseline * (1 + self.max_pct / 100.0), 3),
                    "final_limit_p95_ms": round(self.limit_ms, 3), "check_interval_seconds": self.interval,
                    "decide_every_seconds": self.decide_every, "window_seconds": self.window,
                    "min_chunk": self.min_chunk, "start_chunk": self.start_chunk, "start_slots": self.start_slots,
                    "start_duty": self.start_duty, "task_p95_ms": dict(self.task_p95),
                    "max_pause_seconds": self.max_pause,
                    "final_chunk": self.chunk, "final_slots": self.slots, "final_duty": round(self.duty, 4),
                    "final_pause_seconds": round(self.pause_s, 3),
                    "paused_seconds": round(self.paused_seconds, 3),
                    "slot_wait_seconds": round(self.slot_wait_seconds, 3), "chunks_granted": self.chunks_granted,
                    "max_in_flight": self.max_in_flight,
                    "mean_chunk_seconds": None if self._busy is None else round(self._busy, 4),
                    "decisions": dict(self.actions),
                    "saturated_checks": saturated, "reference_p95_ms": round(self.reference, 3),
                    "probes": list(self.probes),
                    "history": [asdict(d) for d in history]}

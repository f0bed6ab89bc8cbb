"""The auto-throttle's controller and the latency statistics it and the load report rely on (no database, no
sleeping: the clock, the pause and the latency source are fakes the test drives; worker threads meet only inside
the throttle)."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runner.load import stats
from runner.load.evidence import Evidence, TailSource, breach, task_baselines
from runner.load.samples import CONTENTION, Sample, SampleTail, SampleWriter, classify
from runner.load.shared import SharedThrottle
from runner.load.throttle import LatencyThrottle

LIMIT_US = 10_500  # the bound of a 10 ms baseline + 5 %


class Samples:
    """A fake v1 load: `n` requests in any window, `over` of them over the bound (the rest at baseline)."""

    def __init__(self, n: int = 100, over: int = 0, slow_us: int = 20_000) -> None:
        self.n, self.over, self.slow_us = n, over, slow_us
        self.windows: list[float] = []

    def set(self, n: int, over: int, slow_us: int = 20_000) -> None:
        self.n, self.over, self.slow_us = n, over, slow_us

    def recent_us(self, seconds: float) -> list[int]:
        self.windows.append(round(seconds, 6))
        return [9_000] * (self.n - self.over) + [self.slow_us] * self.over

    def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
        lat = sorted(self.recent_us(seconds))
        p95 = stats.percentile(lat, 95)
        return (None if p95 is None else p95 / 1000), len(lat)


class Clock:
    """Simulated time: it moves only when a test (or a pause of the throttle) moves it."""

    def __init__(self) -> None:
        self.t = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.t += seconds


def make(source: Samples, clock: Clock, pauses: list[float] | None = None, **kw: Any) -> LatencyThrottle:
    args = {"baseline_p95_ms": 10.0, "max_degradation_pct": 5.0, "check_interval": 10.0, "window": 4.0,
            "ceiling": 500, "min_chunk": 10, "start_chunk": 10, "start_slots": 1, "first_pause": 0.1,
            "max_pause": 2.0} | kw

    def pause(seconds: float) -> None:
        if pauses is not None:
            pauses.append(round(seconds, 6))
        clock.advance(seconds)

    return LatencyThrottle(source, clock=clock, pause=pause, **args)


def chunk(th: LatencyThrottle, clock: Clock, seconds: float = 0.3) -> int:
    """`seconds` of one worker's chunk, then its chunk boundary: wait() and the size the next chunk may take."""
    clock.advance(seconds)
    th.wait()
    return th.batch_size(500)


def test_breach_needs_more_than_noise_over_the_bound() -> None:
    # p95 within the bound allows 5 % of the requests over it; a margin of 1.5 standard deviations keeps the odd
    # slow request of an undisturbed v1 from counting as the migration's doing
    assert not breach(Evidence(12.0, 200, 14), 1.5)  # 7 %: 10 allowed + 4.7
    assert breach(Evidence(12.0, 200, 15), 1.5)
    assert not breach(Evidence(12.0, 20, 2), 1.5) and breach(Evidence(12.0, 20, 3), 1.5)
    assert breach(Evidence(12.0, 20, 3), 0.0) and breach(Evidence(12.0, 20, 2), 0.0)


def test_starts_at_the_smallest_chunk_one_at_a_time_and_earns_speed_while_v1_stays_fast() -> None:
    src, clock = Samples(100, 0), Clock()
    th = make(src, clock)
    assert (th.batch_size(500), th.slots, th.pause_s) == (10, 1, 0.0)  # before any reading: a safe pace
    sizes = [chunk(th, clock) for _ in range(8)]
    assert sizes == [12, 15, 18, 22, 27, 33, 41, 51]  # a quarter more at every comfortable boundary
    assert th.slots == 1  # chunks stay short bursts (no chunk took `burst` yet): one in flight
    assert [d.action for d in th.history] == ["speed_up"] * 8


def test_a_cautious_start_rests_from_the_first_chunk_and_earns_the_working_time_back_first() -> None:
    src, clock, pauses = Samples(100, 0), Clock(), []
    th = make(src, clock, pauses, start_duty=0.25)
    assert (th.batch_size(500), th.slots, th.duty) == (10, 1, 0.25)
    assert th.pause_s == pytest.approx(0.3)  # before any chunk was timed: first_pause (0.1) counted, 3× its rest
    sizes = [chunk(th, clock, 0.05) for _ in range(12)]
    assert pauses[0] == pytest.approx(0.3)  # the rest already follows the very first chunk (0.05 s: 0.1 counted)
    sizes += [chunk(th, clock) for _ in range(3)]
    steps = [(d.duty, d.chunk) for d in th.history]
    assert [d for d, _ in steps[:7]] == [0.3125, 0.3906, 0.4883, 0.6104, 0.7629, 0.9537, 1.0]  # × 1.25 per step
    assert {c for _, c in steps[:7]} == {10} and steps[7:9] == [(1.0, 12), (1.0, 15)]  # then the chunk grows
    assert sizes[-1] > 10
    src.set(19, 0)
    chunk(th, clock)
    src.set(100, 0)
    chunk(th, clock)
    assert th.history[-1].action == "resume" and (th.chunk, th.duty) == (10, 0.25)  # starts over cautiously


def test_the_load_session_starts_cautiously() -> None:
    from runner.load.throttle import START_DUTY, throttle_settings
    from runner.resources import data_dir
    from runner.spec import load_spec

    settings = throttle_settings(load_spec(data_dir("specs") / "finance-dna-v2.yaml"), 10.0, 2.0)
    th = LatencyThrottle(Samples(), **settings)
    assert (th.chunk, th.slots, th.duty) == (10, 1, START_DUTY) and START_DUTY < 1.0
    assert th.summary()["start_duty"] == START_DUTY


def test_no_step_up_without_enough_requests_at_the_current_pace() -> None:
    src, clock = Samples(49, 0), Clock()  # grow_samples defaults to 50
    th = make(src, clock)
    sizes = [chunk(th, clock) for _ in range(5)]
    assert sizes == [10] * 5 and th.history == []  # holds are not recorded more than once per check_interval
    assert th.actions == {"hold": 5}


def test_a_breach_is_answered_at_the_next_chunk_boundary_not_after_an_interval() -> None:
    src, clock, pauses = Samples(100, 0), Clock(), []
    th = make(src, clock, pauses, check_interval=10.0, start_slots=4, start_chunk=80)
    chunk(th, clock)
    assert th.chunk == 100
    src.set(40, 8)  # the last chunk slowed v1: 20 % of 40 requests over the bound
    size = chunk(th, clock, 0.3)  # 0.3 s later, far less than the 10 s interval
    assert th.history[-1].action == "slow_down"
    assert size == 50 and th.slots == 2 and th.duty == 0.5  # chunk, slots and the share of working time halved
    assert th.pause_s == 0.3  # at duty ½ a rest as long as a chunk (0.3 s here) ...
    assert pauses == [0.3]  # ... already before the very next chunk


def test_far_over_the_bound_cuts_in_proportion() -> None:
    src, clock = Samples(100, 0), Clock()
    th = make(src, clock, start_chunk=500)
    src.set(100, 100, slow_us=105_000)  # 10× the 10.5 ms bound: a tenth at once, not a half
    assert chunk(th, clock) == 50


def test_over_the_bound_at_the_smallest_chunk_the_duty_halves_down_to_the_longest_pause() -> None:
    src, clock = Samples(100, 20), Clock()
    th = make(src, clock, probe_after=0, max_pause=5.0)
    duties, rests = [], []
    for _ in range(7):
        chunk(th, clock)  # chunks of 0.3 s
        duties.append(round(th.duty, 4))
        rests.append(round(th.pause_s, 3))
    assert duties == [0.5, 0.25, 0.125, 0.0625, 0.0312, 0.0196, 0.0196]  # down to 0.1 s of work per 5 s of rest
    assert rests == [0.1, 0.9, 2.1, 4.5, 5.0, 5.0, 5.0]  # (the first decision knew no chunk time yet)
    assert (th.chunk, th.slots) == (10, 1)
    assert th.summary()["saturated_checks"] == 2  # at the floor and still over: throttling harder cannot help


def test_short_chunks_rest_at_least_first_pause() -> None:
    src, clock, pauses = Samples(0, 0), Clock(), []
    th = make(src, clock, pauses, decide_every=float("inf"))  # no decisions: the pace stays as set
    th.duty = 0.5
    for _ in range(5):
        chunk(th, clock, 0.02)  # chunks of 20 ms
    assert pauses == [0.1] * 4 and th.pause_s == 0.1  # rests as if a chunk were first_pause long
    th.duty = 0.25
    chunk(th, clock, 0.02)
    assert pauses[-1] == 0.3


def test_recovery_restores_the_working_time_first_then_grows() -> None:
    src, clock = Samples(100, 20), Clock()
    th = make(src, clock, start_chunk=40)
    chunk(th, clock)
    chunk(th, clock)
    assert (th.chunk, th.duty) == (10, 0.25)
    src.set(100, 0)
    duties = []
    for _ in range(7):
        chunk(th, clock)
        duties.append(round(th.duty, 3))
    assert duties == [0.312, 0.391, 0.488, 0.61, 0.763, 0.954, 1.0]  # a quarter more per comfortable decision
    assert th.chunk == 10 and th.pause_s == 0.0
    assert chunk(th, clock) == 12


def test_between_the_half_and_the_full_bound_holds() -> None:
    src, clock = Samples(100, 0), Clock()
    th = make(src, clock, start_chunk=40)
    src.set(100, 6, slow_us=10_400)  # p95 10.4 ms: within the bound (10.5), above its half (10.25)
    for _ in range(4):
        chunk(th, clock)
    assert th.chunk == 40 and th.actions == {"hold": 4}


def test_what_hurt_is_not_grown_back_soon_another_knob_grows() -> None:
    src, clock = Samples(100, 0), Clock()
    th = make(src, clock, memory=30.0, burst=1.0, window=10.0)  # every chunk counts as a short burst
    for _ in range(3):
        chunk(th, clock)  # 10 → 12 → 15 → 18
    # a second worker shows up; v1 suffers at 18
    th.release()
    helper = threading.Thread(target=th.wait)
    helper.start()
    helper.join()  # it took the slot and ended: its slot is free again (a thread that ended holds none)
    src.set(100, 20)
    chunk(th, clock)
    assert (th.chunk, th.slots, th.duty) == (10, 1, 0.5)
    src.set(100, 0)
    for _ in range(4):
        chunk(th, clock)  # the working time is restored first
    assert th.duty == 1.0
    for _ in range(2):
        chunk(th, clock)  # 10 → 12 → 15
    assert th.chunk == 15
    # 18 hurt less than 30 s ago: the other knob grows instead, up to the workers seen
    clock.advance(1.0)
    chunk(th, clock)
    assert (th.chunk, th.slots) == (15, 2)
    chunk(th, clock)
    assert (th.chunk, th.slots, th.actions["hold"]) == (15, 2, 1)  # two workers seen: as fast as it may go
    clock.advance(30.0)
    chunk(th, clock)
    assert th.chunk == 18  # what hurt is tried again once its memory ran out


def test_long_chunks_grow_the_slots_before_the_chunk() -> None:
    src, clock = Samples(100, 0), Clock()
    th = make(src, clock, burst=0.1, start_chunk=40)
    others = [threading.Thread(target=lambda: None) for _ in range(3)]
    for t in others:  # four workers seen (threads that called wait() lately)
        t.start()
        t.join()
    for t in others:
        th._seen[t.ident or 0] = clock()
    chunk(th, clock, 0.3)  # (the first decision: no chunk measured yet, the chunk grows)
    assert (th.chunk, th.slots) == (50, 1)
    chunk(th, clock, 0.3)  # a chunk of 40 took 0.3 s: longer than a short burst
    assert (th.chunk, th.slots) == (50, 2)


def test_decisions_read_only_requests_served_under_the_current_pace() -> None:
    class PerSecond(Samples):  # 60 requests/s, every one fast
        def recent_us(self, seconds: float) -> list[int]:
            self.windows.append(round(seconds, 6))
            return [9_000] * int(60 * seconds)

    src, clock = PerSecond(), Clock()
    th = make(src, clock, start_slots=2)
    th.begin()
    clock.advance(0.5)
    th.wait()  # worker A starts a chunk of 10 at 0.5 (30 requests so far: too few to step up)
    clock.advance(0.5)
    b = threading.Thread(target=th.wait)
    b.start()
    b.join()  # worker B at 1.0: 60 requests at 10, all fast → 12
    assert th.chunk == 12 and th.history[-1].t == 1.0
    clock.advance(0.5)
    th.wait()  # A's chunk of 10 ends at 1.5: only what ends after it was served by chunks of 12
    assert src.windows[-2:] == [4.0, 0.0]  # (the 4 s window is read for no_data)
    clock.advance(0.3)
    th.wait()
    assert src.windows[-2:] == [4.0, 0.3]  # not the 0.8 s since the decision


def test_begin_forgets_what_came_before_the_migration() -> None:
    src, clock = Samples(100, 20), Clock()  # the before-snapshot slowed v1
    th = make(src, clock)
    clock.advance(2.0)
    th.begin()
    src.set(100, 0)
    clock.advance(0.3)
    th.wait()
    assert src.windows[-1] == 0.3 and th.history[-1].t == 0.3 and th.history[-1].action == "speed_up"


def test_no_load_means_full_speed_and_a_returning_load_starts_over() -> None:
    src, clock, pauses = Samples(100, 20), Clock(), []
    th = make(src, clock, pauses, start_chunk=40)
    chunk(th, clock)
    assert th.pause_s == 0.1
    src.set(19, 0)  # under min_samples (20) in the 4 s window: the load ended or stalled
    chunk(th, clock)
    assert (th.batch_size(500), th.slots, th.pause_s) == (500, None, 0.0)
    assert th.history[-1].action == "no_data"
    src.set(100, 0)
    chunk(th, clock)
    assert th.history[-1].action == "resume" and (th.chunk, th.slots) == (40, 1)  # the cautious start again


def test_a_run_without_load_is_never_held_back() -> None:
    src, clock, pauses = Samples(0, 0), Clock(), []
    th = make(src, clock, pauses)
    sizes: list[int] = []
    together = threading.Barrier(4)

    def worker() -> None:
        for i in range(20):
            th.wait()
            sizes.append(th.batch_size(500))
            if i == 0:
                together.wait()  # all four in a chunk at once

    threads = [threading.Thread(target=worker) for _ in range(4)]
    clock.advance(1.0)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [500] * 80 and pauses == [] and th.slot_wait_seconds == 0.0
    assert th.max_in_flight == 4  # no slot limit: each worker holds its own chunk


def test_n_workers_share_one_pace() -> None:
    """Four worker threads, one slot, a 0.1 s pause: the chunks of all four come one after another with the pause
    between them — the pace of one worker, not four. Simulated time moves only inside a chunk (its 0.05 s of work)
    and inside the throttle's pause, both done by the one worker that holds the slot."""
    src, clock = Samples(0, 0), Clock()
    th = make(src, clock, decide_every=float("inf"))  # no decisions: the pace stays as set
    th.duty = 0.5  # a rest as long as a chunk, at least first_pause (0.1 s): chunks of 0.05 s rest 0.1 s
    log: list[tuple[float, float, str]] = []  # (start, end, worker) of every chunk
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def worker(name: str) -> None:
        for _ in range(20):
            th.wait()
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            start = clock()
            clock.advance(0.05)
            with lock:
                in_flight[0] -= 1
                log.append((start, clock(), name))
        th.release()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and th.max_in_flight == 1 and th.chunks_granted == 80
    log.sort()
    gaps = [round(b[0] - a[1], 6) for a, b in itertools.pairwise(log)]
    assert min(gaps) >= 0.1  # never a chunk within the pause after the previous one, whichever worker
    per_second = Counter(int(start) for start, _, _ in log)
    assert max(per_second.values()) <= 7  # 1 / (0.05 + 0.1) = 6.7 chunks per simulated second, all workers
    assert round(log[-1][1], 6) == round(80 * 0.15 - 0.1, 6)  # 80 chunks back to back with their pauses
    assert len({name for _, _, name in log}) == 4


def test_slots_bound_the_chunks_in_flight() -> None:
    src, clock = Samples(0, 0), Clock()
    th = make(src, clock, decide_every=float("inf"), start_slots=2)
    in_flight, most = [0], [0]
    lock = threading.Lock()
    go = threading.Barrier(4)

    def worker() -> None:
        go.wait()
        for _ in range(25):
            th.wait()
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            with lock:
                in_flight[0] -= 1
        th.release()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] <= 2 and th.max_in_flight <= 2 and th.chunks_granted == 100


def test_a_slot_is_freed_when_its_worker_is_gone() -> None:
    src, clock = Samples(0, 0), Clock()
    th = make(src, clock, decide_every=float("inf"), lease=1.0)
    done = threading.Event()
    t = threading.Thread(target=lambda: (th.wait(), done.set()))
    t.start()
    t.join()
    assert done.is_set()
    th.wait()  # the other worker's thread ended without a word: its slot is free
    assert th.max_in_flight == 1
    # this thread holds the slot and goes on with something else (e.g. scanning the next tier)
    clock.advance(1.01)  # ... longer than its lease
    t = threading.Thread(target=th.wait)
    t.start()
    t.join()  # granted: the lease ran out
    th.release()  # (this thread's slot was taken over already: nothing to free)
    assert th.chunks_granted == 3 and th.max_in_flight == 1


def _saturate(th: LatencyThrottle, src: Samples, clock: Clock) -> None:
    """Far over the bound whatever the pace, until the throttle probes (within the wait() that decides it)."""
    src.set(100, 100, slow_us=30_000)  # the bound is 10.5 ms
    for _ in range(20):
        chunk(th, clock)
        if th.probes:
            return
    raise AssertionError("no probe after 20 decisions at the floor")


class Mix(Samples):
    """A v1 mix: `n` requests, `heavy` of them a trial balance at its usual 150 ms, `slow` light ones over the
    bound (light ones at 9 ms, slow ones at 12 ms: the bound of a 10 ms baseline + 5 % is 10.5 ms)."""

    def __init__(self, n: int = 100, heavy: int = 0, slow: int = 0) -> None:
        super().__init__(n, 0)
        self.heavy, self.slow = heavy, slow

    def recent_tasks(self, seconds: float) -> list[tuple[str, int]]:
        self.windows.append(round(seconds, 6))
        light = self.n - self.heavy - self.slow
        return ([("read_txn", 9_000)] * light + [("read_txn", 12_000)] * self.slow
                + [("trial_balance", 150_000)] * self.heavy)

    def recent_us(self, seconds: float) -> list[int]:
        return [us for _, us in self.recent_tasks(seconds)]


def test_each_request_is_held_to_its_own_tasks_bound() -> None:
    src, clock = Mix(100, heavy=12), Clock()  # 12 % heavy requests: a p95 of 150 ms, yet every one as usual
    by_task = make(src, clock, task_p95_ms={"read_txn": 10.0, "trial_balance": 160.0}, start_chunk=40)
    other_clock = Clock()
    overall = make(Mix(100, heavy=12), other_clock, start_chunk=40)
    chunk(by_task, clock)
    assert by_task.history[-1].action == "speed_up" and by_task.history[-1].p95_ms == 150.0
    chunk(overall, other_clock)
    assert overall.history[-1].action == "slow_down"  # the overall bound reads the mix as a breach
    src.heavy, src.slow = 2, 15  # light requests slowed: a breach whatever the mix
    chunk(by_task, clock)
    assert by_task.history[-1].action == "slow_down"
    assert by_task.summary()["task_p95_ms"] == {"read_txn": 10.0, "trial_balance": 160.0}


def test_task_bounds_follow_the_reference_a_probe_moved() -> None:
    src = Mix(100, heavy=5, slow=95)  # light requests at 12 ms: over a 10 ms task's bound of 10.5 ms
    th = make(src, Clock(), task_p95_ms={"read_txn": 10.0, "trial_balance": 160.0})
    assert th._evidence(4.0).over == 95
    th.reference = 13.0  # as a probe that found idle v1 at 13 ms leaves it: every task's bound × 1.3
    ev = th._evidence(4.0)
    assert (ev.over, ev.over_comfort) == (0, 0)  # 12 < 10 × 1.3 × 1.025; 150 < 160 × 1.3 × 1.025


def test_task_baselines_keep_tasks_with_enough_requests() -> None:
    base = {"p95_ms": 4.5, "tasks": {"read_txn": {"requests": 500, "p95_ms": 1.2},
                                     "trial_balance": {"requests": 35, "p95_ms": 222.7},
                                     "rare": {"requests": 3, "p95_ms": 50.0},
                                     "broken": {"requests": 100, "p95_ms": None}}}
    assert task_baselines(base) == {"read_txn": 1.2, "trial_balance": 222.7}
    assert task_baselines({"p95_ms": 4.5}) == {}


def test_a_probe_that_stays_slow_moves_the_reference_not_the_reported_baseline() -> None:
    src, clock, pauses = Samples(), Clock(), []
    th = make(src, clock, pauses, probe_seconds=8.0)
    _saturate(th, src, clock)
    actions = [d.action for d in th.history]
    assert actions == ["slow_down", "slow_down", "probe", "probe:not_the_migration"]  # 3 breaches at the floor
    assert 9.0 in pauses  # the migration stood still 1 s to settle and the whole probe window ...
    assert src.windows[-1] == 8.0  # ... and that idle window is what the probe read
    assert th.reference == 30.0
    assert (th.chunk, th.slots, th.duty) == (10, 1, 0.5)  # resumes cautiously ...
    src.set(100, 5, slow_us=31_000)  # ... and now judges against the idle p95: 30 ms is under half the bound
    chunk(th, clock)
    assert th.history[-1].action == "speed_up"
    s = th.summary()
    assert s["baseline_p95_ms"] == 10.0 and s["reference_p95_ms"] == 30.0 and len(s["probes"]) == 1


def test_an_idle_window_only_slightly_over_the_bound_does_not_move_the_reference() -> None:
    class Noisy(Samples):
        def recent_us(self, seconds: float) -> list[int]:
            if seconds == 8.0:  # idle: 7 of 100 requests over the bound, within a p95's chance (5 + 2 × 2.2)
                self.windows.append(seconds)
                return [9_000] * 93 + [12_000] * 7
            return super().recent_us(seconds)

    src, clock = Noisy(), Clock()
    th = make(src, clock, probe_seconds=8.0)
    _saturate(th, src, clock)
    assert th.probes[-1]["outcome"] == "the_migration" and th.probes[-1]["idle_p95_ms"] == 12.0
    assert th.reference == 10.0  # the bound stays where the baseline put it


def test_a_probe_that_recovers_keeps_the_floor() -> None:
    class Recovers(Samples):
        def recent_us(self, seconds: float) -> list[int]:
            if seconds == 8.0:  # idle, v1 is back to normal
                self.windows.append(seconds)
                return [9_000] * self.n
            return super().recent_us(seconds)

    src, clock = Recovers(), Clock()
    th = make(src, clock, probe_seconds=8.0)
    _saturate(th, src, clock)
    assert th.probes[-1]["outcome"] == "the_migration" and th.reference == 10.0
    assert (th.chunk, th.slots, th.duty) == (10, 1, 0.125)  # the migration running was the cause: the floor
    # ... and the next probe needs twice as many breaches at the floor
    probes = len(th.probes)
    for _ in range(5):
        chunk(th, clock)
    assert len(th.probes) == probes and th.duty == th.min_duty and th.pause_s == 2.0
    chunk(th, clock)
    assert len(th.probes) == probes + 1


def test_breaches_at_the_floor_lead_to_a_probe_even_when_the_duty_comes_and_goes() -> None:
    src, clock, pauses = Samples(100, 0), Clock(), []
    th = make(src, clock, pauses, probe_seconds=4.0)
    for over in (20, 0, 20, 0, 20):  # over the bound at the smallest chunk, then fine (the duty rises), ...
        src.set(100, over)
        chunk(th, clock)
    assert [d.action for d in th.history] == ["slow_down", "speed_up", "slow_down", "speed_up", "probe",
                                              "probe:not_the_migration"]
    assert 5.0 in pauses and th.reference == 20.0  # (1 s to settle, 4 s read)
    src.set(100, 0)
    for _ in range(4):
        chunk(th, clock)  # the working time comes back (0.5 → 1), then the chunk grows
    assert (th.duty, th.chunk) == (1.0, 10)
    assert chunk(th, clock) == 12


def test_a_p95_only_source_still_slows_down() -> None:
    class P95Only:
        def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
            return 30.0, 100

    clock = Clock()
    th = LatencyThrottle(P95Only(), baseline_p95_ms=10.0, ceiling=200, clock=clock, pause=clock.advance)
    assert th.batch_size(200) == 200 and th.slots is None  # no cautious start asked for: full speed at first
    clock.advance(1.0)
    th.wait()
    assert th.history[-1].action == "slow_down" and th.batch_size(200) == 70  # 10.5 / 30 of it


def test_default_pause_is_interruptible_by_stop() -> None:
    stop = threading.Event()
    stop.set()
    th = LatencyThrottle(Samples(100, 100, slow_us=99_000), baseline_p95_ms=10.0, decide_every=0.0,
                         first_pause=30.0, max_pause=30.0, stop=stop)
    th.wait()
    th.wait()  # would pause 30 s; the stop event is set, so it returns at once
    assert th.pause_s == 30.0 and th.paused_seconds > 0


def test_rejects_a_zero_baseline() -> None:
    with pytest.raises(ValueError):
        LatencyThrottle(Samples(), baseline_p95_ms=0.0)


def test_history_keeps_changes_and_a_hold_per_interval_and_stays_bounded() -> None:
    src, clock = Samples(100, 6, slow_us=10_400), Clock()  # between half and full bound: holds
    th = make(src, clock, check_interval=2.0, start_chunk=40)
    th.begin()
    for _ in range(40):
        chunk(th, clock, 0.25)  # 10 s of holds
    assert th.actions == {"hold": 40} and [d.t for d in th.history] == [2.0, 4.0, 6.0, 8.0, 10.0]
    for _ in range(2100):
        th._record(clock(), Evidence(10.0, 100, 0), "speed_up", True)
        clock.advance(0.01)
    assert len(th.history) <= 2000 and th.actions["speed_up"] == 2100


def test_a_shared_throttle_writes_what_it_decided(tmp_path: Path) -> None:
    src, clock = Samples(100, 0), Clock()
    th = SharedThrottle(src, baseline_p95_ms=10.0, start_chunk=10, start_slots=1, clock=clock, pause=clock.advance)
    th.path = tmp_path / "throttle.json"
    clock.advance(0.5)
    th.wait()
    data = json.loads(th.path.read_text())
    assert data["final_chunk"] == 12 and data["history"][-1]["action"] == "speed_up"
    th.path.unlink()
    clock.advance(0.1)
    th.wait()  # nothing recorded (too soon to decide): nothing rewritten
    assert not th.path.exists()
    src.set(100, 6, slow_us=10_400)
    clock.advance(0.3)
    th.wait()  # a hold, not recorded: the file waits for the check interval ...
    assert not th.path.exists()
    clock.advance(10.0)
    th.wait()  # ... and then has the counters of now
    assert json.loads(th.path.read_text())["chunks_granted"] == 3  # (decided before this wait() granted)


def test_tail_source_reads_what_another_writer_appends(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    writer = SampleWriter(path)
    for i in range(1, 101):
        writer.add(Sample(1000.0 + i / 100, "read_txn", i * 1000, True))
    writer.flush()
    with open(path, "a", encoding="ascii") as fh:
        fh.write("1001.5,read_txn,99")  # a line still being written is not read
    tail = SampleTail(path)
    src = TailSource(tail, clock=lambda: 1001.0)
    p95, n = src.recent_p95_ms(0.5)  # samples ending in [1000.5, ...]: latencies 50..100 ms
    assert n == 51 and p95 == 98.0
    with open(path, "a", encoding="ascii") as fh:
        fh.write("000,1,,\n")
    tail.poll()
    assert tail.all()[-1].latency_us == 99000


def test_percentiles_are_nearest_rank_on_raw_microseconds() -> None:
    lat = sorted([1234, 1500, 2000, 800, 950, 10_000, 1100, 1300, 1400, 1600])
    assert stats.percentile(lat, 50) == 1300
    assert stats.percentile(lat, 95) == 10_000
    assert stats.percentile([], 95) is None
    samples = [Sample(10.0 + i, "a", us, True) for i, us in enumerate(lat)]
    blk = stats.phase(samples, 10.0, 20.0)
    assert blk["p50_ms"] == 1.3 and blk["p95_ms"] == 10.0 and blk["requests_per_second"] == 1.0
    assert blk["tasks"]["a"]["requests"] == 10


def test_contention_failures_are_counted_apart() -> None:
    assert {classify("55P03"), classify("40P01"), classify("40001"), classify("57014")} == set(CONTENTION)
    assert classify("23505") == "db_error" and classify(None) == "client_error"
    samples = [Sample(1.0, "emit_sale", 5000, False, classify("55P03"), "55P03"),
               Sample(1.1, "emit_sale", 5000, False, "app_error"),
               Sample(1.2, "read_txn", 1000, True)]
    blk = stats.phase(samples, 0.0, 2.0)
    assert (blk["failures"], blk["contention_failures"]) == (2, 1)
    assert blk["error_rate_pct"] == pytest.approx(66.667)
    assert blk["failure_kinds"] == {"app_error": 1, "lock_timeout": 1}


def test_degradation_and_noise() -> None:
    assert stats.degradation_pct(10.0, 10.5) == 5.0
    assert stats.degradation_pct(10.0, 9.0) == -10.0
    assert stats.degradation_pct(None, 9.0) is None
    base = {"p95_ms": 10.0, "p50_ms": 2.0, "tasks": {"a": {"p95_ms": 4.0}}}
    during = {"p95_ms": 12.0, "p50_ms": 2.0, "tasks": {"a": {"p95_ms": 5.0}}}
    d = stats.degradation(base, during)
    assert d["overall"]["p95_pct"] == 20.0 and d["a"]["p95_pct"] == 25.0
    steady = [Sample(float(i) / 10, "a", 1000 + (i % 10), True) for i in range(200)]
    assert stats.noise_pct(steady, 0.0, 20.0) == 0.0
    tl = stats.timeline(steady, 0.0, 20.0, 5.0)
    assert [p["requests_per_second"] for p in tl] == [10.0, 10.0, 10.0, 10.0]


def test_load_generator_hands_absolute_paths_to_its_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.load.generator import LoadGenerator, LoadSettings

    monkeypatch.chdir(tmp_path)
    gen = LoadGenerator("host=127.0.0.1", LoadSettings(), Path("reports/x/load"), max_seconds=5)
    cmd = gen.command()  # the child runs with cwd = workdir: a relative path would nest inside it
    samples = Path(cmd[cmd.index("--hera-samples") + 1])
    assert samples.is_absolute() and samples == tmp_path / "reports/x/load/v1-samples.csv"
    assert "--run-time" in cmd and "host=127.0.0.1" not in cmd  # bounded; the DSN is not on the command line


def test_the_engine_can_tell_it_a_worker_left() -> None:
    from runner.engine.hooks import NoThrottle, ReleasingThrottle, Throttle

    th: Throttle = make(Samples(), Clock())
    assert isinstance(th, ReleasingThrottle) and isinstance(NoThrottle(), ReleasingThrottle)

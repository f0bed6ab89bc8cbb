"""The auto-throttle's controller and the latency statistics it and the load report rely on (no database, no
sleeping: the clock, the pause and the latency source are fakes the test drives)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runner.load import stats
from runner.load.samples import CONTENTION, Sample, SampleTail, SampleWriter, classify
from runner.load.throttle import LatencyThrottle, TailSource


class FakeSource:
    def __init__(self) -> None:
        self.p95: float | None = 10.0
        self.n = 100
        self.windows: list[float] = []

    def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
        self.windows.append(seconds)
        return self.p95, self.n


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(source: FakeSource, clock: Clock, pauses: list[float], **kw: float) -> LatencyThrottle:
    args = {"baseline_p95_ms": 10.0, "max_degradation_pct": 5.0, "check_interval": 10.0, "ceiling": 500,
            "min_chunk": 10, "first_pause": 0.1, "max_pause": 2.0} | kw
    return LatencyThrottle(source, clock=clock, pause=pauses.append, **args)  # type: ignore[arg-type]


def test_over_the_bound_halves_chunks_and_doubles_pauses_down_to_the_floor() -> None:
    src, clock, pauses = FakeSource(), Clock(), []
    th = make(src, clock, pauses, probe_after=0)  # probes off: see the next tests
    src.p95 = 10.6  # 6 % over a 10 ms baseline: above the 5 % bound (10.5 ms)
    sizes, waits = [], []
    for _ in range(8):
        clock.t += 10
        th.wait()
        sizes.append(th.batch_size(500))
        waits.append(th.pause_s)
    assert sizes == [250, 125, 62, 31, 15, 10, 10, 10]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert pauses == waits  # every wait() paused for the current pause
    assert {d.action for d in th.history} == {"slow_down"}
    assert th.summary()["saturated_checks"] == 3  # at the floor and still over the bound: it cannot help more


def _saturate(th: LatencyThrottle, src: FakeSource, clock: Clock, pauses: list[float]) -> None:
    """Far over the bound whatever the pace, until the throttle probes (within the wait() that decides it)."""
    src.p95 = 30.0  # the bound is 10.5 ms
    for _ in range(20):
        clock.t += 10
        th.wait()
        if th.probes:
            return
    raise AssertionError("no probe after 20 checks at the floor")


def test_a_probe_that_stays_slow_moves_the_reference_not_the_reported_baseline() -> None:
    src, clock, pauses = FakeSource(), Clock(), []
    th = make(src, clock, pauses, probe_seconds=8.0)
    _saturate(th, src, clock, pauses)
    actions = [d.action for d in th.history]
    assert actions[-5:] == ["slow_down", "slow_down", "slow_down", "probe", "probe:not_the_migration"]
    assert pauses[-1] == 8.0  # the migration stood still for the whole probe window ...
    assert src.windows[-1] == 8.0  # ... and that idle window is what the probe read
    assert th.reference == 30.0
    assert (th.chunk, th.pause_s) == (10, 0.1)  # resumes cautiously ...
    src.p95 = 30.5  # ... and now judges against the idle p95: +1.7 % is under half the bound
    clock.t += 20
    th.wait()
    assert th.history[-1].action == "speed_up"
    s = th.summary()
    assert s["baseline_p95_ms"] == 10.0 and s["reference_p95_ms"] == 30.0 and len(s["probes"]) == 1


def test_a_probe_that_recovers_keeps_the_floor() -> None:
    class Recovers(FakeSource):
        def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
            self.windows.append(seconds)
            return (10.2 if seconds == 8.0 else 30.0), self.n  # idle, v1 is back to normal

    src, clock, pauses = Recovers(), Clock(), []
    th = make(src, clock, pauses, probe_seconds=8.0)
    _saturate(th, src, clock, pauses)
    assert th.probes[-1]["outcome"] == "the_migration" and th.reference == 10.0
    assert (th.chunk, th.pause_s) == (10, 2.0)  # the migration running was the cause: stay at the floor


def test_far_over_the_bound_cuts_in_proportion() -> None:
    src, clock, pauses = FakeSource(), Clock(), []
    th = make(src, clock, pauses)
    src.p95 = 105.0  # 10× the 10.5 ms bound: the chunk goes to a tenth at once, not a half
    clock.t += 10
    th.wait()
    assert th.batch_size(500) == 50


def test_within_half_the_bound_recovers_to_the_runs_own_size_and_no_pause() -> None:
    src, clock, pauses = FakeSource(), Clock(), []
    th = make(src, clock, pauses)
    src.p95 = 20.0
    for _ in range(4):
        clock.t += 10
        th.wait()
    assert th.chunk == 31 and th.pause_s == 0.8
    src.p95 = 10.1  # +1 %: under half the bound (2.5 %)
    for _ in range(30):
        clock.t += 10
        th.wait()
    assert th.batch_size(500) == 500
    assert th.pause_s == 0.0
    assert th.batch_size(200) == 200  # never more than the run asks for


def test_between_half_and_full_bound_holds() -> None:
    src, clock, pauses = FakeSource(), Clock(), []
    th = make(src, clock, pauses)
    src.p95 = 20.0
    clock.t += 10
    th.wait()
    src.p95 = 10.4  # +4 %: inside the bound, above half of it
    clock.t += 10
    th.wait()
    assert th.history[-1].action == "hold"
    assert (th.chunk, th.pause_s) == (250, 0.1)


def test_checks_only_every_interval_and_ignores_thin_windows() -> None:
    src, clock, pauses = FakeSource(), Clock(), []
    th = make(src, clock, pauses, min_samples=50)
    src.p95 = 50.0
    clock.t = 9.9
    th.wait()
    assert th.history == [] and th.batch_size(500) == 500  # before the first interval: no reading at all
    src.n = 50
    clock.t = 10.0
    th.wait()
    assert th.history[-1].action == "slow_down" and th.batch_size(500) == 105  # 50 ms vs 10.5: × 0.21
    clock.t = 15.0
    th.wait()
    assert len(th.history) == 1  # 5 s after the last check: not yet
    src.n = 49  # the load is gone (or stalled): nothing to protect, back to full speed
    clock.t = 20.0
    th.wait()
    assert th.history[-1].action == "no_data"
    assert (th.batch_size(500), th.pause_s) == (500, 0.0)
    assert src.windows == [10.0, 10.0]  # window defaults to the interval


def test_default_pause_is_interruptible_by_stop() -> None:
    src = FakeSource()
    stop = threading.Event()
    stop.set()
    th = LatencyThrottle(src, baseline_p95_ms=10.0, check_interval=0.0, first_pause=30.0, max_pause=30.0, stop=stop)
    src.p95 = 99.0
    th.wait()  # would pause 30 s; the stop event is set, so it returns at once
    assert th.pause_s == 30.0


def test_rejects_a_zero_baseline() -> None:
    with pytest.raises(ValueError):
        LatencyThrottle(FakeSource(), baseline_p95_ms=0.0)


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


def test_a_cautious_start_grows_to_the_runs_size_while_v1_stays_fast() -> None:
    src, clock, pauses = FakeSource(), Clock(), []
    th = make(src, clock, pauses, start_chunk=125)
    assert th.batch_size(500) == 125  # before any reading: a quarter, not the full chunk
    src.p95 = 10.1  # well within the bound
    sizes = []
    for _ in range(8):
        clock.t += 10
        th.wait()
        sizes.append(th.batch_size(500))
    assert sizes == [156, 195, 243, 303, 378, 472, 500, 500]
    assert th.summary()["start_chunk"] == 125
    assert make(src, clock, pauses, start_chunk=10_000).batch_size(500) == 500  # never above the run's size
    assert make(src, clock, pauses, start_chunk=1).chunk == 10  # nor under the floor

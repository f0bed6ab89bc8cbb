"""Level 3's performance impact and business continuity (runner/validate/impact.py): a fake /proc drives the host
sampler sample by sample, so nothing here sleeps or needs a database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from runner.validate.impact import (
    NO_LOAD,
    NO_REQUEST,
    SOURCE,
    HostSampler,
    WindowStats,
    business_continuity,
    performance_impact,
    server_is_local,
)


class FakeProc:
    """A /proc directory whose `cpu` counters and memory the test sets before each sample."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.busy = 0
        self.idle = 0
        self.now = 0.0
        self.set(busy=0, idle=0, used_kib=0)

    def clock(self) -> float:
        return self.now

    def set(self, *, busy: int, idle: int, used_kib: int, total_kib: int = 8 * 1024 * 1024) -> None:
        self.busy, self.idle = busy, idle
        # user nice system idle iowait irq softirq steal guest guest_nice: busy in user and system, idle split
        # between idle and iowait (both not busy); guest counts are inside user and must not be added again.
        user, system = busy - busy // 4, busy // 4
        idle_, iowait = idle - idle // 10, idle // 10
        (self.root / "stat").write_text(
            f"cpu  {user} 0 {system} {idle_} {iowait} 0 0 0 {user} 0\n"
            f"cpu0 {user} 0 {system} {idle_} {iowait} 0 0 0 0 0\nintr 1 2 3\nctxt 42\n", encoding="ascii")
        (self.root / "meminfo").write_text(
            f"MemTotal:       {total_kib} kB\nMemFree:         1000 kB\nMemAvailable:   {total_kib - used_kib} kB\n"
            "Buffers:           10 kB\n", encoding="ascii")

    def advance(self, *, total: int, idle: int, used_kib: int, seconds: float = 1.0) -> None:
        """Move the counters by `total` jiffies of which `idle` idle, and the clock by `seconds`."""
        self.now += seconds
        self.set(busy=self.busy + total - idle, idle=self.idle + idle, used_kib=used_kib)


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path)


def sampler(proc: FakeProc) -> HostSampler:
    s = HostSampler(interval=60.0, proc=proc.root, clock=proc.clock)
    assert s.available and s.reason is None
    return s


def test_busy_share_and_memory_per_window(proc: FakeProc) -> None:
    s = sampler(proc)
    s.mark("baseline")
    proc.advance(total=600, idle=540, used_kib=1024 * 1024)
    s.sample_now()
    proc.advance(total=400, idle=360, used_kib=3 * 1024 * 1024, seconds=0.5)
    s.mark("during")  # closes the baseline: 1000 jiffies, 900 idle
    proc.advance(total=1000, idle=500, used_kib=4 * 1024 * 1024)
    s.mark(None)
    proc.advance(total=1000, idle=0, used_kib=16 * 1024 * 1024)  # not attributed
    s.sample_now()
    w = s.windows()
    assert set(w) == {"baseline", "during"}
    assert w["baseline"] == WindowStats(seconds=1.5, samples=2, cpu_busy_pct=10.0, memory_used_mib_mean=2048.0,
                                        memory_used_mib_max=3072.0)
    assert w["during"] == WindowStats(seconds=1.0, samples=1, cpu_busy_pct=50.0, memory_used_mib_mean=4096.0,
                                      memory_used_mib_max=4096.0)
    impact = performance_impact(w, reason=None, latency=None)
    assert impact["cpu_usage_increase"] == {"baseline_pct": 10.0, "during_pct": 50.0, "increase_pct_points": 40.0,
                                            "increase_pct": 400.0}
    assert impact["memory_usage_increase"] == {"baseline_mib": 2048.0, "during_mib": 4096.0,
                                               "during_max_mib": 4096.0, "increase_mib": 2048.0,
                                               "increase_pct": 100.0}
    assert impact["source"] == SOURCE
    assert impact["response_time_impact"] is None and impact["reasons"] == {"response_time_impact": NO_LOAD}


def test_intervals_weigh_by_their_jiffies(proc: FakeProc) -> None:
    s = sampler(proc)
    s.mark("during")
    proc.advance(total=100, idle=0, used_kib=0)  # 100 % busy over few jiffies
    s.sample_now()
    proc.advance(total=900, idle=900, used_kib=0)  # idle over many
    s.sample_now()
    assert s.windows()["during"].cpu_busy_pct == 10.0  # not the mean of 100 % and 0 %


def test_a_window_marked_twice_accumulates_and_samples_before_a_mark_are_not_attributed(proc: FakeProc) -> None:
    s = sampler(proc)
    s.sample_now()
    proc.advance(total=1000, idle=0, used_kib=0)
    s.mark("baseline")  # the interval before the first mark belongs to no window
    proc.advance(total=100, idle=50, used_kib=0)
    s.mark("other")
    proc.advance(total=100, idle=0, used_kib=0)
    s.mark("baseline")
    proc.advance(total=100, idle=100, used_kib=0)
    s.mark(None)
    w = s.windows()
    assert w["baseline"].samples == 2 and w["baseline"].cpu_busy_pct == 25.0
    assert w["other"].samples == 1 and w["other"].cpu_busy_pct == 100.0


def test_a_marked_window_without_interval_and_counters_that_did_not_move(proc: FakeProc) -> None:
    s = sampler(proc)
    s.mark("baseline")
    assert s.windows()["baseline"] == WindowStats(0.0, 0, None, None, None)
    s.sample_now()  # nothing moved: one interval, no jiffies
    assert s.windows()["baseline"].samples == 1 and s.windows()["baseline"].cpu_busy_pct is None


def test_unreadable_proc_is_not_available(tmp_path: Path) -> None:
    s = HostSampler(proc=tmp_path / "nowhere")
    assert not s.available and s.reason is not None and "stat" in s.reason
    with s:  # start and stop do nothing
        s.mark("baseline")
        s.sample_now()
    assert s.windows() == {}


def test_a_stat_file_without_cpu_line_is_not_available(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("intr 1\n", encoding="ascii")
    s = HostSampler(proc=tmp_path)
    assert not s.available and s.reason is not None


def test_a_failed_read_loses_one_sample_not_the_sampler(proc: FakeProc) -> None:
    s = sampler(proc)
    s.mark("during")
    (proc.root / "stat").write_text("garbage\n", encoding="ascii")
    s.sample_now()
    proc.advance(total=1000, idle=750, used_kib=0)
    s.sample_now()
    assert s.windows()["during"].samples == 1 and s.windows()["during"].cpu_busy_pct == 25.0


def test_stop_is_idempotent_and_closes_the_current_window(proc: FakeProc) -> None:
    s = sampler(proc)
    s.stop()  # never started
    s.start()
    s.mark("during")
    proc.advance(total=1000, idle=200, used_kib=2048)
    s.stop()
    s.stop()
    assert s.windows()["during"].samples == 1 and s.windows()["during"].cpu_busy_pct == 80.0
    assert s.windows()["during"].memory_used_mib_mean == 2.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the real /proc")
def test_the_thread_on_the_real_proc() -> None:
    with HostSampler(interval=0.05) as s:
        assert s.available
        s.mark("baseline")
        s.sample_now()
        s.mark("during")
        s.sample_now()
    assert s._thread is not None and not s._thread.is_alive()
    w = s.windows()
    assert w["baseline"].samples >= 1 and w["during"].samples >= 1
    assert w["during"].memory_used_mib_max is not None and w["during"].memory_used_mib_max > 0


@pytest.mark.parametrize(("dsn", "local"), [
    ("postgresql://u@localhost:5432/db", True),
    ("postgresql://u@127.0.0.1/db", True),
    ("postgresql://u@[::1]:5432/db", True),
    ("postgresql:///db", True),  # no host: the default unix socket
    ("postgresql://u@%2Ftmp%2Fpg/db", True),
    ("host=/var/run/postgresql dbname=db", True),
    ("dbname=db user=u", True),
    ("host=localhost dbname=db", True),
    ("host=db.example.com dbname=db", False),
    ("postgresql://u@10.0.0.5/db", False),
    ("host=db.example.com hostaddr=127.0.0.1 dbname=db", True),  # hostaddr is what is connected to
    ("host=localhost hostaddr=10.0.0.5 dbname=db", False),
    ("host=localhost,db.example.com dbname=db", False),  # a fallback host may be remote
    ("nonsense=1", False),
    ("postgresql://u@[bad/db", False),
])
def test_server_is_local(dsn: str, local: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGHOSTADDR", raising=False)
    assert server_is_local(dsn) is local


def test_server_is_local_falls_back_on_pghost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOSTADDR", raising=False)
    monkeypatch.setenv("PGHOST", "db.example.com")
    assert not server_is_local("dbname=db")
    assert server_is_local("host=localhost dbname=db")


def stats(cpu: float | None, mem: float | None, samples: int = 3) -> WindowStats:
    return WindowStats(seconds=1.0, samples=samples, cpu_busy_pct=cpu, memory_used_mib_mean=mem,
                       memory_used_mib_max=None if mem is None else mem + 1)


LATENCY: dict[str, Any] = {"baseline": {"p95_ms": 2.0}, "during": {"p95": 2.5}}


def test_every_null_field_carries_a_reason() -> None:
    remote = "the database server is not local: its CPU and memory are not visible from here"
    out = performance_impact(None, reason=remote, latency=None)
    assert out["cpu_usage_increase"] is None and out["memory_usage_increase"] is None
    assert out["response_time_impact"] is None and out["source"] is None
    assert out["reasons"] == {"cpu_usage_increase": remote, "memory_usage_increase": remote,
                              "response_time_impact": NO_LOAD}
    # The reason wins over windows that would have measured this machine, not the server.
    assert performance_impact({"baseline": stats(1, 1), "during": stats(2, 2)}, reason=remote,
                              latency=LATENCY)["cpu_usage_increase"] is None
    assert performance_impact(None, reason=None, latency=None)["reasons"]["cpu_usage_increase"]


def test_missing_windows_are_named() -> None:
    only_during = performance_impact({"during": stats(5, 5)}, reason=None, latency=LATENCY)
    assert only_during["reasons"]["cpu_usage_increase"] == "no baseline window was sampled"
    empty_during = performance_impact({"baseline": stats(5, 5), "during": stats(None, None, samples=0)},
                                      reason=None, latency=LATENCY)
    assert empty_during["reasons"]["memory_usage_increase"] == "no during window was sampled"
    assert empty_during["response_time_impact"] == {"baseline_p95_ms": 2.0, "during_p95_ms": 2.5,
                                                    "increase_pct": 25.0}


def test_zero_baselines_give_no_relative_change_but_say_why() -> None:
    out = performance_impact({"baseline": stats(0.0, 0.0), "during": stats(12.34567, 10.0)}, reason=None,
                             latency={"baseline": {"p95_ms": 0.0}, "during": {"p95_ms": 1.0}})
    assert out["cpu_usage_increase"] == {"baseline_pct": 0.0, "during_pct": 12.346, "increase_pct_points": 12.346,
                                         "increase_pct": None}
    assert out["memory_usage_increase"]["increase_pct"] is None
    assert out["response_time_impact"]["increase_pct"] is None
    assert set(out["reasons"]) == {"cpu_usage_increase.increase_pct", "memory_usage_increase.increase_pct",
                                   "response_time_impact.increase_pct"}
    no_cpu = performance_impact({"baseline": stats(None, 1.0), "during": stats(3.0, 1.0)}, reason=None, latency=None)
    assert no_cpu["cpu_usage_increase"] is None and "baseline" in no_cpu["reasons"]["cpu_usage_increase"]
    assert no_cpu["memory_usage_increase"] is not None and no_cpu["source"] == SOURCE


def test_a_latency_block_without_one_phase() -> None:
    out = performance_impact(None, reason=None, latency={"baseline": None, "during": {"p95_ms": 3.0}})
    assert out["response_time_impact"] is None
    assert out["reasons"]["response_time_impact"] == "the v1 load measured no baseline p95"
    assert performance_impact(None, reason=None, latency={})["reasons"]["response_time_impact"] == NO_LOAD


def during(requests: int, kinds: dict[str, int]) -> dict[str, Any]:
    failures = sum(kinds.values())
    return {"requests": requests, "failures": failures, "contention_failures": kinds.get("lock_timeout", 0),
            "failure_kinds": kinds, "p95_ms": 1.0, "tasks": {}}


def test_no_load_is_not_measured() -> None:
    out = business_continuity(None)
    assert out == {"measured": False, "v1_requests": None, "v1_failures": None, "service_availability": None,
                   "transaction_success_rate": None, "error_rate": None, "v1_availability_pct": None,
                   "reason": NO_LOAD}
    assert business_continuity({})["measured"] is False


def test_zero_requests_is_not_100_percent() -> None:
    out = business_continuity(during(0, {}))
    assert out["measured"] is True and out["v1_requests"] == 0 and out["v1_failures"] == 0
    assert out["service_availability"] is None and out["transaction_success_rate"] is None
    assert out["error_rate"] is None and out["v1_availability_pct"] is None
    assert out["reason"] == NO_REQUEST


def test_contention_lowers_success_not_availability() -> None:
    out = business_continuity(during(200, {"lock_timeout": 3, "deadlock": 1}))
    assert out["service_availability"] == 100.0
    assert out["transaction_success_rate"] == out["v1_availability_pct"] == 98.0
    assert out["error_rate"] == 2.0 and out["reason"] is None
    unanswered = business_continuity(during(200, {"client_error": 4}))
    assert unanswered["service_availability"] == unanswered["transaction_success_rate"] == 98.0
    mixed = business_continuity(during(300, {"client_error": 1, "app_error": 1, "db_error": 1}))
    assert mixed["service_availability"] == 99.667 and mixed["transaction_success_rate"] == 99.0
    assert mixed["error_rate"] == 1.0 and mixed["v1_failures"] == 3


def test_failures_of_unknown_kinds_leave_availability_unknown() -> None:
    out = business_continuity({"requests": 10, "failures": 1})
    assert out["service_availability"] is None and out["transaction_success_rate"] == 90.0
    clean = business_continuity({"requests": 10, "failures": 0})
    assert clean["service_availability"] == 100.0 == clean["transaction_success_rate"]

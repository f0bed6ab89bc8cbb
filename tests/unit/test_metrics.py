"""runner.metrics without a database: what MetricsSink exports for the engine's reports (per worker thread, per
organisation and tier), that nothing unknown is exported (integrity score, v1 latency, throttle), the real
throttle's state, and the exposition (HTTP on a free loopback port, the node_exporter textfile, a port in use)."""

from __future__ import annotations

import re
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runner.engine.hooks import NullProgress
from runner.errors import UsageError
from runner.load.throttle import LatencyThrottle
from runner.metrics import PHASES, MetricsSink, RunMetrics, ThrottleState, serve_metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    """Prometheus text → {(sample name, labels): value}; raises on text that is not the exposition format."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


def scrape_registry(metrics: RunMetrics) -> Samples:
    return samples_of(generate_latest(metrics.registry).decode())


def fetch(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    with opener.open(url, timeout=10) as resp:
        return str(resp.read().decode())


class Calls(NullProgress):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        self.calls.append(("started", org_id, org_code, total))

    def org_advanced(self, org_id: str, done: int) -> None:
        self.calls.append(("advanced", org_id, done))

    def chunk_done(self, org_id: str, tier: str, handled: int, quarantined: int, seconds: float) -> None:
        self.calls.append(("chunk", org_id, tier, handled, quarantined, seconds))

    def org_finished(self, org_id: str, status: str) -> None:
        self.calls.append(("finished", org_id, status))


def on_thread(name: str, fn: Any) -> None:
    t = threading.Thread(target=fn, name=name)
    t.start()
    t.join()


def test_records_are_counted_per_tier_and_worker_thread_and_every_call_is_forwarded() -> None:
    metrics, inner = RunMetrics("r1"), Calls()
    sink = MetricsSink(metrics, inner)
    sink.org_started("o1", "ORG-1", 50)
    sink.org_started("o2", "ORG-2", 7)

    def worker_a() -> None:
        sink.org_advanced("o1", 20)
        sink.chunk_done("o1", "reverse_repost", 20, 0, 0.5)
        sink.org_advanced("o1", 10)
        sink.chunk_done("o1", "reporting_alias", 10, 3, 2.0)

    def worker_b() -> None:
        sink.org_advanced("o2", 7)
        sink.chunk_done("o2", "reverse_repost", 7, 2, 0.25)

    on_thread("hera-migrate-worker-0", worker_a)
    on_thread("hera-migrate-worker-1", worker_b)
    got = scrape_registry(metrics)

    handled = "hera_migrate_records_handled_total"
    assert value(got, handled, run_id="r1", tier="reverse_repost", worker="hera-migrate-worker-0") == 20
    assert value(got, handled, tier="reporting_alias", worker="hera-migrate-worker-0") == 10
    assert value(got, handled, tier="reverse_repost", worker="hera-migrate-worker-1") == 7
    assert value(got, handled, tier="reporting_alias", worker="hera-migrate-worker-1") == 0
    assert value(got, "hera_migrate_chunk_rate", tier="reverse_repost", worker="hera-migrate-worker-0") == 40
    assert value(got, "hera_migrate_chunk_rate", tier="reverse_repost", worker="hera-migrate-worker-1") == 28
    assert value(got, "hera_migrate_chunk_duration_seconds_count", tier="reverse_repost") == 2
    assert value(got, "hera_migrate_chunk_duration_seconds_sum", tier="reverse_repost") == 0.75
    assert value(got, "hera_migrate_quarantined_total", organization_id="o1", tier="reporting_alias") == 3
    assert value(got, "hera_migrate_quarantined_total", organization_id="o2", tier="reverse_repost") == 2
    assert value(got, "hera_migrate_quarantined_total") == 5
    assert value(got, "hera_migrate_candidates", organization_id="o1", organization_code="ORG-1") == 50
    assert value(got, "hera_migrate_organization_handled_total", organization_id="o1", organization_code="ORG-1") == 30
    assert value(got, "hera_migrate_organization_handled_total", organization_code="ORG-2") == 7
    assert [c[0] for c in inner.calls] == ["started", "started", "advanced", "chunk", "advanced", "chunk",
                                          "advanced", "chunk"]
    assert inner.calls[5] == ("chunk", "o1", "reporting_alias", 10, 3, 2.0)


def test_organisations_by_status_move_from_running_to_their_end() -> None:
    metrics = RunMetrics("r2")
    sink = MetricsSink(metrics)
    for org in ("o1", "o2", "o3"):
        sink.org_started(org, org.upper(), 1)
    assert value(scrape_registry(metrics), "hera_migrate_organizations", status="running") == 3
    sink.org_finished("o1", "completed")
    sink.org_finished("o2", "failed")
    got = scrape_registry(metrics)
    assert [value(got, "hera_migrate_organizations", status=s) for s in ("running", "completed", "failed")] == [1, 1, 1]
    sink.org_finished("o3", "completed")
    got = scrape_registry(metrics)
    assert value(got, "hera_migrate_organizations", status="running") == 0  # still exported, as 0
    assert ("hera_migrate_organizations", frozenset({("run_id", "r2"), ("status", "running")})) in got
    assert value(got, "hera_migrate_organizations", status="completed") == 2


def test_the_integrity_score_is_exported_only_once_known() -> None:
    metrics = RunMetrics("r3")
    assert "hera_migrate_integrity_score" not in names(scrape_registry(metrics))
    metrics.set_integrity_score(99.5)
    assert value(scrape_registry(metrics), "hera_migrate_integrity_score", run_id="r3") == 99.5
    metrics.set_integrity_score(None)  # a validation with 0 records checked has no score: none, not NaN
    assert "hera_migrate_integrity_score" not in names(scrape_registry(metrics))


def test_one_phase_at_a_time() -> None:
    metrics = RunMetrics("r4")
    metrics.set_phase("migrating")
    got = scrape_registry(metrics)
    assert {p: value(got, "hera_migrate_phase", phase=p) for p in PHASES} == {p: float(p == "migrating")
                                                                              for p in PHASES}
    with pytest.raises(ValueError):
        metrics.set_phase("dancing")


def test_v1_latency_and_throttle_only_when_known_and_read_at_each_scrape() -> None:
    metrics = RunMetrics("r5")
    before = names(scrape_registry(metrics))
    assert not {n for n in before if n.startswith(("hera_migrate_v1_", "hera_migrate_throttle_"))}

    live: list[float | None] = [None]
    metrics.watch_v1(lambda: live[0])
    assert "hera_migrate_v1_p95_seconds" not in names(scrape_registry(metrics))  # no load right now
    live[0] = 12.5
    metrics.set_v1_baseline(10.0)
    got = scrape_registry(metrics)
    assert value(got, "hera_migrate_v1_p95_seconds", run_id="r5") == pytest.approx(0.0125)
    assert value(got, "hera_migrate_v1_baseline_p95_seconds") == pytest.approx(0.010)
    live[0] = 20.0
    assert value(scrape_registry(metrics), "hera_migrate_v1_p95_seconds") == pytest.approx(0.020)


class Source:
    def __init__(self, p95: float) -> None:
        self.p95 = p95

    def recent_p95_ms(self, seconds: float) -> tuple[float | None, int]:
        return self.p95, 100


def test_the_real_throttles_state_is_exported() -> None:
    clock = [0.0]
    source = Source(30.0)  # three times the 10 ms baseline: far over the 5 % bound
    throttle = LatencyThrottle(source, baseline_p95_ms=10.0, max_degradation_pct=5.0, check_interval=1.0,
                               ceiling=200, min_chunk=10, first_pause=0.1, probe_after=0, clock=lambda: clock[0],
                               pause=lambda s: None)
    metrics = RunMetrics("r6")
    metrics.watch_throttle(throttle)
    got = scrape_registry(metrics)
    assert value(got, "hera_migrate_throttle_paused") == 0 and value(got, "hera_migrate_throttle_batch_size") == 200
    assert "hera_migrate_v1_p95_seconds" not in names(got)  # no reading yet
    assert value(got, "hera_migrate_v1_baseline_p95_seconds") == pytest.approx(0.010)
    assert value(got, "hera_migrate_throttle_limit_p95_seconds") == pytest.approx(0.0105)

    clock[0] = 1.0
    throttle.wait()  # checks: slow down
    throttle.wait()  # ... and pauses (the check interval has not passed again)
    got = scrape_registry(metrics)
    state = throttle.metrics_state()
    assert state.paused and state.batch_size < 200
    assert value(got, "hera_migrate_throttle_paused") == 1
    assert value(got, "hera_migrate_throttle_batch_size") == state.batch_size
    assert state.pause_seconds > 0 and throttle.paused_seconds > 0
    assert value(got, "hera_migrate_throttle_pause_seconds") == pytest.approx(state.pause_seconds)
    assert value(got, "hera_migrate_throttle_paused_seconds_total") == pytest.approx(throttle.paused_seconds)
    assert value(got, "hera_migrate_v1_p95_seconds") == pytest.approx(0.030)


def test_a_load_measurement_beats_the_throttles_last_reading() -> None:
    class Fixed:
        def metrics_state(self) -> ThrottleState:
            return ThrottleState(paused=False, batch_size=50, pause_seconds=0.0, paused_seconds_total=0.0,
                                 baseline_p95_ms=8.0, limit_p95_ms=8.4, p95_ms=9.0)

    metrics = RunMetrics("r7")
    metrics.watch_throttle(Fixed())
    assert value(scrape_registry(metrics), "hera_migrate_v1_p95_seconds") == pytest.approx(0.009)
    metrics.watch_v1(lambda: 7.0)
    assert value(scrape_registry(metrics), "hera_migrate_v1_p95_seconds") == pytest.approx(0.007)


def test_http_on_a_free_loopback_port_then_closed(tmp_path: Path) -> None:
    said: list[str] = []
    with serve_metrics("r8", port=0, say=said.append) as metrics:
        assert metrics.port is not None and metrics.port > 0
        url = f"http://127.0.0.1:{metrics.port}/metrics"
        assert said == [f"metrics: {url}"]
        metrics.sink().org_started("o1", "ORG-1", 9)
        got = samples_of(fetch(url))
        assert value(got, "hera_migrate_candidates", run_id="r8", organization_id="o1") == 9
        assert value(got, "hera_migrate_run_info", command="run") == 1
    with pytest.raises(urllib.error.URLError):
        fetch(url)


def test_a_port_in_use_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"--metrics-port {port}"), serve_metrics("r9", port=port):
            pass


def test_the_textfile_holds_the_final_values_and_a_failure_says_so(tmp_path: Path) -> None:
    path = tmp_path / "prom" / "hera.prom"
    with pytest.raises(RuntimeError), serve_metrics("r10", textfile=path, every=3600) as metrics:
        assert value(samples_of(path.read_text()), "hera_migrate_phase", phase="starting") == 1  # written at once
        sink = metrics.sink()
        sink.org_started("o1", "ORG-1", 4)
        sink.org_advanced("o1", 4)
        sink.chunk_done("o1", "reverse_repost", 4, 0, 0.1)
        metrics.set_phase("migrating")
        raise RuntimeError("the run died")
    got = samples_of(path.read_text())  # the interval never passed: this is the final write
    assert value(got, "hera_migrate_records_handled_total", run_id="r10") == 4
    assert value(got, "hera_migrate_phase", phase="failed") == 1
    assert value(got, "hera_migrate_phase", phase="migrating") == 0
    assert [p.name for p in path.parent.iterdir()] == ["hera.prom"]  # no temporary file left behind


def test_an_unwritable_textfile_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="--metrics-textfile"), serve_metrics("r11", textfile=blocker / "x.prom"):
        pass


def test_docs_metrics_md_lists_every_metric() -> None:
    """Every series a fully-fed RunMetrics exports is documented in docs/metrics.md (and nothing undocumented)."""
    metrics = RunMetrics("r12")
    sink = metrics.sink()
    sink.org_started("o1", "ORG-1", 3)
    sink.org_advanced("o1", 3)
    sink.chunk_done("o1", "reverse_repost", 3, 1, 0.2)
    sink.org_finished("o1", "completed")
    metrics.set_integrity_score(100)
    metrics.watch_v1(lambda: 5.0)
    metrics.watch_throttle(LatencyThrottle(Source(5.0), baseline_p95_ms=5.0))
    exported = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names(scrape_registry(metrics))
                if not n.endswith("_created")}
    documented = set(re.findall(r"^\| `(hera_migrate_\w+)` \|", DOCS.read_text(encoding="utf-8"), re.MULTILINE))
    assert len(exported) >= 17 and exported == documented

"""The throughput recorder (a ProgressSink wrapper) and the live dashboard: the time series it yields, atomic
page writes, the refresh while running and none once stopped. No database; no sleeps (events and a fake clock)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.engine.hooks import NullProgress, ProgressSink
from runner.engine.throughput import ThroughputRecorder, bucket_seconds, median_gap, timeline_points
from runner.report.files import write_atomic
from runner.report.live import LiveReport, interim_results
from runner.report.results import load_schema

ORGS = [("00000000-0000-0000-0000-0000000000a1", "ORG-A"), ("00000000-0000-0000-0000-0000000000b2", "ORG-B")]
SPEC = {"path": "specs/finance-dna-v2.yaml", "sha256": "ab" * 32, "name": "finance-dna-v2", "version": "1.0.0"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Sink(NullProgress):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        self.calls.append(("started", (org_id, total)))

    def org_advanced(self, org_id: str, done: int) -> None:
        self.calls.append(("advanced", (org_id, done)))

    def org_finished(self, org_id: str, status: str) -> None:
        self.calls.append(("finished", (org_id, status)))


def test_bucket_seconds_is_round_and_caps_the_points() -> None:
    assert bucket_seconds(3.0) == 0.2
    assert bucket_seconds(60.0) == 0.5
    assert bucket_seconds(3600.0) == 30
    assert bucket_seconds(7 * 24 * 3600.0) == 7200
    for duration in (0.5, 7.3, 61.0, 999.0, 86_400.0):
        assert duration / bucket_seconds(duration) <= 120


def test_timeline_points_sum_and_rate_per_interval() -> None:
    events = [(0.1, 100), (0.2, 100), (0.3, 50), (0.9, 10)]
    points = timeline_points(events, 1.0, max_points=4)  # interval 0.25 s
    assert points[0] == {"t": 0.0, "done": 0, "rate": 0.0}
    assert [p["t"] for p in points] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p["done"] for p in points] == [0, 200, 250, 250, 260]
    assert [p["rate"] for p in points] == [0.0, 800.0, 200.0, 0.0, 40.0]
    assert timeline_points([], 0.0) == []
    last = timeline_points([(0.99, 7)], 0.3, max_points=10)[-1]  # an event past the end lands in the last bucket
    assert last["done"] == 7 and last["t"] == 0.3


def test_the_interval_spans_about_two_progress_reports() -> None:
    """The engine reports once per chunk: an interval shorter than two chunks would draw the chunk cadence."""
    chunks = [(0.5 * i - 0.25, 100) for i in range(1, 21)]  # a chunk of 100 every 0.5 s for 10 s: 200/s
    assert median_gap(chunks) == 0.5
    points = timeline_points(chunks, 10.0)
    assert [p["t"] for p in points] == [float(t) for t in range(11)]  # 1 s intervals, not 0.2 s
    assert {p["rate"] for p in points[1:]} == {200.0}
    assert median_gap(chunks[:2]) == 0.0


def test_the_recorder_timestamps_progress_and_forwards_it() -> None:
    clock, inner = Clock(), Sink()
    rec = ThroughputRecorder(inner, clock=clock)
    sink: ProgressSink = rec  # it is a ProgressSink
    sink.org_started(ORGS[0][0], ORGS[0][1], 1000)
    clock.now += 1.0
    sink.org_advanced(ORGS[0][0], 300)
    clock.now += 1.0
    sink.org_advanced(ORGS[0][0], 500)
    sink.org_advanced(ORGS[0][0], 0)  # nothing handled: no event
    clock.now += 0.5
    sink.org_finished(ORGS[0][0], "completed")
    rec.stop()
    clock.now += 10  # stopped: the series does not grow
    assert [c[0] for c in inner.calls] == ["started", "advanced", "advanced", "advanced", "finished"]
    progress = rec.progress()
    assert (progress["done"], progress["total"], progress["elapsed_seconds"], progress["rate"]) == (800, 1000, 2.5,
                                                                                                    320.0)
    assert progress["organizations"][0]["status"] == "completed"
    points = rec.timeline()
    assert points[-1]["t"] == 2.5 and points[-1]["done"] == 800
    assert sum(p["rate"] * 0.2 for p in points) == pytest.approx(800)  # 2.5 s in 0.2 s intervals
    rec.restart()
    assert rec.timeline() == [] and rec.progress()["done"] == 0


def test_the_recorder_is_safe_for_concurrent_workers() -> None:
    rec = ThroughputRecorder()
    for org_id, code in ORGS:
        rec.org_started(org_id, code, 40_000)
    go = threading.Event()

    def worker(org_id: str) -> None:
        go.wait()
        for _ in range(20_000):
            rec.org_advanced(org_id, 1)

    threads = [threading.Thread(target=worker, args=(org,)) for org, _ in ORGS for _ in range(2)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    rec.stop()
    assert rec.progress()["done"] == 80_000
    assert [o["done"] for o in rec.progress()["organizations"]] == [40_000, 40_000]
    assert rec.timeline()[-1]["done"] == 80_000


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_the_interim_results_have_the_shape_of_results_json() -> None:
    rec = ThroughputRecorder()
    rec.org_started(*ORGS[0], 10)
    rec.org_advanced(ORGS[0][0], 4)
    journal = {"status": "running", "organizations": [
        {"organization_id": ORGS[0][0], "migrated": 3, "aliased": 1, "quarantined": {"reverse_repost": 0},
         "chunks": 2, "status": "running", "last_chunk_at": "2026-01-01T00:00:00+00:00"}]}
    started = datetime(2026, 1, 1, tzinfo=UTC)
    interim = interim_results(run_id="r-1", spec=SPEC, started=started, phase="migrating", orgs=ORGS,
                              progress=rec.progress(), timeline=rec.timeline(), phases={"snapshot_before": 1.0},
                              journal=journal, refresh=5, now=datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC))
    assert set(load_schema()["required"]) <= set(interim)
    a, b = interim["organizations"]
    assert (a["done"], a["candidates"], a["migrated"], a["aliased"], a["quarantined"], a["chunks"]) == (4, 10, 3, 1,
                                                                                                         0, 2)
    assert b["run_status"] == "pending" and b["done"] is None
    live = interim["live"]
    assert (live["done"], live["total"], live["percent"], live["refresh_seconds"], live["elapsed_seconds"]) == (
        4, 10, 40.0, 5, 10.0)
    assert live["journal_status"] == "running" and interim["performance"]["phases"] == {"snapshot_before": 1.0}


def test_the_live_page_refreshes_while_running_and_not_once_stopped(tmp_path: Path) -> None:
    html = tmp_path / "index.html"
    rec = ThroughputRecorder()
    renders: list[str] = []
    enough = threading.Event()

    def seen(path: Path) -> None:
        renders.append(path.read_text(encoding="utf-8"))
        if len(renders) >= 4:
            enough.set()

    live = LiveReport(html, run_id="r-live", spec=SPEC, orgs=ORGS, recorder=rec, every=0.01, on_render=seen,
                      journal=lambda: {"status": "running", "organizations": []})
    with pytest.raises(RuntimeError, match="boom"), live:
        assert renders and 'http-equiv="refresh" content="5"' in renders[0]  # rendered at once on start
        rec.org_started(*ORGS[0], 100)
        rec.org_advanced(ORGS[0][0], 60)
        live.set_phase("migrating", {"snapshot_before": 0.5})
        assert enough.wait(10), "the background thread did not re-render"
        page = html.read_text(encoding="utf-8")
        assert "Run in progress" in page and "60 / 100" in page and "ORG-A" in page and "ORG-B" in page
        assert 'id="verdict">RUNNING<' in page
        raise RuntimeError("boom")
    final = html.read_text(encoding="utf-8")
    assert "Run stopped" in final and "boom" in final and "--resume" in final
    assert 'http-equiv="refresh"' not in final
    count = live.renders
    live.render()  # closed: the background thread is gone and a late render writes nothing
    assert live.renders == count and html.read_text(encoding="utf-8") == final
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_a_disabled_live_report_writes_nothing(tmp_path: Path) -> None:
    with LiveReport(tmp_path / "index.html", run_id="r", spec=SPEC, orgs=ORGS, every=0) as live:
        live.set_phase("migrating")
    assert not (tmp_path / "index.html").exists() and live.renders == 0

"""The report's inline SVG charts and their place in index.html: valid SVG, drawn from results.json's numbers,
escaped, absent (with a note) when there is nothing to draw. No database."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from runner.report import charts, render_results_html, schema_errors
from runner.validate.assemble import performance_section, timeline_points
from tests.unit.test_report_results import sample_results

SVG = "{http://www.w3.org/2000/svg}"
TIMELINE = [{"t": 0.0, "done": 0, "rate": 0.0}, {"t": 1.0, "done": 400, "rate": 400.0},
            {"t": 2.0, "done": 1000, "rate": 600.0}, {"t": 2.5, "done": 1100, "rate": 200.0}]


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def polyline(root: ET.Element, cls: str) -> list[tuple[float, float]]:
    node = next(n for n in root.iter(f"{SVG}polyline") if n.get("class") == cls)
    return [(float(x), float(y)) for x, y in (p.split(",") for p in (node.get("points") or "").split())]


def test_nice_ceiling_and_labels() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 0.7, 1, 3, 7, 12, 240, 600, 601)] == [
        1.0, 1.0, 1.0, 5.0, 10.0, 20.0, 250.0, 1000.0, 1000.0]
    assert [charts.fmt_number(v) for v in (0, 12, 1500, 2_500_000, 0.25)] == ["0", "12", "1.5k", "2.5M", "0.25"]
    assert [charts.fmt_seconds(v) for v in (0.5, 42, 90, 3600, 3725)] == ["0.5s", "42s", "1m30s", "1h00m", "1h02m"]


def test_throughput_draws_every_point_to_scale() -> None:
    root = parse(charts.throughput(TIMELINE))
    assert root.tag == f"{SVG}svg" and root.get("id") == "chart-throughput"
    rate = polyline(root, "rate")
    done = polyline(root, "done")
    assert len(rate) == len(done) == len(TIMELINE)
    xs = [x for x, _ in rate]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    # y grows downwards: the peak rate (600/s at t=2) is the highest point, 0 the lowest
    assert min(rate, key=lambda p: p[1]) == rate[2] and rate[0][1] == max(y for _, y in rate)
    # rate axis is nice_ceiling(600) = 1000: 600/s sits 60 % up the plot; done axis nice_ceiling(1100) = 2000
    top, bottom = rate[0][1] - (rate[0][1] - rate[2][1]) / 0.6, rate[0][1]
    assert done[-1][1] == pytest.approx(bottom - (bottom - top) * 1100 / 2000, abs=0.2)
    title = root.find(f"{SVG}title")
    assert title is not None and "1,100 candidates" in (title.text or "") and "600/s" in (title.text or "")


@pytest.mark.parametrize("timeline", [None, [], [{"t": 0, "done": 0, "rate": 0}], "nonsense",
                                      [{"t": "x", "done": 1, "rate": 1}, {"t": 0, "done": 0, "rate": 0}]])
def test_throughput_without_a_series_draws_nothing(timeline: Any) -> None:
    assert str(charts.throughput(timeline)) == ""


def test_latency_bars_for_what_was_measured_only() -> None:
    root = parse(charts.latency({"baseline": {"p50_ms": 2.0, "p95_ms": 10.0, "p99_ms": 20.0},
                                 "during": {"p50": 2.5, "p95": 12.0, "p99_ms": None}}))
    bars = {(r.get("class"), (r.findtext(f"{SVG}title") or "").split()[1]): float(r.get("height") or 0)
            for r in root.iter(f"{SVG}rect") if (r.get("class") or "").startswith("bar-")}
    assert set(bars) == {("bar-baseline", "p50:"), ("bar-baseline", "p95:"), ("bar-baseline", "p99:"),
                         ("bar-during", "p50:"), ("bar-during", "p95:")}
    assert bars[("bar-baseline", "p99:")] == pytest.approx(2 * bars[("bar-baseline", "p95:")])
    assert bars[("bar-during", "p95:")] > bars[("bar-baseline", "p95:")]
    assert str(charts.latency(None)) == "" and str(charts.latency({"baseline": None, "during": None})) == ""


def test_score_gauge_and_diff_bars_escape_and_scale() -> None:
    gauge = parse(charts.score_gauge(86.77, "failed"))
    assert any(t.text == "86.77" for t in gauge.iter(f"{SVG}text"))
    assert str(charts.score_gauge(None, "failed")) == ""
    bars = parse(charts.diff_bars({"available": True, "expected": {"t<1>": 100}, "unexpected": {"t<1>": 1},
                                   "concurrent": {"other": 50}}))
    texts = [t.text for t in bars.iter(f"{SVG}text")]
    assert "t<1>" in texts  # parsed back from &lt; … &gt;
    widths = {r.get("class"): float(r.get("width") or 0) for r in bars.iter(f"{SVG}rect") if r.get("class")}
    assert widths["diff-expected"] > widths["diff-concurrent"] > widths["diff-unexpected"] >= 2.0
    assert str(charts.diff_bars({"available": False})) == ""


def test_the_report_embeds_the_charts_inline_and_stays_self_contained() -> None:
    results = sample_results()
    results["performance"]["timeline"] = TIMELINE
    assert schema_errors(results) == []
    html = render_results_html(results)
    for chart in ("chart-score", "chart-throughput", "chart-latency", "chart-diff"):
        assert f'id="{chart}"' in html, chart
    assert html.index('id="verdict"') < html.index('id="org-table"') < html.index('id="check-gl_balanced"') \
        < html.index('id="chart-diff"') < html.index('id="chart-throughput"') < html.index('id="chart-latency"')
    assert "<script" not in html and not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert 'http-equiv="refresh"' not in html  # the final report never reloads itself
    without = copy.deepcopy(sample_results())
    without["performance"]["latency"] = None
    html = render_results_html(without)
    assert 'id="chart-throughput"' not in html and "No throughput time series" in html
    assert 'id="chart-latency"' not in html and "No load test ran" in html


def test_the_schema_and_the_assembler_accept_a_timeline_and_refuse_a_broken_one() -> None:
    results = sample_results()
    for bad in ([{"t": 1, "done": 1}], [{"t": -1, "done": 0, "rate": 0}], [{"t": 1, "done": 1.5, "rate": 0}]):
        results["performance"]["timeline"] = bad
        assert schema_errors(results), bad
    assert timeline_points(list(reversed(TIMELINE))) == TIMELINE
    assert timeline_points([{"t": 1, "done": 2}]) is None and timeline_points(None) is None
    perf = performance_section({"timeline": TIMELINE}, None, {}, 0)
    assert perf["timeline"] == TIMELINE
    assert "timeline" not in performance_section(None, None, {}, 0)


LATENCY = {"baseline": {"p50_ms": 4.0, "p95_ms": 10.0, "p99_ms": 20.0, "noise_p95_pct": 12.5},
           "during": {"p50_ms": 5.0, "p95_ms": 12.0, "p99_ms": 25.0,
                      "throttle": {"enabled": True, "limit_p95_ms": 10.5, "max_v1_p95_degradation_pct": 5.0},
                      "timeline": [{"t": 0.0, "p50_ms": 4.0, "p95_ms": 9.0},
                                   {"t": 1.0, "p50_ms": None, "p95_ms": None},
                                   {"t": 2.0, "p50_ms": 6.0, "p95_ms": 15.0},
                                   {"t": 3.0, "p50_ms": 5.0, "p95_ms": 10.0}],
                      "after_migration": {"p50_ms": 4.5, "p95_ms": 11.0, "p99_ms": 21.0, "requests": 300,
                                          "failures": 0, "degradation": {"overall": {"p95_pct": 10.0}}}}}


def test_latency_timeline_plots_p95_against_the_baseline_and_the_bound() -> None:
    root = parse(charts.latency_timeline(LATENCY))
    assert root.get("id") == "chart-latency-timeline"
    p95 = polyline(root, "p95")
    assert len(p95) == 3  # the interval without requests has no percentile and is skipped
    refs = {n.get("class"): float(n.get("y1") or 0) for n in root.iter(f"{SVG}line")
            if (n.get("class") or "").startswith("ref-")}
    assert set(refs) == {"ref-baseline", "ref-throttle"}
    assert refs["ref-throttle"] < refs["ref-baseline"]  # 10.5 ms sits above 10 ms (y grows downwards)
    # 15 ms (t=2) is the highest point and lies above the bound, 9 ms (t=0) below the baseline
    assert min(p95, key=lambda p: p[1]) == p95[1] and p95[1][1] < refs["ref-throttle"] < p95[0][1]
    title = root.find(f"{SVG}title")
    assert title is not None and "above the bound in 1 of 3 intervals" in (title.text or "")
    without_throttle = copy.deepcopy(LATENCY)
    without_throttle["during"]["throttle"] = {"enabled": False}
    refs2 = {n.get("class") for n in parse(charts.latency_timeline(without_throttle)).iter(f"{SVG}line")
             if (n.get("class") or "").startswith("ref-")}
    assert refs2 == {"ref-baseline"}


@pytest.mark.parametrize("section", [None, {}, {"baseline": {"p95_ms": 1}, "during": None},
                                     {"during": {"timeline": [{"t": 0, "p95_ms": 3}]}},
                                     {"during": {"timeline": "x"}}])
def test_latency_timeline_without_a_series_draws_nothing(section: Any) -> None:
    assert str(charts.latency_timeline(section)) == ""


def test_the_report_shows_the_after_window_the_noise_and_links_the_load_page() -> None:
    results = sample_results()
    results["performance"]["latency"] = copy.deepcopy(LATENCY)
    results["performance"]["load_report"] = "load/load.html"
    assert schema_errors(results) == []
    html = render_results_html(results)
    assert 'id="chart-latency-timeline"' in html
    assert "after the migration" in html and "differ by 12.5 %" in html
    assert '<a href="load/load.html">' in html
    assert 'id="latency-tasks"' not in html  # no per-task blocks in this results.json
    tasks = copy.deepcopy(results)
    lat = tasks["performance"]["latency"]
    lat["baseline"]["tasks"] = {"trial_balance": {"p95_ms": 20.0}, "read_txn": {"p95_ms": 2.0}}
    lat["during"]["tasks"] = {"trial_balance": {"p95_ms": 30.0, "contention_failures": 0},
                              "read_txn": {"p95_ms": 2.4, "contention_failures": 0}}
    lat["during"]["degradation"] = {"trial_balance": {"p95_pct": 50.0}, "read_txn": {"p95_pct": 20.0}}
    lat["during"]["after_migration"]["degradation"] |= {"trial_balance": {"p95_pct": 75.5},
                                                       "read_txn": {"p95_pct": 1.25}}
    assert schema_errors(tasks) == []
    table = render_results_html(tasks).split('id="latency-tasks"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td class=\"l\">(\w+)</td>(.*?)</tr>", table, re.S)
    assert [r[0] for r in rows] == ["read_txn", "trial_balance"]
    cells = {name: re.findall(r"<td>([^<]*)</td>", body) for name, body in rows}
    assert cells["trial_balance"][2:4] == ["50 %", "75.5 %"] and cells["read_txn"][2:4] == ["20 %", "1.25 %"]
    for bad in ("/etc/passwd", "https://example.com/x", "../x.html"):
        results["performance"]["load_report"] = bad
        assert schema_errors(results), bad
    for good in ("load/load.html", "load/..x/load.html"):
        results["performance"]["load_report"] = good
        assert schema_errors(results) == [], good
    # the assembler keeps only a relative link inside the report directory
    perf = {"latency": {"baseline": {"p95_ms": 1.0}, "during": {"p95_ms": 1.0}}}
    for link, kept in (("load/load.html", True), ("../x.html", False), ("/tmp/x", False), ("http://h/x", False)):
        assert ("load_report" in performance_section(perf | {"load_report": link}, None, {}, 0)) is kept, link

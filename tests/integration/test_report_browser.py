"""The report of a real small run: the live dashboard while `run` works, the final index.html with its inline SVG
charts and the throughput series in results.json, and — when Debian's Chromium is installed — the page as a
headless browser renders it (DOM dump and a screenshot written to the test's tmp_path, never into the repo).

Chromium is looked up as `chromium` / `chromium-browser` on PATH; without it the browser tests skip
(`apt-get install chromium` brings it; the project does not install system packages by itself).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner import pipeline
from runner.db.connect import with_database
from runner.db.providers import Server
from runner.report import live as live_module
from runner.report import schema_errors
from runner.synth.generate import generate
from tests.conftest import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
RUN = "run-report-1"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--hide-scrollbars")


@dataclass
class Report:
    out: Path
    org_code: str
    exit_code: int
    results: dict[str, Any]
    live_pages: list[tuple[str, str]] = field(default_factory=list)  # (phase, html) as the dashboard wrote them


@pytest.fixture(scope="module")
def report(pg_server: Server, core_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    """One small run through pipeline.run (live dashboard on, re-rendered every 50 ms), every live page kept."""
    pages: list[tuple[str, str]] = []

    class Recording(live_module.LiveReport):
        def render(self, *, error: str | None = None, final: bool = False) -> Path:
            path = super().render(error=error, final=final)
            if path.exists() and self.enabled:
                pages.append((self.phase, path.read_text(encoding="utf-8")))
            return path

    name = create_database(pg_server.dsn, template=core_template)
    out = tmp_path_factory.mktemp("report") / RUN
    try:
        dsn = with_database(pg_server.dsn, name)
        org = generate(dsn, size="small", seed=23).organizations[0]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(pipeline, "LiveReport", Recording)
            outcome = pipeline.run(dsn, PHASE7, pipeline.RunOptions(run_id=RUN, report_dir=out, now=True,
                                                                     live_seconds=0.05),
                                   pipeline.make_console(), progress=False)
        yield Report(out, org.organization_code, outcome.exit_code, outcome.results, pages)
    finally:
        drop_database(pg_server.dsn, name)


def test_the_run_records_its_throughput_in_results_json(report: Report) -> None:
    results = report.results
    assert schema_errors(results) == []
    assert report.exit_code == 0 and results["integrity_score"] == 100.0
    timeline = results["performance"]["timeline"]
    # How many points a run gets depends on how long it takes (intervals are whole multiples of the progress
    # rhythm): a fast machine finishes a small org in one interval, so only the start and the end are certain.
    assert timeline[0] == {"t": 0.0, "done": 0, "rate": 0.0} and len(timeline) >= 2
    assert [p["t"] for p in timeline] == sorted(p["t"] for p in timeline)
    (org,) = results["organizations"]
    assert timeline[-1]["done"] == org["migrated"] + org["quarantined"]  # every candidate handled was counted
    assert timeline[-1]["t"] == pytest.approx(results["performance"]["phases"]["migrate"], abs=1.0)
    assert max(p["rate"] for p in timeline) > 0


def test_the_dashboard_was_live_while_the_run_worked(report: Report) -> None:
    phases = [p for p, _ in report.live_pages]
    assert {"snapshot_before", "migrating", "validating"} <= set(phases), phases
    for phase, html in report.live_pages:
        assert '<meta http-equiv="refresh" content="5">' in html, phase
        assert 'id="run-banner"' in html and "Run in progress" in html and report.org_code in html
    validating = [html for phase, html in report.live_pages if phase == "validating"]
    assert 'id="chart-throughput"' in validating[-1]  # the series so far, drawn before the final page
    final = (report.out / "index.html").read_text(encoding="utf-8")
    assert 'http-equiv="refresh"' not in final and "Run in progress" not in final
    assert 'id="verdict">PASSED<' in final and 'id="chart-throughput"' in final and "<svg" in final
    assert not [p.name for p in report.out.iterdir() if p.name.endswith(".tmp")]  # atomic writes left nothing


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium not installed: apt-get install chromium")


def browse(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_headless_chromium_shows_verdict_score_org_and_charts(report: Report, tmp_path: Path) -> None:
    binary = chromium()
    page = (report.out / "index.html").resolve().as_uri()
    dom = browse(binary, tmp_path, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'id="verdict">PASSED<' in html
    assert f"integrity score {report.results['integrity_score']:.2f} / 100" in html
    assert report.org_code in html
    assert "<svg" in html and 'id="chart-throughput"' in html and 'id="chart-score"' in html
    shot = tmp_path / "report.png"
    taken = browse(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", page)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_headless_chromium_renders_the_results_json_it_was_given(report: Report, tmp_path: Path) -> None:
    """The page is a pure render: a copy re-rendered from results.json alone shows the same verdict."""
    binary = chromium()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "results.json").write_text(json.dumps(report.results), encoding="utf-8")
    html = pipeline.render(copy / "results.json")
    dom = browse(binary, tmp_path, "--dump-dom", html.resolve().as_uri())
    assert dom.returncode == 0 and 'id="verdict">PASSED<' in dom.stdout and report.org_code in dom.stdout

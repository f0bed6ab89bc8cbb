"""The report of a real small run: the live dashboard while `run` works, the final index.html with its inline SVG
charts and the throughput series in results.json, and — when Debian's Chromium is installed — the page as a
headless browser renders it (DOM dump and a screenshot written to the test's tmp_path, never into the repo).

The layout test measures the real report at a desktop (1400 px) and a phone (390 px) width with a probe script
injected into the test's own copy of index.html (the report itself has no script): no horizontal overflow of the
page, the verdict and the score inside the viewport, no JS error. Chromium will not open a window narrower than
500 px for --dump-dom, so the phone width is measured in an iframe of exactly 390 px (MIN_WINDOW_WIDTH). Its
screenshots are also copied into the directory HERA_SCREENSHOT_DIR names, when set, for a human to look at.

Chromium is looked up as `chromium` / `chromium-browser` on PATH; without it the browser tests skip
(`.ci/run` installs Debian's chromium when it is missing; elsewhere `apt-get install chromium` brings it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape
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


# --- layout at desktop and phone width -------------------------------------------------------------------------

DESKTOP, PHONE = 1400, 390
# Chromium 150 (Debian 12) widens a narrower --window-size to 500 px for --dump-dom (window.innerWidth reports 500
# at --window-size=390,…), while --screenshot emulates the exact size. So a page narrower than this is measured in
# an iframe of exactly that width: media queries, wrapping and scrollWidth inside it follow the frame's viewport.
MIN_WINDOW_WIDTH = 500
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Registered first in <head>, so an error anywhere in the page (a resource error too: capture phase) is recorded.
PROBE_HEAD = """<script>
window.__probeErrors = [];
addEventListener('error', e => __probeErrors.push(e.message ? String(e.message)
  : 'resource failed: ' + ((e.target && (e.target.src || e.target.href)) || '?')), true);
addEventListener('unhandledrejection', e => __probeErrors.push('unhandled rejection: ' + String(e.reason)));
const __consoleError = console.error;
console.error = (...args) => { __probeErrors.push('console.error: ' + args.join(' ')); __consoleError(...args); };
</script>"""

# Measures once the page has loaded and writes JSON into <pre id="probe"> (hidden: it must not change the layout);
# inside the narrow-width frame it also posts the JSON to the harness, whose DOM is the one --dump-dom prints.
PROBE_BODY = """<pre id="probe" hidden></pre><script>
addEventListener('load', () => {
  const vw = window.innerWidth, slack = 0.5;
  const describe = el => ({tag: el.tagName.toLowerCase(), id: el.id || '', cls: el.getAttribute('class') || ''});
  const box = id => {
    const el = document.getElementById(id);
    if (!el) return null;
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return {left: r.left, right: r.right, top: r.top, width: r.width, height: r.height,
            shown: s.display !== 'none' && s.visibility !== 'hidden' && Number(s.opacity) > 0};
  };
  // An element inside a box that scrolls or clips horizontally does not widen the page.
  const clipped = el => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement)
      if (getComputedStyle(p).overflowX !== 'visible') return true;
    return false;
  };
  const overflowing = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.id === 'probe' || el.closest('#probe')) continue;
    const right = el.getBoundingClientRect().right;
    if (right <= vw + slack || clipped(el)) continue;
    const parent = el.parentElement;  // only the outermost element that sticks out, not all its descendants
    if (parent && parent !== document.body && parent.getBoundingClientRect().right > vw + slack) continue;
    overflowing.push({...describe(el), right: Math.round(right)});
  }
  const result = JSON.stringify({
    innerWidth: vw, clientWidth: document.documentElement.clientWidth,
    scrollWidth: document.documentElement.scrollWidth, framed: window.parent !== window,
    phoneMedia: matchMedia('(max-width: 600px)').matches,
    verdict: box('verdict'), score: box('integrity-score'), overflowing, errors: window.__probeErrors});
  document.getElementById('probe').textContent = result;
  if (window.parent !== window) window.parent.postMessage(result, '*');
});
</script>"""

HARNESS = """<!doctype html><html><head><meta charset="utf-8">
<style>html,body{{margin:0}} iframe{{display:block;border:0}}</style></head><body>
<pre id="probe"></pre>
<script>addEventListener('message', e => {{ document.getElementById('probe').textContent = e.data; }});</script>
<iframe src="{src}" style="width:{width}px;height:{height}px"></iframe></body></html>"""


@dataclass
class Measured:
    probe: dict[str, Any]
    console: list[str]  # Chromium's log lines for the page's console (it prints them without their level)


def with_probe(page: str) -> str:
    head = re.search(r"<head[^>]*>", page)
    assert head and "</body>" in page, "no <head> / </body> to inject the probe into"
    page = page[:head.end()] + PROBE_HEAD + page[head.end():]
    return page.replace("</body>", PROBE_BODY + "</body>", 1)


def measure(binary: str, tmp: Path, page: str, width: int, height: int = 1000) -> Measured:
    """Load `page` with the probe at `width` CSS px, return what the probe measured and the console lines."""
    copy = tmp / f"probe-{width}.html"
    copy.write_text(with_probe(page), encoding="utf-8")
    target, window = copy, width
    if width < MIN_WINDOW_WIDTH:
        target, window = tmp / f"frame-{width}.html", MIN_WINDOW_WIDTH
        target.write_text(HARNESS.format(src=copy.name, width=width, height=height), encoding="utf-8")
    # The budget makes --dump-dom wait for the load handler and the frame's message instead of racing them.
    done = browse(binary, tmp, "--dump-dom", f"--window-size={window},{height}", "--virtual-time-budget=5000",
                  "--enable-logging=stderr", "--v=0", target.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1).strip(), f"the probe did not report at {width} px:\n{done.stdout[-2000:]}"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return Measured(json.loads(unescape(found.group(1))), console)


def console_errors(lines: list[str]) -> list[str]:
    return [line for line in lines if "uncaught" in line.lower() or "error" in line.lower()]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # IHDR, the first chunk
    return width, height


def keep_for_humans(*paths: Path) -> None:
    """Copies screenshots (and what the probe measured) where HERA_SCREENSHOT_DIR says, when it says."""
    target = os.environ.get("HERA_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copy2(path, Path(target) / path.name)


def test_report_fits_desktop_and_phone_width_in_headless_chromium(report: Report, tmp_path: Path) -> None:
    binary = chromium()
    index = report.out / "index.html"
    page = index.read_text(encoding="utf-8")
    kept: list[Path] = []
    for width in (DESKTOP, PHONE):
        measured = measure(binary, tmp_path, page, width)
        probe = measured.probe
        (tmp_path / f"probe-{width}.json").write_text(json.dumps(probe, indent=1), encoding="utf-8")
        kept.append(tmp_path / f"probe-{width}.json")
        # Measured at the width asked, not at whatever the browser chose (see MIN_WINDOW_WIDTH).
        assert abs(probe["innerWidth"] - width) <= 2, probe
        assert probe["phoneMedia"] is (width <= 600), probe
        assert probe["errors"] == [] and console_errors(measured.console) == [], (probe["errors"], measured.console)
        assert probe["scrollWidth"] <= probe["innerWidth"], \
            f"page wider than the viewport at {width} px; sticking out: {probe['overflowing']}"
        verdict, score = probe["verdict"], probe["score"]
        assert verdict and verdict["shown"] and verdict["width"] > 0 and verdict["height"] > 0, probe
        assert verdict["left"] >= 0 and verdict["right"] <= probe["innerWidth"] + 0.5, (width, verdict)
        assert score and score["width"] > 0 and score["right"] <= probe["innerWidth"] + 0.5, (width, score)

        # The report as it is (no probe): --screenshot emulates exactly this width, 3000 px tall.
        shot = tmp_path / f"report-{width}.png"
        taken = browse(binary, tmp_path, f"--screenshot={shot}", f"--window-size={width},3000",
                       index.resolve().as_uri())
        assert taken.returncode == 0, taken.stderr[-2000:]
        assert png_size(shot) == (width, 3000) and shot.stat().st_size > 10_000
        kept.append(shot)
    keep_for_humans(*kept)
    # Without it a phone lays the page out 980 px wide and shrinks it: the phone layout above never applies.
    assert '<meta name="viewport"' in page, "results.html.j2 lacks <meta name=\"viewport\" ...>"


def test_the_layout_probe_sees_overflow_errors_and_a_cut_off_score(tmp_path: Path) -> None:
    """The probe can fail: a page wider than a phone, an uncaught error and a score pushed off-screen."""
    binary = chromium()
    page = ('<!doctype html><html><head><meta charset="utf-8"></head><body>'
            '<span id="verdict">PASSED</span><span id="integrity-score" style="margin-left:600px">100</span>'
            '<div id="too-wide" class="x" style="width:2000px">wide</div>'
            '<script>null.boom;</script></body></html>')
    measured = measure(binary, tmp_path, page, PHONE)
    probe = measured.probe
    assert probe["innerWidth"] == PHONE and probe["framed"] and probe["phoneMedia"]
    assert probe["scrollWidth"] > probe["innerWidth"]
    assert {"tag": "div", "id": "too-wide", "cls": "x", "right": 2008} in probe["overflowing"]
    assert probe["score"]["right"] > probe["innerWidth"] and probe["verdict"]["right"] < probe["innerWidth"]
    assert any("boom" in e for e in probe["errors"]), probe["errors"]
    assert any("boom" in line for line in console_errors(measured.console)), measured.console

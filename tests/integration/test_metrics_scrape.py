"""Live metrics of a real run: scraped over HTTP while the engine works (progress rises chunk by chunk and ends at
what the run handled), and the node_exporter textfile `hera-migrate run --metrics-textfile` leaves behind (the
final counts and the integrity score of results.json), and what a load session adds (the v1 baseline, the
auto-throttle)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from runner.engine import ChunkInfo, EngineHooks, run_migration
from runner.load.session import with_run
from runner.metrics import serve_metrics
from runner.pipeline import RunOptions, make_console
from runner.synth.generate import generate
from tests.integration.test_engine_support import phase7, plan_candidates
from tests.integration.test_load import _plan
from tests.integration.test_pipeline import PHASE7, hera
from tests.unit.test_metrics import Samples, fetch, samples_of, value

HANDLED = "hera_migrate_records_handled_total"


class Scraper(EngineHooks):
    """Scrapes the metrics endpoint after every committed chunk, on the worker thread: the engine waits for it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[Samples] = []

    def after_commit(self, info: ChunkInfo) -> None:
        self.seen.append(samples_of(fetch(self.url)))


def test_progress_scraped_during_a_run_rises_chunk_by_chunk(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=37).organizations[0].organization_id
    spec = phase7(narrow=True)
    planned = plan_candidates(db_dsn, spec, org)
    with serve_metrics("scraped", port=0) as metrics:
        url = f"http://127.0.0.1:{metrics.port}/metrics"
        scraper = Scraper(url)
        result = run_migration(db_dsn, spec, run_id="scraped", workers=1, batch_size=20, now=True,
                               progress=metrics.sink(), hooks=scraper)
        final = samples_of(fetch(url))

    got = result.org(org)
    handled = got.migrated + got.aliased + got.quarantined_total
    assert result.status == "completed" and handled == sum(planned.values()) > 0
    progress = [value(s, HANDLED, run_id="scraped") for s in scraper.seen]
    assert len(progress) == got.chunks >= 4
    # after_commit comes before the chunk's progress report: each scrape shows every earlier chunk, so it rises
    # strictly from one chunk to the next, and the scrape after the run shows the last one too
    assert all(b > a for a, b in itertools.pairwise(progress)), progress
    assert progress[-1] < value(final, HANDLED) == handled
    assert all(value(s, "hera_migrate_organizations", status="running") == 1 for s in scraper.seen)
    assert value(final, "hera_migrate_organizations", status="completed") == 1
    assert value(final, "hera_migrate_candidates", organization_id=org) == handled
    assert value(final, "hera_migrate_organization_handled_total", organization_id=org) == handled
    worker = "hera-migrate-worker-0"
    assert value(final, HANDLED, tier="reverse_repost", worker=worker) == got.migrated + got.quarantined[
        "reverse_repost"]
    assert value(final, HANDLED, tier="reporting_alias", worker=worker) == got.aliased + got.quarantined[
        "reporting_alias"]
    assert value(final, "hera_migrate_chunk_duration_seconds_count") == got.chunks
    assert "hera_migrate_integrity_score" not in {name for name, _ in final}  # nothing validated it


def test_run_leaves_a_textfile_with_the_final_counts_and_the_integrity_score(db_dsn: str, tmp_path: Path) -> None:
    generate(db_dsn, size="small", seed=41)
    prom = tmp_path / "textfile" / "hera.prom"
    out = tmp_path / "r"
    run = hera("run", str(PHASE7), "--run-id", "t-metrics", "--report-dir", str(out), "--no-progress", "--now",
               "--batch-size", "100", "--metrics-textfile", str(prom), "--metrics-port", "0", dsn=db_dsn)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"metrics: http://127\.0\.0\.1:[1-9][0-9]*/metrics", run.stdout), run.stdout
    results = json.loads((out / "results.json").read_text())
    counts = results["counts"]

    got = samples_of(prom.read_text())
    assert value(got, HANDLED, run_id="t-metrics") == counts["migrated"] + counts["quarantined"] > 0
    assert value(got, HANDLED, tier="reverse_repost") == counts["reverse_reposted"] + value(
        got, "hera_migrate_quarantined_total", tier="reverse_repost")
    assert value(got, "hera_migrate_quarantined_total") == counts["quarantined"]
    assert value(got, "hera_migrate_candidates") == sum(o["candidates"] for o in results["organizations"])
    assert value(got, "hera_migrate_integrity_score", run_id="t-metrics") == results["integrity_score"]
    assert value(got, "hera_migrate_phase", phase="done") == 1 and value(got, "hera_migrate_phase") == 1
    assert value(got, "hera_migrate_organizations", status="completed") == len(results["organizations"])


def test_a_load_session_exports_the_v1_baseline_and_the_throttles_final_state(db_dsn: str, tmp_path: Path) -> None:
    generate(db_dsn, size="small", seed=43)
    prom, out = tmp_path / "load.prom", tmp_path / "r"
    opts = RunOptions(run_id="t-load-metrics", now=True, report_dir=out, metrics_textfile=prom)
    outcome, hook = with_run(db_dsn, PHASE7, opts, _plan(), make_console())
    assert hook.throttle is not None and outcome.exit_code in (0, 1)  # 1: the noisy 2-core latency alert
    results = json.loads((out / "results.json").read_text())
    throttle = results["performance"]["latency"]["during"]["throttle"]

    got = samples_of(prom.read_text())
    assert value(got, "hera_migrate_run_info", run_id="t-load-metrics", command="load") == 1
    assert value(got, "hera_migrate_phase", phase="done") == 1
    assert value(got, HANDLED) == results["counts"]["migrated"] + results["counts"]["quarantined"] > 0
    assert value(got, "hera_migrate_integrity_score") == results["integrity_score"]
    assert value(got, "hera_migrate_v1_baseline_p95_seconds") > 0
    # the summary rounds to 3 decimals (of ms for the bound, of seconds for the pause); the metrics do not
    assert value(got, "hera_migrate_throttle_limit_p95_seconds") == pytest.approx(
        throttle["final_limit_p95_ms"] / 1000, abs=1e-6)
    assert value(got, "hera_migrate_throttle_batch_size") == throttle["final_chunk"]
    assert value(got, "hera_migrate_throttle_pause_seconds") == pytest.approx(throttle["final_pause_seconds"],
                                                                              abs=1e-3)
    assert value(got, "hera_migrate_throttle_paused") == float(throttle["final_pause_seconds"] > 0)

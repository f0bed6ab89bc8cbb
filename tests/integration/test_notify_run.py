"""Notifications of a real run on PostgreSQL, received by a local webhook: a clean `run` reports its verdict; a
defect planted afterwards (a repost's amounts drift) makes `validate --notify` send the critical alert and the
FAILED verdict, with the same exit code as a `validate` without notifications or with a webhook that is down."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from runner import pipeline
from runner.notify import LOG_FILE
from runner.report.html import VERDICTS
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.tools.defects import plant
from tests.tools.webhook import closed_port, webhook

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
RUN = "t-notify-1"


def hera(*args: str, dsn: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HERA_DSN"} | (env or {})
    return subprocess.run([sys.executable, "-m", "runner", "--dsn", dsn, *args], capture_output=True, text=True,
                          timeout=300, check=False, env=environ)


def read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def alerts_of(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(m["level"], m["metric"], m["value"], m["threshold"]) for m in messages if m["event"] == "alert"]


def test_a_planted_defect_reaches_the_webhook_and_changes_no_exit_code(db_dsn: str, tmp_path: Path) -> None:
    generate(db_dsn, size="small", seed=61)
    out = tmp_path / "r"
    html = str((out / "index.html").resolve())

    # A clean run through the pipeline: its verdict (and any alert) reaches the webhook before run() returns.
    with webhook() as hook:
        ran = pipeline.run(db_dsn, PHASE7, pipeline.RunOptions(run_id=RUN, report_dir=out, now=True, live_seconds=None,
                                                               baseline_seconds=0.0, notify=(hook.url,)),
                           Console(file=io.StringIO()), progress=False)
        messages = hook.messages()
    results = read(out / "results.json")
    assert ran.exit_code == 0 and results["status"] in ("passed", "warning")
    assert alerts_of(messages) == [(a["level"], a["metric"], a["value"], a["threshold"]) for a in results["alerts"]]
    (finished,) = [m for m in messages if m["event"] == "run_finished"]
    assert (finished["run_id"], finished["verdict"], finished["exit_code"], finished["report"]) == (
        RUN, VERDICTS[results["status"]], 0, html)
    assert messages[-1] is finished  # the verdict comes after the alerts

    planted = plant(db_dsn, load_spec(PHASE7), RUN, "repost_amount_drift")
    assert planted.record_id

    # The planted defect, through the CLI, with the webhook's URL (a secret in its path) from the environment.
    with webhook(path="/hook/s3cret-token") as hook:
        checked = hera("validate", RUN, "--report-dir", str(out), "--notify", "env:HERA_TEST_WEBHOOK", dsn=db_dsn,
                       env={"HERA_TEST_WEBHOOK": hook.url})
        messages = hook.messages()
        paths = {r.path for r in hook.received}
    assert checked.returncode == 1, checked.stdout[-3000:] + checked.stderr[-3000:]
    results = read(out / "results.json")
    assert results["status"] == "failed"
    fired = [(a["level"], a["metric"], a["value"], a["threshold"]) for a in results["alerts"]]
    assert ("critical", "integrity_score") in {(level, metric) for level, metric, *_ in fired}
    assert alerts_of(messages) == fired  # one message per alert, values as results.json has them
    for m in messages:
        assert m["run_id"] == RUN and m["report"] == html and m["text"] and m["command"] == "validate"
    critical = next(m for m in messages if m["event"] == "alert" and m["metric"] == "integrity_score")
    assert critical["level"] == "critical" and "integrity_score" in critical["text"] and html in critical["text"]
    assert messages[-1]["event"] == "validate_finished"
    assert (messages[-1]["verdict"], messages[-1]["exit_code"], messages[-1]["level"]) == ("FAILED", 1, "critical")
    assert paths == {"/hook/s3cret-token"}
    log = (out / LOG_FILE).read_text(encoding="utf-8")
    assert "s3cret" not in log and "s3cret" not in checked.stdout + checked.stderr
    validated = [json.loads(line) for line in log.splitlines()][-len(messages):]  # appended after the run's
    assert [(d["event"], d["delivered"], d["url"]) for d in validated] == [
        (m["event"], True, f"http://127.0.0.1:{hook.port}/…") for m in messages]

    # The same validation without notifications, and with a webhook that is down: the same exit code.
    plain = hera("validate", RUN, "--report-dir", str(out), dsn=db_dsn)
    assert plain.returncode == checked.returncode, plain.stdout[-2000:] + plain.stderr[-2000:]
    t0 = time.monotonic()
    down = hera("validate", RUN, "--report-dir", str(out), "--notify", f"http://127.0.0.1:{closed_port()}/hook",
                dsn=db_dsn)
    assert down.returncode == checked.returncode, down.stdout[-2000:] + down.stderr[-2000:]
    assert time.monotonic() - t0 < 120
    assert "notification not delivered: validate_finished" in down.stdout
    last = [json.loads(line) for line in (out / LOG_FILE).read_text(encoding="utf-8").splitlines()][-1]
    assert (last["event"], last["delivered"], last["attempts"]) == ("validate_finished", False, 3)


def test_load_with_a_run_sends_the_runs_alerts_and_one_end(db_dsn: str, tmp_path: Path) -> None:
    """`load --spec --notify`: the run's alerts, then one `load_finished` with the load's own exit code (which a
    v1 request failing because of the migration raises to 1, with an alert of its own)."""
    generate(db_dsn, size="small", seed=62)
    out = tmp_path / "r"
    with webhook() as hook:
        proc = hera("load", "--spec", str(PHASE7), "--now", "--users", "2", "--rate", "5", "--duration", "2",
                    "--warmup", "1", "--run-id", "t-notify-load", "--report-dir", str(out), "--notify", hook.url,
                    dsn=db_dsn)
        messages = hook.messages()
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = read(out / "results.json")
    contention = (results["performance"]["latency"]["during"].get("contention_failures") or 0)
    expected = [(a["level"], a["metric"], a["value"], a["threshold"]) for a in results["alerts"]]
    expected += [("critical", "v1_contention_failures", contention, 0)] if contention else []
    assert alerts_of(messages) == expected
    assert [m["event"] for m in messages if m["event"] != "alert"] == ["load_finished"]  # not run_finished too
    finished = messages[-1]
    assert (finished["event"], finished["run_id"], finished["exit_code"], finished["verdict"], finished["report"]) == (
        "load_finished", "t-notify-load", proc.returncode, VERDICTS[results["status"]],
        str((out / "index.html").resolve()))

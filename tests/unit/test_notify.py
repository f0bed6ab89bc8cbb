"""Webhook notifications (runner.notify) against a real HTTP server on 127.0.0.1: retries, timeouts, a webhook
that is down or never answers, secrets kept out of specs, command lines and notifications.jsonl."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner import notify
from runner.errors import UsageError
from runner.spec import load_spec, run_check
from runner.spec.model import WebhookEnv
from tests.tools.webhook import closed_port, webhook

RESULTS: dict[str, Any] = {  # the part of a results.json the messages read
    "status": "failed", "integrity_score": 88.5,
    "alerts": [
        {"level": "critical", "metric": "integrity_score", "value": 88.5, "threshold": 95.0,
         "message": "integrity_score 88.5 is below the critical threshold 95"},
        {"level": "warning", "metric": "validation_failures_per_hour", "value": 7.0, "threshold": 5,
         "message": "validation_failures_per_hour 7 is above the warning threshold 5 <&>"},
    ],
}


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, soft_wrap=True), buffer


def _hook(url: str) -> notify.Webhook:
    return notify.Webhook(url, url, "test")


# --- delivery ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "attempts", "delivered", "status"), [
    ([500, 500, 200], 3, True, 200),  # retried until it answers
    ([503, 429, 500], 3, False, 500),  # 5xx and 429 are retried, then given up
    ([404], 1, False, 404),  # another 4xx is final: retrying would not help
    ([302], 1, False, 302),  # a redirect is not followed (it would resend the body elsewhere)
    ([204], 1, True, 204),
])
def test_retries_with_backoff_and_records_the_outcome(statuses: list[int], attempts: int, delivered: bool,
                                                      status: int, tmp_path: Path) -> None:
    with webhook(statuses) as hook:
        notes = notify.Notifier([_hook(hook.url)], run_id="r1", report_dir=tmp_path, backoff=0.01)
        notes.alert("critical", "integrity_score", 80.0, 95.0, "integrity_score 80 is below 95", command="run")
        (outcome,) = notes.close(5)
        bodies = [r.body for r in hook.received]
    assert (outcome.attempts, outcome.delivered, outcome.status) == (attempts, delivered, status)
    assert len(bodies) == attempts and len(set(bodies)) == 1  # each attempt sends the same message
    (line,) = (tmp_path / notify.LOG_FILE).read_text(encoding="utf-8").splitlines()
    logged = json.loads(line)
    assert (logged["event"], logged["metric"], logged["attempts"], logged["delivered"], logged["http_status"]) == (
        "alert", "integrity_score", attempts, delivered, status)


def test_alert_and_finished_messages_carry_what_the_operator_needs(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}", encoding="utf-8")
    html = tmp_path / "index.html"
    with webhook() as hook:
        notes = notify.Notifier([_hook(hook.url)], run_id="run-7", report_dir=tmp_path)
        notes.alerts(RESULTS, html, command="validate")
        notes.finished("validate", RESULTS, 1, html)
        assert [d.delivered for d in notes.close(5)] == [True, True, True]
        critical, warning, finished = hook.messages()
        content_type = hook.received[0].headers["Content-Type"]
    assert content_type.startswith("application/json")
    for got, want in ((critical, RESULTS["alerts"][0]), (warning, RESULTS["alerts"][1])):
        assert got["event"] == "alert" and got["run_id"] == "run-7" and got["command"] == "validate"
        assert (got["level"], got["metric"], got["alert"], got["value"], got["threshold"], got["message"]) == (
            want["level"], want["metric"], want["metric"], want["value"], want["threshold"], want["message"])
        assert got["report"] == str(html.resolve()) and got["results"] == str((tmp_path / "results.json").resolve())
        assert got["at"].endswith("Z") and want["metric"] in got["text"] and str(html.resolve()) in got["text"]
    assert type(warning["threshold"]) is int  # numbers go out as results.json has them
    assert "&lt;&amp;&gt;" in warning["text"] and "<&>" in warning["message"]  # Slack's escaping, text only
    assert (finished["event"], finished["verdict"], finished["status"], finished["exit_code"], finished["level"]) == (
        "validate_finished", "FAILED", "failed", 1, "critical")
    assert finished["integrity_score"] == 88.5 and [a["metric"] for a in finished["alerts"]] == [
        "integrity_score", "validation_failures_per_hour"]
    assert "FAILED" in finished["text"] and "run-7" in finished["text"]


def test_rollback_finished_for_the_rollback_command(tmp_path: Path) -> None:
    with webhook() as hook:
        notes = notify.for_run(None, [hook.url], tmp_path, run_id="r3")
        notes.rollback_finished("rolled_back", 0, html=tmp_path / "index.html")
        notes.rollback_finished("requires_review", 1, detail="2 conflicts to review")
        assert [d.delivered for d in notes.close(5)] == [True, True]
        done, review = hook.messages()
    assert (done["event"], done["verdict"], done["level"], done["exit_code"]) == (
        "rollback_finished", "ROLLED BACK", "info", 0)
    assert (review["status"], review["verdict"], review["level"], review["message"]) == (
        "requires_review", "REQUIRES_REVIEW", "critical", "2 conflicts to review")
    assert "2 conflicts to review" in review["text"] and review["report"] is None


def test_a_webhook_that_never_answers_blocks_neither_send_nor_close(tmp_path: Path) -> None:
    console, out = _console()
    with webhook(hang=True) as hook:
        notes = notify.Notifier([_hook(hook.url)], run_id="r1", report_dir=tmp_path, console=console, timeout=3.0)
        t0 = time.monotonic()
        for i in range(3):
            notes.alert("warning", f"m{i}", i, 0, "slow webhook", command="run")
        queued = time.monotonic() - t0
        t0 = time.monotonic()
        outcomes = notes.close(0.5)
        closed = time.monotonic() - t0
    assert queued < 1.0  # a blocking send would wait 3 s for the first request alone
    assert 0.5 <= closed < 2.5  # close waited its bound, not the request's timeout (3 s)
    assert [(d.metric, d.delivered) for d in outcomes] == [("m0", False), ("m1", False), ("m2", False)]
    assert "given up" in (outcomes[0].error or "") and outcomes[0].attempts == 1
    assert all((d.error or "").startswith("not sent: given up") and d.attempts == 0 for d in outcomes[1:])
    assert "notification not delivered: alert m2" in out.getvalue() and "0 of 3 delivered" in out.getvalue()
    assert len((tmp_path / notify.LOG_FILE).read_text(encoding="utf-8").splitlines()) == 3


def test_per_request_timeout_is_retried_then_given_up(tmp_path: Path) -> None:
    with webhook(hang=True) as hook:
        notes = notify.Notifier([_hook(hook.url)], timeout=0.2, backoff=0.01)
        notes.alert("critical", "m", 1, 0, "x", command="run")
        (outcome,) = notes.close(5)
        requests = len(hook.received)
    assert (outcome.attempts, outcome.delivered, outcome.error) == (3, False, "no answer within 0.2s")
    assert requests == 3


def test_an_unreachable_webhook_never_raises_and_a_good_one_still_gets_everything(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    with webhook() as hook:
        notes = notify.Notifier([_hook(dead), _hook(hook.url)], run_id="r1", report_dir=tmp_path, backoff=0.01)
        notes.alerts(RESULTS, None, command="run")
        notes.finished("run", RESULTS, 1, None)
        outcomes = notes.close(5)
        got = [m["event"] for m in hook.messages()]
    assert got == ["alert", "alert", "run_finished"]
    by_url = {(d.webhook.url, d.delivered) for d in outcomes}
    assert by_url == {(dead, False), (hook.url, True)}
    assert all(d.attempts == 3 and "refused" in (d.error or "").lower() for d in outcomes if d.webhook.url == dead)


def test_nothing_configured_is_inert_and_after_close_nothing_is_sent(tmp_path: Path) -> None:
    notes = notify.Notifier(report_dir=tmp_path)
    notes.finished("run", RESULTS, 1, None)
    assert notes.close() == [] and not (tmp_path / notify.LOG_FILE).exists()
    with webhook() as hook:
        notes = notify.Notifier([_hook(hook.url)])
        notes.close()
        notes.finished("run", RESULTS, 1, None)  # too late: dropped, not raised
        assert hook.received == []


def test_a_failure_is_reported_by_guard_and_the_error_goes_on(tmp_path: Path) -> None:
    with webhook() as hook:
        notes = notify.Notifier([_hook(hook.url)], run_id="r9", report_dir=tmp_path)
        with pytest.raises(UsageError, match="no organisation"), notes.guard("run"):
            raise UsageError("no organisation is in scope")
        (failed,) = hook.messages()
    assert (failed["event"], failed["exit_code"], failed["level"], failed["message"]) == (
        "run_failed", 2, "critical", "no organisation is in scope")


# --- secrets: environment only ---------------------------------------------------------------------------------


def test_a_url_from_the_environment_is_used_but_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console, out = _console()
    with webhook(path="/hook/T0KEN-s3cret?sig=abc123") as hook:
        monkeypatch.setenv("HERA_TEST_HOOK", hook.url)
        notes = notify.for_run(None, ["env:HERA_TEST_HOOK"], tmp_path, run_id="r1", console=console)
        notes.finished("run", RESULTS, 1, None)
        (outcome,) = notes.close(5)
        (received,) = hook.received
    assert outcome.delivered and received.path == "/hook/T0KEN-s3cret?sig=abc123"  # the real URL was posted to
    written = (tmp_path / notify.LOG_FILE).read_text(encoding="utf-8")
    logged = json.loads(written)
    assert logged["url"] == f"http://127.0.0.1:{hook.port}/…" and logged["source"] == "--notify env:HERA_TEST_HOOK"
    for secret in ("T0KEN", "s3cret", "abc123"):
        assert secret not in written and secret not in out.getvalue()


def test_a_missing_variable_is_a_warning_naming_it_and_the_run_goes_on(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERA_NO_SUCH_HOOK", raising=False)
    monkeypatch.setenv("HERA_NOT_A_URL", "mailto:ops@example.com")
    console, out = _console()
    notes = notify.for_run(None, ["env:HERA_NO_SUCH_HOOK", "env:HERA_NOT_A_URL"], tmp_path, run_id="r1",
                           console=console)
    assert notes.webhooks == []
    notes.finished("run", RESULTS, 0, None)
    assert notes.close() == []
    text = out.getvalue()
    assert "HERA_NO_SUCH_HOOK (--notify env:HERA_NO_SUCH_HOOK) is not set or empty" in text
    assert "HERA_NOT_A_URL" in text and "only http and https" in text and "ops@example.com" not in text


@pytest.mark.parametrize(("value", "needle"), [
    ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "whose path is its secret token"),
    ("https://bot:hunter2@ops.example.com/hook", "user name or password"),
    ("https://ops.example.com/hook?token=SECRETQ", "query string"),
    ("ftp://ops.example.com/hook", "only http and https"),
    ("env:1NOPE", "not an environment variable name"),
])
def test_a_command_line_url_with_a_secret_is_refused_without_echoing_it(value: str, needle: str) -> None:
    with pytest.raises(UsageError) as caught:
        notify.check_cli(value)
    shown = caught.value.render()
    assert needle in shown
    for secret in ("XXXXSECRET", "hunter2", "SECRETQ"):
        assert secret not in shown
    assert notify.check_cli("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    assert notify.check_cli("env:HERA_SLACK") == "env:HERA_SLACK"


def test_the_cli_refuses_a_secret_url_before_anything_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "validate", "some-run", "--notify",
                           "https://hooks.slack.com/services/T0/B0/SECRETTOKEN"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--notify" in proc.stderr and "env:NAME" in proc.stderr and "SECRETTOKEN" not in proc.stderr


SPEC_HEAD = """name: notify
version: "1"
owner: qa
mappings:
  - from: HERA.FINANCE.GL.TXN.JOURNAL.v1
    tier: reverse_repost
alerts:
  notify:
"""


def test_spec_literal_urls_with_secrets_are_errors_at_their_item(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_HEAD + "    - https://ops.example.com/hera\n"
                                "    - {env: HERA_SLACK_WEBHOOK}\n"
                                "    - https://hooks.slack.com/services/T000/B000/XXXX\n"
                                "    - https://user:pw@ops.example.com/x\n"
                                "    - https://ops.example.com/x?token=1\n", encoding="utf-8")
    code, text = run_check([path])
    assert code == 2
    problems = [line for line in text.splitlines() if "/alerts/notify/" in line]
    assert [p.split(": ")[0:2] for p in problems] == [[f"{path}:11:7", "/alerts/notify/2"],
                                                       [f"{path}:12:7", "/alerts/notify/3"],
                                                       [f"{path}:13:7", "/alerts/notify/4"]]
    assert all("write {env: NAME} here" in p for p in problems)
    assert "XXXX" not in text and ":pw@" not in text and "token=1" not in text


def test_spec_webhooks_load_typed_and_resolve_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   ) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_HEAD + "    - http://127.0.0.1:9/hera\n    - {env: HERA_TEST_SPEC_HOOK}\n",
                    encoding="utf-8")
    spec = load_spec(path)
    assert spec.alerts.notify == ("http://127.0.0.1:9/hera", WebhookEnv(env="HERA_TEST_SPEC_HOOK"))
    monkeypatch.setenv("HERA_TEST_SPEC_HOOK", "https://hooks.slack.com/services/T/B/SECRET")
    hooks = notify.spec_webhooks(spec)
    assert [(h.url, h.shown, h.source) for h in hooks] == [
        ("http://127.0.0.1:9/hera", "http://127.0.0.1:9/hera", "spec /alerts/notify/0"),
        ("https://hooks.slack.com/services/T/B/SECRET", "https://hooks.slack.com/…", "spec /alerts/notify/1")]
    # the spec's and the command line's webhooks combine; the same URL twice is one webhook
    notes = notify.for_run(spec, ["http://127.0.0.1:9/hera", "http://127.0.0.1:9/other"], None, run_id="r1")
    assert [h.source for h in notes.webhooks] == ["--notify", "--notify", "spec /alerts/notify/1"]
    notes.close(0)

"""Webhook notifications: every alert that fires and each command's end, POSTed as JSON to the webhooks of the
spec (`alerts.notify`) and of the command line (`--notify URL`, `--notify env:NAME`).

A notification must never cost the migration anything: `send` only queues (one sender thread per webhook, so a
dead webhook delays no other), each request has a timeout, failures are retried with exponential backoff and
then given up, and `close` waits a bounded time before it abandons what is left. Nothing here raises into the
caller once the webhooks are resolved; what was and was not delivered goes to `notifications.jsonl` in the report
directory and, when something failed, to the console as a warning. The exit code never changes.

Webhook URLs are credentials: the spec and the command line may only name a URL that carries no secret
(runner.spec.webhooks), any other is read from an environment variable and shown redacted everywhere.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from runner import __version__
from runner.errors import EXIT_RUNTIME, HarnessError, UsageError
from runner.report.html import VERDICTS
from runner.spec import webhooks
from runner.spec.model import Spec, WebhookEnv

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds per request
ATTEMPTS = 3  # per message and webhook
BACKOFF = 0.5  # seconds before the 2nd attempt, doubled before each further one
MAX_DELAY = 5.0  # cap of a server's Retry-After
CLOSE_TIMEOUT = 10.0  # the longest `close` waits for the queues to drain
LOG_FILE = "notifications.jsonl"
ENV_PREFIX = "env:"

Level = Literal["critical", "warning", "info"]
_ICONS = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":white_check_mark:"}


# --- where to send -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    url: str  # what is POSTed to; read from the environment it may hold a secret, so it is never printed
    shown: str  # what logs, the console and notifications.jsonl show
    source: str  # where it was configured, e.g. "spec /alerts/notify/0" or "--notify env:HOOK"


def check_cli(value: str) -> str:
    """A `--notify` value as given: `env:NAME` or a URL without secrets; else a UsageError (exit 2)."""
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if not name.isidentifier() or not name.isascii():
            raise UsageError(f"--notify {value}: {name!r} is not an environment variable name")
        return value
    why = webhooks.literal_problem(value)
    if why is not None:
        secret = webhooks.url_problem(value) is None
        raise UsageError(f"--notify {webhooks.redact(value)}: the webhook URL {why}",
                         hint="a command line ends up in shell history and `ps`: export the URL as NAME and "
                              "pass --notify env:NAME" if secret else "write http(s)://host/path or env:NAME")
    return value


def _resolve(items: Iterable[tuple[str | WebhookEnv, str]], console: Console | None) -> list[Webhook]:
    """(a literal URL without secrets, or the variable holding one; where it was configured) -> webhooks. A
    variable that is unset or holds no http(s) URL is a warning naming it, never an error: the run goes on."""
    out: list[Webhook] = []
    for item, source in items:
        if isinstance(item, str):
            out.append(Webhook(item.strip(), item.strip(), source))
            continue
        url = os.environ.get(item.env, "").strip()
        why = "is not set or empty" if not url else webhooks.url_problem(url)
        if why is None:
            out.append(Webhook(url, webhooks.redact(url), source))
        else:  # the value is never echoed: it may be a secret pasted into the wrong variable
            _warn(console, f"notifications: the environment variable {item.env} ({source}) "
                           f"{why if not url else f'does not hold a usable webhook URL: it {why}'}; "
                           "no notification goes to that webhook")
    return out


def cli_webhooks(values: Iterable[str], console: Console | None = None) -> list[Webhook]:
    """The webhooks of `--notify` values (checked again: pipeline callers need not come through the CLI)."""
    items: list[tuple[str | WebhookEnv, str]] = []
    for v in values:
        named = check_cli(v).startswith(ENV_PREFIX)
        items.append((WebhookEnv(env=v[len(ENV_PREFIX):]), f"--notify {v}") if named else (v, "--notify"))
    return _resolve(items, console)


def spec_webhooks(spec: Spec | None, console: Console | None = None) -> list[Webhook]:
    """The webhooks of the spec's alerts.notify (its literal URLs passed `check`: they hold no secret)."""
    items = spec.alerts.notify if spec is not None else ()
    return _resolve([(item, f"spec /alerts/notify/{i}") for i, item in enumerate(items)], console)


def for_run(spec: Spec | None, cli: Iterable[str], report_dir: Path | None, *, run_id: str | None,
            console: Console | None = None) -> Notifier:
    """A started Notifier for the webhooks of `spec` (None: the command has no spec) and of `--notify` values;
    without any it is inert. Raises UsageError for a `--notify` value with a secret (before anything ran)."""
    notifier = Notifier(cli_webhooks(cli, console), run_id=run_id, report_dir=report_dir, console=console)
    notifier.add(spec_webhooks(spec, console))
    return notifier


# --- the messages ----------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _slack(text: str) -> str:
    """Slack reads &, < and > in `text` as markup: escape them (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _level_of(exit_code: int, results: Mapping[str, Any] | None) -> Level:
    if exit_code not in (0, 4):
        return "critical"
    warned = exit_code == 4 or any(a.get("level") == "warning" for a in (results or {}).get("alerts") or [])
    return "warning" if warned or (results or {}).get("status") == "warning" else "info"


# --- sending ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)  # compared by identity: two equal messages are two deliveries
class Delivery:
    """What became of one message to one webhook (a line of notifications.jsonl)."""

    webhook: Webhook
    event: str
    metric: str | None
    attempts: int = 0
    delivered: bool = False
    status: int | None = None  # the HTTP status of the last answer, if any
    error: str | None = None
    at: str = field(default_factory=lambda: _now())  # when it was queued

    def as_dict(self, run_id: str | None) -> dict[str, Any]:
        return {"at": self.at, "run_id": run_id, "url": self.webhook.shown, "source": self.webhook.source,
                "event": self.event, "metric": self.metric, "attempts": self.attempts, "delivered": self.delivered,
                "http_status": self.status, "error": self.error}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected webhook is misconfigured, and following it would resend the body (or, for 302, drop it)
    to wherever it points: a 3xx is an answer, not delivered."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_PROXIED = urllib.request.build_opener(_NoRedirect)  # honours http(s)_proxy / no_proxy, as curl would
_DIRECT = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))  # loopback: never a proxy


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Outbox(threading.Thread):
    """One webhook's queue and sender (a daemon: a hung request never keeps the process alive). `pending` holds
    every message queued and not finished, under the notifier's lock: what close reports when it gives up."""

    def __init__(self, hook: Webhook, notifier: Notifier) -> None:
        super().__init__(name=f"notify {hook.shown}", daemon=True)
        self.hook, self.notifier = hook, notifier
        self.queue: queue.SimpleQueue[tuple[Delivery, bytes] | None] = queue.SimpleQueue()
        self.pending: list[Delivery] = []

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            delivery, body = item
            if self.notifier.abandoned.is_set():
                return  # close gave up and counted it already
            try:
                self.notifier.post(self.hook, body, delivery)
            except Exception as exc:  # a bug here must not kill the sender silently
                delivery.error = f"internal error: {type(exc).__name__}: {exc}"
            self.notifier.done(self, delivery)


class Notifier:
    """Queues messages for every webhook; `close` drains within a bound and writes notifications.jsonl."""

    def __init__(self, hooks: Iterable[Webhook] = (), *, run_id: str | None = None, report_dir: Path | None = None,
                 console: Console | None = None, timeout: float = TIMEOUT, attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF) -> None:
        self.run_id, self.report_dir, self.console = run_id, report_dir, console
        self.timeout, self.attempts, self.backoff = timeout, max(1, attempts), backoff
        self.lock = threading.Lock()
        self.deliveries: list[Delivery] = []
        self._boxes: dict[str, _Outbox] = {}
        self.abandoned = threading.Event()  # set by close after its bound: senders stop, retries stop waiting
        self._closed = False
        self.add(hooks)

    @property
    def webhooks(self) -> list[Webhook]:
        return [box.hook for box in self._boxes.values()]

    def add(self, hooks: Iterable[Webhook]) -> None:
        """More webhooks (the same URL twice is one webhook); messages sent before reach only the earlier ones."""
        for hook in hooks:
            if hook.url not in self._boxes and not self._closed:
                box = self._boxes[hook.url] = _Outbox(hook, self)
                box.start()

    def bind(self, *, run_id: str | None = None, report_dir: Path | None = None) -> None:
        """What a command learns after it made the notifier: its run id and report directory."""
        self.run_id = run_id or self.run_id
        self.report_dir = report_dir or self.report_dir

    # -- messages --

    def send(self, message: dict[str, Any]) -> None:
        """Queue `message` (the common fields added) for every webhook; returns at once, never raises."""
        try:
            if not self._boxes:
                return
            if self._closed:
                log.warning("notification %s after close: not sent", message.get("event"))
                return
            full = {"event": message.get("event"), "run_id": self.run_id, **message, "at": _now(),
                    "tool": f"hera-migrate {__version__}"}
            body = json.dumps(full, default=str).encode("utf-8")
            with self.lock:
                for box in self._boxes.values():
                    delivery = Delivery(box.hook, str(full["event"]), full.get("metric"))
                    box.pending.append(delivery)
                    box.queue.put((delivery, body))
        except Exception:  # never into the migration
            log.exception("notification %s could not be queued", message.get("event"))

    def _who(self, command: str) -> str:
        return f"hera-migrate {command}" + (f" {self.run_id}" if self.run_id else "")

    def _paths(self, html: Path | None) -> dict[str, str | None]:
        results = self.report_dir / "results.json" if self.report_dir is not None else None
        return {"report": str(html.resolve()) if html is not None else None,
                "results": str(results.resolve()) if results is not None and results.exists() else None}

    def alert(self, level: Level, metric: str, value: Any, threshold: Any, message: str, *, command: str,
              html: Path | None = None, status: str | None = None) -> None:
        """One alert. `value` and `threshold` go out as given (results.json's numbers)."""
        paths = self._paths(html)
        where = f" Report: {paths['report']}" if paths["report"] else ""
        text = f"{_ICONS[level]} {self._who(command)}: {level.upper()} alert: {message}.{where}"
        self.send({"event": "alert", "command": command, "level": level, "alert": metric, "metric": metric,
                   "value": value, "threshold": threshold, "message": message, "status": status, **paths,
                   "text": _slack(text)})

    def alerts(self, results: Mapping[str, Any], html: Path | None, *, command: str) -> None:
        """One message per alert of results.json (critical and warning)."""
        for a in results.get("alerts") or []:
            if a.get("level") in ("critical", "warning"):
                self.alert(a["level"], str(a.get("metric")), a.get("value"), a.get("threshold"),
                           str(a.get("message") or a.get("metric")), command=command, html=html,
                           status=results.get("status"))

    def finished(self, command: str, results: Mapping[str, Any] | None, exit_code: int, html: Path | None,
                 *, status: str | None = None, detail: str | None = None) -> None:
        """The end of `command`: its verdict (from results.json when there is one), exit code and report."""
        status = status or (str(results["status"]) if results and results.get("status") else None)
        verdict = VERDICTS.get(status, status.upper()) if status else None
        level = _level_of(exit_code, results)
        fired = [a for a in (results or {}).get("alerts") or [] if a.get("level") in ("critical", "warning")]
        paths = self._paths(html)
        summary = [f"exit {exit_code}"]
        if results and "integrity_score" in results:
            score = results["integrity_score"]
            summary.append("integrity score undefined" if score is None else f"integrity score {score}")
        if fired:
            summary.append(", ".join(f"{sum(a['level'] == lv for a in fired)} {lv}" for lv in ("critical", "warning")
                                     if any(a["level"] == lv for a in fired)) + " alert(s)")
        if detail:
            summary.append(detail)
        text = (f"{_ICONS[level]} {self._who(command)}: {verdict or 'finished'} "
                f"({'; '.join(summary)})." + (f" Report: {paths['report']}" if paths["report"] else ""))
        self.send({"event": f"{command}_finished", "command": command, "level": level, "status": status,
                   "verdict": verdict, "exit_code": exit_code,
                   "integrity_score": (results or {}).get("integrity_score"),
                   "alerts": [{k: a.get(k) for k in ("level", "metric", "value", "threshold")} for a in fired],
                   "message": detail, **paths, "text": _slack(text)})

    def rollback_finished(self, status: str, exit_code: int, *, html: Path | None = None,
                          results: Mapping[str, Any] | None = None, detail: str | None = None) -> None:
        """The end of `rollback`: `status` is the RollbackResult's (rolled_back | requires_review | failed)."""
        self.finished("rollback", results, exit_code, html, status=status, detail=detail)

    def failed(self, command: str, error: BaseException) -> None:
        """`command` stopped on an error: its exit code (3 for anything not the harness's own) and message."""
        code = error.exit_code if isinstance(error, HarnessError) else EXIT_RUNTIME
        what = error.message if isinstance(error, HarnessError) else (
            "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}")
        paths = self._paths(None)
        self.send({"event": f"{command}_failed", "command": command, "level": "critical", "status": "error",
                   "verdict": None, "exit_code": code, "message": what, **paths,
                   "text": _slack(f"{_ICONS['critical']} {self._who(command)}: FAILED to finish "
                                  f"(exit {code}): {what}")})

    @contextmanager
    def guard(self, command: str) -> Iterator[Notifier]:
        """An error leaving the block is sent as `<command>_failed` and the notifier closed; the error goes on.
        On success the caller sends `finished` and closes, after it printed its verdict."""
        try:
            yield self
        except BaseException as exc:
            self.failed(command, exc)
            self.close()
            raise

    # -- delivery (sender threads) --

    def post(self, hook: Webhook, body: bytes, delivery: Delivery) -> None:
        """POST `body` with retries: connection errors, timeouts, 5xx and 429 are retried, other answers not."""
        for attempt in range(1, self.attempts + 1):
            delivery.attempts = attempt
            retry, delay = self._attempt(hook, body, delivery, attempt)
            if delivery.delivered or not retry or attempt == self.attempts or self.abandoned.wait(delay):
                return

    def _attempt(self, hook: Webhook, body: bytes, delivery: Delivery, attempt: int) -> tuple[bool, float]:
        delay = self.backoff * 2 ** (attempt - 1)
        request = urllib.request.Request(hook.url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": f"hera-migrate/{__version__}"})
        opener = _DIRECT if _loopback(hook.url) else _PROXIED
        try:
            with opener.open(request, timeout=self.timeout) as answer:
                delivery.status, delivery.delivered, delivery.error = answer.status, True, None
                return False, 0.0
        except urllib.error.HTTPError as exc:
            delivery.status, delivery.error = exc.code, f"HTTP {exc.code} {exc.reason}"
            wait = exc.headers.get("Retry-After", "") if exc.headers else ""
            exc.close()
            if exc.code == 429 and wait.strip().isdigit():
                delay = max(delay, min(float(wait), MAX_DELAY))
            return exc.code >= 500 or exc.code == 429, delay
        except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, timeout, bad answer
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            timed_out = isinstance(reason, TimeoutError)
            delivery.status = None
            delivery.error = (f"no answer within {self.timeout:g}s" if timed_out
                              else str(reason).replace(hook.url, hook.shown) or type(reason).__name__)
            return True, delay

    def done(self, box: _Outbox, delivery: Delivery) -> None:
        with self.lock:
            if delivery in box.pending:  # else close gave up on it and counted it already
                box.pending.remove(delivery)
                self.deliveries.append(delivery)

    # -- closing --

    def close(self, timeout: float = CLOSE_TIMEOUT) -> list[Delivery]:
        """Wait up to `timeout` seconds for every queued message, then give up on the rest; write
        notifications.jsonl and warn about what was not delivered. Never raises; returns every outcome."""
        if self._closed:
            return list(self.deliveries)
        self._closed = True
        try:
            boxes = list(self._boxes.values())
            for box in boxes:
                box.queue.put(None)
            deadline = time.monotonic() + timeout
            for box in boxes:
                box.join(max(0.0, deadline - time.monotonic()))
            with self.lock:
                self.abandoned.set()
                given_up = f"given up {timeout:g}s after the command ended"
                for box in boxes:
                    for d in box.pending:  # in flight (a request or a retry's wait) or never started
                        why = f"{d.error}; {given_up}" if d.attempts else f"not sent: {given_up}"
                        self.deliveries.append(replace(d, delivered=False, error=why))
                    box.pending.clear()
            self._write()
            self._summarise()
        except Exception:
            log.exception("closing the notifications failed")
        return list(self.deliveries)

    def _write(self) -> None:
        if self.report_dir is None or not self.deliveries:
            return
        try:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            with (self.report_dir / LOG_FILE).open("a", encoding="utf-8") as out:  # appended: run, validate, ...
                for d in self.deliveries:
                    out.write(json.dumps(d.as_dict(self.run_id)) + "\n")
        except OSError as exc:
            _warn(self.console, f"notifications: could not write {self.report_dir / LOG_FILE}: {exc}")

    def _summarise(self) -> None:
        if not self.deliveries:
            return
        failed = [d for d in self.deliveries if not d.delivered]
        for d in failed:
            what = f"{d.event} {d.metric}" if d.metric else d.event
            _warn(self.console, f"notification not delivered: {what} to {d.webhook.shown} ({d.webhook.source}) "
                                f"after {d.attempts} attempt(s): {d.error}")
        ok = len(self.deliveries) - len(failed)
        where = f" ({self.report_dir / LOG_FILE})" if self.report_dir is not None else ""
        line = f"notifications: {ok} of {len(self.deliveries)} delivered to {len(self._boxes)} webhook(s){where}"
        if failed:  # all delivered: nothing to act on, and the command's last line stays its report's path
            _warn(self.console, line)
        log.info(line)


def _warn(console: Console | None, text: str) -> None:
    """On the command's console when it has one (the operator reads it), else the log."""
    if console is None:
        log.warning(text)
    else:
        console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)

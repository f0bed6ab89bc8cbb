"""The run's throughput time series and its live dashboard.

- `ThroughputRecorder` is a ProgressSink (runner.engine.hooks) that wraps another one (the rich bars, or none)
  and timestamps every `org_advanced` call of the workers. `timeline()` turns those stamps into the
  `performance.timeline` of results.json: points {t, done, rate} — seconds since the migration started, candidates
  handled so far, and candidates per second over the interval that ends at t.
- `LiveReport` re-renders reports/<run_id>/index.html from a background thread every few seconds while
  `hera-migrate run` works (before-snapshot, migration, validation), from an interim results dict of results.json's
  shape plus a `live` block (phase, progress per organisation, the journal's counters). The page reloads itself
  (`<meta http-equiv="refresh">`) and says the run is in progress. Every write is atomic (a temporary file in the
  same directory, then rename), so a browser never reads half a page. When validation has written results.json,
  its index.html (rendered from results.json alone, no refresh) replaces the live page; when the run stops with
  an error, `close()` leaves a last live page without refresh that says so.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from runner.engine.hooks import ProgressSink

REFRESH_SECONDS = 5
RENDER_EVERY_SECONDS = 3.0
JOURNAL_EVERY = 2.0  # seconds between two reads of the journal by the dashboard
MAX_POINTS = 120
MIN_INTERVAL = 0.2
_NICE = (0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same directory and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def bucket_seconds(duration: float, max_points: int = MAX_POINTS, minimum: float = MIN_INTERVAL) -> float:
    """The interval of the timeline: a round number of seconds giving at most `max_points` points."""
    want = max(minimum, duration / max_points)
    return float(next((n for n in _NICE if n >= want), math.ceil(want / 3600) * 3600))


def median_gap(events: list[tuple[float, int]]) -> float:
    """The median time between two progress reports (0 with fewer than three): the engine reports once per
    chunk, so an interval shorter than about two chunks would show the chunk cadence, not the rate."""
    times = sorted(t for t, _ in events)
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2] if len(gaps) >= 2 else 0.0


def timeline_points(events: list[tuple[float, int]], duration: float, *,
                    max_points: int = MAX_POINTS) -> list[dict[str, Any]]:
    """[(seconds since start, candidates handled)] → [{t, done, rate}], one point per interval plus t = 0.
    The interval is a round number of seconds: at least MIN_INTERVAL and twice the median time between progress
    reports, and long enough for at most `max_points` intervals."""
    if duration <= 0:
        return []
    step = bucket_seconds(duration, max_points, max(MIN_INTERVAL, 2 * median_gap(events)))
    n = max(1, math.ceil(duration / step - 1e-9))
    sums = [0] * n
    for t, count in events:
        sums[min(n - 1, max(0, int(t // step)))] += count
    points: list[dict[str, Any]] = [{"t": 0.0, "done": 0, "rate": 0.0}]
    done = 0
    for i, count in enumerate(sums):
        start, end = i * step, min((i + 1) * step, duration)
        done += count
        span = end - start
        points.append({"t": round(end, 3), "done": done, "rate": round(count / span, 3) if span > 0 else 0.0})
    return points


@dataclass
class OrgProgress:
    organization_id: str
    organization_code: str
    total: int = 0
    done: int = 0
    status: str = "running"
    started: float = 0.0
    finished: float | None = None


class ThroughputRecorder:
    """ProgressSink that timestamps progress (thread-safe: the engine calls it from its workers)."""

    def __init__(self, inner: ProgressSink | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self.stopped: float | None = None
        self._events: list[tuple[float, int]] = []
        self._orgs: dict[str, OrgProgress] = {}

    def _now(self) -> float:
        return self._clock() - self.started

    def restart(self) -> None:
        """Start the clock (and the series) again: call it right before the migration starts."""
        with self._lock:
            self.started, self.stopped = self._clock(), None
            self._events.clear()
            self._orgs.clear()

    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        with self._lock:
            self._orgs[org_id] = OrgProgress(org_id, org_code, max(total, 0), 0, "running", self._now())
        if self.inner is not None:
            self.inner.org_started(org_id, org_code, total)

    def org_advanced(self, org_id: str, done: int) -> None:
        with self._lock:
            if done > 0:
                self._events.append((self._now(), done))
                org = self._orgs.get(org_id)
                if org is not None:
                    org.done += done
        if self.inner is not None:
            self.inner.org_advanced(org_id, done)

    def org_finished(self, org_id: str, status: str) -> None:
        with self._lock:
            org = self._orgs.get(org_id)
            if org is not None:
                org.status, org.finished = status, self._now()
        if self.inner is not None:
            self.inner.org_finished(org_id, status)

    def stop(self) -> None:
        with self._lock:
            if self.stopped is None:
                self.stopped = self._now()

    def elapsed(self) -> float:
        with self._lock:
            return self.stopped if self.stopped is not None else self._now()

    def timeline(self, *, max_points: int = MAX_POINTS) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._events)
            duration = self.stopped if self.stopped is not None else self._now()
        return timeline_points(events, duration, max_points=max_points)

    def progress(self) -> dict[str, Any]:
        """{elapsed_seconds, done, total, rate (overall, per second), organizations: [...]}."""
        with self._lock:
            orgs = [OrgProgress(**vars(o)) for o in self._orgs.values()]
            elapsed = self.stopped if self.stopped is not None else self._now()
        done, total = sum(o.done for o in orgs), sum(o.total for o in orgs)
        return {"elapsed_seconds": round(elapsed, 3), "done": done, "total": total,
                "rate": round(done / elapsed, 3) if elapsed > 0 else None,
                "organizations": [{"organization_id": o.organization_id, "organization_code": o.organization_code,
                                   "total": o.total, "done": o.done, "status": o.status} for o in orgs]}


PHASES = {"starting": "starting", "snapshot_before": "taking the before-snapshot", "migrating": "migrating",
          "validating": "validating (after-snapshot, diff, checks)", "failed": "stopped with an error"}


def interim_results(*, run_id: str, spec: dict[str, Any], started: datetime, phase: str,
                    orgs: list[tuple[str, str]], progress: dict[str, Any] | None,
                    timeline: list[dict[str, Any]], phases: dict[str, float], journal: dict[str, Any] | None,
                    refresh: int | None, error: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """A results dict of results.json's shape for a run still in progress (nothing is judged yet), with `live`."""
    now = now or datetime.now(UTC)
    by_org = {o["organization_id"]: o for o in (progress or {}).get("organizations", [])}
    journal_orgs = {o.get("organization_id"): o for o in (journal or {}).get("organizations", [])
                    if isinstance(o, dict)}
    organizations = []
    for org_id, code in orgs:
        p = by_org.get(org_id, {})
        j = journal_orgs.get(org_id, {})
        quarantined = j.get("quarantined")
        organizations.append({
            "organization_id": org_id, "organization_code": code,
            "candidates": p.get("total", j.get("total")), "migrated": j.get("migrated"),
            "aliased": j.get("aliased"), "quarantined": sum(quarantined.values()) if isinstance(quarantined, dict)
            else None, "done": p.get("done", j.get("done")), "integrity_score": None,
            "run_status": p.get("status") or j.get("status") or "pending",
            "chunks": j.get("chunks"), "journal_last_write": j.get("last_chunk_at")})
    done = sum(o["done"] or 0 for o in organizations)
    total = sum(o["candidates"] or 0 for o in organizations)
    rate = (progress or {}).get("rate")
    eta = (total - done) / rate if rate and total > done and phase == "migrating" else None
    return {
        "schema_version": "1.0", "run_id": run_id, "spec": spec, "status": "running", "exit_code": None,
        "started_at": iso(started), "finished_at": None,
        "run": {"status": "failed" if error else "running", "started_at": iso(started), "finished_at": None},
        "integrity_score": None, "score": None, "organizations": organizations, "checks": [], "records": None,
        "system": None,
        "diff": {"available": False, "error": None, "expected": {}, "unexpected": {}, "concurrent": {},
                 "samples": []},
        "snapshot": None,
        "performance": {"records_per_second": rate, "phases": {k: round(v, 3) for k, v in phases.items()},
                        "latency": None, "impact_pct": None, "timeline": timeline},
        "metrics": {}, "alerts": [],
        "live": {"phase": phase, "phase_label": PHASES.get(phase, phase), "updated_at": iso(now),
                 "elapsed_seconds": round((now - started).total_seconds(), 1), "done": done, "total": total,
                 "percent": round(100.0 * done / total, 1) if total else None,
                 "eta_seconds": None if eta is None else round(eta, 1), "refresh_seconds": refresh,
                 "error": error, "journal_status": (journal or {}).get("status")},
    }


class LiveReport:
    """Re-renders `html_path` every `every` seconds from a background thread until closed (a context manager).
    With `enabled` False (or `every` 0) it does nothing at all.

    `journal` (optional) returns the run's journal status as a dict (RunStatus.as_dict()) or raises; it is read
    at each render, errors ignored (before the run created its journal there is none).
    """

    def __init__(self, html_path: Path, *, run_id: str, spec: dict[str, Any], orgs: list[tuple[str, str]],
                 recorder: ThroughputRecorder | None = None, journal: Callable[[], dict[str, Any]] | None = None,
                 every: float = RENDER_EVERY_SECONDS, refresh: int = REFRESH_SECONDS,
                 on_render: Callable[[Path], None] | None = None, enabled: bool = True) -> None:
        self.html_path = html_path
        self.run_id, self.spec, self.orgs = run_id, spec, orgs
        self.recorder = recorder
        self.journal = journal
        self.every, self.refresh = every, refresh
        self.on_render = on_render
        self.enabled = enabled and every > 0
        self.started = datetime.now(UTC)
        self.phase = "starting"
        self.phases: dict[str, float] = {}
        self.renders = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._journal_cache: dict[str, Any] | None = None
        self._journal_at: float | None = None

    def __enter__(self) -> LiveReport:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(error=None if exc is None else f"{type(exc).__name__}: {exc}")

    def start(self) -> None:
        if not self.enabled:
            return
        self.render()
        self._thread = threading.Thread(target=self._loop, name=f"hera-migrate-live-{self.run_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.render()
            except Exception:  # a dashboard problem never stops the migration
                continue

    def set_phase(self, phase: str, phases: dict[str, float] | None = None) -> None:
        """Enter `phase` (see PHASES) and render at once."""
        with self._lock:
            self.phase = phase
            if phases is not None:
                self.phases = dict(phases)
        self.render()

    def _read_journal(self) -> dict[str, Any] | None:
        """The journal's status, read at most every JOURNAL_EVERY seconds (one query, errors ignored)."""
        if self.journal is None:
            return None
        now = time.monotonic()
        if self._journal_at is not None and now - self._journal_at < JOURNAL_EVERY:
            return self._journal_cache
        try:
            self._journal_cache = self.journal()
        except Exception:  # no journal yet, or the database is busy: progress alone will do
            self._journal_cache = None
        self._journal_at = now
        return self._journal_cache

    def results(self, *, error: str | None = None, final: bool = False) -> dict[str, Any]:
        journal = self._read_journal()
        with self._lock:
            phase, phases = ("failed" if error else self.phase), dict(self.phases)
        rec = self.recorder
        return interim_results(run_id=self.run_id, spec=self.spec, started=self.started, phase=phase,
                               orgs=self.orgs, progress=rec.progress() if rec else None,
                               timeline=rec.timeline() if rec else [], phases=phases, journal=journal,
                               refresh=None if final else self.refresh, error=error)

    def render(self, *, error: str | None = None, final: bool = False) -> Path:
        from runner.report.html import render_live_html

        if not self.enabled:
            return self.html_path
        html = render_live_html(self.results(error=error, final=final))
        with self._lock:
            if self._closed and not final:
                return self.html_path
            write_atomic(self.html_path, html)
            self.renders += 1
        if self.on_render is not None:
            self.on_render(self.html_path)
        return self.html_path

    def stop(self) -> None:
        """Stop the background renders (the last page written stays until the final report replaces it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def close(self, *, error: str | None = None) -> None:
        """Stop; with `error`, leave a last page without refresh that says the run stopped."""
        self.stop()
        if error is not None and not self._closed:
            self.render(error=error, final=True)
        with self._lock:
            self._closed = True

"""The run's live dashboard.

- `LiveReport` re-renders reports/<run_id>/index.html from a background thread every few seconds while
  `hera-migrate run` works (before-snapshot, migration, validation), from an interim results dict of results.json's
  shape plus a `live` block (phase, progress per organisation, the journal's counters). The page reloads itself
  (`<meta http-equiv="refresh">`) and says the run is in progress. Every write is atomic (a temporary file in the
  same directory, then rename), so a browser never reads half a page. When validation has written results.json,
  its index.html (rendered from results.json alone, no refresh) replaces the live page; when the run stops with
  an error, `close()` leaves a last live page without refresh that says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from runner.engine.throughput import ThroughputRecorder
from runner.report.files import write_atomic
from runner.report.html import render_live_html

REFRESH_SECONDS = 5
RENDER_EVERY_SECONDS = 3.0
JOURNAL_EVERY = 2.0  # seconds between two reads of the journal by the dashboard


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
            "candidates": p.get("total", j.get("total")), "migrated": j.get("migrated"),  # both tiers
            "aliased": j.get("aliased"), "quarantined": sum(quarantined.values()) if isinstance(quarantined, dict)
            else None, "done": p.get("done", j.get("done")), "integrity_score": None,
            "run_status": p.get("status") or j.get("status") or "pending",
            "chunks": j.get("chunks"), "journal_last_write": j.get("last_chunk_at")})
    done = sum(o["done"] or 0 for o in organizations)
    total = sum(o["candidates"] or 0 for o in organizations)
    rate = (progress or {}).get("rate")
    eta = (total - done) / rate if rate and total > done and phase == "migrating" else None
    return {
        "schema_version": "2.0", "run_id": run_id, "spec": spec, "status": "running", "exit_code": None,
        "started_at": iso(started), "finished_at": None,
        "run": {"status": "failed" if error else "running", "started_at": iso(started), "finished_at": None},
        "integrity_score": None, "score": None, "counts": None, "environment": None, "ledger": None,
        "organizations": organizations, "checks": [], "records": None,
        "system": None,
        "diff": {"available": False, "error": None, "expected": {}, "unexpected": {}, "concurrent": {},
                 "changes": [], "samples": []},
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

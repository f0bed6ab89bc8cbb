"""Rich progress bars for `run` and `rollback`: one bar per organisation and an overall bar with rate and ETA.

    with RichProgress() as progress:
        run_migration(dsn, spec, progress=progress)

Thread-safe (rich.Progress locks internally; our task map is guarded), so the workers call it directly.
"""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class _RateColumn(TransferSpeedColumn):
    """Candidates per second (TransferSpeedColumn formats bytes)."""

    def render(self, task):  # type: ignore[no-untyped-def]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class RichProgress:
    """ProgressSink with per-org bars plus an overall bar (rate, ETA). Use as a context manager."""

    def __init__(self, console: Console | None = None, *, label: str = "migrating", transient: bool = False) -> None:
        self.progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                 _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 transient=transient)
        self.label = label
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        self._overall: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        self._overall = self.progress.add_task(f"[bold]{self.label} (all)", total=0)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        with self._lock:
            self._tasks[org_id] = self.progress.add_task(org_code[:28], total=max(total, 0))
            if self._overall is not None:
                current = self.progress.tasks[self._overall].total or 0
                self.progress.update(self._overall, total=current + max(total, 0))

    def org_advanced(self, org_id: str, done: int) -> None:
        with self._lock:
            task = self._tasks.get(org_id)
        if task is None or done <= 0:
            return
        self.progress.advance(task, done)
        if self._overall is not None:
            self.progress.advance(self._overall, done)

    def chunk_done(self, org_id: str, tier: str, handled: int, quarantined: int, seconds: float) -> None:
        return None  # the bars move with org_advanced

    def org_finished(self, org_id: str, status: str) -> None:
        with self._lock:
            task = self._tasks.get(org_id)
        if task is None:
            return
        t = self.progress.tasks[task]
        self.progress.update(task, description=f"{t.description} [{status}]")
        if t.total is not None and t.completed < t.total and self._overall is not None:
            # incomplete/failed orgs: stop counting their rest in the overall ETA
            self.progress.update(self._overall, total=(self.progress.tasks[self._overall].total or 0)
                                 - (t.total - t.completed))
        self.progress.update(task, total=t.completed)

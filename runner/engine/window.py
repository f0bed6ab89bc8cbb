"""The off-peak window (spec.execution.off_peak_window): when the run may work.

A window opens on each listed weekday at `start` (local time of `timezone`) and closes at `end`; when `end` is not
after `start` it closes the next day (22:00-06:00 wraps midnight, and the Saturday 02:00 belongs to Friday's
window). Outside the window the workers wait between chunks (interruptibly) unless the run was started `now`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from runner.spec.model import WEEKDAYS, OffPeakWindow

MAX_WAIT_STEP = 30.0  # seconds between re-checks while waiting (the clock may jump)


def _opening(window: OffPeakWindow, day: datetime) -> tuple[datetime, datetime] | None:
    """(open, close) of the window that starts on `day`'s date, if that weekday is listed."""
    if WEEKDAYS[day.weekday()] not in window.days:
        return None
    tz = ZoneInfo(window.timezone)
    opens = datetime.combine(day.date(), window.start, tzinfo=tz)
    closes = datetime.combine(day.date(), window.end, tzinfo=tz)
    if closes <= opens:
        closes += timedelta(days=1)
    return opens, closes


def is_open(window: OffPeakWindow | None, at: datetime) -> bool:
    if window is None:
        return True
    local = at.astimezone(ZoneInfo(window.timezone))
    for back in (0, 1):
        span = _opening(window, local - timedelta(days=back))
        if span is not None and span[0] <= local < span[1]:
            return True
    return False


def seconds_until_open(window: OffPeakWindow | None, at: datetime) -> float:
    """0 when open; else the time to the next opening (inf when no weekday is listed)."""
    if window is None or is_open(window, at):
        return 0.0
    local = at.astimezone(ZoneInfo(window.timezone))
    for ahead in range(0, 8):
        span = _opening(window, local + timedelta(days=ahead))
        if span is not None and span[0] > local:
            return (span[0] - local).total_seconds()
    return float("inf")


class Gate:
    """Blocks while the window is closed; `now=True` (run --now) or no window never blocks."""

    def __init__(self, window: OffPeakWindow | None, *, now: bool, stop: threading.Event,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.window = None if now else window
        self.stop = stop
        self.clock = clock or (lambda: datetime.now(UTC))

    def wait(self) -> None:
        while not self.stop.is_set():
            remaining = seconds_until_open(self.window, self.clock())
            if remaining <= 0:
                return
            self.stop.wait(min(remaining, MAX_WAIT_STEP))

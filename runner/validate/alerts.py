"""Alerts from the spec's thresholds (spec.alerts.critical / .warning) over the run's metrics.

Metrics (None when the data to compute it is missing; a metric that is None never fires):
- integrity_score: the run's score (fires when strictly below the threshold);
- error_rate_pct: 100 * (FAILED + REQUIRES_REVIEW) / level-1 transaction records (migrated originals, alias
  rows, quarantined candidates; entities are not candidates) (fires when strictly above);
- performance_impact_pct: v1 p95 latency during the run against the baseline, in percent (strictly above);
- no_progress_minutes: minutes since the run's journal last recorded progress, only while the run is not
  completed; 0 for a completed run (fires at or above the threshold);
- validation_failures_per_hour: offending rows of checks that did not pass (an erroring check counts 1) per hour
  of the run's wall clock, windows shorter than an hour counted as one hour (strictly above).
A metric fires at most once, at its most severe level: a critical alert replaces the warning on the same metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from runner.spec.model import Alerts, CriticalAlerts, WarningAlerts

Level = Literal["critical", "warning"]

# metric name in results.json -> (threshold field of the spec, comparison)
METRICS: dict[str, tuple[str, str]] = {
    "integrity_score": ("integrity_score_below", "below"),
    "error_rate_pct": ("error_rate_above_pct", "above"),
    "performance_impact_pct": ("performance_impact_above_pct", "above"),
    "no_progress_minutes": ("no_progress_minutes", "at_least"),
    "validation_failures_per_hour": ("validation_failures_per_hour_above", "above"),
}
_WORDS = {"below": "below", "above": "above", "at_least": "at or above"}


@dataclass(frozen=True)
class Alert:
    level: Level
    metric: str
    value: float
    threshold: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "metric": self.metric, "value": self.value, "threshold": self.threshold,
                "message": self.message}


def _fires(value: float, threshold: float, comparison: str) -> bool:
    if comparison == "below":
        return value < threshold
    if comparison == "above":
        return value > threshold
    return value >= threshold


def evaluate(alerts: Alerts, metrics: dict[str, float | None]) -> list[Alert]:
    """Every alert that fires, critical ones first, in METRICS order."""
    out: list[Alert] = []
    fired: set[str] = set()
    levels: tuple[tuple[Level, CriticalAlerts | WarningAlerts], ...] = (
        ("critical", alerts.critical), ("warning", alerts.warning))
    for level, bounds in levels:
        for metric, (name, comparison) in METRICS.items():
            value = metrics.get(metric)
            threshold = getattr(bounds, name)
            if value is None or threshold is None or metric in fired:
                continue
            if _fires(float(value), float(threshold), comparison):
                fired.add(metric)
                out.append(Alert(level, metric, float(value), float(threshold),
                                 f"{metric} {float(value):g} is {_WORDS[comparison]} the {level} threshold "
                                 f"{float(threshold):g}"))
    return out


def failures_per_hour(failures: int, window_seconds: float | None) -> float:
    hours = max((window_seconds or 0.0) / 3600.0, 1.0)
    return round(failures / hours, 3)


def impact_pct(baseline_p95: float | None, during_p95: float | None) -> float | None:
    if baseline_p95 is None or during_p95 is None or baseline_p95 <= 0:
        return None
    return round((during_p95 - baseline_p95) / baseline_p95 * 100.0, 3)

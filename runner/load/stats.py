"""Phase statistics from raw samples: requests/s, p50/p95/p99 (from microseconds, not Locust's whole ms), error
rate, contention failures, per task and overall; degradation of one phase against another; a timeline.

Percentiles are nearest-rank on the sorted raw latencies (the value below which the given share of requests
finished), so they are real observed latencies and need no interpolation choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from runner.load.samples import CONTENTION, Sample

OVERALL = "overall"


def percentile(sorted_us: Sequence[int], q: float) -> float | None:
    """Nearest-rank percentile `q` (0 < q <= 100) of ascending latencies, in microseconds."""
    if not sorted_us:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_us)))
    return float(sorted_us[rank - 1])


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 3)


def block(samples: Sequence[Sample], seconds: float) -> dict[str, Any]:
    """Statistics of one set of samples over `seconds` of wall clock. Latencies in ms with µs resolution."""
    lat = sorted(s.latency_us for s in samples)
    failures = [s for s in samples if not s.ok]
    kinds: dict[str, int] = {}
    for s in failures:
        kinds[s.kind or "unknown"] = kinds.get(s.kind or "unknown", 0) + 1
    n = len(samples)
    return {
        "requests": n,
        "failures": len(failures),
        "contention_failures": sum(1 for s in failures if s.kind in CONTENTION),
        "failure_kinds": dict(sorted(kinds.items())),
        "error_rate_pct": round(100.0 * len(failures) / n, 3) if n else None,
        "requests_per_second": round(n / seconds, 2) if seconds > 0 else None,
        "p50_ms": _ms(percentile(lat, 50)),
        "p95_ms": _ms(percentile(lat, 95)),
        "p99_ms": _ms(percentile(lat, 99)),
        "max_ms": _ms(float(lat[-1]) if lat else None),
        "mean_ms": _ms(sum(lat) / n if n else None),
    }


def phase(samples: Sequence[Sample], t0: float, t1: float) -> dict[str, Any]:
    """The overall block of the samples that ended in [t0, t1) plus `tasks` (one block per task name)."""
    inside = [s for s in samples if t0 <= s.t < t1]
    seconds = max(t1 - t0, 0.0)
    out = block(inside, seconds)
    out["seconds"] = round(seconds, 3)
    tasks: dict[str, list[Sample]] = {}
    for s in inside:
        tasks.setdefault(s.task, []).append(s)
    out["tasks"] = {name: block(rows, seconds) for name, rows in sorted(tasks.items())}
    return out


def degradation_pct(baseline: float | None, during: float | None) -> float | None:
    """(during − baseline) / baseline × 100; positive is worse. None when not measurable."""
    if baseline is None or during is None or baseline <= 0:
        return None
    return round((during - baseline) / baseline * 100.0, 2)


def degradation(baseline: dict[str, Any], during: dict[str, Any]) -> dict[str, Any]:
    """Degradation of p50/p95/p99 and the change of throughput, overall and per task."""

    def one(b: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
        return {"p50_pct": degradation_pct(b.get("p50_ms"), d.get("p50_ms")),
                "p95_pct": degradation_pct(b.get("p95_ms"), d.get("p95_ms")),
                "p99_pct": degradation_pct(b.get("p99_ms"), d.get("p99_ms")),
                "throughput_change_pct": degradation_pct(b.get("requests_per_second"),
                                                         d.get("requests_per_second"))}

    out = {OVERALL: one(baseline, during)}
    for name in sorted(set(baseline.get("tasks", {})) | set(during.get("tasks", {}))):
        out[name] = one(baseline.get("tasks", {}).get(name, {}), during.get("tasks", {}).get(name, {}))
    return out


def noise_pct(samples: Sequence[Sample], t0: float, t1: float) -> float | None:
    """p95 of the second half of [t0, t1) against the first half: how much the baseline moves by itself.

    A degradation smaller than this is not distinguishable from the machine's own noise.
    """
    mid = (t0 + t1) / 2
    a = sorted(s.latency_us for s in samples if t0 <= s.t < mid)
    b = sorted(s.latency_us for s in samples if mid <= s.t < t1)
    pa, pb = percentile(a, 95), percentile(b, 95)
    if pa is None or pb is None or pa <= 0:
        return None
    return round(abs(pb - pa) / pa * 100.0, 2)


def timeline(samples: Sequence[Sample], t0: float, t1: float, step: float) -> list[dict[str, Any]]:
    """v1 p95 and requests/s per `step` seconds between t0 and t1 (t relative to t0)."""
    out: list[dict[str, Any]] = []
    if step <= 0 or t1 <= t0:
        return out
    bins: dict[int, list[int]] = {}
    fails: dict[int, int] = {}
    for s in samples:
        if t0 <= s.t < t1:
            k = int((s.t - t0) // step)
            bins.setdefault(k, []).append(s.latency_us)
            if not s.ok:
                fails[k] = fails.get(k, 0) + 1
    for k in range(math.ceil((t1 - t0) / step)):
        lat = sorted(bins.get(k, []))
        out.append({"t": round(k * step, 3), "requests_per_second": round(len(lat) / step, 2),
                    "p50_ms": _ms(percentile(lat, 50)), "p95_ms": _ms(percentile(lat, 95)),
                    "failures": fails.get(k, 0)})
    return out

"""Inline SVG charts for the HTML report: plain SVG markup, no script, no external asset, every text escaped.

Each function takes a part of results.json and returns `Markup` (safe to embed) or an empty Markup when there is
nothing to draw, so templates can write `{{ charts.throughput(r.performance.get("timeline")) }}` unconditionally.

- `score_gauge(score, status)`: the integrity score as a ring.
- `throughput(timeline)`: `performance.timeline` points {t, done, rate}: the migration rate per interval (area,
  left axis) and the cumulative candidates handled (dashed line, right axis) over the run's seconds.
- `latency(latency)`: `performance.latency` baseline vs during, p50/p95/p99 in milliseconds, grouped bars.
- `latency_timeline(latency)`: `performance.latency.during.timeline` points {t, p50_ms, p95_ms}: v1 p95 (and p50)
  per interval over the migration, against the baseline p95 and the throttle's bound when there was one.
- `diff_bars(diff)`: the expected-effect diff per table: expected / unexpected / concurrent, stacked bars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from markupsafe import Markup, escape

COLORS = {"passed": "#2f855a", "warning": "#b7791f", "failed": "#c53030", "running": "#2b6cb0"}
RATE, RATE_FILL, DONE, GRID, AXIS, TEXT = "#2b6cb0", "#bee3f8", "#4a5568", "#e2e8f0", "#a0aec0", "#2d3748"
BASELINE, DURING = "#a0aec0", "#dd6b20"
DIFF_COLORS = {"expected": "#68d391", "unexpected": "#e53e3e", "concurrent": "#a0aec0"}
EMPTY = Markup("")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ value (1 for value ≤ 0)."""
    if value <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * base >= value * (1 - 1e-12):
            return float(step * base)
    return float(10 * base)


def fmt_number(value: float) -> str:
    """Compact axis label: 1.2k, 35, 0.5."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:.3g}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def fmt_seconds(value: float) -> str:
    if value < 60:
        return f"{value:.3g}s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _f(value: float) -> str:
    return f"{value:.1f}"


def _svg(chart_id: str, width: int, height: int, title: str, body: Iterable[str]) -> Markup:
    label = escape(title)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" role="img" '
            f'aria-label="{label}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'font-family="system-ui, sans-serif" font-size="11">')
    return Markup(head + f"<title>{label}</title>" + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, *, anchor: str = "middle", color: str = TEXT, size: int = 11,
          weight: str = "normal") -> str:
    return (f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" fill="{color}" font-size="{size}" '
            f'font-weight="{weight}">{escape(text)}</text>')


def _y_grid(left: float, top: float, plot_w: float, plot_h: float, y_max: float, *, color: str = TEXT,
            right_max: float | None = None, right_color: str = TEXT) -> list[str]:
    """Five horizontal grid lines with the left axis' labels (and the right axis' when `right_max` is given)."""
    body: list[str] = []
    for i in range(5):
        frac = i / 4
        gy = top + plot_h * (1 - frac)
        body.append(f'<line x1="{left}" y1="{_f(gy)}" x2="{left + plot_w}" y2="{_f(gy)}" stroke="{GRID}"/>')
        body.append(_text(left - 6, gy + 4, fmt_number(y_max * frac), anchor="end", color=color))
        if right_max is not None:
            body.append(_text(left + plot_w + 6, gy + 4, fmt_number(right_max * frac), anchor="start",
                              color=right_color))
    return body


def _time_axis(left: float, top: float, plot_w: float, plot_h: float, t_max: float) -> list[str]:
    """The x axis in seconds from 0 to t_max: ticks at a round step, labels, and the axis line."""
    body: list[str] = []
    step = nice_ceiling(t_max / 6)
    for i in range(int(t_max / step + 1e-9) + 1):
        tx = left + plot_w * step * i / t_max
        body.append(f'<line x1="{_f(tx)}" y1="{top + plot_h}" x2="{_f(tx)}" y2="{top + plot_h + 4}" '
                    f'stroke="{AXIS}"/>')
        body.append(_text(tx, top + plot_h + 16, fmt_seconds(step * i)))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    return body


def score_gauge(score: Any, status: str) -> Markup:
    value = _num(score)
    if value is None:
        return EMPTY
    value = min(max(value, 0.0), 100.0)
    size, stroke = 120, 14
    radius = (size - stroke) / 2
    circumference = 2 * math.pi * radius
    filled = circumference * value / 100
    color = COLORS.get(status, COLORS["running"])
    center = size / 2
    body = [
        f'<circle cx="{_f(center)}" cy="{_f(center)}" r="{_f(radius)}" fill="none" stroke="{GRID}" '
        f'stroke-width="{stroke}"/>',
        f'<circle cx="{_f(center)}" cy="{_f(center)}" r="{_f(radius)}" fill="none" stroke="{color}" '
        f'stroke-width="{stroke}" stroke-dasharray="{filled:.2f} {circumference:.2f}" '
        f'transform="rotate(-90 {_f(center)} {_f(center)})"/>',
        _text(center, center + 2, f"{value:.2f}", size=22, weight="bold", color=color),
        _text(center, center + 20, "/ 100", size=11),
    ]
    return _svg("chart-score", size, size, f"integrity score {value:.2f} of 100", body)


def _points(timeline: Any) -> list[tuple[float, float, float]]:
    out = []
    for point in timeline or ():
        if not isinstance(point, dict):
            continue
        t, done, rate = _num(point.get("t")), _num(point.get("done")), _num(point.get("rate"))
        if t is None or done is None or rate is None or t < 0:
            continue
        out.append((t, max(done, 0.0), max(rate, 0.0)))
    out.sort(key=lambda p: p[0])
    return out


def throughput(timeline: Any) -> Markup:
    """Rate per interval (left axis) and cumulative candidates handled (right axis) over time."""
    points = _points(timeline)
    if len(points) < 2 or points[-1][0] <= 0:
        return EMPTY
    width, height = 720, 240
    left, right, top, bottom = 58, 62, 18, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    t_max = points[-1][0]
    rate_max = nice_ceiling(max(p[2] for p in points))
    done_max = nice_ceiling(max(p[1] for p in points))

    def x(t: float) -> float:
        return left + plot_w * t / t_max

    def y_rate(v: float) -> float:
        return top + plot_h * (1 - v / rate_max)

    def y_done(v: float) -> float:
        return top + plot_h * (1 - v / done_max)

    body = _y_grid(left, top, plot_w, plot_h, rate_max, color=RATE, right_max=done_max, right_color=DONE)
    body += _time_axis(left, top, plot_w, plot_h, t_max)
    line = " ".join(f"{_f(x(t))},{_f(y_rate(r))}" for t, _, r in points)
    area = f"{_f(x(points[0][0]))},{_f(top + plot_h)} {line} {_f(x(points[-1][0]))},{_f(top + plot_h)}"
    body.append(f'<polygon points="{area}" fill="{RATE_FILL}" fill-opacity="0.7" class="rate-area"/>')
    body.append(f'<polyline points="{line}" fill="none" stroke="{RATE}" stroke-width="2" class="rate"/>')
    done_line = " ".join(f"{_f(x(t))},{_f(y_done(d))}" for t, d, _ in points)
    body.append(f'<polyline points="{done_line}" fill="none" stroke="{DONE}" stroke-width="1.5" '
                f'stroke-dasharray="5 3" class="done"/>')
    body.append(_text(left, top - 5, "candidates / s (per interval)", anchor="start", color=RATE))
    body.append(_text(left + plot_w, top - 5, "handled so far", anchor="end", color=DONE))
    body.append(_text(left + plot_w / 2, height - 4, "seconds since the migration started"))
    peak = max(p[2] for p in points)
    title = (f"throughput over {fmt_seconds(t_max)}: {int(points[-1][1]):,} candidates handled, "
             f"peak {peak:,.0f}/s")
    return _svg("chart-throughput", width, height, title, body)


def _latency_block(block: Any) -> dict[str, float | None]:
    if not isinstance(block, dict):
        return {}
    return {q: _num(block.get(f"{q}_ms", block.get(q))) for q in ("p50", "p95", "p99")}


def latency(latency_section: Any) -> Markup:
    """Grouped bars: v1 latency percentiles before (baseline) and during the run."""
    if not isinstance(latency_section, dict):
        return EMPTY
    series = [("baseline", BASELINE, _latency_block(latency_section.get("baseline"))),
              ("during", DURING, _latency_block(latency_section.get("during")))]
    values = [v for _, _, block in series for v in block.values() if v is not None]
    if not values:
        return EMPTY
    width, height = 420, 220
    left, right, top, bottom = 48, 12, 24, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = nice_ceiling(max(values))
    body = _y_grid(left, top, plot_w, plot_h, y_max)
    groups = ("p50", "p95", "p99")
    group_w = plot_w / len(groups)
    bar_w = group_w / 3
    for g, quantile in enumerate(groups):
        gx = left + g * group_w
        for s, (name, color, block) in enumerate(series):
            value = block.get(quantile)
            if value is None:
                continue
            bx = gx + bar_w * (0.5 + s)
            bh = plot_h * value / y_max
            body.append(f'<rect x="{_f(bx)}" y="{_f(top + plot_h - bh)}" width="{_f(bar_w * 0.95)}" '
                        f'height="{_f(bh)}" fill="{color}" class="bar-{name}"><title>{escape(name)} '
                        f'{quantile}: {value:.3g} ms</title></rect>')
            body.append(_text(bx + bar_w * 0.475, top + plot_h - bh - 3, f"{value:.3g}", size=10))
        body.append(_text(gx + group_w / 2, top + plot_h + 15, quantile))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    legend_y = height - 8
    for i, (name, color, _) in enumerate(series):
        lx = left + i * 110
        body.append(f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{color}"/>')
        body.append(_text(lx + 14, legend_y, f"{name} (ms)", anchor="start"))
    return _svg("chart-latency", width, height, "v1 latency percentiles, baseline vs during the run (ms)", body)


def _latency_points(timeline: Any) -> list[tuple[float, float | None, float]]:
    out = []
    for point in timeline or ():
        if not isinstance(point, dict):
            continue
        t, p50, p95 = _num(point.get("t")), _num(point.get("p50_ms")), _num(point.get("p95_ms"))
        if t is None or p95 is None or t < 0:
            continue  # an interval without requests has no percentile
        out.append((t, p50, p95))
    out.sort(key=lambda p: p[0])
    return out


def latency_timeline(latency_section: Any) -> Markup:
    """v1 p95 (solid) and p50 (thin) per interval over the migration; baseline p95 and the bound as dashed lines."""
    if not isinstance(latency_section, dict) or not isinstance(latency_section.get("during"), dict):
        return EMPTY
    during = latency_section["during"]
    points = _latency_points(during.get("timeline"))
    if len(points) < 2 or points[-1][0] <= 0:
        return EMPTY
    baseline = _latency_block(latency_section.get("baseline")).get("p95")
    throttle = during.get("throttle") if isinstance(during.get("throttle"), dict) else {}
    limit = _num(throttle.get("limit_p95_ms")) if throttle.get("enabled") else None
    refs = [(v, name, color) for v, name, color in ((baseline, "baseline p95", BASELINE),
                                                    (limit, "throttle bound", COLORS["failed"])) if v is not None]
    width, height = 720, 240
    left, right, top, bottom = 58, 110, 18, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    t_max = points[-1][0]
    y_max = nice_ceiling(max([p[2] for p in points] + [v for v, _, _ in refs]))

    def x(t: float) -> float:
        return left + plot_w * t / t_max

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, y_max) / y_max)

    body = _y_grid(left, top, plot_w, plot_h, y_max)
    body += _time_axis(left, top, plot_w, plot_h, t_max)
    for value, name, color in refs:
        body.append(f'<line x1="{left}" y1="{_f(y(value))}" x2="{left + plot_w}" y2="{_f(y(value))}" '
                    f'stroke="{color}" stroke-dasharray="6 4" class="ref-{name.split()[0]}"/>')
        body.append(_text(left + plot_w + 6, y(value) + 4, f"{name} {value:.3g}", anchor="start", color=color,
                          size=10))
    p50 = " ".join(f"{_f(x(t))},{_f(y(v))}" for t, v, _ in points if v is not None)
    if p50:
        body.append(f'<polyline points="{p50}" fill="none" stroke="{DONE}" stroke-width="1" class="p50"/>')
    p95 = " ".join(f"{_f(x(t))},{_f(y(v))}" for t, _, v in points)
    body.append(f'<polyline points="{p95}" fill="none" stroke="{DURING}" stroke-width="2" class="p95"/>')
    body.append(_text(left, top - 5, "v1 latency, ms (p95 bold, p50 thin)", anchor="start", color=DURING))
    body.append(_text(left + plot_w / 2, height - 4, "seconds since the migration started"))
    over = sum(1 for _, _, v in points if limit is not None and v > limit)
    title = f"v1 latency over {fmt_seconds(t_max)} of migration"
    if limit is not None:
        title += f": p95 above the bound in {over} of {len(points)} intervals"
    return _svg("chart-latency-timeline", width, height, title, body)


def diff_bars(diff: Any) -> Markup:
    """One stacked bar per table: expected, unexpected and concurrent rows."""
    if not isinstance(diff, dict) or not diff.get("available"):
        return EMPTY
    classes = ("expected", "unexpected", "concurrent")
    counts: dict[str, dict[str, float]] = {}
    for cls in classes:
        for table, n in (diff.get(cls) or {}).items():
            value = _num(n)
            if value:
                counts.setdefault(str(table), dict.fromkeys(classes, 0.0))[cls] = value
    if not counts:
        return EMPTY
    tables: Sequence[str] = sorted(counts)
    label_w, bar_max, row_h = 190, 420, 22
    width, height = label_w + bar_max + 90, 28 + row_h * len(tables)
    top_total = max(sum(v.values()) for v in counts.values())
    body: list[str] = []
    for i, cls in enumerate(classes):
        lx = label_w + i * 120
        body.append(f'<rect x="{lx}" y="4" width="10" height="10" fill="{DIFF_COLORS[cls]}"/>')
        body.append(_text(lx + 14, 13, cls, anchor="start"))
    for r, table in enumerate(tables):
        y = 24 + r * row_h
        body.append(_text(label_w - 8, y + 14, table, anchor="end"))
        bx = float(label_w)
        for cls in classes:
            n = counts[table][cls]
            if not n:
                continue
            w = max(2.0, bar_max * n / top_total)
            body.append(f'<rect x="{_f(bx)}" y="{y + 3}" width="{_f(w)}" height="{row_h - 6}" '
                        f'fill="{DIFF_COLORS[cls]}" class="diff-{cls}"><title>{escape(table)}: {int(n):,} '
                        f'{cls}</title></rect>')
            bx += w
        body.append(_text(bx + 6, y + 14, f"{int(sum(counts[table].values())):,}", anchor="start"))
    return _svg("chart-diff", width, height, "expected-effect diff: rows by table and class", body)

"""load.html: the load session as a page — phase table and timelines (inline SVG, no script, no network).

Charts: v1 p95 per time step with the baseline p95 and the throttle's bound; v1 requests/s; the migration's rate
(records per second from the journal's progress); the throttle's chunk size and pause at each decision.
"""

from __future__ import annotations

import html
import itertools
from typing import Any

W, H, PAD = 860, 180, 44


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return html.escape(str(v))


def _chart(title: str, series: list[tuple[str, str, list[tuple[float, float]]]], *, t_max: float,
           hlines: list[tuple[str, str, float]] | None = None, shade: tuple[float, float] | None = None,
           unit: str = "") -> str:
    hlines = hlines or []
    inside = [v for _, _, pts in series for t, v in pts if shade is None or shade[0] <= t <= shade[1]]
    ys = (inside or [v for _, _, pts in series for _, v in pts]) + [v for _, _, v in hlines]
    y_max = max(ys) * 1.1 if ys and max(ys) > 0 else 1.0  # scaled to the shaded window; taller points clipped
    t_max = max(t_max, 1e-9)

    def x(t: float) -> float:
        return PAD + (W - 2 * PAD) * t / t_max

    def y(v: float) -> float:
        return H - PAD / 2 - (H - PAD) * v / y_max

    parts = [f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{PAD}" y="14" class="t">{html.escape(title)}</text>',
             f'<line x1="{PAD}" y1="{y(0):.1f}" x2="{W - PAD}" y2="{y(0):.1f}" class="ax"/>',
             f'<text x="4" y="{y(y_max / 1.1):.1f}" class="l">{y_max / 1.1:,.1f}{unit}</text>',
             f'<text x="4" y="{y(0):.1f}" class="l">0</text>',
             f'<text x="{W - PAD}" y="{H - 2}" class="l" text-anchor="end">{t_max:,.0f} s</text>']
    if shade is not None:
        parts.append(f'<rect x="{x(shade[0]):.1f}" y="{PAD / 2:.1f}" width="{max(x(shade[1]) - x(shade[0]), 0):.1f}" '
                     f'height="{H - PAD:.1f}" class="shade"/>')
    for j, (label, color, v) in enumerate(hlines):
        lx, anchor = (W - PAD - 4, "end") if j % 2 == 0 else (PAD + 4, "start")
        parts.append(f'<line x1="{PAD}" y1="{y(v):.1f}" x2="{W - PAD}" y2="{y(v):.1f}" stroke="{color}" '
                     f'stroke-dasharray="4 3"/><text x="{lx}" y="{y(v) - 3:.1f}" class="l" text-anchor="{anchor}">'
                     f'{html.escape(label)}</text>')
    for i, (label, color, pts) in enumerate(series):
        if pts:
            path = " ".join(f"{x(t):.1f},{y(min(v, y_max)):.1f}" for t, v in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        parts.append(f'<text x="{W - PAD - 110 * i}" y="14" class="l" text-anchor="end" fill="{color}">■ '
                     f'{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rates(points: list[dict[str, Any]]) -> list[tuple[float, float]]:
    out = []
    for a, b in itertools.pairwise(points):
        dt = b["t"] - a["t"]
        if dt > 0:
            out.append((b["t"], max(b["done"] - a["done"], 0) / dt))
    return out


def render_html(data: dict[str, Any]) -> str:
    tl = data.get("timeline") or {}
    v1 = tl.get("v1") or []
    mig = tl.get("migration") or []
    windows = data.get("windows") or {}
    t0 = tl.get("t0") or 0.0
    t_max = max([p["t"] for p in v1] + [p["t"] for p in mig] + [1.0])
    during = windows.get("during")
    shade = (during[0] - t0, during[1] - t0) if during else None
    phases = data.get("phases") or {}
    base = phases.get("baseline") or {}
    throttle = data.get("throttle") or None
    hl = [("baseline p95", "#555", float(base["p95_ms"]))] if base.get("p95_ms") else []
    if throttle and throttle.get("limit_p95_ms"):
        hl.append(("bound", "#c00", float(throttle["limit_p95_ms"])))
    charts = [
        _chart("v1 p95 latency (ms) per step; shaded: migration", [("p95", "#1f5fbf", [
            (p["t"], p["p95_ms"]) for p in v1 if p.get("p95_ms") is not None])], t_max=t_max, hlines=hl, shade=shade),
        _chart("v1 requests/s", [("req/s", "#2a8a2a", [(p["t"], p["requests_per_second"]) for p in v1])],
               t_max=t_max, shade=shade),
        _chart("migration rate (records/s, from the journal)", [("records/s", "#a05a00", _rates(mig))], t_max=t_max,
               shade=shade),
    ]
    if throttle and throttle.get("history"):
        start = (during[0] - t0) if during else 0.0
        hist = throttle["history"]
        chunks = [(start + d["t"], float(d["chunk"])) for d in hist]
        charts.append(_chart("throttle: chunk size", [("chunk", "#7a2aa0", chunks)], t_max=t_max, shade=shade))
        charts.append(_chart("throttle: pause between chunks (s)",
                             [("pause", "#c00", [(start + d["t"], d["pause_s"]) for d in hist])], t_max=t_max,
                             shade=shade))
    rows = []
    for name, blk in phases.items():
        for task, b in [("overall", blk), *sorted((blk.get("tasks") or {}).items())]:
            rows.append(f"<tr><td class=l>{html.escape(name) if task == 'overall' else ''}</td><td class=l>"
                        f"{html.escape(task)}</td><td>{_fmt(b.get('requests'))}</td>"
                        f"<td>{_fmt(b.get('requests_per_second'))}</td><td>{_fmt(b.get('p50_ms'))}</td>"
                        f"<td>{_fmt(b.get('p95_ms'))}</td><td>{_fmt(b.get('p99_ms'))}</td>"
                        f"<td>{_fmt(b.get('error_rate_pct'))}</td><td>{_fmt(b.get('contention_failures'))}</td></tr>")
    deg = (data.get("degradation") or {}).get("overall") or {}
    probes = [(p.get("idle_p95_ms"), p.get("outcome")) for p in (throttle or {}).get("probes") or []]
    th = ("off" if not throttle else
          f"on: bound {_fmt(throttle.get('limit_p95_ms'))} ms (baseline {_fmt(throttle.get('baseline_p95_ms'))} ms "
          f"+ {_fmt(throttle.get('max_v1_p95_degradation_pct'))} %), final chunk {_fmt(throttle.get('final_chunk'))}, "
          f"paused {_fmt(throttle.get('paused_seconds'))} s, decisions {_fmt(throttle.get('decisions'))}; "
          f"probes (idle p95 ms, cause) {_fmt(probes)}, so at the end the throttle aimed at "
          f"{_fmt(throttle.get('final_limit_p95_ms'))} ms")
    s = data.get("settings") or {}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>v1 load {html.escape(str(data.get('run_id') or ''))}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;max-width:960px}}td,th{{padding:2px 8px;text-align:right}}
.l{{text-align:left;font-size:11px}}td.l{{font-size:14px}}table{{border-collapse:collapse}}
tr:nth-child(even){{background:#f4f4f4}}
.t{{font-weight:bold;font-size:12px}}.ax{{stroke:#999}}.shade{{fill:#fd4;opacity:.18}}
svg{{display:block;margin:8px 0}}</style>
</head><body>
<h1>v1 load{(' during ' + html.escape(str(data['run_id']))) if data.get('run_id') else ''}</h1>
<p>{_fmt(s.get('users'))} users × {_fmt(s.get('rate_per_user'))} requests/s (constant throughput), emitted sales
{_fmt(s.get('emit_status'))}. Latencies are percentiles of raw per-request microseconds. v1 p95 degradation during
the migration: <b>{_fmt(deg.get('p95_pct'))} %</b> (baseline noise: {_fmt(data.get('baseline_noise_p95_pct'))} %);
contention failures during the migration: <b>{_fmt(data.get('contention_failures_during'))}</b>; throttle {th};
records migrated during the window: {_fmt(data.get('migrated'))}.</p>
<table><tr><th class=l>phase</th><th class=l>task</th><th>requests</th><th>req/s</th><th>p50 ms</th><th>p95 ms</th>
<th>p99 ms</th><th>errors %</th><th>contention</th></tr>{''.join(rows)}</table>
{''.join(charts)}
<p class=l>Rendered from load.json.</p>
</body></html>
"""

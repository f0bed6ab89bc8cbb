"""`hera-migrate load`: v1 load alone (baseline), before and during a run it starts itself, or alongside a run
another process executes (`--during RUN_ID`).

Phases (wall-clock windows over the raw samples of one load generator that runs throughout, so the users, their
connections and their offered load are identical in every phase):

    warm-up (discarded) | baseline (v1 alone) | snapshot_before (reported) | during (the migration) | stop

`during` is the migrate phase, the one the auto-throttle controls and the one `impact_pct` and the alerts judge.
The before-snapshot's window is reported as its own block. The load stops when the migration ends, before the
validation. Everything measured goes to `<report dir>/load/load.json` and `load.html` (timelines of v1 p95,
v1 requests/s, the migration's progress and the throttle's chunk size and pause) and, through
`validate_run(performance=...)`, into results.json: `performance.latency.baseline/during` carry p50/p95/p99 (ms,
from µs samples), requests, failures, requests/s, the error rate, contention failures and per-task blocks.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from runner import pipeline
from runner.engine import new_run_id
from runner.engine.outcome import RunResult
from runner.errors import HarnessError
from runner.load import stats
from runner.load.evidence import TailSource, task_baselines
from runner.load.generator import LoadGenerator, LoadSettings
from runner.load.samples import Sample
from runner.load.shared import LOAD_DIR, SHARED_BASELINE, read_throttle_summary
from runner.load.throttle import LatencyThrottle, throttle_settings
from runner.metrics import RunMetrics, serve_metrics
from runner.notify import Notifier
from runner.pipeline import RunOptions, RunOutcome
from runner.spec import Spec, load_spec

TERMINAL = {"completed", "incomplete", "failed", "rolled_back", "requires_review"}
V1_METRICS_WINDOW = 10.0  # seconds of v1 samples behind the live hera_migrate_v1_p95_seconds


@dataclass
class LoadPlan:
    settings: LoadSettings = field(default_factory=LoadSettings)
    baseline_seconds: float = 30.0
    warmup_seconds: float = 5.0
    max_during_seconds: float = 3600.0  # the generator stops by itself after this (bounded load)
    throttle: bool = True  # honoured only when the spec's execution.throttle.enabled is true too
    check_interval: float | None = None  # None: the spec's execution.throttle.check_interval_seconds
    timeline_step: float = 1.0
    # Load kept on after the migration ends (reported as phase `after`): separates lasting effects of the data the
    # migration wrote (e.g. reversal twins dated today inside a date-windowed v1 query) from concurrency.
    after_seconds: float = 0.0
    max_pause: float = 5.0  # the throttle's longest pause between two chunks


@dataclass
class Progress:
    """Migration progress over time, polled from the run's journal (t relative to the during start)."""

    points: list[dict[str, Any]] = field(default_factory=list)


class _Poller(threading.Thread):
    def __init__(self, dsn: str, run_id: str, step: float) -> None:
        super().__init__(name="hera-load-progress", daemon=True)
        self.dsn, self.run_id, self.step = dsn, run_id, step
        self.stop = threading.Event()
        self.points: list[tuple[float, int, str]] = []  # (wall time, done, status)

    def sample(self) -> tuple[int, str] | None:
        from runner.engine import run_status

        try:
            st = run_status(self.dsn, self.run_id)
        except Exception:  # the journal does not exist yet, or a transient error: try again next step
            return None
        if not st.organizations:
            return None
        return sum(o.migrated + o.aliased for o in st.organizations), st.status

    def run(self) -> None:
        while not self.stop.is_set():
            got = self.sample()
            if got is not None:
                self.points.append((time.time(), got[0], got[1]))
            self.stop.wait(self.step)


def _window(gen: LoadGenerator, seconds: float) -> tuple[float, float]:
    t0 = time.time()
    end = t0 + seconds
    while time.time() < end and gen.running():
        gen.tail.poll()
        time.sleep(min(0.5, max(end - time.time(), 0.0)))
    return t0, time.time()


def live_p95_ms(gen: LoadGenerator, seconds: float = V1_METRICS_WINDOW) -> float | None:
    """v1 p95 (ms) of the last `seconds`, None without a request in them (the load ended or stalled)."""
    p95, n = TailSource(gen.tail).recent_p95_ms(seconds)
    return p95 if n else None


def start_generator(dsn: str, plan: LoadPlan, workdir: Path, console: Console,
                    metrics: RunMetrics | None = None) -> tuple[LoadGenerator, float, float]:
    """Start the load, wait for the users, discard the warm-up, measure the baseline. Returns (gen, t0, t1).
    `metrics` export the live v1 p95 from now on and the baseline p95 once measured."""
    gen = LoadGenerator(dsn, plan.settings, workdir, max_seconds=plan.warmup_seconds + plan.baseline_seconds
                        + plan.max_during_seconds + 60)
    gen.start()
    try:
        if metrics is not None:
            metrics.watch_v1(lambda: live_p95_ms(gen))
            metrics.set_phase("load_warmup")
        gen.wait_for_samples(plan.settings.users, timeout=120)
        console.print(f"v1 load: {plan.settings.users} users × {plan.settings.rate_per_user:g} req/s; warm-up "
                      f"{plan.warmup_seconds:g}s, then baseline {plan.baseline_seconds:g}s")
        _window(gen, plan.warmup_seconds)
        if metrics is not None:
            metrics.set_phase("load_baseline")
        t0, t1 = _window(gen, plan.baseline_seconds)
        settle = time.monotonic() + 3.0  # samples are flushed every 250 ms: read up to the window's end
        while (gen.tail.last_time() or 0.0) < t1 and time.monotonic() < settle and gen.running():
            time.sleep(0.05)
            gen.tail.poll()
        if not gen.running():
            raise HarnessError(f"the load generator stopped early; see {gen.log_path}:\n{gen.log_tail()}")
        if metrics is not None:
            metrics.set_v1_baseline(stats.phase(gen.tail.all(), t0, t1).get("p95_ms"))
    except BaseException:
        gen.stop()
        raise
    return gen, t0, t1


def write_shared_baseline(workdir: Path, gen: LoadGenerator, baseline: dict[str, Any]) -> Path:
    path = workdir / SHARED_BASELINE
    path.write_text(json.dumps({"p95_ms": baseline.get("p95_ms"), "task_p95_ms": task_baselines(baseline),
                                "samples": str(gen.samples_path.resolve()), "written_at": time.time()}) + "\n",
                    encoding="utf-8")
    return path


def make_throttle(gen: LoadGenerator, baseline: dict[str, Any], spec: Spec,
                  plan: LoadPlan) -> LatencyThrottle | None:
    th = spec.execution.throttle
    p95 = baseline.get("p95_ms")
    if not (plan.throttle and th.enabled) or not p95:
        return None
    interval = plan.check_interval if plan.check_interval is not None else float(th.check_interval_seconds)
    return LatencyThrottle(TailSource(gen.tail), **throttle_settings(spec, float(p95), interval,
                                                                       max_pause=plan.max_pause,
                                                                       task_p95_ms=task_baselines(baseline)))


@dataclass
class Measured:
    """Everything one load session measured; `performance()` is what validate_run takes."""

    settings: LoadSettings
    baseline_window: tuple[float, float]
    windows: dict[str, tuple[float, float]]  # snapshot_before, during
    samples: list[Sample]
    progress: list[tuple[float, int, str]] = field(default_factory=list)
    throttle: dict[str, Any] | None = None
    run_id: str | None = None
    migrated: int | None = None
    timeline_step: float = 1.0

    def block(self, name: str) -> dict[str, Any]:
        t0, t1 = self.baseline_window if name == "baseline" else self.windows[name]
        return stats.phase(self.samples, t0, t1)

    def performance(self) -> dict[str, Any]:
        baseline = self.block("baseline")
        out: dict[str, Any] = {"phases": {"load.baseline": baseline["seconds"]}, "latency": {"baseline": baseline,
                                                                                               "during": None}}
        if "during" in self.windows:
            during = self.block("during")
            during["throttle"] = _throttle_brief(self.throttle)
            during["degradation"] = stats.degradation(baseline, during)
            out["latency"]["during"] = during
            out["phases"]["load.during"] = during["seconds"]
            during["migration_rate_under_load"] = self.rate_under_load()
            # v1 latency over the migration (t: seconds since it started), for the report's charts
            d0, d1 = self.windows["during"]
            during["timeline"] = stats.timeline(self.samples, d0, d1, max(self.timeline_step, (d1 - d0) / 120))
            if "after" in self.windows:  # the same load after the migration ended: what stays slower
                after = self.block("after")
                during["after_migration"] = {k: after[k] for k in ("seconds", "requests", "p50_ms", "p95_ms",
                                                                   "p99_ms", "failures")}
                during["after_migration"]["degradation"] = stats.degradation(baseline, after)
        baseline["noise_p95_pct"] = stats.noise_pct(self.samples, *self.baseline_window)
        out["load_report"] = f"{LOAD_DIR}/load.html"  # relative to results.json; write_outputs puts it there
        return out

    def rate_under_load(self) -> float | None:
        """Records/s the migration made inside the during window (journal progress), i.e. while v1 load ran."""
        if "during" not in self.windows:
            return None
        t0, t1 = self.windows["during"]
        inside = [(t, done) for t, done, _ in self.progress if t0 <= t <= t1 + 0.5]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return round((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]), 2)

    def report(self) -> dict[str, Any]:
        b0 = self.baseline_window[0]
        end = max([t1 for _, t1 in self.windows.values()] + [self.baseline_window[1]])
        blocks = {"baseline": self.block("baseline")} | {k: self.block(k) for k in self.windows}
        d0 = self.windows.get("during", (None, None))[0]
        return {
            "schema": "hera-migrate/load/1",
            "run_id": self.run_id,
            "settings": asdict(self.settings),
            "windows": {"baseline": list(self.baseline_window)} | {k: list(v) for k, v in self.windows.items()},
            "phases": blocks,
            "baseline_noise_p95_pct": stats.noise_pct(self.samples, *self.baseline_window),
            "degradation": stats.degradation(blocks["baseline"], blocks["during"]) if "during" in blocks else None,
            "degradation_after": stats.degradation(blocks["baseline"], blocks["after"]) if "after" in blocks else None,
            "contention_failures_during": blocks["during"]["contention_failures"] if "during" in blocks else None,
            "throttle": self.throttle,
            "migrated": self.migrated,
            "migration_rate_under_load": self.rate_under_load(),
            "timeline": {"t0": b0, "step": self.timeline_step,
                         "v1": stats.timeline(self.samples, b0, end, self.timeline_step),
                         "migration": [{"t": round(t - b0, 3), "done": done, "status": status}
                                       for t, done, status in self.progress],
                         "during_starts_at": None if d0 is None else round(d0 - b0, 3)},
        }


def _throttle_brief(summary: dict[str, Any] | None) -> dict[str, Any]:
    if summary is None:
        return {"enabled": False}
    return {k: v for k, v in summary.items() if k != "history"}


def write_outputs(measured: Measured, workdir: Path) -> dict[str, Path]:
    from runner.load.report import render_html

    workdir.mkdir(parents=True, exist_ok=True)
    data = measured.report()
    path = workdir / "load.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    html = workdir / "load.html"
    html.write_text(render_html(data), encoding="utf-8")
    return {"json": path, "html": html}


def print_summary(measured: Measured, console: Console) -> None:
    blocks = {"baseline": measured.block("baseline")} | {k: measured.block(k) for k in measured.windows}
    rows: list[list[str]] = []
    base = blocks["baseline"]
    for name, blk in blocks.items():
        tasks = [(stats.OVERALL, blk, base)] + [(t, b, base.get("tasks", {}).get(t, {}))
                                                for t, b in blk.get("tasks", {}).items()]
        for task, b, ref in tasks:
            delta = stats.degradation_pct(ref.get("p95_ms"), b.get("p95_ms")) if name != "baseline" else None
            rows.append([name if task == stats.OVERALL else "", task, _f(b.get("requests_per_second")),
                         _f(b.get("p50_ms")), _f(b.get("p95_ms")), _f(b.get("p99_ms")), _f(b.get("error_rate_pct")),
                         str(b.get("contention_failures", 0)), _f(delta)])
    pipeline.print_table(console, "v1 load (latency in ms from µs samples)",
                         ("phase", "task", "req/s", "p50", "p95", "p99", "errors %", "contention", "Δp95 %"), rows)
    noise = stats.noise_pct(measured.samples, *measured.baseline_window)
    if noise is not None:
        console.print(f"baseline noise: p95 of its two halves differ by {noise:g}% (a smaller degradation is not "
                      "distinguishable from the machine's own variation)")


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v)


# --- the three ways to run it ----------------------------------------------------------------------------------


def baseline_only(dsn: str, plan: LoadPlan, workdir: Path, console: Console,
                  metrics: RunMetrics | None = None) -> Measured:
    gen, t0, t1 = start_generator(dsn, plan, workdir, console, metrics)
    gen.stop()
    if metrics is not None:
        metrics.set_phase("done")
    m = Measured(plan.settings, (t0, t1), {}, gen.tail.all(), timeline_step=plan.timeline_step)
    print_summary(m, console)
    return m


class RunLoadHook:
    """Passed to pipeline.run: marks the migrate window, throttles it, stops the load when it ends."""

    def __init__(self, dsn: str, run_id: str, gen: LoadGenerator, plan: LoadPlan, throttle: LatencyThrottle | None,
                 baseline: tuple[float, float], console: Console) -> None:
        self.dsn, self.run_id, self.gen, self.plan, self.throttle = dsn, run_id, gen, plan, throttle
        self.baseline, self.console = baseline, console
        self.snapshot_t0 = time.time()
        self.t0: float | None = None
        self.t1: float | None = None
        self.poller = _Poller(dsn, run_id, plan.timeline_step)
        self.migrated_count: int | None = None
        self.outputs: dict[str, Path] = {}
        self.after: tuple[float, float] | None = None

    def migrating(self) -> None:
        self.t0 = time.time()
        if self.throttle is not None:  # judge v1 from the migration's start (not the before-snapshot's load)
            self.throttle.begin()
        self.poller.start()

    def migrated(self, result: RunResult) -> dict[str, Any]:
        """The migrate phase ended: stop the progress poller and the load, write load.json/html, return the
        performance section for validate_run."""
        self.t1 = time.time()
        self.poller.stop.set()
        self.poller.join(5)
        if self.plan.after_seconds > 0 and self.gen.running():
            self.after = _window(self.gen, self.plan.after_seconds)
        self.gen.stop()
        self.migrated_count = sum(o.migrated + o.aliased for o in result.organizations)
        m = self.measured()
        self.outputs = write_outputs(m, self.gen.workdir)
        print_summary(m, self.console)
        return m.performance()

    def measured(self) -> Measured:
        windows: dict[str, tuple[float, float]] = {}
        if self.t0 is not None:
            windows["snapshot_before"] = (self.snapshot_t0, self.t0)
            end = self.t1 or time.time()
            last = self.gen.tail.last_time()
            if last is not None and last + 2 * self.plan.timeline_step < end:  # the load ended first (max_during)
                end = last
            windows["during"] = (self.t0, end)
            if self.after is not None:
                windows["after"] = self.after
        return Measured(self.plan.settings, self.baseline, windows, self.gen.tail.all(), self.poller.points,
                        None if self.throttle is None else self.throttle.summary(), self.run_id,
                        self.migrated_count, self.plan.timeline_step)


def with_run(dsn: str, spec_path: Path, opts: RunOptions, plan: LoadPlan, console: Console, *,
             progress: bool = False, notifier: Notifier | None = None) -> tuple[RunOutcome, RunLoadHook]:
    """Baseline, then `run` in this process with the same load going on (throttled unless told not to). The live
    metrics (opts.metrics_*) cover the whole session: warm-up, baseline, then the run's own phases. The run's
    alerts go to `notifier` (runner.notify); its caller reports the session's end."""
    spec = load_spec(spec_path)  # fail on a bad spec before any load starts
    run_id = opts.run_id or new_run_id()  # the load's report directory and its hook need the id now
    opts = dataclasses.replace(opts, run_id=run_id)
    out = pipeline.report_dir_for(run_id, opts.report_dir)
    workdir = out / LOAD_DIR
    with serve_metrics(run_id, port=opts.metrics_port, addr=opts.metrics_addr, textfile=opts.metrics_textfile,
                       command="load", say=console.print) as metrics:
        gen, b0, b1 = start_generator(dsn, plan, workdir, console, metrics)
        hook: RunLoadHook | None = None
        try:
            baseline = stats.phase(gen.tail.all(), b0, b1)
            throttle = make_throttle(gen, baseline, spec, plan)
            console.print(f"baseline: v1 p95 {baseline['p95_ms']} ms over {baseline['requests']:,} requests; "
                          + (f"auto-throttle on (p95 bound {throttle.limit_ms:.2f} ms, decided at every chunk; "
                             f"starts at {throttle.start_chunk} candidates, one chunk in flight, "
                             f"{throttle.start_duty:.0%} of the time)"
                             if throttle else "no throttle"))
            hook = RunLoadHook(dsn, run_id, gen, plan, throttle, (b0, b1), console)
            outcome = pipeline.run(dsn, spec_path, opts, console, progress=progress, throttle=throttle, load=hook,
                                   metrics=metrics, notifier=notifier)
        finally:
            if hook is not None:
                hook.poller.stop.set()
            gen.stop()
    return outcome, hook


def alongside(dsn: str, run_id: str, plan: LoadPlan, report_dir: Path, console: Console, *,
              wait_seconds: float = 600.0, metrics: RunMetrics | None = None) -> Measured:
    """`load --during RUN_ID`: baseline, share it (a `run` of RUN_ID in another process throttles against it),
    load while the run's journal says it is running, then stop. The caller validates with the result. `metrics`
    export the v1 latency (the run's process exports its own progress and throttle)."""
    workdir = report_dir / LOAD_DIR
    gen, b0, b1 = start_generator(dsn, plan, workdir, console, metrics)
    poller = _Poller(dsn, run_id, plan.timeline_step)
    try:
        baseline = stats.phase(gen.tail.all(), b0, b1)
        write_shared_baseline(workdir, gen, baseline)
        if metrics is not None:
            metrics.set_phase("load_during")
        console.print(f"baseline: v1 p95 {baseline['p95_ms']} ms; waiting up to {wait_seconds:g}s for run {run_id} "
                      f"(start it now: hera-migrate run SPEC --run-id {run_id})")
        deadline = time.time() + wait_seconds
        first: float | None = None
        finished = False
        while time.time() < deadline and gen.running():
            got = poller.sample()
            if got is not None:  # the journal exists: the run started (it may even be over already)
                first, finished = time.time(), got[1] in TERMINAL
                if finished:
                    first = b1  # it ran entirely between two polls: its window began after our baseline
                break
            time.sleep(0.25)
        if first is None:
            raise HarnessError(f"run {run_id} did not start within {wait_seconds:g}s (no journal of it)")
        last = time.time()
        if not finished:
            poller.start()
            while gen.running():
                time.sleep(plan.timeline_step)
                last = time.time()
                if poller.points and poller.points[-1][2] in TERMINAL:
                    break
            poller.stop.set()
            poller.join(5)
    finally:
        gen.stop()
        (workdir / SHARED_BASELINE).unlink(missing_ok=True)

    done = [d for _, d, _ in poller.points]
    m = Measured(plan.settings, (b0, b1), {"during": (first, last)}, gen.tail.all(), poller.points,
                 read_throttle_summary(report_dir), run_id, (max(done) - min(done)) if done else None,
                 plan.timeline_step)
    write_outputs(m, workdir)
    print_summary(m, console)
    return m


def wait_for_results(path: Path, after: float, timeout: float = 600.0) -> None:
    """The run's own process validates when it ends; re-validate (with the latency) only after it wrote.

    `after` is when the run was first seen running: its results.json is written later than that, whatever delay
    our own polling had (a pre-existing results.json of an earlier run in the same directory is older)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.stat().st_mtime >= after:
            return
        time.sleep(1.0)


def exit_code(code: int, performance: dict[str, Any], console: Console, notifier: Notifier | None = None,
              html: Path | None = None) -> int:
    """The load's exit code: the validation's, or 1 when a v1 request failed because of the migration (also an
    alert to `notifier`: it is not one of results.json's alerts)."""
    during = (performance.get("latency") or {}).get("during") or {}
    contention = int(during.get("contention_failures") or 0)
    if contention:
        console.print(f"[red]{contention} v1 request(s) failed because of the migration "
                      f"({during.get('failure_kinds')}): must be zero")
        if notifier is not None:
            notifier.alert("critical", "v1_contention_failures", contention, 0,
                           f"{contention} v1 request(s) failed because of the migration "
                           f"({during.get('failure_kinds')}); must be zero", command="load", html=html)
        return max(code, 1)
    return code

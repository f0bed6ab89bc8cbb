"""Live Prometheus metrics of `run`, `load` and `rollback` (docs/metrics.md: every metric and a dashboard query set).

- `RunMetrics` holds the metrics (all named `hera_migrate_*`, all labelled `run_id`) in a CollectorRegistry of its
  own, never prometheus_client's process-wide default: several runs (or tests) in one process must not collide.
- `MetricsSink` is the engine's ProgressSink: it updates the metrics from the workers' reports and forwards every
  call to the sink it wraps (the throughput recorder, the progress bars).
- The v1 latency and the auto-throttle's state are read when a scrape happens, from whatever measures them (the
  load generator's samples, a `ThrottleObservable`): the values are current, and nothing is exported before it is
  known (no NaN placeholders). The integrity score likewise appears only once the validation computed one.
- `serve_metrics` exposes a RunMetrics for the duration of a command: HTTP (`--metrics-port`, loopback by default)
  and/or a textfile for node_exporter's textfile collector (`--metrics-textfile`), rewritten atomically every few
  seconds and once more at the end with the final values (a scrape endpoint vanishes with the process; the file
  stays).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner.engine.hooks import ProgressSink
from runner.errors import UsageError

log = logging.getLogger(__name__)

PHASES = ("starting", "load_warmup", "load_baseline", "snapshot_before", "migrating", "load_during", "validating",
          "rolling_back", "done", "failed")
TEXTFILE_SECONDS = 2.0
# Chunk durations: a small chunk commits in tens of milliseconds, a throttled or contended one may take minutes.
CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class ThrottleState:
    """What the auto-throttle (runner.load.throttle) tells the metrics at a scrape."""

    paused: bool  # the migration stands still between chunks now (a pause or a probe is in force)
    batch_size: int  # the chunk size it currently allows
    pause_seconds: float  # the pause it puts between two chunks
    paused_seconds_total: float  # pauses imposed so far
    baseline_p95_ms: float  # v1 p95 before the migration
    limit_p95_ms: float  # the bound it keeps v1 p95 under
    p95_ms: float | None  # v1 p95 of its latest reading (None: no reading yet, or no load left)


@runtime_checkable
class ThrottleObservable(Protocol):
    def metrics_state(self) -> ThrottleState: ...


class _LoadCollector(Collector):
    """v1 latency and throttle state, read at collection time; a value not known is left out, never NaN."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.v1_p95_ms: Callable[[], float | None] | None = None
        self.v1_baseline_ms: float | None = None
        self.throttle: ThrottleObservable | None = None

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=["run_id"])
        family.add_metric([self.run_id], value)
        return family

    def collect(self) -> Iterable[Metric]:
        state = self.throttle.metrics_state() if self.throttle is not None else None
        p95 = state.p95_ms if state is not None else None
        if self.v1_p95_ms is not None:  # the load's own live window is fresher than the throttle's last reading
            try:
                p95 = self.v1_p95_ms()
            except (OSError, ValueError) as exc:  # the sample file is being rotated or removed: skip this scrape
                log.debug("v1 p95 not readable: %s", exc)
                p95 = None
        baseline = self.v1_baseline_ms if self.v1_baseline_ms is not None else (
            state.baseline_p95_ms if state is not None else None)
        if p95 is not None:
            yield self._gauge("hera_migrate_v1_p95_seconds", "v1 p95 latency now (recent window).", p95 / 1000)
        if baseline is not None:
            yield self._gauge("hera_migrate_v1_baseline_p95_seconds", "v1 p95 latency before the migration.",
                              baseline / 1000)
        if state is None:
            return
        yield self._gauge("hera_migrate_throttle_paused", "1 while the throttle holds the migration between chunks.",
                          float(state.paused))
        yield self._gauge("hera_migrate_throttle_pause_seconds", "Pause the throttle puts between two chunks.",
                          state.pause_seconds)
        yield self._gauge("hera_migrate_throttle_batch_size", "Chunk size the throttle allows now.", state.batch_size)
        yield self._gauge("hera_migrate_throttle_limit_p95_seconds", "The v1 p95 bound the throttle keeps to.",
                          state.limit_p95_ms / 1000)
        paused = CounterMetricFamily("hera_migrate_throttle_paused_seconds", "Seconds of pause the throttle imposed.",
                                     labels=["run_id"])
        paused.add_metric([self.run_id], state.paused_seconds_total)
        yield paused


class RunMetrics:
    """The metrics of one command invocation (`run_id` labels every series; "" for a load without a run)."""

    def __init__(self, run_id: str, command: str = "run") -> None:
        self.run_id = run_id
        self.registry = CollectorRegistry()
        self.port: int | None = None  # the HTTP port actually bound (serve_metrics), e.g. when asked for port 0
        r, run, org = self.registry, ["run_id"], ["run_id", "organization_id", "organization_code"]
        Gauge("hera_migrate_run_info", "The command exporting these metrics.", [*run, "command"],
              registry=r).labels(run_id, command).set(1)
        self.phase = Gauge("hera_migrate_phase", "1 for the phase the command is in, 0 for the others.",
                           [*run, "phase"], registry=r)
        self.candidates = Gauge("hera_migrate_candidates", "Candidates (all tiers) of the organisation at its start.",
                                org, registry=r)
        self.org_handled = Counter("hera_migrate_organization_handled", "Candidates of the organisation handled.",
                                   org, registry=r)
        self.handled = Counter("hera_migrate_records_handled", "Candidates handled by committed chunks.",
                               [*run, "tier", "worker"], registry=r)
        self.chunk_rate = Gauge("hera_migrate_chunk_rate", "Records per second of the worker's last chunk.",
                                [*run, "tier", "worker"], registry=r)
        self.chunk_seconds = Histogram("hera_migrate_chunk_duration_seconds", "Duration of committed chunks.",
                                       [*run, "tier"], buckets=CHUNK_BUCKETS, registry=r)
        self.quarantined = Counter("hera_migrate_quarantined", "Candidates quarantined.",
                                   [*run, "organization_id", "tier"], registry=r)
        self.organizations = Gauge("hera_migrate_organizations", "Organisations by status.", [*run, "status"],
                                   registry=r)
        self.integrity_score = Gauge("hera_migrate_integrity_score", "The validation's integrity score (0-100).",
                                     run, registry=r)
        self._load = _LoadCollector(run_id)
        r.register(self._load)
        self.set_phase("starting")

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        for p in PHASES:
            self.phase.labels(self.run_id, p).set(1 if p == phase else 0)

    def set_integrity_score(self, score: float | None) -> None:
        """The score once the validation computed it; None (0 records checked) exports nothing."""
        if score is None:
            self.integrity_score.clear()
        else:
            self.integrity_score.labels(self.run_id).set(float(score))

    def watch_v1(self, p95_ms: Callable[[], float | None]) -> None:
        """Read the live v1 p95 (ms; None when there is no load now) from `p95_ms` at every scrape."""
        self._load.v1_p95_ms = p95_ms

    def set_v1_baseline(self, p95_ms: float | None) -> None:
        self._load.v1_baseline_ms = p95_ms

    def watch_throttle(self, throttle: ThrottleObservable) -> None:
        self._load.throttle = throttle

    def sink(self, inner: ProgressSink | None = None) -> MetricsSink:
        return MetricsSink(self, inner)


class MetricsSink(ProgressSink):
    """Updates RunMetrics from the engine's reports (thread-safe) and forwards every call to `inner`."""

    def __init__(self, metrics: RunMetrics, inner: ProgressSink | None = None) -> None:
        self.metrics = metrics
        self.inner = inner
        self._lock = threading.Lock()
        self._codes: dict[str, str] = {}
        self._status: dict[str, str] = {}
        self._seen: set[str] = set()

    def _set_status(self, org_id: str, status: str) -> None:
        with self._lock:
            self._status[org_id] = status
            counts = {s: 0 for s in self._seen}  # a status no organisation has any more drops to 0, not away
            self._seen.add(status)
            for s in self._status.values():
                counts[s] = counts.get(s, 0) + 1
            for s, n in counts.items():
                self.metrics.organizations.labels(self.metrics.run_id, s).set(n)

    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        with self._lock:
            self._codes[org_id] = org_code
        self.metrics.candidates.labels(self.metrics.run_id, org_id, org_code).set(max(total, 0))
        self.metrics.org_handled.labels(self.metrics.run_id, org_id, org_code)  # exported as 0 from the start
        self._set_status(org_id, "running")
        if self.inner is not None:
            self.inner.org_started(org_id, org_code, total)

    def org_advanced(self, org_id: str, done: int) -> None:
        with self._lock:
            code = self._codes.get(org_id, "")
        if done > 0:
            self.metrics.org_handled.labels(self.metrics.run_id, org_id, code).inc(done)
        if self.inner is not None:
            self.inner.org_advanced(org_id, done)

    def chunk_done(self, org_id: str, tier: str, handled: int, quarantined: int, seconds: float) -> None:
        m, worker = self.metrics, threading.current_thread().name  # the engine names its worker threads
        m.handled.labels(m.run_id, tier, worker).inc(max(handled, 0))
        if seconds > 0:
            m.chunk_rate.labels(m.run_id, tier, worker).set(handled / seconds)
        m.chunk_seconds.labels(m.run_id, tier).observe(max(seconds, 0.0))
        if quarantined > 0:
            m.quarantined.labels(m.run_id, org_id, tier).inc(quarantined)
        if self.inner is not None:
            self.inner.chunk_done(org_id, tier, handled, quarantined, seconds)

    def org_finished(self, org_id: str, status: str) -> None:
        self._set_status(org_id, status)
        if self.inner is not None:
            self.inner.org_finished(org_id, status)


class _TextfileWriter(threading.Thread):
    """Rewrites the textfile every `every` seconds until closed; `close()` writes the final values once more."""

    def __init__(self, registry: CollectorRegistry, path: Path, every: float) -> None:
        super().__init__(name="hera-migrate-metrics-textfile", daemon=True)
        self.registry, self.path, self.every = registry, path, every
        self._done = threading.Event()

    def write(self) -> None:
        write_to_textfile(str(self.path), self.registry)  # a temporary file in the same directory, then rename

    def _try_write(self) -> None:
        try:
            self.write()
        except OSError as exc:  # a full disk must not fail the migration; the next write tries again
            log.warning("metrics textfile %s not written: %s", self.path, exc)

    def run(self) -> None:
        while not self._done.wait(self.every):
            self._try_write()

    def close(self) -> None:
        self._done.set()
        self.join()
        self._try_write()


@contextlib.contextmanager
def serve_metrics(run_id: str, *, port: int | None = None, addr: str = "127.0.0.1", textfile: Path | None = None,
                  command: str = "run", every: float = TEXTFILE_SECONDS,
                  say: Callable[[str], object] | None = None) -> Iterator[RunMetrics]:
    """A RunMetrics exposed on http://ADDR:PORT/metrics (port 0: a free one, told through `say` and `.port`)
    and/or written to `textfile` while the block runs. A block left by an exception ends in phase `failed`."""
    metrics = RunMetrics(run_id, command)
    with contextlib.ExitStack() as stack:
        if port is not None:
            try:
                server, thread = start_http_server(port, addr, registry=metrics.registry)
            except OSError as exc:  # before anything ran: a usage error, like any other bad option
                raise UsageError(f"--metrics-port {port} on {addr}: {exc.strerror or exc}",
                                 hint="choose another port, or 0 for a free one") from None
            stack.callback(thread.join)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)  # last registered, first run: stop serving, then close, then join
            metrics.port = int(server.server_port)
            host = f"[{addr}]" if ":" in addr else addr
            (say or log.info)(f"metrics: http://{host}:{metrics.port}/metrics")
        if textfile is not None:
            writer = _TextfileWriter(metrics.registry, textfile, every)
            try:
                textfile.parent.mkdir(parents=True, exist_ok=True)
                writer.write()  # at once: an unwritable path is refused before anything ran
            except OSError as exc:
                raise UsageError(f"--metrics-textfile {textfile}: {exc.strerror or exc}") from None
            writer.start()
            stack.callback(writer.close)
            (say or log.info)(f"metrics: written to {textfile} every {every:g}s")
        try:
            yield metrics
        except BaseException:
            metrics.set_phase("failed")
            raise

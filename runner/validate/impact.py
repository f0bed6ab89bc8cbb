"""Level 3's performance impact and business continuity: what the migration cost the database host and v1's users.

Performance impact (`performance_impact`) compares two windows of the run, "baseline" (before the migration, the
v1 load alone) and "during" (while it migrates):

- cpu_usage_increase: the host's CPU busy share in each window. Read from the `cpu` line of /proc/stat (jiffies
  since boot: user nice system idle iowait irq softirq steal; guest and guest_nice are already inside user and
  nice); busy = total − idle − iowait. A window's share is its total busy delta over its total delta × 100, so
  every interval weighs by its jiffies. increase_pct_points = during − baseline; increase_pct the relative change
  (null when the baseline was 0 %).
- memory_usage_increase: memory in use = MemTotal − MemAvailable (/proc/meminfo), MiB. Each interval contributes
  the reading that closes it; the mean and the maximum over the window. increase_mib = during mean − baseline mean.
- response_time_impact: v1 p95 latency of the load test's baseline and during phases; increase_pct relative.

The host is this machine, so CPU and memory mean something only when the database server runs here
(`server_is_local`); otherwise the caller passes the reason and both fields are null. Every null field, and every
null value inside a present field, carries a reason in `reasons` (nested ones as "field.key"). Floats are rounded
to 3 decimals.

Business continuity (`business_continuity`) reads the load test's "during" phase (runner/load/stats.py `phase`):

- transaction_success_rate = 100 × (requests − failures) / requests: every failed v1 request counts.
- error_rate = 100 × failures / requests (the complement).
- service_availability = 100 × (requests − unanswered) / requests where unanswered are the failures of kind
  `client_error`: no database answer at all (a lost or refused connection, a pool timeout; the load generator's
  own bugs land there too, so it is a lower bound of availability). Every other kind (app_error, db_error and the
  contention kinds lock_timeout, deadlock, serialization, statement_timeout) is an answer from a service that was
  up, so it lowers the success rate but not the availability.
- v1_availability_pct = transaction_success_rate, the older name kept for older readers.

No request in the window gives null percentages with a reason, never 100 % of nothing.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from psycopg.conninfo import conninfo_to_dict

# The failure kind meaning the service did not answer. Mirrors runner/load/samples.py's CLIENT_ERROR: validate sits
# below load in the import direction (tests/unit/test_import_direction.py), so it cannot import it.
UNANSWERED_KINDS = frozenset({"client_error"})

SOURCE = "/proc of the database host (local server)"
NO_LOAD = "no v1 load ran with this migration"
NO_REQUEST = "the v1 load made no request during the run"
NOT_SAMPLED = "the host was not sampled"
_MIB = 1024.0  # /proc/meminfo is in kB


def server_is_local(dsn: str) -> bool:
    """Whether the server of `dsn` runs on this machine: every host is a unix socket (empty or a path), a loopback
    address or "localhost"; `hostaddr`, when given, is the address that is connected to. libpq's PGHOST/PGHOSTADDR
    stand in for a missing host/hostaddr. A DSN that does not parse is not local."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # psycopg.ProgrammingError and friends: not a DSN we can judge
        return False
    hostaddr = str(params.get("hostaddr") or os.environ.get("PGHOSTADDR", ""))
    host = str(params.get("host") or os.environ.get("PGHOST", ""))
    targets = hostaddr.split(",") if hostaddr else host.split(",")
    return all(_is_local_host(t.strip()) for t in targets)


def _is_local_host(host: str) -> bool:
    if not host or host.startswith("/") or host.startswith("@") or host.lower() == "localhost":
        return True  # "@name" is libpq's abstract unix socket namespace
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WindowStats:
    seconds: float
    samples: int  # intervals attributed to the window
    cpu_busy_pct: float | None
    memory_used_mib_mean: float | None
    memory_used_mib_max: float | None


@dataclass
class _Window:
    seconds: float = 0.0
    samples: int = 0
    busy: int = 0
    total: int = 0
    memory: list[float] = field(default_factory=list)

    def stats(self) -> WindowStats:
        mem = self.memory
        return WindowStats(seconds=self.seconds, samples=self.samples,
                           cpu_busy_pct=100.0 * self.busy / self.total if self.total > 0 else None,
                           memory_used_mib_mean=sum(mem) / len(mem) if mem else None,
                           memory_used_mib_max=max(mem) if mem else None)


def read_cpu(stat: Path) -> tuple[int, int]:
    """(busy, total) jiffies of the `cpu` line of /proc/stat."""
    for line in stat.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            fields = [int(x) for x in parts[1:9]]
            if len(fields) < 4:
                break
            total = sum(fields)
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
            return total - idle, total
    raise ValueError(f"{stat} has no cpu line")


def read_memory_mib(meminfo: Path) -> float | None:
    """MemTotal − MemAvailable in MiB; None when either is missing."""
    values: dict[str, int] = {}
    for line in meminfo.read_text(encoding="ascii").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable") and rest.split():
            values[key] = int(rest.split()[0])
    if "MemTotal" not in values or "MemAvailable" not in values:
        return None
    return (values["MemTotal"] - values["MemAvailable"]) / _MIB


class HostSampler:
    """Samples this machine's CPU and memory from /proc every `interval` seconds in a daemon thread.

    `mark(name)` takes a sample and attributes the following intervals to window `name` (None: to none), so a
    window's boundaries are exact. `sample_now()` takes a sample at once (thread-safe).
    """

    def __init__(self, interval: float = 0.2, proc: Path = Path("/proc"), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.proc = proc
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._window: str | None = None
        self._windows: dict[str, _Window] = {}
        self._last: tuple[float, int, int] | None = None  # (clock, busy, total) of the previous sample
        self.available = True
        self.reason: str | None = None
        try:
            read_cpu(proc / "stat")
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.available = False
            self.reason = f"{proc / 'stat'} is not readable ({why}): host CPU and memory are measured on Linux only"

    def start(self) -> None:
        if not self.available or self._thread is not None:
            return
        self.sample_now()
        self._thread = threading.Thread(target=self._run, name="host-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_now()

    def stop(self) -> None:
        """Stop the thread and close the current window with a last sample; idempotent."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self.sample_now()

    def wait(self, seconds: float) -> None:
        """Let `seconds` of the current window pass while the thread samples (a measurement window, e.g. the
        baseline); returns at once when not sampling or once stopped."""
        if self._thread is not None and seconds > 0:
            self._stop.wait(seconds)

    def __enter__(self) -> HostSampler:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def mark(self, window: str | None) -> None:
        with self._lock:
            self._sample()
            self._window = window
            if window is not None and self.available:
                self._windows.setdefault(window, _Window())

    def sample_now(self) -> None:
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        if not self.available:
            return
        try:
            busy, total = read_cpu(self.proc / "stat")
            memory = read_memory_mib(self.proc / "meminfo")
        except (OSError, ValueError):
            return  # a transient read failure loses one sample, never the thread
        now = self._clock()
        last, self._last = self._last, (now, busy, total)
        if last is None or self._window is None:
            return
        w = self._windows.setdefault(self._window, _Window())
        w.seconds += max(now - last[0], 0.0)
        w.samples += 1
        if total - last[2] > 0 and busy >= last[1]:  # counters that went backwards say nothing
            w.busy += busy - last[1]
            w.total += total - last[2]
        if memory is not None:
            w.memory.append(memory)

    def windows(self) -> dict[str, WindowStats]:
        with self._lock:
            return {name: w.stats() for name, w in self._windows.items()}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _relative(baseline: float | None, during: float | None) -> float | None:
    if baseline is None or during is None or baseline <= 0:
        return None
    return round((during - baseline) / baseline * 100.0, 3)


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _p95(block: Any) -> float | None:
    if not isinstance(block, dict):
        return None
    return _number(block.get("p95_ms", block.get("p95")))


def performance_impact(windows: dict[str, WindowStats] | None, *, reason: str | None,
                       latency: dict[str, Any] | None) -> dict[str, Any]:
    """CPU, memory and v1 p95 of the "during" window against the "baseline" one (see the module docstring)."""
    reasons: dict[str, str] = {}
    host_reason = reason or (None if windows else NOT_SAMPLED)
    base, during = (windows or {}).get("baseline"), (windows or {}).get("during")
    if host_reason is None:
        if base is None or base.samples == 0:
            host_reason = "no baseline window was sampled"
        elif during is None or during.samples == 0:
            host_reason = "no during window was sampled"

    cpu: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    if host_reason is not None:
        reasons["cpu_usage_increase"] = reasons["memory_usage_increase"] = host_reason
    elif base is not None and during is not None:
        b, d = base.cpu_busy_pct, during.cpu_busy_pct
        if b is None or d is None:
            which = "baseline" if b is None else "during"
            reasons["cpu_usage_increase"] = f"the CPU counters did not move in the {which} window"
        else:
            cpu = {"baseline_pct": _r(b), "during_pct": _r(d), "increase_pct_points": _r(d - b),
                   "increase_pct": _relative(b, d)}
            if cpu["increase_pct"] is None:
                reasons["cpu_usage_increase.increase_pct"] = "the baseline CPU use was 0 %"
        bm, dm = base.memory_used_mib_mean, during.memory_used_mib_mean
        if bm is None or dm is None:
            reasons["memory_usage_increase"] = "meminfo has no MemTotal/MemAvailable reading in a window"
        else:
            memory = {"baseline_mib": _r(bm), "during_mib": _r(dm), "during_max_mib": _r(during.memory_used_mib_max),
                      "increase_mib": _r(dm - bm), "increase_pct": _relative(bm, dm)}
            if memory["increase_pct"] is None:
                reasons["memory_usage_increase.increase_pct"] = "the baseline memory use was 0 MiB"

    response: dict[str, Any] | None = None
    if not latency or (latency.get("baseline") is None and latency.get("during") is None):
        reasons["response_time_impact"] = NO_LOAD
    else:
        bp, dp = _p95(latency.get("baseline")), _p95(latency.get("during"))
        if bp is None or dp is None:
            reasons["response_time_impact"] = f"the v1 load measured no {'baseline' if bp is None else 'during'} p95"
        else:
            response = {"baseline_p95_ms": _r(bp), "during_p95_ms": _r(dp), "increase_pct": _relative(bp, dp)}
            if response["increase_pct"] is None:
                reasons["response_time_impact.increase_pct"] = "the baseline p95 was 0 ms"

    return {"cpu_usage_increase": cpu, "memory_usage_increase": memory, "response_time_impact": response,
            "source": SOURCE if cpu is not None or memory is not None else None, "reasons": reasons}


def business_continuity(during: dict[str, Any] | None) -> dict[str, Any]:
    """Availability, success and error rates of v1 during the run (see the module docstring)."""
    out: dict[str, Any] = {"measured": False, "v1_requests": None, "v1_failures": None,
                           "service_availability": None, "transaction_success_rate": None,
                           "error_rate": None, "v1_availability_pct": None, "reason": NO_LOAD}
    requests = _number(during.get("requests")) if isinstance(during, dict) else None
    if during is None or requests is None:
        return out
    failures = int(_number(during.get("failures")) or 0)
    out.update(measured=True, v1_requests=int(requests), v1_failures=failures, reason=None)
    if requests <= 0:
        out["reason"] = NO_REQUEST
        return out
    kinds = during.get("failure_kinds")
    if isinstance(kinds, dict):
        unanswered: int | None = sum(int(_number(n) or 0) for k, n in kinds.items() if k in UNANSWERED_KINDS)
    else:
        unanswered = None if failures else 0  # failures of unknown kinds: availability unknown
    success = _r(100.0 * (requests - failures) / requests)
    available = None if unanswered is None else _r(100.0 * (requests - unanswered) / requests)
    out.update(service_availability=available, transaction_success_rate=success,
               error_rate=_r(100.0 * failures / requests),
               v1_availability_pct=success)
    return out

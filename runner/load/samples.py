"""Raw v1 latency samples: the one file the load generator writes and the runner reads while it runs.

Locust rounds its own percentiles to whole milliseconds, and most v1 calls here take well under 10 ms, so the
load generator keeps every request's latency in microseconds itself and appends it to a CSV file (one line per
request, flushed every few hundred milliseconds). The runner tails that file: the throttle reads the last seconds
of it, the phase statistics read all of it. Nothing here imports psycopg or gevent: the locustfile imports this
module after locust has monkey-patched the process.

Line format (no header): ``t,task,latency_us,ok,kind,sqlstate`` where ``t`` is the wall-clock time the request
ended (``time.time()``, comparable across processes), ``ok`` is 1 or 0, ``kind`` the failure class (empty when
ok) and ``sqlstate`` the PostgreSQL error code when there was one.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Failure classes. CONTENTION kinds are what a concurrent migration can cause (a v1 request waiting on a row lock
# the migration holds, a deadlock with it, a serialization conflict, a statement cancelled by its timeout while
# blocked); they are counted apart from ordinary failures and must stay at zero.
LOCK_TIMEOUT = "lock_timeout"
DEADLOCK = "deadlock"
SERIALIZATION = "serialization"
STATEMENT_TIMEOUT = "statement_timeout"
CONTENTION = (LOCK_TIMEOUT, DEADLOCK, SERIALIZATION, STATEMENT_TIMEOUT)
APP_ERROR = "app_error"  # the RPC answered success=false
DB_ERROR = "db_error"  # any other SQL error
CLIENT_ERROR = "client_error"  # not a database error (a bug in the load generator, a lost connection)

_SQLSTATE_KIND = {"55P03": LOCK_TIMEOUT, "40P01": DEADLOCK, "40001": SERIALIZATION, "57014": STATEMENT_TIMEOUT}


def classify(sqlstate: str | None) -> str:
    """The failure class of a PostgreSQL error code (None: not a database error)."""
    if sqlstate is None:
        return CLIENT_ERROR
    return _SQLSTATE_KIND.get(sqlstate, DB_ERROR)


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # wall-clock end of the request (seconds since the epoch)
    task: str
    latency_us: int
    ok: bool
    kind: str = ""
    sqlstate: str = ""

    def line(self) -> str:
        return f"{self.t:.6f},{self.task},{self.latency_us},{int(self.ok)},{self.kind},{self.sqlstate}\n"

    @staticmethod
    def parse(line: str) -> Sample | None:
        parts = line.rstrip("\n").split(",")
        if len(parts) != 6:
            return None
        try:
            return Sample(float(parts[0]), parts[1], int(parts[2]), parts[3] == "1", parts[4], parts[5])
        except ValueError:
            return None


class SampleWriter:
    """Buffers samples in memory and appends them to the file on `flush()` (called by a periodic greenlet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._buf: list[Sample] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115 - closed in close()

    def add(self, sample: Sample) -> None:
        self._buf.append(sample)

    def flush(self) -> int:
        buf, self._buf = self._buf, []
        if buf:
            self._fh.write("".join(s.line() for s in buf))
            self._fh.flush()
        return len(buf)

    def close(self) -> None:
        self.flush()
        self._fh.close()


def read_samples(path: Path) -> list[Sample]:
    """Every complete sample in the file (a partly written last line is ignored)."""
    if not path.exists():
        return []
    out = []
    with open(path, encoding="ascii") as fh:
        for line in fh:
            if line.endswith("\n"):
                s = Sample.parse(line)
                if s is not None:
                    out.append(s)
    return out


class SampleTail:
    """Reads a sample file incrementally while another process appends to it; thread-safe.

    Keeps the samples of the last `keep_seconds` (by their own timestamps) for the throttle's window, and every
    sample when `keep_all` (the runner computes phase statistics from them afterwards).
    """

    def __init__(self, path: Path, *, keep_seconds: float = 120.0, keep_all: bool = True) -> None:
        self.path = path
        self.keep_seconds = keep_seconds
        self.keep_all = keep_all
        self._pos = 0
        self._partial = ""
        self._recent: deque[Sample] = deque()
        self._all: list[Sample] = []
        self._lock = threading.Lock()

    def poll(self) -> int:
        """Read what was appended since the last call; returns the number of new samples."""
        with self._lock:
            try:
                size = os.path.getsize(self.path)
            except OSError:
                return 0
            if size <= self._pos:
                return 0
            with open(self.path, encoding="ascii") as fh:
                fh.seek(self._pos)
                chunk = fh.read(size - self._pos)
            self._pos = size
            text = self._partial + chunk
            lines = text.split("\n")
            self._partial = lines.pop()  # "" when the chunk ended with a newline
            new = [s for s in (Sample.parse(line) for line in lines if line) if s is not None]
            self._recent.extend(new)
            if self.keep_all:
                self._all.extend(new)
            if self._recent:
                horizon = self._recent[-1].t - self.keep_seconds
                while self._recent and self._recent[0].t < horizon:
                    self._recent.popleft()
            return len(new)

    def since(self, t0: float) -> list[Sample]:
        """Samples that ended at or after `t0` among those kept for the window."""
        with self._lock:
            return [s for s in self._recent if s.t >= t0]

    def all(self) -> list[Sample]:
        with self._lock:
            return list(self._all)

    def last_time(self) -> float | None:
        with self._lock:
            return self._recent[-1].t if self._recent else None


def between(samples: Iterable[Sample], t0: float, t1: float) -> Iterator[Sample]:
    return (s for s in samples if t0 <= s.t < t1)

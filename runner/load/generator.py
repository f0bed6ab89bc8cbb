"""The load generator as a child process: Locust headless on loadtests/locustfile.py, raw samples to a file.

A separate process on purpose: Locust monkey-patches the whole interpreter with gevent, and a load generator
that shares a GIL with the migration it measures would measure itself. The child always has a `--run-time`
(the longest it may run), so it stops by itself even if the runner dies; `stop()` ends it earlier with SIGTERM,
which Locust handles by stopping the users (each finishes its request within `--stop-timeout`) and writing its
summary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner.errors import HarnessError
from runner.load.samples import SampleTail
from runner.resources import data_dir


@dataclass(frozen=True)
class LoadSettings:
    users: int = 10
    spawn_rate: float = 10.0
    rate_per_user: float = 5.0  # requests/s per user (constant throughput)
    org: str | None = None
    emit_status: str = "pending"
    seed: int = 42
    lock_timeout_ms: int = 2000
    statement_timeout_ms: int = 10000


def locustfile() -> Path:
    return data_dir("loadtests") / "locustfile.py"


def locust_conf() -> Path:
    return data_dir("loadtests") / "locust.conf"


class LoadGenerator:
    """Start with `start()`, read samples through `tail`, end with `stop()` (or let `max_seconds` end it)."""

    def __init__(self, dsn: str, settings: LoadSettings, workdir: Path, *, max_seconds: float) -> None:
        self.dsn = dsn
        self.settings = settings
        self.workdir = workdir.resolve()  # the child runs in it: every path handed over must be absolute
        self.max_seconds = max_seconds
        self.samples_path = self.workdir / "v1-samples.csv"
        self.log_path = self.workdir / "locust.log"
        self.tail = SampleTail(self.samples_path, keep_seconds=300.0)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    def command(self) -> list[str]:
        s = self.settings
        cmd = [sys.executable, "-m", "locust", "-f", str(locustfile()), "--config", str(locust_conf()),
               "--headless", "--only-summary", "-u", str(s.users), "-r", str(s.spawn_rate),
               "--run-time", f"{max(1, int(self.max_seconds))}s", "--stop-timeout", "5",
               "--csv", str(self.workdir / "locust"),
               "--hera-samples", str(self.samples_path), "--hera-rate", str(s.rate_per_user),
               "--hera-emit-status", s.emit_status, "--hera-seed", str(s.seed),
               "--hera-lock-timeout-ms", str(s.lock_timeout_ms),
               "--hera-statement-timeout-ms", str(s.statement_timeout_ms)]
        if s.org:
            cmd += ["--hera-org", s.org]
        return cmd

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.samples_path.exists():
            self.samples_path.unlink()
        env = {**os.environ, "HERA_DSN": self.dsn}  # the DSN travels in the environment, not on the command line
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=str(self.workdir), start_new_session=True)
        self.started_at = time.time()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_samples(self, count: int, timeout: float) -> None:
        """Block until `count` samples arrived (the users are up and their connections open)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tail.poll()
            if len(self.tail.all()) >= count:
                return
            if not self.running():
                break
            time.sleep(0.1)
        raise HarnessError(f"the v1 load generator produced {len(self.tail.all())} of {count} requests in "
                           f"{timeout:.0f}s; see {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """End the child (SIGTERM, then SIGKILL after `timeout`); read the last samples. Returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.tail.poll()
        return self.proc.returncode

    def __enter__(self) -> LoadGenerator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

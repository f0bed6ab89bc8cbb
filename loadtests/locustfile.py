"""Live v1 traffic on a HERA database: a Locust User driving HERA's v1 RPCs through psycopg 3.

Run by `hera-migrate load` (which starts it as a subprocess, so the load generator never shares a Python process
or a GIL with the migration it measures), or by hand:

    locust -f loadtests/locustfile.py --config loadtests/locust.conf --hera-dsn "$HERA_DSN" \
           --hera-samples /tmp/v1-samples.csv -u 10 -t 60s

Mix per simulated user (weights below): emit a POS sale with balanced GL lines (hera_txn_emit_v1), read a
transaction (hera_txn_read_v1, named arguments), list recent transactions (hera_txn_query_v1), a one-month trial
balance over v_universal_transaction_lines_drcr, and reverse or void one of the user's own earlier sales
(hera_txn_reverse_v1 with an actor / hera_txn_void_v1). The operations live in runner/load/v1.py.

Every request fires Locust's request event (so Locust's own stats and CSVs work) and is also appended, in
microseconds, to the `--hera-samples` file: Locust's percentiles are whole milliseconds and most of these calls
take a few.
"""

# ruff: noqa: I001 - the import order is the point: locust (gevent's monkey-patching) strictly before psycopg.
from __future__ import annotations

import locust  # noqa: F401 - first: gevent monkey-patches the process here
from locust import User, events, task

import gevent
import random
import time
from pathlib import Path
from typing import Any

import psycopg  # after gevent's monkey-patching: psycopg >= 3.1.14 then waits cooperatively
from psycopg_pool import ConnectionPool

from runner.load import samples as smp
from runner.load import v1

WEIGHTS = {v1.EMIT: 30, v1.READ: 38, v1.LIST: 20, v1.TRIAL_BALANCE: 2, v1.REVERSE_VOID: 10}
FLUSH_SECONDS = 0.25

_state: dict[str, Any] = {"writer": None, "ctx": None, "flusher": None, "users": 0}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--hera-dsn", env_var="HERA_DSN", default="", help="PostgreSQL DSN of the HERA database")
    parser.add_argument("--hera-org", default="", help="organisation id (default: the one with most transactions)")
    parser.add_argument("--hera-samples", default="", help="append raw per-request latencies (µs) to this CSV file")
    parser.add_argument("--hera-rate", type=float, default=5.0, help="requests per second per user (constant "
                        "throughput: the offered load is the same whatever the latency)")
    parser.add_argument("--hera-emit-status", default="pending", choices=["pending", "posted"],
                        help="status of emitted sales (posted ones are migration candidates)")
    parser.add_argument("--hera-lock-timeout-ms", type=int, default=2000, help="v1 session lock_timeout")
    parser.add_argument("--hera-statement-timeout-ms", type=int, default=10000, help="v1 session statement_timeout")
    parser.add_argument("--hera-pool-size", type=int, default=2, help="connections per simulated user")
    parser.add_argument("--hera-seed", type=int, default=42, help="seed of the users' random streams")


def _opts(environment: Any) -> Any:
    return environment.parsed_options


def _conninfo(options: Any) -> str:
    if not options.hera_dsn:
        raise RuntimeError("--hera-dsn (or HERA_DSN) is required")
    return str(options.hera_dsn)


def _flush_forever(writer: smp.SampleWriter) -> None:
    while True:
        gevent.sleep(FLUSH_SECONDS)
        writer.flush()


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    options = _opts(environment)
    with psycopg.connect(_conninfo(options), autocommit=True) as conn:
        org = options.hera_org or v1.pick_org(conn)
        _state["ctx"] = v1.load_context(conn, org, seed=options.hera_seed)
    if options.hera_samples:
        writer = smp.SampleWriter(Path(options.hera_samples))
        _state["writer"] = writer
        _state["flusher"] = gevent.spawn(_flush_forever, writer)


def _stop_writer() -> None:
    if _state["flusher"] is not None:
        _state["flusher"].kill()
        _state["flusher"] = None
    if _state["writer"] is not None:
        _state["writer"].close()
        _state["writer"] = None


@events.test_stop.add_listener
def _test_stop(environment: Any, **_: Any) -> None:
    if _state["writer"] is not None:
        _state["writer"].flush()


@events.quitting.add_listener
def _quitting(environment: Any, **_: Any) -> None:
    _stop_writer()


class V1User(User):
    """One HERA user of the v1 API: its own small connection pool, its own random stream and its own sales."""

    def on_start(self) -> None:
        options = _opts(self.environment)
        while _state["ctx"] is None:  # test_start runs before users spawn; this only guards a slow start
            gevent.sleep(0.05)
        _state["users"] += 1
        n = _state["users"]
        self.client_v1 = v1.V1Client(_state["ctx"], random.Random(options.hera_seed * 1000 + n),
                                     emit_status=options.hera_emit_status)
        session = (f"-c lock_timeout={int(options.hera_lock_timeout_ms)} "
                   f"-c statement_timeout={int(options.hera_statement_timeout_ms)} "
                   "-c application_name=hera-v1-load")
        self.pool = ConnectionPool(_conninfo(options), min_size=1, max_size=max(1, options.hera_pool_size),
                                   kwargs={"autocommit": True, "options": session}, open=True)
        # Independent users, not a chorus. Locust's constant_throughput counts every user's period from the user's
        # creation, and users spawned together then send their requests in the same millisecond forever (measured:
        # all 10 requests within 1 ms every 200 ms, a 0.6 ms read taking 6-7 ms behind its own burst on 2 cores:
        # the p95 read the burst's queue). Each user keeps its own seeded phase of the period instead.
        self._period = 1.0 / options.hera_rate
        gevent.sleep(random.Random(f"phase:{options.hera_seed}:{n}").uniform(0, self._period))
        self._next = time.perf_counter()

    def on_stop(self) -> None:
        self.pool.close()

    def wait_time(self) -> float:
        """Constant throughput on the user's own phase: one request per period whatever its latency (a late user
        starts its next request at once, without a catch-up burst)."""
        now = time.perf_counter()
        self._next = max(self._next + self._period, now)
        return self._next - now

    def _do(self, name: str) -> None:
        exc: Exception | None = None
        kind, sqlstate = "", ""
        t0 = time.perf_counter_ns()
        try:
            with self.pool.connection() as conn:
                self.client_v1.call(conn, name)
        except v1.AppError as e:
            exc, kind = e, smp.APP_ERROR
        except psycopg.Error as e:
            exc, sqlstate = e, e.sqlstate or ""
            kind = smp.classify(e.sqlstate)
        except Exception as e:  # a failed request must never kill the user: count it
            exc, kind = e, smp.CLIENT_ERROR
        elapsed_us = (time.perf_counter_ns() - t0) // 1000
        if _state["writer"] is not None:
            _state["writer"].add(smp.Sample(time.time(), name, int(elapsed_us), exc is None, kind, sqlstate))
        self.environment.events.request.fire(request_type="SQL", name=name, response_time=elapsed_us / 1000.0,
                                             response_length=0, exception=exc, context={})

    @task(WEIGHTS[v1.EMIT])
    def emit_sale(self) -> None:
        self._do(v1.EMIT)

    @task(WEIGHTS[v1.READ])
    def read_txn(self) -> None:
        self._do(v1.READ)

    @task(WEIGHTS[v1.LIST])
    def list_recent(self) -> None:
        self._do(v1.LIST)

    @task(WEIGHTS[v1.TRIAL_BALANCE])
    def trial_balance(self) -> None:
        self._do(v1.TRIAL_BALANCE)

    @task(WEIGHTS[v1.REVERSE_VOID])
    def reverse_void(self) -> None:
        self._do(v1.REVERSE_VOID)

"""One worker session of a run on one organisation: its connection, its claim, its liveness lock, and the migration
transaction with its retries.

- The claim on the organisation is the shared side of the organisation's advisory lock: every worker of every
  runner process shares the organisation (their chunks claim disjoint candidates with FOR UPDATE SKIP LOCKED), while
  a rollback, which takes the exclusive side, can neither start under them nor let them start under it.
- The liveness lock is a session-level advisory lock on the worker's own key, held for as long as the session
  lives. `status` and the other runners tell a live worker from a dead one by trying that lock: PostgreSQL releases
  it the moment the worker's backend ends (a killed process on the same host at once; a vanished host after the TCP
  keepalives below give up, ~25 s — the lease of a dead runner's work, whose row locks go the same way).
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from runner.db.connect import connect
from runner.engine import checkpoints
from runner.engine.context import (
    ADVISORY_LOCK_CLASS,
    LOCK_TIMEOUT,
    STATEMENT_TIMEOUT,
    WORKER_LOCK_CLASS,
    Sql,
    advisory_key,
)
from runner.engine.retry import RetriesExhausted, backoff_seconds, is_transient, pause
from runner.errors import DatabaseError
from runner.spec.model import Retries

# TCP keepalives: a runner whose host vanished stops holding its claims and row locks after about
# idle + interval * count seconds (its chunk in flight rolls back; the other runners take its candidates).
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
_numbers = itertools.count(1)
_numbers_lock = threading.Lock()


@dataclass(frozen=True)
class WorkerId:
    """host:pid:n — unique among the live workers of every runner process."""

    host: str
    pid: int
    n: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}:{self.n}"

    @property
    def key(self) -> int:
        return advisory_key(self.name)

    @classmethod
    def new(cls) -> WorkerId:
        with _numbers_lock:
            n = next(_numbers)
        return cls(socket.gethostname(), os.getpid(), n)


def side_by_side(work: Callable[[int], None], n: int) -> None:
    """work(0) ... work(n - 1) on n threads named after the calling one plus ".i" (the metrics' worker label);
    returns when all of them have."""
    threads = [threading.Thread(target=work, args=(i,), name=f"{threading.current_thread().name}.{i}", daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class OrgBusy(Exception):
    def __init__(self, org_id: str) -> None:
        super().__init__(f"organisation {org_id} is claimed by another session (a rollback, or a run while this "
                         "is a rollback)")


class OrgSession:
    """A worker's connection to one organisation (opened and claimed on first use, reopened after a loss)."""

    def __init__(self, dsn: str, sql: Sql, org_id: str, retries: Retries, stop: threading.Event,
                 on_retry: Callable[[], None] | None = None) -> None:
        self.dsn, self.sql, self.org_id, self.retries, self.stop = dsn, sql, org_id, retries, stop
        self.on_retry = on_retry or (lambda: None)
        self.worker = WorkerId.new()
        self.conn: psycopg.Connection[Any] | None = None
        self.chunks = 0  # chunks this session committed (a worker that did none leaves no journal row)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.dsn, **KEEPALIVES)
        with conn.transaction():
            row = self.sql.execute(conn, "run/org_claim", lock_class=ADVISORY_LOCK_CLASS,
                                   lock_key=advisory_key(self.org_id), worker_class=WORKER_LOCK_CLASS,
                                   worker_key=self.worker.key).fetchone()
        if not row or not row[0]:
            conn.close()
            raise OrgBusy(self.org_id)
        return conn

    def db(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                self.conn.close()
            self.conn = self._connect()
        return self.conn

    def close(self, last: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        """`last`: a final write (the worker's row marked done), best effort; closing releases every lock."""
        if self.conn is None or self.conn.closed:
            return
        try:
            if not self.conn.broken:
                self.conn.rollback()
                if last is not None:
                    with self.conn.transaction():
                        last(self.conn)
        except psycopg.Error:
            pass  # the session ends anyway, and with it the claim and the liveness lock
        finally:
            self.conn.close()

    def transaction(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run `work` in one migration transaction; transient failures roll back, back off and retry."""
        attempt = 0
        while True:
            try:
                conn = self.db()
            except DatabaseError:  # the server is away (a restart, a failover): reconnecting is retried like
                attempt += 1  # a lost connection is, with the same back-off
                self.on_retry()
                if attempt > self.retries.max:
                    raise
                pause(backoff_seconds(self.retries, attempt), self.stop)
                continue
            try:
                with conn.transaction():
                    checkpoints.gate(conn, self.sql, self.org_id)
                    self.sql.execute(conn, "run/session", lock_timeout=LOCK_TIMEOUT,
                                     statement_timeout=STATEMENT_TIMEOUT)
                    return work(conn)
            except psycopg.Error as exc:
                if not is_transient(exc, conn):
                    raise
                attempt += 1
                self.on_retry()
                if attempt > self.retries.max:
                    raise RetriesExhausted(attempt, exc) from exc
                pause(backoff_seconds(self.retries, attempt), self.stop)

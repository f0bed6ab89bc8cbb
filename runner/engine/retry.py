"""Transient failures and back-off (spec.execution.retries).

Transient: deadlock (40P01), serialization failure (40001), lock not available (55P03, lock_timeout), query
canceled (57014, statement_timeout), admin shutdown (57P01) and any lost connection (OperationalError without a
SQLSTATE, or a connection that is closed/broken). The chunk is rolled back and retried after a jittered,
exponentially growing pause; everything else is not transient (a candidate failing that way is quarantined).
"""

from __future__ import annotations

import random
import threading
from typing import Any

import psycopg

from runner.spec.model import Retries

TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03", "57014", "57P01", "57P02", "57P03", "08000", "08003",
                                 "08006", "08001", "08004"})


def is_transient(exc: BaseException, conn: psycopg.Connection[Any] | None = None) -> bool:
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate in TRANSIENT_SQLSTATES:
        return True
    if conn is not None and (conn.closed or conn.broken):
        return True
    return isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None


def backoff_seconds(retries: Retries, attempt: int, rng: random.Random | None = None) -> float:
    """Pause before retry `attempt` (1-based): backoff * 2^(attempt-1), capped, with 50-100 % jitter."""
    base = min(float(retries.max_backoff_seconds), float(retries.backoff_seconds) * 2.0 ** max(attempt - 1, 0))
    jitter: float = (rng or random.Random()).random()
    return base * (0.5 + 0.5 * jitter)


class RetriesExhausted(Exception):
    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {str(last).strip()}")
        self.attempts = attempts
        self.last = last


def pause(seconds: float, stop: threading.Event | None = None) -> None:
    """Sleep, waking early when `stop` is set (interruptible waits; never used as synchronisation)."""
    (stop or threading.Event()).wait(seconds)

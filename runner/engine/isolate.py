"""Quarantine without losing the chunk: run a batch statement in a savepoint; when it fails for a non-transient
reason, roll back to the savepoint and bisect until the failing candidates stand alone.

A batch that fails a post-write check (not an SQL error) raises `Rejected` naming the culprits: the savepoint is
rolled back, those are quarantined with the check's reason, and the rest is attempted again. Transient errors are
re-raised untouched: the caller retries the whole chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from runner.engine.retry import is_transient

T = TypeVar("T")
R = TypeVar("R")


class Rejected(Exception):
    """Raised by a batch attempt after its writes: `reasons` maps candidate id -> reason (the rest were fine)."""

    def __init__(self, reasons: dict[str, str], message: str | None = None) -> None:
        super().__init__(f"{len(reasons)} candidate(s) failed a check")
        self.reasons = reasons
        self.message = message


def error_reason(exc: psycopg.Error) -> str:
    """A short reason from the exception class: UniqueViolation -> unique_violation."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    parts = [diag.message_primary or str(exc).strip().splitlines()[0]]
    if diag.message_detail:
        parts.append(diag.message_detail)
    return " | ".join(parts)


def isolate(conn: psycopg.Connection[Any], items: list[T], key: Callable[[T], str],
            attempt: Callable[[list[T]], list[R]],
            fail: Callable[[T, str, str | None, str | None], None]) -> list[R]:
    """Results of `attempt` over every item that succeeds; `fail(item, reason, sqlstate, message)` for the others.

    Each attempt runs in its own savepoint of the caller's transaction.
    """
    out: list[R] = []
    stack: list[list[T]] = [items]
    while stack:
        batch = stack.pop()
        if not batch:
            continue
        try:
            with conn.transaction():
                out.extend(attempt(batch))
        except Rejected as rej:
            rest = [item for item in batch if key(item) not in rej.reasons]
            if len(rest) == len(batch):
                raise RuntimeError("a check rejected candidates outside its batch") from rej
            for item in batch:
                if key(item) in rej.reasons:
                    fail(item, rej.reasons[key(item)], None, rej.message)
            stack.append(rest)
        except psycopg.Error as exc:
            if is_transient(exc, conn):
                raise
            if len(batch) == 1:
                fail(batch[0], error_reason(exc), exc.sqlstate, error_message(exc))
                continue
            mid = len(batch) // 2
            stack.append(batch[mid:])
            stack.append(batch[:mid])
    return out

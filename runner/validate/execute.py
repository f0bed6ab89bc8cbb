"""Running checks on PostgreSQL: read-only, time-boxed, org-scoped, and never fatal.

All checks of a validation run inside ONE `REPEATABLE READ READ ONLY` transaction, so every check sees the same
picture of the database and none can write. Each check runs in its own savepoint with its own
`statement_timeout` (`SET LOCAL` semantics through set_config(..., true)); a check whose SQL fails (syntax,
missing column, timeout, a custom check returning the wrong columns) is rolled back to its savepoint and reported
with status "error", and the next check runs normally. Rows stream through server-side cursors, so a check that
flags a million rows does not hold them in memory: the wrapper (outcome.tally) keeps counts and 10 samples.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg

from runner.compile import Statement, render
from runner.compile.custom import custom_statement
from runner.errors import DatabaseError
from runner.spec.model import CheckDef
from runner.validate.outcome import OrgCheck, errored, tally

BUILTIN_TIMEOUT_SECONDS = 300.0
# The built-in checks filter on metadata.migration keys, which have no statistics: PostgreSQL estimates one row and
# would join the run's headers to each other by nested loops (quadratic). Every built-in check is set-based over
# the whole run, so header-to-header joins are hash joins (nested loops off); lines and entities are still read
# per row through index lookups, written as LATERAL subqueries (which stay nested loops). Custom checks run with
# the server's defaults.
ITERSIZE = 2_000
REQUIRED_COLUMNS = ("organization_id", "record_id", "message")


def _timeout_ms(seconds: float | None) -> str:
    return str(max(1, round((seconds or BUILTIN_TIMEOUT_SECONDS) * 1000)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        message = (diag.message_primary or str(exc)).strip()
        return f"{diag.sqlstate or '?'} {message}"
    return f"{type(exc).__name__}: {exc}"


def settings_statement(timeout_ms: str, nestloop: str) -> Statement:
    return render("validate/session", timeout_ms=timeout_ms, nestloop=nestloop)


def begin_statement() -> Statement:
    return render("session/begin")


class Session:
    """One read-only transaction on `conn` holding every check of a validation.

    `own_transaction=False` runs the checks as savepoints inside the caller's open transaction instead (tests
    change data, check it and roll everything back); the caller then owns isolation and the final rollback.
    """

    def __init__(self, conn: psycopg.Connection[Any], *, own_transaction: bool = True) -> None:
        self.conn = conn
        self.own = own_transaction
        self._cursors = 0

    def _settings(self, timeout_ms: str, nestloop: str) -> None:
        stmt = settings_statement(timeout_ms, nestloop)
        self.conn.execute(stmt.text, stmt.params)

    def __enter__(self) -> Session:
        if not self.own:
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                raise DatabaseError("own_transaction=False needs a connection inside an open transaction")
            return self
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise DatabaseError("validation needs a connection outside any transaction")
        self.conn.autocommit = False
        self.conn.read_only = True
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.execute(begin_statement().text)  # opens the transaction; checks are savepoints
        return self

    def __exit__(self, *exc: object) -> None:
        if self.own:
            self.conn.rollback()  # nothing to keep: the transaction could not write

    def _name(self) -> str:
        self._cursors += 1
        return f"hera_validate_{self._cursors}"

    def rows(self, stmt: Statement, timeout_seconds: float | None = None) -> list[tuple[Any, ...]]:
        """A helper statement's rows; a failure here is a runtime error (exit 3), not a check result."""
        try:
            with self.conn.transaction():
                self._settings(_timeout_ms(timeout_seconds), "on")
                return self.conn.execute(stmt.text, stmt.params).fetchall()
        except psycopg.Error as exc:
            raise DatabaseError(f"validation statement {stmt.name} failed: {_describe(exc)}") from exc

    def stream(self, stmt: Statement, timeout_seconds: float | None = None) -> Iterator[tuple[Any, ...]]:
        """Rows of a helper statement through a server-side cursor (for the level-1 record list)."""
        try:
            with self.conn.transaction():
                self._settings(_timeout_ms(timeout_seconds), "on")
                with self.conn.cursor(name=self._name()) as cur:
                    cur.itersize = ITERSIZE
                    cur.execute(stmt.text, stmt.params)
                    yield from cur
        except psycopg.Error as exc:
            raise DatabaseError(f"validation statement {stmt.name} failed: {_describe(exc)}") from exc

    def builtin(self, check: CheckDef, stmt: Statement, organization_id: str | None,
                timeout_seconds: float | None = None) -> OrgCheck:
        t0 = time.monotonic()
        try:
            with self.conn.transaction():
                self._settings(_timeout_ms(timeout_seconds), "off")
                with self.conn.cursor(name=self._name()) as cur:
                    cur.itersize = ITERSIZE
                    cur.execute(stmt.text, stmt.params)
                    result = tally(check, organization_id, ((r[0], r[1], r[2]) for r in cur))
        except psycopg.Error as exc:
            result = errored(organization_id, _describe(exc))
        result.seconds = time.monotonic() - t0
        return result

    def custom(self, check: CheckDef, run_id: str, organization_id: str | None) -> OrgCheck:
        """A custom check's SQL with :run_id and :organization_id bound (None for a system check)."""
        t0 = time.monotonic()
        org_param = uuid.UUID(organization_id) if organization_id else None
        try:
            stmt = custom_statement(check, run_id, org_param)
        except (ValueError, KeyError) as exc:
            return errored(organization_id, f"the check's SQL cannot be parameterised: {exc}")
        try:
            with self.conn.transaction():
                self._settings(_timeout_ms(check.timeout_seconds), "on")
                with psycopg.RawServerCursor(self.conn, self._name()) as cur:
                    cur.itersize = ITERSIZE
                    cur.execute(stmt.text, list(stmt.params.values()))  # $1, $2, ... in order
                    names = [(d.name or "").lower() for d in (cur.description or [])]
                    missing = [c for c in REQUIRED_COLUMNS if c not in names]
                    if missing:
                        result = errored(organization_id,
                                         f"a check must return the columns {', '.join(REQUIRED_COLUMNS)}; "
                                         f"missing {', '.join(missing)} (got {', '.join(names) or 'none'})")
                    else:
                        idx = [names.index(c) for c in REQUIRED_COLUMNS]
                        result = tally(check, organization_id, ((r[idx[0]], r[idx[1]], r[idx[2]]) for r in cur))
        except psycopg.Error as exc:
            result = errored(organization_id, _describe(exc))
        result.seconds = time.monotonic() - t0
        return result

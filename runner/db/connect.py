"""Connections with the harness's session settings and clear errors when the server is unreachable."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import conninfo

from runner.errors import DatabaseError

APPLICATION_NAME = "hera-migrate"
# Per-session tuning for bulk work (docs/contract.md §3); the server's durability settings are left alone.
SESSION_OPTIONS = "-c work_mem=64MB -c maintenance_work_mem=512MB"


def connect(dsn: str, *, autocommit: bool = False, application_name: str = APPLICATION_NAME,
            **kwargs: Any) -> psycopg.Connection[Any]:
    params = conninfo.conninfo_to_dict(dsn)
    params.setdefault("application_name", application_name)
    params["options"] = f"{params.get('options', '')} {SESSION_OPTIONS}".strip()
    try:
        return psycopg.connect(conninfo.make_conninfo(**params), autocommit=autocommit, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL ({redact(dsn)}): {str(exc).strip()}",
                            hint="check --dsn / HERA_DSN, or omit both to use the embedded server") from exc


def with_database(dsn: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def redact(dsn: str) -> str:
    """A DSN safe to print: the password is masked."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if params.get("password"):
        params["password"] = "***"
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]

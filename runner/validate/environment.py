"""The report's environment block: what an auditor needs to file the document — which server, version and
database were validated (never a password), with which tool and spec, by whom, when.

The operator is `HERA_OPERATOR` when set (the name of the person signing), else the OS user running the command.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
from datetime import UTC, datetime
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from runner import __version__
from runner.validate import builtin
from runner.validate.execute import Session

OPERATOR_ENV = "HERA_OPERATOR"


def server_facts(session: Session) -> dict[str, Any]:
    rows = session.rows(builtin.helper("environment", ""))
    if not rows:
        return {}
    version, build, database, address, port, user = rows[0]
    return {"server_version": version, "server_build": build, "database": database, "server_address": address,
            "server_port": port, "database_user": user}


def _connection(dsn: str) -> dict[str, Any]:
    """Host, port and database as the DSN names them; the password and every other option left out."""
    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # an unparsable DSN was already used to connect; it just gives no facts here
        return {}
    return {"host": info.get("host") or info.get("hostaddr") or "(local socket)", "port": info.get("port"),
            "dbname": info.get("dbname")}


def _operator() -> str:
    named = os.environ.get(OPERATOR_ENV, "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "(unknown)"


def block(dsn: str, server: dict[str, Any], started: datetime, finished: datetime) -> dict[str, Any]:
    conn = _connection(dsn)
    return {
        "database_server": {"version": server.get("server_version"), "build": server.get("server_build"),
                            "host": conn.get("host"), "port": server.get("server_port") or conn.get("port"),
                            "address": server.get("server_address"),
                            "database": server.get("database") or conn.get("dbname"),
                            "user": server.get("database_user")},
        "tool": {"name": "hera-migration-harness", "version": __version__, "python": platform.python_version()},
        "runner_host": socket.gethostname(),
        "operator": _operator(),
        "operator_source": OPERATOR_ENV if os.environ.get(OPERATOR_ENV, "").strip() else "os user",
        "started_at": started.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "finished_at": finished.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }

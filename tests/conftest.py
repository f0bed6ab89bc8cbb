"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

The server is the embedded one unless HERA_DSN names an existing server (which then needs CREATEDB and
CREATEROLE); HERA_TEST_SERVER=system starts the system's PostgreSQL binaries instead of the embedded ones. Each test
that asks for `db_dsn` gets its own database cloned from a template that already holds the HERA core, so tests
never see each other's rows and need no cleanup order.

Two cores: `core_template` holds our stand-in (fixtures/sql); `real_template` holds HERA's production schema,
loaded from the file HERA_REAL_SCHEMA names (with our §6 stubs) — never part of this repository, so without the
variable every test that needs it skips and says why. `core_dsn` is a fresh database of either core, one test per
core (`@pytest.mark.real` on the production one): the same test must pass on both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from runner.db import realcore, schema
from runner.db.connect import connect, with_database
from runner.db.providers import Server, start_local

NO_REAL_SCHEMA = (f"{realcore.ENV} is not set: point it at HERA's production schema (dump/schema.sql of "
                  "heraerp/heraerp-prd) to run this test on the real core; `nox -s real` requires it")
CORES = [pytest.param("ours", id="ours"), pytest.param("real", id="real", marks=pytest.mark.real)]


def _admin(dsn: str) -> psycopg.Connection[Any]:
    return connect(with_database(dsn, "postgres"), autocommit=True)


def create_database(server_dsn: str, template: str | None = None) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _admin(server_dsn) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server_dsn: str, name: str) -> None:
    with _admin(server_dsn) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    external = os.environ.get("HERA_DSN")
    if external:
        yield Server(dsn=external, kind="external")
        return
    srv = start_local(prefer=os.environ.get("HERA_TEST_SERVER", "embedded"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def core_template(pg_server: Server) -> Iterator[str]:
    """A database holding only the HERA core; cloned per test."""
    name = create_database(pg_server.dsn)
    schema.install(with_database(pg_server.dsn, name))
    yield name
    drop_database(pg_server.dsn, name)


@pytest.fixture(scope="session")
def real_template(pg_server: Server) -> Iterator[str]:
    """A database holding HERA's production schema (stubs + HERA_REAL_SCHEMA); cloned per test."""
    found = realcore.configured()
    if found is None:
        pytest.skip(NO_REAL_SCHEMA)
    name = create_database(pg_server.dsn)
    realcore.load(with_database(pg_server.dsn, name), found)
    yield name
    drop_database(pg_server.dsn, name)


def template_of(request: pytest.FixtureRequest, core: str) -> str:
    name = request.getfixturevalue("real_template" if core == "real" else "core_template")
    return str(name)


@pytest.fixture(params=CORES)
def core(request: pytest.FixtureRequest) -> str:
    """Which HERA core the test runs on: "ours" (fixtures/sql) or "real" (HERA_REAL_SCHEMA)."""
    return str(request.param)


@pytest.fixture
def core_dsn(request: pytest.FixtureRequest, pg_server: Server, core: str) -> Iterator[str]:
    """DSN of a fresh database holding `core` (each test using it runs once per core)."""
    name = create_database(pg_server.dsn, template=template_of(request, core))
    yield with_database(pg_server.dsn, name)
    drop_database(pg_server.dsn, name)


@pytest.fixture
def db_dsn(pg_server: Server, core_template: str) -> Iterator[str]:
    """DSN of a fresh database with the HERA core installed."""
    name = create_database(pg_server.dsn, template=core_template)
    yield with_database(pg_server.dsn, name)
    drop_database(pg_server.dsn, name)


@pytest.fixture
def new_database(pg_server: Server, core_template: str) -> Iterator[Callable[[], str]]:
    """A factory of extra fresh HERA databases (DSNs), all dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = create_database(pg_server.dsn, template=core_template)
        created.append(name)
        return with_database(pg_server.dsn, name)

    yield make
    for name in created:
        drop_database(pg_server.dsn, name)


@pytest.fixture
def new_empty_database(pg_server: Server) -> Iterator[str]:
    """DSN of a database without the HERA core."""
    name = create_database(pg_server.dsn)
    yield with_database(pg_server.dsn, name)
    drop_database(pg_server.dsn, name)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a fresh HERA database (each statement is its own transaction, as in prod)."""
    with connect(db_dsn, autocommit=True) as c:
        yield c

"""Fixtures for the HERA core tests (helpers live in hera_helpers.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from runner.db.connect import connect
from tests.integration.hera_helpers import Hera


@pytest.fixture
def hera(conn: psycopg.Connection[Any]) -> Hera:
    return Hera(conn=conn, actor=uuid.uuid4())


@pytest.fixture
def org_user_dsn(db_dsn: str) -> str:
    """The same fresh database, logged in as the harness's restricted role hera_org_user (trust auth)."""
    params = conninfo.conninfo_to_dict(db_dsn)
    params["user"] = "hera_org_user"
    params.pop("password", None)
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture
def org_user_conn(org_user_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(org_user_dsn, autocommit=True) as c:
        yield c

"""The entity-migration hook (posting rules, fiscal periods, organisation config).

The entity logic lives in `runner.engine.entities`, written separately. When that module exists and defines
  migrate_entities(conn, spec, org_id, run_id) -> dict[str, int]   (called once per org after the transaction
                                                                     tiers, in its own transaction, with a
                                                                     journal checkpoint `entities`)
  rollback_entities(conn, run_id, org_id, parts) -> dict[str, int]  (called by rollback per org, in its own
                                                                     transaction, before the journal is closed)
the engine calls them; otherwise entity migration is skipped (counts stay empty).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psycopg

from runner.spec.model import Spec

MODULE = "runner.engine.entities"
MigrateFn = Callable[[psycopg.Connection[Any], Spec, str, str], dict[str, int]]
RollbackFn = Callable[[psycopg.Connection[Any], str, str, tuple[str, ...]], dict[str, int]]


def _module() -> ModuleType | None:
    try:
        return importlib.import_module(MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == MODULE:
            return None
        raise


def migrate_function() -> MigrateFn | None:
    module = _module()
    fn = getattr(module, "migrate_entities", None) if module is not None else None
    return fn if callable(fn) else None


def rollback_function() -> RollbackFn | None:
    module = _module()
    fn = getattr(module, "rollback_entities", None) if module is not None else None
    return fn if callable(fn) else None

"""The organisations a spec's scope selects in one database: priority ones first, `--org` narrowing it.

One read of core_organizations (template scope/organizations); plan, run and `check --dsn` all resolve scope here.
"""

from __future__ import annotations

from typing import Any

import psycopg

from runner.compile.templates import render
from runner.errors import UsageError
from runner.spec.model import Spec


def choose(spec: Spec, known: list[tuple[str, str]], requested: tuple[str, ...]) -> list[tuple[str, str]]:
    """(id, code) of the organisations in scope among `known` (all visible ones, by code)."""
    orgs = spec.scope.organizations
    by_id = dict(known)
    for org in (*orgs.include, *orgs.priority, *requested):
        if org not in by_id:
            raise UsageError(f"organisation {org} is not in this database (or not visible to this role)")
    chosen = [r for r in known if (not orgs.include or r[0] in orgs.include) and r[0] not in orgs.exclude]
    if requested:
        excluded = [o for o in requested if o not in {r[0] for r in chosen}]
        if excluded:
            raise UsageError(f"--org {excluded[0]} is outside the spec's scope (scope.organizations)")
        chosen = [r for r in chosen if r[0] in requested]
    rank = {org: i for i, org in enumerate(orgs.priority)}
    chosen.sort(key=lambda r: (rank.get(r[0], len(rank)), r[1]))
    return chosen


def resolve_orgs(conn: psycopg.Connection[Any], spec: Spec, requested: tuple[str, ...]) -> list[tuple[str, str]]:
    stmt = render("scope/organizations")
    known = [(str(r[0]), str(r[1])) for r in conn.execute(stmt.text, stmt.params).fetchall()]
    return choose(spec, known, requested)

"""Tier 3 — reporting alias, one chunk inside the caller's transaction. Metadata only.

HERA's header triggers decide the UPDATE form (fixtures/sql/30_triggers.sql): an UPDATE that does not list
smart_code upper-cases the code (`.v1` -> `.V1`); one that lists it canonicalises it (`.V1` -> `.v1`). So rows
stored canonical are updated with `smart_code = smart_code` in the SET list, rows stored upper case without it,
and each form keeps the code byte-identical (checked on the returned rows before commit). updated_at, updated_by
and version are not touched (they are non-NULL already; the actor is recorded in metadata.migration.actor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from runner.engine.chunk import ChunkCtx, ChunkOutcome
from runner.engine.isolate import Rejected, isolate
from runner.engine.outcome import Quarantined

TIER = "reporting_alias"


@dataclass(frozen=True)
class Item:
    id: str
    v2_code: str
    smart_code: str  # as stored, byte for byte


def chunk(conn: psycopg.Connection[Any], ctx: ChunkCtx, ids: list[str], *,
          exclude_quarantined: bool) -> ChunkOutcome:
    outcome = ChunkOutcome(tier=TIER)
    canonical: list[Item] = []
    upper: list[Item] = []
    for txn_id, v2_code, smart_code, is_canonical, reason in ctx.sql.rows(
            conn, "run/lock_alias", ids=ids, exclude_quarantined=exclude_quarantined):
        if reason is not None:
            outcome.quarantined.append(Quarantined(transaction_id=txn_id, tier=TIER, reason=reason,
                                                   message=f"stored smart_code {smart_code}"))
        else:
            (canonical if is_canonical else upper).append(Item(txn_id, v2_code, smart_code))

    def fail(item: Item, reason: str, sqlstate: str | None, message: str | None) -> None:
        outcome.quarantined.append(Quarantined(transaction_id=item.id, tier=TIER, reason=reason, sqlstate=sqlstate,
                                               message=message))

    outcome.done += isolate(conn, canonical, _key, lambda batch: _attempt(conn, ctx, batch, True), fail)
    outcome.done += isolate(conn, upper, _key, lambda batch: _attempt(conn, ctx, batch, False), fail)
    return outcome


def _key(item: Item) -> str:
    return item.id


def _attempt(conn: psycopg.Connection[Any], ctx: ChunkCtx, batch: list[Item], list_smart_code: bool) -> list[str]:
    rows = ctx.sql.rows(conn, "run/alias", list_smart_code=list_smart_code, ids=[i.id for i in batch],
                        v2_codes=[i.v2_code for i in batch])
    stored = {i.id: i.smart_code for i in batch}
    changed = {txn_id: "smart_code_changed" for txn_id, code in rows if stored.get(txn_id) != code}
    if changed:  # cannot happen with HERA's triggers as specified; never commit a changed code
        raise Rejected(changed, "the alias UPDATE would have changed the stored smart code")
    if len(rows) != len(batch):
        raise RuntimeError(f"aliased {len(rows)} of {len(batch)} rows")
    return [r[0] for r in rows]

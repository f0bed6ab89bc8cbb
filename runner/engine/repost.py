"""Tier 2 — reverse + repost, one chunk inside the caller's transaction.

1. run/lock_repost: re-select the chunk's candidates by the eligibility predicate, FOR UPDATE SKIP LOCKED,
   with their pre-image (ORIGINAL_PREIMAGE_COLUMNS) and any reason they cannot be migrated faithfully.
2. run/reverse_repost: hera_txn_reverse_v1 + hera_txn_emit_v1 for every candidate, one statement.
3. run/mark_originals: metadata.migration on each original (repost, reversal, pre-image, state left).
4. run/verify_reposts: v2 code, lines, GL balance and reversal netting of each repost, before commit.
Steps 2-4 run per batch in a savepoint (runner.engine.isolate): an SQL error bisects the batch down to the
failing candidates, a failed check names them; both are quarantined and the rest of the chunk still migrates.
Because candidates are re-selected by predicate and marked in the same transaction, a crash anywhere rolls the
whole chunk back and the next attempt (or `resume`) handles each candidate exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from runner.compile.params import repost_code, reversal_reason
from runner.engine.chunk import ChunkCtx, ChunkOutcome
from runner.engine.isolate import Rejected, isolate
from runner.engine.outcome import Quarantined

TIER = "reverse_repost"


@dataclass(frozen=True)
class Item:
    id: str
    v2_code: str
    mapping_index: int
    transaction_code: str
    preimage: str  # JSON text, passed back verbatim


@dataclass(frozen=True)
class Done:
    id: str
    reversal_id: str
    repost_id: str


def chunk(conn: psycopg.Connection[Any], ctx: ChunkCtx, ids: list[str], *,
          exclude_quarantined: bool) -> ChunkOutcome:
    outcome = ChunkOutcome(tier=TIER)
    items: list[Item] = []
    rows = ctx.sql.rows(conn, "run/lock_repost", ids=ids, exclude_quarantined=exclude_quarantined)
    for txn_id, v2_code, index, code, preimage, taken, reason, debit, credit, lines in rows:
        if reason is not None:
            outcome.quarantined.append(Quarantined(
                transaction_id=txn_id, tier=TIER, reason=reason,
                message=f"{lines} line(s); GL debits {debit}, credits {credit}"))
            continue
        items.append(Item(txn_id, v2_code, index, repost_code(ctx.spec, ctx.run_id, txn_id, code, taken), preimage))

    def fail(item: Item, reason: str, sqlstate: str | None, message: str | None) -> None:
        outcome.quarantined.append(Quarantined(transaction_id=item.id, tier=TIER, reason=reason, sqlstate=sqlstate,
                                               message=message))

    done = isolate(conn, items, lambda i: i.id, lambda batch: _attempt(conn, ctx, batch), fail)
    outcome.done = [d.id for d in done]
    return outcome


def _attempt(conn: psycopg.Connection[Any], ctx: ChunkCtx, batch: list[Item]) -> list[Done]:
    sql = ctx.sql
    rows = sql.rows(conn, "run/reverse_repost", ids=[i.id for i in batch], v2_codes=[i.v2_code for i in batch],
                    mapping_indexes=[i.mapping_index for i in batch],
                    transaction_codes=[i.transaction_code for i in batch], reason=reversal_reason(ctx.run_id))
    done: list[Done] = []
    failed: dict[str, str] = {}
    for txn_id, reversal, repost_id in rows:
        rev = reversal or {}
        if not rev.get("success") or not rev.get("reversal_id") or repost_id is None:
            failed[txn_id] = "reverse_failed"
            continue
        done.append(Done(txn_id, str(rev["reversal_id"]), str(repost_id)))
    missing = {i.id for i in batch} - {d.id for d in done} - set(failed)
    failed.update(dict.fromkeys(missing, "not_reversed"))
    if failed:
        raise Rejected(failed, "hera_txn_reverse_v1/hera_txn_emit_v1 returned no result")
    by_id = {i.id: i for i in batch}
    marked = sql.rows(conn, "run/mark_originals", ids=[d.id for d in done],
                      reversal_ids=[d.reversal_id for d in done], repost_ids=[d.repost_id for d in done],
                      preimages=[by_id[d.id].preimage for d in done])
    if len(marked) != len(done):
        raise RuntimeError(f"marked {len(marked)} of {len(done)} originals")
    problems = sql.rows(conn, "run/verify_reposts", ids=[d.id for d in done],
                        reversal_ids=[d.reversal_id for d in done], repost_ids=[d.repost_id for d in done],
                        v2_codes=[by_id[d.id].v2_code for d in done])
    if problems:
        raise Rejected({r[0]: r[1] for r in problems}, "post-write check of the repost failed")
    return done

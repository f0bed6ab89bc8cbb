"""Named checkpoints of a run: cuts through its work that `rollback RUN_ID --to NAME` can return to.

Every write of a run carries `seq`, the id of the transaction that made it (metadata.migration.seq on the rows a
chunk marks, `seq` in quarantine entries, `entities_seq` in the journal for the entity step). A checkpoint is a
journal field `checkpoint:<name>` holding a seq: the run's work up to that transaction id is before the cut, the
rest after it. Transaction ids only grow, and the checkpoint gate makes the cut exact while chunks are in flight:
each migration transaction first takes the shared side of a per-organisation advisory lock
(checkpoint/gate_shared); `hera-migrate checkpoint` takes the exclusive side for every organisation of the run, so
it waits for the chunks in flight to commit (they had lower ids) and the chunks after it get higher ids.

Automatic checkpoints (kind `auto`, names `auto:<what>`) are recorded per organisation by the engine: `auto:start`
with the journal, `auto:chunk-<n>` every `execution.checkpoint_every_chunks` chunks, `auto:<tier>` when a tier's
chunk loop ends, `auto:done` when the organisation finishes. Operator checkpoints (kind `operator`) carry the same
seq in every organisation of the run; an organisation whose journal did not exist yet at the cut had done nothing
before it. An automatic name an organisation never reached (fewer chunks, a tier not finished) means nothing of it
is after the cut there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

from runner.compile.jsonx import jdump
from runner.db.connect import connect
from runner.engine import journal
from runner.engine.context import CHECKPOINT_LOCK_CLASS, CHECKPOINT_PREFIX, Sql, advisory_key, validate_run_id
from runner.errors import UsageError

NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # operator names; `auto:` is the engine's
AUTO = "auto:"
GATE_TIMEOUT = "30s"  # the exclusive gate waits for chunks in flight (each well under a second)
CLOSED = ("rolled_back", "requires_review")


@dataclass(frozen=True)
class Checkpoint:
    name: str
    kind: str  # operator | auto
    seq: int
    at: str
    organization_id: str
    organization_code: str
    counters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "seq": self.seq, "at": self.at,
                "organization_id": self.organization_id, "organization_code": self.organization_code,
                "counters": dict(self.counters)}


def current_seq(conn: psycopg.Connection[Any], sql: Sql) -> int:
    row = sql.execute(conn, "checkpoint/seq").fetchone()
    assert row is not None
    return int(row[0])


def gate(conn: psycopg.Connection[Any], sql: Sql, org_id: str) -> None:
    """The shared side of the gate: the first statement of every migration transaction of `org_id`."""
    sql.execute(conn, "checkpoint/gate_shared", lock_class=CHECKPOINT_LOCK_CLASS, lock_key=advisory_key(org_id))


def record_auto(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str, what: str) -> None:
    """Record `auto:<what>` inside the caller's (gated) transaction: the cut is after this transaction."""
    _record(conn, sql, org_id, journal_id, AUTO + what, "auto", current_seq(conn, sql), {})


def record_cut(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str) -> None:
    """`auto:chunk-<n>` in a transaction of its own (not a gated migration transaction): the exclusive gate of the
    organisation makes it exact with several workers — their chunks in flight commit first — and n is the
    organisation's chunk count at the cut, over every worker and runner."""
    sql.execute(conn, "run/session", lock_timeout=GATE_TIMEOUT, statement_timeout=GATE_TIMEOUT)
    sql.execute(conn, "checkpoint/gate_exclusive", lock_class=CHECKPOINT_LOCK_CLASS, lock_keys=[advisory_key(org_id)])
    fields = journal.read_fields(conn, sql, [org_id], [journal_id]).get(journal_id, {})
    counters = {k: fields.get(k, 0) for k in ("migrated", "aliased", "chunks")}
    _record(conn, sql, org_id, journal_id, f"{AUTO}chunk-{int(fields.get('chunks') or 0)}", "auto",
            current_seq(conn, sql), counters)


def _record(conn: psycopg.Connection[Any], sql: Sql, org_id: str, journal_id: str, name: str, kind: str, seq: int,
            counters: dict[str, Any]) -> bool:
    body = {"name": name, "kind": kind, "at": journal.now().isoformat(), "counters": counters}
    row = sql.execute(conn, "checkpoint/record", org_id=org_id, journal_id=journal_id, replace=kind == "auto",
                      field_name=CHECKPOINT_PREFIX + name, body=jdump(body), seq=seq).fetchone()
    return row is not None


def record_named(dsn: str, run_id: str, name: str, scope_org_ids: list[str]) -> list[Checkpoint]:
    """`hera-migrate checkpoint RUN_ID NAME`: one cut through every organisation of the run, recorded in each
    journal. `scope_org_ids`: every organisation the run may touch (gated too, so none of them is mid-chunk)."""
    if not validate_run_id(run_id):
        raise UsageError(f"invalid run id {run_id!r}")
    if not NAME_PATTERN.match(name):
        raise UsageError(f"invalid checkpoint name {name!r}: use 1-64 characters of A-Z a-z 0-9 . _ - "
                         "(starting with a letter or digit; `auto:` names are the engine's)")
    sql = Sql(org_id=f"checkpoint {run_id}")  # names the session in pg_stat_activity
    with connect(dsn) as conn:
        visible = [o for o, _ in journal.all_orgs(conn, sql)]
        journals = journal.find(conn, sql, visible, run_id)
        if not journals:
            raise UsageError(f"no run {run_id} in this database (no journal with that run id)")
        if all(j.status in CLOSED for j in journals):
            raise UsageError(f"run {run_id} was rolled back: a checkpoint would mark nothing")
        existing = listing(conn, sql, journals)
        if any(c.name == name for c in existing):
            raise UsageError(f"run {run_id} already has a checkpoint named {name!r}",
                             hint="choose another name (hera-migrate status RUN_ID lists them)")
        orgs = sorted({*scope_org_ids, *(j.organization_id for j in journals)})
        conn.rollback()
        with conn.transaction():
            sql.execute(conn, "run/session", lock_timeout=GATE_TIMEOUT, statement_timeout=GATE_TIMEOUT)
            sql.execute(conn, "checkpoint/gate_exclusive", lock_class=CHECKPOINT_LOCK_CLASS,
                        lock_keys=sorted({advisory_key(o) for o in orgs}))
            seq = current_seq(conn, sql)
            fields = journal.read_fields(conn, sql, visible, [j.id for j in journals])
            out = []
            for j in journals:
                f = fields.get(j.id, {})
                counters = {k: f.get(k, 0) for k in ("migrated", "aliased", "chunks", "quarantined")}
                if not _record(conn, sql, j.organization_id, j.id, name, "operator", seq, counters):
                    raise UsageError(f"run {run_id} already has a checkpoint named {name!r}")
                out.append(Checkpoint(name, "operator", seq, journal.now().isoformat(), j.organization_id,
                                      j.organization_code, counters))
    return out


def listing(conn: psycopg.Connection[Any], sql: Sql, journals: list[journal.Journal]) -> list[Checkpoint]:
    """Every checkpoint of these journals, oldest cut first."""
    by_id = {j.id: j for j in journals}
    out = []
    for journal_id, body in sql.rows(conn, "checkpoint/list", org_ids=sorted({j.organization_id for j in journals}),
                                     journal_ids=list(by_id)):
        j = by_id[journal_id]
        body = body or {}
        out.append(Checkpoint(str(body.get("name", "")), str(body.get("kind", "")), int(body.get("seq", 0)),
                              str(body.get("at", "")), j.organization_id, j.organization_code,
                              dict(body.get("counters") or {})))
    return out


def boundaries(checkpoints: list[Checkpoint], journals: list[journal.Journal], name: str) -> dict[str, int | None]:
    """Per organisation of the run, the seq to roll back to (work with a higher seq is undone), or None when
    nothing of that organisation is after the checkpoint. Raises UsageError for an unknown name."""
    named = [c for c in checkpoints if c.name == name]
    if not named:
        names = sorted({c.name for c in checkpoints}, key=lambda n: (n.startswith(AUTO), n))
        raise UsageError(f"the run has no checkpoint named {name!r}",
                         hint="its checkpoints: " + (", ".join(names[:20]) if names else "none"))
    by_org = {c.organization_id: c.seq for c in named}
    operator = next((c for c in named if c.kind == "operator"), None)
    out: dict[str, int | None] = {}
    for j in journals:
        if j.organization_id in by_org:
            out[j.organization_id] = by_org[j.organization_id]
        elif operator is not None:  # the organisation's journal came after the cut: all of it is after
            out[j.organization_id] = operator.seq
        else:
            out[j.organization_id] = None  # an automatic cut this organisation never reached
    return out

"""A v1 user keeps working while the migration runs: emits balanced transactions, voids, reverses (candidates among
them) and reads, on its own connection and actor, through HERA's v1 RPCs with named arguments.

Synchronisation is by events and conditions only: the user starts when the first chunk has committed; two chunks
hold still before COMMIT until pg_locks shows the user waiting on a row they hold (the contended cases); the last
chunk of the first pass waits until the user has done its operations; the re-scan then migrates what the user
emitted meanwhile.

HERA behaviour this pins (hera_txn_reverse_v1 does not lock or check the original; void checks nothing):
- a v1 call on a row a chunk holds waits for the chunk (no lock timeout surfaces with a client lock_timeout above
  the chunk's lock time), then:
  - void succeeds: HERA voids the migrated original (status voided, still marked and reversed by the run). Rollback
    must then leave that group alone and report it as a conflict (REQUIRES_REVIEW);
  - reverse fails with unique_violation on transaction_code: the -REV code is already the migration's twin, so
    HERA's global UNIQUE constraint is what refuses the second reversal. Nothing of the user's call is written.
- a candidate the user reversed (or voided) before its chunk is not migrated.
Everything else the user does succeeds; none of its rows is lost or changed by the run or by the rollback.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from runner.db.connect import connect
from runner.engine import ChunkInfo, EngineHooks, rollback_run, run_migration
from runner.synth.generate import generate
from tests.integration.test_engine_support import candidate_ids, dump, one, phase7

RUN = "run-conc"
BATCH = 10
MIN_OPS = 60
WAIT = 60.0  # seconds any condition may take before the test fails
V1_CODE = "HERA.FINANCE.GL.TXN.JOURNAL.v1"
REASON = "v1 user correction"

EMIT = """SELECT hera_txn_emit_v1(
    p_organization_id => %(org)s, p_transaction_type => 'journal_entry', p_smart_code => %(code)s,
    p_transaction_code => %(txn_code)s, p_total_amount => %(amount)s::numeric, p_transaction_status => %(status)s,
    p_transaction_currency_code => 'USD', p_base_currency_code => 'USD',
    p_lines => jsonb_build_array(
        jsonb_build_object('line_number', 1, 'line_type', 'GL', 'entity_id', %(dr)s::text, 'side', 'DR',
                           'smart_code', 'HERA.FINANCE.GL.LINE.DEBIT.v1', 'line_amount', %(amount)s::numeric,
                           'description', 'v1 user debit'),
        jsonb_build_object('line_number', 2, 'line_type', 'GL', 'entity_id', %(cr)s::text, 'side', 'CR',
                           'smart_code', 'HERA.FINANCE.GL.LINE.CREDIT.v1', 'line_amount', %(amount)s::numeric,
                           'description', 'v1 user credit')),
    p_actor_user_id => %(actor)s)"""
READ = ("SELECT hera_txn_read_v1(p_org_id => %s, p_transaction_id => %s, p_include_lines => true, "
        "p_include_deleted => true)")
VOID = "SELECT hera_txn_void_v1(p_organization_id => %s, p_transaction_id => %s, p_reason => %s, p_actor_user_id => %s)"
REVERSE = ("SELECT hera_txn_reverse_v1(p_organization_id => %s, p_transaction_id => %s, p_reason => %s, "
           "p_actor_user_id => %s)")


@dataclass
class Op:
    kind: str  # emit | read | void | reverse
    target: str | None
    forced: bool = False
    sqlstate: str | None = None
    constraint: str | None = None
    result: Any = None


@dataclass
class V1User:
    """The v1 user: its own connection (autocommit, every RPC its own transaction), its own actor."""

    dsn: str
    org: str
    accounts: list[str]
    void_pool: list[str]
    reverse_pool: list[str]
    read_pool: list[str]
    scripted: list[tuple[str, str]]  # (kind, target) done first: candidates of the last chunk
    rng: random.Random
    actor: str = field(default_factory=lambda: str(uuid.uuid4()))
    go: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    forced: queue.Queue[tuple[str, str]] = field(default_factory=queue.Queue)
    changed: threading.Condition = field(default_factory=threading.Condition)
    log: list[Op] = field(default_factory=list)
    emitted: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {eligible, header, lines} at emit
    failure: BaseException | None = None
    pid: int = 0

    def __post_init__(self) -> None:
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.conn.execute("SET lock_timeout = '30s'")  # far above a chunk's lock time: waits, never times out
        self.pid = self.conn.info.backend_pid
        self.thread = threading.Thread(target=self._main, name="v1-user", daemon=True)

    @property
    def ops(self) -> int:
        return len(self.log)

    def _main(self) -> None:
        try:
            if not self.go.wait(WAIT):
                raise TimeoutError("the first chunk never committed")
            while True:
                try:
                    kind, target = self.forced.get_nowait()
                    self._do(kind, target, forced=True)
                    continue
                except queue.Empty:
                    pass
                if self.scripted:
                    self._do(*self.scripted.pop(0))
                elif self.stop.is_set():
                    return
                else:
                    self._random()
        except BaseException as exc:
            self.failure = exc
        finally:
            self.conn.close()
            with self.changed:
                self.changed.notify_all()

    def _random(self) -> None:
        kind = self.rng.choices(["emit", "emit_pending", "read", "void", "reverse"], [3, 2, 4, 1, 1])[0]
        if kind == "void" and self.void_pool:
            self._do("void", self.void_pool.pop(self.rng.randrange(len(self.void_pool))))
        elif kind == "reverse" and self.reverse_pool:
            self._do("reverse", self.reverse_pool.pop(self.rng.randrange(len(self.reverse_pool))))
        elif kind in ("emit", "emit_pending"):
            self._emit(eligible=kind == "emit")
        else:
            self._do("read", self.rng.choice(self.read_pool))

    def _emit(self, *, eligible: bool) -> None:
        amount = Decimal(self.rng.randrange(100, 5_000_00)) / 100
        row = self.conn.execute(EMIT, {"org": self.org, "code": V1_CODE, "txn_code": f"V1U-{uuid.uuid4().hex[:12]}",
                                       "amount": amount, "status": "completed" if eligible else "pending",
                                       "dr": self.accounts[0], "cr": self.accounts[1], "actor": self.actor}).fetchone()
        assert row is not None
        txn = str(row[0])
        got = self._read(txn)
        self.emitted[txn] = {"eligible": eligible, "header": got["header"], "lines": got["lines"]}
        self.read_pool.append(txn)
        if not eligible:
            self.void_pool.append(txn)
        self._logged(Op("emit", txn))

    def _read(self, txn: str) -> dict[str, Any]:
        row = self.conn.execute(READ, (self.org, txn)).fetchone()
        assert row is not None and row[0]["success"], row
        data: dict[str, Any] = row[0]["data"]
        assert str(data["header"]["id"]) == txn
        return data

    def _do(self, kind: str, target: str, *, forced: bool = False) -> None:
        op = Op(kind, target, forced=forced)
        try:
            if kind == "read":
                data = self._read(target)
                stored = self.conn.execute("SELECT count(*) FROM universal_transaction_lines WHERE transaction_id = %s",
                                           (target,)).fetchone()
                assert stored is not None and len(data["lines"]) == stored[0]
            elif kind == "void":
                op.result = self.conn.execute(VOID, (self.org, target, REASON, self.actor)).fetchone()
            else:
                op.result = self.conn.execute(REVERSE, (self.org, target, REASON, self.actor)).fetchone()
        except psycopg.Error as exc:
            op.sqlstate, op.constraint = exc.sqlstate, exc.diag.constraint_name
        self._logged(op)

    def _logged(self, op: Op) -> None:
        with self.changed:
            self.log.append(op)
            self.changed.notify_all()


def wait_until_blocked_by(conn: psycopg.Connection[Any], pid: int) -> None:
    """Condition wait: the v1 user's backend `pid` waits on a lock held by this chunk's session (`conn`)."""
    deadline = time.monotonic() + WAIT
    while not one(conn, "SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))", (pid,)):
        assert time.monotonic() < deadline, "the v1 user never reached the held row"
        time.sleep(0.01)  # poll interval of the condition


class Choreography(EngineHooks):
    """Starts the user after chunk 1; makes it hit rows chunks 2 and 3 hold; chunk `last - 1` waits for it."""

    def __init__(self, user: V1User, last: int) -> None:
        self.user, self.last = user, last
        self.held: dict[str, str] = {}  # kind -> the candidate the user hit while a chunk held it
        self.lock_waits = 0

    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        if info.tier != "reverse_repost" or info.chunk not in (2, 3) or not info.ids:
            return
        kind = "void" if info.chunk == 2 else "reverse"
        if kind in self.held:  # a retried attempt of the chunk
            return
        self.held[kind] = info.ids[0]
        self.user.forced.put((kind, info.ids[0]))
        wait_until_blocked_by(conn, self.user.pid)
        self.lock_waits += 1

    def after_commit(self, info: ChunkInfo) -> None:
        if info.tier != "reverse_repost":
            return
        if info.chunk == 1:
            self.user.go.set()
        elif info.chunk == self.last - 1:
            u = self.user
            with u.changed:
                done = u.changed.wait_for(lambda: u.failure is not None or (
                    u.ops >= MIN_OPS and not u.scripted and len(self.held) == 2
                    and sum(op.forced for op in u.log) == 2), WAIT)
            assert done and u.failure is None, u.failure
            u.stop.set()
            u.thread.join(WAIT)
            assert not u.thread.is_alive()


def rows_by_id(dumped: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    return {str(r["id"]): r for table in ("universal_transactions", "universal_transaction_lines", "core_entities",
                                          "core_dynamic_data", "core_relationships", "core_organizations")
            for r in dumped[table]}


def strip_line(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in ("organization_id", "transaction_id")}


def test_v1_user_works_through_the_run_and_the_rollback(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=47).organizations[0].organization_id
    spec = phase7(narrow=True)
    with connect(db_dsn) as conn:
        before = rows_by_id(dump(conn, org))
        cands = candidate_ids(conn, org, spec, "reverse_repost")
        accounts = [r[0] for r in conn.execute(
            "SELECT id::text FROM core_entities WHERE organization_id = %s AND lower(entity_type) = 'gl_account' "
            "ORDER BY id LIMIT 2", (org,))]
        # out of scope for this spec (posted), not reversed, not a twin: the run never touches them
        bystanders = [r[0] for r in conn.execute(
            "SELECT id::text FROM universal_transactions WHERE organization_id = %s AND transaction_status = 'posted' "
            "AND NOT metadata ? 'reversal_of' AND NOT metadata ? 'reversal_id' ORDER BY id", (org,))]
        every = [r[0] for r in conn.execute(
            "SELECT id::text FROM universal_transactions WHERE organization_id = %s ORDER BY id", (org,))]
    chunks = math.ceil(len(cands) / BATCH)
    assert chunks >= 6 and len(bystanders) >= 40
    tail = cands[(chunks - 1) * BATCH:]  # the last chunk of the first pass: the user gets there first
    scripted = [("reverse", t) for t in tail[:3]] + [("void", t) for t in tail[3:5]]
    rng = random.Random(4711)
    rng.shuffle(bystanders)
    user = V1User(db_dsn, org, accounts, void_pool=bystanders[:20], reverse_pool=bystanders[20:40],
                  read_pool=list(every), scripted=list(scripted), rng=rng)
    hooks = Choreography(user, chunks)
    user.thread.start()
    try:
        result = run_migration(db_dsn, spec, orgs=(org,), run_id=RUN, workers=1, batch_size=BATCH, now=True,
                               hooks=hooks)
    finally:
        user.stop.set()
        user.go.set()
        user.thread.join(WAIT)
    assert user.failure is None, user.failure
    got = result.org(org)
    assert (result.status, got.status, got.quarantined_total) == ("completed", "completed", 0)

    # --- what the user saw: no error but HERA's refusal of a second reversal; lock waits, never a timeout -------
    log = user.log
    assert len(log) >= MIN_OPS and Counter(op.kind for op in log).keys() == {"emit", "read", "void", "reverse"}
    errors = [op for op in log if op.sqlstate is not None]
    held_void, held_reverse = hooks.held["void"], hooks.held["reverse"]
    assert [(op.kind, op.target, op.sqlstate, op.constraint) for op in errors] == [
        ("reverse", held_reverse, "23505", "universal_transactions_transaction_code_key")]
    assert hooks.lock_waits == 2 and not any(op.sqlstate == "55P03" for op in log)
    for op in log:
        if op.kind in ("void", "reverse") and op.sqlstate is None:
            assert op.result[0]["success"] is True, op

    with connect(db_dsn) as conn:
        cur = conn.cursor(row_factory=dict_row)
        headers = {str(r["id"]): r for r in cur.execute(
            "SELECT id, transaction_status, metadata, created_by::text, updated_by::text, to_jsonb(t) AS j "
            "FROM universal_transactions t WHERE organization_id = %s", (org,))}
        lines = {str(r["id"]): r["j"] for r in cur.execute(
            "SELECT id, to_jsonb(l) AS j FROM universal_transaction_lines l WHERE organization_id = %s", (org,))}
    mig = {i: h["metadata"]["migration"] for i, h in headers.items()
           if (h["metadata"].get("migration") or {}).get("run_id") == RUN}
    originals = {i for i, m in mig.items() if m["role"] == "original"}
    reposts = Counter(m["original_txn_id"] for m in mig.values() if m["role"] == "repost")
    twins = Counter(h["metadata"]["reversal_of"] for h in headers.values() if "reversal_of" in h["metadata"])

    # --- nothing migrated twice, nothing reversed twice -------------------------------------------------------------
    eligible_emits = {t for t, e in user.emitted.items() if e["eligible"]}
    assert eligible_emits and originals == (set(cands) - set(tail[:5])) | eligible_emits
    assert set(reposts) == originals and set(reposts.values()) == {1}
    assert max(twins.values()) == 1  # over the whole organisation, whoever reversed
    assert got.migrated == len(originals)

    # the candidates the user reversed/voided before their chunk: the user's action only, not migrated
    for t in tail[:3]:
        assert headers[t]["transaction_status"] == "reversed" and "migration" not in headers[t]["metadata"]
        twin = headers[str(headers[t]["metadata"]["reversal_id"])]
        assert twin["created_by"] == user.actor and twin["metadata"]["reversal_reason"] == REASON
    for t in tail[3:5]:
        assert headers[t]["transaction_status"] == "voided" and "migration" not in headers[t]["metadata"]
    # the held rows: the void went through after the chunk committed (HERA voids a migrated original) ...
    assert headers[held_void]["transaction_status"] == "voided" and headers[held_void]["updated_by"] == user.actor
    assert mig[held_void]["role"] == "original"
    # ... the reverse was refused by the -REV code the migration's twin already holds: reversed once, by the run
    assert held_reverse in originals and twins[held_reverse] == 1
    assert headers[str(mig[held_reverse]["reversal_id"])]["metadata"]["reversal_reason"].startswith(
        f"hera-migrate {RUN}:")

    # --- none of the user's rows is lost; the run changed none of their lines, and no pending one at all -----------
    for txn, e in user.emitted.items():
        assert txn in headers
        stored = {i: strip_line(line) for i, line in lines.items() if str(line["transaction_id"]) == txn}
        assert stored == {str(line["id"]): line for line in e["lines"]} and len(stored) == 2
        if not e["eligible"] and txn not in {op.target for op in log if op.kind == "void"}:
            assert headers[txn]["j"] == e["header"]
    user_rows = {i for i, h in headers.items() if h["updated_by"] == user.actor or h["created_by"] == user.actor}
    # HERA's reverse leaves the original's updated_by as it was: the user's reversals are known by their twins
    user_rows |= {str(h["metadata"]["reversal_of"]) for h in headers.values()
                  if h["created_by"] == user.actor and "reversal_of" in h["metadata"]}
    user_rows |= {i for i, line in lines.items() if line["created_by"] == user.actor}
    at_end = {**{i: h["j"] for i, h in headers.items()}, **lines}

    # --- rollback: every migrated row restored but the one the user voided after migration (a conflict) -----------
    rb = rollback_run(db_dsn, RUN)
    res = rb.org(org)
    assert (rb.status, res.verified) == ("requires_review", True)
    assert [(c.transaction_id, c.role) for c in res.conflicts] == [(held_void, "original")]
    assert res.originals_restored == len(originals) - 1
    with connect(db_dsn) as conn:
        after = rows_by_id(dump(conn, org))
    kept = {held_void, str(mig[held_void]["repost_id"]), str(mig[held_void]["reversal_id"])}
    kept_lines = {i for i, line in lines.items() if str(line["transaction_id"]) in kept - {held_void}}
    for row_id, row in before.items():  # rows that existed before the run
        if row_id in user_rows or row_id in kept:
            continue
        assert after[row_id] == row, f"{row_id} not restored"
    for row_id in user_rows - eligible_emits:  # the user's own changes: left exactly as the user made them
        assert after[row_id] == at_end[row_id], f"rollback changed the v1 user's row {row_id}"
    for txn in eligible_emits:  # migrated after the user emitted them: back to what the user wrote
        assert after[txn] == user.emitted[txn]["header"]
    assert after[held_void] == at_end[held_void]  # the conflict is left as it is
    leftovers = set(after) - set(before) - user_rows - kept - kept_lines
    assert not leftovers, f"rows of the run left after rollback: {sorted(leftovers)[:5]}"
    print(f"\nv1 user: {len(log)} ops {dict(Counter(op.kind for op in log))}, {len(eligible_emits)} of its "
          f"emits migrated by the re-scan, lock waits {hooks.lock_waits}, refused {len(errors)}; "
          f"migrated {len(originals)}, rolled back {res.originals_restored}, conflicts {len(res.conflicts)}")

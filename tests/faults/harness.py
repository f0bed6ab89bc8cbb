"""Shared machinery of the fault-and-abuse suite (`nox -s faults`, tests/faults) and its fast versions
(tests/integration/test_faults_*.py): the CLI as a subprocess, kills and waits on conditions observed in the
database or on disk, the exactly-once audit, and the ledger behind the session's summary table.

Waiting is always on a condition (a journal counter, a file, a lock, a process exit) polled with a short interval
and a deadline, never a fixed sleep standing in for synchronisation.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import conninfo

from runner import contract
from runner.db.connect import connect
from runner.db.providers import SERVER_SETTINGS, LocalCluster
from runner.engine.context import ADVISORY_LOCK_CLASS, advisory_key

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
SUMMARY = ROOT / "reports" / "faults" / "summary.json"
SIX = ("core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
       "universal_transactions", "universal_transaction_lines")
POLL = 0.02  # seconds between two looks at a condition


# --- the ledger ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one scenario did and found. `lost`, `duplicates` and `unexpected` must stay 0."""

    scenario: str
    faults: int = 0  # kills, restarts, hostile inputs, conflicting v1 requests, bad rows injected
    resumed: int = 0  # runs/rollbacks continued after a fault
    rows_checked: int = 0  # rows compared or audited
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Ledger:
    def __init__(self) -> None:
        self.tallies: list[Tally] = []
        self._lock = threading.Lock()

    @contextmanager
    def scenario(self, name: str) -> Iterator[Tally]:
        tally = Tally(scenario=name)
        t0 = time.monotonic()
        try:
            yield tally
        finally:
            tally.seconds = round(time.monotonic() - t0, 1)
            with self._lock:
                self.tallies.append(tally)

    def totals(self) -> dict[str, Any]:
        keys = ("faults", "resumed", "rows_checked", "lost", "duplicates", "unexpected")
        return {k: sum(getattr(t, k) for t in self.tallies) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        return {"scenarios": [asdict(t) for t in self.tallies], "totals": self.totals()}

    def table(self) -> str:
        head = ("scenario", "faults", "resumed", "rows checked", "lost", "dupl.", "unexp.", "seconds")
        rows = [(t.scenario, t.faults, t.resumed, t.rows_checked, t.lost, t.duplicates, t.unexpected, t.seconds)
                for t in self.tallies]
        tot = self.totals()
        rows.append(("TOTAL", tot["faults"], tot["resumed"], tot["rows_checked"], tot["lost"], tot["duplicates"],
                     tot["unexpected"], round(sum(t.seconds for t in self.tallies), 1)))
        cells = [[str(c) if isinstance(c, str) else f"{c:,}" for c in r] for r in rows]
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(head)]

        def line(values: tuple[str, ...] | list[str]) -> str:
            return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                                strict=True)))

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(head), rule, *(line(r) for r in cells[:-1]), rule, line(cells[-1])])

    def write(self, path: Path = SUMMARY, **extra: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.as_dict(), **extra}, indent=2, default=str) + "\n", encoding="utf-8")
        return path


LEDGER = Ledger()


# --- the CLI as a subprocess --------------------------------------------------------------------------------


def cli_env(kill: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERA_FAULT_KILL", "HERA_DSN")}
    if kill is not None:
        env["HERA_FAULT_KILL"] = kill
    return env


def hera(dsn: str | None, *args: str, kill: str | None = None, timeout: float = 600,
         cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`hera-migrate [--dsn DSN] ARGS` to completion (or to its death)."""
    head = ["--dsn", dsn] if dsn else []
    return subprocess.run([sys.executable, "-m", "runner", *head, *args], cwd=cwd, env=cli_env(kill),
                          capture_output=True, text=True, timeout=timeout, check=False)


class Spawned:
    """A `hera-migrate` subprocess whose output goes to files (a pipe nobody reads could block it)."""

    def __init__(self, dsn: str, args: list[str], log_dir: Path, *, kill: str | None = None) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.monotonic_ns()}"
        self.out_path = log_dir / f"{stamp}.out"
        self.err_path = log_dir / f"{stamp}.err"
        self._out: IO[str] = self.out_path.open("w", encoding="utf-8")
        self._err: IO[str] = self.err_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "--dsn", dsn, *args], cwd=ROOT,
                                     env=cli_env(kill), stdout=self._out, stderr=self._err, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def sigkill(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float = 600) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.returncode is not None:
                self._out.close()
                self._err.close()

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def tail(self) -> str:
        return f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str,
               proc: Spawned | None = None) -> bool:
    """Poll `condition` until it holds (True) or `proc` ended first (False); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if proc is not None and not proc.alive():
            return False
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.proc.wait(timeout=POLL)  # the poll interval, ended early by the process exiting
        else:
            threading.Event().wait(POLL)


def kill_when(proc: Spawned, condition: Callable[[], bool], *, timeout: float, what: str) -> bool:
    """SIGKILL `proc` as soon as `condition` holds. False when the process ended before it did."""
    if not wait_until(condition, timeout=timeout, what=what, proc=proc):
        return False
    proc.sigkill()
    proc.wait(timeout=60)
    return proc.proc.returncode == -signal.SIGKILL


def wait_claims_released(dsn: str, orgs: list[str], timeout: float = 60) -> None:
    """A killed runner's backends are gone once no organisation's advisory claim is held any more."""
    keys = [advisory_key(o) % 2**32 for o in orgs]
    with connect(dsn, autocommit=True) as conn:
        def free() -> bool:
            row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
                               "AND objid = ANY(%s::oid[]) AND objsubid = 2", (ADVISORY_LOCK_CLASS, keys)).fetchone()
            return row is not None and row[0] == 0

        wait_until(free, timeout=timeout, what="the killed process's sessions to end")


# --- the journal and the tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int  # migrated + aliased (committed)
    chunks: int
    rollback_chunks: int
    rollback_done: int  # originals + aliases restored
    statuses: tuple[str, ...]


def progress(conn: psycopg.Connection[Any], run_id: str, org: str | None = None) -> Progress:
    row = conn.execute(
        """SELECT coalesce(sum(d.field_value_number) FILTER (WHERE d.field_name IN ('migrated', 'aliased')), 0)
                  -- each worker's own row (runner/engine/journal.py) holds the counters of its chunks
                  + coalesce(sum(coalesce((d.field_value_json ->> 'migrated')::numeric, 0)
                                 + coalesce((d.field_value_json ->> 'aliased')::numeric, 0))
                             FILTER (WHERE d.field_name LIKE 'worker:%%'), 0),
                  coalesce(sum(d.field_value_number) FILTER (WHERE d.field_name = 'chunks'), 0)
                  + coalesce(sum((d.field_value_json ->> 'chunks')::numeric)
                             FILTER (WHERE d.field_name LIKE 'worker:%%'), 0),
                  coalesce(sum(d.field_value_number) FILTER (WHERE d.field_name = 'rollback_chunks'), 0),
                  coalesce(sum(d.field_value_number) FILTER (WHERE d.field_name IN ('rollback_originals',
                                                                                     'rollback_aliases')), 0),
                  coalesce(array_agg(DISTINCT d.field_value_text) FILTER (WHERE d.field_name = 'status'), '{}')
             FROM core_entities e
             JOIN core_dynamic_data d ON d.entity_id = e.id AND d.organization_id = e.organization_id
            WHERE e.entity_type = %s AND e.entity_code = %s AND (%s::uuid IS NULL OR e.organization_id = %s::uuid)""",
        (contract.JOURNAL_ENTITY_TYPE, run_id, org, org)).fetchone()
    assert row is not None
    return Progress(int(row[0]), int(row[1]), int(row[2]), int(row[3]), tuple(sorted(row[4])))


class Watcher:
    """An autocommit connection for polling a run's journal from the test process."""

    def __init__(self, dsn: str, run_id: str, org: str | None = None) -> None:
        self.conn = connect(dsn, autocommit=True)
        self.run_id, self.org = run_id, org

    def now(self) -> Progress:
        return progress(self.conn, self.run_id, self.org)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def row_ids(conn: psycopg.Connection[Any], orgs: list[str]) -> dict[str, set[str]]:
    """Every row id of the organisations in the six tables."""
    out: dict[str, set[str]] = {}
    for table in SIX:
        key = "id" if table == "core_organizations" else "organization_id"
        out[table] = {r[0] for r in conn.execute(f"SELECT id::text FROM {table} WHERE {key} = ANY(%s::uuid[])",
                                                 (orgs,))}
    return out


def lost_rows(before: dict[str, set[str]], now: dict[str, set[str]]) -> dict[str, int]:
    return {t: len(before[t] - now[t]) for t in SIX if before[t] - now[t]}


@dataclass
class Audit:
    """What the tables say about one run, independently of the journal and of the engine's own counters."""

    originals: set[str]
    reposts: Counter[str]  # original id -> reposts of the run naming it
    twins: Counter[str]  # original id -> -REV twins of the run
    aliases: set[str]
    reversals: Counter[str]  # every transaction of the orgs -> reversal twins pointing at it (anyone's)
    broken_links: list[str]

    @property
    def duplicates(self) -> int:
        """Extra reposts/twins of an original, and transactions reversed more than once by anyone."""
        return (sum(n - 1 for n in self.reposts.values() if n > 1) + sum(n - 1 for n in self.twins.values() if n > 1)
                + sum(n - 1 for n in self.reversals.values() if n > 1))

    def exactly_once(self) -> bool:
        return (not self.broken_links and self.duplicates == 0 and set(self.reposts) == set(self.twins)
                == self.originals)


def audit(conn: psycopg.Connection[Any], orgs: list[str], run_id: str) -> Audit:
    """Set-based (it runs after every kill of a medium run): the run's marks, its reposts and twins per original,
    every reversal twin per reversed transaction, and the links that do not point back."""
    args = {"orgs": orgs, "run": run_id, "twin": f"hera-migrate {run_id}:%"}
    marked = "t.organization_id = ANY(%(orgs)s::uuid[]) AND t.metadata -> 'migration' ->> 'run_id' = %(run)s"
    originals = {r[0] for r in conn.execute(
        f"SELECT t.id::text FROM universal_transactions t WHERE {marked} "
        "AND t.metadata -> 'migration' ->> 'role' = 'original'", args)}
    aliases = {r[0] for r in conn.execute(
        f"SELECT t.id::text FROM universal_transactions t WHERE {marked} "
        "AND t.metadata -> 'migration' ->> 'role' = 'alias'", args)}
    reposts: Counter[str] = Counter()
    broken: list[str] = []
    for parent, n, bad in conn.execute(
            f"""SELECT t.metadata -> 'migration' ->> 'original_txn_id', count(*),
                       array_agg(t.id::text) FILTER (WHERE o.id IS NULL
                           OR o.metadata -> 'migration' ->> 'repost_id' IS DISTINCT FROM t.id::text
                           OR o.metadata -> 'migration' ->> 'role' IS DISTINCT FROM 'original')
                  FROM universal_transactions t
                  LEFT JOIN universal_transactions o ON o.id::text = t.metadata -> 'migration' ->> 'original_txn_id'
                 WHERE {marked} AND t.metadata -> 'migration' ->> 'role' = 'repost'
                 GROUP BY 1""", args):
        reposts[str(parent)] = int(n)
        broken += [f"repost {b} -> {parent}" for b in bad or []]
    twins: Counter[str] = Counter()
    reversals: Counter[str] = Counter()
    for parent, n, ours, bad in conn.execute(
            """SELECT t.metadata ->> 'reversal_of', count(*),
                      count(*) FILTER (WHERE t.metadata ->> 'reversal_reason' LIKE %(twin)s),
                      array_agg(t.id::text) FILTER (WHERE t.metadata ->> 'reversal_reason' LIKE %(twin)s
                          AND (o.id IS NULL OR o.metadata ->> 'reversal_id' IS DISTINCT FROM t.id::text
                               OR o.metadata -> 'migration' ->> 'run_id' IS DISTINCT FROM %(run)s))
                 FROM universal_transactions t
                 LEFT JOIN universal_transactions o ON o.id::text = t.metadata ->> 'reversal_of'
                WHERE t.organization_id = ANY(%(orgs)s::uuid[]) AND t.metadata ? 'reversal_of'
                GROUP BY 1""", args):
        reversals[str(parent)] = int(n)
        if ours:
            twins[str(parent)] = int(ours)
        broken += [f"twin {b} -> {parent}" for b in bad or []]
    return Audit(originals, reposts, twins, aliases, reversals, broken)


def dump(conn: psycopg.Connection[Any], orgs: list[str], *, journal: bool = False,
         hashed: bool = False) -> dict[str, dict[str, str]]:
    """Every row of the organisations in the six tables as jsonb text by id (`hashed`: its md5, for big
    organisations); without the run journals (entity MIGRATION_RUN and its dynamic data) unless `journal`."""
    out: dict[str, dict[str, str]] = {}
    skip = "" if journal else " AND NOT EXISTS (SELECT 1 FROM core_entities j WHERE j.id = {col} AND j.entity_type = " \
                              f"'{contract.JOURNAL_ENTITY_TYPE}')"
    for table in SIX:
        key = "id" if table == "core_organizations" else "organization_id"
        extra = ""
        if table == "core_entities":
            extra = skip.format(col="t.id")
        elif table == "core_dynamic_data":
            extra = skip.format(col="t.entity_id")
        row = "md5(to_jsonb(t)::text)" if hashed else "to_jsonb(t)::text"
        out[table] = {r[0]: r[1] for r in conn.execute(
            f"SELECT t.id::text, {row} FROM {table} t WHERE t.{key} = ANY(%s::uuid[]){extra}", (orgs,))}
    return out


def dump_diff(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> dict[str, int]:
    out = {}
    for table in SIX:
        ids = set(a[table]) | set(b[table])
        n = sum(1 for i in ids if a[table].get(i) != b[table].get(i))
        if n:
            out[table] = n
    return out


def rows_in(d: dict[str, dict[str, str]]) -> int:
    return sum(len(v) for v in d.values())


def role_dsn(dsn: str, allowed: list[str], role: str = "hera_org_user") -> str:
    """The same database as `role` (trust auth), restricted by RLS to the organisations `allowed`."""
    params = conninfo.conninfo_to_dict(dsn)
    params["user"] = role
    params.pop("password", None)
    opts = str(params.get("options") or "")
    params["options"] = f"{opts} -c app.allowed_orgs={','.join(allowed)}".strip()
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def results(report_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    return data


def unexpected_total(res: dict[str, Any]) -> int:
    return int(sum((res.get("diff") or {}).get("unexpected", {}).values()))


# --- the server under the runner ----------------------------------------------------------------------------


def server_options(cluster: LocalCluster) -> str:
    opts = " ".join(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())
    return f"{opts} -c listen_addresses=127.0.0.1 -p {cluster.port} -k {cluster.socket_dir}"


def pg_stop(cluster: LocalCluster, mode: str) -> None:
    """Shut the server down (`fast`: sessions terminated, clean; `immediate`: no clean shutdown, crash recovery
    at the next start) and wait until it is down."""
    cluster._run("pg_ctl", ["-D", str(cluster.data_dir), "-m", mode, "-w", "-t", "60", "stop"])


def pg_start(cluster: LocalCluster) -> None:
    cluster._run("pg_ctl", ["-D", str(cluster.data_dir), "-l", str(cluster.log_file), "-w", "-t", "60",
                            "-o", server_options(cluster), "start"])


def fresh_database(server_dsn: str) -> str:
    """A new database with the HERA core on `server_dsn`'s server; its DSN."""
    import uuid

    from runner.db import schema
    from runner.db.connect import with_database

    name = f"f_{uuid.uuid4().hex[:12]}"
    with connect(with_database(server_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(server_dsn, name)
    schema.install(dsn)
    return dsn


# --- specs ----------------------------------------------------------------------------------------------------


def spec_file(directory: Path, *, narrow: bool = False, max_retries: int | None = None,
              include: list[str] | None = None, name: str = "spec.yaml", quick_retries: bool = True) -> Path:
    """The Phase 7 spec written to `directory` with test-sized knobs: `narrow` keeps only `completed`
    transactions in scope; quick retries unless `quick_retries` is off (a fault test seldom waits seconds for a
    back-off); `include` names the organisations in scope. The pipeline records the file's path in the journal,
    so it must be a real file."""
    import yaml

    doc = yaml.safe_load(PHASE7.read_text(encoding="utf-8"))
    if narrow:
        doc["scope"]["transaction_statuses"] = ["completed"]
    retries = doc["execution"]["retries"]
    if quick_retries:
        retries.update({"backoff_seconds": 0.05, "max_backoff_seconds": 0.5})
    if max_retries is not None:
        retries["max"] = max_retries
    if include is not None:
        doc["scope"]["organizations"]["include"] = include
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# --- v1 traffic alongside a run -----------------------------------------------------------------------------

V1_EMIT = """SELECT hera_txn_emit_v1(
    p_organization_id => %(org)s, p_transaction_type => 'journal_entry',
    p_smart_code => 'HERA.FINANCE.GL.TXN.JOURNAL.v1', p_transaction_code => %(code)s,
    p_total_amount => %(amount)s::numeric, p_transaction_status => 'completed',
    p_transaction_currency_code => 'USD', p_base_currency_code => 'USD',
    p_lines => jsonb_build_array(
        jsonb_build_object('line_number', 1, 'line_type', 'GL', 'entity_id', %(dr)s::text, 'side', 'DR',
                           'smart_code', 'HERA.FINANCE.GL.LINE.DEBIT.v1', 'line_amount', %(amount)s::numeric),
        jsonb_build_object('line_number', 2, 'line_type', 'GL', 'entity_id', %(cr)s::text, 'side', 'CR',
                           'smart_code', 'HERA.FINANCE.GL.LINE.CREDIT.v1', 'line_amount', %(amount)s::numeric)),
    p_actor_user_id => %(actor)s)"""
V1_REVERSE = ("SELECT hera_txn_reverse_v1(p_organization_id => %s, p_transaction_id => %s, p_reason => %s, "
              "p_actor_user_id => %s)")
V1_VOID = ("SELECT hera_txn_void_v1(p_organization_id => %s, p_transaction_id => %s, p_reason => %s, "
           "p_actor_user_id => %s)")
V1_READ = ("SELECT hera_txn_read_v1(p_org_id => %s, p_transaction_id => %s, p_include_lines => true, "
           "p_include_deleted => true)")
CODE_KEY = "universal_transactions_transaction_code_key"


@dataclass
class V1Op:
    kind: str  # reverse | void | emit | read
    target: str | None
    actor: str
    ok: bool = False
    sqlstate: str | None = None
    constraint: str | None = None
    message: str = ""
    result: Any = None


class V1Traffic:
    """v1 users (one connection, one actor each; every RPC its own transaction, as PostgREST calls them) that
    void and reverse the very candidates the run is migrating: each picks its target at random from a window
    around the run's frontier (the journal's migrated count, in the candidates' id order — the order the run
    takes them), so requests land ahead of the run, on rows a chunk holds, and just behind it. They also emit new
    eligible transactions and read. Every request and its outcome is logged."""

    def __init__(self, dsn: str, org: str, run_id: str, candidates: list[str], accounts: list[str], *,
                 users: int = 3, seed: int = 7, window: int = 60, max_ops: int = 400) -> None:
        import uuid

        self.dsn, self.org, self.run_id = dsn, org, run_id
        self.candidates = sorted(candidates)
        self.accounts = accounts
        self.window, self.max_ops = window, max_ops
        self.rng = random.Random(seed)
        self.actors = [str(uuid.uuid4()) for _ in range(users)]
        self.ops: list[V1Op] = []
        self.used: set[tuple[str, str]] = set()
        self.frontier = 0
        self.started = threading.Event()  # the run's journal exists: the before-snapshot is behind us
        self.moved = threading.Condition()  # notified when the frontier moves
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._user, args=(a, random.Random(seed + i)), daemon=True,
                                         name=f"v1-user-{i}") for i, a in enumerate(self.actors)]
        self.threads.append(threading.Thread(target=self._watch, daemon=True, name="v1-frontier"))

    def start(self) -> V1Traffic:
        for t in self.threads:
            t.start()
        return self

    def finish(self, timeout: float = 120) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a v1 user did not stop"
        assert not self.failures, self.failures

    def _watch(self) -> None:
        try:
            with Watcher(self.dsn, self.run_id, self.org) as w:
                while not self.stop.is_set():
                    now = w.now()
                    if now.statuses:
                        self.started.set()
                    if now.done != self.frontier:
                        with self.moved:
                            self.frontier = now.done
                            self.moved.notify_all()
                    self.stop.wait(POLL)
        except BaseException as exc:
            self.failures.append(exc)

    def _target(self, rng: random.Random, kind: str) -> str | None:
        with self._lock:
            for _ in range(20):
                i = min(len(self.candidates) - 1, max(0, self.frontier + rng.randint(-self.window // 4, self.window)))
                target = self.candidates[i]
                if (kind, target) not in self.used:
                    self.used.add((kind, target))
                    return target
        return None

    def _user(self, actor: str, rng: random.Random) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '60s'")  # a v1 client waits for a row; it never gives up here
                while not self.started.wait(POLL):
                    if self.stop.is_set():
                        return
                while not self.stop.is_set() and len(self.ops) < self.max_ops:
                    kind = rng.choices(("reverse", "void", "emit", "read"), (4, 3, 2, 2))[0]
                    if kind == "emit":
                        emitted = sum(op.kind == "emit" for op in self.ops)
                        target = "" if emitted <= self.frontier // 20 else None
                    else:
                        target = self._target(rng, kind)
                    if target is None:  # nothing new to do here until the run moves on
                        with self.moved:
                            self.moved.wait(POLL)
                        continue
                    self._call(conn, V1Op(kind, target or None, actor), rng)
        except BaseException as exc:
            self.failures.append(exc)

    def _call(self, conn: psycopg.Connection[Any], op: V1Op, rng: random.Random) -> None:
        import uuid
        from decimal import Decimal

        try:
            if op.kind == "emit":
                amount = Decimal(rng.randrange(100, 500_000)) / 100
                row = conn.execute(V1_EMIT, {"org": self.org, "code": f"V1T-{uuid.uuid4().hex[:16]}",
                                             "amount": amount, "dr": self.accounts[0], "cr": self.accounts[1],
                                             "actor": op.actor}).fetchone()
                op.result = str(row[0]) if row else None
                op.ok = op.result is not None
            else:
                sql = {"reverse": V1_REVERSE, "void": V1_VOID, "read": V1_READ}[op.kind]
                args = (self.org, op.target) if op.kind == "read" else (self.org, op.target, "v1 user", op.actor)
                row = conn.execute(sql, args).fetchone()
                op.result = row[0] if row else None
                op.ok = bool(op.result and op.result.get("success"))
        except psycopg.Error as exc:
            op.sqlstate, op.constraint = exc.sqlstate, exc.diag.constraint_name
            op.message = (exc.diag.message_primary or str(exc)).strip()
        with self._lock:
            self.ops.append(op)

    def errors(self) -> list[V1Op]:
        return [op for op in self.ops if not op.ok]


def migration_induced(traffic: V1Traffic, conn: psycopg.Connection[Any]) -> list[V1Op]:
    """The v1 requests that failed in a way v1 alone would not fail. The one refusal v1 itself gives is HERA's
    second reversal of a transaction: hera_txn_reverse_v1 inserts `<code>-REV` again and the global UNIQUE
    transaction_code refuses it (23505). A run's reversal is a reversal in HERA's own terms (it is made by the same
    RPC), so that refusal is allowed when the target really is reversed exactly once; anything else — a deadlock,
    a lock or statement timeout, a serialization failure, any other error — is the migration's fault."""
    bad: list[V1Op] = []
    for op in traffic.errors():
        if op.kind == "reverse" and op.sqlstate == "23505" and op.constraint == CODE_KEY:
            n = conn.execute("SELECT count(*) FROM universal_transactions WHERE organization_id = %s "
                             "AND metadata ->> 'reversal_of' = %s", (traffic.org, op.target)).fetchone()
            status = conn.execute("SELECT transaction_status FROM universal_transactions WHERE id = %s",
                                  (op.target,)).fetchone()
            if n is not None and n[0] == 1 and status is not None and status[0] in ("reversed", "voided"):
                continue
        bad.append(op)
    return bad


def misclassified(snapshot: Path, run_id: str, v1_actors: list[str]) -> tuple[list[tuple[Any, ...]], Counter[str]]:
    """Every row of the run's before/after diff whose class differs from the ground truth, with the counts of
    each truth. Ground truth, from the snapshots themselves (so a v1 request that committed after the after
    snapshot is simply absent on both sides):
      - written by a v1 user (created_by for an insert, updated_by for an update, and for an original a v1 user
        reversed the creator of its -REV twin, since HERA's reverse leaves updated_by alone): concurrent —
        including a transaction a v1 user inserted during the run that the run's re-scan then migrated;
      - an original of the run that a v1 user voided after the run reversed it ("late void"): unexpected — it
        needs review, and rollback will refuse to touch it;
      - everything else was written by the migration, or carries its mark (an alias keeps its updated_by):
        expected."""
    import duckdb

    actor = str(contract.MIGRATION_ACTOR_ID)
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        rows = con.execute(
            """SELECT d.table_name, CAST(d.id AS VARCHAR), d.kind, d.class, d.reason,
                      CAST(coalesce(ah.created_by, al.created_by) AS VARCHAR),
                      CAST(coalesce(ah.updated_by, al.updated_by) AS VARCHAR),
                      ah.transaction_status,
                      json_extract_string(ah.metadata, '$.migration.run_id'),
                      json_extract_string(ah.metadata, '$.migration.role'),
                      CAST(tw.created_by AS VARCHAR)
                 FROM diff_rows d
                 LEFT JOIN after_universal_transactions ah
                        ON d.table_name = 'universal_transactions' AND ah.id = d.id
                 LEFT JOIN after_universal_transactions tw
                        ON tw.id = TRY_CAST(json_extract_string(ah.metadata, '$.reversal_id') AS UUID)
                 LEFT JOIN after_universal_transaction_lines al
                        ON d.table_name = 'universal_transaction_lines' AND al.id = d.id
                WHERE d.run_id = ?""", [run_id]).fetchall()
    finally:
        con.close()
    v1 = set(v1_actors)
    wrong: list[tuple[Any, ...]] = []
    truths: Counter[str] = Counter()
    for table, rid, kind, cls, reason, created, updated, status, mark_run, role, twin_by in rows:
        writer = created if kind == "inserted" else updated
        if kind == "updated" and mark_run != run_id and twin_by in v1:
            writer = twin_by  # HERA's reverse leaves the original's updated_by: the twin names who reversed it
        if table == "universal_transactions" and mark_run == run_id and role == "original" and status == "voided":
            truth = "unexpected"  # a late void
        elif writer in v1:  # also the rows of a transaction a v1 user inserted that the run then migrated
            truth = "concurrent"
        elif mark_run == run_id or writer == actor or table in ("core_entities", "core_dynamic_data",
                                                                 "core_organizations"):
            truth = "expected"
        else:
            truth = "?"
        truths[truth] += 1
        if cls != truth:
            wrong.append((table, rid, kind, cls, truth, reason))
    return wrong, truths


# --- bad data in the source ---------------------------------------------------------------------------------

UNKNOWN_CODE = "HERA.SALON.LOYALTY.TXN.POINTS.v1"  # mapped by no mapping of the Phase 7 spec


@dataclass
class BadRows:
    unbalanced: str  # a candidate whose GL lines no longer balance
    null_amount: str  # a candidate with a NULL line_amount
    cross_org: str  # a candidate with a line that belongs to another organisation
    unknown_code: str  # a header with a v1 code no mapping names
    orphan_lines: list[str]  # lines whose header does not exist
    orphan_txn: str  # the transaction id they name

    def quarantine_reasons(self) -> dict[str, str]:
        return {self.unbalanced: "unbalanced", self.null_amount: "null_line_amounts",
                self.cross_org: "cross_org_lines"}


def plant_bad_rows(conn: psycopg.Connection[Any], org: str, other_org: str, candidates: list[str],
                   rng: random.Random) -> BadRows:
    """Break the source the ways real ledgers are broken, through plain SQL (a v1 bug or a hand edit would)."""
    import uuid

    picks = rng.sample(candidates, 3)
    gl_line = ("SELECT id FROM universal_transaction_lines WHERE transaction_id = %s AND smart_code LIKE '%%.GL.%%' "
               "ORDER BY line_number LIMIT 1")
    conn.execute(f"UPDATE universal_transaction_lines SET line_amount = line_amount + 1 WHERE id = ({gl_line})",
                 (picks[0],))
    conn.execute("UPDATE universal_transaction_lines SET line_amount = NULL WHERE id = ("
                 "SELECT id FROM universal_transaction_lines WHERE transaction_id = %s ORDER BY line_number DESC "
                 "LIMIT 1)", (picks[1],))
    conn.execute("UPDATE universal_transaction_lines SET organization_id = %s WHERE id = ("
                 "SELECT id FROM universal_transaction_lines WHERE transaction_id = %s ORDER BY line_number DESC "
                 "LIMIT 1)", (other_org, picks[2]))
    accounts = [r[0] for r in conn.execute("SELECT id::text FROM core_entities WHERE organization_id = %s "
                                           "AND lower(entity_type) = 'gl_account' ORDER BY id LIMIT 2", (org,))]
    actor = str(uuid.uuid4())
    row = conn.execute(V1_EMIT.replace("'HERA.FINANCE.GL.TXN.JOURNAL.v1'", "%(code_v1)s"),
                       {"org": org, "code": f"BAD-{uuid.uuid4().hex[:12]}", "amount": 42, "dr": accounts[0],
                        "cr": accounts[1], "actor": actor, "code_v1": UNKNOWN_CODE}).fetchone()
    assert row is not None
    unknown = str(row[0])
    # Lines whose header does not exist: only a load with the foreign-key triggers off (a restore, a replica
    # promoted mid-copy) leaves these behind; replication role `replica` is how such loads write.
    orphan_txn = str(uuid.uuid4())
    conn.execute("SET LOCAL session_replication_role = replica")
    orphans = [str(r[0]) for r in conn.execute(
        """INSERT INTO universal_transaction_lines (organization_id, transaction_id, line_number, entity_id,
                  line_type, line_amount, smart_code, line_data, created_by, updated_by)
           SELECT %(org)s, %(txn)s, n, %(acc)s, 'GL', 10, 'HERA.FINANCE.GL.LINE.DEBIT.v1', '{"side": "DR"}',
                  %(actor)s, %(actor)s
             FROM generate_series(1, 2) AS n
        RETURNING id""", {"org": org, "txn": orphan_txn, "acc": accounts[0], "actor": actor})]
    conn.execute("SET LOCAL session_replication_role = origin")
    return BadRows(picks[0], picks[1], picks[2], unknown, orphans, orphan_txn)

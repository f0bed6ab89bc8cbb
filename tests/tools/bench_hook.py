"""Engine benchmark for tests/tools/bench.py: migrate one synthetic org end to end, roll it back, and measure the raw
PostgreSQL ceiling for the same writes on the same tables in the same process, so the engine's rate can be read
as a fraction of what the server could do at all.

    from tests.tools.bench_hook import bench_engine
    numbers = bench_engine(None, "medium", 42)               # own embedded server
    numbers = bench_engine(dsn, "small", 7)                  # an existing HERA database (a fresh org is generated)
    python -m tests.tools.bench_hook medium 42 [DSN]       # prints the dict as JSON

Reported (no pass/fail):
- tier 2: transactions/s (one hera_txn_reverse_v1 + one hera_txn_emit_v1 each, marks, checks, journal), row
  writes/s (rows inserted and updated: twin and repost headers and lines, the twin's total, the original twice);
- tier 3: rows/s;
- chunk lock hold (ms, mean/p95/max per tier): the chunk transaction holds its candidates' row locks from its
  first statement to COMMIT. Measured as the time between consecutive chunk commits of a tier (the gap between
  two chunks is a few µs of Python), so the first chunk of each tier is not sampled; `engine_chunk_seconds` are
  the engine's own max/mean over every chunk;
- rollback seconds and rows/s;
- bare pair (after the rollback, on the same originals): HERA's own hera_txn_reverse_v1 + hera_txn_emit_v1 and
  nothing else, in one statement per chunk, every chunk rolled back (`bare_pair`): the physical bound of tier 2
  on one session; `engine_vs_pair_cpu` is the engine's CPU per transaction as a fraction of it;
- everyday costs (`everyday`): CPU per entity insert, dynamic-field insert/update, hera_txn_read_v1 and
  hera_txn_query_v1 call, so a stand-in core can be compared with production beyond tier 2;
- ceiling: the same number of header and line rows as tier 2 inserts (each candidate's header and lines copied
  twice, new ids and codes, v1 smart codes, all triggers, CHECKs, indexes and foreign keys in force) with plain
  INSERT ... SELECT, no RPC and no logic, in as many committed transactions as tier 2 had chunks, into a scratch
  organisation that is deleted afterwards. `ceiling_ratio` = tier-2 txn/s ÷ ceiling candidates/s. The ceiling
  does none of the UPDATEs (reversal status, twin total, mark) nor the reads, so 1.0 is out of reach by design;
- backend CPU ms per candidate (tier 2, tier 3, ceiling) from /proc/<backend pid>/stat when the server runs on
  this machine: unlike wall time it hardly depends on what else the machine runs, so `ceiling_ratio_cpu` (ceiling
  CPU ÷ tier-2 CPU per candidate) is the load-independent form of `ceiling_ratio`; `runner_cpu_seconds` is this
  process's own CPU during the run (the runner is not the bottleneck when it is small against tier2_seconds);
- peak RSS of this process, the load average before and after (the machine is shared: read numbers with it).
"""

from __future__ import annotations

import itertools
import os
import resource
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runner import contract
from runner.db import providers, schema
from runner.db.connect import connect
from runner.engine.hooks import ChunkInfo, EngineHooks
from runner.engine.migrate import run_migration
from runner.engine.rollback import rollback_run
from runner.resources import data_dir
from runner.spec import load_spec
from runner.spec.model import Spec
from runner.synth.generate import generate

SPEC = "finance-dna-v2.yaml"
TIERS = ("reverse_repost", "reporting_alias")
HEADER_SKIP = ("id", "organization_id", "transaction_code")
LINE_SKIP = ("id", "organization_id", "transaction_id")


def backend_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a PostgreSQL backend from /proc (same machine, readable), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class ChunkClock(EngineHooks):
    """Commit times per tier (the engine calls after_commit right after each chunk's COMMIT), and the chunk
    connection's backend CPU before each COMMIT: CPU per candidate does not depend on how busy the machine is."""

    def __init__(self) -> None:
        self.commits: dict[str, list[float]] = {t: [] for t in TIERS}
        self.cpu: dict[str, list[tuple[int, int, float | None]]] = {t: [] for t in TIERS}  # (pid, done, cpu)

    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        if info.tier in self.cpu:
            pid = conn.info.backend_pid
            self.cpu[info.tier].append((pid, len(info.ids), backend_cpu_seconds(pid)))

    def after_commit(self, info: ChunkInfo) -> None:
        if info.tier in self.commits:
            self.commits[info.tier].append(time.monotonic())

    def cpu_ms_per_candidate(self, tier: str) -> float | None:
        """Backend CPU between the first and the last chunk's COMMIT of a tier, per candidate of chunks 2..n."""
        samples = self.cpu[tier]
        if len(samples) < 2 or len({s[0] for s in samples}) != 1 or any(s[2] is None for s in samples):
            return None
        first, last = samples[0][2], samples[-1][2]
        done = sum(s[1] for s in samples[1:])
        assert first is not None and last is not None
        return round((last - first) * 1000 / done, 3) if done else None

    def hold_ms(self, tier: str) -> dict[str, float | int | None]:
        stamps = self.commits[tier]
        gaps = sorted((b - a) * 1000 for a, b in itertools.pairwise(stamps))
        if not gaps:
            return {"chunks": len(stamps), "mean": None, "p95": None, "max": None}
        p95 = gaps[min(len(gaps) - 1, max(0, round(0.95 * len(gaps)) - 1))]
        return {"chunks": len(stamps), "mean": round(statistics.fmean(gaps), 1), "p95": round(p95, 1),
                "max": round(gaps[-1], 1)}


def bench_engine(dsn: str | None = None, size: str = "medium", seed: int = 42, *, spec: Spec | None = None,
                 batch_size: int | None = None, workers: int = 1, ceiling: bool = True,
                 pair_sample: int = 2000) -> dict[str, Any]:
    server = None
    if dsn is None:
        server = providers.start_local()
        dsn = server.dsn
        schema.install(dsn)
    try:
        spec = spec or load_spec(data_dir("specs") / SPEC)
        load_before = os.getloadavg()
        t0 = time.monotonic()
        gen = generate(dsn, size=size, seed=seed)
        fixture_s = time.monotonic() - t0
        org = gen.organizations[0].organization_id
        clock = ChunkClock()
        cpu0 = time.process_time()
        result = run_migration(dsn, spec, orgs=(org,), workers=workers, batch_size=batch_size, now=True,
                               hooks=clock)
        runner_cpu = time.process_time() - cpu0
        got = result.org(org)
        with connect(dsn) as conn:
            originals = [r[0] for r in conn.execute(
                "SELECT id FROM universal_transactions WHERE organization_id = %s "
                "AND metadata -> 'migration' ->> 'run_id' = %s AND metadata -> 'migration' ->> 'role' = 'original' "
                "ORDER BY id", (org, result.run_id))]
            row = conn.execute("SELECT count(*) FROM universal_transaction_lines WHERE organization_id = %s "
                               "AND transaction_id = ANY(%s)", (org, originals)).fetchone()
        lines = int(row[0]) if row else 0
        # per original: 2 headers + 2 x its lines inserted; twin total, original (reverse), original (mark) updated
        tier2_writes = got.migrated * 5 + lines * 2
        t2 = got.seconds.get("reverse_repost", 0.0)
        t3 = got.seconds.get("reporting_alias", 0.0)
        t0 = time.monotonic()
        rb = rollback_run(dsn, result.run_id).org(org)
        rollback_s = time.monotonic() - t0
        rb_rows = rb.originals_restored + rb.reposts_deleted + rb.reversals_deleted + rb.aliases_restored + lines * 2
        tier2_rate = got.migrated / t2 if t2 else None
        out: dict[str, Any] = {
            "size": size, "seed": seed, "server": server.kind if server else "dsn", "workers": workers,
            "batch_size": batch_size or spec.execution.batch_size, "adaptive_chunks": batch_size is None,
            "fixture_seconds": round(fixture_s, 2),
            "candidates": got.candidates, "migrated": got.migrated, "aliased": got.aliased,
            "original_lines": lines, "quarantined": got.quarantined_total, "status": got.status,
            "tier2_seconds": round(t2, 2), "tier2_txn_per_second": round(tier2_rate, 1) if tier2_rate else None,
            "tier2_row_writes_per_second": round(tier2_writes / t2) if t2 else None,
            "tier3_seconds": round(t3, 2), "tier3_rows_per_second": round(got.aliased / t3, 1) if t3 else None,
            "chunk_lock_hold_ms": {t: clock.hold_ms(t) for t in TIERS},
            "backend_cpu_ms_per_candidate": {t: clock.cpu_ms_per_candidate(t) for t in TIERS},
            "runner_cpu_seconds": round(runner_cpu, 2),
            "engine_chunk_seconds": got.chunk_seconds,
            "entities_seconds": round(got.seconds.get("entities", 0.0), 2),
            "run_seconds": round(got.seconds.get("total", 0.0), 2),
            "rollback_seconds": round(rollback_s, 2), "rollback_status": rb.status,
            "rollback_rows_per_second": round(rb_rows / rollback_s) if rollback_s else None,
        }
        if pair_sample and originals:
            # After the rollback the originals are v1 rows again: the same rows the engine migrated.
            vacuum(dsn)
            pair = bare_pair(dsn, org, [str(o) for o in originals[:pair_sample]])
            out["bare_pair"] = pair
            ours_cpu = out["backend_cpu_ms_per_candidate"]["reverse_repost"]
            net = pair.get("pair_net_cpu_ms")
            out["engine_vs_pair_cpu"] = round(net / ours_cpu, 3) if net and ours_cpu else None
        if pair_sample:
            out["everyday"] = everyday_costs(dsn, org)
        if ceiling and originals:
            vacuum(dsn)
            chunks = max(1, len(clock.commits["reverse_repost"]))
            ceil = raw_ceiling(dsn, org, [str(o) for o in originals], chunks)
            out["ceiling"] = ceil
            rate = ceil["candidates_per_second"]
            out["ceiling_ratio"] = round(tier2_rate / rate, 3) if tier2_rate and rate else None
            ours = out["backend_cpu_ms_per_candidate"]["reverse_repost"]
            theirs = ceil["backend_cpu_ms_per_candidate"]
            out["ceiling_ratio_cpu"] = round(theirs / ours, 3) if ours and theirs else None
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        out["load_average"] = {"before": [round(x, 2) for x in load_before],
                               "after": [round(x, 2) for x in os.getloadavg()]}
        return out
    finally:
        if server is not None:
            server.stop()


def _columns(conn: psycopg.Connection[Any], table: str, skip: tuple[str, ...]) -> list[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                        "AND table_name = %s AND is_generated = 'NEVER' ORDER BY ordinal_position", (table,))
    return [r[0] for r in rows if r[0] not in skip]


def raw_ceiling(dsn: str, org: str, txn_ids: list[str], chunks: int) -> dict[str, Any]:
    """INSERT ... SELECT two copies of every given header and its lines into a scratch organisation, in `chunks`
    committed transactions (synchronous_commit as the server has it), and time it. Scratch rows are deleted."""
    scratch = str(uuid.uuid4())
    actor = str(contract.MIGRATION_ACTOR_ID)
    tag = scratch[:8]
    per = -(-len(txn_ids) // chunks)
    with connect(dsn) as conn:
        hcols = _columns(conn, "universal_transactions", HEADER_SKIP)
        lcols = _columns(conn, "universal_transaction_lines", LINE_SKIP)
        conn.execute("INSERT INTO core_organizations (id, organization_name, organization_code, created_by, "
                     "updated_by) VALUES (%s, %s, %s, %s, %s)",
                     (scratch, f"ceiling {tag}", f"CEIL-{tag}", actor, actor))
        conn.commit()
        # One statement per chunk: the header copies (new id, new code) in a CTE, their lines in the main INSERT.
        stmt = sql.SQL(
            "WITH src AS MATERIALIZED ("
            " SELECT h.*, k, gen_random_uuid() AS new_id"
            "   FROM universal_transactions h CROSS JOIN generate_series(1, 2) k"
            "  WHERE h.organization_id = %(org)s AND h.id = ANY(%(ids)s::uuid[])),"
            " heads AS (INSERT INTO universal_transactions (id, organization_id, transaction_code, {h_list})"
            "  SELECT s.new_id, %(scratch)s, coalesce(s.transaction_code, s.id::text) || '-C' || s.k || %(tag)s,"
            "         {h_sel} FROM src s)"
            " INSERT INTO universal_transaction_lines (id, organization_id, transaction_id, {l_list})"
            " SELECT gen_random_uuid(), %(scratch)s, s.new_id, {l_sel}"
            "   FROM src s JOIN universal_transaction_lines l"
            "     ON l.organization_id = %(org)s AND l.transaction_id = s.id").format(
            h_list=sql.SQL(", ").join(map(sql.Identifier, hcols)),
            h_sel=sql.SQL(", ").join(sql.Identifier("s", c) for c in hcols),
            l_list=sql.SQL(", ").join(map(sql.Identifier, lcols)),
            l_sel=sql.SQL(", ").join(sql.Identifier("l", c) for c in lcols))
        headers = line_rows = 0
        cpu0 = backend_cpu_seconds(conn.info.backend_pid)
        t0 = time.monotonic()
        for pos in range(0, len(txn_ids), per):
            with conn.transaction():
                conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")  # docs/contract.md §7: gen_random_uuid()
                cur = conn.execute(stmt, {"org": org, "ids": txn_ids[pos:pos + per], "scratch": scratch,
                                          "tag": f"-{tag}"})
                line_rows += cur.rowcount
                headers += 2 * len(txn_ids[pos:pos + per])
        seconds = time.monotonic() - t0
        cpu1 = backend_cpu_seconds(conn.info.backend_pid)
        with conn.transaction():
            conn.execute("DELETE FROM universal_transaction_lines WHERE organization_id = %s", (scratch,))
            conn.execute("DELETE FROM universal_transactions WHERE organization_id = %s", (scratch,))
            conn.execute("DELETE FROM core_organizations WHERE id = %s", (scratch,))
    return {"seconds": round(seconds, 2), "transactions": chunks, "headers": headers, "lines": line_rows,
            "candidates_per_second": round(len(txn_ids) / seconds, 1) if seconds else None,
            "rows_per_second": round((headers + line_rows) / seconds) if seconds else None,
            "backend_cpu_ms_per_candidate": round((cpu1 - cpu0) * 1000 / len(txn_ids), 3)
            if cpu0 is not None and cpu1 is not None and txn_ids else None}


# The physical bound of tier 2: HERA's own two RPCs per transaction and nothing else. Arguments are built from the
# original exactly as the engine passes them (header columns, the line objects with a top-level side).
_PAIR_ARGS = """
    WITH arg AS MATERIALIZED (
        SELECT h.*, regexp_replace(h.smart_code, '\\.[vV]([0-9]+)$', '.v2') AS v2_code,
               (SELECT coalesce(jsonb_agg(coalesce(l.line_data, '{}'::jsonb) || jsonb_build_object(
                            'line_number', l.line_number, 'entity_id', l.entity_id, 'line_type', l.line_type,
                            'description', l.description, 'quantity', l.quantity, 'unit_amount', l.unit_amount,
                            'line_amount', l.line_amount, 'discount_amount', l.discount_amount,
                            'tax_amount', l.tax_amount, 'smart_code', l.smart_code) ORDER BY l.line_number),
                                '[]'::jsonb)
                  FROM universal_transaction_lines l
                 WHERE l.organization_id = h.organization_id AND l.transaction_id = h.id) AS lines
          FROM universal_transactions h
         WHERE h.organization_id = %(org)s AND h.id = ANY(%(ids)s::uuid[]))"""
_REVERSE = """hera_txn_reverse_v1(p_organization_id => a.organization_id, p_transaction_id => a.id,
                                  p_reversal_date => a.transaction_date, p_reason => 'bench',
                                  p_actor_user_id => %(actor)s::uuid)"""
_EMIT = """hera_txn_emit_v1(
        p_organization_id => a.organization_id, p_transaction_type => a.transaction_type,
        p_smart_code => a.v2_code::varchar, p_transaction_code => a.transaction_code || '-BENCH',
        p_transaction_date => a.transaction_date, p_source_entity_id => a.source_entity_id,
        p_target_entity_id => a.target_entity_id, p_total_amount => a.total_amount,
        p_transaction_status => a.transaction_status, p_reference_number => a.reference_number,
        p_external_reference => a.external_reference, p_business_context => a.business_context,
        p_metadata => a.metadata, p_approval_required => a.approval_required, p_approved_by => a.approved_by,
        p_approved_at => a.approved_at, p_transaction_currency_code => a.transaction_currency_code,
        p_base_currency_code => a.base_currency_code, p_exchange_rate => a.exchange_rate,
        p_exchange_rate_date => a.exchange_rate_date, p_exchange_rate_type => a.exchange_rate_type,
        p_fiscal_period_entity_id => a.fiscal_period_entity_id, p_fiscal_year => a.fiscal_year,
        p_fiscal_period => a.fiscal_period, p_posting_period_code => a.posting_period_code, p_lines => a.lines,
        p_actor_user_id => %(actor)s::uuid)"""
PAIR_VARIANTS = {
    "arguments": "count(a.lines)",
    "reverse": f"count({_REVERSE})",
    "emit": f"count({_EMIT})",
    "pair": f"count({_REVERSE}) + count({_EMIT})",
}


def vacuum(dsn: str) -> None:
    """VACUUM ANALYZE the two transaction tables, so each measurement starts without the previous one's garbage."""
    with connect(dsn, autocommit=True) as conn:
        for table in ("universal_transactions", "universal_transaction_lines"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))


def bare_pair(dsn: str, org: str, txn_ids: list[str], *, chunk: int = 500) -> dict[str, Any]:
    """Backend CPU (and wall time) per transaction of HERA's reverse + emit pair on the given v1 originals, called
    in one statement per chunk like the engine's step 2, every chunk ROLLED BACK so the data stays as it was.

    Variants: `arguments` (building the emit arguments only), `reverse`, `emit`, `pair` (both). `pair_net_cpu_ms` is
    pair minus arguments: the RPCs' own cost, the bound no engine can go below on one session."""
    out: dict[str, Any] = {"transactions": len(txn_ids), "chunk": chunk}
    with connect(dsn) as conn:
        pid = conn.info.backend_pid
        statements = {name: sql.SQL(" ").join([sql.SQL(_PAIR_ARGS), sql.SQL("SELECT"), sql.SQL(call),
                                               sql.SQL("FROM arg a")]) for name, call in PAIR_VARIANTS.items()}
        # One chunk of the pair first, discarded: the first variant must not pay for cold caches and plans.
        actor = str(contract.MIGRATION_ACTOR_ID)
        conn.execute(statements["pair"], {"org": org, "ids": txn_ids[:chunk], "actor": actor})
        conn.rollback()
        for name, stmt in statements.items():
            cpu0, t0 = backend_cpu_seconds(pid), time.monotonic()
            for pos in range(0, len(txn_ids), chunk):
                conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                conn.execute(stmt, {"org": org, "ids": txn_ids[pos:pos + chunk], "actor": actor})
                conn.rollback()
            wall, cpu1 = time.monotonic() - t0, backend_cpu_seconds(pid)
            n = max(1, len(txn_ids))
            out[f"{name}_wall_ms"] = round(wall * 1000 / n, 3)
            out[f"{name}_cpu_ms"] = (round((cpu1 - cpu0) * 1000 / n, 3)
                                     if cpu0 is not None and cpu1 is not None else None)
    args, pair = out.get("arguments_cpu_ms"), out.get("pair_cpu_ms")
    out["pair_net_cpu_ms"] = round(pair - args, 3) if pair is not None and args is not None else None
    out["pair_bound_txn_per_second"] = round(1000 / out["pair_net_cpu_ms"], 1) if out["pair_net_cpu_ms"] else None
    return out


# Everyday HERA work besides tier 2, per operation, so a stand-in core can be compared with production beyond the
# RPC pair: the entity normaliser and the dynamic-data validator run on every entity and field write, and the v1
# read/list RPCs are what the load measures. Writes are rolled back.
_DYNAMIC_INSERT = """
        INSERT INTO core_dynamic_data (organization_id, entity_id, field_name, field_type, field_value_text,
                                       smart_code, created_by, updated_by)
        SELECT %(org)s, e.id, 'bench_field_' || k, 'text', 'x', 'HERA.FINANCE.COA.FIELD.BENCH.v1', %(actor)s::uuid,
               %(actor)s::uuid
          FROM (SELECT id FROM core_entities WHERE organization_id = %(org)s ORDER BY id LIMIT 500) e
         CROSS JOIN generate_series(1, 10) k"""
# name: (setup statement or "", measured statement); per-operation cost = CPU of the measured one / its rows
_OPS: dict[str, tuple[str, str]] = {
    "entity_insert": ("", """
        INSERT INTO core_entities (organization_id, entity_type, entity_name, entity_code, smart_code,
                                   created_by, updated_by)
        SELECT %(org)s, 'GL_ACCOUNT', 'bench ' || g, 'B-' || g, 'HERA.FINANCE.COA.ACCOUNT.BENCH.v1',
               %(actor)s::uuid, %(actor)s::uuid
          FROM generate_series(1, 5000) g"""),
    "dynamic_insert": ("", _DYNAMIC_INSERT),
    "dynamic_update": (_DYNAMIC_INSERT, """
        UPDATE core_dynamic_data SET field_value_text = 'y', updated_by = %(actor)s
         WHERE organization_id = %(org)s AND field_name LIKE 'bench\\_field\\_%%'"""),
    "read_v1": ("", """
        SELECT hera_txn_read_v1(p_org_id => h.organization_id, p_transaction_id => h.id, p_include_lines => true,
                                p_include_deleted => false)
          FROM (SELECT organization_id, id FROM universal_transactions WHERE organization_id = %(org)s
                 ORDER BY id LIMIT 5000) h"""),
    "query_v1": ("", """
        SELECT hera_txn_query_v1(p_org_id => %(org)s, p_filters => jsonb_build_object('limit', 20, 'offset', g * 20))
          FROM generate_series(0, 199) g"""),
}


def everyday_costs(dsn: str, org: str, repeat: int = 3) -> dict[str, float | None]:
    """Backend CPU ms per operation of _OPS on one organisation (the median of `repeat` runs; the clock ticks in
    10 ms, so each run does thousands of operations); every write rolled back."""
    out: dict[str, float | None] = {}
    with connect(dsn) as conn:
        pid = conn.info.backend_pid
        for name, (setup, text) in _OPS.items():
            params = {"org": org, "actor": str(contract.MIGRATION_ACTOR_ID)}
            samples: list[float] = []
            for _ in range(repeat):
                if setup:
                    conn.execute(sql.SQL(setup), params)
                cpu0 = backend_cpu_seconds(pid)
                rows = conn.execute(sql.SQL(text), params).rowcount  # fixed text, values bound
                cpu1 = backend_cpu_seconds(pid)
                conn.rollback()
                if cpu0 is not None and cpu1 is not None:
                    samples.append((cpu1 - cpu0) * 1000 / max(rows, 1))
            out[f"{name}_cpu_ms"] = round(statistics.median(samples), 4) if samples else None
    return out


if __name__ == "__main__":  # python -m tests.tools.bench_hook [size] [seed] [dsn]
    import json
    import sys

    args = sys.argv[1:]
    print(json.dumps(bench_engine(args[2] if len(args) > 2 else None, args[0] if args else "medium",
                                  int(args[1]) if len(args) > 1 else 42), indent=2, default=str))

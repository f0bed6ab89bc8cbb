"""Tier 2 against its physical bound at 1, 2 and 4 sessions, and the runner's memory: `nox -s bench` (after the
main bench) or `python -m tests.tools.bench_scaling --sizes small,medium`.

Per size and session count N, on a database of its own (twins: same size, same seed, same data):
1. the engine migrates the organisation with `--workers N` (tier-2 rate = originals / tier-2 seconds);
2. the run is rolled back on N sessions (its time is printed);
3. the RPC bound: HERA's bare reverse + emit pair on the same originals, one statement per chunk of 500, every
   chunk rolled back, in N sessions on disjoint slices at once (rate = originals / wall time);
4. the contract floor: the same plus one bare UPDATE of each original's metadata.migration (CONTRACT_MARK), the
   least a run that keeps the correlation contract can do.
It prints engine ÷ bound per N (target ≥ 0.9) and engine ÷ floor, the scaling factor rate(N) ÷ rate(1) of both
(target ≥ 1.7 at 2 on this 2-core machine), the bound's backend CPU ms per transaction, and the projection to
1,000 txn/s on production's schema. Then the peak RSS of a whole `hera-migrate run` (snapshots, migration,
validation) per size, measured on the child process (target < 1 GB). With HERA_REAL_SCHEMA set, steps 1–4 run on
production's schema too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from psycopg import sql

from runner import contract
from runner.db import providers, realcore, schema
from runner.db.connect import connect, with_database
from runner.engine.migrate import run_migration
from runner.engine.rollback import rollback_run
from runner.plan import build_plan
from runner.resources import data_dir
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.tools.bench_hook import _PAIR_ARGS, PAIR_VARIANTS, backend_cpu_seconds, vacuum

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = (1, 2, 4)
CHUNK = 500


# The least the correlation contract (docs/contract.md §6) adds to the pair: every original carries its own
# metadata.migration, and HERA's reverse gives no way to write it, so a second UPDATE of each original is
# unavoidable. This one writes a bare mark of the same shape: no pre-image, no checks (the engine's mark writes both).
CONTRACT_MARK = sql.SQL("""UPDATE universal_transactions AS t
   SET updated_by = %(actor)s::uuid,
       metadata = coalesce(t.metadata, '{}'::jsonb) || jsonb_build_object('migration', jsonb_build_object(
           'run_id', 'bench', 'role', 'original', 'repost_id', t.id, 'reversal_id', t.id))
 WHERE t.organization_id = %(org)s AND t.id = ANY(%(ids)s::uuid[])""")


def pair_bound(dsn: str, org: str, txn_ids: list[str], sessions: int, *, mark: bool = False) -> dict[str, Any]:
    """HERA's reverse + emit pair on `txn_ids` in `sessions` sessions at once (disjoint slices), rolled back; with
    `mark`, each chunk also writes the contract's bare mark on its originals (CONTRACT_MARK) before the rollback."""
    stmt = sql.SQL(" ").join([sql.SQL(_PAIR_ARGS), sql.SQL("SELECT"), sql.SQL(PAIR_VARIANTS["pair"]),
                              sql.SQL("FROM arg a")])
    actor = str(contract.MIGRATION_ACTOR_ID)
    slices = [txn_ids[i::sessions] for i in range(sessions)]
    cpu: list[float] = [0.0] * sessions
    ready = threading.Barrier(sessions + 1)

    def work(i: int) -> None:
        with connect(dsn) as conn:
            pid = conn.info.backend_pid
            conn.execute(stmt, {"org": org, "ids": slices[i][:50], "actor": actor})  # warm plans and caches
            conn.rollback()
            ready.wait()
            c0 = backend_cpu_seconds(pid) or 0.0
            for pos in range(0, len(slices[i]), CHUNK):
                conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                params = {"org": org, "ids": slices[i][pos:pos + CHUNK], "actor": actor}
                conn.execute(stmt, params)
                if mark:
                    conn.execute(CONTRACT_MARK, params)
                conn.rollback()
            cpu[i] = (backend_cpu_seconds(pid) or 0.0) - c0

    threads = [threading.Thread(target=work, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    n = max(1, len(txn_ids))
    return {"sessions": sessions, "transactions": len(txn_ids), "wall_seconds": round(wall, 2),
            "txn_per_second": round(n / wall, 1) if wall else None,
            "backend_cpu_ms_per_txn": round(sum(cpu) * 1000 / n, 3)}


def one_count(dsn: str, size: str, seed: int, sessions: int) -> dict[str, Any]:
    spec = load_spec(data_dir("specs") / "finance-dna-v2.yaml")
    org = generate(dsn, size=size, seed=seed).organizations[0].organization_id
    vacuum(dsn)
    plan = build_plan(dsn, spec, (org,), workers=sessions)
    estimate = plan.as_dict()["estimate"]
    t0 = time.monotonic()
    result = run_migration(dsn, spec, orgs=(org,), workers=sessions, now=True)
    migrate_s = time.monotonic() - t0
    got = result.org(org)
    t2 = got.seconds.get("reverse_repost", 0.0)
    with connect(dsn) as conn:
        originals = [str(r[0]) for r in conn.execute(
            "SELECT id FROM universal_transactions WHERE organization_id = %s AND metadata -> 'migration' ->> "
            "'run_id' = %s AND metadata -> 'migration' ->> 'role' = 'original' ORDER BY id", (org, result.run_id))]
    t0 = time.monotonic()
    rollback_run(dsn, result.run_id, workers=sessions)
    rollback_s = time.monotonic() - t0
    vacuum(dsn)  # the originals are v1 rows again: the bound runs on exactly what the engine migrated
    bound = pair_bound(dsn, org, originals, sessions)
    vacuum(dsn)
    floor = pair_bound(dsn, org, originals, sessions, mark=True)
    engine_rate = got.migrated / t2 if t2 else None

    def ratio(b: dict[str, Any]) -> float | None:
        return round(engine_rate / b["txn_per_second"], 3) if engine_rate and b["txn_per_second"] else None

    return {"sessions": sessions, "migrated": got.migrated, "engine_txn_per_second": round(engine_rate, 1)
            if engine_rate else None, "bound": bound, "contract_floor": floor,
            "rollback_seconds": round(rollback_s, 2), "engine_vs_bound": ratio(bound),
            "migrate_seconds": round(migrate_s, 2), "plan_estimate": estimate,
            "plan_error_pct": round(100 * (estimate["seconds"] - migrate_s) / migrate_s, 1) if migrate_s else None,
            "engine_vs_contract_floor": ratio(floor)}


def on_core(server_dsn: str, template: str, size: str, seed: int) -> list[dict[str, Any]]:
    out = []
    for n in SESSIONS:
        name = f"scale_{template}_{n}"
        with connect(with_database(server_dsn, "postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                           sql.Identifier(template)))
        try:
            out.append(one_count(with_database(server_dsn, name), size, seed, n))
        finally:
            with connect(with_database(server_dsn, "postgres"), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        print(f"  {template} {size} sessions={n}: {json.dumps(out[-1])}", flush=True)
    return out


def run_peak_rss(server_dsn: str, template: str, size: str, seed: int, tmp: Path) -> dict[str, Any]:
    """A whole `hera-migrate run --workers 2` in a child process; its peak RSS (the child's own, from wait4)."""
    name = f"rss_{size}"
    with connect(with_database(server_dsn, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    dsn = with_database(server_dsn, name)
    try:
        generate(dsn, size=size, seed=seed)
        argv = [sys.executable, "-m", "runner", "--dsn", dsn, "run", str(ROOT / "specs" / "finance-dna-v2.yaml"),
                "--run-id", f"rss-{size}", "--workers", "2", "--now", "--no-progress", "--report-dir",
                str(tmp / f"rss-{size}")]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        return {"exit_code": os.waitstatus_to_exitcode(status), "seconds": round(time.monotonic() - t0, 1),
                "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    finally:
        with connect(with_database(server_dsn, "postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'size':<11}{'core':<6}{'N':>3}{'engine txn/s':>14}{'bound txn/s':>13}{'engine/bound':>14}"
             f"{'engine/floor':>14}{'engine xN':>11}{'bound xN':>10}{'bound CPU ms':>14}{'rollback s':>12}"
             f"{'plan err %':>12}"]
    for r in results:
        for core, rows in r["cores"].items():
            base = rows[0] if rows else {}
            for row in rows:
                e1, b1 = base.get("engine_txn_per_second"), (base.get("bound") or {}).get("txn_per_second")
                e, b = row.get("engine_txn_per_second"), row["bound"].get("txn_per_second")
                lines.append(f"{r['size']:<11}{core:<6}{row['sessions']:>3}{_f(e):>14}{_f(b):>13}"
                             f"{_f(row.get('engine_vs_bound'), '.3f'):>14}"
                             f"{_f(row.get('engine_vs_contract_floor'), '.3f'):>14}"
                             f"{_f(e / e1 if e and e1 else None, '.2f'):>11}"
                             f"{_f(b / b1 if b and b1 else None, '.2f'):>10}"
                             f"{_f(row['bound'].get('backend_cpu_ms_per_txn'), '.3f'):>14}"
                             f"{_f(row.get('rollback_seconds'), '.1f'):>12}"
                             f"{_f(row.get('plan_error_pct'), '+.1f'):>12}")
        rss = r.get("run") or {}
        lines.append(f"{r['size']:<11}whole `run --workers 2`: peak RSS {rss.get('peak_rss_mb')} MB (target < 1,024), "
                     f"{rss.get('seconds')} s, exit {rss.get('exit_code')}")
        real = r["cores"].get("real")
        if real:
            ms = real[0]["bound"].get("backend_cpu_ms_per_txn")
            if ms:
                per_core = 1000 / ms
                lines.append(f"{r['size']:<11}production's schema: {ms:.2f} CPU ms per pair → {per_core:,.0f} txn/s "
                             f"per busy core; 1,000 txn/s needs ≥ {math.ceil(1000 / per_core)} cores at perfect "
                             "scaling (÷ the measured scaling factor for the real need)")
    lines.append("engine/bound: ÷ HERA's bare reverse + emit pair (target ≥ 0.9); engine/floor: ÷ the pair plus the "
                 "contract's bare mark UPDATE of each original (the least any run keeping docs/contract.md §6 does); "
                 "rollback s: `rollback --workers N` of the same run; plan err %: `plan --workers N`'s estimate "
                 "against the measured migrate phase (target within ±30)")
    return "\n".join(lines)


def _f(v: Any, spec: str = ",.1f") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.bench_scaling")
    parser.add_argument("--sizes", default="small,medium")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("reports/bench/scaling.json"))
    args = parser.parse_args(argv)
    srv = providers.start_local()
    results: list[dict[str, Any]] = []
    try:
        schema.install(srv.dsn)  # the `hera` database: our core, the template of every twin
        found = realcore.configured()
        templates = {"ours": conninfo_db(srv.dsn)}
        if found is not None:
            with connect(with_database(srv.dsn, "postgres"), autocommit=True) as admin:
                admin.execute("CREATE DATABASE hera_real_template")
            realcore.load(with_database(srv.dsn, "hera_real_template"), found)
            templates["real"] = "hera_real_template"
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"hera-scaling-{os.getpid()}"
        for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            print(f"scaling {size} ...", flush=True)
            entry: dict[str, Any] = {"size": size, "seed": args.seed, "cores": {}}
            for core, template in templates.items():
                entry["cores"][core] = on_core(srv.dsn, template, size, args.seed)
            entry["run"] = run_peak_rss(srv.dsn, templates["ours"], size, args.seed, tmp)
            results.append(entry)
    finally:
        srv.stop()
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "sizes": results,
                                    "self_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                              / 1024)}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


def conninfo_db(dsn: str) -> str:
    from psycopg import conninfo

    return str(conninfo.conninfo_to_dict(dsn).get("dbname") or "hera")


if __name__ == "__main__":
    main()

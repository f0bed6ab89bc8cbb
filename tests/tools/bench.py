"""Benchmarks (run by `nox -s bench`): print numbers and write reports/bench/bench.json; no pass/fail, no timed tests.

    python -m tests.tools.bench --sizes small,medium[,enterprise] [--seed 42] [--out reports/bench/bench.json]

Each size runs in its own child process (so its peak RSS is its own) on fresh embedded servers:
1. fixture load: the generator's rows/s (own server);
2. engine (tests.tools.bench_hook.bench_engine, own server): tier-2 txn/s and row-writes/s, tier-3 rows/s,
   rollback seconds, the physical bound measured in the same run — HERA's own reverse + emit pair on the same
   rows, nothing else (`bare_pair`) — and the raw PostgreSQL ceiling (INSERT … SELECT of the same number of header
   and line rows, no logic), so our rate is printed as ratios of both. With HERA_REAL_SCHEMA set, the same
   engine bench runs first on a second database of the same server holding HERA's production schema (§6 stubs +
   that file), and the table puts both cores side by side: a stand-in that is cheaper than production would make
   every other number here optimistic;
3. on the same database, rolled back to v1 by step 2: before-snapshot rows/s → a second run → validation seconds
   (after-snapshot, diff, checks) → our before/after diff alone, and the same diff by `reladiff` (join mode) on
   the same tables when it is installed (`pip install -e .[bench]`), as a ratio.
Targets of the issue are printed beside the numbers (enterprise tier 2 ≥ 5,000 txn/s and ≥ 0.6 of the ceiling,
end to end < 5 min, rollback < 60 s, runner RSS < 1 GB, diff ≥ 5× faster than reladiff): reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runner.db import providers, realcore, schema
from runner.synth.generate import generate

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `tests` is importable from there
TARGETS = {"tier2_txn_per_second": 5000, "ceiling_ratio": 0.6, "end_to_end_seconds": 300, "rollback_seconds": 60,
           "peak_rss_mb": 1024, "diff_speedup_vs_reladiff": 5}
DIFF_TABLES = ("universal_transactions", "universal_transaction_lines")


def bench_fixtures(size: str, seed: int) -> dict[str, Any]:
    srv = providers.start_local()
    try:
        t0 = time.monotonic()
        schema.install(srv.dsn)
        schema_s = time.monotonic() - t0
        result = generate(srv.dsn, size=size, seed=seed)
        rows = result.rows_total
        org = result.organizations[0]
        return {"size": size, "server": srv.kind, "schema_seconds": round(schema_s, 2),
                "fixture_seconds": round(result.seconds, 2), "rows": rows,
                "rows_per_second": round(rows / result.seconds), "headers": org.rows["universal_transactions"],
                "lines": org.rows["universal_transaction_lines"], "bulk": result.bulk.bulk}
    finally:
        srv.stop()


def reladiff_available() -> str | None:
    """The installed reladiff version, or None."""
    try:
        from importlib.metadata import version

        import reladiff  # noqa: F401

        return version("reladiff")
    except Exception:
        return None


def _copy_before(dsn: str) -> None:
    """The pre-run state of the diffed tables, for reladiff (our diff reads the before-snapshot instead)."""
    from runner.db.connect import connect

    with connect(dsn) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_before")
        for t in DIFF_TABLES:
            conn.execute(f"CREATE TABLE bench_before.{t} AS TABLE public.{t}")
            conn.execute(f"ALTER TABLE bench_before.{t} ADD PRIMARY KEY (id)")
        conn.commit()


def _reladiff(dsn: str) -> dict[str, Any]:
    """reladiff's join-mode diff of bench_before.<t> against public.<t> (same database), timed per table."""
    from psycopg import conninfo
    from reladiff import Algorithm, connect_to_table, diff_tables

    from runner.db.connect import connect

    p = conninfo.conninfo_to_dict(dsn)
    uri = f"postgresql://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"
    out: dict[str, Any] = {"seconds": 0.0, "differences": {}}
    with connect(dsn) as conn:
        cols = {t: [str(r[0]) for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
            "AND column_name <> 'id' AND data_type NOT IN ('jsonb', 'json', 'ARRAY', 'USER-DEFINED') "
            "ORDER BY ordinal_position", (t,)).fetchall()] for t in DIFF_TABLES}
    for t in DIFF_TABLES:
        t0 = time.monotonic()
        a = connect_to_table(uri, ("bench_before", t), "id")
        b = connect_to_table(uri, ("public", t), "id")
        n = sum(1 for _ in diff_tables(a, b, extra_columns=tuple(cols[t]), algorithm=Algorithm.JOINDIFF))
        out["seconds"] += time.monotonic() - t0
        out["differences"][t] = n
    out["seconds"] = round(out["seconds"], 3)
    out["note"] = "jsonb columns left out (reladiff does not compare them); ours compares every column"
    return out


def bench_pipeline(size: str, seed: int) -> dict[str, Any]:
    """Steps 2 and 3 of the module docstring on one fresh server."""
    from runner.db.connect import connect, with_database
    from runner.engine import run_migration
    from runner.resources import data_dir
    from runner.snapshot.extract import take_snapshot
    from runner.spec import load_spec
    from runner.validate import validate_run
    from runner.validate.snapshot import run_diff
    from tests.tools.bench_hook import bench_engine

    srv = providers.start_local()
    try:
        schema.install(srv.dsn)
        real: dict[str, Any] | None = None
        found = realcore.configured()
        if found is not None:
            with connect(with_database(srv.dsn, "postgres"), autocommit=True) as admin:
                admin.execute("CREATE DATABASE hera_real")
            real_dsn = with_database(srv.dsn, "hera_real")
            load_s = realcore.load(real_dsn, found)
            real = {"schema_sha256": found.sha256, "load_seconds": round(load_s, 2),
                    "engine": bench_engine(dsn=real_dsn, size=size, seed=seed)}
        t0 = time.monotonic()
        engine = bench_engine(dsn=srv.dsn, size=size, seed=seed)
        engine_s = time.monotonic() - t0
        with connect(srv.dsn) as conn:
            org = str((conn.execute("SELECT id FROM core_organizations ORDER BY created_at DESC LIMIT 1")
                       .fetchone() or [""])[0])
        spec = load_spec(data_dir("specs") / "finance-dna-v2.yaml")
        version = reladiff_available()
        if version:
            _copy_before(srv.dsn)
        with tempfile.TemporaryDirectory(prefix="hera-bench-") as tmp:
            snap = Path(tmp) / "snapshots.duckdb"
            info = take_snapshot(srv.dsn, [org], snap, "before")
            snap_rows = sum(info.rows.values())
            t1 = time.monotonic()
            result = run_migration(srv.dsn, spec, orgs=(org,), run_id=f"bench-{size}", now=True)
            run_s = time.monotonic() - t1
            t2 = time.monotonic()
            outcome = validate_run(srv.dsn, spec, result.run_id, report_dir=Path(tmp) / "report",
                                   run=result, snapshot_path=snap)
            validate_s = time.monotonic() - t2
            phases = json.loads(outcome.results_path.read_text(encoding="utf-8"))["performance"]["phases"]
            t3 = time.monotonic()
            run_diff(snap, result.run_id)
            diff_only_s = time.monotonic() - t3
        ours_diff_s = diff_only_s + float(phases.get("validate.snapshot_after", 0.0))
        out: dict[str, Any] = {
            "engine": engine, "engine_seconds": round(engine_s, 2), "real": real,
            "snapshot_rows": snap_rows, "snapshot_seconds": round(info.seconds, 3),
            "snapshot_rows_per_second": round(snap_rows / info.seconds) if info.seconds else None,
            "second_run_seconds": round(run_s, 2), "second_run_rates": result.rates,
            "validation_seconds": round(validate_s, 2), "validation_phases": phases,
            "validation_exit_code": outcome.exit_code,
            "diff_seconds": round(ours_diff_s, 3), "diff_only_seconds": round(diff_only_s, 3),
        }
        out["end_to_end_seconds"] = round(float(info.seconds) + run_s + validate_s, 2)
        if version:
            try:
                rd = _reladiff(srv.dsn)
                rd["version"] = version
                out["reladiff"] = rd
                out["diff_speedup_vs_reladiff"] = round(rd["seconds"] / ours_diff_s, 2) if ours_diff_s else None
            except Exception as exc:  # reported, never fatal
                out["reladiff"] = {"version": version, "error": f"{type(exc).__name__}: {exc}"}
        else:
            out["reladiff"] = {"error": "reladiff is not installed (pip install -e '.[bench]'); no comparison"}
        return out
    finally:
        srv.stop()


def ceiling(engine: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(ceiling txn/s, ceiling rows/s, our tier-2 rate as a ratio of it) from bench_engine's `ceiling` block."""
    found = engine.get("ceiling")
    block: dict[str, Any] = found if isinstance(found, dict) else {}
    raw = block.get("candidates_per_second", engine.get("ceiling_txn_per_second"))
    rows = block.get("rows_per_second")
    ratio = engine.get("ceiling_ratio")
    ours = engine.get("tier2_txn_per_second")
    if ratio is None and ours and raw:
        ratio = round(float(ours) / float(raw), 4)
    return raw, rows, ratio


def one_size(size: str, seed: int) -> dict[str, Any]:
    t0 = time.monotonic()
    out: dict[str, Any] = {"size": size, "seed": seed, "fixtures": bench_fixtures(size, seed)}
    out.update(bench_pipeline(size, seed))
    out["ceiling_txn_per_second"], out["ceiling_rows_per_second"], out["ceiling_ratio"] = ceiling(out["engine"])
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["bench_seconds"] = round(time.monotonic() - t0, 1)
    return out


def table(results: list[dict[str, Any]]) -> str:
    def g(r: dict[str, Any], *path: str) -> Any:
        return _dig(r, path)

    def f(v: Any, spec: str = ",.0f") -> str:
        return _fmt(v, spec)

    rows = [("fixture load rows/s", ("fixtures", "rows_per_second"), ",.0f", None),
            ("tier 2 txn/s", ("engine", "tier2_txn_per_second"), ",.1f", "≥ 5,000 (enterprise)"),
            ("tier 2 row-writes/s", ("engine", "tier2_row_writes_per_second"), ",.0f", None),
            ("HERA pair alone, CPU ms/txn", ("engine", "bare_pair", "pair_net_cpu_ms"), ".3f", None),
            ("tier 2 / pair bound (CPU)", ("engine", "engine_vs_pair_cpu"), ".3f", None),
            ("raw ceiling txn/s (INSERT…SELECT)", ("ceiling_txn_per_second",), ",.0f", None),
            ("raw ceiling rows/s", ("ceiling_rows_per_second",), ",.0f", None),
            ("tier 2 / ceiling", ("ceiling_ratio",), ".3f", "≥ 0.6"),
            ("tier 3 rows/s", ("engine", "tier3_rows_per_second"), ",.1f", None),
            ("snapshot rows/s", ("snapshot_rows_per_second",), ",.0f", None),
            ("validation s", ("validation_seconds",), ",.2f", None),
            ("rollback s", ("engine", "rollback_seconds"), ",.2f", "< 60"),
            ("end to end s (snapshot+run+validate)", ("end_to_end_seconds",), ",.1f", "< 300 (enterprise)"),
            ("our diff s (after-snapshot + diff)", ("diff_seconds",), ",.2f", None),
            ("reladiff s (join mode)", ("reladiff", "seconds"), ",.2f", None),
            ("reladiff / ours", ("diff_speedup_vs_reladiff",), ",.2f", "≥ 5"),
            ("peak RSS MB", ("peak_rss_mb",), ",.0f", "< 1,024")]
    head = f"{'':<38}" + "".join(f"{r['size']:>14}" for r in results) + "   target"
    lines = [head]
    for label, path, spec, target in rows:
        lines.append(f"{label:<38}" + "".join(f"{f(g(r, *path), spec):>14}" for r in results)
                     + (f"   {target}" if target else ""))
    lines.extend(cores_table(results))
    for r in results:
        note = g(r, "reladiff", "error")
        if note:
            lines.append(f"{r['size']}: reladiff: {note}")
        if r.get("ceiling_txn_per_second") is None:
            lines.append(f"{r['size']}: no raw ceiling: tests.tools.bench_hook.bench_engine did not report "
                         "a ceiling")
    return "\n".join(lines)


CORE_ROWS = (("bare reverse+emit pair, CPU ms/txn", ("bare_pair", "pair_net_cpu_ms"), ".3f"),
             ("  hera_txn_reverse_v1 alone, CPU ms", ("bare_pair", "reverse_cpu_ms"), ".3f"),
             ("  hera_txn_emit_v1 alone, CPU ms", ("bare_pair", "emit_cpu_ms"), ".3f"),
             ("raw ceiling, CPU ms/txn", ("ceiling", "backend_cpu_ms_per_candidate"), ".3f"),
             ("engine tier 2, CPU ms/txn", ("backend_cpu_ms_per_candidate", "reverse_repost"), ".3f"),
             ("engine tier 2, txn/s", ("tier2_txn_per_second",), ",.1f"),
             ("one-session bound (1000 / pair ms), txn/s", ("bare_pair", "pair_bound_txn_per_second"), ",.1f"),
             ("engine / pair bound (CPU)", ("engine_vs_pair_cpu",), ".3f"),
             ("entity insert, CPU ms", ("everyday", "entity_insert_cpu_ms"), ".4f"),
             ("dynamic field insert, CPU ms", ("everyday", "dynamic_insert_cpu_ms"), ".4f"),
             ("dynamic field update, CPU ms", ("everyday", "dynamic_update_cpu_ms"), ".4f"),
             ("hera_txn_read_v1 with lines, CPU ms", ("everyday", "read_v1_cpu_ms"), ".4f"),
             ("hera_txn_query_v1 page of 20, CPU ms", ("everyday", "query_v1_cpu_ms"), ".4f"))


def cores_table(results: list[dict[str, Any]]) -> list[str]:
    """Our core against HERA's production schema, same server, same run: `ours / real` per row."""
    lines: list[str] = []
    for r in results:
        real = (r.get("real") or {}).get("engine")
        if not real:
            lines.append(f"{r['size']}: HERA's production schema not measured ({realcore.ENV} not set)")
            continue
        lines.append(f"\n{r['size']}: our core vs HERA's production schema (same server, same run)")
        lines.append(f"{'':<44}{'ours':>10}{'real':>10}{'ours/real':>11}")
        for label, path, spec in CORE_ROWS:
            a, b = _dig(r.get("engine") or {}, path), _dig(real, path)
            ratio = f"{a / b:.3f}" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"
            lines.append(f"{label:<44}{_fmt(a, spec):>10}{_fmt(b, spec):>10}{ratio:>11}")
    return lines


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, int | float) else str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.bench")
    parser.add_argument("--sizes", default="small,medium", help="comma-separated: small,medium,enterprise")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("reports/bench/bench.json"))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: one size, JSON on stdout
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_size(args.one, args.seed), default=str))
        return
    results = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        print(f"bench {size} ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "tests.tools.bench", "--one", size, "--seed", str(args.seed)],
                              capture_output=True, text=True, check=False, cwd=ROOT)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
            results.append({"size": size, "error": f"exit {proc.returncode}"})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(table([r for r in results if "error" not in r]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "cpus": __import__("os").cpu_count(),
                                    "reladiff": reladiff_available(), "targets": TARGETS, "sizes": results},
                                   indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

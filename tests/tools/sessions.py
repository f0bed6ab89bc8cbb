"""The long scenarios behind `nox -s small|medium|enterprise|load` (never in the default test run).

    python -m tests.tools.sessions org --size medium        # nox -s medium
    python -m tests.tools.sessions tradeoff --size medium   # nox -s load

`org`: a fresh embedded server (new WAL segments not zero-filled, as a server in steady state recycles them:
`steady_state_wal`) → the synthetic org of that size → `run` of the Phase 7 spec under v1 load (baseline first,
auto-throttled: one throttle paces all workers, from one chunk of 10 in flight up) → validate → rollback rehearsal
on the same data → reports/<size>/ (results.json, index.html with the rehearsal, load/load.json + load.html).

Exit code of `org`: the run's (1 when a critical check or alert fired — on a noisy 2-core machine typically the
v1 impact alert) or 1 when the rollback rehearsal was not identical.

`tradeoff`: the same org migrated twice on fresh servers, without and with the auto-throttle, under the same load;
prints and writes reports/load/tradeoff.json: migration rate against v1 p95 degradation.

The rollback rehearsal compares the before-snapshot with the state after rollback row for row, leaving out the
rows the v1 load itself wrote (its actor, runner.load.v1.LOAD_ACTOR_ID): they are live traffic that a rollback
must keep, not migration effects. Everything else must be identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from runner import operate, pipeline
from runner.db import providers, schema
from runner.load.generator import LoadSettings
from runner.load.session import LoadPlan, with_run
from runner.load.v1 import LOAD_ACTOR_ID
from runner.resources import data_dir
from runner.synth.generate import generate

SPEC = "finance-dna-v2.yaml"


def steady_state_wal(dsn: str) -> None:
    """Make the fresh server write WAL like one that has been running: no zero-filled new segments.

    A server started for the session has no WAL segments to recycle, so it creates every one the run writes into and
    (wal_init_zero, the default) fills each 16 MB with zeros under the WAL write lock: every v1 request committing
    at that moment waits 30-80 ms (measured: a 1-row commit's max went from 12 to 81 ms at the switch). The
    migration writes ~23 KB of WAL per candidate (small: ~15 MB, medium: ~740 MB, one stall per 16 MB whatever its
    pace), so these stalls come with the migration's progress and no throttle can remove them; a server in steady
    state recycles old segments instead and does not have them. Off, a new segment is created sparse: the same
    durability (fsync and synchronous_commit stay on)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET wal_init_zero = off")
        conn.execute("SELECT pg_reload_conf()")


def rehearse(dsn: str, run_id: str, report_dir: Path, console: Console) -> dict[str, Any]:
    """The pipeline's rehearsal (the report is rewritten to say the run was rolled back), comparing without the
    rows the v1 load wrote."""
    return operate.rehearse_rollback(dsn, run_id, report_dir, console, exclude_created_by=LOAD_ACTOR_ID)


def org_session(size: str, seed: int, plan: LoadPlan, out: Path, console: Console, *,
                rehearsal: bool = True) -> dict[str, Any]:
    t_all = time.monotonic()
    srv = providers.start_local()
    try:
        steady_state_wal(srv.dsn)
        schema.install(srv.dsn)
        t0 = time.monotonic()
        gen = generate(srv.dsn, size=size, seed=seed)
        gen_s = time.monotonic() - t0
        org = gen.organizations[0]
        console.print(f"{size}: {org.organization_code} generated in {gen_s:.1f}s "
                      f"({org.rows['universal_transactions']:,} headers)")
        plan.settings = dataclasses.replace(plan.settings, org=org.organization_id)
        opts = pipeline.RunOptions(orgs=(org.organization_id,), run_id=f"{size}-{seed}", now=True, report_dir=out)
        outcome, hook = with_run(srv.dsn, data_dir("specs") / SPEC, opts, plan, console)
        summary: dict[str, Any] = {"size": size, "seed": seed, "exit_code": outcome.exit_code,
                                   "fixture_seconds": round(gen_s, 2), "run_id": outcome.run_id}
        if rehearsal:
            rr = rehearse(srv.dsn, outcome.run_id, out, console)
            summary["rollback"] = {"status": rr["status"], "seconds": rr["seconds"],
                                   "identical": rr["comparison"]["identical"],
                                   "differing_rows": rr["comparison"]["differing_rows"]}
        perf = outcome.results.get("performance") or {}
        during = (perf.get("latency") or {}).get("during") or {}
        summary.update({
            "integrity_score": outcome.results.get("integrity_score"),
            "alerts": outcome.results.get("alerts"),
            "impact_pct": perf.get("impact_pct"),
            "migrated": hook.migrated_count,
            "migrate_seconds": (perf.get("phases") or {}).get("migrate"),
            "records_per_second": perf.get("records_per_second"),
            "rate_under_load": during.get("migration_rate_under_load"),
            "during_seconds": during.get("seconds"),
            "baseline_p95_ms": ((perf.get("latency") or {}).get("baseline") or {}).get("p95_ms"),
            "baseline_noise_p95_pct": ((perf.get("latency") or {}).get("baseline") or {}).get("noise_p95_pct"),
            "during_p95_ms": during.get("p95_ms"),
            "contention_failures": during.get("contention_failures"),
            "after_p95_ms": (during.get("after_migration") or {}).get("p95_ms"),
            "throttle": during.get("throttle"),
            "seconds": round(time.monotonic() - t_all, 1),
        })
        return summary
    finally:
        srv.stop()


def _or_dash(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.tools.sessions")
    ap.add_argument("what", choices=["org", "tradeoff"])
    ap.add_argument("--size", default="small", choices=["small", "medium", "enterprise"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--rate", type=float, default=5.0, help="requests/s per user")
    ap.add_argument("--baseline", type=float, default=30.0, help="seconds of baseline")
    ap.add_argument("--check-interval", type=float, default=2.0,
                    help="throttle check interval in seconds (the spec's 10 s is longer than a small run)")
    ap.add_argument("--max-during", type=float, default=3600.0,
                    help="seconds the load runs during the migration at most (then the throttle releases)")
    ap.add_argument("--after", type=float, default=15.0, help="seconds of load after the migration ends")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    console = pipeline.make_console()

    def plan(throttle: bool) -> LoadPlan:
        return LoadPlan(settings=LoadSettings(users=args.users, spawn_rate=float(args.users), rate_per_user=args.rate,
                                              seed=args.seed), baseline_seconds=args.baseline, warmup_seconds=5.0,
                        throttle=throttle, check_interval=args.check_interval, max_during_seconds=args.max_during,
                        after_seconds=args.after)

    if args.what == "org":
        out = args.out or pipeline.REPORTS / args.size
        summary = org_session(args.size, args.seed, plan(True), out, console)
        (out / "session.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        console.print(json.dumps({k: v for k, v in summary.items() if k != "throttle"}, indent=2))
        ok = summary["exit_code"] == 0 and summary.get("rollback", {}).get("identical", True)
        return 0 if ok else 1

    out = args.out or pipeline.REPORTS / "load"
    variants = {}
    for name, throttle in (("no_throttle", False), ("throttle", True)):
        console.rule(f"{args.size}: {name.replace('_', ' ')}")
        variants[name] = org_session(args.size, args.seed, plan(throttle), out / name, console, rehearsal=False)
    lines = [f"{'variant':<12} {'migrated':>9} {'migrate s':>9} {'rec/s':>8} {'rec/s@load':>10} {'base p95':>9} "
             f"{'during p95':>10} {'Δp95 %':>7} {'after p95':>9} {'noise %':>7} {'contention':>10}"]
    for name, v in variants.items():
        lines.append(f"{name:<12} {v['migrated'] or 0:>9,} {v['migrate_seconds'] or 0:>9.1f} "
                     f"{v['records_per_second'] or 0:>8.1f} {v['rate_under_load'] or 0:>10.1f} "
                     f"{v['baseline_p95_ms'] or 0:>9.2f} "
                     f"{v['during_p95_ms'] or 0:>10.2f} {_or_dash(v['impact_pct']):>7} "
                     f"{_or_dash(v['after_p95_ms']):>9} {_or_dash(v['baseline_noise_p95_pct']):>7} "
                     f"{v['contention_failures'] or 0:>10}")
    console.print("\n".join(lines))
    (out / "tradeoff.json").write_text(json.dumps({"size": args.size, "users": args.users, "rate": args.rate,
                                                   "variants": variants, "table": lines}, indent=2) + "\n",
                                       encoding="utf-8")
    console.print(f"wrote {out / 'tradeoff.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

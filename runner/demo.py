"""`hera-migrate demo`: the whole pipeline end to end on a throwaway server, ending with the report's path.

server → HERA core → a seeded synthetic org → plan (tier 1) → run (before-snapshot, reverse + repost, alias,
entity migrations) → validate (after-snapshot, diff, checks, results.json + index.html + junit.xml) → rollback
rehearsal (rollback, a third snapshot, row-for-row comparison with the before-snapshot) → the report rewritten to
say the run was rolled back, with the validation it had before and the rehearsal's proof. The generated ledger's
inventory goes next to it (fixtures.json, inventory.html).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from runner import operate, pipeline
from runner.db import providers, schema
from runner.errors import EXIT_OK
from runner.plan import build_plan, render_text
from runner.report.inventory import render_inventory
from runner.resources import data_dir
from runner.spec import load_spec
from runner.synth.generate import GenerationResult, generate

STEPS = 7


def run_demo(dsn: str | None, *, size: str, seed: int, keep: bool, report_dir: Path | None = None) -> int:
    out = report_dir or Path("reports") / "demo"
    out.mkdir(parents=True, exist_ok=True)
    console = pipeline.make_console(stderr=True)
    t0 = time.monotonic()
    spec_path = data_dir("specs") / "finance-dna-v2.yaml"
    spec = load_spec(spec_path)
    with providers.server(dsn, keep=keep) as srv:
        console.print(f"[1/{STEPS}] PostgreSQL: {srv.kind} server ready")
        applied = schema.install(srv.dsn)
        console.print(f"[2/{STEPS}] HERA core installed ({len(applied)} SQL files)")
        gen = generate(srv.dsn, size=size, orgs=1, seed=seed, progress=True)
        console.print(f"[3/{STEPS}] {gen.summary()}")
        for org in gen.organizations:
            pipeline.print_table(console, f"{org.organization_code} per v1 code", *org.by_code())
        _inventory(out, size, seed, srv.kind, gen, t0)

        plan = build_plan(srv.dsn, spec)
        console.print(f"[4/{STEPS}] plan (tier 1; the estimate measured in a rolled-back transaction):\n"
                      f"{render_text(plan)}")
        run_id = f"demo-{size}-{seed}"
        console.print(f"[5/{STEPS}] run {run_id} with {spec_path.name}")
        outcome = pipeline.run(srv.dsn, spec_path, pipeline.RunOptions(run_id=run_id, report_dir=out, now=True),
                               console, progress=True)
        console.print(f"[6/{STEPS}] rollback rehearsal")
        rehearsal = operate.rehearse_rollback(srv.dsn, run_id, out, console)
        if keep and srv.cluster is not None:
            console.print(f"data directory kept at {srv.cluster.root}")
    html = out / "index.html"
    identical = bool(rehearsal["comparison"]["identical"])
    console.print(f"[7/{STEPS}] done in {time.monotonic() - t0:.1f}s: validation {outcome.results['status']}, "
                  f"integrity score {outcome.results['integrity_score']}; rollback rehearsal "
                  f"{'restored the database exactly' if identical else 'LEFT DIFFERENCES'} (the report says so)")
    print(f"report: {html.resolve()}")
    if outcome.exit_code != EXIT_OK or not identical:
        return 1
    return EXIT_OK


def _inventory(out: Path, size: str, seed: int, server: str, gen: GenerationResult, t0: float) -> None:
    inventory = {"size": size, "seed": seed, "server": server, "seconds": round(time.monotonic() - t0, 2),
                 "organizations": [o.as_dict() for o in gen.organizations]}
    (out / "fixtures.json").write_text(json.dumps(inventory, indent=2) + "\n", encoding="utf-8")
    (out / "inventory.html").write_text(render_inventory(inventory), encoding="utf-8")

"""`hera-migrate demo`: the pipeline end to end on a throwaway server.

Today: start an embedded PostgreSQL (or use --dsn), install the HERA core, generate a seeded org and write
its inventory (reports/demo/fixtures.json + index.html). Later stages (plan → run → validate → rollback
rehearsal → integrity report) join here as they are built.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from runner.db import providers, schema
from runner.report.inventory import render_inventory
from runner.synth.generate import generate


def run_demo(dsn: str | None, *, size: str, seed: int, keep: bool, report_dir: Path | None = None) -> Path:
    out = report_dir or Path("reports") / "demo"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with providers.server(dsn, keep=keep) as srv:
        click.echo(f"[1/3] PostgreSQL: {srv.kind} server ready", err=True)
        applied = schema.install(srv.dsn)
        click.echo(f"[2/3] HERA core installed ({len(applied)} SQL files)", err=True)
        result = generate(srv.dsn, size=size, orgs=1, seed=seed, progress=True)
        click.echo(f"[3/3] {result.summary()}", err=True)
        if keep and srv.cluster is not None:
            click.echo(f"data directory kept at {srv.cluster.root}", err=True)
    inventory = {"size": size, "seed": seed, "server": srv.kind, "seconds": round(time.monotonic() - t0, 2),
                 "organizations": [o.as_dict() for o in result.organizations]}
    (out / "fixtures.json").write_text(json.dumps(inventory, indent=2) + "\n", encoding="utf-8")
    html = out / "index.html"
    html.write_text(render_inventory(inventory), encoding="utf-8")
    click.echo(f"report: {html.resolve()}")
    return html

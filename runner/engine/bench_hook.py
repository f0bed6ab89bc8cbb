"""Engine benchmark for runner/bench.py: migrate one synthetic org end to end and roll it back, with rates.

    from runner.engine.bench_hook import bench_engine
    numbers = bench_engine(size="medium", seed=42)          # own embedded server
    numbers = bench_engine(dsn=..., size="small", seed=7)   # an existing HERA database

Reported: tier-2 transactions/s (reverse + repost, one HERA reverse and one emit each), row writes/s of tier 2
(rows inserted and updated: twin and repost headers and lines, the twin total, the original twice), tier-3
rows/s, chunk transaction times (the longest a chunk holds its locks), rollback seconds and rows/s. No pass/fail.
"""

from __future__ import annotations

import time
from typing import Any

from runner.db import providers, schema
from runner.db.connect import connect
from runner.engine.rollback import rollback_run
from runner.engine.run import run_migration
from runner.resources import data_dir
from runner.spec import load_spec
from runner.spec.model import Spec
from runner.synth.generate import generate

SPEC = "finance-dna-v2.yaml"


def bench_engine(*, size: str = "medium", seed: int = 42, dsn: str | None = None, spec: Spec | None = None,
                 batch_size: int | None = None, workers: int = 1) -> dict[str, Any]:
    server = None
    if dsn is None:
        server = providers.start_local()
        dsn = server.dsn
        schema.install(dsn)
    try:
        spec = spec or load_spec(data_dir("specs") / SPEC)
        t0 = time.monotonic()
        gen = generate(dsn, size=size, seed=seed)
        fixture_s = time.monotonic() - t0
        org = gen.organizations[0].organization_id
        result = run_migration(dsn, spec, orgs=(org,), workers=workers, batch_size=batch_size, now=True)
        got = result.org(org)
        with connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM universal_transaction_lines l JOIN universal_transactions h "
                "ON h.id = l.transaction_id AND h.organization_id = l.organization_id "
                "WHERE h.organization_id = %s AND h.metadata -> 'migration' ->> 'run_id' = %s "
                "AND h.metadata -> 'migration' ->> 'role' = 'original'", (org, result.run_id)).fetchone()
        lines = int(row[0]) if row else 0
        # per original: 2 headers + 2 x its lines inserted; twin total, original (reverse), original (mark) updated
        tier2_writes = got.migrated * 5 + lines * 2
        t2 = got.seconds.get("reverse_repost", 0.0)
        t3 = got.seconds.get("reporting_alias", 0.0)
        t0 = time.monotonic()
        rb = rollback_run(dsn, result.run_id).org(org)
        rollback_s = time.monotonic() - t0
        rb_rows = rb.originals_restored + rb.reposts_deleted + rb.reversals_deleted + rb.aliases_restored + lines * 2
        return {
            "size": size, "seed": seed, "server": server.kind if server else "dsn", "workers": workers,
            "batch_size": batch_size or spec.execution.batch_size, "fixture_seconds": round(fixture_s, 2),
            "candidates": got.candidates, "migrated": got.migrated, "aliased": got.aliased,
            "quarantined": got.quarantined_total, "status": got.status,
            "tier2_seconds": round(t2, 2), "tier2_txn_per_second": round(got.migrated / t2, 1) if t2 else None,
            "tier2_row_writes_per_second": round(tier2_writes / t2) if t2 else None,
            "tier3_seconds": round(t3, 2), "tier3_rows_per_second": round(got.aliased / t3, 1) if t3 else None,
            "chunk_seconds": got.chunk_seconds, "entities_seconds": round(got.seconds.get("entities", 0.0), 2),
            "run_seconds": round(got.seconds.get("total", 0.0), 2),
            "rollback_seconds": round(rollback_s, 2), "rollback_status": rb.status,
            "rollback_rows_per_second": round(rb_rows / rollback_s) if rollback_s else None,
        }
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":  # python -m runner.engine.bench_hook [size] [seed]
    import json
    import sys

    args = sys.argv[1:]
    print(json.dumps(bench_engine(size=args[0] if args else "medium", seed=int(args[1]) if len(args) > 1 else 42),
                     indent=2, default=str))

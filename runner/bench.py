"""Benchmarks (run by `nox -s bench`): print numbers and write reports/bench/bench.json; no pass/fail.

Each size runs on its own fresh embedded server so the sizes do not disturb each other.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path
from typing import Any

from runner.db import providers, schema
from runner.synth.generate import generate


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.bench")
    parser.add_argument("--sizes", default="small,medium", help="comma-separated: small,medium,enterprise")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("reports/bench/bench.json"))
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes.split(","):
        r = bench_fixtures(size.strip(), args.seed)
        results.append(r)
        print(f"fixtures {r['size']:<10} {r['rows']:>10,} rows in {r['fixture_seconds']:>7.2f}s "
              f"= {r['rows_per_second']:>9,} rows/s  ({r['headers']:,} headers, {r['lines']:,} lines; "
              f"schema {r['schema_seconds']}s)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the runner: {peak_mb:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "fixtures": results,
                                    "peak_rss_mb": round(peak_mb)}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

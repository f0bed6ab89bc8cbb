"""The real-HERA tier: the whole pipeline, through the CLI, on our stand-in core and on HERA's production schema.

Every scenario runs once per core (`core_dsn`): ours (fixtures/sql) and the real one, a database made of our §6
stubs plus the file HERA_REAL_SCHEMA names (skipped without it; `nox -s real` requires it and runs the medium
organisation too). The same assertions must hold on both:

  `fixtures` generates into the core that is there (never installs ours over production's) → `plan` counts equal
  the generator's ground truth → `run` exits 0 with integrity 100 and no unexpected diff row → `validate` exits 0
  again → every kind of planted defect is caught (on a copy) → `rollback` leaves the six tables exactly as they
  were → `db schema` refuses the core it did not install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from random import Random
from typing import Any

import pytest
from psycopg import conninfo

from runner.db.connect import connect, with_database
from runner.db.providers import Server
from runner.plan import build_plan
from runner.spec import load_spec
from runner.synth import ledger, masterdata
from runner.synth.generate import org_code
from runner.synth.profiles import load_profiles
from runner.validate import validate_run
from tests.conftest import create_database, drop_database
from tests.integration.test_pipeline import state
from tests.integration.test_plan import expected_from_truth, observed
from tests.tools.defects import DEFECTS, KINDS, plant

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
SLOW = os.environ.get("HERA_SLOW") == "1"
SIZES = ["small", pytest.param("medium", marks=pytest.mark.skipif(
    not SLOW, reason="medium organisation: set HERA_SLOW=1 (`nox -s real` does)"))]


def hera(dsn: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    return subprocess.run([sys.executable, "-m", "runner", "--dsn", dsn, *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


def truth(size: str, seed: int) -> ledger.LedgerTruth:
    """The generator's ground truth for org 1 of (size, seed), drawn again without a database: the generator is
    seeded, so the same draws give the same rows the CLI loaded."""
    profiles = load_profiles()
    sz = profiles.size(size)
    code = org_code(size, seed, 1)
    rng = Random(f"hera-synth:{sz.name}:{seed}:1")
    md = masterdata.build(profiles, sz, rng, org_code=code, org_name=f"Synthetic Salon {code}")
    writer = ledger.LedgerWriter(profiles, md, rng)
    for _ in writer.transactions(sz.transactions, code):
        pass
    return writer.truth


def results(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((path / "results.json").read_text(encoding="utf-8"))
    return doc


@pytest.mark.parametrize("size", SIZES)
def test_the_pipeline_end_to_end(core: str, core_dsn: str, pg_server: Server, size: str, tmp_path: Path) -> None:
    dsn, seed, run_id = core_dsn, 31, f"cores-{size}"
    spec = load_spec(PHASE7)

    made = hera(dsn, "fixtures", size, "--seed", str(seed))
    assert made.returncode == 0, made.stdout + made.stderr
    org = made.stdout.strip().splitlines()[-1]
    with connect(dsn) as conn:  # production's own functions are still production's
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'hera_txn_reverse_v1' "
                            "ORDER BY pronargs DESC LIMIT 1").fetchone()
        marker = conn.execute("SELECT obj_description('universal_transactions'::regclass, 'pg_class')").fetchone()
    assert body is not None and marker is not None
    assert (marker[0] or "").startswith("hera-migration-harness core") == (core == "ours")

    want = {c: expected_from_truth(t) for c, t in truth(size, seed).by_code.items() if spec.resolve(c) is not None}
    assert observed(build_plan(dsn, spec), org) == want
    before = state(dsn)

    out = tmp_path / "report"
    run = hera(dsn, "run", str(PHASE7), "--run-id", run_id, "--report-dir", str(out), "--no-progress", "--now")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    res = results(out)
    assert res["integrity_score"] == 100 and res["status"] == "passed"
    assert all(c["status"] == "passed" for c in res["checks"]), [
        (c["id"], c["status"], c["samples"][:2]) for c in res["checks"] if c["status"] != "passed"]
    assert sum(res["diff"]["unexpected"].values()) == 0, res["diff"]["samples"][:5]
    assert res["diff"]["expected"]["universal_transactions"] > 0
    (got,) = res["organizations"]
    assert got["organization_id"] == org and got["quarantined"] == 0
    assert got["migrated"] == sum(w.get("candidates", 0) for w in want.values())

    again = hera(dsn, "validate", run_id, "--report-dir", str(out))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

    # Every kind of defect the injector plants is caught, each on its own copy of the migrated database.
    migrated = create_database(pg_server.dsn, template=conninfo.conninfo_to_dict(dsn)["dbname"])
    try:
        for kind in KINDS:
            copy = create_database(pg_server.dsn, template=migrated)
            try:
                copy_dsn = with_database(pg_server.dsn, copy)
                planted = plant(copy_dsn, spec, run_id, kind)
                snapshot = None
                if DEFECTS[kind].needs_diff:
                    snapshot = tmp_path / f"{kind}.duckdb"
                    snapshot.write_bytes((out / "snapshots.duckdb").read_bytes())
                outcome = validate_run(copy_dsn, spec, run_id, report_dir=tmp_path / kind, snapshot_path=snapshot)
                doc = results(tmp_path / kind)
                failed = {c["id"]: c for c in doc["checks"] if c["status"] in ("failed", "error")}
                assert outcome.exit_code == 1 and set(DEFECTS[kind].catches) <= set(failed), (kind, sorted(failed))
                first = failed[DEFECTS[kind].catches[0]]
                assert planted.record_id in {s["record_id"] for s in first["samples"]}, (kind, first["samples"])
            finally:
                drop_database(pg_server.dsn, copy)
    finally:
        drop_database(pg_server.dsn, migrated)

    back = hera(dsn, "rollback", run_id, "--no-progress")
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    assert state(dsn) == before


def test_db_schema_refuses_a_core_it_did_not_install(core: str, core_dsn: str) -> None:
    if core == "ours":  # without our marker, our own core is as foreign as production's
        with connect(core_dsn, autocommit=True) as conn:
            conn.execute("COMMENT ON TABLE universal_transactions IS NULL")
    with connect(core_dsn) as conn:
        functions = conn.execute("SELECT count(*), md5(string_agg(prosrc, '' ORDER BY oid)) FROM pg_proc "
                                 "WHERE pronamespace = 'public'::regnamespace").fetchone()
    refused = hera(core_dsn, "db", "schema")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert re.search(r"refusing to install ours over it", refused.stderr)
    assert "nothing was changed" in refused.stderr
    with connect(core_dsn) as conn:
        assert conn.execute("SELECT count(*), md5(string_agg(prosrc, '' ORDER BY oid)) FROM pg_proc "
                            "WHERE pronamespace = 'public'::regnamespace").fetchone() == functions
    made = hera(core_dsn, "fixtures", "small", "--seed", "5")  # ... while fixtures generates into it
    assert made.returncode == 0, made.stdout + made.stderr

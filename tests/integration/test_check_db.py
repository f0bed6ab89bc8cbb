"""`check` against a database (explicit --dsn only): custom SQL planned read-only, coverage as findings; and a
hostile spec run through `plan` stays inert."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.db.connect import connect
from runner.plan import build_plan
from runner.spec import load_spec
from runner.spec.model import Mapping, PostingRules
from runner.synth.generate import generate

ROOT = Path(__file__).resolve().parents[2]
SIX = ("core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
       "universal_transactions", "universal_transaction_lines")
HOSTILE = ["x'; DROP TABLE universal_transactions; --", "$$; DELETE FROM core_entities; $$", "/* */ OR 1=1 --"]


def hera(*args: str, env_dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    if env_dsn is not None:
        env["HERA_DSN"] = env_dsn
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=120,
                          check=False, env=env)


def fingerprint(dsn: str) -> dict[str, Any]:
    with connect(dsn) as conn:
        return {t: conn.execute(f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) "
                                f"FROM {t} x").fetchone() for t in SIX}


SPEC_WITH_BAD_COLUMN = """\
name: bad-column
version: "1"
owner: qa
mappings:
  - from: HERA.SALON.POS.TXN.SALE.v1
    tier: reporting_alias
validations:
  custom:
    - id: uses-a-missing-column
      description: refers to a column HERA does not have
      sql: |
        SELECT h.organization_id, h.id AS record_id, 'x' AS message
        FROM universal_transactions h
        WHERE h.organization_id = :organization_id
          AND h.debit_amount > 0
"""


def test_check_dsn_plans_custom_sql_and_points_at_the_missing_column(db_dsn: str, tmp_path: Path) -> None:
    generate(db_dsn, size="small", seed=31)
    spec = tmp_path / "bad-column.yaml"
    spec.write_text(SPEC_WITH_BAD_COLUMN)
    offline = hera("check", str(spec))
    assert offline.returncode == 0, offline.stderr  # the column can only be known against a database
    before = fingerprint(db_dsn)
    proc = hera("--dsn", db_dsn, "check", str(spec))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # `h.debit_amount` starts on line 15, column 15 of the file (a column of the stale schema files; HERA has none).
    assert f"{spec}:15:15: /validations/custom/0/sql: custom check 'uses-a-missing-column' does not plan" in proc.stderr
    assert "42703" in proc.stderr and "debit_amount" in proc.stderr
    assert fingerprint(db_dsn) == before


def test_check_dsn_reports_unmapped_codes_per_org_as_findings(db_dsn: str) -> None:
    gen = generate(db_dsn, size="small", orgs=2, seed=32)
    example = ROOT / "specs" / "examples" / "alias-only.yaml"
    spec = load_spec(example)
    proc = hera("--dsn", db_dsn, "check", str(example))
    assert proc.returncode == 0, proc.stderr
    findings = set()
    for line in proc.stdout.splitlines():
        if ": coverage: " in line:
            _, rest = line.split(": coverage: ", 1)
            org_part, code, _count = rest.split(": ")
            findings.add((org_part.split(" ")[0], code))
    want = {(o.organization_code, code) for o in gen.organizations for code in o.truth.by_code
            if spec.resolve(code) is None}
    assert findings == want and want


def test_check_ignores_hera_dsn_from_the_environment() -> None:
    # An unreachable server in HERA_DSN: the offline check must not even try it.
    proc = hera("check", str(ROOT / "specs" / "finance-dna-v2.yaml"), env_dsn="host=127.0.0.1 port=1 dbname=x")
    assert proc.returncode == 0, proc.stderr
    assert "database check" not in proc.stdout


def test_hostile_spec_values_stay_inert_in_plan(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=33).organizations[0]
    base = load_spec(ROOT / "specs" / "finance-dna-v2.yaml")
    renamed = [dataclasses.replace(m, id=HOSTILE[i % len(HOSTILE)]) for i, m in enumerate(base.mappings)]
    odd = Mapping(regex=r"HERA\.X'';--\.(.*)\.v1", to="HERA.SALON.POS.TXN.SALE.v2", tier="reverse_repost")
    hostile = dataclasses.replace(
        base,
        mappings=(*renamed, odd),
        scope=dataclasses.replace(base.scope, transaction_statuses=("posted", "completed", *HOSTILE)),
        entities=dataclasses.replace(base.entities, posting_rules=PostingRules(entity_types=(
            "financial_policy", *HOSTILE))))
    before = fingerprint(db_dsn)
    plan = build_plan(db_dsn, hostile)
    clean = build_plan(db_dsn, base)
    assert fingerprint(db_dsn) == before
    # The hostile strings are just values that match nothing: the counts equal the clean spec's.
    assert plan.organizations[0].candidates() == clean.organizations[0].candidates() > 0
    assert {c.mapping for c in plan.organizations[0].codes} <= set(HOSTILE)
    assert plan.organizations[0].entities == clean.organizations[0].entities
    assert org.organization_id == plan.organizations[0].organization_id

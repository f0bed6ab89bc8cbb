"""The report an auditor signs tells the truth: after a rollback it says so, a validation over nothing is not
PASSED, money is never summed across currencies, what was not migrated is counted per v1 code exactly as `plan`
counted it, and every count has one definition (`status`, the CLI summary and the report agree).

One small synthetic organisation (four currencies) is run once in-process; the tests read that run's report, then
one test rolls it back and validates again through the real CLI (exit codes of docs/contract.md §4).
"""

from __future__ import annotations

import itertools
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner import pipeline
from runner.db.connect import connect, with_database
from runner.db.providers import Server
from runner.plan import Plan, build_plan
from runner.report import schema_errors
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.conftest import create_database, drop_database
from tests.integration.test_pipeline import hera, state

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
RUN = "truth-1"


@dataclass
class Ran:
    dsn: str
    out: Path
    plan: Plan
    results: dict[str, Any]
    html: str
    stdout: str
    before: dict[str, list[Any]]


@pytest.fixture(scope="module")
def ran(pg_server: Server, core_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    name = create_database(pg_server.dsn, template=core_template)
    try:
        dsn = with_database(pg_server.dsn, name)
        generate(dsn, size="small", seed=61)
        plan = build_plan(dsn, load_spec(PHASE7))
        before = state(dsn)
        out = tmp_path_factory.mktemp("truth") / RUN
        console = pipeline.make_console()
        with console.capture() as captured:
            outcome = pipeline.run(dsn, PHASE7, pipeline.RunOptions(run_id=RUN, report_dir=out, now=True,
                                                                     live_seconds=None, baseline_seconds=0.3),
                                   console, progress=False)
        assert outcome.exit_code == 0, captured.get()
        yield Ran(dsn, out, plan, json.loads((out / "results.json").read_text(encoding="utf-8")),
                  (out / "index.html").read_text(encoding="utf-8"), captured.get(), before)
    finally:
        drop_database(pg_server.dsn, name)


def test_money_is_never_summed_across_currencies(ran: Ran) -> None:
    (org,) = ran.results["organizations"]
    with connect(ran.dsn) as conn:
        rows = conn.execute(
            "SELECT coalesce(transaction_currency_code, base_currency_code, ''), sum(total_amount) "
            "FROM universal_transactions WHERE metadata -> 'migration' ->> 'run_id' = %s "
            "AND metadata -> 'migration' ->> 'role' = 'original' GROUP BY 1", (RUN,)).fetchall()
    per_currency = {str(cur): Decimal(total) for cur, total in rows}
    assert len(per_currency) >= 2, "the fixture must have more than one currency to prove anything"
    assert {c: Decimal(v) for c, v in org["source"]["originals_amount"].items()} == per_currency
    assert {c: Decimal(v) for c, v in org["target"]["reposts_amount"].items()} == per_currency
    document = json.dumps(ran.results)
    # No sum of two or more currencies appears anywhere: not in results.json, not on the page.
    for size in range(2, len(per_currency) + 1):
        for combo in itertools.combinations(per_currency.values(), size):
            total = sum(combo, Decimal(0))
            assert format(total, "f") not in document and f"{total:,.2f}" not in ran.html, total
    for cur, total in per_currency.items():
        assert f"{total:,.2f} {cur}" in ran.html  # separators and the currency code
    # The reversal convention reconciles: reversals total the originals' lines (debits and credits alike).
    recon = org["target"]["reversals_reconciliation"]
    assert recon["equal"] is True and set(recon["originals_lines_amount"]) == set(per_currency)
    assert "reconciled" in ran.html and "NOT RECONCILED" not in ran.html


def test_per_code_counts_equal_what_plan_said_before_the_run(ran: Ran) -> None:
    (org,) = ran.results["organizations"]
    (planned,) = ran.plan.organizations
    got = {c["v1_code"]: c for c in org["by_code"] if c["tier"]}
    assert set(got) == {c.v1_code for c in planned.codes}
    for code in planned.codes:
        assert got[code.v1_code]["skipped"] == code.skipped, code.v1_code
        assert got[code.v1_code]["candidates"] == code.candidates, code.v1_code
        assert got[code.v1_code]["tier"] == code.tier
    assert sum(sum(c.skipped.values()) for c in planned.codes) == org["skipped_total"] > 0
    assert 'id="by-code"' in ran.html and "closed_period" in ran.html


def test_every_count_has_one_definition(ran: Ran) -> None:
    counts = ran.results["counts"]
    (org,) = ran.results["organizations"]
    assert counts["migrated"] == counts["reverse_reposted"] + counts["aliased"] == org["migrated"]
    assert counts["candidates"] == ran.plan.organizations[0].candidates()
    status = hera("status", RUN, "--json", dsn=ran.dsn)
    (journal,) = json.loads(status.stdout)["organizations"]
    assert (journal["migrated"], journal["reverse_reposted"], journal["aliased"]) == (
        counts["migrated"], counts["reverse_reposted"], counts["aliased"])
    assert f"{counts['migrated']:,} migrated ({counts['reverse_reposted']:,} reversed+reposted" in ran.stdout
    assert counts["checks"]["total"] == len(ran.results["checks"])
    check = hera("check", str(PHASE7))
    assert f"{counts['checks']['total']} checks" in check.stdout, check.stdout
    perf = ran.results["performance"]
    assert perf["phases_clock"] == "wall" and not any(k.startswith("run.") for k in perf["phases"])
    assert perf["engine_seconds_summed_over_organizations"]


def test_the_report_is_a_document_one_can_file(ran: Ran) -> None:
    env = ran.results["environment"]
    assert env["database_server"]["version"] and env["tool"]["version"] and env["operator"]
    assert "password" not in json.dumps(env).lower()
    assert ran.results["ledger"]["trial_balance"]["available"] and ran.results["ledger"]["trial_balance"]["rows"]
    assert (ran.out / "trial_balance.csv").read_text(encoding="utf-8").startswith("organization_id,account_id")
    for needle in ('id="environment"', 'id="signoff"', 'id="tb-top"', 'id="diff-changes"', 'name="viewport"',
                   "@media print", '<a href="records.jsonl">', '<a href="trial_balance.csv">'):
        assert needle in ran.html, needle
    assert {a["name"] for a in ran.results["artefacts"]} >= {"results.json", "records.jsonl", "snapshots.duckdb"}
    for path in ran.out.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
    impact = ran.results["system"]["performance_impact"]
    assert impact["cpu_usage_increase"] is not None and impact["memory_usage_increase"] is not None
    assert impact["response_time_impact"] is None and impact["reasons"]["response_time_impact"]
    continuity = ran.results["system"]["business_continuity"]
    assert continuity["measured"] is False and continuity["service_availability"] is None
    assert schema_errors(ran.results) == []


def test_rollback_rewrites_the_report_and_validate_after_it_is_not_passed(ran: Ran) -> None:
    """Last in the module: it rolls the run back."""
    passed_page = ran.html
    back = hera("rollback", RUN, "--report-dir", str(ran.out), "--no-progress", dsn=ran.dsn)
    assert back.returncode == 0, back.stdout + back.stderr
    assert state(ran.dsn) == ran.before
    results = json.loads((ran.out / "results.json").read_text(encoding="utf-8"))
    assert schema_errors(results) == []
    assert results["status"] == "rolled_back" and results["run"]["status"] == "rolled_back"
    rollback = results["rollback"]
    assert rollback["rehearsal"] is False and rollback["verified"] is True
    assert rollback["comparison"]["made"] and rollback["comparison"]["identical"] is True
    assert rollback["validation_before"]["status"] == "passed"
    html = (ran.out / "index.html").read_text(encoding="utf-8")
    assert html != passed_page
    assert 'id="verdict">ROLLED BACK<' in html and 'id="rollback-banner"' in html
    assert 'id="verdict">PASSED<' not in html and 'id="rollback-verdict">identical<' in html

    again = hera("validate", RUN, "--report-dir", str(ran.out), dsn=ran.dsn)
    assert again.returncode == 4, again.stdout + again.stderr
    assert "PASSED" not in again.stdout and "NOTHING CHECKED" in again.stdout
    assert "integrity score undefined" in again.stdout
    results = json.loads((ran.out / "results.json").read_text(encoding="utf-8"))
    assert schema_errors(results) == []
    assert (results["status"], results["exit_code"], results["integrity_score"]) == ("nothing_checked", 4, None)
    assert results["score"]["records_checked"] == 0 and results["counts"]["migrated"] == 0
    assert results["rollback"]["validation_before"]["status"] == "passed"  # still on record
    (org,) = results["organizations"]
    assert org["integrity_score"] is None and org["not_migrated"] == ran.results["counts"]["candidates"]
    html = (ran.out / "index.html").read_text(encoding="utf-8")
    assert 'id="verdict">NOTHING CHECKED<' in html and "integrity score undefined" in html

"""`compile --out`: every snapshot and diff statement, rendered with sample inputs (the spec's organisations where
a statement takes them), for review and for the template-safety tests."""

from __future__ import annotations

from pathlib import Path

from runner import contract
from runner.compile import Statement, render, render_duck
from runner.snapshot import compare, diff, ledger, rules
from runner.snapshot.duck import derived_table, snapshot_table
from runner.snapshot.extract import PG_ALIAS, load_statement, pg_queries
from runner.spec.model import Spec

SAMPLE_ORG = "00000000-0000-4000-8000-000000000001"
SAMPLE_RUN = "run-20250101T000000Z-abcd"
SAMPLE_CONNINFO = "host=localhost dbname=hera application_name=hera-migrate-snapshot"


def review_statements(spec: Spec) -> list[Statement]:
    orgs = list(spec.scope.organizations.include) or [SAMPLE_ORG]
    columns = rules.sample_columns()
    out = [render("snapshot/pg_columns", qualified_table="public.universal_transactions"),
           render("snapshot/pg_snapshot"), render("snapshot/pg_copy_session")]
    for copy in (False, True):
        out += pg_queries(columns, orgs, copy=copy).values()
    out += [render_duck("snapshot/catalog_create"),
            render_duck("snapshot/attach", conninfo=SAMPLE_CONNINFO, alias=PG_ALIAS),
            render_duck("snapshot/scanner_query", alias=PG_ALIAS, query=render("snapshot/pg_snapshot").text),
            load_statement(columns, "before", "universal_transactions", alias=PG_ALIAS, query="SELECT ...", csv=None),
            load_statement(columns, "before", "derived", alias=None, query=None, csv=str(Path("derived.csv"))),
            render_duck("snapshot/count", table=snapshot_table("before", "universal_transactions")),
            render_duck("snapshot/catalog_record", label="before", taken_at="2025-01-01T00:00:00Z", org_ids=orgs,
                        pg_snapshot="100:100:", pg_xmin=100, server_version="15", method="scanner",
                        row_counts="{}", seconds=0.0),
            render_duck("snapshot/detach", alias=PG_ALIAS),
            render_duck("snapshot/catalog_labels")]
    out += diff.variables(SAMPLE_RUN, contract.MIGRATION_ACTOR_ID)
    out += [render_duck("diff/columns", table=snapshot_table("before", "universal_transactions")),
            render_duck("diff/table_exists", table=derived_table("before"))]
    out += rules.statements(rules.review_columns())
    out += [render_duck("diff/pair_count"), render_duck("diff/counts"), render_duck("diff/samples", limit=20),
            ledger.trial_balance_statement("before"), compare.differing_statement("core_entities", "before", "after"),
            compare.differing_statement("core_dynamic_data", "before", "rollback", exclude_created_by=SAMPLE_ORG)]
    return out

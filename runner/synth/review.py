"""`compile --out`: the fixture generator's statements (bulk mode, COPY, verification), with sample inputs. They
take no spec value: `hera-migrate fixtures` runs them to build synthetic organisations."""

from __future__ import annotations

from runner.compile import Statement, render
from runner.synth import bulk, ledger

SAMPLE_ORG = "00000000-0000-4000-8000-000000000001"


def review_statements() -> list[Statement]:
    tables = list(bulk.SIX)
    return [
        render("synth/existing_orgs", codes=["SYNTH-SMALL-1-001"]),
        render("synth/enabled_triggers", tables=tables),
        render("synth/trigger", table="universal_transactions", trigger="sample_trigger", action="DISABLE"),
        render("synth/planned_rows"),
        render("synth/secondary_indexes", tables=tables),
        render("synth/foreign_keys", tables=tables),
        render("synth/keys", tables=tables),
        render("synth/loose_checks", names=list(bulk.PATTERN_CHECKS)),
        render("synth/drop_index", index="sample_index"),
        render("synth/drop_constraint", table="universal_transactions", constraint="sample_constraint"),
        render("synth/copy_in", table="universal_transactions", columns=ledger.HEADER_COLUMNS),
        render("synth/create_index", definition="CREATE INDEX sample_index ON public.universal_transactions "
                                                "USING btree (organization_id)"),
        render("synth/add_constraint", table="universal_transactions", constraint="sample_constraint",
               definition="CHECK ((smart_code ~ '^HERA\\.'::text)) NOT VALID"),
        render("synth/pattern_violations", table="universal_transactions",
               expression="((smart_code ~ '^HERA\\.'::text))", org_ids=[SAMPLE_ORG]),
        render("synth/verify", org_ids=[SAMPLE_ORG]),
        render("synth/analyze", table="universal_transactions"),
    ]

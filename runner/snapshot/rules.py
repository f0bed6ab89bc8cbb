"""The diff's rule data and the order its statements run in. The SQL itself is in runner/sql/diff (DuckDB
templates, building blocks in runner/sql/_macros/diff.sql.j2); the rules are documented for auditors in
diff.py's docstring.

Every statement reads `before_*`/`after_*` and the per-label `*_jsonb_derived` tables and is parameterised only
through DuckDB variables (`run_id`, `actor_id`) that diff.py sets. The column lists below are the rules' data: which
columns each role may change, which ones a twin or repost copies from its original.
"""

from __future__ import annotations

from typing import Final

from runner import contract
from runner.compile import Statement, render_duck
from runner.snapshot.columns import Column, map_type
from runner.snapshot.duck import TABLES

ORIGINAL_CHANGES: Final = ("transaction_status", "metadata", "version", "updated_at", "updated_by", "smart_code")
ALIAS_CHANGES: Final = ("metadata", "smart_code", "updated_at", "updated_by", "version")
ORG_CHANGES: Final = ("settings", "updated_at", "updated_by")
NEVER_EXPLAINED: Final = ("id", "organization_id", "created_at", "created_by")
# Header columns hera_txn_reverse_v1 copies from the original to its -REV twin.
TWIN_COPIED: Final = ("transaction_type", "source_entity_id", "target_entity_id", "reference_number",
                      "external_reference", "ai_confidence", "ai_classification", "ai_insights", "business_context",
                      "approval_required", "approved_by", "approved_at", "transaction_currency_code",
                      "base_currency_code", "exchange_rate", "fiscal_year", "fiscal_period")
# Header columns a v2 repost carries over from its original unchanged (the amounts and who/when/where).
REPOST_COPIED: Final = ("transaction_type", "transaction_date", "total_amount", "source_entity_id",
                        "target_entity_id", "transaction_currency_code", "base_currency_code", "exchange_rate")

CLASSIFY_TEMPLATE: Final = {
    "universal_transactions": "diff/classify_transactions", "universal_transaction_lines": "diff/classify_lines",
    "core_entities": "diff/classify_entities", "core_dynamic_data": "diff/classify_dynamic_data",
    "core_relationships": "diff/classify_relationships", "core_organizations": "diff/classify_organizations",
}

Columns = dict[str, list[tuple[str, str]]]  # table -> [(column, DuckDB type)] of the snapshot


def statements(columns: Columns) -> list[Statement]:
    """The diff, in order: macros, the run's context tables, then per table its differing pairs and their
    classification into d_rows (here in one bucket; runner/snapshot/diff.py re-renders it per bucket with
    `classify`), and finally d_rows stored as `diff_rows`."""
    out = [render_duck("diff/macros"), render_duck("diff/context")]
    for table in TABLES:
        out.append(render_duck("diff/pairs", table=table, columns=columns[table]))
        out.append(classify(table, columns, 0, 1))
    out.append(render_duck("diff/store"))
    return out


def classify(table: str, columns: Columns, bucket: int, buckets: int) -> Statement:
    """Classify bucket `bucket` of `buckets` of the table's differing pairs (by the hash of their bucket key, see
    diff/pairs)."""
    rules = {"preimage_columns": contract.ORIGINAL_PREIMAGE_COLUMNS, "original_changes": ORIGINAL_CHANGES,
             "alias_changes": ALIAS_CHANGES, "org_changes": ORG_CHANGES, "never_explained": NEVER_EXPLAINED,
             "twin_copied": TWIN_COPIED, "repost_copied": REPOST_COPIED}
    return render_duck(CLASSIFY_TEMPLATE[table], cols=dict(columns[table]), bucket=bucket, buckets=buckets, **rules)


def sample_columns() -> dict[str, list[Column]]:
    """Without a database (compile's review): per table the identity columns plus every column the snapshot and
    diff statements name, typed as PostgreSQL has them. A real snapshot reads the catalog instead."""
    typed = {"metadata": "jsonb", "settings": "jsonb", "line_data": "jsonb", "ai_insights": "jsonb",
             "business_context": "jsonb", "version": "integer", "fiscal_year": "integer", "fiscal_period": "integer",
             "approval_required": "boolean", "total_amount": "numeric(19,4)", "exchange_rate": "numeric(20,10)",
             "ai_confidence": "numeric(5,4)", "line_amount": "numeric(20,8)", "quantity": "numeric(20,8)",
             "unit_amount": "numeric(20,8)"}
    named = {*contract.ORIGINAL_PREIMAGE_COLUMNS, *ORIGINAL_CHANGES, *TWIN_COPIED, *REPOST_COPIED, "transaction_code"}
    named_by_table = {
        "universal_transactions": sorted(named),
        "universal_transaction_lines": ["transaction_id", "line_number", "entity_id", "line_amount", "quantity",
                                        "unit_amount", "line_data", "smart_code"],
        "core_entities": ["entity_type", "entity_code", "smart_code"],
        "core_dynamic_data": ["entity_id", "field_name", "smart_code"],
        "core_relationships": ["from_entity_id", "to_entity_id", "smart_code"],
        "core_organizations": ["settings"],
    }

    def pg_type(name: str) -> str:
        if name in typed:
            return typed[name]
        if name == "id" or name.endswith(("_id", "_by")):
            return "uuid"
        if name.endswith(("_at", "_date")):
            return "timestamp with time zone"
        return "text"

    base = ("id", "organization_id", "created_at", "created_by", "updated_at", "updated_by", "metadata", "version")
    out: dict[str, list[Column]] = {}
    for table in TABLES:
        ids = [n for n in base if not (table == "core_organizations" and n == "organization_id")]
        out[table] = [map_type(n, pg_type(n)) for n in ids + [n for n in named_by_table[table] if n not in base]]
    return out


def review_columns() -> Columns:
    """sample_columns as the diff sees them: (name, DuckDB type)."""
    return {table: [(c.name, c.duck_type) for c in cols] for table, cols in sample_columns().items()}

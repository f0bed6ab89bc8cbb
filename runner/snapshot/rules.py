"""The diff's SQL building blocks: the run's context tables, change detection, and the fragments the
per-table classification (classify.py) is written with. All in DuckDB.

Every statement reads `before_*`/`after_*` and the per-label `*_jsonb_derived` tables and is parameterised only
through DuckDB variables (`run_id`, `actor_id`), set by diff.py. Identifiers are quoted with qi(); contract keys
are constants. The rules are documented (for auditors) in diff.py's docstring.
"""
# ruff: noqa: S608  (a SQL builder: identifiers go through qi(), literals through ql(), values are DuckDB variables)

from __future__ import annotations

from typing import Final

from runner import contract
from runner.snapshot.duck import qi, ql

RUN: Final = "getvariable('run_id')"
ACTOR: Final = "CAST(getvariable('actor_id') AS UUID)"
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


def macros() -> list[str]:
    mig = contract.META_MIGRATION
    return [
        # Stored smart code with a trailing .V<n> rewritten to .v<n>: equal iff the codes differ at most there.
        r"CREATE OR REPLACE TEMP MACRO sc_norm(s) AS regexp_replace(s, '\.[vV]([0-9]+)$', '.v\1')",
        f"CREATE OR REPLACE TEMP MACRO mig(j, k) AS json_extract_string(j, '$.{mig}.' || k)",
        f"CREATE OR REPLACE TEMP MACRO mig_uuid(j, k) AS TRY_CAST(json_extract_string(j, '$.{mig}.' || k) AS UUID)",
        "CREATE OR REPLACE TEMP MACRO js(j) AS CAST(j AS VARCHAR)",
        "CREATE OR REPLACE TEMP MACRO problems(l) AS list_filter(l, x -> x IS NOT NULL)",
    ]


def context() -> list[str]:
    """Temp tables naming the rows of this run: its transactions by role, its journal, its migrated entities."""
    rev_of = f"TRY_CAST(json_extract_string(a.metadata, '$.{contract.HERA_REVERSAL_KEYS_TWIN[0]}') AS UUID)"
    rev_id = f"TRY_CAST(json_extract_string(a.metadata, '$.{contract.HERA_REVERSAL_KEYS_ORIGINAL[0]}') AS UUID)"
    return [
        f"""CREATE OR REPLACE TEMP TABLE d_marked AS
            SELECT a.id, mig(a.metadata, 'role') AS role,
                   mig_uuid(a.metadata, 'original_txn_id') AS original_txn_id,
                   mig_uuid(a.metadata, 'repost_id') AS repost_id,
                   mig_uuid(a.metadata, 'reversal_id') AS mig_reversal_id,
                   {rev_id} AS reversal_id, {rev_of} AS reversal_of,
                   a.id NOT IN (SELECT id FROM before_universal_transactions) AS is_new
              FROM after_universal_transactions a WHERE mig(a.metadata, 'run_id') = {RUN}""",
        f"""CREATE OR REPLACE TEMP TABLE d_orig AS SELECT * FROM d_marked
             WHERE role = {ql(contract.ROLE_ORIGINAL)} AND reversal_of IS NULL""",
        f"CREATE OR REPLACE TEMP TABLE d_repost AS SELECT * FROM d_marked WHERE role = {ql(contract.ROLE_REPOST)}",
        f"CREATE OR REPLACE TEMP TABLE d_alias AS SELECT * FROM d_marked WHERE role = {ql(contract.ROLE_ALIAS)}",
        f"""CREATE OR REPLACE TEMP TABLE d_twin AS
            SELECT a.id, o.id AS original_id, a.id NOT IN (SELECT id FROM before_universal_transactions) AS is_new
              FROM after_universal_transactions a JOIN d_orig o ON {rev_of} = o.id""",
        f"""CREATE OR REPLACE TEMP TABLE d_touched AS
            SELECT DISTINCT id FROM (
              SELECT id FROM d_marked UNION ALL SELECT original_txn_id FROM d_marked
              UNION ALL SELECT repost_id FROM d_marked UNION ALL SELECT reversal_id FROM d_orig
              UNION ALL SELECT mig_reversal_id FROM d_marked UNION ALL SELECT id FROM d_twin
              UNION ALL SELECT id FROM before_universal_transactions b WHERE mig(b.metadata, 'run_id') = {RUN})
             WHERE id IS NOT NULL""",
        # Originals another actor inserted during the run (not in `before`) that the run's re-scan migrated:
        # their rows as they were when the run reversed them (metadata without the run's and HERA's reversal keys)
        # stand in for the before rows their twin and repost are checked against.
        f"""CREATE OR REPLACE TEMP TABLE d_new_orig AS
            SELECT o.id FROM d_orig o JOIN after_universal_transactions a ON a.id = o.id
             WHERE o.is_new AND a.created_by IS DISTINCT FROM {ACTOR}""",
        """CREATE OR REPLACE TEMP VIEW d_ref_txn AS
            SELECT * FROM before_universal_transactions
            UNION ALL BY NAME
            SELECT a.* REPLACE (CAST(d.base_original AS JSON) AS metadata)
              FROM after_universal_transactions a JOIN d_new_orig n ON n.id = a.id
              LEFT JOIN after_jsonb_derived d ON d.table_name = 'universal_transactions' AND d.id = a.id""",
        """CREATE OR REPLACE TEMP VIEW d_ref_lines AS
            SELECT * FROM before_universal_transaction_lines
            UNION ALL BY NAME
            SELECT l.* FROM after_universal_transaction_lines l JOIN d_new_orig n ON n.id = l.transaction_id""",
        """CREATE OR REPLACE TEMP TABLE d_lines_per_txn AS
            SELECT 'after' AS label, transaction_id, count(*) AS n FROM after_universal_transaction_lines
             WHERE transaction_id IN (SELECT id FROM d_twin UNION ALL SELECT id FROM d_repost)
             GROUP BY transaction_id
            UNION ALL
            SELECT 'before', transaction_id, count(*) FROM d_ref_lines
             WHERE transaction_id IN (SELECT original_id FROM d_twin UNION ALL SELECT original_txn_id FROM d_repost)
             GROUP BY transaction_id""",
        f"""CREATE OR REPLACE TEMP TABLE d_journal AS
            SELECT id, organization_id FROM after_core_entities
             WHERE entity_type = {ql(contract.JOURNAL_ENTITY_TYPE)} AND entity_code = {RUN}
            UNION SELECT id, organization_id FROM before_core_entities
             WHERE entity_type = {ql(contract.JOURNAL_ENTITY_TYPE)} AND entity_code = {RUN}""",
        f"""CREATE OR REPLACE TEMP TABLE d_entity_marked AS
            SELECT id, mig(metadata, 'role') AS role, 'after' AS label FROM after_core_entities
             WHERE mig(metadata, 'run_id') = {RUN}
            UNION ALL SELECT id, mig(metadata, 'role'), 'before' FROM before_core_entities
             WHERE mig(metadata, 'run_id') = {RUN}""",
        f"""CREATE OR REPLACE TEMP TABLE d_entity_mig AS SELECT id FROM d_entity_marked
             WHERE label = 'after' AND role = {ql(contract.ROLE_ENTITY)}""",
    ]


def pairs(table: str, columns: list[tuple[str, str]]) -> str:
    """Every row that differs between before and after, with its kind and changed columns."""
    key = "id" if table == "core_organizations" else "organization_id"
    txn = {"universal_transactions": "id", "universal_transaction_lines": "transaction_id"}.get(table)
    checks = ", ".join(
        f"CASE WHEN {cmp('b', name, typ)} IS DISTINCT FROM {cmp('a', name, typ)} THEN {ql(name)} END"
        for name, typ in columns)
    txn_expr = f"coalesce(a.{txn}, b.{txn})" if txn else "NULL::UUID"
    return f"""CREATE OR REPLACE TEMP TABLE d_pairs AS
        SELECT * FROM (
          SELECT coalesce(a.id, b.id) AS id, coalesce(a.{key}, b.{key}) AS organization_id,
                 {txn_expr} AS transaction_id,
                 CASE WHEN b.id IS NULL THEN 'inserted' WHEN a.id IS NULL THEN 'deleted' ELSE 'updated' END AS kind,
                 CASE WHEN a.id IS NOT NULL AND b.id IS NOT NULL THEN problems([{checks}]) ELSE [] END AS changed
            FROM {qi('before_' + table)} b FULL OUTER JOIN {qi('after_' + table)} a ON a.id = b.id)
         WHERE kind <> 'updated' OR len(changed) > 0"""


def cmp(alias: str, name: str, typ: str) -> str:
    return f"CAST({alias}.{qi(name)} AS VARCHAR)" if typ == "JSON" else f"{alias}.{qi(name)}"


def outcome(cls: str, reason: str) -> str:
    return f"struct_pack(class := '{cls}', reason := {reason})"


def checked(problems: str, ok_reason: str) -> str:
    """expected with `ok_reason` when the list of problem messages is empty, else unexpected listing them."""
    listed = f"array_to_string({problems}, '; ')"
    return (f"CASE WHEN len({problems}) = 0 THEN {outcome('expected', ql(ok_reason))} "
            f"ELSE {outcome('unexpected', listed)} END")


def only(allowed: tuple[str, ...]) -> str:
    quoted = ", ".join(ql(c) for c in allowed)
    return (f"CASE WHEN NOT list_has_all([{quoted}], p.changed) THEN 'changed columns outside the run''s rules: ' "
            f"|| array_to_string(list_filter(p.changed, c -> NOT list_contains([{quoted}], c)), ', ') END")


def copied(cols: dict[str, str], source: str, names: tuple[str, ...], what: str) -> str:
    """A problem message naming the columns (of `names`, where the table has them) that differ from `source`."""
    present = [n for n in names if n in cols]
    diffs = ", ".join(f"CASE WHEN {cmp('a', n, cols[n])} IS DISTINCT FROM {cmp(source, n, cols[n])} "
                      f"THEN {ql(n)} END" for n in present)
    return (f"CASE WHEN len(problems([{diffs}])) > 0 THEN {ql(what)} || array_to_string(problems([{diffs}]), ', ') "
            "END")


BY_ACTOR = (f"CASE WHEN a.created_by IS DISTINCT FROM {ACTOR} OR a.updated_by IS DISTINCT FROM {ACTOR} "
             "THEN 'created_by/updated_by is not the migration actor' END")


def writer(kind_col: str = "p.kind") -> str:
    return f"CASE {kind_col} WHEN 'inserted' THEN a.created_by ELSE a.updated_by END"


WRITTEN_BY_ACTOR = f"(b.created_by = {ACTOR} OR b.updated_by = {ACTOR})"
DELETED_ACTOR = outcome("unexpected", "'deleted a row written by the migration actor (the migration never deletes)'")


def pre_value(name: str, typ: str) -> str:
    path = ql(f"$.{contract.META_MIGRATION}.pre.{name}")
    if name == "metadata":
        return "coalesce(js(d.pre_metadata), 'null')"
    if typ == "VARCHAR":
        return f"json_extract_string(a.metadata, {path})"
    if typ.endswith("[]"):
        return f"TRY_CAST(json_extract(a.metadata, {path}) AS {typ})"
    return f"TRY_CAST(json_extract_string(a.metadata, {path}) AS {typ})"


def pre_matches(name: str, typ: str) -> str:
    before = "coalesce(js(b.metadata), 'null')" if name == "metadata" else f"b.{qi(name)}"
    return f"{pre_value(name, typ)} IS NOT DISTINCT FROM {before}"


def pre_has(name: str) -> str:
    return f"json_exists(a.metadata, {ql(f'$.{contract.META_MIGRATION}.pre.{name}')})"


def pre_mismatches(columns: dict[str, str], names: tuple[str, ...], *, required: bool) -> str:
    """List of the columns in `names` whose pre-image is wrong (or, if `required`, missing)."""
    items = []
    for name in names:
        bad = f"NOT ({pre_matches(name, columns[name])})"
        cond = f"(NOT {pre_has(name)} OR {bad})" if required else f"({pre_has(name)} AND {bad})"
        items.append(f"CASE WHEN {cond} THEN {ql(name)} END")
    return f"problems([{', '.join(items)}])"


def exp(reason: str) -> str:
    return outcome("expected", ql(reason))


def unexp(reason: str) -> str:
    return outcome("unexpected", ql(reason))


def conc(reason: str) -> str:
    return outcome("concurrent", ql(reason))


NEW_MARKED = outcome("unexpected",
                       "'new transaction carries this run''s marker with role ' || coalesce(mk.role, '?')")
CONCURRENT_WRITE = f"""WHEN {writer()} IS DISTINCT FROM {ACTOR} THEN
           CASE p.kind WHEN 'inserted' THEN {conc("inserted by another actor")}
                ELSE {conc("updated by another actor")} END"""
CONCURRENT_DELETE = f"""WHEN {WRITTEN_BY_ACTOR} THEN {DELETED_ACTOR}
           ELSE {conc("deleted; not a row of this run")}"""

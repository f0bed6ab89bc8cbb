"""The classification rules of diff.py as SQL: one INSERT INTO d_rows per table over its d_pairs.

Each difference gets a struct {class, reason}; the reasons below are what a sample's `reason` says. The rules
are documented (for auditors) in diff.py's docstring; keep the two in step.
"""
# ruff: noqa: S608  (a SQL builder: identifiers go through qi(), literals through ql(), values are DuckDB variables)

from __future__ import annotations

from runner import contract
from runner.snapshot.duck import qi, ql
from runner.snapshot.rules import (
    ACTOR,
    ALIAS_CHANGES,
    BY_ACTOR,
    CONCURRENT_DELETE,
    CONCURRENT_WRITE,
    NEVER_EXPLAINED,
    NEW_MARKED,
    ORG_CHANGES,
    ORIGINAL_CHANGES,
    REPOST_COPIED,
    TWIN_COPIED,
    checked,
    conc,
    copied,
    exp,
    only,
    pre_has,
    pre_matches,
    pre_mismatches,
    unexp,
    writer,
)


def classify(table: str, columns: list[tuple[str, str]]) -> str:
    """INSERT INTO d_rows the classified differences of `table` (d_pairs must hold them)."""
    cols = dict(columns)
    outcome, joins = {
        "universal_transactions": _transactions, "universal_transaction_lines": _lines,
        "core_entities": _entities, "core_dynamic_data": _dynamic_data, "core_relationships": _relationships,
        "core_organizations": _organizations,
    }[table](cols)
    return f"""INSERT INTO d_rows
        SELECT {ql(table)}, id, organization_id, transaction_id, kind, changed,
               struct_extract(outcome, 'class'), struct_extract(outcome, 'reason')
          FROM (SELECT p.*, {outcome} AS outcome
                  FROM d_pairs p
                  LEFT JOIN {qi('before_' + table)} b ON b.id = p.id
                  LEFT JOIN {qi('after_' + table)} a ON a.id = p.id
                  {joins})"""


def _transactions(cols: dict[str, str]) -> tuple[str, str]:
    pre_all = pre_mismatches(cols, contract.ORIGINAL_PREIMAGE_COLUMNS, required=True)
    pre_some = pre_mismatches(cols, contract.ORIGINAL_PREIMAGE_COLUMNS, required=False)
    sc = ("CASE WHEN sc_norm(a.smart_code) IS DISTINCT FROM sc_norm(b.smart_code) "
          "THEN 'smart_code changed beyond the case of its version suffix' END")
    original = checked(f"""problems([
        {only(ORIGINAL_CHANGES)},
        CASE WHEN a.transaction_status IS DISTINCT FROM 'reversed' THEN 'transaction_status is not reversed' END,
        CASE WHEN js(d.base_original) IS DISTINCT FROM coalesce(js(b.metadata), '{{}}')
             THEN 'metadata changed beyond migration + HERA''s reversal keys' END,
        CASE WHEN o.reversal_id IS NULL THEN 'metadata.reversal_id missing' END,
        CASE WHEN a.version IS DISTINCT FROM b.version + 1 THEN 'version did not go up by exactly 1' END,
        CASE WHEN a.updated_by IS DISTINCT FROM {ACTOR} THEN 'updated_by is not the migration actor' END,
        {sc},
        CASE WHEN len({pre_all}) > 0 THEN 'metadata.migration.pre differs from the before row in: '
             || array_to_string({pre_all}, ', ') END,
        CASE WHEN orp.id IS NULL THEN 'its repost (migration.repost_id) is not a new repost of this original' END,
        CASE WHEN otw.id IS NULL THEN 'its reversal (metadata.reversal_id) is not a new -REV twin of it' END,
        CASE WHEN o.mig_reversal_id IS DISTINCT FROM o.reversal_id AND o.mig_reversal_id IS NOT NULL
             THEN 'migration.reversal_id differs from metadata.reversal_id' END])""",
                        "original reversed and reposted by this run; pre-image matches the before row")
    alias = checked(f"""problems([
        {only(ALIAS_CHANGES)},
        CASE WHEN js(d.base_alias) IS DISTINCT FROM coalesce(js(b.metadata), '{{}}')
             THEN 'metadata changed beyond reporting_smartcode + migration' END,
        CASE WHEN NOT json_exists(a.metadata, '$.{contract.META_REPORTING_ALIAS}')
             THEN 'metadata.{contract.META_REPORTING_ALIAS} missing' END,
        {sc},
        CASE WHEN a.updated_by IS DISTINCT FROM b.updated_by AND a.updated_by IS DISTINCT FROM {ACTOR}
             THEN 'updated_by changed to another actor' END,
        CASE WHEN a.version IS DISTINCT FROM b.version AND a.version IS DISTINCT FROM b.version + 1
             THEN 'version changed by more than 1' END,
        CASE WHEN NOT json_exists(a.metadata, '$.{contract.META_MIGRATION}.pre')
             THEN 'metadata.migration.pre missing' END,
        CASE WHEN len({pre_some}) > 0 THEN 'metadata.migration.pre differs from the before row in: '
             || array_to_string({pre_some}, ', ') END])""", "tier-3 alias keys added by this run")
    twin_code = r"regexp_replace(ob.smart_code, '\.V([0-9]+)$', '.REVERSAL.V\1')"  # HERA's own (case-sensitive)
    twin = checked(f"""problems([
        {BY_ACTOR},
        {copied(cols, 'ob', TWIN_COPIED, 'differs from its original in: ')},
        CASE WHEN a.transaction_status IS DISTINCT FROM 'posted' THEN 'transaction_status is not posted' END,
        CASE WHEN sc_norm(a.smart_code) IS DISTINCT FROM sc_norm(ob.smart_code)
              AND sc_norm(a.smart_code) IS DISTINCT FROM sc_norm({twin_code})
             THEN 'smart_code is not its original''s' END,
        CASE WHEN tor.reversal_id IS DISTINCT FROM p.id
             THEN 'its original''s metadata.reversal_id does not point back' END,
        CASE WHEN ob.id IS NULL THEN 'its original is not in the before snapshot' END,
        CASE WHEN a.transaction_code IS DISTINCT FROM coalesce(ob.transaction_code, '') || '-REV'
             THEN 'transaction_code is not the original''s plus -REV' END,
        CASE WHEN js(d.base_twin) IS DISTINCT FROM coalesce(js(ob.metadata), '{{}}')
             THEN 'metadata is not the original''s plus HERA''s reversal keys' END,
        CASE WHEN coalesce(la.n, 0) <> coalesce(lb.n, 0)
             THEN 'line count ' || coalesce(la.n, 0) || ' differs from its original''s ' || coalesce(lb.n, 0) END])""",
                    "-REV twin of an original of this run (HERA reversal)")
    repost = checked(f"""problems([
        {BY_ACTOR},
        CASE WHEN rob.id IS NULL THEN 'its original is not in the before snapshot' END,
        {copied(cols, 'rob', REPOST_COPIED, 'differs from its original in: ')},
        CASE WHEN coalesce(rla.n, 0) <> coalesce(rlb.n, 0)
             THEN 'line count ' || coalesce(rla.n, 0) || ' differs from its original''s ' || coalesce(rlb.n, 0) END,
        CASE WHEN ro.id IS NULL THEN 'migration.original_txn_id is not an original of this run' END,
        CASE WHEN ro.repost_id IS DISTINCT FROM p.id
             THEN 'its original''s migration.repost_id does not point back' END])""",
                      "v2 repost of an original of this run")
    new_original = f"""CASE WHEN len(problems([
        CASE WHEN a.transaction_status IS DISTINCT FROM 'reversed' THEN 'transaction_status is not reversed' END,
        CASE WHEN o.reversal_id IS NULL THEN 'metadata.reversal_id missing' END,
        CASE WHEN a.updated_by IS DISTINCT FROM {ACTOR} THEN 'updated_by is not the migration actor' END,
        CASE WHEN js(d.pre_metadata) IS DISTINCT FROM js(d.base_original)
             THEN 'metadata.migration.pre.metadata is not its metadata without the run''s keys' END,
        CASE WHEN orp.id IS NULL THEN 'its repost (migration.repost_id) is not a new repost of this original' END,
        CASE WHEN otw.id IS NULL THEN 'its reversal (metadata.reversal_id) is not a new -REV twin of it' END])) = 0
        THEN {conc("inserted by another actor during the run, then reversed and reposted by this run")}
        ELSE {unexp("inserted by another actor during the run; migrated by this run inconsistently")} END"""
    outcome = f"""CASE p.kind
        WHEN 'inserted' THEN CASE
            WHEN tw.id IS NOT NULL THEN {twin}
            WHEN rp.id IS NOT NULL THEN {repost}
            WHEN no.id IS NOT NULL THEN {new_original}
            WHEN mk.id IS NOT NULL THEN {NEW_MARKED}
            {CONCURRENT_WRITE}
            ELSE {unexp("inserted by the migration actor but not a repost or -REV twin of this run")} END
        WHEN 'updated' THEN CASE
            WHEN o.id IS NOT NULL THEN {original}
            WHEN al.id IS NOT NULL THEN {alias}
            WHEN t.id IS NOT NULL THEN {unexp("a transaction of this run changed outside its role's rules")}
            {CONCURRENT_WRITE}
            ELSE {unexp("updated by the migration actor without this run's marker")} END
        ELSE CASE
            WHEN t.id IS NOT NULL THEN {unexp("deleted a transaction this run depends on")}
            {CONCURRENT_DELETE} END
        END"""
    joins = """LEFT JOIN after_jsonb_derived d ON d.table_name = 'universal_transactions' AND d.id = p.id
        LEFT JOIN d_twin tw ON tw.id = p.id AND tw.is_new
        LEFT JOIN d_orig tor ON tor.id = tw.original_id
        LEFT JOIN d_ref_txn ob ON ob.id = tw.original_id
        LEFT JOIN d_lines_per_txn la ON la.label = 'after' AND la.transaction_id = tw.id
        LEFT JOIN d_lines_per_txn lb ON lb.label = 'before' AND lb.transaction_id = tw.original_id
        LEFT JOIN d_repost rp ON rp.id = p.id AND rp.is_new
        LEFT JOIN d_orig ro ON ro.id = rp.original_txn_id
        LEFT JOIN d_ref_txn rob ON rob.id = rp.original_txn_id
        LEFT JOIN d_lines_per_txn rla ON rla.label = 'after' AND rla.transaction_id = rp.id
        LEFT JOIN d_lines_per_txn rlb ON rlb.label = 'before' AND rlb.transaction_id = rp.original_txn_id
        LEFT JOIN d_marked mk ON mk.id = p.id
        LEFT JOIN d_orig o ON o.id = p.id
        LEFT JOIN d_repost orp ON orp.id = o.repost_id AND orp.original_txn_id = o.id AND orp.is_new
        LEFT JOIN d_twin otw ON otw.id = o.reversal_id AND otw.original_id = o.id AND otw.is_new
        LEFT JOIN d_alias al ON al.id = p.id
        LEFT JOIN d_new_orig no ON no.id = p.id
        LEFT JOIN d_touched t ON t.id = p.id"""
    return outcome, joins


def _lines(cols: dict[str, str]) -> tuple[str, str]:
    same = ("a.entity_id IS NOT DISTINCT FROM o.entity_id AND json_extract_string(a.line_data, '$.side') "
            "IS NOT DISTINCT FROM json_extract_string(o.line_data, '$.side')")
    repost_line = checked(f"""problems([
        {BY_ACTOR},
        CASE WHEN o.id IS NULL THEN 'its original has no line ' || a.line_number
             WHEN NOT ({same} AND a.line_amount IS NOT DISTINCT FROM o.line_amount)
             THEN 'does not copy original line ' || a.line_number || ' (account, side, amount)' END])""",
                           "line of a v2 repost of this run, copying the original line")
    mirror = f"""problems([
        {BY_ACTOR},
        CASE WHEN o.id IS NULL THEN 'its original has no line ' || a.line_number
             WHEN a.entity_id IS DISTINCT FROM o.entity_id
               OR a.line_amount IS DISTINCT FROM -coalesce(o.line_amount, o.quantity * o.unit_amount)
               OR js(a.line_data) IS DISTINCT FROM js(o.line_data)
             THEN 'does not mirror original line ' || a.line_number || ' (account, negated amount, line_data/side)'
             END])"""
    twin_line = checked(mirror, "line of a -REV twin of this run, mirroring the original line")
    outcome = f"""CASE p.kind
        WHEN 'inserted' THEN CASE
            WHEN rp.id IS NOT NULL THEN {repost_line}
            WHEN tw.id IS NOT NULL THEN {twin_line}
            WHEN nl.id IS NOT NULL AND a.created_by IS DISTINCT FROM {ACTOR}
                 THEN {conc("line of a transaction another actor inserted during the run")}
            WHEN t.id IS NOT NULL THEN {unexp("line added to a transaction of this run")}
            {CONCURRENT_WRITE}
            ELSE {unexp("inserted by the migration actor outside the transactions of this run")} END
        WHEN 'updated' THEN CASE
            WHEN t.id IS NOT NULL OR tb.id IS NOT NULL THEN {unexp("line of a transaction of this run changed")}
            {CONCURRENT_WRITE}
            ELSE {unexp("updated by the migration actor (the migration never updates lines)")} END
        ELSE CASE
            WHEN tb.id IS NOT NULL THEN {unexp("line of a transaction of this run deleted")}
            {CONCURRENT_DELETE} END
        END"""
    joins = """LEFT JOIN d_repost rp ON rp.id = a.transaction_id AND rp.is_new
        LEFT JOIN d_twin tw ON tw.id = a.transaction_id AND tw.is_new
        LEFT JOIN d_ref_lines o
               ON o.transaction_id = coalesce(tw.original_id, rp.original_txn_id) AND o.line_number = a.line_number
        LEFT JOIN d_new_orig nl ON nl.id = a.transaction_id
        LEFT JOIN d_touched t ON t.id = a.transaction_id
        LEFT JOIN d_touched tb ON tb.id = b.transaction_id"""
    return outcome, joins


def _entity_explained(name: str, typ: str, cols: dict[str, str]) -> str:
    has_pre = f"({pre_has(name)} AND {pre_matches(name, typ)})"
    if name == "version":
        return f"(a.version = b.version + 1 OR {has_pre})"
    if name == "metadata":
        return f"(js(d.base_entity) IS NOT DISTINCT FROM coalesce(js(b.metadata), '{{}}') OR {has_pre})"
    if name in NEVER_EXPLAINED or typ == "JSON":
        return "false"
    return has_pre


def _entities(cols: dict[str, str]) -> tuple[str, str]:
    free = ("updated_at", "updated_by")
    unexplained = "problems([" + ", ".join(
        f"CASE WHEN list_contains(p.changed, {ql(name)}) AND NOT {_entity_explained(name, typ, cols)} "
        f"THEN {ql(name)} END" for name, typ in cols.items() if name not in free) + "])"
    check = checked(f"""problems([
        CASE WHEN a.updated_by IS DISTINCT FROM {ACTOR} THEN 'updated_by is not the migration actor' END,
        CASE WHEN len({unexplained}) > 0 THEN 'changed without a matching pre-image in metadata.migration.pre: '
             || array_to_string({unexplained}, ', ') END])""", "entity migrated by this run; pre-image matches")
    outcome = f"""CASE p.kind
        WHEN 'inserted' THEN CASE
            WHEN j.id IS NOT NULL THEN CASE WHEN a.created_by = {ACTOR}
                 THEN {exp("journal entity of this run")}
                 ELSE {unexp("journal entity of this run written by another actor")} END
            WHEN mk.id IS NOT NULL
                 THEN {unexp("new entity carries this run's marker (entity migrations update in place)")}
            {CONCURRENT_WRITE}
            ELSE {unexp("inserted by the migration actor, not this run's journal")} END
        WHEN 'updated' THEN CASE
            WHEN j.id IS NOT NULL THEN CASE WHEN a.updated_by = {ACTOR}
                 THEN {exp("journal entity of this run")}
                 ELSE {unexp("journal entity of this run written by another actor")} END
            WHEN em.id IS NOT NULL THEN {check}
            WHEN mk.id IS NOT NULL THEN {unexp("entity of this run changed outside the entity-migration rules")}
            {CONCURRENT_WRITE}
            ELSE {unexp("updated by the migration actor without this run's marker")} END
        ELSE CASE
            WHEN j.id IS NOT NULL OR mk.id IS NOT NULL THEN {unexp("deleted an entity of this run")}
            {CONCURRENT_DELETE} END
        END"""
    joins = """LEFT JOIN after_jsonb_derived d ON d.table_name = 'core_entities' AND d.id = p.id
        LEFT JOIN d_journal j ON j.id = p.id
        LEFT JOIN d_entity_mig em ON em.id = p.id
        LEFT JOIN (SELECT DISTINCT id FROM d_entity_marked) mk ON mk.id = p.id"""
    return outcome, joins


def _dynamic_data(cols: dict[str, str]) -> tuple[str, str]:
    outcome = f"""CASE p.kind
        WHEN 'deleted' THEN CASE
            WHEN jb.id IS NOT NULL OR mkb.id IS NOT NULL
                 THEN {unexp("deleted a dynamic field of an entity of this run")}
            {CONCURRENT_DELETE} END
        ELSE CASE
            WHEN j.id IS NOT NULL OR jb.id IS NOT NULL THEN CASE WHEN {writer()} = {ACTOR}
                 THEN {exp("field of the journal of this run")}
                 ELSE {unexp("field of the journal of this run written by another actor")} END
            WHEN em.id IS NOT NULL THEN CASE WHEN {writer()} = {ACTOR}
                 THEN {exp("dynamic field of an entity migrated by this run")}
                 ELSE {unexp("dynamic field of an entity of this run written by another actor")} END
            {CONCURRENT_WRITE}
            ELSE {unexp("written by the migration actor for an entity this run did not migrate")} END
        END"""
    joins = """LEFT JOIN d_journal j ON j.id = a.entity_id
        LEFT JOIN d_journal jb ON jb.id = b.entity_id
        LEFT JOIN d_entity_mig em ON em.id = a.entity_id
        LEFT JOIN (SELECT DISTINCT id FROM d_entity_marked) mkb ON mkb.id = b.entity_id"""
    return outcome, joins


def _relationships(cols: dict[str, str]) -> tuple[str, str]:
    outcome = f"""CASE WHEN p.kind = 'deleted' THEN CASE {CONCURRENT_DELETE} END
        ELSE CASE {CONCURRENT_WRITE}
             ELSE {unexp("written by the migration actor (the migration never writes relationships)")} END END"""
    return outcome, ""


def _organizations(cols: dict[str, str]) -> tuple[str, str]:
    check = checked(f"""problems([{only(ORG_CHANGES)},
        CASE WHEN j.organization_id IS NULL THEN 'no journal of this run in this organisation' END])""",
                     "organisation settings migrated by this run")
    outcome = f"""CASE
        WHEN p.kind = 'deleted' THEN CASE {CONCURRENT_DELETE} END
        WHEN p.kind = 'updated' AND a.updated_by = {ACTOR} THEN {check}
        ELSE CASE {CONCURRENT_WRITE}
             ELSE {unexp("organisation inserted by the migration actor")} END END"""
    joins = "LEFT JOIN (SELECT DISTINCT organization_id FROM d_journal) j ON j.organization_id = p.id"
    return outcome, joins

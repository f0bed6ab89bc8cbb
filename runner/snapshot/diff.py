"""The expected-effect diff: every difference between the `before` and `after` snapshots, classified.

Rows are matched by primary key (`id`) per table, in DuckDB SQL (runner/sql/diff, run in the order rules.py
gives). A row is a difference when it is only in `after` (inserted), only in `before` (deleted), or in both with
at least one column not identical
(updated; the changed columns are listed). Values compare exactly: DECIMALs as decimals, timestamps to the
microsecond, jsonb as PostgreSQL's normalised jsonb text (key order of the writer does not matter, see
columns.py). Comparisons of parts of a jsonb document (metadata without the harness/reversal keys,
`migration.pre.metadata`) use texts PostgreSQL computed at extraction (`*_jsonb_derived`), never DuckDB's JSON
functions, which round numbers through double precision; scalar pre-image values (strings, uuids, integers,
timestamps) are read with json_extract_string and cast to the column type.

Every difference gets exactly one class. R is the run id, A the migration actor (`contract.MIGRATION_ACTOR_ID`);
"marked" means `metadata.migration.run_id = R`; "written by" means created_by for an insert and updated_by for
an update.

EXPECTED — explained by run R:
  universal_transactions
    E1 inserted repost: marked, role "repost", created_by and updated_by A, `migration.original_txn_id` is an
       original O of R (E3) whose `migration.repost_id` points back; transaction_type, transaction_date,
       total_amount, source/target entity, currencies and exchange_rate equal O's before values; as many lines
       as O had.
    E2 inserted -REV twin: `metadata.reversal_of` is an original O of R; created_by and updated_by A; O's
       `metadata.reversal_id` points back; status "posted"; transaction_code = O's code + "-REV"; the columns
       hera_txn_reverse_v1 copies (rules.TWIN_COPIED: type, entities, references, ai_*, business_context,
       approval, currencies, exchange_rate, fiscal year/period) equal O's before values; smart_code is O's
       (up to the version-suffix case, or HERA's `.REVERSAL.V<n>` rewrite of an upper-case code); its metadata
       minus {migration, reversal_of, reversal_reason, reversal_at} equals O's before metadata; as many lines
       as O had.
    E3 updated original: marked, role "original", and ALL of: only transaction_status, metadata, version,
       updated_at, updated_by, smart_code changed; status is "reversed"; metadata minus {migration,
       reversal_id, reversed_at, reversal_reason} equals the before metadata (NULL counts as {}); reversal_id
       present; version = before + 1 (HERA's reverse); updated_by = A (HERA's reverse leaves updated_by as it
       was; the run's mark stamps A); smart_code differs at most by the case of its
       `.v<n>` suffix; `migration.pre` holds all of smart_code, smart_code_status, transaction_status,
       metadata, version, updated_at, updated_by with exactly the before values; `migration.repost_id` is a new
       repost of it (E1) and `metadata.reversal_id` a new twin of it (E2); `migration.reversal_id`, if
       present, equals `metadata.reversal_id`.
    E4 updated alias (tier 3): marked, role "alias", and ALL of: only metadata, smart_code, updated_at,
       updated_by, version changed; metadata minus {migration, reporting_smartcode} equals the before metadata;
       reporting_smartcode present; smart_code at most suffix case; updated_by unchanged or A; version
       unchanged or +1; `migration.pre` present and every column it names holds the before value.
  universal_transaction_lines
    E5 inserted line of a new repost of R, created_by and updated_by A, copying the original's before line
       with the same line_number: same entity_id, side (line_data.side) and line_amount (the line smart code
       may change: that is the migration).
    E6 inserted line of a new twin of R, created_by and updated_by A, mirroring the original's before line
       with the same line_number: same entity_id, line_amount negated, identical line_data (HERA keeps the side).
  core_entities
    E7 the journal of R (entity_type MIGRATION_RUN, entity_code R) inserted or updated, written by A.
    E8 updated entity marked with role "entity", updated_by A, and every changed column explained:
       updated_at/updated_by always; version if +1 or recorded in pre; metadata if it only gained `migration`
       or pre.metadata holds the before metadata; any other non-JSON column if pre records its before value.
       id, organization_id, created_at, created_by and other JSON columns are never explained.
  core_dynamic_data
    E9 row of R's journal entity, or of an entity marked "entity" by R, inserted/updated and written by A.
  core_organizations
    E10 updated by A, only settings/updated_at/updated_by changed, and R has a journal in that organisation.

CONCURRENT — not this run's doing: a row inserted or updated by another actor (written by ≠ A) that is not a
row of R (not marked, not a twin/repost/original of R or a line of one, not R's journal, not a dynamic field
of an entity of R); a deleted row that R did not depend on and that A never wrote. Also concurrent: an original
another actor inserted during the run (not in `before`, created_by ≠ A) that R's re-scan then migrated, when R left
it consistent (status "reversed", reversal_id present, updated_by A, `migration.pre.metadata` = its metadata
without R's and HERA's reversal keys, a new repost and twin of it), and that original's own lines. Its twin and
repost are judged by E1/E2/E5/E6 against the original as R found it (its after row with that metadata) in place
of a before row.

A row inserted by the run and then changed by anyone is judged by its final state, so a twin or repost edited
afterwards fails E1/E2/E5/E6 and is unexpected.

UNEXPECTED — everything else, always critical. For example: an original (or its lines) changed in a way the
rules above do not allow, or by another actor after the run; a line added to, changed in or deleted from a
transaction of R; a repost/twin without its pairing; a deleted row of R or one R depended on (an original,
its lines, R's journal or entities); a deleted row written by A (the migration never deletes); any write by A
not explained above (relationships, lines of other transactions, unmarked rows).

Results: every classified row goes to the DuckDB table `diff_rows` (replaced per call); `DiffResult` holds
counts by class × table and class × table × kind, and up to `samples` rows per (table, class), ordered by kind
and id, with record id, organization id, transaction (header) id, changed columns and the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb

from runner.compile import Statement
from runner.compile import render_duck as sql
from runner.contract import MIGRATION_ACTOR_ID
from runner.errors import DataError
from runner.snapshot import duck, rules
from runner.snapshot.duck import DIFF_LABELS, TABLES

CLASSES = ("expected", "unexpected", "concurrent")
KINDS = ("inserted", "updated", "deleted")
DIFF_TABLE = "diff_rows"  # written by diff(); named literally in its SQL (diff/store)
# Differing pairs classified per statement: a large table goes in hash buckets of about BUCKET_PAIRS / weight rows,
# so the DuckDB memory a statement needs does not grow with the organisation. Buckets follow reversal groups (a new
# -REV twin and a new repost go with their original, a line with its transaction's group; diff/pairs' bucket_key),
# so the pairs, the before/after rows and every cross-reference lookup are cut to the bucket. A universal_transactions
# pair weighs the most: its before and after rows with their jsonb, and the original's row for a twin or repost.
BUCKET_PAIRS = 100_000
BUCKET_WEIGHT = {"universal_transactions": 4}


@dataclass(frozen=True)
class DiffSample:
    table: str
    record_id: str
    organization_id: str | None
    transaction_id: str | None
    kind: str
    changed_columns: list[str]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "organization_id": self.organization_id,
                "transaction_id": self.transaction_id, "kind": self.kind, "changed_columns": self.changed_columns,
                "reason": self.reason}


@dataclass
class DiffResult:
    run_id: str
    actor_id: str
    counts: dict[str, dict[str, int]]  # class -> table -> rows
    by_kind: dict[str, dict[str, dict[str, int]]]  # class -> table -> kind -> rows
    samples: dict[str, dict[str, list[DiffSample]]] = field(default_factory=dict)  # class -> table -> samples
    seconds: float = 0.0

    def total(self, cls: str) -> int:
        return sum(self.counts[cls].values())

    @property
    def ok(self) -> bool:
        """No unexpected difference (an unexpected one is always critical)."""
        return self.total("unexpected") == 0

    def as_dict(self) -> dict[str, Any]:
        """The results.json `diff` section: {expected, unexpected, concurrent} counts by table, plus details."""
        out: dict[str, Any] = {cls: dict(self.counts[cls]) for cls in CLASSES}
        out["details"] = {"run_id": self.run_id, "actor_id": self.actor_id, "seconds": round(self.seconds, 3),
                          "totals": {cls: self.total(cls) for cls in CLASSES}, "by_kind": self.by_kind}
        out["samples"] = {cls: {t: [s.as_dict() for s in rows] for t, rows in self.samples.get(cls, {}).items()}
                          for cls in CLASSES}
        return out


def diff(duckdb_path: Path, run_id: str, actor_id: UUID | str = MIGRATION_ACTOR_ID, *, samples: int = 20) -> DiffResult:
    """Classify every before/after difference in `duckdb_path` for run `run_id` (see the module docstring)."""
    t0 = time.monotonic()
    con = duck.connect(duckdb_path)
    try:
        columns = _columns(con)
        for stmt in variables(run_id, actor_id):
            _execute(con, stmt)
        *work, store = rules.statements(columns)
        for stmt in work:
            if stmt.name.startswith("diff/classify_"):
                table = next(t for t, name in rules.CLASSIFY_TEMPLATE.items() if name == stmt.name)
                row = _execute(con, sql("diff/pair_count")).fetchone()
                pairs = int(row[0] if row else 0) * BUCKET_WEIGHT.get(table, 1)
                buckets = max(1, -(-pairs // BUCKET_PAIRS))
                for bucket in range(buckets):  # one bounded statement per bucket (DuckDB's memory_limit holds)
                    _execute(con, rules.classify(table, columns, bucket, buckets))
                continue
            _execute(con, stmt)
        con.begin()
        _execute(con, store)
        con.commit()
        result = _summarise(con, str(run_id), str(actor_id), samples)
    finally:
        con.close()
    result.seconds = time.monotonic() - t0
    return result


def variables(run_id: str, actor_id: UUID | str) -> list[Statement]:
    """The DuckDB variables every diff statement reads."""
    return [sql("diff/variable", variable="run_id", value=str(run_id)),
            sql("diff/variable", variable="actor_id", value=str(UUID(str(actor_id))))]


def _execute(con: duckdb.DuckDBPyConnection, stmt: Statement) -> duckdb.DuckDBPyConnection:
    return con.execute(stmt.text, stmt.params or None)


def _columns(con: duckdb.DuckDBPyConnection) -> rules.Columns:
    out: rules.Columns = {}
    for table in TABLES:
        per_label = []
        for label in DIFF_LABELS:
            rows = _execute(con, sql("diff/columns", table=duck.snapshot_table(label, table))).fetchall()
            if not rows:
                raise DataError(f"no {label} snapshot of {table} in this DuckDB file",
                                hint="take both snapshots (before and after) first")
            per_label.append([(str(n), str(t)) for n, t in rows])
        if per_label[0] != per_label[1]:
            raise DataError(f"{table}: the before and after snapshots have different columns")
        out[table] = per_label[0]
    for label in DIFF_LABELS:
        if not _execute(con, sql("diff/table_exists", table=duck.derived_table(label))).fetchall():
            raise DataError(f"no {duck.derived_table(label)} table: re-take the {label} snapshot")
    return out


def _summarise(con: duckdb.DuckDBPyConnection, run_id: str, actor_id: str, limit: int) -> DiffResult:
    counts = {cls: dict.fromkeys(TABLES, 0) for cls in CLASSES}
    by_kind = {cls: {t: dict.fromkeys(KINDS, 0) for t in TABLES} for cls in CLASSES}
    for table, cls, kind, n in _execute(con, sql("diff/counts")).fetchall():
        counts[cls][table] += n
        by_kind[cls][table][kind] += n
    result = DiffResult(run_id=run_id, actor_id=actor_id, counts=counts, by_kind=by_kind)
    rows = _execute(con, sql("diff/samples", limit=limit)).fetchall()
    for table, cls, rid, org, txn, kind, changed, reason in rows:
        sample = DiffSample(table=table, record_id=rid, organization_id=org, transaction_id=txn, kind=kind,
                            changed_columns=list(changed), reason=reason)
        result.samples.setdefault(cls, {}).setdefault(table, []).append(sample)
    return result

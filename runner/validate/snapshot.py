"""The checks that read the DuckDB before/after snapshots (reports/<run_id>/snapshots.duckdb), and the adapter
to the snapshot layer's expected-effect diff.

- trial_balance_unchanged, snapshot form: the trial balance (net DR - CR of GL lines per organisation x account x
  currency, every header whatever its status) of the `before` snapshot equals that of the `after` snapshot,
  counting in `after` only headers that existed before or that the run inserted (its reposts, the reversals of
  its originals); rows other sessions inserted during the run are the diff's "concurrent" class, not a change of
  the migrated ledger. Sums are DuckDB DECIMAL(38, s): exact.
- alias_only_metadata, snapshot half: an alias row differs from its before image only in metadata (the two keys
  the alias adds: compared as PostgreSQL's own jsonb text, see runner.snapshot.extract), updated_at, updated_by,
  version and the case of the smart code's `.v<n>` suffix (the rules of the diff's class E4); every other column
  and its lines are identical.

The trial balance is computed here rather than with runner.snapshot.ledger.trial_balance_delta_sql on purpose:
that helper compares whole snapshots, so v1 traffic posting during the run (the load test does) would read as a
change of the ledger, and it leaves voided headers out, so a concurrent void would too.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from runner import contract
from runner.snapshot import duck
from runner.snapshot.diff import DiffResult, diff
from runner.validate.effects import DiffFailure

Row = tuple[str, str, str]
ALIAS_FREE_COLUMNS = frozenset({"metadata", "updated_at", "updated_by", "version", "smart_code"})
_CANON = r"regexp_replace(upper({x}), '\.V([0-9]+)$', '.v\1')"
_RUN = f"$.{contract.META_MIGRATION}.run_id"
_ROLE = f"$.{contract.META_MIGRATION}.role"
_ORIGINAL = f"$.{contract.META_MIGRATION}.original_txn_id"
_REVERSAL_OF = "$.reversal_of"
_SIDE = "$.side"


def labels(path: Path | None) -> set[str]:
    """The snapshot labels recorded in `path` (empty when the file or its `snapshots` table is missing)."""
    if path is None or not path.exists():
        return set()
    try:
        con = duck.connect(path, read_only=True)
    except Exception:  # unreadable: no snapshot, the PostgreSQL forms take over
        return set()
    try:
        rows = con.execute(f"SELECT DISTINCT label FROM {duck.qi(duck.SNAPSHOTS_TABLE)}").fetchall()  # noqa: S608
        return {str(r[0]) for r in rows}
    except duckdb.Error:
        return set()
    finally:
        con.close()


def _t(label: str, table: str) -> str:
    return duck.qi(duck.snapshot_table(label, table))


def trial_balance_rows(path: Path, run_id: str, org_ids: list[str], tolerance: Decimal,
                       by_currency: bool) -> list[Row]:
    currency = ("CASE WHEN ? THEN coalesce(h.transaction_currency_code, h.base_currency_code, '') ELSE '*' END")
    signed = ("CASE WHEN upper(json_extract_string(l.line_data, ?)) = 'CR' THEN -l.line_amount "
              "ELSE l.line_amount END")
    query = f"""
        WITH run_originals AS (
            SELECT CAST(h.id AS VARCHAR) AS id FROM {_t('after', 'universal_transactions')} AS h
             WHERE json_extract_string(h.metadata, ?) = ? AND json_extract_string(h.metadata, ?) = ?),
        after_headers AS (
            SELECT h.* FROM {_t('after', 'universal_transactions')} AS h
             WHERE h.id IN (SELECT b.id FROM {_t('before', 'universal_transactions')} AS b)
                OR (json_extract_string(h.metadata, ?) = ? AND json_extract_string(h.metadata, ?) = ?)
                OR json_extract_string(h.metadata, ?) IN (SELECT id FROM run_originals)),
        tb_before AS (
            SELECT CAST(h.organization_id AS VARCHAR) AS org, CAST(l.entity_id AS VARCHAR) AS account,
                   {currency} AS currency, sum({signed}) AS balance
              FROM {_t('before', 'universal_transaction_lines')} AS l
              JOIN {_t('before', 'universal_transactions')} AS h ON h.id = l.transaction_id
             WHERE regexp_matches(l.smart_code, '\\.GL\\.') AND list_contains(?, CAST(h.organization_id AS VARCHAR))
             GROUP BY ALL),
        tb_after AS (
            SELECT CAST(h.organization_id AS VARCHAR) AS org, CAST(l.entity_id AS VARCHAR) AS account,
                   {currency} AS currency, sum({signed}) AS balance
              FROM {_t('after', 'universal_transaction_lines')} AS l
              JOIN after_headers AS h ON h.id = l.transaction_id
             WHERE regexp_matches(l.smart_code, '\\.GL\\.') AND list_contains(?, CAST(h.organization_id AS VARCHAR))
             GROUP BY ALL)
        SELECT coalesce(a.org, b.org), coalesce(a.account, b.account), coalesce(a.currency, b.currency),
               coalesce(b.balance, 0), coalesce(a.balance, 0)
          FROM tb_after AS a
          FULL JOIN tb_before AS b ON a.org = b.org AND a.account IS NOT DISTINCT FROM b.account
                                  AND a.currency = b.currency
         WHERE abs(coalesce(a.balance, 0) - coalesce(b.balance, 0)) > CAST(? AS DECIMAL(38, 10))
         ORDER BY 1, 2, 3"""  # noqa: S608 - identifiers are quoted constants; every value is a parameter
    params: list[Any] = [_RUN, run_id, _ROLE, contract.ROLE_ORIGINAL, _RUN, run_id, _ROLE, contract.ROLE_REPOST,
                         _REVERSAL_OF, by_currency, _SIDE, org_ids, by_currency, _SIDE, org_ids, str(tolerance)]
    con = duck.connect(path, read_only=True)
    try:
        rows = con.execute(query, params).fetchall()
    finally:
        con.close()
    out = []
    for org, account, cur, before, after in rows:
        delta = Decimal(after) - Decimal(before)
        out.append((org, f"{account or '(no account)'} {cur}",
                    f"account {account or 'none'} ({cur}): balance before {_n(before)}, after {_n(after)}, "
                    f"after - before = {_n(delta)} (tolerance {_n(tolerance)})"))
    return out


def _n(value: Any) -> str:
    d = Decimal(value)
    return format(d.normalize(), "f") if d else "0"


def alias_rows(path: Path, run_id: str, org_ids: list[str]) -> list[Row]:
    con = duck.connect(path, read_only=True)
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE {_t('before', 'universal_transactions')}").fetchall()]
        compared = [c for c in cols if c not in ALIAS_FREE_COLUMNS]
        diffs = ", ".join(f"CASE WHEN b.{duck.qi(c)} IS DISTINCT FROM a.{duck.qi(c)} THEN {duck.ql(c)} END"
                          for c in compared)
        code_a, code_b = _CANON.format(x="a.smart_code"), _CANON.format(x="b.smart_code")
        query = f"""
            WITH aliases AS (
                SELECT a.* FROM {_t('after', 'universal_transactions')} AS a
                 WHERE json_extract_string(a.metadata, ?) = ? AND json_extract_string(a.metadata, ?) = ?
                   AND list_contains(?, CAST(a.organization_id AS VARCHAR))),
            line_changes AS (
                SELECT transaction_id FROM (
                    (SELECT * FROM {_t('before', 'universal_transaction_lines')}
                      WHERE transaction_id IN (SELECT id FROM aliases)
                     EXCEPT ALL
                     SELECT * FROM {_t('after', 'universal_transaction_lines')}
                      WHERE transaction_id IN (SELECT id FROM aliases))
                    UNION ALL
                    (SELECT * FROM {_t('after', 'universal_transaction_lines')}
                      WHERE transaction_id IN (SELECT id FROM aliases)
                     EXCEPT ALL
                     SELECT * FROM {_t('before', 'universal_transaction_lines')}
                      WHERE transaction_id IN (SELECT id FROM aliases))) AS x
                 GROUP BY transaction_id)
            SELECT CAST(a.organization_id AS VARCHAR), CAST(a.id AS VARCHAR), a.transaction_code,
                   concat_ws(', ', {diffs}) AS columns,
                   {code_a} IS DISTINCT FROM {code_b} AS code_changed,
                   CAST(d.base_alias AS VARCHAR) IS DISTINCT FROM CAST(b.metadata AS VARCHAR) AS metadata_changed,
                   a.id IN (SELECT transaction_id FROM line_changes) AS lines_changed
              FROM aliases AS a
              JOIN {_t('before', 'universal_transactions')} AS b ON b.id = a.id
              LEFT JOIN {duck.qi(duck.derived_table('after'))} AS d
                ON d.table_name = 'universal_transactions' AND d.id = a.id
             ORDER BY 2"""  # noqa: S608 - identifiers come from DuckDB's catalog, quoted; values are parameters
        rows = con.execute(query, [_RUN, run_id, _ROLE, contract.ROLE_ALIAS, org_ids]).fetchall()
    finally:
        con.close()
    out = []
    for org, record, code, columns, code_changed, metadata_changed, lines_changed in rows:
        problems = []
        if columns:
            problems.append(f"columns changed since the before snapshot: {columns}")
        if code_changed:
            problems.append("smart code changed since the before snapshot")
        if metadata_changed:
            problems.append("metadata changed beyond the alias keys since the before snapshot")
        if lines_changed:
            problems.append("lines changed since the before snapshot")
        if problems:
            out.append((org, record, f"alias {code or record}: {'; '.join(problems)}"))
    return out


def run_diff(path: Path, run_id: str) -> DiffResult | DiffFailure:
    """The snapshot layer's expected-effect diff; a failure is returned, not raised: the validation reports it in
    results.json (the diff check errors) and goes on."""
    try:
        return diff(path, run_id)
    except Exception as exc:  # reported in results.json, never fatal
        return DiffFailure(f"{type(exc).__name__}: {exc}")

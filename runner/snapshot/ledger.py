"""Row-level ledger helpers over a snapshot label, in DuckDB SQL with exact DECIMAL results.

HERA's convention (fixtures/sql/60_gl.sql, `v_universal_transaction_lines_drcr`): a line is a GL line when its
smart code contains `.GL.` (case-sensitive); its side is upper(line_data->>'side') ∈ {DR, CR}; its amount is
line_amount, normally positive, negative on reversal lines (same side). Signed here: DR positive, CR negative.
Lines carry no currency: the header's transaction_currency_code is the currency.
"""

from __future__ import annotations

import duckdb

from runner.errors import UsageError
from runner.snapshot.duck import LABELS, qi, snapshot_table


def trial_balance_sql(label: str, *, include_voided: bool = False) -> str:
    """organization_id, account_id (line entity_id), currency, debit, credit, balance (= debit - credit), lines.

    Sums of DECIMAL(20,8) line amounts are DECIMAL(38,8). Voided transactions are left out unless asked for
    (HERA's read and query RPCs hide them too); reversed ones stay, their -REV twins cancel them.
    """
    if label not in LABELS:
        raise UsageError(f"no snapshot label {label!r}")
    lines, headers = qi(snapshot_table(label, "universal_transaction_lines")), qi(
        snapshot_table(label, "universal_transactions"))
    voided = "" if include_voided else "AND h.transaction_status IS DISTINCT FROM 'voided'"
    return f"""
        WITH gl AS (
            SELECT l.organization_id, l.entity_id AS account_id, h.transaction_currency_code AS currency,
                   upper(json_extract_string(l.line_data, '$.side')) AS side, coalesce(l.line_amount, 0) AS amount
              FROM {lines} l JOIN {headers} h ON h.id = l.transaction_id
             WHERE l.smart_code LIKE '%.GL.%' {voided})
        SELECT organization_id, account_id, currency,
               sum(CASE WHEN side = 'DR' THEN amount ELSE 0 END) AS debit,
               sum(CASE WHEN side = 'CR' THEN amount ELSE 0 END) AS credit,
               sum(CASE side WHEN 'DR' THEN amount WHEN 'CR' THEN -amount ELSE 0 END) AS balance,
               count(*) AS lines
          FROM gl
         WHERE side IN ('DR', 'CR')
         GROUP BY ALL
         ORDER BY organization_id, account_id, currency"""  # noqa: S608


def trial_balance(con: duckdb.DuckDBPyConnection, label: str, *,
                  include_voided: bool = False) -> duckdb.DuckDBPyRelation:
    """The trial balance of a snapshot label as a DuckDB relation (compose it, or .fetchall() the small result)."""
    return con.sql(trial_balance_sql(label, include_voided=include_voided))


def trial_balance_delta_sql(*, include_voided: bool = False) -> str:
    """Per organisation × account × currency, before vs after balances where they differ (full outer join)."""
    before = trial_balance_sql("before", include_voided=include_voided)
    after = trial_balance_sql("after", include_voided=include_voided)
    return f"""
        SELECT coalesce(a.organization_id, b.organization_id) AS organization_id,
               coalesce(a.account_id, b.account_id) AS account_id, coalesce(a.currency, b.currency) AS currency,
               coalesce(b.balance, 0) AS before_balance, coalesce(a.balance, 0) AS after_balance,
               coalesce(a.balance, 0) - coalesce(b.balance, 0) AS delta
          FROM ({before}) b FULL OUTER JOIN ({after}) a
            ON a.organization_id = b.organization_id AND a.account_id IS NOT DISTINCT FROM b.account_id
           AND a.currency IS NOT DISTINCT FROM b.currency
         WHERE coalesce(a.balance, 0) <> coalesce(b.balance, 0)
         ORDER BY 1, 2, 3"""  # noqa: S608

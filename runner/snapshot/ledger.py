"""Row-level ledger helpers over a snapshot label, in DuckDB SQL (runner/sql/snapshot/trial_balance) with exact
DECIMAL results.

HERA's convention (fixtures/sql/60_gl.sql, `v_universal_transaction_lines_drcr`): a line is a GL line when its
smart code contains `.GL.` (case-sensitive); its side is upper(line_data->>'side') ∈ {DR, CR}; its amount is
line_amount, normally positive, negative on reversal lines (same side). Signed here: DR positive, CR negative.
Lines carry no currency: the header's transaction_currency_code is the currency.
"""

from __future__ import annotations

import duckdb

from runner.compile import Statement, render_duck
from runner.errors import UsageError
from runner.snapshot.duck import LABELS


def trial_balance_statement(label: str, *, include_voided: bool = False) -> Statement:
    """organization_id, account_id (line entity_id), currency, debit, credit, balance (= debit - credit), lines.

    Sums of DECIMAL(20,8) line amounts are DECIMAL(38,8). Voided transactions are left out unless asked for
    (HERA's read and query RPCs hide them too); reversed ones stay, their -REV twins cancel them.
    """
    if label not in LABELS:
        raise UsageError(f"no snapshot label {label!r}")
    return render_duck("snapshot/trial_balance", label=label, include_voided=include_voided)


def trial_balance(con: duckdb.DuckDBPyConnection, label: str, *,
                  include_voided: bool = False) -> duckdb.DuckDBPyRelation:
    """The trial balance of a snapshot label as a DuckDB relation (compose it, or .fetchall() the small result)."""
    return con.sql(trial_balance_statement(label, include_voided=include_voided).text)

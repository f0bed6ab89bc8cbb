"""Pieces of the diff that need no PostgreSQL: the SQL macros, why jsonb sub-documents are compared as texts
PostgreSQL computed, and the results.json shape."""

from __future__ import annotations

from pathlib import Path

import duckdb

from runner.compile import render_duck
from runner.contract import MIGRATION_ACTOR_ID
from runner.snapshot import rules
from runner.snapshot.compare import differing_rows
from runner.snapshot.diff import CLASSES, DiffResult, DiffSample, variables
from runner.snapshot.duck import TABLES
from runner.snapshot.extract import DERIVED_COLUMNS


def test_smart_code_suffix_normalisation() -> None:
    con = duckdb.connect()
    con.execute(render_duck("diff/macros").text)
    got = con.execute("""SELECT sc_norm('HERA.FIN.GL.TXN.JOURNAL.V12'), sc_norm('HERA.FIN.GL.TXN.JOURNAL.v12'),
                                sc_norm('HERA.FIN.V1.TXN.JOURNAL.V1'), sc_norm('hera.fin.gl.txn.x.v1'),
                                sc_norm('HERA.FIN.GL.TXN.JOURNALV1')""").fetchone()
    assert got == ("HERA.FIN.GL.TXN.JOURNAL.v12", "HERA.FIN.GL.TXN.JOURNAL.v12", "HERA.FIN.V1.TXN.JOURNAL.v1",
                   "hera.fin.gl.txn.x.v1", "HERA.FIN.GL.TXN.JOURNALV1")


def test_duckdb_json_functions_round_numbers_so_the_diff_does_not_use_them() -> None:
    """The reason for `*_jsonb_derived`: DuckDB re-serialises JSON numbers through double precision."""
    con = duckdb.connect()
    a, b = '{"x": 12345678901234.56789012}', '{"x": 12345678901234.56789013}'
    assert con.execute("SELECT json(?) = json(?)", [a, b]).fetchone() == (True,)  # lossy: would hide a change
    assert con.execute("SELECT CAST(?::JSON AS VARCHAR) = CAST(?::JSON AS VARCHAR)", [a, b]).fetchone() == (False,)
    assert con.execute("SELECT CAST(?::JSON AS VARCHAR)", [a]).fetchone() == (a,)  # stored text kept verbatim


def test_results_json_shape() -> None:
    counts = {cls: dict.fromkeys(TABLES, 0) for cls in CLASSES}
    counts["unexpected"]["universal_transactions"] = 1
    by_kind = {cls: {t: {"inserted": 0, "updated": 0, "deleted": 0} for t in TABLES} for cls in CLASSES}
    sample = DiffSample(table="universal_transactions", record_id="r", organization_id="o", transaction_id="r",
                        kind="updated", changed_columns=["reference_number"], reason="why")
    result = DiffResult(run_id="R", actor_id="A", counts=counts, by_kind=by_kind,
                        samples={"unexpected": {"universal_transactions": [sample]}})
    shaped = result.as_dict()
    assert set(shaped) == {"expected", "unexpected", "concurrent", "details", "samples"}
    assert all(set(shaped[cls]) == set(TABLES) for cls in CLASSES)
    assert shaped["details"]["totals"] == {"expected": 0, "unexpected": 1, "concurrent": 0}
    assert shaped["samples"]["unexpected"]["universal_transactions"] == [sample.as_dict()]
    assert shaped["samples"]["expected"] == {} and not result.ok


def test_rollback_comparison_leaves_out_the_journal_and_an_excluded_actor(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    con = duckdb.connect(str(path))
    for label in ("before", "rollback"):
        for table in TABLES:
            con.execute(f"CREATE TABLE {label}_{table} (id INT, created_by VARCHAR, entity_type VARCHAR, "
                        "entity_id INT)")
    con.execute("INSERT INTO rollback_universal_transactions VALUES (1, 'load', NULL, NULL), (2, 'user', NULL, NULL)")
    con.execute("INSERT INTO rollback_core_entities VALUES (3, 'migration', 'MIGRATION_RUN', NULL)")  # the journal
    con.execute("INSERT INTO rollback_core_dynamic_data VALUES (4, 'migration', NULL, 3)")  # a journal field
    con.close()
    assert differing_rows(path, "before", "rollback")["universal_transactions"] == 2
    assert differing_rows(path, "before", "rollback", exclude_created_by="load")["universal_transactions"] == 1
    assert differing_rows(path, "before", "rollback")["core_entities"] == 0
    assert differing_rows(path, "before", "rollback")["core_dynamic_data"] == 0


def test_the_diff_runs_on_the_review_columns_and_classifies_a_row() -> None:
    """The statements `compile --out` shows run as they are: on tables shaped like the review's columns, a
    relationship inserted by another actor is concurrent and nothing else differs."""
    con = duckdb.connect()
    columns = rules.review_columns()
    for label in ("before", "after"):
        for table, cols in columns.items():
            con.execute(f"CREATE TABLE {label}_{table} ({', '.join(f'{n} {t}' for n, t in cols)})")
        derived = ", ".join(f"{c} JSON" for c in DERIVED_COLUMNS)
        con.execute(f"CREATE TABLE {label}_jsonb_derived (table_name VARCHAR, id UUID, {derived})")
    con.execute("INSERT INTO after_core_relationships (id, organization_id, created_by, updated_by) "
                "VALUES (uuid(), uuid(), uuid(), uuid())")
    for stmt in (*variables("R", MIGRATION_ACTOR_ID), *rules.statements(columns)):
        con.execute(stmt.text, stmt.params or None)
    assert con.execute("SELECT table_name, kind, class FROM diff_rows").fetchall() == [
        ("core_relationships", "inserted", "concurrent")]

"""Snapshots into DuckDB: exact values and types, identical tables from both methods, one consistent picture
across tables, idempotent re-takes, and the trial balance helper against HERA's own DR/CR view."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg.types.json import Jsonb

from runner.db.connect import connect
from runner.snapshot.columns import map_type
from runner.snapshot.duck import TABLES
from runner.snapshot.extract import METHODS, Method, take_snapshot
from runner.snapshot.ledger import trial_balance
from runner.synth.generate import generate
from tests.integration.hera_helpers import Hera

NOTE = 'Ünïcødé ✓ 日本語 "quoted", comma\nnew line; tab\t\\ backslash'
# Written as JSON text: the numbers must reach PostgreSQL digit for digit.
META = json.dumps({"z": 1, "note": NOTE})[:-1] + ', "big": 12345678901234.56789012, "a": [1.10, null]}'
ALL = (*TABLES, "jsonb_derived")


def _exotic(conn: psycopg.Connection[Any], org: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A journal whose values stress exactness: money at full precision, unicode and CSV-hostile jsonb/text."""
    hera = Hera(conn=conn, actor=uuid.uuid4())
    dr = hera.entity(org, "GL_ACCOUNT", entity_name="Cash")
    cr = hera.entity(org, "GL_ACCOUNT", entity_name="Revenue")
    conn.execute("UPDATE core_entities SET tags = %s::text[] WHERE id = %s", (["a,b", 'quo"te', None, "ünï", ""], dr))
    conn.execute("UPDATE core_entities SET tags = '{}' WHERE id = %s", (cr,))
    lines = Hera.gl_lines(dr, cr, 1)
    # Amounts as JSON strings: emit reads them with ->> and casts to numeric, so no float is involved.
    lines[0].update(line_amount="123456789012.12345678", description="")
    lines[1].update(line_amount="123456789012.12345678", description=None, quantity="-0.00000001")
    txn = hera.emit(org, lines=lines, p_total_amount=Decimal("12345678901234.5678"),
                    p_exchange_rate=Decimal("1234567890.0123456789"), p_metadata=Jsonb(META, dumps=str),
                    p_transaction_code=f"EX-{uuid.uuid4().hex[:8]}")
    return txn, dr, cr


def _differences(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"""SELECT (SELECT count(*) FROM (SELECT * FROM main.before_{table}
                                                         EXCEPT ALL SELECT * FROM other.before_{table}))
                               + (SELECT count(*) FROM (SELECT * FROM other.before_{table}
                                                         EXCEPT ALL SELECT * FROM main.before_{table}))""").fetchone()
    assert row is not None
    return int(row[0])


def test_both_methods_give_identical_exact_tables(db_dsn: str, tmp_path: Path) -> None:
    result = generate(db_dsn, size="small", seed=7).organizations[0]
    org = uuid.UUID(result.organization_id)
    with connect(db_dsn, autocommit=True) as conn:
        txn, dr, cr = _exotic(conn, org)
        pg_meta, pg_created = conn.execute(
            "SELECT metadata::text, (extract(epoch FROM created_at) * 1000000)::bigint "
            "FROM universal_transactions WHERE id = %s", (txn,)).fetchone() or (None, None)
    infos = {m: take_snapshot(db_dsn, [org], tmp_path / f"{m}.duckdb", "before", method=m) for m in METHODS}
    expected_rows = {t: n + (2 if t == "core_entities" else 1 if t == "universal_transactions" else
                             2 if t == "universal_transaction_lines" else 0) for t, n in result.rows.items()}
    for info in infos.values():
        assert info.rows == expected_rows
        assert info.rows_per_second > 0

    con = duckdb.connect(str(tmp_path / "scanner.duckdb"))
    con.execute(f"ATTACH '{tmp_path / 'copy.duckdb'}' AS other")
    for table in ALL:
        assert con.execute(f"DESCRIBE main.before_{table}").fetchall() == \
            con.execute(f"DESCRIBE other.before_{table}").fetchall(), table
        assert _differences(con, table) == 0, table

    for db in ("main", "other"):
        header = con.execute(f"""SELECT total_amount, exchange_rate, CAST(metadata AS VARCHAR), epoch_us(created_at),
                                        typeof(total_amount), typeof(exchange_rate), typeof(metadata)
                                   FROM {db}.before_universal_transactions WHERE id = ?""", [txn]).fetchone()
        assert header == (Decimal("12345678901234.5678"), Decimal("1234567890.0123456789"), pg_meta, pg_created,
                          "DECIMAL(19,4)", "DECIMAL(20,10)", "JSON")
        assert '"big": 12345678901234.56789012' in str(header[2]) and json.loads(str(header[2]))["note"] == NOTE
        lines = con.execute(f"""SELECT line_amount, quantity, description, typeof(line_amount)
                                  FROM {db}.before_universal_transaction_lines
                                 WHERE transaction_id = ? ORDER BY line_number""", [txn]).fetchall()
        assert lines == [(Decimal("123456789012.12345678"), Decimal(1), "", "DECIMAL(20,8)"),
                         (Decimal("123456789012.12345678"), Decimal("-0.00000001"), None, "DECIMAL(20,8)")]
        tags = [con.execute(f"SELECT tags FROM {db}.before_core_entities WHERE id = ?", [e]).fetchone()
                for e in (dr, cr)]
        assert tags == [(["a,b", 'quo"te', None, "ünï", ""],), ([],)]

    # The trial balance helper agrees with HERA's own DR/CR view, to the last decimal.
    with connect(db_dsn, autocommit=True) as conn:
        pg_tb = conn.execute(
            """SELECT v.entity_id::text, h.transaction_currency_code, sum(v.debit_amount), sum(v.credit_amount),
                      sum(v.debit_amount - v.credit_amount)
                 FROM v_universal_transaction_lines_drcr v JOIN universal_transactions h ON h.id = v.transaction_id
                WHERE v.organization_id = %s AND v.side IS NOT NULL AND h.transaction_status <> 'voided'
                GROUP BY 1, 2 ORDER BY 1, 2""", (org,)).fetchall()
    tb = trial_balance(con, "before").project("account_id::VARCHAR, currency, debit, credit, balance").fetchall()
    assert [tuple(r) for r in tb] == [tuple(r) for r in pg_tb]
    assert len(tb) > 10
    assert any(r[4] == Decimal("123456789012.12345678") for r in tb)


@pytest.mark.parametrize("method", METHODS)
def test_one_consistent_picture_across_tables(db_dsn: str, tmp_path: Path, method: Method) -> None:
    """Writes committed after the PostgreSQL snapshot is fixed stay out of every table, header and lines alike."""
    with connect(db_dsn, autocommit=True) as conn:
        hera = Hera(conn=conn, actor=uuid.uuid4())
        org = hera.org()
        kept, edited, deleted = (hera.journal(org, amount=10) for _ in range(3))
    writer_xid: list[int] = []

    def concurrent_commit() -> None:
        with connect(db_dsn) as other:
            h = Hera(conn=other, actor=uuid.uuid4())
            writer_xid.append(int(h.scalar("SELECT pg_current_xact_id()::text")))
            h.journal(org, amount=99)
            other.execute("UPDATE universal_transactions SET reference_number = 'late', updated_by = %s "
                          "WHERE id = %s", (h.actor, edited))
            other.execute("UPDATE universal_transaction_lines SET description = 'late', updated_by = %s "
                          "WHERE transaction_id = %s", (h.actor, edited))
            other.execute("DELETE FROM universal_transactions WHERE id = %s", (deleted,))
            other.commit()

    path = tmp_path / "s.duckdb"
    info = take_snapshot(db_dsn, [org], path, "before", method=method, on_pg_snapshot=concurrent_commit)
    assert writer_xid and writer_xid[0] >= int(info.pg_snapshot.split(":")[1])  # not visible to the snapshot
    assert info.rows["universal_transactions"] == 3 and info.rows["universal_transaction_lines"] == 6
    assert info.rows["core_entities"] == 6  # the new journal's two accounts are not there either
    con = duckdb.connect(str(path))
    assert con.execute("SELECT count(*) FROM before_universal_transactions WHERE reference_number = 'late' "
                       "OR total_amount = 99").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM before_universal_transaction_lines WHERE description = 'late' "
                       "OR line_amount = 99").fetchone() == (0,)
    assert {r[0] for r in con.execute("SELECT id FROM before_universal_transactions").fetchall()} == \
        {kept, edited, deleted}
    con.close()

    after = take_snapshot(db_dsn, [org], path, "after", method=method)
    assert after.rows["universal_transactions"] == 3 and after.rows["universal_transaction_lines"] == 6
    con = duckdb.connect(str(path))
    assert con.execute("SELECT count(*) FROM after_universal_transaction_lines WHERE description = 'late' "
                       "OR line_amount = 99").fetchone() == (4,)
    assert con.execute("SELECT label, method, org_ids FROM snapshots ORDER BY label").fetchall() == [
        ("after", method, [org]), ("before", method, [org])]


def test_retake_replaces_and_a_failed_take_keeps_the_previous(db_dsn: str, tmp_path: Path) -> None:
    with connect(db_dsn, autocommit=True) as conn:
        hera = Hera(conn=conn, actor=uuid.uuid4())
        org, other_org = hera.org(), hera.org()
        hera.seed(org)
        hera.seed(other_org)
        path = tmp_path / "s.duckdb"
        first = take_snapshot(db_dsn, [str(org)], path, "before")
        hera.journal(org)
        second = take_snapshot(db_dsn, [org, org], path, "before", method="copy")

        def boom() -> None:
            raise RuntimeError("interrupted")

        hera.journal(org)
        with pytest.raises(RuntimeError, match="interrupted"):
            take_snapshot(db_dsn, [org], path, "before", on_pg_snapshot=boom)
    assert first.rows["universal_transactions"] == 1 and second.rows["universal_transactions"] == 2
    assert first.rows["core_organizations"] == 1  # the other organisation is out of scope
    con = duckdb.connect(str(path))
    assert con.execute("SELECT label, method, CAST(row_counts AS VARCHAR) LIKE '%\"universal_transactions\": 2%' "
                       "FROM snapshots").fetchall() == [("before", "copy", True)]
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM before_universal_transactions").fetchone() == (2, 2)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert tables == {f"before_{t}" for t in ALL} | {"snapshots"}


def test_type_mapping_is_exact_or_text() -> None:
    assert map_type("a", "numeric(19,4)").duck_type == "DECIMAL(19,4)"
    assert map_type("a", "numeric(38,2)").duck_type == "DECIMAL(38,2)"
    for lossy in ("numeric", "numeric(39,2)", "double precision", "interval"):
        col = map_type("a", lossy)
        assert (col.duck_type, col.pg_expr) == ("VARCHAR", '"a"::text'), lossy
    assert map_type("m", "jsonb").pg_expr == '"m"::jsonb::text' and map_type("m", "jsonb").duck_type == "JSON"
    assert map_type("t", "text[]").duck_type == "VARCHAR[]"
    assert map_type("c", "character(3)").duck_type == "VARCHAR"
    assert map_type("ts", "timestamp with time zone").duck_type == "TIMESTAMPTZ"

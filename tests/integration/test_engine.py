"""Tier 2 and tier 3 on a real PostgreSQL: every plan candidate migrated exactly once, reposts faithful and
balanced, the trial balance unchanged, aliases metadata-only with the smart code byte-identical."""

from __future__ import annotations

import dataclasses
import io
import re
from collections import Counter
from datetime import time
from decimal import Decimal
from typing import Any

import pytest
from psycopg.rows import dict_row
from rich.console import Console

from runner.db.connect import connect
from runner.engine import run_migration, run_status
from runner.engine.hooks import NullProgress
from runner.engine.progress import RichProgress
from runner.spec.model import LineOverride, OffPeakWindow, Skip
from runner.synth.generate import generate
from tests.integration.test_engine_support import (
    ACTOR,
    candidate_ids,
    lines_of,
    one,
    phase7,
    plan_candidates,
    run_rows,
    trial_balance,
)

HEADER_COPIED = ("transaction_type", "transaction_date", "source_entity_id", "target_entity_id", "total_amount",
                 "reference_number", "external_reference", "business_context", "approval_required", "approved_by",
                 "approved_at", "transaction_currency_code", "base_currency_code", "exchange_rate",
                 "exchange_rate_date", "exchange_rate_type", "fiscal_period_entity_id", "fiscal_year",
                 "fiscal_period", "posting_period_code")
LINE_COPIED = ("line_number", "entity_id", "line_type", "description", "quantity", "unit_amount", "line_amount",
               "discount_amount", "tax_amount")


@pytest.fixture
def org(db_dsn: str) -> str:
    return generate(db_dsn, size="small", seed=31).organizations[0].organization_id


def test_every_candidate_migrated_once_faithfully(db_dsn: str, org: str) -> None:
    spec = phase7()
    planned = plan_candidates(db_dsn, spec, org)
    with connect(db_dsn) as conn:
        cur = conn.cursor(row_factory=dict_row)
        want = set(candidate_ids(conn, org, spec, "reverse_repost"))
        before = {str(r["id"]): r for r in cur.execute(
            "SELECT * FROM universal_transactions WHERE id = ANY(%s::uuid[])", (sorted(want),))}
        before_lines = lines_of(conn, sorted(want))
        tb_before = trial_balance(conn, org)
        conn.rollback()

    result = run_migration(db_dsn, spec, run_id="run-once", workers=1, batch_size=200, now=True)

    got = result.org(org)
    assert got.status == "completed" and result.status == "completed"
    assert planned == got.candidates == {"reverse_repost": len(want), "reporting_alias": planned["reporting_alias"]}
    assert got.migrated + got.quarantined["reverse_repost"] == planned["reverse_repost"] > 400
    assert got.aliased + got.quarantined["reporting_alias"] == planned["reporting_alias"] > 50
    assert got.quarantined_total == 0 and got.chunks >= 4
    with connect(db_dsn) as conn:
        cur = conn.cursor(row_factory=dict_row)
        originals = run_rows(conn, org, "run-once", "original")
        reposts = run_rows(conn, org, "run-once", "repost")
        assert {str(o["id"]) for o in originals} == want
        by_original = {r["metadata"]["migration"]["original_txn_id"]: r for r in reposts}
        assert len(by_original) == len(reposts) == len(want)  # one repost each
        assert len({r["id"] for r in reposts}) == len(reposts)  # no shared ids (docs/contract.md §7)
        twins = {str(r["metadata"]["reversal_of"]): r for r in cur.execute(
            "SELECT * FROM universal_transactions WHERE organization_id = %s AND metadata ? 'reversal_of' "
            "AND metadata ->> 'reversal_reason' LIKE 'hera-migrate run-once%%'", (org,))}
        assert set(twins) == want  # one reversal each
        new_lines = lines_of(conn, [r["id"] for r in reposts] + [t["id"] for t in twins.values()])
        for o in originals:
            oid, pre = str(o["id"]), before[str(o["id"])]
            mig, repost, twin = o["metadata"]["migration"], by_original[oid], twins[oid]
            assert mig["repost_id"] == str(repost["id"]) and mig["reversal_id"] == str(twin["id"])
            assert o["metadata"]["reversal_id"] == str(twin["id"]) and o["transaction_status"] == "reversed"
            assert o["smart_code"] == pre["smart_code"].upper()  # HERA's reverse flips .v1 -> .V1, nothing else
            assert mig["pre"]["metadata"] == pre["metadata"] and mig["pre"]["version"] == pre["version"]
            assert mig["pre"]["smart_code"] == pre["smart_code"]
            assert twin["transaction_date"] == pre["transaction_date"]  # reversal dated on the original
            res = spec.resolve(pre["smart_code"])
            assert res is not None and repost["smart_code"] == res.target
            assert repost["transaction_status"] == pre["transaction_status"]
            assert repost["transaction_code"] == f"{pre['transaction_code']}-V2"
            assert all(repost[c] == pre[c] for c in HEADER_COPIED), oid
            assert repost["metadata"] == {**pre["metadata"], "migration": {
                "run_id": "run-once", "original_txn_id": oid, "tier": "reverse_repost", "role": "repost",
                "spec": {"name": spec.name, "sha256": spec.sha256}, "actor": ACTOR}}
            assert str(repost["created_by"]) == ACTOR and str(twin["created_by"]) == ACTOR
            old, new = before_lines[oid], new_lines[str(repost["id"])]
            assert [tuple(x[c] for c in LINE_COPIED) for x in old] == [tuple(x[c] for c in LINE_COPIED) for x in new]
            for a, b in zip(old, new, strict=True):
                assert b["line_data"].get("side") == a["line_data"].get("side")
                assert {k: b["line_data"][k] for k in a["line_data"]} == a["line_data"]
                assert b["smart_code"] == res.mapping.line_code(a["smart_code"], a["line_data"].get("side"),
                                                                a["line_type"])
            dr = sum((x["line_amount"] for x in new if ".GL." in x["smart_code"] and x["line_data"]["side"] == "DR"),
                     Decimal(0))
            cr = sum((x["line_amount"] for x in new if ".GL." in x["smart_code"] and x["line_data"]["side"] == "CR"),
                     Decimal(0))
            assert dr == cr > 0
        # the line overrides were applied (GL lines now carry the v2 registry's codes)
        assert any(x["smart_code"] == "HERA.ACCOUNTING.GL.LINE.DEBIT.v2" for ls in new_lines.values() for x in ls)
        assert trial_balance(conn, org) == tb_before  # v1 + reversal + repost nets to the original
    status = run_status(db_dsn, "run-once")
    assert status.status == "completed"
    st = status.organizations[0]
    assert (st.migrated, st.aliased, st.candidates, st.chunks) == (got.migrated, got.aliased, got.candidates,
                                                                    got.chunks)


def test_alias_keeps_code_byte_identical_for_v1_and_V1(db_dsn: str, org: str) -> None:
    spec = phase7()
    with connect(db_dsn) as conn:
        want = candidate_ids(conn, org, spec, "reporting_alias")
        before = {r[0]: r[1] for r in conn.execute(
            "SELECT id::text, to_jsonb(t) FROM universal_transactions t WHERE id = ANY(%s::uuid[])", (want,))}
        conn.rollback()
    spelled = spellings(before)
    assert spelled["v"] > 10 and spelled["V"] > 3  # both spellings are candidates
    result = run_migration(db_dsn, spec, run_id="run-alias", workers=1, batch_size=50, now=True)
    assert result.org(org).aliased == len(want)
    with connect(db_dsn) as conn:
        after = {r[0]: r[1] for r in conn.execute(
            "SELECT id::text, to_jsonb(t) FROM universal_transactions t WHERE id = ANY(%s::uuid[])", (want,))}
    for txn_id, old in before.items():
        new = after[txn_id]
        assert new["smart_code"] == old["smart_code"]  # byte-identical, whichever case it had
        meta = dict(new["metadata"])
        mig = meta.pop("migration")
        res = spec.resolve(old["smart_code"])
        assert res is not None and meta.pop("reporting_smartcode") == res.target
        assert meta == old["metadata"]
        assert {k: v for k, v in new.items() if k != "metadata"} == {k: v for k, v in old.items() if k != "metadata"}
        assert mig["run_id"] == "run-alias" and mig["role"] == "alias" and mig["tier"] == "reporting_alias"
        assert mig["pre"] == {} and mig["actor"] == ACTOR


def spellings(rows: dict[str, Any]) -> Counter[str]:
    """How many codes end in .v<n> (as HERA inserts them) and how many in .V<n> (after an update)."""
    return Counter(m.group(1) for row in rows.values() if (m := re.search(r"\.([vV])[0-9]+$", row["smart_code"])))


def test_two_workers_two_orgs_no_cross_org_writes(db_dsn: str) -> None:
    gen = generate(db_dsn, size="small", orgs=2, seed=32)
    ids = [o.organization_id for o in gen.organizations]
    spec = phase7(narrow=True)
    planned = {o: plan_candidates(db_dsn, spec, o) for o in ids}
    result = run_migration(db_dsn, spec, run_id="run-two", workers=2, now=True)
    for org_id in ids:
        got = result.org(org_id)
        assert got.status == "completed"
        assert got.migrated == planned[org_id]["reverse_repost"] and got.aliased == planned[org_id]["reporting_alias"]
    with connect(db_dsn) as conn:
        # every row the migration wrote or marked belongs with rows of its own organisation
        assert one(conn, """
            SELECT count(*) FROM universal_transactions r
              JOIN universal_transactions o ON o.id = (r.metadata -> 'migration' ->> 'original_txn_id')::uuid
             WHERE r.metadata -> 'migration' ->> 'role' = 'repost' AND o.organization_id <> r.organization_id""") == 0
        assert one(conn, """
            SELECT count(*) FROM universal_transaction_lines l JOIN universal_transactions h ON h.id = l.transaction_id
             WHERE l.organization_id <> h.organization_id""") == 0
        assert one(conn, """
            SELECT count(*) FROM universal_transactions t
              JOIN universal_transactions o ON o.id = (t.metadata ->> 'reversal_of')::uuid
             WHERE o.organization_id <> t.organization_id""") == 0
        journals = conn.execute("SELECT organization_id::text, count(*) FROM core_entities "
                                "WHERE entity_type = 'MIGRATION_RUN' AND entity_code = 'run-two' GROUP BY 1").fetchall()
        assert dict(journals) == dict.fromkeys(ids, 1)
        assert one(conn, "SELECT count(*) FROM core_dynamic_data d JOIN core_entities e ON e.id = d.entity_id "
                         "WHERE d.organization_id <> e.organization_id") == 0
    assert result.rates["reverse_repost_txn_per_second"] > 0


def test_repost_codes_never_collide(db_dsn: str, org: str) -> None:
    spec = phase7(narrow=True)
    with connect(db_dsn) as conn:
        taken, nullcode = conn.execute(
            "SELECT id::text FROM universal_transactions WHERE id = ANY(%s::uuid[]) ORDER BY id LIMIT 2",
            (candidate_ids(conn, org, spec, "reverse_repost"),)).fetchall()
        code = one(conn, "SELECT transaction_code FROM universal_transactions WHERE id = %s", (taken[0],))
        # someone already uses <code>-V2 (a voided v1 row of the same org), and one candidate has no code at all
        conn.execute("UPDATE universal_transactions SET transaction_code = %s WHERE organization_id = %s AND id = "
                     "(SELECT id FROM universal_transactions WHERE organization_id = %s AND transaction_status = "
                     "'voided' LIMIT 1)", (f"{code}-V2", org, org))
        conn.execute("UPDATE universal_transactions SET transaction_code = NULL WHERE id = %s", (nullcode[0],))
        conn.commit()
    result = run_migration(db_dsn, spec, run_id="run-codes", workers=1, now=True)
    assert result.org(org).quarantined_total == 0
    with connect(db_dsn) as conn:
        reposts = {r["metadata"]["migration"]["original_txn_id"]: r for r in run_rows(conn, org, "run-codes",
                                                                                      "repost")}
        assert reposts[taken[0]]["transaction_code"].startswith(f"{code}-V2-")
        assert reposts[nullcode[0]]["transaction_code"] == f"MIG-run-codes-{nullcode[0]}"
        codes_ = [r["transaction_code"] for r in reposts.values()]
        assert len(set(codes_)) == len(codes_)


def test_line_overrides_by_glob_side_and_type_match_the_spec_semantics(db_dsn: str, org: str) -> None:
    """PostgreSQL applies the converted globs exactly as Mapping.line_code does in Python."""
    base = phase7()
    journal = next(m for m in base.mappings if m.id == "gl-journal")
    mapping = dataclasses.replace(journal, lines=(
        LineOverride(match="HERA.FINANCE.GL.DR.**.v1", to="HERA.ACCOUNTING.GL.LINE.DEBIT.v2"),
        LineOverride(side="CR", line_type="gl", match="HERA.FINANCE.GL.*.VAT.v1",
                     to="HERA.ACCOUNTING.GL.LINE.VAT.CREDIT.v2"),
        LineOverride(side="CR", to="HERA.ACCOUNTING.GL.LINE.CREDIT.v2")))
    spec = dataclasses.replace(base, mappings=(mapping,))
    result = run_migration(db_dsn, spec, run_id="run-lines", workers=1, now=True)
    assert result.org(org).migrated > 20
    with connect(db_dsn) as conn:
        reposts = run_rows(conn, org, "run-lines", "repost")
        originals = lines_of(conn, [r["metadata"]["migration"]["original_txn_id"] for r in reposts])
        new = lines_of(conn, [r["id"] for r in reposts])
    seen = Counter()
    for r in reposts:
        for a, b in zip(originals[r["metadata"]["migration"]["original_txn_id"]], new[str(r["id"])], strict=True):
            want = mapping.line_code(a["smart_code"], a["line_data"].get("side"), a["line_type"])
            assert b["smart_code"] == want
            seen[want] += 1
    assert seen["HERA.ACCOUNTING.GL.LINE.DEBIT.v2"] and seen["HERA.ACCOUNTING.GL.LINE.CREDIT.v2"]
    assert seen["HERA.ACCOUNTING.GL.LINE.VAT.CREDIT.v2"] > 0  # the glob + side + line_type override (seeded data)


class Recorder(NullProgress):
    """A ProgressSink and a Throttle at once: records what the engine tells it."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.advanced: Counter[str] = Counter()
        self.finished: dict[str, str] = {}
        self.waits = 0

    def org_started(self, org_id: str, org_code: str, total: int) -> None:
        self.started[org_id] = total

    def org_advanced(self, org_id: str, done: int) -> None:
        self.advanced[org_id] += done

    def org_finished(self, org_id: str, status: str) -> None:
        self.finished[org_id] = status

    def wait(self) -> None:
        self.waits += 1

    def batch_size(self, default: int) -> int:
        assert default == 500  # the spec's size is offered; the throttle lowers it
        return 7


def test_throttle_progress_and_an_open_window(db_dsn: str, org: str) -> None:
    base = phase7(narrow=True)
    always = OffPeakWindow(start=time(0, 0), end=time(0, 0), timezone="Pacific/Auckland")  # a 24-hour window
    spec = dataclasses.replace(base, execution=dataclasses.replace(base.execution, off_peak_window=always))
    planned = plan_candidates(db_dsn, spec, org)
    rec = Recorder()
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RichProgress(console=console) as bars:
        class Both(Recorder):
            def org_started(self, org_id: str, org_code: str, total: int) -> None:
                rec.org_started(org_id, org_code, total)
                bars.org_started(org_id, org_code, total)

            def org_advanced(self, org_id: str, done: int) -> None:
                rec.org_advanced(org_id, done)
                bars.org_advanced(org_id, done)

            def org_finished(self, org_id: str, status: str) -> None:
                rec.org_finished(org_id, status)
                bars.org_finished(org_id, status)

        result = run_migration(db_dsn, spec, run_id="run-throttle", workers=1, progress=Both(), throttle=rec)
    got = result.org(org)
    total = sum(planned.values())
    assert got.status == "completed" and got.migrated + got.aliased == total
    assert rec.started == {org: total} and rec.advanced[org] == total and rec.finished == {org: "completed"}
    chunks = -(-planned["reverse_repost"] // 7) + -(-planned["reporting_alias"] // 7)  # ceil divisions
    assert got.chunks == rec.waits == chunks
    assert "SYN-S31-001" in console.file.getvalue()  # type: ignore[attr-defined]


def test_a_run_never_takes_its_own_rows_whatever_the_skip_switches(db_dsn: str, org: str) -> None:
    """With every skip switch off, HERA's existing -REV twins are candidates (plan counts them), but the twins and
    marks this run creates are not: every plan candidate is migrated once and the run ends."""
    base = phase7()
    journal = next(m for m in base.mappings if m.id == "gl-journal")
    scope = dataclasses.replace(base.scope, transaction_statuses=("posted",),
                                skip=Skip(already_migrated=False, reversed=False, voided=False, reversal_twins=False))
    spec = dataclasses.replace(base, mappings=(journal,), scope=scope)
    planned = plan_candidates(db_dsn, spec, org)
    with connect(db_dsn) as conn:
        old_twins = one(conn, "SELECT count(*) FROM universal_transactions WHERE organization_id = %s "
                              "AND metadata ? 'reversal_of' AND smart_code ILIKE 'HERA.FINANCE.GL.TXN.JOURNAL.%%' "
                              "AND transaction_status = 'posted'", (org,))
    assert old_twins > 0
    result = run_migration(db_dsn, spec, run_id="run-noskip", workers=1, now=True)
    got = result.org(org)
    assert got.migrated == planned["reverse_repost"] == got.candidates["reverse_repost"]
    with connect(db_dsn) as conn:
        assert len(run_rows(conn, org, "run-noskip", "original")) == got.migrated
        assert len(run_rows(conn, org, "run-noskip", "repost")) == got.migrated
        twins = one(conn, "SELECT count(*) FROM universal_transactions WHERE organization_id = %s "
                          "AND metadata ? 'reversal_of' AND NOT metadata ? 'migration' "
                          "AND metadata ->> 'reversal_reason' LIKE 'hera-migrate run-noskip:%%'", (org,))
        assert twins == got.migrated

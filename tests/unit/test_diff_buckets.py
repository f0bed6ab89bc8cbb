"""The diff's hash buckets, without PostgreSQL: a transaction, its -REV twin and its repost (and their lines) share a
bucket, so the cross-reference lookups cut to the bucket still find the original, and many small buckets classify
every row exactly as one statement per table does."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from runner import contract
from runner.snapshot import diff as diff_module
from runner.snapshot import rules
from runner.snapshot.diff import diff
from runner.snapshot.extract import DERIVED_COLUMNS
from tests.tools.diffrows import diff_rows

RUN = "R-buckets"
ACTOR = str(contract.MIGRATION_ACTOR_ID)
OTHER = str(uuid.UUID(int=7))
ORG = str(uuid.UUID(int=1))
ENTITY = str(uuid.UUID(int=2))
AT = "2024-01-01 00:00:00+00"
GROUPS = 24


def _ids(i: int) -> tuple[str, str, str]:
    """Original, -REV twin and repost of group i (fixed ids: the test is the same on every run)."""
    return tuple(str(uuid.UUID(int=(1000 + i) * 16 + k)) for k in range(3))  # type: ignore[return-value]


def _mig(**keys: Any) -> dict[str, Any]:
    return {contract.META_MIGRATION: {"run_id": RUN, **keys}}


def _snapshot(path: Path) -> None:
    """Before/after snapshots shaped like the review's columns: GROUPS originals reversed and reposted by the run,
    most as the contract wants them and some broken in ways only a lookup across the group notices."""
    con = duckdb.connect(str(path))
    for label in ("before", "after"):
        for table, cols in rules.review_columns().items():
            con.execute(f"CREATE TABLE {label}_{table} ({', '.join(f'{n} {t}' for n, t in cols)})")
        con.execute(f"CREATE TABLE {label}_jsonb_derived (table_name VARCHAR, id UUID, "
                    f"{', '.join(f'{c} JSON' for c in DERIVED_COLUMNS)})")

    def txn(label: str, id_: str, code: str, metadata: dict[str, Any], *, status: str = "posted", version: int = 1,
            created_by: str = OTHER, updated_by: str = OTHER) -> None:
        con.execute(f"INSERT INTO {label}_universal_transactions (id, organization_id, created_at, created_by, "
                    "updated_at, updated_by, metadata, version, smart_code, smart_code_status, transaction_status, "
                    "transaction_code, transaction_type, total_amount) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'HERA.FIN.GL.TXN.JOURNAL.v1', 'ACTIVE', ?, ?, 'journal', 10)",
                    [id_, ORG, AT, created_by, AT, updated_by, json.dumps(metadata), version, status, code])

    def line(label: str, id_: str, txn_id: str, number: int, amount: int, *, by: str = OTHER) -> None:
        con.execute(f"INSERT INTO {label}_universal_transaction_lines (id, organization_id, created_at, created_by, "
                    "updated_at, updated_by, version, transaction_id, line_number, entity_id, line_amount, line_data) "
                    "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                    [id_, ORG, AT, by, AT, by, txn_id, str(number), ENTITY, amount,
                     json.dumps({"side": "DR" if number == 1 else "CR"})])

    def derived(id_: str, **docs: str) -> None:
        cols = ", ".join(docs)
        con.execute(f"INSERT INTO after_jsonb_derived (table_name, id, {cols}) VALUES "
                    f"('universal_transactions', ?, {', '.join('?' for _ in docs)})", [id_, *docs.values()])

    originals = [_ids(i)[0] for i in range(GROUPS)]
    for i in range(GROUPS):
        o, tw, rp = _ids(i)
        pre = {"smart_code": "HERA.FIN.GL.TXN.JOURNAL.v1", "smart_code_status": "ACTIVE",
               "transaction_status": "posted", "metadata": {}, "version": 99 if i == 3 else 1,
               "updated_at": "2024-01-01T00:00:00+00:00", "updated_by": OTHER}
        if i == 8:
            del pre["updated_at"]
        txn("before", o, f"T{i}", {})
        txn("after", o, f"T{i}", {"reversal_id": tw, **_mig(role="original", repost_id=rp, reversal_id=tw, pre=pre)},
            status="reversed", version=2, updated_by=ACTOR)
        twin_meta: dict[str, Any] = {"reversal_of": o}
        if i == 0:  # a twin also marked as the repost of another original: the twin rules take precedence
            twin_meta.update(_mig(role="repost", original_txn_id=originals[1]))
        txn("after", tw, f"T{i}-REV", twin_meta, created_by=ACTOR, updated_by=ACTOR)
        repost_meta = _mig(role="repost") if i == 2 else _mig(role="repost", original_txn_id=o)
        txn("after", rp, f"T{i}-V2", repost_meta, created_by=ACTOR, updated_by=ACTOR)
        derived(o, base_original="{}", pre_metadata="{}")
        if i != 5:
            derived(tw, base_twin="{}")
        for n in (1, 2):
            lid = str(uuid.UUID(int=(5000 + i) * 16 + n))
            line("before", lid, o, n, 5 * n)
            if i == 6 and n == 2:  # a line of the run's original deleted
                pass
            elif i == 7 and n == 2:  # a line of the run's original moved to another original of the run
                line("after", lid, originals[9], n, 5 * n, by=ACTOR)
            else:
                line("after", lid, o, n, 5 * n)
            line("after", str(uuid.UUID(int=(6000 + i) * 16 + n)), tw, n, -5 * n + (1 if i == 4 else 0), by=ACTOR)
            line("after", str(uuid.UUID(int=(7000 + i) * 16 + n)), rp, n, 5 * n, by=ACTOR)
    # Concurrent traffic: a new transaction with a line, and an edit, by another actor.
    txn("after", str(uuid.UUID(int=90)), "CONC", {})
    line("after", str(uuid.UUID(int=91)), str(uuid.UUID(int=90)), 1, 3)
    txn("before", str(uuid.UUID(int=92)), "EDIT", {})
    txn("after", str(uuid.UUID(int=92)), "EDIT", {"note": "x"})
    con.close()


def test_small_buckets_classify_reversal_groups_as_one_statement_does(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "snapshots.duckdb"
    _snapshot(path)
    whole = diff(path, RUN, samples=100)
    one_statement = diff_rows(path)

    # The scenario leans on the cross-reference lookups: the intact groups are expected only because each twin,
    # repost and their lines found the original (and its lines) and each original found its twin and repost.
    by_id = {(r[0], str(r[1])): (r[6], r[7]) for r in one_statement}
    for i in (1, 10, 11, 12):
        for id_ in _ids(i):
            assert by_id[("universal_transactions", id_)][0] == "expected", (i, by_id[("universal_transactions", id_)])
    assert "version" in by_id[("universal_transactions", _ids(3)[0])][1]  # wrong pre-image
    assert "updated_at" in by_id[("universal_transactions", _ids(8)[0])][1]  # missing pre-image key
    assert "not a new repost" in by_id[("universal_transactions", _ids(2)[0])][1]  # repost without original id
    assert by_id[("universal_transactions", _ids(0)[1])] == by_id[("universal_transactions", _ids(1)[1])]
    assert whole.counts["unexpected"]["universal_transaction_lines"] >= 4  # twin line, deleted and moved lines

    buckets: list[int] = []
    classify = rules.classify
    monkeypatch.setattr(rules, "classify", lambda table, columns, bucket, n: (
        buckets.append(n) if table == "universal_transactions" else None) or classify(table, columns, bucket, n))
    monkeypatch.setattr(diff_module, "BUCKET_PAIRS", 10)  # ~30 buckets per table: most groups' ids hash apart
    bucketed = diff(path, RUN, samples=100)
    n = max(buckets)  # rules.statements also renders the one-bucket form
    assert n >= 20
    assert diff_rows(path) == one_statement
    assert bucketed.counts == whole.counts and bucketed.by_kind == whole.by_kind

    # By their own ids, a twin and its original mostly land in different buckets: bucketing by id with the lookups
    # cut to the bucket would lose the originals (this is what the reversal-group key prevents).
    con = duckdb.connect()
    split = sum(con.execute("SELECT hash(?::UUID) % ?::UBIGINT <> hash(?::UUID) % ?::UBIGINT",
                            [_ids(i)[0], n, _ids(i)[1], n]).fetchone()[0] for i in range(GROUPS))
    assert split >= GROUPS // 2

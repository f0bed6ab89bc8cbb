"""Real crashes: a `hera-migrate` subprocess SIGKILLs itself (HERA_FAULT_KILL, runner/engine/faults.py) at ten
points chosen by a seeded random generator — inside chunk transactions (after every write, before COMMIT), right
after a COMMIT, and between chunks — and `run --resume` finishes the run. No Python cleanup runs in the dying
process: PostgreSQL alone rolls back the open chunk and releases the organisation's claim.

After every kill the database must hold exactly the chunks that committed (computed from the point and the chunk
size), the journal must count exactly what is in the tables, and every migrated original must have one reversal
and one repost. At the end every plan candidate is migrated or aliased exactly once and validation passes (score
100, no unexpected change in the before/after diff). Then the rollback is killed the same way, resumed, and the
organisation's six tables equal the pre-run extract (the run journal excepted).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runner.db.connect import connect
from runner.engine import run_status
from runner.engine.context import ADVISORY_LOCK_CLASS, advisory_key
from runner.spec import load_spec
from runner.synth.generate import generate
from tests.integration.test_engine_support import PHASE7, ROOT, candidate_ids, dump, one, plan_candidates

RUN = "run-kill"
BATCH = 30
# The fault suite (nox -s faults) can ask for more kills or another schedule; the default run keeps ten.
KILLS = int(os.environ.get("HERA_KILL_TEST_KILLS", "10"))
DEFAULT_SEED = 20260611
RNG_SEED = int(os.environ.get("HERA_KILL_TEST_SEED", str(DEFAULT_SEED)))
CHUNK_POINTS = ("chunk_before_commit", "chunk_after_commit", "between_chunks")
TIERS = ("reverse_repost", "reporting_alias")


def hera_migrate(dsn: str, *args: str, kill: str | None = None,
                 timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERA_FAULT_KILL", "HERA_DSN")}
    if kill is not None:
        env["HERA_FAULT_KILL"] = kill
    return subprocess.run([sys.executable, "-m", "runner", "--dsn", dsn, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def run_args(report_dir: Path, *, resume: bool) -> list[str]:
    # one worker: this test counts exactly which chunks committed before each kill (test_workers.py kills 4)
    return ["run", str(PHASE7), "--run-id", RUN, "--batch-size", str(BATCH), "--workers", "1", "--no-progress", "--now",
            "--report-dir", str(report_dir), *(["--resume"] if resume else [])]


def wait_claim_released(dsn: str, org: str, timeout: float = 30) -> None:
    """The killed process's backend is gone once the organisation's advisory lock is free (a condition, not a
    sleep: PostgreSQL ends the backend when it reads EOF from the dead client)."""
    key = advisory_key(org) % 2**32  # pg_locks shows the two int4 keys as oids
    deadline = time.monotonic() + timeout
    with connect(dsn, autocommit=True) as conn:
        while one(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
                        "AND objid = %s::oid AND objsubid = 2", (ADVISORY_LOCK_CLASS, key)):
            assert time.monotonic() < deadline, "the killed process's session still holds the organisation"
            conn.execute("SELECT pg_sleep(0.05)")  # poll interval of the condition wait


def chunk_plan(remaining: dict[str, int]) -> list[tuple[str, int]]:
    """The chunks an invocation will run, in order: tier 2 then tier 3, BATCH candidates each (the last fewer)."""
    out: list[tuple[str, int]] = []
    for tier in TIERS:
        left = remaining[tier]
        out += [(tier, min(BATCH, left - i * BATCH)) for i in range(math.ceil(left / BATCH))]
    return out


def committed_chunks(point: str, n: int) -> int:
    """How many chunks commit before the process dies at the n-th passage of `point`."""
    return n if point == "chunk_after_commit" else n - 1


def db_counts(dsn: str, org: str) -> dict[str, Any]:
    """What the tables say about run RUN (independently of the journal)."""
    with connect(dsn) as conn:
        row = conn.execute(
            """SELECT count(*) FILTER (WHERE h.metadata -> 'migration' ->> 'role' = 'original'),
                      count(*) FILTER (WHERE h.metadata -> 'migration' ->> 'role' = 'repost'),
                      count(*) FILTER (WHERE h.metadata -> 'migration' ->> 'role' = 'alias'),
                      count(*) FILTER (WHERE h.metadata ->> 'reversal_reason' LIKE %(twin)s
                                         AND h.metadata ? 'reversal_of')
                 FROM universal_transactions h
                WHERE h.organization_id = %(org)s
                  AND (h.metadata -> 'migration' ->> 'run_id' = %(run)s OR h.metadata ? 'reversal_of')""",
            {"org": org, "run": RUN, "twin": f"hera-migrate {RUN}:%"}).fetchone()
    assert row is not None
    return {"originals": row[0], "reposts": row[1], "aliases": row[2], "twins": row[3]}


def assert_links(dsn: str, org: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Every repost and every twin of the run hangs off an original the run marked, and vice versa; returns
    (reposts per original, twins per original, twins per reversed transaction over the whole org)."""
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id::text, metadata FROM universal_transactions WHERE organization_id = %s", (org,)).fetchall()
    by_id = {r[0]: r[1] for r in rows}
    marks = {i: m["migration"] for i, m in by_id.items() if (m.get("migration") or {}).get("run_id") == RUN}
    originals = {i: m for i, m in marks.items() if m["role"] == "original"}
    reposts: Counter[str] = Counter()
    twins: Counter[str] = Counter()
    every_twin: Counter[str] = Counter()
    for txn_id, meta in by_id.items():
        mig = meta.get("migration") or {}
        if mig.get("run_id") == RUN and mig.get("role") == "repost":
            parent = mig["original_txn_id"]
            assert parent in originals, f"repost {txn_id} without its original mark"
            assert originals[parent]["repost_id"] == txn_id
            reposts[parent] += 1
        if "reversal_of" in meta:
            every_twin[meta["reversal_of"]] += 1
            if str(meta.get("reversal_reason", "")).startswith(f"hera-migrate {RUN}:"):
                parent = meta["reversal_of"]
                assert parent in originals, f"reversal {txn_id} without its original mark"
                assert originals[parent]["reversal_id"] == txn_id
                assert by_id[parent].get("reversal_id") == txn_id  # linked the HERA way too
                twins[parent] += 1
    assert set(reposts) == set(twins) == set(originals)
    return reposts, twins, every_twin


def test_sigkill_anywhere_then_resume_is_exactly_once_and_rollback_survives_kills(db_dsn: str,
                                                                                   tmp_path: Path) -> None:
    org = generate(db_dsn, size="small", seed=43).organizations[0].organization_id
    spec = load_spec(PHASE7)
    planned = plan_candidates(db_dsn, spec, org)
    with connect(db_dsn) as conn:
        candidates = {t: candidate_ids(conn, org, spec, t) for t in TIERS}
        before = dump(conn, org)
    assert {t: len(ids) for t, ids in candidates.items()} == planned
    assert planned["reverse_repost"] > 10 * BATCH and planned["reporting_alias"] > 2 * BATCH

    rng = random.Random(RNG_SEED)
    schedule = [CHUNK_POINTS[i % 3] for i in range(KILLS)]
    rng.shuffle(schedule)
    report_dir = tmp_path / "report"
    kills: list[str] = []
    t0 = time.monotonic()
    for i, point in enumerate(schedule):
        state = db_counts(db_dsn, org)
        remaining = {"reverse_repost": planned["reverse_repost"] - state["originals"],
                     "reporting_alias": planned["reporting_alias"] - state["aliases"]}
        chunks = chunk_plan(remaining)
        assert chunks, f"the run finished after only {len(kills)} kills"
        cap = min(4, len(chunks))
        if point == "chunk_after_commit":  # leave a chunk for the kills still to come
            cap = min(cap, len(chunks) - 1)
            if cap < 1:
                point, cap = "chunk_before_commit", 1
        n = rng.randint(1, cap)
        proc = hera_migrate(db_dsn, *run_args(report_dir, resume=i > 0), kill=f"{point}:{n}")
        assert proc.returncode == -9, (point, n, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
        assert f"SIGKILL at {point} #{n}" in proc.stderr
        kills.append(f"{point}:{n}@{chunks[n - 1][0]}")
        wait_claim_released(db_dsn, org)

        # exactly the chunks that committed before the kill are there, each once, and the journal agrees
        expect = dict(state)
        for tier, size in chunks[:committed_chunks(point, n)]:
            key = "originals" if tier == "reverse_repost" else "aliases"
            expect[key] += size
            if tier == "reverse_repost":
                expect["reposts"] += size
                expect["twins"] += size
        got = db_counts(db_dsn, org)
        assert got == expect, (point, n, state)
        journal = run_status(db_dsn, RUN).organizations[0]
        assert (journal.migrated, journal.aliased) == (got["originals"], got["aliases"])
        assert journal.status == "running"  # killed: nobody could write `failed`
        assert_links(db_dsn, org)
    assert len(kills) >= 10 and set(CHUNK_POINTS) <= {k.split(":")[0] for k in kills}
    if RNG_SEED == DEFAULT_SEED:  # the default schedule kills in both tiers' chunk loops
        assert {k.split("@")[1] for k in kills} == set(TIERS), kills

    done = hera_migrate(db_dsn, *run_args(report_dir, resume=True))
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    run_seconds = time.monotonic() - t0

    # every plan candidate exactly once: one reversal and one repost per original, one alias mark per alias
    reposts, twins, every_twin = assert_links(db_dsn, org)
    assert sorted(reposts) == sorted(candidates["reverse_repost"])
    assert set(reposts.values()) == set(twins.values()) == {1}
    assert max(every_twin.values()) == 1  # no transaction of the org is reversed twice, by anyone
    with connect(db_dsn) as conn:
        aliased = [r[0] for r in conn.execute(
            "SELECT id::text FROM universal_transactions WHERE organization_id = %s "
            "AND metadata -> 'migration' ->> 'run_id' = %s AND metadata -> 'migration' ->> 'role' = 'alias' "
            "ORDER BY id", (org, RUN))]
    assert aliased == sorted(candidates["reporting_alias"])
    final = db_counts(db_dsn, org)
    assert final == {"originals": planned["reverse_repost"], "reposts": planned["reverse_repost"],
                     "aliases": planned["reporting_alias"], "twins": planned["reverse_repost"]}
    status = run_status(db_dsn, RUN)
    journal = status.organizations[0]
    assert (status.status, journal.migrated, journal.aliased, sum(journal.quarantined.values())) == (
        "completed", final["originals"], final["aliases"], 0)
    assert journal.candidates == planned  # counted by the first invocation, never again
    results = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    assert results["integrity_score"] == 100
    assert results["diff"]["available"] is True
    assert not any(results["diff"]["unexpected"].values()), results["diff"]
    assert all(c["status"] == "passed" for c in results["checks"] if c["severity"] == "critical")

    # the rollback, killed inside a chunk and after a commit, then resumed
    t1 = time.monotonic()
    for point, n in (("rollback_before_commit", 2), ("rollback_after_commit", 3)):
        state = db_counts(db_dsn, org)
        proc = hera_migrate(db_dsn, "rollback", RUN, "--no-progress", "--workers", "1", kill=f"{point}:{n}")
        assert proc.returncode == -9, (point, n, proc.stdout[-2000:], proc.stderr[-2000:])
        wait_claim_released(db_dsn, org)
        restored = BATCH * (n if point == "rollback_after_commit" else n - 1)
        after = db_counts(db_dsn, org)
        assert after["originals"] == after["reposts"] == after["twins"] == state["originals"] - restored
        assert_links(db_dsn, org)
    rolled = hera_migrate(db_dsn, "rollback", RUN, "--no-progress")
    assert rolled.returncode == 0, (rolled.stdout[-3000:], rolled.stderr[-3000:])
    assert run_status(db_dsn, RUN).status == "rolled_back"
    with connect(db_dsn) as conn:
        assert dump(conn, org) == before  # the six tables as before the run (journal kept as the audit trail)
    print(f"\nkills: {', '.join(kills)}; run+resumes {run_seconds:.1f}s, rollback {time.monotonic() - t1:.1f}s")


@pytest.mark.parametrize("value", ["nope:1", "chunk_before_commit", "chunk_before_commit:0",
                                   "between_chunks:x", "between_chunks:1,between_chunks:2"])
def test_a_malformed_kill_switch_is_refused(value: str) -> None:
    from runner.engine import faults

    with pytest.raises(ValueError, match="HERA_FAULT_KILL"):
        faults.parse(value)


def test_kill_switch_parses_and_is_inert_when_unset() -> None:
    from runner.engine import faults

    try:
        assert faults.reload("chunk_before_commit:3, rollback_after_commit:1") == {
            "chunk_before_commit": 3, "rollback_after_commit": 1}
        faults.point("chunk_before_commit")  # 1st and 2nd passage: nothing happens (the 3rd would kill pytest)
        faults.point("chunk_before_commit")
        faults.point("between_chunks")  # not configured
        assert faults.reload("") == {}
        for _ in range(5):
            faults.point("chunk_before_commit")
    finally:
        faults.reload()

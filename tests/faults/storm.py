"""The crash storm: one `hera-migrate run` SIGKILLed again and again — in the before-snapshot, inside chunk
transactions, right after a COMMIT, between chunks, at random instants of the chunk loop, in the validation — and
`run --resume` after every kill; then its rollback killed the same way and run again. Used by
tests/faults/test_crash_storm.py (a medium organisation, ≥ 20 kills) and the short version in
tests/integration/test_faults_crash.py.

Kills come from two sources:
- in the process (HERA_FAULT_KILL, runner/engine/faults.py) at an exact point and occurrence: there the journal's
  chunk counter must move by exactly the chunks that committed before the kill (n - 1 before a COMMIT or between
  chunks, n after one);
- from outside (SIGKILL by this process) when a condition observed in the database or on disk says the run is
  where the kill should land: the snapshot file being written before any journal exists, the journal's progress
  passing a random target, the journal complete while the process still validates, the rollback's chunk counter
  passing a target.
After every kill: the killed sessions are gone (its advisory claims free), no row that existed before the run is
missing, every migrated original has exactly one reversal and one repost and vice versa, nothing is reversed
twice, and the journal counts exactly what the tables hold.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.db.connect import connect
from runner.engine import run_status
from runner.errors import EXIT_OK
from tests.faults.harness import (
    Audit,
    Progress,
    Spawned,
    Tally,
    Watcher,
    audit,
    dump,
    dump_diff,
    kill_when,
    lost_rows,
    progress,
    results,
    row_ids,
    rows_in,
    unexpected_total,
    wait_claims_released,
)

CHUNK_POINTS = ("chunk_before_commit", "chunk_after_commit", "between_chunks")
RUN_TIMEOUT = 900.0


@dataclass
class StormPlan:
    snapshot_kills: int = 2
    chunk_kills: int = 16  # alternately in-process (exact point) and external (random progress target)
    max_n: int = 6  # in-process kills: the n-th passage of the point, n in 1..max_n
    validation_kills: int = 2
    rollback_kills: int = 4
    seed: int = 20260611
    batch_size: int | None = None  # None: the engine's adaptive chunks
    step: tuple[float, float] = (0.05, 0.2)  # external chunk-loop kills: after this share of what is left


@dataclass
class Storm:
    dsn: str
    orgs: list[str]
    spec: Path
    run_id: str
    workdir: Path
    candidates: dict[str, set[str]]  # tier -> candidate ids (computed independently of the engine)
    tally: Tally
    plan: StormPlan = field(default_factory=StormPlan)
    kills: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.plan.seed)
        self.report = self.workdir / "report"
        self.snapshot = self.report / "snapshots.duckdb"
        self.logs = self.workdir / "logs"
        self.total = sum(len(v) for v in self.candidates.values())
        with connect(self.dsn) as conn:
            self.before_ids = row_ids(conn, self.orgs)
            self.before = dump(conn, self.orgs, hashed=True)

    # --- processes --------------------------------------------------------------------------------------------

    # One worker: the storm counts exactly which chunks each kill let commit (tests/integration/test_workers.py kills
    # a four-worker run and checks the invariants that hold whatever the interleaving).
    def run_args(self, resume: bool) -> list[str]:
        return ["run", str(self.spec), "--run-id", self.run_id, "--now", "--no-progress", "--workers", "1",
                "--report-dir",
                str(self.report), *(["--resume"] if resume else []),
                *(["--batch-size", str(self.plan.batch_size)] if self.plan.batch_size else [])]

    def spawn(self, args: list[str], kill: str | None = None) -> Spawned:
        return Spawned(self.dsn, args, self.logs, kill=kill)

    def killed(self, proc: Spawned, how: str) -> None:
        assert proc.proc.returncode == -signal.SIGKILL, (how, proc.proc.returncode, proc.tail())
        self.kills.append(how)
        self.tally.faults += 1
        wait_claims_released(self.dsn, self.orgs)

    def journal(self) -> Progress:
        with connect(self.dsn, autocommit=True) as conn:
            return progress(conn, self.run_id)

    # --- invariants -------------------------------------------------------------------------------------------

    def check(self, where: str) -> Audit:
        with connect(self.dsn) as conn:
            a = audit(conn, self.orgs, self.run_id)
            lost = lost_rows(self.before_ids, row_ids(conn, self.orgs))
            p = progress(conn, self.run_id)
        assert lost == {}, f"{where}: rows lost {lost}"
        assert not a.broken_links, f"{where}: {a.broken_links[:5]}"
        assert a.duplicates == 0, f"{where}: duplicates"
        assert set(a.reposts) == set(a.twins) == a.originals, where
        assert a.originals <= self.candidates["reverse_repost"], f"{where}: a non-candidate was migrated"
        assert a.aliases <= self.candidates["reporting_alias"], f"{where}: a non-candidate was aliased"
        # every candidate the journal counts as done is in the tables, unless the rollback counts it as restored
        assert p.done == len(a.originals) + len(a.aliases) + p.rollback_done, f"{where}: journal {p} vs tables"
        self.tally.rows_checked += len(a.originals) + len(a.aliases)
        self.tally.lost += sum(lost.values())
        self.tally.duplicates += a.duplicates
        return a

    # --- phases -----------------------------------------------------------------------------------------------

    def kill_in_snapshot(self, resume: bool) -> None:
        """Kill while the before-snapshot is being written (the file exists, no journal yet)."""
        proc = self.spawn(self.run_args(resume))
        with Watcher(self.dsn, self.run_id) as w:
            def in_snapshot() -> bool:
                return self.snapshot.exists() and self.snapshot.stat().st_size > 0 and w.now().statuses == ()

            assert kill_when(proc, in_snapshot, timeout=RUN_TIMEOUT, what="the before-snapshot"), proc.tail()
        self.killed(proc, "snapshot (external)")
        assert self.journal().statuses == ()  # died before the run wrote anything
        self.check("after a kill in the snapshot")
        self.tally.resumed += 1

    def kill_in_chunks(self, i: int) -> bool:
        """One kill in the chunk loop; False when the run finished before the kill could land."""
        before = self.journal()
        if i % 2 == 0:
            point = CHUNK_POINTS[(i // 2) % 3]
            n = self.rng.randint(1, self.plan.max_n)
            proc = self.spawn(self.run_args(resume=True), kill=f"{point}:{n}")
            proc.wait(RUN_TIMEOUT)
            if proc.proc.returncode == EXIT_OK:
                return False
            self.killed(proc, f"{point}:{n}")
            assert f"SIGKILL at {point} #{n}" in proc.stderr
            after = self.journal()
            committed = n if point == "chunk_after_commit" else n - 1
            if before.done < self.total:  # a whole invocation of chunks: exact accounting
                assert after.chunks - before.chunks == committed, (point, n, before, after)
        else:
            left = self.total - before.done
            target = before.done + max(1, int(left * self.rng.uniform(*self.plan.step)))
            if not self.kill_on_journal(self.run_args(resume=True), lambda p: p.done >= target,
                                        f"journal progress {target}", f"progress >= {target} (external)"):
                return False
        self.check(f"after kill {self.kills[-1]}")
        self.tally.resumed += 1
        return True

    def kill_in_alias_tier(self) -> bool:
        """One external kill inside tier 3 (the journal's progress past every tier-2 candidate)."""
        first = len(self.candidates["reverse_repost"])
        before = self.journal()
        if before.done >= self.total - 1 or not self.candidates["reporting_alias"]:
            return False
        target = max(before.done, first) + self.rng.randint(1, max(1, (self.total - max(before.done, first)) // 2))
        if not self.kill_on_journal(self.run_args(resume=True), lambda p: p.done >= target,
                                    f"journal progress {target} (tier 3)", f"tier-3 progress >= {target} (external)"):
            return False
        self.check("after a kill in tier 3")
        self.tally.resumed += 1
        return True

    def kill_in_validation(self) -> None:
        """Kill the moment the journal says the migration is complete while the process lives on: it is taking
        the after-snapshot (validation's first step)."""
        proc = self.spawn(self.run_args(resume=True))
        with Watcher(self.dsn, self.run_id) as w:
            landed = kill_when(proc, lambda: w.now().statuses == ("completed",), timeout=RUN_TIMEOUT,
                               what="the migration to complete")
        if not landed:  # validated before the kill could land
            assert proc.proc.returncode == EXIT_OK, proc.tail()
            return
        self.killed(proc, "validation start (external)")
        self.check("after a kill in the validation")
        self.tally.resumed += 1

    def kill_in_validation_deep(self) -> None:
        """Kill once the snapshot file has grown during the validation: the after-snapshot is (being) written,
        the diff and the checks follow."""
        proc = self.spawn(self.run_args(resume=True))
        size0 = self.snapshot.stat().st_size if self.snapshot.exists() else 0
        grown = kill_when(proc, lambda: self.snapshot.exists() and self.snapshot.stat().st_size > size0,
                          timeout=RUN_TIMEOUT, what="the after-snapshot to be written")
        if not grown:
            assert proc.proc.returncode == EXIT_OK, proc.tail()
            return
        self.killed(proc, "validation (external, after-snapshot written)")
        self.check("after a kill deep in the validation")
        self.tally.resumed += 1

    def finish_run(self) -> dict[str, object]:
        proc = self.spawn(self.run_args(resume=True))
        code = proc.wait(RUN_TIMEOUT)
        assert code == EXIT_OK, proc.tail()
        a = self.check("at the end of the run")
        assert a.originals == self.candidates["reverse_repost"], "a candidate was not migrated"
        assert a.aliases == self.candidates["reporting_alias"], "a candidate was not aliased"
        res = results(self.report)
        assert res["integrity_score"] == 100, res["integrity_score"]
        assert res["diff"]["available"] is True and unexpected_total(res) == 0, res["diff"]
        assert all(c["status"] == "passed" for c in res["checks"] if c["severity"] == "critical")
        status = run_status(self.dsn, self.run_id)
        assert status.status == "completed"
        assert sum(o.migrated for o in status.organizations) == len(a.originals)
        self.tally.unexpected += unexpected_total(res)
        return res

    def kill_on_journal(self, args: list[str], reached: Callable[[Progress], bool], what: str, how: str) -> bool:
        """Start `args`, SIGKILL it once the journal satisfies `reached`; False when it finished (exit 0) first."""
        proc = self.spawn(args)
        with Watcher(self.dsn, self.run_id) as w:
            if not kill_when(proc, lambda: reached(w.now()), timeout=RUN_TIMEOUT, what=what):
                assert proc.proc.returncode == EXIT_OK, proc.tail()
                return False
        self.killed(proc, how)
        return True

    def kill_rollback_at(self, target: int) -> bool:
        return self.kill_on_journal(["rollback", self.run_id, "--no-progress", "--workers", "1"],
                                    lambda p: p.rollback_chunks >= target, f"rollback chunk {target}",
                                    f"rollback chunks >= {target} (external)")

    def storm_rollback(self) -> None:
        for i in range(self.plan.rollback_kills):
            before = self.journal()
            if i % 2 == 0:
                point = ("rollback_before_commit", "rollback_after_commit")[(i // 2) % 2]
                n = self.rng.randint(1, 3)
                proc = self.spawn(["rollback", self.run_id, "--no-progress", "--workers", "1"], kill=f"{point}:{n}")
                proc.wait(RUN_TIMEOUT)
                if proc.proc.returncode == EXIT_OK:
                    break
                self.killed(proc, f"{point}:{n}")
                after = self.journal()
                committed = n if point == "rollback_after_commit" else n - 1
                assert after.rollback_chunks - before.rollback_chunks == committed, (point, n, before, after)
            else:
                target = before.rollback_chunks + self.rng.randint(1, 4)
                if not self.kill_rollback_at(target):
                    break
            a = self.check(f"after rollback kill {self.kills[-1]}")
            restored = self.journal().rollback_done
            assert len(a.originals) + len(a.aliases) + restored == self.total, "rollback lost count of a row"
            self.tally.resumed += 1
        proc = self.spawn(["rollback", self.run_id, "--no-progress", "--workers", "1"])
        assert proc.wait(RUN_TIMEOUT) == EXIT_OK, proc.tail()
        assert run_status(self.dsn, self.run_id).status == "rolled_back"
        with connect(self.dsn) as conn:
            final = dump(conn, self.orgs, hashed=True)
        differing = dump_diff(self.before, final)
        self.tally.rows_checked += rows_in(self.before)
        self.tally.unexpected += sum(differing.values())
        assert differing == {}, f"after rollback the organisations differ from before the run: {differing}"

"""Checkpoints and scoped rollback (runner/engine/checkpoints.py, rollback --to / --only).

- rollback --to an operator checkpoint taken while the run works restores exactly the state at the cut (every row
  of the organisation, every column, the journal left out as the run's audit trail), and `--resume` then finishes
  the run with every candidate migrated exactly once;
- an automatic checkpoint (auto:chunk-N) is the state right after chunk N committed;
- --only config restores the organisation's settings and changes no transaction row; --only transactions leaves
  the entities; a whole rollback afterwards restores the rest;
- the command line: checkpoint, status's checkpoint list, rollback --only/--to usage errors (exit 2, nothing
  touched), the report's rollback scope, a rollback's live metrics (textfile) counting what it restored and its
  notification received by a local webhook;
- a checkpoint taken from another thread while the run keeps migrating is an exact cut (the counts it read under
  the gate are exactly what a rollback to it leaves);
- end to end: a run SIGKILLed after chunk 3, checkpointed, finished, rolled back to the checkpoint and resumed
  validates to the same verdict and counts as before, every candidate once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.db.connect import connect
from runner.engine import ChunkInfo, EngineHooks, rollback_run, run_migration, run_status
from runner.engine.checkpoints import record_named
from runner.errors import UsageError
from runner.spec.model import Spec
from runner.synth.generate import generate
from tests.integration.test_engine_support import PHASE7, ROOT, dump, one, phase7, plan_candidates
from tests.tools.webhook import webhook

BATCH = 40
TXN_TABLES = ("universal_transactions", "universal_transaction_lines")


def spec_every(chunks: int) -> Spec:
    spec = phase7()
    return dataclasses.replace(spec, execution=dataclasses.replace(spec.execution, checkpoint_every_chunks=chunks))


def state(dsn: str, org: str) -> dict[str, list[Any]]:
    with connect(dsn) as conn:
        return dump(conn, org)


class CutAt(EngineHooks):
    """After chunk `chunk` of tier 2 committed: record an operator checkpoint (or not) and keep the state then."""

    def __init__(self, dsn: str, org: str, run_id: str, chunk: int, name: str | None) -> None:
        self.dsn, self.org, self.run_id, self.chunk, self.name = dsn, org, run_id, chunk, name
        self.at_cut: dict[str, list[Any]] | None = None

    def after_commit(self, info: ChunkInfo) -> None:
        if info.tier == "reverse_repost" and info.chunk == self.chunk and self.at_cut is None:
            if self.name:
                record_named(self.dsn, self.run_id, self.name, [self.org])
            self.at_cut = state(self.dsn, self.org)


def reposts_per_original(dsn: str, org: str, run_id: str) -> Counter[str]:
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT metadata -> 'migration' ->> 'original_txn_id' FROM universal_transactions "
            "WHERE organization_id = %s AND metadata -> 'migration' ->> 'run_id' = %s "
            "AND metadata -> 'migration' ->> 'role' = 'repost'", (org, run_id)).fetchall()
    return Counter(r[0] for r in rows)


def test_rollback_to_a_checkpoint_restores_the_cut_and_resume_finishes(core_dsn: str) -> None:
    dsn = core_dsn
    org = generate(dsn, size="small", seed=61).organizations[0].organization_id
    spec = phase7()
    planned = plan_candidates(dsn, spec, org)
    before = state(dsn, org)
    cut = CutAt(dsn, org, "run-cp", chunk=3, name="before-peak")
    done = run_migration(dsn, spec, run_id="run-cp", workers=1, batch_size=BATCH, now=True, hooks=cut).org(org)
    assert done.migrated == planned["reverse_repost"] and done.aliased == planned["reporting_alias"]
    assert cut.at_cut is not None and cut.at_cut != before and state(dsn, org) != cut.at_cut

    result = rollback_run(dsn, "run-cp", to="before-peak")
    got = result.org(org)
    assert (result.status, got.status, got.verified, got.problems, got.conflicts) == (
        "rolled_back", "rolled_back", True, [], [])
    assert got.originals_restored == planned["reverse_repost"] - 3 * BATCH
    assert got.aliases_restored == planned["reporting_alias"]
    assert state(dsn, org) == cut.at_cut  # every row, every column, as it was at the cut
    st = run_status(dsn, "run-cp")
    assert st.status == "rolled_back_to_checkpoint"
    assert st.organizations[0].migrated == 3 * BATCH and st.organizations[0].aliased == 0
    names = {c["name"] for c in st.checkpoints}
    assert {"before-peak", "auto:start"} <= names and "auto:done" not in names  # the cut's future is forgotten

    resumed = run_migration(dsn, spec, run_id="run-cp", resume=True, workers=1, batch_size=BATCH, now=True).org(org)
    assert resumed.status == "completed"
    assert (resumed.migrated, resumed.aliased) == (planned["reverse_repost"], planned["reporting_alias"])
    per_original = reposts_per_original(dsn, org, "run-cp")
    assert len(per_original) == planned["reverse_repost"] and set(per_original.values()) == {1}  # exactly once
    with connect(dsn) as conn:
        assert one(conn, "SELECT count(*) FROM universal_transactions WHERE organization_id = %s AND "
                         "metadata -> 'migration' ->> 'run_id' = 'run-cp' AND metadata -> 'migration' ->> 'role' = "
                         "'alias'", (org,)) == planned["reporting_alias"]

    whole = rollback_run(dsn, "run-cp")  # and the whole run still comes off exactly
    assert whole.status == "rolled_back" and state(dsn, org) == before


def test_an_automatic_checkpoint_is_the_state_after_its_chunk(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=62).organizations[0].organization_id
    cut = CutAt(db_dsn, org, "run-auto", chunk=4, name=None)
    run_migration(db_dsn, spec_every(2), run_id="run-auto", workers=1, batch_size=BATCH, now=True, hooks=cut)
    names = [c["name"] for c in run_status(db_dsn, "run-auto").checkpoints]
    assert names[0] == "auto:start" and names[-1] == "auto:done"
    assert {"auto:chunk-2", "auto:chunk-4", "auto:reverse_repost", "auto:reporting_alias"} <= set(names)

    result = rollback_run(db_dsn, "run-auto", to="auto:chunk-4")
    assert result.status == "rolled_back" and result.org(org).verified
    assert state(db_dsn, org) == cut.at_cut

    with pytest.raises(UsageError, match="no checkpoint named 'nope'"):
        rollback_run(db_dsn, "run-auto", to="nope")


def test_only_config_touches_no_transaction_and_only_transactions_leaves_entities(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=63).organizations[0].organization_id
    before = state(db_dsn, org)
    run = run_migration(db_dsn, phase7(), run_id="run-scope", workers=1, batch_size=200, now=True).org(org)
    assert run.entities.get("organization_config") == 1 and run.entities.get("posting_rules")
    migrated = state(db_dsn, org)
    assert migrated["core_organizations"] != before["core_organizations"]

    config = rollback_run(db_dsn, "run-scope", only=("config",)).org(org)
    assert (config.status, config.verified, config.originals_restored, config.aliases_restored) == (
        "rolled_back", True, 0, 0)
    assert config.entities["organization_config"] == 1 and config.entities["entities_restored"] == 0
    now = state(db_dsn, org)
    assert now["core_organizations"] == before["core_organizations"]  # settings back to v1
    for table in TXN_TABLES:
        assert now[table] == migrated[table]  # not one transaction row touched
    assert now["core_entities"] == migrated["core_entities"]  # posting rules and periods keep their migration
    assert run_status(db_dsn, "run-scope").status == "partially_rolled_back"

    txns = rollback_run(db_dsn, "run-scope", only=("transactions",)).org(org)
    assert txns.originals_restored == run.migrated and txns.aliases_restored == run.aliased and txns.verified
    now = state(db_dsn, org)
    for table in TXN_TABLES:
        assert now[table] == before[table]
    assert now["core_entities"] == migrated["core_entities"]

    rest = rollback_run(db_dsn, "run-scope").org(org)  # the whole rollback undoes what is left: the entities
    assert rest.status == "rolled_back" and rest.entities["entities_restored"] > 0
    assert state(db_dsn, org) == before
    assert run_status(db_dsn, "run-scope").status == "rolled_back"


def test_checkpoint_names_are_checked(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=64).organizations[0].organization_id
    run_migration(db_dsn, phase7(narrow=True), run_id="run-names", workers=1, now=True)
    assert [c.name for c in record_named(db_dsn, "run-names", "after-run", [org])] == ["after-run"]
    with pytest.raises(UsageError, match="already has a checkpoint named 'after-run'"):
        record_named(db_dsn, "run-names", "after-run", [org])
    with pytest.raises(UsageError, match="invalid checkpoint name"):
        record_named(db_dsn, "run-names", "auto:mine", [org])
    with pytest.raises(UsageError, match="no run run-none"):
        record_named(db_dsn, "run-none", "x", [org])
    result = rollback_run(db_dsn, "run-names", to="after-run")  # nothing after it: nothing undone, still verified
    got = result.org(org)
    assert (got.originals_restored, got.aliases_restored, got.verified) == (0, 0, True)


def hera_migrate(dsn: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("HERA_FAULT_KILL", "HERA_DSN")}
    return subprocess.run([sys.executable, "-m", "runner", "--dsn", dsn, *args], cwd=ROOT, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_operator_commands(db_dsn: str, tmp_path: Path) -> None:
    org = generate(db_dsn, size="small", seed=65).organizations[0].organization_id
    before = state(db_dsn, org)
    report = tmp_path / "run-ops"
    run = hera_migrate(db_dsn, "run", str(PHASE7), "--run-id", "run-ops", "--now", "--no-progress",
                       "--report-dir", str(report))
    assert run.returncode in (0, 1), run.stderr
    usage = [(["rollback"], "give the RUN_ID"), (["rollback", "run-ops", "--all-runs"], "--all-runs undoes every"),
             (["rollback", "run-ops", "--only", "ledger"], "'ledger' is not one of"),
             (["rollback", "run-ops", "--to", "nope"], "no checkpoint named 'nope'"),
             (["checkpoint", "run-ops", "auto:x"], "invalid checkpoint name")]
    for argv, message in usage:
        proc = hera_migrate(db_dsn, *argv)
        assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
    assert state(db_dsn, org) != before  # no usage error touched anything

    named = hera_migrate(db_dsn, "checkpoint", "run-ops", "signed-off")
    assert named.returncode == 0 and "rollback run-ops --to signed-off" in named.stdout, named.stderr
    status = hera_migrate(db_dsn, "status", "run-ops", "--json")
    assert "signed-off" in {c["name"] for c in json.loads(status.stdout)["checkpoints"]}

    config = hera_migrate(db_dsn, "rollback", "run-ops", "--only", "config", "--no-progress", "--report-dir",
                          str(report))
    assert config.returncode == 0, config.stdout + config.stderr
    results = json.loads((report / "results.json").read_text())
    assert results["rollback"]["scope"] == {"to": None, "only": ["config"]}
    assert "only config rolled back" in results["rollback"]["comparison"]["reason"]

    textfile = tmp_path / "rollback.prom"
    with webhook() as hook:
        whole = hera_migrate(db_dsn, "rollback", "run-ops", "--no-progress", "--report-dir", str(report),
                             "--metrics-textfile", str(textfile), "--workers", "2", "--notify", hook.url)
        assert whole.returncode == 0, whole.stdout + whole.stderr
        [finished] = [m for m in hook.messages() if m["event"] == "rollback_finished"]
    assert (finished["run_id"], finished["status"], finished["exit_code"]) == ("run-ops", "rolled_back", 0)
    assert finished["report"] == str((report / "index.html").resolve()) and finished["text"]
    assert state(db_dsn, org) == before
    results = json.loads((report / "results.json").read_text())
    assert results["rollback"]["comparison"]["identical"] is True
    handled = [(s.labels.get("worker"), s.value) for f in text_string_to_metric_families(textfile.read_text())
               for s in f.samples
               if s.name == "hera_migrate_records_handled_total" and s.labels.get("tier") == "rollback"]
    restored = results["rollback"]["organizations"][0]
    assert sum(v for _, v in handled) == restored["originals_restored"] + restored["aliases_restored"] > 0
    assert len(handled) >= 2  # --workers 2 on one organisation: its claiming session and a helper took chunks


def test_killed_run_checkpointed_finished_rolled_back_to_the_checkpoint_and_resumed_validates(
        db_dsn: str, tmp_path: Path) -> None:
    org = generate(db_dsn, size="small", seed=66).organizations[0].organization_id
    planned = plan_candidates(db_dsn, phase7(), org)
    report = tmp_path / "run-e2e"
    # one worker: the kill after chunk 3 leaves exactly three chunks in (the spec's 4 sessions would race past it)
    args = ["run", str(PHASE7), "--run-id", "run-e2e", "--batch-size", str(BATCH), "--workers", "1", "--now",
            "--no-progress", "--report-dir", str(report)]
    env_kill = {"HERA_FAULT_KILL": "chunk_after_commit:3"}
    killed = hera_migrate(db_dsn, *args, env=env_kill)
    assert killed.returncode == -9, killed.stderr
    assert hera_migrate(db_dsn, "checkpoint", "run-e2e", "three-chunks").returncode == 0
    assert hera_migrate(db_dsn, *args, "--resume").returncode in (0, 1)
    finished = json.loads((report / "results.json").read_text())

    back = hera_migrate(db_dsn, "rollback", "run-e2e", "--to", "three-chunks", "--no-progress", "--report-dir",
                        str(report))
    assert back.returncode == 0, back.stdout + back.stderr
    assert "--resume` continues it from there" in back.stdout
    st = run_status(db_dsn, "run-e2e").organizations[0]
    assert (st.status, st.migrated, st.aliased) == ("rolled_back_to_checkpoint", 3 * BATCH, 0)

    again = hera_migrate(db_dsn, *args, "--resume")
    resumed = json.loads((report / "results.json").read_text())
    assert again.returncode == finished["exit_code"], again.stdout + again.stderr  # the same verdict as before
    assert resumed["status"] == finished["status"] and "rollback" not in resumed
    assert resumed["counts"]["reverse_reposted"] == planned["reverse_repost"]
    assert resumed["counts"]["aliased"] == planned["reporting_alias"]
    assert resumed["integrity_score"] == finished["integrity_score"]
    assert len(reposts_per_original(db_dsn, org, "run-e2e")) == planned["reverse_repost"]


class Signal(EngineHooks):
    """Sets `reached` after tier-2 chunk `chunk` committed; the run goes on without waiting."""

    def __init__(self, chunk: int) -> None:
        self.chunk, self.reached = chunk, threading.Event()

    def after_commit(self, info: ChunkInfo) -> None:
        if info.tier == "reverse_repost" and info.chunk == self.chunk:
            self.reached.set()


def test_a_checkpoint_taken_while_chunks_are_in_flight_is_an_exact_cut(db_dsn: str) -> None:
    org = generate(db_dsn, size="small", seed=67).organizations[0].organization_id
    signal = Signal(chunk=2)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            run_migration(db_dsn, phase7(), run_id="run-live", workers=1, batch_size=20, now=True, hooks=signal)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    runner = threading.Thread(target=work)
    runner.start()
    assert signal.reached.wait(120), "the run never reached its second chunk"
    cut = record_named(db_dsn, "run-live", "live", [org])[0]  # while the run keeps migrating
    runner.join()
    assert not failures, failures
    assert run_status(db_dsn, "run-live").organizations[0].migrated > cut.counters["migrated"] >= 40

    result = rollback_run(db_dsn, "run-live", to="live")
    assert result.status == "rolled_back" and result.org(org).verified
    with connect(db_dsn) as conn:
        marked = dict(conn.execute(
            "SELECT metadata -> 'migration' ->> 'role', count(*) FROM universal_transactions "
            "WHERE organization_id = %s AND metadata -> 'migration' ->> 'run_id' = 'run-live' GROUP BY 1",
            (org,)).fetchall())
    # what the journal counted at the cut (read under the gate) is exactly what is left: no chunk half in, none lost
    assert marked.get("original", 0) == marked.get("repost", 0) == cut.counters["migrated"]
    assert marked.get("alias", 0) == cut.counters["aliased"]
    assert run_status(db_dsn, "run-live").organizations[0].migrated == cut.counters["migrated"]

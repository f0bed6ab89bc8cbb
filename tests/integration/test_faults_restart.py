"""The PostgreSQL server restarted under the runner (fast version of `nox -s faults` scenario 2).

The module has a server of its own (a restart would break every other test's database) and each test a database
on it. The server is stopped at an exact point: inside a chunk transaction, after all its writes and before
COMMIT (`EngineHooks.before_commit`), so the COMMIT meets a dead connection. The contract allows two outcomes,
and each is pinned where it happens:
- the server comes back (a restart, `fast` or `immediate`; or a start while the runner is still retrying): the
  runner reconnects — a refused reconnect is retried with back-off like the lost connection — retries the chunk
  and finishes on its own, exactly once;
- the server stays down longer than the runner's retries: the run (or rollback) stops with exit code 3, and once
  the server is back `resume` (or rollback again) finishes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runner.db.connect import connect
from runner.db.providers import LocalCluster, Server, start_local
from runner.engine import ChunkInfo, EngineHooks, RollbackFailed, RunFailed, rollback_run, run_migration, run_status
from runner.errors import EXIT_RUNTIME
from runner.spec.model import Retries
from runner.synth.generate import generate
from tests.faults.harness import LEDGER, audit, dump, dump_diff, fresh_database, pg_start, pg_stop, rows_in
from tests.integration.test_engine_support import candidate_ids, phase7


@pytest.fixture(scope="module")
def own_server() -> Iterator[Server]:
    srv = start_local(prefer=os.environ.get("HERA_TEST_SERVER", "embedded"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def setup(own_server: Server) -> tuple[str, str, LocalCluster]:
    assert own_server.cluster is not None
    dsn = fresh_database(own_server.dsn)
    org = generate(dsn, size="small", seed=61).organizations[0].organization_id
    return dsn, org, own_server.cluster


class Outage(EngineHooks):
    """At chunk `chunk` of `tier`, before COMMIT: restart the server (`down=False`) or stop it (`down=True`)."""

    def __init__(self, cluster: LocalCluster, tier: str, chunk: int, mode: str, *, down: bool = False) -> None:
        self.cluster, self.tier, self.chunk, self.mode, self.down = cluster, tier, chunk, mode, down
        self.fired = 0

    def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
        if info.tier == self.tier and info.chunk == self.chunk and not self.fired:
            self.fired += 1
            pg_stop(self.cluster, self.mode)
            if not self.down:
                pg_start(self.cluster)


def _exactly_once(dsn: str, org: str, run_id: str, want: list[str]) -> int:
    with connect(dsn) as conn:
        a = audit(conn, [org], run_id)
    assert a.exactly_once(), a.broken_links
    assert sorted(a.originals) == sorted(want)
    return len(a.originals)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_inside_a_chunk_the_runner_reconnects_and_finishes(setup: tuple[str, str, LocalCluster],
                                                                   mode: str) -> None:
    dsn, org, cluster = setup
    spec = phase7(narrow=True, max_retries=3)
    with connect(dsn) as conn:
        want = candidate_ids(conn, org, spec, "reverse_repost")
    with LEDGER.scenario(f"fast: restart ({mode}) mid-run") as tally:
        hooks = Outage(cluster, "reverse_repost", 2, mode)
        result = run_migration(dsn, spec, run_id=f"run-restart-{mode}", workers=1, batch_size=25, now=True,
                               hooks=hooks)
        got = result.org(org)
        assert hooks.fired == 1 and got.session["retries"] >= 1  # the chunk met the dead connection and was retried
        assert got.status == "completed" and got.migrated == len(want)
        tally.faults, tally.rows_checked = 1, _exactly_once(dsn, org, f"run-restart-{mode}", want)
        journal = run_status(dsn, f"run-restart-{mode}").organizations[0]
        assert (journal.status, journal.migrated) == ("completed", len(want))  # the lost COMMIT counted once


def test_server_back_while_the_runner_retries_it_reconnects(setup: tuple[str, str, LocalCluster],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The server is still down at the runner's first reconnect: that attempt fails and is retried with back-off
    like the lost connection itself; the server comes back (started the moment a reconnect was refused) and the
    run finishes on its own."""
    import threading

    from runner.engine import session

    dsn, org, cluster = setup
    spec = phase7(narrow=True)  # back-off long enough to outlast a server start (0.1 s, doubling, 6 times)
    spec = dataclasses.replace(spec, execution=dataclasses.replace(
        spec.execution, retries=Retries(max=6, backoff_seconds=0.2, max_backoff_seconds=2)))
    refused = threading.Event()
    real_connect = connect  # what engine.session (the worker sessions) imported

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_connect(*args, **kwargs)
        except Exception:
            refused.set()
            raise

    monkeypatch.setattr(session, "connect", watched)
    def start_when_refused() -> None:
        refused.wait(60)
        pg_start(cluster)

    starter = threading.Thread(target=start_when_refused)
    hooks = Outage(cluster, "reverse_repost", 2, "fast", down=True)

    class Start(EngineHooks):
        def before_commit(self, conn: psycopg.Connection[Any], info: ChunkInfo) -> None:
            hooks.before_commit(conn, info)
            if hooks.fired == 1 and not starter.is_alive() and not refused.is_set():
                starter.start()

    with connect(dsn) as conn:
        want = candidate_ids(conn, org, spec, "reverse_repost")
    with LEDGER.scenario("fast: server back during the retries") as tally:
        try:
            result = run_migration(dsn, spec, run_id="run-back", workers=1, batch_size=25, now=True, hooks=Start())
        finally:
            starter.join(60)
        assert refused.is_set() and hooks.fired == 1  # a reconnect met the stopped server
        got = result.org(org)
        assert got.status == "completed" and got.session["retries"] >= 2
        tally.faults, tally.rows_checked = 1, _exactly_once(dsn, org, "run-back", want)


def test_server_down_while_the_runner_retries_exit_3_then_resume(setup: tuple[str, str, LocalCluster]) -> None:
    dsn, org, cluster = setup
    spec = phase7(narrow=True, max_retries=1)
    with connect(dsn) as conn:
        want = candidate_ids(conn, org, spec, "reverse_repost")
    with LEDGER.scenario("fast: server down mid-run, resume") as tally:
        hooks = Outage(cluster, "reverse_repost", 3, "immediate", down=True)
        try:
            with pytest.raises(RunFailed) as failed:
                run_migration(dsn, spec, run_id="run-down", workers=1, batch_size=25, now=True, hooks=hooks)
        finally:
            pg_start(cluster)
        assert failed.value.exit_code == EXIT_RUNTIME
        assert "cannot connect" in (failed.value.result.org(org).error or "")
        with connect(dsn) as conn:
            half = audit(conn, [org], "run-down")
        assert half.exactly_once() and len(half.originals) == 50  # chunks 1-2 committed, chunk 3 was lost
        done = run_migration(dsn, spec, run_id="run-down", resume=True, workers=1, now=True)
        assert done.org(org).status == "completed"
        tally.faults, tally.resumed = 1, 1
        tally.rows_checked = _exactly_once(dsn, org, "run-down", want)


@pytest.mark.parametrize(("mode", "down"), [("fast", False), ("immediate", True)])
def test_outage_inside_a_rollback_chunk_then_rollback_again(setup: tuple[str, str, LocalCluster], mode: str,
                                                            down: bool) -> None:
    dsn, org, cluster = setup
    spec = phase7(narrow=True)
    with connect(dsn) as conn:
        before = dump(conn, [org])
    run_migration(dsn, spec, run_id="run-rb", workers=1, now=True)
    with LEDGER.scenario(f"fast: {'outage' if down else 'restart'} ({mode}) mid-rollback") as tally:
        hooks = Outage(cluster, "rollback", 2, mode, down=down)
        try:
            with pytest.raises(RollbackFailed) as failed:  # a lost connection lost the claim: rollback stops
                rollback_run(dsn, "run-rb", hooks=hooks, batch_size=20)
        finally:
            if down:
                pg_start(cluster)
        assert failed.value.exit_code == EXIT_RUNTIME and hooks.fired == 1
        with connect(dsn) as conn:
            half = audit(conn, [org], "run-rb")
        assert half.exactly_once() and half.originals  # chunk 1 restored, chunk 2 rolled back with the server
        again = rollback_run(dsn, "run-rb")
        assert again.status == "rolled_back"
        with connect(dsn) as conn:
            after = dump(conn, [org])
        assert dump_diff(before, after) == {}
        tally.faults, tally.resumed, tally.rows_checked = 1, 1, rows_in(before)

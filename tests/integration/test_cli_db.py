"""CLI verbs that touch a real database."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from random import Random
from typing import Any

import psycopg
import pytest

from runner.db.connect import connect
from runner.db.providers import free_port
from runner.synth import ledger, masterdata
from runner.synth.generate import org_code
from runner.synth.ledger import CodeTruth
from runner.synth.profiles import load_profiles
from tests.integration.test_check_db import SPEC_WITH_BAD_COLUMN


def hera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_db_schema_is_idempotent_from_the_cli(db_dsn: str) -> None:
    for _ in range(2):
        proc = hera("--dsn", db_dsn, "db", "schema")
        assert proc.returncode == 0, proc.stderr
        assert "HERA core installed" in proc.stdout


def test_fixtures_prints_org_ids_and_refuses_a_duplicate_seed(db_dsn: str) -> None:
    proc = hera("--dsn", db_dsn, "fixtures", "small", "--orgs", "2", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.split()
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
    with connect(db_dsn) as conn:
        found = conn.execute("SELECT count(*) FROM core_organizations WHERE id = ANY(%s::uuid[])", (ids,)).fetchone()
    assert found == (2,)
    again = hera("--dsn", db_dsn, "fixtures", "small", "--seed", "3")
    assert again.returncode == 2
    assert "already exist" in again.stderr and "--seed" in again.stderr


def test_fixtures_without_schema_fails_clearly(new_empty_database: str) -> None:
    proc = hera("--dsn", new_empty_database, "fixtures", "small", "--no-schema")
    assert proc.returncode == 2
    assert "schema is not installed" in proc.stderr


def test_demo_ends_with_an_html_report(db_dsn: str, tmp_path: Path, conn: psycopg.Connection[Any]) -> None:
    """The README's main job: plan → run → validate → rollback rehearsal, the report's path last on stdout."""
    out = tmp_path / "demo"
    proc = hera("--dsn", db_dsn, "demo", "--report-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report: {(out / 'index.html').resolve()}"
    inventory = json.loads((out / "fixtures.json").read_text())
    org = inventory["organizations"][0]
    assert org["organization_id"] in (out / "inventory.html").read_text()
    results = json.loads((out / "results.json").read_text())
    # The report tells the current state: the run was validated (PASSED, 100), then the rehearsal rolled it back.
    assert results["status"] == "rolled_back" and results["rollback"]["rehearsal"] is True
    assert results["rollback"]["validation_before"] == {**results["rollback"]["validation_before"],
                                                        "status": "passed", "integrity_score": 100.0}
    assert all(n == 0 for n in results["diff"]["unexpected"].values())
    assert results["rollback"]["comparison"]["identical"] is True
    html = (out / "index.html").read_text()
    assert org["organization_id"] in html and "rollback rehearsal" in html.lower()
    assert 'id="verdict">ROLLED BACK<' in html
    # The rehearsal rolled everything back: the ledger holds exactly what was generated.
    stored = conn.execute("SELECT count(*) FROM universal_transactions WHERE organization_id = %s",
                          (org["organization_id"],)).fetchone()
    assert stored == (org["rows"]["universal_transactions"],)


# --- issue 14: the spec author's first hour ------------------------------------------------------------------


ROOT = Path(__file__).resolve().parents[2]
ALIAS_ONLY = ROOT / "specs" / "examples" / "alias-only.yaml"


def test_check_with_a_failing_database_check_never_says_ok(db_dsn: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad-column.yaml"
    bad.write_text(SPEC_WITH_BAD_COLUMN)
    for argv in (["--dsn", db_dsn, "check", str(bad)], ["check", str(bad), "--dsn", db_dsn],
                 ["--dsn", db_dsn, "check", str(ALIAS_ONLY), str(bad)]):
        proc = hera(*argv)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout == "", proc.stdout  # a failed check prints its verdict once, on stderr
        assert f"{bad}: OK" not in proc.stderr and "does not plan" in proc.stderr
        assert f"{bad}: database check against " in proc.stderr
    both = hera("--dsn", db_dsn, "check", str(ALIAS_ONLY), str(bad))
    assert f"{ALIAS_ONLY}: OK: " in both.stderr
    assert both.stderr.rstrip().endswith("2 files checked: 1 OK, 1 with problems")
    good = hera("check", str(ALIAS_ONLY), "--dsn", db_dsn)
    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()  # the database's findings, then the verdict, once
    (verdict,) = [i for i, line in enumerate(lines) if line.startswith(f"{ALIAS_ONLY}: OK: ")]
    assert [i for i, line in enumerate(lines) if line.startswith(f"{ALIAS_ONLY}: database check against ")] == [
        verdict - 1]


def truth_of(size: str, seed: int, index: int) -> dict[str, CodeTruth]:
    """What `fixtures SIZE --seed SEED` generates for its organisation number `index`, regenerated in memory."""
    profiles = load_profiles()
    sz = profiles.size(size)
    code = org_code(size, seed, index)
    rng = Random(f"hera-synth:{sz.name}:{seed}:{index}")  # as runner.synth.generate seeds it
    md = masterdata.build(profiles, sz, rng, org_code=code, org_name=f"Synthetic Salon {code}")
    writer = ledger.LedgerWriter(profiles, md, rng)
    for _ in writer.transactions(sz.transactions, code):
        pass
    return writer.truth.by_code


def test_fixtures_prints_what_it_generated_per_v1_code(db_dsn: str) -> None:
    proc = hera("--dsn", db_dsn, "fixtures", "small", "--orgs", "2", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 2  # stdout stays the org ids alone
    for index in (1, 2):
        code = org_code("small", 5, index)
        block = proc.stderr.split(f"{code} per v1 code", 1)[1].split(" per v1 code", 1)[0].splitlines()
        header = block[1].split()
        assert header[:2] == ["v1", "code"] and "headers" in header and "reversed" in header
        rows = {line.split()[0]: line.split() for line in block[3:] if line.startswith("HERA.")}
        truth = truth_of("small", 5, index)
        assert set(rows) == set(truth) and truth
        for v1_code, t in truth.items():
            cells = rows[v1_code]
            assert int(cells[1].replace(",", "")) == t.originals  # headers, right after the code
            assert cells[-2:] == [f"{t.reversed:,}", f"{t.voided:,}"]


def test_status_and_rollback_tables_are_whole_when_piped(db_dsn: str, tmp_path: Path) -> None:
    made = hera("--dsn", db_dsn, "fixtures", "small", "--seed", "6")
    assert made.returncode == 0, made.stderr
    (org,) = made.stdout.split()
    long_code = "SYN-A-RATHER-LONG-ORGANISATION-CODE-THAT-NO-NARROW-COLUMN-HOLDS-0001"
    with connect(db_dsn, autocommit=True) as c:
        c.execute("UPDATE core_organizations SET organization_code = %s WHERE id = %s", (long_code, org))
    run = hera("--dsn", db_dsn, "run", str(ALIAS_ONLY), "--run-id", "wide", "--report-dir", str(tmp_path / "r"),
               "--no-progress", "--now")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    status = hera("status", "wide", "--dsn", db_dsn)
    assert status.returncode == 0, status.stderr
    for word in ("organisation", "reversed+reposted", "quarantined", "last chunk", long_code):
        assert word in status.stdout, status.stdout
    rollback = hera("rollback", "wide", "--dsn", db_dsn, "--report-dir", str(tmp_path / "r"), "--no-progress")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    for word in ("organisation", "originals restored", "reversals deleted", "aliases restored", "verified",
                 long_code):
        assert word in rollback.stdout, rollback.stdout
    assert "…" not in status.stdout + rollback.stdout


def start_db_up(*args: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    """`db up ARGS` in the background; returns once it printed its DSN (the first line of its stdout)."""
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "db", "up", "--no-schema",
                                 "--port", str(free_port()), *args],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=no_hera_dsn())
    assert proc.stdout is not None
    dsn = proc.stdout.readline().strip()  # blocks until the server is up (or the command died: EOF)
    assert dsn.startswith("host=127.0.0.1 "), log.read_text()
    return proc, dsn


def stop_db_up(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)  # what `kill %1` / `kill PID` sends to a background job
    return proc.wait(timeout=120)


def no_hera_dsn() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HERA_DSN"}


def data_directory(dsn: str) -> Path:
    with connect(dsn) as c:
        row = c.execute("SHOW data_directory").fetchone()
    assert row is not None
    return Path(row[0])


def test_db_up_stops_on_sigterm_and_removes_its_data(tmp_path: Path) -> None:
    proc, dsn = start_db_up(log=tmp_path / "stderr.txt")
    try:
        data = data_directory(dsn)
        assert (data / "PG_VERSION").is_file()
        assert stop_db_up(proc) == 0, (tmp_path / "stderr.txt").read_text()
    finally:
        if proc.poll() is None:
            stop_db_up(proc)
    assert not data.exists() and not data.parent.exists()  # the whole temporary directory is gone
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()


def test_db_up_stops_on_sigterm_while_still_starting() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "runner", "db", "up", "--port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=no_hera_dsn())
    assert proc.stderr is not None
    try:
        announced = ""
        while not announced.startswith("#"):  # the first line of its own, before the HERA core is installed
            announced = proc.stderr.readline()
            assert announced, "db up ended before announcing its server"
        found = re.search(r"data in (\S+) \(removed on exit\); installing the HERA core", announced)
        assert found, announced
        data = Path(found[1])
        assert (data / "PG_VERSION").is_file()
        proc.send_signal(signal.SIGTERM)  # while the core is being installed: cleaned up all the same
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            stop_db_up(proc)
    assert proc.returncode == 0, err
    assert not data.parent.exists(), err


def test_db_up_data_dir_is_kept_and_reused(tmp_path: Path) -> None:
    # Under /tmp, not pytest's private tmp_path: as root the server runs as another user, who must reach it.
    parent = Path(tempfile.mkdtemp(prefix="hera-test-"))
    parent.chmod(0o755)
    kept = parent / "pgdata"  # missing: created
    try:
        proc, dsn = start_db_up("--data-dir", str(kept), log=tmp_path / "first.txt")
        try:
            assert data_directory(dsn) == kept.resolve()
            assert str(kept) in (tmp_path / "first.txt").read_text()  # printed on start
            with connect(dsn, autocommit=True) as c:
                c.execute("CREATE TABLE kept_here (x int)")
                c.execute("INSERT INTO kept_here VALUES (42)")
            assert stop_db_up(proc) == 0, (tmp_path / "first.txt").read_text()
        finally:
            if proc.poll() is None:
                stop_db_up(proc)
        assert (kept / "PG_VERSION").is_file()  # not removed on exit
        proc, dsn = start_db_up("--data-dir", str(kept), log=tmp_path / "second.txt")
        try:
            with connect(dsn) as c:
                assert c.execute("SELECT x FROM kept_here").fetchall() == [(42,)]  # the same cluster, reused
            assert stop_db_up(proc) == 0, (tmp_path / "second.txt").read_text()
        finally:
            if proc.poll() is None:
                stop_db_up(proc)
        assert (kept / "PG_VERSION").is_file()
    finally:
        shutil.rmtree(parent, ignore_errors=True)

"""Scenario 4 — hostile and broken input, through the command line (tests/unit/test_spec_hostile.py covers the
loader itself with short hypothesis runs; this adds what it does not: the real entry point, long runs, and proof
that nothing reaches a database).

- `hera-migrate check` on random YAML text, random structures near the schema and random values at every place of
  a valid spec, via `runner.cli.main` in-process (hundreds of examples): exit 0 or 2, never a traceback or an
  "internal error", and no database connection is even attempted — HERA_DSN points at a live listener and
  psycopg's connect is replaced by a tripwire.
- Malformed command lines, as subprocesses of the real CLI in an empty working directory, with --dsn pointing at
  a TCP listener that counts connections: each exits 2 with a message, no traceback, no connection, no file.
"""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import cli
from runner.errors import EXIT_OK, EXIT_USAGE
from tests.faults.harness import LEDGER, PHASE7, ROOT, Tally, cli_env
from tests.unit.test_spec_hostile import ALL_PATHS, BASE, JSONISH, KEYS, YAML_CHARS, _set

LONG = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Listener:
    """A TCP port that accepts and counts connections (and closes them): the database nothing may reach."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=nobody dbname=nothing connect_timeout=2"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    with LEDGER.scenario("hostile specs and command lines") as t:
        yield t


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch, listener: Listener) -> list[str]:
    """psycopg.connect replaced by a recorder that refuses; HERA_DSN set to the listener (check must ignore it)."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args)[:200])
        raise psycopg.OperationalError("tripwire: check must not connect")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(lambda cls, *a, **k: refuse(*a, **k)))
    monkeypatch.setenv("HERA_DSN", listener.dsn)
    return attempts


def run_main(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as ended:
        cli.main(argv)
    code = ended.value.code
    return (code if isinstance(code, int) else 0), out.getvalue() + err.getvalue()


def check_is_clean(path: Path, tally: Tally, attempts: list[str], listener: Listener) -> None:
    before = listener.accepted
    code, text = run_main(["check", str(path)])
    tally.faults += 1
    tally.rows_checked += 1
    assert code in (EXIT_OK, EXIT_USAGE), (code, text[-2000:])
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]
    assert attempts == [] and listener.accepted == before, "check reached for a database"
    if code == EXIT_USAGE:  # the problems are located: FILE:LINE:COL
        assert f"{path}:" in text


def write(tmp: Path, doc: Any) -> Path:
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@LONG
@given(text=st.lists(YAML_CHARS | st.text(max_size=4), max_size=120).map("".join))
def test_check_on_random_yaml_text(tmp_path: Path, text: str, tally: Tally, tripwire: list[str],
                                   listener: Listener) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    check_is_clean(path, tally, tripwire, listener)


@LONG
@given(doc=st.dictionaries(st.sampled_from(KEYS), JSONISH, max_size=10))
def test_check_on_random_structures_near_the_schema(tmp_path: Path, doc: dict[str, Any], tally: Tally,
                                                    tripwire: list[str], listener: Listener) -> None:
    check_is_clean(write(tmp_path, {"name": "r", "version": "1", "owner": "qa", **doc}), tally, tripwire, listener)


@LONG
@given(where=st.sampled_from(ALL_PATHS), value=JSONISH,
       hostile=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60))
def test_check_on_random_values_in_a_valid_spec(tmp_path: Path, where: tuple[str | int, ...], value: Any,
                                                hostile: str, tally: Tally, tripwire: list[str],
                                                listener: Listener) -> None:
    check_is_clean(write(tmp_path, _set(BASE, where, value)), tally, tripwire, listener)
    check_is_clean(write(tmp_path, _set(BASE, where, hostile)), tally, tripwire, listener)


def test_check_of_the_real_spec_with_only_hera_dsn_stays_offline(tmp_path: Path, tally: Tally,
                                                                tripwire: list[str], listener: Listener) -> None:
    code, text = run_main(["check", str(PHASE7)])
    assert code == EXIT_OK and "OK" in text and tripwire == []


BAD_RUN_IDS = ["../escaped", "..", ".", "a b", "x" * 65, "semi;colon", "", "run/../x", "$(touch pwned)"]


def malformed(spec: str) -> list[list[str]]:
    cases = [
        [], ["frobnicate"], ["run"], ["run", spec, "--workers", "0"], ["run", spec, "--workers", "abc"],
        ["run", spec, "--batch-size", "0"], ["run", spec, "--batch-size", "1000000000"],
        ["run", spec, "--org", "not-a-uuid"], ["run", spec, "--resume"], ["run", spec, "--retry-quarantined"],
        ["run", spec, "--frobnicate"], ["run", "no-such-spec.yaml"], ["run", "."], ["run", spec, "--run-id"],
        ["status"], ["rollback"], ["rollback", "run-1", "--org", "zzz"], ["validate"], ["report"],
        ["fixtures", "huge"], ["fixtures", "small", "--orgs", "0"], ["fixtures", "small", "--orgs", "1001"],
        ["fixtures", "small", "--seed", "x"], ["db", "up", "--port", "0"], ["db", "up", "--port", "70000"],
        ["check"], ["check", "no-such-spec.yaml"], ["compile", "no-such-spec.yaml"], ["plan", "no-such-spec.yaml"],
        ["plan", spec, "--org", "nope"], ["load", "--users", "0"], ["demo", "--size", "galactic"],
        ["-v", "frobnicate"],
    ]
    for bad in BAD_RUN_IDS:
        cases += [["run", spec, "--run-id", bad, "--now"], ["status", bad], ["rollback", bad], ["validate", bad],
                  ["report", bad]]
    return cases


def test_malformed_command_lines_exit_2_with_a_message_and_touch_nothing(tmp_path: Path, tally: Tally,
                                                                         listener: Listener) -> None:
    spec = str(PHASE7)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    failures: list[str] = []
    cases = malformed(spec)
    for argv in cases:
        before = listener.accepted
        proc = subprocess.run([sys.executable, "-m", "runner", "--dsn", listener.dsn, *argv], cwd=workdir,
                              env={**cli_env(), "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                              timeout=120, check=False)
        text = proc.stdout + proc.stderr
        problems = []
        if proc.returncode != EXIT_USAGE:
            problems.append(f"exit {proc.returncode}")
        if "Traceback" in text or "internal error" in text:
            problems.append("traceback")
        if not proc.stderr.strip():
            problems.append("no message")
        if listener.accepted != before:
            problems.append("connected to the database")
        if any(workdir.iterdir()):
            problems.append(f"created {sorted(p.name for p in workdir.iterdir())}")
            for p in workdir.iterdir():
                subprocess.run(["rm", "-rf", str(p)], check=True)
        if problems:
            failures.append(f"{argv}: {', '.join(problems)}: {proc.stderr.strip()[-300:]}")
    tally.faults += len(cases)
    tally.rows_checked += len(cases)
    assert failures == [], "\n".join(failures)

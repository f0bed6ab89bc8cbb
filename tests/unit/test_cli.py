"""The CLI contract without a database: every verb answers --help; usage errors exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

VERBS = [["db", "up"], ["db", "schema"], ["fixtures"], ["check"], ["compile"], ["plan"], ["run"], ["status"],
         ["validate"], ["rollback"], ["report"], ["load"], ["demo"]]


def hera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_every_verb_has_help(verb: list[str]) -> None:
    proc = hera(*verb, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: hera-migrate " + " ".join(verb) in proc.stdout


@pytest.mark.parametrize("argv", [["fixtures", "huge"], ["fixtures", "small", "--orgs", "0"], ["nonsense"],
                                  ["run"], ["db", "up", "--port", "99999"], ["--dsn"]])
def test_malformed_arguments_exit_2_with_a_message(argv: list[str]) -> None:
    proc = hera(*argv)
    assert proc.returncode == 2
    assert "Error" in proc.stderr or "error" in proc.stderr


def test_commands_needing_a_persistent_server_refuse_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERA_DSN", raising=False)
    for argv in (["db", "schema"], ["fixtures", "small"], ["load"]):
        proc = hera(*argv)
        assert proc.returncode == 2
        assert "HERA_DSN" in proc.stderr


def test_unreachable_database_is_a_runtime_failure() -> None:
    proc = hera("--dsn", "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2", "db", "schema")
    assert proc.returncode == 3
    assert "cannot connect to PostgreSQL" in proc.stderr

"""The CLI contract without a database: every verb answers --help; usage errors exit 2."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from rich.console import Console

from runner import cli

VERBS = [["db", "up"], ["db", "schema"], ["fixtures"], ["check"], ["compile"], ["plan"], ["run"], ["status"],
         ["validate"], ["rollback"], ["checkpoint"], ["report"], ["load"], ["demo"]]


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


# --- issue 14: the spec author's first hour ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
NOWHERE = "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2"
ELSEWHERE = "host=127.0.0.1 port=2 user=nobody dbname=none connect_timeout=2"
BROKEN_SPEC = """\
name: broken
version: "1"
owner: qa
mappings:
  - from: HERA.SALON.POS.TXN.SALE.v1
    tier: sideways
"""


def hera_env(*args: str, env_dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    if env_dsn is not None:
        env["HERA_DSN"] = env_dsn
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env, cwd=ROOT)


def tried(proc: subprocess.CompletedProcess[str]) -> str:
    """The port of the database the command tried to reach (from its "cannot connect" error)."""
    found = re.search(r"cannot connect to PostgreSQL \([^)]*\bport=(\d+)", proc.stderr)
    assert found, proc.stdout + proc.stderr
    return found[1]


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under `group` (not `group` itself), with its words on the command line."""
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))


def test_every_verb_is_in_the_tree_walk() -> None:
    assert sorted(list(p) for p, c in commands(cli.cli) if not isinstance(c, click.Group)) == sorted(VERBS)


@pytest.mark.parametrize("argv", [["check", "--dsn", NOWHERE, str(PHASE7)],
                                  ["check", str(PHASE7), "--dsn", NOWHERE, "-v"],
                                  ["db", "schema", "--dsn", NOWHERE],
                                  ["db", "--dsn", NOWHERE, "schema"],
                                  ["-v", "db", "schema", "--verbose", "--dsn", NOWHERE]],
                         ids=lambda a: " ".join(a).replace(NOWHERE, "DSN").replace(str(PHASE7), "SPEC"))
def test_global_options_after_the_subcommand_are_used(argv: list[str]) -> None:
    # An explicit --dsn after `check` opts in to the database check exactly like one before it.
    proc = hera_env(*argv)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert tried(proc) == "1"


def test_a_dsn_after_the_subcommand_wins_over_one_before_and_over_hera_dsn() -> None:
    for argv, env in ((["--dsn", ELSEWHERE, "db", "schema", "--dsn", NOWHERE], None),
                      (["--dsn", ELSEWHERE, "db", "--dsn", ELSEWHERE, "schema", "--dsn", NOWHERE], None),
                      (["db", "schema", "--dsn", NOWHERE], ELSEWHERE)):
        proc = hera_env(*argv, env_dsn=env)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert tried(proc) == "1", argv
    proc = hera_env("db", "schema", env_dsn=NOWHERE)  # HERA_DSN alone still names the database
    assert proc.returncode == 3 and tried(proc) == "1", proc.stderr


def test_check_ignores_hera_dsn_but_not_an_explicit_dsn_after_the_subcommand() -> None:
    offline = hera_env("check", str(PHASE7), "-v", env_dsn=NOWHERE)
    assert offline.returncode == 0, offline.stderr
    assert ": OK: " in offline.stdout and "database check" not in offline.stdout
    explicit = hera_env("check", str(PHASE7), "--dsn", ELSEWHERE, env_dsn=NOWHERE)
    assert explicit.returncode == 3 and tried(explicit) == "2", explicit.stderr
    assert ": OK: " not in explicit.stdout  # the verdict waits for the database check


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_every_verb_lists_the_global_options_in_its_help(verb: list[str]) -> None:
    proc = hera(*verb, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--dsn DSN" in proc.stdout and "-v, --verbose" in proc.stdout, proc.stdout


def test_every_option_has_help_text() -> None:
    missing = [f"{' '.join(path) or 'hera-migrate'} {param.opts[0]}"
               for path, cmd in [((), cli.cli), *commands(cli.cli)]
               for param in cmd.params
               if isinstance(param, click.Option) and param.name != "help" and not (param.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize("verb", [["run"], ["plan"], ["load", "--spec"], ["compile"]], ids=" ".join)
def test_spec_problems_come_before_a_missing_database(verb: list[str], tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN_SPEC)
    proc = hera_env(*verb, str(spec))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(rf"{re.escape(str(spec))}:6:11: /mappings/0/tier: ", proc.stderr), proc.stderr
    assert "HERA_DSN" not in proc.stderr


def test_plain_tables_are_never_truncated() -> None:
    from runner.pipeline import print_table

    out = io.StringIO()
    console = make_console_for(out)
    long_code = "SYN-AN-ORGANISATION-CODE-FAR-LONGER-THAN-ANY-COLUMN-WIDTH-0001"
    columns = ["organisation", "status", "originals restored", "reposts deleted", "reversals deleted",
               "aliases restored", "entities", "conflicts", "verified"]
    print_table(console, "rollback of r1: rolled_back in 1.0s", columns,
                [[long_code, "rolled_back", "1,234", "1,234", "1,234", "0", "posting_rules 12", "0", "yes"]])
    text = out.getvalue()
    assert "rollback of r1: rolled_back in 1.0s" in text
    header, rule, row = text.splitlines()[1:4]
    assert header.split() == " ".join(columns).split() and set(rule.replace(" ", "")) == {"-"}
    assert row.startswith(long_code) and row.rstrip().endswith("yes") and "…" not in text
    # Columns line up: text to the left, numbers to the right.
    assert row.index("rolled_back") == header.index("status")
    assert row.index("1,234") + len("1,234") == header.index("originals restored") + len("originals restored")


def make_console_for(out: io.StringIO) -> Console:
    return Console(file=out, highlight=False, width=80)  # a file: not a terminal, narrower than the table

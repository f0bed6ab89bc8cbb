"""The tutorial in specs/README.md runs as written (issue 14, item 6).

The spec is the ```yaml block after `<!-- tutorial-spec -->`, the commands the ```bash block after
`<!-- tutorial-commands -->`. The test writes the spec where the commands expect it, checks it, then runs every
command in a fresh directory against a fresh database (HERA_DSN set to it), except the lines marked
`# not in the test:` (starting the server and exporting its DSN: the test provides both; opening a browser),
and expects exit code 0 from each and a passed results.json at the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "specs" / "README.md"
SKIP = "# not in the test:"
# What a reader runs by hand but the test does itself (or cannot do): nothing else may carry the marker.
SKIPPABLE = ("hera-migrate db up ", "export HERA_DSN=", "xdg-open ", "open ")


def block_after(marker: str, fence: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"^{re.escape(marker)}\n```{fence}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert m is not None, f"specs/README.md has no ```{fence} block right after {marker}"
    return m.group(1)


def commands() -> tuple[list[list[str]], list[str]]:
    """(the commands the test runs, as argv after `hera-migrate`; the lines it leaves to the reader)."""
    run, skipped = [], []
    for line in block_after("<!-- tutorial-commands -->", "bash").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if SKIP in line:
            skipped.append(line)
            continue
        argv = shlex.split(line, comments=True)
        assert argv[0] == "hera-migrate", f"the tutorial runs only hera-migrate commands (or marks the line): {line}"
        run.append(argv[1:])
    return run, skipped


def hera(argv: list[str], cwd: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERA_DSN": dsn}
    return subprocess.run([sys.executable, "-m", "runner", *argv], capture_output=True, text=True, timeout=600,
                          check=False, env=env, cwd=cwd)


def test_the_marked_lines_are_only_the_server_and_the_browser() -> None:
    run, skipped = commands()
    assert all(line.lstrip().startswith(SKIPPABLE) for line in skipped), skipped
    up = next(line for line in skipped if "db up" in line)
    export = next(line for line in skipped if "HERA_DSN" in line)
    port = re.search(r"--port (\d+)", up)
    assert port is not None and f"port={port.group(1)} " in export  # what db up prints is what the reader exports
    verbs = [argv[0] for argv in run]
    assert verbs == ["fixtures", "check", "plan", "run"], verbs


def test_the_tutorial_runs_from_an_empty_directory_to_a_passed_report(db_dsn: str, tmp_path: Path) -> None:
    run, _ = commands()
    check = next(argv for argv in run if argv[0] == "check")
    spec = tmp_path / check[1]
    spec.write_text(block_after("<!-- tutorial-spec -->", "yaml"), encoding="utf-8")

    checked = hera(["check", str(spec)], tmp_path, db_dsn)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"{spec}: OK: ") and "warning" not in checked.stdout

    for argv in run:
        done = hera(argv, tmp_path, db_dsn)
        assert done.returncode == 0, f"hera-migrate {shlex.join(argv)}:\n{done.stdout}\n{done.stderr}"

    run_cmd = next(argv for argv in run if argv[0] == "run")
    run_id = run_cmd[run_cmd.index("--run-id") + 1]
    report = tmp_path / "reports" / run_id
    results = json.loads((report / "results.json").read_text(encoding="utf-8"))
    assert (results["status"], results["exit_code"], results["integrity_score"]) == ("passed", 0, 100.0)
    assert results["records"]["total"] > 0
    custom = [c for c in results["checks"] if c["kind"] == "custom"]
    assert custom and all(c["status"] == "passed" for c in custom)
    # the tutorial shows a percentage threshold: it was applied to the run's records
    assert any(c["thresholds"]["checked_records"] == results["records"]["total"] for c in custom)
    assert (report / "index.html").stat().st_size > 0


@pytest.mark.parametrize("marker", ["<!-- tutorial-spec -->", "<!-- tutorial-commands -->"])
def test_each_marker_is_used_once(marker: str) -> None:
    assert README.read_text(encoding="utf-8").count(marker) == 1

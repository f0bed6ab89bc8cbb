"""`hera-migrate check`: every broken spec is reported at its exact FILE:LINE:COL and JSON pointer, and exits 2.

The expected positions were derived by reading the YAML files; `test_expected_positions_point_at_the_token`
re-proves each one against the file (the text found at LINE:COL), so a moved token fails loudly here.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.errors import EXIT_OK, EXIT_USAGE, SpecError
from runner.spec import check_file, load_spec, run_check
from runner.spec.problems import Problem, pointer

ROOT = Path(__file__).resolve().parents[2]
BAD = Path(__file__).resolve().parent / "data" / "bad_specs"
GOOD = sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("specs/examples/*.yaml")])


class Expect(NamedTuple):
    line: int
    col: int
    pointer: str | None  # None: a YAML syntax error (no document yet, so no pointer)
    token: str  # the file's text at LINE:COL starts with this
    says: str  # a fragment of the message


EXPECTED: dict[str, list[Expect]] = {
    "yaml_syntax.yaml": [
        Expect(8, 9, None, ": HERA.SALON", "expected ',' or ']'"),
    ],
    "unterminated_quote.yaml": [
        Expect(8, 18, None, '"journals of the GL', "unterminated quoted string starting here"),
    ],
    "tab_indent.yaml": [
        Expect(5, 1, None, "\tfiscal_period_statuses", "indent YAML with spaces"),
    ],
    "wrong_types.yaml": [
        Expect(2, 10, "/version", "1.10", 'write it in quotes ("1.10")'),
        Expect(7, 12, "/mappings/0/lines", "DR", "expected a list"),
        Expect(9, 15, "/execution/batch_size", '"500"', "expected a whole number"),
        Expect(10, 12, "/execution/workers", "0", "at least 1"),
        Expect(12, 14, "/execution/throttle/enabled", "yes", "yes/no/on/off are text"),
        Expect(14, 27, "/scope/fiscal_period_statuses", "open", "expected a list"),
        Expect(16, 3, "/entities/posting_rules", "posting_rules:", "expected a mapping, got nothing"),
    ],
    "unknown_keys.yaml": [
        Expect(4, 1, "/mapping", "mapping:", "did you mean 'mappings'?"),
        Expect(7, 5, "/mappings/0", "from:", "missing required key 'tier'"),
        Expect(8, 5, "/mappings/0/tiers", "tiers:", "did you mean 'tier'?"),
        Expect(11, 5, "/validations/builtin/gl_balance", "gl_balance:", "did you mean 'gl_balanced'?"),
        Expect(12, 31, "/validations/builtin/trial_balance_unchanged/tolerence", "tolerence:",
               "did you mean 'tolerance'?"),
    ],
    "duplicate_keys.yaml": [
        Expect(8, 5, "/mappings/0/to", "to: HERA.ACCOUNTING.GL.TXN.OTHER",
               "duplicate key 'to' (first defined at line 6)"),
        Expect(11, 1, "/scope", "scope:", "duplicate key 'scope' (first defined at line 9)"),
    ],
    "missing_required.yaml": [
        Expect(1, 1, "/", "name:", "missing required key 'owner'"),
        Expect(4, 5, "/mappings/0", "from:", "missing required key 'tier'"),
        Expect(5, 5, "/mappings/1", "to:", "set exactly one of 'from', 'match', 'regex'; none is set"),
        Expect(9, 7, "/validations/custom/0", "id: no-sql", "missing required key 'sql'"),
    ],
    "invalid_smart_codes.yaml": [
        Expect(7, 9, "/mappings/0/to", "HERA.SD.SALES", "industry segment 'SD' has 2 characters"),
        Expect(11, 9, "/mappings/1/to", "HERA.ACCOUNTING.ORG.CONFIG.v2", "has 2 segments between"),
        Expect(14, 11, "/mappings/2/from", "HERA.HR.PAYROLL", "industry segment 'HR' has 2 characters"),
        Expect(22, 13, "/mappings/3/lines/1/to", "HERA.ACCOUNTING.GL.LINE.CREDIT.v2", "side: DR or side: CR"),
    ],
    "mapping_cycle.yaml": [
        Expect(8, 11, "/mappings/1/from", "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2", "but dna.source is v1"),
        Expect(8, 11, "/mappings/1/from", "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2", "mappings form a cycle"),
        Expect(9, 9, "/mappings/1/to", "HERA.FINANCE.GL.TXN.JOURNAL.v1", "dna.target is v2"),
    ],
    "mapping_chain.yaml": [
        Expect(9, 12, "/mappings/1/regex", "'HERA\\.ACCOUNTING", "mappings cannot chain"),
    ],
    "mapped_twice.yaml": [
        Expect(7, 11, "/mappings/1/from", "HERA.MFG.PROD.TXN.WO_ISSUE.V1", "already mapped by /mappings/0 (line 5)"),
        # a from beats the patterns that take its code, and HERA.MFG.PROD.TXN.*.v1 lies inside HERA.MFG.**.v1:
        # no problem; but these overlap with no narrowest one
        Expect(13, 12, "/mappings/4/match", "HERA.MFG.*.TXN.WO_RECEIPT.v1",
               "overlaps /mappings/2 (line 9): HERA.MFG.PROD.TXN.WO_RECEIPT.v1 would be mapped by both, and neither "
               "is narrower"),
        Expect(15, 12, "/mappings/5/match", "hera.mfg.prod.txn.*.V1", "overlaps /mappings/2 (line 9): both take the "
                                                                       "same codes"),
        Expect(15, 12, "/mappings/5/match", "hera.mfg.prod.txn.*.V1", "overlaps /mappings/4 (line 13)"),
    ],
    "non_select_sql.yaml": [
        Expect(11, 12, "/validations/custom/0/sql", "DELETE FROM", "must be a SELECT"),
        Expect(16, 9, "/validations/custom/1/sql", "UPDATE universal_transactions", "more than one statement"),
        Expect(23, 9, "/validations/custom/2/sql", "FOR UPDATE", "locking clause"),
        Expect(26, 27, "/validations/custom/3/sql", "hera_txn_emit_v1(", "a HERA RPC that writes"),
        Expect(29, 21, "/validations/custom/4/sql", "INTO scratch", "SELECT INTO creates a table"),
        Expect(34, 11, "/validations/custom/5/sql", "delete from", "DELETE is not allowed"),
        Expect(40, 74, "/validations/custom/6/sql", ":organization_id AND", "not available at level system"),
        Expect(40, 106, "/validations/custom/6/sql", ":org", "unknown parameter :org;"),
    ],
    "disordered_thresholds.yaml": [
        Expect(9, 33, "/execution/throttle/max_v1_p95_degradation_pct", "12",
               "allows 12% degradation, but a critical alert fires above 10%"),
        Expect(12, 35, "/validations/builtin/gl_balanced/warn_threshold", "5, error_threshold",
               "warn_threshold (5) must be lower than error_threshold (5)"),
        Expect(18, 28, "/alerts/warning/integrity_score_below", "90",
               "the warning bound (90) must be above the critical bound (95, line 15)"),
        Expect(19, 27, "/alerts/warning/error_rate_above_pct", "2",
               "the warning bound (2) must be below the critical bound (1, line 16)"),
    ],
    "semantic_misc.yaml": [
        Expect(7, 5, "/mappings/0/lines", "lines:", "only apply to tier reverse_repost"),
        Expect(11, 9, "/mappings/1/to", "HERA.ACCOUNTING.MFG.TXN.{2}.v2", "captures only 1"),
        Expect(14, 9, "/mappings/2/to", "HERA.ACCOUNTING.GL.TXN.REVERSAL.v2", "negative-total code"),
        Expect(19, 15, "/scope/organizations/exclude/0", "11111111-", "also in include"),
        Expect(20, 22, "/scope/date_range/from", "2025-02-30", "is not a real date"),
        Expect(21, 34, "/scope/fiscal_period_statuses/1", "closed]", "closed_period_untouched"),
        Expect(22, 34, "/scope/transaction_statuses/1", "voided]", "skip.voided is true"),
        Expect(23, 28, "/scope/skip/already_migrated", "false", "must stay true"),
        Expect(31, 9, "/entities/posting_rules/transforms/2", "rename:", "missing key 'to': 'rename' needs it"),
        Expect(32, 9, "/entities/posting_rules/transforms/2/value", "value:", "cannot be used together with 'rename'"),
        Expect(34, 42, "/execution/off_peak_window/end", '"22:00", timezone', "the window would be empty"),
        Expect(34, 61, "/execution/off_peak_window/timezone", "Mars/Olympus", "unknown time zone"),
    ],
}


def _key(p: Problem) -> tuple[int, int, str | None]:
    return (p.loc.line, p.loc.col, pointer(p.path) if p.path is not None else None)


@pytest.fixture(autouse=True)
def _no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` must never need a database: a HERA_DSN left in the shell must not leak into these tests."""
    monkeypatch.delenv("HERA_DSN", raising=False)


def test_every_bad_spec_has_expectations() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_positions_point_at_the_token(name: str) -> None:
    lines = (BAD / name).read_text(encoding="utf-8").splitlines()
    for e in EXPECTED[name]:
        assert lines[e.line - 1][e.col - 1:].startswith(e.token), (e, lines[e.line - 1])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec_problems_are_located_exactly(name: str) -> None:
    result = check_file(BAD / name)
    assert result.spec is None
    left = list(result.problems)
    for e in EXPECTED[name]:
        match = next((p for p in left if _key(p) == (e.line, e.col, e.pointer) and e.says in p.message), None)
        assert match is not None, f"{name}: no problem at {e.line}:{e.col} {e.pointer} saying {e.says!r}; got " \
                                  f"{[p.render() for p in left]}"
        left.remove(match)
    assert left == [], f"{name}: unexpected problems {[p.render() for p in left]}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_prints_file_line_col_pointer_and_exits_2(name: str) -> None:
    path = BAD / name
    code, text = run_check([path])
    assert code == EXIT_USAGE
    heads = [line for line in text.splitlines() if line.startswith(f"{path}:")]
    for e in EXPECTED[name]:
        prefix = f"{path}:{e.line}:{e.col}: " + (f"{e.pointer}: " if e.pointer is not None else "")
        assert any(h.startswith(prefix) and e.says in h for h in heads), (prefix, heads)
    n = len(EXPECTED[name])
    assert text.splitlines()[-1] == f"{path}: {n} problem{'s' if n != 1 else ''}"


def test_all_problems_of_all_stages_come_in_one_pass(tmp_path: Path) -> None:
    # A duplicate key (YAML stage), a wrong type (schema stage) and an overlap (semantic stage) in other sections.
    spec = tmp_path / "many.yaml"
    spec.write_text("""name: many
version: "1"
owner: qa
owner: qa-again
mappings:
  - match: HERA.FINANCE.*.TXN.JOURNAL.v1
    tier: reverse_repost
  - match: HERA.FINANCE.GL.TXN.*.v1
    tier: reverse_repost
execution:
  workers: many
""", encoding="utf-8")
    result = check_file(spec)
    assert sorted(_key(p) for p in result.problems) == [
        (4, 1, "/owner"), (8, 12, "/mappings/1/match"), (11, 12, "/execution/workers")]
    code, text = run_check([spec])
    assert code == EXIT_USAGE
    assert text.splitlines()[-1] == f"{spec}: 3 problems"


def test_yaml_syntax_error_shows_numbered_lines_and_a_caret_under_the_column() -> None:
    path = BAD / "yaml_syntax.yaml"
    (problem,) = check_file(path).problems
    context = problem.context.splitlines()
    source = path.read_text(encoding="utf-8").splitlines()
    numbered = [(int(m.group(2)), m.group(3)) for line in context
                if (m := re.match(r"  ([> ]) +(\d+) \| (.*)$", line))]
    assert [n for n, _ in numbered] == list(range(problem.loc.line - 2, problem.loc.line + 2))
    assert all(text == source[n - 1] for n, text in numbered)
    marked = [line for line in context if line.startswith("  >")]
    assert marked and marked[0].split(" | ", 1)[0].strip() == f"> {problem.loc.line}"
    caret_line = context[context.index(marked[0]) + 1]
    bar = caret_line.index("| ") + 2
    assert caret_line[bar:] == " " * (problem.loc.col - 1) + "^"
    assert problem.render().startswith(f"{path}:8:9: YAML syntax error: ")
    assert problem.context in run_check([path])[1]


def test_good_and_bad_files_together_report_both_and_exit_2() -> None:
    good, bad = ROOT / "specs" / "finance-dna-v2.yaml", BAD / "duplicate_keys.yaml"
    code, text = run_check([good, bad])
    lines = text.splitlines()
    assert code == EXIT_USAGE
    assert lines[0].startswith(f"{good}: OK: finance-dna-v2 ")
    assert sum(1 for line in lines if line.startswith(f"{bad}:8:5: /mappings/0/to: ")) == 1
    assert f"{bad}: 2 problems" in lines
    assert lines[-1] == "2 files checked: 1 OK, 1 with problems"


def test_a_file_named_twice_is_checked_once() -> None:
    bad = BAD / "tab_indent.yaml"
    code, text = run_check([bad, bad])
    assert code == EXIT_USAGE
    assert text.count(f"{bad}:5:1: ") == 1
    assert "files checked" not in text


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shipped_specs_pass(path: Path) -> None:
    code, text = run_check([path])
    assert (code, text.startswith(f"{path}: OK: ")) == (EXIT_OK, True), text
    assert load_spec(path).path == path


def test_load_spec_raises_spec_error_carrying_every_problem() -> None:
    path = BAD / "semantic_misc.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.exit_code == EXIT_USAGE
    assert len(info.value.problems) == len(EXPECTED["semantic_misc.yaml"])
    assert all(p.startswith(f"{path}:") for p in info.value.problems)
    assert info.value.problems == check_file(path).rendered()


def _odd_files(tmp: Path) -> Iterator[tuple[str, Path, str, str]]:
    """(id, path, expected start of the first line after FILE:, expected message fragment)."""
    yield "missing", tmp / "nope.yaml", "1:1: ", "cannot read the file: No such file or directory"
    (tmp / "adir.yaml").mkdir()
    yield "directory", tmp / "adir.yaml", "1:1: ", "cannot read the file"
    (tmp / "empty.yaml").write_bytes(b"")
    yield "empty", tmp / "empty.yaml", "1:1: /: ", "the file is empty"
    (tmp / "comments.yaml").write_text("# nothing but a comment\n---\n", encoding="utf-8")
    yield "only comments", tmp / "comments.yaml", "1:1: /: ", "the file is empty"
    (tmp / "list.yaml").write_text("- name: x\n- version: y\n", encoding="utf-8")
    yield "top-level list", tmp / "list.yaml", "1:1: /: ", "expected a mapping, got a list"
    (tmp / "text.yaml").write_text("just some words\n", encoding="utf-8")
    yield "top-level text", tmp / "text.yaml", "1:1: /: ", "expected a mapping, got the text 'just some words'"
    (tmp / "latin1.yaml").write_bytes("name: x\nowner: Jos\xe9\n".encode("latin-1"))
    yield "not UTF-8", tmp / "latin1.yaml", "2:11: ", "the file is not UTF-8 text (byte 0xe9)"
    (tmp / "two.yaml").write_text("name: a\n---\nname: b\n", encoding="utf-8")
    yield "two documents", tmp / "two.yaml", "2:1: ", "a spec is one YAML document"


def test_unusual_files_give_one_clean_message_and_exit_2(tmp_path: Path) -> None:
    for what, path, where, says in _odd_files(tmp_path):
        code, text = run_check([path])
        first = text.splitlines()[0]
        assert code == EXIT_USAGE, what
        assert first.startswith(f"{path}:{where}") and says in first, (what, text)
        assert text.splitlines()[-1] == f"{path}: 1 problem", (what, text)


def test_cli_check_exits_2_and_prints_problems_on_stderr() -> None:
    """The real console entry in a subprocess: exit code and streams as a shell sees them."""
    bad = BAD / "wrong_types.yaml"
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    proc = subprocess.run([sys.executable, "-m", "runner", "check", str(bad)], capture_output=True, text=True,
                          timeout=120, check=False, env=env, cwd=ROOT)
    assert proc.returncode == EXIT_USAGE
    assert proc.stdout == ""
    assert f"{bad}:2:10: /version: expected text" in proc.stderr
    assert proc.stderr.rstrip().endswith(f"{bad}: 7 problems")
    assert "Traceback" not in proc.stderr


def test_cli_check_of_good_specs_exits_0_on_stdout() -> None:
    result = CliRunner().invoke(cli, ["check", *map(str, GOOD)], standalone_mode=False)
    assert result.exception is None, result.output
    assert result.return_value == EXIT_OK
    assert result.stdout.splitlines()[-1] == f"{len(GOOD)} files checked: {len(GOOD)} OK, 0 with problems"
    assert result.stderr == ""


def test_cli_check_mixed_files_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = CliRunner().invoke(cli, ["check", str(GOOD[0]), str(missing)], standalone_mode=False)
    assert result.return_value == EXIT_USAGE
    assert f"{GOOD[0]}: OK: " in result.stderr
    assert f"{missing}:1:1: cannot read the file" in result.stderr
    assert result.stderr.rstrip().endswith("2 files checked: 1 OK, 1 with problems")


def test_hera_dsn_in_the_environment_does_not_make_check_touch_a_database() -> None:
    # Nothing listens on port 1: were the DSN used, check would fail instead of passing.
    env = {"HERA_DSN": "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=1"}
    result = CliRunner(env=env).invoke(cli, ["check", str(GOOD[0])], standalone_mode=False)
    assert result.exception is None, result.output
    assert result.return_value == EXIT_OK


# --- the reference in specs/README.md stays true ----------------------------------------------------------------

README = ROOT / "specs" / "README.md"
_SECTIONS = ("mappings", "scope", "entities", "execution", "validations", "alerts")
_IDENTITY = 'name: readme-example\nversion: "1"\nowner: qa\n'
_ONE_MAPPING = "mappings:\n  - {from: HERA.FINANCE.GL.TXN.JOURNAL.v1, tier: reverse_repost}\n"


def _readme_blocks() -> list[tuple[str, str]]:
    """(the heading above it, text) of every ```yaml block in the README."""
    blocks: list[tuple[str, str]] = []
    heading, fence, lines = "", None, list[str]()
    for line in README.read_text(encoding="utf-8").splitlines():
        if fence is None and line.startswith("#"):
            heading = line.lstrip("# ").strip()
        elif fence is None and line.startswith("```"):
            fence, lines = line[3:], []
        elif fence is not None and line.startswith("```"):
            if fence == "yaml":
                blocks.append((heading, "\n".join(lines) + "\n"))
            fence = None
        else:
            lines.append(line)
    return blocks


def test_readme_examples_pass_check(tmp_path: Path) -> None:
    """The complete spec passes as written; each top-level section example passes inside a minimal spec."""
    checked = []
    for i, (heading, block) in enumerate(_readme_blocks()):
        first = block.split(":", 1)[0]
        if heading == "A complete small spec":
            text = block
        elif first in _SECTIONS:
            text = _IDENTITY + block + ("" if first == "mappings" else _ONE_MAPPING)
        else:
            continue  # a fragment inside a section, or the file outline
        path = tmp_path / f"readme{i}.yaml"
        path.write_text(text, encoding="utf-8")
        code, out = run_check([path])
        assert code == EXIT_OK, f"README example under '{heading}':\n{out}"
        checked.append(heading)
    assert "A complete small spec" in checked and len(checked) >= len(_SECTIONS) + 1


# --- YAML errors point at the broken token (issue 14, item 4) -------------------------------------------------------

QUOTE_HEAD = 'name: quotes\nversion: "1"\nowner: qa\nmappings:\n  - from: HERA.FINANCE.GL.TXN.JOURNAL.v1\n'


@pytest.mark.parametrize(("tail", "where", "says"), [
    # never closed at all: the stream ends inside the string
    ('    tier: "reverse_repost\n    description: x\n', (6, 11), "runs to the end of the file"),
    ("    tier: 'reverse_repost\n    description: x\n", (6, 11), "runs to the end of the file"),
    # closed by a later quote: YAML fails far below, after swallowing the lines in between
    ("    description: 'one\n    tier: reverse_repost\n  - from: HERA.SALON.POS.TXN.SALE.v1\n"
     "    tier: reverse_repost\n    description: 'two'\n", (6, 18), "runs on to line 10"),
])
def test_an_unterminated_quote_is_reported_where_it_opens(tmp_path: Path, tail: str, where: tuple[int, int],
                                                          says: str) -> None:
    path = tmp_path / "quote.yaml"
    path.write_text(QUOTE_HEAD + tail, encoding="utf-8")
    (problem,) = check_file(path).problems
    assert (problem.loc.line, problem.loc.col) == where, problem.render()
    assert "unterminated quoted string starting here" in problem.message and says in problem.message
    caret = [line for line in problem.context.splitlines() if line.strip().startswith("|")]
    assert caret and caret[0].endswith(" " * (where[1] - 1) + "^")


def test_a_multi_line_quoted_string_that_is_closed_is_not_blamed(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(QUOTE_HEAD + '    tier: reverse_repost\n    description: "a long text\n      on two lines"\n'
                    "  - from: [\n", encoding="utf-8")
    (problem,) = check_file(path).problems
    assert "unterminated" not in problem.message and problem.loc.line > 7


# --- warnings: check passes, but says what it normalised (issue 14, item 5) ---------------------------------------

LOWER = """name: lower-case
version: "1"
owner: qa
mappings:
  - from: HERA.FINANCE.GL.TXN.JOURNAL.v1
    to: HERA.ACCOUNTING.GL.txn.JOURNAL.v2
    tier: reverse_repost
    lines:
      - {side: DR, to: HERA.ACCOUNTING.GL.LINE.Debit.V2}
"""


def test_a_lower_case_target_segment_is_a_warning_naming_the_normalised_code(tmp_path: Path) -> None:
    path = tmp_path / "lower.yaml"
    path.write_text(LOWER, encoding="utf-8")
    result = check_file(path)
    assert result.ok and result.spec is not None
    assert [(w.loc.line, w.loc.col, pointer(w.path) if w.path else None, w.severity) for w in result.warnings] == [
        (6, 9, "/mappings/0/to", "warning"), (9, 24, "/mappings/0/lines/0/to", "warning")]
    code, text = run_check([path])
    assert code == EXIT_OK, text
    lines = text.splitlines()
    assert lines[0].startswith(f"{path}: OK: lower-case 1")
    assert lines[1] == (f"{path}:6:9: warning: /mappings/0/to: HERA.ACCOUNTING.GL.txn.JOURNAL.v2 is written as "
                        "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2 (HERA stores smart codes upper-case with a lower-case "
                        "version); write it that way")
    assert "HERA.ACCOUNTING.GL.LINE.DEBIT.v2" in lines[2]
    assert lines[-1] == f"{path}: 2 warnings"
    assert result.spec.resolve("HERA.FINANCE.GL.TXN.JOURNAL.v1") is not None


def test_load_spec_does_not_hide_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """plan, run and validate load the spec with load_spec: its warnings reach the log (stderr), not just `check`."""
    path = tmp_path / "lower.yaml"
    path.write_text(LOWER, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="runner.spec.api"):
        load_spec(path)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[0].startswith(f"{path}:6:9: warning: /mappings/0/to: ")


def test_cli_check_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "lower.yaml"
    path.write_text(LOWER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    proc = subprocess.run([sys.executable, "-m", "runner", "check", str(path)], capture_output=True, text=True,
                          timeout=120, check=False, env=env, cwd=ROOT)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert f"{path}:6:9: warning: /mappings/0/to: " in proc.stdout + proc.stderr


def test_warnings_are_listed_with_the_problems_of_a_failing_file(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text(LOWER + "execution: {workers: 0}\n", encoding="utf-8")
    code, text = run_check([path])
    assert code == EXIT_USAGE
    assert f"{path}:6:9: warning: /mappings/0/to: " in text and f"{path}:10:22: /execution/workers: " in text
    assert text.splitlines()[-1] == f"{path}: 1 problem, 2 warnings"


# --- every message check can give is explained in specs/README.md (issue 14, item 6) ------------------------------

_MESSAGE_SOURCES = ("semantic.py", "semantic_codes.py", "schema.py")


def _literal_pieces(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.BinOp | ast.IfExp):
        return [p for child in ast.iter_child_nodes(node) for p in _literal_pieces(child)]
    return []


def _messages(module: str) -> Iterator[tuple[int, list[str]]]:
    """(line, literal pieces) of each message `module` can emit: report.add/warn(path, MESSAGE), the overlap
    explanations (`why = ...`), and the schema's yielded (path, at_key, MESSAGE) triples."""
    tree = ast.parse((ROOT / "runner" / "spec" / module).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("add", "warn") and len(node.args) >= 2:
            yield node.lineno, _literal_pieces(node.args[1])
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "why" for t in node.targets):
            yield node.lineno, _literal_pieces(node.value)
        elif isinstance(node, ast.Yield) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 3:
            yield node.lineno, _literal_pieces(node.value.elts[2])


def _key_phrase(pieces: list[str]) -> str | None:
    """The literal run of a message with the most words, cut to its first four: what a reader finds in the
    table. None for a message that is all values (nothing literal to look for)."""
    texts = [" ".join(p.split()).strip(" ;:,.()'\"") for p in pieces]
    best = max(texts, key=lambda t: sum(1 for w in t.split() if re.fullmatch(r"[A-Za-z_']{2,}[,;:]?", w)),
               default="")
    words = best.split()
    return " ".join(words[:4]) if len(words) >= 3 else None


@pytest.mark.parametrize("module", _MESSAGE_SOURCES)
def test_every_message_has_a_row_in_the_readme_table(module: str) -> None:
    text = README.read_text(encoding="utf-8")
    table = " ".join(text[text.index("## Every message and its fix"):text.index("## A complete small spec")].split())
    missing = [(line, phrase) for line, pieces in _messages(module)
               if (phrase := _key_phrase(pieces)) is not None and phrase not in table]
    assert missing == [], f"add these {module} messages to 'Every message and its fix' in specs/README.md"

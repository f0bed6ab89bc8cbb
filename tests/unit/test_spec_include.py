"""Check libraries (issue 14, item 3): `validations.include` pulls custom checks (and built-in settings) from other
files; their problems point into those files; the spec's sha256 covers them; `!include` says what to use."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runner.errors import EXIT_OK, EXIT_USAGE
from runner.spec import check_file, load_spec, run_check
from runner.spec.problems import pointer

SPEC = """name: with-library
version: "1"
owner: qa
mappings:
  - {from: HERA.FINANCE.GL.TXN.JOURNAL.v1, tier: reverse_repost}
validations:
  include: [checks/common.yaml]
  custom:
    - id: own-check
      description: the spec's own check
      sql: SELECT organization_id, id AS record_id, 'x' AS message FROM universal_transactions
"""

LIBRARY = """# shared by every finance spec
description: checks every finance spec runs
builtin:
  gl_balanced: {tolerance: 0.01, warn_threshold: 1, error_threshold: "1%"}
custom:
  - id: repost-keeps-currency
    description: A repost keeps its original's currency.
    severity: warning
    sql: |
      SELECT r.organization_id, r.id AS record_id, 'currency differs' AS message
      FROM universal_transactions r
      WHERE r.organization_id = :organization_id AND r.metadata -> 'migration' ->> 'run_id' = :run_id
"""


def layout(tmp_path: Path, spec: str = SPEC, library: str = LIBRARY) -> Path:
    (tmp_path / "checks").mkdir(exist_ok=True)
    (tmp_path / "checks" / "common.yaml").write_text(library, encoding="utf-8")
    path = tmp_path / "spec.yaml"
    path.write_text(spec, encoding="utf-8")
    return path


def test_included_checks_join_the_spec(tmp_path: Path) -> None:
    path = layout(tmp_path)
    code, text = run_check([path])
    assert code == EXIT_OK, text
    spec = load_spec(path)
    assert [c.id for c in spec.validations.checks() if c.kind == "custom"] == ["own-check", "repost-keeps-currency"]
    gl = spec.validations.builtin.gl_balanced
    assert (str(gl.tolerance), str(gl.warn_threshold), str(gl.error_threshold)) == ("0.01", "1", "1%")
    assert spec.validations.include == ("checks/common.yaml",)
    assert "2 custom" in text


def test_the_sha256_covers_the_included_files(tmp_path: Path) -> None:
    path = layout(tmp_path)
    before = load_spec(path).sha256
    library = tmp_path / "checks" / "common.yaml"
    library.write_text(LIBRARY.replace("currency differs", "currency changed"), encoding="utf-8")
    after = load_spec(path).sha256
    assert before != after  # a resumed run refuses a changed library exactly as a changed spec
    spec_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    lib_digest = hashlib.sha256(library.read_bytes()).hexdigest()
    assert after == hashlib.sha256(f"{spec_digest}\ncheck library checks/common.yaml {lib_digest}\n".encode()
                                   ).hexdigest()


def test_a_spec_without_includes_keeps_the_hash_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(SPEC.replace("  include: [checks/common.yaml]\n", ""), encoding="utf-8")
    assert load_spec(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_problems_in_an_included_file_point_into_it(tmp_path: Path) -> None:
    path = layout(tmp_path, library=LIBRARY.replace("SELECT r.organization_id", "DELETE FROM x WHERE r.organization_id")
                  .replace("tolerance: 0.01", "tolerance: -1"))
    result = check_file(path)
    library = tmp_path / "checks" / "common.yaml"
    got = [(p.file, p.loc.line, p.loc.col, pointer(p.path) if p.path is not None else None)
           for p in result.problems]
    assert got == [(str(library), 4, 28, "/builtin/gl_balanced/tolerance"), (str(library), 10, 7, "/custom/0/sql")], \
        [p.render() for p in result.problems]
    code, text = run_check([path])
    assert code == EXIT_USAGE
    assert f"{library}:4:28: /builtin/gl_balanced/tolerance: must be at least 0" in text
    assert f"{library}:10:7: /custom/0/sql: " in text
    assert text.splitlines()[-1] == f"{path}: 2 problems"


@pytest.mark.parametrize(("spec_change", "library", "where", "says"), [
    (("checks/common.yaml", "checks/missing.yaml"), LIBRARY, ("spec", 7, 13, "/validations/include/0"),
     "cannot read the included file checks/missing.yaml: No such file or directory"),
    (("[checks/common.yaml]", "[checks/common.yaml, checks/../checks/common.yaml]"), LIBRARY,
     ("spec", 7, 33, "/validations/include/1"), "is already included by /validations/include/0"),
    # the same id in the spec and in the library
    (("own-check", "repost-keeps-currency"), LIBRARY, ("lib", 6, 9, "/custom/0/id"),
     "id 'repost-keeps-currency' is already used by /validations/custom/0 ({spec}, line 9)"),
    # a built-in configured in the spec and in the library
    (("  custom:\n", "  builtin: {gl_balanced: {tolerance: 0.1}}\n  custom:\n"), LIBRARY,
     ("lib", 4, 3, "/builtin/gl_balanced"), "gl_balanced is already configured by /validations/builtin/gl_balanced "
                                            "({spec}, line 8)"),
    # libraries do not include further libraries
    (("", ""), LIBRARY + "include: [other.yaml]\n", ("lib", 13, 1, "/include"), "unknown key 'include'"),
    # a list of checks instead of the library mapping
    (("", ""), "- id: x\n", ("lib", 1, 1, "/"), "expected a mapping, got a list"),
])
def test_include_problems(tmp_path: Path, spec_change: tuple[str, str], library: str,
                          where: tuple[str, int, int, str], says: str) -> None:
    path = layout(tmp_path, SPEC.replace(*spec_change), library)
    problems = check_file(path).problems
    file = str(path) if where[0] == "spec" else str(tmp_path / "checks" / "common.yaml")
    found = [(p.file, p.loc.line, p.loc.col, pointer(p.path) if p.path is not None else None, p.message)
             for p in problems]
    says = says.format(spec=path)
    assert any(f[:4] == (file, *where[1:]) and says in f[4] for f in found), found


def test_a_yaml_error_in_a_library_is_shown_in_the_library(tmp_path: Path) -> None:
    path = layout(tmp_path, library="custom: [\n")
    (problem,) = check_file(path).problems
    assert problem.file == str(tmp_path / "checks" / "common.yaml") and "YAML syntax error" in problem.message


def test_the_include_tag_says_to_use_validations_include(tmp_path: Path) -> None:
    path = layout(tmp_path, SPEC.replace("  include: [checks/common.yaml]\n", "")
                  .replace("  custom:\n", "  custom: !include checks/common.yaml\n", 1).split("    - id")[0])
    problems = check_file(path).problems
    assert any(p.loc.line == 7 and p.loc.col == 11 and "!include is not supported" in p.message
               and "validations.include" in p.message for p in problems), [p.render() for p in problems]

"""Mapping precedence (issue 14, item 1): when several mappings take a v1 code, the narrowest one wins.

The rule (specs/README.md, "Which mapping takes a code"): a `from` beats every pattern or regex that also takes its
code; a `match` pattern beats another pattern that contains it (every code it takes, the other takes too); two
selectors that overlap with neither inside the other are an error, and so are two equal ones. `check` (the
semantic checker) and the run-time resolution (Spec.resolve, used by plan/run/validate through
compile.params.Mappings.resolve) use the same function, model.select.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from runner.compile.params import Mappings
from runner.errors import EXIT_OK, EXIT_USAGE, SpecError
from runner.spec import check_file, load_spec, run_check
from runner.spec.codes import glob_contains, parse_glob
from runner.spec.problems import pointer

HEAD = 'name: precedence\nversion: "1"\nowner: qa\nmappings:\n'


def write(tmp_path: Path, body: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD + body, encoding="utf-8")
    return path


# A broad tier-3 default, a narrower tier-3 family, and specific tier-2 codes inside both: written broad first,
# so a first-match rule would give every code to the default.
LAYERED = """\
  - id: everything-else
    match: HERA.**.v1
    tier: reporting_alias
  - id: mfg
    match: HERA.MFG.**.v1
    to: HERA.ACCOUNTING.MFG.{1}.v2
    tier: reporting_alias
  - id: mfg-prod
    match: HERA.MFG.PROD.TXN.*.v1
    to: HERA.ACCOUNTING.PROD.TXN.{1}.v2
    tier: reporting_alias
  - id: wo-issue
    from: HERA.MFG.PROD.TXN.WO_ISSUE.v1
    to: HERA.ACCOUNTING.PROD.TXN.WO_ISSUE_POSTED.v2
    tier: reverse_repost
  - id: journal
    from: HERA.FINANCE.GL.TXN.JOURNAL.v1
    to: HERA.ACCOUNTING.GL.TXN.JOURNAL.v2
    tier: reverse_repost
"""

WINNERS = {
    "HERA.MFG.PROD.TXN.WO_ISSUE.v1": ("wo-issue", "HERA.ACCOUNTING.PROD.TXN.WO_ISSUE_POSTED.v2", "reverse_repost"),
    "hera.mfg.prod.txn.wo_issue.V1": ("wo-issue", "HERA.ACCOUNTING.PROD.TXN.WO_ISSUE_POSTED.v2", "reverse_repost"),
    "HERA.MFG.PROD.TXN.WO_RECEIPT.v1": ("mfg-prod", "HERA.ACCOUNTING.PROD.TXN.WO_RECEIPT.v2", "reporting_alias"),
    "HERA.MFG.PLANT.TXN.SCRAP.v1": ("mfg", "HERA.ACCOUNTING.MFG.PLANT.TXN.SCRAP.v2", "reporting_alias"),
    "HERA.FINANCE.GL.TXN.JOURNAL.v1": ("journal", "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2", "reverse_repost"),
    "HERA.SALON.POS.TXN.SALE.v1": ("everything-else", "HERA.SALON.POS.TXN.SALE.v2", "reporting_alias"),
}


def test_a_specific_from_and_narrower_patterns_inside_a_broad_default_pass_check(tmp_path: Path) -> None:
    code, text = run_check([write(tmp_path, LAYERED)])
    assert code == EXIT_OK, text


@pytest.mark.parametrize("order", ["as written", "reversed"])
def test_plan_style_resolution_picks_the_narrowest_mapping_whatever_the_order(tmp_path: Path, order: str) -> None:
    items = LAYERED.split("  - ")[1:]
    body = "".join("  - " + item for item in (items if order == "as written" else items[::-1]))
    spec = load_spec(write(tmp_path, body))
    # What plan, run and validate bind: compile.params.Mappings.resolve over the codes found in the database.
    resolved = Mappings.resolve(spec, [*WINNERS, "HERA.FINANCE.GL.TXN.JOURNAL.v2"])
    got = {v1: (label, v2, tier) for v1, v2, tier, label in
           zip(resolved.v1_codes, resolved.v2_codes, resolved.tiers, resolved.labels, strict=True)}
    expected = {code.upper()[:-3] + code[-3:].lower(): won for code, won in WINNERS.items()}
    assert got == expected  # .v1 and .V1 are one code; a v2 code is taken by nothing
    for code, (label, target, _) in WINNERS.items():
        res = spec.resolve(code)
        assert res is not None and (res.mapping.label, res.target) == (label, target)
        assert spec.mappings[res.mapping_index].label == label


def test_entity_remaps_follow_the_same_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "  - {from: HERA.FINANCE.GL.TXN.JOURNAL.v1, tier: reverse_repost}\n" """\
entities:
  posting_rules:
    smart_codes:
      - match: HERA.SALON.ENTITY.FINANCIAL_POLICY.*.v1
        to: HERA.ACCOUNTING.POLICY.RULE.{1}.v2
      - from: HERA.SALON.ENTITY.FINANCIAL_POLICY.VAT_POSTING.v1
        to: HERA.ACCOUNTING.POLICY.VAT.RULE.v2
""")
    spec = load_spec(path)
    rules = spec.entities.posting_rules
    assert rules is not None
    assert rules.remap("HERA.SALON.ENTITY.FINANCIAL_POLICY.VAT_POSTING.v1", "v2") == \
        "HERA.ACCOUNTING.POLICY.VAT.RULE.v2"
    assert rules.remap("HERA.SALON.ENTITY.FINANCIAL_POLICY.DISCOUNT.v1", "v2") == \
        "HERA.ACCOUNTING.POLICY.RULE.DISCOUNT.v2"


AMBIGUOUS = {
    # neither pattern contains the other: HERA.MFG.PROD.TXN.WO_ISSUE.v1 is taken by both
    "partial overlap": ("""\
  - match: HERA.MFG.*.TXN.WO_ISSUE.v1
    tier: reporting_alias
  - match: HERA.MFG.PROD.**.v1
    tier: reporting_alias
""", 7, 12, "/mappings/1/match", "neither is narrower than the other"),
    # the same set of codes, written twice
    "equal patterns": ("""\
  - match: HERA.MFG.PROD.TXN.*.v1
    tier: reporting_alias
  - match: hera.mfg.prod.txn.*.V1
    tier: reverse_repost
""", 7, 12, "/mappings/1/match", "take the same codes"),
    # a regex has no specificity: it only ever loses to a `from`
    "regex and pattern": ("""\
  - match: HERA.SALON.POS.TXN.*.v1
    tier: reporting_alias
  - regex: 'HERA\\.SALON\\.POS\\.TXN\\.[A-Z_]+\\.V1'
    tier: reverse_repost
""", 7, 12, "/mappings/1/regex", "a regex is never narrower"),
}


@pytest.mark.parametrize("name", list(AMBIGUOUS))
def test_genuinely_ambiguous_overlaps_stay_errors_with_their_position(tmp_path: Path, name: str) -> None:
    body, line, col, ptr, says = AMBIGUOUS[name]
    path = write(tmp_path, body)
    problems = check_file(path).problems
    assert [(p.loc.line, p.loc.col, pointer(p.path) if p.path else None) for p in problems] == [(line, col, ptr)], \
        [p.render() for p in problems]
    assert says in problems[0].message and "overlaps /mappings/0 (line 5)" in problems[0].message
    code, text = run_check([path])
    assert code == EXIT_USAGE and text.startswith(f"{path}:{line}:{col}: {ptr}: overlaps")


def test_a_from_beats_a_regex_that_takes_its_code(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """\
  - regex: 'HERA\\.SALON\\.POS\\.TXN\\.(SALE|VOID)\\.V1'
    to: HERA.SALON.POS.TXN.{1}.v2
    tier: reporting_alias
  - from: HERA.SALON.POS.TXN.SALE.v1
    to: HERA.ACCOUNTING.POS.TXN.SALE.v2
    tier: reverse_repost
"""))
    sale, void = spec.resolve("HERA.SALON.POS.TXN.SALE.v1"), spec.resolve("HERA.SALON.POS.TXN.VOID.v1")
    assert sale is not None and (sale.mapping_index, sale.target) == (1, "HERA.ACCOUNTING.POS.TXN.SALE.v2")
    assert void is not None and (void.mapping_index, void.target) == (0, "HERA.SALON.POS.TXN.VOID.v2")


def test_an_ambiguity_only_real_codes_reveal_stops_the_run_instead_of_guessing(tmp_path: Path) -> None:
    """Two regexes: `check` cannot know without a database that they overlap; resolution refuses the code."""
    spec = load_spec(write(tmp_path, """\
  - regex: 'HERA\\.SALON\\.POS\\.TXN\\.(SALE|VOID)\\.V1'
    tier: reporting_alias
  - regex: 'HERA\\.SALON\\.POS\\.TXN\\.S[A-Z]+\\.V1'
    tier: reporting_alias
"""))
    assert spec.resolve("HERA.SALON.POS.TXN.VOID.v1") is not None
    with pytest.raises(SpecError, match=re.escape("HERA.SALON.POS.TXN.SALE.v1 is taken by /mappings/0 and "
                                                  "/mappings/1")):
        Mappings.resolve(spec, ["HERA.SALON.POS.TXN.SALE.v1"])


# --- glob containment, proven against brute force ---------------------------------------------------------------

_ALPHABET = ("A", "B")
_ELEMENTS = ("A", "B", "*", "**")


def _codes(max_len: int) -> list[str]:
    """Every code HERA.<1..max_len segments of A, B or C>.v1 (C stands for any segment no pattern names)."""
    out = []
    for n in range(1, max_len + 1):
        out += ["HERA." + ".".join(p) + ".v1" for p in itertools.product((*_ALPHABET, "C"), repeat=n)]
    return out


def _patterns(max_len: int) -> list[str]:
    return ["HERA." + ".".join(p) + ".v1" for n in range(1, max_len + 1)
            for p in itertools.product(_ELEMENTS, repeat=n)]


def test_glob_containment_agrees_with_brute_force() -> None:
    """Patterns of up to 3 middle elements over {A, B, *, **}, every code of up to 7 middle segments: a pattern
    with k elements matches codes of k or more segments, and 7 covers every way 3 elements can differ."""
    codes = _codes(7)
    patterns = _patterns(3)
    taken = {}
    for text in patterns:
        glob, _ = parse_glob(text)
        assert glob is not None
        taken[text] = (glob, frozenset(c for c in codes if glob.matches(c)))
    for (a, (ga, sa)), (b, (gb, sb)) in itertools.product(taken.items(), repeat=2):
        assert glob_contains(gb, ga) == (sa <= sb), (a, b)

"""The compiler: spec values reach SQL only as bound parameters; identifiers only through the quoting filter;
every template is reachable from `compile`; undefined template variables fail loudly."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import jinja2
import pytest

from runner import review
from runner.compile import templates as compiler
from runner.compile.custom import custom_statement, custom_text
from runner.spec import Spec, load_spec
from runner.spec.model import CheckDef, DateRange, Mapping, Organizations, PostingRules
from runner.validate.builtin import REVIEW_RUN_ID

ROOT = Path(__file__).resolve().parents[2]
PHASE7 = ROOT / "specs" / "finance-dna-v2.yaml"
HOSTILE = ["x'; DROP TABLE universal_transactions; --", 'a"b', "$$ SELECT 1 $$", "/* c */ --", "50% off; ;",
           "\\'\\x00", "ü'ä\"ß"]
SENTINEL_ORG = "5e471e15-0000-4000-8000-00000000beef"


def sentinel_spec(tag: str = "SENTINEL", hostile: tuple[str, ...] = tuple(HOSTILE),
                  org: str = SENTINEL_ORG, year: int = 1999) -> Spec:
    """The Phase 7 spec with a recognisable (and hostile) value in every field the SQL consumes."""
    base = load_spec(PHASE7)
    mappings = tuple(dataclasses.replace(m, id=f"{tag}-{i}-{hostile[i % len(hostile)]}")
                     for i, m in enumerate(base.mappings))
    mappings += (Mapping(from_=f"HERA.{tag}IND.POS.TXN.SALE.v1", to=f"HERA.{tag}IND.POS.TXN.SALE.v2",
                         tier="reverse_repost", id=f"{tag.lower()}-exact"),)
    scope = dataclasses.replace(
        base.scope, organizations=Organizations(include=(org,)),
        date_range=DateRange(from_=date(year, 12, 31), to=date(year + 99, 7, 6)),
        transaction_statuses=("posted", f"{tag.lower()}_status", *hostile))
    entities = dataclasses.replace(base.entities,
                                   posting_rules=PostingRules(entity_types=(f"{tag}_TYPE", *hostile)))
    return dataclasses.replace(base, mappings=mappings, scope=scope, entities=entities)


def sentinels() -> list[str]:
    return [SENTINEL_ORG, "SENTINEL-0", "sentinel-exact", "HERA.SENTINELIND.POS.TXN.SALE", "sentinel_status",
            "sentinel_type", "1999-12-31", "2098-07-07", *HOSTILE[:1]]


def test_no_spec_value_reaches_sql_text_and_every_one_is_bound() -> None:
    statements = review.compile_spec(sentinel_spec())
    assert statements
    bound = json.dumps([s.params for s in statements], default=str).lower()
    for stmt in statements:
        for value in sentinels() + HOSTILE:
            assert value.lower() not in stmt.text.lower(), f"{value!r} reached the SQL text of {stmt.name}"
    for value in sentinels():
        assert json.dumps(value).lower().strip('"') in bound, f"{value!r} was not bound anywhere"


SETTINGS = {"session/timeout", "validate/session"}
# Statements whose bound values are all the harness's own (catalog and snapshot table names, the run id, a file
# path, a sample size): a spec cannot reach them, so two specs bind the same values.
HARNESS_VALUES = {"snapshot/pg_columns", "snapshot/scanner_query", "snapshot/load", "diff/variable", "diff/columns",
                  "diff/table_exists", "diff/samples", "snapshot/differing_rows"}
HARNESS_VALUES |= {f"diff/classify_{t}" for t in ("organizations", "entities", "dynamic_data", "relationships",
                                                   "transactions", "lines")}  # their only values: the bucket
HARNESS_FAMILIES = {"synth", "load"}  # the fixture generator and the v1 load: no spec is involved


def test_sql_text_does_not_depend_on_spec_values() -> None:
    """Two specs with the same shape and entirely different values compile to byte-identical SQL text."""
    one = review.compile_spec(sentinel_spec())
    other = review.compile_spec(sentinel_spec(tag="OTHERTAG", hostile=tuple(h[::-1] + "'" for h in HOSTILE),
                                                org="0b5e55ed-0000-4000-8000-000000000001", year=2003))
    assert [s.name for s in one] == [s.name for s in other]
    for a, b in zip(one, other, strict=True):
        assert a.text == b.text, a.name
        # every statement carries the spec's values as parameters, but the session settings, whose only values
        # are the harness's own timeouts, and the snapshot/diff statements that bind only harness values
        harness = a.name in SETTINGS | HARNESS_VALUES or a.name.split("/")[0] in HARNESS_FAMILIES
        assert a.params != b.params or not a.params or harness, a.name


def test_every_template_is_reachable_from_compile() -> None:
    names = {s.name for s in review.compile_spec(load_spec(PHASE7))}
    templates = {t for t in compiler.template_names() if not t.startswith("_")}
    assert templates <= names, f"templates compile never renders: {sorted(templates - names)}"


def test_ident_filter_quotes_through_psycopg() -> None:
    quote = compiler._ENV.filters["ident"]
    assert quote("universal_transactions") == '"universal_transactions"'
    assert quote('we"ird; DROP') == '"we""ird; DROP"'
    assert quote("public", "t") == '"public"."t"'


def test_strict_undefined_fails_loudly() -> None:
    with pytest.raises(jinja2.UndefinedError):
        compiler.render("plan/codes")  # org_ids missing


def test_cli_compile_out_writes_each_statement_with_parameters(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    out = tmp_path / "review"
    proc = subprocess.run([sys.executable, "-m", "runner", "compile", str(PHASE7), "--out", str(out)],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted(p.name for p in out.glob("*.sql"))
    assert files == sorted(s["file"] for s in manifest["statements"]) and len(files) >= 3
    assert manifest["spec"]["sha256"] == load_spec(PHASE7).sha256
    candidates = next(out.glob("*-plan-candidates.sql")).read_text()
    assert "-- parameters:" in candidates and "HERA.SALON.POS.TXN.SALE.v1" in candidates
    assert "%(p1)s" in candidates


def test_cli_compile_bad_spec_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: '1'\nowner: qa\nmappings: 3\n")
    out = tmp_path / "review"
    proc = subprocess.run([sys.executable, "-m", "runner", "compile", str(bad), "--out", str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert f"{bad}:4:11: /mappings" in proc.stderr
    assert not out.exists()


def test_compile_shows_each_custom_check_as_the_validation_executes_it() -> None:
    """A custom check's SQL is the spec's own; compile shows it as validation.Session.custom runs it: up to its first
    ';', :organization_id and :run_id as $n (same width), their values bound."""
    spec = load_spec(PHASE7)
    shown = {s.name: s for s in review.compile_spec(spec) if s.name.startswith("custom/")}
    assert set(shown) == {f"custom/{c.id}" for c in spec.validations.custom if c.enabled} and shown
    for check in spec.validations.custom:
        stmt = shown[f"custom/{check.id}"]
        assert stmt == custom_statement(CheckDef(check.id, "custom", check.level, check.severity, None, 1, {},
                                                 check.sql), REVIEW_RUN_ID, review.SAMPLE_ORG)
        assert ":run_id" not in stmt.text and ":organization_id" not in stmt.text
        assert len(stmt.text) == len(custom_text(check.sql))  # error offsets stay the spec's
        assert sorted(stmt.params) == ["$1 (:organization_id)", "$2 (:run_id)"]
        assert list(stmt.params.values()) == [review.SAMPLE_ORG, REVIEW_RUN_ID]


def test_custom_statement_binds_in_placeholder_order_and_no_organisation_for_a_system_check() -> None:
    check = CheckDef("sys", "custom", "system", "warning", None, 1, {},
                     "SELECT :run_id AS a, :organization_id AS b, :run_id AS c; -- trailing")
    stmt = custom_statement(check, "r-1", None)
    assert stmt.text == "SELECT $1      AS a, $2               AS b, $1      AS c"
    assert stmt.params == {"$1 (:run_id)": "r-1", "$2 (:organization_id)": None}
    base = load_spec(PHASE7)
    system = dataclasses.replace(base.validations.custom[0], level="system")
    spec = dataclasses.replace(base, validations=dataclasses.replace(base.validations, custom=(system,)))
    (shown,) = review.custom_statements(spec)
    assert shown.params["$1 (:organization_id)"] is None and shown.params["$2 (:run_id)"] == REVIEW_RUN_ID
    with pytest.raises(KeyError):
        custom_statement(dataclasses.replace(check, sql="SELECT :other"), "r-1", None)

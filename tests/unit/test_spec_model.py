"""The typed spec: specs/schema.json and runner/spec/model.py stay in step; defaults, resolution, line overrides.

`drift()` walks the schema and the dataclasses together; the negative tests feed it broken copies so a drift
detector that silently stopped detecting would fail here too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest

from runner.spec import load_spec
from runner.spec.model import (
    BUILTIN_LEVELS,
    JSON,
    NOT_IN_SCHEMA,
    CriticalAlerts,
    Spec,
    Threshold,
    WarningAlerts,
    yaml_key,
)
from runner.spec.schema import schema_path

SCHEMA: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))

# Python type -> the JSON Schema type YAML must give it.
_JSON_TYPE: dict[Any, str] = {str: "string", int: "integer", float: "number", Decimal: "number", bool: "boolean",
                              date: "string", time: "string"}


# --- the drift detector ----------------------------------------------------------------------------------------


def _resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = root["$defs"][ref.removeprefix("#/$defs/")]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _json_types(node: Mapping[str, Any]) -> set[str]:
    t = node.get("type")
    return {t} if isinstance(t, str) else set(t or ())


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False  # a union of several types has no schema counterpart: _type_drift reports it


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _same_default(schema_default: Any, tp: Any, value: Any) -> bool:
    """Does the schema's `default` describe the dataclass default `value` of type `tp`?"""
    inner, _ = _split_optional(tp)
    if schema_default is None or value is None:
        return schema_default is None and value is None
    if inner is Threshold:  # a scalar in YAML, a dataclass in Python
        return bool(Threshold.parse(schema_default) == value)
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        return isinstance(schema_default, dict) and value == inner(**schema_default)
    if isinstance(schema_default, list):
        return isinstance(value, tuple) and list(value) == schema_default
    if inner is Decimal:
        return isinstance(schema_default, int | float) and value == Decimal(str(schema_default))
    if inner is bool or isinstance(schema_default, bool):
        return type(schema_default) is type(value) and schema_default == value
    return bool(schema_default == value)


def drift(root: Mapping[str, Any], node: Mapping[str, Any], cls: type, where: str = "") -> list[str]:
    """Every way the object schema `node` and the dataclass `cls` disagree, as readable lines."""
    out: list[str] = []
    node = _resolve(root, node)
    hints = typing.get_type_hints(cls)
    fields = {yaml_key(f): f for f in dataclasses.fields(cls) if not f.metadata.get(NOT_IN_SCHEMA)}
    props: Mapping[str, Any] = node.get("properties", {})
    for key in sorted(set(props) - set(fields)):
        out.append(f"{where}/{key}: in the schema, not in {cls.__name__}")
    for key in sorted(set(fields) - set(props)):
        out.append(f"{where}/{key}: in {cls.__name__}, not in the schema")
    required = set(node.get("required", ()))
    for key in sorted(set(props) & set(fields)):
        f, prop, at = fields[key], _resolve(root, props[key]), f"{where}/{key}"
        default = _field_default(f)
        if (key in required) != (default is dataclasses.MISSING):
            out.append(f"{at}: required in the schema is {key in required}, but the field "
                       f"{'has no' if default is dataclasses.MISSING else 'has a'} default")
        if "default" in prop and default is not dataclasses.MISSING and \
                not _same_default(prop["default"], hints[f.name], default):
            out.append(f"{at}: schema default {prop['default']!r} but field default {default!r}")
        if "default" not in prop and key not in required and default is not None:
            out.append(f"{at}: optional without a schema default, so the field default must be None, "
                       f"not {default!r}")
        if not f.metadata.get(JSON):
            out += _type_drift(root, prop, hints[f.name], at)
    return out


def _type_drift(root: Mapping[str, Any], prop: Mapping[str, Any], tp: Any, at: str) -> list[str]:
    inner, optional = _split_optional(tp)
    want = _json_types(prop)
    if "null" in want and not optional:
        return [f"{at}: the schema allows null, the field type {tp} does not"]
    want.discard("null")
    if inner is Threshold:  # a scalar in YAML: a whole number of rows or a percentage written as text
        return [] if want == {"integer", "string"} and "pattern" in prop else [
            f"{at}: a Threshold is an integer or a percentage text, the schema says {sorted(want)}"]
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        if want != {"object"}:
            return [f"{at}: {inner.__name__} is an object, the schema says {sorted(want)}"]
        return drift(root, prop, inner, at)
    if typing.get_origin(inner) is tuple:
        if want != {"array"}:
            return [f"{at}: a tuple field, the schema says {sorted(want)}"]
        return _type_drift(root, _resolve(root, prop.get("items", {})), typing.get_args(inner)[0], f"{at}/*")
    if typing.get_origin(inner) is Literal:
        choices = set(typing.get_args(inner))
        enum = set(prop.get("enum", ()))
        return [] if enum == choices and want == {"string"} else [
            f"{at}: Literal {sorted(choices)} but the schema enum is {sorted(enum)} ({sorted(want)})"]
    if typing.get_origin(inner) in (typing.Union, types.UnionType):
        return _union_drift(root, prop, typing.get_args(inner), want, at)
    if inner in _JSON_TYPE:
        problems = [] if want == {_JSON_TYPE[inner]} else [
            f"{at}: {getattr(inner, '__name__', inner)} but the schema type is {sorted(want)}"]
        if "enum" in prop:
            problems.append(f"{at}: the schema has an enum; make the field a Literal")
        return problems
    return [f"{at}: the field type {tp} has no schema counterpart known to this test"]


def _union_drift(root: Mapping[str, Any], prop: Mapping[str, Any], members: tuple[Any, ...], want: set[str],
                 at: str) -> list[str]:
    """A union of one scalar and one dataclass (alerts.notify's `str | WebhookEnv`) is one schema node typed both
    ways, e.g. ["string", "object"]: the value's shape picks the member, so each member is checked against the
    node as if it had only its own type."""
    kinds = {m: "object" if dataclasses.is_dataclass(m) else _JSON_TYPE.get(m) for m in members}
    if None in kinds.values() or len(set(kinds.values())) != len(members):
        return [f"{at}: the union {members} has no schema counterpart known to this test"]
    if set(kinds.values()) != want:
        return [f"{at}: the union {sorted(str(k) for k in kinds.values())} but the schema type is {sorted(want)}"]
    return [line for m, kind in kinds.items() for line in _type_drift(root, {**prop, "type": kind}, m, at)]


# --- the model and the schema agree ----------------------------------------------------------------------------


def test_model_and_schema_agree() -> None:
    assert drift(SCHEMA, SCHEMA, Spec) == []


def test_builtin_levels_name_every_builtin_and_match_the_schema_descriptions() -> None:
    builtin = SCHEMA["$defs"]["builtinChecks"]["properties"]
    assert set(BUILTIN_LEVELS) == set(builtin)
    for name, level in BUILTIN_LEVELS.items():
        assert re.search(rf"Level: {level}\.", builtin[name]["description"]), name


# --- the drift detector can fail -------------------------------------------------------------------------------


def _schema_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    broken = copy.deepcopy(SCHEMA)
    change(broken)
    return broken


def _props(s: dict[str, Any], *path: str) -> dict[str, Any]:
    node = s
    for key in path:
        node = node["properties"][key]
    return node


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "new property": (lambda s: _props(s, "execution")["properties"].update({"max_runtime": {"type": "integer"}}),
                     "/execution/max_runtime: in the schema, not in Execution"),
    "property dropped": (lambda s: _props(s, "scope", "skip")["properties"].pop("voided"),
                         "/scope/skip/voided: in Skip, not in the schema"),
    "newly required": (lambda s: _props(s, "execution", "retries").update({"required": ["max"]}),
                       "/execution/retries/max: required in the schema is True"),
    "default changed": (lambda s: _props(s, "alerts", "critical", "integrity_score_below").update({"default": 90}),
                        "/alerts/critical/integrity_score_below: schema default 90 but field default 95.0"),
    "nested default changed": (lambda s: _props(s, "execution", "off_peak_window", "days").update(
        {"default": ["mon"]}), "/execution/off_peak_window/days: schema default ['mon']"),
    "enum widened": (lambda s: s["$defs"]["severity"]["enum"].append("fatal"),
                     "/validations/builtin/gl_balanced/severity: Literal ['critical', 'info', 'warning'] but the "
                     "schema enum is ['critical', 'fatal', 'info', 'warning']"),
    "item enum narrowed": (lambda s: _props(s, "scope", "fiscal_period_statuses")["items"]["enum"].remove("closed"),
                           "/scope/fiscal_period_statuses/*: Literal ['closed', 'open']"),
    "type changed": (lambda s: _props(s, "execution", "workers").update({"type": "number"}),
                     "/execution/workers: int but the schema type is ['number']"),
    "null allowed": (lambda s: _props(s, "execution", "batch_size").update({"type": ["integer", "null"]}),
                     "/execution/batch_size: the schema allows null"),
    "union member key renamed": (lambda s: s["$defs"]["webhook"]["properties"].update(
        {"var": s["$defs"]["webhook"]["properties"].pop("env")}),
        "/alerts/notify/*/env: in WebhookEnv, not in the schema"),
    "union narrowed": (lambda s: s["$defs"]["webhook"].update({"type": "string"}),
                       "/alerts/notify/*: the union ['object', 'string'] but the schema type is ['string']"),
    "renamed yaml key": (lambda s: s["$defs"]["mapping"]["properties"].update(
        {"source": s["$defs"]["mapping"]["properties"].pop("from")}),
        "/mappings/*/from: in Mapping, not in the schema"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_drift_detects_a_broken_schema(name: str) -> None:
    change, expected = MUTATIONS[name]
    broken = _schema_with(change)
    found = drift(broken, broken, Spec)
    assert any(line.startswith(expected) for line in found), found


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Inner:
    limit: int = 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Outer:
    id: str
    mode: Literal["a", "b"] = "a"
    inner: _Inner = _Inner()
    tags: tuple[str, ...] = ()
    when: date | None = None
    source: str | None = dataclasses.field(default=None, metadata={"yaml_key": "from"})


_GOOD_PAIR: dict[str, Any] = {
    "type": "object", "required": ["id"],
    "properties": {
        "id": {"type": "string"},
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "inner": {"$ref": "#/$defs/inner", "default": {}},
        "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        "when": {"type": ["string", "null"], "default": None},
        "from": {"type": "string"},
    },
    "$defs": {"inner": {"type": "object", "properties": {"limit": {"type": "integer", "default": 3}}}},
}


def test_drift_on_a_synthetic_pair_passes_when_they_agree() -> None:
    assert drift(_GOOD_PAIR, _GOOD_PAIR, _Outer) == []


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("properties", "mode", "default"), "b", "/mode: schema default 'b' but field default 'a'"),
    (("$defs", "inner", "properties", "limit", "default"), 4, "/inner/limit: schema default 4 but field default 3"),
    (("properties", "inner", "default"), {"limit": 4}, "/inner: schema default {'limit': 4} but field default"),
    (("properties", "tags", "items", "type"), "integer", "/tags/*: str but the schema type is ['integer']"),
    (("properties", "when", "type"), "string", None),  # narrowing null away is fine: None means "not given"
    (("required",), ["id", "mode"], "/mode: required in the schema is True"),
    (("properties", "from", "default"), "x", "/from: schema default 'x' but field default None"),
])
def test_drift_on_a_synthetic_pair_finds_each_difference(path: tuple[str, ...], value: Any,
                                                         expected: str | None) -> None:
    broken = copy.deepcopy(_GOOD_PAIR)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    found = drift(broken, broken, _Outer)
    if expected is None:
        assert found == []
    else:
        assert any(line.startswith(expected) for line in found), found


# --- defaults applied by the loader ----------------------------------------------------------------------------

MINIMAL = """name: minimal
version: "1"
owner: qa
mappings:
  - from: HERA.FINANCE.GL.TXN.JOURNAL.v1
    tier: reverse_repost
"""


def _spec(tmp_path: Path, text: str) -> Spec:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return load_spec(path)


def test_minimal_spec_gets_the_seed_alert_defaults(tmp_path: Path) -> None:
    alerts = _spec(tmp_path, MINIMAL).alerts
    assert alerts.critical == CriticalAlerts(integrity_score_below=95, error_rate_above_pct=1,
                                             performance_impact_above_pct=10, no_progress_minutes=30,
                                             validation_failures_per_hour_above=None)
    assert alerts.warning == WarningAlerts(integrity_score_below=98, error_rate_above_pct=0.5,
                                           performance_impact_above_pct=5, no_progress_minutes=None,
                                           validation_failures_per_hour_above=5)


def test_minimal_spec_gets_every_schema_default(tmp_path: Path) -> None:
    spec = _spec(tmp_path, MINIMAL)
    assert (spec.dna.source, spec.dna.target) == ("v1", "v2")
    assert spec.scope.fiscal_period_statuses == ("open",)
    assert spec.scope.transaction_statuses == ("posted", "completed")
    assert (spec.execution.batch_size, spec.execution.workers, spec.execution.off_peak_window) == (500, 4, None)
    checks = spec.validations.checks()
    assert [c.id for c in checks] == list(BUILTIN_LEVELS)
    assert {(c.severity, c.error, c.warn) for c in checks} == {("critical", Threshold(count=1), None)}
    assert spec.mappings[0].to is None and spec.mappings[0].lines == ()
    assert spec.entities.families() == []


def test_a_partly_written_section_keeps_the_other_defaults(tmp_path: Path) -> None:
    spec = _spec(tmp_path, MINIMAL + "alerts:\n  critical: {integrity_score_below: 90}\n"
                                    "  warning: {error_rate_above_pct: null}\n")
    assert spec.alerts.critical.integrity_score_below == 90
    assert spec.alerts.critical.no_progress_minutes == 30
    assert spec.alerts.warning.error_rate_above_pct is None  # null turns a bound off
    assert spec.alerts.warning.integrity_score_below == 98


# --- resolution of v1 codes ------------------------------------------------------------------------------------

MAPPINGS = MINIMAL.replace("""  - from: HERA.FINANCE.GL.TXN.JOURNAL.v1
    tier: reverse_repost
""", r"""  - from: HERA.FINANCE.GL.TXN.JOURNAL.V1
    to: HERA.ACCOUNTING.GL.TXN.JOURNAL.v2
    tier: reverse_repost
  - match: HERA.FINANCE.GL.POSTING.*.v1
    to: hera.accounting.gl.txn.{1}.V2
    tier: reverse_repost
  - match: HERA.RETAIL.*.TXN.*.v1
    to: HERA.ACCOUNTING.{1}.TXN.{2}.v2
    tier: reporting_alias
  - match: HERA.MFG.**.v1
    tier: reporting_alias
  - regex: 'HERA\.SALON\.POS\.TXN\.(SALE|VOID_SALE)\.V1'
    to: HERA.ACCOUNTING.POS.TXN.{1}.v2
    tier: reverse_repost
  - regex: 'HERA\.SALON\.INVENTORY\.TXN\.[A-Z_]+\.V1'
    tier: reporting_alias
""")


@pytest.fixture
def mapped(tmp_path: Path) -> Spec:
    return _spec(tmp_path, MAPPINGS)


@pytest.mark.parametrize(("code", "index", "target"), [
    # exact `from`, however the version and the letters are cased (HERA upper-cases, then reads .V1 as .v1)
    ("HERA.FINANCE.GL.TXN.JOURNAL.v1", 0, "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2"),
    ("HERA.FINANCE.GL.TXN.JOURNAL.V1", 0, "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2"),
    ("hera.finance.gl.txn.journal.v1", 0, "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2"),
    # `*` captures one segment into {1}; the target is normalised
    ("HERA.FINANCE.GL.POSTING.PAYMENT.v1", 1, "HERA.ACCOUNTING.GL.TXN.PAYMENT.v2"),
    ("Hera.Finance.Gl.Posting.Receipt.V1", 1, "HERA.ACCOUNTING.GL.TXN.RECEIPT.v2"),
    ("HERA.RETAIL.POS.TXN.RETURN.v1", 2, "HERA.ACCOUNTING.POS.TXN.RETURN.v2"),
    # `**` takes one or more segments; no `to` means a version bump
    ("HERA.MFG.PROD.TXN.WO_ISSUE.v1", 3, "HERA.MFG.PROD.TXN.WO_ISSUE.v2"),
    ("hera.mfg.prod.txn.wo.receipt.V1", 3, "HERA.MFG.PROD.TXN.WO.RECEIPT.v2"),
    # regex: whole-code, case-insensitive on the normalised code; groups fill {n}
    ("HERA.SALON.POS.TXN.VOID_SALE.v1", 4, "HERA.ACCOUNTING.POS.TXN.VOID_SALE.v2"),
    ("hera.salon.pos.txn.sale.V1", 4, "HERA.ACCOUNTING.POS.TXN.SALE.v2"),
    ("HERA.SALON.INVENTORY.TXN.ISSUE.V1", 5, "HERA.SALON.INVENTORY.TXN.ISSUE.v2"),
])
def test_resolve(mapped: Spec, code: str, index: int, target: str) -> None:
    res = mapped.resolve(code)
    assert res is not None
    assert (res.mapping_index, res.target, res.source) == (index, target, code.upper()[:-3] + code[-3:].lower())
    assert mapped.matching(code) == [index]


@pytest.mark.parametrize("code", [
    "HERA.FINANCE.GL.TXN.JOURNAL.v2",  # already v2
    "HERA.FINANCE.GL.TXN.JOURNAL.v11",  # another version, not a prefix match
    "HERA.FINANCE.GL.POSTING.A.B.v1",  # `*` is exactly one segment
    "HERA.MFG.v1",  # `**` needs at least one segment
    "HERA.SALON.POS.TXN.SALE.EXTRA.v1",  # a regex must match the whole code
    "XHERA.SALON.POS.TXN.SALE.v1",
])
def test_resolve_rejects(mapped: Spec, code: str) -> None:
    assert mapped.resolve(code) is None
    assert mapped.matching(code) == []


# --- line overrides --------------------------------------------------------------------------------------------

LINES = MINIMAL.replace("    tier: reverse_repost\n", """    tier: reverse_repost
    lines:
      - side: DR
        line_type: tax
        to: HERA.ACCOUNTING.GL.LINE.TAX_DEBIT.v2
      - side: DR
        match: HERA.FINANCE.GL.LINE.*.v1
        to: hera.accounting.gl.line.debit.V2
      - side: CR
        to: HERA.ACCOUNTING.GL.LINE.CREDIT.v2
""")


@pytest.mark.parametrize(("line_code", "side", "line_type", "expected"), [
    ("HERA.FINANCE.GL.LINE.ANY.v1", "DR", "gl", "HERA.ACCOUNTING.GL.LINE.DEBIT.v2"),
    ("HERA.FINANCE.GL.LINE.ANY.V1", "dr", None, "HERA.ACCOUNTING.GL.LINE.DEBIT.v2"),  # side compared upper-cased
    ("HERA.FINANCE.GL.LINE.ANY.v1", "DR", "TAX", "HERA.ACCOUNTING.GL.LINE.TAX_DEBIT.v2"),  # the first match wins
    ("HERA.SALON.POS.LINE.ITEM.v1", "DR", "tax", "HERA.ACCOUNTING.GL.LINE.TAX_DEBIT.v2"),
    ("HERA.SALON.POS.LINE.ITEM.v1", "DR", "item", "HERA.SALON.POS.LINE.ITEM.v1"),  # no override: unchanged
    ("HERA.SALON.POS.LINE.ITEM.v1", "CR", "item", "HERA.ACCOUNTING.GL.LINE.CREDIT.v2"),
    ("HERA.FINANCE.GL.LINE.ANY.v1", None, None, "HERA.FINANCE.GL.LINE.ANY.v1"),  # no side: only unsided overrides
])
def test_line_overrides_by_side(tmp_path: Path, line_code: str, side: str | None, line_type: str | None,
                                expected: str) -> None:
    mapping = _spec(tmp_path, LINES).mappings[0]
    assert mapping.line_code(line_code, side, line_type) == expected


def test_every_model_dataclass_is_reached_by_the_drift_walk() -> None:
    """A dataclass added to model.py but not hung under Spec would escape the drift test."""
    import runner.spec.model as model

    def reached(cls: type) -> Iterator[type]:
        yield cls
        for f in dataclasses.fields(cls):
            if f.metadata.get(NOT_IN_SCHEMA):
                continue
            tp, _ = _split_optional(typing.get_type_hints(cls)[f.name])
            if typing.get_origin(tp) is tuple:
                tp = typing.get_args(tp)[0]
            members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
            for member in members:
                if dataclasses.is_dataclass(member) and isinstance(member, type):
                    yield from reached(member)

    walked = set(reached(Spec))
    spec_classes = {obj for obj in vars(model).values() if isinstance(obj, type) and dataclasses.is_dataclass(obj)
                    and obj.__module__ == model.__name__}
    # Helpers that are not YAML: the selector base class, the validation framework's view, resolution results.
    not_yaml = {model.CodeSelector, model.BuiltinCheck, model.CheckDef, model.Resolution}
    assert spec_classes - walked == not_yaml

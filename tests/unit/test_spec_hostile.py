"""Hostile input to `check`: it never raises, always exits 0 or 2, and every problem line names a location.

Hostile strings go into every string field the schema has (BASE fills each one; a test keeps it that way), YAML
tricks (alias bombs, deep nesting, huge numbers, language tags) go into whole files, and a short hypothesis run
throws random YAML-ish text and near-schema structures at it. A long fuzz session is a later issue's job.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import EXIT_OK, EXIT_USAGE
from runner.spec import check_file, run_check, yamlsrc
from runner.spec.problems import pointer
from runner.spec.schema import schema_path
from runner.spec.yamlsrc import MAX_BYTES, MAX_DEPTH

SCHEMA: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
BUILTINS: list[str] = sorted(SCHEMA["$defs"]["builtinChecks"]["properties"])
ORG = ["3f2b9c1e-8a4d-4c5e-9f00-1a2b3c4d5e6f", "0b9e6f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
       "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"]

Path_ = tuple[str | int, ...]


def _family(prefix: str, entity_type: str, field: str) -> dict[str, Any]:
    return {
        "description": "d", "entity_types": [entity_type], "fields": [field],
        "smart_codes": [
            {"description": "d", "from": f"HERA.{prefix}.ENTITY.ONE.CODE.v1",
             "to": f"HERA.{prefix}.ENTITY.ONE.CODE.v2"},
            {"match": f"HERA.{prefix}.ENTITY.TWO.*.v1", "to": f"HERA.ACCOUNTING.{prefix}.TWO.{{1}}.v2"},
            {"regex": rf"HERA\.{prefix}\.ENTITY\.THREE\.(\w+)\.V1", "to": f"HERA.ACCOUNTING.{prefix}.THREE.{{1}}.v2"},
        ],
        "transforms": [
            {"set": "metadata.a", "value": "v2", "description": "d"},
            {"rename": "metadata.b", "to": "metadata.c"},
            {"copy": f"dynamic.{field}", "to": "metadata.d"},
        ],
    }


# A valid spec with every string field of the schema filled at least once (test_base_fills_every_string_field).
BASE: dict[str, Any] = {
    "$schema": "../schema.json", "name": "hostile-base", "version": "1.0", "owner": "qa", "description": "d",
    "notes": ["n"],
    "dna": {"source": "v1", "target": "v2"},
    "mappings": [
        {"id": "exact", "description": "d", "from": "HERA.FINANCE.GL.TXN.JOURNAL.v1",
         "to": "HERA.ACCOUNTING.GL.TXN.JOURNAL.v2", "tier": "reverse_repost",
         "lines": [{"side": "DR", "match": "HERA.FINANCE.GL.LINE.*.v1", "line_type": "gl", "description": "d",
                    "to": "HERA.ACCOUNTING.GL.LINE.DEBIT.v2"},
                   {"side": "CR", "to": "HERA.ACCOUNTING.GL.LINE.CREDIT.v2"}]},
        {"match": "HERA.MFG.PROD.TXN.*.v1", "to": "HERA.MFG.PROD.TXN.{1}.v2", "tier": "reporting_alias"},
        {"regex": r"HERA\.SALON\.POS\.TXN\.(SALE)\.V1", "to": "HERA.SALON.POS.TXN.{1}.v2", "tier": "reverse_repost"},
    ],
    "scope": {
        "organizations": {"include": ORG[:2], "exclude": ORG[2:], "priority": ORG[:1]},
        "date_range": {"from": "2025-01-01", "to": "2025-12-31"},
        "fiscal_period_statuses": ["open"], "transactions_without_period": "include",
        "transaction_statuses": ["posted"],
    },
    "entities": {
        "posting_rules": _family("SALON", "financial_policy", "policy_config"),
        "fiscal_periods": _family("FINANCE", "fiscal_period", "period_status"),
        "organization_config": {"description": "d", "transforms": [
            {"set": "settings.a", "value": 1}, {"rename": "settings.b", "to": "settings.c"},
            {"copy": "settings.d", "to": "settings.e", "description": "d"}]},
    },
    "execution": {"off_peak_window": {"start": "22:00", "end": "06:00", "timezone": "Europe/Berlin",
                                      "days": ["mon"]}},
    "validations": {
        "include": ["lib.yaml"],  # _write puts LIBRARY beside every spec it writes
        "builtin": {**{name: {"severity": "critical", "warn_threshold": 1, "error_threshold": "100%"}
                       for name in BUILTINS},
                    "lines_preserved": {"severity": "warning", "ignore_fields": ["description"], "warn_threshold": 2,
                                        "error_threshold": 3}},
        "custom": [{"id": "c1", "description": "d", "level": "record", "severity": "warning",
                    "warn_threshold": "0.5%", "error_threshold": 10,
                    "sql": "SELECT id AS record_id FROM universal_transactions WHERE organization_id = "
                           ":organization_id AND metadata ->> 'run' = :run_id"}],
    },
    "alerts": {"notify": ["https://ops.example.com/hera", {"env": "HERA_NOTIFY_URL"}]},
}

HOSTILE: list[str] = [
    "O'Brien", 'say "hi"', "'; DROP TABLE universal_transactions; --", "$$ SELECT 1 $$", "$tag$ x $tag$",
    "-- a comment", "/* a comment */", "/* never closed", "SELECT 1; SELECT 2", ":organization_id :run_id :x",
    "a\x01b\x07c\x08d\x0be\x0cf\x1b[31mred\x1b[0m\x7fz", "\t tab\r\ncrlf \n", "\u202eevil\u202c \u200b",
    "Ünïcødé ✓ 漢字 🎉", "line\u2028sep\u2029para\x85nel", "\ufeffbom", "{1} {0} %s %(x)s {{2}}",
    "&anchor *alias !tag | > # % @ `", "\\", "''", "x" * 5_000 + "'", "- [a, b]\n- {c: d}",
]


# --- walking the schema --------------------------------------------------------------------------------------


def _resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return {**SCHEMA["$defs"][ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def string_slots(node: Mapping[str, Any] = SCHEMA, at: Path_ = ()) -> Iterator[tuple[Path_, bool]]:
    """(generic path with "*" for list items, constrained: a pattern or enum no hostile string can pass)."""
    node = _resolve(node)
    kinds = node.get("type", ())
    if "string" in ([kinds] if isinstance(kinds, str) else kinds):
        yield at, "pattern" in node or "enum" in node
    for key, sub in node.get("properties", {}).items():
        yield from string_slots(sub, (*at, key))
    if "items" in node:
        yield from string_slots(node["items"], (*at, "*"))


def concrete(doc: Any, generic: Path_) -> Iterator[Path_]:
    """The paths in `doc` a generic path stands for."""
    if not generic:
        yield ()
        return
    head, rest = generic[0], generic[1:]
    if head == "*" and isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from ((i, *p) for p in concrete(item, rest))
    elif isinstance(doc, dict) and head in doc:
        yield from ((head, *p) for p in concrete(doc[head], rest))


SLOTS: list[tuple[Path_, bool]] = list(string_slots())
def _at(doc: Any, path: Path_) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# A node typed text-or-mapping (alerts.notify's webhooks) is a string slot only where BASE holds no mapping.
FILLED: list[tuple[Path_, bool]] = [(p, constrained) for g, constrained in SLOTS for p in concrete(BASE, g)
                                    if not isinstance(_at(BASE, p), dict | list)]


def _set(doc: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


LIBRARY = "custom:\n  - {id: lib-check, description: d, sql: SELECT 1 AS record_id}\n"


def _write(tmp: Path, doc: Any, name: str = "spec.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (tmp / "lib.yaml").write_text(LIBRARY, encoding="utf-8")
    return path


def assert_clean(path: Path) -> tuple[int, list[tuple[int, int, str]]]:
    """Run check on `path`: it must not raise, must exit 0 or 2, print no raw control characters, and every
    problem must name FILE:LINE:COL with a line inside the file. Returns the exit code and (line, col, pointer or
    '' for a problem before any document exists) of every problem, read back from the printed text."""
    code, text = run_check([path])
    assert code in (EXIT_OK, EXIT_USAGE)
    assert all(line.isprintable() for line in text.splitlines()), "raw control characters in the output"
    # str.splitlines breaks on every character YAML counts as a line break (and a few more).
    n_lines = len(path.read_text("utf-8", errors="replace").splitlines()) if path.is_file() else 1
    head = re.compile(rf"^{re.escape(str(path))}:(\d+):(\d+): (.*)$")
    located: list[tuple[int, int, str]] = []
    for m in filter(None, map(head.match, text.splitlines())):
        line, col, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        assert 1 <= line <= n_lines + 1 and col >= 1, m.group(0)
        located.append((line, col, rest.split(": ", 1)[0] if rest.startswith("/") else ""))
    if code == EXIT_OK:
        assert (text.startswith(f"{path}: OK: "), located) == (True, [])
    else:
        n = len(located)
        assert n and text.splitlines()[-1] == f"{path}: {n} problem{'s' if n != 1 else ''}", text
    return code, located


# --- the base and its coverage ---------------------------------------------------------------------------------


def test_base_is_a_valid_spec(tmp_path: Path) -> None:
    code, located = assert_clean(_write(tmp_path, BASE))
    assert (code, located) == (EXIT_OK, [])


def test_base_fills_every_string_field() -> None:
    empty = [g for g, _ in SLOTS if not list(concrete(BASE, g))]
    assert empty == [], "add these fields to BASE so hostile strings reach them"
    assert len(FILLED) >= len(SLOTS)


# --- hostile strings in string fields --------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_string_in_every_field_at_once(tmp_path: Path, hostile: str) -> None:
    doc = BASE
    for path, _ in FILLED:
        doc = _set(doc, path, hostile)
    # Transform values are free JSON that ends up in the database: hostile keys and text belong there too.
    doc = _set(doc, ("entities", "posting_rules", "transforms", 0, "value"), {hostile: [hostile]})
    code, located = assert_clean(_write(tmp_path, doc))
    assert code == EXIT_USAGE
    pointers = {p for _, _, p in located}
    for path, constrained in FILLED:
        if constrained:  # a pattern or enum: the problem must be reported at that very field
            assert pointer(path) in pointers, pointer(path)


FREE = [path for path, constrained in FILLED if not constrained]


def _around(path: Path_) -> dict[str, Any]:
    """The identity, something to migrate and just the part of BASE that holds `path` (a smaller file to check)."""
    doc: dict[str, Any] = {k: BASE[k] for k in ("name", "version", "owner")} | {"mappings": BASE["mappings"][:1]}
    top, section = str(path[0]), BASE[str(path[0])]
    doc[top] = {path[1]: section[path[1]]} if isinstance(section, dict) and len(path) > 2 else section
    return doc


@pytest.mark.parametrize("path", FREE, ids=[pointer(p) for p in FREE])
def test_hostile_strings_in_one_free_text_field(tmp_path: Path, path: Path_) -> None:
    """Free-text fields pass the schema, so the hostile text reaches the semantic checks (SQL guard, regex,
    time zones, dynamic fields); problems it causes stay in the section it was written in."""
    # Fields the checks parse get every string; the others (descriptions, notes) a rotating few.
    parsed = path[-1] in ("sql", "regex", "timezone")
    read = parsed or path[-1] == "version" or "entity_types" in path or "fields" in path or "line_type" in path
    chosen = HOSTILE if parsed else HOSTILE[::2] if read else HOSTILE[len(path) % 7::7]
    for i, hostile in enumerate(chosen):
        _, located = assert_clean(_write(tmp_path, _set(_around(path), path, hostile), f"s{i}.yaml"))
        for _, _, where in located:
            assert where.startswith(f"/{path[0]}"), (pointer(path), hostile, located)


def test_hostile_keys_are_shown_escaped(tmp_path: Path) -> None:
    spec = tmp_path / "keys.yaml"
    spec.write_text('name: k\nversion: "1"\nowner: qa\n"\\e[31mred\\0": 1\n"\\ud800": 2\n', encoding="utf-8")
    code, located = assert_clean(spec)
    assert code == EXIT_USAGE
    assert {(line, col) for line, col, _ in located} >= {(4, 1), (5, 1)}
    text = run_check([spec])[1]
    assert "\\x1b[31mred\\x00" in text and "\\ud800" in text
    assert "\x1b" not in text and "\x00" not in text
    text.encode("utf-8")  # no lone surrogate left: printing it cannot fail


def test_hostile_keys_through_the_real_cli(tmp_path: Path) -> None:
    """Printed by the console entry: a lone surrogate or an escape sequence must not turn exit 2 into a crash."""
    spec = tmp_path / "keys.yaml"
    spec.write_text('name: k\nversion: "1"\nowner: qa\n"\\ud800\\e[2J": 1\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "HERA_DSN"}
    proc = subprocess.run([sys.executable, "-m", "runner", "check", str(spec)], capture_output=True, timeout=120,
                          check=False, env=env)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert f"{spec}:4:1: /\\ud800\\x1b[2J: unknown key".encode() in proc.stderr
    assert b"\x1b" not in proc.stderr and b"internal error" not in proc.stderr


# --- hostile YAML ------------------------------------------------------------------------------------------------

HEAD = 'name: y\nversion: "1"\nowner: qa\nmappings:\n  - {from: HERA.SALON.POS.TXN.SALE.v1, tier: reverse_repost}\n'


SMALL_MAX_NODES = 5_000


def test_a_file_over_the_size_limit(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(f"{HEAD}description: {'x' * MAX_BYTES}\n", encoding="utf-8")
    code, located = assert_clean(spec)
    assert (code, located) == (EXIT_USAGE, [(1, 1, "")])


def _laughs(levels: int, width: int) -> str:
    rows = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    rows += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


YAML_TRICKS: dict[str, tuple[str, tuple[int, int, str], str]] = {
    # name: (file text, (line, col, pointer) of a problem, a fragment of its message)
    "billion laughs": (_laughs(9, 9), (1, 1, "/"), f"more than {SMALL_MAX_NODES} nodes"),
    # 'notes: ' is 7 characters: the '[' opening level k is at column 7 + k; level MAX_DEPTH + 1 is refused.
    "deep flow nesting": ("notes: " + "[" * (MAX_DEPTH + 10) + "]" * (MAX_DEPTH + 10) + "\n" + HEAD,
                          (1, MAX_DEPTH + 8, "/notes" + "/0" * MAX_DEPTH), f"more than {MAX_DEPTH} levels"),
    "nesting past the parser": ("notes: " + "[" * 600 + "]" * 600 + "\n", (1, 1, ""), "nested too deeply"),
    # PyYAML hands back the anchored node itself for an alias, so the place shown is the anchor's (&n, col 8).
    "recursive alias": (HEAD + "notes: &n [a, *n]\n", (6, 8, "/notes/1"), "recursive alias"),
    "recursive merge": (HEAD + "scope: &s {<<: *s}\n", (6, 8, "/scope"), "recursive alias"),
    "merge of a scalar": (HEAD + "scope:\n  <<: 5\n", (7, 7, "/scope"), "'<<' (merge) needs an alias"),
    "python object tag": (HEAD + "description: !!python/object/apply:os.system ['echo pwned']\n",
                          (6, 14, "/description"), "unsupported YAML tag !!python/object/apply:os.system"),
    "python name tag on a mapping": (HEAD + "scope: !!python/name:os.system {}\n", (6, 8, "/scope"),
                                     "unsupported YAML tag !!python/name:os.system"),
    "local tag": (HEAD + "owner2: !secret x\n", (6, 9, "/owner2"), "unsupported YAML tag !secret"),
    "huge decimal": (HEAD + "execution: {batch_size: " + "9" * 5000 + "}\n", (6, 25, "/execution/batch_size"),
                     "number too large"),
    "huge hex": (HEAD + "execution: {batch_size: 0x" + "f" * 5000 + "}\n", (6, 25, "/execution/batch_size"),
                 "number too large"),
    "huge number beyond float": (HEAD + "alerts: {critical: {performance_impact_above_pct: 1" + "0" * 400 + "}}\n",
                                 (6, 51, "/alerts/critical/performance_impact_above_pct"), "number too large"),
    "big but bounded number": (HEAD + "execution: {batch_size: 1" + "0" * 30 + "}\n", (6, 25, "/execution/batch_size"),
                               "must be at most 100000"),
    "infinity": (HEAD + "alerts: {critical: {integrity_score_below: .inf}}\n",
                 (6, 44, "/alerts/critical/integrity_score_below"), "not a finite number"),
    "not a number": (HEAD + "alerts: {critical: {integrity_score_below: .nan}}\n",
                     (6, 44, "/alerts/critical/integrity_score_below"), "not a number"),
    # target is not written: the problem is shown at its mapping, the '{' of dna
    "huge dna version": (HEAD + "dna: {source: v" + "9" * 5000 + "}\n", (6, 6, "/dna/target"),
                         "must be a later version"),
    "list as a key": (HEAD + "? [a, b]\n: 1\n", (6, 3, "/"), "a mapping key must be a plain name"),
    "NUL byte": (HEAD + "owner: q\x00a\n", (6, 9, ""), "character #x0000 is not allowed"),
    "escape sequence byte": (HEAD + "notes: [\x1b[2J]\n", (6, 9, ""), "character #x001b is not allowed"),
    "several documents": (HEAD + "---\n" + HEAD, (6, 1, ""), "a spec is one YAML document"),
    "directive": ("%YAML 9.9\n---\n" + HEAD, (1, 1, ""), "YAML syntax error"),
}


@pytest.mark.parametrize("name", list(YAML_TRICKS))
def test_yaml_tricks_give_a_located_problem(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The alias-bomb guard with a lower bound: the same code path without expanding 200,000 nodes each run.
    monkeypatch.setattr(yamlsrc, "MAX_NODES", SMALL_MAX_NODES)
    text, where, says = YAML_TRICKS[name]
    spec = tmp_path / "trick.yaml"
    spec.write_text(text, encoding="utf-8")
    assert assert_clean(spec)[0] == EXIT_USAGE
    found = [((p.loc.line, p.loc.col, pointer(p.path) if p.path is not None else ""), p.message)
             for p in check_file(spec).problems]
    assert any(at == where and says in message for at, message in found), found


def test_an_alias_expansion_below_the_limit_is_an_ordinary_spec(tmp_path: Path) -> None:
    spec = tmp_path / "laughs.yaml"
    spec.write_text(HEAD + "notes: &n [a, b]\ndescription: *n\n", encoding="utf-8")
    code, located = assert_clean(spec)
    assert (code, [p for _, _, p in located]) == (EXIT_USAGE, ["/description"])  # a list where text belongs


@pytest.mark.parametrize("hostile", HOSTILE[:12], ids=range(12))
def test_hostile_text_written_raw_into_the_yaml(tmp_path: Path, hostile: str) -> None:
    """Unquoted, as a careless copy-paste would: YAML errors or schema problems, never a crash."""
    for i, text in enumerate((f"{HEAD}description: {hostile}\n", f"{HEAD}{hostile}: 1\n",
                              f"{HEAD}validations:\n  custom:\n    - id: c\n      description: d\n      sql: |\n"
                              f"        {hostile}\n")):
        spec = tmp_path / f"raw{i}.yaml"
        spec.write_text(text, encoding="utf-8")
        assert_clean(spec)


# --- random input (hypothesis) ---------------------------------------------------------------------------------

KEYS: list[str] = sorted({str(k) for g, _ in SLOTS for k in g if k != "*"} | set(BASE) | {"<<", "from", "to"})
YAML_CHARS = st.sampled_from([*":-[]{}&*!|>'\"#%@`,?~\\", "\n", "  ", "\t", "v1", "HERA.", "name", "1", "0x",
                              ".inf", "null", "true", "yes", "é", "\x85", "\u2028"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                    st.sampled_from(["HERA.SALON.POS.TXN.SALE.v1", "HERA.MFG.**.v1", "22:00", "2025-02-30",
                                     "SELECT 1", ORG[0], "critical", "record", "reverse_repost", "{1}"]))
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)),
    max_leaves=25)
ALL_PATHS: list[Path_] = []


def _paths(doc: Any, at: Path_ = ()) -> Iterator[Path_]:
    if at:
        yield at
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*at, i))


ALL_PATHS = list(_paths(BASE))
FAST = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FAST
@given(text=st.lists(YAML_CHARS | st.text(max_size=3), max_size=80).map("".join))
def test_random_yaml_text_never_raises(tmp_path: Path, text: str) -> None:
    spec = tmp_path / "random.yaml"
    spec.write_text(text, encoding="utf-8")
    assert_clean(spec)


@FAST
@given(doc=st.dictionaries(st.sampled_from(KEYS), JSONISH, max_size=8))
def test_random_structures_near_the_schema_never_raise(tmp_path: Path, doc: dict[str, Any]) -> None:
    assert_clean(_write(tmp_path, {"name": "r", "version": "1", "owner": "qa", **doc}))


@FAST
@given(where=st.sampled_from(ALL_PATHS), value=JSONISH)
def test_random_values_in_a_valid_spec_never_raise(tmp_path: Path, where: Path_, value: Any) -> None:
    assert_clean(_write(tmp_path, _set(BASE, where, value)))

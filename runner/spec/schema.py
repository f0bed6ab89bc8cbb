"""Validation against specs/schema.json (JSON Schema 2020-12), every problem at once, in words QA can act on."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from runner.resources import data_dir
from runner.spec import codes
from runner.spec.problems import JsonPath, Problem, SourceMap

SCHEMA_FILE = "schema.json"

_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "text", "integer": "a whole number",
               "number": "a number", "boolean": "true or false", "null": "nothing (null)"}


_NOT_WITH = {"set": "set writes 'value' at its own path; 'to' belongs to rename and copy",
             "rename": "'value' belongs to set", "copy": "'value' belongs to set"}


def schema_path() -> Path:
    return data_dir("specs") / SCHEMA_FILE


@cache
def load_schema() -> dict[str, Any]:
    with schema_path().open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


@cache
def _validator(definition: str | None = None) -> Draft202012Validator:
    """The validator of a whole spec, or of one of the schema's $defs (a check library is `checkLibrary`)."""
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    if definition is None:
        return Draft202012Validator(schema)
    return Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"],
                                 "$ref": f"#/$defs/{definition}"})


def resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (one level is all schema.json uses)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target: Mapping[str, Any] = load_schema()["$defs"][ref[len("#/$defs/"):]]
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def validate(data: Any, source: SourceMap, display: str, definition: str | None = None) -> list[Problem]:
    """Every schema problem of `data` (a spec, or the $defs `definition`), located through `source`,
    deduplicated."""
    out: dict[tuple[Any, ...], Problem] = {}
    for error in _validator(definition).iter_errors(data):
        for path, at_key, message in _explain(error, data, source):
            loc = source.key(path) if at_key else source.value(path)
            problem = Problem(display, loc, path, message)
            out.setdefault((path, message), problem)
    return list(out.values())


def _describe(value: Any, raw: str | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int | float):
        return f"the number {raw if raw is not None else value}"
    if isinstance(value, str):
        return f"the text {_short(value)}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "...'"


def _first_sentence(text: str, limit: int = 160) -> str:
    cut = re.search(r"(?<![.]\w)(?<=[a-z0-9)])\.\s+(?=[A-Z])", text)
    first = text if cut is None else text[:cut.start()]
    return first if len(first) <= limit else first[:limit - 3].rstrip() + "..."


def _suggest(word: str, choices: list[str]) -> str:
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f"; did you mean '{lowered[word.lower()]}'? (names are case-sensitive)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _explain(error: ValidationError, data: Any, source: SourceMap) -> Iterator[tuple[JsonPath, bool, str]]:
    path: JsonPath = tuple(error.absolute_path)
    schema = resolve(error.schema) if isinstance(error.schema, Mapping) else {}
    value: Any = error.instance
    expected: Any = error.validator_value
    kind = error.validator
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in value:
            if key not in allowed:
                yield ((*path, key), True, f"unknown key '{key}'{_suggest(key, allowed)} (allowed here: "
                                           f"{', '.join(allowed)})")
    elif kind == "required" and isinstance(value, dict):
        props = schema.get("properties", {})
        for key in expected:
            if key not in value:
                about = resolve(props.get(key, {})).get("description", "")
                yield (path, False, f"missing required key '{key}'" + (f": {_first_sentence(about)}" if about else ""))
    elif kind == "dependentRequired" and isinstance(value, dict):
        for trigger, needed in expected.items():
            if trigger in value:
                for key in needed:
                    if key not in value:
                        yield (path, False, f"missing key '{key}': '{trigger}' needs it")
    elif kind == "oneOf" and isinstance(value, dict) and _exactly_one(expected):
        keys = [s["required"][0] for s in expected]
        present = [k for k in keys if k in value]
        names = ", ".join(f"'{k}'" for k in keys)
        if present:
            yield ((*path, present[1]), True, f"set exactly one of {names}; found {' and '.join(present)}")
        else:
            yield (path, False, f"set exactly one of {names}; none is set")
    elif kind == "not" and isinstance(expected, dict) and set(expected) == {"required"}:
        key = expected["required"][0]
        where = list(error.relative_schema_path)
        trigger = where[-2] if len(where) >= 3 and where[-3] == "dependentSchemas" else None
        why = _NOT_WITH.get(str(trigger), "") if trigger else ""
        yield ((*path, key), True, f"'{key}' cannot be used together with '{trigger}'" + (f": {why}" if why else "")
               if trigger else f"'{key}' is not allowed here")
    elif kind == "type" and schema.get("title") == "threshold":
        hint = (f'; write a percentage as "{source.raw.get(path, value)}%"' if isinstance(value, float) else "")
        yield (path, False, f"expected a whole number of offending rows or a percentage such as \"0.5%\", got "
                            f"{_describe(value, source.raw.get(path))}{hint}")
    elif kind == "type":
        yield (path, False, _type_message(expected, value, source.raw.get(path)))
    elif kind in ("enum", "const"):
        choices = list(expected) if kind == "enum" else [expected]
        shown = ", ".join(str(c) for c in choices)
        hint = _suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        yield (path, False, f"{_short(value)} is not allowed here; use {'one of: ' if kind == 'enum' else ''}"
                            f"{shown}{hint}")
    elif kind == "pattern":
        yield (path, False, _pattern_message(schema, value))
    elif kind == "uniqueItems" and isinstance(value, list):
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                yield ((*path, i), False, f"{_short(item)} is listed twice (also item {seen[key]}); list it once")
            seen.setdefault(key, i)
    elif kind == "minimum" and schema.get("title") == "threshold" and not isinstance(value, int):
        return  # a fraction: the type problem says what to write instead
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
                 "exclusiveMaximum": "less than"}[kind]
        yield (path, False, f"must be {words} {expected} (got {value})")
    elif kind == "minLength":
        yield (path, False, "must not be empty" if expected == 1
               else f"must have at least {expected} characters")
    elif kind == "maxLength":
        yield (path, False, f"is {len(value)} characters long; at most {expected} are allowed")
    elif kind == "minItems":
        yield (path, False, f"needs at least {expected} item{'s' if expected != 1 else ''}")
    else:
        yield (path, False, error.message)


def _exactly_one(alternatives: Any) -> bool:
    return isinstance(alternatives, list) and all(
        isinstance(s, dict) and set(s) == {"required"} and len(s["required"]) == 1 for s in alternatives)


def _type_message(expected: Any, value: Any, raw: str | None) -> str:
    wanted = [expected] if isinstance(expected, str) else list(expected)
    words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted if w != "null")
    if "null" in wanted:
        words += " (or null)"
    message = f"expected {words}, got {_describe(value, raw)}"
    if "string" in wanted and isinstance(value, int | float | bool) and raw is not None:
        message += f"; write it in quotes (\"{raw}\") if you mean the text"
    elif "boolean" in wanted and isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n"):
        message += "; write true or false (this loader reads YAML 1.2, where yes/no/on/off are text)"
    elif "object" in wanted and value is None:
        message += "; write {} for the defaults, or remove the key"
    elif "array" in wanted and isinstance(value, str | int | float):
        message += "; write a list, e.g. [a, b] or one '- item' per line"
    return message


def _pattern_message(schema: Mapping[str, Any], value: Any) -> str:
    if schema.get("title") == "HERA smart code" and isinstance(value, str) and "{" not in value:
        why = codes.strict_problem(value)
        if why:
            return f"{_short(value, 120)} is not a valid HERA smart code: {why}"
    custom = schema.get("patternErrorMessage")
    if custom:
        return f"{_short(value, 120)} {custom}"
    return f"{_short(value, 120)} does not match the pattern {schema.get('pattern')}"

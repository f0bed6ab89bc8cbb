"""Schema-valid data → model dataclasses, generically (field names, YAML keys and types come from model.py)."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import date, time
from decimal import Decimal
from typing import Any, TypeVar

from runner.spec.model import JSON, NOT_IN_SCHEMA, Threshold, yaml_key
from runner.spec.problems import JsonPath

T = TypeVar("T")


class Builder:
    """Builds dataclasses from data that passed the schema; what only Python can check becomes a problem."""

    def __init__(self) -> None:
        self.problems: list[tuple[JsonPath, str]] = []

    def build(self, cls: type[T], data: Any, path: JsonPath = ()) -> T:
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        source = data if isinstance(data, dict) else {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.metadata.get(NOT_IN_SCHEMA):
                continue
            key = yaml_key(f)
            if key not in source:
                continue
            if f.metadata.get(JSON):
                kwargs[f.name] = source[key]
            else:
                kwargs[f.name] = self.convert(hints[f.name], source[key], (*path, key))
        return cls(**kwargs)

    def convert(self, tp: Any, value: Any, path: JsonPath) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            if len(inner) > 1:  # a scalar or an object (alerts.notify's webhooks): the value's shape chooses
                objects = [a for a in inner if dataclasses.is_dataclass(a)]
                scalars = [a for a in inner if not dataclasses.is_dataclass(a)]
                return self.convert((objects if isinstance(value, dict) else scalars)[0], value, path)
            return self.convert(inner[0], value, path)
        if origin is typing.Literal:
            return value
        if origin is tuple:
            return tuple(self.convert(args[0], v, (*path, i)) for i, v in enumerate(value))
        if tp is Threshold:  # a value written as a scalar (5 or "0.5%"), not a mapping
            try:
                return Threshold.parse(value)
            except ValueError as exc:
                self.problems.append((path, str(exc)))
                return None
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.build(tp, value, path)
        if tp is bool or tp is str:
            return value
        if tp is int:
            return int(value)
        if tp is float:
            try:
                return float(value)
            except OverflowError:  # a whole number beyond any float, e.g. 1 followed by 400 zeros
                self.problems.append((path, "number too large"))
                return None
        if tp is Decimal:
            return Decimal(str(value))
        if tp is date:
            try:
                return date.fromisoformat(value)
            except (TypeError, ValueError) as exc:
                self.problems.append((path, f"{value!r} is not a real date ({exc})"))
                return None
        if tp is time:
            try:
                return time.fromisoformat(value)
            except (TypeError, ValueError) as exc:
                self.problems.append((path, f"{value!r} is not a time of day ({exc})"))
                return None
        raise TypeError(f"model type {tp!r} at {path} has no conversion")  # a model bug, caught by the unit tests


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]

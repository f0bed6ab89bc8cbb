"""Exact JSON for everything the harness writes into HERA or reads back: numbers are Decimal, never float.

`loads` parses with Decimal numbers; `dumps` writes Decimal exactly (json.dumps would need floats); `jdump` is the
compact form for values bound into SQL (metadata patches, journal bodies)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text, parse_float=Decimal)


def dumps(value: Any) -> str:
    """JSON text with Decimal written exactly."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else json.dumps(str(value))
    if isinstance(value, float):
        return dumps(Decimal(repr(value)))
    if isinstance(value, int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def jdump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)

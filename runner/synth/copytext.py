"""PostgreSQL COPY text-format encoding for the generator (fast, no per-value adaptation round trips)."""

from __future__ import annotations

import json
from random import Random
from typing import Any

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text(value: str | None) -> str:
    return NULL if value is None else value.translate(_ESCAPES)


def jsonb(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).translate(_ESCAPES)


def cents(amount: int) -> str:
    """Exact decimal text of an integer number of cents (money never passes through float)."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    return f"{sign}{amount // 100}.{amount % 100:02d}"


def new_uuid(rng: Random) -> str:
    """A version-4-shaped UUID drawn from the seeded generator: same seed, same ids."""
    h = f"{rng.getrandbits(122):031x}"
    # 122 random bits around the fixed version nibble (4) and variant bits (10xx → 8..b).
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-{h[19:31]}"


def row(*fields: str) -> str:
    return "\t".join(fields) + "\n"

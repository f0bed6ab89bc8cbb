"""The generator's COPY text encoding: exact money, valid uuids, escaping, and the hot-path JSON template."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from runner.synth import copytext as ct
from runner.synth import ledger


@given(st.integers(min_value=-10**15, max_value=10**15))
def test_cents_is_exact_decimal_text(amount: int) -> None:
    assert Decimal(ct.cents(amount)) == Decimal(amount) / 100
    assert re.fullmatch(r"-?\d+\.\d\d", ct.cents(amount))


def test_new_uuid_is_a_valid_v4_and_seeded() -> None:
    a = [ct.new_uuid(Random(7)) for _ in range(3)]
    assert len(set(a)) == 1  # same seed, same id
    rng = Random(8)
    ids = [ct.new_uuid(rng) for _ in range(2000)]
    assert len(set(ids)) == 2000
    for value in ids[:200]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value


@given(st.text())
def test_text_escapes_everything_copy_treats_specially(value: str) -> None:
    encoded = ct.text(value)
    assert "\t" not in encoded and "\n" not in encoded and "\r" not in encoded
    decoded = re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[m.group(1)], encoded)
    assert decoded == value
    assert ct.text(None) == ct.NULL


@given(st.integers(min_value=0, max_value=10**12))
def test_plain_header_metadata_template_equals_json(amount: int) -> None:
    text = ct.cents(amount)
    meta = {"finance_dna_version": "v1", "gl_balanced": True, "total_dr": text, "total_cr": text,
            "gl_posting_required": True, "source": "synthetic"}
    assert ledger._PLAIN_META.format(amount=text) == ct.jsonb(meta)

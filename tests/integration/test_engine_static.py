"""Engine pieces that need no database: the off-peak window, run ids, the review statements."""

from __future__ import annotations

import dataclasses
import re
import threading
from datetime import UTC, datetime, time

from runner.compile import template_names
from runner.compile.params import override_params
from runner.engine import new_run_id, review_statements
from runner.engine.context import validate_run_id
from runner.engine.window import Gate, is_open, seconds_until_open
from runner.spec.model import LineOverride, Mapping, OffPeakWindow
from tests.integration.test_engine_support import phase7

BERLIN = OffPeakWindow(start=time(22, 0), end=time(6, 0), timezone="Europe/Berlin",
                       days=("mon", "tue", "wed", "thu", "fri"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_window_wraps_midnight_and_follows_the_time_zone_and_days() -> None:
    assert is_open(BERLIN, at("2025-06-02T22:30:00+02:00"))  # Monday night, Berlin summer time
    assert is_open(BERLIN, at("2025-06-03T05:59:00+02:00"))  # still Monday's window
    assert not is_open(BERLIN, at("2025-06-03T06:00:00+02:00"))
    assert not is_open(BERLIN, at("2025-06-02T21:59:00+02:00"))
    assert is_open(BERLIN, at("2025-06-07T02:00:00+02:00"))  # Saturday 02:00 belongs to Friday's window
    assert not is_open(BERLIN, at("2025-06-07T23:00:00+02:00"))  # Saturday night: no window opens
    assert is_open(BERLIN, at("2025-06-02T20:30:00+00:00"))  # the same instant written in UTC
    assert seconds_until_open(BERLIN, at("2025-06-07T23:00:00+02:00")) == 47 * 3600  # Monday 22:00
    assert seconds_until_open(None, at("2025-06-07T23:00:00+02:00")) == 0
    day = OffPeakWindow(start=time(9, 0), end=time(17, 0))
    assert is_open(day, at("2025-06-04T12:00:00+00:00")) and not is_open(day, at("2025-06-04T18:00:00+00:00"))


def test_gate_blocks_only_when_closed_and_not_now() -> None:
    closed_clock = lambda: at("2025-06-07T23:00:00+02:00")  # noqa: E731
    Gate(BERLIN, now=True, stop=threading.Event(), clock=closed_clock).wait()  # --now: never waits
    Gate(BERLIN, now=False, stop=threading.Event(), clock=lambda: at("2025-06-02T23:00:00+02:00")).wait()
    stop = threading.Event()
    stop.set()
    Gate(BERLIN, now=False, stop=stop, clock=closed_clock).wait()  # interruptible: returns once stopped


def test_run_ids() -> None:
    rid = new_run_id(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert re.fullmatch(r"run-20250102T030405Z-[0-9a-f]{4}", rid) and validate_run_id(rid)
    assert not any(validate_run_id(x) for x in ("", "a b", "x" * 65, "a/b", "a;b", "ü"))
    assert validate_run_id("A.b_c-1" * 9) is True  # 63 characters


def test_review_renders_every_run_and_rollback_template_with_values_bound() -> None:
    spec = phase7()
    statements = review_statements(spec)
    names = {s.name for s in statements}
    assert {t for t in template_names() if t.startswith(("run/", "rollback/"))} <= names
    for stmt in statements:
        for mapping in spec.mappings:
            assert mapping.to is None or mapping.to not in stmt.text, stmt.name
        assert "81973630" not in stmt.text  # the actor is bound too
        assert "%(p" in stmt.text or not stmt.params


def test_line_override_globs_become_anchored_regexes() -> None:
    spec = phase7()
    mapping = Mapping(from_="HERA.FINANCE.GL.TXN.JOURNAL.v1", to="HERA.ACCOUNTING.GL.TXN.JOURNAL.v2",
                      tier="reverse_repost", lines=(LineOverride(match="HERA.FINANCE.GL.DR.**.v1",
                                                                 to="HERA.ACCOUNTING.GL.LINE.DEBIT.v2"),
                                                    LineOverride(side="CR", line_type="gl",
                                                                 to="hera.accounting.gl.line.credit.V2")))
    spec = dataclasses.replace(spec, mappings=(mapping,))
    params = override_params(spec)
    assert params["ov_pattern"][0] is not None and params["ov_pattern"][0].startswith("^(?:")
    assert re.fullmatch(params["ov_pattern"][0][1:-1], "HERA.FINANCE.GL.DR.CASH.v1")
    assert not re.fullmatch(params["ov_pattern"][0][1:-1], "HERA.FINANCE.GL.CR.CASH.v1")
    assert params["ov_to"] == ["HERA.ACCOUNTING.GL.LINE.DEBIT.v2", "HERA.ACCOUNTING.GL.LINE.CREDIT.v2"]
    assert params["ov_side"] == [None, "CR"] and params["ov_type"] == [None, "gl"]

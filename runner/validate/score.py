"""The integrity score: one deterministic number from 0 to 100 per organisation and for the whole run.

Definition (also in docs/results-schema.md, "integrity_score"):

    records_checked = PASSED + FAILED level-1 records (the records the run migrated; quarantined and rollback
                      conflicts are REQUIRES_REVIEW: outside the score, counted by the error-rate alert)
    base            = 100 * PASSED / records_checked          (undefined, None, when nothing was checked: a score
                                                               over zero records would be a vacuous 100)
    penalty         = sum over checks of
                        10   severity critical, status failed or error
                         2   severity warning,  status failed or error
                         0.5 severity critical or warning, status warning (inside the warn band)
                         0   anything else (passed; severity info)
    integrity_score = max(0, base - penalty), rounded DOWN to 2 decimals

Everything is Decimal arithmetic, so the same inputs always give the same score and rounding never lifts a score
over an alert threshold. A single failed critical check (whatever its level, including the expected-effect diff,
which is a critical system check) costs 10 points, so with the default critical threshold of 95 it always fires
the critical alert even when every record passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

PENALTY_CRITICAL = Decimal(10)
PENALTY_WARNING = Decimal(2)
PENALTY_WARN_BAND = Decimal("0.5")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Penalty:
    check_id: str
    severity: str
    status: str
    points: Decimal


def penalty_for(severity: str, status: str) -> Decimal:
    if status in ("failed", "error"):
        return PENALTY_CRITICAL if severity == "critical" else PENALTY_WARNING if severity == "warning" else Decimal(0)
    if status == "warning" and severity in ("critical", "warning"):
        return PENALTY_WARN_BAND
    return Decimal(0)


def penalties(checks: Iterable[tuple[str, str, str]]) -> list[Penalty]:
    """(check id, severity, status) -> the penalties that apply, in input order."""
    out = []
    for check_id, severity, status in checks:
        points = penalty_for(severity, status)
        if points:
            out.append(Penalty(check_id, severity, status, points))
    return out


def integrity_score(passed: int, failed: int, checks: Iterable[tuple[str, str, str]]) -> Decimal | None:
    """The score of `passed`/`failed` level-1 records and the (id, severity, status) of every check; None when
    no record was checked."""
    if passed < 0 or failed < 0:
        raise ValueError("record counts cannot be negative")
    checked = passed + failed
    if checked == 0:
        return None
    base = Decimal(100) * passed / checked
    score = base - sum((p.points for p in penalties(checks)), Decimal(0))
    score = min(max(score, Decimal(0)), Decimal(100))
    return score.quantize(_CENT, rounding=ROUND_FLOOR)

"""What the validation takes from a run, as typed values: the engine's RunResult (a `run` that just finished) seen
through the few facts results.json reports. `validate RUN_ID` later has no RunResult: the journal in the database
(read by the validation's own statements) stands in for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from runner.engine.outcome import RunResult


@dataclass(frozen=True)
class OrgFacts:
    organization_id: str
    organization_code: str
    status: str
    candidates: int  # both tiers
    migrated: int  # reverse + repost
    aliased: int
    quarantined: int


@dataclass(frozen=True)
class RunFacts:
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    seconds: dict[str, float] = field(default_factory=dict)  # per engine phase, summed over organisations
    organizations: dict[str, OrgFacts] = field(default_factory=dict)
    conflicts: frozenset[str] = frozenset()  # transactions a rollback left for review

    @classmethod
    def of(cls, result: RunResult | None) -> RunFacts | None:
        if result is None:
            return None
        orgs = {o.organization_id: OrgFacts(
            organization_id=o.organization_id, organization_code=o.organization_code, status=o.status,
            candidates=sum(o.candidates.values()), migrated=o.migrated, aliased=o.aliased,
            quarantined=o.quarantined_total) for o in result.organizations}
        return cls(status=result.status, started_at=_aware(result.started_at), finished_at=_aware(result.finished_at),
                   seconds=dict(result.seconds), organizations=orgs)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)

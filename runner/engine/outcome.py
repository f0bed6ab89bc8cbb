"""What `run`, `status` and `rollback` return: plain dataclasses with `as_dict()` (JSON-ready)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

TIERS = ("reverse_repost", "reporting_alias")
QUARANTINE_SAMPLE = 1000  # quarantined candidates listed per org in a result (all are counted)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


@dataclass
class Quarantined:
    transaction_id: str
    tier: str
    reason: str
    sqlstate: str | None = None
    message: str | None = None
    attempts: int = 1


@dataclass
class OrgRunResult:
    """One organisation of a run. Counts are cumulative over the run id (all invocations, from the journal);
    `session` holds what this invocation did."""

    organization_id: str
    organization_code: str
    status: str = "pending"  # completed | incomplete | failed | busy
    candidates: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    migrated: int = 0  # reverse_repost done (one reversal + one repost each)
    aliased: int = 0  # reporting_alias done
    quarantined: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    quarantine: list[Quarantined] = field(default_factory=list)
    remaining: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))  # eligible, left locked
    entities: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    session: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase
    chunk_seconds: dict[str, float] = field(default_factory=dict)  # per tier: max and mean transaction time
    error: str | None = None

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    def as_dict(self) -> dict[str, Any]:
        d = _json(asdict(self))
        d["quarantined_total"] = self.quarantined_total
        return d  # type: ignore[no-any-return]


@dataclass
class RunResult:
    run_id: str
    spec: dict[str, Any]
    status: str  # completed | incomplete | failed
    started_at: datetime
    finished_at: datetime | None = None
    organizations: list[OrgRunResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall-clock per phase, summed over orgs
    rates: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def org(self, organization_id: str) -> OrgRunResult:
        return next(o for o in self.organizations if o.organization_id == organization_id)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "spec": self.spec, "status": self.status,
                "started_at": _json(self.started_at), "finished_at": _json(self.finished_at),
                "seconds": self.seconds, "rates": self.rates, "options": _json(self.options),
                "organizations": [o.as_dict() for o in self.organizations]}


@dataclass
class OrgStatus:
    organization_id: str
    organization_code: str
    journal_id: str
    status: str
    spec: dict[str, Any]
    started_at: str | None
    candidates: dict[str, int]
    migrated: int
    aliased: int
    quarantined: dict[str, int]
    quarantine_reasons: dict[str, int]
    chunks: int
    phase: str | None
    last_chunk_at: datetime | None
    finished_at: datetime | None
    fields: dict[str, Any] = field(default_factory=dict)  # every checkpoint field as stored

    @property
    def done(self) -> int:
        return self.migrated + self.aliased + sum(self.quarantined.values())

    @property
    def total(self) -> int:
        return sum(self.candidates.values())

    def as_dict(self) -> dict[str, Any]:
        """`migrated` as results.json's counts define it (both tiers); the journal's own counter of reverse +
        reposts is `reverse_reposted`."""
        d = _json(asdict(self))
        d["reverse_reposted"] = self.migrated
        d["migrated"] = self.migrated + self.aliased
        d["done"] = self.done
        d["total"] = self.total
        return d  # type: ignore[no-any-return]


@dataclass
class RunStatus:
    run_id: str
    status: str  # running | completed | incomplete | failed | rolled_back | requires_review | mixed
    # (also rolled_back_to_checkpoint | partially_rolled_back: resumable)
    organizations: list[OrgStatus] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # per (name, organisation), oldest cut first

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status,
                "organizations": [o.as_dict() for o in self.organizations],
                "checkpoints": [dict(c) for c in self.checkpoints]}


@dataclass
class Conflict:
    transaction_id: str
    role: str  # original | alias
    reason: str


@dataclass
class OrgRollbackResult:
    organization_id: str
    organization_code: str
    status: str = "pending"  # rolled_back | requires_review | failed | busy
    originals_restored: int = 0
    reposts_deleted: int = 0
    reversals_deleted: int = 0
    aliases_restored: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    entities: dict[str, int] = field(default_factory=dict)
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return _json(asdict(self))  # type: ignore[no-any-return]


@dataclass
class RollbackResult:
    run_id: str
    status: str  # rolled_back | requires_review | failed
    organizations: list[OrgRollbackResult] = field(default_factory=list)
    seconds: float = 0.0
    scope: dict[str, Any] = field(default_factory=dict)  # {to: checkpoint | None, only: [parts] | []}

    def org(self, organization_id: str) -> OrgRollbackResult:
        return next(o for o in self.organizations if o.organization_id == organization_id)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "seconds": round(self.seconds, 3),
                "scope": dict(self.scope), "organizations": [o.as_dict() for o in self.organizations]}

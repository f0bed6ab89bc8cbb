"""What one chunk works with and what it returns (shared by the tier modules and the org driver)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from runner.compile.jsonx import jdump
from runner.compile.params import Mappings, override_params, repost_code_suffix, run_guard, scope_params, spec_ref
from runner.engine.context import Sql
from runner.engine.outcome import Quarantined
from runner.spec.model import Spec


@dataclass
class ChunkCtx:
    """One organisation of one run: the SQL renderer with every per-org parameter a chunk statement needs."""

    spec: Spec
    run_id: str
    org_id: str
    journal_id: str
    mappings: Mappings
    sql: Sql = field(init=False)

    def __post_init__(self) -> None:
        self.sql = Sql(org_id=self.org_id, journal_id=self.journal_id, run_id=self.run_id,
                       spec_json=jdump(spec_ref(self.spec)), scope=scope_params(self.spec),
                       guard=run_guard(self.run_id),
                       code_suffix=repost_code_suffix(self.spec),
                       tolerance=Decimal(self.spec.validations.builtin.gl_balanced.tolerance),
                       **self.mappings.params(), **override_params(self.spec))

    def candidates(self, conn: Any, tier: str, *, exclude_quarantined: bool) -> list[str]:
        """Eligible candidate ids of `tier` right now, in id order (no locks)."""
        return [r[0] for r in self.sql.rows(conn, "run/scan", tier=tier, exclude_quarantined=exclude_quarantined)]


@dataclass
class ChunkOutcome:
    tier: str
    done: list[str] = field(default_factory=list)  # migrated / aliased in this chunk
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return len(self.done) + len(self.quarantined)

"""Load seeded synthetic HERA organisations with COPY and report what was created (the ground truth).

Speed: rows stream as COPY text in chunks (headers, then their lines) so Python and the server work at the
same time, in one transaction under runner.synth.bulk's bulk mode (row triggers off, indexes, foreign keys and
smart-code CHECKs re-established set-based at the end). The generator writes rows in exactly the state HERA's
triggers and RPCs would leave them (actor set, upper-case transaction_type, header codes `.v1` on insert and
`.V1` after updates), which `_verify` checks before commit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from queue import Empty, Queue
from random import Random
from typing import Any

import psycopg

from runner.compile import render
from runner.db.connect import connect
from runner.db.schema import installed
from runner.errors import DataError
from runner.synth import bulk, ledger, masterdata
from runner.synth.profiles import load_profiles

log = logging.getLogger(__name__)

SIX = bulk.SIX
MASTER_COLUMNS = {
    "core_organizations": masterdata.ORG_COLUMNS,
    "core_entities": masterdata.ENTITY_COLUMNS,
    "core_dynamic_data": masterdata.DYNAMIC_COLUMNS,
    "core_relationships": masterdata.RELATIONSHIP_COLUMNS,
}
CHUNK = 5_000  # transactions per COPY pair


@dataclass
class OrgResult:
    organization_id: str
    organization_code: str
    actor_id: str
    size: str
    seed: int
    rows: dict[str, int]
    posting_rules: int
    fiscal_periods: dict[str, int]
    truth: ledger.LedgerTruth
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization_id, "organization_code": self.organization_code,
            "actor_id": self.actor_id, "size": self.size, "seed": self.seed, "rows": self.rows,
            "posting_rules": self.posting_rules, "fiscal_periods": self.fiscal_periods,
            "transactions": {code: t.as_dict() for code, t in sorted(self.truth.by_code.items())},
            "reversal_twins": self.truth.reversal_twins, "seconds": round(self.seconds, 3),
        }

    def by_code(self) -> tuple[list[str], list[list[str]]]:
        """What was generated per v1 header code, as (columns, rows) of a table: original headers, the open ones
        by status, the rest by fate (in a closed period, reversed with a `-REV` twin, voided), and a total."""
        codes = sorted(self.truth.by_code.items())
        statuses = sorted({s for _, t in codes for s in t.open_by_status})
        columns = ["v1 code", "headers", *(f"open {s}" for s in statuses), "in closed periods", "reversed", "voided"]

        def row(name: str, ts: list[ledger.CodeTruth]) -> list[str]:
            counts = [sum(t.originals for t in ts), *(sum(t.open_by_status.get(s, 0) for t in ts) for s in statuses),
                      sum(t.closed for t in ts), sum(t.reversed for t in ts), sum(t.voided for t in ts)]
            return [name, *(f"{n:,}" for n in counts)]

        return columns, [*(row(code, [t]) for code, t in codes), row("total", [t for _, t in codes])]


@dataclass
class GenerationResult:
    organizations: list[OrgResult] = field(default_factory=list)
    seconds: float = 0.0
    bulk: bulk.BulkReport = field(default_factory=bulk.BulkReport)

    @property
    def rows_total(self) -> int:
        return sum(sum(o.rows.values()) for o in self.organizations)

    def summary(self) -> str:
        lines = [f"generated {len(self.organizations)} org(s), {self.rows_total:,} rows in {self.seconds:.1f}s "
                 f"({self.rows_total / max(self.seconds, 1e-9):,.0f} rows/s)"]
        for o in self.organizations:
            t = o.truth
            open_total = sum(sum(c.open_by_status.values()) for c in t.by_code.values())
            lines.append(
                f"  {o.organization_code} {o.organization_id}: {o.rows['universal_transactions']:,} headers, "
                f"{o.rows['universal_transaction_lines']:,} lines, {o.rows['core_entities']:,} entities, "
                f"{o.posting_rules} posting rules, {o.fiscal_periods['open']} open + "
                f"{o.fiscal_periods['closed']} closed periods; {open_total:,} open, "
                f"{sum(c.closed for c in t.by_code.values()):,} in closed periods, "
                f"{sum(c.reversed for c in t.by_code.values()):,} reversed, "
                f"{sum(c.voided for c in t.by_code.values()):,} voided")
        return "\n".join(lines)


def org_code(size: str, seed: int, index: int) -> str:
    return f"SYN-{size[0].upper()}{seed}-{index:03d}"


def generate(dsn: str, *, size: str, orgs: int = 1, seed: int = 42, progress: bool = False) -> GenerationResult:
    profiles = load_profiles()
    sz = profiles.size(size)
    if orgs < 1:
        raise DataError("--orgs must be at least 1")
    codes = [org_code(size, seed, i) for i in range(1, orgs + 1)]
    result = GenerationResult()
    t0 = time.monotonic()
    with connect(dsn) as conn:
        if not installed(conn):
            raise DataError("the HERA core schema is not installed in this database",
                            hint="run 'hera-migrate db schema' first (or drop --no-schema)")
        existing = render("synth/existing_orgs", codes=codes)
        taken = conn.execute(existing.text, existing.params).fetchall()
        if taken:
            raise DataError(f"organisation(s) {', '.join(r[0] for r in taken)} already exist in this database",
                            hint="the same size and seed give the same orgs; pass another --seed")
        expected_lines = sz.transactions * 4 * orgs
        with _bar(progress, sz.transactions * orgs) as advance, bulk.bulk_mode(conn, expected_lines) as report:
            for index, code in enumerate(codes, start=1):
                result.organizations.append(_load_org(conn, profiles, sz, seed, index, code, advance))
            org_ids = [o.organization_id for o in result.organizations]
            _verify(conn, org_ids)
            bulk.verify_patterns(conn, report, org_ids)
        result.bulk = report
        conn.commit()
    with connect(dsn, autocommit=True) as conn:
        for table in SIX:
            conn.execute(render("synth/analyze", table=table).text)
    result.seconds = time.monotonic() - t0
    return result


def _load_org(conn: psycopg.Connection[Any], profiles: Any, sz: Any, seed: int, index: int, code: str,
              advance: Any) -> OrgResult:
    t0 = time.monotonic()
    rng = Random(f"hera-synth:{sz.name}:{seed}:{index}")
    md = masterdata.build(profiles, sz, rng, org_code=code, org_name=f"Synthetic Salon {code}")
    rows = {t: 0 for t in SIX}
    with conn.cursor() as cur:
        for table, columns in MASTER_COLUMNS.items():
            rows[table] += _copy(cur, table, columns, md.rows[table])
        writer = ledger.LedgerWriter(profiles, md, rng)
        for headers, lines, count in _chunks(writer, sz.transactions, code):
            rows["universal_transactions"] += _copy(cur, "universal_transactions", ledger.HEADER_COLUMNS, headers)
            rows["universal_transaction_lines"] += _copy(cur, "universal_transaction_lines", ledger.LINE_COLUMNS,
                                                         lines)
            advance(count)
    closed = sum(p.closed for p in md.periods)
    return OrgResult(organization_id=md.org_id, organization_code=code, actor_id=md.actor_id, size=sz.name,
                     seed=seed, rows=rows, posting_rules=md.posting_rules,
                     fiscal_periods={"open": len(md.periods) - closed, "closed": closed}, truth=writer.truth,
                     seconds=time.monotonic() - t0)


def _chunks(writer: ledger.LedgerWriter, count: int, code: str) -> Iterator[tuple[list[str], list[str], int]]:
    """Chunks of (header rows, line rows, transactions), drawn by a producer thread.

    The thread builds the next chunk while the caller waits on the server's COPY (psycopg releases the GIL while
    waiting), so Python and PostgreSQL work at the same time. One producer keeps the seeded draw order intact.
    """
    queue: Queue[tuple[list[str], list[str], int] | BaseException | None] = Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            headers: list[str] = []
            lines: list[str] = []
            pending = 0
            for hdr, lns in writer.transactions(count, code):
                headers.extend(hdr)
                lines.extend(lns)
                pending += 1
                if pending == CHUNK:
                    queue.put((headers, lines, pending))
                    headers, lines, pending = [], [], 0
                    if stop.is_set():
                        return
            if pending:
                queue.put((headers, lines, pending))
            queue.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            queue.put(exc)

    thread = threading.Thread(target=produce, name="synth-producer", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)
        thread.join()


def _copy(cur: psycopg.Cursor[Any], table: str, columns: tuple[str, ...], rows: list[str]) -> int:
    if not rows:
        return 0
    with cur.copy(render("synth/copy_in", table=table, columns=columns).text) as copy:
        copy.write("".join(rows))
    return len(rows)


def _verify(conn: psycopg.Connection[Any], org_ids: list[str]) -> None:
    """What HERA's triggers would have enforced, checked set-based before commit (a generator bug aborts)."""
    verify = render("synth/verify", org_ids=org_ids)
    problems = conn.execute(verify.text, verify.params).fetchall()
    if problems:
        raise DataError("generated data failed verification: " + "; ".join(f"{p} ({n} rows)" for p, n in problems))


@contextmanager
def _bar(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("generating transactions"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("txns", total=total)
        yield lambda n: bar.advance(task, n)




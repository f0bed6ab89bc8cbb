"""How fast the engine will go on this database, measured instead of assumed (`plan`'s estimate).

Rates measured on this database (`build_plan(calibrate=True)`, the default). After plan's read-only transaction,
a second, separate transaction reverses and reposts a handful of the plan's own tier-2 candidates through the very
statement the engine runs (run/reverse_repost: hera_txn_reverse_v1 + hera_txn_emit_v1) and aliases a handful of
tier-3 candidates (run/alias), timing each batch, and is then ROLLED BACK. It writes, so it is bounded and undone
by construction: every statement has a statement_timeout, locks are never waited for (SKIP LOCKED, lock_timeout),
the server ends the transaction if the client stalls in it, the transaction is only ever rolled back, and an
interrupted or killed client leaves an open transaction the server rolls back when the session ends (nothing of it
is ever committed; the core has no sequences a rollback would leave advanced). On a database that refuses writes
(a standby, default_transaction_read_only, a read-only user) the calibration falls back to the default rates and
the basis says why. `calibrate=False` (`plan --no-calibrate`) skips it: plan is then strictly read-only.

Several workers (`plan --workers N`, default the spec's `execution.workers`): the run spreads them over the
organisations and sessions of one organisation, so the calibration also times the tier-2 statement in up to
PARALLEL_MAX_SESSIONS sessions at once, each in its own transaction that is rolled back, and the estimate divides
by the measured factor (`Scaling`), not by N: on a server with fewer free cores than sessions it is far below N.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import psycopg

from runner import contract
from runner.compile import Statement, render
from runner.compile.jsonx import jdump
from runner.compile.params import (
    Mappings,
    override_params,
    repost_code,
    reversal_reason,
    run_guard,
    scope_params,
    spec_ref,
)
from runner.db.connect import connect
from runner.errors import HarnessError
from runner.spec.model import Spec

TIERS = ("reverse_repost", "reporting_alias")
# Throughput used when nothing could be measured (calibrate=False, a read-only database, no candidates): what the
# engine reached in one session on this 2-core machine (bench and calibrated runs: ~310-330 tier-2 txn/s on our core,
# ~160 on production's schema; ~2,100-2,400 alias rows/s). Not a measurement of the target: the basis says so.
DEFAULT_RATES = {"reverse_repost": 300.0, "reporting_alias": 2_000.0}

# Names the calibration's writes (reversal reason, migration metadata, repost codes) should anyone see them inside
# the transaction; they are rolled back with it.
CALIBRATION_RUN_ID = "plan-calibration"
CALIBRATION_WARMUP = 3  # rows per tier timed apart, not counted: the first call compiles HERA's PL/pgSQL and warms
#                         caches, which the engine pays once per session, not per row
CALIBRATION_BATCH = 5  # rows per timed statement; the spread of the batches' rates is the measured range
CALIBRATION_SAMPLE = 20  # timed rows per tier at most
CALIBRATION_BUDGET_SECONDS = {"reverse_repost": 1.0, "reporting_alias": 0.5}  # no new batch once spent
CALIBRATION_STATEMENT_TIMEOUT = "5s"  # one statement of a handful of rows; a database that slow is not calibrated
CALIBRATION_LOCK_TIMEOUT = "200ms"  # as the engine: give way to live traffic rather than queue behind it
CALIBRATION_IDLE_TIMEOUT = "10s"  # a stalled client: the server ends (rolls back) the transaction by itself
# The engine's rate as a fraction of the bare statements the calibration times. Tier 2: the engine adds the chunk's
# lock query, the marks, the post-write checks, the journal and a commit per chunk; the bench measures it at
# 0.8-1.0 of HERA's bare pair (and a small and a medium org here at 0.91 of the calibration's rate). Tier 3: the
# engine's UPDATE of a whole chunk spreads per-statement costs the calibration's 5-row batches pay, so at scale it
# beats them (1.18x on a medium org), while on a small org its few chunks' fixed costs weigh (0.45-1.05x).
ENGINE_FACTOR = {"reverse_repost": (0.8, 1.0), "reporting_alias": (0.5, 1.2)}
# Several workers: the tier-2 statement timed in this many sessions at once at most (each its own rolled-back
# transaction on its own SKIP LOCKED sample); more workers get the factor measured at this many, never extrapolated.
PARALLEL_MAX_SESSIONS = 4
PARALLEL_SAMPLE = 30  # timed rows per session at most
PARALLEL_BUDGET_SECONDS = 1.0
PARALLEL_START_TIMEOUT = 30.0  # seconds the sessions wait for each other at the start line
TIER_WORK = {"reverse_repost": "reverse+repost", "reporting_alias": "alias updates"}
ENGINE_WORK = {"reverse_repost": "the engine adds its chunk locks, marks, checks, journal and commits: it runs at",
               "reporting_alias": "the engine's whole-chunk UPDATEs, with their lock query and commit, run at"}



class Sampled(Protocol):
    """An organisation of the plan, as the calibration sees it."""

    organization_id: str
    organization_code: str

    def candidates(self, tier: str | None = None) -> int: ...


@dataclass
class TierRate:
    """The rate (candidates/s) the estimate uses for one tier, and where it comes from."""

    tier: str
    rate: float
    low: float
    high: float
    measured: bool
    reason: str | None = None  # why not measured
    samples: int = 0  # rows timed (warm-up excluded)
    seconds: float = 0.0  # their statements' time
    statement_rate: float | None = None  # samples / seconds: the bare statements, before the engine factor
    statement_low: float | None = None  # slowest and fastest batch
    statement_high: float | None = None
    organization_code: str | None = None  # the organisation sampled

    @classmethod
    def default(cls, tier: str, rate: float, reason: str) -> TierRate:
        return cls(tier=tier, rate=rate, low=rate, high=rate, measured=False, reason=reason)

    def basis(self) -> str:
        work = TIER_WORK[self.tier]
        if not self.measured:
            return f"{self.tier}: not measured ({self.reason}); default {self.rate:,.0f}/s"
        lo, hi = ENGINE_FACTOR[self.tier]
        return (f"{self.tier}: measured on this database ({self.organization_code}): {self.samples} {work} in "
                f"{self.seconds:.3f} s → {self.statement_rate:,.0f}/s (batches {self.statement_low:,.0f}–"
                f"{self.statement_high:,.0f}/s), rolled back; {ENGINE_WORK[self.tier]} {lo:.1f}–{hi:.1f}× of "
                f"these statements → {self.low:,.0f}–{self.high:,.0f}/s, {self.rate:,.0f}/s central")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["tier"]
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


@dataclass
class Scaling:
    """How `workers` sessions compare with one: the tier-2 statement timed in `sessions` sessions at once."""

    workers: int
    sessions: int = 1
    factor: float = 1.0  # combined rate of `sessions` sessions ÷ the one-session rate
    measured: bool = False
    reason: str | None = None  # why not measured
    rate: float | None = None  # the sessions' combined statement rate
    samples: int = 0

    def at(self, n: int) -> float:
        """The factor for n sessions: linear between one session and the measured point, flat beyond it."""
        if n <= 1 or self.sessions <= 1:
            return 1.0
        if n >= self.sessions:
            return self.factor
        return 1.0 + (self.factor - 1.0) * (n - 1) / (self.sessions - 1)

    def basis(self) -> str:
        if self.workers <= 1:
            return "1 worker: one session"
        if not self.measured:
            return f"{self.workers} workers: not measured ({self.reason}); estimated as one session"
        beyond = (f"; {self.workers} workers are estimated at the factor of {self.sessions}"
                  if self.workers > self.sessions else "")
        return (f"{self.workers} workers: {self.samples} reverse+repost in {self.sessions} sessions at once → "
                f"{self.rate:,.0f}/s, {self.factor:.2f}× one session (rolled back){beyond}")

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class Calibration:
    rates: dict[str, TierRate]
    seconds: float = 0.0  # wall time of the calibration transaction (0 when not attempted)
    attempted: bool = False  # a read-write transaction was opened (and rolled back)
    scaling: Scaling | None = None


def calibration_statements(spec: Spec, org_id: str | None, mappings: Mappings) -> list[Statement]:
    """The calibration's session settings and its sample of each tier (review: `compile --out`)."""
    return [_calibration_session(org_id)] + [_calibration_sample(spec, org_id, mappings, t) for t in TIERS]


def _calibration_session(org_id: str | None) -> Statement:
    return render("plan/calibrate_session", org_id=org_id, statement_timeout=CALIBRATION_STATEMENT_TIMEOUT,
                  lock_timeout=CALIBRATION_LOCK_TIMEOUT, idle_timeout=CALIBRATION_IDLE_TIMEOUT)


def _calibration_sample(spec: Spec, org_id: str | None, mappings: Mappings, tier: str,
                        timed: int = CALIBRATION_SAMPLE) -> Statement:
    return render("plan/calibrate_sample", org_id=org_id, tier=tier, scope=scope_params(spec),
                  guard=run_guard(CALIBRATION_RUN_ID), sample=CALIBRATION_WARMUP + timed, **mappings.params())


# --- calibration ------------------------------------------------------------------------------------------------

class _NotMeasured(Exception):
    """Why one tier (or the whole calibration) could not be measured; the text goes into the basis."""


def calibrate_rates(dsn: str, spec: Spec, orgs: Sequence[Sampled], mappings: Mappings,
                    defaults: dict[str, float], workers: int = 1) -> Calibration:
    """Measure each tier's rate on the organisation with the most candidates of it, inside one transaction that is
    rolled back whatever happens. Anything that stops it (a read-only database, missing privileges, a timeout, a
    lost connection) makes that tier fall back to its default rate with the reason. With several workers, then
    how much faster several sessions at once go (measure_scaling)."""
    out = Calibration(rates={})
    todo: dict[str, Sampled] = {}
    for tier in TIERS:
        org = max(orgs, key=lambda o: o.candidates(tier), default=None)
        if org is None or org.candidates(tier) == 0:
            out.rates[tier] = TierRate.default(tier, defaults[tier], "no candidate of this tier in scope")
        else:
            todo[tier] = org
    if not todo:
        out.scaling = Scaling(workers=max(1, workers), reason="no candidate to time" if workers > 1 else None)
        return out
    t0 = time.monotonic()
    try:
        conn = connect(dsn)
    except HarnessError as exc:
        return _fallback(out, todo, defaults, _reason(exc))
    try:
        # force_rollback: the transaction ends in ROLLBACK on every path; close() without a commit, and a client
        # that dies, end it the same way on the server.
        with conn.transaction(force_rollback=True):
            out.attempted = True
            for tier, org in todo.items():
                try:
                    with conn.transaction():  # a savepoint: a failed tier does not spoil the other
                        out.rates[tier] = _measure(conn, spec, org, mappings, tier)
                except (_NotMeasured, psycopg.Error) as exc:
                    out.rates[tier] = TierRate.default(tier, defaults[tier], _reason(exc))
    except psycopg.Error as exc:  # the connection itself failed: whatever was not measured falls back
        _fallback(out, {t: o for t, o in todo.items() if t not in out.rates}, defaults, _reason(exc))
    finally:
        conn.close()
    tier2 = out.rates.get("reverse_repost")
    if workers > 1 and tier2 is not None and tier2.measured and tier2.statement_rate:
        out.scaling = measure_scaling(dsn, spec, todo["reverse_repost"], mappings, workers, tier2.statement_rate)
    else:
        out.scaling = Scaling(workers=max(1, workers), reason="one-session tier-2 rate not measured"
                              if workers > 1 else None)
    out.seconds = time.monotonic() - t0
    return out


def measure_scaling(dsn: str, spec: Spec, org: Sampled, mappings: Mappings, workers: int,
                    one_session_rate: float) -> Scaling:
    """The tier-2 statement in min(workers, PARALLEL_MAX_SESSIONS) sessions at once, each in its own transaction on
    its own sample of `org` (SKIP LOCKED makes the samples disjoint), every one rolled back; the combined rate over
    the one-session rate is the factor. Anything that stops it leaves the estimate at one session, with the reason."""
    sessions = min(workers, PARALLEL_MAX_SESSIONS)
    start = threading.Barrier(sessions + 1)
    results: list[tuple[int, float] | BaseException | None] = [None] * sessions

    def session(i: int) -> None:
        try:
            with connect(dsn) as conn, conn.transaction(force_rollback=True):
                settings = _calibration_session(org.organization_id)
                conn.execute(settings.text, settings.params)
                sample = _calibration_sample(spec, org.organization_id, mappings, "reverse_repost", PARALLEL_SAMPLE)
                rows = conn.execute(sample.text, sample.params).fetchall()
                if len(rows) > CALIBRATION_WARMUP:  # this session's compile and caches, timed apart
                    _time_batch(conn, spec, org.organization_id, "reverse_repost", rows[:CALIBRATION_WARMUP])
                    rows = rows[CALIBRATION_WARMUP:]
                start.wait(PARALLEL_START_TIMEOUT)
                began, n = time.monotonic(), 0
                for pos in range(0, len(rows), CALIBRATION_BATCH):
                    if n and time.monotonic() - began > PARALLEL_BUDGET_SECONDS:
                        break
                    batch = rows[pos:pos + CALIBRATION_BATCH]
                    _time_batch(conn, spec, org.organization_id, "reverse_repost", batch)
                    n += len(batch)
                results[i] = (n, time.monotonic())
        except BaseException as exc:  # reported as the reason; the other sessions must not wait for this one
            start.abort()
            results[i] = exc

    threads = [threading.Thread(target=session, args=(i,), name=f"hera-calibrate-{i}") for i in range(sessions)]
    for t in threads:
        t.start()
    try:
        start.wait(PARALLEL_START_TIMEOUT)
        began = time.monotonic()
    except threading.BrokenBarrierError:
        began = 0.0
    for t in threads:
        t.join()
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed or not began:
        reason = _reason(failed[0]) if failed else "the sessions did not start together"
        return Scaling(workers=workers, sessions=sessions, reason=reason)
    done = [r for r in results if isinstance(r, tuple)]
    timed = sum(n for n, _ in done)
    if any(n == 0 for n, _ in done) or timed < sessions * CALIBRATION_BATCH:
        return Scaling(workers=workers, sessions=sessions,
                       reason=f"too few candidates to time {sessions} sessions at once")
    wall = max(end for _, end in done) - began
    rate = timed / wall if wall > 0 else 0.0
    factor = min(float(sessions), max(0.1, rate / one_session_rate))
    return Scaling(workers=workers, sessions=sessions, factor=factor, measured=True, rate=rate, samples=timed)


def _fallback(out: Calibration, tiers: dict[str, Sampled], defaults: dict[str, float], reason: str) -> Calibration:
    for tier in tiers:
        out.rates[tier] = TierRate.default(tier, defaults[tier], reason)
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "the database accepts no writes (a standby or a read-only transaction)"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return f"this user may not write here: {_first_line(exc)}"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return f"a calibration statement exceeded {CALIBRATION_STATEMENT_TIMEOUT}: {_first_line(exc)}"
    if isinstance(exc, psycopg.Error):
        return f"{type(exc).__name__}: {_first_line(exc)}"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _measure(conn: psycopg.Connection[Any], spec: Spec, org: Sampled, mappings: Mappings, tier: str) -> TierRate:
    """Time one tier's statements on a sample of `org`'s candidates: a warm-up batch, then batches of
    CALIBRATION_BATCH until CALIBRATION_SAMPLE rows or the tier's time budget. Any error ends this tier's
    measurement (the caller's savepoint undoes it; the transaction goes on)."""
    session = _calibration_session(org.organization_id)
    (row,) = conn.execute(session.text, session.params).fetchall()
    if row[-1] is True:
        raise _NotMeasured("the database accepts no writes (transaction_read_only: a standby, "
                           "default_transaction_read_only or a read-only user)")
    sample = _calibration_sample(spec, org.organization_id, mappings, tier)
    rows = conn.execute(sample.text, sample.params).fetchall()
    if not rows:
        raise _NotMeasured("every sampled candidate is locked by another session")
    warmup = min(CALIBRATION_WARMUP, len(rows) - 1)  # a single candidate is timed, not discarded
    batches = [rows[:warmup]] if warmup else []
    batches += [rows[i:i + CALIBRATION_BATCH] for i in range(warmup, len(rows), CALIBRATION_BATCH)]
    timed: list[tuple[int, float]] = []
    started = time.monotonic()
    for i, batch in enumerate(batches):
        if timed and time.monotonic() - started > CALIBRATION_BUDGET_SECONDS[tier]:
            break
        seconds = _time_batch(conn, spec, org.organization_id, tier, batch)
        if i > 0 or not warmup:
            timed.append((len(batch), seconds))
    n = sum(k for k, _ in timed)
    total = sum(s for _, s in timed)
    bare = n / total if total > 0 else 0.0
    per_batch = [k / s for k, s in timed if s > 0]
    if not per_batch or bare <= 0:
        raise _NotMeasured("no batch could be timed")
    lo, hi = ENGINE_FACTOR[tier]
    mid = (lo + hi) / 2
    return TierRate(tier=tier, rate=bare * mid, low=min(per_batch) * lo, high=max(per_batch) * hi, measured=True,
                    samples=n, seconds=total, statement_rate=bare, statement_low=min(per_batch),
                    statement_high=max(per_batch), organization_code=org.organization_code)


def _time_batch(conn: psycopg.Connection[Any], spec: Spec, org_id: str, tier: str,
                batch: list[tuple[Any, ...]]) -> float:
    """The engine's own statement for `batch` (same template, same parameters but the run id), timed."""
    common: dict[str, Any] = {"org_id": org_id, "run_id": CALIBRATION_RUN_ID,
                              "spec_json": jdump(spec_ref(spec)), "actor": str(contract.MIGRATION_ACTOR_ID)}
    stmts: list[Statement] = []
    if tier == "reverse_repost":
        stmts.append(render(
            "run/reverse_repost", ids=[r[0] for r in batch], v2_codes=[r[1] for r in batch],
            mapping_indexes=[r[2] for r in batch],
            # the hashed variant of the repost code, so an existing `<code>-V2` never collides
            transaction_codes=[repost_code(spec, CALIBRATION_RUN_ID, r[0], r[3], True) for r in batch],
            reason=reversal_reason(CALIBRATION_RUN_ID), tier_repost="reverse_repost",
            role_repost=contract.ROLE_REPOST, side_key="side", **override_params(spec), **common))
    else:
        for canonical in (True, False):  # the two UPDATE forms of engine/alias.py, by the stored spelling
            part = [r for r in batch if bool(r[4]) == canonical]
            if part:
                stmts.append(render(
                    "run/alias", list_smart_code=canonical, ids=[r[0] for r in part],
                    v2_codes=[r[1] for r in part], reporting_key=contract.META_REPORTING_ALIAS,
                    role_alias=contract.ROLE_ALIAS, tier_alias="reporting_alias", **common))
    t = time.perf_counter()
    got = 0
    for stmt in stmts:
        rows = conn.execute(stmt.text, stmt.params).fetchall()
        got += len(rows)
        if tier == "reverse_repost" and any(not (r[1] or {}).get("success") or r[2] is None for r in rows):
            raise _NotMeasured("hera_txn_reverse_v1/hera_txn_emit_v1 returned no result for a sampled candidate")
    seconds = time.perf_counter() - t
    if got != len(batch):
        raise _NotMeasured(f"the {tier} statement handled {got} of {len(batch)} sampled candidates")
    return seconds

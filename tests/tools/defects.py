"""Defect injection: plant ONE realistic defect into the state a clean run left, to prove the validation sees it.

    run_migration(dsn, spec, ...)                     # a clean run
    planted = plant(dsn, spec, run_id, "duplicate_repost")
    validate_run(dsn, spec, run_id, ...)              # exit code 1; a critical check names planted.record_id

Each kind imitates a bug of the migration (or of someone tampering after it) and is written through SQL the way
that bug would write it: HERA's triggers stay on (actor columns non-null, smart-code normalisers, the global
unique transaction_code), and writes carry the migration actor where the defect imitates a migration bug. Where a
buggy engine would have done the work, the engine's own statements are used (runner/sql/run/*.sql.j2 through
runner.engine.context.Sql) without its eligibility guard, so the defect looks exactly like the engine's output.

`DEFECTS` says, per kind, what is planted, which checks catch it (the first one names `Planted.record_id` in its
samples) and whether only the before/after snapshot diff can see it (`needs_diff`: validate with the run's
snapshots.duckdb). Targets are chosen deterministically (lowest id that fits), so a seed gives the same defect.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from runner import contract
from runner.compile.params import Mappings, repost_code, reversal_reason
from runner.db.connect import connect
from runner.engine import journal
from runner.engine.chunk import ChunkCtx
from runner.engine.context import Sql
from runner.errors import DataError, UsageError
from runner.spec import codes
from runner.spec.model import Spec

ACTOR = str(contract.MIGRATION_ACTOR_ID)
MIG = contract.META_MIGRATION
DIFF = "expected_effect_diff"


@dataclass(frozen=True)
class Defect:
    kind: str
    description: str
    catches: tuple[str, ...]  # checks that fail on it; the first names Planted.record_id in its samples
    needs_diff: bool = False  # only the before/after diff (expected_effect_diff) can see it


DEFECTS: dict[str, Defect] = {d.kind: d for d in (
    Defect("unbalanced_repost_line", "one GL line of a repost carries 1.00 more than its original line",
           ("gl_balanced", "lines_preserved", "trial_balance_unchanged")),
    Defect("missing_reversal_line", "one GL line of a -REV twin is missing (deleted after the reversal)",
           ("reversal_nets_to_zero", "trial_balance_unchanged")),
    Defect("repost_amount_drift", "a repost's DR and CR lines both drift by 0.01 (still balanced)",
           ("lines_preserved", "trial_balance_unchanged")),
    Defect("wrong_v2_smart_code", "a repost carries the v2 code of another mapping",
           ("v2_code_matches_mapping",)),
    Defect("duplicate_repost", "an original got a second repost of the same run (a retried emit)",
           ("one_reversal_one_repost", "count_amount_reconciliation", "trial_balance_unchanged")),
    Defect("missed_candidate", "a candidate was left unmigrated (its repost and reversal gone, its pre-image "
           "restored) while the run journal says completed", ("count_amount_reconciliation",)),
    Defect("closed_period_migrated", "a transaction of a closed fiscal period was reversed and reposted",
           ("closed_period_untouched",)),
    Defect("v1_row_mutated", "a migrated v1 original had a column outside the migration keys changed "
           "(reference_number)", (DIFF,), needs_diff=True),
    Defect("orphan_line", "a line the original lacks was added to a repost", ("lines_preserved",)),
    Defect("cross_org_line", "a repost line belongs to another organisation", ("no_cross_org_references",)),
    Defect("alias_outside_mapping", "a reporting alias was put on a row no reporting_alias mapping takes",
           ("alias_only_metadata",)),
)}
KINDS: tuple[str, ...] = tuple(DEFECTS)


@dataclass(frozen=True)
class Planted:
    kind: str
    organization_id: str
    record_id: str  # the row the catching check names (for a transaction problem, the header)
    related: tuple[str, ...]  # other rows the defect wrote or removed (lines, reposts, reversals)
    description: str

    @property
    def record_ids(self) -> tuple[str, ...]:
        return (self.record_id, *self.related)

    @property
    def defect(self) -> Defect:
        return DEFECTS[self.kind]


def plant(dsn: str, spec: Spec, run_id: str, kind: str, *, org_id: str | None = None) -> Planted:
    """Plant defect `kind` into run `run_id` (one organisation: `org_id`, else the run's first) and commit."""
    with connect(dsn) as conn:
        planted = plant_on(conn, spec, run_id, kind, org_id=org_id)
        conn.commit()
    return planted


def plant_on(conn: psycopg.Connection[Any], spec: Spec, run_id: str, kind: str, *,
             org_id: str | None = None) -> Planted:
    """Like `plant`, inside the caller's transaction (nothing is committed)."""
    if kind not in DEFECTS:
        raise UsageError(f"unknown defect kind {kind!r}: one of {', '.join(KINDS)}")
    org = org_id or _first_org(conn, run_id)
    planter = _Planter(conn, spec, run_id, org)
    record_id, related = getattr(planter, kind)()
    return Planted(kind, org, record_id, tuple(related), DEFECTS[kind].description)


def _first_org(conn: psycopg.Connection[Any], run_id: str) -> str:
    row = conn.execute("SELECT j.organization_id::text FROM core_entities AS j JOIN core_organizations AS o "
                       "ON o.id = j.organization_id WHERE j.entity_type = %s AND j.entity_code = %s "
                       "ORDER BY o.organization_code, o.id LIMIT 1",
                       (contract.JOURNAL_ENTITY_TYPE, run_id)).fetchone()
    if row is None:
        raise DataError(f"run {run_id} has no journal in this database: nothing to plant a defect into")
    return str(row[0])


_REPOST = ("SELECT r.id::text, r.metadata -> 'migration' ->> 'original_txn_id' FROM universal_transactions AS r "
           "WHERE r.organization_id = %s AND r.metadata -> 'migration' ->> 'run_id' = %s "
           "AND r.metadata -> 'migration' ->> 'role' = 'repost' "
           "AND EXISTS (SELECT 1 FROM universal_transaction_lines AS l WHERE l.transaction_id = r.id "
           "            AND l.smart_code LIKE '%%.GL.%%' AND l.line_data ->> 'side' = 'DR') "
           "AND EXISTS (SELECT 1 FROM universal_transaction_lines AS l WHERE l.transaction_id = r.id "
           "            AND l.smart_code LIKE '%%.GL.%%' AND l.line_data ->> 'side' = 'CR') "
           "{extra} ORDER BY r.id LIMIT 1")
_ITEM_LINE = ("AND EXISTS (SELECT 1 FROM universal_transaction_lines AS l WHERE l.transaction_id = r.id "
              "AND l.smart_code NOT LIKE '%%.GL.%%')")
# The first DR and the first CR GL line (what _line picks) post to different accounts: a drift of both then shows
# in the trial balance (a journal may debit and credit the same account, and a drift there nets to zero).
_DISTINCT_ACCOUNTS = ("AND (SELECT l.entity_id FROM universal_transaction_lines AS l WHERE l.transaction_id = r.id "
                      "     AND l.smart_code LIKE '%%.GL.%%' AND l.line_data ->> 'side' = 'DR' "
                      "     ORDER BY l.line_number LIMIT 1) "
                      "IS DISTINCT FROM (SELECT l.entity_id FROM universal_transaction_lines AS l "
                      "     WHERE l.transaction_id = r.id AND l.smart_code LIKE '%%.GL.%%' "
                      "     AND l.line_data ->> 'side' = 'CR' ORDER BY l.line_number LIMIT 1)")
_GL_LINE = ("SELECT l.id::text, l.line_number FROM universal_transaction_lines AS l "
            "WHERE l.transaction_id = %s AND l.smart_code LIKE '%%.GL.%%' AND l.line_data ->> 'side' = %s "
            "ORDER BY l.line_number LIMIT 1")


class _Planter:
    """One method per kind: plant it and return (record id, related ids)."""

    def __init__(self, conn: psycopg.Connection[Any], spec: Spec, run_id: str, org_id: str) -> None:
        self.conn, self.spec, self.run_id, self.org = conn, spec, run_id, org_id

    # --- finding targets ---------------------------------------------------------------------------------------

    def _one(self, query: str, params: tuple[Any, ...], what: str) -> tuple[Any, ...]:
        row = self.conn.execute(query, params).fetchone()
        if row is None:
            raise DataError(f"no {what} in organisation {self.org} for run {self.run_id} to plant the defect on")
        return tuple(row)

    def _repost(self, *, item_line: bool = False, distinct_accounts: bool = False) -> tuple[str, str]:
        """(repost id, original id): the lowest-id repost of the run with a DR and a CR GL line (and, with
        `item_line`, a line that is not a GL line; with `distinct_accounts`, its first DR and CR lines on
        different accounts)."""
        extra = (_ITEM_LINE if item_line else "") + (" " + _DISTINCT_ACCOUNTS if distinct_accounts else "")
        query = sql.SQL(_REPOST).format(extra=sql.SQL(extra))
        row = self.conn.execute(query, (self.org, self.run_id)).fetchone()
        if row is None:
            raise DataError(f"no repost with GL lines in organisation {self.org} for run {self.run_id} "
                            "to plant the defect on")
        return str(row[0]), str(row[1])

    def _original(self) -> tuple[str, str, str]:
        """(original id, repost id, reversal id) of the lowest-id original the run migrated."""
        row = self._one("SELECT h.id::text, h.metadata -> 'migration' ->> 'repost_id', h.metadata ->> 'reversal_id' "
                        "FROM universal_transactions AS h WHERE h.organization_id = %s "
                        "AND h.metadata -> 'migration' ->> 'run_id' = %s "
                        "AND h.metadata -> 'migration' ->> 'role' = 'original' AND NOT h.metadata ? 'reversal_of' "
                        "AND EXISTS (SELECT 1 FROM universal_transaction_lines AS l "
                        "            WHERE l.transaction_id = (h.metadata ->> 'reversal_id')::uuid "
                        "              AND l.smart_code LIKE '%%.GL.%%') "
                        "ORDER BY h.id LIMIT 1", (self.org, self.run_id), "migrated original")
        return str(row[0]), str(row[1]), str(row[2])

    def _line(self, txn: str, side: str) -> tuple[str, int]:
        line_id, number = self._one(_GL_LINE, (txn, side), f"{side} GL line of {txn}")
        return str(line_id), int(number)

    def _journal(self) -> str:
        (journal_id,) = self._one("SELECT id::text FROM core_entities WHERE organization_id = %s AND entity_type = %s "
                                  "AND entity_code = %s", (self.org, contract.JOURNAL_ENTITY_TYPE, self.run_id),
                                  "run journal")
        return str(journal_id)

    def _count(self, counter: str) -> None:
        """The journal counts one more `counter` (what the buggy engine's checkpoint would have written)."""
        journal.checkpoint(self.conn, Sql(), self.org, self._journal(), counters={counter: 1})

    def _ctx(self, code: str) -> ChunkCtx:
        return ChunkCtx(spec=self.spec, run_id=self.run_id, org_id=self.org, journal_id=self._journal(),
                        mappings=Mappings.resolve(self.spec, [code]))

    # --- the defects ---------------------------------------------------------------------------------------------

    def unbalanced_repost_line(self) -> tuple[str, list[str]]:
        repost, original = self._repost()
        line, _ = self._line(repost, "CR")
        self.conn.execute("UPDATE universal_transaction_lines SET line_amount = line_amount + 1, updated_by = %s, "
                          "updated_at = now() WHERE id = %s", (ACTOR, line))
        return repost, [line, original]

    def missing_reversal_line(self) -> tuple[str, list[str]]:
        original, _, reversal = self._original()
        row = self._one("SELECT l.id::text FROM universal_transaction_lines AS l WHERE l.transaction_id = %s "
                        "AND l.smart_code LIKE '%%.GL.%%' ORDER BY l.line_number LIMIT 1", (reversal,),
                        "GL line of the reversal")
        self.conn.execute("DELETE FROM universal_transaction_lines WHERE id = %s", (row[0],))
        return original, [reversal, str(row[0])]

    def repost_amount_drift(self) -> tuple[str, list[str]]:
        repost, original = self._repost(distinct_accounts=True)
        debit, _ = self._line(repost, "DR")
        credit, _ = self._line(repost, "CR")
        self.conn.execute("UPDATE universal_transaction_lines SET line_amount = line_amount + 0.01, updated_by = %s, "
                          "updated_at = now() WHERE id = ANY(%s::uuid[])", (ACTOR, [debit, credit]))
        return repost, [debit, credit, original]

    def wrong_v2_smart_code(self) -> tuple[str, list[str]]:
        repost, original = self._repost()
        (code,) = self._one("SELECT smart_code::text FROM universal_transactions WHERE id = %s", (repost,), "repost")
        current = codes.normalize(str(code))
        wrong = next((m.to for m in self.spec.mappings
                      if m.tier == "reverse_repost" and m.to and codes.normalize(m.to) != current), None)
        if wrong is None:
            raise DataError("the spec has no second reverse_repost mapping whose v2 code could be confused")
        # smart_code listed: HERA's canonicalising trigger stores it as a valid .v2 code, as an emit would
        self.conn.execute("UPDATE universal_transactions SET smart_code = %s, updated_by = %s, updated_at = now() "
                          "WHERE id = %s", (wrong, ACTOR, repost))
        return repost, [original]

    def duplicate_repost(self) -> tuple[str, list[str]]:
        repost, original = self._repost()
        duplicate = str(uuid.uuid4())
        (code,) = self._one("SELECT transaction_code FROM universal_transactions WHERE id = %s", (repost,), "repost")
        # the engine's collision variant of the code (transaction_code is globally unique), as a retry would pick
        dup_code = repost_code(self.spec, f"{self.run_id}-retry", original, str(code), True)
        self._copy_row("universal_transactions", {"id": duplicate, "transaction_code": dup_code}, "id", repost)
        lines = self.conn.execute("SELECT id::text FROM universal_transaction_lines WHERE transaction_id = %s "
                                  "ORDER BY line_number", (repost,)).fetchall()
        for (line_id,) in lines:
            self._copy_row("universal_transaction_lines", {"id": str(uuid.uuid4()), "transaction_id": duplicate},
                           "id", line_id)
        return original, [duplicate, repost]

    def missed_candidate(self) -> tuple[str, list[str]]:
        original, repost, reversal = self._original()
        self.conn.execute("DELETE FROM universal_transactions WHERE organization_id = %s AND id = ANY(%s::uuid[])",
                          (self.org, [repost, reversal]))  # their lines go with them (ON DELETE CASCADE)
        (pre_code,) = self._one("SELECT metadata -> 'migration' -> 'pre' ->> 'smart_code' FROM universal_transactions "
                                "WHERE id = %s", (original,), "pre-image")
        columns = [c for c in contract.ORIGINAL_PREIMAGE_COLUMNS
                   if c != "smart_code" or re.search(r"\.v[0-9]+$", str(pre_code))]
        # HERA's triggers: listing smart_code canonicalises it (.v1); leaving it out keeps the upper case (.V1)
        target = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        source = sql.SQL(", ").join(sql.SQL("r.") + sql.Identifier(c) for c in columns)
        self.conn.execute(sql.SQL(
            "UPDATE universal_transactions AS t SET ({}) = (SELECT {} FROM jsonb_populate_record("
            "NULL::universal_transactions, t.metadata -> 'migration' -> 'pre') AS r) WHERE t.id = %s").format(
                target, source), (original,))
        return original, [repost, reversal]

    def closed_period_migrated(self) -> tuple[str, list[str]]:
        txn, code, tcode, preimage = self._one(
            "SELECT h.id::text, regexp_replace(upper(h.smart_code), '\\.V([0-9]+)$', '.v\\1'), h.transaction_code, "
            "       (SELECT to_jsonb(p) FROM (SELECT h.smart_code, h.smart_code_status, h.transaction_status, "
            "               h.metadata, h.version, h.updated_at, h.updated_by) AS p)::text "
            "FROM universal_transactions AS h JOIN core_entities AS p ON p.id = h.fiscal_period_entity_id "
            "WHERE h.organization_id = %s AND lower(coalesce(p.metadata ->> 'status', p.status)) = 'closed' "
            "AND lower(h.transaction_status) IN ('posted', 'completed') "
            "AND NOT coalesce(h.metadata ?| ARRAY['reversal_of', 'reversal_id', 'migration'], false) "
            "AND coalesce(h.transaction_currency_code = h.base_currency_code, true) "
            "AND regexp_replace(upper(h.smart_code), '\\.V([0-9]+)$', '.v\\1') = ANY(%s::text[]) "
            "AND EXISTS (SELECT 1 FROM universal_transaction_lines AS l WHERE l.transaction_id = h.id) "
            "AND (SELECT coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'DR'), 0) "
            "          - coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'CR'), 0) "
            "       FROM universal_transaction_lines AS l WHERE l.transaction_id = h.id "
            "        AND l.smart_code LIKE '%%.GL.%%') = 0 "
            "ORDER BY h.id LIMIT 1", (self.org, self._codes("reverse_repost")), "closed-period candidate")
        ctx = self._ctx(str(code))
        stmt_args = {"ids": [txn], "v2_codes": ctx.mappings.v2_codes, "mapping_indexes": ctx.mappings.mapping_indexes,
                     "transaction_codes": [repost_code(self.spec, self.run_id, txn, tcode, False)],
                     "reason": reversal_reason(self.run_id)}
        ((_, reversal, repost),) = ctx.sql.rows(self.conn, "run/reverse_repost", **stmt_args)
        reversal_id = str((reversal or {}).get("reversal_id"))
        ctx.sql.rows(self.conn, "run/mark_originals", ids=[txn], reversal_ids=[reversal_id], repost_ids=[repost],
                     preimages=[preimage])
        self._count("migrated")
        return txn, [str(repost), reversal_id]

    def v1_row_mutated(self) -> tuple[str, list[str]]:
        original, repost, reversal = self._original()
        self.conn.execute("UPDATE universal_transactions SET reference_number = coalesce(reference_number, '') "
                          "|| '-V2', updated_by = %s, updated_at = now() WHERE id = %s", (ACTOR, original))
        return original, [repost, reversal]

    def orphan_line(self) -> tuple[str, list[str]]:
        # prefer a repost with a non-GL line, so the extra line leaves the GL balance alone
        try:
            repost, original = self._repost(item_line=True)
        except DataError:
            repost, original = self._repost()
        source, top = self._one("SELECT (array_agg(l.id::text ORDER BY (l.smart_code LIKE '%%.GL.%%'), "
                                "l.line_number))[1], max(l.line_number) FROM universal_transaction_lines AS l "
                                "WHERE l.transaction_id = %s", (repost,), "repost line")
        line = str(uuid.uuid4())
        self._copy_row("universal_transaction_lines", {"id": line, "line_number": int(top) + 1}, "id", str(source))
        return repost, [line, original]

    def cross_org_line(self) -> tuple[str, list[str]]:
        repost, original = self._repost()
        line, _ = self._line(repost, "DR")
        other = self.conn.execute("SELECT id::text FROM core_organizations WHERE id <> %s ORDER BY id LIMIT 1",
                                  (self.org,)).fetchone()
        if other is None:
            other = self.conn.execute(
                "INSERT INTO core_organizations (organization_name, organization_code, created_by, updated_by) "
                "VALUES ('Defect neighbour', %s, %s, %s) RETURNING id::text",
                (f"DEFECT-{uuid.uuid4().hex[:8].upper()}", ACTOR, ACTOR)).fetchone()
        assert other is not None
        self.conn.execute("UPDATE universal_transaction_lines SET organization_id = %s, updated_by = %s, "
                          "updated_at = now() WHERE id = %s", (other[0], ACTOR, line))
        return repost, [line, original, str(other[0])]

    def alias_outside_mapping(self) -> tuple[str, list[str]]:
        txn, code, stored = self._one(
            "SELECT h.id::text, regexp_replace(upper(h.smart_code), '\\.V([0-9]+)$', '.v\\1'), h.smart_code::text "
            "FROM universal_transactions AS h WHERE h.organization_id = %s "
            "AND NOT coalesce(h.metadata ?| ARRAY['reversal_of', 'reversal_id', 'migration', %s], false) "
            "AND regexp_replace(upper(h.smart_code), '\\.V([0-9]+)$', '.v\\1') <> ALL(%s::text[]) "
            "ORDER BY (regexp_replace(upper(h.smart_code), '\\.V([0-9]+)$', '.v\\1') = ANY(%s::text[])) DESC, h.id "
            "LIMIT 1", (self.org, contract.META_REPORTING_ALIAS, self._codes("reporting_alias"),
                        self._codes("reverse_repost")), "row outside the alias mappings")
        ctx = self._ctx(str(code))
        target = ctx.mappings.v2_codes[0] if ctx.mappings.v2_codes else f"{str(code).rsplit('.', 1)[0]}.v2"
        ctx.sql.rows(self.conn, "run/alias", list_smart_code=bool(re.search(r"\.v[0-9]+$", str(stored))),
                     ids=[txn], v2_codes=[target])
        self._count("aliased")
        return str(txn), []

    # --- helpers ------------------------------------------------------------------------------------------------

    def _codes(self, tier: str) -> list[str]:
        """The v1 codes of this organisation that a mapping of `tier` takes."""
        rows = self.conn.execute("SELECT DISTINCT regexp_replace(upper(smart_code), '\\.V([0-9]+)$', '.v\\1') "
                                 "FROM universal_transactions WHERE organization_id = %s", (self.org,)).fetchall()
        mappings = Mappings.resolve(self.spec, [str(r[0]) for r in rows])
        return [c for c, t in zip(mappings.v1_codes, mappings.tiers, strict=True) if t == tier]

    def _copy_row(self, table: str, overrides: dict[str, Any], key: str, key_value: str) -> None:
        """INSERT a copy of one row with `overrides`, created and updated by the migration actor now."""
        names = [str(r[0]) for r in self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
            "ORDER BY ordinal_position", (table,)).fetchall()]
        fixed = {**overrides, "created_by": ACTOR, "updated_by": ACTOR}
        now = {"created_at", "updated_at"}
        select: list[sql.Composable] = []
        params: list[Any] = []
        for name in names:
            if name in fixed:
                select.append(sql.SQL("%s"))
                params.append(fixed[name])
            elif name in now:
                select.append(sql.SQL("now()"))
            else:
                select.append(sql.Identifier(name))
        params.append(key_value)
        self.conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {} = %s").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(n) for n in names), sql.SQL(", ").join(select),
            sql.Identifier(table), sql.Identifier(key)), params)


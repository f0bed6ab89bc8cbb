"""`compile --out`: every run and rollback statement rendered with sample inputs, for review and for the
template-safety tests (no spec value in the SQL text, every value bound)."""

from __future__ import annotations

from runner import contract
from runner.compile import Statement, render
from runner.compile.params import Mappings, entity_params, reversal_reason
from runner.engine.chunk import ChunkCtx
from runner.engine.context import (
    ADVISORY_LOCK_CLASS,
    CHECKPOINT_LOCK_CLASS,
    JOURNAL_LOCK_CLASS,
    LOCK_TIMEOUT,
    STATEMENT_TIMEOUT,
    WORKER_LOCK_CLASS,
    Sql,
    advisory_key,
)
from runner.engine.entities import CREATED_FIELD_SMART_CODE
from runner.engine.journal import COUNTERS, QUARANTINED_FIELD
from runner.spec.model import Spec

SAMPLE_ORG = "00000000-0000-4000-8000-000000000001"
SAMPLE_JOURNAL = "00000000-0000-4000-8000-000000000002"
SAMPLE_ID = "00000000-0000-4000-8000-000000000003"
SAMPLE_RUN = "run-20250101T000000Z-abcd"


def review_statements(spec: Spec) -> list[Statement]:
    """Each template of runner/sql/run and runner/sql/rollback, every variant, with sample inputs. Mappings are
    the spec's exact (`from`) ones; wildcard and regex mappings are resolved against real codes at run time."""
    exact = [m.from_ for m in spec.mappings if m.from_ is not None]
    orgs = list(spec.scope.organizations.include) or [SAMPLE_ORG]
    ctx = ChunkCtx(spec=spec, run_id=SAMPLE_RUN, org_id=orgs[0], journal_id=SAMPLE_JOURNAL,
                   mappings=Mappings.resolve(spec, exact))
    s, one = ctx.sql, [SAMPLE_ID]
    plain = Sql()
    out = [
        s.statement("run/session", lock_timeout=LOCK_TIMEOUT, statement_timeout=STATEMENT_TIMEOUT),
        s.statement("run/org_lock", lock_class=ADVISORY_LOCK_CLASS, lock_key=advisory_key(orgs[0])),
        plain.statement("scope/organizations"),
        s.statement("run/codes"),
        plain.statement("run/journal_find", org_ids=orgs, run_id=SAMPLE_RUN),
        s.statement("run/journal_create", entity_name=f"Migration run {SAMPLE_RUN}", description="journal",
                    metadata="{}"),
        s.statement("run/journal_meta", patch="{}"),
    ]
    for tier in ("reverse_repost", "reporting_alias"):
        for excluded in (True, False):
            out.append(s.statement("run/scan", tier=tier, exclude_quarantined=excluded))
    for excluded in (True, False):
        out.append(s.statement("run/lock_repost", ids=one, exclude_quarantined=excluded))
    out += [
        s.statement("run/reverse_repost", ids=one, v2_codes=["HERA.SAMPLE.GL.TXN.JOURNAL.v2"], mapping_indexes=[0],
                    transaction_codes=["SAMPLE-V2"], reason=reversal_reason(SAMPLE_RUN)),
        s.statement("run/mark_originals", ids=one, reversal_ids=one, repost_ids=one, preimages=["{}"]),
        s.statement("run/verify_reposts", ids=one, reversal_ids=one, repost_ids=one,
                    v2_codes=["HERA.SAMPLE.GL.TXN.JOURNAL.v2"]),
        s.statement("run/lock_alias", ids=one, exclude_quarantined=True),
    ]
    for list_smart_code in (True, False):
        out.append(s.statement("run/alias", list_smart_code=list_smart_code, ids=one,
                               v2_codes=["HERA.SAMPLE.INV.TXN.ISSUE.v2"]))
    out += [
        s.statement("run/checkpoint", names=["migrated"], types=["number"], numbers=[1], texts=[None],
                    dates=[None], jsons=[None], counters=list(COUNTERS), quarantined_field=QUARANTINED_FIELD),
        s.statement("run/quarantine", ids=one, bodies=["{}"]),
        s.statement("run/unquarantine", field_names=[f"quarantine:{SAMPLE_ID}"]),
        s.statement("run/journal_fields", org_ids=orgs, journal_ids=[SAMPLE_JOURNAL]),
        s.statement("run/quarantine_list", org_ids=orgs, journal_ids=[SAMPLE_JOURNAL]),
    ]
    for excluded in (True, False):
        out.append(s.statement("rollback/targets", role=contract.ROLE_ORIGINAL, exclude_ids=excluded,
                               excluded=one, boundary=-1))
    out += [
        s.statement("rollback/lock_originals", ids=one),
        s.statement("rollback/lock_outputs", ids=one),
        s.statement("rollback/delete_lines", ids=one),
        s.statement("rollback/delete_headers", ids=one),
    ]
    for list_smart_code in (True, False):
        columns = [c for c in contract.ORIGINAL_PREIMAGE_COLUMNS if list_smart_code or c != "smart_code"]
        out.append(s.statement("rollback/restore_originals", list_smart_code=list_smart_code, columns=columns,
                               preimage_columns=contract.ORIGINAL_PREIMAGE_COLUMNS, ids=one, preimages=["{}"]))
    out.append(s.statement("rollback/lock_aliases", ids=one))
    for list_smart_code in (True, False):
        out.append(s.statement("rollback/restore_aliases", list_smart_code=list_smart_code, ids=one))
    out.append(s.statement("rollback/leftovers", kept=one, reason=reversal_reason(SAMPLE_RUN), boundary=-1))
    out += [
        s.statement("checkpoint/gate_shared", lock_class=CHECKPOINT_LOCK_CLASS, lock_key=advisory_key(orgs[0])),
        s.statement("checkpoint/gate_exclusive", lock_class=CHECKPOINT_LOCK_CLASS,
                    lock_keys=[advisory_key(o) for o in orgs]),
        s.statement("checkpoint/seq"),
        s.statement("checkpoint/list", org_ids=orgs, journal_ids=[SAMPLE_JOURNAL]),
        s.statement("checkpoint/forget", seq=1, fields=["entities"]),
        plain.statement("rollback/all_journals", org_ids=orgs),
        s.statement("run/org_claim", lock_class=ADVISORY_LOCK_CLASS, lock_key=advisory_key(orgs[0]),
                    worker_class=WORKER_LOCK_CLASS, worker_key=advisory_key(orgs[0] + ":1")),
        s.statement("run/worker_tick", field_name=f"worker:{orgs[0]}:1", body="{}", counters=["migrated"]),
        plain.statement("run/worker_alive", worker_class=WORKER_LOCK_CLASS, worker_keys=[advisory_key(orgs[0])]),
        s.statement("run/journal_guard", lock_class=JOURNAL_LOCK_CLASS, lock_key=advisory_key(orgs[0])),
    ]
    for replace in (True, False):
        out.append(s.statement("checkpoint/record", replace=replace, field_name="checkpoint:sample", body="{}",
                               seq=1))
    return out + entity_statements(spec, orgs[0])


def entity_statements(spec: Spec, org_id: str) -> list[Statement]:
    """Every statement of the entity migrations and their rollback (engine/entities.py), with the spec's entity
    types and sample values where the data decides (rows, field names)."""
    actor = str(contract.MIGRATION_ACTOR_ID)
    types = entity_params(spec)
    columns = ["id", "organization_id", "entity_id", "field_name"]  # the real list is read from the catalog

    def e(name: str, **context: object) -> Statement:
        return render(f"entities/{name}", **context)

    return [
        e("journal_entity", org_id=org_id, run_id=SAMPLE_RUN, journal_type=contract.JOURNAL_ENTITY_TYPE),
        *(e("lock_family", org_id=org_id, entity_types=types[key], migration_key=contract.META_MIGRATION)
          for key in ("posting_rule_types", "fiscal_period_types") if types[key]),
        e("lock_fields", org_id=org_id, entity_ids=[SAMPLE_ID], field_names=["sample_field"]),
        e("mark_entities", org_id=org_id, actor=actor, updates="[]"),
        e("update_fields", org_id=org_id, actor=actor, fields="[]"),
        e("insert_fields", org_id=org_id, actor=actor, smart_code=CREATED_FIELD_SMART_CODE, fields="[]"),
        e("delete_fields", org_id=org_id, ids=[SAMPLE_ID]),
        e("settings_preimage", org_id=org_id, run_id=SAMPLE_RUN, journal_type=contract.JOURNAL_ENTITY_TYPE,
          field_name=contract.ORG_PREIMAGE_FIELD),
        e("lock_organization", org_id=org_id),
        e("update_settings", org_id=org_id, actor=actor, settings="{}"),
        e("keep_settings_preimage", org_id=org_id, journal_id=SAMPLE_JOURNAL, field_name=contract.ORG_PREIMAGE_FIELD,
          json_type="json", preimage="{}", smart_code=contract.PREIMAGE_SMART_CODE, actor=actor),
        e("lock_marked", org_id=org_id, run_id=SAMPLE_RUN, role=contract.ROLE_ENTITY,
          migration_key=contract.META_MIGRATION, run_id_key="run_id", role_key="role"),
        e("restore_entities", org_id=org_id, actor=actor, rows="[]"),
        e("field_columns"),
        e("restore_fields", org_id=org_id, rows="[]", columns=columns),
        e("fields_differing", org_id=org_id, rows="[]"),
        e("reinsert_fields", org_id=org_id, rows="[]", columns=columns),
        e("delete_created_field", org_id=org_id, entity_id=SAMPLE_ID, field_name="sample_field", actor=actor),
        e("organization_writer", org_id=org_id),
        e("restore_settings", org_id=org_id, settings="{}", updated_at="2025-01-01T00:00:00+00:00",
          updated_by=actor, actor=actor),
    ]

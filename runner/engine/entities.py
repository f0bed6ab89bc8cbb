"""Entity migrations: posting rules, fiscal periods and organisation config, with exact pre-images for rollback.

Runs inside the caller's transaction (the engine commits it together with the org's journal checkpoint).
Entity families are small (hundreds of rows per org), so rows are read once, transformed in Python and written
back; JSON travels as text and is parsed with Decimal numbers, so no value ever passes through a float.

Where the pre-image lives (no new tables):
- entities: `metadata.migration` = {run_id, role: "entity", family, actor, pre: {smart_code, metadata, version,
  updated_at, updated_by, dynamic: {field_name: <whole core_dynamic_data row as JSON> | null when we created it}}};
- organisation settings (core_organizations has no metadata column): a core_dynamic_data row of the run's
  journal entity, field_name `org_config_pre`, holding {settings, updated_at, updated_by}.

Transform paths: `metadata.<key...>` (the entity's metadata), `dynamic.<field>` (the field's value, whichever
typed column holds it), `dynamic.<field>.<key...>` (inside field_value_json), `settings.<key...>` (organisation).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from runner.compile.jsonx import dumps, loads
from runner.contract import (
    JOURNAL_ENTITY_TYPE,
    META_MIGRATION,
    MIGRATION_ACTOR_ID,
    ORG_PREIMAGE_FIELD,
    PREIMAGE_SMART_CODE,
    ROLE_ENTITY,
)
from runner.errors import DataError
from runner.spec.model import FiscalPeriods, OrganizationConfig, PostingRules, Spec, Transform

CREATED_FIELD_SMART_CODE = "HERA.PLATFORM.MIGRATION.DYN.FIELD.v1"
_MISSING = object()


def _get(doc: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def _set(doc: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    node = doc
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value
    return doc


def _delete(doc: Any, keys: list[str]) -> None:
    parent = _get(doc, keys[:-1]) if len(keys) > 1 else doc
    if isinstance(parent, dict):
        parent.pop(keys[-1], None)


# --- one entity in memory ----------------------------------------------------------------------------------


class _Entity:
    def __init__(self, row: dict[str, Any], fields: dict[str, dict[str, Any]]) -> None:
        self.row = row
        self.metadata: dict[str, Any] = copy.deepcopy(row.get("metadata") or {})
        self.fields = copy.deepcopy(fields)  # field_name -> row; the originals stay the pre-image
        self.touched: set[str] = set()
        self.deleted: set[str] = set()

    def field_value(self, name: str) -> Any:
        f = self.fields.get(name)
        if f is None or name in self.deleted:
            return _MISSING
        for column in ("field_value_json", "field_value_number", "field_value_boolean", "field_value_text",
                       "field_value_date"):
            if f.get(column) is not None:
                return f[column]
        return None

    def read(self, path: str) -> Any:
        head, *keys = path.split(".")
        if head == "metadata":
            return _get(self.metadata, keys)
        name, *inner = keys
        value = self.field_value(name)
        return value if not inner or value is _MISSING else _get(value, inner)

    def write(self, path: str, value: Any) -> None:
        head, *keys = path.split(".")
        if head == "metadata":
            _set(self.metadata, keys, value)
            return
        name, *inner = keys
        f = self.fields.get(name)
        if f is None or name in self.deleted:
            f = self.fields[name] = {"field_name": name, "id": None, "field_type": "text"}
            self.deleted.discard(name)
        self.touched.add(name)
        if inner:
            doc = f.get("field_value_json")
            f["field_value_json"] = _set(doc if isinstance(doc, dict) else {}, inner, value)
            f["field_type"] = "json"
            return
        for column in ("field_value_json", "field_value_number", "field_value_boolean", "field_value_text",
                       "field_value_date"):
            f[column] = None
        if isinstance(value, bool):
            f["field_value_boolean"], f["field_type"] = value, "boolean"
        elif isinstance(value, int | float | Decimal):
            f["field_value_number"], f["field_type"] = Decimal(str(value)), "number"
        elif isinstance(value, dict | list):
            f["field_value_json"], f["field_type"] = value, "json"
        elif value is not None:
            f["field_value_text"], f["field_type"] = str(value), "text"

    def remove(self, path: str) -> None:
        head, *keys = path.split(".")
        if head == "metadata":
            _delete(self.metadata, keys)
            return
        name, *inner = keys
        if not inner:
            self.deleted.add(name)
            self.touched.add(name)
        elif isinstance(self.fields.get(name, {}).get("field_value_json"), dict):
            _delete(self.fields[name]["field_value_json"], inner)
            self.touched.add(name)


def apply_transforms(target: Any, transforms: tuple[Transform, ...]) -> None:
    """set / rename / copy in order; reading a missing path makes rename and copy a no-op (nothing invented)."""
    for tf in transforms:
        if tf.op == "set":
            target.write(tf.target, tf.value)
            continue
        value = target.read(tf.source or "")
        if value is _MISSING:
            continue
        target.write(tf.target, value)
        if tf.op == "rename":
            target.remove(tf.source or "")


class _Settings:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def read(self, path: str) -> Any:
        return _get(self.settings, path.split(".")[1:])

    def write(self, path: str, value: Any) -> None:
        _set(self.settings, path.split(".")[1:], value)

    def remove(self, path: str) -> None:
        _delete(self.settings, path.split(".")[1:])


# --- database ----------------------------------------------------------------------------------------------

_FAMILIES = ("posting_rules", "fiscal_periods")
_VALUE_COLUMNS = ("field_type", "field_value_text", "field_value_number", "field_value_boolean", "field_value_date",
                  "field_value_json")


def _rows(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [loads(r[0]) for r in conn.execute(query, params).fetchall()]


def journal_entity_id(conn: psycopg.Connection[Any], org_id: str, run_id: str) -> str:
    row = conn.execute("SELECT id::text FROM core_entities WHERE organization_id = %s AND entity_type = %s "
                       "AND entity_code = %s", (org_id, JOURNAL_ENTITY_TYPE, run_id)).fetchone()
    if row is None:
        raise DataError(f"run {run_id} has no journal in organisation {org_id}")
    return str(row[0])


def _migrate_family(conn: psycopg.Connection[Any], spec: Spec, family: str, model: PostingRules | FiscalPeriods,
                    org_id: str, run_id: str) -> tuple[int, int]:
    entities = _rows(conn, "SELECT to_jsonb(e)::text FROM core_entities e WHERE e.organization_id = %s "
                           "AND lower(e.entity_type) = ANY(%s) AND NOT coalesce(e.metadata ? %s, false) "
                           "ORDER BY e.id FOR UPDATE",
                     (org_id, [t.lower() for t in model.entity_types], META_MIGRATION))
    if not entities:
        return 0, 0
    names = sorted({*model.fields, *(p.split(".")[1] for tf in model.transforms
                                     for p in (tf.set_, tf.source, tf.to) if p and p.startswith("dynamic."))})
    by_entity: dict[str, dict[str, dict[str, Any]]] = {}
    for f in _rows(conn, "SELECT to_jsonb(d)::text FROM core_dynamic_data d WHERE d.organization_id = %s "
                         "AND d.entity_id = ANY(%s::uuid[]) AND d.field_name = ANY(%s) ORDER BY d.id FOR UPDATE",
                   (org_id, [e["id"] for e in entities], names)):
        by_entity.setdefault(f["entity_id"], {}).setdefault(f["field_name"], f)  # first row per field wins
    updates, inserts, changed, deletes = [], [], [], []
    for row in entities:
        originals = by_entity.get(row["id"], {})
        ent = _Entity(row, originals)
        apply_transforms(ent, model.transforms)
        code = model.remap(row["smart_code"], spec.dna.target) or row["smart_code"]
        pre = {k: row.get(k) for k in ("smart_code", "metadata", "version", "updated_at", "updated_by")}
        pre["dynamic"] = {name: originals.get(name) for name in sorted(ent.touched)}
        ent.metadata[META_MIGRATION] = {"run_id": run_id, "role": ROLE_ENTITY, "family": family,
                                        "actor": str(MIGRATION_ACTOR_ID), "pre": pre}
        updates.append({"id": row["id"], "smart_code": code, "metadata": ent.metadata})
        for name in sorted(ent.touched):
            f = ent.fields[name]
            if name in ent.deleted:
                if f.get("id"):
                    deletes.append(f["id"])
            elif f.get("id"):
                changed.append({"id": f["id"], **{c: f.get(c) for c in _VALUE_COLUMNS}})
            else:
                inserts.append({"entity_id": row["id"], "field_name": name, **{c: f.get(c) for c in _VALUE_COLUMNS}})
    actor = MIGRATION_ACTOR_ID
    conn.execute("""UPDATE core_entities e
                       SET smart_code = v.smart_code, metadata = v.metadata, version = coalesce(e.version, 1) + 1,
                           updated_at = now(), updated_by = %s
                      FROM jsonb_to_recordset(%s::jsonb) AS v(id uuid, smart_code text, metadata jsonb)
                     WHERE e.id = v.id AND e.organization_id = %s""", (actor, dumps(updates), org_id))
    if changed:
        conn.execute("""UPDATE core_dynamic_data d
                           SET field_type = v.field_type, field_value_text = v.field_value_text,
                               field_value_number = v.field_value_number, field_value_boolean = v.field_value_boolean,
                               field_value_date = v.field_value_date, field_value_json = v.field_value_json,
                               version = coalesce(d.version, 1) + 1, updated_at = now(), updated_by = %s
                          FROM jsonb_populate_recordset(NULL::core_dynamic_data, %s::jsonb) AS v
                         WHERE d.id = v.id AND d.organization_id = %s""", (actor, dumps(changed), org_id))
    if inserts:
        conn.execute("""INSERT INTO core_dynamic_data (organization_id, entity_id, field_name, field_type,
                               field_value_text, field_value_number, field_value_boolean, field_value_date,
                               field_value_json, smart_code, created_by, updated_by)
                        SELECT %s, v.entity_id, v.field_name, v.field_type, v.field_value_text, v.field_value_number,
                               v.field_value_boolean, v.field_value_date, v.field_value_json, %s, %s, %s
                          FROM jsonb_populate_recordset(NULL::core_dynamic_data, %s::jsonb) AS v""",
                     (org_id, CREATED_FIELD_SMART_CODE, actor, actor, dumps(inserts)))
    if deletes:
        conn.execute("DELETE FROM core_dynamic_data WHERE organization_id = %s AND id = ANY(%s::uuid[])",
                     (org_id, deletes))
    return len(entities), len(changed) + len(inserts) + len(deletes)


def _migrate_org_config(conn: psycopg.Connection[Any], model: OrganizationConfig, org_id: str, run_id: str) -> int:
    journal = journal_entity_id(conn, org_id, run_id)
    done = conn.execute("SELECT 1 FROM core_dynamic_data WHERE organization_id = %s AND entity_id = %s "
                        "AND field_name = %s", (org_id, journal, ORG_PREIMAGE_FIELD)).fetchone()
    if done is not None:
        return 0
    row = conn.execute("SELECT to_jsonb(o)::text FROM core_organizations o WHERE o.id = %s FOR UPDATE",
                       (org_id,)).fetchone()
    if row is None:
        raise DataError(f"organisation {org_id} does not exist (or is not visible to this role)")
    org = loads(row[0])
    settings = _Settings(copy.deepcopy(org.get("settings") or {}))
    apply_transforms(settings, model.transforms)
    if settings.settings == (org.get("settings") or {}):
        return 0
    pre = {"settings": org.get("settings"), "updated_at": org.get("updated_at"), "updated_by": org.get("updated_by")}
    conn.execute("UPDATE core_organizations SET settings = %s::jsonb, updated_at = now(), updated_by = %s "
                 "WHERE id = %s", (dumps(settings.settings), MIGRATION_ACTOR_ID, org_id))
    conn.execute("INSERT INTO core_dynamic_data (organization_id, entity_id, field_name, field_type, field_value_json,"
                 " smart_code, created_by, updated_by) VALUES (%s, %s, %s, 'json', %s::jsonb, %s, %s, %s)",
                 (org_id, journal, ORG_PREIMAGE_FIELD, dumps(pre), PREIMAGE_SMART_CODE, MIGRATION_ACTOR_ID,
                  MIGRATION_ACTOR_ID))
    return 1


def migrate_entities(conn: psycopg.Connection[Any], spec: Spec, org_id: str, run_id: str) -> dict[str, int]:
    """Apply the spec's entity migrations to one organisation inside the caller's transaction; idempotent."""
    counts: dict[str, int] = {}
    fields = 0
    for family in _FAMILIES:
        model = getattr(spec.entities, family)
        if model is not None:
            counts[family], n = _migrate_family(conn, spec, family, model, org_id, run_id)
            fields += n
    if spec.entities.organization_config is not None:
        counts["organization_config"] = _migrate_org_config(conn, spec.entities.organization_config, org_id, run_id)
    counts["dynamic_fields"] = fields
    return counts


def rollback_entities(conn: psycopg.Connection[Any], run_id: str, org_id: str) -> dict[str, int]:
    """Restore every entity, dynamic field and org setting the run changed, inside the caller's transaction.

    A row changed by someone else since the run (updated_by no longer the actor, or version moved on) is left as it
    is and counted as a conflict for review. Idempotent: what is restored no longer carries this run's marker.
    """
    actor = str(MIGRATION_ACTOR_ID)
    counts = {"entities_restored": 0, "dynamic_restored": 0, "organization_config": 0, "conflicts": 0}
    entities = _rows(conn, "SELECT to_jsonb(e)::text FROM core_entities e WHERE e.organization_id = %s "
                           "AND e.metadata -> 'migration' ->> 'run_id' = %s "
                           "AND e.metadata -> 'migration' ->> 'role' = %s ORDER BY e.id FOR UPDATE",
                     (org_id, run_id, ROLE_ENTITY))
    restore, upserts, removals = [], [], []
    for row in entities:
        pre = row["metadata"][META_MIGRATION]["pre"]
        if row.get("updated_by") != actor or row.get("version") != (pre.get("version") or 1) + 1:
            counts["conflicts"] += 1
            continue
        restore.append({"id": row["id"], **{k: pre.get(k) for k in ("smart_code", "metadata", "version",
                                                                     "updated_at", "updated_by")}})
        for name, before in (pre.get("dynamic") or {}).items():
            if before is None:
                removals.append((row["id"], name))
            else:
                upserts.append(before)
    if restore:
        conn.execute("""UPDATE core_entities e
                           SET smart_code = v.smart_code, metadata = coalesce(v.metadata, '{}'::jsonb),
                               version = v.version, updated_at = v.updated_at,
                               -- HERA rejects a NULL actor: a row that had none keeps ours
                               updated_by = coalesce(v.updated_by, %s)
                          FROM jsonb_populate_recordset(NULL::core_entities, %s::jsonb) AS v
                         WHERE e.id = v.id AND e.organization_id = %s""", (actor, dumps(restore), org_id))
        counts["entities_restored"] = len(restore)
    if upserts:
        # Whole-row restore: UPDATE the rows that still exist, re-INSERT the ones a rename removed.
        names = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'core_dynamic_data'::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum").fetchall()]
        columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        payload = dumps(upserts)
        conn.execute(sql.SQL("UPDATE core_dynamic_data d SET ({c}) = (SELECT {c} FROM "
                             "jsonb_populate_record(NULL::core_dynamic_data, v.r)) "
                             "FROM jsonb_array_elements(%s::jsonb) AS v(r) "
                             "WHERE d.id = (v.r ->> 'id')::uuid AND d.organization_id = %s").format(c=columns),
                     (payload, org_id))
        # HERA's trg_ef_soft_validate rewrites validation_status and ai_insights on every write from the row stored
        # under that id: an UPDATE leaves 'valid', an INSERT (nothing stored yet) 'invalid'. A field whose
        # pre-image came from an INSERT therefore only comes back exactly by being inserted again.
        differing = ("SELECT d.id FROM core_dynamic_data d JOIN jsonb_array_elements(%s::jsonb) AS v(r) "
                     "ON d.id = (v.r ->> 'id')::uuid WHERE d.organization_id = %s "
                     "AND ROW(d.*) IS DISTINCT FROM ROW((jsonb_populate_record(NULL::core_dynamic_data, v.r)).*)")
        rewritten = [r[0] for r in conn.execute(differing, (payload, org_id)).fetchall()]
        if rewritten:
            conn.execute("DELETE FROM core_dynamic_data WHERE organization_id = %s AND id = ANY(%s)",
                         (org_id, rewritten))
        conn.execute(sql.SQL("INSERT INTO core_dynamic_data ({c}) SELECT {c} FROM "
                             "jsonb_populate_recordset(NULL::core_dynamic_data, %s::jsonb) AS v "
                             "WHERE NOT EXISTS (SELECT 1 FROM core_dynamic_data d WHERE d.id = v.id)").format(
                                 c=columns), (payload,))
        counts["dynamic_restored"] += len(upserts)
        # A state neither write reproduces (a trigger of this HERA computes it otherwise) is not restored exactly:
        # say so, the run needs review.
        counts["conflicts"] += len(conn.execute(differing, (payload, org_id)).fetchall())
    for entity_id, name in removals:
        cur = conn.execute("DELETE FROM core_dynamic_data WHERE organization_id = %s AND entity_id = %s "
                           "AND field_name = %s AND created_by = %s", (org_id, entity_id, name, actor))
        counts["dynamic_restored"] += cur.rowcount
    counts["organization_config"], conflict = _rollback_org_config(conn, org_id, run_id)
    counts["conflicts"] += conflict
    return counts


def _rollback_org_config(conn: psycopg.Connection[Any], org_id: str, run_id: str) -> tuple[int, int]:
    row = conn.execute("SELECT d.id, d.field_value_json::text FROM core_dynamic_data d JOIN core_entities j "
                       "ON j.id = d.entity_id AND j.organization_id = d.organization_id WHERE d.organization_id = %s "
                       "AND j.entity_type = %s AND j.entity_code = %s AND d.field_name = %s",
                       (org_id, JOURNAL_ENTITY_TYPE, run_id, ORG_PREIMAGE_FIELD)).fetchone()
    if row is None:
        return 0, 0
    pre = loads(row[1])
    current = conn.execute("SELECT updated_by::text FROM core_organizations WHERE id = %s FOR UPDATE",
                           (org_id,)).fetchone()
    if current is None or current[0] != str(MIGRATION_ACTOR_ID):
        return 0, 1
    conn.execute("UPDATE core_organizations SET settings = %s::jsonb, updated_at = %s::timestamptz, "
                 "updated_by = coalesce(%s::uuid, %s) WHERE id = %s",
                 (dumps(pre["settings"]), pre["updated_at"], pre["updated_by"], MIGRATION_ACTOR_ID, org_id))
    conn.execute("DELETE FROM core_dynamic_data WHERE id = %s", (row[0],))
    return 1, 0

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

from runner.compile import render
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


def _q(conn: psycopg.Connection[Any], name: str, **context: Any) -> psycopg.Cursor[Any]:
    """Execute template runner/sql/entities/<name> (every statement here is one, so `compile` shows it)."""
    stmt = render(f"entities/{name}", **context)
    return conn.execute(stmt.text, stmt.params)


def _rows(conn: psycopg.Connection[Any], name: str, **context: Any) -> list[dict[str, Any]]:
    return [loads(r[0]) for r in _q(conn, name, **context).fetchall()]


def journal_entity_id(conn: psycopg.Connection[Any], org_id: str, run_id: str) -> str:
    row = _q(conn, "journal_entity", org_id=org_id, run_id=run_id, journal_type=JOURNAL_ENTITY_TYPE).fetchone()
    if row is None:
        raise DataError(f"run {run_id} has no journal in organisation {org_id}")
    return str(row[0])


def _migrate_family(conn: psycopg.Connection[Any], spec: Spec, family: str, model: PostingRules | FiscalPeriods,
                    org_id: str, run_id: str) -> tuple[int, int]:
    entities = _rows(conn, "lock_family", org_id=org_id, entity_types=[t.lower() for t in model.entity_types],
                     migration_key=META_MIGRATION)
    if not entities:
        return 0, 0
    names = sorted({*model.fields, *(p.split(".")[1] for tf in model.transforms
                                     for p in (tf.set_, tf.source, tf.to) if p and p.startswith("dynamic."))})
    by_entity: dict[str, dict[str, dict[str, Any]]] = {}
    for f in _rows(conn, "lock_fields", org_id=org_id, entity_ids=[e["id"] for e in entities], field_names=names):
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
    actor = str(MIGRATION_ACTOR_ID)
    _q(conn, "mark_entities", org_id=org_id, actor=actor, updates=dumps(updates))
    if changed:
        _q(conn, "update_fields", org_id=org_id, actor=actor, fields=dumps(changed))
    if inserts:
        _q(conn, "insert_fields", org_id=org_id, actor=actor, smart_code=CREATED_FIELD_SMART_CODE,
           fields=dumps(inserts))
    if deletes:
        _q(conn, "delete_fields", org_id=org_id, ids=deletes)
    return len(entities), len(changed) + len(inserts) + len(deletes)


def _settings_preimage(conn: psycopg.Connection[Any], org_id: str, run_id: str) -> tuple[str, str] | None:
    row = _q(conn, "settings_preimage", org_id=org_id, run_id=run_id, journal_type=JOURNAL_ENTITY_TYPE,
             field_name=ORG_PREIMAGE_FIELD).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _migrate_org_config(conn: psycopg.Connection[Any], model: OrganizationConfig, org_id: str, run_id: str) -> int:
    journal = journal_entity_id(conn, org_id, run_id)
    if _settings_preimage(conn, org_id, run_id) is not None:
        return 0
    row = _q(conn, "lock_organization", org_id=org_id).fetchone()
    if row is None:
        raise DataError(f"organisation {org_id} does not exist (or is not visible to this role)")
    org = loads(row[0])
    settings = _Settings(copy.deepcopy(org.get("settings") or {}))
    apply_transforms(settings, model.transforms)
    if settings.settings == (org.get("settings") or {}):
        return 0
    pre = {"settings": org.get("settings"), "updated_at": org.get("updated_at"), "updated_by": org.get("updated_by")}
    actor = str(MIGRATION_ACTOR_ID)
    _q(conn, "update_settings", org_id=org_id, actor=actor, settings=dumps(settings.settings))
    _q(conn, "keep_settings_preimage", org_id=org_id, journal_id=journal, field_name=ORG_PREIMAGE_FIELD,
       json_type="json", preimage=dumps(pre), smart_code=PREIMAGE_SMART_CODE, actor=actor)
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


def rollback_entities(conn: psycopg.Connection[Any], run_id: str, org_id: str,
                      parts: tuple[str, ...] = ("entities", "config")) -> dict[str, int]:
    """Restore every entity, dynamic field and org setting the run changed, inside the caller's transaction.
    `parts`: "entities" (the entity families and their fields), "config" (the organisation's settings: one row,
    what `rollback --only config` restores in seconds).

    A row changed by someone else since the run (updated_by no longer the actor, or version moved on) is left as it
    is and counted as a conflict for review. Idempotent: what is restored no longer carries this run's marker.
    """
    actor = str(MIGRATION_ACTOR_ID)
    counts = {"entities_restored": 0, "dynamic_restored": 0, "organization_config": 0, "conflicts": 0}
    entities = _rows(conn, "lock_marked", org_id=org_id, run_id=run_id, role=ROLE_ENTITY,
                     migration_key=META_MIGRATION, run_id_key="run_id",
                     role_key="role") if "entities" in parts else []
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
        _q(conn, "restore_entities", org_id=org_id, actor=actor, rows=dumps(restore))
        counts["entities_restored"] = len(restore)
    if upserts:
        # Whole-row restore: UPDATE the rows that still exist, re-INSERT the ones a rename removed.
        columns = [r[0] for r in _q(conn, "field_columns").fetchall()]
        payload = dumps(upserts)
        _q(conn, "restore_fields", org_id=org_id, rows=payload, columns=columns)
        # HERA's trg_ef_soft_validate rewrites validation_status and ai_insights on every write from the row stored
        # under that id: an UPDATE leaves 'valid', an INSERT (nothing stored yet) 'invalid'. A field whose
        # pre-image came from an INSERT therefore only comes back exactly by being inserted again.
        rewritten = [r[0] for r in _q(conn, "fields_differing", org_id=org_id, rows=payload).fetchall()]
        if rewritten:
            _q(conn, "delete_fields", org_id=org_id, ids=rewritten)
        _q(conn, "reinsert_fields", org_id=org_id, rows=payload, columns=columns)
        counts["dynamic_restored"] += len(upserts)
        # A state neither write reproduces (a trigger of this HERA computes it otherwise) is not restored exactly:
        # say so, the run needs review.
        counts["conflicts"] += len(_q(conn, "fields_differing", org_id=org_id, rows=payload).fetchall())
    for entity_id, name in removals:
        cur = _q(conn, "delete_created_field", org_id=org_id, entity_id=entity_id, field_name=name, actor=actor)
        counts["dynamic_restored"] += cur.rowcount
    if "config" in parts:
        counts["organization_config"], conflict = _rollback_org_config(conn, org_id, run_id)
        counts["conflicts"] += conflict
    return counts


def _rollback_org_config(conn: psycopg.Connection[Any], org_id: str, run_id: str) -> tuple[int, int]:
    found = _settings_preimage(conn, org_id, run_id)
    if found is None:
        return 0, 0
    field_id, text = found
    pre = loads(text)
    actor = str(MIGRATION_ACTOR_ID)
    current = _q(conn, "organization_writer", org_id=org_id).fetchone()
    if current is None or current[0] != actor:
        return 0, 1
    _q(conn, "restore_settings", org_id=org_id, settings=dumps(pre["settings"]), updated_at=pre["updated_at"],
       updated_by=pre["updated_by"], actor=actor)
    _q(conn, "delete_fields", org_id=org_id, ids=[field_id])
    return 1, 0

"""What the harness writes into HERA, as constants shared by the engine, the snapshot diff and the validators.

docs/contract.md §6 is the contract; ARCHITECTURE.md ("Data written into HERA") explains every key. Change a value here
only together with that section: reports from older runs are read with these names.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

# Every row the harness writes or updates carries this actor in created_by/updated_by (HERA rejects NULL ones).
# Deterministic, so the diff can tell migration writes from concurrent v1 traffic without a lookup.
MIGRATION_ACTOR_ID: Final = UUID("81973630-5a97-54cb-93f4-88da9742869d")

# The run journal: one core_entities row per (organisation, run), checkpoint fields in core_dynamic_data.
JOURNAL_ENTITY_TYPE: Final = "MIGRATION_RUN"
JOURNAL_SMART_CODE: Final = "HERA.PLATFORM.MIGRATION.RUN.JOURNAL.v1"
CHECKPOINT_SMART_CODE: Final = "HERA.PLATFORM.MIGRATION.RUN.CHECKPOINT.v1"
QUARANTINE_SMART_CODE: Final = "HERA.PLATFORM.MIGRATION.RUN.QUARANTINE.v1"
PREIMAGE_SMART_CODE: Final = "HERA.PLATFORM.MIGRATION.RUN.PREIMAGE.v1"
# The journal field holding an organisation's settings before the run (core_organizations has no metadata).
ORG_PREIMAGE_FIELD: Final = "org_config_pre"

# metadata keys on universal_transactions / core_entities rows.
META_MIGRATION: Final = "migration"
META_REPORTING_ALIAS: Final = "reporting_smartcode"
# HERA's own reversal keys, written by hera_txn_reverse_v1 (original: reversal_id/reversed_at/reversal_reason;
# the -REV twin: reversal_of/reversal_reason/reversal_at).
HERA_REVERSAL_KEYS_ORIGINAL: Final = ("reversal_id", "reversed_at", "reversal_reason")
HERA_REVERSAL_KEYS_TWIN: Final = ("reversal_of", "reversal_reason", "reversal_at")

# metadata.migration.role
ROLE_REPOST: Final = "repost"
ROLE_ORIGINAL: Final = "original"
ROLE_ALIAS: Final = "alias"
ROLE_ENTITY: Final = "entity"

# Columns of an original that reverse + repost may change, and so the pre-image keeps (rollback restores them).
ORIGINAL_PREIMAGE_COLUMNS: Final = ("smart_code", "smart_code_status", "transaction_status", "metadata", "version",
                                    "updated_at", "updated_by")

# docs/contract.md §4: a run's before/after (and rollback) snapshots, in its report directory.
SNAPSHOT_FILE: Final = "snapshots.duckdb"

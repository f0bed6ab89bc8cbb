"""DuckDB connections for the snapshot layer, and the names shared by extraction and diff.

DuckDB never installs or loads an extension by itself here (autoinstall/autoload off). The PostgreSQL scanner
comes from the `duckdb-extension-postgres-scanner` wheel through `duckdb_extensions.import_extension`, which
INSTALLs the wheel's file into a project extension directory (never DuckDB's shared `~/.duckdb`):
`$HERA_DUCKDB_EXTENSION_DIR`, else `$XDG_CACHE_HOME/hera-migrate/duckdb-extensions` (`~/.cache/...`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

import duckdb

from runner.errors import DatabaseError

Label = Literal["before", "after", "rollback"]
LABELS: Final = ("before", "after", "rollback")  # rollback: the state after a rollback rehearsal
DIFF_LABELS: Final = ("before", "after")  # what the expected-effect diff compares

# The Sacred Six, in foreign-key order (parents first).
TABLES: Final = ("core_organizations", "core_entities", "core_dynamic_data", "core_relationships",
                 "universal_transactions", "universal_transaction_lines")
# Tables whose rows carry the harness's correlation keys in a `metadata` jsonb column.
METADATA_TABLES: Final = ("core_entities", "universal_transactions")
# The DuckDB file's `snapshots` table (one row per label taken) is named in runner/sql/snapshot/catalog_*.


def snapshot_table(label: str, table: str) -> str:
    return f"{label}_{table}"


def derived_table(label: str) -> str:
    """Per label: jsonb sub-documents computed by PostgreSQL at extraction (see extract.DERIVED_COLUMNS)."""
    return f"{label}_jsonb_derived"


def qi(name: str) -> str:
    """A quoted SQL identifier (DuckDB and PostgreSQL share the syntax)."""
    return '"' + name.replace('"', '""') + '"'


def extension_dir() -> Path:
    explicit = os.environ.get("HERA_DUCKDB_EXTENSION_DIR")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hera-migrate" / "duckdb-extensions"


# DuckDB gets a fixed budget and spills what does not fit to a temporary directory beside the snapshot file,
# instead of its default of 80 % of the machine's RAM. The process's RSS runs ~250 MB above it (allocator caches,
# Python). 512 MB fits the enterprise organisation's diff: its largest statement, a universal_transactions bucket,
# holds ~420 MB (hash tables of ~25 joins, expression state; see diff.BUCKET_PAIRS). Measured 2026-12-05 on the
# enterprise snapshot, diff alone: 2 GB limit, 2.27 GB RSS; 512 MB limit, 0.75 GB RSS.
MEMORY_LIMIT = os.environ.get("HERA_DUCKDB_MEMORY_LIMIT", "512MB")


def connect(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that can load nothing it was not told to, with a bounded memory budget."""
    ext = extension_dir()
    ext.mkdir(parents=True, exist_ok=True)
    spill = Path(str(path)).parent / ".duckdb-spill"
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False, "autoload_known_extensions": False, "extension_directory": str(ext),
        "memory_limit": MEMORY_LIMIT, "temp_directory": str(spill), "preserve_insertion_order": False}
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:
        raise DatabaseError(f"cannot open DuckDB file {path}: {exc}") from exc


def load_postgres_scanner(con: duckdb.DuckDBPyConnection) -> None:
    """Install the wheel's postgres_scanner into the project extension directory (idempotent) and load it."""
    import duckdb_extensions

    try:
        duckdb_extensions.import_extension("postgres_scanner", con=con)
        con.execute("LOAD postgres_scanner")
    except (duckdb.Error, ModuleNotFoundError) as exc:
        raise DatabaseError(f"cannot load DuckDB's postgres_scanner extension: {exc}",
                            hint="install duckdb-extension-postgres-scanner==1.5.5 (same version as duckdb), "
                                 "or take the snapshot with method='copy'") from exc

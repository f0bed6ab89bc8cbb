"""hera-migration-harness: migrate a HERA Finance DNA v1 ledger to v2 and prove the result."""

__version__ = "0.1.0"

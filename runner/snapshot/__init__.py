"""Before/after snapshots in DuckDB and the classification of every difference (docs/contract.md §1, §5)."""

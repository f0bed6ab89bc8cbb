"""Before/after snapshots in DuckDB and the classification of every difference (DESIGN.md §1, §5)."""

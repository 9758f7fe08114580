"""The tiered cache: memory (L1) -> Redis (L2) -> SQLite (L3)."""

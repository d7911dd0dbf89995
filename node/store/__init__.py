"""Persistence: what a node keeps, behind one contract, on SQLite or PostgreSQL.

base.py (the CatalogStore contract and its record types), models.py (SQLModel tables),
sql_store.py (the implementation: when and in which transaction rows are written),
sql_rows.py (a record's rows, and what a failed write means), sql_pending.py (envelopes
kept for retry, bounded), sql_artifacts.py (the rows of kept models and their readers),
sql_filter.py (a filter tree as parameterized SQL), keys.py (the one registry of filter
keys, which drives the parser, the SQL and the merge of live results), query_filter.py (the
filter language, and its limits), migrations/ (alembic: schema changes are migrations,
applied when a store opens).

Must never verify signatures or re-serialize a payload: it stores what callers verified.
"""

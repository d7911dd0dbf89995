"""Persistence: what a node keeps, behind one contract, on SQLite or PostgreSQL.

base.py (the CatalogStore contract and its record types), models.py (SQLModel tables),
sql_store.py (the implementation), keys.py (the one registry of filter keys, which drives
the parser, the SQL and the merge of live results), query_filter.py (the filter language),
migrations/ (alembic: schema changes are migrations, applied when a store opens).

Must never verify signatures or re-serialize a payload: it stores what callers verified.
"""

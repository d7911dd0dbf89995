"""Persistence: what a node keeps, behind one contract, on SQLite or PostgreSQL.

base.py (the CatalogStore contract and its record types), models.py (SQLModel tables),
sql_store.py (the implementation: when and in which transaction rows are written),
sql_rows.py (a record's rows, and what a failed write means), sql_pending.py (envelopes
kept for retry, bounded), sql_filter.py (a filter tree as parameterized SQL), keys.py (the
one registry of filter keys, which drives the parser, the SQL and the merge of live
results), query_filter.py (the filter language, and its limits), migrations/ (alembic: schema changes are migrations, applied when a store opens).
The owner's control: control_base.py (its part of the contract and its types),
control_models.py (its tables), sql_control.py (their SQL implementation, mixed into
SqlStore), sql_statements.py (each statement type's effect, in the write transaction),
key_chain.py (which node ids are one identity across key rotations).

Must never verify signatures or re-serialize a payload: it stores what callers verified.
"""

"""Persistence: what a node keeps, behind one contract, on SQLite or PostgreSQL.

base.py (the CatalogStore contract and its record types, the typed private run among them),
models.py (SQLModel tables), engine.py (database URLs, engines, SQLite settings),
sql_store.py (the implementation: when and in which transaction rows are written),
sqlite_reads.py (on SQLite, the reads every peer's call makes, run by the driver beside
SQLAlchemy), same.py (a cache key that is its SQLAlchemy expression itself),
sql_rows.py (a record's rows, and what a failed write means), run_detail.py (a private run's
detail as one JSON document), sql_pending.py (envelopes kept for retry, bounded),
sql_artifacts.py (the rows of kept models, their readers and registered versions),
sql_sources.py (provenance: which peers served each record by sync), sql_filter.py (a filter
tree as parameterized SQL), keys.py (the one registry of filter keys, which drives the
parser, the SQL and the merge of live results), query_filter.py (the filter language, and
its limits), filter_reference.py (the language's reference for `catalog query --help` and
the README, written from keys.py and those limits), writable.py (a SQLite store checked
usable before a daemon starts), migrations/ (alembic: schema changes are migrations, applied
when a store opens).
The owner's control: control_base.py (its part of the contract and its types),
control_models.py (its tables), sql_control.py (their SQL implementation, mixed into
SqlStore), sql_statements.py (each statement type's effect, in the write transaction),
key_chain.py (which node ids are one identity across key rotations).
Privacy: privacy_models.py (the budget ledger's table), sql_privacy.py (charging a private
release against its pipeline's budget before it starts, settling it after; mixed into
SqlStore).

Must never verify signatures or re-serialize a payload: it stores what callers verified.
"""

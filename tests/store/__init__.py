"""The store's contract: CatalogStore's behaviour written once, run on SQLite and PostgreSQL.

Optuna-style: every test takes the `store` (or `db_url`) fixture of tests/conftest.py, which
is parametrized over both backends; the PostgreSQL half carries the `postgres` marker and
never skips in CI. Only how a test puts a backend into a state differs per backend (a
read-only SQLite file, a read-only PostgreSQL database), never what the store must do then.
"""

"""Alembic environment: migrations run on the connection the store hands over.

The store (node/sql_store.py) applies migrations on open; developers add a revision with
`alembic -c node/migrations/alembic.ini revision -m "..."` and write it by hand.
"""

from alembic import context
from sqlmodel import SQLModel

import gridpoint.node.store.control_models  # noqa: F401  (the owner's-control tables, too)
import gridpoint.node.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("gridpoint migrations run through the store, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

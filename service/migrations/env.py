"""Alembic environment: runs on the connection `service.migrate` hands over (whose
`search_path` is the service's schema when it has one of its own)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `python -m service migrate`")

context.configure(
    connection=connection,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    version_table_schema=context.config.attributes.get("schema"),
)
with context.begin_transaction():
    context.run_migrations()

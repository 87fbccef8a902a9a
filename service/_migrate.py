"""Apply the Alembic migrations (`python -m service migrate`)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

import checkpoints

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None, schema: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


async def migrate(database_url: str, revision: str = "head", *, schema: str = "public") -> None:
    """Bring the database at `database_url` to `revision`.

    On PostgreSQL the service's tables, and Alembic's version table, go into `schema`
    (created if need be); with a schema other than `public` nothing outside it is touched.
    """
    if database_url.startswith("sqlite"):
        # The SQLite file's folder must exist before the first connection.
        database = sa.make_url(database_url).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    own_schema = None if schema == "public" else schema
    engine = checkpoints.create_engine(database_url, schema=own_schema)
    try:
        async with engine.begin() as conn:
            if own_schema is not None:
                quoted = conn.dialect.identifier_preparer.quote_identifier(own_schema)
                await conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
            await conn.run_sync(
                lambda sync: command.upgrade(alembic_config(sync, own_schema), revision)
            )
    finally:
        await engine.dispose()

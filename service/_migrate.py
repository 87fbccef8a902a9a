"""Apply the Alembic migrations (`python -m service migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

import checkpoints

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` to `revision`."""
    if database_url.startswith("sqlite"):
        # The SQLite file's folder must exist before the first connection.
        from sqlalchemy import make_url

        database = make_url(database_url).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = checkpoints.create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync: command.upgrade(alembic_config(sync), revision)
            )
    finally:
        await engine.dispose()

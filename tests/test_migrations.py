"""The Alembic migrations create exactly the tables the code describes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from checkpoints import create_engine
from checkpoints import metadata as checkpoint_metadata
from service.accounts import metadata as books_metadata
from service.operations import metadata as service_metadata

pytestmark = pytest.mark.anyio


async def test_migrated_schema_matches_the_models(db_url: str):
    """`python -m service migrate` leaves no difference to the tables the code uses."""
    metadata = sa.MetaData()
    for source in (checkpoint_metadata, books_metadata, service_metadata):
        for table in source.tables.values():
            table.to_metadata(metadata)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_the_migrate_command_creates_the_schema_and_can_run_again(tmp_path):
    """`python -m service migrate` on a fresh DATA_DIR creates the SQLite file; a second
    run is a no-op."""
    import asyncio
    import sys

    from checkpoints import CheckpointStore
    from tests.conftest import ROOT, child_env

    env = {**child_env(), "DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "migrate", cwd=ROOT, env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    store = CheckpointStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'viewbait.db'}")
    try:
        _op, created = await store.create_operation(user_id="u", kind="k", input={})
        assert created
    finally:
        await store.close()

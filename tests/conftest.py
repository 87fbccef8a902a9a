"""Real servers for the whole session: a throwaway PostgreSQL cluster and redis-server
(or TEST_DATABASE_URL / TEST_REDIS_URL when set), and the backends every behaviour suite
runs over."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from service import migrate
from tests.servers import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ExternalServer:
    """A server the tests were pointed at: it cannot be stopped or restarted."""

    url: str


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | ExternalServer]:
    """The session's PostgreSQL server."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield ExternalServer(url)
        return
    server = PostgresServer()
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | ExternalServer]:
    """The session's Redis server."""
    if url := os.environ.get("TEST_REDIS_URL"):
        yield ExternalServer(url)
        return
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def _pg_migrated(postgres: PostgresServer | ExternalServer) -> str:
    asyncio.run(migrate(postgres.url))
    return postgres.url


async def _truncate_all(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = (
                await conn.execute(
                    sa.text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                        "AND tablename <> 'alembic_version'"
                    )
                )
            ).scalars().all()
            if tables:
                names = ", ".join(f'"{t}"' for t in tables)
                await conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
def pg_url(_pg_migrated: str) -> str:
    """A migrated PostgreSQL database with every table empty."""
    asyncio.run(_truncate_all(_pg_migrated))
    return _pg_migrated


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    asyncio.run(migrate(url))
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each database backend in turn: the behaviour suites run over both."""
    fixture = "pg_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def redis_url(redis_server: RedisServer | ExternalServer) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url


def child_env() -> dict[str, str]:
    """Environment for a child Python process that imports the project and its tests."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}

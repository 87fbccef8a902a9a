"""A PostgreSQL database shaped like ViewBait's Supabase one (`viewbait.sql`) for each
test, the service deployed on it with ACCOUNTS_BACKEND=viewbait, and ViewBait's users."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import respx
import sqlalchemy as sa

from service import Settings, create_app, migrate
from service.providers import RetryPolicy
from tests.clock import FakeClock
from tests.conftest import ExternalServer
from tests.servers import PostgresServer
from tests.service.conftest import SECRET, in_process

SCHEMA_SQL = Path(__file__).with_name("viewbait.sql")
GEMINI = "https://gemini.test"
IMAGE_URL = f"{GEMINI}/v1beta/models/gemini-3-pro-image-preview:generateContent"
HEATMAP_URL = f"{GEMINI}/v1beta/models/gemini-3.1-flash-image-preview:generateContent"
#: Template databases: ViewBait's schema alone, and with the service migrated beside it.
BARE, MIGRATED = "viewbait_bare", "viewbait_migrated"


def dsn(url: str, database: str | None = None) -> str:
    """An asyncpg DSN of `url`, or of another database on its server."""
    parsed = sa.make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def database_url(server_url: str, database: str) -> str:
    return sa.make_url(server_url).set(database=database).render_as_string(hide_password=False)


async def _build_templates(server_url: str) -> None:
    admin = await asyncpg.connect(dsn(server_url))
    try:
        for name in (BARE, MIGRATED):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            viewbait = await asyncpg.connect(dsn(server_url, name))
            try:
                await viewbait.execute(SCHEMA_SQL.read_text())
            finally:
                await viewbait.close()
    finally:
        await admin.close()
    await migrate(database_url(server_url, MIGRATED), schema="viewbait_ai")


@pytest.fixture(scope="session")
def viewbait_templates(postgres: PostgresServer | ExternalServer) -> str:
    """The session's server with both template databases built."""
    asyncio.run(_build_templates(postgres.url))
    return postgres.url


async def _clone(server_url: str, template: str) -> str:
    name = f"viewbait_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return name


async def _drop(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _database(server_url: str, template: str) -> Iterator[str]:
    name = asyncio.run(_clone(server_url, template))
    try:
        yield database_url(server_url, name)
    finally:
        asyncio.run(_drop(server_url, name))


@pytest.fixture
def viewbait_url(viewbait_templates: str) -> Iterator[str]:
    """A database of this test's own: ViewBait's tables, the service migrated beside."""
    yield from _database(viewbait_templates, MIGRATED)


@pytest.fixture
def bare_viewbait_url(viewbait_templates: str) -> Iterator[str]:
    """A database of this test's own with ViewBait's tables only (not migrated)."""
    yield from _database(viewbait_templates, BARE)


@pytest.fixture
def viewbait_env(viewbait_url: str, tmp_path: Path) -> dict[str, str]:
    """Settings of a deployment on ViewBait's database (offline provider)."""
    return {
        "DATABASE_URL": viewbait_url,
        "ACCOUNTS_BACKEND": "viewbait",
        "DATA_DIR": str(tmp_path / "data"),
        "AUTH_JWT_SECRET": SECRET,
        "ALLOW_LOCAL_PROVIDER": "true",
        "LEASE_TTL_S": "2",
        "SYNC_WAIT_S": "30",
        "SHUTDOWN_GRACE_S": "5",
    }


class ViewBait:
    """ViewBait's side of the database: its users, subscriptions and rows."""

    def __init__(self, url: str) -> None:
        self.dsn = dsn(url)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def value(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def user(self, product_id: str | None = None, credits: int = 10) -> str:
        """A new ViewBait user with a subscription row (product None: the free tier)."""
        user_id = str(uuid.uuid4())
        await self.fetch("INSERT INTO auth.users (id) VALUES ($1)", uuid.UUID(user_id))
        await self.fetch(
            "INSERT INTO public.user_subscriptions (user_id, product_id, credits_total, "
            "credits_remaining) VALUES ($1, $2, $3, $3)", uuid.UUID(user_id), product_id,
            credits)
        return user_id

    async def credits(self, user_id: str) -> int:
        return int(await self.value(
            "SELECT credits_remaining FROM public.user_subscriptions WHERE user_id = $1",
            uuid.UUID(user_id)))

    async def transactions(self, user_id: str) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT amount, type, description, thumbnail_id FROM public.credit_transactions "
            "WHERE user_id = $1 ORDER BY created_at, amount", uuid.UUID(user_id))

    async def thumbnails(self, user_id: str) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT * FROM public.thumbnails WHERE user_id = $1 ORDER BY id",
            uuid.UUID(user_id))

    async def ledger(self, operation_id: str) -> list[tuple[str, int]]:
        """The service's ledger entries of an operation (in its own schema)."""
        rows = await self.fetch("SELECT entry, delta FROM viewbait_ai.credit_ledger "
                                "WHERE operation_id = $1 ORDER BY id", operation_id)
        return [(row["entry"], row["delta"]) for row in rows]


@pytest.fixture
def viewbait(viewbait_url: str) -> ViewBait:
    return ViewBait(viewbait_url)


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock (cache windows, leases, links), starting now."""
    return FakeClock(time.time())


@pytest.fixture
def edge() -> respx.MockRouter:
    """Gemini's HTTP edge, behind the app's own transport."""
    return respx.MockRouter(assert_all_called=False)


@pytest.fixture
async def api(viewbait_env, clock, edge) -> AsyncIterator[httpx.AsyncClient]:
    """The service on ViewBait's database in process, Gemini at `edge`, retries that
    never sleep."""
    env = {**viewbait_env, "IMAGE_PROVIDERS": "gemini", "GEMINI_API_KEY": "g-key",
           "GEMINI_BASE_URL": GEMINI, "ALLOW_LOCAL_PROVIDER": ""}

    async def no_sleep(_seconds: float) -> None:
        return None

    app = create_app(Settings.from_env(env), clock=clock,
                     retry=RetryPolicy(sleep=no_sleep, jitter=lambda _wait: 0.0),
                     transport=httpx.MockTransport(edge.async_handler))
    async with in_process(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     timeout=60) as client:
            yield client

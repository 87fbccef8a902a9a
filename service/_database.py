"""The database as the settings describe it: the engine (the service's tables in
DATABASE_SCHEMA), and the start-up check that LISTEN/NOTIFY works through whatever sits
between the service and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import checkpoints

from ._errors import SettingsError
from ._settings import POOLER_ADVICE, Settings

log = logging.getLogger("service")

#: How long a notification may take to come back before LISTEN is declared broken.
NOTIFY_PROBE_TIMEOUT_S: Final = 10.0


def create_engine(settings: Settings) -> AsyncEngine:
    """The engine of DATABASE_URL; on PostgreSQL with a DATABASE_SCHEMA of its own, every
    connection's `search_path` is that schema alone."""
    schema = None if settings.database_schema == "public" else settings.database_schema
    return checkpoints.create_engine(settings.database_url, schema=schema)


def _refused(what: str) -> SettingsError:
    return SettingsError(f"{what} through DATABASE_URL: is it a transaction-mode pooler? "
                         f"{POOLER_ADVICE}")


async def check_notifications(
    engine: AsyncEngine, timeout: float = NOTIFY_PROBE_TIMEOUT_S
) -> None:
    """Refuse to start (`SettingsError`) when a notification sent through the pool does not
    reach a LISTEN connection — as through Supabase's transaction-mode pooler, where
    followers of an operation would never be woken. A database that cannot be reached is
    left to /readyz (the service starts, and recovers without a restart)."""
    if engine.dialect.name != "postgresql":
        return
    import asyncpg

    # Down, starting, shutting down: not a verdict on LISTEN.
    unreachable = (OSError, TimeoutError, asyncpg.InterfaceError,
                   asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
                   sa.exc.InterfaceError, sa.exc.OperationalError)
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        listener = await asyncpg.connect(dsn, timeout=timeout)
    except unreachable as exc:
        log.warning("LISTEN/NOTIFY not checked at start, the database is unreachable: %s", exc)
        return
    channel = f"viewbait_probe_{uuid.uuid4().hex}"
    arrived = asyncio.Event()

    def on_notification(*_args: Any) -> None:
        arrived.set()

    try:
        try:
            await listener.add_listener(channel, on_notification)
            async with engine.begin() as conn:
                await conn.execute(sa.text("SELECT pg_notify(:channel, 'probe')"),
                                   {"channel": channel})
        except unreachable as exc:
            log.warning("LISTEN/NOTIFY not checked at start: %s", exc)
            return
        except (asyncpg.PostgresError, sa.exc.DBAPIError) as exc:
            raise _refused(f"LISTEN/NOTIFY failed ({type(exc).__name__})") from exc
        try:
            await asyncio.wait_for(arrived.wait(), timeout)
        except TimeoutError:
            refusal = _refused(f"a NOTIFY did not reach its LISTEN connection in {timeout:g} s")
            raise refusal from None
    finally:
        listener.terminate()

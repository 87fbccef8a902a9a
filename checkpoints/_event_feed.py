"""Reading operations' event logs for their followers.

Reads go through the in-process `EventCache`. A follower that waits is woken by NOTIFY on
PostgreSQL (any process, through the one `PgListener`), by this process's own appends,
and by a periodic re-read that covers SQLite and a lost LISTEN connection. While LISTEN
is connected, followers at the end of a log that nothing has woken since it was last read
to its end do not read it again (one read per operation and poll interval remains).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ._event_cache import EventCache
from ._models import Event
from ._notify import PgListener, Waiters
from ._rows import aware
from ._schema import operation_events


class EventFeed:
    """The event logs of one store, as its followers read and wait for them."""

    def __init__(self, single: AsyncEngine, *, listen: bool, poll_interval: float | None) -> None:
        """`single`: the store's engine for single statements."""
        is_pg = single.dialect.name == "postgresql"
        self._single = single
        self._waiters = Waiters()
        self._cache = EventCache()
        self._listener: PgListener | None = None
        if is_pg and listen:
            dsn = single.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = PgListener(dsn, self._waiters)
        self._poll_interval = poll_interval or (2.0 if is_pg else 0.1)
        self._fallback_poll = 0.25  # PostgreSQL while the LISTEN connection is down

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()

    def appended(self, operation_id: str) -> None:
        """Wake this process's followers of an operation that got a new event."""
        self._waiters.wake(operation_id)

    def forget(self, operation_ids: Sequence[str]) -> None:
        """Drop the cached logs of deleted operations."""
        self._cache.forget(operation_ids)

    async def read(
        self, operation_id: str, after: int, limit: int, *, listening: bool = False
    ) -> list[Event]:
        """`listening`: the reader waits to be woken (and LISTEN is connected), so it may
        be told "nothing new" from memory (see `_event_cache`)."""
        stamp = None
        if listening:
            # While LISTEN is connected every append wakes (and so re-stamps) its
            # operation. The stamp also changes every poll interval: the safety net's one
            # read per operation.
            now = asyncio.get_running_loop().time()
            stamp = (*self._waiters.stamp(operation_id), int(now // self._poll_interval))
        return await self._cache.read(
            operation_id, after, limit,
            lambda start, count: self._fetch(operation_id, start, count),
            stamp=stamp,
        )

    async def wait(
        self, operation_id: str, after: int, timeout: float, limit: int
    ) -> list[Event]:
        """Events after `after`, waiting up to `timeout` seconds for the first one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            woken = self._waiters.register(operation_id)
            try:
                listening = (
                    self._listener is not None and await self._listener.ensure_connected()
                )
                events = await self.read(operation_id, after, limit, listening=listening)
                remaining = deadline - loop.time()
                if events or remaining <= 0:
                    return events
                interval = self._poll_interval
                if self._listener is not None and not listening:
                    interval = self._fallback_poll
                # asyncio.timeout, not wait_for: no task of its own per waiting follower.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, interval)):
                        await woken.wait()
            finally:
                self._waiters.unregister(operation_id, woken)

    async def _fetch(self, operation_id: str, after: int, limit: int) -> list[Event]:
        stmt = (
            sa.select(operation_events)
            .where(operation_events.c.operation_id == operation_id, operation_events.c.seq > after)
            .order_by(operation_events.c.seq)
            .limit(limit)
        )
        async with self._single.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Event(row.seq, row.type, row.data, aware(row.created_at)) for row in rows]

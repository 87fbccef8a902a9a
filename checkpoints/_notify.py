"""Waking followers of an operation's event log.

PostgreSQL: the store's writes `pg_notify` the channel with `<operation id>/<seq>`, and one
dedicated asyncpg connection (outside the pool) LISTENs for the whole process. SQLite, or
PostgreSQL while that connection is down: followers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any, Final

log = logging.getLogger("checkpoints")

CHANNEL: Final = "operation_events"


#: Wake counters are kept in this many slots, by the operation id's hash (a collision only
#: costs a database read that was not needed).
_WAKE_COUNTERS: Final = 1024


class Waiters:
    """Followers waiting per operation id, woken by a notification or a local write.

    `stamp(operation_id)` changes whenever the operation's followers are woken (and when
    every follower is, e.g. after the LISTEN connection came back): what a reader has
    heard of the operation's log, for the event cache."""

    def __init__(self) -> None:
        self._by_operation: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._wakes = [0] * _WAKE_COUNTERS
        self._epoch = 0

    def stamp(self, operation_id: str) -> tuple[int, int]:
        return self._epoch, self._wakes[hash(operation_id) % _WAKE_COUNTERS]

    def register(self, operation_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._by_operation[operation_id].add(event)
        return event

    def unregister(self, operation_id: str, event: asyncio.Event) -> None:
        waiting = self._by_operation.get(operation_id)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self._by_operation[operation_id]

    def wake(self, operation_id: str) -> None:
        self._wakes[hash(operation_id) % _WAKE_COUNTERS] += 1
        for event in self._by_operation.get(operation_id, ()):
            event.set()

    def wake_all(self) -> None:
        self._epoch += 1
        for waiting in self._by_operation.values():
            for event in waiting:
                event.set()


class PgListener:
    """One LISTEN connection per process; reconnects lazily after it drops."""

    def __init__(self, dsn: str, waiters: Waiters, *, retry_after: float = 1.0) -> None:
        self._dsn = dsn
        self._waiters = waiters
        self._retry_after = retry_after
        self._connection: Any = None
        self._lock = asyncio.Lock()
        self._next_attempt = 0.0

    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def ensure_connected(self) -> bool:
        if self.is_connected():
            return True
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self.is_connected():
                return True
            if loop.time() < self._next_attempt:
                return False
            self._next_attempt = loop.time() + self._retry_after
            import asyncpg

            try:
                connection = await asyncpg.connect(self._dsn, timeout=5)
                await connection.add_listener(CHANNEL, self._on_notification)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("LISTEN connection failed, followers poll: %s", exc)
                return False
            connection.add_termination_listener(self._on_terminated)
            self._connection = connection
            # Anything appended while we were not listening is found by the re-read.
            self._waiters.wake_all()
            return True

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._waiters.wake(payload.partition("/")[0])

    def _on_terminated(self, _conn: Any) -> None:
        self._connection = None
        self._waiters.wake_all()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

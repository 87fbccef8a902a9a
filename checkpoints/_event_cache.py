"""An in-process cache of event logs.

A log is append-only and its sequence numbers are gap-free, so a prefix `1..k` that was
read once never changes: followers of one operation (a creator, reconnecting browsers,
other tabs) replay it from memory, and when a notification wakes them all at once, one
of them reads the new events from the database for everyone (single flight).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from ._models import Event

Fetch = Callable[[int, int], Awaitable[list[Event]]]


class EventCache:
    def __init__(self, *, max_operations: int = 512, max_events: int = 2000) -> None:
        self._logs: OrderedDict[str, list[Event]] = OrderedDict()
        # A lock lives while someone waits on it; then it goes away with its last user.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._max_operations = max_operations
        self._max_events = max_events

    async def read(self, operation_id: str, after: int, limit: int, fetch: Fetch) -> list[Event]:
        """Events after `after` (at most `limit`); `fetch(after, limit)` reads the store."""
        cached = self._hit(operation_id, after, limit)
        if cached is not None:
            return cached
        lock = self._locks.get(operation_id)
        if lock is None:
            lock = self._locks[operation_id] = asyncio.Lock()
        async with lock:
            cached = self._hit(operation_id, after, limit)
            if cached is not None:
                return cached
            log = self._logs.get(operation_id, [])
            start = min(after, len(log))
            fresh = await fetch(start, limit + (after - start))
            self._extend(operation_id, start, fresh)
            return [e for e in fresh if e.seq > after][:limit]

    def _hit(self, operation_id: str, after: int, limit: int) -> list[Event] | None:
        """Cached events when the cache holds everything up to at least one new one."""
        log = self._logs.get(operation_id)
        if log is None or after >= len(log):
            return None
        self._logs.move_to_end(operation_id)
        return log[after : after + limit]

    def _extend(self, operation_id: str, start: int, fresh: Sequence[Event]) -> None:
        log = self._logs.get(operation_id, [])
        if start != len(log):
            return
        for event in fresh:
            if event.seq != len(log) + 1 or len(log) >= self._max_events:
                break
            log.append(event)
        if log:
            self._logs[operation_id] = log
            self._logs.move_to_end(operation_id)
            while len(self._logs) > self._max_operations:
                self._logs.popitem(last=False)

    def forget(self, operation_ids: Sequence[str]) -> None:
        for operation_id in operation_ids:
            self._logs.pop(operation_id, None)

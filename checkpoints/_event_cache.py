"""An in-process cache of event logs.

A log is append-only and its sequence numbers are gap-free, so a prefix `1..k` that was
read once never changes: followers of one operation (a creator, reconnecting browsers,
other tabs) replay it from memory, and when a notification wakes them all at once, one
of them reads the new events from the database for everyone (single flight).

A reader may also say what it has heard of the log (a `stamp`, opaque here: e.g. how many
notifications of the operation have arrived): once a read found the end of the log under
that stamp, readers with the same stamp that are at the end get "nothing new" from memory
— followers that wait for the next event do not each ask the database first.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence

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
        # operation id -> (the seq its log was read to the end at, under that stamp)
        self._ends: dict[str, tuple[int, Hashable]] = {}

    async def read(
        self, operation_id: str, after: int, limit: int, fetch: Fetch,
        *, stamp: Hashable | None = None,
    ) -> list[Event]:
        """Events after `after` (at most `limit`); `fetch(after, limit)` reads the store.
        `stamp`: what the reader has heard of the log (taken before it asks), or None to
        always ask the store when the cache has nothing new."""
        cached = self._hit(operation_id, after, limit)
        if cached is not None:
            return cached
        if self._at_end(operation_id, after, stamp):
            return []
        lock = self._locks.get(operation_id)
        if lock is None:
            lock = self._locks[operation_id] = asyncio.Lock()
        async with lock:
            cached = self._hit(operation_id, after, limit)
            if cached is not None:
                return cached
            if self._at_end(operation_id, after, stamp):
                return []
            log = self._logs.get(operation_id, [])
            start = min(after, len(log))
            count = limit + (after - start)
            fresh = await fetch(start, count)
            self._extend(operation_id, start, fresh)
            if stamp is not None and len(fresh) < count:
                self._found_end(operation_id, fresh[-1].seq if fresh else start, stamp)
            return [e for e in fresh if e.seq > after][:limit]

    def _at_end(self, operation_id: str, after: int, stamp: Hashable | None) -> bool:
        """Whether a read under `stamp` found the log ending at or before `after`."""
        end = self._ends.get(operation_id)
        return stamp is not None and end is not None and end[1] == stamp and after >= end[0]

    def _found_end(self, operation_id: str, seq: int, stamp: Hashable) -> None:
        if len(self._logs.get(operation_id, ())) != seq:
            return  # not all cached (a log longer than the cap): no shortcut
        self._ends.pop(operation_id, None)
        self._ends[operation_id] = (seq, stamp)
        while len(self._ends) > self._max_operations:
            del self._ends[next(iter(self._ends))]

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
                evicted, _log = self._logs.popitem(last=False)
                self._ends.pop(evicted, None)

    def forget(self, operation_ids: Sequence[str]) -> None:
        for operation_id in operation_ids:
            self._logs.pop(operation_id, None)
            self._ends.pop(operation_id, None)

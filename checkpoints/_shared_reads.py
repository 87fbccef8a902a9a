"""Reads of one key that overlap share one query.

Followers of one operation arrive in bursts (a page with many tabs, browsers reconnecting
after a deploy), and each looks the operation up. A caller never joins a query that was
already under way when it asked — it could miss a write the caller has just seen — so
callers that arrive while a query runs wait for the next one, which starts as soon as the
running one ends and answers all of them: at most one query per key runs, and one waits,
whatever the number of callers. Each caller still sees the row as it was at some moment
after it asked, as with a query of its own.

Queries run in tasks of their own: a caller that is cancelled stops waiting, and the query
(and its pooled connection) finishes for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedReads(Generic[T]):
    """`await reads.get(key)`: `read(key)`, shared by the callers that overlap."""

    def __init__(self, read: Callable[[str], Awaitable[T]]) -> None:
        self._read = read
        self._running: dict[str, asyncio.Future[T]] = {}
        self._next: dict[str, asyncio.Future[T]] = {}

    async def get(self, key: str) -> T:
        answer = self._next.get(key)
        if answer is None:
            if key in self._running:
                answer = self._next[key] = asyncio.get_running_loop().create_future()
            else:
                answer = self._start(key)
        return await asyncio.shield(answer)

    def _start(self, key: str) -> asyncio.Future[T]:
        query = asyncio.ensure_future(self._read(key))
        self._running[key] = query
        query.add_done_callback(lambda done: self._finished(key, done))
        return query

    def _finished(self, key: str, done: asyncio.Future[T]) -> None:
        del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: its callers may all have gone
        waiting = self._next.pop(key, None)
        if waiting is not None:
            self._start(key).add_done_callback(lambda query: _copy(query, waiting))


def _copy(source: asyncio.Future[T], target: asyncio.Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
        target.exception()  # retrieved, as above
    else:
        target.set_result(source.result())

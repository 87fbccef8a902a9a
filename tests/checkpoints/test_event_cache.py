"""The in-process event-log cache: replays from memory, one reader for many followers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from checkpoints import Event
from checkpoints._event_cache import EventCache

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    """A fake store read: counts reads, can hold them back."""

    def __init__(self, count: int) -> None:
        self.events = [Event(i, "step", {"i": i}, NOW) for i in range(1, count + 1)]
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def fetch(self, after: int, limit: int) -> list[Event]:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return [e for e in self.events if e.seq > after][:limit]


async def test_a_replay_is_read_once_then_served_from_memory():
    """The second follower replaying from 0 costs no read; new events cost one."""
    cache, log = EventCache(), Log(5)
    assert [e.seq for e in await cache.read("op", 0, 100, log.fetch)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in await cache.read("op", 2, 100, log.fetch)] == [3, 4, 5]
    assert [e.seq for e in await cache.read("op", 0, 2, log.fetch)] == [1, 2]
    assert log.reads == 1
    log.events.append(Event(6, "result", {}, NOW))
    assert [e.seq for e in await cache.read("op", 5, 100, log.fetch)] == [6]
    assert [e.seq for e in await cache.read("op", 3, 100, log.fetch)] == [4, 5, 6]
    assert log.reads == 2
    assert await cache.read("op", 6, 100, log.fetch) == []  # nothing new: asks the store
    assert log.reads == 3


async def test_many_followers_woken_together_share_one_read():
    """Single flight: 50 concurrent readers of one operation → one store read."""
    cache, log = EventCache(), Log(3)
    log.gate = asyncio.Event()
    readers = [asyncio.create_task(cache.read("op", 0, 100, log.fetch)) for _ in range(50)]
    await asyncio.sleep(0.01)
    log.gate.set()
    results = await asyncio.gather(*readers)
    assert all([e.seq for e in r] == [1, 2, 3] for r in results)
    assert log.reads == 1


async def test_only_a_gap_free_prefix_is_cached_and_the_cache_is_bounded():
    """A read that does not continue the cached prefix is answered but not kept; old
    operations fall out of the cache."""
    cache = EventCache(max_operations=2, max_events=3)
    log = Log(5)
    assert [e.seq for e in await cache.read("a", 0, 100, log.fetch)] == [1, 2, 3, 4, 5]
    reads = log.reads
    assert [e.seq for e in await cache.read("a", 0, 2, log.fetch)] == [1, 2]  # cached
    assert [e.seq for e in await cache.read("a", 3, 100, log.fetch)] == [4, 5]  # past cap
    assert log.reads == reads + 1
    for name in ("b", "c"):
        await cache.read(name, 0, 100, Log(1).fetch)
    before = log.reads
    await cache.read("a", 0, 1, log.fetch)  # evicted: read again
    assert log.reads == before + 1
    cache.forget(["a"])
    await cache.read("a", 0, 1, log.fetch)
    assert log.reads == before + 2


async def test_a_reader_at_the_end_under_the_same_stamp_is_answered_from_memory():
    """Once a read found the end of the log under a stamp, readers at the end with that
    stamp get nothing new without a read; a new stamp (a wake-up) reads the store."""
    cache, log = EventCache(), Log(3)
    assert [e.seq for e in await cache.read("op", 0, 100, log.fetch, stamp=(0, 0))] == [1, 2, 3]
    assert log.reads == 1
    for _ in range(5):
        assert await cache.read("op", 3, 100, log.fetch, stamp=(0, 0)) == []
    assert log.reads == 1
    log.events.append(Event(4, "step", {}, NOW))
    assert await cache.read("op", 3, 100, log.fetch) == [log.events[3]]  # no stamp: reads
    assert log.reads == 2
    log.events.append(Event(5, "result", {}, NOW))
    assert [e.seq for e in await cache.read("op", 4, 100, log.fetch, stamp=(0, 1))] == [5]
    assert log.reads == 3


async def test_a_read_that_stopped_at_its_limit_is_not_taken_for_the_end():
    """A read cut off by its limit says nothing about the end of the log."""
    cache, log = EventCache(), Log(5)
    assert [e.seq for e in await cache.read("op", 0, 2, log.fetch, stamp="s")] == [1, 2]
    assert [e.seq for e in await cache.read("op", 2, 100, log.fetch, stamp="s")] == [3, 4, 5]
    assert log.reads == 2

"""Kept slots: renewed by the limiter's one keeper task for as long as they are kept,
released after."""

from __future__ import annotations

import asyncio

import pytest

from ratelimit import MemoryBackend, RateLimiter, RateLimitExceeded, RoutePolicy, SlotKeeper

from .conftest import policies

pytestmark = pytest.mark.anyio

GEN = RoutePolicy("generate", 100, 60, "closed", concurrency=2)


async def test_kept_slots_outlive_their_ttl_and_free_on_release(clock) -> None:
    """Two slots kept through many TTLs stay held (a third is refused), with one keeper
    task for both; once released, both are free again and the keeper has stopped."""
    limiter = RateLimiter(MemoryBackend(clock=clock), policies(GEN), clock=clock)
    rounds: list[float] = []
    ten_rounds = asyncio.Event()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        rounds.append(seconds)
        if len(rounds) >= 10:
            ten_rounds.set()
        await asyncio.sleep(0)

    limiter.keeper = SlotKeeper(sleep=sleep)
    first = await limiter.acquire_slot("generate", "u", ttl_s=3)
    second = await limiter.acquire_slot("generate", "u", ttl_s=3)
    async with first.kept(), second.kept():
        await ten_rounds.wait()  # 10 s on the clock: past three TTLs
        assert set(rounds) == {1.0}
        keepers = [t for t in asyncio.all_tasks() if t.get_name() == "ratelimit:slot-keeper"]
        assert len(keepers) == 1
        with pytest.raises(RateLimitExceeded):
            await limiter.acquire_slot("generate", "u", ttl_s=3)
    assert len(limiter.keeper) == 0
    await asyncio.sleep(0)
    assert keepers[0].done()
    again = [await limiter.acquire_slot("generate", "u", ttl_s=3) for _ in range(2)]
    assert all(slot.held for slot in again)
    await limiter.aclose()

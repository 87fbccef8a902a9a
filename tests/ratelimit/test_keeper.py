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


async def test_a_renewal_under_way_lands_before_the_release(clock) -> None:
    """A slot released while the keeper is renewing it is released after that renewal
    has landed: the renewal cannot hold again a slot that was just freed (the route
    would stay full until its TTL). A renewal that fails in an unexpected way does not
    stop the renewals of the other kept slots either."""
    limiter = RateLimiter(MemoryBackend(clock=clock), policies(GEN), clock=clock)
    rounds = 0
    more_rounds = asyncio.Event()

    async def sleep(seconds: float) -> None:
        nonlocal rounds
        rounds += 1
        if rounds >= 10:
            more_rounds.set()
        await asyncio.sleep(0)

    limiter.keeper = SlotKeeper(sleep=sleep)
    slow = await limiter.acquire_slot("generate", "u", ttl_s=3)
    broken = await limiter.acquire_slot("generate", "u", ttl_s=3)
    renewing, go_on = asyncio.Event(), asyncio.Event()
    real_renew = slow.renew
    renewals = 0

    async def slow_renew(ttl_s: float | None = None) -> bool:
        nonlocal renewals
        renewals += 1
        renewing.set()
        await go_on.wait()
        return await real_renew(ttl_s)

    async def broken_renew(ttl_s: float | None = None) -> bool:
        raise RuntimeError("a bug in one slot's renewal")

    slow.renew = slow_renew  # type: ignore[method-assign]
    broken.renew = broken_renew  # type: ignore[method-assign]
    async with broken.kept():
        leaving = asyncio.Event()

        async def hold_slow() -> None:
            async with slow.kept():
                await renewing.wait()
                leaving.set()

        holder = asyncio.create_task(hold_slow())
        await leaving.wait()
        await asyncio.sleep(0.01)
        assert not holder.done()  # the release waits for the renewal under way
        go_on.set()
        await holder
        assert not slow.held
        # Freed for real: both of the route's two slots can be taken except `broken`'s.
        taken = await limiter.acquire_slot("generate", "u", ttl_s=3)
        assert taken.held
        await more_rounds.wait()  # the keeper goes on despite `broken`
    assert renewals >= 1
    await limiter.aclose()

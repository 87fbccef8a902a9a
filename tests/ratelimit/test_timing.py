"""Headers and Retry-After agree with when the next request is really admitted."""

from __future__ import annotations

import time

import anyio
import pytest

from ratelimit import RateLimiter, RateLimitExceeded, RoutePolicy
from tests.clock import FakeClock

from .conftest import policies

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("denial_cache_size", [0, 100])
async def test_retry_after_is_when_the_next_request_is_admitted(
    clock: FakeClock, denial_cache_size: int
) -> None:
    """Refused up to the exact refill instant, admitted at Retry-After (rounded up)."""
    # 3 units per 10 s: one unit every 3.333 s, so Retry-After rounds 3.333 up to 4.
    limiter = RateLimiter.from_url(
        "memory://", policies(RoutePolicy("heatmap", 3, 10)), clock=clock,
        denial_cache_size=denial_cache_size,
    )
    start = clock.now
    await limiter.check("heatmap", "user:a", cost=3)
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.check("heatmap", "user:a")
    assert info.value.retry_after == 4
    clock.now = start + 3.333333  # one microsecond short of one unit
    with pytest.raises(RateLimitExceeded) as again:
        await limiter.check("heatmap", "user:a")
    assert again.value.retry_after == 1
    clock.now = start + info.value.retry_after
    decision = await limiter.check("heatmap", "user:a")
    assert decision.remaining == 0


async def test_reset_is_when_the_quota_is_full_again(clock: FakeClock) -> None:
    """`t` of RateLimit is the time until all `q` units are available again."""
    limiter = RateLimiter.from_url(
        "memory://", policies(RoutePolicy("heatmap", 3, 10)), clock=clock
    )
    start = clock.now
    decision = await limiter.check("heatmap", "user:a", cost=3)
    assert decision.headers["RateLimit"] == '"heatmap";r=0;t=10'
    assert decision.reset_after == 10
    clock.now = start + 9.999
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.check("heatmap", "user:a", cost=3)
    assert info.value.headers["RateLimit"] == '"heatmap";r=2;t=1'
    clock.now = start + 10
    full = await limiter.check("heatmap", "user:a", cost=3)
    assert full.headers["RateLimit"] == '"heatmap";r=0;t=10'


async def test_cached_denial_counts_down(clock: FakeClock) -> None:
    """A denial answered from the local cache reports the time still left, not the old one."""
    limiter = RateLimiter.from_url(
        "memory://", policies(RoutePolicy("heatmap", 1, 60)), clock=clock
    )
    await limiter.check("heatmap", "user:a")
    with pytest.raises(RateLimitExceeded) as first:
        await limiter.check("heatmap", "user:a")
    assert first.value.retry_after == 60
    clock.advance(20.5)
    with pytest.raises(RateLimitExceeded) as later:
        await limiter.check("heatmap", "user:a")
    assert later.value.retry_after == 40
    assert later.value.headers["RateLimit"] == '"heatmap";r=0;t=40'


async def test_retry_after_on_real_redis(redis_url: str) -> None:
    """On Redis server time: refused before Retry-After, admitted once it has passed."""
    limiter = RateLimiter.from_url(redis_url, policies(RoutePolicy("heatmap", 1, 1)))
    try:
        first = await limiter.check("heatmap", "user:a")
        assert first.headers["RateLimit"] == '"heatmap";r=0;t=1'
        with pytest.raises(RateLimitExceeded) as info:
            await limiter.check("heatmap", "user:a")
        refused_at = time.monotonic()
        assert info.value.retry_after == 1
        await anyio.sleep(0.5)
        with pytest.raises(RateLimitExceeded):
            await limiter.check("heatmap", "user:a")
        await anyio.sleep(max(0.0, refused_at + info.value.retry_after - time.monotonic()))
        assert (await limiter.check("heatmap", "user:a")).remaining == 0
    finally:
        await limiter.aclose()

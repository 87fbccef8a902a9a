"""The behaviour every backend must show: memory, Redis, and a real 3-node Redis Cluster."""

from __future__ import annotations

import asyncio

import pytest

from ratelimit import (
    Budget,
    CostExceedsLimit,
    Policies,
    RateLimitConfigError,
    RateLimitExceeded,
    RoutePolicy,
    UnknownRoute,
)

from .conftest import MakeLimiter

pytestmark = pytest.mark.anyio

# Windows of an hour or a day: nothing refills noticeably while a test runs on real time.
GEN = RoutePolicy("generate", 10, 3600, "closed", concurrency=2)
OPS = RoutePolicy("operations", 5, 86400, "open")


async def test_admits_up_to_the_limit_then_refuses(make_limiter: MakeLimiter, user: str) -> None:
    """Exactly `limit` unit requests pass; the next is a 429 with Retry-After."""
    limiter = await make_limiter(GEN)
    for i in range(10):
        decision = await limiter.check("generate", f"user:{user}")
        assert decision.remaining == 9 - i
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.check("generate", f"user:{user}")
    err = info.value
    assert (err.status, err.code, err.retryable) == (429, "RATE_LIMIT_EXCEEDED", True)
    # One unit refills in 3600 / 10 = 360 s.
    assert err.retry_after == 360
    assert err.headers["Retry-After"] == "360"
    assert err.headers["RateLimit-Policy"] == '"generate";q=10;w=3600'
    assert err.headers["RateLimit"].startswith('"generate";r=0;t=')


async def test_headers_of_an_admitted_request(make_limiter: MakeLimiter, user: str) -> None:
    """A decision carries RateLimit-Policy and RateLimit with r left and t to full."""
    limiter = await make_limiter(GEN)
    decision = await limiter.check("generate", f"user:{user}", cost=4)
    assert decision.headers["RateLimit-Policy"] == '"generate";q=10;w=3600'
    # 4 units used: refilled at 10 per 3600 s, full again in 1440 s.
    assert decision.headers["RateLimit"] in ('"generate";r=6;t=1440', '"generate";r=6;t=1439')
    assert decision.remaining == 6
    assert decision.source in ("memory", "redis")


async def test_weighted_costs_add_up(make_limiter: MakeLimiter, user: str) -> None:
    """Costs 1, 2 and 4 take exactly that many units; the sum never exceeds the limit."""
    limiter = await make_limiter(GEN)
    assert (await limiter.check("generate", f"user:{user}", cost=1)).remaining == 9
    assert (await limiter.check("generate", f"user:{user}", cost=2)).remaining == 7
    assert (await limiter.check("generate", f"user:{user}", cost=4)).remaining == 3
    with pytest.raises(RateLimitExceeded):
        await limiter.check("generate", f"user:{user}", cost=4)
    assert (await limiter.check("generate", f"user:{user}", cost=2)).remaining == 1
    assert (await limiter.check("generate", f"user:{user}", cost=1)).remaining == 0


async def test_denied_weighted_request_charges_nothing(
    make_limiter: MakeLimiter, user: str
) -> None:
    """A refused cost-4 request leaves the 3 remaining units untouched."""
    limiter = await make_limiter(GEN)
    await limiter.check("generate", f"user:{user}", cost=7)
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.check("generate", f"user:{user}", cost=4)
    assert info.value.headers["RateLimit"].startswith('"generate";r=3;')
    assert (await limiter.check("generate", f"user:{user}", cost=3)).remaining == 0


async def test_callers_and_routes_are_independent(make_limiter: MakeLimiter, user: str) -> None:
    """One caller's exhausted route leaves other callers and other routes alone."""
    limiter = await make_limiter(GEN, OPS)
    await limiter.check("generate", f"user:{user}", cost=10)
    with pytest.raises(RateLimitExceeded):
        await limiter.check("generate", f"user:{user}")
    assert (await limiter.check("generate", f"user:{user}-other")).remaining == 9
    assert (await limiter.check("operations", f"user:{user}")).remaining == 4
    assert (await limiter.check("operations", "ip:203.0.113.9")).remaining == 4


async def test_budget_is_charged_all_or_none(make_limiter: MakeLimiter, user: str) -> None:
    """A shared budget refuses a request the route would allow, and neither is charged."""
    edit = RoutePolicy("edit", 10, 3600)
    pol = Policies(
        {"generate": GEN, "edit": edit},
        (Budget("ai", 12, 3600, frozenset({"generate", "edit"})),),
    )
    limiter = await make_limiter(policies=pol)
    first = await limiter.check("generate", f"user:{user}", cost=8)
    assert first.headers["RateLimit-Policy"] == '"generate";q=10;w=3600, "ai";q=12;w=3600'
    assert first.headers["RateLimit"].startswith('"generate";r=2;')
    assert '"ai";r=4;' in first.headers["RateLimit"]
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.check("edit", f"user:{user}", cost=5)
    assert '"edit";r=10;' in info.value.headers["RateLimit"]
    assert '"ai";r=4;' in info.value.headers["RateLimit"]
    # Nothing of the refused request was charged: edit still has 10, the budget 4.
    after = await limiter.check("edit", f"user:{user}", cost=4)
    assert after.headers["RateLimit"].startswith('"edit";r=6;')
    assert '"ai";r=0;' in after.headers["RateLimit"]


async def test_refund_gives_units_back(make_limiter: MakeLimiter, user: str) -> None:
    """Refunded units can be spent again, and a cached denial does not outlive the refund."""
    limiter = await make_limiter(GEN)
    await limiter.check("generate", f"user:{user}", cost=10)
    with pytest.raises(RateLimitExceeded):
        await limiter.check("generate", f"user:{user}", cost=2)
    assert await limiter.refund("generate", user, 3) is True
    assert (await limiter.check("generate", f"user:{user}", cost=2)).remaining == 1


async def test_refund_never_exceeds_the_limit(make_limiter: MakeLimiter, user: str) -> None:
    """Refunding more than was spent fills the bucket, no further."""
    limiter = await make_limiter(GEN)
    await limiter.check("generate", f"user:{user}", cost=1)
    await limiter.refund("generate", user, 5)
    assert (await limiter.check("generate", f"user:{user}", cost=10)).remaining == 0


async def test_cost_above_limit_is_a_configuration_error(
    make_limiter: MakeLimiter, user: str
) -> None:
    """A cost no window could admit raises CostExceedsLimit, not an endless 429."""
    limiter = await make_limiter(GEN)
    with pytest.raises(CostExceedsLimit, match="cost 11 on route 'generate'"):
        await limiter.check("generate", f"user:{user}", cost=11)
    with pytest.raises(RateLimitConfigError):
        await limiter.check("generate", f"user:{user}", cost=0)


async def test_unknown_route_is_an_error(make_limiter: MakeLimiter, user: str) -> None:
    """A route id without a policy raises UnknownRoute naming the known ones."""
    limiter = await make_limiter(GEN)
    with pytest.raises(UnknownRoute, match=r"'thumbnails'.*generate"):
        await limiter.check("thumbnails", f"user:{user}")


async def test_concurrent_callers_never_overdraw(make_limiter: MakeLimiter, user: str) -> None:
    """50 concurrent callers on one process share 10 units exactly."""
    limiter = await make_limiter(GEN)

    async def one() -> bool:
        try:
            await limiter.check("generate", f"user:{user}")
        except RateLimitExceeded:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(results) == 10


async def test_concurrency_slots(make_limiter: MakeLimiter, user: str) -> None:
    """The (concurrency+1)-th slot is refused with a 429; releasing one admits the next."""
    limiter = await make_limiter(GEN)
    async with limiter.slot("generate", user) as first, limiter.slot("generate", user):
        with pytest.raises(RateLimitExceeded) as info:
            await limiter.acquire_slot("generate", user)
        assert info.value.status == 429
        assert info.value.headers["Retry-After"] == "1"
        # Another user has slots of their own.
        async with limiter.slot("generate", f"{user}-other"):
            pass
        assert await first.renew() is True
        await first.release()
        third = await limiter.acquire_slot("generate", user)
        await third.release()
    # Both released on the way out of the blocks: two fit again.
    a = await limiter.acquire_slot("generate", user)
    b = await limiter.acquire_slot("generate", user)
    await a.release()
    await b.release()


async def test_slot_released_when_the_block_raises(make_limiter: MakeLimiter, user: str) -> None:
    """An exception in the block still frees the slot."""
    limiter = await make_limiter(RoutePolicy("generate", 10, 3600, concurrency=1))
    with pytest.raises(ValueError, match="boom"):
        async with limiter.slot("generate", user):
            raise ValueError("boom")
    async with limiter.slot("generate", user) as slot:
        assert slot.held


async def test_route_without_concurrency_grants_slots(
    make_limiter: MakeLimiter, user: str
) -> None:
    """A route with no concurrency limit never refuses a slot."""
    limiter = await make_limiter(OPS)
    async with limiter.slot("operations", user), limiter.slot("operations", user) as slot:
        assert await slot.renew() is True

"""What the Redis backend keeps in Redis: one string per bucket, with its TTL, and nothing
the keys of an earlier version can disturb."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio

from ratelimit import (
    Bucket,
    Budget,
    Policies,
    RateLimiter,
    RateLimitExceeded,
    RedisBackend,
    RoutePolicy,
)

from .conftest import policies

pytestmark = pytest.mark.anyio

GEN = RoutePolicy("generate", 10, 60)


async def test_bucket_expires_when_it_would_be_full_again(redis_url: str) -> None:
    """A charged bucket is one string key whose TTL (set by the script) is its reset time."""
    limiter = RateLimiter.from_url(
        redis_url,
        Policies({"generate": GEN}, (Budget("ai", 100, 3600, frozenset({"generate"})),)),
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        decision = await limiter.check("generate", "user:a", cost=4)
        # 4 of 10 units over 60 s: full again in 24 s; 4 of 100 over an hour: in 144 s.
        assert decision.headers["RateLimit"] == '"generate";r=6;t=24, "ai";r=96;t=144'
        for name, reset_ms in (("generate", 24_000), ("ai", 144_000)):
            key = f"rl:{{user:a}}:{name}:tokens"
            assert await client.type(key) == b"string"
            assert reset_ms - 1_000 < await client.pttl(key) <= reset_ms + 1
    finally:
        await client.aclose()
        await limiter.aclose()


async def test_refused_request_leaves_the_key_untouched(redis_url: str) -> None:
    """A refusal writes nothing: the same value, and a TTL that is not extended."""
    limiter = RateLimiter.from_url(redis_url, policies(GEN))
    client = redis.asyncio.Redis.from_url(redis_url)
    key = "rl:{user:a}:generate:tokens"
    try:
        await limiter.check("generate", "user:a", cost=8)
        before, ttl_before = await client.get(key), await client.pttl(key)
        with pytest.raises(RateLimitExceeded):
            await limiter.check("generate", "user:a", cost=4)
        assert await client.get(key) == before
        assert await client.pttl(key) <= ttl_before
    finally:
        await client.aclose()
        await limiter.aclose()


async def test_keys_of_earlier_formats_do_not_disturb_decisions(redis_url: str) -> None:
    """Buckets left in an earlier format (a hash, then text) under their key names are
    ignored: no WRONGTYPE, no parse error."""
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.hset("rl:{user:a}:generate", mapping={"s": 0, "t": 0})
    await client.pexpire("rl:{user:a}:generate", 60_000)
    await client.set("rl:{user:a}:generate:bucket", "0 1000", px=60_000)
    limiter = RateLimiter.from_url(redis_url, policies(GEN))
    try:
        assert (await limiter.check("generate", "user:a")).remaining == 9
        assert await limiter.refund("generate", "a", 1)
        assert (await limiter.check("generate", "user:a")).remaining == 9
    finally:
        await client.aclose()
        await limiter.aclose()


async def test_backend_accepts_any_sequence_of_buckets(redis_url: str) -> None:
    """A bucket list built anew on every call is charged like the same tuple: one state."""
    backend = RedisBackend.from_url(redis_url)
    try:
        for expected in (9, 8, 7):
            verdict = await backend.charge("user:a", [Bucket("x", 10, 60_000_000)], 1)
            assert (verdict.allowed, verdict.remaining) == (True, (expected,))
    finally:
        await backend.aclose()


async def test_fast_bucket_keeps_its_key_for_a_second(redis_url: str) -> None:
    """A bucket full again within milliseconds keeps its key a second, and then reads full."""
    limiter = RateLimiter.from_url(redis_url, policies(RoutePolicy("fast", 1000, 1)))
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert (await limiter.check("fast", "user:a")).headers["RateLimit"] == '"fast";r=999;t=1'
        assert 900 < await client.pttl("rl:{user:a}:fast:tokens") <= 1000
        await anyio.sleep(0.01)  # 10 units refill: the bucket is full, its key still there
        assert (await limiter.check("fast", "user:a")).remaining == 999
    finally:
        await client.aclose()
        await limiter.aclose()

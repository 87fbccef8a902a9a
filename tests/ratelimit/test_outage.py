"""Outage policy on a real Redis that dies and comes back, plus the circuit breaker and the
local denial cache on their own."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from ratelimit import (
    CircuitBreaker,
    RateLimiter,
    RateLimitExceeded,
    RateLimitUnavailable,
    RoutePolicy,
    Verdict,
)
from ratelimit._denials import DenialCache
from tests.clock import FakeClock
from tests.conftest import ExternalServer
from tests.servers import RedisServer, free_port

from .conftest import policies

pytestmark = pytest.mark.anyio

GEN = RoutePolicy("generate", 20, 60, "closed", concurrency=2)
OPS = RoutePolicy("operations", 4, 3600, "open", concurrency=2)


@pytest.fixture
def killable_redis(redis_server: RedisServer | ExternalServer, redis_url: str) -> RedisServer:
    """The session's throwaway Redis (outage tests kill and restart it)."""
    if isinstance(redis_server, ExternalServer):
        pytest.skip("TEST_REDIS_URL points at a server these tests cannot kill and restart")
    return redis_server


def sample(registry: CollectorRegistry, name: str, route: str) -> float:
    return registry.get_sample_value(f"ratelimit_{name}_total", {"route": route}) or 0.0


async def test_outage_fails_closed_fast_open_locally_and_recovers(
    killable_redis: RedisServer, clock: FakeClock
) -> None:
    """Redis killed: closed routes 503 in well under 100 ms, open routes use the local
    bucket (and are limited by it); Redis restarted: Redis decides again."""
    registry = CollectorRegistry()
    limiter = RateLimiter.from_url(
        killable_redis.url, policies(GEN, OPS), clock=clock, registry=registry
    )
    try:
        assert (await limiter.check("operations", "user:a")).source == "redis"
        killable_redis.kill()
        try:
            for _ in range(6):
                started = time.perf_counter()
                with pytest.raises(RateLimitUnavailable) as info:
                    await limiter.check("generate", "user:a")
                assert time.perf_counter() - started < 0.1
                err = info.value
                assert (err.status, err.code) == (503, "RATE_LIMIT_UNAVAILABLE")
                assert err.retryable
                assert err.retry_after >= 1
                assert err.headers["Retry-After"] == str(err.retry_after)
            assert limiter.breaker.is_open
            # Fail-open: the local bucket with the same policy admits 4, then limits.
            for left in (3, 2, 1, 0):
                decision = await limiter.check("operations", "user:a")
                assert (decision.source, decision.remaining) == ("fallback", left)
            with pytest.raises(RateLimitExceeded):
                await limiter.check("operations", "user:a")
            # Slots: refused on the closed route, held locally on the open one.
            with pytest.raises(RateLimitUnavailable):
                await limiter.acquire_slot("generate", "a")
            async with limiter.slot("operations", "a"), limiter.slot("operations", "a"):
                with pytest.raises(RateLimitExceeded):
                    await limiter.acquire_slot("operations", "a")
        finally:
            killable_redis.start()
        clock.advance(limiter.breaker.cooldown_s)
        back = await limiter.check("operations", "user:a")
        # The restarted Redis is empty: its bucket is full again.
        assert (back.source, back.remaining) == ("redis", 3)
        assert not limiter.breaker.is_open
        assert (await limiter.check("generate", "user:a")).source == "redis"
        assert sample(registry, "unavailable", "generate") == 7
        assert sample(registry, "fail_open", "operations") >= 5
        assert sample(registry, "limited", "operations") == 2
    finally:
        await limiter.aclose()


async def test_fail_open_limit_is_divided_by_instances(
    killable_redis: RedisServer, clock: FakeClock
) -> None:
    """With `instances=2` the local bucket allows half the policy."""
    limiter = RateLimiter.from_url(
        killable_redis.url, policies(OPS), clock=clock, instances=2
    )
    try:
        killable_redis.kill()
        try:
            first = await limiter.check("operations", "user:a")
            assert first.headers["RateLimit-Policy"] == '"operations";q=2;w=3600'
            await limiter.check("operations", "user:a")
            with pytest.raises(RateLimitExceeded):
                await limiter.check("operations", "user:a")
            assert await limiter.refund("operations", "a", 1) is False
            assert (await limiter.check("operations", "user:a")).source == "fallback"
        finally:
            killable_redis.start()
    finally:
        await limiter.aclose()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung Redis)."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", port))
        server.listen(64)
        yield port


async def test_hung_redis_costs_one_socket_timeout_then_nothing(
    silent_server: int, clock: FakeClock
) -> None:
    """Against a Redis that never answers, each call waits at most the short socket
    timeout until the breaker opens; then calls do not wait at all."""
    limiter = RateLimiter.from_url(
        f"redis://127.0.0.1:{silent_server}/0", policies(GEN), clock=clock
    )
    try:
        for _ in range(limiter.breaker.failure_threshold):
            started = time.perf_counter()
            with pytest.raises(RateLimitUnavailable):
                await limiter.check("generate", "user:a")
            assert time.perf_counter() - started < 0.5
        started = time.perf_counter()
        for _ in range(100):
            with pytest.raises(RateLimitUnavailable):
                await limiter.check("generate", "user:a")
        assert time.perf_counter() - started < 0.1
    finally:
        await limiter.aclose()


def test_breaker_opens_probes_and_closes(clock: FakeClock) -> None:
    """Opens after the threshold, lets one probe through after the cooldown, closes on
    success and re-opens on a failed probe."""
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=2.0, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.allows_call()
    breaker.record_failure()
    assert breaker.is_open
    assert not breaker.allows_call()
    assert breaker.retry_after_s() == 2
    clock.advance(2.0)
    assert breaker.allows_call()  # the probe
    assert not breaker.allows_call()  # only one at a time
    breaker.record_failure()
    assert not breaker.allows_call()
    clock.advance(2.0)
    assert breaker.allows_call()
    breaker.record_success()
    assert not breaker.is_open
    assert breaker.allows_call()
    assert breaker.allows_call()


def test_breaker_gives_up_on_a_probe_that_never_reports(clock: FakeClock) -> None:
    """A probe whose task was cancelled cannot leave the breaker half-open forever."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1.0, clock=clock)
    breaker.record_failure()
    clock.advance(1.0)
    assert breaker.allows_call()
    clock.advance(0.5)
    assert not breaker.allows_call()
    clock.advance(0.5)
    assert breaker.allows_call()


DENIED = Verdict(False, 5_000_000, (1,), (30_000_000,))


def test_denial_cache_refuses_only_what_the_store_would() -> None:
    """A cached denial answers equal or larger costs until the retry time, never smaller
    costs, and never at or after the retry time."""
    cache = DenialCache(10)
    cache.remember("user:a", "generate", 2, 100.0, DENIED)
    assert cache.lookup("user:a", "generate", 2, 104.9) is not None
    assert cache.lookup("user:a", "generate", 4, 104.9) is not None
    assert cache.lookup("user:a", "generate", 1, 104.9) is None
    assert cache.lookup("user:a", "edit", 2, 104.9) is None
    assert cache.lookup("user:a", "generate", 2, 105.0) is None
    assert len(cache) == 0


def test_denial_cache_is_bounded_and_cleared_by_refund() -> None:
    """The least recently used entry goes first; `forget` drops a caller's entries."""
    cache = DenialCache(2)
    cache.remember("user:a", "generate", 1, 0.0, DENIED)
    cache.remember("user:b", "generate", 1, 0.0, DENIED)
    assert cache.lookup("user:a", "generate", 1, 1.0) is not None
    cache.remember("user:c", "generate", 1, 0.0, DENIED)
    assert len(cache) == 2
    assert cache.lookup("user:b", "generate", 1, 1.0) is None
    cache.forget("user:a")
    assert cache.lookup("user:a", "generate", 1, 1.0) is None
    assert cache.lookup("user:c", "generate", 1, 1.0) is not None
    disabled = DenialCache(0)
    disabled.remember("user:a", "generate", 1, 0.0, DENIED)
    assert disabled.lookup("user:a", "generate", 1, 1.0) is None


async def test_ping_tells_whether_the_store_answers(killable_redis: RedisServer) -> None:
    """ping() is True while Redis runs, False (without raising) while it is down, and
    the in-process backend always answers."""
    limiter = RateLimiter.from_url(killable_redis.url, policies(GEN, OPS))
    memory = RateLimiter.from_url(None, policies(GEN, OPS))
    try:
        assert await limiter.ping()
        killable_redis.kill()
        try:
            assert not await limiter.ping()
        finally:
            killable_redis.start()
        assert await limiter.ping()
        assert await memory.ping()
    finally:
        await limiter.aclose()
        await memory.aclose()


def test_policy_headers_name_the_route_policy() -> None:
    """policy_headers() gives the RateLimit-Policy of a route without charging anything."""
    limiter = RateLimiter.from_url(None, policies(GEN, OPS))
    assert limiter.policy_headers("generate") == {"RateLimit-Policy": '"generate";q=20;w=60'}

"""Requests decided together: on one Redis, the requests of one
event-loop tick that find another of their route waiting for Redis share one run of the
charge script. Each is still all-or-none and decided in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio

from ratelimit import (
    Budget,
    Policies,
    RateLimiter,
    RateLimitExceeded,
    RateLimitUnavailable,
    RedisBackend,
    RoutePolicy,
    Slot,
)
from ratelimit._backend import slots_key
from ratelimit._redis import MAX_BATCH
from tests.conftest import ExternalServer
from tests.servers import RedisServer, free_port

from .conftest import policies

pytestmark = pytest.mark.anyio

GEN = RoutePolicy("generate", 100, 86400)


async def script_runs(url: str) -> int:
    """How many EVALSHA and EVAL commands Redis has run."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))
    finally:
        await client.aclose()


async def admitted(limiter: RateLimiter, route: str, identity: str, cost: int) -> int:
    try:
        await limiter.check(route, identity, cost=cost)
    except RateLimitExceeded:
        return 0
    return cost


async def test_a_burst_is_decided_exactly_in_few_runs(redis_url: str) -> None:
    """300 concurrent requests against a limit of 100: exactly 100 pass, and Redis ran the
    script far fewer than 300 times."""
    limiter = RateLimiter.from_url(redis_url, policies(GEN), socket_timeout_s=5.0)
    try:
        # Connected, and both scripts (a lone request's, a run's) loaded.
        await asyncio.gather(*(limiter.check("generate", "user:warm") for _ in range(2)))
        before = await script_runs(redis_url)
        results = await asyncio.gather(
            *(admitted(limiter, "generate", "user:burst", 1) for _ in range(300))
        )
        runs = await script_runs(redis_url) - before
        assert sum(results) == 100
        assert runs <= 2 * (1 + 300 // MAX_BATCH)
        with pytest.raises(RateLimitExceeded):
            await limiter.check("generate", "user:burst")
    finally:
        await limiter.aclose()


async def test_weighted_requests_in_one_run_add_up_exactly(redis_url: str) -> None:
    limiter = RateLimiter.from_url(redis_url, policies(GEN), socket_timeout_s=5.0)
    try:
        costs = [1, 2, 4] * 40  # 280 units asked for, 100 available
        results = await asyncio.gather(
            *(admitted(limiter, "generate", "user:w", c) for c in costs)
        )
        taken = sum(results)
        # Plenty of requests of cost 1 come after any refusal of a bigger one: all 100 go.
        assert taken == 100
        with pytest.raises(RateLimitExceeded):
            await limiter.check("generate", "user:w")
    finally:
        await limiter.aclose()


async def test_requests_of_many_callers_with_a_shared_budget(redis_url: str) -> None:
    """Batched requests of different callers, each checked against the route and a budget:
    every caller gets its own answer, and the budget is all-or-none per request."""
    route = RoutePolicy("generate", 5, 86400)
    pol = Policies({"generate": route}, (Budget("ai", 8, 86400, frozenset({"generate"})),))
    limiter = RateLimiter.from_url(redis_url, pol, socket_timeout_s=5.0)
    try:
        users = [f"user:b{i}" for i in range(20)]
        # Per caller: 5 route units, but 8 budget units shared by its requests of cost 2.
        results = await asyncio.gather(
            *(admitted(limiter, "generate", u, 2) for u in users for _ in range(4))
        )
        per_user = [sum(results[i * 4 : (i + 1) * 4]) for i in range(len(users))]
        assert per_user == [4] * len(users)  # two requests of 2 fit the route's 5
        decision = await limiter.check("generate", users[0])
        assert decision.headers["RateLimit"].startswith('"generate";r=0;')
        assert '"ai";r=3;' in decision.headers["RateLimit"]
    finally:
        await limiter.aclose()


async def test_a_caller_cancelled_before_the_run_is_not_charged(redis_url: str) -> None:
    limiter = RateLimiter.from_url(redis_url, policies(GEN), socket_timeout_s=5.0)
    try:
        first = asyncio.ensure_future(limiter.check("generate", "user:c"))  # sent alone
        second = asyncio.ensure_future(limiter.check("generate", "user:c"))  # gathered
        third = asyncio.ensure_future(limiter.check("generate", "user:c", cost=50))
        await asyncio.sleep(0)  # all three have started; the run is not sent yet
        third.cancel()
        await asyncio.gather(first, second)
        with pytest.raises(asyncio.CancelledError):
            await third
        assert (await limiter.check("generate", "user:c")).remaining == 97
    finally:
        await limiter.aclose()


async def test_a_script_lost_by_redis_is_sent_again(redis_url: str) -> None:
    limiter = RateLimiter.from_url(redis_url, policies(GEN), socket_timeout_s=5.0)
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        await limiter.check("generate", "user:s")
        await admin.script_flush()
        before = await script_runs(redis_url)
        results = await asyncio.gather(
            *(admitted(limiter, "generate", "user:s", 1) for _ in range(50))
        )
        assert sum(results) == 50
        # The lone request and each gathered run fail once, then run with EVAL: two
        # commands per run, not per request.
        assert await script_runs(redis_url) - before <= 2 * (2 + 50 // MAX_BATCH)
        assert (await limiter.check("generate", "user:s")).remaining == 48
    finally:
        await admin.aclose()
        await limiter.aclose()


async def test_a_dead_redis_fails_every_waiting_request(
    redis_server: RedisServer | ExternalServer, redis_url: str
) -> None:
    if isinstance(redis_server, ExternalServer):
        pytest.skip("TEST_REDIS_URL points at a server this test cannot kill")
    limiter = RateLimiter.from_url(redis_url, policies(GEN), socket_timeout_s=5.0)
    try:
        await limiter.check("generate", "user:d")
        redis_server.kill()
        try:
            results = await asyncio.gather(
                *(limiter.check("generate", "user:d") for _ in range(40)),
                return_exceptions=True,
            )
        finally:
            redis_server.start()
        assert all(isinstance(r, RateLimitUnavailable) for r in results)
    finally:
        await limiter.aclose()


async def test_a_proxy_that_refuses_runs_of_several_callers_gets_requests_alone(
    tmp_path: Path,
) -> None:
    """Behind a sharding proxy a run of several callers' keys is refused with CROSSSLOT (a
    one-node Redis Cluster answers the same way to a plain client): the refused run's
    requests are sent alone, and so is every request after it."""
    port = free_port()
    while port > 55000:  # the cluster bus listens on port + 10000
        port = free_port()
    node = RedisServer(port=port)
    node.extra_args = (
        "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"),
    )
    node.start()
    try:
        admin = redis.asyncio.Redis(port=node.port)
        await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        for _ in range(500):
            if b"cluster_state:ok" in await admin.execute_command("CLUSTER", "INFO"):
                break
            await asyncio.sleep(0.02)
        await admin.aclose()
        limiter = RateLimiter.from_url(node.url, policies(GEN), socket_timeout_s=5.0)
        try:
            users = [f"user:p{i}" for i in range(30)]
            decisions = await asyncio.gather(*(limiter.check("generate", u) for u in users))
            assert [d.remaining for d in decisions] == [99] * len(users)
            backend = limiter.backend
            assert isinstance(backend, RedisBackend)
            assert backend.batching is False
            decisions = await asyncio.gather(*(limiter.check("generate", u) for u in users))
            assert [d.remaining for d in decisions] == [98] * len(users)
        finally:
            await limiter.aclose()
    finally:
        node.destroy()


@pytest.mark.parametrize("value", [b"garbage", b"7 1764385455123456", b""])
async def test_a_stray_value_in_a_bucket_counts_as_a_full_bucket(
    redis_url: str, value: bytes
) -> None:
    """A value the scripts did not write fails no run (which may hold other callers'
    requests): the bucket counts as full, alone or in a run."""
    limiter = RateLimiter.from_url(redis_url, policies(GEN), socket_timeout_s=5.0)
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        for user in ("user:stray-alone", "user:stray-run"):
            await admin.set(f"rl:{{{user}}}:generate:tokens", value, px=60_000)
        assert (await limiter.check("generate", "user:stray-alone")).remaining == 99
        others = [limiter.check("generate", f"user:stray-{i}") for i in range(5)]
        decisions = await asyncio.gather(*others, limiter.check("generate", "user:stray-run"))
        assert [d.remaining for d in decisions] == [99] * 6
    finally:
        await admin.aclose()
        await limiter.aclose()


async def held_or_refused(limiter: RateLimiter, identity: str) -> Slot | None:
    try:
        return await limiter.acquire_slot("streams", None, identity=identity)
    except RateLimitExceeded:
        return None


async def test_a_burst_of_slot_holds_holds_exactly_the_capacity_in_few_runs(
    redis_url: str,
) -> None:
    """200 concurrent holds of one caller's 20 slots: exactly 20 held, in far fewer script
    runs than 200; releasing them together frees every one."""
    streams = RoutePolicy("streams", 120, 60, "open", concurrency=20)
    limiter = RateLimiter.from_url(redis_url, policies(streams), socket_timeout_s=5.0)
    try:
        warm = await asyncio.gather(*(held_or_refused(limiter, "user:warm") for _ in range(2)))
        await asyncio.gather(*(slot.release() for slot in warm if slot is not None))
        before = await script_runs(redis_url)
        slots = await asyncio.gather(*(held_or_refused(limiter, "user:burst") for _ in range(200)))
        held = [slot for slot in slots if slot is not None]
        assert len(held) == 20
        assert await script_runs(redis_url) - before <= 200 // MAX_BATCH + 4
        await asyncio.gather(*(slot.release() for slot in held))
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            assert await client.zcard(slots_key("user:burst", "streams")) == 0
        finally:
            await client.aclose()
    finally:
        await limiter.aclose()

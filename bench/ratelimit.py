"""Benchmark: `enforce_rate_limit` (decision + headers) against the floor of one Redis round
trip and against the `limits` library, all on one Redis in one run.

    python bench/ratelimit.py [--redis-url redis://…] [--seconds 1] [--rounds 5]

Without --redis-url a throwaway redis-server is started (tests.servers.RedisServer).
For each concurrency (1 and 50 callers) it measures decisions per second and p50/p99
latency of:
  enforce     `await enforce_rate_limit(route, request, user_id)`, headers included
  evalsha     a raw EVALSHA of `return 1` (one key) on the limiter's own client (its
              multiplexed connection): the floor of one round trip
  redis-py    the same raw EVALSHA on a redis-py client with the same timeouts: what one
              round trip costs an application built on redis-py
  moving      limits' async Redis moving window: hit + get_window_stats
  sliding     limits' async Redis sliding-window counter: hit + get_window_stats
and prints the ratios; for one caller also the ratio of enforce to evalsha measured with
their calls in turns (see `paired`). Every decision is a real one: Redis time, the
caller's bucket read and written, the headers formatted. At 50 callers the limiter decides
the requests that find others of their route waiting for Redis together, up to 16 per run
of its script (see `RedisBackend.charge`), which is why it can go faster than one EVALSHA
per call.
Each measurement is repeated `--rounds` times, interleaved, and the round with the median
rate is kept. (Not the best round: on a shared 2-core machine a round can also be lucky,
when the scheduler happens to keep client and server where their wake-ups are cheapest,
and that luck lands on whichever operation is measured at the time.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# This file is bench/ratelimit.py: drop its directory from the path so that `ratelimit`
# is the package, not this script, and let the repository root be importable.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import redis.asyncio  # noqa: E402
from limits import RateLimitItemPerMinute  # noqa: E402
from limits.aio.storage import RedisStorage  # noqa: E402
from limits.aio.strategies import (  # noqa: E402
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from redis.asyncio.retry import Retry  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402

from ratelimit import (  # noqa: E402
    Policies,
    RateLimiter,
    RedisBackend,
    RoutePolicy,
    enforce_rate_limit,
    install_rate_limiter,
)

Op = Callable[[int], Awaitable[object]]
USERS = 1000
# Large enough that no caller is ever refused: every decision is a full admit + headers.
LIMIT = 1_000_000


async def measure(op: Op, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """(operations per second, p50 ms, p99 ms) of `op` run by `concurrency` callers."""
    latencies: list[int] = []
    deadline = 0.0

    async def caller(index: int) -> None:
        n = index
        clock = time.perf_counter_ns
        while time.perf_counter() < deadline:
            started = clock()
            await op(n % USERS)
            latencies.append(clock() - started)
            n += concurrency

    deadline = time.perf_counter() + min(0.3, seconds / 4)  # warm up
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    latencies.clear()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = statistics.median(latencies) / 1e6
    p99 = latencies[int(len(latencies) * 0.99)] / 1e6
    return len(latencies) / elapsed, p50, p99


async def paired(a: Op, b: Op, seconds: float) -> float:
    """Rate of `b` relative to `a` for one caller, their calls taken in turns (a, b, a, b…)
    so that both meet the same machine at every moment: the ratio of their summed times.
    Measured one after the other, a quiet or a busy second on a shared machine lands on one
    side only and moves the ratio by more than the difference being measured."""
    clock = time.perf_counter_ns
    spent_a = spent_b = 0
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        started = clock()
        await a(n % USERS)
        middle = clock()
        await b(n % USERS)
        spent_a += middle - started
        spent_b += clock() - middle
        n += 1
    return spent_a / spent_b


async def run(url: str, seconds: float, rounds: int) -> None:
    policies = Policies({"bench": RoutePolicy("bench", LIMIT, 60)})
    # A generous read timeout: on a busy 2-core machine a 50 ms stall now and then would
    # open the breaker and end the run. The floor runs on this same client, so both sides
    # of every ratio pay the same.
    limiter = RateLimiter.from_url(url, policies, socket_timeout_s=1.0)
    assert isinstance(limiter.backend, RedisBackend)
    client = limiter.backend.client
    app = Starlette()
    install_rate_limiter(app, limiter)
    requests = [
        Request({"type": "http", "app": app, "headers": [], "client": ("127.0.0.1", 40000)})
        for _ in range(USERS)
    ]
    user_ids = [f"user-{i}" for i in range(USERS)]

    async def enforce(i: int) -> object:
        decision = await enforce_rate_limit("bench", requests[i], user_ids[i])
        return decision.headers

    sha = await client.script_load("return 1")
    raw_keys = [f"rl:{{user:{u}}}:raw" for u in user_ids]

    async def evalsha(i: int) -> object:
        return await client.evalsha(sha, 1, raw_keys[i])

    redis_py = redis.asyncio.Redis.from_url(
        url, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )

    async def redis_py_evalsha(i: int) -> object:
        return await redis_py.evalsha(sha, 1, raw_keys[i])  # type: ignore[misc]

    storage = RedisStorage(url.replace("redis://", "async+redis://", 1), implementation="redispy")
    item = RateLimitItemPerMinute(LIMIT)
    moving_window = MovingWindowRateLimiter(storage)
    sliding_window = SlidingWindowCounterRateLimiter(storage)

    async def moving(i: int) -> object:
        await moving_window.hit(item, "moving", user_ids[i])
        return await moving_window.get_window_stats(item, "moving", user_ids[i])

    async def sliding(i: int) -> object:
        await sliding_window.hit(item, "sliding", user_ids[i])
        return await sliding_window.get_window_stats(item, "sliding", user_ids[i])

    ops: dict[str, Op] = {
        "evalsha": evalsha,
        "redis-py": redis_py_evalsha,
        "enforce": enforce,
        "moving": moving,
        "sliding": sliding,
    }
    print(f"redis {url}; {seconds:g} s per measurement, median of {rounds} rounds")
    try:
        for concurrency in (1, 50):
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ops}
            for _ in range(rounds):
                for name, op in ops.items():
                    results[name].append(await measure(op, concurrency, seconds))
            kept = {name: sorted(r)[len(r) // 2] for name, r in results.items()}
            print(f"\n{concurrency} concurrent caller{'s' if concurrency > 1 else ''}")
            print(f"  {'':10} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
            for name, (rate, p50, p99) in kept.items():
                print(f"  {name:10} {rate:12,.0f} {p50:8.3f} {p99:8.3f}")
            e = kept["enforce"][0]
            ratios = ", ".join(
                f"enforce / {name} = {e / kept[name][0]:.2f}x"
                for name in ("evalsha", "redis-py", "moving", "sliding")
            )
            print(f"  {ratios}")
            print(
                f"  (redis-py / evalsha = {kept['redis-py'][0] / kept['evalsha'][0]:.2f}x, "
                f"moving / evalsha = {kept['moving'][0] / kept['evalsha'][0]:.2f}x, "
                f"sliding / evalsha = {kept['sliding'][0] / kept['evalsha'][0]:.2f}x)"
            )
            if concurrency == 1:
                turns = sorted([await paired(evalsha, enforce, seconds) for _ in range(rounds)])
                print(
                    f"  enforce / evalsha in turns, call by call: median "
                    f"{statistics.median(turns):.2f}x (rounds {turns[0]:.2f}-{turns[-1]:.2f}x)"
                )
    finally:
        await redis_py.aclose()
        await limiter.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a Redis to use (default: start a throwaway one)")
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions")
    args = parser.parse_args()
    if args.redis_url:
        asyncio.run(run(args.redis_url, args.seconds, args.rounds))
        return
    from tests.servers import RedisServer

    server = RedisServer()
    server.start()
    try:
        asyncio.run(run(server.url, args.seconds, args.rounds))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()

"""Benchmark: the limiter (`enforce_rate_limit`, decision + headers) over each Redis client
we could build it on, each against that same client's floor of one round trip, and the
`limits` library's strategies, all on one Redis in one run.

    python bench/ratelimit.py [--redis-url redis://…] [--seconds 1] [--rounds 5] [--uvloop]

Without --redis-url a throwaway redis-server is started (tests.servers.RedisServer).
For each concurrency (1 and 50 callers) and each client it measures decisions per second
and p50/p99 latency of:
  limiter     `await enforce_rate_limit(route, request, user_id)`, headers included, over a
              `RedisBackend` on the client
  runs off    the same with `batching=False` (50 callers only: one caller never waits for
              another, so it never joins a run)
  EVALSHA     a raw EVALSHA of `return 1` (one key) on the same client: the floor of one
              round trip through that client
for the clients:
  redis-py    redis-py's asyncio `Redis` as `connect` makes it for the limiter (a pool, one
              connection per concurrent command)
  coredis     coredis's `Redis` (commands pipelined on shared connections)
  glide       valkey-glide's `GlideClient` (one multiplexed connection, in native code)
and, on redis-py, limits' async Redis moving window and sliding-window counter (hit +
get_window_stats). It prints the ratio limiter / EVALSHA of the same client; for one
caller also that ratio measured with their calls in turns (see `paired`). Every decision
is a real one: Redis time, the caller's bucket read and written, the headers formatted. At
50 callers the limiter decides the requests that find others of their route waiting for
Redis together, up to 64 per run of its script (see `RedisBackend.charge`), which is why
it can go faster than one EVALSHA per call.
Each measurement is repeated `--rounds` times, interleaved, and the round with the median
rate is kept. (Not the best round: on a shared 2-core machine a round can also be lucky,
when the scheduler happens to keep client and server where their wake-ups are cheapest,
and that luck lands on whichever operation is measured at the time.)

redis-py is the limiter's client (`connect`). coredis and glide are measured to keep that
choice honest: `RedisBackend` takes them here through a small adapter (`CoredisClient`,
`GlideAdapter`) that speaks the few commands it sends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# This file is bench/ratelimit.py: drop its directory from the path so that `ratelimit`
# is the package, not this script, and let the repository root be importable.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import coredis  # noqa: E402
import coredis.exceptions  # noqa: E402
import glide  # noqa: E402
from limits import RateLimitItemPerMinute  # noqa: E402
from limits.aio.storage import RedisStorage  # noqa: E402
from limits.aio.strategies import (  # noqa: E402
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from redis.exceptions import NoScriptError, RedisError  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402

from ratelimit import (  # noqa: E402
    Policies,
    RateLimiter,
    RedisBackend,
    RoutePolicy,
    connect,
    enforce_rate_limit,
    install_rate_limiter,
)

Op = Callable[[int], Awaitable[object]]
USERS = 1000
# Large enough that no caller is ever refused: every decision is a full admit + headers.
LIMIT = 1_000_000
# A generous read timeout: on a busy 2-core machine a 50 ms stall now and then would open
# the breaker and end the run. The floor runs on the same client, so both sides of every
# ratio pay the same.
TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 0.25


class CoredisClient:
    """coredis's `Redis` with the commands `RedisBackend` sends, its errors as redis-py's."""

    def __init__(self, url: str) -> None:
        self.client = coredis.Redis.from_url(
            url,
            stream_timeout=TIMEOUT_S,
            connect_timeout=CONNECT_TIMEOUT_S,
            retry_policy=coredis.retry.NoRetryPolicy(),
        )
        self._entered = contextlib.AsyncExitStack()

    async def start(self) -> CoredisClient:
        # coredis 6 clients live inside `async with`; the bench's task enters and leaves.
        await self._entered.enter_async_context(self.client)
        return self

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: str | int) -> Any:
        try:
            return await self.client.evalsha(
                sha, keys_and_args[:numkeys], keys_and_args[numkeys:]
            )
        except coredis.exceptions.NoScriptError as exc:
            raise NoScriptError(str(exc)) from exc
        except coredis.exceptions.RedisError as exc:
            raise RedisError(str(exc)) from exc

    async def eval(self, source: str, numkeys: int, *keys_and_args: str | int) -> Any:
        try:
            return await self.client.eval(source, keys_and_args[:numkeys], keys_and_args[numkeys:])
        except coredis.exceptions.RedisError as exc:
            raise RedisError(str(exc)) from exc

    async def script_load(self, source: str) -> str:
        sha = await self.client.script_load(source)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def aclose(self) -> None:
        await self._entered.aclose()


class GlideAdapter:
    """valkey-glide's `GlideClient` with the commands `RedisBackend` sends, its errors as
    redis-py's. EVALSHA goes as a custom command, as `RedisBackend` names scripts by SHA1."""

    def __init__(self, client: glide.GlideClient) -> None:
        self.client = client

    @classmethod
    async def start(cls, url: str) -> GlideAdapter:
        parts = urlsplit(url)
        config = glide.GlideClientConfiguration(
            [glide.NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)],
            request_timeout=int(TIMEOUT_S * 1000),
            advanced_config=glide.AdvancedGlideClientConfiguration(
                connection_timeout=int(CONNECT_TIMEOUT_S * 1000)
            ),
        )
        return cls(await glide.GlideClient.create(config))

    async def _command(self, *args: str | int) -> Any:
        try:
            return await self.client.custom_command([str(a) for a in args])
        except glide.RequestError as exc:
            if str(exc).startswith("NOSCRIPT"):
                raise NoScriptError(str(exc)) from exc
            raise RedisError(str(exc)) from exc

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: str | int) -> Awaitable[Any]:
        return self._command("EVALSHA", sha, numkeys, *keys_and_args)

    def eval(self, source: str, numkeys: int, *keys_and_args: str | int) -> Awaitable[Any]:
        return self._command("EVAL", source, numkeys, *keys_and_args)

    async def script_load(self, source: str) -> str:
        sha = await self._command("SCRIPT", "LOAD", source)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def aclose(self) -> None:
        await self.client.close()


async def open_clients(url: str) -> dict[str, Any]:
    """One client of each kind, named as in the table."""
    return {
        "redis-py": connect(url, socket_timeout_s=TIMEOUT_S, connect_timeout_s=CONNECT_TIMEOUT_S),
        "coredis": await CoredisClient(url).start(),
        "glide": await GlideAdapter.start(url),
    }


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


def print_table(
    concurrency: int,
    clients: list[str],
    kept: dict[str, tuple[float, float, float]],
    turns: dict[str, list[float]],
) -> None:
    print(f"\n{concurrency} concurrent caller{'s' if concurrency > 1 else ''}")
    batched = concurrency > 1
    head = f"  {'':10} {'limiter/s':>10} {'p50 ms':>7} {'p99 ms':>7}"
    head += f" {'EVALSHA/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'lim/EVALSHA':>12}"
    head += f" {'runs off/s':>11}" if batched else f" {'in turns':>9}"
    print(head)
    for name in clients:
        rate, p50, p99 = kept[f"limiter {name}"]
        raw, raw_p50, raw_p99 = kept[f"EVALSHA {name}"]
        line = f"  {name:10} {rate:10,.0f} {p50:7.3f} {p99:7.3f}"
        line += f" {raw:10,.0f} {raw_p50:7.3f} {raw_p99:7.3f} {rate / raw:11.2f}x"
        if batched:
            line += f" {kept[f'runs off {name}'][0]:11,.0f}"
        else:
            t = sorted(turns[name])
            line += f" {statistics.median(t):8.2f}x ({t[0]:.2f}-{t[-1]:.2f}x)"
        print(line)
    for name in ("moving", "sliding"):
        rate, p50, p99 = kept[name]
        print(f"  limits {name:7} {rate:8,.0f} {p50:7.3f} {p99:7.3f}")


async def run(url: str, seconds: float, rounds: int) -> None:
    policies = Policies({"bench": RoutePolicy("bench", LIMIT, 60)})
    clients = await open_clients(url)
    user_ids = [f"user-{i}" for i in range(USERS)]
    raw_keys = [f"rl:{{user:{u}}}:raw" for u in user_ids]

    def enforce_on(client: Any, batching: bool) -> Op:
        # One app per limiter: enforce_rate_limit finds the limiter through the request.
        limiter = RateLimiter(RedisBackend(client, batching=batching), policies)
        app = Starlette()
        install_rate_limiter(app, limiter)
        requests = [
            Request({"type": "http", "app": app, "headers": [], "client": ("127.0.0.1", 40000)})
            for _ in range(USERS)
        ]

        async def enforce(i: int) -> object:
            decision = await enforce_rate_limit("bench", requests[i], user_ids[i])
            return decision.headers

        return enforce

    def evalsha_on(client: Any, sha: str) -> Op:
        def evalsha(i: int) -> Awaitable[object]:
            return client.evalsha(sha, 1, raw_keys[i])  # type: ignore[no-any-return]

        return evalsha

    ops: dict[str, Op] = {}
    sha = ""
    for name, client in clients.items():
        sha = await client.script_load("return 1")
        ops[f"EVALSHA {name}"] = evalsha_on(client, sha)
        ops[f"limiter {name}"] = enforce_on(client, batching=True)
        ops[f"runs off {name}"] = enforce_on(client, batching=False)

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

    ops["moving"], ops["sliding"] = moving, sliding
    print(f"redis {url}; {seconds:g} s per measurement, median of {rounds} rounds")
    try:
        for concurrency in (1, 50):
            chosen = {
                name: op
                for name, op in ops.items()
                if concurrency > 1 or not name.startswith("runs off")
            }
            results: dict[str, list[tuple[float, float, float]]] = {n: [] for n in chosen}
            for _ in range(rounds):
                for name, op in chosen.items():
                    results[name].append(await measure(op, concurrency, seconds))
            kept = {name: sorted(r)[len(r) // 2] for name, r in results.items()}
            turns: dict[str, list[float]] = {name: [] for name in clients}
            if concurrency == 1:
                for _ in range(rounds):
                    for name in clients:
                        turns[name].append(
                            await paired(ops[f"EVALSHA {name}"], ops[f"limiter {name}"], seconds)
                        )
            print_table(concurrency, list(clients), kept, turns)
    finally:
        for client in clients.values():
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a Redis to use (default: start a throwaway one)")
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the service")
    args = parser.parse_args()
    runner: Callable[[Awaitable[None]], None] = asyncio.run  # type: ignore[assignment]
    if args.uvloop:
        import uvloop

        runner = uvloop.run  # type: ignore[assignment]
    if args.redis_url:
        runner(run(args.redis_url, args.seconds, args.rounds))
        return
    from tests.servers import RedisServer

    server = RedisServer()
    server.start()
    try:
        runner(run(server.url, args.seconds, args.rounds))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()

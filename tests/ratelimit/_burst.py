"""Child process of the exactness test: N concurrent callers charge one caller's route.

    python -m tests.ratelimit._burst REDIS_URL LIMIT CALLERS COSTS

Prints `ready` once connected, starts when a line arrives on stdin (so every process
starts together), then prints the JSON list of the costs that were admitted.
"""

from __future__ import annotations

import asyncio
import json
import sys

from ratelimit import Policies, RateLimiter, RateLimitExceeded, RoutePolicy


async def main(url: str, limit: int, callers: int, costs: list[int]) -> None:
    # A day-long window: nothing refills during the burst. Generous timeouts: this measures
    # exactness under contention, not the outage policy.
    policy = RoutePolicy("generate", limit, 86400)
    limiter = RateLimiter.from_url(
        url, Policies({"generate": policy}), socket_timeout_s=5.0
    )
    try:
        await limiter.backend.client.ping()  # type: ignore[attr-defined]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def one(cost: int) -> int:
            try:
                await limiter.check("generate", "user:burst", cost=cost)
            except RateLimitExceeded:
                return 0
            return cost

        admitted = await asyncio.gather(*(one(costs[i % len(costs)]) for i in range(callers)))
        print(json.dumps([c for c in admitted if c]), flush=True)
    finally:
        await limiter.aclose()


if __name__ == "__main__":
    asyncio.run(
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
             [int(c) for c in sys.argv[4].split(",")])
    )

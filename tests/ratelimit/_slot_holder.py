"""Child process that takes a concurrency slot and holds it until it is killed.

    python -m tests.ratelimit._slot_holder REDIS_URL USER_ID TTL_S
"""

from __future__ import annotations

import asyncio
import sys

from ratelimit import Policies, RateLimiter, RoutePolicy


async def main(url: str, user_id: str, ttl_s: float) -> None:
    policy = RoutePolicy("generate", 20, 60, concurrency=1)
    limiter = RateLimiter.from_url(url, Policies({"generate": policy}), socket_timeout_s=5.0)
    async with limiter.slot("generate", user_id, ttl_s=ttl_s):
        print("held", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))

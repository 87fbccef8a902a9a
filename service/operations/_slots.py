"""Concurrency slots held for as long as the work they count: renewed in the background
(a crashed holder's slot expires within its TTL), released at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import ratelimit


@contextlib.asynccontextmanager
async def held(slot: ratelimit.Slot | None) -> AsyncIterator[None]:
    """Keep `slot` alive for the body (renewed every third of its TTL), free it after."""
    if slot is None:
        yield
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(slot.ttl_s / 3)
            with contextlib.suppress(ratelimit.RateLimitError):
                await slot.renew()

    keeper = asyncio.create_task(renew())
    try:
        yield
    finally:
        keeper.cancel()
        await slot.release()

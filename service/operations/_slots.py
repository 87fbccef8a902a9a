"""Concurrency slots held for as long as the work they count: renewed in the background
(a crashed holder's slot expires within its TTL), released at the end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import ratelimit


@contextlib.asynccontextmanager
async def held(slot: ratelimit.Slot | None) -> AsyncIterator[None]:
    """Keep `slot` alive for the body (renewed every third of its TTL by the limiter's
    keeper, with every other held slot), free it after."""
    if slot is None:
        yield
        return
    async with slot.kept():
        yield

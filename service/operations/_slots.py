"""Concurrency slots held for as long as the work they count: renewed in the background
(a crashed holder's slot expires within its TTL), released at the end."""

from __future__ import annotations

import contextlib

import ratelimit


def held(slot: ratelimit.Slot | None) -> contextlib.AbstractAsyncContextManager[object]:
    """Keep `slot` alive for the body (renewed every third of its TTL by the limiter's
    keeper, with every other held slot), free it after; nothing for no slot."""
    if slot is None:
        return contextlib.nullcontext()
    return slot.kept()

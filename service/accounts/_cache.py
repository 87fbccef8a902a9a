"""A small time-bounded cache (tiers per user, prices) on an injectable clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values kept for `ttl_s` seconds of `clock`, loaded on a miss; at most `max_entries`
    (the expired ones are dropped first, then the least recently used)."""

    def __init__(
        self, ttl_s: float, clock: Callable[[], float], *, max_entries: int = 10_000
    ) -> None:
        self._entries: TTLCache[K, V] = TTLCache(maxsize=max_entries, ttl=ttl_s, timer=clock)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of `key`, or `load()`'s (then cached) once it has expired."""
        try:
            return self._entries[key]
        except KeyError:
            value = await load()
            self._entries[key] = value
            return value

"""A small time-bounded cache (tiers per user, prices) on an injectable clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values kept for `ttl_s` seconds of `clock`; at most `max_entries` (the expired ones
    are dropped first, then the oldest)."""

    def __init__(
        self, ttl_s: float, clock: Callable[[], float], *, max_entries: int = 10_000
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of `key`, or `load()`'s (then cached) once it has expired."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = await load()
        self._entries.pop(key, None)
        if len(self._entries) >= self._max_entries:
            self._evict(now)
        self._entries[key] = (now + self._ttl_s, value)
        return value

    def _evict(self, now: float) -> None:
        self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]

"""The in-process backend (`memory://`): the embedded default for a single instance, and the
local bucket fail-open routes fall back on while Redis is unreachable.

Same arithmetic as the Redis script, on an injectable clock so tests never sleep. State
lives in this process only: N instances with a memory backend admit N times the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from . import _bucket
from ._backend import US_PER_S, Bucket, Verdict, bucket_key, slots_key

Clock = Callable[[], float]

_SWEEP_EVERY = 4096


class MemoryBackend:
    """Token buckets and concurrency slots in dictionaries, expired lazily."""

    name = "memory"

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        # key -> (scaled tokens, at_us, expires_at_us)
        self._buckets: dict[str, tuple[int, int, int]] = {}
        # key -> {token: expires_at_us}
        self._slots: dict[str, dict[str, int]] = {}
        self._writes = 0
        # The limiter is async, but a library user may share one backend between threads.
        self._lock = threading.Lock()

    def _now_us(self) -> int:
        return round(self._clock() * US_PER_S)

    def _stored(self, key: str, now_us: int) -> tuple[int, int] | None:
        entry = self._buckets.get(key)
        if entry is None or entry[2] <= now_us:
            return None
        return entry[0], entry[1]

    def _write(self, key: str, bucket: Bucket, level: int, now_us: int) -> None:
        full = bucket.limit * bucket.window_us
        if level >= full:
            self._buckets.pop(key, None)
        else:
            self._buckets[key] = (level, now_us, now_us + _bucket.reset_us(bucket, level))
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._sweep(now_us)

    def _sweep(self, now_us: int) -> None:
        for key in [k for k, v in self._buckets.items() if v[2] <= now_us]:
            del self._buckets[key]
        for key, held in list(self._slots.items()):
            for token in [t for t, exp in held.items() if exp <= now_us]:
                del held[token]
            if not held:
                del self._slots[key]

    async def charge(self, identity: str, buckets: Sequence[Bucket], cost: int) -> Verdict:
        with self._lock:
            now = self._now_us()
            keys = [bucket_key(identity, b.name) for b in buckets]
            levels = [
                _bucket.level_at(b, self._stored(k, now), now)
                for b, k in zip(buckets, keys, strict=True)
            ]
            retry = max(_bucket.wait_us(b, lv, cost) for b, lv in zip(buckets, levels, strict=True))
            if retry == 0:
                levels = [lv - cost * b.window_us for b, lv in zip(buckets, levels, strict=True)]
                for b, k, lv in zip(buckets, keys, levels, strict=True):
                    self._write(k, b, lv, now)
            return Verdict(
                retry == 0,
                retry,
                tuple(_bucket.remaining(b, lv) for b, lv in zip(buckets, levels, strict=True)),
                tuple(_bucket.reset_us(b, lv) for b, lv in zip(buckets, levels, strict=True)),
            )

    async def refund(self, identity: str, buckets: Sequence[Bucket], cost: int) -> None:
        with self._lock:
            now = self._now_us()
            for b in buckets:
                key = bucket_key(identity, b.name)
                stored = self._stored(key, now)
                if stored is not None:
                    level = _bucket.level_at(b, stored, now) + cost * b.window_us
                    self._write(key, b, min(level, b.limit * b.window_us), now)

    async def hold_slot(
        self, identity: str, route_id: str, capacity: int, token: str, ttl_us: int
    ) -> bool:
        with self._lock:
            now = self._now_us()
            held = self._slots.setdefault(slots_key(identity, route_id), {})
            for other in [t for t, exp in held.items() if exp <= now]:
                del held[other]
            if token not in held and len(held) >= capacity:
                return False
            held[token] = now + ttl_us
            return True

    async def release_slot(self, identity: str, route_id: str, token: str) -> None:
        with self._lock:
            key = slots_key(identity, route_id)
            held = self._slots.get(key)
            if held is not None:
                held.pop(token, None)
                if not held:
                    del self._slots[key]

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

"""The Redis backend (`redis://`, `rediss://`; `redis+cluster://` for Redis Cluster).

Its client is built for a hot path: short socket timeouts (50 ms by default) and no
retries, so an unreachable Redis costs one short wait at most, and the limiter's circuit
breaker takes it from there. Every redis-py error becomes `BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from . import _scripts
from ._backend import Bucket, Verdict, bucket_key, slots_key
from ._errors import BackendUnavailable

RedisClient = Redis | RedisCluster

DEFAULT_SOCKET_TIMEOUT_S = 0.05

# RedisClusterException (no node reachable at start-up) is not a RedisError.
_FAILURES = (RedisError, RedisClusterException, OSError)


def connect(url: str, *, socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S) -> RedisClient:
    """A client for the limiter: short timeouts, no retries, no health-check round trips."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    for scheme in ("redis+cluster://", "rediss+cluster://"):
        if url.startswith(scheme):
            plain = url.replace("+cluster", "", 1)
            return RedisCluster.from_url(plain, **options)
    return Redis.from_url(url, health_check_interval=0, **options)


class RedisBackend:
    """Token buckets and slots in Redis, one Lua script per decision."""

    name = "redis"

    def __init__(self, client: RedisClient, *, owns_client: bool = False) -> None:
        self.client = client
        self._owns_client = owns_client
        self._charge = client.register_script(_scripts.CHARGE)
        self._refund = client.register_script(_scripts.REFUND)
        self._hold = client.register_script(_scripts.HOLD_SLOT)
        # redis-py's RedisCluster discovers the topology on first use; many first calls at
        # once each start that discovery and drop each other's connections, so it is done
        # once, behind a lock, before the first command.
        self._needs_initialize = isinstance(client, RedisCluster)
        self._initialize_lock = asyncio.Lock()

    async def _initialize(self) -> None:
        assert isinstance(self.client, RedisCluster)
        async with self._initialize_lock:
            if self._needs_initialize:
                try:
                    await self.client.initialize()
                except _FAILURES as exc:
                    raise BackendUnavailable(f"redis cluster: {exc}") from exc
                self._needs_initialize = False

    @classmethod
    def from_url(
        cls, url: str, *, socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S
    ) -> RedisBackend:
        return cls(connect(url, socket_timeout_s=socket_timeout_s), owns_client=True)

    async def charge(self, identity: str, buckets: Sequence[Bucket], cost: int) -> Verdict:
        args: list[int] = [cost]
        for b in buckets:
            args.append(b.limit)
            args.append(b.window_us)
        if self._needs_initialize:
            await self._initialize()
        try:
            out = await self._charge([bucket_key(identity, b.name) for b in buckets], args)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc
        return Verdict(out[0] == 1, out[1], tuple(out[2::2]), tuple(out[3::2]))

    async def refund(self, identity: str, buckets: Sequence[Bucket], cost: int) -> None:
        args: list[int] = [cost]
        for b in buckets:
            args.append(b.limit)
            args.append(b.window_us)
        if self._needs_initialize:
            await self._initialize()
        try:
            await self._refund([bucket_key(identity, b.name) for b in buckets], args)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc

    async def hold_slot(
        self, identity: str, route_id: str, capacity: int, token: str, ttl_us: int
    ) -> bool:
        if self._needs_initialize:
            await self._initialize()
        try:
            out = await self._hold([slots_key(identity, route_id)], [capacity, token, ttl_us])
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc
        return bool(out == 1)

    async def release_slot(self, identity: str, route_id: str, token: str) -> None:
        if self._needs_initialize:
            await self._initialize()
        try:
            await self.client.zrem(slots_key(identity, route_id), token)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

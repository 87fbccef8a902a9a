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
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from . import _scripts
from ._backend import Bucket, Verdict, bucket_key, slots_key
from ._errors import BackendUnavailable

RedisClient = Redis | RedisCluster

DEFAULT_SOCKET_TIMEOUT_S = 0.05
# Connecting takes a TCP handshake and, under a burst of new connections on a busy event
# loop, more than one read's worth of time; a dead host still costs little with the breaker.
DEFAULT_CONNECT_TIMEOUT_S = 0.25

# RedisClusterException (no node reachable at start-up) is not a RedisError.
_FAILURES = (RedisError, RedisClusterException, OSError)


def connect(
    url: str,
    *,
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> RedisClient:
    """A client for the limiter: short timeouts, no retries, no extra round trips (no
    health checks, no CLIENT SETINFO on connect)."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "driver_info": None,
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
        self._limits: dict[int, tuple[Sequence[Bucket], str]] = {}
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
        cls,
        url: str,
        *,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> RedisBackend:
        client = connect(
            url, socket_timeout_s=socket_timeout_s, connect_timeout_s=connect_timeout_s
        )
        return cls(client, owns_client=True)

    async def _evalsha(
        self, script: AsyncScript, numkeys: int, *keys_and_args: str | bytes | int
    ) -> Any:
        """EVALSHA, loading the script on NOSCRIPT (a restarted or failed-over Redis).

        Called directly rather than through `AsyncScript.__call__`, whose per-call
        bookkeeping shows on the hot path; the fallback is the same."""
        if self._needs_initialize:
            await self._initialize()
        try:
            try:
                return await self.client.evalsha(script.sha, numkeys, *keys_and_args)
            except NoScriptError:
                script.sha = await self.client.script_load(script.script)
                return await self.client.evalsha(script.sha, numkeys, *keys_and_args)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc

    def _limits_argument(self, buckets: Sequence[Bucket]) -> str:
        """"limit_1 window_us_1 limit_2 window_us_2 …", built once per bucket tuple."""
        cached = self._limits.get(id(buckets))
        if cached is None or cached[0] is not buckets:
            text = " ".join(f"{b.limit} {b.window_us}" for b in buckets)
            cached = self._limits[id(buckets)] = (buckets, text)
        return cached[1]

    async def charge(self, identity: str, buckets: Sequence[Bucket], cost: int) -> Verdict:
        limits = self._limits_argument(buckets)
        if len(buckets) == 1:
            out = await self._evalsha(
                self._charge, 1, f"rl:{{{identity}}}:{buckets[0].name}", f"{cost} {limits}"
            )
            allowed, retry, r, t = out.split()
            return Verdict(allowed == b"1", int(retry), (int(r),), (int(t),))
        out = await self._evalsha(
            self._charge, len(buckets), *(bucket_key(identity, b.name) for b in buckets),
            f"{cost} {limits}",
        )
        fields = out.split()
        return Verdict(
            fields[0] == b"1",
            int(fields[1]),
            tuple(int(f) for f in fields[2::2]),
            tuple(int(f) for f in fields[3::2]),
        )

    async def refund(self, identity: str, buckets: Sequence[Bucket], cost: int) -> None:
        await self._evalsha(
            self._refund, len(buckets), *(bucket_key(identity, b.name) for b in buckets),
            f"{cost} {self._limits_argument(buckets)}",
        )

    async def hold_slot(
        self, identity: str, route_id: str, capacity: int, token: str, ttl_us: int
    ) -> bool:
        out = await self._evalsha(
            self._hold, 1, slots_key(identity, route_id), capacity, token, ttl_us
        )
        return bool(out == 1)

    async def release_slot(self, identity: str, route_id: str, token: str) -> None:
        if self._needs_initialize:
            await self._initialize()
        try:
            await self.client.zrem(slots_key(identity, route_id), token)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc

    async def ping(self) -> bool:
        try:
            if self._needs_initialize:
                await self._initialize()
            return bool(await self.client.ping())
        except (*_FAILURES, BackendUnavailable):
            return False

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

"""The Redis backend (`redis://`, `rediss://`, `unix://`; `redis+cluster://` for Redis
Cluster).

Its client is built for a hot path: short socket timeouts (50 ms by default) and no
retries, so an unreachable Redis costs one short wait at most, and the limiter's circuit
breaker takes it from there. On one Redis that client is the limiter's own multiplexed
connection (`_connection`); on a cluster it is redis-py's `RedisCluster`; a redis-py
`Redis` or `RedisCluster` given to `RedisBackend` works too. Every client error becomes
`BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from . import _scripts
from ._backend import Bucket, Verdict, bucket_key, slots_key
from ._connection import RedisConnection
from ._errors import BackendUnavailable

RedisClient = RedisConnection | Redis | RedisCluster

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
    """A client for the limiter: short timeouts, no retries, no extra round trips. One
    multiplexed connection for `redis://`, `rediss://` and `unix://`; redis-py's
    `RedisCluster` (no health checks, no CLIENT SETINFO) for `redis+cluster://` and
    `rediss+cluster://`."""
    for scheme in ("redis+cluster://", "rediss+cluster://"):
        if url.startswith(scheme):
            return RedisCluster.from_url(
                url.replace("+cluster", "", 1),
                socket_timeout=socket_timeout_s,
                socket_connect_timeout=connect_timeout_s,
                retry=Retry(NoBackoff(), 0),
                driver_info=None,
            )
    return RedisConnection.from_url(
        url, socket_timeout_s=socket_timeout_s, connect_timeout_s=connect_timeout_s
    )


class _Script:
    """A Lua script and its SHA1, by which EVALSHA names it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _cost_argument(cost: int) -> tuple[int, ...]:
    """The scripts' ARGV: nothing for the usual cost of 1 (one argument less to encode)."""
    return () if cost == 1 else (cost,)


class _BucketScripts:
    """The charge and refund scripts of one tuple of buckets (see `_scripts`)."""

    __slots__ = ("buckets", "charge", "refund")

    def __init__(self, buckets: tuple[Bucket, ...]) -> None:
        self.buckets = buckets
        # Redis loads a script on its first NOSCRIPT.
        self.charge = _Script(_scripts.charge_script(buckets))
        self.refund = _Script(_scripts.refund_script(buckets))


class RedisBackend:
    """Token buckets and slots in Redis, one Lua script per decision."""

    name = "redis"

    def __init__(self, client: RedisClient, *, owns_client: bool = False) -> None:
        self.client = client
        self._owns_client = owns_client
        self._hold = _Script(_scripts.HOLD_SLOT)
        self._scripts: dict[tuple[Bucket, ...], _BucketScripts] = {}
        self._scripts_by_id: dict[int, _BucketScripts] = {}
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
        self, script: _Script, numkeys: int, *keys_and_args: str | bytes | int
    ) -> Any:
        """EVALSHA, loading the script on NOSCRIPT (a restarted or failed-over Redis)."""
        if self._needs_initialize:
            await self._initialize()
        try:
            try:
                return await self.client.evalsha(script.sha, numkeys, *keys_and_args)
            except NoScriptError:
                await self.client.script_load(script.source)
                return await self.client.evalsha(script.sha, numkeys, *keys_and_args)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc

    def _scripts_of(self, buckets: Sequence[Bucket]) -> _BucketScripts:
        """The scripts of `buckets`, made once per distinct tuple of limits.

        The limiter passes the same tuple object on every call, so it is found by its id
        first (hashing the buckets costs more); a tuple is immutable, and the entry keeps
        it alive, so its id cannot be taken by another."""
        scripts = self._scripts_by_id.get(id(buckets))
        if scripts is not None and scripts.buckets is buckets:
            return scripts
        frozen = tuple(buckets)
        scripts = self._scripts.get(frozen)
        if scripts is None:
            scripts = self._scripts[frozen] = _BucketScripts(frozen)
        if scripts.buckets is buckets:
            self._scripts_by_id[id(buckets)] = scripts
        return scripts

    async def charge(self, identity: str, buckets: Sequence[Bucket], cost: int) -> Verdict:
        script = self._scripts_of(buckets).charge
        n = len(buckets)
        if n == 1:
            key = bucket_key(identity, buckets[0].name)
            args: tuple[str | int, ...] = (key,) if cost == 1 else (key, cost)
        else:
            args = (*(bucket_key(identity, b.name) for b in buckets), *_cost_argument(cost))
        if self._needs_initialize:
            out = await self._evalsha(script, n, *args)
        else:
            # `_evalsha` inlined on the hot path (one coroutine less per decision); it
            # takes over only when Redis has lost the script.
            try:
                out = await self.client.evalsha(script.sha, n, *args)
            except NoScriptError:
                out = await self._evalsha(script, n, *args)
            except _FAILURES as exc:
                raise BackendUnavailable(f"redis: {exc}") from exc
        if n == 1:
            return Verdict(out[0] == 0, out[0], (out[1],), (out[2],))
        return Verdict(out[0] == 0, out[0], tuple(out[1::2]), tuple(out[2::2]))

    async def refund(self, identity: str, buckets: Sequence[Bucket], cost: int) -> None:
        keys = [bucket_key(identity, b.name) for b in buckets]
        await self._evalsha(
            self._scripts_of(buckets).refund, len(keys), *keys, *_cost_argument(cost)
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

"""The Redis backend (`redis://`, `rediss://`, `unix://`; `redis+cluster://` for Redis
Cluster), on redis-py: `connect` (see `_client`) makes its client, `Redis` for one Redis
and `RedisCluster` for a cluster, with short timeouts and no retries; a redis-py `Redis` or
`RedisCluster` given to `RedisBackend` works too. Every client error becomes
`BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterCrossSlotError,
    NoScriptError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from . import _scripts
from ._backend import Bucket, Verdict, bucket_key, slots_key
from ._client import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_SOCKET_TIMEOUT_S, RedisClient, connect
from ._errors import BackendUnavailable
from ._redis_slots import Gathered, hold_arguments

log = logging.getLogger("ratelimit")

# RedisClusterException (no node reachable at start-up) is not a RedisError.
_FAILURES = (RedisError, RedisClusterException, OSError)


class _Script:
    """A Lua script and its SHA1, by which EVALSHA names it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _cost_argument(cost: int) -> tuple[int, ...]:
    """The scripts' ARGV: nothing for the usual cost of 1 (one argument less to encode)."""
    return () if cost == 1 else (cost,)


# The most requests one run of the charge script decides. redis-py spends far more on each
# command (a pooled connection taken and given back, the command packed, the reply awaited)
# than the script spends on one more request, so runs are allowed to be large: at 50
# callers the bench decides about a quarter more per second with 64 than with 16. A run
# blocks Redis while it lasts (a few µs per request), which bounds it.
MAX_BATCH = 64


def _verdict(out: list[int]) -> Verdict:
    """The Verdict of one request from its integers in the charge script's answer."""
    if len(out) == 3:
        return Verdict(out[0] == 0, out[0], (out[1],), (out[2],))
    return Verdict(out[0] == 0, out[0], tuple(out[1::2]), tuple(out[2::2]))


def _deliver(
    waiters: list[asyncio.Future[list[int]]], width: int, answer: list[int] | BaseException
) -> None:
    """Hand each caller of a batch its part of the script's answer (or the error)."""
    if isinstance(answer, BaseException):
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(answer)
    else:
        for i, waiter in enumerate(waiters):
            if not waiter.done():
                waiter.set_result(answer[i * width : (i + 1) * width])


class _SendAlone(Exception):
    """Handed to the callers of a run Redis refused as a run: send your request alone."""


class _Batch:
    """The requests of one event-loop tick waiting to be decided by one run of a charge
    script: their keys in order, their costs, and the futures of their callers."""

    __slots__ = ("costs", "keys", "sent", "waiters")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.costs: list[int] = []
        self.waiters: list[asyncio.Future[list[int]]] = []
        self.sent = False


class _BucketScripts:
    """The charge and refund scripts of one tuple of buckets (see `_scripts`), the requests
    of this event-loop tick gathering for the next run of the charge script, and how many
    runs are waiting for Redis."""

    __slots__ = ("batch", "buckets", "charge", "charge_one", "in_flight", "refund", "width")

    def __init__(self, buckets: tuple[Bucket, ...]) -> None:
        self.buckets = buckets
        # Redis loads a script on its first NOSCRIPT.
        self.charge = _Script(_scripts.charge_script(buckets))
        self.charge_one = _Script(_scripts.charge_one_script(buckets))
        self.refund = _Script(_scripts.refund_script(buckets))
        # The integers the charge script returns per request.
        self.width = 1 + 2 * len(buckets)
        self.batch: _Batch | None = None
        self.in_flight = 0


class RedisBackend:
    """Token buckets and slots in Redis: one atomic Lua script decides each request.

    With `batching` (the default), on one Redis (not a `RedisCluster`), requests that find
    others of their route waiting for Redis are decided together by one run of the script
    (see `charge`). Such a run holds several callers' keys, so `redis://` must lead to one
    Redis: a sharding proxy that refuses the run (CROSSSLOT) turns runs off by itself;
    give `batching=False` for one that would route a run by its first key instead."""

    name = "redis"

    def __init__(
        self, client: RedisClient, *, owns_client: bool = False, batching: bool = True
    ) -> None:
        self.client = client
        self._owns_client = owns_client
        self._hold = _Script(_scripts.HOLD_SLOT)
        self._hold_many = _Script(_scripts.HOLD_SLOTS)
        self._release_many = _Script(_scripts.RELEASE_SLOTS)
        self._scripts: dict[tuple[Bucket, ...], _BucketScripts] = {}
        self._scripts_by_id: dict[int, _BucketScripts] = {}
        # redis-py's RedisCluster discovers the topology on first use; many first calls at
        # once each start that discovery and drop each other's connections, so it is done
        # once, behind a lock, before the first command.
        self._needs_initialize = isinstance(client, RedisCluster)
        self._initialize_lock = asyncio.Lock()
        # Not on a cluster: the keys of a run of several callers live on different shards.
        self.batching = batching and not isinstance(client, RedisCluster)
        self._holds: Gathered[tuple[str, int, str, int], bool] = Gathered(
            self._hold_one, self._hold_several, enabled=self.batching)
        self._releases: Gathered[tuple[str, str], None] = Gathered(
            self._release_one, self._release_several, enabled=self.batching)

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
        batching: bool = True,
    ) -> RedisBackend:
        client = connect(
            url, socket_timeout_s=socket_timeout_s, connect_timeout_s=connect_timeout_s
        )
        return cls(client, owns_client=True, batching=batching)

    async def _evalsha(
        self, script: _Script, numkeys: int, *keys_and_args: str | bytes | int
    ) -> Any:
        """EVALSHA, and EVAL on NOSCRIPT (a restarted or failed-over Redis)."""
        if self._needs_initialize:
            await self._initialize()
        try:
            return await self.client.evalsha(script.sha, numkeys, *keys_and_args)
        except NoScriptError:
            return await self._eval(script, numkeys, *keys_and_args)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc

    async def _eval(self, script: _Script, numkeys: int, *keys_and_args: str | bytes | int) -> Any:
        """EVAL: runs a script Redis has lost, and has Redis keep it for the next EVALSHA."""
        try:
            return await self.client.eval(script.source, numkeys, *keys_and_args)
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
        # A request is sent at once when none of its route's is waiting for Redis (a lone
        # caller never waits). Otherwise it joins the requests gathering in this
        # event-loop tick, and they are all decided by one run of the script when the tick
        # ends: one command for redis-py to send and parse (and one pooled connection to
        # take), one EVALSHA for Redis to dispatch and one reading of its clock for all of
        # them. On a cluster (or with `batching` off) every request is sent at once.
        scripts = self._scripts_of(buckets)
        batch = scripts.batch
        if batch is None and not (scripts.in_flight and self.batching):
            return await self._charge_alone(scripts, identity, cost)
        loop = asyncio.get_running_loop()
        if batch is None or len(batch.waiters) >= MAX_BATCH:
            if batch is not None:
                self._send(scripts, batch)
            batch = scripts.batch = _Batch()
            loop.call_soon(self._end_tick, scripts, batch)
        if len(buckets) == 1:
            batch.keys.append(bucket_key(identity, buckets[0].name))
        else:
            batch.keys.extend(bucket_key(identity, b.name) for b in buckets)
        batch.costs.append(cost)
        waiter: asyncio.Future[list[int]] = loop.create_future()
        batch.waiters.append(waiter)
        try:
            out = await waiter
        except _SendAlone:
            return await self._charge_alone(scripts, identity, cost)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc
        return _verdict(out)

    async def _charge_alone(self, scripts: _BucketScripts, identity: str, cost: int) -> Verdict:
        """One request, one run of the unrolled one-request script."""
        buckets = scripts.buckets
        n = len(buckets)
        if n == 1:
            key = bucket_key(identity, buckets[0].name)
            args: tuple[str | int, ...] = (key,) if cost == 1 else (key, cost)
        else:
            args = tuple(bucket_key(identity, b.name) for b in buckets)
            if cost != 1:
                args = (*args, cost)
        if self._needs_initialize:
            await self._initialize()
        scripts.in_flight += 1
        try:
            # `_evalsha` inlined (one call less per decision); it takes over only when
            # Redis has lost the script.
            out = await self.client.evalsha(scripts.charge_one.sha, n, *args)
        except NoScriptError:
            out = await self._eval(scripts.charge_one, n, *args)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc
        finally:
            scripts.in_flight -= 1
        return _verdict(out)

    def _end_tick(self, scripts: _BucketScripts, batch: _Batch) -> None:
        if scripts.batch is batch:
            scripts.batch = None
        if not batch.sent:
            self._send(scripts, batch)

    def _send(self, scripts: _BucketScripts, batch: _Batch) -> None:
        """Send `batch` as one EVALSHA; its callers get their parts of the answer."""
        batch.sent = True
        keys, costs, waiters = batch.keys, batch.costs, batch.waiters
        if any(w.done() for w in waiters):
            # Callers cancelled before their request was sent: it is not sent at all.
            n = len(scripts.buckets)
            live = [i for i, w in enumerate(waiters) if not w.done()]
            keys = [k for i in live for k in keys[i * n : (i + 1) * n]]
            costs = [costs[i] for i in live]
            waiters = [waiters[i] for i in live]
            if not waiters:
                return
        args: list[str | int] = [*keys] if all(c == 1 for c in costs) else [*keys, *costs]
        scripts.in_flight += 1
        self._run(scripts, waiters, len(keys), args, lost=False)

    def _run(
        self,
        scripts: _BucketScripts,
        waiters: list[asyncio.Future[list[int]]],
        numkeys: int,
        args: list[str | int],
        *,
        lost: bool,
    ) -> None:
        """Send one run of the charge script (EVALSHA, or EVAL when Redis has `lost` it)
        and hand its callers their parts of the answer. The run is a task of its own: the
        callers that wait for it may be cancelled, the run goes on for the others."""
        client = self.client
        try:
            if lost:
                call = client.eval(scripts.charge.source, numkeys, *args)
            else:
                call = client.evalsha(scripts.charge.sha, numkeys, *args)
            reply: asyncio.Future[Any] = asyncio.ensure_future(call)
        except Exception as exc:  # handed to every caller
            scripts.in_flight -= 1
            _deliver(waiters, scripts.width, exc)
            return

        def deliver(reply: asyncio.Future[Any]) -> None:
            if reply.cancelled():
                answer: list[int] | BaseException = RedisConnectionError("command cancelled")
            else:
                answer = reply.exception() or reply.result()
            if isinstance(answer, NoScriptError) and not lost:
                # Redis lost the script (a restart): the same run, with the script's source.
                self._run(scripts, waiters, numkeys, args, lost=True)
                return
            scripts.in_flight -= 1
            if isinstance(answer, ClusterCrossSlotError):
                # Not one Redis but a sharding proxy, which refuses a script whose keys
                # live on different shards: the keys of one caller share a hash tag, the
                # keys of a run do not. Runs stop here; each request goes alone.
                if self.batching:
                    log.warning("redis refused a run of several callers (%s): "
                                "deciding every request alone from now on", answer)
                    self.batching = False
                answer = _SendAlone()
            _deliver(waiters, scripts.width, answer)

        reply.add_done_callback(deliver)

    async def refund(self, identity: str, buckets: Sequence[Bucket], cost: int) -> None:
        keys = [bucket_key(identity, b.name) for b in buckets]
        await self._evalsha(
            self._scripts_of(buckets).refund, len(keys), *keys, *_cost_argument(cost)
        )

    async def hold_slot(
        self, identity: str, route_id: str, capacity: int, token: str, ttl_us: int
    ) -> bool:
        # Holds (and releases) of one tick share a run (see `_redis_slots`).
        return await self._holds.call((slots_key(identity, route_id), capacity, token, ttl_us))

    async def release_slot(self, identity: str, route_id: str, token: str) -> None:
        await self._releases.call((slots_key(identity, route_id), token))

    async def _hold_one(self, call: tuple[str, int, str, int]) -> bool:
        out = await self._evalsha(self._hold, 1, *call)
        return bool(out == 1)

    async def _hold_several(self, calls: Sequence[tuple[str, int, str, int]]) -> list[bool]:
        out = await self._several(self._hold_many, len(calls), hold_arguments(calls))
        return [held == 1 for held in out]

    async def _release_one(self, call: tuple[str, str]) -> None:
        if self._needs_initialize:
            await self._initialize()
        try:
            await self.client.zrem(*call)
        except _FAILURES as exc:
            raise BackendUnavailable(f"redis: {exc}") from exc

    async def _release_several(self, calls: Sequence[tuple[str, str]]) -> list[None]:
        keys = [key for key, _ in calls]
        await self._several(self._release_many, len(calls), [*keys, *(t for _, t in calls)])
        return [None] * len(calls)

    async def _several(self, script: _Script, numkeys: int, args: list[Any]) -> Any:
        """A run of several callers' slot calls; CROSSSLOT (a sharding proxy) is left to
        the caller, which then sends each call alone."""
        try:
            return await self._evalsha(script, numkeys, *args)
        except BackendUnavailable as exc:
            if isinstance(exc.__cause__, ClusterCrossSlotError):  # also after a NOSCRIPT
                raise exc.__cause__ from None
            raise

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

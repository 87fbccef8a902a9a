"""The limiter: policies applied to a backend, with the outage policy, the local denial
cache, concurrency slots and metrics around it."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client import CollectorRegistry

from ._backend import US_PER_S, Backend, Bucket, Verdict
from ._breaker import CircuitBreaker
from ._client import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_SOCKET_TIMEOUT_S, check_redis_url
from ._denials import Denial, DenialCache
from ._errors import (
    BackendUnavailable,
    CostExceedsLimit,
    RateLimitConfigError,
    RateLimitExceeded,
    RateLimitUnavailable,
    UnknownRoute,
)
from ._headers import policy_field, ratelimit_field, retry_after_seconds, whole_seconds
from ._identity import ClientIdentifier, Network, parse_networks
from ._keeper import SlotKeeper
from ._memory import MemoryBackend
from ._metrics import Metrics, RouteCounters
from ._policy import DEFAULT_POLICIES, Policies, RoutePolicy
from ._redis import RedisBackend
from ._slot import Slot

if TYPE_CHECKING:
    from starlette.requests import Request

log = logging.getLogger("ratelimit")

Clock = Callable[[], float]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")

# A slot frees when some operation ends, which nobody can predict: the smallest honest hint.
SLOT_RETRY_AFTER_S = 1


class Decision(NamedTuple):
    """An admitted request: what it was charged and the headers to send with the answer.

    `remaining` and `reset_after` are the route limit's `r` and `t` (see `RateLimit`);
    `source` says who decided: `"redis"`, `"memory"`, or `"fallback"` (the local bucket of a
    fail-open route while Redis is unreachable). (A named tuple: made on every decision,
    it is made fast.)
    """

    route_id: str
    identity: str
    cost: int
    remaining: int
    reset_after: int
    headers: Mapping[str, str]
    source: str


@dataclass(frozen=True, slots=True)
class _Route:
    policy: RoutePolicy
    buckets: tuple[Bucket, ...]
    local_buckets: tuple[Bucket, ...]
    policy_header: str
    local_policy_header: str
    counters: RouteCounters


def check_url(url: str | None) -> None:
    """Raise `RateLimitConfigError` unless `url` is one `RateLimiter.from_url` takes:
    `None` or `memory://`; `redis://`, `rediss://`, `unix://`, `redis+cluster://` or
    `rediss+cluster://` (see `connect` for their options). Nothing is connected."""
    if url is None or url.startswith("memory://"):
        return
    if not url.startswith(_REDIS_SCHEMES):
        raise RateLimitConfigError(
            "rate limiter URL must be redis://, rediss://, unix://, redis+cluster://, "
            f"rediss+cluster:// or memory://, got {url.split('://')[0]}://"
        )
    try:
        check_redis_url(url)
    except (ValueError, OSError) as exc:  # OSError: a TLS file that cannot be read
        raise RateLimitConfigError(f"rate limiter URL: {exc}") from None


def _buckets(policy: RoutePolicy, policies: Policies, divisor: int) -> tuple[Bucket, ...]:
    limits = [(policy.route_id, policy.limit, policy.window_s)]
    limits += [(b.name, b.limit, b.window_s) for b in policies.budgets_of(policy.route_id)]
    return tuple(Bucket(n, max(1, q // divisor), w * US_PER_S) for n, q, w in limits)


class RateLimiter:
    """Weighted rate limits per route and caller, shared through a backend.

    Build one with `RateLimiter.from_url(REDIS_URL or None, policies=load_policies(...),
    trusted_proxies=TRUSTED_PROXIES)`, install it with `install_rate_limiter(app, limiter)`,
    and close it with `await limiter.aclose()`.

    Outage policy: backend calls that fail open the circuit breaker after
    `breaker.failure_threshold` consecutive failures; while it is open the backend is not
    called. Fail-closed routes then raise `RateLimitUnavailable`; fail-open routes are
    decided by an in-process bucket with the same policy, each limit divided by
    `instances` (the number of instances sharing the load). After the breaker's cooldown one
    probe goes to the backend, and decisions return to it as soon as it answers.
    """

    def __init__(
        self,
        backend: Backend,
        policies: Policies = DEFAULT_POLICIES,
        *,
        trusted_proxies: Iterable[str | Network] | str = (),
        ipv6_prefix: int = 64,
        registry: CollectorRegistry | None = None,
        instances: int = 1,
        breaker: CircuitBreaker | None = None,
        clock: Clock = time.monotonic,
        denial_cache_size: int = 10_000,
        slot_ttl_s: float = 30.0,
    ) -> None:
        if instances < 1:
            raise RateLimitConfigError("instances must be at least 1")
        if slot_ttl_s <= 0:
            raise RateLimitConfigError("slot_ttl_s must be positive")
        self.backend = backend
        self.policies = policies
        self.identifier = ClientIdentifier(parse_networks(trusted_proxies), ipv6_prefix=ipv6_prefix)
        self.metrics = Metrics(registry or CollectorRegistry(), policies.routes)
        self.instances = instances
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self.slot_ttl_s = slot_ttl_s
        #: Renews the slots kept with `Slot.kept()`.
        self.keeper = SlotKeeper()
        self._clock = clock
        self._local = MemoryBackend(clock=clock)
        self._denials = DenialCache(denial_cache_size)
        self._routes: dict[str, _Route] = {}
        for route_id, policy in policies.routes.items():
            buckets = _buckets(policy, policies, 1)
            local = _buckets(policy, policies, instances)
            self._routes[route_id] = _Route(
                policy,
                buckets,
                local,
                policy_field(buckets),
                policy_field(local),
                self.metrics.by_route[route_id],
            )

    @classmethod
    def from_url(
        cls,
        url: str | None,
        policies: Policies = DEFAULT_POLICIES,
        *,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        batching: bool = True,
        clock: Clock = time.monotonic,
        **options: object,
    ) -> RateLimiter:
        """A limiter on `redis://…`, `rediss://…`, `unix://…` (`redis+cluster://…` for
        Redis Cluster; see `check_url`) or, for `None` or `memory://`, on the in-process
        backend. Redis reads time out after `socket_timeout_s` (50 ms), connects after
        `connect_timeout_s` (250 ms), and are never retried; `batching` is
        `RedisBackend`'s. `options` are the constructor's."""
        check_url(url)
        backend: Backend
        if url is None or url.startswith("memory://"):
            backend = MemoryBackend(clock=clock)
        else:
            try:
                backend = RedisBackend.from_url(
                    url,
                    socket_timeout_s=socket_timeout_s,
                    connect_timeout_s=connect_timeout_s,
                    batching=batching,
                )
            except ValueError as exc:  # a timeout that is not a positive number
                raise RateLimitConfigError(f"rate limiter: {exc}") from exc
        return cls(backend, policies, clock=clock, **options)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await self.keeper.aclose()
        await self.backend.aclose()

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    async def ping(self) -> bool:
        """Whether the backend answers now (for readiness checks); never raises."""
        return await self.backend.ping()

    def policy_headers(self, route_id: str) -> dict[str, str]:
        """`RateLimit-Policy` of a route, for answers that charged nothing (e.g. a replay
        of an idempotent request, or a request refused before the limiter)."""
        return {"RateLimit-Policy": self._route(route_id).policy_header}

    def identify(self, request: Request, user_id: str | None) -> str:
        """`user:<id>`, or `ip:<client address>` (see `ClientIdentifier`)."""
        return self.identifier.identify(request, user_id)

    def _route(self, route_id: str) -> _Route:
        route = self._routes.get(route_id)
        if route is None:
            raise UnknownRoute(route_id, tuple(self._routes))
        return route

    def _cost(self, route: _Route, cost: int | None) -> int:
        if cost is None:
            return route.policy.cost
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise RateLimitConfigError(f"cost must be a whole number >= 1, got {cost!r}")
        for b in route.buckets:
            if cost > b.limit:
                raise CostExceedsLimit(
                    route.policy.route_id, cost, b.name, b.limit, b.window_us // US_PER_S
                )
        return cost

    async def check(self, route_id: str, identity: str, *, cost: int | None = None) -> Decision:
        """Charge `cost` units (default: the route's) to `identity` on `route_id`.

        Returns the `Decision`; raises `RateLimitExceeded` (nothing charged) or, on a
        fail-closed route while the backend is unreachable, `RateLimitUnavailable`.
        """
        route = self._routes.get(route_id)
        if route is None:
            route = self._route(route_id)  # raises UnknownRoute
        units = route.policy.cost if cost is None else self._cost(route, cost)
        sent_at = self._clock()
        denial = self._denials.lookup(identity, route_id, units, sent_at)
        if denial is not None:
            route.counters.limited += 1
            raise self._refusal_from_cache(route, denial, sent_at)
        if self.breaker.allows_call():
            try:
                verdict = await self.backend.charge(identity, route.buckets, units)
            except BackendUnavailable as exc:
                self.breaker.record_failure()
                log.warning("rate limiter backend unavailable on %s: %s", route_id, exc)
            else:
                self.breaker.record_success()
                if verdict.allowed:
                    route.counters.allowed += 1
                    return self._decision(route, identity, units, verdict, self.backend.name)
                self._denials.remember(identity, route_id, units, sent_at, verdict)
                route.counters.limited += 1
                raise self._refusal(route, route.buckets, route.policy_header, verdict)
        return await self._during_outage(route, identity, units)

    async def _during_outage(self, route: _Route, identity: str, units: int) -> Decision:
        if route.policy.fail == "closed":
            route.counters.unavailable += 1
            retry_after = self.breaker.retry_after_s()
            raise RateLimitUnavailable(
                route.policy.route_id,
                retry_after,
                {"RateLimit-Policy": route.policy_header, "Retry-After": str(retry_after)},
            )
        route.counters.fail_open += 1
        # A local limit divided by `instances` may be smaller than the cost: charge what fits.
        units = min(units, *(b.limit for b in route.local_buckets))
        verdict = await self._local.charge(identity, route.local_buckets, units)
        if verdict.allowed:
            route.counters.allowed += 1
            return self._decision(route, identity, units, verdict, "fallback")
        route.counters.limited += 1
        raise self._refusal(route, route.local_buckets, route.local_policy_header, verdict)

    def _decision(
        self, route: _Route, identity: str, units: int, verdict: Verdict, source: str
    ) -> Decision:
        if source == "fallback":
            buckets, header = route.local_buckets, route.local_policy_header
        else:
            buckets, header = route.buckets, route.policy_header
        remaining, reset_us = verdict.remaining, verdict.reset_us
        return Decision(
            route.policy.route_id,
            identity,
            units,
            remaining[0],
            whole_seconds(reset_us[0]),
            {
                "RateLimit-Policy": header,
                "RateLimit": ratelimit_field(buckets, remaining, reset_us),
            },
            source,
        )

    @staticmethod
    def _refusal(
        route: _Route, buckets: tuple[Bucket, ...], header: str, verdict: Verdict
    ) -> RateLimitExceeded:
        retry_after = retry_after_seconds(verdict.retry_after_us)
        return RateLimitExceeded(
            route.policy.route_id,
            retry_after,
            {
                "RateLimit-Policy": header,
                "RateLimit": ratelimit_field(buckets, verdict.remaining, verdict.reset_us),
                "Retry-After": str(retry_after),
            },
        )

    def _refusal_from_cache(self, route: _Route, denial: Denial, now: float) -> RateLimitExceeded:
        waited = round((now - denial.sent_at) * US_PER_S)
        v = denial.verdict
        aged = Verdict(
            False,
            max(1, round((denial.retry_at - now) * US_PER_S)),
            v.remaining,  # a lower bound: the bucket has refilled a little since
            tuple(max(0, t - waited) for t in v.reset_us),
        )
        return self._refusal(route, route.buckets, route.policy_header, aged)

    async def enforce(
        self, route_id: str, request: Request, user_id: str | None, *, cost: int | None = None
    ) -> Decision:
        """`check` for the caller of `request` (see `identify`)."""
        return await self.check(route_id, self.identifier.identify(request, user_id), cost=cost)

    async def refund(
        self, route_id: str, user_id: str | None, cost: int, *, identity: str | None = None
    ) -> bool:
        """Give `cost` units back to the caller (`user_id`, or an `identity` such as
        `Decision.identity`) on `route_id` and on the budgets it shares, e.g. for work that
        failed before it cost anything. Never raises for an outage: returns False when the
        backend could not be reached (the units then come back with the refill)."""
        route = self._route(route_id)
        units = self._cost(route, cost)
        who = _who(user_id, identity)
        self._denials.forget(who)
        await self._local.refund(who, route.local_buckets, units)
        if not self.breaker.allows_call():
            return False
        try:
            await self.backend.refund(who, route.buckets, units)
        except BackendUnavailable as exc:
            self.breaker.record_failure()
            log.warning("rate limiter refund on %s not recorded: %s", route_id, exc)
            return False
        self.breaker.record_success()
        return True

    async def acquire_slot(
        self,
        route_id: str,
        user_id: str | None,
        *,
        identity: str | None = None,
        ttl_s: float | None = None,
    ) -> Slot:
        """Hold one of the route's `concurrency` slots for the caller, for `ttl_s` (default
        `slot_ttl_s`) unless renewed. Raises `RateLimitExceeded` when all are held (or
        `RateLimitUnavailable` on a fail-closed route during an outage). A route with no
        concurrency limit grants every slot without a round trip. Prefer `slot()`, which
        releases it for you; otherwise `release()` it in a `finally`."""
        route = self._route(route_id)
        who = _who(user_id, identity)
        slot = Slot(self, route, who, uuid.uuid4().hex, ttl_s or self.slot_ttl_s)
        if route.policy.concurrency is None:
            return slot
        if not await slot._hold():
            route.counters.limited += 1
            raise RateLimitExceeded(
                route_id,
                SLOT_RETRY_AFTER_S,
                {"Retry-After": str(SLOT_RETRY_AFTER_S), "RateLimit-Policy": route.policy_header},
            )
        return slot

    @asynccontextmanager
    async def slot(
        self,
        route_id: str,
        user_id: str | None,
        *,
        identity: str | None = None,
        ttl_s: float | None = None,
    ) -> AsyncIterator[Slot]:
        """`async with limiter.slot(route_id, user_id) as slot:` — a slot for the block,
        released in `finally` (a crashed process's slot frees after its TTL)."""
        held = await self.acquire_slot(route_id, user_id, identity=identity, ttl_s=ttl_s)
        try:
            yield held
        finally:
            await held.release()


def _who(user_id: str | None, identity: str | None) -> str:
    if identity is not None:
        return identity
    if user_id is None:
        raise RateLimitConfigError("give a user_id or an identity")
    return f"user:{user_id}"

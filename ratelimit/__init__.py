"""A global, weighted rate limiter: one atomic Redis script decides each request (or an
in-process store for one instance), IETF RateLimit headers, per-route outage policy,
concurrency slots. It talks to Redis (one, or a Cluster) through redis-py, with short
timeouts and no retries; concurrent requests of a route are decided together by one run of
the script (see `RedisBackend.charge`).

    limiter = RateLimiter.from_url(REDIS_URL or None, load_policies(RATE_LIMITS),
                                   trusted_proxies=TRUSTED_PROXIES, registry=registry)
    install_rate_limiter(app, limiter)
    decision = await enforce_rate_limit("generate", request, user_id, cost=4)
    async with limiter.slot("generate", user_id) as slot: ...

Knows nothing of checkpoints, providers or HTTP answers: the service maps
`RateLimitExceeded` / `RateLimitUnavailable` (`status`, `code`, `retry_after`, `headers`)
to responses.
"""

from ._backend import Backend, Bucket, Verdict
from ._breaker import CircuitBreaker
from ._client import connect
from ._errors import (
    BackendUnavailable,
    CostExceedsLimit,
    PolicyError,
    RateLimitConfigError,
    RateLimitError,
    RateLimitExceeded,
    RateLimitUnavailable,
    UnknownRoute,
)
from ._identity import ClientIdentifier, parse_networks, user_identity
from ._keeper import SlotKeeper
from ._limiter import Decision, RateLimiter, check_url
from ._memory import MemoryBackend
from ._policy import (
    DEFAULT_POLICIES,
    Budget,
    FailMode,
    Policies,
    RoutePolicy,
    load_policies,
    parse_policies,
)
from ._redis import RedisBackend
from ._slot import Slot
from ._starlette import enforce_rate_limit, install_rate_limiter, rate_limiter_of

__all__ = [
    "DEFAULT_POLICIES",
    "Backend",
    "BackendUnavailable",
    "Bucket",
    "Budget",
    "CircuitBreaker",
    "ClientIdentifier",
    "CostExceedsLimit",
    "Decision",
    "FailMode",
    "MemoryBackend",
    "Policies",
    "PolicyError",
    "RateLimitConfigError",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitUnavailable",
    "RateLimiter",
    "RedisBackend",
    "RoutePolicy",
    "Slot",
    "SlotKeeper",
    "UnknownRoute",
    "Verdict",
    "check_url",
    "connect",
    "enforce_rate_limit",
    "install_rate_limiter",
    "load_policies",
    "parse_networks",
    "parse_policies",
    "rate_limiter_of",
    "user_identity",
]

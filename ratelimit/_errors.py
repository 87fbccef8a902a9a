"""Errors of the ratelimit package.

    RateLimitError
    ├── RateLimitExceeded        the caller is over a limit (HTTP 429 RATE_LIMIT_EXCEEDED)
    ├── RateLimitUnavailable     the shared store is unreachable and the route fails closed
    │                            (HTTP 503 RATE_LIMIT_UNAVAILABLE)
    ├── BackendUnavailable       a backend call failed (network, timeout, server error);
    │                            the limiter turns it into its outage policy
    └── RateLimitConfigError     a mistake in configuration or in a call, never retryable
        ├── PolicyError          a bad RATE_LIMITS file: names the route (or budget) and field
        ├── UnknownRoute         a route id with no policy
        └── CostExceedsLimit     a cost no window could ever admit

`RateLimitExceeded` and `RateLimitUnavailable` carry what an HTTP layer needs: `status`,
`code`, `retryable`, `retry_after` (whole seconds, rounded up, at least 1) and `headers`
(`Retry-After` and the RateLimit fields).
"""

from __future__ import annotations

from collections.abc import Mapping


class RateLimitError(Exception):
    """Root of every error this package raises."""


class _Refusal(RateLimitError):
    status: int
    code: str
    retryable = True

    def __init__(
        self, message: str, route_id: str, retry_after: int, headers: Mapping[str, str]
    ) -> None:
        super().__init__(message)
        self.route_id = route_id
        self.retry_after = retry_after
        self.headers: Mapping[str, str] = headers


class RateLimitExceeded(_Refusal):
    """The caller has used its quota (or its concurrency slots) on this route."""

    status = 429
    code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, route_id: str, retry_after: int, headers: Mapping[str, str]) -> None:
        super().__init__(
            f"rate limit of route {route_id!r} exceeded: retry after {retry_after} s",
            route_id,
            retry_after,
            headers,
        )


class RateLimitUnavailable(_Refusal):
    """The shared limiter is unreachable and the route's policy is to fail closed."""

    status = 503
    code = "RATE_LIMIT_UNAVAILABLE"

    def __init__(self, route_id: str, retry_after: int, headers: Mapping[str, str]) -> None:
        super().__init__(
            f"the rate limiter is unavailable and route {route_id!r} fails closed: "
            f"retry after {retry_after} s",
            route_id,
            retry_after,
            headers,
        )


class BackendUnavailable(RateLimitError):
    """A call to the backend failed; the original error is the `__cause__`."""


class RateLimitConfigError(RateLimitError):
    """A configuration mistake (or a call that no configuration could satisfy)."""


class PolicyError(RateLimitConfigError):
    def __init__(self, source: str, section: str, name: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: [{section}.{name}] {field}: {problem}")
        self.source = source
        self.section = section
        self.route = name
        self.field = field


class UnknownRoute(RateLimitConfigError):
    def __init__(self, route_id: str, known: tuple[str, ...]) -> None:
        super().__init__(
            f"no rate-limit policy for route {route_id!r} (known routes: {', '.join(known)})"
        )
        self.route_id = route_id


class CostExceedsLimit(RateLimitConfigError):
    def __init__(
        self, route_id: str, cost: int, limit_name: str, limit: int, window_s: int
    ) -> None:
        super().__init__(
            f"cost {cost} on route {route_id!r} can never be admitted: limit {limit_name!r} "
            f"allows at most {limit} units per {window_s} s (raise it in RATE_LIMITS)"
        )
        self.route_id = route_id
        self.cost = cost
        self.limit = limit

"""The Starlette entry point: the limiter lives on `app.state.rate_limiter`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import RateLimitConfigError
from ._limiter import Decision, RateLimiter

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request

STATE_ATTRIBUTE = "rate_limiter"


def install_rate_limiter(app: Starlette, limiter: RateLimiter) -> None:
    """Make `limiter` the one `enforce_rate_limit` uses for requests to `app` (it is stored
    as `app.state.rate_limiter`; do it in the lifespan, and `aclose()` it on the way out)."""
    setattr(app.state, STATE_ATTRIBUTE, limiter)


def rate_limiter_of(app: Starlette) -> RateLimiter:
    try:
        # Subscripting reads State's dict directly; attribute access first fails the normal
        # lookup and then calls State.__getattr__ (4x slower, on every limited request).
        limiter = app.state[STATE_ATTRIBUTE]
    except (KeyError, TypeError):  # TypeError: a Starlette whose State has no __getitem__
        limiter = getattr(app.state, STATE_ATTRIBUTE, None)
    if not isinstance(limiter, RateLimiter):
        raise RateLimitConfigError(
            "no rate limiter on app.state.rate_limiter: call install_rate_limiter(app, limiter)"
        )
    return limiter


async def enforce_rate_limit(
    route_id: str, request: Request, user_id: str | None, *, cost: int | None = None
) -> Decision:
    """Charge this request against `route_id`'s limits, with the limiter installed on the
    request's app (`app.state.rate_limiter`, see `install_rate_limiter`).

    The caller is `user:<user_id>`, or the client address when `user_id` is None
    (`X-Forwarded-For` believed only from the limiter's trusted proxies). `cost` defaults to
    the route policy's (1). Returns the `Decision`, whose `headers` go on the answer;
    raises `RateLimitExceeded` (429) or `RateLimitUnavailable` (503), both with
    `retry_after` and `headers` (including `Retry-After`).
    """
    limiter = rate_limiter_of(request.app)
    # `limiter.enforce` inlined: one coroutine less per request.
    return await limiter.check(
        route_id, limiter.identifier.identify(request, user_id), cost=cost
    )

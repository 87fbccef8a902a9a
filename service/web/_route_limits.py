"""Which rate-limit route an endpoint belongs to, so that every answer of it, errors
included, carries that route's `RateLimit-Policy`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

Handler = Callable[[Request], Awaitable[Response]]


def limited_by(route_id: str) -> Callable[[Handler], Handler]:
    """Mark a handler as rate limited on `route_id`."""

    def mark(handler: Handler) -> Handler:
        handler.rate_limit_route = route_id  # type: ignore[attr-defined]
        return handler

    return mark


def policy_headers(scope: Scope) -> Mapping[str, str]:
    """The `RateLimit-Policy` of the endpoint `scope` is for, or nothing. Works before
    routing too (the body limit refuses before the router has run)."""
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    if services is None:
        return {}
    endpoint = scope.get("endpoint")
    if endpoint is None:
        for route in getattr(app, "routes", ()):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                endpoint = getattr(route, "endpoint", None)
                break
    route_id = getattr(endpoint, "rate_limit_route", None)
    return services.limiter.policy_headers(route_id) if route_id else {}

"""`enforce_rate_limit` in a real Starlette app, client identity and metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ratelimit import (
    RateLimitConfigError,
    RateLimiter,
    RateLimitExceeded,
    RoutePolicy,
    enforce_rate_limit,
    install_rate_limiter,
)
from tests.clock import FakeClock

from .conftest import policies

pytestmark = pytest.mark.anyio


async def limited(request: Request) -> Response:
    user = request.headers.get("x-user")
    cost = int(request.query_params.get("cost", "1"))
    try:
        decision = await enforce_rate_limit("heatmap", request, user, cost=cost)
    except RateLimitExceeded as exc:
        return JSONResponse({"code": exc.code}, exc.status, headers=dict(exc.headers))
    return JSONResponse({"identity": decision.identity}, headers=dict(decision.headers))


def make_app(limiter: RateLimiter | None) -> Starlette:
    app = Starlette(routes=[Route("/limited", limited)])
    if limiter is not None:
        install_rate_limiter(app, limiter)
    return app


@pytest.fixture
async def limiter(clock: FakeClock) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter.from_url(
        None, policies(RoutePolicy("heatmap", 2, 60)), clock=clock,
        trusted_proxies="10.0.0.0/8, 2001:db8:ffff::/48",
    )
    yield limiter
    await limiter.aclose()


def client(app: Starlette, peer: str = "10.1.2.3") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_answers_carry_headers_and_429(limiter: RateLimiter) -> None:
    """Admitted answers carry RateLimit-Policy and RateLimit; the third is a 429."""
    async with client(make_app(limiter)) as http:
        first = await http.get("/limited", headers={"x-user": "u1"})
        assert first.json() == {"identity": "user:u1"}
        assert first.headers["ratelimit-policy"] == '"heatmap";q=2;w=60'
        assert first.headers["ratelimit"] == '"heatmap";r=1;t=30'
        await http.get("/limited", headers={"x-user": "u1"})
        third = await http.get("/limited", headers={"x-user": "u1"})
        assert third.status_code == 429
        assert third.headers["retry-after"] == "30"


async def test_missing_limiter_is_a_clear_error() -> None:
    """Without install_rate_limiter the call says what to do."""
    async with client(make_app(None)) as http:
        with pytest.raises(RateLimitConfigError, match="install_rate_limiter"):
            await http.get("/limited")


@pytest.mark.parametrize(
    ("peer", "forwarded", "identity"),
    [
        # An untrusted peer: X-Forwarded-For is whatever the client wrote, ignored.
        ("203.0.113.7", "198.51.100.1", "ip:203.0.113.7"),
        # A trusted proxy: the right-most address that is not a trusted proxy.
        ("10.1.2.3", "198.51.100.1", "ip:198.51.100.1"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.1, 10.9.9.9", "ip:198.51.100.1"),
        # Every hop trusted: the left-most.
        ("10.1.2.3", "10.4.4.4", "ip:10.4.4.4"),
        # Garbage where an address should be: the last hop we can vouch for.
        ("10.1.2.3", "nonsense, 10.4.4.4", "ip:10.4.4.4"),
        # No header from a trusted proxy: the proxy itself.
        ("10.1.2.3", None, "ip:10.1.2.3"),
        # IPv6 clients are grouped by /64.
        ("2001:db8:ffff::1", "2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"),
    ],
)
async def test_client_identity(
    limiter: RateLimiter, peer: str, forwarded: str | None, identity: str
) -> None:
    """X-Forwarded-For is believed only from trusted proxies, read from the right."""
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    async with client(make_app(limiter), peer) as http:
        answer = await http.get("/limited", headers=headers)
    assert answer.json() == {"identity": identity}


def test_bad_trusted_proxy_is_a_configuration_error() -> None:
    """A TRUSTED_PROXIES entry that is not a CIDR fails at construction, naming it."""
    with pytest.raises(RateLimitConfigError, match=re.escape("'10.0.0.0/33'")):
        RateLimiter.from_url(None, trusted_proxies="10.0.0.0/33")


def test_bad_url_is_a_configuration_error() -> None:
    """Only redis://, rediss://, redis+cluster:// and memory:// are limiter URLs."""
    with pytest.raises(RateLimitConfigError, match="http://"):
        RateLimiter.from_url("http://localhost")


async def test_metrics_by_route_on_the_given_registry(clock: FakeClock) -> None:
    """Allowed and limited are counted by route on the caller's registry, and two limiters
    live side by side in one process."""
    registry = CollectorRegistry()
    pol = policies(RoutePolicy("heatmap", 1, 60))
    limiter = RateLimiter.from_url(None, pol, clock=clock, registry=registry)
    other = RateLimiter.from_url(None, pol, clock=clock)
    await limiter.check("heatmap", "user:a")
    with pytest.raises(RateLimitExceeded):
        await limiter.check("heatmap", "user:a")
    await other.check("heatmap", "user:a")
    labels = {"route": "heatmap"}
    assert registry.get_sample_value("ratelimit_allowed_total", labels) == 1
    assert registry.get_sample_value("ratelimit_limited_total", labels) == 1
    assert registry.get_sample_value("ratelimit_unavailable_total", labels) == 0
    assert other.registry is not registry
    assert other.registry.get_sample_value("ratelimit_allowed_total", labels) == 1

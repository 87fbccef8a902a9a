"""CORS for ViewBait's origin: preflights allow what the API needs, every answer —
refusals included — carries the headers a page of that origin must read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from service import Settings, create_app
from tests.service.conftest import auth, in_process

pytestmark = pytest.mark.anyio

ORIGIN = "https://www.viewbait.app"


@pytest.fixture
def cors_app(service_env) -> Starlette:
    """A deployment that lets ViewBait's origin call it."""
    return create_app(Settings.from_env({**service_env, "CORS_ORIGINS": ORIGIN}))


@pytest.fixture
async def browser(cors_app) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends what a page on ViewBait's origin sends."""
    async with in_process(cors_app) as manager, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver",
        headers={"Origin": ORIGIN},
    ) as client:
        yield client


def header_set(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


async def test_a_preflight_allows_the_apis_headers(browser):
    """OPTIONS from the origin: POST allowed with Authorization, Content-Type,
    Idempotency-Key, Prefer and Last-Event-ID."""
    answer = await browser.options("/v1/thumbnails", headers={
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, "
                                          "prefer, last-event-id",
    })
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = header_set(answer.headers["Access-Control-Allow-Headers"])
    assert {"authorization", "content-type", "idempotency-key", "prefer",
            "last-event-id"} <= allowed
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("GET", "/v1/account", None, 401),
        ("POST", "/v1/thumbnails", b"{", 400),
        ("POST", "/v1/thumbnails", b"x" * (15 * 1024 * 1024), 413),
    ],
)
async def test_refusals_carry_the_cors_headers(browser, method, url, body, status):
    """A 401, a 400 and a 413 (refused before routing) are readable by the page: the
    origin is allowed and the rate-limit headers are exposed."""
    headers = {} if status == 401 else auth()
    answer = await browser.request(method, url, headers=headers, content=body)
    assert answer.status_code == status
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = header_set(answer.headers["Access-Control-Expose-Headers"])
    assert {"location", "retry-after", "ratelimit", "ratelimit-policy"} <= exposed


async def test_a_429_exposes_retry_after(browser):
    """A rate-limited creation: 429 with Retry-After, readable across origins."""
    for _ in range(25):
        answer = await browser.post("/v1/thumbnails", json={"title": "t", "variations": 1},
                                    headers={**auth(), "Prefer": "respond-async"})
        if answer.status_code == 429:
            break
    assert answer.status_code == 429
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert int(answer.headers["Retry-After"]) >= 1


async def test_other_origins_get_no_cors_headers(cors_app):
    """An origin not listed: no Access-Control-Allow-Origin, and its preflight fails."""
    async with in_process(cors_app) as manager, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver",
        headers={"Origin": "https://evil.example"},
    ) as client:
        answer = await client.get("/v1/account", headers=auth())
        assert answer.status_code == 200
        assert "Access-Control-Allow-Origin" not in answer.headers
        preflight = await client.options("/v1/thumbnails", headers={
            "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 400


async def test_without_cors_origins_there_are_no_cors_headers(client):
    """CORS_ORIGINS unset: no CORS headers at all."""
    answer = await client.get("/v1/account", headers={**auth(), "Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in answer.headers


async def test_an_unexpected_500_carries_the_cors_and_security_headers(cors_app, browser):
    """A bug's 500 is readable by the page like every other answer: the origin allowed,
    nosniff, no details in the body."""
    from starlette.requests import Request
    from starlette.responses import Response

    async def broken(_request: Request) -> Response:
        raise ValueError("a bug")

    cors_app.add_route("/test/broken", broken)
    answer = await browser.get("/test/broken")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error", "code": "INTERNAL_ERROR",
                             "retryable": False}
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert answer.headers["X-Content-Type-Options"] == "nosniff"

"""The Starlette application factory."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from ._lifespan import OutsideWorld, lifespan
from ._settings import Settings
from .providers import RetryPolicy
from .web import (
    EXCEPTION_HANDLERS,
    AnswerErrors,
    BodyLimit,
    SecurityHeaders,
    content_security_policy,
    routes,
)

#: What a page of another origin may send, and read of the answers.
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Prefer",
                        "Last-Event-ID")
CORS_EXPOSED_HEADERS = ("Location", "Retry-After", "RateLimit", "RateLimit-Policy")


def create_app(
    settings: Settings,
    *,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The service for `settings`; everything stateful is built in the lifespan.

    The outside world can be replaced (tests do): `retry` replaces the provider retry
    policy built from the settings (e.g. with a fake sleep), `transport` carries every
    outgoing HTTP request (providers, YouTube, storage, image URLs), and `clock` (seconds
    since the epoch) decides token expiry, signed links and operation timestamps.
    """
    world = OutsideWorld(retry=retry, transport=transport, clock=clock)
    api_origins = (*settings.cors_origins, settings.public_base_url or "",
                   settings.supabase_url or "")
    middleware = [
        Middleware(SecurityHeaders, csp=content_security_policy(api_origins)),
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        Middleware(AnswerErrors),
    ]
    if settings.cors_origins:
        # Outside the body limit and the error handlers, so that refusals (401, 413, 429,
        # 503) carry the CORS headers too: a browser shows a page only what they allow.
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"], allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS), max_age=600,
        ))
    return Starlette(
        routes=routes(settings),
        middleware=middleware,
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan(settings, world),
    )

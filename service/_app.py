"""The Starlette application factory."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware

from ._lifespan import OutsideWorld, lifespan
from ._settings import Settings
from .providers import RetryPolicy
from .web import EXCEPTION_HANDLERS, BodyLimit, routes


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
    return Starlette(
        routes=routes(settings),
        middleware=[Middleware(BodyLimit, max_bytes=settings.max_body_bytes)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan(settings, world),
    )

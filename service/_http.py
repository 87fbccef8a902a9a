"""HTTP plumbing: the one exception-handler table, the body size limit, negotiation."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import checkpoints
import ratelimit

from ._errors import (
    DatabaseUnavailable,
    IdempotencyConflict,
    NotFound,
    PayloadTooLarge,
    RunError,
    ServiceError,
    ValidationFailed,
)

log = logging.getLogger("service.http")


Handler = Callable[[Request], Awaitable[Response]]


def limited_by(route_id: str) -> Callable[[Handler], Handler]:
    """Mark a handler as rate limited on `route_id`: every answer of it, errors included,
    carries the route's `RateLimit-Policy`."""

    def mark(handler: Handler) -> Handler:
        handler.rate_limit_route = route_id  # type: ignore[attr-defined]
        return handler

    return mark


def error_response(
    request: Request,
    status: int,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    merged = dict(headers or {})
    route_id = getattr(request.scope.get("endpoint"), "rate_limit_route", None)
    services = getattr(request.app.state, "services", None)
    if route_id is not None and services is not None:
        for name, value in services.limiter.policy_headers(route_id).items():
            merged.setdefault(name, value)
    return JSONResponse(dict(body), status_code=status, headers=merged)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    status = exc.status_code if isinstance(exc, RunError) else exc.status
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers.setdefault("Retry-After", str(exc.retry_after))
    return error_response(request, status, exc.body(), headers)


async def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ratelimit.RateLimitExceeded | ratelimit.RateLimitUnavailable)
    if isinstance(exc, ratelimit.RateLimitExceeded):
        message = f"too many requests; retry in {exc.retry_after} s"
    else:
        message = "the rate limiter is unreachable; this route is closed until it is back"
    body = {"error": message, "code": exc.code, "retryable": True,
            "retry_after": exc.retry_after}
    return error_response(request, exc.status, body, exc.headers)


async def _checkpoint_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, checkpoints.IdempotencyKeyReused):
        error: ServiceError = IdempotencyConflict(
            "this Idempotency-Key was used for a request with a different body"
        )
    elif isinstance(exc, checkpoints.OperationNotFound):
        error = NotFound("no such operation")
    else:
        log.exception("checkpoint store error", exc_info=exc)
        error = DatabaseUnavailable("the operation store is unavailable")
    return await _service_error(request, error)


async def _database_error(request: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", exc)
    return await _service_error(
        request, DatabaseUnavailable("the database is unavailable; retry shortly",
                                      retry_after=2)
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(request, 404, NotFound("no such endpoint").body())
    if exc.status_code == 405:
        return error_response(
            request, 405, {"error": "method not allowed", "code": "METHOD_NOT_ALLOWED",
                  "retryable": False}, exc.headers,
        )
    return error_response(
        request,
        exc.status_code,
        {"error": str(exc.detail), "code": "HTTP_ERROR", "retryable": False},
        exc.headers,
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(
        request, 500, {"error": "internal error", "code": "INTERNAL_ERROR", "retryable": True}
    )


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    ServiceError: _service_error,
    ratelimit.RateLimitExceeded: _rate_limited,
    ratelimit.RateLimitUnavailable: _rate_limited,
    checkpoints.CheckpointError: _checkpoint_error,
    sa.exc.OperationalError: _database_error,
    sa.exc.InterfaceError: _database_error,
    sa.exc.DBAPIError: _database_error,
    OSError: _database_error,
    HTTPException: _http_exception,
    Exception: _internal_error,
}


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 before the handler reads them
    all (by Content-Length, or while streaming a chunked body)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes // (1024 * 1024)} MB"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {"Connection": "close", **_policy_headers_of(scope)}
        response = JSONResponse(PayloadTooLarge(self._message()).body(), status_code=413,
                                headers=headers)
        await response(scope, receive, send)


def _policy_headers_of(scope: Scope) -> Mapping[str, str]:
    """The RateLimit-Policy of the handler `scope` is for, found before routing (as
    `error_response` adds it once routed), or nothing."""
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    if services is None:
        return {}
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            route_id = getattr(getattr(route, "endpoint", None), "rate_limit_route", None)
            return services.limiter.policy_headers(route_id) if route_id else {}
    return {}


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def wants_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(p.strip().lower() == "respond-async" for p in prefer.split(","))


_IDEMPOTENCY_KEY = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 255 printable ASCII characters, not starting or "
            "ending with a space"
        )
    return key


def event_cursor(request: Request) -> int | None:
    """`Last-Event-ID` (EventSource reconnects) or `?last_event_id=` (a new page)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ValidationFailed("Last-Event-ID must be a non-negative integer")
    return int(raw)

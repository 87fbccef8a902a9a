"""The one exception-handler table: every error becomes an `ErrorInfo`, then an answer.

Mappings are exact: only connection-level database failures are `DATABASE_UNAVAILABLE`
(retryable); storage faults are `STORAGE_UNAVAILABLE` (the storage backends raise it);
anything unexpected is a 500 `INTERNAL_ERROR`, logged with its traceback, not retryable
(a bug does not go away when a client retries).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import checkpoints
import ratelimit

from .._errors import (
    DatabaseUnavailable,
    ErrorInfo,
    IdempotencyConflict,
    NotFound,
    ServiceError,
)
from ._responses import ErrorBody
from ._route_limits import policy_headers

log = logging.getLogger("service.http")

#: Seconds a client should wait before retrying during a database outage.
DATABASE_RETRY_AFTER_S = 2

#: The answer to anything unexpected: no details (they are in the log).
UNEXPECTED = ErrorInfo("INTERNAL_ERROR", "internal error", 500)
CLIENT_GONE = ErrorInfo("VALIDATION_ERROR", "the request body was not sent in full", 400)


def error_response(request: Request, info: ErrorInfo) -> JSONResponse:
    """The answer of an error: its body and status, `Retry-After` when a delay is known,
    and the endpoint's `RateLimit-Policy`."""
    # The endpoint's own policy, also over another route's (a refused stream slot names
    # its own route): every answer of a route carries that route's policy.
    headers = {**info.answer_headers(), **policy_headers(request.scope)}
    return JSONResponse(ErrorBody.of(info), status_code=info.status, headers=headers)


def describe(exc: BaseException) -> ErrorInfo:
    """The description of any error that reaches the edge (see the module docstring)."""
    if isinstance(exc, ServiceError):
        return exc.info
    if isinstance(exc, ratelimit.RateLimitExceeded):
        return ErrorInfo(exc.code, f"too many requests; retry in {exc.retry_after} s",
                         exc.status, True, exc.retry_after, exc.headers)
    if isinstance(exc, ratelimit.RateLimitUnavailable):
        return ErrorInfo(
            exc.code, "the rate limiter is unreachable; this route is closed until it is back",
            exc.status, True, exc.retry_after, exc.headers,
        )
    if isinstance(exc, checkpoints.IdempotencyKeyReused):
        return IdempotencyConflict(
            "this Idempotency-Key was used for a request with a different body").info
    if isinstance(exc, checkpoints.OperationNotFound):
        return NotFound("no such operation").info
    if isinstance(exc, ClientDisconnect):
        # Not an error: the client went away mid-body; nobody reads this answer.
        log.info("client disconnected before its request body was read")
        return CLIENT_GONE
    if checkpoints.is_connection_failure(exc):
        info = DatabaseUnavailable("the database is unavailable; retry shortly",
                                   retry_after=DATABASE_RETRY_AFTER_S).info
        # The exception's text holds SQL; its class says enough (parameters never logged).
        cause = getattr(exc, "orig", None) or exc
        log.error("database unavailable: %s", type(cause).__name__, extra=info.log_fields())
        return info
    if isinstance(exc, HTTPException):
        return _http_exception(exc)
    log.error("unhandled error", exc_info=exc, extra=UNEXPECTED.log_fields())
    return UNEXPECTED


def _http_exception(exc: HTTPException) -> ErrorInfo:
    if exc.status_code == 404:
        return NotFound("no such endpoint").info
    if exc.status_code == 405:
        return ErrorInfo("METHOD_NOT_ALLOWED", "method not allowed", 405,
                         headers=exc.headers or {})
    return ErrorInfo("HTTP_ERROR", str(exc.detail), exc.status_code, headers=exc.headers or {})


class AnswerErrors:
    """The innermost middleware: anything a handler raises that Starlette's table leaves
    to its server-error middleware (outermost) is answered here instead, inside CORS and
    the security headers, so a 500 carries them like every other answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise  # too late for an answer: the server ends the connection
            response = error_response(Request(scope), describe(exc))
            await response(scope, receive, send)


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(request, describe(exc))


#: Starlette's table: the classes named here are answered where they are raised;
#: `Exception` is the last resort of Starlette's server-error middleware.
EXCEPTION_HANDLERS: Mapping[Any, Any] = dict.fromkeys(
    (ServiceError, ratelimit.RateLimitError, checkpoints.CheckpointError,
     sa.exc.SQLAlchemyError, ConnectionError, ClientDisconnect, HTTPException, Exception),
    _handle,
)

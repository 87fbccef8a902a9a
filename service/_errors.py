"""Errors of the service: one root, and one frozen description every answer is made from.

    ServiceError                      code, message, status, retryable, retry_after
    ├── ValidationFailed              400 VALIDATION_ERROR
    │   └── BodyTooSlow               the request body did not arrive in time
    ├── IdempotencyConflict           422 IDEMPOTENCY_KEY_REUSED
    ├── Unauthorized                  401 UNAUTHORIZED
    ├── NotFound                      404 NOT_FOUND
    ├── PayloadTooLarge               413 PAYLOAD_TOO_LARGE
    ├── InsufficientCredits           402 INSUFFICIENT_CREDITS
    ├── CreditsRefused                500 INTERNAL_ERROR: ViewBait's credit functions refused
    │                                 a movement for a reason other than the balance
    ├── TierLimit                     403 TIER_LIMIT
    ├── OperationNotResumable         409 OPERATION_NOT_RESUMABLE
    ├── ProviderNotConfigured         503 PROVIDER_NOT_CONFIGURED
    ├── DatabaseUnavailable           503 DATABASE_UNAVAILABLE (connection-level failures only)
    ├── StorageUnavailable            503 STORAGE_UNAVAILABLE
    ├── AuthUnavailable               503 AUTH_UNAVAILABLE: the token issuer's key set is
    │                                 unreachable and no key of the token is cached
    ├── ProviderError                 a provider call failed: its code is one of the run
    │   │                             error codes below, `retryable` says if a retry can help
    │   └── FetchRefused              400 VALIDATION_ERROR: a user's image URL was refused
    ├── RunError                      a run's recorded terminal error, answered as JSON
    └── SettingsError                 a setting has a wrong value (also a ValueError)

`ErrorInfo` is the one description of an error: the JSON body of an answer
(`{"error", "code", "retryable", "retry_after"?}`, built by `web`), the error recorded for a
failed step or operation and sent in its `error` event (`{"code", "message", "retryable",
"retry_after"?}`), and the fields of its log line are all made from it. Errors of the other packages
(checkpoints, ratelimit, SQLAlchemy, Starlette) are turned into `ErrorInfo`s in the one
handler table of `web`; handlers never build error JSON themselves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("service")

#: HTTP status of each code: of the answers, and of a run's terminal errors (the status of
#: the JSON answer of a run that failed).
STATUS_OF_CODE: Final[Mapping[str, int]] = {
    "VALIDATION_ERROR": 400,
    "UNAUTHORIZED": 401,
    "INSUFFICIENT_CREDITS": 402,
    "TIER_LIMIT": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "OPERATION_NOT_RESUMABLE": 409,
    "OPERATION_CANCELLED": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "CONTENT_BLOCKED": 422,
    "RATE_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "PROVIDER_BAD_OUTPUT": 502,
    "PROVIDER_ERROR": 502,
    "PROVIDER_RATE_LIMITED": 503,
    "PROVIDER_UNAVAILABLE": 503,
    "PROVIDER_BILLING_EXHAUSTED": 503,
    "PROVIDER_NOT_CONFIGURED": 503,
    "RATE_LIMIT_UNAVAILABLE": 503,
    "AUTH_UNAVAILABLE": 503,
    "DATABASE_UNAVAILABLE": 503,
    "STORAGE_UNAVAILABLE": 503,
    "INTERRUPTED": 503,
    "PROVIDER_TIMEOUT": 504,
}


def whole_seconds(seconds: float | None) -> int | None:
    """A delay as the contract states it: whole seconds, rounded up, at least 1."""
    return None if seconds is None else max(1, math.ceil(seconds))


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong, for people and for clients: the source of every error body,
    recorded error, `error` event and error log line."""

    code: str
    message: str
    status: int = 500
    retryable: bool = False
    retry_after: int | None = None
    #: Extra answer headers (e.g. the operation's `Location`); `Retry-After` is added.
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_record(cls, record: Mapping[str, Any] | None) -> ErrorInfo:
        """The description of an error recorded for a step or an operation."""
        record = record or {}
        code = str(record.get("code") or "PROVIDER_ERROR")
        retry_after = record.get("retry_after")
        return cls(
            code=code,
            message=str(record.get("message") or "the operation failed"),
            status=STATUS_OF_CODE.get(code, 502),
            retryable=bool(record.get("retryable")),
            retry_after=retry_after if isinstance(retry_after, int) else None,
        )

    def record(self) -> dict[str, Any]:
        """The error as recorded for a failed step or operation, and as the data of an
        `error` event."""
        record: dict[str, Any] = {"code": self.code, "message": self.message,
                                  "retryable": self.retryable}
        if self.retry_after is not None:
            record["retry_after"] = self.retry_after
        return record

    def answer_headers(self) -> dict[str, str]:
        """The headers of an error answer: `Retry-After` whenever a delay is known."""
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers.setdefault("Retry-After", str(self.retry_after))
        return headers

    def log_fields(self) -> dict[str, Any]:
        """The `extra` of the error's log line."""
        return {"code": self.code, "status": self.status, "retryable": self.retryable}


#: The terminal error of a cancelled run.
CANCELLED: Final = ErrorInfo("OPERATION_CANCELLED", "the operation was cancelled", 409)
#: A step that raised something unexpected: logged in full, reported without details.
#: `resume` may run it again (the fault may have passed); the retry loop never does.
INTERNAL: Final = ErrorInfo("INTERNAL_ERROR", "the step failed unexpectedly", 500,
                            retryable=True)


class ServiceError(Exception):
    """Root of every error of the service; `info` describes it."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    @property
    def info(self) -> ErrorInfo:
        return ErrorInfo(self.code, self.message, self.status, self.retryable,
                         whole_seconds(self.retry_after), self.headers)


class ValidationFailed(ServiceError):
    status = 400
    code = "VALIDATION_ERROR"


class BodyTooSlow(ValidationFailed):
    """The request body did not arrive within its deadline (a slow client)."""


class IdempotencyConflict(ServiceError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"


class Unauthorized(ServiceError):
    status = 401
    code = "UNAUTHORIZED"


class NotFound(ServiceError):
    status = 404
    code = "NOT_FOUND"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class InsufficientCredits(ServiceError):
    status = 402
    code = "INSUFFICIENT_CREDITS"


class CreditsRefused(ServiceError):
    """ViewBait's credit functions refused a movement for another reason than the balance
    (a fault of the deployment, logged; nothing was charged)."""


class TierLimit(ServiceError):
    status = 403
    code = "TIER_LIMIT"


class OperationNotResumable(ServiceError):
    status = 409
    code = "OPERATION_NOT_RESUMABLE"


class ProviderNotConfigured(ServiceError):
    status = 503
    code = "PROVIDER_NOT_CONFIGURED"


class DatabaseUnavailable(ServiceError):
    status = 503
    code = "DATABASE_UNAVAILABLE"
    retryable = True


class StorageUnavailable(ServiceError):
    status = 503
    code = "STORAGE_UNAVAILABLE"
    retryable = True


class AuthUnavailable(ServiceError):
    status = 503
    code = "AUTH_UNAVAILABLE"
    retryable = True


class ProviderError(ServiceError):
    """A provider call failed; `code` is one of the contract's terminal error codes and
    the message is safe to show (never a raw provider body or key)."""

    def __init__(
        self, code: str, message: str, *, retryable: bool, retry_after: float | None = None,
        retry_limit: int | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code
        self.status = STATUS_OF_CODE.get(code, 502)
        self.retryable = retryable
        #: At most this many retries for failures of this code within one call.
        self.retry_limit = retry_limit


class FetchRefused(ProviderError):
    """A URL that must not or cannot be fetched (a 400 for the user, not retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__("VALIDATION_ERROR", message, retryable=False)


class RunError(ServiceError):
    """A run's terminal error, as recorded; answered with its code's status."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message, retry_after=info.retry_after, headers=info.headers)
        self._info = info

    @property
    def info(self) -> ErrorInfo:
        return self._info


class SettingsError(ServiceError, ValueError):
    """A setting has a wrong value; the message names the variable."""


def record_of_step_error(exc: BaseException) -> dict[str, Any]:
    """The recorded error of a failed step: a service error as it describes itself;
    anything unexpected is logged with its traceback and recorded without details."""
    if isinstance(exc, ServiceError):
        return exc.info.record()
    log.error("step failed unexpectedly", exc_info=exc, extra=INTERNAL.log_fields())
    return INTERNAL.record()

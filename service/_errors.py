"""Errors of the service, each with its HTTP status and the contract's code.

    ServiceError                      status, code, retryable, retry_after
    ├── ValidationFailed              400 VALIDATION_ERROR
    ├── IdempotencyConflict           422 IDEMPOTENCY_KEY_REUSED
    ├── Unauthorized                  401 UNAUTHORIZED
    ├── NotFound                      404 NOT_FOUND
    ├── PayloadTooLarge               413 PAYLOAD_TOO_LARGE
    ├── InsufficientCredits           402 INSUFFICIENT_CREDITS
    ├── TierLimit                     403 TIER_LIMIT
    ├── OperationNotResumable         409 OPERATION_NOT_RESUMABLE
    ├── ProviderNotConfigured         503 PROVIDER_NOT_CONFIGURED
    ├── DatabaseUnavailable           503 DATABASE_UNAVAILABLE
    ├── StorageUnavailable            503 STORAGE_UNAVAILABLE
    └── RunError                      a run's terminal error (its code picks the status)

Errors of the other packages (checkpoints, ratelimit) are turned into responses in the
one handler table of `_http.py`; handlers never build error JSON themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

#: HTTP status of each terminal error code of a run (the JSON answer's status).
RUN_ERROR_STATUS: dict[str, int] = {
    "PROVIDER_RATE_LIMITED": 503,
    "PROVIDER_UNAVAILABLE": 503,
    "PROVIDER_BILLING_EXHAUSTED": 503,
    "PROVIDER_NOT_CONFIGURED": 503,
    "PROVIDER_TIMEOUT": 504,
    "CONTENT_BLOCKED": 422,
    "PROVIDER_BAD_OUTPUT": 502,
    "PROVIDER_ERROR": 502,
    "OPERATION_CANCELLED": 409,
    "INSUFFICIENT_CREDITS": 402,
    "NOT_FOUND": 404,
    "VALIDATION_ERROR": 400,
    "TIER_LIMIT": 403,
    "INTERRUPTED": 503,
    "STORAGE_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
}


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.message, "code": self.code, "retryable": self.retryable,
        }
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


class ValidationFailed(ServiceError):
    status = 400
    code = "VALIDATION_ERROR"


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


class RunError(ServiceError):
    """A run's terminal error, as recorded in its `error` event."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(
            str(error.get("message") or "the operation failed"),
            retry_after=error.get("retry_after"),
        )
        self.error = dict(error)

    @property
    def status_code(self) -> int:
        return RUN_ERROR_STATUS.get(str(self.error.get("code")), 502)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.message,
            "code": str(self.error.get("code") or "PROVIDER_ERROR"),
            "retryable": bool(self.error.get("retryable")),
        }
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body

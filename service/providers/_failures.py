"""Turning provider HTTP answers and failures into the contract's error codes.

Messages are written here, for people: never a raw provider body, key or base64.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from .._errors import ProviderError

BLOCKED_FINISH_REASONS = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT",
                                    "RECITATION", "BLOCKLIST", "SPII"})


def retry_after_of(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta or HTTP date), if the answer has a usable one."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _message_of(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return " ".join(str(error.get(k, "")) for k in ("status", "code", "type", "message"))
        if isinstance(error, str):
            return error
    return ""


def error_from_response(provider: str, response: httpx.Response) -> ProviderError:
    """A failed HTTP answer of `provider` as a ProviderError."""
    status = response.status_code
    try:
        detail = _message_of(response.json()).lower()
    except ValueError:
        detail = ""
    name = provider.capitalize() if provider != "openai" else "OpenAI"
    if status == 429 or "resource_exhausted" in detail:
        if any(word in detail for word in ("billing", "prepay", "insufficient_quota",
                                           "billing_hard_limit")):
            return ProviderError(
                "PROVIDER_BILLING_EXHAUSTED",
                f"{name}'s account has run out of credit; retrying will not help",
                retryable=False,
            )
        return ProviderError("PROVIDER_RATE_LIMITED", f"{name} is rate limiting requests",
                             retryable=True, retry_after=retry_after_of(response))
    if status == 408:
        return ProviderError("PROVIDER_TIMEOUT", f"{name} timed out", retryable=True)
    if status == 409 or status >= 500:
        code = "PROVIDER_TIMEOUT" if status == 504 else "PROVIDER_UNAVAILABLE"
        return ProviderError(code, f"{name} is unavailable (HTTP {status})", retryable=True,
                             retry_after=retry_after_of(response))
    if status == 400 and any(word in detail for word in ("safety", "content_policy",
                                                         "moderation", "blocked")):
        return ProviderError("CONTENT_BLOCKED", f"{name} refused the request's content",
                             retryable=False)
    if status in (401, 403):
        return ProviderError("PROVIDER_ERROR", f"{name} refused the service's credentials",
                             retryable=False)
    return ProviderError("PROVIDER_ERROR", f"{name} rejected the request (HTTP {status})",
                         retryable=False)


def error_from_transport(provider: str, exc: httpx.HTTPError) -> ProviderError:
    name = provider.capitalize() if provider != "openai" else "OpenAI"
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError("PROVIDER_TIMEOUT", f"{name} did not answer in time",
                             retryable=True)
    return ProviderError("PROVIDER_UNAVAILABLE", f"{name} could not be reached",
                         retryable=True)


async def post_json(
    http: httpx.AsyncClient, provider: str, url: str, *, headers: dict[str, str],
    json: Any = None, files: Any = None, data: Any = None, timeout: float = 120.0,
) -> Any:
    """POST and return the decoded JSON answer, or raise the normalised error."""
    try:
        response = await http.post(url, headers=headers, json=json, files=files, data=data,
                                   timeout=timeout)
    except httpx.HTTPError as exc:
        raise error_from_transport(provider, exc) from None
    if response.status_code >= 400:
        raise error_from_response(provider, response)
    try:
        return response.json()
    except ValueError:
        raise ProviderError("PROVIDER_BAD_OUTPUT", "the provider's answer was not JSON",
                            retryable=True) from None

"""Turning provider HTTP answers and failures into the contract's error codes.

Messages are written here, for people: never a raw provider body, key or base64.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

import httpx

from .._errors import ProviderError

#: Gemini's reasons for blocked output: not retried, not charged.
BLOCKED_FINISH_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "RECITATION",
    "IMAGE_RECITATION", "BLOCKLIST", "SPII",
})
#: Gemini's reasons for an answer without an image: bad output, retried at most once.
NO_IMAGE_FINISH_REASONS = frozenset({"NO_IMAGE", "IMAGE_OTHER"})
#: What only a used-up prepaid balance says (Gemini), or an account out of credit
#: (OpenAI). Ordinary quota messages speak of "plan and billing details" too: not these.
_BILLING_STOPS = ("prepayment credits", "credits are depleted", "billing#prepay",
                  "insufficient_quota", "billing_hard_limit")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def retry_after_of(response: httpx.Response, body: Any = None) -> float | None:
    """Seconds to wait: the `Retry-After` header (delta or HTTP date), else the body's
    `google.rpc.RetryInfo.retryDelay` (`"26s"`), if the answer has a usable one."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return _retry_info_delay(body)
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retry_info_delay(body: Any) -> float | None:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else ():
        if (isinstance(detail, dict)
                and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo")):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


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
        body = response.json()
    except ValueError:
        body = None
    detail = _message_of(body).lower()
    name = provider.capitalize() if provider != "openai" else "OpenAI"
    if status == 429 or "resource_exhausted" in detail:
        if any(words in detail for words in _BILLING_STOPS):
            return ProviderError(
                "PROVIDER_BILLING_EXHAUSTED",
                f"{name}'s account has run out of credit; retrying will not help",
                retryable=False,
            )
        return ProviderError("PROVIDER_RATE_LIMITED", f"{name} is rate limiting requests",
                             retryable=True, retry_after=retry_after_of(response, body))
    if status == 408:
        return ProviderError("PROVIDER_TIMEOUT", f"{name} timed out", retryable=True)
    if status == 409 or status >= 500:
        code = "PROVIDER_TIMEOUT" if status == 504 else "PROVIDER_UNAVAILABLE"
        return ProviderError(code, f"{name} is unavailable (HTTP {status})", retryable=True,
                             retry_after=retry_after_of(response, body))
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

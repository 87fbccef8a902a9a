"""What a request asks for beyond its body: a stream or JSON, waiting or not, its
Idempotency-Key, and where an event stream should start."""

from __future__ import annotations

import re

from starlette.requests import Request

from .._errors import ValidationFailed

_IDEMPOTENCY_KEY = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")


def wants_stream(request: Request) -> bool:
    """`Accept: text/event-stream` (it wins over `Prefer: respond-async`)."""
    return "text/event-stream" in request.headers.get("accept", "")


def wants_async(request: Request) -> bool:
    """`Prefer: respond-async`: 202 at once instead of waiting for the result."""
    prefer = request.headers.get("prefer", "")
    return any(p.strip().lower() == "respond-async" for p in prefer.split(","))


def idempotency_key(request: Request) -> str | None:
    """The `Idempotency-Key`: 1 to 255 printable ASCII characters, or none."""
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

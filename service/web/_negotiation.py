"""What a request asks for beyond its body: a stream or JSON, waiting or not, its
Idempotency-Key, and where an event stream should start."""

from __future__ import annotations

import re

from starlette.requests import Request

from .._errors import ValidationFailed

#: Operation and thumbnail ids are UUIDs (36 characters).
MAX_ID_LENGTH = 36
_IDEMPOTENCY_KEY = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")


def wants_stream(request: Request) -> bool:
    """An event stream: `text/event-stream` accepted (q > 0) and not ranked below JSON
    (RFC 9110 media ranges with q-values; it wins over `Prefer: respond-async`)."""
    ranks = _accepted(request.headers.get("accept", ""))
    stream = ranks.get("text/event-stream", 0.0)
    json = max(ranks.get(m, 0.0) for m in ("application/json", "application/*", "*/*"))
    return stream > 0 and stream >= json


def wants_async(request: Request) -> bool:
    """`Prefer: respond-async` (RFC 7240; with or without parameters such as `wait=5`):
    202 at once instead of waiting for the result."""
    for preference in request.headers.get("prefer", "").split(","):
        token = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
        if token == "respond-async":
            return True
    return False


def _accepted(header: str) -> dict[str, float]:
    """Each media range of an Accept header with its q-value (the highest if repeated;
    a malformed q counts as 0, an absent one as 1)."""
    ranks: dict[str, float] = {}
    for item in header.split(","):
        media, *parameters = item.split(";")
        media = media.strip().lower()
        if not media:
            continue
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        ranks[media] = max(q, ranks.get(media, 0.0))
    return ranks


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


def path_id(request: Request, name: str) -> str | None:
    """An id from the path: 400 when it holds control characters (a NUL never reaches the
    database), None when it is longer than any id (so: no such thing, 404)."""
    value: str = request.path_params[name]
    if not value.isprintable():
        raise ValidationFailed(f"{name} must not contain control characters")
    return value if len(value) <= MAX_ID_LENGTH else None


def event_cursor(request: Request) -> int | None:
    """`Last-Event-ID` (EventSource reconnects) or `?last_event_id=` (a new page)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ValidationFailed("Last-Event-ID must be a non-negative integer")
    return int(raw)

"""YouTube: video ids from what users paste, and a video's details from the YouTube Data
API (title, channel, duration), which video analysis uses when a key is set."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx

from .._errors import ProviderError, ValidationFailed
from ._failures import error_from_response, error_from_transport

_ID: Final = re.compile(r"^[A-Za-z0-9_-]{11}$")
_HOSTS: Final = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com",
                           "music.youtube.com", "youtu.be", "www.youtu.be"})
_DURATION: Final = re.compile(r"P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")
_TIMEOUT_S: Final = 20.0
#: The YouTube Data API's reasons (403) for a quota or rate limit.
_QUOTA_REASONS: Final = frozenset({"quotaExceeded", "dailyLimitExceeded",
                                   "rateLimitExceeded", "userRateLimitExceeded"})


def _reason(response: httpx.Response) -> str | None:
    """The first `error.errors[].reason` of a YouTube Data API error."""
    try:
        errors = response.json()["error"]["errors"]
        return str(errors[0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def video_id_of(value: str) -> str:
    """The 11-character id of a YouTube id or URL; 400 for anything else."""
    value = value.strip()
    if _ID.match(value):
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = urlsplit("")
    host = (parts.hostname or "").lower()
    if parts.scheme in ("http", "https") and host in _HOSTS:
        if host.endswith("youtu.be"):
            candidate = parts.path.strip("/").split("/")[0]
        elif parts.path == "/watch":
            candidate = parse_qs(parts.query).get("v", [""])[0]
        else:
            segments = parts.path.strip("/").split("/")
            candidate = segments[1] if len(segments) >= 2 and segments[0] in (
                "shorts", "embed", "live", "v") else ""
        if _ID.match(candidate):
            return candidate
    raise ValidationFailed("video must be an 11-character YouTube id or a YouTube video URL")


def watch_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def duration_s(iso: str) -> int | None:
    """Seconds of an ISO 8601 duration as the API gives it (`PT1H2M3S`)."""
    match = _DURATION.fullmatch(iso or "")
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


class YouTube:
    """The YouTube Data API's `videos` resource."""

    def __init__(self, http: httpx.AsyncClient, api_key: str, base_url: str) -> None:
        self._http = http
        self._key = api_key
        self._base = base_url

    async def details(self, video_id: str) -> dict[str, Any]:
        """`{title, channel, duration_s}` of a public video; a `ProviderError` otherwise
        (`NOT_FOUND` when YouTube has no such public video)."""
        try:
            response = await self._http.get(
                f"{self._base}/videos",
                params={"part": "snippet,contentDetails", "id": video_id, "key": self._key},
                timeout=_TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            raise error_from_transport("youtube", exc) from None
        if response.status_code == 403 and _reason(response) in _QUOTA_REASONS:
            # A quota per day is not worth waiting for; a rate limit is (retried).
            retryable = _reason(response) == "rateLimitExceeded"
            raise ProviderError("PROVIDER_RATE_LIMITED", "YouTube's API quota is used up",
                                retryable=retryable)
        if response.status_code >= 400:
            raise error_from_response("youtube", response)
        answer = response.json()
        items = answer.get("items") or [] if isinstance(answer, dict) else []
        if not items:
            raise ProviderError("NOT_FOUND", "YouTube has no public video with this id",
                                retryable=False)
        snippet = items[0].get("snippet") or {}
        details = items[0].get("contentDetails") or {}
        return {"title": snippet.get("title"), "channel": snippet.get("channelTitle"),
                "duration_s": duration_s(details.get("duration", ""))}

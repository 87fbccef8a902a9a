"""The token issuer's public keys (a JWK Set, as Supabase publishes it), cached.

Keys are kept for the `max-age` the key set is served with (10 minutes without one). A
token whose `kid` is not cached fetches the set again, at most once per
`REFETCH_INTERVAL_S` across all requests, so a flood of made-up `kid`s costs one fetch;
keys that rotate in are found that way without a restart, and keys that rotate out are
gone once the cache is refreshed. While the set cannot be fetched, cached keys keep
working; a token whose key is not cached is then `AuthUnavailable` (503), not a 401: the
user did nothing wrong.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, Final

import httpx
import jwt

from .._errors import AuthUnavailable, Unauthorized

log = logging.getLogger("service.auth")

DEFAULT_TTL_S: Final = 600.0
#: At most one fetch of the set per this many seconds for unknown `kid`s.
REFETCH_INTERVAL_S: Final = 30.0
#: A key set served with a longer max-age is still checked this often.
MAX_TTL_S: Final = 86400.0
FETCH_TIMEOUT_S: Final = 5.0
#: Clients should retry this much later while the key set is unreachable.
RETRY_AFTER_S: Final = 5
_MAX_AGE: Final = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class KeySet:
    """The JWK Set at `url`, fetched with `http` and cached on `clock`."""

    def __init__(
        self, http: httpx.AsyncClient, url: str, *, clock: Callable[[], float]
    ) -> None:
        self._http = http
        self._url = url
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fresh_until = float("-inf")
        self._fetched_at = float("-inf")
        self._reachable = True
        self._lock = asyncio.Lock()
        #: Fetches made (tests and metrics read it).
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK:
        """The public key named `kid`: 401 when the issuer has no such key, 503 when the
        set cannot be fetched and the key is not cached."""
        cached = self._keys.get(kid)
        if cached is not None and (self._lock.locked() or self._clock() < self._fresh_until):
            # Fresh, or a refresh is already on its way: a cached key never waits for it.
            return cached
        await self._refresh(kid)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._reachable:
            raise AuthUnavailable("the token issuer's keys cannot be fetched; retry shortly",
                                  retry_after=RETRY_AFTER_S)
        raise Unauthorized("the token is signed with an unknown key")

    async def _refresh(self, kid: str) -> None:
        """Fetch the set when the cache is stale, or for an unknown `kid` when the last
        fetch is more than REFETCH_INTERVAL_S ago; one fetch for all waiting callers."""
        async with self._lock:
            now = self._clock()
            stale = now >= self._fresh_until
            if not stale and kid in self._keys:
                return  # another caller refreshed it meanwhile
            if now - self._fetched_at < REFETCH_INTERVAL_S:
                return
            self._fetched_at = now
            self.fetches += 1
            try:
                keys, ttl = await self._fetch()
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                self._reachable = False
                log.warning("the JWK Set at %s cannot be fetched: %s", self._url, exc)
                return
            self._keys, self._reachable = keys, True
            self._fresh_until = now + ttl

    async def _fetch(self) -> tuple[dict[str, jwt.PyJWK], float]:
        response = await self._http.get(self._url, timeout=FETCH_TIMEOUT_S)
        response.raise_for_status()
        document = response.json()
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("the answer is not a JWK Set")
        return _usable_keys(entries), _ttl(response.headers.get("cache-control", ""))


def _usable_keys(entries: list[Any]) -> dict[str, jwt.PyJWK]:
    """The signing keys with a `kid` (keys PyJWT cannot use are skipped, not fatal)."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except jwt.PyJWTError as exc:  # InvalidKeyError and PyJWKError alike
            log.warning("JWK %s skipped: %s", entry["kid"], exc)
    return keys


def _ttl(cache_control: str) -> float:
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return DEFAULT_TTL_S
    return min(float(match.group(1)), MAX_TTL_S)

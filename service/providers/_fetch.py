"""Fetching user-given image URLs safely: public addresses only (checked on the address
actually connected to), bounded size, image types only, timeouts, few redirects."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlunsplit

import httpx

from .._errors import FetchRefused, ProviderError
from .._images import image_dimensions
from ._public_urls import Resolver, parse_image_url, public_addresses, system_resolver

IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/webp"})
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FetchedImage:
    data: bytes
    mime_type: str


class ImageFetcher:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        allow_private: bool = False,
        max_bytes: int = MAX_IMAGE_BYTES,
        timeout_s: float = 15.0,
        max_redirects: int = 3,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._http = http
        self._allow_private = allow_private
        self._max_bytes = max_bytes
        self._timeout = timeout_s
        self._max_redirects = max_redirects
        self._resolve = resolver

    async def fetch(self, url: str) -> FetchedImage:
        """The image at `url`; `FetchRefused` for anything unsafe, too big or not an
        image; a retryable `ProviderError` when the host is unreachable."""
        for _ in range(self._max_redirects + 1):
            target, headers, extensions = await self._pinned(url)
            try:
                async with asyncio.timeout(self._timeout), self._http.stream(
                    "GET", target, headers=headers, extensions=extensions,
                    follow_redirects=False,
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise FetchRefused(
                            f"the image URL answered HTTP {response.status_code}"
                        )
                    mime = response.headers.get("content-type", "").split(";")[0].strip()
                    if mime not in IMAGE_TYPES:
                        raise FetchRefused("the URL is not a PNG, JPEG or WebP image")
                    declared = response.headers.get("content-length")
                    if declared is not None and declared.isascii() and declared.isdigit() and (
                        int(declared) > self._max_bytes
                    ):
                        raise FetchRefused("the image is larger than 10 MB")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self._max_bytes:
                            raise FetchRefused("the image is larger than 10 MB")
                    try:
                        image_dimensions(bytes(body))  # the header: format and pixel caps
                    except ValueError as exc:
                        raise FetchRefused(f"the URL's image is refused: {exc}") from None
                    return FetchedImage(bytes(body), mime)
            except TimeoutError:
                raise ProviderError("PROVIDER_TIMEOUT", "fetching an image URL timed out",
                                    retryable=True) from None
            except httpx.HTTPError:
                raise ProviderError("PROVIDER_UNAVAILABLE", "an image URL could not be fetched",
                                    retryable=True) from None
        raise FetchRefused("the image URL redirects too often")

    async def _pinned(self, url: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """Resolve once, check every address, and connect to that very address (no
        second lookup an attacker could answer differently)."""
        parts = parse_image_url(url)
        addresses = await public_addresses(parts, allow_private=self._allow_private,
                                           resolver=self._resolve)
        host = parts.hostname or ""
        address = addresses[0]
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        headers = {"Host": parts.netloc.rpartition("@")[2]}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return target, headers, extensions

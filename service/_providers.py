"""Image providers behind one small protocol; `local` draws offline with Pillow.

Provider failures are `ProviderError`s carrying the contract's code and whether a retry
can help; the messages are safe to show to users (never raw provider bodies or keys).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._render import ThumbnailSpec, image_dimensions, render_thumbnail

log = logging.getLogger("service.providers")


class ProviderError(Exception):
    """A provider call failed; `code` is one of the contract's terminal error codes."""

    def __init__(
        self, code: str, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ImageRequest:
    spec: ThumbnailSpec
    reference_images: tuple[str, ...] = ()
    model: str | None = None
    #: For logs: which operation and step asked.
    context: str = ""


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    mime_type: str
    width: int
    height: int
    provider: str


class ImageProvider(Protocol):
    name: str

    async def generate(self, request: ImageRequest) -> GeneratedImage: ...


Sleep = Callable[[float], Coroutine[Any, Any, None]]


class LocalProvider:
    """Draws a real title-card thumbnail; `delay_ms` adds latency (demos, tests)."""

    name = "local"

    def __init__(self, *, delay_ms: int = 0, sleep: Sleep = asyncio.sleep) -> None:
        self._delay = delay_ms / 1000
        self._sleep = sleep

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        log.info("provider call", extra={"provider": self.name, "context": request.context})
        if self._delay:
            await self._sleep(self._delay)
        png = await asyncio.to_thread(render_thumbnail, request.spec)
        width, height = image_dimensions(png)
        return GeneratedImage(png, "image/png", width, height, self.name)


class ProviderChain:
    """The IMAGE_PROVIDERS fallback order (the next provider is tried when one fails for
    good with an error another could avoid)."""

    #: Failures another provider may not have.
    FALLBACK_CODES = frozenset(
        {"PROVIDER_UNAVAILABLE", "PROVIDER_BILLING_EXHAUSTED", "PROVIDER_RATE_LIMITED",
         "PROVIDER_NOT_CONFIGURED", "PROVIDER_TIMEOUT"}
    )

    def __init__(self, providers: Sequence[ImageProvider]) -> None:
        if not providers:
            raise ValueError("at least one image provider is needed")
        self.providers = tuple(providers)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        last: ProviderError | None = None
        for provider in self.providers:
            try:
                return await provider.generate(request)
            except ProviderError as exc:
                if exc.code not in self.FALLBACK_CODES:
                    raise
                last = exc
                log.warning("provider %s failed (%s), trying the next", provider.name, exc.code)
        assert last is not None
        raise last

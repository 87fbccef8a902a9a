"""Image providers behind one small protocol; `local` draws offline with Pillow.

Provider failures are `ProviderError`s carrying the contract's code and whether a retry
can help; the messages are safe to show to users (never raw provider bodies or keys).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._caption import caption_image
from ._images import image_dimensions
from ._render import ThumbnailSpec, render_thumbnail
from ._saliency import render_heatmap

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
class EditRequest:
    """A new image from an existing one and an instruction (edits, heatmaps)."""

    source: bytes
    source_mime_type: str
    prompt: str
    resolution: str = "1K"
    aspect_ratio: str = "16:9"
    reference_images: tuple[str, ...] = ()
    model: str | None = None
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

    async def edit(self, request: EditRequest) -> GeneratedImage: ...

    async def heatmap(self, request: EditRequest) -> GeneratedImage: ...


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

    async def edit(self, request: EditRequest) -> GeneratedImage:
        """Applies the instruction as a caption over the source, with a colour grade."""
        log.info("provider call", extra={"provider": self.name, "context": request.context})
        if self._delay:
            await self._sleep(self._delay)
        png = await asyncio.to_thread(caption_image, request.source, request.prompt)
        width, height = image_dimensions(png)
        return GeneratedImage(png, "image/png", width, height, self.name)

    async def heatmap(self, request: EditRequest) -> GeneratedImage:
        """A real saliency heatmap (spectral residual) over the image."""
        log.info("provider call", extra={"provider": self.name, "context": request.context})
        if self._delay:
            await self._sleep(self._delay)
        png = await asyncio.to_thread(render_heatmap, request.source)
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

    async def call(
        self,
        use: Callable[[ImageProvider], Awaitable[GeneratedImage]],
        on_fallback: Callable[[str, str, ProviderError], Awaitable[None]] | None = None,
    ) -> GeneratedImage:
        """`use` each provider in order until one answers; the next is tried only after
        a failure another provider may not have (`on_fallback` is told)."""
        last: ProviderError | None = None
        for i, provider in enumerate(self.providers):
            try:
                return await use(provider)
            except ProviderError as exc:
                if exc.code not in self.FALLBACK_CODES or i == len(self.providers) - 1:
                    raise
                last = exc
                nxt = self.providers[i + 1].name
                log.warning("provider %s failed (%s), trying %s", provider.name, exc.code, nxt)
                if on_fallback is not None:
                    await on_fallback(provider.name, nxt, exc)
        assert last is not None
        raise last

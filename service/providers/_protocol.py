"""Image providers behind one small protocol, and their fallback chain.

Provider failures are `ProviderError`s (see `service._errors`) carrying the contract's code
and whether a retry can help.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from PIL import Image

from .._errors import ProviderError
from .._spec import ThumbnailSpec
from ._fetch import ImageFetcher
from ._models import image_model

log = logging.getLogger("service.providers")


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
    #: The image as the provider's check decoded it, when it did (saves decoding it
    #: again for its variants).
    decoded: Image.Image | None = field(default=None, repr=False, compare=False)


class ImageProvider(Protocol):
    name: str

    async def generate(self, request: ImageRequest) -> GeneratedImage: ...

    async def edit(self, request: EditRequest) -> GeneratedImage: ...

    async def heatmap(self, request: EditRequest) -> GeneratedImage: ...


class RemoteProvider:
    """A provider reached over HTTP with an API key; image URLs in requests are fetched
    with `fetcher` (public addresses only)."""

    def __init__(
        self, http: httpx.AsyncClient, api_key: str, base_url: str, fetcher: ImageFetcher
    ) -> None:
        self._http = http
        self._key = api_key
        self._base = base_url
        self._fetcher = fetcher


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

    def for_model(self, choice: str | None) -> ProviderChain:
        """The providers that can serve a model choice: its own provider, and the offline
        `local` one (a stand-in for any model); all of them when no model was chosen."""
        if choice is None:
            return self
        provider = image_model(choice).provider
        serving = [p for p in self.providers if p.name in (provider, "local")]
        if not serving:
            raise ProviderError("PROVIDER_NOT_CONFIGURED",
                                f"{choice} needs the {provider} provider, which is not set up",
                                retryable=False)
        return ProviderChain(serving)

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

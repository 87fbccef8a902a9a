"""The `local` provider: real images drawn offline with Pillow, no key and no network."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..._images import image_dimensions
from .._protocol import EditRequest, GeneratedImage, ImageRequest
from ._caption import caption_image
from ._render import render_thumbnail
from ._saliency import render_heatmap

log = logging.getLogger("service.providers")

Sleep = Callable[[float], Coroutine[Any, Any, None]]


class LocalProvider:
    """Draws a real title-card thumbnail; `delay_ms` adds latency (demos, tests)."""

    name = "local"

    def __init__(self, *, delay_ms: int = 0, sleep: Sleep = asyncio.sleep) -> None:
        self._delay = delay_ms / 1000
        self._sleep = sleep

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        return await self._draw(request.context, render_thumbnail, request.spec)

    async def edit(self, request: EditRequest) -> GeneratedImage:
        """Applies the instruction as a caption over the source, with a colour grade."""
        return await self._draw(request.context, caption_image, request.source, request.prompt)

    async def heatmap(self, request: EditRequest) -> GeneratedImage:
        """A real saliency heatmap (spectral residual) over the image."""
        return await self._draw(request.context, render_heatmap, request.source)

    async def _draw(
        self, context: str, draw: Callable[..., bytes], *args: Any
    ) -> GeneratedImage:
        """`draw(*args)` in a worker thread (it is CPU-bound), after the demo delay."""
        log.info("provider call", extra={"provider": self.name, "context": context})
        if self._delay:
            await self._sleep(self._delay)
        png = await asyncio.to_thread(draw, *args)
        width, height = image_dimensions(png)
        return GeneratedImage(png, "image/png", width, height, self.name)

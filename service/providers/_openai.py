"""OpenAI's image API: `/v1/images/generations` and `/v1/images/edits`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any, Final

from .._errors import ProviderError
from .._images import decode
from ._failures import post_json
from ._models import image_model
from ._prompts import HEATMAP_PROMPT, edit_prompt, thumbnail_prompt
from ._protocol import EditRequest, GeneratedImage, ImageRequest, RemoteProvider

log = logging.getLogger("service.providers")

#: ViewBait's OpenAI choice (`gpt-image-2`).
MODEL: Final = image_model("gpt-image-2").model_id
QUALITY: Final = {"1K": "medium", "2K": "high", "4K": "high"}


def size_for(aspect_ratio: str) -> str:
    """The closest of OpenAI's sizes: landscape, portrait or square."""
    width, _, height = aspect_ratio.partition(":")
    ratio = float(width) / float(height)
    if ratio > 1.1:
        return "1536x1024"
    if ratio < 0.9:
        return "1024x1536"
    return "1024x1024"


class OpenAIProvider(RemoteProvider):
    name = "openai"

    async def _decode(self, answer: Any) -> GeneratedImage:
        try:
            data = base64.b64decode(answer["data"][0]["b64_json"], validate=True)
            image = await asyncio.to_thread(decode, data)
        except (KeyError, IndexError, TypeError):
            raise ProviderError("PROVIDER_BAD_OUTPUT", "OpenAI answered without an image",
                                retryable=True) from None
        except (binascii.Error, ValueError):
            raise ProviderError("PROVIDER_BAD_OUTPUT",
                                "OpenAI returned an image that does not decode",
                                retryable=True) from None
        return GeneratedImage(data, "image/png", *image.size, self.name, decoded=image)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        if request.reference_images:
            # Only the edits endpoint takes images: the references go there, as ViewBait's do.
            prompt = thumbnail_prompt(request.spec, references=len(request.reference_images))
            return await self._with_images(
                [], request.reference_images, prompt, request.spec.aspect_ratio,
                request.spec.resolution, request.context)
        log.info("provider call", extra={"provider": self.name, "context": request.context})
        answer = await post_json(
            self._http, self.name, f"{self._base}/v1/images/generations",
            headers={"Authorization": f"Bearer {self._key}"},
            json={"model": MODEL, "prompt": thumbnail_prompt(request.spec), "n": 1,
                  "size": size_for(request.spec.aspect_ratio),
                  "quality": QUALITY[request.spec.resolution]},
        )
        return await self._decode(answer)

    async def _edit(self, request: EditRequest, prompt: str) -> GeneratedImage:
        source = ("source.png", request.source, request.source_mime_type)
        return await self._with_images([source], request.reference_images, prompt,
                                       request.aspect_ratio, request.resolution,
                                       request.context)

    async def _with_images(
        self, images: list[tuple[str, bytes, str]], urls: tuple[str, ...], prompt: str,
        aspect_ratio: str, resolution: str, context: str,
    ) -> GeneratedImage:
        """`/v1/images/edits` with `images` and the images at `urls` (fetched safely)."""
        log.info("provider call", extra={"provider": self.name, "context": context})
        files = [("image[]", image) for image in images]
        for i, url in enumerate(urls):
            fetched = await self._fetcher.fetch(url)
            files.append(("image[]", (f"reference-{i}", fetched.data, fetched.mime_type)))
        answer = await post_json(
            self._http, self.name, f"{self._base}/v1/images/edits",
            headers={"Authorization": f"Bearer {self._key}"},
            files=files,
            data={"model": MODEL, "prompt": prompt, "n": "1", "size": size_for(aspect_ratio),
                  "quality": QUALITY.get(resolution, "medium")},
        )
        return await self._decode(answer)

    async def edit(self, request: EditRequest) -> GeneratedImage:
        prompt = edit_prompt(request.prompt, references=len(request.reference_images))
        return await self._edit(request, prompt)

    async def heatmap(self, request: EditRequest) -> GeneratedImage:
        return await self._edit(EditRequest(
            request.source, request.source_mime_type, HEATMAP_PROMPT, request.resolution,
            request.aspect_ratio, (), None, request.context,
        ), HEATMAP_PROMPT)

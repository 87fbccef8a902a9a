"""OpenAI's image API: `/v1/images/generations` and `/v1/images/edits`."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Final

import httpx

from .._errors import ProviderError
from .._images import image_dimensions
from ._failures import post_json
from ._fetch import ImageFetcher
from ._prompts import HEATMAP_PROMPT, edit_prompt, thumbnail_prompt
from ._protocol import EditRequest, GeneratedImage, ImageRequest

log = logging.getLogger("service.providers")

MODEL: Final = "gpt-image-1"
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


class OpenAIProvider:
    name = "openai"

    def __init__(
        self, http: httpx.AsyncClient, api_key: str, base_url: str, fetcher: ImageFetcher
    ) -> None:
        self._http = http
        self._key = api_key
        self._base = base_url
        self._fetcher = fetcher

    def _decode(self, answer: Any) -> GeneratedImage:
        try:
            data = base64.b64decode(answer["data"][0]["b64_json"], validate=True)
            width, height = image_dimensions(data)
        except (KeyError, IndexError, TypeError):
            raise ProviderError("PROVIDER_BAD_OUTPUT", "OpenAI answered without an image",
                                retryable=True) from None
        except (binascii.Error, ValueError):
            raise ProviderError("PROVIDER_BAD_OUTPUT",
                                "OpenAI returned an image that does not decode",
                                retryable=True) from None
        return GeneratedImage(data, "image/png", width, height, self.name)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        log.info("provider call", extra={"provider": self.name, "context": request.context})
        answer = await post_json(
            self._http, self.name, f"{self._base}/v1/images/generations",
            headers={"Authorization": f"Bearer {self._key}"},
            json={"model": MODEL, "prompt": thumbnail_prompt(request.spec), "n": 1,
                  "size": size_for(request.spec.aspect_ratio),
                  "quality": QUALITY[request.spec.resolution]},
        )
        return self._decode(answer)

    async def _edit(self, request: EditRequest, prompt: str) -> GeneratedImage:
        log.info("provider call", extra={"provider": self.name, "context": request.context})
        files = [("image[]", ("source.png", request.source, request.source_mime_type))]
        for i, url in enumerate(request.reference_images):
            image = await self._fetcher.fetch(url)
            files.append(("image[]", (f"reference-{i}", image.data, image.mime_type)))
        answer = await post_json(
            self._http, self.name, f"{self._base}/v1/images/edits",
            headers={"Authorization": f"Bearer {self._key}"},
            files=files,
            data={"model": MODEL, "prompt": prompt, "n": "1",
                  "size": size_for(request.aspect_ratio),
                  "quality": QUALITY.get(request.resolution, "medium")},
        )
        return self._decode(answer)

    async def edit(self, request: EditRequest) -> GeneratedImage:
        prompt = edit_prompt(request.prompt, references=len(request.reference_images))
        return await self._edit(request, prompt)

    async def heatmap(self, request: EditRequest) -> GeneratedImage:
        return await self._edit(EditRequest(
            request.source, request.source_mime_type, HEATMAP_PROMPT, request.resolution,
            request.aspect_ratio, (), None, request.context,
        ), HEATMAP_PROMPT)

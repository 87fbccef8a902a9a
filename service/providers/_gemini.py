"""Gemini over REST `generateContent`: images (generation, edits, heatmaps) and video
analysis with a JSON answer schema."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError

from .._errors import ProviderError
from .._images import decode
from ._failures import BLOCKED_FINISH_REASONS, NO_IMAGE_FINISH_REASONS, post_json
from ._models import IMAGE_MODELS as MODEL_CHOICES
from ._models import image_model
from ._prompts import ANALYTICS_SCHEMA, HEATMAP_PROMPT, VIDEO_PROMPT, edit_prompt, thumbnail_prompt
from ._protocol import EditRequest, GeneratedImage, ImageRequest, RemoteProvider

log = logging.getLogger("service.providers")

IMAGE_MODELS: Final = tuple(m.model_id for m in MODEL_CHOICES if m.provider == "gemini")
TEXT_MODEL: Final = "gemini-2.5-flash"
#: The sampling ViewBait's image calls use, so images here match the ones it made.
IMAGE_GENERATION_CONFIG: Final = {"temperature": 0.7, "topK": 40, "topP": 0.95,
                                  "maxOutputTokens": 8192}


class _Scene(BaseModel):
    model_config = ConfigDict(extra="ignore")
    part: str
    description: str


class _Named(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    scenes: list[_Scene]


class VideoAnalytics(BaseModel):
    """The 10 fields of a video analysis; the model's answer must fit them."""

    model_config = ConfigDict(extra="ignore", strict=True)
    summary: str
    topic: str
    tone: str
    key_moments: str
    hooks: str
    duration_estimate: str
    thumbnail_appeal_notes: str
    content_type: str
    characters: list[_Named]
    places: list[_Named]


def _blocked(answer: dict[str, Any]) -> bool:
    feedback = answer.get("promptFeedback") or {}
    if feedback.get("blockReason"):
        return True
    return any(
        str(c.get("finishReason", "")).upper() in BLOCKED_FINISH_REASONS
        for c in answer.get("candidates") or []
        if isinstance(c, dict)
    )


def _no_image(message: str) -> ProviderError:
    """An answer without an image: worth one more try, not more."""
    return ProviderError("PROVIDER_BAD_OUTPUT", message, retryable=True, retry_limit=1)


def _parts(answer: Any) -> list[dict[str, Any]]:
    """The parts of the first candidate; blocked output is CONTENT_BLOCKED at once."""
    if not isinstance(answer, dict):
        raise ProviderError("PROVIDER_BAD_OUTPUT", "Gemini's answer had an unexpected shape",
                            retryable=True, retry_limit=1)
    if _blocked(answer):
        raise ProviderError("CONTENT_BLOCKED", "Gemini declined this content for safety "
                            "reasons; change the request and try again", retryable=False)
    candidates = answer.get("candidates") or []
    first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
    if str(first.get("finishReason", "")).upper() in NO_IMAGE_FINISH_REASONS:
        raise _no_image("Gemini produced no image for this request")
    parts = (first.get("content") or {}).get("parts") or []
    return [p for p in parts if isinstance(p, dict)]


class GeminiProvider(RemoteProvider):
    name = "gemini"

    async def _call(self, model: str, body: dict[str, Any], context: str) -> Any:
        log.info("provider call", extra={"provider": self.name, "context": context})
        return await post_json(
            self._http, self.name,
            f"{self._base}/v1beta/models/{model}:generateContent",
            headers={"x-goog-api-key": self._key}, json=body,
        )

    async def _inline(self, urls: tuple[str, ...]) -> list[dict[str, Any]]:
        parts = []
        for url in urls:
            image = await self._fetcher.fetch(url)
            parts.append({"inlineData": {"mimeType": image.mime_type,
                                         "data": base64.b64encode(image.data).decode()}})
        return parts

    @staticmethod
    def _model(requested: str | None) -> str:
        """The Gemini model id of a request's model choice (the default: the first)."""
        if requested is None:
            return IMAGE_MODELS[0]
        try:
            model = image_model(requested)
        except ValueError as exc:
            raise ProviderError("VALIDATION_ERROR", str(exc), retryable=False) from None
        if model.provider != "gemini":
            raise ProviderError("VALIDATION_ERROR", f"{requested} is not a Gemini model",
                                retryable=False)
        return model.model_id

    async def _image(self, model: str, parts: list[dict[str, Any]], aspect_ratio: str,
                     resolution: str, context: str) -> GeneratedImage:
        body = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                **IMAGE_GENERATION_CONFIG,
                "responseModalities": ["IMAGE"],
                "imageConfig": {"aspectRatio": aspect_ratio, "imageSize": resolution},
            },
        }
        for part in _parts(await self._call(model, body, context)):
            inline = part.get("inlineData") or part.get("inline_data")
            if isinstance(inline, dict) and inline.get("data"):
                try:
                    data = base64.b64decode(inline["data"], validate=True)
                    image = await asyncio.to_thread(decode, data)
                except (binascii.Error, ValueError):
                    raise _no_image("Gemini returned an image that does not decode") from None
                mime = str(inline.get("mimeType") or inline.get("mime_type") or "image/png")
                return GeneratedImage(data, mime, *image.size, self.name, decoded=image)
        raise _no_image("Gemini answered without an image")

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        refs = await self._inline(request.reference_images)
        prompt = thumbnail_prompt(request.spec, references=len(refs))
        return await self._image(self._model(request.model), [{"text": prompt}, *refs],
                                 request.spec.aspect_ratio, request.spec.resolution,
                                 request.context)

    async def edit(self, request: EditRequest) -> GeneratedImage:
        refs = await self._inline(request.reference_images)
        source = {"inlineData": {"mimeType": request.source_mime_type,
                                 "data": base64.b64encode(request.source).decode()}}
        prompt = edit_prompt(request.prompt, references=len(refs))
        return await self._image(self._model(request.model), [{"text": prompt}, source, *refs],
                                 request.aspect_ratio, request.resolution, request.context)

    async def heatmap(self, request: EditRequest) -> GeneratedImage:
        source = {"inlineData": {"mimeType": request.source_mime_type,
                                 "data": base64.b64encode(request.source).decode()}}
        return await self._image(IMAGE_MODELS[1], [{"text": HEATMAP_PROMPT}, source],
                                 request.aspect_ratio, request.resolution, request.context)

    async def analyze_video(self, video_url: str, context: str) -> dict[str, Any]:
        body = {
            "contents": [{"role": "user", "parts": [
                {"fileData": {"fileUri": video_url, "mimeType": "video/*"}},
                {"text": VIDEO_PROMPT},
            ]}],
            "generationConfig": {"responseMimeType": "application/json",
                                 "responseSchema": ANALYTICS_SCHEMA},
        }
        text = "".join(str(p.get("text", "")) for p in _parts(
            await self._call(TEXT_MODEL, body, context)))
        try:
            return VideoAnalytics.model_validate(json.loads(text)).model_dump()
        except (ValueError, ValidationError):
            raise ProviderError("PROVIDER_BAD_OUTPUT",
                                "Gemini's analysis did not fit the expected fields",
                                retryable=False) from None

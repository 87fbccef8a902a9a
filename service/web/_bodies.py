"""Request bodies, validated strictly (wrong types are errors, not coerced); their JSON
schemas feed /openapi.json."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .._errors import ValidationFailed
from .._spec import MAX_VARIATIONS, AspectRatio, Resolution

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
Url = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://")]


class RequestBody(BaseModel):
    """A request body: unknown fields and wrong types are errors, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GenerateBody(RequestBody):
    """POST /v1/thumbnails"""

    title: str = Field(min_length=1, max_length=500)
    thumbnail_text: str | None = Field(default=None, max_length=200)
    emotion: str | None = Field(default=None, max_length=100)
    pose: str | None = Field(default=None, max_length=100)
    style: str | None = Field(default=None, max_length=200)
    palette: list[Annotated[str, Field(max_length=50)]] | None = Field(
        default=None, max_length=8
    )
    resolution: Resolution = "1K"
    aspect_ratio: AspectRatio = "16:9"
    variations: int = Field(default=1, ge=1, le=MAX_VARIATIONS)
    reference_images: list[Url] | None = Field(default=None, max_length=8)
    custom_style: str | None = Field(default=None, max_length=4000)
    model: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class EditBody(RequestBody):
    """POST /v1/thumbnails/{id}/edits"""

    prompt: str = Field(min_length=1, max_length=500)
    reference_images: list[Url] | None = Field(default=None, max_length=8)
    model: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")


class HeatmapBody(RequestBody):
    """POST /v1/heatmaps: exactly one of thumbnail_id, image_url, image_base64."""

    thumbnail_id: str | None = Field(default=None, max_length=36)
    image_url: Url | None = None
    # Size is checked on the decoded bytes (413 over 10 MB), not here.
    image_base64: str | None = None
    mime_type: Literal["image/png", "image/jpeg", "image/webp"] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HeatmapBody:
        given = [n for n in ("thumbnail_id", "image_url", "image_base64") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of thumbnail_id, image_url, image_base64")
        if self.image_base64 is not None:
            if self.mime_type is None:
                raise ValueError("image_base64 needs mime_type")
            if not _BASE64.fullmatch(self.image_base64):
                raise ValueError("image_base64 is not base64")
        return self


class VideoAnalysisBody(RequestBody):
    """POST /v1/videos/analyses"""

    video: str = Field(min_length=11, max_length=2048)


B = TypeVar("B", bound=RequestBody)


def parse(model: type[B], raw: bytes) -> B:
    """Validate a JSON body; 400 VALIDATION_ERROR naming the first bad field."""
    if not raw.strip():
        raise ValidationFailed("a JSON body is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first: dict[str, Any] = dict(exc.errors()[0])
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        if first.get("type") == "json_invalid":
            raise ValidationFailed("the body is not valid JSON") from None
        raise ValidationFailed(f"{where}: {first.get('msg', 'invalid')}") from None

"""Request bodies, validated strictly (wrong types are errors, not coerced); their JSON
schemas feed /openapi.json."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .._errors import ValidationFailed
from .._spec import MAX_VARIATIONS, AspectRatio, Resolution
from ..providers import IMAGE_MODELS, image_model

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
Url = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://")]
MAX_REFERENCE_IMAGES = 8
References = Annotated[list[Url], Field(max_length=MAX_REFERENCE_IMAGES)]


def _also(ours: str, viewbaits: str) -> Any:
    """Accept ViewBait's name of a field beside ours."""
    return AliasChoices(ours, viewbaits)


Palette = (Annotated[list[Annotated[str, Field(max_length=50)]], Field(max_length=8)]
           | Annotated[str, Field(max_length=200)])
ModelChoice = Annotated[str, Field(max_length=100, description=(
    "an image model: " + ", ".join(m.choice for m in IMAGE_MODELS) + " (or its model id)"))]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class RequestBody(BaseModel):
    """A request body: unknown fields and wrong types are errors, nothing is coerced;
    ViewBait's camelCase names are accepted beside ours, and `null` means "not given"
    (ViewBait's client sends both)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if _has_nul(data):
                # PostgreSQL text cannot hold it; refused here, it never reaches a query.
                raise ValueError("text must not contain NUL characters")
            return {k: v for k, v in data.items() if v is not None}
        return data

    @field_validator("model", mode="after", check_fields=False)
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        """A model choice, by its ViewBait name (`nano-banana-pro`); 400 for others."""
        return None if value is None else image_model(value).choice


class FaceCharacter(BaseModel):
    """One person's face references (ViewBait's `faceCharacters[]`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    images: list[Url] = Field(min_length=1, max_length=8)


class GenerateBody(RequestBody):
    """POST /v1/thumbnails (ViewBait's `POST /api/generate` body as it is, too)."""

    title: str = Field(min_length=1, max_length=500)
    thumbnail_text: str | None = Field(
        default=None, max_length=200, validation_alias=_also("thumbnail_text", "thumbnailText"))
    emotion: str | None = Field(default=None, max_length=100)
    pose: str | None = Field(default=None, max_length=100)
    style: str | None = Field(default=None, max_length=200)
    # Colour names or hex codes, or one palette name (ViewBait sends one string).
    palette: Palette | None = None
    resolution: Resolution = "1K"
    aspect_ratio: AspectRatio = Field(default="16:9",
                                      validation_alias=_also("aspect_ratio", "aspectRatio"))
    variations: int = Field(default=1, ge=1, le=MAX_VARIATIONS)
    reference_images: References | None = Field(
        default=None, validation_alias=_also("reference_images", "referenceImages"))
    # ViewBait's face references: images of one person each (or, deprecated, a flat list).
    face_characters: list[FaceCharacter] | None = Field(
        default=None, max_length=4, validation_alias=_also("face_characters", "faceCharacters"))
    face_images: References | None = Field(
        default=None, validation_alias=_also("face_images", "faceImages"))
    custom_style: str | None = Field(
        default=None, max_length=4000, validation_alias=_also("custom_style", "customStyle"))
    model: ModelChoice | None = Field(default=None, validation_alias=_also("model", "imageModel"))
    project_id: str | None = Field(default=None, max_length=36,
                                   validation_alias=_also("project_id", "projectId"))

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    def inputs(self) -> dict[str, Any]:
        """What the operation records, by our names; face references join the reference
        images (at most 8 in all)."""
        inputs = self.model_dump(exclude_none=True, exclude={"face_characters", "face_images"})
        faces = [url for c in self.face_characters or () for url in c.images]
        faces += self.face_images or []
        if faces:
            references = [*(self.reference_images or []), *faces]
            if len(references) > MAX_REFERENCE_IMAGES:
                raise ValidationFailed(
                    f"at most {MAX_REFERENCE_IMAGES} reference and face images in all"
                )
            inputs["reference_images"] = references
        return inputs


class EditBody(RequestBody):
    """POST /v1/thumbnails/{id}/edits (and ViewBait's `POST /api/edit` body)."""

    prompt: str = Field(min_length=1, max_length=500,
                        validation_alias=_also("prompt", "editPrompt"))
    reference_images: References | None = Field(
        default=None, validation_alias=_also("reference_images", "referenceImages"))
    model: ModelChoice | None = Field(default=None, validation_alias=_also("model", "imageModel"))
    # ViewBait's body names the source (ours has it in the path) and may carry a title.
    thumbnail_id: str | None = Field(default=None, max_length=36,
                                     validation_alias=_also("thumbnail_id", "thumbnailId"))
    title: str | None = Field(default=None, max_length=500)


class HeatmapBody(RequestBody):
    """POST /v1/heatmaps: one of thumbnail_id, image_url, image_base64 — or an inline
    image with the thumbnail_id it shows (then only an ownership check), as ViewBait's
    client sends it."""

    thumbnail_id: str | None = Field(default=None, max_length=36,
                                     validation_alias=_also("thumbnail_id", "thumbnailId"))
    image_url: Url | None = Field(default=None, validation_alias=_also("image_url", "imageUrl"))
    # Size is checked on the decoded bytes (413 over 10 MB), not here.
    image_base64: str | None = Field(
        default=None, validation_alias=_also("image_base64", "imageData"))
    mime_type: Literal["image/png", "image/jpeg", "image/webp"] | None = Field(
        default=None, validation_alias=_also("mime_type", "mimeType"))

    @model_validator(mode="after")
    def _one_source(self) -> HeatmapBody:
        given = {n for n in ("thumbnail_id", "image_url", "image_base64") if getattr(self, n)}
        if given not in ({"thumbnail_id"}, {"image_url"}, {"image_base64"},
                         {"image_base64", "thumbnail_id"}):
            raise ValueError("give one of thumbnail_id, image_url, image_base64 (an inline "
                             "image may come with the thumbnail_id it shows)")
        if self.image_base64 is not None:
            if self.mime_type is None:
                raise ValueError("image_base64 needs mime_type")
            if not _BASE64.fullmatch(self.image_base64):
                raise ValueError("image_base64 is not base64")
        return self


class VideoAnalysisBody(RequestBody):
    """POST /v1/videos/analyses"""

    video: str = Field(min_length=11, max_length=2048,
                       validation_alias=_also("video", "videoId"))


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

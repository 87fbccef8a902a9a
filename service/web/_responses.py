"""Response bodies: the models that build the answers and describe them in /openapi.json.

Answers are built by validating what the service has into these models and dumping only
what was set, so what a client receives and what the OpenAPI document promises cannot
drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._errors import ErrorInfo


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(_Answer):
    """Every error answer."""

    error: str = Field(description="a message for a person")
    code: str = Field(description="one of the contract's error codes")
    retryable: bool
    retry_after: int | None = Field(default=None, ge=1, description="seconds")

    @classmethod
    def of(cls, info: ErrorInfo) -> dict[str, Any]:
        """The body of an error answer described by `info`."""
        return cls(error=info.message, code=info.code, retryable=info.retryable,
                   retry_after=info.retry_after).model_dump(exclude_none=True)


class Step(_Answer):
    key: str = Field(examples=["v1/render"])
    status: Literal["pending", "running", "completed", "failed", "skipped"]
    attempts: int = Field(ge=0)


class Thumbnail(_Answer):
    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    image_url: str
    image_400w_url: str
    image_800w_url: str
    width: int
    height: int


class ThumbnailsResult(_Answer):
    """Of `thumbnail.generate`, and of `thumbnail.edit` (one thumbnail and its source)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    thumbnails: list[Thumbnail]
    credits_used: int
    credits_remaining: int
    source_thumbnail_id: str | None = None


class HeatmapResult(_Answer):
    model_config = ConfigDict(frozen=True, extra="allow")

    heatmap_url: str
    mime_type: str


class VideoAnalysisResult(_Answer):
    model_config = ConfigDict(frozen=True, extra="allow")

    analytics: dict[str, Any]


class RecordedError(_Answer):
    """A run's terminal error, as in its `error` event."""

    code: str
    message: str
    retryable: bool
    retry_after: int | None = None


class OperationSnapshot(_Answer):
    id: str
    kind: str
    status: Literal["pending", "running", "succeeded", "partial", "failed", "cancelled"]
    steps: list[Step]
    result: ThumbnailsResult | HeatmapResult | VideoAnalysisResult | None
    error: RecordedError | None
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    updated_at: str = Field(json_schema_extra={"format": "date-time"})


class Links(_Answer):
    self: str
    events: str = Field(description="works as is in `new EventSource(url)`: it carries a "
                        "short-lived token for this operation")


class Accepted(_Answer):
    operation_id: str
    status: str
    links: Links


class AccountBody(_Answer):
    user_id: str
    tier: Literal["free", "starter", "advanced", "pro"]
    credits_remaining: int = Field(ge=0)


class DevToken(_Answer):
    token: str


#: The models /openapi.json lists under `components.schemas`, by name.
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody, OperationSnapshot, Accepted, AccountBody, DevToken,
)

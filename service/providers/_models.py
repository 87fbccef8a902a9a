"""The image models users choose from, by ViewBait's names, and who serves each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class ImageModel:
    choice: str  # ViewBait's name of the choice
    provider: str  # an IMAGE_PROVIDERS name
    model_id: str  # the provider's model id


IMAGE_MODELS: Final = (
    ImageModel("nano-banana-pro", "gemini", "gemini-3-pro-image-preview"),
    ImageModel("nano-banana-2", "gemini", "gemini-3.1-flash-image-preview"),
    ImageModel("gpt-image-2", "openai", "gpt-image-2"),
)
_BY_NAME: Final = {
    **{m.choice: m for m in IMAGE_MODELS},
    **{m.model_id: m for m in IMAGE_MODELS},
}


def image_model(name: str) -> ImageModel:
    """The model a choice name (`nano-banana-pro`) or a model id names; ValueError for
    anything else."""
    try:
        return _BY_NAME[name]
    except KeyError:
        choices = ", ".join(m.choice for m in IMAGE_MODELS)
        raise ValueError(f"unknown image model {name!r}; one of {choices}") from None

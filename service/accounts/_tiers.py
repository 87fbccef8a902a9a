"""Tiers, prices and accounts as the gates and the operations see them, whichever books
they come from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .._errors import TierLimit
from .._spec import ASPECT_RATIOS, RESOLUTIONS


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    credits: int
    resolutions: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    max_variations: int
    heatmaps: bool
    video_analysis: bool
    #: Thumbnails of this tier are marked as watermarked (ViewBait's free tier).
    has_watermark: bool = False


TIERS: Final[Mapping[str, Tier]] = {
    "free": Tier("free", 10, ("1K",), ("16:9",), 1, False, False),
    "starter": Tier(
        "starter", 100, ("1K", "2K"), ("1:1", "3:2", "3:4", "9:16", "16:9"), 2, False, False
    ),
    "advanced": Tier("advanced", 300, RESOLUTIONS, ASPECT_RATIOS, 3, True, False),
    "pro": Tier("pro", 700, RESOLUTIONS, ASPECT_RATIOS, 4, True, True),
}
RESOLUTION_CREDITS: Final[Mapping[str, int]] = {"1K": 1, "2K": 2, "4K": 4}
EDIT_CREDITS: Final = 2


@dataclass(frozen=True, slots=True)
class Prices:
    """Credits of one thumbnail by resolution, and of one edit."""

    resolution_credits: Mapping[str, int] = field(
        default_factory=lambda: dict(RESOLUTION_CREDITS))
    edit_credits: int = EDIT_CREDITS

    def per_thumbnail(self, resolution: str) -> int:
        return self.resolution_credits[resolution]

    def generation(self, resolution: str, variations: int) -> int:
        return self.per_thumbnail(resolution) * variations


@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    tier: Tier
    credits_remaining: int


def check_generation_allowed(
    tier: Tier, *, resolution: str, aspect_ratio: str, variations: int
) -> None:
    """Tier gates of a generation (403 TIER_LIMIT naming what the tier allows)."""
    if resolution not in tier.resolutions:
        raise TierLimit(
            f"the {tier.name} tier allows resolutions {', '.join(tier.resolutions)}"
        )
    if aspect_ratio not in tier.aspect_ratios:
        raise TierLimit(
            f"the {tier.name} tier allows aspect ratios {', '.join(tier.aspect_ratios)}"
        )
    if variations > tier.max_variations:
        raise TierLimit(f"the {tier.name} tier allows up to {tier.max_variations} variations")

"""What a thumbnail can be: its resolutions and aspect ratios (one list, used by request
bodies, tiers and renderers alike), their pixel sizes, and the spec of one thumbnail."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

Resolution = Literal["1K", "2K", "4K"]
AspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]

RESOLUTIONS: Final[tuple[str, ...]] = get_args(Resolution)
ASPECT_RATIOS: Final[tuple[str, ...]] = get_args(AspectRatio)
MAX_VARIATIONS: Final = 4

_LONG_SIDE: Final = {"1K": 1280, "2K": 2560, "4K": 3840}


def image_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) for a resolution and aspect ratio; ValueError on unknown values.

    The long side is 1280 / 2560 / 3840 px for 1K / 2K / 4K and the short side follows the
    ratio, both rounded to even numbers (video encoders and chroma subsampling want them).
    """
    if resolution not in _LONG_SIDE:
        raise ValueError(f"unknown resolution {resolution!r}; expected one of {RESOLUTIONS}")
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}; expected one of {ASPECT_RATIOS}")
    long_side = _LONG_SIDE[resolution]
    ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
    short_side = 2 * round(long_side * min(ratio_w, ratio_h) / max(ratio_w, ratio_h) / 2)
    return (long_side, short_side) if ratio_w >= ratio_h else (short_side, long_side)


def format_of(width: int, height: int) -> tuple[str, str]:
    """(resolution, aspect ratio) closest to an image of `width` × `height`: the ratio
    nearest to its own (compared as logarithms, so 9:16 and 16:9 are equally far from
    1:1), and the smallest size class whose long side covers it (4K at most)."""
    if width <= 0 or height <= 0:
        raise ValueError("an image has a positive width and height")
    own = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(math.log(w / h) - own)

    aspect_ratio = min(ASPECT_RATIOS, key=distance)
    long_side = max(width, height)
    resolution = next((r for r in RESOLUTIONS if _LONG_SIDE[r] >= long_side), RESOLUTIONS[-1])
    return resolution, aspect_ratio


@dataclass(frozen=True, slots=True)
class ThumbnailSpec:
    """One thumbnail to make; the fields mirror `POST /v1/thumbnails`."""

    title: str
    thumbnail_text: str | None = None
    emotion: str | None = None
    pose: str | None = None
    style: str | None = None
    # Colour names or hex codes (["#ff0044", "navy"]) or a named palette ("warm").
    palette: list[str] | str | None = None
    custom_style: str | None = None
    resolution: str = "1K"
    aspect_ratio: str = "16:9"
    # 1..4; each variation has its own layout and colour order.
    variation: int = 1

    def __post_init__(self) -> None:
        image_size(self.resolution, self.aspect_ratio)
        if not 1 <= self.variation <= MAX_VARIATIONS:
            raise ValueError(f"variation must be 1..{MAX_VARIATIONS}, got {self.variation}")

"""Colours of the `local` provider's cards: the request's palette (names, hex codes or a
named palette), or one derived from the title and emotion, in the variation's order."""

from __future__ import annotations

import colorsys
import hashlib
import re
from collections.abc import Sequence
from typing import Literal

from PIL import ImageColor

from ..._spec import ThumbnailSpec
from ._text import RGB

_NAMED_PALETTES: dict[str, tuple[str, ...]] = {
    "warm": ("#ff6b1a", "#b3122e", "#ffd23f"),
    "cool": ("#1e90ff", "#0b1f4d", "#4dffd2"),
    "pastel": ("#ffb3c6", "#a0c4ff", "#fdffb6"),
    "neon": ("#ff00e6", "#14002e", "#00ffea"),
    "dark": ("#1c1c28", "#000000", "#ff3355"),
    "vibrant": ("#ff0054", "#390099", "#ffbd00"),
    "sunset": ("#ff7e5f", "#6a0572", "#feb47b"),
    "ocean": ("#0077b6", "#03045e", "#90e0ef"),
    "forest": ("#2d6a4f", "#081c15", "#b7e4c7"),
    "earth": ("#a0522d", "#3b2314", "#e9c46a"),
    "monochrome": ("#808080", "#111111", "#f0f0f0"),
}

Expression = Literal[
    "happy", "excited", "surprised", "angry", "sad", "scared", "calm", "curious", "love", "neutral"
]

# Keyword → (expression, base hue): the mood colours a derived palette as well as the face.
_MOODS: tuple[tuple[tuple[str, ...], Expression, float], ...] = (
    (("excit", "hype", "thrill", "epic"), "excited", 0.07),
    (("happy", "joy", "fun", "smil", "laugh", "glad"), "happy", 0.13),
    (("surpris", "shock", "wow", "amaz", "astonish"), "surprised", 0.85),
    (("angry", "anger", "rage", "mad", "furious"), "angry", 0.0),
    (("sad", "cry", "upset", "disappoint", "sorrow"), "sad", 0.6),
    (("scar", "fear", "afraid", "horror", "terrif"), "scared", 0.76),
    (("calm", "relax", "chill", "peace", "serene"), "calm", 0.46),
    (("curio", "confus", "think", "myster", "wonder"), "curious", 0.55),
    (("love", "heart", "romant"), "love", 0.95),
)

WHITE: RGB = (255, 255, 255)
FACE_YELLOW: RGB = (255, 204, 34)
_HEX_WITHOUT_HASH = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")


def parse_colour(value: object) -> RGB | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _HEX_WITHOUT_HASH.fullmatch(text):
        text = "#" + text
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        return None
    # Pillow parses "rgb(999,0,0)" and out-of-range hsl() without complaint; clamp them.
    r, g, b = (max(0, min(255, int(v))) for v in rgb[:3])
    return (r, g, b)


def _requested_colours(palette: Sequence[str] | str | None) -> list[RGB]:
    """The palette's parseable colours; names Pillow cannot parse are dropped, not errors."""
    if palette is None:
        return []
    if isinstance(palette, str):
        named = _NAMED_PALETTES.get(palette.strip().lower())
        if named is not None:
            return [c for c in map(parse_colour, named) if c is not None]
        # A free-text palette ("red, navy") is read as a list of colour words.
        items: Sequence[object] = re.split(r"[,;/\s]+", palette)
    else:
        items = palette
    return [c for c in map(parse_colour, items) if c is not None]


def shade(colour: RGB, factor: float) -> RGB:
    """Darker for factor < 1, towards white for factor > 1."""
    if factor <= 1:
        return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))
    mix = min(factor - 1, 1.0)
    return (
        int(colour[0] + (255 - colour[0]) * mix),
        int(colour[1] + (255 - colour[1]) * mix),
        int(colour[2] + (255 - colour[2]) * mix),
    )


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def mood(emotion: str | None) -> tuple[Expression, float | None]:
    if not emotion:
        return "neutral", None
    lowered = emotion.lower()
    for keywords, expression, hue in _MOODS:
        if any(k in lowered for k in keywords):
            return expression, hue
    return "neutral", None


def digest(*parts: object) -> bytes:
    # sha256, not hash(): str hashes are salted per process and would break determinism.
    return hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()


def palette_of(spec: ThumbnailSpec) -> list[RGB]:
    """Three colours (two background, one accent), in the variation's order."""
    colours = _requested_colours(spec.palette)
    if not colours:
        _, mood_hue = mood(spec.emotion)
        seed = digest(spec.title, spec.emotion)
        jitter = (seed[0] / 255 - 0.5) * 0.12
        hue = mood_hue + jitter if mood_hue is not None else seed[1] / 255
        colours = [hsv(hue, 0.85, 0.95), hsv(hue + 0.06, 0.9, 0.38), hsv(hue + 0.5, 0.9, 1.0)]
    elif len(colours) == 1:
        # One colour asked for: keep the whole card in its family rather than inventing others.
        colours = [colours[0], shade(colours[0], 0.55), shade(colours[0], 1.35)]
    elif len(colours) == 2:
        colours = [colours[0], colours[1], shade(colours[0], 1.5)]
    style = f"{spec.style or ''} {spec.custom_style or ''}".lower()
    if "dark" in style or "noir" in style:
        colours = [shade(colours[0], 0.5), shade(colours[1], 0.4), colours[2]]
    elif "pastel" in style:
        colours = [shade(c, 1.45) for c in colours]
    # The variation rotates which colour leads so variations look different even with the
    # same palette; the accent stays last-ish so faces and text keep contrast.
    order = ((0, 1, 2), (1, 0, 2), (0, 2, 1), (2, 1, 0))[spec.variation - 1]
    return [colours[i % len(colours)] for i in order]

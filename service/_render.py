"""The `local` provider's drawing: a YouTube-style title card rendered offline with Pillow.

`render_thumbnail` turns a `ThumbnailSpec` into PNG bytes at `image_size(resolution,
aspect_ratio)`: a gradient-and-shapes background from the request's palette (or one derived
from the title and emotion), the thumbnail text large, bold and outlined, a smaller title line
and an emotion cue (a drawn face, or an arrow when no emotion was asked for). Everything that
looks random is seeded from a SHA-256 of the spec, so the same spec always gives the same bytes
and the four variations differ in layout, background and colour order.

The module is CPU-bound and synchronous; callers run it in a worker thread.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageColor, ImageDraw

from ._text import BLACK, RGB, Align, draw_text_block, fit_text

RESOLUTIONS = ("1K", "2K", "4K")
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

_LONG_SIDE = {"1K": 1280, "2K": 2560, "4K": 3840}
_MAX_VARIATIONS = 4
_MAX_TEXT_CHARS = 1000
# Level 4 keeps a 4K card's encoding well under a second; the flat colours compress fine.
_PNG_COMPRESS_LEVEL = 4

Box = tuple[float, float, float, float]


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


@dataclass(frozen=True, slots=True)
class ThumbnailSpec:
    """What the `local` provider draws; the fields mirror `POST /v1/thumbnails`."""

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
        if not 1 <= self.variation <= _MAX_VARIATIONS:
            raise ValueError(f"variation must be 1..{_MAX_VARIATIONS}, got {self.variation}")


# --- colours -------------------------------------------------------------------------------

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

_WHITE: RGB = (255, 255, 255)
_FACE_YELLOW: RGB = (255, 204, 34)
_HEX_WITHOUT_HASH = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")


def _parse_colour(value: object) -> RGB | None:
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
            return [c for c in map(_parse_colour, named) if c is not None]
        # A free-text palette ("red, navy") is read as a list of colour words.
        items: Sequence[object] = re.split(r"[,;/\s]+", palette)
    else:
        items = palette
    return [c for c in map(_parse_colour, items) if c is not None]


def _shade(colour: RGB, factor: float) -> RGB:
    """Darker for factor < 1, towards white for factor > 1."""
    if factor <= 1:
        return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))
    mix = min(factor - 1, 1.0)
    return (
        int(colour[0] + (255 - colour[0]) * mix),
        int(colour[1] + (255 - colour[1]) * mix),
        int(colour[2] + (255 - colour[2]) * mix),
    )


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _mood(emotion: str | None) -> tuple[Expression, float | None]:
    if not emotion:
        return "neutral", None
    lowered = emotion.lower()
    for keywords, expression, hue in _MOODS:
        if any(k in lowered for k in keywords):
            return expression, hue
    return "neutral", None


def _digest(*parts: object) -> bytes:
    # sha256, not hash(): str hashes are salted per process and would break determinism.
    return hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()


def _palette(spec: ThumbnailSpec) -> list[RGB]:
    """Three colours (two background, one accent), in the variation's order."""
    colours = _requested_colours(spec.palette)
    if not colours:
        _, mood_hue = _mood(spec.emotion)
        seed = _digest(spec.title, spec.emotion)
        jitter = (seed[0] / 255 - 0.5) * 0.12
        hue = mood_hue + jitter if mood_hue is not None else seed[1] / 255
        colours = [_hsv(hue, 0.85, 0.95), _hsv(hue + 0.06, 0.9, 0.38), _hsv(hue + 0.5, 0.9, 1.0)]
    elif len(colours) == 1:
        # One colour asked for: keep the whole card in its family rather than inventing others.
        colours = [colours[0], _shade(colours[0], 0.55), _shade(colours[0], 1.35)]
    elif len(colours) == 2:
        colours = [colours[0], colours[1], _shade(colours[0], 1.5)]
    style = f"{spec.style or ''} {spec.custom_style or ''}".lower()
    if "dark" in style or "noir" in style:
        colours = [_shade(colours[0], 0.5), _shade(colours[1], 0.4), colours[2]]
    elif "pastel" in style:
        colours = [_shade(c, 1.45) for c in colours]
    # The variation rotates which colour leads so variations look different even with the
    # same palette; the accent stays last-ish so faces and text keep contrast.
    order = ((0, 1, 2), (1, 0, 2), (0, 2, 1), (2, 1, 0))[spec.variation - 1]
    return [colours[i % len(colours)] for i in order]


# --- layout --------------------------------------------------------------------------------

Background = Literal["diagonal", "radial", "split", "bokeh"]


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where things go, as fractions of the width and height."""

    background: Background
    text_box: Box
    align: Align
    cue_centre: tuple[float, float]
    cue_radius: float  # of min(width, height)
    band_at_top: bool


_WIDE_LAYOUTS = (
    _Layout("diagonal", (0.05, 0.07, 0.62, 0.82), "left", (0.81, 0.45), 0.27, False),
    _Layout("radial", (0.40, 0.07, 0.95, 0.82), "right", (0.20, 0.46), 0.28, False),
    _Layout("split", (0.05, 0.17, 0.95, 0.60), "center", (0.50, 0.80), 0.17, True),
    _Layout("bokeh", (0.05, 0.30, 0.66, 0.93), "left", (0.83, 0.36), 0.23, True),
)
_TALL_LAYOUTS = (
    _Layout("diagonal", (0.06, 0.05, 0.94, 0.52), "center", (0.50, 0.72), 0.25, False),
    _Layout("radial", (0.06, 0.44, 0.94, 0.86), "center", (0.50, 0.24), 0.28, False),
    _Layout("split", (0.06, 0.15, 0.94, 0.58), "left", (0.70, 0.78), 0.26, True),
    _Layout("bokeh", (0.06, 0.50, 0.94, 0.94), "right", (0.30, 0.30), 0.28, True),
)
_BAND_FRACTION = 0.12


# --- background and cues -------------------------------------------------------------------


def _gradient_mask(
    size: tuple[int, int], kind: Background, centre: tuple[float, float]
) -> Image.Image:
    # Computed small and scaled up bilinearly: smooth, and cheap even at 4K.
    width, height = size
    small_w = 96
    small_h = max(2, round(small_w * height / width))
    values: list[int] = []
    for y in range(small_h):
        fy = y / (small_h - 1)
        for x in range(small_w):
            fx = x / (small_w - 1)
            if kind == "radial":
                distance = math.hypot((fx - centre[0]) * width / height, fy - centre[1])
                t = min(1.0, distance / 1.1)
            elif kind == "bokeh":
                t = fx
            else:
                t = (fx + fy) / 2
            values.append(round(t * 255))
    mask = Image.new("L", (small_w, small_h))
    mask.putdata(values)
    return mask.resize(size, Image.Resampling.BILINEAR)


def _background(
    size: tuple[int, int], layout: _Layout, colours: list[RGB], rng: random.Random, plain: bool
) -> Image.Image:
    width, height = size
    first, second, accent = colours
    mask = _gradient_mask(size, layout.background, layout.cue_centre)
    image = Image.composite(Image.new("RGB", size, second), Image.new("RGB", size, first), mask)
    if plain:
        return image
    draw = ImageDraw.Draw(image)
    cx, cy = layout.cue_centre[0] * width, layout.cue_centre[1] * height
    if layout.background == "diagonal":
        # Two speed stripes across the card, in a tint between background and accent.
        for offset, tint in ((0.55, 0.35), (0.72, 0.2)):
            x = offset * width
            band = 0.07 * width
            draw.polygon(
                [
                    (x, 0),
                    (x + band, 0),
                    (x + band - 0.4 * width, height),
                    (x - 0.4 * width, height),
                ],
                fill=_mix(first, accent, tint),
            )
    elif layout.background == "radial":
        # Sunburst rays from the cue, the classic "look here" of thumbnails.
        rays = 14
        reach = 2 * math.hypot(width, height)
        start = rng.random() * math.tau
        ray_colour = _mix(first, second, 0.45)
        for ray in range(rays):
            a0 = start + ray * math.tau / rays
            a1 = a0 + math.tau / rays / 2
            draw.polygon(
                [
                    (cx, cy),
                    (cx + reach * math.cos(a0), cy + reach * math.sin(a0)),
                    (cx + reach * math.cos(a1), cy + reach * math.sin(a1)),
                ],
                fill=ray_colour,
            )
    elif layout.background == "split":
        slant = 0.18 * width
        cut = (0.35 + rng.random() * 0.3) * height
        draw.polygon(
            [(0, cut + slant / 2), (width, cut - slant / 2), (width, height), (0, height)],
            fill=second,
        )
        edge = max(3, round(0.012 * height))
        draw.line([(0, cut + slant / 2), (width, cut - slant / 2)], fill=accent, width=edge)
    else:
        short = min(width, height)
        for _ in range(9):
            r = (0.05 + rng.random() * 0.16) * short
            x, y = rng.random() * width, rng.random() * height
            draw.ellipse(
                (x - r, y - r, x + r, y + r), fill=_mix(first, accent, 0.15 + 0.3 * rng.random())
            )
    return image


def _draw_face(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, expression: Expression, glow: RGB
) -> None:
    line = max(2, round(r * 0.07))
    draw.ellipse((cx - r * 1.18, cy - r * 1.18, cx + r * 1.18, cy + r * 1.18), fill=glow)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_FACE_YELLOW, outline=BLACK, width=line)
    dark = (40, 24, 10)
    eye_y, eye_dx = cy - 0.22 * r, 0.36 * r
    for side in (-1, 1):
        ex = cx + side * eye_dx
        if expression in ("surprised", "scared"):
            draw.ellipse(
                (ex - 0.17 * r, eye_y - 0.2 * r, ex + 0.17 * r, eye_y + 0.2 * r),
                fill=_WHITE,
                outline=dark,
                width=line,
            )
            draw.ellipse(
                (ex - 0.07 * r, eye_y - 0.07 * r, ex + 0.07 * r, eye_y + 0.07 * r), fill=dark
            )
        elif expression == "love":
            h = 0.14 * r
            draw.ellipse((ex - 2 * h, eye_y - h, ex, eye_y + h), fill=(220, 20, 60))
            draw.ellipse((ex, eye_y - h, ex + 2 * h, eye_y + h), fill=(220, 20, 60))
            draw.polygon(
                [
                    (ex - 1.95 * h, eye_y + 0.3 * h),
                    (ex + 1.95 * h, eye_y + 0.3 * h),
                    (ex, eye_y + 2.3 * h),
                ],
                fill=(220, 20, 60),
            )
        elif expression == "calm":
            draw.arc(
                (ex - 0.15 * r, eye_y - 0.12 * r, ex + 0.15 * r, eye_y + 0.12 * r),
                10,
                170,
                fill=dark,
                width=line,
            )
        else:
            draw.ellipse(
                (ex - 0.1 * r, eye_y - 0.15 * r, ex + 0.1 * r, eye_y + 0.15 * r), fill=dark
            )
        # Brows slant to say what the mouth alone cannot: anger down, worry up.
        brow_y = eye_y - 0.32 * r
        inner, outer = cx + side * 0.15 * r, cx + side * 0.55 * r
        if expression == "angry":
            draw.line(
                [(outer, brow_y - 0.08 * r), (inner, brow_y + 0.1 * r)], fill=dark, width=line * 2
            )
        elif expression in ("sad", "scared"):
            draw.line(
                [(outer, brow_y + 0.08 * r), (inner, brow_y - 0.1 * r)], fill=dark, width=line * 2
            )
        elif expression == "curious" and side == 1:
            draw.line(
                [(inner, brow_y - 0.12 * r), (outer, brow_y - 0.2 * r)], fill=dark, width=line * 2
            )
    mouth_w = 0.46 * r
    if expression in ("happy", "love"):
        draw.chord((cx - mouth_w, cy - 0.05 * r, cx + mouth_w, cy + 0.62 * r), 0, 180, fill=dark)
    elif expression == "excited":
        draw.chord((cx - 0.58 * r, cy - 0.1 * r, cx + 0.58 * r, cy + 0.75 * r), 0, 180, fill=dark)
        draw.ellipse(
            (cx - 0.22 * r, cy + 0.45 * r, cx + 0.22 * r, cy + 0.7 * r), fill=(230, 80, 90)
        )
    elif expression == "surprised":
        draw.ellipse((cx - 0.18 * r, cy + 0.18 * r, cx + 0.18 * r, cy + 0.66 * r), fill=dark)
    elif expression in ("angry", "sad"):
        draw.arc(
            (cx - 0.4 * r, cy + 0.3 * r, cx + 0.4 * r, cy + 0.9 * r),
            200,
            340,
            fill=dark,
            width=line * 2,
        )
        if expression == "sad":
            tx, ty = cx + eye_dx, eye_y + 0.35 * r
            draw.ellipse(
                (tx - 0.08 * r, ty - 0.05 * r, tx + 0.08 * r, ty + 0.22 * r), fill=(70, 160, 255)
            )
    elif expression == "scared":
        points = [
            (cx - mouth_w + i * mouth_w / 3, cy + (0.42 if i % 2 else 0.32) * r) for i in range(7)
        ]
        draw.line(points, fill=dark, width=line * 2)
    elif expression == "calm":
        draw.arc(
            (cx - 0.35 * r, cy, cx + 0.35 * r, cy + 0.5 * r), 20, 160, fill=dark, width=line * 2
        )
    else:
        draw.line(
            [(cx - 0.3 * r, cy + 0.42 * r), (cx + 0.3 * r, cy + 0.36 * r)],
            fill=dark,
            width=line * 2,
        )


def _draw_arrow(
    draw: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    r: float,
    towards: tuple[float, float],
    colour: RGB,
) -> None:
    angle = math.atan2(towards[1] - cy, towards[0] - cx)
    # An arrow pointing along +x, then rotated to face the text.
    shape = [
        (-1.0, -0.22),
        (0.2, -0.22),
        (0.2, -0.55),
        (1.0, 0.0),
        (0.2, 0.55),
        (0.2, 0.22),
        (-1.0, 0.22),
    ]
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    points = [
        (cx + r * (x * cos_a - y * sin_a), cy + r * (x * sin_a + y * cos_a)) for x, y in shape
    ]
    draw.polygon(points, fill=colour, outline=BLACK, width=max(2, round(r * 0.06)))


# --- the card ------------------------------------------------------------------------------


def render_thumbnail(spec: ThumbnailSpec) -> bytes:
    """A YouTube-style title card for `spec` as PNG bytes at `image_size(...)`; deterministic."""
    width, height = image_size(spec.resolution, spec.aspect_ratio)
    layouts = _WIDE_LAYOUTS if width >= 1.15 * height else _TALL_LAYOUTS
    layout = layouts[spec.variation - 1]
    colours = _palette(spec)
    # The palette is left out of the seed: it only colours the card, so a palette of names
    # Pillow cannot parse draws exactly what no palette draws.
    rng = random.Random(
        _digest(
            spec.title,
            spec.thumbnail_text,
            spec.emotion,
            spec.pose,
            spec.style,
            spec.custom_style,
            spec.variation,
        )
    )
    style = f"{spec.style or ''} {spec.custom_style or ''}".lower()
    image = _background((width, height), layout, colours, rng, plain="minimal" in style)
    draw = ImageDraw.Draw(image)
    short = min(width, height)

    # The title band: darkened in place, which is cheaper than alpha compositing a layer.
    # Sized by the short side so a portrait card's band does not eat a fifth of it.
    band_h = round(_BAND_FRACTION * short)
    band_y = 0 if layout.band_at_top else height - band_h
    # Capped far beyond what fits at the smallest size, so a huge text cannot make fitting slow.
    main_text = ((spec.thumbnail_text or "").strip() or spec.title.strip())[:_MAX_TEXT_CHARS]
    # Without a thumbnail text the title is the big text; repeating it small would be noise.
    title_line = spec.title.strip()[:_MAX_TEXT_CHARS] if (spec.thumbnail_text or "").strip() else ""
    if title_line:
        band_box = (0, band_y, width, band_y + band_h)
        band = image.crop(band_box)
        image.paste(Image.blend(band, Image.new("RGB", band.size, BLACK), 0.55), band_box[:2])
        pad = round(0.03 * width)
        fitted = fit_text(
            title_line,
            width - 2 * pad,
            band_h * 0.9,
            max_lines=2,
            min_size=max(8, round(band_h * 0.22)),
            max_size=round(band_h * 0.55),
        )
        draw_text_block(
            draw,
            fitted,
            (pad, band_y, width - pad, band_y + band_h),
            "left",
            fill=_WHITE,
            outline=_mix(colours[1], BLACK, 0.6),
            shadow=0,
        )

    cx, cy = layout.cue_centre[0] * width, layout.cue_centre[1] * height
    # Clamped so the cue and its glow stay on the card at every aspect ratio.
    room = min(cx, width - cx, cy, height - cy) - 0.02 * short
    radius = max(1.0, min(layout.cue_radius * short, room / 1.18))
    x0, y0, x1, y1 = layout.text_box
    text_box = (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))
    expression, _ = _mood(spec.emotion)
    if spec.emotion:
        _draw_face(draw, cx, cy, radius, expression, glow=colours[2])
    pointing = "point" in (spec.pose or "").lower()
    if not spec.emotion or pointing:
        # No emotion to show: an arrow at the text is the other thumbnail staple.
        target = ((text_box[0] + text_box[2]) / 2, (text_box[1] + text_box[3]) / 2)
        arrow_r = radius * (0.55 if spec.emotion else 0.9)
        ax = cx if not spec.emotion else cx + math.copysign(radius * 0.9, target[0] - cx)
        ay = cy if not spec.emotion else cy + radius * 1.05
        _draw_arrow(draw, ax, ay, arrow_r, target, colours[2])

    if main_text:
        box_w, box_h = text_box[2] - text_box[0], text_box[3] - text_box[1]
        fitted = fit_text(
            main_text.upper(),
            box_w,
            box_h,
            max_lines=4,
            min_size=max(10, round(0.04 * short)),
            max_size=min(round(0.45 * box_h), round(0.24 * short)),
        )
        # Yellow on alternate variations: the two fills that stay readable on any background.
        fill = _WHITE if spec.variation % 2 else (255, 230, 0)
        draw_text_block(
            draw,
            fitted,
            text_box,
            layout.align,
            fill=fill,
            outline=BLACK,
            shadow=max(2, round(fitted.stroke * 0.8)),
        )

    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return out.getvalue()

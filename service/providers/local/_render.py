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

import io
import math
import random
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageDraw

from ..._spec import ThumbnailSpec, image_size
from ._colours import WHITE, digest, mix, mood, palette_of
from ._cues import draw_arrow, draw_face
from ._text import BLACK, RGB, Align, draw_text_block, fit_text

_MAX_TEXT_CHARS = 1000
# Level 4 keeps a 4K card's encoding well under a second; the flat colours compress fine.
_PNG_COMPRESS_LEVEL = 4

Box = tuple[float, float, float, float]


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
                fill=mix(first, accent, tint),
            )
    elif layout.background == "radial":
        # Sunburst rays from the cue, the classic "look here" of thumbnails.
        rays = 14
        reach = 2 * math.hypot(width, height)
        start = rng.random() * math.tau
        ray_colour = mix(first, second, 0.45)
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
                (x - r, y - r, x + r, y + r), fill=mix(first, accent, 0.15 + 0.3 * rng.random())
            )
    return image


# --- the card ------------------------------------------------------------------------------


def render_thumbnail(spec: ThumbnailSpec) -> bytes:
    """A YouTube-style title card for `spec` as PNG bytes at `image_size(...)`; deterministic."""
    width, height = image_size(spec.resolution, spec.aspect_ratio)
    layouts = _WIDE_LAYOUTS if width >= 1.15 * height else _TALL_LAYOUTS
    layout = layouts[spec.variation - 1]
    colours = palette_of(spec)
    # The palette is left out of the seed: it only colours the card, so a palette of names
    # Pillow cannot parse draws exactly what no palette draws.
    rng = random.Random(digest(spec.title, spec.thumbnail_text, spec.emotion, spec.pose,
                               spec.style, spec.custom_style, spec.variation))
    style = f"{spec.style or ''} {spec.custom_style or ''}".lower()
    image = _background((width, height), layout, colours, rng, plain="minimal" in style)
    draw = ImageDraw.Draw(image)
    # Capped far beyond what fits at the smallest size, so a huge text cannot make fitting slow.
    main_text = ((spec.thumbnail_text or "").strip() or spec.title.strip())[:_MAX_TEXT_CHARS]
    # Without a thumbnail text the title is the big text; repeating it small would be noise.
    if (spec.thumbnail_text or "").strip():
        _draw_title_band(image, draw, layout, spec.title.strip()[:_MAX_TEXT_CHARS], colours)
    x0, y0, x1, y1 = layout.text_box
    text_box = (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))
    _draw_cue(draw, (width, height), layout, spec, text_box, colours[2])
    if main_text:
        # Yellow on alternate variations: the two fills that stay readable on any background.
        fill = WHITE if spec.variation % 2 else (255, 230, 0)
        _draw_main_text(draw, main_text, text_box, layout.align, fill, min(width, height))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return out.getvalue()


def _draw_title_band(
    image: Image.Image, draw: ImageDraw.ImageDraw, layout: _Layout, title: str,
    colours: list[RGB],
) -> None:
    """The title, small, on a darkened band at the card's top or bottom."""
    if not title:
        return
    width, height = image.size
    # Darkened in place, which is cheaper than alpha compositing a layer. Sized by the short
    # side so a portrait card's band does not eat a fifth of it.
    band_h = round(_BAND_FRACTION * min(width, height))
    band_y = 0 if layout.band_at_top else height - band_h
    band_box = (0, band_y, width, band_y + band_h)
    band = image.crop(band_box)
    image.paste(Image.blend(band, Image.new("RGB", band.size, BLACK), 0.55), band_box[:2])
    pad = round(0.03 * width)
    fitted = fit_text(title, width - 2 * pad, band_h * 0.9, max_lines=2,
                      min_size=max(8, round(band_h * 0.22)), max_size=round(band_h * 0.55))
    draw_text_block(draw, fitted, (pad, band_y, width - pad, band_y + band_h), "left",
                    fill=WHITE, outline=mix(colours[1], BLACK, 0.6), shadow=0)


def _draw_cue(
    draw: ImageDraw.ImageDraw, size: tuple[int, int], layout: _Layout, spec: ThumbnailSpec,
    text_box: tuple[int, int, int, int], accent: RGB,
) -> None:
    """The face of the asked-for emotion, and/or an arrow at the text."""
    width, height = size
    short = min(width, height)
    cx, cy = layout.cue_centre[0] * width, layout.cue_centre[1] * height
    # Clamped so the cue and its glow stay on the card at every aspect ratio.
    room = min(cx, width - cx, cy, height - cy) - 0.02 * short
    radius = max(1.0, min(layout.cue_radius * short, room / 1.18))
    expression, _ = mood(spec.emotion)
    if spec.emotion:
        draw_face(draw, cx, cy, radius, expression, glow=accent)
    pointing = "point" in (spec.pose or "").lower()
    if not spec.emotion or pointing:
        # No emotion to show: an arrow at the text is the other thumbnail staple.
        target = ((text_box[0] + text_box[2]) / 2, (text_box[1] + text_box[3]) / 2)
        arrow_r = radius * (0.55 if spec.emotion else 0.9)
        ax = cx if not spec.emotion else cx + math.copysign(radius * 0.9, target[0] - cx)
        ay = cy if not spec.emotion else cy + radius * 1.05
        draw_arrow(draw, ax, ay, arrow_r, target, accent)


def _draw_main_text(
    draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], align: Align,
    fill: RGB, short: int,
) -> None:
    """The thumbnail text, as large as fits in `box`, outlined."""
    box_w, box_h = box[2] - box[0], box[3] - box[1]
    fitted = fit_text(text.upper(), box_w, box_h, max_lines=4,
                      min_size=max(10, round(0.04 * short)),
                      max_size=min(round(0.45 * box_h), round(0.24 * short)))
    draw_text_block(draw, fitted, box, align, fill=fill, outline=BLACK,
                    shadow=max(2, round(fitted.stroke * 0.8)))

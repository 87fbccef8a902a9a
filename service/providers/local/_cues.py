"""The emotion cue of a card: a drawn face whose eyes, brows and mouth show the asked-for
emotion, or an arrow pointing at the text."""

from __future__ import annotations

import math

from PIL import ImageDraw

from ._colours import FACE_YELLOW, WHITE, Expression
from ._text import BLACK, RGB

_DARK: RGB = (40, 24, 10)
_RED: RGB = (220, 20, 60)


def draw_face(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, expression: Expression, glow: RGB
) -> None:
    """A face of radius `r` at (cx, cy) on a glow of colour `glow`."""
    line = max(2, round(r * 0.07))
    draw.ellipse((cx - r * 1.18, cy - r * 1.18, cx + r * 1.18, cy + r * 1.18), fill=glow)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=FACE_YELLOW, outline=BLACK, width=line)
    eye_y = cy - 0.22 * r
    for side in (-1, 1):
        _draw_eye(draw, cx + side * 0.36 * r, eye_y, r, line, expression)
        _draw_brow(draw, cx, eye_y - 0.32 * r, r, line, side, expression)
    _draw_mouth(draw, cx, cy, r, line, expression)


def _draw_eye(
    draw: ImageDraw.ImageDraw, ex: float, ey: float, r: float, line: int, expression: Expression
) -> None:
    if expression in ("surprised", "scared"):
        draw.ellipse((ex - 0.17 * r, ey - 0.2 * r, ex + 0.17 * r, ey + 0.2 * r),
                     fill=WHITE, outline=_DARK, width=line)
        draw.ellipse((ex - 0.07 * r, ey - 0.07 * r, ex + 0.07 * r, ey + 0.07 * r), fill=_DARK)
    elif expression == "love":
        h = 0.14 * r
        draw.ellipse((ex - 2 * h, ey - h, ex, ey + h), fill=_RED)
        draw.ellipse((ex, ey - h, ex + 2 * h, ey + h), fill=_RED)
        draw.polygon(
            [(ex - 1.95 * h, ey + 0.3 * h), (ex + 1.95 * h, ey + 0.3 * h), (ex, ey + 2.3 * h)],
            fill=_RED,
        )
    elif expression == "calm":
        draw.arc((ex - 0.15 * r, ey - 0.12 * r, ex + 0.15 * r, ey + 0.12 * r), 10, 170,
                 fill=_DARK, width=line)
    else:
        draw.ellipse((ex - 0.1 * r, ey - 0.15 * r, ex + 0.1 * r, ey + 0.15 * r), fill=_DARK)


def _draw_brow(
    draw: ImageDraw.ImageDraw, cx: float, brow_y: float, r: float, line: int, side: int,
    expression: Expression,
) -> None:
    # Brows slant to say what the mouth alone cannot: anger down, worry up.
    inner, outer = cx + side * 0.15 * r, cx + side * 0.55 * r
    if expression == "angry":
        points = [(outer, brow_y - 0.08 * r), (inner, brow_y + 0.1 * r)]
    elif expression in ("sad", "scared"):
        points = [(outer, brow_y + 0.08 * r), (inner, brow_y - 0.1 * r)]
    elif expression == "curious" and side == 1:
        points = [(inner, brow_y - 0.12 * r), (outer, brow_y - 0.2 * r)]
    else:
        return
    draw.line(points, fill=_DARK, width=line * 2)


def _draw_mouth(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, line: int, expression: Expression
) -> None:
    mouth_w = 0.46 * r
    if expression in ("happy", "love"):
        draw.chord((cx - mouth_w, cy - 0.05 * r, cx + mouth_w, cy + 0.62 * r), 0, 180, fill=_DARK)
    elif expression == "excited":
        draw.chord((cx - 0.58 * r, cy - 0.1 * r, cx + 0.58 * r, cy + 0.75 * r), 0, 180,
                   fill=_DARK)
        draw.ellipse((cx - 0.22 * r, cy + 0.45 * r, cx + 0.22 * r, cy + 0.7 * r),
                     fill=(230, 80, 90))
    elif expression == "surprised":
        draw.ellipse((cx - 0.18 * r, cy + 0.18 * r, cx + 0.18 * r, cy + 0.66 * r), fill=_DARK)
    elif expression in ("angry", "sad"):
        draw.arc((cx - 0.4 * r, cy + 0.3 * r, cx + 0.4 * r, cy + 0.9 * r), 200, 340,
                 fill=_DARK, width=line * 2)
        if expression == "sad":  # a tear under the right eye
            tx, ty = cx + 0.36 * r, cy + 0.13 * r
            draw.ellipse((tx - 0.08 * r, ty - 0.05 * r, tx + 0.08 * r, ty + 0.22 * r),
                         fill=(70, 160, 255))
    elif expression == "scared":
        points = [
            (cx - mouth_w + i * mouth_w / 3, cy + (0.42 if i % 2 else 0.32) * r) for i in range(7)
        ]
        draw.line(points, fill=_DARK, width=line * 2)
    elif expression == "calm":
        draw.arc((cx - 0.35 * r, cy, cx + 0.35 * r, cy + 0.5 * r), 20, 160, fill=_DARK,
                 width=line * 2)
    else:
        draw.line([(cx - 0.3 * r, cy + 0.42 * r), (cx + 0.3 * r, cy + 0.36 * r)], fill=_DARK,
                  width=line * 2)


def draw_arrow(
    draw: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    r: float,
    towards: tuple[float, float],
    colour: RGB,
) -> None:
    """An arrow of half-length `r` centred at (cx, cy), pointing at `towards`."""
    angle = math.atan2(towards[1] - cy, towards[0] - cx)
    # An arrow pointing along +x, then rotated to face the text.
    shape = [(-1.0, -0.22), (0.2, -0.22), (0.2, -0.55), (1.0, 0.0), (0.2, 0.55), (0.2, 0.22),
             (-1.0, 0.22)]
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    points = [
        (cx + r * (x * cos_a - y * sin_a), cy + r * (x * sin_a + y * cos_a)) for x, y in shape
    ]
    draw.polygon(points, fill=colour, outline=BLACK, width=max(2, round(r * 0.06)))

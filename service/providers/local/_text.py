"""Fitting and drawing text on images: the largest size that wraps into a box, outlined
and shadowed (the local provider's cards and captions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from PIL import ImageDraw, ImageFont

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont | ImageFont.TransposedFont
Align = Literal["left", "center", "right"]

ELLIPSIS: Final = "…"
BLACK: RGB = (0, 0, 0)


def font(size: int) -> Font:
    # No system fonts can be assumed; Pillow ≥ 10.1 bundles a scalable one.
    return ImageFont.load_default(size=size)


def _stroke(size: int) -> int:
    return max(2, round(size * 0.09))


def _wrap(text: str, font: Font, width: float, stroke: int) -> list[str]:
    """Greedy word wrap by measured width; a word wider than a line is split by characters."""

    def fits(candidate: str) -> bool:
        return font.getlength(candidate) + 2 * stroke <= width

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ""
        for char in word:
            if current and not fits(current + char):
                lines.append(current)
                current = ""
            current += char
    if current:
        lines.append(current)
    return lines


def _line_height(font: Font, stroke: int) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent + 2 * stroke
    bbox = font.getbbox("Ag")
    return int(bbox[3] - bbox[1]) + 2 * stroke


@dataclass(frozen=True, slots=True)
class FittedText:
    font: Font
    lines: list[str]
    line_height: int
    stroke: int


def fit_text(
    text: str, width: float, height: float, *, max_lines: int, min_size: int, max_size: int
) -> FittedText:
    """The largest font size at which `text` wraps inside width × height in ≤ max_lines.

    When even min_size does not fit, the lines that fit are kept and the last one ends in
    an ellipsis: a thumbnail with a cut title beats one whose text runs off the card.
    """

    def attempt(size: int) -> FittedText:
        sized = font(size)
        stroke = _stroke(size)
        return FittedText(
            sized, _wrap(text, sized, width, stroke), _line_height(sized, stroke), stroke
        )

    def fits(fitted: FittedText) -> bool:
        return len(fitted.lines) <= max_lines and len(fitted.lines) * fitted.line_height <= height

    min_size = max(1, min(min_size, max_size))
    low, high = min_size, max_size
    best: FittedText | None = None
    # Binary search: text width grows monotonically with the font size.
    while low <= high:
        middle = (low + high) // 2
        fitted = attempt(middle)
        if fits(fitted):
            best, low = fitted, middle + 1
        else:
            high = middle - 1
    if best is not None:
        return best
    fitted = attempt(min_size)
    room = max(1, min(max_lines, int(height // fitted.line_height)))
    lines = fitted.lines[:room]
    last = lines[-1] if lines else ""
    while last and fitted.font.getlength(last + ELLIPSIS) + 2 * fitted.stroke > width:
        last = last[:-1]
    lines[-1:] = [last.rstrip() + ELLIPSIS]
    return FittedText(fitted.font, lines, fitted.line_height, fitted.stroke)


def draw_text_block(
    draw: ImageDraw.ImageDraw,
    fitted: FittedText,
    box: tuple[int, int, int, int],
    align: Align,
    *,
    fill: RGB,
    outline: RGB,
    shadow: int,
) -> None:
    x0, y0, x1, y1 = box
    top = y0 + (y1 - y0 - len(fitted.lines) * fitted.line_height) // 2
    # A slight emboldening stroke in the fill colour: the bundled font has no bold face.
    bold = max(1, fitted.stroke // 4)
    for index, line in enumerate(fitted.lines):
        line_width = fitted.font.getlength(line) + 2 * fitted.stroke
        if align == "left":
            x = float(x0)
        elif align == "right":
            x = x1 - line_width
        else:
            x = x0 + (x1 - x0 - line_width) / 2
        position = (x + fitted.stroke, top + index * fitted.line_height + fitted.stroke)
        if shadow:
            shadow_position = (position[0] + shadow, position[1] + shadow)
            draw.text(
                shadow_position,
                line,
                font=fitted.font,
                fill=BLACK,
                stroke_width=fitted.stroke,
                stroke_fill=BLACK,
            )
        draw.text(
            position,
            line,
            font=fitted.font,
            fill=fill,
            stroke_width=fitted.stroke,
            stroke_fill=outline,
        )
        draw.text(position, line, font=fitted.font, fill=fill, stroke_width=bold, stroke_fill=fill)

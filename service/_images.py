"""Image bytes: what they are (PNG, JPEG, WebP and their size) and their JPEG variants.

Pixels are bounded, not bytes: a 60 KB PNG can declare 8000 × 8000 pixels and cost
gigabytes once decoded. What an image is (format, size, frames) is read from its header
alone — cheap enough for the event loop and before any rate limit — and an image over
`MAX_PIXELS` or `MAX_SIDE`, or with more than one frame, is refused before anything
decodes it. Decoding (`decode`, `verify_image`, `make_variants`) is CPU work: callers
run it in a worker thread.
"""

from __future__ import annotations

import io
from typing import Final

from PIL import Image

#: Far beyond any thumbnail (4K is 3840 × 2160, 8.3 MP), far below what hurts.
MAX_PIXELS: Final = 40_000_000
MAX_SIDE: Final = 8192
_FORMATS: Final = ("PNG", "JPEG", "WEBP")
_JPEG_QUALITY: Final = 85
_WHITE = (255, 255, 255)


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than any thumbnail needs."""


def _header(data: bytes) -> Image.Image:
    """The image, opened lazily (nothing decoded): format, size and frames checked."""
    try:
        image = Image.open(io.BytesIO(data), formats=_FORMATS)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a PNG, JPEG or WebP image: {exc}") from exc
    width, height = image.size
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageTooLarge(
            f"the image is {width} × {height} pixels; at most {MAX_SIDE} a side and "
            f"{MAX_PIXELS // 1_000_000} megapixels are accepted"
        )
    if getattr(image, "n_frames", 1) > 1:
        raise ValueError("animated images are not accepted")
    return image


def decode(data: bytes) -> Image.Image:
    """The image, decoded in full (CPU work: call it in a worker thread); ValueError
    (ImageTooLarge over the caps) for anything but a PNG, JPEG or WebP image."""
    image = _header(data)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a PNG, JPEG or WebP image: {exc}") from exc
    return image


def verify_image(data: bytes) -> str:
    """The MIME type of PNG, JPEG or WebP bytes that decode in full (a worker thread's
    job); ValueError (ImageTooLarge over the caps) for anything else."""
    return _MIME_TYPES[str(decode(data).format)]


def make_variants(
    png: bytes | Image.Image, widths: tuple[int, ...] = (400, 800)
) -> dict[int, bytes]:
    """JPEG variants (quality 85) keyed by requested width, keeping the aspect ratio.

    Never enlarged: a source narrower than a width is kept at its own width. Accepts PNG,
    JPEG or WebP bytes, or such an image already decoded (`decode`); transparency is
    flattened onto white because JPEG has no alpha.
    """
    if any(w < 1 for w in widths):
        raise ValueError(f"variant widths must be positive, got {widths}")
    source = decode(png) if isinstance(png, bytes) else png
    if source.mode in ("RGBA", "LA") or (source.mode == "P" and "transparency" in source.info):
        rgba = source.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        source = flat
    elif source.mode != "RGB":
        source = source.convert("RGB")
    variants: dict[int, bytes] = {}
    for width in widths:
        target_w = min(width, source.width)
        target_h = max(1, round(source.height * target_w / source.width))
        resized = (
            source
            if target_w == source.width
            else source.resize((target_w, target_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
        )
        out = io.BytesIO()
        resized.save(out, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
        variants[width] = out.getvalue()
    return variants


def image_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG, JPEG or WebP bytes, from the header; ValueError for anything
    else (ImageTooLarge over the caps)."""
    return _header(data).size


_MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def image_format(data: bytes) -> str:
    """The MIME type of PNG, JPEG or WebP bytes, from the header; ValueError for anything
    else (ImageTooLarge over the caps)."""
    return _MIME_TYPES[str(_header(data).format)]

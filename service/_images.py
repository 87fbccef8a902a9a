"""Image bytes: what they are (PNG, JPEG, WebP and their size) and their JPEG variants."""

from __future__ import annotations

import io
from typing import Final

from PIL import Image

_JPEG_QUALITY: Final = 85
_WHITE = (255, 255, 255)


def _open(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP"))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a PNG, JPEG or WebP image: {exc}") from exc
    return image


def make_variants(png: bytes, widths: tuple[int, ...] = (400, 800)) -> dict[int, bytes]:
    """JPEG variants (quality 85) keyed by requested width, keeping the aspect ratio.

    Never enlarged: a source narrower than a width is kept at its own width. Accepts PNG,
    JPEG or WebP; transparency is flattened onto white because JPEG has no alpha.
    """
    if any(w < 1 for w in widths):
        raise ValueError(f"variant widths must be positive, got {widths}")
    source = _open(png)
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
    """(width, height) of PNG, JPEG or WebP bytes; ValueError for anything else."""
    return _open(data).size


_MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def image_format(data: bytes) -> str:
    """The MIME type of PNG, JPEG or WebP bytes; ValueError for anything else."""
    return _MIME_TYPES[str(_open(data).format)]

"""The local provider's edit: the instruction drawn as a caption band over the source,
with a light colour grade, so an edit visibly changes the thumbnail offline."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageEnhance

from ._text import draw_text_block, fit_text


def caption_image(source: bytes, instruction: str) -> bytes:
    """PNG bytes: `source` graded warmer and punchier, `instruction` in a band at the top."""
    with Image.open(io.BytesIO(source)) as opened:
        image = opened.convert("RGB")
    image = ImageEnhance.Contrast(ImageEnhance.Color(image).enhance(1.25)).enhance(1.1)
    width, height = image.size
    band = max(24, height // 6)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rectangle((0, 0, width, band), fill=(10, 10, 20, 170))
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    margin = max(8, width // 40)
    fitted = fit_text(
        instruction.strip().upper() or "EDIT", width - 2 * margin, band - margin,
        max_lines=2, min_size=max(8, band // 6), max_size=max(10, band // 2),
    )
    draw_text_block(
        ImageDraw.Draw(image), fitted, (margin, margin // 2, width - margin, band - margin // 2),
        "center", fill=(255, 230, 60), outline=(0, 0, 0), shadow=max(1, band // 30),
    )
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=4)
    return out.getvalue()

"""The local provider's attention heatmap: spectral-residual saliency (Hou & Zhang,
CVPR 2007) rendered as a colour overlay on the image.

The log-amplitude spectrum of an image, minus its local average, keeps what is
"unexpected" in the image; transformed back with the original phase it marks the regions
that draw the eye first.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

#: The largest heatmap drawn: a 4K thumbnail's long side.
_MAX_LONG_SIDE = 3840
_WORK_WIDTH = 96  # saliency is computed small (the map is smooth anyway), keeping the ratio
# Added to the amplitude before the log: exact zeros (flat synthetic areas) would otherwise
# become deep negative spikes that the residual turns into ghost hot spots.
_EPSILON = 1e-3


def saliency_map(image: Image.Image) -> np.ndarray:
    """Saliency in [0, 1] at the image's size (float32, height × width)."""
    gray = image.convert("L")
    height = max(8, round(_WORK_WIDTH * image.height / image.width))
    small = gray.resize((_WORK_WIDTH, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float64) / 255.0
    spectrum = np.fft.fft2(pixels)
    log_amplitude = np.log(np.abs(spectrum) + _EPSILON)
    phase = np.angle(spectrum)
    # Local average of the log spectrum: a 3×3 box filter (wrapping, like the spectrum).
    average = sum(
        np.roll(np.roll(log_amplitude, dy, axis=0), dx, axis=1)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ) / 9.0
    residual = log_amplitude - average
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    as_image = Image.fromarray(_normalised(saliency) * 255).convert("L")
    blurred = as_image.filter(ImageFilter.GaussianBlur(radius=_WORK_WIDTH / 32))
    full = blurred.resize(image.size, Image.Resampling.BICUBIC)
    return _normalised(np.asarray(full, dtype=np.float64)).astype(np.float32)


def _normalised(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _colour_ramp(values: np.ndarray) -> np.ndarray:
    """Blue → cyan → green → yellow → red, as uint8 RGB."""
    stops = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    colours = np.array(
        [[0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0]], dtype=np.float64
    )
    channels = [np.interp(values, stops, colours[:, c]).astype(np.uint8) for c in range(3)]
    return np.stack(channels, axis=-1)


def render_heatmap(data: bytes) -> bytes:
    """A PNG: the image under its saliency heatmap (hot = draws attention), at most 4K on
    its long side (a larger source is decoded reduced where its format allows: memory
    follows the output, not the source)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (_MAX_LONG_SIDE, _MAX_LONG_SIDE))
        opened.thumbnail((_MAX_LONG_SIDE, _MAX_LONG_SIDE), Image.Resampling.BILINEAR)
        image = opened.convert("RGB")
    saliency = saliency_map(image)
    overlay = Image.fromarray(_colour_ramp(saliency), "RGB")
    # More opaque where attention is high, so the picture stays readable elsewhere.
    alpha = Image.fromarray((80 + saliency * 120).astype(np.uint8), "L")
    composed = Image.composite(overlay, image, alpha)
    out = io.BytesIO()
    composed.save(out, "PNG", compress_level=4)
    return out.getvalue()

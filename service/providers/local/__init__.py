"""The offline `local` provider: title cards, captioned edits and saliency heatmaps drawn
with Pillow and NumPy."""

from ._provider import LocalProvider
from ._render import render_thumbnail

__all__ = ["LocalProvider", "render_thumbnail"]

"""What the service asks the AI providers, and the video-analysis answer schema."""

from __future__ import annotations

from typing import Any, Final

from .._spec import ThumbnailSpec


def thumbnail_prompt(spec: ThumbnailSpec, *, references: int = 0) -> str:
    lines = [
        "Design a high-click-through YouTube thumbnail for a video titled "
        f"\"{spec.title}\".",
        "Bold, uncluttered composition that reads at small sizes; strong contrast; one clear "
        "focal point; no watermarks, no borders, no UI chrome.",
    ]
    if spec.thumbnail_text:
        lines.append(f"Render this text on the thumbnail, large and legible: "
                     f"\"{spec.thumbnail_text}\".")
    else:
        lines.append("Do not add any text.")
    if spec.emotion:
        lines.append(f"The person's expression conveys {spec.emotion}.")
    if spec.pose:
        lines.append(f"Pose: {spec.pose}.")
    if spec.style:
        lines.append(f"Visual style: {spec.style}.")
    if spec.palette:
        palette = spec.palette if isinstance(spec.palette, str) else ", ".join(spec.palette)
        lines.append(f"Colour palette: {palette}.")
    if spec.custom_style:
        lines.append(f"Additional style notes: {spec.custom_style}")
    if references:
        lines.append(f"Use the {references} attached reference image(s) for the subject's "
                     "likeness and the overall look.")
    lines.append(f"Aspect ratio {spec.aspect_ratio}. Variation {spec.variation}: make it "
                 "distinct from other variations in layout and framing.")
    return "\n".join(lines)


def edit_prompt(instruction: str, *, references: int = 0) -> str:
    text = ("Edit the attached YouTube thumbnail as follows, keeping everything else "
            f"unchanged: {instruction}")
    if references:
        text += f"\nUse the {references} additional image(s) as references."
    return text


HEATMAP_PROMPT: Final = (
    "Create an eye-tracking style attention heatmap of the attached YouTube thumbnail: keep "
    "the image and overlay a smooth, semi-transparent colour gradient where red marks the "
    "regions a viewer notices first (faces, large text, strong contrast), through yellow "
    "and green, to blue for regions that draw little attention. Same size and framing; no "
    "legend, no text."
)

VIDEO_PROMPT: Final = """Analyze this YouTube video for its creator. Fill every field:
1. summary: 2-4 sentences on what the video is about.
2. topic: the main topic or category.
3. tone: the overall tone (e.g. educational, entertaining, dramatic).
4. key_moments: notable moments or segments that could inform thumbnails or titles, with rough timestamps.
5. hooks: what grabs attention in the first 30 seconds or in the content.
6. duration_estimate: approximate length or pacing.
7. thumbnail_appeal_notes: what visuals would make a thumbnail match the content.
8. content_type: one or two words (e.g. Tutorial, Vlog, Review).
9. characters: the main people, each with the parts of the video where they appear.
10. places: the main locations or settings, each with the parts where they appear.
Be concise and concrete."""  # noqa: E501

_SCENES: Final = {
    "type": "ARRAY",
    "items": {
        "type": "OBJECT",
        "properties": {"part": {"type": "STRING"}, "description": {"type": "STRING"}},
        "required": ["part", "description"],
    },
}
_NAMED: Final = {
    "type": "ARRAY",
    "items": {
        "type": "OBJECT",
        "properties": {"name": {"type": "STRING"}, "scenes": _SCENES},
        "required": ["name", "scenes"],
    },
}
ANALYTICS_FIELDS: Final = (
    "summary", "topic", "tone", "key_moments", "hooks", "duration_estimate",
    "thumbnail_appeal_notes", "content_type",
)
#: Gemini's `responseSchema` (OpenAPI subset) for the 10-field analytics.
ANALYTICS_SCHEMA: Final[dict[str, Any]] = {
    "type": "OBJECT",
    "properties": {
        **{name: {"type": "STRING"} for name in ANALYTICS_FIELDS},
        "characters": _NAMED,
        "places": _NAMED,
    },
    "required": [*ANALYTICS_FIELDS, "characters", "places"],
}

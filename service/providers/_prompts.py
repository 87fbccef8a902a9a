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

#: The analysis's fields and what each holds: the prompt lists them and the answer
#: schema describes them, from this one table.
ANALYTICS_DESCRIPTIONS: Final = {
    "summary": "2-4 sentences on what the video is about.",
    "topic": "the main topic or category.",
    "tone": "the overall tone (e.g. educational, entertaining, dramatic).",
    "key_moments": "notable moments or segments that could inform thumbnails or titles, "
                   "with rough timestamps.",
    "hooks": "what grabs attention in the first 30 seconds or in the content.",
    "duration_estimate": "approximate length or pacing.",
    "thumbnail_appeal_notes": "what visuals would make a thumbnail match the content.",
    "content_type": "one or two words (e.g. Tutorial, Vlog, Review).",
    "characters": "the main people, each with the parts of the video where they appear.",
    "places": "the main locations or settings, each with the parts where they appear.",
}
VIDEO_PROMPT: Final = "\n".join([
    "Analyze this YouTube video for its creator. Fill every field:",
    *(f"{n}. {name}: {text}" for n, (name, text) in
      enumerate(ANALYTICS_DESCRIPTIONS.items(), start=1)),
    "Be concise and concrete.",
])

_SCENES: Final = {
    "type": "ARRAY",
    "items": {
        "type": "OBJECT",
        "properties": {
            "part": {"type": "STRING", "description": "when: a timestamp or a segment"},
            "description": {"type": "STRING", "description": "what happens there"},
        },
        "required": ["part", "description"],
    },
}


def _named(description: str) -> dict[str, Any]:
    return {
        "type": "ARRAY",
        "description": description,
        "items": {
            "type": "OBJECT",
            "properties": {"name": {"type": "STRING"}, "scenes": _SCENES},
            "required": ["name", "scenes"],
        },
    }


ANALYTICS_FIELDS: Final = tuple(
    name for name in ANALYTICS_DESCRIPTIONS if name not in ("characters", "places"))
#: Gemini's `responseSchema` (OpenAPI subset) for the 10-field analytics, each field with
#: its description.
ANALYTICS_SCHEMA: Final[dict[str, Any]] = {
    "type": "OBJECT",
    "properties": {
        **{name: {"type": "STRING", "description": ANALYTICS_DESCRIPTIONS[name]}
           for name in ANALYTICS_FIELDS},
        "characters": _named(ANALYTICS_DESCRIPTIONS["characters"]),
        "places": _named(ANALYTICS_DESCRIPTIONS["places"]),
    },
    "required": list(ANALYTICS_DESCRIPTIONS),
}

"""The `local` provider's drawing: sizes, the PNG card, its determinism and variety, variants."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable

import pytest
from PIL import Image, ImageChops, ImageStat

from service._images import (
    ImageTooLarge,
    decode,
    image_dimensions,
    make_variants,
    verify_image,
)
from service._spec import (
    ASPECT_RATIOS,
    RESOLUTIONS,
    ThumbnailSpec,
    image_size,
)
from service.providers.local import render_thumbnail
from service.providers.local._text import fit_text, font

TITLE = "I Tried Every Budget Camera So You Don't Have To"


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _share(data: bytes, predicate: Callable[[tuple[int, int, int]], bool]) -> float:
    """The fraction of pixels (sampled on a 160-wide grid) for which predicate holds."""
    image = _decode(data).convert("RGB")
    small = image.resize((160, max(1, 160 * image.height // image.width)), Image.Resampling.NEAREST)
    raw = small.tobytes()
    pixels = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
    return sum(1 for p in pixels if predicate(p)) / len(pixels)


def _difference(a: bytes, b: bytes) -> float:
    """Mean absolute per-channel difference of two same-sized images, 0..255."""
    first, second = _decode(a).convert("RGB"), _decode(b).convert("RGB")
    return sum(ImageStat.Stat(ImageChops.difference(first, second)).mean) / 3


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "teal").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def card() -> bytes:
    """The default 1K 16:9 card, rendered once for the tests that only read it."""
    return render_thumbnail(ThumbnailSpec(title=TITLE, thumbnail_text="BEST $100 CAMERA?"))


# --- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio"), list(itertools.product(RESOLUTIONS, ASPECT_RATIOS))
)
def test_image_size_has_even_sides_the_long_side_and_the_ratio(
    resolution: str, aspect_ratio: str
) -> None:
    """Every resolution × ratio gives even sides, the resolution's long side and the ratio."""
    width, height = image_size(resolution, aspect_ratio)
    ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
    assert width % 2 == 0
    assert height % 2 == 0
    assert max(width, height) == {"1K": 1280, "2K": 2560, "4K": 3840}[resolution]
    assert (width >= height) == (ratio_w >= ratio_h)
    # Rounding the short side to an even number moves it by at most one pixel.
    assert abs(width * ratio_h - height * ratio_w) <= max(ratio_w, ratio_h)


def test_16_9_at_1k_is_exactly_1280_by_720() -> None:
    """16:9 at 1K is the classic YouTube 1280×720."""
    assert image_size("1K", "16:9") == (1280, 720)


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio"), [("8K", "16:9"), ("1K", "16:10"), ("", "")]
)
def test_unknown_resolution_or_ratio_is_a_value_error(resolution: str, aspect_ratio: str) -> None:
    """An unknown resolution or aspect ratio is refused by image_size and by the spec."""
    with pytest.raises(ValueError, match="unknown"):
        image_size(resolution, aspect_ratio)
    with pytest.raises(ValueError, match="unknown"):
        ThumbnailSpec(title="t", resolution=resolution, aspect_ratio=aspect_ratio)


@pytest.mark.parametrize("variation", [0, 5, -1])
def test_variation_outside_1_to_4_is_a_value_error(variation: int) -> None:
    """Variations are numbered 1..4."""
    with pytest.raises(ValueError, match="variation"):
        ThumbnailSpec(title="t", variation=variation)


# --- the card -----------------------------------------------------------------------------


def test_card_is_a_png_at_the_requested_size(card: bytes) -> None:
    """The default card is an RGB PNG of 1280×720."""
    image = _decode(card)
    assert image.format == "PNG"
    assert image.size == (1280, 720)


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio"),
    [("1K", "9:16"), ("1K", "21:9"), ("1K", "4:3"), ("2K", "1:1"), ("4K", "16:9")],
)
def test_every_shape_of_card_decodes_at_its_size(resolution: str, aspect_ratio: str) -> None:
    """Portrait, ultra-wide, square and 4K cards decode at image_size(...)."""
    spec = ThumbnailSpec(
        title=TITLE, emotion="happy", resolution=resolution, aspect_ratio=aspect_ratio
    )
    assert _decode(render_thumbnail(spec)).size == image_size(resolution, aspect_ratio)


def test_same_spec_gives_the_same_bytes(card: bytes) -> None:
    """Rendering is deterministic: no clock, no process-salted hash, no unseeded randomness."""
    again = render_thumbnail(ThumbnailSpec(title=TITLE, thumbnail_text="BEST $100 CAMERA?"))
    assert again == card


def test_each_variation_looks_different() -> None:
    """The four variations of one spec differ visibly from each other."""
    renders = [
        render_thumbnail(ThumbnailSpec(title=TITLE, emotion="excited", variation=v))
        for v in range(1, 5)
    ]
    for a, b in itertools.combinations(renders, 2):
        assert _difference(a, b) > 20


def test_emotion_changes_the_card() -> None:
    """The emotion shows: a sad card differs from a happy one of the same title."""
    palette = ["#336699"]
    happy = render_thumbnail(ThumbnailSpec(title=TITLE, emotion="happy", palette=palette))
    sad = render_thumbnail(ThumbnailSpec(title=TITLE, emotion="sad", palette=palette))
    assert happy != sad


def test_red_palette_makes_a_red_card() -> None:
    """A palette of one red is honoured: most of the card is strongly red."""
    png = render_thumbnail(ThumbnailSpec(title=TITLE, emotion="happy", palette=["#ff0000"]))
    assert _share(png, lambda p: p[0] > 120 and p[1] < 90 and p[2] < 90) > 0.4


def test_blue_palette_makes_a_blue_card() -> None:
    """A palette of one blue is honoured: most of the card is strongly blue."""
    png = render_thumbnail(ThumbnailSpec(title=TITLE, palette=["#0000ff"]))
    assert _share(png, lambda p: p[2] > 120 and p[0] < 90 and p[1] < 90) > 0.4


def test_unparseable_palette_colours_are_ignored() -> None:
    """Colours Pillow cannot parse are dropped; a palette of only those equals no palette."""
    plain = render_thumbnail(ThumbnailSpec(title=TITLE))
    bogus = render_thumbnail(ThumbnailSpec(title=TITLE, palette=["not-a-colour", "#12345"]))
    assert bogus == plain
    green = render_thumbnail(ThumbnailSpec(title=TITLE, palette=["nope", "00ff00"]))
    assert _share(green, lambda p: p[1] > 120 and p[0] < 90 and p[2] < 90) > 0.4


def test_out_of_range_palette_colours_are_clamped() -> None:
    """A colour Pillow parses out of range, like rgb(999,0,0), is clamped to pure red."""
    png = render_thumbnail(ThumbnailSpec(title=TITLE, palette=["rgb(999,0,0)"]))
    assert png == render_thumbnail(ThumbnailSpec(title=TITLE, palette=["#ff0000"]))


def test_named_palette_string_is_honoured() -> None:
    """A palette name ("warm", "cool") picks a family of colours."""

    def mean_rgb(palette: str) -> list[float]:
        png = render_thumbnail(ThumbnailSpec(title=TITLE, palette=palette))
        return list(ImageStat.Stat(_decode(png).convert("RGB")).mean)

    warm, cool = mean_rgb("warm"), mean_rgb("cool")
    assert warm[0] > warm[2]
    assert cool[2] > cool[0]


def test_long_title_and_long_text_still_render() -> None:
    """A 500-character title and very long thumbnail texts render at the right size."""
    title = ("An extremely long title that keeps going " * 13)[:500]
    text = "SUPERCALIFRAGILISTICEXPIALIDOCIOUS " * 12
    for spec in (
        ThumbnailSpec(title=title),
        ThumbnailSpec(title=title, thumbnail_text=text, emotion="shocked", aspect_ratio="9:16"),
        ThumbnailSpec(title=title, thumbnail_text="x" * 20_000, pose="pointing", emotion="calm"),
    ):
        assert _decode(render_thumbnail(spec)).size == image_size(
            spec.resolution, spec.aspect_ratio
        )


def test_text_that_cannot_fit_is_wrapped_then_cut_with_an_ellipsis() -> None:
    """Text too long for its box at the smallest size keeps only the lines that fit, each within
    the box's width, and ends in an ellipsis."""
    fitted = fit_text("word " * 400, 300, 100, max_lines=3, min_size=12, max_size=60)
    assert 1 <= len(fitted.lines) <= 3
    assert len(fitted.lines) * fitted.line_height <= 100
    assert fitted.lines[-1].endswith("…")
    for line in fitted.lines:
        assert fitted.font.getlength(line) + 2 * fitted.stroke <= 300


def test_short_text_grows_to_fill_its_box() -> None:
    """Short text is set at the largest size that fits, and a long word is split, not overflowed."""
    fitted = fit_text("WOW", 600, 300, max_lines=4, min_size=10, max_size=200)
    assert fitted.lines == ["WOW"]
    assert fitted.line_height > 150
    split = fit_text("A" * 80, 200, 400, max_lines=10, min_size=10, max_size=40)
    assert "".join(split.lines) == "A" * 80
    assert all(split.font.getlength(line) + 2 * split.stroke <= 200 for line in split.lines)
    assert font(20).getlength("A") < font(40).getlength("A")


# --- variants and dimensions --------------------------------------------------------------


def test_variants_are_jpegs_at_400_and_800_keeping_the_ratio(card: bytes) -> None:
    """A 1280×720 card gives 400×225 and 800×450 JPEGs keyed by width."""
    variants = make_variants(card)
    assert sorted(variants) == [400, 800]
    for width, data in variants.items():
        image = _decode(data)
        assert image.format == "JPEG"
        assert image.size == (width, width * 720 // 1280)


def test_variants_never_enlarge_a_narrow_source() -> None:
    """A 300-px-wide source stays 300 px wide in every variant, still keyed by the width asked."""
    variants = make_variants(_png((300, 200)), widths=(400, 800, 150))
    assert {w: _decode(d).size for w, d in variants.items()} == {
        400: (300, 200),
        800: (300, 200),
        150: (150, 100),
    }


def test_variants_flatten_transparency() -> None:
    """A transparent PNG becomes an opaque JPEG rather than an error."""
    out = io.BytesIO()
    Image.new("RGBA", (500, 250), (255, 0, 0, 0)).save(out, format="PNG")
    image = _decode(make_variants(out.getvalue(), widths=(400,))[400])
    assert image.mode == "RGB"
    assert image.size == (400, 200)


def test_variants_refuse_garbage_and_bad_widths(card: bytes) -> None:
    """Bytes that are not an image, or a width below 1, are a ValueError."""
    with pytest.raises(ValueError, match="not a PNG"):
        make_variants(b"definitely not an image")
    with pytest.raises(ValueError, match="positive"):
        make_variants(card, widths=(0,))


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_image_dimensions_reads_png_jpeg_and_webp(image_format: str) -> None:
    """image_dimensions reports (width, height) for each supported format."""
    out = io.BytesIO()
    Image.new("RGB", (123, 45), "orange").save(out, format=image_format)
    assert image_dimensions(out.getvalue()) == (123, 45)


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_image_dimensions_refuses_what_is_not_an_image(data: bytes) -> None:
    """Empty, random and header-only bytes are a ValueError, not a crash or a guess."""
    with pytest.raises(ValueError, match="not a PNG"):
        image_dimensions(data)


def test_a_truncated_png_is_refused_when_decoded(card: bytes) -> None:
    """A PNG cut short (an interrupted upload) has a readable header, and is refused
    when decoded rather than half-read."""
    cut = card[: len(card) // 2]
    assert image_dimensions(cut) == image_dimensions(card)
    with pytest.raises(ValueError, match="not a PNG"):
        verify_image(cut)
    with pytest.raises(ValueError, match="not a PNG"):
        decode(cut)


def test_pixels_are_bounded_from_the_header() -> None:
    """9000 × 9000 (a 10 KB file) and 7000 × 7000 (49 MP) are refused before decoding;
    8192 × 4096 (33.5 MP) is accepted."""
    for size, refused in (((9000, 9000), True), ((7000, 7000), True), ((8192, 4096), False)):
        out = io.BytesIO()
        Image.new("1", size).save(out, format="PNG")
        if refused:
            with pytest.raises(ImageTooLarge, match=f"{size[0]} × {size[1]} pixels"):
                image_dimensions(out.getvalue())
        else:
            assert image_dimensions(out.getvalue()) == size

"""Caption legibility measured on composited frames: contrast against the ring around the strokes, the title-safe
area, and the scrim that keeps the plate-less style legible over bright backgrounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from microdrama_assets.media.captions import (LEGIBLE_CONTRAST, STYLES, CaptionOverlay, adapt_to_background,
                                              composite_overlay, measure_caption_legibility, render_caption,
                                              safe_area)
from microdrama_assets.media.video_io import MezzanineSettings, read_rgb_frames, write_mezzanine

W, H = 1080, 1920
LINE = "A florist in a white dress finds a note"
SCRIPTS = {
    "arabic": "لا تفتح الباب، الرسالة جاءت من هاتفي",
    "hebrew": "שלום עולם, איפה המפתח?",
    "chinese": "她在自己正在代写的稿子里发现了自己的讣告",
    "japanese": "鍵はどこ？誰が手紙を書いたの？",
    "korean": "열쇠는 어디에 있어요?",
}


def park_at_dusk() -> np.ndarray:
    """A dark, gently graded scene: any caption style reads on it."""
    rows = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None, None]
    return np.broadcast_to(np.array([40, 60, 55]) + rows * np.array([20, 15, 10]), (H, W, 3)).astype(np.uint8).copy()


def white_dress() -> np.ndarray:
    """The known hard case: a cream-white dress with soft folds fills the lower frame, where captions sit."""
    frame = park_at_dusk()
    folds = 12.0 * np.cos(np.arange(H) / 53.0)[:, None] * np.sin(np.arange(W) / 37.0)[None, :]
    dress = np.clip(np.array([242.0, 238.0, 230.0]) + folds[..., None], 0, 255).astype(np.uint8)
    frame[H // 2 :] = dress[H // 2 :]
    return frame


def composited(frame: np.ndarray, overlay: CaptionOverlay) -> np.ndarray:
    finished = frame.copy()
    composite_overlay(finished, overlay)
    return finished


def without_outline(overlay: CaptionOverlay) -> CaptionOverlay:
    """White glyphs and nothing else: no outline, shadow or plate."""
    coverage = overlay.glyphs.coverage
    rgba = np.dstack([np.full(coverage.shape + (3,), 255, np.uint8), coverage])
    return dataclasses.replace(overlay, rgba=rgba)


def test_white_text_without_outline_fails_over_white_and_grey_and_passes_over_black() -> None:
    bare = without_outline(render_caption(LINE))
    over_white = measure_caption_legibility(composited(np.full((H, W, 3), 255, np.uint8), bare), bare)
    assert over_white.contrast < 1.2 and over_white.problem and "contrast" in over_white.problem
    # White on mid-grey is about 3:1: the large-text bar, not the one captions are held to.
    over_grey = measure_caption_legibility(composited(np.full((H, W, 3), 150, np.uint8), bare), bare)
    assert 2.5 < over_grey.contrast < LEGIBLE_CONTRAST and over_grey.problem
    over_black = measure_caption_legibility(composited(np.zeros((H, W, 3), np.uint8), bare), bare)
    assert over_black.contrast > 15 and over_black.problem is None and over_black.inside_title_safe


def test_a_caption_missing_from_the_frame_fails() -> None:
    overlay = render_caption(LINE, style="minimal")
    measured = measure_caption_legibility(white_dress(), overlay)  # never composited
    assert measured.contrast < 1.5 and measured.problem


def test_minimal_style_over_a_white_dress_reads_poorly_as_rendered() -> None:
    overlay = render_caption(LINE, style="minimal")
    measured = measure_caption_legibility(composited(white_dress(), overlay), overlay)
    # The thin outline alone leaves most of the ring around the strokes to the dress.
    assert measured.contrast < LEGIBLE_CONTRAST and measured.problem
    assert measured.surround_luminance > 0.2


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_passes_over_a_white_dress_after_adapting_even_through_the_mezzanine(style, tmp_path) -> None:
    frame = white_dress()
    overlay = render_caption(LINE, style=style)
    finished = composited(frame, adapt_to_background(overlay, frame))
    assert measure_caption_legibility(finished, overlay).problem is None
    # What the check measures: the frame after the mezzanine's 4:2:0 encode and decode.
    write_mezzanine(tmp_path / "shot.mp4", [finished], W, H, MezzanineSettings())
    [decoded] = read_rgb_frames(tmp_path / "shot.mp4")
    measured = measure_caption_legibility(decoded, overlay)
    assert measured.problem is None, measured


def test_plate_styles_need_no_scrim_and_dark_backgrounds_get_none() -> None:
    for style in ("default", "emphasis"):
        overlay = render_caption(LINE, style=style)
        assert adapt_to_background(overlay, np.full((H, W, 3), 255, np.uint8)) is overlay
    minimal = render_caption(LINE, style="minimal")
    assert adapt_to_background(minimal, park_at_dusk()) is minimal


def test_a_bright_patch_behind_one_word_counts() -> None:
    overlay = render_caption("Don't turn around, she is right behind you", style="minimal")
    frame = park_at_dusk()
    # A white sleeve behind the start of the first line only.
    frame[overlay.y : overlay.y + overlay.height // 2, overlay.x : overlay.x + overlay.width // 4] = 250
    measured = measure_caption_legibility(composited(frame, overlay), overlay)
    assert measured.median_contrast > 10  # most of the line is fine ...
    assert measured.contrast < LEGIBLE_CONTRAST and measured.problem  # ... but the patch is what a viewer trips on
    adapted = adapt_to_background(overlay, frame)
    assert measure_caption_legibility(composited(frame, adapted), overlay).problem is None
    # The scrim only darkens: the caption's colours are untouched where the plain overlay was opaque.
    opaque = overlay.rgba[..., 3] == 255
    assert np.array_equal(adapted.rgba[opaque], overlay.rgba[opaque])


def test_adapting_is_deterministic() -> None:
    frame = white_dress()
    overlay = render_caption(LINE, style="minimal")
    assert np.array_equal(adapt_to_background(overlay, frame).rgba, adapt_to_background(overlay, frame).rgba)


@pytest.mark.parametrize("top", [40, H - 300])
def test_a_caption_outside_the_title_safe_area_is_reported(top: int) -> None:
    overlay = dataclasses.replace(render_caption(LINE), y=top)
    area = safe_area(W, H)
    assert not area.top <= top or top + overlay.height > area.bottom
    measured = measure_caption_legibility(composited(park_at_dusk(), overlay), overlay)
    assert measured.contrast >= LEGIBLE_CONTRAST  # legible, but under the app's UI
    assert not measured.inside_title_safe and "title-safe" in measured.problem


def test_a_caption_inside_the_side_margin_is_reported() -> None:
    overlay = dataclasses.replace(render_caption(LINE), x=10)
    measured = measure_caption_legibility(composited(park_at_dusk(), overlay), overlay)
    assert not measured.inside_title_safe and "title-safe" in measured.problem


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_non_latin_captions_are_measured_like_latin_ones(script: str) -> None:
    text = SCRIPTS[script]
    frame = white_dress()
    bare = without_outline(render_caption(text))
    assert 3 <= bare.glyphs.stem_px <= 20  # strokes found in the script's own glyphs
    assert measure_caption_legibility(composited(frame, bare), bare).problem
    assert measure_caption_legibility(composited(park_at_dusk(), bare), bare).problem is None
    for style in sorted(STYLES):
        overlay = render_caption(text, style=style)
        for background in (frame, park_at_dusk()):
            measured = measure_caption_legibility(composited(background, adapt_to_background(overlay, background)),
                                                  overlay)
            assert measured.problem is None, (script, style, measured)
            assert measured.inside_title_safe

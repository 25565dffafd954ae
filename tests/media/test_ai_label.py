"""The visible "AI-generated" label: inside the title-safe area, only its own box touched, legible on any picture."""

from __future__ import annotations

import numpy as np
import pytest

from microdrama_assets.media.ai_label import AILabel, LabelError, draw_ai_label
from microdrama_assets.media.captions import (
    LEGIBLE_CONTRAST,
    measure_caption_legibility,
    safe_area,
)

WIDTH, HEIGHT = 1080, 1920


@pytest.fixture(scope="module")
def label() -> AILabel:
    return AILabel(WIDTH, HEIGHT)


def _busy_frame() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.mark.parametrize("corner", ["top-left", "top-right"])
def test_label_sits_in_a_top_corner_of_the_title_safe_area(corner):
    left, top, right, bottom = AILabel(WIDTH, HEIGHT, corner=corner).box
    area = safe_area(WIDTH, HEIGHT)
    assert top == area.top and bottom < HEIGHT // 4
    assert (left == area.left) if corner == "top-left" else (right == area.right)
    assert area.left <= left < right <= area.right
    assert right - left < WIDTH // 3  # small: a tag, not a banner


def test_only_pixels_inside_the_box_change(label):
    frame = _busy_frame()
    labelled = draw_ai_label(frame)
    left, top, right, bottom = label.box
    changed = np.any(labelled != frame, axis=2)
    assert changed[top:bottom, left:right].mean() > 0.5  # the plate covers its box
    changed[top:bottom, left:right] = False
    assert not changed.any()
    assert np.array_equal(frame, _busy_frame())  # draw_ai_label leaves its input alone


@pytest.mark.parametrize("background", [0, 128, 255])
def test_label_reads_on_any_background(label, background):
    frame = label.apply(np.full((HEIGHT, WIDTH, 3), background, dtype=np.uint8))
    legibility = measure_caption_legibility(frame, label.overlay)
    assert legibility.problem is None and legibility.inside_title_safe
    assert legibility.contrast >= LEGIBLE_CONTRAST


def test_apply_composites_in_place(label):
    frame = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    once = label.apply(frame.copy())
    assert label.apply(frame) is frame and np.array_equal(frame, once)


def test_bad_labels_are_refused(label):
    with pytest.raises(LabelError, match="label text is empty"):
        AILabel(WIDTH, HEIGHT, "   ")
    with pytest.raises(LabelError, match="unknown corner"):
        AILabel(WIDTH, HEIGHT, corner="bottom-left")
    with pytest.raises(LabelError, match="does not fit the title-safe area"):
        AILabel(WIDTH, HEIGHT, "AI-generated " * 12)
    with pytest.raises(LabelError, match="drawn for 1080x1920 frames, got 720x1280"):
        label.apply(np.zeros((1280, 720, 3), dtype=np.uint8))

"""The optional visible "AI-generated" label: a small plate with the caption fonts in a top corner of the
title-safe area, where app UI leaves the picture clear.

The plate is drawn once (``AILabel``) as a caption overlay, so compositing it onto every frame of an episode is
one alpha blend over its box (``captions.composite_overlay``), and its legibility is measured the way captions'
is (``captions.measure_caption_legibility``).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# The caption module's font loading (weight axes set) and anti-aliased plate: the label must read like captions.
from .captions import (
    CaptionOverlay,
    load_font,
    rounded_plate,
    solid_layer,
    caption_font_for,
    caption_glyphs,
    composite_overlay,
    safe_area,
)

DEFAULT_TEXT = "AI-generated"
CORNERS = ("top-left", "top-right")
_SIZE_FRAC = 0.028  # font size against frame width: just above captions' smallest readable size (0.026)
_TEXT_RGB = (255, 255, 255)
# A white label over a white frame still measures about 6.8:1 under this plate, above captions' 4.5:1 bar.
_PLATE_RGBA = (10, 10, 14, 170)


class LabelError(ValueError):
    """A label that cannot be drawn as asked (empty text, too long for the frame, unknown corner)."""


class AILabel:
    """An "AI-generated" label drawn once for frames of one size; ``apply`` composites it onto a frame."""

    def __init__(self, width: int, height: int, text: str = DEFAULT_TEXT, corner: str = "top-left"):
        if width <= 0 or height <= 0:
            raise LabelError(f"frame size must be positive, got {width}x{height}")
        if corner not in CORNERS:
            raise LabelError(f"unknown corner {corner!r}; choose one of {', '.join(CORNERS)}")
        text = " ".join(text.split())
        if not text:
            raise LabelError("label text is empty")
        self.width, self.height, self.text = width, height, text
        self.overlay = self._render(corner)

    def _render(self, corner: str) -> CaptionOverlay:
        area = safe_area(self.width, self.height)
        font = load_font(caption_font_for(self.text), max(8, round(self.width * _SIZE_FRAC)))
        ascent, descent = font.getmetrics()
        pad_x, pad_y = round(font.size * 0.5), round(font.size * 0.3)
        box_w = math.ceil(font.getlength(self.text)) + 2 * pad_x
        box_h = ascent + descent + 2 * pad_y
        if box_w > area.right - area.left or box_h > area.bottom - area.top:
            raise LabelError(f"label {self.text!r} ({box_w}x{box_h} px) does not fit the title-safe area of a "
                             f"{self.width}x{self.height} frame")
        fill = Image.new("L", (box_w, box_h), 0)
        ImageDraw.Draw(fill).text((pad_x, pad_y), self.text, font=font, fill=255)
        plate = solid_layer((box_w, box_h), _PLATE_RGBA[:3],
                       rounded_plate((box_w, box_h), round(font.size * 0.35), _PLATE_RGBA[3]))
        rgba = Image.alpha_composite(plate, solid_layer((box_w, box_h), _TEXT_RGB, fill))
        x = area.left if corner == "top-left" else area.right - box_w
        return CaptionOverlay(rgba=np.asarray(rgba, dtype=np.uint8).copy(), x=x, y=area.top,
                              glyphs=caption_glyphs(np.asarray(fill)), lines=(self.text,))

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the pixels ``apply`` may change; right and bottom exclusive."""
        overlay = self.overlay
        return overlay.x, overlay.y, overlay.x + overlay.width, overlay.y + overlay.height

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Composite the label onto ``frame`` (RGB uint8 of the label's size) in place and return it."""
        if frame.shape[:2] != (self.height, self.width):
            raise LabelError(f"label was drawn for {self.width}x{self.height} frames, "
                             f"got {frame.shape[1]}x{frame.shape[0]}")
        composite_overlay(frame, self.overlay)
        return frame


def draw_ai_label(frame: np.ndarray, text: str = DEFAULT_TEXT, corner: str = "top-left") -> np.ndarray:
    """A copy of ``frame`` (RGB uint8) with the label on it; for many frames, build one ``AILabel`` instead."""
    return AILabel(frame.shape[1], frame.shape[0], text, corner).apply(frame.copy())

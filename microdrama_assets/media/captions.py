"""Burned-in captions and WebVTT subtitles.

Captions are drawn as RGBA images with PIL (RAQM layout, so Arabic, Hebrew and other complex scripts shape and
order correctly) and alpha-blended onto frames; no user text ever reaches an FFmpeg filter string, so a line of
dialogue cannot inject filter syntax. Every box stays inside the title-safe area that vertical-video apps leave
clear of their own UI, and its legibility is measured on the finished frame (``measure_caption_legibility``):
where a style would fall short over a bright background, ``adapt_to_background`` darkens a halo behind the text.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import cvttf_NotoSansCJK_Bold
import fontpkg_heebo
import fontpkg_noto_sans
import fontpkg_noto_sans_arabic
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    speaker: str
    text: str


CAPTION_HOLD_S = 0.4  # captions linger a moment after the line so they can be finished reading


def line_cues(lines: list[tuple[float, float, str, str]], shot_end_s: float, offset_s: float = 0.0) -> list[Cue]:
    """Caption cues for a shot's placed lines, each (start, seconds spoken, speaker's name, text): on screen from
    the line's start until it has been spoken plus ``CAPTION_HOLD_S``, cut at the next line and at the shot's end;
    shot-relative unless ``offset_s`` places them on the episode timeline."""
    cues = []
    for index, (start_s, spoken_s, speaker, text) in enumerate(lines):
        next_start = lines[index + 1][0] if index + 1 < len(lines) else shot_end_s
        end_s = min(start_s + spoken_s + CAPTION_HOLD_S, next_start, shot_end_s)
        cues.append(Cue(offset_s + start_s, offset_s + end_s, speaker, text))
    return cues


# Fractions of the frame kept clear for app UI (status bar on top, caption/buttons rail at the bottom and sides).
SAFE_TOP = 0.10
SAFE_BOTTOM = 0.20
SAFE_SIDE = 0.06

MAX_LINES = 3
Measure = Callable[[str], float]  # advance width of a string in pixels, for the font being laid out

_NOTO_BOLD = fontpkg_noto_sans.ROOT / "files" / "NotoSans[wdth,wght].ttf"
_NOTO_WEIGHT = 800  # ExtraBold: thin strokes vanish on phone screens after video compression
# Noto Sans covers Latin/Greek/Cyrillic/Devanagari only; other scripts take the first font (all from PyPI)
# that has their glyphs. Values per font: its variation axes in the font's own order, or None (static).
_ARABIC_BOLD = fontpkg_noto_sans_arabic.ROOT / "files" / "NotoSansArabic[wdth,wght].ttf"
_HEBREW_BOLD = fontpkg_heebo.ROOT / "files" / "Heebo[wght].ttf"
_CJK_BOLD = Path(cvttf_NotoSansCJK_Bold.__file__).parent / "NotoSansCJKtc-Bold.otf"
_FONT_AXES: dict[Path, list[int] | None] = {
    _NOTO_BOLD: [_NOTO_WEIGHT, 100],  # weight, width
    _ARABIC_BOLD: [_NOTO_WEIGHT, 100],  # weight, width
    _HEBREW_BOLD: [_NOTO_WEIGHT],  # weight
    _CJK_BOLD: None,
}
# Characters that draw nothing by themselves, so they say nothing about a font's coverage.
_INVISIBLE_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"}

# CJK has no spaces between words: wrap per character, keeping closing punctuation on the character before it.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_CLOSING = "\u3001\u3002\u300d\u300f\u3011\uff01\uff09\uff0c\uff0e\uff1a\uff1b\uff1f"
_WORD_PIECE_RE = re.compile(f"[{_CJK}][{_CJK_CLOSING}]*|[^{_CJK}]+")


@dataclass(frozen=True)
class CaptionStyle:
    text_rgb: tuple[int, int, int]
    outline_rgb: tuple[int, int, int]
    plate_rgba: tuple[int, int, int, int] | None  # None: no plate, the outline and shadow carry the contrast
    size_frac: float  # starting font size as a fraction of the frame width
    shadow_alpha: float


STYLES: dict[str, CaptionStyle] = {
    "default": CaptionStyle((255, 255, 255), (12, 12, 16), (10, 10, 14, 150), 0.060, 0.55),
    # Cliffhanger / emphasis lines: the yellow social-video highlight.
    "emphasis": CaptionStyle((255, 221, 64), (12, 12, 16), (10, 10, 14, 165), 0.064, 0.55),
    "minimal": CaptionStyle((255, 255, 255), (0, 0, 0), None, 0.060, 0.85),
}
_MIN_SIZE_FRAC = 0.026  # below ~28 px on a 1080-wide frame captions stop being readable on a phone


@dataclass(frozen=True, eq=False)
class CaptionGlyphs:
    """Where a caption's text lies in its box, worked out once per caption: the glyph fill, the ring around the
    strokes that a viewer reads the text against, and the halo a scrim darkens (see ``caption_glyphs``)."""

    coverage: np.ndarray  # (h, w) uint8 coverage of the glyph fill
    stem_px: float  # typical stroke width of the glyphs
    core: np.ndarray  # (h, w) float32, 1 on glyph pixels clear of the anti-aliased edge
    ring: np.ndarray  # (h, w) float32, 1 outside the strokes out to one stem width
    halo: np.ndarray  # (h, w) float32 in [0, 1]: 1 over glyphs and ring, fading out over one more stem width
    window: int  # side of the square each edge sample averages over
    sample_rows: np.ndarray  # glyph edge pixels where legibility is sampled
    sample_cols: np.ndarray
    core_weight: np.ndarray  # core and ring pixels in each sample's window
    ring_weight: np.ndarray


@dataclass(frozen=True, eq=False)
class CaptionOverlay:
    rgba: np.ndarray  # (h, w, 4) uint8, straight (not premultiplied) alpha, cropped to its box
    x: int  # top-left in the frame
    y: int
    glyphs: CaptionGlyphs  # the text's own pixels in the box, for measuring and adapting legibility
    lines: tuple[str, ...] = ()  # the wrapped lines as drawn (the last may end in an ellipsis)
    # Blend inputs prepared once: composite_overlay runs on every frame of the cue.
    _rgb: np.ndarray = field(init=False, repr=False)
    _alpha: np.ndarray = field(init=False, repr=False)
    _inv_alpha: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rgba.ndim != 3 or self.rgba.shape[2] != 4 or self.rgba.dtype != np.uint8:
            raise ValueError(f"caption overlay must be (h, w, 4) uint8, got {self.rgba.shape} {self.rgba.dtype}")
        alpha = self.rgba[..., 3].astype(np.float32) / 255.0
        object.__setattr__(self, "_rgb", np.ascontiguousarray(self.rgba[..., :3]))
        object.__setattr__(self, "_alpha", alpha)
        object.__setattr__(self, "_inv_alpha", 1.0 - alpha)

    @property
    def width(self) -> int:
        return int(self.rgba.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgba.shape[0])


@dataclass(frozen=True)
class SafeArea:
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive


def safe_area(width: int, height: int) -> SafeArea:
    return SafeArea(
        left=math.ceil(width * SAFE_SIDE),
        top=math.ceil(height * SAFE_TOP),
        right=math.floor(width * (1 - SAFE_SIDE)),
        bottom=math.floor(height * (1 - SAFE_BOTTOM)),
    )


# --- fonts -------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    """A caption font at ``size`` px with its weight axes set (cached: fonts are loaded per size once)."""
    font = ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.RAQM)
    if _FONT_AXES.get(path):
        font.set_variation_by_axes(_FONT_AXES[path])
    return font


@functools.lru_cache(maxsize=4096)
def font_has_glyph(path: Path, char: str) -> bool:
    # PIL exposes no cmap; a character the font lacks renders as the .notdef glyph, so compare against that.
    font = load_font(path, 32)
    notdef = font.getmask("\U000f0000")
    glyph = font.getmask(char)
    return glyph.size != notdef.size or bytes(glyph) != bytes(notdef)


def caption_font_for(text: str) -> Path:
    visible = {c for c in text if unicodedata.category(c) not in _INVISIBLE_CATEGORIES}
    candidates = list(_FONT_AXES)
    missing = [sum(not font_has_glyph(path, c) for c in sorted(visible)) for path in candidates]
    return candidates[missing.index(min(missing))]  # the earliest font with the best coverage


# --- layout ------------------------------------------------------------------------------------------------------
def _clean(text: str) -> str:
    # Control characters would draw as boxes; line breaks become spaces because wrapping is ours to decide.
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return " ".join(text.split())


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(piece, preceded by a space) pairs: words, and single characters for CJK runs."""
    tokens: list[tuple[str, bool]] = []
    for word_index, word in enumerate(text.split(" ")):
        for piece_index, piece in enumerate(_WORD_PIECE_RE.findall(word)):
            tokens.append((piece, word_index > 0 and piece_index == 0))
    return tokens


def _split_long(piece: str, measure: Measure, max_width: float) -> list[str]:
    # A single word wider than the line (a URL, a long compound): break it between characters.
    if measure(piece) <= max_width:
        return [piece]
    chunks, current = [], ""
    for char in piece:
        if current and measure(current + char) > max_width:
            chunks.append(current)
            current = char
        else:
            current += char
    return chunks + [current]


def _wrap(text: str, measure: Measure, max_width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for piece, spaced in _tokens(text):
        for chunk_index, chunk in enumerate(_split_long(piece, measure, max_width)):
            joiner = " " if spaced and chunk_index == 0 and current else ""
            candidate = current + joiner + chunk
            if current and measure(candidate) > max_width:
                lines.append(current)
                current = chunk
            else:
                current = candidate
    if current:
        lines.append(current)
    return lines


def _balanced_wrap(text: str, measure: Measure, max_width: float) -> list[str]:
    """Wrap into as few lines as the width allows, then narrow the measure while the line count holds, so lines
    come out even instead of leaving a lone word on the last one."""
    lines = _wrap(text, measure, max_width)
    if len(lines) < 2:
        return lines
    low, high = max_width / len(lines), max_width  # high always wraps to len(lines)
    for _ in range(8):
        middle = (low + high) / 2
        if len(_wrap(text, measure, middle)) == len(lines):
            high = middle
        else:
            low = middle
    return _wrap(text, measure, high)


def _ellipsize(line: str, measure: Measure, max_width: float) -> str:
    while line and measure(line + "…") > max_width:
        line = line[:-1].rstrip()
    return line + "…"


@dataclass(frozen=True)
class _Layout:
    font: ImageFont.FreeTypeFont
    lines: list[str]
    stroke: int
    pad_x: int
    pad_y: int
    line_height: int


def _layout(text: str, font_path: Path, style: CaptionStyle, width: int, safe_width: int) -> _Layout:
    size = max(8, round(width * style.size_frac))
    min_size = max(8, round(width * _MIN_SIZE_FRAC))
    while True:
        font = load_font(font_path, size)
        # Wrapping re-measures the same prefixes many times; shaping them once keeps layout fast.
        measure: Measure = functools.lru_cache(maxsize=None)(font.getlength)
        stroke = max(2, round(size * 0.075))
        pad_x = round(size * 0.55)
        pad_y = round(size * 0.30)
        max_text_width = safe_width - 2 * (pad_x + stroke)
        if max_text_width < size:
            raise ValueError(f"frame width {width} is too narrow for captions")
        lines = _wrap(text, measure, max_text_width)
        if len(lines) <= MAX_LINES or size <= min_size:
            break
        size = max(min_size, math.floor(size * 0.92))
    if len(lines) > MAX_LINES:
        lines = lines[: MAX_LINES - 1] + [_ellipsize(lines[MAX_LINES - 1], measure, max_text_width)]
    else:
        lines = _balanced_wrap(text, measure, max_text_width)
    ascent, descent = font.getmetrics()
    return _Layout(font, lines, stroke, pad_x, pad_y, round((ascent + descent) * 1.04))


# --- rendering ---------------------------------------------------------------------------------------------------
def solid_layer(size: tuple[int, int], rgb: tuple[int, int, int], alpha: Image.Image) -> Image.Image:
    """An RGBA layer of one colour whose alpha is ``alpha`` (a mask of text, outline or plate)."""
    layer = Image.new("RGBA", size, rgb + (0,))
    layer.putalpha(alpha)
    return layer


def rounded_plate(size: tuple[int, int], radius: int, alpha: int) -> Image.Image:
    """The alpha mask of a rounded rectangle filling ``size``, at opacity ``alpha``."""
    # From the rounded rectangle's signed distance, for anti-aliased corners (PIL's rounded_rectangle has none).
    width, height = size
    radius = min(radius, width // 2, height // 2)
    qx = np.maximum(np.abs(np.arange(width) + 0.5 - width / 2) - (width / 2 - radius), 0.0)[None, :]
    qy = np.maximum(np.abs(np.arange(height) + 0.5 - height / 2) - (height / 2 - radius), 0.0)[:, None]
    coverage = np.clip(radius + 0.5 - np.hypot(qx, qy), 0.0, 1.0)
    return Image.fromarray(np.round(coverage * alpha).astype(np.uint8), mode="L")


def render_caption(text: str, width: int = 1080, height: int = 1920, style: str = "default") -> CaptionOverlay:
    """Render ``text`` as a caption box placed just above the bottom safe margin, inside the title-safe area."""
    if style not in STYLES:
        raise ValueError(f"unknown caption style {style!r}; choose one of {', '.join(sorted(STYLES))}")
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    text = _clean(text)
    if not text:
        raise ValueError("caption text is empty")
    font_path = caption_font_for(text)
    # No font here draws colour emoji (none is on PyPI): they are left out of the burned caption rather than
    # drawn as boxes; the WebVTT track keeps the full text for the player's own fonts.
    drawable = " ".join("".join(c for c in text if unicodedata.category(c) in _INVISIBLE_CATEGORIES
                                or font_has_glyph(font_path, c)).split())
    if not drawable:
        raise ValueError(f"caption {text!r} has no character the caption fonts can draw")
    look = STYLES[style]
    area = safe_area(width, height)
    layout = _layout(drawable, font_path, look, width, area.right - area.left)
    font, stroke = layout.font, layout.stroke

    text_width = max(math.ceil(font.getlength(line)) for line in layout.lines) + 2 * stroke
    box_w = min(area.right - area.left, text_width + 2 * layout.pad_x)
    box_h = len(layout.lines) * layout.line_height + 2 * layout.pad_y + 2 * stroke
    if box_h > area.bottom - area.top:
        raise ValueError(f"frame height {height} is too short for a {len(layout.lines)}-line caption")

    # Fill and outline masks; the outline mask includes the stroke ring, the fill only the glyphs.
    fill_mask = Image.new("L", (box_w, box_h), 0)
    outline_mask = Image.new("L", (box_w, box_h), 0)
    fill_draw, outline_draw = ImageDraw.Draw(fill_mask), ImageDraw.Draw(outline_mask)
    for index, line in enumerate(layout.lines):
        anchor_xy = (box_w / 2, layout.pad_y + stroke + index * layout.line_height)
        fill_draw.text(anchor_xy, line, font=font, fill=255, anchor="ma")
        outline_draw.text(anchor_xy, line, font=font, fill=255, anchor="ma", stroke_width=stroke, stroke_fill=255)

    # A soft drop shadow, offset downwards, lifts the text off busy backgrounds even where the plate is faint.
    offset = max(1, stroke // 2 + 1)
    shadow_mask = Image.new("L", (box_w, box_h), 0)
    shadow_mask.paste(outline_mask, (0, offset))
    shadow_mask = shadow_mask.filter(ImageFilter.GaussianBlur(radius=stroke))
    shadow_mask = shadow_mask.point(lambda v: round(v * look.shadow_alpha))

    canvas = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    if look.plate_rgba is not None:
        plate_alpha = rounded_plate((box_w, box_h), round(font.size * 0.42), look.plate_rgba[3])
        canvas = Image.alpha_composite(canvas, solid_layer((box_w, box_h), look.plate_rgba[:3], plate_alpha))
    canvas = Image.alpha_composite(canvas, solid_layer((box_w, box_h), (0, 0, 0), shadow_mask))
    canvas = Image.alpha_composite(canvas, solid_layer((box_w, box_h), look.outline_rgb, outline_mask))
    canvas = Image.alpha_composite(canvas, solid_layer((box_w, box_h), look.text_rgb, fill_mask))

    x = area.left + (area.right - area.left - box_w) // 2
    y = area.bottom - round(height * 0.01) - box_h  # a little air above the app's bottom rail
    return CaptionOverlay(
        rgba=np.asarray(canvas, dtype=np.uint8).copy(), x=x, y=max(area.top, y),
        glyphs=caption_glyphs(np.asarray(fill_mask)), lines=tuple(layout.lines)
    )


def _caption_region(frame: np.ndarray, overlay: CaptionOverlay) -> np.ndarray:
    """The part of ``frame`` under the overlay's box (a view)."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (h, w, 3) uint8, got {frame.shape} {frame.dtype}")
    if (
        overlay.x < 0
        or overlay.y < 0
        or overlay.x + overlay.width > frame.shape[1]
        or overlay.y + overlay.height > frame.shape[0]
    ):
        raise ValueError(
            f"caption box {overlay.width}x{overlay.height} at ({overlay.x}, {overlay.y}) "
            f"does not fit a {frame.shape[1]}x{frame.shape[0]} frame"
        )
    return frame[overlay.y : overlay.y + overlay.height, overlay.x : overlay.x + overlay.width]


def _blend(region: np.ndarray, overlay: CaptionOverlay) -> np.ndarray:
    return cv2.blendLinear(overlay._rgb, region, overlay._alpha, overlay._inv_alpha)


def composite_overlay(frame: np.ndarray, overlay: CaptionOverlay, opacity: float = 1.0) -> None:
    """Alpha-blend ``overlay`` onto ``frame`` in place, touching only the overlay's box."""
    region = _caption_region(frame, overlay)
    if not 0.0 <= opacity <= 1.0:  # also rejects NaN
        raise ValueError(f"opacity must be within [0, 1], got {opacity}")
    if opacity == 0.0:
        return
    blended = _blend(region, overlay)
    if opacity < 1.0:
        # A uniform second blend is far cheaper than rebuilding per-pixel weights for every fade frame.
        blended = cv2.addWeighted(blended, opacity, region, 1.0 - opacity, 0.0)
    region[...] = blended


# --- legibility --------------------------------------------------------------------------------------------------
# WCAG 2.x AA asks 4.5:1 of body text and 3:1 of large text (24 CSS px, or 18.7 CSS px bold). A caption at its
# starting size is about 23 CSS px and bold on a phone held upright, so formally "large"; but long lines shrink it
# to about 10 CSS px, it is gone before it can be re-read, it sits on moving picture, and most viewers get it
# through the 360p/720p rungs, which soften its edges. The body-text bar is the one that holds for every caption.
LEGIBLE_CONTRAST = 4.5
# A caption reads as well as its worst-lit edges: a bright patch behind one word of the line must count.
_EDGE_PERCENTILE = 5
# A scrim aims above the bar: the check measures the frame after the mezzanine's 4:2:0 encode and decode, which
# costs captions up to ~2 % of their contrast (measured at CRF 16-30), so 10 % is ample headroom.
_SCRIM_TARGET = LEGIBLE_CONTRAST * 1.10
_SRGB_GAMMA = 2.2  # scaling a pixel's sRGB values by k scales its linear luminance by about k ** 2.2
_SCRIM_STEP = 0.1  # strength added per try where the solved scrim still falls short
_SRGB_CODES = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_SRGB_CODES <= 0.04045, _SRGB_CODES / 12.92, ((_SRGB_CODES + 0.055) / 1.055) ** 2.4)
_LINEAR_LUT = np.repeat(_LINEAR[None, :, None], 3, axis=2).astype(np.float32)  # per channel, for cv2.LUT
_RELATIVE_LUMINANCE = np.array([[0.2126, 0.7152, 0.0722]], dtype=np.float32)  # WCAG 2.x (Rec. 709 primaries)


def _window_sum(image: np.ndarray, window: int) -> np.ndarray:
    return cv2.boxFilter(image, -1, (window, window), normalize=False, borderType=cv2.BORDER_CONSTANT)


def caption_glyphs(coverage: np.ndarray) -> CaptionGlyphs:
    """The legibility geometry of a caption whose glyph fill covers ``coverage`` ((h, w) uint8, the overlay's box).

    The ring the text is read against reaches one stem width out from the strokes. That follows WCAG's reading of
    outlined text (Understanding SC 1.4.3): a narrow border counts as part of the letter, while a halo wide enough
    to fill in the letters' inner details (counters, the gaps between letters) counts as their background. A
    stem-wide outline or plate fills the ring; a thinner outline leaves part of it to the picture, so a hairline
    outline over a bright dress measures as poorly as it reads.
    """
    glyph = (coverage >= 128).astype(np.uint8)
    if not glyph.any():
        raise ValueError("caption has no glyph pixels to measure")
    inside = cv2.distanceTransform(glyph, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - glyph, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # A stroke is twice as wide as its medial axis (the inside distance's ridge) is deep.
    ridge = (inside > 0) & (inside >= cv2.dilate(inside, np.ones((3, 3), np.uint8)))
    stem = max(2.0, 2.0 * float(np.median(inside[ridge])))
    # Core and ring skip the one-pixel anti-aliased edge, which belongs to neither side.
    core = (inside > 1).astype(np.float32)
    ring = ((outside > 1) & (outside <= stem)).astype(np.float32)
    fade = np.clip(2.0 - outside / stem, 0.0, 1.0)
    halo = (fade * fade * (3.0 - 2.0 * fade)).astype(np.float32)  # smoothstep: no visible edge to the scrim
    # Samples average over about a letter (two stems either side of the edge): a viewer reads letter by letter.
    window = 2 * math.ceil(2 * stem) + 1
    core_weight, ring_weight = _window_sum(core, window), _window_sum(ring, window)
    edge = (glyph > 0) & (cv2.erode(glyph, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))) == 0)
    rows, cols = np.nonzero(edge & (core_weight > 0) & (ring_weight > 0))
    if not rows.size:
        raise ValueError("caption strokes are too thin to measure (2 px or less)")
    return CaptionGlyphs(coverage=coverage, stem_px=stem, core=core, ring=ring, halo=halo, window=window,
                         sample_rows=rows, sample_cols=cols, core_weight=core_weight[rows, cols],
                         ring_weight=ring_weight[rows, cols])


def _edge_luminances(region: np.ndarray, glyphs: CaptionGlyphs) -> tuple[np.ndarray, np.ndarray]:
    """Per glyph-edge sample, the mean relative luminance of the glyph fill and of the ring around the strokes
    within the sample's window (linear light: at viewing distance the ring's pixels mix as light does)."""
    luminance = cv2.transform(cv2.LUT(region, _LINEAR_LUT), _RELATIVE_LUMINANCE)
    rows, cols = glyphs.sample_rows, glyphs.sample_cols
    text = _window_sum(luminance * glyphs.core, glyphs.window)[rows, cols] / glyphs.core_weight
    surround = _window_sum(luminance * glyphs.ring, glyphs.window)[rows, cols] / glyphs.ring_weight
    return text, surround


def _contrast_ratios(text: np.ndarray, surround: np.ndarray) -> np.ndarray:
    return (np.maximum(text, surround) + 0.05) / (np.minimum(text, surround) + 0.05)


@dataclass(frozen=True)
class CaptionLegibility:
    contrast: float  # WCAG 2.x contrast ratio at the worst-lit 5 % of the glyph edges
    median_contrast: float  # at a typical edge
    text_luminance: float  # relative luminance of the glyph fill (median over the edges)
    surround_luminance: float  # relative luminance of the ring around the strokes where it is brightest (95th pct)
    inside_title_safe: bool
    problem: str | None  # None when the caption is legible and inside the title-safe area


def measure_caption_legibility(frame: np.ndarray, overlay: CaptionOverlay,
                               threshold: float = LEGIBLE_CONTRAST) -> CaptionLegibility:
    """How legible the caption ``overlay`` is in ``frame``, the finished frame it was composited onto (RGB uint8,
    e.g. decoded from the shot's video), and whether it keeps inside the title-safe area."""
    text, surround = _edge_luminances(_caption_region(frame, overlay), overlay.glyphs)
    ratios = _contrast_ratios(text, surround)
    contrast = float(np.percentile(ratios, _EDGE_PERCENTILE))
    rows, cols = np.nonzero(overlay.rgba[..., 3])
    top, bottom = overlay.y + int(rows.min()), overlay.y + int(rows.max()) + 1
    left, right = overlay.x + int(cols.min()), overlay.x + int(cols.max()) + 1
    area = safe_area(frame.shape[1], frame.shape[0])
    inside = area.left <= left and right <= area.right and area.top <= top and bottom <= area.bottom
    caption = " / ".join(overlay.lines) or "caption"
    problems = []
    if contrast < threshold:
        problems.append(f"{caption!r}: contrast {contrast:.2f}:1 at its worst-lit edges, below {threshold:g}:1")
    if not inside:
        problems.append(f"{caption!r}: spans x {left}-{right}, y {top}-{bottom}, outside the title-safe area "
                        f"x {area.left}-{area.right}, y {area.top}-{area.bottom}")
    return CaptionLegibility(
        contrast=contrast,
        median_contrast=float(np.median(ratios)),
        text_luminance=float(np.median(text)),
        surround_luminance=float(np.percentile(surround, 95)),
        inside_title_safe=inside,
        problem="; ".join(problems) or None,
    )


def _with_scrim(overlay: CaptionOverlay, strength: float) -> CaptionOverlay:
    """``overlay`` over a black scrim of opacity ``strength`` in its halo."""
    scrim = strength * overlay.glyphs.halo
    combined = overlay._alpha + scrim * overlay._inv_alpha
    # Under the overlay the scrim is black, so the overlay's colour keeps its own share of the combined alpha.
    share = np.divide(overlay._alpha, combined, out=np.zeros_like(combined), where=combined > 0)
    rgba = np.dstack([overlay._rgb * share[..., None], combined * 255.0])
    return dataclasses.replace(overlay, rgba=np.round(rgba).astype(np.uint8))


def adapt_to_background(overlay: CaptionOverlay, frame: np.ndarray) -> CaptionOverlay:
    """``overlay`` made legible over ``frame`` (the graded frame it is about to be composited onto): itself where
    it already measures above the bar there, otherwise over a dark scrim in its halo just strong enough that it
    does. The scrim follows the background frame by frame, so what it holds steady is the surround's luminance:
    it deepens under a bright dress and vanishes over a dark street."""
    region = _caption_region(frame, overlay)
    text, surround = _edge_luminances(_blend(region, overlay), overlay.glyphs)
    if np.percentile(_contrast_ratios(text, surround), _EDGE_PERCENTILE) >= _SCRIM_TARGET:
        return overlay
    # Where the plain caption falls short the ring is mostly picture, so the scrim scales the surround's luminance
    # by about (1 - strength) ** gamma: solve that per edge sample, for the same percentile the measure takes.
    allowed = np.maximum((text + 0.05) / _SCRIM_TARGET - 0.05, 0.0)
    keep = np.clip(allowed / np.maximum(surround, 1e-6), 0.0, 1.0) ** (1.0 / _SRGB_GAMMA)
    strength = 1.0 - float(np.percentile(keep, _EDGE_PERCENTILE))
    while True:
        scrimmed = _with_scrim(overlay, strength)
        text, surround = _edge_luminances(_blend(region, scrimmed), overlay.glyphs)
        if strength >= 1.0 or np.percentile(_contrast_ratios(text, surround), _EDGE_PERCENTILE) >= _SCRIM_TARGET:
            return scrimmed
        strength = min(1.0, strength + _SCRIM_STEP)


# --- WebVTT ------------------------------------------------------------------------------------------------------
def _vtt_escape(text: str) -> str:
    return " ".join(text.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_time(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def build_webvtt(cues: list[Cue]) -> str:
    """A WebVTT document with one voice-tagged cue per line; overlaps are resolved by ending a cue where the next
    one starts, so players never stack two captions."""
    timed: list[tuple[int, int, Cue]] = []
    for cue in cues:
        if not (math.isfinite(cue.start_s) and math.isfinite(cue.end_s)) or cue.start_s < 0:
            raise ValueError(f"cue {cue.text!r}: times must be finite and non-negative")
        if not cue.text.strip():
            raise ValueError(f"cue at {cue.start_s:.3f}s has no text")
        timed.append((round(cue.start_s * 1000), round(cue.end_s * 1000), cue))
    timed.sort(key=lambda item: (item[0], item[1]))

    blocks = ["WEBVTT"]
    for index, (start, end, cue) in enumerate(timed):
        if index + 1 < len(timed):
            end = min(end, timed[index + 1][0])
        if end <= start:
            raise ValueError(
                f"cue {cue.text!r} at {cue.start_s:.3f}s has no duration left (ends at or before its start, "
                "or another cue starts at the same time)"
            )
        speaker = _vtt_escape(cue.speaker)
        body = _vtt_escape(cue.text)
        payload = f"<v {speaker}>{body}</v>" if speaker else body
        blocks.append(f"{_vtt_time(start)} --> {_vtt_time(end)}\n{payload}")
    return "\n\n".join(blocks) + "\n"


def caption_opacity(t_s: float, cue: Cue, fade_s: float = 0.12) -> float:
    """Opacity of ``cue``'s caption at ``t_s``: a short linear fade in and out, 0 outside the cue."""
    if not cue.start_s <= t_s < cue.end_s:
        return 0.0
    fade = min(max(fade_s, 0.0), (cue.end_s - cue.start_s) / 2)
    if fade == 0.0:
        return 1.0
    return float(min(1.0, (t_s - cue.start_s) / fade, (cue.end_s - t_s) / fade))

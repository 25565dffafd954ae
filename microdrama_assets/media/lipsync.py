"""Mouth animation driven by the speech: espeak-ng phonemes pick the mouth shape, the audio envelope how far
it opens.

Phonemes alone give the right shapes but a flat, robotic rhythm; the RMS envelope alone gives rhythm but
flaps on closed consonants. Combined, the mouth closes for m/b/p, shows teeth on "ee", rounds on "oo", and
opens as wide as the voice is loud.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np

from .speech import Speech


class Viseme(IntEnum):
    REST = 0  # silence
    MBP = 1  # lips pressed: m, b, p
    FV = 2  # lower lip under the upper teeth: f, v
    TH_L = 3  # tongue tip visible or behind the teeth: th, l, n, t, d
    SIBILANT = 4  # teeth together, lips apart: s, z, sh, ch
    OTHER = 5  # back consonants with a neutral, slightly open mouth: k, g, h, ng, r (uvular)
    WIDE = 6  # spread lips, teeth showing: e, i, y
    ROUND = 7  # rounded, protruded lips: o, u, w
    OPEN = 8  # jaw dropped: a, schwa


# How open each shape is at full voice (the envelope scales it down).
_OPENNESS = np.array([0.0, 0.04, 0.18, 0.4, 0.28, 0.5, 0.72, 0.78, 1.0], np.float32)

# espeak-ng mnemonics (stress marks already stripped by speech.py). Full symbols first, then the first letter.
_BY_SYMBOL = {
    "tS": Viseme.SIBILANT, "dZ": Viseme.SIBILANT, "aI": Viseme.OPEN, "aU": Viseme.OPEN, "oU": Viseme.ROUND,
    "OI": Viseme.ROUND, "eI": Viseme.WIDE, "e@": Viseme.WIDE, "i@": Viseme.WIDE, "U@": Viseme.ROUND,
    "3:": Viseme.ROUND, "**": Viseme.TH_L, "n^": Viseme.TH_L, "l^": Viseme.TH_L,
}
_BY_FIRST_LETTER = {
    **dict.fromkeys("pbmB", Viseme.MBP),  # B: the Spanish bilabial approximant
    **dict.fromkeys("fv", Viseme.FV),
    **dict.fromkeys("TDlntdrLJ", Viseme.TH_L),
    **dict.fromkeys("szSZcC", Viseme.SIBILANT),
    **dict.fromkeys("kgNhxGqRX?", Viseme.OTHER),
    **dict.fromkeys("eEiIjy", Viseme.WIDE),
    **dict.fromkeys("oOuUwYW09", Viseme.ROUND),
    **dict.fromkeys("aAV&@36", Viseme.OPEN),
}

_ENVELOPE_GAMMA = 0.6  # < 1 lifts quiet syllables so soft speech still moves the mouth
_ENVELOPE_WEIGHT = 0.65  # share of openness taken from the loudness; the rest from the viseme's shape
_COARTICULATION = np.array([0.2, 0.6, 0.2], np.float32)  # centred: neighbours blend in, nothing lags


def viseme_for(symbol: str) -> Viseme:
    """The mouth shape for an espeak-ng phoneme mnemonic; unknown symbols get a neutral consonant shape."""
    if symbol in _BY_SYMBOL:
        return _BY_SYMBOL[symbol]
    return _BY_FIRST_LETTER.get(symbol[:1], Viseme.OTHER) if symbol else Viseme.REST


@dataclass(frozen=True)
class MouthTrack:
    openness: np.ndarray  # float32 (n_frames,), 0 = closed, 1 = wide open
    visemes: np.ndarray  # int8 (n_frames,) of Viseme values


@dataclass(frozen=True)
class MouthPath:
    """Where one character's mouth is in every frame of a shot (the motion stage tracks it through the camera
    move): centre, width at rest, and the lip colour of the painted face."""

    xy: np.ndarray  # float (n_frames, 2) pixel centres
    width: np.ndarray  # float (n_frames,) pixels
    lip_rgb: tuple[int, int, int]

    @staticmethod
    def from_track(entry: dict) -> "MouthPath":
        """From one character's entry in the shot clip's track file (``mouths`` in clip_track.json)."""
        return MouthPath(np.asarray(entry["xy"], np.float64), np.asarray(entry["width"], np.float64),
                         tuple(int(c) for c in entry["lip_rgb"]))


def speech_envelope(samples: np.ndarray, sample_rate: int, n_frames: int, fps: int, start_s: float = 0.0) -> np.ndarray:
    """RMS of the audio heard during each video frame, for ``samples`` placed at ``start_s`` (float32, n_frames)."""
    squares = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    frame_edges_s = np.arange(n_frames + 1) / fps - start_s
    edges = np.clip(np.round(frame_edges_s * sample_rate).astype(np.int64), 0, len(samples))
    per_frame = sample_rate / fps
    return np.sqrt(np.maximum(squares[edges[1:]] - squares[edges[:-1]], 0.0) / per_frame).astype(np.float32)


def _frame_visemes(speech: Speech, start_s: float, n_frames: int, fps: int) -> np.ndarray:
    """Per frame, the viseme of the phoneme covering most of it; frames with no phoneme are REST."""
    visemes = np.full(n_frames, Viseme.REST, np.int8)
    if not speech.phonemes:
        return visemes
    starts = np.array([p.start_s for p in speech.phonemes]) + start_s
    ends = np.array([p.end_s for p in speech.phonemes]) + start_s
    shapes = np.array([viseme_for(p.symbol) for p in speech.phonemes], np.int8)
    first = max(0, int(np.floor(starts.min() * fps)))
    last = min(n_frames, int(np.ceil(ends.max() * fps)))
    if last <= first:
        return visemes
    frame_start = np.arange(first, last)[:, None] / fps
    overlap = np.clip(np.minimum(frame_start + 1 / fps, ends) - np.maximum(frame_start, starts), 0, None)
    # A lip closure is brief but the most visible shape: let it win a frame it shares with a longer vowel.
    overlap[:, shapes == Viseme.MBP] *= 1.6
    covered = overlap.max(axis=1) > 0
    visemes[first:last] = np.where(covered, shapes[overlap.argmax(axis=1)], Viseme.REST)
    return visemes


def mouth_track(placed: list[tuple[float, Speech]], n_frames: int, fps: int = 30) -> MouthTrack:
    """Mouth openness and shape per frame for one character's lines, each placed at (start_s within the shot).

    Frames outside every line are REST with openness exactly 0.
    """
    openness = np.zeros(n_frames, np.float32)
    visemes = np.full(n_frames, Viseme.REST, np.int8)
    speaking = np.zeros(n_frames, bool)
    for start_s, speech in placed:
        envelope = speech_envelope(speech.samples, speech.sample_rate, n_frames, fps, start_s)
        loudest = float(np.percentile(envelope[envelope > 0], 95)) if np.any(envelope > 0) else 0.0
        if loudest == 0.0:
            continue
        level = np.clip(envelope / loudest, 0.0, 1.0) ** _ENVELOPE_GAMMA
        shapes = _frame_visemes(speech, start_s, n_frames, fps)
        shape_open = _OPENNESS[shapes]
        line_open = level * (_ENVELOPE_WEIGHT + (1 - _ENVELOPE_WEIGHT) * shape_open)
        line_open[shapes == Viseme.MBP] *= 0.15  # pressed lips stay nearly shut however loud the hum
        frame_index = np.arange(n_frames)
        in_line = ((frame_index + 1) / fps > start_s) & (frame_index / fps < start_s + speech.duration_s)
        openness = np.where(in_line, np.maximum(openness, line_open), openness)
        visemes = np.where(in_line & (shapes != Viseme.REST), shapes, visemes)
        speaking |= in_line & (envelope > 0)  # digital silence inside a line (a comma's pause) closes the mouth
    if n_frames:
        openness = np.convolve(np.pad(openness, 1, mode="edge"), _COARTICULATION, mode="valid")
    openness = np.where(speaking, np.clip(openness, 0.0, 1.0), 0.0).astype(np.float32)
    return MouthTrack(openness, visemes.astype(np.int8))


# ---------------------------------------------------------------------------------------------- drawing

_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel centres and axes keep small mouths from jittering
_SCALE = 1 << _SHIFT
_INTERIOR_RGB = np.array([52, 14, 20], np.float32)
_TEETH_RGB = np.array([236, 232, 222], np.float32)
_TONGUE_RGB = np.array([176, 70, 78], np.float32)

# Per viseme: mouth width relative to width_px, and how much of the opening height the teeth cover.
_WIDTH_FACTOR = {Viseme.WIDE: 1.1, Viseme.SIBILANT: 1.05, Viseme.ROUND: 0.62, Viseme.OPEN: 0.95}
_TEETH_SHARE = {Viseme.WIDE: 0.35, Viseme.SIBILANT: 0.5, Viseme.FV: 0.6, Viseme.TH_L: 0.25}
_CLOSED_BELOW = 0.06


def _fixed(value: float) -> int:
    return int(round(value * _SCALE))


def _ellipse_mask(shape: tuple[int, int], center: tuple[float, float], half_w: float, half_h: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (_fixed(center[0]), _fixed(center[1])), (_fixed(half_w), _fixed(half_h)), 0, 0, 360, 255,
                thickness=-1, lineType=cv2.LINE_AA, shift=_SHIFT)
    return mask


def _blend(region: np.ndarray, mask: np.ndarray, rgb: np.ndarray) -> None:
    alpha = mask.astype(np.float32)[..., None] / 255.0
    region += alpha * (rgb - region)


def draw_mouth(frame: np.ndarray, center_xy: tuple[float, float], width_px: float, openness: float, viseme: int,
               lip_rgb: tuple[int, int, int]) -> None:
    """Draw the mouth in place (anti-aliased): a lip line when closed, otherwise a dark opening framed by lips,
    with teeth for spread and fricative shapes, a tongue hint when wide open, a rounder opening for o/u."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"draw_mouth needs a uint8 RGB frame shaped (h, w, 3), got {frame.dtype} {frame.shape}")
    if width_px <= 0:
        raise ValueError(f"mouth width must be positive, got {width_px}")
    shape = Viseme(viseme)
    openness = float(np.clip(openness, 0.0, 1.0))
    mouth_w = width_px * _WIDTH_FACTOR.get(shape, 1.0)
    lip = max(1.0, width_px * 0.07)  # lip thickness

    # Work on a crop around the mouth: cheap, and nothing outside it can change.
    reach_x = mouth_w / 2 + lip * 2 + 2
    reach_y = width_px * 0.45 + lip * 2 + 2
    height, width = frame.shape[:2]
    x0, x1 = max(0, int(center_xy[0] - reach_x)), min(width, int(np.ceil(center_xy[0] + reach_x)))
    y0, y1 = max(0, int(center_xy[1] - reach_y)), min(height, int(np.ceil(center_xy[1] + reach_y)))
    if x1 <= x0 or y1 <= y0:
        return  # mouth entirely off-frame
    region = frame[y0:y1, x0:x1].astype(np.float32)
    center = (center_xy[0] - x0, center_xy[1] - y0)
    lips_rgb = np.array(lip_rgb, np.float32)
    box = region.shape[:2]

    if openness < _CLOSED_BELOW or shape in (Viseme.REST, Viseme.MBP):
        line = np.zeros(box, np.uint8)
        half = mouth_w / 2 * (0.9 if shape == Viseme.MBP else 1.0)  # pressed lips pull in a little
        thickness = max(1, round(lip * (1.3 if shape == Viseme.MBP else 1.0)))
        cv2.line(line, (_fixed(center[0] - half), _fixed(center[1])), (_fixed(center[0] + half), _fixed(center[1])),
                 255, thickness=thickness, lineType=cv2.LINE_AA, shift=_SHIFT)
        _blend(region, line, lips_rgb)
    else:
        if shape == Viseme.ROUND:
            opening_h = mouth_w * (0.35 + 0.65 * openness)  # o/u read as a round opening even when quiet
        else:
            opening_h = width_px * 0.42 * openness
        half_w, half_h = mouth_w / 2, max(opening_h / 2, 0.75)
        _blend(region, _ellipse_mask(box, center, half_w + lip * 0.6, half_h + lip), lips_rgb)
        interior = _ellipse_mask(box, center, half_w, half_h)
        _blend(region, interior, _INTERIOR_RGB)
        rows = np.arange(box[0], dtype=np.float32)[:, None] - (center[1] - half_h)  # rows below the opening's top
        teeth_share = _TEETH_SHARE.get(shape, 0.0)
        if teeth_share:
            band = np.clip(teeth_share * 2 * half_h - rows + 0.5, 0.0, 1.0)  # soft lower edge
            _blend(region, (interior * band).astype(np.uint8), _TEETH_RGB)
        if shape == Viseme.OPEN and openness > 0.4:
            tongue = np.clip(rows - 1.4 * half_h + 0.5, 0.0, 1.0)  # lower part of the opening
            _blend(region, (interior * tongue * 0.8).astype(np.uint8), _TONGUE_RGB)
    frame[y0:y1, x0:x1] = np.clip(np.round(region), 0, 255).astype(np.uint8)


# What the finished picture must show, measured from its pixels (see measure_lip_sync).
MIN_SYNC_CORRELATION = 0.6
MAX_SYNC_LAG_FRAMES = 1
MIN_SPEECH_FRAMES = 6  # fewer voiced frames say too little to correlate
# A closed mouth's dark-pixel measure (fraction of width squared) moves by up to 0.05 with camera moves and
# compression on the sample episodes; a talking one spans 0.23-0.30.
SILENT_MOUTH_RANGE = 0.1
_LAGS = range(-4, 5)


def mouth_opening_from_pixels(gray: np.ndarray, center_xy: tuple[float, float], width_px: float) -> float:
    """How open the mouth at ``center_xy`` looks in a greyscale frame: the area darker than half the
    surrounding face's median, over the mouth width squared. The opening is the only dark part of a mouth."""
    x, y = center_xy
    # Just the mouth: the widest opening with its lips reaches 0.3 widths up and down; chin, nose and the face's
    # outline stay out, so a camera move does not read as talking.
    x0, x1 = int(max(0, x - width_px * 0.6)), int(min(gray.shape[1], x + width_px * 0.6))
    y0, y1 = int(max(0, y - width_px * 0.3)), int(min(gray.shape[0], y + width_px * 0.3))
    crop = gray[y0:y1, x0:x1].astype(np.float32)
    if crop.size == 0:
        return 0.0
    return float((crop < 0.5 * np.median(crop)).sum()) / (width_px * width_px)


@dataclass(frozen=True)
class LipSyncMeasure:
    character_id: str
    speech_frames: int  # frames in which this character's voice is heard
    correlation: float | None  # openness seen in the picture vs the voice's loudness, at zero lag
    best_lag_frames: int | None  # the lag that correlates best: positive = picture late
    opening_range: float  # max - min of the pixel measure over the shot

    @property
    def problem(self) -> str | None:
        if self.speech_frames == 0:
            if self.opening_range > SILENT_MOUTH_RANGE:
                return f"{self.character_id} is silent but its mouth moves (range {self.opening_range:.3f})"
            return None
        if self.correlation is None or self.best_lag_frames is None:
            return None
        if abs(self.best_lag_frames) > MAX_SYNC_LAG_FRAMES:
            return (f"{self.character_id}: picture is {self.best_lag_frames:+d} frames off the voice "
                    f"(r = {self.correlation:.2f} in sync)")
        if self.correlation < MIN_SYNC_CORRELATION:
            return (f"{self.character_id}: mouth follows the voice with r = {self.correlation:.2f} "
                    f"< {MIN_SYNC_CORRELATION}")
        return None


def measure_lip_sync(character_id: str, openings: np.ndarray, voice_envelope: np.ndarray) -> LipSyncMeasure:
    """Compare the mouth seen in each frame (``mouth_opening_from_pixels``) with the loudness of the
    character's own voice in that frame (``speech_envelope`` of its lines only)."""
    if openings.shape != voice_envelope.shape:
        raise ValueError(f"{character_id}: {openings.shape[0]} frames of picture, {voice_envelope.shape[0]} of voice")
    voiced = int((voice_envelope > 0).sum())
    opening_range = float(openings.max() - openings.min()) if openings.size else 0.0
    if voiced < MIN_SPEECH_FRAMES or openings.std() == 0:
        return LipSyncMeasure(character_id, voiced, None, None, opening_range)

    def correlation(lag: int) -> float:
        picture = openings[lag:] if lag >= 0 else openings[:lag]
        voice = voice_envelope[:len(voice_envelope) - lag] if lag >= 0 else voice_envelope[-lag:]
        return float(np.corrcoef(picture, voice)[0, 1])

    scores = {lag: correlation(lag) for lag in _LAGS}
    return LipSyncMeasure(character_id, voiced, scores[0], max(scores, key=scores.get), opening_range)

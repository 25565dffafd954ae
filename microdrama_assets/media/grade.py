"""A deterministic colour grade per mood: a 3x4 colour matrix (saturation, white balance, tint) followed by a
per-channel tone curve (contrast, lift, gamma, gain).

Both are tiny tables built once per mood, so grading a 1080x1920 frame is one ``cv2.transform`` and one
``cv2.LUT``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .manifest import Mood

# Rec. 709 luma weights: saturation changes pivot around perceived brightness, so they do not shift exposure.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Look:
    saturation: float  # 1 = unchanged, 0 = greyscale
    white_balance: RGB  # per-channel gain applied before the tone curve
    tint: RGB  # per-channel offset in 0-255 units
    contrast: float  # S-curve amount in [-1, 1]; negative flattens
    lift: RGB  # output level for black, per channel (negative crushes blacks)
    gamma: RGB  # > 1 brightens mid-tones
    gain: RGB  # output level for white, per channel


LOOKS: dict[Mood, Look] = {
    # Cool teal shadows, crushed blacks, slightly desaturated.
    Mood.tense: Look(
        saturation=0.82, white_balance=(0.96, 1.0, 1.03), tint=(-2.0, 1.0, 2.0), contrast=0.35,
        lift=(-0.07, -0.035, -0.025), gamma=(0.97, 1.0, 1.02), gain=(0.98, 1.0, 1.0),
    ),
    # Deep blue, low key.
    Mood.mysterious: Look(
        saturation=0.80, white_balance=(0.93, 0.97, 1.06), tint=(-3.0, -1.0, 4.0), contrast=0.25,
        lift=(-0.03, -0.02, 0.02), gamma=(0.84, 0.86, 0.92), gain=(0.90, 0.93, 1.0),
    ),
    # Amber highlights.
    Mood.warm: Look(
        saturation=1.08, white_balance=(1.05, 1.0, 0.90), tint=(3.0, 1.0, -4.0), contrast=0.15,
        lift=(0.01, 0.005, 0.0), gamma=(1.04, 1.0, 0.95), gain=(1.04, 0.99, 0.86),
    ),
    # Soft pink-gold, lifted blacks.
    Mood.romantic: Look(
        saturation=0.95, white_balance=(1.04, 0.98, 0.96), tint=(4.0, 0.0, 2.0), contrast=-0.12,
        lift=(0.07, 0.035, 0.055), gamma=(1.06, 1.02, 1.0), gain=(1.02, 0.98, 0.92),
    ),
    # Sickly green tint.
    Mood.eerie: Look(
        saturation=0.72, white_balance=(0.96, 1.04, 0.96), tint=(-2.0, 4.0, -2.0), contrast=0.25,
        lift=(-0.02, 0.02, -0.01), gamma=(0.92, 0.98, 0.92), gain=(0.94, 1.0, 0.93),
    ),
    # Bright and gentle.
    Mood.hopeful: Look(
        saturation=1.06, white_balance=(1.02, 1.0, 0.98), tint=(2.0, 2.0, 0.0), contrast=0.05,
        lift=(0.025, 0.025, 0.02), gamma=(1.14, 1.12, 1.1), gain=(1.02, 1.02, 1.0),
    ),
    # Desaturated blue-grey.
    Mood.somber: Look(
        saturation=0.50, white_balance=(0.95, 0.98, 1.05), tint=(-2.0, 0.0, 3.0), contrast=0.10,
        lift=(0.01, 0.015, 0.03), gamma=(0.94, 0.95, 0.97), gain=(0.93, 0.95, 0.98),
    ),
    # Saturated and punchy.
    Mood.playful: Look(
        saturation=1.35, white_balance=(1.02, 1.0, 0.99), tint=(0.0, 0.0, 0.0), contrast=0.30,
        lift=(-0.01, -0.01, -0.01), gamma=(1.05, 1.05, 1.04), gain=(1.03, 1.03, 1.03),
    ),
}


def _mood(mood: Mood | str) -> Mood:
    try:
        return Mood(mood)
    except ValueError:
        raise ValueError(f"unknown mood {mood!r}; choose one of {', '.join(m.value for m in Mood)}") from None


@functools.lru_cache(maxsize=len(Mood))
def _tables(mood: Mood) -> tuple[np.ndarray, np.ndarray]:
    look = LOOKS[mood]

    # Tone curve: S-curve contrast (smoothstep blend keeps 0 and 1 fixed and stays monotonic for |amount| <= 1),
    # then lift/gain remap the black and white points and gamma bends the mid-tones.
    x = np.linspace(0.0, 1.0, 256)
    s_curve = x * x * (3.0 - 2.0 * x)
    toned = x + look.contrast * (s_curve - x)
    channels = []
    for lift, gamma, gain in zip(look.lift, look.gamma, look.gain):
        y = np.clip(lift + toned * (gain - lift), 0.0, 1.0)
        channels.append(np.power(y, 1.0 / gamma))
    lut = np.clip(np.round(np.stack(channels, axis=-1) * 255.0), 0, 255).astype(np.uint8).reshape(256, 1, 3)

    # Colour matrix: saturation around luma, then white balance gains, plus a constant tint.
    grey = np.tile(_LUMA, (3, 1))
    saturation = look.saturation * np.eye(3) + (1.0 - look.saturation) * grey
    matrix = np.diag(look.white_balance) @ saturation
    affine = np.hstack([matrix, np.array(look.tint).reshape(3, 1)]).astype(np.float32)

    lut.flags.writeable = False
    affine.flags.writeable = False
    return lut, affine


def grade_lut(mood: Mood) -> np.ndarray:
    """(256, 1, 3) uint8 per-channel tone curve for ``cv2.LUT``."""
    return _tables(_mood(mood))[0].copy()


def grade_matrix(mood: Mood) -> np.ndarray:
    """(3, 4) float32 colour matrix for ``cv2.transform`` on RGB pixels (last column: offsets in 0-255 units)."""
    return _tables(_mood(mood))[1].copy()


def grade_frame(frame: np.ndarray, mood: Mood) -> np.ndarray:
    """A graded copy of an RGB uint8 frame."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (h, w, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    lut, affine = _tables(_mood(mood))
    return cv2.LUT(cv2.transform(frame, affine), lut)

"""Dialogue placement within a shot, a procedural mood-following music bed (or the user's own music file), and
the episode mix.

The mix follows streaming-platform practice: music and sound effects ducked under speech, integrated loudness
normalised to -16 LUFS (ITU-R BS.1770 via pyloudnorm) and a true-peak ceiling of -1 dBTP, measured on a 4x
oversampled signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pyloudnorm
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

SAMPLE_RATE = 48000
# Delivery targets for the episode's sound (streaming platforms' -16 LUFS; a -1 dBTP ceiling), checked on the
# encoded file. AAC adds inter-sample overshoot on transients (measured up to about 1.1 dB at 128 kb/s), so the
# mix is limited under the ceiling and limited harder if the encoded file still goes over.
TARGET_LUFS, LUFS_TOLERANCE, MAX_TRUE_PEAK_DBTP = -16.0, 1.0, -1.0
MIX_CEILING_DBTP = -1.5
_ENCODED_PEAK_MARGIN_DB = 0.2


class DialogueDoesNotFit(ValueError):
    """A shot's lines (with their lead-in, gaps and tail) are longer than the shot."""


def place_lines(shot_frames: int, line_durations_s: list[float], fps: int = 30, lead_in_s: float = 0.35,
                gap_s: float = 0.25, tail_s: float = 0.3) -> list[float]:
    """Start times (s within the shot) for the lines in order: no overlaps, none running past the shot end.

    Spare time goes partly to the lead-in and the gaps (a beat before each line reads as a reaction) and the
    rest stays at the end, so dialogue keeps the brisk pace of the format instead of spreading thin.
    """
    if any(d <= 0 for d in line_durations_s):
        raise ValueError(f"line durations must be positive, got {line_durations_s}")
    if not line_durations_s:
        return []
    available_s = shot_frames / fps
    gaps = len(line_durations_s) - 1
    needed_s = lead_in_s + sum(line_durations_s) + gaps * gap_s + tail_s
    if needed_s > available_s:
        raise DialogueDoesNotFit(
            f"{len(line_durations_s)} line(s) need {needed_s:.2f} s "
            f"(lead-in {lead_in_s:.2f} s, gaps {gap_s:.2f} s, tail {tail_s:.2f} s) but the shot has {available_s:.2f} s"
        )
    spare_s = available_s - needed_s
    lead_s = lead_in_s + min(0.25 * spare_s, 0.5)
    gap_each_s = gap_s + (min(0.5 * spare_s / gaps, 0.4) if gaps else 0.0)
    starts = []
    cursor_s = lead_s
    for duration_s in line_durations_s:
        # Snap to the sample grid so callers that round to samples cannot push a line past its slot.
        starts.append(math.floor(cursor_s * SAMPLE_RATE) / SAMPLE_RATE)
        cursor_s += duration_s + gap_each_s
    return starts


# ---------------------------------------------------------------------------------------------- music bed

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_DORIAN = (0, 2, 3, 5, 7, 9, 10)
_PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)
_LYDIAN = (0, 2, 4, 6, 7, 9, 11)
_MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)


@dataclass(frozen=True)
class _Style:
    scale: tuple[int, ...]  # semitones above the tonic
    tonic_midi: int  # pad register tonic before the seed's transposition
    bpm: float
    progression: tuple[int, ...]  # scale degrees (0-based), one chord each
    bars_per_chord: int
    sevenths: bool
    detune_cents: float  # spread of the two oscillators in each pad voice: chorus, or unease when wide
    brightness: float  # upper-harmonic weight of the pad wave, 0 = pure sine
    tremolo_hz: float  # slow amplitude drift; 0 = steady
    bass_steps: tuple[int, ...]  # per eighth note of a bar: 0 = let ring, 1 = root, 5 = fifth, 8 = octave
    bass_decay_s: float
    pulse: str  # "tick" (muted hat), "thump" (heartbeat), "pluck" (arpeggiated chord tones) or "none"
    pulse_density: float  # chance that each sixteenth of the seed's pattern plays
    levels: tuple[float, float, float]  # pad, bass, pulse


_STYLES: dict[str, _Style] = {
    "tense": _Style(_MINOR, 57, 96, (0, 0, 5, 4), 1, False, 9, 0.55, 0.0, (1, 1, 1, 1, 1, 1, 1, 1), 0.18, "thump", 0.3,
                    (0.20, 0.42, 0.55)),
    "mysterious": _Style(_DORIAN, 55, 74, (0, 3, 6, 0), 2, True, 7, 0.35, 0.12, (1, 0, 0, 1, 0, 0, 0, 0), 0.6, "pluck",
                         0.25, (0.30, 0.30, 0.22)),
    "warm": _Style(_MAJOR, 60, 80, (0, 4, 5, 3), 1, True, 5, 0.30, 0.0, (1, 0, 0, 0, 5, 0, 0, 0), 0.7, "tick", 0.5,
                   (0.32, 0.30, 0.10)),
    "romantic": _Style(_MAJOR, 62, 68, (0, 5, 3, 4), 1, True, 6, 0.25, 0.08, (1, 0, 0, 5, 0, 0, 8, 0), 0.8, "pluck",
                       0.35, (0.34, 0.26, 0.16)),
    "eerie": _Style(_PHRYGIAN, 53, 56, (0, 1, 0, 4), 2, False, 28, 0.45, 0.31, (1, 0, 0, 0, 0, 0, 0, 0), 2.0, "pluck",
                    0.12, (0.34, 0.30, 0.14)),
    "hopeful": _Style(_LYDIAN, 60, 104, (3, 0, 4, 5), 1, False, 5, 0.40, 0.0, (1, 0, 1, 5, 0, 1, 5, 0), 0.3, "pluck",
                      0.55, (0.28, 0.30, 0.18)),
    "somber": _Style(_MINOR, 55, 60, (0, 5, 2, 6), 2, True, 6, 0.20, 0.07, (1, 0, 0, 0, 0, 0, 0, 0), 1.6, "none", 0.0,
                     (0.36, 0.30, 0.0)),
    "playful": _Style(_MIXOLYDIAN, 64, 118, (0, 3, 6, 3), 1, False, 4, 0.50, 0.0, (1, 0, 5, 0, 8, 0, 5, 0), 0.16,
                      "pluck", 0.6, (0.24, 0.34, 0.22)),
}

_TABLE_BITS = 12
_TABLE_SIZE = 2**_TABLE_BITS
_SECTION_RMS = 0.1  # every mood section sits at the same level (-20 dBFS) so crossfades do not jump
_CROSSFADE_S = 0.8
_FADE_IN_S = 0.3
_FADE_OUT_S = 1.5
_PAD_ATTACK_S = 0.35
_PAD_RELEASE_S = 0.6


def _midi_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _wavetable(brightness: float) -> np.ndarray:
    """One cycle of a soft pad wave: a sine with gently falling harmonics (band-limited, so no aliasing)."""
    x = np.arange(_TABLE_SIZE) * (2 * np.pi / _TABLE_SIZE)
    wave = np.sin(x) + sum(brightness / h * np.sin(h * x) for h in range(2, 6))
    return (wave / np.abs(wave).max()).astype(np.float32)


def _oscillator(table: np.ndarray, hz: float, sample_index: np.ndarray, phase: float) -> np.ndarray:
    """Wavetable lookup with a 32-bit fixed-point phase accumulator: integer maths that wraps for free."""
    increment = np.uint32(round(hz / SAMPLE_RATE * 2**32))
    start = np.uint32(int(phase * 2**32) % 2**32)
    return table[(sample_index * increment + start) >> np.uint32(32 - _TABLE_BITS)]


def _grid_step(t: np.ndarray, step_s: float) -> np.ndarray:
    """Index of the grid step (of ``step_s`` seconds) each sample falls in."""
    return (t * (1.0 / step_s)).astype(np.int64)


def _chord_midi(style: _Style, degree: int, tonic: int) -> list[int]:
    """Stacked thirds on a scale degree, wrapping into the next octave."""
    steps = (0, 2, 4, 6) if style.sevenths else (0, 2, 4)
    size = len(style.scale)
    return [tonic + 12 * ((degree + s) // size) + style.scale[(degree + s) % size] for s in steps]


def _render_section(style: _Style, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` stereo samples of one mood: pads, bass and pulse, all on the same tempo grid."""
    tonic = style.tonic_midi + int(rng.integers(-2, 4))
    rotation = int(rng.integers(0, len(style.progression)))
    progression = style.progression[rotation:] + style.progression[:rotation]
    beat_s = 60.0 / style.bpm
    chord_len = round(style.bars_per_chord * 4 * beat_s * SAMPLE_RATE)
    n_chords = -(-n // chord_len)
    chords = [_chord_midi(style, progression[k % len(progression)], tonic) for k in range(n_chords)]
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros((n, 2), np.float32)

    # Pads: each chord its own enveloped block so consecutive chords overlap through the release.
    table = _wavetable(style.brightness)
    release = round(_PAD_RELEASE_S * SAMPLE_RATE)
    attack = round(_PAD_ATTACK_S * SAMPLE_RATE)
    spread = 2.0 ** (style.detune_cents / 1200.0)
    block_env = np.ones(chord_len + release, np.float32)
    block_env[:attack] = np.sin(np.linspace(0, np.pi / 2, attack)) ** 2
    block_env[chord_len:] = np.cos(np.linspace(0, np.pi / 2, release)) ** 2
    sample_index = np.arange(chord_len + release, dtype=np.uint32)
    for k, chord in enumerate(chords):
        start = k * chord_len
        length = min(chord_len + release, n - start)
        block = np.zeros((length, 2), np.float32)
        for midi in chord:
            hz = float(_midi_hz(midi))
            phases = rng.random(2)
            block[:, 0] += _oscillator(table, hz / spread, sample_index[:length], phases[0])
            block[:, 1] += _oscillator(table, hz * spread, sample_index[:length], phases[1])
        out[start : start + length] += block * (block_env[:length, None] * (style.levels[0] / len(chord)))
    if style.tremolo_hz:
        drift = np.sin((2 * np.pi * style.tremolo_hz * t + rng.random() * 2 * np.pi).astype(np.float32))
        out *= (np.float32(0.875) - np.float32(0.125) * drift)[:, None]  # gain wanders between 0.75 and 1

    # Bass: eighth-note grid; a note rings (decaying) until the next one starts.
    eighth_s = beat_s / 2
    step = _grid_step(t, eighth_s)
    n_eighths = int(step[-1]) + 1
    pattern = np.array(style.bass_steps)[np.arange(n_eighths) % len(style.bass_steps)]
    onsets = np.flatnonzero(pattern > 0)
    note_starts = np.maximum.accumulate(np.where(pattern > 0, np.arange(n_eighths), 0))
    note_ends = np.append(onsets, n_eighths)[np.searchsorted(onsets, np.arange(n_eighths), side="right")]
    offsets = np.array([0, 0, 0, 0, 0, 7, 0, 0, 12])[pattern[note_starts]]  # root, fifth or octave
    chord_of_step = np.minimum((note_starts * eighth_s * SAMPLE_RATE / chord_len).astype(int), n_chords - 1)
    roots = np.array([chord[0] for chord in chords])[chord_of_step] - 24
    bass_hz = _midi_hz(roots + offsets).astype(np.float32)
    into_note = (t - note_starts[step] * eighth_s).astype(np.float32)
    left_in_note = (note_ends[step] * eighth_s - t).astype(np.float32)
    phase = np.float32(2 * np.pi) * bass_hz[step] * into_note
    envelope = (np.exp(-into_note / np.float32(style.bass_decay_s)) * np.clip(into_note / np.float32(0.008), 0, 1)
                * np.clip(left_in_note / np.float32(0.01), 0, 1))
    out += ((np.sin(phase) + np.float32(0.25) * np.sin(2 * phase)) * envelope * np.float32(style.levels[1]))[:, None]

    # Pulse: a seeded sixteenth-note pattern, always including the downbeat.
    if style.pulse != "none":
        sixteenth_s = beat_s / 4
        hits = rng.random(16) < style.pulse_density
        hits[0] = True
        velocity = np.where(hits, 0.6 + 0.4 * rng.random(16), 0.0).astype(np.float32)
        step16 = _grid_step(t, sixteenth_s)
        into = (t - step16 * sixteenth_s).astype(np.float32)
        level = velocity[step16 % 16] * np.float32(style.levels[2])
        if style.pulse == "tick":
            noise = rng.standard_normal(n, dtype=np.float32)
            hiss = np.diff(noise, prepend=np.float32(0)) * np.float32(0.5)  # first difference: a cheap high-pass
            mono = hiss * np.exp(-into / np.float32(0.02)) * level
            out += mono[:, None] * np.array([0.8, 1.0], np.float32)
        elif style.pulse == "thump":
            # Heartbeat: a sine whose pitch falls from 88 to 48 Hz (phase is the integral of that glide).
            glide = np.float32(40 * 0.03) * (1 - np.exp(-into / np.float32(0.03)))
            sweep = np.float32(2 * np.pi) * (np.float32(48) * into + glide)
            mono = np.sin(sweep) * np.exp(-into / np.float32(0.12)) * np.clip(into / np.float32(0.004), 0, 1) * level
            out += mono[:, None]
        else:
            # Pluck: chord tones an octave above the pad, arpeggiated up the triad, panned alternately.
            n_steps = int(step16[-1]) + 1
            chord_of_step = np.minimum((np.arange(n_steps) * sixteenth_s * SAMPLE_RATE / chord_len).astype(int),
                                       n_chords - 1)
            triads = np.array([chord[:3] for chord in chords])
            pluck_hz = _midi_hz(triads[chord_of_step, np.arange(n_steps) % 3] + 12).astype(np.float32)
            mono = (np.sin(np.float32(2 * np.pi) * pluck_hz[step16] * into) * np.exp(-into / np.float32(0.18))
                    * np.clip(into / np.float32(0.003), 0, 1) * level)
            pan = np.array([0.35, -0.35], np.float32)[step16 % 2]
            out += np.stack([mono * (1 - pan), mono * (1 + pan)], axis=1)

    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    return out * (_SECTION_RMS / rms) if rms > 0 else out


def _equal_power_fade(n: int, fade_in: bool) -> np.ndarray:
    ramp = np.sin(np.linspace(0.0, np.pi / 2, n)) if fade_in else np.cos(np.linspace(0.0, np.pi / 2, n))
    return ramp.astype(np.float32)


def render_music_bed(moods: list[tuple[str, float]], seed: int) -> np.ndarray:
    """Stereo float32 at ``SAMPLE_RATE`` following each shot's mood: (mood, duration_s) per shot, in order.

    Consecutive shots with the same mood share one continuous section; mood changes crossfade (equal power)
    across the cut. The same ``seed`` always renders the same bed.
    """
    for mood, duration_s in moods:
        if mood not in _STYLES:
            raise ValueError(f"unknown mood {mood!r} for the music bed; choose one of {', '.join(_STYLES)}")
        if duration_s <= 0:
            raise ValueError(f"shot duration must be positive, got {duration_s} s for mood {mood!r}")
    ends = np.round(np.cumsum([d for _, d in moods]) * SAMPLE_RATE).astype(int)
    total = int(ends[-1]) if len(ends) else 0
    bed = np.zeros((total, 2), np.float32)

    sections: list[tuple[str, int, int]] = []  # (mood, first sample, end sample)
    start = 0
    for (mood, _), end in zip(moods, ends):
        end = int(end)
        if end == start:
            continue  # a shot shorter than half a sample
        if sections and sections[-1][0] == mood:
            sections[-1] = (mood, sections[-1][1], end)
        else:
            sections.append((mood, start, end))
        start = end
    # Each crossfade is centred on its cut and reaches at most halfway into either neighbour.
    half_fades = [int(min(_CROSSFADE_S * SAMPLE_RATE, a_end - a_first, b_end - b_first) // 2)
                  for (_, a_first, a_end), (_, b_first, b_end) in zip(sections, sections[1:])]

    for index, (mood, first, end) in enumerate(sections):
        lead = half_fades[index - 1] if index > 0 else 0
        tail = half_fades[index] if index < len(sections) - 1 else 0
        rng = np.random.default_rng((seed, index, list(_STYLES).index(mood)))
        audio = _render_section(_STYLES[mood], end - first + lead + tail, rng)
        if lead:
            audio[: 2 * lead] *= _equal_power_fade(2 * lead, True)[:, None]
        if tail:
            audio[-2 * tail :] *= _equal_power_fade(2 * tail, False)[:, None]
        bed[first - lead : end + tail] += audio

    fade_in = min(round(_FADE_IN_S * SAMPLE_RATE), total)
    fade_out = min(round(_FADE_OUT_S * SAMPLE_RATE), total)
    bed[:fade_in] *= _equal_power_fade(fade_in, True)[:, None]
    bed[total - fade_out :] *= _equal_power_fade(fade_out, False)[:, None]
    return bed


# ---------------------------------------------------------------------------------------------- user files

_LOOP_CROSSFADE_S = 1.0


class AudioFileError(ValueError):
    """A user-provided sound file that is missing, cannot be decoded, or holds no audio."""


def decode_audio_file(path: Path, max_samples: int | None = None) -> np.ndarray:
    """Any file FFmpeg reads (wav, mp3, m4a, flac, ogg...) as stereo float32 at ``SAMPLE_RATE``, resampled and
    up/down-mixed by libswresample; decoding stops after ``max_samples`` (a long file is not read past what the
    episode can use)."""
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: has no audio stream")
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
            chunks, decoded = [], 0
            for frame in container.decode(container.streams.audio[0]):
                for resampled in resampler.resample(frame):
                    chunks.append(resampled.to_ndarray())
                    decoded += resampled.samples
                if max_samples is not None and decoded >= max_samples:
                    break
            else:
                chunks.extend(resampled.to_ndarray() for resampled in resampler.resample(None))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:  # PyAV raises the latter on mis-encoded tags
        raise AudioFileError(f"{path}: cannot be decoded as audio ({getattr(exc, 'strerror', None) or exc})") from None
    audio = np.concatenate(chunks, axis=1).T[:max_samples] if chunks else np.zeros((0, 2), np.float32)
    if len(audio) == 0:
        raise AudioFileError(f"{path}: decodes to no samples")
    if not np.isfinite(audio).all():
        raise AudioFileError(f"{path}: decodes to non-finite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def loop_to_length(audio: np.ndarray, n: int, crossfade_s: float = _LOOP_CROSSFADE_S,
                   fade_out_s: float = 0.0) -> np.ndarray:
    """``audio`` (stereo) repeated with equal-power crossfades at the seams, or trimmed, to exactly ``n``
    samples; the last ``fade_out_s`` fade to silence so a trimmed file does not stop dead."""
    if len(audio) == 0:
        raise ValueError("cannot loop empty audio")
    if len(audio) >= n:
        out = audio[:n].astype(np.float32)
    else:
        # A short file crossfades over at most a quarter of itself, so most of each pass is heard as it is.
        fade = min(round(crossfade_s * SAMPLE_RATE), len(audio) // 4)
        seam_out = np.ones(len(audio), np.float32)
        seam_out[len(audio) - fade :] = _equal_power_fade(fade, False)
        seam_in = np.ones(len(audio), np.float32)
        seam_in[:fade] = _equal_power_fade(fade, True)
        out = np.zeros((n + len(audio), 2), np.float32)
        for index, start in enumerate(range(0, n, len(audio) - fade)):
            envelope = seam_out * seam_in if index else seam_out  # the first pass starts as the file does
            out[start : start + len(audio)] += audio * envelope[:, None]
        out = out[:n]
    fade_out = min(round(fade_out_s * SAMPLE_RATE), n)
    if fade_out:
        out[n - fade_out :] *= _equal_power_fade(fade_out, False)[:, None]
    return out


def music_bed_from_file(path: Path, n: int) -> np.ndarray:
    """The user's music file as the episode's bed: ``n`` stereo samples, looped or trimmed, fading out at the end
    like the procedural bed."""
    return loop_to_length(decode_audio_file(path, max_samples=n), n, fade_out_s=_FADE_OUT_S)


# ---------------------------------------------------------------------------------------------- mix

_DUCK_DB = -12.0
_MUSIC_UNDER_DIALOGUE_LU = 6.0  # unducked music sits this far below the speech; ducking adds _DUCK_DB more
# Sound effects are placed around the lines already (media/sfx.py), so they dip less than the music: ambience
# and tails still read under speech, yet nothing competes with a word.
_SFX_DUCK_DB = -8.0
# The SFX layer is rendered with its cue levels relative to dialogue at this loudness; the mix moves it by the
# difference to the episode's actual dialogue loudness, so every cue keeps its place relative to the lines.
SFX_REFERENCE_LUFS = -20.0
_DUCK_BLOCK_S = 0.01
_DUCK_THRESHOLD_DB = -30.0  # relative to the loudest speech block: quieter blocks count as silence
_DUCK_LOOKAHEAD_S = 0.08  # the dip starts just before the first syllable, not on it
_DUCK_HOLD_S = 0.25  # short pauses between words keep the music down instead of pumping
_DUCK_ATTACK_S = 0.05
_DUCK_RELEASE_S = 0.45
_TRUE_PEAK_OVERSAMPLE = 4
_LIMITER_WINDOW_S = 0.01  # gain-reduction ramp length either side of a peak
_LIMITER_MARGIN_DB = 0.1  # headroom for the 4x estimate of the true peak


def _meter() -> pyloudnorm.Meter:
    return pyloudnorm.Meter(SAMPLE_RATE)


def _integrated_lufs(audio: np.ndarray) -> float:
    # pyloudnorm needs at least one 400 ms gating block; shorter audio is measured padded with silence.
    minimum = round(0.4 * SAMPLE_RATE)
    if len(audio) < minimum:
        pad = [(0, minimum - len(audio))] + [(0, 0)] * (audio.ndim - 1)
        audio = np.pad(audio, pad)
    return float(_meter().integrated_loudness(audio.astype(np.float64)))


def _true_peak_per_sample(stereo: np.ndarray) -> np.ndarray:
    """Peak magnitude of the 4x oversampled signal around each original sample, over both channels."""
    channels = np.ascontiguousarray(stereo.T, dtype=np.float32)  # contiguous rows resample ~3x faster than axis 0
    oversampled = np.abs(resample_poly(channels, _TRUE_PEAK_OVERSAMPLE, 1, axis=1))
    per_phase = np.maximum(oversampled[0], oversampled[1]).reshape(-1, _TRUE_PEAK_OVERSAMPLE)
    # Element-wise maxima of the phase columns: much faster than a reduction along a 4-long axis.
    return np.maximum.reduce([per_phase[:, phase] for phase in range(_TRUE_PEAK_OVERSAMPLE)])


def measure_loudness(stereo: np.ndarray) -> tuple[float, float]:
    """(integrated loudness in LUFS, true peak in dBTP); silence gives (-inf, -inf)."""
    if stereo.ndim != 2 or stereo.shape[1] != 2:
        raise ValueError(f"expected stereo audio shaped (n, 2), got {stereo.shape}")
    if len(stereo) == 0:
        return -math.inf, -math.inf
    peak = float(_true_peak_per_sample(stereo.astype(np.float64)).max())
    return _integrated_lufs(stereo), 20 * math.log10(peak) if peak > 0 else -math.inf


def delivery_loudness_problems(audio: np.ndarray, sample_rate: int) -> tuple[float, float, list[str]]:
    """(integrated LUFS, true peak dBTP, what misses the delivery targets) for decoded audio shaped (n, channels)."""
    problems = []
    if sample_rate != SAMPLE_RATE or audio.ndim != 2 or audio.shape[1] != 2:
        channels = audio.shape[1] if audio.ndim == 2 else 1
        return math.nan, math.nan, [f"{channels} channel(s) at {sample_rate} Hz; expected stereo at {SAMPLE_RATE} Hz"]
    loudness, true_peak = measure_loudness(audio)
    if not abs(loudness - TARGET_LUFS) <= LUFS_TOLERANCE:
        problems.append(f"integrated loudness {loudness:.2f} LUFS, outside {TARGET_LUFS} +/- {LUFS_TOLERANCE}")
    if not true_peak <= MAX_TRUE_PEAK_DBTP:
        problems.append(f"true peak {true_peak:.2f} dBTP above {MAX_TRUE_PEAK_DBTP}")
    return loudness, true_peak, problems


def encode_delivery_mix(dialogue: np.ndarray, music: np.ndarray, encode: Callable[[np.ndarray], np.ndarray],
                        attempts: int = 3, sfx: np.ndarray | None = None) -> np.ndarray:
    """The episode mix whose *encoded* form meets the true-peak ceiling: ``encode`` encodes a mix and returns
    it decoded; while the encoded peak is over the ceiling the limiter's ceiling drops by the overshoot. The
    mix returned is always the last one passed to ``encode``."""
    ceiling = MIX_CEILING_DBTP
    for _ in range(attempts):
        mix = mix_episode(dialogue, music, target_lufs=TARGET_LUFS, true_peak_dbtp=ceiling, sfx=sfx)
        _, encoded_peak = measure_loudness(encode(mix))
        if encoded_peak <= MAX_TRUE_PEAK_DBTP - _ENCODED_PEAK_MARGIN_DB:
            break
        ceiling -= encoded_peak - (MAX_TRUE_PEAK_DBTP - _ENCODED_PEAK_MARGIN_DB)
    return mix


def _duck_gain(dialogue: np.ndarray, depth_db: float) -> np.ndarray:
    """Per-sample bed gain: 1 in the clear, ``depth_db`` under speech, with look-ahead, hold, attack, release."""
    block = round(_DUCK_BLOCK_S * SAMPLE_RATE)
    n_blocks = -(-len(dialogue) // block)
    padded = np.pad(dialogue.astype(np.float64), (0, n_blocks * block - len(dialogue)))
    block_rms = np.sqrt(np.mean(padded.reshape(n_blocks, block) ** 2, axis=1))
    loudest = block_rms.max()
    if loudest == 0:
        return np.ones(len(dialogue), np.float32)
    speaking = (block_rms > loudest * 10 ** (_DUCK_THRESHOLD_DB / 20)).astype(np.float64)
    lookahead = round(_DUCK_LOOKAHEAD_S / _DUCK_BLOCK_S)
    hold = round(_DUCK_HOLD_S / _DUCK_BLOCK_S)
    # Ducked wherever speech occurs from `hold` blocks back to `lookahead` blocks ahead.
    speaking = sliding_window_view(np.pad(speaking, (hold, lookahead)), hold + lookahead + 1).max(axis=1)
    target = 10 ** (depth_db * speaking / 20)
    attack = math.exp(-_DUCK_BLOCK_S / _DUCK_ATTACK_S)
    release = math.exp(-_DUCK_BLOCK_S / _DUCK_RELEASE_S)
    gain = np.empty(n_blocks)
    current = 1.0
    for index, wanted in enumerate(target):  # one-pole smoothing at the 10 ms control rate: cheap in Python
        coefficient = attack if wanted < current else release
        current = wanted + coefficient * (current - wanted)
        gain[index] = current
    centres = (np.arange(n_blocks) + 0.5) * block
    return np.interp(np.arange(len(dialogue)), centres, gain).astype(np.float32)


def _limit_true_peak(stereo: np.ndarray, ceiling_dbtp: float, peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth gain reduction so the 4x-oversampled peak stays at or under ``ceiling_dbtp``.

    ``peaks`` is ``_true_peak_per_sample(stereo)``; the limited audio is returned with its own peaks. The wanted
    gain is min-filtered over a window and then averaged over a window half as wide, so the smoothed gain never
    exceeds what any peak within its reach needs: the ramps are smooth, yet no peak escapes.
    """
    ceiling = 10 ** ((ceiling_dbtp - _LIMITER_MARGIN_DB) / 20)
    window = round(_LIMITER_WINDOW_S * SAMPLE_RATE)
    for _ in range(3):  # the interpolation filter's reach past a gain ramp can leave a sliver over: re-check
        if peaks.max() <= ceiling * 1.001:  # 0.01 dB of float rounding is not a peak; the margin absorbs it
            break
        wanted = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
        gain = uniform_filter1d(minimum_filter1d(wanted, size=2 * window + 1), size=window, mode="nearest")
        stereo = stereo * gain[:, None]
        peaks = _true_peak_per_sample(stereo)
    return stereo, peaks


def mix_episode(dialogue: np.ndarray, music: np.ndarray, target_lufs: float = -16.0,
                true_peak_dbtp: float = -1.0, sfx: np.ndarray | None = None) -> np.ndarray:
    """Stereo float32 episode mix: music and the optional SFX layer (rendered relative to
    ``SFX_REFERENCE_LUFS``) ducked under the (mono, centred) dialogue, loudness-normalised to ``target_lufs``
    and true-peak limited to ``true_peak_dbtp``."""
    if dialogue.ndim != 1:
        raise ValueError(f"dialogue must be mono shaped (n,), got {dialogue.shape}")
    if music.shape != (len(dialogue), 2):
        raise ValueError(f"music must be stereo shaped ({len(dialogue)}, 2) to match the dialogue, got {music.shape}")
    if sfx is not None and sfx.shape != (len(dialogue), 2):
        raise ValueError(f"sfx must be stereo shaped ({len(dialogue)}, 2) to match the dialogue, got {sfx.shape}")
    dialogue = dialogue.astype(np.float64)
    music = music.astype(np.float64)
    # Mono dialogue in both channels is a centre pan; the loudness normalisation below sets the final level.
    speech = np.repeat(dialogue[:, None], 2, axis=1)
    speech_lufs = _integrated_lufs(speech)
    music_lufs = _integrated_lufs(music)
    if math.isfinite(speech_lufs) and math.isfinite(music_lufs):
        music = music * 10 ** ((speech_lufs - _MUSIC_UNDER_DIALOGUE_LU - music_lufs) / 20)
    mix = music * _duck_gain(dialogue, _DUCK_DB)[:, None] + speech
    if sfx is not None:
        sfx_gain = 10 ** ((speech_lufs - SFX_REFERENCE_LUFS) / 20) if math.isfinite(speech_lufs) else 1.0
        mix += sfx.astype(np.float64) * (sfx_gain * _duck_gain(dialogue, _SFX_DUCK_DB))[:, None]
    loudness = _integrated_lufs(mix)
    if not math.isfinite(loudness):
        return mix.astype(np.float32)  # silence: nothing to normalise
    peaks = _true_peak_per_sample(mix)
    for _ in range(3):  # limiting takes a little loudness off the top; re-aim at the target
        gain = 10 ** ((target_lufs - loudness) / 20)
        mix, peaks = _limit_true_peak(mix * gain, true_peak_dbtp, peaks * gain)  # true peaks scale with gain
        loudness = _integrated_lufs(mix)
        if abs(loudness - target_lufs) < 0.1:
            break
    return mix.astype(np.float32)

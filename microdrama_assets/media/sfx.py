"""Sound effects on the episode timeline, derived from the manifest and synthesised with numpy/scipy (filtered
noise, envelopes, sine and FM tones), deterministic for the manifest's seed.

Three kinds of cue:

- spot effects, from words in a shot's action text (English and Spanish; at most three per shot, in the order
  the text names them), placed inside their shot around its lines: a spot never sounds from just before a
  line starts until its first syllable is out, prefers the gaps between lines, and is not repeated within
  10 s (the planner names the episode's prop shot after shot);
- ambience beds, one per shot from its location (and rain from the action text), continuous across shots that
  share one, crossfaded at cuts;
- transition accents on the cuts into hook, reveal and cliffhanger shots, trimmed so they never cover a line's
  start either.

Each cue is levelled against the dialogue (a knock sits 6 LU under the lines, a whoosh 10 LU, an ambience
16 LU) with its peak capped, and the mix ducks the whole layer under speech.

Cue names. A file ``<data root>/sounds/sfx/<cue>.<ext>`` (any format FFmpeg reads: wav, mp3, m4a, flac,
ogg) replaces the procedural sound of that cue, levelled the same way; beds are looped with crossfades.

Spot effects (words in the action text):

- ``door``: a creak and the door shutting (door, doorway, puerta)
- ``knock``: three knocks on wood (knock, knocking, golpe, golpea)
- ``phone``: a phone vibrating twice (phone, text, message, buzz, teléfono, móvil, mensaje)
- ``footsteps``: four steps (footsteps, steps, walks, runs, approaches, pasos, camina, corre)
- ``glass``: a glass clink (glass, bottle, shatters, smash, vaso, copa, cristal, botella)
- ``thunder``: a crack and a long rumble (thunder, lightning, storm, trueno, relámpago, tormenta)
- ``elevator_ding``: an elevator bell (elevator, ascensor)
- ``car``: a car passing left to right (car, taxi, truck, drives, engine, coche, auto)
- ``heartbeat``: three heartbeats (heart, heartbeat, pulse, freezes, corazón, latido, congela)
- ``flicker``: a flickering light's electrical buzz (flicker, flickering, parpadean)

Ambience beds (one per shot):

- ``ambience_cafe``: murmur of voices, cups at day
- ``ambience_street``: traffic hum with passing cars, fewer at night
- ``ambience_hospital``: ventilation and a heart monitor's beep
- ``ambience_elevator``: motor hum
- ``ambience_office``: air conditioning, keyboards by day
- ``ambience_apartment``: room tone, a fridge hum, distant traffic by day
- ``ambience_hotel``: lobby air and distant voices
- ``ambience_rooftop``: gusting wind over a distant city
- ``ambience_park``: birds and leaves by day, crickets at night
- ``ambience_station``: low rumble, a passing train, voices
- ``rain``: rain, over the location's bed (rain, storm, downpour, lluvia, tormenta)

Transition accents (on the cut into the shot):

- ``whoosh``: into a hook
- ``riser``: building up to a reveal
- ``hit``: a low impact on a cliffhanger
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.signal import butter, istft, oaconvolve, sosfilt, stft

from .audio_mix import SAMPLE_RATE, SFX_REFERENCE_LUFS, AudioFileError, loop_to_length, measure_loudness
from .manifest import FPS, Beat, EpisodeManifest, Location, Shot, TimeOfDay

# ---------------------------------------------------------------------------------------------- which cues

SPOT_WORDS: dict[str, frozenset[str]] = {
    "door": frozenset({"door", "doors", "doorway", "puerta", "puertas"}),
    # Not Spanish "llama": it also names and phones ("se llama Maya").
    "knock": frozenset({"knock", "knocks", "knocking", "knocked", "golpe", "golpes", "golpea", "golpean"}),
    "phone": frozenset({"phone", "phones", "cellphone", "smartphone", "text", "texts", "message", "messages",
                        "buzz", "buzzes", "buzzing", "ringtone", "voicemail", "teléfono", "móvil", "celular",
                        "mensaje", "mensajes"}),
    "footsteps": frozenset({"footsteps", "footstep", "steps", "walk", "walks", "walking", "run", "runs",
                            "running", "paces", "pacing", "approaches", "hurries", "pasos", "camina", "caminan",
                            "corre", "corren"}),
    "glass": frozenset({"glass", "glasses", "bottle", "shatter", "shatters", "shattered", "smash", "smashes",
                        "vaso", "copa", "cristal", "botella"}),
    "thunder": frozenset({"thunder", "thunderstorm", "lightning", "storm", "stormy", "trueno", "truenos",
                          "relámpago", "tormenta"}),
    "elevator_ding": frozenset({"elevator", "ascensor"}),
    "car": frozenset({"car", "cars", "taxi", "cab", "truck", "drives", "driving", "engine", "coche", "auto",
                      "camión"}),
    "heartbeat": frozenset({"heart", "heartbeat", "heartbeats", "pulse", "freezes", "froze", "frozen", "corazón",
                            "latido", "latidos", "congela"}),
    "flicker": frozenset({"flicker", "flickers", "flickering", "parpadean", "parpadea"}),
}
RAIN_WORDS = frozenset({"rain", "rains", "raining", "rainy", "storm", "stormy", "thunderstorm", "downpour",
                        "lluvia", "llueve", "tormenta"})
AMBIENCE_CUES: dict[Location, str] = {location: f"ambience_{location.value}" for location in Location}
RAIN_CUE = "rain"
TRANSITION_CUES: dict[Beat, str] = {Beat.hook: "whoosh", Beat.reveal: "riser", Beat.cliffhanger: "hit"}
MAX_SPOTS_PER_SHOT = 3

_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    # NFC first: a decomposed "teléfono" would otherwise split at its accent.
    return _WORD.findall(unicodedata.normalize("NFC", text).lower())


def spot_cues(action: str) -> list[str]:
    """The spot effects an action names, in the order it names them, each once, at most ``MAX_SPOTS_PER_SHOT``."""
    cues: list[str] = []
    for word in _words(action):
        for cue, words in SPOT_WORDS.items():
            if word in words and cue not in cues:
                cues.append(cue)
    return cues[:MAX_SPOTS_PER_SHOT]


def shot_beds(shot: Shot) -> tuple[str, str | None]:
    """The beds under a shot: its location's ambience, and rain when the action mentions it (else None)."""
    return AMBIENCE_CUES[shot.location], RAIN_CUE if set(_words(shot.action)) & RAIN_WORDS else None


def cues_in(manifest: EpisodeManifest) -> set[str]:
    """Every cue the episode calls for (so only those library files are decoded)."""
    cues = set()
    for shot in manifest.shots:
        cues.update(spot_cues(shot.action), filter(None, shot_beds(shot)))
        if shot.beat in TRANSITION_CUES:
            cues.add(TRANSITION_CUES[shot.beat])
    return cues


# ---------------------------------------------------------------------------------------------- synthesis helpers

def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def _times(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _filtered(signal: np.ndarray, kind: str, hz, order: int = 2) -> np.ndarray:
    return sosfilt(butter(order, hz, btype=kind, fs=SAMPLE_RATE, output="sos"), signal, axis=0)


def _decay(n: int, attack_s: float, decay_s: float) -> np.ndarray:
    """A linear attack into an exponential decay: the envelope of a struck thing."""
    t = _times(n)
    return np.clip(t / attack_s, 0.0, 1.0) * np.exp(-t / decay_s)


def _unit(signal: np.ndarray) -> np.ndarray:
    peak = np.abs(signal).max()
    return signal / peak if peak > 0 else signal


def _pan(mono: np.ndarray, pan: float | np.ndarray) -> np.ndarray:
    """Constant-power pan, -1 = left, 1 = right."""
    angle = (np.asarray(pan) + 1.0) * (np.pi / 4)
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1)


def _add(out: np.ndarray, sound: np.ndarray, start_s: float, gain: float = 1.0) -> None:
    """Mix ``sound`` (mono or stereo) into ``out`` from ``start_s``, cut at the end of ``out``."""
    start = _samples(start_s)
    if start >= len(out):
        return
    part = sound[: len(out) - start] * gain
    out[start : start + len(part)] += part[:, None] if part.ndim == 1 else part


def _saturated(signal: np.ndarray, drive: float) -> np.ndarray:
    # Phone speakers barely play below 100 Hz: soft clipping adds the harmonics that make a low thump heard.
    return np.tanh(drive * _unit(signal)) / math.tanh(drive)


def _band_sweep(rng: np.random.Generator, n: int, centres_hz: Sequence[float], width_octaves: float) -> np.ndarray:
    """Noise through a band-pass whose centre glides through ``centres_hz`` (evenly spaced over the sound):
    shaped in the STFT domain, so any path costs the same."""
    nperseg = 1024
    noise = rng.standard_normal(n + nperseg)
    freqs, frame_times, spectrum = stft(noise, fs=SAMPLE_RATE, nperseg=nperseg)
    centres = np.interp(frame_times, np.linspace(0, n / SAMPLE_RATE, len(centres_hz)), np.asarray(centres_hz))
    octaves = np.log2(np.maximum(freqs, 1.0)[:, None] / centres[None, :])
    _, shaped = istft(spectrum * np.exp(-0.5 * (octaves / width_octaves) ** 2), fs=SAMPLE_RATE, nperseg=nperseg)
    return _unit(shaped[:n])


def _slow_wander(rng: np.random.Generator, n: int, hz: float) -> np.ndarray:
    """A smooth random curve in [0, 1] changing about ``hz`` times a second (gusts, swells, syllables)."""
    points = max(2, math.ceil(n / SAMPLE_RATE * hz) + 2)
    knots = rng.random(points)
    curve = np.interp(np.linspace(0, points - 1, n), np.arange(points), knots)
    return 0.5 - 0.5 * np.cos(np.pi * curve)  # eased, so the curve lingers at its extremes like real swells


def _partials(n: int, hz: float, partials: Sequence[tuple[float, float, float]], rng: np.random.Generator,
              attack_s: float = 0.002) -> np.ndarray:
    """Struck inharmonic partials: (frequency ratio, amplitude, decay s) each: bells, glass, chimes."""
    t = _times(n)
    tone = sum(amplitude * np.sin(2 * np.pi * hz * ratio * t + rng.random() * 2 * np.pi) * np.exp(-t / decay_s)
               for ratio, amplitude, decay_s in partials)
    return tone * np.clip(t / attack_s, 0.0, 1.0)


def _glide_thump(n: int, from_hz: float, to_hz: float, glide_s: float, decay_s: float) -> np.ndarray:
    """A sine whose pitch falls from ``from_hz`` to ``to_hz`` (phase = integral of the glide): kicks, booms."""
    t = _times(n)
    phase = 2 * np.pi * (to_hz * t + (from_hz - to_hz) * glide_s * (1 - np.exp(-t / glide_s)))
    return np.sin(phase) * _decay(n, 0.003, decay_s)


# ---------------------------------------------------------------------------------------------- spot effects

def _door(rng: np.random.Generator) -> np.ndarray:
    n = _samples(1.2)
    out = np.zeros((n, 2))
    # Creak: stick-slip pulses whose rate swells and falls, rung through the wood's resonances.
    creak_n = _samples(0.55)
    t = _times(creak_n)
    rate_hz = (60 + 110 * np.sin(np.pi * t / 0.55)) * (1 + 0.15 * (_slow_wander(rng, creak_n, 25) - 0.5))
    pulses = np.diff(np.floor(np.cumsum(rate_hz / SAMPLE_RATE)), prepend=0.0)
    creak = _filtered(pulses, "bandpass", (450, 1800)) + 0.5 * _filtered(pulses, "bandpass", (1900, 3600))
    _add(out, _pan(_unit(creak) * np.sin(np.pi * t / 0.55) ** 0.5, -0.2), 0.0, 0.6)
    # Shut: a low thud with a latch click.
    shut_n = n - _samples(0.7)
    thud = (_filtered(rng.standard_normal(shut_n), "lowpass", 250) * _decay(shut_n, 0.002, 0.08)
            + 0.15 * _glide_thump(shut_n, 110, 70, 0.02, 0.12))
    latch = _filtered(rng.standard_normal(shut_n), "highpass", 2500) * _decay(shut_n, 0.0005, 0.006)
    _add(out, _pan(_saturated(thud, 2.0) + 0.3 * _unit(latch), -0.1), 0.7)
    return out


def _knock(rng: np.random.Generator) -> np.ndarray:
    onsets_s = np.cumsum([0.0, *rng.uniform(0.16, 0.22, 2)])
    out = np.zeros((_samples(onsets_s[-1] + 0.25), 2))
    hit_n = _samples(0.2)
    for onset_s, velocity in zip(onsets_s, (1.0, 0.85, 0.92)):
        body = np.sin(2 * np.pi * rng.uniform(180, 210) * _times(hit_n)) * _decay(hit_n, 0.001, 0.035)
        crack = _filtered(rng.standard_normal(hit_n), "bandpass", (800, 3000)) * _decay(hit_n, 0.0005, 0.008)
        _add(out, _pan(_saturated(body, 1.5) + 0.5 * _unit(crack), 0.1), onset_s, velocity)
    return out


def _phone(rng: np.random.Generator) -> np.ndarray:
    n = _samples(1.0)
    t = _times(n)
    motor = np.tanh(2.5 * np.sin(2 * np.pi * rng.uniform(155, 175) * t)) * (1 + 0.25 * np.sin(2 * np.pi * 11 * t))
    on = ((t < 0.38) | ((t > 0.56) & (t < 0.94))).astype(float)
    gate = oaconvolve(on, np.ones(_samples(0.01)) / _samples(0.01), mode="same")  # 10 ms ramps, no clicks
    return _pan(_filtered(motor * gate, "lowpass", 2500), 0.0)


def _footsteps(rng: np.random.Generator) -> np.ndarray:
    step_s = rng.uniform(0.45, 0.55)
    out = np.zeros((_samples(4 * step_s + 0.3), 2))
    step_n = _samples(0.25)
    for index in range(4):
        heel = (_filtered(rng.standard_normal(step_n), "lowpass", 400) * _decay(step_n, 0.002, 0.03)
                + 0.1 * np.sin(2 * np.pi * 95 * _times(step_n)) * _decay(step_n, 0.002, 0.04))
        scuff = _filtered(rng.standard_normal(step_n), "bandpass", (1500, 5000)) * _decay(step_n, 0.01, 0.04)
        step = _saturated(heel, 1.5) + 0.25 * _unit(scuff)
        onset_s = index * step_s + rng.uniform(-0.02, 0.02) + 0.02
        _add(out, _pan(step, 0.15 if index % 2 else -0.15), onset_s, rng.uniform(0.8, 1.0))
    return out


def _glass(rng: np.random.Generator) -> np.ndarray:
    n = _samples(1.0)
    out = np.zeros((n, 2))
    hz = 1750 * rng.uniform(0.95, 1.05)
    partials = ((1.0, 1.0, 0.5), (2.32, 0.5, 0.35), (4.25, 0.3, 0.2), (6.63, 0.15, 0.12))
    tick = _filtered(rng.standard_normal(n), "highpass", 4000) * _decay(n, 0.0002, 0.003)
    _add(out, _pan(_unit(_partials(n, hz, partials, rng, 0.0008)) + 0.5 * _unit(tick), 0.2), 0.0)
    _add(out, _pan(_unit(_partials(n, hz * 1.07, partials, rng, 0.0008)), 0.25), 0.14, 0.4)
    return out


def _thunder(rng: np.random.Generator) -> np.ndarray:
    n = _samples(3.2)
    t = _times(n)
    crack = _filtered(rng.standard_normal(n), "bandpass", (300, 3000)) * _decay(n, 0.005, 0.12)
    brown = np.cumsum(rng.standard_normal((n, 2)), axis=0)
    rumble = _filtered(_filtered(brown, "highpass", 25), "lowpass", 180)
    swell = np.clip(t / 0.25, 0, 1) * np.exp(-np.maximum(t - 0.25, 0) / 1.1)
    flutter = 0.55 + 0.45 * _slow_wander(rng, n, 6)  # the rumble rolls rather than decays smoothly
    rumble = _saturated(rumble, 1.8) * (swell * flutter)[:, None]
    return rumble + 0.25 * _pan(_unit(crack), rng.uniform(-0.4, 0.4))


def _elevator_ding(rng: np.random.Generator) -> np.ndarray:
    n = _samples(1.4)
    bell = _partials(n, 1318.5, ((1.0, 1.0, 0.9), (2.0, 0.25, 0.5), (3.0, 0.1, 0.3), (4.2, 0.06, 0.2)), rng)
    return _pan(_unit(bell), 0.0)


def _car(rng: np.random.Generator) -> np.ndarray:
    n = _samples(3.0)
    t = _times(n) - 1.5  # closest approach mid-way
    closeness = 1 / np.sqrt(1 + (t / 0.45) ** 2)
    doppler = 1 - 0.06 * t / np.sqrt(t**2 + 0.3**2)  # pitch falls as it passes
    phase = 2 * np.pi * np.cumsum(rng.uniform(34, 42) * doppler) / SAMPLE_RATE
    engine = _filtered(sum(np.sin(k * phase) / k for k in range(1, 9)), "lowpass", 600)
    tyres = _filtered(rng.standard_normal(n), "bandpass", (300, 2000))
    mono = (_saturated(engine, 1.5) + 0.6 * _unit(tyres)) * closeness**1.5
    return _pan(mono, 0.8 * np.tanh(t / 0.6))


def _heartbeat(rng: np.random.Generator) -> np.ndarray:
    beat_s = rng.uniform(0.8, 0.9)
    out = np.zeros((_samples(2 * beat_s + 0.6), 2))
    beat_n = _samples(0.4)
    for index in range(3):
        lub = _glide_thump(beat_n, 65, 45, 0.03, 0.07)
        dub = _glide_thump(beat_n, 75, 50, 0.03, 0.05)
        _add(out, _pan(_saturated(lub, 2.5), 0.0), index * beat_s)
        _add(out, _pan(_saturated(dub, 2.5), 0.0), index * beat_s + 0.28, 0.7)
    return out


def _flicker(rng: np.random.Generator) -> np.ndarray:
    n = _samples(1.2)
    t = _times(n)
    buzz = _filtered(np.tanh(4 * np.sin(2 * np.pi * 100 * t)), "bandpass", (80, 4000))
    on = np.zeros(n)
    cursor, lit = 0, True
    while cursor < n:  # the tube catches and drops out in uneven 20-120 ms stretches
        length = _samples(rng.uniform(0.02, 0.12))
        on[cursor : cursor + length] = 1.0 if lit else 0.05
        cursor, lit = cursor + length, not lit
    return _pan(buzz * on * np.hanning(n) ** 0.25, 0.3)


# ---------------------------------------------------------------------------------------------- transitions
# A transition's anchor is the fraction of the sound that lands on the cut.

def _whoosh(rng: np.random.Generator) -> np.ndarray:
    n = _samples(0.9)
    rise = np.sin(np.linspace(0, np.pi / 2, _samples(0.54))) ** 2
    fall = np.cos(np.linspace(0, np.pi / 2, n - len(rise))) ** 2
    air = _band_sweep(rng, n, (300, 900, 2500, 1200, 500), 0.7) * np.concatenate([rise, fall])
    return _pan(air, np.linspace(-0.6, 0.6, n))


def _riser(rng: np.random.Generator) -> np.ndarray:
    n = _samples(1.8)
    t = _times(n)
    air = _band_sweep(rng, n, np.geomspace(250, 4000, 8), 0.6)
    tone = np.sin(2 * np.pi * np.cumsum(np.geomspace(180, 720, n)) / SAMPLE_RATE)
    crescendo = (t / t[-1]) ** 2
    crescendo[-_samples(0.015):] *= np.linspace(1, 0, _samples(0.015))
    return _pan((air + 0.25 * tone) * crescendo, 0.0)


def _hit(rng: np.random.Generator) -> np.ndarray:
    n = _samples(1.5)
    boom = _saturated(_glide_thump(n, 110, 45, 0.05, 0.45), 2.0)
    transient = _filtered(rng.standard_normal(n), "lowpass", 1500) * _decay(n, 0.001, 0.04)
    tail = _filtered(rng.standard_normal((n, 2)), "lowpass", 400) * _decay(n, 0.01, 0.6)[:, None]
    return _pan(boom + 0.4 * _unit(transient), 0.0) + 0.15 * _unit(tail)


_TRANSITION_ANCHOR = {"whoosh": 0.6, "riser": 1.0, "hit": 0.0}

# ---------------------------------------------------------------------------------------------- ambience beds


def _room_tone(rng: np.random.Generator, n: int, cutoff_hz: float) -> np.ndarray:
    return _unit(_filtered(rng.standard_normal((n, 2)), "lowpass", cutoff_hz))


def _passing_swells(rng: np.random.Generator, n: int, per_minute: float, band_hz: tuple[float, float],
                    width_s: float) -> np.ndarray:
    """Band-passed noise that swells past in random places (cars, trains), each from its own side."""
    noise = _unit(_filtered(rng.standard_normal((n, 2)), "bandpass", band_hz))
    gains = np.zeros((n, 2))
    for _ in range(rng.poisson(per_minute * n / SAMPLE_RATE / 60) + 1):
        centre, side = rng.integers(0, n), rng.uniform(-0.7, 0.7)
        width = _samples(width_s * rng.uniform(0.7, 1.3))
        first, end = max(0, centre - 4 * width), min(n, centre + 4 * width)  # the bump is nil beyond 4 widths
        bump = np.exp(-0.5 * ((np.arange(first, end) - centre) / width) ** 2)
        gains[first:end] += np.stack([bump * (1 - side), bump * (1 + side)], axis=1) / 2
    return noise * gains


def _murmur(rng: np.random.Generator, n: int, voices: int) -> np.ndarray:
    """Voices too far off to understand: speech-band noise under syllable-rate envelopes, spread in stereo."""
    out = np.zeros((n, 2))
    for _ in range(voices):
        low = rng.uniform(250, 450)
        voice = _filtered(rng.standard_normal(n), "bandpass", (low, low * 6))
        syllables = _slow_wander(rng, n, rng.uniform(3.5, 5.5)) ** 2 * _slow_wander(rng, n, 0.3)
        out += _pan(_unit(voice) * syllables, rng.uniform(-0.8, 0.8))
    return out


def _clinks(rng: np.random.Generator, n: int, per_minute: float) -> np.ndarray:
    out = np.zeros((n, 2))
    clink_n = _samples(0.4)
    for _ in range(rng.poisson(per_minute * n / SAMPLE_RATE / 60)):
        clink = _partials(clink_n, rng.uniform(2200, 3200), ((1.0, 1.0, 0.12), (2.7, 0.4, 0.06)), rng)
        _add(out, _pan(_unit(clink), rng.uniform(-0.8, 0.8)), rng.uniform(0, n / SAMPLE_RATE), rng.uniform(0.3, 0.7))
    return out


def _birds(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros((n, 2))
    phrase_s = rng.exponential(0.8)
    while phrase_s < n / SAMPLE_RATE:
        hz, side = rng.uniform(2500, 5000), rng.uniform(-0.9, 0.9)
        chirp_s = phrase_s
        for _ in range(rng.integers(2, 7)):
            chirp_n = _samples(rng.uniform(0.04, 0.12))
            glide = np.linspace(1.0, rng.uniform(0.7, 1.3), chirp_n)
            warble = 1 + 0.03 * np.sin(2 * np.pi * 30 * _times(chirp_n))
            chirp = np.sin(2 * np.pi * np.cumsum(hz * glide * warble) / SAMPLE_RATE) * np.hanning(chirp_n)
            _add(out, _pan(chirp, side), chirp_s, rng.uniform(0.4, 1.0))
            chirp_s += chirp_n / SAMPLE_RATE + rng.uniform(0.05, 0.12)
        phrase_s = chirp_s + rng.exponential(1.2)
    return out


def _crickets(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros((n, 2))
    t = _times(n)
    for hz, period_s, side in ((4500, 0.55, -0.5), (4900, 0.62, 0.5)):
        into_trill = (t + rng.uniform(0, period_s)) % period_s
        pulse = (into_trill < 0.1) & ((into_trill % 0.025) < 0.012)  # a trill of four 12 ms pulses
        smooth = oaconvolve(pulse.astype(float), np.hanning(_samples(0.004)), mode="same")
        out += _pan(np.sin(2 * np.pi * hz * t) * _unit(smooth), side)
    return out


def _hum(n: int, hz: float) -> np.ndarray:
    return _filtered(np.tanh(2 * np.sin(2 * np.pi * hz * _times(n))), "lowpass", 500)


def _ambience(location: Location, time_of_day: TimeOfDay, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` stereo samples of a location's background; time of day changes what is in it."""
    day = time_of_day != TimeOfDay.night
    if location == Location.cafe:
        return (0.3 * _room_tone(rng, n, 300) + _murmur(rng, n, 6) / 3
                + 0.4 * _clinks(rng, n, 12 if day else 4))
    if location == Location.street:
        per_minute = {TimeOfDay.day: 20, TimeOfDay.dusk: 14, TimeOfDay.night: 6}[time_of_day]
        return _room_tone(rng, n, 300) * 0.6 + _passing_swells(rng, n, per_minute, (250, 1500), 1.5)
    if location == Location.hospital:
        beeps = np.zeros(n)
        beep_n = _samples(0.11)
        beep = np.sin(2 * np.pi * 880 * _times(beep_n)) * np.hanning(beep_n) ** 0.3
        for start in range(_samples(rng.uniform(0, 1.0)), n, SAMPLE_RATE):
            beeps[start : start + beep_n] = beep[: n - start]
        return _room_tone(rng, n, 400) + 0.25 * _pan(beeps, 0.4)
    if location == Location.elevator:
        hum = _unit(_hum(n, 60)) * (0.8 + 0.2 * _slow_wander(rng, n, 0.5))
        return 0.5 * _pan(hum, 0.0) + _room_tone(rng, n, 250)
    if location == Location.office:
        air = _unit(_filtered(rng.standard_normal((n, 2)), "bandpass", (80, 900)))
        if not day:
            return air
        keys = np.zeros((n, 2))
        key_n = _samples(0.02)
        burst_s = rng.exponential(3.0)
        while burst_s < n / SAMPLE_RATE:
            side = rng.uniform(-0.8, 0.8)
            for index in range(rng.integers(5, 16)):
                key = _filtered(rng.standard_normal(key_n), "highpass", 2000) * _decay(key_n, 0.0003, 0.003)
                _add(keys, _pan(_unit(key), side), burst_s + index * rng.uniform(0.08, 0.13), rng.uniform(0.5, 1))
            burst_s += rng.exponential(4.0) + 1.5
        return air + 0.3 * keys
    if location == Location.apartment:
        fridge = 0.25 * _pan(_unit(_hum(n, 50)), 0.3)
        traffic = 0.5 * _filtered(_passing_swells(rng, n, 8, (150, 800), 2.0), "lowpass", 800) if day else 0.0
        return _room_tone(rng, n, 250) + fridge + traffic
    if location == Location.hotel:
        distant_voices = _filtered(_murmur(rng, n, 3), "lowpass", 1500)
        return _unit(_filtered(rng.standard_normal((n, 2)), "bandpass", (100, 1200))) + 0.5 * _unit(distant_voices)
    if location == Location.rooftop:
        gusts = 0.35 + 0.65 * _slow_wander(rng, n, 0.3)
        wind = np.stack([_band_sweep(rng, n, 250 + 650 * rng.random(max(2, n // SAMPLE_RATE)), 0.6)
                         for _ in range(2)], axis=1)
        return wind * gusts[:, None] + 0.3 * _room_tone(rng, n, 200)
    if location == Location.park:
        leaves = _unit(_filtered(rng.standard_normal((n, 2)), "highpass", 2000)) * (0.1 + 0.2 * _slow_wander(
            rng, n, 0.4))[:, None]
        return leaves + (0.5 * _birds(rng, n) if day else 0.35 * _crickets(rng, n))
    if location == Location.station:
        rumble = _room_tone(rng, n, 120) * (0.6 + 0.4 * _slow_wander(rng, n, 0.2))[:, None]
        train = _passing_swells(rng, n, 2, (60, 400), 3.0)
        return rumble + train + 0.3 * _murmur(rng, n, 4)
    raise ValueError(f"no ambience for location {location.value!r}")


def _rain(rng: np.random.Generator, n: int) -> np.ndarray:
    hiss = _unit(_filtered(rng.standard_normal((n, 2)), "bandpass", (800, 8000)))
    hiss *= (0.8 + 0.2 * _slow_wander(rng, n, 2))[:, None]
    drops = (rng.random((n, 2)) < 60 / SAMPLE_RATE) * rng.uniform(0.2, 1.0, (n, 2))  # ~60 drops a second
    return hiss + _unit(_filtered(drops, "bandpass", (2000, 6000)))


# ---------------------------------------------------------------------------------------------- the cue table

@dataclass(frozen=True)
class _Design:
    level_lu: float  # loudness relative to the dialogue
    make: Callable[[np.random.Generator], np.ndarray] | None = None  # spot and transition sounds; beds are below


_DESIGNS: dict[str, _Design] = {
    "door": _Design(-8, _door), "knock": _Design(-6, _knock), "phone": _Design(-10, _phone),
    "footsteps": _Design(-12, _footsteps), "glass": _Design(-10, _glass), "thunder": _Design(-8, _thunder),
    "elevator_ding": _Design(-12, _elevator_ding), "car": _Design(-12, _car), "heartbeat": _Design(-10, _heartbeat),
    "flicker": _Design(-14, _flicker),
    "whoosh": _Design(-10, _whoosh), "riser": _Design(-12, _riser), "hit": _Design(-11, _hit),
    **{cue: _Design(-16) for cue in AMBIENCE_CUES.values()}, RAIN_CUE: _Design(-14),
}
CUES: tuple[str, ...] = tuple(_DESIGNS)

# A cue never peaks above this, at the reference dialogue loudness, so a sharp knock or a boom is never louder
# than the lines even where its loudness reading (a 400 ms average) is low.
_CUE_PEAK_CAP_DBTP = SFX_REFERENCE_LUFS + 8.0


def _levelled(sound: np.ndarray, cue: str) -> np.ndarray:
    loudness, true_peak = measure_loudness(sound)
    if not math.isfinite(loudness):
        return sound  # silence stays silence
    gain_db = min(SFX_REFERENCE_LUFS + _DESIGNS[cue].level_lu - loudness, _CUE_PEAK_CAP_DBTP - true_peak)
    return sound * 10 ** (gain_db / 20)


def _excerpt(sound: np.ndarray, skip: int, n: int) -> np.ndarray:
    """``n`` samples of ``sound`` from ``skip``, faded where it was cut so a trimmed sound never clicks."""
    part = sound[skip : skip + n].copy()
    fade = min(len(part) // 4, _samples(0.3))
    if skip > 0:
        part[:fade] *= np.linspace(0.0, 1.0, fade)[:, None]
    if skip + n < len(sound):
        part[len(part) - fade :] *= np.linspace(1.0, 0.0, fade)[:, None]
    return part


# ---------------------------------------------------------------------------------------------- placement

# Nothing but beds sounds from just before a line starts until its first syllable is out.
_LINE_GUARD_BEFORE_S = 0.12
_LINE_GUARD_AFTER_S = 0.3
_MIN_CUE_S = 0.3  # a cue with less room than this is left out rather than cut to a click
_MOSTLY = 2 / 3  # a spot cut to this much of itself in the clear beats a whole one under a line
_SPOT_DELAY_S = (0.1, 0.3)  # a shot's first spot lands a little after the cut, not on it
# The planner names the episode's prop in shot after shot; a phone buzzing on every cut would grate.
_REPEAT_GAP_S = 10.0
_BED_CROSSFADE_S = 0.5
_BED_FADE_IN_S = 0.3
_BED_FADE_OUT_S = 1.5


@dataclass(frozen=True)
class SfxPlacement:
    """One cue on the episode timeline; beds are listed once per shot with the shot's span."""

    cue: str
    shot: str
    kind: str  # "spot", "ambience" or "transition"
    start_s: float
    duration_s: float
    source: str  # "procedural" or "file"

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SfxLayer:
    audio: np.ndarray  # stereo float32, the episode's length, levelled against SFX_REFERENCE_LUFS dialogue
    placements: list[SfxPlacement]
    skipped: list[tuple[str, str, str]]  # (cue, shot, why) for cues an action names that were left out


def _free_stretches(begin: float, end: float, blocks: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of [begin, end] that no block overlaps, in time order."""
    stretches, cursor = [], begin
    for block_start, block_end in sorted(blocks):
        if block_start > cursor:
            stretches.append((cursor, min(block_start, end)))
        cursor = max(cursor, block_end)
        if cursor >= end:
            break
    if cursor < end:
        stretches.append((cursor, end))
    return [(a, b) for a, b in stretches if b > a]


def _spot_slot(length_s: float, begin: float, end: float, guards: list[tuple[float, float]],
               speech: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(start, duration) for a spot: in a gap between lines if most of it fits there, else whole over the
    middle of a line (where the mix ducks it), else cut to the longest room there is; None when there is too
    little."""
    for a, b in _free_stretches(begin, end, guards + speech):
        if b - a >= min(length_s, max(_MIN_CUE_S, _MOSTLY * length_s)):
            return a, min(length_s, b - a)
    for a, b in _free_stretches(begin, end, guards):
        if b - a >= length_s:
            return a, length_s
    a, b = max(_free_stretches(begin, end, guards), key=lambda s: s[1] - s[0], default=(0.0, 0.0))
    return (a, b - a) if b - a >= _MIN_CUE_S else None


def render_sfx_layer(manifest: EpisodeManifest, lines: Sequence[tuple[float, float]],
                     library: Mapping[str, np.ndarray] | None = None) -> SfxLayer:
    """The episode's SFX layer and what was placed where.

    ``lines`` are the spoken lines as (start_s, end_s) on the episode timeline; ``library`` maps cue names to
    stereo ``SAMPLE_RATE`` sounds that replace the procedural ones. The same inputs always give the same layer.
    """
    library = library or {}
    total = manifest.total_frames * SAMPLE_RATE // FPS
    out = np.zeros((total, 2))
    bounds = [(manifest.start_frame(s.id) / FPS, (manifest.start_frame(s.id) + s.frames) / FPS)
              for s in manifest.shots]
    guards = [(start - _LINE_GUARD_BEFORE_S, start + _LINE_GUARD_AFTER_S) for start, _ in lines]
    speech = list(lines)
    placements: list[SfxPlacement] = []

    def source(cue: str) -> str:
        return "file" if cue in library else "procedural"

    def sound(cue: str, shot_index: int) -> np.ndarray:
        if cue in library:
            return _levelled(np.asarray(library[cue], np.float64), cue)
        rng = np.random.default_rng((manifest.seed, shot_index, CUES.index(cue)))
        return _levelled(_DESIGNS[cue].make(rng), cue)

    def place(cue: str, shot_index: int, kind: str, audio: np.ndarray, skip: int, start_s: float,
              duration_s: float) -> None:
        n = min(_samples(duration_s), len(audio) - skip)
        _add(out, _excerpt(audio, skip, n), start_s)
        placements.append(SfxPlacement(cue, manifest.shots[shot_index].id, kind, round(start_s, 3),
                                       round(n / SAMPLE_RATE, 3), source(cue)))

    # Beds: a track for the location ambience and one for rain; consecutive shots with the same bed share one
    # continuous section, and sections crossfade across the cut.
    for track in (0, 1):
        first = 0
        for (cue, time_of_day), run in itertools.groupby(manifest.shots,
                                                         key=lambda s: (shot_beds(s)[track], s.time_of_day)):
            last = first + len(list(run)) - 1
            if cue is not None:
                _add_bed(out, cue, time_of_day, manifest, first, last, bounds, library)
                placements.extend(SfxPlacement(cue, manifest.shots[i].id, "ambience", round(bounds[i][0], 3),
                                               round(bounds[i][1] - bounds[i][0], 3), source(cue))
                                  for i in range(first, last + 1))
            first = last + 1

    # Transitions, anchored on their cut and trimmed to the room between line starts around it.
    accent_end_s: dict[int, float] = {}
    for index, shot in enumerate(manifest.shots):
        cue = TRANSITION_CUES.get(shot.beat)
        if cue is None:
            continue
        audio = sound(cue, index)
        cut = bounds[index][0]
        length_s = len(audio) / SAMPLE_RATE
        # At the episode's first frame there is nothing to lead in from: the accent plays whole from there.
        wanted_start = max(cut - _TRANSITION_ANCHOR[cue] * length_s, 0.0)
        room = next(((a, b) for a, b in _free_stretches(0.0, total / SAMPLE_RATE, guards) if a <= cut <= b), None)
        if room is None:
            continue
        start_s, end_s = max(wanted_start, room[0]), min(wanted_start + length_s, room[1])
        if end_s - start_s < _MIN_CUE_S:
            continue
        place(cue, index, "transition", audio, _samples(start_s - wanted_start), start_s, end_s - start_s)
        accent_end_s[index] = end_s

    # Spots, in the order the action names them, one after another inside their shot, after the accent on the
    # shot's own cut; a riser into the next shot may build under them (the story's sounds come first).
    skipped: list[tuple[str, str, str]] = []
    last_heard_s: dict[str, float] = {}
    for index, shot in enumerate(manifest.shots):
        # Its own stream (past every cue's index), so the delay does not change when a cue's sound does.
        delay_s = float(np.random.default_rng((manifest.seed, index, len(CUES))).uniform(*_SPOT_DELAY_S))
        begin = max(bounds[index][0] + delay_s, accent_end_s.get(index, 0.0))
        for cue in spot_cues(shot.action):
            if cue in last_heard_s and begin - last_heard_s[cue] < _REPEAT_GAP_S:
                skipped.append((cue, shot.id, f"heard less than {_REPEAT_GAP_S:g} s before"))
                continue
            audio = sound(cue, index)
            slot = _spot_slot(len(audio) / SAMPLE_RATE, begin, bounds[index][1], guards, speech)
            if slot is None:
                skipped.append((cue, shot.id, "no room between the lines"))
                continue
            place(cue, index, "spot", audio, 0, *slot)
            last_heard_s[cue] = slot[0]
            begin = slot[0] + slot[1]
    placements.sort(key=lambda p: (p.start_s, p.kind, p.cue))
    return SfxLayer(out.astype(np.float32), placements, skipped)


def _add_bed(out: np.ndarray, cue: str, time_of_day: TimeOfDay, manifest: EpisodeManifest, first: int, last: int,
             bounds: list[tuple[float, float]], library: Mapping[str, np.ndarray]) -> None:
    """One continuous bed section over shots ``first``..``last``, reaching half a crossfade past each inner cut."""
    half = _BED_CROSSFADE_S / 2
    lead_s = half if first > 0 else 0.0
    tail_s = half if last < len(manifest.shots) - 1 else 0.0
    start_s, end_s = bounds[first][0] - lead_s, bounds[last][1] + tail_s
    n = _samples(end_s) - _samples(start_s)
    if cue in library:
        audio = loop_to_length(np.asarray(library[cue], np.float32), n).astype(np.float64)
    else:
        rng = np.random.default_rng((manifest.seed, first, CUES.index(cue)))
        shot = manifest.shots[first]
        audio = _rain(rng, n) if cue == RAIN_CUE else _ambience(shot.location, time_of_day, rng, n)
    audio = _levelled(audio, cue)
    fade_in = min(n, _samples(2 * lead_s if lead_s else _BED_FADE_IN_S))
    fade_out = min(n, _samples(2 * tail_s if tail_s else _BED_FADE_OUT_S))
    audio[:fade_in] *= np.sin(np.linspace(0, np.pi / 2, fade_in))[:, None]  # equal power across the cut
    audio[n - fade_out :] *= np.cos(np.linspace(0, np.pi / 2, fade_out))[:, None]
    _add(out, audio, start_s)


# ---------------------------------------------------------------------------------------------- the library

def sfx_library_files(directory: Path) -> dict[str, Path]:
    """The library's files by cue name (``<cue>.<ext>``); hidden files and names that are no cue are ignored.
    Two files for one cue are an error: which one the user meant cannot be guessed."""
    if not directory.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.stem not in CUES:
            continue
        if path.stem in found:
            raise AudioFileError(f"{found[path.stem]} and {path}: two files for the cue {path.stem!r}; keep one")
        found[path.stem] = path
    return found


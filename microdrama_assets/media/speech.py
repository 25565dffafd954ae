"""Dialogue speech with espeak-ng, called through ctypes on the library bundled in ``espeakng-loader``.

espeak-ng runs in synchronous retrieval mode: ``espeak_Synth`` returns once the whole line is spoken, having
handed every audio buffer and phoneme event to our callback. The library keeps its voice and
parameters in global state, so every call into it holds one module-level lock.

Text is always passed as plain UTF-8 (never SSML, never ``[[phonemes]]``), so a line of dialogue cannot inject
markup or change the voice.
"""

from __future__ import annotations

import ctypes
import math
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np
from scipy.signal import resample_poly

from .audio_mix import SAMPLE_RATE
from .manifest import Voice

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # without it a missing data folder calls exit() and takes the worker down
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_EE_NOT_FOUND = 2
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_BUFFER_MS = 200

# Trimming: espeak pads each line with a few ms of silence; keep a short margin so onsets are not clipped.
_SILENCE_DB = -50.0
_TRIM_MARGIN_S = 0.01
_STRESS_MARKS = "',"
_SILENT_BEAT_S = 0.6


class SpeechError(RuntimeError):
    """espeak-ng could not be loaded or could not speak a line."""


class VoiceNotFound(SpeechError):
    """The manifest names an espeak-ng language voice that is not installed."""


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),  # WORD and SENTENCE events
        ("name", ctypes.c_char_p),  # MARK and PLAY events
        ("string", ctypes.c_char * 8),  # PHONEME events: the mnemonic, NUL-terminated unless it fills all 8 bytes
    ]


class _Event(ctypes.Structure):
    # espeak_EVENT from speak_lib.h; ctypes applies the same natural alignment as the C compiler (40 bytes on
    # 64-bit: six ints, padding-free pointer at offset 24, the 8-byte union at 32).
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the synthesised audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    start_s: float
    end_s: float
    symbol: str  # espeak-ng phoneme mnemonic without stress marks, e.g. "oU", "T", "a"


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray  # float32 mono, silence trimmed at both ends
    sample_rate: int
    phonemes: tuple[Phoneme, ...]  # seconds from the start of ``samples``; pauses are left out

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class _Espeak:
    """The loaded library plus the buffers its callback fills during one ``espeak_Synth`` call."""

    def __init__(self) -> None:
        data_path = Path(espeakng_loader.get_data_path())
        if not (data_path / "phontab").is_file():
            raise SpeechError(f"espeak-ng data folder {data_path} is missing or incomplete")
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int

        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, str(data_path).encode(),
                                                 _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise SpeechError(f"espeak_Initialize failed (returned {self.sample_rate}) with data at {data_path}")
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._phoneme_events: list[tuple[int, str]] = []  # (audio position in ms, mnemonic)
        # Keep a reference: ctypes frees the trampoline when the Python object dies, and espeak would call freed code.
        self._callback = _SynthCallback(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, n_samples: int, events) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                self._phoneme_events.append((event.audio_position, event.id.string.decode("utf-8", "replace")))
            index += 1
        return 0  # 0 = continue synthesis

    def set_voice(self, voice: Voice) -> None:
        name = f"{voice.language}+{voice.variant}"
        status = self._lib.espeak_SetVoiceByName(name.encode("ascii"))
        if status == _EE_NOT_FOUND:
            raise VoiceNotFound(f"espeak-ng has no voice for language {voice.language!r} (asked for {name!r})")
        if status != _EE_OK:
            raise SpeechError(f"espeak_SetVoiceByName({name!r}) failed with status {status}")
        for parameter, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch)):
            status = self._lib.espeak_SetParameter(parameter, value, 0)
            if status != _EE_OK:
                raise SpeechError(f"espeak_SetParameter({parameter}, {value}) failed with status {status}")

    def speak(self, text: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """int16 samples at ``self.sample_rate`` and the (ms, mnemonic) phoneme events."""
        self._chunks, self._phoneme_events = [], []
        encoded = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(encoded)
        status = self._lib.espeak_Synth(buffer, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise SpeechError(f"espeak_Synth failed with status {status} for {text[:60]!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return samples, self._phoneme_events


_LOCK = threading.Lock()
_engine: _Espeak | None = None


def _espeak() -> _Espeak:
    """The process's espeak-ng instance, initialised on first use (call with ``_LOCK`` held)."""
    global _engine
    if _engine is None:
        _engine = _Espeak()
    return _engine


def _plain_text(text: str) -> str:
    # Control characters (NUL would end the C string early) become spaces; everything else is spoken as written.
    cleaned = "".join(" " if unicodedata.category(char) == "Cc" else char for char in text).strip()
    if not cleaned:
        raise ValueError("cannot synthesise speech: the text is empty")
    return cleaned


def _speech_bounds(samples: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """First and one-past-last sample of the audible part, with a small margin either side."""
    magnitude = np.abs(samples)
    audible = np.flatnonzero(magnitude >= magnitude.max() * 10 ** (_SILENCE_DB / 20))
    margin = round(_TRIM_MARGIN_S * sample_rate)
    return max(0, int(audible[0]) - margin), min(len(samples), int(audible[-1]) + 1 + margin)


def _timed_phonemes(events: list[tuple[int, str]], offset_s: float, duration_s: float) -> tuple[Phoneme, ...]:
    """Phonemes from consecutive PHONEME events: each lasts until the next one (pauses included) starts."""
    marks = [(position_ms / 1000.0 - offset_s, symbol) for position_ms, symbol in events]
    phonemes = []
    for index, (start_s, symbol) in enumerate(marks):
        end_s = marks[index + 1][0] if index + 1 < len(marks) else duration_s
        start_s, end_s = max(0.0, start_s), min(duration_s, end_s)
        symbol = symbol.strip(_STRESS_MARKS)
        if symbol and not symbol.startswith("_") and end_s > start_s:  # "_", "_:" ... are pauses
            phonemes.append(Phoneme(start_s, end_s, symbol))
    return tuple(phonemes)


def synthesize(text: str, voice: Voice) -> Speech:
    """``text`` spoken in ``voice``: trimmed float32 mono at ``SAMPLE_RATE`` with phoneme timings."""
    text = _plain_text(text)
    with _LOCK:
        engine = _espeak()
        engine.set_voice(voice)
        raw, events = engine.speak(text)
        native_rate = engine.sample_rate

    native = raw.astype(np.float32) / 32768.0
    if not np.any(native):
        # Nothing pronounceable ("...", "?!"): the line is a silent beat, and the caption still shows it.
        return Speech(np.zeros(round(_SILENT_BEAT_S * SAMPLE_RATE), np.float32), SAMPLE_RATE, ())
    first, last = _speech_bounds(native, native_rate)
    divisor = math.gcd(SAMPLE_RATE, native_rate)
    samples = resample_poly(native[first:last], SAMPLE_RATE // divisor, native_rate // divisor)
    samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
    phonemes = _timed_phonemes(events, first / native_rate, len(samples) / SAMPLE_RATE)
    return Speech(samples, SAMPLE_RATE, phonemes)

"""Dialogue voices from a local Coqui TTS model (the maintained ``coqui-tts`` package) behind the voice protocol.

Model layout (``voice_model``): the directory Coqui's trainer writes, ``config.json`` plus the checkpoint
(``model.pth``, ``best_model.pth`` or ``model_file.pth``: ``{"model": state_dict, "config": ...}`` as
``trainer.io.save_model`` writes it), optionally ``vocoder/`` holding a vocoder's own ``config.json`` and checkpoint
(HiFi-GAN, MelGAN...; without it the spectrogram is inverted with Griffin-Lim), and optionally ``speakers.json``
mapping character ids to the model's speaker names. Everything loads through Coqui's own ``Synthesizer``, as
``tts --model_path ... --config_path ...`` does.

Speakers: a multi-speaker model speaks each character with the speaker ``speakers.json`` names, else with one
picked from the character id's hash, so a character keeps its voice across shots and runs. Coqui gives no phoneme
timings, so the lip-sync phonemes come from espeak-ng (the embedded voice) for the same text and voice, stretched
linearly from espeak's voiced span onto the model's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly
from TTS.utils.synthesizer import Synthesizer

from ..audit import ModelCall, weights_sha256
from ..backends import ModelSettings
from ..media import speech
from ..media.audio_mix import SAMPLE_RATE
from ..media.manifest import Character
from .runtime import MissingModel, load_once, pick_device, require_model

_log = logging.getLogger(__name__)

SETTING = "MICRODRAMA_VOICE_MODEL (voice_model)"
CONFIG_NAME = "config.json"
CHECKPOINT_NAMES = ("model.pth", "best_model.pth", "model_file.pth")
VOCODER_DIR = "vocoder"
SPEAKERS_NAME = "speakers.json"
EXPECT = (f"a Coqui TTS model directory: {CONFIG_NAME} and its checkpoint ({' or '.join(CHECKPOINT_NAMES)}), "
          f"optionally {VOCODER_DIR}/ with the vocoder's {CONFIG_NAME} and checkpoint, and {SPEAKERS_NAME} "
          "mapping character ids to speaker names")

# The voiced span: samples within this much of the line's peak, with a margin so onsets and tails stay whole.
_VOICED_FLOOR_DB = -40.0
_SPAN_MARGIN_S = 0.01

_SYNTHESIS = threading.Lock()  # the fork of the global RNGs below is process-wide


@dataclass(frozen=True)
class CoquiFiles:
    model_dir: Path
    config: Path
    checkpoint: Path
    vocoder_config: Path | None = None
    vocoder_checkpoint: Path | None = None
    speakers: Path | None = None


def _checkpoint(directory: Path, what: str) -> Path:
    for name in CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise MissingModel(f"{what} at {directory} ({SETTING}) has no checkpoint: expected one of "
                       f"{', '.join(CHECKPOINT_NAMES)} next to {CONFIG_NAME}")


def model_files(path: str | Path | None) -> CoquiFiles:
    """The files of the model directory at ``path``; a MissingModel naming the setting when any is missing."""
    model_dir = require_model(path, "voice", SETTING, EXPECT, needs=[CONFIG_NAME])
    files = CoquiFiles(model_dir, model_dir / CONFIG_NAME, _checkpoint(model_dir, "the voice model"))
    vocoder = model_dir / VOCODER_DIR
    if vocoder.is_dir():
        if not (vocoder / CONFIG_NAME).is_file():
            raise MissingModel(f"the vocoder at {vocoder} ({SETTING}) lacks {CONFIG_NAME}")
        files = replace(files, vocoder_config=vocoder / CONFIG_NAME,
                        vocoder_checkpoint=_checkpoint(vocoder, "the vocoder"))
    if (model_dir / SPEAKERS_NAME).is_file():
        files = replace(files, speakers=model_dir / SPEAKERS_NAME)
    return files


def load_synthesizer(files: CoquiFiles, device: torch.device) -> Synthesizer:
    """The TTS model (and vocoder) through Coqui's Synthesizer, in eval mode on ``device``."""
    synthesizer = Synthesizer(tts_checkpoint=files.checkpoint, tts_config_path=files.config,
                              vocoder_checkpoint=files.vocoder_checkpoint, vocoder_config=files.vocoder_config)
    # Moved here rather than with use_cuda, which always means the default GPU (and ignores cuda:N).
    return synthesizer.to(device).eval()


def read_speaker_map(path: Path | None, speakers: Sequence[str]) -> dict[str, str]:
    """``speakers.json`` (character id -> speaker name) checked against the model's speakers; {} without one."""
    if path is None:
        return {}
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f"{path}: expected an object mapping character ids to speaker names")
    unknown = sorted(set(mapping.values()) - set(speakers))
    if unknown:
        raise ValueError(f"{path} names speakers the model does not have: {', '.join(unknown)} "
                         f"(it has {', '.join(speakers) or 'none'})")
    return mapping


def pick_speaker(character_id: str, speakers: Sequence[str], mapping: dict[str, str]) -> str | None:
    """The character's speaker: from ``mapping``, else a stable hash of its id over the model's speakers; None
    for a single-speaker model."""
    if character_id in mapping:
        return mapping[character_id]
    if len(speakers) <= 1:
        return None
    digest = hashlib.sha256(character_id.encode("utf-8")).digest()
    return speakers[int.from_bytes(digest[:8], "big") % len(speakers)]


def pick_language(languages: Sequence[str], voice_language: str) -> str | None:
    """For a multilingual model, its language matching the character's espeak language (``en-us`` or ``en``)."""
    if len(languages) <= 1:
        return None
    for wanted in (voice_language, voice_language.split("-")[0]):
        if wanted in languages:
            return wanted
    raise ValueError(f"the voice model speaks {', '.join(languages)}, not the character's {voice_language!r}")


def line_seed(character_id: str, text: str) -> int:
    """A seed per (character, line), so a line re-renders identically in any shot order or process."""
    digest = hashlib.sha256(f"{character_id}\0{text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@contextmanager
def seeded_globals(seed: int, device: torch.device) -> Iterator[None]:
    """Seeds torch's and numpy's global generators for the block and restores them after: Coqui samples from
    them (Tacotron's always-on prenet dropout, Glow-TTS's noise, Griffin-Lim's initial phases) and takes no
    generator."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


def voiced_span(samples: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """First and one-past-last sample of the audible part (within ``_VOICED_FLOOR_DB`` of the peak), with a
    small margin either side."""
    magnitude = np.abs(samples)
    peak = float(magnitude.max()) if len(magnitude) else 0.0
    if not peak > 0.0:
        raise ValueError("the voice model produced silence")
    audible = np.flatnonzero(magnitude >= peak * 10 ** (_VOICED_FLOOR_DB / 20))
    margin = round(_SPAN_MARGIN_S * sample_rate)
    return max(0, int(audible[0]) - margin), min(len(samples), int(audible[-1]) + 1 + margin)


def stretch_phonemes(phonemes: Sequence[speech.Phoneme], from_s: float,
                     to_s: float) -> tuple[speech.Phoneme, ...]:
    """Phonemes timed over ``from_s`` seconds scaled linearly onto ``to_s`` seconds."""
    if from_s <= 0 or to_s <= 0:
        raise ValueError(f"durations must be positive, got {from_s} and {to_s}")
    scale = to_s / from_s
    return tuple(speech.Phoneme(p.start_s * scale, min(p.end_s * scale, to_s), p.symbol) for p in phonemes
                 if p.start_s * scale < to_s)


def model_speech(wav: np.ndarray, model_rate: int, reference: speech.Speech) -> speech.Speech:
    """The model's waveform trimmed to its voiced span, resampled to the mix rate, its peak kept within full scale,
    with ``reference``'s phonemes (espeak-ng, same text) stretched onto it."""
    wav = np.asarray(wav, np.float32)
    if not np.all(np.isfinite(wav)):
        raise ValueError("the voice model produced non-finite samples")
    first, last = voiced_span(wav, model_rate)
    divisor = math.gcd(SAMPLE_RATE, model_rate)
    samples = resample_poly(wav[first:last], SAMPLE_RATE // divisor, model_rate // divisor).astype(np.float32)
    samples /= max(1.0, float(np.abs(samples).max()))
    duration_s = len(samples) / SAMPLE_RATE
    return speech.Speech(samples, SAMPLE_RATE, stretch_phonemes(reference.phonemes, reference.duration_s, duration_s))


class CoquiVoice:
    name = "coqui"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        # Coqui's models run in full precision on the GPU too: its synthesis hands float32 arrays between the
        # acoustic model, Griffin-Lim and the vocoder, and the models are small enough that fp16 buys little.
        self.device = pick_device(settings.device)
        self._calls: list[ModelCall] = []

    def take_calls(self) -> list[ModelCall]:
        calls, self._calls = self._calls, []
        return calls

    def synthesize(self, text: str, character: Character) -> speech.Speech:
        files = model_files(self.settings.voice_model)
        # espeak-ng's rendering gives the phonemes, and tells an unpronounceable line ("...") apart: that stays
        # the embedded voice's silent beat rather than whatever the model makes of it.
        reference = speech.synthesize(text, character.voice)
        if not np.any(reference.samples):
            return reference
        synthesizer = load_once("coqui-tts", files.model_dir, self.device,
                                lambda: load_synthesizer(files, self.device))
        model = synthesizer.tts_model
        speakers = list(model.speaker_manager.speaker_names) if model.speaker_manager is not None else []
        if model.speaker_manager is not None and not speakers:
            raise ValueError(f"the voice model at {files.model_dir} has no named speakers (it clones voices from "
                             "reference audio, which characters do not carry); use a model with named speakers")
        speaker = pick_speaker(character.id, speakers, read_speaker_map(files.speakers, speakers))
        languages = model.language_manager.language_names if getattr(model, "language_manager", None) else []
        language = pick_language(languages, character.voice.language)
        seed = line_seed(character.id, text)
        with _SYNTHESIS, seeded_globals(seed, self.device), torch.inference_mode():
            wav = synthesizer.tts(text, speaker_name=speaker, language_name=language)
        model_rate = int(synthesizer.output_sample_rate)
        spoken = model_speech(np.asarray(wav, np.float32), model_rate, reference)
        self._calls.append(ModelCall(
            stage="voice", backend=self.name, model=str(files.model_dir),
            weights_sha256=weights_sha256(files.model_dir), device=str(self.device), seed=seed, prompt=text,
            params={"character": character.id, "speaker": speaker, "language": language,
                    "model": synthesizer.tts_config.model, "checkpoint": files.checkpoint.name,
                    "vocoder": synthesizer.vocoder_config.model if files.vocoder_checkpoint else "griffin-lim",
                    "speaker_map": str(files.speakers) if files.speakers else None,
                    "model_sample_rate": model_rate, "sample_rate": SAMPLE_RATE,
                    "duration_s": round(spoken.duration_s, 3), "phonemes": "espeak-ng, stretched"}))
        return spoken

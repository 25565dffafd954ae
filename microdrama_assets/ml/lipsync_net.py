"""Lip sync with Wav2Lip (Prajwal et al., "A Lip Sync Expert Is All You Need", 2020) behind the lip-sync protocol.

Per speaker and frame: a square face box derived from the tracked mouth, cropped and resized to 96x96, its lower
half masked and stacked with the unmasked crop (6 channels, BGR as the network was trained on OpenCV images), plus
the 80x16 mel window (0.2 s at 16 kHz) centred on the frame. The network redraws the lower face, which is pasted
back through a feathered mask; frames in which the speaker is not heard pass through untouched.

Checkpoint layout (``lipsync_model``): a directory holding the published ``wav2lip_gan.pth`` or ``wav2lip.pth``
(``torch.save({"state_dict": ...})``, keys as in the reference ``models/wav2lip.py``, with or without the
``module.`` prefix of DataParallel), optionally a ``config.json`` ``{"channel_multiplier": m}`` that scales every
layer's width (default 1: the published sizes); or the path of such a checkpoint file itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import librosa
import numpy as np
import torch
from scipy.signal import lfilter, resample_poly
from torch import nn

from ..audit import ModelCall, weights_sha256
from ..backends import ModelSettings
from ..media import lipsync
from ..media.manifest import FPS
from ..media.speech import Speech
from .runtime import MissingModel, load_once, pick_device, pick_dtype, require_model

CHECKPOINT_NAMES = ("wav2lip_gan.pth", "wav2lip.pth")
CONFIG_NAME = "config.json"
SETTING = "MICRODRAMA_LIPSYNC_MODEL (lipsync_model)"
EXPECT = (f"a Wav2Lip checkpoint directory holding {' or '.join(CHECKPOINT_NAMES)} "
          f"(optionally {CONFIG_NAME} with channel_multiplier), or the checkpoint file itself")

FACE_SIZE = 96  # the network's input and output side; its encoder reduces exactly this to 1x1

# The mel front end the published checkpoints were trained with (Wav2Lip's hparams.py and audio.py).
SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
MEL_BINS = 80
MEL_STEP = 16  # mel frames per window: 0.2 s
MEL_FPS = SAMPLE_RATE / HOP
_PREEMPHASIS = 0.97
_MIN_LEVEL_DB = -100.0
_REF_LEVEL_DB = 20.0
_MAX_ABS = 4.0
_FMIN, _FMAX = 55.0, 7600.0
_MEL_PAD = MEL_STEP  # silent mel frames before and after the shot, so windows at its edges stay whole

# The face box around a mouth, like the face detector's box Wav2Lip was trained on: a square this many mouth
# widths wide with the mouth this far down it, so its lower half holds mouth, jaw and chin.
FACE_BOX_MOUTH_WIDTHS = 3.4
MOUTH_DEPTH = 0.7
_FEATHER = 0.1  # share of the box side over which the pasted lower face fades into the frame

DEFAULT_BATCH = {"cuda": 64, "cpu": 16}  # faces per network call; each buffers up to a 1080x1920 frame


# ---------------------------------------------------------------------------------------------- network


class ConvBlock(nn.Module):
    """Conv, batch norm, optional residual, ReLU: the reference ``Conv2d`` (same attribute names, so same keys)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int | tuple[int, int], padding: int,
                 residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return self.act(out + x if self.residual else out)


class UpConvBlock(nn.Module):
    """Transposed conv, batch norm, ReLU: the reference ``Conv2dTranspose``."""

    def __init__(self, cin: int, cout: int, stride: int, padding: int, output_padding: int = 0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, stride, padding, output_padding),
                                        nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _residuals(channels: int, count: int) -> list[ConvBlock]:
    return [ConvBlock(channels, channels, 3, 1, 1, residual=True) for _ in range(count)]


class Wav2Lip(nn.Module):
    """The published Wav2Lip generator, layer for layer; ``channel_multiplier`` scales every width (1 = published)."""

    def __init__(self, channel_multiplier: float = 1.0) -> None:
        super().__init__()
        if channel_multiplier <= 0:
            raise ValueError(f"channel_multiplier must be positive, got {channel_multiplier}")

        def w(channels: int) -> int:
            return max(1, round(channels * channel_multiplier))

        e16, e32, e64, e128, e256, e512 = (w(c) for c in (16, 32, 64, 128, 256, 512))
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(6, e16, 7, 1, 3)),  # 96x96
            nn.Sequential(ConvBlock(e16, e32, 3, 2, 1), *_residuals(e32, 2)),  # 48
            nn.Sequential(ConvBlock(e32, e64, 3, 2, 1), *_residuals(e64, 3)),  # 24
            nn.Sequential(ConvBlock(e64, e128, 3, 2, 1), *_residuals(e128, 2)),  # 12
            nn.Sequential(ConvBlock(e128, e256, 3, 2, 1), *_residuals(e256, 2)),  # 6
            nn.Sequential(ConvBlock(e256, e512, 3, 2, 1), *_residuals(e512, 1)),  # 3
            nn.Sequential(ConvBlock(e512, e512, 3, 1, 0), ConvBlock(e512, e512, 1, 1, 0)),  # 1
        ])
        self.audio_encoder = nn.Sequential(  # (1, 80, 16) -> (512, 1, 1)
            ConvBlock(1, e32, 3, 1, 1), *_residuals(e32, 2),
            ConvBlock(e32, e64, 3, (3, 1), 1), *_residuals(e64, 2),
            ConvBlock(e64, e128, 3, 3, 1), *_residuals(e128, 2),
            ConvBlock(e128, e256, 3, (3, 2), 1), *_residuals(e256, 1),
            ConvBlock(e256, e512, 3, 1, 0), ConvBlock(e512, e512, 1, 1, 0),
        )
        d384 = w(384)
        # Each decoder block's input is the previous block's output beside the encoder's skip at that size.
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(e512, e512, 1, 1, 0)),  # 1x1
            nn.Sequential(UpConvBlock(e512 + e512, e512, 1, 0), *_residuals(e512, 1)),  # 3
            nn.Sequential(UpConvBlock(e512 + e512, e512, 2, 1, 1), *_residuals(e512, 2)),  # 6
            nn.Sequential(UpConvBlock(e512 + e256, d384, 2, 1, 1), *_residuals(d384, 2)),  # 12
            nn.Sequential(UpConvBlock(d384 + e128, e256, 2, 1, 1), *_residuals(e256, 2)),  # 24
            nn.Sequential(UpConvBlock(e256 + e64, e128, 2, 1, 1), *_residuals(e128, 2)),  # 48
            nn.Sequential(UpConvBlock(e128 + e32, e64, 2, 1, 1), *_residuals(e64, 2)),  # 96
        ])
        self.output_block = nn.Sequential(ConvBlock(e64 + e16, e32, 3, 1, 1), nn.Conv2d(e32, 3, 1, 1, 0),
                                          nn.Sigmoid())

    def forward(self, mels: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """``mels`` (B, 1, 80, 16), ``faces`` (B, 6, 96, 96) in [0, 1] -> lower-face-redrawn faces (B, 3, 96, 96)."""
        skips = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = self.audio_encoder(mels)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)


def checkpoint_file(model: Path) -> Path:
    """The checkpoint inside a model directory (the GAN one first), or ``model`` when it is the file itself."""
    if model.is_file():
        return model
    for name in CHECKPOINT_NAMES:
        if (model / name).is_file():
            return model / name
    raise MissingModel(f"lipsync model at {model} ({SETTING}) lacks {' or '.join(CHECKPOINT_NAMES)}; "
                       f"expected {EXPECT}")


def channel_multiplier(model: Path) -> float:
    config = model / CONFIG_NAME
    if not (model.is_dir() and config.is_file()):
        return 1.0
    return float(json.loads(config.read_text(encoding="utf-8")).get("channel_multiplier", 1.0))


def load_wav2lip(model: Path, device: torch.device, dtype: torch.dtype) -> Wav2Lip:
    """The network from a checkpoint in the published layout (see the module docstring), in eval mode."""
    file = checkpoint_file(model)
    multiplier = channel_multiplier(model)
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise TypeError(f"{file} is not a Wav2Lip checkpoint: expected a state dict or {{'state_dict': ...}}")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    network = Wav2Lip(multiplier)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{file} does not fit the Wav2Lip generator with channel_multiplier {multiplier:g} "
                         f"(set it in {model / CONFIG_NAME} for a scaled model): {exc}") from exc
    return network.to(device=device, dtype=dtype).eval()


# ---------------------------------------------------------------------------------------------- audio


def melspectrogram(samples: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram (80, T) of 16-kHz audio, values in [-4, 4]."""
    emphasised = lfilter([1, -_PREEMPHASIS], [1], samples.astype(np.float64))
    # Reflect padding, as librosa did when the published checkpoints were trained (newer releases pad with zeros).
    spectrum = np.abs(librosa.stft(y=emphasised, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, pad_mode="reflect"))
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=MEL_BINS, fmin=_FMIN, fmax=_FMAX)
    min_level = 10 ** (_MIN_LEVEL_DB / 20)
    decibels = 20 * np.log10(np.maximum(min_level, basis @ spectrum)) - _REF_LEVEL_DB
    scaled = 2 * _MAX_ABS * (decibels - _MIN_LEVEL_DB) / -_MIN_LEVEL_DB - _MAX_ABS
    return np.clip(scaled, -_MAX_ABS, _MAX_ABS).astype(np.float32)


def speaker_mel(placed: Sequence[tuple[float, Speech]], n_frames: int, fps: int = FPS) -> np.ndarray:
    """The mel spectrogram of one speaker's lines alone on the shot's timeline, with ``_MEL_PAD`` frames of
    silence on both sides (index it with ``mel_window``)."""
    pad = _MEL_PAD * HOP
    track = np.zeros(pad + math.ceil(n_frames / fps * SAMPLE_RATE) + pad, np.float32)
    for start_s, speech in placed:
        rate = math.gcd(SAMPLE_RATE, speech.sample_rate)
        samples = resample_poly(speech.samples, SAMPLE_RATE // rate, speech.sample_rate // rate)
        if start_s < 0:
            raise ValueError(f"a line starts at {start_s:.3f} s, before the shot")
        start = pad + round(start_s * SAMPLE_RATE)
        end = min(len(track), start + len(samples))
        track[start:end] += samples[:end - start]
    return melspectrogram(track)


def mel_start(frame_index: int, fps: int = FPS) -> int:
    """First mel frame (on the shot's timeline) of the window centred on the middle of the frame's display time
    (mel frame k is centred on k / MEL_FPS seconds)."""
    return round(MEL_FPS * (frame_index + 0.5) / fps - (MEL_STEP - 1) / 2)


def mel_window(mel: np.ndarray, frame_index: int, fps: int = FPS) -> np.ndarray:
    """The (80, 16) window of a ``speaker_mel`` spectrogram that drives frame ``frame_index``."""
    start = _MEL_PAD + mel_start(frame_index, fps)
    if start < 0 or start + MEL_STEP > mel.shape[1]:
        raise ValueError(f"frame {frame_index} is outside the audio's {mel.shape[1] - 2 * _MEL_PAD} mel frames")
    return mel[:, start:start + MEL_STEP]


def speaking_frames(placed: Sequence[tuple[float, Speech]], n_frames: int, fps: int = FPS) -> np.ndarray:
    """Per frame, whether any of the speaker's voice is heard in it (bool, n_frames)."""
    heard = np.zeros(n_frames, bool)
    for start_s, speech in placed:
        heard |= lipsync.speech_envelope(speech.samples, speech.sample_rate, n_frames, fps, start_s) > 0
    return heard


# ---------------------------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class FaceBox:
    x0: int
    y0: int
    side: int

    @staticmethod
    def around_mouth(center_xy: Sequence[float], width_px: float) -> FaceBox:
        if not width_px > 0:
            raise ValueError(f"mouth width must be positive, got {width_px}")
        side = max(2, round(FACE_BOX_MOUTH_WIDTHS * width_px))
        return FaceBox(round(center_xy[0] - side / 2), round(center_xy[1] - MOUTH_DEPTH * side), side)

    def visible(self, height: int, width: int) -> tuple[slice, slice] | None:
        """The rows and columns of the box inside a frame of that size, or None when none are."""
        x0, y0 = max(self.x0, 0), max(self.y0, 0)
        x1, y1 = min(self.x0 + self.side, width), min(self.y0 + self.side, height)
        return (slice(y0, y1), slice(x0, x1)) if x1 > x0 and y1 > y0 else None


def crop_face(frame: np.ndarray, box: FaceBox) -> np.ndarray:
    """The box's pixels (edge pixels repeated where it leaves the frame) resized to FACE_SIZE (uint8 RGB)."""
    visible = box.visible(*frame.shape[:2])
    if visible is None:
        raise ValueError(f"face box {box} lies outside the {frame.shape[1]}x{frame.shape[0]} frame")
    rows, cols = visible
    region = cv2.copyMakeBorder(frame[rows, cols], rows.start - box.y0, box.y0 + box.side - rows.stop,
                                cols.start - box.x0, box.x0 + box.side - cols.stop, cv2.BORDER_REPLICATE)
    return cv2.resize(region, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)


def _ramp(length: int, start: float, feather: float) -> np.ndarray:
    """0 before ``start``, rising to 1 over ``feather`` pixels after it, and falling to 0 at the far end."""
    position = np.arange(length, dtype=np.float32) + 0.5
    return np.clip(np.minimum((position - start) / feather, (length - position) / feather), 0.0, 1.0)


def lower_face_mask(side: int) -> np.ndarray:
    """Blend weights (side, side) for pasting a generated face: its lower half, faded in at every edge."""
    feather = max(1.0, _FEATHER * side)
    return _ramp(side, side / 2, feather)[:, None] * _ramp(side, 0.0, feather)[None, :]


def paste_lower_face(frame: np.ndarray, box: FaceBox, face: np.ndarray) -> None:
    """Blend the lower half of a generated face (FACE_SIZE square, RGB, 0-255) into the frame's box in place;
    nothing outside the box's lower half changes."""
    visible = box.visible(*frame.shape[:2])
    if visible is None:
        return
    rows, cols = visible
    scaled = cv2.resize(face.astype(np.float32), (box.side, box.side), interpolation=cv2.INTER_LINEAR)
    inner = (slice(rows.start - box.y0, rows.stop - box.y0), slice(cols.start - box.x0, cols.stop - box.x0))
    weight = lower_face_mask(box.side)[inner][..., None]
    region = frame[rows, cols].astype(np.float32)
    frame[rows, cols] = np.clip(np.round(region + weight * (scaled[inner] - region)), 0, 255).astype(np.uint8)


def network_inputs(faces: Sequence[np.ndarray], mels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Batched network inputs from RGB face crops and mel windows, as the reference inference builds them:
    (B, 1, 80, 16) mels and (B, 6, 96, 96) faces (masked lower half, then the whole crop; BGR, in [0, 1])."""
    bgr = np.stack(faces)[..., ::-1].astype(np.float32) / 255.0
    masked = bgr.copy()
    masked[:, FACE_SIZE // 2:] = 0.0
    stacked = np.concatenate([masked, bgr], axis=3).transpose(0, 3, 1, 2)
    return np.stack(mels)[:, None].astype(np.float32), np.ascontiguousarray(stacked)


# ---------------------------------------------------------------------------------------------- backend


@dataclass
class _Job:
    """One speaker's face in one buffered frame, waiting for the network."""

    slot: int  # index into the buffered frames
    speaker: str
    box: FaceBox
    face: np.ndarray  # FACE_SIZE RGB crop
    mel: np.ndarray  # (80, 16)


class Wav2LipSync:
    name = "wav2lip"

    def __init__(self, settings: ModelSettings, batch_size: int | None = None) -> None:
        self.settings = settings
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(self.device)
        self.batch_size = batch_size or max(1, DEFAULT_BATCH.get(self.device.type, DEFAULT_BATCH["cpu"])
                                            // settings.batch_divisor)
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        self._calls: list[ModelCall] = []

    def take_calls(self) -> list[ModelCall]:
        calls, self._calls = self._calls, []
        return calls

    def _model(self) -> Path:
        return require_model(self.settings.lipsync_model, "lipsync", SETTING, EXPECT)

    def _network(self, model: Path) -> Wav2Lip:
        return load_once("wav2lip", model, self.device, lambda: load_wav2lip(model, self.device, self.dtype))

    def animate(self, frames: Iterator[np.ndarray], mouths: Mapping[str, lipsync.MouthPath],
                voices: Mapping[str, list[tuple[float, Speech]]], n_frames: int) -> Iterator[np.ndarray]:
        model = self._model()
        checkpoint_file(model)  # fail on an incomplete directory before any frame is read
        speakers = sorted(set(voices) & set(mouths))
        for speaker in speakers:
            if len(mouths[speaker].xy) < n_frames or len(mouths[speaker].width) < n_frames:
                raise ValueError(f"{speaker}'s mouth path covers {len(mouths[speaker].xy)} frames, "
                                 f"the shot has {n_frames}")
        heard = {speaker: speaking_frames(voices[speaker], n_frames) for speaker in speakers}
        speakers = [speaker for speaker in speakers if heard[speaker].any()]
        mels = {speaker: speaker_mel(voices[speaker], n_frames) for speaker in speakers}
        synced = dict.fromkeys(speakers, 0)
        network_calls = 0
        buffered: list[np.ndarray] = []
        jobs: list[_Job] = []
        try:
            for index, frame in enumerate(frames):
                if index >= n_frames:
                    raise ValueError(f"the shot has {n_frames} frames but more arrived")
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"frame {index} must be uint8 RGB (h, w, 3), got {frame.dtype} {frame.shape}")
                new_jobs = []
                for speaker in (s for s in speakers if heard[s][index]):
                    box = FaceBox.around_mouth(mouths[speaker].xy[index], float(mouths[speaker].width[index]))
                    if box.visible(*frame.shape[:2]):  # a mouth carried off screen by the camera has no face
                        new_jobs.append(_Job(len(buffered), speaker, box, crop_face(frame, box),
                                             mel_window(mels[speaker], index)))
                if not new_jobs and not buffered:
                    yield frame  # nothing waiting ahead of it: no need to hold it back
                    continue
                buffered.append(frame)
                jobs.extend(new_jobs)
                if len(jobs) >= self.batch_size:
                    network_calls += self._sync(model, buffered, jobs, synced)
                    yield from buffered
                    buffered, jobs = [], []
            if buffered:
                network_calls += self._sync(model, buffered, jobs, synced)
                yield from buffered
        finally:
            self._record(model, synced, network_calls)

    def _sync(self, model: Path, buffered: list[np.ndarray], jobs: list[_Job], synced: dict[str, int]) -> int:
        """Run the network over the jobs (in batches) and paste each result into its frame; returns the calls."""
        network = self._network(model)
        calls = 0
        for first in range(0, len(jobs), self.batch_size):
            batch = jobs[first:first + self.batch_size]
            mels, faces = network_inputs([job.face for job in batch], [job.mel for job in batch])
            with torch.inference_mode():
                output = network(torch.from_numpy(mels).to(self.device, self.dtype),
                                 torch.from_numpy(faces).to(self.device, self.dtype))
            generated = output.float().permute(0, 2, 3, 1).cpu().numpy()[..., ::-1] * 255.0  # BGR back to RGB
            calls += 1
            for job, face in zip(batch, generated):
                paste_lower_face(buffered[job.slot], job.box, face)
                synced[job.speaker] += 1
        return calls

    def _record(self, model: Path, synced: dict[str, int], network_calls: int) -> None:
        if not network_calls:
            return
        digest = weights_sha256(model)
        for speaker, frames in synced.items():
            self._calls.append(ModelCall(
                stage="lipsync", backend=self.name, model=str(model), weights_sha256=digest,
                device=str(self.device), seed=None, prompt=speaker,
                params={"frames_synced": frames, "network_calls": network_calls, "batch_size": self.batch_size,
                        "checkpoint": checkpoint_file(model).name, "channel_multiplier": channel_multiplier(model),
                        "dtype": str(self.dtype).removeprefix("torch."), "face_size": FACE_SIZE,
                        "face_box_mouth_widths": FACE_BOX_MOUTH_WIDTHS, "mel_bins": MEL_BINS,
                        "mel_window_frames": MEL_STEP, "audio_sample_rate": SAMPLE_RATE}))

"""One protocol per stage; implementations are chosen by name in ``BackendSettings``.

The embedded backends need no model weights. The model-backed ones (the ``[ml]`` extra) live in ``ml/`` and are
imported only when selected, so the embedded pipeline never imports torch. Every backend reports the model calls it
made (``take_calls``) so the assets can record what produced each artifact.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from .audit import ModelCall
from .media import lipsync, motion, planner, render, speech
from .media.manifest import CameraMove, Character, EpisodeManifest, Shot
from .media.storyboard import KeyframePlan

Placed = list[tuple[float, speech.Speech]]  # one speaker's lines: (start within the shot in s, speech)


@dataclass(frozen=True)
class ModelSettings:
    """Where the model-backed stages find their local weights, and which device they run on."""

    planner_model: str = ""
    keyframes_model: str = ""
    keyframes_controlnet: str = ""
    keyframes_adapter: str = ""
    keyframes_size: str = ""  # generation WxH; empty: the pipeline's native 9:16-holding size
    keyframes_steps: int = 0  # denoising steps; 0: the pipeline family's default
    voice_model: str = ""
    motion_model: str = ""
    lipsync_model: str = ""
    device: str = "auto"
    batch_divisor: int = 1  # > 1 on a retry after the GPU ran out of memory (execution.model_placement)


class PlannerBackend(Protocol):
    name: str

    def plan(self, logline: str, episode_id: str, shots: int, seed: int, duration_s: float,
             cast: Sequence[Character] = ()) -> EpisodeManifest: ...

    def take_calls(self) -> list[ModelCall]: ...


class KeyframeBackend(Protocol):
    name: str

    def render(self, manifest: EpisodeManifest, shot: Shot, plan: KeyframePlan,
               references: Mapping[str, np.ndarray]) -> render.RenderedKeyframe:
        """One keyframe following ``plan``'s poses; ``references`` holds each of the shot's characters' front
        reference view from their bundle (RGB), for backends that condition on it to keep characters consistent."""
        ...

    def take_calls(self) -> list[ModelCall]: ...


class VoiceBackend(Protocol):
    name: str

    def synthesize(self, text: str, character: Character) -> speech.Speech: ...

    def take_calls(self) -> list[ModelCall]: ...


class MotionBackend(Protocol):
    name: str

    def frames(self, keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
               layers: Sequence[motion.KeyframeLayers] | None = None) -> Iterator[np.ndarray]:
        """The shot's frames; ``layers`` (one per keyframe: the set plate and the character masks), when given,
        let the camera move the characters and the set apart (parallax)."""
        ...

    def take_calls(self) -> list[ModelCall]: ...


class LipSyncBackend(Protocol):
    name: str

    def animate(self, frames: Iterator[np.ndarray], mouths: Mapping[str, lipsync.MouthPath],
                voices: Mapping[str, Placed], n_frames: int) -> Iterator[np.ndarray]:
        """The shot's frames with each on-screen speaker's mouth (``mouths``: where it is in every frame) moving
        to their own lines (``voices``); frames arrive and leave one at a time."""
        ...

    def take_calls(self) -> list[ModelCall]: ...


class _Embedded:
    """Embedded backends call no model, so they have nothing to audit."""

    name = "embedded"

    def take_calls(self) -> list[ModelCall]:
        return []


class EmbeddedPlanner(_Embedded):
    def plan(self, logline: str, episode_id: str, shots: int, seed: int, duration_s: float,
             cast: Sequence[Character] = ()) -> EpisodeManifest:
        return planner.plan_episode(logline, episode_id, shots=shots, seed=seed, target_duration_s=duration_s,
                                    cast=cast)


class ProceduralKeyframes(_Embedded):
    def render(self, manifest: EpisodeManifest, shot: Shot, plan: KeyframePlan,
               references: Mapping[str, np.ndarray]) -> render.RenderedKeyframe:
        # The figure renderer draws each character from its manifest appearance, which the references show.
        return render.render_keyframe(manifest, shot, plan)


class EspeakVoice(_Embedded):
    def synthesize(self, text: str, character: Character) -> speech.Speech:
        return speech.synthesize(text, character.voice)


class OpticalFlowMotion(_Embedded):
    def frames(self, keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
               layers: Sequence[motion.KeyframeLayers] | None = None) -> Iterator[np.ndarray]:
        return motion.shot_frames(keyframes, camera, n_frames, seed, layers)


class VisemeLipSync(_Embedded):
    def animate(self, frames: Iterator[np.ndarray], mouths: Mapping[str, lipsync.MouthPath],
                voices: Mapping[str, Placed], n_frames: int) -> Iterator[np.ndarray]:
        tracks = {speaker: lipsync.mouth_track(placed, n_frames) for speaker, placed in voices.items()
                  if speaker in mouths}
        for index, frame in enumerate(frames):
            for speaker, track in tracks.items():
                path = mouths[speaker]
                lipsync.draw_mouth(frame, tuple(path.xy[index]), float(path.width[index]),
                                   float(track.openness[index]), int(track.visemes[index]), path.lip_rgb)
            yield frame


def _model_backend(module: str, cls: str, extra: str = "ml") -> Callable[[ModelSettings], object]:
    """A factory that imports ``microdrama_assets.ml.<module>`` only when the backend is chosen."""

    def build(settings: ModelSettings) -> object:
        try:
            loaded = importlib.import_module(f"{__package__}.ml.{module}")
        except ImportError as exc:
            raise ImportError(f"the {cls} backend needs the {extra} extra: pip install -e '.[{extra}]' "
                              f"({exc})") from exc
        return getattr(loaded, cls)(settings)

    return build


def _embedded(cls: type) -> Callable[[ModelSettings], object]:
    return lambda _settings: cls()


STAGE_BACKENDS: dict[str, dict[str, Callable[[ModelSettings], object]]] = {
    "planner": {"embedded": _embedded(EmbeddedPlanner),
                "transformers": _model_backend("planner_lm", "TransformersPlanner")},
    "keyframes": {"embedded": _embedded(ProceduralKeyframes),
                  "diffusers": _model_backend("keyframes_diffusion", "DiffusionKeyframes")},
    "voice": {"embedded": _embedded(EspeakVoice),
              "coqui": _model_backend("voice_coqui", "CoquiVoice", extra="coqui")},
    "motion": {"embedded": _embedded(OpticalFlowMotion),
               "rife": _model_backend("interpolation", "RifeInterpolation")},
    "lipsync": {"embedded": _embedded(VisemeLipSync),
                "wav2lip": _model_backend("lipsync_net", "Wav2LipSync")},
}

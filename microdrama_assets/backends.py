"""One protocol per stage; implementations are chosen by name in ``BackendSettings``.

The embedded backends need no model weights. Model-backed implementations register here under their own names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from .media import lipsync, motion, planner, render, speech
from .media.manifest import CameraMove, Character, EpisodeManifest, Shot
from .media.storyboard import KeyframePlan


class PlannerBackend(Protocol):
    name: str

    def plan(self, logline: str, episode_id: str, shots: int, seed: int, duration_s: float,
             cast: Sequence[Character] = ()) -> EpisodeManifest: ...


class KeyframeBackend(Protocol):
    name: str

    def render(self, manifest: EpisodeManifest, shot: Shot, plan: KeyframePlan) -> render.RenderedKeyframe: ...


class VoiceBackend(Protocol):
    name: str

    def synthesize(self, text: str, character: Character) -> speech.Speech: ...


class MotionBackend(Protocol):
    name: str

    def frames(self, keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
               layers: Sequence[motion.KeyframeLayers] | None = None) -> Iterator[np.ndarray]:
        """The shot's frames; ``layers`` (one per keyframe: the set plate and the character masks), when given,
        let the camera move the characters and the set apart (parallax)."""
        ...


class LipSyncBackend(Protocol):
    name: str

    def track(self, placed: list[tuple[float, speech.Speech]], n_frames: int) -> lipsync.MouthTrack: ...


class EmbeddedPlanner:
    name = "embedded"

    def plan(self, logline: str, episode_id: str, shots: int, seed: int, duration_s: float,
             cast: Sequence[Character] = ()) -> EpisodeManifest:
        return planner.plan_episode(logline, episode_id, shots=shots, seed=seed, target_duration_s=duration_s,
                                    cast=cast)


class ProceduralKeyframes:
    name = "embedded"

    def render(self, manifest: EpisodeManifest, shot: Shot, plan: KeyframePlan) -> render.RenderedKeyframe:
        return render.render_keyframe(manifest, shot, plan)


class EspeakVoice:
    name = "embedded"

    def synthesize(self, text: str, character: Character) -> speech.Speech:
        return speech.synthesize(text, character.voice)


class OpticalFlowMotion:
    name = "embedded"

    def frames(self, keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
               layers: Sequence[motion.KeyframeLayers] | None = None) -> Iterator[np.ndarray]:
        return motion.shot_frames(keyframes, camera, n_frames, seed, layers)


class VisemeLipSync:
    name = "embedded"

    def track(self, placed: list[tuple[float, speech.Speech]], n_frames: int) -> lipsync.MouthTrack:
        return lipsync.mouth_track(placed, n_frames)


@dataclass(frozen=True)
class Backends:
    planner: PlannerBackend
    keyframes: KeyframeBackend
    voice: VoiceBackend
    motion: MotionBackend
    lipsync: LipSyncBackend


STAGE_BACKENDS: dict[str, dict[str, Callable[[], object]]] = {
    "planner": {"embedded": EmbeddedPlanner},
    "keyframes": {"embedded": ProceduralKeyframes},
    "voice": {"embedded": EspeakVoice},
    "motion": {"embedded": OpticalFlowMotion},
    "lipsync": {"embedded": VisemeLipSync},
}

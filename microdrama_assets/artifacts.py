"""Where each artifact of an episode lives in the store: the one place that knows the layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .media.manifest import EpisodeManifest, check_id, parse_manifest
from .storage import ArtifactStore


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_gray(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


CHARACTER_DESCRIPTOR = "descriptor.npy"


def shared_bundle_dir(store: ArtifactStore, character_id: str, version: str) -> Path:
    """A character bundle kept by content version, shared by every episode whose character looks the same."""
    return store.path("bundles", check_id(character_id, "character id"), check_id(version, "bundle version"))


@dataclass(frozen=True)
class ShotArtifacts:
    store: ArtifactStore  # reads go through it: on S3 it fetches what another machine wrote
    directory: Path

    @property
    def storyboard_dir(self) -> Path:
        return self.directory / "storyboard"

    @property
    def keyframes_dir(self) -> Path:
        return self.directory / "keyframes"

    @property
    def keyframe_layout_path(self) -> Path:
        return self.keyframes_dir / "layout.json"

    def keyframe_path(self, index: int) -> Path:
        return self.keyframes_dir / f"keyframe_{index}.png"

    def keyframe_background_path(self, index: int) -> Path:
        """Keyframe ``index``'s set without the characters (the layer behind them, for parallax)."""
        return self.keyframes_dir / f"background_{index}.png"

    def keyframe_mask_path(self, index: int, character_id: str) -> Path:
        """The character's visible region in keyframe ``index`` (0/255 PNG), for the consistency check."""
        return self.keyframes_dir / f"mask_{index}_{check_id(character_id, 'character id')}.png"

    def keyframe_layout(self) -> dict:
        """The keyframes' layout; the whole keyframes directory is then in the working copy, ready to read."""
        path = self.store.require(self.keyframe_layout_path, "keyframes")
        return json.loads(path.read_text(encoding="utf-8"))

    def keyframe_images(self) -> list[np.ndarray]:
        return [read_rgb(self.keyframe_path(k["index"])) for k in self.keyframe_layout()["keyframes"]]

    # Artifacts made of several files live in one directory each, written aside and swapped in whole, so a
    # clip never pairs with another render's mouth track, nor a dialogue track with another's timings.
    @property
    def dialogue_dir(self) -> Path:
        return self.directory / "dialogue"

    @property
    def dialogue_wav(self) -> Path:
        return self.dialogue_dir / "dialogue.wav"

    @property
    def dialogue_json(self) -> Path:
        return self.dialogue_dir / "dialogue.json"

    @property
    def clip_dir(self) -> Path:
        return self.directory / "clip"

    @property
    def clip(self) -> Path:
        return self.clip_dir / "clip.mp4"

    @property
    def clip_track(self) -> Path:
        return self.clip_dir / "track.json"

    @property
    def composited(self) -> Path:
        return self.directory / "composited.mp4"

    @property
    def renditions_dir(self) -> Path:
        return self.directory / "renditions"


class EpisodeArtifacts:
    def __init__(self, store: ArtifactStore, episode_id: str):
        self.store = store
        self.episode_id = check_id(episode_id, "episode id")
        self.directory = store.episode_dir(episode_id)

    @property
    def request(self) -> Path:
        return self.directory / "request.json"

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def manifest_schema(self) -> Path:
        return self.directory / "manifest.schema.json"

    def manifest(self) -> EpisodeManifest:
        path = self.store.require(self.manifest_path, "episode_manifest")
        return parse_manifest(path.read_bytes())

    @property
    def inputs_dir(self) -> Path:
        """Files the user supplied with the request (e.g. a music bed), copied in so the episode is self-contained."""
        return self.directory / "inputs"

    def input_file(self, name: str) -> Path:
        """A file named in the request (``request["music"]``): a plain file name inside ``inputs_dir``."""
        return self.store.path("episodes", self.episode_id, "inputs", name)

    def character_dir(self, character_id: str) -> Path:
        return self.directory / "characters" / check_id(character_id, "character id")

    def model_calls_path(self, asset_name: str, partition: str) -> Path:
        """The model calls one asset made for one episode or shot (``audit/<asset>/<episode or shot>.json``)."""
        return self.directory / "audit" / check_id(asset_name, "asset name") / f"{check_id(partition, 'partition')}.json"

    def shot(self, shot_id: str) -> ShotArtifacts:
        return ShotArtifacts(self.store, self.store.shot_path(self.episode_id, shot_id))

    @property
    def audio_dir(self) -> Path:
        return self.directory / "audio"

    @property
    def mix_wav(self) -> Path:
        return self.audio_dir / "mix.wav"

    @property
    def mix_m4a(self) -> Path:
        return self.audio_dir / "mix.m4a"

    @property
    def sound_plan(self) -> Path:
        """Beside the mix: where the music came from and every SFX cue placed (or skipped, and why)."""
        return self.audio_dir / "sfx.json"

    @property
    def captions_vtt(self) -> Path:
        return self.directory / "captions.vtt"

    @property
    def master_mp4(self) -> Path:
        return self.directory / "master.mp4"

    @property
    def hls_dir(self) -> Path:
        return self.directory / "hls"

    @property
    def delivery_json(self) -> Path:
        return self.directory / "delivery.json"

    @property
    def poster(self) -> Path:
        return self.directory / "poster.jpg"

    @property
    def engagement_json(self) -> Path:
        """What viewers did, by shot (engagement_metrics), and its retention curve beside it."""
        return self.directory / "analytics" / "engagement.json"

    @property
    def retention_png(self) -> Path:
        return self.directory / "analytics" / "retention.png"

    @property
    def suggestions_json(self) -> Path:
        """Changes for the next episode and the planner guidance they add up to (next_episode_suggestions)."""
        return self.directory / "analytics" / "suggestions.json"

    @property
    def preview_dir(self) -> Path:
        """The fast draft preview (360x640 HLS that grows shot by shot; made in the plan run, before the full
        render starts)."""
        return self.directory / "preview"

    @property
    def published_parts(self) -> list[str]:
        """What publishing uploads, relative to the episode directory."""
        return [self.hls_dir.name, self.master_mp4.name, self.poster.name, self.captions_vtt.name,
                self.delivery_json.name]

"""Motion stage: keyframes become a 30 fps shot clip through optical-flow interpolation and the camera move,
with the characters and the set moving apart (parallax)."""

import json

import numpy as np
from dagster import AssetExecutionContext, MetadataValue, asset

from ..execution import GPU_POOL, GPU_STEP_TAGS, MODEL_RETRY_POLICY, placement_for_attempt
from ..artifacts import ShotArtifacts, read_gray, read_rgb
from ..cache import STAGES, shot_stage_key
from ..media.manifest import FPS
from ..media.motion import KeyframeLayers, camera_zoom, track_points
from ..media.video_io import write_mezzanine
from ..partitions import shot_partitions
from ..resources import ArtifactStoreResource, BackendSettings, EncodeSettings
from .common import (audit_restored, cached, cached_result, code_version, exactly, model_calls_metadata,
                     shot_context)
from .keyframes import keyframes


@asset(partitions_def=shot_partitions, group_name="motion", deps=[keyframes], output_required=False,
       code_version=code_version("clip"), pool=GPU_POOL, op_tags=GPU_STEP_TAGS, retry_policy=MODEL_RETRY_POLICY)
def shot_clip(context: AssetExecutionContext, store: ArtifactStoreResource, backends: BackendSettings,
              encode: EncodeSettings):
    """The shot at 30 fps (exactly the manifest's frame count), plus where each mouth is on every frame."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    mover = backends.motion_backend(placement_for_attempt(context, backends.device))
    key = shot_stage_key("clip", episode, manifest, shot, backends, encode)

    def build():
        images = artifacts.keyframe_images()
        layout = artifacts.keyframe_layout()
        frames = exactly(mover.frames(images, shot.camera, shot.frames, shot.seed, _keyframe_layers(artifacts, layout)),
                         shot.frames, f"shot {shot.id} motion")
        with episode.store.writing_dir(artifacts.clip_dir) as staging:
            write_mezzanine(staging / artifacts.clip.name, frames, manifest.width, manifest.height, encode.mezzanine())
            (staging / artifacts.clip_track.name).write_text(
                json.dumps({"mouths": _mouth_tracks(shot, layout, manifest.width, manifest.height)}), encoding="utf-8")
        return model_calls_metadata(context, episode, shot.id, mover)

    outcome = cached(context, store, key, artifacts.directory, STAGES["clip"].paths(artifacts), build)
    audit_restored(context, episode, shot.id, mover, outcome)
    yield cached_result(outcome, {
        "frames": shot.frames,  # counted as they were written (``exactly``)
        "duration_s": round(shot.frames / FPS, 3),
        "camera": shot.camera.value,
        "motion_backend": mover.name,
        **(outcome.value or {}),
        "bytes": artifacts.clip.stat().st_size,
        "path": MetadataValue.path(str(artifacts.clip)),
    })


def _keyframe_layers(artifacts: ShotArtifacts, layout: dict) -> list[KeyframeLayers]:
    """Each keyframe's set plate and character masks, as the keyframes asset saved them."""
    return [KeyframeLayers(read_rgb(artifacts.keyframe_background_path(entry["index"])),
                           {character_id: read_gray(artifacts.keyframe_mask_path(entry["index"], character_id))
                            for character_id in entry["characters"]})
            for entry in layout["keyframes"]]


def _mouth_tracks(shot, layout: dict, width: int, height: int) -> dict:
    """Per character: mouth centre and width on every output frame, following the character layer's motion
    (its keyframe timing and the full camera move; the set behind moves less)."""
    per_character: dict[str, list[dict]] = {}
    for keyframe in layout["keyframes"]:
        for mouth in keyframe["mouths"]:
            per_character.setdefault(mouth["character_id"], []).append(mouth)
    tracks = {}
    progress = np.linspace(0.0, 1.0, shot.frames) if shot.frames > 1 else np.zeros(1)
    for character_id, mouths in per_character.items():
        if len(mouths) != len(layout["keyframes"]):
            continue  # a figure not on every keyframe cannot be tracked through the interpolation
        centres = track_points([(m["x"], m["y"]) for m in mouths], shot.camera, shot.frames, width, height, shot.seed)
        base_width = float(np.mean([m["width"] for m in mouths]))
        widths = [base_width * camera_zoom(shot.camera, float(p), width, height, shot.seed) for p in progress]
        tracks[character_id] = {
            "xy": np.round(centres, 2).tolist(),
            "width": np.round(widths, 2).tolist(),
            "lip_rgb": list(mouths[0]["lip_rgb"]),
        }
    return tracks

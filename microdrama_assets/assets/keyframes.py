"""Storyboard and keyframe stages, per shot."""

import json
from dataclasses import asdict

import numpy as np
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, MetadataValue, asset)

from ..execution import GPU_POOL, GPU_STEP_TAGS, MODEL_RETRY_POLICY, placement_for_attempt
from ..artifacts import CHARACTER_DESCRIPTOR, read_gray, read_rgb
from ..cache import STAGES, shot_stage_key
from ..media.characters import score_characters
from ..media.stills import contact_sheet
from ..media.watermark import embed_watermark, watermark_payload
from ..media.storyboard import FigurePose, KeyframePlan, plan_keyframes, render_pose_map
from ..partitions import shot_partitions
from ..resources import ArtifactStoreResource, BackendSettings
from .common import (audit_restored, cached, cached_result, code_version, image_metadata,
                     model_calls_metadata, partitioned_check, per_episode, png_bytes, shot_context)
from .planning import character_bundles, episode_manifest

POSES_FILE = "poses.json"
REFERENCE_VIEW = "front.png"  # the bundle view model backends condition on (a head-and-shoulders portrait)


def load_plans(storyboard_dir) -> list[KeyframePlan]:
    payload = json.loads((storyboard_dir / POSES_FILE).read_text(encoding="utf-8"))
    return [KeyframePlan(p["index"], tuple(FigurePose(**f) for f in p["figures"])) for p in payload["keyframes"]]


@asset(partitions_def=shot_partitions, group_name="storyboard", deps=[per_episode(episode_manifest)],
       output_required=False, code_version=code_version("storyboard"))
def storyboard(context: AssetExecutionContext, store: ArtifactStoreResource):
    """Figure placement and gestures for each keyframe, with OpenPose-style pose maps (ControlNet conditioning)."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located

    def build():
        plans = plan_keyframes(shot, manifest)
        pose_maps = [render_pose_map(plan, manifest.width, manifest.height) for plan in plans]
        with episode.store.writing_dir(artifacts.storyboard_dir) as staging:
            for plan, pose_map in zip(plans, pose_maps):
                (staging / f"pose_{plan.index}.png").write_bytes(png_bytes(pose_map))
            (staging / POSES_FILE).write_text(json.dumps({"keyframes": [asdict(p) for p in plans]}, indent=2),
                                              encoding="utf-8")

    outcome = cached(context, store, shot_stage_key("storyboard", episode, manifest, shot, None, None),
                     artifacts.directory,
                     STAGES["storyboard"].paths(artifacts), build)
    plans = load_plans(artifacts.storyboard_dir)
    pose_maps = [read_rgb(artifacts.storyboard_dir / f"pose_{plan.index}.png") for plan in plans]
    yield cached_result(outcome, {
        "keyframes": len(plans),
        "figures": len(plans[0].figures),
        "pose_maps": image_metadata(contact_sheet(pose_maps, tile_width=120)),
    })


@asset(partitions_def=shot_partitions, group_name="keyframes", deps=[storyboard, per_episode(character_bundles)],
       output_required=False, code_version=code_version("keyframes"), pool=GPU_POOL, op_tags=GPU_STEP_TAGS,
       retry_policy=MODEL_RETRY_POLICY)
def keyframes(context: AssetExecutionContext, store: ArtifactStoreResource, backends: BackendSettings):
    """1-3 full-resolution 1080x1920 keyframes per shot, following the storyboard poses, each carrying an
    invisible watermark with the episode's digest (media/watermark.py)."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    renderer = backends.keyframes_backend(placement_for_attempt(context, backends.device))
    key = shot_stage_key("keyframes", episode, manifest, shot, backends, None)

    def build():
        plans = load_plans(artifacts.storyboard_dir)
        references = {cid: read_rgb(episode.store.require(episode.character_dir(cid) / REFERENCE_VIEW,
                                                          "character_bundles"))
                      for cid in shot.characters}
        rendered = [renderer.render(manifest, shot, plan, references) for plan in plans]
        with episode.store.writing_dir(artifacts.keyframes_dir) as staging:
            for plan, frame in zip(plans, rendered):
                # The watermark carries the episode's digest in the pixels: provenance that survives re-encoding
                # and screenshots of the stills, where metadata does not.
                (staging / artifacts.keyframe_path(plan.index).name).write_bytes(
                    png_bytes(embed_watermark(frame.image, watermark_payload(episode.episode_id))))
                (staging / artifacts.keyframe_background_path(plan.index).name).write_bytes(png_bytes(frame.background))
                for character_id, mask in frame.masks.items():
                    (staging / artifacts.keyframe_mask_path(plan.index, character_id).name).write_bytes(png_bytes(mask))
            layout = {"renderer": renderer.name,
                      "keyframes": [{"index": p.index, "mouths": [asdict(m) for m in f.mouths],
                                     "characters": sorted(f.masks)} for p, f in zip(plans, rendered)]}
            (staging / artifacts.keyframe_layout_path.name).write_text(json.dumps(layout, indent=2), encoding="utf-8")
        return model_calls_metadata(context, episode, shot.id, renderer)

    outcome = cached(context, store, key, artifacts.directory, STAGES["keyframes"].paths(artifacts), build)
    audit_restored(context, episode, shot.id, renderer, outcome)
    images = artifacts.keyframe_images()
    yield cached_result(outcome, {
        "keyframes": len(images),
        "size": f"{manifest.width}x{manifest.height}",
        "renderer": artifacts.keyframe_layout()["renderer"],
        "seed": shot.seed,
        **(outcome.value or {}),
        "path": MetadataValue.path(str(artifacts.keyframes_dir)),
        "contact_sheet": image_metadata(contact_sheet(images, tile_width=200)),
    })


@partitioned_check(keyframes, shot_partitions, blocking=True)
def keyframes_keep_their_characters(context: AssetCheckExecutionContext,
                                    store: ArtifactStoreResource) -> AssetCheckResult:
    """Every character region of every keyframe scored against the episode's character bundles: a shot
    whose character drifted from its bundle (or looks like someone else) fails, and blocks the shot's
    motion and everything after it. The weights-free descriptor and its thresholds are calibrated on the embedded
    renderer, whose figures are drawn like the bundles' references; on model-rendered keyframes the scores are
    reported as advisory and do not block."""
    located = shot_context(context, store)
    if located is None:
        return AssetCheckResult(passed=True, metadata={"skipped": "the episode has no such shot"})
    episode, manifest, _, artifacts = located
    descriptors = {c.id: np.load(episode.store.require(episode.character_dir(c.id) / CHARACTER_DESCRIPTOR,
                                                       "character_bundles"))
                   for c in manifest.characters}
    scores = []
    layout = artifacts.keyframe_layout()
    for entry in layout["keyframes"]:
        image = read_rgb(artifacts.keyframe_path(entry["index"]))
        masks = {cid: read_gray(artifacts.keyframe_mask_path(entry["index"], cid)) for cid in entry["characters"]}
        scores.extend(score_characters(entry["index"], image, masks, descriptors))
    problems = [score.problem for score in scores if score.problem]
    renderer = layout.get("renderer", "embedded")
    advisory = renderer != "embedded"
    return AssetCheckResult(passed=advisory or not problems, metadata={
        "problems": "none" if advisory else "; ".join(problems) or "none",
        "renderer": renderer,
        **({"advisory": "; ".join(problems) or "none"} if advisory else {}),
        "lowest_similarity": round(min((s.own for s in scores), default=1.0), 3),
        "scores": MetadataValue.md("| keyframe | character | area | own | closest other |\n|---|---|---|---|---|\n" +
                                   "\n".join(f"| {s.keyframe} | {s.character_id} | {s.area:.1%} | {s.own:.2f} | "
                                             f"{s.closest_other or '-'} {'' if s.other is None else f'{s.other:.2f}'} |"
                                             for s in scores)),
    })

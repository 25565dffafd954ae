"""Storyboard and keyframe stages, per shot."""

import json
from dataclasses import asdict

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from ..media.storyboard import FigurePose, KeyframePlan, plan_keyframes, render_pose_map
from ..media.stills import contact_sheet
from ..partitions import shot_partitions
from ..resources import ArtifactStoreResource, BackendSettings
from .common import image_metadata, per_episode, png_bytes, shot_context
from .planning import character_bundles, episode_manifest

POSES_FILE = "poses.json"


def load_plans(storyboard_dir) -> list[KeyframePlan]:
    payload = json.loads((storyboard_dir / POSES_FILE).read_text(encoding="utf-8"))
    return [KeyframePlan(p["index"], tuple(FigurePose(**f) for f in p["figures"])) for p in payload["keyframes"]]


@asset(partitions_def=shot_partitions, group_name="storyboard", deps=[per_episode(episode_manifest)],
       output_required=False)
def storyboard(context: AssetExecutionContext, store: ArtifactStoreResource):
    """Figure placement and gestures for each keyframe, with OpenPose-style pose maps (ControlNet conditioning)."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    plans = plan_keyframes(shot, manifest)
    pose_maps = [render_pose_map(plan, manifest.width, manifest.height) for plan in plans]
    with episode.store.writing_dir(artifacts.storyboard_dir) as staging:
        for plan, pose_map in zip(plans, pose_maps):
            (staging / f"pose_{plan.index}.png").write_bytes(png_bytes(pose_map))
        (staging / POSES_FILE).write_text(json.dumps({"keyframes": [asdict(p) for p in plans]}, indent=2), encoding="utf-8")
    yield MaterializeResult(
        metadata={
            "keyframes": len(plans),
            "figures": len(plans[0].figures),
            "pose_maps": image_metadata(contact_sheet(pose_maps, tile_width=120)),
        }
    )


@asset(partitions_def=shot_partitions, group_name="keyframes", deps=[storyboard, per_episode(character_bundles)],
       output_required=False)
def keyframes(context: AssetExecutionContext, store: ArtifactStoreResource, backends: BackendSettings):
    """1-3 full-resolution 1080x1920 keyframes per shot, following the storyboard poses."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    plans = load_plans(episode.store.require(artifacts.storyboard_dir, "storyboard"))
    renderer = backends.resolve().keyframes
    rendered = [renderer.render(manifest, shot, plan) for plan in plans]
    with episode.store.writing_dir(artifacts.keyframes_dir) as staging:
        for plan, frame in zip(plans, rendered):
            (staging / artifacts.keyframe_path(plan.index).name).write_bytes(png_bytes(frame.image))
            (staging / f"background_{plan.index}.png").write_bytes(png_bytes(frame.background))
        layout = {"keyframes": [{"index": p.index, "mouths": [asdict(m) for m in f.mouths]}
                                for p, f in zip(plans, rendered)]}
        (staging / artifacts.keyframe_layout_path.name).write_text(json.dumps(layout, indent=2), encoding="utf-8")
    yield MaterializeResult(
        metadata={
            "keyframes": len(rendered),
            "size": f"{manifest.width}x{manifest.height}",
            "renderer": renderer.name,
            "seed": shot.seed,
            "path": MetadataValue.path(str(artifacts.keyframes_dir)),
            "contact_sheet": image_metadata(contact_sheet([f.image for f in rendered], tile_width=200)),
        }
    )


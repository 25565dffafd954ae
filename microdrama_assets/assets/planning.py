"""Planning stage: the episode manifest (single source of truth) and the character bundles."""

import hashlib
import json
import shutil

import numpy as np
from dagster import AssetExecutionContext, DataVersion, Failure, MaterializeResult, MetadataValue, asset

from ..execution import GPU_POOL, GPU_STEP_TAGS, MODEL_RETRY_POLICY, placement_for_attempt
from ..artifacts import CHARACTER_DESCRIPTOR, read_rgb, shared_bundle_dir
from ..casting import CastingError, cast_for_episode, remember_series_cast
from ..media.characters import build_character_bundle, bundle_version
from ..media.manifest import manifest_json_schema, with_presets
from ..media.stills import contact_sheet
from ..analytics.suggestions import PlannerGuidance, apply_guidance
from ..media.preview import PreviewError, build_preview
from ..partitions import episode_partitions, shot_slot_partitions
from ..resources import ArtifactStoreResource, BackendSettings
from .common import code_version, episode_artifacts, image_metadata, model_calls_metadata, png_bytes


@asset(partitions_def=episode_partitions, group_name="planning", pool=GPU_POOL, op_tags=GPU_STEP_TAGS,
       retry_policy=MODEL_RETRY_POLICY)
def episode_manifest(
    context: AssetExecutionContext, store: ArtifactStoreResource, backends: BackendSettings
) -> MaterializeResult:
    """The shot list for an episode, planned from its logline request; validated against the pydantic schema."""
    episode = episode_artifacts(context, store)
    request = episode.store.read_json(episode.request, "an episode request (microdrama episode / the loglines sensor)")
    planner = backends.planner_backend(placement_for_attempt(context, backends.device))
    series = request.get("series")
    try:
        cast = cast_for_episode(episode.store, request.get("cast") or [], series)
    except CastingError as exc:
        raise Failure(f"episode {episode.episode_id}: {exc}", allow_retries=False) from None
    # Guidance from an earlier episode's viewers (--learn-from): a target length for the plan, then caps on the
    # lengths of the beats where they left.
    guidance, source = None, None
    if request.get("guidance"):
        fields = dict(request["guidance"])
        source = fields.pop("from_episode")
        guidance = PlannerGuidance.model_validate(fields)
    duration_s = min(filter(None, [request["duration_s"], guidance and guidance.target_duration_s]))
    manifest = with_presets(planner.plan(request["logline"], episode.episode_id, request["shots"], request["seed"],
                                         duration_s, cast=cast),
                            request.get("caption_style"), request.get("lighting"))
    manifest = manifest.model_copy(update={"ai_label": bool(request.get("ai_label"))})
    guided = []
    if guidance is not None:
        manifest, notes = apply_guidance(manifest, guidance)
        guided = [f"from {source}: {note}" for note in [f"target {duration_s:.1f}s", *notes]]
    episode.store.write_text(episode.manifest_schema, manifest_json_schema())
    episode.store.write_text(episode.manifest_path, manifest.model_dump_json(indent=2))
    # Shot slots are shared by every episode: make sure this episode's exist before its shot runs are requested.
    known = set(context.instance.get_dynamic_partitions(shot_slot_partitions.name))
    missing = [shot_id for shot_id in manifest.shot_ids if shot_id not in known]
    if missing:
        context.instance.add_dynamic_partitions(shot_slot_partitions.name, missing)
    if series:
        remember_series_cast(episode.store, series, manifest.characters)
    return MaterializeResult(
        metadata={
            "title": manifest.title,
            "series": series or "-",
            "cast_from": ", ".join(c.id for c in cast) or "invented by the planner",
            "logline": manifest.logline,
            "shots": len(manifest.shots),
            "duration_s": round(manifest.duration_s, 3),
            "characters": ", ".join(c.name for c in manifest.characters),
            "planner": planner.name,
            "guidance": "; ".join(guided) or "none",
            **model_calls_metadata(context, episode, episode.episode_id, planner),
            "seed": manifest.seed,
            "path": MetadataValue.path(str(episode.manifest_path)),
            "shot_list": MetadataValue.md(
                "| shot | beat | s | camera | framing | mood | action |\n|---|---|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {s.id} | {s.beat.value} | {s.duration_s:g} | {s.camera.value} | {s.framing.value} | "
                    f"{s.mood.value} | {s.action.replace('|', '/')} |"
                    for s in manifest.shots
                )
            ),
        }
    )


@asset(partitions_def=episode_partitions, group_name="planning", deps=[episode_manifest])
def character_bundles(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """Per character: reference images, an appearance descriptor and a content-hash version. Bundles are kept
    by version under ``bundles/`` in the store: a character another episode (of a series, or cast from the same
    card) already has is reused, not rebuilt."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    versions, previews, reused = {}, [], []
    for character in manifest.characters:
        version = bundle_version(character)
        shared = shared_bundle_dir(episode.store, character.id, version)
        if episode.store.available(shared / CHARACTER_DESCRIPTOR):
            reused.append(character.id)
        else:
            bundle = build_character_bundle(character)
            with episode.store.writing_dir(shared) as staging:
                for view, image in bundle.reference_images.items():
                    (staging / f"{view}.png").write_bytes(png_bytes(image))
                np.save(staging / CHARACTER_DESCRIPTOR, bundle.descriptor)
        views = sorted(path.stem for path in shared.glob("*.png"))
        with episode.store.writing_dir(episode.character_dir(character.id)) as staging:
            for name in [f"{view}.png" for view in views] + [CHARACTER_DESCRIPTOR]:
                shutil.copy2(shared / name, staging / name)
            # The card itself (name, voice) is per episode: the shared images only depend on the look.
            (staging / "bundle.json").write_text(
                json.dumps({"character": character.model_dump(mode="json"), "version": version, "views": views},
                           indent=2, ensure_ascii=False),
                encoding="utf-8",
            )
        versions[character.id] = version
        previews.append(read_rgb(shared / f"{views[0]}.png"))
    # The data version is the bundles' content: re-planning with the same characters leaves every keyframe
    # current; changing how a character looks marks the episode's keyframes (and what follows) stale in Dagster.
    bundles_version = hashlib.sha256(json.dumps(versions, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return MaterializeResult(
        data_version=DataVersion(bundles_version),
        metadata={
            "versions": MetadataValue.json(versions),
            "characters": len(versions),
            "reused": ", ".join(reused) or "none",
            "references": image_metadata(contact_sheet(previews, tile_width=160, columns=3)),
        }
    )


@asset(partitions_def=episode_partitions, group_name="planning", deps=[episode_manifest],
       code_version=code_version("preview"))
def episode_preview(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """A 360x640 draft of the whole episode (one keyframe per shot with its camera move, the dialogue spoken and
    captioned, a PREVIEW mark) as an HLS EVENT playlist that grows shot by shot, first shots first: playable
    about a second after planning. It runs in the plan run (2-3 s for 30 s of episode), before the shot renders
    start."""
    episode = episode_artifacts(context, store)
    try:
        result = build_preview(episode.manifest(), episode.preview_dir, store=episode.store)
    except PreviewError as exc:
        raise Failure(f"episode {episode.episode_id}: {exc}", allow_retries=False) from None
    return MaterializeResult(metadata={
        "playlist": MetadataValue.path(str(result.playlist)),
        "resolution": "360x640",
        "duration_s": round(result.duration_s, 3),
        "segments": len(result.segments),
        "first_playable_s": round(result.first_playable_s, 2),
        "elapsed_s": round(result.elapsed_s, 2),
    })

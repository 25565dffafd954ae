"""Small helpers the stage modules share: partition keys, shot skipping, metadata images."""

import base64
import io
import json
import warnings
from typing import Iterator

import numpy as np
from dagster import (AssetDep, AssetExecutionContext, BetaWarning, DataVersion, Failure, MaterializeResult,
                     MetadataValue, MultiToSingleDimensionPartitionMapping, PreviewWarning, asset_check)
from PIL import Image

from ..artifacts import EpisodeArtifacts, ShotArtifacts
from ..audit import AuditLog, calls_json
from ..cache import STAGE_VERSIONS, ArtifactCache, CacheKey, Outcome
from ..media.manifest import EpisodeManifest, Shot
from ..resources import ArtifactStoreResource


# The built-in mapping is marked beta, but custom PartitionMapping classes are ignored by backfills, so this is
# the supported way to map an episode onto its shot cells; the warning says nothing a user can act on.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    EPISODE_DIMENSION = MultiToSingleDimensionPartitionMapping(partition_dimension_name="episode")


def partitioned_check(asset, partitions_def, blocking: bool = False):
    """``@asset_check`` for one partition of a partitioned asset at a time. Partitioned checks are "preview" in
    Dagster 1.13; they are what per-shot and per-episode checks need, and the warning says nothing a user can act
    on."""
    def decorate(check_fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreviewWarning)
            return asset_check(asset=asset, partitions_def=partitions_def, blocking=blocking)(check_fn)
    return decorate


def per_episode(asset) -> AssetDep:
    """Dependency between an episode-level and a shot-level asset: an episode maps to all its shot cells."""
    return AssetDep(asset, partition_mapping=EPISODE_DIMENSION)


def episode_artifacts(context: AssetExecutionContext, store: ArtifactStoreResource) -> EpisodeArtifacts:
    return EpisodeArtifacts(store.store(), context.partition_key)


def shot_context(
    context: AssetExecutionContext, store: ArtifactStoreResource
) -> tuple[EpisodeArtifacts, EpisodeManifest, Shot, ShotArtifacts] | None:
    """The shot this partition names, or None (logged) when its episode has no such shot slot."""
    keys = context.partition_key.keys_by_dimension
    episode = EpisodeArtifacts(store.store(), keys["episode"])
    manifest = episode.manifest()
    if keys["shot"] not in manifest.shot_ids:
        context.log.info(
            f"episode {manifest.episode_id} has {len(manifest.shots)} shots; slot {keys['shot']} is unused, skipping"
        )
        return None
    return episode, manifest, manifest.shot(keys["shot"]), episode.shot(keys["shot"])


def code_version(stage: str) -> str:
    """The asset's Dagster code version: the stage's cache code version, so the UI marks what a bump staled."""
    return STAGE_VERSIONS[stage]


def cached(context, store: ArtifactStoreResource, key: CacheKey, directory, paths, build, keep: bool = True) -> Outcome:
    """``ArtifactCache.materialize`` for an asset: the artifact for ``key``, reused when it exists."""
    outcome = ArtifactCache(store.store()).materialize(key, directory, paths, build, keep=keep,
                                                       log=context.log.warning)
    if outcome.hit:
        context.log.info(f"{key.stage}: cache hit ({outcome.source}), key {key.digest[:16]}")
    return outcome


def append_run_event(context: AssetExecutionContext, episode: EpisodeArtifacts, kind: str, **fields) -> dict:
    """An event in the episode's audit log whose actor is this Dagster run."""
    return AuditLog(episode.store, episode.episode_id).append(kind, f"run:{context.run.run_id}",
                                                              run_id=context.run.run_id, **fields)


def audit_restored(context: AssetExecutionContext, episode: EpisodeArtifacts, partition: str, backend,
                   outcome: Outcome) -> None:
    """A stage restored from the cache made nothing new, but its artifact is now this episode's: the audit log
    says so (and the provenance lists its backend), with the model calls recorded when the episode itself made it
    before, if it did."""
    if outcome.source != "restored":
        return
    asset_name = context.asset_key.path[-1]
    recorded = episode.model_calls_path(asset_name, partition)
    calls = json.loads(recorded.read_text(encoding="utf-8")) if episode.store.available(recorded) else []
    append_run_event(context, episode, "render", asset=asset_name, partition=partition, backend=backend.name,
                     calls=calls, source=f"restored from cache key {outcome.key.digest[:16]}")


def cached_result(outcome: Outcome, metadata: dict) -> MaterializeResult:
    """The materialization of a cached stage: its key as the data version, and whether it was a hit."""
    return MaterializeResult(data_version=DataVersion(outcome.key.data_version),
                             metadata={**outcome.metadata(), **metadata})


def exactly(frames: Iterator[np.ndarray], count: int, what: str) -> Iterator[np.ndarray]:
    """Pass frames through, failing (inside the caller's atomic write, so nothing is published) unless there
    are exactly ``count``."""
    produced = 0
    for frame in frames:
        produced += 1
        if produced > count:
            raise Failure(f"{what}: more than the {count} frames the manifest gives", allow_retries=False)
        yield frame
    if produced != count:
        raise Failure(f"{what}: {produced} frames, the manifest gives {count}", allow_retries=False)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def image_metadata(image: np.ndarray) -> MetadataValue:
    """An inline JPEG the Dagster UI shows in the asset's metadata."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=80)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return MetadataValue.md(f"![contact sheet](data:image/jpeg;base64,{encoded})")


def png_metadata(png: bytes, caption: str) -> MetadataValue:
    """An inline PNG (a plot) the Dagster UI shows in the asset's metadata."""
    return MetadataValue.md(f"![{caption}](data:image/png;base64,{base64.b64encode(png).decode()})")


def model_calls_metadata(context: AssetExecutionContext, episode: EpisodeArtifacts, partition: str,
                         backend) -> dict:
    """Records what made an artifact in the episode's audit log (a ``render`` event: the asset, the backend and
    its model calls) and in ``audit/<asset>/<partition>.json``, and returns the asset metadata that shows them:
    model, weights hash, seed, prompt and parameters of each call. Embedded backends make no model calls; their
    event names the backend alone."""
    asset_name = context.asset_key.path[-1]
    calls = backend.take_calls()
    event = append_run_event(context, episode, "render", asset=asset_name, partition=partition,
                             backend=backend.name, calls=[call.as_dict() for call in calls])
    metadata = {"audit_event": event["event_id"]}
    if not calls:
        return metadata
    path = episode.model_calls_path(asset_name, partition)
    episode.store.write_text(path, calls_json(calls))
    models = sorted({(call.backend, call.model, call.weights_sha256[:12]) for call in calls})
    return {
        **metadata,
        "models": ", ".join(f"{backend}: {model} (sha256 {digest})" for backend, model, digest in models),
        "model_calls": MetadataValue.json([call.as_dict() for call in calls]),
        "model_calls_path": MetadataValue.path(str(path)),
    }

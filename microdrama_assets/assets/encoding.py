"""Encode stage: every rung of the ABR ladder for one shot, from a single decode of the composited shot."""

import json
import shutil
from pathlib import Path

from dagster import AssetExecutionContext, MetadataValue, asset

from ..execution import ENCODE_POOL, ENCODE_STEP_TAGS
from ..cache import STAGES, ArtifactCache, shot_stage_key
from ..media.hls import (INIT_SEGMENT, ShotRendition, VideoVariant, encode_shot_renditions, media_timescale,
                         shift_fragment_times)
from ..media.manifest import FPS
from ..media.video_io import decode_frames
from ..partitions import shot_partitions
from ..resources import ArtifactStoreResource, EncodeSettings
from ..storage import ArtifactStore
from .common import cached, cached_result, code_version, shot_context
from .compositing import composited_shot

RENDITION_FILE = "rendition.json"


@asset(partitions_def=shot_partitions, group_name="encode", deps=[composited_shot], output_required=False,
       code_version=code_version("renditions"), pool=ENCODE_POOL, op_tags=ENCODE_STEP_TAGS)
def shot_renditions(context: AssetExecutionContext, store: ArtifactStoreResource, encode: EncodeSettings):
    """CMAF segments of this shot for every rung in every configured codec (H.264 always, HEVC/AV1 when asked
    for), IDR-aligned, timed at the shot's place in the episode."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    preset, variants = encode.encode_preset(), encode.variants()
    start_frame = manifest.start_frame(shot.id)
    key = shot_stage_key("renditions", episode, manifest, shot, None, encode)
    paths = STAGES["renditions"].paths(artifacts)

    def build():
        with episode.store.writing_dir(artifacts.renditions_dir) as staging:
            renditions = encode_shot_renditions(
                decode_frames(artifacts.composited), shot.frames, start_frame, staging, preset, variants
            )
            for variant_key, rendition in renditions.items():
                (staging / variant_key / RENDITION_FILE).write_text(json.dumps(rendition.to_json(), indent=2),
                                                                    encoding="utf-8")

    outcome = cached(context, store, key, artifacts.directory, paths, build)
    # The same encode serves the shot wherever it sits: after an earlier shot changed length, its fragments are
    # moved along the timeline rather than encoded again.
    renditions = {v.key: load_rendition(artifacts, v) for v in variants}
    moved_from = next(iter(renditions.values())).start_frame
    if moved_from != start_frame:
        retime_renditions(episode.store, artifacts.renditions_dir, start_frame)
        ArtifactCache(episode.store).record(key, artifacts.directory, paths)
        renditions = {v.key: load_rendition(artifacts, v) for v in variants}
    yield cached_result(outcome, {
        "preset": preset.name,
        "start_frame": start_frame,
        **({"retimed_from_frame": moved_from} if moved_from != start_frame else {}),
        "segments": len(next(iter(renditions.values())).segments),
        "renditions": MetadataValue.md(
            "| variant | size | codecs | bytes |\n|---|---|---|---|\n" + "\n".join(
                f"| {key} | {r.width}x{r.height} | {r.codecs} | {sum(s.bytes for s in r.segments)} |"
                for key, r in renditions.items())
        ),
        "path": MetadataValue.path(str(artifacts.renditions_dir)),
    })


def retime_renditions(store: ArtifactStore, renditions_dir: Path, start_frame: int) -> None:
    """Move every rendition of a shot to ``start_frame`` on the episode timeline (fragment decode times
    shifted, no re-encode), replacing the folder atomically."""
    with store.writing_dir(renditions_dir) as staging:
        shutil.copytree(renditions_dir, staging, dirs_exist_ok=True)
        for record in sorted(staging.glob(f"*/*/{RENDITION_FILE}")):
            rendition = ShotRendition.from_json(json.loads(record.read_text(encoding="utf-8")))
            ticks = (start_frame - rendition.start_frame) * (media_timescale(record.parent / INIT_SEGMENT) // FPS)
            for segment in rendition.segments:
                shift_fragment_times(record.parent / segment.uri, ticks)
            record.write_text(json.dumps({**rendition.to_json(), "start_frame": start_frame}, indent=2),
                              encoding="utf-8")


def load_rendition(artifacts, variant: VideoVariant) -> ShotRendition | None:
    """The shot's encode of ``variant``, or None when it has none (encoded before that codec was configured)."""
    path = artifacts.renditions_dir / variant.key / RENDITION_FILE
    if not artifacts.store.available(path):
        return None
    return ShotRendition.from_json(json.loads(path.read_text(encoding="utf-8")))

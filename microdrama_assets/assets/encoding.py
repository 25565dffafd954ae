"""Encode stage: every rung of the ABR ladder for one shot, from a single decode of the composited shot."""

import json

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from ..media.hls import ShotRendition, VideoVariant, encode_shot_renditions
from ..media.video_io import decode_frames
from ..partitions import shot_partitions
from ..resources import ArtifactStoreResource, EncodeSettings
from .common import shot_context
from .compositing import composited_shot

RENDITION_FILE = "rendition.json"


@asset(partitions_def=shot_partitions, group_name="encode", deps=[composited_shot], output_required=False)
def shot_renditions(context: AssetExecutionContext, store: ArtifactStoreResource, encode: EncodeSettings):
    """CMAF segments of this shot for every rung in every configured codec (H.264 always, HEVC/AV1 when asked
    for), IDR-aligned, timed at the shot's place in the episode."""
    located = shot_context(context, store)
    if located is None:
        return
    episode, manifest, shot, artifacts = located
    source = episode.store.require(artifacts.composited, "composited_shot")
    preset, variants = encode.encode_preset(), encode.variants()
    with episode.store.writing_dir(artifacts.renditions_dir) as staging:
        renditions = encode_shot_renditions(
            decode_frames(source), shot.frames, manifest.start_frame(shot.id), staging, preset, variants
        )
        for key, rendition in renditions.items():
            (staging / key / RENDITION_FILE).write_text(json.dumps(rendition.to_json(), indent=2), encoding="utf-8")
    yield MaterializeResult(
        metadata={
            "preset": preset.name,
            "segments": len(next(iter(renditions.values())).segments),
            "renditions": MetadataValue.md(
                "| variant | size | codecs | bytes |\n|---|---|---|---|\n" + "\n".join(
                    f"| {key} | {r.width}x{r.height} | {r.codecs} | {sum(s.bytes for s in r.segments)} |"
                    for key, r in renditions.items())
            ),
            "path": MetadataValue.path(str(artifacts.renditions_dir)),
        }
    )


def load_rendition(artifacts, variant: VideoVariant) -> ShotRendition | None:
    """The shot's encode of ``variant``, or None when it has none (encoded before that codec was configured)."""
    path = artifacts.renditions_dir / variant.key / RENDITION_FILE
    if not path.exists():
        return None
    return ShotRendition.from_json(json.loads(path.read_text(encoding="utf-8")))

"""Episode assembly: captions, the master file, the HLS package and the delivery manifest for the player."""

import tempfile
from pathlib import Path

import m3u8
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, Failure, MaterializeResult,
                     MetadataValue, asset)
from PIL import Image

from ..artifacts import EpisodeArtifacts
from ..media.captions import build_webvtt
from ..media.hls import (LADDER, MASTER_PLAYLIST, assemble_video_rendition, package_audio, write_master_playlist,
                         write_subtitles_playlist)
from ..media.manifest import FPS
from ..media.validate import validate_package
from ..media.video_io import probe_video, remux_master
from ..media.stills import contact_sheet
from ..partitions import episode_partitions
from ..publishing import PublishError, fetch_published, package_files, publish_episode
from ..resources import ArtifactStoreResource, EncodeSettings, PublishTarget
from ..media.audio_mix import SAMPLE_RATE
from .audio import dialogue_audio, episode_audio, read_wav, shot_dialogue
from .common import episode_artifacts, image_metadata, partitioned_check, per_episode
from .compositing import composited_shot, shot_cues
from .encoding import load_rendition, shot_renditions


def _require_shots(episode: EpisodeArtifacts, manifest, artifact: str, produced_by: str) -> None:
    missing = [s.id for s in manifest.shots if not getattr(episode.shot(s.id), artifact).exists()]
    if missing:
        raise Failure(f"episode {episode.episode_id}: shots {', '.join(missing)} have no {produced_by} yet; "
                      f"render them first (microdrama rerender {episode.episode_id} --shot ...)")


@asset(partitions_def=episode_partitions, group_name="delivery", deps=[per_episode(dialogue_audio)])
def episode_captions(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """WebVTT captions for the whole episode, timed exactly like the burned-in captions."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    _require_shots(episode, manifest, "dialogue_json", "dialogue_audio")
    cues = []
    for shot in manifest.shots:
        offset_s = manifest.start_frame(shot.id) / FPS
        cues.extend(shot_cues(manifest, shot, shot_dialogue(episode.shot(shot.id)), offset_s))
    episode.store.write_text(episode.captions_vtt, build_webvtt(cues))
    return MaterializeResult(metadata={"cues": len(cues), "path": MetadataValue.path(str(episode.captions_vtt))})


@asset(partitions_def=episode_partitions, group_name="delivery",
       deps=[per_episode(composited_shot), episode_audio, episode_captions])
def episode_master(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """The mezzanine master: every composited shot end to end (stream copy) with the mixed AAC audio; its
    captions are the episode's captions.vtt beside it."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    _require_shots(episode, manifest, "composited", "composited_shot")
    episode.store.require(episode.mix_m4a, "episode_audio")
    try:
        with episode.store.writing(episode.master_mp4) as tmp:
            remux_master([episode.shot(s.id).composited for s in manifest.shots], [s.frames for s in manifest.shots],
                         episode.mix_m4a, tmp)
    except ValueError as exc:
        raise Failure(f"episode {episode.episode_id}: {exc}") from None
    probe = probe_video(episode.master_mp4)
    if probe.frames != manifest.total_frames:
        raise Failure(f"master has {probe.frames} frames, the manifest {manifest.total_frames}")
    return MaterializeResult(
        metadata={
            "frames": probe.frames,
            "duration_s": round(probe.duration_s, 3),
            "size": f"{probe.width}x{probe.height}",
            "bytes": episode.master_mp4.stat().st_size,
            "captions": MetadataValue.path(str(episode.captions_vtt)),
            "path": MetadataValue.path(str(episode.master_mp4)),
        }
    )


@asset(partitions_def=episode_partitions, group_name="delivery",
       deps=[per_episode(shot_renditions), episode_audio, episode_captions])
def hls_package(context: AssetExecutionContext, store: ArtifactStoreResource, encode: EncodeSettings) -> MaterializeResult:
    """CMAF HLS: per-rung media playlists assembled from the shots' segments, an AAC audio rendition, WebVTT
    subtitles and the master playlist with measured BANDWIDTH/AVERAGE-BANDWIDTH and bitstream CODECS. The
    package is validated (media/validate.py) before it replaces the published one: a package that fails fails
    this step with the problems listed, and players keep the previous one."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    _require_shots(episode, manifest, "renditions_dir", "shot_renditions")
    mix = read_wav(episode.store.require(episode.mix_wav, "episode_audio"))
    variants = encode.variants()
    renditions = {(s.id, v.key): load_rendition(episode.shot(s.id), v) for s in manifest.shots for v in variants}
    missing = sorted({f"{shot_id} ({key})" for (shot_id, key), r in renditions.items() if r is None})
    if missing:
        raise Failure(f"episode {episode.episode_id}: no encode of {', '.join(missing)} for the configured codecs; "
                      f"re-render those shots (microdrama rerender {episode.episode_id} --shot ...)")
    stale = sorted({shot_id for (shot_id, _), r in renditions.items()
                    if sum(seg.frames for seg in r.segments) != manifest.shot(shot_id).frames})
    if stale:
        raise Failure(f"episode {episode.episode_id}: renditions of {', '.join(stale)} do not match the manifest's "
                      f"shot lengths; re-render them (microdrama rerender {episode.episode_id} --shot ...)")
    with episode.store.writing_dir(episode.hls_dir) as staging:
        figures = [
            assemble_video_rendition(
                [(s.id, episode.shot(s.id).renditions_dir / v.key, renditions[(s.id, v.key)]) for s in manifest.shots],
                staging, v,
            )
            for v in variants
        ]
        audio = package_audio(mix, SAMPLE_RATE, staging, encode.segment_seconds, LADDER)
        write_subtitles_playlist(episode.captions_vtt.read_text(encoding="utf-8"), manifest.duration_s,
                                 staging / "subs", encode.segment_seconds)
        write_master_playlist(staging, figures, audio, manifest.language, True)
        report = validate_package(staging)
        if not report.ok:
            raise Failure(f"episode {episode.episode_id}: the HLS package failed validation; the published package "
                          f"is unchanged. Problems: " + "; ".join(report.problems[:10]))
    master = episode.hls_dir / MASTER_PLAYLIST
    return MaterializeResult(
        metadata={
            "master_playlist": MetadataValue.path(str(master)),
            "variants": MetadataValue.md(
                "| codec | rung | resolution | codecs | avg kb/s | peak kb/s |\n|---|---|---|---|---|---|\n" + "\n".join(
                    f"| {f.codec} | {f.rung} | {f.width}x{f.height} | {f.codecs} | {f.average_bps // 1000} "
                    f"| {f.peak_bps // 1000} |" for f in figures)
            ),
            "segments": report.segments,
            "duration_s": round(report.duration_s, 3),
            "validated": "playlists and every segment probed: IDRs, durations, timeline, CODECS, bitrates, alignment",
        },
    )


@asset(partitions_def=episode_partitions, group_name="delivery", deps=[hls_package, episode_master])
def delivery_manifest(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """What the mobile player needs: renditions, codecs, poster, captions and shot boundaries (for per-shot
    analytics), with paths relative to the episode directory."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    master = m3u8.load(str(episode.store.require(episode.hls_dir / MASTER_PLAYLIST, "hls_package")))
    first_frames = [episode.shot(s.id).keyframe_images()[0] for s in manifest.shots]
    poster = Image.fromarray(first_frames[0])
    with episode.store.writing(episode.poster) as tmp:
        poster.save(tmp, format="JPEG", quality=88)
    payload = {
        "episode_id": manifest.episode_id,
        "title": manifest.title,
        "logline": manifest.logline,
        "duration_s": round(manifest.duration_s, 3),
        "aspect_ratio": "9:16",
        "synthetic_media": True,
        "master_playlist": f"hls/{MASTER_PLAYLIST}",
        "download": episode.master_mp4.name,
        "poster": episode.poster.name,
        "renditions": [
            {"uri": f"hls/{p.uri}", "resolution": f"{p.stream_info.resolution[0]}x{p.stream_info.resolution[1]}",
             "codecs": p.stream_info.codecs, "bandwidth": p.stream_info.bandwidth,
             "average_bandwidth": p.stream_info.average_bandwidth, "frame_rate": p.stream_info.frame_rate}
            for p in master.playlists
        ],
        "captions": [{"language": manifest.language, "format": "webvtt", "uri": episode.captions_vtt.name,
                      "hls_group": "subs"}],
        "shots": [
            {"id": s.id, "beat": s.beat.value, "start_frame": manifest.start_frame(s.id), "frames": s.frames,
             "start_s": round(manifest.start_frame(s.id) / FPS, 4),
             "end_s": round((manifest.start_frame(s.id) + s.frames) / FPS, 4)}
            for s in manifest.shots
        ],
    }
    episode.store.write_json(episode.delivery_json, payload)
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(episode.delivery_json)),
            "master_playlist": MetadataValue.path(str(episode.hls_dir / MASTER_PLAYLIST)),
            "renditions": len(payload["renditions"]),
            "shots": len(payload["shots"]),
            "contact_sheet": image_metadata(contact_sheet(first_frames, tile_width=150)),
        }
    )


@asset(partitions_def=episode_partitions, group_name="delivery", deps=[delivery_manifest])
def published_episode(context: AssetExecutionContext, store: ArtifactStoreResource,
                      publish: PublishTarget) -> MaterializeResult:
    """The episode in the object store players and the app read: the HLS package, download, poster, captions
    and delivery manifest under a content-addressed version, then the episode's master playlist switched to it
    (written last, so it never points at missing segments). Older versions beyond ``keep_versions`` go."""
    episode = episode_artifacts(context, store)
    objects = publish.object_store()
    try:
        files = package_files(episode.directory, episode.published_parts)
        result = publish_episode(objects, episode.episode_id, files, publish.keep_versions)
    except PublishError as exc:
        raise Failure(f"episode {episode.episode_id}: {exc}") from None
    master_url = f"{objects.location.rstrip('/')}/{result.master_key}"
    context.log.info(f"published {episode.episode_id} version {result.version}: {master_url}")
    return MaterializeResult(metadata={
        "master_url": MetadataValue.url(master_url),
        "version": result.version,
        "objects_uploaded": result.uploaded,
        "removed_versions": ", ".join(result.removed_versions) or "none",
    })


@partitioned_check(published_episode, episode_partitions)
def published_episode_plays(context: AssetCheckExecutionContext, publish: PublishTarget) -> AssetCheckResult:
    """What players get: the published entry master followed into the object store, every object it names
    fetched, and the package validated again (IDRs, durations, timeline, CODECS, bitrates, alignment)."""
    episode_id = context.partition_key
    with tempfile.TemporaryDirectory(prefix="microdrama-published-") as scratch:
        try:
            package = fetch_published(publish.object_store(), episode_id, Path(scratch))
        except PublishError as exc:
            return AssetCheckResult(passed=False, metadata={"problems": str(exc)})
        report = validate_package(package)
    return AssetCheckResult(passed=report.ok, metadata={
        "segments": report.segments, "duration_s": round(report.duration_s, 3),
        "problems": "; ".join(report.problems[:10]) or "none"})

"""Episode assembly: captions, the master file, the HLS package and the delivery manifest for the player."""

import json
import tempfile
from pathlib import Path

import m3u8
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, Failure, MaterializeResult,
                     MetadataValue, asset)
from PIL import Image

from ..execution import ENCODE_POOL, ENCODE_STEP_TAGS, OBJECT_STORE_RETRY_POLICY
from ..artifacts import EpisodeArtifacts
from ..audit import AuditLog, audit_summary
from ..cache import (STAGES, ArtifactCache, Outcome, changed_inputs, episode_stage_key, published_master_key,
                     read_record, stale_shot_stage, still_published)
from ..media.captions import build_webvtt
from ..media.hls import (LADDER, MASTER_PLAYLIST, assemble_video_rendition, package_audio, write_master_playlist,
                         write_subtitles_playlist)
from ..media.manifest import FPS
from ..media.validate import validate_package
from ..media.video_io import probe_video, remux_master
from ..media.stills import contact_sheet
from ..partitions import episode_partitions
from ..publishing import PublishError, fetch_published, package_files, publish_episode
from ..resources import ArtifactStoreResource, BackendSettings, EncodeSettings, PublishTarget, TrustSettings
from ..trust.provenance import (EPISODE_STEPS, SIDECAR_SUFFIX, ProvenanceError, SigningIdentity,
                                delivery_disclosure, episode_provenance_manifest, sign_file, sign_hls_package,
                                signer_fingerprint)
from ..trust.release_gate import ApprovalError, approval_for, package_version, publish_blockers
from ..media.audio_mix import SAMPLE_RATE
from .audio import dialogue_audio, episode_audio, read_wav, shot_dialogue
from .common import (append_run_event, cached, cached_result, code_version, episode_artifacts, image_metadata,
                     partitioned_check, per_episode)
from .compositing import composited_shot, shot_cues
from .encoding import load_rendition, shot_renditions


def _require_shots(episode: EpisodeArtifacts, manifest, artifact: str, produced_by: str) -> None:
    missing = [s.id for s in manifest.shots if not episode.store.available(getattr(episode.shot(s.id), artifact))]
    if missing:
        raise Failure(f"episode {episode.episode_id}: shots {', '.join(missing)} have no {produced_by} yet; "
                      f"render them first (microdrama rerender {episode.episode_id} --shot ...)")


@asset(partitions_def=episode_partitions, group_name="delivery", deps=[per_episode(dialogue_audio)],
       code_version=code_version("captions"))
def episode_captions(context: AssetExecutionContext, store: ArtifactStoreResource) -> MaterializeResult:
    """WebVTT captions for the whole episode, timed exactly like the burned-in captions."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    _require_shots(episode, manifest, "dialogue_json", "dialogue_audio")
    cues = []
    for shot in manifest.shots:
        offset_s = manifest.start_frame(shot.id) / FPS
        cues.extend(shot_cues(manifest, shot, shot_dialogue(episode.shot(shot.id)), offset_s))
    outcome = cached(context, store, episode_stage_key("captions", episode, manifest, None), episode.directory,
                     STAGES["captions"].paths(episode),
                     lambda: episode.store.write_text(episode.captions_vtt, build_webvtt(cues)), keep=False)
    return cached_result(outcome, {"cues": len(cues), "path": MetadataValue.path(str(episode.captions_vtt))})


@asset(partitions_def=episode_partitions, group_name="delivery",
       deps=[per_episode(composited_shot), episode_audio, episode_captions], code_version=code_version("master"),
       pool=ENCODE_POOL, op_tags=ENCODE_STEP_TAGS)
def episode_master(context: AssetExecutionContext, store: ArtifactStoreResource,
                   trust: TrustSettings) -> MaterializeResult:
    """The mezzanine master: every composited shot end to end (stream copy) with the mixed AAC audio, marked as
    synthetic media in its metadata and, when a signing identity is configured, carrying C2PA Content
    Credentials (the models, prompt hashes, seeds and steps that made it); its captions are the episode's
    captions.vtt beside it."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    _require_shots(episode, manifest, "composited", "composited_shot")
    episode.store.require(episode.mix_m4a, "episode_audio")
    identity = _signing_identity(trust)

    def build():
        try:
            with episode.store.writing(episode.master_mp4) as tmp:
                remux_master([episode.shot(s.id).composited for s in manifest.shots],
                             [s.frames for s in manifest.shots], episode.mix_m4a, tmp)
                probe = probe_video(tmp)
                if probe.frames != manifest.total_frames:
                    raise Failure(f"master has {probe.frames} frames, the manifest {manifest.total_frames}")
                if identity is not None:
                    sign_file(tmp, tmp, _credentials(episode, manifest), identity)
        except (ValueError, ProvenanceError) as exc:
            raise Failure(f"episode {episode.episode_id}: {exc}") from None

    key = episode_stage_key("master", episode, manifest, None, signer=signer_fingerprint(identity))
    outcome = cached(context, store, key, episode.directory, STAGES["master"].paths(episode), build, keep=False)
    probe = probe_video(episode.master_mp4)
    return cached_result(outcome, {
        "frames": probe.frames,
        "duration_s": round(probe.duration_s, 3),
        "size": f"{probe.width}x{probe.height}",
        "bytes": episode.master_mp4.stat().st_size,
        "captions": MetadataValue.path(str(episode.captions_vtt)),
        "path": MetadataValue.path(str(episode.master_mp4)),
    })


@asset(partitions_def=episode_partitions, group_name="delivery",
       deps=[per_episode(shot_renditions), episode_audio, episode_captions], code_version=code_version("hls"),
       pool=ENCODE_POOL, op_tags=ENCODE_STEP_TAGS)
def hls_package(context: AssetExecutionContext, store: ArtifactStoreResource, encode: EncodeSettings,
                trust: TrustSettings) -> MaterializeResult:
    """CMAF HLS: per-rung media playlists assembled from the shots' segments, an AAC audio rendition, WebVTT
    subtitles and the master playlist with measured BANDWIDTH/AVERAGE-BANDWIDTH and bitstream CODECS. Init
    segments say the media is synthetic; with a signing identity each rendition gets a C2PA sidecar
    (``init.c2pa``) bound to its init segment and listing its segments' hashes. The package is validated
    (media/validate.py) before it replaces the published one: a package that fails fails
    this step with the problems listed, and players keep the previous one."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    _require_shots(episode, manifest, "renditions_dir", "shot_renditions")
    episode.store.require(episode.mix_wav, "episode_audio")
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
    identity = _signing_identity(trust)

    def build():
        mix = read_wav(episode.mix_wav)
        with episode.store.writing_dir(episode.hls_dir) as staging:
            figures = [
                assemble_video_rendition(
                    [(s.id, episode.shot(s.id).renditions_dir / v.key, renditions[(s.id, v.key)])
                     for s in manifest.shots], staging, v,
                )
                for v in variants
            ]
            audio = package_audio(mix, SAMPLE_RATE, staging, encode.segment_seconds, LADDER)
            captions = episode.store.require(episode.captions_vtt, "episode_captions").read_text(encoding="utf-8")
            write_subtitles_playlist(captions, manifest.duration_s, staging / "subs", encode.segment_seconds)
            write_master_playlist(staging, figures, audio, manifest.language, True)
            if identity is not None:
                sign_hls_package(staging, _credentials(episode, manifest), identity)
            report = validate_package(staging)
            if not report.ok:
                raise Failure(f"episode {episode.episode_id}: the HLS package failed validation; the published "
                              f"package is unchanged. Problems: " + "; ".join(report.problems[:10]))
        return report

    key = episode_stage_key("hls", episode, manifest, encode, signer=signer_fingerprint(identity))
    outcome = cached(context, store, key, episode.directory, STAGES["hls"].paths(episode), build, keep=False)
    master = m3u8.load(str(episode.hls_dir / MASTER_PLAYLIST))
    report = outcome.value
    return cached_result(outcome, {
        "master_playlist": MetadataValue.path(str(episode.hls_dir / MASTER_PLAYLIST)),
        "variants": MetadataValue.md(
            "| rendition | resolution | codecs | avg kb/s | peak kb/s |\n|---|---|---|---|---|\n" + "\n".join(
                f"| {p.uri.rsplit('/', 1)[0]} | {p.stream_info.resolution[0]}x{p.stream_info.resolution[1]} "
                f"| {p.stream_info.codecs} | {p.stream_info.average_bandwidth // 1000} "
                f"| {p.stream_info.bandwidth // 1000} |" for p in master.playlists)
        ),
        **({"segments": report.segments, "duration_s": round(report.duration_s, 3),
            "validated": "playlists and every segment probed: IDRs, durations, timeline, CODECS, bitrates, "
                         "alignment"} if report is not None else
           {"validated": "when it was assembled (the package is unchanged since)"}),
    })


@asset(partitions_def=episode_partitions, group_name="delivery", deps=[hls_package, episode_master],
       code_version=code_version("delivery"))
def delivery_manifest(context: AssetExecutionContext, store: ArtifactStoreResource,
                      trust: TrustSettings) -> MaterializeResult:
    """What the mobile player needs: renditions, codecs, poster, captions and shot boundaries (for per-shot
    analytics), with paths relative to the episode directory, and the synthetic-origin disclosure (AI-generated,
    its IPTC source type, the visible label and watermark, which files carry C2PA Content Credentials)."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    episode.store.require(episode.hls_dir / MASTER_PLAYLIST, "hls_package")
    first_frames = [episode.shot(s.id).keyframe_images()[0] for s in manifest.shots]
    identity = _signing_identity(trust)

    def build():
        master = m3u8.load(str(episode.hls_dir / MASTER_PLAYLIST))
        with episode.store.writing(episode.poster) as tmp:
            Image.fromarray(first_frames[0]).save(tmp, format="JPEG", quality=88)
            if identity is not None:
                sign_file(tmp, tmp, _credentials(episode, manifest), identity)
        signed = ([episode.master_mp4.name, episode.poster.name]
                  + [sidecar.relative_to(episode.directory).as_posix()
                     for sidecar in sorted(episode.hls_dir.rglob(f"*{SIDECAR_SUFFIX}"))]) if identity else []
        # The poster is the first keyframe, and the keyframes are what carry the watermark.
        disclosure = delivery_disclosure(signed, manifest.ai_label, watermarked=["keyframes", episode.poster.name])
        episode.store.write_json(episode.delivery_json, _delivery_payload(episode, manifest, master, disclosure))

    key = episode_stage_key("delivery", episode, manifest, None, signer=signer_fingerprint(identity))
    outcome = cached(context, store, key, episode.directory, STAGES["delivery"].paths(episode), build, keep=False)
    payload = json.loads(episode.delivery_json.read_text(encoding="utf-8"))
    return cached_result(outcome, {
        "path": MetadataValue.path(str(episode.delivery_json)),
        "master_playlist": MetadataValue.path(str(episode.hls_dir / MASTER_PLAYLIST)),
        "renditions": len(payload["renditions"]),
        "shots": len(payload["shots"]),
        "content_credentials": ", ".join(payload["provenance"]["content_credentials"]) or "none (no signing identity)",
        "contact_sheet": image_metadata(contact_sheet(first_frames, tile_width=150)),
    })


def _signing_identity(trust: TrustSettings) -> SigningIdentity | None:
    try:
        return trust.signing_identity()
    except ProvenanceError as exc:
        raise Failure(f"C2PA signing is configured but unusable: {exc}", allow_retries=False) from None


def _credentials(episode: EpisodeArtifacts, manifest) -> dict:
    """The C2PA manifest for the episode's files, from what its audit log says made them."""
    steps = [*EPISODE_STEPS, "watermarked", *(["labelled"] if manifest.ai_label else [])]
    return episode_provenance_manifest(manifest, AuditLog(episode.store, episode.episode_id).events(), steps)


def _delivery_payload(episode: EpisodeArtifacts, manifest, master: m3u8.M3U8, disclosure: dict) -> dict:
    return {
        "episode_id": manifest.episode_id,
        "title": manifest.title,
        "logline": manifest.logline,
        "duration_s": round(manifest.duration_s, 3),
        "aspect_ratio": "9:16",
        "synthetic_media": True,
        "provenance": disclosure,
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


@asset(partitions_def=episode_partitions, group_name="delivery", deps=[delivery_manifest],
       code_version=code_version("published"), retry_policy=OBJECT_STORE_RETRY_POLICY)
def published_episode(context: AssetExecutionContext, store: ArtifactStoreResource, publish: PublishTarget,
                      backends: BackendSettings, encode: EncodeSettings, trust: TrustSettings) -> MaterializeResult:
    """The publish step, behind the release gate: the episode goes to the object store players and the app read
    only when moderation cleared the manifest and every shot's keyframes as they are now, every shot is rendered
    from the manifest as it is now, and a person approved exactly this package (its content version;
    ``microdrama approve`` or the preview page). Then the HLS
    package, download, poster, captions and delivery manifest go up under that content-addressed version, and
    the episode's master playlist is switched to it (written last, so it never points at missing segments).
    Older versions beyond ``keep_versions`` go. An episode whose parts have not changed since it was published
    there, and whose entry point still names that version, is not published again."""
    episode = episode_artifacts(context, store)
    manifest = episode.manifest()
    audit = AuditLog(episode.store, episode.episode_id)
    try:
        version = package_version(episode)
    except ApprovalError as exc:
        raise Failure(str(exc), allow_retries=False) from None
    blockers = publish_blockers(episode, manifest, version, trust.moderation_fingerprint())
    # A package assembled while a shot was out of date (edited, not re-rendered) shows what no one moderated.
    blockers += [f"shot {shot.id} is out of date ({stage} and after): re-render it (microdrama rerender "
                 f"{episode.episode_id} --shot {shot.id})" for shot in manifest.shots
                 if (stage := stale_shot_stage(episode, manifest, shot, backends, encode)) is not None]
    if blockers:
        append_run_event(context, episode, "publish_refused", content_hash=version, reasons=blockers)
        raise Failure(f"episode {episode.episode_id} is not published: " + "; ".join(blockers), allow_retries=False)
    approval = approval_for(episode.store, episode.episode_id, version)
    objects = publish.object_store()
    key = episode_stage_key("published", episode, manifest, None, objects.location, publish.keep_versions)
    master_url = f"{objects.location.rstrip('/')}/{published_master_key(episode.episode_id)}"
    cache = ArtifactCache(episode.store)
    previous = read_record(episode.store, episode.directory, key.stage)
    record = cache.current(key, episode.directory, [])
    trail = {"approved_by": approval.approved_by, "approved_version": approval.version,
             "audit": MetadataValue.md(audit_summary(audit.frame()))}
    if record is not None and still_published(objects, episode.episode_id, record.get("version", "")):
        context.log.info(f"{episode.episode_id} is published unchanged as version {record['version']}: {master_url}")
        return cached_result(Outcome(key, "hit", "in place"), {
            "master_url": MetadataValue.url(master_url), "version": record["version"], "objects_uploaded": 0,
            "removed_versions": "none", **trail})
    try:
        files = package_files(episode.directory, episode.published_parts)
        result = publish_episode(objects, episode.episode_id, files, publish.keep_versions, expected_version=version)
    except PublishError as exc:
        raise Failure(f"episode {episode.episode_id}: {exc}") from None
    cache.record(key, episode.directory, [], version=result.version)
    append_run_event(context, episode, "publish", content_hash=result.version, approved_by=approval.approved_by,
                     location=master_url)
    context.log.info(f"published {episode.episode_id} version {result.version}: {master_url}")
    return cached_result(Outcome(key, "miss", "computed", changed_inputs(previous, key)), {
        "master_url": MetadataValue.url(master_url),
        "version": result.version,
        "objects_uploaded": result.uploaded,
        "removed_versions": ", ".join(result.removed_versions) or "none",
        **trail,
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

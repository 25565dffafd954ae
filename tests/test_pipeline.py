"""End to end through the asset graph: a short episode on the embedded backends, then a single-shot re-render."""

import hashlib
import json
import shutil

import av
import boto3
import m3u8
import numpy as np
import pytest
from dagster import (AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, build_run_status_sensor_context,
                     materialize)
from scipy.io import wavfile

from conftest import sample_loglines
from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import (ALL_ASSETS, ANALYTICS_ASSETS, character_bundles, composited_shot_lip_sync,
                                     episode_mix_meets_loudness_targets, keyframes_keep_their_characters,
                                     published_episode, published_episode_plays)
from microdrama_assets.media.audio_mix import measure_loudness
from microdrama_assets.media.characters import build_character_bundle
from microdrama_assets.media.hls import LADDER, MASTER_PLAYLIST
from microdrama_assets.media.manifest import parse_manifest
from microdrama_assets.media.validate import validate_package
from microdrama_assets.partitions import shot_partition_key, shot_slot_partitions
from microdrama_assets.publishing import LocalObjectStore, content_version, package_files
from microdrama_assets.resources import (ArtifactStoreResource, BackendSettings, EncodeSettings, PublishTarget,
                                        TrustSettings)
from microdrama_assets.runner import EpisodeRunner, PipelineFailed
from microdrama_assets.trust.release_gate import approve, package_version
from microdrama_assets.sensors import assembly_sensor, shot_fanout_sensor

EPISODE = "barista-test"


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    instance = DagsterInstance.ephemeral()
    runner = EpisodeRunner(data, instance)
    store = runner.store
    playlist = runner.make_episode(EPISODE, sample_loglines()[0], shots=3, seed=7, duration_s=6.0)
    approve(EpisodeArtifacts(store, EPISODE), "Test Reviewer", "cli")
    runner.publish(EPISODE)
    return runner, store, instance, playlist


def _decode_rendition(directory, tmp_path):
    playlist = m3u8.load(str(directory / "index.m3u8"))
    joined = tmp_path / f"{directory.name}.mp4"
    joined.write_bytes((directory / "init.mp4").read_bytes()
                       + b"".join((directory / s.uri).read_bytes() for s in playlist.segments))
    with av.open(str(joined)) as container:
        return [(f.width, f.height, f.key_frame) for f in container.decode(video=0)], playlist


def test_manifest_is_valid_and_every_asset_materialized(produced):
    runner, store, instance, _ = produced
    episode = EpisodeArtifacts(store, EPISODE)
    manifest = parse_manifest(episode.manifest_path.read_bytes())
    assert [s.id for s in manifest.shots] == ["s01", "s02", "s03"]
    assert manifest.shots[0].beat.value == "hook" and manifest.shots[-1].beat.value == "cliffhanger"
    for asset in ALL_ASSETS:
        if asset not in ANALYTICS_ASSETS:  # those wait for viewers
            assert instance.get_latest_materialization_event(asset.key) is not None, asset.key
    preview = m3u8.load(str(EpisodeArtifacts(store, EPISODE).preview_dir / "index.m3u8"))
    assert preview.is_endlist and preview.playlist_type == "event"
    assert sum(segment.duration for segment in preview.segments) == pytest.approx(manifest.duration_s, abs=0.05)
    [check] = instance.event_log_storage.get_asset_check_execution_history(published_episode_plays.check_key, 1)
    assert check.status.value == "SUCCEEDED", check


def test_every_rendition_decodes_at_its_size_and_full_length(produced, tmp_path):
    _, store, _, playlist = produced
    manifest = EpisodeArtifacts(store, EPISODE).manifest()
    for rung in LADDER:
        frames, media = _decode_rendition(playlist.parent / "video" / "h264" / rung.name, tmp_path)
        assert len(frames) == manifest.total_frames
        assert {(w, h) for w, h, _ in frames} == {(rung.width, rung.height)}
        assert all(segment.duration <= 2.5 for segment in media.segments)
        # Every segment starts on an IDR: keyframes exactly at segment starts, shots never share a segment.
        starts = np.cumsum([0] + [round(s.duration * 30) for s in media.segments[:-1]]).tolist()
        assert [i for i, (_, _, key) in enumerate(frames) if key] == starts
        shot_starts = {manifest.start_frame(s.id) for s in manifest.shots}
        assert shot_starts <= set(starts)


def test_master_playlist_lists_every_rendition_with_audio_and_captions(produced):
    _, store, _, playlist = produced
    assert playlist.name == MASTER_PLAYLIST and playlist.exists()
    master = m3u8.load(str(playlist))
    resolutions = sorted(tuple(p.stream_info.resolution) for p in master.playlists)
    assert resolutions == sorted((r.width, r.height) for r in LADDER)
    for variant in master.playlists:
        assert variant.stream_info.bandwidth > 0 and variant.stream_info.frame_rate == 30
        assert variant.stream_info.codecs.startswith("avc1.") and "mp4a.40.2" in variant.stream_info.codecs
        assert (playlist.parent / variant.uri).exists()
    types = {m.type for m in master.media}
    assert types == {"AUDIO", "SUBTITLES"}
    # A variant for cellular: measured peak, its own low-bitrate audio included, at or under 192 kb/s.
    assert min(p.stream_info.bandwidth for p in master.playlists) <= 192_000
    assert len(master.iframe_playlists) == len(LADDER)
    audio = m3u8.load(str(playlist.parent / "audio" / "index.m3u8"))
    assert audio.segments and all(s.duration <= 2.5 for s in audio.segments)
    # Subtitles are segmented like the media; together the segments hold exactly the episode's cues.
    subs = m3u8.load(str(playlist.parent / "subs" / "index.m3u8"))
    assert subs.target_duration == 2 and all(s.duration <= 2.5 for s in subs.segments)
    texts = [(playlist.parent / "subs" / s.uri).read_text(encoding="utf-8") for s in subs.segments]
    assert all(text.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n") for text in texts)
    episode_cues = EpisodeArtifacts(store, EPISODE).captions_vtt.read_text(encoding="utf-8").strip().split("\n\n")[1:]
    segment_cues = {block for text in texts for block in text.strip().split("\n\n")[1:]}
    assert episode_cues and segment_cues == set(episode_cues)


def test_audio_is_present_loud_enough_and_in_the_master(produced):
    _, store, instance, _ = produced
    episode = EpisodeArtifacts(store, EPISODE)
    rate, mix = wavfile.read(episode.mix_wav)
    assert rate == 48000 and mix.ndim == 2 and mix.shape[1] == 2
    assert np.sqrt(np.mean(mix.astype(np.float64) ** 2)) > 0.01
    loudness, _ = measure_loudness(mix.astype(np.float32))
    assert -17.5 < loudness < -14.5
    [check] = instance.event_log_storage.get_asset_check_execution_history(
        episode_mix_meets_loudness_targets.check_key, 1)
    assert check.status.value == "SUCCEEDED"
    metadata = check.event.dagster_event.event_specific_data.metadata
    assert abs(metadata["integrated_lufs"].value + 16) <= 1 and metadata["true_peak_dbtp"].value <= -1
    with av.open(str(episode.master_mp4)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        audio = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert np.abs(audio).max() > 0.05


def test_delivery_manifest_matches_the_shot_timeline(produced):
    _, store, _, _ = produced
    episode = EpisodeArtifacts(store, EPISODE)
    manifest = episode.manifest()
    delivery = json.loads(episode.delivery_json.read_text(encoding="utf-8"))
    assert [s["id"] for s in delivery["shots"]] == manifest.shot_ids
    assert delivery["shots"][-1]["end_s"] == pytest.approx(manifest.total_frames / 30, abs=1e-3)
    assert len(delivery["renditions"]) == len(LADDER) and delivery["synthetic_media"] is True
    assert (episode.directory / delivery["poster"]).exists()


def _published_version(root) -> str:
    delivery = json.loads((root / "episodes" / EPISODE / "delivery.json").read_text(encoding="utf-8"))
    return delivery["version"]


def test_the_episode_is_published_whole_and_its_entry_points_resolve(produced):
    _, store, _, playlist = produced
    published = store.root / "published"
    version = _published_version(published)
    version_dir = published / "episodes" / EPISODE / "v" / version
    assert validate_package(version_dir / "hls").ok  # the published copy passes the same gate as the package
    assert (version_dir / "hls" / MASTER_PLAYLIST).read_bytes() == playlist.read_bytes()
    master = m3u8.loads(LocalObjectStore(published).get_bytes(f"episodes/{EPISODE}/{MASTER_PLAYLIST}").decode())
    for item in [*master.playlists, *master.iframe_playlists, *master.media]:
        assert item.uri.startswith(f"v/{version}/hls/")
        assert (published / "episodes" / EPISODE / item.uri).is_file(), item.uri


def test_published_episode_uploads_to_s3_through_dagster_aws(produced, tmp_path, s3_endpoint, s3_credentials):
    _, store, _, _ = produced
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="episodes-origin")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [EPISODE])
    result = materialize([published_episode, published_episode_plays], partition_key=EPISODE, instance=instance,
                         resources={
        "store": ArtifactStoreResource(root=str(store.root)), "backends": BackendSettings(),
        "encode": EncodeSettings.from_environment(), "trust": TrustSettings(),
        "publish": PublishTarget(destination="s3://episodes-origin/prod", endpoint_url=s3_endpoint)})
    metadata = result.asset_materializations_for_node("published_episode")[0].metadata
    assert metadata["master_url"].value == f"s3://episodes-origin/prod/episodes/{EPISODE}/{MASTER_PLAYLIST}"
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    # Download the whole published tree and check it as a player's CDN would serve it.
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="episodes-origin", Prefix="prod/"):
        for item in page["Contents"]:
            local = tmp_path / item["Key"]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(client.get_object(Bucket="episodes-origin", Key=item["Key"])["Body"].read())
    version = _published_version(tmp_path / "prod")
    assert validate_package(tmp_path / "prod" / "episodes" / EPISODE / "v" / version / "hls").ok


def _success_context(instance, run, sensor_name, store):
    event = next(record.dagster_event for record in instance.all_logs(run.run_id)
                 if record.dagster_event and record.dagster_event.event_type == DagsterEventType.RUN_SUCCESS)
    return build_run_status_sensor_context(sensor_name=sensor_name, dagster_event=event, dagster_instance=instance,
                                           dagster_run=run, resources={"store": ArtifactStoreResource(root=str(store.root))})


def test_plan_fans_out_to_every_shot_and_shots_assemble_once(produced):
    _, store, instance, _ = produced
    plan_run = next(r for r in instance.get_runs() if r.job_name == "plan_episode")
    requests = shot_fanout_sensor(_success_context(instance, plan_run, "shot_fanout_sensor", store))
    assert [r.partition_key for r in requests] == [shot_partition_key(EPISODE, s) for s in ("s01", "s02", "s03")]
    assert len({r.run_key for r in requests}) == 3

    shot_runs = [r for r in instance.get_runs() if r.job_name == "render_shot"]
    assert len(shot_runs) == 3
    # Whichever shot run finishes last, the same set of renders asks for one assembly (same run key).
    keys = {assembly_sensor(_success_context(instance, run, "assembly_sensor", store)).run_key for run in shot_runs}
    assert len(keys) == 1 and keys.pop().startswith(f"assemble:{EPISODE}:")


def test_unused_shot_slot_is_skipped_not_failed(produced):
    runner, store, instance, _ = produced
    instance.add_dynamic_partitions(shot_slot_partitions.name, ["s09"])
    result = runner.defs.resolve_job_def("render_shot").execute_in_process(
        instance=instance, partition_key=shot_partition_key(EPISODE, "s09"))
    assert result.success
    assert not result.get_asset_materialization_events()
    assert not (store.shot_path(EPISODE, "s09")).exists()


def _fingerprints(directory):
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_rerender_one_shot_leaves_other_shots_untouched(produced, tmp_path):
    runner, store, instance, playlist = produced
    episode = EpisodeArtifacts(store, EPISODE)
    others = {shot: _fingerprints(episode.shot(shot).directory) for shot in ("s01", "s03")}
    target_before = _fingerprints(episode.shot("s02").directory)
    # The user edits s02's action in manifest.json: its picture changes, its lines do not.
    manifest = json.loads(episode.manifest_path.read_text(encoding="utf-8"))
    manifest["shots"][1]["action"] = manifest["shots"][1]["action"].rstrip(".") + ", then looks up."
    episode.manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    runs_before = len(instance.get_runs())
    runner.render_and_assemble(EPISODE, ["s01", "s02", "s03"])
    # The edited manifest is moderated again, then s02 renders and the episode assembles; s01 and s03 are current.
    assert sorted(r.job_name for r in instance.get_runs()[:3]) == ["assemble_episode", "plan_episode", "render_shot"]
    assert len(instance.get_runs()) == runs_before + 3
    # The new take is a new package: it is published once it is approved, not before.
    assert _published_version(store.root / "published") != package_version(episode)
    approve(episode, "Test Reviewer", "cli")
    runner.render_and_assemble(EPISODE, ["s02"])  # now approved: publishing is all that is left to do
    for shot, fingerprints in others.items():
        assert _fingerprints(episode.shot(shot).directory) == fingerprints, shot
    after = _fingerprints(episode.shot("s02").directory)
    assert after.keys() == target_before.keys()
    picture = {name for name in after if not name.startswith(("dialogue/", ".voice."))}
    assert all(after[name][0] > target_before[name][0] for name in picture)  # rewritten
    assert all(after[name] == target_before[name] for name in after.keys() - picture)  # its voice was reused
    frames, _ = _decode_rendition(playlist.parent / "video" / "h264" / "360p", tmp_path)
    assert len(frames) == episode.manifest().total_frames
    # The published entry points follow the new take (the same bytes would give the same version).
    assert _published_version(store.root / "published") == content_version(
        package_files(episode.directory, episode.published_parts))
    materializations = instance.fetch_materializations(AssetKey("shot_renditions"), limit=100).records
    assert sum(r.partition_key == shot_partition_key(EPISODE, "s02") for r in materializations) == 2
    assert sum(r.partition_key == shot_partition_key(EPISODE, "s01") for r in materializations) == 1
    # Nothing changed since: a re-render starts no run at all.
    runner.render_and_assemble(EPISODE, ["s01", "s02", "s03"])
    assert len(instance.get_runs()) == runs_before + 4


def test_rerender_works_on_an_instance_that_never_saw_the_episode(produced):
    """The data can outlive the Dagster instance (new DAGSTER_HOME, another machine): rerender registers the
    partitions it needs instead of failing, and renders only what the cache does not hold."""
    runner, store, _, _ = produced
    fresh = EpisodeRunner(store.root, DagsterInstance.ephemeral())
    episode = EpisodeArtifacts(store, EPISODE)
    shutil.rmtree(episode.shot("s01").renditions_dir)  # lost here, kept in the cache
    playlist = fresh.render_and_assemble(EPISODE, ["s01", "s01"])
    assert playlist.exists()
    assert fresh.instance.get_dynamic_partitions("episodes") == [EPISODE]
    runs = fresh.instance.get_runs()
    assert sorted(r.job_name for r in runs) == ["assemble_episode", "render_shot"]  # s01 once, not twice
    [record] = fresh.instance.fetch_materializations(AssetKey("shot_renditions"), limit=10).records
    metadata = record.asset_materialization.metadata
    assert (metadata["cache"].value, metadata["cache_source"].value) == ("hit", "restored")


def test_adding_a_codec_without_reencoding_shots_fails_clearly_and_keeps_the_package(produced):
    _, store, _, playlist = produced
    before = _fingerprints(playlist.parent)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [EPISODE])
    runner = EpisodeRunner(store.root, instance, video_codecs=["h264", "av1"])
    result = runner.defs.resolve_job_def("assemble_episode").execute_in_process(
        instance=instance, partition_key=EPISODE, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    assert "no encode of s01 (av1/1080p)" in message and "rerender" in message
    assert _fingerprints(playlist.parent) == before


def test_every_shot_passed_its_checks_and_a_drifted_bundle_blocks_the_shot(produced):
    runner, store, instance, _ = produced
    shots = {shot_partition_key(EPISODE, s) for s in ("s01", "s02", "s03")}
    for check in (keyframes_keep_their_characters, composited_shot_lip_sync):
        records = instance.event_log_storage.get_asset_check_execution_history(check.check_key, limit=100)
        ran = [r for r in records if r.partition in shots]
        assert {r.partition for r in ran} == shots  # (an unused shot slot's check is planned but never runs)
        assert all(r.status.value == "SUCCEEDED" for r in ran), (check.check_key, [r.status for r in ran])

    # The user repaints a character (a new bundle) but the shot's keyframes come out as before: the check
    # catches the mismatch, and the shot's motion and everything after it are not run on them.
    episode = EpisodeArtifacts(store, EPISODE)
    manifest = episode.manifest()
    shot = manifest.shots[0]
    character = manifest.character(shot.characters[0])
    edited = character.model_copy(update={"appearance": character.appearance.model_copy(
        update={"skin": "#2040ff", "hair": "#00ff00", "outfit": "#ff00ff", "accent": "#ffff00"})})
    descriptor = episode.character_dir(character.id) / "descriptor.npy"
    original = descriptor.read_bytes()
    clip_before = _fingerprints(episode.shot(shot.id).clip_dir)
    np.save(descriptor, build_character_bundle(edited).descriptor)
    try:
        with pytest.raises(PipelineFailed, match=f"{character.id} drifted from its bundle"):
            runner.render_and_assemble(EPISODE, [shot.id])
    finally:
        descriptor.write_bytes(original)
    assert _fingerprints(episode.shot(shot.id).clip_dir) == clip_before


def test_character_bundles_are_versioned_by_content_for_staleness(produced):
    """Dagster marks keyframes stale when the bundles' data version changes: re-building unchanged bundles must
    give the same data version, and keyframes record the one they were made from."""
    _, store, instance, _ = produced

    def latest(key, partition=EPISODE):
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[str(partition)]), limit=1).records
        return records[0].asset_materialization.tags

    before = latest("character_bundles")["dagster/data_version"]
    episode = EpisodeArtifacts(store, EPISODE)
    versions = {c.id: json.loads((episode.character_dir(c.id) / "bundle.json").read_text())["version"]
                for c in episode.manifest().characters}
    assert before == hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    assert "dagster/input_data_version/character_bundles" in latest("keyframes", shot_partition_key(EPISODE, "s01"))
    result = materialize([character_bundles], partition_key=EPISODE, instance=instance,
                         resources={"store": ArtifactStoreResource(root=str(store.root))})
    assert result.success and latest("character_bundles")["dagster/data_version"] == before


def test_stills_writes_a_contact_sheet_and_a_mid_line_frame_grab_per_shot(produced, tmp_path, monkeypatch):
    from PIL import Image

    from microdrama_assets import cli

    _, store, _, _ = produced
    monkeypatch.setenv("MICRODRAMA_DATA", str(store.root))
    assert cli.main(["stills", EPISODE, "--out", str(tmp_path)]) == 0
    manifest = EpisodeArtifacts(store, EPISODE).manifest()
    with Image.open(tmp_path / "frame_grabs.jpg") as grabs, Image.open(tmp_path / "contact_sheet.jpg") as sheet:
        # Tiles 270 (grabs) and 180 (keyframes) wide with 6-px gaps: one grab per shot, every keyframe.
        assert (grabs.width, grabs.height) == (276 * len(manifest.shots) + 6, 480 + 12)
        keyframes = sum(s.keyframes for s in manifest.shots)
        assert (sheet.width, sheet.height) == (186 * min(6, keyframes) + 6, 326 * -(-keyframes // 6) + 6)
    speaking = next(s for s in manifest.shots if s.dialogue)
    line = json.loads(EpisodeArtifacts(store, EPISODE).shot(speaking.id).dialogue_json.read_text())["lines"][0]
    frame = cli._telling_frame(EpisodeArtifacts(store, EPISODE).shot(speaking.id), speaking.frames)
    assert line["start_s"] * 30 < frame < (line["start_s"] + line["duration_s"]) * 30

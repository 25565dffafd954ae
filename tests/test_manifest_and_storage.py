import json
import os

import pytest
from dagster import DagsterInstance, materialize

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import episode_manifest
from microdrama_assets.episodes import BadRequest, Presets, write_request
from microdrama_assets.media.captions import STYLES
from microdrama_assets.media.manifest import (CaptionLook, ManifestError, Mood, manifest_json_schema, parse_manifest,
                                              with_presets)
from microdrama_assets.resources import ArtifactStoreResource, BackendSettings
from microdrama_assets.storage import ArtifactStore, StorageError


def test_invalid_manifest_names_the_field(small_manifest):
    data = json.loads(small_manifest.model_dump_json())
    data["shots"][1]["camera"] = "dolly_zoom"
    with pytest.raises(ManifestError, match=r"shots\.1\.camera"):
        parse_manifest(data)
    data = json.loads(small_manifest.model_dump_json())
    data["shots"][0]["dialogue"] = [{"speaker": "nobody", "text": "hi"}]
    with pytest.raises(ManifestError, match="speaker 'nobody'"):
        parse_manifest(data)


def test_manifest_round_trips_and_schema_exports(small_manifest):
    assert parse_manifest(small_manifest.model_dump_json()) == small_manifest
    schema = json.loads(manifest_json_schema())
    assert {"episode_id", "characters", "shots"} <= set(schema["properties"])
    shot_fields = schema["$defs"]["Shot"]["properties"]
    assert {"id", "duration_s", "camera", "action", "mood", "framing", "characters", "dialogue"} <= set(shot_fields)


def test_timeline_frames_are_exact(small_manifest):
    starts = [small_manifest.start_frame(s.id) for s in small_manifest.shots]
    assert starts[0] == 0
    assert all(b - a == s.frames for a, b, s in zip(starts, starts[1:], small_manifest.shots))
    assert small_manifest.total_frames == sum(s.frames for s in small_manifest.shots)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", "UPPER", "a,b", "x" * 65, "ep\x00"])
def test_bad_episode_ids_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid episode id"):
        ArtifactStore(tmp_path).episode_dir(bad)


@pytest.mark.parametrize("part", ["..", "a/b", "", "/abs", "a\\b"])
def test_path_components_cannot_escape_the_root(tmp_path, part):
    with pytest.raises(StorageError):
        ArtifactStore(tmp_path).path("episodes", part, "file")


def test_failed_write_keeps_the_previous_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    target = store.episode_path("ep1", "manifest.json")
    store.write_text(target, "good")
    with pytest.raises(RuntimeError):
        with store.writing(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("encoder crashed")
    assert target.read_text() == "good"
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"]
    directory = store.episode_path("ep1", "hls")
    with store.writing_dir(directory) as staging:
        (staging / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with store.writing_dir(directory) as staging:
            (staging / "b").write_text("2")
            raise RuntimeError("packaging failed")
    assert sorted(p.name for p in directory.iterdir()) == ["a"]
    assert sorted(p.name for p in directory.parent.iterdir()) == ["hls", "manifest.json"]


def test_artifacts_are_readable_by_others(tmp_path):
    """Temp files start private; published artifacts (an HLS folder behind a web server) must not."""
    store = ArtifactStore(tmp_path)
    previous = os.umask(0o022)
    try:
        target = store.write_text(store.episode_path("ep1", "delivery.json"), "{}")
        with store.writing_dir(store.episode_path("ep1", "hls")) as staging:
            (staging / "master.m3u8").write_text("#EXTM3U\n")
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o044 == 0o044
    assert store.episode_path("ep1", "hls").stat().st_mode & 0o055 == 0o055


def test_presets_set_the_caption_style_and_one_lighting_mood_and_name_bad_choices(small_manifest, tmp_path):
    assert set(STYLES) == {look.value for look in CaptionLook}  # every named style can be drawn
    styled = with_presets(small_manifest, "minimal", "eerie")
    assert styled.caption_style == CaptionLook.minimal and {s.mood for s in styled.shots} == {Mood.eerie}
    assert [s.id for s in styled.shots] == [s.id for s in small_manifest.shots]
    assert with_presets(small_manifest) == small_manifest
    with pytest.raises(BadRequest, match="unknown caption style 'comic'; choose one of default, emphasis, minimal"):
        Presets(caption_style="comic").check(ArtifactStore(tmp_path))
    with pytest.raises(BadRequest, match="unknown lighting mood 'neon'"):
        Presets(lighting="neon").check(ArtifactStore(tmp_path))


def test_the_planner_asset_applies_the_requested_presets(tmp_path):
    store = ArtifactStore(tmp_path)
    write_request(store, "preset-ep", "A barista discovers a mysterious locket.", 2, 0, source="test",
                  presets=Presets(caption_style="emphasis", lighting="warm"))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", ["preset-ep"])
    result = materialize([episode_manifest], partition_key="preset-ep", instance=instance,
                         resources={"store": ArtifactStoreResource(root=str(tmp_path)), "backends": BackendSettings()})
    assert result.success
    manifest = EpisodeArtifacts(store, "preset-ep").manifest()
    assert manifest.caption_style == CaptionLook.emphasis and {s.mood for s in manifest.shots} == {Mood.warm}

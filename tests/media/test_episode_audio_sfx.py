"""The episode_audio asset with the user's files: a music bed named in the request, an SFX library, and files
that cannot be used (the step fails naming them, and the earlier mix stays)."""

import json

import pytest
from dagster import DagsterInstance, materialize

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import dialogue_audio, episode_audio, episode_mix_meets_loudness_targets
from microdrama_assets.partitions import shot_partition_key, shot_slot_partitions
from microdrama_assets.resources import ArtifactStoreResource, BackendSettings
from microdrama_assets.storage import ArtifactStore

from .sfx_audio_files import ACTION, manifest_with, write_tone

EPISODE = "sfx-asset"


@pytest.fixture(scope="module")
def voiced(tmp_path_factory):
    """An episode with its manifest, request and every shot's dialogue materialized."""
    root = tmp_path_factory.mktemp("data")
    store = ArtifactStore(root)
    episode = EpisodeArtifacts(store, EPISODE)
    manifest = manifest_with([ACTION, "Victor waits.", "Maya freezes."]).model_copy(update={"episode_id": EPISODE})
    store.write_text(episode.manifest_path, manifest.model_dump_json(indent=2))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [EPISODE])
    instance.add_dynamic_partitions(shot_slot_partitions.name, manifest.shot_ids)
    resources = {"store": ArtifactStoreResource(root=str(root)), "backends": BackendSettings()}
    for shot_id in manifest.shot_ids:
        assert materialize([dialogue_audio], partition_key=shot_partition_key(EPISODE, shot_id), instance=instance,
                           resources=resources).success
    return store, episode, instance, resources


def make_audio(voiced, request: dict, with_check: bool = True):
    store, episode, instance, resources = voiced
    store.write_json(episode.request, {"logline": "A barista finds a locket.", **request})
    return materialize([episode_audio, episode_mix_meets_loudness_targets] if with_check else [episode_audio],
                       partition_key=EPISODE, instance=instance, resources=resources, raise_on_error=False)


def failure_message(result) -> str:
    [failure] = [event for event in result.all_events if event.is_step_failure]
    return failure.step_failure_data.error.message


def test_user_music_and_library_sfx_are_used_and_the_mix_meets_its_targets(voiced):
    store, episode, _, _ = voiced
    episode.inputs_dir.mkdir(parents=True, exist_ok=True)
    write_tone(episode.input_file("theme.wav"), 330, 2.0, rate=44100)
    library = store.path("sounds", "sfx")
    library.mkdir(parents=True, exist_ok=True)
    write_tone(library / "door.ogg", 800, 0.5, codec="libopus", rate=48000)
    result = make_audio(voiced, {"music": "theme.wav"})
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    plan = json.loads(episode.sound_plan.read_text(encoding="utf-8"))
    assert plan["music"] == {"source": "file", "file": "theme.wav"}
    assert plan["sfx_library"] == {"door": str(library / "door.ogg")}
    sources = {(cue["cue"], cue["shot"]): cue["source"] for cue in plan["cues"]}
    assert sources[("door", "s01")] == "file" and sources[("phone", "s01")] == "procedural"
    assert {"whoosh", "hit", "heartbeat", "ambience_cafe"} <= {cue["cue"] for cue in plan["cues"]}
    assert set(plan["cues"][0]) == {"cue", "shot", "kind", "start_s", "duration_s", "source"}
    metadata = result.asset_materializations_for_node("episode_audio")[0].metadata
    assert metadata["music"].value == "file: theme.wav"
    assert metadata["sfx_cues"].value == sum(cue["kind"] != "ambience" for cue in plan["cues"])
    assert "| door | s01 | spot |" in metadata["sfx"].value


@pytest.mark.parametrize("bad", ["corrupt library file", "missing music file"])
def test_a_file_that_cannot_be_used_fails_the_step_and_keeps_the_earlier_mix(voiced, bad):
    store, episode, _, _ = voiced
    # What a bad file does to the step (the loudness check has its own test above).
    assert make_audio(voiced, {"music": None}, with_check=False).success
    before = {path.name: path.read_bytes() for path in episode.audio_dir.iterdir()}
    assert json.loads(before["sfx.json"])["music"] == {"source": "procedural"}
    library = store.path("sounds", "sfx")
    library.mkdir(parents=True, exist_ok=True)
    corrupt = library / "phone.wav"
    if bad == "corrupt library file":
        corrupt.write_bytes(b"RIFF....WAVE but nothing after it" * 8)
        request, named = {"music": None}, f"{corrupt}: cannot be decoded as audio"
    else:
        request, named = {"music": "gone.mp3"}, f"{episode.input_file('gone.mp3')}: no such file"
    try:
        result = make_audio(voiced, request, with_check=False)
    finally:
        corrupt.unlink(missing_ok=True)
    assert not result.success
    assert named in failure_message(result)
    assert {path.name: path.read_bytes() for path in episode.audio_dir.iterdir()} == before

"""Content-addressed caching: keys follow exactly their inputs, entries are verified before use, and through
Dagster a re-materialization reuses what it can and says so."""

import hashlib
import json

import pytest
from dagster import AssetRecordsFilter, DagsterInstance, materialize

from conftest import build_manifest
from microdrama_assets import cache
from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import SHOT_ASSETS, character_bundles, dialogue_audio
from microdrama_assets.cache import ArtifactCache, CacheKey, STAGE_VERSIONS, shot_stage_key, voice_key
from microdrama_assets.partitions import shot_partition_key, shot_slot_partitions
from microdrama_assets.resources import ArtifactStoreResource, BackendSettings, EncodeSettings
from microdrama_assets.storage import ArtifactStore

EMBEDDED = {"name": "embedded"}


def _with_shot(manifest, index, **changes):
    shots = [shot.model_copy(update=changes) if i == index else shot for i, shot in enumerate(manifest.shots)]
    return manifest.model_copy(update={"shots": shots})


def _line(manifest, index, text):
    shot = manifest.shots[index]
    return _with_shot(manifest, index, dialogue=[shot.dialogue[0].model_copy(update={"text": text})])


# --- keys ---------------------------------------------------------------------------------------------------------

def test_a_key_is_a_hash_of_stage_code_version_and_inputs(monkeypatch):
    key = CacheKey("voice", {"text": "hello", "frames": 60})
    assert key.digest == CacheKey("voice", {"frames": 60, "text": "hello"}).digest  # order does not matter
    assert key.digest != CacheKey("voice", {"text": "hello", "frames": 61}).digest
    assert key.digest != CacheKey("composite", {"text": "hello", "frames": 60}).digest
    monkeypatch.setitem(STAGE_VERSIONS, "voice", "bumped")
    assert key.digest != CacheKey("voice", {"text": "hello", "frames": 60}).digest
    with pytest.raises(ValueError, match="unknown cache stage"):
        CacheKey("nope", {})


def test_the_voice_key_follows_the_words_voices_length_and_backend_only():
    manifest = build_manifest()
    shot = manifest.shots[0]
    base = voice_key(manifest, shot, EMBEDDED).digest
    assert voice_key(manifest, shot, EMBEDDED).digest == base
    assert voice_key(_line(manifest, 0, "It is humming."), _line(manifest, 0, "It is humming.").shots[0],
                     EMBEDDED).digest != base
    assert voice_key(manifest, shot, {"name": "coqui", "voice_model_sha256": "ab"}).digest != base
    assert voice_key(manifest, shot.model_copy(update={"duration_s": 3.0}), EMBEDDED).digest != base
    speaker = manifest.character(shot.dialogue[0].speaker)
    revoiced = manifest.model_copy(update={"characters": [
        c.model_copy(update={"voice": c.voice.model_copy(update={"pitch": 10})}) if c.id == speaker.id else c
        for c in manifest.characters]})
    assert voice_key(revoiced, revoiced.shots[0], EMBEDDED).digest != base
    acted = _with_shot(manifest, 0, action="Maya drops the locket.", camera="pan_right")
    assert voice_key(acted, acted.shots[0], EMBEDDED).digest == base  # the picture is not the voice's input


def test_the_storyboard_key_follows_the_picture_not_the_words():
    manifest = build_manifest()
    base = cache.storyboard_key(manifest, manifest.shots[1]).digest
    reworded = _line(manifest, 1, "Put it down, slowly.")
    assert cache.storyboard_key(reworded, reworded.shots[1]).digest == base
    acted = _with_shot(manifest, 1, action="Victor reaches across the counter.")
    assert cache.storyboard_key(acted, acted.shots[1]).digest != base
    reseeded = _with_shot(manifest, 1, seed=999)
    assert cache.storyboard_key(reseeded, reseeded.shots[1]).digest != base
    # Another shot's edit, or a character's voice, leaves this shot's picture alone.
    other = _with_shot(manifest, 0, action="Maya runs.")
    assert cache.storyboard_key(other, other.shots[1]).digest == base
    recoloured = manifest.model_copy(update={"characters": [
        c.model_copy(update={"appearance": c.appearance.model_copy(update={"outfit": "#ff0000"})})
        for c in manifest.characters]})
    assert cache.storyboard_key(recoloured, recoloured.shots[1]).digest != base


def test_downstream_keys_follow_the_upstream_record_and_fall_back_to_content(tmp_path):
    store = ArtifactStore(tmp_path)
    episode = EpisodeArtifacts(store, "keys")
    manifest = build_manifest("keys")
    shot = manifest.shots[0]
    artifacts = episode.shot(shot.id)
    with pytest.raises(Exception, match="materialize storyboard first"):
        cache.keyframes_key(episode, manifest, shot, EMBEDDED)
    artifacts.storyboard_dir.mkdir(parents=True)
    (artifacts.storyboard_dir / "poses.json").write_text("{}")
    for character in manifest.characters:
        episode.character_dir(character.id).mkdir(parents=True)
        (episode.character_dir(character.id) / "descriptor.npy").write_bytes(character.id.encode())
    unrecorded = cache.keyframes_key(episode, manifest, shot, EMBEDDED)
    assert unrecorded.inputs["storyboard"].startswith("content:")
    storyboard = cache.storyboard_key(manifest, shot)
    ArtifactCache(store).record(storyboard, artifacts.directory, [artifacts.storyboard_dir])
    recorded = cache.keyframes_key(episode, manifest, shot, EMBEDDED)
    assert recorded.inputs["storyboard"] == storyboard.digest
    assert cache.keyframes_key(episode, manifest, shot, {"name": "diffusers"}).digest != recorded.digest
    # A character's bundle rebuilt differently: the keyframes made from (and checked against) it are stale.
    (episode.character_dir(shot.characters[0]) / "descriptor.npy").write_bytes(b"repainted")
    assert cache.keyframes_key(episode, manifest, shot, EMBEDDED).digest != recorded.digest
    (episode.character_dir(shot.characters[0]) / "descriptor.npy").write_bytes(shot.characters[0].encode())
    # Edited by hand after it was recorded: the record no longer vouches for it, its bytes do.
    (artifacts.storyboard_dir / "poses.json").write_text('{"edited": true}')
    edited = cache.keyframes_key(episode, manifest, shot, EMBEDDED)
    assert edited.inputs["storyboard"].startswith("content:") and edited.digest != unrecorded.digest


# --- the cache ----------------------------------------------------------------------------------------------------

def _writer(store, target, content, calls):
    def build():
        calls.append(content)
        with store.writing_dir(target) as staging:
            (staging / "a.bin").write_bytes(content)
            (staging / "sub").mkdir()
            (staging / "sub" / "b.txt").write_text("b")
    return build


def _digest(directory):
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_materialize_computes_once_then_hits_in_place_then_restores(tmp_path):
    store = ArtifactStore(tmp_path)
    artifacts = cache.ArtifactCache(store)
    directory, target = tmp_path / "episodes" / "e" / "shots" / "s01", tmp_path / "episodes" / "e" / "shots" / "s01" / "clip"
    key, calls = CacheKey("clip", {"frames": 30}), []
    first = artifacts.materialize(key, directory, [target], _writer(store, target, b"x" * 1000, calls))
    assert (first.status, first.source, calls) == ("miss", "computed", [b"x" * 1000])
    made = _digest(target)
    assert _digest(artifacts.entry_dir(key) / cache.PAYLOAD_DIR / "clip") == made
    again = artifacts.materialize(key, directory, [target], _writer(store, target, b"y", calls))
    assert (again.status, again.source, len(calls)) == ("hit", "in place", 1)
    assert again.metadata()["cache"] == "hit" and again.metadata()["cache_key"] == key.digest

    # Another key's output replaces it; asking for the first key again restores it from the cache, byte for byte.
    other = artifacts.materialize(CacheKey("clip", {"frames": 31}), directory, [target],
                                  _writer(store, target, b"z" * 10, calls))
    assert other.status == "miss" and other.changed == ("frames",)
    back = artifacts.materialize(key, directory, [target], _writer(store, target, b"y", calls))
    assert (back.status, back.source, len(calls)) == ("hit", "restored", 2)
    assert _digest(target) == made

    # The restored file is a copy: writing into the episode's copy leaves the entry intact and usable.
    with (target / "a.bin").open("r+b") as handle:
        handle.write(b"CORRUPT")
    assert artifacts.current(key, directory, [target]) is None  # the record no longer matches the files
    assert artifacts.materialize(key, directory, [target], _writer(store, target, b"y", calls)).source == "restored"
    assert _digest(target) == made and len(calls) == 2


@pytest.mark.parametrize("damage", ["flipped byte", "missing file", "no entry.json", "truncated"])
def test_a_corrupted_or_partial_entry_is_not_used(tmp_path, damage):
    store = ArtifactStore(tmp_path)
    artifacts = cache.ArtifactCache(store)
    directory = tmp_path / "episodes" / "e"
    target = directory / "audio"
    key, calls = CacheKey("episode_audio", {"n": 1}), []
    artifacts.materialize(key, directory, [target], _writer(store, target, b"good" * 100, calls))
    payload = artifacts.entry_dir(key) / cache.PAYLOAD_DIR / "audio"
    if damage == "flipped byte":
        data = bytearray((payload / "a.bin").read_bytes())
        data[5] ^= 0xFF
        (payload / "a.bin").write_bytes(bytes(data))
    elif damage == "missing file":
        (payload / "sub" / "b.txt").unlink()
    elif damage == "no entry.json":
        (artifacts.entry_dir(key) / cache.ENTRY_FILE).unlink()
    else:
        (payload / "a.bin").write_bytes(b"go")
    (target / "a.bin").unlink()  # the episode's copy is gone: only the cache could give it back
    outcome = artifacts.materialize(key, directory, [target], _writer(store, target, b"good" * 100, calls))
    assert (outcome.status, len(calls)) == ("miss", 2)
    assert "discarded" in outcome.note
    assert (target / "a.bin").read_bytes() == b"good" * 100
    # The entry was rebuilt from the fresh output and is whole again.
    entry = json.loads((artifacts.entry_dir(key) / cache.ENTRY_FILE).read_text())
    assert set(entry["files"]) == {"audio/a.bin", "audio/sub/b.txt"}
    assert _digest(payload) == _digest(target)


def test_a_failed_build_leaves_the_previous_artifact_and_record(tmp_path):
    store = ArtifactStore(tmp_path)
    artifacts = cache.ArtifactCache(store)
    directory = tmp_path / "episodes" / "e"
    target = directory / "audio"
    key, calls = CacheKey("episode_audio", {"n": 1}), []
    artifacts.materialize(key, directory, [target], _writer(store, target, b"good", calls))

    def failing():
        with store.writing_dir(target) as staging:
            (staging / "a.bin").write_bytes(b"half")
            raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError):
        artifacts.materialize(CacheKey("episode_audio", {"n": 2}), directory, [target], failing)
    assert (target / "a.bin").read_bytes() == b"good"
    assert artifacts.current(key, directory, [target]) is not None
    assert not artifacts.entry_dir(CacheKey("episode_audio", {"n": 2})).exists()


# --- through Dagster ----------------------------------------------------------------------------------------------

EPISODE = "cache-ep"
STAGE_OF = {"storyboard": "storyboard", "keyframes": "keyframes", "dialogue_audio": "voice", "shot_clip": "clip",
            "composited_shot": "composite", "shot_renditions": "renditions"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A two-shot episode (1.5-s shots) rendered through every shot asset once, on the draft preset."""
    root = tmp_path_factory.mktemp("data")
    store = ArtifactStore(root)
    episode = EpisodeArtifacts(store, EPISODE)
    manifest = build_manifest(EPISODE, (1.5, 1.5))
    store.write_text(episode.manifest_path, manifest.model_dump_json(indent=2))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [EPISODE])
    instance.add_dynamic_partitions(shot_slot_partitions.name, manifest.shot_ids)
    resources = {"store": ArtifactStoreResource(root=str(root)), "backends": BackendSettings(),
                 "encode": EncodeSettings(preset="draft")}
    assert materialize([character_bundles], partition_key=EPISODE, instance=instance, resources=resources).success
    for shot_id in manifest.shot_ids:
        _render(instance, resources, shot_id)
    return store, episode, instance, resources


def _render(instance, resources, shot_id, assets=SHOT_ASSETS) -> dict:
    result = materialize(assets, partition_key=shot_partition_key(EPISODE, shot_id), instance=instance,
                         resources=resources)
    assert result.success
    return {event.asset_key.path[-1]: event.materialization for event in result.get_asset_materialization_events()}


def _data_versions(instance, shot_id) -> dict:
    partition = str(shot_partition_key(EPISODE, shot_id))
    return {asset.key.path[-1]: instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset.key, asset_partitions=[partition]), limit=1
    ).records[0].asset_materialization.tags["dagster/data_version"] for asset in SHOT_ASSETS}


def _shot_digests(episode, shot_id):
    directory = episode.shot(shot_id).directory
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def test_a_second_materialization_is_a_cache_hit_with_identical_output(rendered):
    store, episode, instance, resources = rendered
    before = _shot_digests(episode, "s01")
    versions = _data_versions(instance, "s01")
    materialized = _render(instance, resources, "s01")
    for name, materialization in materialized.items():
        assert materialization.metadata["cache"].value == "hit", name
        assert materialization.metadata["cache_source"].value == "in place", name
    assert _shot_digests(episode, "s01") == before
    assert _data_versions(instance, "s01") == versions  # Dagster sees nothing new: downstream stays fresh

    # Gone from the episode (or replaced), the artifact comes back from the cache, the same bytes.
    artifacts = episode.shot("s01")
    artifacts.composited.unlink()
    restored = _render(instance, resources, "s01", [SHOT_ASSETS[4]])["composited_shot"]
    assert restored.metadata["cache"].value == "hit" and restored.metadata["cache_source"].value == "restored"
    assert _shot_digests(episode, "s01") == before


def test_changing_one_lines_words_misses_only_that_shots_voice_composite_and_encode(rendered):
    store, episode, instance, resources = rendered
    manifest = episode.manifest()
    untouched = _shot_digests(episode, "s01")
    edited = _line(manifest, 1, "Stop.")
    store.write_text(episode.manifest_path, edited.model_dump_json(indent=2))
    statuses = {}
    for shot_id in ("s01", "s02"):
        for name, materialization in _render(instance, resources, shot_id).items():
            statuses[(shot_id, STAGE_OF[name])] = materialization.metadata["cache"].value
    missed = {cell for cell, status in statuses.items() if status == "miss"}
    assert missed == {("s02", "voice"), ("s02", "composite"), ("s02", "renditions")}, statuses
    assert _shot_digests(episode, "s01") == untouched
    dialogue = json.loads(episode.shot("s02").dialogue_json.read_text(encoding="utf-8"))
    assert dialogue["lines"][0]["text"] == "Stop."
    # The runner's up-to-date check agrees: nothing left to do for either shot.
    for shot in edited.shots:
        assert cache.stale_shot_stage(episode, edited, shot, resources["backends"], resources["encode"]) is None
    key = shot_stage_key("voice", episode, edited, edited.shots[1], resources["backends"], resources["encode"])
    assert ArtifactCache(store).entry_dir(key).is_dir()


def test_a_corrupted_entry_is_recomputed_through_the_asset(rendered):
    store, episode, instance, resources = rendered
    manifest = episode.manifest()
    shot = manifest.shots[0]
    key = shot_stage_key("voice", episode, manifest, shot, resources["backends"], resources["encode"])
    wav = ArtifactCache(store).entry_dir(key) / cache.PAYLOAD_DIR / "dialogue" / "dialogue.wav"
    wav.write_bytes(wav.read_bytes()[:-100])  # a partial copy
    episode.shot(shot.id).dialogue_wav.unlink()
    materialization = _render(instance, resources, shot.id, [dialogue_audio])["dialogue_audio"]
    assert materialization.metadata["cache"].value == "miss"
    assert "discarded" in materialization.metadata["cache_note"].value
    assert episode.shot(shot.id).dialogue_wav.stat().st_size == wav.stat().st_size  # re-stored whole

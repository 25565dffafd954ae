import json

import av
import numpy as np
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, build_sensor_context, materialize

from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import character_bundles, episode_manifest
from microdrama_assets.casting import (BUILTIN_CARDS_DIR, CastingError, available_cards, load_card,
                                       series_cast)
from microdrama_assets.episodes import BadRequest, Presets, write_request
from microdrama_assets.media.characters import bundle_version
from microdrama_assets.media.planner import plan_episode
from microdrama_assets.resources import ArtifactStoreResource, BackendSettings
from microdrama_assets.sensors import LoglineInbox, logline_sensor
from microdrama_assets.storage import ArtifactStore


def _write_card(store: ArtifactStore, card: dict) -> None:
    folder = store.root / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{card['id']}.json").write_text(json.dumps(card), encoding="utf-8")


def _builtin(card_id: str) -> dict:
    return json.loads((BUILTIN_CARDS_DIR / f"{card_id}.json").read_text(encoding="utf-8"))


def test_every_builtin_card_validates_and_the_cards_look_and_sound_distinct(tmp_path):
    store = ArtifactStore(tmp_path)
    cards = [load_card(store, card_id) for card_id in available_cards(store)]
    assert len(cards) >= 6
    assert len({c.appearance.outfit for c in cards}) == len(cards)
    assert len({(c.voice.variant, c.voice.pitch) for c in cards}) == len(cards)


def test_cards_fill_the_story_roles_and_invented_characters_avoid_their_looks_and_voices(tmp_path):
    store = ArtifactStore(tmp_path)
    mara = load_card(store, "mara")
    for logline in ["A nurse finds a locket in the elevator.", "A courier hears a knock at the door at midnight.",
                    "Two rivals share a cab on the night of the storm."]:
        manifest = plan_episode(logline, "cast-ep", shots=6, seed=3, cast=[mara])
        assert manifest.characters[0] == mara  # the card, untouched, as the protagonist
        assert manifest.shots[0].characters[0] == "mara"
        assert any(line.speaker == "mara" for shot in manifest.shots for line in shot.dialogue)
        for invented in manifest.characters[1:]:
            look = invented.appearance
            assert not {look.skin, look.hair, look.outfit, look.accent} & {
                mara.appearance.skin, mara.appearance.hair, mara.appearance.outfit, mara.appearance.accent}
            assert (invented.voice.variant, invented.voice.pitch) != (mara.voice.variant, mara.voice.pitch)
            assert invented.id != "mara"
        # Planning stays deterministic with a cast.
        assert plan_episode(logline, "cast-ep", shots=6, seed=3, cast=[mara]) == manifest


def test_more_cards_than_the_story_needs_join_as_extra_characters(tmp_path):
    store = ArtifactStore(tmp_path)
    cast = [load_card(store, card_id) for card_id in ("kofi", "theo", "victor")]
    manifest = plan_episode("A courier finds a key.", "extra-ep", shots=6, seed=0, cast=cast)
    assert [c.id for c in manifest.characters] == ["kofi", "theo", "victor"]
    with pytest.raises(ValueError, match="at most 3 distinct characters"):
        plan_episode("A courier finds a key.", "extra-ep", cast=cast + [load_card(store, "mara")])


def test_a_users_card_overrides_the_builtin_and_bad_cards_name_file_and_field(tmp_path):
    store = ArtifactStore(tmp_path)
    mine = dict(_builtin("mara"), description="A retired detective (protagonist) who still carries a badge.")
    _write_card(store, mine)
    assert load_card(store, "mara").description.startswith("A retired detective")

    broken = dict(_builtin("theo"), appearance=dict(_builtin("theo")["appearance"], outfit="blue"))
    _write_card(store, broken)
    with pytest.raises(CastingError, match=r"cards/theo.json is invalid: appearance.outfit: String should match"):
        load_card(store, "theo")
    (store.root / "cards" / "ines.json").write_text(json.dumps(dict(_builtin("ines"), id="someone-else")))
    with pytest.raises(CastingError, match="must match its file name"):
        load_card(store, "ines")
    with pytest.raises(CastingError, match="unknown character card 'zed'; available: .*kofi.*victor"):
        load_card(store, "zed")
    with pytest.raises(ValueError, match="invalid card id"):
        load_card(store, "../mara")


def _plan_and_bundle(store_root, instance, episode_id):
    result = materialize([episode_manifest, character_bundles], partition_key=episode_id, instance=instance,
                         resources={"store": ArtifactStoreResource(root=str(store_root)), "backends": BackendSettings()})
    assert result.success
    record = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("character_bundles"), asset_partitions=[episode_id]), limit=1).records[0]
    return record.asset_materialization


def test_a_series_brings_its_characters_back_and_reuses_their_bundles(tmp_path):
    store = ArtifactStore(tmp_path)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", ["night-1", "night-2", "solo"])
    write_request(store, "night-1", "A night-shift nurse hears a voice in the empty ward.", 4, 0, source="test",
                  presets=Presets(series="night-shift"))
    first = _plan_and_bundle(tmp_path, instance, "night-1")
    assert first.metadata["reused"].value == "none"
    pilot = EpisodeArtifacts(store, "night-1").manifest()
    assert [c.id for c in series_cast(store, "night-shift")] == [c.id for c in pilot.characters]

    # A different story in the same series: the same people, looking and sounding the same; bundles reused.
    write_request(store, "night-2", "The patient in room nine asks for a doctor who died in 1990.", 5, 7,
                  source="test", presets=Presets(series="night-shift"))
    second = _plan_and_bundle(tmp_path, instance, "night-2")
    sequel = EpisodeArtifacts(store, "night-2").manifest()
    assert {c.id: c for c in sequel.characters}.items() <= {c.id: c for c in pilot.characters}.items()
    assert second.metadata["reused"].value == ", ".join(c.id for c in sequel.characters)
    for character in sequel.characters:
        ours = EpisodeArtifacts(store, "night-2").character_dir(character.id)
        theirs = EpisodeArtifacts(store, "night-1").character_dir(character.id)
        assert np.array_equal(np.load(ours / "descriptor.npy"), np.load(theirs / "descriptor.npy"))
        assert json.loads((ours / "bundle.json").read_text())["version"] == bundle_version(character)

    # Outside the series, the same logline invents its own people.
    write_request(store, "solo", "The patient in room nine asks for a doctor who died in 1990.", 5, 7, source="test")
    _plan_and_bundle(tmp_path, instance, "solo")
    assert {c.id for c in EpisodeArtifacts(store, "solo").manifest().characters} != {c.id for c in sequel.characters}


def test_editing_a_card_changes_the_bundle_version_so_keyframes_go_stale(tmp_path):
    store = ArtifactStore(tmp_path)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", ["card-ep"])
    write_request(store, "card-ep", "A detective finds a glove on the rooftop.", 2, 0, source="test",
                  presets=Presets(cast=("mara",)))
    before = _plan_and_bundle(tmp_path, instance, "card-ep").tags["dagster/data_version"]
    assert _plan_and_bundle(tmp_path, instance, "card-ep").tags["dagster/data_version"] == before
    _write_card(store, dict(_builtin("mara"), appearance=dict(_builtin("mara")["appearance"], outfit="#e84393")))
    after = _plan_and_bundle(tmp_path, instance, "card-ep")
    assert after.tags["dagster/data_version"] != before
    assert EpisodeArtifacts(store, "card-ep").manifest().character("mara").appearance.outfit == "#e84393"


def _tone(path, seconds=0.5, rate=44100):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        samples = (np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_a_music_file_is_probed_and_copied_into_the_episode(tmp_path):
    store = ArtifactStore(tmp_path / "data")
    song = tmp_path / "My Song.WAV"
    _tone(song)
    request = write_request(store, "music-ep", "A logline.", 1, 0, source="test", presets=Presets(music=song))
    stored = EpisodeArtifacts(store, "music-ep").input_file(request["music"])
    assert request["music"] == "music.wav" and stored.read_bytes() == song.read_bytes()

    fake = tmp_path / "notes.mp3"
    fake.write_text("not audio at all")
    with pytest.raises(BadRequest, match="notes.mp3: cannot be decoded as audio"):
        write_request(store, "music-ep", "A logline.", 1, 0, source="test", presets=Presets(music=fake))
    assert stored.read_bytes() == song.read_bytes()  # the earlier request's file is untouched


def test_logline_files_select_cards_series_and_music_beside_them(tmp_path, capfd):
    folder, data = tmp_path / "loglines", tmp_path / "data"
    folder.mkdir()
    _tone(folder / "theme.wav")
    (folder / "cast.txt").write_text("A detective and a paramedic chase a stolen ambulance.\n"
                                     "cast: mara, theo\nseries: Night-Shift\nmusic: theme.wav\n")
    (folder / "escape.txt").write_text("A logline.\nmusic: ../theme.wav\n")
    (folder / "nobody.txt").write_text("A logline.\ncast: zed\n")
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(),
        resources={"loglines": LoglineInbox(path=str(folder)), "store": ArtifactStoreResource(root=str(data))})
    result = logline_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["cast"]
    request = json.loads(EpisodeArtifacts(ArtifactStore(data), "cast").request.read_text())
    assert (request["cast"], request["series"], request["music"]) == (["mara", "theo"], "night-shift", "music.wav")
    warnings = capfd.readouterr().err
    assert "escape.txt: music file '../theme.wav' must be a file name in the loglines folder" in warnings
    assert "nobody.txt: unknown character card 'zed'" in warnings

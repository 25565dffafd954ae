"""The SFX layer: which cues an episode gets, where they land, and files that replace them."""

import re

import numpy as np
import pytest

from microdrama_assets.media import sfx
from microdrama_assets.media.audio_mix import (SAMPLE_RATE, SFX_REFERENCE_LUFS, AudioFileError, decode_audio_file,
                                               measure_loudness, mix_episode)
from microdrama_assets.media.manifest import Beat
from microdrama_assets.media.sfx import CUES, render_sfx_layer, sfx_library_files, spot_cues

from .sfx_audio_files import ACTION, manifest_with, write_tone, write_video_without_audio

# One line per shot, 1.2 s long, 0.8 s after its cut: the way place_lines sets a short line in a 4 s shot.
LINES = [(0.8, 2.0), (4.8, 6.0), (8.8, 10.0)]


def seconds(at_s: float) -> int:
    return round(at_s * SAMPLE_RATE)


# ---------------------------------------------------------------------------------------------- which cues

def test_action_words_name_the_cues_in_order_each_once():
    assert spot_cues(ACTION) == ["door", "phone"]
    assert spot_cues("A knock at the door; she walks to it, her phone buzzing, and knocks back.") == [
        "knock", "door", "footsteps"]  # at most three, each once
    assert spot_cues("Alguien golpea la puerta mientras suena su teléfono.") == ["knock", "door", "phone"]
    # Whole words only: no door in a doorman, no text in a context.
    assert spot_cues("The doorman reads the context of the telephone bill.") == []


def test_every_cue_is_documented_in_the_module_docstring():
    documented = re.findall(r"^- ``([a-z_]+)``", sfx.__doc__, flags=re.MULTILINE)
    assert sorted(documented) == sorted(CUES)


# ---------------------------------------------------------------------------------------------- placement

@pytest.fixture(scope="module")
def layer():
    return render_sfx_layer(manifest_with([ACTION, "Victor waits.", "Maya freezes."]), LINES)


def test_placement_has_the_expected_cues(layer):
    placed = {(p.cue, p.shot, p.kind) for p in layer.placements}
    assert {("door", "s01", "spot"), ("phone", "s01", "spot"), ("heartbeat", "s03", "spot")} <= placed
    assert {("whoosh", "s01", "transition"), ("hit", "s03", "transition")} <= placed  # hook and cliffhanger cuts
    assert {(p.cue, p.shot) for p in layer.placements if p.kind == "ambience"} == {
        ("ambience_cafe", "s01"), ("ambience_cafe", "s02"), ("ambience_cafe", "s03")}
    assert not any(p.shot == "s02" and p.kind == "spot" for p in layer.placements)  # "waits" names no sound
    assert {p.source for p in layer.placements} == {"procedural"}
    door = next(p for p in layer.placements if p.cue == "door")
    phone = next(p for p in layer.placements if p.cue == "phone")
    assert 0.0 < door.start_s < phone.start_s < 4.0 and phone.start_s + phone.duration_s <= 4.0 + 1e-6


def test_spots_follow_the_accent_on_their_cut_but_not_a_riser_into_the_next_shot():
    manifest = manifest_with(["Maya hears a knock.", "Victor waits.", "Maya freezes."],
                             beats=[Beat.hook, Beat.reveal, Beat.cliffhanger])
    placed = {p.cue: p for p in render_sfx_layer(manifest, LINES).placements}
    whoosh, knock, riser, hit, heartbeat = (placed[c] for c in ("whoosh", "knock", "riser", "hit", "heartbeat"))
    assert knock.start_s >= whoosh.start_s + whoosh.duration_s - 1e-6
    assert heartbeat.start_s >= hit.start_s + hit.duration_s - 1e-6
    # The riser builds over the end of s01 into the reveal, and the knock still gets the clear gap after the line.
    assert riser.start_s < 4.0 - 1.0 and riser.start_s + riser.duration_s == pytest.approx(4.0, abs=1e-3)
    assert LINES[0][1] <= knock.start_s and knock.start_s + knock.duration_s <= 4.0 + 1e-6


def test_placement_and_sound_are_deterministic_per_seed(layer):
    again = render_sfx_layer(manifest_with([ACTION, "Victor waits.", "Maya freezes."]), LINES)
    assert again.placements == layer.placements
    assert np.array_equal(again.audio, layer.audio)
    other = render_sfx_layer(manifest_with([ACTION, "Victor waits.", "Maya freezes."], seed=2), LINES)
    assert np.abs(other.audio - layer.audio).mean() > 1e-4


def test_the_layer_is_stereo_the_episode_length_and_every_cue_sounds(layer):
    assert layer.audio.dtype == np.float32 and layer.audio.shape == (seconds(12.0), 2)
    for placement in layer.placements:
        part = layer.audio[seconds(placement.start_s) : seconds(placement.start_s + placement.duration_s)]
        assert np.sqrt(np.mean(part.astype(np.float64) ** 2)) > 1e-4, placement


def test_nothing_but_the_beds_sounds_at_a_line_start(layer):
    # Same seed, locations and times of day, but no spot words and no accented beats: the beds alone.
    beds_only = render_sfx_layer(manifest_with(["Maya waits."] * 3, beats=[Beat.setup] * 3), LINES)
    assert not any(p.kind != "ambience" for p in beds_only.placements)
    accents = (layer.audio - beds_only.audio).astype(np.float64)
    assert np.abs(accents).max() > 0.01  # the spots and transitions are there...
    for start_s, _ in LINES:  # ...but silent from just before each line starts until its first syllable
        assert np.abs(accents[seconds(start_s - 0.1) : seconds(start_s + 0.25)]).max() < 1e-6, start_s
    for placement in layer.placements:
        if placement.kind != "ambience":
            assert not any(placement.start_s - 0.1 < start_s < placement.start_s + placement.duration_s + 0.1
                           for start_s, _ in LINES), placement


def test_no_cue_is_louder_than_the_dialogue():
    """The layer is levelled against dialogue at SFX_REFERENCE_LUFS: every spot and accent stays well under it,
    and no sharp one peaks over the cap, whatever the cue."""
    busy = manifest_with(["Thunder. A car drives by.", "The elevator door; a knock.", "The lights flicker."])
    for layer in (render_sfx_layer(busy, LINES), render_sfx_layer(busy, [])):
        accents = [p for p in layer.placements if p.kind != "ambience"]
        assert len(accents) >= 6
        for placement in accents:
            part = layer.audio[seconds(placement.start_s) : seconds(placement.start_s + placement.duration_s)]
            loudness, true_peak = measure_loudness(part)
            assert loudness <= SFX_REFERENCE_LUFS - 5, placement
            assert true_peak <= SFX_REFERENCE_LUFS + 8.5, placement  # the cap, plus the bed under the cue


def test_spots_prefer_the_gaps_between_lines(layer):
    for placement in layer.placements:
        if placement.kind == "spot":
            end_s = placement.start_s + placement.duration_s
            assert not any(start < end_s and placement.start_s < end for start, end in LINES), placement


def test_a_cue_without_room_is_left_out_and_said_so():
    # Short lines every half second through s01: nowhere 0.3 s clear of a line start.
    crowded = [(start, start + 0.4) for start in np.arange(0.3, 4.0, 0.5)] + LINES[1:]
    result = render_sfx_layer(manifest_with(["Maya hears a knock.", "Victor waits.", "Maya waits."]), crowded)
    assert not any(p.cue == "knock" for p in result.placements)
    assert ("knock", "s01", "no room between the lines") in result.skipped


def test_a_prop_named_shot_after_shot_is_not_heard_every_time():
    result = render_sfx_layer(manifest_with(["Her phone buzzes.", "The phone again.", "Still the phone."]), LINES)
    assert [p.shot for p in result.placements if p.cue == "phone"] == ["s01"]
    assert [(cue, shot) for cue, shot, _ in result.skipped] == [("phone", "s02"), ("phone", "s03")]


def test_rain_and_location_beds_follow_the_shots():
    manifest = manifest_with(["Rain lashes the window.", "Victor waits.", "Maya waits."], location="park")
    result = render_sfx_layer(manifest, LINES)
    beds = [(p.cue, p.shot) for p in result.placements if p.kind == "ambience"]
    assert ("rain", "s01") in beds and ("rain", "s02") not in beds
    assert [cue for cue, shot in beds if shot == "s02"] == ["ambience_park"]


# ---------------------------------------------------------------------------------------------- ducking

def tone_level(stereo: np.ndarray, hz: float, start_s: float, end_s: float) -> float:
    part = stereo[seconds(start_s) : seconds(end_s), 0].astype(np.float64)
    t = np.arange(len(part)) / SAMPLE_RATE
    return 2 * abs(np.mean(part * np.exp(-2j * np.pi * hz * t)))


def test_music_and_sfx_are_ducked_under_dialogue():
    t = np.arange(8 * SAMPLE_RATE) / SAMPLE_RATE
    music = np.repeat((0.2 * np.sin(2 * np.pi * 110 * t))[:, None], 2, axis=1)
    bed = np.repeat((0.05 * np.sin(2 * np.pi * 330 * t))[:, None], 2, axis=1)  # an ambience-like steady layer
    noise = np.diff(np.diff(np.random.default_rng(0).standard_normal(len(t) + 2))) * 0.1  # 2-4 kHz "speech"
    dialogue = np.where((t >= 3) & (t < 5), noise, 0)
    mix = mix_episode(dialogue, music, sfx=bed)
    for hz, at_most_db in ((110, -9.0), (330, -6.0)):
        clear, under_speech = tone_level(mix, hz, 1.0, 2.5), tone_level(mix, hz, 3.5, 4.5)
        assert 20 * np.log10(under_speech / clear) <= at_most_db, hz
        assert tone_level(mix, hz, 6.5, 7.5) == pytest.approx(clear, rel=0.05)  # and comes back


def test_the_sfx_layer_must_match_the_dialogue():
    with pytest.raises(ValueError, match="sfx must be stereo"):
        mix_episode(np.zeros(100), np.zeros((100, 2)), sfx=np.zeros((90, 2)))


# ---------------------------------------------------------------------------------------------- files

def test_a_library_file_replaces_the_procedural_cue(tmp_path, layer):
    library_dir = tmp_path / "sounds" / "sfx"
    library_dir.mkdir(parents=True)
    write_tone(library_dir / "door.mp3", 1000, 0.6, codec="libmp3lame")
    (library_dir / "notes.txt").write_text("not a cue name: ignored")
    files = sfx_library_files(library_dir)
    assert files == {"door": library_dir / "door.mp3"}
    library = {cue: decode_audio_file(path) for cue, path in files.items()}
    result = render_sfx_layer(manifest_with([ACTION, "Victor waits.", "Maya freezes."]), LINES, library)
    door = next(p for p in result.placements if p.cue == "door")
    assert door.source == "file" and door.duration_s == pytest.approx(0.6, abs=0.01)
    assert {p.source for p in result.placements if p.cue != "door"} == {"procedural"}
    procedural_door = next(p for p in layer.placements if p.cue == "door")

    def level_1k(audio, placement):
        return tone_level(audio, 1000, placement.start_s + 0.1, placement.start_s + 0.5)

    assert level_1k(result.audio, door) > 10 * level_1k(layer.audio, procedural_door)


def test_two_files_for_one_cue_are_refused(tmp_path):
    write_tone(tmp_path / "knock.wav", 500, 0.2)
    write_tone(tmp_path / "knock.flac", 500, 0.2, codec="flac")
    with pytest.raises(AudioFileError, match=r"knock\.flac and .*knock\.wav: two files for the cue 'knock'"):
        sfx_library_files(tmp_path)


def test_a_corrupt_or_soundless_file_is_named_with_the_reason(tmp_path):
    corrupt = tmp_path / "knock.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 20)
    with pytest.raises(AudioFileError, match=re.escape(str(corrupt)) + r": cannot be decoded as audio \(Invalid data"):
        decode_audio_file(corrupt)
    silent_video = tmp_path / "door.mp4"
    write_video_without_audio(silent_video)
    with pytest.raises(AudioFileError, match=re.escape(str(silent_video)) + ": has no audio stream"):
        decode_audio_file(silent_video)
    with pytest.raises(AudioFileError, match="no such file"):
        decode_audio_file(tmp_path / "missing.wav")

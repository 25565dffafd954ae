"""The user's own music bed, and the full mix (dialogue, music, SFX) against the delivery targets."""

import numpy as np
import pytest

from microdrama_assets.media.audio_mix import (SAMPLE_RATE, decode_audio_file, delivery_loudness_problems,
                                               encode_delivery_mix, loop_to_length, music_bed_from_file, place_lines)
from microdrama_assets.media.hls import decode_audio, encode_audio_m4a
from microdrama_assets.media.manifest import FPS
from microdrama_assets.media.planner import plan_episode
from microdrama_assets.media.sfx import render_sfx_layer
from microdrama_assets.media.speech import synthesize

from .sfx_audio_files import write_tone


def window_rms(audio: np.ndarray, start_s: float, end_s: float, window_s: float = 0.05) -> np.ndarray:
    part = audio[round(start_s * SAMPLE_RATE) : round(end_s * SAMPLE_RATE), 0].astype(np.float64)
    window = round(window_s * SAMPLE_RATE)
    part = part[: len(part) // window * window].reshape(-1, window)
    return np.sqrt(np.mean(part**2, axis=1))


def dominant_hz(audio: np.ndarray) -> float:
    mono = audio[:, 0].astype(np.float64) * np.hanning(len(audio))
    spectrum = np.abs(np.fft.rfft(mono, n=8 * len(mono)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / (8 * len(mono)))


@pytest.mark.parametrize("codec, suffix", [("pcm_s16le", "wav"), ("libmp3lame", "mp3")])
def test_a_short_44k_music_file_is_resampled_and_looped_to_the_episode_length(tmp_path, codec, suffix):
    path = tmp_path / f"music.{suffix}"
    write_tone(path, 440, 1.5, rate=44100, codec=codec)
    bed = music_bed_from_file(path, 5 * SAMPLE_RATE)
    assert bed.dtype == np.float32 and bed.shape == (5 * SAMPLE_RATE, 2)
    # Played at 48 kHz without resampling, a 44.1 kHz file's 440 Hz would come out at 479 Hz.
    assert dominant_hz(bed[: 3 * SAMPLE_RATE]) == pytest.approx(440, abs=1.0)
    # Looped: the tone goes on past the file's 1.5 s with no hole at the seams, then fades out at the end.
    levels = window_rms(bed, 0.0, 3.5)
    steady = np.median(levels)
    assert steady > 0.1 and levels.min() > 0.5 * steady and levels.max() < 1.5 * steady
    assert window_rms(bed, 4.95, 5.0)[0] < 0.1 * steady


def test_a_long_music_file_is_trimmed_and_faded_at_the_end(tmp_path):
    path = tmp_path / "long.flac"
    write_tone(path, 220, 4.0, rate=48000, codec="flac")
    whole = decode_audio_file(path)
    bed = music_bed_from_file(path, 2 * SAMPLE_RATE)
    assert bed.shape == (2 * SAMPLE_RATE, 2)
    assert np.array_equal(bed[: SAMPLE_RATE // 4], whole[: SAMPLE_RATE // 4])  # the start as the user made it
    assert window_rms(bed, 1.95, 2.0)[0] < 0.1 * window_rms(bed, 0.0, 0.4).mean()


def test_loop_to_length_crossfades_uncorrelated_material_without_a_dip():
    noise = np.random.default_rng(4).standard_normal((SAMPLE_RATE * 2, 2)).astype(np.float32) * 0.1
    looped = loop_to_length(noise, 7 * SAMPLE_RATE)
    assert np.array_equal(looped[:SAMPLE_RATE], noise[:SAMPLE_RATE])
    levels = window_rms(looped, 0.0, 7.0, window_s=0.2)
    assert levels.min() > 0.75 * levels.max()  # equal-power seams: no hole, no bump


@pytest.fixture(scope="module")
def storm_episode(tmp_path_factory):
    """A planned three-shot episode with its dialogue placed as the voice stage does, its SFX layer, and a
    user music file for the bed."""
    manifest = plan_episode("A courier hears a knock at the door during the storm", "storm", shots=3, seed=3,
                            target_duration_s=12.0)
    dialogue = np.zeros(manifest.total_frames * SAMPLE_RATE // FPS, np.float32)
    lines = []
    for shot in manifest.shots:
        speeches = [synthesize(line.text, manifest.character(line.speaker).voice) for line in shot.dialogue]
        shot_start = manifest.start_frame(shot.id) * SAMPLE_RATE // FPS
        for speech, start_s in zip(speeches, place_lines(shot.frames, [s.duration_s for s in speeches])):
            offset = shot_start + round(start_s * SAMPLE_RATE)
            dialogue[offset : offset + len(speech.samples)] += speech.samples
            lines.append((offset / SAMPLE_RATE, offset / SAMPLE_RATE + speech.duration_s))
    music_path = tmp_path_factory.mktemp("music") / "bed.mp3"
    write_tone(music_path, 196, 2.5, rate=44100, codec="libmp3lame")
    return manifest, dialogue, lines, music_bed_from_file(music_path, len(dialogue))


def test_the_storm_episode_gets_its_knock_door_and_storm(storm_episode):
    manifest, _, lines, _ = storm_episode
    layer = render_sfx_layer(manifest, lines)
    hook = manifest.shots[0].id
    named = {p.cue for p in layer.placements if p.shot == hook} | {cue for cue, shot, _ in layer.skipped
                                                                   if shot == hook}
    assert {"knock", "door", "thunder", "rain", "whoosh"} <= named


def test_music_and_sfx_mix_meets_the_delivery_targets_after_aac(storm_episode, tmp_path):
    manifest, dialogue, lines, music = storm_episode
    layer = render_sfx_layer(manifest, lines)
    m4a = tmp_path / "mix.m4a"

    def encode(candidate):
        encode_audio_m4a(candidate, SAMPLE_RATE, m4a)
        return decode_audio(m4a)[0]

    mix = encode_delivery_mix(dialogue, music, encode, sfx=layer.audio)
    decoded, rate = decode_audio(m4a)
    assert rate == SAMPLE_RATE and decoded.shape[1] == 2 and abs(len(decoded) - len(mix)) < 2048
    loudness, true_peak, problems = delivery_loudness_problems(decoded, rate)
    assert problems == [], problems
    assert abs(loudness + 16) <= 1 and true_peak <= -1.0

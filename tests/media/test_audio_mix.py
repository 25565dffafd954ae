import time

import numpy as np
import pytest
from scipy.signal import resample_poly

from microdrama_assets.media.audio_mix import (
    MIX_CEILING_DBTP,
    delivery_loudness_problems,
    encode_delivery_mix,
    SAMPLE_RATE,
    DialogueDoesNotFit,
    measure_loudness,
    mix_episode,
    place_lines,
    render_music_bed,
)
from microdrama_assets.media.hls import decode_audio, encode_audio_m4a
from microdrama_assets.media.manifest import Mood, Voice
from microdrama_assets.media.speech import synthesize

FPS = 30


# ---------------------------------------------------------------------------------------------- place_lines

def check_placement(shot_frames, durations, starts, lead_in_s=0.35, gap_s=0.25, tail_s=0.3):
    assert len(starts) == len(durations)
    assert starts[0] >= lead_in_s - 1e-6
    for (start, duration), following in zip(zip(starts, durations), starts[1:]):
        assert following >= start + duration + gap_s - 1e-6  # in order, never overlapping
    end_of_shot = shot_frames / FPS
    assert starts[-1] + durations[-1] + tail_s <= end_of_shot + 1e-6
    # Callers round starts to samples: the last line must still end inside the shot's samples.
    last_sample = round(starts[-1] * SAMPLE_RATE) + round(durations[-1] * SAMPLE_RATE)
    assert last_sample <= shot_frames * SAMPLE_RATE // FPS


def test_lines_are_placed_in_order_inside_the_shot():
    starts = place_lines(150, [1.2, 0.8, 1.5])
    check_placement(150, [1.2, 0.8, 1.5], starts)


def test_random_dialogue_either_fits_properly_or_is_refused():
    rng = np.random.default_rng(3)
    for _ in range(300):
        shot_frames = int(rng.integers(30, 600))
        durations = list(rng.uniform(0.2, 4.0, int(rng.integers(1, 5))))
        try:
            starts = place_lines(shot_frames, durations)
        except DialogueDoesNotFit:
            needed = 0.35 + sum(durations) + 0.25 * (len(durations) - 1) + 0.3
            assert needed > shot_frames / FPS
        else:
            check_placement(shot_frames, durations, starts)


def test_exact_fit_is_accepted():
    durations = [1.0, 1.0]
    frames = round((0.35 + 2.0 + 0.25 + 0.3) * FPS)
    check_placement(frames, durations, place_lines(frames, durations))


def test_too_much_dialogue_names_needed_and_available_seconds():
    with pytest.raises(DialogueDoesNotFit, match=r"need 4\.90 s.*has 3\.00 s"):
        place_lines(90, [2.0, 2.0])


def test_no_lines_and_bad_durations():
    assert place_lines(60, []) == []
    with pytest.raises(ValueError, match="positive"):
        place_lines(60, [1.0, 0.0])


# ---------------------------------------------------------------------------------------------- music bed

SHOTS = [("tense", 3.0), ("tense", 2.5), ("warm", 3.0), ("eerie", 2.5)]


@pytest.fixture(scope="module")
def bed() -> np.ndarray:
    return render_music_bed(SHOTS, seed=11)


def test_bed_is_stereo_float32_of_the_episode_length(bed):
    assert bed.dtype == np.float32 and bed.shape == (11 * SAMPLE_RATE, 2)
    assert np.isfinite(bed).all() and np.abs(bed).max() < 1.0
    assert np.sqrt(np.mean(bed.astype(np.float64) ** 2)) > 0.02
    assert not np.allclose(bed[:, 0], bed[:, 1])  # a real stereo image, not dual mono


def test_bed_is_deterministic_per_seed(bed):
    assert np.array_equal(bed, render_music_bed(SHOTS, seed=11))
    other = render_music_bed(SHOTS, seed=12)
    assert np.abs(other - bed).mean() > 0.01


def spectrum(audio: np.ndarray) -> np.ndarray:
    mono = audio.mean(axis=1).astype(np.float64)
    power = np.abs(np.fft.rfft(mono[: 4 * SAMPLE_RATE])) ** 2
    bands = np.add.reduceat(power, np.geomspace(20, len(power) - 1, 40).astype(int))
    return np.log10(bands + 1e-9)


def test_every_mood_renders_and_moods_sound_different():
    spectra = {}
    for mood in Mood:
        audio = render_music_bed([(mood.value, 4.0)], seed=1)
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.02, mood
        spectra[mood] = spectrum(audio)
    assert np.abs(spectra[Mood.tense] - spectra[Mood.warm]).mean() > 0.3
    assert np.abs(spectra[Mood.eerie] - spectra[Mood.playful]).mean() > 0.3


def test_mood_change_crossfades_without_a_hole(bed):
    cut = round(5.5 * SAMPLE_RATE)  # tense -> warm
    window = SAMPLE_RATE // 10
    around_cut = [np.sqrt(np.mean(bed[c - window // 2 : c + window // 2].astype(np.float64) ** 2))
                  for c in range(cut - SAMPLE_RATE // 2, cut + SAMPLE_RATE // 2, window // 2)]
    steady = np.sqrt(np.mean(bed[SAMPLE_RATE : 4 * SAMPLE_RATE].astype(np.float64) ** 2))
    assert min(around_cut) > 0.3 * steady
    jumps = np.abs(np.diff(bed[cut - 100 : cut + 100], axis=0)).max()
    assert jumps < 0.1


def test_unknown_mood_is_named():
    with pytest.raises(ValueError, match="'jazzy'"):
        render_music_bed([("jazzy", 2.0)], seed=1)


def test_sixty_second_bed_renders_fast():
    moods = [(m.value, 7.5) for m in Mood]
    start = time.perf_counter()
    audio = render_music_bed(moods, seed=5)
    elapsed = time.perf_counter() - start
    assert len(audio) == 60 * SAMPLE_RATE
    assert elapsed < 2.0


# ---------------------------------------------------------------------------------------------- mix

def oversampled_peak_dbtp(stereo: np.ndarray) -> float:
    """An independent true-peak estimate: 8x oversampling."""
    return 20 * np.log10(np.abs(resample_poly(stereo.astype(np.float64), 8, 1, axis=0)).max())


@pytest.fixture(scope="module")
def episode() -> tuple[np.ndarray, np.ndarray]:
    voices = [Voice(variant="f2", pitch=62, rate=170), Voice(variant="m3", pitch=35, rate=150)]
    dialogue = np.zeros(11 * SAMPLE_RATE, np.float32)
    shot_start = 0
    for index, (text, (_, seconds)) in enumerate(zip(
            ["It is glowing.", "Then somebody knows.", "Run!", "..."], SHOTS)):
        speech = synthesize(text, voices[index % 2])
        start_s = place_lines(round(seconds * FPS), [speech.duration_s])[0]
        offset = shot_start + round(start_s * SAMPLE_RATE)
        dialogue[offset : offset + len(speech.samples)] += speech.samples
        shot_start += round(seconds * SAMPLE_RATE)
    return dialogue, render_music_bed(SHOTS, seed=11)


def test_mix_meets_the_loudness_and_true_peak_targets(episode):
    dialogue, music = episode
    mix = mix_episode(dialogue, music)
    assert mix.dtype == np.float32 and mix.shape == (len(dialogue), 2)
    loudness, true_peak = measure_loudness(mix)
    assert loudness == pytest.approx(-16.0, abs=1.0)
    assert true_peak <= -1.0
    assert oversampled_peak_dbtp(mix) <= -0.9


def test_hot_input_is_limited_and_other_targets_are_honoured(episode):
    dialogue, music = episode
    mix = mix_episode(np.clip(dialogue * 8, -1, 1), music * 4, target_lufs=-14.0, true_peak_dbtp=-2.0)
    loudness, true_peak = measure_loudness(mix)
    assert loudness == pytest.approx(-14.0, abs=1.0)
    assert true_peak <= -2.0


def tone_level(stereo: np.ndarray, hz: float, start_s: float, end_s: float) -> float:
    """Amplitude of one sine component in a stretch of the left channel (lock-in detection)."""
    part = stereo[int(start_s * SAMPLE_RATE) : int(end_s * SAMPLE_RATE), 0].astype(np.float64)
    t = np.arange(len(part)) / SAMPLE_RATE
    return 2 * abs(np.mean(part * np.exp(-2j * np.pi * hz * t)))


def test_music_ducks_under_dialogue_and_comes_back():
    seconds = 8
    t = np.arange(seconds * SAMPLE_RATE) / SAMPLE_RATE
    music = np.repeat((0.2 * np.sin(2 * np.pi * 110 * t))[:, None], 2, axis=1).astype(np.float32)
    # "Dialogue": a 2-4 kHz noise burst from 3 to 5 s, far from the music's 110 Hz.
    rng = np.random.default_rng(0)
    noise = np.diff(np.diff(rng.standard_normal(len(t) + 2))) * 0.1
    dialogue = np.where((t >= 3) & (t < 5), noise, 0).astype(np.float32)
    mix = mix_episode(dialogue, music)
    clear = tone_level(mix, 110, 1.0, 2.5)
    ducked = tone_level(mix, 110, 3.5, 4.5)
    after = tone_level(mix, 110, 6.5, 7.5)
    ducking_db = 20 * np.log10(ducked / clear)
    assert -15.0 < ducking_db < -9.0
    assert after == pytest.approx(clear, rel=0.05)
    # Smooth, not switched: halfway through the attack the music is part-way down.
    assert tone_level(mix, 110, 2.5, 2.9) > ducked * 1.5


def test_music_only_and_silence():
    music = render_music_bed([("warm", 3.0)], seed=2)
    loudness, _ = measure_loudness(mix_episode(np.zeros(len(music), np.float32), music))
    assert loudness == pytest.approx(-16.0, abs=1.0)
    silent = mix_episode(np.zeros(1000, np.float32), np.zeros((1000, 2), np.float32))
    assert not silent.any()
    assert measure_loudness(silent) == (-np.inf, -np.inf)


def test_measure_loudness_on_a_reference_tone():
    # EBU Tech 3341: a 1 kHz sine at -23 dBFS in both channels reads -23 LUFS.
    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    amplitude = 10 ** (-23 / 20)
    stereo = np.repeat((amplitude * np.sin(2 * np.pi * 997 * t))[:, None], 2, axis=1)
    loudness, true_peak = measure_loudness(stereo)
    assert loudness == pytest.approx(-23.0, abs=0.1)
    assert true_peak == pytest.approx(-23.0, abs=0.1)


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="music must be stereo"):
        mix_episode(np.zeros(100, np.float32), np.zeros((90, 2), np.float32))
    with pytest.raises(ValueError, match="dialogue must be mono"):
        mix_episode(np.zeros((100, 2), np.float32), np.zeros((100, 2), np.float32))


def test_the_encoded_mix_meets_the_delivery_targets_and_a_hot_one_is_named(episode, tmp_path):
    """What viewers hear is the AAC file: measured after encoding and decoding it, as the asset check does."""
    dialogue, music = episode
    ceilings = []

    def encode(candidate):
        ceilings.append(measure_loudness(candidate)[1])
        encode_audio_m4a(candidate, SAMPLE_RATE, tmp_path / "mix.m4a")
        return decode_audio(tmp_path / "mix.m4a")[0]

    # Dialogue with a hard click at its loudest: the kind of transient AAC overshoots.
    clicked = dialogue.copy()
    clicked[np.argmax(np.abs(clicked)) + np.arange(-2, 3)] *= np.array([1, -1, 1, -1, 1])
    mix = encode_delivery_mix(clicked, music, encode)
    assert ceilings[0] <= MIX_CEILING_DBTP + 0.05
    decoded, rate = decode_audio(tmp_path / "mix.m4a")
    assert rate == SAMPLE_RATE and decoded.shape[1] == 2 and abs(len(decoded) - len(mix)) < 2048
    loudness, true_peak, problems = delivery_loudness_problems(decoded, rate)
    assert problems == [] and abs(loudness + 16) <= 1 and true_peak <= -1.0

    hot = mix_episode(dialogue, music, target_lufs=-12.0, true_peak_dbtp=-0.1)
    encode_audio_m4a(hot, SAMPLE_RATE, tmp_path / "hot.m4a")
    _, _, problems = delivery_loudness_problems(*decode_audio(tmp_path / "hot.m4a"))
    assert any("outside -16.0 +/- 1.0" in p for p in problems) and any("dBTP above -1.0" in p for p in problems)
    _, _, problems = delivery_loudness_problems(decoded[:, :1], rate)
    assert problems == ["1 channel(s) at 48000 Hz; expected stereo at 48000 Hz"]

import threading

import numpy as np
import pytest

from microdrama_assets.media.audio_mix import SAMPLE_RATE
from microdrama_assets.media.manifest import Voice
from microdrama_assets.media.speech import Speech, VoiceNotFound, synthesize

MAYA = Voice(language="en-us", variant="f2", pitch=62, rate=170)
LINE = "I told you never to come back to this place again."


def median_f0(speech: Speech) -> float:
    """Median pitch (Hz) of the loud, voiced 40 ms frames, by autocorrelation."""
    frame = int(0.04 * speech.sample_rate)
    frames = speech.samples[: len(speech.samples) // frame * frame].reshape(-1, frame).astype(np.float64)
    rms = np.sqrt((frames**2).mean(axis=1))
    f0s = []
    for chunk in frames[rms > 0.3 * rms.max()]:
        chunk = chunk - chunk.mean()
        corr = np.fft.irfft(np.abs(np.fft.rfft(chunk, 2 * frame)) ** 2)[:frame]
        low, high = int(speech.sample_rate / 400), int(speech.sample_rate / 60)
        lag = low + int(np.argmax(corr[low:high]))
        if corr[lag] > 0.4 * corr[0]:
            f0s.append(speech.sample_rate / lag)
    assert f0s, "no voiced frames found"
    return float(np.median(f0s))


def longest_silence_s(speech: Speech) -> float:
    block = int(0.01 * speech.sample_rate)
    blocks = speech.samples[: len(speech.samples) // block * block].reshape(-1, block)
    quiet = np.sqrt((blocks.astype(np.float64) ** 2).mean(axis=1)) < 1e-3
    longest = run = 0
    for is_quiet in quiet:
        run = run + 1 if is_quiet else 0
        longest = max(longest, run)
    return longest * 0.01


def test_speech_is_audible_float32_mono_at_the_project_rate():
    speech = synthesize(LINE, MAYA)
    assert speech.sample_rate == SAMPLE_RATE == 48000
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert np.abs(speech.samples).max() <= 1.0
    assert np.sqrt(np.mean(speech.samples.astype(np.float64) ** 2)) > 0.02
    assert 1.5 < speech.duration_s < 6.0
    assert speech.duration_s == pytest.approx(len(speech.samples) / SAMPLE_RATE)


def test_duration_scales_with_text_length():
    short = synthesize("Run.", MAYA)
    medium = synthesize("Run, they are coming for us.", MAYA)
    long = synthesize("Run, they are coming for us, and they will not stop until they find the locket.", MAYA)
    assert short.duration_s < medium.duration_s < long.duration_s
    assert long.duration_s > 1.6 * medium.duration_s  # 16 words vs 6


def test_padding_silence_is_trimmed():
    speech = synthesize(LINE, MAYA)
    loud = np.flatnonzero(np.abs(speech.samples) > 0.01 * np.abs(speech.samples).max())
    assert loud[0] / SAMPLE_RATE < 0.03
    assert (len(speech.samples) - loud[-1]) / SAMPLE_RATE < 0.03


def test_phonemes_are_ordered_and_inside_the_audio():
    speech = synthesize(LINE, MAYA)
    phonemes = speech.phonemes
    assert len(phonemes) >= len(LINE.split())
    starts = np.array([p.start_s for p in phonemes])
    ends = np.array([p.end_s for p in phonemes])
    assert np.all(np.diff(starts) > 0)
    assert np.all(ends > starts)
    assert np.all(ends[:-1] <= starts[1:] + 1e-9)  # no overlaps
    assert starts[0] >= 0 and ends[-1] <= speech.duration_s
    assert starts[0] < 0.1 and ends[-1] > speech.duration_s - 0.3  # they span the speech
    assert all(p.symbol and "'" not in p.symbol and not p.symbol.startswith("_") for p in phonemes)


def test_phoneme_timing_matches_the_audio():
    # The phoneme events line up with the sound: the open vowel is louder than the closed-lip "m" before it.
    speech = synthesize("Ma, bob.", MAYA)
    symbols = [p.symbol for p in speech.phonemes]
    assert symbols[0] == "m" and "b" in symbols
    vowel = next(p for p in speech.phonemes if p.symbol.startswith("A") or p.symbol.startswith("a"))
    bilabial = speech.phonemes[0]

    def rms(p):
        part = speech.samples[int(p.start_s * SAMPLE_RATE) : int(p.end_s * SAMPLE_RATE)].astype(np.float64)
        return np.sqrt(np.mean(part**2))

    assert rms(vowel) > 1.5 * rms(bilabial)


def test_spanish_with_accents_and_enye():
    speech = synthesize("¿Dónde está mi corazón? Ñandú, pingüino.", Voice(language="es", variant="m3"))
    assert speech.duration_s > 1.0
    assert np.sqrt(np.mean(speech.samples.astype(np.float64) ** 2)) > 0.02
    symbols = {p.symbol for p in speech.phonemes}
    assert "n^" in symbols  # ñ was read as ñ, not as a mangled byte sequence
    assert "T" in symbols  # Castilian "z" in corazón


def test_pitch_rate_and_variant_are_applied():
    text = "The locket is glowing again tonight."
    low = synthesize(text, Voice(variant="m3", pitch=20, rate=170))
    high = synthesize(text, Voice(variant="m3", pitch=85, rate=170))
    assert median_f0(high) > 1.25 * median_f0(low)

    slow = synthesize(text, Voice(variant="m3", pitch=50, rate=110))
    fast = synthesize(text, Voice(variant="m3", pitch=50, rate=260))
    assert slow.duration_s > 1.6 * fast.duration_s

    man = synthesize(text, Voice(variant="m3", pitch=50, rate=170))
    woman = synthesize(text, Voice(variant="f2", pitch=50, rate=170))
    assert median_f0(woman) > 1.3 * median_f0(man)


def test_missing_language_is_named():
    with pytest.raises(VoiceNotFound, match="'zz'"):
        synthesize("hello", Voice(language="zz"))


def test_markup_is_spoken_as_text_not_obeyed():
    # As SSML this would insert a 3 s pause; as plain text espeak just reads the characters.
    speech = synthesize('Wait <break time="3s"/> here.', MAYA)
    assert longest_silence_s(speech) < 1.0
    plain = synthesize("Wait here.", MAYA)
    assert speech.duration_s > plain.duration_s  # the markup was read out, not dropped


def test_unpronounceable_line_is_a_silent_beat():
    speech = synthesize("...", MAYA)
    assert speech.duration_s > 0.2 and not np.any(speech.samples) and speech.phonemes == ()


def test_blank_text_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        synthesize(" \x00\n ", MAYA)


def test_concurrent_calls_do_not_mix_voices():
    # espeak-ng keeps its voice in global state; the module lock must keep each call's voice to itself.
    # (Output is not bit-exact between calls: espeak's pitch flutter carries over from earlier audio.)
    text = "Threads share one engine."
    voices = [Voice(variant="f2", pitch=75, rate=200), Voice(variant="m3", pitch=20, rate=120)]
    expected = [synthesize(text, v) for v in voices]
    results: dict[int, list[Speech]] = {0: [], 1: []}

    def speak(index: int) -> None:
        for _ in range(4):
            results[index].append(synthesize(text, voices[index]))

    threads = [threading.Thread(target=speak, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in (0, 1):
        assert len(results[index]) == 4
        for speech in results[index]:
            assert speech.duration_s == pytest.approx(expected[index].duration_s, rel=0.05)
            assert median_f0(speech) == pytest.approx(median_f0(expected[index]), rel=0.1)

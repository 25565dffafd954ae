import cv2
import numpy as np
import pytest

from microdrama_assets.media.audio_mix import SAMPLE_RATE
from microdrama_assets.media.lipsync import (MouthTrack, Viseme, draw_mouth, measure_lip_sync, mouth_opening_from_pixels,
                                             mouth_track, speech_envelope, viseme_for)
from microdrama_assets.media.manifest import Voice
from microdrama_assets.media.speech import Speech, synthesize

FPS = 30
START_S = 0.5


@pytest.fixture(scope="module")
def sentence() -> Speech:
    return synthesize("Maybe the locket knows where she went, but nobody will tell me.",
                      Voice(variant="f2", pitch=60, rate=165))


@pytest.fixture(scope="module")
def track(sentence) -> tuple[MouthTrack, np.ndarray, int]:
    n_frames = int((START_S + sentence.duration_s + 1.0) * FPS)
    envelope = speech_envelope(sentence.samples, sentence.sample_rate, n_frames, FPS, START_S)
    return mouth_track([(START_S, sentence)], n_frames, FPS), envelope, n_frames


def test_track_shapes_and_ranges(track):
    mouth, _, n_frames = track
    assert mouth.openness.shape == (n_frames,) and mouth.openness.dtype == np.float32
    assert mouth.visemes.shape == (n_frames,) and mouth.visemes.dtype == np.int8
    assert mouth.openness.min() >= 0.0 and mouth.openness.max() <= 1.0
    assert set(np.unique(mouth.visemes)) <= {int(v) for v in Viseme}


def test_openness_follows_the_speech_envelope(track):
    mouth, envelope, _ = track
    assert np.corrcoef(mouth.openness, envelope)[0, 1] >= 0.6
    speaking = envelope > 0
    # Also within the line, where it is not just "talking vs silent".
    assert np.corrcoef(mouth.openness[speaking], envelope[speaking])[0, 1] >= 0.6
    assert mouth.openness.max() > 0.6  # loud vowels open the mouth properly


def test_mouth_is_closed_and_resting_outside_speech(track, sentence):
    mouth, envelope, _ = track
    before = int(START_S * FPS)
    after = int(np.ceil((START_S + sentence.duration_s) * FPS))
    assert np.all(mouth.openness[:before] == 0) and np.all(mouth.openness[after:] == 0)
    assert np.all(mouth.visemes[:before] == Viseme.REST) and np.all(mouth.visemes[after:] == Viseme.REST)
    assert np.all(mouth.openness[envelope == 0] == 0)


def test_no_lag(track):
    mouth, envelope, _ = track
    lags = range(-3, 4)
    scores = [np.corrcoef(np.roll(mouth.openness, -lag), envelope)[0, 1] for lag in lags]
    assert lags[int(np.argmax(scores))] == 0

    # A vowel-initial line: the mouth opens on the frame the voice starts (or the one after).
    speech = synthesize("Oh, I always knew.", Voice(variant="m3", pitch=40, rate=160))
    n_frames = int((START_S + speech.duration_s + 0.5) * FPS)
    envelope = speech_envelope(speech.samples, speech.sample_rate, n_frames, FPS, START_S)
    mouth = mouth_track([(START_S, speech)], n_frames, FPS)
    onset = np.flatnonzero(envelope > 0.2 * envelope.max())[0]
    opened = np.flatnonzero(mouth.openness > 0.2)[0]
    assert abs(int(opened) - int(onset)) <= 1


def test_shapes_follow_the_phonemes(track):
    mouth, _, _ = track
    shapes = set(mouth.visemes.tolist())
    # m/b (maybe, nobody, me), o/w (knows, nobody, will), ee/e (she, tell, me), a/schwa (the, maybe)
    assert {Viseme.MBP, Viseme.ROUND, Viseme.WIDE, Viseme.OPEN} <= shapes
    closures = mouth.openness[mouth.visemes == Viseme.MBP]
    vowels = mouth.openness[mouth.visemes == Viseme.OPEN]
    assert closures.mean() < 0.3 * vowels.mean()


def test_viseme_table():
    assert viseme_for("m") == viseme_for("b") == viseme_for("p") == Viseme.MBP
    assert viseme_for("f") == viseme_for("v") == Viseme.FV
    assert viseme_for("T") == viseme_for("l") == Viseme.TH_L
    assert viseme_for("i:") == viseme_for("E") == Viseme.WIDE
    assert viseme_for("oU") == viseme_for("u:") == viseme_for("w") == Viseme.ROUND
    assert viseme_for("a") == viseme_for("aI") == Viseme.OPEN
    assert viseme_for("S") == viseme_for("tS") == Viseme.SIBILANT
    assert viseme_for("") == Viseme.REST


def test_two_lines_close_between_them(sentence):
    second_start = START_S + sentence.duration_s + 0.6
    n_frames = int((second_start + sentence.duration_s + 0.5) * FPS)
    mouth = mouth_track([(START_S, sentence), (second_start, sentence)], n_frames, FPS)
    gap = slice(int(np.ceil((START_S + sentence.duration_s) * FPS)), int(second_start * FPS))
    assert np.all(mouth.openness[gap] == 0)
    first_half = mouth.openness[: gap.start]
    second_half = mouth.openness[gap.stop :]
    assert first_half.max() > 0.5 and second_half.max() > 0.5


def test_speech_envelope_measures_rms_per_frame():
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    envelope = speech_envelope(tone, SAMPLE_RATE, 90, FPS, start_s=1.0)
    assert np.all(envelope[:30] == 0) and np.all(envelope[60:] == 0)
    assert envelope[31:59] == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def changed(openness: float, viseme: Viseme, width_px: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
    frame = np.full((400, 300, 3), (198, 140, 100), np.uint8)
    before = frame.copy()
    draw_mouth(frame, (150.4, 220.7), width_px, openness, int(viseme), (170, 60, 70))
    return frame, np.any(frame != before, axis=2)


def test_draw_mouth_touches_only_the_mouth_area():
    for viseme in Viseme:
        for openness in (0.0, 0.5, 1.0):
            _, mask = changed(openness, viseme)
            ys, xs = np.nonzero(mask)
            assert len(ys) > 0, (viseme, openness)
            assert np.all(np.abs(xs - 150.4) <= 0.75 * 80) and np.all(np.abs(ys - 220.7) <= 0.6 * 80)


def test_wider_opening_changes_more_pixels_and_shows_a_dark_interior():
    for viseme in (Viseme.OPEN, Viseme.WIDE, Viseme.ROUND, Viseme.OTHER):
        counts = [changed(openness, viseme)[1].sum() for openness in (0.0, 0.3, 0.6, 1.0)]
        assert counts == sorted(counts) and counts[-1] > 3 * counts[0], (viseme, counts)
    frame, _ = changed(1.0, Viseme.OPEN)
    assert frame[215:226, 140:160].min() < 70  # dark mouth interior below the skin tone


def test_teeth_show_for_wide_but_not_for_round():
    wide, _ = changed(0.8, Viseme.WIDE)
    round_, _ = changed(0.8, Viseme.ROUND)
    assert (wide.min(axis=2) > 220).sum() > 30
    assert (round_.min(axis=2) > 220).sum() == 0


def test_mouth_scales_with_width():
    small = changed(0.7, Viseme.OPEN, width_px=40)[1].sum()
    large = changed(0.7, Viseme.OPEN, width_px=80)[1].sum()
    assert 3 < large / small < 5  # area grows with the square of the width


def test_draw_mouth_off_frame_and_bad_input():
    frame = np.zeros((100, 100, 3), np.uint8)
    draw_mouth(frame, (-500.0, 50.0), 40, 1.0, int(Viseme.OPEN), (200, 80, 90))
    assert not frame.any()
    with pytest.raises(ValueError, match="uint8 RGB"):
        draw_mouth(np.zeros((100, 100), np.uint8), (50.0, 50.0), 40, 1.0, int(Viseme.OPEN), (200, 80, 90))


def _drawn_openings(mouth: MouthTrack, shift_frames: int = 0) -> np.ndarray:
    """Draw the track's mouth on a plain face, ``shift_frames`` late, and measure it back from the pixels."""
    openings = []
    for index in range(len(mouth.openness)):
        source = min(max(index - shift_frames, 0), len(mouth.openness) - 1)
        face = np.full((160, 200, 3), (198, 150, 120), np.uint8)
        draw_mouth(face, (100.0, 80.0), 60.0, float(mouth.openness[source]), int(mouth.visemes[source]), (150, 70, 70))
        openings.append(mouth_opening_from_pixels(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), (100.0, 80.0), 60.0))
    return np.array(openings)


def test_lip_sync_is_measured_from_the_picture(track):
    mouth, envelope, _ = track
    synced = measure_lip_sync("maya", _drawn_openings(mouth), envelope)
    assert synced.problem is None and synced.correlation >= 0.6 and synced.best_lag_frames == 0
    late = measure_lip_sync("maya", _drawn_openings(mouth, shift_frames=3), envelope)
    assert late.best_lag_frames == 3 and "+3 frames off the voice" in late.problem

    closed = MouthTrack(np.zeros_like(mouth.openness), np.full_like(mouth.visemes, int(Viseme.REST)))
    silent = measure_lip_sync("victor", _drawn_openings(closed), np.zeros_like(envelope))
    assert silent.speech_frames == 0 and silent.problem is None
    mouthing = measure_lip_sync("victor", _drawn_openings(mouth), np.zeros_like(envelope))
    assert "victor is silent but its mouth moves" in mouthing.problem
    with pytest.raises(ValueError, match="frames of picture"):
        measure_lip_sync("maya", np.zeros(3), np.zeros(4))

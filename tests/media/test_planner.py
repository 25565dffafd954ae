from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from microdrama_assets.media.manifest import FPS, Beat, Framing, Location, TimeOfDay, parse_manifest
from microdrama_assets.media.planner import BEATS, arc_beats, plan_episode

SAMPLES_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "loglines" / "samples.txt"
# Kept here too so the suite still covers the tricky shapes where the shared samples are not checked out.
BUILT_IN_SAMPLES = [
    "A barista discovers a mysterious locket that signals danger.",
    "Two rival food-truck owners get stuck in the same elevator on the day of the city festival.",
    '"Don\'t open the door," the text says — but it was sent from her own phone.',
    "Un cartero entrega una carta que todavía no ha sido escrita.",
]


def sample_loglines() -> list[str]:
    found = SAMPLES_FILE.read_text(encoding="utf-8").splitlines() if SAMPLES_FILE.is_file() else []
    lines = [line.strip() for line in found if line.strip()]
    return lines + [s for s in BUILT_IN_SAMPLES if s not in lines]


SAMPLES = sample_loglines()


def spoken_seconds(manifest, shot) -> float:
    """The dialogue estimate, written out independently of the planner's own helper."""
    if not shot.dialogue:
        return 0.0
    rates = {c.id: c.voice.rate for c in manifest.characters}
    speech = sum(max(1, len(re.findall(r"\w+(?:['-]\w+)*", line.text))) * 60 / rates[line.speaker]
                 for line in shot.dialogue)
    return 1.25 * (0.35 + speech + 0.25 * (len(shot.dialogue) - 1) + 0.3)


def check_manifest(manifest, shots: int, target_s: float = 30.0) -> None:
    # Survives a JSON round trip through the schema's own validation.
    again = parse_manifest(manifest.model_dump_json())
    assert again == manifest

    assert len(manifest.shots) == shots
    assert manifest.shot_ids == [f"s{i:02d}" for i in range(1, shots + 1)]
    beats = [s.beat.value for s in manifest.shots]
    assert beats[0] == "hook"
    if shots > 1:
        assert beats[-1] == "cliffhanger"
        assert beats.count("hook") == 1 and beats.count("cliffhanger") == 1
    assert [BEATS.index(b) for b in beats] == sorted(BEATS.index(b) for b in beats)

    assert 1 <= len(manifest.characters) <= 3
    character_ids = {c.id for c in manifest.characters}
    on_screen = {cid for s in manifest.shots for cid in s.characters}
    assert on_screen == character_ids  # nobody listed who never appears
    for shot in manifest.shots:
        assert shot.characters, shot.id
        for line in shot.dialogue:
            assert line.speaker in shot.characters
        assert len(shot.dialogue) <= 2
        assert shot.frames == pytest.approx(shot.duration_s * FPS, abs=1e-6)  # whole frames
        assert shot.frames >= math.ceil(spoken_seconds(manifest, shot) * FPS) - 1, shot.id
        assert shot.keyframes == (1 if shot.duration_s <= 2.0 else 3 if shot.duration_s >= 7.0 else 2)
        if shot.framing in (Framing.two_shot, Framing.over_shoulder):
            assert len(shot.characters) >= 2

    target_frames = min(round(target_s * FPS), shots * 20 * FPS)  # a shot lasts at most 20 s
    lengthened = [s for s in manifest.shots if s.frames == math.ceil(spoken_seconds(manifest, s) * FPS)]
    if manifest.total_frames != target_frames:
        assert manifest.total_frames > target_frames and lengthened

    # Distinct looks and voices.
    for field in ("outfit", "hair", "skin"):
        values = [getattr(c.appearance, field) for c in manifest.characters]
        assert len(set(values)) == len(values)
    voices = [(c.voice.variant, c.voice.pitch) for c in manifest.characters]
    assert len({v for v, _ in voices}) == len(voices) and len({p for _, p in voices}) == len(voices)


@pytest.mark.parametrize("shots", [1, 3, 6, 12])
@pytest.mark.parametrize("logline", SAMPLES)
def test_every_sample_gives_a_valid_manifest(logline: str, shots: int) -> None:
    manifest = plan_episode(logline, "ep-test", shots=shots, seed=7)
    check_manifest(manifest, shots)
    assert manifest.title and len(manifest.title) <= 60


def test_default_episode_is_six_shots_of_about_five_seconds() -> None:
    for logline in SAMPLES:
        manifest = plan_episode(logline, "ep1")
        assert len(manifest.shots) == 6
        assert manifest.total_frames >= 30 * FPS
        for shot in manifest.shots:
            assert 3.5 <= shot.duration_s <= 7.0, (logline, shot.id, shot.duration_s)
        assert len({s.frames for s in manifest.shots}) > 1  # varied, not a metronome


def test_many_shots_and_odd_targets_stay_valid() -> None:
    many = plan_episode(SAMPLES[0], "ep-many", shots=40)
    check_manifest(many, 40)
    assert all(s.duration_s >= 1.0 for s in many.shots)
    assert {b.value for b in arc_beats(40)} == set(BEATS)
    long_single = plan_episode(SAMPLES[0], "ep-one", shots=1, target_duration_s=12.0)
    assert long_single.total_frames == 12 * FPS


def test_arc_is_stretched_and_compressed_in_order() -> None:
    assert [b.value for b in arc_beats(6)] == BEATS
    assert arc_beats(2) == [Beat.hook, Beat.cliffhanger]
    assert arc_beats(3) == [Beat.hook, Beat.reveal, Beat.cliffhanger]
    for shots in range(1, 41):
        beats = arc_beats(shots)
        assert len(beats) == shots and beats[0] == Beat.hook
        assert [BEATS.index(b.value) for b in beats] == sorted(BEATS.index(b.value) for b in beats)
    with pytest.raises(ValueError):
        arc_beats(41)


def test_same_inputs_give_identical_json_and_other_seeds_differ() -> None:
    for logline in SAMPLES:
        first = plan_episode(logline, "ep1", shots=6, seed=11).model_dump_json()
        assert plan_episode(logline, "ep1", shots=6, seed=11).model_dump_json() == first
        assert plan_episode(logline, "ep1", shots=6, seed=12).model_dump_json() != first
    names = {tuple(c.name for c in plan_episode(SAMPLES[0], "ep1", seed=s).characters) for s in range(6)}
    assert len(names) > 1


def test_shot_count_does_not_rename_the_cast() -> None:
    six = plan_episode(SAMPLES[0], "ep1", shots=6, seed=3)
    twelve = plan_episode(SAMPLES[0], "ep1", shots=12, seed=3)
    assert [c.model_dump() for c in six.characters] == [c.model_dump() for c in twelve.characters]


@pytest.mark.parametrize("blank", ["", "   ", "\t\n", "\x00\x07 \x1b"])
def test_blank_logline_is_rejected(blank: str) -> None:
    with pytest.raises(ValueError, match="logline is empty"):
        plan_episode(blank, "ep1")


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        plan_episode(SAMPLES[0], "Bad ID,with comma")
    with pytest.raises(ValueError, match="shots"):
        plan_episode(SAMPLES[0], "ep1", shots=0)
    with pytest.raises(ValueError, match="seed"):
        plan_episode(SAMPLES[0], "ep1", seed=-1)
    with pytest.raises(ValueError, match="target_duration_s"):
        plan_episode(SAMPLES[0], "ep1", target_duration_s=float("nan"))


def test_control_characters_are_stripped_and_long_loglines_cut() -> None:
    manifest = plan_episode("A nurse\x07 finds\u202e a\x00 key.", "ep1")
    assert manifest.logline == "A nurse finds a key."
    long = plan_episode("A detective follows " + "a very long trail of clues " * 40, "ep1")
    assert len(long.logline) <= 500 and long.logline.endswith("…")


def test_protagonist_setting_and_props_come_from_the_logline() -> None:
    barista = plan_episode("A barista discovers a mysterious locket that signals danger.", "ep1")
    assert barista.shots[0].location == Location.cafe
    assert "barista" in barista.characters[0].description.lower()
    assert barista.shots[0].action.startswith(f"{barista.characters[0].name}, a barista, discovers")
    assert sum("locket" in s.action.lower() for s in barista.shots) >= 3
    assert any("locket" in line.text.lower() for s in barista.shots for line in s.dialogue)

    nurse = plan_episode("A night-shift nurse realizes the patient in room 9 checked out thirty years ago.", "ep1")
    assert nurse.shots[0].location == Location.hospital
    assert {s.time_of_day for s in nurse.shots} == {TimeOfDay.night}
    assert len(nurse.characters) == 2 and "patient" in nurse.characters[1].description.lower()
    assert nurse.title == "Room 9"

    rivals = plan_episode("Two rival food-truck owners get stuck in the same elevator on the day of the city "
                          "festival.", "ep1")
    assert [c.role for c in rivals.characters] == ["protagonist", "rival"]
    assert rivals.shots[0].location == Location.elevator
    assert set(rivals.shots[0].characters) == {c.id for c in rivals.characters}

    intern = plan_episode("An intern at a luxury hotel is mistaken for the heir of the family that owns it, and "
                          "decides not to correct anyone.", "ep1")
    assert intern.shots[0].location == Location.hotel
    assert intern.shots[0].action.startswith(f"{intern.characters[0].name}, an intern at a luxury hotel, is ")

    ghost = plan_episode("A ghostwriter finds her own obituary in the draft she was hired to finish.", "ep1")
    assert ghost.shots[0].location in (Location.office, Location.apartment)
    assert ghost.characters[0].voice.variant.startswith("f")  # "her"


def test_quoted_line_opens_the_episode() -> None:
    manifest = plan_episode('"Don\'t open the door," the text says — but it was sent from her own phone.', "ep1")
    assert manifest.shots[0].dialogue[0].text == "Don't open the door."
    assert manifest.title == "Don't Open the Door"
    assert manifest.shots[0].location == Location.apartment


def test_spanish_logline_plans_in_spanish() -> None:
    manifest = plan_episode("Un cartero entrega una carta que todavía no ha sido escrita.", "ep-es")
    assert manifest.language == "es"
    assert {c.voice.language for c in manifest.characters} == {"es"}
    assert manifest.shots[0].location == Location.street
    assert "cartero" in manifest.shots[0].action
    assert any("la carta" in line.text for s in manifest.shots for line in s.dialogue)
    english = plan_episode(SAMPLES[0], "ep-en")
    assert english.language == "en" and {c.voice.language for c in english.characters} == {"en-us"}


@pytest.mark.parametrize(
    "logline",
    [
        "她在自己正在代写的稿子里发现了自己的讣告。",
        "ممرضة ليلية تكتشف أن المريض في الغرفة 9 غادر قبل ثلاثين عامًا",
        "!!! ??? ... --- ***",
        "x",
        "The CEO's twin sisters swap lives — for one night only?!",
    ],
)
def test_any_logline_gives_a_valid_manifest(logline: str) -> None:
    check_manifest(plan_episode(logline, "ep-any", shots=6, seed=1), 6)

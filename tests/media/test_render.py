import numpy as np
import pytest

from microdrama_assets.media import render
from microdrama_assets.media.manifest import EpisodeManifest, Framing, Location, Mood, TimeOfDay
from microdrama_assets.media.render import RenderedKeyframe, render_keyframe
from microdrama_assets.media.storyboard import (
    FigurePose,
    KeyframePlan,
    head_geometry,
    keypoint_visibility,
    keypoints,
    plan_keyframes,
    render_pose_map,
)

from .cast import CHARACTERS

HEIGHT, WIDTH = 1920, 1080



def make_shot(**overrides) -> dict:
    shot = {
        "id": "s01", "beat": "turn", "duration_s": 3.0, "camera": "static", "action": "Nora turns to Omar and points.",
        "mood": "tense", "framing": "two_shot", "location": "cafe", "time_of_day": "night",
        "characters": ["nora", "omar"], "dialogue": [{"speaker": "nora", "text": "You knew."}], "keyframes": 2, "seed": 11,
    }  # fmt: skip
    shot.update(overrides)
    return shot


def make_manifest(*shots: dict) -> EpisodeManifest:
    return EpisodeManifest.model_validate({
        "episode_id": "render-test", "title": "Test", "logline": "A test.", "seed": 1,
        "characters": CHARACTERS, "shots": list(shots) or [make_shot()],
    })  # fmt: skip


def render_first(manifest: EpisodeManifest, index: int = 0) -> RenderedKeyframe:
    shot = manifest.shots[0]
    return render_keyframe(manifest, shot, plan_keyframes(shot, manifest)[index])


@pytest.fixture(scope="module")
def two_shot() -> tuple[EpisodeManifest, RenderedKeyframe]:
    manifest = make_manifest()
    return manifest, render_first(manifest)


def test_sizes_dtypes_and_masks(two_shot):
    _, keyframe = two_shot
    assert keyframe.image.shape == (HEIGHT, WIDTH, 3) and keyframe.image.dtype == np.uint8
    assert keyframe.background.shape == (HEIGHT, WIDTH, 3) and keyframe.background.dtype == np.uint8
    assert keyframe.character_mask.shape == (HEIGHT, WIDTH) and keyframe.character_mask.dtype == np.uint8
    assert set(np.unique(keyframe.character_mask)) <= {0, 255}
    assert set(keyframe.masks) == {"nora", "omar"}
    for mask in keyframe.masks.values():
        assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8
        assert (mask > 0).sum() > 10_000
        assert not (mask & ~keyframe.character_mask).any()  # visible parts lie inside the union
    # Away from the figures (and their floor shadows) the frame is exactly the background layer.
    diff = np.abs(keyframe.image.astype(int) - keyframe.background.astype(int)).max(axis=2)
    upper = slice(0, HEIGHT // 2)
    assert np.mean(diff[upper][keyframe.character_mask[upper] == 0] == 0) > 0.97
    assert diff[keyframe.character_mask > 0].mean() > 10


def test_same_input_gives_identical_bytes_and_another_seed_differs(two_shot):
    manifest, first = two_shot
    render._background_cached.cache_clear()  # recompute from scratch, not from the per-shot cache
    again = render_first(manifest)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.background.tobytes() == again.background.tobytes()
    assert [m.__dict__ for m in first.mouths] == [m.__dict__ for m in again.mouths]
    other = render_first(make_manifest(make_shot(seed=12)))
    assert other.image.tobytes() != first.image.tobytes()


def test_keyframes_of_a_shot_share_the_set_but_the_figures_move():
    manifest = make_manifest(make_shot(keyframes=3, action="Nora walks towards Omar and raises her hand."))
    shot = manifest.shots[0]
    plans = plan_keyframes(shot, manifest)
    assert [p.index for p in plans] == [0, 1, 2]
    frames = [render_keyframe(manifest, shot, plan) for plan in plans]
    assert frames[0].background.tobytes() == frames[2].background.tobytes()
    assert frames[0].image.tobytes() != frames[2].image.tobytes()
    start, end = (next(f for f in p.figures if f.character_id == "nora") for p in (plans[0], plans[-1]))
    assert end.x > start.x  # she walks towards Omar, who stands to her right
    assert end.arm_left + end.arm_right > start.arm_left + start.arm_right + 0.5  # and raises a hand


def test_speakers_face_each_other_in_two_shots():
    plan = plan_keyframes(make_manifest(make_shot(action="They talk quietly.")).shots[0])[0]
    left, right = sorted(plan.figures, key=lambda f: f.x)
    assert left.facing > 0.2 and right.facing < -0.2


def test_mouth_anchors_lie_on_the_face(two_shot):
    manifest, keyframe = two_shot
    plan = plan_keyframes(manifest.shots[0], manifest)[0]
    assert {m.character_id for m in keyframe.mouths} == {"nora", "omar"}
    for mouth in keyframe.mouths:
        pose = next(f for f in plan.figures if f.character_id == mouth.character_id)
        head = head_geometry(pose, WIDTH, HEIGHT)
        assert keyframe.masks[mouth.character_id][int(round(mouth.y)), int(round(mouth.x))] == 255
        assert abs(mouth.x - head.centre[0]) < head.half_width
        assert head.centre[1] < mouth.y < head.centre[1] + head.half_height  # below the eyes, above the chin
        assert 0.2 * head.half_width < mouth.width < head.half_width
        assert all(0 <= c <= 255 for c in mouth.lip_rgb)


def test_over_the_shoulder_back_has_no_mouth_and_the_speaker_has_one():
    manifest = make_manifest(make_shot(framing="over_shoulder"))
    plan = plan_keyframes(manifest.shots[0], manifest)[0]
    backs = [f.character_id for f in plan.figures if f.back_to_camera]
    assert backs == ["omar"]
    keyframe = render_first(manifest)
    assert [m.character_id for m in keyframe.mouths] == ["nora"]


@pytest.mark.parametrize("index, location", list(enumerate(Location)))
def test_every_location_renders(index, location):
    moods, times, framings = list(Mood), list(TimeOfDay), [Framing.wide, Framing.medium, Framing.two_shot]
    shot = make_shot(location=location.value, mood=moods[index % len(moods)].value, time_of_day=times[index % 3].value,
                     framing=framings[index % 3].value, characters=["nora", "omar", "lena"][: 1 + index % 3], seed=index)  # fmt: skip
    keyframe = render_first(make_manifest(shot))
    assert keyframe.background.astype(np.float32).std() > 15  # a designed set, not a flat fill
    quantised = (keyframe.background // 16).reshape(-1, 3).astype(int)
    assert len(np.unique(quantised @ [256, 16, 1])) > 50  # many distinct surfaces and lights
    assert (keyframe.character_mask > 0).mean() > 0.01


def test_every_mood_renders_with_its_own_palette():
    means = {}
    for mood in Mood:
        keyframe = render_first(make_manifest(make_shot(mood=mood.value, framing="wide", location="street", time_of_day="dusk")))
        assert keyframe.image.std() > 12
        means[mood] = keyframe.image.reshape(-1, 3).mean(axis=0)
    # Cold teal for tense, amber for warm, sickly green for eerie.
    assert means[Mood.warm][0] - means[Mood.warm][2] > means[Mood.tense][0] - means[Mood.tense][2] + 10
    assert means[Mood.eerie][1] > means[Mood.eerie][0] and means[Mood.eerie][1] > means[Mood.eerie][2]
    assert len({tuple(np.round(m)) for m in means.values()}) == len(Mood)


def test_close_up_figures_are_larger_than_wide_shot_figures():
    areas, heights = {}, {}
    for framing in ("wide", "medium", "close_up"):
        manifest = make_manifest(make_shot(framing=framing, characters=["nora"], dialogue=[]))
        keyframe = render_first(manifest)
        pose = plan_keyframes(manifest.shots[0], manifest)[0].figures[0]
        areas[framing] = (keyframe.masks["nora"] > 0).sum()
        heights[framing] = head_geometry(pose, WIDTH, HEIGHT).half_height
    assert areas["close_up"] > areas["medium"] > areas["wide"] * 3
    assert heights["close_up"] > 4 * heights["wide"]


def test_unknown_character_in_plan_is_rejected():
    manifest = make_manifest()
    stranger = FigurePose("zed", 0.5, 0.9, 0.4, 0.0, 0.0, 0.1, 0.1, 0)
    with pytest.raises(KeyError, match="zed"):
        render_keyframe(manifest, manifest.shots[0], KeyframePlan(0, (stranger,)))


def test_empty_shot_renders_the_set_alone():
    keyframe = render_first(make_manifest(make_shot(characters=[], dialogue=[], framing="wide", location="rooftop")))
    assert keyframe.masks == {} and keyframe.mouths == ()
    assert not keyframe.character_mask.any()


def test_pose_map_is_drawn_where_the_keypoints_are():
    plan = plan_keyframes(make_manifest(make_shot(framing="wide")).shots[0])[0]
    pose_map = render_pose_map(plan, WIDTH, HEIGHT)
    assert pose_map.shape == (HEIGHT, WIDTH, 3) and pose_map.dtype == np.uint8
    drawn = pose_map.max(axis=2) > 0
    for pose in plan.figures:
        points = keypoints(pose, WIDTH, HEIGHT)
        assert points.shape == (18, 2)
        for (x, y), seen in zip(points, keypoint_visibility(pose, WIDTH, HEIGHT)):
            if seen:
                assert pose_map[int(round(y)), int(round(x))].max() > 100
    assert 0.002 < drawn.mean() < 0.1  # skeletons on black, nothing else
    assert not drawn[:, :100].any() and not drawn[:100].any()


def test_keypoints_agree_with_the_rendered_figure():
    manifest = make_manifest(make_shot(framing="medium", characters=["omar"], dialogue=[]))
    keyframe = render_first(manifest)
    pose = plan_keyframes(manifest.shots[0], manifest)[0].figures[0]
    points = keypoints(pose, WIDTH, HEIGHT)
    seen = keypoint_visibility(pose, WIDTH, HEIGHT)
    on_figure = [keyframe.masks["omar"][int(y), int(x)] > 0 for (x, y), s in zip(points, seen) if s]
    assert len(on_figure) >= 10 and all(on_figure)


@pytest.mark.parametrize("framing", ["two_shot", "medium", "wide"])
def test_every_speaker_keeps_a_visible_mouth_while_gesturing(framing):
    shot = make_shot(framing=framing, keyframes=3, action="Nora points at Omar and reaches for the file.",
                     dialogue=[{"speaker": "nora", "text": "This."}, {"speaker": "omar", "text": "No."}])  # fmt: skip
    manifest = make_manifest(shot)
    for plan in plan_keyframes(manifest.shots[0], manifest):
        keyframe = render_keyframe(manifest, manifest.shots[0], plan)
        assert {m.character_id for m in keyframe.mouths} == {"nora", "omar"}

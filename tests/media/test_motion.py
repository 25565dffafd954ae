import cv2
import numpy as np
import pytest

from microdrama_assets.media.manifest import CameraMove
from microdrama_assets.media.motion import camera_zoom, keyframe_times, shot_frames, track_points

W, H = 1080, 1920


@pytest.fixture(scope="module")
def textured():
    rng = np.random.default_rng(7)
    return cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (0, 0), 5)


def test_frame_count_size_and_exact_keyframe_endpoints(textured):
    moved = np.roll(textured, 24, axis=1)
    frames = list(shot_frames([textured, moved], CameraMove.static, 31, seed=1))
    assert len(frames) == 31
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert np.abs(frames[0].astype(int) - textured).mean() < 0.5
    assert np.abs(frames[-1].astype(int) - moved).mean() < 0.5


def test_interpolation_follows_motion_not_a_crossfade(textured):
    moved = np.roll(textured, 24, axis=1)
    frames = list(shot_frames([textured, moved], CameraMove.static, 31, seed=1))
    middle = frames[15][200:-200, 200:-200].astype(int)
    halfway = np.roll(textured, 12, axis=1)[200:-200, 200:-200].astype(int)
    crossfade = ((textured.astype(int) + moved) / 2)[200:-200, 200:-200]
    assert np.abs(middle - halfway).mean() < 0.6 * np.abs(middle - crossfade).mean()


def test_push_in_magnifies_and_pan_translates(textured):
    pushed = list(shot_frames([textured], CameraMove.push_in, 10, seed=1))
    assert camera_zoom(CameraMove.push_in, 1.0, W, H, 1) > camera_zoom(CameraMove.push_in, 0.0, W, H, 1)
    # The centre stays put under a push-in, the edges move outwards.
    assert np.abs(pushed[-1][900:1020, 480:600].astype(int) - textured[900:1020, 480:600]).mean() < 40
    track = track_points([(W / 2 + 200, H / 2)], CameraMove.push_in, 10, W, H, 1)
    assert track[-1, 0] > track[0, 0] + 20
    pan = track_points([(W / 2, H / 2)], CameraMove.pan_right, 10, W, H, 1)
    assert abs(pan[-1, 0] - pan[0, 0]) > 30 and abs(pan[-1, 1] - pan[0, 1]) < 1


def test_handheld_is_deterministic_and_seeded(textured):
    a = track_points([(540, 960)], CameraMove.handheld, 20, W, H, 3)
    b = track_points([(540, 960)], CameraMove.handheld, 20, W, H, 3)
    c = track_points([(540, 960)], CameraMove.handheld, 20, W, H, 4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_keyframe_times_span_the_shot():
    assert keyframe_times(150, 1) == [0]
    assert keyframe_times(150, 2) == [0, 149]
    assert keyframe_times(150, 3) == [0, 74, 149] or keyframe_times(150, 3) == [0, 75, 149]


def test_in_betweens_of_rendered_poses_beat_a_crossfade():
    """Against the renderer's own in-between pose (storyboard poses interpolated), the flow-based in-between is
    closer than a cross-fade of the two keyframes."""
    from dataclasses import fields, replace

    from conftest import build_manifest
    from microdrama_assets.media.render import render_keyframe
    from microdrama_assets.media.storyboard import KeyframePlan, plan_keyframes

    manifest = build_manifest(shot_seconds=(3.0,))
    shot = manifest.shots[0].model_copy(update={"action": "Maya walks over and turns to Victor."})
    first, last = plan_keyframes(shot, manifest)
    halfway = KeyframePlan(first.index, tuple(
        replace(a, **{f.name: (getattr(a, f.name) + getattr(b, f.name)) / 2
                      for f in fields(a) if isinstance(getattr(a, f.name), float)})
        for a, b in zip(first.figures, last.figures)))
    key_a, key_b = (render_keyframe(manifest, shot, plan).image for plan in (first, last))
    truth = render_keyframe(manifest, shot, halfway).image.astype(int)
    middle = list(shot_frames([key_a, key_b], CameraMove.static, 3, seed=1))[1]
    crossfade = (key_a.astype(int) + key_b) / 2
    assert np.abs(middle.astype(int) - truth).mean() < 0.8 * np.abs(crossfade - truth).mean()

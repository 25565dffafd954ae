"""Parallax between the set and the character layer, and flow in-betweens without double images, on small
synthetic keyframes whose layers (plate, figure mask) are known exactly."""

import cv2
import numpy as np
import pytest

from microdrama_assets.media.manifest import CameraMove
from microdrama_assets.media.motion import (BACKGROUND_PARALLAX, HANDOVER_FRAMES, KeyframeLayers, camera_zoom,
                                            shot_frames, track_points)

W, H = 360, 640
FIGURE = np.array([205, 55, 40])  # the character's colour: nothing on the plate is near it
MARKER = np.array([40, 230, 60])  # bright green squares on the plate, for tracking the set
MOUTH = np.array([250, 225, 30])  # a yellow dot on the character, for tracking the character layer


def plate() -> np.ndarray:
    """A muted, textured set with green markers high on the wall (y 80) and on the floor (y 590)."""
    rng = np.random.default_rng(11)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (0, 0), 3)
    image = (noise * 0.25 + np.array([50, 75, 105])).astype(np.uint8)
    for x, y in ((40, 80), (320, 80), (40, 590)):
        image[y - 4:y + 4, x - 4:x + 4] = MARKER
    return image


def figure(background: np.ndarray, centre_x: int, feet_y: int = H, mouth: bool = False
           ) -> tuple[np.ndarray, KeyframeLayers]:
    """A keyframe with one figure standing on ``feet_y`` (the bottom edge by default: no feet in view)."""
    mask = np.zeros((H, W), np.uint8)
    top = feet_y - 420
    cv2.ellipse(mask, (centre_x, top + 45), (30, 40), 0, 0, 360, 255, -1)
    cv2.rectangle(mask, (centre_x - 40, top + 80), (centre_x + 40, feet_y - 1), 255, -1)
    image = background.copy()
    image[mask > 0] = FIGURE
    if mouth:
        cv2.circle(image, (centre_x, top + 55), 4, MOUTH.tolist(), -1)
    return image, KeyframeLayers(background, {"hero": mask})


def near(frame: np.ndarray, colour: np.ndarray, tolerance: int = 40) -> np.ndarray:
    return np.abs(frame.astype(int) - colour).max(axis=2) < tolerance


def centroid(selected: np.ndarray, window: tuple[slice, slice] = (slice(None), slice(None))) -> np.ndarray:
    ys, xs = np.nonzero(selected[window])
    return np.array([xs.mean() + (window[1].start or 0), ys.mean() + (window[0].start or 0)])


def marker_at(frame: np.ndarray, x: float, y: float, reach: int = 40) -> np.ndarray:
    window = (slice(max(int(y) - reach, 0), int(y) + reach), slice(max(int(x) - reach, 0), int(x) + reach))
    return centroid(near(frame, MARKER), window)


@pytest.fixture(scope="module")
def set_plate():
    return plate()


def test_a_pan_moves_the_set_less_than_the_characters(set_plate):
    image, layers = figure(set_plate, 180)
    frames = list(shot_frames([image], CameraMove.pan_right, 9, seed=1, layers=[layers]))
    figure_travel = centroid(near(frames[-1], FIGURE)) - centroid(near(frames[0], FIGURE))
    wall_travel = marker_at(frames[-1], *marker_at(frames[0], 40, 80)) - marker_at(frames[0], 40, 80)
    assert abs(figure_travel[0]) > 20 and abs(figure_travel[1]) < 0.5
    assert wall_travel[0] == pytest.approx(BACKGROUND_PARALLAX * figure_travel[0], abs=1.0)
    # What the figure uncovers is the plate: no smear or halo of the figure's colour is left behind.
    area = near(frames[0], FIGURE).sum()
    assert all(abs(near(f, FIGURE).sum() - area) < 0.02 * area for f in frames)


def test_a_push_in_magnifies_the_characters_more_than_the_set(set_plate):
    image, layers = figure(set_plate, 180)
    first, last = list(shot_frames([image], CameraMove.push_in, 9, seed=1, layers=[layers]))[::8]

    def wall_span(frame):
        return marker_at(frame, 320, 80)[0] - marker_at(frame, 40, 80)[0]

    character_zoom = camera_zoom(CameraMove.push_in, 1.0, W, H, 1) / camera_zoom(CameraMove.push_in, 0.0, W, H, 1)
    # The figure runs off the bottom of the frame, so measure its top against the frame centre.
    top_first, top_last = (np.flatnonzero(near(f, FIGURE).any(axis=1))[0] for f in (first, last))
    assert (H / 2 - top_last) / (H / 2 - top_first) == pytest.approx(character_zoom, abs=0.02)
    set_zoom = wall_span(last) / wall_span(first)
    assert set_zoom == pytest.approx(1 + BACKGROUND_PARALLAX * (character_zoom - 1), abs=0.02)
    assert character_zoom - set_zoom > 0.04


def test_the_floor_at_the_feet_moves_with_the_characters(set_plate):
    """Feet in view: the floor beside them moves with the figure (no sliding), the wall above moves less."""
    image, layers = figure(set_plate, 180, feet_y=600)
    frames = list(shot_frames([image], CameraMove.pan_left, 9, seed=1, layers=[layers]))
    figure_travel = centroid(near(frames[-1], FIGURE)) - centroid(near(frames[0], FIGURE))
    floor_start, wall_start = marker_at(frames[0], 40, 590), marker_at(frames[0], 40, 80)
    floor_travel = marker_at(frames[-1], *floor_start) - floor_start
    wall_travel = marker_at(frames[-1], *wall_start) - wall_start
    assert abs(figure_travel[0]) > 20
    assert floor_travel[0] == pytest.approx(figure_travel[0], abs=1.0)
    assert wall_travel[0] == pytest.approx(BACKGROUND_PARALLAX * figure_travel[0], abs=1.0)


@pytest.mark.parametrize("camera", [CameraMove.static, CameraMove.push_in])
@pytest.mark.parametrize("n_frames", [1, 2, 17, 31])
@pytest.mark.parametrize("n_keyframes", [1, 2, 3])
def test_exact_frame_count_and_cuts_on_the_keyframes(set_plate, camera, n_frames, n_keyframes):
    keyframes = [figure(set_plate, 130 + 40 * k) for k in range(n_keyframes)]
    frames = list(shot_frames([k[0] for k in keyframes], camera, n_frames, seed=2, layers=[k[1] for k in keyframes]))
    assert len(frames) == n_frames
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    if camera is CameraMove.static:
        # The shot opens on its first keyframe and cuts away on its last, as composed.
        assert np.abs(frames[0].astype(int) - keyframes[0][0]).mean() < 0.5
        if n_frames > 1:
            assert np.abs(frames[-1].astype(int) - keyframes[-1][0]).mean() < 0.5


def test_a_static_shot_stays_static(set_plate):
    image, layers = figure(set_plate, 180, feet_y=600)
    frames = list(shot_frames([image, image], CameraMove.static, 12, seed=3, layers=[layers, layers]))
    assert all(np.array_equal(f, frames[0]) for f in frames)
    assert np.abs(frames[0].astype(int) - image).max() <= 2


@pytest.mark.parametrize("camera", [CameraMove.pan_right, CameraMove.push_in, CameraMove.handheld])
def test_the_mouth_track_follows_the_character_layer(set_plate, camera):
    """A mark on the character, moving between keyframes and through the camera move, is where ``track_points``
    (what the shot_clip asset writes for lip sync) says it is on every frame."""
    keyframes = [figure(set_plate, x, mouth=True) for x in (130, 210)]
    n_frames = 31
    frames = list(shot_frames([k[0] for k in keyframes], camera, n_frames, seed=5, layers=[k[1] for k in keyframes]))
    top = H - 420
    track = track_points([(130, top + 55), (210, top + 55)], camera, n_frames, W, H, 5)
    for index in range(0, n_frames, 3):
        x, y = track[index]
        window = (slice(int(y) - 12, int(y) + 12), slice(int(x) - 12, int(x) + 12))
        assert np.linalg.norm(centroid(near(frames[index], MOUTH, 60), window) - track[index]) < 2.0, index


def test_output_is_deterministic(set_plate):
    keyframes = [figure(set_plate, x, feet_y=600) for x in (140, 220)]
    runs = [list(shot_frames([k[0] for k in keyframes], CameraMove.handheld, 15, seed=9,
                             layers=[k[1] for k in keyframes])) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def double_image(frame: np.ndarray, background: np.ndarray, figure_area: int) -> tuple[float, float]:
    """(pixels neither the set nor the figure, area of figure colour), as fractions of the figure's area: a
    figure shown twice half-transparent has many of the first and little of the second."""
    mixed = ~near(frame, background, 25) & ~near(frame, FIGURE, 25)
    return mixed.sum() / figure_area, near(frame, FIGURE, 25).sum() / figure_area


def test_a_walking_figure_is_never_a_double_image(set_plate):
    """The figure walks its own width between keyframes (the flow cannot find that alone). Every in-between
    shows one solid figure where a cross-fade shows two ghosts."""
    (start, layers_a), (end, layers_b) = figure(set_plate, 120), figure(set_plate, 200)
    area = int((layers_a.character_masks["hero"] > 0).sum())
    frames = list(shot_frames([start, end], CameraMove.static, 31, seed=1, layers=[layers_a, layers_b]))
    for frame in frames:
        mixed, solid = double_image(frame, set_plate, area)
        assert mixed < 0.05 and solid == pytest.approx(1.0, abs=0.05)
    middle = near(frames[15], FIGURE, 25).astype(np.uint8)
    assert cv2.connectedComponents(middle)[0] - 1 == 1
    assert centroid(middle > 0)[0] == pytest.approx(160, abs=1.5)
    # The measure does see a double image: a cross-fade of the two keyframes fails it.
    crossfade = ((start.astype(int) + end) // 2).astype(np.uint8)
    mixed, solid = double_image(crossfade, set_plate, area)
    assert mixed > 0.5 and solid < 0.5


def test_a_change_the_flow_cannot_follow_is_handed_over_in_a_few_frames(set_plate):
    """A patch that changes colour in place (a head turn, say): it shows as one colour or the other, never a
    half-and-half mix except for a couple of frames of dissolve, and never on the middle frame."""
    image, layers = figure(set_plate, 180)
    before, after = image.copy(), image.copy()
    before[300:340, 160:200] = (30, 30, 200)
    after[300:340, 160:200] = (240, 240, 240)
    frames = list(shot_frames([before, after], CameraMove.static, 31, seed=1, layers=[layers, layers]))
    patch = [f[320, 180].astype(int) for f in frames]
    mixed = [i for i, p in enumerate(patch)
             if np.abs(p - before[320, 180]).max() > 20 and np.abs(p - after[320, 180]).max() > 20]
    assert len(mixed) <= HANDOVER_FRAMES - 1 and 15 not in mixed


def test_the_renderers_layers_give_its_keyframe_back():
    """The character layer of a rendered two-shot (the figures' masks, plus what they add to the plate around
    them: anti-aliased edges, rim light, contact shadows) over the plate recomposes the keyframe: nothing is
    lost before the camera moves the layers apart."""
    from conftest import build_manifest

    from microdrama_assets.media.render import render_keyframe
    from microdrama_assets.media.storyboard import plan_keyframes

    manifest = build_manifest(shot_seconds=(2.0, 2.0))
    shot = manifest.shots[1]
    rendered = render_keyframe(manifest, shot, plan_keyframes(shot, manifest)[0])
    layers = KeyframeLayers(rendered.background, rendered.masks)
    frame = next(shot_frames([rendered.image], CameraMove.static, 1, seed=1, layers=[layers]))
    assert (np.abs(frame.astype(int) - rendered.image).max(axis=2) > 3).mean() < 1e-4

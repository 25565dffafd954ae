"""Shot motion: optical-flow interpolation between keyframes, seen through the shot's camera move with 2D parallax.

Given each keyframe's layers (the set plate without the characters, and every character's mask), a frame is two
layers. The characters (their masks, plus what they add to the set around them: edges, rim light, shadows) are
flow-interpolated between keyframes and carried by the full camera move. The set behind them is carried by a
smaller share of the move (it is further away), except the floor just behind the characters' feet, which recedes
from their depth to the set's so feet do not slide on it. Whatever the characters uncover is on the plate.
Without layers the whole keyframe is interpolated and moved as one.

Flow is estimated once per keyframe pair (both directions, at quarter resolution). An in-between frame is the
nearer keyframe warped along the flow, both keyframes only during a short handover, then composited, all at full
resolution. The camera move and the flow warp are folded into the same sampling maps, so a frame costs the same
whatever the move. Frames are yielded one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from .manifest import FPS, CameraMove

FLOW_SCALE = 4  # flow and sampling maps are computed at 1/4 resolution, then upsampled
HANDOVER_FRAMES = 3  # frames over which the later keyframe's warp takes over from the earlier one
OCCLUSION_SIGMA_PX = 1.0  # forward/backward disagreement (low-res pixels) at which a source's weight drops to 1/e
BACKGROUND_PARALLAX = 0.6  # share of the camera's travel and push that the set behind the characters shows
FLOOR_RAMP = 0.25  # of the frame height: the floor this far above the feet recedes from their depth to the set's
COVERAGE_THRESHOLD = 3  # grey levels by which a keyframe differs from its plate where a character touches the set
FARNEBACK = dict(pyr_scale=0.5, levels=4, winsize=21, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


@dataclass(frozen=True)
class KeyframeLayers:
    """What a keyframe is composed of, for parallax."""

    background: np.ndarray  # (H, W, 3) uint8 RGB: the set plate alone, no characters in it
    character_masks: Mapping[str, np.ndarray] = field(default_factory=dict)  # (H, W) uint8 0/255 visible regions


@dataclass(frozen=True)
class FlowPair:
    forward: np.ndarray  # (h, w, 2) low-res flow keyframe a -> b, in low-res pixels
    backward: np.ndarray  # (h, w, 2) flow b -> a
    forward_confidence: np.ndarray  # (h, w) in (0, 1]: 1 where a's pixel is visible in b
    backward_confidence: np.ndarray


def _small(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.resize(image, (width // FLOW_SCALE, height // FLOW_SCALE), interpolation=cv2.INTER_AREA)


def _sample(field: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _flow_gray(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Low-res grey image the flow is estimated on, and the low-res coverage (0..1) when ``image`` is RGBA.
    Outside the coverage the image is flattened to mid grey: the still set behind must not hold back the flow
    of the characters moving over it."""
    small = _small(image)
    if image.shape[2] == 3:
        return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), None
    gray = cv2.cvtColor(small, cv2.COLOR_RGBA2GRAY)
    coverage = small[..., 3].astype(np.float32) / 255.0
    return (gray * coverage + 128.0 * (1.0 - coverage)).astype(np.uint8), coverage


def _spread_flow(flow: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """The flow of the covered pixels carried out past their edge (normalised convolution), so a pixel that a
    character moves into takes that character's motion rather than the still set's."""
    sigma = max(coverage.shape) / 24.0
    weighted = cv2.GaussianBlur(flow * coverage[..., None], (0, 0), sigma)
    total = cv2.GaussianBlur(coverage, (0, 0), sigma)
    spread = weighted / np.maximum(total, 1e-6)[..., None]
    return (coverage[..., None] * flow + (1.0 - coverage[..., None]) * spread).astype(np.float32)


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()], dtype=np.float32)


def _shift_guess(masks_from: Mapping[str, np.ndarray], masks_to: Mapping[str, np.ndarray],
                 shape: tuple[int, int]) -> np.ndarray:
    """Low-res starting flow: each character's mask displacement (centroid shift) over its own pixels, carried
    outwards. A figure walking across the frame moves further than the flow's pyramid finds on its own."""
    guess = np.zeros(shape + (2,), np.float32)
    covered = np.zeros(shape, np.float32)
    for character_id, mask in masks_from.items():
        small_from = _small(mask) > 127
        small_to = _small(masks_to[character_id]) > 127 if character_id in masks_to else None
        if small_to is None or not small_from.any() or not small_to.any():
            continue
        guess[small_from] = _centroid(small_to) - _centroid(small_from)
        covered[small_from] = 1.0
    return _spread_flow(guess, covered)


def estimate_flow(image_a: np.ndarray, image_b: np.ndarray, masks_a: Mapping[str, np.ndarray] | None = None,
                  masks_b: Mapping[str, np.ndarray] | None = None) -> FlowPair:
    """Flow both ways between two keyframes (RGB, or RGBA whose alpha marks the moving layer) with the
    forward/backward consistency of each direction. Character masks, when given, seed the flow with each
    character's displacement."""
    gray_a, coverage_a = _flow_gray(image_a)
    gray_b, coverage_b = _flow_gray(image_b)
    grid_x, grid_y = _grid(gray_a.shape)

    def refined(gray_from: np.ndarray, gray_to: np.ndarray, guess: np.ndarray) -> np.ndarray:
        # Only the motion left after the guess is estimated (on the target warped back by it): Farneback finds
        # no motion where the image is flat, and there the guess stands instead of dropping to zero.
        warped_to = _sample(gray_to, grid_x + guess[..., 0], grid_y + guess[..., 1])
        residual = cv2.calcOpticalFlowFarneback(gray_from, warped_to, None, **FARNEBACK)
        return residual + _sample(guess, grid_x + residual[..., 0], grid_y + residual[..., 1])

    if masks_a is not None and masks_b is not None:
        forward = refined(gray_a, gray_b, _shift_guess(masks_a, masks_b, gray_a.shape))
        backward = refined(gray_b, gray_a, _shift_guess(masks_b, masks_a, gray_b.shape))
    else:
        forward = cv2.calcOpticalFlowFarneback(gray_a, gray_b, None, **FARNEBACK)
        backward = cv2.calcOpticalFlowFarneback(gray_b, gray_a, None, **FARNEBACK)
    if coverage_a is not None and coverage_b is not None:
        forward, backward = _spread_flow(forward, coverage_a), _spread_flow(backward, coverage_b)

    def confidence(flow: np.ndarray, reverse: np.ndarray) -> np.ndarray:
        # A pixel whose round trip a -> b -> a does not come home was occluded: trust the other keyframe there.
        landed = _sample(reverse, grid_x + flow[..., 0], grid_y + flow[..., 1])
        error = np.linalg.norm(flow + landed, axis=2)
        return np.exp(-((error / OCCLUSION_SIGMA_PX) ** 2)).astype(np.float32) + 1e-3

    return FlowPair(forward, backward, confidence(forward, backward), confidence(backward, forward))


def _grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    height, width = shape[:2]
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def blend_weight(frames_to_middle: float) -> float:
    """How much of the later keyframe to show ``frames_to_middle`` frames before the middle of a keyframe pair
    (negative after it), where both warps are equally reliable. Both warps follow the flow all along; where they
    still disagree (a head turn, a limb crossing a flat colour) any 50/50 mix reads as a double exposure, so the
    later keyframe takes over in a dissolve of a few frames, complete at the middle frame."""
    return ease(float(np.clip(1.0 - frames_to_middle / HANDOVER_FRAMES, 0.0, 1.0)))


def ease(t: float) -> float:
    """Smoothstep: figures accelerate out of one pose and settle into the next."""
    return t * t * (3.0 - 2.0 * t)


def camera_matrix(move: CameraMove, progress: float, width: int, height: int, seed: int,
                  duration_s: float = 1.0, parallax: float = 1.0) -> np.ndarray:
    """2x3 affine taking output pixel coordinates to source (keyframe) coordinates at ``progress`` in [0, 1] of
    a shot lasting ``duration_s`` (hand-held shake runs in real seconds, whatever the shot's length).
    ``parallax`` is the share of the move's travel and push a layer shows: 1 for the characters, less for the
    set behind them, as a real camera's move displaces far things less. Roll is the same at every depth."""
    p = ease(progress)
    zoom, shift_x, shift_y, angle = 1.0, 0.0, 0.0, 0.0
    # Moves that translate keep a zoom margin so the frame never shows past the keyframe's edge.
    margin = 0.08
    if move is CameraMove.push_in:
        zoom = 1.0 + 0.14 * p * parallax
    elif move is CameraMove.pull_out:
        zoom = 1.0 + 0.14 * (1.0 - p) * parallax
    elif move in (CameraMove.pan_left, CameraMove.pan_right):
        zoom = 1.0 + margin
        travel = (p - 0.5) * width * margin * 0.9 * parallax
        shift_x = -travel if move is CameraMove.pan_left else travel
    elif move in (CameraMove.tilt_up, CameraMove.tilt_down):
        zoom = 1.0 + margin
        travel = (p - 0.5) * height * margin * 0.9 * parallax
        shift_y = -travel if move is CameraMove.tilt_up else travel
    elif move is CameraMove.handheld:
        zoom = 1.05
        phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, 4)
        time_s = progress * duration_s
        # Sum of incommensurate sines: smooth, aperiodic drift like a hand-held camera.
        shift_x = parallax * (9.0 * np.sin(2 * np.pi * 0.7 * time_s + phases[0])
                              + 4.0 * np.sin(2 * np.pi * 1.9 * time_s + phases[1]))
        shift_y = parallax * (7.0 * np.sin(2 * np.pi * 0.5 * time_s + phases[2])
                              + 3.0 * np.sin(2 * np.pi * 2.3 * time_s + phases[3]))
        angle = 0.35 * np.sin(2 * np.pi * 0.4 * time_s + phases[1])
    centre = (width / 2.0, height / 2.0)
    # getRotationMatrix2D maps source -> output; invert it to sample the source for each output pixel.
    forward = cv2.getRotationMatrix2D(centre, float(angle), float(zoom))
    forward[:, 2] += (shift_x * zoom, shift_y * zoom)
    return cv2.invertAffineTransform(forward)


def _apply_affine(matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (
        (matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]).astype(np.float32),
        (matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]).astype(np.float32),
    )


def keyframe_times(n_frames: int, n_keyframes: int) -> list[int]:
    """Frame index of each keyframe: the first and last frames, the rest evenly between."""
    if n_keyframes == 1:
        return [0]
    return [round(k * (n_frames - 1) / (n_keyframes - 1)) for k in range(n_keyframes)]


def segment_position(frame: int, times: Sequence[int]) -> tuple[int, float]:
    """(index of the keyframe pair, eased blend factor) for a frame of the shot."""
    if len(times) == 1:
        return 0, 0.0
    for pair in range(len(times) - 1):
        if frame <= times[pair + 1]:
            span = max(times[pair + 1] - times[pair], 1)
            return pair, ease((frame - times[pair]) / span)
    return len(times) - 2, 1.0


def character_layer(image: np.ndarray, layers: KeyframeLayers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The characters as three uint8 images warped together: the keyframe with their masks as alpha (RGBA), and
    outside the masks what they add to the set (anti-aliased edges, rim light) and take from it (contact
    shadows). Those two land on whatever part of the set ends up beneath, so no piece of the set travels with
    the characters (no halo of it around a figure)."""
    inside = np.zeros(image.shape[:2], bool)
    for mask in layers.character_masks.values():
        inside |= mask > 0
    outside = ~inside[..., None]
    lift = np.where(outside, cv2.subtract(image, layers.background), 0)
    shade = np.where(outside, cv2.subtract(layers.background, image), 0)
    return np.dstack([image, inside.astype(np.uint8) * 255]), lift, shade


def _flow_view(image: np.ndarray, layers: KeyframeLayers) -> np.ndarray:
    """(H, W, 4) uint8: the keyframe with an alpha over everything the characters cover or touch, which is what
    the flow of the character layer is estimated on and spread out from."""
    covered = np.abs(image.astype(np.int16) - layers.background).max(axis=2) > COVERAGE_THRESHOLD
    for mask in layers.character_masks.values():
        covered |= mask > 0
    return np.dstack([image, covered.astype(np.uint8) * 255])


def ground_line(layers: Sequence[KeyframeLayers], height: int) -> float | None:
    """Highest row at which a character stands on the floor in any keyframe (the bottom of a figure that does not
    run off the frame), or None when no feet are in view."""
    contacts = []
    for keyframe in layers:
        for mask in keyframe.character_masks.values():
            rows = np.flatnonzero(mask.any(axis=1))
            if rows.size and rows[-1] < height - 2:
                contacts.append(int(rows[-1]))
    return float(min(contacts)) if contacts else None


def background_source(near_x: np.ndarray, near_y: np.ndarray, far_x: np.ndarray, far_y: np.ndarray,
                       ground_y: float | None, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the set is sampled: at the set's depth, except the floor from the feet down, which is at the
    characters' depth, and the floor just above them, which recedes smoothly between the two."""
    if ground_y is None:
        return far_x, far_y
    ramp = FLOOR_RAMP * height
    nearness = np.clip((near_y - (ground_y - ramp)) / ramp, 0.0, 1.0)
    nearness = nearness * nearness * (3.0 - 2.0 * nearness)
    return far_x + nearness * (near_x - far_x), far_y + nearness * (near_y - far_y)


class _Tween:
    """Flow interpolation of a shot's keyframes. Each keyframe is a tuple of images sampled together (a picture,
    or the arrays of a layer); the flow is estimated on ``flow_images`` (RGB, or RGBA whose alpha is the part
    that moves), seeded by the characters' ``masks`` when given."""

    def __init__(self, sources: Sequence[tuple[np.ndarray, ...]], times: Sequence[int],
                 flow_images: Sequence[np.ndarray], masks: Sequence[Mapping[str, np.ndarray]] | None = None):
        self.sources, self.times, self.flow_images, self.masks = sources, times, flow_images, masks
        self.flows: dict[int, FlowPair] = {}  # only the current pair: a shot walks through its pairs in order

    def frame(self, frame_index: int, src_x: np.ndarray, src_y: np.ndarray, width: int, height: int,
              finish: Callable[..., np.ndarray] | None = None) -> np.ndarray:
        """The picture at ``frame_index``, sampled at the low-res full-resolution source coordinates: the nearer
        keyframe carried along the flow (``finish`` makes a warped source's images into a picture; by default
        the source is one picture), and during the handover both, blended per pixel."""
        def picture(images: list[np.ndarray]) -> np.ndarray:
            return images[0] if finish is None else finish(*images)

        pair, t = segment_position(frame_index, self.times)
        if len(self.sources) == 1 or t <= 0.0 or t >= 1.0:
            source = self.sources[0] if len(self.sources) == 1 else self.sources[pair + (1 if t >= 1.0 else 0)]
            return picture(_remap_full(source, src_x, src_y, width, height))
        if pair not in self.flows:
            masks_a, masks_b = (None, None) if self.masks is None else self.masks[pair:pair + 2]
            self.flows = {pair: estimate_flow(self.flow_images[pair], self.flow_images[pair + 1], masks_a, masks_b)}
        flow = self.flows[pair]
        # Source positions in low-res keyframe coordinates.
        low_x, low_y = (src_x + 0.5) / FLOW_SCALE - 0.5, (src_y + 0.5) / FLOW_SCALE - 0.5
        mix = blend_weight((self.times[pair] + self.times[pair + 1]) / 2 - frame_index)
        if mix < 1.0:
            forward_at = _sample(flow.forward, low_x, low_y)
            a_x, a_y = low_x - t * forward_at[..., 0], low_y - t * forward_at[..., 1]
            picture_a = picture(_remap_full(self.sources[pair], (a_x + 0.5) * FLOW_SCALE - 0.5,
                                            (a_y + 0.5) * FLOW_SCALE - 0.5, width, height))
            if mix <= 0.0:
                return picture_a
        backward_at = _sample(flow.backward, low_x, low_y)
        b_x, b_y = low_x - (1 - t) * backward_at[..., 0], low_y - (1 - t) * backward_at[..., 1]
        picture_b = picture(_remap_full(self.sources[pair + 1], (b_x + 0.5) * FLOW_SCALE - 0.5,
                                        (b_y + 0.5) * FLOW_SCALE - 0.5, width, height))
        if mix >= 1.0:
            return picture_b
        # During the handover, per pixel, the source whose flow is consistent both ways (not occluded) wins.
        # Blending finished pictures equals blending the layers: compositing is linear in them.
        score_a = (1 - mix) * _sample(flow.forward_confidence, a_x, a_y)
        score_b = mix * _sample(flow.backward_confidence, b_x, b_y)
        weight_b = cv2.resize(score_b / (score_a + score_b), (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.blendLinear(picture_a, picture_b, 1.0 - weight_b, weight_b)


def _over(figure: np.ndarray, lift: np.ndarray, shade: np.ndarray, background: np.ndarray) -> np.ndarray:
    """A warped character layer (``character_layer``) composited over the set."""
    alpha = cv2.extractChannel(figure, 3).astype(np.float32) * (1.0 / 255.0)
    frame = cv2.blendLinear(cv2.cvtColor(figure, cv2.COLOR_RGBA2RGB), background, alpha, 1.0 - alpha)
    return cv2.subtract(cv2.add(frame, lift), shade)


def shot_frames(
    keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
    layers: Sequence[KeyframeLayers] | None = None,
) -> Iterator[np.ndarray]:
    """Yield the shot's ``n_frames`` RGB frames: flow-interpolated keyframes seen through the camera move, with
    the characters and the set moving apart (parallax) when the keyframes' ``layers`` are given."""
    if not keyframes:
        raise ValueError("a shot needs at least one keyframe")
    if layers is not None and len(layers) != len(keyframes):
        raise ValueError(f"{len(layers)} keyframe layers for {len(keyframes)} keyframes")
    height, width = keyframes[0].shape[:2]
    times = keyframe_times(n_frames, len(keyframes))
    small_x, small_y = _grid((height // FLOW_SCALE, width // FLOW_SCALE))
    # Output pixel centres of the low-res grid, in full-res coordinates.
    out_x, out_y = (small_x + 0.5) * FLOW_SCALE - 0.5, (small_y + 0.5) * FLOW_SCALE - 0.5
    duration_s = max(n_frames - 1, 1) / FPS
    if layers is None:
        frames = _Tween([(image,) for image in keyframes], times, keyframes)
    else:
        characters = _Tween([character_layer(image, layer) for image, layer in zip(keyframes, layers)], times,
                            [_flow_view(image, layer) for image, layer in zip(keyframes, layers)],
                            [layer.character_masks for layer in layers])
        plates = [layer.background for layer in layers]
        if all(np.array_equal(plate, plates[0]) for plate in plates):
            sets = _Tween([(plates[0],)], [0], plates[:1])  # one plate for the shot (the embedded renderer's)
        else:
            sets = _Tween([(plate,) for plate in plates], times, plates)
        ground_y = ground_line(layers, height)

    for frame_index in range(n_frames):
        progress = frame_index / max(n_frames - 1, 1)
        near_x, near_y = _apply_affine(camera_matrix(camera, progress, width, height, seed, duration_s), out_x, out_y)
        if layers is None:
            yield frames.frame(frame_index, near_x, near_y, width, height)
            continue
        far_x, far_y = _apply_affine(
            camera_matrix(camera, progress, width, height, seed, duration_s, BACKGROUND_PARALLAX), out_x, out_y)
        set_x, set_y = background_source(near_x, near_y, far_x, far_y, ground_y, height)
        background = sets.frame(frame_index, set_x, set_y, width, height)
        yield characters.frame(frame_index, near_x, near_y, width, height,
                               lambda figure, lift, shade: _over(figure, lift, shade, background))


def _remap_full(images: Sequence[np.ndarray], low_src_x: np.ndarray, low_src_y: np.ndarray, width: int,
                height: int) -> list[np.ndarray]:
    """Sample ``images`` with low-res maps (full-res source coordinates) upsampled to the output size."""
    low_maps = np.dstack([low_src_x, low_src_y])
    full_maps = cv2.resize(low_maps, (width, height), interpolation=cv2.INTER_LINEAR)
    return [cv2.remap(image, full_maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            for image in images]


def track_points(
    keyframe_points: Sequence[tuple[float, float]], camera: CameraMove, n_frames: int, width: int, height: int, seed: int
) -> np.ndarray:
    """Per-frame output position (n_frames, 2) of a point on the characters known on each keyframe (e.g. a
    mouth), following the same keyframe timing, easing and camera move as the character layer of
    ``shot_frames``."""
    times = keyframe_times(n_frames, len(keyframe_points))
    points = np.asarray(keyframe_points, dtype=np.float64)
    duration_s = max(n_frames - 1, 1) / FPS
    track = np.empty((n_frames, 2), dtype=np.float32)
    for frame_index in range(n_frames):
        pair, t = segment_position(frame_index, times)
        source = points[0] if len(points) == 1 else (1 - t) * points[pair] + t * points[pair + 1]
        to_source = camera_matrix(camera, frame_index / max(n_frames - 1, 1), width, height, seed, duration_s)
        to_output = cv2.invertAffineTransform(to_source)
        track[frame_index] = to_output[:, :2] @ source + to_output[:, 2]
    return track


def camera_zoom(camera: CameraMove, progress: float, width: int, height: int, seed: int) -> float:
    """Scale of the character layer relative to the keyframe at ``progress`` (mouth widths grow on a push-in)."""
    to_source = camera_matrix(camera, progress, width, height, seed)
    return float(1.0 / np.sqrt(abs(np.linalg.det(to_source[:, :2]))))

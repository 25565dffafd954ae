"""Shot motion: optical-flow interpolation between keyframes, composed with the shot's camera move.

Flow is estimated once per keyframe pair (Farneback, both directions, at quarter resolution) and every
in-between frame is two remaps and a weighted blend at full resolution. The camera move and the flow warp are
folded into the same sampling maps, so a frame costs the same whatever the move. Frames are yielded one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

from .manifest import FPS, CameraMove

FLOW_SCALE = 4  # flow and sampling maps are computed at 1/4 resolution, then upsampled
BLEND_WINDOW = 0.4  # fraction of a keyframe-to-keyframe segment over which the two warps cross-fade
OCCLUSION_SIGMA_PX = 2.0  # forward/backward disagreement (low-res pixels) at which a source loses half its weight


@dataclass(frozen=True)
class FlowPair:
    forward: np.ndarray  # (h, w, 2) low-res flow keyframe a -> b, in low-res pixels
    backward: np.ndarray  # (h, w, 2) flow b -> a
    forward_confidence: np.ndarray  # (h, w) in (0, 1]: 1 where a's pixel is visible in b
    backward_confidence: np.ndarray


def _gray_small(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    small = cv2.resize(image, (width // FLOW_SCALE, height // FLOW_SCALE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def _sample(field: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def estimate_flow(image_a: np.ndarray, image_b: np.ndarray) -> FlowPair:
    gray_a, gray_b = _gray_small(image_a), _gray_small(image_b)
    params = dict(pyr_scale=0.5, levels=4, winsize=21, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
    forward = cv2.calcOpticalFlowFarneback(gray_a, gray_b, None, **params)
    backward = cv2.calcOpticalFlowFarneback(gray_b, gray_a, None, **params)
    grid_x, grid_y = _grid(gray_a.shape)

    def confidence(flow: np.ndarray, reverse: np.ndarray) -> np.ndarray:
        # A pixel whose round trip a -> b -> a does not come home was occluded: trust the other keyframe there.
        landed = _sample(reverse, grid_x + flow[..., 0], grid_y + flow[..., 1])
        error = np.linalg.norm(flow + landed, axis=2)
        return np.exp(-((error / OCCLUSION_SIGMA_PX) ** 2)).astype(np.float32) + 1e-3

    return FlowPair(forward, backward, confidence(forward, backward), confidence(backward, forward))


def _grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    height, width = shape[:2]
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def blend_weight(t: float) -> float:
    """How much of the later keyframe to show at ``t``. Both warps follow the flow all along; where they
    disagree (a head turn, a limb crossing a flat colour) a quick switch mid-way reads as motion, while a long
    50/50 mix reads as a double exposure."""
    return ease(float(np.clip((t - 0.5) / BLEND_WINDOW + 0.5, 0.0, 1.0)))


def ease(t: float) -> float:
    """Smoothstep: figures accelerate out of one pose and settle into the next."""
    return t * t * (3.0 - 2.0 * t)


def camera_matrix(move: CameraMove, progress: float, width: int, height: int, seed: int,
                  duration_s: float = 1.0) -> np.ndarray:
    """2x3 affine taking output pixel coordinates to source (keyframe) coordinates at ``progress`` in [0, 1] of
    a shot lasting ``duration_s`` (hand-held shake runs in real seconds, whatever the shot's length)."""
    p = ease(progress)
    zoom, shift_x, shift_y, angle = 1.0, 0.0, 0.0, 0.0
    # Moves that translate keep a zoom margin so the frame never shows past the keyframe's edge.
    margin = 0.08
    if move is CameraMove.push_in:
        zoom = 1.0 + 0.14 * p
    elif move is CameraMove.pull_out:
        zoom = 1.14 - 0.14 * p
    elif move in (CameraMove.pan_left, CameraMove.pan_right):
        zoom = 1.0 + margin
        travel = (p - 0.5) * width * margin * 0.9
        shift_x = -travel if move is CameraMove.pan_left else travel
    elif move in (CameraMove.tilt_up, CameraMove.tilt_down):
        zoom = 1.0 + margin
        travel = (p - 0.5) * height * margin * 0.9
        shift_y = -travel if move is CameraMove.tilt_up else travel
    elif move is CameraMove.handheld:
        zoom = 1.05
        phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, 4)
        time_s = progress * duration_s
        # Sum of incommensurate sines: smooth, aperiodic drift like a hand-held camera.
        shift_x = 9.0 * np.sin(2 * np.pi * 0.7 * time_s + phases[0]) + 4.0 * np.sin(2 * np.pi * 1.9 * time_s + phases[1])
        shift_y = 7.0 * np.sin(2 * np.pi * 0.5 * time_s + phases[2]) + 3.0 * np.sin(2 * np.pi * 2.3 * time_s + phases[3])
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


def shot_frames(
    keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int
) -> Iterator[np.ndarray]:
    """Yield the shot's ``n_frames`` RGB frames: flow-interpolated keyframes seen through the camera move."""
    if not keyframes:
        raise ValueError("a shot needs at least one keyframe")
    height, width = keyframes[0].shape[:2]
    times = keyframe_times(n_frames, len(keyframes))
    small_shape = (height // FLOW_SCALE, width // FLOW_SCALE)
    small_x, small_y = _grid(small_shape)
    # Output pixel centres of the low-res grid, in full-res coordinates.
    out_x, out_y = (small_x + 0.5) * FLOW_SCALE - 0.5, (small_y + 0.5) * FLOW_SCALE - 0.5
    flows: dict[int, FlowPair] = {}

    duration_s = max(n_frames - 1, 1) / FPS
    for frame_index in range(n_frames):
        progress = frame_index / max(n_frames - 1, 1)
        src_x, src_y = _apply_affine(camera_matrix(camera, progress, width, height, seed, duration_s), out_x, out_y)
        pair, t = segment_position(frame_index, times)
        if len(keyframes) == 1 or t <= 0.0 or t >= 1.0:
            image = keyframes[0] if len(keyframes) == 1 else keyframes[pair + (1 if t >= 1.0 else 0)]
            yield _remap_full(image, src_x, src_y, width, height)
            continue
        if pair not in flows:
            flows = {pair: estimate_flow(keyframes[pair], keyframes[pair + 1])}
        flow = flows[pair]
        # Source positions in low-res keyframe coordinates.
        low_x, low_y = (src_x + 0.5) / FLOW_SCALE - 0.5, (src_y + 0.5) / FLOW_SCALE - 0.5
        forward_at = _sample(flow.forward, low_x, low_y)
        backward_at = _sample(flow.backward, low_x, low_y)
        a_x, a_y = low_x - t * forward_at[..., 0], low_y - t * forward_at[..., 1]
        b_x, b_y = low_x - (1 - t) * backward_at[..., 0], low_y - (1 - t) * backward_at[..., 1]
        mix = blend_weight(t)
        weight_a = (1 - mix) * _sample(flow.forward_confidence, a_x, a_y)
        weight_b = mix * _sample(flow.backward_confidence, b_x, b_y)
        total = weight_a + weight_b
        warped_a = _remap_full(keyframes[pair], (a_x + 0.5) * FLOW_SCALE - 0.5, (a_y + 0.5) * FLOW_SCALE - 0.5, width, height)
        warped_b = _remap_full(keyframes[pair + 1], (b_x + 0.5) * FLOW_SCALE - 0.5, (b_y + 0.5) * FLOW_SCALE - 0.5, width, height)
        full_weight_a = cv2.resize(weight_a / total, (width, height), interpolation=cv2.INTER_LINEAR)
        yield cv2.blendLinear(warped_a, warped_b, full_weight_a, 1.0 - full_weight_a)


def _remap_full(image: np.ndarray, low_src_x: np.ndarray, low_src_y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sample ``image`` with low-res maps (full-res source coordinates) upsampled to the output size."""
    low_maps = np.dstack([low_src_x, low_src_y])
    full_maps = cv2.resize(low_maps, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.remap(image, full_maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def track_points(
    keyframe_points: Sequence[tuple[float, float]], camera: CameraMove, n_frames: int, width: int, height: int, seed: int
) -> np.ndarray:
    """Per-frame output position (n_frames, 2) of a point known on each keyframe (e.g. a mouth), following the
    same keyframe timing, easing and camera move as ``shot_frames``."""
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
    """Scale of the output relative to the keyframe at ``progress`` (mouth widths grow on a push-in)."""
    to_source = camera_matrix(camera, progress, width, height, seed)
    return float(1.0 / np.sqrt(abs(np.linalg.det(to_source[:, :2]))))

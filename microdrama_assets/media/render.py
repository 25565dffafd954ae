"""Procedural 9:16 keyframe renderer: a flat-illustration motion-comic frame from a storyboard plan.

A keyframe is a set (one-point-perspective 3D sketch of the location, lit for the time of day), characters
built on the storyboard's keypoints (cel-shaded flat shapes with outlines and a rim light in the mood's key
colour), and a mood grade. The camera sits at eye level like the storyboard assumes: the set's horizon lies on
``storyboard.EYE_LINE``, tighter framings are longer lenses with a shallower depth of field (blur and bokeh).

Everything is drawn with OpenCV's anti-aliased primitives; soft light (glows, light pools, bloom) lives in
quarter-resolution buffers that are blurred and upsampled, which keeps a 1080x1920 keyframe well under the
frame budget. Mouths are left as neutral closed lines and exposed as ``MouthAnchor`` for the lip-sync stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import cv2
import numpy as np

from .manifest import Build, Character, EpisodeManifest, Framing, HairStyle, Location, Mood, Shot, TimeOfDay
from .storyboard import (
    EYE_LINE,
    FigurePose,
    HeadGeometry,
    KeyframePlan,
    head_geometry,
    keypoints,
    stable_seed,
)

STYLE_VERSION = "flat-illustration-1"  # bump when the look changes: character bundles hash it
FLOOR = 1.6  # camera (eye) height above the floor, metres; world Y points down, so the floor is at Y = +1.6
Colour = tuple[float, float, float]


# --- palettes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoodLook:
    key: Colour  # rim/key light on the characters
    accent: Colour  # practical lights, neon and bokeh
    tint: Colour  # multiplies set colours
    saturation: float  # of set colours
    brightness: float  # scales the ambient light
    lift: Colour  # grade: black point per channel (0..1)
    gain: Colour  # grade: white point per channel
    gamma: Colour  # grade: per-channel gamma
    contrast: float  # grade: strength of the S-curve
    brow: float  # eyebrow angle, radians (positive knits the brows)


MOODS: dict[Mood, MoodLook] = {
    Mood.tense: MoodLook((110, 230, 235), (235, 70, 60), (0.88, 1.0, 1.04), 0.8, 0.88,
                         (0.02, 0.06, 0.07), (0.98, 1.0, 1.0), (1.1, 1.0, 0.97), 0.35, 0.2),
    Mood.mysterious: MoodLook((150, 120, 255), (120, 90, 240), (0.82, 0.84, 1.1), 0.85, 0.8,
                              (0.04, 0.02, 0.09), (0.93, 0.92, 1.0), (1.1, 1.12, 0.95), 0.3, 0.1),
    Mood.warm: MoodLook((255, 185, 105), (255, 160, 70), (1.08, 1.0, 0.86), 1.0, 1.0,
                        (0.05, 0.03, 0.01), (1.0, 0.97, 0.88), (0.95, 1.0, 1.08), 0.15, -0.05),
    Mood.romantic: MoodLook((255, 150, 190), (255, 205, 120), (1.08, 0.95, 1.0), 1.0, 0.95,
                            (0.07, 0.03, 0.05), (1.0, 0.95, 0.96), (0.94, 1.02, 1.0), 0.12, -0.12),
    Mood.eerie: MoodLook((170, 255, 130), (140, 225, 90), (0.92, 1.04, 0.86), 0.7, 0.8,
                         (0.02, 0.05, 0.03), (0.93, 1.0, 0.88), (1.07, 0.97, 1.07), 0.3, 0.15),
    Mood.hopeful: MoodLook((255, 242, 215), (190, 225, 255), (1.03, 1.02, 1.0), 1.0, 1.1,
                           (0.05, 0.05, 0.06), (1.0, 1.0, 0.98), (0.92, 0.92, 0.95), 0.1, -0.1),
    Mood.somber: MoodLook((170, 185, 210), (120, 135, 160), (0.92, 0.95, 1.02), 0.55, 0.85,
                          (0.04, 0.05, 0.07), (0.9, 0.92, 0.96), (1.05, 1.03, 1.0), 0.1, -0.2),
    Mood.playful: MoodLook((255, 225, 90), (255, 90, 170), (1.0, 1.0, 1.0), 1.25, 1.08,
                           (0.03, 0.02, 0.04), (1.0, 1.0, 1.0), (0.95, 0.97, 0.97), 0.25, -0.15),
}  # fmt: skip


@dataclass(frozen=True)
class Sky:
    stops: tuple[tuple[float, Colour], ...]  # (tan of elevation, colour), ascending
    ambient_outdoor: float
    ambient_indoor: float
    lamp: float  # how bright practical lights burn
    body: tuple[float, Colour, float]  # sun or moon: (elevation tan, colour, size)


SKIES: dict[TimeOfDay, Sky] = {
    TimeOfDay.day: Sky(((-0.2, (175, 185, 190)), (0.0, (222, 232, 236)), (0.3, (158, 200, 236)), (1.0, (82, 140, 212))),
                       1.0, 1.0, 0.35, (0.75, (255, 250, 230), 0.9)),
    TimeOfDay.dusk: Sky(((-0.2, (120, 80, 100)), (0.0, (255, 168, 112)), (0.12, (236, 120, 118)), (0.4, (120, 76, 140)), (1.0, (38, 42, 98))),
                        0.72, 0.8, 0.8, (0.035, (255, 190, 120), 2.2)),
    TimeOfDay.night: Sky(((-0.2, (20, 22, 40)), (0.0, (44, 52, 96)), (0.3, (18, 26, 62)), (1.0, (6, 9, 26))),
                         0.46, 0.6, 1.0, (0.5, (225, 232, 255), 0.7)),
}  # fmt: skip

# Per framing: lens zoom relative to the wide shot, and background blur (Gaussian sigma, px).
LENS: dict[Framing, tuple[float, float]] = {
    Framing.wide: (1.0, 0.0),
    Framing.two_shot: (1.5, 2.5),
    Framing.medium: (1.9, 4.5),
    Framing.over_shoulder: (2.2, 6.0),
    Framing.close_up: (2.6, 9.0),
}
WARM_LAMP: Colour = (255, 198, 130)
COOL_LAMP: Colour = (225, 242, 255)


def hex_rgb(value: str) -> Colour:
    value = value.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> Colour:
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _mul(a: Sequence[float], k: float | Sequence[float]) -> Colour:
    ks = (k, k, k) if isinstance(k, (int, float)) else k
    return tuple(float(min(255.0, x * y)) for x, y in zip(a, ks))  # type: ignore[return-value]


def _fixed(points: np.ndarray) -> np.ndarray:
    # Drawing in 1/16-pixel fixed point keeps anti-aliased edges smooth when shapes move sub-pixel between keyframes.
    return np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32)


def _chaikin(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Round a closed polygon's corners (Chaikin corner cutting)."""
    for _ in range(iterations):
        nxt = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * nxt, 0.25 * points + 0.75 * nxt], axis=1).reshape(-1, 2)
    return points


# --- set building ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetLook:
    """What decides how a set is shot and lit, besides its location and seed."""

    framing: Framing
    mood: Mood
    time_of_day: TimeOfDay


class _Stage:
    """A one-point-perspective drawing surface: world metres in, anti-aliased polygons out.

    Besides the colour image it keeps an emissive mask (skies, screens, lit windows ignore the ambient level),
    and quarter-resolution light buffers: ``glow`` (additive halos) and ``illum`` (light spilling on surfaces).
    """

    def __init__(self, width: int, height: int, look: SetLook, rng: np.random.Generator):
        self.width, self.height = width, height
        self.zoom, self.dof = LENS[look.framing]
        self.focal = 0.95 * width * self.zoom
        self.cx, self.cy = width / 2.0, EYE_LINE[look.framing] * height
        self.cam_x = float(rng.uniform(-0.35, 0.35))
        self.rng = rng
        self.mood = MOODS[look.mood]
        self.sky = SKIES[look.time_of_day]
        self.time = look.time_of_day
        self.img = np.zeros((height, width, 3), np.uint8)
        self.emit = np.zeros((height, width), np.uint8)
        self.low = (height // 4, width // 4)
        self.glow = np.zeros((*self.low, 3), np.float32)
        self.illum = np.zeros(self.low, np.float32)
        self.lights: list[tuple[float, float, Colour, float]] = []
        self.fog: Colour = self.sky.stops[1][1]
        self.fog_distance = 90.0

    # projection and colour -----------------------------------------------------------------------------
    def project(self, points: Sequence[Sequence[float]]) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        z = np.maximum(p[:, 2], 0.05)
        return np.stack([self.cx + self.focal * (p[:, 0] - self.cam_x) / z, self.cy + self.focal * p[:, 1] / z], axis=1)

    def colour(self, rgb: Colour, depth: float) -> Colour:
        grey = sum(rgb) / 3.0
        c = [grey + (x - grey) * self.mood.saturation for x in rgb]
        c = [x * t for x, t in zip(c, self.mood.tint)]
        haze = 1.0 - math.exp(-max(depth, 0.0) / self.fog_distance)
        return tuple(float(np.clip(x + (f - x) * haze, 0, 255)) for x, f in zip(c, self.fog))  # type: ignore[return-value]

    def px(self, metres: float, depth: float) -> float:
        return metres * self.focal / max(depth, 0.05)

    # primitives ---------------------------------------------------------------------------------------------
    def poly(self, points3: Sequence[Sequence[float]], rgb: Colour, emissive: bool = False, fog: bool = True) -> None:
        depth = float(np.mean([p[2] for p in points3])) if fog else 0.0
        pts = _fixed(self.project(points3))
        cv2.fillPoly(self.img, [pts], self.colour(rgb, depth), cv2.LINE_AA, shift=4)
        cv2.fillPoly(self.emit, [pts], 255 if emissive else 0, cv2.LINE_AA, shift=4)

    def wall(self, x: float, y0: float, y1: float, z0: float, z1: float, rgb: Colour, emissive: bool = False) -> None:
        """Rectangle in the plane X = x (side walls)."""
        self.poly([(x, y0, z0), (x, y0, z1), (x, y1, z1), (x, y1, z0)], rgb, emissive)

    def face(self, x0: float, x1: float, y0: float, y1: float, z: float, rgb: Colour, emissive: bool = False) -> None:
        """Rectangle facing the camera at depth z."""
        self.poly([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)], rgb, emissive)

    def flat(self, x0: float, x1: float, y: float, z0: float, z1: float, rgb: Colour, emissive: bool = False) -> None:
        """Horizontal rectangle at height y (floors, ceilings, table tops)."""
        self.poly([(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)], rgb, emissive)

    def box(self, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, rgb: Colour) -> None:
        """A solid box: its visible sides are shaded darker, its top lighter (light comes from above)."""
        if x0 > self.cam_x:
            self.wall(x0, y0, y1, z0, z1, _mul(rgb, 0.72))
        if x1 < self.cam_x:
            self.wall(x1, y0, y1, z0, z1, _mul(rgb, 0.72))
        if y0 > 0:
            self.flat(x0, x1, y0, z0, z1, _mul(rgb, 1.18))
        if y1 < 0:
            self.flat(x0, x1, y1, z0, z1, _mul(rgb, 0.6))
        self.face(x0, x1, y0, y1, z0, rgb)

    def line(self, a: Sequence[float], b: Sequence[float], width_m: float, rgb: Colour, emissive: bool = False) -> None:
        depth = (a[2] + b[2]) / 2.0
        (xa, ya), (xb, yb) = self.project([a, b])
        thickness = max(1, int(round(self.px(width_m, depth))))
        ends = _fixed(np.array([[xa, ya], [xb, yb]]))
        cv2.line(self.img, tuple(ends[0]), tuple(ends[1]), self.colour(rgb, depth), thickness, cv2.LINE_AA, shift=4)
        cv2.line(self.emit, tuple(ends[0]), tuple(ends[1]), 255 if emissive else 0, thickness, cv2.LINE_AA, shift=4)

    def disc(self, x: float, y: float, z: float, radius_m: float, rgb: Colour, emissive: bool = False) -> None:
        (u, v), = self.project([(x, y, z)])
        r = self.px(radius_m, z)
        centre = tuple(_fixed(np.array([u, v])))
        cv2.circle(self.img, centre, int(r * 16), self.colour(rgb, z), -1, cv2.LINE_AA, shift=4)
        cv2.circle(self.emit, centre, int(r * 16), 255 if emissive else 0, -1, cv2.LINE_AA, shift=4)

    def floor_ellipse(self, x: float, y: float, z: float, rx: float, rz: float, rgb: Colour) -> None:
        """A horizontal ellipse (table tops, rugs) in true perspective."""
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        self.poly([(x + rx * math.cos(a), y, z + rz * math.sin(a)) for a in t], rgb)

    def light(self, x: float, y: float, z: float, size_m: float, rgb: Colour, strength: float, reach_m: float = 2.5) -> None:
        """A light source: a halo, light spilled on surfaces within ``reach_m``, and a bokeh disc when defocused."""
        (u, v), = self.project([(x, y, z)])
        strength *= self.sky.lamp
        # Halos stay modest even for lights right in front of the lens: bloom, not a white-out.
        r_low = max(min(self.px(size_m, z), 0.05 * self.width) / 4.0, 0.8)
        centre = (int(round(u / 4 * 16)), int(round(v / 4 * 16)))
        cv2.circle(self.glow, centre, int(r_low * 16), tuple(c * strength * 0.55 for c in rgb), -1, cv2.LINE_AA, shift=4)
        reach = max(min(self.px(reach_m, z), 0.4 * self.width) / 4.0, 1.0)
        cv2.circle(self.illum, centre, int(reach * 16), 0.3 * strength, -1, cv2.LINE_AA, shift=4)
        self.lights.append((u, v, rgb, strength))

    def pool(self, x: float, z: float, radius_m: float, rgb: Colour, strength: float, y: float = FLOOR) -> None:
        """A pool of light on the floor (or any horizontal surface at ``y``)."""
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        ring = self.project([(x + radius_m * math.cos(a), y, z + radius_m * math.sin(a)) for a in t]) / 4.0
        cv2.fillPoly(self.glow, [_fixed(ring)], tuple(c * strength * self.sky.lamp * 0.35 for c in rgb), cv2.LINE_AA, shift=4)

    def reflection(self, x: float, y: float, z: float, size_m: float, rgb: Colour, strength: float) -> None:
        """A light's streak on a glossy floor: its mirror image through the floor plane, stretched vertically."""
        (u, v), = self.project([(x, 2 * FLOOR - y, z)])
        r = max(min(self.px(size_m, z), 0.04 * self.width) / 4.0, 1.0)
        axes = (int(r * 16), int(r * 3.0 * 16))
        cv2.ellipse(self.glow, (int(u / 4 * 16), int(v / 4 * 16)), axes, 0, 0, 360,
                    tuple(c * strength * self.sky.lamp * 0.14 for c in rgb), -1, cv2.LINE_AA, shift=4)  # fmt: skip

    def paste(self, points3: Sequence[Sequence[float]], source: np.ndarray) -> None:
        """Show ``source`` (the exterior view) through a window polygon."""
        pts = self.project(points3)
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [_fixed(pts - [x0, y0])], 255, cv2.LINE_AA, shift=4)
        alpha = mask[..., None].astype(np.float32) / 255.0
        region = self.img[y0:y1, x0:x1]
        region[:] = (region * (1 - alpha) + source[y0:y1, x0:x1] * alpha).astype(np.uint8)
        np.maximum(self.emit[y0:y1, x0:x1], mask, out=self.emit[y0:y1, x0:x1])

    def room(self, half_width: float, ceiling: float, back: float, wall: Colour, side: Colour, floor: Colour, top: Colour) -> None:
        """Back wall, side walls, floor and ceiling of a box room; ``ceiling`` is the room height in metres."""
        yc = FLOOR - ceiling
        self.face(-half_width, half_width, yc, FLOOR, back, wall)
        self.wall(-half_width, yc, FLOOR, 0.3, back, side)
        self.wall(half_width, yc, FLOOR, 0.3, back, _mul(side, 0.94))
        self.flat(-half_width, half_width, FLOOR, 0.3, back, floor)
        self.flat(-half_width, half_width, yc, 0.3, back, top)


def _sky_image(st: _Stage) -> np.ndarray:
    """The world outside: sky gradient by elevation, sun or moon, stars, and a distant skyline."""
    rows = np.arange(st.height, dtype=np.float64)
    elevation = (st.cy - rows) / st.focal
    xs = [s[0] for s in st.sky.stops]
    column = np.stack([np.interp(elevation, xs, [s[1][c] for s in st.sky.stops]) for c in range(3)], axis=1)
    sky = np.ascontiguousarray(np.broadcast_to(column[:, None, :], (st.height, st.width, 3)).astype(np.uint8))
    saved = st.img, st.emit
    st.img, st.emit = sky, np.full((st.height, st.width), 255, np.uint8)
    if st.time is TimeOfDay.night:
        count = 160
        us = st.rng.uniform(0, st.width, count)
        vs = st.rng.uniform(0, st.cy - 0.05 * st.focal, count)
        for u, v, b in zip(us, vs, st.rng.uniform(0.3, 1.0, count)):
            if v > 0:
                cv2.circle(sky, (int(u * 16), int(v * 16)), int(16 * (0.8 + 1.2 * b)), (int(200 * b + 40),) * 3, -1, cv2.LINE_AA, shift=4)
    elevation_tan, body_rgb, size = st.sky.body
    body_x = float(st.rng.uniform(-25, 25))
    st.disc(body_x, -elevation_tan * 60.0, 60.0, size, body_rgb, emissive=True)
    st.light(body_x, -elevation_tan * 60.0, 60.0, size * 2.0, body_rgb, 0.6 / st.sky.lamp, reach_m=12)
    _skyline(st, depth=110.0, spread=90.0, max_height=70.0, base=(70, 84, 110))
    _skyline(st, depth=70.0, spread=60.0, max_height=45.0, base=(52, 62, 86))
    st.img, st.emit = saved
    return sky


def _skyline(st: _Stage, depth: float, spread: float, max_height: float, base: Colour) -> None:
    x = -spread
    night = st.time is not TimeOfDay.day
    silhouette = _mix(base, st.fog, {TimeOfDay.day: 0.55, TimeOfDay.dusk: 0.25, TimeOfDay.night: 0.05}[st.time])
    window_points = []
    while x < spread:
        w = float(st.rng.uniform(4, 12))
        h = float(st.rng.uniform(0.25, 1.0) * max_height)
        z = depth + float(st.rng.uniform(-8, 8))
        st.face(x, x + w, FLOOR - h, FLOOR, z, _mul(silhouette, float(st.rng.uniform(0.85, 1.1))))
        if st.rng.random() < 0.15:  # a spire with an aviation light
            st.line((x + w / 2, FLOOR - h, z), (x + w / 2, FLOOR - h - 8, z), 0.4, silhouette)
            st.light(x + w / 2, FLOOR - h - 8, z, 0.6, (255, 60, 50), 0.9)
        if night:
            cols, rows = int(w / 2.2), int(h / 3.5)
            gx, gy = np.meshgrid(np.arange(cols), np.arange(rows))
            lit = st.rng.random(gx.shape) < (0.35 if st.time is TimeOfDay.night else 0.2)
            wx = x + (gx[lit] + 0.6) * w / max(cols, 1)
            wy = FLOOR - h + (gy[lit] + 0.8) * 3.5
            window_points.append(np.stack([wx, wy, np.full(wx.shape, z - 0.1)], axis=1))
        x += w + float(st.rng.uniform(0, 2.5))
    if window_points:
        pts = st.project(np.concatenate(window_points)).astype(int)
        keep = (pts[:, 0] >= 0) & (pts[:, 0] < st.width - 1) & (pts[:, 1] >= 0) & (pts[:, 1] < st.height - 1)
        pts = pts[keep]
        colour = np.array(st.colour((255, 214, 150), 0.0), dtype=np.uint8)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            st.img[pts[:, 1] + dy, pts[:, 0] + dx] = colour


# --- locations -------------------------------------------------------------------------------------------------


def _set_cafe(st: _Stage, outside: np.ndarray) -> None:
    st.fog, st.fog_distance = (70, 45, 35), 40.0
    back = 10.0
    st.room(3.2, 3.2, back, (196, 160, 124), (178, 138, 104), (122, 82, 58), (74, 52, 42))
    yc = FLOOR - 3.2
    for x in np.arange(-3.2, 3.3, 0.32):  # floor planks run towards the vanishing point
        st.line((x, FLOOR, 0.6), (x, FLOOR, back), 0.012, (92, 60, 42))
    for side in (-3.2, 3.2):  # wood wainscot on the side walls
        st.wall(side, 0.45, FLOOR, 0.3, back, (112, 72, 48))
        st.line((side, 0.45, 0.5), (side, 0.45, back), 0.03, (150, 104, 70))
    st.face(-3.2, 3.2, 0.45, FLOOR, back - 0.01, (112, 72, 48))
    # Big window onto the street, with mullions.
    window = [(-2.6, -1.0, back - 0.02), (0.7, -1.0, back - 0.02), (0.7, 1.0, back - 0.02), (-2.6, 1.0, back - 0.02)]
    st.paste(window, outside)
    for x in (-2.6, -1.5, -0.4, 0.7):
        st.line((x, -1.0, back - 0.03), (x, 1.0, back - 0.03), 0.07, (52, 36, 28))
    st.line((-2.6, -0.35, back - 0.03), (0.7, -0.35, back - 0.03), 0.06, (52, 36, 28))
    for y in (-1.0, 1.0):
        st.line((-2.65, y, back - 0.03), (0.75, y, back - 0.03), 0.1, (52, 36, 28))
    # Chalk menu board and a neon ring sign.
    st.face(1.1, 2.7, -1.3, -0.2, back - 0.02, (38, 40, 38))
    for i, y in enumerate(np.arange(-1.15, -0.3, 0.16)):
        st.line((1.25, y, back - 0.03), (1.25 + 0.6 + 0.7 * ((i * 37) % 10) / 10, y, back - 0.03), 0.025, (210, 205, 190))
    ring = [(1.9 + 0.38 * math.cos(a), 0.35 + 0.38 * math.sin(a), back - 0.03) for a in np.linspace(0, 2 * np.pi, 40)]
    for a, b in zip(ring[:-1], ring[1:]):
        st.line(a, b, 0.045, st.mood.accent, emissive=True)
    st.light(1.9, 0.35, back - 0.1, 0.6, st.mood.accent, 0.9, reach_m=2.0)
    # Counter along the left wall with an espresso machine.
    st.box(-3.2, -2.1, 0.55, FLOOR, 2.8, 9.0, (96, 58, 40))
    st.flat(-3.2, -2.05, 0.53, 2.75, 9.0, (214, 206, 194))
    st.box(-3.0, -2.4, -0.05, 0.53, 5.0, 5.7, (168, 170, 176))
    st.light(-2.5, 0.2, 4.99, 0.05, (255, 70, 60), 0.9, reach_m=0.4)
    # Shelves of jars on the right wall.
    for y in (-0.7, -0.15, 0.4):
        for z in np.arange(4.1, 8.0, 0.45):
            h = float(st.rng.uniform(0.18, 0.32))
            jar = [(230, 210, 170), (120, 150, 120), (200, 120, 80), (240, 240, 230)][int(st.rng.integers(4))]
            st.box(2.9, 3.15, y - h, y, z, z + 0.22, jar)
        st.box(2.8, 3.2, y, y + 0.05, 4.0, 8.0, (140, 96, 64))
    # Round tables with a candle glow.
    for x, z in ((1.6, 4.2), (0.4, 7.2)):
        st.line((x, 0.85, z), (x, FLOOR, z), 0.06, (40, 30, 26))
        st.floor_ellipse(x, 0.85, z, 0.45, 0.45, (70, 46, 34))
        st.light(x, 0.75, z, 0.05, WARM_LAMP, 0.8, reach_m=0.6)
    # Pendant lamps with floor pools.
    for x in (-1.2, 1.3):
        for z in (3.2, 5.8, 8.4):
            st.line((x, yc, z), (x, -0.65, z), 0.015, (30, 24, 22))
            st.poly([(x - 0.08, -0.9, z), (x + 0.08, -0.9, z), (x + 0.26, -0.62, z), (x - 0.26, -0.62, z)], (46, 60, 52))
            st.light(x, -0.58, z, 0.22, WARM_LAMP, 1.0, reach_m=2.2)
            st.pool(x, z, 0.9, WARM_LAMP, 0.6)


def _set_street(st: _Stage, outside: np.ndarray) -> None:
    st.img[:] = outside
    st.emit[:] = 255
    far = 70.0
    st.flat(-3.6, 3.6, FLOOR, 0.5, far, (64, 66, 74))  # asphalt
    for side in (-1, 1):
        st.flat(side * 3.6, side * 7.0, FLOOR - 0.15, 0.5, far, (138, 134, 130))  # pavement
        st.wall(side * 3.6, FLOOR - 0.15, FLOOR, 0.5, far, (100, 98, 96))  # kerb
        for z in np.arange(1.0, far, 1.6):
            st.line((side * 3.6, FLOOR - 0.15, z), (side * 7.0, FLOOR - 0.15, z), 0.02, (112, 108, 104))
    for z in np.arange(1.0, far, 4.0):  # lane dashes
        st.flat(-0.07, 0.07, FLOOR - 0.001, z, z + 1.8, (226, 214, 170))
    night = st.time is not TimeOfDay.day
    palette = [(150, 96, 80), (196, 172, 140), (104, 112, 130), (170, 130, 110), (90, 96, 110), (200, 190, 170)]
    awnings = [st.mood.accent, (200, 60, 60), (40, 110, 100), (220, 170, 60)]
    for side in (-1, 1):
        z = 1.0
        buildings = []
        while z < far:
            depth_len = float(st.rng.uniform(5, 11))
            buildings.append((z, z + depth_len, float(st.rng.uniform(8, 26)), palette[int(st.rng.integers(len(palette)))]))
            z += depth_len
        for z0, z1, h, colour in reversed(buildings):  # far to near
            x = side * 7.0
            st.face(min(x, x + side * 4), max(x, x + side * 4), FLOOR - h, FLOOR, z0, _mul(colour, 0.8))
            st.wall(x, FLOOR - h, FLOOR, z0, z1, colour)
            st.wall(x, FLOOR - h - 0.5, FLOOR - h, z0, z1, _mul(colour, 0.7))  # cornice
            for floor_y in np.arange(FLOOR - 4.0, FLOOR - h + 1.0, -3.2):
                for wz in np.arange(z0 + 0.8, z1 - 0.9, 1.9):
                    lit = night and st.rng.random() < 0.5
                    glass = (255, 206, 140) if lit else _mix(colour, (40, 50, 70), 0.7)
                    st.wall(x, floor_y - 1.3, floor_y, wz, wz + 1.0, glass, emissive=lit)
            # Shopfront at street level: lit glass and an awning.
            st.wall(x, FLOOR - 2.6, FLOOR - 0.2, z0 + 0.6, z1 - 0.6, (255, 222, 170) if night else (120, 140, 150), emissive=night)
            aw = awnings[int(st.rng.integers(len(awnings)))]
            st.poly([(x, FLOOR - 3.0, z0 + 0.5), (x, FLOOR - 3.0, z1 - 0.5), (x - side * 1.0, FLOOR - 2.5, z1 - 0.5), (x - side * 1.0, FLOOR - 2.5, z0 + 0.5)], aw)
            if night:
                st.light(x - side * 0.3, FLOOR - 1.4, (z0 + z1) / 2, 1.2, (255, 210, 150), 0.35, reach_m=4.0)
    # Street lamps with pools of light.
    for z in np.arange(4.0, far, 9.0):
        for side in (-1, 1):
            x = side * 3.9
            st.line((x, FLOOR, z), (x, -3.4, z), 0.12, (40, 42, 48))
            st.line((x, -3.4, z), (x - side * 1.2, -3.5, z), 0.08, (40, 42, 48))
            st.disc(x - side * 1.2, -3.35, z, 0.16, (255, 236, 200), emissive=True)
            if night:
                st.light(x - side * 1.2, -3.3, z, 0.5, (255, 210, 150), 1.0, reach_m=5.0)
                st.pool(x - side * 1.0, z, 2.2, (255, 200, 140), 0.8)
    if night:  # tail lights of distant traffic
        for z in st.rng.uniform(18, 60, 5):
            x = float(st.rng.choice([-1.8, 1.8]))
            for dx in (-0.7, 0.7):
                st.light(x + dx, FLOOR - 0.8, z, 0.12, (255, 60, 50), 1.0, reach_m=1.0)


def _set_hospital(st: _Stage, outside: np.ndarray) -> None:
    st.fog, st.fog_distance = (170, 190, 188), 45.0
    back, half, height = 24.0, 1.7, 2.8
    yc = FLOOR - height
    st.room(half, height, back, (188, 212, 204), (196, 218, 210), (172, 182, 188), (206, 212, 212))
    for z in np.arange(1.0, back, 1.2):  # floor tiles
        st.line((-half, FLOOR, z), (half, FLOOR, z), 0.015, (150, 160, 168))
    for side in (-half, half):
        st.wall(side, 0.6, FLOOR, 0.3, back, (150, 186, 182))  # wainscot
        st.line((side * 0.99, 0.55, 0.5), (side * 0.99, 0.55, back), 0.05, (220, 228, 230))  # handrail
        for z in np.arange(2.0, back - 2, 4.6):
            zz = z + (0.8 if side > 0 else 0.0)
            st.wall(side * 0.995, -0.55, FLOOR, zz, zz + 1.25, (112, 152, 166))  # door
            st.wall(side * 0.99, -0.3, 0.3, zz + 0.35, zz + 0.9, (206, 232, 240), emissive=True)  # door window
            st.wall(side * 0.99, -0.62, -0.55, zz - 0.05, zz + 1.3, (90, 120, 130))  # lintel
    # End doors with round windows and an exit sign.
    st.face(-0.9, 0.9, -0.6, FLOOR, back - 0.02, (126, 160, 172))
    st.line((0, -0.6, back - 0.03), (0, FLOOR, back - 0.03), 0.03, (80, 100, 110))
    for x in (-0.45, 0.45):
        st.disc(x, -0.05, back - 0.03, 0.18, (220, 240, 236), emissive=True)
    st.face(-0.3, 0.3, -1.05, -0.8, back - 0.02, (40, 200, 110), emissive=True)
    st.light(0, -0.92, back - 0.1, 0.35, (60, 255, 140), 0.8, reach_m=1.0)
    # Fluorescent ceiling panels, reflected in the polished floor.
    for i, z in enumerate(np.arange(3.5, back - 1, 3.0)):
        flicker = 0.45 if (st.mood is MOODS[Mood.eerie] and i % 3 == 1) else 1.0
        st.flat(-0.4, 0.4, yc + 0.01, z, z + 1.2, (235, 248, 255), emissive=True)
        st.light(0, yc + 0.05, z + 0.6, 0.5, COOL_LAMP, 0.6 * flicker, reach_m=2.5)
        st.reflection(0, yc, z + 0.6, 0.4, COOL_LAMP, 0.9 * flicker)


def _set_elevator(st: _Stage, outside: np.ndarray) -> None:
    st.fog, st.fog_distance = (60, 60, 66), 60.0
    back, half, height = 3.4, 1.25, 2.5
    yc = FLOOR - height
    st.room(half, height, back, (150, 152, 158), (136, 138, 146), (58, 54, 56), (120, 122, 128))
    for x in np.linspace(-half, half, 14):  # brushed steel seams
        st.line((x, yc, back - 0.01), (x, FLOOR, back - 0.01), 0.006, (120, 122, 130))
    for side in (-half, half):
        for z in (1.1, 2.25):
            st.line((side, yc, z), (side, FLOOR, z), 0.012, (100, 102, 110))
        st.line((side * 0.97, 0.55, 0.4), (side * 0.97, 0.55, back), 0.045, (210, 212, 220))  # handrail
    st.face(-0.75, 0.75, -0.55, 0.85, back - 0.02, (92, 98, 112))  # smoked mirror
    st.poly([(-0.75, -0.55, back - 0.025), (-0.35, -0.55, back - 0.025), (-0.75, 0.2, back - 0.025)], (120, 128, 144))
    st.line((-half, 0.55, back - 0.03), (half, 0.55, back - 0.03), 0.045, (210, 212, 220))
    st.face(-half, half, 1.2, FLOOR, back - 0.01, (80, 80, 86))  # kick plate
    # Button panel on the right wall, a floor indicator above it.
    st.wall(half * 0.99, -0.35, 0.75, 2.4, 2.85, (44, 46, 52))
    for row in range(7):
        for col in range(2):
            lit = (row * 2 + col) in (3, 10)
            z = 2.52 + col * 0.2
            st.wall(half * 0.985, -0.25 + row * 0.14, -0.17 + row * 0.14, z - 0.035, z + 0.035,
                    st.mood.accent if lit else (170, 172, 180), emissive=lit)  # fmt: skip
            if lit:
                st.light(half * 0.98, -0.21 + row * 0.14, z, 0.06, st.mood.accent, 0.7, reach_m=0.3)
    st.wall(half * 0.99, -0.75, -0.5, 2.4, 2.85, (20, 18, 22))
    st.poly([(half * 0.985, -0.7, 2.6), (half * 0.985, -0.56, 2.54), (half * 0.985, -0.56, 2.66)], (255, 120, 60), emissive=True)
    st.light(half * 0.98, -0.63, 2.6, 0.1, (255, 130, 70), 0.8, reach_m=0.4)
    # Ceiling light panel and downlights.
    st.flat(-0.45, 0.45, yc + 0.01, 1.8, back - 0.5, (240, 244, 250), emissive=True)
    st.light(0, yc + 0.1, (back + 0.4) / 2, 0.5, COOL_LAMP, 0.3, reach_m=3.0)
    st.reflection(0, yc, 2.0, 0.3, COOL_LAMP, 0.8)


def _set_office(st: _Stage, outside: np.ndarray) -> None:
    st.fog, st.fog_distance = (90, 100, 115), 50.0
    back, half, height = 14.0, 4.0, 3.0
    yc = FLOOR - height
    st.room(half, height, back, (210, 212, 214), (198, 200, 204), (86, 92, 104), (216, 218, 220))
    st.paste([(-half, yc + 0.2, back - 0.02), (half, yc + 0.2, back - 0.02), (half, FLOOR - 0.1, back - 0.02), (-half, FLOOR - 0.1, back - 0.02)], outside)
    for x in np.arange(-half, half + 0.1, 1.6):  # curtain-wall mullions
        st.line((x, yc, back - 0.03), (x, FLOOR, back - 0.03), 0.06, (60, 64, 72))
    st.line((-half, 0.6, back - 0.03), (half, 0.6, back - 0.03), 0.05, (60, 64, 72))
    # Glass meeting room on the left wall; shelves on the right.
    st.wall(-half, yc + 0.4, FLOOR, 2.0, 7.0, (150, 176, 190))
    for z in np.arange(2.0, 7.1, 1.25):
        st.line((-half * 0.99, yc + 0.4, z), (-half * 0.99, FLOOR, z), 0.03, (80, 86, 96))
    for y in (-0.9, -0.2, 0.5):
        st.box(half - 0.4, half, y, y + 0.05, 3.0, 9.0, (170, 150, 120))
        for z in np.arange(3.1, 8.8, 0.3):
            st.box(half - 0.35, half - 0.05, y - float(st.rng.uniform(0.2, 0.34)), y, z, z + 0.12,
                   [(170, 60, 60), (50, 90, 130), (220, 200, 150), (70, 120, 90)][int(st.rng.integers(4))])  # fmt: skip
    # Rows of desks with glowing monitors.
    night = st.time is not TimeOfDay.day
    for z in (9.5, 7.0, 4.5):
        for x0 in (-3.2, 1.4):
            st.box(x0, x0 + 1.8, 0.85, FLOOR, z, z + 0.8, (120, 110, 100))
            st.flat(x0 - 0.05, x0 + 1.85, 0.84, z - 0.05, z + 0.85, (226, 222, 214))
            for mx in (x0 + 0.25, x0 + 1.05):
                st.box(mx, mx + 0.55, 0.42, 0.78, z + 0.3, z + 0.34, (36, 38, 44))
                st.face(mx + 0.03, mx + 0.52, 0.45, 0.75, z + 0.29, (120, 190, 250) if night else (170, 200, 230), emissive=night)
                if night:
                    st.light(mx + 0.27, 0.6, z + 0.28, 0.35, (120, 190, 255), 0.4, reach_m=1.2)
            st.box(x0 + 0.6, x0 + 1.2, 0.7, 1.3, z - 0.45, z - 0.3, (46, 48, 56))  # chair back
    # Potted plant.
    st.box(-3.7, -3.2, 1.0, FLOOR, 2.4, 2.9, (200, 196, 190))
    for i in range(7):
        a = -1.2 + i * 0.4
        st.disc(-3.45 + 0.35 * math.cos(a), 0.75 - 0.45 * abs(math.sin(a + 0.3)), 2.6, 0.22, (70 + i * 6, 130 + i * 4, 80))
    # Recessed ceiling panels.
    for z in np.arange(4.0, back - 1, 2.6):
        for x in (-2.2, 0.0, 2.2):
            st.flat(x - 0.5, x + 0.5, yc + 0.01, z, z + 0.9, (240, 246, 252), emissive=True)
            st.light(x, yc + 0.05, z + 0.45, 0.45, COOL_LAMP, 0.35, reach_m=2.5)


def _set_apartment(st: _Stage, outside: np.ndarray) -> None:
    st.fog, st.fog_distance = (60, 50, 50), 60.0
    back, half, height = 7.0, 3.0, 2.7
    yc = FLOOR - height
    wall = [(160, 172, 150), (196, 130, 104), (150, 160, 180), (210, 190, 160)][int(st.rng.integers(4))]
    st.room(half, height, back, wall, _mul(wall, 0.9), (150, 110, 80), (220, 214, 204))
    for x in np.arange(-half, half + 0.1, 0.25):
        st.line((x, FLOOR, 0.5), (x, FLOOR, back), 0.01, (124, 88, 62))
    # Window with curtains.
    st.paste([(-1.3, -0.6, back - 0.02), (0.9, -0.6, back - 0.02), (0.9, 0.75, back - 0.02), (-1.3, 0.75, back - 0.02)], outside)
    for x in (-1.3, -0.2, 0.9):
        st.line((x, -0.6, back - 0.03), (x, 0.75, back - 0.03), 0.06, (230, 226, 220))
    st.line((-1.35, 0.75, back - 0.03), (0.95, 0.75, back - 0.03), 0.1, (230, 226, 220))
    curtain = _mix(st.mood.accent, (200, 190, 180), 0.55)
    for x0, x1 in ((-1.9, -1.15), (0.75, 1.5)):
        st.face(x0, x1, -0.85, 1.1, back - 0.04, curtain)
        for fx in np.linspace(x0 + 0.12, x1 - 0.12, 4):
            st.line((fx, -0.8, back - 0.05), (fx, 1.05, back - 0.05), 0.03, _mul(curtain, 0.78))
    st.line((-2.0, -0.88, back - 0.05), (1.6, -0.88, back - 0.05), 0.03, (70, 60, 56))
    # Sofa under the window, rug and coffee table.
    sofa = (70, 100, 110) if st.rng.random() < 0.5 else (176, 132, 60)
    st.floor_ellipse(0.0, FLOOR - 0.005, 4.8, 2.0, 1.3, _mix(st.mood.accent, (120, 90, 80), 0.6))
    st.box(-1.9, 1.5, 0.6, FLOOR, back - 1.0, back - 0.2, _mul(sofa, 0.85))
    st.box(-1.9, 1.5, 0.0, 0.6, back - 0.35, back - 0.1, sofa)
    for x0 in (-2.1, 1.3):
        st.box(x0, x0 + 0.25, 0.35, FLOOR, back - 1.05, back - 0.15, _mul(sofa, 0.75))
    for x0 in (-1.6, -0.15):
        st.box(x0, x0 + 1.25, 0.45, 0.62, back - 0.95, back - 0.35, _mul(sofa, 1.1))
    st.box(-0.7, 0.5, 1.15, FLOOR, 4.3, 5.0, (90, 62, 44))
    # Bookshelf on the right wall.
    st.box(half - 0.45, half, -0.9, FLOOR, 2.4, 4.2, (110, 78, 56))
    for y in (-0.5, 0.1, 0.7):
        z = 2.5
        while z < 4.1:
            w = float(st.rng.uniform(0.04, 0.09))
            st.wall(half - 0.45, y - float(st.rng.uniform(0.22, 0.36)), y, z, z + w,
                    [(180, 60, 50), (60, 90, 140), (220, 190, 120), (80, 130, 90), (230, 220, 200)][int(st.rng.integers(5))])  # fmt: skip
            z += w + 0.01
    # Framed pictures on the left wall.
    for z, y in ((2.6, -0.4), (4.0, -0.6), (4.0, 0.0)):
        st.wall(-half * 0.995, y - 0.35, y + 0.35, z, z + 0.7, (40, 34, 30))
        st.wall(-half * 0.99, y - 0.28, y + 0.28, z + 0.07, z + 0.63, _mix(st.mood.accent, (230, 220, 200), 0.5))
    # Floor lamp and a pendant.
    st.line((2.2, FLOOR, back - 1.3), (2.2, -0.3, back - 1.3), 0.04, (40, 36, 34))
    st.poly([(2.02, -0.75, back - 1.3), (2.38, -0.75, back - 1.3), (2.5, -0.3, back - 1.3), (1.9, -0.3, back - 1.3)], (240, 226, 200), emissive=True)
    st.light(2.2, -0.5, back - 1.3, 0.5, WARM_LAMP, 1.1, reach_m=2.4)
    st.pool(2.2, back - 1.3, 1.2, WARM_LAMP, 0.6)
    st.line((0, yc, 4.6), (0, -0.4, 4.6), 0.012, (40, 36, 34))
    st.disc(0, -0.32, 4.6, 0.17, (255, 236, 200), emissive=True)
    st.light(0, -0.3, 4.6, 0.3, WARM_LAMP, 0.8, reach_m=2.5)
    st.pool(-0.1, 4.6, 1.0, WARM_LAMP, 0.5, y=1.15)


def _set_hotel(st: _Stage, outside: np.ndarray) -> None:
    st.fog, st.fog_distance = (80, 60, 40), 60.0
    back, half, height = 20.0, 5.0, 6.0
    yc = FLOOR - height
    gold = (212, 172, 92)
    st.room(half, height, back, (112, 72, 48), (150, 112, 82), (214, 204, 188), (120, 90, 64))
    for z in np.arange(1.0, back, 1.4):  # marble tiles
        st.line((-half, FLOOR, z), (half, FLOOR, z), 0.015, (180, 168, 150))
    for x in np.arange(-half, half + 0.1, 1.4):
        st.line((x, FLOOR, 0.6), (x, FLOOR, back), 0.015, (180, 168, 150))
    st.flat(-1.0, 1.0, FLOOR - 0.002, 0.6, back, (128, 34, 44))  # carpet runner
    for x in (-1.0, 1.0):
        st.line((x, FLOOR - 0.003, 0.6), (x, FLOOR - 0.003, back), 0.04, gold)
    # Back wall: panels, a lit logo and the reception desk.
    for x in np.arange(-half, half + 0.1, 1.25):
        st.line((x, yc, back - 0.02), (x, FLOOR, back - 0.02), 0.04, (86, 54, 36))
    st.disc(0, -2.2, back - 0.03, 0.8, gold)
    st.disc(0, -2.2, back - 0.04, 0.62, (112, 72, 48))
    st.disc(0, -2.2, back - 0.05, 0.3, gold, emissive=True)
    st.light(0, -2.2, back - 0.1, 1.0, (255, 210, 140), 0.6, reach_m=3.0)
    st.box(-2.6, 2.6, 0.45, FLOOR, back - 2.0, back - 1.2, (224, 216, 204))
    st.flat(-2.65, 2.65, 0.44, back - 2.05, back - 1.15, gold)
    for x in (-1.8, 1.8):
        st.line((x, 0.44, back - 1.6), (x, 0.05, back - 1.6), 0.03, gold)
        st.light(x, -0.05, back - 1.6, 0.2, WARM_LAMP, 0.8, reach_m=1.8)
    # Columns with gold bands, sconces and palms.
    for z in (14.0, 9.5, 5.0):
        for x in (-3.3, 3.3):
            st.box(x - 0.35, x + 0.35, yc, FLOOR, z, z + 0.7, (232, 224, 212))
            for y in (yc + 0.3, FLOOR - 0.4):
                st.box(x - 0.38, x + 0.38, y, y + 0.12, z - 0.03, z + 0.73, gold)
        for x in (-half, half):
            st.light(x * 0.98, -0.6, z + 2.2, 0.25, WARM_LAMP, 0.8, reach_m=1.6)
    for x, z in ((-4.2, 3.0), (4.2, 3.0), (-4.2, 12.0), (4.2, 12.0)):
        st.box(x - 0.3, x + 0.3, 1.1, FLOOR, z, z + 0.6, gold)
        for i in range(6):
            a = i / 5 * math.pi
            st.line((x, 1.1, z), (x + 0.8 * math.cos(a), 0.25 - 0.3 * math.sin(a), z), 0.12, (60, 110, 70))
    # Chandeliers.
    for z in (6.5, 13.0):
        st.line((0, yc, z), (0, -2.6, z), 0.02, gold)
        for i in range(10):
            a = 2 * math.pi * i / 10
            st.disc(0.8 * math.cos(a), -2.45, z + 0.8 * math.sin(a), 0.07, (255, 240, 210), emissive=True)
        st.light(0, -2.5, z, 0.9, (255, 220, 170), 0.8, reach_m=5.0)
        st.reflection(0, -2.5, z, 0.8, (255, 220, 170), 0.8)


def _set_rooftop(st: _Stage, outside: np.ndarray) -> None:
    st.img[:] = outside
    st.emit[:] = 255
    st.flat(-6, 6, FLOOR, 0.5, 15.0, (96, 96, 104))  # tar roof
    for z in np.arange(1.0, 15.0, 1.5):
        st.line((-6, FLOOR, z), (6, FLOOR, z), 0.01, (84, 84, 92))
    st.box(-6.0, 6.0, 0.5, FLOOR, 15.0, 15.4, (120, 116, 118))  # parapet
    st.flat(-6.05, 6.05, 0.48, 14.95, 15.45, (150, 146, 146))
    for side in (-1, 1):
        st.box(min(side * 6.0, side * 6.4), max(side * 6.0, side * 6.4), 0.5, FLOOR, 0.5, 15.0, (120, 116, 118))
    # Water tower on the next roof, HVAC box and an antenna.
    wx, wz = float(st.rng.choice([-9.0, 9.0])), 26.0
    tower = _mix((70, 56, 50), st.fog, 0.25)
    for dx in (-1.2, 1.2):
        st.line((wx + dx, FLOOR - 4, wz), (wx + dx, FLOOR - 8, wz), 0.15, tower)
    st.face(wx - 1.6, wx + 1.6, FLOOR - 11, FLOOR - 8, wz, tower)
    st.poly([(wx - 1.7, FLOOR - 11, wz), (wx + 1.7, FLOOR - 11, wz), (wx, FLOOR - 12.5, wz)], _mul(tower, 0.8))
    st.box(2.4, 4.4, 0.6, FLOOR, 8.0, 9.5, (150, 152, 158))
    for y in np.arange(0.75, 1.5, 0.12):
        st.line((2.45, y, 7.99), (4.35, y, 7.99), 0.02, (110, 112, 118))
    st.line((-4.5, FLOOR, 12.0), (-4.5, -6.0, 12.0), 0.05, (50, 50, 56))
    st.light(-4.5, -6.0, 12.0, 0.12, (255, 60, 50), 1.0, reach_m=0.5)
    # String lights on catenaries between poles.
    bulb = _mix(WARM_LAMP, st.mood.accent, 0.25)
    for x in (-3.8, 3.8):
        for z in (3.0, 13.0):
            st.line((x, FLOOR, z), (x, -1.4, z), 0.06, (50, 44, 40))
    spans = [((-3.8, -1.4, 3.0), (3.8, -1.4, 13.0)), ((3.8, -1.4, 3.0), (-3.8, -1.4, 13.0)),
             ((-3.8, -1.4, 3.0), (-3.8, -1.4, 13.0)), ((3.8, -1.4, 3.0), (3.8, -1.4, 13.0))]  # fmt: skip
    for a, b in spans:
        pts = [(a[0] + (b[0] - a[0]) * t, a[1] + 0.9 * math.sin(math.pi * t), a[2] + (b[2] - a[2]) * t) for t in np.linspace(0, 1, 24)]
        for p, q in zip(pts[:-1], pts[1:]):
            st.line(p, q, 0.012, (40, 36, 34))
        for p in pts[1:-1:2]:
            st.disc(p[0], p[1] + 0.06, p[2], 0.05, (255, 240, 200), emissive=True)
            st.light(p[0], p[1] + 0.06, p[2], 0.12, bulb, 0.7, reach_m=0.8)


def _tree(st: _Stage, x: float, z: float, size: float, leaf: Colour) -> None:
    st.line((x, FLOOR, z), (x, FLOOR - 2.2 * size, z), 0.22 * size, (70, 52, 42))
    blobs = [(-0.9, -3.0, 1.0), (0.9, -3.1, 1.0), (0.0, -3.9, 1.25), (-0.3, -2.6, 0.9), (0.5, -4.6, 0.8)]
    for i, (dx, dy, r) in enumerate(blobs):
        shade = 0.8 + 0.08 * i
        st.disc(x + dx * size, FLOOR + dy * size, z, r * size, _mul(leaf, shade))
    st.disc(x + 0.45 * size, FLOOR - 3.9 * size, z - 0.1, 0.5 * size, _mul(leaf, 1.25))


def _set_park(st: _Stage, outside: np.ndarray) -> None:
    st.img[:] = outside
    st.emit[:] = 255
    far = 80.0
    grass = (92, 140, 78)
    st.flat(-40, 40, FLOOR, 0.5, far, grass)
    for i, z in enumerate(np.arange(2.0, far, 3.0)):  # mown stripes
        if i % 2 == 0:
            st.flat(-40, 40, FLOOR - 0.001, z, z + 1.5, _mul(grass, 1.08))
    # Distant tree line.
    for x in np.arange(-45, 45, 3.0):
        st.disc(x, FLOOR - 3.0 - float(st.rng.uniform(0, 2.5)), far, float(st.rng.uniform(2.5, 4.0)), (60, 96, 70))
    # A gently curving path.
    left, right = [], []
    for z in np.linspace(0.6, far, 30):
        bend = 1.6 * math.sin(z / 14.0)
        left.append((bend - 1.3, FLOOR - 0.002, z))
        right.append((bend + 1.3, FLOOR - 0.002, z))
    st.poly(left + right[::-1], (206, 190, 156))
    trees = [(float(st.rng.choice([-1, 1])) * float(st.rng.uniform(3.0, 12.0)), float(st.rng.uniform(5, 45))) for _ in range(16)]
    night = st.time is not TimeOfDay.day
    for x, z in sorted(trees, key=lambda t: -t[1]):
        leaf = [(64, 120, 70), (90, 140, 70), (50, 104, 80)][int(st.rng.integers(3))]
        _tree(st, x, z, float(st.rng.uniform(0.8, 1.3)), leaf)
    # Lamp posts along the path and a bench.
    for z in (30.0, 18.0, 8.0):
        bend = 1.6 * math.sin(z / 14.0)
        x = bend + 1.8
        st.line((x, FLOOR, z), (x, -1.8, z), 0.08, (36, 40, 44))
        st.disc(x, -1.95, z, 0.2, (255, 236, 200), emissive=True)
        if night:
            st.light(x, -1.95, z, 0.5, WARM_LAMP, 1.0, reach_m=4.0)
            st.pool(x - 0.4, z, 2.2, WARM_LAMP, 0.7)
    bx, bz = -2.8, 6.0
    for y in (0.75, 0.9):
        st.box(bx - 0.9, bx + 0.9, y, y + 0.07, bz, bz + 0.5, (140, 90, 56))
    st.box(bx - 0.9, bx + 0.9, 0.2, 0.32, bz + 0.45, bz + 0.52, (140, 90, 56))
    for dx in (-0.8, 0.8):
        st.line((bx + dx, 0.75, bz + 0.25), (bx + dx, FLOOR, bz + 0.25), 0.05, (40, 40, 44))
    if night:  # fireflies
        for _ in range(24):
            st.light(float(st.rng.uniform(-5, 5)), float(st.rng.uniform(-0.5, 1.4)), float(st.rng.uniform(3, 15)), 0.03,
                     (230, 255, 150), 0.8, reach_m=0.1)  # fmt: skip


def _set_station(st: _Stage, outside: np.ndarray) -> None:
    st.img[:] = outside
    st.emit[:] = 255
    far, roof = 70.0, FLOOR - 4.2
    # Tracks to the left, below the platform edge.
    st.flat(-9.0, -1.8, FLOOR + 1.1, 0.5, far, (70, 64, 60))
    for z in np.arange(1.0, far, 0.8):
        st.line((-7.5, FLOOR + 1.1, z), (-3.0, FLOOR + 1.1, z), 0.08, (56, 46, 40))
    for x in (-6.6, -5.1, -4.6, -3.1):
        st.line((x, FLOOR + 1.05, 0.6), (x, FLOOR + 1.05, far), 0.05, (170, 170, 176))
    if st.rng.random() < 0.5:  # a train waiting on the far track
        st.box(-9.5, -7.2, FLOOR - 3.0, FLOOR + 1.0, 6.0, far, (190, 196, 204))
        for z in np.arange(6.5, far, 2.4):
            st.wall(-7.2, FLOOR - 2.2, FLOOR - 1.0, z, z + 1.6, (255, 230, 180) if st.time is not TimeOfDay.day else (60, 80, 100),
                    emissive=st.time is not TimeOfDay.day)  # fmt: skip
        st.wall(-7.2, FLOOR - 0.6, FLOOR - 0.4, 6.0, far, st.mood.accent)
    st.wall(-1.8, FLOOR, FLOOR + 1.1, 0.5, far, (110, 108, 104))  # platform face
    st.flat(-1.8, 6.0, FLOOR, 0.5, far, (150, 150, 146))
    st.flat(-1.8, -1.3, FLOOR - 0.002, 0.5, far, (236, 200, 40))  # safety line
    for z in np.arange(1.0, far, 1.2):
        st.line((-1.3, FLOOR, z), (6.0, FLOOR, z), 0.01, (130, 130, 128))
    st.wall(6.0, roof, FLOOR, 0.5, far, (176, 170, 160))  # station wall with posters
    for z in np.arange(3.0, far - 5, 6.0):
        st.wall(5.98, -1.2, 0.4, z, z + 1.6, (30, 30, 34))
        poster = [st.mood.accent, (60, 120, 200), (230, 190, 90), (200, 70, 80)][int(st.rng.integers(4))]
        st.wall(5.97, -1.1, 0.3, z + 0.1, z + 1.5, poster, emissive=st.time is not TimeOfDay.day)
    st.flat(-2.2, 6.0, roof, 0.5, far, (70, 74, 82))  # canopy
    for z in np.arange(5.0, far, 3.5):
        st.flat(0.8, 1.4, roof + 0.02, z, z + 2.4, (240, 246, 255), emissive=True)
        st.light(1.1, roof + 0.1, z + 1.2, 0.5, COOL_LAMP, 0.5, reach_m=3.0)
        st.reflection(1.1, roof, z + 1.2, 0.35, COOL_LAMP, 0.6)
    for z in np.arange(9.0, far, 9.0):  # pillars, far to near
        st.box(2.9, 3.3, roof, FLOOR, far - z, far - z + 0.4, (92, 96, 104))
    for z in (8.0, 20.0):  # hanging signs and a clock
        st.line((0.2, roof, z), (0.2, -1.5, z), 0.02, (40, 40, 44))
        st.line((2.2, roof, z), (2.2, -1.5, z), 0.02, (40, 40, 44))
        st.face(0.0, 2.4, -1.5, -1.0, z, (28, 34, 60))
        st.face(0.1, 1.0, -1.4, -1.1, z - 0.01, (240, 240, 236), emissive=True)
        st.face(1.1, 2.3, -1.4, -1.1, z - 0.01, st.mood.accent, emissive=True)
    st.disc(-0.8, -1.8, 12.0, 0.45, (40, 40, 44))
    st.disc(-0.8, -1.8, 11.99, 0.38, (240, 238, 230), emissive=True)
    st.line((-0.8, -1.8, 11.98), (-0.8, -2.1, 11.98), 0.03, (30, 30, 30))
    st.line((-0.8, -1.8, 11.98), (-0.6, -1.7, 11.98), 0.03, (30, 30, 30))


_SETS: dict[Location, tuple[Callable[[_Stage, np.ndarray], None], bool]] = {  # (builder, indoors)
    Location.cafe: (_set_cafe, True),
    Location.street: (_set_street, False),
    Location.hospital: (_set_hospital, True),
    Location.elevator: (_set_elevator, True),
    Location.office: (_set_office, True),
    Location.apartment: (_set_apartment, True),
    Location.hotel: (_set_hotel, True),
    Location.rooftop: (_set_rooftop, False),
    Location.park: (_set_park, False),
    Location.station: (_set_station, False),
}


def _soft_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur computed at reduced resolution: large soft blurs cost a fraction of full-res ones."""
    if sigma <= 0.5:
        return image
    factor = 1 if sigma < 2 else (2 if sigma < 5 else 4)
    height, width = image.shape[:2]
    small = cv2.resize(image, (width // factor, height // factor), interpolation=cv2.INTER_AREA) if factor > 1 else image
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR) if factor > 1 else small


def _compose_lighting(st: _Stage, indoors: bool, light_dir: tuple[float, float]) -> np.ndarray:
    """Apply ambient level, light spill, halos and bloom; defocus for tight framings; add bokeh discs."""
    ambient = (st.sky.ambient_indoor if indoors else st.sky.ambient_outdoor) * st.mood.brightness
    low_h, low_w = st.low
    rows = np.linspace(-1, 1, low_h, dtype=np.float32)[:, None]
    cols = np.linspace(-1, 1, low_w, dtype=np.float32)[None, :]
    # Soft falloff: ceilings and the near floor sit darker, the key-light side of the room a little brighter.
    shade = ambient * (1.0 - 0.22 * np.abs(rows) ** 1.6) * (1.0 + 0.1 * light_dir[0] * cols)
    shade = shade + cv2.GaussianBlur(st.illum, (0, 0), 9.0)
    glow = cv2.GaussianBlur(st.glow, (0, 0), 2.0) + 0.45 * cv2.GaussianBlur(st.glow, (0, 0), 12.0)
    if not indoors:  # atmospheric haze band along the horizon
        band = np.exp(-(((np.arange(low_h) - st.cy / 4) / (0.06 * low_h)) ** 2)).astype(np.float32)
        glow += band[:, None, None] * np.array(st.fog, np.float32) * 0.12
    shade_full = cv2.resize(shade.astype(np.float32), (st.width, st.height), interpolation=cv2.INTER_LINEAR)
    np.maximum(shade_full, st.emit.astype(np.float32) * (1.0 / 255.0), out=shade_full)
    glow_full = cv2.resize(glow, (st.width, st.height), interpolation=cv2.INTER_LINEAR)
    lit = st.img.astype(np.float32)
    lit *= shade_full[..., None]
    lit += glow_full
    image = np.clip(lit, 0, 255).astype(np.uint8)
    if st.dof > 0:
        image = _soft_blur(image, st.dof)
    if st.dof >= 3:
        bokeh = np.zeros((*st.low, 3), np.float32)
        radius = 6.0 * st.dof / 4.0
        for u, v, rgb, strength in st.lights:
            fill = tuple(c * min(strength, 1.2) * 0.3 for c in rgb)
            cv2.circle(bokeh, (int(u / 4 * 16), int(v / 4 * 16)), int(radius * 16), fill, -1, cv2.LINE_AA, shift=4)
        bokeh = cv2.GaussianBlur(bokeh, (0, 0), 0.7)
        image = cv2.add(image, cv2.resize(np.clip(bokeh, 0, 255).astype(np.uint8), (st.width, st.height), interpolation=cv2.INTER_LINEAR))
    return image


def _light_direction(seed: int) -> tuple[float, float]:
    """Unit vector (screen coordinates) pointing towards the key light: high, from one side."""
    side = 1.0 if stable_seed("key-light", seed) % 2 else -1.0
    return (0.72 * side, -0.69)


@lru_cache(maxsize=6)
def _background_cached(location: Location, look: SetLook, seed: int, width: int, height: int) -> np.ndarray:
    # Keyframes of a shot share one set; caching it saves most of a keyframe's cost on the second and third.
    rng = np.random.default_rng(stable_seed("set", location.value, seed))
    st = _Stage(width, height, look, rng)
    builder, indoors = _SETS[location]
    outside = _sky_image(st)
    builder(st, outside)
    image = _compose_lighting(st, indoors, _light_direction(seed))
    image.setflags(write=False)
    return image


def render_background(shot: Shot, width: int = 1080, height: int = 1920) -> np.ndarray:
    """The shot's set, lit and defocused for its framing (ungraded). Identical for every keyframe of the shot."""
    look = SetLook(shot.framing, shot.mood, shot.time_of_day)
    return _background_cached(shot.location, look, shot.seed, width, height).copy()


# --- grading ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _grade_lut(mood: Mood) -> np.ndarray:
    look = MOODS[mood]
    x = np.linspace(0.0, 1.0, 256)
    channels = []
    for c in range(3):
        y = look.lift[c] + (look.gain[c] - look.lift[c]) * x ** look.gamma[c]
        y = y + look.contrast * (y * y * (3 - 2 * y) - y)  # S-curve
        channels.append(np.clip(np.round(y * 255), 0, 255))
    lut = np.stack(channels, axis=1).astype(np.uint8).reshape(1, 256, 3)
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=4)
def _vignette(width: int, height: int) -> np.ndarray:
    ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    radius = np.sqrt((xs * 0.9) ** 2 + (ys * 1.0) ** 2)
    falloff = 1.0 - 0.42 * np.clip((radius - 0.45) / 0.95, 0, 1) ** 1.8
    mask = np.repeat((falloff * 255).astype(np.uint8)[..., None], 3, axis=2)
    mask.setflags(write=False)
    return mask


def grade(image: np.ndarray, mood: Mood) -> np.ndarray:
    """The mood's colour grade and a vignette; pointwise, so a graded background lines up with the frame."""
    graded = cv2.LUT(image, _grade_lut(mood))
    return cv2.multiply(graded, _vignette(image.shape[1], image.shape[0]), scale=1.0 / 255.0)


def _graded_colour(rgb: Colour, mood: Mood, x: float, y: float, width: int, height: int) -> tuple[int, int, int]:
    lut = _grade_lut(mood)[0]
    vignette = _vignette(width, height)
    xi, yi = int(np.clip(x, 0, width - 1)), int(np.clip(y, 0, height - 1))
    k = vignette[yi, xi, 0] / 255.0
    return tuple(int(lut[int(np.clip(v, 0, 255)), c] * k) for c, v in enumerate(rgb))  # type: ignore[return-value]


# --- characters ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MouthAnchor:
    character_id: str
    x: float  # mouth centre, pixels on the final keyframe
    y: float
    width: float  # mouth width, pixels
    lip_rgb: tuple[int, int, int]


@dataclass(frozen=True)
class RenderedKeyframe:
    image: np.ndarray  # (H, W, 3) uint8 RGB: background and characters with neutral closed mouths
    background: np.ndarray  # (H, W, 3) uint8 RGB: the graded background alone (for parallax)
    character_mask: np.ndarray  # (H, W) uint8 0/255: union of the figure masks
    masks: dict[str, np.ndarray]  # per character, visible part only (occluded by nearer figures removed)
    mouths: tuple[MouthAnchor, ...]  # one per character whose face is in frame and not hidden


_STYLE_WORDS = (
    ("labcoat", ("doctor", "nurse", "surgeon", "medic", "physician", "scientist")),
    ("suit", ("ceo", "executive", "lawyer", "detective", "agent", "boss", "business", "banker", "manager", "politician", "heir")),
    ("dress", ("dress", "gown", "skirt")),
    ("hoodie", ("hoodie", "hacker", "student", "teen", "gamer")),
    ("coat", ("coat", "trench")),
)  # fmt: skip
_DEFAULT_STYLES = ("jacket", "sweater", "coat", "hoodie")
_BUILD_WIDTH = {Build.slim: 0.88, Build.average: 1.0, Build.broad: 1.17}


def outfit_style(character: Character) -> str:
    """The cut of a character's clothes: from their role and description, else a stable pick per character."""
    text = f"{character.role} {character.description}".lower()
    for style, words in _STYLE_WORDS:
        if any(word in text for word in words):
            return style
    return _DEFAULT_STYLES[stable_seed("outfit", character.id) % len(_DEFAULT_STYLES)]


@dataclass(frozen=True)
class _Swatch:
    """A fill colour with its cel shade, highlight and outline."""

    fill: Colour
    shade: Colour
    light: Colour
    line: Colour


def _swatch(rgb: Colour, key: Colour, ambient: Colour) -> _Swatch:
    fill = _mul(rgb, ambient)
    shade = _mix(_mul(fill, (0.7, 0.7, 0.8)), (40, 30, 70), 0.08)
    light = _mix(fill, key, 0.3)
    line = _mix(_mul(fill, 0.42), (20, 14, 30), 0.35)
    return _Swatch(fill, shade, light, line)


class _Painter:
    """Paints flat parts straight onto a uint8 RGB region: per-part anti-aliased coverage, outline, cel shade band
    and highlight band (found by sliding the part's own coverage towards or away from the light).

    A part's solid interior is filled by OpenCV directly; only its edge, outline and bands (a small fraction of
    the pixels) are blended in floating point, which keeps close-ups, where a torso spans the frame, cheap.
    """

    def __init__(self, region: np.ndarray, origin: tuple[int, int], light_dir: tuple[float, float], unit: float, top: float):
        self.rgb = region
        self.ox, self.oy = origin
        self.cov = np.zeros(region.shape[:2], np.uint8)
        self.light = light_dir
        self.unit = unit  # figure height, px: part sizes scale with it
        self.top = top  # canvas y of the head: parts further down receive a little less key light

    def part(
        self,
        shapes: Sequence[tuple],
        swatch: _Swatch,
        *,
        outline: float = 0.0035,
        shade: float = 0.0,
        highlight: float = 0.0,
        opacity: float = 1.0,
        clip: np.ndarray | None = None,
        keep: bool = False,
    ) -> np.ndarray | None:
        """Paint one body part. Widths are fractions of the figure height. ``keep`` returns the part's coverage
        over the whole region so later details can be clipped to it."""
        grow = min(max(outline * self.unit, 1.2), 5.0) if outline else 0.0
        shade_px, highlight_px = shade * self.unit, highlight * self.unit
        bounds = np.array([_shape_bounds(s) for s in shapes])
        pad = grow + max(shade_px, highlight_px) + 2
        h, w = self.cov.shape
        x0 = max(int(math.floor(bounds[:, 0].min() - pad)) - self.ox, 0)
        y0 = max(int(math.floor(bounds[:, 1].min() - pad)) - self.oy, 0)
        x1 = min(int(math.ceil(bounds[:, 2].max() + pad)) - self.ox, w)
        y1 = min(int(math.ceil(bounds[:, 3].max() + pad)) - self.oy, h)
        if x1 <= x0 or y1 <= y0:
            return np.zeros_like(self.cov) if keep else None
        ys, xs = slice(y0, y1), slice(x0, x1)
        offset = (self.ox + x0, self.oy + y0)
        cov = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for shape in shapes:
            _draw_shape(cov, shape, offset, 255)
        outer = cov
        if grow:
            outer = np.zeros_like(cov)
            for shape in shapes:
                _draw_shape(outer, shape, offset, 255, grow)
        if clip is not None:
            np.minimum(cov, clip[ys, xs], out=cov)
            np.minimum(outer, clip[ys, xs], out=outer)
        k = 1.0 - 0.14 * float(np.clip(((bounds[:, 1].min() + bounds[:, 3].max()) / 2 - self.top) / self.unit, 0, 1))
        fill, dark, lit, line = (np.array(c, np.float32) * k for c in (swatch.fill, swatch.shade, swatch.light, swatch.line))
        shade_band = cv2.subtract(cov, _shifted(cov, self.light[0] * shade_px, self.light[1] * shade_px)) if shade_px >= 1 else None
        light_band = cv2.subtract(cov, _shifted(cov, -self.light[0] * highlight_px, -self.light[1] * highlight_px)) if highlight_px >= 1 else None
        rgb = self.rgb[ys, xs]
        if opacity >= 0.99 and clip is None:
            # Solid interior straight from OpenCV; everything partial or banded is fixed up below.
            for shape in shapes:
                _draw_shape(rgb, shape, offset, tuple(float(c) for c in fill))
            special = (outer > 0) & (cov < 255)
            for band in (shade_band, light_band):
                if band is not None:
                    special |= band > 0
        else:
            special = outer > 0
        idx = np.nonzero(special)
        a = cov[idx].astype(np.float32)[:, None] / 255.0
        colour = np.broadcast_to(fill, (len(a), 3)).copy()
        if shade_band is not None:
            colour += (dark - colour) * (shade_band[idx].astype(np.float32)[:, None] / 255.0)
        if light_band is not None:
            colour += (lit - colour) * (light_band[idx].astype(np.float32)[:, None] / 255.0)
        if grow:
            colour = line + (colour - line) * a
            alpha = outer[idx].astype(np.float32)[:, None] / 255.0
        else:
            alpha = a
        px = rgb[idx].astype(np.float32)
        rgb[idx] = np.clip(px + (colour - px) * (alpha * opacity), 0, 255).astype(np.uint8)
        if opacity >= 0.99:
            np.maximum(self.cov[ys, xs], outer, out=self.cov[ys, xs])
        if keep:
            whole = np.zeros_like(self.cov)
            whole[ys, xs] = cov
            return whole
        return None


def _shape_bounds(shape: tuple) -> tuple[float, float, float, float]:
    kind = shape[0]
    if kind == "poly":
        pts = shape[1]
        return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()
    if kind == "circle":
        (x, y), r = shape[1], shape[2]
        return x - r, y - r, x + r, y + r
    if kind == "ellipse":
        (x, y), (ax, ay) = shape[1], shape[2]
        r = max(ax, ay)
        return x - r, y - r, x + r, y + r
    if kind == "capsule":
        (x0, y0), (x1, y1), r0, r1 = shape[1:]
        r = max(r0, r1)
        return min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r
    raise ValueError(f"unknown shape kind {kind!r}")


def _draw_shape(canvas: np.ndarray, shape: tuple, offset: tuple[float, float], colour: float | tuple, grow: float = 0.0) -> None:
    """Fill ``shape`` (canvas coordinates minus ``offset``), optionally grown by ``grow`` px all round."""
    ox, oy = offset
    kind = shape[0]
    if kind == "poly":
        pts = _fixed(shape[1] - [ox, oy])
        cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA, shift=4)
        if grow:
            cv2.polylines(canvas, [pts], True, colour, max(int(round(2 * grow)), 1), cv2.LINE_AA, shift=4)
    elif kind == "circle":
        (x, y), r = shape[1], shape[2]
        cv2.circle(canvas, (int(round((x - ox) * 16)), int(round((y - oy) * 16))), max(int((r + grow) * 16), 1), colour, -1, cv2.LINE_AA, shift=4)
    elif kind == "ellipse":
        (x, y), (ax, ay), angle = shape[1], shape[2], shape[3]
        centre = (int(round((x - ox) * 16)), int(round((y - oy) * 16)))
        axes = (max(int((ax + grow) * 16), 1), max(int((ay + grow) * 16), 1))
        cv2.ellipse(canvas, centre, axes, angle, 0, 360, colour, -1, cv2.LINE_AA, shift=4)
    elif kind == "capsule":
        p0, p1 = np.asarray(shape[1], float), np.asarray(shape[2], float)
        r0, r1 = shape[3] + grow, shape[4] + grow
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
        quad = np.array([p0 + n * r0, p1 + n * r1, p1 - n * r1, p0 - n * r0])
        cv2.fillConvexPoly(canvas, _fixed(quad - [ox, oy]), colour, cv2.LINE_AA, shift=4)
        _draw_shape(canvas, ("circle", p0, r0), offset, colour)
        _draw_shape(canvas, ("circle", p1, r1), offset, colour)


def _shifted(cov: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``cov`` translated by (dx, dy) pixels, zero-filled: out[y, x] = cov[y - dy, x - dx]."""
    dx, dy = int(round(dx)), int(round(dy))
    h, w = cov.shape
    out = np.zeros_like(cov)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = cov[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def _ring(head: HeadGeometry, v: float) -> float:
    return math.sqrt(max(1.0 - v * v, 0.0))


def _surface_u(head: HeadGeometry, longitude: float, v: float, spread: float = 1.0) -> float:
    """Across-position of a surface point, pinned to the silhouette once it turns past the visible edge."""
    angle = longitude + head.yaw
    ring = _ring(head, v) * spread
    if math.cos(angle) < 0:
        return math.copysign(ring, math.sin(angle))
    return ring * math.sin(angle)


def _head_points(head: HeadGeometry, uv: Sequence[tuple[float, float]]) -> np.ndarray:
    return np.array([head.local(u, v) for u, v in uv])


def _head_outline(head: HeadGeometry, jaw_turn: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    u, v = np.cos(t), np.sin(t)
    lower = np.clip(v, 0, 1) ** 2
    u = u * (1 - 0.26 * lower) + jaw_turn * lower
    return _head_points(head, list(zip(u, v)))


def _hair_cap(head: HeadGeometry, top: float, temple: float, depth_left: float, depth_right: float, spread: float,
              part: float = 0.0) -> np.ndarray:  # fmt: skip
    """Hair over the crown: outer arc from one side over the top to the other, back along the hairline."""
    start = math.pi - math.asin(min(depth_left / spread, 0.95))
    end = 2 * math.pi + math.asin(min(depth_right / spread, 0.95))
    arc = [(spread * math.cos(a), spread * 1.0 * math.sin(a)) for a in np.linspace(start, end, 28)]
    hairline = []
    for lon in np.linspace(math.pi / 2, -math.pi / 2, 21):
        v = temple + (top - temple) * math.cos(lon - part) ** 0.8 if abs(lon - part) < math.pi / 2 else temple
        hairline.append((_surface_u(head, lon, v, 1.02), v))
    return _head_points(head, arc + hairline)


def _figure_bounds(points: np.ndarray, unit: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0 = int(points[:, 0].min() - 0.2 * unit)
    x1 = int(points[:, 0].max() + 0.2 * unit)
    y0 = int(points[:, 1].min() - 0.2 * unit)
    y1 = int(points[:, 1].max() + 0.08 * unit)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def render_figure(
    character: Character,
    pose: FigurePose,
    canvas: np.ndarray,
    light_rgb: Colour,
    *,
    light_dir: tuple[float, float] = (-0.72, -0.69),
    ambient: Colour = (1.0, 1.0, 1.0),
    brow: float = 0.0,
) -> tuple[np.ndarray, MouthAnchor | None]:
    """Draw one character in place on ``canvas`` (H, W, 3 uint8 RGB) from the pose's keypoints.

    Returns the figure's uint8 0/255 mask over the whole canvas and where its closed mouth is (None when the
    figure has its back to the camera). ``light_rgb`` colours the rim light; ``light_dir`` points towards the key
    light in screen space; ``ambient`` tints the figure for the scene; ``brow`` knits (+) or lifts (-) the brows.
    """
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.dtype != np.uint8:
        raise ValueError(f"canvas must be an (H, W, 3) uint8 RGB array, got {canvas.shape} {canvas.dtype}")
    height, width = canvas.shape[:2]
    unit = pose.scale * height
    points = keypoints(pose, width, height).astype(np.float64)
    head = head_geometry(pose, width, height)
    mask = np.zeros((height, width), np.uint8)
    bounds = _figure_bounds(points, unit, width, height)
    mouth = None if pose.back_to_camera else _mouth(character, pose, head, ambient)
    if bounds is None:
        return mask, mouth
    x0, y0, x1, y1 = bounds
    region = canvas[y0:y1, x0:x1]
    painter = _Painter(region, (x0, y0), light_dir, unit, head.centre[1])
    _paint_body(painter, character, pose, points, head, light_rgb, ambient, brow)
    # Rim light: a thin key-coloured edge where the silhouette faces the light.
    rim_px = max(0.006 * unit, 2.0)
    rim = cv2.subtract(painter.cov, _shifted(painter.cov, -light_dir[0] * rim_px, -light_dir[1] * rim_px))
    rim = np.minimum(cv2.GaussianBlur(rim, (0, 0), max(rim_px * 0.4, 0.8)), painter.cov)
    idx = np.nonzero(rim)
    glow = rim[idx].astype(np.float32)[:, None] * (np.array(light_rgb, np.float32) * (0.75 / 255.0))
    region[idx] = np.clip(region[idx].astype(np.float32) + glow, 0, 255).astype(np.uint8)
    mask[y0:y1, x0:x1] = cv2.threshold(painter.cov, 127, 255, cv2.THRESH_BINARY)[1]
    return mask, mouth


def _lip_colour(character: Character, ambient: Colour) -> Colour:
    return _mul(_mix(_mul(hex_rgb(character.appearance.skin), 0.7), (170, 64, 78), 0.35), ambient)


def _mouth(character: Character, pose: FigurePose, head: HeadGeometry, ambient: Colour) -> MouthAnchor:
    centre = head.point(0.0, 0.56)
    left, right = head.point(-0.26, 0.56), head.point(0.26, 0.56)
    width = max(math.dist(left, right), 0.3 * head.half_width)
    lip = tuple(int(round(c)) for c in _lip_colour(character, ambient))
    return MouthAnchor(character.id, float(centre[0]), float(centre[1]), float(width), lip)  # type: ignore[arg-type]


def _paint_body(
    painter: _Painter,
    character: Character,
    pose: FigurePose,
    p: np.ndarray,
    head: HeadGeometry,
    key: Colour,
    ambient: Colour,
    brow: float,
) -> None:
    look = character.appearance
    unit = painter.unit
    bw = _BUILD_WIDTH[look.build]
    style = outfit_style(character)
    skin = _swatch(hex_rgb(look.skin), key, ambient)
    hair = _swatch(hex_rgb(look.hair), key, ambient)
    outfit = _swatch(hex_rgb(look.outfit), key, ambient)
    accent = _swatch(hex_rgb(look.accent), key, ambient)
    trousers = _swatch(_mix(hex_rgb(look.outfit), (36, 38, 52), 0.72), key, ambient)
    shoes = _swatch((44, 36, 34), key, ambient)
    back = pose.back_to_camera
    neck, r_sh, l_sh = p[1], p[2], p[5]
    # Which arm is nearer the camera: turning towards a side swings that side's shoulder away.
    turn = pose.facing
    far_side = None if abs(turn) < 0.25 else ("right" if turn > 0 else "left")  # screen side of the far arm
    arms = {"right" if r_sh[0] > l_sh[0] else "left": (p[2], p[3], p[4]), "left" if r_sh[0] > l_sh[0] else "right": (p[5], p[6], p[7])}

    if look.hair_style is HairStyle.long:
        painter.part([("poly", _head_points(head, _long_hair_back(head)))], hair, shade=0.01, highlight=0.004)
    if far_side is not None:
        _paint_arm(painter, arms[far_side], unit, bw, outfit, skin, style, accent)
    _paint_legs(painter, p, unit, bw, pose, trousers if style != "dress" else skin, shoes)
    if style == "hoodie":  # the hood lies around the neck, behind the head
        painter.part([("ellipse", (neck[0], neck[1] - 0.01 * unit), (0.07 * unit * bw, 0.035 * unit), 0)], _swatch(_mul(outfit.fill, 0.85), key, (1, 1, 1)), shade=0.01)
    painter.part([("capsule", head.local(0.0, 0.7), (neck[0], neck[1] - 0.005 * unit), 0.024 * unit * bw, 0.026 * unit * bw)],
                 _Swatch(skin.shade, _mul(skin.shade, 0.85), skin.fill, skin.line), shade=0.006)  # fmt: skip
    torso = _torso_outline(p, unit, bw, style)
    torso_cov = painter.part([("poly", torso)], outfit, shade=0.02, highlight=0.005, keep=True)
    if style in ("coat", "labcoat", "dress"):
        _paint_lower_garment(painter, p, unit, bw, style, outfit, accent)
    _paint_outfit_details(painter, p, unit, bw, style, outfit, accent, pose, torso_cov, key, ambient)
    for side, arm in arms.items():
        if side != far_side:
            _paint_arm(painter, arm, unit, bw, outfit, skin, style, accent)
    _paint_head(painter, character, head, skin, hair, back, brow, ambient)


def _torso_outline(p: np.ndarray, unit: float, bw: float, style: str) -> np.ndarray:
    neck = p[1]
    centre_x = (p[2][0] + p[5][0]) / 2
    sides = []
    for shoulder, hip in ((p[2], p[8]), (p[5], p[11])):
        out = 1.0 if shoulder[0] > centre_x else -1.0
        half = abs(shoulder[0] - centre_x)
        sides.append([
            (neck[0] + out * 0.03 * unit, neck[1] - 0.016 * unit),
            (shoulder[0] + out * 0.004 * unit * bw, shoulder[1] - 0.008 * unit),
            (shoulder[0] + out * 0.026 * unit * bw, shoulder[1] + 0.028 * unit),
            (centre_x + out * (half + 0.012 * unit) * bw, shoulder[1] + 0.11 * unit),
            (centre_x + out * half * 0.8 * bw, (shoulder[1] + hip[1]) / 2 + 0.05 * unit),
            (hip[0] + out * 0.03 * unit * bw, hip[1] + 0.0 * unit),
            (hip[0] + out * 0.032 * unit * bw, hip[1] + 0.05 * unit),
        ])  # fmt: skip
    right, left = sides
    outline = np.array(right + [((p[8][0] + p[11][0]) / 2, p[8][1] + 0.06 * unit)] + left[::-1])
    return _chaikin(outline, 2)


def _paint_arm(painter: _Painter, arm: tuple, unit: float, bw: float, sleeve: _Swatch, skin: _Swatch, style: str, accent: _Swatch) -> None:
    shoulder, elbow, wrist = (np.asarray(a, float) for a in arm)
    # The sleeve starts inside the shoulder's curve so the arm grows out of the torso rather than sitting on it.
    shoulder = shoulder + (elbow - shoulder) * 0.12 + np.array([0.0, 0.006 * unit])
    painter.part(
        [("capsule", shoulder, elbow, 0.033 * unit * bw, 0.027 * unit * bw), ("capsule", elbow, wrist, 0.027 * unit * bw, 0.022 * unit * bw)],
        sleeve, shade=0.012, highlight=0.004,
    )  # fmt: skip
    direction = (wrist - elbow) / max(float(np.hypot(*(wrist - elbow))), 1e-6)
    if style in ("sweater", "hoodie", "labcoat"):
        painter.part([("capsule", wrist - direction * 0.012 * unit, wrist, 0.024 * unit * bw, 0.024 * unit * bw)], accent if style != "labcoat" else sleeve, shade=0.006)
    hand = wrist + direction * 0.024 * unit
    angle = math.degrees(math.atan2(direction[1], direction[0])) - 90
    painter.part([("ellipse", tuple(hand), (0.019 * unit, 0.026 * unit), angle)], skin, shade=0.006)


def _paint_legs(painter: _Painter, p: np.ndarray, unit: float, bw: float, pose: FigurePose, cloth: _Swatch, shoes: _Swatch) -> None:
    shapes = []
    for hip, knee, ankle in ((p[8], p[9], p[10]), (p[11], p[12], p[13])):
        inner_hip = hip + ((p[8] + p[11]) / 2 - hip) * 0.25
        shapes += [("capsule", inner_hip, knee, 0.046 * unit * bw, 0.036 * unit * bw), ("capsule", knee, ankle, 0.035 * unit * bw, 0.026 * unit * bw)]
    painter.part(shapes, cloth, shade=0.014, highlight=0.004)
    forward = 0.014 * unit * (pose.facing if not pose.back_to_camera else -pose.facing)
    painter.part([("ellipse", (a[0] + forward, a[1] + 0.022 * unit), (0.036 * unit, 0.018 * unit), 0) for a in (p[10], p[13])], shoes, shade=0.006)


def _paint_lower_garment(painter: _Painter, p: np.ndarray, unit: float, bw: float, style: str, outfit: _Swatch, accent: _Swatch) -> None:
    centre_x = (p[8][0] + p[11][0]) / 2
    waist_y = (p[1][1] + p[8][1]) / 2 + 0.07 * unit
    hem_y = p[9][1] + (0.03 if style == "dress" else 0.01) * unit
    flare = (0.11 if style == "dress" else 0.085) * unit * bw
    top_half = abs(p[8][0] - p[11][0]) / 2 + 0.028 * unit * bw
    skirt = np.array([(centre_x - top_half, waist_y), (centre_x + top_half, waist_y),
                      (centre_x + flare, hem_y), (centre_x - flare, hem_y)])  # fmt: skip
    painter.part([("poly", _chaikin(skirt, 1))], outfit, shade=0.02, highlight=0.005)
    if style != "dress":  # the coat opens down the middle
        painter.part([("capsule", (centre_x, waist_y), (centre_x, hem_y - 0.01 * unit), 0.002 * unit, 0.002 * unit)], _Swatch(outfit.line, outfit.line, outfit.line, outfit.line), outline=0)


def _paint_outfit_details(
    painter: _Painter,
    p: np.ndarray,
    unit: float,
    bw: float,
    style: str,
    outfit: _Swatch,
    accent: _Swatch,
    pose: FigurePose,
    torso: np.ndarray,
    key: Colour,
    ambient: Colour,
) -> None:
    neck = p[1]
    hip_y = p[8][1]
    chest_x = neck[0] + 0.018 * unit * pose.facing * (-1 if pose.back_to_camera else 1)
    seam = _Swatch(outfit.line, outfit.line, outfit.line, outfit.line)
    if pose.back_to_camera:
        collar = _swatch(_mul(outfit.fill, 0.82), key, (1, 1, 1))
        painter.part([("ellipse", (neck[0], neck[1] - 0.006 * unit), (0.036 * unit, 0.014 * unit), 0)], collar, clip=torso, outline=0.0015)
        return
    if style in ("jacket", "suit", "labcoat"):
        shirt = _swatch((236, 234, 228), key, ambient) if style == "suit" else accent
        v_neck = np.array([(neck[0] - 0.032 * unit, neck[1] - 0.012 * unit), (neck[0] + 0.032 * unit, neck[1] - 0.012 * unit), (chest_x, neck[1] + 0.12 * unit)])
        painter.part([("poly", v_neck)], shirt, clip=torso, shade=0.006, outline=0)
        if style == "suit":
            tie = np.array([(chest_x - 0.008 * unit, neck[1]), (chest_x + 0.008 * unit, neck[1]), (chest_x + 0.014 * unit, neck[1] + 0.1 * unit),
                            (chest_x, neck[1] + 0.118 * unit), (chest_x - 0.014 * unit, neck[1] + 0.1 * unit)])  # fmt: skip
            painter.part([("poly", tie)], accent, clip=torso, shade=0.004)
        for side in (-1, 1):  # lapels
            lapel = np.array([(neck[0] + side * 0.034 * unit, neck[1] - 0.012 * unit), (neck[0] + side * 0.06 * unit * bw, neck[1] + 0.03 * unit),
                              (neck[0] + side * 0.035 * unit, neck[1] + 0.045 * unit), (chest_x, neck[1] + 0.125 * unit)])  # fmt: skip
            painter.part([("poly", lapel)], _swatch(_mul(outfit.fill, 0.9), key, (1, 1, 1)), clip=torso, shade=0.004, outline=0.002)
        for k in range(2):
            painter.part([("circle", (chest_x, neck[1] + (0.16 + 0.06 * k) * unit), 0.005 * unit)], seam, outline=0, clip=torso)
        if style == "labcoat":
            pocket = np.array([(chest_x + 0.03 * unit, neck[1] + 0.07 * unit), (chest_x + 0.075 * unit * bw, neck[1] + 0.07 * unit),
                               (chest_x + 0.075 * unit * bw, neck[1] + 0.11 * unit), (chest_x + 0.03 * unit, neck[1] + 0.11 * unit)])  # fmt: skip
            painter.part([("poly", pocket)], _swatch(_mul(outfit.fill, 0.93), key, (1, 1, 1)), clip=torso, outline=0.0015)
            painter.part([("capsule", (chest_x + 0.045 * unit, neck[1] + 0.055 * unit), (chest_x + 0.045 * unit, neck[1] + 0.085 * unit), 0.004 * unit, 0.004 * unit)], accent, outline=0.001)
    elif style == "hoodie":
        for side in (-1, 1):
            painter.part([("capsule", (neck[0] + side * 0.02 * unit, neck[1] + 0.0 * unit), (chest_x + side * 0.024 * unit, neck[1] + 0.1 * unit), 0.0035 * unit, 0.003 * unit)], accent, outline=0.001)
        pocket = np.array([(chest_x - 0.07 * unit * bw, hip_y - 0.09 * unit), (chest_x + 0.07 * unit * bw, hip_y - 0.09 * unit),
                           (chest_x + 0.09 * unit * bw, hip_y - 0.01 * unit), (chest_x - 0.09 * unit * bw, hip_y - 0.01 * unit)])  # fmt: skip
        painter.part([("poly", pocket)], _swatch(_mul(outfit.fill, 0.9), key, (1, 1, 1)), clip=torso, outline=0.0015)
    elif style == "sweater":
        painter.part([("ellipse", (neck[0], neck[1] - 0.008 * unit), (0.04 * unit, 0.017 * unit), 0)], accent, clip=torso, shade=0.004)
        for k, offset in enumerate((0.1, 0.125)):
            y = neck[1] + offset * unit
            stripe = np.array([(neck[0] - 0.3 * unit, y), (neck[0] + 0.3 * unit, y), (neck[0] + 0.3 * unit, y + 0.012 * unit), (neck[0] - 0.3 * unit, y + 0.012 * unit)])
            painter.part([("poly", stripe)], accent, clip=torso, outline=0, shade=0.004)
    elif style == "coat":
        for side in (-1, 1):  # turned-up collar
            collar = np.array([(neck[0] + side * 0.018 * unit, neck[1] - 0.03 * unit), (neck[0] + side * 0.062 * unit * bw, neck[1] + 0.01 * unit),
                               (chest_x + side * 0.012 * unit, neck[1] + 0.075 * unit)])  # fmt: skip
            painter.part([("poly", collar)], accent, shade=0.004, outline=0.002)
        belt = np.array([(neck[0] - 0.3 * unit, hip_y - 0.07 * unit), (neck[0] + 0.3 * unit, hip_y - 0.07 * unit),
                         (neck[0] + 0.3 * unit, hip_y - 0.05 * unit), (neck[0] - 0.3 * unit, hip_y - 0.05 * unit)])  # fmt: skip
        painter.part([("poly", belt)], accent, clip=torso, outline=0, shade=0.004)
    elif style == "dress":
        painter.part([("ellipse", (neck[0], neck[1] + 0.004 * unit), (0.04 * unit, 0.03 * unit), 0)], _swatch(_mul(outfit.fill, 1.0), key, (1, 1, 1)), clip=torso, outline=0.0015)
        waist_y = (neck[1] + hip_y) / 2 + 0.06 * unit
        band = np.array([(neck[0] - 0.3 * unit, waist_y), (neck[0] + 0.3 * unit, waist_y), (neck[0] + 0.3 * unit, waist_y + 0.02 * unit), (neck[0] - 0.3 * unit, waist_y + 0.02 * unit)])
        painter.part([("poly", band)], accent, clip=torso, outline=0, shade=0.004)


def _long_hair_back(head: HeadGeometry) -> list[tuple[float, float]]:
    shift = -0.18 * math.sin(head.yaw)
    outline = [(-1.12, 0.0), (-1.18, 1.1), (-1.26, 2.0), (-1.0, 2.55), (0.0, 2.65), (1.0, 2.55), (1.26, 2.0), (1.18, 1.1), (1.12, 0.0)]
    top = [(1.12 * math.cos(a), 1.1 * math.sin(a)) for a in np.linspace(2 * math.pi, math.pi, 16)]
    pts = np.array(outline + top)
    pts[:, 0] += shift
    return [tuple(q) for q in _chaikin(pts, 2)]


def _paint_head(painter: _Painter, character: Character, head: HeadGeometry, skin: _Swatch, hair: _Swatch, back: bool, brow: float, ambient: Colour) -> None:
    style = character.appearance.hair_style
    jaw = 0.1 * math.sin(head.yaw) if not back else 0.0
    side_depth = 0.4 * math.sin(head.yaw)
    depth_left, depth_right = 0.08 + max(side_depth, 0.0), 0.08 + max(-side_depth, 0.0)
    if style is HairStyle.bun:  # the bun sits behind the crown
        bun_centre = head.local(-0.25 * math.sin(head.yaw), -1.05 if not back else -0.8)
        painter.part([("circle", bun_centre, 0.5 * head.half_width)], hair, shade=0.008, highlight=0.003)
    painter.part([("poly", _head_outline(head, jaw))], skin, shade=0.012, highlight=0.004)
    ears = [lon for lon in (-math.pi / 2, math.pi / 2) if head.visible(lon, -0.35)]
    for lon in ears:
        u = _surface_u(head, lon, 0.1) * 1.02
        painter.part([("ellipse", head.local(u, 0.1), (0.15 * head.half_width, 0.2 * head.half_height), math.degrees(head.tilt))], skin, shade=0.004)
    if back:
        if style is not HairStyle.bald:
            cap = [(1.07 * math.cos(a), min(1.05 * math.sin(a), 0.62)) for a in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
            shapes = [("poly", _head_points(head, cap))]
            if style is HairStyle.curly:
                shapes += [("circle", head.local(1.0 * math.cos(a), min(1.0 * math.sin(a), 0.4)), 0.3 * head.half_width) for a in np.linspace(0, 2 * math.pi, 14, endpoint=False)]
            painter.part(shapes, hair, shade=0.01, highlight=0.004)
        return
    _paint_face(painter, character, head, skin, hair, brow, ambient)
    if style is HairStyle.short:
        cap = _hair_cap(head, top=-0.42, temple=-0.02, depth_left=depth_left, depth_right=depth_right, spread=1.07, part=0.35)
        tips = [("poly", _head_points(head, [(_surface_u(head, lon, -0.5), -0.55), (_surface_u(head, lon + 0.28, -0.5), -0.5), (_surface_u(head, lon + 0.05, -0.25), -0.22)]))
                for lon in (-0.55, -0.2) if head.visible(lon + 0.1, 0.15)]  # fmt: skip
        painter.part([("poly", cap)] + tips, hair, shade=0.008, highlight=0.004)
    elif style is HairStyle.long:
        cap = _hair_cap(head, top=-0.46, temple=0.05, depth_left=depth_left + 0.2, depth_right=depth_right + 0.2, spread=1.1, part=0.3)
        locks = []
        for lon, sign in ((-1.05, -1), (1.05, 1)):
            if head.visible(lon, -0.3):
                # Locks frame the face and fall straight past the jaw onto the shoulders.
                inner = [(_surface_u(head, lon, v), v) for v in np.linspace(-0.2, 0.6, 5)]
                inner += [(sign * 0.93, 1.0), (sign * 0.96, 1.55)]
                outer = [(sign * 1.22, 1.55), (sign * 1.2, 0.8)]
                outer += [(_surface_u(head, sign * math.pi / 2, v, 1.12) + sign * 0.06, v) for v in np.linspace(0.4, -0.2, 4)]
                locks.append(("poly", _chaikin(_head_points(head, inner + outer), 1)))
        painter.part([("poly", cap)] + locks, hair, shade=0.01, highlight=0.004)
    elif style is HairStyle.bun:
        cap = _hair_cap(head, top=-0.55, temple=-0.1, depth_left=depth_left, depth_right=depth_right, spread=1.04, part=0.0)
        painter.part([("poly", cap)], hair, shade=0.008, highlight=0.004)
    elif style is HairStyle.curly:
        cap = _hair_cap(head, top=-0.38, temple=0.05, depth_left=depth_left + 0.15, depth_right=depth_right + 0.15, spread=1.12, part=0.0)
        curls = [("circle", head.local(1.08 * math.cos(a), 1.06 * math.sin(a)), 0.3 * head.half_width) for a in np.linspace(math.pi * 0.9, math.pi * 2.1, 13)]
        curls += [("circle", head.local(_surface_u(head, lon, -0.42), -0.42 + 0.12 * abs(lon)), 0.2 * head.half_width)
                  for lon in np.linspace(-1.2, 1.2, 7) if head.visible(lon, -0.2)]  # fmt: skip
        painter.part([("poly", cap)] + curls, hair, shade=0.01, highlight=0.004)
    else:  # bald: a soft sheen on the scalp
        painter.part([("ellipse", head.local(-0.3 * math.copysign(1, painter.light[0]) * -1, -0.62), (0.3 * head.half_width, 0.14 * head.half_height), math.degrees(head.tilt))],
                     _Swatch(skin.light, skin.light, skin.light, skin.light), outline=0, opacity=0.5)  # fmt: skip


def _paint_face(painter: _Painter, character: Character, head: HeadGeometry, skin: _Swatch, hair: _Swatch, brow: float, ambient: Colour) -> None:
    a = head.half_width
    tilt = math.degrees(head.tilt)
    dark = _Swatch(_mul((34, 26, 30), ambient), (20, 16, 20), (34, 26, 30), (20, 16, 20))
    sparkle = _Swatch((250, 250, 255), (250, 250, 255), (250, 250, 255), (250, 250, 255))
    brow_colour = _mix(hair.fill, (30, 22, 22), 0.45) if character.appearance.hair_style is not HairStyle.bald else _mul(skin.fill, 0.5)
    brow_swatch = _Swatch(brow_colour, brow_colour, brow_colour, brow_colour)
    blush = _swatch((236, 120, 128), (255, 255, 255), ambient)
    for lon in (-0.7, 0.7):  # cheeks
        if head.visible(lon, 0.2):
            fore = max(math.cos(lon + head.yaw), 0.3)
            painter.part([("ellipse", head.point(lon, 0.32), (0.17 * a * fore, 0.09 * a), tilt)], blush, outline=0, opacity=0.22)
    for lon, inner_sign in ((-0.42, 1), (0.42, -1)):  # eyes and brows; inner_sign points towards the nose
        if not head.visible(lon, 0.12):
            continue
        fore = max(math.cos(lon + head.yaw), 0.35)
        eye = head.point(lon, 0.02)
        painter.part([("ellipse", eye, (0.115 * a * fore, 0.15 * a), tilt)], dark, outline=0)
        lid = [head.point(lon + t, -0.17 - 0.05 * math.cos(t * 6)) for t in (-0.17, -0.06, 0.06, 0.17)]
        painter.part([("capsule", p, q, 0.022 * a, 0.022 * a) for p, q in zip(lid[:-1], lid[1:])], dark, outline=0)
        glint = (eye[0] + 0.035 * a * fore * (1 if painter.light[0] > 0 else -1), eye[1] - 0.05 * a)
        painter.part([("circle", glint, 0.04 * a)], sparkle, outline=0)
        inner = head.point(lon + inner_sign * 0.22, -0.3 + 0.12 * brow)
        outer = head.point(lon - inner_sign * 0.2, -0.34 - 0.04 * brow)
        painter.part([("capsule", inner, outer, 0.042 * a, 0.03 * a)], brow_swatch, outline=0)
    if head.visible(0.0, -0.2):  # nose: a small shadow shape on the side away from the light
        side = -1.0 if painter.light[0] > 0 else 1.0
        tip = head.point(side * 0.05, 0.3)
        bridge = head.point(side * 0.1, 0.1)
        nose = _Swatch(skin.shade, skin.shade, skin.shade, skin.shade)
        painter.part([("capsule", bridge, tip, 0.012 * a, 0.03 * a)], nose, outline=0)
        lip = _lip_colour(character, ambient)
        left, right = head.point(-0.24, 0.56), head.point(0.24, 0.56)
        painter.part([("capsule", left, right, 0.028 * a, 0.028 * a)], _Swatch(lip, lip, lip, lip), outline=0)


# --- keyframes -----------------------------------------------------------------------------------------------


def _floor_shadow(canvas: np.ndarray, pose: FigurePose, light_dir: tuple[float, float], strength: float) -> None:
    """A soft contact shadow under the feet, thrown a little away from the key light."""
    height, width = canvas.shape[:2]
    if pose.ground_y > 1.02:
        return
    unit = pose.scale * height
    cx = pose.x * width - light_dir[0] * 0.08 * unit
    cy = pose.ground_y * height
    rx, ry = 0.16 * unit, 0.03 * unit
    x0, x1 = int(max(cx - 2 * rx, 0)), int(min(cx + 2 * rx, width))
    y0, y1 = int(max(cy - 4 * ry, 0)), int(min(cy + 4 * ry, height))
    if x1 <= x0 or y1 <= y0:
        return
    shadow = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(shadow, (int((cx - x0) * 16), int((cy - y0) * 16)), (int(rx * 16), int(ry * 16)), 0, 0, 360, strength, -1, cv2.LINE_AA, shift=4)
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(ry * 0.6, 1.0))
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region * (1.0 - shadow[..., None])).astype(np.uint8)


def _render_defocused(character: Character, pose: FigurePose, image: np.ndarray, sigma: float, **figure_args) -> np.ndarray:
    """Draw an out-of-focus figure (the over-the-shoulder foreground) over ``image``; returns its mask.

    It is blurred anyway, so it is drawn at half resolution, defocused there and upscaled: a fraction of the cost
    of drawing a frame-filling figure at full size.
    """
    height, width = image.shape[:2]
    small = cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    small_mask, _ = render_figure(character, pose, small, **figure_args)
    ys, xs = np.nonzero(small_mask)
    if len(ys) == 0:
        return np.zeros((height, width), np.uint8)
    margin = int(1.5 * sigma) + 4
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, height // 2)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, width // 2)
    soft = cv2.GaussianBlur(small_mask[y0:y1, x0:x1], (0, 0), sigma / 2)
    figure = cv2.GaussianBlur(small[y0:y1, x0:x1], (0, 0), sigma / 2)
    size = (min(2 * x1, width) - 2 * x0, min(2 * y1, height) - 2 * y0)
    soft = cv2.resize(soft, size, interpolation=cv2.INTER_LINEAR)
    figure = cv2.resize(figure, size, interpolation=cv2.INTER_LINEAR)
    region = image[2 * y0:2 * y0 + size[1], 2 * x0:2 * x0 + size[0]]
    alpha = soft.astype(np.float32)[..., None] / 255.0
    region[:] = (region * (1 - alpha) + figure * alpha).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[2 * y0:2 * y0 + size[1], 2 * x0:2 * x0 + size[0]] = np.where(soft >= 128, 255, 0)
    return mask


def _figure_ambient(shot: Shot) -> Colour:
    sky = SKIES[shot.time_of_day]
    level = 0.78 + 0.22 * min(sky.ambient_indoor * MOODS[shot.mood].brightness, 1.0)
    tint = MOODS[shot.mood].tint
    return tuple(level * (0.65 + 0.35 * t) for t in tint)  # type: ignore[return-value]


def render_keyframe(manifest: EpisodeManifest, shot: Shot, plan: KeyframePlan,
                    size: tuple[int, int] | None = None) -> RenderedKeyframe:
    """Render one keyframe of ``shot`` at the manifest's frame size from its storyboard ``plan``, or at ``size``
    (width, height) for a draft: the same picture with every length scaled, for a fraction of the cost."""
    width, height = size or (manifest.width, manifest.height)
    if width <= 0 or height <= 0:
        raise ValueError(f"keyframe size must be positive, got {width}x{height}")
    known = {c.id for c in manifest.characters}
    for pose in plan.figures:
        if pose.character_id not in known:
            raise KeyError(f"shot {shot.id}: plan places unknown character {pose.character_id!r}")
    look = MOODS[shot.mood]
    light_dir = _light_direction(shot.seed)
    background = render_background(shot, width, height)
    image = background.copy()
    ambient = _figure_ambient(shot)
    _, dof = LENS[shot.framing]
    raw_masks: list[tuple[str, np.ndarray]] = []
    anchors: dict[str, MouthAnchor] = {}
    for pose in sorted(plan.figures, key=lambda f: f.depth):
        character = manifest.character(pose.character_id)
        _floor_shadow(image, pose, light_dir, 0.45)
        if pose.back_to_camera:  # the foreground shoulder is out of focus like the set behind
            mask, mouth = _render_defocused(character, pose, image, dof * 0.8, light_rgb=look.key, light_dir=light_dir, ambient=_mul(ambient, 0.8)), None
        else:
            mask, mouth = render_figure(character, pose, image, look.key, light_dir=light_dir, ambient=ambient, brow=look.brow)
        raw_masks.append((pose.character_id, mask))
        if mouth is not None:
            anchors[pose.character_id] = mouth
    masks: dict[str, np.ndarray] = {}
    union = np.zeros((height, width), np.uint8)
    for index, (character_id, mask) in enumerate(raw_masks):
        visible = mask.copy()
        for _, nearer in raw_masks[index + 1:]:
            visible[nearer > 0] = 0
        masks[character_id] = visible
        np.maximum(union, mask, out=union)
    mouths = []
    for character_id, anchor in anchors.items():
        x, y = int(round(anchor.x)), int(round(anchor.y))
        if 0 <= x < width and 0 <= y < height and masks[character_id][y, x] > 0:
            lip = _graded_colour(anchor.lip_rgb, shot.mood, anchor.x, anchor.y, width, height)
            mouths.append(MouthAnchor(anchor.character_id, anchor.x, anchor.y, anchor.width, lip))
    return RenderedKeyframe(
        image=grade(image, shot.mood),
        background=grade(background, shot.mood),
        character_mask=union,
        masks=masks,
        mouths=tuple(mouths),
    )

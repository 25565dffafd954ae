"""Storyboard: where each character stands and how it gestures on every keyframe of a shot.

A plan is a handful of numbers per figure (``FigurePose``). ``keypoints`` turns a pose into the 18 COCO body
keypoints that both the procedural renderer and the OpenPose-style pose map are built from, so a pose map
handed to a ControlNet backend and the procedural frame always agree.

Camera convention: the camera sits at eye level, so every standing figure's eyes rest on the horizon
(``EYE_LINE`` per framing); the renderer puts the set's horizon on the same line.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np

from .manifest import Beat, EpisodeManifest, Framing, Mood, Shot

# Body proportions as fractions of the figure height, measured down from the top of the head.
HEAD_CENTRE = 0.078
HEAD_HALF_WIDTH = 0.056
HEAD_HALF_HEIGHT = 0.074
EYE_LEVEL = 0.08  # eyes sit just below the head's equator
NECK = 0.176  # base of the neck, between the shoulders
HEAD_PIVOT = 0.138  # head tilts about the top of the neck
SHOULDER_HALF = 0.1
UPPER_ARM = 0.152
FOREARM = 0.138
HIP = 0.50
HIP_HALF = 0.052
KNEE = 0.735
ANKLE = 0.962
CLOSE_FIGURE_SCALE = 1.2  # figure height / frame height above which a figure is framed in close-up
HEAD_YAW = 0.65  # radians of head turn at |facing| = 1 (three-quarter view)
BODY_YAW = 0.45

# Screen height (0..1) of the horizon, where an eye-level camera puts standing figures' eyes.
EYE_LINE: dict[Framing, float] = {
    Framing.wide: 0.50,
    Framing.two_shot: 0.36,
    Framing.medium: 0.29,
    Framing.over_shoulder: 0.31,
    Framing.close_up: 0.265,
}

# COCO-18 order used by OpenPose: nose, neck, r/l shoulder-elbow-wrist, r/l hip-knee-ankle, r/l eye, r/l ear.
KEYPOINT_NAMES = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
# OpenPose limb pairs (0-based) and colours, as drawn by the reference OpenPose/ControlNet annotator.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
POSE_COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip


@dataclass(frozen=True)
class FigurePose:
    character_id: str
    x: float  # horizontal centre, 0..1 of frame width
    ground_y: float  # feet line, 0..1 of frame height (> 1 when the feet are below the frame)
    scale: float  # figure height as a fraction of frame height
    facing: float  # -1 turned to screen left .. 1 turned to screen right (three-quarter at the extremes)
    head_tilt: float  # radians, positive tilts the head clockwise on screen
    arm_left: float  # the character's left shoulder angle, radians: 0 hangs down, positive swings outward/up
    arm_right: float
    depth: int  # draw order, 0 = back
    back_to_camera: bool = False  # over-the-shoulder foreground figures are seen from behind

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"figure {self.character_id!r}: scale must be positive, got {self.scale}")
        if not -1.0 <= self.facing <= 1.0:
            raise ValueError(f"figure {self.character_id!r}: facing must be in [-1, 1], got {self.facing}")
        values = (self.x, self.ground_y, self.scale, self.head_tilt, self.arm_left, self.arm_right)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"figure {self.character_id!r}: pose values must be finite")


@dataclass(frozen=True)
class KeyframePlan:
    index: int
    figures: tuple[FigurePose, ...]


@dataclass(frozen=True)
class HeadGeometry:
    """The head as an ellipsoid on screen: features are placed by longitude so a turned head reads as 3/4."""

    centre: tuple[float, float]
    half_width: float
    half_height: float
    tilt: float
    yaw: float  # longitude offset: a feature at longitude t appears at sin(t + yaw), visible while cos(t + yaw) > 0

    def point(self, longitude: float, v: float) -> tuple[float, float]:
        """Screen position of the surface point at ``longitude`` and height ``v`` (-1 top .. 1 chin)."""
        ring = math.sqrt(max(1.0 - v * v, 0.0))
        return self.local(ring * math.sin(longitude + self.yaw), v)

    def local(self, u: float, v: float) -> tuple[float, float]:
        """Screen position of head-frame coordinates (u across, v down, both in half-axis units)."""
        dx, dy = u * self.half_width, v * self.half_height
        cos_t, sin_t = math.cos(self.tilt), math.sin(self.tilt)
        return (self.centre[0] + dx * cos_t - dy * sin_t, self.centre[1] + dx * sin_t + dy * cos_t)

    def visible(self, longitude: float, margin: float = 0.0) -> bool:
        return math.cos(longitude + self.yaw) > margin


def figure_height_px(pose: FigurePose, height: int) -> float:
    return pose.scale * height


def side_sign(pose: FigurePose) -> float:
    """Screen x sign of the character's right side: their right is on screen left when they face the camera."""
    return 1.0 if pose.back_to_camera else -1.0


def head_geometry(pose: FigurePose, width: int, height: int) -> HeadGeometry:
    body = figure_height_px(pose, height)
    top = pose.ground_y * height - body
    neck_x = pose.x * width
    pivot = (neck_x, top + HEAD_PIVOT * body)
    # The head leans a little into the direction it turns, then tilts about the top of the neck.
    offset_x, offset_y = 0.012 * body * pose.facing, -(HEAD_PIVOT - HEAD_CENTRE) * body
    cos_t, sin_t = math.cos(pose.head_tilt), math.sin(pose.head_tilt)
    centre = (pivot[0] + offset_x * cos_t - offset_y * sin_t, pivot[1] + offset_x * sin_t + offset_y * cos_t)
    yaw = HEAD_YAW * pose.facing
    if pose.back_to_camera:
        yaw = math.pi - yaw
    return HeadGeometry(centre, HEAD_HALF_WIDTH * body, HEAD_HALF_HEIGHT * body, pose.head_tilt, yaw)


def _arm(shoulder: np.ndarray, angle: float, outward: float, body: float) -> tuple[np.ndarray, np.ndarray]:
    # Raised arms bend at the elbow so gestures read as gestures, not as a semaphore.
    bend = 0.12 + 0.55 * min(max(angle, 0.0), 1.6)
    elbow = shoulder + UPPER_ARM * body * np.array([outward * math.sin(angle), math.cos(angle)])
    fore = angle + bend
    wrist = elbow + FOREARM * body * np.array([outward * math.sin(fore), math.cos(fore)])
    return elbow, wrist


def keypoints(pose: FigurePose, width: int, height: int) -> np.ndarray:
    """(18, 2) float32 pixel coordinates of the COCO-18 keypoints; shared by the pose map and the renderer."""
    body = figure_height_px(pose, height)
    top = pose.ground_y * height - body
    cx = pose.x * width
    right = side_sign(pose)  # screen direction of the character's right side
    squeeze = math.cos(BODY_YAW * pose.facing)  # a turned torso is narrower on screen
    shoulder_half = SHOULDER_HALF * body * squeeze
    hip_half = HIP_HALF * body * squeeze
    neck = np.array([cx, top + NECK * body])
    r_shoulder = neck + [right * shoulder_half, 0.012 * body]
    l_shoulder = neck + [-right * shoulder_half, 0.012 * body]
    r_elbow, r_wrist = _arm(r_shoulder, pose.arm_right, right, body)
    l_elbow, l_wrist = _arm(l_shoulder, pose.arm_left, -right, body)
    drift = 0.01 * body * pose.facing  # feet step slightly towards where the figure faces
    points = {
        "neck": neck,
        "r_shoulder": r_shoulder, "r_elbow": r_elbow, "r_wrist": r_wrist,
        "l_shoulder": l_shoulder, "l_elbow": l_elbow, "l_wrist": l_wrist,
        "r_hip": np.array([cx + right * hip_half, top + HIP * body]),
        "r_knee": np.array([cx + right * 0.048 * body * squeeze + drift, top + KNEE * body]),
        "r_ankle": np.array([cx + right * 0.05 * body * squeeze + 1.5 * drift, top + ANKLE * body]),
        "l_hip": np.array([cx - right * hip_half, top + HIP * body]),
        "l_knee": np.array([cx - right * 0.048 * body * squeeze + drift, top + KNEE * body]),
        "l_ankle": np.array([cx - right * 0.05 * body * squeeze + 1.5 * drift, top + ANKLE * body]),
    }  # fmt: skip
    head = head_geometry(pose, width, height)
    # Longitudes: negative is the character's right; the yaw (with a half turn when seen from behind) does the rest.
    points["nose"] = np.array(head.point(0.0, 0.18))
    points["r_eye"] = np.array(head.point(-0.42, -0.02))
    points["l_eye"] = np.array(head.point(0.42, -0.02))
    points["r_ear"] = np.array(head.point(-math.pi / 2, 0.08))
    points["l_ear"] = np.array(head.point(math.pi / 2, 0.08))
    return np.array([points[name] for name in KEYPOINT_NAMES], dtype=np.float32)


def keypoint_visibility(pose: FigurePose, width: int, height: int) -> np.ndarray:
    """(18,) bool: inside the frame and not hidden behind the head (what an OpenPose detector would find)."""
    points = keypoints(pose, width, height)
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    head = head_geometry(pose, width, height)
    facing_camera = {"nose": 0.0, "r_eye": -0.42, "l_eye": 0.42, "r_ear": -math.pi / 2, "l_ear": math.pi / 2}
    for name, longitude in facing_camera.items():
        margin = -0.35 if name.endswith("ear") else 0.05
        if not head.visible(longitude, margin):
            inside[KEYPOINT_NAMES.index(name)] = False
    return inside


def render_pose_map(plan: KeyframePlan, width: int = 1080, height: int = 1920) -> np.ndarray:
    """OpenPose-style skeletons (COCO-18 limbs and colours) on black, RGB uint8, back figures first."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    stick = max(4, round(4 * min(width, height) / 512))
    for pose in sorted(plan.figures, key=lambda p: p.depth):
        points = keypoints(pose, width, height)
        seen = keypoint_visibility(pose, width, height)
        for limb_index, (a, b) in enumerate(LIMBS):
            if not (seen[a] and seen[b]):
                continue
            (xa, ya), (xb, yb) = points[a], points[b]
            length = math.hypot(xb - xa, yb - ya)
            angle = math.degrees(math.atan2(yb - ya, xb - xa))
            centre = (int(round((xa + xb) / 2)), int(round((ya + yb) / 2)))
            polygon = cv2.ellipse2Poly(centre, (int(length / 2), stick), int(angle), 0, 360, 1)
            colour = tuple(int(c * 0.6) for c in POSE_COLOURS[limb_index])
            cv2.fillConvexPoly(canvas, polygon, colour, cv2.LINE_AA)
        for index in np.flatnonzero(seen):
            x, y = points[index]
            cv2.circle(canvas, (int(round(x)), int(round(y))), stick, POSE_COLOURS[index], -1, cv2.LINE_AA)
    return canvas


# --- planning ---------------------------------------------------------------------------------------------

_MOVE_WORDS = ("walk", "step", "approach", "enter", "cross", "run", "rush", "move", "follow", "hurr", "stride", "pace", "leav", "exit", "storm")
_TURN_WORDS = ("turn", "look", "glanc", "spin", "whirl", "face", "notice", "stare")
_GESTURE_WORDS = ("point", "reach", "gestur", "rais", "wave", "grab", "hand", "offer", "show", "hold", "lift", "slam", "throw", "take", "give", "pull", "push", "open")
_HEAD_WORDS = ("nod", "bow", "lower", "sigh", "cry", "tear", "down", "asham", "hesitat", "whisper")
_CLOSER_WORDS = ("hug", "embrac", "kiss", "lean", "close", "touch", "dance")
_CHEER_WORDS = ("laugh", "celebrat", "cheer", "shrug", "jump", "throws up")

_BEAT_ENERGY = {
    Beat.hook: 1.2, Beat.setup: 0.8, Beat.turn: 1.0, Beat.escalation: 1.15, Beat.reveal: 1.2, Beat.cliffhanger: 1.25,
}  # fmt: skip
_MOOD_STANCE = {  # (resting arm angle, resting head tilt magnitude): how a mood holds the body
    Mood.tense: (0.06, 0.02), Mood.mysterious: (0.08, 0.05), Mood.warm: (0.14, 0.06), Mood.romantic: (0.12, 0.1),
    Mood.eerie: (0.04, 0.08), Mood.hopeful: (0.16, 0.04), Mood.somber: (0.04, 0.1), Mood.playful: (0.3, 0.12),
}  # fmt: skip


def stable_seed(*parts: object) -> int:
    """A process-independent integer for seeding (Python's hash() is salted per process)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def _mentions(text: str, words: Sequence[str]) -> bool:
    return any(word in text for word in words)


def focus_character(shot: Shot) -> str | None:
    """Whom the shot is about: its first speaker, else its first listed character."""
    if shot.dialogue:
        return shot.dialogue[0].speaker
    return shot.characters[0] if shot.characters else None


def _actor(shot: Shot, manifest: EpisodeManifest | None) -> str | None:
    text = shot.action.lower()
    for character_id in shot.characters:
        names = [character_id.replace("_", " ").replace("-", " ")]
        if manifest is not None:
            names.append(manifest.character(character_id).name.lower().split()[0])
        if any(name and name in text for name in names):
            return character_id
    return focus_character(shot)


def _standing(character_id: str, x: float, scale: float, eye_line: float, facing: float, depth: int, **extra) -> FigurePose:
    # Eye-level camera: whatever the scale, the eyes of a standard-height figure land on the horizon.
    top = eye_line - EYE_LEVEL * scale
    return FigurePose(character_id, x, top + scale, scale, facing, 0.0, 0.1, 0.1, depth, **extra)


def _layout(shot: Shot, focus: str, rng: np.random.Generator) -> list[FigurePose]:
    framing, eye = shot.framing, EYE_LINE[shot.framing]
    cast = list(shot.characters)
    if framing is Framing.close_up:
        return [_standing(focus, 0.5, 2.1, eye, float(rng.uniform(-0.3, 0.3)), 0)]
    if framing is Framing.over_shoulder:
        others = [c for c in cast if c != focus]
        if not others:
            return [_standing(focus, 0.5, 1.2, eye, float(rng.choice([-0.35, 0.35])), 0)]
        side = float(rng.choice([-1.0, 1.0]))  # screen side of the foreground shoulder
        poses = [
            _standing(focus, 0.5 - 0.13 * side, 1.15, eye, 0.7 * side, 1),
            _standing(others[0], 0.5 + 0.4 * side, 2.3, eye + 0.07, -0.55 * side, 2, back_to_camera=True),
        ]
        if len(others) > 1:
            poses.append(_standing(others[1], 0.5 - 0.36 * side, 0.8, eye, 0.5 * side, 0))  # beyond the speaker
        return poses
    count = len(cast)
    spreads = {
        Framing.wide: {1: [0.5], 2: [0.36, 0.64], 3: [0.3, 0.5, 0.7]},
        Framing.two_shot: {1: [0.5], 2: [0.3, 0.7], 3: [0.2, 0.5, 0.8]},
        Framing.medium: {1: [0.5], 2: [0.27, 0.73], 3: [0.18, 0.5, 0.82]},
    }[framing][count]
    base_scale = {Framing.wide: 0.36, Framing.two_shot: 0.72, Framing.medium: 0.95}[framing]
    base_scale *= {1: 1.0, 2: 0.95, 3: 0.8}[count] if framing is not Framing.wide else 1.0
    poses = []
    for slot, (character_id, x) in enumerate(zip(cast, spreads)):
        if count == 1:
            facing = float(rng.uniform(-0.3, 0.3))
        elif slot == 0:
            facing = 0.6
        elif slot == count - 1:
            facing = -0.6
        else:  # the middle of three turns to whoever speaks, else to the camera's left figure
            speaker_slot = cast.index(focus)
            facing = 0.0 if speaker_slot == slot else (0.5 if speaker_slot > slot else -0.5)
        # The focus stands a step nearer the camera; an eye-level camera keeps everyone's eyes on the horizon.
        distance = 1.0 if character_id == focus else float(rng.uniform(0.86, 0.95))
        x += float(rng.uniform(-0.015, 0.015))
        poses.append(_standing(character_id, x, base_scale * distance, eye, facing, 1 if character_id == focus else 0))
    return poses


def _with_height(pose: FigurePose, height: float) -> FigurePose:
    """Shorter characters keep their feet on the same floor line; when the feet are out of frame the camera is
    framed on the face instead, so the eyes stay put."""
    scale = pose.scale * height
    if pose.ground_y <= 1.05:
        return replace(pose, scale=scale)
    eye = pose.ground_y - (1.0 - EYE_LEVEL) * pose.scale
    return replace(pose, scale=scale, ground_y=eye + (1.0 - EYE_LEVEL) * scale)


def plan_keyframes(shot: Shot, manifest: EpisodeManifest | None = None) -> list[KeyframePlan]:
    """One plan per keyframe: framing places the cast, the action and beat move them a little between keyframes.

    With ``manifest`` the plan also honours each character's relative height and recognises the characters'
    names in the action text.
    """
    rng = np.random.default_rng(stable_seed("storyboard", shot.seed, shot.id))
    focus = focus_character(shot)
    if focus is None:
        return [KeyframePlan(index, ()) for index in range(shot.keyframes)]
    base = _layout(shot, focus, rng)
    if manifest is not None:
        base = [_with_height(p, manifest.character(p.character_id).appearance.height) for p in base]
    rest_arm, rest_tilt = _MOOD_STANCE[shot.mood]
    base = [
        replace(
            p,
            arm_left=rest_arm + float(rng.uniform(0.0, 0.08)),
            arm_right=rest_arm + float(rng.uniform(0.0, 0.08)),
            head_tilt=float(rng.uniform(-1.0, 1.0)) * rest_tilt,
        )
        for p in base
    ]
    actor = _actor(shot, manifest)
    speakers = {line.speaker for line in shot.dialogue}
    energy = _BEAT_ENERGY[shot.beat]
    text = shot.action.lower()
    # Close-ups magnify every move, so they get proportionally smaller ones.
    travel = 0.015 if shot.framing is Framing.close_up else 0.06
    energy *= 0.5 if shot.framing is Framing.close_up else 1.0
    plans = []
    for index in range(shot.keyframes):
        t = index / (shot.keyframes - 1) if shot.keyframes > 1 else 0.0
        figures = []
        for pose in base:
            figure_rng = np.random.default_rng(stable_seed("gesture", shot.seed, pose.character_id, index))
            figures.append(_animate(pose, t, index, text, pose.character_id == actor,
                                    pose.character_id in speakers, base, energy, travel, figure_rng))  # fmt: skip
        plans.append(KeyframePlan(index, tuple(figures)))
    return plans


def _animate(
    pose: FigurePose,
    t: float,
    index: int,
    text: str,
    is_actor: bool,
    speaks: bool,
    cast: Sequence[FigurePose],
    energy: float,
    travel: float,
    rng: np.random.Generator,
) -> FigurePose:
    others = [p for p in cast if p.character_id != pose.character_id and not p.back_to_camera]
    toward = 0.0
    if others:
        nearest = min(others, key=lambda p: abs(p.x - pose.x))
        toward = math.copysign(1.0, nearest.x - pose.x) if nearest.x != pose.x else 0.0
    x, facing, tilt = pose.x, pose.facing, pose.head_tilt
    arm_left, arm_right = pose.arm_left, pose.arm_right
    # The arm on the side the figure faces is the one that gestures towards the partner.
    gesture_side = "left" if (pose.facing >= 0) != pose.back_to_camera else "right"
    # A figure filling the frame shows the same turn or gesture with a fraction of the movement, and big
    # moves in close-up are what frame interpolation cannot carry without double images.
    reach = 1.0 if pose.scale < CLOSE_FIGURE_SCALE else 0.4
    gesture = 0.0
    if is_actor and not pose.back_to_camera:
        if _mentions(text, _MOVE_WORDS):
            direction = toward or (1.0 if pose.facing >= 0 else -1.0)
            x += direction * travel * energy * (t - 0.5)
            swing = 0.22 * reach * (1 if index % 2 == 0 else -1)
            arm_left, arm_right = arm_left + swing, arm_right - swing
        if _mentions(text, _TURN_WORDS):
            target = pose.facing if abs(pose.facing) > 0.2 else 0.6 * (toward or 1.0)
            facing = target - (1 - t) * 1.3 * reach * target
        if _mentions(text, _GESTURE_WORDS):
            # Forward and at chest height: a higher or longer reach would cover the partner's face.
            gesture = max(gesture, 0.8 * reach * energy * t)
        if _mentions(text, _HEAD_WORDS):
            tilt += 0.2 * energy * t * (1 if pose.facing >= 0 else -1)
        if _mentions(text, _CHEER_WORDS):
            arm_left += 0.8 * reach * energy * t
            arm_right += 0.8 * reach * energy * t
    if _mentions(text, _CLOSER_WORDS) and toward:
        x += toward * 0.5 * travel * t
    if speaks:  # talking hands: small alternating lifts and nods
        gesture = max(gesture, (0.25 + 0.25 * rng.random()) * reach * (index % 2))
        tilt += float(rng.uniform(-0.05, 0.05))
    else:
        tilt += float(rng.uniform(-0.02, 0.02))
    if gesture_side == "left":
        arm_left += gesture
    else:
        arm_right += gesture
    return replace(
        pose,
        x=x,
        facing=float(np.clip(facing, -1.0, 1.0)),
        head_tilt=float(np.clip(tilt, -0.35, 0.35)),
        arm_left=float(np.clip(arm_left, -0.2, 2.2)),
        arm_right=float(np.clip(arm_right, -0.2, 2.2)),
    )

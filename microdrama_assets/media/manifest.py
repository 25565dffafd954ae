"""The episode manifest: the single source of truth every stage reads.

Plain pydantic, free of Dagster. Timing is in frames at ``fps`` so cuts land exactly on frame boundaries;
``duration_s`` is what people write, ``frames`` is what the pipeline uses.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1
FPS = 30
WIDTH = 1080
HEIGHT = 1920
MAX_CHARACTERS = 3

# IDs become partition keys and path components: Dagster UI backfills break on commas (dagster#32183), and
# anything beyond [a-z0-9_-] could escape the storage root.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
HEX_COLOR = r"^#[0-9a-fA-F]{6}$"

Slug = Annotated[str, Field(pattern=ID_PATTERN)]
HexColor = Annotated[str, Field(pattern=HEX_COLOR)]


class InvalidId(ValueError):
    """An episode, shot or character ID that is not a safe slug."""


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidId(
            f"invalid {what} {value!r}: use 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
        )
    return value


class Beat(str, Enum):
    hook = "hook"
    setup = "setup"
    turn = "turn"
    escalation = "escalation"
    reveal = "reveal"
    cliffhanger = "cliffhanger"


class CameraMove(str, Enum):
    static = "static"
    push_in = "push_in"
    pull_out = "pull_out"
    pan_left = "pan_left"
    pan_right = "pan_right"
    tilt_up = "tilt_up"
    tilt_down = "tilt_down"
    handheld = "handheld"


class Mood(str, Enum):
    tense = "tense"
    mysterious = "mysterious"
    warm = "warm"
    romantic = "romantic"
    eerie = "eerie"
    hopeful = "hopeful"
    somber = "somber"
    playful = "playful"


class CaptionLook(str, Enum):
    """Named caption styles (media/captions.py STYLES draws them)."""

    default = "default"
    emphasis = "emphasis"
    minimal = "minimal"


class Framing(str, Enum):
    wide = "wide"
    medium = "medium"
    close_up = "close_up"
    over_shoulder = "over_shoulder"
    two_shot = "two_shot"


class Location(str, Enum):
    cafe = "cafe"
    street = "street"
    hospital = "hospital"
    elevator = "elevator"
    office = "office"
    apartment = "apartment"
    hotel = "hotel"
    rooftop = "rooftop"
    park = "park"
    station = "station"


class TimeOfDay(str, Enum):
    day = "day"
    dusk = "dusk"
    night = "night"


class HairStyle(str, Enum):
    short = "short"
    long = "long"
    bun = "bun"
    curly = "curly"
    bald = "bald"


class Build(str, Enum):
    slim = "slim"
    average = "average"
    broad = "broad"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class Appearance(_Strict):
    skin: HexColor
    hair: HexColor
    outfit: HexColor
    accent: HexColor
    hair_style: HairStyle
    build: Build
    height: float = Field(ge=0.85, le=1.1, description="relative body height, 1.0 = average")


class Voice(_Strict):
    language: str = Field(default="en-us", pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$", description="espeak-ng voice")
    variant: str = Field(default="m1", pattern=r"^(m[1-7]|f[1-5])$", description="espeak-ng variant")
    pitch: int = Field(default=50, ge=0, le=99)
    rate: int = Field(default=165, ge=80, le=320, description="words per minute")


class Character(_Strict):
    id: Slug
    name: str = Field(min_length=1, max_length=80)
    role: str = Field(min_length=1, max_length=40)
    description: str = Field(min_length=1, max_length=400)
    appearance: Appearance
    voice: Voice


class DialogueLine(_Strict):
    speaker: Slug
    text: str = Field(min_length=1, max_length=280)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("dialogue text is blank")
        return text.strip()


class Shot(_Strict):
    id: Annotated[str, Field(pattern=r"^s[0-9]{2,3}$")]
    beat: Beat
    duration_s: float = Field(ge=1.0, le=20.0)
    camera: CameraMove
    action: str = Field(min_length=1, max_length=400)
    mood: Mood
    framing: Framing
    location: Location
    time_of_day: TimeOfDay
    characters: list[Slug] = Field(default_factory=list, max_length=3)
    dialogue: list[DialogueLine] = Field(default_factory=list, max_length=4)
    keyframes: int = Field(default=2, ge=1, le=3)
    seed: int = Field(ge=0, lt=2**31)

    @property
    def frames(self) -> int:
        return round(self.duration_s * FPS)

    @model_validator(mode="after")
    def _speakers_on_screen(self) -> "Shot":
        if len(set(self.characters)) != len(self.characters):
            raise ValueError(f"shot {self.id}: characters listed twice")
        for line in self.dialogue:
            if line.speaker not in self.characters:
                raise ValueError(f"shot {self.id}: speaker {line.speaker!r} is not among the shot's characters")
        return self


class EpisodeManifest(_Strict):
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    episode_id: Slug
    title: str = Field(min_length=1, max_length=120)
    logline: str = Field(min_length=1, max_length=500)
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    seed: int = Field(ge=0, lt=2**31)
    fps: int = Field(default=FPS, ge=FPS, le=FPS)
    width: int = Field(default=WIDTH, ge=WIDTH, le=WIDTH)
    height: int = Field(default=HEIGHT, ge=HEIGHT, le=HEIGHT)
    caption_style: CaptionLook = CaptionLook.default
    ai_label: bool = Field(default=False, description="draw a visible 'AI-generated' label on every frame")
    characters: list[Character] = Field(min_length=1, max_length=MAX_CHARACTERS)
    shots: list[Shot] = Field(min_length=1, max_length=40)

    @model_validator(mode="after")
    def _references_resolve(self) -> "EpisodeManifest":
        char_ids = [c.id for c in self.characters]
        if len(set(char_ids)) != len(char_ids):
            raise ValueError("characters: duplicate character id")
        shot_ids = [s.id for s in self.shots]
        if len(set(shot_ids)) != len(shot_ids):
            raise ValueError("shots: duplicate shot id")
        for shot in self.shots:
            for cid in shot.characters:
                if cid not in char_ids:
                    raise ValueError(f"shot {shot.id}: unknown character {cid!r}")
        return self

    # Timeline helpers: every consumer derives shot boundaries from here, never by summing floats itself.
    def shot(self, shot_id: str) -> Shot:
        for shot in self.shots:
            if shot.id == shot_id:
                return shot
        raise KeyError(f"episode {self.episode_id} has no shot {shot_id!r} (shots: {', '.join(self.shot_ids)})")

    @property
    def shot_ids(self) -> list[str]:
        return [s.id for s in self.shots]

    def character(self, character_id: str) -> Character:
        return next(c for c in self.characters if c.id == character_id)

    def start_frame(self, shot_id: str) -> int:
        start = 0
        for shot in self.shots:
            if shot.id == shot_id:
                return start
            start += shot.frames
        raise KeyError(shot_id)

    @property
    def total_frames(self) -> int:
        return sum(s.frames for s in self.shots)

    @property
    def duration_s(self) -> float:
        return self.total_frames / self.fps


class ManifestError(ValueError):
    """A manifest that does not validate; the message names each offending field."""


def validation_problems(exc: ValidationError, whole: str) -> str:
    """Each pydantic error as ``field.path: message`` (``whole`` names an error about the object itself)."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg']}" for err in exc.errors())


def parse_manifest(data: str | bytes | dict) -> EpisodeManifest:
    try:
        if isinstance(data, dict):
            return EpisodeManifest.model_validate(data)
        return EpisodeManifest.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestError("invalid manifest: " + validation_problems(exc, "manifest")) from None


def manifest_json_schema() -> str:
    return json.dumps(EpisodeManifest.model_json_schema(), indent=2, sort_keys=True)


def with_presets(manifest: EpisodeManifest, caption_style: str | None = None,
                 lighting: str | None = None) -> EpisodeManifest:
    """The manifest with a named caption style and, when given, one lighting mood for every shot (grade, palette
    and music follow the mood), re-validated: unknown names fail naming the choices."""
    if caption_style is None and lighting is None:
        return manifest
    data = manifest.model_dump(mode="json")
    if caption_style is not None:
        data["caption_style"] = caption_style
    if lighting is not None:
        data["shots"] = [dict(shot, mood=lighting) for shot in data["shots"]]
    return EpisodeManifest.model_validate(data)

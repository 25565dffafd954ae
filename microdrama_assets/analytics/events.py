"""Playback events: what a player reports, validated strictly, and the episode timeline they refer to.

A player (the preview page, an app using the delivery manifest, or the simulator) reports one session of one
episode as a numbered sequence of events. Each event carries the playhead position, so the analytics need no
clock agreement between client and server. The delivery manifest (``delivery.json``) gives the shot boundaries
and the renditions those positions and rendition labels refer to.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Literal, NamedTuple, Optional

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

from ..media.manifest import Slug, validation_problems

EVENT_TYPES = ("start", "progress", "rendition_switch", "stall", "end", "abandon")
EventType = Literal["start", "progress", "rendition_switch", "stall", "end", "abandon"]

MAX_BATCH_EVENTS = 500
# The manifest allows 40 shots of 20 s at most: no position in a real episode gets near an hour.
MAX_POSITION_S = 3600.0
MAX_STALL_S = 600.0
# A player reports currentTime, which may run a frame or two past the encoded duration at the very end.
POSITION_SLACK_S = 1.0
# Session and viewer IDs are opaque client tokens (UUIDs, app install IDs): bounded and free of anything that
# could smuggle markup or separators into logs and plots.
OPAQUE_ID = r"^[A-Za-z0-9_-]{1,64}$"
# "<codec>/<rung>" as the HLS package names its variants (video/h264/720p/), e.g. "h264/720p".
RENDITION_LABEL = r"^[a-z0-9]{1,8}/[0-9]{2,4}p$"

# RFC 6381 sample entries to the codec names the package uses (media/hls.py VIDEO_CODECS).
_CODEC_FAMILIES = {"avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc", "av01": "av1"}


class EventBatchError(ValueError):
    """A batch that cannot be read event by event: not a list, or longer than MAX_BATCH_EVENTS."""


class BatchTooLarge(EventBatchError):
    """A batch of more than MAX_BATCH_EVENTS events: the client should send smaller batches."""


class DeliveryError(ValueError):
    """A delivery manifest that lacks what the analytics need (shots with boundaries, renditions)."""


class PlaybackEvent(BaseModel):
    """One playback event of one session.

    ``seq`` numbers a session's events from 0 in the order the player saw them; (session_id, seq) identifies an
    event, so a batch a client retries is stored once. ``position_s`` is the playhead (media time) when the event
    happened. ``rendition`` is the variant playing then ("h264/720p"), required on ``rendition_switch`` (the one
    switched to). ``stall_s`` is set on ``stall`` only: a player reports a stall once playback resumes (or the
    viewer leaves), with how long it lasted. ``end`` is the episode played to its end; ``abandon`` is the viewer
    leaving before that (page hidden, app closed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_id: Slug
    session_id: str = Field(pattern=OPAQUE_ID)
    viewer_id: str = Field(pattern=OPAQUE_ID)
    seq: StrictInt = Field(ge=0, lt=1_000_000)
    type: EventType
    client_ts: AwareDatetime
    position_s: float = Field(ge=0.0, le=MAX_POSITION_S, allow_inf_nan=False)
    rendition: Optional[str] = Field(default=None, pattern=RENDITION_LABEL)
    stall_s: Optional[float] = Field(default=None, gt=0.0, le=MAX_STALL_S, allow_inf_nan=False)
    simulated: StrictBool = False
    user_agent: Optional[str] = Field(default=None, max_length=256)
    app_version: Optional[str] = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9._+-]+$")

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> "PlaybackEvent":
        if self.type == "rendition_switch" and self.rendition is None:
            raise ValueError("a rendition_switch event needs the rendition switched to")
        if (self.type == "stall") != (self.stall_s is not None):
            raise ValueError("stall_s is required on a stall event and allowed on no other")
        return self


class Rejection(NamedTuple):
    index: int
    reason: str


class ValidatedBatch(NamedTuple):
    accepted: list[PlaybackEvent]
    rejected: list[Rejection]


def validate_batch(raw: object, duration_of: Callable[[str], float | None] | None = None) -> ValidatedBatch:
    """Each item of ``raw`` (decoded JSON) validated on its own: the valid events, and (index, reason) for each
    invalid one. ``duration_of`` gives an episode's duration when it is known (None when not); a position beyond
    it (plus POSITION_SLACK_S) is rejected. Raises EventBatchError when ``raw`` is not a list, BatchTooLarge when
    it holds more than MAX_BATCH_EVENTS items."""
    if not isinstance(raw, list):
        raise EventBatchError(f"a batch is a JSON array of events, got {type(raw).__name__}")
    if len(raw) > MAX_BATCH_EVENTS:
        raise BatchTooLarge(f"a batch holds at most {MAX_BATCH_EVENTS} events, got {len(raw)}")
    accepted: list[PlaybackEvent] = []
    rejected: list[Rejection] = []
    durations: dict[str, float | None] = {}
    for index, item in enumerate(raw):
        try:
            event = PlaybackEvent.model_validate(item)
        except ValidationError as exc:
            rejected.append(Rejection(index, validation_problems(exc, "event")))
            continue
        if duration_of is not None:
            if event.episode_id not in durations:
                durations[event.episode_id] = duration_of(event.episode_id)
            duration = durations[event.episode_id]
            if duration is not None and event.position_s > duration + POSITION_SLACK_S:
                rejected.append(Rejection(index, f"position_s: {event.position_s} is past the end of episode "
                                                 f"{event.episode_id} ({duration} s)"))
                continue
        accepted.append(event)
    return ValidatedBatch(accepted, rejected)


def event_row(event: PlaybackEvent, received_at: datetime) -> dict:
    """The event as a store row (EVENT_COLUMNS), timestamps in UTC."""
    return {**event.model_dump(), "client_ts": event.client_ts.astimezone(timezone.utc),
            "received_at": received_at.astimezone(timezone.utc)}


# The store's columns, in order: the event's fields plus when the collector received it.
EVENT_COLUMNS = ("episode_id", "session_id", "viewer_id", "seq", "type", "client_ts", "received_at", "position_s",
                 "rendition", "stall_s", "simulated", "user_agent", "app_version")


# --- the episode timeline the events refer to --------------------------------------------------------------------
def rendition_label(codecs: str, resolution: str) -> str:
    """The label players report for a variant: "<codec>/<short side>p" (e.g. "h264/720p" for avc1 at 720x1280),
    which is also the package's own folder name for it. ``codecs`` is the RFC 6381 list of the variant,
    ``resolution`` its "WIDTHxHEIGHT"."""
    family = next((_CODEC_FAMILIES[c.strip()[:4]] for c in codecs.split(",") if c.strip()[:4] in _CODEC_FAMILIES),
                  None)
    if family is None:
        raise DeliveryError(f"no known video codec in {codecs!r} (known: {', '.join(sorted(_CODEC_FAMILIES))})")
    try:
        width, height = (int(side) for side in resolution.lower().split("x"))
    except ValueError:
        raise DeliveryError(f"resolution {resolution!r} is not WIDTHxHEIGHT") from None
    return f"{family}/{min(width, height)}p"


class DeliveryShot(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Slug
    beat: str
    start_s: float = Field(ge=0.0)
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class DeliveryRendition(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    resolution: str
    codecs: str
    bandwidth: int = Field(gt=0)
    average_bandwidth: Optional[int] = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _has_a_label(self) -> "DeliveryRendition":
        rendition_label(self.codecs, self.resolution)  # raises naming an unknown codec or a bad resolution
        return self

    @property
    def label(self) -> str:
        return rendition_label(self.codecs, self.resolution)

    @property
    def bitrate_bps(self) -> int:
        """What the variant streams on average (its peak when the playlist gives no average)."""
        return self.average_bandwidth or self.bandwidth


class DeliveryTimeline(BaseModel):
    """The part of an episode's delivery.json the analytics read (assets/delivery.py writes it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    episode_id: Slug
    duration_s: float = Field(gt=0.0)
    shots: list[DeliveryShot] = Field(min_length=1)
    renditions: list[DeliveryRendition] = Field(min_length=1)

    @model_validator(mode="after")
    def _shots_tile_the_episode(self) -> "DeliveryTimeline":
        position = 0.0
        for shot in self.shots:
            if abs(shot.start_s - position) > 1e-3 or shot.end_s <= shot.start_s:
                raise ValueError(f"shot {shot.id} spans {shot.start_s}-{shot.end_s} s; shots must follow each "
                                 f"other from 0 s without gaps")
            position = shot.end_s
        if abs(position - self.duration_s) > 1e-2:
            raise ValueError(f"the shots end at {position} s but the episode lasts {self.duration_s} s")
        return self

    def shot_at(self, position_s: float) -> DeliveryShot:
        """The shot playing at ``position_s`` (the last shot at and past the end)."""
        return next((s for s in self.shots if position_s < s.end_s), self.shots[-1])


def parse_delivery(delivery: dict) -> DeliveryTimeline:
    """``delivery`` (a decoded delivery.json) as a DeliveryTimeline; DeliveryError names what is missing."""
    try:
        return DeliveryTimeline.model_validate(delivery)
    except ValidationError as exc:
        raise DeliveryError("invalid delivery manifest: " + validation_problems(exc, "delivery")) from None

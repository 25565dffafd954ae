"""Synthetic viewer sessions for demos and tests, every event labelled ``simulated``.

Each simulated viewer plays the episode on a network (Wi-Fi, 4G or 3G, whose throughput wanders segment by
segment), behind an hls.js-like player: it starts on the rung a 500 kb/s default estimate allows, picks each
2-second segment's rung from a moving average of the measured throughput, starts playing once a segment is
buffered, and stalls when the buffer runs dry. The viewer may leave at any moment: the hazard is highest in the
first seconds (swiping away), constant after that, higher while stalled, and multiplied inside any shot given a
drop multiplier (a deliberately weak shot). The events are what player_events.js reports for the same playback:
rendition switches as playback reaches the new rung's media, a start, progress every second of playback, a stall
with its length when playback resumes, and an end or an abandon (whose beacon is sometimes lost).
The same (delivery, viewers, seed, multipliers) always gives the same events.
"""

from __future__ import annotations

import json
import math
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

from .event_store import EventStore
from .events import MAX_BATCH_EVENTS, DeliveryTimeline, Rejection, parse_delivery, validate_batch

SEGMENT_S = 2.0  # the package's segment length (resources.EncodeSettings.segment_seconds)
TICK_S = 0.1
MAX_VIEWERS = 100_000
SIMULATOR_AGENT = "microdrama-simulator/1"
# hls.js defaults: the estimate before anything is measured, and the share of it a rung may use.
DEFAULT_ESTIMATE_KBPS = 500.0
ABR_HEADROOM = 0.7
ESTIMATE_WEIGHT = 1.0 - 0.5 ** (1.0 / 2.0)  # a moving average with a half-life of two segments
NETWORK_MEMORY = 0.6  # how much of a segment's throughput carries over to the next (log scale)
MAX_BUFFER_S = 30.0
RESUME_BUFFER_S = 1.0  # a stalled player resumes once this much is buffered again


class SimulationError(ValueError):
    """Simulation settings that do not fit the episode (an unknown shot, a non-positive count)."""


class CollectorError(RuntimeError):
    """The collector refused a batch, or could not be reached after the retries."""


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    share: float  # of viewers
    median_kbps: float
    volatility: float  # standard deviation of the log throughput, segment to segment


NETWORK_PROFILES = (
    NetworkProfile("wifi", 0.55, 12_000.0, 0.35),
    NetworkProfile("4g", 0.35, 3_500.0, 0.6),
    NetworkProfile("3g", 0.10, 700.0, 0.7),
)


@dataclass(frozen=True)
class ViewerModel:
    """How likely a viewer is to leave, per second of wall-clock time (a hazard)."""

    base_leave_per_s: float = 0.012  # anywhere in the episode
    early_leave_per_s: float = 0.10  # on top at 0 s: the swipe-away, decaying with early_decay_s
    early_decay_s: float = 1.5
    stall_leave_per_s: float = 0.08  # while stalled, instead of the above: impatience
    abandon_reported: float = 0.95  # share of leavers whose abandon event arrives (a beacon can be lost)


@dataclass
class _Ladder:
    labels: list[str]
    kbps: list[float]  # ascending

    def rung_for(self, estimate_kbps: float) -> int:
        fitting = [i for i, rate in enumerate(self.kbps) if rate <= ABR_HEADROOM * estimate_kbps]
        return fitting[-1] if fitting else 0


def _ladders(timeline: DeliveryTimeline) -> list[_Ladder]:
    """One ladder per codec the package offers; a device plays one codec's ladder."""
    by_codec: dict[str, list[tuple[float, str]]] = {}
    for rendition in timeline.renditions:
        by_codec.setdefault(rendition.label.split("/")[0], []).append((rendition.bitrate_bps / 1000, rendition.label))
    return [_Ladder([label for _, label in sorted(rungs)], [rate for rate, _ in sorted(rungs)])
            for _, rungs in sorted(by_codec.items())]


class _Session:
    """One viewer's events as they happen."""

    def __init__(self, timeline: DeliveryTimeline, session_id: str, viewer_id: str, started: datetime, agent: str):
        self.timeline = timeline
        self.session_id, self.viewer_id, self.started, self.agent = session_id, viewer_id, started, agent
        self.events: list[dict] = []
        self.clock_s = 0.0
        self.rendition: str | None = None

    def emit(self, kind: str, position_s: float, **fields) -> None:
        self.events.append({
            "episode_id": self.timeline.episode_id, "session_id": self.session_id, "viewer_id": self.viewer_id,
            "seq": len(self.events), "type": kind,
            "client_ts": (self.started + timedelta(seconds=self.clock_s)).isoformat(),
            "position_s": round(min(position_s, self.timeline.duration_s), 3), "rendition": self.rendition,
            "simulated": True, "user_agent": self.agent, **fields,
        })


class _Playback:
    """One viewer's player, advanced tick by tick: the network, the ABR, the buffer and the playhead."""

    def __init__(self, timeline: DeliveryTimeline, ladder: _Ladder, profile: NetworkProfile, model: ViewerModel,
                 multipliers: Mapping[str, float], rng: random.Random, session: _Session):
        self.timeline, self.ladder, self.profile, self.model = timeline, ladder, profile, model
        self.multipliers, self.rng, self.session = multipliers, rng, session
        self.duration = timeline.duration_s
        self.estimate_kbps = DEFAULT_ESTIMATE_KBPS
        self.log_throughput = math.log(profile.median_kbps) + rng.gauss(0.0, profile.volatility)
        self.downloaded_s = 0.0  # media fetched so far
        self.segments: list[tuple[float, int]] = []  # (media start, rung index) of every segment fetched
        self.next_switch = 0  # the first segment playback has not reached yet
        self.position = 0.0
        self.stall_began: float | None = None

    def run(self) -> None:
        """Play until the end or until the viewer leaves, emitting what a player reports."""
        session = self.session
        while self.downloaded_s < min(SEGMENT_S, self.duration) - 1e-9:  # startup: one segment buffered
            session.clock_s += TICK_S
            self._fetch(TICK_S)
        self._announce_switches()
        session.emit("start", 0.0)
        next_progress = 1.0
        while True:
            session.clock_s += TICK_S
            self._fetch(TICK_S)
            buffered = self.downloaded_s - self.position
            if self.stall_began is None and buffered < TICK_S and self.downloaded_s < self.duration - 1e-9:
                self.stall_began = session.clock_s
            if self.stall_began is not None:
                if buffered >= min(RESUME_BUFFER_S, self.duration - self.position) - 1e-9:
                    self._report_stall()
                hazard = self.model.stall_leave_per_s
            else:
                # Rounded, so that whole seconds land on whole seconds.
                self.position = min(self.duration, round(self.position + TICK_S, 6))
                self._announce_switches()
                if self.position >= self.duration - 1e-9:
                    session.emit("end", self.duration)
                    return
                if self.position >= next_progress:
                    session.emit("progress", self.position)
                    next_progress = math.floor(self.position) + 1.0
                hazard = self._leave_hazard()
            if self.rng.random() < 1.0 - math.exp(-hazard * TICK_S):
                self._report_stall()
                if self.rng.random() < self.model.abandon_reported:
                    session.emit("abandon", self.position)
                return

    def _leave_hazard(self) -> float:
        model = self.model
        swipe_away = model.early_leave_per_s * math.exp(-self.position / model.early_decay_s)
        return (model.base_leave_per_s + swipe_away) * self.multipliers.get(self.timeline.shot_at(self.position).id,
                                                                            1.0)

    def _fetch(self, dt: float) -> None:
        """Download for ``dt`` seconds at the current throughput; each new segment's rung is the ABR's pick."""
        while dt > 0 and self.downloaded_s < self.duration and self.downloaded_s - self.position < MAX_BUFFER_S:
            segment_start = math.floor(self.downloaded_s / SEGMENT_S + 1e-9) * SEGMENT_S
            if not self.segments or self.segments[-1][0] < segment_start:
                self.segments.append((segment_start, self.ladder.rung_for(self.estimate_kbps)))
            throughput = math.exp(self.log_throughput)
            media_per_s = throughput / self.ladder.kbps[self.segments[-1][1]]
            segment_end = min(segment_start + SEGMENT_S, self.duration)
            spent = min(dt, (segment_end - self.downloaded_s) / media_per_s)
            self.downloaded_s += spent * media_per_s
            dt -= spent
            if self.downloaded_s >= segment_end - 1e-9:
                # Segment done: the estimate moves toward what it measured; the network wanders on, pulled
                # back toward its median.
                self.estimate_kbps += ESTIMATE_WEIGHT * (throughput - self.estimate_kbps)
                self.log_throughput = (NETWORK_MEMORY * self.log_throughput
                                       + (1 - NETWORK_MEMORY) * math.log(self.profile.median_kbps)
                                       + self.rng.gauss(0.0, self.profile.volatility))

    def _announce_switches(self) -> None:
        """A rendition_switch as playback reaches the first segment of another rung (hls.js LEVEL_SWITCHED)."""
        while self.next_switch < len(self.segments) and self.segments[self.next_switch][0] <= self.position + 1e-9:
            start, rung = self.segments[self.next_switch]
            if self.ladder.labels[rung] != self.session.rendition:
                self.session.rendition = self.ladder.labels[rung]
                self.session.emit("rendition_switch", start)
            self.next_switch += 1

    def _report_stall(self) -> None:
        if self.stall_began is None:
            return
        stalled_s = round(self.session.clock_s - self.stall_began, 3)
        self.stall_began = None
        if stalled_s > 0:  # a viewer who leaves the moment playback stops saw no stall
            self.session.emit("stall", self.position, stall_s=stalled_s)


def simulate_sessions(delivery: dict, viewers: int, seed: int = 0, drop_multipliers: Mapping[str, float] | None = None,
                      model: ViewerModel = ViewerModel(), networks: Sequence[NetworkProfile] = NETWORK_PROFILES,
                      first_session_at: datetime | None = None) -> list[dict]:
    """``viewers`` simulated sessions of the episode ``delivery`` (its delivery.json) as event dicts ready for the
    collector, every one ``simulated: true``. ``drop_multipliers`` multiplies the leave hazard inside the named
    shots (3.0: three times as likely to leave there); ``networks`` are the viewers' networks, drawn by share.
    Sessions start over the day from ``first_session_at`` (default 2025-01-01 UTC), so the events are the same
    for the same arguments."""
    timeline = parse_delivery(delivery)
    if isinstance(viewers, bool) or not isinstance(viewers, int) or not 1 <= viewers <= MAX_VIEWERS:
        raise SimulationError(f"viewers must be an integer between 1 and {MAX_VIEWERS}, got {viewers!r}")
    multipliers = dict(drop_multipliers or {})
    shot_ids = [shot.id for shot in timeline.shots]
    for shot_id, factor in multipliers.items():
        if shot_id not in shot_ids:
            raise SimulationError(f"drop multiplier for unknown shot {shot_id!r} (shots: {', '.join(shot_ids)})")
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise SimulationError(f"drop multiplier for {shot_id} must be a positive number, got {factor!r}")
    if not networks or any(network.share <= 0 or network.median_kbps <= 0 for network in networks):
        raise SimulationError("networks must be at least one profile, each with a positive share and throughput")
    first = first_session_at or datetime(2025, 1, 1, tzinfo=timezone.utc)
    ladders = _ladders(timeline)
    master = random.Random(seed)
    events: list[dict] = []
    for index in range(viewers):
        rng = random.Random(master.getrandbits(64))  # each viewer its own stream: adding viewers keeps the rest
        profile = rng.choices(networks, weights=[network.share for network in networks])[0]
        session = _Session(timeline, f"sim-{seed}-{index:06d}-{rng.getrandbits(32):08x}", f"sim-viewer-{index:06d}",
                           first + timedelta(seconds=rng.uniform(0.0, 86_400.0)),
                           f"{SIMULATOR_AGENT} ({profile.name})")
        _Playback(timeline, rng.choice(ladders), profile, model, multipliers, rng, session).run()
        events.extend(session.events)
    return events


class PostResult(NamedTuple):
    accepted: int
    rejected: list[Rejection]  # index into the events posted
    batches: int


def _batches(events: Sequence[dict], size: int) -> Iterator[tuple[int, Sequence[dict]]]:
    for start in range(0, len(events), size):
        yield start, events[start:start + size]


def post_sessions(events: Sequence[dict], endpoint_url: str, batch_size: int = 200, timeout_s: float = 10.0,
                  retries: int = 4) -> PostResult:
    """POST ``events`` to a collector (``http(s)://host:port/api/events``) in batches of ``batch_size``,
    retrying a batch on 503 and connection errors with a growing pause (the collector stores a repeat once).
    Raises CollectorError when a batch is refused outright or never gets through."""
    if urlsplit(endpoint_url).scheme not in ("http", "https"):
        raise CollectorError(f"the collector URL must be http:// or https://, got {endpoint_url!r}")
    if not 1 <= batch_size <= MAX_BATCH_EVENTS:
        raise CollectorError(f"batch_size must be between 1 and {MAX_BATCH_EVENTS}, got {batch_size}")
    accepted, rejected, batches = 0, [], 0
    for offset, batch in _batches(events, batch_size):
        answer = _post_batch(endpoint_url, batch, timeout_s, retries)
        accepted += answer["accepted"]
        rejected += [Rejection(offset + r["index"], r["reason"]) for r in answer["rejected"]]
        batches += 1
    return PostResult(accepted, rejected, batches)


def store_sessions(events: Sequence[dict], store: EventStore) -> PostResult:
    """Validate ``events`` as the collector does and write them straight into ``store`` (no server needed),
    in collector-sized batches; returns once they are committed."""
    accepted, rejected, batches = 0, [], 0
    for offset, batch in _batches(events, MAX_BATCH_EVENTS):
        validated = validate_batch(list(batch))
        if validated.accepted:
            store.add(validated.accepted).result()
        accepted += len(validated.accepted)
        rejected += [Rejection(offset + r.index, r.reason) for r in validated.rejected]
        batches += 1
    return PostResult(accepted, rejected, batches)


def _post_batch(endpoint_url: str, batch: Sequence[dict], timeout_s: float, retries: int) -> dict:
    body = json.dumps(list(batch)).encode("utf-8")
    pause = 0.25
    attempt = 0
    while True:
        request = urllib.request.Request(endpoint_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = exc.read().decode("utf-8", "replace")
            if exc.code == 400 and '"rejected"' in payload:
                return json.loads(payload)  # every event of the batch refused, each with its reason
            if exc.code != 503 or attempt == retries:
                raise CollectorError(f"the collector at {endpoint_url} answered {exc.code}: {payload[:300]}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == retries:
                raise CollectorError(f"cannot reach the collector at {endpoint_url}: {exc}") from None
        attempt += 1
        time.sleep(pause)
        pause *= 2

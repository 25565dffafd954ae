"""Engagement of one episode from its playback events (pandas): per shot, over time, and per rendition.

Every metric starts from one figure per session, its **exit position**: the episode's duration when the session
has an ``end`` event, else the furthest playhead position it reported (``abandon`` carries the exact one; a
session whose beacon was lost stops at its last progress event, at most about a second early). A viewer who
seeks forward is counted as having watched what they skipped. A session is every distinct ``session_id`` with at
least one event for the episode.
"""

from __future__ import annotations

import io
from typing import Literal, Optional

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict

from .events import DeliveryTimeline, parse_delivery

UNKNOWN_RENDITION = "unknown"  # watch time before the player named its first rendition

DataSource = Literal["none", "real", "simulated", "mixed"]


class ShotEngagement(BaseModel):
    """One shot's figures. A session *enters* a shot when its exit position is at or past the shot's start, and
    *watches it through* when its exit position is at or past the shot's end; a session whose exit position
    falls inside a shot is one of that shot's *leavers* (a viewer who leaves exactly at a cut is counted in the
    shot after it: that shot did not hold them)."""

    model_config = ConfigDict(frozen=True)

    shot_id: str
    beat: str
    start_s: float
    end_s: float
    entered: int
    watched_through: int
    leavers: int  # entered - watched_through
    watch_through: Optional[float]  # watched_through / all sessions: the share of the audience that saw it all
    drop_off: Optional[float]  # leavers / entered: the share of those who reached it that left during it
    avg_watch_s: Optional[float]  # mean seconds of the shot watched, over the sessions that entered it
    exposure_s: float  # total seconds of the shot watched, all sessions together
    leave_rate_per_s: Optional[float]  # leavers / exposure_s: the leave hazard, comparable across shot lengths
    median_leave_offset_s: Optional[float]  # median seconds into the shot at which its leavers left

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class RetentionPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    t_s: float
    watching: float  # share of sessions whose exit position is at or past t_s


class EngagementReport(BaseModel):
    """The episode's engagement. Shares are of sessions unless said otherwise; every rate is None while there
    are no sessions.

    - ``completion_rate``: sessions with an ``end`` event / sessions.
    - ``avg_watch_s``: mean exit position.
    - ``rebuffer_ratio``: stall seconds / (watched seconds + stall seconds), all sessions together, where
      watched seconds are the exit positions (startup delay before the first frame is not a stall).
    - ``rendition_mix``: each rendition's share of the watched seconds: the playhead's advance from each event
      to the next of its session, credited to the rendition playing at the first of the two.
    - ``stall_s_by_rendition``: stall seconds by the rendition playing when the stall ended.
    - ``retention``: at every whole second and at the end, the share of sessions still watching (empty while
      there are no sessions).
    - ``completion_with_stalls`` / ``completion_without_stalls``: completion among sessions that stalled at
      least once, and among those that never did."""

    model_config = ConfigDict(frozen=True)

    episode_id: str
    duration_s: float
    sessions: int
    real_sessions: int
    simulated_sessions: int
    data_source: DataSource
    completion_rate: Optional[float]
    avg_watch_s: Optional[float]
    rebuffer_ratio: Optional[float]
    stall_count: int
    stall_s: float
    sessions_with_stalls: int
    completion_with_stalls: Optional[float]
    completion_without_stalls: Optional[float]
    rendition_mix: dict[str, float]
    stall_s_by_rendition: dict[str, float]
    retention: list[RetentionPoint]
    shots: list[ShotEngagement]

    def shot(self, shot_id: str) -> ShotEngagement:
        for shot in self.shots:
            if shot.shot_id == shot_id:
                return shot
        raise KeyError(f"episode {self.episode_id} has no shot {shot_id!r}")

    def describe(self) -> str:
        """A few lines for people: how much data, from where, and the headline figures."""
        if self.sessions == 0:
            return f"{self.episode_id}: no sessions yet: nothing to measure until players report playback."
        source = {"real": "real viewers", "simulated": "SIMULATED viewers (not real data)",
                  "mixed": f"{self.real_sessions} real + {self.simulated_sessions} SIMULATED viewers"}[self.data_source]
        worst = max((s for s in self.shots if s.drop_off is not None), key=lambda s: s.leavers)
        mix = ", ".join(f"{label} {share:.0%}" for label, share in list(self.rendition_mix.items())[:3])
        return "\n".join([
            f"{self.episode_id}: {self.sessions} sessions from {source}",
            f"completion {self.completion_rate:.0%}, average watch {self.avg_watch_s:.1f} of {self.duration_s:.1f} s",
            f"most viewers leave in {worst.shot_id} ({worst.beat}): {worst.leavers} of {self.sessions}, "
            f"{worst.drop_off:.0%} of those who reach it",
            f"rebuffering {self.rebuffer_ratio:.2%} of watch time ({self.sessions_with_stalls} sessions stalled); "
            f"renditions: {mix}",
        ])


def _data_source(real: int, simulated: int) -> DataSource:
    if real and simulated:
        return "mixed"
    return "real" if real else ("simulated" if simulated else "none")


def _share(part: float, whole: float) -> Optional[float]:
    return float(part / whole) if whole else None


def _sessions(frame: pd.DataFrame, duration: float) -> pd.DataFrame:
    """One row per session: exit_s, completed, stall_s, stalls, simulated."""
    sessions = frame.assign(ended=frame["type"].eq("end"), stall=frame["type"].eq("stall")).groupby("session_id").agg(
        reached_s=("position_s", "max"), completed=("ended", "any"), stall_s=("stall_s", "sum"),
        stalls=("stall", "sum"), simulated=("simulated", "any"))
    sessions["exit_s"] = sessions["reached_s"].where(~sessions["completed"], duration)
    return sessions


def _shot_figures(timeline: DeliveryTimeline, exits: np.ndarray) -> list[ShotEngagement]:
    """Per-shot figures from every session's exit position (a completed session's is the episode's end, past
    every shot)."""
    total = len(exits)
    shots = []
    for shot in timeline.shots:
        entered = exits >= shot.start_s
        through = exits >= shot.end_s
        watched_s = np.clip(exits, shot.start_s, shot.end_s) - shot.start_s
        left_here = entered & ~through
        exposure = float(watched_s[entered].sum())
        entered_n, through_n, leavers_n = int(entered.sum()), int(through.sum()), int(left_here.sum())
        shots.append(ShotEngagement(
            shot_id=shot.id, beat=shot.beat, start_s=shot.start_s, end_s=shot.end_s,
            entered=entered_n, watched_through=through_n, leavers=leavers_n,
            watch_through=_share(through_n, total), drop_off=_share(leavers_n, entered_n),
            avg_watch_s=float(watched_s[entered].mean()) if entered_n else None,
            exposure_s=exposure, leave_rate_per_s=_share(leavers_n, exposure),
            median_leave_offset_s=float(np.median(watched_s[left_here])) if left_here.any() else None,
        ))
    return shots


def _retention(exits: np.ndarray, duration: float) -> list[RetentionPoint]:
    """The share of sessions still watching at every whole second and at the end (none without sessions)."""
    if not len(exits):
        return []
    times = np.append(np.arange(0.0, duration, 1.0), duration)
    return [RetentionPoint(t_s=round(float(t), 4), watching=float((exits >= t).mean())) for t in times]


def _rendition_seconds(frame: pd.DataFrame, duration: float) -> tuple[dict[str, float], dict[str, float]]:
    """Watched seconds and stall seconds by rendition (frame ordered by session and seq)."""
    by_session = frame.groupby("session_id", sort=False)
    playing = by_session["rendition"].ffill().fillna(UNKNOWN_RENDITION)
    advance = (by_session["position_s"].shift(-1).clip(upper=duration) - frame["position_s"]).clip(lower=0.0)
    watched = advance.fillna(0.0).groupby(playing).sum()
    stalled = frame["stall_s"].fillna(0.0).groupby(playing).sum()
    return ({label: float(seconds) for label, seconds in watched.sort_values(ascending=False).items() if seconds > 0},
            {label: float(seconds) for label, seconds in stalled.sort_values(ascending=False).items() if seconds > 0})


def engagement_metrics(events: pd.DataFrame, delivery: dict) -> EngagementReport:
    """The engagement report of the episode ``delivery`` (its delivery.json) from ``events`` (a store's
    ``events()`` frame: EVENT_COLUMNS; rows of other episodes are ignored). An episode nobody has played yet
    gives a report with zero sessions, not an error. Definitions: EngagementReport, ShotEngagement and the
    module docstring."""
    timeline = parse_delivery(delivery)
    duration = timeline.duration_s
    frame = events.loc[events["episode_id"] == timeline.episode_id].sort_values(["session_id", "seq"])
    frame = frame.assign(position_s=frame["position_s"].clip(0.0, duration)).reset_index(drop=True)
    sessions = _sessions(frame, duration)
    exits = sessions["exit_s"].to_numpy(dtype=float)
    count = len(sessions)
    simulated = int(sessions["simulated"].sum())
    stall_total = float(sessions["stall_s"].sum())
    watched_total = float(exits.sum())
    stalled = sessions["stalls"] > 0
    mix_seconds, stall_seconds = _rendition_seconds(frame, duration)
    mix_total = sum(mix_seconds.values())
    return EngagementReport(
        episode_id=timeline.episode_id, duration_s=duration, sessions=count, real_sessions=count - simulated,
        simulated_sessions=simulated, data_source=_data_source(count - simulated, simulated),
        completion_rate=_share(sessions["completed"].sum(), count),
        avg_watch_s=float(exits.mean()) if count else None,
        rebuffer_ratio=_share(stall_total, watched_total + stall_total) if count else None,
        stall_count=int(sessions["stalls"].sum()), stall_s=stall_total, sessions_with_stalls=int(stalled.sum()),
        completion_with_stalls=_share(sessions.loc[stalled, "completed"].sum(), int(stalled.sum())),
        completion_without_stalls=_share(sessions.loc[~stalled, "completed"].sum(), int((~stalled).sum())),
        rendition_mix={label: seconds / mix_total for label, seconds in mix_seconds.items()},
        stall_s_by_rendition=stall_seconds,
        retention=_retention(exits, duration),
        shots=_shot_figures(timeline, exits),
    )


def retention_figure(report: EngagementReport) -> Figure:
    """The retention curve (share of sessions still watching against time), shot boundaries drawn as dashed
    vertical lines with each shot's ID above its span. Says in the title when the data is simulated."""
    figure = Figure(figsize=(7.0, 3.4), dpi=100, layout="constrained")
    axes = figure.subplots()
    label = {"none": "no sessions yet", "real": f"{report.sessions} sessions",
             "simulated": f"{report.sessions} SIMULATED sessions",
             "mixed": f"{report.sessions} sessions ({report.simulated_sessions} SIMULATED)"}[report.data_source]
    axes.set_title(f"Retention: {report.episode_id} ({label})", fontsize=10, pad=16)  # room for the shot IDs
    if report.sessions:
        times, watching = [p.t_s for p in report.retention], [p.watching for p in report.retention]
        axes.plot(times, watching, color="#1f77b4", linewidth=2)
        axes.fill_between(times, watching, color="#1f77b4", alpha=0.12)
    else:
        axes.text(0.5, 0.5, "no sessions yet", transform=axes.transAxes, ha="center", va="center", fontsize=14,
                  color="#777777")
    for shot in report.shots:
        if shot.start_s > 0:
            axes.axvline(shot.start_s, color="#999999", linestyle="--", linewidth=1)
        axes.text((shot.start_s + shot.end_s) / 2, 1.02, shot.shot_id, ha="center", va="bottom", fontsize=8,
                  transform=axes.get_xaxis_transform())
    axes.set_xlim(0.0, report.duration_s)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("position (s)")
    axes.set_ylabel("share of sessions watching")
    axes.grid(axis="y", alpha=0.3)
    return figure


def retention_plot_png(report: EngagementReport) -> bytes:
    """retention_figure(report) as PNG bytes (matplotlib's Agg canvas, no display needed)."""
    buffer = io.BytesIO()
    retention_figure(report).savefig(buffer, format="png")
    return buffer.getvalue()

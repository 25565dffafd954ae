"""Engagement metrics on hand-made sessions whose every figure is known, and the retention plot."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import build_manifest
from PIL import Image

from microdrama_assets.analytics.engagement import engagement_metrics, retention_figure, retention_plot_png
from microdrama_assets.analytics.event_store import DuckDBEventStore
from microdrama_assets.analytics.events import DeliveryError

from . import delivery_for, events_frame, session_events

EPISODE = "eng-ep"
DELIVERY = delivery_for(build_manifest(EPISODE, (2.0, 3.0, 5.0)))  # shots 0-2, 2-5, 5-10 s
DURATION = 10.0


def _sessions() -> list[dict]:
    """Six sessions: two complete (one stalls 2 s), and leavers at 1.5 s (s01), 4.0 s (s02), exactly at the
    2.0 s cut (counted in s02) and at 7.3 s with the beacon lost (last seen at 7.0 s, s03)."""
    return [
        *session_events(EPISODE, "a", 10.0, DURATION, rendition="h264/1080p", stalls=((3.0, 2.0),)),
        *session_events(EPISODE, "b", 10.0, DURATION),
        *session_events(EPISODE, "c", 1.5, DURATION),
        *session_events(EPISODE, "d", 4.0, DURATION),
        *session_events(EPISODE, "e", 2.0, DURATION),
        *session_events(EPISODE, "f", 7.3, DURATION, rendition="h264/540p", beacon_lost=True),
    ]


def test_per_shot_figures():
    report = engagement_metrics(events_frame(_sessions()), DELIVERY)
    s01, s02, s03 = report.shots
    assert (s01.entered, s01.watched_through, s01.leavers) == (6, 5, 1)
    assert s01.watch_through == pytest.approx(5 / 6) and s01.drop_off == pytest.approx(1 / 6)
    assert s01.avg_watch_s == pytest.approx(11.5 / 6) and s01.exposure_s == pytest.approx(11.5)
    assert s01.leave_rate_per_s == pytest.approx(1 / 11.5) and s01.median_leave_offset_s == pytest.approx(1.5)
    assert (s02.entered, s02.watched_through, s02.leavers) == (5, 3, 2)
    assert s02.drop_off == pytest.approx(0.4) and s02.avg_watch_s == pytest.approx(2.2)
    assert s02.median_leave_offset_s == pytest.approx(1.0)  # left at 0.0 s (the cut) and 2.0 s into it
    assert (s03.entered, s03.watched_through, s03.leavers) == (3, 2, 1)
    assert s03.watch_through == pytest.approx(2 / 6) and s03.avg_watch_s == pytest.approx(4.0)
    assert (s03.beat, s03.start_s, s03.end_s) == ("cliffhanger", 5.0, 10.0)


def test_episode_figures():
    report = engagement_metrics(events_frame(_sessions()), DELIVERY)
    assert (report.sessions, report.real_sessions, report.simulated_sessions) == (6, 6, 0)
    assert report.data_source == "real"
    assert report.completion_rate == pytest.approx(2 / 6)
    assert report.avg_watch_s == pytest.approx(34.5 / 6)
    assert report.rebuffer_ratio == pytest.approx(2.0 / 36.5)
    assert (report.stall_count, report.stall_s, report.sessions_with_stalls) == (1, 2.0, 1)
    assert report.completion_with_stalls == 1.0 and report.completion_without_stalls == pytest.approx(0.2)
    assert [p.t_s for p in report.retention] == [float(t) for t in range(11)]
    assert [round(p.watching * 6) for p in report.retention] == [6, 6, 5, 4, 4, 3, 3, 3, 2, 2, 2]
    assert report.rendition_mix == pytest.approx({"h264/720p": 17.5 / 34.5, "h264/1080p": 10 / 34.5,
                                                  "h264/540p": 7 / 34.5})
    assert list(report.rendition_mix) == ["h264/720p", "h264/1080p", "h264/540p"]  # largest share first
    assert report.stall_s_by_rendition == {"h264/1080p": 2.0}


def test_rendition_mix_follows_switches():
    events = session_events(EPISODE, "z", 10.0, DURATION, rendition="h264/234p")
    for event in events:
        if event["position_s"] < 1.0:
            event["rendition"] = None  # before the player named one
        elif event["position_s"] >= 6.0:
            event["rendition"] = "h264/1080p"
    switch = {**events[0], "type": "rendition_switch", "position_s": 6.0, "rendition": "h264/1080p"}
    events.insert(6, switch)  # between the progress events at 5 s and 6 s
    for seq, event in enumerate(events):
        event["seq"] = seq
    report = engagement_metrics(events_frame(events), DELIVERY)
    assert report.rendition_mix == pytest.approx({"h264/234p": 0.5, "h264/1080p": 0.4, "unknown": 0.1})


def test_other_episodes_are_ignored_and_positions_past_the_end_clipped():
    events = _sessions()
    events += session_events("other-ep", "x", 3.0, DURATION)
    last = next(i for i, e in enumerate(events) if e["session_id"] == "a" and e["type"] == "end")
    events[last] = {**events[last], "position_s": 10.03}  # a browser's currentTime a frame past the end
    report = engagement_metrics(events_frame(events), DELIVERY)
    assert report.sessions == 6 and report.avg_watch_s == pytest.approx(34.5 / 6)


def test_simulated_sessions_are_counted_and_said():
    events = _sessions() + session_events(EPISODE, "sim-1", 10.0, DURATION, simulated=True)
    report = engagement_metrics(events_frame(events), DELIVERY)
    assert (report.real_sessions, report.simulated_sessions, report.data_source) == (6, 1, "mixed")
    assert "6 real + 1 SIMULATED viewers" in report.describe()
    only_simulated = engagement_metrics(events_frame(session_events(EPISODE, "sim-1", 3.0, DURATION, simulated=True)),
                                        DELIVERY)
    assert only_simulated.data_source == "simulated" and "SIMULATED" in only_simulated.describe()


def test_no_sessions_yet_is_a_report_not_an_error(tmp_path):
    with DuckDBEventStore(tmp_path / "events.duckdb") as store:
        report = engagement_metrics(store.events(EPISODE), DELIVERY)
    assert (report.sessions, report.data_source, report.completion_rate, report.rebuffer_ratio) == (0, "none", None,
                                                                                                     None)
    assert [(s.shot_id, s.entered, s.drop_off) for s in report.shots] == [("s01", 0, None), ("s02", 0, None),
                                                                          ("s03", 0, None)]
    assert report.retention == [] and report.rendition_mix == {}
    assert "no sessions yet" in report.describe()
    image = Image.open(io.BytesIO(retention_plot_png(report)))
    assert image.format == "PNG"


def test_report_round_trips_through_json():
    report = engagement_metrics(events_frame(_sessions()), DELIVERY)
    assert type(report).model_validate_json(report.model_dump_json()) == report


def test_a_delivery_without_shots_is_refused():
    with pytest.raises(DeliveryError, match="shots"):
        engagement_metrics(events_frame(_sessions()), {**DELIVERY, "shots": []})


def test_retention_plot_draws_the_curve_and_the_shot_boundaries():
    report = engagement_metrics(events_frame(_sessions()), DELIVERY)
    axes = retention_figure(report).axes[0]
    curve, *boundaries = axes.get_lines()
    assert list(curve.get_xdata()) == [p.t_s for p in report.retention]
    assert list(curve.get_ydata()) == [p.watching for p in report.retention]
    assert [line.get_xdata()[0] for line in boundaries] == [2.0, 5.0]
    labels = {text.get_text(): text.get_position()[0] for text in axes.texts}
    assert labels == {"s01": 1.0, "s02": 3.5, "s03": 7.5}
    assert "6 sessions" in axes.get_title()
    image = Image.open(io.BytesIO(retention_plot_png(report)))
    assert image.format == "PNG" and image.size == (700, 340)
    # The curve is drawn: blue pixels across the plot area.
    pixels = np.asarray(image.convert("RGB")).astype(int)
    assert ((pixels[..., 2] > 150) & (pixels[..., 0] < 80)).sum() > 500

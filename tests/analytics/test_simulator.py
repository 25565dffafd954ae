"""Simulated viewers: valid, deterministic, realistic enough to measure, and sent through a real collector."""

from __future__ import annotations

import math
import socket

import pandas as pd
import pytest
from conftest import build_manifest

from microdrama_assets.analytics.collector import EVENTS_PATH, collector_app
from microdrama_assets.analytics.engagement import engagement_metrics
from microdrama_assets.analytics.event_store import DuckDBEventStore
from microdrama_assets.analytics.simulator import (
    NETWORK_PROFILES,
    CollectorError,
    NetworkProfile,
    SimulationError,
    post_sessions,
    simulate_sessions,
    store_sessions,
)

from . import delivery_for, events_frame, serving

MANIFEST = build_manifest("sim-ep", (4.0, 5.0, 6.0, 5.0, 5.0, 5.0))
DELIVERY = delivery_for(MANIFEST)
LABELS = {f"h264/{rung}" for rung in ("1080p", "720p", "540p", "360p", "234p")}


def _by_session(events: list[dict]) -> dict[str, list[dict]]:
    sessions: dict[str, list[dict]] = {}
    for event in events:
        sessions.setdefault(event["session_id"], []).append(event)
    return sessions


def test_the_same_seed_gives_the_same_sessions_and_more_viewers_extend_them():
    first = simulate_sessions(DELIVERY, 40, seed=7)
    assert simulate_sessions(DELIVERY, 40, seed=7) == first
    assert simulate_sessions(DELIVERY, 40, seed=8) != first
    more = simulate_sessions(DELIVERY, 60, seed=7)
    assert more[:len(first)] == first and len(_by_session(more)) == 60


def test_sessions_are_valid_labelled_and_ordered_as_a_player_reports_them():
    events = simulate_sessions(DELIVERY, 200, seed=3)
    frame = events_frame(events)  # validates every event as the collector would
    assert frame["simulated"].all() and frame["user_agent"].str.startswith("microdrama-simulator/1").all()
    assert set(frame["rendition"].dropna()) <= LABELS
    duration = DELIVERY["duration_s"]
    for session in _by_session(events).values():
        assert [e["seq"] for e in session] == list(range(len(session)))
        types = [e["type"] for e in session]
        assert types[:2] == ["rendition_switch", "start"] and types.count("start") == 1
        positions = [e["position_s"] for e in session]
        assert positions == sorted(positions) and positions[-1] <= duration
        assert types[-1] in ("end", "abandon", "progress", "stall", "start", "rendition_switch")
        if types[-1] == "end":
            assert positions[-1] == duration
        assert sum(t in ("end", "abandon") for t in types) <= 1
    endings = frame.groupby("session_id")["type"].last().value_counts()
    # Most sessions end with end or abandon; a few beacons are lost.
    assert endings.get("end", 0) + endings.get("abandon", 0) >= 0.9 * 200
    assert 0.4 < endings.get("end", 0) / 200 < 0.85


def test_networks_drive_renditions_and_stalls():
    wifi = engagement_metrics(events_frame(simulate_sessions(DELIVERY, 60, seed=1, networks=NETWORK_PROFILES[:1])),
                              DELIVERY)
    assert max(wifi.rendition_mix, key=wifi.rendition_mix.get) == "h264/1080p"
    congested = (NetworkProfile("congested", 1.0, 160.0, 0.8),)
    slow = engagement_metrics(events_frame(simulate_sessions(DELIVERY, 60, seed=1, networks=congested)), DELIVERY)
    assert max(slow.rendition_mix, key=slow.rendition_mix.get) == "h264/234p"
    assert wifi.sessions_with_stalls <= 2 and wifi.rebuffer_ratio < 0.005
    assert slow.sessions_with_stalls >= 15 and slow.rebuffer_ratio > 0.03
    # Stalled viewers give up more: the impatience hazard.
    assert slow.completion_with_stalls < slow.completion_without_stalls


def test_a_weak_shot_loses_more_viewers():
    uniform = engagement_metrics(events_frame(simulate_sessions(DELIVERY, 300, seed=5)), DELIVERY)
    weak = engagement_metrics(events_frame(simulate_sessions(DELIVERY, 300, seed=5, drop_multipliers={"s03": 4.0})),
                              DELIVERY)
    assert weak.shot("s03").drop_off > 2.5 * uniform.shot("s03").drop_off
    assert abs(weak.shot("s01").drop_off - uniform.shot("s01").drop_off) < 0.03  # the shots before it are alike


@pytest.mark.parametrize("options, message", [
    ({"viewers": 0}, "viewers must be an integer"),
    ({"viewers": True}, "viewers must be an integer"),
    ({"drop_multipliers": {"s09": 2.0}}, "unknown shot 's09'"),
    ({"drop_multipliers": {"s02": -1.0}}, "must be a positive number"),
    ({"drop_multipliers": {"s02": math.inf}}, "must be a positive number"),
    ({"networks": ()}, "at least one profile"),
])
def test_bad_settings_are_named(options, message):
    with pytest.raises(SimulationError, match=message):
        simulate_sessions(DELIVERY, **{"viewers": 10, **options})


def test_posted_sessions_measure_the_same_as_the_simulation(tmp_path):
    events = simulate_sessions(DELIVERY, 60, seed=11)
    with DuckDBEventStore(tmp_path / "events.duckdb") as store:
        with serving(collector_app(store)) as base:
            result = post_sessions(events, base + EVENTS_PATH, batch_size=150)
            again = post_sessions(events[:150], base + EVENTS_PATH)  # a repeat is stored once
        stored = store.events("sim-ep")
    assert (result.accepted, result.rejected, result.batches) == (len(events), [], math.ceil(len(events) / 150))
    assert again.accepted == 150 and len(stored) == len(events)
    assert engagement_metrics(stored, DELIVERY) == engagement_metrics(events_frame(events), DELIVERY)
    assert engagement_metrics(stored, DELIVERY).data_source == "simulated"


def test_sessions_can_go_straight_into_a_store(tmp_path):
    events = simulate_sessions(DELIVERY, 30, seed=6)
    events[5] = {**events[5], "type": "pause"}
    with DuckDBEventStore(tmp_path / "events.duckdb") as store:
        result = store_sessions(events, store)
        stored = store.events("sim-ep")
    assert (result.accepted, [r.index for r in result.rejected]) == (len(events) - 1, [5])
    assert result.batches == math.ceil(len(events) / 500) and len(stored) == len(events) - 1


def test_post_sessions_reports_rejections_with_their_index(tmp_path):
    events = simulate_sessions(DELIVERY, 5, seed=2)
    events[3] = {**events[3], "position_s": -1.0}
    with DuckDBEventStore(tmp_path / "events.duckdb") as store, serving(collector_app(store)) as base:
        result = post_sessions(events, base + EVENTS_PATH, batch_size=20)
    assert result.accepted == len(events) - 1
    assert [r.index for r in result.rejected] == [3] and result.rejected[0].reason.startswith("position_s")


def test_post_sessions_fails_naming_the_collector(tmp_path):
    events = simulate_sessions(DELIVERY, 2, seed=2)
    with pytest.raises(CollectorError, match="must be http"):
        post_sessions(events, "file:///etc/passwd")
    with DuckDBEventStore(tmp_path / "events.duckdb") as store, serving(collector_app(store)) as base:
        with pytest.raises(CollectorError, match="answered 404"):
            post_sessions(events, base + "/api/elsewhere")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(CollectorError, match="cannot reach the collector"):
        post_sessions(events, f"http://127.0.0.1:{closed}{EVENTS_PATH}", retries=1)


def test_delivery_with_several_codecs_gives_each_viewer_one_ladder():
    delivery = dict(DELIVERY, renditions=DELIVERY["renditions"] + [
        {**r, "codecs": "hvc1.1.6.L93.B0,mp4a.40.2", "average_bandwidth": int(r["average_bandwidth"] * 0.7)}
        for r in DELIVERY["renditions"]])
    frame = pd.DataFrame(simulate_sessions(delivery, 80, seed=4))
    families = frame.dropna(subset=["rendition"]).groupby("session_id")["rendition"].agg(
        lambda labels: {label.split("/")[0] for label in labels})
    assert families.map(len).eq(1).all()
    assert set().union(*families) == {"h264", "hevc"}

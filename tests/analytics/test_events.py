"""Playback event validation and the delivery timeline the analytics read."""

import copy

import pytest
from conftest import build_manifest

from microdrama_assets.analytics.events import (
    MAX_BATCH_EVENTS,
    BatchTooLarge,
    DeliveryError,
    EventBatchError,
    PlaybackEvent,
    parse_delivery,
    rendition_label,
    validate_batch,
)

from . import delivery_for

GOOD = {"episode_id": "ep-1", "session_id": "0f8e2c1a-5b7d-4e3f-9a61-2c4d8e9f0a1b", "viewer_id": "viewer_42",
        "seq": 3, "type": "progress", "client_ts": "2025-03-01T10:00:05.123Z", "position_s": 4.2,
        "rendition": "h264/720p", "simulated": False, "user_agent": "Mozilla/5.0", "app_version": "1.4.0"}


def test_a_valid_event_is_accepted_with_its_fields():
    accepted, rejected = validate_batch([GOOD])
    assert rejected == []
    event = accepted[0]
    assert (event.episode_id, event.seq, event.type, event.position_s, event.rendition) == \
        ("ep-1", 3, "progress", 4.2, "h264/720p")
    assert event.client_ts.utcoffset().total_seconds() == 0 and event.client_ts.microsecond == 123000


@pytest.mark.parametrize("change, field", [
    ({"colour": "red"}, "colour"),  # unknown fields are refused, not dropped
    ({"episode_id": "../etc"}, "episode_id"),
    ({"session_id": "<script>"}, "session_id"),
    ({"viewer_id": "v" * 65}, "viewer_id"),
    ({"seq": -1}, "seq"),
    ({"seq": "3"}, "seq"),  # no coercion from strings
    ({"type": "pause"}, "type"),
    ({"client_ts": "2025-03-01T10:00:05"}, "client_ts"),  # a timestamp without a zone is ambiguous
    ({"position_s": -0.5}, "position_s"),
    ({"position_s": float("nan")}, "position_s"),
    ({"rendition": "720p"}, "rendition"),
    ({"simulated": "yes"}, "simulated"),
    ({"user_agent": "x" * 257}, "user_agent"),
])
def test_each_bad_field_is_rejected_naming_it(change, field):
    accepted, rejected = validate_batch([GOOD, {**GOOD, **change}])
    assert len(accepted) == 1
    assert [r.index for r in rejected] == [1]
    assert rejected[0].reason.startswith(field)


def test_fields_must_fit_the_event_type():
    batch = [{**GOOD, "type": "stall"},  # no stall_s
             {**GOOD, "stall_s": 1.5},  # stall_s on a progress event
             {**GOOD, "type": "rendition_switch", "rendition": None},
             {**GOOD, "type": "stall", "stall_s": 1.5}]
    accepted, rejected = validate_batch(batch)
    assert [r.index for r in rejected] == [0, 1, 2]
    assert "stall_s is required" in rejected[0].reason and "stall_s is required" in rejected[1].reason
    assert "rendition switched to" in rejected[2].reason
    assert accepted[0].stall_s == 1.5


def test_positions_past_a_known_end_are_rejected():
    durations = {"ep-1": 8.2}
    batch = [{**GOOD, "position_s": 9.0}, {**GOOD, "position_s": 9.5}, {**GOOD, "episode_id": "ep-2", "position_s": 99}]
    accepted, rejected = validate_batch(batch, durations.get)
    assert [e.position_s for e in accepted] == [9.0, 99]  # within the slack; an episode of unknown length
    assert rejected[0].index == 1 and "past the end of episode ep-1 (8.2 s)" in rejected[0].reason


def test_batches_that_are_not_lists_or_too_long_are_refused_whole():
    with pytest.raises(EventBatchError, match="JSON array"):
        validate_batch({"events": [GOOD]})
    with pytest.raises(BatchTooLarge, match=str(MAX_BATCH_EVENTS)):
        validate_batch([GOOD] * (MAX_BATCH_EVENTS + 1))
    accepted, rejected = validate_batch([5, "x", GOOD])
    assert len(accepted) == 1 and [r.index for r in rejected] == [0, 1]
    assert "valid dictionary" in rejected[0].reason


def test_events_are_immutable():
    event = PlaybackEvent.model_validate(GOOD)
    with pytest.raises(Exception, match="frozen"):
        event.position_s = 1.0


@pytest.mark.parametrize("codecs, resolution, label", [
    ("avc1.64001F,mp4a.40.2", "720x1280", "h264/720p"),
    ("mp4a.40.2,hvc1.1.6.L93.B0", "1080x1920", "hevc/1080p"),
    ("av01.0.05M.08", "234x416", "av1/234p"),
    ("avc1.640028", "1920x1080", "h264/1080p"),
])
def test_rendition_labels_name_codec_and_short_side(codecs, resolution, label):
    assert rendition_label(codecs, resolution) == label


def test_delivery_timeline_reads_shots_and_renditions():
    manifest = build_manifest("ep-1", (2.0, 3.5, 4.0))
    timeline = parse_delivery(delivery_for(manifest))
    assert [s.id for s in timeline.shots] == ["s01", "s02", "s03"]
    assert [(s.start_s, s.end_s) for s in timeline.shots] == [(0.0, 2.0), (2.0, 5.5), (5.5, 9.5)]
    assert timeline.shot_at(0.0).id == "s01" and timeline.shot_at(2.0).id == "s02" and timeline.shot_at(9.5).id == "s03"
    assert [r.label for r in timeline.renditions] == ["h264/1080p", "h264/720p", "h264/540p", "h264/360p", "h264/234p"]
    assert timeline.renditions[-1].bitrate_bps == 112_000


def test_delivery_problems_are_named():
    delivery = delivery_for(build_manifest("ep-1", (2.0, 3.0)))
    gap = copy.deepcopy(delivery)
    gap["shots"][1]["start_s"] = 2.5
    with pytest.raises(DeliveryError, match="shot s02 spans 2.5-5.0 s"):
        parse_delivery(gap)
    unknown = copy.deepcopy(delivery)
    unknown["renditions"][0]["codecs"] = "vp09.00.10.08"
    with pytest.raises(DeliveryError, match="no known video codec in 'vp09"):
        parse_delivery(unknown)
    with pytest.raises(DeliveryError, match="shots"):
        parse_delivery({**delivery, "shots": []})

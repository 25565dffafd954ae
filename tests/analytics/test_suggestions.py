"""Suggestions for the next episode: a deliberately weak shot is singled out, an even episode is not, and each
kind of problem proposes its concrete change; planner guidance merges them into the planner's schema."""

from __future__ import annotations

import math

import pytest
from conftest import build_manifest

from microdrama_assets.analytics.engagement import engagement_metrics
from microdrama_assets.analytics.simulator import NetworkProfile, simulate_sessions
from microdrama_assets.analytics.suggestions import (
    PlannerGuidance,
    Suggestion,
    SuggestionError,
    next_episode_suggestions,
    planner_guidance,
)

from . import delivery_for, events_frame, session_events

MANIFEST = build_manifest("sug-ep", (4.0, 5.0, 6.0, 5.0, 5.0, 5.0))  # shots start at 0, 4, 9, 15, 20, 25 s
DELIVERY = delivery_for(MANIFEST)
DURATION = 30.0
SHOT_KINDS = {"stronger_opening", "rehook_shot", "shorten_shot"}


def _suggest(events: list[dict]) -> list[Suggestion]:
    return next_episode_suggestions(engagement_metrics(events_frame(events), DELIVERY), MANIFEST)


def _simulated(viewers: int = 300, seed: int = 1, **options) -> list[Suggestion]:
    return _suggest(simulate_sessions(DELIVERY, viewers, seed=seed, **options))


def _exits(exits: list[float]) -> list[dict]:
    """Hand-made sessions leaving at the given positions (DURATION or more: complete)."""
    return [event for n, exit_s in enumerate(exits)
            for event in session_events("sug-ep", f"s-{n:04d}", min(exit_s, DURATION), DURATION)]


@pytest.mark.parametrize("seed", [0, 2])
def test_an_even_episode_gets_no_suggestion(seed):
    assert _simulated(seed=seed) == []


def test_a_weak_middle_shot_is_the_top_suggestion():
    suggestions = _simulated(drop_multipliers={"s03": 3.0})
    top = suggestions[0]
    assert (top.kind, top.shot_id, top.beat.value) == ("rehook_shot", "s03", MANIFEST.shot("s03").beat.value)
    assert top.change == {"beat": "cliffhanger", "rehook": True, "open_with_dialogue": True}
    assert top.evidence["leave_rate_per_s"] > 2 * top.evidence["baseline_leave_rate_per_s"]
    assert top.evidence["p_value"] < 1e-6 and 0.02 < top.impact < 0.3
    assert "Re-hook s03" in top.message and "\u201cIt is glowing.\u201d" in top.message
    assert [s.shot_id for s in suggestions if s.kind in SHOT_KINDS] == ["s03"]


def test_a_weak_hook_asks_for_a_stronger_opening():
    top = _simulated(drop_multipliers={"s01": 3.0})[0]
    assert (top.kind, top.shot_id) == ("stronger_opening", "s01")
    # s01 runs 4.0 s and its line needs about 2 s: the hook may be cut to 3.0 s.
    assert top.change == {"beat": "hook", "hook_first_line": True, "max_duration_s": 3.0}
    assert top.evidence["drop_off"] > 0.25 and "keep it to 3.0 s (now 4.0 s)" in top.message


def test_a_shot_that_drags_is_shortened_to_where_viewers_leave():
    """300 sessions: 30 leave during the hook, 8 during each later shot, and 30 more late in s04 (3.6-4.6 s
    into its 5 s): half of its 38 leavers have gone by 4.03 s."""
    exits = [0.5 + 3.0 * i / 29 for i in range(30)]
    for start in (4.0, 9.0, 15.0, 20.0, 25.0):
        exits += [start + 0.3 + 4.4 * i / 7 for i in range(8)]
    exits += [15.0 + 3.6 + i / 29 for i in range(30)]
    exits += [DURATION] * (300 - len(exits))
    suggestions = _suggest(_exits(exits))
    assert [(s.kind, s.shot_id) for s in suggestions] == [("shorten_shot", "s04")]
    shorten = suggestions[0]
    assert shorten.change == {"beat": MANIFEST.shot("s04").beat.value, "max_duration_s": 4.0}
    assert shorten.message.startswith("Shorten s04 from 5.0 s to 4.0 s:")
    assert shorten.evidence["median_leave_offset_s"] == pytest.approx(4.03, abs=0.01)


def test_steady_losses_ask_for_a_shorter_episode():
    """200 sessions leaving at a constant rate that leaves 30% at the end: no shot stands out, but half the
    viewers are gone by ln 2 / rate = 17.3 s, so the next episode should end at 17 s."""
    rate = -math.log(0.3) / DURATION
    exits = [-math.log(1 - (i + 0.5) / 200) / rate for i in range(200)]
    suggestions = _suggest(_exits(exits))
    assert [(s.kind, s.change) for s in suggestions] == [("shorter_episode", {"target_duration_s": 17.0})]
    assert "half the viewers are gone by 18 s; aim for about 17 s" in suggestions[0].message


def test_rebuffering_asks_for_shorter_segments():
    congested = (NetworkProfile("congested", 1.0, 160.0, 0.8),)
    suggestions = _simulated(viewers=200, networks=congested)
    rebuffering = next(s for s in suggestions if s.kind == "reduce_rebuffering")
    assert rebuffering.change == {"segment_duration_s": 1.0, "stall_rendition": "h264/234p"}
    assert rebuffering.evidence["rebuffer_ratio"] > 0.01
    assert rebuffering.evidence["completion_with_stalls"] < rebuffering.evidence["completion_without_stalls"]


def test_too_few_sessions_suggest_nothing():
    assert _simulated(viewers=25, drop_multipliers={"s03": 6.0}) == []


def test_the_manifest_must_be_the_reports_episode():
    report = engagement_metrics(events_frame(simulate_sessions(DELIVERY, 40, seed=1)), DELIVERY)
    with pytest.raises(SuggestionError, match="does not match the manifest of other-ep"):
        next_episode_suggestions(report, build_manifest("other-ep", (4.0, 5.0, 6.0, 5.0, 5.0, 5.0)))
    # A manifest as JSON works as well as the model.
    assert next_episode_suggestions(report, MANIFEST.model_dump(mode="json")) == \
        next_episode_suggestions(report, MANIFEST)


def _suggestion(kind: str, change: dict, message: str) -> Suggestion:
    return Suggestion(kind=kind, impact=0.1, evidence={}, change=change, message=message)


def test_planner_guidance_merges_to_the_strictest_and_leaves_encoding_out():
    suggestions = [
        _suggestion("stronger_opening", {"beat": "hook", "hook_first_line": True, "max_duration_s": 3.0}, "hook"),
        _suggestion("shorten_shot", {"beat": "turn", "max_duration_s": 4.0}, "turn 4"),
        _suggestion("shorten_shot", {"beat": "turn", "max_duration_s": 3.5}, "turn 3.5"),
        _suggestion("rehook_shot", {"beat": "reveal", "rehook": True, "open_with_dialogue": False}, "reveal"),
        _suggestion("reduce_rebuffering", {"segment_duration_s": 1.0, "stall_rendition": "h264/720p"}, "stalls"),
        _suggestion("shorter_episode", {"target_duration_s": 20.0}, "shorter"),
    ]
    guidance = planner_guidance(suggestions)
    assert guidance == {
        "schema_version": 1, "hook_first_line": True, "target_duration_s": 20.0,
        "beats": {"hook": {"max_duration_s": 3.0, "rehook": False, "open_with_dialogue": False},
                  "turn": {"max_duration_s": 3.5, "rehook": False, "open_with_dialogue": False},
                  "reveal": {"max_duration_s": None, "rehook": True, "open_with_dialogue": False}},
        "reasons": ["hook", "turn 4", "turn 3.5", "reveal", "shorter"],
    }
    assert PlannerGuidance.model_validate(guidance).model_dump(mode="json") == guidance
    assert planner_guidance([]) == PlannerGuidance().model_dump(mode="json")


def test_planner_guidance_refuses_what_the_planner_cannot_do():
    with pytest.raises(ValueError, match="max_duration_s"):
        planner_guidance([_suggestion("shorten_shot", {"beat": "turn", "max_duration_s": 0.2}, "too short")])
    with pytest.raises(ValueError, match="extra"):
        PlannerGuidance.model_validate({"beats": {}, "shots": []})


def test_guidance_from_a_weak_shot_simulation():
    guidance = planner_guidance(_simulated(drop_multipliers={"s03": 3.0}))
    assert guidance["beats"] == {"cliffhanger": {"max_duration_s": None, "rehook": True, "open_with_dialogue": True}}
    assert not guidance["hook_first_line"] and guidance["target_duration_s"] is None

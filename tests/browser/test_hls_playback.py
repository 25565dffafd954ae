"""The HLS package plays in a real browser: headless Chromium with hls.js, end to end, through a forced level
switch, with the opt-in WebVTT track. The packaging tests check the package's bytes; this checks that a web
player agrees."""

from __future__ import annotations

import json

import pytest

from microdrama_assets.media.video_io import FPS

from .conftest import CUES, TOTAL_FRAMES

pytestmark = pytest.mark.browser

DURATION_S = TOTAL_FRAMES / FPS
SWITCH_AFTER_S = 1.0  # force the switch mid-playback, with the rest of the episode already buffered
TIMEOUT_MS = 60_000
LAST_FRAME_S = (TOTAL_FRAMES - 1) / FPS
LATE_FRAMES = 3  # a loaded machine may drop a few frames at the very end
LONGEST_FREEZE_S = 0.5
FATAL = "window.playback.errors.some(e => e.fatal)"


def _report(page) -> str:
    """Everything the page recorded, for a failure message."""
    return "playback state:\n" + json.dumps(page.evaluate("window.playback"), indent=1)


def _wait(page, condition: str, arg=None) -> None:
    """Wait for a JS condition (a function of ``arg``); a fatal hls.js error ends the wait early."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # here: conftest skips when it is missing

    try:
        page.wait_for_function(f"arg => ({condition}) || {FATAL}", arg=arg, timeout=TIMEOUT_MS)
    except PlaywrightTimeout:
        pytest.fail(f"timed out waiting for {condition}\n{_report(page)}")
    assert not page.evaluate(FATAL), f"fatal hls.js error while waiting for {condition}\n{_report(page)}"


def _video(page, *properties: str) -> list:
    return page.evaluate("props => props.map(p => document.getElementById('video')[p])", list(properties))


def test_plays_to_the_end_through_a_forced_level_switch(playwright_chromium, site_url):
    page = playwright_chromium.new_page()
    page.goto(f"{site_url}/player.html")
    _wait(page, "window.playback.levels !== null")
    state = page.evaluate("window.playback")
    assert state["supported"], "hls.js finds no MediaSource in this Chromium"
    levels = state["levels"]
    assert len(levels) >= 2, _report(page)
    # The captions are burned in: the WebVTT track is offered but off until the viewer picks it.
    assert [track["default"] for track in state["subtitleTracks"]] == [False], _report(page)
    assert page.evaluate("window.hls.subtitleTrack") == -1, _report(page)

    # Start on the H.264 top rung, then force the H.264 cellular rung: another picture size and audio group.
    h264 = [i for i, level in enumerate(levels) if level["videoCodec"].startswith("avc1")]
    start = max(h264, key=lambda i: levels[i]["height"])
    target = min(h264, key=lambda i: levels[i]["height"])
    assert levels[start]["height"] != levels[target]["height"], _report(page)

    page.evaluate("level => window.startPlayback(level)", start)
    page.evaluate("window.hls.subtitleTrack = 0")
    _wait(page, f"document.getElementById('video').currentTime >= {SWITCH_AFTER_S}")
    page.evaluate("level => { window.hls.currentLevel = level; }", target)
    _wait(page, "window.playback.switches.some(s => s.level === arg)", target)
    _wait(page, "window.playback.ended")

    state = page.evaluate("window.playback")
    ended, current_time, width, height = _video(page, "ended", "currentTime", "videoWidth", "videoHeight")
    report = _report(page)
    assert [switch["level"] for switch in state["switches"]] == [start, target], report
    assert ended, report
    assert current_time >= DURATION_S - 0.3, report
    assert current_time > state["switches"][-1]["at"] + 1.0, report  # playback went on well past the switch
    assert (width, height) == (levels[target]["width"], levels[target]["height"]), report
    # The audio alone carries the clock to the end: the pictures must get there too, without a freeze.
    assert state["frames"]["lastMediaTime"] >= LAST_FRAME_S - LATE_FRAMES / FPS, report
    assert state["frames"]["longestGap"] <= LONGEST_FREEZE_S, report
    cues = page.evaluate("() => Array.from(document.getElementById('video').textTracks)"
                         ".flatMap(t => Array.from(t.cues || [])).map(c => [c.startTime, c.endTime, c.text])")
    assert [(round(s, 2), round(e, 2)) for s, e, _ in cues] == [(c.start_s, c.end_s) for c in CUES], report
    assert all(cue.text in text for cue, (_, _, text) in zip(CUES, cues)), report

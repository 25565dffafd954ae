"""The preview app in a real browser: headless Chromium (Debian's, driven by Playwright) with hls.js opens the
episode list and an episode, plays it while the page reports playback events to the collector, then a creator
edits one shot, re-renders just that shot through the asset graph, sees the new package play, approves it with
the token and sees it published."""

from __future__ import annotations

import time

import pytest

from microdrama_assets.analytics.event_store import DuckDBEventStore
from microdrama_assets.preview import create_app
from microdrama_assets.trust.release_gate import approvals, package_version

from .preview_fixtures import TOKEN, PreviewServer, fingerprints, make_preview_episode

pytestmark = pytest.mark.browser

PAGE_TIMEOUT_MS = 20_000
JOB_TIMEOUT_MS = 150_000  # one shot's render run and the assembly, on a loaded two-core machine
EVENTS_TIMEOUT_S = 20.0
PLAYED_S = 1.5
NEW_ACTION = "Naomi slides the locket across the counter; Felix will not touch it."


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    # Made before the browser opens: Playwright's sync API runs an asyncio loop in this thread.
    return make_preview_episode(tmp_path_factory, "preview-browser")


@pytest.fixture(scope="module")
def preview(episode, hls_js, tmp_path_factory):
    """The app on 127.0.0.1 serving the npm-installed hls.js, and its event store."""
    events = DuckDBEventStore(tmp_path_factory.mktemp("preview-events") / "events.duckdb")
    try:
        with PreviewServer(create_app(episode.data_root, episode.instance, TOKEN, events, hls_js_path=hls_js)) as server:
            yield server.url, events
    finally:
        events.close()


@pytest.fixture(scope="module")
def page(preview, playwright_chromium):
    page = playwright_chromium.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield page
    page.close()


def _wait(page, condition: str, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # here: conftest skips when it is missing

    try:
        page.wait_for_function(condition, timeout=timeout_ms)
    except PlaywrightTimeout:
        state = page.evaluate("JSON.stringify({job: window.preview && window.preview.job, player: window.preview "
                              "&& window.preview.player, error: document.getElementById('error')?.textContent})")
        pytest.fail(f"timed out waiting for {condition}; page state: {state}")


def _played_events(events: DuckDBEventStore, episode_id: str):
    """The stored events once a start and a progress event are in, polling while the page's batches arrive."""
    deadline = time.monotonic() + EVENTS_TIMEOUT_S
    while True:
        frame = events.events(episode_id)
        if {"start", "progress"} <= set(frame["type"]) or time.monotonic() > deadline:
            return frame
        time.sleep(0.25)


def test_lists_opens_and_plays_the_episode_reporting_playback(page, preview, episode):
    url, events = preview
    version = package_version(episode.artifacts)
    page.goto(f"{url}/?token={TOKEN}")
    row = page.locator(f"tr[data-episode='{episode.episode_id}']")
    assert row.locator(".badge").inner_text() == "ready for review"
    assert row.locator(".version").inner_text() == version
    assert "token=" not in page.url  # moved into the tab's session storage

    row.get_by_role("link").click()
    page.wait_for_url(f"**/episodes/{episode.episode_id}")
    _wait(page, "window.preview && window.preview.player.loads === 1")
    assert page.locator("#token").input_value() == TOKEN
    assert page.locator("#version").inner_text() == version
    assert page.locator("[data-shot]").count() == 2
    assert page.locator("[data-shot=s01] .checks li.passed").count() >= 3
    assert episode.artifacts.manifest().title in page.locator("#manifest").inner_text()
    _wait(page, "document.getElementById('contact-sheet').naturalWidth > 0")

    _wait(page, "document.getElementById('video').readyState >= 1")
    page.evaluate("document.getElementById('video').play()")
    _wait(page, f"document.getElementById('video').currentTime >= {PLAYED_S}")
    assert page.evaluate("window.Hls.isSupported()")  # played through hls.js, not a native fallback

    frame = _played_events(events, episode.episode_id)
    assert {"start", "progress"} <= set(frame["type"]), frame
    assert frame["session_id"].nunique() == 1
    assert not frame["simulated"].any()
    progress = frame[frame["type"] == "progress"]["position_s"]
    assert progress.min() > 0 and progress.max() <= episode.artifacts.manifest().duration_s + 1.0


def test_rerenders_one_edited_shot_then_approves_and_publishes_it(page, preview, episode):
    url, _ = preview
    shots = {shot_id: episode.artifacts.shot(shot_id).renditions_dir for shot_id in ("s01", "s02")}
    before = {shot_id: fingerprints(directory) for shot_id, directory in shots.items()}
    old_version = package_version(episode.artifacts)
    page.goto(f"{url}/episodes/{episode.episode_id}")
    _wait(page, "window.preview && window.preview.player.loads === 1")

    card = page.locator("[data-shot=s02]")
    card.locator("textarea[name=action]").fill(NEW_ACTION)
    card.locator("button.rerender").click()
    _wait(page, "window.preview.job && ['succeeded', 'failed'].includes(window.preview.job.state)", JOB_TIMEOUT_MS)
    job = page.evaluate("window.preview.job")
    assert job["state"] == "succeeded", job["message"]
    assert episode.artifacts.manifest().shot("s02").action == NEW_ACTION

    # The edit was moderated, only s02 was rendered again, then the episode assembled: its renditions changed,
    # s01's were not touched.
    assert [(run["job"], run["partition"], run["status"]) for run in job["runs"]] == [
        ("plan_episode", episode.episode_id, "SUCCESS"), ("render_shot", f"{episode.episode_id}|s02", "SUCCESS"),
        ("assemble_episode", episode.episode_id, "SUCCESS")]
    assert page.locator("#job-runs tbody tr").count() == 3
    assert fingerprints(shots["s01"]) == before["s01"]
    after = fingerprints(shots["s02"])
    assert after.keys() == before["s02"].keys()
    segments = [name for name in after if name.endswith(".m4s")]
    assert segments and all(after[name][1] != before["s02"][name][1] for name in segments)

    # The page shows the new package and plays it.
    new_version = package_version(episode.artifacts)
    assert new_version != old_version and job["result"]["version"] == new_version
    _wait(page, f"window.preview.player.loads === 2 && window.preview.player.url.includes('{new_version}')")
    assert page.locator("#version").inner_text() == new_version
    page.evaluate("document.getElementById('video').play()")
    _wait(page, "document.getElementById('video').currentTime >= 0.5")

    # The re-render moderated the edited manifest and the new keyframes: nothing blocks the approval.
    page.reload()
    _wait(page, "window.preview && window.preview.detail !== null")
    assert page.locator("#blockers li").count() == 0
    page.locator("#approve-name").fill("Ada Reviewer")
    page.locator("#approve-button").click()
    _wait(page, "window.preview.job && window.preview.job.kind === 'publish' && "
                "['succeeded', 'failed'].includes(window.preview.job.state)", JOB_TIMEOUT_MS)
    job = page.evaluate("window.preview.job")
    assert job["state"] == "succeeded", job["message"]
    _wait(page, "window.preview.detail.state === 'published'")
    assert page.locator("#state").inner_text() == "published"
    assert page.locator("#published-url").inner_text().endswith(f"episodes/{episode.episode_id}/master.m3u8")
    [approval] = approvals(episode.store, episode.episode_id)
    assert (approval.version, approval.approved_by, approval.via) == (new_version, "Ada Reviewer", "preview")
    entry = episode.data_root / "published" / "episodes" / episode.episode_id / "master.m3u8"
    assert f"v/{new_version}/" in entry.read_text(encoding="utf-8")
